/* imgcls loadgen: the workload generator (DESIGN.md §5).
 *
 * It replaces the original assignment's multithreaded Python generator with one thread driving many
 * transfers through the libcurl multi interface: a thread per request caps out at a few hundred
 * requests in flight and measures the generator's own scheduling as much as the server. */
#ifndef IMGCLS_LOADGEN_LOADGEN_H
#define IMGCLS_LOADGEN_LOADGEN_H

/* argv[0] is "loadgen". Returns the exit status: 0 when every request got 200, 1 when any failed,
 * 2 for a usage or set-up error (bad flag, empty folder, unreadable --expect file), 128 + the signal
 * when SIGINT or SIGTERM stopped the run (130, 143; the summary of what completed is still printed). */
int cli_loadgen(int argc, char **argv);

#endif
