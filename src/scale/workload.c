/* Workloads for the simulator (contract in workload.h). */
#include "scale/workload.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const BUILTINS[] = {"burst", "ramp", "spikes", "diurnal"};

bool workload_is_builtin(const char *name)
{
    for (size_t i = 0; name && i < sizeof BUILTINS / sizeof *BUILTINS; i++)
        if (strcmp(name, BUILTINS[i]) == 0)
            return true;
    return false;
}

/* The diurnal curve: rate(t) = LOW + (HIGH - LOW) (1 - cos(2 pi t / DAY)) / 2, so its integral is
 * N(t) = LOW t + (HIGH - LOW) / 2 (t - DAY / (2 pi) sin(2 pi t / DAY)). */
#define DIURNAL_DAY_S 1440.0
#define DIURNAL_LOW 2.0
#define DIURNAL_HIGH 100.0

static double diurnal_count(double t)
{
    const double pi = 3.14159265358979323846;
    double w = 2 * pi / DIURNAL_DAY_S;
    return DIURNAL_LOW * t + (DIURNAL_HIGH - DIURNAL_LOW) / 2 * (t - sin(w * t) / w);
}

/* Arrival i at N^-1(i + 1/2), by bisection: the rate never falls below LOW, so the next arrival is at
 * most 1/LOW after the previous one. */
static void diurnal_fill(double *t, size_t n)
{
    double prev = 0;
    for (size_t i = 0; i < n; i++) {
        double target = (double)i + 0.5, lo = prev, hi = prev + 1.0 / DIURNAL_LOW;
        for (int it = 0; it < 48; it++) {
            double mid = (lo + hi) / 2;
            if (diurnal_count(mid) < target)
                lo = mid;
            else
                hi = mid;
        }
        t[i] = prev = hi;
    }
}

int workload_builtin(const char *name, workload *w, imgcls_errbuf *eb)
{
    memset(w, 0, sizeof *w);
    size_t n = 0;
    if (!workload_is_builtin(name))
        return imgcls_fail(eb, IMGCLS_EINVAL, "unknown workload '%s' (burst, ramp, spikes, diurnal)",
                           name ? name : "");
    if (strcmp(name, "burst") == 0)
        n = 100;
    else if (strcmp(name, "ramp") == 0)
        n = 12000; /* 200 img/s x 120 s / 2 */
    else if (strcmp(name, "spikes") == 0)
        n = 5 * 200;
    else
        n = (size_t)lround(DIURNAL_DAY_S * (DIURNAL_LOW + DIURNAL_HIGH) / 2);
    w->t = malloc(n * sizeof *w->t);
    if (!w->t)
        return IMGCLS_ENOMEM;
    w->n = n;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(name, "burst") == 0)
            w->t[i] = 0.1 * (double)i / (double)n;
        else if (strcmp(name, "ramp") == 0) /* N(t) = 200 t^2 / 240, arrival i at N^-1(i + 1) */
            w->t[i] = sqrt(1.2 * (double)(i + 1));
        else if (strcmp(name, "spikes") == 0)
            w->t[i] = 60.0 * (double)(i / 200) + 0.1 * (double)(i % 200) / 200.0;
    }
    if (strcmp(name, "diurnal") == 0)
        diurnal_fill(w->t, n);
    return 0;
}

/* ---- CSV ---- */

/* Reads one line into buf (without its "\n"). Returns 1 for a line, 0 at the end of the file, or a
 * negative error: IMGCLS_ETOOBIG for a line over WORKLOAD_MAX_LINE bytes, IMGCLS_EFORMAT for a NUL
 * byte (which would otherwise cut the line short unseen), IMGCLS_EIO for a read error. */
static int read_line(FILE *f, char *buf, size_t *len)
{
    size_t n = 0;
    int c;
    while ((c = getc_unlocked(f)) != EOF && c != '\n') {
        if (c == 0)
            return IMGCLS_EFORMAT;
        if (n == WORKLOAD_MAX_LINE)
            return IMGCLS_ETOOBIG;
        buf[n++] = (char)c;
    }
    if (ferror(f))
        return IMGCLS_EIO;
    buf[n] = 0;
    *len = n;
    return c == EOF && n == 0 ? 0 : 1;
}

/* Trims blanks and a "\r" at both ends, in place. */
static char *trim(char *s, size_t len)
{
    while (len && (isspace((unsigned char)s[len - 1])))
        s[--len] = 0;
    while (*s && isspace((unsigned char)*s))
        s++;
    return s;
}

/* A plain decimal number (digits, '.', sign, exponent: no "nan", "inf" or hex), finite, in range. */
static int parse_time(const char *s, double *out)
{
    if (!*s || strspn(s, "0123456789.eE+-") != strlen(s))
        return IMGCLS_EFORMAT;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno || !isfinite(v) || v < 0 || v > WORKLOAD_MAX_TIME_S)
        return IMGCLS_EFORMAT;
    *out = v;
    return 0;
}

static int push(workload *w, size_t *cap, double v)
{
    if (w->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 4096;
        double *t = realloc(w->t, ncap * sizeof *t);
        if (!t)
            return IMGCLS_ENOMEM;
        w->t = t;
        *cap = ncap;
    }
    w->t[w->n++] = v;
    return 0;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* One line of the file: a header (first line only), nothing (blank), or a time. */
static int csv_line(workload *w, size_t *cap, char *raw, size_t len, unsigned long lineno, const char *path,
                    imgcls_errbuf *eb)
{
    if (lineno == 1 && len >= 3 && memcmp(raw, "\xEF\xBB\xBF", 3) == 0) /* a UTF-8 byte order mark */
        raw += 3, len -= 3;
    char *s = trim(raw, len);
    if (!*s)
        return 0;
    /* A header must look like one (start with a letter or a quote), so that a mangled first number
     * such as "12x" is an error rather than silently skipped. */
    if (lineno == 1 && (isalpha((unsigned char)*s) || *s == '"'))
        return 0;
    double v;
    if (parse_time(s, &v))
        return imgcls_fail(eb, IMGCLS_EFORMAT,
                           "%s:%lu: '%.40s' is not an arrival time (one number of seconds per line, finite, "
                           "0 to %g)",
                           path, lineno, s, WORKLOAD_MAX_TIME_S);
    if (w->n == WORKLOAD_MAX_LINES)
        return imgcls_fail(eb, IMGCLS_ETOOBIG, "%s:%lu: more than %u arrival times", path, lineno,
                           WORKLOAD_MAX_LINES);
    return push(w, cap, v);
}

int workload_read_csv(const char *path, workload *w, imgcls_errbuf *eb)
{
    memset(w, 0, sizeof *w);
    int rc = 0;
    size_t cap = 0;
    char buf[WORKLOAD_MAX_LINE + 1];
    FILE *f = fopen(path, "r");
    if (!f)
        return imgcls_fail(eb, IMGCLS_EIO, "%s: %s", path, strerror(errno));
    for (unsigned long lineno = 1;; lineno++) {
        size_t len = 0;
        int got = read_line(f, buf, &len);
        if (got == IMGCLS_ETOOBIG)
            rc = imgcls_fail(eb, IMGCLS_EFORMAT, "%s:%lu: line longer than %d bytes", path, lineno,
                             WORKLOAD_MAX_LINE);
        else if (got == IMGCLS_EFORMAT)
            rc = imgcls_fail(eb, IMGCLS_EFORMAT, "%s:%lu: a NUL byte (not a text file?)", path, lineno);
        else if (got < 0)
            rc = imgcls_fail(eb, IMGCLS_EIO, "%s: read error", path);
        else if (got > 0)
            rc = csv_line(w, &cap, buf, len, lineno, path, eb);
        if (rc || got == 0)
            break;
    }
    if (!rc && w->n == 0)
        rc = imgcls_fail(eb, IMGCLS_EEMPTY, "%s: no arrival times", path);
    if (rc)
        goto out;
    for (size_t i = 1; i < w->n && !w->was_sorted; i++)
        w->was_sorted = w->t[i] < w->t[i - 1];
    if (w->was_sorted)
        qsort(w->t, w->n, sizeof *w->t, cmp_double);
out:
    fclose(f);
    if (rc)
        workload_free(w);
    return rc;
}

void workload_free(workload *w)
{
    if (!w)
        return;
    free(w->t);
    w->t = NULL;
    w->n = 0;
}
