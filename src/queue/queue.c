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
    &queue_sqs_https_ops,
    &queue_sqs_http_ops,
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

/* Finds the queue's name in url: [*start, *end). */
static bool queue_name_span(const char *url, size_t *start, size_t *end)
{
    const char *q = strchr(url, '?');
    if (!q) {
        const char *slash = strrchr(url, '/');
        if (!slash)
            return false;
        *start = (size_t)(slash + 1 - url);
        *end = strlen(url);
        return true;
    }
    for (const char *p = q + 1; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
        if (strncmp(p, "queue=", 6) == 0) {
            *start = (size_t)(p + 6 - url);
            *end = *start + strcspn(p + 6, "&");
            return true;
        }
    }
    return false;
}

static bool queue_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 80 || (n >= 4 && memcmp(s + n - 4, "-dlq", 4) == 0))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

bool queue_url_is_sibling(const char *home, const char *other)
{
    char h[2048];
    if (!home || !other || strncmp(other, "fault:", 6) == 0)
        return false;
    if (strncmp(home, "fault:", 6) == 0)
        home += 6;
    size_t hn = strcspn(home, "#");
    if (hn >= sizeof h)
        return false;
    memcpy(h, home, hn);
    h[hn] = 0;
    size_t hs, he, os, oe;
    if (!queue_name_span(h, &hs, &he) || !queue_name_span(other, &os, &oe))
        return false;
    size_t hsuffix = hn - he, on = strlen(other);
    return os == hs && memcmp(h, other, hs) == 0 && on - oe == hsuffix && memcmp(h + he, other + oe, hsuffix) == 0 &&
           queue_name_ok(other + os, oe - os) && !(oe - os == he - hs && memcmp(h + hs, other + os, he - hs) == 0);
}

void queue_msg_free(queue_msg *m)
{
    if (!m)
        return;
    free(m->body);
    m->body = NULL;
    m->len = 0;
}
