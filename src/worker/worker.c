#include "worker/worker.h"

#include "common/buf.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/filename.h"
#include "common/log.h"
#include "engine/engine.h"
#include "fleet/fleet.h"
#include "message/message.h"
#include "queue/queue.h"
#include "store/store.h"
#include "worker/heartbeat.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define REPLY_CACHE 8
/* Claim checks older than this are removed when a worker starts, and hourly: a crash between an answer
 * and the removal of its claim leaves one behind. A day is far longer than any request waits. */
#define CLAIM_SWEEP_PERIOD_S 3600

typedef struct worker_opts {
    const char *queue_url, *in_url, *out_url, *model, *preprocess, *fleet_url, *precision;
    unsigned long batch, visibility, threads, wait_ms, max_image_mb, max_batch_s, claim_ttl;
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
    fleet *fl; /* NULL without --fleet */
    heartbeat *hb;
    reply_queue replies[REPLY_CACHE]; /* reply queues by URL, opened on first use */
    size_t next_reply;
    char name[64];
    char engine[MESSAGE_MAX_ENGINE]; /* "runtime/isa/precision/threads", in every answer (message.h) */
    long long last_sweep_s;
} worker;

/* What becomes of each message of a batch. Every failure is one of two kinds (DESIGN.md §3):
 * permanent -- this message can never succeed -- is answered with an error at once and deleted;
 * temporary -- a store, queue or engine call failed -- is made visible again after a short backoff, and
 * after max receives the queue dead-letters it. */
enum item_state {
    ITEM_DROP,   /* unanswerable: undecodable, or a reply queue it may not name; released for the DLQ */
    ITEM_READY,  /* decoded, image at hand: to classify */
    ITEM_ANSWER, /* a result or a permanent error: to store, answer and delete */
    ITEM_REPLAY, /* answered before (its result record exists): send that record again, delete */
    ITEM_RETRY,  /* a temporary failure: back to the queue after a backoff */
};

typedef struct item {
    enum item_state state;
    const queue_msg *m;
    msg_request req;
    msg_response resp;
    imgcls_buf fetched; /* the image when it came from the input bucket */
    imgcls_buf record;  /* the stored result, for ITEM_REPLAY */
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
        {"max-batch-s", CONFIG_UINT, "300",
         "seconds after which a batch's requests are no longer kept invisible (a stuck worker lets go)", 1,
         43200, &o->max_batch_s},
        {"threads", CONFIG_UINT, "1", "threads for the network (the fleet scales by processes)", 1, 64,
         &o->threads},
        {"precision", CONFIG_STR, "fp32", ENGINE_PRECISION_HELP, 0, 0, &o->precision},
        {"wait-ms", CONFIG_UINT, "1000", "long-poll wait per receive, in ms (also bounds the exit delay)", 0,
         20000, &o->wait_ms},
        {"max-image-mb", CONFIG_UINT, "1024",
         "most memory one image may need (pixels, tensor, network activations), in MiB; larger images are "
         "refused",
         16, 1ul << 20, &o->max_image_mb},
        {"fleet", CONFIG_STR, NULL,
         "fleet URL naming this worker, to report busy/idle and its rate (imgcls up sets it; on EC2 asg://GROUP)", 0, 0,
         &o->fleet_url},
        {"claim-ttl", CONFIG_UINT, "86400", "seconds after which a left-over claim check is removed", 60,
         1ul << 31, &o->claim_ttl},
    };
    memcpy(t, opts, sizeof opts);
    return sizeof opts / sizeof *opts;
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

/* A permanent failure of this request: it is answered with the error. */
static void set_error(item *it, int rc, const char *message)
{
    it->state = ITEM_ANSWER;
    snprintf(it->resp.error_code, sizeof it->resp.error_code, "%s", imgcls_err_name(rc));
    snprintf(it->resp.error_message, sizeof it->resp.error_message, "%s", message);
}

/* A temporary failure: logged here, released in finish_item. */
static void set_retry(item *it, const char *event, const char *detail)
{
    it->state = ITEM_RETRY;
    log_event("warn", "worker", "%s id=%s receives=%u detail=\"%s\"", event, it->req.id, it->m->receive_count,
              detail);
}

/* Reads the request's result record, if any: a redelivered request that was answered already (a crash
 * or a lost delete after the answer) is replayed, never classified and stored again, so a request has
 * one result however often it is delivered, and a forged message cannot overwrite another's result. */
static void find_result(worker *w, item *it)
{
    char key[STORE_MAX_SYSTEM_KEY];
    store_key_result(it->req.id, key);
    int rc = store_get(w->out, key, &it->record);
    if (rc == 0)
        it->state = ITEM_REPLAY;
    else if (rc != IMGCLS_ENOTFOUND)
        set_retry(it, "result_read_failed", w->out->err.msg);
}

/* Decodes a message, checks where it may be answered, and finds its image. */
static void prepare_item(worker *w, const queue_msg *m, item *it)
{
    imgcls_errbuf eb = {{0}};
    it->m = m;
    buf_init(&it->fetched, IMAGE_DEFAULT_MAX_BYTES);
    buf_init(&it->record, QUEUE_MAX_BODY);
    if (msg_request_decode(m->body, m->len, &it->req, &eb)) {
        /* It can never decode, and it names no reply queue to complain to. Released at once, it is
         * received again straight away and reaches the dead-letter queue after max_receives
         * deliveries, in milliseconds rather than max_receives visibility timeouts. */
        log_event("warn", "worker", "bad_message msg=%s receives=%u detail=\"%s\"", m->id, m->receive_count, eb.msg);
        return; /* ITEM_DROP */
    }
    snprintf(it->resp.id, sizeof it->resp.id, "%s", it->req.id);
    snprintf(it->resp.file, sizeof it->resp.file, "%s", it->req.file);
    snprintf(it->resp.worker, sizeof it->resp.worker, "%s", w->name);
    memcpy(it->resp.engine, w->engine, sizeof it->resp.engine);
    if (!queue_url_is_sibling(w->o.queue_url, it->req.reply_to)) {
        /* as hopeless as an undecodable message: straight on towards the dead-letter queue */
        log_event("warn", "worker", "reply_to_refused id=%s reply_to=%s", it->req.id, it->req.reply_to);
        return;
    }
    it->state = ITEM_READY;
    find_result(w, it);
    if (it->state != ITEM_READY || it->req.image)
        return;
    double t0 = clock_ms();
    int rc = store_get(w->in, it->req.image_key, &it->fetched);
    it->fetch_ms = clock_ms() - t0;
    if (rc == IMGCLS_ENOTFOUND)
        set_error(it, rc, "the image is not in the input bucket (its claim check expired or was removed)");
    else if (rc == IMGCLS_ETOOBIG)
        set_error(it, rc, "the image is over the size limit");
    else if (rc == IMGCLS_EINVAL)
        set_error(it, rc, "the image's key is not valid in the input bucket");
    else if (rc)
        set_retry(it, "fetch_failed", w->in->err.msg);
}

/* Classifies one ITEM_READY item: a result, or an error about its image (both ITEM_ANSWER); or an
 * engine failure that is nobody's image's fault (ITEM_RETRY). */
static void classify_item(worker *w, item *it)
{
    engine_image img = it->req.image ? (engine_image){it->req.image, it->req.image_len}
                                     : (engine_image){it->fetched.data, it->fetched.len};
    engine_result res;
    imgcls_errbuf eb = {{0}};
    if (engine_classify(w->eng, &img, 1, 5, &res, &eb)) {
        set_retry(it, "classify_failed", eb.msg);
        return;
    }
    it->state = ITEM_ANSWER;
    it->resp.ms = (msg_timing){.fetch_ms = it->fetch_ms, .decode_ms = res.decode_ms, .infer_ms = res.infer_ms};
    if (res.rc) {
        set_error(it, res.rc, res.error);
        return;
    }
    it->resp.ntop = res.ntop;
    for (size_t k = 0; k < res.ntop; k++) {
        msg_class *c = &it->resp.top[k];
        snprintf(c->label, sizeof c->label, "%s", engine_label(w->eng, res.top[k].index));
        c->index = res.top[k].index;
        c->prob = res.top[k].prob;
    }
}

/* Writes the output bucket: the assignment's "(test_0, bathtub)" under the name without its extension,
 * then the whole response as the result record (store_key_result). The record goes last: once it
 * exists, a redelivery only replays it (find_result), so everything else must be in place by then. */
static int write_outputs(worker *w, const item *it, const imgcls_buf *json)
{
    char key[STORE_MAX_SYSTEM_KEY];
    int rc = 0;
    if (!it->resp.error_code[0]) {
        char stem[MESSAGE_MAX_FILE];
        snprintf(stem, sizeof stem, "%.*s", (int)filename_stem_len(it->req.file), it->req.file);
        char value[MESSAGE_MAX_FILE + MESSAGE_MAX_LABEL + 8];
        int len = snprintf(value, sizeof value, "(%s, %s)", stem, it->resp.top[0].label);
        rc = store_put(w->out, stem, value, (size_t)len);
        if (rc == IMGCLS_EINVAL) {
            /* a name this bucket cannot hold ("." as a stem, a name too long once encoded): permanent,
             * and no reason to withhold the label from its client */
            log_event("warn", "worker", "output_name_refused id=%s detail=\"%s\"", it->req.id, w->out->err.msg);
            rc = 0;
        }
        if (rc)
            return rc;
    }
    store_key_result(it->req.id, key);
    return store_put(w->out, key, json->data, json->len);
}

/* Sends body to the request's reply queue. 0, or a temporary failure (the item is then ITEM_RETRY). */
static int send_reply(worker *w, item *it, const imgcls_buf *body)
{
    queue *reply = reply_queue_get(w, it->req.reply_to);
    if (!reply) {
        set_retry(it, "reply_queue_unavailable", it->req.reply_to);
        return IMGCLS_EBACKEND;
    }
    int rc = queue_send(reply, body->data, body->len);
    if (rc)
        set_retry(it, "reply_failed", reply->err.msg);
    return rc;
}

/* Output bucket, then response: a crash between the two is replayed from the record on redelivery. */
static void answer_item(worker *w, item *it)
{
    imgcls_buf json;
    buf_init(&json, QUEUE_MAX_BODY);
    if (msg_response_encode(&it->resp, &json)) {
        /* cannot happen for what classify_item fills in; answered rather than retried for ever */
        set_error(it, IMGCLS_EIO, "the worker could not encode its answer");
        it->resp.ntop = 0;
        if (msg_response_encode(&it->resp, &json)) {
            it->state = ITEM_DROP;
            goto out;
        }
    }
    int rc = write_outputs(w, it, &json);
    if (rc) {
        set_retry(it, "output_write_failed", w->out->err.msg);
        goto out;
    }
    if (send_reply(w, it, &json))
        goto out;
    log_event("info", "worker", "answered id=%s file=\"%s\" %s=\"%s\" ms=%.1f", it->req.id, it->req.file,
              it->resp.error_code[0] ? "error" : "label",
              it->resp.error_code[0] ? it->resp.error_code : it->resp.top[0].label, it->resp.ms.total_ms);
out:
    buf_free(&json);
}

static void replay_item(worker *w, item *it)
{
    if (send_reply(w, it, &it->record) == 0)
        log_event("info", "worker", "replayed id=%s receives=%u", it->req.id, it->m->receive_count);
}

/* The last step for every message: delete it (answered), or hand it back to the queue. Deletion comes
 * after the answer, the claim check's removal after the deletion: a crash between any two steps only
 * repeats work, or leaves a claim for the sweep. */
static void finish_item(worker *w, item *it)
{
    const queue_msg *m = it->m;
    heartbeat_forget(w->hb, m->receipt);
    if (it->state == ITEM_DROP || it->state == ITEM_RETRY) {
        /* A retry waits 2, 4, 8, 16 s: soon enough for the client still waiting, slow enough not to
         * hammer a failing backend. If the release itself fails, the visibility timeout releases it. */
        unsigned shift = m->receive_count < 4 ? m->receive_count : 4;
        int backoff = (int)(1u << shift) < (int)w->o.visibility ? (int)(1u << shift) : (int)w->o.visibility;
        if (queue_change_visibility(w->requests, m->receipt, it->state == ITEM_DROP ? 0 : backoff))
            log_event("warn", "worker", "release_failed msg=%s detail=\"%s\"", m->id, w->requests->err.msg);
        return;
    }
    if (queue_delete(w->requests, m->receipt)) {
        /* redelivered later, and then replayed from its record */
        log_event("warn", "worker", "delete_failed id=%s detail=\"%s\"", it->req.id, w->requests->err.msg);
        return;
    }
    if (it->req.image_key[0] && store_del(w->in, it->req.image_key))
        log_event("warn", "worker", "claim_delete_failed id=%s detail=\"%s\"", it->req.id, w->in->err.msg);
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
        item *it = &items[i];
        if (it->state == ITEM_READY)
            classify_item(w, it);
        it->resp.ms.total_ms = clock_ms() - t0;
        if (it->state == ITEM_ANSWER)
            answer_item(w, it);
        else if (it->state == ITEM_REPLAY)
            replay_item(w, it);
        finish_item(w, it);
        msg_request_free(&it->req);
        buf_free(&it->fetched);
        buf_free(&it->record);
    }
}

/* Removes the claim checks a crash left behind (store.h: store_expire). */
static void sweep_claims(worker *w)
{
    long long now = (long long)time(NULL);
    if (now - w->last_sweep_s < CLAIM_SWEEP_PERIOD_S)
        return;
    w->last_sweep_s = now;
    size_t removed = 0;
    if (store_expire(w->in, STORE_CLAIM_PREFIX, now, (long long)w->o.claim_ttl, &removed))
        log_event("warn", "worker", "claim_sweep_failed detail=\"%s\"", w->in->err.msg);
    else if (removed)
        log_event("info", "worker", "claim_sweep removed=%zu", removed);
}

/* Tells the fleet whether this worker holds messages, so that scale-in stops idle workers first, and
 * how fast it works, for the policy. A failure costs only that: logged, never fatal. */
static void report(worker *w, bool busy, uint32_t images, double busy_s)
{
    if (w->fl && fleet_report(w->fl, busy, images, busy_s))
        log_event("warn", "worker", "fleet_report_failed detail=\"%s\"", w->fl->err.msg);
}

static int worker_loop(worker *w)
{
    while (!stop_requested) {
        sweep_claims(w);
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
        if (n) {
            double t0 = clock_ms();
            report(w, true, 0, 0);
            process_batch(w, msgs, n);
            report(w, false, (uint32_t)n, (clock_ms() - t0) / 1000.0);
        } else {
            /* idle for a whole wait: the asg fleet lifts its scale-in protection after a hold (fleet.h) */
            report(w, false, 0, 0);
        }
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
    cfg.max_memory = (size_t)w->o.max_image_mb << 20;
    int rc = preprocess_mode_parse(w->o.preprocess, &cfg.mode);
    if (rc)
        return imgcls_fail(eb, rc, "--preprocess must be imagenet or reference");
    if ((rc = network_precision_parse(w->o.precision, &cfg.precision)))
        return imgcls_fail(eb, rc, "--precision must be fp32, bf16 or int8, not '%s'", w->o.precision);
    if ((rc = engine_open(&cfg, &w->eng, eb)) || (rc = engine_warm_up(w->eng, eb)) ||
        (rc = queue_open(w->o.queue_url, &w->requests, eb)) || (rc = store_open(w->o.in_url, &w->in, eb)) ||
        (rc = store_open(w->o.out_url, &w->out, eb)) ||
        (rc = heartbeat_start(w->o.queue_url, (int)w->o.visibility, (int)w->o.max_batch_s, &w->hb, eb)) ||
        (w->o.fleet_url && (rc = fleet_open(w->o.fleet_url, &w->fl, eb))))
        return rc;
    char host[40] = "localhost"; /* 40 + ":" + pid fits the response's 64-byte worker field */
    gethostname(host, sizeof host - 1);
    snprintf(w->name, sizeof w->name, "%.40s:%d", host, (int)getpid());
    return 0;
}

static void worker_close(worker *w)
{
    heartbeat_stop(w->hb);
    fleet_close(w->fl);
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
    network_info ni;
    engine_info(w.eng, &ni);
    snprintf(w.engine, sizeof w.engine, "%.16s/%.16s/%.8s/%u", ni.runtime, ni.isa, ni.precision, ni.threads);
    log_event("info", "worker", "started name=%s batch=%lu threads=%u runtime=%s isa=%s precision=%s", w.name,
              w.o.batch, ni.threads, ni.runtime, ni.isa, ni.precision);
    report(&w, false, 0, 0); /* serving from now on */
    worker_loop(&w);
    log_event("info", "worker", "stopped name=%s", w.name);
out:
    worker_close(&w);
    free(args.positional);
    return status;
}
