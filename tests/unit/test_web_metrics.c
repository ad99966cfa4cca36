/* Unit tests for the web tier's Prometheus exposition (src/web/web_metrics.h). */
#include "web/web_metrics.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

static const char *render(web_metrics *m, const web_gauges *g, imgcls_buf *out)
{
    buf_reset(out);
    assert_int_equal(web_metrics_render(m, g, out), 0);
    return (const char *)out->data;
}

static void test_counts_and_histogram(void **state)
{
    (void)state;
    web_metrics *m = NULL;
    imgcls_buf out;
    buf_init(&out, 1 << 16);
    assert_int_equal(web_metrics_create(&m), 0);
    web_gauges g = {true, {3, 2}, 7, true};
    const char *s = render(m, &g, &out);
    /* Before any request: no status series, a zero histogram. */
    assert_null(strstr(s, "imgcls_http_requests_total{"));
    assert_non_null(strstr(s, "imgcls_http_request_duration_seconds_bucket{le=\"+Inf\"} 0\n"));
    web_metrics_observe(m, 200, 0.003, false);
    web_metrics_observe(m, 200, 0.7, true);
    web_metrics_observe(m, 504, 301, true);
    web_metrics_observe(m, 0, 1, true);    /* no status: not counted */
    web_metrics_observe(m, 600, 1, true);  /* not a status */
    web_metrics_unmatched(m);
    s = render(m, &g, &out);
    assert_non_null(strstr(s, "# TYPE imgcls_http_requests_total counter\n"));
    assert_non_null(strstr(s, "imgcls_http_requests_total{status=\"200\"} 2\n"));
    assert_non_null(strstr(s, "imgcls_http_requests_total{status=\"504\"} 1\n"));
    assert_non_null(strstr(s, "# TYPE imgcls_http_request_duration_seconds histogram\n"));
    assert_non_null(strstr(s, "imgcls_http_request_duration_seconds_bucket{le=\"0.005\"} 1\n"));
    assert_non_null(strstr(s, "imgcls_http_request_duration_seconds_bucket{le=\"0.5\"} 1\n"));
    assert_non_null(strstr(s, "imgcls_http_request_duration_seconds_bucket{le=\"1\"} 2\n"));
    assert_non_null(strstr(s, "imgcls_http_request_duration_seconds_bucket{le=\"300\"} 2\n"));
    assert_non_null(strstr(s, "imgcls_http_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(s, "imgcls_http_request_duration_seconds_sum 301.703000\n"));
    assert_non_null(strstr(s, "imgcls_http_request_duration_seconds_count 3\n"));
    assert_non_null(strstr(s, "imgcls_http_responses_unmatched_total 1\n"));
    /* The upload histogram has the two POST / answers, not the quick GET. */
    assert_non_null(strstr(s, "# TYPE imgcls_upload_duration_seconds histogram\n"));
    assert_non_null(strstr(s, "imgcls_upload_duration_seconds_bucket{le=\"0.005\"} 0\n"));
    assert_non_null(strstr(s, "imgcls_upload_duration_seconds_bucket{le=\"1\"} 1\n"));
    assert_non_null(strstr(s, "imgcls_upload_duration_seconds_bucket{le=\"+Inf\"} 2\n"));
    assert_non_null(strstr(s, "imgcls_upload_duration_seconds_sum 301.700000\n"));
    assert_non_null(strstr(s, "imgcls_upload_duration_seconds_count 2\n"));
    assert_non_null(strstr(s, "imgcls_queue_depth{state=\"visible\"} 3\n"));
    assert_non_null(strstr(s, "imgcls_queue_depth{state=\"in_flight\"} 2\n"));
    assert_non_null(strstr(s, "imgcls_requests_waiting 7\n"));
    assert_non_null(strstr(s, "imgcls_dispatcher_up 1\n"));
    /* An unreadable queue leaves its series out rather than reporting a made-up 0. */
    g.have_depth = false;
    g.dispatcher_up = false;
    s = render(m, &g, &out);
    assert_null(strstr(s, "imgcls_queue_depth"));
    assert_non_null(strstr(s, "imgcls_dispatcher_up 0\n"));
    web_metrics_destroy(m);
    web_metrics_destroy(NULL);
    buf_free(&out);
}

/* Answers by engine: one series each, bounded (the strings come from messages), the rest as "other". */
static void test_answers_by_engine(void **state)
{
    (void)state;
    web_metrics *m = NULL;
    imgcls_buf out;
    buf_init(&out, 1 << 16);
    assert_int_equal(web_metrics_create(&m), 0);
    web_gauges g = {false, {0, 0}, 0, true};
    web_metrics_engine(m, "onednn/avx2/fp32/1");
    web_metrics_engine(m, "onednn/avx2/fp32/1");
    web_metrics_engine(m, "onednn/avx512_core_amx/int8/1");
    web_metrics_engine(m, ""); /* an answer that did not say */
    const char *s = render(m, &g, &out);
    assert_non_null(strstr(s, "# TYPE imgcls_answers_by_engine_total counter\n"));
    assert_non_null(strstr(s, "imgcls_answers_by_engine_total{engine=\"onednn/avx2/fp32/1\"} 2\n"));
    assert_non_null(strstr(s, "imgcls_answers_by_engine_total{engine=\"onednn/avx512_core_amx/int8/1\"} 1\n"));
    assert_null(strstr(s, "engine=\"other\""));
    for (int i = 0; i < 20; i++) {
        char e[32];
        snprintf(e, sizeof e, "x/y/fp32/%d", i);
        web_metrics_engine(m, e);
    }
    s = render(m, &g, &out);
    assert_non_null(strstr(s, "imgcls_answers_by_engine_total{engine=\"x/y/fp32/5\"} 1\n"));
    assert_null(strstr(s, "engine=\"x/y/fp32/6\"")); /* 2 + 6 = WEB_MAX_ENGINES series */
    assert_non_null(strstr(s, "imgcls_answers_by_engine_total{engine=\"other\"} 14\n"));
    web_metrics_destroy(m);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_and_histogram),
        cmocka_unit_test(test_answers_by_engine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
