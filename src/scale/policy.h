/* The scaling policy (DESIGN.md §7, "pure cores"): how many workers the fleet should have now.
 *
 * A pure function of its inputs: no clock (now is in the snapshot), no I/O, no globals. What a policy
 * must remember between decisions (a stabilization window, a cooldown, CloudWatch's last data point)
 * lives in scale_state, which the caller keeps and passes back: the same params, state and snapshot
 * always give the same decision and the same next state. The scaler (scaler.c) and the simulator
 * (simulate.c) drive the very same function.
 *
 * Policies, by name:
 *
 *   backlog    (the default) tracks backlog per worker, as AWS and KEDA recommend: enough workers to
 *              drain what is queued (visible + in flight) within target_drain_s at the measured rate per
 *              worker. It adds only workers that arrive in time to help: a worker started now serves
 *              after boot_s, by when the workers already there will have drained rate x running x boot_s;
 *              only the rest justifies new workers, and when there is no rest it says so and starts none.
 *              At most max_step workers are added per decision. A queue that never drains because
 *              clients send again as soon as they are answered (a closed loop: the backlog stays at the
 *              number of clients, which the workers there drain "in time") is seen as saturation: every
 *              running worker busy and at least as many requests still queued. Once that has lasted as
 *              long as a new worker takes to boot (so the load outlasts a boot), it adds enough workers
 *              to carry the demand the spell measured (the fleet's capacity plus the backlog's growth)
 *              and to drain what will be queued when they arrive, at least one, at most max_step; and
 *              waits as long again before the next step. A 30 s EC2 boot needs 30 s of saturation, a
 *              local process a tick or two.
 *              It scales in only after its
 *              recommendation has stayed lower for scale_in_window_s, and then to the highest
 *              recommendation of that window (no flapping under oscillating load), and never below the
 *              workers that hold messages in flight.
 *   threshold  the original design's rule as it stands: one more worker while more than 2 requests are
 *              visible, one fewer while fewer than 3 are (the two overlap, so it flaps).
 *   alarm      the same rule seen through CloudWatch, to show the original design's behaviour on AWS:
 *              the visible count is one data point per alarm_period_s, taken at the start of the period
 *              and evaluated when the period ends; the scale-out alarm (more than alarm_out_above visible,
 *              1 of 1 periods) adds step1 (up to step1_max visible), step2 (up to step2_max) or step3;
 *              the scale-in alarm (fewer than alarm_in_below, 1 of 1) removes alarm_in_step; after any
 *              change nothing happens for alarm_cooldown_s (the group's default cooldown).
 *
 * Every policy keeps min <= desired <= max. */
#ifndef IMGCLS_SCALE_POLICY_H
#define IMGCLS_SCALE_POLICY_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum scale_policy_kind {
    SCALE_BACKLOG,
    SCALE_THRESHOLD,
    SCALE_ALARM,
} scale_policy_kind;

/* What the controller sees at one moment. */
typedef struct scale_snapshot {
    double now_s;            /* any monotonic clock, in seconds */
    uint64_t visible;        /* queued, not yet received */
    uint64_t in_flight;      /* received, not yet deleted */
    uint32_t running;        /* workers serving */
    uint32_t starting;       /* workers asked for, not serving yet */
    uint32_t busy;           /* running workers that hold messages: never to be stopped */
    uint32_t desired;        /* what the fleet was last told */
    double rate_per_worker;  /* measured images/s of one running worker; <= 0: not measured yet */
    double boot_s;           /* how long a new worker takes to serve */
} scale_snapshot;

typedef struct scale_params {
    scale_policy_kind kind;
    uint32_t min, max;
    /* backlog */
    double target_drain_s;    /* a worker's share of the backlog should drain within this */
    uint32_t max_step;        /* most workers one decision adds */
    double scale_in_window_s; /* stabilization before scaling in */
    double default_rate;      /* images/s per worker until one is measured */
    /* threshold */
    uint64_t threshold_out_above, threshold_in_below;
    /* alarm (CloudWatch step scaling) */
    double alarm_period_s;
    uint64_t alarm_out_above, alarm_in_below, alarm_step1_max, alarm_step2_max;
    uint32_t alarm_step1, alarm_step2, alarm_step3, alarm_in_step;
    double alarm_cooldown_s;
} scale_params;

/* What a policy carries from one decision to the next. Zero it with scale_state_init. */
typedef struct scale_state {
    bool started;            /* a first decision was made */
    /* backlog: the current spell of lower recommendations */
    bool low;
    double low_since_s;
    uint32_t low_max;
    /* backlog: the current spell of saturation (every worker busy, a queue behind them) */
    bool sat;
    double sat_since_s;
    double sat_backlog; /* the backlog when the spell (or its last step) began */
    /* alarm: the data point of the period in progress, and the last scaling activity */
    double period_end_s;
    uint64_t datapoint;
    double last_action_s;
    bool acted;
} scale_state;

#define SCALE_REASON_MAX 256

typedef struct scale_decision {
    uint32_t desired;
    int direction;                 /* +1 out, -1 in, 0 unchanged */
    char reason[SCALE_REASON_MAX]; /* a short human sentence, for the log */
} scale_decision;

/* The defaults for a policy (the README and docs/autoscaling.md say why each was chosen): min 1, max 19;
 * backlog: drain in 0.5 s, 10 workers a step, a 15 s scale-in window, 50 images/s per worker until
 * measured; threshold: out above 2, in below 3; alarm: 60 s periods, out above 2 (+2 up to 10 visible,
 * +5 up to 50, +10 above), in below 3 (-1), 300 s cooldown. */
void scale_params_default(scale_params *p, scale_policy_kind kind);

/* "backlog", "threshold", "alarm" -> kind. Returns 0 or IMGCLS_EINVAL. */
int scale_policy_parse(const char *name, scale_policy_kind *out);
const char *scale_policy_name(scale_policy_kind kind);

/* Checks params: min <= max, positive times and rates, steps >= 1. Returns 0 or IMGCLS_EINVAL with eb. */
int scale_params_check(const scale_params *p, imgcls_errbuf *eb);

void scale_state_init(scale_state *st);

/* The decision for this snapshot; updates *st. snap->desired is the baseline a decision moves from. */
void scale_decide(const scale_params *p, scale_state *st, const scale_snapshot *snap, scale_decision *out);

#endif
