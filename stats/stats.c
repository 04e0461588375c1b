/*
 * stats: the glue. Takes each decoded request and reply, pairs them
 * (pairing.h), accounts them to their shape (shapes.h) and Prometheus series
 * (metrics.h), records them in their request window (window.h), and when a
 * window closes runs the detectors (detect/) and keeps what they found
 * (findings.h). The JSON answers of the admin API are in api.c.
 */
#include "stats.h"

#include <bson/bson.h>
#include <string.h>

#include "clock.h"
#include "detect.h"
#include "finding.h"
#include "json.h"
#include "stats_int.h"

#define NS_PER_MS UINT64_C(1000000)
#define NS_PER_S UINT64_C(1000000000)

void mt_stats_config_defaults(mt_stats_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->window_gap_ms = 100;
    cfg->window_max_ms = 30000;
    cfg->n1_threshold = 5;
    cfg->max_shapes = 10000;
    cfg->max_conns = 100000;
    cfg->keep_windows = MT_WINDOW_KEEP_DEFAULT;
}

int64_t mt__stats_wall_ms(const mt_stats_t *st, uint64_t now_ns)
{
    if (now_ns >= st->start_ns)
        return st->start_ms + (int64_t)((now_ns - st->start_ns) / NS_PER_MS);
    return st->start_ms - (int64_t)((st->start_ns - now_ns) / NS_PER_MS);
}

static void window_closed_cb(void *data, mt_window_t *w, uint64_t now_ns);

mt_stats_t *mt_stats_new(const mt_stats_config_t *cfg, uint64_t now_ns)
{
    mt_stats_t *st = bson_malloc0(sizeof *st);
    mt_window_rules_t rules;

    if (cfg)
        st->cfg = *cfg;
    else
        mt_stats_config_defaults(&st->cfg);
    st->start_ns = now_ns;
    st->start_ms = mt_clock_wall_ms();
    st->rate_ns = now_ns;
    h2o_linklist_init_anchor(&st->conns);
    mt_cursors_init(&st->cursors, MT_PAIRING_MAX_CURSORS);
    mt_shapes_init(&st->shapes, st->cfg.max_shapes);
    rules = (mt_window_rules_t){
        .gap_ns = st->cfg.window_gap_ms * NS_PER_MS,
        .max_ns = st->cfg.window_max_ms * NS_PER_MS,
        .log_values = st->cfg.log_values,
        .shape = &st->cfg.shape,
        .paths_cut = &st->counters[MT_STAT_NAMES_TRUNCATED],
        .cmds_dropped = &st->counters[MT_STAT_WINDOW_COMMANDS_DROPPED],
        .keep = st->cfg.keep_windows,
        .ignore_ns = st->cfg.ignore_ns,
        .nignore_ns = st->cfg.nignore_ns,
        .on_close = window_closed_cb,
        .on_close_data = st,
    };
    mt_window_reg_init(&st->windows, &rules);
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
    /* windows first: an open one points back at its connection */
    mt_window_reg_clear(&st->windows);
    while (!h2o_linklist_is_empty(&st->conns)) {
        mt_stats_conn_t *c = mt__stats_conn_of(st->conns.next);
        h2o_linklist_unlink(&c->link);
        conn_free(c);
    }
    mt_shapes_clear(&st->shapes);
    mt_findings_clear(&st->findings);
    mt_metrics_free(&st->metrics);
    mt_cursors_free(&st->cursors);
    mt_detect_scratch_free(&st->detect);
    bson_free(st);
}

const mt_shape_opts_t *mt_stats_shape_opts(const mt_stats_t *st)
{
    return st ? &st->cfg.shape : NULL;
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
    st->counters[MT_STAT_UPSTREAM_READY] = ready;
}

mt_window_t *mt__stats_window(const mt_stats_t *st, uint64_t id)
{
    mt_window_t *w = mt_window_reg_find(&st->windows, id);
    return w ? w : mt_window_reg_find_closed(&st->windows, id);
}

/* ---- findings ------------------------------------------------------------- */

/* What a finding adds to its pattern. */
static void finding_event(const mt_window_t *w, const mt_detect_result_t *r, const char *sugg,
                          int64_t now_ms, mt_findings_event_t *ev)
{
    const mt_window_cmd_t *c = &w->cmds[r->first_child];

    memset(ev, 0, sizeof *ev);
    ev->type = r->type;
    if (r->has_parent) {
        const mt_window_cmd_t *p = &w->cmds[r->parent];
        ev->key[MT_PK_PARENT_DB] = mt_window_cmd_db(p);
        ev->key[MT_PK_PARENT_COLLECTION] = mt_window_cmd_collection(p);
        ev->key[MT_PK_PARENT_COMMAND] = mt_window_cmd_command(p);
        ev->key[MT_PK_PARENT_SHAPE] = mt_window_cmd_shape(p);
    }
    ev->key[MT_PK_CHILD_DB] = mt_window_cmd_db(c);
    ev->key[MT_PK_CHILD_COLLECTION] = mt_window_cmd_collection(c);
    ev->key[MT_PK_CHILD_COMMAND] = mt_window_cmd_command(c);
    ev->key[MT_PK_CHILD_SHAPE] = mt_window_cmd_shape(c);
    ev->key[MT_PK_CHILD_KEY] = r->has_key ? mt_window_cmd_key(c, r->key_term) : NULL;
    ev->key[MT_PK_FIELD] = r->high && r->field[0] ? r->field : NULL;
    ev->high = r->high;
    ev->children = r->count;
    ev->child_ns = r->child_ns;
    ev->window_id = w->id;
    ev->suggestion = sugg;
    ev->now_ms = now_ms;
}

/* One line for the log: what was found where, how big, the fix; shapes and
 * names only, never a value. */
static void finding_summary(const mt_window_t *w, const mt_detect_result_t *r, const char *id,
                            const char *sugg, char *out, size_t cap)
{
    const mt_window_cmd_t *c = &w->cmds[r->first_child];
    char parent[300] = "";

    if (r->has_parent) {
        const mt_window_cmd_t *p = &w->cmds[r->parent];
        snprintf(parent, sizeof parent, "%s.%s %s (%llu docs) -> ", mt_window_cmd_db(p),
                 mt_window_cmd_collection(p), mt_window_cmd_command(p),
                 (unsigned long long)r->parent_docs);
    }
    snprintf(out, cap, "%s %s (%s confidence): %s%llu x %s.%s %s%s%s, window %llu: %s", id,
             mt_finding_type_str(r->type), r->high ? "high" : "medium", parent,
             (unsigned long long)r->count, mt_window_cmd_db(c), mt_window_cmd_collection(c),
             mt_window_cmd_command(c), r->high && r->field[0] ? " via field " : "",
             r->high ? r->field : "", (unsigned long long)w->id, sugg);
}

/* A window closed: analyse it and keep what was found. */
static void window_closed_cb(void *data, mt_window_t *w, uint64_t now_ns)
{
    mt_stats_t *st = data;
    mt_detect_config_t dcfg = {.threshold = st->cfg.n1_threshold, .scratch = &st->detect};
    size_t n = mt_detect_window(w, &dcfg, st->results, MT_DETECT_MAX_RESULTS);
    int64_t now_ms = mt__stats_wall_ms(st, now_ns);
    char ids[MT_DETECT_MAX_RESULTS][16];
    mt_window_finding_t found[MT_DETECT_MAX_RESULTS];

    st->counters[MT_STAT_WINDOWS]++;
    for (size_t i = 0; i < n; i++) {
        mt_detect_result_t *r = &st->results[i];
        char sugg[768], line[1200];
        if (r->high && mt_shape_redacts(&st->cfg.shape, r->field))
            bson_strncpy(r->field, "?", sizeof r->field);
        mt_findings_event_t ev;
        bson_t doc;

        mt_findings_next_id(&st->findings, ids[i]);
        bson_init(&doc);
        mt_finding_bson(w, r, ids[i], r->nested_in >= 0 ? ids[r->nested_in] : NULL, now_ms,
                        st->cfg.log_values, &doc);
        mt_finding_suggestion(w, r, sugg, sizeof sugg);
        finding_event(w, r, sugg, now_ms, &ev);
        mt_findings_add(&st->findings, &doc, ids[i], &ev);
        st->counters[MT_STAT_FINDINGS]++;
        found[i] = (mt_window_finding_t){
            .type = mt_finding_type_str(r->type),
            .high = r->high,
            .segment = r->segment,
            .parent = r->has_parent ? (int32_t)r->parent : -1,
            .children = r->count,
        };
        bson_strncpy(found[i].id, ids[i], sizeof found[i].id);
        if (st->cfg.on_finding) {
            finding_summary(w, r, ids[i], sugg, line, sizeof line);
            st->cfg.on_finding(st->cfg.on_finding_data, &doc, line);
        }
        bson_destroy(&doc);
    }
    /* kept while its newest finding is: the window a finding names opens */
    mt_window_set_findings(w, found, (uint32_t)n, mt_findings_seq(&st->findings));
    mt_window_reg_unpin(&st->windows, mt_findings_floor(&st->findings));
}

/* ---- connections ---------------------------------------------------------- */

/* Forgets a pending request (bound reached or connection gone). */
static void pending_forget(mt_stats_t *st, const mt_pending_t *p)
{
    if (p->inflight) {
        mt_window_t *w = mt_window_reg_find(&st->windows, p->win_id);
        if (w && w->inflight)
            w->inflight--;
    }
    if (st->pending_total)
        st->pending_total--;
}

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
    mt_idmap_init(&c->pending, sizeof(mt_pending_t), MT_PAIRING_MAX_PENDING);
    mt_cursors_conn_init(&c->cursors);
    h2o_linklist_insert(&st->conns, &c->link);
    st->nconns++;
    return c;
}

void mt_stats_conn_close(mt_stats_conn_t *c, uint64_t now_ns)
{
    if (!c)
        return;
    mt_stats_t *st = c->st;
    size_t pos = 0;
    mt_pending_t *p;
    while ((p = mt_idmap_next(&c->pending, &pos, NULL)))
        pending_forget(st, p);
    mt_cursors_drop_conn(&st->cursors, &c->cursors);
    if (c->window)
        mt_window_close(&st->windows, c->window, now_ns);
    h2o_linklist_unlink(&c->link);
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

/* ---- requests ------------------------------------------------------------- */

/* The shape a request is accounted to, with its metric labels: a getMore's
 * is the shape of the command that opened its cursor. A known shape is found
 * by its id; only a new one has its text rendered (into shape: past the
 * bound the window keeps the real key). */
static mt_shape_entry_t *account_shape(mt_stats_t *st, const mt_cmd_view_t *cmd,
                                       const mt_cursor_t *cursor, char *shape, size_t cap,
                                       uint64_t *shape_hash, uint16_t *metric_command)
{
    const char *db = cmd->db ? cmd->db : "", *coll = cmd->collection ? cmd->collection : "";
    mt_shape_entry_t *entry;
    uint16_t metric_ns;
    bool created = false;

    if (cursor && cursor->entry) {
        entry = cursor->entry;
        *shape_hash = entry->hash;
        if (entry->overflow)
            bson_strncpy(shape, entry->shape, cap);
        *metric_command = st->getmore_label;
        mt_metrics_count(&st->metrics, *metric_command, cursor->metric_ns);
        return entry;
    }
    mt_shapes_key_t key = {db, coll, cmd->name, cmd->shape_id};
    *shape_hash = mt_shapes_hash(&key);
    entry = mt_shapes_find(&st->shapes, *shape_hash, &key);
    if (!entry) {
        mt_shape_of_command(cmd, shape, cap, &st->cfg.shape);
        entry = mt_shapes_add(&st->shapes, *shape_hash, &key, shape, &created);
    }
    if (entry && !entry->overflow) {
        /* Label lookups happen once per shape, not once per message. */
        if (created) {
            entry->metric_command = mt_metrics_command_label(cmd->name);
            entry->metric_ns = mt_metrics_ns_label(&st->metrics, db, coll);
        }
        *metric_command = entry->metric_command;
        metric_ns = entry->metric_ns;
    } else {
        *metric_command = mt_metrics_command_label(cmd->name);
        metric_ns = mt_metrics_ns_label(&st->metrics, db, coll);
    }
    mt_metrics_count(&st->metrics, *metric_command, metric_ns);
    if (entry)
        entry->count++;
    return entry;
}

/* Remembers a request until its reply. */
static void pending_add(mt_stats_conn_t *c, const mt_cmd_view_t *cmd, mt_shape_entry_t *entry,
                        uint16_t metric_command, const mt_cursor_t *cursor, mt_window_t *w, int idx,
                        uint64_t now_ns)
{
    mt_stats_t *st = c->st;
    mt_pending_t evicted, *p;
    bool did_evict = false;

    if (mt_idmap_remove(&c->pending, cmd->request_id, &evicted))
        pending_forget(st, &evicted); /* requestID reused before its reply: replace */
    p = mt_idmap_put(&c->pending, cmd->request_id, &evicted, &did_evict);
    if (did_evict) {
        pending_forget(st, &evicted);
        st->counters[MT_STAT_REQUESTS_FORGOTTEN]++;
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
}

void mt_stats_conn_request(mt_stats_conn_t *c, const mt_cmd_view_t *cmd, size_t len,
                           uint64_t now_ns)
{
    if (!c)
        return;
    mt_stats_t *st = c->st;
    int64_t now_ms = mt__stats_wall_ms(st, now_ns);
    mt_cursor_t cursor_copy, *cursor = NULL;
    char shape[MT_SHAPE_MAX];
    uint64_t shape_hash = 0;
    uint16_t metric_command = 0;

    /* untagged commands stay in the key of the last keyed one until the
     * connection goes idle for window-gap (no request in flight) */
    bool idle = mt_idmap_count(&c->pending) == 0 &&
                now_ns - c->last_active_ns >= st->cfg.window_gap_ms * NS_PER_MS;
    st->counters[MT_STAT_COMMANDS]++;
    c->commands++;
    c->last_active_ns = now_ns;
    if (cmd->names_truncated)
        st->counters[MT_STAT_NAMES_TRUNCATED]++;
    if (cmd->app_name || cmd->driver_name)
        copy_handshake(c, cmd);
    if (cmd->kind == MT_CMD_GETMORE) {
        mt_cursor_t *cur = mt_cursors_get(&st->cursors, cmd->cursor_id);
        if (cur) {
            cursor_copy = *cur;
            cursor = &cursor_copy;
        }
    }
    shape[0] = '\0';
    mt_shape_entry_t *entry =
        account_shape(st, cmd, cursor, shape, sizeof shape, &shape_hash, &metric_command);
    if (entry) {
        entry->bytes_in += len;
        if (entry->first_seen_ms < 0)
            entry->first_seen_ms = now_ms;
        entry->last_seen_ms = now_ms;
    }
    if (cmd->kind == MT_CMD_KILL_CURSORS && cmd->cursor_id)
        mt_cursors_remove(&st->cursors, cmd->cursor_id);

    mt_window_t *w = NULL;
    int idx = -1;
    if (!cmd->monitoring) {
        mt_window_origin_t o = {c->id, c->addr, c->app_name, c->driver, &c->window};
        w = mt_window_join(&st->windows, &o, cmd->comment, cursor ? cursor->win_id : 0,
                           idle ? 0 : c->keyed_win_id, now_ns, now_ms);
        if (w && w->key)
            c->keyed_win_id = w->id;
        else if (w)
            c->keyed_win_id = 0;
        if (w) {
            idx = mt_window_record(&st->windows, w, cmd, entry, shape_hash, shape, now_ns);
            if (idx >= 0)
                w->cmds[idx].bytes_in = len > UINT32_MAX ? UINT32_MAX : (uint32_t)len;
            w->last_ns = now_ns;
            c->last_win_id = w->id;
            if (cmd->more_to_come && idx >= 0)
                w->cmds[idx].replied = true; /* no reply will come */
        }
    }
    if (!cmd->more_to_come)
        pending_add(c, cmd, entry, metric_command, cursor, w, idx, now_ns);
}

/* ---- replies -------------------------------------------------------------- */

static bool is_write(mt_cmd_kind_t k)
{
    return k == MT_CMD_INSERT || k == MT_CMD_UPDATE || k == MT_CMD_DELETE;
}

/* The window of id: most often the connection's own, found without a
 * lookup. */
static mt_window_t *conn_window(mt_stats_conn_t *c, uint64_t id)
{
    if (!id)
        return NULL;
    if (c->window && c->window->id == id)
        return c->window;
    return mt_window_reg_find(&c->st->windows, id);
}

/* How a reply failed, for its command in the window: ok: 0 with its code,
 * or the first write error's. */
static void reply_error(mt_window_t *w, mt_window_cmd_t *wc, const mt_reply_view_t *r)
{
    bson_iter_t it, f;
    int32_t code = r->code;
    const char *name = r->code_name;

    if (r->unread || (r->ok && r->write_errors == 0))
        return; /* an unread reply's outcome is unknown, not a failure */
    if (r->ok && bson_iter_init(&it, &r->body) &&
        bson_iter_find_descendant(&it, "writeErrors.0", &f) && BSON_ITER_HOLDS_DOCUMENT(&f)) {
        bson_iter_t e;
        name = NULL;
        if (bson_iter_recurse(&f, &e) && bson_iter_find(&e, "code") && BSON_ITER_HOLDS_NUMBER(&e))
            code = (int32_t)bson_iter_as_int64(&e);
        if (bson_iter_recurse(&f, &e) && bson_iter_find(&e, "codeName") && BSON_ITER_HOLDS_UTF8(&e))
            name = bson_iter_utf8(&e, NULL);
    }
    wc->failed = true;
    wc->error_code = code;
    if (name && !wc->error_name)
        wc->error_name = mt_window_strdup(w, name, MT_WINDOW_ERROR_NAME_MAX);
}

static uint32_t batch_docs(const mt_reply_view_t *r)
{
    return r->docs > 0 ? (uint32_t)r->docs : 0;
}

/* Folds a reply into the windows of its request and, for a getMore, of the
 * command that opened the cursor. */
static void reply_windows(mt_stats_conn_t *c, const mt_pending_t *p, const mt_reply_view_t *r,
                          size_t len, uint64_t docs, uint64_t latency, uint64_t now_ns,
                          mt_window_t **win)
{
    mt_stats_t *st = c->st;
    mt_cmd_kind_t kind = (mt_cmd_kind_t)p->kind;
    mt_window_t *w = conn_window(c, p->win_id);

    if (w) {
        if (p->has_cmd_idx && p->cmd_idx < w->ncmds) {
            mt_window_cmd_t *wc = &w->cmds[p->cmd_idx];
            if (p->continuation) {
                wc->getmore_ns += latency;
            } else {
                wc->duration_ns = latency;
                wc->replied = true;
            }
            wc->docs += docs;
            wc->bytes_out =
                len >= UINT32_MAX - wc->bytes_out ? UINT32_MAX : wc->bytes_out + (uint32_t)len;
            reply_error(w, wc, r);
            /* Evidence for the detectors: documents of finds and aggregates
             * that may be a parent, or a parent's children (a lookup's too:
             * children may be a nested loop's parent). Another request in
             * flight in the window may be a parent whose reply is still to
             * come (a keyed window spans connections). */
            if (kind == MT_CMD_FIND || kind == MT_CMD_AGGREGATE) {
                if (mt_detect_is_parent(wc, st->cfg.n1_threshold) || r->cursor_id != 0)
                    w->big_read = true;
                if (r->batch && (w->big_read || w->inflight > (p->inflight ? 1u : 0u)))
                    mt_window_add_evidence(w, p->cmd_idx, r->batch, r->batch_len, batch_docs(r));
            }
        }
        w->last_ns = now_ns;
        if (p->inflight && !r->more_to_come && w->inflight)
            w->inflight--;
    }
    if (kind == MT_CMD_GETMORE && p->origin_win_id) {
        mt_window_t *ow = mt_window_reg_find(&st->windows, p->origin_win_id);
        if (ow && p->has_origin_idx && p->origin_idx < ow->ncmds) {
            mt_window_cmd_t *oc = &ow->cmds[p->origin_idx];
            oc->docs += docs;
            oc->getmore_ns += latency;
            if (r->batch)
                mt_window_add_evidence(ow, p->origin_idx, r->batch, r->batch_len, batch_docs(r));
            ow->last_ns = now_ns;
        }
    }
    *win = w;
}

/* Cursors the reply opens or closes. */
static void reply_cursors(mt_stats_conn_t *c, const mt_pending_t *p, const mt_reply_view_t *r,
                          const mt_window_t *w)
{
    mt_stats_t *st = c->st;
    mt_shape_entry_t *e = p->entry;

    if (p->kind == MT_CMD_GETMORE) {
        if (!r->ok || (r->has_cursor && r->cursor_id == 0))
            mt_cursors_remove(&st->cursors, p->cursor_id);
        return;
    }
    if (!r->has_cursor || r->cursor_id == 0 || p->continuation || !e)
        return;
    uint64_t evicted = st->cursors.evicted;
    mt_cursor_t *cur = mt_cursors_put(&st->cursors, r->cursor_id, &c->cursors);
    st->counters[MT_STAT_CURSORS_EVICTED] += st->cursors.evicted - evicted;
    if (!cur)
        return;
    cur->entry = e;
    cur->win_id = w ? p->win_id : 0;
    cur->cmd_idx = p->cmd_idx;
    cur->has_cmd_idx = p->has_cmd_idx && w != NULL;
    cur->metric_ns = e->overflow ? MT_METRICS_NS_OTHER : e->metric_ns;
}

void mt_stats_conn_reply(mt_stats_conn_t *c, const mt_reply_view_t *r, size_t len, uint64_t now_ns)
{
    if (!c)
        return;
    mt_stats_t *st = c->st;
    mt_pending_t *pp = mt_idmap_get(&c->pending, r->response_to);
    c->last_active_ns = now_ns;
    if (!pp) {
        st->counters[MT_STAT_REPLIES_UNMATCHED]++;
        return;
    }
    mt_pending_t p = *pp;
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
        if (!r->unread && (!r->ok || r->write_errors > 0))
            e->errors++; /* an unread reply's outcome is unknown, not a failure */
        e->docs_returned += docs;
        if (later)
            mt_hist_add_sum(&e->latency, latency);
        else
            mt_hist_record(&e->latency, latency);
        e->last_seen_ms = mt__stats_wall_ms(st, now_ns);
    }
    mt_metrics_observe(&st->metrics, p.metric_command, latency);

    mt_window_t *w;
    reply_windows(c, &p, r, len, docs, latency, now_ns, &w);
    reply_cursors(c, &p, r, w);

    /* Exhaust: another reply follows, answering this reply's requestID. */
    mt_idmap_remove(&c->pending, r->response_to, NULL);
    if (r->more_to_come) {
        mt_pending_t *np = mt_idmap_put(&c->pending, r->request_id, NULL, NULL);
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
}

/* ---- time ----------------------------------------------------------------- */

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
    mt_window_reg_tick(&st->windows, now_ns);
}

void mt_stats_flush(mt_stats_t *st, uint64_t now_ns)
{
    mt_window_reg_flush(&st->windows, now_ns);
}

void mt_stats_reset(mt_stats_t *st)
{
    /* Pending requests and cursors point at shapes and windows: they go too
     * (replies to them are simply not matched). */
    mt_cursors_clear(&st->cursors);
    for (h2o_linklist_t *n = st->conns.next; n != &st->conns; n = n->next) {
        mt_stats_conn_t *c = mt__stats_conn_of(n);
        mt_idmap_clear(&c->pending);
        mt_cursors_conn_init(&c->cursors);
        c->window = NULL;
        c->last_win_id = 0;
    }
    st->pending_total = 0;
    mt_window_reg_clear(&st->windows);
    mt_shapes_clear(&st->shapes);
    mt_findings_clear(&st->findings);
    /* The JSON views count again from here (mt_stats_counters_since); the
     * counters themselves and the Prometheus series never go backwards. */
    memcpy(st->baseline, st->counters, sizeof st->baseline);
}
