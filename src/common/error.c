#include "common/error.h"

#include <stdarg.h>
#include <stdio.h>

const char *imgcls_err_name(int rc)
{
    switch (rc) {
    case 0: return "OK";
#define IMGCLS_ERRNO_NAME(name, code, msg) case -(code): return #name;
        IMGCLS_ERRNO_MAP(IMGCLS_ERRNO_NAME)
#undef IMGCLS_ERRNO_NAME
    default: return "UNKNOWN";
    }
}

const char *imgcls_strerror(int rc)
{
    switch (rc) {
    case 0: return "success";
#define IMGCLS_ERRNO_MSG(name, code, msg) case -(code): return msg;
        IMGCLS_ERRNO_MAP(IMGCLS_ERRNO_MSG)
#undef IMGCLS_ERRNO_MSG
    default: return "unknown error";
    }
}

int imgcls_fail(imgcls_errbuf *eb, int rc, const char *fmt, ...)
{
    if (eb) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(eb->msg, sizeof eb->msg, fmt, ap);
        va_end(ap);
    }
    return rc;
}
