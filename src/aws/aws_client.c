/* Signed AWS requests over libcurl (contract in aws.h). */
#include "aws/aws.h"

#include "aws/aws_creds.h"
#include "aws/aws_error.h"

#include <ctype.h>
#include <curl/curl.h>
#include <libxml/parser.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define AWS_DEFAULT_MAX_RESPONSE ((size_t)1 << 20)
/* Backoff before try k (k >= 2): uniform in [0, min(cap, base * 2^(k-2))] ("full jitter"). Throttling
 * starts higher: backing off is what the service asks for. */
#define AWS_BACKOFF_BASE_MS 50.0
#define AWS_BACKOFF_THROTTLED_MS 250.0
#define AWS_BACKOFF_CAP_MS 4000.0

typedef struct service_info {
    const char *signing;  /* SigV4 service name */
    const char *host;     /* endpoint host prefix */
    const char *env;      /* AWS_ENDPOINT_URL_<env> */
} service_info;

static const service_info SERVICES[] = {
    [AWS_SQS] = {"sqs", "sqs", "SQS"},
    [AWS_S3] = {"s3", "s3", "S3"},
    [AWS_AUTOSCALING] = {"autoscaling", "autoscaling", "AUTO_SCALING"},
    [AWS_CLOUDWATCH] = {"monitoring", "monitoring", "CLOUDWATCH"},
};

struct aws_client {
    aws_service service;
    char region[AWS_MAX_REGION];
    char endpoint[AWS_MAX_URL];
    bool overridden;
    aws_creds creds;
    aws_imds *imds;
    CURL *easy;
    unsigned long long rng;
    imgcls_errbuf err;
};

void aws_global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    xmlInitParser();
}

static bool region_ok(const char *r)
{
    size_t n = strlen(r);
    if (n == 0 || n >= AWS_MAX_REGION)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!islower((unsigned char)r[i]) && !isdigit((unsigned char)r[i]) && r[i] != '-')
            return false;
    return true;
}

static int resolve_region(aws_client *c, const char *hint, imgcls_errbuf *eb)
{
    const char *r = getenv("AWS_REGION");
    if (!r || !*r)
        r = getenv("AWS_DEFAULT_REGION");
    if (!r || !*r)
        r = hint;
    char imds[AWS_MAX_REGION + 8] = "";
    imgcls_errbuf ie = {{0}};
    if ((!r || !*r) && c->imds && aws_imds_get(c->imds, "meta-data/placement/region", imds, sizeof imds, &ie) == 0)
        r = imds;
    if (!r || !*r)
        return imgcls_fail(eb, IMGCLS_EINVAL, "no AWS region: set AWS_REGION%s%s", ie.msg[0] ? "; IMDS: " : "",
                           ie.msg);
    if (!region_ok(r))
        return imgcls_fail(eb, IMGCLS_EINVAL, "AWS region '%.40s' is not a region name", r);
    memcpy(c->region, r, strlen(r) + 1); /* region_ok: shorter than AWS_MAX_REGION */
    return 0;
}

static int resolve_endpoint(aws_client *c, imgcls_errbuf *eb)
{
    const service_info *si = &SERVICES[c->service];
    char var[64];
    snprintf(var, sizeof var, "AWS_ENDPOINT_URL_%s", si->env);
    const char *ep = getenv(var);
    if (!ep || !*ep)
        ep = getenv("AWS_ENDPOINT_URL");
    c->overridden = ep && *ep;
    if (!c->overridden) {
        snprintf(c->endpoint, sizeof c->endpoint, "https://%s.%s.amazonaws.com", si->host, c->region);
        return 0;
    }
    size_t n = strlen(ep);
    while (n && ep[n - 1] == '/')
        n--;
    if ((strncmp(ep, "http://", 7) && strncmp(ep, "https://", 8)) || n >= sizeof c->endpoint ||
        strpbrk(ep, " \"<>\\^`{|}?#"))
        return imgcls_fail(eb, IMGCLS_EINVAL, "%s '%.200s' is not an http(s) URL", getenv(var) ? var : "AWS_ENDPOINT_URL",
                           ep);
    memcpy(c->endpoint, ep, n);
    c->endpoint[n] = 0;
    return 0;
}

int aws_client_open(aws_service service, const char *region_hint, aws_client **out, imgcls_errbuf *eb)
{
    *out = NULL;
    aws_client *c = calloc(1, sizeof *c);
    if (!c)
        return imgcls_fail(eb, IMGCLS_ENOMEM, "aws: out of memory");
    c->service = service;
    c->rng = (unsigned long long)time(NULL) ^ ((unsigned long long)getpid() << 32) ^ (unsigned long long)(size_t)c;
    int rc = aws_imds_open(&c->imds, eb);
    if (!rc)
        rc = resolve_region(c, region_hint, eb);
    if (!rc)
        rc = resolve_endpoint(c, eb);
    if (!rc)
        rc = aws_creds_resolve(&c->creds, c->imds, (long long)time(NULL), eb);
    if (!rc && !(c->easy = curl_easy_init()))
        rc = imgcls_fail(eb, IMGCLS_ENOMEM, "aws: curl_easy_init failed");
    if (rc) {
        aws_client_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

void aws_client_close(aws_client *c)
{
    if (!c)
        return;
    curl_easy_cleanup(c->easy);
    aws_imds_close(c->imds);
    memset(&c->creds, 0, sizeof c->creds); /* secrets do not outlive the handle in freed memory */
    free(c);
}

const char *aws_client_region(const aws_client *c)
{
    return c->region;
}
const char *aws_client_endpoint(const aws_client *c)
{
    return c->endpoint;
}
bool aws_client_endpoint_overridden(const aws_client *c)
{
    return c->overridden;
}
const char *aws_client_error(const aws_client *c)
{
    return c->err.msg;
}

int aws_client_imds_get(aws_client *c, const char *path, char *out, size_t outsz, imgcls_errbuf *eb)
{
    return aws_imds_get(c->imds, path, out, outsz, eb);
}

void aws_response_free(aws_response *resp)
{
    if (resp)
        buf_free(&resp->body);
}

int aws_uri_encode(const char *s, bool encode_slash, char *out, size_t outsz)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        bool keep = isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~' || (*p == '/' && !encode_slash);
        if (o + (keep ? 1 : 3) >= outsz)
            return IMGCLS_ETOOBIG;
        if (keep) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    if (o >= outsz)
        return IMGCLS_ETOOBIG;
    out[o] = 0;
    return 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    return buf_append(ud, p, size * n) == 0 ? size * n : 0;
}

/* Keeps the request id and, from the query-compatible JSON protocol, the classic error code. */
static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    aws_response *r = ud;
    size_t len = size * n;
    static const char *const ids[] = {"x-amzn-requestid:", "x-amz-request-id:"};
    for (size_t i = 0; i < 2; i++) {
        size_t k = strlen(ids[i]);
        if (len > k && strncasecmp(p, ids[i], k) == 0) {
            size_t s = k, e = len;
            while (s < e && p[s] == ' ')
                s++;
            while (e > s && (p[e - 1] == '\r' || p[e - 1] == '\n' || p[e - 1] == ' '))
                e--;
            snprintf(r->request_id, sizeof r->request_id, "%.*s", (int)(e - s), p + s);
        }
    }
    return len;
}

static void sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256(data, len, d);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* payload_hash: S3's x-amz-content-sha256 value, or NULL for the other services. */
static struct curl_slist *request_headers(const aws_client *c, const aws_request *rq, const char *payload_hash)
{
    char line[AWS_MAX_TOKEN + 64];
    /* Every header given here is signed by curl, an emptied one too: so no "Expect:" to suppress
     * 100-continue (curl signed it but did not send it, and AWS refuses such a signature;
     * tests/aws/test_aws_client.py checks every request with botocore's signer). */
    struct curl_slist *h = curl_slist_append(NULL, "Accept: */*");
    if (h && rq->content_type) {
        snprintf(line, sizeof line, "Content-Type: %s", rq->content_type);
        h = curl_slist_append(h, line);
    }
    if (h && rq->target) {
        snprintf(line, sizeof line, "X-Amz-Target: %s", rq->target);
        h = curl_slist_append(h, line);
    }
    if (h && rq->header)
        h = curl_slist_append(h, rq->header);
    if (h && c->creds.token[0]) {
        snprintf(line, sizeof line, "X-Amz-Security-Token: %s", c->creds.token);
        h = curl_slist_append(h, line);
    }
    if (h && payload_hash) {
        snprintf(line, sizeof line, "x-amz-content-sha256: %s", payload_hash);
        h = curl_slist_append(h, line);
    }
    return h;
}

/* One try. Returns the curl result; resp->status and body are filled. */
static CURLcode one_try(aws_client *c, const aws_request *rq, struct curl_slist *hdrs, aws_response *resp)
{
    CURL *e = c->easy;
    char sigv4[128], url[AWS_MAX_URL + 2];
    curl_easy_reset(e);
    snprintf(sigv4, sizeof sigv4, "aws:amz:%s:%s", c->region, SERVICES[c->service].signing);
    snprintf(url, sizeof url, "%s", rq->url ? rq->url : c->endpoint);
    if (!rq->url)
        snprintf(url, sizeof url, "%s/", c->endpoint);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_AWS_SIGV4, sigv4);
    curl_easy_setopt(e, CURLOPT_USERNAME, c->creds.access_key);
    curl_easy_setopt(e, CURLOPT_PASSWORD, c->creds.secret_key);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, AWS_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, rq->timeout_ms > 0 ? rq->timeout_ms : AWS_CALL_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &resp->body);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, resp);
    if (strcmp(rq->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(rq->method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(rq->method, "DELETE") == 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
    } else { /* POST, PUT: the body from memory, which is also what curl hashes for the signature */
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->len);
        if (strcmp(rq->method, "POST") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, rq->method);
    }
    buf_reset(&resp->body);
    resp->status = 0;
    resp->request_id[0] = 0;
    CURLcode cc = curl_easy_perform(e);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &resp->status);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
    return cc;
}

static bool curl_transient(CURLcode cc)
{
    return cc == CURLE_COULDNT_CONNECT || cc == CURLE_OPERATION_TIMEDOUT || cc == CURLE_SEND_ERROR ||
           cc == CURLE_RECV_ERROR || cc == CURLE_GOT_NOTHING || cc == CURLE_PARTIAL_FILE ||
           cc == CURLE_COULDNT_RESOLVE_HOST || cc == CURLE_SSL_CONNECT_ERROR || cc == CURLE_HTTP2 ||
           cc == CURLE_HTTP2_STREAM;
}

static void backoff(aws_client *c, unsigned attempt, bool throttled)
{
    double cap = (throttled ? AWS_BACKOFF_THROTTLED_MS : AWS_BACKOFF_BASE_MS) * (double)(1u << (attempt - 1));
    if (cap > AWS_BACKOFF_CAP_MS)
        cap = AWS_BACKOFF_CAP_MS;
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    double ms = cap * (double)(c->rng >> 11) / (double)(1ull << 53);
    struct timespec ts = {(time_t)(ms / 1000), (long)((ms - (double)(long)(ms / 1000) * 1000) * 1e6)};
    nanosleep(&ts, NULL);
}

/* Renews expiring instance-role credentials; on failure the old ones are kept until AWS refuses them. */
static void refresh_creds(aws_client *c)
{
    time_t now = time(NULL);
    if (!aws_creds_stale(&c->creds, (long long)now))
        return;
    aws_creds fresh;
    imgcls_errbuf eb = {{0}};
    if (aws_creds_resolve(&fresh, c->imds, (long long)now, &eb) == 0)
        c->creds = fresh;
    memset(&fresh, 0, sizeof fresh);
}

int aws_call(aws_client *c, const aws_request *rq, aws_response *resp)
{
    memset(resp, 0, sizeof *resp);
    buf_init(&resp->body, rq->max_response ? rq->max_response : AWS_DEFAULT_MAX_RESPONSE);
    char msg[160] = "";
    CURLcode cc = CURLE_OK;
    int rc = 0;
    unsigned timeouts = 0;
    char hash[65] = "";
    if (c->service == AWS_S3) /* once, not once a try: a large image is hashed once */
        sha256_hex(rq->body ? rq->body : "", rq->len, hash);
    for (unsigned attempt = 1; attempt <= AWS_MAX_ATTEMPTS; attempt++) {
        refresh_creds(c);
        struct curl_slist *hdrs = request_headers(c, rq, c->service == AWS_S3 ? hash : NULL);
        if (!hdrs)
            return imgcls_fail(&c->err, IMGCLS_ENOMEM, "%s: out of memory", rq->op);
        cc = one_try(c, rq, hdrs, resp);
        curl_slist_free_all(hdrs);
        resp->attempts = attempt;
        resp->code[0] = msg[0] = 0;
        if (cc == CURLE_WRITE_ERROR)
            return imgcls_fail(&c->err, IMGCLS_ETOOBIG, "%s: the answer is over %zu bytes", rq->op, resp->body.max);
        if (cc == CURLE_OK && resp->status >= 200 && resp->status < 300)
            return 0;
        bool retry;
        if (cc != CURLE_OK) {
            timeouts += cc == CURLE_OPERATION_TIMEDOUT;
            retry = curl_transient(cc) && timeouts < AWS_MAX_TIMEOUTS;
            rc = cc == CURLE_OPERATION_TIMEDOUT ? IMGCLS_ETIMEDOUT : IMGCLS_EBACKEND;
        } else {
            aws_error_parse((const char *)resp->body.data, resp->body.len, resp->code, sizeof resp->code, msg,
                            sizeof msg);
            if (strcmp(resp->code, "ExpiredToken") == 0 && c->creds.expires_s)
                c->creds.expires_s = 1; /* make refresh_creds fetch new ones, then try again */
            retry = aws_error_retryable(resp->status, resp->code) || strcmp(resp->code, "ExpiredToken") == 0;
            rc = aws_error_map(resp->status, resp->code);
        }
        if (!retry || attempt == AWS_MAX_ATTEMPTS)
            break;
        backoff(c, attempt, aws_error_throttled(resp->code));
    }
    if (cc != CURLE_OK)
        return imgcls_fail(&c->err, rc, "%s %s: %s after %u tries", rq->op, rq->url ? rq->url : c->endpoint,
                           curl_easy_strerror(cc), resp->attempts);
    return imgcls_fail(&c->err, rc, "%s: HTTP %ld %s%s%s request_id=%s tries=%u", rq->op, resp->status,
                       resp->code[0] ? resp->code : "(no error code)", msg[0] ? ": " : "", msg,
                       resp->request_id[0] ? resp->request_id : "-", resp->attempts);
}
