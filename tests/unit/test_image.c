/* Unit tests for image decoding and preprocessing (src/engine/image.h).
 *
 * Every test image is made here, in memory, with the same codecs the decoder uses (TurboJPEG and spng
 * encoders), so the suite needs no fixture files and each case says exactly what it contains. */
#include "engine/image.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <spng.h>
#include <turbojpeg.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const float MEAN[3] = {0.485f, 0.456f, 0.406f};
static const float STD[3] = {0.229f, 0.224f, 0.225f};

/* ---- helpers ------------------------------------------------------------------------------------ */

typedef struct blob {
    uint8_t *p;
    size_t n;
} blob;

static void blob_free(blob *b)
{
    free(b->p);
    b->p = NULL;
    b->n = 0;
}

/* A smooth gradient with a little texture, so JPEG has something to code. */
static uint8_t *make_gradient(uint32_t w, uint32_t h)
{
    uint8_t *px = malloc((size_t)w * h * 3);
    assert_non_null(px);
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++) {
            uint8_t *q = px + ((size_t)y * w + x) * 3;
            q[0] = (uint8_t)(x * 255u / (w - 1));
            q[1] = (uint8_t)(y * 255u / (h - 1));
            q[2] = (uint8_t)((x ^ y) & 0x3f);
        }
    return px;
}

static uint8_t *make_constant(uint32_t w, uint32_t h, int nch, const uint8_t *v)
{
    uint8_t *px = malloc((size_t)w * h * (size_t)nch);
    assert_non_null(px);
    for (size_t i = 0; i < (size_t)w * h; i++)
        memcpy(px + i * (size_t)nch, v, (size_t)nch);
    return px;
}

static blob jpeg_encode(const uint8_t *px, int w, int h, int pf, int subsamp, int quality, int flags)
{
    tjhandle tj = tjInitCompress();
    assert_non_null(tj);
    unsigned char *jpg = NULL;
    unsigned long n = 0;
    int rc = tjCompress2(tj, px, w, 0, h, pf, &jpg, &n, subsamp, quality, flags);
    if (rc)
        fail_msg("tjCompress2: %s", tjGetErrorStr2(tj));
    blob b = {malloc(n), n};
    assert_non_null(b.p);
    memcpy(b.p, jpg, n);
    tjFree(jpg);
    tjDestroy(tj);
    return b;
}

static blob jpeg_gradient(int w, int h, int flags)
{
    uint8_t *px = make_gradient((uint32_t)w, (uint32_t)h);
    blob b = jpeg_encode(px, w, h, TJPF_RGB, TJSAMP_420, 90, flags);
    free(px);
    return b;
}

typedef struct png_opts {
    uint8_t color_type, bit_depth;
    const struct spng_plte *plte;
    const struct spng_trns *trns;
    const uint8_t *exif; /* bare TIFF block for an eXIf chunk */
    size_t exif_len;
} png_opts;

static blob png_encode(const void *img, size_t len, uint32_t w, uint32_t h, const png_opts *o)
{
    spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    assert_non_null(ctx);
    assert_int_equal(spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1), 0);
    struct spng_ihdr ihdr = {.width = w, .height = h, .bit_depth = o->bit_depth,
                             .color_type = o->color_type};
    assert_int_equal(spng_set_ihdr(ctx, &ihdr), 0);
    if (o->plte)
        assert_int_equal(spng_set_plte(ctx, (struct spng_plte *)o->plte), 0);
    if (o->trns)
        assert_int_equal(spng_set_trns(ctx, (struct spng_trns *)o->trns), 0);
    if (o->exif) {
        struct spng_exif ex = {.length = o->exif_len, .data = (char *)o->exif};
        assert_int_equal(spng_set_exif(ctx, &ex), 0);
    }
    int e = spng_encode_image(ctx, img, len, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
    if (e)
        fail_msg("spng_encode_image: %s", spng_strerror(e));
    blob b = {0};
    b.p = spng_get_png_buffer(ctx, &b.n, &e);
    assert_int_equal(e, 0);
    assert_non_null(b.p);
    spng_ctx_free(ctx);
    return b;
}

static blob png_rgb(const uint8_t *px, uint32_t w, uint32_t h)
{
    png_opts o = {.color_type = SPNG_COLOR_TYPE_TRUECOLOR, .bit_depth = 8};
    return png_encode(px, (size_t)w * h * 3, w, h, &o);
}

/* A minimal big- or little-endian TIFF block with one IFD0 entry: Orientation (0x0112, SHORT). */
static size_t make_tiff_orientation(uint8_t *t, int orientation, int big_endian)
{
    static const uint8_t be[] = {'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1,
                                 0, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t le[] = {'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0,
                                 0, 0, 0, 0, 0, 0, 0, 0};
    memcpy(t, big_endian ? be : le, sizeof be);
    t[big_endian ? 19 : 18] = (uint8_t)orientation; /* the value field, first two bytes */
    return sizeof be;
}

/* Splices an APP1 "Exif\0\0" segment in right after SOI, by hand, as cameras place it. */
static blob jpeg_with_exif(const blob *jpg, int orientation, int big_endian)
{
    uint8_t seg[64];
    size_t tiff = make_tiff_orientation(seg + 10, orientation, big_endian);
    size_t seglen = 2 + 6 + tiff;
    seg[0] = 0xFF;
    seg[1] = 0xE1;
    seg[2] = (uint8_t)(seglen >> 8);
    seg[3] = (uint8_t)seglen;
    memcpy(seg + 4, "Exif\0\0", 6);
    blob b = {malloc(jpg->n + 2 + seglen), jpg->n + 2 + seglen};
    assert_non_null(b.p);
    memcpy(b.p, jpg->p, 2);
    memcpy(b.p + 2, seg, 2 + seglen);
    memcpy(b.p + 4 + seglen, jpg->p + 2, jpg->n - 2);
    return b;
}

static uint32_t crc32_png(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static const uint8_t *pixel(const image_rgb8 *img, uint32_t x, uint32_t y)
{
    return img->px + ((size_t)y * img->w + x) * 3;
}

static void assert_near(int got, int want, int tol)
{
    if (got < want - tol || got > want + tol)
        fail_msg("got %d, want %d +- %d", got, want, tol);
}

static void assert_rgb_near(const uint8_t *p, int r, int g, int b, int tol)
{
    assert_near(p[0], r, tol);
    assert_near(p[1], g, tol);
    assert_near(p[2], b, tol);
}

/* Decodes and expects failure with rc; checks that *out was left zeroed and eb says something. */
static void expect_decode_error(const uint8_t *p, size_t n, const image_limits *lim, int want,
                                const char *msg_part)
{
    image_rgb8 img = {(uint8_t *)1, 7, 7}; /* garbage that must be zeroed */
    imgcls_errbuf eb = {{0}};
    int rc = image_decode(p, n, lim, 0, &img, &eb);
    if (rc != want)
        fail_msg("rc %s (%s), want %s", imgcls_err_name(rc), eb.msg, imgcls_err_name(want));
    assert_null(img.px);
    assert_int_equal(img.w, 0);
    assert_int_equal(img.h, 0);
    assert_true(eb.msg[0] != 0);
    if (msg_part && !strstr(eb.msg, msg_part))
        fail_msg("message \"%s\" lacks \"%s\"", eb.msg, msg_part);
}

static const image_limits LIMITS = {IMAGE_DEFAULT_MAX_BYTES, IMAGE_DEFAULT_MAX_PIXELS};

/* ---- mode parsing --------------------------------------------------------------------------------- */

static void test_mode_parse(void **state)
{
    (void)state;
    preprocess_mode m = PREPROCESS_REFERENCE;
    assert_int_equal(preprocess_mode_parse("imagenet", &m), 0);
    assert_int_equal(m, PREPROCESS_IMAGENET);
    assert_int_equal(preprocess_mode_parse("reference", &m), 0);
    assert_int_equal(m, PREPROCESS_REFERENCE);
    assert_int_equal(preprocess_mode_parse("ImageNet", &m), IMGCLS_EINVAL);
    assert_int_equal(preprocess_mode_parse("", &m), IMGCLS_EINVAL);
    assert_int_equal(preprocess_mode_parse(NULL, &m), IMGCLS_EINVAL);
}

/* ---- JPEG ----------------------------------------------------------------------------------------- */

static void check_gradient_decode(const blob *b, uint32_t w, uint32_t h)
{
    image_rgb8 img = {0};
    imgcls_errbuf eb = {{0}};
    int rc = image_decode(b->p, b->n, &LIMITS, 0, &img, &eb);
    if (rc)
        fail_msg("decode: %s", eb.msg);
    assert_int_equal(img.w, w);
    assert_int_equal(img.h, h);
    /* The red and green ramps survive JPEG within a few levels. */
    assert_near(pixel(&img, 0, h / 2)[0], 0, 6);
    assert_near(pixel(&img, w - 1, h / 2)[0], 255, 6);
    assert_near(pixel(&img, w / 2, 0)[1], 0, 6);
    assert_near(pixel(&img, w / 2, h - 1)[1], 255, 6);
    image_free(&img);
    assert_null(img.px);
    image_free(&img); /* twice is fine */
    image_free(NULL);
}

static void test_jpeg_baseline(void **state)
{
    (void)state;
    blob b = jpeg_gradient(500, 375, 0);
    check_gradient_decode(&b, 500, 375);
    blob_free(&b);
}

static void test_jpeg_progressive(void **state)
{
    (void)state;
    blob b = jpeg_gradient(375, 500, TJFLAG_PROGRESSIVE);
    check_gradient_decode(&b, 375, 500);
    blob_free(&b);
}

static void test_jpeg_grayscale(void **state)
{
    (void)state;
    uint8_t v = 77;
    uint8_t *px = make_constant(64, 48, 1, &v);
    blob b = jpeg_encode(px, 64, 48, TJPF_GRAY, TJSAMP_GRAY, 90, 0);
    image_rgb8 img = {0};
    assert_int_equal(image_decode(b.p, b.n, &LIMITS, 0, &img, NULL), 0);
    assert_int_equal(img.w, 64);
    assert_int_equal(img.h, 48);
    for (size_t i = 0; i < (size_t)img.w * img.h; i++)
        assert_rgb_near(img.px + 3 * i, 77, 77, 77, 1);
    image_free(&img);
    blob_free(&b);
    free(px);
}

/* Pillow's answer for stored (Adobe-inverted) CMYK values: R = K - MULDIV255(255 - C, K). */
static int pillow_cmyk(int c, int k)
{
    int t = (255 - c) * k + 128;
    return k - (((t >> 8) + t) >> 8);
}

static void test_jpeg_cmyk(void **state)
{
    (void)state;
    static const uint8_t cases[][4] = {{255, 0, 128, 255}, {200, 100, 50, 128}, {0, 0, 0, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const uint8_t *v = cases[c];
        uint8_t *px = make_constant(48, 40, 4, v);
        blob b = jpeg_encode(px, 48, 40, TJPF_CMYK, TJSAMP_444, 100, 0);
        image_rgb8 img = {0};
        imgcls_errbuf eb = {{0}};
        int rc = image_decode(b.p, b.n, &LIMITS, 0, &img, &eb);
        if (rc)
            fail_msg("decode: %s", eb.msg);
        assert_int_equal(img.w, 48);
        assert_int_equal(img.h, 40);
        assert_rgb_near(pixel(&img, 20, 20), pillow_cmyk(v[0], v[3]), pillow_cmyk(v[1], v[3]),
                        pillow_cmyk(v[2], v[3]), 3);
        image_free(&img);
        blob_free(&b);
        free(px);
    }
}

/* DCT-domain scaling: powers of two only, never below the requested shorter side. */
static void test_jpeg_dct_scaling(void **state)
{
    (void)state;
    static const struct {
        int w, h;
        uint32_t hint, want_w, want_h;
    } cases[] = {
        {4000, 3000, 256, 500, 375}, /* 1/8 */
        {3000, 4000, 256, 375, 500},
        {4000, 3000, 0, 4000, 3000}, /* reference mode: full size */
        {1024, 768, 256, 512, 384},  /* 1/2: 1/4 would give 192 */
        {1100, 1100, 256, 275, 275}, /* 1/4 */
        {600, 400, 256, 600, 400},   /* short side < 512: untouched */
        {511, 513, 256, 511, 513},
        {520, 1000, 256, 260, 500},  /* ceil(520/2) = 260 */
        {2049, 2100, 256, 257, 263}, /* ceil(2049/8) = 257 */
        {640, 480, 16, 80, 60},      /* hints under IMAGE_MIN_SIDE are raised to it */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        blob b = jpeg_gradient(cases[c].w, cases[c].h, 0);
        image_rgb8 img = {0};
        assert_int_equal(image_decode(b.p, b.n, &LIMITS, cases[c].hint, &img, NULL), 0);
        if (img.w != cases[c].want_w || img.h != cases[c].want_h)
            fail_msg("%dx%d hint %u: got %ux%u, want %ux%u", cases[c].w, cases[c].h, cases[c].hint,
                     img.w, img.h, cases[c].want_w, cases[c].want_h);
        /* Scaled or not, it is the same picture. */
        assert_near(pixel(&img, img.w - 1, img.h / 2)[0], 255, 8);
        assert_near(pixel(&img, img.w / 2, 0)[1], 0, 8);
        image_free(&img);
        blob_free(&b);
    }
}

/* A 64x32 source with a red 16x16 block top-left and a green one top-right (blue elsewhere). Where
 * each block's centre lands for each orientation follows from Pillow's exif_transpose. */
static const struct {
    uint32_t w, h, red_x, red_y, green_x, green_y;
} ORIENTED[9] = {
    {0}, {64, 32, 8, 8, 55, 8}, {64, 32, 55, 8, 8, 8}, {64, 32, 55, 23, 8, 23}, {64, 32, 8, 23, 55, 23},
    {32, 64, 8, 8, 8, 55},      {32, 64, 23, 8, 23, 55}, {32, 64, 23, 55, 23, 8}, {32, 64, 8, 55, 8, 8},
};

static uint8_t *make_marked(void)
{
    static const uint8_t blue[3] = {0, 0, 255};
    uint8_t *px = make_constant(64, 32, 3, blue);
    for (uint32_t y = 0; y < 16; y++)
        for (uint32_t x = 0; x < 16; x++) {
            memcpy(px + (y * 64 + x) * 3, (const uint8_t[3]){255, 0, 0}, 3);
            memcpy(px + (y * 64 + 48 + x) * 3, (const uint8_t[3]){0, 255, 0}, 3);
        }
    return px;
}

static void check_oriented(const image_rgb8 *img, int o)
{
    if (img->w != ORIENTED[o].w || img->h != ORIENTED[o].h)
        fail_msg("orientation %d: %ux%u", o, img->w, img->h);
    assert_rgb_near(pixel(img, ORIENTED[o].red_x, ORIENTED[o].red_y), 255, 0, 0, 24);
    assert_rgb_near(pixel(img, ORIENTED[o].green_x, ORIENTED[o].green_y), 0, 255, 0, 24);
}

static void test_jpeg_exif_orientation(void **state)
{
    (void)state;
    uint8_t *px = make_marked();
    blob plain = jpeg_encode(px, 64, 32, TJPF_RGB, TJSAMP_444, 95, 0);
    for (int big = 0; big <= 1; big++)
        for (int o = 1; o <= 8; o++) {
            blob b = jpeg_with_exif(&plain, o, big);
            image_rgb8 img = {0};
            imgcls_errbuf eb = {{0}};
            int rc = image_decode(b.p, b.n, &LIMITS, 0, &img, &eb);
            if (rc)
                fail_msg("orientation %d: %s", o, eb.msg);
            check_oriented(&img, o);
            image_free(&img);
            blob_free(&b);
        }
    /* Orientation values outside 1..8 are ignored. */
    blob b = jpeg_with_exif(&plain, 9, 1);
    image_rgb8 img = {0};
    assert_int_equal(image_decode(b.p, b.n, &LIMITS, 0, &img, NULL), 0);
    check_oriented(&img, 1);
    image_free(&img);
    blob_free(&b);
    blob_free(&plain);
    free(px);
}

/* Orientation is applied after DCT scaling, and the scale is chosen on the shorter side either way. */
static void test_jpeg_exif_scaled(void **state)
{
    (void)state;
    blob plain = jpeg_gradient(2048, 1536, 0);
    blob b = jpeg_with_exif(&plain, 6, 1);
    image_rgb8 img = {0};
    assert_int_equal(image_decode(b.p, b.n, &LIMITS, 256, &img, NULL), 0);
    assert_int_equal(img.w, 384); /* 1536/4, now the width */
    assert_int_equal(img.h, 512);
    /* Rotated clockwise: the source's left column (red 0) is now the top row, its right column the
     * bottom row. */
    assert_near(pixel(&img, img.w / 2, 0)[0], 0, 8);
    assert_near(pixel(&img, img.w / 2, img.h - 1)[0], 255, 8);
    image_free(&img);
    blob_free(&b);
    blob_free(&plain);
}

/* ---- PNG ------------------------------------------------------------------------------------------ */

static void decode_png_expect(const blob *b, uint32_t w, uint32_t h, int r, int g, int bl)
{
    image_rgb8 img = {0};
    imgcls_errbuf eb = {{0}};
    int rc = image_decode(b->p, b->n, &LIMITS, 256, &img, &eb);
    if (rc)
        fail_msg("decode: %s", eb.msg);
    assert_int_equal(img.w, w);
    assert_int_equal(img.h, h);
    for (size_t i = 0; i < (size_t)w * h; i++)
        if (img.px[3 * i] != r || img.px[3 * i + 1] != g || img.px[3 * i + 2] != bl)
            fail_msg("pixel %zu: %d %d %d, want %d %d %d", i, img.px[3 * i], img.px[3 * i + 1],
                     img.px[3 * i + 2], r, g, bl);
    image_free(&img);
}

static void test_png_rgb8_exact(void **state)
{
    (void)state;
    uint8_t *px = make_gradient(300, 200);
    blob b = png_rgb(px, 300, 200);
    image_rgb8 img = {0};
    assert_int_equal(image_decode(b.p, b.n, &LIMITS, 256, &img, NULL), 0);
    assert_int_equal(img.w, 300);
    assert_int_equal(img.h, 200);
    assert_memory_equal(img.px, px, (size_t)300 * 200 * 3); /* lossless, never scaled */
    image_free(&img);
    blob_free(&b);
    free(px);
}

static void test_png_color_types(void **state)
{
    (void)state;
    enum { W = 40, H = 36, N = W * H };
    static uint8_t buf[N * 8];
    png_opts o = {0};

    memset(buf, 90, N); /* gray 8 */
    o = (png_opts){.color_type = SPNG_COLOR_TYPE_GRAYSCALE, .bit_depth = 8};
    blob b = png_encode(buf, N, W, H, &o);
    decode_png_expect(&b, W, H, 90, 90, 90);
    blob_free(&b);

    for (size_t i = 0; i < N; i++) { /* gray + alpha: alpha dropped, not composited */
        buf[2 * i] = 200;
        buf[2 * i + 1] = 10;
    }
    o = (png_opts){.color_type = SPNG_COLOR_TYPE_GRAYSCALE_ALPHA, .bit_depth = 8};
    b = png_encode(buf, 2 * N, W, H, &o);
    decode_png_expect(&b, W, H, 200, 200, 200);
    blob_free(&b);

    for (size_t i = 0; i < N; i++) /* RGBA */
        memcpy(buf + 4 * i, (const uint8_t[4]){10, 20, 30, 0}, 4);
    o = (png_opts){.color_type = SPNG_COLOR_TYPE_TRUECOLOR_ALPHA, .bit_depth = 8};
    b = png_encode(buf, 4 * N, W, H, &o);
    decode_png_expect(&b, W, H, 10, 20, 30);
    blob_free(&b);

    /* 16-bit RGB: each sample keeps its high byte. 0x12AB etc. catch a byte-order mix-up. */
    for (size_t i = 0; i < 3 * N; i++) {
        uint16_t v = (uint16_t)(i % 3 == 0 ? 0x12AB : i % 3 == 1 ? 0x80FF : 0xFE01);
        memcpy(buf + 2 * i, &v, 2); /* SPNG_FMT_PNG takes host-endian samples */
    }
    o = (png_opts){.color_type = SPNG_COLOR_TYPE_TRUECOLOR, .bit_depth = 16};
    b = png_encode(buf, 6 * N, W, H, &o);
    decode_png_expect(&b, W, H, 0x12, 0x80, 0xFE);
    blob_free(&b);

    for (size_t i = 0; i < N; i++) { /* 16-bit gray */
        uint16_t v = 0x3C11;
        memcpy(buf + 2 * i, &v, 2);
    }
    o = (png_opts){.color_type = SPNG_COLOR_TYPE_GRAYSCALE, .bit_depth = 16};
    b = png_encode(buf, 2 * N, W, H, &o);
    decode_png_expect(&b, W, H, 0x3C, 0x3C, 0x3C);
    blob_free(&b);
}

static void test_png_palette(void **state)
{
    (void)state;
    enum { W = 40, H = 36 };
    struct spng_plte plte = {.n_entries = 4};
    plte.entries[0] = (struct spng_plte_entry){1, 2, 3, 0};
    plte.entries[1] = (struct spng_plte_entry){250, 128, 7, 0};
    plte.entries[2] = (struct spng_plte_entry){0, 0, 0, 0};
    plte.entries[3] = (struct spng_plte_entry){9, 9, 9, 0};
    struct spng_trns trns = {.n_type3_entries = 2, .type3_alpha = {255, 0}};
    static uint8_t idx[W * H];
    memset(idx, 1, sizeof idx);
    png_opts o = {.color_type = SPNG_COLOR_TYPE_INDEXED, .bit_depth = 8, .plte = &plte};
    blob b = png_encode(idx, sizeof idx, W, H, &o);
    decode_png_expect(&b, W, H, 250, 128, 7);
    blob_free(&b);

    o.trns = &trns; /* entry 1 fully transparent: the colour stays, as in convert("RGB") */
    b = png_encode(idx, sizeof idx, W, H, &o);
    decode_png_expect(&b, W, H, 250, 128, 7);
    blob_free(&b);

    static uint8_t packed[(W / 4) * H]; /* 2-bit indices, all 3 */
    memset(packed, 0xFF, sizeof packed);
    o = (png_opts){.color_type = SPNG_COLOR_TYPE_INDEXED, .bit_depth = 2, .plte = &plte};
    b = png_encode(packed, sizeof packed, W, H, &o);
    decode_png_expect(&b, W, H, 9, 9, 9);
    blob_free(&b);
}

static void test_png_exif_orientation(void **state)
{
    (void)state;
    uint8_t *px = make_marked();
    for (int o = 1; o <= 8; o++) {
        uint8_t tiff[32];
        png_opts opt = {.color_type = SPNG_COLOR_TYPE_TRUECOLOR, .bit_depth = 8, .exif = tiff};
        opt.exif_len = make_tiff_orientation(tiff, o, o & 1);
        blob b = png_encode(px, 64 * 32 * 3, 64, 32, &opt);
        image_rgb8 img = {0};
        imgcls_errbuf eb = {{0}};
        int rc = image_decode(b.p, b.n, &LIMITS, 0, &img, &eb);
        if (rc)
            fail_msg("orientation %d: %s", o, eb.msg);
        check_oriented(&img, o);
        image_free(&img);
        blob_free(&b);
    }
    free(px);
}

/* ---- bad input ------------------------------------------------------------------------------------ */

static void test_bad_empty(void **state)
{
    (void)state;
    static const uint8_t one = 0xFF;
    expect_decode_error(NULL, 0, &LIMITS, IMGCLS_EINVAL, NULL);
    expect_decode_error(&one, 0, &LIMITS, IMGCLS_EINVAL, NULL);
    expect_decode_error(NULL, 10, &LIMITS, IMGCLS_EINVAL, NULL);
    assert_int_equal(image_decode(&one, 1, &LIMITS, 0, NULL, NULL), IMGCLS_EINVAL);
    expect_decode_error(&one, 1, &LIMITS, IMGCLS_EFORMAT, "not a JPEG or PNG");
}

static void test_bad_random(void **state)
{
    (void)state;
    uint8_t buf[4096];
    uint32_t s = 12345;
    for (size_t i = 0; i < sizeof buf; i++) {
        s = s * 1103515245u + 12345u;
        buf[i] = (uint8_t)(s >> 16);
    }
    buf[0] = 'G'; /* "GIF8..." is a real image, just not ours */
    expect_decode_error(buf, sizeof buf, &LIMITS, IMGCLS_EFORMAT, "not a JPEG or PNG");
    /* Right magic, garbage after it: the codecs must refuse it, not crash. */
    buf[0] = 0xFF, buf[1] = 0xD8, buf[2] = 0xFF;
    expect_decode_error(buf, sizeof buf, &LIMITS, IMGCLS_EFORMAT, "JPEG");
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(buf, sig, 8);
    expect_decode_error(buf, sizeof buf, &LIMITS, IMGCLS_EFORMAT, "PNG");
    expect_decode_error(buf, 8, &LIMITS, IMGCLS_EFORMAT, "PNG");
    expect_decode_error(buf, 3, &LIMITS, IMGCLS_EFORMAT, "not a JPEG or PNG");
}

static void test_bad_truncated_jpeg(void **state)
{
    (void)state;
    int flags[] = {0, TJFLAG_PROGRESSIVE};
    for (size_t f = 0; f < 2; f++) {
        blob b = jpeg_gradient(500, 375, flags[f]);
        expect_decode_error(b.p, b.n / 2, &LIMITS, IMGCLS_EFORMAT, "JPEG");
        expect_decode_error(b.p, b.n - 2, &LIMITS, IMGCLS_EFORMAT, "JPEG"); /* just EOI missing */
        expect_decode_error(b.p, 200, &LIMITS, IMGCLS_EFORMAT, "JPEG");   /* inside the header */
        blob_free(&b);
    }
}

static void test_bad_corrupt_jpeg(void **state)
{
    (void)state;
    blob b = jpeg_gradient(500, 375, 0);
    /* Invert a run of entropy-coded bytes in the middle: 0x00 stuffing bytes become 0xFF and the
     * Huffman codes stop making sense. */
    for (size_t i = b.n / 2; i < b.n / 2 + 64; i++)
        b.p[i] = (uint8_t)~b.p[i];
    expect_decode_error(b.p, b.n, &LIMITS, IMGCLS_EFORMAT, "JPEG");
    blob_free(&b);

    /* A marker dropped into the middle of the scan. */
    b = jpeg_gradient(500, 375, TJFLAG_PROGRESSIVE);
    b.p[b.n / 2] = 0xFF;
    b.p[b.n / 2 + 1] = 0xD9;
    expect_decode_error(b.p, b.n, &LIMITS, IMGCLS_EFORMAT, "JPEG");
    blob_free(&b);
}

static void test_bad_too_small(void **state)
{
    (void)state;
    static const uint8_t grey[3] = {128, 128, 128};
    uint8_t *px = make_constant(64, 64, 3, grey);
    blob b = jpeg_encode(px, 1, 1, TJPF_RGB, TJSAMP_444, 90, 0);
    expect_decode_error(b.p, b.n, &LIMITS, IMGCLS_EFORMAT, "too small");
    blob_free(&b);
    b = png_rgb(px, 1, 1);
    expect_decode_error(b.p, b.n, &LIMITS, IMGCLS_EFORMAT, "too small");
    blob_free(&b);
    b = png_rgb(px, 64, 31);
    expect_decode_error(b.p, b.n, &LIMITS, IMGCLS_EFORMAT, "too small");
    blob_free(&b);
    b = jpeg_encode(px, 31, 64, TJPF_RGB, TJSAMP_420, 90, 0);
    expect_decode_error(b.p, b.n, &LIMITS, IMGCLS_EFORMAT, "too small");
    blob_free(&b);
    b = png_rgb(px, 32, 32); /* the minimum itself is fine */
    image_rgb8 img = {0};
    assert_int_equal(image_decode(b.p, b.n, &LIMITS, 256, &img, NULL), 0);
    image_free(&img);
    blob_free(&b);
    free(px);
}

/* Patches the first SOF marker's height and width. */
static void jpeg_patch_size(blob *b, uint16_t w, uint16_t h)
{
    for (size_t i = 2; i + 9 < b->n; i++)
        if (b->p[i] == 0xFF && (b->p[i + 1] == 0xC0 || b->p[i + 1] == 0xC2)) {
            b->p[i + 5] = (uint8_t)(h >> 8);
            b->p[i + 6] = (uint8_t)h;
            b->p[i + 7] = (uint8_t)(w >> 8);
            b->p[i + 8] = (uint8_t)w;
            return;
        }
    fail_msg("no SOF marker");
}

static void test_bad_huge_header(void **state)
{
    (void)state;
    blob b = jpeg_gradient(64, 64, 0);
    jpeg_patch_size(&b, 30000, 30000);
    expect_decode_error(b.p, b.n, &LIMITS, IMGCLS_ETOOBIG, "30000x30000 is 900 MP, over the 40 MP limit");
    expect_decode_error(b.p, b.n, NULL, IMGCLS_ETOOBIG, "900 MP"); /* NULL limits mean the defaults */
    blob_free(&b);

    b = jpeg_gradient(64, 64, TJFLAG_PROGRESSIVE);
    jpeg_patch_size(&b, 65000, 65000);
    expect_decode_error(b.p, b.n, &LIMITS, IMGCLS_ETOOBIG, "65000x65000");
    blob_free(&b);

    uint8_t *px = make_gradient(64, 64);
    b = png_rgb(px, 64, 64);
    /* IHDR: length(4) "IHDR"(4) width(4) height(4) ... crc(4), right after the 8-byte signature. */
    assert_memory_equal(b.p + 12, "IHDR", 4);
    put_be32(b.p + 16, 30000);
    put_be32(b.p + 20, 30000);
    put_be32(b.p + 29, crc32_png(b.p + 12, 17));
    expect_decode_error(b.p, b.n, &LIMITS, IMGCLS_ETOOBIG, "30000x30000 is 900 MP, over the 40 MP limit");
    put_be32(b.p + 16, 0x7FFFFFFF); /* beyond what spng itself is told to accept */
    put_be32(b.p + 29, crc32_png(b.p + 12, 17));
    expect_decode_error(b.p, b.n, &LIMITS, IMGCLS_ETOOBIG, NULL);
    put_be32(b.p + 16, 64);
    put_be32(b.p + 20, 64); /* restored size, stale CRC: a corrupt critical chunk */
    expect_decode_error(b.p, b.n, &LIMITS, IMGCLS_EFORMAT, "PNG");
    blob_free(&b);
    free(px);
}

static void test_bad_limits(void **state)
{
    (void)state;
    blob b = jpeg_gradient(200, 100, 0);
    image_limits lim = {b.n - 1, IMAGE_DEFAULT_MAX_PIXELS};
    expect_decode_error(b.p, b.n, &lim, IMGCLS_ETOOBIG, "limit");
    lim = (image_limits){b.n, 200 * 100 - 1};
    expect_decode_error(b.p, b.n, &lim, IMGCLS_ETOOBIG, "200x100");
    lim.max_pixels = 200 * 100; /* both limits are inclusive */
    image_rgb8 img = {0};
    assert_int_equal(image_decode(b.p, b.n, &lim, 0, &img, NULL), 0);
    image_free(&img);
    blob_free(&b);
}

static void test_bad_truncated_png(void **state)
{
    (void)state;
    uint8_t *px = make_gradient(300, 200);
    blob b = png_rgb(px, 300, 200);
    expect_decode_error(b.p, b.n / 2, &LIMITS, IMGCLS_EFORMAT, "PNG");
    expect_decode_error(b.p, 30, &LIMITS, IMGCLS_EFORMAT, "PNG");
    for (size_t i = b.n / 2; i < b.n / 2 + 32; i++) /* IDAT corrupted: CRC or zlib error */
        b.p[i] ^= 0x5A;
    expect_decode_error(b.p, b.n, &LIMITS, IMGCLS_EFORMAT, "PNG");
    blob_free(&b);
    free(px);
}

/* ---- preprocessing -------------------------------------------------------------------------------- */

static float normalised(int v, int c)
{
    return ((float)v / 255.0f - MEAN[c]) / STD[c];
}

static void test_preprocess_constant(void **state)
{
    (void)state;
    static const uint8_t rgb[3] = {200, 100, 50};
    static const uint32_t sizes[][2] = {{500, 375}, {375, 500}, {256, 256}, {32, 32}, {1000, 40}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        image_rgb8 img = {make_constant(sizes[s][0], sizes[s][1], 3, rgb), sizes[s][0], sizes[s][1]};
        image_tensor t = {0};
        imgcls_errbuf eb = {{0}};
        int rc = image_preprocess(&img, PREPROCESS_IMAGENET, &t, &eb);
        if (rc)
            fail_msg("%s", eb.msg);
        assert_int_equal(t.w, IMAGE_CROP);
        assert_int_equal(t.h, IMAGE_CROP);
        for (size_t i = 0; i < (size_t)IMAGE_CROP * IMAGE_CROP * 3; i++) {
            float want = normalised(rgb[i % 3], (int)(i % 3));
            if (t.data[i] < want - 1e-5f || t.data[i] > want + 1e-5f)
                fail_msg("%ux%u element %zu: %f, want %f", img.w, img.h, i, (double)t.data[i],
                         (double)want);
        }
        image_tensor_free(&t);
        assert_null(t.data);
        image_tensor_free(&t);
        image_tensor_free(NULL);
        image_free(&img);
    }
}

static void test_preprocess_shapes(void **state)
{
    (void)state;
    static const uint32_t sizes[][2] = {{500, 375}, {375, 500}, {256, 256}, {4000, 3000},
                                        {33, 1000}, {257, 255}, {224, 224}, {700, 600}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        image_rgb8 img = {make_gradient(sizes[s][0], sizes[s][1]), sizes[s][0], sizes[s][1]};
        image_tensor t = {0};
        assert_int_equal(image_preprocess(&img, PREPROCESS_IMAGENET, &t, NULL), 0);
        assert_int_equal(t.w, IMAGE_CROP);
        assert_int_equal(t.h, IMAGE_CROP);
        /* The red ramp runs left to right, so it must not fall along a row. */
        for (size_t x = 1; x < IMAGE_CROP; x++)
            assert_true(t.data[x * 3] >= t.data[(x - 1) * 3]);
        assert_true(t.data[(IMAGE_CROP - 1) * 3] > t.data[0]);
        image_tensor_free(&t);
        image_free(&img);
    }
}

/* A 256-high image is not resized vertically (and 256..259 wide barely horizontally: the identity
 * coefficients are exact), so the output is the crop itself, which pins down the crop offsets
 * including Python's round-half-to-even: excess 32 -> 16, 33 -> 16 (16.5), 35 -> 18 (17.5). */
static void test_preprocess_crop_offsets(void **state)
{
    (void)state;
    static const uint32_t widths[][2] = {{256, 16}, {257, 16}, {259, 18}, {258, 17}};
    for (size_t c = 0; c < 4; c++) {
        uint32_t w = widths[c][0], left = widths[c][1], top = 16;
        image_rgb8 img = {make_gradient(w, 256), w, 256};
        for (size_t i = 0; i < (size_t)w * 256 * 3; i++)
            img.px[i] = (uint8_t)(i * 7 % 251); /* no two neighbours alike */
        image_tensor t = {0};
        assert_int_equal(image_preprocess(&img, PREPROCESS_IMAGENET, &t, NULL), 0);
        for (uint32_t y = 0; y < IMAGE_CROP; y++)
            for (uint32_t x = 0; x < IMAGE_CROP; x++)
                for (int ch = 0; ch < 3; ch++) {
                    float got = t.data[((size_t)y * IMAGE_CROP + x) * 3 + (size_t)ch];
                    float want = normalised(pixel(&img, x + left, y + top)[ch], ch);
                    if (got < want - 1e-5f || got > want + 1e-5f)
                        fail_msg("w %u (%u,%u,%d): %f, want %f", w, x, y, ch, (double)got, (double)want);
                }
        image_tensor_free(&t);
        image_free(&img);
    }
}

/* 512x512 -> 256x256 is an exact 2:1 antialiased bilinear: Pillow's taps for output i are source
 * 2i-1 .. 2i+2 with weights 1/8, 3/8, 3/8, 1/8 (exact in 22-bit fixed point), and a result of
 * (sum + 4) >> 3 after rounding. Columns vary, rows are constant, so the vertical pass is exact. */
static void test_preprocess_downscale_numeric(void **state)
{
    (void)state;
    image_rgb8 img = {malloc(512 * 512 * 3), 512, 512};
    assert_non_null(img.px);
    for (uint32_t y = 0; y < 512; y++)
        for (uint32_t x = 0; x < 512; x++)
            for (int c = 0; c < 3; c++)
                img.px[((size_t)y * 512 + x) * 3 + (size_t)c] = (uint8_t)((x * 37u + (unsigned)c * 91u) % 256u);
    image_tensor t = {0};
    assert_int_equal(image_preprocess(&img, PREPROCESS_IMAGENET, &t, NULL), 0);
    for (uint32_t x = 0; x < IMAGE_CROP; x++)
        for (int c = 0; c < 3; c++) {
            uint32_t i = x + 16; /* the crop's left edge in the 256-wide resized image */
            int v0 = pixel(&img, 2 * i - 1, 0)[c], v1 = pixel(&img, 2 * i, 0)[c];
            int v2 = pixel(&img, 2 * i + 1, 0)[c], v3 = pixel(&img, 2 * i + 2, 0)[c];
            int want = (v0 + 3 * v1 + 3 * v2 + v3 + 4) >> 3;
            for (uint32_t y = 0; y < IMAGE_CROP; y += 37) {
                float got = t.data[((size_t)y * IMAGE_CROP + x) * 3 + (size_t)c];
                float w = normalised(want, c);
                if (got < w - 1e-5f || got > w + 1e-5f)
                    fail_msg("x %u c %d: %f, want %f (%d)", x, c, (double)got, (double)w, want);
            }
        }
    image_tensor_free(&t);
    image_free(&img);
}

/* ---- an independent int32 port of Pillow's bilinear resize, to check the float kernels against ---- */

typedef struct pil_axis {
    int32_t *k; /* out * ksize */
    int *lo, *n;
    int ksize;
} pil_axis;

static double pil_bilinear(double x)
{
    x = x < 0 ? -x : x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Resample.c: precompute_coeffs() + normalize_coeffs_8bpc(), for the whole output. */
static pil_axis pil_coeffs(int in, int out)
{
    double scale = (double)in / out, fs = scale < 1.0 ? 1.0 : scale, support = fs;
    pil_axis a = {0};
    a.ksize = (int)ceil(support) * 2 + 1;
    a.k = calloc((size_t)out * (size_t)a.ksize, sizeof *a.k);
    a.lo = calloc((size_t)out, sizeof *a.lo);
    a.n = calloc((size_t)out, sizeof *a.n);
    assert_true(a.k && a.lo && a.n);
    for (int xx = 0; xx < out; xx++) {
        double center = (xx + 0.5) * scale, ww = 0.0, w[512];
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        xmin = xmin < 0 ? 0 : xmin;
        xmax = (xmax > in ? in : xmax) - xmin;
        assert_true(xmax <= a.ksize && xmax <= 512);
        for (int x = 0; x < xmax; x++)
            ww += w[x] = pil_bilinear((x + xmin - center + 0.5) / fs);
        for (int x = 0; x < xmax; x++)
            a.k[xx * a.ksize + x] = (int32_t)(0.5 + (ww != 0.0 ? w[x] / ww : w[x]) * (1 << 22));
        a.lo[xx] = xmin;
        a.n[xx] = xmax;
    }
    return a;
}

static void pil_axis_free(pil_axis *a)
{
    free(a->k);
    free(a->lo);
    free(a->n);
}

static uint8_t pil_clip8(int32_t v)
{
    return v >= (255 << 22) + (1 << 22) ? 255 : v <= 0 ? 0 : (uint8_t)(v >> 22);
}

/* Pillow's horizontal-then-vertical resize of img to nw x nh, RGB8, all of it. */
static uint8_t *pil_resize(const image_rgb8 *img, int nw, int nh)
{
    pil_axis hx = pil_coeffs((int)img->w, nw), vy = pil_coeffs((int)img->h, nh);
    uint8_t *tmp = malloc((size_t)nw * img->h * 3), *out = malloc((size_t)nw * (size_t)nh * 3);
    assert_true(tmp && out);
    for (uint32_t y = 0; y < img->h; y++)
        for (int x = 0; x < nw; x++)
            for (int c = 0; c < 3; c++) {
                int32_t ss = 1 << 21;
                for (int t = 0; t < hx.n[x]; t++)
                    ss += pixel(img, (uint32_t)(hx.lo[x] + t), y)[c] * hx.k[x * hx.ksize + t];
                tmp[((size_t)y * (size_t)nw + (size_t)x) * 3 + (size_t)c] = pil_clip8(ss);
            }
    for (int y = 0; y < nh; y++)
        for (int x = 0; x < nw * 3; x++) {
            int32_t ss = 1 << 21;
            for (int t = 0; t < vy.n[y]; t++)
                ss += tmp[(size_t)(vy.lo[y] + t) * (size_t)nw * 3 + (size_t)x] * vy.k[y * vy.ksize + t];
            out[(size_t)y * (size_t)nw * 3 + (size_t)x] = pil_clip8(ss);
        }
    free(tmp);
    pil_axis_free(&hx);
    pil_axis_free(&vy);
    return out;
}

/* The float kernels against the int32 port, over sizes that take every tap-count branch (3, 5, 7 and
 * the generic one): at most one grey level apart anywhere, and that rarely (float rounding can only
 * matter where Pillow's sum sits on a .5 boundary). Crop offsets and the resized size are computed
 * here the way torchvision writes them. */
static void test_preprocess_matches_pillow_port(void **state)
{
    (void)state;
    static const int sizes[][2] = {{500, 375}, {375, 500}, {200, 150}, {700, 600}, {1600, 1200},
                                   {333, 257}, {640, 480}};
    for (size_t c = 0; c < sizeof sizes / sizeof sizes[0]; c++) {
        int w = sizes[c][0], h = sizes[c][1];
        image_rgb8 img = {make_gradient((uint32_t)w, (uint32_t)h), (uint32_t)w, (uint32_t)h};
        uint32_t s = 1;
        for (size_t i = 0; i < (size_t)w * (size_t)h * 3; i++) { /* texture, so ties are exercised */
            s = s * 1103515245u + 12345u;
            img.px[i] = (uint8_t)((img.px[i] + (s >> 16) % 48) & 255);
        }
        int nw = w <= h ? 256 : (int)(256.0 * w / h), nh = w <= h ? (int)(256.0 * h / w) : 256;
        int left = (int)nearbyint((nw - 224) / 2.0), top = (int)nearbyint((nh - 224) / 2.0);
        uint8_t *want = pil_resize(&img, nw, nh);
        image_tensor t = {0};
        assert_int_equal(image_preprocess(&img, PREPROCESS_IMAGENET, &t, NULL), 0);
        size_t off = 0;
        for (int y = 0; y < 224; y++)
            for (int x = 0; x < 224 * 3; x++) {
                int ch = x % 3;
                uint8_t v = want[((size_t)(y + top) * (size_t)nw + (size_t)left) * 3 + (size_t)x];
                float got = t.data[(size_t)y * 224 * 3 + (size_t)x], exact = normalised(v, ch);
                float level = 1.0f / (255.0f * STD[ch]);
                if (got < exact - level - 1e-5f || got > exact + level + 1e-5f)
                    fail_msg("%dx%d at (%d,%d): %f, Pillow %f", w, h, x / 3, y, (double)got, (double)exact);
                off += got < exact - 1e-5f || got > exact + 1e-5f;
            }
        if (off * 100 > (size_t)224 * 224 * 3) /* measured: 0.5% at worst (640x480) */
            fail_msg("%dx%d: %zu values a level off Pillow", w, h, off);
        image_tensor_free(&t);
        image_free(&img);
        free(want);
    }
}

static void test_preprocess_reference(void **state)
{
    (void)state;
    image_rgb8 img = {make_gradient(97, 61), 97, 61};
    image_tensor t = {0};
    assert_int_equal(image_preprocess(&img, PREPROCESS_REFERENCE, &t, NULL), 0);
    assert_int_equal(t.w, 97);
    assert_int_equal(t.h, 61);
    for (size_t i = 0; i < (size_t)97 * 61 * 3; i++)
        assert_true(t.data[i] == (float)img.px[i] / 255.0f);
    image_tensor_free(&t);
    image_free(&img);
}

static void test_preprocess_bad(void **state)
{
    (void)state;
    static const uint8_t grey[3] = {1, 2, 3};
    image_rgb8 img = {make_constant(31, 100, 3, grey), 31, 100};
    image_tensor t = {(float *)1, 5, 5};
    imgcls_errbuf eb = {{0}};
    assert_int_equal(image_preprocess(&img, PREPROCESS_IMAGENET, &t, &eb), IMGCLS_EFORMAT);
    assert_null(t.data);
    assert_non_null(strstr(eb.msg, "too small"));
    assert_int_equal(image_preprocess(&img, PREPROCESS_REFERENCE, &t, NULL), IMGCLS_EFORMAT);
    assert_int_equal(image_preprocess(NULL, PREPROCESS_IMAGENET, &t, NULL), IMGCLS_EINVAL);
    assert_int_equal(image_preprocess(&img, PREPROCESS_IMAGENET, NULL, NULL), IMGCLS_EINVAL);
    image_rgb8 empty = {0};
    assert_int_equal(image_preprocess(&empty, PREPROCESS_IMAGENET, &t, NULL), IMGCLS_EINVAL);
    image_free(&img);
}

static void test_load_tensor(void **state)
{
    (void)state;
    blob b = jpeg_gradient(4000, 3000, 0);
    image_tensor t = {0};
    imgcls_errbuf eb = {{0}};
    int rc = image_load_tensor(b.p, b.n, &LIMITS, PREPROCESS_IMAGENET, &t, &eb);
    if (rc)
        fail_msg("%s", eb.msg);
    assert_int_equal(t.w, IMAGE_CROP);
    assert_int_equal(t.h, IMAGE_CROP);
    image_tensor_free(&t);
    blob_free(&b);

    b = jpeg_gradient(640, 480, 0);
    assert_int_equal(image_load_tensor(b.p, b.n, &LIMITS, PREPROCESS_REFERENCE, &t, NULL), 0);
    assert_int_equal(t.w, 640);
    assert_int_equal(t.h, 480);
    image_tensor_free(&t);
    t = (image_tensor){(float *)1, 1, 1};
    assert_int_equal(image_load_tensor(b.p, b.n / 2, &LIMITS, PREPROCESS_IMAGENET, &t, NULL),
                     IMGCLS_EFORMAT);
    assert_null(t.data);
    blob_free(&b);

    /* End to end on a constant PNG: exactly the normalised colour. */
    static const uint8_t rgb[3] = {12, 250, 128};
    uint8_t *px = make_constant(300, 200, 3, rgb);
    b = png_rgb(px, 300, 200);
    assert_int_equal(image_load_tensor(b.p, b.n, NULL, PREPROCESS_IMAGENET, &t, NULL), 0);
    for (size_t i = 0; i < (size_t)IMAGE_CROP * IMAGE_CROP * 3; i++) {
        float want = normalised(rgb[i % 3], (int)(i % 3));
        assert_true(t.data[i] > want - 1e-5f && t.data[i] < want + 1e-5f);
    }
    image_tensor_free(&t);
    blob_free(&b);
    free(px);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mode_parse),
        cmocka_unit_test(test_jpeg_baseline),
        cmocka_unit_test(test_jpeg_progressive),
        cmocka_unit_test(test_jpeg_grayscale),
        cmocka_unit_test(test_jpeg_cmyk),
        cmocka_unit_test(test_jpeg_dct_scaling),
        cmocka_unit_test(test_jpeg_exif_orientation),
        cmocka_unit_test(test_jpeg_exif_scaled),
        cmocka_unit_test(test_png_rgb8_exact),
        cmocka_unit_test(test_png_color_types),
        cmocka_unit_test(test_png_palette),
        cmocka_unit_test(test_png_exif_orientation),
        cmocka_unit_test(test_bad_empty),
        cmocka_unit_test(test_bad_random),
        cmocka_unit_test(test_bad_truncated_jpeg),
        cmocka_unit_test(test_bad_corrupt_jpeg),
        cmocka_unit_test(test_bad_too_small),
        cmocka_unit_test(test_bad_huge_header),
        cmocka_unit_test(test_bad_limits),
        cmocka_unit_test(test_bad_truncated_png),
        cmocka_unit_test(test_preprocess_constant),
        cmocka_unit_test(test_preprocess_shapes),
        cmocka_unit_test(test_preprocess_crop_offsets),
        cmocka_unit_test(test_preprocess_downscale_numeric),
        cmocka_unit_test(test_preprocess_matches_pillow_port),
        cmocka_unit_test(test_preprocess_reference),
        cmocka_unit_test(test_preprocess_bad),
        cmocka_unit_test(test_load_tensor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
