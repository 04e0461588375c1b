/*
 * shapes: per-shape accounting records in a chained hash table that doubles
 * as it fills (only when a new shape arrives), capped at max_shapes.
 */
#include "shapes.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "hash.h"
#include "json.h"

#define INITIAL_BUCKETS 64

void mt_shapes_init(mt_shapes_t *reg, size_t max_shapes)
{
    memset(reg, 0, sizeof *reg);
    reg->max = max_shapes;
}

void mt_shapes_clear(mt_shapes_t *reg)
{
    for (size_t i = 0; i < reg->nbuckets; i++) {
        mt_shape_entry_t *e = reg->buckets[i];
        while (e) {
            mt_shape_entry_t *next = e->next;
            bson_free(e);
            e = next;
        }
    }
    bson_free(reg->buckets);
    bson_free(reg->other);
    size_t max = reg->max;
    mt_shapes_init(reg, max);
}

uint64_t mt_shapes_hash(const char *db, const char *collection, const char *command,
                        const char *shape)
{
    uint64_t h = MT_HASH_SEED;
    h = mt_hash_str(h, db);
    h = mt_hash_str(h, collection);
    h = mt_hash_str(h, command);
    h = mt_hash_str(h, shape);
    return mt_hash_finish(h);
}

static mt_shape_entry_t *entry_new(uint64_t hash, const char *db, const char *collection,
                                   const char *command, const char *shape)
{
    size_t ldb = strlen(db) + 1, lcoll = strlen(collection) + 1, lcmd = strlen(command) + 1,
           lshape = strlen(shape) + 1;
    mt_shape_entry_t *e = bson_malloc0(sizeof *e + ldb + lcoll + lcmd + lshape);
    if (!e)
        return NULL;
    char *p = e->keybuf;
    memcpy(p, db, ldb);
    e->db = p;
    p += ldb;
    memcpy(p, collection, lcoll);
    e->collection = p;
    p += lcoll;
    memcpy(p, command, lcmd);
    e->command = p;
    p += lcmd;
    memcpy(p, shape, lshape);
    e->shape = p;
    e->hash = hash;
    e->first_seen_ms = -1;
    mt_hist_init(&e->latency);
    return e;
}

static bool grow(mt_shapes_t *reg)
{
    size_t n = reg->nbuckets ? reg->nbuckets * 2 : INITIAL_BUCKETS;
    mt_shape_entry_t **b = bson_malloc0(n * sizeof *b);
    if (!b)
        return false;
    for (size_t i = 0; i < reg->nbuckets; i++) {
        mt_shape_entry_t *e = reg->buckets[i];
        while (e) {
            mt_shape_entry_t *next = e->next;
            size_t j = e->hash & (n - 1);
            e->next = b[j];
            b[j] = e;
            e = next;
        }
    }
    bson_free(reg->buckets);
    reg->buckets = b;
    reg->nbuckets = n;
    return true;
}

static mt_shape_entry_t *other_entry(mt_shapes_t *reg)
{
    if (!reg->other) {
        reg->other = entry_new(0, "", "", "", MT_SHAPES_OTHER);
        if (reg->other)
            reg->other->overflow = true;
    }
    return reg->other;
}

mt_shape_entry_t *mt_shapes_get(mt_shapes_t *reg, uint64_t hash, const char *db,
                                const char *collection, const char *command, const char *shape,
                                bool *created)
{
    if (created)
        *created = false;
    if (reg->nbuckets) {
        for (mt_shape_entry_t *e = reg->buckets[hash & (reg->nbuckets - 1)]; e; e = e->next) {
            if (e->hash == hash && strcmp(e->shape, shape) == 0 &&
                strcmp(e->collection, collection) == 0 && strcmp(e->command, command) == 0 &&
                strcmp(e->db, db) == 0)
                return e;
        }
    }
    if (reg->count >= reg->max) {
        bool fresh = reg->other == NULL;
        mt_shape_entry_t *o = other_entry(reg);
        if (created)
            *created = fresh && o != NULL;
        return o;
    }
    /* Keep chains short: at most one entry per bucket on average. */
    if (reg->count >= reg->nbuckets && !grow(reg))
        return NULL;
    mt_shape_entry_t *e = entry_new(hash, db, collection, command, shape);
    if (!e)
        return NULL;
    size_t j = hash & (reg->nbuckets - 1);
    e->next = reg->buckets[j];
    reg->buckets[j] = e;
    reg->count++;
    if (created)
        *created = true;
    return e;
}

size_t mt_shapes_count(const mt_shapes_t *reg)
{
    return reg->count + (reg->other ? 1 : 0);
}

static int by_sum_desc(const void *a, const void *b)
{
    const mt_shape_entry_t *x = *(mt_shape_entry_t *const *)a;
    const mt_shape_entry_t *y = *(mt_shape_entry_t *const *)b;
    if (x->latency.sum_ns != y->latency.sum_ns)
        return x->latency.sum_ns > y->latency.sum_ns ? -1 : 1;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    /* Deterministic order for ties. */
    int c = strcmp(x->db, y->db);
    if (!c)
        c = strcmp(x->collection, y->collection);
    if (!c)
        c = strcmp(x->command, y->command);
    if (!c)
        c = strcmp(x->shape, y->shape);
    return c;
}

mt_shape_entry_t **mt_shapes_sorted(const mt_shapes_t *reg, size_t *n)
{
    size_t total = mt_shapes_count(reg);
    *n = 0;
    if (total == 0)
        return NULL;
    mt_shape_entry_t **arr = bson_malloc(total * sizeof *arr);
    if (!arr)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < reg->nbuckets; i++)
        for (mt_shape_entry_t *e = reg->buckets[i]; e; e = e->next)
            arr[k++] = e;
    if (reg->other)
        arr[k++] = reg->other;
    qsort(arr, k, sizeof *arr, by_sum_desc);
    *n = k;
    return arr;
}

void mt_shapes_entry_bson(const mt_shape_entry_t *e, bson_t *doc)
{
    char iso[MT_CLOCK_ISO_LEN];
    bson_t lat;
    BSON_APPEND_UTF8(doc, "db", e->db);
    BSON_APPEND_UTF8(doc, "collection", e->collection);
    BSON_APPEND_UTF8(doc, "command", e->command);
    BSON_APPEND_UTF8(doc, "shape", e->shape);
    BSON_APPEND_INT64(doc, "count", (int64_t)e->count);
    BSON_APPEND_INT64(doc, "errors", (int64_t)e->errors);
    BSON_APPEND_INT64(doc, "docs_returned", (int64_t)e->docs_returned);
    BSON_APPEND_INT64(doc, "bytes_in", (int64_t)e->bytes_in);
    BSON_APPEND_INT64(doc, "bytes_out", (int64_t)e->bytes_out);
    BSON_APPEND_DOCUMENT_BEGIN(doc, "latency_ms", &lat);
    BSON_APPEND_DOUBLE(&lat, "min", mt_json_ms(mt_hist_min(&e->latency)));
    BSON_APPEND_DOUBLE(&lat, "p50", mt_json_ms(mt_hist_quantile(&e->latency, 0.50)));
    BSON_APPEND_DOUBLE(&lat, "p95", mt_json_ms(mt_hist_quantile(&e->latency, 0.95)));
    BSON_APPEND_DOUBLE(&lat, "p99", mt_json_ms(mt_hist_quantile(&e->latency, 0.99)));
    BSON_APPEND_DOUBLE(&lat, "max", mt_json_ms(e->latency.max_ns));
    BSON_APPEND_DOUBLE(&lat, "sum", mt_json_ms(e->latency.sum_ns));
    bson_append_document_end(doc, &lat);
    BSON_APPEND_UTF8(doc, "first_seen", mt_clock_iso8601(e->first_seen_ms, iso));
    BSON_APPEND_UTF8(doc, "last_seen", mt_clock_iso8601(e->last_seen_ms, iso));
}
