/* File names as clients send them (DESIGN.md §3, "File names are the client's").
 *
 * One rule for every place a client's file name arrives: the web tier's upload, a request message read
 * off the queue, and the name keys of the buckets. Pure functions: bytes in, verdict out. */
#ifndef IMGCLS_COMMON_FILENAME_H
#define IMGCLS_COMMON_FILENAME_H

#include <stdbool.h>
#include <stddef.h>

/* The longest name, in bytes: ext4's and S3's practical limit for one path component. */
#define FILENAME_MAX_BYTES 255

/* NULL when name[0..len) is an acceptable file name, else a short sentence saying why not. Acceptable:
 * 1..FILENAME_MAX_BYTES bytes of valid UTF-8 (shortest form, no surrogates, at most U+10FFFF) with no
 * control character (U+0000..U+001F, U+007F..U+009F), no '/' or '\', and not "." or "..". Spaces,
 * '+', '#', '%', accents, CJK, emoji, no extension and several dots are all fine. */
const char *filename_problem(const char *name, size_t len);

/* Reduces a path a client sent ("C:\Users\me\cat.jpg", "../../etc/passwd") to its last component and
 * checks that with filename_problem. On success copies it, NUL-terminated, into out (outsz >
 * FILENAME_MAX_BYTES) and returns NULL; otherwise returns the reason and out is "". */
const char *filename_from_client(const char *raw, size_t len, char *out, size_t outsz);

/* The length of name without its last extension: "test_0.JPEG" -> 6, "a.tar.gz" -> 5, "README" -> 6.
 * A leading dot is not an extension (".profile" -> 8). The output bucket's key is this stem. */
size_t filename_stem_len(const char *name);

/* Whether s[0..len) is valid UTF-8 (shortest form, no surrogates, at most U+10FFFF). */
bool utf8_valid(const char *s, size_t len);

#endif
