#include "store/store.h"

#include "common/url.h"
#include "store/store_backend.h"

#include <string.h>

/* Scheme -> backend, fixed at build time (see queue.c for why a table). */
static const struct store_ops *const store_backends[] = {
    &store_file_ops,
    &store_fault_ops,
};

int store_open(const char *url, store **out, imgcls_errbuf *eb)
{
    char scheme[16];
    *out = NULL;
    if (!url || url_scheme(url, scheme, sizeof scheme))
        return imgcls_fail(eb, IMGCLS_EINVAL, "store: '%s' is not a URL", url ? url : "(null)");
    for (size_t i = 0; i < sizeof store_backends / sizeof *store_backends; i++)
        if (strcmp(store_backends[i]->scheme, scheme) == 0)
            return store_backends[i]->open(url, out, eb);
    return imgcls_fail(eb, IMGCLS_EUNSUPPORTED, "store: no backend for scheme '%s'", scheme);
}

static bool key_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

/* A whitelist rather than a list of dangerous patterns: what is not listed cannot reach a path. A
 * segment may not start with '.', which rules out "." and ".." and keeps the file backend's temporary
 * files (".tmp-*") out of the key space. The locale-free character test keeps bytes >= 0x80 out. */
bool store_key_valid(const char *key)
{
    if (!key)
        return false;
    size_t n = strnlen(key, STORE_MAX_KEY);
    if (n == 0 || n >= STORE_MAX_KEY)
        return false;
    bool seg_start = true;
    for (size_t i = 0; i < n; i++) {
        char c = key[i];
        if (c == '/') {
            if (seg_start)
                return false; /* leading '/' or "//" */
            seg_start = true;
            continue;
        }
        if ((seg_start && c == '.') || !key_char_ok(c))
            return false;
        seg_start = false;
    }
    return !seg_start; /* no trailing '/' */
}
