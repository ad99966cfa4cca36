/* AWS credentials and the instance metadata service (private to src/aws/; the order is in aws.h).
 *
 * The parsers here read outside input (a credentials file, IMDS answers) and are pure, so that the
 * fuzz targets and the unit tests reach them without a network. */
#ifndef IMGCLS_AWS_AWS_CREDS_H
#define IMGCLS_AWS_AWS_CREDS_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>

#define AWS_MAX_KEY_ID 128
#define AWS_MAX_SECRET 128
#define AWS_MAX_TOKEN 4096 /* STS and instance-role tokens run to ~1.5 KB; room to grow */
/* Credentials with an expiry are renewed this long before it. */
#define AWS_CREDS_REFRESH_S 300

typedef struct aws_creds {
    char access_key[AWS_MAX_KEY_ID];
    char secret_key[AWS_MAX_SECRET];
    char token[AWS_MAX_TOKEN]; /* empty: none */
    long long expires_s;       /* Unix time; 0: does not expire */
    const char *source;        /* "env", "file", "imds" */
} aws_creds;

/* The instance metadata service, IMDSv2: a session token first (PUT), then GETs that carry it.
 * Endpoint AWS_EC2_METADATA_SERVICE_ENDPOINT, else http://169.254.169.254; off when
 * AWS_EC2_METADATA_DISABLED=true. Off EC2 nothing answers, so every call is short: 1 s to connect,
 * 2 s in all. */
typedef struct aws_imds aws_imds;

/* *out is NULL (and 0 returned) when IMDS is switched off. */
int aws_imds_open(aws_imds **out, imgcls_errbuf *eb);
void aws_imds_close(aws_imds *m);
/* GETs /latest/<path> into out (text, at most outsz - 1 bytes; longer: IMGCLS_ETOOBIG).
 * IMGCLS_ENOTFOUND for a 404, IMGCLS_EBACKEND when IMDS cannot be reached. */
int aws_imds_get(aws_imds *m, const char *path, char *out, size_t outsz, imgcls_errbuf *eb);

/* Resolves credentials along the chain of aws.h. imds may be NULL. IMGCLS_EINVAL with the places
 * looked at in eb when there are none. */
int aws_creds_resolve(aws_creds *out, aws_imds *imds, long long now_s, imgcls_errbuf *eb);
/* Whether c must be renewed at now_s. */
bool aws_creds_stale(const aws_creds *c, long long now_s);

/* Finds key in [section] of an INI text (the shared credentials file): "key = value" lines, '#' and ';'
 * comments, surrounding blanks trimmed. Returns 1 with out filled, 0 when absent, IMGCLS_ETOOBIG when
 * the value does not fit. */
int aws_ini_get(const char *text, size_t len, const char *section, const char *key, char *out, size_t outsz);

/* Reads IMDS's role-credentials document ({"Code":"Success","AccessKeyId":...,"Expiration":...}).
 * IMGCLS_ECORRUPT for anything else. */
int aws_creds_from_imds_json(const char *json, size_t len, aws_creds *out, imgcls_errbuf *eb);

/* "2026-12-02T18:04:05Z" -> Unix seconds; IMGCLS_EINVAL otherwise. */
int aws_parse_iso8601(const char *s, long long *out);

#endif
