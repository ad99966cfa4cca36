/* imgcls: one binary, one subcommand per process role (DESIGN.md §5). */
#include "aws/aws.h"
#include "cli/cli.h"
#include "web/web.h"
#include "loadgen/loadgen.h"
#include "scale/simulate.h"
#include "scale/scaler.h"
#include "worker/worker.h"

#include <malloc.h>
#include <stdio.h>
#include <string.h>

typedef struct subcommand {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} subcommand;

static const subcommand SUBCOMMANDS[] = {
    {"web", cli_web, "the web tier: HTTP uploads in, labels out"},
    {"up", cli_up, "run the whole system on this machine (web, queues, buckets, workers)"},
    {"worker", cli_worker, "one app-tier worker: classify requests from the queue"},
    {"scaler", cli_scaler, "the autoscaling controller: grows and shrinks the fleet by a policy"},
    {"classify", cli_classify, "classify image files from the command line"},
    {"bench", cli_bench, "time the engine (driven by `make bench`)"},
    {"loadgen", cli_loadgen, "the workload generator"},
    {"simulate", cli_simulate, "replay a workload against scaling policies"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: imgcls SUBCOMMAND [options]   (imgcls SUBCOMMAND --help for its options)\n\n");
    for (size_t i = 0; i < sizeof SUBCOMMANDS / sizeof *SUBCOMMANDS; i++)
        fprintf(f, "  %-10s %s\n", SUBCOMMANDS[i].name, SUBCOMMANDS[i].summary);
}

int main(int argc, char **argv)
{
    /* Every image allocates a few buffers of 0.3-2 MB. With glibc's defaults each of them is a fresh
     * mmap, so every request pays page faults on zeroed pages again (measured: up to twice the
     * preprocessing time). Keeping such blocks on the heap lets long-lived workers reuse them. */
    mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
    aws_global_init(); /* before any subcommand starts a thread */
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof SUBCOMMANDS / sizeof *SUBCOMMANDS; i++)
        if (strcmp(argv[1], SUBCOMMANDS[i].name) == 0)
            return SUBCOMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "imgcls: unknown subcommand '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
