/* The local store backend: a bucket is a directory (URL syntax in store.h).
 *
 * Keys to paths, keeping store.h's two kinds of key apart on disk:
 *   name key    one file directly in the directory, its name percent-encoded: '%', a leading '.', and any
 *               byte that is a control character or a separator become "%XX" (uppercase hex); every other
 *               byte, UTF-8 included, stays as it is, so "café (1).jpg" is stored as "café (1).jpg" and
 *               ".imgcls" as "%2Eimgcls". The encoding is reversible (one name, one file; '%' always
 *               starts an escape) and a mapped name never starts with '.', so no name reaches the
 *               system's directory or a temporary file. Rejected: encoding every byte outside
 *               [A-Za-z0-9._-], which would make a 100-character Japanese name (300 bytes of UTF-8)
 *               900 bytes, over NAME_MAX.
 *   system key  a path below the directory, as it stands: ".imgcls/claims/<id>". store_key_is_system
 *               allows only [A-Za-z0-9._-] there, with no segment starting with '.' after the prefix.
 *               Being paths, ".imgcls/a" and ".imgcls/a/b" cannot both exist (IMGCLS_EINVAL); the
 *               system never makes such a pair.
 *
 * Atomic writes: put writes a temporary file in the key's own directory, fsyncs it, renames it over the
 * key and fsyncs the directory. rename(2) within one directory is atomic, so a reader sees the old or
 * the new value, never a mix, and after put returns the value survives a crash, power loss included.
 * With sync=normal the two fsyncs are left out: the value then survives any process crash (it is in
 * the page cache, which outlives the process) but not a power loss -- the promise of the SQLite queue's
 * sync=normal, which `imgcls up` uses for both. The fsyncs were most of a put's cost: the web tier's
 * and the worker's kernel time per request, and their wait. Temporary files are
 * named ".tmp-XXXXXX", a name no key maps to. Symlinks planted in a bucket are not followed. */
#include "store/store_backend.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct file_store {
    struct store base; /* first, so that a store * is a file_store * */
    char root[PATH_MAX]; /* no trailing '/'; "" for the file system root */
    bool sync_full;      /* sync=full (default): fsync each put; sync=normal: survive process crashes only */
} file_store;

/* Maps errno after a failed call on path into the error vocabulary, with the detail in err. */
static int fsx_errno(imgcls_errbuf *err, const char *what, const char *path)
{
    int e = errno;
    int rc;
    switch (e) {
    case ENOENT: rc = IMGCLS_ENOTFOUND; break;
    case ENAMETOOLONG:
    case ENOTDIR:
    case EISDIR:
    case EEXIST: rc = IMGCLS_EINVAL; break; /* the key clashes with a directory or a file */
    case ENOMEM: rc = IMGCLS_ENOMEM; break;
    default: rc = IMGCLS_EIO; break;
    }
    return imgcls_fail(err, rc, "file: %s %s: %s", what, path, strerror(e));
}

/* fsync on a directory makes its entries (a rename, a new subdirectory) durable. */
static int fsx_sync_dir(imgcls_errbuf *err, const char *dir)
{
    int fd = open(dir[0] ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return fsx_errno(err, "open", dir);
    int rc = fsync(fd) ? fsx_errno(err, "fsync", dir) : 0;
    close(fd);
    return rc;
}

/* Creates every directory along path[0..upto) that is missing, like mkdir -p, syncing the parent of
 * each new one; the prefixes that end before `from` are taken to exist. path is modified while it runs
 * and restored. */
static int fsx_mkdirs(imgcls_errbuf *err, char *path, size_t from, size_t upto)
{
    for (size_t i = from > 1 ? from : 1; i <= upto; i++) {
        if (i < upto && path[i] != '/')
            continue;
        char saved = path[i];
        path[i] = 0;
        int rc = 0;
        struct stat st;
        if (mkdir(path, 0777) == 0) {
            char *slash = strrchr(path, '/');
            if (slash) {
                *slash = 0;
                rc = fsx_sync_dir(err, path);
                *slash = '/';
            }
        } else if (errno != EEXIST) {
            rc = fsx_errno(err, "mkdir", path);
        } else if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
            rc = imgcls_fail(err, IMGCLS_EINVAL, "file: %s exists and is not a directory", path);
        }
        path[i] = saved;
        if (rc)
            return rc;
    }
    return 0;
}

static int fsx_open(const char *url, store **out, imgcls_errbuf *eb)
{
    static const char prefix[] = "file://";
    *out = NULL;
    if (strncmp(url, prefix, sizeof prefix - 1) != 0)
        return imgcls_fail(eb, IMGCLS_EINVAL, "file: URL must start with file://");
    const char *p = url + sizeof prefix - 1, *q = strchr(p, '?');
    size_t n = q ? (size_t)(q - p) : strlen(p);
    bool sync_full = !q || strcmp(q, "?sync=full") == 0;
    if (n == 0 || memchr(p, '#', n) || (q && !sync_full && strcmp(q, "?sync=normal") != 0))
        return imgcls_fail(eb, IMGCLS_EINVAL, "file: '%s' needs a directory path; its only query is sync=full|normal",
                           url);
    /* Room for the longest key, its '/', and the temporary name's suffix. */
    if (n + STORE_MAX_KEY + 16 >= PATH_MAX)
        return imgcls_fail(eb, IMGCLS_EINVAL, "file: directory path too long");
    int rc = 0;
    file_store *s = calloc(1, sizeof *s);
    if (!s) {
        rc = imgcls_fail(eb, IMGCLS_ENOMEM, "file: out of memory");
        goto out;
    }
    s->base.ops = &store_file_ops;
    s->sync_full = sync_full;
    memcpy(s->root, p, n);
    s->root[n] = 0;
    while (n > 0 && s->root[n - 1] == '/')
        s->root[--n] = 0;
    rc = n ? fsx_mkdirs(eb, s->root, 1, n) : 0;
    if (rc)
        goto out;
    *out = &s->base;
    s = NULL;
out:
    free(s);
    return rc;
}

static void fsx_close(store *s)
{
    free(s);
}

/* Percent-encodes a name key into dst (store_file.c's header says which bytes). Returns the encoded
 * length, or 0 when it would be over NAME_MAX bytes. */
static size_t fsx_encode_name(const char *name, char *dst)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; name[i]; i++) {
        unsigned char c = (unsigned char)name[i];
        bool escape = c < 0x20 || c == 0x7f || c == '%' || c == '/' || c == '\\' || (i == 0 && c == '.');
        if (o + (escape ? 3 : 1) > NAME_MAX)
            return 0;
        if (escape) {
            dst[o++] = '%';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        } else {
            dst[o++] = (char)c;
        }
    }
    dst[o] = 0;
    return o;
}

/* Checks key and builds its path below root into path. */
static int fsx_path(file_store *s, const char *key, char *path, size_t pathsz)
{
    char mapped[NAME_MAX + 1];
    if (!store_key_valid(key))
        return imgcls_fail(&s->base.err, IMGCLS_EINVAL, "file: invalid key");
    const char *rel = key;
    if (!store_key_is_system(key)) {
        if (!fsx_encode_name(key, mapped))
            return imgcls_fail(&s->base.err, IMGCLS_EINVAL, "file: the name is over %d bytes once encoded",
                               NAME_MAX);
        rel = mapped;
    }
    int w = snprintf(path, pathsz, "%s/%s", s->root, rel);
    if (w < 0 || (size_t)w >= pathsz)
        return imgcls_fail(&s->base.err, IMGCLS_EINVAL, "file: key too long for this directory");
    return 0;
}

static int fsx_write_all(imgcls_errbuf *err, int fd, const unsigned char *p, size_t len, const char *path)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return fsx_errno(err, "write", path);
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int fsx_put(store *sb, const char *key, const void *data, size_t len)
{
    file_store *s = (file_store *)sb;
    char path[PATH_MAX], tmp[PATH_MAX];
    int fd = -1;
    tmp[0] = 0;
    int rc = fsx_path(s, key, path, sizeof path);
    if (rc)
        goto out;
    size_t dirlen = (size_t)(strrchr(path, '/') - path);
    rc = fsx_mkdirs(&sb->err, path, strlen(s->root) + 1, dirlen);
    if (rc)
        goto out;
    snprintf(tmp, sizeof tmp, "%.*s/.tmp-XXXXXX", (int)dirlen, path); /* fits: see fsx_open */
    fd = mkstemp(tmp);
    if (fd < 0) {
        rc = fsx_errno(&sb->err, "mkstemp", tmp);
        tmp[0] = 0;
        goto out;
    }
    /* mkstemp makes 0600; a bucket is read by the other imgcls processes and by people. */
    if (fchmod(fd, 0644) != 0) {
        rc = fsx_errno(&sb->err, "fchmod", tmp);
        goto out;
    }
    rc = fsx_write_all(&sb->err, fd, data, len, tmp);
    if (!rc && s->sync_full && fsync(fd) != 0)
        rc = fsx_errno(&sb->err, "fsync", tmp);
    if (rc)
        goto out;
    if (close(fd) != 0) {
        fd = -1;
        rc = fsx_errno(&sb->err, "close", tmp);
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        rc = fsx_errno(&sb->err, "rename to", path);
        goto out;
    }
    tmp[0] = 0;
    path[dirlen] = 0;
    rc = s->sync_full ? fsx_sync_dir(&sb->err, path) : 0;
out:
    if (fd >= 0)
        close(fd);
    if (tmp[0])
        unlink(tmp);
    return rc;
}

static int fsx_get(store *sb, const char *key, imgcls_buf *out)
{
    file_store *s = (file_store *)sb;
    char path[PATH_MAX];
    unsigned char chunk[16384];
    int fd = -1;
    int rc = fsx_path(s, key, path, sizeof path);
    if (rc)
        goto out;
    /* O_NOFOLLOW: a symlink planted in the bucket must not read a file outside it. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        rc = errno == ENOTDIR ? imgcls_fail(&sb->err, IMGCLS_ENOTFOUND, "file: no key %s", key)
                              : fsx_errno(&sb->err, "open", path);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = imgcls_fail(&sb->err, IMGCLS_ENOTFOUND, "file: %s is not a file", path);
        goto out;
    }
    if ((unsigned long long)st.st_size > out->max - out->len) {
        rc = imgcls_fail(&sb->err, IMGCLS_ETOOBIG, "file: %s is %lld bytes, over %zu", path,
                         (long long)st.st_size, out->max - out->len);
        goto out;
    }
    for (;;) {
        ssize_t got = read(fd, chunk, sizeof chunk);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            rc = fsx_errno(&sb->err, "read", path);
        if (got <= 0)
            break;
        rc = buf_append(out, chunk, (size_t)got);
        if (rc) {
            imgcls_fail(&sb->err, rc, "file: %s: over %zu bytes", path, out->max);
            break;
        }
    }
out:
    if (fd >= 0)
        close(fd);
    return rc;
}

static int fsx_exists(store *sb, const char *key, bool *exists)
{
    file_store *s = (file_store *)sb;
    char path[PATH_MAX];
    struct stat st;
    *exists = false;
    int rc = fsx_path(s, key, path, sizeof path);
    if (rc)
        return rc;
    if (lstat(path, &st) == 0) {
        *exists = S_ISREG(st.st_mode);
        return 0;
    }
    if (errno == ENOENT || errno == ENOTDIR)
        return 0;
    return fsx_errno(&sb->err, "stat", path);
}

static int fsx_del(store *sb, const char *key)
{
    char path[PATH_MAX];
    int rc = fsx_path((file_store *)sb, key, path, sizeof path);
    if (rc)
        return rc;
    if (unlink(path) == 0 || errno == ENOENT || errno == ENOTDIR)
        return 0;
    return fsx_errno(&sb->err, "unlink", path);
}

/* Scans one system directory and removes its regular files older than the cut-off. Files whose name
 * starts with '.' are temporary files of a put in progress, and are left to it. */
static int fsx_expire(store *sb, const char *prefix, long long now_s, long long max_age_s, size_t *removed)
{
    file_store *s = (file_store *)sb;
    char dir[PATH_MAX], path[PATH_MAX];
    size_t n = strlen(prefix);
    *removed = 0;
    if (n < 2 || prefix[n - 1] != '/')
        return imgcls_fail(&sb->err, IMGCLS_EINVAL, "file: expire takes a system prefix ending in '/'");
    char key[STORE_MAX_KEY];
    snprintf(key, sizeof key, "%.*s", (int)(n - 1), prefix);
    if (!store_key_is_system(key))
        return imgcls_fail(&sb->err, IMGCLS_EINVAL, "file: expire takes a system prefix");
    int w = snprintf(dir, sizeof dir, "%s/%s", s->root, key);
    if (w < 0 || (size_t)w >= sizeof dir - NAME_MAX - 1)
        return imgcls_fail(&sb->err, IMGCLS_EINVAL, "file: prefix too long for this directory");
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : fsx_errno(&sb->err, "opendir", dir);
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (e->d_name[0] == '.')
            continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path)
            continue; /* cannot happen: dir leaves room for NAME_MAX */
        if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode) || now_s - (long long)st.st_mtime <= max_age_s)
            continue;
        if (unlink(path) == 0)
            (*removed)++;
        else if (errno != ENOENT && !rc)
            rc = fsx_errno(&sb->err, "unlink", path);
    }
    closedir(d);
    return rc;
}

/* A hard link under a temporary name, renamed over dst: dst then names src's file (inode) and survives
 * src's removal; a later put of either key renames a new file over it and leaves the other alone. */
static int fsx_link(store *sb, const char *src, const char *dst)
{
    file_store *s = (file_store *)sb;
    char from[PATH_MAX], to[PATH_MAX], tmp[PATH_MAX];
    int rc = fsx_path(s, src, from, sizeof from);
    if (!rc)
        rc = fsx_path(s, dst, to, sizeof to);
    if (rc)
        return rc;
    size_t dirlen = (size_t)(strrchr(to, '/') - to);
    rc = fsx_mkdirs(&sb->err, to, strlen(s->root) + 1, dirlen);
    if (rc)
        return rc;
    tmp[0] = 0;
    for (unsigned attempt = 0; attempt < 8 && !tmp[0]; attempt++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        /* ".tmp-" like put's temporary files: a prefix no mapped key has */
        snprintf(tmp, sizeof tmp, "%.*s/.tmp-link-%d-%ld-%u", (int)dirlen, to, (int)getpid(), ts.tv_nsec, attempt);
        if (link(from, tmp) == 0)
            break;
        if (errno != EEXIST)
            return fsx_errno(&sb->err, "link", from);
        tmp[0] = 0;
    }
    if (!tmp[0])
        return imgcls_fail(&sb->err, IMGCLS_EIO, "file: no free temporary name for a link in %.*s", (int)dirlen, to);
    if (rename(tmp, to) != 0) {
        rc = fsx_errno(&sb->err, "rename to", to);
        unlink(tmp);
        return rc;
    }
    to[dirlen] = 0;
    return s->sync_full ? fsx_sync_dir(&sb->err, to) : 0;
}

const struct store_ops store_file_ops = {
    .scheme = "file",
    .open = fsx_open,
    .close = fsx_close,
    .put = fsx_put,
    .get = fsx_get,
    .exists = fsx_exists,
    .del = fsx_del,
    .expire = fsx_expire,
    .link = fsx_link,
};
