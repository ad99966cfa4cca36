/* The AVX2+FMA GEMM of gemm.h.
 *
 * Kernel: 6 rows x 16 columns. Per k step it loads two 8-float vectors of the packed panel, broadcasts
 * one a value per row and does 12 FMAs into 12 accumulators: 12 + 2 + 1 = 15 of the 16 ymm registers,
 * so nothing spills (checked with objdump -d: the k loop has no %rsp operand). Zen3 retires 2 FMAs a
 * cycle with a latency of 4, so it needs >= 8 independent chains; 12 keeps both pipes busy, and the
 * 8 loads per 12 FMAs stay under its 3 loads a cycle.
 *
 * Rejected: 4x24 (12 accumulators, 3+4 loads per 12 FMAs) measured no faster here and wastes more on
 * MobileNetV2's many 24- and 16-wide layers; 8-column panels halve the work per broadcast; packing a as
 * well (as BLIS does) costs a copy of every activation, while an NHWC row is already contiguous in k.
 *
 * Blocking: one task is a tile of rows x whole 16-column panels, its rows kept to about 128 KiB of a
 * (a quarter of a Zen3 core's L2). When the tile's panels are small (<= 256 KiB: the early, wide layers
 * with k <= 144), rows are the outer loop: 6 rows of a stay in L1 while the panels pass, and c is
 * written row after row. Otherwise panels are the outer loop, so one panel (16*k floats, <= 80 KiB for
 * k = 1280) stays in L1/L2 while the tile's rows stream past it, instead of every 6 rows re-reading
 * all the panels from L3. Measured on MobileNetV2's 34 pointwise layers, rows-outer where it applies
 * was ~7% faster than panels-outer everywhere. No k blocking: MobileNetV2's
 * largest k is 1280 and ResNet-18's 1x1s are 512; a k split would add a read-modify-write of c per
 * block for no gain at these sizes. */
#include "engine/gemm.h"

#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define GEMM_MR 6
#define GEMM_NR 16
#define GEMM_TILE_BYTES ((size_t)128 << 10)
#define GEMM_ROWS_OUTER_BYTES ((size_t)256 << 10)
#define GEMM_TARGET __attribute__((target("avx2,fma")))
#define GEMM_INLINE static inline __attribute__((always_inline)) GEMM_TARGET

struct gemm_weights {
    size_t n, k;
    size_t panel_stride; /* floats per panel: 16 bias + 16*k weights */
    float *packed;       /* ceil(n/16) panels, 64-byte aligned */
};

int gemm_available(void)
{
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

size_t gemm_weights_n(const gemm_weights *pw)
{
    return pw->n;
}

size_t gemm_weights_k(const gemm_weights *pw)
{
    return pw->k;
}

/* Panel p holds columns 16p..16p+15: their bias, then for each kk the 16 weights w[col][kk]. Columns past
 * n are zero, so the kernel computes them harmlessly and the store leaves them out. */
int gemm_pack(const float *w, const float *bias, size_t n, size_t k, gemm_weights **out)
{
    *out = NULL;
    if (!n || !k || k > SIZE_MAX / 64 / GEMM_NR || n > SIZE_MAX / 64 / (k + 1))
        return IMGCLS_EINVAL;
    gemm_weights *pw = calloc(1, sizeof *pw);
    if (!pw)
        return IMGCLS_ENOMEM;
    size_t panels = (n + GEMM_NR - 1) / GEMM_NR;
    pw->n = n;
    pw->k = k;
    pw->panel_stride = GEMM_NR * (k + 1);
    size_t bytes = panels * pw->panel_stride * sizeof(float); /* a multiple of 64 */
    pw->packed = aligned_alloc(64, bytes);
    if (!pw->packed) {
        free(pw);
        return IMGCLS_ENOMEM;
    }
    memset(pw->packed, 0, bytes);
    for (size_t col = 0; col < n; col++) {
        float *p = pw->packed + col / GEMM_NR * pw->panel_stride + col % GEMM_NR;
        p[0] = bias ? bias[col] : 0.0f;
        for (size_t kk = 0; kk < k; kk++)
            p[GEMM_NR * (kk + 1)] = w[col * k + kk];
    }
    *out = pw;
    return 0;
}

void gemm_weights_free(gemm_weights *pw)
{
    if (!pw)
        return;
    free(pw->packed);
    free(pw);
}

/* ---- the kernel --------------------------------------------------------------------------------- */

/* mask_table + 8 - n: the first n lanes set, for n in 0..8 (lane_mask). */
static const int32_t mask_table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

GEMM_INLINE __m256i lane_mask(size_t n)
{
    return _mm256_loadu_si256((const __m256i *)(const void *)(mask_table + 8 - n));
}

/* Adds the residual row (if any), clamps and stores nc (1..16) columns. max(lo, v) then min(hi, .): with
 * the bound first, a NaN in v comes through instead of being clamped away (VMAXPS returns its second
 * operand when either is NaN). */
GEMM_INLINE void store_row(float *c, const float *res, __m256 v0, __m256 v1, size_t nc, __m256 lo, __m256 hi)
{
    if (res) {
        v0 = _mm256_add_ps(v0, nc >= 8 ? _mm256_loadu_ps(res) : _mm256_maskload_ps(res, lane_mask(nc)));
        if (nc > 8)
            v1 = _mm256_add_ps(v1, nc == GEMM_NR ? _mm256_loadu_ps(res + 8)
                                                 : _mm256_maskload_ps(res + 8, lane_mask(nc - 8)));
    }
    v0 = _mm256_min_ps(hi, _mm256_max_ps(lo, v0));
    v1 = _mm256_min_ps(hi, _mm256_max_ps(lo, v1));
    if (nc == GEMM_NR) {
        _mm256_storeu_ps(c, v0);
        _mm256_storeu_ps(c + 8, v1);
    } else if (nc >= 8) {
        _mm256_storeu_ps(c, v0);
        _mm256_maskstore_ps(c + 8, lane_mask(nc - 8), v1);
    } else {
        _mm256_maskstore_ps(c, lane_mask(nc), v0);
    }
}

/* One k step for row r: broadcast a_r[kk], two FMAs. The `mr > r` tests are on a constant (the body is
 * always inlined into a function per row count), so the compiler drops the rows a kernel does not have. */
#define GEMM_ROW(r)                                                                                            \
    if (mr > r) {                                                                                              \
        const __m256 va = _mm256_broadcast_ss(a##r + kk);                                                      \
        c##r##0 = _mm256_fmadd_ps(va, b0, c##r##0);                                                            \
        c##r##1 = _mm256_fmadd_ps(va, b1, c##r##1);                                                            \
    }

/* mr (1..6) rows of a against one packed panel w, into rows row.. and columns col..col+nc-1 (nc 1..16)
 * of o. A kernel that has fewer rows than 6 points its missing rows at row 0 and never reads them. */
GEMM_INLINE void kernel_body(const size_t mr, const size_t k, const float *a, size_t lda, const float *w,
                             const gemm_out *o, size_t row, size_t col, size_t nc)
{
    const float *a0 = a, *a1 = mr > 1 ? a + lda : a, *a2 = mr > 2 ? a + 2 * lda : a;
    const float *a3 = mr > 3 ? a + 3 * lda : a, *a4 = mr > 4 ? a + 4 * lda : a, *a5 = mr > 5 ? a + 5 * lda : a;
    __m256 c00 = _mm256_load_ps(w), c01 = _mm256_load_ps(w + 8);
    __m256 c10 = c00, c11 = c01, c20 = c00, c21 = c01, c30 = c00, c31 = c01, c40 = c00, c41 = c01;
    __m256 c50 = c00, c51 = c01;
    w += GEMM_NR;
    /* One k step per iteration, rows addressed as a_r + kk (one index register), not unrolled. Unrolled
     * by 2 or 4, GCC 12 hoists the panel loads of later steps and spills accumulators to the stack -- the
     * very fault of Debian's XNNPACK kernel -- and measured 5-25% slower on MobileNetV2's shapes; six
     * pointers bumped every step measured ~5% slower than the indexed form. */
    for (size_t kk = 0; kk < k; kk++) {
        const __m256 b0 = _mm256_load_ps(w), b1 = _mm256_load_ps(w + 8);
        GEMM_ROW(0) GEMM_ROW(1) GEMM_ROW(2) GEMM_ROW(3) GEMM_ROW(4) GEMM_ROW(5)
        w += GEMM_NR;
    }
    const __m256 vlo = _mm256_set1_ps(o->lo), vhi = _mm256_set1_ps(o->hi);
    float *c = o->c + row * o->ldc + col;
    const float *res = o->res ? o->res + row * o->ldr + col : NULL;
    size_t ldc = o->ldc, ldr = o->ldr;
    store_row(c, res, c00, c01, nc, vlo, vhi);
    if (mr > 1)
        store_row(c + ldc, res ? res + ldr : NULL, c10, c11, nc, vlo, vhi);
    if (mr > 2)
        store_row(c + 2 * ldc, res ? res + 2 * ldr : NULL, c20, c21, nc, vlo, vhi);
    if (mr > 3)
        store_row(c + 3 * ldc, res ? res + 3 * ldr : NULL, c30, c31, nc, vlo, vhi);
    if (mr > 4)
        store_row(c + 4 * ldc, res ? res + 4 * ldr : NULL, c40, c41, nc, vlo, vhi);
    if (mr > 5)
        store_row(c + 5 * ldc, res ? res + 5 * ldr : NULL, c50, c51, nc, vlo, vhi);
}

typedef void (*gemm_kernel)(size_t k, const float *a, size_t lda, const float *w, const gemm_out *o, size_t row,
                            size_t col, size_t nc);

#define GEMM_KERNEL(mr)                                                                                        \
    static GEMM_TARGET void kernel_##mr##x16(size_t k, const float *a, size_t lda, const float *w,            \
                                             const gemm_out *o, size_t row, size_t col, size_t nc)             \
    {                                                                                                          \
        kernel_body(mr, k, a, lda, w, o, row, col, nc);                                                        \
    }
GEMM_KERNEL(1)
GEMM_KERNEL(2)
GEMM_KERNEL(3)
GEMM_KERNEL(4)
GEMM_KERNEL(5)
GEMM_KERNEL(6)

static const gemm_kernel kernels[GEMM_MR + 1] = {NULL,        kernel_1x16, kernel_2x16, kernel_3x16,
                                                 kernel_4x16, kernel_5x16, kernel_6x16};

/* ---- tiling and threads ------------------------------------------------------------------------- */

typedef struct gemm_job {
    const gemm_weights *pw;
    const float *a;
    size_t lda;
    const gemm_out *o;
} gemm_job;

/* pthreadpool task: rows [row0, row0+rows) x columns [col0, col0+cols), col0 a multiple of 16. */
static void gemm_task(void *ctx, size_t row0, size_t col0, size_t rows, size_t cols)
{
    const gemm_job *j = ctx;
    const gemm_weights *pw = j->pw;
    size_t row_end = row0 + rows, col_end = col0 + cols;
    if (pw->k * cols * sizeof(float) <= GEMM_ROWS_OUTER_BYTES) {
        for (size_t r = row0; r < row_end; r += GEMM_MR) {
            size_t mr = row_end - r < GEMM_MR ? row_end - r : GEMM_MR;
            for (size_t col = col0; col < col_end; col += GEMM_NR) {
                const float *w = pw->packed + col / GEMM_NR * pw->panel_stride;
                size_t nc = pw->n - col < GEMM_NR ? pw->n - col : GEMM_NR;
                kernels[mr](pw->k, j->a + r * j->lda, j->lda, w, j->o, r, col, nc);
            }
        }
        return;
    }
    for (size_t col = col0; col < col_end; col += GEMM_NR) {
        const float *w = pw->packed + col / GEMM_NR * pw->panel_stride;
        size_t nc = pw->n - col < GEMM_NR ? pw->n - col : GEMM_NR;
        for (size_t r = row0; r < row_end; r += GEMM_MR) {
            size_t mr = row_end - r < GEMM_MR ? row_end - r : GEMM_MR;
            kernels[mr](pw->k, j->a + r * j->lda, j->lda, w, j->o, r, col, nc);
        }
    }
}

static size_t round_up(size_t x, size_t q)
{
    return (x + q - 1) / q * q;
}

static size_t div_up(size_t x, size_t q)
{
    return (x + q - 1) / q;
}

/* Rows per tile: as many as keep the tile's rows of a within GEMM_TILE_BYTES. With threads, tiles are
 * cut smaller until there are >= 4 per thread, columns first (a narrower tile still reads its rows
 * once), so the pool can even out uneven tiles. */
static void choose_tiles(size_t m, size_t n, size_t k, size_t threads, size_t *tile_m, size_t *tile_n)
{
    size_t rows = GEMM_TILE_BYTES / (k * sizeof(float)) / GEMM_MR * GEMM_MR;
    size_t max_rows = round_up(m, GEMM_MR);
    rows = rows < GEMM_MR ? GEMM_MR : rows > max_rows ? max_rows : rows;
    size_t cols = round_up(n, GEMM_NR);
    if (threads > 1) {
        size_t want = 4 * threads;
        while (div_up(m, rows) * div_up(n, cols) < want && cols > GEMM_NR)
            cols = round_up(cols / 2, GEMM_NR);
        while (div_up(m, rows) * div_up(n, cols) < want && rows > GEMM_MR)
            rows = round_up(rows / 2, GEMM_MR);
    }
    *tile_m = rows;
    *tile_n = cols;
}

void gemm_run(const gemm_weights *pw, size_t m, const float *a, size_t lda, const gemm_out *out,
              pthreadpool_t pool)
{
    if (!m)
        return;
    gemm_job job = {.pw = pw, .a = a, .lda = lda, .o = out};
    size_t tile_m, tile_n;
    choose_tiles(m, pw->n, pw->k, pool ? pthreadpool_get_threads_count(pool) : 1, &tile_m, &tile_n);
    pthreadpool_parallelize_2d_tile_2d(pool, gemm_task, &job, m, pw->n, tile_m, tile_n, 0);
}
