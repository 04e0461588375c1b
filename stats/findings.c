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
#include "finding.h"
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
    bson_free(p->suggestion);
}

void mt_findings_clear(mt_findings_t *f)
{
    for (size_t i = 0; i < MT_FINDINGS_KEEP; i++)
        if (f->ring[i])
            bson_destroy(f->ring[i]);
    for (size_t i = 0; i < f->npatterns; i++)
        pattern_free(&f->patterns[i]);
    bson_free(f->patterns);
    uint64_t next_id = f->next_id, added = f->added;
    mt_findings_init(f);
    f->next_id = next_id;
    f->added = added;
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
    if (p->hash != h || p->type != e->type)
        return false;
    for (int i = 0; i < MT_PK__COUNT; i++)
        if (!str_eq(p->key[i], e->key[i]))
            return false;
    return true;
}

/* The same parent and children (the field aside), of the same type. */
static bool same_loop(const mt_findings_pattern_t *p, const mt_findings_event_t *e)
{
    if (p->type != e->type)
        return false;
    for (int i = 0; i < MT_PK__COUNT; i++)
        if (i != MT_PK_FIELD && !str_eq(p->key[i], e->key[i]))
            return false;
    return true;
}

/* Copies the key strings of e into one buffer owned by p. */
static bool pattern_init(mt_findings_pattern_t *p, uint64_t h, const mt_findings_event_t *e)
{
    size_t total = 0;
    char *w;

    for (int i = 0; i < MT_PK__COUNT; i++)
        total += (e->key[i] ? strlen(e->key[i]) : 0) + 1;
    memset(p, 0, sizeof *p);
    p->keybuf = bson_malloc(total);
    w = p->keybuf;
    for (int i = 0; i < MT_PK__COUNT; i++) {
        if (!e->key[i])
            continue;
        size_t l = strlen(e->key[i]) + 1;
        memcpy(w, e->key[i], l);
        p->key[i] = w;
        w += l;
    }
    p->type = e->type;
    p->high = e->high;
    p->hash = h;
    p->first_ms = e->now_ms;
    return true;
}

static mt_findings_pattern_t *pattern_for(mt_findings_t *f, const mt_findings_event_t *e)
{
    uint64_t h = mt_hash_bytes(MT_HASH_SEED, &e->type, sizeof e->type);
    for (int i = 0; i < MT_PK__COUNT; i++)
        h = mt_hash_str(h, e->key[i]);
    for (size_t i = 0; i < f->npatterns; i++)
        if (pattern_matches(&f->patterns[i], h, e))
            return &f->patterns[i];
    /* One loop, one pattern: a medium finding (no field found, e.g. a pooled
     * connection mixed two requests) joins the high pattern of the same
     * parent and children, and a high one takes over a medium pattern. */
    for (size_t i = 0; i < f->npatterns; i++) {
        mt_findings_pattern_t *p = &f->patterns[i];
        if (!same_loop(p, e))
            continue;
        if (!e->high && p->high)
            return p;
        if (e->high && !p->high) {
            mt_findings_pattern_t fresh;
            if (!pattern_init(&fresh, h, e))
                return NULL;
            fresh.occurrences = p->occurrences;
            fresh.children = p->children;
            fresh.child_ns = p->child_ns;
            fresh.first_ms = p->first_ms;
            pattern_free(p);
            *p = fresh;
            return p;
        }
    }

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
        f->added++;
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
    bson_free(p->suggestion);
    p->suggestion = bson_strdup(ev->suggestion ? ev->suggestion : "");
}

uint64_t mt_findings_seq(const mt_findings_t *f)
{
    return f->added;
}

uint64_t mt_findings_floor(const mt_findings_t *f)
{
    return f->added - f->count;
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
    const char *const *k = p->key;

    BSON_APPEND_UTF8(doc, "type", mt_finding_type_str(p->type));
    BSON_APPEND_UTF8(doc, "confidence", p->high ? "high" : "medium");
    if (k[MT_PK_PARENT_SHAPE]) {
        BSON_APPEND_DOCUMENT_BEGIN(doc, "parent", &sub);
        mt_finding_shape_fields(&sub, k[MT_PK_PARENT_DB], k[MT_PK_PARENT_COLLECTION],
                                k[MT_PK_PARENT_COMMAND], k[MT_PK_PARENT_SHAPE]);
        bson_append_document_end(doc, &sub);
    } else {
        BSON_APPEND_NULL(doc, "parent");
    }
    BSON_APPEND_DOCUMENT_BEGIN(doc, "children", &sub);
    mt_finding_shape_fields(&sub, k[MT_PK_CHILD_DB], k[MT_PK_CHILD_COLLECTION],
                            k[MT_PK_CHILD_COMMAND], k[MT_PK_CHILD_SHAPE]);
    mt_finding_str_or_null(&sub, "key", k[MT_PK_CHILD_KEY]);
    BSON_APPEND_INT64(&sub, "count", (int64_t)p->children);
    BSON_APPEND_DOUBLE(&sub, "duration_ms", mt_json_ms(p->child_ns));
    BSON_APPEND_DOUBLE(&sub, "avg_duration_ms",
                       p->occurrences ? mt_json_ms(p->child_ns / p->occurrences) : 0.0);
    bson_append_document_end(doc, &sub);
    mt_finding_str_or_null(doc, "field", k[MT_PK_FIELD]);
    BSON_APPEND_INT64(doc, "occurrences", (int64_t)p->occurrences);
    BSON_APPEND_INT64(doc, "example_window", (int64_t)p->example_window);
    BSON_APPEND_UTF8(doc, "example_finding", p->example_finding);
    BSON_APPEND_UTF8(doc, "suggestion", p->suggestion ? p->suggestion : "");
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
