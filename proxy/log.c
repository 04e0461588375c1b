/*
 * log: formats each event as a single write() to stderr so that lines from
 * one process never interleave mid-line.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

mt_log_level_t mt_log_threshold = MT_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

const char *mt_log_level_str(mt_log_level_t level)
{
    if ((unsigned)level >= sizeof(level_names) / sizeof(level_names[0]))
        return "unknown";
    return level_names[level];
}

int mt_log_level_parse(const char *s)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
        if (strcasecmp(s, level_names[i]) == 0)
            return (int)i;
    return -1;
}

static void log_emit(mt_log_level_t level, uint64_t conn_id, const char *addr, const char *fmt,
                     va_list ap)
{
    char line[2048];
    struct timeval tv;
    struct tm tm;
    size_t n;
    int w;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    w = snprintf(line + n, sizeof(line) - n, ".%03dZ %-5s ", (int)(tv.tv_usec / 1000),
                 mt_log_level_str(level));
    n += (size_t)w;
    if (conn_id != 0) {
        w = snprintf(line + n, sizeof(line) - n, "[c%llu %s] ", (unsigned long long)conn_id,
                     addr ? addr : "-");
        if (w > 0)
            n += (size_t)w < sizeof(line) - n ? (size_t)w : sizeof(line) - n - 1;
    }
    w = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    if (w > 0)
        n += (size_t)w < sizeof(line) - n ? (size_t)w : sizeof(line) - n - 1;
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    /* stderr is unbuffered; a failed log write has nowhere to be reported */
    if (write(STDERR_FILENO, line, n) < 0)
        return;
}

void mt_log(mt_log_level_t level, const char *fmt, ...)
{
    va_list ap;

    if (!mt_log_enabled(level))
        return;
    va_start(ap, fmt);
    log_emit(level, 0, NULL, fmt, ap);
    va_end(ap);
}

void mt_log_conn(mt_log_level_t level, uint64_t conn_id, const char *addr, const char *fmt, ...)
{
    va_list ap;

    if (!mt_log_enabled(level))
        return;
    va_start(ap, fmt);
    log_emit(level, conn_id, addr, fmt, ap);
    va_end(ap);
}

void mt_log_hexdump(uint64_t conn_id, const char *what, const uint8_t *buf, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    char row[16 * 3 + 1];

    if (!mt_log_enabled(MT_LOG_DEBUG))
        return;
    for (size_t off = 0; off < len; off += 16) {
        size_t k = 0;
        for (size_t i = off; i < len && i < off + 16; i++) {
            row[k++] = hex[buf[i] >> 4];
            row[k++] = hex[buf[i] & 0xf];
            row[k++] = ' ';
        }
        row[k ? k - 1 : 0] = '\0';
        mt_log_conn(MT_LOG_DEBUG, conn_id, NULL, "%s +%04zx: %s", what, off, row);
    }
}
