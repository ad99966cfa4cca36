/* The web tier's request path, as a client sees it: each input becomes the bytes of one HTTP request,
 * sent over loopback to a real web server (web_server_start) started once in LLVMFuzzerInitialize. So
 * MHD's HTTP parser and multipart post processor and our on_part, body_ok and file name checks
 * (src/web/web_upload.c) all see arbitrary bytes, through the same code the binary runs.
 *
 * The server's request queue is a fault: wrapper that fails every send, so an upload that passes every
 * check is answered 503 at once instead of waiting for a worker; nothing else is faked. Its queue and
 * buckets are in a temporary directory, removed at exit.
 *
 * The first input byte says how the rest becomes a request (bits 0-1), and whether it asks for JSON
 * (bit 2):
 *   0  the rest is a multipart body, sent with a fixed header (boundary "XyZ") and its Content-Length
 *   1  the rest is "headers\r\n\r\nbody" after a fixed request line; Content-Length is added
 *   2  like 0, but sent with Transfer-Encoding: chunked, in chunks of 1, 7, 64, ... bytes
 *   3  the rest is sent as it is (any bytes, any method, any route), but with its header ended and
 *      without NUL bytes in it (see build_request)
 * Modes 0-2 make the Content-Length right, so that mutations of the body reach the end-of-body checks
 * instead of leaving MHD waiting for bytes that never come.
 *
 * Invariants: a complete request with our header (modes 0 and 2) always gets an answer, and no client
 * bytes make the server answer 500 (that would be our bug, not the client's). NUL bytes in a header
 * the fuzzer writes (modes 1 and 3) become spaces: MHD 0.9.75 neither answers nor closes on them. */
#include "fuzz_util.h"

#include "common/buf.h"
#include "common/log.h"
#include "web/web_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Small limits, so that the 413 paths (over --max-body, and past twice that the closed connection)
 * are reached by inputs of a few KiB. Everything inline: the claim check is store code, not parsing. */
#define FUZZ_MAX_BODY 4096u
#define FUZZ_REPLY_WAIT_MS 10000 /* a complete request unanswered this long is a hang */
#define FUZZ_RAW_WAIT_MS 250     /* raw bytes may be a request MHD still waits on: give up quietly */

static web_server *srv;
static const char *root;
static char url_queue[256], url_reply[256], url_in[256], url_out[256];
static unsigned long seen[6]; /* answers by status class: [0] none, [1] 1xx ... [5] 5xx */
static unsigned long slow;    /* exchanges over 100 ms */

static void at_exit(void)
{
    fprintf(stderr, "fuzz_web_upload: answers: none %lu, 2xx %lu, 4xx %lu, 5xx %lu; over 100 ms: %lu\n",
            seen[0], seen[2], seen[4], seen[5], slow);
    /* Stopped before the directory goes (this runs first: atexit order), or the dispatcher, still
     * long-polling, would make its doorbell file again. */
    if (web_server_stop(srv))
        free(srv);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    log_set_level("error"); /* one "refused" line per input would drown libFuzzer's own output */
    /* Removed at exit, after at_exit has stopped the server. */
    root = fuzz_tmp_dir("web");
    atexit(at_exit);
    snprintf(url_queue, sizeof url_queue, "fault:sqlite://%s/q.db?queue=requests&sync=normal#op=send&times=0",
             root);
    snprintf(url_reply, sizeof url_reply, "sqlite://%s/q.db?queue=replies&sync=normal", root);
    snprintf(url_in, sizeof url_in, "file://%s/in", root);
    snprintf(url_out, sizeof url_out, "file://%s/out", root);
    srv = calloc(1, sizeof *srv);
    FUZZ_CHECK(srv != NULL);
    srv->cfg = (web_config){.port = 0, .bind = "127.0.0.1", .queue_url = url_queue, .reply_url = url_reply,
                            .in_url = url_in, .out_url = url_out, .max_body = FUZZ_MAX_BODY, .timeout_s = 1,
                            .max_waiting = 64, .threads = 1, .inline_max = FUZZ_MAX_BODY};
    imgcls_errbuf eb = {{0}};
    if (web_server_start(srv, &eb)) {
        fprintf(stderr, "fuzz_web_upload: cannot start the web server: %s\n", eb.msg);
        abort();
    }
    return 0;
}

/* The first "\r\n\r\n" in p[0..n) (memmem is a GNU extension). */
static const char *find_crlf2(const void *p, size_t n)
{
    const char *s = p;
    for (size_t i = 0; i + 4 <= n; i++)
        if (memcmp(s + i, "\r\n\r\n", 4) == 0)
            return s + i;
    return NULL;
}

static void put(imgcls_buf *b, const void *p, size_t n)
{
    FUZZ_CHECK(buf_append(b, p, n) == 0);
}

static void puts_(imgcls_buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* Appends header bytes with each NUL made a space (see build_request). */
static void put_header(imgcls_buf *b, const uint8_t *p, size_t n)
{
    size_t at = b->len;
    put(b, p, n);
    for (size_t i = 0; i < n; i++)
        if (b->data[at + i] == 0)
            b->data[at + i] = ' ';
}

/* Turns an input into the bytes of a request (see the top of the file). */
static void build_request(const uint8_t *data, size_t size, imgcls_buf *req)
{
    unsigned mode = size ? data[0] & 3u : 0;
    bool json = size && (data[0] & 4u);
    const uint8_t *rest = size ? data + 1 : data;
    size_t n = size ? size - 1 : 0;
    if (mode == 3) {
        /* MHD 0.9.75 ignores EOF while a request's header is incomplete, or has a NUL byte in it, and
         * holds the connection until its idle timeout (60 s) without calling us. So the header is always
         * ended, and a NUL in it becomes a space: what reaches our code is unchanged, and the fuzzer
         * does not spend its time waiting. */
        while (n > 0 && (*rest == '\r' || *rest == '\n')) { /* MHD skips these before a request line */
            rest++;
            n--;
        }
        const char *end = find_crlf2(rest, n);
        size_t hlen = end ? (size_t)(end - (const char *)rest) : n;
        put_header(req, rest, hlen);
        put(req, rest + hlen, n - hlen);
        if (!end)
            puts_(req, "\r\n\r\n");
        return;
    }
    puts_(req, "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if (json)
        puts_(req, "Accept: application/json\r\n");
    const uint8_t *body = rest;
    size_t blen = n;
    if (mode == 1) {
        const uint8_t *end = (const uint8_t *)find_crlf2(rest, n);
        size_t hlen = end ? (size_t)(end - rest) : n;
        put_header(req, rest, hlen);
        puts_(req, "\r\n");
        body = end ? end + 4 : rest + n;
        blen = (size_t)(rest + n - body);
    } else {
        puts_(req, "Content-Type: multipart/form-data; boundary=XyZ\r\n");
    }
    if (mode == 2) {
        puts_(req, "Transfer-Encoding: chunked\r\n\r\n");
        static const size_t sizes[] = {1, 7, 64, 1000};
        for (size_t off = 0, i = 0; off < blen; i++) {
            size_t c = sizes[i % (sizeof sizes / sizeof *sizes)];
            if (c > blen - off)
                c = blen - off;
            FUZZ_CHECK(buf_printf(req, "%zx\r\n", c) == 0);
            put(req, body + off, c);
            puts_(req, "\r\n");
            off += c;
        }
        puts_(req, "0\r\n\r\n");
        return;
    }
    FUZZ_CHECK(buf_printf(req, "Content-Length: %zu\r\n\r\n", blen) == 0);
    put(req, body, blen);
}

static int connect_server(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)srv->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    FUZZ_CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
    return fd;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The status of the first final (non-1xx) answer in resp[0..len), and whether all of it is there: its
 * header, and as many body bytes as its Content-Length says (to EOF without one). -1: not yet. */
static int parse_answer(const char *resp, size_t len, bool eof, bool head, int *status)
{
    size_t pos = 0;
    for (;;) {
        const char *end = find_crlf2(resp + pos, len - pos);
        if (!end)
            return -1;
        const char *line = resp + pos;
        size_t hlen = (size_t)(end - line) + 4;
        if (hlen < 12 || memcmp(line, "HTTP/1.", 7) != 0)
            return -1;
        int st = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
        if (st >= 100 && st < 200) {
            pos += hlen;
            continue;
        }
        *status = st;
        const char *cl = NULL;
        for (const char *p = line; p + 15 < end; p++)
            if ((p[0] == '\n') && strncasecmp(p + 1, "Content-Length:", 15) == 0) {
                cl = p + 16;
                break;
            }
        if (head || st == 204 || st == 304)
            return 0;
        if (!cl)
            return eof ? 0 : -1;
        size_t want = (size_t)strtoull(cl, NULL, 10);
        return len - pos - hlen >= want ? 0 : -1;
    }
}

/* Sends req and reads until the answer is complete, the server closes, or the wait ends. Returns the
 * status, 0 for a close without an answer, or -1 when the wait ran out. */
static int exchange(const imgcls_buf *req, int wait_ms, bool head)
{
    int fd = connect_server();
    char resp[16384];
    size_t off = 0, rlen = 0;
    int status = 0, done = -1;
    bool wr_open = true, eof = false;
    long long deadline = now_ms() + wait_ms;
    while (done < 0 && !eof) {
        long long left = deadline - now_ms();
        if (left <= 0)
            break;
        struct pollfd p = {.fd = fd, .events = (short)(POLLIN | (wr_open ? POLLOUT : 0))};
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        if (wr_open && (p.revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = send(fd, req->data + off, req->len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0)
                off += (size_t)w;
            if (w < 0 || off == req->len) {
                shutdown(fd, SHUT_WR); /* the whole request is out: what MHD reads next is EOF */
                wr_open = false;
            }
        }
        if (p.revents & (POLLIN | POLLERR | POLLHUP)) {
            ssize_t r = recv(fd, resp + rlen, sizeof resp - 1 - rlen, MSG_DONTWAIT);
            if (r > 0)
                rlen += (size_t)r;
            else if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
                eof = true;
            if (rlen == sizeof resp - 1)
                eof = true; /* an answer this long is complete enough to judge */
        }
        done = parse_answer(resp, rlen, eof, head, &status);
    }
    if (done < 0 && eof)
        done = parse_answer(resp, rlen, true, head, &status);
    close(fd);
    if (done < 0)
        return eof ? 0 : -1;
    return status;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bool raw = size && (data[0] & 3u) == 3;
    /* Only modes 0 and 2 have a header entirely of ours: with the fuzzer's headers (1, 3), MHD itself
     * may wait on (Transfer-Encoding with a plain body, Expect...), so an unanswered request there is
     * given up quietly instead of being a crash. */
    bool ours = size == 0 || (data[0] & 1u) == 0;
    /* A request of nothing but line ends: MHD skips empty lines before a request line and waits for
     * one, past our EOF, as for an incomplete header. Nothing of ours would run. */
    size_t lead = raw ? 1 : 0;
    while (raw && lead < size && (data[lead] == '\r' || data[lead] == '\n'))
        lead++;
    if (raw && lead == size)
        return 0;
    imgcls_buf req;
    buf_init(&req, 2 * size + 4096);
    build_request(data, size, &req);
    bool head = raw && req.len >= 4 && memcmp(req.data, "HEAD", 4) == 0;
    long long t0 = now_ms();
    int status = exchange(&req, ours ? FUZZ_REPLY_WAIT_MS : FUZZ_RAW_WAIT_MS, head);
    long long ms = now_ms() - t0;
    if (ms > 100) {
        slow++;
        if (getenv("FUZZ_WEB_VERBOSE")) /* what is slow, to keep the harness fast */
        {
            fprintf(stderr, "fuzz_web_upload: %lld ms, status %d, mode %d: ", ms, status, size ? data[0] & 7 : -1);
            for (size_t i = 1; i < size && i < 160; i++)
                fprintf(stderr, data[i] >= 32 && data[i] < 127 ? "%c" : "\\x%02x", data[i]);
            fprintf(stderr, "\n");
        }
    }
    buf_free(&req);
    if (status == -1 && ours) {
        fprintf(stderr, "fuzz_web_upload: a complete request got no answer in %d ms\n", FUZZ_REPLY_WAIT_MS);
        abort();
    }
    if (status == 500) {
        fprintf(stderr, "fuzz_web_upload: the server answered 500 to a client's bytes\n");
        abort();
    }
    seen[status > 0 && status < 600 ? status / 100 : 0]++;
    return 0;
}
