/* A small pool of backend handles for the HTTP threads.
 *
 * Queue and store handles are one-thread-at-a-time (queue.h, store.h). MHD runs the access handler on
 * the threads of its pool, which it creates itself, and a handler holds one set of handles only while it
 * runs. So the pool holds one set per MHD thread, opened at start-up, and a handler takes a set, uses it
 * and gives it back: with as many sets as threads, a take never waits.
 *
 * Rejected: one shared set behind a mutex -- every upload does two fsyncs in the store and one commit
 * in the queue, and one mutex would serialise them across all threads, so --threads would buy nothing;
 * thread-local handles -- MHD gives no hook when it starts a thread, so they would be opened lazily on
 * the first request (a wrong URL would show up then, not at start-up) and closed by a key destructor on
 * thread exit, which is harder to reason about than a pool. */
#ifndef IMGCLS_WEB_WEB_HANDLES_H
#define IMGCLS_WEB_WEB_HANDLES_H

#include "common/error.h"
#include "queue/queue.h"
#include "store/store.h"

#include <stddef.h>

typedef struct web_handles {
    queue *requests; /* the request queue: send, depth */
    store *in;       /* the input bucket */
    store *out;      /* the output bucket (GET /results) */
    struct web_handles *next_free;
} web_handles;

typedef struct web_handle_pool web_handle_pool;

/* Opens n sets. Returns 0, or the first open error with eb naming the URL; nothing stays open then. */
int web_handles_open(size_t n, const char *queue_url, const char *in_url, const char *out_url,
                     web_handle_pool **out, imgcls_errbuf *eb);
/* Closes every set. All must have been given back. Accepts NULL. */
void web_handles_close(web_handle_pool *p);
/* Takes a set, waiting while all are out. Never NULL. */
web_handles *web_handles_take(web_handle_pool *p);
void web_handles_give(web_handle_pool *p, web_handles *h);

#endif
