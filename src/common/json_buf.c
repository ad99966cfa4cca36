#include "common/json_buf.h"

#include "common/error.h"

typedef struct dump_ctx {
    imgcls_buf *out;
    int rc;
} dump_ctx;

static int dump_cb(const char *p, size_t n, void *data)
{
    dump_ctx *c = data;
    c->rc = buf_append(c->out, p, n);
    return c->rc ? -1 : 0;
}

int json_buf_dump(const json_t *o, size_t flags, imgcls_buf *out)
{
    if (!o)
        return IMGCLS_EINVAL;
    size_t start = out->len;
    dump_ctx c = {out, 0};
    if (json_dump_callback(o, dump_cb, &c, JSON_COMPACT | flags) != 0) {
        out->len = start;
        if (out->data)
            out->data[start] = 0;
        return c.rc ? c.rc : IMGCLS_EINVAL;
    }
    return 0;
}
