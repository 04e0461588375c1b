/*
 * console: `mongotap console`. Every --interval it GETs /api/stats,
 * /api/findings, /api/connections and /api/windows (and /api/windows/ID while
 * a window is open: one round, never two at once), keeps the last good answer
 * of each as BSON and redraws. Space pauses the rounds; / edits a filter.
 * Keys, the poll timer, SIGWINCH and the HTTP client all run on one libuv
 * loop; ncurses only draws.
 */
#include "console.h"

#include <bson/bson.h>
#include <ctype.h>
#include <curses.h>
#include <errno.h>
#include <getopt.h>
#include <locale.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "cli.h"
#include "detect.h"
#include "httpc.h"

#define MT_CONSOLE_DEFAULT_ADMIN "http://127.0.0.1:27080"
#define MT_CONSOLE_DEFAULT_INTERVAL_MS 1000
#define MT_CONSOLE_MIN_INTERVAL_MS 100
#define MT_CONSOLE_MAX_INTERVAL_MS 3600000
#define MT_CONSOLE_HTTP_TIMEOUT_MS 5000
#define MT_CONSOLE_LINE_MAX 1024
/* Lines of the table area above the body (totals, keys, status, column titles). */
#define MT_CONSOLE_TOP_ROWS 4
#define MT_CONSOLE_FILTER_MAX 128
#define MT_CONSOLE_WINDOW_ROWS 200 /* windows listed */

typedef enum {
    FEED_STATS = 0,
    FEED_FINDINGS,
    FEED_CONNECTIONS,
    FEED_WINDOWS, /* the list, filtered */
    FEED_WINDOW,  /* the open window, when there is one */
    FEED_COUNT
} feed_t;

typedef enum { PAIR_TITLE = 1, PAIR_ERROR, PAIR_HIGH, PAIR_MEDIUM, PAIR_HEAD } pair_t;

typedef struct console_s console_t;

typedef struct {
    console_t *con;
    feed_t feed;
} feed_req_t;

/* One body line: text plus its ncurses attributes. */
typedef struct {
    attr_t attr;
    char text[MT_CONSOLE_LINE_MAX];
} line_t;

typedef struct {
    line_t *v;
    size_t n, cap;
} lines_t;

struct console_s {
    uv_loop_t *loop;
    uv_timer_t tick;
    uv_poll_t input;
    uv_signal_t sig_winch, sig_int, sig_term;
    bool input_started, signals_started, tick_started;
    mt_httpc_t *http;
    const char *admin_url;
    uint64_t interval_ms;
    bool tty; /* curses mode; otherwise one plain snapshot */
    bool curses_on;
    SCREEN *screen;
    bool stopping;
    int exit_code;

    feed_req_t reqs[FEED_COUNT];
    char paths[FEED_COUNT][MT_HTTPC_PATH_MAX]; /* of the running round */
    bson_t *docs[FEED_COUNT];                  /* last good answer of each feed, NULL before one */
    int round_left;      /* answers still awaited in this round, 0 when idle */
    char round_err[512]; /* first error of the running round */
    char status[512];    /* error shown on screen, "" when all is well */
    time_t updated_at;

    mt_console_view_t view;
    mt_console_sort_t sort;
    int scroll[MT_CONSOLE_VIEWS];
    bool colors;

    /* the windows view: a selected row; digits typed name a window to open */
    int sel;
    char number[24];
    uint64_t window_id;  /* open in the window view, 0 when none */
    bool window_missing; /* the admin answered 404 for it */
    /* "/": a filter being edited, and the one applied (namespace, shape or app) */
    bool editing;
    char edit[MT_CONSOLE_FILTER_MAX];
    char filter[MT_CONSOLE_FILTER_MAX];
    /* space: no rounds while paused; each tick skipped is counted */
    bool paused;
    unsigned skipped;
};

const char *mt_console_view_str(mt_console_view_t view)
{
    switch (view) {
    case MT_CONSOLE_VIEW_SHAPES:
        return "shapes";
    case MT_CONSOLE_VIEW_FINDINGS:
        return "findings";
    case MT_CONSOLE_VIEW_CONNECTIONS:
        return "connections";
    case MT_CONSOLE_VIEW_WINDOWS:
        return "windows";
    case MT_CONSOLE_VIEW_WINDOW:
        return "window";
    }
    return "unknown";
}

const char *mt_console_sort_str(mt_console_sort_t sort)
{
    switch (sort) {
    case MT_CONSOLE_SORT_TIME:
        return "time";
    case MT_CONSOLE_SORT_COUNT:
        return "count";
    case MT_CONSOLE_SORT_P99:
        return "p99";
    }
    return "unknown";
}

void mt_console_fmt_ms(double ms, char *out, size_t cap)
{
    if (!isfinite(ms) || ms < 0)
        snprintf(out, cap, "-");
    else if (ms < 10)
        snprintf(out, cap, "%.2f", ms);
    else if (ms < 1000)
        snprintf(out, cap, "%.1f", ms);
    else if (ms < 1e7)
        snprintf(out, cap, "%.0f", ms);
    else if (ms < 1e10)
        snprintf(out, cap, "%.1fk", ms / 1e3);
    else
        snprintf(out, cap, "%.1fM", ms / 1e6);
}

void mt_console_fmt_count(double n, char *out, size_t cap)
{
    if (!isfinite(n) || n < 0)
        snprintf(out, cap, "-");
    else if (n < 1e7)
        snprintf(out, cap, "%.0f", n);
    else if (n < 1e9)
        snprintf(out, cap, "%.1fM", n / 1e6);
    else
        snprintf(out, cap, "%.1fG", n / 1e9);
}

void mt_console_fmt_uptime(double seconds, char *out, size_t cap)
{
    if (!isfinite(seconds) || seconds < 0)
        seconds = 0;
    unsigned long s = (unsigned long)seconds;
    if (s < 60)
        snprintf(out, cap, "%lus", s);
    else if (s < 3600)
        snprintf(out, cap, "%lum%02lus", s / 60, s % 60);
    else if (s < 86400)
        snprintf(out, cap, "%luh%02lum", s / 3600, (s % 3600) / 60);
    else
        snprintf(out, cap, "%lud%02luh", s / 86400, (s % 86400) / 3600);
}

void mt_console_short_shape(const char *shape, char *out, size_t cap)
{
    size_t n = 0;
    if (cap == 0)
        return;
    for (const char *p = shape; *p && n + 1 < cap;) {
        /* "key": -> key:   and  "?" -> ? */
        if (*p == '"') {
            const char *q = p + 1;
            while (*q && (isalnum((unsigned char)*q) || *q == '_' || *q == '.' || *q == '$'))
                q++;
            bool key = *q == '"' && q[1] == ':' && q > p + 1;
            bool hole = q == p + 1 && q[0] == '?' && q[1] == '"';
            if (key || hole) {
                const char *from = p + 1, *to = key ? q : q + 1;
                while (from < to && n + 1 < cap)
                    out[n++] = *from++;
                p = key ? q + 1 : q + 2;
                continue;
            }
        }
        out[n++] = *p++;
    }
    out[n] = '\0';
}

/* ---- reading the admin API's JSON (as BSON) ---- */

static bool doc_find(const bson_t *doc, const char *path, bson_iter_t *out)
{
    bson_iter_t it;
    if (doc == NULL || !bson_iter_init(&it, doc))
        return false;
    return bson_iter_find_descendant(&it, path, out);
}

static double iter_num(const bson_iter_t *it)
{
    switch (bson_iter_type(it)) {
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_BOOL:
        return bson_iter_as_double(it);
    default:
        return NAN;
    }
}

static double doc_num(const bson_t *doc, const char *path)
{
    bson_iter_t it;
    return doc_find(doc, path, &it) ? iter_num(&it) : NAN;
}

static const char *iter_str(const bson_iter_t *it)
{
    return BSON_ITER_HOLDS_UTF8(it) ? bson_iter_utf8(it, NULL) : NULL;
}

static const char *doc_str(const bson_t *doc, const char *path)
{
    bson_iter_t it;
    return doc_find(doc, path, &it) ? iter_str(&it) : NULL;
}

static bool doc_bool(const bson_t *doc, const char *path)
{
    bson_iter_t it;
    return doc_find(doc, path, &it) && BSON_ITER_HOLDS_BOOL(&it) && bson_iter_bool(&it);
}

/* Like doc_num/doc_find but on a sub-iterator positioned at a document. */
static bool sub_find(const bson_iter_t *parent, const char *path, bson_iter_t *out)
{
    bson_iter_t child;
    if (!BSON_ITER_HOLDS_DOCUMENT(parent) || !bson_iter_recurse(parent, &child))
        return false;
    return bson_iter_find_descendant(&child, path, out);
}

static double sub_num(const bson_iter_t *parent, const char *path)
{
    bson_iter_t it;
    return sub_find(parent, path, &it) ? iter_num(&it) : NAN;
}

static const char *sub_str(const bson_iter_t *parent, const char *path)
{
    bson_iter_t it;
    const char *s;
    return sub_find(parent, path, &it) && (s = iter_str(&it)) != NULL ? s : NULL;
}

static const char *or_dash(const char *s)
{
    return s != NULL && *s != '\0' ? s : "-";
}

/* "db.coll cmd shape" for a parent/children object, or the value itself when it is a string. */
static void describe_cmd(const bson_iter_t *it, char *out, size_t cap)
{
    const char *s = iter_str(it);
    if (s != NULL) {
        snprintf(out, cap, "%s", s);
        return;
    }
    if (!BSON_ITER_HOLDS_DOCUMENT(it)) {
        snprintf(out, cap, "-");
        return;
    }
    snprintf(out, cap, "%s.%s %s %s", or_dash(sub_str(it, "db")),
             or_dash(sub_str(it, "collection")), or_dash(sub_str(it, "command")),
             or_dash(sub_str(it, "shape")));
}

/* A short rendering of any scalar, for loosely typed fields like a connection's window. */
static void describe_value(const bson_iter_t *it, char *out, size_t cap)
{
    switch (bson_iter_type(it)) {
    case BSON_TYPE_UTF8:
        snprintf(out, cap, "%s", bson_iter_utf8(it, NULL));
        break;
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DOUBLE:
        mt_console_fmt_count(bson_iter_as_double(it), out, cap);
        break;
    case BSON_TYPE_BOOL:
        snprintf(out, cap, "%s", bson_iter_bool(it) ? "yes" : "no");
        break;
    case BSON_TYPE_DOCUMENT: {
        double id = sub_num(it, "id"), cmds = sub_num(it, "commands");
        if (!isnan(id) && !isnan(cmds))
            snprintf(out, cap, "#%.0f (%.0f cmds)", id, cmds);
        else if (!isnan(id))
            snprintf(out, cap, "#%.0f", id);
        else
            snprintf(out, cap, "open");
        break;
    }
    default:
        snprintf(out, cap, "-");
        break;
    }
}

/* ---- body lines ---- */

static line_t *lines_add(lines_t *ls, attr_t attr, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static line_t *lines_add(lines_t *ls, attr_t attr, const char *fmt, ...)
{
    if (ls->n == ls->cap) {
        size_t cap = ls->cap ? ls->cap * 2 : 64;
        line_t *v = realloc(ls->v, cap * sizeof(*v));
        if (v == NULL)
            return NULL; /* drop the line; the next redraw tries again */
        ls->v = v;
        ls->cap = cap;
    }
    line_t *l = &ls->v[ls->n++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->text, sizeof(l->text), fmt, ap);
    va_end(ap);
    l->attr = attr;
    return l;
}

typedef struct {
    const char *db, *coll, *cmd, *shape;
    double count, errors, docs, sum, p50, p99, max;
} shape_row_t;

static int shape_cmp(const void *a, const void *b, void *arg)
{
    const mt_console_sort_t *sort = arg;
    const shape_row_t *x = a, *y = b;
    double kx, ky;
    switch (*sort) {
    case MT_CONSOLE_SORT_COUNT:
        kx = x->count, ky = y->count;
        break;
    case MT_CONSOLE_SORT_P99:
        kx = x->p99, ky = y->p99;
        break;
    default:
        kx = x->sum, ky = y->sum;
        break;
    }
    if (isnan(kx))
        kx = -1;
    if (isnan(ky))
        ky = -1;
    if (kx != ky)
        return kx < ky ? 1 : -1;
    /* Ties in a fixed order, so that rows do not swap places between refreshes. */
    if (x->sum != y->sum && !isnan(x->sum) && !isnan(y->sum))
        return x->sum < y->sum ? 1 : -1;
    int c = strcmp(x->coll ? x->coll : "", y->coll ? y->coll : "");
    if (c == 0)
        c = strcmp(x->cmd ? x->cmd : "", y->cmd ? y->cmd : "");
    return c != 0 ? c : strcmp(x->shape ? x->shape : "", y->shape ? y->shape : "");
}

/* Reads the shapes array of /api/stats into rows (pointers into doc). */
static size_t collect_shapes(const bson_t *stats, shape_row_t **out)
{
    bson_iter_t arr, it;
    size_t n = 0, cap = 0;
    shape_row_t *rows = NULL;

    *out = NULL;
    if (!doc_find(stats, "shapes", &arr) || !BSON_ITER_HOLDS_ARRAY(&arr) ||
        !bson_iter_recurse(&arr, &it))
        return 0;
    while (bson_iter_next(&it)) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&it))
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            shape_row_t *nr = realloc(rows, ncap * sizeof(*nr));
            if (nr == NULL)
                break;
            rows = nr;
            cap = ncap;
        }
        shape_row_t *r = &rows[n++];
        r->db = sub_str(&it, "db");
        r->coll = sub_str(&it, "collection");
        r->cmd = sub_str(&it, "command");
        r->shape = sub_str(&it, "shape");
        r->count = sub_num(&it, "count");
        r->errors = sub_num(&it, "errors");
        r->docs = sub_num(&it, "docs_returned");
        r->sum = sub_num(&it, "latency_ms.sum");
        r->p50 = sub_num(&it, "latency_ms.p50");
        r->p99 = sub_num(&it, "latency_ms.p99");
        r->max = sub_num(&it, "latency_ms.max");
    }
    *out = rows;
    return n;
}

static const char shapes_title[] =
    "  TOTAL ms    COUNT   P50 ms   P99 ms   MAX ms     DOCS  ERR  COMMAND     "
    "NAMESPACE                 SHAPE";
/* Below this width the shape would be cut off entirely: drop the secondary columns. */
#define MT_CONSOLE_WIDE_COLS 120
static const char shapes_title_narrow[] =
    "  TOTAL ms    COUNT   P99 ms  COMMAND    NAMESPACE           SHAPE";

/* "db.coll" in at most width columns; a long database name gives way first, since the
 * collection is what tells shapes apart ("tvguide_te~.channel"). */
static void fit_ns(const char *db, const char *coll, size_t width, char *out, size_t cap)
{
    size_t dl = strlen(db), cl = strlen(coll);
    if (dl + 1 + cl <= width || width < 8) {
        snprintf(out, cap, "%s.%s", db, coll);
    } else if (cl + 4 <= width) {
        snprintf(out, cap, "%.*s~.%s", (int)(width - cl - 2), db, coll);
    } else {
        snprintf(out, cap, "%.*s~", (int)(width - 1), coll);
    }
}

static void build_shapes(const console_t *con, lines_t *ls, bool wide)
{
    shape_row_t *rows;
    size_t n = collect_shapes(con->docs[FEED_STATS], &rows);

    if (con->docs[FEED_STATS] == NULL)
        return;
    if (n == 0) {
        lines_add(ls, A_DIM,
                  "  No commands seen yet: point an application at mongotap's listen address.");
        return;
    }
    if (con->filter[0] != '\0') {
        size_t kept = 0;
        for (size_t i = 0; i < n; i++) {
            char ns[600];
            snprintf(ns, sizeof(ns), "%s.%s", or_dash(rows[i].db), or_dash(rows[i].coll));
            if (strcasestr(ns, con->filter) || strcasestr(or_dash(rows[i].shape), con->filter))
                rows[kept++] = rows[i];
        }
        n = kept;
        if (n == 0) {
            lines_add(ls, A_DIM, "  No shape matches the filter \"%s\" (/ to change it).",
                      con->filter);
            free(rows);
            return;
        }
    }
    mt_console_sort_t sort = con->sort;
    qsort_r(rows, n, sizeof(*rows), shape_cmp, &sort);
    for (size_t i = 0; i < n; i++) {
        const shape_row_t *r = &rows[i];
        char total[16], count[16], p50[16], p99[16], max[16], docs[16], errs[16], ns[160];
        mt_console_fmt_ms(r->sum, total, sizeof(total));
        mt_console_fmt_count(r->count, count, sizeof(count));
        mt_console_fmt_ms(r->p50, p50, sizeof(p50));
        mt_console_fmt_ms(r->p99, p99, sizeof(p99));
        mt_console_fmt_ms(r->max, max, sizeof(max));
        mt_console_fmt_count(r->docs, docs, sizeof(docs));
        mt_console_fmt_count(r->errors, errs, sizeof(errs));
        fit_ns(or_dash(r->db), or_dash(r->coll), wide ? 25 : 19, ns, sizeof(ns));
        attr_t attr = r->errors > 0 && con->colors ? COLOR_PAIR(PAIR_MEDIUM) : A_NORMAL;
        if (wide)
            lines_add(ls, attr, "%10s %8s %8s %8s %8s %8s %4s  %-11.11s %-25.25s %s", total, count,
                      p50, p99, max, docs, errs, or_dash(r->cmd), ns, or_dash(r->shape));
        else
            lines_add(ls, attr, "%10s %8s %8s  %-10.10s %-19.19s %s", total, count, p99,
                      or_dash(r->cmd), ns, or_dash(r->shape));
    }
    free(rows);
}

static const char connections_title[] =
    "      ID  CLIENT                  APP                   DRIVER                     "
    "   COMMANDS  WINDOW";

static void build_connections(const console_t *con, lines_t *ls)
{
    bson_iter_t arr, it;
    size_t n = 0;

    if (con->docs[FEED_CONNECTIONS] == NULL)
        return;
    if (doc_find(con->docs[FEED_CONNECTIONS], "connections", &arr) && BSON_ITER_HOLDS_ARRAY(&arr) &&
        bson_iter_recurse(&arr, &it)) {
        while (bson_iter_next(&it)) {
            bson_iter_t w;
            char window[64] = "-", cmds[16];
            if (!BSON_ITER_HOLDS_DOCUMENT(&it))
                continue;
            if (sub_find(&it, "window", &w))
                describe_value(&w, window, sizeof(window));
            mt_console_fmt_count(sub_num(&it, "commands"), cmds, sizeof(cmds));
            lines_add(ls, A_NORMAL, "%8.0f  %-22.22s  %-20.20s  %-28.28s %9s  %s",
                      sub_num(&it, "id"), or_dash(sub_str(&it, "client")),
                      or_dash(sub_str(&it, "app_name")), or_dash(sub_str(&it, "driver")), cmds,
                      window);
            n++;
        }
    }
    if (n == 0)
        lines_add(ls, A_DIM, "  No client connections open.");
}

/* ---- request windows ---- */

static const char windows_title[] =
    "    ROW      ID  STARTED         DUR ms   CMDS  FINDINGS              KEY  CLIENT  APP";
static const char window_title[] = "      #    AT ms      ms   DOCS        IN/OUT  RESULT       "
                                   "ROLE     COMMAND  NAMESPACE  SHAPE";

/* The i-th window of the list answer (out positioned on its document), or
 * false; with i == SIZE_MAX it counts them into *count. */
static bool window_row(const console_t *con, size_t i, bson_iter_t *out, size_t *count)
{
    bson_iter_t arr, it;
    size_t n = 0;
    if (count)
        *count = 0;
    if (!doc_find(con->docs[FEED_WINDOWS], "windows", &arr) || !BSON_ITER_HOLDS_ARRAY(&arr) ||
        !bson_iter_recurse(&arr, &it))
        return false;
    while (bson_iter_next(&it)) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&it))
            continue;
        if (n++ == i) {
            *out = it;
            return true;
        }
    }
    if (count)
        *count = n;
    return false;
}

static size_t windows_count(const console_t *con)
{
    size_t n;
    window_row(con, SIZE_MAX, NULL, &n);
    return n;
}

/* "23:52:40.778" of an ISO-8601 time, or the text itself. */
static const char *clock_of(const char *iso)
{
    return iso && strlen(iso) >= 23 && iso[10] == 'T' ? iso + 11 : or_dash(iso);
}

static void build_windows(const console_t *con, lines_t *ls)
{
    bson_iter_t arr, it;
    size_t i = 0;

    if (con->docs[FEED_WINDOWS] == NULL)
        return;
    if (windows_count(con) == 0) {
        lines_add(ls, A_DIM, "  %s",
                  con->filter[0] ? "No request window matches the filter (/ to change it)."
                                 : "No request window closed yet.");
        return;
    }
    doc_find(con->docs[FEED_WINDOWS], "windows", &arr);
    bson_iter_recurse(&arr, &it);
    while (bson_iter_next(&it)) {
        const bson_iter_t *w = &it;
        char dur[16], cmds[16], found[48] = "-", who[300], start[16], wid[24];
        bson_iter_t ids, id;
        if (!BSON_ITER_HOLDS_DOCUMENT(w))
            continue;
        mt_console_fmt_ms(sub_num(w, "duration_ms"), dur, sizeof(dur));
        mt_console_fmt_count(sub_num(w, "total_commands"), cmds, sizeof(cmds));
        if (sub_find(w, "finding_ids", &ids) && BSON_ITER_HOLDS_ARRAY(&ids) &&
            bson_iter_recurse(&ids, &id) && bson_iter_next(&id) && BSON_ITER_HOLDS_UTF8(&id))
            snprintf(found, sizeof(found), "%.0f %s", sub_num(w, "findings"),
                     bson_iter_utf8(&id, NULL));
        snprintf(start, sizeof(start), "%.12s", clock_of(sub_str(w, "started_at")));
        snprintf(who, sizeof(who), "%s  %s  %s", or_dash(sub_str(w, "key")),
                 or_dash(sub_str(w, "client")), or_dash(sub_str(w, "app_name")));
        snprintf(wid, sizeof(wid), "#%.0f", sub_num(w, "id"));
        attr_t attr = found[0] != '-' && con->colors ? COLOR_PAIR(PAIR_HIGH) : A_NORMAL;
        if ((int)i == con->sel)
            attr = A_REVERSE | A_BOLD;
        lines_add(ls, attr, "%s %5zu  %6s  %-12s %9s %6s  %-20.20s  %s",
                  (int)i == con->sel ? ">" : " ", i + 1, wid, start, dur, cmds, found, who);
        i++;
    }
}

/* The id of the selected row of the windows view, 0 when none. */
static uint64_t selected_window(const console_t *con)
{
    bson_iter_t row;
    double id =
        con->sel >= 0 && window_row(con, (size_t)con->sel, &row, NULL) ? sub_num(&row, "id") : NAN;
    return isnan(id) || id < 1 ? 0 : (uint64_t)id;
}

static void windows_rows_changed(console_t *con)
{
    int n = (int)windows_count(con);
    if (con->sel >= n)
        con->sel = n - 1;
    if (con->sel < 0)
        con->sel = 0;
}

static attr_t confidence_attr(const console_t *con, const char *conf);

/* A command of the open window, read from its document. */
typedef struct {
    double index, at, ms, docs, in, out;
    const char *command, *db, *coll, *shape, *role, *finding, *error;
    bool failed;
} window_cmd_t;

static void read_cmd(const bson_iter_t *c, window_cmd_t *out)
{
    bson_iter_t ok;
    out->index = sub_num(c, "index");
    out->at = sub_num(c, "offset_ms");
    out->ms = sub_num(c, "duration_ms");
    out->docs = sub_num(c, "docs");
    out->in = sub_num(c, "bytes_in");
    out->out = sub_num(c, "bytes_out");
    out->command = or_dash(sub_str(c, "command"));
    out->db = or_dash(sub_str(c, "db"));
    out->coll = sub_str(c, "collection");
    out->shape = or_dash(sub_str(c, "shape"));
    out->role = sub_str(c, "role");
    out->finding = sub_str(c, "finding");
    out->error = sub_str(c, "error");
    out->failed = sub_find(c, "ok", &ok) && BSON_ITER_HOLDS_BOOL(&ok) && !bson_iter_bool(&ok);
}

static bool same_run(const window_cmd_t *a, const window_cmd_t *b)
{
    return b->role && strcmp(b->role, "child") == 0 && a->finding && b->finding &&
           strcmp(a->finding, b->finding) == 0 && strcmp(a->shape, b->shape) == 0 &&
           strcmp(a->command, b->command) == 0 && strcmp(a->db, b->db) == 0 &&
           strcmp(a->coll ? a->coll : "", b->coll ? b->coll : "") == 0;
}

/* One line: when and how long of c, the figures of sum (c itself, or a fold's totals). */
static void cmd_line(const console_t *con, lines_t *ls, const window_cmd_t *c, const char *index,
                     const window_cmd_t *sum, const char *role, const char *what)
{
    char at[16], dur[16], nd[16], io[40], bi[16], bo[16];
    mt_console_fmt_ms(c->at, at, sizeof(at));
    mt_console_fmt_ms(sum->ms, dur, sizeof(dur));
    mt_console_fmt_count(sum->docs, nd, sizeof(nd));
    mt_console_fmt_count(sum->in, bi, sizeof(bi));
    mt_console_fmt_count(sum->out, bo, sizeof(bo));
    snprintf(io, sizeof(io), "%s/%s", bi, bo);
    attr_t attr = A_NORMAL;
    if (role && strcmp(role, "children") == 0)
        attr = con->colors ? COLOR_PAIR(PAIR_HIGH) | A_BOLD : A_REVERSE;
    else if (role && strcmp(role, "PARENT") == 0)
        attr = A_BOLD;
    else if (c->failed && con->colors)
        attr = COLOR_PAIR(PAIR_MEDIUM);
    lines_add(ls, attr, "  %5s %8s %7s %6s %13s  %-12.12s %-8.8s %s", index, at, dur, nd, io,
              c->failed ? or_dash(c->error) : "ok", role ? role : "", what);
}

/* A run of children being folded: its first command, its size and totals. */
typedef struct {
    window_cmd_t first, sum;
    size_t n;
    double last_index;
} fold_t;

static double or_zero(double v)
{
    return isnan(v) ? 0 : v;
}

static void fold_add(fold_t *f, const window_cmd_t *c)
{
    if (f->n == 0) {
        f->first = *c;
        memset(&f->sum, 0, sizeof(f->sum));
    }
    f->n++;
    f->sum.ms += or_zero(c->ms);
    f->sum.docs += or_zero(c->docs);
    f->sum.in += or_zero(c->in);
    f->sum.out += or_zero(c->out);
    f->last_index = c->index;
}

static void fold_flush(const console_t *con, lines_t *ls, fold_t *f)
{
    const window_cmd_t *c = &f->first;
    char index[32], shape[600], what[900];

    if (f->n == 0)
        return;
    mt_console_short_shape(c->shape, shape, sizeof(shape));
    if (f->n == 1) {
        snprintf(index, sizeof(index), "%.0f", c->index);
        snprintf(what, sizeof(what), "%s %s.%s %s  %s", c->command, c->db, c->coll ? c->coll : "",
                 shape, or_dash(c->finding));
        cmd_line(con, ls, c, index, c, "child", what);
    } else {
        snprintf(index, sizeof(index), "%.0f-%.0f", c->index, f->last_index);
        snprintf(what, sizeof(what), "x%zu %s %s %s  (db %s, %s)", f->n, c->command,
                 c->coll && *c->coll ? c->coll : c->db, shape, c->db, or_dash(c->finding));
        cmd_line(con, ls, c, index, &f->sum, "children", what);
    }
    f->n = 0;
}

static void build_window(const console_t *con, lines_t *ls)
{
    const bson_t *doc = con->docs[FEED_WINDOW];
    bson_iter_t arr, it;
    char dur[16], shape[600], what[900];

    if (con->window_missing) {
        lines_add(ls, A_BOLD,
                  "  Window #%llu is not kept any more (or never was): w lists those that are.",
                  (unsigned long long)con->window_id);
        return;
    }
    if (doc == NULL || (uint64_t)doc_num(doc, "id") != con->window_id) {
        lines_add(ls, A_DIM, "  loading window #%llu ...", (unsigned long long)con->window_id);
        return;
    }
    mt_console_fmt_ms(doc_num(doc, "duration_ms"), dur, sizeof(dur));
    lines_add(ls, A_BOLD, "  WINDOW #%llu  %.0f commands  %s ms  started %s%s",
              (unsigned long long)con->window_id, doc_num(doc, "total_commands"), dur,
              or_dash(doc_str(doc, "started_at")), doc_bool(doc, "open") ? "  (still open)" : "");
    lines_add(ls, A_NORMAL, "  client %s  app %s  driver %s  key %s",
              or_dash(doc_str(doc, "client")), or_dash(doc_str(doc, "app_name")),
              or_dash(doc_str(doc, "driver")), or_dash(doc_str(doc, "key")));
    if (doc_find(doc, "findings", &arr) && BSON_ITER_HOLDS_ARRAY(&arr) &&
        bson_iter_recurse(&arr, &it)) {
        while (bson_iter_next(&it)) {
            double parent = sub_num(&it, "parent"), seg = sub_num(&it, "segment");
            char after[32] = "", in_seg[32] = "";
            if (!isnan(parent))
                snprintf(after, sizeof(after), " after #%.0f", parent);
            if (!isnan(seg))
                snprintf(in_seg, sizeof(in_seg), " in segment %.0f", seg);
            lines_add(ls, confidence_attr(con, sub_str(&it, "confidence")),
                      "  finding %s  %s  %s  %.0f children%s%s", or_dash(sub_str(&it, "id")),
                      or_dash(sub_str(&it, "type")), or_dash(sub_str(&it, "confidence")),
                      sub_num(&it, "children"), after, in_seg);
        }
    }
    lines_add(ls, A_NORMAL, " ");
    lines_add(ls, con->colors ? COLOR_PAIR(PAIR_HEAD) | A_BOLD : A_UNDERLINE | A_BOLD, "%s",
              window_title);

    /* a finding's children of one shape, one after another, fold into one line */
    fold_t fold = {0};
    if (doc_find(doc, "commands", &arr) && BSON_ITER_HOLDS_ARRAY(&arr) &&
        bson_iter_recurse(&arr, &it)) {
        while (bson_iter_next(&it)) {
            window_cmd_t c;
            if (!BSON_ITER_HOLDS_DOCUMENT(&it))
                continue;
            read_cmd(&it, &c);
            if (fold.n > 0 && !same_run(&fold.first, &c))
                fold_flush(con, ls, &fold);
            if (c.role && strcmp(c.role, "child") == 0) {
                fold_add(&fold, &c);
                continue;
            }
            char index[32];
            bool parent = c.role && strcmp(c.role, "parent") == 0;
            mt_console_short_shape(c.shape, shape, sizeof(shape));
            snprintf(index, sizeof(index), "%.0f", c.index);
            if (c.coll && *c.coll)
                snprintf(what, sizeof(what), "%s %s.%s %s%s%s", c.command, c.db, c.coll, shape,
                         parent ? "  " : "", parent ? or_dash(c.finding) : "");
            else
                snprintf(what, sizeof(what), "%s %s %s", c.command, c.db, shape);
            cmd_line(con, ls, &c, index, &c, parent ? "PARENT" : NULL, what);
        }
    }
    fold_flush(con, ls, &fold);
}

typedef struct {
    bson_iter_t it;
    const char *id, *at;
} finding_ref_t;

static int finding_newest_first(const void *a, const void *b)
{
    const finding_ref_t *x = a, *y = b;
    int c = strcmp(y->at ? y->at : "", x->at ? x->at : "");
    return c != 0 ? c : strcmp(y->id ? y->id : "", x->id ? x->id : "");
}

static attr_t confidence_attr(const console_t *con, const char *conf)
{
    if (!con->colors || conf == NULL)
        return A_BOLD;
    if (strcmp(conf, "high") == 0)
        return COLOR_PAIR(PAIR_HIGH) | A_BOLD;
    return COLOR_PAIR(PAIR_MEDIUM) | A_BOLD;
}

static void build_findings(const console_t *con, lines_t *ls)
{
    const bson_t *doc = con->docs[FEED_FINDINGS];
    bson_iter_t arr, it;
    finding_ref_t *refs = NULL;
    size_t n = 0, cap = 0;

    if (doc == NULL)
        return;

    lines_add(ls, A_BOLD | A_UNDERLINE,
              "PATTERNS (by type, ranked by time spent in the repeated "
              "commands)");
    size_t npat = 0;
    /* one section per finding type, each with what it means */
    for (int t = 0; t < MT_FINDING__TYPES; t++) {
        const char *type = mt_finding_type_str((mt_finding_type_t)t);
        size_t shown = 0;
        if (!doc_find(doc, "patterns", &arr) || !BSON_ITER_HOLDS_ARRAY(&arr) ||
            !bson_iter_recurse(&arr, &it))
            break;
        while (bson_iter_next(&it)) {
            bson_iter_t p, c;
            char parent[400] = "none", children[400] = "-", total[16], avg[16], occ[16];
            const char *ptype = BSON_ITER_HOLDS_DOCUMENT(&it) ? sub_str(&it, "type") : NULL;
            if (ptype == NULL || strcmp(ptype, type) != 0)
                continue;
            if (shown++ == 0) {
                lines_add(ls, A_BOLD, "  %s", type);
                lines_add(ls, A_DIM, "  %s", mt_finding_type_explain((mt_finding_type_t)t));
            }
            if (sub_find(&it, "parent", &p) && BSON_ITER_HOLDS_DOCUMENT(&p))
                describe_cmd(&p, parent, sizeof(parent));
            if (sub_find(&it, "children", &c))
                describe_cmd(&c, children, sizeof(children));
            mt_console_fmt_count(sub_num(&it, "occurrences"), occ, sizeof(occ));
            mt_console_fmt_ms(sub_num(&it, "children.duration_ms"), total, sizeof(total));
            mt_console_fmt_ms(sub_num(&it, "children.avg_duration_ms"), avg, sizeof(avg));
            lines_add(ls, A_NORMAL, "  %6sx  %9s ms total  %8s ms avg  %s  ->  %s  field=%s", occ,
                      total, avg, parent, children, or_dash(sub_str(&it, "field")));
            const char *sugg = sub_str(&it, "suggestion");
            if (sugg != NULL)
                lines_add(ls, A_DIM, "           fix: %s", sugg);
            npat++;
        }
    }
    if (npat == 0)
        lines_add(ls, A_DIM, "  none yet");
    lines_add(ls, A_NORMAL, " ");

    if (doc_find(doc, "findings", &arr) && BSON_ITER_HOLDS_ARRAY(&arr) &&
        bson_iter_recurse(&arr, &it)) {
        while (bson_iter_next(&it)) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&it))
                continue;
            if (n == cap) {
                size_t ncap = cap ? cap * 2 : 32;
                finding_ref_t *nr = realloc(refs, ncap * sizeof(*nr));
                if (nr == NULL)
                    break;
                refs = nr;
                cap = ncap;
            }
            refs[n].it = it;
            refs[n].id = sub_str(&it, "id");
            refs[n].at = sub_str(&it, "detected_at");
            n++;
        }
    }
    lines_add(ls, A_BOLD | A_UNDERLINE, "FINDINGS (%zu, newest first)", n);
    if (n == 0)
        lines_add(ls, A_DIM, "  No findings yet.");
    qsort(refs, n, sizeof(*refs), finding_newest_first);
    for (size_t i = 0; i < n; i++) {
        const bson_iter_t *f = &refs[i].it;
        bson_iter_t p, c;
        char parent[400] = "none", children[400] = "-", count[16];
        const char *conf = sub_str(f, "confidence");
        if (sub_find(f, "parent", &p) && BSON_ITER_HOLDS_DOCUMENT(&p))
            describe_cmd(&p, parent, sizeof(parent));
        if (sub_find(f, "children", &c))
            describe_cmd(&c, children, sizeof(children));
        mt_console_fmt_count(sub_num(f, "children.count"), count, sizeof(count));
        lines_add(ls, confidence_attr(con, conf), "  %-9s %-13s %-6s %5sx  %s  ->  %s  field=%s",
                  or_dash(refs[i].id), or_dash(sub_str(f, "type")), or_dash(conf), count, parent,
                  children, or_dash(sub_str(f, "field")));
        lines_add(ls, A_NORMAL, "            client %s  app %s  driver %s  at %s",
                  or_dash(sub_str(f, "client.addr")), or_dash(sub_str(f, "client.app_name")),
                  or_dash(sub_str(f, "client.driver")), or_dash(refs[i].at));
        const char *sugg = sub_str(f, "suggestion");
        if (sugg != NULL)
            lines_add(ls, A_DIM, "            %s", sugg);
    }
    free(refs);
}

/* ---- drawing ---- */

/* Writes one full-width row: text cut at the screen edge, the rest blank in the same attributes. */
static void put_row(int y, attr_t attr, const char *text)
{
    if (y < 0 || y >= LINES)
        return;
    attrset(attr);
    mvaddnstr(y, 0, text, COLS);
    int x = getcurx(stdscr);
    if (attr & (A_REVERSE | A_COLOR)) {
        for (; x < COLS; x++)
            addch(' ');
    } else {
        clrtoeol();
    }
    attrset(A_NORMAL);
}

static void totals_line(const console_t *con, char *out, size_t cap)
{
    const bson_t *s = con->docs[FEED_STATS];
    bson_iter_t it;
    char up[24], cmds[16], total[16], active[16], refused[16], perr[16], uerr[16], nfind[16] = "0";

    if (s == NULL) {
        snprintf(out, cap, " mongotap console  %s  waiting for data...", con->admin_url);
        return;
    }
    mt_console_fmt_uptime(doc_num(s, "uptime_s"), up, sizeof(up));
    mt_console_fmt_count(doc_num(s, "commands"), cmds, sizeof(cmds));
    mt_console_fmt_count(doc_num(s, "connections.active"), active, sizeof(active));
    mt_console_fmt_count(doc_num(s, "connections.total"), total, sizeof(total));
    mt_console_fmt_count(doc_num(s, "connections.refused"), refused, sizeof(refused));
    mt_console_fmt_count(doc_num(s, "parse_errors"), perr, sizeof(perr));
    mt_console_fmt_count(doc_num(s, "upstream_errors"), uerr, sizeof(uerr));
    if (doc_find(con->docs[FEED_FINDINGS], "findings", &it) && BSON_ITER_HOLDS_ARRAY(&it)) {
        bson_iter_t a;
        size_t n = 0;
        if (bson_iter_recurse(&it, &a))
            while (bson_iter_next(&a))
                n++;
        snprintf(nfind, sizeof(nfind), "%zu", n);
    }
    double ops = doc_num(s, "ops_per_sec");
    snprintf(
        out, cap,
        " mongotap | up %s | conns %s/%s, %s refused | %s cmds | %.1f ops/s | errors %s parse, "
        "%s upstream | findings %s",
        up, active, total, refused, cmds, isnan(ops) ? 0.0 : ops, perr, uerr, nfind);
}

/* Adds text on the current row, never past the screen's edge (no wrapping). */
static void add_clipped(const char *text)
{
    int room = COLS - getcurx(stdscr);
    if (room > 0)
        addnstr(text, room);
}

static void draw_keys(const console_t *con)
{
    static const struct {
        const char *label;
        int view; /* -1 when a sort key */
        int sort;
    } keys[] = {
        {"s shapes", MT_CONSOLE_VIEW_SHAPES, -1},
        {"f findings", MT_CONSOLE_VIEW_FINDINGS, -1},
        {"c connections", MT_CONSOLE_VIEW_CONNECTIONS, -1},
        {"w windows", MT_CONSOLE_VIEW_WINDOWS, -1},
        {"t total time", -1, MT_CONSOLE_SORT_TIME},
        {"n count", -1, MT_CONSOLE_SORT_COUNT},
        {"p p99", -1, MT_CONSOLE_SORT_P99},
    };
    char label[64];
    move(1, 0);
    clrtoeol();
    add_clipped(" view:");
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        bool on;
        if (i == 4)
            add_clipped("   sort:");
        if (keys[i].view >= 0)
            on = (int)con->view == keys[i].view ||
                 (keys[i].view == MT_CONSOLE_VIEW_WINDOWS && con->view == MT_CONSOLE_VIEW_WINDOW);
        else
            on = con->view == MT_CONSOLE_VIEW_SHAPES && (int)con->sort == keys[i].sort;
        add_clipped(" ");
        attrset(on ? A_REVERSE | A_BOLD : A_NORMAL);
        snprintf(label, sizeof(label), "[%s]", keys[i].label);
        add_clipped(label);
        attrset(A_NORMAL);
    }
    add_clipped(con->view == MT_CONSOLE_VIEW_WINDOWS
                    ? "   enter/# open  / filter  space pause  q quit"
                    : "   / filter  space pause  arrows scroll  q quit");
}

/* The third row: what is being typed, the pause, an error, or when data came. */
static void status_line(const console_t *con, char *buf, size_t cap, attr_t *attr)
{
    static const char *const sort_names[] = {"total time", "count", "p99"};
    char when[16] = "", filter[MT_CONSOLE_FILTER_MAX + 16] = "";

    *attr = A_DIM;
    if (con->editing) {
        snprintf(buf, cap, " filter (namespace, shape or app; enter applies, esc cancels): %s_",
                 con->edit);
        *attr = A_BOLD;
        return;
    }
    if (con->number[0] != '\0') {
        snprintf(buf, cap, " open window #%s_  (enter opens, esc cancels)", con->number);
        *attr = A_BOLD;
        return;
    }
    if (con->filter[0] != '\0')
        snprintf(filter, sizeof(filter), "  filter \"%s\"", con->filter);
    if (con->paused) {
        snprintf(buf, cap, " PAUSED: %u refresh%s skipped; space resumes%s", con->skipped,
                 con->skipped == 1 ? "" : "es", filter);
        *attr = con->colors ? COLOR_PAIR(PAIR_MEDIUM) | A_BOLD : A_REVERSE;
        return;
    }
    if (con->status[0] != '\0') {
        snprintf(buf, cap, " %s", con->status);
        *attr = con->colors ? COLOR_PAIR(PAIR_ERROR) | A_BOLD : A_REVERSE;
        return;
    }
    if (con->updated_at == 0) {
        snprintf(buf, cap, " connecting to %s ...", con->admin_url);
        return;
    }
    strftime(when, sizeof(when), "%H:%M:%S", localtime(&con->updated_at));
    snprintf(buf, cap, " %s  updated %s  every %.1fs%s%s%s", con->admin_url, when,
             (double)con->interval_ms / 1000.0,
             con->view == MT_CONSOLE_VIEW_SHAPES ? "  sorted by " : "",
             con->view == MT_CONSOLE_VIEW_SHAPES ? sort_names[con->sort] : "", filter);
}

static void render(console_t *con)
{
    char buf[MT_CONSOLE_LINE_MAX];
    lines_t ls = {0};
    const char *title = shapes_title;
    attr_t attr;

    if (!con->curses_on)
        return;
    erase();
    totals_line(con, buf, sizeof(buf));
    put_row(0, con->colors ? COLOR_PAIR(PAIR_TITLE) | A_BOLD : A_REVERSE | A_BOLD, buf);
    draw_keys(con);
    status_line(con, buf, sizeof(buf), &attr);
    put_row(2, attr, buf);

    switch (con->view) {
    case MT_CONSOLE_VIEW_SHAPES:
        title = COLS >= MT_CONSOLE_WIDE_COLS ? shapes_title : shapes_title_narrow;
        build_shapes(con, &ls, COLS >= MT_CONSOLE_WIDE_COLS);
        break;
    case MT_CONSOLE_VIEW_FINDINGS:
        title = "";
        build_findings(con, &ls);
        break;
    case MT_CONSOLE_VIEW_CONNECTIONS:
        title = connections_title;
        build_connections(con, &ls);
        break;
    case MT_CONSOLE_VIEW_WINDOWS:
        title = windows_title;
        build_windows(con, &ls);
        break;
    case MT_CONSOLE_VIEW_WINDOW:
        title = "";
        build_window(con, &ls);
        break;
    }
    int top = MT_CONSOLE_TOP_ROWS - 1;
    if (title[0] != '\0') {
        put_row(top, con->colors ? COLOR_PAIR(PAIR_HEAD) | A_BOLD : A_UNDERLINE | A_BOLD, title);
        top++;
    }
    int rows = LINES - top;
    int *scroll = &con->scroll[con->view];
    /* the selected window stays on screen */
    if (con->view == MT_CONSOLE_VIEW_WINDOWS && rows > 0) {
        if (con->sel < *scroll)
            *scroll = con->sel;
        else if (con->sel >= *scroll + rows)
            *scroll = con->sel - rows + 1;
    }
    int max_scroll = (int)ls.n - rows;
    if (*scroll > max_scroll)
        *scroll = max_scroll;
    if (*scroll < 0)
        *scroll = 0;
    for (int i = 0; i < rows && (size_t)(*scroll + i) < ls.n; i++) {
        const line_t *l = &ls.v[*scroll + i];
        put_row(top + i, l->attr, l->text);
    }
    free(ls.v);
    refresh();
}

/* ---- plain snapshot when stdout is not a terminal ---- */

static void print_snapshot(console_t *con)
{
    char buf[MT_CONSOLE_LINE_MAX];
    lines_t ls = {0};

    totals_line(con, buf, sizeof(buf));
    printf("%s\n\n%s\n", buf + 1, shapes_title);
    build_shapes(con, &ls, true);
    for (size_t i = 0; i < ls.n; i++)
        printf("%s\n", ls.v[i].text);
    ls.n = 0;
    printf("\n");
    build_findings(con, &ls);
    for (size_t i = 0; i < ls.n; i++)
        printf("%s\n", ls.v[i].text);
    free(ls.v);
    fflush(stdout);
}

/* ---- lifecycle ---- */

static void stop(console_t *con, int code)
{
    if (con->stopping)
        return;
    con->stopping = true;
    con->exit_code = code;
    if (con->tick_started)
        uv_close((uv_handle_t *)&con->tick, NULL);
    if (con->input_started)
        uv_close((uv_handle_t *)&con->input, NULL);
    if (con->signals_started) {
        uv_close((uv_handle_t *)&con->sig_winch, NULL);
        uv_close((uv_handle_t *)&con->sig_int, NULL);
        uv_close((uv_handle_t *)&con->sig_term, NULL);
    }
    mt_httpc_close(con->http);
    if (con->curses_on) {
        endwin();
        con->curses_on = false;
    }
}

static void round_done(console_t *con)
{
    windows_rows_changed(con);
    snprintf(con->status, sizeof(con->status), "%s", con->round_err);
    if (con->round_err[0] == '\0')
        con->updated_at = time(NULL);
    if (!con->tty) {
        if (con->round_err[0] != '\0') {
            fprintf(stderr, "mongotap console: %s\n", con->round_err);
            stop(con, 1);
        } else {
            print_snapshot(con);
            stop(con, 0);
        }
        return;
    }
    render(con);
}

static void round_error(console_t *con, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void round_error(console_t *con, const char *fmt, ...)
{
    if (con->round_err[0] != '\0')
        return; /* the first error of a round is the one worth showing */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(con->round_err, sizeof(con->round_err), fmt, ap);
    va_end(ap);
}

static void on_feed(const mt_httpc_resp_t *resp, void *data)
{
    feed_req_t *fr = data;
    console_t *con = fr->con;
    const char *path = con->paths[fr->feed];

    if (resp->result != MT_HTTPC_OK) {
        char again[48] = "";
        if (con->tty)
            snprintf(again, sizeof(again), "; retrying every %.1fs",
                     (double)con->interval_ms / 1000.0);
        round_error(con, "cannot reach mongotap admin at %s (%s)%s", con->admin_url,
                    resp->error ? resp->error : mt_httpc_result_str(resp->result), again);
    } else if (resp->status == 401) {
        round_error(con,
                    "admin at %s answered 401 Unauthorized: pass --token or set MONGOTAP_TOKEN",
                    con->admin_url);
    } else if (fr->feed == FEED_WINDOW && resp->status == 404) {
        con->window_missing = true; /* said on screen, not an error of the round */
    } else if (resp->status != 200) {
        round_error(con, "admin at %s answered HTTP %d for %s", con->admin_url, resp->status, path);
    } else {
        bson_error_t err;
        bson_t *doc =
            bson_new_from_json((const uint8_t *)resp->body, (ssize_t)resp->body_len, &err);
        if (doc == NULL) {
            round_error(con, "bad JSON from %s%s: %s", con->admin_url, path, err.message);
        } else {
            bson_destroy(con->docs[fr->feed]);
            con->docs[fr->feed] = doc;
            if (fr->feed == FEED_WINDOW)
                con->window_missing = false;
        }
    }
    if (--con->round_left == 0 && !con->stopping)
        round_done(con);
}

/* Appends s to out percent-encoded (all but unreserved characters). */
static void url_encode(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(out);
    for (const unsigned char *p = (const unsigned char *)s; *p && n + 4 < cap; p++) {
        if (isalnum(*p) || strchr("-._~", *p)) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = '\0';
}

/* The path of each feed for this round; false for a feed not asked for. */
static bool feed_path(console_t *con, feed_t f, char *out, size_t cap)
{
    switch (f) {
    case FEED_STATS:
        snprintf(out, cap, "/api/stats?limit=200");
        return true;
    case FEED_FINDINGS:
        snprintf(out, cap, "/api/findings");
        return true;
    case FEED_CONNECTIONS:
        snprintf(out, cap, "/api/connections");
        return true;
    case FEED_WINDOWS:
        snprintf(out, cap, "/api/windows?summary=1&limit=%d%s", MT_CONSOLE_WINDOW_ROWS,
                 con->filter[0] ? "&q=" : "");
        url_encode(con->filter, out, cap);
        return true;
    case FEED_WINDOW:
        snprintf(out, cap, "/api/windows/%llu", (unsigned long long)con->window_id);
        return con->window_id != 0;
    case FEED_COUNT:
        break;
    }
    return false;
}

static void start_round(console_t *con)
{
    bool wanted[FEED_COUNT];

    if (con->round_left > 0 || con->stopping)
        return; /* the last round is still out: do not pile requests up */
    con->round_err[0] = '\0';
    con->round_left = 0;
    for (int f = 0; f < FEED_COUNT; f++) {
        wanted[f] = feed_path(con, (feed_t)f, con->paths[f], sizeof(con->paths[f]));
        con->round_left += wanted[f];
    }
    for (int f = 0; f < FEED_COUNT; f++) {
        if (!wanted[f])
            continue;
        con->reqs[f].con = con;
        con->reqs[f].feed = (feed_t)f;
        if (mt_httpc_get(con->http, con->paths[f], on_feed, &con->reqs[f]) != 0) {
            round_error(con, "cannot start a request to %s (out of memory?)", con->admin_url);
            if (--con->round_left == 0)
                round_done(con);
        }
    }
}

static void on_tick(uv_timer_t *t)
{
    console_t *con = t->data;
    if (con->paused) {
        con->skipped++; /* shown, so one can tell the pause is holding */
        render(con);
        return;
    }
    start_round(con);
}

static void scroll_by(console_t *con, int delta)
{
    con->scroll[con->view] += delta; /* clamped when drawn */
    if (con->scroll[con->view] < 0)
        con->scroll[con->view] = 0;
}

/* Opens window id in the window view and fetches it now. */
static void open_window(console_t *con, uint64_t id)
{
    con->window_id = id;
    con->window_missing = false;
    con->scroll[MT_CONSOLE_VIEW_WINDOW] = 0;
    con->view = MT_CONSOLE_VIEW_WINDOW;
    start_round(con);
}

/* Keys while a filter is typed: text, enter applies, esc cancels. */
static void on_edit_key(console_t *con, int ch)
{
    size_t len = strlen(con->edit);
    if (ch == '\r' || ch == '\n' || ch == KEY_ENTER) {
        con->editing = false;
        snprintf(con->filter, sizeof(con->filter), "%s", con->edit);
        con->sel = 0;
        start_round(con); /* a new filter applies at once, paused or not */
    } else if (ch == 27) {
        con->editing = false;
    } else if (ch == KEY_BACKSPACE || ch == 127 || ch == 8) {
        if (len > 0)
            con->edit[len - 1] = '\0';
    } else if (ch >= 32 && ch < 127 && len + 1 < sizeof(con->edit)) {
        con->edit[len] = (char)ch;
        con->edit[len + 1] = '\0';
    }
    render(con);
}

/* Enter, a digit (a window id to open), backspace or esc in the windows
 * views; false for other keys. */
static bool on_window_key(console_t *con, int ch)
{
    size_t len = strlen(con->number);
    bool list = con->view == MT_CONSOLE_VIEW_WINDOWS;

    if (ch >= '0' && ch <= '9') {
        if (len + 1 < sizeof(con->number)) {
            con->number[len] = (char)ch;
            con->number[len + 1] = '\0';
        }
        return true;
    }
    if ((ch == '\r' || ch == '\n' || ch == KEY_ENTER) && (list || len > 0)) {
        uint64_t id = len > 0 ? strtoull(con->number, NULL, 10) : selected_window(con);
        con->number[0] = '\0';
        if (id > 0)
            open_window(con, id);
        return true;
    }
    if (ch == 27 || ch == KEY_BACKSPACE || ch == 127 || ch == 8) {
        if (len > 0 && ch != 27)
            con->number[len - 1] = '\0';
        else if (len > 0)
            con->number[0] = '\0';
        else if (con->view == MT_CONSOLE_VIEW_WINDOW)
            con->view = MT_CONSOLE_VIEW_WINDOWS; /* back to the list */
        else
            return false;
        return true;
    }
    if (list && (ch == KEY_UP || ch == 'k' || ch == KEY_DOWN || ch == 'j')) {
        con->sel += ch == KEY_UP || ch == 'k' ? -1 : 1;
        windows_rows_changed(con);
        return true;
    }
    return false;
}

static void on_key(console_t *con, int ch)
{
    int page = LINES - MT_CONSOLE_TOP_ROWS - 1;
    if (page < 1)
        page = 1;
    if (con->editing) {
        on_edit_key(con, ch);
        return;
    }
    if ((con->view == MT_CONSOLE_VIEW_WINDOWS || con->view == MT_CONSOLE_VIEW_WINDOW) &&
        on_window_key(con, ch)) {
        render(con);
        return;
    }
    switch (ch) {
    case 'q':
    case 'Q':
        stop(con, 0);
        return;
    case 's':
    case 'S':
        con->view = MT_CONSOLE_VIEW_SHAPES;
        break;
    case 'f':
    case 'F':
        con->view = MT_CONSOLE_VIEW_FINDINGS;
        break;
    case 'c':
    case 'C':
        con->view = MT_CONSOLE_VIEW_CONNECTIONS;
        break;
    case 'w':
    case 'W':
        con->view = MT_CONSOLE_VIEW_WINDOWS;
        con->number[0] = '\0';
        windows_rows_changed(con);
        break;
    case '/':
        con->editing = true;
        snprintf(con->edit, sizeof(con->edit), "%s", con->filter);
        break;
    case ' ':
        con->paused = !con->paused;
        con->skipped = 0;
        if (!con->paused)
            start_round(con); /* catch up now */
        break;
    case 't':
    case 'T':
        con->view = MT_CONSOLE_VIEW_SHAPES;
        con->sort = MT_CONSOLE_SORT_TIME;
        break;
    case 'n':
    case 'N':
        con->view = MT_CONSOLE_VIEW_SHAPES;
        con->sort = MT_CONSOLE_SORT_COUNT;
        break;
    case 'p':
    case 'P':
        con->view = MT_CONSOLE_VIEW_SHAPES;
        con->sort = MT_CONSOLE_SORT_P99;
        break;
    case KEY_UP:
    case 'k':
        scroll_by(con, -1);
        break;
    case KEY_DOWN:
    case 'j':
        scroll_by(con, 1);
        break;
    case KEY_PPAGE:
        scroll_by(con, -page);
        break;
    case KEY_NPAGE:
        scroll_by(con, page);
        break;
    case KEY_HOME:
        con->scroll[con->view] = 0;
        break;
    case KEY_END:
        con->scroll[con->view] = 1 << 30;
        break;
    case 'r':
    case 'R':
        start_round(con); /* also while paused: one refresh on demand */
        break;
    case KEY_RESIZE:
    case 12: /* ^L */
        clearok(curscr, TRUE);
        break;
    default:
        return;
    }
    render(con);
}

static void on_input(uv_poll_t *p, int status, int events)
{
    console_t *con = p->data;
    (void)events;
    if (status < 0) {
        stop(con, 1);
        return;
    }
    /* nodelay: drain every key ncurses has buffered. */
    int ch;
    while (!con->stopping && (ch = getch()) != ERR)
        on_key(con, ch);
}

static void on_winch(uv_signal_t *s, int signum)
{
    console_t *con = s->data;
    struct winsize ws;
    (void)signum;
    if (!con->curses_on)
        return;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0)
        resizeterm(ws.ws_row, ws.ws_col);
    clearok(curscr, TRUE);
    render(con);
    /* resizeterm queues a KEY_RESIZE inside ncurses, where the stdin poll cannot see it. */
    on_input(&con->input, 0, UV_READABLE);
}

static void on_quit_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    stop(s->data, 0);
}

static void usage(FILE *to)
{
    fprintf(to,
            "usage: mongotap console [--admin URL] [--token TOKEN] [--interval MS]\n"
            "  --admin URL      admin endpoint (default " MT_CONSOLE_DEFAULT_ADMIN
            ", env MONGOTAP_ADMIN_URL)\n"
            "  --token TOKEN    bearer token for --admin-token (env MONGOTAP_TOKEN)\n"
            "  --interval MS    refresh period in milliseconds (default 1000)\n"
            "keys: s shapes, f findings, c connections, w request windows (arrows choose one,\n"
            "      enter or its number then enter opens it, esc goes back), t/n/p sort shapes by\n"
            "      total time/count/p99, / filter windows and shapes by namespace, shape or app,\n"
            "      space pause/resume, arrows/PgUp/PgDn scroll, r refresh now, q quit\n");
}

static int parse_args(int argc, char **argv, const char **admin, const char **token,
                      uint64_t *interval)
{
    static const struct option opts[] = {
        {"admin", required_argument, NULL, 'a'},
        {"token", required_argument, NULL, 't'},
        {"interval", required_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    *admin = getenv("MONGOTAP_ADMIN_URL");
    if (*admin == NULL || **admin == '\0')
        *admin = MT_CONSOLE_DEFAULT_ADMIN;
    *token = getenv("MONGOTAP_TOKEN");
    *interval = MT_CONSOLE_DEFAULT_INTERVAL_MS;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'a':
            *admin = optarg;
            break;
        case 't':
            *token = optarg;
            break;
        case 'i': {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (errno != 0 || end == optarg || *end != '\0' || optarg[0] == '-' ||
                v < MT_CONSOLE_MIN_INTERVAL_MS || v > MT_CONSOLE_MAX_INTERVAL_MS) {
                fprintf(
                    stderr,
                    "mongotap console: --interval: expected milliseconds from %d to %d, got '%s'\n",
                    MT_CONSOLE_MIN_INTERVAL_MS, MT_CONSOLE_MAX_INTERVAL_MS, optarg);
                return 2;
            }
            *interval = v;
            break;
        }
        case 'h':
            usage(stdout);
            return -1;
        default:
            return mt_cli_getopt_error("console", c, argv, optind);
        }
    }
    if (mt_cli_extra_argument("console", argc, argv, optind))
        return 2;
    return 0;
}

static int start_curses(console_t *con)
{
    /* Our SIGWINCH handler goes in first, so ncurses leaves that signal to us. */
    uv_signal_init(con->loop, &con->sig_winch);
    uv_signal_init(con->loop, &con->sig_int);
    uv_signal_init(con->loop, &con->sig_term);
    con->sig_winch.data = con->sig_int.data = con->sig_term.data = con;
    con->signals_started = true;
    uv_signal_start(&con->sig_winch, on_winch, SIGWINCH);
    uv_signal_start(&con->sig_int, on_quit_signal, SIGINT);
    uv_signal_start(&con->sig_term, on_quit_signal, SIGTERM);

    if ((con->screen = newterm(NULL, stdout, stdin)) == NULL) {
        fprintf(stderr, "mongotap console: cannot set up the terminal (TERM=%s)\n",
                getenv("TERM") ? getenv("TERM") : "");
        return -1;
    }
    con->curses_on = true;
    cbreak();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    nodelay(stdscr, TRUE);
    set_escdelay(25);
    curs_set(0);
    if (has_colors()) {
        start_color();
        use_default_colors();
        init_pair(PAIR_TITLE, COLOR_BLACK, COLOR_CYAN);
        init_pair(PAIR_ERROR, COLOR_WHITE, COLOR_RED);
        init_pair(PAIR_HIGH, COLOR_RED, -1);
        init_pair(PAIR_MEDIUM, COLOR_YELLOW, -1);
        init_pair(PAIR_HEAD, COLOR_BLACK, COLOR_WHITE);
        con->colors = true;
    }

    if (uv_poll_init(con->loop, &con->input, STDIN_FILENO) != 0) {
        fprintf(stderr, "mongotap console: cannot watch standard input\n");
        return -1;
    }
    con->input.data = con;
    con->input_started = true;
    uv_poll_start(&con->input, UV_READABLE, on_input);
    render(con);
    return 0;
}

int mt_console_main(int argc, char **argv)
{
    const char *admin, *token;
    uint64_t interval;
    char err[512];
    console_t con = {0};
    uv_loop_t loop;

    int rc = parse_args(argc, argv, &admin, &token, &interval);
    if (rc != 0)
        return rc < 0 ? 0 : rc;

    /* A write to a closed admin socket must fail the request, not kill the console. */
    signal(SIGPIPE, SIG_IGN);
    setlocale(LC_ALL, "");
    if (uv_loop_init(&loop) != 0) {
        fprintf(stderr, "mongotap console: cannot start the event loop\n");
        return 1;
    }
    con.loop = &loop;
    con.admin_url = admin;
    con.interval_ms = interval;
    con.tty = isatty(STDOUT_FILENO) && isatty(STDIN_FILENO);
    con.http = mt_httpc_new(&loop, admin, token, MT_CONSOLE_HTTP_TIMEOUT_MS, err, sizeof(err));
    if (con.http == NULL) {
        fprintf(stderr, "mongotap console: --admin: %s\n", err);
        uv_loop_close(&loop);
        return 2;
    }

    if (con.tty && start_curses(&con) != 0) {
        stop(&con, 1);
    } else if (con.tty) {
        uv_timer_init(&loop, &con.tick);
        con.tick.data = &con;
        con.tick_started = true;
        uv_timer_start(&con.tick, on_tick, 0, interval);
    } else {
        start_round(&con); /* one snapshot, then stop */
    }
    uv_run(&loop, UV_RUN_DEFAULT);

    mt_httpc_free(con.http);
    if (con.screen != NULL)
        delscreen(con.screen);
    for (int f = 0; f < FEED_COUNT; f++)
        bson_destroy(con.docs[f]);
    if (uv_loop_close(&loop) != 0)
        fprintf(stderr, "mongotap console: event loop not drained on exit\n");
    return con.exit_code;
}
