#include "loadgen/stats.h"

#include "common/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int loadgen_stats_init(loadgen_stats *st, size_t planned)
{
    memset(st, 0, sizeof *st);
    st->planned = planned;
    /* float, not double: 10^7 requests cost 40 MB, and microsecond resolution is far below the noise.
     * Exact percentiles from all samples were preferred to a histogram's approximation at that cost. */
    st->latency_ms = malloc((planned ? planned : 1) * sizeof *st->latency_ms);
    return st->latency_ms ? 0 : IMGCLS_ENOMEM;
}

void loadgen_stats_free(loadgen_stats *st)
{
    if (!st)
        return;
    free(st->latency_ms);
    st->latency_ms = NULL;
}

void loadgen_stats_ok(loadgen_stats *st, double ms)
{
    if (st->ok < st->planned)
        st->latency_ms[st->ok] = (float)ms;
    st->ok++;
    st->completed++;
}

static void count_kind(loadgen_stats *st, const char *kind)
{
    for (size_t i = 0; i < st->nkinds; i++) {
        if (strncmp(st->kinds[i].name, kind, sizeof st->kinds[i].name - 1) == 0) {
            st->kinds[i].count++;
            return;
        }
    }
    if (st->nkinds == LOADGEN_MAX_KINDS) {
        st->other_kinds++;
        return;
    }
    loadgen_error_kind *k = &st->kinds[st->nkinds++];
    snprintf(k->name, sizeof k->name, "%s", kind);
    k->count = 1;
}

void loadgen_stats_fail(loadgen_stats *st, size_t request, const char *file, const char *kind, const char *detail)
{
    st->failed++;
    st->completed++;
    count_kind(st, kind);
    if (st->nlisted == LOADGEN_MAX_LISTED)
        return;
    loadgen_failure *f = &st->listed[st->nlisted++];
    f->request = request;
    f->file = file;
    snprintf(f->kind, sizeof f->kind, "%s", kind);
    snprintf(f->detail, sizeof f->detail, "%s", detail ? detail : "");
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The smallest sample with at least p percent of the samples at or below it. */
static double rank(const float *v, size_t n, double p)
{
    double r = ceil(p / 100.0 * (double)n);
    size_t i = r < 1 ? 0 : (size_t)r - 1;
    return v[i < n ? i : n - 1];
}

void loadgen_stats_latency(loadgen_stats *st, loadgen_latency *out)
{
    memset(out, 0, sizeof *out);
    size_t n = st->ok < st->planned ? st->ok : st->planned;
    if (n == 0)
        return;
    qsort(st->latency_ms, n, sizeof *st->latency_ms, cmp_float);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += st->latency_ms[i];
    out->n = n;
    out->p50 = rank(st->latency_ms, n, 50);
    out->p95 = rank(st->latency_ms, n, 95);
    out->p99 = rank(st->latency_ms, n, 99);
    out->max = st->latency_ms[n - 1];
    out->mean = sum / (double)n;
}
