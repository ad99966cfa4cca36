#include "loadgen/run.h"

#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"
#include "loadgen/report.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* The signal (SIGINT or SIGTERM) that asked the run to stop, or 0. Set by the handler and read by the
 * loop: a handler can reach nothing but a file-scope sig_atomic_t, which is why this one piece of
 * state is not in the runner. */
static volatile sig_atomic_t interrupted;

static void on_stop_signal(int sig)
{
    interrupted = sig;
}

typedef struct slot {
    CURL *easy; /* reused request after request; the multi handle keeps the connections */
    curl_mime *mime;
    imgcls_buf body;
    const loadgen_image *img;
    size_t request;
    size_t sent; /* upload cursor into img->data */
    double t0;
    bool busy, overflow;
    char errbuf[CURL_ERROR_SIZE];
} slot;

typedef struct progress {
    bool tty, drawn;
    double last_draw;
    unsigned last_decile;
    size_t last_done;
} progress;

typedef struct runner {
    const loadgen_plan *p;
    loadgen_stats *st;
    CURLM *multi;
    struct curl_slist *headers, *resolve;
    slot *slots;
    size_t nslots, next, active;
    double t_start;
    progress prog;
} runner;

/* ---- upload and download callbacks ---- */

static size_t upload_read(char *buffer, size_t size, size_t nitems, void *arg)
{
    slot *s = arg;
    size_t want = size * nitems, left = s->img->data.len - s->sent;
    size_t n = want < left ? want : left;
    if (n)
        memcpy(buffer, s->img->data.data + s->sent, n);
    s->sent += n;
    return n;
}

/* curl rewinds the body when it must resend it (a reused connection the server had closed). */
static int upload_seek(void *arg, curl_off_t offset, int origin)
{
    slot *s = arg;
    if (origin != SEEK_SET || offset < 0 || (size_t)offset > s->img->data.len)
        return CURL_SEEKFUNC_FAIL;
    s->sent = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

static size_t body_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    slot *s = arg;
    if (buf_append(&s->body, ptr, size * nmemb) != 0) {
        s->overflow = true;
        return 0; /* curl ends the transfer with CURLE_WRITE_ERROR */
    }
    return size * nmemb;
}

/* ---- progress on stderr ---- */

static void progress_clear(progress *pg)
{
    if (pg->tty && pg->drawn) {
        fputs("\r\033[K", stderr);
        pg->drawn = false;
    }
}

static void progress_show(runner *r, bool final)
{
    progress *pg = &r->prog;
    size_t total = r->p->requests, done = r->st->completed;
    double now = clock_ms(), secs = (now - r->t_start) / 1000.0;
    double rps = secs > 0 ? (double)done / secs : 0;
    unsigned pct = (unsigned)(done * 100 / total);
    if (pg->tty) {
        if (!final && now - pg->last_draw < 100)
            return; /* ten redraws a second are plenty, and cost nothing at 10^5 req/s */
        pg->last_draw = now;
        char bar[31];
        size_t fill = done * 30 / total;
        memset(bar, '#', fill);
        memset(bar + fill, '.', 30 - fill);
        bar[30] = 0;
        fprintf(stderr, "\r[%s] %zu/%zu %3u%%  %.1f req/s  %zu errors\033[K%s", bar, done, total, pct, rps,
                r->st->failed, final ? "\n" : "");
        pg->drawn = !final;
        return;
    }
    /* Not a terminal (a log file, CI): a line per tenth instead of a bar full of carriage returns. */
    unsigned decile = (unsigned)(done * 10 / total);
    if (decile <= pg->last_decile && !(final && done != pg->last_done))
        return;
    pg->last_decile = decile;
    pg->last_done = done;
    log_event("info", "loadgen", "progress done=%zu total=%zu pct=%u ok=%zu errors=%zu rps=%.1f", done, total, pct,
              r->st->ok, r->st->failed, rps);
}

/* ---- one request ---- */

static const char *content_type(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && strcasecmp(dot, ".png") == 0 ? "image/png" : "image/jpeg";
}

static int start_request(runner *r, slot *s, imgcls_errbuf *eb)
{
    const loadgen_plan *p = r->p;
    s->request = r->next++;
    s->img = &p->images->v[loadgen_pick(s->request, p->images->n, p->seed)];
    s->sent = 0;
    s->overflow = false;
    s->errbuf[0] = 0;
    buf_reset(&s->body);
    curl_mime *mime = curl_mime_init(s->easy);
    curl_mimepart *part = mime ? curl_mime_addpart(mime) : NULL;
    if (!part) {
        curl_mime_free(mime);
        return IMGCLS_ENOMEM;
    }
    CURLcode c = curl_mime_name(part, "myfile");
    if (!c)
        c = curl_mime_filename(part, s->img->name);
    if (!c)
        c = curl_mime_type(part, content_type(s->img->name));
    if (!c)
        c = curl_mime_data_cb(part, (curl_off_t)s->img->data.len, upload_read, upload_seek, NULL, s);
    if (!c)
        c = curl_easy_setopt(s->easy, CURLOPT_MIMEPOST, mime);
    if (c) {
        curl_mime_free(mime);
        return imgcls_fail(eb, IMGCLS_ENOMEM, "cannot build the upload of %s: %s", s->img->name,
                           curl_easy_strerror(c));
    }
    /* The previous request's form is freed only now that the handle points at the new one. */
    curl_mime_free(s->mime);
    s->mime = mime;
    s->t0 = clock_ms();
    CURLMcode mc = curl_multi_add_handle(r->multi, s->easy);
    if (mc)
        return imgcls_fail(eb, IMGCLS_EIO, "curl_multi_add_handle: %s", curl_multi_strerror(mc));
    s->busy = true;
    r->active++;
    return 0;
}

/* Trims ASCII white space from both ends of the NUL-terminated s of length len, in place. */
static char *trim(char *s, size_t len)
{
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == '\t'))
        s[--len] = 0;
    while (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t')
        s++;
    return s;
}

static void record_answer(runner *r, slot *s, double ms)
{
    char empty[1] = "";
    char *label = s->body.data ? trim((char *)s->body.data, s->body.len) : empty;
    loadgen_stats_ok(r->st, ms);
    if (s->img->expected) {
        r->st->checked++;
        r->st->correct += strcmp(label, s->img->expected) == 0;
    }
    if (r->p->verbose) {
        progress_clear(&r->prog);
        loadgen_print_answer(stdout, s->img->name, s->img->stem_len, label, r->p->json);
    }
}

/* The first line of a response body, control characters replaced, for naming a failure. */
static void first_line(const imgcls_buf *b, char *out, size_t outsz)
{
    size_t j = 0;
    for (size_t i = 0; i < b->len && j + 1 < outsz && b->data[i] != '\n' && b->data[i] != '\r'; i++)
        out[j++] = b->data[i] < 0x20 || b->data[i] == 0x7f ? '?' : (char)b->data[i];
    out[j] = 0;
}

static void record_failure(runner *r, slot *s, CURLcode res, long code)
{
    char kind[96], detail[CURL_ERROR_SIZE];
    if (s->overflow) {
        snprintf(kind, sizeof kind, "response over %u KiB", LOADGEN_MAX_BODY / 1024);
        snprintf(detail, sizeof detail, "HTTP %ld", code);
    } else if (res != CURLE_OK) {
        snprintf(kind, sizeof kind, "%s", curl_easy_strerror(res));
        snprintf(detail, sizeof detail, "%s", s->errbuf);
    } else {
        snprintf(kind, sizeof kind, "HTTP %ld", code);
        first_line(&s->body, detail, sizeof detail);
    }
    loadgen_stats_fail(r->st, s->request, s->img->name, kind, detail);
}

static void finish_request(runner *r, slot *s, CURLcode res)
{
    double ms = clock_ms() - s->t0;
    long code = 0;
    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &code);
    curl_multi_remove_handle(r->multi, s->easy);
    s->busy = false;
    r->active--;
    if (res == CURLE_OK && code == 200)
        record_answer(r, s, ms);
    else
        record_failure(r, s, res, code);
}

/* ---- the loop ---- */

/* Handles every finished transfer and refills its slot with the next request. */
static int reap(runner *r, imgcls_errbuf *eb)
{
    CURLMsg *m;
    int queued;
    while ((m = curl_multi_info_read(r->multi, &queued)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        char *priv = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
        CURLcode res = m->data.result; /* m is gone once the handle is removed */
        slot *s = (slot *)(void *)priv;
        finish_request(r, s, res);
        if (!interrupted && r->next < r->p->requests) {
            int rc = start_request(r, s, eb);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static int drive(runner *r, imgcls_errbuf *eb)
{
    int rc = 0;
    r->t_start = clock_ms();
    for (size_t i = 0; i < r->nslots && r->next < r->p->requests; i++) {
        rc = start_request(r, &r->slots[i], eb);
        if (rc)
            goto out;
    }
    while (r->active > 0) {
        int running = 0;
        CURLMcode mc = curl_multi_perform(r->multi, &running);
        if (mc) {
            rc = imgcls_fail(eb, IMGCLS_EIO, "curl_multi_perform: %s", curl_multi_strerror(mc));
            goto out;
        }
        rc = reap(r, eb);
        if (rc)
            goto out;
        if (r->active == 0)
            break;
        if (interrupted)
            break;
        progress_show(r, false);
        /* 100 ms at most, so that the bar moves and SIGINT is seen even when nothing arrives; a signal
         * also ends the poll early (curl treats EINTR as a timeout). */
        mc = curl_multi_poll(r->multi, NULL, 0, 100, NULL);
        if (mc) {
            rc = imgcls_fail(eb, IMGCLS_EIO, "curl_multi_poll: %s", curl_multi_strerror(mc));
            goto out;
        }
    }
out:
    /* Read here, not at the break: the signal may come while the last answers are being reaped. */
    r->st->interrupted = interrupted;
    r->st->elapsed_ms = clock_ms() - r->t_start;
    progress_show(r, true);
    return rc;
}

/* ---- set-up and tear-down ---- */

/* Appends one address of ai to the CURLOPT_RESOLVE entry being built in e. */
static void append_addr(imgcls_buf *e, const struct addrinfo *ai)
{
    char addr[INET6_ADDRSTRLEN];
    if (getnameinfo(ai->ai_addr, ai->ai_addrlen, addr, sizeof addr, NULL, 0, NI_NUMERICHOST) != 0)
        return;
    const char *sep = e->data[e->len - 1] == ':' ? "" : ",";
    if (ai->ai_family == AF_INET6)
        buf_printf(e, "%s[%s]", sep, addr);
    else
        buf_printf(e, "%s%s", sep, addr);
}

/* Resolves the URL's host once, up front, and returns a CURLOPT_RESOLVE list that pins it for every
 * request. This libcurl resolves names on a thread per transfer and does not share a lookup in
 * progress, so starting 10^4 transfers at once would start 10^4 resolver threads for one name, and
 * the run would measure the resolver. Returns NULL -- and lets each request resolve and report for
 * itself -- for a literal address, or when the lookup fails. */
static struct curl_slist *preresolve(const char *url)
{
    struct curl_slist *list = NULL;
    char *host = NULL, *port = NULL;
    struct addrinfo *ai = NULL;
    imgcls_buf e;
    buf_init(&e, 1024);
    CURLU *u = curl_url();
    if (!u || curl_url_set(u, CURLUPART_URL, url, 0) || curl_url_get(u, CURLUPART_HOST, &host, 0) ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT))
        goto out;
    unsigned char v4[4];
    if (host[0] == '[' || inet_pton(AF_INET, host, v4) == 1)
        goto out;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    if (getaddrinfo(host, NULL, &hints, &ai) != 0)
        goto out;
    if (buf_printf(&e, "%s:%s:", host, port) != 0)
        goto out;
    int n = 0;
    for (const struct addrinfo *a = ai; a && n < 8; a = a->ai_next, n++)
        append_addr(&e, a);
    if (e.data[e.len - 1] != ':')
        list = curl_slist_append(NULL, (const char *)e.data);
out:
    if (ai)
        freeaddrinfo(ai);
    buf_free(&e);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return list;
}

static int slot_init(runner *r, slot *s, imgcls_errbuf *eb)
{
    buf_init(&s->body, LOADGEN_MAX_BODY);
    s->easy = curl_easy_init();
    if (!s->easy)
        return IMGCLS_ENOMEM;
    CURL *e = s->easy;
    CURLcode c = curl_easy_setopt(e, CURLOPT_URL, r->p->url);
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    /* HTTP/1.1, one request per connection at a time, as the original clients did: the server sees
     * `concurrency` connections, not one HTTP/2 connection multiplexing them all. */
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, r->p->timeout_ms);
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    if (!c && r->resolve)
        c = curl_easy_setopt(e, CURLOPT_RESOLVE, r->resolve);
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_USERAGENT, "imgcls-loadgen");
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, body_write);
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)s);
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_ERRORBUFFER, s->errbuf);
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)s);
    if (c)
        return imgcls_fail(eb, IMGCLS_EINVAL, "cannot set up a request to %s: %s", r->p->url,
                           curl_easy_strerror(c));
    return 0;
}

static int runner_open(runner *r, imgcls_errbuf *eb)
{
    r->multi = curl_multi_init();
    if (!r->multi)
        return IMGCLS_ENOMEM;
    /* Idle connections kept for reuse: one per slot is all that can ever be reused. */
    curl_multi_setopt(r->multi, CURLMOPT_MAXCONNECTS, (long)r->p->concurrency);
    /* No "Expect: 100-continue": the original clients never sent it, and servers that ignore it (as
     * Python's http.server does) would make curl wait a second before every upload over 1 KiB. */
    r->headers = curl_slist_append(NULL, "Expect:");
    if (!r->headers)
        return IMGCLS_ENOMEM;
    r->resolve = preresolve(r->p->url);
    r->nslots = r->p->concurrency < r->p->requests ? r->p->concurrency : r->p->requests;
    r->slots = calloc(r->nslots, sizeof *r->slots);
    if (!r->slots)
        return IMGCLS_ENOMEM;
    for (size_t i = 0; i < r->nslots; i++) {
        int rc = slot_init(r, &r->slots[i], eb);
        if (rc)
            return rc;
    }
    return 0;
}

static void runner_close(runner *r)
{
    for (size_t i = 0; r->slots && i < r->nslots; i++) {
        slot *s = &r->slots[i];
        if (s->busy)
            curl_multi_remove_handle(r->multi, s->easy);
        curl_easy_cleanup(s->easy);
        curl_mime_free(s->mime);
        buf_free(&s->body);
    }
    free(r->slots);
    curl_multi_cleanup(r->multi);
    curl_slist_free_all(r->headers);
    curl_slist_free_all(r->resolve);
}

int loadgen_run(const loadgen_plan *p, loadgen_stats *st, imgcls_errbuf *eb)
{
    runner r = {.p = p, .st = st};
    r.prog.tty = isatty(STDERR_FILENO) == 1;
    /* SIGINT and SIGTERM end the run with a summary of what completed (a load run stopped by Ctrl-C or
     * `timeout` still wants its numbers). No SA_RESTART, so the signal also cuts the poll short.
     * SIGPIPE is ignored because a server that closes mid-upload must cost one request, not the
     * process (curl avoids it for plain sockets, not always inside TLS). */
    struct sigaction sa = {.sa_handler = on_stop_signal}, ign = {.sa_handler = SIG_IGN}, old_int, old_term,
                     old_pipe;
    sigemptyset(&sa.sa_mask);
    sigemptyset(&ign.sa_mask);
    interrupted = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGPIPE, &ign, &old_pipe);
    int rc = runner_open(&r, eb);
    if (rc) {
        if (eb && !eb->msg[0])
            imgcls_fail(eb, rc, "cannot set up libcurl: %s", imgcls_strerror(rc));
        goto out;
    }
    rc = drive(&r, eb);
out:
    runner_close(&r);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    return rc;
}
