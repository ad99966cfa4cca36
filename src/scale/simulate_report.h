/* What `imgcls simulate` writes: the summary table, JSON lines, the CSV timeline and the SVG chart.
 * Plain writers to a FILE, kept apart from both the model (simulate.c) and the command line
 * (simulate_cli.c) so that each can be read and tested on its own. */
#ifndef IMGCLS_SCALE_SIMULATE_REPORT_H
#define IMGCLS_SCALE_SIMULATE_REPORT_H

#include "scale/policy.h"
#include "scale/simulate.h"
#include "scale/workload.h"

#include <stdio.h>

#define SIM_MAX_POLICIES 8

typedef struct sim_report {
    const char *workload_name; /* a built-in name or the CSV file's path */
    const workload *w;
    sim_params sp;
    uint32_t min, max;
    double chart_until_s; /* right end of the chart's time axis; <= 0: when the last policy settled */
    size_t npolicies;
    scale_policy_kind kinds[SIM_MAX_POLICIES];
    sim_result results[SIM_MAX_POLICIES];
} sim_report;

/* The summary, one column per policy, for people. */
void sim_write_table(FILE *f, const sim_report *r);

/* One JSON object per policy per line, with exactly the fields policy, drain_s, p50_s, p95_s, p99_s,
 * worker_s, peak_workers, actions (a time that does not exist, such as the drain time of a run that
 * did not drain, is null). Returns 0 or IMGCLS_ENOMEM. */
int sim_write_json(FILE *f, const sim_report *r);

/* The timeline: a header, then one row per tick per policy. Returns 0 or IMGCLS_EIO. */
int sim_write_csv(FILE *f, const sim_report *r);

/* A self-contained SVG chart: one panel per policy, stacked, each with its caption and three strips
 * sharing the time axis (queue depth; workers running and starting; latency). Returns 0 or
 * IMGCLS_EIO. */
int sim_write_svg(FILE *f, const sim_report *r);

#endif
