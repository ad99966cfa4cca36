#include "engine/engine.h"

#include "common/clock.h"
#include "engine/network.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct engine {
    engine_config cfg;
    model_file *model;
    network *net;
    float *logits;
    size_t logits_cap; /* in floats */
    bool memory_caps_pixels; /* cfg.limits.max_pixels comes from cfg.max_memory */
};

void engine_config_default(engine_config *cfg)
{
    cfg->model_path = NULL;
    cfg->threads = 1;
    cfg->precision = NETWORK_FP32;
    cfg->mode = PREPROCESS_IMAGENET;
    cfg->limits.max_bytes = IMAGE_DEFAULT_MAX_BYTES;
    cfg->limits.max_pixels = IMAGE_DEFAULT_MAX_PIXELS;
    cfg->max_memory = ENGINE_DEFAULT_MAX_MEMORY;
}

const char *engine_default_model_path(void)
{
    const char *env = getenv("IMGCLS_MODEL");
    return env && *env ? env : IMGCLS_DEFAULT_MODEL;
}

int engine_open(const engine_config *cfg, engine **out, imgcls_errbuf *eb)
{
    *out = NULL;
    engine *e = calloc(1, sizeof *e);
    if (!e)
        return IMGCLS_ENOMEM;
    e->cfg = *cfg;
    /* The memory limit becomes a pixel limit that the decoder checks from the header, before it allocates. */
    uint64_t per_px =
        cfg->mode == PREPROCESS_REFERENCE ? ENGINE_REFERENCE_BYTES_PER_PIXEL : ENGINE_DECODE_BYTES_PER_PIXEL;
    if (cfg->max_memory && cfg->max_memory / per_px < e->cfg.limits.max_pixels) {
        e->cfg.limits.max_pixels = cfg->max_memory / per_px;
        e->memory_caps_pixels = true;
    }
    if (!e->cfg.model_path)
        e->cfg.model_path = engine_default_model_path();
    int rc = model_file_open(e->cfg.model_path, &e->model, eb);
    if (rc)
        goto out;
    rc = network_create(e->model, cfg->threads ? cfg->threads : 1, cfg->precision, &e->net, eb);
    if (rc)
        goto out;
    *out = e;
    e = NULL;
out:
    engine_close(e);
    return rc;
}

void engine_close(engine *e)
{
    if (!e)
        return;
    network_destroy(e->net);
    model_file_close(e->model);
    free(e->logits);
    free(e);
}

const model_file *engine_model(const engine *e)
{
    return e->model;
}

void engine_info(const engine *e, network_info *out)
{
    network_get_info(e->net, out);
}

const char *engine_label(const engine *e, uint32_t index)
{
    return index < e->model->num_classes ? e->model->labels[index] : "?";
}

int engine_warm_up(engine *e, imgcls_errbuf *eb)
{
    if (e->cfg.mode != PREPROCESS_IMAGENET)
        return 0; /* reference mode's shapes are not known until the images arrive */
    return network_prepare(e->net, 1, IMAGE_CROP, IMAGE_CROP, eb);
}

/* Grows *buf to hold at least need floats. */
static int ensure_floats(float **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    float *p = realloc(*buf, need * sizeof(float));
    if (!p)
        return IMGCLS_ENOMEM;
    *buf = p;
    *cap = need;
    return 0;
}

int engine_run_tensor(engine *e, const float *input, size_t batch, uint32_t h, uint32_t w, float *logits,
                      imgcls_errbuf *eb)
{
    return network_run(e->net, input, batch, h, w, logits, eb);
}

void engine_topk(const float *logits, size_t nclasses, size_t k, engine_class *out)
{
    if (k > nclasses)
        k = nclasses;
    float maxv = -INFINITY;
    for (size_t i = 0; i < nclasses; i++)
        maxv = logits[i] > maxv ? logits[i] : maxv;
    double sum = 0;
    for (size_t i = 0; i < nclasses; i++)
        sum += exp((double)(logits[i] - maxv));
    size_t filled = 0;
    for (size_t i = 0; i < nclasses; i++) {
        /* insertion into a k-long sorted list: k is at most 10, so this beats sorting 1000 logits */
        if (filled == k && logits[i] <= logits[out[k - 1].index])
            continue;
        size_t j = filled < k ? filled++ : k - 1;
        while (j > 0 && logits[out[j - 1].index] < logits[i]) {
            out[j] = out[j - 1];
            j--;
        }
        out[j].index = (uint32_t)i;
    }
    for (size_t j = 0; j < filled; j++)
        out[j].prob = (float)(exp((double)(logits[out[j].index] - maxv)) / sum);
}

/* Runs one decoded image through the network. The engine runs a batch image by image: measured on
 * this 2-core Zen3 with MobileNetV2, a network batch of 8 took about 22 ms per image against 12 ms
 * one at a time, because the activations of 8 images no longer fit in L2; and one shape means one
 * plan, so workers never rebuild plans as their batch sizes vary. Batching still pays where it is
 * cheap: one receive, one decode loop and one set of writes per batch. */
/* Refuses, in r, an input whose activations would take the image over the memory limit, or whose shape
 * the network cannot take: both belong to the image, and retrying it can never succeed. */
static bool network_fits(engine *e, const image_tensor *t, engine_result *r)
{
    size_t bytes = 0, tensor = (size_t)t->w * t->h * 3 * sizeof(float);
    imgcls_errbuf neb = {{0}};
    if (network_plan_bytes(e->net, 1, t->h, t->w, &bytes, &neb)) {
        r->rc = IMGCLS_EFORMAT;
        snprintf(r->error, sizeof r->error, "the network cannot take a %ux%u image: %.160s", t->w, t->h, neb.msg);
        return false;
    }
    if (e->cfg.max_memory && bytes + tensor > e->cfg.max_memory) {
        r->rc = IMGCLS_ETOOBIG;
        snprintf(r->error, sizeof r->error,
                 "a %ux%u image needs %zu MiB for the network, over the limit of %zu MiB (--max-image-mb)", t->w, t->h,
                 (bytes + tensor) >> 20, e->cfg.max_memory >> 20);
        return false;
    }
    return true;
}

/* Plans bigger than imagenet mode's are freed after their image: reference-mode sizes rarely repeat, and
 * four cached plans of large images would hold four times the memory limit. */
#define ENGINE_KEEP_PLAN_BYTES ((size_t)64 * 1024 * 1024)

static int run_one(engine *e, const image_tensor *t, size_t k, engine_result *r, imgcls_errbuf *eb)
{
    size_t ncls = e->model->num_classes;
    int rc = ensure_floats(&e->logits, &e->logits_cap, ncls);
    if (rc)
        return rc;
    if (!network_fits(e, t, r))
        return 0;
    double t0 = clock_ms();
    rc = network_run(e->net, t->data, 1, t->h, t->w, e->logits, eb);
    network_trim(e->net, ENGINE_KEEP_PLAN_BYTES);
    if (rc)
        return rc;
    r->infer_ms = clock_ms() - t0;
    engine_topk(e->logits, ncls, k, r->top);
    r->ntop = k < ncls ? k : ncls;
    return 0;
}

/* Decodes and preprocesses one image into t; a bad image only marks its own result. */
static void decode_one(engine *e, const engine_image *img, image_tensor *t, engine_result *r)
{
    memset(r, 0, sizeof *r);
    imgcls_errbuf ieb = {{0}};
    double t0 = clock_ms();
    r->rc = image_load_tensor(img->data, img->len, &e->cfg.limits, e->cfg.mode, t, &ieb);
    r->decode_ms = clock_ms() - t0;
    if (r->rc)
        snprintf(r->error, sizeof r->error, "%s%s", ieb.msg[0] ? ieb.msg : imgcls_strerror(r->rc),
                 r->rc == IMGCLS_ETOOBIG && e->memory_caps_pixels && strstr(ieb.msg, "MP")
                     ? " (the memory limit per image, --max-image-mb)"
                     : "");
}

int engine_classify(engine *e, const engine_image *images, size_t n, size_t k, engine_result *results,
                    imgcls_errbuf *eb)
{
    if (n == 0 || n > NETWORK_MAX_BATCH || k == 0 || k > ENGINE_MAX_TOP)
        return imgcls_fail(eb, IMGCLS_EINVAL, "classify needs 1..%d images and 1..%d classes", NETWORK_MAX_BATCH,
                           ENGINE_MAX_TOP);
    int rc = 0;
    /* Image by image, so each tensor is still in cache when the network reads it. */
    for (size_t i = 0; i < n && !rc; i++) {
        image_tensor t = {0};
        decode_one(e, &images[i], &t, &results[i]);
        if (!results[i].rc)
            rc = run_one(e, &t, k, &results[i], eb);
        image_tensor_free(&t);
    }
    return rc;
}
