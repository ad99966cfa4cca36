/* The pending table (contract in web_pending.h). */
#include "web/web_pending.h"

#include "common/error.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Past this many buckets the chains just get longer: a million waiting requests is not a web tier. */
#define PENDING_MAX_BUCKETS ((size_t)1 << 20)

struct web_pending_table {
    pthread_mutex_t mu;
    pthread_cond_t unparked; /* signalled when nparked drops */
    web_conn_fn park, wake;
    web_pending **buckets;
    size_t mask;
    web_pending *head, *tail; /* insertion (= deadline) order */
    size_t count, capacity;
    size_t nparked; /* parked, or woken and not yet running again */
    bool closed;
};

/* FNV-1a: ids are random hex, but responses come from outside, so hash the whole string rather than
 * trust its first bytes to be random. */
static size_t id_hash(const char *id)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

int web_pending_create(size_t capacity, web_conn_fn park, web_conn_fn wake, web_pending_table **out)
{
    int rc = 0;
    *out = NULL;
    if (capacity < 1 || !park || !wake)
        return IMGCLS_EINVAL;
    web_pending_table *t = calloc(1, sizeof *t);
    if (!t)
        return IMGCLS_ENOMEM;
    size_t n = 16;
    while (n < capacity * 2 && n < PENDING_MAX_BUCKETS)
        n *= 2;
    t->buckets = calloc(n, sizeof *t->buckets);
    if (!t->buckets) {
        rc = IMGCLS_ENOMEM;
        goto out;
    }
    t->mask = n - 1;
    t->capacity = capacity;
    t->park = park;
    t->wake = wake;
    if (pthread_mutex_init(&t->mu, NULL)) {
        rc = IMGCLS_ENOMEM;
        goto out;
    }
    if (pthread_cond_init(&t->unparked, NULL)) {
        pthread_mutex_destroy(&t->mu);
        rc = IMGCLS_ENOMEM;
        goto out;
    }
    *out = t;
    t = NULL;
out:
    if (t)
        free(t->buckets);
    free(t);
    return rc;
}

void web_pending_destroy(web_pending_table *t)
{
    if (!t)
        return;
    pthread_cond_destroy(&t->unparked);
    pthread_mutex_destroy(&t->mu);
    free(t->buckets);
    free(t);
}

static web_pending **find_slot(web_pending_table *t, const char *id)
{
    web_pending **pp = &t->buckets[id_hash(id) & t->mask];
    while (*pp && strcmp((*pp)->id, id) != 0)
        pp = &(*pp)->hnext;
    return pp;
}

/* Unlinks p from its chain and from the deadline list. Lock held, p linked. */
static void unlink_entry(web_pending_table *t, web_pending *p)
{
    web_pending **pp = find_slot(t, p->id);
    if (*pp == p)
        *pp = p->hnext;
    if (p->prev)
        p->prev->next = p->next;
    else
        t->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        t->tail = p->prev;
    p->hnext = p->prev = p->next = NULL;
    p->linked = false;
    t->count--;
}

/* Unlinks p, records the outcome, and wakes its connection if it is parked. Lock held, p linked. */
static void complete(web_pending_table *t, web_pending *p, enum web_outcome outcome, int64_t now_ms)
{
    unlink_entry(t, p);
    p->outcome = outcome;
    p->done_ms = now_ms;
    if (p->parked)
        t->wake(p->conn);
}

int web_pending_add(web_pending_table *t, web_pending *p, int64_t now_ms, int64_t timeout_ms)
{
    int rc = 0;
    pthread_mutex_lock(&t->mu);
    if (t->closed) {
        rc = IMGCLS_ECLOSED;
        goto out;
    }
    if (t->count >= t->capacity) {
        rc = IMGCLS_EBUSY;
        goto out;
    }
    web_pending **slot = find_slot(t, p->id);
    if (*slot) {
        rc = IMGCLS_EINVAL;
        goto out;
    }
    p->deadline_ms = now_ms + timeout_ms;
    p->outcome = WEB_WAITING;
    p->parked = false;
    p->hnext = NULL;
    *slot = p;
    p->prev = t->tail;
    p->next = NULL;
    if (t->tail)
        t->tail->next = p;
    else
        t->head = p;
    t->tail = p;
    p->linked = true;
    t->count++;
out:
    pthread_mutex_unlock(&t->mu);
    return rc;
}

bool web_pending_park(web_pending_table *t, web_pending *p)
{
    pthread_mutex_lock(&t->mu);
    bool waiting = p->linked;
    if (waiting) {
        t->park(p->conn);
        p->parked = true;
        t->nparked++;
    }
    pthread_mutex_unlock(&t->mu);
    return waiting;
}

void web_pending_unparked(web_pending_table *t, web_pending *p)
{
    pthread_mutex_lock(&t->mu);
    if (p->parked && !p->linked) {
        p->parked = false;
        t->nparked--;
        pthread_cond_broadcast(&t->unparked);
    }
    pthread_mutex_unlock(&t->mu);
}

void web_pending_remove(web_pending_table *t, web_pending *p)
{
    pthread_mutex_lock(&t->mu);
    if (p->linked)
        unlink_entry(t, p);
    if (p->parked) {
        p->parked = false;
        t->nparked--;
        pthread_cond_broadcast(&t->unparked);
    }
    pthread_mutex_unlock(&t->mu);
}

bool web_pending_answer(web_pending_table *t, const msg_response *resp, int64_t now_ms)
{
    pthread_mutex_lock(&t->mu);
    web_pending *p = *find_slot(t, resp->id);
    if (p) {
        p->resp = *resp;
        complete(t, p, WEB_ANSWERED, now_ms);
    }
    pthread_mutex_unlock(&t->mu);
    return p != NULL;
}

size_t web_pending_expire(web_pending_table *t, int64_t now_ms, web_expired_fn on_expired, void *arg)
{
    size_t n = 0;
    pthread_mutex_lock(&t->mu);
    while (t->head && t->head->deadline_ms <= now_ms) {
        web_pending *p = t->head;
        if (on_expired)
            on_expired(p, arg);
        complete(t, p, WEB_TIMED_OUT, now_ms);
        n++;
    }
    pthread_mutex_unlock(&t->mu);
    return n;
}

size_t web_pending_shutdown(web_pending_table *t, int64_t now_ms)
{
    size_t n = 0;
    pthread_mutex_lock(&t->mu);
    t->closed = true;
    while (t->head) {
        complete(t, t->head, WEB_SHUTDOWN, now_ms);
        n++;
    }
    pthread_mutex_unlock(&t->mu);
    return n;
}

bool web_pending_wait_unparked(web_pending_table *t, int timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&t->mu);
    int rc = 0;
    while (t->nparked > 0 && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&t->unparked, &t->mu, &until);
    bool idle = t->nparked == 0;
    pthread_mutex_unlock(&t->mu);
    return idle;
}

size_t web_pending_count(web_pending_table *t)
{
    pthread_mutex_lock(&t->mu);
    size_t n = t->count;
    pthread_mutex_unlock(&t->mu);
    return n;
}

bool web_pending_full(web_pending_table *t)
{
    pthread_mutex_lock(&t->mu);
    bool full = t->closed || t->count >= t->capacity;
    pthread_mutex_unlock(&t->mu);
    return full;
}
