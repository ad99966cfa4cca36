/* A packed f32 GEMM for AVX2+FMA: the engine's 1x1 convolutions (and anything else shaped like them).
 *
 *   c[m x n] = clamp(a[m x k] * w^T + bias, lo, hi)
 *
 * a and c are row-major with row strides lda and ldc (in floats), which is what an NHWC activation is
 * when a 1x1, stride-1, unpadded convolution reads it: m = batch*H*W pixels, k = input channels. w is
 * n x k row-major, the OHWI weight of a 1x1 convolution, and is packed once, by gemm_pack, into
 * 16-column panels with the bias in front, so the kernel streams it with aligned loads.
 *
 * Why our own kernel: Debian 12's XNNPACK (2022-02), built by GCC, spills an accumulator of its 5x16
 * FMA3 kernel to the stack inside the k loop, so a 256x1024x1024 GEMM runs at 24 GFLOP/s on a Zen3
 * core whose peak is ~93; this kernel keeps all 12 accumulators in registers (see gemm.c). */
#ifndef IMGCLS_ENGINE_GEMM_H
#define IMGCLS_ENGINE_GEMM_H

#include "common/error.h"

#include <pthreadpool.h>
#include <stddef.h>

typedef struct gemm_weights gemm_weights;

/* Whether this CPU has AVX2 and FMA. Without them nothing here may be called: the caller uses
 * another path (XNNPACK's own convolution). */
int gemm_available(void);

/* Packs w (n x k, row-major) and bias (n floats, or NULL for zeros). w and bias are not kept.
 * Returns 0 and *out (free with gemm_weights_free), IMGCLS_EINVAL for n or k of 0, or IMGCLS_ENOMEM. */
int gemm_pack(const float *w, const float *bias, size_t n, size_t k, gemm_weights **out);
void gemm_weights_free(gemm_weights *pw); /* accepts NULL */

size_t gemm_weights_n(const gemm_weights *pw);
size_t gemm_weights_k(const gemm_weights *pw);

/* Where gemm_run writes, and what it does on the way out:
 *   c[i*ldc + j] = clamp(acc[i][j] + (res ? res[i*ldr + j] : 0), lo, hi)
 * res is a fused residual add (MobileNetV2's and ResNet's skip connections): the add then costs no pass
 * of its own over memory. lo <= hi; -INFINITY and INFINITY for no activation. */
typedef struct gemm_out {
    float *c;
    size_t ldc;
    const float *res; /* NULL, or m x n floats with row stride ldr; must not overlap c */
    size_t ldr;
    float lo, hi;
} gemm_out;

/* Computes m rows (m may be 0) of c as above. lda >= k and ldc, ldr >= n. a is read exactly (no bytes
 * past row m-1's k floats), c written exactly (n floats per row). a and c must not overlap. pool may be
 * NULL (the caller's thread). */
void gemm_run(const gemm_weights *pw, size_t m, const float *a, size_t lda, const gemm_out *out,
              pthreadpool_t pool);

#endif
