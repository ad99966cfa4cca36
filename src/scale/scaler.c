/* imgcls scaler (contract in scaler.h). */
#include "scale/scaler.h"

#include "aws/aws.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "fleet/fleet.h"
#include "fleet/fleet_asg.h"
#include "queue/queue.h"
#include "scale/policy.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SCALER_METRICS_MAX 8192

typedef struct scaler_opts {
    const char *queue_url, *fleet_url, *policy, *metrics_file, *cw_namespace;
    unsigned long min, max, interval_ms, boot_ms, drain_ms, window_s, max_step, default_rate, cw_period_s;
} scaler_opts;

typedef struct scaler {
    scaler_opts o;
    scale_params params;
    scale_state state;
    queue *q;
    fleet *f;
    uint64_t decisions_out, decisions_in;
    queue_depth depth;
    fleet_status fs;
    aws_client *cw;                /* with --cloudwatch-namespace */
    char cw_group[ASG_MAX_GROUP];  /* the dimension: the asg fleet's group, or empty */
    double cw_last_ms;
} scaler;

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static const char USAGE[] =
    "usage: imgcls scaler --queue URL --fleet URL [options]\n\n"
    "Every --interval-ms, reads the request queue's depth and the fleet's state, asks the scaling policy\n"
    "how many workers there should be, and tells the fleet; one log line per change, with the reason.\n"
    "Policies: backlog (default), threshold (the original design's rule), alarm (that rule as CloudWatch\n"
    "alarms would apply it). SIGTERM or SIGINT stops it; the fleet keeps its last size.";

static size_t options(scaler_opts *o, config_opt *t)
{
    config_opt opts[] = {
        {"queue", CONFIG_STR, NULL, "request queue URL (required)", 0, 0, &o->queue_url},
        {"fleet", CONFIG_STR, NULL, "fleet URL (required), e.g. local:///var/lib/imgcls/fleet", 0, 0, &o->fleet_url},
        {"policy", CONFIG_STR, "backlog", "backlog, threshold or alarm", 0, 0, &o->policy},
        {"min-workers", CONFIG_UINT, "1", "fewest workers", 0, 1000, &o->min},
        {"max-workers", CONFIG_UINT, "19", "most workers", 1, 1000, &o->max},
        {"interval-ms", CONFIG_UINT, "1000", "time between decisions", 50, 600000, &o->interval_ms},
        {"boot-ms", CONFIG_UINT, "30000", "a new worker's boot time, until the fleet has measured one", 0,
         3600000, &o->boot_ms},
        {"target-drain-ms", CONFIG_UINT, "500", "backlog: each worker's share of the queue drains within this",
         100, 3600000, &o->drain_ms},
        {"scale-in-window-s", CONFIG_UINT, "15", "backlog: the recommendation must stay lower this long to scale in",
         0, 86400, &o->window_s},
        {"max-step", CONFIG_UINT, "10", "backlog: most workers added by one decision", 1, 1000, &o->max_step},
        {"default-rate", CONFIG_UINT, "50", "backlog: images/s per worker until the fleet has measured it", 1,
         100000, &o->default_rate},
        {"metrics-file", CONFIG_STR, NULL, "write Prometheus metrics here after every decision", 0, 0,
         &o->metrics_file},
        {"cloudwatch-namespace", CONFIG_STR, NULL,
         "publish BacklogPerInstance and RequestQueueDepth to CloudWatch in this namespace (PutMetricData)", 0, 0,
         &o->cw_namespace},
        {"cloudwatch-period-s", CONFIG_UINT, "60", "seconds between two CloudWatch publications", 1, 3600,
         &o->cw_period_s},
    };
    memcpy(t, opts, sizeof opts);
    return sizeof opts / sizeof *opts;
}

static int scaler_params(scaler *s, imgcls_errbuf *eb)
{
    scale_policy_kind kind;
    if (scale_policy_parse(s->o.policy, &kind))
        return imgcls_fail(eb, IMGCLS_EINVAL, "--policy must be backlog, threshold or alarm, not '%s'", s->o.policy);
    scale_params_default(&s->params, kind);
    s->params.min = (uint32_t)s->o.min;
    s->params.max = (uint32_t)s->o.max;
    s->params.target_drain_s = (double)s->o.drain_ms / 1000.0;
    s->params.scale_in_window_s = (double)s->o.window_s;
    s->params.max_step = (uint32_t)s->o.max_step;
    s->params.default_rate = (double)s->o.default_rate;
    scale_state_init(&s->state);
    return scale_params_check(&s->params, eb);
}

/* Writes the metrics to a temporary file and renames it over --metrics-file, so a reader never sees half. */
static void write_metrics(const scaler *s)
{
    char tmp[PATH_MAX];
    imgcls_buf b;
    buf_init(&b, SCALER_METRICS_MAX);
    const fleet_status *f = &s->fs;
    int rc = buf_printf(&b,
                        "# HELP imgcls_fleet_workers Workers of the fleet by state.\n# TYPE imgcls_fleet_workers gauge\n"
                        "imgcls_fleet_workers{state=\"running\"} %u\nimgcls_fleet_workers{state=\"starting\"} %u\n"
                        "imgcls_fleet_workers{state=\"stopping\"} %u\n"
                        "# HELP imgcls_fleet_busy Running workers that hold messages.\n# TYPE imgcls_fleet_busy gauge\n"
                        "imgcls_fleet_busy %u\n"
                        "# HELP imgcls_fleet_desired Workers the scaler asked for.\n# TYPE imgcls_fleet_desired gauge\n"
                        "imgcls_fleet_desired %u\n"
                        "# HELP imgcls_scaler_decisions_total Changes of the desired count.\n"
                        "# TYPE imgcls_scaler_decisions_total counter\n"
                        "imgcls_scaler_decisions_total{direction=\"out\"} %llu\n"
                        "imgcls_scaler_decisions_total{direction=\"in\"} %llu\n"
                        "# HELP imgcls_scaler_queue_depth The request queue's depth at the last decision.\n"
                        "# TYPE imgcls_scaler_queue_depth gauge\n"
                        "imgcls_scaler_queue_depth{state=\"visible\"} %llu\n"
                        "imgcls_scaler_queue_depth{state=\"in_flight\"} %llu\n"
                        "# HELP imgcls_scaler_rate_per_worker Measured images per busy second of one worker.\n"
                        "# TYPE imgcls_scaler_rate_per_worker gauge\nimgcls_scaler_rate_per_worker %.6g\n"
                        "# HELP imgcls_scaler_boot_seconds Measured time from a worker's start to serving.\n"
                        "# TYPE imgcls_scaler_boot_seconds gauge\nimgcls_scaler_boot_seconds %.6g\n",
                        f->running, f->starting, f->stopping, f->busy, f->desired,
                        (unsigned long long)s->decisions_out, (unsigned long long)s->decisions_in,
                        (unsigned long long)s->depth.visible, (unsigned long long)s->depth.in_flight,
                        f->rate_per_worker, f->boot_s);
    int w = snprintf(tmp, sizeof tmp, "%s.tmp", s->o.metrics_file);
    bool ok = !rc && w > 0 && (size_t)w < sizeof tmp;
    FILE *fp = ok ? fopen(tmp, "w") : NULL;
    ok = fp && fwrite(b.data, 1, b.len, fp) == b.len;
    if (fp)
        ok = fclose(fp) == 0 && ok;
    if (!ok || rename(tmp, s->o.metrics_file) != 0)
        log_event("warn", "scaler", "metrics_write_failed file=%s detail=\"%s\"", s->o.metrics_file, strerror(errno));
    buf_free(&b);
}

/* The backlog per instance is the signal CloudWatch-driven scaling (a target-tracking or step policy on
 * this metric) can share with the scaler; published every --cloudwatch-period-s, not every tick: at 4
 * ticks a second PutMetricData would cost more than the signal is worth. A failure is logged only. */
static void publish_cloudwatch(scaler *s)
{
    double now = clock_ms();
    if (!s->cw || (s->cw_last_ms > 0 && now - s->cw_last_ms < (double)s->o.cw_period_s * 1000.0))
        return;
    s->cw_last_ms = now;
    double depth = (double)(s->depth.visible + s->depth.in_flight);
    aws_metric m[] = {
        {"BacklogPerInstance", depth / (s->fs.running ? s->fs.running : 1), "Count"},
        {"RequestQueueDepth", depth, "Count"},
        {"DesiredWorkers", (double)s->fs.desired, "Count"},
    };
    imgcls_errbuf eb = {{0}};
    if (aws_cloudwatch_put(s->cw, s->o.cw_namespace, s->cw_group[0] ? "AutoScalingGroupName" : NULL,
                           s->cw_group[0] ? s->cw_group : NULL, m, sizeof m / sizeof *m, &eb))
        log_event("warn", "scaler", "cloudwatch_failed detail=\"%s\"", eb.msg);
}

/* One decision. Failures to read the queue or the fleet skip the tick: they are temporary, and the
 * fleet keeps its size meanwhile. */
static void tick(scaler *s)
{
    if (queue_depth_get(s->q, &s->depth)) {
        log_event("warn", "scaler", "depth_failed detail=\"%s\"", s->q->err.msg);
        return;
    }
    if (fleet_describe(s->f, &s->fs)) {
        log_event("warn", "scaler", "describe_failed detail=\"%s\"", s->f->err.msg);
        return;
    }
    const fleet_status *f = &s->fs;
    scale_snapshot snap = {
        .now_s = clock_ms() / 1000.0, .visible = s->depth.visible, .in_flight = s->depth.in_flight,
        .running = f->running, .starting = f->starting, .busy = f->busy, .desired = f->desired,
        .rate_per_worker = f->rate_per_worker, .boot_s = f->boot_s > 0 ? f->boot_s : (double)s->o.boot_ms / 1000.0,
    };
    scale_decision d;
    scale_decide(&s->params, &s->state, &snap, &d);
    uint32_t from = f->desired;
    if (d.desired != from) {
        if (fleet_set_desired(s->f, d.desired)) {
            log_event("warn", "scaler", "set_desired_failed desired=%u detail=\"%s\"", d.desired, s->f->err.msg);
        } else {
            *(d.direction > 0 ? &s->decisions_out : &s->decisions_in) += 1;
            s->fs.desired = d.desired;
            log_event("info", "scaler", "scale direction=%s from=%u to=%u visible=%llu in_flight=%llu running=%u "
                      "starting=%u reason=\"%s\"", d.direction > 0 ? "out" : "in", from, d.desired,
                      (unsigned long long)snap.visible, (unsigned long long)snap.in_flight, f->running, f->starting,
                      d.reason);
        }
    }
    if (s->o.metrics_file)
        write_metrics(s);
    publish_cloudwatch(s);
}

static void sleep_ms(unsigned long ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL); /* a signal cuts it short, and the loop then sees stop_requested */
}

int cli_scaler(int argc, char **argv)
{
    scaler s;
    memset(&s, 0, sizeof s);
    config_opt table[16];
    size_t nopts = options(&s.o, table);
    config_args args;
    imgcls_errbuf eb = {{0}};
    int status = 0;
    if (config_parse(table, nopts, argc, argv, &args, &eb)) {
        fprintf(stderr, "imgcls scaler: %s\n", eb.msg);
        return 2;
    }
    if (args.help || !s.o.queue_url || !s.o.fleet_url || args.npositional) {
        config_print_help(args.help ? stdout : stderr, USAGE, table, nopts);
        status = args.help ? 0 : 2;
        goto out;
    }
    if (scaler_params(&s, &eb)) {
        fprintf(stderr, "imgcls scaler: %s\n", eb.msg);
        status = 2;
        goto out;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (s.o.cw_namespace && strncmp(s.o.fleet_url, "asg://", 6) == 0) {
        char inst[ASG_MAX_INSTANCE];
        unsigned hold;
        if (fleet_asg_parse_url(s.o.fleet_url, s.cw_group, inst, &hold, NULL))
            s.cw_group[0] = 0;
    }
    if (queue_open(s.o.queue_url, &s.q, &eb) || fleet_open(s.o.fleet_url, &s.f, &eb) ||
        (s.o.cw_namespace && aws_client_open(AWS_CLOUDWATCH, NULL, &s.cw, &eb))) {
        log_event("error", "scaler", "start_failed detail=\"%s\"", eb.msg);
        status = 1;
        goto out;
    }
    log_event("info", "scaler", "started policy=%s min=%lu max=%lu interval_ms=%lu", s.o.policy, s.o.min, s.o.max,
              s.o.interval_ms);
    while (!stop_requested) {
        double t0 = clock_ms();
        tick(&s);
        double spent = clock_ms() - t0;
        if (!stop_requested && spent < (double)s.o.interval_ms)
            sleep_ms(s.o.interval_ms - (unsigned long)spent);
    }
    log_event("info", "scaler", "stopped");
out:
    queue_close(s.q);
    fleet_close(s.f);
    aws_client_close(s.cw);
    free(args.positional);
    return status;
}
