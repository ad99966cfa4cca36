/* The GET routes: /results/{id}, /healthz, /metrics. Each is answered in the handler's first call. */
#include "web/web_server.h"

#include "common/log.h"
#include "message/message.h"
#include "web/web_render.h"

#include <stdio.h>
#include <string.h>

/* A stored record is a response message, so it is bounded like one. */
#define ROUTE_RECORD_MAX QUEUE_MAX_BODY
#define ROUTE_BODY_MAX (64 * 1024)

/* Reads the request's result record (store_key_result) from the output bucket into rec. Returns 0 or
 * the store's error. */
static int read_record(web_server *s, const char *id, imgcls_buf *rec, imgcls_errbuf *eb)
{
    char key[STORE_MAX_SYSTEM_KEY];
    store_key_result(id, key);
    web_handles *h = web_handles_take(s->handles);
    int rc = store_get(h->out, key, rec);
    if (rc)
        imgcls_fail(eb, rc, "%s", h->out->err.msg);
    web_handles_give(s->handles, h);
    return rc;
}

/* The worker stores its response message as the result record (src/worker/worker.c), so the record
 * is answered exactly as the live request would have been: the label as text, or the JSON form. */
enum MHD_Result web_route_result(web_request *r, const char *id)
{
    imgcls_buf rec, body;
    imgcls_errbuf eb = {{0}};
    msg_response resp;
    enum MHD_Result ret = MHD_NO;
    if (!msg_id_valid(id))
        return web_respond_error(r, 400, "EINVAL", NULL, "malformed id: expected %d lowercase hex characters",
                                 WEB_ID_LEN);
    buf_init(&rec, ROUTE_RECORD_MAX);
    buf_init(&body, ROUTE_BODY_MAX);
    int rc = read_record(r->srv, id, &rec, &eb);
    if (rc == IMGCLS_ENOTFOUND) {
        ret = web_respond_error(r, 404, "ENOTFOUND", id, "no result for id %s yet", id);
        goto out;
    }
    if (rc) {
        log_event("warn", "web", "result_read_failed id=%s detail=\"%s\"", id, eb.msg);
        ret = web_respond_error(r, 500, "EBACKEND", id, "cannot read the output bucket");
        goto out;
    }
    if (msg_response_decode(rec.data, rec.len, &resp, &eb) || strcmp(resp.id, id) != 0) {
        log_event("warn", "web", "result_unreadable id=%s detail=\"%s\"", id, eb.msg);
        ret = web_respond_error(r, 500, "ECORRUPT", id, "the stored result for id %s is unreadable", id);
        goto out;
    }
    unsigned status = 500;
    if (web_render_response(&resp, NULL, r->json, &body, &status) == 0)
        ret = web_respond(r, status, NULL, &body);
out:
    buf_free(&rec);
    buf_free(&body);
    return ret;
}

enum MHD_Result web_route_health(web_request *r)
{
    web_server *s = r->srv;
    bool up = atomic_load(&s->dispatcher_alive);
    bool stopping = atomic_load(&s->stopping);
    const char *state = stopping ? "stopping" : up ? "ok" : "dispatcher_down";
    imgcls_buf body;
    buf_init(&body, 256);
    enum MHD_Result ret = MHD_NO;
    if (buf_printf(&body, "{\"status\":\"%s\",\"waiting\":%zu}", state, web_pending_count(s->pending)) == 0)
        ret = web_respond(r, up && !stopping ? 200 : 503, "application/json", &body);
    buf_free(&body);
    return ret;
}

/* Appends another process's metrics file (the scaler's), so that one scrape shows the whole system.
 * Missing or over the room left: skipped, as a scrape must not fail for it. */
static void append_extra_metrics(const char *path, imgcls_buf *body)
{
    char chunk[4096];
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f)
        return;
    size_t mark = body->len, n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (buf_append(body, chunk, n)) {
            body->len = mark; /* too big: none of it, rather than half a metric */
            body->data[mark] = 0;
            break;
        }
    fclose(f);
}

enum MHD_Result web_route_metrics(web_request *r)
{
    web_server *s = r->srv;
    web_gauges g = {0};
    web_handles *h = web_handles_take(s->handles);
    g.have_depth = queue_depth_get(h->requests, &g.depth) == 0;
    if (!g.have_depth)
        log_event("warn", "web", "queue_depth_failed detail=\"%s\"", h->requests->err.msg);
    web_handles_give(s->handles, h);
    g.waiting = web_pending_count(s->pending);
    g.dispatcher_up = atomic_load(&s->dispatcher_alive);
    imgcls_buf body;
    buf_init(&body, ROUTE_BODY_MAX);
    enum MHD_Result ret = MHD_NO;
    if (web_metrics_render(s->metrics, &g, &body) == 0) {
        append_extra_metrics(s->cfg.extra_metrics, &body);
        ret = web_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8", &body);
    }
    buf_free(&body);
    return ret;
}
