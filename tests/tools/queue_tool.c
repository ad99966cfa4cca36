/* queue_tool: pokes a queue through the real queue port, for end-to-end tests.
 *
 *   queue_tool send URL          sends standard input (at most QUEUE_MAX_BODY bytes) as one message
 *   queue_tool depth URL         prints "VISIBLE IN_FLIGHT" */
#include "common/buf.h"
#include "queue/queue.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int send_stdin(queue *q)
{
    imgcls_buf b;
    buf_init(&b, QUEUE_MAX_BODY);
    unsigned char chunk[4096];
    size_t n;
    int rc = 0;
    while (!rc && (n = fread(chunk, 1, sizeof chunk, stdin)) > 0)
        rc = buf_append(&b, chunk, n);
    if (!rc)
        rc = queue_send(q, b.data ? b.data : (const unsigned char *)"", b.len);
    buf_free(&b);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[1], "send") != 0 && strcmp(argv[1], "depth") != 0)) {
        fprintf(stderr, "usage: queue_tool send|depth URL\n");
        return 2;
    }
    queue *q = NULL;
    imgcls_errbuf eb = {{0}};
    int rc = queue_open(argv[2], &q, &eb);
    if (rc) {
        fprintf(stderr, "queue_tool: %s\n", eb.msg);
        return 1;
    }
    queue_depth d = {0};
    rc = strcmp(argv[1], "send") == 0 ? send_stdin(q) : queue_depth_get(q, &d);
    if (!rc && strcmp(argv[1], "depth") == 0)
        printf("%" PRIu64 " %" PRIu64 "\n", d.visible, d.in_flight);
    if (rc)
        fprintf(stderr, "queue_tool: %s: %s\n", imgcls_err_name(rc), q->err.msg);
    queue_close(q);
    return rc ? 1 : 0;
}
