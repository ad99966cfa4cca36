/* Small, strict helpers for the backend URLs of DESIGN.md §4 ("sqlite:///db?queue=requests", "file:///d",
 * "fault:<inner>#op=send&fail=2").
 *
 * Percent-decoding is deliberately not supported: every value these URLs carry (queue names, numbers,
 * error names) is restricted to characters that need no escaping, and refusing '%' is simpler and safer
 * than decoding it in one place and forgetting in another. */
#ifndef IMGCLS_COMMON_URL_H
#define IMGCLS_COMMON_URL_H

#include <stddef.h>

/* Copies the scheme of url (the text before the first ':', made of [a-z0-9+.-] and starting with a
 * letter) into out. Returns 0, or IMGCLS_EINVAL when there is no valid scheme or it does not fit. */
int url_scheme(const char *url, char *out, size_t outsz);

/* Iterates the pairs of a query string "k1=v1&k2=v2". *cursor points into the string and advances.
 * Returns 1 with key and val filled (both NUL-terminated), 0 at the end, or IMGCLS_EINVAL for a pair
 * without '=', an empty key, or a key or value that does not fit. Empty pairs ("a=1&&b=2") are skipped. */
int url_param_next(const char **cursor, char *key, size_t keysz, char *val, size_t valsz);

/* Parses a decimal number in [min, max]: digits only, no sign, no spaces. 0 or IMGCLS_EINVAL. */
int url_parse_ulong(const char *s, unsigned long min, unsigned long max, unsigned long *out);

#endif
