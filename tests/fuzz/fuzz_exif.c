/* EXIF orientation, on its own: the input is the TIFF block of an EXIF segment, put into a small valid
 * image, so that every input reaches our JPEG marker walk and libexif, or spng's eXIf chunk reader, and
 * then the orientation transform (src/engine/image_decode.c). Odd first byte: a JPEG with the block in
 * an APP1 "Exif\0\0" segment; even: a PNG with it as the eXIf chunk. The rest of the input is the
 * block. A broken block must cost nothing: the image still decodes, at its size or with its sides
 * swapped. */
#include "fuzz_util.h"

#include "engine/image.h"

#include <spng.h>
#include <string.h>
#include <turbojpeg.h>

/* Not square, so that a transposing orientation shows in the size. */
#define FUZZ_W 48
#define FUZZ_H 32

static uint8_t pixels[FUZZ_W * FUZZ_H * 3];
static unsigned char *jpeg;
static unsigned long jpeg_len;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    for (size_t i = 0; i < sizeof pixels; i++)
        pixels[i] = (uint8_t)(i * 7);
    tjhandle tj = tjInitCompress();
    FUZZ_CHECK(tj != NULL);
    FUZZ_CHECK(tjCompress2(tj, pixels, FUZZ_W, 0, FUZZ_H, TJPF_RGB, &jpeg, &jpeg_len, TJSAMP_420, 90, 0) == 0);
    tjDestroy(tj);
    return 0;
}

/* SOI, APP1 "Exif\0\0" + block, then the rest of the plain JPEG. NULL when the block does not fit. */
static uint8_t *jpeg_with_exif(const uint8_t *block, size_t n, size_t *len)
{
    size_t seg = 2 + 6 + n; /* the length field counts itself */
    if (seg > 0xffff)
        return NULL;
    *len = jpeg_len + 2 + seg;
    uint8_t *out = malloc(*len);
    FUZZ_CHECK(out != NULL);
    uint8_t head[10] = {0xff, 0xd8, 0xff, 0xe1, (uint8_t)(seg >> 8), (uint8_t)seg, 'E', 'x', 'i', 'f'};
    memcpy(out, head, sizeof head);
    memset(out + 10, 0, 2);
    memcpy(out + 12, block, n);
    memcpy(out + 12 + n, jpeg + 2, jpeg_len - 2);
    return out;
}

/* A PNG with block as its eXIf chunk; NULL when spng refuses the block (it wants a TIFF header). */
static uint8_t *png_with_exif(const uint8_t *block, size_t n, size_t *len)
{
    spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    FUZZ_CHECK(ctx != NULL);
    spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
    struct spng_ihdr ihdr = {.width = FUZZ_W, .height = FUZZ_H, .bit_depth = 8,
                             .color_type = SPNG_COLOR_TYPE_TRUECOLOR};
    struct spng_exif ex = {.length = n, .data = (char *)block};
    uint8_t *out = NULL;
    int e = 0;
    if (spng_set_ihdr(ctx, &ihdr) == 0 && spng_set_exif(ctx, &ex) == 0 &&
        spng_encode_image(ctx, pixels, sizeof pixels, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE) == 0)
        out = spng_get_png_buffer(ctx, len, &e);
    spng_ctx_free(ctx);
    return e ? NULL : out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t len = 0;
    uint8_t *file = data[0] & 1 ? jpeg_with_exif(data + 1, size - 1, &len) : png_with_exif(data + 1, size - 1, &len);
    if (!file)
        return 0;
    image_rgb8 img;
    imgcls_errbuf eb = {{0}};
    int rc = image_decode(file, len, NULL, 0, &img, &eb);
    free(file);
    if (rc) {
        /* spng refuses some blocks that spng_set_exif let through; libjpeg-turbo never sees EXIF */
        FUZZ_CHECK(!(data[0] & 1) && rc == IMGCLS_EFORMAT);
        return 0;
    }
    FUZZ_CHECK((img.w == FUZZ_W && img.h == FUZZ_H) || (img.w == FUZZ_H && img.h == FUZZ_W));
    image_free(&img);
    return 0;
}
