/* The queue port (DESIGN.md §4): at-least-once message queues with visibility timeouts, receive counts
 * and a dead-letter queue, behind one interface for SQLite (local) and SQS (aws).
 *
 * A backend embeds `struct queue` as its first member and fills `ops`. Callers only use the inline
 * wrappers below. A handle is used by one thread at a time: open one per thread. Details of the last
 * failure (file, SQL error, HTTP status) are in q->err.msg, never in errno. */
#ifndef IMGCLS_QUEUE_QUEUE_H
#define IMGCLS_QUEUE_QUEUE_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* SQS's own limit: a message body is at most 256 KiB. */
#define QUEUE_MAX_BODY ((size_t)256 * 1024)
/* Upper bound on one receive, as in SQS. */
#define QUEUE_MAX_BATCH 10
/* A receipt or message id is at most this long, including the NUL (an SQS receipt handle is up to 1024
 * characters). */
#define QUEUE_MAX_RECEIPT 1025

typedef struct queue_msg {
    char id[QUEUE_MAX_RECEIPT];      /* stable across redeliveries */
    char receipt[QUEUE_MAX_RECEIPT]; /* this delivery; delete and change_visibility take it */
    unsigned receive_count;          /* 1 on the first delivery */
    unsigned char *body;             /* owned by the message; NUL-terminated; free with queue_msg_free */
    size_t len;
} queue_msg;

typedef struct queue_depth {
    uint64_t visible;   /* ready to be received */
    uint64_t in_flight; /* received, not yet deleted, visibility not expired */
} queue_depth;

typedef struct queue queue;

struct queue_ops {
    const char *scheme; /* "sqlite", "https" and "http" (SQS), "fault" */
    /* Opens the queue named by url, creating it (and its dead-letter queue) if it does not exist.
     * Returns 0 and *out, or an error with eb filled; *out is NULL on error. */
    int (*open)(const char *url, queue **out, imgcls_errbuf *eb);
    /* Closes the handle. Accepts NULL. Messages in flight stay in flight until their visibility ends. */
    void (*close)(queue *q);
    /* Sends one message. len <= QUEUE_MAX_BODY, else IMGCLS_ETOOBIG and nothing is sent. Durable when
     * it returns 0. */
    int (*send)(queue *q, const void *body, size_t len);
    /* Receives up to max (1..QUEUE_MAX_BATCH) messages, waiting up to wait_ms for the first one. Each
     * received message becomes invisible for visibility_s seconds and its receive_count goes up. A
     * message whose receive_count would pass the queue's max_receives is moved to the dead-letter queue
     * instead of being returned. Returns 0 with *n set (0 when the wait ended empty); on error *n = 0.
     * The caller frees each out[i] with queue_msg_free. */
    int (*receive)(queue *q, size_t max, int wait_ms, int visibility_s, queue_msg *out, size_t *n);
    /* Deletes the delivery named by receipt. Deleting an already-deleted message returns 0 (idempotent);
     * a receipt from an expired delivery may return IMGCLS_ENOTFOUND. */
    int (*delete_msg)(queue *q, const char *receipt);
    /* Makes the delivery invisible for visibility_s more seconds from now (0: visible again at once).
     * IMGCLS_ENOTFOUND when the message is gone or was delivered again under a newer receipt. */
    int (*change_visibility)(queue *q, const char *receipt, int visibility_s);
    /* Counts messages: visible, and in flight. */
    int (*depth)(queue *q, queue_depth *out);
    /* Optional (NULL: the wrappers below loop over send and delete_msg). n messages (1..QUEUE_MAX_BATCH,
     * QUEUE_MAX_BODY bytes in all) or receipts in one call; rcs[i] is entry i's result, as send or
     * delete_msg would return it. Returns 0 when the call itself went through (entries may still have
     * failed: look at rcs), else the error that every rcs[i] also holds. */
    int (*send_batch)(queue *q, const void *const *bodies, const size_t *lens, size_t n, int *rcs);
    int (*delete_batch)(queue *q, const char *const *receipts, size_t n, int *rcs);
};

struct queue {
    const struct queue_ops *ops;
    imgcls_errbuf err; /* detail of the last failure on this handle */
};

/* Opens a queue by URL, choosing the backend from the registry by scheme, e.g.
 *   sqlite:///var/lib/imgcls/imgcls.db?queue=requests&max_receives=5
 * Returns IMGCLS_EUNSUPPORTED for an unknown scheme, IMGCLS_EINVAL for a malformed URL.
 *
 * sqlite://<path>?queue=<name>[&max_receives=<n>][&sync=full|normal][&busy_timeout_ms=<ms>]
 *   <path> is everything between "sqlite://" and '?', used as a file-system path as it stands: absolute
 *   with a third slash (sqlite:///var/lib/imgcls/imgcls.db), relative to the working directory without
 *   one (sqlite://imgcls-data/imgcls.db). No percent-decoding. The directory must exist.
 *   queue: required, 1..80 of [A-Za-z0-9_-]. Its dead-letter queue is <name>-dlq in the same file; it
 *     is a queue like any other (open it by that name). A message arrives there with its receive
 *     count reset, so its first delivery from the dead-letter queue has receive_count 1.
 *   max_receives: 0..1000, default 5; 0 never dead-letters. It belongs to the handle: the handle that
 *     receives decides.
 *   sync: full (default: a send that returned survives power loss) or normal (survives any process
 *     crash; the last commits may be lost on power loss).
 *   busy_timeout_ms: how long to wait for another process's lock before IMGCLS_EBUSY; default 5000.
 *   Unknown parameters are IMGCLS_EINVAL, so that a typo is not silently ignored.
 *   Files: <path>, <path>-wal, <path>-shm, and one doorbell <path>.<name>.bell per queue, all on a
 *   local file system (WAL mode and inotify need one). receive: visibility_s 0..43200, wait_ms >= 0.
 *   A handle must not be used across fork(); open another in the child.
 *
 * https://sqs.<region>.amazonaws.com/<account>/<name>   (and http:// for moto on loopback)
 *   An SQS standard queue, named by its URL exactly as GetQueueUrl returns it (queue_sqs.c). Requests go
 *   to AWS_ENDPOINT_URL(_SQS) when set, else to the URL's own host; signing and credentials as in
 *   aws/aws.h. open does not create the queue (the deployment does: deploy/aws/template.yaml); it checks
 *   that it exists with GetQueueUrl, IMGCLS_ENOTFOUND if not. Dead-lettering is the queue's redrive
 *   policy, so max_receives is SQS's maxReceiveCount, and a message keeps its receive count on the
 *   dead-letter queue. At least once: SQS may now and then hand one message to two receivers within its
 *   visibility timeout (the worker then replays from the result record; the web tier drops the second
 *   answer as unmatched). receive: wait_ms is rounded up to whole seconds (at most 20 per call, repeated up
 *   to wait_ms); visibility_s 0..43200. send takes text only (UTF-8, no control byte but tab, LF and CR:
 *   SQS's character set; else IMGCLS_EINVAL), which every imgcls message is. FIFO queues (".fifo") are
 *   IMGCLS_EUNSUPPORTED.
 *
 * fault:<inner-url>[#op=<op>&fail=<N>&times=<K>&code=<ENAME>]
 *   Wraps the queue <inner-url> and fails calls of <op> (send, receive, delete, change_visibility,
 *   depth, any, open) from the Nth on, K times, with IMGCLS_<ENAME>; without '#', passes everything
 *   through. Full syntax and defaults in common/fault.h. */
int queue_open(const char *url, queue **out, imgcls_errbuf *eb);

void queue_msg_free(queue_msg *m);

/* Whether other names a queue beside home that a worker may answer on: the same URL with only the
 * queue's name changed (the queue= parameter of a sqlite URL, the last path segment of an SQS URL) to
 * 1..80 of [A-Za-z0-9_-] that is neither home's own name nor a dead-letter queue ("*-dlq"). A fault:
 * wrapper and its #rule are taken off home first; other may not be one. reply_to comes from a message,
 * and a message must not be able to make a worker write to any queue, or with any parameters, it likes. */
bool queue_url_is_sibling(const char *home, const char *other);

static inline void queue_close(queue *q)
{
    if (q)
        q->ops->close(q);
}
static inline int queue_send(queue *q, const void *body, size_t len)
{
    return q->ops->send(q, body, len);
}
static inline int queue_receive(queue *q, size_t max, int wait_ms, int visibility_s, queue_msg *out,
                                size_t *n)
{
    return q->ops->receive(q, max, wait_ms, visibility_s, out, n);
}
static inline int queue_delete(queue *q, const char *receipt)
{
    return q->ops->delete_msg(q, receipt);
}
static inline int queue_change_visibility(queue *q, const char *receipt, int visibility_s)
{
    return q->ops->change_visibility(q, receipt, visibility_s);
}
static inline int queue_depth_get(queue *q, queue_depth *out)
{
    return q->ops->depth(q, out);
}
static inline int queue_send_batch(queue *q, const void *const *bodies, const size_t *lens, size_t n, int *rcs)
{
    if (q->ops->send_batch)
        return q->ops->send_batch(q, bodies, lens, n, rcs);
    for (size_t i = 0; i < n; i++)
        rcs[i] = q->ops->send(q, bodies[i], lens[i]);
    return 0;
}
static inline int queue_delete_batch(queue *q, const char *const *receipts, size_t n, int *rcs)
{
    if (q->ops->delete_batch)
        return q->ops->delete_batch(q, receipts, n, rcs);
    for (size_t i = 0; i < n; i++)
        rcs[i] = q->ops->delete_msg(q, receipts[i]);
    return 0;
}

#endif
