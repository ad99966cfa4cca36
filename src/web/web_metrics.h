/* The web tier's metrics, served on GET /metrics in the Prometheus text format (version 0.0.4):
 *
 *   imgcls_http_requests_total{status="200"}           counter, one series per status seen
 *   imgcls_http_request_duration_seconds               histogram, first header to answer sent
 *   imgcls_upload_duration_seconds                     histogram, the same for POST / alone (its _count
 *                                                      is the uploads answered: the dashboard's throughput)
 *   imgcls_http_responses_unmatched_total              counter, worker answers nobody waited for
 *   imgcls_answers_by_engine_total{engine="onednn/avx2/fp32/1"}  counter, worker answers by the engine
 *                                                      (runtime/isa/precision/threads) that computed them
 *   imgcls_queue_depth{state="visible"|"in_flight"}    gauge, the request queue (when readable)
 *   imgcls_requests_waiting                            gauge, requests sent and not yet answered
 *   imgcls_dispatcher_up                               gauge, 1 while the dispatcher thread runs
 *
 * Thread-safe: one mutex, so that a scrape sees a histogram whose buckets, sum and count agree. */
#ifndef IMGCLS_WEB_WEB_METRICS_H
#define IMGCLS_WEB_WEB_METRICS_H

#include "common/buf.h"
#include "message/message.h"
#include "queue/queue.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct web_metrics web_metrics;

/* What the server reads at scrape time. */
typedef struct web_gauges {
    bool have_depth; /* false when the queue could not be read: the series is left out */
    queue_depth depth;
    size_t waiting;
    bool dispatcher_up;
} web_gauges;

/* Returns 0 or IMGCLS_ENOMEM. */
int web_metrics_create(web_metrics **out);
void web_metrics_destroy(web_metrics *m); /* accepts NULL */

/* Counts one answered request (status 100..599; others are ignored) that took seconds; upload: it was
 * a POST / (counted in the upload histogram too). */
void web_metrics_observe(web_metrics *m, unsigned status, double seconds, bool upload);
/* Counts one worker answer that matched no waiting request. */
void web_metrics_unmatched(web_metrics *m);
/* Counts one worker answer computed by engine (msg_response.engine; empty: not counted). */
#define WEB_MAX_ENGINES 8
void web_metrics_engine(web_metrics *m, const char *engine);

/* Appends the exposition text. Returns 0 or the buffer's error. */
int web_metrics_render(web_metrics *m, const web_gauges *g, imgcls_buf *out);

#endif
