/* engine_dump: runs the C engine on one input and writes raw float32 results, so the Python tests can
 * compare them with ONNX Runtime on exactly the same input.
 *
 *   engine_dump --model M --tensor IN.f32 --batch N --height H --width W --logits OUT.f32
 *   engine_dump --model M --image FILE [--preprocess reference] --tensor-out T.f32 --logits OUT.f32
 *
 * With --image, the preprocessed tensor is written too (NHWC, with its H and W on stdout as "H W"). */
#include "common/buf.h"
#include "common/config.h"
#include "engine/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct dump_opts {
    const char *model, *tensor, *image, *preprocess, *tensor_out, *logits, *precision;
    unsigned long batch, height, width, threads;
} dump_opts;

static int write_floats(const char *path, const float *x, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return IMGCLS_EIO;
    size_t w = fwrite(x, sizeof(float), n, f);
    return fclose(f) == 0 && w == n ? 0 : IMGCLS_EIO;
}

static int from_image(engine *e, const dump_opts *o, float **x, uint32_t *h, uint32_t *w, imgcls_errbuf *eb)
{
    imgcls_buf b;
    buf_init(&b, IMAGE_DEFAULT_MAX_BYTES);
    preprocess_mode mode = PREPROCESS_IMAGENET;
    int rc = buf_read_file(&b, o->image, IMAGE_DEFAULT_MAX_BYTES);
    if (!rc && o->preprocess)
        rc = preprocess_mode_parse(o->preprocess, &mode);
    image_limits lim = {IMAGE_DEFAULT_MAX_BYTES, IMAGE_DEFAULT_MAX_PIXELS};
    image_tensor t = {0};
    if (!rc)
        rc = image_load_tensor(b.data, b.len, &lim, mode, &t, eb);
    buf_free(&b);
    if (rc)
        return rc;
    *x = t.data;
    *h = t.h;
    *w = t.w;
    printf("%u %u\n", t.h, t.w);
    (void)e;
    return o->tensor_out ? write_floats(o->tensor_out, t.data, (size_t)t.h * t.w * 3) : 0;
}

static int from_tensor(const dump_opts *o, float **x, imgcls_errbuf *eb)
{
    size_t n = o->batch * o->height * o->width * 3;
    imgcls_buf b;
    buf_init(&b, n * sizeof(float));
    int rc = buf_read_file(&b, o->tensor, n * sizeof(float));
    if (!rc && b.len != n * sizeof(float))
        rc = imgcls_fail(eb, IMGCLS_EINVAL, "tensor file holds %zu bytes, want %zu", b.len, n * sizeof(float));
    if (!rc && !(*x = malloc(b.len)))
        rc = IMGCLS_ENOMEM;
    if (!rc)
        memcpy(*x, b.data, b.len);
    buf_free(&b);
    return rc;
}

int main(int argc, char **argv)
{
    dump_opts o;
    config_opt table[] = {
        {"model", CONFIG_STR, NULL, "weight file", 0, 0, &o.model},
        {"tensor", CONFIG_STR, NULL, "raw float32 NHWC input", 0, 0, &o.tensor},
        {"image", CONFIG_STR, NULL, "image file to preprocess and run", 0, 0, &o.image},
        {"preprocess", CONFIG_STR, NULL, "imagenet or reference", 0, 0, &o.preprocess},
        {"tensor-out", CONFIG_STR, NULL, "where to write the preprocessed tensor", 0, 0, &o.tensor_out},
        {"logits", CONFIG_STR, NULL, "where to write the logits", 0, 0, &o.logits},
        {"batch", CONFIG_UINT, "1", "batch size of --tensor", 1, 64, &o.batch},
        {"height", CONFIG_UINT, "224", "height of --tensor", 1, 4096, &o.height},
        {"width", CONFIG_UINT, "224", "width of --tensor", 1, 4096, &o.width},
        {"threads", CONFIG_UINT, "1", "threads", 1, 64, &o.threads},
        {"precision", CONFIG_STR, "fp32", "fp32, bf16 or int8", 0, 0, &o.precision},
    };
    config_args args;
    imgcls_errbuf eb = {{0}};
    engine *e = NULL;
    float *x = NULL, *logits = NULL;
    engine_config cfg;
    engine_config_default(&cfg);
    int rc = config_parse(table, sizeof table / sizeof *table, argc, argv, &args, &eb);
    if (!rc && (!o.logits || (!o.tensor == !o.image)))
        rc = imgcls_fail(&eb, IMGCLS_EINVAL, "need --logits and exactly one of --tensor, --image");
    cfg.model_path = o.model;
    cfg.threads = (unsigned)o.threads;
    if (!rc && network_precision_parse(o.precision, &cfg.precision))
        rc = imgcls_fail(&eb, IMGCLS_EINVAL, "--precision must be fp32, bf16 or int8");
    if (!rc)
        rc = engine_open(&cfg, &e, &eb);
    uint32_t h = (uint32_t)o.height, w = (uint32_t)o.width;
    size_t batch = o.image ? 1 : o.batch;
    if (!rc)
        rc = o.image ? from_image(e, &o, &x, &h, &w, &eb) : from_tensor(&o, &x, &eb);
    size_t ncls = e ? engine_model(e)->num_classes : 0;
    if (!rc && !(logits = malloc(batch * ncls * sizeof(float))))
        rc = IMGCLS_ENOMEM;
    if (!rc)
        rc = engine_run_tensor(e, x, batch, h, w, logits, &eb);
    if (!rc)
        rc = write_floats(o.logits, logits, batch * ncls);
    if (rc)
        fprintf(stderr, "engine_dump: %s: %s\n", imgcls_err_name(rc), eb.msg);
    free(x);
    free(logits);
    engine_close(e);
    free(args.positional);
    return rc ? 1 : 0;
}
