/* Metrics for GET /metrics (contract in web_metrics.h). */
#include "web/web_metrics.h"

#include "common/error.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Upper bounds in seconds. They reach --timeout's default (300 s) because a request that waits for a
 * scale-out is exactly the one worth seeing. */
static const double BOUNDS[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
#define NBOUNDS (sizeof BOUNDS / sizeof *BOUNDS)

typedef struct web_hist {
    uint64_t bucket[NBOUNDS]; /* not cumulative; summed when rendered */
    uint64_t count;
    double sum;
} web_hist;

struct web_metrics {
    pthread_mutex_t mu;
    uint64_t by_status[600];
    web_hist all;
    /* POST / alone: every other route (a scrape of this very endpoint, the dashboard's polling)
     * answers in a millisecond and would blur the throughput and latency of classifications. */
    web_hist upload;
    uint64_t unmatched;
    /* Answers by the engine that computed them (message.h's engine string). Bounded, since a response
     * is outside input: engines past WEB_MAX_ENGINES are counted under "other". */
    char engines[WEB_MAX_ENGINES][MESSAGE_MAX_ENGINE];
    uint64_t by_engine[WEB_MAX_ENGINES + 1];
    size_t nengines;
};

int web_metrics_create(web_metrics **out)
{
    web_metrics *m = calloc(1, sizeof *m);
    *out = NULL;
    if (!m)
        return IMGCLS_ENOMEM;
    if (pthread_mutex_init(&m->mu, NULL)) {
        free(m);
        return IMGCLS_ENOMEM;
    }
    *out = m;
    return 0;
}

void web_metrics_destroy(web_metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void web_metrics_engine(web_metrics *m, const char *engine)
{
    if (!engine || !engine[0])
        return;
    pthread_mutex_lock(&m->mu);
    size_t i = 0;
    while (i < m->nengines && strcmp(m->engines[i], engine) != 0)
        i++;
    if (i == m->nengines && i < WEB_MAX_ENGINES) {
        snprintf(m->engines[i], sizeof m->engines[i], "%s", engine);
        m->nengines++;
    }
    m->by_engine[i]++; /* i == WEB_MAX_ENGINES: "other" */
    pthread_mutex_unlock(&m->mu);
}

static void hist_observe(web_hist *h, double seconds)
{
    for (size_t i = 0; i < NBOUNDS; i++)
        if (seconds <= BOUNDS[i]) {
            h->bucket[i]++;
            break;
        }
    h->count++;
    h->sum += seconds;
}

void web_metrics_observe(web_metrics *m, unsigned status, double seconds, bool upload)
{
    if (status < 100 || status > 599)
        return;
    if (seconds < 0)
        seconds = 0;
    pthread_mutex_lock(&m->mu);
    m->by_status[status]++;
    hist_observe(&m->all, seconds);
    if (upload)
        hist_observe(&m->upload, seconds);
    pthread_mutex_unlock(&m->mu);
}

void web_metrics_unmatched(web_metrics *m)
{
    pthread_mutex_lock(&m->mu);
    m->unmatched++;
    pthread_mutex_unlock(&m->mu);
}

static int render_hist(const web_hist *h, const char *name, const char *help, imgcls_buf *out)
{
    int rc = buf_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (size_t i = 0; i < NBOUNDS && !rc; i++) {
        cum += h->bucket[i];
        rc = buf_printf(out, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, BOUNDS[i], cum);
    }
    if (!rc)
        rc = buf_printf(out, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_sum %.6f\n%s_count %" PRIu64 "\n", name,
                        h->count, name, h->sum, name, h->count);
    return rc;
}

/* The HTTP series. Lock held. */
static int render_http(web_metrics *m, imgcls_buf *out)
{
    int rc = buf_printf(out, "# HELP imgcls_http_requests_total HTTP requests answered, by status.\n"
                             "# TYPE imgcls_http_requests_total counter\n");
    for (unsigned s = 100; s < 600 && !rc; s++)
        if (m->by_status[s])
            rc = buf_printf(out, "imgcls_http_requests_total{status=\"%u\"} %" PRIu64 "\n", s,
                            m->by_status[s]);
    if (!rc)
        rc = render_hist(&m->all, "imgcls_http_request_duration_seconds",
                         "Time from a request's headers to its answer.", out);
    if (!rc)
        rc = render_hist(&m->upload, "imgcls_upload_duration_seconds",
                         "Time from an upload's (POST /) headers to its answer, whatever the status.", out);
    if (!rc)
        rc = buf_printf(out,
                        "# HELP imgcls_http_responses_unmatched_total Worker answers that no waiting request "
                        "matched.\n# TYPE imgcls_http_responses_unmatched_total counter\n"
                        "imgcls_http_responses_unmatched_total %" PRIu64 "\n",
                        m->unmatched);
    if (!rc)
        rc = buf_printf(out, "# HELP imgcls_answers_by_engine_total Worker answers by the engine that computed them "
                             "(runtime/isa/precision/threads).\n# TYPE imgcls_answers_by_engine_total counter\n");
    for (size_t i = 0; i <= WEB_MAX_ENGINES && !rc; i++)
        if (i < m->nengines || (i == WEB_MAX_ENGINES && m->by_engine[i]))
            rc = buf_printf(out, "imgcls_answers_by_engine_total{engine=\"%s\"} %" PRIu64 "\n",
                            i < m->nengines ? m->engines[i] : "other", m->by_engine[i]);
    return rc;
}

int web_metrics_render(web_metrics *m, const web_gauges *g, imgcls_buf *out)
{
    pthread_mutex_lock(&m->mu);
    int rc = render_http(m, out);
    pthread_mutex_unlock(&m->mu);
    if (!rc && g->have_depth)
        rc = buf_printf(out,
                        "# HELP imgcls_queue_depth Messages in the request queue.\n"
                        "# TYPE imgcls_queue_depth gauge\n"
                        "imgcls_queue_depth{state=\"visible\"} %" PRIu64 "\n"
                        "imgcls_queue_depth{state=\"in_flight\"} %" PRIu64 "\n",
                        g->depth.visible, g->depth.in_flight);
    if (!rc)
        rc = buf_printf(
            out,
            "# HELP imgcls_requests_waiting Requests sent to the workers and not yet answered.\n"
            "# TYPE imgcls_requests_waiting gauge\n"
            "imgcls_requests_waiting %zu\n"
            "# HELP imgcls_dispatcher_up Whether the thread that matches answers to requests runs.\n"
            "# TYPE imgcls_dispatcher_up gauge\n"
            "imgcls_dispatcher_up %d\n",
            g->waiting, g->dispatcher_up ? 1 : 0);
    return rc;
}
