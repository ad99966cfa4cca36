/* The fleet simulator (contract and model in simulate.h; docs/autoscaling.md).
 *
 * The FIFO queue needs no structure of its own: arrivals are sorted and taken in order, so the queue
 * is the index range [head, next) of the arrival array (next: the first request not arrived yet,
 * head: the first not taken). Workers are a small array scanned linearly for the next event: a fleet
 * has at most a few dozen, and a heap would only pay off far beyond SIM_MAX_WORKERS' practical use. */
#include "scale/simulate.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef enum worker_state { W_STOPPED, W_BOOTING, W_IDLE, W_BUSY } worker_state;

typedef struct sim_worker {
    worker_state state;
    bool draining;      /* busy, asked to stop: stops when its image is done */
    double requested_s; /* when the instance was asked for: its cost starts here */
    double ready_s;     /* booting: when it serves its first image */
    double done_s;      /* busy: when its image is done */
    size_t req;         /* busy: the request it serves */
} sim_worker;

typedef struct sim {
    const double *a;
    size_t n, next, head;
    const scale_params *p;
    const sim_params *sp;
    sim_worker *w;
    size_t nw, cap;
    sim_result *r;
    uint32_t tick_done;   /* completions since the last tick */
    double tick_lat_sum;  /* and the sum of their latencies */
    double last_done_s;   /* the latest completion */
} sim;

typedef struct fleet_count {
    uint32_t running, starting, busy, draining, paid;
} fleet_count;

int sim_params_check(const sim_params *sp, const scale_params *policy, imgcls_errbuf *eb)
{
    if (!(sp->boot_s >= 0 && sp->boot_s <= SIM_MAX_TIME_S))
        return imgcls_fail(eb, IMGCLS_EINVAL, "simulate: boot time must be in [0, %g] s", SIM_MAX_TIME_S);
    if (!(sp->service_s > 0 && sp->service_s <= SIM_MAX_TIME_S))
        return imgcls_fail(eb, IMGCLS_EINVAL, "simulate: service time must be in (0, %g] s", SIM_MAX_TIME_S);
    if (!(sp->tick_s > 0 && sp->tick_s <= SIM_MAX_TIME_S))
        return imgcls_fail(eb, IMGCLS_EINVAL, "simulate: tick must be in (0, %g] s", SIM_MAX_TIME_S);
    if (!(sp->until_s >= 0 && sp->until_s <= SIM_MAX_TIME_S))
        return imgcls_fail(eb, IMGCLS_EINVAL, "simulate: window must be in [0, %g] s", SIM_MAX_TIME_S);
    if (sp->until_s / sp->tick_s >= (double)SIM_MAX_TICKS)
        return imgcls_fail(eb, IMGCLS_EINVAL, "simulate: %g s at a %g s tick is over %u ticks", sp->until_s,
                           sp->tick_s, SIM_MAX_TICKS);
    if (policy->max > SIM_MAX_WORKERS)
        return imgcls_fail(eb, IMGCLS_EINVAL, "simulate: at most %u workers", SIM_MAX_WORKERS);
    return scale_params_check(policy, eb);
}

static fleet_count count_fleet(const sim *s)
{
    fleet_count c = {0};
    for (size_t i = 0; i < s->nw; i++) {
        const sim_worker *w = &s->w[i];
        if (w->state == W_STOPPED)
            continue;
        c.paid++;
        if (w->draining)
            c.draining++;
        else if (w->state == W_BOOTING)
            c.starting++;
        else
            c.running++;
        if (w->state == W_BUSY && !w->draining)
            c.busy++;
    }
    return c;
}

static void stop_worker(sim *s, sim_worker *w, double t)
{
    s->r->worker_s += t - w->requested_s;
    w->state = W_STOPPED;
    w->draining = false;
    if (t > s->r->settle_s)
        s->r->settle_s = t;
}

/* A slot for a new worker: a stopped one, or a new one at the end. Returns NULL when out of memory. */
static sim_worker *new_worker(sim *s)
{
    for (size_t i = 0; i < s->nw; i++)
        if (s->w[i].state == W_STOPPED)
            return &s->w[i];
    if (s->nw == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        sim_worker *w = realloc(s->w, cap * sizeof *w);
        if (!w)
            return NULL;
        s->w = w;
        s->cap = cap;
    }
    return &s->w[s->nw++];
}

static int start_worker(sim *s, double t, bool warm)
{
    sim_worker *w = new_worker(s);
    if (!w)
        return IMGCLS_ENOMEM;
    *w = (sim_worker){.state = warm ? W_IDLE : W_BOOTING, .requested_s = t, .ready_s = t + s->sp->boot_s};
    if (!warm && t > s->r->settle_s)
        s->r->settle_s = t;
    return 0;
}

/* Idle workers take queued requests, in arrival order. */
static void dispatch(sim *s, double t)
{
    for (size_t i = 0; i < s->nw && s->head < s->next; i++) {
        sim_worker *w = &s->w[i];
        if (w->state != W_IDLE)
            continue;
        w->state = W_BUSY;
        w->req = s->head++;
        w->done_s = t + s->sp->service_s;
    }
}

static double next_event(const sim *s)
{
    double e = s->next < s->n ? s->a[s->next] : INFINITY;
    for (size_t i = 0; i < s->nw; i++) {
        const sim_worker *w = &s->w[i];
        if (w->state == W_BOOTING && w->ready_s < e)
            e = w->ready_s;
        else if (w->state == W_BUSY && w->done_s < e)
            e = w->done_s;
    }
    return e;
}

static void complete(sim *s, sim_worker *w)
{
    double lat = w->done_s - s->a[w->req];
    s->r->latency_s[w->req] = lat;
    s->r->completed++;
    s->tick_done++;
    s->tick_lat_sum += lat;
    s->last_done_s = w->done_s;
    if (w->draining)
        stop_worker(s, w, w->done_s);
    else
        w->state = W_IDLE;
}

/* Lets everything happen up to and including time `until`, event by event. */
static void advance(sim *s, double until)
{
    for (;;) {
        double e = next_event(s);
        if (!(e <= until))
            return;
        for (size_t i = 0; i < s->nw; i++) {
            sim_worker *w = &s->w[i];
            if (w->state == W_BUSY && w->done_s <= e)
                complete(s, w);
            else if (w->state == W_BOOTING && w->ready_s <= e)
                w->state = W_IDLE;
        }
        while (s->next < s->n && s->a[s->next] <= e)
            s->next++;
        dispatch(s, e);
    }
}

/* The live worker to remove next: booting ones first (the one that would be ready last), then idle
 * ones, then busy ones (the one done first, so the fleet shrinks soonest). NULL when none is left. */
static sim_worker *victim(sim *s)
{
    sim_worker *best = NULL;
    int best_rank = 0;
    for (size_t i = 0; i < s->nw; i++) {
        sim_worker *w = &s->w[i];
        if (w->state == W_STOPPED || w->draining)
            continue;
        int rank = w->state == W_BOOTING ? 3 : w->state == W_IDLE ? 2 : 1;
        bool better = !best || rank > best_rank ||
                      (rank == best_rank && rank == 3 && w->ready_s > best->ready_s) ||
                      (rank == best_rank && rank == 1 && w->done_s < best->done_s);
        if (better) {
            best = w;
            best_rank = rank;
        }
    }
    return best;
}

/* Makes the fleet the policy sees (running + starting) exactly `desired` workers. */
static int apply(sim *s, double t, uint32_t desired)
{
    fleet_count c = count_fleet(s);
    uint32_t live = c.running + c.starting;
    for (uint32_t i = live; i < desired; i++) {
        int rc = start_worker(s, t, false);
        if (rc)
            return rc;
    }
    for (uint32_t i = desired; i < live; i++) {
        sim_worker *w = victim(s);
        if (!w)
            break;
        if (w->state == W_BUSY) {
            w->draining = true; /* finishes its image first: nothing taken is ever lost */
            if (t > s->r->settle_s)
                s->r->settle_s = t;
        } else {
            stop_worker(s, w, t);
        }
    }
    c = count_fleet(s);
    if (c.paid > s->r->peak_workers)
        s->r->peak_workers = c.paid;
    return 0;
}

/* One controller tick at time t: snapshot, decision, record, action. */
static int tick(sim *s, scale_state *st, uint32_t *desired, size_t k, double t)
{
    fleet_count c = count_fleet(s);
    uint64_t in_flight = 0;
    for (size_t i = 0; i < s->nw; i++)
        in_flight += s->w[i].state == W_BUSY;
    scale_snapshot snap = {.now_s = t, .visible = s->next - s->head, .in_flight = in_flight,
                           .running = c.running, .starting = c.starting, .busy = c.busy, .desired = *desired,
                           .rate_per_worker = 1.0 / s->sp->service_s, .boot_s = s->sp->boot_s};
    scale_decision d;
    scale_decide(s->p, st, &snap, &d);
    if (d.direction != 0)
        s->r->actions++;
    if (d.direction > 0 && isnan(s->r->first_out_s))
        s->r->first_out_s = t;
    s->r->ticks[k] = (sim_tick){.t = t, .visible = snap.visible, .in_flight = in_flight, .running = c.running,
                                .starting = c.starting, .busy = c.busy, .draining = c.draining,
                                .desired = d.desired, .completed = s->tick_done,
                                .mean_latency_s = s->tick_done ? s->tick_lat_sum / s->tick_done : NAN};
    s->tick_done = 0;
    s->tick_lat_sum = 0;
    *desired = d.desired;
    int rc = apply(s, t, d.desired);
    dispatch(s, t);
    return rc;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

double sim_percentile(const double *sorted, size_t n, double p)
{
    if (n == 0)
        return NAN;
    double rank = ceil(p / 100.0 * (double)n);
    size_t i = rank < 1 ? 0 : (size_t)rank - 1;
    return sorted[i < n ? i : n - 1];
}

static int summarize(sim *s)
{
    sim_result *r = s->r;
    for (size_t i = 0; i < s->nw; i++) /* still there at the end of the window: paid until then */
        if (s->w[i].state != W_STOPPED)
            r->worker_s += s->sp->until_s - s->w[i].requested_s;
    r->drain_s = r->completed == s->n ? (s->n ? s->last_done_s - s->a[0] : 0) : NAN;
    if (s->last_done_s > r->settle_s)
        r->settle_s = s->last_done_s;
    double *sorted = malloc((r->completed ? r->completed : 1) * sizeof *sorted);
    if (!sorted)
        return IMGCLS_ENOMEM;
    size_t m = 0;
    for (size_t i = 0; i < s->n; i++)
        if (!isnan(r->latency_s[i]))
            sorted[m++] = r->latency_s[i];
    qsort(sorted, m, sizeof *sorted, cmp_double);
    r->p50_s = sim_percentile(sorted, m, 50);
    r->p95_s = sim_percentile(sorted, m, 95);
    r->p99_s = sim_percentile(sorted, m, 99);
    free(sorted);
    return 0;
}

static int check_arrivals(const double *a, size_t n, imgcls_errbuf *eb)
{
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || a[i] < 0)
            return imgcls_fail(eb, IMGCLS_EINVAL, "simulate: arrival %zu is not a finite time >= 0", i);
        if (i && a[i] < a[i - 1])
            return imgcls_fail(eb, IMGCLS_EINVAL, "simulate: arrivals are not sorted (at %zu)", i);
    }
    return 0;
}

int sim_run(const double *arrivals, size_t n, const scale_params *policy, const sim_params *sp, sim_result *out,
            imgcls_errbuf *eb)
{
    memset(out, 0, sizeof *out);
    out->drain_s = out->p50_s = out->p95_s = out->p99_s = out->first_out_s = NAN;
    sim s = {.a = arrivals, .n = n, .p = policy, .sp = sp, .r = out};
    int rc = sim_params_check(sp, policy, eb);
    if (!rc)
        rc = check_arrivals(arrivals, n, eb);
    if (rc)
        goto out;
    size_t nticks = (size_t)floor(sp->until_s / sp->tick_s + 1e-9) + 1;
    out->ticks = calloc(nticks, sizeof *out->ticks);
    out->latency_s = malloc((n ? n : 1) * sizeof *out->latency_s);
    if (!out->ticks || !out->latency_s) {
        rc = IMGCLS_ENOMEM;
        goto out;
    }
    out->nticks = nticks;
    out->nrequests = n;
    for (size_t i = 0; i < n; i++)
        out->latency_s[i] = NAN;
    for (uint32_t i = 0; i < policy->min && !rc; i++) /* the group starts at its minimum, warm */
        rc = start_worker(&s, 0, true);
    out->peak_workers = policy->min;
    scale_state st;
    scale_state_init(&st);
    uint32_t desired = policy->min;
    for (size_t k = 0; k < nticks && !rc; k++) {
        double t = (double)k * sp->tick_s;
        advance(&s, t);
        rc = tick(&s, &st, &desired, k, t);
    }
    if (rc)
        goto out;
    advance(&s, sp->until_s);
    rc = summarize(&s);
out:
    free(s.w);
    return rc;
}

void sim_result_free(sim_result *r)
{
    if (!r)
        return;
    free(r->ticks);
    free(r->latency_s);
    r->ticks = NULL;
    r->latency_s = NULL;
    r->nticks = r->nrequests = 0;
}
