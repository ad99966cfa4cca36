/* The fleet simulator (DESIGN.md §7, "pure cores"): replays arrival times against one scaling policy
 * with a discrete-event model of the fleet, so that the AWS shape (1 to 19 instances, 30 s boot) can
 * be studied on one machine in a fraction of a second. docs/autoscaling.md describes the model.
 *
 * The model, in short:
 *   - Requests join one FIFO queue at their arrival time. Workers take them one at a time, in order.
 *   - The fleet starts warm: params.min workers running at t=0 (an Auto Scaling group at its minimum).
 *   - The controller ticks at t = 0, tick_s, 2 tick_s, ... Each tick first lets every event up to and
 *     including that instant happen, then hands scale_decide() a snapshot, then applies the decision.
 *   - Scale-out requests new workers at once; each serves from its request time + boot_s.
 *   - Scale-in removes workers that are still booting first (the latest to be ready first), then idle
 *     ones, and only then busy ones, which finish their current image and then stop: a request once
 *     taken is always completed. A stopping worker is no longer part of the fleet the policy sees.
 *   - Cost is worker-seconds from the moment an instance is requested until it stops, booting
 *     included (EC2 bills a pending instance), or until the end of the window.
 *
 * Pure: no clock, no I/O, no globals; the same inputs always give the same result. */
#ifndef IMGCLS_SCALE_SIMULATE_H
#define IMGCLS_SCALE_SIMULATE_H

#include "common/error.h"
#include "scale/policy.h"

#include <stddef.h>
#include <stdint.h>

/* Limits on what one run may ask for, so that outside input cannot make a run take hours or memory
 * without bound. */
#define SIM_MAX_TICKS 10000000u /* window / tick */
#define SIM_MAX_TIME_S 1e7      /* longest window, seconds (about 116 days) */
#define SIM_MAX_WORKERS 100000u /* the policy's max */

typedef struct sim_params {
    double boot_s;    /* from the request of an instance to its first image, >= 0 */
    double service_s; /* one image on one worker, > 0 */
    double tick_s;    /* controller period, > 0 */
    double until_s;   /* end of the window; every policy is costed over the same one */
} sim_params;

/* One controller tick: the snapshot the policy saw and what it decided. */
typedef struct sim_tick {
    double t;
    uint64_t visible, in_flight;
    uint32_t running, starting, busy, draining; /* draining: asked to stop, finishing an image */
    uint32_t desired;                           /* the decision taken at this tick */
    uint32_t completed;                         /* requests completed in (previous tick, t] */
    double mean_latency_s;                      /* of those; NAN when none completed */
} sim_tick;

typedef struct sim_result {
    sim_tick *ticks; /* one per tick, in order */
    size_t nticks;
    double *latency_s; /* per request, in arrival order; NAN for one not completed in the window */
    size_t nrequests;
    uint64_t completed;
    double drain_s; /* first arrival to last completion; NAN when not every request completed */
    double p50_s, p95_s, p99_s; /* latency percentiles (nearest rank) of the completed requests */
    double worker_s;            /* cost: instance-seconds requested, booting included */
    uint32_t peak_workers;      /* most instances paid for at once (booting, running, stopping) */
    uint32_t actions;           /* decisions that changed the desired count */
    double first_out_s;         /* time of the first scale-out decision; NAN if none */
    double settle_s; /* when the fleet last changed size or the last request completed, whichever is later */
} sim_result;

/* Checks params against the limits above. Returns 0 or IMGCLS_EINVAL with eb. */
int sim_params_check(const sim_params *sp, const scale_params *policy, imgcls_errbuf *eb);

/* Replays arrivals[0..n) (seconds, sorted ascending, finite, >= 0) against the policy over
 * [0, sp->until_s]. Fills *out (zeroed first); free it with sim_result_free even on failure.
 * Returns 0, IMGCLS_EINVAL (bad params or unsorted arrivals, with eb) or IMGCLS_ENOMEM. */
int sim_run(const double *arrivals, size_t n, const scale_params *policy, const sim_params *sp, sim_result *out,
            imgcls_errbuf *eb);

void sim_result_free(sim_result *r);

/* The nearest-rank percentile (0 < p <= 100) of sorted[0..n); NAN when n is 0. */
double sim_percentile(const double *sorted, size_t n, double p);

/* imgcls simulate (simulate_cli.c). */
int cli_simulate(int argc, char **argv);

#endif
