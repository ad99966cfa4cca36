#include "engine/network.h"

#include <math.h>
#include <pthreadpool.h>
#include <stdlib.h>
#include <string.h>
#include <xnnpack.h>

#define EXT_INPUT 0u
#define EXT_OUTPUT 1u

typedef struct runtime_slot {
    xnn_runtime_t rt;
    size_t batch;
    uint32_t h, w;
    uint64_t last_used;
} runtime_slot;

struct network {
    const model_file *m;
    pthreadpool_t pool; /* NULL: run on the caller's thread */
    runtime_slot slots[NETWORK_MAX_RUNTIMES];
    uint64_t tick;
};

/* The spatial size of each value while the subgraph is being defined. */
typedef struct value_shape {
    uint32_t id; /* XNNPACK value id */
    size_t h, w, c;
} value_shape;

static float act_min(enum model_act a)
{
    return a == MODEL_ACT_NONE ? -INFINITY : 0.0f;
}

static float act_max(enum model_act a)
{
    return a == MODEL_ACT_RELU6 ? 6.0f : INFINITY;
}

static int xnn_fail(imgcls_errbuf *eb, enum xnn_status st, const char *what, size_t layer)
{
    return imgcls_fail(eb, IMGCLS_EBACKEND, "layer %zu: XNNPACK %s failed (status %d)", layer, what, (int)st);
}

static size_t window_out(size_t in, uint32_t pad_a, uint32_t pad_b, uint32_t k, uint32_t dil, uint32_t stride)
{
    size_t span = (size_t)dil * (k - 1) + 1, padded = in + pad_a + pad_b;
    return padded < span ? 0 : (padded - span) / stride + 1;
}

static enum xnn_status define_static(xnn_subgraph_t g, const model_tensor *t, uint32_t *id)
{
    return xnn_define_tensor_value(g, xnn_datatype_fp32, t->ndims, t->dims, t->data, XNN_INVALID_VALUE_ID, 0,
                                   id);
}

/* Defines the output value of layer L with the given shape; the network's output becomes external. */
static enum xnn_status define_output(xnn_subgraph_t g, const network *n, const model_layer *L, size_t batch,
                                     value_shape *out)
{
    int is_output = L->output == n->m->output;
    size_t dims4[4] = {batch, out->h, out->w, out->c};
    size_t dims2[2] = {batch, out->c};
    int flat = L->op == MODEL_LINEAR;
    return xnn_define_tensor_value(g, xnn_datatype_fp32, flat ? 2 : 4, flat ? dims2 : dims4, NULL,
                                   is_output ? EXT_OUTPUT : XNN_INVALID_VALUE_ID,
                                   is_output ? XNN_VALUE_FLAG_EXTERNAL_OUTPUT : 0, &out->id);
}

static enum xnn_status define_conv(xnn_subgraph_t g, const model_layer *L, const value_shape *in,
                                   const value_shape *out)
{
    uint32_t wid, bid;
    enum xnn_status st = define_static(g, L->weight, &wid);
    if (st == xnn_status_success)
        st = define_static(g, L->bias, &bid);
    if (st != xnn_status_success)
        return st;
    if (L->groups > 1)
        return xnn_define_depthwise_convolution_2d(g, L->pad[0], L->pad[3], L->pad[2], L->pad[1], L->kernel[0],
                                                   L->kernel[1], L->stride[0], L->stride[1], L->dilation[0],
                                                   L->dilation[1], 1, L->in_channels, act_min(L->act),
                                                   act_max(L->act), in->id, wid, bid, out->id, 0);
    return xnn_define_convolution_2d(g, L->pad[0], L->pad[3], L->pad[2], L->pad[1], L->kernel[0], L->kernel[1],
                                     L->stride[0], L->stride[1], L->dilation[0], L->dilation[1], 1,
                                     L->in_channels, L->out_channels, act_min(L->act), act_max(L->act), in->id,
                                     wid, bid, out->id, 0);
}

static enum xnn_status define_linear(xnn_subgraph_t g, const model_layer *L, const value_shape *in,
                                     const value_shape *out)
{
    uint32_t wid, bid;
    enum xnn_status st = define_static(g, L->weight, &wid);
    if (st == xnn_status_success)
        st = define_static(g, L->bias, &bid);
    if (st != xnn_status_success)
        return st;
    return xnn_define_fully_connected(g, act_min(L->act), act_max(L->act), in->id, wid, bid, out->id,
                                      XNN_FLAG_TENSORFLOW_RESHAPE_2D);
}

/* Works out the shape of L's output from its input's. Returns 0, or IMGCLS_EINVAL when the input is too
 * small for the layer's window. */
static int layer_out_shape(const model_layer *L, const value_shape *in, value_shape *out)
{
    *out = *in;
    switch (L->op) {
    case MODEL_CONV2D:
    case MODEL_MAX_POOL2D:
        out->h = window_out(in->h, L->pad[0], L->pad[2], L->kernel[0], L->dilation[0], L->stride[0]);
        out->w = window_out(in->w, L->pad[1], L->pad[3], L->kernel[1], L->dilation[1], L->stride[1]);
        if (L->op == MODEL_CONV2D)
            out->c = L->out_channels;
        return out->h && out->w ? 0 : IMGCLS_EINVAL;
    case MODEL_GLOBAL_AVG_POOL:
        out->h = out->w = 1;
        return 0;
    case MODEL_LINEAR:
        out->c = L->out_channels;
        return 0;
    case MODEL_ADD:
        return 0;
    }
    return IMGCLS_EINVAL;
}

static int define_layer(xnn_subgraph_t g, const network *n, size_t i, value_shape *vals, size_t batch,
                        imgcls_errbuf *eb)
{
    const model_layer *L = &n->m->layers[i];
    const value_shape *in = &vals[L->input[0]];
    value_shape *out = &vals[L->output];
    if (layer_out_shape(L, in, out))
        return imgcls_fail(eb, IMGCLS_EINVAL, "layer %zu: the image is too small for this network", i);
    if (L->op == MODEL_ADD && (vals[L->input[1]].h != in->h || vals[L->input[1]].w != in->w))
        return imgcls_fail(eb, IMGCLS_EINVAL, "layer %zu: the inputs of add differ in size", i);
    enum xnn_status st = define_output(g, n, L, batch, out);
    if (st != xnn_status_success)
        return xnn_fail(eb, st, "define value", i);
    switch (L->op) {
    case MODEL_CONV2D: st = define_conv(g, L, in, out); break;
    case MODEL_LINEAR: st = define_linear(g, L, in, out); break;
    case MODEL_ADD:
        st = xnn_define_add2(g, act_min(L->act), act_max(L->act), in->id, vals[L->input[1]].id, out->id, 0);
        break;
    case MODEL_MAX_POOL2D:
        st = xnn_define_max_pooling_2d(g, L->pad[0], L->pad[3], L->pad[2], L->pad[1], L->kernel[0], L->kernel[1],
                                       L->stride[0], L->stride[1], 1, 1, act_min(L->act), act_max(L->act), in->id,
                                       out->id, 0);
        break;
    case MODEL_GLOBAL_AVG_POOL:
        st = xnn_define_global_average_pooling_2d(g, act_min(L->act), act_max(L->act), in->id, out->id, 0);
        break;
    }
    return st == xnn_status_success ? 0 : xnn_fail(eb, st, "define node", i);
}

static int build_runtime(network *n, size_t batch, uint32_t h, uint32_t w, xnn_runtime_t *rt, imgcls_errbuf *eb)
{
    xnn_subgraph_t g = NULL;
    int rc = 0;
    value_shape *vals = calloc(n->m->num_values, sizeof *vals);
    if (!vals)
        return IMGCLS_ENOMEM;
    enum xnn_status st = xnn_create_subgraph(2, 0, &g);
    if (st != xnn_status_success) {
        rc = xnn_fail(eb, st, "create subgraph", 0);
        goto out;
    }
    vals[0] = (value_shape){.h = h, .w = w, .c = 3};
    size_t in_dims[4] = {batch, h, w, 3};
    st = xnn_define_tensor_value(g, xnn_datatype_fp32, 4, in_dims, NULL, EXT_INPUT, XNN_VALUE_FLAG_EXTERNAL_INPUT,
                                 &vals[0].id);
    if (st != xnn_status_success) {
        rc = xnn_fail(eb, st, "define input", 0);
        goto out;
    }
    for (size_t i = 0; i < n->m->nlayers; i++)
        if ((rc = define_layer(g, n, i, vals, batch, eb)))
            goto out;
    st = xnn_create_runtime_v2(g, n->pool, 0, rt);
    if (st != xnn_status_success)
        rc = xnn_fail(eb, st, "create runtime", 0);
out:
    if (g)
        xnn_delete_subgraph(g); /* the runtime does not need it once built */
    free(vals);
    return rc;
}

int network_create(const model_file *m, unsigned threads, network **out, imgcls_errbuf *eb)
{
    *out = NULL;
    /* xnn_initialize is idempotent and thread-safe (it runs its setup once). */
    enum xnn_status st = xnn_initialize(NULL);
    if (st != xnn_status_success)
        return imgcls_fail(eb, IMGCLS_EBACKEND, "XNNPACK cannot start on this CPU (status %d)", (int)st);
    network *n = calloc(1, sizeof *n);
    if (!n)
        return IMGCLS_ENOMEM;
    n->m = m;
    if (threads > 1) {
        n->pool = pthreadpool_create(threads);
        if (!n->pool) {
            free(n);
            return imgcls_fail(eb, IMGCLS_ENOMEM, "cannot start %u threads", threads);
        }
    }
    *out = n;
    return 0;
}

void network_destroy(network *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < NETWORK_MAX_RUNTIMES; i++)
        if (n->slots[i].rt)
            xnn_delete_runtime(n->slots[i].rt);
    if (n->pool)
        pthreadpool_destroy(n->pool);
    free(n);
}

/* Finds the runtime for a shape, building it in the least recently used slot if needed. */
static int get_runtime(network *n, size_t batch, uint32_t h, uint32_t w, runtime_slot **out, imgcls_errbuf *eb)
{
    if (batch == 0 || batch > NETWORK_MAX_BATCH || h < 32 || w < 32 || h > 16384 || w > 16384)
        return imgcls_fail(eb, IMGCLS_EINVAL, "cannot run a batch of %zu images of %ux%u", batch, w, h);
    runtime_slot *victim = &n->slots[0];
    for (size_t i = 0; i < NETWORK_MAX_RUNTIMES; i++) {
        runtime_slot *s = &n->slots[i];
        if (s->rt && s->batch == batch && s->h == h && s->w == w) {
            s->last_used = ++n->tick;
            *out = s;
            return 0;
        }
        if (!s->rt || (victim->rt && s->last_used < victim->last_used))
            victim = s;
    }
    if (victim->rt) {
        xnn_delete_runtime(victim->rt);
        victim->rt = NULL;
    }
    int rc = build_runtime(n, batch, h, w, &victim->rt, eb);
    if (rc)
        return rc;
    victim->batch = batch;
    victim->h = h;
    victim->w = w;
    victim->last_used = ++n->tick;
    *out = victim;
    return 0;
}

int network_prepare(network *n, size_t batch, uint32_t h, uint32_t w, imgcls_errbuf *eb)
{
    runtime_slot *s = NULL;
    return get_runtime(n, batch, h, w, &s, eb);
}

int network_run(network *n, const float *input, size_t batch, uint32_t h, uint32_t w, float *logits,
                imgcls_errbuf *eb)
{
    runtime_slot *s = NULL;
    int rc = get_runtime(n, batch, h, w, &s, eb);
    if (rc)
        return rc;
    /* XNNPACK takes a non-const pointer but only reads external inputs. */
    struct xnn_external_value ext[2] = {{EXT_INPUT, (void *)(uintptr_t)input}, {EXT_OUTPUT, logits}};
    enum xnn_status st = xnn_setup_runtime(s->rt, 2, ext);
    if (st == xnn_status_success)
        st = xnn_invoke_runtime(s->rt);
    return st == xnn_status_success ? 0 : xnn_fail(eb, st, "run", 0);
}
