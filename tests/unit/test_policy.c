/* The scaling policies (src/scale/policy.h): tables of single decisions, and traces that run a policy
 * over time the way the scaler does (each decision's desired is the next snapshot's baseline). */
#include "scale/policy.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

static scale_snapshot snap(double now, uint64_t visible, uint64_t in_flight, uint32_t running, uint32_t starting,
                           uint32_t desired)
{
    return (scale_snapshot){.now_s = now, .visible = visible, .in_flight = in_flight, .running = running,
                            .starting = starting, .desired = desired, .rate_per_worker = 50, .boot_s = 0.05};
}

static void test_names_and_defaults(void **state)
{
    (void)state;
    scale_policy_kind k;
    assert_int_equal(scale_policy_parse("backlog", &k), 0);
    assert_int_equal(k, SCALE_BACKLOG);
    assert_int_equal(scale_policy_parse("alarm", &k), 0);
    assert_string_equal(scale_policy_name(k), "alarm");
    assert_int_equal(scale_policy_parse("nope", &k), IMGCLS_EINVAL);
    assert_int_equal(scale_policy_parse(NULL, &k), IMGCLS_EINVAL);
    scale_params p;
    imgcls_errbuf eb = {{0}};
    scale_params_default(&p, SCALE_BACKLOG);
    assert_int_equal(scale_params_check(&p, &eb), 0);
    p.min = 5;
    p.max = 4;
    assert_int_equal(scale_params_check(&p, &eb), IMGCLS_EINVAL);
    scale_params_default(&p, SCALE_BACKLOG);
    p.target_drain_s = 0;
    assert_int_equal(scale_params_check(&p, &eb), IMGCLS_EINVAL);
}

typedef struct backlog_case {
    const char *what;
    scale_snapshot s;
    uint32_t max;
    uint32_t want;
    const char *reason_has;
} backlog_case;

static void test_backlog_table(void **state)
{
    (void)state;
    scale_snapshot slow_boot = snap(0, 1000, 0, 2, 0, 2); /* drains in 5.3 s, long before a 30 s boot */
    slow_boot.rate_per_worker = 95;
    slow_boot.boot_s = 30;
    scale_snapshot ec2_burst = snap(0, 5000, 0, 1, 0, 1);
    ec2_burst.boot_s = 30; /* 1 worker drains 1500 of 5000 while a new one boots */
    scale_snapshot unmeasured = snap(0, 1000, 0, 1, 0, 1);
    unmeasured.rate_per_worker = 0; /* the default rate (50/s) stands in */
    const backlog_case cases[] = {
        {"idle at the minimum", snap(0, 0, 0, 1, 0, 1), 19, 1, "right"},
        {"a backlog one worker drains in time", snap(0, 20, 5, 1, 0, 1), 19, 1, "right"},
        {"a burst: 10 workers a step", snap(0, 1000, 0, 1, 0, 1), 19, 11, "1 -> 11"},
        {"a burst, capped by max", snap(0, 1000, 0, 1, 0, 1), 3, 3, "1 -> 3"},
        {"a new worker would arrive after the drain", slow_boot, 19, 2, "not worth starting"},
        {"only the rest after the boot counts", ec2_burst, 19, 11, "needs 140 workers"},
        {"workers starting count towards the need", snap(0, 100, 0, 1, 2, 3), 19, 4, "3 -> 4"},
        {"no rate measured yet", unmeasured, 19, 11, "at 50 img/s"},
        {"nobody running: boot time does not matter", snap(0, 10, 0, 0, 0, 0), 19, 1, "0 -> 1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        scale_params p;
        scale_params_default(&p, SCALE_BACKLOG);
        p.max = cases[i].max;
        scale_state st;
        scale_state_init(&st);
        scale_decision d;
        scale_decide(&p, &st, &cases[i].s, &d);
        if (d.desired != cases[i].want || !strstr(d.reason, cases[i].reason_has))
            fail_msg("%s: got %u (%s), want %u (\"%s\")", cases[i].what, d.desired, d.reason, cases[i].want,
                     cases[i].reason_has);
        assert_int_equal(d.direction, d.desired > cases[i].s.desired ? 1 : d.desired < cases[i].s.desired ? -1 : 0);
    }
}

/* Runs `ticks` one-second decisions, the backlog given by load(t), the fleet doing what it is told at
 * once. Returns the desired counts in out. */
typedef uint64_t (*load_fn)(int t);

static void run_trace(const scale_params *p, load_fn load, int ticks, uint32_t busy, uint32_t *out)
{
    scale_state st;
    scale_state_init(&st);
    uint32_t desired = p->min;
    for (int t = 0; t < ticks; t++) {
        scale_snapshot s = snap(t, load(t), 0, desired, 0, desired);
        s.busy = busy < desired ? busy : desired;
        scale_decision d;
        scale_decide(p, &st, &s, &d);
        desired = d.desired;
        out[t] = desired;
    }
}

static uint64_t burst_then_idle(int t)
{
    return t < 5 ? 2000 : 0;
}

static void test_scale_in_only_after_the_window(void **state)
{
    (void)state;
    scale_params p;
    scale_params_default(&p, SCALE_BACKLOG);
    uint32_t d[60];
    run_trace(&p, burst_then_idle, 60, 0, d);
    assert_true(d[1] > 1); /* out at once */
    /* idle from t=5: the same size until the window has passed, then the minimum */
    for (int t = 5; t < 5 + (int)p.scale_in_window_s; t++)
        assert_true(d[t] >= d[4]);
    assert_int_equal(d[5 + (int)p.scale_in_window_s], 1);
}

static uint64_t oscillating(int t)
{
    return (t / 3) % 2 ? 600 : 0; /* 3 s of load, 3 s of nothing */
}

static void test_no_flapping_under_oscillating_load(void **state)
{
    (void)state;
    scale_params p;
    scale_params_default(&p, SCALE_BACKLOG);
    uint32_t d[120];
    run_trace(&p, oscillating, 120, 0, d);
    for (int t = 1; t < 120; t++)
        assert_true(d[t] >= d[t - 1]); /* it grows, and never shrinks while the load keeps coming back */
    assert_true(d[119] > 1);
    /* The original rule flaps on the same load: up and down, over and over. */
    scale_params_default(&p, SCALE_THRESHOLD);
    run_trace(&p, oscillating, 120, 0, d);
    int downs = 0;
    for (int t = 1; t < 120; t++)
        downs += d[t] < d[t - 1];
    assert_true(downs > 10);
}

static uint64_t lcg(uint64_t *x)
{
    *x = *x * 6364136223846793005ull + 1442695040888963407ull;
    return *x >> 33;
}

/* Random snapshots for every policy: the bounds always hold, and backlog never scales in below the
 * busy workers. */
static void test_random_traces_keep_bounds_and_busy_workers(void **state)
{
    (void)state;
    uint64_t x = 42;
    for (int kind = SCALE_BACKLOG; kind <= SCALE_ALARM; kind++) {
        for (int run = 0; run < 50; run++) {
            scale_params p;
            scale_params_default(&p, (scale_policy_kind)kind);
            p.min = (uint32_t)(lcg(&x) % 3);
            p.max = p.min + 1 + (uint32_t)(lcg(&x) % 10);
            scale_state st;
            scale_state_init(&st);
            uint32_t desired = p.min;
            for (int t = 0; t < 400; t++) {
                uint32_t running = desired;
                scale_snapshot s = snap(t * 0.7, lcg(&x) % 3 ? 0 : lcg(&x) % 3000, lcg(&x) % 20, running, 0, desired);
                s.busy = running ? (uint32_t)(lcg(&x) % (running + 1)) : 0;
                s.boot_s = (double)(lcg(&x) % 40);
                scale_decision d;
                scale_decide(&p, &st, &s, &d);
                assert_true(d.desired >= p.min && d.desired <= p.max);
                if (kind == SCALE_BACKLOG && d.direction < 0)
                    assert_true(d.desired >= (s.busy < p.max ? s.busy : p.max));
                desired = d.desired;
            }
        }
    }
}

/* A closed loop: 24 clients, each sending again when answered. The backlog stays at 24, which one
 * worker drains "in time", but every worker is always busy: saturation adds one worker per boot time. */
static uint32_t closed_loop(double boot_s, int ticks)
{
    scale_params p;
    scale_params_default(&p, SCALE_BACKLOG);
    p.max = 3;
    scale_state st;
    scale_state_init(&st);
    uint32_t desired = 1;
    for (int t = 0; t < ticks; t++) {
        scale_snapshot s = snap(t, 24 - desired, desired, desired, 0, desired);
        s.rate_per_worker = 100;
        s.boot_s = boot_s;
        s.busy = desired;
        scale_decision d;
        scale_decide(&p, &st, &s, &d);
        assert_true(d.direction >= 0); /* never in while saturated */
        if (d.direction > 0)
            assert_non_null(strstr(d.reason, "busy"));
        desired = d.desired;
    }
    return desired;
}

static void test_saturation_adds_workers_one_boot_time_apart(void **state)
{
    (void)state;
    assert_int_equal(closed_loop(0.2, 1), 1); /* one look is not yet a spell */
    assert_int_equal(closed_loop(0.2, 2), 2); /* a local process: the next tick */
    assert_int_equal(closed_loop(0.2, 10), 3); /* up to max */
    assert_int_equal(closed_loop(30, 30), 1); /* EC2: not before 30 s of saturation */
    assert_int_equal(closed_loop(30, 32), 2);
}

static void test_threshold_is_the_original_rule(void **state)
{
    (void)state;
    scale_params p;
    scale_params_default(&p, SCALE_THRESHOLD);
    scale_state st;
    scale_state_init(&st);
    scale_decision d;
    scale_snapshot s = snap(0, 3, 0, 2, 0, 2);
    scale_decide(&p, &st, &s, &d);
    assert_int_equal(d.desired, 3);
    s.visible = 2;
    scale_decide(&p, &st, &s, &d);
    assert_int_equal(d.desired, 1);
    s = snap(0, 0, 0, 1, 0, 1);
    scale_decide(&p, &st, &s, &d);
    assert_int_equal(d.desired, 1); /* the minimum holds */
}

/* The alarm model: a burst at t=1 is not in the first period's data point (taken at t=0); the second
 * period's data point (t=60) is evaluated at t=120 and adds 10; the cooldown then holds for 300 s. */
static void test_alarm_reacts_a_period_late_then_cools_down(void **state)
{
    (void)state;
    scale_params p;
    scale_params_default(&p, SCALE_ALARM);
    scale_state st;
    scale_state_init(&st);
    uint32_t desired = 1;
    int first_out = -1, second_out = -1;
    for (int t = 0; t < 600; t++) {
        scale_snapshot s = snap(t, t >= 1 ? 100 : 0, 0, desired, 0, desired);
        scale_decision d;
        scale_decide(&p, &st, &s, &d);
        if (d.direction > 0 && first_out < 0) {
            first_out = t;
            assert_int_equal(d.desired, desired + 10);
        } else if (d.direction > 0 && second_out < 0) {
            second_out = t;
        }
        desired = d.desired;
    }
    assert_int_equal(first_out, 120);
    assert_true(second_out >= first_out + 300);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_defaults),
        cmocka_unit_test(test_backlog_table),
        cmocka_unit_test(test_scale_in_only_after_the_window),
        cmocka_unit_test(test_no_flapping_under_oscillating_load),
        cmocka_unit_test(test_random_traces_keep_bounds_and_busy_workers),
        cmocka_unit_test(test_saturation_adds_workers_one_boot_time_apart),
        cmocka_unit_test(test_threshold_is_the_original_rule),
        cmocka_unit_test(test_alarm_reacts_a_period_late_then_cools_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
