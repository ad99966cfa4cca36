/* Fault injection for the wrapper backends of DESIGN.md §4 ("fails the Nth call with a chosen error").
 *
 * A wrapper URL is the inner backend's URL with the scheme "fault:" in front and a rule after the last
 * '#':
 *
 *     fault:<inner-url>[#op=<op>&fail=<N>&times=<K>&code=<ENAME>]
 *
 *   op     the operation whose calls are counted: one of the port's names (queue: send, receive,
 *          delete, change_visibility, depth; store: put, get, exists), "any" (every call counts), or
 *          "open" (the open itself fails). Default "any".
 *   fail   the 1-based call number that fails first. Default 1.
 *   times  how many calls in a row fail from there; 0 means every later call. Default 1.
 *   code   an IMGCLS_E* name without the prefix: EIO, EBACKEND, ETIMEDOUT, EBUSY... Default EIO.
 *
 * With no '#' or an empty rule the wrapper passes every call through, which is how the contract suites
 * run it. The last '#' is used so that inner URLs need no escaping (none of ours contain '#' anyway).
 * A failed call does nothing to the inner backend. */
#ifndef IMGCLS_COMMON_FAULT_H
#define IMGCLS_COMMON_FAULT_H

#include "common/error.h"

#include <stddef.h>

typedef struct fault_rule {
    char op[32];         /* "" when the wrapper only passes through */
    unsigned long fail;  /* first failing call, 1-based */
    unsigned long times; /* failing calls in a row; 0 = all from `fail` on */
    unsigned long calls; /* calls of `op` seen so far */
    int code;            /* negative IMGCLS_E* */
} fault_rule;

/* Parses url. ops is a NULL-terminated list of the port's operation names ("any" and "open" are always
 * accepted). Copies the inner URL into inner. Returns 0, or IMGCLS_EINVAL with eb saying what is wrong
 * (not a fault: URL, unknown op or code, bad number, inner URL too long). */
int fault_url_parse(const char *url, const char *const *ops, char *inner, size_t innersz, fault_rule *rule,
                    imgcls_errbuf *eb);

/* Counts one call of op against the rule. Returns 0 to let the call through, or the code to fail it
 * with (eb, if not NULL, then says which call was failed). */
int fault_hit(fault_rule *rule, const char *op, imgcls_errbuf *eb);

/* The code for an error name ("EIO" -> IMGCLS_EIO), or 0 when the name is unknown. */
int fault_code_by_name(const char *name);

#endif
