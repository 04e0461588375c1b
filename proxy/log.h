/*
 * log: one line per event on stderr, with a level, a UTC timestamp and, for
 * connection events, the connection id and client address.
 */
#ifndef MT_LOG_H
#define MT_LOG_H

#include <stddef.h>
#include <stdint.h>

typedef enum { MT_LOG_ERROR = 0, MT_LOG_WARN, MT_LOG_INFO, MT_LOG_DEBUG } mt_log_level_t;

extern mt_log_level_t mt_log_threshold;

const char *mt_log_level_str(mt_log_level_t level);
/* "error", "warn", "info", "debug"; -1 otherwise. */
int mt_log_level_parse(const char *s);

void mt_log(mt_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* conn_id 0 logs without a connection prefix. */
void mt_log_conn(mt_log_level_t level, uint64_t conn_id, const char *addr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Debug helper: logs len bytes as hex, 16 a line (debug level only). */
void mt_log_hexdump(uint64_t conn_id, const char *what, const uint8_t *buf, size_t len);

#define mt_log_enabled(level) ((level) <= mt_log_threshold)

#define mt_error(...) mt_log(MT_LOG_ERROR, __VA_ARGS__)
#define mt_warn(...) mt_log(MT_LOG_WARN, __VA_ARGS__)
#define mt_info(...) mt_log(MT_LOG_INFO, __VA_ARGS__)
#define mt_debug(...)                                                                              \
    do {                                                                                           \
        if (mt_log_enabled(MT_LOG_DEBUG))                                                          \
            mt_log(MT_LOG_DEBUG, __VA_ARGS__);                                                     \
    } while (0)

#endif
