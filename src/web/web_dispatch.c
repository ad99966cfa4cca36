/* The dispatcher: the one thread that reads this instance's reply queue (DESIGN.md §2).
 *
 * It long-polls the queue, matches each response to its waiting request by id and wakes that request's
 * connection (web_pending_answer), then deletes the message. A response nobody waits for -- its request
 * timed out, or it was sent to an earlier run of this instance -- is deleted and logged: its result is
 * in the output bucket anyway, for GET /results/{id}. After every poll it expires the requests past
 * --timeout, so the poll's wait is also the granularity of timeouts.
 *
 * Deleting after matching, not before: if the process dies in between, the response comes back after
 * its visibility timeout and is dropped then as unmatched, which is harmless; the other order could
 * lose an answer that a live request waits for. */
#include "web/web_server.h"

#include "common/clock.h"
#include "common/log.h"
#include "message/message.h"
#include "web/web_render.h"

#include <time.h>

#define DISPATCH_WAIT_MS 1000
/* Only this thread reads the reply queue, so the visibility only matters after a crash. */
#define DISPATCH_VISIBILITY_S 30
#define DISPATCH_BACKOFF_MS 500

static const char *loggable_id(const char *id)
{
    return msg_id_valid(id) ? id : "(malformed)";
}

static void on_expired(const web_pending *p, void *arg)
{
    (void)arg;
    log_event("info", "web", "timed_out id=%s", p->id);
}

static void handle_one(web_server *s, const queue_msg *m)
{
    msg_response resp;
    imgcls_errbuf eb = {{0}};
    if (msg_response_decode(m->body, m->len, &resp, &eb)) {
        log_event("warn", "web", "bad_response msg=%s detail=\"%s\"", m->id, eb.msg);
        return;
    }
    web_metrics_engine(s->metrics, resp.engine);
    if (!web_pending_answer(s->pending, &resp, clock_ms_i64())) {
        web_metrics_unmatched(s->metrics);
        log_event("info", "web", "unmatched_response id=%s", loggable_id(resp.id));
    }
}

/* Every answered response of a receive goes in one delete call (one SQLite transaction, one SQS
 * DeleteMessageBatch), after all of them were answered. A failed delete only means the response comes
 * again, and is then unmatched. */
static void delete_all(web_server *s, const queue_msg *msgs, size_t n)
{
    const char *receipts[QUEUE_MAX_BATCH];
    int rcs[QUEUE_MAX_BATCH];
    for (size_t i = 0; i < n; i++)
        receipts[i] = msgs[i].receipt;
    queue_delete_batch(s->replies, receipts, n, rcs);
    for (size_t i = 0; i < n; i++)
        if (rcs[i])
            log_event("warn", "web", "reply_delete_failed msg=%s detail=\"%s\"", msgs[i].id, s->replies->err.msg);
}

static void *dispatch_main(void *arg)
{
    web_server *s = arg;
    queue_msg msgs[QUEUE_MAX_BATCH];
    log_event("info", "web", "dispatcher_started");
    while (!atomic_load(&s->stopping)) {
        size_t n = 0;
        int rc =
            queue_receive(s->replies, QUEUE_MAX_BATCH, DISPATCH_WAIT_MS, DISPATCH_VISIBILITY_S, msgs, &n);
        if (rc) {
            log_event("warn", "web", "reply_receive_failed err=%s detail=\"%s\"", imgcls_err_name(rc),
                      s->replies->err.msg);
            struct timespec ts = {0, DISPATCH_BACKOFF_MS * 1000000L};
            nanosleep(&ts, NULL); /* a broken queue would otherwise spin */
        }
        for (size_t i = 0; i < n; i++)
            handle_one(s, &msgs[i]);
        if (n)
            delete_all(s, msgs, n);
        for (size_t i = 0; i < n; i++)
            queue_msg_free(&msgs[i]);
        web_pending_expire(s->pending, clock_ms_i64(), on_expired, NULL);
    }
    atomic_store(&s->dispatcher_alive, false);
    log_event("info", "web", "dispatcher_stopped");
    return NULL;
}

int web_dispatch_start(web_server *s, imgcls_errbuf *eb)
{
    int rc = queue_open(s->cfg.reply_url, &s->replies, eb);
    if (rc)
        return rc;
    atomic_store(&s->dispatcher_alive, true);
    if (pthread_create(&s->dispatcher, NULL, dispatch_main, s)) {
        atomic_store(&s->dispatcher_alive, false);
        return imgcls_fail(eb, IMGCLS_ENOMEM, "cannot start the dispatcher thread");
    }
    s->dispatcher_started = true;
    return 0;
}

void web_dispatch_stop(web_server *s)
{
    atomic_store(&s->stopping, true);
    if (s->dispatcher_started)
        pthread_join(s->dispatcher, NULL);
    s->dispatcher_started = false;
    queue_close(s->replies);
    s->replies = NULL;
}
