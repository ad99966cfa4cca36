/* Unit tests for the fused inverted-residual block (src/engine/fused.h), against the same three layers
 * run one after the other (gemm_run, dwconv_run, gemm_run with the residual in its epilogue).
 *
 * fused.h promises the same bytes, not just close ones: each output goes through the same operations in
 * the same order. So the comparison is memcmp. Shapes are chosen to miss the band and ring arithmetic's
 * easy cases: odd and tiny sides (a band of 1 row, an image shorter than a band, out_h smaller than the
 * thread count), stride 2 with odd and even heights (a task's first band starting on an odd input row),
 * wide rows (R = 1, the ring wrapping every band), channel counts off the 8- and 16-lane blocks, batches
 * of 2 (the ring starts over per image), with and without a residual, on the caller's thread and on 2
 * and 3 threads. */
#include "engine/dwconv.h"
#include "engine/fused.h"
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

static float *alloc_floats(size_t n)
{
    float *p = aligned_alloc(64, (n + 16) / 16 * 16 * sizeof *p);
    assert_non_null(p);
    return p;
}

typedef struct tcase {
    size_t batch, h, w, cin, chid, cout, stride;
    int residual;
} tcase;

/* The unfused reference: expand, depthwise, project, each over the whole tensor. */
static void reference(const fused_block *b, const tcase *t, const float *x, const float *res, float *y)
{
    size_t oh = dwconv_out_side(t->h, t->stride), ow = dwconv_out_side(t->w, t->stride);
    float *hid = alloc_floats(t->batch * t->h * t->w * t->chid), *dw = alloc_floats(t->batch * oh * ow * t->chid);
    gemm_out e = {.c = hid, .ldc = t->chid, .lo = b->e_lo, .hi = b->e_hi};
    gemm_run(b->expand, t->batch * t->h * t->w, x, t->cin, &e, NULL);
    dwconv_shape ds = {.batch = t->batch, .in_h = t->h, .in_w = t->w, .stride = t->stride};
    dwconv_run(b->dw, &ds, hid, dw, b->d_lo, b->d_hi, NULL);
    gemm_out p = {.c = y, .ldc = t->cout, .res = res, .ldr = t->cout, .lo = b->lo, .hi = b->hi};
    gemm_run(b->project, t->batch * oh * ow, dw, t->chid, &p, NULL);
    free(hid);
    free(dw);
}

static void run_case(const tcase *t, pthreadpool_t pool)
{
    size_t oh = dwconv_out_side(t->h, t->stride), ow = dwconv_out_side(t->w, t->stride);
    size_t nx = t->batch * t->h * t->w * t->cin, ny = t->batch * oh * ow * t->cout;
    uint32_t seed = (uint32_t)(t->h * 131 + t->w * 7 + t->chid);
    float *x = rand_floats(nx, seed), *we = rand_floats(t->chid * t->cin, seed + 1);
    float *be = rand_floats(t->chid, seed + 2), *wd = rand_floats(9 * t->chid, seed + 3);
    float *bd = rand_floats(t->chid, seed + 4), *wp = rand_floats(t->cout * t->chid, seed + 5);
    float *bp = rand_floats(t->cout, seed + 6), *res = t->residual ? rand_floats(ny, seed + 7) : NULL;
    float *want = alloc_floats(ny), *got = alloc_floats(ny);
    gemm_weights *ge = NULL, *gp = NULL;
    dwconv_weights *gd = NULL;
    assert_int_equal(gemm_pack(we, be, t->chid, t->cin, &ge), 0);
    assert_int_equal(dwconv_pack(wd, bd, t->chid, &gd), 0);
    assert_int_equal(gemm_pack(wp, bp, t->cout, t->chid, &gp), 0);
    fused_block b = {.expand = ge, .dw = gd, .project = gp, .stride = t->stride, .e_lo = 0.0f, .e_hi = 6.0f,
                     .d_lo = 0.0f, .d_hi = 6.0f, .lo = -INFINITY, .hi = INFINITY};
    reference(&b, t, x, res, want);
    size_t threads[3] = {1, 2, 3};
    for (size_t i = 0; i < 3; i++) {
        pthreadpool_t p = threads[i] == 1 ? NULL : threads[i] == 3 ? pool : pthreadpool_create(2);
        fused_shape s = {.batch = t->batch, .in_h = t->h, .in_w = t->w, .threads = threads[i]};
        float *scratch = alloc_floats(fused_scratch(&b, &s));
        memset(got, 0xff, ny * sizeof *got); /* NaN: an output never written shows */
        fused_run(&b, &s, x, res, got, scratch, p);
        if (memcmp(got, want, ny * sizeof *got))
            fail_msg("%zux%zux%zu->%zu->%zu s%zu res %d batch %zu, %zu threads: fused differs", t->h, t->w,
                     t->cin, t->chid, t->cout, t->stride, t->residual, t->batch, threads[i]);
        free(scratch);
        if (threads[i] == 2)
            pthreadpool_destroy(p);
    }
    gemm_weights_free(ge);
    gemm_weights_free(gp);
    dwconv_weights_free(gd);
    free(x), free(we), free(be), free(wd), free(bd), free(wp), free(bp), free(res), free(want), free(got);
}

static void test_fused_small_sides(void **state)
{
    if (!gemm_available())
        skip();
    for (size_t h = 1; h <= 7; h++)
        for (size_t w = 1; w <= 5; w += 2)
            for (size_t stride = 1; stride <= 2; stride++) {
                tcase t = {.batch = 2, .h = h, .w = w, .cin = 5, .chid = 13, .cout = 7, .stride = stride,
                           .residual = stride == 1};
                run_case(&t, *state);
                t.residual = 0;
                t.cout = 17;
                run_case(&t, *state);
            }
}

static void test_fused_network_shapes(void **state)
{
    if (!gemm_available())
        skip();
    static const tcase cases[] = {
        {1, 112, 112, 16, 96, 24, 2, 0}, /* MobileNetV2's first expanded block */
        {1, 56, 56, 24, 144, 24, 1, 1}, /* and its first residual one */
        {1, 29, 31, 20, 120, 20, 1, 1}, /* odd sides, channels off the blocks */
        {2, 31, 29, 12, 100, 40, 2, 0}, /* odd height at stride 2, batch 2 */
        {1, 40, 41, 8, 600, 16, 2, 0},  /* wide hidden rows: bands of 1 row, the ring wraps each band */
        {1, 33, 300, 8, 200, 8, 1, 1},  /* long rows: R = 1 at stride 1 */
        {1, 7, 7, 160, 960, 160, 1, 1}, /* the last blocks' shape */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i], *state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fused_small_sides, setup_pool, teardown_pool),
        cmocka_unit_test_setup_teardown(test_fused_network_shapes, setup_pool, teardown_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
