/* Logging: one line per event, key=value pairs, on stderr (DESIGN.md §5).
 *
 *   log_event("info", "worker", "batch_done n=%d ms=%.1f", n, ms);
 *   -> ts=2026-11-28T06:40:00.123Z level=info comp=worker event=batch_done n=4 ms=31.2
 *
 * The line is built in one buffer and written with one write(2), so lines from several processes that
 * share a terminal do not interleave. */
#ifndef IMGCLS_COMMON_LOG_H
#define IMGCLS_COMMON_LOG_H

void log_event(const char *level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Minimum level printed: "debug" < "info" < "warn" < "error". Default "info". Unknown names are ignored. */
void log_set_level(const char *level);

#endif
