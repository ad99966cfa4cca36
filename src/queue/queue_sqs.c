/* The SQS queue backend, in SQS's JSON protocol (contract in queue.h, requests in aws/aws.h).
 *
 * One handle is one queue and one signed HTTP connection (aws_client), used by one thread. Each port
 * operation is one SQS action: send SendMessage, receive ReceiveMessage (long polling), delete
 * DeleteMessage, change_visibility ChangeMessageVisibility, depth GetQueueAttributes; open checks the
 * queue with GetQueueUrl. The batch forms (send_batch, delete_batch) are SendMessageBatch and
 * DeleteMessageBatch, ten entries a call. */
#include "queue/queue_sqs.h"

#include "aws/aws.h"
#include "common/filename.h"
#include "queue/queue_backend.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SQS_MAX_WAIT_S 20
#define SQS_MAX_VISIBILITY_S 43200
/* Ten messages of 256 KiB, each of whose bytes JSON may escape into up to six: bounded well below. */
#define SQS_MAX_RECEIVE_RESPONSE ((size_t)16 << 20)

typedef struct sqs_queue {
    queue base;
    aws_client *c;
    char url[AWS_MAX_URL];  /* the queue's URL, as GetQueueUrl gives it */
    char post[AWS_MAX_URL]; /* where its requests go */
    char name[SQS_MAX_NAME];
    char account[SQS_MAX_ACCOUNT];
} sqs_queue;

static bool name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
}

int queue_sqs_parse_url(const char *url, char origin[SQS_MAX_ORIGIN], char account[SQS_MAX_ACCOUNT],
                        char name[SQS_MAX_NAME], char region[32], imgcls_errbuf *eb)
{
    size_t skip = strncmp(url, "https://", 8) == 0 ? 8 : strncmp(url, "http://", 7) == 0 ? 7 : 0;
    const char *host = url + skip, *slash = skip ? strchr(host, '/') : NULL;
    if (!slash || slash == host || (size_t)(slash - url) >= SQS_MAX_ORIGIN || strpbrk(url, "?#@ \\%"))
        return imgcls_fail(eb, IMGCLS_EINVAL, "sqs: '%.200s' is not a queue URL (http[s]://host/account/name)", url);
    const char *acct = slash + 1, *sl2 = strchr(acct, '/');
    size_t an = sl2 ? (size_t)(sl2 - acct) : 0;
    const char *nm = sl2 ? sl2 + 1 : "";
    size_t nn = strlen(nm);
    if (an == 0 || an >= SQS_MAX_ACCOUNT || strspn(acct, "0123456789") != an)
        return imgcls_fail(eb, IMGCLS_EINVAL, "sqs: '%.200s' has no account number as its first path segment", url);
    if (nn > 5 && strcmp(nm + nn - 5, ".fifo") == 0)
        return imgcls_fail(eb, IMGCLS_EUNSUPPORTED, "sqs: FIFO queues are not supported (%.200s)", url);
    for (size_t i = 0; i < nn; i++)
        if (!name_char(nm[i]))
            nn = 0;
    if (nn == 0 || nn >= SQS_MAX_NAME)
        return imgcls_fail(eb, IMGCLS_EINVAL, "sqs: the queue name in '%.200s' is not 1..80 of [A-Za-z0-9_-]", url);
    snprintf(origin, SQS_MAX_ORIGIN, "%.*s", (int)(slash - url), url);
    snprintf(account, SQS_MAX_ACCOUNT, "%.*s", (int)an, acct);
    snprintf(name, SQS_MAX_NAME, "%s", nm);
    region[0] = 0;
    size_t hn = (size_t)(slash - host);
    const char *suffix = ".amazonaws.com";
    if (hn > 4 + strlen(suffix) && strncmp(host, "sqs.", 4) == 0 &&
        strncmp(host + hn - strlen(suffix), suffix, strlen(suffix)) == 0 && hn - 4 - strlen(suffix) < 32)
        snprintf(region, 32, "%.*s", (int)(hn - 4 - strlen(suffix)), host + 4);
    return 0;
}

/* Sends one action with req (consumed) as its body. On success resp holds the answer (the caller frees
 * it with aws_response_free, always). On error code holds the AWS error code, q->base.err the detail. */
static int sqs_post(sqs_queue *q, const char *action, json_t *req, long timeout_ms, size_t max_response,
                    aws_response *resp, char code[AWS_MAX_CODE])
{
    char target[64];
    snprintf(target, sizeof target, "AmazonSQS.%s", action);
    memset(resp, 0, sizeof *resp);
    if (code)
        code[0] = 0;
    if (!req || json_object_set_new(req, "QueueUrl", json_string(q->url))) {
        json_decref(req);
        return imgcls_fail(&q->base.err, IMGCLS_EINVAL, "sqs %s: cannot build the request (text not UTF-8?)", action);
    }
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (!body)
        return imgcls_fail(&q->base.err, IMGCLS_ENOMEM, "sqs %s: cannot encode the request", action);
    int rc = aws_call(q->c, &(aws_request){.op = action, .method = "POST", .url = q->post,
                                           .content_type = "application/x-amz-json-1.0", .target = target,
                                           .body = body, .len = strlen(body), .timeout_ms = timeout_ms,
                                           .max_response = max_response},
                      resp);
    free(body);
    if (rc) {
        imgcls_fail(&q->base.err, rc, "%s: %s", q->name, aws_client_error(q->c));
        if (code)
            snprintf(code, AWS_MAX_CODE, "%s", resp->code);
    }
    return rc;
}

/* sqs_post, and *out (if wanted) is the parsed answer. */
static int sqs_call(sqs_queue *q, const char *action, json_t *req, long timeout_ms, size_t max_response,
                    json_t **out, char code[AWS_MAX_CODE])
{
    aws_response resp;
    if (out)
        *out = NULL;
    int rc = sqs_post(q, action, req, timeout_ms, max_response, &resp, code);
    if (!rc && out && !(*out = json_loadb((const char *)resp.body.data, resp.body.len, 0, NULL)))
        rc = imgcls_fail(&q->base.err, IMGCLS_ECORRUPT, "%s: %s: the answer is not JSON", q->name, action);
    aws_response_free(&resp);
    return rc;
}

static void sqs_close(queue *qb)
{
    sqs_queue *q = (sqs_queue *)qb;
    if (!q)
        return;
    aws_client_close(q->c);
    free(q);
}

static int sqs_open(const char *url, queue **out, imgcls_errbuf *eb)
{
    char origin[SQS_MAX_ORIGIN], region[32];
    sqs_queue *q = calloc(1, sizeof *q);
    if (!q)
        return imgcls_fail(eb, IMGCLS_ENOMEM, "sqs: out of memory");
    q->base.ops = url[4] == 's' ? &queue_sqs_https_ops : &queue_sqs_http_ops;
    int rc = queue_sqs_parse_url(url, origin, q->account, q->name, region, eb);
    if (!rc && strlen(url) >= sizeof q->url)
        rc = imgcls_fail(eb, IMGCLS_EINVAL, "sqs: queue URL too long");
    if (!rc)
        rc = aws_client_open(AWS_SQS, region[0] ? region : NULL, &q->c, eb);
    if (rc) {
        sqs_close(&q->base);
        return rc;
    }
    snprintf(q->url, sizeof q->url, "%s", url);
    /* An endpoint set in the environment wins (moto, a VPC endpoint); else the queue's own host. */
    snprintf(q->post, sizeof q->post, "%s/", aws_client_endpoint_overridden(q->c) ? aws_client_endpoint(q->c) : origin);
    json_t *ans = NULL;
    char code[AWS_MAX_CODE];
    /* GetQueueUrl takes the name, not the URL: sqs_call's QueueUrl is ignored by it. */
    rc = sqs_call(q, "GetQueueUrl", json_pack("{s:s, s:s}", "QueueName", q->name, "QueueOwnerAWSAccountId", q->account),
                  0, 0, &ans, code);
    if (rc == IMGCLS_ENOTFOUND || (rc && strstr(code, "NonExistentQueue")))
        rc = imgcls_fail(eb, IMGCLS_ENOTFOUND, "sqs: queue %s does not exist (the deployment creates it: "
                         "deploy/aws/template.yaml): %s", q->name, q->base.err.msg);
    else if (rc)
        rc = imgcls_fail(eb, rc, "sqs: %s", q->base.err.msg);
    json_decref(ans);
    if (rc) {
        sqs_close(&q->base);
        return rc;
    }
    *out = &q->base;
    return 0;
}

/* SQS carries text: UTF-8 of #x9 #xA #xD and #x20 up. Our messages are JSON, which is such text; the
 * check turns anything else into a clear EINVAL here instead of an InvalidMessageContents from SQS. */
static int body_check(sqs_queue *q, const void *body, size_t len)
{
    if (len > QUEUE_MAX_BODY)
        return imgcls_fail(&q->base.err, IMGCLS_ETOOBIG, "%s: message of %zu bytes is over %zu", q->name, len,
                           QUEUE_MAX_BODY);
    const unsigned char *p = body;
    for (size_t i = 0; i < len; i++)
        if (p[i] < 0x20 && p[i] != '\t' && p[i] != '\n' && p[i] != '\r')
            return imgcls_fail(&q->base.err, IMGCLS_EINVAL, "%s: SQS carries text; byte %zu is a control byte", q->name, i);
    if (!utf8_valid((const char *)body, len))
        return imgcls_fail(&q->base.err, IMGCLS_EINVAL, "%s: SQS carries text; the message is not UTF-8", q->name);
    return 0;
}

static int sqs_send(queue *qb, const void *body, size_t len)
{
    sqs_queue *q = (sqs_queue *)qb;
    int rc = body_check(q, body, len);
    if (rc)
        return rc;
    return sqs_call(q, "SendMessage", json_pack("{s:s%}", "MessageBody", (const char *)body, len), 0, 0, NULL, NULL);
}

static int parse_message(json_t *m, queue_msg *out, imgcls_errbuf *eb)
{
    const char *id = NULL, *receipt = NULL, *count = "1";
    json_t *body = json_object_get(m, "Body");
    if (json_unpack(m, "{s:s, s:s}", "MessageId", &id, "ReceiptHandle", &receipt) || !json_is_string(body))
        return imgcls_fail(eb, IMGCLS_ECORRUPT, "sqs: a received message lacks MessageId, ReceiptHandle or Body");
    json_unpack(json_object_get(m, "Attributes"), "{s:s}", "ApproximateReceiveCount", &count);
    size_t len = json_string_length(body);
    unsigned long rc_n = strtoul(count, NULL, 10);
    if (strlen(id) >= QUEUE_MAX_RECEIPT || strlen(receipt) >= QUEUE_MAX_RECEIPT || len > QUEUE_MAX_BODY ||
        strspn(count, "0123456789") != strlen(count) || strlen(count) > 6 || rc_n == 0)
        return imgcls_fail(eb, IMGCLS_ECORRUPT, "sqs: a received message is over a limit or malformed");
    memset(out, 0, sizeof *out);
    if (!(out->body = malloc(len + 1)))
        return imgcls_fail(eb, IMGCLS_ENOMEM, "sqs: out of memory");
    memcpy(out->body, json_string_value(body), len);
    out->body[len] = 0;
    out->len = len;
    snprintf(out->id, sizeof out->id, "%s", id);
    snprintf(out->receipt, sizeof out->receipt, "%s", receipt);
    out->receive_count = (unsigned)rc_n;
    return 0;
}

int queue_sqs_parse_receive(const char *json, size_t len, size_t max, queue_msg *out, size_t *n, imgcls_errbuf *eb)
{
    *n = 0;
    json_t *doc = json_loadb(json, len, 0, NULL), *msgs = json_object_get(doc, "Messages");
    int rc = 0;
    if (!json_is_object(doc) || (msgs && !json_is_array(msgs)))
        rc = imgcls_fail(eb, IMGCLS_ECORRUPT, "sqs: the ReceiveMessage answer is not the expected JSON");
    else if (json_array_size(msgs) > max)
        rc = imgcls_fail(eb, IMGCLS_ECORRUPT, "sqs: %zu messages received, %zu asked for", json_array_size(msgs), max);
    for (size_t i = 0; !rc && i < json_array_size(msgs); i++, (*n)++)
        rc = parse_message(json_array_get(msgs, i), &out[i], eb);
    if (rc) {
        for (size_t i = 0; i < *n; i++)
            queue_msg_free(&out[i]);
        *n = 0;
    }
    json_decref(doc);
    return rc;
}

static int sqs_receive(queue *qb, size_t max, int wait_ms, int visibility_s, queue_msg *out, size_t *n)
{
    sqs_queue *q = (sqs_queue *)qb;
    *n = 0;
    if (max < 1 || max > QUEUE_MAX_BATCH || wait_ms < 0 || visibility_s < 0 || visibility_s > SQS_MAX_VISIBILITY_S)
        return imgcls_fail(&q->base.err, IMGCLS_EINVAL, "%s: receive(max=%zu, wait_ms=%d, visibility_s=%d) out of range",
                           q->name, max, wait_ms, visibility_s);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        long left_ms = wait_ms - ((t.tv_sec - t0.tv_sec) * 1000L + (t.tv_nsec - t0.tv_nsec) / 1000000L);
        int wait_s = left_ms <= 0 ? 0 : (int)((left_ms + 999) / 1000);
        if (wait_s > SQS_MAX_WAIT_S)
            wait_s = SQS_MAX_WAIT_S;
        aws_response resp;
        int rc = sqs_post(q, "ReceiveMessage",
                          json_pack("{s:I, s:i, s:i, s:[s], s:[s]}", "MaxNumberOfMessages", (json_int_t)max,
                                    "WaitTimeSeconds", wait_s, "VisibilityTimeout", visibility_s,
                                    "MessageSystemAttributeNames", "ApproximateReceiveCount", "AttributeNames",
                                    "ApproximateReceiveCount"),
                          wait_s * 1000L + AWS_CALL_TIMEOUT_MS, SQS_MAX_RECEIVE_RESPONSE, &resp, NULL);
        if (!rc)
            rc = queue_sqs_parse_receive((const char *)resp.body.data, resp.body.len, max, out, n, &q->base.err);
        aws_response_free(&resp);
        if (rc || *n || left_ms - wait_s * 1000L <= 0)
            return rc;
    }
}

/* The receipt errors SQS gives for a delivery that is over: ENOTFOUND, as the contract says. */
static int receipt_rc(sqs_queue *q, int rc, const char *code)
{
    if (rc && (strcmp(code, "ReceiptHandleIsInvalid") == 0 || strcmp(code, "MessageNotInflight") == 0 ||
               strcmp(code, "InvalidReceiptHandle") == 0 ||
               strcmp(code, "AWS.SimpleQueueService.MessageNotInflight") == 0))
        return imgcls_fail(&q->base.err, IMGCLS_ENOTFOUND, "%s: %s", q->name, code);
    return rc;
}

static int sqs_delete(queue *qb, const char *receipt)
{
    sqs_queue *q = (sqs_queue *)qb;
    char code[AWS_MAX_CODE];
    int rc = sqs_call(q, "DeleteMessage", json_pack("{s:s}", "ReceiptHandle", receipt), 0, 0, NULL, code);
    return receipt_rc(q, rc, code);
}

static int sqs_change_visibility(queue *qb, const char *receipt, int visibility_s)
{
    sqs_queue *q = (sqs_queue *)qb;
    if (visibility_s < 0 || visibility_s > SQS_MAX_VISIBILITY_S)
        return imgcls_fail(&q->base.err, IMGCLS_EINVAL, "%s: visibility %d s out of range", q->name, visibility_s);
    char code[AWS_MAX_CODE];
    int rc = sqs_call(q, "ChangeMessageVisibility",
                      json_pack("{s:s, s:i}", "ReceiptHandle", receipt, "VisibilityTimeout", visibility_s), 0, 0,
                      NULL, code);
    return receipt_rc(q, rc, code);
}

static int attr_u64(json_t *attrs, const char *name, uint64_t *out)
{
    const char *s = json_string_value(json_object_get(attrs, name));
    if (!s || !*s || strlen(s) > 19 || strspn(s, "0123456789") != strlen(s))
        return IMGCLS_ECORRUPT;
    *out = strtoull(s, NULL, 10);
    return 0;
}

static int sqs_depth(queue *qb, queue_depth *out)
{
    sqs_queue *q = (sqs_queue *)qb;
    json_t *ans = NULL;
    int rc = sqs_call(q, "GetQueueAttributes",
                      json_pack("{s:[s,s]}", "AttributeNames", "ApproximateNumberOfMessages",
                                "ApproximateNumberOfMessagesNotVisible"),
                      0, 0, &ans, NULL);
    json_t *attrs = json_object_get(ans, "Attributes");
    if (!rc && (attr_u64(attrs, "ApproximateNumberOfMessages", &out->visible) ||
                attr_u64(attrs, "ApproximateNumberOfMessagesNotVisible", &out->in_flight)))
        rc = imgcls_fail(&q->base.err, IMGCLS_ECORRUPT, "%s: GetQueueAttributes answered without the counts", q->name);
    json_decref(ans);
    return rc;
}

/* A batch answer: {"Successful":[{"Id":"3",...}], "Failed":[{"Id":"1","Code":...,"SenderFault":bool}]}.
 * rcs[i] for the entry with Id i: 0, or the mapped failure. */
static void batch_results(sqs_queue *q, json_t *ans, size_t n, int *rcs)
{
    for (size_t i = 0; i < n; i++)
        rcs[i] = IMGCLS_EBACKEND; /* an entry the answer does not mention has not been done */
    size_t k;
    json_t *e;
    json_array_foreach(json_object_get(ans, "Successful"), k, e)
    {
        const char *id = json_string_value(json_object_get(e, "Id"));
        unsigned long i = id ? strtoul(id, NULL, 10) : n;
        if (i < n)
            rcs[i] = 0;
    }
    json_array_foreach(json_object_get(ans, "Failed"), k, e)
    {
        const char *id = json_string_value(json_object_get(e, "Id"));
        const char *code = json_string_value(json_object_get(e, "Code"));
        unsigned long i = id ? strtoul(id, NULL, 10) : n;
        if (i >= n)
            continue;
        rcs[i] = receipt_rc(q, IMGCLS_EBACKEND, code ? code : "");
        if (rcs[i] == IMGCLS_EBACKEND)
            imgcls_fail(&q->base.err, IMGCLS_EBACKEND, "%s: batch entry %lu failed: %.64s", q->name, i,
                        code ? code : "?");
    }
}

static int sqs_batch(sqs_queue *q, const char *action, json_t *entries, size_t n, int *rcs)
{
    json_t *ans = NULL;
    int rc = sqs_call(q, action, json_pack("{s:o}", "Entries", entries), 0, 0, &ans, NULL);
    if (rc) {
        for (size_t i = 0; i < n; i++)
            rcs[i] = rc;
    } else {
        batch_results(q, ans, n, rcs);
    }
    json_decref(ans);
    return rc;
}

static int sqs_delete_batch(queue *qb, const char *const *receipts, size_t n, int *rcs)
{
    sqs_queue *q = (sqs_queue *)qb;
    if (n == 0 || n > QUEUE_MAX_BATCH)
        return imgcls_fail(&q->base.err, IMGCLS_EINVAL, "%s: a batch is 1..%d entries", q->name, QUEUE_MAX_BATCH);
    json_t *entries = json_array();
    for (size_t i = 0; entries && i < n; i++) {
        char id[8];
        snprintf(id, sizeof id, "%zu", i);
        json_array_append_new(entries, json_pack("{s:s, s:s}", "Id", id, "ReceiptHandle", receipts[i]));
    }
    return sqs_batch(q, "DeleteMessageBatch", entries, n, rcs);
}

static int sqs_send_batch(queue *qb, const void *const *bodies, const size_t *lens, size_t n, int *rcs)
{
    sqs_queue *q = (sqs_queue *)qb;
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += lens[i];
    if (n == 0 || n > QUEUE_MAX_BATCH || total > QUEUE_MAX_BODY)
        return imgcls_fail(&q->base.err, total > QUEUE_MAX_BODY ? IMGCLS_ETOOBIG : IMGCLS_EINVAL,
                           "%s: a batch is 1..%d entries of %zu bytes in all", q->name, QUEUE_MAX_BATCH, QUEUE_MAX_BODY);
    for (size_t i = 0; i < n; i++) {
        int rc = body_check(q, bodies[i], lens[i]);
        if (rc) {
            for (size_t j = 0; j < n; j++)
                rcs[j] = rc;
            return rc;
        }
    }
    json_t *entries = json_array();
    for (size_t i = 0; entries && i < n; i++) {
        char id[8];
        snprintf(id, sizeof id, "%zu", i);
        json_array_append_new(entries, json_pack("{s:s, s:s%}", "Id", id, "MessageBody", (const char *)bodies[i], lens[i]));
    }
    return sqs_batch(q, "SendMessageBatch", entries, n, rcs);
}

#define SQS_OPS(scheme_name)                                                                                        \
    {                                                                                                               \
        .scheme = scheme_name, .open = sqs_open, .close = sqs_close, .send = sqs_send, .receive = sqs_receive,      \
        .delete_msg = sqs_delete, .change_visibility = sqs_change_visibility, .depth = sqs_depth,                    \
        .send_batch = sqs_send_batch, .delete_batch = sqs_delete_batch,                                             \
    }
/* One backend under the two schemes a queue URL has: https on AWS, http for moto on loopback. */
const struct queue_ops queue_sqs_https_ops = SQS_OPS("https");
const struct queue_ops queue_sqs_http_ops = SQS_OPS("http");
