/* imgcls up: the whole local system in one command (DESIGN.md §1, "local" shape).
 *
 *   data dir/imgcls.db   the SQLite queues: requests, responses (and their dead-letter queues)
 *   data dir/in, /out    the input and output buckets
 *   processes            one `imgcls web` and --workers `imgcls worker`, children of this process
 *
 * The children are this same binary started with their subcommand, so `up` runs exactly what a
 * deployment runs. A child that dies is started again after a second (a worker killed mid-batch
 * loses nothing: its requests come back when their visibility runs out). Ctrl-C or SIGTERM stops the
 * children with SIGTERM -- workers finish their batch -- and waits for them; SIGKILL after 15 s.
 *
 * The worker count is fixed here; the scaler (a later stage) will own the fleet. */
#include "cli/cli.h"

#include "common/config.h"
#include "common/log.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define UP_MAX_WORKERS 64
#define UP_STOP_GRACE_S 15

typedef struct up_opts {
    const char *data_dir, *bind, *model;
    unsigned long port, workers, threads, visibility, timeout;
} up_opts;

typedef struct child {
    const char *role; /* "web" or "worker" */
    pid_t pid;
    char *argv[24];
} child;

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static const char USAGE[] =
    "usage: imgcls up [--port P] [--data-dir DIR] [--workers N]\n\n"
    "Runs the whole system on this machine: the web tier on http://BIND:PORT/, the SQLite queues and\n"
    "the bucket directories under DIR, and N worker processes. Ctrl-C stops everything.";

static int make_dirs(const char *dir, char *abs)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return IMGCLS_EIO;
    if (!realpath(dir, abs))
        return IMGCLS_EIO;
    char sub[PATH_MAX + 8];
    for (int i = 0; i < 2; i++) {
        snprintf(sub, sizeof sub, "%s/%s", abs, i ? "out" : "in");
        if (mkdir(sub, 0755) != 0 && errno != EEXIST)
            return IMGCLS_EIO;
    }
    return 0;
}

/* Fills c->argv: this binary, the subcommand, then the flags (which must outlive the child). */
static void child_args(child *c, const char *self, const char *role, const char *const *flags, size_t nflags)
{
    size_t a = 0;
    c->role = role;
    c->argv[a++] = (char *)(uintptr_t)self;
    c->argv[a++] = (char *)(uintptr_t)role;
    for (size_t i = 0; i < nflags && a + 1 < sizeof c->argv / sizeof *c->argv; i++)
        c->argv[a++] = (char *)(uintptr_t)flags[i];
    c->argv[a] = NULL;
}

static pid_t child_start(child *c)
{
    pid_t pid = fork();
    if (pid == 0) {
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        sigaction(SIGINT, &dfl, NULL);
        sigaction(SIGTERM, &dfl, NULL);
        /* Own process group: Ctrl-C reaches only `up`, which then stops the children in order. */
        setpgid(0, 0);
        execv(c->argv[0], c->argv);
        _exit(127);
    }
    c->pid = pid;
    if (pid > 0)
        log_event("info", "up", "started role=%s pid=%d", c->role, (int)pid);
    return pid;
}

static void stop_children(child *kids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (kids[i].pid > 0)
            kill(kids[i].pid, SIGTERM);
    time_t deadline = time(NULL) + UP_STOP_GRACE_S;
    size_t alive = n;
    while (alive > 0) {
        alive = 0;
        for (size_t i = 0; i < n; i++) {
            if (kids[i].pid <= 0)
                continue;
            if (waitpid(kids[i].pid, NULL, WNOHANG) == kids[i].pid)
                kids[i].pid = 0;
            else if (time(NULL) >= deadline)
                kill(kids[i].pid, SIGKILL);
            else
                alive++;
        }
        if (alive)
            usleep(50 * 1000);
    }
}

/* Waits for children; restarts one that exited unless we are stopping. */
static void supervise(child *kids, size_t n)
{
    while (!stop_requested) {
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (size_t i = 0; i < n && !stop_requested; i++) {
            if (kids[i].pid != pid)
                continue;
            log_event("warn", "up", "exited role=%s pid=%d status=%d signal=%d", kids[i].role, (int)pid,
                      WIFEXITED(status) ? WEXITSTATUS(status) : -1, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
            sleep(1); /* a child that cannot start must not become a fork loop */
            if (!stop_requested)
                child_start(&kids[i]);
        }
    }
}

/* The URLs every process shares. Static: the children's argv point into them for the whole run. */
static void build_children(const up_opts *o, const char *self, const char *abs, child *kids, size_t *nkids)
{
    static char q[PATH_MAX + 64], r[PATH_MAX + 64], in[PATH_MAX + 16], out[PATH_MAX + 16];
    static char port[16], timeout[16], vis[16], threads[16];
    /* sync=normal: in WAL mode a commit then survives any process crash -- what "durable across
     * restarts of any process" asks -- and only a power cut can lose the last ones. It saves an
     * fsync on each of the ~6 queue writes per request. */
    snprintf(q, sizeof q, "sqlite://%s/imgcls.db?queue=requests&sync=normal", abs);
    snprintf(r, sizeof r, "sqlite://%s/imgcls.db?queue=responses&sync=normal", abs);
    snprintf(in, sizeof in, "file://%s/in", abs);
    snprintf(out, sizeof out, "file://%s/out", abs);
    snprintf(port, sizeof port, "%lu", o->port);
    snprintf(timeout, sizeof timeout, "%lu", o->timeout);
    snprintf(vis, sizeof vis, "%lu", o->visibility);
    snprintf(threads, sizeof threads, "%lu", o->threads);
    const char *web[] = {"--port", port, "--bind", o->bind, "--queue", q, "--reply-queue", r, "--in-bucket", in,
                         "--out-bucket", out, "--timeout", timeout};
    child_args(&kids[0], self, "web", web, sizeof web / sizeof *web);
    const char *model = o->model ? o->model : "";
    const char *wk[] = {"--queue", q, "--in-bucket", in, "--out-bucket", out, "--visibility", vis, "--threads",
                        threads, "--model", model};
    size_t nwk = sizeof wk / sizeof *wk - (o->model ? 0 : 2);
    for (size_t i = 0; i < o->workers; i++)
        child_args(&kids[1 + i], self, "worker", wk, nwk);
    *nkids = 1 + o->workers;
}

int cli_up(int argc, char **argv)
{
    up_opts o;
    config_opt table[] = {
        {"port", CONFIG_UINT, "8081", "port of the web tier", 1, 65535, &o.port},
        {"bind", CONFIG_STR, "127.0.0.1", "address the web tier listens on", 0, 0, &o.bind},
        {"data-dir", CONFIG_STR, "./imgcls-data", "where the queues and buckets live", 0, 0, &o.data_dir},
        {"workers", CONFIG_UINT, "2", "worker processes", 1, UP_MAX_WORKERS, &o.workers},
        {"threads", CONFIG_UINT, "1", "network threads per worker", 1, 64, &o.threads},
        {"model", CONFIG_STR, NULL, "weight file (default: the built model)", 0, 0, &o.model},
        {"visibility", CONFIG_UINT, "30", "seconds before an unanswered request is handed out again", 3, 43200,
         &o.visibility},
        {"timeout", CONFIG_UINT, "300", "seconds a client waits before a 504", 1, 86400, &o.timeout},
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
    child kids[1 + UP_MAX_WORKERS];
    size_t nkids = 0;
    memset(kids, 0, sizeof kids);
    if (args.help || args.npositional) {
        config_print_help(args.help ? stdout : stderr, USAGE, table, nopts);
        status = args.help ? 0 : 2;
        goto out;
    }
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0 || make_dirs(o.data_dir, abs)) {
        fprintf(stderr, "imgcls up: cannot set up %s\n", len <= 0 ? "/proc/self/exe" : o.data_dir);
        status = 1;
        goto out;
    }
    self[len] = 0;
    build_children(&o, self, abs, kids, &nkids);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    for (size_t i = 0; i < nkids; i++)
        child_start(&kids[i]);
    log_event("info", "up", "ready url=http://%s:%lu/ data=%s workers=%lu", o.bind, o.port, abs, o.workers);
    supervise(kids, nkids);
    log_event("info", "up", "stopping");
    stop_children(kids, nkids);
out:
    free(args.positional);
    return status;
}
