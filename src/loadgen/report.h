/* The run's output on stdout: a per-answer line with --verbose, and the summary, as text or JSON.
 *
 * Text summary (every line "key: value"; "errors" is followed by one indented line per kind, and
 * "failed:" by one line per failed request, the first LOADGEN_MAX_LISTED of them):
 *
 *   requests:    10
 *   completed:   10
 *   ok:          9
 *   errors:      1
 *     HTTP 500:  1
 *   elapsed:     0.031 s
 *   throughput:  322.6 req/s
 *   latency ms:  p50 2.1  p95 3.9  p99 3.9  max 3.9  mean 2.3
 *   accuracy:    0.8889 (8/9)
 *   failed:
 *     request 3 bad.jpg: HTTP 500: model exploded
 *
 * JSON summary: one object, {"requests","completed","ok","errors","errors_by_kind":{kind:count},
 * "elapsed_s","throughput_rps","latency_ms":{"n","p50","p95","p99","max","mean"} or null,
 * "accuracy" (null without --expect or without a checked answer),"correct","checked",
 * "failures":[{"request","file","error","detail"}],"failures_not_listed","interrupted","url",
 * "concurrency","seed"}. With --verbose --json, stdout is JSON Lines: one {"file","name","label"} per
 * answer, then the summary as the last line. */
#ifndef IMGCLS_LOADGEN_REPORT_H
#define IMGCLS_LOADGEN_REPORT_H

#include "loadgen/stats.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct loadgen_report {
    const char *url;
    size_t concurrency;
    unsigned long seed;
    bool has_expect;
} loadgen_report;

/* "test_0:bathtub", as the assignment's client printed; or {"file":"test_0.JPEG","name":"test_0",
 * "label":"bathtub"} with json. name is the file name, stem_len the length without its extension. */
void loadgen_print_answer(FILE *f, const char *name, size_t stem_len, const char *label, bool json);

/* Both sort st's latencies (see loadgen_stats_latency). */
void loadgen_report_text(FILE *f, loadgen_stats *st, const loadgen_report *info);
/* Returns 0, or IMGCLS_ENOMEM when the JSON cannot be built (nothing is printed then). */
int loadgen_report_json(FILE *f, loadgen_stats *st, const loadgen_report *info);

#endif
