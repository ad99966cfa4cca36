/* A depthwise 3x3 NHWC convolution for AVX2+FMA: MobileNetV2's 17 depthwise layers.
 *
 *   y[b][oy][ox][c] = clamp(bias[c] + sum_{ky,kx} x[b][oy*s-1+ky][ox*s-1+kx][c] * w[ky][kx][c], lo, hi)
 *
 * with zero padding of 1 on every side, stride s of 1 or 2 in both directions, one output channel per
 * input channel (depth multiplier 1). That is the only depthwise shape MobileNetV2 has; anything else
 * stays on XNNPACK's operator (network.c), as does everything on a CPU without AVX2+FMA.
 *
 * Why our own: Debian's XNNPACK (2022), built by GCC, runs these layers at ~2.2 ms of MobileNetV2's
 * ~12.4 (1 thread), about a sixth of the network for ~1% of its FLOPs; its up8x9/up16x9 kernels go
 * through an indirection buffer of row pointers per output pixel. Here an output row reads its three
 * input rows directly and the weights of 8 channels stay in registers across the row (see dwconv.c). */
#ifndef IMGCLS_ENGINE_DWCONV_H
#define IMGCLS_ENGINE_DWCONV_H

#include "common/error.h"

#include <pthreadpool.h>
#include <stddef.h>

typedef struct dwconv_weights dwconv_weights;

/* Packs w (1 x 3 x 3 x c: w[(ky*3 + kx)*c + ch], the depthwise weight of docs/weight-format.md) and bias (c floats, or NULL for
 * zeros); neither is kept. Returns 0 and *out (free with dwconv_weights_free), IMGCLS_EINVAL for c of 0,
 * or IMGCLS_ENOMEM. Only for a CPU where gemm_available() (gemm.h) is true. */
int dwconv_pack(const float *w, const float *bias, size_t c, dwconv_weights **out);
void dwconv_weights_free(dwconv_weights *pw); /* accepts NULL */

typedef struct dwconv_shape {
    size_t batch, in_h, in_w; /* input, NHWC, with the packed weights' channels */
    size_t stride;            /* 1 or 2 */
} dwconv_shape;

/* The output's height or width for an input side of `in` (>= 1): (in - 1) / stride + 1. */
size_t dwconv_out_side(size_t in, size_t stride);

/* y = the convolution of x above, batch x out_h x out_w x c, clamped to [lo, hi] (lo <= hi, infinities
 * for no activation). x is read exactly (nothing past its last float), y written exactly; they must not
 * overlap. Each output is computed the same way whoever computes it, so any pool (or NULL, the
 * caller's thread) gives the same bytes. */
void dwconv_run(const dwconv_weights *pw, const dwconv_shape *s, const float *x, float *y, float lo, float hi,
                pthreadpool_t pool);

/* One output row of one image, for callers that keep the input rows elsewhere than in one NHWC tensor
 * (fused.h keeps them in a ring buffer): rows[ky] is input row oy*stride-1+ky of width in_w (NULL: outside
 * the image; rows[1] never is), y the row's out_w x c outputs. Computes exactly what dwconv_run computes
 * for that row, on the caller's thread. */
void dwconv_run_row(const dwconv_weights *pw, size_t in_w, size_t stride, const float *const rows[3], float *y,
                    float lo, float hi);

#endif
