/* Parts of the SQS backend that read outside input, for the unit tests and the fuzz targets
 * (private to src/queue/ and tests). */
#ifndef IMGCLS_QUEUE_QUEUE_SQS_H
#define IMGCLS_QUEUE_QUEUE_SQS_H

#include "queue/queue.h"

/* Splits an SQS queue URL "http[s]://host[:port]/<account>/<name>" into its origin ("https://host:port"),
 * account (digits) and name ([A-Za-z0-9_-], 1..80), and the region its host names, if any
 * ("sqs.<region>.amazonaws.com", else empty). IMGCLS_EINVAL for anything else, IMGCLS_EUNSUPPORTED for a
 * FIFO queue. Each out has at least the sizes below. */
#define SQS_MAX_ORIGIN 512
#define SQS_MAX_NAME 81
#define SQS_MAX_ACCOUNT 16
int queue_sqs_parse_url(const char *url, char origin[SQS_MAX_ORIGIN], char account[SQS_MAX_ACCOUNT],
                        char name[SQS_MAX_NAME], char region[32], imgcls_errbuf *eb);

/* Reads a ReceiveMessage answer ({"Messages":[{"MessageId","ReceiptHandle","Body","Attributes":{
 * "ApproximateReceiveCount"}}]}) into out (up to max). On error nothing is left allocated and *n = 0. */
int queue_sqs_parse_receive(const char *json, size_t len, size_t max, queue_msg *out, size_t *n,
                            imgcls_errbuf *eb);

#endif
