/* The store port's contract suite (DESIGN.md §4): the same tests run against every registered backend,
 * each named by a URL factory. A new backend (S3 on moto) adds one row to `backends`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "aws_fixture.h"
#include "store/store.h"
#include "tmpdir.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

typedef struct backend {
    const char *name;
    void (*url)(const char *dir, char *out, size_t size); /* a bucket kept under dir */
} backend;

static void file_url(const char *dir, char *out, size_t size)
{
    snprintf(out, size, "file://%s/bucket", dir);
}

static void file_normal_url(const char *dir, char *out, size_t size)
{
    snprintf(out, size, "file://%s/bucket?sync=normal", dir); /* no fsync: same behaviour short of power loss */
}

static void fault_file_url(const char *dir, char *out, size_t size)
{
    snprintf(out, size, "fault:file://%s/bucket", dir); /* no rule: pass-through */
}

/* S3 on moto: the bucket is created here (open does not create buckets), one per test. */
static void s3_url(const char *dir, char *out, size_t size)
{
    char name[64];
    aws_test_name(dir, "bucket", name, sizeof name);
    if (aws_test_create_bucket(name))
        snprintf(out, size, "s3-bucket-creation-failed");
    else
        snprintf(out, size, "s3://%s", name);
}

static const backend backends[] = {
    {"file", file_url},
    {"file (sync=normal)", file_normal_url},
    {"fault(file)", fault_file_url},
};
static const backend aws_backends[] = {
    {"s3 (moto)", s3_url},
};

typedef struct fixture {
    const backend *be;
    char dir[64];
    store *s;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    char url[256];
    imgcls_errbuf eb = {{0}};
    if (!fx)
        return -1;
    fx->be = *state;
    *state = fx;
    if (tmpdir_make(fx->dir, sizeof fx->dir) != 0)
        return -1;
    fx->be->url(fx->dir, url, sizeof url);
    int rc = store_open(url, &fx->s, &eb);
    if (rc)
        print_error("store_open %s: %s (%s)\n", url, imgcls_err_name(rc), eb.msg);
    return rc ? -1 : 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    store_close(fx->s);
    if (fx->dir[0])
        tmpdir_remove(fx->dir);
    free(fx);
    return 0;
}

static void put_ok(store *s, const char *key, const void *data, size_t len)
{
    int rc = store_put(s, key, data, len);
    if (rc)
        fail_msg("put %s: %s (%s)", key, imgcls_err_name(rc), s->err.msg);
}

static void assert_value(store *s, const char *key, const void *data, size_t len)
{
    imgcls_buf b;
    buf_init(&b, 1 << 20);
    int rc = store_get(s, key, &b);
    if (rc)
        fail_msg("get %s: %s (%s)", key, imgcls_err_name(rc), s->err.msg);
    assert_int_equal(b.len, len);
    if (len)
        assert_memory_equal(b.data, data, len);
    buf_free(&b);
    bool e = false;
    assert_int_equal(store_exists(s, key, &e), 0);
    assert_true(e);
}

/* Any name a client may send is a key as it is, and reads back as itself (S3: URI-encoded on the wire). */
static void t_any_name(void **state)
{
    fixture *fx = *state;
    static const char *names[] = {"my dog+é%.jpg", "a b", "100%", "x+y=z&w", "日本語.png", "~tilde", "no-extension",
                                  "semi;colon,comma", "quote\"s'", "#hash?q", "requests", ".imgcls"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char value[64];
        int n = snprintf(value, sizeof value, "v%zu", i);
        assert_int_equal(store_put(fx->s, names[i], value, (size_t)n), 0);
    }
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        imgcls_buf b;
        buf_init(&b, 64);
        char value[64];
        snprintf(value, sizeof value, "v%zu", i);
        int rc = store_get(fx->s, names[i], &b);
        if (rc)
            fail_msg("get '%s': %s (%s)", names[i], imgcls_err_name(rc), fx->s->err.msg);
        assert_string_equal((char *)b.data, value);
        bool e = false;
        assert_int_equal(store_exists(fx->s, names[i], &e), 0);
        assert_true(e);
        buf_free(&b);
    }
}

static void assert_stored(store *s, const char *key, const char *want)
{
    imgcls_buf b;
    buf_init(&b, 64);
    int rc = store_get(s, key, &b);
    if (rc)
        fail_msg("get '%s': %s (%s)", key, imgcls_err_name(rc), s->err.msg);
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    buf_free(&b);
}

/* store_put_copy (a link where the backend has one): the name holds the claim's bytes, replaces an
 * older value, and outlives the claim's removal; a later put of the name leaves the claim alone. */
static void t_put_copy(void **state)
{
    fixture *fx = *state;
    const char *claim = ".imgcls/claims/0123456789abcdef0123456789abcdef";
    assert_int_equal(store_put(fx->s, "photo 1.jpg", "older", 5), 0);
    assert_int_equal(store_put(fx->s, claim, "image-bytes", 11), 0);
    assert_int_equal(store_put_copy(fx->s, claim, "photo 1.jpg", "image-bytes", 11), 0);
    assert_stored(fx->s, "photo 1.jpg", "image-bytes");
    assert_int_equal(store_put(fx->s, "photo 1.jpg", "newer", 5), 0);
    assert_stored(fx->s, claim, "image-bytes");
    assert_int_equal(store_put_copy(fx->s, claim, "photo 2.jpg", "image-bytes", 11), 0);
    assert_int_equal(store_del(fx->s, claim), 0);
    assert_stored(fx->s, "photo 2.jpg", "image-bytes");
    assert_stored(fx->s, "photo 1.jpg", "newer");
    /* a source that is gone: the bytes are put instead */
    assert_int_equal(store_put_copy(fx->s, claim, "photo 3.jpg", "direct", 6), 0);
    assert_stored(fx->s, "photo 3.jpg", "direct");
}

static void t_put_get_exists(void **state)
{
    fixture *fx = *state;
    bool e = true;
    assert_int_equal(store_exists(fx->s, "test_0.JPEG", &e), 0);
    assert_false(e);
    put_ok(fx->s, "test_0.JPEG", "\xff\xd8\x00jpeg", 7);
    assert_value(fx->s, "test_0.JPEG", "\xff\xd8\x00jpeg", 7);
    put_ok(fx->s, "test_0", "(test_0, tile roof)", 19);
    assert_value(fx->s, "test_0", "(test_0, tile roof)", 19);
    assert_value(fx->s, "test_0.JPEG", "\xff\xd8\x00jpeg", 7); /* untouched */
}

#define ID "0123456789abcdef0123456789abcdef"

static void t_system_keys(void **state)
{
    fixture *fx = *state;
    char claim[STORE_MAX_SYSTEM_KEY], result[STORE_MAX_SYSTEM_KEY];
    store_key_claim(ID, claim);
    store_key_result(ID, result);
    assert_string_equal(claim, ".imgcls/claims/" ID);
    assert_string_equal(result, ".imgcls/results/" ID ".json");
    put_ok(fx->s, claim, "jpeg", 4);
    put_ok(fx->s, result, "{}", 2);
    assert_value(fx->s, claim, "jpeg", 4);
    assert_value(fx->s, result, "{}", 2);
    bool e = true;
    assert_int_equal(store_exists(fx->s, ".imgcls/claims", &e), 0); /* a prefix is not a key */
    assert_false(e);
    assert_int_equal(store_exists(fx->s, ".imgcls/results/ffff.json", &e), 0);
    assert_false(e);
}

/* The names the last review found breaking the service, the names of the system's own prefixes, and
 * the names people's devices make: each is its own object, beside the system's objects, and none
 * disturbs another. */
static const char *const client_names[] = {
    "results", "results.jpg", "requests", "requests.png", ".imgcls", ".imgcls.json", "claims", "%2Eimgcls",
    "%2eimgcls", "my photo.jpg", "IMG_2041 (1).JPG", "caf\xc3\xa9.jpg", "a+b.jpg", "#1 100%.png",
    "\xe7\x8c\xab.jpg", "\xf0\x9f\x90\x88.png", "...", "..jpg", ".tmp-abc", "a:b*c?d\"e<f>g|h", "README",
};

static void t_names_and_system_keys_never_meet(void **state)
{
    fixture *fx = *state;
    size_t n = sizeof client_names / sizeof *client_names;
    char claim[STORE_MAX_SYSTEM_KEY], result[STORE_MAX_SYSTEM_KEY];
    store_key_claim(ID, claim);
    store_key_result(ID, result);
    for (int round = 0; round < 2; round++) { /* names first, then system keys first */
        if (round == 1) {
            put_ok(fx->s, claim, "claim", 5);
            put_ok(fx->s, result, "result", 6);
        }
        for (size_t i = 0; i < n; i++)
            put_ok(fx->s, client_names[i], client_names[i], strlen(client_names[i]));
        put_ok(fx->s, claim, "claim", 5);
        put_ok(fx->s, result, "result", 6);
    }
    for (size_t i = 0; i < n; i++)
        assert_value(fx->s, client_names[i], client_names[i], strlen(client_names[i]));
    assert_value(fx->s, claim, "claim", 5);
    assert_value(fx->s, result, "result", 6);
}

static void t_delete(void **state)
{
    fixture *fx = *state;
    char claim[STORE_MAX_SYSTEM_KEY];
    store_key_claim(ID, claim);
    put_ok(fx->s, "my photo.jpg", "x", 1);
    put_ok(fx->s, claim, "y", 1);
    assert_int_equal(store_del(fx->s, claim), 0);
    bool e = true;
    assert_int_equal(store_exists(fx->s, claim, &e), 0);
    assert_false(e);
    assert_int_equal(store_del(fx->s, claim), 0); /* idempotent */
    assert_int_equal(store_del(fx->s, "never there"), 0);
    assert_value(fx->s, "my photo.jpg", "x", 1); /* untouched */
    assert_int_equal(store_del(fx->s, "../x"), IMGCLS_EINVAL);
}

static void t_overwrite(void **state)
{
    fixture *fx = *state;
    put_ok(fx->s, "k", "a much longer first value", 25);
    put_ok(fx->s, "k", "short", 5);
    assert_value(fx->s, "k", "short", 5);
    put_ok(fx->s, "k", "short", 5); /* idempotent */
    assert_value(fx->s, "k", "short", 5);
    put_ok(fx->s, "k", "", 0);
    assert_value(fx->s, "k", "", 0);
}

static void t_missing(void **state)
{
    fixture *fx = *state;
    imgcls_buf b;
    buf_init(&b, 1024);
    assert_int_equal(store_get(fx->s, "nope", &b), IMGCLS_ENOTFOUND);
    assert_int_equal(store_get(fx->s, ".imgcls/no/such/key", &b), IMGCLS_ENOTFOUND);
    put_ok(fx->s, ".imgcls/file", "x", 1);
    assert_int_equal(store_get(fx->s, ".imgcls/file/below", &b), IMGCLS_ENOTFOUND);
    assert_int_equal(b.len, 0);
    buf_free(&b);
}

static void t_get_limit(void **state)
{
    fixture *fx = *state;
    static unsigned char big[100000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (unsigned char)(i * 31);
    put_ok(fx->s, "big", big, sizeof big);
    imgcls_buf b;
    buf_init(&b, sizeof big - 1);
    assert_int_equal(store_get(fx->s, "big", &b), IMGCLS_ETOOBIG);
    buf_free(&b);
    buf_init(&b, sizeof big); /* exactly the max fits */
    assert_int_equal(store_get(fx->s, "big", &b), 0);
    assert_int_equal(b.len, sizeof big);
    assert_memory_equal(b.data, big, sizeof big);
    buf_free(&b);
}

static const char *const bad_keys[] = {
    "",          "../x",          "/abs",          "a//b",      "a/../b",       "..",
    ".",         "a/",            "/",             "a\\b",      "a\nb",          "a\tb",
    "a\rb",      "x/..",          "./a",           "\xff",      "caf\xe9.jpg",   "a/b",
    "results/x.json", ".imgcls/", ".imgcls//a",   ".imgcls/../x", ".imgcls/.tmp-x", ".imgcls/a b",
    ".imgcls/claims/../../x", ".imgcls/a/", ".imgcls/\xc3\xa9", "a\x01b",
};

static void t_bad_keys(void **state)
{
    fixture *fx = *state;
    char long_key[STORE_MAX_KEY + 1];
    memset(long_key, 'a', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = 0; /* STORE_MAX_KEY bytes: one too many */
    for (size_t i = 0; i <= sizeof bad_keys / sizeof *bad_keys; i++) {
        const char *key = i < sizeof bad_keys / sizeof *bad_keys ? bad_keys[i] : long_key;
        imgcls_buf b;
        bool e = true;
        buf_init(&b, 1024);
        if (store_put(fx->s, key, "x", 1) != IMGCLS_EINVAL)
            fail_msg("put accepted bad key '%s'", key);
        assert_int_equal(store_get(fx->s, key, &b), IMGCLS_EINVAL);
        assert_int_equal(store_exists(fx->s, key, &e), IMGCLS_EINVAL);
        assert_false(e);
        buf_free(&b);
    }
    /* Nothing escaped the bucket: the temporary directory holds only it. */
    DIR *d = opendir(fx->dir);
    assert_non_null(d);
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL)
        if (strcmp(ent->d_name, ".") && strcmp(ent->d_name, ".."))
            assert_string_equal(ent->d_name, "bucket");
    closedir(d);
}

static int run_backend(const backend *be)
{
#define CONTRACT(f) cmocka_unit_test_prestate_setup_teardown(f, setup, teardown, (void *)be)
    const struct CMUnitTest tests[] = {
        CONTRACT(t_put_get_exists), CONTRACT(t_system_keys), CONTRACT(t_names_and_system_keys_never_meet),
        CONTRACT(t_delete),         CONTRACT(t_overwrite),   CONTRACT(t_missing),
        CONTRACT(t_get_limit),      CONTRACT(t_bad_keys),    CONTRACT(t_any_name),
        CONTRACT(t_put_copy),
    };
#undef CONTRACT
    print_message("store backend: %s\n", be->name);
    return cmocka_run_group_tests_name(be->name, tests, NULL, NULL);
}

/* ---- store_key_valid, the registry, the file backend's specifics, the fault wrapper ---- */

static void t_key_valid(void **state)
{
    (void)state;
    static const char *const good[] = {
        "a", "test_0.JPEG", "test_0", "a..b", "a.", ".hidden", "a b", "a%2e", "~root", "a:b", "\xc3\xa9",
        ".imgcls", ".imgcls/claims/" ID, ".imgcls/results/" ID ".json", ".imgcls/a-b_c.d/x",
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        if (!store_key_valid(good[i]))
            fail_msg("'%s' should be valid", good[i]);
    for (size_t i = 0; i < sizeof bad_keys / sizeof *bad_keys; i++)
        if (store_key_valid(bad_keys[i]))
            fail_msg("'%s' should be invalid", bad_keys[i]);
    assert_false(store_key_valid(NULL));
    for (size_t i = 0; i < sizeof client_names / sizeof *client_names; i++)
        assert_false(store_key_is_system(client_names[i])); /* no name can be a system key */
    char key[STORE_MAX_KEY + 1];
    memcpy(key, ".imgcls/", 8);
    memset(key + 8, 'k', sizeof key - 8);
    key[STORE_MAX_KEY - 1] = 0;
    assert_true(store_key_valid(key)); /* STORE_MAX_KEY - 1 bytes */
    key[STORE_MAX_KEY - 1] = 'k';
    key[STORE_MAX_KEY] = 0;
    assert_false(store_key_valid(key));
}

static void t_open_errors(void **state)
{
    fixture *fx = *state;
    char path[128], url[160];
    snprintf(path, sizeof path, "%s/plain", fx->dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    static const struct {
        const char *fmt; /* %s: a regular file in the temporary directory */
        int rc;
    } cases[] = {
        {"nope://x", IMGCLS_EUNSUPPORTED},
        {"no scheme", IMGCLS_EINVAL},
        {"file://", IMGCLS_EINVAL},
        {"file://%s?x=1", IMGCLS_EINVAL},
        {"file://%s.d?sync=sometimes", IMGCLS_EINVAL},
        {"file://%s.d?sync=normal&x=1", IMGCLS_EINVAL},
        {"file://%s.d#frag", IMGCLS_EINVAL},
        {"file://%s", IMGCLS_EINVAL},     /* a file, not a directory */
        {"file://%s/sub", IMGCLS_EINVAL}, /* below a file */
        {"fault:file://%s#op=nope", IMGCLS_EINVAL},
        {"fault:file:///tmp#op=open&code=EIO", IMGCLS_EIO},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        imgcls_errbuf eb = {{0}};
        store *s = NULL;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        snprintf(url, sizeof url, cases[i].fmt, path);
#pragma GCC diagnostic pop
        int rc = store_open(url, &s, &eb);
        if (rc != cases[i].rc)
            fail_msg("%s: got %s, want %s (%s)", url, imgcls_err_name(rc), imgcls_err_name(cases[i].rc),
                     eb.msg);
        assert_null(s);
        assert_true(eb.msg[0] != 0);
    }
}

/* The file backend's own mapping: names are percent-encoded into one file each, never starting with
 * '.', so only the system's directory and put's temporary files do; system keys are paths below
 * ".imgcls"; put leaves no temporary file behind. */
static void t_file_specifics(void **state)
{
    fixture *fx = *state;
    char claim[STORE_MAX_SYSTEM_KEY];
    store_key_claim(ID, claim);
    for (size_t i = 0; i < sizeof client_names / sizeof *client_names; i++)
        put_ok(fx->s, client_names[i], "v", 1);
    put_ok(fx->s, claim, "c", 1);
    char path[256];
    snprintf(path, sizeof path, "%s/bucket", fx->dir);
    DIR *d = opendir(path);
    assert_non_null(d);
    struct dirent *ent;
    size_t files = 0;
    while ((ent = readdir(d)) != NULL) {
        if (!strcmp(ent->d_name, ".") || !strcmp(ent->d_name, ".."))
            continue;
        assert_null(strstr(ent->d_name, ".tmp-"));
        if (ent->d_name[0] == '.')
            assert_string_equal(ent->d_name, ".imgcls");
        else
            files++;
    }
    closedir(d);
    assert_int_equal(files, sizeof client_names / sizeof *client_names); /* one file per name */
    static const char *const on_disk[] = {"%2Eimgcls", "%252Eimgcls", "caf\xc3\xa9.jpg", "#1 100%25.png",
                                          "%2E..", "%2E.jpg", "%2Etmp-abc", ".imgcls/claims/" ID};
    for (size_t i = 0; i < sizeof on_disk / sizeof *on_disk; i++) {
        snprintf(path, sizeof path, "%s/bucket/%s", fx->dir, on_disk[i]);
        FILE *f = fopen(path, "r");
        if (!f)
            fail_msg("%s is not on disk", path);
        fclose(f);
    }
    /* A valid name whose encoded form is over NAME_MAX cannot be stored here, and says so. */
    char pct[101];
    memset(pct, '%', 100);
    pct[100] = 0;
    assert_int_equal(store_put(fx->s, pct, "x", 1), IMGCLS_EINVAL);
    assert_non_null(strstr(fx->s->err.msg, "encoded"));
}

/* Claims older than the cut-off go; newer ones, names, and temporary files stay. */
static void t_file_expire(void **state)
{
    fixture *fx = *state;
    char old[STORE_MAX_SYSTEM_KEY], fresh[STORE_MAX_SYSTEM_KEY], path[256];
    store_key_claim("00000000000000000000000000000000", old);
    store_key_claim(ID, fresh);
    put_ok(fx->s, old, "o", 1);
    put_ok(fx->s, fresh, "f", 1);
    put_ok(fx->s, "keep.jpg", "k", 1);
    snprintf(path, sizeof path, "%s/bucket/%s", fx->dir, old);
    struct timeval tv[2] = {{.tv_sec = 1000000}, {.tv_sec = 1000000}};
    assert_int_equal(utimes(path, tv), 0);
    size_t removed = 99;
    assert_int_equal(store_expire(fx->s, STORE_CLAIM_PREFIX, (long long)time(NULL), 3600, &removed), 0);
    assert_int_equal(removed, 1);
    bool e = true;
    assert_int_equal(store_exists(fx->s, old, &e), 0);
    assert_false(e);
    assert_value(fx->s, fresh, "f", 1);
    assert_value(fx->s, "keep.jpg", "k", 1);
    assert_int_equal(store_expire(fx->s, STORE_CLAIM_PREFIX, (long long)time(NULL), 3600, &removed), 0);
    assert_int_equal(removed, 0);
    assert_int_equal(store_expire(fx->s, "keep.jpg", 0, 0, &removed), IMGCLS_EINVAL); /* not a prefix */
    assert_int_equal(store_expire(fx->s, ".imgcls/none/", 0, 0, &removed), 0);      /* nothing there */
}

static void t_fault(void **state)
{
    fixture *fx = *state;
    char url[256];
    imgcls_errbuf eb = {{0}};
    store *s = NULL;
    snprintf(url, sizeof url, "fault:file://%s/bucket#op=put&fail=2&code=EBACKEND", fx->dir);
    assert_int_equal(store_open(url, &s, &eb), 0);
    put_ok(s, "one", "1", 1);
    assert_int_equal(store_put(s, "two", "2", 1), IMGCLS_EBACKEND);
    assert_non_null(strstr(s->err.msg, "put"));
    bool e = true;
    assert_int_equal(store_exists(s, "two", &e), 0);
    assert_false(e); /* the failed put wrote nothing */
    put_ok(s, "two", "2", 1);
    store_close(s);

    snprintf(url, sizeof url, "fault:file://%s/bucket#op=get&times=0&code=ETIMEDOUT", fx->dir);
    assert_int_equal(store_open(url, &s, &eb), 0);
    imgcls_buf b;
    buf_init(&b, 16);
    assert_int_equal(store_get(s, "one", &b), IMGCLS_ETIMEDOUT);
    assert_int_equal(store_get(s, "one", &b), IMGCLS_ETIMEDOUT);
    assert_int_equal(store_exists(s, "one", &e), 0);
    assert_true(e);
    buf_free(&b);
    store_close(s);

    snprintf(url, sizeof url, "fault:file://%s/bucket#op=del&code=EIO", fx->dir);
    assert_int_equal(store_open(url, &s, &eb), 0);
    assert_int_equal(store_del(s, "one"), IMGCLS_EIO);
    assert_int_equal(store_exists(s, "one", &e), 0);
    assert_true(e); /* the failed delete removed nothing */
    assert_int_equal(store_del(s, "one"), 0);
    store_close(s);
    store_close(NULL);
}

int main(void)
{
    int failed = 0;
    for (size_t i = 0; i < sizeof backends / sizeof *backends; i++)
        failed += run_backend(&backends[i]);
    for (size_t i = 0; i < sizeof aws_backends / sizeof *aws_backends; i++) {
        if (aws_test_enabled())
            failed += run_backend(&aws_backends[i]);
        else
            print_message("store backend %s: skipped here; tests/aws/test_contract_aws.py runs it against moto\n",
                          aws_backends[i].name);
    }
    const backend *be = &backends[0];
#define FILE_TEST(f) cmocka_unit_test_prestate_setup_teardown(f, setup, teardown, (void *)be)
    const struct CMUnitTest others[] = {
        cmocka_unit_test(t_key_valid), FILE_TEST(t_open_errors), FILE_TEST(t_file_specifics),
        FILE_TEST(t_file_expire),      FILE_TEST(t_fault),
    };
#undef FILE_TEST
    failed += cmocka_run_group_tests_name("keys, registry, file specifics, fault wrapper", others, NULL, NULL);
    return failed;
}
