#include "common/url.h"

#include "common/error.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int url_scheme(const char *url, char *out, size_t outsz)
{
    size_t i = 0;
    if (!url || !isalpha((unsigned char)url[0]))
        return IMGCLS_EINVAL;
    for (; url[i] && url[i] != ':'; i++) {
        unsigned char c = (unsigned char)url[i];
        if (!(islower(c) || isdigit(c) || c == '+' || c == '.' || c == '-'))
            return IMGCLS_EINVAL;
    }
    if (url[i] != ':' || i + 1 > outsz)
        return IMGCLS_EINVAL;
    memcpy(out, url, i);
    out[i] = 0;
    return 0;
}

/* Copies [s, s+n) into dst of size dstsz with a NUL; IMGCLS_EINVAL if it does not fit. */
static int copy_span(char *dst, size_t dstsz, const char *s, size_t n)
{
    if (n + 1 > dstsz)
        return IMGCLS_EINVAL;
    memcpy(dst, s, n);
    dst[n] = 0;
    return 0;
}

int url_param_next(const char **cursor, char *key, size_t keysz, char *val, size_t valsz)
{
    const char *p = *cursor;
    while (*p == '&')
        p++;
    if (!*p) {
        *cursor = p;
        return 0;
    }
    size_t n = strcspn(p, "&");
    const char *eq = memchr(p, '=', n);
    if (!eq || eq == p)
        return IMGCLS_EINVAL;
    if (copy_span(key, keysz, p, (size_t)(eq - p)) || copy_span(val, valsz, eq + 1, n - (size_t)(eq - p) - 1))
        return IMGCLS_EINVAL;
    *cursor = p + n;
    return 1;
}

int url_parse_ulong(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
    if (!s || !isdigit((unsigned char)s[0]))
        return IMGCLS_EINVAL;
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return IMGCLS_EINVAL;
    *out = v;
    return 0;
}
