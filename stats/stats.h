/*
 * stats: the accounting side of mongotap. The proxy hands it every complete
 * message it forwarded (with the time it was forwarded); stats pairs requests
 * with replies, keeps per-shape figures, groups commands into request windows,
 * runs the N+1 detector on each closed window and renders every output (JSON
 * API, reports, Prometheus text). It never touches a socket. Single-threaded:
 * call it from the loop thread only.
 */
#ifndef MT_STATS_H
#define MT_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <bson/bson.h>

#include "counters.h"
#include "report.h"
#include "shape.h"
#include "view.h"
#include "window.h"

typedef struct mt_stats mt_stats_t;
typedef struct mt_stats_conn mt_stats_conn_t;

/* Called once per finding, with its document (valid during the call; JSON
 * with mt_json_render, which costs more than finding it: render it only for
 * someone who reads it) and a one-line summary for the log (namespaces,
 * sizes, field, fix; no user value). */
typedef void (*mt_stats_finding_cb)(void *data, const bson_t *finding, const char *summary);

typedef struct {
    uint64_t window_gap_ms; /* default 100 */
    uint64_t window_max_ms; /* default 30000 */
    uint32_t n1_threshold;  /* default 5 */
    uint32_t max_shapes;    /* default 10000 */
    uint32_t max_conns;     /* connections tracked at once, default 100000; past it a
                               connection is forwarded without being accounted */
    uint32_t keep_windows;  /* closed windows kept (--keep-windows), default 100 */
    bool log_values;        /* let user data values into outputs */
    mt_shape_opts_t shape;  /* field names shown as "?" in shapes and findings */
    /* --ignore-ns: "db.collection" or "db.*"; commands there never take part
     * in a finding. The strings must outlive stats. */
    const char *const *ignore_ns;
    size_t nignore_ns;
    mt_stats_finding_cb on_finding;
    void *on_finding_data;
} mt_stats_config_t;

void mt_stats_config_defaults(mt_stats_config_t *cfg);

/* now_ns is a monotonic clock (uv_hrtime()) used for every later call. */
mt_stats_t *mt_stats_new(const mt_stats_config_t *cfg, uint64_t now_ns);
void mt_stats_free(mt_stats_t *st);

/* How the proxy's decode step hashes shapes (redacted names), so that
 * the views it hands in match the texts stats renders. */
const mt_shape_opts_t *mt_stats_shape_opts(const mt_stats_t *st);

void mt_stats_add(mt_stats_t *st, mt_stat_counter_t counter, uint64_t by);
/* A figure since start (what /metrics shows; resets do not change it). */
uint64_t mt_stats_get(const mt_stats_t *st, mt_stat_counter_t counter);

/* The upstream as the proxy's monitor sees it: the upstream_ready gauge and,
 * on /metrics, mongotap_upstream_member_up{member="host:port"} per member. */
void mt_stats_upstream(mt_stats_t *st, const char *const *members, const bool *up, size_t n,
                       bool ready);

/* Connections. client_addr is "ip:port". The returned handle is owned by
 * stats and valid until mt_stats_conn_close(). The caller counts
 * CONNECTIONS_TOTAL, refusals, bytes and upstream errors with mt_stats_add();
 * stats counts commands, parse errors, windows and findings. NULL when out of
 * memory; every conn function accepts NULL and does nothing. */
/* NULL also past max_conns (the connection is then counted in
 * accounting_shed). */
mt_stats_conn_t *mt_stats_conn_open(mt_stats_t *st, uint64_t conn_id, const char *client_addr,
                                    uint64_t now_ns);
/* A request forwarded upstream, as the proxy decoded it; bytes = its size on
 * the wire, now_ns = when its last byte was forwarded. The view is only read
 * during the call. */
void mt_stats_conn_request(mt_stats_conn_t *c, const mt_cmd_view_t *cmd, size_t bytes,
                           uint64_t now_ns);
/* A reply forwarded to the client; now_ns = when its first byte was
 * forwarded. */
void mt_stats_conn_reply(mt_stats_conn_t *c, const mt_reply_view_t *r, size_t bytes,
                         uint64_t now_ns);
/* Closes the connection's window (analysing it) and forgets the connection. */
void mt_stats_conn_close(mt_stats_conn_t *c, uint64_t now_ns);

/* Periodic work: closes windows idle for window-gap or open for window-max,
 * refreshes rates. Call every few tens of milliseconds. */
void mt_stats_tick(mt_stats_t *st, uint64_t now_ns);

/* Closes every open window now, analysing each (shutdown: keyed windows
 * outlive their connections, so closing the connections is not enough). */
void mt_stats_flush(mt_stats_t *st, uint64_t now_ns);

/* POST /api/reset: clears shapes, windows and findings and starts the JSON
 * views' counters again from zero. The Prometheus series are left alone: a
 * counter never goes backwards. */
void mt_stats_reset(mt_stats_t *st);

/* Outputs. Each returns a NUL-terminated string the caller frees with
 * bson_free(). JSON is produced through libbson. */
char *mt_stats_json(mt_stats_t *st, uint64_t now_ns, size_t limit); /* /api/stats */
char *mt_stats_connections_json(mt_stats_t *st, uint64_t now_ns);   /* /api/connections */
/* /api/windows: the newest closed windows matching filter (NULL: all; see
 * mt_window_matches), up to
 * limit (0: all), with their commands unless summary. */
char *mt_stats_windows_json(mt_stats_t *st, size_t limit, bool summary,
                            const mt_window_filter_t *filter);
/* /api/windows/ID: one window, open or kept closed (segment 0: all of it).
 * NULL when there is no such window or segment (*found tells which). */
char *mt_stats_window_json(mt_stats_t *st, uint64_t id, uint32_t segment, bool *found);
char *mt_stats_findings_json(mt_stats_t *st);            /* /api/findings */
char *mt_stats_metrics(mt_stats_t *st, uint64_t now_ns); /* /metrics */

char *mt_stats_report(mt_stats_t *st, mt_report_format_t fmt, uint64_t now_ns);

#endif
