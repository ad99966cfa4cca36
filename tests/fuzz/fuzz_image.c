/* image_decode + image_preprocess (src/engine/image.h): the path every uploaded image takes in a
 * worker. JPEG through libjpeg-turbo (DCT scaling included), PNG through libspng, EXIF orientation
 * through our marker walk and libexif; then both preprocessing modes.
 *
 * The size hint follows the input's length (odd: 0, as in reference mode; even: 256, as in imagenet
 * mode), so that both the full-size and the DCT-scaled decodes are fuzzed. Invariants are the header's
 * contract: on success an image of at least IMAGE_MIN_SIDE a side within the pixel limit, and finite
 * tensor values; on failure a documented code, a zeroed output and a message. */
#include "fuzz_util.h"

#include "engine/image.h"

#include <math.h>
#include <string.h>

/* The reference tensor is w*h*3 floats: keep it to images a worker would take in reasonable time. */
#define FUZZ_REFERENCE_MAX_PIXELS ((uint64_t)1 << 20)

static void check_tensor(const image_tensor *t, uint32_t w, uint32_t h)
{
    FUZZ_CHECK(t->data != NULL && t->w == w && t->h == h);
    size_t n = (size_t)w * h * 3;
    for (size_t i = 0; i < n; i += 97) /* a sample: every value is written by one loop */
        FUZZ_CHECK(isfinite(t->data[i]));
    FUZZ_CHECK(isfinite(t->data[n - 1]));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const image_limits lim = {IMAGE_DEFAULT_MAX_BYTES, IMAGE_DEFAULT_MAX_PIXELS};
    uint32_t hint = size % 2 ? 0 : IMAGE_RESIZE_SHORT;
    image_rgb8 img;
    imgcls_errbuf eb = {{0}};
    int rc = image_decode(data, size, &lim, hint, &img, &eb);
    if (rc) {
        FUZZ_CHECK(rc == IMGCLS_EINVAL || rc == IMGCLS_ETOOBIG || rc == IMGCLS_EFORMAT || rc == IMGCLS_ENOMEM);
        FUZZ_CHECK(img.px == NULL && img.w == 0 && img.h == 0);
        FUZZ_CHECK(eb.msg[0] != 0);
        return 0;
    }
    FUZZ_CHECK(img.px != NULL);
    FUZZ_CHECK(img.w >= IMAGE_MIN_SIDE && img.h >= IMAGE_MIN_SIDE);
    FUZZ_CHECK((uint64_t)img.w * img.h <= lim.max_pixels);
    image_tensor t;
    FUZZ_CHECK(image_preprocess(&img, PREPROCESS_IMAGENET, &t, &eb) == 0);
    check_tensor(&t, IMAGE_CROP, IMAGE_CROP);
    image_tensor_free(&t);
    if ((uint64_t)img.w * img.h <= FUZZ_REFERENCE_MAX_PIXELS) {
        FUZZ_CHECK(image_preprocess(&img, PREPROCESS_REFERENCE, &t, &eb) == 0);
        check_tensor(&t, img.w, img.h);
        image_tensor_free(&t);
    }
    image_free(&img);
    return 0;
}
