/* The transfer loop: one thread, one curl multi handle, up to `concurrency` uploads in flight.
 *
 * Each request POSTs one image as multipart/form-data field "myfile" with filename = the image's file
 * name (DESIGN.md §3), straight from the preloaded bytes (no copy per request), and reads the
 * text/plain label into a body buffer bounded at LOADGEN_MAX_BODY. A slot that finishes starts the next
 * request at once, so the number in flight stays at `concurrency` until the plan runs out. */
#ifndef IMGCLS_LOADGEN_RUN_H
#define IMGCLS_LOADGEN_RUN_H

#include "common/error.h"
#include "loadgen/images.h"
#include "loadgen/stats.h"

#include <stdbool.h>
#include <stddef.h>

#define LOADGEN_MAX_BODY (64u * 1024)

typedef struct loadgen_plan {
    const char *url;
    size_t requests;    /* >= 1 */
    size_t concurrency; /* >= 1, and within the open-file limit */
    unsigned long seed; /* see loadgen_pick */
    long timeout_ms;    /* per request, connect included */
    bool verbose;       /* print "name:label" (or a JSON line with json) per answer on stdout */
    bool json;
    const loadgen_images *images; /* every image the plan picks is loaded */
} loadgen_plan;

/* Runs the plan, filling st (initialised by the caller for p->requests). Request failures -- HTTP
 * statuses other than 200, transport errors, timeouts, oversized answers -- are counted in st and are
 * not an error here. SIGINT or SIGTERM stops the run early: st->interrupted is set to the signal and
 * the requests still in flight are abandoned. Progress goes to stderr: a bar redrawn in place when
 * stderr is a terminal, otherwise a log line every 10%. Returns 0, or IMGCLS_ENOMEM / IMGCLS_EIO when
 * curl cannot be set up, with eb. */
int loadgen_run(const loadgen_plan *p, loadgen_stats *st, imgcls_errbuf *eb);

#endif
