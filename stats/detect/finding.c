/*
 * finding: one finding as a BSON document, rendered to JSON by the callers.
 */
#include "finding.h"

#include "clock.h"
#include "json.h"
#include "suggest.h"

void mt_finding_shape_fields(bson_t *sub, const char *db, const char *collection,
                             const char *command, const char *shape)
{
    BSON_APPEND_UTF8(sub, "db", db);
    BSON_APPEND_UTF8(sub, "collection", collection);
    BSON_APPEND_UTF8(sub, "command", command);
    BSON_APPEND_UTF8(sub, "shape", shape);
}

void mt_finding_suggestion(const mt_window_t *w, const mt_detect_result_t *r, char *out, size_t cap)
{
    const mt_window_cmd_t *c = &w->cmds[r->first_child];
    mt_suggest_args_t a = {
        .collection = mt_window_cmd_collection(c),
        .key = r->has_key ? mt_window_cmd_key(c, r->key_term) : NULL,
        .field = r->high && r->field[0] ? r->field : NULL,
        .distinct = r->distinct,
        .count = r->count,
        .command = mt_window_cmd_command(c),
        .shape = mt_window_cmd_shape(c),
        .in_lists = r->in_lists,
    };
    mt_suggest(r->type, w->driver, &a, out, cap);
}

void mt_finding_str_or_null(bson_t *doc, const char *key, const char *v)
{
    mt_json_str_or_null(doc, key, v);
}

/* The window object: the whole window, or the segment the finding is in. */
static void window_bson(const mt_window_t *w, const mt_detect_result_t *r, bson_t *sub)
{
    char iso[MT_CLOCK_ISO_LEN];
    mt_window_span_t span;
    uint64_t commands = w->total_cmds;

    mt_window_span(w, 0, 0, &span); /* the whole window */
    if (r->segment > 0 && r->seg_lo < r->seg_hi) {
        mt_window_span(w, r->seg_lo, r->seg_hi, &span);
        commands = r->seg_hi - r->seg_lo;
    }
    BSON_APPEND_INT64(sub, "id", (int64_t)w->id);
    if (r->segment > 0)
        BSON_APPEND_INT32(sub, "segment", (int32_t)r->segment);
    BSON_APPEND_INT64(sub, "connection_id", (int64_t)w->conn_id);
    mt_finding_str_or_null(sub, "key", w->key);
    BSON_APPEND_UTF8(sub, "started_at", mt_clock_iso8601(span.started_ms, iso));
    BSON_APPEND_DOUBLE(sub, "duration_ms", mt_json_ms(span.duration_ns));
    BSON_APPEND_INT64(sub, "commands", (int64_t)commands);
}

void mt_finding_bson(const mt_window_t *w, const mt_detect_result_t *r, const char *id,
                     const char *nested_in, int64_t detected_ms, bool log_values, bson_t *out)
{
    char iso[MT_CLOCK_ISO_LEN];
    char sugg[768];
    bson_t sub, arr;
    const mt_window_cmd_t *c = &w->cmds[r->first_child];

    BSON_APPEND_UTF8(out, "schema", "mongotap.finding/1");
    BSON_APPEND_UTF8(out, "id", id);
    BSON_APPEND_UTF8(out, "type", mt_finding_type_str(r->type));
    BSON_APPEND_UTF8(out, "detected_at", mt_clock_iso8601(detected_ms, iso));
    BSON_APPEND_UTF8(out, "confidence", r->high ? "high" : "medium");

    BSON_APPEND_DOCUMENT_BEGIN(out, "client", &sub);
    mt_finding_str_or_null(&sub, "addr", w->client_addr);
    mt_finding_str_or_null(&sub, "app_name", w->app_name);
    mt_finding_str_or_null(&sub, "driver", w->driver);
    bson_append_document_end(out, &sub);

    BSON_APPEND_DOCUMENT_BEGIN(out, "window", &sub);
    window_bson(w, r, &sub);
    bson_append_document_end(out, &sub);

    if (r->has_parent) {
        const mt_window_cmd_t *p = &w->cmds[r->parent];
        BSON_APPEND_DOCUMENT_BEGIN(out, "parent", &sub);
        mt_finding_shape_fields(&sub, mt_window_cmd_db(p), mt_window_cmd_collection(p),
                                mt_window_cmd_command(p), mt_window_cmd_shape(p));
        BSON_APPEND_INT64(&sub, "docs_returned", (int64_t)r->parent_docs);
        BSON_APPEND_DOUBLE(&sub, "duration_ms", mt_json_ms(r->parent_ns));
        bson_append_document_end(out, &sub);
    } else {
        BSON_APPEND_NULL(out, "parent");
    }

    BSON_APPEND_DOCUMENT_BEGIN(out, "children", &sub);
    mt_finding_shape_fields(&sub, mt_window_cmd_db(c), mt_window_cmd_collection(c),
                            mt_window_cmd_command(c), mt_window_cmd_shape(c));
    mt_finding_str_or_null(&sub, "key", r->has_key ? mt_window_cmd_key(c, r->key_term) : NULL);
    if (r->constant_terms) {
        BSON_APPEND_ARRAY_BEGIN(&sub, "constant_keys", &arr);
        uint32_t n = 0;
        for (unsigned t = 0; t < c->nterms; t++) {
            char k[16];
            const char *kp;
            if (!(r->constant_terms & (1u << t)))
                continue;
            bson_uint32_to_string(n++, &kp, k, sizeof k);
            BSON_APPEND_UTF8(&arr, kp, mt_window_cmd_key(c, t));
        }
        bson_append_array_end(&sub, &arr);
    }
    if (r->in_lists)
        BSON_APPEND_BOOL(&sub, "in_lists", true);
    BSON_APPEND_INT64(&sub, "count", r->count);
    BSON_APPEND_INT64(&sub, "distinct_values", r->distinct);
    BSON_APPEND_DOUBLE(&sub, "duration_ms", mt_json_ms(r->child_ns));
    bson_append_document_end(out, &sub);

    if (r->high && r->field[0])
        BSON_APPEND_UTF8(out, "field", r->field);
    else
        BSON_APPEND_NULL(out, "field");
    BSON_APPEND_INT64(out, "matched", r->matched);
    if (nested_in)
        BSON_APPEND_UTF8(out, "nested_in", nested_in);
    mt_finding_suggestion(w, r, sugg, sizeof sugg);
    BSON_APPEND_UTF8(out, "suggestion", sugg);

    if (log_values) {
        /* Only with --log-values: the first few looked-up values. */
        BSON_APPEND_ARRAY_BEGIN(out, "values", &sub);
        uint32_t n = 0;
        for (uint32_t i = 0; i < r->nsamples; i++) {
            const mt_window_cmd_t *k = &w->cmds[r->samples[i]];
            bson_t vdoc;
            bson_iter_t it;
            if (!k->more || !k->more->value_doc ||
                !bson_init_static(&vdoc, k->more->value_doc, k->more->value_doc_len) ||
                !bson_iter_init(&it, &vdoc) || !bson_iter_next(&it))
                continue;
            char key[16];
            const char *kp;
            bson_uint32_to_string(n++, &kp, key, sizeof key);
            bson_append_iter(&sub, kp, -1, &it);
        }
        bson_append_array_end(out, &sub);
    }
}
