#include "engine/model_file.h"

#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char MAGIC[8] = {'I', 'M', 'G', 'C', 'L', 'S', 'W', 0};

/* What the parser knows about each value while it walks the layers: how many channels it has, and
 * whether it is still a spatial NHWC map or already pooled to N x 1 x 1 x C. */
typedef struct value_info {
    uint32_t channels;
    int written;
    int pooled;
} value_info;

typedef struct parser {
    model_file *m;
    const uint8_t *data_start;
    size_t data_len;
    value_info *values;
    imgcls_errbuf *eb;
} parser;

static uint32_t read_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Reads an integer field in [lo, hi]. */
static int get_uint(json_t *obj, const char *key, uint64_t lo, uint64_t hi, uint64_t *out, const char *where,
                    imgcls_errbuf *eb)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) < lo ||
        (uint64_t)json_integer_value(v) > hi)
        return imgcls_fail(eb, IMGCLS_ECORRUPT, "%s: field '%s' missing or outside [%llu, %llu]", where, key,
                           (unsigned long long)lo, (unsigned long long)hi);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int get_u32(json_t *obj, const char *key, uint32_t lo, uint32_t hi, uint32_t *out, const char *where,
                   imgcls_errbuf *eb)
{
    uint64_t v = 0;
    int rc = get_uint(obj, key, lo, hi, &v, where, eb);
    if (!rc)
        *out = (uint32_t)v;
    return rc;
}

/* Reads an array of n integers in [lo, hi]. */
static int get_u32_array(json_t *obj, const char *key, size_t n, uint32_t lo, uint32_t hi, uint32_t *out,
                         const char *where, imgcls_errbuf *eb)
{
    json_t *a = json_object_get(obj, key);
    if (!json_is_array(a) || json_array_size(a) != n)
        return imgcls_fail(eb, IMGCLS_ECORRUPT, "%s: field '%s' must be a list of %zu integers", where, key, n);
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(a, i);
        if (!json_is_integer(v) || json_integer_value(v) < (json_int_t)lo || json_integer_value(v) > (json_int_t)hi)
            return imgcls_fail(eb, IMGCLS_ECORRUPT, "%s: '%s'[%zu] missing or outside [%u, %u]", where, key, i,
                               lo, hi);
        out[i] = (uint32_t)json_integer_value(v);
    }
    return 0;
}

static int parse_tensors(parser *p, json_t *arr)
{
    model_file *m = p->m;
    if (!json_is_array(arr) || json_array_size(arr) == 0 || json_array_size(arr) > 4 * MODEL_MAX_LAYERS)
        return imgcls_fail(p->eb, IMGCLS_ECORRUPT, "header: 'tensors' must be a non-empty list");
    m->ntensors = json_array_size(arr);
    m->tensors = calloc(m->ntensors, sizeof *m->tensors);
    if (!m->tensors)
        return IMGCLS_ENOMEM;
    for (size_t i = 0; i < m->ntensors; i++) {
        json_t *t = json_array_get(arr, i);
        char where[48];
        snprintf(where, sizeof where, "tensor %zu", i);
        json_t *shape = json_object_get(t, "shape");
        size_t nd = json_array_size(shape);
        if (!json_is_array(shape) || nd < 1 || nd > 4)
            return imgcls_fail(p->eb, IMGCLS_ECORRUPT, "%s: 'shape' must have 1 to 4 dimensions", where);
        model_tensor *mt = &m->tensors[i];
        mt->ndims = nd;
        uint32_t dims[4];
        int rc = get_u32_array(t, "shape", nd, 1, 1u << 24, dims, where, p->eb);
        if (rc)
            return rc;
        uint64_t count = 1;
        for (size_t d = 0; d < nd; d++) {
            mt->dims[d] = dims[d];
            count *= dims[d];
            if (count > ((uint64_t)1 << 32))
                return imgcls_fail(p->eb, IMGCLS_ECORRUPT, "%s: too many elements", where);
        }
        uint64_t off = 0, nbytes = 0;
        if ((rc = get_uint(t, "offset", 0, p->data_len, &off, where, p->eb)) ||
            (rc = get_uint(t, "nbytes", 4, p->data_len, &nbytes, where, p->eb)))
            return rc;
        if (off % 64 || nbytes != 4 * count || off + nbytes > p->data_len)
            return imgcls_fail(p->eb, IMGCLS_ECORRUPT,
                               "%s: offset %llu / nbytes %llu do not fit its shape or the file", where,
                               (unsigned long long)off, (unsigned long long)nbytes);
        mt->count = (size_t)count;
        mt->data = (const float *)(const void *)(p->data_start + off);
    }
    return 0;
}

static int parse_labels(parser *p, json_t *hdr)
{
    model_file *m = p->m;
    uint64_t n = 0;
    int rc = get_uint(hdr, "num_classes", 1, MODEL_MAX_CLASSES, &n, "header", p->eb);
    if (rc)
        return rc;
    json_t *labels = json_object_get(hdr, "labels");
    if (!json_is_array(labels) || json_array_size(labels) != n)
        return imgcls_fail(p->eb, IMGCLS_ECORRUPT, "header: 'labels' must list num_classes (%llu) names",
                           (unsigned long long)n);
    m->num_classes = (size_t)n;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *l = json_array_get(labels, i);
        if (!json_is_string(l) || json_string_length(l) == 0 || json_string_length(l) > 127 ||
            strlen(json_string_value(l)) != json_string_length(l))
            return imgcls_fail(p->eb, IMGCLS_ECORRUPT, "label %zu: must be a 1..127 byte string", i);
        total += json_string_length(l) + 1;
    }
    m->labels = calloc(n, sizeof *m->labels);
    m->labels_text = malloc(total);
    if (!m->labels || !m->labels_text)
        return IMGCLS_ENOMEM;
    char *w = m->labels_text;
    for (size_t i = 0; i < n; i++) {
        size_t len = json_string_length(json_array_get(labels, i));
        memcpy(w, json_string_value(json_array_get(labels, i)), len + 1);
        m->labels[i] = w;
        w += len + 1;
    }
    return 0;
}

static int parse_activation(json_t *l, enum model_act *act, const char *where, imgcls_errbuf *eb)
{
    const char *s = json_string_value(json_object_get(l, "activation"));
    if (!s || strcmp(s, "none") == 0)
        *act = MODEL_ACT_NONE;
    else if (strcmp(s, "relu") == 0)
        *act = MODEL_ACT_RELU;
    else if (strcmp(s, "relu6") == 0)
        *act = MODEL_ACT_RELU6;
    else
        return imgcls_fail(eb, IMGCLS_ECORRUPT, "%s: unknown activation '%s'", where, s);
    return 0;
}

/* Reads a value id that must already have been written by an earlier layer. */
static int get_input_value(parser *p, json_t *v, uint32_t *out, const char *where)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= p->m->num_values ||
        !p->values[json_integer_value(v)].written)
        return imgcls_fail(p->eb, IMGCLS_ECORRUPT, "%s: input is not a value written by an earlier layer", where);
    *out = (uint32_t)json_integer_value(v);
    return 0;
}

static int get_tensor(parser *p, json_t *l, const char *key, const model_tensor **out, const char *where)
{
    uint64_t idx = 0;
    int rc = get_uint(l, key, 0, p->m->ntensors - 1, &idx, where, p->eb);
    if (!rc)
        *out = &p->m->tensors[idx];
    return rc;
}

static int check_shape(const model_tensor *t, size_t nd, const size_t *dims, const char *what, const char *where,
                       imgcls_errbuf *eb)
{
    int ok = t->ndims == nd;
    for (size_t i = 0; ok && i < nd; i++)
        ok = t->dims[i] == dims[i];
    return ok ? 0 : imgcls_fail(eb, IMGCLS_ECORRUPT, "%s: %s tensor has the wrong shape", where, what);
}

static int parse_conv(parser *p, json_t *l, model_layer *L, const char *where)
{
    int rc;
    if ((rc = get_u32(l, "in_channels", 1, 1u << 16, &L->in_channels, where, p->eb)) ||
        (rc = get_u32(l, "out_channels", 1, 1u << 16, &L->out_channels, where, p->eb)) ||
        (rc = get_u32(l, "groups", 1, 1u << 16, &L->groups, where, p->eb)) ||
        (rc = get_u32_array(l, "kernel", 2, 1, 64, L->kernel, where, p->eb)) ||
        (rc = get_u32_array(l, "stride", 2, 1, 64, L->stride, where, p->eb)) ||
        (rc = get_u32_array(l, "dilation", 2, 1, 64, L->dilation, where, p->eb)) ||
        (rc = get_u32_array(l, "padding", 4, 0, 64, L->pad, where, p->eb)) ||
        (rc = get_tensor(p, l, "weight", &L->weight, where)) || (rc = get_tensor(p, l, "bias", &L->bias, where)))
        return rc;
    if (p->values[L->input[0]].channels != L->in_channels || p->values[L->input[0]].pooled)
        return imgcls_fail(p->eb, IMGCLS_ECORRUPT, "%s: in_channels does not match its input", where);
    int depthwise = L->groups > 1;
    if (depthwise && (L->groups != L->in_channels || L->out_channels != L->in_channels))
        return imgcls_fail(p->eb, IMGCLS_ECORRUPT, "%s: only groups = 1 or depthwise convolutions are supported",
                           where);
    /* OHWI for a plain convolution, 1HWC for a depthwise one: the file's layouts (docs/weight-format.md). */
    size_t wdims[4] = {depthwise ? 1 : L->out_channels, L->kernel[0], L->kernel[1], L->in_channels};
    size_t bdims[1] = {L->out_channels};
    if ((rc = check_shape(L->weight, 4, wdims, "weight", where, p->eb)) ||
        (rc = check_shape(L->bias, 1, bdims, "bias", where, p->eb)))
        return rc;
    p->values[L->output].channels = L->out_channels;
    return 0;
}

static int parse_linear(parser *p, json_t *l, model_layer *L, const char *where)
{
    int rc;
    if ((rc = get_u32(l, "in_features", 1, 1u << 20, &L->in_channels, where, p->eb)) ||
        (rc = get_u32(l, "out_features", 1, MODEL_MAX_CLASSES, &L->out_channels, where, p->eb)) ||
        (rc = get_tensor(p, l, "weight", &L->weight, where)) || (rc = get_tensor(p, l, "bias", &L->bias, where)))
        return rc;
    if (p->values[L->input[0]].channels != L->in_channels || !p->values[L->input[0]].pooled)
        return imgcls_fail(p->eb, IMGCLS_ECORRUPT, "%s: input must be a pooled value with in_features channels",
                           where);
    size_t wdims[2] = {L->out_channels, L->in_channels};
    size_t bdims[1] = {L->out_channels};
    if ((rc = check_shape(L->weight, 2, wdims, "weight", where, p->eb)) ||
        (rc = check_shape(L->bias, 1, bdims, "bias", where, p->eb)))
        return rc;
    p->values[L->output].channels = L->out_channels;
    p->values[L->output].pooled = 1;
    return 0;
}

/* Fills the op-specific fields of L from l; the output's channel count and pooled flag follow. */
static int parse_op(parser *p, json_t *l, const char *op, model_layer *L, const char *where)
{
    value_info *in = &p->values[L->input[0]], *out = &p->values[L->output];
    if (strcmp(op, "conv2d") == 0) {
        L->op = MODEL_CONV2D;
        return parse_conv(p, l, L, where);
    }
    if (strcmp(op, "linear") == 0) {
        L->op = MODEL_LINEAR;
        return parse_linear(p, l, L, where);
    }
    if (strcmp(op, "add") == 0) {
        L->op = MODEL_ADD;
        if (in->channels != p->values[L->input[1]].channels || in->pooled != p->values[L->input[1]].pooled)
            return imgcls_fail(p->eb, IMGCLS_ECORRUPT, "%s: the two inputs differ in shape", where);
        *out = *in;
        return 0;
    }
    if (strcmp(op, "max_pool2d") == 0) {
        L->op = MODEL_MAX_POOL2D;
        int rc;
        if ((rc = get_u32_array(l, "kernel", 2, 1, 64, L->kernel, where, p->eb)) ||
            (rc = get_u32_array(l, "stride", 2, 1, 64, L->stride, where, p->eb)) ||
            (rc = get_u32_array(l, "padding", 4, 0, 64, L->pad, where, p->eb)))
            return rc;
        L->dilation[0] = L->dilation[1] = 1;
        *out = *in;
        return in->pooled ? imgcls_fail(p->eb, IMGCLS_ECORRUPT, "%s: input is already pooled", where) : 0;
    }
    if (strcmp(op, "global_avg_pool") == 0) {
        L->op = MODEL_GLOBAL_AVG_POOL;
        *out = *in;
        out->pooled = 1;
        return 0;
    }
    return imgcls_fail(p->eb, IMGCLS_ECORRUPT, "%s: unknown op '%s'", where, op);
}

static int parse_layer(parser *p, json_t *l, size_t i)
{
    model_layer *L = &p->m->layers[i];
    char where[48];
    snprintf(where, sizeof where, "layer %zu", i);
    const char *op = json_string_value(json_object_get(l, "op"));
    if (!op)
        return imgcls_fail(p->eb, IMGCLS_ECORRUPT, "%s: missing 'op'", where);
    int rc;
    json_t *inputs = json_object_get(l, "inputs");
    if (strcmp(op, "add") == 0) {
        if (!json_is_array(inputs) || json_array_size(inputs) != 2)
            return imgcls_fail(p->eb, IMGCLS_ECORRUPT, "%s: add needs 'inputs' [a, b]", where);
        if ((rc = get_input_value(p, json_array_get(inputs, 0), &L->input[0], where)) ||
            (rc = get_input_value(p, json_array_get(inputs, 1), &L->input[1], where)))
            return rc;
    } else if ((rc = get_input_value(p, json_object_get(l, "input"), &L->input[0], where))) {
        return rc;
    }
    if ((rc = get_u32(l, "output", 1, p->m->num_values - 1, &L->output, where, p->eb)))
        return rc;
    if (p->values[L->output].written)
        return imgcls_fail(p->eb, IMGCLS_ECORRUPT, "%s: output value %u is written twice", where, L->output);
    if ((rc = parse_activation(l, &L->act, where, p->eb)) || (rc = parse_op(p, l, op, L, where)))
        return rc;
    p->values[L->output].written = 1;
    return 0;
}

static int parse_graph(parser *p, json_t *hdr)
{
    model_file *m = p->m;
    int rc;
    if ((rc = get_u32(hdr, "num_values", 2, 4 * MODEL_MAX_LAYERS, &m->num_values, "header", p->eb)) ||
        (rc = get_u32(hdr, "output", 1, m->num_values - 1, &m->output, "header", p->eb)))
        return rc;
    json_t *layers = json_object_get(hdr, "layers");
    if (!json_is_array(layers) || json_array_size(layers) == 0 || json_array_size(layers) > MODEL_MAX_LAYERS)
        return imgcls_fail(p->eb, IMGCLS_ECORRUPT, "header: 'layers' must be a list of 1..%d layers",
                           MODEL_MAX_LAYERS);
    m->nlayers = json_array_size(layers);
    m->layers = calloc(m->nlayers, sizeof *m->layers);
    p->values = calloc(m->num_values, sizeof *p->values);
    if (!m->layers || !p->values)
        return IMGCLS_ENOMEM;
    p->values[0] = (value_info){.channels = 3, .written = 1, .pooled = 0};
    for (size_t i = 0; i < m->nlayers; i++)
        if ((rc = parse_layer(p, json_array_get(layers, i), i)))
            return rc;
    value_info *out = &p->values[m->output];
    if (!out->written || !out->pooled || out->channels != m->num_classes)
        return imgcls_fail(p->eb, IMGCLS_ECORRUPT, "header: output value must be pooled logits of num_classes");
    return 0;
}

/* The optional "calibration" object: "ranges", num_values pairs [min, max], finite, min <= max, within
 * MODEL_MAX_RANGE; a ReLU or ReLU6 output's min must not be negative (its int8 form is unsigned).
 * "fp32_layers", optional: the convolutions bf16 and int8 leave in fp32, each listed once. */
static int parse_calibration(parser *p, json_t *hdr)
{
    model_file *m = p->m;
    json_t *cal = json_object_get(hdr, "calibration");
    if (!cal)
        return 0;
    json_t *r = json_object_get(cal, "ranges");
    if (!json_is_object(cal) || !json_is_array(r) || json_array_size(r) != m->num_values)
        return imgcls_fail(p->eb, IMGCLS_ECORRUPT, "calibration: 'ranges' must list num_values (%u) [min, max] pairs",
                           m->num_values);
    m->ranges = calloc(2 * (size_t)m->num_values, sizeof *m->ranges);
    if (!m->ranges)
        return IMGCLS_ENOMEM;
    for (size_t v = 0; v < m->num_values; v++) {
        json_t *pair = json_array_get(r, v);
        for (size_t k = 0; k < 2; k++) {
            json_t *x = json_array_get(pair, k);
            double d = json_is_number(x) ? json_number_value(x) : NAN;
            if (!json_is_array(pair) || json_array_size(pair) != 2 || !isfinite(d) || fabs(d) > MODEL_MAX_RANGE)
                return imgcls_fail(p->eb, IMGCLS_ECORRUPT, "calibration: range of value %zu must be [min, max], "
                                   "finite numbers within %g", v, (double)MODEL_MAX_RANGE);
            m->ranges[2 * v + k] = (float)d;
        }
        if (m->ranges[2 * v] > m->ranges[2 * v + 1])
            return imgcls_fail(p->eb, IMGCLS_ECORRUPT, "calibration: value %zu has min > max", v);
    }
    for (size_t i = 0; i < m->nlayers; i++)
        if (m->layers[i].act != MODEL_ACT_NONE && m->ranges[2 * m->layers[i].output] < 0)
            return imgcls_fail(p->eb, IMGCLS_ECORRUPT, "calibration: value %u follows a ReLU but has min < 0",
                               m->layers[i].output);
    json_t *keep = json_object_get(cal, "fp32_layers");
    if (keep && (!json_is_array(keep) || json_array_size(keep) > m->nlayers))
        return imgcls_fail(p->eb, IMGCLS_ECORRUPT, "calibration: 'fp32_layers' must be a list of layers");
    for (size_t k = 0; keep && k < json_array_size(keep); k++) {
        json_t *x = json_array_get(keep, k);
        json_int_t i = json_is_integer(x) ? json_integer_value(x) : -1;
        model_layer *L = i >= 0 && (size_t)i < m->nlayers ? &m->layers[i] : NULL;
        if (!L || (L->op != MODEL_CONV2D && L->op != MODEL_LINEAR) || L->keep_fp32)
            return imgcls_fail(p->eb, IMGCLS_ECORRUPT, "calibration: fp32_layers[%zu] is not a convolution listed "
                               "once", k);
        L->keep_fp32 = 1;
    }
    return 0;
}

static int parse_header(parser *p, json_t *hdr)
{
    model_file *m = p->m;
    if (!json_is_object(hdr))
        return imgcls_fail(p->eb, IMGCLS_ECORRUPT, "header is not a JSON object");
    const char *arch = json_string_value(json_object_get(hdr, "arch"));
    snprintf(m->arch, sizeof m->arch, "%s", arch ? arch : "unknown");
    int rc;
    if ((rc = parse_labels(p, hdr)) || (rc = parse_tensors(p, json_object_get(hdr, "tensors"))) ||
        (rc = parse_graph(p, hdr)))
        return rc;
    return parse_calibration(p, hdr);
}

int model_file_parse(const uint8_t *data, size_t len, model_file *out, imgcls_errbuf *eb)
{
    memset(out, 0, sizeof *out);
    if (len < 16 || memcmp(data, MAGIC, sizeof MAGIC) != 0)
        return imgcls_fail(eb, IMGCLS_ECORRUPT, "not an imgcls weight file (bad magic)");
    if (read_u32le(data + 8) != 1)
        return imgcls_fail(eb, IMGCLS_ECORRUPT, "weight file version %u is not supported (want 1)",
                           read_u32le(data + 8));
    uint32_t hlen = read_u32le(data + 12);
    size_t data_off = ((size_t)16 + hlen + 63) & ~(size_t)63;
    if (hlen == 0 || hlen > MODEL_MAX_HEADER || data_off > len)
        return imgcls_fail(eb, IMGCLS_ECORRUPT, "header length %u does not fit the file", hlen);
    json_error_t jerr;
    json_t *hdr = json_loadb((const char *)data + 16, hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!hdr)
        return imgcls_fail(eb, IMGCLS_ECORRUPT, "header is not valid JSON: %s", jerr.text);
    parser p = {.m = out, .data_start = data + data_off, .data_len = len - data_off, .eb = eb};
    int rc = parse_header(&p, hdr);
    free(p.values);
    json_decref(hdr);
    if (rc)
        model_file_release(out);
    return rc;
}

void model_file_release(model_file *m)
{
    if (!m)
        return;
    free(m->labels);
    free(m->labels_text);
    free(m->tensors);
    free(m->layers);
    free(m->ranges);
    void *map = m->map;
    size_t map_len = m->map_len;
    memset(m, 0, sizeof *m);
    m->map = map;
    m->map_len = map_len;
}

int model_file_open(const char *path, model_file **out, imgcls_errbuf *eb)
{
    int rc = 0;
    *out = NULL;
    model_file *m = calloc(1, sizeof *m);
    if (!m)
        return IMGCLS_ENOMEM;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = imgcls_fail(eb, IMGCLS_ENOTFOUND, "%s: cannot open model file (run 'make' to build it)", path);
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 16) {
        rc = imgcls_fail(eb, IMGCLS_ECORRUPT, "%s: not a weight file", path);
        goto out;
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        rc = imgcls_fail(eb, IMGCLS_EIO, "%s: cannot map the file", path);
        goto out;
    }
    rc = model_file_parse(map, (size_t)st.st_size, m, eb);
    m->map = map;
    m->map_len = (size_t)st.st_size;
    if (rc) {
        if (eb) { /* name the file: the parser only knows the bytes */
            char detail[sizeof eb->msg];
            snprintf(detail, sizeof detail, "%s", eb->msg);
            imgcls_fail(eb, rc, "%s: %s", path, detail);
        }
        goto out;
    }
    *out = m;
    m = NULL;
out:
    if (fd >= 0)
        close(fd);
    model_file_close(m);
    return rc;
}

void model_file_close(model_file *m)
{
    if (!m)
        return;
    model_file_release(m);
    if (m->map)
        munmap(m->map, m->map_len);
    free(m);
}
