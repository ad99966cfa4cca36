/* The subcommands of the imgcls binary (DESIGN.md §5). Each takes argc/argv with argv[0] = its own
 * name and returns the process exit status. */
#ifndef IMGCLS_CLI_CLI_H
#define IMGCLS_CLI_CLI_H

int cli_classify(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_up(int argc, char **argv);

#endif
