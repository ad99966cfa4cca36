/* What the fuzz targets share: the libFuzzer entry points, a check that aborts (so that libFuzzer keeps
 * the input as a crash) naming the broken invariant, and a temporary directory removed at exit.
 * Include it first: nftw needs _XOPEN_SOURCE before any system header. */
#ifndef IMGCLS_TESTS_FUZZ_UTIL_H
#define IMGCLS_TESTS_FUZZ_UTIL_H

#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700
#endif

#include <ftw.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

static char fuzz_tmp_root[64];

static inline int fuzz_tmp_remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void fuzz_tmp_remove(void)
{
    if (fuzz_tmp_root[0])
        nftw(fuzz_tmp_root, fuzz_tmp_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Makes /tmp/imgcls-fuzz-<what>-XXXXXX, removed by exit(); returns its path. One per process, so that
 * libFuzzer's -fork and -jobs children do not share one. */
static inline const char *fuzz_tmp_dir(const char *what)
{
    snprintf(fuzz_tmp_root, sizeof fuzz_tmp_root, "/tmp/imgcls-fuzz-%s-XXXXXX", what);
    FUZZ_CHECK(mkdtemp(fuzz_tmp_root) != NULL);
    atexit(fuzz_tmp_remove);
    return fuzz_tmp_root;
}

#endif
