/* The queue messages (src/message/message.h): every input goes through msg_request_decode and
 * msg_response_decode. What decodes must encode again (decode enforces the same rules encode does),
 * decode again to the same struct, and encode again to the same bytes: a worker that forwards or
 * stores a message must not change its meaning. */
#include "fuzz_util.h"

#include "message/message.h"
#include "queue/queue.h"

#include <string.h>

static void same_request(const msg_request *a, const msg_request *b)
{
    FUZZ_CHECK(strcmp(a->id, b->id) == 0 && strcmp(a->file, b->file) == 0 &&
               strcmp(a->reply_to, b->reply_to) == 0 && strcmp(a->image_key, b->image_key) == 0);
    FUZZ_CHECK(a->image_len == b->image_len && (a->image == NULL) == (b->image == NULL));
    if (a->image_len)
        FUZZ_CHECK(memcmp(a->image, b->image, a->image_len) == 0);
}

static void same_response(const msg_response *a, const msg_response *b)
{
    FUZZ_CHECK(strcmp(a->id, b->id) == 0 && strcmp(a->file, b->file) == 0);
    FUZZ_CHECK(strcmp(a->error_code, b->error_code) == 0 && strcmp(a->error_message, b->error_message) == 0);
    if (a->error_code[0])
        return;
    FUZZ_CHECK(a->ntop == b->ntop && strcmp(a->worker, b->worker) == 0);
    for (size_t i = 0; i < a->ntop; i++)
        FUZZ_CHECK(strcmp(a->top[i].label, b->top[i].label) == 0 && a->top[i].index == b->top[i].index &&
                   a->top[i].prob == b->top[i].prob);
    FUZZ_CHECK(a->ms.queue_ms == b->ms.queue_ms && a->ms.fetch_ms == b->ms.fetch_ms &&
               a->ms.decode_ms == b->ms.decode_ms && a->ms.infer_ms == b->ms.infer_ms &&
               a->ms.total_ms == b->ms.total_ms);
}

static void request_round_trip(const uint8_t *data, size_t size)
{
    msg_request a, b;
    imgcls_errbuf eb = {{0}};
    int rc = msg_request_decode(data, size, &a, &eb);
    if (rc) {
        FUZZ_CHECK(rc == IMGCLS_ECORRUPT || rc == IMGCLS_ENOMEM);
        FUZZ_CHECK(a.image == NULL && a.image_len == 0 && a.id[0] == 0);
        return;
    }
    FUZZ_CHECK((a.image != NULL) != (a.image_key[0] != 0));
    imgcls_buf e1, e2;
    buf_init(&e1, QUEUE_MAX_BODY);
    buf_init(&e2, QUEUE_MAX_BODY);
    rc = msg_request_encode(&a, &e1);
    if (rc) {
        fprintf(stderr, "msg_request_encode refused a decoded request: %s\n", imgcls_err_name(rc));
        abort();
    }
    FUZZ_CHECK(msg_request_decode(e1.data, e1.len, &b, &eb) == 0);
    same_request(&a, &b);
    FUZZ_CHECK(msg_request_encode(&b, &e2) == 0);
    FUZZ_CHECK(e1.len == e2.len && memcmp(e1.data, e2.data, e1.len) == 0);
    msg_request_free(&a);
    msg_request_free(&b);
    buf_free(&e1);
    buf_free(&e2);
}

static void response_round_trip(const uint8_t *data, size_t size)
{
    msg_response a, b;
    imgcls_errbuf eb = {{0}};
    int rc = msg_response_decode(data, size, &a, &eb);
    if (rc) {
        FUZZ_CHECK(rc == IMGCLS_ECORRUPT || rc == IMGCLS_ENOMEM);
        FUZZ_CHECK(a.id[0] == 0 && a.ntop == 0);
        return;
    }
    FUZZ_CHECK(a.error_code[0] ? 1 : a.ntop >= 1 && a.ntop <= MESSAGE_MAX_TOP);
    imgcls_buf e1, e2;
    buf_init(&e1, QUEUE_MAX_BODY);
    buf_init(&e2, QUEUE_MAX_BODY);
    rc = msg_response_encode(&a, &e1);
    if (rc) {
        fprintf(stderr, "msg_response_encode refused a decoded response: %s\n", imgcls_err_name(rc));
        abort();
    }
    FUZZ_CHECK(msg_response_decode(e1.data, e1.len, &b, &eb) == 0);
    same_response(&a, &b);
    FUZZ_CHECK(msg_response_encode(&b, &e2) == 0);
    FUZZ_CHECK(e1.len == e2.len && memcmp(e1.data, e2.data, e1.len) == 0);
    buf_free(&e1);
    buf_free(&e2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    request_round_trip(data, size);
    response_round_trip(data, size);
    return 0;
}
