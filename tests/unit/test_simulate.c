/* The fleet simulator (src/scale/simulate.h) and its workloads (src/scale/workload.h): the model's
 * invariants on random workloads, the fleet's arithmetic where it can be worked out by hand, the
 * scenario docs/autoscaling.md is about (the original assignment's burst on EC2's shape), and the CSV
 * reader's limits. Behaviour only: nothing here measures wall-clock time. */
#include "scale/simulate.h"
#include "scale/workload.h"

#include "tmpdir.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t lcg(uint64_t *x)
{
    *x = *x * 6364136223846793005ull + 1442695040888963407ull;
    return *x >> 33;
}

static scale_params policy(scale_policy_kind kind, uint32_t min, uint32_t max)
{
    scale_params p;
    scale_params_default(&p, kind);
    p.min = min;
    p.max = max;
    return p;
}

static sim_params model(double boot, double service, double until)
{
    return (sim_params){.boot_s = boot, .service_s = service, .tick_s = 1, .until_s = until};
}

static sim_result run(const workload *w, const scale_params *p, const sim_params *sp)
{
    sim_result r;
    imgcls_errbuf eb = {{0}};
    int rc = sim_run(w->t, w->n, p, sp, &r, &eb);
    if (rc)
        fail_msg("sim_run: %d %s", rc, eb.msg);
    return r;
}

static workload builtin(const char *name)
{
    workload w;
    imgcls_errbuf eb = {{0}};
    assert_int_equal(workload_builtin(name, &w, &eb), 0);
    return w;
}

/* n requests at random times in [0, span), sorted. */
static workload random_workload(uint64_t *x, size_t n, double span)
{
    workload w = {.t = malloc(n * sizeof(double)), .n = n};
    assert_non_null(w.t);
    for (size_t i = 0; i < n; i++)
        w.t[i] = span * (double)(lcg(x) % 1000000) / 1e6;
    for (size_t i = 1; i < n; i++) /* insertion sort: small n */
        for (size_t j = i; j > 0 && w.t[j] < w.t[j - 1]; j--) {
            double t = w.t[j];
            w.t[j] = w.t[j - 1];
            w.t[j - 1] = t;
        }
    return w;
}

/* The invariants of every run: each request completes exactly once, no sooner than one service time
 * after it arrived; the bounds hold; what the policy sees after a tick is what it decided. */
static void check_invariants(const workload *w, const scale_params *p, const sim_params *sp, const sim_result *r)
{
    assert_int_equal(r->nrequests, w->n);
    assert_int_equal(r->completed, w->n); /* a double completion would push this over n */
    uint64_t per_tick = 0;
    for (size_t i = 0; i < w->n; i++) {
        assert_true(!isnan(r->latency_s[i]));
        assert_true(r->latency_s[i] >= sp->service_s - 1e-9);
    }
    for (size_t k = 0; k < r->nticks; k++) {
        const sim_tick *t = &r->ticks[k];
        per_tick += t->completed;
        assert_true(t->desired >= p->min && t->desired <= p->max);
        assert_true(t->running + t->starting <= p->max);
        assert_true(t->busy <= t->running);
        assert_true(t->in_flight == (uint64_t)t->busy + t->draining); /* a stopping worker still holds its image */
        if (k > 0)
            assert_int_equal(t->running + t->starting, r->ticks[k - 1].desired);
    }
    assert_true(per_tick <= w->n);
    assert_true(r->peak_workers >= p->min);
    assert_true(r->worker_s >= (double)p->min * sp->until_s - 1e-6);
    assert_true(!isnan(r->drain_s));
}

/* Random workloads, every policy, with and without boot time, with service times from quick to slow:
 * nothing is lost, including while threshold flaps and stops busy workers. */
static void test_conservation_and_bounds_on_random_workloads(void **state)
{
    (void)state;
    uint64_t x = 7;
    const double boots[] = {0, 0.05, 30};
    const double services[] = {0.012, 0.3, 2};
    bool drained_busy = false;
    for (int kind = SCALE_BACKLOG; kind <= SCALE_ALARM; kind++)
        for (size_t b = 0; b < sizeof boots / sizeof *boots; b++)
            for (size_t s = 0; s < sizeof services / sizeof *services; s++) {
                workload w = random_workload(&x, 50 + lcg(&x) % 400, 5 + (double)(lcg(&x) % 200));
                uint32_t min = (uint32_t)(lcg(&x) % 3);
                scale_params p = policy((scale_policy_kind)kind, min, min + 1 + (uint32_t)(lcg(&x) % 12));
                sim_params sp = model(boots[b], services[s], w.t[w.n - 1] + 7200);
                sim_result r = run(&w, &p, &sp);
                check_invariants(&w, &p, &sp, &r);
                for (size_t k = 0; k < r.nticks; k++)
                    drained_busy |= r.ticks[k].draining > 0;
                sim_result_free(&r);
                workload_free(&w);
            }
    assert_true(drained_busy); /* the scale-in of busy workers was exercised */
}

/* A busy worker asked to stop finishes its image: threshold scales in while 4 slow images are being
 * served (fewer than 3 visible), and still all 8 complete, none twice. */
static void test_scale_in_never_loses_a_busy_workers_image(void **state)
{
    (void)state;
    double t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    workload w = {.t = t, .n = 8};
    scale_params p = policy(SCALE_THRESHOLD, 1, 6);
    sim_params sp = model(0, 10, 200);
    sim_result r = run(&w, &p, &sp);
    check_invariants(&w, &p, &sp, &r);
    bool draining = false;
    for (size_t k = 0; k < r.nticks; k++)
        draining |= r.ticks[k].draining > 0;
    assert_true(draining);
    sim_result_free(&r);
}

/* k workers, no boot, no scaling (min = max = k): n requests at t=0 drain in ceil(n / k) service times,
 * and the cost is k for the whole window. */
static void test_fixed_fleet_drains_in_n_service_over_k(void **state)
{
    (void)state;
    const uint32_t ks[] = {1, 3, 4, 19};
    for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) {
        uint32_t k = ks[i];
        size_t n = 1000;
        double *t = calloc(n, sizeof *t);
        assert_non_null(t);
        workload w = {.t = t, .n = n};
        for (int kind = SCALE_BACKLOG; kind <= SCALE_ALARM; kind++) {
            scale_params p = policy((scale_policy_kind)kind, k, k);
            sim_params sp = model(0, 0.01, 100);
            sim_result r = run(&w, &p, &sp);
            check_invariants(&w, &p, &sp, &r);
            double want = ceil((double)n / k) * 0.01;
            assert_true(fabs(r.drain_s - want) < 1e-6);
            assert_true(fabs(r.drain_s - (double)n * 0.01 / k) <= 0.01 + 1e-9);
            assert_true(fabs(r.worker_s - k * 100.0) < 1e-6);
            assert_int_equal(r.peak_workers, k);
            assert_int_equal(r.actions, 0);
            sim_result_free(&r);
        }
        free(t);
    }
}

/* Booting is paid for: one scale-out at t=1 with a 30 s boot costs from t=1, and the new worker serves
 * from t=31 on. */
static void test_boot_time_is_paid_and_delays_service(void **state)
{
    (void)state;
    workload w = builtin("burst");
    scale_params p = policy(SCALE_THRESHOLD, 1, 2);
    sim_params sp = model(30, 2, 400);
    sim_result r = run(&w, &p, &sp);
    check_invariants(&w, &p, &sp, &r);
    assert_true(fabs(r.first_out_s - 1) < 1e-9);
    for (size_t k = 1; k < 31; k++)
        assert_int_equal(r.ticks[k].running, 1);
    assert_int_equal(r.ticks[31].running, 2);
    /* 2 workers from t=31 on: 1 did 15 images before, the other 85 take 43 rounds of 2 s on 2 workers */
    assert_true(r.drain_s > 100 && r.drain_s < 120);
    sim_result_free(&r);
    workload_free(&w);
}

/* The original assignment's burst on EC2's shape (30 s boot, the original worker's 2 s per image):
 * backlog decides within 2 s of it, the CloudWatch alarm only a period or more later, and backlog
 * drains sooner and spends fewer worker-seconds. */
static void test_burst_on_ec2_backlog_against_alarm(void **state)
{
    (void)state;
    workload w = builtin("burst");
    sim_params sp = model(30, 2, w.t[w.n - 1] + 7200);
    scale_params pb = policy(SCALE_BACKLOG, 1, 19), pa = policy(SCALE_ALARM, 1, 19);
    sim_result b = run(&w, &pb, &sp), a = run(&w, &pa, &sp);
    check_invariants(&w, &pb, &sp, &b);
    check_invariants(&w, &pa, &sp, &a);
    assert_true(!isnan(b.first_out_s));
    assert_true(b.first_out_s <= 2);
    assert_true(a.first_out_s >= 60);
    assert_true(b.drain_s < a.drain_s);
    assert_true(b.worker_s < a.worker_s);
    assert_true(b.p95_s < a.p95_s);
    sim_result_free(&b);
    sim_result_free(&a);
    workload_free(&w);
}

/* With this engine's 0.012 s per image the burst drains on one worker in 1.2 s: backlog starts no
 * instance, since none could arrive before the drain; the original rule starts one that arrives 30 s
 * too late (and pays for it). */
static void test_quick_burst_starts_no_late_instance(void **state)
{
    (void)state;
    workload w = builtin("burst");
    sim_params sp = model(30, 0.012, w.t[w.n - 1] + 7200);
    scale_params pb = policy(SCALE_BACKLOG, 1, 19), pt = policy(SCALE_THRESHOLD, 1, 19);
    sim_result b = run(&w, &pb, &sp), t = run(&w, &pt, &sp);
    check_invariants(&w, &pb, &sp, &b);
    assert_true(fabs(b.drain_s - 1.2) < 1e-6);
    assert_true(isnan(b.first_out_s));
    assert_int_equal(b.peak_workers, 1);
    assert_int_equal(b.actions, 0);
    assert_true(fabs(b.worker_s - sp.until_s) < 1e-6);
    for (size_t k = 0; k < b.nticks; k++)
        assert_int_equal(b.ticks[k].starting, 0);
    assert_true(t.peak_workers > 1); /* the contrast: ready at 31 s, long after the drain */
    assert_true(fabs(t.drain_s - 1.2) < 1e-6);
    sim_result_free(&b);
    sim_result_free(&t);
    workload_free(&w);
}

/* min 0: nobody runs until the policy asks for a worker; the first request waits for its boot. */
static void test_from_zero_workers(void **state)
{
    (void)state;
    double t[1] = {0.5};
    workload w = {.t = t, .n = 1};
    scale_params p = policy(SCALE_BACKLOG, 0, 4);
    sim_params sp = model(0.05, 0.012, 100);
    sim_result r = run(&w, &p, &sp);
    check_invariants(&w, &p, &sp, &r);
    /* seen at the tick at t=1, served from 1.05, done at 1.062 */
    assert_true(fabs(r.latency_s[0] - (1.062 - 0.5)) < 1e-9);
    sim_result_free(&r);
}

static void test_rejects_bad_input(void **state)
{
    (void)state;
    double unsorted[] = {1, 0.5};
    scale_params p = policy(SCALE_BACKLOG, 1, 19);
    sim_params sp = model(30, 2, 100);
    sim_result r;
    imgcls_errbuf eb = {{0}};
    assert_int_equal(sim_run(unsorted, 2, &p, &sp, &r, &eb), IMGCLS_EINVAL);
    assert_non_null(strstr(eb.msg, "sorted"));
    sim_result_free(&r);
    double bad[] = {NAN};
    assert_int_equal(sim_run(bad, 1, &p, &sp, &r, &eb), IMGCLS_EINVAL);
    sim_result_free(&r);
    sim_params bad_params[] = {model(-1, 2, 100), model(30, 0, 100), model(30, 2, -1), model(30, 2, 1e12),
                               model(30, NAN, 100)};
    double ok[] = {0};
    for (size_t i = 0; i < sizeof bad_params / sizeof *bad_params; i++) {
        assert_int_equal(sim_run(ok, 1, &p, &bad_params[i], &r, &eb), IMGCLS_EINVAL);
        sim_result_free(&r);
    }
    sim_params tiny_tick = model(30, 2, 1e6);
    tiny_tick.tick_s = 0.01; /* 1e8 ticks */
    assert_int_equal(sim_run(ok, 1, &p, &tiny_tick, &r, &eb), IMGCLS_EINVAL);
    sim_result_free(&r);
}

static void test_percentile_is_nearest_rank(void **state)
{
    (void)state;
    double v[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    assert_true(sim_percentile(v, 10, 50) == 5);
    assert_true(sim_percentile(v, 10, 95) == 10);
    assert_true(sim_percentile(v, 10, 10) == 1);
    assert_true(sim_percentile(v, 1, 99) == 1);
    assert_true(isnan(sim_percentile(v, 0, 50)));
}

/* ---- workloads ---- */

static void test_builtin_workloads(void **state)
{
    (void)state;
    const struct {
        const char *name;
        size_t n;
        double first_max, last;
    } cases[] = {
        {"burst", 100, 0, 0.099},
        {"ramp", 12000, 1.1, 120},
        {"spikes", 1000, 0, 240.0995},
        {"diurnal", 73440, 0.3, 1439.75}, /* N^-1(n - 1/2), at 2 img/s: 0.25 s before midnight */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        assert_true(workload_is_builtin(cases[i].name));
        workload w = builtin(cases[i].name);
        assert_int_equal(w.n, cases[i].n);
        assert_true(w.t[0] >= 0 && w.t[0] <= cases[i].first_max);
        assert_true(fabs(w.t[w.n - 1] - cases[i].last) < 0.01);
        for (size_t k = 1; k < w.n; k++)
            assert_true(w.t[k] >= w.t[k - 1]);
        workload_free(&w);
    }
    workload d = builtin("diurnal"); /* quiet at midnight, busy at noon */
    size_t night = 0, noon = 0;
    for (size_t k = 0; k < d.n; k++) {
        night += d.t[k] < 60;
        noon += d.t[k] >= 690 && d.t[k] < 750;
    }
    assert_true(night < 300 && noon > 5500);
    workload_free(&d);
    workload w;
    imgcls_errbuf eb = {{0}};
    assert_false(workload_is_builtin("bursts"));
    assert_int_equal(workload_builtin("bursts", &w, &eb), IMGCLS_EINVAL);
}

static char g_dir[64];

static int make_dir(void **state)
{
    (void)state;
    return tmpdir_make(g_dir, sizeof g_dir);
}

static int remove_dir(void **state)
{
    (void)state;
    tmpdir_remove(g_dir);
    return 0;
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void test_csv_reads_header_blank_lines_crlf_and_sorts(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/ok.csv", g_dir);
    const char text[] = "\xEF\xBB\xBF" "arrival_s\r\n0.5\r\n\r\n  0.25 \n1e1\n3\n";
    write_file(path, text, sizeof text - 1);
    workload w;
    imgcls_errbuf eb = {{0}};
    assert_int_equal(workload_read_csv(path, &w, &eb), 0);
    assert_int_equal(w.n, 4);
    assert_true(w.was_sorted);
    assert_true(w.t[0] == 0.25 && w.t[1] == 0.5 && w.t[2] == 3 && w.t[3] == 10);
    workload_free(&w);
    const char sorted[] = "0\n1\n2";
    write_file(path, sorted, sizeof sorted - 1);
    assert_int_equal(workload_read_csv(path, &w, &eb), 0);
    assert_int_equal(w.n, 3);
    assert_false(w.was_sorted);
    workload_free(&w);
}

static void test_csv_errors_name_the_line(void **state)
{
    (void)state;
    char longline[WORKLOAD_MAX_LINE + 8];
    memset(longline, '1', sizeof longline - 1);
    longline[sizeof longline - 1] = 0;
    char too_long[sizeof longline + 8];
    snprintf(too_long, sizeof too_long, "1\n%s\n", longline);
    const struct {
        const char *text;
        size_t len;
        int rc;
        const char *msg;
    } cases[] = {
        {"1\n2\nabc\n", 8, IMGCLS_EFORMAT, ":3:"},
        {"1\n-1\n", 5, IMGCLS_EFORMAT, ":2:"},
        {"1\nnan\n", 6, IMGCLS_EFORMAT, ":2:"},
        {"t\ninf\n", 6, IMGCLS_EFORMAT, ":2:"},
        {"1e999\n", 6, IMGCLS_EFORMAT, ":1:"},
        {"12x\n", 4, IMGCLS_EFORMAT, ":1:"},
        {"0x10\n", 5, IMGCLS_EFORMAT, ":1:"},
        {"1,2\n", 4, IMGCLS_EFORMAT, ":1:"},
        {"1\nt\n", 4, IMGCLS_EFORMAT, ":2:"}, /* a header only on the first line */
        {"2000000\n", 8, IMGCLS_EFORMAT, ":1:"},
        {"1\n2\0003\n", 6, IMGCLS_EFORMAT, ":2: a NUL"},
        {too_long, strlen(too_long), IMGCLS_EFORMAT, ":2: line longer"},
        {"", 0, IMGCLS_EEMPTY, "no arrival"},
        {"time\n\n", 6, IMGCLS_EEMPTY, "no arrival"},
    };
    char path[128];
    snprintf(path, sizeof path, "%s/bad.csv", g_dir);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_file(path, cases[i].text, cases[i].len);
        workload w;
        imgcls_errbuf eb = {{0}};
        int rc = workload_read_csv(path, &w, &eb);
        if (rc != cases[i].rc || !strstr(eb.msg, cases[i].msg))
            fail_msg("case %zu: rc %d (%s), want %d with \"%s\"", i, rc, eb.msg, cases[i].rc, cases[i].msg);
        assert_null(w.t);
    }
    workload w;
    imgcls_errbuf eb = {{0}};
    snprintf(path, sizeof path, "%s/missing.csv", g_dir);
    assert_int_equal(workload_read_csv(path, &w, &eb), IMGCLS_EIO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conservation_and_bounds_on_random_workloads),
        cmocka_unit_test(test_scale_in_never_loses_a_busy_workers_image),
        cmocka_unit_test(test_fixed_fleet_drains_in_n_service_over_k),
        cmocka_unit_test(test_boot_time_is_paid_and_delays_service),
        cmocka_unit_test(test_burst_on_ec2_backlog_against_alarm),
        cmocka_unit_test(test_quick_burst_starts_no_late_instance),
        cmocka_unit_test(test_from_zero_workers),
        cmocka_unit_test(test_rejects_bad_input),
        cmocka_unit_test(test_percentile_is_nearest_rank),
        cmocka_unit_test(test_builtin_workloads),
        cmocka_unit_test_setup_teardown(test_csv_reads_header_blank_lines_crlf_and_sorts, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_csv_errors_name_the_line, make_dir, remove_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
