/* Image decoding and preprocessing: from the bytes of a JPEG or PNG to the network's input tensor.
 *
 * This is the path every outside image takes, and the fuzz target builds on it, so the entry points
 * are small and pure: bytes in, pixels or a tensor out, no I/O, no globals. Every limit is checked
 * before anything is allocated from a size read out of the file. */
#ifndef IMGCLS_ENGINE_IMAGE_H
#define IMGCLS_ENGINE_IMAGE_H

#include "common/error.h"

#include <stddef.h>
#include <stdint.h>

#define IMAGE_DEFAULT_MAX_BYTES ((size_t)20 * 1024 * 1024)
#define IMAGE_DEFAULT_MAX_PIXELS ((uint64_t)40 * 1000 * 1000)
/* Smaller images are refused: global pooling needs at least 32x32 in reference mode, and in imagenet
 * mode a smaller image would be upscaled into noise. */
#define IMAGE_MIN_SIDE 32u

/* The ImageNet preprocessing (torchvision): shorter side to 256, center crop 224. */
#define IMAGE_RESIZE_SHORT 256u
#define IMAGE_CROP 224u

typedef struct image_limits {
    size_t max_bytes;    /* the encoded file; IMGCLS_ETOOBIG above it */
    uint64_t max_pixels; /* width x height from the header; IMGCLS_ETOOBIG above it, before allocating */
} image_limits;

typedef enum preprocess_mode {
    PREPROCESS_IMAGENET,  /* resize shorter side to 256 (bilinear, antialiased), crop 224, normalise */
    PREPROCESS_REFERENCE, /* the original assignment's script: RGB scaled to [0,1] at its own size */
} preprocess_mode;

/* Parses "imagenet" / "reference". Returns 0 or IMGCLS_EINVAL. */
int preprocess_mode_parse(const char *s, preprocess_mode *out);

/* 8-bit RGB, interleaved, row-major, w*h*3 bytes, EXIF orientation already applied. */
typedef struct image_rgb8 {
    uint8_t *px;
    uint32_t w, h;
} image_rgb8;

/* The network input: NHWC float32, 3 channels, one image. */
typedef struct image_tensor {
    float *data;
    uint32_t w, h;
} image_tensor;

/* Decodes a JPEG (baseline, progressive, grayscale, CMYK) or PNG (any bit depth, palette, alpha --
 * alpha is dropped, like PIL's convert("RGB")) into RGB8, applying EXIF orientation.
 *
 * min_short_side: the smallest shorter side the caller needs (256 for imagenet, 0 for reference). A
 * JPEG whose shorter side is at least twice that is decoded with libjpeg-turbo's DCT-domain scaling
 * (1/2, 1/4 or 1/8) to the smallest size that still has a shorter side >= min_short_side.
 *
 * Returns 0 and fills *out (free with image_free), or: IMGCLS_EINVAL (NULL/empty input),
 * IMGCLS_ETOOBIG (file or pixel limit), IMGCLS_EFORMAT (not a JPEG/PNG, truncated, corrupt, too small),
 * IMGCLS_ENOMEM. On error *out is zeroed and eb says what was wrong. */
int image_decode(const uint8_t *data, size_t len, const image_limits *lim, uint32_t min_short_side,
                 image_rgb8 *out, imgcls_errbuf *eb);

/* Turns decoded pixels into the network input for the given mode. Returns 0 and fills *out (free with
 * image_tensor_free), IMGCLS_EFORMAT if the image is below IMAGE_MIN_SIDE, or IMGCLS_ENOMEM. */
int image_preprocess(const image_rgb8 *img, preprocess_mode mode, image_tensor *out, imgcls_errbuf *eb);

/* image_decode + image_preprocess, with the right size hint for the mode. */
int image_load_tensor(const uint8_t *data, size_t len, const image_limits *lim, preprocess_mode mode,
                      image_tensor *out, imgcls_errbuf *eb);

/* Both accept NULL and zeroed structs. */
void image_free(image_rgb8 *img);
void image_tensor_free(image_tensor *t);

#endif
