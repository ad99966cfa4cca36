/* Decoded RGB8 to the network's input tensor (the second half of image.h).
 *
 * imagenet mode reproduces torchvision's
 *     Resize(256) -> CenterCrop(224) -> ToTensor() -> Normalize(mean, std)
 * on a PIL image. The resize follows Pillow's ImagingResample with the BILINEAR filter: the same
 * coefficient windows (0.5 centre offsets included), the same 22-bit fixed-point coefficients, the
 * horizontal pass first, and a rounding to whole values after each pass, as Pillow rounds to uint8.
 *
 * The arithmetic is float, not Pillow's int32. The coefficients are Pillow's exactly (K / 2^22 is exact
 * in a float), so the only difference is float rounding inside the sums, a few 1e-5 of a grey level.
 * That matters only where Pillow's exact sum sits on a .5 boundary: measured against an int32 port of
 * Pillow over 14 image sizes, 0.08% of the output values were one grey level off (0.5% at the worst
 * ratio, 15:8, where ties are common), none by more, and 1:1 and 2:1 match exactly. The int32 port was
 * the first version and was more than twice as slow: without SSE4.1 the compiler emulates 32-bit
 * vector multiplies, and it could not vectorise the horizontal pass at all. An exact float version
 * (coefficients split in two halves whose products fit 24 bits) was rejected because it doubles the
 * multiplies for a difference no classifier can see. Rounding between the passes is kept: it is one
 * convert-and-back per value and keeps the output on Pillow's side of nearly every .5.
 *
 * /255, -mean and /std are folded into one multiply-add per element, which differs from torch's three
 * float32 operations by an ulp or two.
 *
 * Only the 224x224 window that survives the crop is computed: the horizontal pass runs over just the
 * source rows that the cropped output rows read, and produces just the cropped columns. */
#include "engine/image.h"


#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS (32 - 8 - 2) /* Pillow's: 8 bits of pixel, 2 of headroom in an int32 */
#define CROP_ROW (IMAGE_CROP * 3u) /* elements in one row of the output */

static const float IMAGENET_MEAN[3] = {0.485f, 0.456f, 0.406f};
static const float IMAGENET_STD[3] = {0.229f, 0.224f, 0.225f};

int preprocess_mode_parse(const char *s, preprocess_mode *out)
{
    if (!s || !out)
        return IMGCLS_EINVAL;
    if (strcmp(s, "imagenet") == 0)
        *out = PREPROCESS_IMAGENET;
    else if (strcmp(s, "reference") == 0)
        *out = PREPROCESS_REFERENCE;
    else
        return IMGCLS_EINVAL;
    return 0;
}

void image_tensor_free(image_tensor *t)
{
    if (!t)
        return;
    free(t->data);
    t->data = NULL;
    t->w = t->h = 0;
}

/* w*h*3 floats. */
static float *tensor_alloc(uint32_t w, uint32_t h)
{
    size_t n = (size_t)w * h * 3;
    if (n > SIZE_MAX / sizeof(float))
        return NULL;
    return malloc(n * sizeof(float));
}

/* ---- Pillow's resampling coefficients ---------------------------------------------------------- */

/* One axis of the resize, restricted to the outputs [first, first + IMAGE_CROP). */
typedef struct resample_axis {
    float *k;                /* IMAGE_CROP rows of ksize coefficients (each repeated 4 times when
                              * clamped, ready for a 4-lane multiply), zero-padded */
    uint32_t lo[IMAGE_CROP]; /* first source index each output reads */
    uint32_t n[IMAGE_CROP];  /* how many it reads: Pillow's window, or ksize once clamped */
    uint32_t ksize;
} resample_axis;

static double bilinear(double x)
{
    if (x < 0.0)
        x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Pillow's precompute_coeffs() followed by normalize_coeffs_8bpc(), for in_size -> out_size, but only
 * for the outputs first .. first + IMAGE_CROP - 1. The expressions are Pillow's, in double and in the
 * same order, so the windows and the 22-bit fixed-point coefficients come out identical; each is then
 * stored as the float K / 2^22, which is exact. The filter is evaluated twice per tap (for the sum,
 * then for the weight) rather than kept in a scratch array: the values are bit-identical.
 *
 * clamp: give every output exactly ksize taps, moving windows that would run past the end of the
 * input back inside it (their extra taps get zero weight), so the horizontal kernel can run a fixed
 * number of taps and never read past a row. ksize <= in_size always holds: the resized sides are at
 * least 256, so ksize <= 2 * in / 256 + 3, and inputs are at least IMAGE_MIN_SIDE. Clamped axes
 * (the horizontal one) also store each coefficient four times over, so the kernel loads a ready
 * vector instead of broadcasting a scalar per tap. */
static int axis_init(resample_axis *ax, uint32_t in_size, uint32_t out_size, uint32_t first, int clamp)
{
    double scale = (double)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale; /* the bilinear filter reaches 1 pixel each way */
    double ss = 1.0 / filterscale;
    ax->ksize = (uint32_t)ceil(support) * 2 + 1;
    if (ax->ksize > in_size)
        return IMGCLS_EINVAL;
    size_t rep = clamp ? 4 : 1;
    ax->k = calloc((size_t)IMAGE_CROP * ax->ksize * rep, sizeof *ax->k);
    if (!ax->k)
        return IMGCLS_ENOMEM;
    for (uint32_t i = 0; i < IMAGE_CROP; i++) {
        double center = ((double)(first + i) + 0.5) * scale;
        int64_t xmin = (int64_t)(center - support + 0.5);
        int64_t xmax = (int64_t)(center + support + 0.5);
        if (xmin < 0)
            xmin = 0;
        if (xmax > (int64_t)in_size)
            xmax = in_size;
        xmax -= xmin;
        if (xmax > (int64_t)ax->ksize) /* cannot happen (see Pillow); keeps the row in bounds */
            xmax = ax->ksize;
        int64_t shift = clamp && xmin + ax->ksize > in_size ? xmin + ax->ksize - in_size : 0;
        double ww = 0.0;
        for (int64_t x = 0; x < xmax; x++)
            ww += bilinear(((double)(x + xmin) - center + 0.5) * ss);
        float *k = ax->k + ((size_t)i * ax->ksize + (size_t)shift) * rep;
        for (int64_t x = 0; x < xmax; x++) {
            double w = bilinear(((double)(x + xmin) - center + 0.5) * ss);
            if (ww != 0.0)
                w /= ww;
            /* Pillow: (int)(+-0.5 + w * (1 << PRECISION_BITS)); bilinear weights are never negative */
            int32_t fixed = (int32_t)(0.5 + w * (1 << PRECISION_BITS));
            for (size_t r = 0; r < rep; r++)
                k[(size_t)x * rep + r] = (float)fixed * (1.0f / (float)(1 << PRECISION_BITS));
        }
        ax->lo[i] = (uint32_t)(xmin - shift);
        ax->n[i] = clamp ? ax->ksize : (uint32_t)xmax;
    }
    return 0;
}

/* ---- the two passes ----------------------------------------------------------------------------- */

/* Four floats in one vector: R, G, B and a lane that is never used. GCC/Clang vector extensions rather
 * than SSE or NEON intrinsics: the same source compiles to either, and to scalar code elsewhere. */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4f v4f_load(const float *p)
{
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* A row segment of bytes to floats. The fixed 16-element inner loop is there for GCC at -O2, which
 * only vectorises loops whose trip count is a known multiple of the vector width. */
static void bytes_to_floats(const uint8_t *restrict src, size_t n, float *restrict dst)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (size_t j = 0; j < 16; j++)
            dst[i + j] = (float)src[i + j];
    for (; i < n; i++)
        dst[i] = (float)src[i];
}

/* One row of the horizontal pass with a tap count known at compile time (the common ones are inlined
 * with constants below, so the tap loop unrolls). Each output pixel is one 4-lane multiply-add per tap
 * over an R,G,B,(next R) load. Results are rounded to integers the way Pillow rounds to uint8: +0.5
 * (folded into the start value) and truncation, which is floor here because nothing is negative. */
static inline __attribute__((always_inline)) void
hrow(const float *rowf, uint32_t cx0, const resample_axis *ax, uint32_t ksize, float *dst)
{
    const v4f half = {0.5f, 0.5f, 0.5f, 0.5f};
    for (uint32_t x = 0; x < IMAGE_CROP; x++) {
        const float *s = rowf + (size_t)(ax->lo[x] - cx0) * 3;
        const float *k = ax->k + (size_t)x * ksize * 4; /* each coefficient already in 4 lanes */
        v4f acc = half;
#pragma GCC unroll 8
        for (uint32_t t = 0; t < ksize; t++)
            acc += v4f_load(s + 3 * t) * v4f_load(k + 4 * t);
        v4f h = __builtin_convertvector(__builtin_convertvector(acc, v4i), v4f);
        memcpy(dst + 3 * x, &h, sizeof h); /* the 4th lane lands on the next pixel, or the slack */
    }
}

/* The horizontal pass for source row y: its segment [cx0, cx1) to floats (rowf, one float of slack),
 * then the IMAGE_CROP cropped columns into dst (CROP_ROW floats, and one more that hrow() may
 * scribble on). */
static void hpass_row(const image_rgb8 *img, uint32_t y, const resample_axis *ax, uint32_t cx0,
                      uint32_t cx1, float *restrict rowf, float *restrict dst)
{
    bytes_to_floats(img->px + ((size_t)y * img->w + cx0) * 3, (size_t)(cx1 - cx0) * 3, rowf);
    switch (ax->ksize) { /* 3: upscaling; 5: up to 2:1 (DCT-scaled JPEGs land here); 7: up to 3:1 */
    case 3: hrow(rowf, cx0, ax, 3, dst); break;
    case 5: hrow(rowf, cx0, ax, 5, dst); break;
    case 7: hrow(rowf, cx0, ax, 7, dst); break;
    default: hrow(rowf, cx0, ax, ax->ksize, dst); break;
    }
}

/* The vertical pass for one output row, from the horizontal results of the rows it reads (rows[t]
 * for tap t), rounded like Pillow, then ToTensor + Normalize folded into out = value * mul + add.
 * 16 floats at a time, in four independent 4-lane accumulators that stay in registers across the taps
 * (an accumulator array in memory cost a load and a store per tap). */
static void vpass_row(const float *const *rows, const float *k, uint32_t n, const float *mul,
                      const float *add, float *restrict o)
{
    enum { STEP = 16 }; /* CROP_ROW = 672 = 42 * 16 */
    const v4f half = {0.5f, 0.5f, 0.5f, 0.5f};
    for (uint32_t i = 0; i < CROP_ROW; i += STEP) {
        v4f a0 = half, a1 = half, a2 = half, a3 = half;
        for (uint32_t t = 0; t < n; t++) {
            const float *row = rows[t] + i;
            float kt = k[t];
            a0 += v4f_load(row) * kt;
            a1 += v4f_load(row + 4) * kt;
            a2 += v4f_load(row + 8) * kt;
            a3 += v4f_load(row + 12) * kt;
        }
        v4f acc[4] = {a0, a1, a2, a3};
        for (int j = 0; j < 4; j++) {
            v4f v = __builtin_convertvector(__builtin_convertvector(acc[j], v4i), v4f);
            v = v * v4f_load(mul + i + 4 * j) + v4f_load(add + i + 4 * j);
            memcpy(o + i + 4 * j, &v, sizeof v);
        }
    }
}

/* Both passes, interleaved: each source row goes through the horizontal pass once, just before the
 * first output row that needs it, into a ring of ksize slots (the most any output row reads; windows
 * only move down). This keeps ~ksize * 2.7 KB of intermediate rows in L1 instead of a whole
 * rows x 224 x 3 float image (~0.9 MB for a 500x375 input), and spares the allocator from mapping
 * and unmapping that much on every call. Slots are RING_STRIDE apart: hrow() writes one float past
 * the end of its row. rowp: scratch for vy->ksize row pointers. */
#define RING_STRIDE (CROP_ROW + 4)
static void resample_crop(const image_rgb8 *img, const resample_axis *hx, const resample_axis *vy,
                          uint32_t cx0, uint32_t cx1, float *rowf, float *ring, const float **rowp,
                          float *out)
{
    float mul[CROP_ROW], add[CROP_ROW];
    for (uint32_t i = 0; i < CROP_ROW; i++) {
        mul[i] = (float)(1.0 / (255.0 * IMAGENET_STD[i % 3]));
        add[i] = (float)(-(double)IMAGENET_MEAN[i % 3] / IMAGENET_STD[i % 3]);
    }
    const uint32_t slots = vy->ksize;
    uint32_t next = vy->lo[0]; /* the next source row to run through the horizontal pass */
    for (uint32_t y = 0; y < IMAGE_CROP; y++) {
        for (uint32_t end = vy->lo[y] + vy->n[y]; next < end; next++)
            hpass_row(img, next, hx, cx0, cx1, rowf, ring + (size_t)(next % slots) * RING_STRIDE);
        for (uint32_t t = 0; t < vy->n[y]; t++)
            rowp[t] = ring + (size_t)((vy->lo[y] + t) % slots) * RING_STRIDE;
        vpass_row(rowp, vy->k + (size_t)y * vy->ksize, vy->n[y], mul, add, out + (size_t)y * CROP_ROW);
    }
}

/* ---- the modes ---------------------------------------------------------------------------------- */

/* torchvision's CenterCrop offset: int(round((size - 224) / 2.0)), where Python rounds halves to even
 * (an odd excess of 117 gives 58.5 -> 58, of 119 gives 59.5 -> 60). */
static uint32_t crop_offset(uint32_t size)
{
    uint32_t d = size - IMAGE_CROP, q = d / 2;
    return q + ((d & 1u) && (q & 1u));
}

/* torchvision's Resize(256) size: the shorter side becomes 256, the longer int(256 * long / short),
 * truncated. Python divides exactly-representable integers in double, as this does. */
static int resized_size(uint32_t w, uint32_t h, uint32_t *nw, uint32_t *nh)
{
    uint32_t s = w <= h ? w : h, l = w <= h ? h : w;
    double nl = (double)((uint64_t)IMAGE_RESIZE_SHORT * l) / (double)s;
    if (nl > (double)INT32_MAX)
        return IMGCLS_ETOOBIG;
    *nw = w <= h ? IMAGE_RESIZE_SHORT : (uint32_t)nl;
    *nh = w <= h ? (uint32_t)nl : IMAGE_RESIZE_SHORT;
    return 0;
}

static int preprocess_imagenet(const image_rgb8 *img, image_tensor *out, imgcls_errbuf *eb)
{
    resample_axis hx = {0}, vy = {0};
    float *ring = NULL, *rowf = NULL, *data = NULL;
    const float **rowp = NULL;
    uint32_t nw = 0, nh = 0;
    int rc = resized_size(img->w, img->h, &nw, &nh);
    if (rc) {
        imgcls_fail(eb, rc, "%ux%u has too extreme an aspect ratio", img->w, img->h);
        goto out;
    }
    if ((rc = axis_init(&hx, img->w, nw, crop_offset(nw), 1)) ||
        (rc = axis_init(&vy, img->h, nh, crop_offset(nh), 0))) {
        imgcls_fail(eb, rc, "cannot resize %ux%u to %ux%u: %s", img->w, img->h, nw, nh,
                    imgcls_strerror(rc));
        goto out;
    }
    /* Window starts and ends only grow with the output index, so the first and last cropped
     * columns bound the source columns needed. */
    uint32_t x0 = hx.lo[0], x1 = hx.lo[IMAGE_CROP - 1] + hx.ksize;
    ring = malloc((size_t)vy.ksize * RING_STRIDE * sizeof *ring);
    rowp = malloc(vy.ksize * sizeof *rowp);
    rowf = malloc(((size_t)(x1 - x0) * 3 + 1) * sizeof *rowf);
    data = tensor_alloc(IMAGE_CROP, IMAGE_CROP);
    if (!ring || !rowp || !rowf || !data) {
        rc = imgcls_fail(eb, IMGCLS_ENOMEM, "no memory to preprocess a %ux%u image", img->w, img->h);
        goto out;
    }
    rowf[(size_t)(x1 - x0) * 3] = 0.0f; /* the slack lane is read, never used; keep it defined */
    resample_crop(img, &hx, &vy, x0, x1, rowf, ring, rowp, data);
    out->data = data;
    data = NULL;
    out->w = out->h = IMAGE_CROP;
out:
    free(hx.k);
    free(vy.k);
    free(ring);
    free(rowp);
    free(rowf);
    free(data);
    return rc;
}

/* The original assignment's script: the decoded image as float in [0,1], at its own size. Divides
 * rather than multiplying by 1/255, so each value is the correctly rounded x/255 that numpy and torch
 * produce. */
static int preprocess_reference(const image_rgb8 *img, image_tensor *out, imgcls_errbuf *eb)
{
    float *restrict data = tensor_alloc(img->w, img->h);
    if (!data)
        return imgcls_fail(eb, IMGCLS_ENOMEM, "no memory for a %ux%u tensor", img->w, img->h);
    const uint8_t *restrict px = img->px;
    size_t n = (size_t)img->w * img->h * 3, i = 0;
    for (; i + 16 <= n; i += 16) /* fixed inner trip count: see bytes_to_floats() */
        for (size_t j = 0; j < 16; j++)
            data[i + j] = (float)px[i + j] / 255.0f;
    for (; i < n; i++)
        data[i] = (float)px[i] / 255.0f;
    out->data = data;
    out->w = img->w;
    out->h = img->h;
    return 0;
}

int image_preprocess(const image_rgb8 *img, preprocess_mode mode, image_tensor *out, imgcls_errbuf *eb)
{
    if (!out)
        return imgcls_fail(eb, IMGCLS_EINVAL, "no output tensor");
    memset(out, 0, sizeof *out);
    if (!img || !img->px)
        return imgcls_fail(eb, IMGCLS_EINVAL, "no image");
    if (img->w < IMAGE_MIN_SIDE || img->h < IMAGE_MIN_SIDE)
        return imgcls_fail(eb, IMGCLS_EFORMAT, "%ux%u is too small (the minimum is %ux%u)", img->w,
                           img->h, IMAGE_MIN_SIDE, IMAGE_MIN_SIDE);
    switch (mode) {
    case PREPROCESS_IMAGENET: return preprocess_imagenet(img, out, eb);
    case PREPROCESS_REFERENCE: return preprocess_reference(img, out, eb);
    }
    return imgcls_fail(eb, IMGCLS_EINVAL, "unknown preprocess mode %d", (int)mode);
}

int image_load_tensor(const uint8_t *data, size_t len, const image_limits *lim, preprocess_mode mode,
                      image_tensor *out, imgcls_errbuf *eb)
{
    image_rgb8 img = {0};
    uint32_t hint = mode == PREPROCESS_IMAGENET ? IMAGE_RESIZE_SHORT : 0;
    if (out)
        memset(out, 0, sizeof *out);
    int rc = image_decode(data, len, lim, hint, &img, eb);
    if (!rc)
        rc = image_preprocess(&img, mode, out, eb);
    image_free(&img);
    return rc;
}
