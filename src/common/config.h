/* Configuration: every setting is a flag and an IMGCLS_* environment variable (DESIGN.md §5).
 *
 * Each subcommand declares one table of config_opt. The same table parses the command line and the
 * environment, prints --help, and prints the Markdown reference in docs/configuration.md, so the three
 * cannot drift apart. Precedence: flag, then environment, then the default. */
#ifndef IMGCLS_COMMON_CONFIG_H
#define IMGCLS_COMMON_CONFIG_H

#include "common/error.h"

#include <stdbool.h>
#include <stdio.h>

enum config_type {
    CONFIG_STR,  /* dst: const char **; points into argv, the environment or the default */
    CONFIG_UINT, /* dst: unsigned long *; decimal, checked against [min, max] */
    CONFIG_BOOL, /* dst: bool *; a flag without value; env accepts 1/0/true/false/yes/no */
};

typedef struct config_opt {
    const char *name; /* "max-body" -> --max-body and IMGCLS_MAX_BODY */
    enum config_type type;
    const char *def;  /* default, as text; NULL means unset (STR stays NULL, UINT/BOOL stay 0) */
    const char *help;
    unsigned long min, max; /* CONFIG_UINT only */
    void *dst;
} config_opt;

typedef struct config_args {
    char **positional; /* the non-option arguments, in order; points into argv (caller frees the array) */
    int npositional;
    bool help; /* --help or -h was given */
} config_args;

/* Parses argv (argv[0] is the subcommand name and is skipped) and the environment into the table's
 * destinations. Returns 0, or IMGCLS_EINVAL with eb naming the flag or variable and the problem (unknown
 * flag, missing value, not a number, out of range). On error, destinations may be partly written and
 * out->positional is NULL. "--" ends the options. */
int config_parse(const config_opt *opts, size_t nopts, int argc, char **argv, config_args *out,
                 imgcls_errbuf *eb);

/* Prints "usage" and then one line per option with its variable, default and help. */
void config_print_help(FILE *f, const char *usage, const config_opt *opts, size_t nopts);

/* Prints the table as a Markdown table for docs/configuration.md. */
void config_print_markdown(FILE *f, const char *title, const config_opt *opts, size_t nopts);

/* The environment variable for an option name: "max-body" -> "IMGCLS_MAX_BODY". */
void config_env_name(const char *name, char *out, size_t outsz);

#endif
