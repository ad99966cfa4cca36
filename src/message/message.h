/* The request and response messages that travel between the web tier and the workers (DESIGN.md §3).
 *
 * Versioned JSON ("v":1), never larger than QUEUE_MAX_BODY. Encoding and decoding are pure: bytes in,
 * struct out. Every decoded field is checked (type, length, range); anything else is IMGCLS_ECORRUPT
 * with eb naming the field. */
#ifndef IMGCLS_MESSAGE_MESSAGE_H
#define IMGCLS_MESSAGE_MESSAGE_H

#include "common/buf.h"
#include "common/error.h"
#include "common/filename.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MESSAGE_VERSION 1
#define MESSAGE_ID_LEN 32     /* a request id is exactly this many lowercase hex characters */
#define MESSAGE_MAX_ID 64     /* request id field, incl. NUL */
#define MESSAGE_MAX_FILE (FILENAME_MAX_BYTES + 1) /* file name, incl. NUL */
#define MESSAGE_MAX_REPLY 512 /* reply queue URL, incl. NUL */
#define MESSAGE_MAX_LABEL 128 /* a label, incl. NUL */
#define MESSAGE_MAX_TOP 10
/* Images up to this size travel inline (base64); larger ones go to the input bucket (claim check).
 * 3/4 of the SQS limit leaves room for the base64 growth and the other fields. */
#define MESSAGE_INLINE_MAX ((size_t)180 * 1024)

typedef struct msg_request {
    char id[MESSAGE_MAX_ID];
    char file[MESSAGE_MAX_FILE];
    char reply_to[MESSAGE_MAX_REPLY];
    /* Exactly one of: the image inline (image/image_len, owned), or its key in the input bucket. */
    unsigned char *image;
    size_t image_len;
    char image_key[MESSAGE_MAX_FILE + MESSAGE_MAX_ID];
} msg_request;

typedef struct msg_class {
    char label[MESSAGE_MAX_LABEL];
    uint32_t index;
    double prob;
} msg_class;

typedef struct msg_timing {
    double queue_ms, fetch_ms, decode_ms, infer_ms, total_ms;
} msg_timing;

#define MESSAGE_MAX_ENGINE 64

typedef struct msg_response {
    char id[MESSAGE_MAX_ID];
    char file[MESSAGE_MAX_FILE];
    /* Either a result (error_code[0] == 0) ... */
    msg_class top[MESSAGE_MAX_TOP]; /* top[0] is the answer */
    size_t ntop;
    char worker[64];
    /* What the worker's network runs on, "runtime/isa/precision/threads" ("onednn/avx2/fp32/1"), of
     * [a-z0-9_./-]; empty: not said (optional in the message, and it becomes a metrics label). */
    char engine[MESSAGE_MAX_ENGINE];
    msg_timing ms;
    /* ... or an error: code is an IMGCLS_E* name ("EFORMAT"), message says what was wrong. */
    char error_code[32];
    char error_message[256];
} msg_response;

/* Encodes into out (its max bounds the result), appending; on failure out is left as it was.
 * IMGCLS_ETOOBIG if it would not fit, or if an inline image is over MESSAGE_INLINE_MAX (use the input
 * bucket). IMGCLS_EINVAL for a struct that breaks the rules decode enforces: an empty id, file or
 * reply_to, both or neither of image and image_key, text that is not UTF-8, a result with ntop outside
 * 1..MESSAGE_MAX_TOP or an empty label, a NaN or infinite number. A response is an error response when
 * error_code[0] != 0; its file may be empty. */
int msg_request_encode(const msg_request *r, imgcls_buf *out);
int msg_response_encode(const msg_response *r, imgcls_buf *out);

/* Whether s is a request id as the web tier makes them: exactly MESSAGE_ID_LEN lowercase hex characters.
 * A message is outside input, so its id is checked before it names anything (a result key, a claim). */
bool msg_id_valid(const char *s);

/* Decodes; on success the caller frees with msg_request_free (the response owns nothing). On failure
 * *out is zeroed and owns nothing. Fields this version does not know are ignored, so that a writer can
 * add an optional field under "v":1 during a rolling upgrade; everything known is checked. */
int msg_request_decode(const unsigned char *data, size_t len, msg_request *out, imgcls_errbuf *eb);
int msg_response_decode(const unsigned char *data, size_t len, msg_response *out, imgcls_errbuf *eb);
void msg_request_free(msg_request *r);

/* What decode checks beyond types and lengths: a request's id is msg_id_valid, its file passes
 * filename_problem, its image_key (if any) is the request's own claim key (store_key_claim), and its
 * reply_to is non-empty (whether it names a queue the worker may answer on is the worker's call:
 * queue_url_is_sibling). A response's id is msg_id_valid and its file, when not empty, passes
 * filename_problem. */

#endif
