/* fake_worker: a stand-in for `imgcls worker` that speaks the real protocol (queue, messages, buckets)
 * without the engine, so the web tier's end-to-end tests run without a model and with answers they can
 * predict.
 *
 *   fake_worker --queue URL --in-bucket URL --out-bucket URL [--label TEXT]
 *
 * For every request: fetch the image (inline, or the claim-checked key in the input bucket), then
 *   - an image whose bytes start with "EFORMAT" or "ETOOBIG" gets that error response;
 *   - otherwise the label is --label, or by default "echo <file> <bytes> <fnv1a-32 of the bytes, hex>",
 *     so a test can tell that each client got the answer for its own upload.
 * It writes the response message as the result record in the output bucket (as the worker does), sends
 * it to the request's reply queue, and only then deletes the request. Stops on SIGINT or SIGTERM. */
#include "common/buf.h"
#include "common/config.h"
#include "common/log.h"
#include "message/message.h"
#include "queue/queue.h"
#include "store/store.h"

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REPLY_QUEUES 8

typedef struct fake {
    const char *queue_url, *in_url, *out_url, *label;
    queue *requests;
    store *in, *out;
    struct {
        char url[MESSAGE_MAX_REPLY];
        queue *q;
    } replies[MAX_REPLY_QUEUES];
} fake;

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static uint32_t fnv1a(const unsigned char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static queue *reply_queue(fake *f, const char *url)
{
    for (size_t i = 0; i < MAX_REPLY_QUEUES; i++) {
        if (f->replies[i].q && strcmp(f->replies[i].url, url) == 0)
            return f->replies[i].q;
        if (!f->replies[i].q) {
            imgcls_errbuf eb = {{0}};
            if (queue_open(url, &f->replies[i].q, &eb)) {
                log_event("error", "fake_worker", "reply_open_failed detail=\"%s\"", eb.msg);
                return NULL;
            }
            snprintf(f->replies[i].url, sizeof f->replies[i].url, "%s", url);
            return f->replies[i].q;
        }
    }
    return NULL;
}

/* Fills resp for req, whose image is img[0..n). */
static void classify(const fake *f, const msg_request *req, const unsigned char *img, size_t n,
                     msg_response *resp)
{
    memset(resp, 0, sizeof *resp);
    snprintf(resp->id, sizeof resp->id, "%s", req->id);
    snprintf(resp->file, sizeof resp->file, "%s", req->file);
    static const char *const codes[] = {"EFORMAT", "ETOOBIG"};
    for (size_t i = 0; i < 2; i++)
        if (n >= strlen(codes[i]) && memcmp(img, codes[i], strlen(codes[i])) == 0) {
            snprintf(resp->error_code, sizeof resp->error_code, "%s", codes[i]);
            snprintf(resp->error_message, sizeof resp->error_message, "%.200s: fake %s", req->file, codes[i]);
            return;
        }
    if (f->label)
        snprintf(resp->top[0].label, sizeof resp->top[0].label, "%s", f->label);
    else
        snprintf(resp->top[0].label, sizeof resp->top[0].label, "echo %.60s %zu %08x", req->file, n,
                 fnv1a(img, n));
    resp->ntop = 5;
    for (size_t i = 0; i < resp->ntop; i++) {
        if (i > 0)
            snprintf(resp->top[i].label, sizeof resp->top[i].label, "runner up %zu", i);
        resp->top[i].index = (uint32_t)(100 + i);
        resp->top[i].prob = 0.5 / (double)(i + 1);
    }
    snprintf(resp->worker, sizeof resp->worker, "fake");
    resp->ms = (msg_timing){0.1, 0.2, 0.3, 0.4, 1.0};
}

/* Answers one request message. Returns 0 when the request may be deleted. */
static int answer(fake *f, const queue_msg *m)
{
    msg_request req;
    msg_response resp;
    imgcls_errbuf eb = {{0}};
    imgcls_buf img, out;
    buf_init(&img, (size_t)64 << 20);
    buf_init(&out, QUEUE_MAX_BODY);
    int rc = msg_request_decode(m->body, m->len, &req, &eb);
    if (rc) {
        log_event("warn", "fake_worker", "bad_request detail=\"%s\"", eb.msg);
        return 0; /* poison: drop it */
    }
    if (req.image_key[0] && (rc = store_get(f->in, req.image_key, &img)))
        log_event("error", "fake_worker", "fetch_failed key=%s detail=\"%s\"", req.image_key, f->in->err.msg);
    if (!rc) {
        const unsigned char *p = req.image_key[0] ? img.data : req.image;
        classify(f, &req, p, req.image_key[0] ? img.len : req.image_len, &resp);
        rc = msg_response_encode(&resp, &out);
    }
    char key[STORE_MAX_SYSTEM_KEY];
    store_key_result(req.id, key);
    if (!rc && (rc = store_put(f->out, key, out.data, out.len)))
        log_event("error", "fake_worker", "put_failed detail=\"%s\"", f->out->err.msg);
    queue *rq = rc ? NULL : reply_queue(f, req.reply_to);
    if (!rc && (!rq || (rc = queue_send(rq, out.data, out.len))))
        rc = rc ? rc : IMGCLS_EBACKEND;
    if (!rc)
        log_event("info", "fake_worker", "answered id=%s file=%s", req.id, req.file);
    msg_request_free(&req);
    buf_free(&img);
    buf_free(&out);
    return rc;
}

static int run(fake *f)
{
    queue_msg msgs[QUEUE_MAX_BATCH];
    log_event("info", "fake_worker", "ready");
    while (!stop) {
        size_t n = 0;
        if (queue_receive(f->requests, QUEUE_MAX_BATCH, 200, 30, msgs, &n)) {
            log_event("error", "fake_worker", "receive_failed detail=\"%s\"", f->requests->err.msg);
            return 1;
        }
        for (size_t i = 0; i < n; i++) {
            if (answer(f, &msgs[i]) == 0 && queue_delete(f->requests, msgs[i].receipt))
                log_event("error", "fake_worker", "delete_failed detail=\"%s\"", f->requests->err.msg);
            queue_msg_free(&msgs[i]);
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    fake f;
    memset(&f, 0, sizeof f);
    config_opt opts[] = {
        {"queue", CONFIG_STR, NULL, "request queue URL", 0, 0, &f.queue_url},
        {"in-bucket", CONFIG_STR, NULL, "input bucket URL", 0, 0, &f.in_url},
        {"out-bucket", CONFIG_STR, NULL, "output bucket URL", 0, 0, &f.out_url},
        {"label", CONFIG_STR, NULL, "answer this label (default: echo the file, size and checksum)", 0, 0,
         &f.label},
    };
    config_args args;
    imgcls_errbuf eb = {{0}};
    if (config_parse(opts, sizeof opts / sizeof *opts, argc, argv, &args, &eb) || !f.queue_url || !f.in_url ||
        !f.out_url) {
        fprintf(stderr, "fake_worker: %s\n",
                eb.msg[0] ? eb.msg : "--queue, --in-bucket and --out-bucket are required");
        return 2;
    }
    free(args.positional);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int status = 2;
    if (queue_open(f.queue_url, &f.requests, &eb) || store_open(f.in_url, &f.in, &eb) ||
        store_open(f.out_url, &f.out, &eb))
        fprintf(stderr, "fake_worker: %s\n", eb.msg);
    else
        status = run(&f);
    queue_close(f.requests);
    store_close(f.in);
    store_close(f.out);
    for (size_t i = 0; i < MAX_REPLY_QUEUES; i++)
        queue_close(f.replies[i].q);
    return status;
}
