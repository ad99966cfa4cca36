/* The local fleet: the shared table (fleet_local.h) and the `local://` backend on top of it. */
#include "fleet/fleet_local.h"

#include "fleet/fleet.h"
#include "fleet/fleet_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FLEET_TABLE_MAGIC 0x544c4649u /* "IFLT" */
#define FLEET_TABLE_VERSION 1u

typedef struct fleet_slot {
    _Atomic int32_t pid;
    _Atomic uint32_t state;
    _Atomic uint32_t busy;
    uint32_t pad;
    _Atomic uint64_t started_us; /* CLOCK_MONOTONIC, which every process on the machine shares */
    _Atomic uint64_t boot_us;    /* started -> first report; 0 until then */
    _Atomic uint64_t images;
    _Atomic uint64_t busy_us;
} fleet_slot;

typedef struct fleet_shared {
    uint32_t magic, version;
    _Atomic uint32_t desired;
    uint32_t nslots;
    fleet_slot slot[FLEET_LOCAL_SLOTS];
} fleet_shared;

struct fleet_table {
    fleet_shared *sh;
};

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int table_map(const char *path, bool create, uint32_t desired, fleet_table **out, imgcls_errbuf *eb)
{
    *out = NULL;
    int rc = 0;
    fleet_table *t = calloc(1, sizeof *t);
    int fd = open(path, create ? O_RDWR | O_CREAT | O_CLOEXEC : O_RDWR | O_CLOEXEC, 0644);
    struct stat st;
    if (!t) {
        rc = imgcls_fail(eb, IMGCLS_ENOMEM, "fleet: out of memory");
        goto out;
    }
    if (fd < 0 || (create && ftruncate(fd, sizeof(fleet_shared)) != 0) || fstat(fd, &st) != 0) {
        rc = imgcls_fail(eb, errno == ENOENT ? IMGCLS_ENOTFOUND : IMGCLS_EIO, "fleet: %s: %s", path, strerror(errno));
        goto out;
    }
    if ((size_t)st.st_size != sizeof(fleet_shared)) {
        rc = imgcls_fail(eb, IMGCLS_ECORRUPT, "fleet: %s is not a fleet table (%lld bytes)", path, (long long)st.st_size);
        goto out;
    }
    void *p = mmap(NULL, sizeof(fleet_shared), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        rc = imgcls_fail(eb, IMGCLS_EIO, "fleet: mmap %s: %s", path, strerror(errno));
        goto out;
    }
    t->sh = p;
    if (create) {
        memset(p, 0, sizeof(fleet_shared));
        t->sh->version = FLEET_TABLE_VERSION;
        t->sh->nslots = FLEET_LOCAL_SLOTS;
        atomic_store(&t->sh->desired, desired);
        t->sh->magic = FLEET_TABLE_MAGIC;
    } else if (t->sh->magic != FLEET_TABLE_MAGIC || t->sh->version != FLEET_TABLE_VERSION ||
               t->sh->nslots != FLEET_LOCAL_SLOTS) {
        rc = imgcls_fail(eb, IMGCLS_ECORRUPT, "fleet: %s is not a version %u fleet table", path, FLEET_TABLE_VERSION);
        goto out;
    }
    *out = t;
    t = NULL;
out:
    if (fd >= 0)
        close(fd); /* the mapping stays */
    fleet_table_close(t);
    return rc;
}

int fleet_table_create(const char *path, uint32_t desired, fleet_table **out, imgcls_errbuf *eb)
{
    return table_map(path, true, desired, out, eb);
}

int fleet_table_open(const char *path, fleet_table **out, imgcls_errbuf *eb)
{
    return table_map(path, false, 0, out, eb);
}

void fleet_table_close(fleet_table *t)
{
    if (!t)
        return;
    if (t->sh)
        munmap(t->sh, sizeof(fleet_shared));
    free(t);
}

uint32_t fleet_table_desired(const fleet_table *t)
{
    return atomic_load(&t->sh->desired);
}

void fleet_table_set_desired(fleet_table *t, uint32_t n)
{
    atomic_store(&t->sh->desired, n);
}

static fleet_slot *slot_of(const fleet_table *t, unsigned slot)
{
    return slot >= 1 && slot <= FLEET_LOCAL_SLOTS ? &t->sh->slot[slot - 1] : NULL;
}

enum fleet_slot_state fleet_table_state(const fleet_table *t, unsigned slot)
{
    fleet_slot *s = slot_of(t, slot);
    return s ? (enum fleet_slot_state)atomic_load(&s->state) : FLEET_SLOT_FREE;
}

bool fleet_table_busy(const fleet_table *t, unsigned slot)
{
    fleet_slot *s = slot_of(t, slot);
    return s && atomic_load(&s->busy);
}

void fleet_table_started(fleet_table *t, unsigned slot, pid_t pid)
{
    fleet_slot *s = slot_of(t, slot);
    if (!s)
        return;
    atomic_store(&s->busy, 0);
    atomic_store(&s->boot_us, 0);
    atomic_store(&s->started_us, mono_us());
    atomic_store(&s->pid, (int32_t)pid);
    atomic_store(&s->state, FLEET_SLOT_STARTING);
}

void fleet_table_stopping(fleet_table *t, unsigned slot)
{
    fleet_slot *s = slot_of(t, slot);
    if (s)
        atomic_store(&s->state, FLEET_SLOT_STOPPING);
}

void fleet_table_gone(fleet_table *t, unsigned slot)
{
    fleet_slot *s = slot_of(t, slot);
    if (!s)
        return;
    atomic_store(&s->state, FLEET_SLOT_FREE);
    atomic_store(&s->busy, 0);
    atomic_store(&s->pid, 0);
}

void fleet_table_report(fleet_table *t, unsigned slot, bool busy, uint32_t images, double busy_s)
{
    fleet_slot *s = slot_of(t, slot);
    if (!s)
        return;
    uint32_t starting = FLEET_SLOT_STARTING;
    if (atomic_compare_exchange_strong(&s->state, &starting, FLEET_SLOT_RUNNING))
        atomic_store(&s->boot_us, mono_us() - atomic_load(&s->started_us));
    atomic_fetch_add(&s->images, images);
    atomic_fetch_add(&s->busy_us, (uint64_t)(busy_s > 0 ? busy_s * 1e6 : 0));
    atomic_store(&s->busy, busy ? 1u : 0u);
}

void fleet_table_status(const fleet_table *t, fleet_status *out)
{
    memset(out, 0, sizeof *out);
    out->desired = fleet_table_desired(t);
    uint64_t images = 0, busy_us = 0, boot_us = 0, booted = 0;
    for (unsigned i = 1; i <= FLEET_LOCAL_SLOTS; i++) {
        fleet_slot *s = slot_of(t, i);
        switch (atomic_load(&s->state)) {
        case FLEET_SLOT_STARTING: out->starting++; break;
        case FLEET_SLOT_RUNNING: out->running++; out->busy += atomic_load(&s->busy) ? 1u : 0u; break;
        case FLEET_SLOT_STOPPING: out->stopping++; break;
        default: break;
        }
        images += atomic_load(&s->images);
        busy_us += atomic_load(&s->busy_us);
        uint64_t b = atomic_load(&s->boot_us);
        if (b) {
            boot_us += b;
            booted++;
        }
    }
    out->rate_per_worker = busy_us ? (double)images / ((double)busy_us / 1e6) : 0;
    out->boot_s = booted ? (double)boot_us / 1e6 / (double)booted : 0;
}

/* ---- the local:// backend ---- */

typedef struct local_fleet {
    struct fleet base; /* first, so that a fleet * is a local_fleet * */
    fleet_table *t;
    unsigned slot; /* 0: not a worker's handle */
} local_fleet;

static int lf_open(const char *url, fleet **out, imgcls_errbuf *eb)
{
    static const char prefix[] = "local://";
    char path[PATH_MAX];
    *out = NULL;
    if (strncmp(url, prefix, sizeof prefix - 1) != 0)
        return imgcls_fail(eb, IMGCLS_EINVAL, "fleet: URL must start with local://");
    const char *p = url + sizeof prefix - 1;
    size_t n = strcspn(p, "?");
    if (n == 0 || n >= sizeof path)
        return imgcls_fail(eb, IMGCLS_EINVAL, "fleet: '%s' needs the table's path", url);
    memcpy(path, p, n);
    path[n] = 0;
    unsigned long slot = 0;
    if (p[n]) {
        char *end = NULL;
        if (strncmp(p + n, "?slot=", 6) != 0 || (slot = strtoul(p + n + 6, &end, 10)) < 1 ||
            slot > FLEET_LOCAL_SLOTS || *end)
            return imgcls_fail(eb, IMGCLS_EINVAL, "fleet: '%s': the only parameter is slot=1..%d", url,
                               FLEET_LOCAL_SLOTS);
    }
    local_fleet *f = calloc(1, sizeof *f);
    if (!f)
        return imgcls_fail(eb, IMGCLS_ENOMEM, "fleet: out of memory");
    f->base.ops = &fleet_local_ops;
    f->slot = (unsigned)slot;
    int rc = fleet_table_open(path, &f->t, eb);
    if (rc) {
        free(f);
        return rc;
    }
    *out = &f->base;
    return 0;
}

static void lf_close(fleet *fb)
{
    local_fleet *f = (local_fleet *)fb;
    if (!f)
        return;
    fleet_table_close(f->t);
    free(f);
}

static int lf_describe(fleet *fb, fleet_status *out)
{
    fleet_table_status(((local_fleet *)fb)->t, out);
    return 0;
}

static int lf_set_desired(fleet *fb, uint32_t n)
{
    if (n > FLEET_LOCAL_SLOTS)
        return imgcls_fail(&fb->err, IMGCLS_EINVAL, "fleet: at most %d local workers", FLEET_LOCAL_SLOTS);
    fleet_table_set_desired(((local_fleet *)fb)->t, n);
    return 0;
}

static int lf_report(fleet *fb, bool busy, uint32_t images, double busy_s)
{
    local_fleet *f = (local_fleet *)fb;
    if (!f->slot)
        return imgcls_fail(&fb->err, IMGCLS_EINVAL, "fleet: this handle names no worker (?slot=N)");
    fleet_table_report(f->t, f->slot, busy, images, busy_s);
    return 0;
}

const struct fleet_ops fleet_local_ops = {
    .scheme = "local",
    .open = lf_open,
    .close = lf_close,
    .describe = lf_describe,
    .set_desired = lf_set_desired,
    .report = lf_report,
};
