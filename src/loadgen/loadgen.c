/* imgcls loadgen: send N image uploads to the web tier and summarise how it coped.
 *
 *   imgcls loadgen --num_request 100 --url http://127.0.0.1:8000/ --image_folder imagenet-100/
 *
 * The flags keep the original generator's names, underscores included, so its invocations work
 * unchanged. Which image request i sends is loadgen_pick (round-robin by default, --seed for a
 * reproducible random choice). Everything is read before the first request; then one thread drives all
 * transfers (run.c) and the summary goes to stdout (report.c). */
#include "loadgen/loadgen.h"

#include "common/config.h"
#include "common/log.h"
#include "loadgen/expect.h"
#include "loadgen/images.h"
#include "loadgen/report.h"
#include "loadgen/run.h"
#include "loadgen/stats.h"

#include <curl/curl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#define LOADGEN_MAX_REQUESTS 10000000ul
#define LOADGEN_MAX_CONCURRENCY 10000ul
#define LOADGEN_SPARE_FDS 64 /* stdio, the image and CSV files while read, curl's wake-up pipe */

typedef struct loadgen_opts {
    const char *url, *image_folder, *expect;
    unsigned long num_request, concurrency, timeout, seed;
    bool json, verbose;
} loadgen_opts;

static const char USAGE[] =
    "usage: imgcls loadgen --num_request N --url URL --image_folder DIR [options]\n\n"
    "POSTs N images from DIR (*.jpg, *.jpeg, *.png) to URL as multipart/form-data field \"myfile\",\n"
    "--concurrency at a time, and prints a summary: counts, errors by kind, throughput, latency percentiles\n"
    "of the successful requests and, with --expect, accuracy. Images are taken round-robin in name order,\n"
    "or at random (with replacement, reproducibly) when --seed is not 0. Progress goes to stderr.\n"
    "Exit status: 0 when every request got 200, 1 when any failed (they are listed), 2 for a usage error,\n"
    "128 + the signal when SIGINT (Ctrl-C) or SIGTERM stopped the run (the summary covers what completed).";

static size_t options(loadgen_opts *o, config_opt *t)
{
    config_opt opts[] = {
        {"num_request", CONFIG_UINT, NULL, "requests to send (required)", 1, LOADGEN_MAX_REQUESTS,
         &o->num_request},
        {"url", CONFIG_STR, NULL, "where to POST, e.g. http://127.0.0.1:8000/ (required)", 0, 0, &o->url},
        {"image_folder", CONFIG_STR, NULL, "folder of JPEG/PNG images to send (required)", 0, 0, &o->image_folder},
        {"concurrency", CONFIG_UINT, "0", "requests in flight at once; 0 = all at once (up to 10000)", 0,
         LOADGEN_MAX_CONCURRENCY, &o->concurrency},
        {"expect", CONFIG_STR, NULL, "CSV of name,label rows (name without extension) to score accuracy", 0, 0,
         &o->expect},
        {"request-timeout", CONFIG_UINT, "330", "seconds one request may take, connect included", 1, 86400, &o->timeout},
        {"seed", CONFIG_UINT, "0", "0 = images round-robin in name order; else random choice with this seed", 0,
         LONG_MAX, &o->seed},
        {"json", CONFIG_BOOL, NULL, "print the summary as one JSON object", 0, 0, &o->json},
        {"verbose", CONFIG_BOOL, NULL, "also print NAME:LABEL per answer (a JSON line each with --json)", 0, 0,
         &o->verbose},
    };
    memcpy(t, opts, sizeof opts);
    return sizeof opts / sizeof *opts;
}

/* Checks what the table cannot: required flags, the URL's scheme, stray arguments. */
static int validate(const loadgen_opts *o, const config_args *args, imgcls_errbuf *eb)
{
    if (args->npositional > 0)
        return imgcls_fail(eb, IMGCLS_EINVAL, "unexpected argument '%s' (see --help)", args->positional[0]);
    if (o->num_request == 0)
        return imgcls_fail(eb, IMGCLS_EINVAL, "--num_request is required (see --help)");
    if (!o->url || !o->url[0])
        return imgcls_fail(eb, IMGCLS_EINVAL, "--url is required (see --help)");
    if (strncasecmp(o->url, "http://", 7) != 0 && strncasecmp(o->url, "https://", 8) != 0)
        return imgcls_fail(eb, IMGCLS_EINVAL, "--url must start with http:// or https://, not '%s'", o->url);
    if (!o->image_folder || !o->image_folder[0])
        return imgcls_fail(eb, IMGCLS_EINVAL, "--image_folder is required (see --help)");
    return 0;
}

/* Each transfer holds a socket, so C in flight needs about C + LOADGEN_SPARE_FDS descriptors. Raises
 * the soft limit as far as the hard limit allows and returns the concurrency that fits. */
static size_t fit_open_files(size_t want)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)want + LOADGEN_SPARE_FDS;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
        return want;
    rlim_t target = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need ? rl.rlim_max : need;
    rl.rlim_cur = target;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 && getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1;
    if (rl.rlim_cur >= need)
        return want;
    size_t fit = rl.rlim_cur > LOADGEN_SPARE_FDS + 1 ? (size_t)(rl.rlim_cur - LOADGEN_SPARE_FDS) : 1;
    log_event("warn", "loadgen", "concurrency_limited want=%zu got=%zu nofile_hard=%llu", want, fit,
              (unsigned long long)rl.rlim_max);
    return fit;
}

/* Scans the folder, attaches the expected labels and reads the images the plan will send. */
static int prepare(const loadgen_opts *o, loadgen_images *imgs, loadgen_expect *exp, imgcls_errbuf *eb)
{
    int rc = loadgen_images_scan(imgs, o->image_folder, eb);
    if (rc)
        return rc;
    if (o->expect) {
        rc = loadgen_expect_load(exp, o->expect, eb);
        if (rc)
            return rc;
        for (size_t i = 0; i < imgs->n; i++) {
            loadgen_image *img = &imgs->v[i];
            img->expected = loadgen_expect_find(exp, img->name, img->stem_len);
            if (!img->expected) /* a CSV keyed on the full file name works too */
                img->expected = loadgen_expect_find(exp, img->name, strlen(img->name));
        }
    }
    return loadgen_images_preload(imgs, o->num_request, o->seed, eb);
}

/* Runs the load and prints the summary. Returns the exit status. */
static int run_and_report(const loadgen_opts *o, const loadgen_images *imgs)
{
    size_t concurrency = o->concurrency ? o->concurrency : LOADGEN_MAX_CONCURRENCY;
    if (concurrency > o->num_request)
        concurrency = o->num_request;
    loadgen_plan plan = {.url = o->url,
                         .requests = o->num_request,
                         .concurrency = fit_open_files(concurrency),
                         .seed = o->seed,
                         .timeout_ms = (long)o->timeout * 1000,
                         .verbose = o->verbose,
                         .json = o->json,
                         .images = imgs};
    loadgen_stats st;
    imgcls_errbuf eb = {{0}};
    int status = 2;
    if (loadgen_stats_init(&st, o->num_request)) {
        fprintf(stderr, "imgcls loadgen: out of memory for %lu latencies\n", o->num_request);
        goto out;
    }
    if (loadgen_run(&plan, &st, &eb)) {
        fprintf(stderr, "imgcls loadgen: %s\n", eb.msg);
        goto out;
    }
    loadgen_report info = {
        .url = o->url, .concurrency = plan.concurrency, .seed = o->seed, .has_expect = o->expect != NULL};
    if (o->json)
        loadgen_report_json(stdout, &st, &info);
    else
        loadgen_report_text(stdout, &st, &info);
    status = st.interrupted ? 128 + st.interrupted : st.failed ? 1 : 0;
    if (st.interrupted)
        fprintf(stderr, "imgcls loadgen: stopped by signal %d after %zu of %zu requests\n", st.interrupted,
                st.completed, st.planned);
    if (st.failed)
        fprintf(stderr, "imgcls loadgen: %zu of %zu requests failed (listed in the summary)\n", st.failed,
                st.completed);
out:
    loadgen_stats_free(&st);
    return status;
}

int cli_loadgen(int argc, char **argv)
{
    loadgen_opts o;
    config_opt table[16];
    size_t nopts = options(&o, table);
    config_args args = {0};
    imgcls_errbuf eb = {{0}};
    loadgen_images imgs = {0};
    loadgen_expect exp = {0};
    int status = 2;
    if (config_parse(table, nopts, argc, argv, &args, &eb)) {
        fprintf(stderr, "imgcls loadgen: %s\n", eb.msg);
        return 2;
    }
    if (args.help) {
        config_print_help(stdout, USAGE, table, nopts);
        status = 0;
        goto out;
    }
    if (validate(&o, &args, &eb) || prepare(&o, &imgs, &exp, &eb)) {
        fprintf(stderr, "imgcls loadgen: %s\n", eb.msg);
        goto out;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "imgcls loadgen: cannot initialise libcurl\n");
        goto out;
    }
    status = run_and_report(&o, &imgs);
    curl_global_cleanup();
out:
    loadgen_images_free(&imgs);
    loadgen_expect_free(&exp);
    free(args.positional);
    return status;
}
