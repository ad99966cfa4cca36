/* aws_tool: drives the AWS backends through their real ports, for tests/aws (signatures, credentials,
 * retries, key encoding) against moto or a capturing stand-in.
 *
 *   aws_tool store-put URL KEY        standard input -> object KEY of bucket URL
 *   aws_tool store-get URL KEY        object -> standard output
 *   aws_tool store-link URL SRC DST   the backend's link op (S3: CopyObject), no fallback
 *   aws_tool queue-send URL           standard input -> one message
 *   aws_tool fleet-describe URL       prints "running starting stopping busy desired"
 *   aws_tool fleet-set URL N          SetDesiredCapacity
 *   aws_tool fleet-report URL busy|idle
 *   aws_tool metric NAMESPACE NAME VALUE
 * Exit status 0, or 1 with "ENAME: detail" on standard error. */
#include "aws/aws.h"
#include "common/buf.h"
#include "fleet/fleet.h"
#include "queue/queue.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int read_stdin(imgcls_buf *b)
{
    unsigned char chunk[4096];
    size_t n;
    int rc = 0;
    buf_init(b, (size_t)64 << 20);
    while (!rc && (n = fread(chunk, 1, sizeof chunk, stdin)) > 0)
        rc = buf_append(b, chunk, n);
    return rc;
}

static int fail(int rc, const char *detail)
{
    fprintf(stderr, "%s: %s\n", imgcls_err_name(rc), detail);
    return 1;
}

static int store_cmd(const char *cmd, const char *url, const char *key, const char *dst)
{
    imgcls_errbuf eb = {{0}};
    store *s = NULL;
    int rc = store_open(url, &s, &eb);
    if (rc)
        return fail(rc, eb.msg);
    imgcls_buf b;
    buf_init(&b, 0);
    if (strcmp(cmd, "store-link") == 0) {
        rc = s->ops->link ? s->ops->link(s, key, dst) : IMGCLS_EUNSUPPORTED;
    } else if (strcmp(cmd, "store-put") == 0) {
        rc = read_stdin(&b);
        if (!rc)
            rc = store_put(s, key, b.data ? b.data : (const unsigned char *)"", b.len);
    } else {
        buf_init(&b, (size_t)64 << 20);
        rc = store_get(s, key, &b);
        if (!rc)
            fwrite(b.data, 1, b.len, stdout);
    }
    int status = rc ? fail(rc, s->err.msg) : 0;
    buf_free(&b);
    store_close(s);
    return status;
}

static int queue_cmd(const char *url)
{
    imgcls_errbuf eb = {{0}};
    queue *q = NULL;
    int rc = queue_open(url, &q, &eb);
    if (rc)
        return fail(rc, eb.msg);
    imgcls_buf b;
    rc = read_stdin(&b);
    if (!rc)
        rc = queue_send(q, b.data ? b.data : (const unsigned char *)"", b.len);
    int status = rc ? fail(rc, q->err.msg) : 0;
    buf_free(&b);
    queue_close(q);
    return status;
}

static int fleet_cmd(int argc, char **argv)
{
    imgcls_errbuf eb = {{0}};
    fleet *f = NULL;
    int rc = fleet_open(argv[2], &f, &eb);
    if (rc)
        return fail(rc, eb.msg);
    if (strcmp(argv[1], "fleet-describe") == 0) {
        fleet_status st;
        rc = fleet_describe(f, &st);
        if (!rc)
            printf("%u %u %u %u %u\n", st.running, st.starting, st.stopping, st.busy, st.desired);
    } else if (strcmp(argv[1], "fleet-set") == 0 && argc == 4) {
        rc = fleet_set_desired(f, (uint32_t)strtoul(argv[3], NULL, 10));
    } else if (strcmp(argv[1], "fleet-report") == 0 && argc == 4) {
        rc = fleet_report(f, strcmp(argv[3], "busy") == 0, 0, 0);
    } else {
        rc = IMGCLS_EINVAL;
        snprintf(f->err.msg, sizeof f->err.msg, "bad arguments");
    }
    int status = rc ? fail(rc, f->err.msg) : 0;
    fleet_close(f);
    return status;
}

static int metric_cmd(char **argv)
{
    imgcls_errbuf eb = {{0}};
    aws_client *c = NULL;
    int rc = aws_client_open(AWS_CLOUDWATCH, NULL, &c, &eb);
    aws_metric m = {argv[3], strtod(argv[4], NULL), "Count"};
    if (!rc)
        rc = aws_cloudwatch_put(c, argv[2], "AutoScalingGroupName", "g", &m, 1, &eb);
    aws_client_close(c);
    return rc ? fail(rc, eb.msg) : 0;
}

int main(int argc, char **argv)
{
    aws_global_init();
    if (argc == 4 && (strcmp(argv[1], "store-put") == 0 || strcmp(argv[1], "store-get") == 0))
        return store_cmd(argv[1], argv[2], argv[3], NULL);
    if (argc == 5 && strcmp(argv[1], "store-link") == 0)
        return store_cmd(argv[1], argv[2], argv[3], argv[4]);
    if (argc == 3 && strcmp(argv[1], "queue-send") == 0)
        return queue_cmd(argv[2]);
    if (argc >= 3 && strncmp(argv[1], "fleet-", 6) == 0)
        return fleet_cmd(argc, argv);
    if (argc == 5 && strcmp(argv[1], "metric") == 0)
        return metric_cmd(argv);
    fprintf(stderr, "usage: see the comment at the top of tests/tools/aws_tool.c\n");
    return 2;
}
