/* The pure parts of the S3 store, for the unit tests (private to src/store/ and tests). */
#ifndef IMGCLS_STORE_STORE_S3_H
#define IMGCLS_STORE_STORE_S3_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>

#define S3_MAX_BUCKET 64
#define S3_MAX_PREFIX 256

typedef enum s3_addressing { S3_AUTO, S3_PATH, S3_VIRTUAL } s3_addressing;

/* "s3://bucket[/prefix][?addressing=path|virtual]": bucket by S3's naming rules (3..63 of [a-z0-9.-],
 * starting and ending with a letter or digit), prefix segments of [A-Za-z0-9._-] joined by '/', no
 * leading '.' in a segment. IMGCLS_EINVAL otherwise. */
int store_s3_parse_url(const char *url, char bucket[S3_MAX_BUCKET], char prefix[S3_MAX_PREFIX], s3_addressing *addr,
                       imgcls_errbuf *eb);

/* The URL of object key (NULL: the bucket itself) under endpoint ("https://s3.us-east-1.amazonaws.com",
 * "http://127.0.0.1:5000"): path-style <endpoint>/<bucket>/<key> or virtual-hosted
 * <scheme>://<bucket>.<host>/<key>, the key (after prefix + '/') URI-encoded byte by byte except '/'.
 * IMGCLS_ETOOBIG when it does not fit. */
int store_s3_object_url(const char *endpoint, const char *bucket, const char *prefix, const char *key, bool virtual_host,
                        char *out, size_t outsz);

#endif
