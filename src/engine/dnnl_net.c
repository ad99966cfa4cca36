/* The network on oneDNN 2.6 (dnnl_net.h). The only file that includes dnnl.h.
 *
 * A plan is built in two passes. The first walks the layers in order and creates each primitive
 * descriptor, with layouts `any` so that oneDNN picks its blocked formats (nChw8c on AVX2, nChw16c on
 * AVX-512); a value's memory descriptor is whatever its producer chose, and a consumer that wants
 * another layout gets a reorder into a temporary buffer first. Each buffer gets an offset in one arena,
 * first fit over the values' lifetimes (NETWORK_MAX_PLANS are kept). The second pass allocates the arena
 * and creates the memory objects and primitives. Running a plan is then one dnnl_primitive_execute per
 * step and one stream wait.
 *
 * Residual adds: a convolution without activation whose output only an add reads, where the add's other
 * input dies there too and is not the caller's input, becomes a convolution with a sum post-op writing into
 * that input's buffer (the add's output takes over the buffer). That is every add of MobileNetV2 and
 * ResNet; any other add is a binary primitive.
 *
 * Weights: the first plan (224x224, built by dnnl_net_create) reorders each layer's weights into the
 * layout its primitive chose. Later plans ask for that layout; oneDNN's convolutions pick theirs from the
 * channel counts and the ISA, not the image size, so it is taken (a plan whose primitive refuses it
 * fails with IMGCLS_EBACKEND rather than keep a second copy of the weights).
 *
 * Precision (network.h): assign_types gives each value a type -- f32, bf16, or u8 or s8 with a scale
 * from the weight file's calibrated range -- and each convolution its weight type; a consumer that wants
 * another type or scale than its input's gets a reorder that converts (as_md). int8 weights are
 * quantized per output channel by the weight reorder (its output scales), the bias is rescaled to the
 * accumulator's units, and the output scales and the residual sum's scale go into the convolution's
 * attribute.
 *
 * Threads: Debian builds oneDNN with OpenMP (libgomp). The thread count is an OpenMP ICV of the calling
 * thread, so it is set before every run (a worker's engine may be created on one thread and run on
 * another). oneDNN runs a parallel section with one thread as a plain call, so with threads=1 no OpenMP
 * team is ever started and nothing spins (checked: the process keeps one thread). With more, GOMP's
 * threads spin after each parallel region (OMP_WAIT_POLICY/GOMP_SPINCOUNT, read by libgomp when it loads,
 * so they can only be set from outside: docs/engine.md). */
#include "engine/dnnl_net.h"

#include "engine/network.h"

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define DNET_ALIGN 64

enum step_kind { STEP_CONV, STEP_BINARY, STEP_POOL, STEP_REORDER };
enum { ARG_BUF, ARG_WEIGHTS, ARG_BIAS };

typedef struct dnet_arg {
    int arg;    /* DNNL_ARG_* */
    int from;   /* ARG_BUF, or the layer's weights or bias */
    size_t buf; /* ARG_BUF: the buffer; else the layer */
} dnet_arg;

typedef struct dnet_step {
    dnnl_primitive_desc_t pd; /* pass 1 only */
    dnnl_primitive_t prim;
    size_t layer;
    int nargs;
    dnet_arg a[4];
} dnet_step;

/* A buffer: a value, a temporary reorder target, the caller's input or logits. */
typedef struct dnet_buf {
    dnnl_memory_desc_t md;
    size_t offset, size; /* bytes into the arena; size 0: the caller's */
    dnnl_memory_t mem;
} dnet_buf;

typedef struct dnet_plan {
    size_t batch;
    uint32_t h, w;
    uint64_t last_used;
    dnet_step *steps;
    size_t nsteps;
    dnet_buf *bufs;
    size_t nbufs, in_buf, out_buf;
    void *arena;
    size_t bytes;
} dnet_plan;

/* A value's types. dt and scale: how it is stored (real = scale x stored; 1 unless u8 or s8). int8 only:
 * qdt and qscale, its int8 form from the calibrated range, which an int8 convolution reads it as (the
 * same as dt and scale when an int8 convolution wrote it). */
typedef struct dnet_value {
    dnnl_data_type_t dt, qdt;
    float scale, qscale;
} dnet_value;

typedef struct dnet_layer {
    int sum;       /* a convolution that performs the next layer (an add) as a sum post-op */
    int fused;     /* an add that the previous convolution performs */
    dnnl_data_type_t wdt; /* a convolution's weights: f32, bf16 or s8 */
    float *oscale;        /* s8 weights: per output channel, src scale x weight scale / dst scale */
    float *wscale;        /* s8 weights: per output channel, real weight = wscale x stored */
    dnnl_memory_t w, b;   /* reordered once; NULL until the first plan */
} dnet_layer;

struct dnnl_net {
    const model_file *m;
    int threads;
    network_precision prec;
    dnet_value *vals;
    dnnl_engine_t eng;
    dnnl_stream_t strm;
    dnet_layer *layers;
    uint32_t *last_use;
    dnet_plan plans[NETWORK_MAX_PLANS];
    uint64_t tick;
};

/* Plan-building state of pass 1. */
typedef struct builder {
    dnnl_net *n;
    dnet_plan *p;
    size_t *val_buf;  /* per value: its buffer */
    size_t *live;     /* buffers alive in the arena, by offset */
    size_t nlive, top, cap_steps, cap_bufs;
    uint32_t *buf_last; /* per buffer: the last layer that uses it */
    imgcls_errbuf *eb;
} builder;

#define DCHECK(call, what)                                                                                   \
    do {                                                                                                     \
        dnnl_status_t st_ = (call);                                                                          \
        if (st_ != dnnl_success)                                                                             \
            return imgcls_fail(b->eb, st_ == dnnl_unimplemented ? IMGCLS_EUNSUPPORTED : IMGCLS_EBACKEND,     \
                               "layer %zu: oneDNN %s: %s", layer, what, dnnl_status2str(st_));               \
    } while (0)

const char *dnnl_net_isa(void)
{
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
    }
}

/* ---- pass 1: buffers and primitive descriptors ---------------------------------------------------- */

static int add_buf(builder *b, const dnnl_memory_desc_t *md, uint32_t last, size_t *out)
{
    dnet_plan *p = b->p;
    if (p->nbufs == b->cap_bufs) {
        size_t cap = b->cap_bufs ? 2 * b->cap_bufs : 64;
        dnet_buf *nb = realloc(p->bufs, cap * sizeof *nb);
        uint32_t *nl = nb ? realloc(b->buf_last, cap * sizeof *nl) : NULL;
        if (nb)
            p->bufs = nb;
        if (!nl)
            return IMGCLS_ENOMEM;
        b->buf_last = nl;
        b->cap_bufs = cap;
    }
    memset(&p->bufs[p->nbufs], 0, sizeof p->bufs[0]);
    p->bufs[p->nbufs].md = *md;
    b->buf_last[p->nbufs] = last;
    *out = p->nbufs++;
    return 0;
}

/* First fit, as network.c's arena_place: the lowest offset where the buffer overlaps no live one. */
static void place(builder *b, size_t id)
{
    dnet_buf *bufs = b->p->bufs;
    size_t size = (dnnl_memory_desc_get_size(&bufs[id].md) + DNET_ALIGN - 1) / DNET_ALIGN * DNET_ALIGN;
    size_t at = 0, i = 0;
    for (; i < b->nlive; i++) {
        const dnet_buf *q = &bufs[b->live[i]];
        if (q->offset >= at + size)
            break;
        if (q->offset + q->size > at)
            at = q->offset + q->size;
    }
    memmove(b->live + i + 1, b->live + i, (b->nlive - i) * sizeof *b->live);
    b->live[i] = id;
    b->nlive++;
    bufs[id].offset = at;
    bufs[id].size = size ? size : DNET_ALIGN;
    b->top = at + bufs[id].size > b->top ? at + bufs[id].size : b->top;
}

static void free_dead(builder *b, size_t layer)
{
    size_t j = 0;
    for (size_t i = 0; i < b->nlive; i++)
        if (b->buf_last[b->live[i]] > layer)
            b->live[j++] = b->live[i];
    b->nlive = j;
}

static int add_step(builder *b, size_t layer, dnnl_primitive_desc_t pd, int nargs, const dnet_arg *a)
{
    dnet_plan *p = b->p;
    if (p->nsteps == b->cap_steps) {
        size_t cap = b->cap_steps ? 2 * b->cap_steps : 64;
        dnet_step *ns = realloc(p->steps, cap * sizeof *ns);
        if (!ns) {
            dnnl_primitive_desc_destroy(pd);
            return IMGCLS_ENOMEM;
        }
        p->steps = ns;
        b->cap_steps = cap;
    }
    dnet_step *s = &p->steps[p->nsteps++];
    memset(s, 0, sizeof *s);
    s->pd = pd;
    s->layer = layer;
    s->nargs = nargs;
    memcpy(s->a, a, (size_t)nargs * sizeof *a);
    return 0;
}

/* An attribute with output scales (a reorder's dst = scale x src; a convolution's dst = scale x
 * (accumulator + bias)): one scale (mask 0) or one per index of the dims in mask. NULL if out of memory. */
static dnnl_primitive_attr_t scales_attr(size_t count, int mask, const float *scales)
{
    dnnl_primitive_attr_t attr = NULL;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success)
        return NULL;
    if (dnnl_primitive_attr_set_output_scales(attr, (dnnl_dim_t)count, mask, scales) != dnnl_success) {
        dnnl_primitive_attr_destroy(attr);
        return NULL;
    }
    return attr;
}

/* md with another data type; the layout (strides are in elements) stays. */
static dnnl_memory_desc_t md_typed(const dnnl_memory_desc_t *md, dnnl_data_type_t dt)
{
    dnnl_memory_desc_t r = *md;
    r.data_type = dt;
    return r;
}

/* A reorder's attribute from scale `from` to scale `to`: dst = from / to x src. */
static dnnl_primitive_attr_t convert_attr(float from, float to)
{
    float ratio = from / to;
    return scales_attr(1, 0, &ratio);
}

/* Makes buffer `src`, whose contents mean real numbers by scale `from`, readable as md meaning them by
 * scale `to`: itself, or a reorder step (converting the type and the scale) into a temporary that dies
 * at `layer`. */
static int as_md(builder *b, size_t layer, size_t src, float from, const dnnl_memory_desc_t *md, float to,
                 size_t *out)
{
    int same = from == to;
    if (dnnl_memory_desc_equal(&b->p->bufs[src].md, md) && same) {
        *out = src;
        return 0;
    }
    dnnl_primitive_attr_t attr = same ? NULL : convert_attr(from, to);
    if (!same && !attr)
        return IMGCLS_ENOMEM;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&pd, &b->p->bufs[src].md, b->n->eng, md, b->n->eng, attr);
    dnnl_primitive_attr_destroy(attr);
    DCHECK(st, "reorder");
    int rc = add_buf(b, md, (uint32_t)layer, out);
    if (!rc) {
        place(b, *out);
        dnet_arg a[2] = {{DNNL_ARG_SRC, ARG_BUF, src}, {DNNL_ARG_DST, ARG_BUF, *out}};
        return add_step(b, layer, pd, 2, a);
    }
    dnnl_primitive_desc_destroy(pd);
    return rc;
}

static int append_act(dnnl_post_ops_t po, enum model_act act, float dst_scale)
{
    if (act == MODEL_ACT_RELU)
        return dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f) != dnnl_success;
    if (act == MODEL_ACT_RELU6)
        return dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_clip, 0.0f, 6.0f / dst_scale) != dnnl_success;
    return 0;
}

/* What a layer's attribute holds: its activation; a residual sum (dst = conv + sum_scale x dst) when
 * sum_scale is not 0; for int8, per-channel output scales. dst_scale: the destination's (1 unless int8). */
typedef struct attr_spec {
    enum model_act act;
    float sum_scale;
    const float *oscale; /* NULL: none */
    size_t channels;
    float dst_scale;
} attr_spec;

/* Post-ops apply after the output scales: on an int8 destination ReLU6's 6 is 6 / dst scale. */
static dnnl_primitive_attr_t make_attr(const attr_spec *a)
{
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success)
        return NULL;
    int bad = dnnl_post_ops_create(&po) != dnnl_success;
    if (!bad && a->oscale)
        bad = dnnl_primitive_attr_set_output_scales(attr, (dnnl_dim_t)a->channels, 1 << 1, a->oscale) != dnnl_success;
    if (!bad && a->sum_scale != 0)
        bad = dnnl_post_ops_append_sum(po, a->sum_scale) != dnnl_success;
    if (!bad)
        bad = append_act(po, a->act, a->dst_scale) || dnnl_primitive_attr_set_post_ops(attr, po) != dnnl_success;
    dnnl_post_ops_destroy(po);
    if (bad) {
        dnnl_primitive_attr_destroy(attr);
        return NULL;
    }
    return attr;
}

/* The weights as they lie in the file (docs/weight-format.md): OHWI, or for a depthwise convolution (the
 * only grouped one the file allows) [1][kh][kw][channels], i.e. dims g,1,1,kh,kw with g innermost. */
static void user_weights_md(const model_layer *L, dnnl_memory_desc_t *md)
{
    uint32_t g = L->op == MODEL_LINEAR ? 1 : L->groups, kh = L->op == MODEL_LINEAR ? 1 : L->kernel[0];
    uint32_t kw = L->op == MODEL_LINEAR ? 1 : L->kernel[1];
    if (g > 1) {
        dnnl_dims_t d = {g, 1, 1, kh, kw}, st = {1, (int64_t)kh * kw * g, (int64_t)kh * kw * g, (int64_t)kw * g, g};
        dnnl_memory_desc_init_by_strides(md, 5, d, dnnl_f32, st);
    } else {
        dnnl_dims_t d = {L->out_channels, L->in_channels, kh, kw};
        dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, dnnl_ohwi);
    }
}

static size_t window_out(int64_t in, uint32_t pad_a, uint32_t pad_b, uint32_t k, uint32_t dil, uint32_t stride)
{
    int64_t span = (int64_t)dil * (k - 1) + 1, padded = in + pad_a + pad_b;
    return padded < span ? 0 : (size_t)((padded - span) / stride + 1);
}

/* The layer's weights and bias in the layout pd chose, reordered once (the first plan). */
static int make_weights(builder *b, size_t layer, const_dnnl_primitive_desc_t pd)
{
    dnet_layer *x = &b->n->layers[layer];
    const model_layer *L = &b->n->m->layers[layer];
    if (x->w)
        return 0;
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *bmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1);
    dnnl_memory_desc_t umd;
    user_weights_md(L, &umd);
    dnnl_memory_t user = NULL;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t r = NULL;
    void *bias = NULL;
    dnnl_primitive_attr_t attr = NULL;
    DCHECK(dnnl_memory_create(&x->w, wmd, b->n->eng, DNNL_MEMORY_ALLOCATE), "weights memory");
    DCHECK(dnnl_memory_create(&x->b, bmd, b->n->eng, DNNL_MEMORY_ALLOCATE), "bias memory");
    DCHECK(dnnl_memory_get_data_handle(x->b, &bias), "bias memory");
    memcpy(bias, L->bias->data, L->out_channels * sizeof(float));
    if (x->wdt == dnnl_s8) {
        /* stored = weight / wscale, one scale per output channel (dims 0, or g and 1 for depthwise); the
         * bias is added to the accumulator before the output scale (oneDNN 2.x), so in its units */
        float *inv = malloc(L->out_channels * sizeof *inv), s_in = b->n->vals[L->input[0]].qscale;
        for (size_t o = 0; inv && o < L->out_channels; o++) {
            inv[o] = 1.0f / x->wscale[o];
            ((float *)bias)[o] /= s_in * x->wscale[o];
        }
        attr = inv ? scales_attr(L->out_channels, L->groups > 1 ? 3 : 1, inv) : NULL;
        free(inv);
        if (!attr)
            return IMGCLS_ENOMEM;
    }
    /* The reorder only reads the file's mapping; the handle is not const in the C API. */
    dnnl_status_t st = dnnl_memory_create(&user, &umd, b->n->eng, (void *)(uintptr_t)L->weight->data);
    if (st == dnnl_success)
        st = dnnl_reorder_primitive_desc_create(&rpd, &umd, b->n->eng, wmd, b->n->eng, attr);
    dnnl_primitive_attr_destroy(attr);
    if (st == dnnl_success)
        st = dnnl_primitive_create(&r, rpd);
    if (st == dnnl_success) {
        dnnl_exec_arg_t a[2] = {{DNNL_ARG_SRC, user}, {DNNL_ARG_DST, x->w}};
        st = dnnl_primitive_execute(r, b->n->strm, 2, a);
    }
    if (st == dnnl_success)
        st = dnnl_stream_wait(b->n->strm);
    dnnl_primitive_destroy(r);
    dnnl_primitive_desc_destroy(rpd);
    dnnl_memory_destroy(user);
    DCHECK(st, "weights reorder");
    return 0;
}

/* The add that layer i's convolution performs as a sum post-op, and the value it sums into. */
static const model_layer *sum_of(const dnnl_net *n, size_t i, uint32_t *res)
{
    if (!n->layers[i].sum)
        return NULL;
    const model_layer *L = &n->m->layers[i], *A = &n->m->layers[i + 1];
    *res = A->input[A->input[0] == L->output ? 1 : 0];
    return A;
}

/* What a convolution reads its input as: its weights' type, or for s8 weights the input's int8 form. */
static dnnl_data_type_t src_type(const dnnl_net *n, size_t layer)
{
    const dnet_layer *x = &n->layers[layer];
    return x->wdt == dnnl_s8 ? n->vals[n->m->layers[layer].input[0]].qdt : x->wdt;
}

static float src_scale(const dnnl_net *n, size_t layer)
{
    return n->layers[layer].wdt == dnnl_s8 ? n->vals[n->m->layers[layer].input[0]].qscale : 1.0f;
}

static int conv_desc(builder *b, size_t layer, const dnnl_memory_desc_t *in, dnnl_primitive_desc_t *pd)
{
    const model_layer *L = &b->n->m->layers[layer];
    int lin = L->op == MODEL_LINEAR;
    uint32_t res = 0, kh = lin ? 1 : L->kernel[0], kw = lin ? 1 : L->kernel[1];
    const model_layer *A = sum_of(b->n, layer, &res);
    int64_t N = in->dims[0], H = in->dims[2], W = in->dims[3];
    size_t oh = lin ? (size_t)H : window_out(H, L->pad[0], L->pad[2], kh, L->dilation[0], L->stride[0]);
    size_t ow = lin ? (size_t)W : window_out(W, L->pad[1], L->pad[3], kw, L->dilation[1], L->stride[1]);
    if (!oh || !ow || in->dims[1] != (int64_t)L->in_channels)
        return imgcls_fail(b->eb, IMGCLS_EINVAL, "layer %zu: the image is too small for this network", layer);
    dnnl_dims_t sd = {N, L->in_channels, H, W}, dd = {N, L->out_channels, (int64_t)oh, (int64_t)ow};
    dnnl_dims_t bd = {L->out_channels}, st = {lin ? 1 : L->stride[0], lin ? 1 : L->stride[1]};
    dnnl_dims_t dil = {lin ? 0 : L->dilation[0] - 1, lin ? 0 : L->dilation[1] - 1};
    dnnl_dims_t pl = {lin ? 0 : L->pad[0], lin ? 0 : L->pad[1]}, pr = {lin ? 0 : L->pad[2], lin ? 0 : L->pad[3]};
    const dnet_layer *x = &b->n->layers[layer];
    const dnet_value *out = &b->n->vals[A ? A->output : L->output];
    dnnl_memory_desc_t smd, wmd, bmd, dmd;
    DCHECK(dnnl_memory_desc_init_by_tag(&smd, 4, sd, src_type(b->n, layer), dnnl_format_tag_any), "src md");
    user_weights_md(L, &wmd);
    if (x->w) {
        const dnnl_memory_desc_t *have = NULL;
        DCHECK(dnnl_memory_get_memory_desc(x->w, &have), "weights md");
        wmd = *have;
    } else {
        DCHECK(dnnl_memory_desc_init_by_tag(&wmd, wmd.ndims, wmd.dims, x->wdt, dnnl_format_tag_any), "weights md");
    }
    DCHECK(dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_x), "bias md");
    if (A) {
        dmd = b->p->bufs[b->val_buf[res]].md;
        if (memcmp(dmd.dims, dd, 4 * sizeof dd[0]))
            return imgcls_fail(b->eb, IMGCLS_EINVAL, "layer %zu: the inputs of add differ in size", layer + 1);
    } else {
        DCHECK(dnnl_memory_desc_init_by_tag(&dmd, 4, dd, out->dt, dnnl_format_tag_any), "dst md");
    }
    dnnl_convolution_desc_t cd;
    DCHECK(dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct, &smd,
                                                      &wmd, &bmd, &dmd, st, dil, pl, pr),
           "convolution");
    attr_spec as = {.act = A ? A->act : L->act, .oscale = x->oscale, .channels = L->out_channels,
                    .dst_scale = out->scale};
    if (A)
        as.sum_scale = b->n->vals[res].scale / out->scale;
    dnnl_primitive_attr_t attr = make_attr(&as);
    if (!attr)
        return imgcls_fail(b->eb, IMGCLS_EBACKEND, "layer %zu: oneDNN post-ops", layer);
    dnnl_status_t s = dnnl_primitive_desc_create(pd, &cd, attr, b->n->eng, NULL);
    dnnl_primitive_attr_destroy(attr);
    DCHECK(s, "convolution");
    return 0;
}

static int build_conv(builder *b, size_t layer)
{
    const model_layer *L = &b->n->m->layers[layer];
    size_t in = b->val_buf[L->input[0]], src = 0, dst = 0;
    uint32_t res = 0;
    const model_layer *A = sum_of(b->n, layer, &res);
    dnnl_primitive_desc_t pd = NULL;
    int rc = conv_desc(b, layer, &b->p->bufs[in].md, &pd);
    if (!rc)
        rc = make_weights(b, layer, pd);
    if (!rc)
        rc = as_md(b, layer, in, b->n->vals[L->input[0]].scale, dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0),
                   src_scale(b->n, layer), &src);
    if (!rc && A) {
        dst = b->val_buf[res]; /* in place: the add's output takes over the residual's buffer */
        b->val_buf[A->output] = dst;
        b->buf_last[dst] = b->n->last_use[A->output];
    } else if (!rc) {
        rc = add_buf(b, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0), b->n->last_use[L->output], &dst);
        if (!rc) {
            place(b, dst);
            b->val_buf[L->output] = dst;
        }
    }
    if (rc) {
        dnnl_primitive_desc_destroy(pd);
        return rc;
    }
    dnet_arg a[4] = {{DNNL_ARG_SRC, ARG_BUF, src}, {DNNL_ARG_WEIGHTS, ARG_WEIGHTS, layer},
                     {DNNL_ARG_BIAS, ARG_BIAS, layer}, {DNNL_ARG_DST, ARG_BUF, dst}};
    return add_step(b, layer, pd, 4, a);
}

/* An add that no convolution could absorb: a binary primitive, its second input in the first's layout. */
static int build_add(builder *b, size_t layer)
{
    const model_layer *L = &b->n->m->layers[layer];
    size_t in0 = b->val_buf[L->input[0]], in1 = b->val_buf[L->input[1]], src0 = 0, src1 = 0, dst = 0;
    dnnl_memory_desc_t md0 = md_typed(&b->p->bufs[in0].md, dnnl_f32); /* in fp32, whatever its inputs are */
    if (memcmp(md0.dims, b->p->bufs[in1].md.dims, 4 * sizeof md0.dims[0]))
        return imgcls_fail(b->eb, IMGCLS_EINVAL, "layer %zu: the inputs of add differ in size", layer);
    int rc = as_md(b, layer, in0, b->n->vals[L->input[0]].scale, &md0, 1.0f, &src0);
    if (!rc)
        rc = as_md(b, layer, in1, b->n->vals[L->input[1]].scale, &md0, 1.0f, &src1);
    if (rc)
        return rc;
    dnnl_binary_desc_t bd;
    DCHECK(dnnl_binary_desc_init(&bd, dnnl_binary_add, &md0, &md0, &md0), "add");
    attr_spec as = {.act = L->act, .dst_scale = 1.0f};
    dnnl_primitive_attr_t attr = make_attr(&as);
    if (!attr)
        return imgcls_fail(b->eb, IMGCLS_EBACKEND, "layer %zu: oneDNN post-ops", layer);
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t s = dnnl_primitive_desc_create(&pd, &bd, attr, b->n->eng, NULL);
    dnnl_primitive_attr_destroy(attr);
    DCHECK(s, "add");
    if ((rc = add_buf(b, &md0, b->n->last_use[L->output], &dst))) {
        dnnl_primitive_desc_destroy(pd);
        return rc;
    }
    place(b, dst);
    b->val_buf[L->output] = dst;
    dnet_arg a[3] = {{DNNL_ARG_SRC_0, ARG_BUF, src0}, {DNNL_ARG_SRC_1, ARG_BUF, src1},
                     {DNNL_ARG_DST, ARG_BUF, dst}};
    return add_step(b, layer, pd, 3, a);
}

static int build_pool(builder *b, size_t layer)
{
    const model_layer *L = &b->n->m->layers[layer];
    size_t in = b->val_buf[L->input[0]], dst = 0;
    int gap = L->op == MODEL_GLOBAL_AVG_POOL;
    if (gap) { /* averages in fp32: an int8 average would round each channel's mean to the input's steps */
        dnnl_memory_desc_t f = md_typed(&b->p->bufs[in].md, dnnl_f32);
        int rc = as_md(b, layer, in, b->n->vals[L->input[0]].scale, &f, 1.0f, &in);
        if (rc)
            return rc;
    }
    const dnnl_memory_desc_t *smd = &b->p->bufs[in].md;
    int64_t H = smd->dims[2], W = smd->dims[3];
    size_t oh = gap ? 1 : window_out(H, L->pad[0], L->pad[2], L->kernel[0], L->dilation[0], L->stride[0]);
    size_t ow = gap ? 1 : window_out(W, L->pad[1], L->pad[3], L->kernel[1], L->dilation[1], L->stride[1]);
    if (!oh || !ow)
        return imgcls_fail(b->eb, IMGCLS_EINVAL, "layer %zu: the image is too small for this network", layer);
    if (!gap && (L->dilation[0] != 1 || L->dilation[1] != 1))
        return imgcls_fail(b->eb, IMGCLS_EUNSUPPORTED, "layer %zu: dilated max pooling", layer);
    dnnl_dims_t dd = {smd->dims[0], smd->dims[1], (int64_t)oh, (int64_t)ow};
    dnnl_dims_t st = {gap ? 1 : L->stride[0], gap ? 1 : L->stride[1]};
    dnnl_dims_t k = {gap ? H : L->kernel[0], gap ? W : L->kernel[1]};
    dnnl_dims_t pl = {gap ? 0 : L->pad[0], gap ? 0 : L->pad[1]}, pr = {gap ? 0 : L->pad[2], gap ? 0 : L->pad[3]};
    dnnl_memory_desc_t dmd;
    DCHECK(dnnl_memory_desc_init_by_tag(&dmd, 4, dd, smd->data_type, dnnl_format_tag_any), "dst md");
    dnnl_pooling_desc_t pdsc;
    DCHECK(dnnl_pooling_forward_desc_init(&pdsc, dnnl_forward_inference,
                                          gap ? dnnl_pooling_avg_exclude_padding : dnnl_pooling_max, smd, &dmd, st,
                                          k, pl, pr),
           "pooling");
    attr_spec as = {.act = L->act, .dst_scale = 1.0f};
    dnnl_primitive_attr_t attr = make_attr(&as);
    if (!attr)
        return imgcls_fail(b->eb, IMGCLS_EBACKEND, "layer %zu: oneDNN post-ops", layer);
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t s = dnnl_primitive_desc_create(&pd, &pdsc, attr, b->n->eng, NULL);
    dnnl_primitive_attr_destroy(attr);
    DCHECK(s, "pooling");
    int rc = add_buf(b, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0), b->n->last_use[L->output], &dst);
    if (rc) {
        dnnl_primitive_desc_destroy(pd);
        return rc;
    }
    place(b, dst);
    b->val_buf[L->output] = dst;
    dnet_arg a[2] = {{DNNL_ARG_SRC, ARG_BUF, in}, {DNNL_ARG_DST, ARG_BUF, dst}};
    return add_step(b, layer, pd, 2, a);
}

static int build_layers(builder *b)
{
    const model_file *m = b->n->m;
    dnet_plan *p = b->p;
    dnnl_dims_t id = {(int64_t)p->batch, 3, p->h, p->w};
    dnnl_memory_desc_t imd;
    size_t layer = 0;
    DCHECK(dnnl_memory_desc_init_by_tag(&imd, 4, id, dnnl_f32, dnnl_nhwc), "input md");
    int rc = add_buf(b, &imd, m->nlayers ? b->n->last_use[0] : 0, &p->in_buf); /* the caller's; not placed */
    b->val_buf[0] = p->in_buf;
    for (layer = 0; layer < m->nlayers && !rc; layer++) {
        const model_layer *L = &m->layers[layer];
        if (b->n->layers[layer].fused)
            continue;
        if (L->op == MODEL_CONV2D || L->op == MODEL_LINEAR)
            rc = build_conv(b, layer);
        else if (L->op == MODEL_ADD)
            rc = build_add(b, layer);
        else
            rc = build_pool(b, layer);
        free_dead(b, layer);
    }
    if (rc)
        return rc;
    /* The logits go to the caller's buffer, NHWC (for a 1x1 output: batch x classes). */
    const dnnl_memory_desc_t *omd = &p->bufs[b->val_buf[m->output]].md;
    dnnl_memory_desc_t umd;
    DCHECK(dnnl_memory_desc_init_by_tag(&umd, 4, omd->dims, dnnl_f32, dnnl_nhwc), "output md");
    if (umd.dims[2] * umd.dims[3] * umd.dims[1] != (int64_t)m->num_classes)
        return imgcls_fail(b->eb, IMGCLS_EINVAL, "the network's output is not %zu logits for this image",
                           m->num_classes);
    if ((rc = add_buf(b, &umd, (uint32_t)m->nlayers, &p->out_buf)))
        return rc;
    float oscale = b->n->vals[m->output].scale;
    int real = oscale == 1.0f;
    dnnl_primitive_attr_t attr = real ? NULL : convert_attr(oscale, 1.0f);
    if (!real && !attr)
        return IMGCLS_ENOMEM;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&pd, omd, b->n->eng, &umd, b->n->eng, attr);
    dnnl_primitive_attr_destroy(attr);
    DCHECK(st, "output reorder");
    dnet_arg a[2] = {{DNNL_ARG_SRC, ARG_BUF, b->val_buf[m->output]}, {DNNL_ARG_DST, ARG_BUF, p->out_buf}};
    return add_step(b, layer, pd, 2, a);
}

/* Pass 2: the arena, a memory object per buffer, a primitive per step. */
static int realize(dnnl_net *n, dnet_plan *p, size_t top, imgcls_errbuf *eb)
{
    size_t layer = 0;
    builder bb = {.eb = eb}, *b = &bb;
    p->bytes = top;
    p->arena = aligned_alloc(DNET_ALIGN, top ? top : DNET_ALIGN);
    if (!p->arena)
        return imgcls_fail(eb, IMGCLS_ENOMEM, "no memory for the activations of %zu images of %ux%u", p->batch,
                           p->w, p->h);
    for (size_t i = 0; i < p->nbufs; i++) {
        int user = i == p->in_buf || i == p->out_buf;
        DCHECK(dnnl_memory_create(&p->bufs[i].mem, &p->bufs[i].md, n->eng,
                                  user ? DNNL_MEMORY_NONE : (char *)p->arena + p->bufs[i].offset),
               "memory");
    }
    for (size_t i = 0; i < p->nsteps; i++) {
        dnet_step *s = &p->steps[i];
        layer = s->layer;
        DCHECK(dnnl_primitive_create(&s->prim, s->pd), "primitive");
        dnnl_primitive_desc_destroy(s->pd);
        s->pd = NULL;
    }
    return 0;
}

static void plan_clear(dnet_plan *p)
{
    for (size_t i = 0; i < p->nsteps; i++) {
        dnnl_primitive_destroy(p->steps[i].prim);
        dnnl_primitive_desc_destroy(p->steps[i].pd);
    }
    for (size_t i = 0; i < p->nbufs; i++)
        dnnl_memory_destroy(p->bufs[i].mem);
    free(p->steps);
    free(p->bufs);
    free(p->arena);
    memset(p, 0, sizeof *p);
}

static int plan_build(dnnl_net *n, dnet_plan *p, size_t batch, uint32_t h, uint32_t w, imgcls_errbuf *eb)
{
    builder b = {.n = n, .p = p, .eb = eb};
    int rc = 0;
    p->batch = batch;
    p->h = h;
    p->w = w;
    b.val_buf = calloc(n->m->num_values, sizeof *b.val_buf);
    b.live = calloc(4 * (size_t)n->m->nlayers + 8, sizeof *b.live);
    if (!b.val_buf || !b.live) {
        rc = IMGCLS_ENOMEM;
        goto out;
    }
    omp_set_num_threads(n->threads);
    if (!(rc = build_layers(&b)))
        rc = realize(n, p, b.top, eb);
out:
    free(b.val_buf);
    free(b.live);
    free(b.buf_last);
    if (rc)
        plan_clear(p);
    return rc;
}

static int get_plan(dnnl_net *n, size_t batch, uint32_t h, uint32_t w, dnet_plan **out, imgcls_errbuf *eb)
{
    int rc;
    dnet_plan *victim = &n->plans[0];
    for (size_t i = 0; i < NETWORK_MAX_PLANS; i++) {
        dnet_plan *p = &n->plans[i];
        if (p->steps && p->batch == batch && p->h == h && p->w == w) {
            p->last_used = ++n->tick;
            *out = p;
            return 0;
        }
        if (!p->steps || (victim->steps && p->last_used < victim->last_used))
            victim = p;
    }
    plan_clear(victim);
    if ((rc = plan_build(n, victim, batch, h, w, eb)))
        return rc;
    victim->last_used = ++n->tick;
    *out = victim;
    return 0;
}

/* Marks each convolution that can do the add after it as a sum post-op (the file's comment says when). */
static void mark_sums(dnnl_net *n)
{
    const model_file *m = n->m;
    for (size_t i = 0; i + 1 < m->nlayers; i++) {
        const model_layer *L = &m->layers[i], *A = &m->layers[i + 1];
        if ((L->op != MODEL_CONV2D && L->op != MODEL_LINEAR) || L->act != MODEL_ACT_NONE || A->op != MODEL_ADD ||
            A->input[0] == A->input[1] || (A->input[0] != L->output && A->input[1] != L->output) ||
            L->output == m->output || n->last_use[L->output] != i + 1)
            continue;
        uint32_t res = A->input[A->input[0] == L->output ? 1 : 0];
        if (res == 0 || res == L->input[0] || n->last_use[res] != i + 1)
            continue;
        n->layers[i].sum = 1;
        n->layers[i + 1].fused = 1;
    }
}

static int has_isa(dnnl_cpu_isa_t isa)
{
    return ((unsigned)dnnl_get_effective_cpu_isa() & (unsigned)isa) == (unsigned)isa; /* the ISAs nest as bit sets */
}

int dnnl_net_bf16_fast(void)
{
    return has_isa(dnnl_cpu_isa_avx512_core_amx);
}

/* A value's int8 form, from its calibrated range, with 0 stored as 0 (padding must represent it exactly,
 * and no zero points are needed): u8 over 0..hi when the range holds no negative number (after a ReLU),
 * else s8 over -max|x|..max|x|. Not u8 with a zero point for the signed values: on AMX, oneDNN 2.6's
 * brgemm convolutions take no source zero point, and the older AMX kernels it falls back to ran the
 * network at 4.1 ms against 2.3-2.7 (make bench, Xeon with AMX); the agreement with fp32 on the held-out
 * photos was within a photo or three either way (imagenet top-1 88.2% both; reference 61.8% against
 * 70.6% on AMX, 55.9% against 50.0% capped to AVX2), where bf16 itself disagrees as often. */
static void int8_form(const model_file *m, uint32_t v, dnet_value *x)
{
    float lo = m->ranges[2 * v], hi = m->ranges[2 * v + 1];
    float top = lo < 0 ? (-lo > hi ? -lo : hi) : hi > 0 ? hi : 0;
    x->qdt = lo < 0 ? dnnl_s8 : dnnl_u8;
    x->qscale = top > 0 ? top / (lo < 0 ? 127.0f : 255.0f) : 1.0f;
}

/* Per output channel of an int8 convolution: wscale from the largest |weight|, and the output scale.
 * On a CPU without VNNI, oneDNN's u8 x s8 kernels add pairs of products in 16 bits (VPMADDUBSW), which
 * can saturate, and oneDNN leaves avoiding that to the user ("Nuances of int8 computations" in its
 * guide): there the weights get 7 bits. Not the depthwise ones: measured on AVX2 (Zen 3), their error
 * with 8-bit weights was a fifth of that with 7, which saturation would not allow. */
static int int8_scales(dnnl_net *n, size_t i, float s_out)
{
    const model_layer *L = &n->m->layers[i];
    dnet_layer *x = &n->layers[i];
    size_t oc = L->out_channels, per = L->weight->count / oc;
    int dw = L->op == MODEL_CONV2D && L->groups > 1;
    const dnet_value *in = &n->vals[L->input[0]];
    int vnni = has_isa(dnnl_cpu_isa_avx512_core_vnni) || has_isa(dnnl_cpu_isa_avx2_vnni);
    float steps = !vnni && !dw ? 63.0f : 127.0f;
    x->wscale = malloc(oc * sizeof *x->wscale);
    x->oscale = malloc(oc * sizeof *x->oscale);
    if (!x->wscale || !x->oscale)
        return IMGCLS_ENOMEM;
    for (size_t o = 0; o < oc; o++) {
        float mx = 0;
        for (size_t k = 0; k < per; k++) { /* OHWI: o's weights in a row; depthwise [1][kh][kw][C]: strided */
            float w = L->weight->data[dw ? k * oc + o : o * per + k];
            mx = w > mx ? w : -w > mx ? -w : mx;
        }
        x->wscale[o] = mx > 0 ? mx / steps : 1.0f;
        x->oscale[o] = in->qscale * x->wscale[o] / s_out;
    }
    return 0;
}

/* Each value's type and each convolution's weight type, for n->prec. fp32: everything f32. bf16 and int8:
 * every convolution in that precision except the one that writes the logits (which stays fp32, so
 * they are not rounded) and those the weight file's calibration lists as fp32_layers; pooling keeps
 * its input's type (average pooling computes in f32), an add that no convolution absorbs computes in
 * f32. A residual sum needs the residual stored in the type the
 * convolution writes, or it is not fused. */
static int assign_types(dnnl_net *n)
{
    const model_file *m = n->m;
    int int8 = n->prec == NETWORK_INT8, rc = 0;
    n->vals = calloc(m->num_values, sizeof *n->vals);
    if (!n->vals)
        return IMGCLS_ENOMEM;
    for (uint32_t v = 0; v < m->num_values; v++)
        n->vals[v] = (dnet_value){.dt = dnnl_f32, .qdt = dnnl_f32, .scale = 1.0f, .qscale = 1.0f};
    for (uint32_t v = 0; int8 && v < m->num_values; v++)
        int8_form(m, v, &n->vals[v]);
    for (size_t i = 0; i < m->nlayers && !rc; i++) {
        const model_layer *L = &m->layers[i];
        dnet_layer *x = &n->layers[i];
        dnet_value *out = &n->vals[L->output], *in = &n->vals[L->input[0]];
        if (x->fused)
            continue;
        if (L->op == MODEL_MAX_POOL2D) {
            out->dt = in->dt;
            out->scale = in->scale;
            continue;
        }
        if (L->op != MODEL_CONV2D && L->op != MODEL_LINEAR)
            continue; /* f32 */
        uint32_t res = 0;
        const model_layer *A = sum_of(n, i, &res);
        if (A)
            out = &n->vals[A->output];
        int low = n->prec != NETWORK_FP32 && (A ? A->output : L->output) != m->output && !L->keep_fp32;
        dnnl_data_type_t dt = !low ? dnnl_f32 : int8 ? out->qdt : dnnl_bf16;
        if (A && dt != n->vals[res].dt) { /* the add runs on its own, in f32 */
            x->sum = 0;
            n->layers[i + 1].fused = 0;
            out = &n->vals[L->output];
            dt = !low ? dnnl_f32 : int8 ? out->qdt : dnnl_bf16;
        }
        x->wdt = !low ? dnnl_f32 : int8 ? dnnl_s8 : dnnl_bf16;
        out->dt = dt;
        out->scale = int8 && low ? out->qscale : 1.0f;
        if (x->wdt == dnnl_s8)
            rc = int8_scales(n, i, out->scale);
    }
    return rc;
}

static int compute_last_use(dnnl_net *n)
{
    const model_file *m = n->m;
    n->last_use = calloc(m->num_values ? m->num_values : 1, sizeof *n->last_use);
    if (!n->last_use)
        return IMGCLS_ENOMEM;
    for (size_t i = 0; i < m->nlayers; i++) {
        const model_layer *L = &m->layers[i];
        n->last_use[L->output] = (uint32_t)i;
        n->last_use[L->input[0]] = (uint32_t)i;
        if (L->op == MODEL_ADD)
            n->last_use[L->input[1]] = (uint32_t)i;
    }
    n->last_use[m->output] = (uint32_t)m->nlayers; /* read by the final reorder */
    return 0;
}

int dnnl_net_create(const model_file *m, unsigned threads, network_precision prec, dnnl_net **out,
                    imgcls_errbuf *eb)
{
    int rc = 0;
    dnet_plan *p = NULL;
    *out = NULL;
    dnnl_net *n = calloc(1, sizeof *n);
    if (!n)
        return IMGCLS_ENOMEM;
    n->m = m;
    n->threads = threads ? (int)threads : 1;
    n->prec = prec == NETWORK_INT8 && !m->ranges ? NETWORK_FP32 : prec; /* network.c refuses that case */
    n->layers = calloc(m->nlayers ? m->nlayers : 1, sizeof *n->layers);
    if (!n->layers || compute_last_use(n)) {
        rc = IMGCLS_ENOMEM;
        goto out;
    }
    omp_set_num_threads(n->threads);
    if (dnnl_engine_create(&n->eng, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&n->strm, n->eng, dnnl_stream_default_flags) != dnnl_success) {
        rc = imgcls_fail(eb, IMGCLS_EBACKEND, "oneDNN cannot start a CPU engine");
        goto out;
    }
    mark_sums(n);
    if ((rc = assign_types(n)))
        goto out;
    rc = get_plan(n, 1, 224, 224, &p, eb); /* reorders the weights */
out:
    if (rc) {
        dnnl_net_destroy(n);
        n = NULL;
    }
    *out = n;
    return rc;
}

void dnnl_net_destroy(dnnl_net *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < NETWORK_MAX_PLANS; i++)
        plan_clear(&n->plans[i]);
    for (size_t i = 0; n->layers && i < n->m->nlayers; i++) {
        dnnl_memory_destroy(n->layers[i].w);
        dnnl_memory_destroy(n->layers[i].b);
        free(n->layers[i].wscale);
        free(n->layers[i].oscale);
    }
    free(n->vals);
    free(n->layers);
    free(n->last_use);
    if (n->strm)
        dnnl_stream_destroy(n->strm);
    if (n->eng)
        dnnl_engine_destroy(n->eng);
    free(n);
}

int dnnl_net_prepare(dnnl_net *n, size_t batch, uint32_t h, uint32_t w, imgcls_errbuf *eb)
{
    dnet_plan *p = NULL;
    return get_plan(n, batch, h, w, &p, eb);
}

/* Every value live at once would overcount a deep network several times over; this walks the layers and
 * keeps the largest sum of live values, each in fp32 with channels rounded up to 16, plus the largest
 * temporary (a reorder) -- first fit may do a little worse, oneDNN's scratchpad is not counted. */
int dnnl_net_plan_bytes(const dnnl_net *n, size_t batch, uint32_t h, uint32_t w, size_t *bytes,
                        imgcls_errbuf *eb)
{
    const model_file *m = n->m;
    *bytes = 0;
    int rc = 0;
    size_t *hw = calloc(2 * (size_t)m->num_values, sizeof *hw), live = 0, most = 0;
    if (!hw)
        return IMGCLS_ENOMEM;
    size_t *sz = hw + m->num_values, ih = h, iw = w;
    for (size_t i = 0; i < m->nlayers && !rc; i++) {
        const model_layer *L = &m->layers[i];
        ih = L->input[0] ? hw[L->input[0]] >> 32 : h;
        iw = L->input[0] ? hw[L->input[0]] & 0xffffffffu : w;
        size_t oh = ih, ow = iw, c = L->op == MODEL_CONV2D || L->op == MODEL_LINEAR ? L->out_channels : 0;
        if (L->op == MODEL_CONV2D || L->op == MODEL_MAX_POOL2D) {
            oh = window_out((int64_t)ih, L->pad[0], L->pad[2], L->kernel[0], L->dilation[0], L->stride[0]);
            ow = window_out((int64_t)iw, L->pad[1], L->pad[3], L->kernel[1], L->dilation[1], L->stride[1]);
        } else if (L->op == MODEL_GLOBAL_AVG_POOL) {
            oh = ow = 1;
        }
        if (!c) /* pooling and add keep their input's channels: sz / (h * w) */
            c = L->input[0] && ih * iw != 0 ? sz[L->input[0]] / (batch * ih * iw * sizeof(float)) : 16;
        if (!oh || !ow)
            rc = imgcls_fail(eb, IMGCLS_EINVAL, "layer %zu: the image is too small for this network", i);
        hw[L->output] = oh << 32 | ow;
        sz[L->output] = batch * oh * ow * ((c + 15) / 16 * 16) * sizeof(float);
        live += sz[L->output];
        size_t tmp = L->input[0] ? sz[L->input[0]] : batch * ih * iw * 16 * sizeof(float);
        most = live + tmp > most ? live + tmp : most;
        for (uint32_t v = 1; v < m->num_values; v++)
            if (sz[v] && n->last_use[v] == i && v != L->output)
                live -= sz[v];
    }
    free(hw);
    *bytes = rc ? 0 : most;
    return rc;
}

void dnnl_net_trim(dnnl_net *n, size_t max_bytes)
{
    for (size_t i = 0; i < NETWORK_MAX_PLANS; i++)
        if (n->plans[i].steps && n->plans[i].bytes > max_bytes)
            plan_clear(&n->plans[i]);
}

int dnnl_net_run(dnnl_net *n, const float *input, size_t batch, uint32_t h, uint32_t w, float *logits,
                 imgcls_errbuf *eb)
{
    dnet_plan *p = NULL;
    int rc = get_plan(n, batch, h, w, &p, eb);
    if (rc)
        return rc;
    omp_set_num_threads(n->threads); /* an ICV of the calling thread: dnnl_net.c's comment */
    dnnl_status_t st = dnnl_memory_set_data_handle(p->bufs[p->in_buf].mem, (void *)(uintptr_t)input);
    if (st == dnnl_success)
        st = dnnl_memory_set_data_handle(p->bufs[p->out_buf].mem, logits);
    for (size_t i = 0; i < p->nsteps && st == dnnl_success; i++) {
        const dnet_step *s = &p->steps[i];
        dnnl_exec_arg_t a[4];
        for (int j = 0; j < s->nargs; j++) {
            const dnet_arg *x = &s->a[j];
            a[j].arg = x->arg;
            a[j].memory = x->from == ARG_WEIGHTS ? n->layers[x->buf].w
                          : x->from == ARG_BIAS  ? n->layers[x->buf].b
                                                 : p->bufs[x->buf].mem;
        }
        st = dnnl_primitive_execute(s->prim, n->strm, s->nargs, a);
    }
    if (st == dnnl_success)
        st = dnnl_stream_wait(n->strm);
    if (st != dnnl_success)
        return imgcls_fail(eb, IMGCLS_EBACKEND, "oneDNN run failed: %s", dnnl_status2str(st));
    return 0;
}
