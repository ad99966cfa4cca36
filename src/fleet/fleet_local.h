/* The local fleet's table: what `imgcls up` (the supervisor), `imgcls scaler` and each `imgcls worker`
 * share on one machine, as a small file mapped MAP_SHARED by all of them.
 *
 * Why shared memory: a worker reports busy/idle twice a batch, and that must cost nothing beside a 10 ms
 * image (two atomic stores). A row in the SQLite queue file would add two transactions a batch; a pipe
 * to the supervisor would need a reader thread and a protocol. Every field is a lock-free atomic of 32
 * or 64 bits, which x86-64 and arm64 keep coherent across processes.
 *
 * Who writes what:
 *   desired                       the scaler (fleet_set_desired); up seeds it with --min-workers
 *   slot pid, state STARTING/STOPPING/FREE, boot   the supervisor, as it starts, stops and reaps workers
 *   slot state RUNNING, busy, images, busy_us      the worker itself (fleet_report), once it serves
 * A worker that dies mid-batch leaves busy set; the supervisor clears the slot when it reaps it. */
#ifndef IMGCLS_FLEET_FLEET_LOCAL_H
#define IMGCLS_FLEET_FLEET_LOCAL_H

#include "common/error.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define FLEET_LOCAL_SLOTS 64

enum fleet_slot_state {
    FLEET_SLOT_FREE = 0,
    FLEET_SLOT_STARTING = 1,
    FLEET_SLOT_RUNNING = 2,
    FLEET_SLOT_STOPPING = 3,
};

typedef struct fleet_table fleet_table;

/* Creates (or resets) the table at path with `desired` set, for the supervisor. */
int fleet_table_create(const char *path, uint32_t desired, fleet_table **out, imgcls_errbuf *eb);
/* Maps an existing table (the backend's open). */
int fleet_table_open(const char *path, fleet_table **out, imgcls_errbuf *eb);
void fleet_table_close(fleet_table *t); /* accepts NULL */

uint32_t fleet_table_desired(const fleet_table *t);
void fleet_table_set_desired(fleet_table *t, uint32_t n);

/* Slots are 1..FLEET_LOCAL_SLOTS. */
enum fleet_slot_state fleet_table_state(const fleet_table *t, unsigned slot);
bool fleet_table_busy(const fleet_table *t, unsigned slot);
/* The supervisor: a worker started in slot (STARTING, counters kept), asked to stop (STOPPING), or
 * gone (FREE, busy cleared). */
void fleet_table_started(fleet_table *t, unsigned slot, pid_t pid);
void fleet_table_stopping(fleet_table *t, unsigned slot);
void fleet_table_gone(fleet_table *t, unsigned slot);
/* The worker in slot: serving (RUNNING on its first report), busy or not, counters added. A report
 * from a slot already STOPPING keeps it STOPPING. */
void fleet_table_report(fleet_table *t, unsigned slot, bool busy, uint32_t images, double busy_s);
/* Counts and measurements over all slots, as fleet_status. */
struct fleet_status;
void fleet_table_status(const fleet_table *t, struct fleet_status *out);

#endif
