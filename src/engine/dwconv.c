/* The AVX2+FMA depthwise 3x3 convolution of dwconv.h.
 *
 * Weights: per block of 8 channels, 80 floats: the bias, then w[ky][kx] for ky, kx in 0..2, 8 channels
 * each (channels past c are zero, computed and never stored). One block's 10 vectors stay in registers
 * while the kernel walks an output row; the input is read straight from its three NHWC rows (a stride of
 * c floats between pixels), 9 FMAs per 8 outputs with the input as their memory operand.
 *
 * Order: output rows, then channel blocks, then pixels, 4 at a time (4 independent FMA chains, so with
 * out-of-order overlap across iterations both FMA pipes stay fed; 9 + 1 + 4 = 14 ymm, no spills). A
 * block's pass over a row touches 3 input rows x w pixels x one 64-byte line, which stays in L1 for the
 * three horizontally overlapping windows; the next block mostly hits the other half of the same lines.
 *
 * Padding without branches in the loop: the middle row (iy = oy*s) and middle column always exist, so
 * a row is one of four variants (top row missing or not, bottom row missing or not), each compiled with
 * the missing taps left out; the first and last pixels of a row, whose left or right column may be
 * missing, go through a per-pixel path that tests each column. Missing taps are skipped, not multiplied
 * by zero, so an inf or NaN next to the border does not leak in (as with a true zero pad).
 *
 * Rejected: a zero row buffer for missing rows (a plan-sized allocation and a useless pass of FMAs on
 * the 7x7 layers, where 2 of 7 rows are border rows); pixels-outer with all channel blocks inside
 * (reloads the 10 weight vectors for every pixel: 19 loads per 9 FMAs, load-port bound). */
#include "engine/dwconv.h"

#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DW_CB 8                   /* channels per vector */
#define DW_BLOCK (DW_CB * 10)     /* floats per packed block: bias + 9 taps */
#define DW_TARGET __attribute__((target("avx2,fma")))
#define DW_INLINE static inline __attribute__((always_inline)) DW_TARGET

struct dwconv_weights {
    size_t c;
    float *packed; /* ceil(c/8) blocks, 64-byte aligned */
};

int dwconv_pack(const float *w, const float *bias, size_t c, dwconv_weights **out)
{
    *out = NULL;
    if (!c || c > SIZE_MAX / 64 / DW_BLOCK)
        return IMGCLS_EINVAL;
    dwconv_weights *pw = calloc(1, sizeof *pw);
    if (!pw)
        return IMGCLS_ENOMEM;
    size_t blocks = (c + DW_CB - 1) / DW_CB, bytes = blocks * DW_BLOCK * sizeof(float); /* 320 per block */
    pw->c = c;
    pw->packed = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!pw->packed) {
        free(pw);
        return IMGCLS_ENOMEM;
    }
    memset(pw->packed, 0, bytes);
    for (size_t ch = 0; ch < c; ch++) {
        float *p = pw->packed + ch / DW_CB * DW_BLOCK + ch % DW_CB;
        p[0] = bias ? bias[ch] : 0.0f;
        for (size_t t = 0; t < 9; t++)
            p[DW_CB * (t + 1)] = w[t * c + ch];
    }
    *out = pw;
    return 0;
}

void dwconv_weights_free(dwconv_weights *pw)
{
    if (!pw)
        return;
    free(pw->packed);
    free(pw);
}

size_t dwconv_out_side(size_t in, size_t stride)
{
    return (in - 1) / stride + 1;
}

/* ---- one channel block of one output row ---------------------------------------------------------- */

/* mask_table + 8 - n: the first n lanes set, for n in 0..8. */
static const int32_t mask_table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

/* What a row's channel block needs. r[ky] points at channel cb of pixel 0 of input row oy*s-1+ky (NULL:
 * outside the image); y at channel cb of output pixel 0. */
typedef struct dw_rowblk {
    const float *r[3];
    float *y;
    size_t w, c, s, ow;
    __m256i mask; /* the block's live channels */
} dw_rowblk;

/* full: all 8 lanes live (plain loads and stores), else masked ones so nothing past c is touched. */
#define DW_LOAD(p) (full ? _mm256_loadu_ps(p) : _mm256_maskload_ps((p), rb->mask))

DW_INLINE void dw_store(const int full, const dw_rowblk *rb, float *y, __m256 v, __m256 lo, __m256 hi)
{
    /* The bound first: VMAXPS/VMINPS return their second operand on NaN, so a NaN comes through. */
    v = _mm256_min_ps(hi, _mm256_max_ps(lo, v));
    if (full)
        _mm256_storeu_ps(y, v);
    else
        _mm256_maskstore_ps(y, rb->mask, v);
}

/* A border pixel ox: its left (ix = ox*s-1) or right (ix+2) column may be outside the image. */
DW_INLINE __m256 dw_edge_pixel(const int full, const dw_rowblk *rb, size_t ox, const __m256 *wv)
{
    __m256 acc = wv[0];
    size_t c = rb->c, mid = ox * rb->s; /* the middle column always exists */
    int has_l = mid > 0, has_r = mid + 1 < rb->w;
    for (size_t ky = 0; ky < 3; ky++) {
        if (!rb->r[ky])
            continue;
        const float *p = rb->r[ky] + mid * c;
        if (has_l)
            acc = _mm256_fmadd_ps(DW_LOAD(p - c), wv[1 + 3 * ky], acc);
        acc = _mm256_fmadd_ps(DW_LOAD(p), wv[2 + 3 * ky], acc);
        if (has_r)
            acc = _mm256_fmadd_ps(DW_LOAD(p + c), wv[3 + 3 * ky], acc);
    }
    return acc;
}

/* One tap row (weights wa, wb, wc for kx 0..2) from q, q + c, q + 2c: with q a bumped pointer and c in a
 * register these are base + index*4 and base + index*8 addresses, folded into the FMAs. */
#define DW_ROW(acc, init, q, wa, wb, wc)                                                                  \
    do {                                                                                                  \
        acc = _mm256_fmadd_ps(DW_LOAD(q), wa, init);                                                      \
        acc = _mm256_fmadd_ps(DW_LOAD((q) + c), wb, acc);                                                 \
        acc = _mm256_fmadd_ps(DW_LOAD((q) + 2 * c), wc, acc);                                             \
    } while (0)

/* top, bot: whether input rows oy*s-1 and oy*s+1 exist (constants: each variant is its own code). */
/* Output pixels [ox0, ox1) of the row, for one channel block. */
DW_INLINE void dw_row_block(const int top, const int bot, const int full, const dw_rowblk *rb, const float *wp,
                            __m256 lo, __m256 hi, size_t ox0, size_t ox1)
{
    const __m256 bias = _mm256_load_ps(wp), w0 = _mm256_load_ps(wp + 8), w1 = _mm256_load_ps(wp + 16);
    const __m256 w2 = _mm256_load_ps(wp + 24), w3 = _mm256_load_ps(wp + 32), w4 = _mm256_load_ps(wp + 40);
    const __m256 w5 = _mm256_load_ps(wp + 48), w6 = _mm256_load_ps(wp + 56), w7 = _mm256_load_ps(wp + 64);
    const __m256 w8 = _mm256_load_ps(wp + 72);
    const __m256 wv[10] = {bias, w0, w1, w2, w3, w4, w5, w6, w7, w8};
    size_t c = rb->c, s = rb->s, step = s * c;
    /* Interior: ox*s-1 >= 0 and ox*s+1 <= w-1, i.e. 1 <= ox <= (w-2)/s. */
    size_t in_end = rb->w >= 2 ? (rb->w - 2) / s + 1 : 1;
    size_t i0 = ox0 > 1 ? ox0 : 1, i1 = ox1 < in_end ? ox1 : in_end, ox = ox0;
    for (; ox < ox1 && ox < i0; ox++)
        dw_store(full, rb, rb->y + ox * c, dw_edge_pixel(full, rb, ox, wv), lo, hi);
    if (i0 < i1) {
        /* One pixel per iteration, its three tap rows as three FMA chains summed at the end (12 + 6
         * cycles of latency instead of 36), so that out-of-order execution overlaps a few pixels and
         * both FMA pipes stay busy; the two adds go to Zen3's separate FADD pipes. Rejected: 4 pixels
         * per iteration with one chain each -- GCC then keeps 36 load addresses and spills them, one
         * stack reload per FMA, and it measured no faster than XNNPACK. */
        size_t at = (i0 * s - 1) * c;
        const float *q0 = top ? rb->r[0] + at : NULL, *q1 = rb->r[1] + at, *q2 = bot ? rb->r[2] + at : NULL;
        float *y = rb->y + i0 * c;
        size_t n = i1 - i0;
        for (; n >= 2; n -= 2) {
            __m256 a0, a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps();
            __m256 b0, b1 = _mm256_setzero_ps(), b2 = _mm256_setzero_ps();
            DW_ROW(a0, bias, q1, w3, w4, w5);
            DW_ROW(b0, bias, q1 + step, w3, w4, w5);
            if (top) {
                DW_ROW(a1, a1, q0, w0, w1, w2);
                DW_ROW(b1, b1, q0 + step, w0, w1, w2);
            }
            if (bot) {
                DW_ROW(a2, a2, q2, w6, w7, w8);
                DW_ROW(b2, b2, q2 + step, w6, w7, w8);
            }
            dw_store(full, rb, y, _mm256_add_ps(a0, _mm256_add_ps(a1, a2)), lo, hi);
            dw_store(full, rb, y + c, _mm256_add_ps(b0, _mm256_add_ps(b1, b2)), lo, hi);
            q0 = top ? q0 + 2 * step : NULL;
            q1 += 2 * step;
            q2 = bot ? q2 + 2 * step : NULL;
            y += 2 * c;
        }
        if (n) {
            __m256 a0, a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps();
            DW_ROW(a0, bias, q1, w3, w4, w5);
            if (top)
                DW_ROW(a1, a1, q0, w0, w1, w2);
            if (bot)
                DW_ROW(a2, a2, q2, w6, w7, w8);
            dw_store(full, rb, y, _mm256_add_ps(a0, _mm256_add_ps(a1, a2)), lo, hi);
        }
        ox = i1;
    }
    for (; ox < ox1; ox++)
        dw_store(full, rb, rb->y + ox * c, dw_edge_pixel(full, rb, ox, wv), lo, hi);
}

/* ---- rows and threads --------------------------------------------------------------------------- */

typedef struct dw_job {
    const dwconv_weights *pw;
    const dwconv_shape *s;
    const float *x;
    float *y;
    size_t oh, ow;
    float lo, hi;
} dw_job;

DW_INLINE void dw_row_variant(const int top, const int bot, const dw_job *j, dw_rowblk *rb)
{
    const __m256 lo = _mm256_set1_ps(j->lo), hi = _mm256_set1_ps(j->hi);
    const float *r0 = rb->r[0], *r1 = rb->r[1], *r2 = rb->r[2];
    float *y = rb->y;
    size_t c = j->pw->c;
    for (size_t cb = 0; cb < c; cb += DW_CB) {
        const float *wp = j->pw->packed + cb / DW_CB * DW_BLOCK;
        rb->r[0] = r0 ? r0 + cb : NULL;
        rb->r[1] = r1 + cb;
        rb->r[2] = r2 ? r2 + cb : NULL;
        rb->y = y + cb;
        if (c - cb >= DW_CB) {
            dw_row_block(top, bot, 1, rb, wp, lo, hi, 0, rb->ow);
        } else {
            rb->mask = _mm256_loadu_si256((const __m256i *)(const void *)(mask_table + DW_CB - (c - cb)));
            dw_row_block(top, bot, 0, rb, wp, lo, hi, 0, rb->ow);
        }
    }
}

static DW_TARGET void dw_row_tb(const dw_job *j, dw_rowblk *rb)
{
    dw_row_variant(1, 1, j, rb);
}
static DW_TARGET void dw_row_t(const dw_job *j, dw_rowblk *rb)
{
    dw_row_variant(1, 0, j, rb);
}
static DW_TARGET void dw_row_b(const dw_job *j, dw_rowblk *rb)
{
    dw_row_variant(0, 1, j, rb);
}
static DW_TARGET void dw_row_none(const dw_job *j, dw_rowblk *rb)
{
    dw_row_variant(0, 0, j, rb);
}

/* One output row whose input rows rb->r[] are set (NULL: outside the image): the variant for them. */
static void dw_row(const dw_job *j, dw_rowblk *rb)
{
    if (rb->r[0] && rb->r[2])
        dw_row_tb(j, rb);
    else if (rb->r[0])
        dw_row_t(j, rb);
    else if (rb->r[2])
        dw_row_b(j, rb);
    else
        dw_row_none(j, rb);
}

/* pthreadpool task: output row `row` of the whole batch (image row / oh, output row row % oh). */
static void dw_task(void *ctx, size_t row)
{
    const dw_job *j = ctx;
    const dwconv_shape *s = j->s;
    size_t c = j->pw->c, b = row / j->oh, oy = row % j->oh, mid = oy * s->stride;
    const float *img = j->x + b * s->in_h * s->in_w * c;
    dw_rowblk rb = {.w = s->in_w, .c = c, .s = s->stride, .ow = j->ow};
    rb.r[0] = mid > 0 ? img + (mid - 1) * s->in_w * c : NULL;
    rb.r[1] = img + mid * s->in_w * c;
    rb.r[2] = mid + 1 < s->in_h ? img + (mid + 1) * s->in_w * c : NULL;
    rb.y = j->y + row * j->ow * c;
    dw_row(j, &rb);
}

void dwconv_run_row(const dwconv_weights *pw, size_t in_w, size_t stride, const float *const rows[3], float *y,
                    float lo, float hi)
{
    dw_job j = {.pw = pw, .lo = lo, .hi = hi};
    dw_rowblk rb = {.r = {rows[0], rows[1], rows[2]}, .y = y, .w = in_w, .c = pw->c, .s = stride,
                    .ow = dwconv_out_side(in_w, stride)};
    dw_row(&j, &rb);
}

void dwconv_run(const dwconv_weights *pw, const dwconv_shape *s, const float *x, float *y, float lo, float hi,
                pthreadpool_t pool)
{
    dw_job j = {.pw = pw, .s = s, .x = x, .y = y, .oh = dwconv_out_side(s->in_h, s->stride),
                .ow = dwconv_out_side(s->in_w, s->stride), .lo = lo, .hi = hi};
    if (!s->batch)
        return;
    /* One task per output row: MobileNetV2's smallest layers still have 7 rows for 2 threads, and a row
     * is 7 x 960 to 112 x 32 outputs, large enough that the pool's per-task cost does not show. */
    pthreadpool_parallelize_1d(pool, dw_task, &j, s->batch * j.oh, 0);
}
