/* What a load run measured: counts, latencies of the successful requests, errors grouped by kind,
 * and the first failures by request, for the summary. Pure bookkeeping: no I/O, no clock. */
#ifndef IMGCLS_LOADGEN_STATS_H
#define IMGCLS_LOADGEN_STATS_H

#include <stdbool.h>
#include <stddef.h>

#define LOADGEN_MAX_KINDS 32   /* distinct error kinds counted by name; the rest go under "other" */
#define LOADGEN_MAX_LISTED 100 /* failed requests named one by one in the summary */

typedef struct loadgen_error_kind {
    char name[96]; /* "HTTP 500", "Couldn't connect to server", "response over 64 KiB" */
    size_t count;
} loadgen_error_kind;

typedef struct loadgen_failure {
    size_t request;   /* 0-based request number */
    const char *file; /* the image's file name; not owned */
    char kind[96];
    char detail[256]; /* the server's first line, or curl's error detail; may be empty */
} loadgen_failure;

typedef struct loadgen_stats {
    size_t planned, completed, ok, failed;
    size_t checked, correct; /* answers to images with an expected label, and how many matched */
    float *latency_ms;       /* one per ok request, room for planned */
    loadgen_error_kind kinds[LOADGEN_MAX_KINDS];
    size_t nkinds, other_kinds;
    loadgen_failure listed[LOADGEN_MAX_LISTED];
    size_t nlisted;
    double elapsed_ms;
    int interrupted; /* the signal that stopped the run early, or 0 */
} loadgen_stats;

typedef struct loadgen_latency {
    size_t n; /* 0 when no request succeeded; the other fields are then 0 */
    double p50, p95, p99, max, mean;
} loadgen_latency;

/* Zeroes st and reserves room for planned latencies. 0 or IMGCLS_ENOMEM. */
int loadgen_stats_init(loadgen_stats *st, size_t planned);
/* Accepts a zeroed or freed st. */
void loadgen_stats_free(loadgen_stats *st);

/* One request answered 200 in ms milliseconds. */
void loadgen_stats_ok(loadgen_stats *st, double ms);
/* One request failed. kind groups it in the counts; detail is kept only for the first
 * LOADGEN_MAX_LISTED failures. Strings are copied (truncated to fit). */
void loadgen_stats_fail(loadgen_stats *st, size_t request, const char *file, const char *kind, const char *detail);

/* Nearest-rank percentiles of the ok latencies. Sorts st->latency_ms in place. */
void loadgen_stats_latency(loadgen_stats *st, loadgen_latency *out);

#endif
