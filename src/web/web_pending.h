/* The pending table: the requests that the web tier has sent and that wait for a worker's answer
 * (DESIGN.md §2).
 *
 * Each waiting request owns a web_pending (embedded in its per-request state) and puts it here, keyed
 * by its id, before it sends the request message: a fast worker's answer may reach the dispatcher
 * before queue_send has even returned, and it must find the request. Then the owner parks its
 * connection (web_pending_park). Whoever completes an entry -- the dispatcher with an answer or a
 * timeout, or shutdown -- unlinks it, writes the outcome into it and wakes the connection, all under
 * the table's one mutex, so "park" and "wake" can never cross: an entry completed before it was parked
 * is simply not parked, and its owner answers at once.
 *
 * The table knows nothing of HTTP: parking and waking are callbacks (MHD_suspend_connection and
 * MHD_resume_connection in the server, fakes in the unit tests). Both are called with the table's
 * mutex held, so they must not call back into the table. Lock order: table, then whatever the
 * callbacks take.
 *
 * Costs: add, park, answer and remove are O(1) (hash chains over a power-of-two bucket array sized for
 * the capacity). Every request waits the same timeout, so insertion order is deadline order and expiry
 * pops from the head of one list; two adds that race may land a few ms out of order, which only makes
 * the later one expire a few ms late. */
#ifndef IMGCLS_WEB_WEB_PENDING_H
#define IMGCLS_WEB_WEB_PENDING_H

#include "message/message.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WEB_ID_LEN MESSAGE_ID_LEN /* hex characters in a request id */

enum web_outcome {
    WEB_WAITING = 0, /* not completed yet */
    WEB_ANSWERED,    /* resp holds the worker's response (a result or an error) */
    WEB_TIMED_OUT,   /* the deadline passed first */
    WEB_SHUTDOWN,    /* the server is stopping */
};

typedef struct web_pending {
    char id[WEB_ID_LEN + 1];
    void *conn;          /* handed to the park and wake callbacks */
    int64_t deadline_ms; /* set by web_pending_add */
    /* Written under the lock by whoever completes the entry; the owner reads them once it has been woken
     * (or once web_pending_park returned false), when nobody else touches the entry any more. */
    enum web_outcome outcome;
    int64_t done_ms;    /* when it was completed */
    msg_response resp;  /* valid when outcome == WEB_ANSWERED */
    /* Private to the table. */
    bool linked, parked;
    struct web_pending *hnext, *prev, *next;
} web_pending;

typedef void (*web_conn_fn)(void *conn);
typedef void (*web_expired_fn)(const web_pending *p, void *arg);

typedef struct web_pending_table web_pending_table;

/* Creates a table that holds at most capacity entries (>= 1). park and wake must not be NULL.
 * Returns 0, IMGCLS_EINVAL or IMGCLS_ENOMEM. */
int web_pending_create(size_t capacity, web_conn_fn park, web_conn_fn wake, web_pending_table **out);
/* Frees the table. Accepts NULL. Entries still linked are left alone (their owners free them). */
void web_pending_destroy(web_pending_table *t);

/* Links p (its id and conn set, the rest zeroed) with deadline now_ms + timeout_ms. Returns 0,
 * IMGCLS_EBUSY when capacity entries wait already, IMGCLS_ECLOSED after web_pending_shutdown, or
 * IMGCLS_EINVAL when the id is already waiting (ids are random; this would be a bug). */
int web_pending_add(web_pending_table *t, web_pending *p, int64_t now_ms, int64_t timeout_ms);
/* Called by the owner once its request is sent: if p is still waiting, calls park(conn), counts it as
 * parked and returns true (the owner returns and waits to be woken); if it was completed already,
 * returns false (the owner answers now). */
bool web_pending_park(web_pending_table *t, web_pending *p);
/* The owner's handler runs again after a wake: uncounts the park (see web_pending_wait_unparked). */
void web_pending_unparked(web_pending_table *t, web_pending *p);
/* Unlinks p if it is still linked (its send failed, or its connection ended). Never wakes. */
void web_pending_remove(web_pending_table *t, web_pending *p);

/* Completes the entry with resp->id as WEB_ANSWERED with a copy of resp, and wakes it if parked.
 * Returns false when no such request waits (timed out already, or from before a restart). */
bool web_pending_answer(web_pending_table *t, const msg_response *resp, int64_t now_ms);
/* Completes every entry whose deadline is <= now_ms as WEB_TIMED_OUT, calling on_expired(p, arg)
 * (may be NULL) for each under the lock. Returns how many. */
size_t web_pending_expire(web_pending_table *t, int64_t now_ms, web_expired_fn on_expired, void *arg);
/* Refuses every later add (IMGCLS_ECLOSED) and completes every waiting entry as WEB_SHUTDOWN. Returns
 * how many were completed. */
size_t web_pending_shutdown(web_pending_table *t, int64_t now_ms);
/* Waits until no connection is parked, or woken but not yet running again, or until timeout_ms passed.
 * Returns true when none is. */
bool web_pending_wait_unparked(web_pending_table *t, int timeout_ms);

/* How many entries are linked now. */
size_t web_pending_count(web_pending_table *t);
/* Whether an add would now fail with IMGCLS_EBUSY or IMGCLS_ECLOSED (a cheap early check; the add
 * itself is the authority). */
bool web_pending_full(web_pending_table *t);

#endif
