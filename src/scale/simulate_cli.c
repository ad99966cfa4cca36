/* imgcls simulate: replay a workload against scaling policies (docs/autoscaling.md).
 *
 * A thin layer: it parses and checks the options, builds the workload, runs sim_run once per policy
 * and hands the results to the writers of simulate_report.c. Exit status: 0, 2 for bad options or a
 * bad workload file, 1 when an output cannot be written. */
#include "scale/simulate.h"

#include "common/config.h"
#include "common/log.h"
#include "scale/simulate_report.h"
#include "scale/workload.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Every policy is costed over the same window, long enough for the slowest default scale-in to
 * finish: the alarm policy takes one worker off per 300 s cooldown, so 19 -> 1 takes 5400 s. */
#define SIM_DEFAULT_TAIL_S 7200.0

typedef struct simulate_opts {
    const char *workload, *boot, *service, *tick, *until, *chart_until, *policy, *csv, *svg;
    unsigned long min, max;
    bool json;
} simulate_opts;

static const char USAGE[] =
    "usage: imgcls simulate [--workload burst|ramp|spikes|diurnal|FILE.csv] [--min N] [--max N]\n"
    "                       [--boot SECONDS] [--service SECONDS] [--policy backlog,threshold,alarm]\n"
    "                       [--csv FILE] [--svg FILE] [--json]\n\n"
    "Replays a workload against each scaling policy with a discrete-event model of the fleet and prints\n"
    "a summary per policy (time to drain, latency percentiles, worker-seconds, peak workers, actions).\n"
    "--boot 30 models EC2 instances, --boot 0.05 local worker processes; --service 2 the original\n"
    "design's worker, the default 0.012 this engine.";

static size_t options(simulate_opts *o, config_opt *t)
{
    config_opt opts[] = {
        {"workload", CONFIG_STR, "burst",
         "burst, ramp, spikes, diurnal, or a CSV file of arrival times (seconds, one a line)", 0, 0,
         &o->workload},
        {"min", CONFIG_UINT, "1", "fewest workers (the fleet starts with this many, running)", 0, SIM_MAX_WORKERS,
         &o->min},
        {"max", CONFIG_UINT, "19", "most workers", 1, SIM_MAX_WORKERS, &o->max},
        {"boot", CONFIG_STR, "30", "seconds from asking for a worker to its first image (0.05 for local)", 0, 0,
         &o->boot},
        {"service", CONFIG_STR, "0.012", "seconds one worker takes per image (the original design: 2)", 0, 0,
         &o->service},
        {"tick", CONFIG_STR, "1", "seconds between two decisions of the controller", 0, 0, &o->tick},
        {"until", CONFIG_STR, NULL, "end of the simulated window, in seconds (default: last arrival + 7200)", 0,
         0, &o->until},
        {"policy", CONFIG_STR, "backlog,threshold,alarm", "policies to compare, comma-separated", 0, 0,
         &o->policy},
        {"csv", CONFIG_STR, NULL, "write the timeline (one row per tick per policy) to this file", 0, 0, &o->csv},
        {"svg", CONFIG_STR, NULL, "write a chart (one panel per policy) to this file", 0, 0, &o->svg},
        {"chart-until", CONFIG_STR, NULL, "right end of the chart's time axis (default: when all settled)", 0,
         0, &o->chart_until},
        {"json", CONFIG_BOOL, NULL, "print the summary as one JSON object per policy per line", 0, 0, &o->json},
    };
    memcpy(t, opts, sizeof opts);
    return sizeof opts / sizeof *opts;
}

/* A number of seconds, strictly: plain decimal (no "inf", "nan" or hex), nothing after it, in [lo, hi]. */
static int parse_seconds(const char *flag, const char *text, double lo, double hi, double *out, imgcls_errbuf *eb)
{
    char *end = NULL;
    errno = 0;
    double v = text && *text && strspn(text, "0123456789.eE+-") == strlen(text) ? strtod(text, &end) : NAN;
    if (!end || *end || errno || !isfinite(v))
        return imgcls_fail(eb, IMGCLS_EINVAL, "--%s: expected a number of seconds such as 30 or 0.05, got '%s'",
                           flag, text ? text : "");
    if (v < lo || v > hi)
        return imgcls_fail(eb, IMGCLS_EINVAL, "--%s: %g s is outside [%g, %g]", flag, v, lo, hi);
    *out = v;
    return 0;
}

/* "backlog,alarm" -> kinds. Each at most once, so the timeline's rows are unambiguous. */
static int parse_policies(const char *list, sim_report *r, imgcls_errbuf *eb)
{
    r->npolicies = 0;
    for (const char *p = list;;) {
        size_t len = strcspn(p, ",");
        char name[32];
        scale_policy_kind k;
        snprintf(name, sizeof name, "%.*s", (int)(len < sizeof name ? len : sizeof name - 1), p);
        if (len >= sizeof name || scale_policy_parse(name, &k))
            return imgcls_fail(eb, IMGCLS_EINVAL, "--policy: '%.*s' is not backlog, threshold or alarm",
                               (int)(len < 40 ? len : 40), p);
        for (size_t i = 0; i < r->npolicies; i++)
            if (r->kinds[i] == k)
                return imgcls_fail(eb, IMGCLS_EINVAL, "--policy: %s is listed twice", name);
        if (r->npolicies == SIM_MAX_POLICIES)
            return imgcls_fail(eb, IMGCLS_EINVAL, "--policy: at most %d policies", SIM_MAX_POLICIES);
        r->kinds[r->npolicies++] = k;
        if (!p[len])
            return 0;
        p += len + 1;
    }
}

static int check_options(const simulate_opts *o, sim_report *r, imgcls_errbuf *eb)
{
    int rc = parse_seconds("boot", o->boot, 0, 86400, &r->sp.boot_s, eb);
    if (!rc)
        rc = parse_seconds("service", o->service, 1e-6, 3600, &r->sp.service_s, eb);
    if (!rc)
        rc = parse_seconds("tick", o->tick, 0.01, 3600, &r->sp.tick_s, eb);
    if (!rc && o->until)
        rc = parse_seconds("until", o->until, 0, SIM_MAX_TIME_S, &r->sp.until_s, eb);
    if (!rc && o->chart_until)
        rc = parse_seconds("chart-until", o->chart_until, 0.001, SIM_MAX_TIME_S, &r->chart_until_s, eb);
    if (!rc && o->min > o->max)
        rc = imgcls_fail(eb, IMGCLS_EINVAL, "--min %lu is above --max %lu", o->min, o->max);
    if (!rc)
        rc = parse_policies(o->policy, r, eb);
    r->min = (uint32_t)o->min;
    r->max = (uint32_t)o->max;
    return rc;
}

static int load_workload(const char *name, workload *w, imgcls_errbuf *eb)
{
    if (workload_is_builtin(name))
        return workload_builtin(name, w, eb);
    int rc = workload_read_csv(name, w, eb);
    if (rc == IMGCLS_EIO) { /* most likely a mistyped name rather than a missing file: say both */
        imgcls_errbuf why = *eb;
        return imgcls_fail(eb, IMGCLS_EINVAL, "--workload: '%s' is not burst, ramp, spikes or diurnal, and %s",
                           name, why.msg);
    }
    if (!rc && w->was_sorted)
        log_event("warn", "simulate", "event=workload_sorted file=%s n=%zu", name, w->n);
    return rc;
}

/* Runs every policy; the window defaults to the last arrival plus SIM_DEFAULT_TAIL_S. */
static int run_all(sim_report *r, bool until_given, imgcls_errbuf *eb)
{
    double last = r->w->t[r->w->n - 1];
    if (!until_given)
        r->sp.until_s = fmin(last + SIM_DEFAULT_TAIL_S, SIM_MAX_TIME_S);
    else if (r->sp.until_s < last)
        return imgcls_fail(eb, IMGCLS_EINVAL, "--until: %g s is before the last arrival (%g s)", r->sp.until_s,
                           last);
    for (size_t i = 0; i < r->npolicies; i++) {
        scale_params p;
        scale_params_default(&p, r->kinds[i]);
        p.min = r->min;
        p.max = r->max;
        int rc = sim_run(r->w->t, r->w->n, &p, &r->sp, &r->results[i], eb);
        if (rc)
            return rc;
    }
    return 0;
}

/* Writes one output file with the given writer. Returns 0, or 1 after saying why on stderr. */
static int write_file(const char *path, int (*writer)(FILE *, const sim_report *), const sim_report *r)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "imgcls simulate: %s: %s\n", path, strerror(errno));
        return 1;
    }
    int rc = writer(f, r);
    if (fclose(f) != 0 && !rc)
        rc = IMGCLS_EIO;
    if (rc)
        fprintf(stderr, "imgcls simulate: %s: %s\n", path, imgcls_strerror(rc));
    return rc ? 1 : 0;
}

static int write_outputs(const simulate_opts *o, const sim_report *r)
{
    int status = 0;
    if (o->csv && write_file(o->csv, sim_write_csv, r))
        status = 1;
    if (o->svg && write_file(o->svg, sim_write_svg, r))
        status = 1;
    if (o->json) {
        if (sim_write_json(stdout, r))
            status = 1;
    } else {
        sim_write_table(stdout, r);
    }
    if (fflush(stdout) != 0)
        status = 1;
    return status;
}

int cli_simulate(int argc, char **argv)
{
    simulate_opts o;
    config_opt table[16];
    size_t nopts = options(&o, table);
    config_args args = {0};
    imgcls_errbuf eb = {{0}};
    sim_report r;
    workload w = {0};
    memset(&r, 0, sizeof r);
    r.w = &w;
    int status = 2;
    if (config_parse(table, nopts, argc, argv, &args, &eb)) {
        fprintf(stderr, "imgcls simulate: %s\n", eb.msg);
        goto out;
    }
    if (args.help || args.npositional) {
        config_print_help(args.help ? stdout : stderr, USAGE, table, nopts);
        status = args.help ? 0 : 2;
        goto out;
    }
    r.workload_name = o.workload;
    if (check_options(&o, &r, &eb) || load_workload(o.workload, &w, &eb) || run_all(&r, o.until != NULL, &eb)) {
        fprintf(stderr, "imgcls simulate: %s\n", eb.msg[0] ? eb.msg : "out of memory");
        goto out;
    }
    status = write_outputs(&o, &r);
out:
    for (size_t i = 0; i < r.npolicies; i++)
        sim_result_free(&r.results[i]);
    workload_free(&w);
    free(args.positional);
    return status;
}
