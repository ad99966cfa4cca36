/* The fleet port (DESIGN.md §4): the app-tier workers as a whole, behind one interface for the local
 * process supervisor (`imgcls up`) and an EC2 Auto Scaling group (the [aws] issue).
 *
 * Two kinds of caller use it:
 *   the scaler   describe, set_desired: how many workers there are in each state, and how many there
 *                should be. set_desired is asynchronous, as it is on AWS: a new worker starts now and
 *                serves after its boot; a worker to remove is chosen by the backend, idle ones first,
 *                and it finishes its batch before it goes. Nothing waits here for either.
 *   a worker     report: whether it holds messages now (busy), and how many images it classified in how
 *                many busy seconds (the measured rate the policy plans with). A busy worker is never
 *                chosen for scale-in while an idle one exists; on AWS this is scale-in protection.
 *
 * A backend embeds `struct fleet` first. A handle is used by one thread at a time. Details of the last
 * failure are in f->err.msg. */
#ifndef IMGCLS_FLEET_FLEET_H
#define IMGCLS_FLEET_FLEET_H

#include "common/error.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct fleet_status {
    uint32_t running;       /* serving */
    uint32_t starting;      /* asked for, not serving yet (booting, loading the model) */
    uint32_t stopping;      /* asked to stop, finishing their batch */
    uint32_t busy;          /* running workers that hold messages now */
    uint32_t desired;       /* what the fleet was last told */
    double rate_per_worker; /* measured images per busy second of one worker; 0 when not measured yet */
    double boot_s;          /* measured time from start to serving; 0 when not measured yet */
} fleet_status;

typedef struct fleet fleet;

struct fleet_ops {
    const char *scheme; /* "local", "asg" */
    /* Opens the fleet named by url. *out is NULL on error. */
    int (*open)(const char *url, fleet **out, imgcls_errbuf *eb);
    void (*close)(fleet *f); /* accepts NULL */
    int (*describe)(fleet *f, fleet_status *out);
    /* Asks for n workers (the caller keeps n within its own bounds). */
    int (*set_desired)(fleet *f, uint32_t n);
    /* The calling worker's own state (the URL names the worker: see below). IMGCLS_EINVAL on a handle
     * that names no worker. */
    int (*report)(fleet *f, bool busy, uint32_t images, double busy_s);
};

struct fleet {
    const struct fleet_ops *ops;
    imgcls_errbuf err;
};

/* Opens a fleet by URL, choosing the backend by scheme. IMGCLS_EUNSUPPORTED for an unknown scheme.
 *
 * local://<path>[?slot=<n>]
 *   The table that `imgcls up` keeps at <path> (a small shared-memory file; fleet_local.h): the desired
 *   count, and one slot per worker process with its state, busy flag and counters. It must exist (up
 *   creates it). slot (1..FLEET_LOCAL_SLOTS) names the calling worker, for report.
 *
 * asg://<group>[?instance=<i-...>&protect_hold_s=<s>]
 *   An EC2 Auto Scaling group (fleet_asg.c; signing, credentials and endpoint as in aws/aws.h). running,
 *   starting and stopping are its instances' lifecycle states, busy the InService ones protected from
 *   scale-in. report protects the worker's own instance (instance=, else IMDS's instance-id) while it is
 *   busy, and lifts the protection after protect_hold_s (default 5) idle: Auto Scaling never scales in a
 *   protected instance, so a worker is never terminated mid-batch by a scale-in. */
int fleet_open(const char *url, fleet **out, imgcls_errbuf *eb);

static inline void fleet_close(fleet *f)
{
    if (f)
        f->ops->close(f);
}
static inline int fleet_describe(fleet *f, fleet_status *out)
{
    return f->ops->describe(f, out);
}
static inline int fleet_set_desired(fleet *f, uint32_t n)
{
    return f->ops->set_desired(f, n);
}
static inline int fleet_report(fleet *f, bool busy, uint32_t images, double busy_s)
{
    return f->ops->report(f, busy, images, busy_s);
}

#endif
