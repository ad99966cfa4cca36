/* Unit tests for the AVX2+FMA depthwise 3x3 convolution (src/engine/dwconv.h), against a naive loop in
 * double precision with explicit zero padding.
 *
 * Sizes that miss the kernel's blocks and paths: channels not a multiple of 8 (masked loads and stores
 * of 1..7 lanes), sides of 1..7 (a row that is all border, rows with no top or no bottom neighbour,
 * interiors of 0, 1 and odd pixel counts for the two-pixel loop), stride 2 with odd and even sides,
 * batches of 2, and every activation. Each case runs on the caller's thread and on 3 threads, which must
 * agree byte for byte (every output is computed the same way whoever computes it). */
#include "engine/dwconv.h"
#include "engine/gemm.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kernel_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* w is [3][3][c], as in the weight file. */
static double naive_at(const dwconv_shape *s, size_t c, const float *x, const float *w, const float *bias, size_t b,
                       size_t oy, size_t ox, size_t ch)
{
    double acc = bias[ch];
    for (size_t ky = 0; ky < 3; ky++)
        for (size_t kx = 0; kx < 3; kx++) {
            long iy = (long)(oy * s->stride + ky) - 1, ix = (long)(ox * s->stride + kx) - 1;
            if (iy < 0 || ix < 0 || iy >= (long)s->in_h || ix >= (long)s->in_w)
                continue;
            acc += (double)x[((b * s->in_h + (size_t)iy) * s->in_w + (size_t)ix) * c + ch] *
                   (double)w[(ky * 3 + kx) * c + ch];
        }
    return acc;
}

static void run_case(size_t batch, size_t h, size_t w, size_t c, size_t stride, pthreadpool_t pool)
{
    dwconv_shape s = {.batch = batch, .in_h = h, .in_w = w, .stride = stride};
    size_t oh = dwconv_out_side(h, stride), ow = dwconv_out_side(w, stride), ny = batch * oh * ow * c;
    float *x = rand_floats(batch * h * w * c, (uint32_t)(h * 131 + w * 7 + c)), *wt = rand_floats(9 * c, 3);
    float *bias = rand_floats(c, 5), *y1 = malloc(ny * sizeof *y1), *y2 = malloc(ny * sizeof *y2);
    dwconv_weights *pw = NULL;
    assert_non_null(y1);
    assert_non_null(y2);
    assert_int_equal(dwconv_pack(wt, bias, c, &pw), 0);
    for (size_t a = 0; a < 3; a++) {
        dwconv_run(pw, &s, x, y1, LO[a], HI[a], NULL);
        dwconv_run(pw, &s, x, y2, LO[a], HI[a], pool);
        if (memcmp(y1, y2, ny * sizeof *y1))
            fail_msg("%zux%zux%zu s%zu: 1 and 3 threads differ", h, w, c, stride);
        for (size_t i = 0; i < ny; i++) {
            size_t ch = i % c, ox = i / c % ow, oy = i / c / ow % oh, b = i / c / ow / oh;
            double want = naive_at(&s, c, x, wt, bias, b, oy, ox, ch);
            want = want < LO[a] ? LO[a] : want > HI[a] ? HI[a] : want;
            if (fabs(y1[i] - want) > 1e-5 * (1.0 + fabs(want)))
                fail_msg("%zux%zux%zu s%zu act %zu: y[%zu][%zu][%zu][%zu] = %.7g, want %.7g", h, w, c, stride, a, b,
                         oy, ox, ch, (double)y1[i], want);
        }
    }
    dwconv_weights_free(pw);
    free(x);
    free(wt);
    free(bias);
    free(y1);
    free(y2);
}

static void test_dwconv_small_sides(void **state)
{
    if (!gemm_available())
        skip();
    static const size_t chans[] = {1, 13, 24}; /* one lane; a full block and a 5-lane tail; 3 blocks */
    for (size_t h = 1; h <= 7; h++)
        for (size_t w = 1; w <= 7; w++)
            for (size_t ci = 0; ci < sizeof chans / sizeof chans[0]; ci++)
                for (size_t stride = 1; stride <= 2; stride++)
                    run_case(1, h, w, chans[ci], stride, *state);
}

static void test_dwconv_network_shapes(void **state)
{
    if (!gemm_available())
        skip();
    run_case(1, 28, 28, 32, 1, *state);
    run_case(1, 29, 31, 96, 2, *state);
    run_case(2, 14, 14, 144, 2, *state);
    run_case(2, 9, 11, 20, 1, *state);
    run_case(1, 7, 7, 960, 1, *state);
    run_case(1, 40, 33, 5, 2, *state);
}

/* A NaN in the input reaches the outputs whose window covers it (and only those) through every
 * activation; an inf just outside a window does not leak in through a zero weight. */
static void test_dwconv_nan_stays_local(void **state)
{
    (void)state;
    if (!gemm_available())
        skip();
    size_t h = 6, w = 6, c = 9;
    float *x = rand_floats(h * w * c, 9), *wt = rand_floats(9 * c, 4), y[36 * 9];
    dwconv_weights *pw = NULL;
    x[(2 * w + 2) * c + 4] = NAN;
    assert_int_equal(dwconv_pack(wt, NULL, c, &pw), 0);
    dwconv_shape s = {.batch = 1, .in_h = h, .in_w = w, .stride = 1};
    for (size_t a = 0; a < 3; a++) {
        dwconv_run(pw, &s, x, y, LO[a], HI[a], NULL);
        for (size_t oy = 0; oy < h; oy++)
            for (size_t ox = 0; ox < w; ox++) {
                int near = oy >= 1 && oy <= 3 && ox >= 1 && ox <= 3;
                assert_true((isnan(y[(oy * w + ox) * c + 4]) != 0) == near);
                assert_true(isnan(y[(oy * w + ox) * c + 3]) == 0);
            }
    }
    dwconv_weights_free(pw);
    free(x);
    free(wt);
}

static void test_dwconv_bad_pack(void **state)
{
    (void)state;
    float w[9] = {0};
    dwconv_weights *pw = (dwconv_weights *)(uintptr_t)1;
    assert_int_equal(dwconv_pack(w, NULL, 0, &pw), IMGCLS_EINVAL);
    assert_null(pw);
    dwconv_weights_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_dwconv_small_sides, setup_pool, teardown_pool),
        cmocka_unit_test_setup_teardown(test_dwconv_network_shapes, setup_pool, teardown_pool),
        cmocka_unit_test(test_dwconv_nan_stays_local),
        cmocka_unit_test(test_dwconv_bad_pack),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
