/*
 * stats: the glue. Pairs each request with its reply(ies) per connection,
 * feeds the shape registry, the Prometheus series and the request windows
 * (whose opening and closing rules live here), runs the detector on every
 * closed window and assembles the JSON answers of the admin API.
 */
#include "stats.h"

#include <bson/bson.h>
#include <string.h>

#include "clock.h"
#include "findings.h"
#include "json.h"
#include "metrics.h"
#include "n1.h"
#include "report.h"
#include "shape.h"
#include "shapes.h"
#include "window.h"

/* Bounds: requests awaiting a reply per connection (drivers pipeline little;
 * past this the oldest is forgotten), and open cursors remembered. Cursors
 * are kept for the whole proxy, not per connection: a pooled driver may
 * send the getMore (or killCursors) on another connection than the find,
 * and cursor ids are unique on the one upstream. */
#define MT_STATS_MAX_PENDING 1024
#define MT_STATS_MAX_CURSORS 65536
#define MT_STATS_DEFAULT_LIMIT 100
#define MT_STATS_MAX_KEY_PATH 256

#define NS_PER_MS UINT64_C(1000000)
#define NS_PER_S UINT64_C(1000000000)

/* A request awaiting its reply. */
typedef struct {
    uint64_t req_ns;         /* request forwarded (exhaust: previous reply) */
    mt_shape_entry_t *entry; /* shape it is accounted to (getMore: the cursor's) */
    uint64_t win_id;         /* window holding the command; 0 when none */
    uint64_t origin_win_id;  /* getMore: window of the command that opened the cursor */
    int64_t cursor_id;       /* getMore: its cursor */
    uint32_t cmd_idx;
    uint32_t origin_idx;
    uint16_t metric_command;
    uint8_t kind; /* mt_cmd_kind_t */
    bool has_cmd_idx;
    bool has_origin_idx;
    bool continuation; /* a later reply of an exhaust stream */
    bool inflight;     /* counted in its window's inflight */
} pending_t;

/* An open cursor: getMores are accounted to the command that opened it. */
typedef struct {
    mt_shape_entry_t *entry;
    uint64_t win_id;
    uint32_t cmd_idx;
    bool has_cmd_idx;
    uint16_t metric_collection;
} cursor_t;

struct mt_stats_conn {
    mt_stats_t *st;
    uint64_t id;
    char addr[64];
    char app_name[128];
    char driver[128]; /* "name version" from the handshake */
    uint64_t commands;
    mt_idmap_t pending;   /* requestID -> pending_t */
    mt_window_t *window;  /* its open per-connection window */
    uint64_t last_win_id; /* window of its last window-relevant command */
    mt_stats_conn_t *prev, *next;
};

struct mt_stats {
    mt_stats_config_t cfg;
    uint64_t counters[MT_STAT__COUNT];
    uint64_t start_ns;
    int64_t start_ms;
    mt_idmap_t cursors; /* cursor id -> cursor_t */
    mt_shapes_t shapes;
    mt_window_reg_t windows;
    mt_findings_t findings;
    mt_metrics_t metrics;
    mt_stats_conn_t *conns_head, *conns_tail;
    uint64_t nconns;
    uint64_t pending_total;
    uint64_t replies_unmatched;
    uint64_t requests_dropped; /* pending entries forgotten at the bound */
    /* rate snapshot, rotated by mt_stats_tick() */
    uint64_t rate_ns;
    uint64_t rate_commands;
    double ops_per_sec;
    uint16_t getmore_label; /* metrics label of getMore, resolved once */
    /* the upstream, as last reported by the proxy */
    char members[MT_STATS_MAX_MEMBERS][MT_STATS_MEMBER_NAME];
    bool members_up[MT_STATS_MAX_MEMBERS];
    size_t nmembers;
    int upstream_ready; /* -1 until reported */
    mt_n1_result_t results[MT_N1_MAX_RESULTS];
};

void mt_stats_config_defaults(mt_stats_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->window_gap_ms = 100;
    cfg->window_max_ms = 30000;
    cfg->n1_threshold = 5;
    cfg->max_shapes = 10000;
    cfg->max_conns = 100000;
}

static int64_t wall_ms(const mt_stats_t *st, uint64_t now_ns)
{
    if (now_ns >= st->start_ns)
        return st->start_ms + (int64_t)((now_ns - st->start_ns) / NS_PER_MS);
    return st->start_ms - (int64_t)((st->start_ns - now_ns) / NS_PER_MS);
}

mt_stats_t *mt_stats_new(const mt_stats_config_t *cfg, uint64_t now_ns)
{
    mt_stats_t *st = bson_malloc0(sizeof *st);
    if (!st)
        return NULL;
    if (cfg)
        st->cfg = *cfg;
    else
        mt_stats_config_defaults(&st->cfg);
    st->start_ns = now_ns;
    st->upstream_ready = -1;
    st->start_ms = mt_clock_wall_ms();
    st->rate_ns = now_ns;
    mt_idmap_init(&st->cursors, sizeof(cursor_t), MT_STATS_MAX_CURSORS);
    mt_shapes_init(&st->shapes, st->cfg.max_shapes);
    mt_window_reg_init(&st->windows);
    mt_findings_init(&st->findings);
    mt_metrics_init(&st->metrics);
    st->getmore_label = mt_metrics_command_label("getMore");
    return st;
}

static void conn_free(mt_stats_conn_t *c)
{
    mt_idmap_free(&c->pending);
    bson_free(c);
}

void mt_stats_free(mt_stats_t *st)
{
    if (!st)
        return;
    mt_stats_conn_t *c = st->conns_head;
    while (c) {
        mt_stats_conn_t *next = c->next;
        conn_free(c);
        c = next;
    }
    mt_window_reg_clear(&st->windows);
    mt_shapes_clear(&st->shapes);
    mt_findings_clear(&st->findings);
    mt_metrics_free(&st->metrics);
    mt_idmap_free(&st->cursors);
    bson_free(st);
}

void mt_stats_add(mt_stats_t *st, mt_stat_counter_t counter, uint64_t by)
{
    if (st && counter < MT_STAT__COUNT)
        st->counters[counter] += by;
}

uint64_t mt_stats_get(const mt_stats_t *st, mt_stat_counter_t counter)
{
    return st && counter < MT_STAT__COUNT ? st->counters[counter] : 0;
}

void mt_stats_upstream(mt_stats_t *st, const char *const *members, const bool *up, size_t n,
                       bool ready)
{
    if (!st)
        return;
    st->nmembers = n < MT_STATS_MAX_MEMBERS ? n : MT_STATS_MAX_MEMBERS;
    for (size_t i = 0; i < st->nmembers; i++) {
        snprintf(st->members[i], sizeof(st->members[i]), "%s", members[i]);
        st->members_up[i] = up[i];
    }
    st->upstream_ready = ready;
}

const char *mt_stat_counter_str(mt_stat_counter_t counter)
{
    switch (counter) {
#define MT_STATS_NAME(id, json, prom, help)                                                        \
    case MT_STAT_##id:                                                                             \
        return json;
        MT_STATS_COUNTERS(MT_STATS_NAME)
#undef MT_STATS_NAME
    case MT_STAT__COUNT:
        break;
    }
    return "unknown";
}

/* Windows */

static bool window_stale(const mt_stats_t *st, const mt_window_t *w, uint64_t now_ns)
{
    uint64_t gap = st->cfg.window_gap_ms * NS_PER_MS, max = st->cfg.window_max_ms * NS_PER_MS;
    if (now_ns >= w->started_ns && now_ns - w->started_ns >= max)
        return true;
    return w->inflight == 0 && now_ns >= w->last_ns && now_ns - w->last_ns >= gap;
}

static void emit_findings(mt_stats_t *st, mt_window_t *w, uint64_t now_ns)
{
    size_t n = mt_n1_analyse(w, st->cfg.n1_threshold, st->results, MT_N1_MAX_RESULTS);
    int64_t now_ms = wall_ms(st, now_ns);
    for (size_t i = 0; i < n; i++) {
        const mt_n1_result_t *r = &st->results[i];
        const mt_window_cmd_t *p = &w->cmds[r->parent], *c = &w->cmds[r->first_child];
        char id[16];
        bson_t doc;
        mt_findings_next_id(&st->findings, id);
        bson_init(&doc);
        mt_n1_finding_bson(w, r, id, now_ms, st->cfg.log_values, &doc);
        bson_iter_t it;
        const char *fix = "";
        if (bson_iter_init_find(&it, &doc, "suggestion") && BSON_ITER_HOLDS_UTF8(&it))
            fix = bson_iter_utf8(&it, NULL);
        mt_findings_event_t ev = {
            .parent_db = p->db,
            .parent_collection = p->collection,
            .parent_command = p->command,
            .parent_shape = p->shape,
            .child_db = c->db,
            .child_collection = c->collection,
            .child_command = c->command,
            .child_shape = c->shape,
            .child_key = c->key ? c->key : "",
            .field = r->high ? r->field : NULL,
            .children = r->count,
            .child_ns = r->child_ns,
            .window_id = w->id,
            .fix = fix,
            .now_ms = now_ms,
        };
        mt_findings_add(&st->findings, &doc, id, &ev);
        st->counters[MT_STAT_FINDINGS]++;
        w->findings++;
        if (st->cfg.on_finding) {
            char *json = mt_json_render(&doc, false);
            if (json)
                st->cfg.on_finding(st->cfg.on_finding_data, json);
            bson_free(json);
        }
        bson_destroy(&doc);
    }
}

/* Closes an open window: analyse it, keep it among the last closed ones. */
static void window_close(mt_stats_t *st, mt_window_t *w, uint64_t now_ns)
{
    mt_stats_conn_t *owner = w->owner;
    if (owner && owner->window == w)
        owner->window = NULL;
    mt_window_reg_detach(&st->windows, w, now_ns);
    st->counters[MT_STAT_WINDOWS]++;
    emit_findings(st, w, now_ns);
    mt_window_reg_retire(&st->windows, w);
}

/* The window a new window-relevant command joins, opening one when needed.
 * NULL when none can be had (keyed window bound, out of memory). */
static mt_window_t *window_for(mt_stats_conn_t *c, const mt_cmd_view_t *cmd, const cursor_t *cursor,
                               uint64_t now_ns)
{
    mt_stats_t *st = c->st;
    mt_window_t *w;

    /* A getMore belongs to the window of the command that opened its cursor. */
    if (cursor && cursor->win_id && (w = mt_window_reg_find(&st->windows, cursor->win_id))) {
        if (!window_stale(st, w, now_ns))
            return w;
        window_close(st, w, now_ns);
    }

    if (cmd->comment &&
        strncmp(cmd->comment, MT_WINDOW_KEY_PREFIX, sizeof MT_WINDOW_KEY_PREFIX - 1) == 0) {
        w = mt_window_reg_find_key(&st->windows, cmd->comment);
        if (w && window_stale(st, w, now_ns)) {
            window_close(st, w, now_ns);
            w = NULL;
        }
        if (!w)
            w = mt_window_reg_open(&st->windows, c->id, cmd->comment, NULL, now_ns,
                                   wall_ms(st, now_ns), c->addr, c->app_name, c->driver);
        return w;
    }

    if (c->window && window_stale(st, c->window, now_ns))
        window_close(st, c->window, now_ns);
    if (!c->window)
        c->window = mt_window_reg_open(&st->windows, c->id, NULL, c, now_ns, wall_ms(st, now_ns),
                                       c->addr, c->app_name, c->driver);
    return c->window;
}

/* Records the command in w; returns its index or -1. */
static int window_record(mt_stats_t *st, mt_window_t *w, const mt_cmd_view_t *cmd,
                         const mt_shape_entry_t *entry, uint64_t shape_hash, const char *shape,
                         uint64_t now_ns)
{
    mt_window_cmd_t wc;

    /* check the bound before copying anything into the window's arena */
    if (mt_window_full(w)) {
        w->total_cmds++;
        return -1;
    }
    memset(&wc, 0, sizeof wc);
    wc.kind = cmd->kind;
    wc.start_ns = now_ns;
    wc.shape_hash = shape_hash;
    if (entry && !entry->overflow) {
        wc.db = entry->db;
        wc.collection = entry->collection;
        wc.shape = entry->shape;
        wc.command = cmd->kind == MT_CMD_GETMORE ? "getMore" : entry->command;
    } else {
        /* Past the shape bound the registry entry is "<other>": keep the
         * real key in the window so the detector can still group by it. */
        wc.db = mt_window_strdup(w, cmd->db ? cmd->db : "", 0);
        wc.collection = mt_window_strdup(w, cmd->collection ? cmd->collection : "", 0);
        wc.command = mt_window_strdup(w, cmd->name, 0);
        wc.shape = mt_window_strdup(w, shape, 0);
        if (!wc.db || !wc.collection || !wc.command || !wc.shape) {
            w->total_cmds++;
            return -1;
        }
    }

    const char *key = NULL;
    bson_iter_t vit;
    if ((cmd->kind == MT_CMD_FIND || cmd->kind == MT_CMD_AGGREGATE) &&
        mt_shape_single_key(cmd, &key, &vit) && key) {
        wc.single_key = true;
        wc.value_hashable = true;
        wc.value_hash = mt_n1_value_hash(&vit);
        /* Consecutive lookups of one shape share the key string. */
        if (w->ncmds && w->cmds[w->ncmds - 1].single_key &&
            w->cmds[w->ncmds - 1].shape_hash == shape_hash)
            wc.key = w->cmds[w->ncmds - 1].key;
        else
            wc.key = mt_window_strdup(w, key, MT_STATS_MAX_KEY_PATH);
        if (!wc.key)
            wc.single_key = false;
        if (st->cfg.log_values) {
            bson_t tmp;
            bson_init(&tmp);
            if (bson_append_iter(&tmp, "", 0, &vit)) {
                wc.value_doc = mt_window_memdup(w, bson_get_data(&tmp), tmp.len);
                wc.value_doc_len = wc.value_doc ? tmp.len : 0;
            }
            bson_destroy(&tmp);
        }
    }
    return mt_window_add_cmd(w, &wc);
}

/* Forgets a pending request (bound reached or connection gone). */
static void pending_forget(mt_stats_t *st, const pending_t *p)
{
    if (p->inflight) {
        mt_window_t *w = mt_window_reg_find(&st->windows, p->win_id);
        if (w && w->inflight)
            w->inflight--;
    }
    if (st->pending_total)
        st->pending_total--;
}

/* Connections */

mt_stats_conn_t *mt_stats_conn_open(mt_stats_t *st, uint64_t conn_id, const char *client_addr,
                                    uint64_t now_ns)
{
    (void)now_ns;
    if (st->nconns >= st->cfg.max_conns) {
        st->counters[MT_STAT_ACCOUNTING_SHED]++;
        return NULL;
    }
    mt_stats_conn_t *c = bson_malloc0(sizeof *c);
    c->st = st;
    c->id = conn_id;
    bson_strncpy(c->addr, client_addr ? client_addr : "", sizeof c->addr);
    mt_idmap_init(&c->pending, sizeof(pending_t), MT_STATS_MAX_PENDING);
    c->prev = st->conns_tail;
    if (st->conns_tail)
        st->conns_tail->next = c;
    else
        st->conns_head = c;
    st->conns_tail = c;
    st->nconns++;
    return c;
}

void mt_stats_conn_close(mt_stats_conn_t *c, uint64_t now_ns)
{
    if (!c)
        return;
    mt_stats_t *st = c->st;
    size_t pos = 0;
    pending_t *p;
    while ((p = mt_idmap_next(&c->pending, &pos, NULL)))
        pending_forget(st, p);
    if (c->window)
        window_close(st, c->window, now_ns);
    if (c->prev)
        c->prev->next = c->next;
    else
        st->conns_head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        st->conns_tail = c->prev;
    st->nconns--;
    conn_free(c);
}

static void copy_handshake(mt_stats_conn_t *c, const mt_cmd_view_t *cmd)
{
    if (cmd->app_name)
        bson_strncpy(c->app_name, cmd->app_name, sizeof c->app_name);
    if (cmd->driver_name) {
        if (cmd->driver_version)
            bson_snprintf(c->driver, sizeof c->driver, "%s %s", cmd->driver_name,
                          cmd->driver_version);
        else
            bson_strncpy(c->driver, cmd->driver_name, sizeof c->driver);
    }
}

static bool is_write(mt_cmd_kind_t k)
{
    return k == MT_CMD_INSERT || k == MT_CMD_UPDATE || k == MT_CMD_DELETE;
}

void mt_stats_conn_request(mt_stats_conn_t *c, const mt_cmd_view_t *cmd, size_t len,
                           uint64_t now_ns)
{
    if (!c)
        return;
    mt_stats_t *st = c->st;
    st->counters[MT_STAT_COMMANDS]++;
    c->commands++;
    if (cmd->app_name || cmd->driver_name)
        copy_handshake(c, cmd);

    const char *db = cmd->db ? cmd->db : "";
    const char *coll = cmd->collection ? cmd->collection : "";
    bool monitoring = cmd->monitoring;
    uint16_t metric_command = 0; /* resolved below, from the shape entry when cached */
    int64_t now_ms = wall_ms(st, now_ns);

    /* Shape: a getMore is accounted to the command that opened its cursor. */
    cursor_t cursor_copy, *cursor = NULL;
    mt_shape_entry_t *entry = NULL;
    uint64_t shape_hash = 0;
    char shape[MT_SHAPE_MAX];
    shape[0] = '\0';
    if (cmd->kind == MT_CMD_GETMORE) {
        cursor_t *cur = mt_idmap_get(&c->st->cursors, cmd->cursor_id);
        if (cur) {
            cursor_copy = *cur;
            cursor = &cursor_copy;
            entry = cur->entry;
        }
    }
    if (entry) {
        shape_hash = entry->hash;
        bson_strncpy(shape, entry->shape, sizeof shape);
        metric_command = st->getmore_label;
        mt_metrics_count(&st->metrics, metric_command, cursor->metric_collection);
    } else {
        bool created = false;
        mt_shape_of_command(cmd, shape, sizeof shape);
        shape_hash = mt_shapes_hash(db, coll, cmd->name, shape);
        entry = mt_shapes_get(&st->shapes, shape_hash, db, coll, cmd->name, shape, &created);
        uint16_t metric_collection;
        if (entry && !entry->overflow) {
            /* Label lookups happen once per shape, not once per message. */
            if (created) {
                entry->metric_command = mt_metrics_command_label(cmd->name);
                entry->metric_collection = mt_metrics_collection_label(&st->metrics, coll);
            }
            metric_command = entry->metric_command;
            metric_collection = entry->metric_collection;
        } else {
            metric_command = mt_metrics_command_label(cmd->name);
            metric_collection = mt_metrics_collection_label(&st->metrics, coll);
        }
        mt_metrics_count(&st->metrics, metric_command, metric_collection);
        if (entry)
            entry->count++;
    }
    if (entry) {
        entry->bytes_in += len;
        if (entry->first_seen_ms < 0)
            entry->first_seen_ms = now_ms;
        entry->last_seen_ms = now_ms;
    }

    if (cmd->kind == MT_CMD_KILL_CURSORS && cmd->cursor_id)
        mt_idmap_remove(&c->st->cursors, cmd->cursor_id, NULL);

    /* Window */
    mt_window_t *w = NULL;
    int idx = -1;
    if (!monitoring) {
        w = window_for(c, cmd, cursor, now_ns);
        if (w) {
            idx = window_record(st, w, cmd, entry, shape_hash, shape, now_ns);
            w->last_ns = now_ns;
            c->last_win_id = w->id;
            if (cmd->more_to_come && idx >= 0)
                w->cmds[idx].replied = true; /* no reply will come */
        }
    }

    if (cmd->more_to_come)
        return; /* accounted now: no reply follows */

    pending_t evicted;
    bool did_evict = false;
    if (mt_idmap_remove(&c->pending, cmd->request_id, &evicted))
        pending_forget(st, &evicted); /* requestID reused before its reply: replace */
    pending_t *p = mt_idmap_put(&c->pending, cmd->request_id, &evicted, &did_evict);
    if (did_evict) {
        pending_forget(st, &evicted);
        st->requests_dropped++;
    }
    if (!p) {
        if (w && idx >= 0)
            w->cmds[idx].replied = true;
        return;
    }
    st->pending_total++;
    p->req_ns = now_ns;
    p->entry = entry;
    p->kind = (uint8_t)cmd->kind;
    p->metric_command = metric_command;
    p->cursor_id = cmd->kind == MT_CMD_GETMORE ? cmd->cursor_id : 0;
    if (w) {
        p->win_id = w->id;
        p->inflight = true;
        w->inflight++;
        if (idx >= 0) {
            p->cmd_idx = (uint32_t)idx;
            p->has_cmd_idx = true;
        }
    }
    if (cursor && cursor->win_id) {
        p->origin_win_id = cursor->win_id;
        p->origin_idx = cursor->cmd_idx;
        p->has_origin_idx = cursor->has_cmd_idx;
    }
    return;
}

void mt_stats_conn_reply(mt_stats_conn_t *c, const mt_reply_view_t *r, size_t len, uint64_t now_ns)
{
    if (!c)
        return;
    mt_stats_t *st = c->st;
    pending_t *pp = mt_idmap_get(&c->pending, r->response_to);
    if (!pp) {
        st->replies_unmatched++;
        return;
    }
    pending_t p = *pp;
    mt_cmd_kind_t kind = (mt_cmd_kind_t)p.kind;
    uint64_t latency = now_ns > p.req_ns ? now_ns - p.req_ns : 0;
    bool later = kind == MT_CMD_GETMORE || p.continuation; /* not a new command */
    uint64_t docs = 0;
    if (is_write(kind)) {
        if (r->has_n && r->n > 0)
            docs = (uint64_t)r->n;
    } else if (r->docs > 0) {
        docs = (uint64_t)r->docs;
    }

    mt_shape_entry_t *e = p.entry;
    if (e) {
        e->bytes_out += len;
        if (!r->ok || r->write_errors > 0)
            e->errors++;
        e->docs_returned += docs;
        if (later)
            mt_hist_add_sum(&e->latency, latency);
        else
            mt_hist_record(&e->latency, latency);
        e->last_seen_ms = wall_ms(st, now_ns);
    }
    mt_metrics_observe(&st->metrics, p.metric_command, latency);

    /* Window */
    mt_window_t *w = p.win_id ? mt_window_reg_find(&st->windows, p.win_id) : NULL;
    if (w) {
        if (p.has_cmd_idx && p.cmd_idx < w->ncmds) {
            mt_window_cmd_t *wc = &w->cmds[p.cmd_idx];
            if (p.continuation) {
                wc->getmore_ns += latency;
            } else {
                wc->duration_ns = latency;
                wc->replied = true;
            }
            wc->docs += docs;
            /* Evidence for the detector: documents of finds and aggregates,
             * except the single document of a lookup (never a parent). */
            if ((kind == MT_CMD_FIND || kind == MT_CMD_AGGREGATE) && r->batch &&
                !(wc->single_key && r->docs <= 1))
                mt_window_add_evidence(w, p.cmd_idx, r->batch, r->batch_len);
        }
        w->last_ns = now_ns;
        if (p.inflight && !r->more_to_come && w->inflight)
            w->inflight--;
    }
    if (kind == MT_CMD_GETMORE && p.origin_win_id) {
        mt_window_t *ow = mt_window_reg_find(&st->windows, p.origin_win_id);
        if (ow && p.has_origin_idx && p.origin_idx < ow->ncmds) {
            mt_window_cmd_t *oc = &ow->cmds[p.origin_idx];
            oc->docs += docs;
            oc->getmore_ns += latency;
            if (r->batch)
                mt_window_add_evidence(ow, p.origin_idx, r->batch, r->batch_len);
            ow->last_ns = now_ns;
        }
    }

    /* Cursors */
    if (kind == MT_CMD_GETMORE) {
        if (!r->ok || (r->has_cursor && r->cursor_id == 0))
            mt_idmap_remove(&c->st->cursors, p.cursor_id, NULL);
    } else if (r->has_cursor && r->cursor_id != 0 && !p.continuation && e) {
        cursor_t *cur = mt_idmap_put(&c->st->cursors, r->cursor_id, NULL, NULL);
        if (cur) {
            cur->entry = e;
            cur->win_id = p.win_id;
            cur->cmd_idx = p.cmd_idx;
            cur->has_cmd_idx = p.has_cmd_idx && w != NULL;
            cur->metric_collection = e->overflow ? MT_METRICS_COLL_OTHER : e->metric_collection;
            if (!w)
                cur->win_id = 0;
        }
    }

    /* Exhaust: another reply follows, answering this reply's requestID. */
    mt_idmap_remove(&c->pending, r->response_to, NULL);
    if (r->more_to_come) {
        pending_t *np = mt_idmap_put(&c->pending, r->request_id, NULL, NULL);
        if (np) {
            *np = p;
            np->req_ns = now_ns;
            np->continuation = true;
            return;
        }
        /* Could not keep it: settle its window bookkeeping now. */
        if (w && p.inflight && w->inflight)
            w->inflight--;
    }
    if (st->pending_total)
        st->pending_total--;
    return;
}

void mt_stats_tick(mt_stats_t *st, uint64_t now_ns)
{
    if (now_ns >= st->rate_ns + NS_PER_S) {
        double secs = (double)(now_ns - st->rate_ns) / 1e9;
        uint64_t cmds = st->counters[MT_STAT_COMMANDS];
        uint64_t delta = cmds >= st->rate_commands ? cmds - st->rate_commands : 0;
        st->ops_per_sec = (double)delta / secs;
        st->rate_ns = now_ns;
        st->rate_commands = cmds;
    }
    mt_window_t *w = st->windows.open_head;
    while (w) {
        mt_window_t *next = w->next;
        if (window_stale(st, w, now_ns))
            window_close(st, w, now_ns);
        w = next;
    }
}

void mt_stats_flush(mt_stats_t *st, uint64_t now_ns)
{
    while (st->windows.open_head)
        window_close(st, st->windows.open_head, now_ns);
}

void mt_stats_reset(mt_stats_t *st)
{
    /* Pending requests and cursors point at shapes and windows: they go too
     * (replies to them are simply not matched). */
    for (mt_stats_conn_t *c = st->conns_head; c; c = c->next) {
        mt_idmap_clear(&c->pending);
        c->window = NULL;
        c->last_win_id = 0;
    }
    mt_idmap_clear(&st->cursors);
    st->pending_total = 0;
    mt_window_reg_clear(&st->windows);
    mt_shapes_clear(&st->shapes);
    mt_findings_clear(&st->findings);
    mt_metrics_clear(&st->metrics);
    /* Counters restart, except those that describe the process and its
     * connections rather than the traffic being studied. */
    for (int i = 0; i < MT_STAT__COUNT; i++)
        if (i != MT_STAT_CONNECTIONS_TOTAL && i != MT_STAT_CONNECTIONS_REFUSED &&
            i != MT_STAT_UPSTREAM_TLS_FAILURES && i != MT_STAT_CLIENT_TLS_FAILURES &&
            i != MT_STAT_CLIENT_TLS_ON_PLAIN && i != MT_STAT_UPSTREAM_PRIMARY_CHANGES &&
            i != MT_STAT_CONNECTIONS_RETIRED)
            st->counters[i] = 0;
    st->rate_commands = 0;
    st->ops_per_sec = 0;
    st->replies_unmatched = 0;
    st->requests_dropped = 0;
}

/* Outputs */

static double round_to(double v, double unit)
{
    return (double)(int64_t)(v / unit + 0.5) * unit;
}

static double uptime_s(const mt_stats_t *st, uint64_t now_ns)
{
    return now_ns > st->start_ns ? (double)((now_ns - st->start_ns) / NS_PER_MS) / 1000.0 : 0.0;
}

static char *render_and_destroy(bson_t *doc)
{
    char *out = mt_json_render(doc, false);
    bson_destroy(doc);
    return out;
}

char *mt_stats_json(mt_stats_t *st, uint64_t now_ns, size_t limit)
{
    bson_t doc, sub, arr;
    bson_init(&doc);
    if (limit == 0)
        limit = MT_STATS_DEFAULT_LIMIT;
    BSON_APPEND_DOUBLE(&doc, "uptime_s", uptime_s(st, now_ns));
    BSON_APPEND_DOCUMENT_BEGIN(&doc, "connections", &sub);
    BSON_APPEND_INT64(&sub, "active", (int64_t)st->nconns);
    BSON_APPEND_INT64(&sub, "total", (int64_t)st->counters[MT_STAT_CONNECTIONS_TOTAL]);
    BSON_APPEND_INT64(&sub, "refused", (int64_t)st->counters[MT_STAT_CONNECTIONS_REFUSED]);
    bson_append_document_end(&doc, &sub);
    BSON_APPEND_INT64(&doc, "commands", (int64_t)st->counters[MT_STAT_COMMANDS]);
    BSON_APPEND_DOUBLE(&doc, "ops_per_sec", round_to(st->ops_per_sec, 0.1));
    BSON_APPEND_INT64(&doc, "parse_errors", (int64_t)st->counters[MT_STAT_PARSE_ERRORS]);
    BSON_APPEND_INT64(&doc, "upstream_errors", (int64_t)st->counters[MT_STAT_UPSTREAM_ERRORS]);
    BSON_APPEND_INT64(&doc, "protocol_errors", (int64_t)st->counters[MT_STAT_PROTOCOL_ERRORS]);
    BSON_APPEND_INT64(&doc, "messages_unknown_opcode",
                      (int64_t)st->counters[MT_STAT_MESSAGES_UNKNOWN]);
    BSON_APPEND_DOCUMENT_BEGIN(&doc, "bytes", &sub);
    BSON_APPEND_INT64(&sub, "from_clients", (int64_t)st->counters[MT_STAT_BYTES_FROM_CLIENTS]);
    BSON_APPEND_INT64(&sub, "from_upstream", (int64_t)st->counters[MT_STAT_BYTES_FROM_UPSTREAM]);
    bson_append_document_end(&doc, &sub);
    BSON_APPEND_DOCUMENT_BEGIN(&doc, "windows", &sub);
    BSON_APPEND_INT64(&sub, "open", (int64_t)st->windows.open_count);
    BSON_APPEND_INT64(&sub, "closed", (int64_t)st->counters[MT_STAT_WINDOWS]);
    bson_append_document_end(&doc, &sub);
    BSON_APPEND_INT64(&doc, "findings", (int64_t)st->counters[MT_STAT_FINDINGS]);
    BSON_APPEND_INT64(&doc, "patterns", (int64_t)st->findings.npatterns);
    BSON_APPEND_INT64(&doc, "pending_requests", (int64_t)st->pending_total);
    BSON_APPEND_INT64(&doc, "replies_unmatched", (int64_t)st->replies_unmatched);
    BSON_APPEND_INT64(&doc, "shapes_tracked", (int64_t)mt_shapes_count(&st->shapes));
    BSON_APPEND_DOCUMENT_BEGIN(&doc, "counters", &sub);
#define MT_STATS_JSON_COUNTER(id, json, prom, help)                                                \
    BSON_APPEND_INT64(&sub, json, (int64_t)st->counters[MT_STAT_##id]);
    MT_STATS_COUNTERS(MT_STATS_JSON_COUNTER)
#undef MT_STATS_JSON_COUNTER
    bson_append_document_end(&doc, &sub);
    BSON_APPEND_INT64(&doc, "limit", (int64_t)limit);

    size_t n = 0;
    mt_shape_entry_t **sorted = mt_shapes_sorted(&st->shapes, &n);
    BSON_APPEND_ARRAY_BEGIN(&doc, "shapes", &arr);
    for (size_t i = 0; i < n && i < limit; i++) {
        char k[16];
        const char *key;
        bson_uint32_to_string((uint32_t)i, &key, k, sizeof k);
        BSON_APPEND_DOCUMENT_BEGIN(&arr, key, &sub);
        mt_shapes_entry_bson(sorted[i], &sub);
        bson_append_document_end(&arr, &sub);
    }
    bson_append_array_end(&doc, &arr);
    bson_free(sorted);
    return render_and_destroy(&doc);
}

static void append_str_or_null(bson_t *doc, const char *key, const char *v)
{
    if (v && *v)
        bson_append_utf8(doc, key, -1, v, -1);
    else
        bson_append_null(doc, key, -1);
}

char *mt_stats_connections_json(mt_stats_t *st, uint64_t now_ns)
{
    (void)now_ns;
    bson_t doc, arr, sub, wdoc;
    uint32_t i = 0;
    bson_init(&doc);
    BSON_APPEND_ARRAY_BEGIN(&doc, "connections", &arr);
    for (mt_stats_conn_t *c = st->conns_head; c; c = c->next, i++) {
        char k[16];
        const char *key;
        bson_uint32_to_string(i, &key, k, sizeof k);
        BSON_APPEND_DOCUMENT_BEGIN(&arr, key, &sub);
        BSON_APPEND_INT64(&sub, "id", (int64_t)c->id);
        BSON_APPEND_UTF8(&sub, "client", c->addr);
        append_str_or_null(&sub, "app_name", c->app_name);
        append_str_or_null(&sub, "driver", c->driver);
        BSON_APPEND_INT64(&sub, "commands", (int64_t)c->commands);
        BSON_APPEND_INT64(&sub, "pending", (int64_t)mt_idmap_count(&c->pending));
        mt_window_t *w = c->window;
        if (!w && c->last_win_id)
            w = mt_window_reg_find(&st->windows, c->last_win_id);
        if (w) {
            BSON_APPEND_DOCUMENT_BEGIN(&sub, "window", &wdoc);
            mt_window_brief_bson(w, &wdoc);
            bson_append_document_end(&sub, &wdoc);
        } else {
            BSON_APPEND_NULL(&sub, "window");
        }
        bson_append_document_end(&arr, &sub);
    }
    bson_append_array_end(&doc, &arr);
    return render_and_destroy(&doc);
}

char *mt_stats_windows_json(mt_stats_t *st, size_t limit)
{
    bson_t doc, arr, sub;
    bson_init(&doc);
    if (limit == 0 || limit > MT_WINDOW_CLOSED_KEEP)
        limit = MT_WINDOW_CLOSED_KEEP;
    BSON_APPEND_ARRAY_BEGIN(&doc, "windows", &arr);
    for (size_t i = 0; i < limit; i++) {
        mt_window_t *w = mt_window_reg_closed(&st->windows, i);
        if (!w)
            break;
        char k[16];
        const char *key;
        bson_uint32_to_string((uint32_t)i, &key, k, sizeof k);
        BSON_APPEND_DOCUMENT_BEGIN(&arr, key, &sub);
        mt_window_bson(w, &sub);
        bson_append_document_end(&arr, &sub);
    }
    bson_append_array_end(&doc, &arr);
    return render_and_destroy(&doc);
}

char *mt_stats_findings_json(mt_stats_t *st)
{
    bson_t doc;
    bson_init(&doc);
    mt_findings_bson(&st->findings, &doc);
    return render_and_destroy(&doc);
}

char *mt_stats_metrics(mt_stats_t *st, uint64_t now_ns)
{
    mt_metrics_input_t in = {
        .counters = st->counters,
        .uptime_s = uptime_s(st, now_ns),
        .connections_active = st->nconns,
        .windows_open = st->windows.open_count,
        .shapes_tracked = mt_shapes_count(&st->shapes),
        .patterns = st->findings.npatterns,
        .pending_requests = st->pending_total,
        .members = (const char(*)[MT_STATS_MEMBER_NAME])st->members,
        .members_up = st->members_up,
        .nmembers = st->nmembers,
        .upstream_ready = st->upstream_ready,
    };
    return mt_metrics_render(&st->metrics, &in);
}

char *mt_stats_report(mt_stats_t *st, mt_report_format_t fmt, uint64_t now_ns)
{
    size_t n = 0;
    mt_shape_entry_t **sorted = mt_shapes_sorted(&st->shapes, &n);
    mt_report_input_t in = {
        .generated_ms = wall_ms(st, now_ns),
        .uptime_s = uptime_s(st, now_ns),
        .counters = st->counters,
        .connections_active = st->nconns,
        .windows_open = st->windows.open_count,
        .findings = &st->findings,
        .shapes = sorted,
        .nshapes = n,
    };
    char *out = mt_report_render(&in, fmt);
    bson_free(sorted);
    return out;
}
