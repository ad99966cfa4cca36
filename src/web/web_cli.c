/* imgcls web: options, start-up, signals (the server itself: web_server.h). */
#include "web/web.h"

#include "common/config.h"
#include "common/log.h"
#include "message/message.h"
#include "web/web_server.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char USAGE[] =
    "usage: imgcls web --queue URL --reply-queue URL --in-bucket URL --out-bucket URL [options]\n\n"
    "The web tier. POST / with the image as multipart/form-data in field myfile answers its top-1 label\n"
    "as text/plain (JSON with Accept: application/json). Also GET /results/ID, /healthz, /metrics and\n"
    "/dashboard (a live page of queue depth, workers, throughput and latency, polling /metrics).\n"
    "Stops cleanly on SIGINT or SIGTERM; requests still waiting then get 503.";

static size_t options(web_config *c, config_opt *t)
{
    config_opt opts[] = {
        {"port", CONFIG_UINT, "8081", "port to listen on (0: any free port, logged in event=listening)", 0,
         65535, &c->port},
        {"bind", CONFIG_STR, "127.0.0.1", "address to listen on (IPv4 or IPv6)", 0, 0, &c->bind},
        {"queue", CONFIG_STR, NULL,
         "request queue URL (required), e.g. sqlite:///var/lib/imgcls/q.db?queue=requests", 0, 0,
         &c->queue_url},
        {"reply-queue", CONFIG_STR, NULL,
         "this instance's response queue URL (required; no other process may read it)", 0, 0, &c->reply_url},
        {"in-bucket", CONFIG_STR, NULL, "input bucket URL (required), e.g. file:///var/lib/imgcls/in", 0, 0,
         &c->in_url},
        {"out-bucket", CONFIG_STR, NULL, "output bucket URL (required), e.g. file:///var/lib/imgcls/out", 0,
         0, &c->out_url},
        {"max-body", CONFIG_UINT, "20971520", "largest request body accepted, in bytes (more: 413)", 1,
         1ul << 31, &c->max_body},
        {"timeout", CONFIG_UINT, "300", "seconds a request waits for a worker (then 504 with its id)", 1,
         86400, &c->timeout_s},
        {"max-waiting", CONFIG_UINT, "10000", "requests that may wait for a worker at once (more: 503)", 1,
         1000000, &c->max_waiting},
        {"threads", CONFIG_UINT, "2", "HTTP threads (MHD's thread pool); each also writes uploads", 1, 64,
         &c->threads},
        /* Why 32 KiB and not the protocol's 180 KiB: a worker spent about 7 ms in jansson parsing the
         * 220 KB message of a 160 KB photo, several times what fetching it from the input bucket costs. */
        {"inline-max", CONFIG_UINT, "32768", "images up to this size go inline in the message; larger ones by"
         " claim check through the input bucket", 0, MESSAGE_INLINE_MAX, &c->inline_max},
        {"extra-metrics", CONFIG_STR, NULL,
         "a Prometheus text file served after the web tier's own metrics (the scaler's --metrics-file)", 0, 0,
         &c->extra_metrics},
    };
    memcpy(t, opts, sizeof opts);
    return sizeof opts / sizeof *opts;
}

static int check_config(const web_config *c, imgcls_errbuf *eb)
{
    const char *missing = !c->queue_url   ? "--queue"
                          : !c->reply_url ? "--reply-queue"
                          : !c->in_url    ? "--in-bucket"
                          : !c->out_url   ? "--out-bucket"
                                          : NULL;
    if (missing)
        return imgcls_fail(eb, IMGCLS_EINVAL, "%s is required (see --help)", missing);
    if (strlen(c->reply_url) >= MESSAGE_MAX_REPLY)
        return imgcls_fail(eb, IMGCLS_EINVAL, "--reply-queue is longer than %d bytes", MESSAGE_MAX_REPLY - 1);
    if (strcmp(c->queue_url, c->reply_url) == 0)
        return imgcls_fail(eb, IMGCLS_EINVAL, "--reply-queue must differ from --queue");
    return 0;
}

/* Every waiting request holds a socket, so the soft file limit (often 1024) would cap waiting
 * requests long before --max-waiting does. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            log_event("warn", "web", "rlimit_nofile_failed");
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    log_event("info", "web", "rlimit_nofile soft=%llu", (unsigned long long)rl.rlim_cur);
}

/* Runs the server until SIGINT or SIGTERM. The signals are blocked before any thread starts, so every
 * thread inherits the mask and only sigwait here sees them: no handler runs inside MHD or the
 * dispatcher, and stopping happens in ordinary code. */
static int serve(web_server *s, bool *freeable)
{
    imgcls_errbuf eb = {{0}};
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client that hangs up must not kill the server */
    raise_nofile();
    int status = 0;
    if (web_server_start(s, &eb)) {
        fprintf(stderr, "imgcls web: %s\n", eb.msg);
        status = 2;
        goto out;
    }
    log_event("info", "web",
              "listening bind=%s port=%u threads=%lu max_body=%lu timeout_s=%lu max_waiting=%lu", s->cfg.bind,
              s->port, s->cfg.threads, s->cfg.max_body, s->cfg.timeout_s, s->cfg.max_waiting);
    int sig = 0;
    sigwait(&set, &sig);
    log_event("info", "web", "signal sig=%s", sig == SIGINT ? "INT" : "TERM");
out:
    *freeable = web_server_stop(s);
    if (!*freeable)
        return 1;
    log_event("info", "web", "stopped");
    return status;
}

int cli_web(int argc, char **argv)
{
    web_server *s = calloc(1, sizeof *s);
    config_opt table[16];
    config_args args = {0};
    imgcls_errbuf eb = {{0}};
    int status = 2;
    bool freeable = true;
    if (!s) {
        fprintf(stderr, "imgcls web: out of memory\n");
        return 2;
    }
    size_t nopts = options(&s->cfg, table);
    if (config_parse(table, nopts, argc, argv, &args, &eb)) {
        fprintf(stderr, "imgcls web: %s\n", eb.msg);
        goto out;
    }
    if (args.help) {
        config_print_help(stdout, USAGE, table, nopts);
        status = 0;
        goto out;
    }
    if (args.npositional > 0 || check_config(&s->cfg, &eb)) {
        fprintf(stderr, "imgcls web: %s\n",
                args.npositional > 0 ? "unexpected argument (see --help)" : eb.msg);
        goto out;
    }
    status = serve(s, &freeable);
out:
    free(args.positional);
    if (freeable)
        free(s); /* else MHD's threads may still read it; the process exits next */
    return status;
}
