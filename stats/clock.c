/*
 * clock: the one place stats reads the real-time clock, and the ISO-8601
 * formatting used by every output (JSON API, findings, reports).
 */
#include "clock.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t mt_clock_wall_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *mt_clock_iso8601(int64_t ms, char *out)
{
    if (ms < 0)
        ms = 0;
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&secs, &tm) == NULL || tm.tm_year + 1900 > 9999) {
        snprintf(out, MT_CLOCK_ISO_LEN, "1970-01-01T00:00:00.000Z");
        return out;
    }
    /* Formatted into a roomy buffer first: the compiler cannot see that
     * every field fits its width. */
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    memcpy(out, tmp, MT_CLOCK_ISO_LEN - 1);
    out[MT_CLOCK_ISO_LEN - 1] = '\0';
    return out;
}
