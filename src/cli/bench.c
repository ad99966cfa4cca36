/* imgcls bench: the C side of `make bench` (bench/bench.py runs ONNX Runtime and Pillow beside it on
 * the same inputs and prints the table). Each mode prints one JSON object with per-iteration times in
 * milliseconds; the driver takes medians and ratios.
 *
 *   imgcls bench network  [--threads N] [--iters N] [--input FILE.f32]   the network alone, batch 1
 *   imgcls bench pipeline [--threads N] [--iters N] FILE...              JPEG bytes to top-5
 *   imgcls bench decode   [--iters N] FILE...                            decode + preprocess only */
#include "cli/cli.h"

#include "common/buf.h"
#include "common/clock.h"
#include "common/config.h"
#include "engine/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct bench_opts {
    const char *model, *input, *precision;
    unsigned long threads, iters, warmup;
} bench_opts;

static const char USAGE[] =
    "usage: imgcls bench network|pipeline|decode [options] [FILE...]\n\n"
    "Times the engine and prints JSON with per-iteration milliseconds. `make bench` drives it.";

/* cpu_ms: this process's CPU time per iteration, warm-up included, engine start-up not: what the system
 * bench subtracts from the CPU a request costs the whole system. */
static void print_times(const char *mode, const engine *e, const double *ms, size_t n, unsigned long threads,
                        double cpu_ms)
{
    network_info ni = {"none", "none", "none", (unsigned)threads}; /* decode mode opens no engine */
    if (e)
        engine_info(e, &ni);
    printf("{\"mode\":\"%s\",\"threads\":%lu,\"runtime\":\"%s\",\"isa\":\"%s\",\"precision\":\"%s\","
           "\"cpu_ms\":%.4f,\"ms\":[",
           mode, threads, ni.runtime, ni.isa, ni.precision, cpu_ms);
    for (size_t i = 0; i < n; i++)
        printf("%s%.4f", i ? "," : "", ms[i]);
    printf("]}\n");
}

/* Fills the input from a raw float32 file of exactly 224*224*3 values, or with a fixed pattern. */
static int load_input(const char *path, float *x, size_t count, imgcls_errbuf *eb)
{
    if (!path) {
        uint32_t s = 12345;
        for (size_t i = 0; i < count; i++) {
            s = s * 1664525u + 1013904223u;
            x[i] = (float)(s >> 8) / 16777216.0f * 4.0f - 2.0f;
        }
        return 0;
    }
    imgcls_buf b;
    buf_init(&b, count * sizeof(float));
    int rc = buf_read_file(&b, path, count * sizeof(float));
    if (!rc && b.len != count * sizeof(float))
        rc = imgcls_fail(eb, IMGCLS_EINVAL, "%s: expected %zu float32 values", path, count);
    if (!rc)
        memcpy(x, b.data, b.len);
    buf_free(&b);
    return rc;
}

static int bench_network(engine *e, const bench_opts *o, double *ms, imgcls_errbuf *eb)
{
    size_t count = (size_t)IMAGE_CROP * IMAGE_CROP * 3;
    float *x = malloc(count * sizeof(float));
    float *logits = malloc(engine_model(e)->num_classes * sizeof(float));
    int rc = x && logits ? load_input(o->input, x, count, eb) : IMGCLS_ENOMEM;
    for (unsigned long i = 0; !rc && i < o->warmup + o->iters; i++) {
        double t0 = clock_ms();
        rc = engine_run_tensor(e, x, 1, IMAGE_CROP, IMAGE_CROP, logits, eb);
        if (i >= o->warmup)
            ms[i - o->warmup] = clock_ms() - t0;
    }
    free(x);
    free(logits);
    return rc;
}

/* Times each file in turn, round-robin, for iters rounds. decode_only skips the network. */
static int bench_files(engine *e, const bench_opts *o, char **files, int nfiles, int decode_only, double *ms,
                       imgcls_errbuf *eb)
{
    int rc = 0;
    imgcls_buf *bufs = calloc((size_t)nfiles, sizeof *bufs);
    if (!bufs)
        return IMGCLS_ENOMEM;
    for (int f = 0; f < nfiles && !rc; f++) {
        buf_init(&bufs[f], IMAGE_DEFAULT_MAX_BYTES);
        rc = buf_read_file(&bufs[f], files[f], IMAGE_DEFAULT_MAX_BYTES);
        if (rc)
            imgcls_fail(eb, rc, "%s: %s", files[f], imgcls_strerror(rc));
    }
    image_limits lim = {IMAGE_DEFAULT_MAX_BYTES, IMAGE_DEFAULT_MAX_PIXELS};
    size_t total = (o->warmup + o->iters) * (size_t)nfiles;
    for (size_t i = 0; !rc && i < total; i++) {
        const imgcls_buf *b = &bufs[i % (size_t)nfiles];
        double t0 = clock_ms();
        if (decode_only) {
            image_tensor t;
            rc = image_load_tensor(b->data, b->len, &lim, PREPROCESS_IMAGENET, &t, eb);
            image_tensor_free(&t);
        } else {
            engine_image img = {b->data, b->len};
            engine_result r;
            rc = engine_classify(e, &img, 1, 5, &r, eb);
            rc = rc ? rc : r.rc;
        }
        if (i >= o->warmup * (size_t)nfiles)
            ms[i - o->warmup * (size_t)nfiles] = clock_ms() - t0;
    }
    for (int f = 0; f < nfiles; f++)
        buf_free(&bufs[f]);
    free(bufs);
    return rc;
}

static int run_mode(const char *mode, const bench_opts *o, char **files, int nfiles, imgcls_errbuf *eb)
{
    int is_net = strcmp(mode, "network") == 0, is_pipe = strcmp(mode, "pipeline") == 0,
        is_dec = strcmp(mode, "decode") == 0;
    if (!is_net && !is_pipe && !is_dec)
        return imgcls_fail(eb, IMGCLS_EINVAL, "unknown mode '%s' (network, pipeline or decode)", mode);
    if (!is_net && nfiles == 0)
        return imgcls_fail(eb, IMGCLS_EINVAL, "%s needs image files", mode);
    size_t n = o->iters * (size_t)(is_net ? 1 : nfiles);
    double *ms = calloc(n, sizeof *ms);
    engine *e = NULL;
    engine_config cfg;
    engine_config_default(&cfg);
    cfg.model_path = o->model;
    cfg.threads = (unsigned)o->threads;
    int rc = ms ? 0 : IMGCLS_ENOMEM;
    if (!rc && network_precision_parse(o->precision, &cfg.precision))
        rc = imgcls_fail(eb, IMGCLS_EINVAL, "--precision must be fp32, bf16 or int8, not '%s'", o->precision);
    if (!rc && !is_dec)
        rc = engine_open(&cfg, &e, eb);
    struct timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    if (!rc)
        rc = is_net ? bench_network(e, o, ms, eb) : bench_files(e, o, files, nfiles, is_dec, ms, eb);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    double runs = (double)((o->warmup + o->iters) * (size_t)(is_net ? 1 : nfiles));
    double cpu_ms = ((double)(c1.tv_sec - c0.tv_sec) * 1e3 + (double)(c1.tv_nsec - c0.tv_nsec) / 1e6) / runs;
    if (!rc)
        print_times(mode, e, ms, n, o->threads, cpu_ms);
    engine_close(e);
    free(ms);
    return rc;
}

int cli_bench(int argc, char **argv)
{
    bench_opts o;
    config_opt table[] = {
        {"model", CONFIG_STR, NULL, "weight file", 0, 0, &o.model},
        {"input", CONFIG_STR, NULL, "network mode: raw float32 224x224x3 NHWC input", 0, 0, &o.input},
        {"threads", CONFIG_UINT, "1", "threads for the network", 1, 64, &o.threads},
        {"precision", CONFIG_STR, "fp32", ENGINE_PRECISION_HELP, 0, 0, &o.precision},
        {"iters", CONFIG_UINT, "50", "timed iterations", 1, 100000, &o.iters},
        {"warmup", CONFIG_UINT, "5", "untimed iterations first", 0, 100000, &o.warmup},
    };
    size_t nopts = sizeof table / sizeof *table;
    config_args args;
    imgcls_errbuf eb = {{0}};
    if (config_parse(table, nopts, argc, argv, &args, &eb)) {
        fprintf(stderr, "imgcls bench: %s\n", eb.msg);
        return 2;
    }
    int status = 0;
    if (args.help || args.npositional < 1) {
        config_print_help(args.help ? stdout : stderr, USAGE, table, nopts);
        status = args.help ? 0 : 2;
    } else if (run_mode(args.positional[0], &o, args.positional + 1, args.npositional - 1, &eb)) {
        fprintf(stderr, "imgcls bench: %s\n", eb.msg);
        status = 1;
    }
    free(args.positional);
    return status;
}
