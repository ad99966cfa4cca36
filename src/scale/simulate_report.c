/* What `imgcls simulate` writes (contract in simulate_report.h). */
#include "scale/simulate_report.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- summary table ---- */

enum { ROW_DRAIN, ROW_P50, ROW_P95, ROW_P99, ROW_COST, ROW_EXTRA, ROW_PEAK, ROW_ACTIONS, ROW_FIRST_OUT,
       ROW_SETTLED, NROWS };

static const char *const ROW_LABELS[NROWS] = {
    "time to drain (s)", "p50 latency (s)",      "p95 latency (s)", "p99 latency (s)",
    "worker-seconds",    "  above the minimum",  "peak workers",    "scaling actions",
    "first scale-out (s)", "settled at (s)",
};

static void cell_time(char *buf, size_t n, double v, const char *none)
{
    if (isnan(v))
        snprintf(buf, n, "%s", none);
    else
        snprintf(buf, n, "%.2f", v);
}

static void format_cell(char *buf, size_t n, const sim_report *r, const sim_result *res, int row)
{
    switch (row) {
    case ROW_DRAIN: cell_time(buf, n, res->drain_s, "not drained"); break;
    case ROW_P50: cell_time(buf, n, res->p50_s, "-"); break;
    case ROW_P95: cell_time(buf, n, res->p95_s, "-"); break;
    case ROW_P99: cell_time(buf, n, res->p99_s, "-"); break;
    case ROW_COST: snprintf(buf, n, "%.1f", res->worker_s); break;
    /* What the policy spent beyond the minimum the group keeps anyway over the same window. */
    case ROW_EXTRA: snprintf(buf, n, "%.1f", res->worker_s - (double)r->min * r->sp.until_s); break;
    case ROW_PEAK: snprintf(buf, n, "%u", res->peak_workers); break;
    case ROW_ACTIONS: snprintf(buf, n, "%u", res->actions); break;
    case ROW_FIRST_OUT: cell_time(buf, n, res->first_out_s, "never"); break;
    default: cell_time(buf, n, res->settle_s, "-"); break;
    }
}

static double first_arrival(const sim_report *r)
{
    return r->w->n ? r->w->t[0] : 0;
}

static double last_arrival(const sim_report *r)
{
    return r->w->n ? r->w->t[r->w->n - 1] : 0;
}

void sim_write_table(FILE *f, const sim_report *r)
{
    fprintf(f, "workload %s: %zu requests from %.3f to %.3f s\n", r->workload_name, r->w->n, first_arrival(r),
            last_arrival(r));
    fprintf(f, "model: boot %g s, service %g s per image, tick %g s, %u to %u workers, costed over 0 to %g s\n\n",
            r->sp.boot_s, r->sp.service_s, r->sp.tick_s, r->min, r->max, r->sp.until_s);
    fprintf(f, "%-22s", "");
    for (size_t i = 0; i < r->npolicies; i++)
        fprintf(f, " %13s", scale_policy_name(r->kinds[i]));
    fprintf(f, "\n");
    for (int row = 0; row < NROWS; row++) {
        fprintf(f, "%-22s", ROW_LABELS[row]);
        for (size_t i = 0; i < r->npolicies; i++) {
            char cell[32];
            format_cell(cell, sizeof cell, r, &r->results[i], row);
            fprintf(f, " %13s", cell);
        }
        fprintf(f, "\n");
    }
    for (size_t i = 0; i < r->npolicies; i++)
        if (r->results[i].completed < r->results[i].nrequests)
            fprintf(f, "%s: only %llu of %zu requests completed by %g s (raise --until or --max)\n",
                    scale_policy_name(r->kinds[i]), (unsigned long long)r->results[i].completed,
                    r->results[i].nrequests, r->sp.until_s);
}

/* ---- JSON ---- */

static json_t *json_time(double v)
{
    return isnan(v) ? json_null() : json_real(v);
}

int sim_write_json(FILE *f, const sim_report *r)
{
    for (size_t i = 0; i < r->npolicies; i++) {
        const sim_result *res = &r->results[i];
        json_t *o = json_pack("{s:s, s:o, s:o, s:o, s:o, s:f, s:I, s:I}", "policy", scale_policy_name(r->kinds[i]),
                              "drain_s", json_time(res->drain_s), "p50_s", json_time(res->p50_s), "p95_s",
                              json_time(res->p95_s), "p99_s", json_time(res->p99_s), "worker_s", res->worker_s,
                              "peak_workers", (json_int_t)res->peak_workers, "actions", (json_int_t)res->actions);
        char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9)) : NULL;
        json_decref(o);
        if (!s)
            return IMGCLS_ENOMEM;
        fprintf(f, "%s\n", s);
        free(s);
    }
    return 0;
}

/* ---- CSV ---- */

int sim_write_csv(FILE *f, const sim_report *r)
{
    fprintf(f, "t,policy,visible,in_flight,running,starting,busy,draining,desired,completed,mean_latency_s\n");
    for (size_t i = 0; i < r->npolicies; i++) {
        const char *name = scale_policy_name(r->kinds[i]);
        for (size_t k = 0; k < r->results[i].nticks; k++) {
            const sim_tick *t = &r->results[i].ticks[k];
            fprintf(f, "%.9g,%s,%llu,%llu,%u,%u,%u,%u,%u,%u,", t->t, name, (unsigned long long)t->visible,
                    (unsigned long long)t->in_flight, t->running, t->starting, t->busy, t->draining, t->desired,
                    t->completed);
            if (!isnan(t->mean_latency_s)) /* empty: nothing completed in that tick */
                fprintf(f, "%.6g", t->mean_latency_s);
            fputc('\n', f);
        }
    }
    return ferror(f) ? IMGCLS_EIO : 0;
}

/* ---- SVG ---- */

/* Layout, in SVG user units (pixels). */
#define SVG_W 960
#define SVG_ML 64.0  /* left margin: y-axis labels */
#define SVG_MR 24.0
#define SVG_PW (SVG_W - SVG_ML - SVG_MR)
#define SVG_TITLE_H 56.0
#define SVG_CAPTION_H 42.0
#define SVG_STRIP_H 78.0
#define SVG_STRIP_GAP 22.0
#define SVG_AXIS_H 34.0
#define SVG_PANEL_GAP 18.0
#define SVG_PANEL_H (SVG_CAPTION_H + 3 * SVG_STRIP_H + 2 * SVG_STRIP_GAP + SVG_AXIS_H)

#define COLOR_QUEUE "#c0392b"
#define COLOR_RUNNING "#1f5fa8"
#define COLOR_STARTING "#e08a00"
#define COLOR_LATENCY "#2e8b3e"

typedef double (*series_fn)(const sim_tick *t);

static double s_visible(const sim_tick *t) { return (double)t->visible; }
static double s_running(const sim_tick *t) { return (double)t->running; }
static double s_starting(const sim_tick *t) { return (double)t->starting; }
static double s_latency(const sim_tick *t) { return t->mean_latency_s; }

static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default:
            /* Control characters are not allowed in XML 1.0 text; a file name could carry them. */
            fputc((unsigned char)*s < 0x20 ? '?' : *s, f);
        }
    }
}

/* 1, 2 or 5 times a power of ten, at least x / 8: four to eight ticks over x. */
static double nice_step(double x)
{
    if (!(x > 0))
        return 1;
    double raw = x / 8, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

/* The smallest nice number (a whole number of nice steps) at or above x. */
static double nice_max(double x)
{
    if (!(x > 0))
        return 1;
    double step = nice_step(x);
    return ceil(x / step - 1e-9) * step;
}

typedef struct strip {
    double y0, h, vmax, xmax;
} strip;

static double sx(const strip *s, double t)
{
    return SVG_ML + (t > s->xmax ? s->xmax : t) / s->xmax * SVG_PW;
}

static double sy(const strip *s, double v)
{
    return s->y0 + s->h - (v > s->vmax ? s->vmax : v) / s->vmax * s->h;
}

/* A series as a step line, one bin per pixel column: a bin shows the highest value of the ticks in
 * it (a one-tick spike stays visible however long the run), or the last tick's value when it holds
 * none. A NAN value (latency of a tick where nothing completed) lifts the pen. */
static void svg_series(FILE *f, const sim_result *res, const strip *s, series_fn fn, const char *style)
{
    size_t nb = (size_t)SVG_PW, k = 0;
    double bw = s->xmax / (double)nb, last = NAN, prev = NAN;
    bool pen = false;
    fprintf(f, "<path fill=\"none\" %s d=\"", style);
    for (size_t b = 0; b <= nb; b++) {
        double t1 = (double)(b + 1) * bw, v = NAN;
        bool any = false;
        for (; k < res->nticks && res->ticks[k].t < t1; k++) {
            double x = fn(&res->ticks[k]);
            last = x;
            any = true;
            if (!isnan(x) && (isnan(v) || x > v))
                v = x;
        }
        if (!any)
            v = last;
        double x = sx(s, (double)b * bw);
        if (isnan(v) || b == nb) {
            if (pen)
                fprintf(f, "H%.1f", x);
            pen = false;
        } else if (!pen) {
            fprintf(f, "M%.1f %.1f", x, sy(s, v));
            pen = true;
        } else if (v != prev) {
            fprintf(f, "H%.1fV%.1f", x, sy(s, v));
        }
        prev = v;
    }
    fprintf(f, "\"/>\n");
}

/* The frame of one strip: its label (which names each line in its own colour, so no legend is
 * needed), the y-axis with 0 and the top value, and the x-axis with tick marks (labels only under the
 * last strip of a panel). */
static void svg_frame(FILE *f, const strip *s, const char *label_svg, const char *unit, bool x_labels)
{
    double yb = s->y0 + s->h;
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"lbl\">%s</text>\n", SVG_ML, s->y0 - 6, label_svg);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>\n", SVG_ML, s->y0,
            SVG_ML + SVG_PW, s->y0);
    fprintf(f, "<path class=\"axis\" d=\"M%.1f %.1fV%.1fH%.1f\"/>\n", SVG_ML, s->y0, yb, SVG_ML + SVG_PW);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"yl\">%g%s</text>\n", SVG_ML - 6, s->y0 + 4, s->vmax, unit);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"yl\">0</text>\n", SVG_ML - 6, yb + 4);
    double step = nice_step(s->xmax);
    for (double t = 0; t <= s->xmax * (1 + 1e-9); t += step) {
        double x = sx(s, t);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"axis\"/>\n", x, yb, x, yb + 4);
        if (x_labels)
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"xl\">%g</text>\n", x, yb + 16, t);
    }
    if (x_labels)
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"xt\">time (s)</text>\n", SVG_ML + SVG_PW / 2, yb + 30);
}

/* One line on what the policy does, from its defaults (the ones the simulator runs). */
static void policy_summary(char *buf, size_t n, scale_policy_kind k)
{
    scale_params p;
    scale_params_default(&p, k);
    switch (k) {
    case SCALE_BACKLOG:
        snprintf(buf, n,
                 "backlog per worker: enough workers to drain the queue within %g s, counting only workers that "
                 "arrive in time to help; scale-in after %g s lower",
                 p.target_drain_s, p.scale_in_window_s);
        break;
    case SCALE_THRESHOLD:
        snprintf(buf, n, "the original rule, checked every tick: +1 above %llu visible, -1 below %llu",
                 (unsigned long long)p.threshold_out_above, (unsigned long long)p.threshold_in_below);
        break;
    case SCALE_ALARM:
        snprintf(buf, n, "the original rule through CloudWatch: %g s data points, step scaling, %g s cooldown",
                 p.alarm_period_s, p.alarm_cooldown_s);
        break;
    }
}

typedef struct chart_scale {
    double xmax, qmax, wmax, lmax;
} chart_scale;

static void svg_panel(FILE *f, const sim_report *r, size_t i, double y0, const chart_scale *cs)
{
    const sim_result *res = &r->results[i];
    char drain[48];
    cell_time(drain, sizeof drain, res->drain_s, "not drained");
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"cap\">%s: drained in %s%s; latency p50 %.2f, p95 %.2f, "
               "p99 %.2f s; %.0f worker-s; peak %u workers; %u scaling actions</text>\n",
            SVG_ML - 48, y0 + 16, scale_policy_name(r->kinds[i]), drain, isnan(res->drain_s) ? "" : " s",
            res->p50_s, res->p95_s, res->p99_s, res->worker_s, res->peak_workers, res->actions);
    char what[256] = "";
    policy_summary(what, sizeof what, r->kinds[i]);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"sub\">%s</text>\n", SVG_ML - 48, y0 + 32, what);
    double top = y0 + SVG_CAPTION_H + 12;
    strip q = {top, SVG_STRIP_H, cs->qmax, cs->xmax};
    strip w = {top + SVG_STRIP_H + SVG_STRIP_GAP, SVG_STRIP_H, cs->wmax, cs->xmax};
    strip l = {top + 2 * (SVG_STRIP_H + SVG_STRIP_GAP), SVG_STRIP_H, cs->lmax, cs->xmax};
    svg_frame(f, &q, "<tspan fill=\"" COLOR_QUEUE "\">queue depth</tspan> (requests visible, not yet taken)", "",
              false);
    svg_series(f, res, &q, s_visible, "stroke=\"" COLOR_QUEUE "\" stroke-width=\"1.5\"");
    svg_frame(f, &w,
              "workers <tspan fill=\"" COLOR_RUNNING "\">running</tspan> and <tspan fill=\"" COLOR_STARTING
              "\">starting (booting, already paid for)</tspan>",
              "", false);
    svg_series(f, res, &w, s_starting, "stroke=\"" COLOR_STARTING "\" stroke-width=\"1.5\" stroke-dasharray=\"5 3\"");
    svg_series(f, res, &w, s_running, "stroke=\"" COLOR_RUNNING "\" stroke-width=\"2\"");
    svg_frame(f, &l, "<tspan fill=\"" COLOR_LATENCY "\">latency</tspan> (mean of the requests completed in each tick)",
              " s", true);
    svg_series(f, res, &l, s_latency, "stroke=\"" COLOR_LATENCY "\" stroke-width=\"1.5\"");
}

/* Shared scales, so that panels compare at a glance; time runs until the last policy settled (or
 * --chart-until), which shows each policy's paid tail of idle workers too. */
static chart_scale chart_scales(const sim_report *r)
{
    chart_scale cs = {0, 0, 0, 0};
    for (size_t i = 0; i < r->npolicies; i++) {
        const sim_result *res = &r->results[i];
        cs.xmax = fmax(cs.xmax, res->settle_s);
        for (size_t k = 0; k < res->nticks; k++) {
            const sim_tick *t = &res->ticks[k];
            cs.qmax = fmax(cs.qmax, (double)t->visible);
            cs.wmax = fmax(cs.wmax, fmax((double)t->running, (double)t->starting));
            if (!isnan(t->mean_latency_s))
                cs.lmax = fmax(cs.lmax, t->mean_latency_s);
        }
    }
    cs.xmax = r->chart_until_s > 0 ? r->chart_until_s : nice_max(fmax(cs.xmax * 1.05, last_arrival(r)));
    cs.xmax = fmin(cs.xmax, fmax(r->sp.until_s, 1e-3));
    cs.qmax = nice_max(cs.qmax);
    cs.wmax = nice_max(cs.wmax);
    cs.lmax = nice_max(cs.lmax);
    return cs;
}

int sim_write_svg(FILE *f, const sim_report *r)
{
    chart_scale cs = chart_scales(r);
    double h = SVG_TITLE_H + (double)r->npolicies * (SVG_PANEL_H + SVG_PANEL_GAP);
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%.0f\" viewBox=\"0 0 %d %.0f\">\n",
            SVG_W, h, SVG_W, h);
    fprintf(f, "<style>text{font-family:sans-serif;font-size:12px;fill:#222}.title{font-size:16px;"
               "font-weight:bold}.cap{font-size:13px;font-weight:bold}.sub{fill:#555}.lbl{font-size:11px}"
               ".yl{text-anchor:end;font-size:10px}.xl{text-anchor:middle;font-size:10px}"
               ".xt{text-anchor:middle;font-size:11px}.axis{stroke:#444;stroke-width:1;fill:none}"
               ".grid{stroke:#ddd;stroke-width:1}</style>\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"16\" y=\"24\" class=\"title\">imgcls simulate: workload ");
    xml_text(f, r->workload_name);
    fprintf(f, " (%zu requests)</text>\n", r->w->n);
    fprintf(f, "<text x=\"16\" y=\"42\" class=\"sub\">boot %g s, service %g s per image, controller tick %g s, "
               "%u to %u workers; one panel per policy, same scales in every panel</text>\n",
            r->sp.boot_s, r->sp.service_s, r->sp.tick_s, r->min, r->max);
    for (size_t i = 0; i < r->npolicies; i++) {
        double y0 = SVG_TITLE_H + (double)i * (SVG_PANEL_H + SVG_PANEL_GAP);
        fprintf(f, "<g>\n");
        svg_panel(f, r, i, y0, &cs);
        fprintf(f, "</g>\n");
    }
    fprintf(f, "</svg>\n");
    return ferror(f) ? IMGCLS_EIO : 0;
}
