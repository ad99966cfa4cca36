/* Everything imgcls reads from AWS (src/aws, the sqs queue, the asg fleet). The first input byte picks
 * the parser the rest goes to (any byte modulo 5):
 *   0 aws_error_parse: an error body, JSON or XML     1 queue_sqs_parse_receive: a ReceiveMessage answer
 *   2 fleet_asg_parse_describe: an Auto Scaling answer 3 aws_creds_from_imds_json: IMDS's role document
 *   4 aws_ini_get: a shared credentials file, for a profile and key named on its first line
 * Invariants: the documented results, NUL-terminated outputs within their buffers, nothing left
 * allocated on error (LeakSanitizer), and nothing crashes. */
#include "fuzz_util.h"

#include "aws/aws_creds.h"
#include "aws/aws_error.h"
#include "common/error.h"
#include "fleet/fleet_asg.h"
#include "queue/queue_sqs.h"

#include <string.h>

static void fuzz_error(const char *p, size_t n)
{
    char code[64], msg[96];
    aws_error_parse(p, n, code, sizeof code, msg, sizeof msg);
    FUZZ_CHECK(strlen(code) < sizeof code && strlen(msg) < sizeof msg);
    for (const char *c = msg; *c; c++)
        FUZZ_CHECK((unsigned char)*c >= 0x20 && *c != '"');
    int rc = aws_error_map(400, code);
    FUZZ_CHECK(rc < 0);
}

static void fuzz_receive(const char *p, size_t n)
{
    queue_msg m[QUEUE_MAX_BATCH];
    size_t got = 99;
    int rc = queue_sqs_parse_receive(p, n, QUEUE_MAX_BATCH, m, &got, NULL);
    FUZZ_CHECK(rc == 0 || got == 0);
    FUZZ_CHECK(got <= QUEUE_MAX_BATCH);
    for (size_t i = 0; i < got; i++) {
        FUZZ_CHECK(m[i].body && m[i].body[m[i].len] == 0 && m[i].len <= QUEUE_MAX_BODY);
        FUZZ_CHECK(m[i].receive_count >= 1 && strlen(m[i].receipt) < QUEUE_MAX_RECEIPT);
        queue_msg_free(&m[i]);
    }
}

static void fuzz_describe(const char *p, size_t n)
{
    fleet_status st;
    int rc = fleet_asg_parse_describe(p, n, &st, NULL);
    FUZZ_CHECK(rc == 0 || rc == IMGCLS_ENOTFOUND || rc == IMGCLS_ECORRUPT);
    if (rc == 0)
        FUZZ_CHECK(st.busy <= st.running);
}

static void fuzz_imds(const char *p, size_t n)
{
    aws_creds c;
    int rc = aws_creds_from_imds_json(p, n, &c, NULL);
    FUZZ_CHECK(rc == 0 || rc == IMGCLS_ECORRUPT);
    if (rc == 0)
        FUZZ_CHECK(c.access_key[0] && c.secret_key[0] && c.token[0] && c.expires_s > 0);
}

static void fuzz_ini(const char *p, size_t n)
{
    const char *nl = memchr(p, '\n', n);
    char section[32] = "default", key[32] = "aws_access_key_id", out[64];
    if (nl) {
        size_t k = (size_t)(nl - p) < sizeof section - 1 ? (size_t)(nl - p) : sizeof section - 1;
        memcpy(section, p, k);
        section[k] = 0;
        n -= (size_t)(nl + 1 - p);
        p = nl + 1;
    }
    int rc = aws_ini_get(p, n, section, key, out, sizeof out);
    FUZZ_CHECK(rc == 0 || rc == 1 || rc == IMGCLS_ETOOBIG);
    if (rc == 1)
        FUZZ_CHECK(strlen(out) < sizeof out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 5) {
    case 0: fuzz_error(p, n); break;
    case 1: fuzz_receive(p, n); break;
    case 2: fuzz_describe(p, n); break;
    case 3: fuzz_imds(p, n); break;
    default: fuzz_ini(p, n); break;
    }
    return 0;
}
