/* Keeps the messages of the batch in progress invisible while the worker is still on them.
 *
 * A batch can take longer than the visibility timeout (a slow disk, a 12 MP image, a busy machine).
 * Without this, the queue would hand the same requests to a second worker half-way through. A
 * heartbeat thread, with its own queue handle (handles are one-thread-at-a-time), extends the
 * visibility of the current receipts every visibility/3 seconds until the batch is done. */
#ifndef IMGCLS_WORKER_HEARTBEAT_H
#define IMGCLS_WORKER_HEARTBEAT_H

#include "common/error.h"
#include "queue/queue.h"

#include <stddef.h>

typedef struct heartbeat heartbeat;

/* Starts the thread on its own handle to queue_url. Returns 0 or the queue's open error. */
int heartbeat_start(const char *queue_url, int visibility_s, heartbeat **out, imgcls_errbuf *eb);
/* Copies the receipts of msgs[0..n) as the batch to keep alive (n = 0: nothing). */
void heartbeat_track(heartbeat *h, const queue_msg *msgs, size_t n);
/* Stops and joins the thread. Accepts NULL. */
void heartbeat_stop(heartbeat *h);

#endif
