/* The fused inverted-residual block of fused.h.
 *
 * Each of T tasks (T = the pool's threads) takes a contiguous range of output rows of every image and
 * walks it in bands of R output rows. For a band it computes the hidden rows the band needs and its ring
 * does not hold yet (expand GEMM straight into the ring, whose slot for hidden row iy is iy mod K), runs
 * the depthwise row by row from the ring into a band buffer, and projects the band (one GEMM of R*out_w
 * rows) into y, with the residual add in the GEMM's epilogue. Hidden rows are computed once per task:
 * only the 1 or 2 halo rows at a task's edges are computed twice (by both neighbours).
 *
 * Band height: the ring (K = R*stride + 2 rows, enough for the rows one band reads), the band buffer and
 * the two GEMMs' packed weights are kept within FUSED_L2_BYTES, three quarters of a Zen3 core's 512 KiB
 * L2, leaving room for the input rows streaming in. R is at least 1. At 112x112x96, stride 2, a band is
 * 2 output rows (6 hidden rows, 252 KiB); at 56x56x144, stride 1, 4 rows; at 14x14x384, 3 rows.
 *
 * Which blocks: those whose expand and project weights together take at most FUSED_MAX_WEIGHT_BYTES
 * (fused_pays). Each band re-reads both weight matrices, which layer by layer are read once per layer;
 * for MobileNetV2's 7x7 blocks (960 hidden channels, 1.2 MB of weights, a 188 KiB hidden tensor that
 * fits in L2 anyway) that costs more than it saves. 256 KiB takes every block up to 384 hidden channels
 * (14x14). Measured on MobileNetV2 (1 thread, alternating runs, medians of 8 on a noisy shared host):
 * limits of 64 KiB (only the 112, 56 and 28 blocks), 256 KiB and unlimited gave 12.66, 12.74 and 13.05
 * ms against 13.26 unfused -- 64 and 256 within noise, unlimited worse. Ring budgets of 256 and 384 KiB
 * (without subtracting the weights) were also within noise of each other.
 *
 * Rejected: recomputing halo rows per band instead of a ring (with R = 4 at stride 1 that is 50% more
 * expand FLOPs, the expand being a third of the block's); splitting bands across threads round-robin
 * (each band would then recompute its halo); a pool task per band with a ring per band (a ring per
 * band is memory that never gets reused, and the halo recompute again). */
#include "engine/fused.h"

#include <stdint.h>

#define FUSED_L2_BYTES ((size_t)384 << 10)
#define FUSED_MAX_WEIGHT_BYTES ((size_t)256 << 10)

typedef struct fused_geom {
    size_t cin, chid, cout;
    size_t out_h, out_w;
    size_t rows;  /* R: output rows per band */
    size_t slots; /* K: hidden rows in the ring */
    size_t per_task; /* floats of scratch per task, a multiple of 16 */
} fused_geom;

static size_t weight_bytes(const fused_block *b)
{
    return (gemm_weights_n(b->expand) * gemm_weights_k(b->expand) +
            gemm_weights_n(b->project) * gemm_weights_k(b->project)) *
           sizeof(float);
}

int fused_pays(const gemm_weights *expand, const gemm_weights *project)
{
    fused_block b = {.expand = expand, .project = project};
    return weight_bytes(&b) <= FUSED_MAX_WEIGHT_BYTES;
}

static size_t round16(size_t x)
{
    return (x + 15) / 16 * 16;
}

static fused_geom geom_of(const fused_block *b, const fused_shape *s)
{
    fused_geom g = {.cin = gemm_weights_k(b->expand), .chid = gemm_weights_n(b->expand),
                    .cout = gemm_weights_n(b->project), .out_h = dwconv_out_side(s->in_h, b->stride),
                    .out_w = dwconv_out_side(s->in_w, b->stride)};
    size_t hid_row = s->in_w * g.chid * sizeof(float), band_row = g.out_w * g.chid * sizeof(float);
    /* ring (R*stride + 2 rows) + band (R rows) + weights <= FUSED_L2_BYTES */
    size_t fixed = 2 * hid_row + weight_bytes(b), per_r = b->stride * hid_row + band_row;
    g.rows = FUSED_L2_BYTES > fixed ? (FUSED_L2_BYTES - fixed) / per_r : 0;
    g.rows = g.rows < 1 ? 1 : g.rows > g.out_h ? g.out_h : g.rows;
    g.slots = g.rows * b->stride + 2;
    g.per_task = round16(g.slots * s->in_w * g.chid) + round16(g.rows * g.out_w * g.chid);
    return g;
}

size_t fused_scratch(const fused_block *b, const fused_shape *s)
{
    fused_geom g = geom_of(b, s);
    return g.per_task * (s->threads ? s->threads : 1);
}

typedef struct fused_job {
    const fused_block *b;
    const fused_shape *s;
    fused_geom g;
    const float *x, *res;
    float *y, *scratch;
    size_t tasks;
} fused_job;

/* Hidden rows [lo, hi) of the image at x into the ring, split where the ring wraps. */
static void expand_rows(const fused_job *j, const float *x, float *ring, size_t lo, size_t hi)
{
    const fused_geom *g = &j->g;
    size_t w = j->s->in_w;
    while (lo < hi) {
        size_t slot = lo % g->slots, n = hi - lo < g->slots - slot ? hi - lo : g->slots - slot;
        gemm_out o = {.c = ring + slot * w * g->chid, .ldc = g->chid, .lo = j->b->e_lo, .hi = j->b->e_hi};
        gemm_run(j->b->expand, n * w, x + lo * w * g->cin, g->cin, &o, NULL);
        lo += n;
    }
}

/* Output rows [oy0, oy1) of image `img`; the ring holds hidden rows [0, *have) that it still has. */
static void run_band(const fused_job *j, size_t img, size_t oy0, size_t oy1, float *ring, float *band, size_t *have)
{
    const fused_block *b = j->b;
    const fused_geom *g = &j->g;
    size_t h = j->s->in_h, w = j->s->in_w, st = b->stride;
    size_t need_lo = oy0 > 0 ? oy0 * st - 1 : 0, need_hi = (oy1 - 1) * st + 2 < h ? (oy1 - 1) * st + 2 : h;
    const float *x = j->x + img * h * w * g->cin;
    expand_rows(j, x, ring, *have > need_lo ? *have : need_lo, need_hi);
    *have = need_hi;
    for (size_t oy = oy0; oy < oy1; oy++) {
        const float *rows[3];
        for (size_t ky = 0; ky < 3; ky++) {
            size_t iy = oy * st + ky; /* plus 1: input row iy - 1 */
            rows[ky] = iy >= 1 && iy - 1 < h ? ring + (iy - 1) % g->slots * w * g->chid : NULL;
        }
        dwconv_run_row(b->dw, w, st, rows, band + (oy - oy0) * g->out_w * g->chid, b->d_lo, b->d_hi);
    }
    size_t first = (img * g->out_h + oy0) * g->out_w;
    gemm_out o = {.c = j->y + first * g->cout, .ldc = g->cout, .res = j->res ? j->res + first * g->cout : NULL,
                  .ldr = g->cout, .lo = b->lo, .hi = b->hi};
    gemm_run(b->project, (oy1 - oy0) * g->out_w, band, g->chid, &o, NULL);
}

/* pthreadpool task t: output rows [t*oh/T, (t+1)*oh/T) of every image, with the t-th ring. */
static void fused_task(void *ctx, size_t t)
{
    const fused_job *j = ctx;
    const fused_geom *g = &j->g;
    float *ring = j->scratch + t * g->per_task;
    float *band = ring + round16(g->slots * j->s->in_w * g->chid);
    size_t y0 = t * g->out_h / j->tasks, y1 = (t + 1) * g->out_h / j->tasks;
    for (size_t img = 0; img < j->s->batch; img++) {
        size_t have = 0; /* hidden rows below `have` that are in the ring (none yet) */
        for (size_t oy = y0; oy < y1; oy += g->rows)
            run_band(j, img, oy, oy + g->rows < y1 ? oy + g->rows : y1, ring, band, &have);
    }
}

void fused_run(const fused_block *b, const fused_shape *s, const float *x, const float *res, float *y,
               float *scratch, pthreadpool_t pool)
{
    fused_job j = {.b = b, .s = s, .g = geom_of(b, s), .x = x, .res = res, .y = y, .scratch = scratch,
                   .tasks = s->threads ? s->threads : 1};
    if (!s->batch)
        return;
    /* A task per thread, each with its own ring; pthreadpool hands 2 tasks to 2 threads one each. */
    pthreadpool_parallelize_1d(pool, fused_task, &j, j.tasks, 0);
}
