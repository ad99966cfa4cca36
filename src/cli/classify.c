/* imgcls classify: classify image files from the command line.
 *
 *   dog.jpg          ->  dog:Samoyed                  (NAME:LABEL, NAME = file name without extension)
 *   --json           ->  {"file":"dog.jpg","label":"Samoyed","index":258,"prob":0.87,"top":[...],"ms":{...},
 *                         "engine":{"runtime":"onednn","isa":"avx2","threads":1,"precision":"fp32"}}
 *
 * A file that cannot be read or decoded gets one line on stderr; the others still print, and the exit
 * status is 1 if any file failed. */
#include "cli/cli.h"

#include "common/buf.h"
#include "common/config.h"
#include "engine/engine.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct classify_opts {
    const char *model, *preprocess, *precision;
    unsigned long top, threads, batch, max_bytes, max_pixels, max_image_mb;
    bool json;
} classify_opts;

static const char USAGE[] =
    "usage: imgcls classify [--model FILE] [--preprocess imagenet|reference] [--top K] [--threads N]\n"
    "                       [--precision fp32|bf16|int8] [--json] FILE...\n\n"
    "Classifies each FILE (JPEG or PNG) with the ImageNet-1k network and prints NAME:LABEL per file,\n"
    "or one JSON object per line with --json.";

static size_t options(classify_opts *o, config_opt *t)
{
    config_opt opts[] = {
        {"model", CONFIG_STR, NULL, "weight file (default: $IMGCLS_MODEL or the model `make` builds)", 0, 0,
         &o->model},
        {"preprocess", CONFIG_STR, "imagenet", "imagenet (resize 256, crop 224, normalise) or reference", 0, 0,
         &o->preprocess},
        {"top", CONFIG_UINT, "5", "classes listed in --json output", 1, ENGINE_MAX_TOP, &o->top},
        {"threads", CONFIG_UINT, "1", "threads for the network", 1, 64, &o->threads},
        {"precision", CONFIG_STR, "fp32", ENGINE_PRECISION_HELP, 0, 0, &o->precision},
        {"batch", CONFIG_UINT, "1", "images run through the network together", 1, 64, &o->batch},
        {"max-bytes", CONFIG_UINT, "20971520", "largest image file accepted, in bytes", 1, 1ul << 31,
         &o->max_bytes},
        {"max-pixels", CONFIG_UINT, "40000000", "largest image accepted, in pixels (width x height)", 1,
         1ul << 32, &o->max_pixels},
        {"max-image-mb", CONFIG_UINT, "1024",
         "most memory one image may need (pixels, tensor, network activations), in MiB", 16, 1ul << 20,
         &o->max_image_mb},
        {"json", CONFIG_BOOL, NULL, "print one JSON object per file", 0, 0, &o->json},
    };
    memcpy(t, opts, sizeof opts);
    return sizeof opts / sizeof *opts;
}

/* "dir/test_0.JPEG" -> "test_0.JPEG" */
static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static void print_text(const engine *e, const char *path, const engine_result *r)
{
    const char *base = base_name(path);
    const char *dot = strrchr(base, '.');
    int namelen = dot && dot != base ? (int)(dot - base) : (int)strlen(base);
    printf("%.*s:%s\n", namelen, base, engine_label(e, r->top[0].index));
}

static void print_json(const engine *e, const char *path, const engine_result *r)
{
    json_t *top = json_array();
    for (size_t i = 0; i < r->ntop; i++)
        json_array_append_new(top, json_pack("{s:s, s:i, s:f}", "label", engine_label(e, r->top[i].index),
                                             "index", (json_int_t)r->top[i].index, "prob",
                                             (double)r->top[i].prob));
    network_info ni;
    engine_info(e, &ni);
    /* "engine" is one more key on each file's object, not a first line of its own: consumers that read
     * one object per file keep working. */
    json_t *obj = json_pack("{s:s, s:s, s:i, s:f, s:o, s:{s:f, s:f}, s:{s:s, s:s, s:i, s:s}}", "file",
                            base_name(path), "label", engine_label(e, r->top[0].index), "index",
                            (json_int_t)r->top[0].index, "prob", (double)r->top[0].prob, "top", top, "ms", "decode",
                            r->decode_ms, "infer", r->infer_ms, "engine", "runtime", ni.runtime, "isa", ni.isa,
                            "threads", (json_int_t)ni.threads, "precision", ni.precision);
    char *s = obj ? json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    if (s)
        printf("%s\n", s);
    free(s);
    json_decref(obj);
}

/* Reads, classifies and prints files[0..n). Returns how many failed, or a negative batch error. */
static int classify_batch(engine *e, const classify_opts *o, char **files, size_t n, imgcls_errbuf *eb)
{
    imgcls_buf bufs[64];
    engine_image imgs[64];
    engine_result res[64];
    size_t slot[64], m = 0;
    int failed = 0;
    for (size_t i = 0; i < n; i++) {
        buf_init(&bufs[i], o->max_bytes);
        int rc = buf_read_file(&bufs[i], files[i], o->max_bytes);
        if (rc) {
            fprintf(stderr, "imgcls: %s: %s\n", files[i],
                    rc == IMGCLS_ETOOBIG ? "file is over the size limit (--max-bytes)" : imgcls_strerror(rc));
            failed++;
            continue;
        }
        imgs[m] = (engine_image){bufs[i].data, bufs[i].len};
        slot[m++] = i;
    }
    int rc = m ? engine_classify(e, imgs, m, o->top, res, eb) : 0;
    for (size_t j = 0; j < m && !rc; j++) {
        const char *path = files[slot[j]];
        if (res[j].rc) {
            fprintf(stderr, "imgcls: %s: %s\n", path, res[j].error);
            failed++;
        } else if (o->json) {
            print_json(e, path, &res[j]);
        } else {
            print_text(e, path, &res[j]);
        }
    }
    fflush(stdout);
    for (size_t i = 0; i < n; i++)
        buf_free(&bufs[i]);
    return rc ? rc : failed;
}

int cli_classify(int argc, char **argv)
{
    classify_opts o;
    config_opt table[16];
    size_t nopts = options(&o, table);
    config_args args;
    imgcls_errbuf eb = {{0}};
    if (config_parse(table, nopts, argc, argv, &args, &eb)) {
        fprintf(stderr, "imgcls classify: %s\n", eb.msg);
        return 2;
    }
    int status = 0;
    engine *e = NULL;
    if (args.help || args.npositional == 0) {
        config_print_help(args.help ? stdout : stderr, USAGE, table, nopts);
        status = args.help ? 0 : 2;
        goto out;
    }
    engine_config cfg;
    engine_config_default(&cfg);
    cfg.model_path = o.model;
    cfg.threads = (unsigned)o.threads;
    cfg.limits.max_bytes = o.max_bytes;
    cfg.limits.max_pixels = o.max_pixels;
    cfg.max_memory = (size_t)o.max_image_mb << 20;
    if (preprocess_mode_parse(o.preprocess, &cfg.mode)) {
        fprintf(stderr, "imgcls classify: --preprocess must be imagenet or reference, not '%s'\n", o.preprocess);
        status = 2;
        goto out;
    }
    if (network_precision_parse(o.precision, &cfg.precision)) {
        fprintf(stderr, "imgcls classify: --precision must be fp32, bf16 or int8, not '%s'\n", o.precision);
        status = 2;
        goto out;
    }
    if (engine_open(&cfg, &e, &eb)) {
        fprintf(stderr, "imgcls classify: %s\n", eb.msg);
        status = 2;
        goto out;
    }
    for (int i = 0; i < args.npositional; i += (int)o.batch) {
        size_t n = (size_t)(args.npositional - i) < o.batch ? (size_t)(args.npositional - i) : o.batch;
        int rc = classify_batch(e, &o, args.positional + i, n, &eb);
        if (rc < 0) {
            fprintf(stderr, "imgcls classify: %s\n", eb.msg[0] ? eb.msg : imgcls_strerror(rc));
            status = 2;
            goto out;
        }
        if (rc > 0)
            status = 1;
    }
out:
    engine_close(e);
    free(args.positional);
    return status;
}
