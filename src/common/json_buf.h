/* JSON into a bounded buffer: jansson's serialiser writing through buf_append, so a JSON document
 * obeys the same maximum as every other buffer that leaves the process (a message, an HTTP answer). */
#ifndef IMGCLS_COMMON_JSON_BUF_H
#define IMGCLS_COMMON_JSON_BUF_H

#include "common/buf.h"

#include <jansson.h>

/* Appends o to out as compact JSON (flags are added to JSON_COMPACT, e.g. JSON_REAL_PRECISION(6)).
 * Returns 0, IMGCLS_ETOOBIG past out's maximum, IMGCLS_ENOMEM, or IMGCLS_EINVAL (o is NULL or not
 * serialisable); on failure out is left as it was. Does not take o's reference. */
int json_buf_dump(const json_t *o, size_t flags, imgcls_buf *out);

#endif
