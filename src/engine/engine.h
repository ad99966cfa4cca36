/* The classification engine: a weight file, a network (on oneDNN, network.h) and the image
 * pipeline, behind one handle. Load once (engine_open), then classify batches of 1..N encoded images.
 *
 * An engine is used by one thread at a time; its own threads (config.threads) are internal. */
#ifndef IMGCLS_ENGINE_ENGINE_H
#define IMGCLS_ENGINE_ENGINE_H

#include "common/error.h"
#include "engine/image.h"
#include "engine/model_file.h"
#include "engine/network.h"

#include <stddef.h>
#include <stdint.h>

#define ENGINE_MAX_TOP 10
/* The --precision option's help, the same for every command that runs the network. */
#define ENGINE_PRECISION_HELP                                                                             \
    "network precision: fp32, bf16 (needs AMX; elsewhere runs fp32 and says so) or int8 (docs/engine.md)"

typedef struct engine_config {
    const char *model_path; /* NULL: engine_default_model_path() */
    unsigned threads;       /* 1 = the caller's thread only */
    network_precision precision; /* fp32, bf16 (fp32 without AMX) or int8 (network.h) */
    preprocess_mode mode;
    image_limits limits;
    /* The most memory one image may need: decoded pixels, the input tensor and the network's activations
     * together. An image over it is refused (IMGCLS_ETOOBIG in its result) before the big allocations:
     * from its header, its pixels may need up to ENGINE_DECODE_BYTES_PER_PIXEL bytes each (imagenet) or
     * ENGINE_REFERENCE_BYTES_PER_PIXEL (reference, which also keeps a float tensor of the full image),
     * and in reference mode the network's plan for its size is then worked out and checked too. */
    size_t max_memory;
} engine_config;

#define ENGINE_DEFAULT_MAX_MEMORY ((size_t)1024 * 1024 * 1024)
/* Decoding peaks at 4 bytes a pixel (CMYK) plus 3 for an EXIF-rotated copy; 8 leaves a margin. */
#define ENGINE_DECODE_BYTES_PER_PIXEL 8u
/* Reference mode: the RGB pixels (3) and their float tensor (12) are alive together, 16 with a margin. */
#define ENGINE_REFERENCE_BYTES_PER_PIXEL 16u

/* The defaults: the built model, 1 thread, fp32, imagenet preprocessing, 20 MB / 40 MP limits,
 * 1 GiB per image. */
void engine_config_default(engine_config *cfg);

/* $IMGCLS_MODEL if set, else the model `make` builds (models/mobilenet_v2.imgw in the source tree). */
const char *engine_default_model_path(void);

typedef struct engine_image {
    const uint8_t *data; /* encoded JPEG or PNG */
    size_t len;
} engine_image;

typedef struct engine_class {
    uint32_t index;
    float prob; /* softmax probability */
} engine_class;

typedef struct engine_result {
    int rc;             /* 0, or the IMGCLS_E* code for this image alone */
    char error[256];    /* what was wrong with this image, when rc != 0 */
    engine_class top[ENGINE_MAX_TOP];
    size_t ntop;
    double decode_ms; /* decode + preprocess of this image */
    double infer_ms;  /* the network run of this image */
} engine_result;

typedef struct engine engine;

/* Loads the weight file and prepares the network. Returns 0, or the model file's error
 * (IMGCLS_ENOTFOUND, IMGCLS_ECORRUPT), IMGCLS_EINVAL (int8 with a weight file that has no calibration:
 * network_create) or IMGCLS_EBACKEND, with eb saying which. */
int engine_open(const engine_config *cfg, engine **out, imgcls_errbuf *eb);
void engine_close(engine *e); /* accepts NULL */

const model_file *engine_model(const engine *e);
/* What the network runs on (network.h): runtime, ISA, threads, precision. */
void engine_info(const engine *e, network_info *out);
/* The label of a class index; "?" for an index out of range. */
const char *engine_label(const engine *e, uint32_t index);

/* Builds the network plan for imagenet-mode images now, so the first request does not pay for it
 * (workers call this at start-up). */
int engine_warm_up(engine *e, imgcls_errbuf *eb);

/* Classifies n encoded images (1..NETWORK_MAX_BATCH) and writes the top k (<= ENGINE_MAX_TOP) of
 * each into results[i]; the images go through the network one at a time (engine.c says why). An
 * image that cannot be decoded, is over the memory limit, or has a shape the network refuses gets
 * results[i].rc and .error; the others are still classified. Returns 0 unless the batch as a whole failed
 * (IMGCLS_EBACKEND, IMGCLS_ENOMEM, IMGCLS_EINVAL for bad n or k). */
int engine_classify(engine *e, const engine_image *images, size_t n, size_t k, engine_result *results,
                    imgcls_errbuf *eb);

/* Runs already-preprocessed input (batch x h x w x 3, NHWC) and writes
 * batch x num_classes logits. For tests and benchmarks. */
int engine_run_tensor(engine *e, const float *input, size_t batch, uint32_t h, uint32_t w, float *logits,
                      imgcls_errbuf *eb);

/* Softmax over logits and the k most probable classes, most probable first. */
void engine_topk(const float *logits, size_t nclasses, size_t k, engine_class *out);

#endif
