/* Request and response messages: round trips, encoder refusals, and a table of bad messages that must
 * each decode to IMGCLS_ECORRUPT with the offending field named. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "message/message.h"
#include "queue/queue.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ID "0123456789abcdef0123456789abcdef"
#define CLAIM ".imgcls/claims/" ID

static void copy(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src);
}

static msg_request base_request(void)
{
    msg_request r;
    memset(&r, 0, sizeof r);
    copy(r.id, sizeof r.id, ID);
    copy(r.file, sizeof r.file, "test_0.JPEG");
    copy(r.reply_to, sizeof r.reply_to, "sqlite:///var/lib/imgcls/imgcls.db?queue=resp-web1");
    return r;
}

/* Encodes r, decodes it again, and checks every field survived. */
static void request_round_trip(const msg_request *r)
{
    imgcls_buf b;
    buf_init(&b, QUEUE_MAX_BODY);
    assert_int_equal(msg_request_encode(r, &b), 0);
    assert_true(b.len <= QUEUE_MAX_BODY);
    msg_request d;
    imgcls_errbuf eb = {{0}};
    int rc = msg_request_decode(b.data, b.len, &d, &eb);
    if (rc)
        fail_msg("decode: %s (%s)", imgcls_err_name(rc), eb.msg);
    assert_string_equal(d.id, r->id);
    assert_string_equal(d.file, r->file);
    assert_string_equal(d.reply_to, r->reply_to);
    assert_string_equal(d.image_key, r->image_key);
    assert_int_equal(d.image_len, r->image_len);
    if (r->image_len)
        assert_memory_equal(d.image, r->image, r->image_len);
    else
        assert_null(d.image);
    msg_request_free(&d);
    assert_null(d.image);
    buf_free(&b);
}

static void t_request_inline(void **state)
{
    (void)state;
    unsigned char *img = malloc(MESSAGE_INLINE_MAX);
    assert_non_null(img);
    for (size_t i = 0; i < MESSAGE_INLINE_MAX; i++)
        img[i] = (unsigned char)(i * 131 + 7);
    msg_request r = base_request();
    r.image = img;
    /* Every length mod 3 (base64 padding 0, 1, 2), all byte values, and the largest inline image. */
    static const size_t lens[] = {1, 2, 3, 4, 5, 6, 255, 256, 257, MESSAGE_INLINE_MAX};
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
        r.image_len = lens[i];
        request_round_trip(&r);
    }
    free(img);
}

static void t_request_key(void **state)
{
    (void)state;
    msg_request r = base_request();
    copy(r.image_key, sizeof r.image_key, CLAIM);
    copy(r.file, sizeof r.file, "big photo, \"quoted\" \xc3\xa9.JPEG");
    request_round_trip(&r);
}

static void t_request_encode_refusals(void **state)
{
    (void)state;
    unsigned char img[4] = {1, 2, 3, 4};
    imgcls_buf b;
    buf_init(&b, QUEUE_MAX_BODY);
    msg_request r = base_request();
    assert_int_equal(msg_request_encode(&r, &b), IMGCLS_EINVAL); /* neither image nor key */
    r.image = img;
    r.image_len = sizeof img;
    copy(r.image_key, sizeof r.image_key, CLAIM);
    assert_int_equal(msg_request_encode(&r, &b), IMGCLS_EINVAL); /* both */
    r.image_key[0] = 0;
    r.id[0] = 0;
    assert_int_equal(msg_request_encode(&r, &b), IMGCLS_EINVAL); /* no id */
    copy(r.id, sizeof r.id, "r-1");
    assert_int_equal(msg_request_encode(&r, &b), IMGCLS_EINVAL); /* not an id the web tier makes */
    r = base_request();
    copy(r.image_key, sizeof r.image_key, "test_0.JPEG");
    assert_int_equal(msg_request_encode(&r, &b), IMGCLS_EINVAL); /* a key that is not its claim */
    r = base_request();
    r.image = img;
    r.image_len = sizeof img;
    copy(r.file, sizeof r.file, "../x.jpg");
    assert_int_equal(msg_request_encode(&r, &b), IMGCLS_EINVAL); /* a path, not a name */
    r = base_request();
    r.image = img;
    r.image_len = MESSAGE_INLINE_MAX + 1; /* never read: refused on length */
    assert_int_equal(msg_request_encode(&r, &b), IMGCLS_ETOOBIG);
    r.image_len = sizeof img;
    copy(r.file, sizeof r.file, "\xff\xfe not UTF-8");
    assert_int_equal(msg_request_encode(&r, &b), IMGCLS_EINVAL);
    assert_int_equal(b.len, 0);
    buf_free(&b);
    /* Too small a buffer: ETOOBIG, and the buffer is left as it was. */
    r = base_request();
    r.image = img;
    r.image_len = sizeof img;
    buf_init(&b, 20);
    assert_int_equal(buf_append(&b, "keep", 4), 0);
    assert_int_equal(msg_request_encode(&r, &b), IMGCLS_ETOOBIG);
    assert_int_equal(b.len, 4);
    assert_string_equal((char *)b.data, "keep");
    buf_free(&b);
}

static msg_response base_response(size_t ntop)
{
    static const char *const labels[] = {"tile roof", "crane, bird", "quote \" and \\ backslash",
                                         "caf\xc3\xa9", "bathtub"};
    msg_response r;
    memset(&r, 0, sizeof r);
    copy(r.id, sizeof r.id, "42424242424242424242424242424242");
    copy(r.file, sizeof r.file, "test_0.JPEG");
    for (size_t i = 0; i < ntop; i++) {
        copy(r.top[i].label, sizeof r.top[i].label, labels[i % 5]);
        r.top[i].index = (uint32_t)(858 - i);
        r.top[i].prob = 0.61803398874989484820 / (double)(i + 1);
    }
    r.ntop = ntop;
    copy(r.worker, sizeof r.worker, "worker-3@host");
    r.ms = (msg_timing){.queue_ms = 1.25, .fetch_ms = 0, .decode_ms = 3.5, .infer_ms = 12.125, .total_ms = 17};
    return r;
}

static void response_round_trip(const msg_response *r)
{
    imgcls_buf b;
    buf_init(&b, QUEUE_MAX_BODY);
    assert_int_equal(msg_response_encode(r, &b), 0);
    msg_response d;
    imgcls_errbuf eb = {{0}};
    int rc = msg_response_decode(b.data, b.len, &d, &eb);
    if (rc)
        fail_msg("decode: %s (%s) in %s", imgcls_err_name(rc), eb.msg, (char *)b.data);
    assert_string_equal(d.id, r->id);
    assert_string_equal(d.file, r->file);
    assert_string_equal(d.error_code, r->error_code);
    assert_string_equal(d.error_message, r->error_message);
    assert_int_equal(d.ntop, r->ntop);
    for (size_t i = 0; i < r->ntop; i++) {
        assert_string_equal(d.top[i].label, r->top[i].label);
        assert_int_equal(d.top[i].index, r->top[i].index);
        assert_true(d.top[i].prob == r->top[i].prob); /* 17 significant digits: exact */
    }
    if (!r->error_code[0]) {
        assert_string_equal(d.worker, r->worker);
        assert_string_equal(d.engine, r->engine);
        assert_memory_equal(&d.ms, &r->ms, sizeof d.ms);
    }
    buf_free(&b);
}

static void t_response_result(void **state)
{
    (void)state;
    for (size_t n = 1; n <= MESSAGE_MAX_TOP; n++) {
        msg_response r = base_response(n);
        response_round_trip(&r);
    }
    msg_response r = base_response(1);
    r.top[0].index = UINT32_MAX;
    r.top[0].prob = 1;
    response_round_trip(&r);
    copy(r.engine, sizeof r.engine, "onednn/avx512_core_amx/fp32/2");
    response_round_trip(&r);
}

/* engine is optional, and becomes a metrics label: a whitelist both ways. */
static void t_response_engine(void **state)
{
    (void)state;
    msg_response r = base_response(1);
    imgcls_buf b;
    buf_init(&b, QUEUE_MAX_BODY);
    assert_int_equal(msg_response_encode(&r, &b), 0);
    assert_null(strstr((char *)b.data, "\"engine\"")); /* empty: not sent */
    static const char *const bad[] = {"OneDNN", "onednn avx2", "x\"}", "a{b}", "caf\xc3\xa9"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        copy(r.engine, sizeof r.engine, bad[i]);
        buf_reset(&b);
        assert_int_equal(msg_response_encode(&r, &b), IMGCLS_EINVAL);
    }
    msg_response d;
    const char *forged = "{\"v\":1,\"id\":\"42424242424242424242424242424242\",\"file\":\"a.jpg\",\"label\":\"x\","
                         "\"index\":1,\"prob\":0.5,\"top\":[{\"label\":\"x\",\"index\":1,\"prob\":0.5}],"
                         "\"worker\":\"w\",\"engine\":\"a\\\"} 1\\nevil{x=\\\"\",\"ms\":{\"queue\":0,\"fetch\":0,"
                         "\"decode\":0,\"infer\":0,\"total\":0}}";
    assert_int_equal(msg_response_decode((const unsigned char *)forged, strlen(forged), &d, NULL), IMGCLS_ECORRUPT);
    buf_free(&b);
}

static void t_response_error(void **state)
{
    (void)state;
    msg_response r;
    memset(&r, 0, sizeof r);
    copy(r.id, sizeof r.id, "43434343434343434343434343434343");
    copy(r.file, sizeof r.file, "notanimage.txt");
    copy(r.error_code, sizeof r.error_code, "EFORMAT");
    copy(r.error_message, sizeof r.error_message, "notanimage.txt: not a JPEG or PNG, \"really\"");
    response_round_trip(&r);
}

static void t_response_encode_refusals(void **state)
{
    (void)state;
    imgcls_buf b;
    buf_init(&b, QUEUE_MAX_BODY);
    msg_response r = base_response(0);
    assert_int_equal(msg_response_encode(&r, &b), IMGCLS_EINVAL); /* no result and no error */
    r = base_response(3);
    r.ntop = MESSAGE_MAX_TOP + 1;
    assert_int_equal(msg_response_encode(&r, &b), IMGCLS_EINVAL);
    r = base_response(3);
    r.top[1].prob = NAN; /* JSON has no NaN */
    assert_int_equal(msg_response_encode(&r, &b), IMGCLS_EINVAL);
    r = base_response(3);
    r.ms.infer_ms = INFINITY;
    assert_int_equal(msg_response_encode(&r, &b), IMGCLS_EINVAL);
    r = base_response(3);
    r.top[2].label[0] = 0;
    assert_int_equal(msg_response_encode(&r, &b), IMGCLS_EINVAL);
    assert_int_equal(b.len, 0);
    buf_free(&b);
}

/* ---- strict decoding ---- */

typedef struct bad_case {
    const char *json;
    const char *field; /* must appear in the error detail */
} bad_case;

#define REQ_TAIL "\"reply_to\":\"q\",\"image_key\":\"" CLAIM "\"}"
#define REQ_HEAD "{\"v\":1,\"id\":\"" ID "\",\"file\":\"f\","

static const bad_case bad_requests[] = {
    {"hello", "not JSON"},
    {"", "not JSON"},
    {"{\"v\":1,\"id\":\"a\"", "not JSON"}, /* truncated */
    {REQ_HEAD REQ_TAIL " x", "not JSON"},  /* trailing garbage */
    {"[1,2]", "not an object"},
    {"{\"id\":\"a\",\"file\":\"f\"," REQ_TAIL, "v"},
    {"{\"v\":2,\"id\":\"a\",\"file\":\"f\"," REQ_TAIL, "v"},
    {"{\"v\":\"1\",\"id\":\"a\",\"file\":\"f\"," REQ_TAIL, "v"},
    {"{\"v\":1.0,\"id\":\"a\",\"file\":\"f\"," REQ_TAIL, "v"},
    {"{\"v\":1,\"v\":1,\"id\":\"a\",\"file\":\"f\"," REQ_TAIL, "not JSON"}, /* duplicate key */
    {"{\"v\":1,\"file\":\"f\"," REQ_TAIL, "id"},
    {"{\"v\":1,\"id\":\"\",\"file\":\"f\"," REQ_TAIL, "id"},
    {"{\"v\":1,\"id\":7,\"file\":\"f\"," REQ_TAIL, "id"},
    {"{\"v\":1,\"id\":null,\"file\":\"f\"," REQ_TAIL, "id"},
    {"{\"v\":1,\"id\":\"a\\u0000b\",\"file\":\"f\"," REQ_TAIL, "not JSON"},
    {"{\"v\":1,\"id\":\"0123456789012345678901234567890123456789012345678901234567890123\",\"file\":\"f\","
     REQ_TAIL, "id"}, /* 64 bytes: one too many */
    {"{\"v\":1,\"id\":\"" ID "\"," REQ_TAIL, "file"},
    {"{\"v\":1,\"id\":\"" ID "\",\"file\":[]," REQ_TAIL, "file"},
    {REQ_HEAD "\"image_key\":\"" CLAIM "\"}", "reply_to"},
    {REQ_HEAD "\"reply_to\":\"q\"}", "image_b64/image_key"},
    {REQ_HEAD "\"reply_to\":\"q\",\"image_key\":\"" CLAIM "\",\"image_b64\":\"QUJD\"}", "image_b64/image_key"},
    {REQ_HEAD "\"reply_to\":\"q\",\"image_key\":\"\"}", "image_key"},
    {REQ_HEAD "\"reply_to\":\"q\",\"image_key\":1}", "image_key"},
    {REQ_HEAD "\"reply_to\":\"q\",\"image_b64\":\"\"}", "image_b64"},
    {REQ_HEAD "\"reply_to\":\"q\",\"image_b64\":\"QUJ\"}", "image_b64"},     /* length */
    {REQ_HEAD "\"reply_to\":\"q\",\"image_b64\":\"QU!D\"}", "image_b64"},    /* alphabet */
    {REQ_HEAD "\"reply_to\":\"q\",\"image_b64\":\"QUJD\\n\"}", "image_b64"}, /* whitespace */
    {REQ_HEAD "\"reply_to\":\"q\",\"image_b64\":\" QUJ\"}", "image_b64"},
    {REQ_HEAD "\"reply_to\":\"q\",\"image_b64\":\"QQ==QUJD\"}", "image_b64"}, /* padding inside */
    {REQ_HEAD "\"reply_to\":\"q\",\"image_b64\":\"Q===\"}", "image_b64"},
    {REQ_HEAD "\"reply_to\":\"q\",\"image_b64\":\"QR==\"}", "image_b64"}, /* non-canonical */
    {REQ_HEAD "\"reply_to\":\"q\",\"image_b64\":\"QUI=x\"}", "image_b64"},
    {REQ_HEAD "\"reply_to\":\"q\",\"image_b64\":123}", "image_b64"},
};

#define RESP_MS ",\"worker\":\"w\",\"ms\":{\"queue\":1,\"fetch\":2,\"decode\":3,\"infer\":4,\"total\":5}}"
#define RESP_HEAD "{\"v\":1,\"id\":\"" ID "\",\"file\":\"f\","
#define RESP_TOP1 "\"top\":[{\"label\":\"x\",\"index\":1,\"prob\":0.5}]"
#define RESP_OK "\"label\":\"x\",\"index\":1,\"prob\":0.5," RESP_TOP1
#define TOP_ENTRY "{\"label\":\"x\",\"index\":1,\"prob\":0.5}"

static const bad_case bad_responses[] = {
    {"{\"v\":1,\"id\":\"a\",\"file\":\"f\",\"label\":\"x\"", "not JSON"},
    {"{\"v\":2,\"id\":\"a\",\"file\":\"f\"," RESP_OK RESP_MS, "v"},
    {"{\"v\":1,\"file\":\"f\"," RESP_OK RESP_MS, "id"},
    {"{\"v\":1,\"id\":\"" ID "\"," RESP_OK RESP_MS, "file"},
    {"{\"v\":1,\"id\":\"r-1\",\"file\":\"f\"," RESP_OK RESP_MS, "id"},
    {"{\"v\":1,\"id\":\"" ID "\",\"file\":\"a/b\"," RESP_OK RESP_MS, "file"},
    {RESP_HEAD "\"index\":1,\"prob\":0.5," RESP_TOP1 RESP_MS, "label"},
    {RESP_HEAD "\"label\":5,\"index\":1,\"prob\":0.5," RESP_TOP1 RESP_MS, "label"},
    {RESP_HEAD "\"label\":\"x\",\"index\":\"1\",\"prob\":0.5," RESP_TOP1 RESP_MS, "index"},
    {RESP_HEAD "\"label\":\"x\",\"index\":-1,\"prob\":0.5," RESP_TOP1 RESP_MS, "index"},
    {RESP_HEAD "\"label\":\"x\",\"index\":1.5,\"prob\":0.5," RESP_TOP1 RESP_MS, "index"},
    {RESP_HEAD "\"label\":\"x\",\"index\":4294967296,\"prob\":0.5," RESP_TOP1 RESP_MS, "index"},
    {RESP_HEAD "\"label\":\"x\",\"index\":1,\"prob\":\"high\"," RESP_TOP1 RESP_MS, "prob"},
    {RESP_HEAD "\"label\":\"x\",\"index\":1," RESP_TOP1 RESP_MS, "prob"},
    {RESP_HEAD "\"label\":\"x\",\"index\":1,\"prob\":0.5" RESP_MS, "top"},
    {RESP_HEAD "\"label\":\"x\",\"index\":1,\"prob\":0.5,\"top\":[]" RESP_MS, "top"},
    {RESP_HEAD "\"label\":\"x\",\"index\":1,\"prob\":0.5,\"top\":{}" RESP_MS, "top"},
    {RESP_HEAD "\"label\":\"x\",\"index\":1,\"prob\":0.5,\"top\":[" TOP_ENTRY "," TOP_ENTRY "," TOP_ENTRY ","
     TOP_ENTRY "," TOP_ENTRY "," TOP_ENTRY "," TOP_ENTRY "," TOP_ENTRY "," TOP_ENTRY "," TOP_ENTRY ","
     TOP_ENTRY "]" RESP_MS, "top"}, /* 11 entries */
    {RESP_HEAD "\"label\":\"x\",\"index\":1,\"prob\":0.5,\"top\":[" TOP_ENTRY ",7]" RESP_MS, "top[1]"},
    {RESP_HEAD "\"label\":\"x\",\"index\":1,\"prob\":0.5,\"top\":[" TOP_ENTRY ",{\"label\":\"y\",\"index\":2}]"
     RESP_MS, "top[1].prob"},
    {RESP_HEAD "\"label\":\"y\",\"index\":1,\"prob\":0.5," RESP_TOP1 RESP_MS, "label"}, /* != top[0] */
    {RESP_HEAD RESP_OK "}", "worker"},
    {RESP_HEAD RESP_OK ",\"worker\":1,\"ms\":{}}", "worker"},
    {RESP_HEAD RESP_OK ",\"worker\":\"w\"}", "ms"},
    {RESP_HEAD RESP_OK ",\"worker\":\"w\",\"ms\":[]}", "ms"},
    {RESP_HEAD RESP_OK ",\"worker\":\"w\",\"ms\":{\"queue\":1,\"fetch\":2,\"decode\":3,\"infer\":4}}", "ms.total"},
    {RESP_HEAD RESP_OK ",\"worker\":\"w\",\"ms\":{\"queue\":1,\"fetch\":2,\"decode\":3,\"infer\":4,\"total\":"
     "\"5\"}}", "ms.total"},
    {RESP_HEAD "\"error\":{\"code\":\"EFORMAT\",\"message\":\"m\"}," RESP_OK RESP_MS, "error"}, /* both */
    {RESP_HEAD "\"error\":\"EFORMAT\"}", "error"},
    {RESP_HEAD "\"error\":{\"message\":\"m\"}}", "error.code"},
    {RESP_HEAD "\"error\":{\"code\":\"\",\"message\":\"m\"}}", "error.code"},
    {RESP_HEAD "\"error\":{\"code\":\"EFORMAT\"}}", "error.message"},
    {RESP_HEAD "\"error\":{\"code\":\"E0123456789012345678901234567890\",\"message\":\"m\"}}", "error.code"},
};

/* Forged requests: well-formed JSON that anything able to write to the queue could send, each trying to
 * make a worker write where it must not. Each is refused by decode, naming the field. */
#define FORGE(id, file, key) "{\"v\":1,\"id\":\"" id "\",\"file\":\"" file "\",\"reply_to\":\"q\",\"image_key\":\"" key "\"}"
static const bad_case forged_requests[] = {
    {FORGE("../../etc", "f", CLAIM), "id"},
    {FORGE("0123456789ABCDEF0123456789ABCDEF", "f", CLAIM), "id"},      /* uppercase: not ours */
    {FORGE("0123456789abcdef0123456789abcdef/x", "f", CLAIM), "id"},
    {FORGE("0123456789abcdef", "f", CLAIM), "id"},                      /* too short */
    {FORGE(ID, "../../out/.imgcls/results/x.json", CLAIM), "file"},  /* a path */
    {FORGE(ID, "C:\\\\evil.jpg", CLAIM), "file"},
    {FORGE(ID, "a\\nb.jpg", CLAIM), "file"},                           /* a newline in the name */
    {FORGE(ID, "..", CLAIM), "file"},
    {FORGE(ID, "f", ".imgcls/claims/ffffffffffffffffffffffffffffffff"), "image_key"}, /* another's claim */
    {FORGE(ID, "f", "test_0.JPEG"), "image_key"},                      /* a client's object */
    {FORGE(ID, "f", ".imgcls/results/" ID ".json"), "image_key"},
    {FORGE(ID, "f", "../../etc/passwd"), "image_key"},
};

static void check_bad(int rc, const imgcls_errbuf *eb, const char *json, const char *field)
{
    if (rc != IMGCLS_ECORRUPT)
        fail_msg("%s: got %s, want ECORRUPT", json, imgcls_err_name(rc));
    if (!strstr(eb->msg, field))
        fail_msg("%s: detail '%s' does not name '%s'", json, eb->msg, field);
}

static void t_bad_requests(void **state)
{
    (void)state;
    /* The good base of the table decodes, so the failures below come from the edit alone. */
    msg_request d;
    imgcls_errbuf eb = {{0}};
    const char *good = REQ_HEAD REQ_TAIL;
    assert_int_equal(msg_request_decode((const unsigned char *)good, strlen(good), &d, &eb), 0);
    msg_request_free(&d);
    for (size_t i = 0; i < sizeof bad_requests / sizeof *bad_requests; i++) {
        const char *j = bad_requests[i].json;
        memset(&eb, 0, sizeof eb);
        int rc = msg_request_decode((const unsigned char *)j, strlen(j), &d, &eb);
        check_bad(rc, &eb, j, bad_requests[i].field);
        assert_null(d.image); /* nothing to free after a failure */
    }
}

static void t_forged_requests(void **state)
{
    (void)state;
    msg_request d;
    imgcls_errbuf eb = {{0}};
    const char *good = FORGE(ID, "my photo (1).jpg", CLAIM);
    assert_int_equal(msg_request_decode((const unsigned char *)good, strlen(good), &d, &eb), 0);
    assert_string_equal(d.file, "my photo (1).jpg");
    msg_request_free(&d);
    for (size_t i = 0; i < sizeof forged_requests / sizeof *forged_requests; i++) {
        const char *j = forged_requests[i].json;
        memset(&eb, 0, sizeof eb);
        check_bad(msg_request_decode((const unsigned char *)j, strlen(j), &d, &eb), &eb, j, forged_requests[i].field);
    }
}

static void t_bad_responses(void **state)
{
    (void)state;
    msg_response d;
    imgcls_errbuf eb = {{0}};
    const char *good = RESP_HEAD RESP_OK RESP_MS;
    assert_int_equal(msg_response_decode((const unsigned char *)good, strlen(good), &d, &eb), 0);
    assert_int_equal(d.ntop, 1);
    for (size_t i = 0; i < sizeof bad_responses / sizeof *bad_responses; i++) {
        const char *j = bad_responses[i].json;
        memset(&eb, 0, sizeof eb);
        check_bad(msg_response_decode((const unsigned char *)j, strlen(j), &d, &eb), &eb, j,
                  bad_responses[i].field);
    }
}

/* Cases built at run time: over-long strings, and bodies over the queue's limit. */
static void t_bad_generated(void **state)
{
    (void)state;
    imgcls_buf b;
    imgcls_errbuf eb = {{0}};
    msg_response d;
    char label[MESSAGE_MAX_LABEL + 1];
    memset(label, 'l', sizeof label - 1);
    label[sizeof label - 1] = 0; /* MESSAGE_MAX_LABEL bytes: one too many */
    buf_init(&b, 4096);
    assert_int_equal(buf_printf(&b, RESP_HEAD "\"label\":\"%s\",\"index\":1,\"prob\":0.5,\"top\":[{\"label\":\"%s\","
                                "\"index\":1,\"prob\":0.5}]" RESP_MS, label, label), 0);
    check_bad(msg_response_decode(b.data, b.len, &d, &eb), &eb, "label too long", "label");
    buf_free(&b);

    char file[MESSAGE_MAX_FILE + 1];
    memset(file, 'f', sizeof file - 1);
    file[sizeof file - 1] = 0;
    buf_init(&b, 4096);
    assert_int_equal(buf_printf(&b, "{\"v\":1,\"id\":\"" ID "\",\"file\":\"%s\"," REQ_TAIL, file), 0);
    msg_request r;
    check_bad(msg_request_decode(b.data, b.len, &r, &eb), &eb, "file too long", "file");
    buf_free(&b);

    /* A body over QUEUE_MAX_BODY is refused before parsing; an inline image over the inline limit too. */
    size_t n = QUEUE_MAX_BODY + 1;
    unsigned char *big = malloc(n);
    assert_non_null(big);
    memset(big, ' ', n);
    memcpy(big, REQ_HEAD REQ_TAIL, strlen(REQ_HEAD REQ_TAIL));
    check_bad(msg_request_decode(big, n, &r, &eb), &eb, "over QUEUE_MAX_BODY", "message");
    static const char prefix[] = REQ_HEAD "\"reply_to\":\"q\",\"image_b64\":\"";
    size_t b64len = 4 * ((MESSAGE_INLINE_MAX + 1 + 2) / 3); /* decodes to just over the limit */
    memset(big, 'A', b64len);
    buf_init(&b, QUEUE_MAX_BODY);
    assert_int_equal(buf_append(&b, prefix, strlen(prefix)), 0);
    assert_int_equal(buf_append(&b, big, b64len), 0);
    assert_int_equal(buf_append(&b, "\"}", 2), 0);
    check_bad(msg_request_decode(b.data, b.len, &r, &eb), &eb, "inline image too big", "image_b64");
    buf_free(&b);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_request_inline),       cmocka_unit_test(t_request_key),
        cmocka_unit_test(t_request_encode_refusals), cmocka_unit_test(t_response_result),
        cmocka_unit_test(t_response_error),       cmocka_unit_test(t_response_encode_refusals),
        cmocka_unit_test(t_response_engine),
        cmocka_unit_test(t_bad_requests),         cmocka_unit_test(t_bad_responses),
        cmocka_unit_test(t_bad_generated),        cmocka_unit_test(t_forged_requests),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
