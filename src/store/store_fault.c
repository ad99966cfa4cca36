/* The fault-injecting store backend: wraps any other store and fails the Nth call of one operation with
 * a chosen error (syntax in common/fault.h), for tests of the callers' error paths. */
#include "common/fault.h"
#include "store/store_backend.h"

#include <stdlib.h>
#include <string.h>

typedef struct fault_store {
    struct store base; /* first, so that a store * is a fault_store * */
    store *inner;
    fault_rule rule;
} fault_store;

static const char *const fault_store_op_names[] = {"put", "get", "exists", "del", "expire", NULL};

/* Copies the inner store's detail, which would be lost behind the wrapper otherwise. */
static int pass(fault_store *f, int rc)
{
    if (rc)
        memcpy(f->base.err.msg, f->inner->err.msg, sizeof f->base.err.msg);
    return rc;
}

static int sf_open(const char *url, store **out, imgcls_errbuf *eb)
{
    char inner[2048];
    fault_rule rule;
    fault_store *f = NULL;
    *out = NULL;
    int rc = fault_url_parse(url, fault_store_op_names, inner, sizeof inner, &rule, eb);
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
    f->base.ops = &store_fault_ops;
    f->rule = rule;
    rc = store_open(inner, &f->inner, eb);
    if (rc)
        goto out;
    *out = &f->base;
    f = NULL;
out:
    free(f);
    return rc;
}

static void sf_close(store *s)
{
    fault_store *f = (fault_store *)s;
    if (!f)
        return;
    store_close(f->inner);
    free(f);
}

static int sf_put(store *s, const char *key, const void *data, size_t len)
{
    fault_store *f = (fault_store *)s;
    int rc = fault_hit(&f->rule, "put", &s->err);
    return rc ? rc : pass(f, store_put(f->inner, key, data, len));
}

static int sf_get(store *s, const char *key, imgcls_buf *out)
{
    fault_store *f = (fault_store *)s;
    int rc = fault_hit(&f->rule, "get", &s->err);
    return rc ? rc : pass(f, store_get(f->inner, key, out));
}

static int sf_exists(store *s, const char *key, bool *exists)
{
    fault_store *f = (fault_store *)s;
    int rc = fault_hit(&f->rule, "exists", &s->err);
    return rc ? rc : pass(f, store_exists(f->inner, key, exists));
}

static int sf_del(store *s, const char *key)
{
    fault_store *f = (fault_store *)s;
    int rc = fault_hit(&f->rule, "del", &s->err);
    return rc ? rc : pass(f, store_del(f->inner, key));
}

static int sf_expire(store *s, const char *prefix, long long now_s, long long max_age_s, size_t *removed)
{
    fault_store *f = (fault_store *)s;
    *removed = 0;
    int rc = fault_hit(&f->rule, "expire", &s->err);
    return rc ? rc : pass(f, store_expire(f->inner, prefix, now_s, max_age_s, removed));
}

const struct store_ops store_fault_ops = {
    .scheme = "fault",
    .open = sf_open,
    .close = sf_close,
    .put = sf_put,
    .get = sf_get,
    .exists = sf_exists,
    .del = sf_del,
    .expire = sf_expire,
};
