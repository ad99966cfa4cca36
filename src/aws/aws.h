/* Signed AWS requests over libcurl (DESIGN.md §6): the one place that talks to AWS for the sqs queue,
 * the s3 store, the asg fleet and CloudWatch metrics.
 *
 *   aws_client *c;
 *   aws_client_open(AWS_SQS, region_hint, &c, &eb);     credentials, region and endpoint resolved here
 *   aws_call(c, &(aws_request){...}, &resp);            signed, retried, bounded, timed out
 *
 * Signing is libcurl's own SigV4 (CURLOPT_AWS_SIGV4); tests/aws/test_sigv4.py checks what it sends
 * against botocore's signer. We add what curl leaves to the caller: the session token header, and S3's
 * payload hash header.
 *
 * Where things come from, in order (the AWS SDKs' order, so that a deployment needs no imgcls-specific
 * setting):
 *   credentials  AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN); the shared credentials
 *                file (AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials) at profile AWS_PROFILE
 *                (else "default"); the EC2 instance role through IMDSv2 (aws_creds.h), refreshed five
 *                minutes before it expires.
 *   region       AWS_REGION, AWS_DEFAULT_REGION, the caller's hint (the region in an SQS URL), IMDS.
 *   endpoint     AWS_ENDPOINT_URL_<SERVICE> (SQS, S3, AUTO_SCALING, CLOUDWATCH), AWS_ENDPOINT_URL, else
 *                https://<service>.<region>.amazonaws.com. The tests point both at moto on 127.0.0.1.
 *
 * Failures are classified once, here, so that no caller retries something that can never succeed:
 *   temporary  connection failures, timeouts, HTTP 5xx, 429 and the throttling error codes: retried
 *              AWS_MAX_ATTEMPTS times in all (timeouts AWS_MAX_TIMEOUTS), with exponential backoff and
 *              full jitter; after that
 *              IMGCLS_EBACKEND (IMGCLS_EBUSY when throttled, IMGCLS_ETIMEDOUT when timed out).
 *   permanent  every other 4xx, returned at once: IMGCLS_ENOTFOUND for 404 and the not-found codes,
 *              IMGCLS_EINVAL for the validation codes, IMGCLS_ETOOBIG for 413 and too-large codes,
 *              IMGCLS_EBACKEND for the rest (access denied, bad signature, ...).
 * The error buffer then names the operation, the HTTP status, the AWS error code, its message and the
 * request id. A response is outside input: at most rq->max_response bytes (more: IMGCLS_ETOOBIG, not
 * retried), and every body is parsed with a real parser (jansson, libxml2) by the caller. */
#ifndef IMGCLS_AWS_AWS_H
#define IMGCLS_AWS_AWS_H

#include "common/buf.h"
#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>

typedef enum aws_service { AWS_SQS, AWS_S3, AWS_AUTOSCALING, AWS_CLOUDWATCH } aws_service;

/* Tries per call, the first included. A try that timed out is tried once more only: two timeouts in a
 * row mean a dead endpoint, and the caller (a worker, the web tier) must hear so within seconds. */
#define AWS_MAX_ATTEMPTS 5
#define AWS_MAX_TIMEOUTS 2
/* Default bounds of one try: connecting, and the whole exchange (a long poll adds its wait). */
#define AWS_CONNECT_TIMEOUT_MS 3000L
#define AWS_CALL_TIMEOUT_MS 10000L
#define AWS_MAX_REGION 32
#define AWS_MAX_URL 2048
#define AWS_MAX_CODE 128
#define AWS_MAX_REQUEST_ID 128

typedef struct aws_client aws_client;

/* libcurl's and libxml2's process-wide set-up: once, from main, before any thread starts. */
void aws_global_init(void);

/* Resolves credentials, region and endpoint for service. region_hint (may be NULL) is used when the
 * environment names no region. Returns 0, or IMGCLS_EINVAL (no credentials, no region, a malformed
 * endpoint), with eb filled. */
int aws_client_open(aws_service service, const char *region_hint, aws_client **out, imgcls_errbuf *eb);
void aws_client_close(aws_client *c); /* accepts NULL */

/* The region and the endpoint the client signs for and sends to ("https://sqs.us-east-1.amazonaws.com",
 * no trailing '/'), and whether the endpoint was overridden (then S3 uses path-style addressing). */
const char *aws_client_region(const aws_client *c);
const char *aws_client_endpoint(const aws_client *c);
bool aws_client_endpoint_overridden(const aws_client *c);

typedef struct aws_request {
    const char *op;              /* for the error buffer and logs: "SendMessage", "PutObject" */
    const char *method;          /* GET, PUT, POST, HEAD, DELETE */
    const char *url;             /* absolute; NULL: the client's endpoint + "/" */
    const char *content_type;    /* NULL: none */
    const char *target;          /* X-Amz-Target for the JSON protocols, or NULL */
    const char *header;          /* one more header line ("x-amz-copy-source: /b/k"), signed too, or NULL */
    const void *body;
    size_t len;
    size_t max_response;         /* 0: 1 MiB */
    long timeout_ms;             /* one try; 0: AWS_CALL_TIMEOUT_MS */
} aws_request;

typedef struct aws_response {
    long status;                     /* HTTP status of the last try; 0 when none arrived */
    imgcls_buf body;                 /* initialised by aws_call; free with aws_response_free */
    char code[AWS_MAX_CODE];         /* AWS error code ("NoSuchKey"), empty on success */
    char request_id[AWS_MAX_REQUEST_ID];
    unsigned attempts;
} aws_response;

/* Sends rq, retrying temporary failures. Returns 0 on a 2xx, else a classified error (above) with
 * the detail in the client's error buffer (aws_client_error). resp->body holds the last body either way;
 * the caller frees it with aws_response_free, also on error. */
int aws_call(aws_client *c, const aws_request *rq, aws_response *resp);
void aws_response_free(aws_response *resp);
const char *aws_client_error(const aws_client *c);
/* GETs /latest/<path> from the instance metadata service (aws_creds.h's aws_imds_get), e.g.
 * "meta-data/instance-id". IMGCLS_EUNSUPPORTED when IMDS is switched off. */
int aws_client_imds_get(aws_client *c, const char *path, char *out, size_t outsz, imgcls_errbuf *eb);

/* Percent-encodes s for a URI path (every byte but A-Za-z0-9-._~, and '/' unless encode_slash) or a
 * form value (encode_slash true), as SigV4 and S3 expect. Returns 0, or IMGCLS_ETOOBIG when out is short. */
int aws_uri_encode(const char *s, bool encode_slash, char *out, size_t outsz);

/* One data point for CloudWatch (aws_cloudwatch.c). */
typedef struct aws_metric {
    const char *name;
    double value;
    const char *unit; /* "Count", "None", "Seconds" */
} aws_metric;

/* PutMetricData in namespace ns, each metric with the one dimension dim_name=dim_value (both NULL: no
 * dimension). c must be an AWS_CLOUDWATCH client. */
int aws_cloudwatch_put(aws_client *c, const char *ns, const char *dim_name, const char *dim_value,
                       const aws_metric *metrics, size_t n, imgcls_errbuf *eb);

#endif
