/* Configuration (src/common/config.h): config_parse over an argv made from the input, split at NUL or
 * '\n' (at most 64 arguments; argv[0] is the subcommand and is skipped). A line "IMGCLS_X=value" sets
 * that environment variable for the call instead, so the environment half is fuzzed too. The table
 * has every option type, a dash in a name, a required string and ranges that end at ULONG_MAX.
 * Invariants: on success every number is in its range and the positionals point into argv, in order;
 * on failure there are no positionals and there is a message. */
#include "fuzz_util.h"

#include "common/config.h"

#include <limits.h>
#include <string.h>

#define FUZZ_MAX_ARGS 64
#define FUZZ_MAX_ENV 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *name = NULL, *bind = NULL;
    unsigned long port = 0, big = 0, tiny = 0;
    bool verbose = false;
    config_opt opts[] = {
        {"port", CONFIG_UINT, "8081", "a port", 0, 65535, &port},
        {"max-body", CONFIG_UINT, "20971520", "a size", 1, ULONG_MAX, &big},
        {"tiny", CONFIG_UINT, NULL, "a small number", 3, 3, &tiny},
        {"bind", CONFIG_STR, "127.0.0.1", "an address", 0, 0, &bind},
        {"queue", CONFIG_STR, NULL, "required", 0, 0, &name},
        {"verbose", CONFIG_BOOL, NULL, "a flag", 0, 0, &verbose},
    };
    char *text = malloc(size + 1);
    FUZZ_CHECK(text != NULL);
    memcpy(text, data, size);
    text[size] = 0;
    char *argv[FUZZ_MAX_ARGS + 1] = {"fuzz"};
    char *env[FUZZ_MAX_ENV];
    int argc = 1, nenv = 0;
    for (char *p = text, *end = text + size; p <= end && argc < FUZZ_MAX_ARGS;) {
        char *q = p;
        while (q < end && *q != '\n' && *q != 0)
            q++;
        *q = 0;
        char *eq = strchr(p, '=');
        if (strncmp(p, "IMGCLS_", 7) == 0 && eq && nenv < FUZZ_MAX_ENV) {
            *eq = 0;
            if (setenv(p, eq + 1, 1) == 0)
                env[nenv++] = p;
        } else if (q < end || p < q) {
            argv[argc++] = p;
        }
        p = q + 1;
    }
    argv[argc] = NULL;
    config_args args;
    imgcls_errbuf eb = {{0}};
    int rc = config_parse(opts, sizeof opts / sizeof *opts, argc, argv, &args, &eb);
    if (rc) {
        FUZZ_CHECK(rc == IMGCLS_EINVAL || rc == IMGCLS_ENOMEM);
        FUZZ_CHECK(args.positional == NULL && args.npositional == 0);
        FUZZ_CHECK(rc == IMGCLS_ENOMEM || eb.msg[0] != 0);
    } else {
        FUZZ_CHECK(port <= 65535 && big >= 1 && (tiny == 0 || tiny == 3) && bind != NULL);
        FUZZ_CHECK(args.npositional >= 0 && args.npositional < argc);
        for (int i = 0, j = 1; i < args.npositional; i++, j++) {
            while (j < argc && argv[j] != args.positional[i])
                j++;
            FUZZ_CHECK(j < argc); /* in argv, after the previous one */
        }
        free(args.positional);
    }
    for (int i = 0; i < nenv; i++)
        unsetenv(env[i]);
    free(text);
    return 0;
}
