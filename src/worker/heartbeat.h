/* Keeps the messages the worker still holds invisible while it is on them.
 *
 * A batch can take longer than the visibility timeout (a slow disk, a 12 MP image, a busy machine).
 * Without this, the queue would hand the same requests to a second worker half-way through. A
 * heartbeat thread, with its own queue handle (handles are one-thread-at-a-time), extends the
 * visibility of the receipts it holds every visibility/3 seconds.
 *
 * It holds only what the worker still holds: a message the worker has answered and deleted, or
 * released for redelivery, is forgotten at once (extending it would hide a released message again, or
 * waste a call on a deleted one). And it gives up on a batch after max_batch_s seconds, so a worker
 * stuck inside one image cannot keep its messages from every other worker forever. */
#ifndef IMGCLS_WORKER_HEARTBEAT_H
#define IMGCLS_WORKER_HEARTBEAT_H

#include "common/error.h"
#include "queue/queue.h"

#include <stddef.h>

typedef struct heartbeat heartbeat;

/* Starts the thread on its own handle to queue_url. Returns 0 or the queue's open error. */
int heartbeat_start(const char *queue_url, int visibility_s, int max_batch_s, heartbeat **out, imgcls_errbuf *eb);
/* Copies the receipts of msgs[0..n) as the batch to keep alive (n = 0: nothing), from now on. */
void heartbeat_track(heartbeat *h, const queue_msg *msgs, size_t n);
/* Stops extending one receipt of the batch; a receipt it does not hold is ignored. */
void heartbeat_forget(heartbeat *h, const char *receipt);
/* Stops and joins the thread. Accepts NULL. */
void heartbeat_stop(heartbeat *h);

#endif
