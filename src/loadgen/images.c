#include "loadgen/images.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

static bool is_image_name(const char *name)
{
    /* Dot files are skipped: macOS leaves "._photo.jpg" metadata twins in copied folders, and they are
     * not images. */
    if (name[0] == '.')
        return false;
    const char *dot = strrchr(name, '.');
    return dot && (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0 || strcasecmp(dot, ".png") == 0);
}

static int cmp_image(const void *a, const void *b)
{
    return strcmp(((const loadgen_image *)a)->name, ((const loadgen_image *)b)->name);
}

/* Appends dir/name to the set if it is a regular file (after following links). */
static int add_if_regular(loadgen_images *set, size_t *cap, const char *dir, const char *name, imgcls_errbuf *eb)
{
    size_t dlen = strlen(dir), nlen = strlen(name);
    bool slash = dlen > 0 && dir[dlen - 1] != '/';
    char *path = malloc(dlen + slash + nlen + 1);
    if (!path)
        return IMGCLS_ENOMEM;
    memcpy(path, dir, dlen);
    if (slash)
        path[dlen] = '/';
    memcpy(path + dlen + slash, name, nlen + 1);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        free(path);
        return 0;
    }
    if (set->n == LOADGEN_MAX_IMAGES) {
        free(path);
        return imgcls_fail(eb, IMGCLS_ETOOBIG, "%s holds more than %u images", dir, LOADGEN_MAX_IMAGES);
    }
    if (set->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 64;
        loadgen_image *v = realloc(set->v, ncap * sizeof *v);
        if (!v) {
            free(path);
            return IMGCLS_ENOMEM;
        }
        set->v = v;
        *cap = ncap;
    }
    loadgen_image *img = &set->v[set->n++];
    memset(img, 0, sizeof *img);
    img->path = path;
    img->name = path + dlen + slash;
    img->stem_len = (size_t)(strrchr(img->name, '.') - img->name);
    buf_init(&img->data, LOADGEN_MAX_FILE_BYTES);
    return 0;
}

int loadgen_images_scan(loadgen_images *set, const char *dir, imgcls_errbuf *eb)
{
    int rc = 0;
    size_t cap = 0;
    set->v = NULL;
    set->n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        int err = errno;
        return imgcls_fail(eb, err == ENOENT ? IMGCLS_ENOTFOUND : IMGCLS_EIO, "cannot open image folder %s: %s",
                           dir, strerror(err));
    }
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (is_image_name(de->d_name)) {
            rc = add_if_regular(set, &cap, dir, de->d_name, eb);
            if (rc)
                goto out;
        }
        errno = 0;
    }
    if (errno) {
        rc = imgcls_fail(eb, IMGCLS_EIO, "cannot read image folder %s: %s", dir, strerror(errno));
        goto out;
    }
    if (set->n == 0) {
        rc = imgcls_fail(eb, IMGCLS_EEMPTY, "no images (*.jpg, *.jpeg, *.png) in %s", dir);
        goto out;
    }
    /* Sorted, so that round-robin order and --seed picks do not depend on the file system's order. */
    qsort(set->v, set->n, sizeof *set->v, cmp_image);
out:
    closedir(d);
    if (rc)
        loadgen_images_free(set);
    return rc;
}

size_t loadgen_pick(size_t request, size_t nimages, unsigned long seed)
{
    if (seed == 0)
        return request % nimages;
    /* Element `request` of the splitmix64 sequence started at seed; the modulo bias is below 2^-44 for
     * the at most 10^6 images a folder may hold. */
    uint64_t z = (uint64_t)seed + ((uint64_t)request + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (size_t)(z % nimages);
}

static int load_one(loadgen_image *img, unsigned long long *total, imgcls_errbuf *eb)
{
    int rc = buf_read_file(&img->data, img->path, LOADGEN_MAX_FILE_BYTES);
    if (rc == IMGCLS_ETOOBIG)
        return imgcls_fail(eb, rc, "%s is larger than %u bytes", img->path, LOADGEN_MAX_FILE_BYTES);
    if (rc)
        return imgcls_fail(eb, rc, "cannot read %s: %s", img->path, imgcls_strerror(rc));
    img->loaded = true;
    *total += img->data.len;
    if (*total > LOADGEN_MAX_TOTAL_BYTES)
        return imgcls_fail(eb, IMGCLS_ETOOBIG,
                           "the images to send take more than %llu bytes; use fewer or smaller ones",
                           (unsigned long long)LOADGEN_MAX_TOTAL_BYTES);
    return 0;
}

int loadgen_images_preload(loadgen_images *set, size_t nrequests, unsigned long seed, imgcls_errbuf *eb)
{
    unsigned long long total = 0;
    /* Round-robin uses the first min(N, M) images; stop there rather than walking 10^7 requests. */
    size_t walk = seed == 0 && nrequests > set->n ? set->n : nrequests;
    for (size_t i = 0; i < walk; i++) {
        loadgen_image *img = &set->v[loadgen_pick(i, set->n, seed)];
        if (img->loaded)
            continue;
        int rc = load_one(img, &total, eb);
        if (rc)
            return rc;
    }
    return 0;
}

void loadgen_images_free(loadgen_images *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->n; i++) {
        free(set->v[i].path);
        buf_free(&set->v[i].data);
    }
    free(set->v);
    set->v = NULL;
    set->n = 0;
}
