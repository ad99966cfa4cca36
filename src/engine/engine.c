#include "engine/engine.h"

#include "common/clock.h"
#include "engine/network.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xnnpack.h>

struct engine {
    engine_config cfg;
    model_file *model;
    network *net;
    float *batch_buf; /* reused between calls: n x h x w x 3 floats + slack */
    size_t batch_cap; /* in floats */
    float *logits;
    size_t logits_cap; /* in floats */
};

void engine_config_default(engine_config *cfg)
{
    cfg->model_path = NULL;
    cfg->threads = 1;
    cfg->mode = PREPROCESS_IMAGENET;
    cfg->limits.max_bytes = IMAGE_DEFAULT_MAX_BYTES;
    cfg->limits.max_pixels = IMAGE_DEFAULT_MAX_PIXELS;
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
    if (!e->cfg.model_path)
        e->cfg.model_path = engine_default_model_path();
    int rc = model_file_open(e->cfg.model_path, &e->model, eb);
    if (rc)
        goto out;
    rc = network_create(e->model, cfg->threads ? cfg->threads : 1, &e->net, eb);
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
    free(e->batch_buf);
    free(e->logits);
    free(e);
}

const model_file *engine_model(const engine *e)
{
    return e->model;
}

const char *engine_label(const engine *e, uint32_t index)
{
    return index < e->model->num_classes ? e->model->labels[index] : "?";
}

int engine_warm_up(engine *e, size_t n, imgcls_errbuf *eb)
{
    if (e->cfg.mode != PREPROCESS_IMAGENET)
        return 0; /* reference mode's shapes are not known until the images arrive */
    return network_prepare(e->net, n, IMAGE_CROP, IMAGE_CROP, eb);
}

/* Grows *buf to hold at least need floats plus XNNPACK's slack. */
static int ensure_floats(float **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    float *p = realloc(*buf, need * sizeof(float) + XNN_EXTRA_BYTES);
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

/* Runs the images whose tensors are in `tensors` (all good, all h x w) as one network batch. */
static int run_group(engine *e, image_tensor *tensors, const size_t *idx, size_t m, size_t k,
                     engine_result *results, imgcls_errbuf *eb)
{
    uint32_t h = tensors[idx[0]].h, w = tensors[idx[0]].w;
    size_t per = (size_t)h * w * 3, ncls = e->model->num_classes;
    int rc = ensure_floats(&e->batch_buf, &e->batch_cap, per * m);
    if (!rc)
        rc = ensure_floats(&e->logits, &e->logits_cap, ncls * m);
    if (rc)
        return rc;
    const float *input = tensors[idx[0]].data;
    if (m > 1) { /* one image runs straight from its own tensor; a batch needs them side by side */
        for (size_t j = 0; j < m; j++)
            memcpy(e->batch_buf + j * per, tensors[idx[j]].data, per * sizeof(float));
        input = e->batch_buf;
    }
    double t0 = clock_ms();
    rc = network_run(e->net, input, m, h, w, e->logits, eb);
    double ms = clock_ms() - t0;
    for (size_t j = 0; j < m && !rc; j++) {
        engine_result *r = &results[idx[j]];
        engine_topk(e->logits + j * ncls, ncls, k, r->top);
        r->ntop = k < ncls ? k : ncls;
        r->infer_ms = ms;
    }
    return rc;
}

/* Decodes every image; returns how many decoded. */
static size_t decode_all(engine *e, const engine_image *images, size_t n, image_tensor *tensors,
                         engine_result *results)
{
    size_t good = 0;
    for (size_t i = 0; i < n; i++) {
        engine_result *r = &results[i];
        memset(r, 0, sizeof *r);
        imgcls_errbuf ieb = {{0}};
        double t0 = clock_ms();
        r->rc = image_load_tensor(images[i].data, images[i].len, &e->cfg.limits, e->cfg.mode, &tensors[i], &ieb);
        r->decode_ms = clock_ms() - t0;
        if (r->rc)
            snprintf(r->error, sizeof r->error, "%s", ieb.msg[0] ? ieb.msg : imgcls_strerror(r->rc));
        else
            good++;
    }
    return good;
}

int engine_classify(engine *e, const engine_image *images, size_t n, size_t k, engine_result *results,
                    imgcls_errbuf *eb)
{
    if (n == 0 || n > NETWORK_MAX_BATCH || k == 0 || k > ENGINE_MAX_TOP)
        return imgcls_fail(eb, IMGCLS_EINVAL, "classify needs 1..%d images and 1..%d classes", NETWORK_MAX_BATCH,
                           ENGINE_MAX_TOP);
    int rc = 0;
    image_tensor *tensors = calloc(n, sizeof *tensors);
    size_t *idx = calloc(n, sizeof *idx);
    if (!tensors || !idx) {
        rc = IMGCLS_ENOMEM;
        goto out;
    }
    decode_all(e, images, n, tensors, results);
    /* Group the decoded images by size: in imagenet mode that is one group of all of them; in reference
     * mode, images of different sizes run separately. */
    for (size_t i = 0; i < n && !rc; i++) {
        if (results[i].rc || !tensors[i].data || results[i].ntop)
            continue;
        size_t m = 0;
        for (size_t j = i; j < n; j++)
            if (!results[j].rc && tensors[j].data && tensors[j].h == tensors[i].h && tensors[j].w == tensors[i].w)
                idx[m++] = j;
        rc = run_group(e, tensors, idx, m, k, results, eb);
    }
out:
    for (size_t i = 0; tensors && i < n; i++)
        image_tensor_free(&tensors[i]);
    free(tensors);
    free(idx);
    return rc;
}
