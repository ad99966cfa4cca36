/* The local queue backend: every queue lives in one SQLite table (URL syntax in queue.h).
 *
 * Why SQLite: it gives durability, transactions and safe access from many processes with no server to
 * run. WAL mode lets readers (depth, the scaler) run beside a writer; every state change (send, receive,
 * delete, change_visibility) is one short write transaction, and a receive is a single BEGIN IMMEDIATE
 * transaction, so two processes can never take the same message while it is in flight.
 *
 * Long polling. SQLite has no way to wake another process, and polling the table every few ms would be
 * the busy-polling the design rules out. Instead each queue has a doorbell file next to the database,
 * `<db>.<queue>.bell`: whoever makes a message visible (send, change_visibility, a dead-letter move)
 * writes one byte to it after committing, and a waiting receive watches it with inotify. The waiter arms
 * the watch before it looks at the table, so a send that commits after the look always rings a bell the
 * waiter will hear. Messages that become visible by themselves (a visibility timeout running out) ring no
 * bell, so the waiter also caps its sleep at the earliest visible_at in its queue. Rejected: a named
 * pipe (a writer blocks or fails when nobody reads; one reader eats the wake-up of the others) and
 * SQLite's update hook (it only sees this connection's writes). inotify needs a local file system, as
 * WAL mode does anyway.
 *
 * Times in the table are wall-clock milliseconds (CLOCK_REALTIME), because they must mean the same
 * thing in every process and after a reboot; a step of the clock only makes messages visible early or
 * late. */
#include "common/clock.h"
#include "queue/queue_backend.h"
#include "common/url.h"

#include <sqlite3.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define SQ_MAX_NAME 80           /* as SQS: 1..80 of [A-Za-z0-9_-] */
#define SQ_MAX_VISIBILITY 43200  /* as SQS: 12 hours */
#define SQ_DEFAULT_MAX_RECEIVES 5
#define SQ_RECEIPT_RANDOM 16     /* bytes of randomness in a receipt */

enum sq_stmt {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_INSERT,
    ST_READY,
    ST_RECEIVED,
    ST_DEAD,
    ST_NEXT,
    ST_DELETE,
    ST_EXISTS,
    ST_VISIBILITY,
    ST_DEPTH,
    ST_COUNT
};

/* ST_READY takes messages in the order they became visible (a new one when it was sent, a returning
 * one when its visibility ran out), which is roughly FIFO, as SQS's standard queues are. That is also
 * the order of the (queue, visible_at) index, whose entries end in the rowid, so a backlog of any size
 * costs no sort; ORDER BY id would sort every visible row on every receive. */
static const char *const sq_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_INSERT] = "INSERT INTO queue_msg(queue, body, visible_at, receive_count, created) "
                  "VALUES(?1, ?2, ?3, 0, ?3)",
    [ST_READY] = "SELECT id, body, receive_count FROM queue_msg WHERE queue = ?1 AND visible_at <= ?2 "
                 "ORDER BY visible_at, id LIMIT ?3",
    [ST_RECEIVED] = "UPDATE queue_msg SET visible_at = ?2, receive_count = receive_count + 1, "
                    "receipt = ?3 WHERE id = ?1",
    [ST_DEAD] = "UPDATE queue_msg SET queue = ?2, visible_at = ?3, receive_count = 0, receipt = NULL "
                "WHERE id = ?1",
    [ST_NEXT] = "SELECT MIN(visible_at) FROM queue_msg WHERE queue = ?1",
    [ST_DELETE] = "DELETE FROM queue_msg WHERE id = ?1 AND queue = ?2 AND receipt = ?3",
    [ST_EXISTS] = "SELECT 1 FROM queue_msg WHERE id = ?1 AND queue = ?2",
    [ST_VISIBILITY] = "UPDATE queue_msg SET visible_at = ?4 WHERE id = ?1 AND queue = ?2 AND receipt = ?3",
    [ST_DEPTH] = "SELECT COALESCE(SUM(visible_at <= ?2), 0), COALESCE(SUM(visible_at > ?2), 0) "
                 "FROM queue_msg WHERE queue = ?1",
};

/* AUTOINCREMENT so that an id is never reused: ids show up in logs and receipts, and a reused one
 * would make an old receipt name a new message. */
static const char sq_schema[] =
    "BEGIN IMMEDIATE;"
    "CREATE TABLE IF NOT EXISTS queue_msg("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " queue TEXT NOT NULL,"
    " body BLOB NOT NULL,"
    " visible_at INTEGER NOT NULL," /* ms since the epoch */
    " receive_count INTEGER NOT NULL DEFAULT 0,"
    " receipt TEXT,"                /* of the latest delivery; NULL before the first */
    " created INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS queue_msg_visible ON queue_msg(queue, visible_at);"
    "COMMIT;";

typedef struct sq_queue {
    struct queue base; /* first, so that a queue * is an sq_queue * */
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    char name[SQ_MAX_NAME + 1];
    char dlq[SQ_MAX_NAME + 5];
    char bell[PATH_MAX];
    char dlq_bell[PATH_MAX];
    unsigned max_receives; /* 0: never dead-letter */
    int64_t busy_ms;       /* how long to wait for a lock before IMGCLS_EBUSY */
    int64_t busy_since;    /* when the current wait for a lock began (monotonic ms) */
    int ino;               /* inotify fd, made on the first waiting receive; -1 before */
    int wd;                /* watch on bell; -1 when not armed */
} sq_queue;

typedef struct sq_config {
    char path[PATH_MAX];
    bool sync_full;
    unsigned long busy_ms;
} sq_config;

/* One row picked by ST_READY, held until it is delivered or dead-lettered. */
typedef struct sq_row {
    int64_t id;
    unsigned count;
    unsigned char *body;
    size_t len;
} sq_row;

static int64_t sq_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int sq_fail(sq_queue *q, int src, const char *what)
{
    int rc;
    switch (src & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED: rc = IMGCLS_EBUSY; break;
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY: rc = IMGCLS_EIO; break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: rc = IMGCLS_ECORRUPT; break;
    case SQLITE_NOMEM: rc = IMGCLS_ENOMEM; break;
    default: rc = IMGCLS_EBACKEND; break;
    }
    return imgcls_fail(&q->base.err, rc, "sqlite: %s: %s", what, q->db ? sqlite3_errmsg(q->db) : "?");
}

/* Runs a statement that returns no rows, then resets it. */
static int sq_run(sq_queue *q, enum sq_stmt s)
{
    int src = sqlite3_step(q->st[s]);
    sqlite3_reset(q->st[s]);
    return src == SQLITE_DONE ? 0 : sq_fail(q, src, sq_sql[s]);
}

static bool sq_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > SQ_MAX_NAME)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(s[i] >= 'a' && s[i] <= 'z') && !(s[i] >= 'A' && s[i] <= 'Z') && !(s[i] >= '0' && s[i] <= '9') &&
            s[i] != '-' && s[i] != '_')
            return false;
    return true;
}

static int sq_param(sq_queue *q, sq_config *c, const char *key, const char *val, imgcls_errbuf *eb)
{
    unsigned long v;
    if (strcmp(key, "queue") == 0) {
        if (!sq_name_valid(val))
            return imgcls_fail(eb, IMGCLS_EINVAL, "sqlite: queue name must be 1..80 of [A-Za-z0-9_-]");
        size_t n = strlen(val); /* <= SQ_MAX_NAME: checked above */
        memcpy(q->name, val, n + 1);
        memcpy(q->dlq, val, n);
        memcpy(q->dlq + n, "-dlq", 5);
    } else if (strcmp(key, "max_receives") == 0) {
        if (url_parse_ulong(val, 0, 1000, &v))
            return imgcls_fail(eb, IMGCLS_EINVAL, "sqlite: max_receives must be 0..1000");
        q->max_receives = (unsigned)v;
    } else if (strcmp(key, "sync") == 0) {
        if (strcmp(val, "full") != 0 && strcmp(val, "normal") != 0)
            return imgcls_fail(eb, IMGCLS_EINVAL, "sqlite: sync must be full or normal");
        c->sync_full = val[0] == 'f';
    } else if (strcmp(key, "busy_timeout_ms") == 0) {
        if (url_parse_ulong(val, 0, 600000, &c->busy_ms))
            return imgcls_fail(eb, IMGCLS_EINVAL, "sqlite: busy_timeout_ms must be 0..600000");
    } else {
        return imgcls_fail(eb, IMGCLS_EINVAL, "sqlite: unknown parameter '%s'", key);
    }
    return 0;
}

static int sq_parse_url(const char *url, sq_queue *q, sq_config *c, imgcls_errbuf *eb)
{
    static const char prefix[] = "sqlite://";
    if (strncmp(url, prefix, sizeof prefix - 1) != 0)
        return imgcls_fail(eb, IMGCLS_EINVAL, "sqlite: URL must start with sqlite://");
    const char *p = url + sizeof prefix - 1;
    size_t n = strcspn(p, "?");
    if (n == 0 || n >= sizeof c->path)
        return imgcls_fail(eb, IMGCLS_EINVAL, "sqlite: the database path is empty or too long");
    memcpy(c->path, p, n);
    c->path[n] = 0;
    q->max_receives = SQ_DEFAULT_MAX_RECEIVES;
    c->sync_full = true;
    c->busy_ms = 5000;
    const char *cur = p[n] ? p + n + 1 : p + n;
    char key[32], val[128];
    int more;
    while ((more = url_param_next(&cur, key, sizeof key, val, sizeof val)) > 0) {
        int rc = sq_param(q, c, key, val, eb);
        if (rc)
            return rc;
    }
    if (more < 0)
        return imgcls_fail(eb, IMGCLS_EINVAL, "sqlite: malformed query in '%s'", url);
    if (!q->name[0])
        return imgcls_fail(eb, IMGCLS_EINVAL, "sqlite: the URL needs ?queue=NAME");
    int w1 = snprintf(q->bell, sizeof q->bell, "%s.%s.bell", c->path, q->name);
    int w2 = snprintf(q->dlq_bell, sizeof q->dlq_bell, "%s.%s.bell", c->path, q->dlq);
    if (w1 < 0 || w2 < 0 || (size_t)w2 >= sizeof q->dlq_bell || (size_t)w1 >= sizeof q->bell)
        return imgcls_fail(eb, IMGCLS_EINVAL, "sqlite: the database path is too long");
    return 0;
}

/* Runs set-up SQL. The busy handler covers ordinary lock waits, but when several processes open a new
 * database at once, SQLite may answer SQLITE_BUSY straight away rather than risk a deadlock (one holds
 * a read lock and wants to write while another does the same), so retry until busy_ms is spent. The
 * callback, if any, sees the rows. */
static int sq_exec_setup(sq_queue *q, const char *sql, int (*cb)(void *, int, char **, char **), void *arg)
{
    int64_t deadline = clock_ms_i64() + q->busy_ms;
    int src;
    while ((src = sqlite3_exec(q->db, sql, cb, arg, NULL)) != SQLITE_OK && (src & 0xff) == SQLITE_BUSY &&
           clock_ms_i64() < deadline) {
        if (!sqlite3_get_autocommit(q->db))
            sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL); /* a half-run BEGIN...COMMIT */
        nanosleep(&(struct timespec){.tv_nsec = 5 * 1000 * 1000}, NULL);
    }
    return src == SQLITE_OK ? 0 : sq_fail(q, src, sql);
}

static int sq_wal_cb(void *arg, int ncol, char **vals, char **names)
{
    (void)names;
    *(bool *)arg = ncol == 1 && vals[0] && strcmp(vals[0], "wal") == 0;
    return 0;
}

/* SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25... ms between tries, so a writer that waits
 * for a lock held 2 ms may sleep 8, and when a bell wakes a dozen workers at once the last one sleeps
 * tens of ms. Every transaction here is short, so retry about every millisecond instead, until busy_ms
 * is spent. This polls a lock for milliseconds, not the table for messages. */
static int sq_busy(void *arg, int count)
{
    sq_queue *q = arg;
    int64_t now = clock_ms_i64();
    if (count == 0)
        q->busy_since = now;
    if (now - q->busy_since >= q->busy_ms)
        return 0;
    long ms = count < 50 ? 1 : 4;
    nanosleep(&(struct timespec){.tv_nsec = ms * 1000 * 1000}, NULL);
    return 1;
}

static int sq_setup(sq_queue *q, const sq_config *c)
{
    q->busy_ms = (int64_t)c->busy_ms;
    int src = sqlite3_busy_handler(q->db, sq_busy, q);
    if (src != SQLITE_OK)
        return sq_fail(q, src, "busy_handler");
    bool wal = false;
    int rc = sq_exec_setup(q, "PRAGMA journal_mode=WAL", sq_wal_cb, &wal);
    if (rc)
        return rc;
    if (!wal)
        return imgcls_fail(&q->base.err, IMGCLS_EIO, "sqlite: %s: WAL mode is not available here", c->path);
    /* FULL: with WAL, NORMAL survives a crash of any process but may lose the last commits on power
     * loss, and queue.h promises that a send is durable when it returns. One fsync per commit is cheap
     * next to classifying an image; sync=normal in the URL trades that away for benchmarks. */
    rc = sq_exec_setup(q, c->sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", NULL, NULL);
    if (!rc)
        rc = sq_exec_setup(q, sq_schema, NULL, NULL);
    for (int i = 0; !rc && i < ST_COUNT; i++) {
        src = sqlite3_prepare_v3(q->db, sq_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &q->st[i], NULL);
        if (src != SQLITE_OK)
            rc = sq_fail(q, src, sq_sql[i]);
    }
    return rc;
}

/* Makes sure a bell file exists without ringing it. */
static int sq_bell_create(sq_queue *q, const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (fd < 0)
        return imgcls_fail(&q->base.err, IMGCLS_EIO, "sqlite: %s: %s", path, strerror(errno));
    close(fd);
    return 0;
}

/* Rings a bell: one byte written at offset 0 is an IN_MODIFY for every watcher, and the file never
 * grows. A failure is not reported: the message is already committed, and waiters still find it when
 * their wait or next poll ends. */
static void sq_bell_ring(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (fd < 0)
        return;
    ssize_t w = pwrite(fd, "!", 1, 0);
    (void)w;
    close(fd);
}

static void sq_close(queue *qb)
{
    sq_queue *q = (sq_queue *)qb;
    if (!q)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(q->st[i]);
    sqlite3_close_v2(q->db);
    if (q->ino >= 0)
        close(q->ino);
    free(q);
}

static int sq_open(const char *url, queue **out, imgcls_errbuf *eb)
{
    int rc = 0;
    sq_config cfg;
    *out = NULL;
    sq_queue *q = calloc(1, sizeof *q);
    if (!q)
        return imgcls_fail(eb, IMGCLS_ENOMEM, "sqlite: out of memory");
    q->base.ops = &queue_sqlite_ops;
    q->ino = -1;
    q->wd = -1;
    rc = sq_parse_url(url, q, &cfg, eb);
    if (rc)
        goto out;
    int src = sqlite3_open_v2(cfg.path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                              NULL);
    rc = src == SQLITE_OK ? sq_setup(q, &cfg) : sq_fail(q, src, cfg.path);
    if (!rc)
        rc = sq_bell_create(q, q->bell);
    if (rc) {
        imgcls_fail(eb, rc, "%s", q->base.err.msg);
        goto out;
    }
    *out = &q->base;
    q = NULL;
out:
    sq_close(q ? &q->base : NULL);
    return rc;
}

static int sq_send(queue *qb, const void *body, size_t len)
{
    sq_queue *q = (sq_queue *)qb;
    if (len > QUEUE_MAX_BODY)
        return imgcls_fail(&qb->err, IMGCLS_ETOOBIG, "sqlite: body of %zu bytes is over %zu", len,
                           QUEUE_MAX_BODY);
    if (!body && len)
        return imgcls_fail(&qb->err, IMGCLS_EINVAL, "sqlite: NULL body");
    sqlite3_stmt *s = q->st[ST_INSERT];
    sqlite3_bind_text(s, 1, q->name, -1, SQLITE_STATIC);
    /* A NULL pointer would bind SQL NULL, which the NOT NULL column refuses; "" binds an empty blob. */
    sqlite3_bind_blob(s, 2, len ? body : "", (int)len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, sq_now_ms());
    int rc = sq_run(q, ST_INSERT);
    sqlite3_clear_bindings(s); /* the body is the caller's; do not keep a pointer to it */
    if (!rc)
        sq_bell_ring(q->bell);
    return rc;
}

/* Picks up to want visible rows, copying them out, so that they can be updated once the SELECT is
 * done (changing rows under a running SELECT on the same connection is undefined in SQLite). */
static int sq_pick(sq_queue *q, int64_t now, size_t want, sq_row *rows, size_t *nrows)
{
    sqlite3_stmt *s = q->st[ST_READY];
    int rc = 0, src = SQLITE_DONE;
    *nrows = 0;
    sqlite3_bind_text(s, 1, q->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, now);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)want);
    while (*nrows < want && (src = sqlite3_step(s)) == SQLITE_ROW) {
        sq_row *r = &rows[*nrows];
        r->id = sqlite3_column_int64(s, 0);
        const void *b = sqlite3_column_blob(s, 1);
        r->len = (size_t)sqlite3_column_bytes(s, 1);
        r->count = (unsigned)sqlite3_column_int64(s, 2);
        r->body = malloc(r->len + 1);
        if (!r->body) {
            rc = imgcls_fail(&q->base.err, IMGCLS_ENOMEM, "sqlite: out of memory");
            goto out;
        }
        if (r->len)
            memcpy(r->body, b, r->len);
        r->body[r->len] = 0;
        ++*nrows;
    }
    if (*nrows < want && src != SQLITE_DONE)
        rc = sq_fail(q, src, sq_sql[ST_READY]);
out:
    sqlite3_reset(s);
    return rc;
}

/* Marks row as delivered until `until` under a fresh receipt, and moves it into m. */
static int sq_deliver(sq_queue *q, sq_row *r, int64_t until, queue_msg *m)
{
    unsigned char rnd[SQ_RECEIPT_RANDOM];
    ssize_t got;
    while ((got = getrandom(rnd, sizeof rnd, 0)) < 0 && errno == EINTR)
        ;
    if (got != (ssize_t)sizeof rnd)
        return imgcls_fail(&q->base.err, IMGCLS_EIO, "sqlite: getrandom: %s", strerror(errno));
    /* The id leads the receipt so that delete and change_visibility find the row by primary key. */
    int w = snprintf(m->receipt, sizeof m->receipt, "%" PRId64 "-", r->id);
    for (size_t i = 0; i < sizeof rnd; i++)
        w += snprintf(m->receipt + w, sizeof m->receipt - (size_t)w, "%02x", rnd[i]);
    snprintf(m->id, sizeof m->id, "%" PRId64, r->id);
    sqlite3_stmt *s = q->st[ST_RECEIVED];
    sqlite3_bind_int64(s, 1, r->id);
    sqlite3_bind_int64(s, 2, until);
    sqlite3_bind_text(s, 3, m->receipt, -1, SQLITE_STATIC);
    int rc = sq_run(q, ST_RECEIVED);
    if (rc)
        return rc;
    m->receive_count = r->count + 1;
    m->body = r->body;
    m->len = r->len;
    r->body = NULL;
    return 0;
}

static int sq_dead_letter(sq_queue *q, const sq_row *r, int64_t now)
{
    sqlite3_stmt *s = q->st[ST_DEAD];
    sqlite3_bind_int64(s, 1, r->id);
    sqlite3_bind_text(s, 2, q->dlq, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, now);
    return sq_run(q, ST_DEAD);
}

/* When the earliest message of this queue becomes visible (0: the queue is empty). */
static int sq_next_visible(sq_queue *q, int64_t *next_at)
{
    sqlite3_stmt *s = q->st[ST_NEXT];
    sqlite3_bind_text(s, 1, q->name, -1, SQLITE_STATIC);
    int src = sqlite3_step(s);
    *next_at = src == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return src == SQLITE_ROW ? 0 : sq_fail(q, src, sq_sql[ST_NEXT]);
}

/* The body of one receive transaction: deliver up to max rows, dead-lettering those past max_receives
 * and picking again in their place. */
static int sq_take(sq_queue *q, size_t max, int visibility_s, queue_msg *out, size_t *n, size_t *dead)
{
    sq_row rows[QUEUE_MAX_BATCH];
    size_t nrows = 0, i = 0;
    int64_t now = sq_now_ms();
    int rc = 0;
    bool again = true;
    while (!rc && again && *n < max) {
        rc = sq_pick(q, now, max - *n, rows, &nrows);
        again = false;
        for (i = 0; !rc && i < nrows; i++) {
            if (q->max_receives && rows[i].count + 1 > q->max_receives) {
                rc = sq_dead_letter(q, &rows[i], now);
                ++*dead;
                again = true;
            } else {
                rc = sq_deliver(q, &rows[i], now + (int64_t)visibility_s * 1000, &out[*n]);
                *n += rc ? 0 : 1;
            }
        }
        for (size_t j = 0; j < nrows; j++)
            free(rows[j].body);
    }
    return rc;
}

/* One receive attempt, in one IMMEDIATE transaction. *next_at is set when nothing was received. */
static int sq_receive_once(sq_queue *q, size_t max, int visibility_s, queue_msg *out, size_t *n,
                           int64_t *next_at)
{
    size_t dead = 0;
    /* Look first without the write lock: an idle waiter that wakes to an empty queue should not queue
     * up behind senders for the lock. WAL readers never block writers. */
    int rc = sq_next_visible(q, next_at);
    if (rc || *next_at == 0 || *next_at > sq_now_ms())
        return rc;
    *next_at = 0;
    rc = sq_run(q, ST_BEGIN);
    if (rc)
        return rc;
    rc = sq_take(q, max, visibility_s, out, n, &dead);
    if (!rc && *n == 0)
        rc = sq_next_visible(q, next_at);
    if (!rc)
        rc = sq_run(q, ST_COMMIT);
    if (rc) {
        imgcls_errbuf first = q->base.err;
        sq_run(q, ST_ROLLBACK); /* fails if a failed COMMIT already ended it; keep the first error */
        q->base.err = first;
        for (size_t i = 0; i < *n; i++)
            queue_msg_free(&out[i]);
        *n = 0;
        return rc;
    }
    if (dead)
        sq_bell_ring(q->dlq_bell);
    return 0;
}

/* Arms the inotify watch on this queue's bell (again, if the file was replaced). */
static int sq_watch(sq_queue *q)
{
    if (q->ino < 0) {
        q->ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (q->ino < 0)
            return imgcls_fail(&q->base.err, IMGCLS_EIO, "sqlite: inotify_init1: %s (see "
                               "fs.inotify.max_user_instances)", strerror(errno));
    }
    if (q->wd >= 0)
        return 0;
    int rc = sq_bell_create(q, q->bell);
    if (rc)
        return rc;
    q->wd = inotify_add_watch(q->ino, q->bell, IN_MODIFY | IN_DELETE_SELF | IN_MOVE_SELF);
    if (q->wd < 0)
        return imgcls_fail(&q->base.err, IMGCLS_EIO, "sqlite: inotify_add_watch %s: %s", q->bell,
                           strerror(errno));
    return 0;
}

/* Reads all pending events; the next look at the table covers whatever they announced. If the bell
 * was deleted or renamed, drops the watch so that sq_watch re-arms it on the new file. */
static void sq_drain(sq_queue *q)
{
    _Alignas(struct inotify_event) char buf[4096];
    bool lost = false;
    for (;;) {
        ssize_t got = read(q->ino, buf, sizeof buf);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        for (size_t off = 0; off + sizeof(struct inotify_event) <= (size_t)got;) {
            struct inotify_event ev;
            memcpy(&ev, buf + off, sizeof ev);
            lost |= (ev.mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) != 0;
            off += sizeof ev + ev.len;
        }
    }
    if (lost && q->wd >= 0) {
        inotify_rm_watch(q->ino, q->wd); /* fails with EINVAL if already gone; nothing to do then */
        q->wd = -1;
    }
}

/* Sleeps until the bell rings or timeout_ms passes. A signal just ends the sleep early. */
static int sq_wait(sq_queue *q, int64_t timeout_ms)
{
    struct pollfd p = {.fd = q->ino, .events = POLLIN};
    int r = poll(&p, 1, (int)(timeout_ms > INT_MAX ? INT_MAX : timeout_ms));
    if (r < 0 && errno != EINTR)
        return imgcls_fail(&q->base.err, IMGCLS_EIO, "sqlite: poll: %s", strerror(errno));
    return 0;
}

static int sq_receive(queue *qb, size_t max, int wait_ms, int visibility_s, queue_msg *out, size_t *n)
{
    sq_queue *q = (sq_queue *)qb;
    *n = 0;
    if (max < 1 || max > QUEUE_MAX_BATCH || wait_ms < 0 || visibility_s < 0 ||
        visibility_s > SQ_MAX_VISIBILITY)
        return imgcls_fail(&qb->err, IMGCLS_EINVAL, "sqlite: receive: max %zu, wait %d ms or visibility %d s "
                           "out of range", max, wait_ms, visibility_s);
    int64_t deadline = clock_ms_i64() + wait_ms;
    for (;;) {
        int rc = 0;
        if (wait_ms > 0) {
            if (q->ino >= 0)
                sq_drain(q);
            rc = sq_watch(q); /* armed before the look, so no send after the look goes unheard */
        }
        int64_t next_at = 0;
        if (!rc)
            rc = sq_receive_once(q, max, visibility_s, out, n, &next_at);
        int64_t left = deadline - clock_ms_i64();
        if (rc || *n > 0 || left <= 0)
            return rc;
        if (next_at > 0) {
            int64_t until = next_at - sq_now_ms() + 1; /* +1: visible_at <= now must hold on wake */
            left = until < 1 ? 1 : (until < left ? until : left);
        }
        rc = sq_wait(q, left);
        if (rc)
            return rc;
    }
}

/* Splits a receipt "<id>-<hex>" back into the row id. */
static int sq_receipt_id(sq_queue *q, const char *receipt, int64_t *id)
{
    char *end = NULL;
    if (!receipt || receipt[0] < '1' || receipt[0] > '9')
        goto bad;
    errno = 0;
    long long v = strtoll(receipt, &end, 10);
    if (errno || *end != '-' || strlen(end + 1) != 2 * SQ_RECEIPT_RANDOM)
        goto bad;
    *id = v;
    return 0;
bad:
    return imgcls_fail(&q->base.err, IMGCLS_EINVAL, "sqlite: '%s' is not a receipt of this backend",
                       receipt ? receipt : "(null)");
}

/* Binds id, queue and receipt, the key of a delivery, to ?1..?3 of statement s. */
static void sq_bind_delivery(sq_queue *q, enum sq_stmt s, int64_t id, const char *receipt)
{
    sqlite3_bind_int64(q->st[s], 1, id);
    sqlite3_bind_text(q->st[s], 2, q->name, -1, SQLITE_STATIC);
    if (receipt)
        sqlite3_bind_text(q->st[s], 3, receipt, -1, SQLITE_TRANSIENT);
}

static int sq_delete(queue *qb, const char *receipt)
{
    sq_queue *q = (sq_queue *)qb;
    int64_t id = 0;
    int rc = sq_receipt_id(q, receipt, &id);
    if (rc)
        return rc;
    sq_bind_delivery(q, ST_DELETE, id, receipt);
    rc = sq_run(q, ST_DELETE);
    if (rc || sqlite3_changes(q->db) > 0)
        return rc;
    /* Nothing deleted: gone already (idempotent), or delivered again under a newer receipt, which now
     * owns it. */
    sq_bind_delivery(q, ST_EXISTS, id, NULL);
    int src = sqlite3_step(q->st[ST_EXISTS]);
    sqlite3_reset(q->st[ST_EXISTS]);
    if (src == SQLITE_ROW)
        return imgcls_fail(&qb->err, IMGCLS_ENOTFOUND, "sqlite: message %" PRId64 " was received again; "
                           "this receipt expired", id);
    return src == SQLITE_DONE ? 0 : sq_fail(q, src, sq_sql[ST_EXISTS]);
}

/* The n deletes in one transaction: one commit instead of n (the web tier's dispatcher deletes each
 * batch of responses it answered this way). An entry's own failure (ENOTFOUND) leaves the others. */
static int sq_delete_batch(queue *qb, const char *const *receipts, size_t n, int *rcs)
{
    sq_queue *q = (sq_queue *)qb;
    int rc = sq_run(q, ST_BEGIN);
    for (size_t i = 0; i < n; i++)
        rcs[i] = rc ? rc : sq_delete(qb, receipts[i]);
    if (!rc)
        rc = sq_run(q, ST_COMMIT);
    if (rc) {
        imgcls_errbuf first = q->base.err;
        sq_run(q, ST_ROLLBACK); /* as in sq_receive_once: keep the first error */
        q->base.err = first;
        for (size_t i = 0; i < n; i++)
            rcs[i] = rc;
    }
    return rc;
}

static int sq_change_visibility(queue *qb, const char *receipt, int visibility_s)
{
    sq_queue *q = (sq_queue *)qb;
    int64_t id = 0;
    if (visibility_s < 0 || visibility_s > SQ_MAX_VISIBILITY)
        return imgcls_fail(&qb->err, IMGCLS_EINVAL, "sqlite: visibility %d s out of range", visibility_s);
    int rc = sq_receipt_id(q, receipt, &id);
    if (rc)
        return rc;
    sq_bind_delivery(q, ST_VISIBILITY, id, receipt);
    sqlite3_bind_int64(q->st[ST_VISIBILITY], 4, sq_now_ms() + (int64_t)visibility_s * 1000);
    rc = sq_run(q, ST_VISIBILITY);
    if (rc)
        return rc;
    if (sqlite3_changes(q->db) == 0)
        return imgcls_fail(&qb->err, IMGCLS_ENOTFOUND, "sqlite: no delivery with receipt %s", receipt);
    /* Ring even for a longer timeout: waiters recompute when the next message shows, which is cheap. */
    sq_bell_ring(q->bell);
    return 0;
}

static int sq_depth(queue *qb, queue_depth *out)
{
    sq_queue *q = (sq_queue *)qb;
    sqlite3_stmt *s = q->st[ST_DEPTH];
    sqlite3_bind_text(s, 1, q->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, sq_now_ms());
    int src = sqlite3_step(s);
    if (src == SQLITE_ROW) {
        out->visible = (uint64_t)sqlite3_column_int64(s, 0);
        out->in_flight = (uint64_t)sqlite3_column_int64(s, 1);
    }
    sqlite3_reset(s);
    return src == SQLITE_ROW ? 0 : sq_fail(q, src, sq_sql[ST_DEPTH]);
}

const struct queue_ops queue_sqlite_ops = {
    .scheme = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .send = sq_send,
    .receive = sq_receive,
    .delete_msg = sq_delete,
    .change_visibility = sq_change_visibility,
    .depth = sq_depth,
    .delete_batch = sq_delete_batch,
};
