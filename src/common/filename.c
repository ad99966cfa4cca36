/* File-name rules (contract in filename.h).
 *
 * Why so permissive: a bucket key is any UTF-8 string, so the only names refused are those that cannot
 * be shown or stored faithfully (invalid UTF-8, control characters) or that are paths rather than names.
 * Keeping the names out of the system's own keys is the bucket layout's job (store.h), not this rule's. */
#include "common/filename.h"

#include <stdint.h>
#include <string.h>

/* Decodes one UTF-8 sequence at s[0..len): its code point in *cp and its length, or 0 when the bytes
 * are not a valid, shortest-form encoding of a scalar value. */
static size_t utf8_next(const unsigned char *s, size_t len, uint32_t *cp)
{
    static const uint32_t min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
    size_t n = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3 : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (n == 0 || n > len)
        return 0;
    uint32_t c = n == 1 ? s[0] : (uint32_t)(s[0] & (0x7f >> n));
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (uint32_t)(s[i] & 0x3f);
    }
    if (c < min_for_len[n] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return n;
}

bool utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    uint32_t cp;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_next(p + i, len - i, &cp);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

const char *filename_problem(const char *name, size_t len)
{
    if (!name || len == 0)
        return "the file name is empty";
    if (len > FILENAME_MAX_BYTES)
        return "the file name is longer than 255 bytes";
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        return "the file name is '.' or '..'";
    const unsigned char *p = (const unsigned char *)name;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = utf8_next(p + i, len - i, &cp);
        if (n == 0)
            return "the file name is not valid UTF-8";
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            return "the file name has a control character";
        if (cp == '/' || cp == '\\')
            return "the file name has a path separator";
        i += n;
    }
    return NULL;
}

const char *filename_from_client(const char *raw, size_t len, char *out, size_t outsz)
{
    out[0] = 0;
    if (!raw)
        return "the file name is empty";
    /* Both separators: a Windows browser may send the whole path "C:\Users\me\cat.jpg". */
    size_t start = 0;
    for (size_t i = 0; i < len; i++)
        if (raw[i] == '/' || raw[i] == '\\')
            start = i + 1;
    const char *why = filename_problem(raw + start, len - start);
    if (why)
        return why;
    if (len - start >= outsz)
        return "the file name is longer than 255 bytes";
    memcpy(out, raw + start, len - start);
    out[len - start] = 0;
    return NULL;
}

size_t filename_stem_len(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && dot != name ? (size_t)(dot - name) : strlen(name);
}
