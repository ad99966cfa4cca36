/* IMDSv2 client (contract in aws_creds.h). */
#include "aws/aws_creds.h"

#include "common/buf.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define IMDS_DEFAULT "http://169.254.169.254"
/* Session tokens are asked for 6 h and renewed after 5: a long-lived worker keeps one token. */
#define IMDS_TOKEN_TTL_S 21600
#define IMDS_TOKEN_RENEW_S 18000
#define IMDS_MAX_BODY 16384

struct aws_imds {
    char endpoint[256];
    char token[256];
    time_t token_at;
    CURL *easy;
};

int aws_imds_open(aws_imds **out, imgcls_errbuf *eb)
{
    *out = NULL;
    const char *off = getenv("AWS_EC2_METADATA_DISABLED");
    if (off && strcasecmp(off, "true") == 0)
        return 0;
    const char *ep = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    if (!ep || !*ep)
        ep = IMDS_DEFAULT;
    size_t n = strlen(ep);
    while (n && ep[n - 1] == '/')
        n--;
    if (n == 0 || n >= sizeof((aws_imds *)0)->endpoint || (strncmp(ep, "http://", 7) && strncmp(ep, "https://", 8)))
        return imgcls_fail(eb, IMGCLS_EINVAL, "AWS_EC2_METADATA_SERVICE_ENDPOINT '%s' is not an http(s) URL", ep);
    aws_imds *m = calloc(1, sizeof *m);
    if (!m || !(m->easy = curl_easy_init())) {
        free(m);
        return imgcls_fail(eb, IMGCLS_ENOMEM, "imds: out of memory");
    }
    memcpy(m->endpoint, ep, n);
    *out = m;
    return 0;
}

void aws_imds_close(aws_imds *m)
{
    if (!m)
        return;
    curl_easy_cleanup(m->easy);
    free(m);
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    return buf_append(ud, p, size * n) == 0 ? size * n : 0;
}

/* One exchange; 0 with *status set, or IMGCLS_EBACKEND/IMGCLS_ETOOBIG when no usable answer came. */
static int imds_exchange(aws_imds *m, const char *method, const char *path, struct curl_slist *hdrs,
                         imgcls_buf *body, long *status, imgcls_errbuf *eb)
{
    char url[512];
    snprintf(url, sizeof url, "%s/latest/%s", m->endpoint, path);
    CURL *e = m->easy;
    curl_easy_reset(e);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 2000L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*"); /* the link-local service is never behind a proxy */
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, body);
    if (strcmp(method, "PUT") == 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PUT");
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
    }
    CURLcode cc = curl_easy_perform(e);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
    if (cc == CURLE_WRITE_ERROR)
        return imgcls_fail(eb, IMGCLS_ETOOBIG, "imds: answer to %s is over %zu bytes", path, body->max);
    if (cc != CURLE_OK)
        return imgcls_fail(eb, IMGCLS_EBACKEND, "imds: %s %s: %s", method, url, curl_easy_strerror(cc));
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
    return 0;
}

static int imds_token(aws_imds *m, imgcls_errbuf *eb)
{
    time_t now = time(NULL);
    if (m->token[0] && now - m->token_at < IMDS_TOKEN_RENEW_S)
        return 0;
    char ttl[64];
    snprintf(ttl, sizeof ttl, "X-aws-ec2-metadata-token-ttl-seconds: %d", IMDS_TOKEN_TTL_S);
    struct curl_slist *h = curl_slist_append(NULL, ttl);
    imgcls_buf body;
    buf_init(&body, sizeof m->token - 1);
    long status = 0;
    int rc = h ? imds_exchange(m, "PUT", "api/token", h, &body, &status, eb) : IMGCLS_ENOMEM;
    curl_slist_free_all(h);
    if (rc == 0 && (status != 200 || body.len == 0 || strpbrk((char *)body.data, "\r\n")))
        rc = imgcls_fail(eb, IMGCLS_EBACKEND, "imds: no session token (HTTP %ld)", status);
    if (rc == 0) {
        memcpy(m->token, body.data, body.len + 1);
        m->token_at = now;
    }
    buf_free(&body);
    return rc;
}

int aws_imds_get(aws_imds *m, const char *path, char *out, size_t outsz, imgcls_errbuf *eb)
{
    if (!m)
        return imgcls_fail(eb, IMGCLS_EUNSUPPORTED, "imds: switched off (AWS_EC2_METADATA_DISABLED)");
    int rc = imds_token(m, eb);
    if (rc)
        return rc;
    char tok[sizeof m->token + 40];
    snprintf(tok, sizeof tok, "X-aws-ec2-metadata-token: %s", m->token);
    struct curl_slist *h = curl_slist_append(NULL, tok);
    imgcls_buf body;
    buf_init(&body, outsz > IMDS_MAX_BODY ? IMDS_MAX_BODY : outsz - 1);
    long status = 0;
    rc = h ? imds_exchange(m, "GET", path, h, &body, &status, eb) : IMGCLS_ENOMEM;
    curl_slist_free_all(h);
    if (rc == 0 && status == 401)
        m->token[0] = 0; /* expired: the next call asks for a new one */
    if (rc == 0 && status == 404)
        rc = imgcls_fail(eb, IMGCLS_ENOTFOUND, "imds: %s not found", path);
    else if (rc == 0 && status != 200)
        rc = imgcls_fail(eb, IMGCLS_EBACKEND, "imds: GET %s: HTTP %ld", path, status);
    if (rc == 0)
        memcpy(out, body.data ? (char *)body.data : "", body.len + 1);
    buf_free(&body);
    return rc;
}
