/* AWS error answers, read and classified (private to src/aws/; the classes are in aws.h). Pure
 * functions, tested with tables (tests/unit/test_aws.c) and fuzzed (tests/fuzz/fuzz_aws_response.c). */
#ifndef IMGCLS_AWS_AWS_ERROR_H
#define IMGCLS_AWS_AWS_ERROR_H

#include <stdbool.h>
#include <stddef.h>

/* Reads the error code and message from an error body: JSON ({"__type":"com.amazonaws.sqs#QueueDoesNotExist",
 * "message":...}; the part after '#' is the code) or XML (<Error><Code>..</Code><Message>..</Message>,
 * alone as S3 sends it or inside <ErrorResponse> as the query protocol does). Leaves code and msg empty
 * when the body is neither (a 503 from a load balancer, a HEAD without body). Never fails. */
void aws_error_parse(const char *body, size_t len, char *code, size_t codesz, char *msg, size_t msgsz);

/* Whether an answer with this HTTP status and error code is worth another try: 5xx, 429, and the
 * throttling and transient codes whatever their status. */
bool aws_error_retryable(long status, const char *code);
/* Whether code means throttling. */
bool aws_error_throttled(const char *code);
/* The IMGCLS_E* code for a final failure with this status and error code (aws.h's table). */
int aws_error_map(long status, const char *code);

#endif
