/*
 * clock: wall-clock helpers for stats. Only mt_stats_new() reads the real
 * clock; every later time is derived from the monotonic now_ns the proxy
 * passes in, so accounting never makes a system call per message.
 */
#ifndef MT_CLOCK_H
#define MT_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* Size of an ISO-8601 UTC timestamp with milliseconds, NUL included:
 * "2026-11-25T18:00:00.000Z". */
#define MT_CLOCK_ISO_LEN 25

/* Milliseconds since the Unix epoch, from CLOCK_REALTIME. */
int64_t mt_clock_wall_ms(void);

/* Formats ms since the epoch as "YYYY-MM-DDTHH:MM:SS.mmmZ" into out
 * (at least MT_CLOCK_ISO_LEN bytes). Returns out. */
char *mt_clock_iso8601(int64_t ms, char *out);

#endif
