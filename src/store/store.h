/* The object-store port (DESIGN.md §4): the input and output buckets, behind one interface for a
 * directory (local) and S3 (aws).
 *
 * A backend embeds `struct store` as its first member. Keys are validated by every backend with
 * store_key_valid. A handle is used by one thread at a time. Details of the last failure are in
 * s->err.msg.
 *
 * Bucket layout (DESIGN.md §3), the same in every backend. A key is one of two kinds, and no key is both:
 *
 *   name key    a client's file name, or its stem: one path component by filename.h's rule (valid UTF-8,
 *               no control character, no '/' or '\', not "." or ".."). The assignment's objects:
 *               "test_0.JPEG" in the input bucket, "test_0" in the output bucket.
 *   system key  STORE_SYSTEM_PREFIX followed by segments of [A-Za-z0-9_-][A-Za-z0-9._-]* joined by
 *               single '/': the objects imgcls writes for itself (store_key_claim, store_key_result).
 *
 * A name key has no '/' and every system key does, so no client's name can equal, contain or shadow a
 * system key, whatever it is ("requests", ".imgcls", "results.jpg"). A backend keeps that true in its own
 * key syntax: S3 takes both kinds as they are; the directory store percent-encodes name keys so that
 * they never start with '.' and keeps system keys under the directory ".imgcls" (store_file.c). */
#ifndef IMGCLS_STORE_STORE_H
#define IMGCLS_STORE_STORE_H

#include "common/buf.h"
#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>

#define STORE_MAX_KEY 1024
/* Every system key starts with this; no name key can (a name has no '/'). */
#define STORE_SYSTEM_PREFIX ".imgcls/"
/* Longest system key this build makes, including the NUL. */
#define STORE_MAX_SYSTEM_KEY 128

typedef struct store store;

struct store_ops {
    const char *scheme; /* "file", "s3", "fault" */
    /* Opens the bucket named by url, creating it if needed (file; s3 only checks it exists). *out is NULL
     * on error. */
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
    /* Removes the key. Idempotent: removing a key that is absent returns 0. */
    int (*del)(store *s, const char *key);
    /* Removes the objects under the system prefix `prefix` (a system key ending in '/') that were last
     * written more than max_age_s seconds before now_s (wall-clock seconds), and sets *removed. A backend
     * that leaves this to the bucket itself (an S3 lifecycle rule) sets NULL here; store_expire then
     * returns 0 with *removed = 0. */
    int (*expire)(store *s, const char *prefix, long long now_s, long long max_age_s, size_t *removed);
    /* Optional (NULL: store_put_copy puts). Makes dst hold src's value without the caller's bytes: the
     * file store hard-links (one write of an image instead of two), S3 copies server-side (CopyObject).
     * dst is replaced atomically, as by put; src is unchanged, and removing it later leaves dst. */
    int (*link)(store *s, const char *src, const char *dst);
};

struct store {
    const struct store_ops *ops;
    imgcls_errbuf err;
};

/* e.g. file:///var/lib/imgcls/in, s3://bucket. IMGCLS_EUNSUPPORTED for an unknown scheme.
 *
 * file://<dir>[?sync=full|normal]
 *   <dir> is everything after "file://" up to a '?', used as a path as it stands: absolute with a third
 *   slash (file:///var/lib/imgcls/in), relative to the working directory without one
 *   (file://imgcls-data/in). Created with its parents if missing. A name key is one file directly in <dir>, its name
 *   percent-encoded (store_file.c); a system key is a path below <dir>/.imgcls. A name whose encoded
 *   form is over NAME_MAX (255) bytes cannot be stored here: IMGCLS_EINVAL. Writes are atomic
 *   (temporary file, rename). Durability: sync=full (the default) fsyncs the file and the directory, so
 *   a put that returned survives power loss; sync=normal leaves the fsyncs out, so it survives any
 *   process crash but not a power loss (what `imgcls up` uses, matching its queues' sync=normal).
 *
 * s3://<bucket>[/<prefix>][?addressing=path|virtual]
 *   An S3 bucket (store_s3.c); objects are <prefix>/<key>, keys as they are (UTF-8, URI-encoded on the
 *   wire). Signing, credentials and endpoint as in aws/aws.h. Addressing: virtual-hosted on AWS,
 *   path-style when AWS_ENDPOINT_URL(_S3) is set or the name has a '.'. open does not create the bucket
 *   (the deployment does); it checks it with HeadBucket: IMGCLS_ENOTFOUND when it does not exist. A
 *   vanished bucket later is IMGCLS_EBACKEND (temporary), never IMGCLS_ENOTFOUND, which only ever means
 *   an absent key. expire is the bucket's lifecycle rule, not a call.
 *
 * fault:<inner-url>[#op=<op>&fail=<N>&times=<K>&code=<ENAME>]
 *   Wraps the store <inner-url> and fails calls of <op> (put, get, exists, del, expire, any, open) from
 *   the Nth on, K times, with IMGCLS_<ENAME>; without '#', passes everything through. See
 *   common/fault.h. */
int store_open(const char *url, store **out, imgcls_errbuf *eb);

/* Whether key is a name key or a system key (the layout above), shorter than STORE_MAX_KEY. */
bool store_key_valid(const char *key);
/* Whether key is a system key. */
bool store_key_is_system(const char *key);

/* The system's objects. id is a request id (32 lowercase hex: message.h); out has
 * STORE_MAX_SYSTEM_KEY bytes.
 *   claim   input bucket, ".imgcls/claims/<id>": a large image the request message refers to, removed
 *           once the request is answered (claims a crash left behind expire: store_expire).
 *   result  output bucket, ".imgcls/results/<id>.json": the response message, for GET /results/<id>. */
#define STORE_CLAIM_PREFIX STORE_SYSTEM_PREFIX "claims/"
#define STORE_RESULT_PREFIX STORE_SYSTEM_PREFIX "results/"
void store_key_claim(const char *id, char out[STORE_MAX_SYSTEM_KEY]);
void store_key_result(const char *id, char out[STORE_MAX_SYSTEM_KEY]);

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
static inline int store_del(store *s, const char *key)
{
    return s->ops->del(s, key);
}
/* Stores data under dst, which src holds already (the web tier's named copy of a claim-checked image):
 * by link when the backend has it, else -- or if the link fails -- by put. */
static inline int store_put_copy(store *s, const char *src, const char *dst, const void *data, size_t len)
{
    if (s->ops->link && s->ops->link(s, src, dst) == 0)
        return 0;
    return s->ops->put(s, dst, data, len);
}
static inline int store_expire(store *s, const char *prefix, long long now_s, long long max_age_s,
                               size_t *removed)
{
    *removed = 0;
    return s->ops->expire ? s->ops->expire(s, prefix, now_s, max_age_s, removed) : 0;
}

#endif
