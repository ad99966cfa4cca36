/* The backend URLs and keys (src/common/url.h, common/fault.h, queue_open, store_open, store keys).
 * The first input byte picks what the rest (as a C string) goes to (a digit '0'..'9', or any byte
 * modulo 10):
 *   0 url_scheme   1 url_param_next, to the end   2 url_parse_ulong, against a reference
 *   3 fault_url_parse   4 store_key_valid, then exists/get of that key in a directory store
 *   5 queue_open("sqlite://<tmp>/q.db?" + rest)   6 queue_open("fault:sqlite://<tmp>/q.db?queue=q#" + rest)
 *   7 store_open("fault:file://<tmp>/st#" + rest)  8 store_open("file://<tmp>/d/" + rest), without ".."
 *   9 queue_url_is_sibling(home, other), rest split at the first '\n': the check on a message's reply_to
 * The opens only ever touch the temporary directory: the fuzzed part never reaches the path, except
 * in 8, which refuses "..". Invariants: the parsers' documented results, and nothing crashes. */
#include "fuzz_util.h"

#include "common/error.h"
#include "common/fault.h"
#include "common/url.h"
#include "queue/queue.h"
#include "store/store.h"

#include <ctype.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>

static const char *dir;
static store *bucket; /* for mode 4 */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    dir = fuzz_tmp_dir("url");
    char url[256];
    imgcls_errbuf eb = {{0}};
    snprintf(url, sizeof url, "file://%s/bucket", dir);
    FUZZ_CHECK(store_open(url, &bucket, &eb) == 0);
    return 0;
}

static void fuzz_scheme(const char *s)
{
    char out[16];
    if (url_scheme(s, out, sizeof out) != 0)
        return;
    size_t n = strlen(out);
    FUZZ_CHECK(n >= 1 && n < sizeof out && strncmp(s, out, n) == 0 && s[n] == ':' && isalpha((unsigned char)out[0]));
}

static void fuzz_params(const char *s)
{
    const char *cur = s;
    char key[8], val[16];
    size_t steps = 0;
    int rc;
    while ((rc = url_param_next(&cur, key, sizeof key, val, sizeof val)) > 0) {
        FUZZ_CHECK(key[0] != 0 && strlen(key) < sizeof key && strlen(val) < sizeof val);
        FUZZ_CHECK(cur > s && cur <= s + strlen(s));
        FUZZ_CHECK(++steps <= strlen(s)); /* each pair uses at least one byte: no endless loop */
    }
    FUZZ_CHECK(rc == 0 || rc == IMGCLS_EINVAL);
}

/* Digits only, no sign or space, in range: the reference for url_parse_ulong. */
static bool ulong_reference(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
    unsigned long v = 0;
    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        unsigned d = (unsigned)(*s - '0');
        if (v > (ULONG_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return v >= min && v <= max;
}

static void fuzz_ulong(const char *s)
{
    static const unsigned long ranges[][2] = {{0, 1000}, {1, 65535}, {0, ULONG_MAX}};
    for (size_t i = 0; i < sizeof ranges / sizeof *ranges; i++) {
        unsigned long got = 12345, want = 0;
        bool ok = url_parse_ulong(s, ranges[i][0], ranges[i][1], &got) == 0;
        FUZZ_CHECK(ok == ulong_reference(s, ranges[i][0], ranges[i][1], &want));
        FUZZ_CHECK(!ok || got == want);
    }
}

static void fuzz_fault(const char *s)
{
    static const char *const ops[] = {"send", "receive", "delete", NULL};
    char inner[64];
    fault_rule rule;
    imgcls_errbuf eb = {{0}};
    if (fault_url_parse(s, ops, inner, sizeof inner, &rule, &eb) != 0) {
        FUZZ_CHECK(eb.msg[0] != 0);
        return;
    }
    FUZZ_CHECK(strlen(inner) >= 1 && strlen(inner) < sizeof inner);
    for (int i = 0; i < 5; i++) {
        int rc = fault_hit(&rule, "send", &eb);
        FUZZ_CHECK(rc == 0 || rc < 0);
    }
}

static void fuzz_key(const char *s)
{
    if (!store_key_valid(s))
        return;
    size_t n = strlen(s);
    FUZZ_CHECK(n >= 1 && n < STORE_MAX_KEY && s[0] != '/');
    for (const char *seg = s; seg;) { /* no segment is "." or ".." */
        size_t len = strcspn(seg, "/");
        FUZZ_CHECK(!(len == 1 && seg[0] == '.') && !(len == 2 && seg[0] == '.' && seg[1] == '.'));
        seg = seg[len] ? seg + len + 1 : NULL;
    }
    /* Nothing was ever put. EINVAL: a valid key this backend cannot hold (a name over NAME_MAX once
     * encoded, store.h). */
    bool exists = true;
    int rc = store_exists(bucket, s, &exists);
    FUZZ_CHECK((rc == 0 && !exists) || rc == IMGCLS_EINVAL);
    imgcls_buf b;
    buf_init(&b, 1024);
    rc = store_get(bucket, s, &b);
    FUZZ_CHECK(rc == IMGCLS_ENOTFOUND || rc == IMGCLS_EINVAL);
    buf_free(&b);
}

/* Whatever home is, a sibling is never a fault: URL, never home itself (without its fault: and #rule),
 * and the same length as home but for the queue name. */
static void fuzz_sibling(char *s)
{
    char *nl = strchr(s, '\n');
    if (!nl)
        return;
    *nl = 0;
    const char *home = s, *other = nl + 1;
    if (!queue_url_is_sibling(home, other))
        return;
    FUZZ_CHECK(strncmp(other, "fault:", 6) != 0);
    const char *h = strncmp(home, "fault:", 6) == 0 ? home + 6 : home;
    size_t hn = strcspn(h, "#");
    FUZZ_CHECK(!(strlen(other) == hn && strncmp(h, other, hn) == 0));
    FUZZ_CHECK(!strstr(other, "-dlq&") && !(strlen(other) >= 4 && strcmp(other + strlen(other) - 4, "-dlq") == 0));
}

static void fuzz_queue(const char *prefix, const char *s)
{
    char url[1024];
    if ((size_t)snprintf(url, sizeof url, "%s%s", prefix, s) >= sizeof url)
        return;
    queue *q = NULL;
    imgcls_errbuf eb = {{0}};
    if (queue_open(url, &q, &eb) != 0) {
        FUZZ_CHECK(q == NULL && eb.msg[0] != 0);
        return;
    }
    queue_depth d;
    for (int i = 0; i < 2; i++)
        queue_depth_get(q, &d); /* may fail: that is what a fault rule is for */
    queue_close(q);
}

static void fuzz_store(const char *prefix, const char *s)
{
    char url[1024];
    if ((size_t)snprintf(url, sizeof url, "%s%s", prefix, s) >= sizeof url)
        return;
    store *st = NULL;
    imgcls_errbuf eb = {{0}};
    if (store_open(url, &st, &eb) != 0) {
        FUZZ_CHECK(st == NULL && eb.msg[0] != 0);
        return;
    }
    bool exists;
    for (int i = 0; i < 2; i++)
        store_exists(st, "a", &exists);
    store_close(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096)
        return 0;
    char *s = malloc(size);
    FUZZ_CHECK(s != NULL);
    memcpy(s, data + 1, size - 1);
    s[size - 1] = 0;
    char prefix[256];
    unsigned mode = data[0] >= '0' && data[0] <= '9' ? (unsigned)(data[0] - '0') : data[0] % 10u;
    switch (mode) {
    case 0: fuzz_scheme(s); break;
    case 1: fuzz_params(s); break;
    case 2: fuzz_ulong(s); break;
    case 3: fuzz_fault(s); break;
    case 4: fuzz_key(s); break;
    case 5:
        snprintf(prefix, sizeof prefix, "sqlite://%s/q.db?", dir);
        fuzz_queue(prefix, s);
        break;
    case 6:
        snprintf(prefix, sizeof prefix, "fault:sqlite://%s/q.db?queue=q&sync=normal#", dir);
        fuzz_queue(prefix, s);
        break;
    case 7:
        snprintf(prefix, sizeof prefix, "fault:file://%s/st#", dir);
        fuzz_store(prefix, s);
        break;
    case 8:
        snprintf(prefix, sizeof prefix, "file://%s/d/", dir);
        if (!strstr(s, "..") && strlen(s) <= 64)
            fuzz_store(prefix, s);
        break;
    case 9: fuzz_sibling(s); break;
    }
    free(s);
    return 0;
}
