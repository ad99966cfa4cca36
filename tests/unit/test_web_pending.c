/* Unit tests for the web tier's pending table (src/web/web_pending.h), with fake park/wake callbacks
 * that record which connections were parked and woken, and in what order. */
#include "web/web_pending.h"

#include "common/error.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- fakes -------------------------------------------------------------------------------------- */

#define LOG_MAX 64

static struct {
    char events[LOG_MAX][48]; /* "park 3", "wake 3" */
    int n;
} rec;

static void record(const char *what, void *conn)
{
    if (rec.n < LOG_MAX)
        snprintf(rec.events[rec.n++], sizeof rec.events[0], "%s %d", what, *(int *)conn);
}

static void fake_park(void *conn)
{
    record("park", conn);
}

static void fake_wake(void *conn)
{
    record("wake", conn);
}

static int conns[LOG_MAX];

static void entry(web_pending *p, int i)
{
    memset(p, 0, sizeof *p);
    snprintf(p->id, sizeof p->id, "%032x", i);
    conns[i] = i;
    p->conn = &conns[i];
}

static msg_response response_for(const char *id, const char *label)
{
    msg_response r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "%s", id);
    snprintf(r.top[0].label, sizeof r.top[0].label, "%s", label);
    r.ntop = 1;
    return r;
}

static int setup(void **state)
{
    memset(&rec, 0, sizeof rec);
    web_pending_table *t = NULL;
    assert_int_equal(web_pending_create(4, fake_park, fake_wake, &t), 0);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    web_pending_destroy(*state);
    return 0;
}

/* ---- tests -------------------------------------------------------------------------------------- */

static void test_create_refuses_bad_arguments(void **state)
{
    (void)state;
    web_pending_table *t = (web_pending_table *)1;
    assert_int_equal(web_pending_create(0, fake_park, fake_wake, &t), IMGCLS_EINVAL);
    assert_null(t);
    assert_int_equal(web_pending_create(1, NULL, fake_wake, &t), IMGCLS_EINVAL);
    web_pending_destroy(NULL);
}

static void test_answer_after_park_wakes_the_connection(void **state)
{
    web_pending_table *t = *state;
    web_pending p;
    entry(&p, 1);
    assert_int_equal(web_pending_add(t, &p, 1000, 5000), 0);
    assert_int_equal(p.deadline_ms, 6000);
    assert_int_equal(web_pending_count(t), 1);
    assert_true(web_pending_park(t, &p));
    msg_response r = response_for(p.id, "tile roof");
    assert_true(web_pending_answer(t, &r, 1500));
    assert_int_equal(p.outcome, WEB_ANSWERED);
    assert_int_equal(p.done_ms, 1500);
    assert_string_equal(p.resp.top[0].label, "tile roof");
    assert_int_equal(web_pending_count(t), 0);
    assert_int_equal(rec.n, 2);
    assert_string_equal(rec.events[0], "park 1");
    assert_string_equal(rec.events[1], "wake 1");
    /* The woken handler runs again: nothing is parked any more. */
    web_pending_unparked(t, &p);
    assert_true(web_pending_wait_unparked(t, 0));
    /* A second answer for the same id finds nobody. */
    assert_false(web_pending_answer(t, &r, 1600));
}

static void test_answer_before_park_means_no_park(void **state)
{
    web_pending_table *t = *state;
    web_pending p;
    entry(&p, 2);
    assert_int_equal(web_pending_add(t, &p, 0, 5000), 0);
    msg_response r = response_for(p.id, "bathtub");
    assert_true(web_pending_answer(t, &r, 10)); /* the worker was faster than queue_send's return */
    assert_false(web_pending_park(t, &p));      /* so the owner answers at once */
    assert_int_equal(p.outcome, WEB_ANSWERED);
    assert_int_equal(rec.n, 0); /* neither parked nor woken */
    assert_true(web_pending_wait_unparked(t, 0));
}

static void test_unknown_id_is_not_found(void **state)
{
    web_pending_table *t = *state;
    web_pending p;
    entry(&p, 3);
    assert_int_equal(web_pending_add(t, &p, 0, 5000), 0);
    msg_response r = response_for("ffffffffffffffffffffffffffffffff", "x");
    assert_false(web_pending_answer(t, &r, 1));
    assert_int_equal(web_pending_count(t), 1);
    web_pending_remove(t, &p);
    assert_int_equal(web_pending_count(t), 0);
    web_pending_remove(t, &p); /* idempotent */
}

static void expired_cb(const web_pending *p, void *arg)
{
    int *n = arg;
    (*n)++;
    record("expired", p->conn);
}

static void test_expiry_in_deadline_order(void **state)
{
    web_pending_table *t = *state;
    web_pending p[3];
    for (int i = 0; i < 3; i++) {
        entry(&p[i], 10 + i);
        assert_int_equal(web_pending_add(t, &p[i], 100 * i, 1000), 0); /* deadlines 1000, 1100, 1200 */
        assert_true(web_pending_park(t, &p[i]));
    }
    rec.n = 0;
    int n = 0;
    assert_int_equal(web_pending_expire(t, 999, expired_cb, &n), 0);
    assert_int_equal(web_pending_expire(t, 1100, expired_cb, &n), 2);
    assert_int_equal(n, 2);
    assert_string_equal(rec.events[0], "expired 10");
    assert_string_equal(rec.events[1], "wake 10");
    assert_string_equal(rec.events[2], "expired 11");
    assert_string_equal(rec.events[3], "wake 11");
    assert_int_equal(p[0].outcome, WEB_TIMED_OUT);
    assert_int_equal(p[2].outcome, WEB_WAITING);
    /* An answer for an expired request finds nobody; the last one still gets its answer. */
    msg_response late = response_for(p[0].id, "late");
    assert_false(web_pending_answer(t, &late, 1150));
    msg_response r = response_for(p[2].id, "in time");
    assert_true(web_pending_answer(t, &r, 1150));
    assert_int_equal(web_pending_count(t), 0);
}

static void test_removed_from_the_middle_keeps_order(void **state)
{
    web_pending_table *t = *state;
    web_pending p[3];
    for (int i = 0; i < 3; i++) {
        entry(&p[i], 20 + i);
        assert_int_equal(web_pending_add(t, &p[i], i, 10), 0);
    }
    web_pending_remove(t, &p[1]);
    int n = 0;
    assert_int_equal(web_pending_expire(t, 100, expired_cb, &n), 2);
    assert_string_equal(rec.events[0], "expired 20");
    assert_string_equal(rec.events[1], "expired 22");
}

static void test_capacity_and_duplicates(void **state)
{
    web_pending_table *t = *state; /* capacity 4 */
    web_pending p[5], dup;
    for (int i = 0; i < 4; i++) {
        entry(&p[i], 30 + i);
        assert_int_equal(web_pending_add(t, &p[i], 0, 10), 0);
    }
    assert_true(web_pending_full(t));
    entry(&p[4], 34);
    assert_int_equal(web_pending_add(t, &p[4], 0, 10), IMGCLS_EBUSY);
    web_pending_remove(t, &p[0]);
    assert_false(web_pending_full(t));
    entry(&dup, 31);
    assert_int_equal(web_pending_add(t, &dup, 0, 10), IMGCLS_EINVAL);
    assert_int_equal(web_pending_add(t, &p[4], 0, 10), 0);
}

static void test_shutdown_completes_all_and_refuses_more(void **state)
{
    web_pending_table *t = *state;
    web_pending a, b, c;
    entry(&a, 40);
    entry(&b, 41);
    entry(&c, 42);
    assert_int_equal(web_pending_add(t, &a, 0, 10), 0);
    assert_int_equal(web_pending_add(t, &b, 0, 10), 0);
    assert_true(web_pending_park(t, &a)); /* b is still being sent */
    assert_int_equal(web_pending_shutdown(t, 5), 2);
    assert_int_equal(a.outcome, WEB_SHUTDOWN);
    assert_int_equal(b.outcome, WEB_SHUTDOWN);
    assert_false(web_pending_park(t, &b)); /* its owner answers 503 at once */
    assert_int_equal(web_pending_add(t, &c, 0, 10), IMGCLS_ECLOSED);
    assert_true(web_pending_full(t));
    assert_false(web_pending_wait_unparked(t, 10)); /* a was woken but has not run again */
    web_pending_unparked(t, &a);
    assert_true(web_pending_wait_unparked(t, 10));
}

/* Many ids in few buckets: every one must still be found (chains work). */
static void test_many_entries(void **state)
{
    (void)state;
    web_pending_table *t = NULL;
    enum { N = 5000 };
    web_pending *p = calloc(N, sizeof *p);
    assert_non_null(p);
    assert_int_equal(web_pending_create(N, fake_park, fake_wake, &t), 0);
    for (int i = 0; i < N; i++) {
        snprintf(p[i].id, sizeof p[i].id, "%032x", i * 7919);
        assert_int_equal(web_pending_add(t, &p[i], 0, 10), 0);
    }
    for (int i = N - 1; i >= 0; i -= 2) {
        msg_response r = response_for(p[i].id, "x");
        assert_true(web_pending_answer(t, &r, 1));
    }
    assert_int_equal(web_pending_count(t), N / 2);
    assert_int_equal(web_pending_expire(t, 10, NULL, NULL), N / 2);
    web_pending_destroy(t);
    free(p);
}

/* Answers racing with adds and parks from other threads: every request ends up answered exactly once
 * and every parked one woken. Run under TSan for the locking. */
typedef struct race_arg {
    web_pending_table *t;
    web_pending *p;
    int n;
    int failures; /* cmocka's asserts must stay on the main thread */
} race_arg;

static void nop(void *conn)
{
    (void)conn;
}

static void *race_owner(void *v)
{
    race_arg *a = v;
    for (int i = 0; i < a->n; i++) {
        if (web_pending_add(a->t, &a->p[i], 0, 1000000))
            a->failures++;
        else
            (void)web_pending_park(a->t, &a->p[i]); /* parked, or answered already: both fine */
    }
    return NULL;
}

static void test_answers_race_with_owners(void **state)
{
    (void)state;
    enum { N = 2000 };
    web_pending_table *t = NULL;
    web_pending *p = calloc(N, sizeof *p);
    assert_non_null(p);
    assert_int_equal(web_pending_create(N, nop, nop, &t), 0);
    for (int i = 0; i < N; i++)
        snprintf(p[i].id, sizeof p[i].id, "%032x", i);
    race_arg a = {t, p, N, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, race_owner, &a), 0);
    int answered = 0;
    for (int round = 0; answered < N && round < 1000000; round++)
        for (int i = 0; i < N; i++) {
            msg_response r = response_for(p[i].id, "x");
            if (web_pending_answer(t, &r, 1))
                answered++;
        }
    pthread_join(th, NULL);
    assert_int_equal(a.failures, 0);
    assert_int_equal(answered, N);
    assert_int_equal(web_pending_count(t), 0);
    web_pending_destroy(t);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_refuses_bad_arguments),
        cmocka_unit_test_setup_teardown(test_answer_after_park_wakes_the_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_before_park_means_no_park, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_id_is_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry_in_deadline_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_removed_from_the_middle_keeps_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capacity_and_duplicates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_completes_all_and_refuses_more, setup, teardown),
        cmocka_unit_test(test_many_entries),
        cmocka_unit_test(test_answers_race_with_owners),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
