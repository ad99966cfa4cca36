/* imgcls worker: one app-tier worker process (DESIGN.md §2).
 *
 * Loop: receive up to --batch requests -> fetch each image (inline, or the claim-checked key in the
 * input bucket) -> classify each in turn -> write the output bucket -> send its response to its reply
 * queue -> only then delete the request. Delivery is at-least-once and every write is
 * idempotent (same key, same value), so a worker killed at any point loses nothing: the request
 * becomes visible again and another worker answers it. */
#ifndef IMGCLS_WORKER_WORKER_H
#define IMGCLS_WORKER_WORKER_H

int cli_worker(int argc, char **argv);

#endif
