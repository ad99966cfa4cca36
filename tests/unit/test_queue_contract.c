/* The queue port's contract suite (DESIGN.md §4): the same tests run against every registered backend,
 * each named by a URL factory. A new backend (SQS on moto) adds one row to `backends`.
 *
 * Tests assert behaviour, never timing: a wait of a few seconds is only an upper bound that a correct
 * backend meets with a wide margin. Child processes report through their exit status (cmocka's asserts
 * must not run in a forked child). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "aws_fixture.h"
#include "queue/queue.h"
#include "tmpdir.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct backend {
    const char *name;
    /* Writes the URL of queue `name` kept under dir, dead-lettering after max_receives. */
    void (*url)(const char *dir, const char *name, unsigned max_receives, char *out, size_t size);
    bool text_only; /* bodies are text (SQS: UTF-8 without control characters); binary is IMGCLS_EINVAL */
    /* May deliver a message twice to concurrent receivers within its visibility timeout. SQS standard
     * queues say so ("at least once ... occasionally more than one copy"), and moto's ReceiveMessage
     * does it under load; never lost either way. */
    bool may_duplicate;
} backend;

static void sqlite_url(const char *dir, const char *name, unsigned max_receives, char *out, size_t size)
{
    snprintf(out, size, "sqlite://%s/imgcls.db?queue=%s&max_receives=%u", dir, name, max_receives);
}

static void fault_sqlite_url(const char *dir, const char *name, unsigned max_receives, char *out,
                             size_t size)
{
    /* No rule after '#': the wrapper passes every call through, and must not change the behaviour. */
    snprintf(out, size, "fault:sqlite://%s/imgcls.db?queue=%s&max_receives=%u", dir, name, max_receives);
}

/* SQS on moto: the queue is created here (open does not create SQS queues), named after the test's
 * temporary directory so that no two tests share one. */
static void sqs_url(const char *dir, const char *name, unsigned max_receives, char *out, size_t size)
{
    char qname[96];
    aws_test_name(dir, name, qname, sizeof qname);
    if (aws_test_create_queue(qname, max_receives, out, size))
        snprintf(out, size, "sqs-queue-creation-failed");
}

static const backend backends[] = {
    {"sqlite", sqlite_url, false, false},
    {"fault(sqlite)", fault_sqlite_url, false, false},
};
static const backend aws_backends[] = {
    {"sqs (moto)", sqs_url, true, true},
};

typedef struct fixture {
    const backend *be;
    char dir[64];
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    fx->be = *state;
    if (tmpdir_make(fx->dir, sizeof fx->dir) != 0) {
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    tmpdir_remove(fx->dir);
    free(fx);
    return 0;
}

/* For forked children: no cmocka calls, NULL on failure. */
static queue *open_q_raw(const fixture *fx, const char *name, unsigned max_receives)
{
    char url[512];
    queue *q = NULL;
    fx->be->url(fx->dir, name, max_receives, url, sizeof url);
    return queue_open(url, &q, NULL) == 0 ? q : NULL;
}

static queue *open_q(const fixture *fx, const char *name, unsigned max_receives)
{
    char url[512];
    imgcls_errbuf eb = {{0}};
    queue *q = NULL;
    fx->be->url(fx->dir, name, max_receives, url, sizeof url);
    int rc = queue_open(url, &q, &eb);
    if (rc)
        fail_msg("queue_open %s: %s (%s)", url, imgcls_err_name(rc), eb.msg);
    return q;
}

static void send_str(queue *q, const char *s)
{
    int rc = queue_send(q, s, strlen(s));
    if (rc)
        fail_msg("send: %s (%s)", imgcls_err_name(rc), q->err.msg);
}

/* Receives at most one message; returns how many came. */
static size_t recv1(queue *q, int wait_ms, int visibility_s, queue_msg *m)
{
    size_t n = 99;
    memset(m, 0, sizeof *m);
    int rc = queue_receive(q, 1, wait_ms, visibility_s, m, &n);
    if (rc)
        fail_msg("receive: %s (%s)", imgcls_err_name(rc), q->err.msg);
    assert_true(n <= 1);
    return n;
}

static void assert_depth(queue *q, uint64_t visible, uint64_t in_flight)
{
    queue_depth d = {99, 99};
    assert_int_equal(queue_depth_get(q, &d), 0);
    assert_int_equal(d.visible, visible);
    assert_int_equal(d.in_flight, in_flight);
}

static void t_send_receive_delete(void **state)
{
    fixture *fx = *state;
    queue *q = open_q(fx, "basic", 5);
    send_str(q, "hello");
    queue_msg m;
    assert_int_equal(recv1(q, 1000, 30, &m), 1);
    assert_int_equal(m.len, 5);
    assert_memory_equal(m.body, "hello", 6); /* NUL-terminated */
    assert_int_equal(m.receive_count, 1);
    assert_true(m.id[0] && m.receipt[0]);
    assert_int_equal(queue_delete(q, m.receipt), 0);
    queue_msg_free(&m);
    assert_null(m.body);
    assert_depth(q, 0, 0);
    assert_int_equal(recv1(q, 0, 30, &m), 0);
    queue_close(q);
}

static void t_receive_batch(void **state)
{
    fixture *fx = *state;
    queue *q = open_q(fx, "batch", 5);
    for (int i = 0; i < 12; i++) {
        char s[16];
        snprintf(s, sizeof s, "m%d", i);
        send_str(q, s);
    }
    queue_msg m[QUEUE_MAX_BATCH];
    size_t n = 0;
    assert_int_equal(queue_receive(q, QUEUE_MAX_BATCH, 1000, 30, m, &n), 0);
    assert_int_equal(n, QUEUE_MAX_BATCH);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(m[i].id, m[j].id);
        assert_int_equal(queue_delete(q, m[i].receipt), 0);
        queue_msg_free(&m[i]);
    }
    assert_depth(q, 2, 0);
    /* Out-of-range batch sizes are refused, with nothing received. */
    n = 7;
    assert_int_equal(queue_receive(q, 0, 0, 30, m, &n), IMGCLS_EINVAL);
    assert_int_equal(n, 0);
    assert_int_equal(queue_receive(q, QUEUE_MAX_BATCH + 1, 0, 30, m, &n), IMGCLS_EINVAL);
    assert_depth(q, 2, 0);
    queue_close(q);
}

static void t_receive_empty(void **state)
{
    fixture *fx = *state;
    queue *q = open_q(fx, "empty", 5);
    queue_msg m;
    assert_int_equal(recv1(q, 0, 30, &m), 0);
    assert_int_equal(recv1(q, 200, 30, &m), 0);
    queue_close(q);
}

static void t_visibility_timeout(void **state)
{
    fixture *fx = *state;
    queue *q = open_q(fx, "vis", 5);
    send_str(q, "again");
    queue_msg a, b;
    assert_int_equal(recv1(q, 1000, 1, &a), 1);
    assert_int_equal(a.receive_count, 1);
    assert_depth(q, 0, 1);
    /* Not deleted: it comes back once its second of invisibility is over. */
    assert_int_equal(recv1(q, 5000, 30, &b), 1);
    assert_int_equal(b.receive_count, 2);
    assert_string_equal(a.id, b.id);
    assert_string_not_equal(a.receipt, b.receipt);
    assert_string_equal((char *)b.body, "again");
    int rc = queue_delete(q, a.receipt); /* a stale receipt: the contract allows either answer */
    assert_true(rc == 0 || rc == IMGCLS_ENOTFOUND);
    assert_int_equal(queue_delete(q, b.receipt), 0);
    assert_depth(q, 0, 0);
    queue_msg_free(&a);
    queue_msg_free(&b);
    queue_close(q);
}

static void t_change_visibility(void **state)
{
    fixture *fx = *state;
    queue *q = open_q(fx, "chvis", 5);
    send_str(q, "x");
    queue_msg m;
    assert_int_equal(recv1(q, 1000, 30, &m), 1);
    assert_int_equal(queue_change_visibility(q, m.receipt, 0), 0);
    queue_msg_free(&m);
    assert_int_equal(recv1(q, 1000, 1, &m), 1); /* visible again at once */
    assert_int_equal(m.receive_count, 2);
    /* Extending past the original 1 s keeps it hidden for a wait well beyond that second. */
    assert_int_equal(queue_change_visibility(q, m.receipt, 60), 0);
    queue_msg again;
    assert_int_equal(recv1(q, 1500, 30, &again), 0);
    assert_depth(q, 0, 1);
    assert_int_equal(queue_delete(q, m.receipt), 0);
    queue_msg_free(&m);
    queue_close(q);
}

static void t_dead_letter(void **state)
{
    fixture *fx = *state;
    queue *q = open_q(fx, "dl", 2);
    send_str(q, "poison");
    queue_msg m;
    for (unsigned i = 1; i <= 2; i++) {
        assert_int_equal(recv1(q, 1000, 30, &m), 1);
        assert_int_equal(m.receive_count, i);
        assert_int_equal(queue_change_visibility(q, m.receipt, 0), 0); /* "failed": back at once */
        queue_msg_free(&m);
    }
    /* A third receive would pass max_receives = 2: the message moves to dl-dlq instead. */
    assert_int_equal(recv1(q, 0, 30, &m), 0);
    assert_depth(q, 0, 0);
    queue *dlq = open_q(fx, "dl-dlq", 2);
    assert_depth(dlq, 1, 0);
    assert_int_equal(recv1(dlq, 1000, 30, &m), 1);
    assert_string_equal((char *)m.body, "poison");
    assert_int_equal(queue_delete(dlq, m.receipt), 0);
    queue_msg_free(&m);
    queue_close(dlq);
    queue_close(q);
}

static void t_depth(void **state)
{
    fixture *fx = *state;
    queue *q = open_q(fx, "depth", 5);
    queue *other = open_q(fx, "other", 5);
    assert_depth(q, 0, 0);
    send_str(q, "1");
    send_str(q, "2");
    send_str(q, "3");
    send_str(other, "not mine");
    assert_depth(q, 3, 0);
    queue_msg m;
    assert_int_equal(recv1(q, 0, 30, &m), 1);
    assert_depth(q, 2, 1);
    assert_int_equal(queue_delete(q, m.receipt), 0);
    assert_depth(q, 2, 0);
    assert_depth(other, 1, 0);
    queue_msg_free(&m);
    queue_close(other);
    queue_close(q);
}

static void t_body_limits(void **state)
{
    fixture *fx = *state;
    queue *q = open_q(fx, "big", 5);
    unsigned char *big = malloc(QUEUE_MAX_BODY + 1);
    assert_non_null(big);
    for (size_t i = 0; i <= QUEUE_MAX_BODY; i++)
        big[i] = fx->be->text_only ? (unsigned char)('a' + i % 26) : (unsigned char)(i * 7); /* binary: NULs */
    assert_int_equal(queue_send(q, big, QUEUE_MAX_BODY + 1), IMGCLS_ETOOBIG);
    if (fx->be->text_only) {
        assert_int_equal(queue_send(q, "bin\0ary", 7), IMGCLS_EINVAL);
        assert_int_equal(queue_send(q, "\xff\xfe", 2), IMGCLS_EINVAL);
    }
    assert_depth(q, 0, 0);
    assert_int_equal(queue_send(q, big, QUEUE_MAX_BODY), 0);
    queue_msg m;
    assert_int_equal(recv1(q, 1000, 30, &m), 1);
    assert_int_equal(m.len, QUEUE_MAX_BODY);
    assert_memory_equal(m.body, big, QUEUE_MAX_BODY);
    assert_int_equal(m.body[m.len], 0);
    assert_int_equal(queue_delete(q, m.receipt), 0);
    queue_msg_free(&m);
    free(big);
    queue_close(q);
}

/* The batch forms: every entry's own result, and the same effect as one call per entry. */
static void t_batches(void **state)
{
    fixture *fx = *state;
    queue *q = open_q(fx, "batches", 5);
    const void *bodies[3] = {"b0", "b1", "b2"};
    size_t lens[3] = {2, 2, 2};
    int rcs[QUEUE_MAX_BATCH] = {9, 9, 9};
    assert_int_equal(queue_send_batch(q, bodies, lens, 3, rcs), 0);
    assert_int_equal(rcs[0] | rcs[1] | rcs[2], 0);
    assert_depth(q, 3, 0);
    queue_msg m[QUEUE_MAX_BATCH];
    size_t n = 0, got = 0;
    const char *receipts[3];
    char seen[3] = {0};
    while (got < 3) {
        assert_int_equal(queue_receive(q, 3, 1000, 30, m + got, &n), 0);
        assert_true(n > 0);
        got += n;
    }
    for (size_t i = 0; i < 3; i++) {
        receipts[i] = m[i].receipt;
        assert_true(m[i].len == 2 && m[i].body[0] == 'b' && m[i].body[1] >= '0' && m[i].body[1] <= '2');
        seen[m[i].body[1] - '0'] = 1;
    }
    assert_true(seen[0] && seen[1] && seen[2]);
    assert_int_equal(queue_delete_batch(q, receipts, 3, rcs), 0);
    assert_int_equal(rcs[0] | rcs[1] | rcs[2], 0);
    assert_depth(q, 0, 0);
    for (size_t i = 0; i < 3; i++)
        queue_msg_free(&m[i]);
    queue_close(q);
}

static void t_delete_idempotent(void **state)
{
    fixture *fx = *state;
    queue *q = open_q(fx, "idem", 5);
    send_str(q, "once");
    queue_msg m;
    assert_int_equal(recv1(q, 1000, 30, &m), 1);
    assert_int_equal(queue_delete(q, m.receipt), 0);
    assert_int_equal(queue_delete(q, m.receipt), 0);
    assert_depth(q, 0, 0);
    queue_msg_free(&m);
    queue_close(q);
}

static void t_durable(void **state)
{
    fixture *fx = *state;
    queue *q = open_q(fx, "durable", 5);
    send_str(q, "survives close");
    queue_close(q);
    /* And a message sent by another process that has exited since. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        queue *c = open_q_raw(fx, "durable", 5);
        int rc = c ? queue_send(c, "survives exit", 13) : -1;
        queue_close(c);
        _exit(rc ? 1 : 0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    q = open_q(fx, "durable", 5);
    queue_msg m[2];
    size_t n = 0;
    assert_int_equal(queue_receive(q, 2, 1000, 30, m, &n), 0);
    if (n == 1) { /* a backend may hand out fewer than max; fetch the other */
        size_t more = 0;
        assert_int_equal(queue_receive(q, 1, 1000, 30, &m[1], &more), 0);
        n += more;
    }
    assert_int_equal(n, 2);
    bool closed = false, exited = false;
    for (size_t i = 0; i < n; i++) {
        closed |= strcmp((char *)m[i].body, "survives close") == 0;
        exited |= strcmp((char *)m[i].body, "survives exit") == 0;
        queue_msg_free(&m[i]);
    }
    assert_true(closed && exited);
    queue_close(q);
}

/* Waits (bounded) until process pid sleeps, so that the send below usually finds a receiver blocked in
 * its long poll rather than one that has not looked yet. Either way the test's assertion holds; this
 * only makes it exercise the wake-up path. */
static void wait_until_sleeping(pid_t pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    for (int i = 0; i < 400; i++) {
        FILE *f = fopen(path, "r");
        size_t got = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f)
            fclose(f);
        buf[got] = 0;
        char *rp = strrchr(buf, ')');
        if (rp && rp[1] == ' ' && rp[2] == 'S')
            return;
        nanosleep(&(struct timespec){.tv_nsec = 5 * 1000 * 1000}, NULL);
    }
}

static void t_long_poll_wakes(void **state)
{
    fixture *fx = *state;
    queue *q = open_q(fx, "wake", 5);
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        queue *c = open_q_raw(fx, "wake", 5);
        queue_msg m = {0};
        size_t n = 0;
        ssize_t w = write(ready[1], "r", 1);
        (void)w;
        /* 5 s: far beyond a correct wake-up, and the wait ends empty if the send goes unheard. */
        int rc = c ? queue_receive(c, 1, 5000, 30, &m, &n) : -1;
        int ok = rc == 0 && n == 1 && strcmp((char *)m.body, "ding") == 0;
        if (ok)
            ok = queue_delete(c, m.receipt) == 0;
        queue_msg_free(&m);
        queue_close(c);
        _exit(ok ? 0 : 1);
    }
    close(ready[1]);
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);
    wait_until_sleeping(pid);
    send_str(q, "ding");
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_depth(q, 0, 0);
    queue_close(q);
}

/* Several processes open the same brand-new queue at the same moment, as `imgcls up` does on a fresh
 * data directory: every open succeeds and every send lands. */
static void t_concurrent_open(void **state)
{
    fixture *fx = *state;
    enum { N = 6 };
    int barrier[2];
    pid_t pids[N];
    assert_int_equal(pipe(barrier), 0);
    for (int k = 0; k < N; k++) {
        pids[k] = fork();
        assert_true(pids[k] >= 0);
        if (pids[k] == 0) {
            char c;
            close(barrier[1]);
            ssize_t r = read(barrier[0], &c, 1); /* 0 once the parent closes its end: all go at once */
            (void)r;
            queue *q = open_q_raw(fx, "fresh", 5);
            int rc = q ? queue_send(q, "hi", 2) : -1;
            queue_close(q);
            _exit(rc ? 1 : 0);
        }
    }
    close(barrier[0]);
    close(barrier[1]);
    for (int k = 0; k < N; k++) {
        int status = 0;
        assert_int_equal(waitpid(pids[k], &status, 0), pids[k]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    queue *q = open_q(fx, "fresh", 5);
    assert_depth(q, N, 0);
    queue_close(q);
}

enum { CHILDREN = 4, PER_CHILD = 50 };

/* One of the many-process children: sends its share, then drains the queue, reporting each body it
 * received as one line on the pipe (a write of at most PIPE_BUF bytes is atomic). */
static int many_child(const fixture *fx, int k, int out)
{
    queue *q = open_q_raw(fx, "many", 5);
    int rc = q ? 0 : -1;
    for (int i = 0; i < PER_CHILD && !rc; i++) {
        char s[32];
        int n = snprintf(s, sizeof s, "c%d-%d", k, i);
        rc = queue_send(q, s, (size_t)n);
    }
    for (size_t n = 1; !rc && n > 0;) {
        queue_msg m[QUEUE_MAX_BATCH];
        rc = queue_receive(q, QUEUE_MAX_BATCH, 300, 60, m, &n);
        for (size_t i = 0; i < n; i++) {
            char line[64];
            int len = snprintf(line, sizeof line, "%s\n", (char *)m[i].body);
            if (!rc && write(out, line, (size_t)len) != len)
                rc = -1;
            if (!rc)
                rc = queue_delete(q, m[i].receipt);
            queue_msg_free(&m[i]);
        }
    }
    queue_close(q);
    return rc ? 1 : 0;
}

static void t_many_processes(void **state)
{
    fixture *fx = *state;
    int fds[2];
    pid_t pids[CHILDREN];
    assert_int_equal(pipe(fds), 0);
    for (int k = 0; k < CHILDREN; k++) {
        pids[k] = fork();
        assert_true(pids[k] >= 0);
        if (pids[k] == 0) {
            close(fds[0]);
            _exit(many_child(fx, k, fds[1]));
        }
    }
    close(fds[1]);
    /* Read while they run: the pipe could fill up otherwise. */
    static char text[CHILDREN * PER_CHILD * 16 + 1];
    size_t len = 0;
    ssize_t got;
    while (len < sizeof text - 1 && (got = read(fds[0], text + len, sizeof text - 1 - len)) > 0)
        len += (size_t)got;
    text[len] = 0;
    close(fds[0]);
    for (int k = 0; k < CHILDREN; k++) {
        int status = 0;
        assert_int_equal(waitpid(pids[k], &status, 0), pids[k]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    /* Every message exactly once: none lost, none delivered twice (visibility 60 s outlasts the test);
     * at least once where the backend may duplicate. */
    static unsigned char seen[CHILDREN][PER_CHILD];
    memset(seen, 0, sizeof seen);
    size_t distinct = 0;
    for (char *p = text; *p;) {
        int k = -1, i = -1;
        assert_int_equal(sscanf(p, "c%d-%d", &k, &i), 2);
        assert_true(k >= 0 && k < CHILDREN && i >= 0 && i < PER_CHILD);
        if (!fx->be->may_duplicate)
            assert_int_equal(seen[k][i], 0);
        distinct += !seen[k][i];
        seen[k][i] = 1;
        p = strchr(p, '\n');
        assert_non_null(p);
        p++;
    }
    assert_int_equal(distinct, CHILDREN * PER_CHILD);
    queue *q = open_q(fx, "many", 5);
    assert_depth(q, 0, 0);
    queue_close(q);
}

static int run_backend(const backend *be)
{
#define CONTRACT(f) cmocka_unit_test_prestate_setup_teardown(f, setup, teardown, (void *)be)
    const struct CMUnitTest tests[] = {
        CONTRACT(t_send_receive_delete), CONTRACT(t_receive_batch),   CONTRACT(t_receive_empty),
        CONTRACT(t_visibility_timeout),  CONTRACT(t_change_visibility), CONTRACT(t_dead_letter),
        CONTRACT(t_depth),               CONTRACT(t_body_limits),     CONTRACT(t_delete_idempotent),
        CONTRACT(t_durable),             CONTRACT(t_long_poll_wakes), CONTRACT(t_many_processes),
        CONTRACT(t_concurrent_open),     CONTRACT(t_batches),
    };
#undef CONTRACT
    print_message("queue backend: %s\n", be->name);
    return cmocka_run_group_tests_name(be->name, tests, NULL, NULL);
}

/* ---- the registry, the sqlite URL, and the fault wrapper itself ---- */

static void t_open_errors(void **state)
{
    fixture *fx = *state;
    static const struct {
        const char *fmt; /* %s: the temporary directory */
        int rc;
    } cases[] = {
        {"nope://x", IMGCLS_EUNSUPPORTED},
        {"not a url", IMGCLS_EINVAL},
        {"", IMGCLS_EINVAL},
        {"sqlite://%s/q.db", IMGCLS_EINVAL},                      /* no queue */
        {"sqlite://%s/q.db?queue=", IMGCLS_EINVAL},
        {"sqlite://%s/q.db?queue=a.b", IMGCLS_EINVAL},            /* name charset */
        {"sqlite://%s/q.db?queue=a&max_receives=x", IMGCLS_EINVAL},
        {"sqlite://%s/q.db?queue=a&max_receives=-1", IMGCLS_EINVAL},
        {"sqlite://%s/q.db?queue=a&colour=blue", IMGCLS_EINVAL},  /* typos are not ignored */
        {"sqlite://%s/q.db?queue=a&sync=sometimes", IMGCLS_EINVAL},
        {"sqlite://?queue=a", IMGCLS_EINVAL},                     /* no path */
        {"sqlite://%s/missing-dir/q.db?queue=a", IMGCLS_EIO},
        {"fault:", IMGCLS_EINVAL},
        {"fault:sqlite://%s/q.db?queue=a#op=bogus", IMGCLS_EINVAL},
        {"fault:sqlite://%s/q.db?queue=a#code=ENOPE", IMGCLS_EINVAL},
        {"fault:sqlite://%s/q.db?queue=a#fail=0", IMGCLS_EINVAL},
        {"fault:sqlite://%s/q.db?queue=a#fail=x", IMGCLS_EINVAL},
        {"fault:sqlite://%s/q.db?queue=a#when=later", IMGCLS_EINVAL},
        {"fault:sqlite://%s/q.db?queue=a#op=open&code=EBACKEND", IMGCLS_EBACKEND},
        {"fault:nope://x", IMGCLS_EUNSUPPORTED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char url[512];
        imgcls_errbuf eb = {{0}};
        queue *q = (queue *)&eb; /* must come back NULL */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        snprintf(url, sizeof url, cases[i].fmt, fx->dir);
#pragma GCC diagnostic pop
        int rc = queue_open(url, &q, &eb);
        if (rc != cases[i].rc)
            fail_msg("%s: got %s, want %s (%s)", url, imgcls_err_name(rc), imgcls_err_name(cases[i].rc),
                     eb.msg);
        assert_null(q);
        assert_true(eb.msg[0] != 0);
    }
}

static queue *open_fault(const fixture *fx, const char *rule)
{
    char url[512];
    imgcls_errbuf eb = {{0}};
    queue *q = NULL;
    snprintf(url, sizeof url, "fault:sqlite://%s/imgcls.db?queue=f#%s", fx->dir, rule);
    int rc = queue_open(url, &q, &eb);
    if (rc)
        fail_msg("queue_open %s: %s (%s)", url, imgcls_err_name(rc), eb.msg);
    return q;
}

static void t_fault_nth_send(void **state)
{
    queue *q = open_fault(*state, "op=send&fail=2&code=EBACKEND");
    assert_int_equal(queue_send(q, "a", 1), 0);
    assert_int_equal(queue_send(q, "b", 1), IMGCLS_EBACKEND);
    assert_non_null(strstr(q->err.msg, "send"));
    assert_int_equal(queue_send(q, "c", 1), 0);
    assert_depth(q, 2, 0); /* the failed send sent nothing */
    queue_close(q);
}

static void t_fault_receive(void **state)
{
    queue *q = open_fault(*state, "op=receive&code=ETIMEDOUT");
    send_str(q, "m");
    queue_msg m = {0};
    size_t n = 5;
    assert_int_equal(queue_receive(q, 1, 0, 30, &m, &n), IMGCLS_ETIMEDOUT);
    assert_int_equal(n, 0);
    assert_depth(q, 1, 0); /* nothing was taken */
    assert_int_equal(recv1(q, 1000, 30, &m), 1);
    assert_int_equal(queue_delete(q, m.receipt), 0);
    queue_msg_free(&m);
    queue_close(q);
}

static void t_fault_times(void **state)
{
    queue *q = open_fault(*state, "op=delete&fail=1&times=0");
    send_str(q, "m");
    queue_msg m;
    assert_int_equal(recv1(q, 1000, 30, &m), 1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(queue_delete(q, m.receipt), IMGCLS_EIO); /* default code, every call */
    assert_depth(q, 0, 1);
    queue_msg_free(&m);
    queue_close(q);

    q = open_fault(*state, "op=depth&fail=2&times=2&code=EBUSY");
    queue_depth d;
    assert_int_equal(queue_depth_get(q, &d), 0);
    assert_int_equal(queue_depth_get(q, &d), IMGCLS_EBUSY);
    assert_int_equal(queue_depth_get(q, &d), IMGCLS_EBUSY);
    assert_int_equal(queue_depth_get(q, &d), 0);
    queue_close(q);
}

static void t_fault_any(void **state)
{
    queue *q = open_fault(*state, "fail=3");
    queue_depth d;
    assert_int_equal(queue_send(q, "a", 1), 0);
    assert_int_equal(queue_depth_get(q, &d), 0);
    assert_int_equal(queue_send(q, "b", 1), IMGCLS_EIO); /* third call of any kind */
    assert_int_equal(queue_depth_get(q, &d), 0);
    assert_int_equal(d.visible, 1);
    queue_close(q);
}

static void t_close_null(void **state)
{
    (void)state;
    queue_close(NULL);
    queue_msg_free(NULL);
}

int main(void)
{
    int failed = 0;
    for (size_t i = 0; i < sizeof backends / sizeof *backends; i++)
        failed += run_backend(&backends[i]);
    for (size_t i = 0; i < sizeof aws_backends / sizeof *aws_backends; i++) {
        if (aws_test_enabled())
            failed += run_backend(&aws_backends[i]);
        else
            print_message("queue backend %s: skipped here; tests/aws/test_contract_aws.py runs it against moto\n",
                          aws_backends[i].name);
    }
    const backend *be = &backends[0];
#define WITH_DIR(f) cmocka_unit_test_prestate_setup_teardown(f, setup, teardown, (void *)be)
    const struct CMUnitTest others[] = {
        WITH_DIR(t_open_errors), WITH_DIR(t_fault_nth_send), WITH_DIR(t_fault_receive),
        WITH_DIR(t_fault_times), WITH_DIR(t_fault_any),      cmocka_unit_test(t_close_null),
    };
#undef WITH_DIR
    failed += cmocka_run_group_tests_name("registry and fault wrapper", others, NULL, NULL);
    return failed;
}
