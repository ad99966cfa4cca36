/* POST /: the assignment's upload (DESIGN.md §3).
 *
 * MHD calls the handler in three phases, and this file follows them:
 *   begin   headers only: refuse early what needs no body to refuse (503 overloaded or stopping, 413
 *           from Content-Length), set up MHD's multipart post processor;
 *   data    body chunks: the post processor hands the bytes of field "myfile" to a buffer bounded by
 *           --max-body;
 *   finish  end of body: check what arrived, write the input bucket, send the request message and
 *           park the connection; and, once the dispatcher has woken it, answer.
 *
 * Refusing in the middle of a body. MHD 0.9.75 queues a response only before the body is read or after
 * all of it is (MHD_queue_response refuses in the body-receiving states), so a body that turns out bad
 * half-way -- a chunked upload past --max-body, a broken multipart -- is read on and discarded, and
 * answered at its end. Discarding costs no memory, but a client could send forever, so past another
 * --max-body of discarded bytes the connection is simply closed. Errors that can be seen from the
 * headers alone are answered before the body is read. */
#include "web/web_server.h"

#include "common/clock.h"
#include "common/filename.h"
#include "common/log.h"
#include "message/message.h"
#include "web/web_render.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define UPLOAD_FIELD "myfile"
/* The post processor keeps one part's headers and the tail it cannot yet tell from a boundary. */
#define UPLOAD_PP_BUFFER (16 * 1024)
/* Answers are small: a label, or JSON with five classes. */
#define UPLOAD_ANSWER_MAX (64 * 1024)

enum upload_phase { PH_RECEIVING, PH_WAITING, PH_DONE };

struct web_upload {
    enum upload_phase phase;
    struct MHD_PostProcessor *pp;
    imgcls_buf file; /* the bytes of field myfile, at most --max-body */
    char filename[FILENAME_MAX_BYTES + 1]; /* the last component of the part's filename */
    char raw_filename[FILENAME_MAX_BYTES + 1]; /* as sent (truncated), to tell a second part apart */
    const char *name_problem; /* why the part's file name is refused, or NULL */
    char other_field[33];     /* the first other field seen, to name it in the 400 */
    bool any_part, have_file;
    unsigned long long received; /* body bytes so far */
    /* A refusal decided while the body streams in, answered at its end. */
    unsigned refuse_status;
    const char *refuse_code;
    char refuse_msg[200];
    web_pending pend;
    web_stage_ms ms;
    double sent_ms;
};

static void refuse(web_upload *up, unsigned status, const char *code, const char *msg)
{
    if (up->refuse_status)
        return; /* the first problem is the one to report */
    up->refuse_status = status;
    up->refuse_code = code;
    snprintf(up->refuse_msg, sizeof up->refuse_msg, "%s", msg);
}

static enum MHD_Result refused(web_request *r, unsigned status, const char *code, const char *msg)
{
    log_event("info", "web", "refused status=%u reason=\"%s\"", status, msg);
    return web_respond_error(r, status, code, NULL, "%s", msg);
}

/* Copies a client's field name for the error message, with anything that could confuse a log line or
 * a reader replaced by '?'. */
static void keep_name(char *dst, size_t size, const char *name)
{
    size_t i = 0;
    for (; name[i] && i + 1 < size; i++) {
        char c = name[i];
        bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                     c == '_' || c == '-';
        dst[i] = plain ? c : '?';
    }
    dst[i] = 0;
}

/* The post processor's iterator: called for every piece of every part's value. It always returns
 * MHD_YES and records problems with refuse(), so the body is read to its end and answered there. */
static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                               const char *content_type, const char *transfer_encoding, const char *data,
                               uint64_t off, size_t size)
{
    (void)content_type;
    (void)transfer_encoding;
    web_upload *up = ((web_request *)cls)->up;
    if (kind != MHD_POSTDATA_KIND || !key)
        return MHD_YES;
    up->any_part = true;
    if (strcmp(key, UPLOAD_FIELD) != 0) {
        if (!up->other_field[0])
            keep_name(up->other_field, sizeof up->other_field, key);
        return MHD_YES;
    }
    if (!up->have_file) {
        up->have_file = true;
        if (!filename)
            /* MHD also reports no filename when the one sent has a NUL byte in it */
            up->name_problem = "the part has no usable filename (none, or one with a NUL byte); send the image "
                               "as a file";
        else
            up->name_problem = filename_from_client(filename, strlen(filename), up->filename, sizeof up->filename);
        snprintf(up->raw_filename, sizeof up->raw_filename, "%s", filename ? filename : "");
    } else if (off == 0 && (up->file.len > 0 || !filename || strcmp(filename, up->raw_filename) != 0)) {
        /* MHD may call once with no bytes before a part's first bytes, so a new part shows as offset 0
         * after bytes were taken, or under another name. */
        refuse(up, 400, "EINVAL", "more than one file in field myfile; send one image per request");
    }
    if (up->refuse_status || size == 0)
        return MHD_YES;
    int rc = buf_append(&up->file, data, size);
    if (rc == IMGCLS_ETOOBIG)
        refuse(up, 413, "ETOOBIG", "the image is over the size limit (--max-body)");
    else if (rc)
        refuse(up, 500, "ENOMEM", "out of memory while receiving the image");
    return MHD_YES;
}

static bool is_multipart(const char *ctype)
{
    static const char mp[] = "multipart/form-data";
    return ctype && strncasecmp(ctype, mp, strlen(mp)) == 0 &&
           (ctype[strlen(mp)] == 0 || ctype[strlen(mp)] == ';' || ctype[strlen(mp)] == ' ');
}

enum MHD_Result web_upload_begin(web_request *r)
{
    web_server *s = r->srv;
    if (atomic_load(&s->stopping))
        return refused(r, 503, "ECLOSED", "shutting down; try again later");
    if (web_pending_full(s->pending))
        return refused(r, 503, "EBUSY",
                       "overloaded: too many requests are waiting (--max-waiting); try again later");
    const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end = NULL;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno == ERANGE || (end != cl && n > s->cfg.max_body)) {
            char msg[160];
            snprintf(msg, sizeof msg, "the body is %s bytes, over the limit of %lu (--max-body)", cl,
                     s->cfg.max_body);
            return refused(r, 413, "ETOOBIG", msg);
        }
    }
    web_upload *up = calloc(1, sizeof *up);
    if (!up)
        return MHD_NO;
    r->up = up;
    buf_init(&up->file, s->cfg.max_body);
    const char *ctype = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!is_multipart(ctype))
        refuse(up, 400, "EINVAL",
               "not multipart: send the image as multipart/form-data in field myfile");
    else if (!(up->pp = MHD_create_post_processor(r->conn, UPLOAD_PP_BUFFER, on_part, r)))
        refuse(up, 400, "EINVAL", "malformed multipart: the Content-Type has no usable boundary");
    return MHD_YES;
}

enum MHD_Result web_upload_data(web_request *r, const char *data, size_t size)
{
    web_upload *up = r->up;
    unsigned long max = r->srv->cfg.max_body;
    if (up->phase != PH_RECEIVING)
        return MHD_YES;
    up->received += size;
    if (up->received > max)
        refuse(up, 413, "ETOOBIG", "the body is over the size limit (--max-body)");
    if (up->refuse_status) {
        if (up->received > max && up->received - max > max) {
            log_event("info", "web", "upload_closed reason=discarded_too_much bytes=%llu", up->received);
            return MHD_NO; /* the client keeps sending a body we refused: stop reading, close */
        }
        return MHD_YES;
    }
    if (MHD_post_process(up->pp, data, size) != MHD_YES)
        refuse(up, 400, "EINVAL", "malformed multipart body");
    return MHD_YES;
}

/* Checks what the body held, in the order a client most needs to hear about. */
static bool body_ok(web_request *r)
{
    web_upload *up = r->up;
    char msg[200];
    if (up->pp && MHD_destroy_post_processor(up->pp) != MHD_YES)
        refuse(up, 400, "EINVAL", "malformed multipart body: it ends inside a part or has no final boundary");
    up->pp = NULL;
    if (up->refuse_status)
        return false;
    if (!up->any_part)
        refuse(up, 400, "EINVAL", "malformed multipart body: no part found");
    else if (!up->have_file) {
        snprintf(msg, sizeof msg, "missing field myfile%s%s%s", up->other_field[0] ? " (got field '" : "",
                 up->other_field, up->other_field[0] ? "')" : "");
        refuse(up, 400, "EINVAL", msg);
    } else if (up->name_problem) {
        snprintf(msg, sizeof msg, "bad file name: %s", up->name_problem);
        refuse(up, 400, "EINVAL", msg);
    } else if (up->file.len == 0) {
        refuse(up, 400, "EINVAL", "empty file: field myfile has no bytes");
    }
    return up->refuse_status == 0;
}

/* The assignment's layout: the image under its own name (a name key: store.h). Two uploads of one name
 * overwrite each other here, so the worker never reads this key: it gets the image inline or by the
 * claim check, a system key no name can reach.
 * Written after the request is sent, so the write overlaps the worker's classification instead of
 * adding to the client's wait (measured with fsyncs: ~3 ms for a 160 KB photo). A claim-checked image
 * is stored once: the name becomes a link to the claim (a hard link; CopyObject on S3), which saved
 * 0.2 of the web tier's 0.9 ms of CPU per request (bench/proc_cpu.py). A failure here loses the copy,
 * not the request, so it is logged, not answered. */
static void store_named_copy(web_upload *up, web_handles *h, const char *claim)
{
    double t = clock_ms();
    if (claim[0] ? store_put_copy(h->in, claim, up->filename, up->file.data, up->file.len)
                 : store_put(h->in, up->filename, up->file.data, up->file.len))
        log_event("warn", "web", "input_copy_failed id=%s file=\"%s\" detail=\"%s\"", up->pend.id, up->filename,
                  h->in->err.msg);
    up->ms.store += clock_ms() - t;
}

/* Sends the request message (after the claim check, for a large image) and writes the named copy,
 * with h. Fills eb and returns the HTTP status for a failure, or 0. */
static unsigned store_and_send(web_request *r, web_handles *h, imgcls_errbuf *eb)
{
    web_upload *up = r->up;
    msg_request m;
    imgcls_buf msg;
    unsigned status = 0;
    memset(&m, 0, sizeof m);
    buf_init(&msg, QUEUE_MAX_BODY);
    double t = clock_ms();
    snprintf(m.id, sizeof m.id, "%s", up->pend.id);
    snprintf(m.file, sizeof m.file, "%s", up->filename);
    snprintf(m.reply_to, sizeof m.reply_to, "%s", r->srv->cfg.reply_url);
    if (up->file.len <= r->srv->cfg.inline_max) {
        m.image = up->file.data; /* borrowed: m is never passed to msg_request_free */
        m.image_len = up->file.len;
    } else {
        store_key_claim(up->pend.id, m.image_key);
        if (store_put(h->in, m.image_key, up->file.data, up->file.len)) {
            status = 500;
            imgcls_fail(eb, IMGCLS_EBACKEND, "cannot store the image in the input bucket: %s",
                        h->in->err.msg);
            goto out;
        }
    }
    up->ms.store = clock_ms() - t;
    if (msg_request_encode(&m, &msg)) {
        status = 500;
        imgcls_fail(eb, IMGCLS_EINVAL, "cannot encode the request message");
        goto out;
    }
    t = clock_ms();
    if (queue_send(h->requests, msg.data, msg.len)) {
        status = 503;
        imgcls_fail(eb, IMGCLS_EBACKEND, "cannot queue the request: %s", h->requests->err.msg);
        goto out;
    }
    up->ms.send = clock_ms() - t;
    store_named_copy(up, h, m.image_key);
out:
    buf_free(&msg);
    return status;
}

static enum MHD_Result answer(web_request *r)
{
    web_upload *up = r->up;
    const web_pending *p = &up->pend;
    up->phase = PH_DONE;
    up->ms.total = clock_ms() - r->t0_ms;
    enum MHD_Result rc = MHD_NO;
    switch (p->outcome) {
    case WEB_ANSWERED: {
        up->ms.wait = (double)p->done_ms - up->sent_ms;
        imgcls_buf body;
        unsigned status = 500;
        buf_init(&body, UPLOAD_ANSWER_MAX);
        if (web_render_response(&p->resp, &up->ms, r->json, &body, &status) == 0)
            rc = web_respond(r, status, NULL, &body);
        buf_free(&body);
        break;
    }
    case WEB_TIMED_OUT:
        rc = web_respond_error(r, 504, "ETIMEDOUT", p->id,
                               "timed out waiting for a worker; id=%s; GET /results/%s later", p->id, p->id);
        break;
    case WEB_SHUTDOWN:
    case WEB_WAITING:
        rc = web_respond_error(r, 503, "ECLOSED", p->id, "shutting down; id=%s; GET /results/%s later", p->id,
                               p->id);
        break;
    }
    log_event("info", "web", "answered id=%s status=%u ms=%.1f", p->id, r->status, up->ms.total);
    return rc;
}

/* The body is complete and good: id, pending entry, input bucket, request message, park. */
static enum MHD_Result submit(web_request *r)
{
    web_server *s = r->srv;
    web_upload *up = r->up;
    imgcls_errbuf eb = {{0}};
    if (web_id_new(up->pend.id))
        return refused(r, 500, "EIO", "cannot make a request id (getrandom failed)");
    up->pend.conn = r->conn;
    /* Linked before the send: a fast worker's answer must find it (web_pending.h). */
    int rc = web_pending_add(s->pending, &up->pend, clock_ms_i64(), (int64_t)s->cfg.timeout_s * 1000);
    if (rc == IMGCLS_EBUSY)
        return refused(r, 503, "EBUSY",
                       "overloaded: too many requests are waiting (--max-waiting); try again later");
    if (rc)
        return refused(r, 503, "ECLOSED", "shutting down; try again later");
    web_handles *h = web_handles_take(s->handles);
    unsigned status = store_and_send(r, h, &eb);
    web_handles_give(s->handles, h);
    if (status) {
        web_pending_remove(s->pending, &up->pend);
        log_event("warn", "web", "submit_failed id=%s status=%u detail=\"%s\"", up->pend.id, status, eb.msg);
        return web_respond_error(r, status, "EBACKEND", up->pend.id, "%s", eb.msg);
    }
    up->sent_ms = clock_ms();
    up->phase = PH_WAITING;
    log_event("info", "web", "accepted id=%s file=\"%s\" bytes=%zu claim_check=%d", up->pend.id, up->filename,
              up->file.len, up->file.len > r->srv->cfg.inline_max);
    buf_free(&up->file); /* sent; nothing needs the bytes while the request waits */
    if (web_pending_park(s->pending, &up->pend))
        return MHD_YES; /* the dispatcher resumes the connection; MHD calls web_upload_finish again */
    return answer(r);   /* answered (or expired) while we were still sending */
}

enum MHD_Result web_upload_finish(web_request *r)
{
    web_upload *up = r->up;
    switch (up->phase) {
    case PH_RECEIVING:
        up->ms.receive = clock_ms() - r->t0_ms;
        if (!body_ok(r))
            return refused(r, up->refuse_status, up->refuse_code, up->refuse_msg);
        return submit(r);
    case PH_WAITING:
        web_pending_unparked(r->srv->pending, &up->pend);
        return answer(r);
    case PH_DONE:
        break;
    }
    return MHD_YES;
}

void web_upload_free(web_request *r)
{
    web_upload *up = r->up;
    if (!up)
        return;
    if (up->pp)
        MHD_destroy_post_processor(up->pp);
    /* Normally unlinked already; this covers a connection that ended with its entry still linked. */
    if (up->pend.id[0])
        web_pending_remove(r->srv->pending, &up->pend);
    buf_free(&up->file);
    free(up);
    r->up = NULL;
}
