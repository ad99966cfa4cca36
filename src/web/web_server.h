/* The inside of the web tier: what its files share.
 *
 * Threads:
 *   - MHD's pool (--threads, epoll): accepts, parses HTTP and runs the access handler. The handler of a
 *     POST / does the slow part of an upload itself -- input bucket writes and the queue send -- with a
 *     set of handles from web_handles (one set per MHD thread), then parks its connection with
 *     MHD_suspend_connection and returns. So a waiting request costs a suspended connection and a
 *     web_pending entry, not a thread.
 *   - One dispatcher thread (web_dispatch.c): long-polls this instance's reply queue, matches each
 *     response to its waiting request in the pending table, and wakes it with MHD_resume_connection;
 *     the same loop expires requests past --timeout. No request polls for its own answer.
 *   - The main thread (web_cli.c): starts everything, waits for SIGINT/SIGTERM, stops everything.
 * A woken connection is handled again by its MHD thread, which reads the outcome from its entry and
 * queues the answer.
 *
 * Files: web_cli.c (options, start-up, signals), web_server.c (MHD daemon, routing, answers),
 * web_upload.c (POST /), web_routes.c (GET routes), web_dashboard.c (GET /dashboard), web_dispatch.c,
 * web_pending.c, web_handles.c, web_render.c (bodies), web_metrics.c. */
#ifndef IMGCLS_WEB_WEB_SERVER_H
#define IMGCLS_WEB_WEB_SERVER_H

#include "common/buf.h"
#include "common/error.h"
#include "queue/queue.h"
#include "web/web_handles.h"
#include "web/web_metrics.h"
#include "web/web_pending.h"

#include <microhttpd.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct web_config {
    unsigned long port; /* 0: any free port (logged as event=listening) */
    const char *bind;
    const char *queue_url, *reply_url, *in_url, *out_url;
    unsigned long max_body, timeout_s, max_waiting, threads;
    unsigned long inline_max; /* images up to this many bytes travel inline in the message */
    const char *extra_metrics; /* NULL, or a file appended to /metrics */
} web_config;

typedef struct web_server {
    web_config cfg;
    struct MHD_Daemon *mhd;
    unsigned port; /* the port actually bound */
    web_handle_pool *handles;
    web_pending_table *pending;
    web_metrics *metrics;
    /* The dispatcher's own handle on the reply queue: only that thread uses it. */
    queue *replies;
    pthread_t dispatcher;
    bool dispatcher_started;
    atomic_bool dispatcher_alive;
    atomic_bool stopping; /* set first thing on shutdown: new uploads get 503 */
    /* Requests between their first handler call and MHD's completion callback, so shutdown can let
     * the last answers go out before it stops MHD. */
    pthread_mutex_t mu;
    pthread_cond_t idle;
    size_t active;
} web_server;

/* Per request state, the connection's con_cls. */
typedef struct web_upload web_upload;
typedef struct web_request {
    web_server *srv;
    struct MHD_Connection *conn;
    double t0_ms;      /* first handler call */
    bool json;         /* Accept: application/json */
    bool upload;       /* a POST /, counted in the upload histogram too */
    unsigned status;   /* the status queued, for metrics and the log */
    web_upload *up;    /* POST / only */
} web_request;

/* web_server.c */
/* Starts MHD with the options of cfg (handles, pending table and metrics set up first). */
int web_server_start(web_server *s, imgcls_errbuf *eb);
/* Stops accepting, answers every waiting request 503, lets the answers go out and stops MHD. Returns
 * false when a connection stayed suspended past the grace: MHD is then left running and s must not be
 * freed (the caller is about to exit). Accepts a server whose start failed part-way. */
bool web_server_stop(web_server *s);
/* Queues an answer of status with body (taken: the buffer is emptied). ctype NULL means text/plain, or
 * JSON when the request asked for it. */
enum MHD_Result web_respond(web_request *r, unsigned status, const char *ctype, imgcls_buf *body);
/* Queues an error answer: message formatted as text, or as JSON {"error":{code,message},status,id}. */
enum MHD_Result web_respond_error(web_request *r, unsigned status, const char *code, const char *id,
                                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* web_upload.c: POST / in its three handler phases. */
enum MHD_Result web_upload_begin(web_request *r);
enum MHD_Result web_upload_data(web_request *r, const char *data, size_t size);
enum MHD_Result web_upload_finish(web_request *r);
/* Frees the upload state; unlinks its pending entry if still linked. Accepts r->up == NULL. */
void web_upload_free(web_request *r);

/* web_routes.c */
enum MHD_Result web_route_result(web_request *r, const char *id);
enum MHD_Result web_route_health(web_request *r);
enum MHD_Result web_route_metrics(web_request *r);

/* web_dashboard.c: GET /dashboard, a self-contained page that polls /metrics. */
enum MHD_Result web_route_dashboard(web_request *r);

/* web_dispatch.c */
int web_dispatch_start(web_server *s, imgcls_errbuf *eb);
/* Asks the dispatcher to stop and joins it (within about one long-poll). Accepts a server whose
 * dispatcher never started. */
void web_dispatch_stop(web_server *s);

#endif
