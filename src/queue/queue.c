#include "queue/queue.h"

#include "common/url.h"
#include "queue/queue_backend.h"

#include <stdlib.h>
#include <string.h>

/* Scheme -> backend. A static table rather than run-time registration: the set of backends is known at
 * build time, and a table cannot be half-initialised when the first queue_open runs. */
static const struct queue_ops *const queue_backends[] = {
    &queue_sqlite_ops,
    &queue_fault_ops,
};

int queue_open(const char *url, queue **out, imgcls_errbuf *eb)
{
    char scheme[16];
    *out = NULL;
    if (!url || url_scheme(url, scheme, sizeof scheme))
        return imgcls_fail(eb, IMGCLS_EINVAL, "queue: '%s' is not a URL", url ? url : "(null)");
    for (size_t i = 0; i < sizeof queue_backends / sizeof *queue_backends; i++)
        if (strcmp(queue_backends[i]->scheme, scheme) == 0)
            return queue_backends[i]->open(url, out, eb);
    return imgcls_fail(eb, IMGCLS_EUNSUPPORTED, "queue: no backend for scheme '%s'", scheme);
}

void queue_msg_free(queue_msg *m)
{
    if (!m)
        return;
    free(m->body);
    m->body = NULL;
    m->len = 0;
}
