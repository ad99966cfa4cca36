/* The scaling policies (contract in policy.h). */
#include "scale/policy.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void scale_params_default(scale_params *p, scale_policy_kind kind)
{
    memset(p, 0, sizeof *p);
    p->kind = kind;
    p->min = 1;
    p->max = 19;
    /* 0.5 s: under a sustained load the queue never drains, and each worker's share of it is what every
     * request waits on top of its own classification; half a second keeps that wait small next to the
     * network's round trip while a backlog of a dozen images (0.25 s of one worker) adds no worker. 2 s
     * was tried first: 32 clients in a closed loop kept one worker at 0.74 s latency and never grew it. */
    p->target_drain_s = 0.5;
    /* 10: the 100-image burst on the AWS shape needs all 19 instances, decided within two ticks; a
     * single wrong reading costs at most 10 instances for one boot and one scale-in window. 4 was tried
     * first and took five ticks to reach 19. */
    p->max_step = 10;
    /* 15 s: long enough to ride out the gaps of a bursty load, far short of the quarter of an hour of
     * CloudWatch target tracking; an idle worker costs little locally and a few cents on EC2. */
    p->scale_in_window_s = 15.0;
    p->default_rate = 50.0;
    p->threshold_out_above = 2;
    p->threshold_in_below = 3;
    p->alarm_period_s = 60.0;
    p->alarm_out_above = 2;
    p->alarm_in_below = 3;
    p->alarm_step1_max = 10;
    p->alarm_step2_max = 50;
    p->alarm_step1 = 2;
    p->alarm_step2 = 5;
    p->alarm_step3 = 10;
    p->alarm_in_step = 1;
    p->alarm_cooldown_s = 300.0;
}

static const char *const POLICY_NAMES[] = {"backlog", "threshold", "alarm"};

int scale_policy_parse(const char *name, scale_policy_kind *out)
{
    for (size_t i = 0; name && i < sizeof POLICY_NAMES / sizeof *POLICY_NAMES; i++)
        if (strcmp(name, POLICY_NAMES[i]) == 0) {
            *out = (scale_policy_kind)i;
            return 0;
        }
    return IMGCLS_EINVAL;
}

const char *scale_policy_name(scale_policy_kind kind)
{
    return (size_t)kind < sizeof POLICY_NAMES / sizeof *POLICY_NAMES ? POLICY_NAMES[kind] : "?";
}

int scale_params_check(const scale_params *p, imgcls_errbuf *eb)
{
    if (p->max < 1 || p->min > p->max)
        return imgcls_fail(eb, IMGCLS_EINVAL, "scaling: need 1 <= max and min <= max (min %u, max %u)", p->min,
                           p->max);
    if (!(p->target_drain_s > 0) || !(p->default_rate > 0) || !(p->scale_in_window_s >= 0) || p->max_step < 1)
        return imgcls_fail(eb, IMGCLS_EINVAL, "scaling: drain time, rate and step must be positive");
    if (!(p->alarm_period_s > 0) || !(p->alarm_cooldown_s >= 0) || p->alarm_step1 < 1 || p->alarm_step2 < 1 ||
        p->alarm_step3 < 1 || p->alarm_in_step < 1)
        return imgcls_fail(eb, IMGCLS_EINVAL, "scaling: alarm period and steps must be positive");
    return 0;
}

void scale_state_init(scale_state *st)
{
    memset(st, 0, sizeof *st);
}

static uint32_t clamp(const scale_params *p, int64_t n)
{
    return n < (int64_t)p->min ? p->min : n > (int64_t)p->max ? p->max : (uint32_t)n;
}

static void decide(scale_decision *out, uint32_t from, uint32_t to)
{
    out->desired = to;
    out->direction = to > from ? 1 : to < from ? -1 : 0;
}

/* ---- backlog ---- */

/* Workers needed so that `work` images drain within the target drain time at `rate` each. */
static uint32_t workers_for(double work, double rate, double drain_s)
{
    return work <= 0 ? 0 : (uint32_t)fmin(ceil(work / (rate * drain_s) - 1e-9), 1e6);
}

/* Scale-out: how many workers to have, counting only those that will arrive in time to help. */
static void backlog_out(const scale_params *p, const scale_snapshot *s, double backlog, double rate,
                        uint32_t want, scale_decision *out)
{
    uint32_t cur = s->desired;
    uint32_t have = s->running + s->starting; /* starting ones arrive no later than new ones */
    /* What the running workers drain while a new one boots; only the rest can use a new worker. */
    double rest = backlog - rate * s->running * s->boot_s;
    uint32_t need = workers_for(rest, rate, p->target_drain_s);
    double drain_now = s->running ? backlog / (rate * s->running) : INFINITY;
    if (need <= have || need <= cur) {
        decide(out, cur, cur);
        if (need <= s->running)
            snprintf(out->reason, sizeof out->reason,
                     "backlog %.0f at %.0f img/s per worker drains in %.1f s on %u workers; a new worker needs "
                     "%.1f s to boot: not worth starting",
                     backlog, rate, drain_now, s->running, s->boot_s);
        else
            snprintf(out->reason, sizeof out->reason, "backlog %.0f: the %u workers starting will be enough",
                     backlog, s->starting);
        return;
    }
    uint32_t to = clamp(p, (int64_t)(need < cur + p->max_step ? need : cur + p->max_step));
    decide(out, cur, to);
    snprintf(out->reason, sizeof out->reason,
             "backlog %.0f at %.0f img/s per worker needs %u workers to drain in %.1f s (%u wanted for all of "
             "it): %u -> %u",
             backlog, rate, need, p->target_drain_s, want, cur, to);
}

/* Saturation (policy.h): once every worker has been busy, with a queue behind them, for as long as a
 * new one takes to boot, the load is known to outlast a boot. The spell also measures it: the backlog's
 * growth over the spell is the demand beyond the fleet's capacity. Enough workers to carry that demand
 * and to drain what will be queued when they arrive, at least one more, at most max_step. Returns
 * whether it decided.
 *
 * Rejected: the growth over one tick. A burst that lands between two ticks looks like a sustained
 * arrival rate for that tick, and would start EC2 instances that arrive after it has drained. */
static bool saturation_out(const scale_params *p, scale_state *st, const scale_snapshot *s, double backlog,
                           double rate, scale_decision *out)
{
    bool saturated = s->running > 0 && s->busy >= s->running && s->visible >= s->running;
    if (!saturated) {
        st->sat = false;
        return false;
    }
    if (!st->sat) {
        st->sat = true;
        st->sat_since_s = s->now_s;
        st->sat_backlog = backlog;
    }
    double lasted = s->now_s - st->sat_since_s;
    if (s->desired >= p->max || s->desired > s->running + s->starting || lasted < s->boot_s || lasted <= 0)
        return false;
    double growth = fmax(0, (backlog - st->sat_backlog) / lasted); /* images/s beyond the capacity */
    double demand = rate * s->running + growth;
    double then = backlog + growth * s->boot_s; /* queued when new workers serve */
    uint32_t need = (uint32_t)fmin(ceil(demand / rate - 1e-9), 1e6) + workers_for(then, rate, p->target_drain_s);
    uint32_t to = need > s->desired + p->max_step ? s->desired + p->max_step : need;
    to = clamp(p, to > s->desired ? to : s->desired + 1);
    st->sat_since_s = s->now_s; /* the next step waits until this one could have helped */
    st->sat_backlog = backlog;
    decide(out, s->desired, to);
    snprintf(out->reason, sizeof out->reason,
             "all %u workers busy for %.1f s (a new one serves in %.1f s), %llu queued, demand %.0f img/s at %.0f per "
             "worker: %u -> %u",
             s->running, lasted, s->boot_s, (unsigned long long)s->visible, demand, rate, s->desired, out->desired);
    return true;
}

static void backlog_decide(const scale_params *p, scale_state *st, const scale_snapshot *s, scale_decision *out)
{
    double backlog = (double)s->visible + (double)s->in_flight;
    double rate = s->rate_per_worker > 0 ? s->rate_per_worker : p->default_rate;
    uint32_t cur = s->desired;
    uint32_t want = workers_for(backlog, rate, p->target_drain_s);
    uint32_t floor = s->busy > p->min ? s->busy : p->min;
    uint32_t rec = clamp(p, want > floor ? want : floor);
    if (rec > cur) {
        st->low = false;
        backlog_out(p, s, backlog, rate, want, out);
        if (out->desired > cur)
            st->sat = false; /* grown for the backlog; a saturation spell starts again from here */
        else
            saturation_out(p, st, s, backlog, rate, out); /* the drain rule held back: requests may keep coming */
        return;
    }
    if (saturation_out(p, st, s, backlog, rate, out)) {
        st->low = false;
        return;
    }
    if (st->sat) /* saturated, not for long enough yet: certainly no time to scale in */
        rec = cur;
    if (rec == cur) {
        st->low = false;
        decide(out, cur, cur);
        snprintf(out->reason, sizeof out->reason, "backlog %.0f: %u workers are right", backlog, cur);
        return;
    }
    /* Lower: only once it has stayed lower for the whole window, and to the window's highest. */
    if (!st->low) {
        st->low = true;
        st->low_since_s = s->now_s;
        st->low_max = rec;
    } else if (rec > st->low_max) {
        st->low_max = rec;
    }
    if (s->now_s - st->low_since_s < p->scale_in_window_s) {
        decide(out, cur, cur);
        snprintf(out->reason, sizeof out->reason, "backlog %.0f needs %u of %u workers; waiting %.0f s more to scale in",
                 backlog, rec, cur, p->scale_in_window_s - (s->now_s - st->low_since_s));
        return;
    }
    uint32_t to = st->low_max > floor ? st->low_max : floor;
    st->low = false;
    decide(out, cur, clamp(p, to));
    snprintf(out->reason, sizeof out->reason, "backlog %.0f needed at most %u workers for %.0f s (%u busy): %u -> %u",
             backlog, st->low_max, p->scale_in_window_s, s->busy, cur, out->desired);
}

/* ---- threshold ---- */

static void threshold_decide(const scale_params *p, const scale_snapshot *s, scale_decision *out)
{
    uint32_t cur = s->desired;
    int64_t to = cur;
    if (s->visible > p->threshold_out_above)
        to = (int64_t)cur + 1;
    else if (s->visible < p->threshold_in_below)
        to = (int64_t)cur - 1;
    decide(out, cur, clamp(p, to));
    snprintf(out->reason, sizeof out->reason, "visible %llu (out above %llu, in below %llu): %u -> %u",
             (unsigned long long)s->visible, (unsigned long long)p->threshold_out_above,
             (unsigned long long)p->threshold_in_below, cur, out->desired);
}

/* ---- alarm ---- */

static uint32_t alarm_out_step(const scale_params *p, uint64_t v)
{
    return v <= p->alarm_step1_max ? p->alarm_step1 : v <= p->alarm_step2_max ? p->alarm_step2 : p->alarm_step3;
}

static void alarm_decide(const scale_params *p, scale_state *st, const scale_snapshot *s, scale_decision *out)
{
    uint32_t cur = s->desired;
    decide(out, cur, cur);
    if (!st->started || s->now_s < st->period_end_s) {
        if (!st->started) { /* the first period starts now, with its data point */
            st->period_end_s = s->now_s + p->alarm_period_s;
            st->datapoint = s->visible;
        }
        snprintf(out->reason, sizeof out->reason, "waiting for the period to end (data point %llu visible)",
                 (unsigned long long)st->datapoint);
        return;
    }
    /* A period ended: evaluate its data point, then start the next period with a fresh one. */
    uint64_t v = st->datapoint;
    st->period_end_s += p->alarm_period_s * floor((s->now_s - st->period_end_s) / p->alarm_period_s + 1);
    st->datapoint = s->visible;
    bool cooling = st->acted && s->now_s - st->last_action_s < p->alarm_cooldown_s;
    int64_t to = cur;
    if (v > p->alarm_out_above)
        to = (int64_t)cur + alarm_out_step(p, v);
    else if (v < p->alarm_in_below)
        to = (int64_t)cur - p->alarm_in_step;
    uint32_t target = clamp(p, to);
    if (target != cur && cooling) {
        snprintf(out->reason, sizeof out->reason, "alarm on %llu visible, but in the %.0f s cooldown",
                 (unsigned long long)v, p->alarm_cooldown_s);
        return;
    }
    if (target != cur) {
        st->acted = true;
        st->last_action_s = s->now_s;
    }
    decide(out, cur, target);
    snprintf(out->reason, sizeof out->reason, "period's data point %llu visible: %u -> %u", (unsigned long long)v,
             cur, target);
}

void scale_decide(const scale_params *p, scale_state *st, const scale_snapshot *snap, scale_decision *out)
{
    memset(out, 0, sizeof *out);
    switch (p->kind) {
    case SCALE_BACKLOG: backlog_decide(p, st, snap, out); break;
    case SCALE_THRESHOLD: threshold_decide(p, snap, out); break;
    case SCALE_ALARM: alarm_decide(p, st, snap, out); break;
    }
    /* Whatever the policy, the bounds hold, even when the fleet was told something outside them. */
    if (out->desired < p->min || out->desired > p->max) {
        uint32_t to = clamp(p, out->desired);
        decide(out, snap->desired, to);
    }
    st->started = true;
}
