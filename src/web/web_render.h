/* What the web tier says, as bytes: request ids, the checks on file names, and the bodies of answers
 * and errors in the two forms of DESIGN.md §3 (text/plain by default, JSON with Accept: application/json).
 *
 * Pure functions (web_id_new aside, which reads getrandom), so the exact bytes clients see are unit
 * tested without a server. */
#ifndef IMGCLS_WEB_WEB_RENDER_H
#define IMGCLS_WEB_WEB_RENDER_H

#include "common/buf.h"
#include "message/message.h"
#include "web/web_pending.h"

#include <stdbool.h>
#include <stddef.h>

/* Writes a fresh id: WEB_ID_LEN lowercase hex characters from getrandom, NUL-terminated.
 * Returns 0 or IMGCLS_EIO. */
int web_id_new(char out[WEB_ID_LEN + 1]);

/* Whether an Accept header (may be NULL) asks for JSON. */
bool web_accepts_json(const char *accept);

/* The web tier's own stages of one request, in milliseconds. */
typedef struct web_stage_ms {
    double receive; /* first header to the end of the body */
    double store;   /* the input bucket writes */
    double send;    /* the request message onto the queue */
    double wait;    /* sent to answered */
    double total;   /* first header to the answer */
} web_stage_ms;

/* The HTTP status for a worker's error code: EFORMAT 422, ETOOBIG 413, EUNSUPPORTED 415, else 500. */
unsigned web_status_for_error(const char *code);

/* The answer to a completed request, from the worker's response: 200 with the top-1 label (text, no
 * newline) or {id, file, label, index, prob, top, worker, ms} (JSON; at most 5 classes in top; ms gets
 * the web stages too when web is not NULL), or the worker's error with its status. Appends to out and
 * sets *status. Returns 0 or the buffer's error. */
int web_render_response(const msg_response *r, const web_stage_ms *web, bool json, imgcls_buf *out,
                        unsigned *status);

/* An error body: "message\n" as text, or {"error":{"code":code,"message":message},"status":N} in JSON,
 * with "id" when id is not NULL. code is an IMGCLS_E* name. Returns 0 or the buffer's error. */
int web_render_error(unsigned status, const char *code, const char *id, const char *message, bool json,
                     imgcls_buf *out);

#endif
