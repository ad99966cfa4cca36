/* Unit tests for the AVX2+FMA GEMM (src/engine/gemm.h) and the im2col convolution on top of it
 * (src/engine/gemm_conv.h), against naive loops in double precision.
 *
 * The sizes are chosen to miss the kernel's blocks: m not a multiple of 6 (every remainder kernel 1..5
 * runs), n not a multiple of 16 (masked stores of 1..15 columns), k small and odd (3, as an RGB input),
 * n = 1000 (a classifier), m = 1, and row strides wider than the rows. Each case runs on the caller's
 * thread and on a pool of 3 threads (an odd count, so tiles split unevenly), which must agree exactly:
 * the tiling changes who computes a value, never how. */
#include "engine/gemm.h"
#include "engine/gemm_conv.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kernel_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------------------------ */

static double clampd(double v, float lo, float hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* Compares got (m x n, stride ldc) with want (m x n, dense); tolerance scaled by k. */
static void expect_close(const float *got, size_t ldc, const double *want, size_t m, size_t n, size_t k)
{
    double tol = 1e-5 * (double)(k + 1) + 1e-6;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double g = got[i * ldc + j], w = want[i * n + j];
            if (fabs(g - w) > tol * (1.0 + fabs(w)))
                fail_msg("c[%zu][%zu] = %.7g, want %.7g", i, j, g, w);
        }
}

/* ---- gemm_run ----------------------------------------------------------------------------------- */

typedef struct gemm_case {
    size_t m, n, k, lda_extra, ldc_extra;
} gemm_case;

static void naive_gemm(const gemm_case *t, const float *a, size_t lda, const float *w, const float *bias,
                       const float *res, float lo, float hi, double *want)
{
    for (size_t i = 0; i < t->m; i++)
        for (size_t j = 0; j < t->n; j++) {
            double acc = bias ? bias[j] : 0.0;
            for (size_t kk = 0; kk < t->k; kk++)
                acc += (double)a[i * lda + kk] * w[j * t->k + kk];
            if (res)
                acc += res[i * (t->n + 1) + j];
            want[i * t->n + j] = clampd(acc, lo, hi);
        }
}

/* One case, every activation, with and without a residual, on 1 and 3 threads. */
static void run_case(const gemm_case *t, pthreadpool_t pool)
{
    size_t lda = t->k + t->lda_extra, ldc = t->n + t->ldc_extra, ldr = t->n + 1;
    float *a = rand_floats(t->m * lda, 1), *w = rand_floats(t->n * t->k, 2), *bias = rand_floats(t->n, 3);
    float *res = rand_floats(t->m * ldr, 4);
    float *c = malloc(t->m * ldc * sizeof *c + 1), *c3 = malloc(t->m * ldc * sizeof *c3 + 1);
    double *want = malloc(t->m * t->n * sizeof *want + 1);
    assert_true(c && c3 && want);
    gemm_weights *pw = NULL;
    assert_int_equal(gemm_pack(w, bias, t->n, t->k, &pw), 0);
    assert_int_equal(gemm_weights_n(pw), t->n);
    assert_int_equal(gemm_weights_k(pw), t->k);
    for (int act = 0; act < 3; act++)
        for (int with_res = 0; with_res < 2; with_res++) {
            /* Poison c, so a missed or stray store shows; the gap columns must stay poisoned. */
            memset(c, 0x7f, t->m * ldc * sizeof *c);
            memset(c3, 0x7f, t->m * ldc * sizeof *c3);
            gemm_out o = {.c = c, .ldc = ldc, .res = with_res ? res : NULL, .ldr = ldr, .lo = LO[act],
                          .hi = HI[act]};
            gemm_run(pw, t->m, a, lda, &o, NULL);
            o.c = c3;
            gemm_run(pw, t->m, a, lda, &o, pool);
            naive_gemm(t, a, lda, w, bias, with_res ? res : NULL, LO[act], HI[act], want);
            expect_close(c, ldc, want, t->m, t->n, t->k);
            assert_memory_equal(c, c3, t->m * ldc * sizeof *c);
            for (size_t i = 0; i < t->m; i++)
                for (size_t j = t->n; j < ldc; j++)
                    assert_int_equal(((uint8_t *)&c[i * ldc + j])[0], 0x7f);
        }
    gemm_weights_free(pw);
    free(a);
    free(w);
    free(bias);
    free(res);
    free(c);
    free(c3);
    free(want);
}

static void test_gemm_awkward_sizes(void **state)
{
    if (!gemm_available())
        skip();
    static const gemm_case cases[] = {
        {1, 1, 1, 0, 0},     {1, 1000, 64, 0, 0}, {7, 17, 3, 0, 0},   {5, 15, 9, 3, 2},  {6, 16, 16, 0, 0},
        {13, 33, 5, 1, 7},   {49, 1000, 27, 0, 0}, {50, 24, 144, 0, 0}, {11, 8, 1, 0, 0}, {2, 7, 300, 5, 1},
        {300, 40, 32, 0, 0}, {3, 1000, 3, 0, 0},  {196, 96, 576, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i], *state);
}

static void test_gemm_zero_rows_and_bad_pack(void **state)
{
    (void)state;
    if (!gemm_available())
        skip();
    float w[4] = {1, 2, 3, 4}, c[1] = {42.0f};
    gemm_weights *pw = (gemm_weights *)1;
    assert_int_equal(gemm_pack(w, NULL, 0, 4, &pw), IMGCLS_EINVAL);
    assert_null(pw);
    assert_int_equal(gemm_pack(w, NULL, 4, 0, &pw), IMGCLS_EINVAL);
    assert_int_equal(gemm_pack(w, NULL, 1, 4, &pw), 0);
    gemm_out o = {.c = c, .ldc = 1, .lo = -INFINITY, .hi = INFINITY};
    gemm_run(pw, 0, NULL, 4, &o, NULL); /* m = 0 touches nothing */
    assert_true(c[0] == 42.0f);
    float a[4] = {1, 1, 1, 1};
    gemm_run(pw, 1, a, 4, &o, NULL); /* no bias: zeros */
    assert_true(c[0] == 10.0f);
    gemm_weights_free(pw);
    gemm_weights_free(NULL);
}

/* A NaN input comes out NaN under every clamp, as it does in PyTorch. */
static void test_gemm_nan_propagates(void **state)
{
    (void)state;
    if (!gemm_available())
        skip();
    float w[2] = {1, 1}, a[2] = {NAN, 1}, c[1];
    gemm_weights *pw = NULL;
    assert_int_equal(gemm_pack(w, NULL, 1, 2, &pw), 0);
    for (int act = 0; act < 3; act++) {
        gemm_out o = {.c = c, .ldc = 1, .lo = LO[act], .hi = HI[act]};
        gemm_run(pw, 1, a, 2, &o, NULL);
        assert_true(isnan(c[0]));
    }
    gemm_weights_free(pw);
}

/* ---- gemm_conv_run ------------------------------------------------------------------------------ */

static double naive_conv_at(const gemm_conv_shape *s, const float *x, const float *w, const float *bias, size_t b,
                            size_t oy, size_t ox, size_t o)
{
    double acc = bias[o];
    for (size_t ky = 0; ky < s->kernel[0]; ky++)
        for (size_t kx = 0; kx < s->kernel[1]; kx++) {
            long iy = (long)(oy * s->stride[0] + ky * s->dilation[0]) - (long)s->pad[0];
            long ix = (long)(ox * s->stride[1] + kx * s->dilation[1]) - (long)s->pad[1];
            if (iy < 0 || ix < 0 || iy >= (long)s->in_h || ix >= (long)s->in_w)
                continue;
            for (size_t c = 0; c < s->in_c; c++)
                acc += (double)x[((b * s->in_h + (size_t)iy) * s->in_w + (size_t)ix) * s->in_c + c] *
                       w[((o * s->kernel[0] + ky) * s->kernel[1] + kx) * s->in_c + c];
        }
    return acc;
}

static void run_conv_case(gemm_conv_shape s, size_t cout, pthreadpool_t pool)
{
    size_t kh = s.kernel[0], kw = s.kernel[1], k = kh * kw * s.in_c;
    s.out_h = (s.in_h + s.pad[0] + s.pad[2] - (size_t)s.dilation[0] * (kh - 1) - 1) / s.stride[0] + 1;
    s.out_w = (s.in_w + s.pad[1] + s.pad[3] - (size_t)s.dilation[1] * (kw - 1) - 1) / s.stride[1] + 1;
    size_t rows = s.batch * s.out_h * s.out_w;
    float *x = rand_floats(s.batch * s.in_h * s.in_w * s.in_c, 5), *w = rand_floats(cout * k, 6);
    float *bias = rand_floats(cout, 7), *y = malloc(rows * cout * sizeof *y), *y3 = malloc(rows * cout * sizeof *y3);
    float *scratch = malloc(gemm_conv_scratch(&s) * sizeof *scratch);
    double *want = malloc(rows * cout * sizeof *want);
    assert_true(y && y3 && scratch && want);
    gemm_weights *pw = NULL;
    assert_int_equal(gemm_pack(w, bias, cout, k, &pw), 0);
    gemm_out o = {.c = y, .ldc = cout, .lo = 0.0f, .hi = 6.0f};
    gemm_conv_run(pw, &s, x, &o, scratch, NULL);
    o.c = y3;
    gemm_conv_run(pw, &s, x, &o, scratch, pool);
    for (size_t p = 0; p < rows; p++)
        for (size_t c = 0; c < cout; c++)
            want[p * cout + c] = clampd(naive_conv_at(&s, x, w, bias, p / (s.out_h * s.out_w),
                                                      p / s.out_w % s.out_h, p % s.out_w, c), 0.0f, 6.0f);
    expect_close(y, cout, want, rows, cout, k);
    assert_memory_equal(y, y3, rows * cout * sizeof *y);
    gemm_weights_free(pw);
    free(x);
    free(w);
    free(bias);
    free(y);
    free(y3);
    free(scratch);
    free(want);
}

static void test_conv_matches_naive(void **state)
{
    if (!gemm_available())
        skip();
    /* MobileNetV2's first conv (3x3 s2, padding only bottom/right as torchvision's folds to), a ResNet
     * stem (7x7 s2 p3), a 3x3 s1 p1 with batch 2, a dilated one, and one big enough to need several
     * im2col chunks. */
    gemm_conv_shape a = {.batch = 1, .in_h = 33, .in_w = 31, .in_c = 3, .kernel = {3, 3}, .stride = {2, 2},
                         .dilation = {1, 1}, .pad = {1, 1, 1, 1}};
    gemm_conv_shape b = {.batch = 1, .in_h = 40, .in_w = 37, .in_c = 3, .kernel = {7, 7}, .stride = {2, 2},
                         .dilation = {1, 1}, .pad = {3, 3, 3, 3}};
    gemm_conv_shape c = {.batch = 2, .in_h = 9, .in_w = 11, .in_c = 20, .kernel = {3, 3}, .stride = {1, 1},
                         .dilation = {1, 1}, .pad = {1, 1, 1, 1}};
    gemm_conv_shape d = {.batch = 1, .in_h = 12, .in_w = 10, .in_c = 5, .kernel = {3, 2}, .stride = {1, 2},
                         .dilation = {2, 3}, .pad = {2, 0, 1, 3}};
    gemm_conv_shape e = {.batch = 1, .in_h = 30, .in_w = 30, .in_c = 64, .kernel = {3, 3}, .stride = {1, 1},
                         .dilation = {1, 1}, .pad = {1, 1, 1, 1}};
    run_conv_case(a, 32, *state);
    run_conv_case(b, 19, *state);
    run_conv_case(c, 40, *state);
    run_conv_case(d, 7, *state);
    run_conv_case(e, 24, *state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_gemm_awkward_sizes, setup_pool, teardown_pool),
        cmocka_unit_test(test_gemm_zero_rows_and_bad_pack),
        cmocka_unit_test(test_gemm_nan_propagates),
        cmocka_unit_test_setup_teardown(test_conv_matches_naive, setup_pool, teardown_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
