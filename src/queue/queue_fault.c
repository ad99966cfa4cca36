/* The fault-injecting queue backend: wraps any other queue and fails the Nth call of one operation with
 * a chosen error (syntax in common/fault.h). Tests use it to drive the error paths of the web tier and
 * the workers without breaking a real database. */
#include "common/fault.h"
#include "queue/queue_backend.h"

#include <stdlib.h>
#include <string.h>

typedef struct fault_queue {
    struct queue base; /* first, so that a queue * is a fault_queue * */
    queue *inner;
    fault_rule rule;
} fault_queue;

static const char *const fault_queue_op_names[] = {
    "send", "receive", "delete", "change_visibility", "depth", NULL,
};

/* The inner queue's detail would be lost behind the wrapper otherwise. */
static int pass(fault_queue *f, int rc)
{
    if (rc)
        memcpy(f->base.err.msg, f->inner->err.msg, sizeof f->base.err.msg);
    return rc;
}

static int fq_open(const char *url, queue **out, imgcls_errbuf *eb)
{
    char inner[2048];
    fault_rule rule;
    fault_queue *f = NULL;
    *out = NULL;
    int rc = fault_url_parse(url, fault_queue_op_names, inner, sizeof inner, &rule, eb);
    if (rc)
        goto out;
    if (strcmp(rule.op, "open") == 0) {
        rc = fault_hit(&rule, "open", eb);
        if (rc)
            goto out;
    }
    f = calloc(1, sizeof *f);
    if (!f) {
        rc = imgcls_fail(eb, IMGCLS_ENOMEM, "fault: out of memory");
        goto out;
    }
    f->base.ops = &queue_fault_ops;
    f->rule = rule;
    rc = queue_open(inner, &f->inner, eb);
    if (rc)
        goto out;
    *out = &f->base;
    f = NULL;
out:
    free(f);
    return rc;
}

static void fq_close(queue *q)
{
    fault_queue *f = (fault_queue *)q;
    if (!f)
        return;
    queue_close(f->inner);
    free(f);
}

static int fq_send(queue *q, const void *body, size_t len)
{
    fault_queue *f = (fault_queue *)q;
    int rc = fault_hit(&f->rule, "send", &q->err);
    return rc ? rc : pass(f, queue_send(f->inner, body, len));
}

static int fq_receive(queue *q, size_t max, int wait_ms, int visibility_s, queue_msg *out, size_t *n)
{
    fault_queue *f = (fault_queue *)q;
    *n = 0;
    int rc = fault_hit(&f->rule, "receive", &q->err);
    return rc ? rc : pass(f, queue_receive(f->inner, max, wait_ms, visibility_s, out, n));
}

static int fq_delete(queue *q, const char *receipt)
{
    fault_queue *f = (fault_queue *)q;
    int rc = fault_hit(&f->rule, "delete", &q->err);
    return rc ? rc : pass(f, queue_delete(f->inner, receipt));
}

static int fq_change_visibility(queue *q, const char *receipt, int visibility_s)
{
    fault_queue *f = (fault_queue *)q;
    int rc = fault_hit(&f->rule, "change_visibility", &q->err);
    return rc ? rc : pass(f, queue_change_visibility(f->inner, receipt, visibility_s));
}

static int fq_depth(queue *q, queue_depth *out)
{
    fault_queue *f = (fault_queue *)q;
    int rc = fault_hit(&f->rule, "depth", &q->err);
    return rc ? rc : pass(f, queue_depth_get(f->inner, out));
}

const struct queue_ops queue_fault_ops = {
    .scheme = "fault",
    .open = fq_open,
    .close = fq_close,
    .send = fq_send,
    .receive = fq_receive,
    .delete_msg = fq_delete,
    .change_visibility = fq_change_visibility,
    .depth = fq_depth,
};
