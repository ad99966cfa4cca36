#include "worker/worker.h"

#include "common/buf.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "engine/engine.h"
#include "message/message.h"
#include "queue/queue.h"
#include "store/store.h"
#include "worker/heartbeat.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REPLY_CACHE 8

typedef struct worker_opts {
    const char *queue_url, *in_url, *out_url, *model, *preprocess;
    unsigned long batch, visibility, threads, wait_ms;
} worker_opts;

typedef struct reply_queue {
    char url[MESSAGE_MAX_REPLY];
    queue *q;
} reply_queue;

typedef struct worker {
    worker_opts o;
    engine *eng;
    queue *requests;
    store *in, *out;
    heartbeat *hb;
    reply_queue replies[REPLY_CACHE]; /* reply queues by URL, opened on first use */
    size_t next_reply;
    char name[64];
} worker;

/* What happened to each message of a batch. */
enum item_state { ITEM_SKIP, ITEM_READY, ITEM_ANSWER };

typedef struct item {
    enum item_state state;
    msg_request req;
    msg_response resp;
    imgcls_buf fetched; /* the image when it came from the input bucket */
    double fetch_ms;
} item;

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static const char USAGE[] =
    "usage: imgcls worker --queue URL --in-bucket URL --out-bucket URL [options]\n\n"
    "Takes classification requests off the request queue, classifies them in batches and answers each on\n"
    "its reply queue. SIGTERM or SIGINT: finish the current batch, then exit.";

static size_t options(worker_opts *o, config_opt *t)
{
    config_opt opts[] = {
        {"queue", CONFIG_STR, NULL, "request queue URL (required)", 0, 0, &o->queue_url},
        {"in-bucket", CONFIG_STR, NULL, "input bucket URL (required)", 0, 0, &o->in_url},
        {"out-bucket", CONFIG_STR, NULL, "output bucket URL (required)", 0, 0, &o->out_url},
        {"model", CONFIG_STR, NULL, "weight file (default: $IMGCLS_MODEL or the built model)", 0, 0, &o->model},
        {"preprocess", CONFIG_STR, "imagenet", "imagenet or reference", 0, 0, &o->preprocess},
        {"batch", CONFIG_UINT, "10", "requests received and classified together", 1, QUEUE_MAX_BATCH,
         &o->batch},
        {"visibility", CONFIG_UINT, "30", "seconds a received request stays invisible (extended while busy)",
         3, 43200, &o->visibility},
        {"threads", CONFIG_UINT, "1", "threads for the network (the fleet scales by processes)", 1, 64,
         &o->threads},
        {"wait-ms", CONFIG_UINT, "1000", "long-poll wait per receive, in ms (also bounds the exit delay)", 0,
         20000, &o->wait_ms},
    };
    memcpy(t, opts, sizeof opts);
    return sizeof opts / sizeof *opts;
}

/* The reply queue must live beside the request queue (same SQLite file, same SQS account): reply_to
 * comes from a message, and a message must not be able to make a worker write anywhere it likes. */
static bool reply_url_allowed(const char *request_url, const char *reply_url)
{
    /* "sqlite:///d/imgcls.db?queue=requests" -> "sqlite:///d/imgcls.db?";
     * "https://sqs.../123456789012/requests" -> "https://sqs.../123456789012/" */
    const char *sep = strchr(request_url, '?');
    if (!sep)
        sep = strrchr(request_url, '/');
    size_t home = sep ? (size_t)(sep - request_url) + 1 : strlen(request_url);
    return strncmp(request_url, reply_url, home) == 0 && !strstr(reply_url + home, "..");
}

static queue *reply_queue_get(worker *w, const char *url)
{
    for (size_t i = 0; i < REPLY_CACHE; i++)
        if (w->replies[i].q && strcmp(w->replies[i].url, url) == 0)
            return w->replies[i].q;
    reply_queue *r = &w->replies[w->next_reply++ % REPLY_CACHE]; /* round-robin eviction */
    queue_close(r->q);
    r->q = NULL;
    imgcls_errbuf eb = {{0}};
    if (queue_open(url, &r->q, &eb)) {
        log_event("warn", "worker", "reply_queue_open_failed url=%s detail=\"%s\"", url, eb.msg);
        return NULL;
    }
    snprintf(r->url, sizeof r->url, "%s", url);
    return r->q;
}

static void set_error(item *it, int rc, const char *message)
{
    it->state = ITEM_ANSWER;
    snprintf(it->resp.error_code, sizeof it->resp.error_code, "%s", imgcls_err_name(rc));
    snprintf(it->resp.error_message, sizeof it->resp.error_message, "%s", message);
}

/* Decodes a message and finds its image. ITEM_SKIP leaves the message for redelivery (and, if it
 * never gets better, for the dead-letter queue). */
static void prepare_item(worker *w, const queue_msg *m, item *it)
{
    imgcls_errbuf eb = {{0}};
    buf_init(&it->fetched, IMAGE_DEFAULT_MAX_BYTES);
    if (msg_request_decode(m->body, m->len, &it->req, &eb)) {
        /* It can never decode, and it names no reply queue to complain to. Released at once, it is
         * received again straight away and reaches the dead-letter queue after max_receives
         * deliveries, in milliseconds rather than max_receives visibility timeouts. */
        log_event("warn", "worker", "bad_message msg=%s receives=%u detail=\"%s\"", m->id, m->receive_count, eb.msg);
        queue_change_visibility(w->requests, m->receipt, 0);
        return;
    }
    snprintf(it->resp.id, sizeof it->resp.id, "%s", it->req.id);
    snprintf(it->resp.file, sizeof it->resp.file, "%s", it->req.file);
    snprintf(it->resp.worker, sizeof it->resp.worker, "%s", w->name);
    if (!reply_url_allowed(w->o.queue_url, it->req.reply_to)) {
        /* as hopeless as an undecodable message: straight on towards the dead-letter queue */
        log_event("warn", "worker", "reply_to_refused id=%s reply_to=%s", it->req.id, it->req.reply_to);
        queue_change_visibility(w->requests, m->receipt, 0);
        return;
    }
    it->state = ITEM_READY;
    if (it->req.image)
        return;
    double t0 = clock_ms();
    int rc = store_get(w->in, it->req.image_key, &it->fetched);
    it->fetch_ms = clock_ms() - t0;
    if (rc == IMGCLS_ENOTFOUND || rc == IMGCLS_ETOOBIG || rc == IMGCLS_EINVAL)
        set_error(it, rc, rc == IMGCLS_ETOOBIG ? "image is over the size limit" : "image not in the input bucket");
    else if (rc) { /* a passing store failure: try again on redelivery */
        log_event("warn", "worker", "fetch_failed id=%s key=%s detail=\"%s\"", it->req.id, it->req.image_key,
                  w->in->err.msg);
        it->state = ITEM_SKIP;
    }
}

/* Classifies one ITEM_READY item. Returns 0 (the item is now ITEM_ANSWER, with a result or an error
 * about its image), or an engine failure that is nobody's image's fault: then the message is left
 * for redelivery. */
static int classify_item(worker *w, item *it)
{
    engine_image img = it->req.image ? (engine_image){it->req.image, it->req.image_len}
                                     : (engine_image){it->fetched.data, it->fetched.len};
    engine_result res;
    imgcls_errbuf eb = {{0}};
    int rc = engine_classify(w->eng, &img, 1, 5, &res, &eb);
    if (rc) {
        log_event("error", "worker", "classify_failed id=%s detail=\"%s\"", it->req.id, eb.msg);
        return rc;
    }
    it->state = ITEM_ANSWER;
    it->resp.ms = (msg_timing){.fetch_ms = it->fetch_ms, .decode_ms = res.decode_ms, .infer_ms = res.infer_ms};
    if (res.rc) {
        set_error(it, res.rc, res.error);
        return 0;
    }
    it->resp.ntop = res.ntop;
    for (size_t k = 0; k < res.ntop; k++) {
        msg_class *c = &it->resp.top[k];
        snprintf(c->label, sizeof c->label, "%s", engine_label(w->eng, res.top[k].index));
        c->index = res.top[k].index;
        c->prob = res.top[k].prob;
    }
    return 0;
}

/* Writes the output bucket: the assignment's "(test_0, bathtub)" under the name without its
 * extension, and the whole response under results/<id>.json for GET /results/<id>. */
static int write_outputs(worker *w, const item *it, const imgcls_buf *json)
{
    char key[STORE_MAX_KEY];
    int rc = 0;
    snprintf(key, sizeof key, "results/%s.json", it->req.id);
    if ((rc = store_put(w->out, key, json->data, json->len)))
        return rc;
    if (it->resp.error_code[0])
        return 0;
    const char *dot = strrchr(it->req.file, '.');
    int stem = dot && dot != it->req.file ? (int)(dot - it->req.file) : (int)strlen(it->req.file);
    snprintf(key, sizeof key, "%.*s", stem, it->req.file);
    if (!store_key_valid(key))
        return 0; /* the web tier only lets safe names through; a name that is not a key has no entry */
    char value[MESSAGE_MAX_FILE + MESSAGE_MAX_LABEL + 8];
    int len = snprintf(value, sizeof value, "(%s, %s)", key, it->resp.top[0].label);
    return store_put(w->out, key, value, (size_t)len);
}

/* Output bucket, then response, then delete: a crash between any two steps only repeats work. */
static void answer_item(worker *w, const queue_msg *m, item *it)
{
    imgcls_buf json;
    buf_init(&json, QUEUE_MAX_BODY);
    queue *reply = reply_queue_get(w, it->req.reply_to);
    int rc = reply ? msg_response_encode(&it->resp, &json) : IMGCLS_EBACKEND;
    if (!rc && (rc = write_outputs(w, it, &json)))
        log_event("warn", "worker", "output_write_failed id=%s detail=\"%s\"", it->req.id, w->out->err.msg);
    if (!rc && (rc = queue_send(reply, json.data, json.len)))
        log_event("warn", "worker", "reply_failed id=%s detail=\"%s\"", it->req.id, reply->err.msg);
    if (!rc && (rc = queue_delete(w->requests, m->receipt)))
        log_event("warn", "worker", "delete_failed id=%s detail=\"%s\"", it->req.id, w->requests->err.msg);
    if (!rc)
        log_event("info", "worker", "answered id=%s file=%s %s=%s ms=%.1f", it->req.id, it->req.file,
                  it->resp.error_code[0] ? "error" : "label", it->resp.error_code[0] ? it->resp.error_code : it->resp.top[0].label,
                  it->resp.ms.total_ms);
    buf_free(&json);
}

/* The batch is received, decoded and fetched together; then each image is classified and answered
 * in turn, so the first client of a batch of 10 does not wait for the other nine images (the engine
 * runs images one at a time anyway: see engine.c). */
static void process_batch(worker *w, const queue_msg *msgs, size_t n)
{
    item items[QUEUE_MAX_BATCH];
    memset(items, 0, sizeof items);
    double t0 = clock_ms();
    for (size_t i = 0; i < n; i++)
        prepare_item(w, &msgs[i], &items[i]);
    for (size_t i = 0; i < n; i++) {
        if (items[i].state == ITEM_READY)
            classify_item(w, &items[i]);
        items[i].resp.ms.total_ms = clock_ms() - t0;
        if (items[i].state == ITEM_ANSWER)
            answer_item(w, &msgs[i], &items[i]);
        msg_request_free(&items[i].req);
        buf_free(&items[i].fetched);
    }
}

static int worker_loop(worker *w)
{
    while (!stop_requested) {
        queue_msg msgs[QUEUE_MAX_BATCH];
        size_t n = 0;
        int rc = queue_receive(w->requests, w->o.batch, (int)w->o.wait_ms, (int)w->o.visibility, msgs, &n);
        if (rc) {
            log_event("error", "worker", "receive_failed err=%s detail=\"%s\"", imgcls_err_name(rc),
                      w->requests->err.msg);
            sleep(1); /* a broken queue must not become a busy loop */
            continue;
        }
        heartbeat_track(w->hb, msgs, n);
        if (n)
            process_batch(w, msgs, n);
        heartbeat_track(w->hb, NULL, 0);
        for (size_t i = 0; i < n; i++)
            queue_msg_free(&msgs[i]);
    }
    return 0;
}

static int worker_open(worker *w, imgcls_errbuf *eb)
{
    engine_config cfg;
    engine_config_default(&cfg);
    cfg.model_path = w->o.model;
    cfg.threads = (unsigned)w->o.threads;
    int rc = preprocess_mode_parse(w->o.preprocess, &cfg.mode);
    if (rc)
        return imgcls_fail(eb, rc, "--preprocess must be imagenet or reference");
    if ((rc = engine_open(&cfg, &w->eng, eb)) || (rc = engine_warm_up(w->eng, eb)) ||
        (rc = queue_open(w->o.queue_url, &w->requests, eb)) || (rc = store_open(w->o.in_url, &w->in, eb)) ||
        (rc = store_open(w->o.out_url, &w->out, eb)) ||
        (rc = heartbeat_start(w->o.queue_url, (int)w->o.visibility, &w->hb, eb)))
        return rc;
    char host[40] = "localhost"; /* 40 + ":" + pid fits the response's 64-byte worker field */
    gethostname(host, sizeof host - 1);
    snprintf(w->name, sizeof w->name, "%.40s:%d", host, (int)getpid());
    return 0;
}

static void worker_close(worker *w)
{
    heartbeat_stop(w->hb);
    for (size_t i = 0; i < REPLY_CACHE; i++)
        queue_close(w->replies[i].q);
    store_close(w->in);
    store_close(w->out);
    queue_close(w->requests);
    engine_close(w->eng);
}

int cli_worker(int argc, char **argv)
{
    worker w;
    memset(&w, 0, sizeof w);
    config_opt table[16];
    size_t nopts = options(&w.o, table);
    config_args args;
    imgcls_errbuf eb = {{0}};
    if (config_parse(table, nopts, argc, argv, &args, &eb)) {
        fprintf(stderr, "imgcls worker: %s\n", eb.msg);
        return 2;
    }
    int status = 0;
    if (args.help || !w.o.queue_url || !w.o.in_url || !w.o.out_url || args.npositional) {
        config_print_help(args.help ? stdout : stderr, USAGE, table, nopts);
        status = args.help ? 0 : 2;
        goto out;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (worker_open(&w, &eb)) {
        log_event("error", "worker", "start_failed detail=\"%s\"", eb.msg);
        status = 1;
        goto out;
    }
    log_event("info", "worker", "started name=%s batch=%lu threads=%lu", w.name, w.o.batch, w.o.threads);
    worker_loop(&w);
    log_event("info", "worker", "stopped name=%s", w.name);
out:
    worker_close(&w);
    free(args.positional);
    return status;
}
