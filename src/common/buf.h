/* A growable byte buffer with a maximum fixed at creation (curl's dynbuf): every buffer that holds
 * outside input -- an upload body, a message, an HTTP response -- says up front how large it may get. */
#ifndef IMGCLS_COMMON_BUF_H
#define IMGCLS_COMMON_BUF_H

#include <stddef.h>

typedef struct imgcls_buf {
    unsigned char *data; /* NUL-terminated after every append, so text can be read in place */
    size_t len;
    size_t cap;
    size_t max; /* len never exceeds this */
} imgcls_buf;

/* Sets up an empty buffer that may grow to max bytes. Allocates nothing yet. */
void buf_init(imgcls_buf *b, size_t max);
/* Appends n bytes. Returns 0, IMGCLS_ETOOBIG if len + n > max (the buffer is unchanged), or
 * IMGCLS_ENOMEM. */
int buf_append(imgcls_buf *b, const void *p, size_t n);
/* Appends a formatted string; same returns as buf_append. */
int buf_printf(imgcls_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Empties the buffer, keeping its memory. */
void buf_reset(imgcls_buf *b);
/* Frees the memory; the buffer may be reused after buf_init. Accepts a zeroed or freed buffer. */
void buf_free(imgcls_buf *b);
/* Reads a whole file of at most max bytes into b (which must be freshly initialised). Returns 0,
 * IMGCLS_ENOTFOUND, IMGCLS_ETOOBIG or IMGCLS_EIO. */
int buf_read_file(imgcls_buf *b, const char *path, size_t max);

#endif
