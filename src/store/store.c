#include "store/store.h"

#include "common/filename.h"
#include "common/url.h"
#include "store/store_backend.h"

#include <stdio.h>
#include <string.h>

/* Scheme -> backend, fixed at build time (see queue.c for why a table). */
static const struct store_ops *const store_backends[] = {
    &store_file_ops,
    &store_fault_ops,
    &store_s3_ops,
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

static bool system_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

/* A whitelist: the system's own keys are made by this code, so they only ever need these characters.
 * No segment starts with '.', which rules out "." and ".." and keeps the file backend's temporary files
 * (".tmp-*") apart from every key. */
bool store_key_is_system(const char *key)
{
    size_t pre = strlen(STORE_SYSTEM_PREFIX);
    if (!key || strncmp(key, STORE_SYSTEM_PREFIX, pre) != 0)
        return false;
    size_t n = strnlen(key, STORE_MAX_KEY);
    if (n >= STORE_MAX_KEY)
        return false;
    bool seg_start = true;
    for (size_t i = pre; i < n; i++) {
        char c = key[i];
        if (c == '/') {
            if (seg_start)
                return false; /* "//" */
            seg_start = true;
            continue;
        }
        if ((seg_start && c == '.') || !system_char_ok(c))
            return false;
        seg_start = false;
    }
    return !seg_start; /* something after the prefix, and no trailing '/' */
}

bool store_key_valid(const char *key)
{
    if (!key)
        return false;
    size_t n = strnlen(key, STORE_MAX_KEY);
    return n < STORE_MAX_KEY && (store_key_is_system(key) || filename_problem(key, n) == NULL);
}

void store_key_claim(const char *id, char out[STORE_MAX_SYSTEM_KEY])
{
    snprintf(out, STORE_MAX_SYSTEM_KEY, "%s%s", STORE_CLAIM_PREFIX, id);
}

void store_key_result(const char *id, char out[STORE_MAX_SYSTEM_KEY])
{
    snprintf(out, STORE_MAX_SYSTEM_KEY, "%s%s.json", STORE_RESULT_PREFIX, id);
}
