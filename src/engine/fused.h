/* MobileNetV2's inverted-residual block in one pass over bands of output rows:
 *
 *   y = clamp(project(clamp(dw3x3(clamp(expand(x), e_lo, e_hi)), d_lo, d_hi)) + res, lo, hi)
 *
 * expand and project are 1x1 convolutions (gemm.h), dw3x3 a depthwise 3x3 convolution with padding 1 and
 * stride 1 or 2 (dwconv.h), res an optional residual add (the block's input, in MobileNetV2).
 *
 * Why: run layer by layer, the expanded ("hidden") tensor is 6x the block's input -- 4.8 MB at 112x112x96,
 * 1.8 MB at 56x56x144 -- so it is written to memory by the expand, read back by the depthwise, whose
 * output is written and read again by the project. Here each thread keeps a ring of the few hidden rows
 * that the current band of output rows needs, plus the band's depthwise output, within its L2.
 *
 * Every output is computed with the same operations in the same order as the three layers run one after
 * the other (gemm_run and dwconv_run_row), so the result is bit-identical to the unfused layers, for any
 * pool. */
#ifndef IMGCLS_ENGINE_FUSED_H
#define IMGCLS_ENGINE_FUSED_H

#include "engine/dwconv.h"
#include "engine/gemm.h"

#include <pthreadpool.h>
#include <stddef.h>

typedef struct fused_block {
    const gemm_weights *expand;  /* k: input channels, n: hidden channels */
    const dwconv_weights *dw;    /* hidden channels */
    const gemm_weights *project; /* k: hidden channels, n: output channels */
    size_t stride;               /* of the depthwise convolution: 1 or 2 */
    float e_lo, e_hi, d_lo, d_hi, lo, hi;
} fused_block;

typedef struct fused_shape {
    size_t batch, in_h, in_w; /* the block's input, NHWC */
    size_t threads;           /* the pool's threads (1 for none): one ring buffer each */
} fused_shape;

/* Whether fusing pays for a block with these weights: see fused.c. */
int fused_pays(const gemm_weights *expand, const gemm_weights *project);

/* The scratch fused_run needs, in floats (a multiple of 16). */
size_t fused_scratch(const fused_block *b, const fused_shape *s);

/* y (batch x out_h x out_w x project n, out sides dwconv_out_side(in, stride)) from x (batch x in_h x in_w x
 * expand k). res is NULL or shaped like y, and must not overlap y; nor may x. scratch: fused_scratch(b, s)
 * floats, 64-byte aligned, used by nothing else meanwhile. pool has s->threads threads (NULL for 1). */
void fused_run(const fused_block *b, const fused_shape *s, const float *x, const float *res, float *y,
               float *scratch, pthreadpool_t pool);

#endif
