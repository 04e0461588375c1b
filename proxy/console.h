/*
 * console: `mongotap console`, a live terminal view of a running mongotap
 * (like top): totals, top shapes, findings, connections and request windows
 * (one opened as its commands), polled from the admin API on one libuv loop
 * and drawn with ncurses.
 */
#ifndef MT_CONSOLE_H
#define MT_CONSOLE_H

#include <stddef.h>

typedef enum {
    MT_CONSOLE_VIEW_SHAPES = 0,
    MT_CONSOLE_VIEW_FINDINGS,
    MT_CONSOLE_VIEW_CONNECTIONS,
    MT_CONSOLE_VIEW_WINDOWS, /* request windows as rows */
    MT_CONSOLE_VIEW_WINDOW,  /* one window's commands */
} mt_console_view_t;

#define MT_CONSOLE_VIEWS 5

typedef enum {
    MT_CONSOLE_SORT_TIME = 0, /* total latency */
    MT_CONSOLE_SORT_COUNT,
    MT_CONSOLE_SORT_P99,
} mt_console_sort_t;

const char *mt_console_view_str(mt_console_view_t view);
const char *mt_console_sort_str(mt_console_sort_t sort);

/* Formats a duration in milliseconds into at most 8 characters ("0.31", "12.5", "1204", "3.2k"). */
void mt_console_fmt_ms(double ms, char *out, size_t cap);
/* Formats a count into at most 8 characters ("512", "1234567", "12.3M"). */
void mt_console_fmt_count(double n, char *out, size_t cap);
/* Formats seconds as "45s", "12m05s", "3h02m", "2d04h". */
void mt_console_fmt_uptime(double seconds, char *out, size_t cap);
/* A shape as people read it: {"_id": "?"} becomes {_id: ?}. */
void mt_console_short_shape(const char *shape, char *out, size_t cap);

/* `mongotap console [--admin URL] [--token TOKEN] [--interval MS]`; argv[0] is
 * "console". Returns the exit code: 0 on q, 1 when it cannot run, 2 on bad flags.
 * When stdout is not a terminal it prints one plain-text snapshot instead. */
int mt_console_main(int argc, char **argv);

#endif
