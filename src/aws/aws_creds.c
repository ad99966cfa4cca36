/* The credentials chain and its parsers (contract in aws_creds.h). */
#include "aws/aws_creds.h"

#include "common/buf.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A credentials file larger than this is not one. */
#define AWS_MAX_CREDENTIALS_FILE (256 * 1024)

static int copy_field(char *dst, size_t dstsz, const char *src, const char *what, imgcls_errbuf *eb)
{
    size_t n = strlen(src);
    if (n == 0 || n >= dstsz)
        return imgcls_fail(eb, IMGCLS_EINVAL, "credentials: %s is empty or longer than %zu bytes", what,
                           dstsz - 1);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)src[i] <= ' ' || (unsigned char)src[i] >= 0x7f)
            return imgcls_fail(eb, IMGCLS_EINVAL, "credentials: %s holds a blank or non-ASCII byte", what);
    memcpy(dst, src, n + 1);
    return 0;
}

static int from_env(aws_creds *c, imgcls_errbuf *eb)
{
    const char *id = getenv("AWS_ACCESS_KEY_ID"), *secret = getenv("AWS_SECRET_ACCESS_KEY");
    const char *token = getenv("AWS_SESSION_TOKEN");
    if (!id || !*id || !secret || !*secret)
        return IMGCLS_ENOTFOUND;
    int rc = copy_field(c->access_key, sizeof c->access_key, id, "AWS_ACCESS_KEY_ID", eb);
    if (!rc)
        rc = copy_field(c->secret_key, sizeof c->secret_key, secret, "AWS_SECRET_ACCESS_KEY", eb);
    if (!rc && token && *token)
        rc = copy_field(c->token, sizeof c->token, token, "AWS_SESSION_TOKEN", eb);
    c->source = "env";
    return rc;
}

static int from_file(aws_creds *c, char *where, size_t wsz, imgcls_errbuf *eb)
{
    char path[1024];
    const char *file = getenv("AWS_SHARED_CREDENTIALS_FILE"), *home = getenv("HOME");
    int n;
    if (file && *file)
        n = snprintf(path, sizeof path, "%s", file);
    else if (home && *home)
        n = snprintf(path, sizeof path, "%s/.aws/credentials", home);
    else
        return IMGCLS_ENOTFOUND;
    if (n < 0 || (size_t)n >= sizeof path) /* a cut path would name another file */
        return imgcls_fail(eb, IMGCLS_EINVAL, "credentials: the credentials file's path is over %zu bytes",
                           sizeof path - 1);
    const char *profile = getenv("AWS_PROFILE");
    if (!profile || !*profile)
        profile = "default";
    snprintf(where, wsz, "%s [%s]", path, profile);
    imgcls_buf text;
    buf_init(&text, AWS_MAX_CREDENTIALS_FILE);
    int rc = buf_read_file(&text, path, AWS_MAX_CREDENTIALS_FILE);
    char id[AWS_MAX_KEY_ID], secret[AWS_MAX_SECRET], token[AWS_MAX_TOKEN] = "";
    if (rc == IMGCLS_ETOOBIG)
        rc = imgcls_fail(eb, IMGCLS_EINVAL, "credentials: %s is over %d bytes", path, AWS_MAX_CREDENTIALS_FILE);
    else if (rc)
        rc = IMGCLS_ENOTFOUND;
    const char *t = (const char *)text.data;
    if (!rc && (aws_ini_get(t, text.len, profile, "aws_access_key_id", id, sizeof id) != 1 ||
                aws_ini_get(t, text.len, profile, "aws_secret_access_key", secret, sizeof secret) != 1))
        rc = IMGCLS_ENOTFOUND;
    if (!rc && aws_ini_get(t, text.len, profile, "aws_session_token", token, sizeof token) < 0)
        rc = imgcls_fail(eb, IMGCLS_EINVAL, "credentials: %s: aws_session_token is too long", path);
    if (!rc)
        rc = copy_field(c->access_key, sizeof c->access_key, id, "aws_access_key_id", eb);
    if (!rc)
        rc = copy_field(c->secret_key, sizeof c->secret_key, secret, "aws_secret_access_key", eb);
    if (!rc && token[0])
        rc = copy_field(c->token, sizeof c->token, token, "aws_session_token", eb);
    c->source = "file";
    buf_free(&text);
    return rc;
}

static int from_imds(aws_creds *c, aws_imds *imds, imgcls_errbuf *eb)
{
    char role[256], path[320], doc[8192];
    int rc = aws_imds_get(imds, "meta-data/iam/security-credentials/", role, sizeof role, eb);
    if (rc)
        return rc;
    role[strcspn(role, "\r\n")] = 0; /* one role per instance profile: the first line */
    for (const char *p = role; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("+=,.@_-", *p))
            return imgcls_fail(eb, IMGCLS_ECORRUPT, "imds: '%s' is not a role name", role);
    snprintf(path, sizeof path, "meta-data/iam/security-credentials/%s", role);
    if ((rc = aws_imds_get(imds, path, doc, sizeof doc, eb)))
        return rc;
    rc = aws_creds_from_imds_json(doc, strlen(doc), c, eb);
    c->source = "imds";
    return rc;
}

int aws_creds_resolve(aws_creds *out, aws_imds *imds, long long now_s, imgcls_errbuf *eb)
{
    (void)now_s;
    memset(out, 0, sizeof *out);
    int rc = from_env(out, eb);
    if (rc != IMGCLS_ENOTFOUND)
        return rc;
    char where[1100] = "no shared credentials file";
    memset(out, 0, sizeof *out);
    if ((rc = from_file(out, where, sizeof where, eb)) != IMGCLS_ENOTFOUND)
        return rc;
    memset(out, 0, sizeof *out);
    if (!imds)
        return imgcls_fail(eb, IMGCLS_EINVAL,
                           "no AWS credentials: not in the environment (AWS_ACCESS_KEY_ID), not in %s, and IMDS "
                           "is switched off", where);
    imgcls_errbuf ie = {{0}};
    if ((rc = from_imds(out, imds, &ie)))
        return imgcls_fail(eb, IMGCLS_EINVAL,
                           "no AWS credentials: not in the environment (AWS_ACCESS_KEY_ID), not in %s, and none "
                           "from the instance role (%s)", where, ie.msg);
    return 0;
}

bool aws_creds_stale(const aws_creds *c, long long now_s)
{
    return c->expires_s != 0 && now_s >= c->expires_s - AWS_CREDS_REFRESH_S;
}

static const char *trim(const char *s, const char *end, const char **tend)
{
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        end--;
    *tend = end;
    return s;
}

int aws_ini_get(const char *text, size_t len, const char *section, const char *key, char *out, size_t outsz)
{
    const char *p = text, *end = text + len;
    bool in = false;
    size_t sn = strlen(section), kn = strlen(key);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *le = nl ? nl : end, *e;
        const char *s = trim(p, le, &e);
        p = nl ? nl + 1 : end;
        if (s == e || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            const char *name = s + 1, *ne = e - 1;
            in = e - s >= 2 && *ne == ']';
            if (in) {
                name = trim(name, ne, &ne);
                in = (size_t)(ne - name) == sn && memcmp(name, section, sn) == 0;
            }
            continue;
        }
        const char *eq = memchr(s, '=', (size_t)(e - s)), *ke, *ve;
        if (!in || !eq)
            continue;
        const char *k = trim(s, eq, &ke), *v = trim(eq + 1, e, &ve);
        if ((size_t)(ke - k) != kn || memcmp(k, key, kn) != 0)
            continue;
        if ((size_t)(ve - v) >= outsz)
            return IMGCLS_ETOOBIG;
        memcpy(out, v, (size_t)(ve - v));
        out[ve - v] = 0;
        return 1;
    }
    return 0;
}

int aws_parse_iso8601(const char *s, long long *out)
{
    struct tm tm = {0};
    char z = 0;
    int n = 0;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%c%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                     &tm.tm_min, &tm.tm_sec, &z, &n) != 7 || z != 'Z' || s[n] != 0 || tm.tm_year < 1970 ||
        tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
        tm.tm_min > 59 || tm.tm_sec > 60)
        return IMGCLS_EINVAL;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out = (long long)timegm(&tm);
    return 0;
}

int aws_creds_from_imds_json(const char *json, size_t len, aws_creds *out, imgcls_errbuf *eb)
{
    json_error_t je;
    json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    const char *code = NULL, *id = NULL, *secret = NULL, *token = NULL, *exp = NULL;
    int rc = 0;
    memset(out, 0, sizeof *out);
    if (!doc || json_unpack(doc, "{s:s, s:s, s:s, s:s, s:s}", "Code", &code, "AccessKeyId", &id, "SecretAccessKey",
                            &secret, "Token", &token, "Expiration", &exp) != 0)
        rc = imgcls_fail(eb, IMGCLS_ECORRUPT, "imds: the role credentials are not the expected JSON document");
    else if (strcmp(code, "Success") != 0)
        rc = imgcls_fail(eb, IMGCLS_ECORRUPT, "imds: role credentials say Code=%.64s", code);
    else if (aws_parse_iso8601(exp, &out->expires_s))
        rc = imgcls_fail(eb, IMGCLS_ECORRUPT, "imds: Expiration '%.64s' is not ISO 8601 UTC", exp);
    if (!rc)
        rc = copy_field(out->access_key, sizeof out->access_key, id, "AccessKeyId", eb);
    if (!rc)
        rc = copy_field(out->secret_key, sizeof out->secret_key, secret, "SecretAccessKey", eb);
    if (!rc)
        rc = copy_field(out->token, sizeof out->token, token, "Token", eb);
    if (rc == IMGCLS_EINVAL)
        rc = IMGCLS_ECORRUPT;
    json_decref(doc);
    return rc;
}
