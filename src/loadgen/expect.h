/* --expect FILE.csv: the labels each image should get, for an accuracy figure.
 *
 * One row per line, `name,label`, where name is the image's file name without its extension (the key
 * of the assignment's output bucket); a row keyed on the full file name ("test_0.JPEG") is used when
 * there is no row for the bare name. The first comma separates the two, so a label may itself hold
 * commas and spaces ("tile roof", "crane, bird") without quoting. A field wrapped in double quotes is
 * unwrapped and "" inside it becomes ", so CSVs written by spreadsheets and Python's csv module read
 * the same. Blank lines, a UTF-8 byte-order mark, CR before LF, and spaces around fields are ignored.
 * Multi-line quoted fields are not supported: labels never span lines. A header row such as
 * "Image,Results" is read as an ordinary row; it matches no image and so does no harm. When a name is
 * listed twice the first row counts. */
#ifndef IMGCLS_LOADGEN_EXPECT_H
#define IMGCLS_LOADGEN_EXPECT_H

#include "common/buf.h"
#include "common/error.h"

#include <stddef.h>

#define LOADGEN_MAX_EXPECT_BYTES (64u * 1024 * 1024)

typedef struct loadgen_expect_row {
    const char *name, *label; /* NUL-terminated, inside text */
    size_t line;              /* 1-based, to keep the first of duplicate rows */
} loadgen_expect_row;

typedef struct loadgen_expect {
    imgcls_buf text;          /* the file, cut into fields in place */
    loadgen_expect_row *rows; /* sorted by name, then line */
    size_t n;
} loadgen_expect;

/* Reads and parses path. Returns 0, IMGCLS_ENOTFOUND, IMGCLS_EIO, IMGCLS_ETOOBIG (over
 * LOADGEN_MAX_EXPECT_BYTES), IMGCLS_EFORMAT (a non-blank line without a comma, with eb giving the line
 * number), or IMGCLS_ENOMEM. On error nothing is left to free. */
int loadgen_expect_load(loadgen_expect *e, const char *path, imgcls_errbuf *eb);

/* The label for the image whose extension-less name is name[0..len), or NULL. */
const char *loadgen_expect_find(const loadgen_expect *e, const char *name, size_t len);

/* Accepts a zeroed or freed table. */
void loadgen_expect_free(loadgen_expect *e);

#endif
