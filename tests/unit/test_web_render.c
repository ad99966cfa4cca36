/* Unit tests for what the web tier says (src/web/web_render.h): ids, Accept, and the
 * exact bodies of answers and errors. */
#include "web/web_render.h"

#include "common/error.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>

#include <stdio.h>
#include <string.h>

static void test_ids(void **state)
{
    (void)state;
    char a[WEB_ID_LEN + 1], b[WEB_ID_LEN + 1];
    assert_int_equal(web_id_new(a), 0);
    assert_int_equal(web_id_new(b), 0);
    assert_int_equal(strlen(a), WEB_ID_LEN);
    assert_true(msg_id_valid(a));
    assert_string_not_equal(a, b);
    static const char *const bad[] = {"",
                                      "0123",
                                      "0123456789abcdef0123456789abcdeF",
                                      "0123456789abcdef0123456789abcdef0",
                                      "0123456789abcdef0123456789abcde",
                                      "../../../etc/passwd",
                                      "0123456789abcdef0123456789abcdeg"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_false(msg_id_valid(bad[i]));
    assert_true(msg_id_valid("0123456789abcdef0123456789abcdef"));
}

static void test_accept(void **state)
{
    (void)state;
    assert_false(web_accepts_json(NULL));
    assert_false(web_accepts_json("*/*"));
    assert_false(web_accepts_json("text/plain"));
    assert_false(web_accepts_json("application/jsonx"));
    assert_true(web_accepts_json("application/json"));
    assert_true(web_accepts_json("Application/JSON"));
    assert_true(web_accepts_json("text/html, application/json;q=0.9, */*;q=0.1"));
    assert_true(web_accepts_json("text/plain ,  application/json "));
}

static void test_status_for_error(void **state)
{
    (void)state;
    assert_int_equal(web_status_for_error("EFORMAT"), 422);
    assert_int_equal(web_status_for_error("ETOOBIG"), 413);
    assert_int_equal(web_status_for_error("EUNSUPPORTED"), 415);
    assert_int_equal(web_status_for_error("EIO"), 500);
    assert_int_equal(web_status_for_error("whatever"), 500);
}

static msg_response result(void)
{
    msg_response r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "0123456789abcdef0123456789abcdef");
    snprintf(r.file, sizeof r.file, "test_0.JPEG");
    r.ntop = 7;
    for (size_t i = 0; i < r.ntop; i++) {
        snprintf(r.top[i].label, sizeof r.top[i].label, i == 0 ? "tile roof" : "other %zu", i);
        r.top[i].index = (uint32_t)(858 + i);
        r.top[i].prob = 0.5 / (double)(i + 1);
    }
    snprintf(r.worker, sizeof r.worker, "w1");
    r.ms = (msg_timing){1, 2, 3, 4, 10};
    return r;
}

static void test_text_answer_is_only_the_label(void **state)
{
    (void)state;
    msg_response r = result();
    imgcls_buf out;
    unsigned status = 0;
    buf_init(&out, 4096);
    assert_int_equal(web_render_response(&r, NULL, false, &out, &status), 0);
    assert_int_equal(status, 200);
    assert_int_equal(out.len, strlen("tile roof"));
    assert_memory_equal(out.data, "tile roof", out.len);
    buf_free(&out);
}

static void test_json_answer(void **state)
{
    (void)state;
    msg_response r = result();
    web_stage_ms web = {0.5, 1.5, 2.5, 20, 25};
    imgcls_buf out;
    unsigned status = 0;
    buf_init(&out, 4096);
    assert_int_equal(web_render_response(&r, &web, true, &out, &status), 0);
    assert_int_equal(status, 200);
    json_error_t je;
    json_t *o = json_loadb((const char *)out.data, out.len, 0, &je);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "id")), r.id);
    assert_string_equal(json_string_value(json_object_get(o, "file")), "test_0.JPEG");
    assert_string_equal(json_string_value(json_object_get(o, "label")), "tile roof");
    assert_int_equal(json_integer_value(json_object_get(o, "index")), 858);
    assert_true(json_real_value(json_object_get(o, "prob")) == 0.5);
    json_t *top = json_object_get(o, "top");
    assert_int_equal(json_array_size(top), 5); /* capped at five */
    assert_string_equal(json_string_value(json_object_get(json_array_get(top, 4), "label")), "other 4");
    json_t *ms = json_object_get(o, "ms");
    static const char *const stages[] = {"queue", "fetch", "decode", "infer", "worker",
                                         "receive", "store", "send", "wait", "total"};
    for (size_t i = 0; i < sizeof stages / sizeof *stages; i++)
        assert_non_null(json_object_get(ms, stages[i]));
    assert_true(json_number_value(json_object_get(ms, "wait")) == 20);
    json_decref(o);
    /* No noise digits. */
    assert_null(strstr((const char *)out.data, "0000000"));
    buf_free(&out);
}

static void test_worker_error_answer(void **state)
{
    (void)state;
    msg_response r;
    memset(&r, 0, sizeof r);
    snprintf(r.id, sizeof r.id, "0123456789abcdef0123456789abcdef");
    snprintf(r.error_code, sizeof r.error_code, "EFORMAT");
    snprintf(r.error_message, sizeof r.error_message, "x.jpg: not a JPEG or PNG");
    imgcls_buf out;
    unsigned status = 0;
    buf_init(&out, 4096);
    assert_int_equal(web_render_response(&r, NULL, false, &out, &status), 0);
    assert_int_equal(status, 422);
    assert_string_equal((const char *)out.data, "x.jpg: not a JPEG or PNG\n");
    buf_reset(&out);
    assert_int_equal(web_render_response(&r, NULL, true, &out, &status), 0);
    assert_string_equal((const char *)out.data,
                        "{\"error\":{\"code\":\"EFORMAT\",\"message\":\"x.jpg: not a JPEG or "
                        "PNG\"},\"status\":422,\"id\":\"0123456789abcdef0123456789abcdef\"}");
    buf_free(&out);
}

static void test_error_bodies(void **state)
{
    (void)state;
    imgcls_buf out;
    buf_init(&out, 4096);
    assert_int_equal(web_render_error(400, "EINVAL", NULL, "missing field myfile", false, &out), 0);
    assert_string_equal((const char *)out.data, "missing field myfile\n");
    buf_reset(&out);
    assert_int_equal(web_render_error(400, "EINVAL", NULL, "say \"hi\"", true, &out), 0);
    assert_string_equal((const char *)out.data,
                        "{\"error\":{\"code\":\"EINVAL\",\"message\":\"say \\\"hi\\\"\"},\"status\":400}");
    buf_free(&out);
    /* A body that does not fit its buffer is an error, not a truncated answer. */
    buf_init(&out, 8);
    assert_int_equal(web_render_error(400, "EINVAL", NULL, "missing field myfile", false, &out),
                     IMGCLS_ETOOBIG);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_accept),
        cmocka_unit_test(test_status_for_error),
        cmocka_unit_test(test_text_answer_is_only_the_label),
        cmocka_unit_test(test_json_answer),
        cmocka_unit_test(test_worker_error_answer),
        cmocka_unit_test(test_error_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
