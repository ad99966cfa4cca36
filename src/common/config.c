#include "common/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

void config_env_name(const char *name, char *out, size_t outsz)
{
    size_t j = 0;
    const char *prefix = "IMGCLS_";
    for (size_t i = 0; prefix[i] && j + 1 < outsz; i++)
        out[j++] = prefix[i];
    for (size_t i = 0; name[i] && j + 1 < outsz; i++)
        out[j++] = name[i] == '-' ? '_' : (char)toupper((unsigned char)name[i]);
    if (outsz)
        out[j] = 0;
}

static int parse_bool(const char *s, bool *v)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off", ""};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        if (strcmp(s, yes[i]) == 0)
            return *v = true, 0;
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        if (strcmp(s, no[i]) == 0)
            return *v = false, 0;
    return IMGCLS_EINVAL;
}

/* Stores text into the option's destination; `source` names where the text came from, for errors. */
static int set_value(const config_opt *o, const char *text, const char *source, imgcls_errbuf *eb)
{
    switch (o->type) {
    case CONFIG_STR:
        *(const char **)o->dst = text;
        return 0;
    case CONFIG_BOOL:
        if (parse_bool(text, (bool *)o->dst))
            return imgcls_fail(eb, IMGCLS_EINVAL, "%s: expected true or false, got '%s'", source, text);
        return 0;
    case CONFIG_UINT: {
        char *end = NULL;
        errno = 0;
        unsigned long v = strtoul(text, &end, 10);
        if (!*text || *end || errno || text[0] == '-')
            return imgcls_fail(eb, IMGCLS_EINVAL, "%s: expected a whole number, got '%s'", source, text);
        if (v < o->min || v > o->max)
            return imgcls_fail(eb, IMGCLS_EINVAL, "%s: %lu is outside [%lu, %lu]", source, v, o->min,
                               o->max);
        *(unsigned long *)o->dst = v;
        return 0;
    }
    }
    return IMGCLS_EINVAL;
}

static int apply_defaults_and_env(const config_opt *opts, size_t nopts, imgcls_errbuf *eb)
{
    for (size_t i = 0; i < nopts; i++) {
        const config_opt *o = &opts[i];
        char env[128];
        config_env_name(o->name, env, sizeof env);
        const char *ev = getenv(env);
        int rc = 0;
        if (ev)
            rc = set_value(o, ev, env, eb);
        else if (o->def)
            rc = set_value(o, o->def, o->name, eb);
        else if (o->type == CONFIG_STR)
            *(const char **)o->dst = NULL;
        else if (o->type == CONFIG_BOOL)
            *(bool *)o->dst = false;
        else
            *(unsigned long *)o->dst = 0;
        if (rc)
            return rc;
    }
    return 0;
}

static const config_opt *find_opt(const config_opt *opts, size_t nopts, const char *name, size_t len)
{
    for (size_t i = 0; i < nopts; i++)
        if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0)
            return &opts[i];
    return NULL;
}

/* Handles argv[*i], which starts with "--". Advances *i past a separate value. */
static int parse_flag(const config_opt *opts, size_t nopts, int argc, char **argv, int *i,
                      imgcls_errbuf *eb)
{
    const char *arg = argv[*i] + 2;
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    const config_opt *o = find_opt(opts, nopts, arg, len);
    if (!o)
        return imgcls_fail(eb, IMGCLS_EINVAL, "unknown option --%.*s (see --help)", (int)len, arg);
    char source[96];
    snprintf(source, sizeof source, "--%s", o->name);
    if (eq)
        return set_value(o, eq + 1, source, eb);
    if (o->type == CONFIG_BOOL)
        return *(bool *)o->dst = true, 0;
    if (*i + 1 >= argc)
        return imgcls_fail(eb, IMGCLS_EINVAL, "--%s needs a value", o->name);
    *i += 1;
    return set_value(o, argv[*i], source, eb);
}

int config_parse(const config_opt *opts, size_t nopts, int argc, char **argv, config_args *out,
                 imgcls_errbuf *eb)
{
    out->positional = NULL;
    out->npositional = 0;
    out->help = false;
    int rc = apply_defaults_and_env(opts, nopts, eb);
    if (rc)
        return rc;
    char **pos = calloc((size_t)(argc > 0 ? argc : 1), sizeof *pos);
    if (!pos)
        return IMGCLS_ENOMEM;
    int npos = 0;
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (options_done || a[0] != '-' || a[1] == 0) {
            pos[npos++] = a;
        } else if (strcmp(a, "--") == 0) {
            options_done = true;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            out->help = true;
        } else if (a[1] == '-') {
            rc = parse_flag(opts, nopts, argc, argv, &i, eb);
            if (rc)
                goto out;
        } else {
            rc = imgcls_fail(eb, IMGCLS_EINVAL, "unknown option %s (see --help)", a);
            goto out;
        }
    }
    out->positional = pos;
    out->npositional = npos;
    pos = NULL;
out:
    free(pos);
    return rc;
}

static const char *type_hint(const config_opt *o)
{
    return o->type == CONFIG_UINT ? "N" : o->type == CONFIG_STR ? "VALUE" : "";
}

void config_print_help(FILE *f, const char *usage, const config_opt *opts, size_t nopts)
{
    /* `make docs` regenerates docs/configuration.md from the same tables through this switch. */
    const char *format = getenv("IMGCLS_HELP_FORMAT");
    if (format && strcmp(format, "markdown") == 0) {
        char title[128];
        const char *nl = strchr(usage, '\n');
        snprintf(title, sizeof title, "%.*s", nl ? (int)(nl - usage) : (int)strlen(usage), usage);
        config_print_markdown(f, title, opts, nopts);
        return;
    }
    fprintf(f, "%s\n\nOptions (each also read from its environment variable):\n", usage);
    for (size_t i = 0; i < nopts; i++) {
        const config_opt *o = &opts[i];
        char env[128], flag[128];
        config_env_name(o->name, env, sizeof env);
        snprintf(flag, sizeof flag, "--%s %s", o->name, type_hint(o));
        fprintf(f, "  %-26s %s", flag, o->help);
        if (o->def)
            fprintf(f, " [default: %s]", o->def);
        fprintf(f, " (%s)\n", env);
    }
    fprintf(f, "  %-26s show this help\n", "--help");
}

void config_print_markdown(FILE *f, const char *title, const config_opt *opts, size_t nopts)
{
    fprintf(f, "## `%s`\n\n| flag | environment | default | meaning |\n|---|---|---|---|\n", title);
    for (size_t i = 0; i < nopts; i++) {
        const config_opt *o = &opts[i];
        char env[128];
        config_env_name(o->name, env, sizeof env);
        fprintf(f, "| `--%s` | `%s` | %s%s%s | %s |\n", o->name, env, o->def ? "`" : "",
                o->def ? o->def : "—", o->def ? "`" : "", o->help);
    }
    fprintf(f, "\n");
}
