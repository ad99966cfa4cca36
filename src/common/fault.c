#include "common/fault.h"

#include "common/url.h"

#include <stdbool.h>
#include <string.h>

int fault_code_by_name(const char *name)
{
    /* Walk the codes through imgcls_err_name rather than duplicating the X-macro's list here. */
    for (int c = -1; strcmp(imgcls_err_name(c), "UNKNOWN") != 0; c--)
        if (strcmp(imgcls_err_name(c), name) == 0)
            return c;
    return 0;
}

static bool op_known(const char *op, const char *const *ops)
{
    if (strcmp(op, "any") == 0 || strcmp(op, "open") == 0)
        return true;
    for (size_t i = 0; ops && ops[i]; i++)
        if (strcmp(op, ops[i]) == 0)
            return true;
    return false;
}

/* Applies one key=value pair of the rule. */
static int set_param(fault_rule *r, const char *key, const char *val, const char *const *ops,
                     imgcls_errbuf *eb)
{
    if (strcmp(key, "op") == 0) {
        if (!op_known(val, ops) || strlen(val) >= sizeof r->op)
            return imgcls_fail(eb, IMGCLS_EINVAL, "fault: unknown op '%s'", val);
        memcpy(r->op, val, strlen(val) + 1);
        return 0;
    }
    if (strcmp(key, "fail") == 0 || strcmp(key, "times") == 0) {
        bool fail = key[0] == 'f';
        if (url_parse_ulong(val, fail ? 1 : 0, 1000000000UL, fail ? &r->fail : &r->times))
            return imgcls_fail(eb, IMGCLS_EINVAL, "fault: %s: bad number '%s'", key, val);
        return 0;
    }
    if (strcmp(key, "code") == 0) {
        r->code = fault_code_by_name(val);
        if (!r->code)
            return imgcls_fail(eb, IMGCLS_EINVAL, "fault: unknown code '%s'", val);
        return 0;
    }
    return imgcls_fail(eb, IMGCLS_EINVAL, "fault: unknown parameter '%s'", key);
}

int fault_url_parse(const char *url, const char *const *ops, char *inner, size_t innersz, fault_rule *rule,
                    imgcls_errbuf *eb)
{
    static const char prefix[] = "fault:";
    memset(rule, 0, sizeof *rule);
    if (strncmp(url, prefix, sizeof prefix - 1) != 0)
        return imgcls_fail(eb, IMGCLS_EINVAL, "fault: URL must start with 'fault:'");
    const char *in = url + sizeof prefix - 1;
    const char *hash = strrchr(in, '#');
    size_t n = hash ? (size_t)(hash - in) : strlen(in);
    if (n == 0 || n + 1 > innersz)
        return imgcls_fail(eb, IMGCLS_EINVAL, "fault: inner URL is empty or too long");
    memcpy(inner, in, n);
    inner[n] = 0;
    if (!hash || !hash[1])
        return 0; /* pass-through */
    memcpy(rule->op, "any", 4);
    rule->fail = 1;
    rule->times = 1;
    rule->code = IMGCLS_EIO;
    const char *cur = hash + 1;
    char key[32], val[64];
    int more;
    while ((more = url_param_next(&cur, key, sizeof key, val, sizeof val)) > 0) {
        int rc = set_param(rule, key, val, ops, eb);
        if (rc)
            return rc;
    }
    if (more < 0)
        return imgcls_fail(eb, IMGCLS_EINVAL, "fault: malformed rule '%s'", hash + 1);
    return 0;
}

int fault_hit(fault_rule *rule, const char *op, imgcls_errbuf *eb)
{
    if (!rule->op[0] || (strcmp(rule->op, "any") != 0 && strcmp(rule->op, op) != 0))
        return 0;
    unsigned long call = ++rule->calls;
    if (call < rule->fail || (rule->times && call - rule->fail >= rule->times))
        return 0;
    return imgcls_fail(eb, rule->code, "fault injected: %s call %lu fails with %s", op, call,
                       imgcls_err_name(rule->code));
}
