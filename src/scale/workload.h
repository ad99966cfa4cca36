/* Workloads for the simulator: arrival times in seconds, sorted ascending (docs/autoscaling.md).
 *
 * Built in, all deterministic (evenly spread by the inverse of the cumulative rate, no randomness, so
 * a run is reproducible and a test can reason about it):
 *   burst    100 requests within the first 0.1 s: the original assignment's 100-image burst
 *   ramp     the rate rises linearly from 0 to 200 img/s over 120 s, then stops (12000 requests)
 *   spikes   5 bursts of 200 requests, one every 60 s, each within 0.1 s (1000 requests)
 *   diurnal  a day compressed 60:1 into 1440 s: 2 img/s at midnight rising as a raised cosine to
 *            100 img/s at noon and back (73440 requests)
 *
 * Or a CSV file of arrival times, which is outside input: one number of seconds per line, an optional
 * header on the first line (any first line that is not a number), blank lines ignored, "\r\n" accepted.
 * Every value must be finite, >= 0 and <= WORKLOAD_MAX_TIME_S; at most WORKLOAD_MAX_LINES lines of at
 * most WORKLOAD_MAX_LINE bytes. Unsorted files are sorted, not refused: arrival times are absolute, so
 * their order in the file carries nothing (logs merged from several clients are rarely in order). */
#ifndef IMGCLS_SCALE_WORKLOAD_H
#define IMGCLS_SCALE_WORKLOAD_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>

#define WORKLOAD_MAX_LINES 10000000u
#define WORKLOAD_MAX_LINE 128
#define WORKLOAD_MAX_TIME_S 1e6 /* about 11.6 days */

typedef struct workload {
    double *t; /* arrival times, sorted ascending */
    size_t n;
    bool was_sorted; /* a CSV file that was not in order and has been sorted */
} workload;

/* True when name is one of the built-in workloads. */
bool workload_is_builtin(const char *name);

/* Fills *w (zeroed first) with a built-in workload. Returns 0, IMGCLS_EINVAL (unknown name, with eb)
 * or IMGCLS_ENOMEM. */
int workload_builtin(const char *name, workload *w, imgcls_errbuf *eb);

/* Reads a CSV file of arrival times into *w (zeroed first). Returns 0, IMGCLS_EIO (cannot open or read),
 * IMGCLS_EFORMAT (a bad line: eb names the file and the line number), IMGCLS_ETOOBIG (over the line
 * limit), IMGCLS_EEMPTY (no arrival times) or IMGCLS_ENOMEM. */
int workload_read_csv(const char *path, workload *w, imgcls_errbuf *eb);

void workload_free(workload *w);

#endif
