/* JPEG and PNG bytes to oriented RGB8 (the first half of image.h).
 *
 * Every size that comes out of a file is checked against the caller's limits before a single pixel byte
 * is allocated. The codecs are used through per-call handles (one TurboJPEG handle, one spng context,
 * one ExifData per image): creating them costs microseconds next to a decode, and per-call handles keep
 * this file free of globals and locks, so any number of worker threads may decode at once. A per-thread
 * cache of handles was rejected for that reason: it would need thread-local state and a teardown hook. */
#include "engine/image.h"

#include <libexif/exif-data.h>
#include <libexif/exif-utils.h>
#include <spng.h>
#include <turbojpeg.h>

#include <stdlib.h>
#include <string.h>

/* The ancillary-chunk cache (text, ICC profiles, EXIF) that spng may hold for one PNG. Pillow caps a
 * single text chunk at 1 MiB and all text at 64 MiB; 8 MiB is plenty for the metadata a real photo
 * carries and keeps a decompression bomb in zTXt/iCCP from costing more than that. */
#define PNG_CHUNK_CACHE_MAX ((size_t)8 * 1024 * 1024)
/* JPEG markers looked at while searching for the EXIF segment; real files have a handful. */
#define JPEG_MAX_SEGMENTS 128

static const uint8_t PNG_SIGNATURE[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

void image_free(image_rgb8 *img)
{
    if (!img)
        return;
    free(img->px);
    img->px = NULL;
    img->w = img->h = 0;
}

/* ---- limits --------------------------------------------------------------------------------------- */

/* The pixel limit goes first, so a 30000x1 header is "too small", not "too big". */
static int check_dims(uint32_t w, uint32_t h, const image_limits *lim, imgcls_errbuf *eb)
{
    uint64_t px = (uint64_t)w * h;
    if (px > lim->max_pixels)
        return imgcls_fail(eb, IMGCLS_ETOOBIG, "%ux%u is %.4g MP, over the %.4g MP limit", w, h,
                           (double)px / 1e6, (double)lim->max_pixels / 1e6);
    if (w < IMAGE_MIN_SIDE || h < IMAGE_MIN_SIDE)
        return imgcls_fail(eb, IMGCLS_EFORMAT, "%ux%u is too small (the minimum is %ux%u)", w, h,
                           IMAGE_MIN_SIDE, IMAGE_MIN_SIDE);
    return 0;
}

/* ---- EXIF orientation ----------------------------------------------------------------------------- */

/* Orientation (1..8) from an "Exif\0\0"-prefixed TIFF block; 1 when absent or malformed, because a
 * broken EXIF block must not cost the client an answer (Pillow ignores it too). Only IFD0 counts:
 * IFD1 describes the thumbnail, which exif_data_get_entry() would also search. FOLLOW_SPECIFICATION is
 * switched off because it makes libexif "fix" the data by adding default entries we do not want. */
static int exif_orientation(const uint8_t *exif, size_t len, int *orientation)
{
    *orientation = 1;
    if (len > UINT32_MAX)
        return 0;
    ExifData *ed = exif_data_new();
    if (!ed)
        return IMGCLS_ENOMEM;
    exif_data_unset_option(ed, EXIF_DATA_OPTION_FOLLOW_SPECIFICATION);
    exif_data_load_data(ed, exif, (unsigned int)len);
    ExifEntry *e = exif_content_get_entry(ed->ifd[EXIF_IFD_0], EXIF_TAG_ORIENTATION);
    if (e && e->format == EXIF_FORMAT_SHORT && e->components >= 1 && e->data && e->size >= 2) {
        ExifShort o = exif_get_short(e->data, exif_data_get_byte_order(ed));
        if (o >= 1 && o <= 8)
            *orientation = o;
    }
    exif_data_unref(ed);
    return 0;
}

/* Finds the first APP1 "Exif\0\0" segment (the one Pillow uses) by walking the markers from SOI to SOS.
 * Bounded by the data length and JPEG_MAX_SEGMENTS; anything unexpected just means "no EXIF". */
static int jpeg_orientation(const uint8_t *d, size_t len, int *orientation)
{
    *orientation = 1;
    size_t p = 2;
    for (int seg = 0; seg < JPEG_MAX_SEGMENTS && p + 4 <= len; seg++) {
        if (d[p] != 0xFF)
            return 0;
        uint8_t m = d[p + 1];
        if (m == 0xFF) { /* fill byte before a marker */
            p++;
            continue;
        }
        if (m == 0xDA || m == 0xD9) /* SOS, EOI: no metadata after this point */
            return 0;
        if (m == 0x01 || m == 0xD8 || (m >= 0xD0 && m <= 0xD7)) { /* markers without a length */
            p += 2;
            continue;
        }
        size_t seglen = (size_t)d[p + 2] << 8 | d[p + 3]; /* includes its own two bytes */
        if (seglen < 2 || seglen > len - p - 2)
            return 0;
        if (m == 0xE1 && seglen >= 2 + 6 && memcmp(d + p + 4, "Exif\0\0", 6) == 0)
            return exif_orientation(d + p + 4, seglen - 2, orientation);
        p += 2 + seglen;
    }
    return 0;
}

/* Where source pixel (x, y) lands, as dst = base + x*dx + y*dy (in pixels), for each EXIF orientation;
 * the same transposes as Pillow's ImageOps.exif_transpose (2 mirror, 3 rotate 180, 4 flip, 5 transpose,
 * 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise). */
static void orient_map(int o, int64_t w, int64_t h, int64_t *base, int64_t *dx, int64_t *dy)
{
    /* Destination widths: w for 1-4, h for 5-8 (sides swap). */
    switch (o) {
    case 2: *base = w - 1; *dx = -1; *dy = w; break;
    case 3: *base = w * h - 1; *dx = -1; *dy = -w; break;
    case 4: *base = (h - 1) * w; *dx = 1; *dy = -w; break;
    case 5: *base = 0; *dx = h; *dy = 1; break;
    case 6: *base = h - 1; *dx = h; *dy = -1; break;
    case 7: *base = w * h - 1; *dx = -h; *dy = -1; break;
    case 8: *base = (w - 1) * h; *dx = -h; *dy = 1; break;
    default: *base = 0; *dx = 1; *dy = w; break;
    }
}

/* Applies orientation o to img in place (swapping w and h for 5-8). A second buffer is needed; the
 * alternative, TurboJPEG's lossless tjTransform on the compressed data, cannot handle partial MCUs at
 * the edges and would not cover PNG. */
static int apply_orientation(image_rgb8 *img, int o)
{
    if (o <= 1 || o > 8)
        return 0;
    size_t n = (size_t)img->w * img->h * 3;
    uint8_t *dst = malloc(n);
    if (!dst)
        return IMGCLS_ENOMEM;
    int64_t base, dx, dy;
    orient_map(o, img->w, img->h, &base, &dx, &dy);
    const uint8_t *src = img->px;
    for (int64_t y = 0; y < img->h; y++) {
        int64_t at = base + y * dy;
        for (int64_t x = 0; x < img->w; x++, at += dx, src += 3) {
            uint8_t *q = dst + at * 3;
            q[0] = src[0];
            q[1] = src[1];
            q[2] = src[2];
        }
    }
    free(img->px);
    img->px = dst;
    if (o >= 5) {
        uint32_t t = img->w;
        img->w = img->h;
        img->h = t;
    }
    return 0;
}

/* ---- JPEG ----------------------------------------------------------------------------------------- */

/* The DCT-domain scale (1, 2, 4 or 8 = the denominator) for a JPEG of w x h when the caller needs a
 * shorter side of min_short. Only powers of two, as in Pillow's draft(): libjpeg-turbo also offers
 * 3/8, 5/8 and so on, which would land closer to 256 but through IDCT sizes no Pillow pipeline uses.
 * The decoded size is ceil(side / denom), libjpeg's rounding. 0 means the caller wants the image at
 * full resolution (reference mode), not "as small as possible". tjGetScalingFactors() is consulted
 * so that a libjpeg-turbo built without some factor degrades to a full-size decode. */
static int jpeg_scale_denom(uint32_t w, uint32_t h, uint32_t min_short)
{
    if (min_short == 0)
        return 1;
    if (min_short < IMAGE_MIN_SIDE)
        min_short = IMAGE_MIN_SIDE;
    uint32_t s = w < h ? w : h;
    if (s / 2 < min_short) /* the contract's gate: a shorter side of at least twice the hint */
        return 1;
    int nsf = 0;
    const tjscalingfactor *sf = tjGetScalingFactors(&nsf);
    for (int denom = 8; denom >= 2; denom /= 2) {
        if ((s + (uint32_t)denom - 1) / (uint32_t)denom < min_short)
            continue;
        for (int i = 0; sf && i < nsf; i++)
            if (sf[i].num == 1 && sf[i].denom == denom)
                return denom;
    }
    return 1;
}

/* Pillow opens every 4-component JPEG with rawmode "CMYK;I" ("assume adobe conventions"): it inverts
 * what libjpeg returns, because Photoshop -- the main writer of CMYK JPEGs -- stores inverted values
 * (an Adobe APP14 marker; 0 means full ink). libjpeg-turbo, and so TJPF_CMYK, returns the stored values
 * as they are (YCCK is converted back to those same stored values). Pillow's convert("RGB") then does
 *     nk = 255 - K;  R = nk - MULDIV255(C, nk)   (and G from M, B from Y)
 * with C = 255 - stored C and K = 255 - stored K. Written in stored values, that is
 *     R = sK - MULDIV255(255 - sC, sK),
 * which is what this computes, so a CMYK JPEG gives the same RGB here as under Pillow. A colour-managed
 * conversion through an ICC profile was rejected: the model was trained on Pillow's naive one. Runs in
 * place: pixel i is read before any write reaches it (3i + 2 < 4i + 4). */
static void cmyk_to_rgb(uint8_t *px, size_t npix)
{
    for (size_t i = 0; i < npix; i++) {
        const uint8_t *s = px + 4 * i;
        unsigned k = s[3], c[3] = {255u - s[0], 255u - s[1], 255u - s[2]};
        uint8_t *d = px + 3 * i;
        for (int j = 0; j < 3; j++) {
            unsigned t = c[j] * k + 128;
            d[j] = (uint8_t)(k - (((t >> 8) + t) >> 8));
        }
    }
}

/* Decodes into *out at the scaled size. TJFLAG_STOPONWARNING: libjpeg reports truncated and corrupt
 * entropy data only as warnings and would hand back a half-grey image, which would then be classified;
 * an error is the honest answer. TJFLAG_LIMITSCANS refuses progressive files with absurd scan counts
 * (a known CPU-exhaustion trick). Accurate integer IDCT and fancy upsampling (the defaults) match what
 * Pillow produces. */
static int jpeg_pixels(tjhandle tj, const uint8_t *data, size_t len, int w, int h, int cs,
                       image_rgb8 *out, imgcls_errbuf *eb)
{
    int rc = 0, cmyk = cs == TJCS_CMYK || cs == TJCS_YCCK;
    size_t npix = (size_t)w * (size_t)h;
    uint8_t *px = malloc(npix * (cmyk ? 4 : 3));
    if (!px) {
        rc = imgcls_fail(eb, IMGCLS_ENOMEM, "no memory for %dx%d pixels", w, h);
        goto out;
    }
    if (tjDecompress2(tj, data, (unsigned long)len, px, w, 0, h, cmyk ? TJPF_CMYK : TJPF_RGB,
                      TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS) != 0) {
        rc = imgcls_fail(eb, IMGCLS_EFORMAT, "corrupt JPEG: %s", tjGetErrorStr2(tj));
        goto out;
    }
    if (cmyk) {
        cmyk_to_rgb(px, npix);
        uint8_t *shrunk = realloc(px, npix * 3); /* give back the fourth channel; failure is harmless */
        if (shrunk)
            px = shrunk;
    }
    out->px = px;
    px = NULL;
    out->w = (uint32_t)w;
    out->h = (uint32_t)h;
out:
    free(px);
    return rc;
}

static int decode_jpeg(const uint8_t *data, size_t len, const image_limits *lim, uint32_t min_short,
                       image_rgb8 *out, imgcls_errbuf *eb)
{
    int rc = 0, w = 0, h = 0, subsamp = 0, cs = 0, orientation = 1;
    tjhandle tj = tjInitDecompress();
    if (!tj) {
        rc = imgcls_fail(eb, IMGCLS_ENOMEM, "TurboJPEG: %s", tjGetErrorStr2(NULL));
        goto out;
    }
    if (tjDecompressHeader3(tj, data, (unsigned long)len, &w, &h, &subsamp, &cs) != 0 || w <= 0 ||
        h <= 0) {
        rc = imgcls_fail(eb, IMGCLS_EFORMAT, "bad JPEG header: %s", tjGetErrorStr2(tj));
        goto out;
    }
    rc = check_dims((uint32_t)w, (uint32_t)h, lim, eb);
    if (rc)
        goto out;
    int denom = jpeg_scale_denom((uint32_t)w, (uint32_t)h, min_short);
    tjscalingfactor sf = {1, denom};
    rc = jpeg_pixels(tj, data, len, TJSCALED(w, sf), TJSCALED(h, sf), cs, out, eb);
    if (rc)
        goto out;
    rc = jpeg_orientation(data, len, &orientation);
    if (!rc)
        rc = apply_orientation(out, orientation);
    if (rc)
        imgcls_fail(eb, rc, "no memory to orient a %ux%u image", out->w, out->h);
out:
    if (tj)
        tjDestroy(tj);
    return rc;
}

/* ---- PNG ------------------------------------------------------------------------------------------ */

static int png_error(int e, const char *what, imgcls_errbuf *eb)
{
    int rc = IMGCLS_EFORMAT;
    if (e == SPNG_EUSER_WIDTH || e == SPNG_EUSER_HEIGHT || e == SPNG_ECHUNK_LIMITS)
        rc = IMGCLS_ETOOBIG;
    else if (e == SPNG_EMEM)
        rc = IMGCLS_ENOMEM;
    return imgcls_fail(eb, rc, "%s PNG: %s", what, spng_strerror(e));
}

/* An eXIf chunk holds a bare TIFF block; libexif wants the JPEG-style "Exif\0\0" prefix in front. */
static int png_orientation(spng_ctx *ctx, int *orientation)
{
    *orientation = 1;
    struct spng_exif ex;
    if (spng_get_exif(ctx, &ex) != 0 || !ex.data || ex.length == 0)
        return 0;
    uint8_t *buf = malloc(ex.length + 6);
    if (!buf)
        return IMGCLS_ENOMEM;
    memcpy(buf, "Exif\0\0", 6);
    memcpy(buf + 6, ex.data, ex.length);
    int rc = exif_orientation(buf, ex.length + 6, orientation);
    free(buf);
    return rc;
}

/* spng's own side limit lets through every side that check_dims() could accept (the other side is at
 * least IMAGE_MIN_SIDE), so that the caller sees our message for the usual cases. RGB8 output works for
 * every colour type and bit depth in spng 0.7: 16-bit samples keep their high byte, palette entries are
 * expanded, and alpha (including tRNS) is dropped, as in Pillow's convert("RGB"). No gamma is applied,
 * as in Pillow. */
static int decode_png(const uint8_t *data, size_t len, const image_limits *lim, image_rgb8 *out,
                      imgcls_errbuf *eb)
{
    int rc = 0, e = 0, orientation = 1;
    uint8_t *px = NULL;
    spng_ctx *ctx = spng_ctx_new(0);
    if (!ctx) {
        rc = imgcls_fail(eb, IMGCLS_ENOMEM, "no memory for a PNG decoder");
        goto out;
    }
    uint64_t side = lim->max_pixels / IMAGE_MIN_SIDE;
    uint32_t side_max = side > INT32_MAX ? INT32_MAX : (uint32_t)side;
    struct spng_ihdr ihdr;
    size_t need = 0;
    if ((e = spng_set_image_limits(ctx, side_max, side_max)) ||
        (e = spng_set_chunk_limits(ctx, len > INT32_MAX ? INT32_MAX : len, PNG_CHUNK_CACHE_MAX)) ||
        (e = spng_set_png_buffer(ctx, data, len)) || (e = spng_get_ihdr(ctx, &ihdr))) {
        rc = png_error(e, "bad", eb);
        goto out;
    }
    rc = check_dims(ihdr.width, ihdr.height, lim, eb);
    if (rc)
        goto out;
    if ((e = spng_decoded_image_size(ctx, SPNG_FMT_RGB8, &need)) ||
        need != (size_t)ihdr.width * ihdr.height * 3) {
        rc = e ? png_error(e, "bad", eb) : imgcls_fail(eb, IMGCLS_EFORMAT, "odd PNG layout");
        goto out;
    }
    px = malloc(need);
    if (!px) {
        rc = imgcls_fail(eb, IMGCLS_ENOMEM, "no memory for %ux%u pixels", ihdr.width, ihdr.height);
        goto out;
    }
    if ((e = spng_decode_image(ctx, px, need, SPNG_FMT_RGB8, 0))) {
        rc = png_error(e, "corrupt", eb);
        goto out;
    }
    out->px = px;
    px = NULL;
    out->w = ihdr.width;
    out->h = ihdr.height;
    rc = png_orientation(ctx, &orientation);
    if (!rc)
        rc = apply_orientation(out, orientation);
    if (rc)
        imgcls_fail(eb, rc, "no memory to orient a %ux%u image", out->w, out->h);
out:
    free(px);
    spng_ctx_free(ctx);
    return rc;
}

/* ---- entry point ---------------------------------------------------------------------------------- */

int image_decode(const uint8_t *data, size_t len, const image_limits *lim, uint32_t min_short_side,
                 image_rgb8 *out, imgcls_errbuf *eb)
{
    /* A NULL lim means the defaults, so that tools and tests need not spell them out. */
    static const image_limits defaults = {IMAGE_DEFAULT_MAX_BYTES, IMAGE_DEFAULT_MAX_PIXELS};
    if (!lim)
        lim = &defaults;
    if (!out)
        return imgcls_fail(eb, IMGCLS_EINVAL, "no output image");
    memset(out, 0, sizeof *out);
    if (!data || len == 0)
        return imgcls_fail(eb, IMGCLS_EINVAL, "empty image");
    if (len > lim->max_bytes)
        return imgcls_fail(eb, IMGCLS_ETOOBIG, "%zu bytes is over the %zu-byte limit", len,
                           lim->max_bytes);
    int rc;
    if (len >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
        rc = decode_jpeg(data, len, lim, min_short_side, out, eb);
    else if (len >= sizeof PNG_SIGNATURE && memcmp(data, PNG_SIGNATURE, sizeof PNG_SIGNATURE) == 0)
        rc = decode_png(data, len, lim, out, eb);
    else
        rc = imgcls_fail(eb, IMGCLS_EFORMAT, "not a JPEG or PNG");
    if (rc)
        image_free(out);
    return rc;
}
