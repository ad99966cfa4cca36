/* The backends the queue registry knows (private to src/queue/). A new backend adds its ops table here
 * and to the table in queue.c. */
#ifndef IMGCLS_QUEUE_QUEUE_BACKEND_H
#define IMGCLS_QUEUE_QUEUE_BACKEND_H

#include "queue/queue.h"

extern const struct queue_ops queue_sqlite_ops;
extern const struct queue_ops queue_fault_ops;
extern const struct queue_ops queue_sqs_https_ops;
extern const struct queue_ops queue_sqs_http_ops;

#endif
