#include "fleet/fleet.h"

#include "common/url.h"
#include "fleet/fleet_backend.h"

#include <string.h>

/* Scheme -> backend, fixed at build time (see queue.c for why a table). */
static const struct fleet_ops *const fleet_backends[] = {
    &fleet_local_ops,
    &fleet_asg_ops,
};

int fleet_open(const char *url, fleet **out, imgcls_errbuf *eb)
{
    char scheme[16];
    *out = NULL;
    if (!url || url_scheme(url, scheme, sizeof scheme))
        return imgcls_fail(eb, IMGCLS_EINVAL, "fleet: '%s' is not a URL", url ? url : "(null)");
    for (size_t i = 0; i < sizeof fleet_backends / sizeof *fleet_backends; i++)
        if (strcmp(fleet_backends[i]->scheme, scheme) == 0)
            return fleet_backends[i]->open(url, out, eb);
    return imgcls_fail(eb, IMGCLS_EUNSUPPORTED, "fleet: no backend for scheme '%s'", scheme);
}
