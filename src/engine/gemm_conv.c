/* im2col + GEMM convolution (gemm_conv.h). */
#include "engine/gemm_conv.h"

#include <string.h>

/* About 128 KiB of im2col rows per chunk, so they are still in L2 (512 KiB on Zen3) when the GEMM reads
 * them; 1 MiB chunks measured 2x slower for MobileNetV2's first conv. Still >= 1000 rows there, enough
 * tiles for every thread. */
#define GEMM_CONV_CHUNK_FLOATS ((size_t)32 << 10)

static size_t conv_k(const gemm_conv_shape *s)
{
    return (size_t)s->kernel[0] * s->kernel[1] * s->in_c;
}

static size_t chunk_rows(const gemm_conv_shape *s)
{
    size_t rows = GEMM_CONV_CHUNK_FLOATS / conv_k(s), total = s->batch * s->out_h * s->out_w;
    rows = rows < 6 ? 6 : rows;
    return rows < total ? rows : total;
}

size_t gemm_conv_scratch(const gemm_conv_shape *s)
{
    return chunk_rows(s) * conv_k(s);
}

static void copy_floats(float *restrict dst, const float *restrict src, size_t n)
{
    /* A plain loop, not memcpy: the runs are short (9 floats for MobileNetV2's first conv), and a libc
     * call per run cost more than the copy (measured: im2col took 0.7 ms of a 12 ms network). */
    for (size_t i = 0; i < n; i++)
        dst[i] = src[i];
}

/* One im2col row: the kh x kw window of output pixel (b, oy, ox), zeros where it hangs over the padding.
 * Positions above or left of the image wrap around to huge unsigned values, so `< in_h` tests both
 * sides. With dilation 1 a window row that lies inside the image is kw*c contiguous floats. */
static void im2col_row(const gemm_conv_shape *s, const float *x, size_t b, size_t oy, size_t ox, float *row)
{
    size_t c = s->in_c, kw = s->kernel[1];
    size_t ix0 = ox * s->stride[1] - s->pad[1], ix_last = ix0 + (kw - 1) * s->dilation[1];
    int whole = s->dilation[1] == 1 && ix0 < s->in_w && ix_last < s->in_w;
    for (uint32_t ky = 0; ky < s->kernel[0]; ky++, row += kw * c) {
        size_t iy = oy * s->stride[0] + (size_t)ky * s->dilation[0] - s->pad[0];
        if (iy >= s->in_h) {
            memset(row, 0, kw * c * sizeof(float));
            continue;
        }
        const float *line = x + (b * s->in_h + iy) * s->in_w * c;
        if (whole) {
            copy_floats(row, line + ix0 * c, kw * c);
        } else {
            for (size_t kx = 0; kx < kw; kx++) {
                size_t ix = ix0 + kx * s->dilation[1];
                if (ix < s->in_w)
                    copy_floats(row + kx * c, line + ix * c, c);
                else
                    memset(row + kx * c, 0, c * sizeof(float));
            }
        }
    }
}

void gemm_conv_run(const gemm_weights *pw, const gemm_conv_shape *s, const float *x, const gemm_out *out,
                   float *scratch, pthreadpool_t pool)
{
    size_t k = conv_k(s), total = s->batch * s->out_h * s->out_w, step = chunk_rows(s);
    for (size_t first = 0; first < total; first += step) {
        size_t rows = total - first < step ? total - first : step;
        /* Walk (b, oy, ox) by increments: three divisions per row cost as much as the copy itself. */
        size_t ox = first % s->out_w, oy = first / s->out_w % s->out_h, b = first / s->out_w / s->out_h;
        for (size_t r = 0; r < rows; r++) {
            im2col_row(s, x, b, oy, ox, scratch + r * k);
            if (++ox == s->out_w) {
                ox = 0;
                if (++oy == s->out_h) {
                    oy = 0;
                    b++;
                }
            }
        }
        gemm_out chunk = *out;
        chunk.c += first * out->ldc;
        if (chunk.res)
            chunk.res += first * out->ldr;
        gemm_run(pw, rows, scratch, k, &chunk, pool);
    }
}
