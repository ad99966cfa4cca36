/* One error vocabulary for all of imgcls (DESIGN.md §7).
 *
 * Functions return int: 0 on success, a negative IMGCLS_E* code otherwise. The codes, their names and
 * their messages are defined once, in IMGCLS_ERRNO_MAP, the way libuv does with UV_ERRNO_MAP. Details
 * such as an HTTP status or a file name go into an error buffer owned by the caller, never into errno. */
#ifndef IMGCLS_COMMON_ERROR_H
#define IMGCLS_COMMON_ERROR_H

#include <stddef.h>

#define IMGCLS_ERRNO_MAP(X)                                                     \
    X(EINVAL, 1, "invalid argument")                                            \
    X(ENOMEM, 2, "out of memory")                                               \
    X(EIO, 3, "input/output error")                                             \
    X(ETOOBIG, 4, "too large")                                                  \
    X(EFORMAT, 5, "not a decodable image")                                      \
    X(EUNSUPPORTED, 6, "unsupported")                                           \
    X(ENOTFOUND, 7, "not found")                                                \
    X(ETIMEDOUT, 8, "timed out")                                                \
    X(ECORRUPT, 9, "corrupt data")                                              \
    X(EBACKEND, 10, "backend failure")                                          \
    X(EBUSY, 11, "overloaded")                                                  \
    X(ECLOSED, 12, "closed")                                                    \
    X(EEMPTY, 13, "empty")

enum imgcls_error {
    IMGCLS_OK = 0,
#define IMGCLS_ERRNO_ENUM(name, code, msg) IMGCLS_##name = -(code),
    IMGCLS_ERRNO_MAP(IMGCLS_ERRNO_ENUM)
#undef IMGCLS_ERRNO_ENUM
};

/* "EINVAL" etc.; "UNKNOWN" for a code outside the map. Never NULL. */
const char *imgcls_err_name(int rc);
/* "invalid argument" etc. Never NULL. */
const char *imgcls_strerror(int rc);

/* A caller-owned buffer for the detail of the last error ("dog.jpg: truncated JPEG"). */
#define IMGCLS_ERRBUF_SIZE 256
typedef struct imgcls_errbuf {
    char msg[IMGCLS_ERRBUF_SIZE];
} imgcls_errbuf;

/* Formats the detail into eb (if eb is not NULL) and returns rc unchanged, so that a failing path can
 * read `return imgcls_fail(eb, IMGCLS_EFORMAT, "truncated JPEG");`. */
int imgcls_fail(imgcls_errbuf *eb, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
