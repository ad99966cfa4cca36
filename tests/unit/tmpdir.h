/* Temporary directories for the unit tests: made under /tmp with mkdtemp, removed with everything in
 * them. Header-only (static functions) because CMake builds each tests/unit/test_*.c on its own. */
#ifndef IMGCLS_TESTS_TMPDIR_H
#define IMGCLS_TESTS_TMPDIR_H

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Fills dir (at least 32 bytes) with a fresh directory's path. Returns 0 or -1. */
static inline int tmpdir_make(char *dir, size_t size)
{
    if (snprintf(dir, size, "/tmp/imgcls-test-XXXXXX") >= (int)size)
        return -1;
    return mkdtemp(dir) ? 0 : -1;
}

/* Removes the tree under the directory fd (closes it). */
static inline void tmpdir_rm_fd(int fd)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0)
                tmpdir_rm_fd(sub);
            unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR);
        } else {
            unlinkat(dirfd(d), e->d_name, 0);
        }
    }
    closedir(d);
}

static inline void tmpdir_remove(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0)
        tmpdir_rm_fd(fd);
    rmdir(dir);
}

#endif
