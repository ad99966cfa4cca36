/* The weight file (docs/weight-format.md): a network's graph and tensors in one file.
 *
 * model_file_open maps the file read-only; tensor pointers point into the mapping, so the weights are
 * never copied (oneDNN reorders them once, when the network is built). model_file_parse is the pure part
 * -- bytes in, validated graph out -- so it can be fuzzed. Everything read from the file is checked:
 * a bad file is refused with a message naming the layer and the field, never trusted. */
#ifndef IMGCLS_ENGINE_MODEL_FILE_H
#define IMGCLS_ENGINE_MODEL_FILE_H

#include "common/error.h"

#include <stddef.h>
#include <stdint.h>

#define MODEL_MAX_HEADER ((uint32_t)4 << 20)
#define MODEL_MAX_LAYERS 4096
#define MODEL_MAX_CLASSES 100000
/* Largest magnitude a calibrated activation range may have (fp32 activations of a sane network are far
 * below it; a larger one is a broken calibration, not a network). */
#define MODEL_MAX_RANGE 1e6f

enum model_op { MODEL_CONV2D, MODEL_ADD, MODEL_MAX_POOL2D, MODEL_GLOBAL_AVG_POOL, MODEL_LINEAR };
enum model_act { MODEL_ACT_NONE, MODEL_ACT_RELU, MODEL_ACT_RELU6 };

typedef struct model_tensor {
    const float *data; /* into the mapping */
    size_t dims[4];
    size_t ndims;
    size_t count; /* product of dims */
} model_tensor;

typedef struct model_layer {
    enum model_op op;
    uint32_t input[2]; /* value ids; input[1] only for MODEL_ADD */
    uint32_t output;
    enum model_act act;
    /* conv2d / linear */
    uint32_t in_channels, out_channels, groups;
    uint32_t kernel[2], stride[2], dilation[2];
    uint32_t pad[4]; /* top, left, bottom, right */
    const model_tensor *weight, *bias;
    int keep_fp32; /* bf16, int8: the calibration's "fp32_layers" lists this convolution */
} model_layer;

typedef struct model_file {
    char arch[64];
    size_t num_classes;
    const char **labels; /* num_classes entries, into labels_text */
    char *labels_text;
    model_tensor *tensors;
    size_t ntensors;
    model_layer *layers;
    size_t nlayers;
    uint32_t num_values; /* value 0 is the input image */
    uint32_t output;     /* the logits */
    /* int8 calibration (optional): per value, the least and the greatest activation seen on the
     * calibration photos, ranges[2v] and ranges[2v+1]; NULL when the file has none. */
    float *ranges;
    /* the mapping, when opened from a file */
    void *map;
    size_t map_len;
} model_file;

/* Maps and parses path. Returns 0 and *out (close with model_file_close), IMGCLS_ENOTFOUND,
 * IMGCLS_EIO, or IMGCLS_ECORRUPT with eb naming what is wrong. */
int model_file_open(const char *path, model_file **out, imgcls_errbuf *eb);

/* Parses a weight file held in memory. data must stay alive and unchanged while *out is used. Returns
 * 0, IMGCLS_ECORRUPT, or IMGCLS_ENOMEM; on error *out is zeroed. Release with model_file_release. */
int model_file_parse(const uint8_t *data, size_t len, model_file *out, imgcls_errbuf *eb);
void model_file_release(model_file *m);

void model_file_close(model_file *m); /* accepts NULL */

#endif
