/* The MHD daemon of the web tier: start and stop, routing, per-request state, answers. How the threads
 * fit together: web_server.h. */
#include "web/web_server.h"

#include "common/clock.h"
#include "common/log.h"
#include "web/web_render.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* Every waiting request holds its connection (suspended), so the limit is on waiting clients, not on
 * threads. It is kept below the file limit (raised to the hard limit by web_cli.c), leaving room for
 * the queue, store and log descriptors. */
#define WEB_CONNECTION_LIMIT 16384u
#define WEB_FD_RESERVE 64u
/* An idle or stalled connection is closed after this long. Suspended connections are exempt (MHD
 * stops their clock), so it never cuts a request that waits for a worker. */
#define WEB_IDLE_TIMEOUT_S 60u
/* How long shutdown waits for the last answers to go out. */
#define WEB_SHUTDOWN_GRACE_MS 5000

enum MHD_Result web_respond(web_request *r, unsigned status, const char *ctype, imgcls_buf *body)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(body->len, body->data, MHD_RESPMEM_MUST_FREE);
    if (!resp)
        return MHD_NO; /* the body stays with the caller, who frees it */
    buf_init(body, body->max); /* MHD owns the bytes now */
    if (!ctype)
        ctype = r->json ? "application/json" : "text/plain";
    enum MHD_Result rc = MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (rc == MHD_YES && (status == 503 || status == 504))
        rc = MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (rc == MHD_YES)
        rc = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    if (rc == MHD_YES)
        r->status = status;
    return rc;
}

enum MHD_Result web_respond_error(web_request *r, unsigned status, const char *code, const char *id,
                                  const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    imgcls_buf body;
    buf_init(&body, 4096);
    enum MHD_Result rc = MHD_NO;
    if (web_render_error(status, code, id, msg, r->json, &body) == 0)
        rc = web_respond(r, status, NULL, &body);
    buf_free(&body);
    return rc;
}

static bool is_get(const char *method)
{
    return strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
}

/* The first handler call of a request: headers are in, the body (if any) is not. */
static enum MHD_Result route(web_request *r, const char *url, const char *method)
{
    static const char results[] = "/results/";
    if (strcmp(url, "/") == 0) {
        if (strcmp(method, MHD_HTTP_METHOD_POST) == 0) {
            r->upload = true;
            return web_upload_begin(r);
        }
        return web_respond_error(r, 405, "EUNSUPPORTED", NULL,
                                 "method %.16s is not allowed on /; upload with POST", method);
    }
    bool health = strcmp(url, "/healthz") == 0, metrics = strcmp(url, "/metrics") == 0;
    bool result = strncmp(url, results, strlen(results)) == 0, dashboard = strcmp(url, "/dashboard") == 0;
    if (!health && !metrics && !result && !dashboard)
        return web_respond_error(r, 404, "ENOTFOUND", NULL, "no such route: %.100s", url);
    if (!is_get(method))
        return web_respond_error(r, 405, "EUNSUPPORTED", NULL,
                                 "method %.16s is not allowed on %.100s; use GET", method, url);
    if (health)
        return web_route_health(r);
    if (metrics)
        return web_route_metrics(r);
    if (dashboard)
        return web_route_dashboard(r);
    return web_route_result(r, url + strlen(results));
}

static void activity(web_server *s, int delta)
{
    pthread_mutex_lock(&s->mu);
    if (delta > 0)
        s->active++;
    else if (--s->active == 0)
        pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    web_server *s = cls;
    web_request *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        r->srv = s;
        r->conn = conn;
        r->t0_ms = clock_ms();
        r->json =
            web_accepts_json(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT));
        *con_cls = r;
        activity(s, +1);
        return route(r, url, method);
    }
    if (!r->up)
        return MHD_YES; /* answered in the first call; MHD discards any body */
    if (*upload_data_size) {
        enum MHD_Result rc = web_upload_data(r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return rc;
    }
    return web_upload_finish(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    web_server *s = cls;
    web_request *r = *con_cls;
    if (!r)
        return;
    double ms = clock_ms() - r->t0_ms;
    web_metrics_observe(s->metrics, r->status, ms / 1000.0, r->upload);
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        log_event("info", "web", "request_ended status=%u reason=%d ms=%.1f", r->status, (int)toe, ms);
    web_upload_free(r);
    free(r);
    *con_cls = NULL;
    activity(s, -1);
}

/* MHD's own complaints (a bad request line, a failed accept) become log lines. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = 0;
    for (char *p = msg; *p; p++)
        if (*p == '"' || *p == '\n')
            *p = '\'';
    log_event("warn", "web", "mhd msg=\"%s\"", msg);
}

static void park(void *conn)
{
    MHD_suspend_connection(conn);
}

static void wake(void *conn)
{
    MHD_resume_connection(conn);
}

typedef union web_addr {
    struct sockaddr sa;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
} web_addr;

static int parse_bind(const web_config *c, web_addr *a, bool *v6, imgcls_errbuf *eb)
{
    memset(a, 0, sizeof *a);
    *v6 = strchr(c->bind, ':') != NULL;
    if (*v6) {
        a->v6.sin6_family = AF_INET6;
        a->v6.sin6_port = htons((uint16_t)c->port);
        if (inet_pton(AF_INET6, c->bind, &a->v6.sin6_addr) == 1)
            return 0;
    } else {
        a->v4.sin_family = AF_INET;
        a->v4.sin_port = htons((uint16_t)c->port);
        if (inet_pton(AF_INET, c->bind, &a->v4.sin_addr) == 1)
            return 0;
    }
    return imgcls_fail(eb, IMGCLS_EINVAL, "--bind: '%s' is not an IPv4 or IPv6 address", c->bind);
}

static unsigned connection_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return WEB_CONNECTION_LIMIT;
    if (rl.rlim_cur <= 2 * WEB_FD_RESERVE)
        return (unsigned)(rl.rlim_cur / 2);
    rlim_t room = rl.rlim_cur - WEB_FD_RESERVE;
    return room < WEB_CONNECTION_LIMIT ? (unsigned)room : WEB_CONNECTION_LIMIT;
}

static int start_mhd(web_server *s, imgcls_errbuf *eb)
{
    web_addr addr;
    bool v6;
    int rc = parse_bind(&s->cfg, &addr, &v6, eb);
    if (rc)
        return rc;
    /* epoll, with MHD's own threads; ALLOW_SUSPEND_RESUME also gives the inter-thread channel that
     * MHD_resume_connection needs. */
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (v6)
        flags |= MHD_USE_IPv6;
    unsigned pool = s->cfg.threads > 1 ? (unsigned)s->cfg.threads : 0; /* 0: one internal thread */
    /* The logger first: MHD reports problems with the options that follow it through it. */
    s->mhd =
        MHD_start_daemon(flags, (uint16_t)s->cfg.port, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER,
                         on_mhd_log, s, MHD_OPTION_SOCK_ADDR, &addr.sa, MHD_OPTION_THREAD_POOL_SIZE, pool,
                         MHD_OPTION_CONNECTION_LIMIT, connection_limit(), MHD_OPTION_CONNECTION_TIMEOUT,
                         WEB_IDLE_TIMEOUT_S, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
    if (!s->mhd)
        return imgcls_fail(eb, IMGCLS_EIO, "cannot listen on %s port %lu (in use, or not an address here?)",
                           s->cfg.bind, s->cfg.port);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : (unsigned)s->cfg.port;
    return 0;
}

int web_server_start(web_server *s, imgcls_errbuf *eb)
{
    atomic_init(&s->dispatcher_alive, false);
    atomic_init(&s->stopping, false);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->idle, NULL);
    int rc =
        web_handles_open(s->cfg.threads, s->cfg.queue_url, s->cfg.in_url, s->cfg.out_url, &s->handles, eb);
    if (!rc && (rc = web_pending_create(s->cfg.max_waiting, park, wake, &s->pending)))
        imgcls_fail(eb, rc, "cannot create the pending table: %s", imgcls_strerror(rc));
    if (!rc && (rc = web_metrics_create(&s->metrics)))
        imgcls_fail(eb, rc, "out of memory");
    if (!rc)
        rc = web_dispatch_start(s, eb);
    if (!rc)
        rc = start_mhd(s, eb);
    return rc;
}

/* Waits until no request is between its first handler call and its completion, or the grace ends.
 * Returns how many still are. */
static size_t wait_idle(web_server *s, int timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    while (s->active > 0 && rc == 0)
        rc = pthread_cond_timedwait(&s->idle, &s->mu, &until);
    size_t left = s->active;
    pthread_mutex_unlock(&s->mu);
    return left;
}

bool web_server_stop(web_server *s)
{
    /* No MHD_quiesce_daemon: on an epoll daemon with its own threads it races MHD's event loop for
     * the listen socket's removal from the epoll set, and the loser calls MHD_PANIC (libmicrohttpd
     * 0.9.75; the abort was seen under TSan in CI). The listen socket stays open until
     * MHD_stop_daemon instead; a request that arrives meanwhile gets 503 "shutting down" from the
     * closed pending table. */
    atomic_store(&s->stopping, true);
    size_t n = s->pending ? web_pending_shutdown(s->pending, clock_ms_i64()) : 0;
    log_event("info", "web", "stopping waiting=%zu", n);
    web_dispatch_stop(s);
    /* MHD_stop_daemon aborts the process if a connection is still suspended, and MHD's threads may
     * still use the handles, the table and the metrics. So if the grace runs out with a connection
     * parked, leave everything as it is: the process is about to exit anyway. */
    if (s->pending && !web_pending_wait_unparked(s->pending, WEB_SHUTDOWN_GRACE_MS)) {
        log_event("error", "web", "stop_incomplete reason=connections_still_suspended");
        return false;
    }
    size_t left = wait_idle(s, WEB_SHUTDOWN_GRACE_MS);
    if (left)
        log_event("warn", "web", "stop_grace_over active=%zu", left);
    if (s->mhd)
        MHD_stop_daemon(s->mhd);
    s->mhd = NULL;
    web_handles_close(s->handles);
    web_pending_destroy(s->pending);
    web_metrics_destroy(s->metrics);
    s->handles = NULL;
    s->pending = NULL;
    s->metrics = NULL;
    pthread_cond_destroy(&s->idle);
    pthread_mutex_destroy(&s->mu);
    return true;
}
