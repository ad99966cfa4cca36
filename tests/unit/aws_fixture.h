/* For the contract suites' AWS rows: creates SQS queues and S3 buckets on moto through our own signed
 * client (aws_call), so that the suites stay C. The rows run only when IMGCLS_TEST_AWS=1, which
 * tests/aws/test_contract_aws.py sets after starting moto's server and pointing AWS_ENDPOINT_URL at it;
 * under a plain ctest they are skipped, and say so. */
#ifndef IMGCLS_TESTS_AWS_FIXTURE_H
#define IMGCLS_TESTS_AWS_FIXTURE_H

#include "aws/aws.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline bool aws_test_enabled(void)
{
    const char *e = getenv("IMGCLS_TEST_AWS");
    return e && strcmp(e, "1") == 0;
}

/* A name unique to this test: the random tail of its temporary directory, lowercased, then suffix. */
static inline void aws_test_name(const char *dir, const char *suffix, char *out, size_t size)
{
    const char *tail = strrchr(dir, '.') ? strrchr(dir, '.') + 1 : dir;
    if (strrchr(tail, '/'))
        tail = strrchr(tail, '/') + 1;
    size_t o = (size_t)snprintf(out, size, "t-");
    for (const char *p = tail; *p && o + 1 < size; p++)
        if ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'Z'))
            out[o++] = (char)(*p | 0x20); /* lowercase: bucket names must be */
    out[o] = 0;
    snprintf(out + o, size - o, "-%s", suffix);
}

/* One SQS action; the answer's field `field` (a string) into out, if asked. 0 or an error code. */
static inline int aws_test_sqs(const char *action, json_t *req, const char *field, char *out, size_t size)
{
    aws_client *c = NULL;
    char target[64];
    snprintf(target, sizeof target, "AmazonSQS.%s", action);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    int rc = aws_client_open(AWS_SQS, NULL, &c, NULL);
    aws_response r;
    memset(&r, 0, sizeof r);
    if (!rc)
        rc = aws_call(c, &(aws_request){.op = action, .method = "POST", .body = body, .len = strlen(body),
                                        .content_type = "application/x-amz-json-1.0", .target = target},
                      &r);
    if (rc)
        fprintf(stderr, "aws_test_sqs %s: %s\n", action, c ? aws_client_error(c) : "no client");
    json_t *ans = rc ? NULL : json_loadb((const char *)r.body.data, r.body.len, 0, NULL);
    const char *v = json_string_value(json_object_get(ans, field ? field : ""));
    if (!rc && field && v)
        snprintf(out, size, "%s", v);
    else if (!rc && field)
        rc = -1;
    json_decref(ans);
    aws_response_free(&r);
    aws_client_close(c);
    free(body);
    return rc;
}

/* Creates queue `name` (with `name`-dlq as its dead-letter queue after max_receives when that is > 0
 * and name is not itself a dead-letter queue) and writes its URL. */
static inline int aws_test_create_queue(const char *name, unsigned max_receives, char *url, size_t size)
{
    size_t n = strlen(name);
    bool is_dlq = n > 4 && strcmp(name + n - 4, "-dlq") == 0;
    if (is_dlq || max_receives == 0)
        return aws_test_sqs("CreateQueue", json_pack("{s:s}", "QueueName", name), "QueueUrl", url, size);
    char dlq[128], dlq_url[512], arn[512], redrive[640];
    snprintf(dlq, sizeof dlq, "%s-dlq", name);
    int rc = aws_test_sqs("CreateQueue", json_pack("{s:s}", "QueueName", dlq), "QueueUrl", dlq_url, sizeof dlq_url);
    json_t *attrs = NULL;
    if (!rc) {
        /* GetQueueAttributes answers {"Attributes":{"QueueArn":...}}: the ARN is one level down */
        aws_client *c = NULL;
        json_t *req = json_pack("{s:s, s:[s]}", "QueueUrl", dlq_url, "AttributeNames", "QueueArn");
        char *body = json_dumps(req, 0);
        json_decref(req);
        aws_response r;
        memset(&r, 0, sizeof r);
        rc = aws_client_open(AWS_SQS, NULL, &c, NULL);
        if (!rc)
            rc = aws_call(c, &(aws_request){.op = "GetQueueAttributes", .method = "POST", .body = body,
                                            .len = strlen(body), .content_type = "application/x-amz-json-1.0",
                                            .target = "AmazonSQS.GetQueueAttributes"},
                          &r);
        attrs = rc ? NULL : json_loadb((const char *)r.body.data, r.body.len, 0, NULL);
        const char *a = json_string_value(json_object_get(json_object_get(attrs, "Attributes"), "QueueArn"));
        if (!rc && !a)
            rc = -1;
        if (!rc)
            snprintf(arn, sizeof arn, "%s", a);
        aws_response_free(&r);
        aws_client_close(c);
        free(body);
        json_decref(attrs);
    }
    if (rc)
        return rc;
    snprintf(redrive, sizeof redrive, "{\"deadLetterTargetArn\":\"%s\",\"maxReceiveCount\":\"%u\"}", arn, max_receives);
    return aws_test_sqs("CreateQueue",
                        json_pack("{s:s, s:{s:s}}", "QueueName", name, "Attributes", "RedrivePolicy", redrive),
                        "QueueUrl", url, size);
}

/* Creates bucket name (CreateBucket in us-east-1 takes no body). */
static inline int aws_test_create_bucket(const char *name)
{
    aws_client *c = NULL;
    char url[512];
    int rc = aws_client_open(AWS_S3, NULL, &c, NULL);
    aws_response r;
    memset(&r, 0, sizeof r);
    if (!rc) {
        snprintf(url, sizeof url, "%s/%s", aws_client_endpoint(c), name);
        rc = aws_call(c, &(aws_request){.op = "CreateBucket", .method = "PUT", .url = url}, &r);
        if (rc)
            fprintf(stderr, "aws_test_create_bucket: %s\n", aws_client_error(c));
    }
    aws_response_free(&r);
    aws_client_close(c);
    return rc;
}

#endif
