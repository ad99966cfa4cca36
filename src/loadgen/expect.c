#include "loadgen/expect.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* Trims spaces from both ends of [s, s+len), then unwraps one pair of double quotes, turning "" into ".
 * Writes the result NUL-terminated in place and returns its start. */
static char *clean_field(char *s, size_t len)
{
    while (len && is_space(*s)) {
        s++;
        len--;
    }
    while (len && is_space(s[len - 1]))
        len--;
    if (len >= 2 && s[0] == '"' && s[len - 1] == '"') {
        s++;
        len -= 2;
        size_t j = 0;
        for (size_t i = 0; i < len; i++) {
            s[j++] = s[i];
            if (s[i] == '"' && i + 1 < len && s[i + 1] == '"')
                i++;
        }
        len = j;
    }
    s[len] = 0;
    return s;
}

/* The comma that ends the name field of the line [s, s+len): the first one, or for a quoted name
 * the first one after its closing quote. NULL when there is none. */
static char *name_end(char *s, size_t len)
{
    size_t i = 0;
    while (i < len && is_space(s[i]))
        i++;
    if (i < len && s[i] == '"') {
        for (i++; i < len; i++) {
            if (s[i] == '"' && i + 1 < len && s[i + 1] == '"')
                i++;
            else if (s[i] == '"')
                break;
        }
    }
    char *comma = i < len ? memchr(s + i, ',', len - i) : NULL;
    return comma;
}

static int cmp_row(const void *a, const void *b)
{
    const loadgen_expect_row *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->line > y->line) - (x->line < y->line);
}

/* Cuts the loaded text into rows. rows must have room for one row per line. */
static int parse_rows(loadgen_expect *e, const char *path, imgcls_errbuf *eb)
{
    if (!e->text.data)
        return 0; /* an empty file: no rows */
    char *p = (char *)e->text.data, *end = p + e->text.len;
    if (e->text.len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    for (size_t line = 1; p < end; line++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *eol = nl ? nl : end;
        size_t len = (size_t)(eol - p);
        size_t k = 0;
        while (k < len && is_space(p[k]))
            k++;
        if (k < len) {
            char *comma = name_end(p, len);
            if (!comma)
                return imgcls_fail(eb, IMGCLS_EFORMAT, "%s:%zu: expected name,label", path, line);
            e->rows[e->n].name = clean_field(p, (size_t)(comma - p));
            e->rows[e->n].label = clean_field(comma + 1, (size_t)(eol - comma - 1));
            e->rows[e->n].line = line;
            e->n++;
        }
        p = nl ? nl + 1 : end;
    }
    return 0;
}

int loadgen_expect_load(loadgen_expect *e, const char *path, imgcls_errbuf *eb)
{
    e->rows = NULL;
    e->n = 0;
    buf_init(&e->text, LOADGEN_MAX_EXPECT_BYTES);
    int rc = buf_read_file(&e->text, path, LOADGEN_MAX_EXPECT_BYTES);
    if (rc) {
        rc = imgcls_fail(eb, rc, "cannot read %s: %s", path,
                         rc == IMGCLS_ETOOBIG ? "larger than 64 MiB" : imgcls_strerror(rc));
        goto out;
    }
    size_t lines = 1;
    for (size_t i = 0; i < e->text.len; i++)
        lines += e->text.data[i] == '\n';
    e->rows = calloc(lines, sizeof *e->rows);
    if (!e->rows) {
        rc = IMGCLS_ENOMEM;
        goto out;
    }
    rc = parse_rows(e, path, eb);
    if (rc)
        goto out;
    qsort(e->rows, e->n, sizeof *e->rows, cmp_row);
out:
    if (rc)
        loadgen_expect_free(e);
    return rc;
}

const char *loadgen_expect_find(const loadgen_expect *e, const char *name, size_t len)
{
    /* Lower bound on name, so that of duplicate names the first (lowest line) row is found. */
    size_t lo = 0, hi = e->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *r = e->rows[mid].name;
        int c = strncmp(r, name, len);
        if (c == 0 && r[len] != 0)
            c = 1; /* r is longer than name, so sorts after it */
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < e->n && strncmp(e->rows[lo].name, name, len) == 0 && e->rows[lo].name[len] == 0)
        return e->rows[lo].label;
    return NULL;
}

void loadgen_expect_free(loadgen_expect *e)
{
    if (!e)
        return;
    buf_free(&e->text);
    free(e->rows);
    e->rows = NULL;
    e->n = 0;
}
