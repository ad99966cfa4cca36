/* Unit tests for the file-name rule (src/common/filename.h): the names people's phones and desktops
 * give their files are accepted as they are; paths are reduced to their last component; control
 * characters, NUL and invalid UTF-8 are refused with a reason. */
#include "common/filename.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

typedef struct name_case {
    const char *name;
    size_t len; /* 0: strlen(name) */
    const char *problem; /* NULL: accepted */
} name_case;

static void check_cases(const name_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].name);
        const char *got = filename_problem(cases[i].name, len);
        if (!cases[i].problem && got)
            fail_msg("case %zu (%s): refused: %s", i, cases[i].name, got);
        if (cases[i].problem && (!got || strcmp(got, cases[i].problem) != 0))
            fail_msg("case %zu: want \"%s\", got \"%s\"", i, cases[i].problem, got ? got : "(accepted)");
    }
}

static void test_real_names_are_accepted(void **state)
{
    (void)state;
    static const name_case cases[] = {
        {"test_0.JPEG", 0, NULL},
        {"my photo.jpg", 0, NULL},
        {"IMG_2041 (1).JPG", 0, NULL},
        {"caf\xc3\xa9.jpg", 0, NULL},              /* café */
        {"a+b.jpg", 0, NULL},
        {"#1 100%.png", 0, NULL},
        {"\xe7\x8c\xab.jpg", 0, NULL},             /* 猫 */
        {"\xf0\x9f\x90\x88 cat.png", 0, NULL},     /* emoji, 4 bytes */
        {"README", 0, NULL},
        {"archive.tar.gz", 0, NULL},
        {".hidden", 0, NULL},
        {"...", 0, NULL},
        {"results", 0, NULL},
        {".imgcls", 0, NULL},
        {"requests.png", 0, NULL},
        {"a:b;c,d'e\"f<g>h|i?j*k", 0, NULL},
    };
    check_cases(cases, sizeof cases / sizeof *cases);
}

static void test_bad_names_say_why(void **state)
{
    (void)state;
    static const char *const utf8 = "the file name is not valid UTF-8";
    static const char *const ctrl = "the file name has a control character";
    static const name_case cases[] = {
        {"", 0, "the file name is empty"},
        {".", 0, "the file name is '.' or '..'"},
        {"..", 0, "the file name is '.' or '..'"},
        {"a/b", 0, "the file name has a path separator"},
        {"a\\b", 0, "the file name has a path separator"},
        {"a\nb.jpg", 0, ctrl},
        {"a\tb", 0, ctrl},
        {"a\x7f", 0, ctrl},
        {"a\xc2\x85", 0, ctrl},      /* U+0085, a C1 control */
        {"a\0b", 3, ctrl},           /* NUL inside */
        {"caf\xe9.jpg", 0, utf8},    /* Latin-1, not UTF-8 */
        {"\xc0\xaf", 0, utf8},       /* overlong '/' */
        {"\xe0\x80\xaf", 0, utf8},   /* overlong, 3 bytes */
        {"\xed\xa0\x80", 0, utf8},   /* a surrogate */
        {"\xf4\x90\x80\x80", 0, utf8}, /* over U+10FFFF */
        {"\xe7\x8c", 0, utf8},       /* truncated */
        {"\x80", 0, utf8},           /* a lone continuation byte */
        {"\xff", 0, utf8},
    };
    check_cases(cases, sizeof cases / sizeof *cases);
    assert_non_null(filename_problem(NULL, 0));
}

static void test_length_limit(void **state)
{
    (void)state;
    char name[FILENAME_MAX_BYTES + 2];
    memset(name, 'a', sizeof name);
    assert_null(filename_problem(name, FILENAME_MAX_BYTES));
    assert_string_equal(filename_problem(name, FILENAME_MAX_BYTES + 1), "the file name is longer than 255 bytes");
}

static void test_paths_are_reduced_to_their_last_component(void **state)
{
    (void)state;
    static const struct {
        const char *raw, *want;
    } cases[] = {
        {"C:\\Users\\me\\cat.jpg", "cat.jpg"},
        {"../../etc/passwd", "passwd"},
        {"/abs/path/my photo.jpg", "my photo.jpg"},
        {"dir\\sub/mixed.png", "mixed.png"},
        {"plain.jpg", "plain.jpg"},
    };
    char out[FILENAME_MAX_BYTES + 1];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        assert_null(filename_from_client(cases[i].raw, strlen(cases[i].raw), out, sizeof out));
        assert_string_equal(out, cases[i].want);
    }
    assert_string_equal(filename_from_client("C:\\Users\\", 9, out, sizeof out), "the file name is empty");
    assert_string_equal(out, "");
    assert_string_equal(filename_from_client("dir/..", 6, out, sizeof out), "the file name is '.' or '..'");
    assert_non_null(filename_from_client("a/b\x01", 4, out, sizeof out));
}

static void test_stem(void **state)
{
    (void)state;
    assert_int_equal(filename_stem_len("test_0.JPEG"), 6);
    assert_int_equal(filename_stem_len("archive.tar.gz"), 11);
    assert_int_equal(filename_stem_len("README"), 6);
    assert_int_equal(filename_stem_len(".profile"), 8);
    assert_int_equal(filename_stem_len("my photo (1).jpg"), 12);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_names_are_accepted),
        cmocka_unit_test(test_bad_names_say_why),
        cmocka_unit_test(test_length_limit),
        cmocka_unit_test(test_paths_are_reduced_to_their_last_component),
        cmocka_unit_test(test_stem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
