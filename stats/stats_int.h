/*
 * stats_int: the inside of mt_stats_t, shared by the glue (stats.c) and the
 * admin API's JSON (api.c) only.
 */
#ifndef MT_STATS_INT_H
#define MT_STATS_INT_H

#include <h2o/linklist.h>

#include "detect.h"
#include "findings.h"
#include "idmap.h"
#include "metrics.h"
#include "pairing.h"
#include "shape.h"
#include "shapes.h"
#include "stats.h"
#include "window.h"

/* What every request and reply touches first, the names last. */
struct mt_stats_conn {
    mt_stats_t *st;
    uint64_t id;
    uint64_t commands;
    mt_idmap_t pending;      /* requestID -> mt_pending_t */
    mt_window_t *window;     /* its open per-connection window */
    uint64_t last_win_id;    /* window of its last window-relevant command */
    uint64_t keyed_win_id;   /* the keyed window its untagged commands join, 0 when none */
    uint64_t last_active_ns; /* last request or reply */
    h2o_linklist_t cursors;  /* cursors this connection opened */
    h2o_linklist_t link;     /* in st->conns */
    char addr[64];
    char app_name[128];
    char driver[128]; /* "name version" from the handshake */
};

struct mt_stats {
    mt_stats_config_t cfg;
    uint64_t counters[MT_STAT__COUNT]; /* since start: what /metrics shows */
    uint64_t baseline[MT_STAT__COUNT]; /* counters at the last reset, for the JSON views */
    uint64_t start_ns;
    int64_t start_ms;
    mt_cursors_t cursors;
    mt_shapes_t shapes;
    mt_window_reg_t windows;
    mt_findings_t findings;
    mt_metrics_t metrics;
    h2o_linklist_t conns;
    uint64_t nconns;
    uint64_t pending_total;
    /* rate snapshot, rotated by mt_stats_tick() */
    uint64_t rate_ns;
    uint64_t rate_commands;
    double ops_per_sec;
    uint16_t getmore_label; /* metrics label of getMore, resolved once */
    mt_detect_result_t results[MT_DETECT_MAX_RESULTS];
    mt_detect_scratch_t detect; /* the detectors' memory, kept across windows */
    /* the upstream's members, as last reported by the proxy */
    char members[MT_STATS_MAX_MEMBERS][MT_STATS_MEMBER_NAME];
    bool members_up[MT_STATS_MAX_MEMBERS];
    size_t nmembers;
};

#define mt__stats_conn_of(node)                                                                    \
    ((mt_stats_conn_t *)((char *)(node)-offsetof(mt_stats_conn_t, link)))

/* Wall-clock ms for a monotonic time. */
int64_t mt__stats_wall_ms(const mt_stats_t *st, uint64_t now_ns);

/* A window by id, open or kept closed; NULL when gone. */
mt_window_t *mt__stats_window(const mt_stats_t *st, uint64_t id);

#endif
