/*
 * api: the JSON answers of the admin API (/api/stats, /api/connections,
 * /api/windows, /api/windows/ID, /api/findings), /metrics and the report,
 * rendered through libbson from the accounting state. The JSON views and the
 * report count from the last reset; /metrics from the start.
 */
#include <bson/bson.h>
#include <string.h>

#include "finding.h"
#include "json.h"
#include "report.h"
#include "stats_int.h"

#define MT_STATS_DEFAULT_LIMIT 100

/* v rounded to `per` parts of one (10: tenths), without the float noise
 * of multiplying back by 0.1. */
static double round_to(double v, double per)
{
    return (double)(int64_t)(v * per + 0.5) / per;
}

#define NS_PER_MS UINT64_C(1000000)

static double uptime_s(const mt_stats_t *st, uint64_t now_ns)
{
    return now_ns > st->start_ns ? (double)((now_ns - st->start_ns) / NS_PER_MS) / 1000.0 : 0.0;
}

/* Gauges are set from live values just before they are rendered. */
static void refresh_gauges(mt_stats_t *st)
{
    st->counters[MT_STAT_CONNECTIONS_ACTIVE] = st->nconns;
    st->counters[MT_STAT_WINDOWS_OPEN] = st->windows.open_count;
    st->counters[MT_STAT_PATTERNS] = st->findings.npatterns;
    st->counters[MT_STAT_SHAPES_TRACKED] = mt_shapes_count(&st->shapes);
    st->counters[MT_STAT_PENDING_REQUESTS] = st->pending_total;
    st->counters[MT_STAT_CURSORS_OPEN] = st->cursors.count;
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
    uint64_t since[MT_STAT__COUNT];
    refresh_gauges(st);
    mt_stats_counters_since(st->counters, st->baseline, since);
    BSON_APPEND_DOUBLE(&doc, "uptime_s", uptime_s(st, now_ns));
    BSON_APPEND_DOUBLE(&doc, "ops_per_sec", round_to(st->ops_per_sec, 10));
    mt_stats_counters_bson(since, &doc);
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

char *mt_stats_connections_json(mt_stats_t *st, uint64_t now_ns)
{
    (void)now_ns;
    bson_t doc, arr, sub, wdoc;
    uint32_t i = 0;
    bson_init(&doc);
    BSON_APPEND_ARRAY_BEGIN(&doc, "connections", &arr);
    for (h2o_linklist_t *n = st->conns.next; n != &st->conns; n = n->next, i++) {
        const mt_stats_conn_t *c = mt__stats_conn_of(n);
        char k[16];
        const char *key;
        bson_uint32_to_string(i, &key, k, sizeof k);
        BSON_APPEND_DOCUMENT_BEGIN(&arr, key, &sub);
        BSON_APPEND_INT64(&sub, "id", (int64_t)c->id);
        BSON_APPEND_UTF8(&sub, "client", c->addr);
        mt_finding_str_or_null(&sub, "app_name", c->app_name);
        mt_finding_str_or_null(&sub, "driver", c->driver);
        BSON_APPEND_INT64(&sub, "commands", (int64_t)c->commands);
        BSON_APPEND_INT64(&sub, "pending", (int64_t)mt_idmap_count(&c->pending));
        /* its open window, else the last one it took part in */
        mt_window_t *w = c->window;
        if (!w && c->last_win_id)
            w = mt__stats_window(st, c->last_win_id);
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

char *mt_stats_windows_json(mt_stats_t *st, size_t limit, bool summary,
                            const mt_window_filter_t *filter)
{
    bson_t doc, arr, sub;
    uint32_t n = 0;
    bson_init(&doc);
    if (limit == 0)
        limit = SIZE_MAX; /* every window kept */
    BSON_APPEND_INT64(&doc, "kept", (int64_t)mt_window_reg_closed_count(&st->windows));
    BSON_APPEND_ARRAY_BEGIN(&doc, "windows", &arr);
    for (mt_window_t *w = mt_window_reg_newest(&st->windows); w && n < limit;
         w = mt_window_reg_older(&st->windows, w)) {
        if (!mt_window_matches(w, filter))
            continue;
        char k[16];
        const char *key;
        bson_uint32_to_string(n++, &key, k, sizeof k);
        BSON_APPEND_DOCUMENT_BEGIN(&arr, key, &sub);
        mt_window_bson(w, !summary, &sub);
        bson_append_document_end(&arr, &sub);
    }
    bson_append_array_end(&doc, &arr);
    return render_and_destroy(&doc);
}

char *mt_stats_window_json(mt_stats_t *st, uint64_t id, uint32_t segment, bool *found)
{
    mt_window_t *w = mt__stats_window(st, id);
    bson_t doc;

    *found = w != NULL;
    if (!w)
        return NULL;
    bson_init(&doc);
    if (!mt_window_detail_bson(w, segment, &doc)) {
        bson_destroy(&doc);
        return NULL;
    }
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
    refresh_gauges(st);
    mt_metrics_input_t in = {
        .counters = st->counters,
        .uptime_s = uptime_s(st, now_ns),
        .members = (const char(*)[MT_STATS_MEMBER_NAME])st->members,
        .members_up = st->members_up,
        .nmembers = st->nmembers,
    };
    return mt_metrics_render(&st->metrics, &in);
}

char *mt_stats_report(mt_stats_t *st, mt_report_format_t fmt, uint64_t now_ns)
{
    size_t n = 0;
    mt_shape_entry_t **sorted = mt_shapes_sorted(&st->shapes, &n);
    uint64_t since[MT_STAT__COUNT];
    refresh_gauges(st);
    mt_stats_counters_since(st->counters, st->baseline, since);
    mt_report_input_t in = {
        .generated_ms = mt__stats_wall_ms(st, now_ns),
        .uptime_s = uptime_s(st, now_ns),
        .counters = since,
        .findings = &st->findings,
        .shapes = sorted,
        .nshapes = n,
    };
    char *out = mt_report_render(&in, fmt);
    bson_free(sorted);
    return out;
}
