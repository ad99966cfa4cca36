/* The native network (native_net.h): a model_file run layer by layer, XNNPACK operators plus our own
 * GEMM (gemm.h).
 *
 * Why not XNNPACK's subgraph any more: on this machine (Zen3, AVX2+FMA) Debian's XNNPACK 2022 runs the
 * 1x1 convolutions -- ~90% of MobileNetV2's FLOPs -- with a GEMM kernel that spills to the stack (24
 * GFLOP/s), and a subgraph cannot call another kernel. So each layer is now an XNNPACK *operator*
 * (depthwise convs, pools, unfused adds; everything on a CPU without AVX2+FMA), except that dense
 * convolutions and the linear layer go to gemm_run: 1x1 stride-1 unpadded ones directly (an NHWC
 * activation is already the GEMM's a), others through im2col (gemm_conv.h), and a residual add right
 * after a GEMM is done in its epilogue (fuse_adds). Depthwise 3x3 convolutions of MobileNetV2's shape
 * (padding 1, stride 1 or 2) go to dwconv_run (dwconv.h), other depthwise shapes to XNNPACK. The GEMM
 * layers are bit-identical to the old subgraph's (same accumulation order); dwconv sums its 9 taps in
 * another order than XNNPACK, so MobileNetV2's logits now differ from it by float rounding only.
 *
 * An inverted-residual block -- 1x1 GEMM, depthwise 3x3, 1x1 GEMM (+ add), each intermediate read only by
 * the next layer -- runs as one EXEC_BLOCK through fused.h, band of output rows by band, so its 6x-wide
 * hidden tensor stays in L2 (fuse_blocks). Same operations in the same order: the logits are bit-identical
 * to running the three layers one by one. Measured on MobileNetV2, batch 1, on a shared 2-vCPU EPYC
 * whose speed swings by 30% from minute to minute, alternating with the unfused build and ONNX Runtime
 * 1.32, 12 rounds of 100 runs: median per-round ratio fused/unfused 0.95 at 1 and at 2 threads; ORT /
 * fused 1.03 (1 thread) and 1.10 (2 threads). Process CPU time per image (1 thread, medians of 8):
 * unfused 11.5 ms, fused 11.1, ONNX Runtime 12.0.
 *
 * Measured on MobileNetV2, batch 1, 1 thread, process CPU ms per image, alternating runs on a shared
 * 2-vCPU EPYC (medians of 6): old subgraph 20.5, subgraph with the Zen uarch override 13.1, this 12.2,
 * ONNX Runtime 1.32 12.2. Rejected: keeping the uarch override (casting away const on cpuinfo's cores
 * so XNNPACK picks its 4x16s4 kernel). Here XNNPACK runs no GEMM-shaped layer on an AVX2 CPU and its
 * depthwise kernel does not depend on the uarch, so it would buy nothing for a write to a global that
 * other libraries read.
 *
 * Operators and packed GEMM weights are made once per network (weights are packed once). What depends
 * on the input shape -- every value's size and its place in one activation arena -- is a "plan", kept
 * for NETWORK_MAX_RUNTIMES shapes, least recently used out. An XNNPACK 2022 operator is set up for one
 * shape at a time, so a run whose plan or buffers differ from the last run's sets every operator up
 * again; for a shape it saw before that only rebuilds the operator's indirection buffer. Rejected: one
 * operator set per plan, which would pack every weight NETWORK_MAX_RUNTIMES times.
 *
 * Activations: a value lives from the layer that writes it to the last layer that reads it. The plan
 * places values in one arena first-fit, a layer's output before its inputs are freed (no operator here
 * may run in place). Ping-pong buffers are not enough because residual adds keep a value alive across
 * a whole block. The network input and the logits are the caller's buffers. */
#include "engine/native_net.h"

#include "engine/dwconv.h"
#include "engine/fused.h"
#include "engine/gemm.h"
#include "engine/gemm_conv.h"

#include <math.h>
#include <pthreadpool.h>
#include <stdlib.h>
#include <string.h>
#include <xnnpack.h>

/* Per value: its shape for one plan, and where it lives in the arena. */
typedef struct value_plan {
    size_t h, w, c;
    size_t offset; /* floats into the arena */
    size_t size;   /* floats reserved, 0 for the input and the logits */
} value_plan;

typedef struct plan {
    size_t batch;
    uint32_t h, w;
    uint64_t last_used;
    value_plan *vals; /* NULL: slot empty */
    float *arena;
    float *scratch; /* im2col rows for EXEC_CONV layers */
    size_t bytes;   /* arena + scratch */
} plan;

/* How a layer runs. EXEC_GEMM: 1x1 stride-1 unpadded convolutions and the linear layer, whose input
 * rows are the GEMM's a as they lie. EXEC_CONV: other dense convolutions, through im2col. EXEC_DW:
 * depthwise 3x3 convolutions of the shape dwconv.h handles. EXEC_BLOCK: a 1x1 GEMM layer that runs, with
 * the two layers after it, a whole inverted-residual block (fused.h). EXEC_FUSED: a layer that another
 * one performs (an add in a GEMM's epilogue, the depthwise and project layers of an EXEC_BLOCK). */
enum exec_kind { EXEC_XNN, EXEC_GEMM, EXEC_CONV, EXEC_DW, EXEC_BLOCK, EXEC_FUSED };

/* A layer ready to run: an XNNPACK operator or packed GEMM weights. */
typedef struct layer_exec {
    enum exec_kind kind;
    xnn_operator_t op;
    gemm_weights *gemm;
    dwconv_weights *dw;
    int fuses_add; /* a GEMM layer that also does the next layer, an add, and writes that add's output */
} layer_exec;

struct native_net {
    const model_file *m;
    pthreadpool_t pool; /* NULL: run on the caller's thread */
    layer_exec *layers; /* m->nlayers */
    uint32_t *last_use; /* per value: the last layer that reads it (or writes it, if none reads it) */
    plan plans[NETWORK_MAX_RUNTIMES];
    uint64_t tick;
    /* What the XNNPACK operators are set up for now; a run with the same plan and buffers skips setup. */
    const plan *setup_plan;
    const float *setup_in;
    float *setup_out;
};

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

/* ---- operators, made once per network ------------------------------------------------------------ */

/* A depthwise conv that dwconv.h runs: 3x3, padding 1 all round, the same stride 1 or 2 both ways, no
 * dilation, one output channel per input channel. */
static int is_dw3x3(const model_layer *L)
{
    return L->op == MODEL_CONV2D && L->groups > 1 && L->groups == L->in_channels &&
           L->groups == L->out_channels && L->kernel[0] == 3 && L->kernel[1] == 3 &&
           L->stride[0] == L->stride[1] && (L->stride[0] == 1 || L->stride[0] == 2) && L->dilation[0] == 1 &&
           L->dilation[1] == 1 && L->pad[0] == 1 && L->pad[1] == 1 && L->pad[2] == 1 && L->pad[3] == 1 &&
           L->weight->count == (size_t)L->out_channels * 9;
}

static enum exec_kind exec_kind_of(const model_layer *L, int have_gemm)
{
    if (have_gemm && is_dw3x3(L))
        return EXEC_DW;
    if (!have_gemm || (L->op != MODEL_CONV2D && L->op != MODEL_LINEAR) || L->groups > 1)
        return EXEC_XNN;
    if (L->op == MODEL_LINEAR)
        return EXEC_GEMM;
    int pointwise = L->kernel[0] == 1 && L->kernel[1] == 1 && L->stride[0] == 1 && L->stride[1] == 1 &&
                    !L->pad[0] && !L->pad[1] && !L->pad[2] && !L->pad[3];
    return pointwise ? EXEC_GEMM : EXEC_CONV;
}

/* XNNPACK takes padding as top, right, bottom, left; the model file as top, left, bottom, right. */
static enum xnn_status create_conv(const model_layer *L, xnn_operator_t *op)
{
    int dw = L->groups > 1;
    return xnn_create_convolution2d_nhwc_f32(
        L->pad[0], L->pad[3], L->pad[2], L->pad[1], L->kernel[0], L->kernel[1], L->stride[0], L->stride[1],
        L->dilation[0], L->dilation[1], dw ? L->groups : 1, dw ? 1 : L->in_channels, dw ? 1 : L->out_channels,
        L->in_channels, L->out_channels, L->weight->data, L->bias->data, act_min(L->act), act_max(L->act),
        dw ? XNN_FLAG_DEPTHWISE_CONVOLUTION : 0, op);
}

/* c: the channels of L's input, which pooling layers need and do not record. */
static enum xnn_status create_op(const model_layer *L, size_t c, xnn_operator_t *op)
{
    float lo = act_min(L->act), hi = act_max(L->act);
    switch (L->op) {
    case MODEL_CONV2D: return create_conv(L, op);
    case MODEL_LINEAR:
        return xnn_create_fully_connected_nc_f32(L->in_channels, L->out_channels, L->in_channels, L->out_channels,
                                                 L->weight->data, L->bias->data, lo, hi, 0, op);
    case MODEL_ADD: return xnn_create_add_nd_f32(lo, hi, 0, op);
    case MODEL_MAX_POOL2D:
        return xnn_create_max_pooling2d_nhwc_f32(L->pad[0], L->pad[3], L->pad[2], L->pad[1], L->kernel[0],
                                                 L->kernel[1], L->stride[0], L->stride[1], 1, 1, c, c, c, lo, hi,
                                                 0, op);
    case MODEL_GLOBAL_AVG_POOL:
        return xnn_create_global_average_pooling_nwc_f32(c, c, c, lo, hi, 0, op);
    }
    return xnn_status_invalid_parameter;
}

static int create_layers(native_net *n, imgcls_errbuf *eb)
{
    const model_file *m = n->m;
    int rc = 0, have_gemm = gemm_available();
    size_t *channels = calloc(m->num_values, sizeof *channels); /* per value, as the layers go */
    if (!channels)
        return IMGCLS_ENOMEM;
    channels[0] = 3;
    for (size_t i = 0; i < m->nlayers && !rc; i++) {
        const model_layer *L = &m->layers[i];
        layer_exec *x = &n->layers[i];
        int has_weights = L->op == MODEL_CONV2D || L->op == MODEL_LINEAR;
        channels[L->output] = has_weights ? L->out_channels : channels[L->input[0]];
        x->kind = exec_kind_of(L, have_gemm);
        if (x->kind == EXEC_DW) {
            if ((rc = dwconv_pack(L->weight->data, L->bias->data, L->out_channels, &x->dw)))
                rc = imgcls_fail(eb, rc, "layer %zu: cannot pack the weights", i);
            continue;
        }
        if (x->kind != EXEC_XNN) {
            /* OHWI flattened: [out][kh*kw*in]; for a linear layer kernel is 1x1. */
            size_t k = L->op == MODEL_LINEAR ? L->in_channels : L->weight->count / L->out_channels;
            if ((rc = gemm_pack(L->weight->data, L->bias->data, L->out_channels, k, &x->gemm)))
                rc = imgcls_fail(eb, rc, "layer %zu: cannot pack the weights", i);
            continue;
        }
        enum xnn_status st = create_op(L, channels[L->input[0]], &x->op);
        if (st != xnn_status_success)
            rc = xnn_fail(eb, st, "create operator", i);
    }
    free(channels);
    return rc;
}

/* Layer i (a GEMM with no activation) absorbs layer i+1 when that is an add of i's output and another
 * value, and nothing else reads i's output: the GEMM adds the other value in its epilogue and writes the
 * add's output. This is every residual add of MobileNetV2 and ResNet. It saves the add's pass over three
 * tensors (unfused, MobileNetV2's 10 adds took ~0.1 ms of ~12) and one tensor's write and read. */
static void fuse_adds(native_net *n)
{
    const model_file *m = n->m;
    for (size_t i = 0; i + 1 < m->nlayers; i++) {
        const model_layer *L = &m->layers[i], *A = &m->layers[i + 1];
        int gemm = n->layers[i].kind == EXEC_GEMM || n->layers[i].kind == EXEC_CONV;
        if (!gemm || L->op != MODEL_CONV2D || L->act != MODEL_ACT_NONE || A->op != MODEL_ADD ||
            L->output == m->output || n->last_use[L->output] != i + 1 || A->input[0] == A->input[1] ||
            (A->input[0] != L->output && A->input[1] != L->output))
            continue;
        n->layers[i].fuses_add = 1;
        n->layers[i + 1].kind = EXEC_FUSED;
        if (n->layers[i + 1].op) {
            xnn_delete_operator(n->layers[i + 1].op);
            n->layers[i + 1].op = NULL;
        }
    }
}

/* Layers i, i+1, i+2 are an inverted-residual block that fused.h runs in one pass: a 1x1 GEMM, a
 * depthwise 3x3 (dwconv.h) of its output and a 1x1 GEMM of that, each intermediate read by the next
 * layer only. The project may fuse the add after it (fuse_adds runs first). */
static int is_block(const native_net *n, size_t i)
{
    const model_file *m = n->m;
    if (i + 2 >= m->nlayers)
        return 0;
    const model_layer *E = &m->layers[i], *D = &m->layers[i + 1], *P = &m->layers[i + 2];
    const layer_exec *x = &n->layers[i];
    return x[0].kind == EXEC_GEMM && E->op == MODEL_CONV2D && !x[0].fuses_add && x[1].kind == EXEC_DW &&
           x[2].kind == EXEC_GEMM && P->op == MODEL_CONV2D && D->input[0] == E->output &&
           P->input[0] == D->output && n->last_use[E->output] == i + 1 && n->last_use[D->output] == i + 2 &&
           E->output != m->output && D->output != m->output && fused_pays(x[0].gemm, x[2].gemm);
}

/* Marks every inverted-residual block. The block's input must then stay live until its output is
 * placed (plan_values places the block's output at its first layer, and the block reads its input while
 * it writes its output band by band), so its last use moves to the block's last layer at least. */
static void fuse_blocks(native_net *n)
{
    for (size_t i = 0; i < n->m->nlayers; i++) {
        if (!is_block(n, i))
            continue;
        uint32_t in = n->m->layers[i].input[0];
        n->layers[i].kind = EXEC_BLOCK;
        n->layers[i + 1].kind = EXEC_FUSED;
        n->layers[i + 2].kind = EXEC_FUSED;
        if (n->last_use[in] < i + 2)
            n->last_use[in] = (uint32_t)(i + 2);
    }
}

static void destroy_layers(native_net *n)
{
    for (size_t i = 0; n->layers && i < n->m->nlayers; i++) {
        if (n->layers[i].op)
            xnn_delete_operator(n->layers[i].op);
        gemm_weights_free(n->layers[i].gemm);
        dwconv_weights_free(n->layers[i].dw);
    }
    free(n->layers);
}

/* ---- plans: value shapes and arena offsets for one input shape ------------------------------------ */

/* Works out the shape of L's output from its input's. Returns 0, or IMGCLS_EINVAL when the input is too
 * small for the layer's window. */
static int layer_out_shape(const model_layer *L, const value_plan *in, value_plan *out)
{
    out->h = in->h;
    out->w = in->w;
    out->c = in->c;
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

/* First fit: the lowest offset where `size` floats overlap no live value. live[] holds the live value
 * ids sorted by offset; the new one is inserted in order. */
static size_t arena_place(value_plan *vals, uint32_t *live, size_t *nlive, uint32_t v, size_t size)
{
    size_t at = 0, i = 0;
    for (; i < *nlive; i++) {
        const value_plan *p = &vals[live[i]];
        if (p->offset >= at + size)
            break;
        if (p->offset + p->size > at)
            at = p->offset + p->size;
    }
    memmove(live + i + 1, live + i, (*nlive - i) * sizeof *live);
    live[i] = v;
    (*nlive)++;
    vals[v].offset = at;
    vals[v].size = size;
    return at + size;
}

static void arena_free_dead(const native_net *n, uint32_t *live, size_t *nlive, size_t layer)
{
    size_t j = 0;
    for (size_t i = 0; i < *nlive; i++)
        if (n->last_use[live[i]] > layer)
            live[j++] = live[i];
    *nlive = j;
}

/* The value an EXEC_BLOCK at layer i writes (its project's output, or that of the add the project
 * fuses), and its floats per image. */
static uint32_t block_output(const native_net *n, size_t i, const value_plan *vals, size_t *floats)
{
    const model_layer *L = &n->m->layers[i], *D = &n->m->layers[i + 1], *P = &n->m->layers[i + 2];
    const value_plan *in = &vals[L->input[0]];
    *floats = dwconv_out_side(in->h, D->stride[0]) * dwconv_out_side(in->w, D->stride[0]) * P->out_channels;
    return n->layers[i + 2].fuses_add ? n->m->layers[i + 3].output : P->output;
}

/* Shapes every value for this input and places it in the arena; returns the arena's size in floats
 * through *total. Each value gets XNN_EXTRA_BYTES of slack (XNNPACK kernels may read that far past the
 * end) and starts on a 64-byte boundary. */
static int plan_values(const native_net *n, value_plan *vals, size_t batch, size_t *total, imgcls_errbuf *eb)
{
    const model_file *m = n->m;
    uint32_t *live = malloc((size_t)m->num_values * sizeof *live);
    size_t nlive = 0, top = 0;
    if (!live)
        return IMGCLS_ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < m->nlayers && !rc; i++) {
        const model_layer *L = &m->layers[i];
        value_plan *out = &vals[L->output];
        if (layer_out_shape(L, &vals[L->input[0]], out))
            rc = imgcls_fail(eb, IMGCLS_EINVAL, "layer %zu: the image is too small for this network", i);
        else if (L->op == MODEL_ADD &&
                 (vals[L->input[1]].h != out->h || vals[L->input[1]].w != out->w))
            rc = imgcls_fail(eb, IMGCLS_EINVAL, "layer %zu: the inputs of add differ in size", i);
        /* A GEMM that does the next layer's add writes the add's output, so that is what it needs now,
         * before its inputs are freed; the add itself then places nothing. */
        uint32_t dst = n->layers[i].fuses_add ? m->layers[i + 1].output : L->output;
        size_t floats = out->h * out->w * out->c;
        if (n->layers[i].kind == EXEC_BLOCK) /* places the block's output, shaped by its last layers */
            dst = block_output(n, i, vals, &floats);
        if (rc || n->layers[i].kind == EXEC_FUSED || dst == m->output)
            continue;
        floats = batch * floats + XNN_EXTRA_BYTES / sizeof(float);
        size_t end = arena_place(vals, live, &nlive, dst, (floats + 15) / 16 * 16);
        top = end > top ? end : top;
        arena_free_dead(n, live, &nlive, i);
    }
    free(live);
    *total = top;
    return rc;
}

static gemm_conv_shape conv_shape(const model_layer *L, const value_plan *in, const value_plan *out, size_t batch)
{
    gemm_conv_shape s = {.batch = batch, .in_h = in->h, .in_w = in->w, .in_c = in->c, .out_h = out->h,
                         .out_w = out->w};
    memcpy(s.kernel, L->kernel, sizeof s.kernel);
    memcpy(s.stride, L->stride, sizeof s.stride);
    memcpy(s.dilation, L->dilation, sizeof s.dilation);
    memcpy(s.pad, L->pad, sizeof s.pad);
    return s;
}

/* The kernels and clamps of the EXEC_BLOCK at layer i. */
static fused_block block_of(const native_net *n, size_t i)
{
    const model_layer *E = &n->m->layers[i], *D = &n->m->layers[i + 1], *P = &n->m->layers[i + 2];
    const model_layer *A = n->layers[i + 2].fuses_add ? &n->m->layers[i + 3] : P; /* whose clamp ends it */
    return (fused_block){.expand = n->layers[i].gemm, .dw = n->layers[i + 1].dw, .project = n->layers[i + 2].gemm,
                         .stride = D->stride[0], .e_lo = act_min(E->act), .e_hi = act_max(E->act),
                         .d_lo = act_min(D->act), .d_hi = act_max(D->act), .lo = act_min(A->act),
                         .hi = act_max(A->act)};
}

static fused_shape block_shape(const native_net *n, const value_plan *vals, size_t batch, size_t i)
{
    const value_plan *in = &vals[n->m->layers[i].input[0]];
    return (fused_shape){.batch = batch, .in_h = in->h, .in_w = in->w,
                         .threads = n->pool ? pthreadpool_get_threads_count(n->pool) : 1};
}

/* The scratch the plan's EXEC_CONV (im2col rows) and EXEC_BLOCK (ring buffers) layers need, in floats. */
static size_t plan_scratch(const native_net *n, const value_plan *vals, size_t batch)
{
    size_t most = 0;
    for (size_t i = 0; i < n->m->nlayers; i++) {
        const model_layer *L = &n->m->layers[i];
        if (n->layers[i].kind == EXEC_BLOCK) {
            fused_block b = block_of(n, i);
            fused_shape fs = block_shape(n, vals, batch, i);
            size_t need = fused_scratch(&b, &fs);
            most = need > most ? need : most;
        }
        if (n->layers[i].kind != EXEC_CONV)
            continue;
        gemm_conv_shape cs = conv_shape(L, &vals[L->input[0]], &vals[L->output], batch);
        size_t need = gemm_conv_scratch(&cs);
        most = need > most ? need : most;
    }
    return most;
}

static void plan_clear(plan *p)
{
    free(p->vals);
    free(p->arena);
    free(p->scratch);
    memset(p, 0, sizeof *p);
}

int native_net_plan_bytes(const native_net *n, size_t batch, uint32_t h, uint32_t w, size_t *bytes,
                          imgcls_errbuf *eb)
{
    size_t total = 0;
    *bytes = 0;
    value_plan *vals = calloc(n->m->num_values, sizeof *vals);
    if (!vals)
        return IMGCLS_ENOMEM;
    vals[0] = (value_plan){.h = h, .w = w, .c = 3};
    int rc = plan_values(n, vals, batch, &total, eb);
    if (!rc)
        *bytes = (total + plan_scratch(n, vals, batch)) * sizeof(float);
    free(vals);
    return rc;
}

void native_net_trim(native_net *n, size_t max_bytes)
{
    for (size_t i = 0; i < NETWORK_MAX_RUNTIMES; i++) {
        plan *p = &n->plans[i];
        if (!p->vals || p->bytes <= max_bytes)
            continue;
        if (n->setup_plan == p)
            n->setup_plan = NULL;
        plan_clear(p);
    }
}

static int plan_build(const native_net *n, plan *p, size_t batch, uint32_t h, uint32_t w, imgcls_errbuf *eb)
{
    size_t total = 0;
    int rc = 0;
    p->vals = calloc(n->m->num_values, sizeof *p->vals);
    if (!p->vals) {
        rc = IMGCLS_ENOMEM;
        goto out;
    }
    p->vals[0] = (value_plan){.h = h, .w = w, .c = 3};
    rc = plan_values(n, p->vals, batch, &total, eb);
    if (rc)
        goto out;
    /* Sides are at most 16384 and batch 64, so total * 4 cannot overflow; it may still be too much. */
    p->arena = aligned_alloc(64, (total ? total : 16) * sizeof(float));
    size_t scratch = plan_scratch(n, p->vals, batch);
    if (scratch)
        p->scratch = aligned_alloc(64, (scratch + 15) / 16 * 16 * sizeof(float));
    if (!p->arena || (scratch && !p->scratch)) {
        rc = imgcls_fail(eb, IMGCLS_ENOMEM, "no memory for the activations of %zu images of %ux%u", batch, w, h);
        goto out;
    }
    p->batch = batch;
    p->h = h;
    p->w = w;
    p->bytes = (total + scratch) * sizeof(float);
out:
    if (rc)
        plan_clear(p);
    return rc;
}

/* ---- running ------------------------------------------------------------------------------------ */

typedef struct run_ctx {
    const plan *p;
    const float *input;
    float *logits;
} run_ctx;

static float *value_ptr(const native_net *n, const run_ctx *r, uint32_t v)
{
    if (v == 0)
        return (float *)(uintptr_t)r->input; /* only ever read: XNNPACK's setup takes it non-const */
    if (v == n->m->output)
        return r->logits;
    return r->p->arena + r->p->vals[v].offset;
}

/* Sets an XNNPACK operator up for this plan's shape and buffers. */
static enum xnn_status setup_op(const native_net *n, const run_ctx *r, const model_layer *L, xnn_operator_t op)
{
    const value_plan *in = &r->p->vals[L->input[0]];
    const float *x = value_ptr(n, r, L->input[0]);
    float *y = value_ptr(n, r, L->output);
    size_t batch = r->p->batch, dims[4] = {batch, in->h, in->w, in->c};
    switch (L->op) {
    case MODEL_CONV2D: return xnn_setup_convolution2d_nhwc_f32(op, batch, in->h, in->w, x, y, n->pool);
    case MODEL_LINEAR: return xnn_setup_fully_connected_nc_f32(op, batch, x, y, n->pool);
    case MODEL_ADD:
        return xnn_setup_add_nd_f32(op, 4, dims, 4, dims, x, value_ptr(n, r, L->input[1]), y, n->pool);
    case MODEL_MAX_POOL2D: return xnn_setup_max_pooling2d_nhwc_f32(op, batch, in->h, in->w, x, y, n->pool);
    case MODEL_GLOBAL_AVG_POOL:
        return xnn_setup_global_average_pooling_nwc_f32(op, batch, in->h * in->w, x, y, n->pool);
    }
    return xnn_status_invalid_parameter;
}

/* Runs an EXEC_GEMM or EXEC_CONV layer, with the next layer's add when it fuses one. */
static void run_gemm_layer(const native_net *n, const run_ctx *r, size_t i)
{
    const model_layer *L = &n->m->layers[i];
    const layer_exec *x = &n->layers[i];
    const value_plan *in = &r->p->vals[L->input[0]];
    gemm_out o = {.c = value_ptr(n, r, L->output), .ldc = L->out_channels, .lo = act_min(L->act),
                  .hi = act_max(L->act)};
    if (x->fuses_add) {
        const model_layer *A = &n->m->layers[i + 1];
        o.c = value_ptr(n, r, A->output);
        o.res = value_ptr(n, r, A->input[A->input[0] == L->output ? 1 : 0]);
        o.ldr = L->out_channels;
        o.lo = act_min(A->act);
        o.hi = act_max(A->act);
    }
    const float *xin = value_ptr(n, r, L->input[0]);
    if (x->kind == EXEC_GEMM) {
        gemm_run(x->gemm, r->p->batch * in->h * in->w, xin, in->c, &o, n->pool);
        return;
    }
    gemm_conv_shape cs = conv_shape(L, in, &r->p->vals[L->output], r->p->batch);
    gemm_conv_run(x->gemm, &cs, xin, &o, r->p->scratch, n->pool);
}

static void run_block(const native_net *n, const run_ctx *r, size_t i)
{
    fused_block b = block_of(n, i);
    fused_shape s = block_shape(n, r->p->vals, r->p->batch, i);
    const model_layer *P = &n->m->layers[i + 2];
    const float *res = NULL;
    uint32_t out = P->output;
    if (n->layers[i + 2].fuses_add) {
        const model_layer *A = &n->m->layers[i + 3];
        out = A->output;
        res = value_ptr(n, r, A->input[A->input[0] == P->output ? 1 : 0]);
    }
    fused_run(&b, &s, value_ptr(n, r, n->m->layers[i].input[0]), res, value_ptr(n, r, out), r->p->scratch,
              n->pool);
}

static void run_dw_layer(const native_net *n, const run_ctx *r, size_t i)
{
    const model_layer *L = &n->m->layers[i];
    const value_plan *in = &r->p->vals[L->input[0]];
    dwconv_shape s = {.batch = r->p->batch, .in_h = in->h, .in_w = in->w, .stride = L->stride[0]};
    dwconv_run(n->layers[i].dw, &s, value_ptr(n, r, L->input[0]), value_ptr(n, r, L->output), act_min(L->act),
               act_max(L->act), n->pool);
}

static int run_layers(native_net *n, const run_ctx *r, imgcls_errbuf *eb)
{
    int set_up = n->setup_plan == r->p && n->setup_in == r->input && n->setup_out == r->logits;
    n->setup_plan = NULL; /* until every operator is set up for this run */
    for (size_t i = 0; i < n->m->nlayers; i++) {
        const model_layer *L = &n->m->layers[i];
        const layer_exec *x = &n->layers[i];
        if (x->kind == EXEC_FUSED)
            continue;
        if (x->kind == EXEC_DW) {
            run_dw_layer(n, r, i);
            continue;
        }
        if (x->kind == EXEC_BLOCK) {
            run_block(n, r, i);
            continue;
        }
        if (x->kind != EXEC_XNN) {
            run_gemm_layer(n, r, i);
            continue;
        }
        enum xnn_status st = set_up ? xnn_status_success : setup_op(n, r, L, x->op);
        if (st != xnn_status_success)
            return xnn_fail(eb, st, "setup", i);
        st = xnn_run_operator(x->op, n->pool);
        if (st != xnn_status_success)
            return xnn_fail(eb, st, "run", i);
    }
    n->setup_plan = r->p;
    n->setup_in = r->input;
    n->setup_out = r->logits;
    return 0;
}

/* Finds the plan for a shape, building it in the least recently used slot if needed. */
static int get_plan(native_net *n, size_t batch, uint32_t h, uint32_t w, plan **out, imgcls_errbuf *eb)
{
    int rc;
    plan *victim = &n->plans[0];
    for (size_t i = 0; i < NETWORK_MAX_RUNTIMES; i++) {
        plan *p = &n->plans[i];
        if (p->vals && p->batch == batch && p->h == h && p->w == w) {
            p->last_used = ++n->tick;
            *out = p;
            return 0;
        }
        if (!p->vals || (victim->vals && p->last_used < victim->last_used))
            victim = p;
    }
    plan_clear(victim);
    if (n->setup_plan == victim)
        n->setup_plan = NULL; /* the slot is about to hold another shape */
    rc = plan_build(n, victim, batch, h, w, eb);
    if (rc)
        return rc;
    victim->last_used = ++n->tick;
    *out = victim;
    return 0;
}

/* The last layer that reads each value; a value nobody reads dies where it is written. */
static int compute_last_use(native_net *n)
{
    const model_file *m = n->m;
    n->last_use = calloc(m->num_values, sizeof *n->last_use);
    if (!n->last_use)
        return IMGCLS_ENOMEM;
    for (size_t i = 0; i < m->nlayers; i++) {
        const model_layer *L = &m->layers[i];
        n->last_use[L->output] = (uint32_t)i;
        n->last_use[L->input[0]] = (uint32_t)i;
        if (L->op == MODEL_ADD)
            n->last_use[L->input[1]] = (uint32_t)i;
    }
    return 0;
}

int native_net_create(const model_file *m, unsigned threads, native_net **out, imgcls_errbuf *eb)
{
    int rc = 0;
    native_net *n = NULL;
    *out = NULL;
    /* xnn_initialize is idempotent and thread-safe (it runs its setup once). */
    enum xnn_status st = xnn_initialize(NULL);
    if (st != xnn_status_success)
        return imgcls_fail(eb, IMGCLS_EBACKEND, "XNNPACK cannot start on this CPU (status %d)", (int)st);
    n = calloc(1, sizeof *n);
    if (!n)
        return IMGCLS_ENOMEM;
    n->m = m;
    n->layers = calloc(m->nlayers ? m->nlayers : 1, sizeof *n->layers);
    if (!n->layers || (rc = compute_last_use(n))) {
        rc = IMGCLS_ENOMEM;
        goto out;
    }
    if (threads > 1 && !(n->pool = pthreadpool_create(threads))) {
        rc = imgcls_fail(eb, IMGCLS_ENOMEM, "cannot start %u threads", threads);
        goto out;
    }
    rc = create_layers(n, eb);
    if (!rc) {
        fuse_adds(n);
        fuse_blocks(n);
    }
out:
    if (rc) {
        native_net_destroy(n);
        n = NULL;
    }
    *out = n;
    return rc;
}

void native_net_destroy(native_net *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < NETWORK_MAX_RUNTIMES; i++)
        plan_clear(&n->plans[i]);
    destroy_layers(n);
    free(n->last_use);
    if (n->pool)
        pthreadpool_destroy(n->pool);
    free(n);
}

int native_net_prepare(native_net *n, size_t batch, uint32_t h, uint32_t w, imgcls_errbuf *eb)
{
    plan *p = NULL;
    return get_plan(n, batch, h, w, &p, eb);
}

int native_net_run(native_net *n, const float *input, size_t batch, uint32_t h, uint32_t w, float *logits,
                imgcls_errbuf *eb)
{
    plan *p = NULL;
    int rc = get_plan(n, batch, h, w, &p, eb);
    if (rc)
        return rc;
    run_ctx r = {.p = p, .input = input, .logits = logits};
    return run_layers(n, &r, eb);
}
