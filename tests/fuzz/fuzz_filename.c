/* The file-name rules (common/filename.h): whether a client's name for its upload is acceptable, the
 * reduction of a client's path to its last component, and the UTF-8 check behind both.
 * Whatever the rules, they must not crash or read past the length they are given, and must refuse
 * what could leave the bucket: an empty or over-long name, '/', '\', "." and "..", a NUL. utf8_valid is
 * also checked against the straightforward decoder below. */
#include "fuzz_util.h"

#include <stdbool.h>
#include <string.h>

#include "common/filename.h"

/* Reference: RFC 3629's table of well-formed byte sequences, written out. */
static bool utf8_reference(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned lo = 0x80, hi = 0xbf;
        if (c <= 0x7f)
            len = 1;
        else if (c >= 0xc2 && c <= 0xdf)
            len = 2;
        else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            lo = c == 0xe0 ? 0xa0 : 0x80;
            hi = c == 0xed ? 0x9f : 0xbf;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            lo = c == 0xf0 ? 0x90 : 0x80;
            hi = c == 0xf4 ? 0x8f : 0xbf;
        } else
            return false;
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            unsigned b = s[i + k];
            if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xbf))
                return false;
        }
        i += len;
    }
    return true;
}

static void check_name(const char *name, size_t size)
{
    const char *problem = filename_problem(name, size);
    FUZZ_CHECK(problem == filename_problem(name, size));
    FUZZ_CHECK(utf8_valid(name, size) == utf8_reference((const unsigned char *)name, size));
    if (problem) {
        FUZZ_CHECK(strlen(problem) > 0); /* the 400 message */
        return;
    }
    FUZZ_CHECK(size >= 1 && size <= FILENAME_MAX_BYTES);
    FUZZ_CHECK(!memchr(name, '/', size) && !memchr(name, '\\', size) && !memchr(name, 0, size));
    FUZZ_CHECK(!(size == 1 && name[0] == '.') && !(size == 2 && name[0] == '.' && name[1] == '.'));
    FUZZ_CHECK(utf8_valid(name, size));
}

static void check_client(const char *raw, size_t size)
{
    char out[FILENAME_MAX_BYTES + 1];
    memset(out, 'x', sizeof out);
    const char *problem = filename_from_client(raw, size, out, sizeof out);
    if (problem) {
        FUZZ_CHECK(out[0] == 0);
        return;
    }
    size_t n = strnlen(out, sizeof out);
    FUZZ_CHECK(n < sizeof out);
    FUZZ_CHECK(filename_problem(out, n) == NULL);
    FUZZ_CHECK(n <= size && memcmp(out, raw + size - n, n) == 0); /* the last component, as sent */
    FUZZ_CHECK(filename_stem_len(out) <= n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so that ASan sees any read past the length given. */
    char *name = malloc(size ? size : 1);
    FUZZ_CHECK(name != NULL);
    memcpy(name, data, size);
    check_name(name, size);
    check_client(name, size);
    free(name);
    return 0;
}
