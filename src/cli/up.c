/* imgcls up: the whole local system in one command (DESIGN.md §1, "local" shape).
 *
 *   data dir/imgcls.db   the SQLite queues: requests, responses (and their dead-letter queues)
 *   data dir/in, /out    the input and output buckets
 *   data dir/fleet       the local fleet's table (src/fleet/fleet_local.h): desired count, worker slots
 *   data dir/scaler.prom the scaler's metrics, served by the web tier's /metrics
 *   processes            one `imgcls web`, one `imgcls scaler`, and --min-workers to --max-workers
 *                        `imgcls worker`, children of this process
 *
 * The children are this same binary started with their subcommand, so `up` runs exactly what a
 * deployment runs. What the supervisor promises:
 *
 * - Children die with it. Each child asks the kernel for SIGKILL when `up` dies (PR_SET_PDEATHSIG) and
 *   then checks that its parent is still the `up` that forked it, which closes the window in which `up`
 *   died before the request was made. SIGKILL rather than SIGTERM: with the parent gone nobody reaps
 *   or restarts, and a web tier in its grace period would keep the port; the queue is at-least-once,
 *   so a worker killed mid-batch loses nothing.
 * - No lost signal. SIGINT, SIGTERM and SIGCHLD are blocked from the start and read from a signalfd
 *   that every wait of the loop polls (the health probe's too), so a signal that arrives at any moment
 *   -- before the children exist, between a check and a wait -- wakes the loop at once. The rejected
 *   design, a handler setting a flag that the loop checks before blocking in waitpid/sleep, loses a
 *   signal that lands between the check and the block.
 * - A child that dies is started again after a delay: 1 s, doubling on each death up to --backoff-max
 *   (30 s), and back to 1 s once a child has stayed up for --backoff-max seconds (then restarting at
 *   once is no faster than the capped rate). Each restart is logged: `restart role=worker slot=1
 *   pid=.. exit=.. signal=.. in_s=..`. A worker killed mid-batch loses nothing: its requests come back
 *   when their visibility runs out.
 * - "ready" is logged only once the web tier answers GET /healthz with 200.
 * - --data-dir and its missing parents are created; a directory that cannot be used (a file in the
 *   way, no permission), or a --port that something already listens on, is an error message and exit
 *   status 1 before anything starts.
 * - Ctrl-C or SIGTERM stops the children with SIGTERM -- workers finish their batch -- and waits for
 *   them; SIGKILL after 15 s, or at once on a second Ctrl-C. Each child's end is logged (`stopped
 *   role=.. exit=..`); `up` exits 0 when every child stopped cleanly, 1 otherwise.
 *
 * The fleet. `up` is the local fleet's supervisor: the scaler decides how many workers there should be
 * and writes that into the fleet table; `up` reads it every UP_RECONCILE_MS and starts or stops
 * workers to match. Each worker has a slot in the table and reports there whether it holds messages.
 * Scale-in cancels a pending restart first, then stops idle workers, then ones still starting, and a
 * busy worker only when nothing else is left; a stopped worker gets SIGTERM, finishes its batch and
 * exits, and is not restarted. A worker that dies unasked is restarted, with the backoff above. */
#include "cli/cli.h"

#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "engine/engine.h"
#include "fleet/fleet_local.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define UP_MAX_WORKERS FLEET_LOCAL_SLOTS
#define UP_RECONCILE_MS 100 /* how often the fleet table's desired count is read */
#define UP_KID_WEB 0
#define UP_KID_SCALER 1
#define UP_KID_WORKER0 2 /* kids[UP_KID_WORKER0 + slot - 1] runs worker slot `slot` */
#define UP_STOP_GRACE_MS (15 * 1000)
#define UP_PROBE_TIMEOUT_MS 1000 /* one GET /healthz */
#define UP_PROBE_EVERY_MS 50     /* between probes until the web tier answers */

typedef struct up_opts {
    const char *data_dir, *bind, *model, *policy, *precision;
    unsigned long port, min_workers, max_workers, threads, visibility, timeout, backoff_max;
} up_opts;

typedef struct child {
    const char *role; /* "web", "scaler" or "worker" */
    unsigned slot;    /* 0 for the web tier and the scaler, 1.. for the workers (their fleet slot) */
    pid_t pid;        /* 0 while not running */
    int64_t started_ms, restart_ms; /* when this run began; when to start again (pid 0, not stopping) */
    unsigned delay_s;               /* the wait before the next restart */
    char *argv[24];
} child;

typedef struct up_state {
    child kids[UP_KID_WORKER0 + UP_MAX_WORKERS];
    size_t nkids;
    fleet_table *fleet;
    unsigned min_workers, max_workers;
    int sfd;          /* signalfd for SIGINT, SIGTERM, SIGCHLD */
    pid_t self;       /* the parent every child checks it still has */
    unsigned stops;   /* SIGINT/SIGTERM seen: 1 = stop, 2 = stop now */
    bool stopping, unclean;
    unsigned backoff_max;
    struct sockaddr_storage web_addr; /* where the health probe connects */
    socklen_t web_addr_len;
} up_state;

static const char USAGE[] =
    "usage: imgcls up [--port P] [--data-dir DIR] [--min-workers N] [--max-workers N] [--policy P]\n\n"
    "Runs the whole system on this machine: the web tier on http://BIND:PORT/, the SQLite queues and\n"
    "the bucket directories under DIR (created with its parents), the scaler, and between --min-workers\n"
    "and --max-workers worker processes, as many as the scaler's --policy asks for. Logs\n"
    "event=ready once the web tier answers GET /healthz. A child that dies is restarted after 1 s,\n"
    "doubling up to --backoff-max while it keeps dying; children die with `up`, even by SIGKILL.\n"
    "Ctrl-C stops everything (a second Ctrl-C at once); exit status 0 when every child stopped cleanly.";

/* Creates dir and its missing parents (mkdir -p). On failure eb names the component that failed. */
static int mkdir_parents(const char *dir, imgcls_errbuf *eb)
{
    char path[PATH_MAX];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof path)
        return imgcls_fail(eb, IMGCLS_EINVAL, "%s", len ? "path too long" : "empty path");
    memcpy(path, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if ((path[i] != '/' && path[i] != 0) || path[i - 1] == '/')
            continue;
        char c = path[i];
        path[i] = 0;
        if (mkdir(path, 0755) != 0) {
            int e = errno;
            struct stat st;
            if (e == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
                e = 0;
            else if (e == EEXIST)
                e = ENOTDIR; /* a file in the way */
            if (e)
                return imgcls_fail(eb, IMGCLS_EIO, "cannot create %s: %s", path, strerror(e));
        }
        path[i] = c;
    }
    if (access(dir, W_OK | X_OK) != 0)
        return imgcls_fail(eb, IMGCLS_EIO, "cannot write in %s: %s", dir, strerror(errno));
    return 0;
}

/* The data directory, its parents and the two bucket directories; abs gets the absolute path. */
static int make_dirs(const char *dir, char *abs, imgcls_errbuf *eb)
{
    int rc = mkdir_parents(dir, eb);
    if (rc)
        return rc;
    if (!realpath(dir, abs))
        return imgcls_fail(eb, IMGCLS_EIO, "cannot resolve %s: %s", dir, strerror(errno));
    char sub[PATH_MAX + 8];
    for (int i = 0; i < 2 && !rc; i++) {
        snprintf(sub, sizeof sub, "%s/%s", abs, i ? "out" : "in");
        rc = mkdir_parents(sub, eb);
    }
    return rc;
}

/* Fills c->argv: this binary, the subcommand, then the flags (which must outlive the child). */
static void child_args(child *c, const char *self, const char *role, unsigned slot, const char *const *flags,
                       size_t nflags)
{
    size_t a = 0;
    c->role = role;
    c->slot = slot;
    c->delay_s = 1;
    c->argv[a++] = (char *)(uintptr_t)self;
    c->argv[a++] = (char *)(uintptr_t)role;
    for (size_t i = 0; i < nflags && a + 1 < sizeof c->argv / sizeof *c->argv; i++)
        c->argv[a++] = (char *)(uintptr_t)flags[i];
    c->argv[a] = NULL;
}

/* In the child, between fork and exec. Only async-signal-safe calls. */
static void child_exec(const child *c, pid_t parent)
{
    /* Die with `up`, then make sure `up` did not die before that was asked: from here on the kernel
     * delivers the signal, and before here getppid() has already changed to a reaper. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    /* Dispositions are already the defaults (up installs no handlers); the blocked mask is inherited
     * across exec, so undo it. A SIGTERM sent before this point is pending and is delivered here. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* Own process group: Ctrl-C reaches only `up`, which then stops the children in order. */
    setpgid(0, 0);
    execv(c->argv[0], c->argv);
    _exit(127);
}

static void child_start(up_state *u, child *c)
{
    pid_t pid = fork();
    if (pid == 0)
        child_exec(c, u->self);
    c->restart_ms = 0;
    if (pid < 0) {
        log_event("error", "up", "fork_failed role=%s slot=%u detail=\"%s\"", c->role, c->slot, strerror(errno));
        c->pid = 0;
        c->restart_ms = clock_ms_i64() + 1000 * (int64_t)c->delay_s;
        return;
    }
    c->pid = pid;
    c->started_ms = clock_ms_i64();
    if (c->slot)
        fleet_table_started(u->fleet, c->slot, pid);
    log_event("info", "up", "started role=%s slot=%u pid=%d", c->role, c->slot, (int)pid);
}

static child *child_by_pid(up_state *u, pid_t pid)
{
    for (size_t i = 0; i < u->nkids; i++)
        if (u->kids[i].pid == pid)
            return &u->kids[i];
    return NULL;
}

/* A child ended: while running, schedule its restart with backoff; while stopping, note how it ended. */
static void child_ended(up_state *u, child *c, int status)
{
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    pid_t pid = c->pid;
    c->pid = 0;
    bool scaled_in = c->slot && fleet_table_state(u->fleet, c->slot) == FLEET_SLOT_STOPPING;
    if (c->slot)
        fleet_table_gone(u->fleet, c->slot);
    if (scaled_in && !u->stopping) {
        log_event("info", "up", "scaled_in role=worker slot=%u pid=%d exit=%d signal=%d", c->slot, (int)pid, code,
                  sig);
        return;
    }
    if (u->stopping) {
        /* Dying of the SIGTERM we sent is a clean stop too: a child that had not yet installed its
         * handler (just started) takes the default action. */
        bool clean = code == 0 || sig == SIGTERM;
        u->unclean |= !clean;
        log_event(clean ? "info" : "warn", "up", "stopped role=%s slot=%u pid=%d exit=%d signal=%d", c->role,
                  c->slot, (int)pid, code, sig);
        return;
    }
    int64_t now = clock_ms_i64();
    if (now - c->started_ms >= 1000 * (int64_t)u->backoff_max)
        c->delay_s = 1; /* it stayed up: this is not a crash loop */
    unsigned in_s = c->delay_s;
    c->delay_s = c->delay_s * 2 > u->backoff_max ? u->backoff_max : c->delay_s * 2;
    c->restart_ms = now + 1000 * (int64_t)in_s;
    log_event("warn", "up", "restart role=%s slot=%u pid=%d exit=%d signal=%d in_s=%u", c->role, c->slot,
              (int)pid, code, sig, in_s);
}

static void reap(up_state *u)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        child *c = child_by_pid(u, pid);
        if (c)
            child_ended(u, c, status);
    }
}

/* Reads every pending signal from the signalfd (non-blocking) and acts on it. */
static void drain_signals(up_state *u)
{
    struct signalfd_siginfo si;
    while (read(u->sfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGCHLD) {
            reap(u);
        } else if (u->stops < 2) {
            u->stops++;
            log_event("info", "up", "signal sig=%s", si.ssi_signo == SIGINT ? "INT" : "TERM");
        }
    }
    reap(u); /* SIGCHLDs coalesce, and one may have been read before its child was waitable */
}

/* Waits until the signalfd is readable (then drains it) or timeout_ms passes (-1: no limit). */
static void wait_signals(up_state *u, int timeout_ms)
{
    struct pollfd p = {.fd = u->sfd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) > 0)
        drain_signals(u);
}

static void kill_all(up_state *u, int sig)
{
    for (size_t i = 0; i < u->nkids; i++)
        if (u->kids[i].pid > 0)
            kill(u->kids[i].pid, sig);
}

static bool any_running(const up_state *u)
{
    for (size_t i = 0; i < u->nkids; i++)
        if (u->kids[i].pid > 0)
            return true;
    return false;
}

static void stop_children(up_state *u)
{
    u->stopping = true;
    kill_all(u, SIGTERM);
    int64_t deadline = clock_ms_i64() + UP_STOP_GRACE_MS;
    bool killed = false;
    while (any_running(u)) {
        int64_t left = deadline - clock_ms_i64();
        if (!killed && (left <= 0 || u->stops >= 2)) {
            log_event("warn", "up", "kill reason=%s", u->stops >= 2 ? "second_signal" : "grace_over");
            kill_all(u, SIGKILL);
            killed = true;
        }
        wait_signals(u, killed ? -1 : (int)(left > 0 ? left : 0));
    }
}

/* Where the probe connects: the bind address, or loopback for a wildcard bind. */
static int probe_address(up_state *u, const char *bind, unsigned long port)
{
    struct sockaddr_in *v4 = (struct sockaddr_in *)&u->web_addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&u->web_addr;
    memset(&u->web_addr, 0, sizeof u->web_addr);
    if (inet_pton(AF_INET, bind, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        if (v4->sin_addr.s_addr == htonl(INADDR_ANY))
            v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        u->web_addr_len = sizeof *v4;
        return 0;
    }
    if (inet_pton(AF_INET6, bind, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        if (IN6_IS_ADDR_UNSPECIFIED(&v6->sin6_addr))
            v6->sin6_addr = in6addr_loopback;
        u->web_addr_len = sizeof *v6;
        return 0;
    }
    return IMGCLS_EINVAL;
}

/* Waits for fd to become ready for `events`, or for a signal. 1: ready; 0: timed out or failed;
 * -1: a signal is pending (the caller drains it). */
static int probe_wait(const up_state *u, int fd, short events, int64_t deadline)
{
    struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = u->sfd, .events = POLLIN}};
    int64_t left = deadline - clock_ms_i64();
    if (left <= 0 || poll(p, 2, (int)left) <= 0)
        return 0;
    if (p[1].revents)
        return -1;
    return 1;
}

/* One GET /healthz on a plain non-blocking socket, so that a signal interrupts it. 1: answered 200;
 * 0: not (yet); -1: a signal arrived. The rejected alternative, libcurl's easy interface, blocks for
 * its whole timeout and would leave a Ctrl-C unanswered meanwhile. */
static int probe_healthz(const up_state *u)
{
    static const char req[] = "GET /healthz HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    int64_t deadline = clock_ms_i64() + UP_PROBE_TIMEOUT_MS;
    int fd = socket(u->web_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc = 0, err = 0;
    char head[64];
    size_t got = 0;
    socklen_t elen = sizeof err;
    if (fd < 0)
        goto out;
    if (connect(fd, (const struct sockaddr *)&u->web_addr, u->web_addr_len) != 0) {
        if (errno != EINPROGRESS || (rc = probe_wait(u, fd, POLLOUT, deadline)) != 1)
            goto out;
        rc = 0;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err)
            goto out;
    }
    if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof req - 1))
        goto out;
    while (got < 12) { /* "HTTP/1.1 200" */
        if ((rc = probe_wait(u, fd, POLLIN, deadline)) != 1)
            goto out;
        rc = 0;
        ssize_t n = recv(fd, head + got, sizeof head - got, 0);
        if (n <= 0)
            goto out;
        got += (size_t)n;
    }
    rc = memcmp(head, "HTTP/1.", 7) == 0 && memcmp(head + 8, " 200", 4) == 0;
out:
    if (fd >= 0)
        close(fd);
    return rc;
}

/* ---- the fleet: as many workers as the table's desired count ---- */

static bool worker_active(const up_state *u, const child *c)
{
    return (c->pid > 0 && fleet_table_state(u->fleet, c->slot) != FLEET_SLOT_STOPPING) ||
           (c->pid == 0 && c->restart_ms);
}

/* The worker to stop first: a pending restart (nothing to stop), then an idle worker, then one still
 * starting, and a busy one last. NULL when none is active. */
static child *scale_in_victim(up_state *u)
{
    child *best = NULL;
    int best_rank = 99;
    for (unsigned s = 1; s <= u->max_workers; s++) {
        child *c = &u->kids[UP_KID_WORKER0 + s - 1];
        if (!worker_active(u, c))
            continue;
        enum fleet_slot_state st = fleet_table_state(u->fleet, s);
        int rank = c->pid == 0                                              ? 0
                   : st == FLEET_SLOT_RUNNING && !fleet_table_busy(u->fleet, s) ? 1
                   : st == FLEET_SLOT_STARTING                              ? 2
                                                                            : 3;
        if (rank < best_rank) {
            best = c;
            best_rank = rank;
        }
    }
    return best;
}

/* Starts or stops workers until the active ones match the desired count (within --min/--max-workers). */
static void reconcile(up_state *u)
{
    uint32_t want = fleet_table_desired(u->fleet);
    want = want < u->min_workers ? u->min_workers : want > u->max_workers ? u->max_workers : want;
    unsigned active = 0;
    for (unsigned s = 1; s <= u->max_workers; s++)
        active += worker_active(u, &u->kids[UP_KID_WORKER0 + s - 1]);
    for (unsigned s = 1; s <= u->max_workers && active < want; s++) {
        child *c = &u->kids[UP_KID_WORKER0 + s - 1];
        if (c->pid == 0 && !c->restart_ms) {
            c->delay_s = 1;
            child_start(u, c);
            active++;
        }
    }
    while (active > want) {
        child *c = scale_in_victim(u);
        if (!c)
            break;
        if (c->pid == 0) {
            c->restart_ms = 0; /* not restarted after all */
        } else {
            fleet_table_stopping(u->fleet, c->slot);
            kill(c->pid, SIGTERM);
            log_event("info", "up", "scale_in role=worker slot=%u pid=%d busy=%d", c->slot, (int)c->pid,
                      fleet_table_busy(u->fleet, c->slot));
        }
        active--;
    }
}

/* Starts the children whose restart is due; returns the ms until the next one is (-1: none). */
static int restart_due(up_state *u)
{
    int64_t now = clock_ms_i64(), next = -1;
    for (size_t i = 0; i < u->nkids; i++) {
        child *c = &u->kids[i];
        if (c->pid || !c->restart_ms)
            continue;
        if (c->restart_ms <= now)
            child_start(u, c);
        else if (next < 0 || c->restart_ms - now < next)
            next = c->restart_ms - now;
    }
    return (int)next;
}

/* Until a stop is asked: restart children that died, and log "ready" once the web tier answers. */
static void supervise(up_state *u, const up_opts *o, const char *abs)
{
    bool ready = false;
    while (!u->stops) {
        int timeout = restart_due(u);
        reconcile(u);
        if (timeout < 0 || timeout > UP_RECONCILE_MS)
            timeout = UP_RECONCILE_MS;
        if (!ready && u->kids[0].pid > 0) {
            int p = probe_healthz(u);
            if (p > 0) {
                ready = true;
                log_event("info", "up", "ready url=http://%s:%lu/ data=%s min_workers=%lu max_workers=%lu policy=%s",
                          o->bind, o->port, abs, o->min_workers, o->max_workers, o->policy);
            }
            if (p < 0)
                timeout = 0; /* a signal is pending: go and read it */
        }
        if (!ready && (timeout < 0 || timeout > UP_PROBE_EVERY_MS))
            timeout = UP_PROBE_EVERY_MS;
        wait_signals(u, timeout);
    }
}

/* The URLs every process shares. Static: the children's argv point into them for the whole run. */
static void build_children(const up_opts *o, const char *self, const char *abs, up_state *u)
{
    static char q[PATH_MAX + 64], r[PATH_MAX + 64], in[PATH_MAX + 32], out[PATH_MAX + 32];
    static char fleet[PATH_MAX + 16], prom[PATH_MAX + 16], slot_fleet[UP_MAX_WORKERS][PATH_MAX + 64];
    static char port[16], timeout[16], vis[16], threads[16], minw[16], maxw[16];
    /* sync=normal: in WAL mode a commit then survives any process crash -- what "durable across
     * restarts of any process" asks -- and only a power cut can lose the last ones. It saves an
     * fsync on each of the ~6 queue writes per request. The buckets make the same promise
     * (store.h: file's sync=normal), which saves two fsyncs on each of the ~3 bucket writes. */
    snprintf(q, sizeof q, "sqlite://%s/imgcls.db?queue=requests&sync=normal", abs);
    snprintf(r, sizeof r, "sqlite://%s/imgcls.db?queue=responses&sync=normal", abs);
    snprintf(in, sizeof in, "file://%s/in?sync=normal", abs);
    snprintf(out, sizeof out, "file://%s/out?sync=normal", abs);
    snprintf(port, sizeof port, "%lu", o->port);
    snprintf(timeout, sizeof timeout, "%lu", o->timeout);
    snprintf(vis, sizeof vis, "%lu", o->visibility);
    snprintf(threads, sizeof threads, "%lu", o->threads);
    snprintf(fleet, sizeof fleet, "local://%s/fleet", abs);
    snprintf(prom, sizeof prom, "%s/scaler.prom", abs);
    snprintf(minw, sizeof minw, "%lu", o->min_workers);
    snprintf(maxw, sizeof maxw, "%lu", o->max_workers);
    const char *web[] = {"--port", port, "--bind", o->bind, "--queue", q, "--reply-queue", r, "--in-bucket", in,
                         "--out-bucket", out, "--timeout", timeout, "--extra-metrics", prom};
    child_args(&u->kids[UP_KID_WEB], self, "web", 0, web, sizeof web / sizeof *web);
    /* Until the fleet has measured a worker's start, plan with 0.5 s: a local process loads the model
     * and plans the network in well under that. A decision every 250 ms, not the scaler's default
     * second: a local worker serves 0.2 s after it is started, so a second's wait would be most of the
     * reaction time, and a decision costs one SQLite count and a small file. */
    const char *sc[] = {"--queue", q, "--fleet", fleet, "--policy", o->policy, "--min-workers", minw,
                        "--max-workers", maxw, "--metrics-file", prom, "--boot-ms", "500", "--interval-ms", "250"};
    child_args(&u->kids[UP_KID_SCALER], self, "scaler", 0, sc, sizeof sc / sizeof *sc);
    const char *model = o->model ? o->model : "";
    for (size_t i = 0; i < o->max_workers; i++) {
        snprintf(slot_fleet[i], sizeof slot_fleet[i], "%s?slot=%zu", fleet, i + 1);
        const char *wk[] = {"--queue", q, "--in-bucket", in, "--out-bucket", out, "--visibility", vis, "--threads",
                            threads, "--precision", o->precision, "--fleet", slot_fleet[i], "--model", model};
        size_t nwk = sizeof wk / sizeof *wk - (o->model ? 0 : 2);
        child_args(&u->kids[UP_KID_WORKER0 + i], self, "worker", (unsigned)(1 + i), wk, nwk);
    }
    u->nkids = UP_KID_WORKER0 + o->max_workers;
}

/* Blocks the signals the loop reads and opens the signalfd for them. Blocked before any child
 * exists, so none can be lost; children unblock them after fork. */
static int open_signals(up_state *u)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
        return IMGCLS_EIO;
    u->sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return u->sfd < 0 ? IMGCLS_EIO : 0;
}

/* Everything before the first child: the binary's path, the directories, the probe's address. */
/* Whether the web tier's port is free, asked the way it will bind (SO_REUSEADDR, as libmicrohttpd
 * does, so a TIME_WAIT is no owner). A port in use is a configuration error to report before anything
 * starts: the web tier would exit at once, and restarting it with backoff would never help. Another
 * process may still take the port between this check and the web tier's bind; then the restart log
 * says so. */
static int port_free(const up_state *u, imgcls_errbuf *eb, unsigned long port)
{
    int fd = socket(u->web_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, rc = 0;
    if (fd < 0)
        return 0; /* cannot tell: let the web tier try */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)&u->web_addr, u->web_addr_len) != 0 && errno == EADDRINUSE)
        rc = imgcls_fail(eb, IMGCLS_EBUSY, "--port %lu is already in use (another imgcls up?)", port);
    close(fd);
    return rc;
}

static int prepare(up_state *u, const up_opts *o, char *self, char *abs, imgcls_errbuf *eb)
{
    ssize_t len = readlink("/proc/self/exe", self, PATH_MAX - 1);
    if (len <= 0)
        return imgcls_fail(eb, IMGCLS_EIO, "cannot find this binary: /proc/self/exe: %s", strerror(errno));
    self[len] = 0;
    if (probe_address(u, o->bind, o->port))
        return imgcls_fail(eb, IMGCLS_EINVAL, "--bind: '%s' is not an IPv4 or IPv6 address", o->bind);
    int rc = port_free(u, eb, o->port);
    if (rc)
        return rc;
    rc = make_dirs(o->data_dir, abs, eb);
    if (rc) {
        imgcls_errbuf detail = *eb;
        return imgcls_fail(eb, rc, "--data-dir %s cannot be used: %s", o->data_dir, detail.msg);
    }
    u->self = getpid();
    char table[PATH_MAX + 8];
    snprintf(table, sizeof table, "%s/fleet", abs);
    if ((rc = fleet_table_create(table, (uint32_t)o->min_workers, &u->fleet, eb)))
        return rc;
    u->min_workers = (unsigned)o->min_workers;
    u->max_workers = (unsigned)o->max_workers;
    build_children(o, self, abs, u);
    if (open_signals(u))
        return imgcls_fail(eb, IMGCLS_EIO, "cannot set up signals: %s", strerror(errno));
    return 0;
}

int cli_up(int argc, char **argv)
{
    up_opts o;
    char ncpu[16];
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(ncpu, sizeof ncpu, "%ld", n < 1 ? 1 : n > UP_MAX_WORKERS ? UP_MAX_WORKERS : n);
    config_opt table[] = {
        {"port", CONFIG_UINT, "8081", "port of the web tier", 1, 65535, &o.port},
        {"bind", CONFIG_STR, "127.0.0.1", "address the web tier listens on", 0, 0, &o.bind},
        {"data-dir", CONFIG_STR, "./imgcls-data", "where the queues and buckets live (created with its parents)",
         0, 0, &o.data_dir},
        {"min-workers", CONFIG_UINT, "1", "fewest worker processes", 1, UP_MAX_WORKERS, &o.min_workers},
        {"max-workers", CONFIG_UINT, ncpu, "most worker processes (default: the CPUs, as more add nothing on one "
         "machine)", 1, UP_MAX_WORKERS, &o.max_workers},
        {"policy", CONFIG_STR, "backlog", "scaling policy: backlog, threshold or alarm (imgcls scaler)", 0, 0,
         &o.policy},
        {"threads", CONFIG_UINT, "1", "network threads per worker", 1, 64, &o.threads},
        {"precision", CONFIG_STR, "fp32", ENGINE_PRECISION_HELP, 0, 0, &o.precision},
        {"model", CONFIG_STR, NULL, "weight file (default: the built model)", 0, 0, &o.model},
        {"visibility", CONFIG_UINT, "30", "seconds before an unanswered request is handed out again", 3, 43200,
         &o.visibility},
        {"timeout", CONFIG_UINT, "300", "seconds a client waits before a 504", 1, 86400, &o.timeout},
        {"backoff-max", CONFIG_UINT, "30",
         "longest wait, in seconds, before restarting a child that keeps dying (from 1 s, doubling)", 1, 3600,
         &o.backoff_max},
    };
    size_t nopts = sizeof table / sizeof *table;
    config_args args;
    imgcls_errbuf eb = {{0}};
    if (config_parse(table, nopts, argc, argv, &args, &eb)) {
        fprintf(stderr, "imgcls up: %s\n", eb.msg);
        return 2;
    }
    int status = 0;
    char abs[PATH_MAX], self[PATH_MAX];
    up_state *u = calloc(1, sizeof *u);
    if (!u || args.help || args.npositional) {
        if (!u)
            fprintf(stderr, "imgcls up: out of memory\n");
        else
            config_print_help(args.help ? stdout : stderr, USAGE, table, nopts);
        status = !u ? 1 : args.help ? 0 : 2;
        goto out;
    }
    u->sfd = -1;
    u->backoff_max = (unsigned)o.backoff_max;
    network_precision prec;
    if (network_precision_parse(o.precision, &prec)) {
        fprintf(stderr, "imgcls up: --precision must be fp32, bf16 or int8, not '%s'\n", o.precision);
        status = 2;
        goto out;
    }
    if (o.min_workers > o.max_workers) {
        fprintf(stderr, "imgcls up: --min-workers %lu is more than --max-workers %lu\n", o.min_workers,
                o.max_workers);
        status = 2;
        goto out;
    }
    if (prepare(u, &o, self, abs, &eb)) {
        fprintf(stderr, "imgcls up: %s\n", eb.msg);
        status = 1;
        goto out;
    }
    child_start(u, &u->kids[UP_KID_WEB]);
    child_start(u, &u->kids[UP_KID_SCALER]); /* the workers: reconcile, in supervise */
    supervise(u, &o, abs);
    log_event("info", "up", "stopping");
    stop_children(u);
    status = u->unclean ? 1 : 0;
    log_event("info", "up", "exit status=%d", status);
out:
    if (u && u->sfd >= 0)
        close(u->sfd);
    if (u)
        fleet_table_close(u->fleet);
    free(u);
    free(args.positional);
    return status;
}
