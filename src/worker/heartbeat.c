#include "worker/heartbeat.h"

#include "common/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct heartbeat {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    queue *q;
    int visibility_s, max_batch_s;
    char receipts[QUEUE_MAX_BATCH][QUEUE_MAX_RECEIPT];
    size_t n;
    struct timespec batch_start; /* CLOCK_MONOTONIC */
};

static double since_s(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static void extend_all(heartbeat *h)
{
    if (h->n && since_s(&h->batch_start) > h->max_batch_s) {
        /* The worker is stuck: let the messages go back to the queue for another worker. */
        log_event("warn", "worker", "heartbeat_gave_up held=%zu after_s=%d", h->n, h->max_batch_s);
        h->n = 0;
        return;
    }
    for (size_t i = 0; i < h->n; i++) {
        int rc = queue_change_visibility(h->q, h->receipts[i], h->visibility_s);
        if (rc)
            log_event("warn", "worker", "extend_visibility_failed err=%s detail=\"%s\"", imgcls_err_name(rc),
                      h->q->err.msg);
    }
}

static void *heartbeat_main(void *arg)
{
    heartbeat *h = arg;
    pthread_mutex_lock(&h->mu);
    while (!h->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        /* a third of the timeout: two beats can be late before a message slips out */
        long period_ms = h->visibility_s * 1000L / 3;
        until.tv_sec += period_ms / 1000;
        until.tv_nsec += (period_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        int rc = 0;
        while (!h->stop && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&h->cv, &h->mu, &until);
        if (!h->stop)
            extend_all(h); /* under the lock: the batch cannot change (or be deleted) meanwhile */
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

int heartbeat_start(const char *queue_url, int visibility_s, int max_batch_s, heartbeat **out, imgcls_errbuf *eb)
{
    *out = NULL;
    heartbeat *h = calloc(1, sizeof *h);
    if (!h)
        return IMGCLS_ENOMEM;
    h->visibility_s = visibility_s;
    h->max_batch_s = max_batch_s;
    int rc = queue_open(queue_url, &h->q, eb);
    if (rc) {
        free(h);
        return rc;
    }
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    if (pthread_create(&h->thread, NULL, heartbeat_main, h) != 0) {
        queue_close(h->q);
        free(h);
        return imgcls_fail(eb, IMGCLS_ENOMEM, "cannot start the heartbeat thread");
    }
    *out = h;
    return 0;
}

void heartbeat_track(heartbeat *h, const queue_msg *msgs, size_t n)
{
    pthread_mutex_lock(&h->mu);
    h->n = n < QUEUE_MAX_BATCH ? n : QUEUE_MAX_BATCH;
    for (size_t i = 0; i < h->n; i++)
        memcpy(h->receipts[i], msgs[i].receipt, QUEUE_MAX_RECEIPT);
    clock_gettime(CLOCK_MONOTONIC, &h->batch_start);
    pthread_mutex_unlock(&h->mu);
}

void heartbeat_forget(heartbeat *h, const char *receipt)
{
    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < h->n; i++) {
        if (strcmp(h->receipts[i], receipt) == 0) {
            memcpy(h->receipts[i], h->receipts[h->n - 1], QUEUE_MAX_RECEIPT); /* order does not matter */
            h->n--;
            break;
        }
    }
    pthread_mutex_unlock(&h->mu);
}

void heartbeat_stop(heartbeat *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    h->stop = true;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->thread, NULL);
    queue_close(h->q);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h);
}
