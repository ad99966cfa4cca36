/* The images a load run sends: the JPEG and PNG files of one folder, sorted by name, read into memory
 * once before the clock starts so that throughput measures the server and not the disk. */
#ifndef IMGCLS_LOADGEN_IMAGES_H
#define IMGCLS_LOADGEN_IMAGES_H

#include "common/buf.h"
#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>

#define LOADGEN_MAX_IMAGES 1000000u                         /* files taken from one folder */
#define LOADGEN_MAX_FILE_BYTES (20u * 1024 * 1024)          /* one image, as the web tier's limit */
#define LOADGEN_MAX_TOTAL_BYTES (4ull * 1024 * 1024 * 1024) /* all images held in memory together */

typedef struct loadgen_image {
    char *path;           /* "DIR/test_0.JPEG" (owned) */
    const char *name;     /* "test_0.JPEG": points into path; the multipart filename */
    size_t stem_len;      /* length of "test_0": the name the assignment prints and --expect keys on */
    const char *expected; /* label from --expect, or NULL; not owned */
    bool loaded;
    imgcls_buf data; /* the file's bytes once loaded */
} loadgen_image;

typedef struct loadgen_images {
    loadgen_image *v;
    size_t n;
} loadgen_images;

/* Lists the regular files in dir whose names end in .jpg, .jpeg or .png (any case), skipping names
 * that start with '.', sorted by byte order of name. Returns 0, IMGCLS_ENOTFOUND or IMGCLS_EIO when dir
 * cannot be read, IMGCLS_EEMPTY when it holds no image, IMGCLS_ETOOBIG past LOADGEN_MAX_IMAGES, or
 * IMGCLS_ENOMEM; eb says which. On error *set is empty and needs no free. */
int loadgen_images_scan(loadgen_images *set, const char *dir, imgcls_errbuf *eb);

/* Which image request number `request` sends. seed 0: round-robin over the sorted list, so N requests
 * over M images cover every image N/M times (what an accuracy run wants). Any other seed: uniform
 * choice with replacement, like the original generator's random.choice, but reproducible: the pick is
 * a pure function of (seed, request), computed with splitmix64. */
size_t loadgen_pick(size_t request, size_t nimages, unsigned long seed);

/* Reads every image that requests [0, nrequests) will send. Returns 0, or the first read error
 * (IMGCLS_ETOOBIG for a file over LOADGEN_MAX_FILE_BYTES or a total over LOADGEN_MAX_TOTAL_BYTES,
 * IMGCLS_ENOTFOUND, IMGCLS_EIO, IMGCLS_ENOMEM) with eb naming the file. Images already read stay read;
 * loadgen_images_free releases them either way. */
int loadgen_images_preload(loadgen_images *set, size_t nrequests, unsigned long seed, imgcls_errbuf *eb);

/* Frees the list and every loaded image. Accepts an empty or zeroed set. */
void loadgen_images_free(loadgen_images *set);

#endif
