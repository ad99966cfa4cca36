#include "common/buf.h"

#include "common/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void buf_init(imgcls_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

static int buf_reserve(imgcls_buf *b, size_t need)
{
    if (need + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need + 1)
        cap = cap > b->max / 2 ? b->max + 1 : cap * 2;
    unsigned char *p = realloc(b->data, cap);
    if (!p)
        return IMGCLS_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int buf_append(imgcls_buf *b, const void *p, size_t n)
{
    if (n > b->max - b->len)
        return IMGCLS_ETOOBIG;
    int rc = buf_reserve(b, b->len + n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return 0;
}

int buf_printf(imgcls_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return IMGCLS_EINVAL;
    if ((size_t)n > b->max - b->len)
        return IMGCLS_ETOOBIG;
    int rc = buf_reserve(b, b->len + (size_t)n);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void buf_reset(imgcls_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = 0;
}

void buf_free(imgcls_buf *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int buf_read_file(imgcls_buf *b, const char *path, size_t max)
{
    int rc = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno == ENOENT ? IMGCLS_ENOTFOUND : IMGCLS_EIO;
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && (unsigned long long)st.st_size > max) {
        rc = IMGCLS_ETOOBIG; /* refuse before reading a byte */
        goto out;
    }
    b->max = max;
    unsigned char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        rc = buf_append(b, chunk, n);
        if (rc)
            goto out;
    }
    if (ferror(f))
        rc = IMGCLS_EIO;
out:
    fclose(f);
    return rc;
}
