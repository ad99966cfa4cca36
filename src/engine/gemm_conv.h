/* A dense (groups = 1) NHWC convolution as im2col + gemm_run, for the kernels that are not 1x1 stride 1:
 * MobileNetV2's first 3x3 stride-2 conv, ResNet's 7x7 and 3x3s.
 *
 * Why: XNNPACK runs these through the same GEMM microkernel (IGEMM) that spills on this CPU; the first
 * conv of MobileNetV2 took 1.5 ms (15 GFLOP/s) that way, about a tenth of the network. An OHWI weight
 * flattened to [out][kh*kw*in] is already the row order of an NHWC im2col, so gemm_pack takes it as is.
 *
 * The im2col buffer is bounded: rows are converted and multiplied a chunk at a time, so a batch of 64
 * large images does not need a gigabyte of scratch. */
#ifndef IMGCLS_ENGINE_GEMM_CONV_H
#define IMGCLS_ENGINE_GEMM_CONV_H

#include "engine/gemm.h"

#include <pthreadpool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gemm_conv_shape {
    size_t batch, in_h, in_w, in_c; /* input, NHWC */
    size_t out_h, out_w;            /* output; its channels are the packed weights' n */
    uint32_t kernel[2], stride[2], dilation[2];
    uint32_t pad[4]; /* top, left, bottom, right */
} gemm_conv_shape;

/* Floats of scratch gemm_conv_run needs for this shape (a chunk of im2col rows). */
size_t gemm_conv_scratch(const gemm_conv_shape *s);

/* out (batch*out_h*out_w rows of n, NHWC) = conv(x, w) + bias, through out's residual and clamp, with pw
 * packed from the OHWI weight as n x (kh*kw*in_c). scratch holds gemm_conv_scratch(s) floats. Same
 * contract as gemm_run otherwise. */
void gemm_conv_run(const gemm_weights *pw, const gemm_conv_shape *s, const float *x, const gemm_out *out,
                   float *scratch, pthreadpool_t pool);

#endif
