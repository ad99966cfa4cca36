/* The S3 store backend (contract in store.h, requests in aws/aws.h): PutObject, GetObject, HeadObject,
 * DeleteObject, and HeadBucket at open. Keys go to S3 as they are (UTF-8, URI-encoded on the wire), so
 * the bucket layout of store.h holds unchanged: client names at the top, the system's objects under
 * ".imgcls/". Claim checks a crash leaves behind are expired by the bucket's lifecycle rule on
 * ".imgcls/claims/" (deploy/aws/template.yaml), so expire is NULL here. */
#include "store/store_s3.h"

#include "aws/aws.h"
#include "store/store.h"
#include "store/store_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct s3_store {
    store base;
    aws_client *c;
    char bucket[S3_MAX_BUCKET];
    char prefix[S3_MAX_PREFIX];
    bool virtual_host;
} s3_store;

static bool bucket_ok(const char *b, size_t n)
{
    if (n < 3 || n > 63 || b[0] == '.' || b[0] == '-' || b[n - 1] == '.' || b[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((b[i] >= 'a' && b[i] <= 'z') || (b[i] >= '0' && b[i] <= '9') || b[i] == '.' || b[i] == '-') ||
            (b[i] == '.' && i + 1 < n && b[i + 1] == '.'))
            return false;
    return true;
}

static bool prefix_ok(const char *p, size_t n)
{
    bool seg_start = true;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '/') {
            if (seg_start)
                return false;
            seg_start = true;
            continue;
        }
        if ((seg_start && ch == '.') || !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                                          (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
            return false;
        seg_start = false;
    }
    return n == 0 || !seg_start;
}

int store_s3_parse_url(const char *url, char bucket[S3_MAX_BUCKET], char prefix[S3_MAX_PREFIX], s3_addressing *addr,
                       imgcls_errbuf *eb)
{
    *addr = S3_AUTO;
    if (strncmp(url, "s3://", 5) != 0)
        return imgcls_fail(eb, IMGCLS_EINVAL, "s3: '%.200s' is not an s3:// URL", url);
    const char *b = url + 5, *q = strchr(b, '?');
    size_t rest = q ? (size_t)(q - b) : strlen(b), bn = strcspn(b, "/?");
    if (!bucket_ok(b, bn))
        return imgcls_fail(eb, IMGCLS_EINVAL, "s3: the bucket in '%.200s' is not an S3 bucket name (3..63 of a-z 0-9 . -)",
                           url);
    const char *p = b + bn + (b[bn] == '/');
    size_t pn = rest > bn ? rest - bn - 1 : 0;
    if (pn >= S3_MAX_PREFIX || !prefix_ok(p, pn))
        return imgcls_fail(eb, IMGCLS_EINVAL, "s3: the prefix in '%.200s' is not segments of [A-Za-z0-9._-]", url);
    if (q && strcmp(q, "?addressing=path") == 0)
        *addr = S3_PATH;
    else if (q && strcmp(q, "?addressing=virtual") == 0)
        *addr = S3_VIRTUAL;
    else if (q)
        return imgcls_fail(eb, IMGCLS_EINVAL, "s3: unknown query '%.100s' (only addressing=path|virtual)", q);
    snprintf(bucket, S3_MAX_BUCKET, "%.*s", (int)bn, b);
    snprintf(prefix, S3_MAX_PREFIX, "%.*s", (int)pn, p);
    return 0;
}

int store_s3_object_url(const char *endpoint, const char *bucket, const char *prefix, const char *key, bool virtual_host,
                        char *out, size_t outsz)
{
    char full[STORE_MAX_KEY + S3_MAX_PREFIX + 2], enc[3 * sizeof full];
    int n = snprintf(full, sizeof full, "%s%s%s", prefix, *prefix && key ? "/" : "", key ? key : "");
    if (n < 0 || (size_t)n >= sizeof full || aws_uri_encode(full, false, enc, sizeof enc))
        return IMGCLS_ETOOBIG;
    const char *host = strstr(endpoint, "://");
    host = host ? host + 3 : endpoint;
    if (virtual_host)
        n = snprintf(out, outsz, "%.*s%s.%s/%s", (int)(host - endpoint), endpoint, bucket, host, enc);
    else
        n = snprintf(out, outsz, "%s/%s%s%s", endpoint, bucket, key || *prefix ? "/" : "", enc);
    return n < 0 || (size_t)n >= outsz ? IMGCLS_ETOOBIG : 0;
}

/* One request on object key (NULL: the bucket). resp is the caller's to free. */
static int s3_request_h(s3_store *s, const char *op, const char *method, const char *key, const void *body, size_t len,
                        size_t max_response, const char *header, aws_response *resp)
{
    char url[AWS_MAX_URL];
    memset(resp, 0, sizeof *resp);
    if (key && !store_key_valid(key))
        return imgcls_fail(&s->base.err, IMGCLS_EINVAL, "s3: '%.100s' is not a valid key", key);
    if (store_s3_object_url(aws_client_endpoint(s->c), s->bucket, s->prefix, key, s->virtual_host, url, sizeof url))
        return imgcls_fail(&s->base.err, IMGCLS_EINVAL, "s3: key too long for a URL");
    int rc = aws_call(s->c, &(aws_request){.op = op, .method = method, .url = url, .body = body, .len = len,
                                           .content_type = body ? "application/octet-stream" : NULL, .header = header,
                                           .max_response = max_response ? max_response : 64 * 1024,
                                           /* a 20 MB image on a slow link: a minute, not 15 s */
                                           .timeout_ms = 60000L},
                      resp);
    if (rc)
        imgcls_fail(&s->base.err, rc, "s3://%s: %s", s->bucket, aws_client_error(s->c));
    return rc;
}

static int s3_request(s3_store *s, const char *op, const char *method, const char *key, const void *body, size_t len,
                      size_t max_response, aws_response *resp)
{
    return s3_request_h(s, op, method, key, body, len, max_response, NULL, resp);
}

static void s3_close(store *sb)
{
    s3_store *s = (s3_store *)sb;
    if (!s)
        return;
    aws_client_close(s->c);
    free(s);
}

static int s3_open(const char *url, store **out, imgcls_errbuf *eb)
{
    s3_store *s = calloc(1, sizeof *s);
    if (!s)
        return imgcls_fail(eb, IMGCLS_ENOMEM, "s3: out of memory");
    s->base.ops = &store_s3_ops;
    s3_addressing addr;
    int rc = store_s3_parse_url(url, s->bucket, s->prefix, &addr, eb);
    if (!rc)
        rc = aws_client_open(AWS_S3, NULL, &s->c, eb);
    if (rc) {
        s3_close(&s->base);
        return rc;
    }
    /* Virtual-hosted on AWS (path-style is being retired there); path-style for an endpoint of our own
     * choosing (moto on 127.0.0.1 has no per-bucket host names) and for dotted names (TLS wildcard). */
    s->virtual_host = addr == S3_VIRTUAL ||
                      (addr == S3_AUTO && !aws_client_endpoint_overridden(s->c) && !strchr(s->bucket, '.'));
    aws_response resp;
    rc = s3_request(s, "HeadBucket", "HEAD", NULL, NULL, 0, 0, &resp);
    if (rc == IMGCLS_ENOTFOUND)
        rc = imgcls_fail(eb, rc, "s3: bucket %s does not exist (the deployment creates it: deploy/aws/template.yaml)",
                         s->bucket);
    else if (rc)
        rc = imgcls_fail(eb, rc, "%s", s->base.err.msg);
    aws_response_free(&resp);
    if (rc) {
        s3_close(&s->base);
        return rc;
    }
    *out = &s->base;
    return 0;
}

static int s3_put(store *sb, const char *key, const void *data, size_t len)
{
    aws_response resp;
    /* S3 replaces an object atomically: a reader sees the old or the new one, as the contract asks. */
    int rc = s3_request((s3_store *)sb, "PutObject", "PUT", key, data ? data : "", len, 0, &resp);
    aws_response_free(&resp);
    return rc;
}

static int s3_get(store *sb, const char *key, imgcls_buf *out)
{
    aws_response resp;
    int rc = s3_request((s3_store *)sb, "GetObject", "GET", key, NULL, 0, out->max ? out->max : 1, &resp);
    if (!rc && resp.body.len > out->max)
        rc = imgcls_fail(&sb->err, IMGCLS_ETOOBIG, "s3: %s is over %zu bytes", key, out->max);
    if (!rc) {
        buf_free(out);
        size_t max = out->max;
        *out = resp.body; /* moves the buffer: no copy of a large image */
        out->max = max;
        buf_init(&resp.body, 0);
    }
    aws_response_free(&resp);
    return rc;
}

static int s3_exists(store *sb, const char *key, bool *exists)
{
    aws_response resp;
    int rc = s3_request((s3_store *)sb, "HeadObject", "HEAD", key, NULL, 0, 0, &resp);
    *exists = rc == 0;
    if (rc == IMGCLS_ENOTFOUND)
        rc = 0;
    aws_response_free(&resp);
    return rc;
}

static int s3_del(store *sb, const char *key)
{
    aws_response resp;
    int rc = s3_request((s3_store *)sb, "DeleteObject", "DELETE", key, NULL, 0, 0, &resp);
    if (rc == IMGCLS_ENOTFOUND)
        rc = 0; /* S3 says 204 for an absent key; a stand-in that says 404 means the same */
    aws_response_free(&resp);
    return rc;
}

/* CopyObject: S3 copies server-side, so the web tier uploads a large image once, not twice. */
static int s3_link(store *sb, const char *src, const char *dst)
{
    s3_store *s = (s3_store *)sb;
    char full[STORE_MAX_KEY + S3_MAX_PREFIX + 2], enc[3 * sizeof full], hdr[sizeof enc + S3_MAX_BUCKET + 32];
    int n = snprintf(full, sizeof full, "%s%s%s", s->prefix, s->prefix[0] ? "/" : "", src);
    if (!store_key_valid(src) || n < 0 || (size_t)n >= sizeof full || aws_uri_encode(full, false, enc, sizeof enc))
        return imgcls_fail(&sb->err, IMGCLS_EINVAL, "s3: '%.100s' is not a valid key", src);
    snprintf(hdr, sizeof hdr, "x-amz-copy-source: /%s/%s", s->bucket, enc);
    aws_response resp;
    int rc = s3_request_h(s, "CopyObject", "PUT", dst, NULL, 0, 0, hdr, &resp);
    /* S3 may fail a copy after it has answered 200: the error is then the body */
    if (!rc && resp.body.data && strstr((const char *)resp.body.data, "<Error>"))
        rc = imgcls_fail(&sb->err, IMGCLS_EBACKEND, "s3://%s: CopyObject %s -> %s failed inside a 200", s->bucket, src,
                         dst);
    aws_response_free(&resp);
    return rc;
}

const struct store_ops store_s3_ops = {
    .scheme = "s3",
    .open = s3_open,
    .close = s3_close,
    .put = s3_put,
    .get = s3_get,
    .exists = s3_exists,
    .del = s3_del,
    .expire = NULL, /* the lifecycle rule */
    .link = s3_link,
};
