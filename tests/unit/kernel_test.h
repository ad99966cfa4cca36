/* Shared by the kernel unit tests (test_gemm, test_dwconv, test_fused): reproducible random inputs,
 * the clamp bounds of the three activations, and a 3-thread pool fixture. Header-only (static
 * functions) because CMake builds each tests/unit/test_*.c on its own; include after <cmocka.h>. */
#ifndef IMGCLS_TESTS_KERNEL_TEST_H
#define IMGCLS_TESTS_KERNEL_TEST_H

#include <math.h>
#include <pthreadpool.h>
#include <stdint.h>
#include <stdlib.h>

/* A fixed xorshift stream in [-1, 1), so a failure reproduces. */
static inline float frand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return (float)(*s >> 8) / (float)(1u << 23) - 1.0f;
}

/* n floats in [-2, 2): wide enough that relu and relu6 both clip something. */
static inline float *rand_floats(size_t n, uint32_t seed)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    assert_non_null(p);
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++)
        p[i] = frand(&s) * 2.0f;
    return p;
}

/* Output clamps of the activations, indexed none, relu, relu6. */
static const float LO[3] = {-INFINITY, 0.0f, 0.0f};
static const float HI[3] = {INFINITY, INFINITY, 6.0f};

/* cmocka group fixtures: *state is a 3-thread pool (more threads than cores, so tasks interleave). */
static inline int setup_pool(void **state)
{
    *state = pthreadpool_create(3);
    return *state ? 0 : -1;
}

static inline int teardown_pool(void **state)
{
    pthreadpool_destroy(*state);
    return 0;
}

#endif
