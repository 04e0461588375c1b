/*
 * findings: a ring of finding documents and a small table of patterns.
 * Patterns are few (one per distinct N+1 in an application), so a linear scan
 * with a hash check is enough; when the table is full the pattern with the
 * least child time makes room.
 */
#include "findings.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "hash.h"
#include "json.h"

void mt_findings_init(mt_findings_t *f)
{
    memset(f, 0, sizeof *f);
    f->next_id = 1;
}

static void pattern_free(mt_findings_pattern_t *p)
{
    bson_free(p->keybuf);
    bson_free(p->fix);
}

void mt_findings_clear(mt_findings_t *f)
{
    for (size_t i = 0; i < MT_FINDINGS_KEEP; i++)
        if (f->ring[i])
            bson_destroy(f->ring[i]);
    for (size_t i = 0; i < f->npatterns; i++)
        pattern_free(&f->patterns[i]);
    bson_free(f->patterns);
    uint64_t next_id = f->next_id;
    mt_findings_init(f);
    f->next_id = next_id;
}

void mt_findings_next_id(mt_findings_t *f, char out[16])
{
    snprintf(out, 16, "f-%06llu", (unsigned long long)(f->next_id++ % 100000000ULL));
}

static bool str_eq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

static bool pattern_matches(const mt_findings_pattern_t *p, uint64_t h,
                            const mt_findings_event_t *e)
{
    return p->hash == h && str_eq(p->parent_db, e->parent_db) &&
           str_eq(p->parent_collection, e->parent_collection) &&
           str_eq(p->parent_command, e->parent_command) &&
           str_eq(p->parent_shape, e->parent_shape) && str_eq(p->child_db, e->child_db) &&
           str_eq(p->child_collection, e->child_collection) &&
           str_eq(p->child_command, e->child_command) && str_eq(p->child_shape, e->child_shape) &&
           str_eq(p->child_key, e->child_key) && str_eq(p->field, e->field);
}

/* Copies the key strings of e into one buffer owned by p. */
static bool pattern_init(mt_findings_pattern_t *p, uint64_t h, const mt_findings_event_t *e)
{
    const char *parts[10] = {
        e->parent_db,        e->parent_collection, e->parent_command, e->parent_shape, e->child_db,
        e->child_collection, e->child_command,     e->child_shape,    e->child_key,    e->field};
    size_t total = 0;
    for (int i = 0; i < 10; i++)
        total += (parts[i] ? strlen(parts[i]) : 0) + 1;
    memset(p, 0, sizeof *p);
    p->keybuf = bson_malloc(total);
    if (!p->keybuf)
        return false;
    const char *out[10];
    char *w = p->keybuf;
    for (int i = 0; i < 10; i++) {
        if (!parts[i]) {
            out[i] = NULL;
            continue;
        }
        size_t l = strlen(parts[i]) + 1;
        memcpy(w, parts[i], l);
        out[i] = w;
        w += l;
    }
    p->parent_db = out[0];
    p->parent_collection = out[1];
    p->parent_command = out[2];
    p->parent_shape = out[3];
    p->child_db = out[4];
    p->child_collection = out[5];
    p->child_command = out[6];
    p->child_shape = out[7];
    p->child_key = out[8];
    p->field = out[9];
    p->hash = h;
    p->first_ms = e->now_ms;
    return true;
}

static mt_findings_pattern_t *pattern_for(mt_findings_t *f, const mt_findings_event_t *e)
{
    uint64_t h = MT_HASH_SEED;
    const char *parts[10] = {
        e->parent_db,        e->parent_collection, e->parent_command, e->parent_shape, e->child_db,
        e->child_collection, e->child_command,     e->child_shape,    e->child_key,    e->field};
    for (int i = 0; i < 10; i++)
        h = mt_hash_str(h, parts[i]);
    for (size_t i = 0; i < f->npatterns; i++)
        if (pattern_matches(&f->patterns[i], h, e))
            return &f->patterns[i];

    mt_findings_pattern_t *slot;
    if (f->npatterns < MT_FINDINGS_MAX_PATTERNS) {
        if (f->npatterns == 0) {
            f->patterns = bson_malloc0(MT_FINDINGS_MAX_PATTERNS * sizeof *f->patterns);
            if (!f->patterns)
                return NULL;
        }
        slot = &f->patterns[f->npatterns];
        if (!pattern_init(slot, h, e))
            return NULL;
        f->npatterns++;
        return slot;
    }
    /* Full: the pattern that cost the least gives way. */
    slot = &f->patterns[0];
    for (size_t i = 1; i < f->npatterns; i++)
        if (f->patterns[i].child_ns < slot->child_ns)
            slot = &f->patterns[i];
    mt_findings_pattern_t fresh;
    if (!pattern_init(&fresh, h, e))
        return NULL;
    pattern_free(slot);
    *slot = fresh;
    return slot;
}

void mt_findings_add(mt_findings_t *f, const bson_t *finding, const char *id,
                     const mt_findings_event_t *ev)
{
    bson_t *copy = bson_copy(finding);
    if (copy) {
        if (f->ring[f->next])
            bson_destroy(f->ring[f->next]);
        f->ring[f->next] = copy;
        f->next = (f->next + 1) % MT_FINDINGS_KEEP;
        if (f->count < MT_FINDINGS_KEEP)
            f->count++;
    }
    mt_findings_pattern_t *p = pattern_for(f, ev);
    if (!p)
        return;
    p->occurrences++;
    p->children += ev->children;
    p->child_ns += ev->child_ns;
    p->example_window = ev->window_id;
    bson_strncpy(p->example_finding, id, sizeof p->example_finding);
    p->last_ms = ev->now_ms;
    char *fix = bson_strdup(ev->fix ? ev->fix : "");
    if (fix) {
        bson_free(p->fix);
        p->fix = fix;
    }
}

const bson_t *mt_findings_get(const mt_findings_t *f, size_t i)
{
    if (i >= f->count)
        return NULL;
    return f->ring[(f->next + MT_FINDINGS_KEEP - 1 - i) % MT_FINDINGS_KEEP];
}

static int by_child_ns_desc(const void *a, const void *b)
{
    const mt_findings_pattern_t *x = *(const mt_findings_pattern_t *const *)a;
    const mt_findings_pattern_t *y = *(const mt_findings_pattern_t *const *)b;
    if (x->child_ns != y->child_ns)
        return x->child_ns > y->child_ns ? -1 : 1;
    if (x->occurrences != y->occurrences)
        return x->occurrences > y->occurrences ? -1 : 1;
    return x->first_ms < y->first_ms ? -1 : (x->first_ms > y->first_ms);
}

const mt_findings_pattern_t **mt_findings_patterns_sorted(const mt_findings_t *f, size_t *n)
{
    *n = 0;
    if (f->npatterns == 0)
        return NULL;
    const mt_findings_pattern_t **arr = bson_malloc(f->npatterns * sizeof *arr);
    if (!arr)
        return NULL;
    for (size_t i = 0; i < f->npatterns; i++)
        arr[i] = &f->patterns[i];
    qsort(arr, f->npatterns, sizeof *arr, by_child_ns_desc);
    *n = f->npatterns;
    return arr;
}

void mt_findings_pattern_bson(const mt_findings_pattern_t *p, bson_t *doc)
{
    char iso[MT_CLOCK_ISO_LEN];
    bson_t sub;
    BSON_APPEND_DOCUMENT_BEGIN(doc, "parent", &sub);
    BSON_APPEND_UTF8(&sub, "db", p->parent_db);
    BSON_APPEND_UTF8(&sub, "collection", p->parent_collection);
    BSON_APPEND_UTF8(&sub, "command", p->parent_command);
    BSON_APPEND_UTF8(&sub, "shape", p->parent_shape);
    bson_append_document_end(doc, &sub);
    BSON_APPEND_DOCUMENT_BEGIN(doc, "child", &sub);
    BSON_APPEND_UTF8(&sub, "db", p->child_db);
    BSON_APPEND_UTF8(&sub, "collection", p->child_collection);
    BSON_APPEND_UTF8(&sub, "command", p->child_command);
    BSON_APPEND_UTF8(&sub, "shape", p->child_shape);
    BSON_APPEND_UTF8(&sub, "key", p->child_key ? p->child_key : "");
    bson_append_document_end(doc, &sub);
    if (p->field)
        BSON_APPEND_UTF8(doc, "field", p->field);
    else
        BSON_APPEND_NULL(doc, "field");
    BSON_APPEND_UTF8(doc, "confidence", p->field ? "high" : "medium");
    BSON_APPEND_INT64(doc, "occurrences", (int64_t)p->occurrences);
    BSON_APPEND_INT64(doc, "child_commands", (int64_t)p->children);
    BSON_APPEND_DOUBLE(doc, "total_child_ms", mt_json_ms(p->child_ns));
    BSON_APPEND_DOUBLE(doc, "avg_child_ms",
                       p->occurrences ? mt_json_ms(p->child_ns / p->occurrences) : 0.0);
    BSON_APPEND_INT64(doc, "example_window", (int64_t)p->example_window);
    BSON_APPEND_UTF8(doc, "example_finding", p->example_finding);
    BSON_APPEND_UTF8(doc, "fix", p->fix ? p->fix : "");
    BSON_APPEND_UTF8(doc, "first_seen", mt_clock_iso8601(p->first_ms, iso));
    BSON_APPEND_UTF8(doc, "last_seen", mt_clock_iso8601(p->last_ms, iso));
}

void mt_findings_bson(const mt_findings_t *f, bson_t *doc)
{
    bson_t arr, sub;
    char k[16];
    const char *key;
    BSON_APPEND_ARRAY_BEGIN(doc, "findings", &arr);
    for (size_t i = 0; i < f->count; i++) {
        const bson_t *fd = mt_findings_get(f, f->count - 1 - i);
        bson_uint32_to_string((uint32_t)i, &key, k, sizeof k);
        bson_append_document(&arr, key, -1, fd);
    }
    bson_append_array_end(doc, &arr);
    size_t n = 0;
    const mt_findings_pattern_t **ps = mt_findings_patterns_sorted(f, &n);
    BSON_APPEND_ARRAY_BEGIN(doc, "patterns", &arr);
    for (size_t i = 0; i < n; i++) {
        bson_uint32_to_string((uint32_t)i, &key, k, sizeof k);
        BSON_APPEND_DOCUMENT_BEGIN(&arr, key, &sub);
        BSON_APPEND_INT32(&sub, "rank", (int32_t)(i + 1));
        mt_findings_pattern_bson(ps[i], &sub);
        bson_append_document_end(&arr, &sub);
    }
    bson_append_array_end(doc, &arr);
    bson_free(ps);
}
