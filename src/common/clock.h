/* Monotonic time, for measuring stages and deadlines. */
#ifndef IMGCLS_COMMON_CLOCK_H
#define IMGCLS_COMMON_CLOCK_H

#include <stdint.h>

/* Milliseconds on CLOCK_MONOTONIC, as a double so that stages shorter than a millisecond still show. */
double clock_ms(void);
/* Milliseconds on CLOCK_MONOTONIC, as an integer, for deadlines. */
int64_t clock_ms_i64(void);

#endif
