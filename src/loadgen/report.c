#include "loadgen/report.h"

#include "common/error.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A JSON string for text from the network, which need not be UTF-8: jansson refuses invalid UTF-8,
 * so such text is sent again with every non-ASCII byte replaced by '?'. NULL only when out of memory. */
static json_t *json_text(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    size_t n = strlen(s);
    char *copy = malloc(n + 1);
    if (!copy)
        return NULL;
    for (size_t i = 0; i <= n; i++)
        copy[i] = (unsigned char)s[i] >= 0x80 ? '?' : s[i];
    j = json_string(copy);
    free(copy);
    return j;
}

/* Milliseconds to three decimals: more digits are noise. Printed with 12 significant digits, since
 * jansson's default %.17g turns 0.857 into 0.85699999999999998. */
static json_t *json_ms(double ms)
{
    return json_real(round(ms * 1000.0) / 1000.0);
}

static void print_json_line(FILE *f, json_t *obj)
{
    char *s = obj ? json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(12)) : NULL;
    if (s)
        fprintf(f, "%s\n", s);
    free(s);
    json_decref(obj);
}

void loadgen_print_answer(FILE *f, const char *name, size_t stem_len, const char *label, bool json)
{
    if (!json) {
        fprintf(f, "%.*s:%s\n", (int)stem_len, name, label);
        return;
    }
    json_t *obj = json_object();
    if (obj) {
        json_object_set_new(obj, "file", json_text(name));
        json_object_set_new(obj, "name", json_stringn(name, stem_len));
        json_object_set_new(obj, "label", json_text(label));
    }
    print_json_line(f, obj);
}

static double rate(const loadgen_stats *st)
{
    return st->elapsed_ms > 0 ? (double)st->completed * 1000.0 / st->elapsed_ms : 0;
}

static void text_failures(FILE *f, const loadgen_stats *st)
{
    if (!st->failed)
        return;
    fprintf(f, "failed:\n");
    for (size_t i = 0; i < st->nlisted; i++) {
        const loadgen_failure *x = &st->listed[i];
        fprintf(f, "  request %zu %s: %s%s%s\n", x->request, x->file, x->kind, x->detail[0] ? ": " : "",
                x->detail);
    }
    if (st->failed > st->nlisted)
        fprintf(f, "  ... and %zu more (counted by kind under errors)\n", st->failed - st->nlisted);
}

void loadgen_report_text(FILE *f, loadgen_stats *st, const loadgen_report *info)
{
    loadgen_latency lat;
    loadgen_stats_latency(st, &lat);
    fprintf(f, "requests:    %zu\n", st->planned);
    fprintf(f, "completed:   %zu%s\n", st->completed, st->interrupted ? " (interrupted)" : "");
    fprintf(f, "ok:          %zu\n", st->ok);
    fprintf(f, "errors:      %zu\n", st->failed);
    for (size_t i = 0; i < st->nkinds; i++)
        fprintf(f, "  %s: %zu\n", st->kinds[i].name, st->kinds[i].count);
    if (st->other_kinds)
        fprintf(f, "  other: %zu\n", st->other_kinds);
    fprintf(f, "elapsed:     %.3f s\n", st->elapsed_ms / 1000.0);
    fprintf(f, "throughput:  %.1f req/s\n", rate(st));
    if (lat.n)
        fprintf(f, "latency ms:  p50 %.1f  p95 %.1f  p99 %.1f  max %.1f  mean %.1f\n", lat.p50, lat.p95, lat.p99,
                lat.max, lat.mean);
    else
        fprintf(f, "latency ms:  - (no request succeeded)\n");
    if (info->has_expect && st->checked)
        fprintf(f, "accuracy:    %.4f (%zu/%zu)\n", (double)st->correct / (double)st->checked, st->correct,
                st->checked);
    else if (info->has_expect)
        fprintf(f, "accuracy:    - (no answer for an image listed in --expect)\n");
    text_failures(f, st);
    fflush(f);
}

static json_t *json_latency(const loadgen_latency *lat)
{
    if (!lat->n)
        return json_null();
    return json_pack("{s:I, s:o, s:o, s:o, s:o, s:o}", "n", (json_int_t)lat->n, "p50", json_ms(lat->p50), "p95",
                     json_ms(lat->p95), "p99", json_ms(lat->p99), "max", json_ms(lat->max), "mean",
                     json_ms(lat->mean));
}

static json_t *json_failures(const loadgen_stats *st)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < st->nlisted; i++) {
        const loadgen_failure *x = &st->listed[i];
        json_array_append_new(arr, json_pack("{s:I, s:o, s:o, s:o}", "request", (json_int_t)x->request, "file",
                                             json_text(x->file), "error", json_text(x->kind), "detail",
                                             json_text(x->detail)));
    }
    return arr;
}

static json_t *json_kinds(const loadgen_stats *st)
{
    json_t *obj = json_object();
    for (size_t i = 0; obj && i < st->nkinds; i++)
        json_object_set_new(obj, st->kinds[i].name, json_integer((json_int_t)st->kinds[i].count));
    if (obj && st->other_kinds)
        json_object_set_new(obj, "other", json_integer((json_int_t)st->other_kinds));
    return obj;
}

int loadgen_report_json(FILE *f, loadgen_stats *st, const loadgen_report *info)
{
    loadgen_latency lat;
    loadgen_stats_latency(st, &lat);
    json_t *accuracy =
        info->has_expect && st->checked ? json_real((double)st->correct / (double)st->checked) : json_null();
    json_t *obj = json_pack(
        "{s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:I, s:I, s:o, s:I, s:b, s:o, s:I, s:o}", "requests",
        (json_int_t)st->planned, "completed", (json_int_t)st->completed, "ok", (json_int_t)st->ok, "errors",
        (json_int_t)st->failed, "errors_by_kind", json_kinds(st), "elapsed_s", json_ms(st->elapsed_ms / 1000.0),
        "throughput_rps", json_ms(rate(st)), "latency_ms", json_latency(&lat), "accuracy", accuracy, "correct",
        (json_int_t)st->correct, "checked", (json_int_t)st->checked, "failures", json_failures(st),
        "failures_not_listed", (json_int_t)(st->failed - st->nlisted), "interrupted", st->interrupted != 0, "url",
        json_text(info->url), "concurrency", (json_int_t)info->concurrency, "seed",
        json_integer((json_int_t)info->seed));
    if (!obj)
        return IMGCLS_ENOMEM;
    print_json_line(f, obj);
    fflush(f);
    return 0;
}
