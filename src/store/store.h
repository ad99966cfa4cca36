/* The object-store port (DESIGN.md §4): the input and output buckets, behind one interface for a
 * directory (local) and S3 (aws).
 *
 * A backend embeds `struct store` as its first member. Keys are validated by every backend with
 * store_key_valid, so no key can escape the bucket. A handle is used by one thread at a time. Details
 * of the last failure are in s->err.msg. */
#ifndef IMGCLS_STORE_STORE_H
#define IMGCLS_STORE_STORE_H

#include "common/buf.h"
#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>

#define STORE_MAX_KEY 1024

typedef struct store store;

struct store_ops {
    const char *scheme; /* "file", "s3", "fault" */
    /* Opens the bucket named by url, creating it if needed. *out is NULL on error. */
    int (*open)(const char *url, store **out, imgcls_errbuf *eb);
    void (*close)(store *s); /* accepts NULL */
    /* Stores value under key, replacing any old value atomically: a reader sees the old or the new
     * value, never a mix. Idempotent. IMGCLS_EINVAL for a bad key. */
    int (*put)(store *s, const char *key, const void *data, size_t len);
    /* Reads the value into out (freshly initialised by the caller; its max is the limit: over it,
     * IMGCLS_ETOOBIG). IMGCLS_ENOTFOUND when absent. */
    int (*get)(store *s, const char *key, imgcls_buf *out);
    /* *exists = whether the key is present. */
    int (*exists)(store *s, const char *key, bool *exists);
};

struct store {
    const struct store_ops *ops;
    imgcls_errbuf err;
};

/* e.g. file:///var/lib/imgcls/in, s3://bucket. IMGCLS_EUNSUPPORTED for an unknown scheme.
 *
 * file://<dir>
 *   <dir> is everything after "file://", used as a path as it stands: absolute with a third slash
 *   (file:///var/lib/imgcls/in), relative to the working directory without one (file://imgcls-data/in).
 *   Created with its parents if missing. No query. A key is a path below <dir>, so "a" and "a/b" cannot
 *   both exist: putting one while the other does is IMGCLS_EINVAL. Writes are atomic and durable
 *   (temporary file, fsync, rename, fsync of the directory).
 *
 * fault:<inner-url>[#op=<op>&fail=<N>&times=<K>&code=<ENAME>]
 *   Wraps the store <inner-url> and fails calls of <op> (put, get, exists, any, open) from the Nth on,
 *   K times, with IMGCLS_<ENAME>; without '#', passes everything through. See common/fault.h. */
int store_open(const char *url, store **out, imgcls_errbuf *eb);

/* A key is 1..STORE_MAX_KEY-1 bytes of [A-Za-z0-9._-] separated by single '/', with no segment that is
 * "." or "..", no leading or trailing '/', and no segment starting with '.'. */
bool store_key_valid(const char *key);

static inline void store_close(store *s)
{
    if (s)
        s->ops->close(s);
}
static inline int store_put(store *s, const char *key, const void *data, size_t len)
{
    return s->ops->put(s, key, data, len);
}
static inline int store_get(store *s, const char *key, imgcls_buf *out)
{
    return s->ops->get(s, key, out);
}
static inline int store_exists(store *s, const char *key, bool *exists)
{
    return s->ops->exists(s, key, exists);
}

#endif
