/*
 * shapes: the registry returns one stable entry per key, never allocates on
 * a hit, stays within max_shapes with the rest under "<other>", and sorts by
 * total time. Also checked end to end through /api/stats.
 */
#include "hash.h"
#include "shapes.h"
#include "stats_test_util.h"

/* A key with a stand-in shape id (the decode step's structural hash is
 * tested with the views, in test_shape.c). */
static mt_shapes_key_t key_of(const char *db, const char *coll, const char *shape)
{
    mt_shapes_key_t k = {db, coll, "find", mt_hash_finish(mt_hash_str(MT_HASH_SEED, shape))};
    return k;
}

/* What stats does: look up by id, render and add only when new. */
static mt_shape_entry_t *get(mt_shapes_t *reg, const char *db, const char *coll, const char *shape,
                             bool *created)
{
    mt_shapes_key_t k = key_of(db, coll, shape);
    uint64_t h = mt_shapes_hash(&k);
    mt_shape_entry_t *e = mt_shapes_find(reg, h, &k);
    if (created)
        *created = false;
    return e ? e : mt_shapes_add(reg, h, &k, shape, created);
}

Test(shapes, same_key_same_entry)
{
    mt_shapes_t reg;
    mt_shapes_init(&reg, 100);
    bool created = false;
    mt_shapes_key_t k = key_of("db", "c", "{\"_id\": \"?\"}");
    cr_assert_null(mt_shapes_find(&reg, mt_shapes_hash(&k), &k), "nothing before the first");
    mt_shape_entry_t *a = get(&reg, "db", "c", "{\"_id\": \"?\"}", &created);
    cr_assert(created);
    mt_shape_entry_t *b = get(&reg, "db", "c", "{\"_id\": \"?\"}", &created);
    cr_assert_not(created);
    cr_assert_eq(a, b);
    cr_assert_eq(mt_shapes_find(&reg, mt_shapes_hash(&k), &k), a);
    cr_assert_str_eq(a->shape, "{\"_id\": \"?\"}");
    cr_assert_str_eq(a->collection, "c");
    cr_assert_eq(a->shape_id, k.shape_id);
    cr_assert_eq(mt_shapes_count(&reg), 1);
    mt_shapes_clear(&reg);
}

Test(shapes, key_parts_do_not_run_together)
{
    mt_shapes_t reg;
    mt_shapes_init(&reg, 100);
    mt_shapes_key_t k1 = key_of("ab", "c", "{}"), k2 = key_of("a", "bc", "{}");
    uint64_t h1 = mt_shapes_hash(&k1), h2 = mt_shapes_hash(&k2);
    cr_assert_neq(h1, h2);
    mt_shape_entry_t *a = mt_shapes_add(&reg, h1, &k1, "{}", NULL);
    mt_shape_entry_t *b = mt_shapes_add(&reg, h2, &k2, "{}", NULL);
    cr_assert_neq(a, b);
    /* Even with a forced equal hash, the names and the shape id decide. */
    cr_assert_null(mt_shapes_find(&reg, h1, &k2));
    mt_shapes_key_t k3 = k1;
    k3.shape_id ^= 1;
    cr_assert_null(mt_shapes_find(&reg, h1, &k3));
    cr_assert_eq(mt_shapes_find(&reg, h1, &k1), a);
    cr_assert_eq(mt_shapes_count(&reg), 2);
    mt_shapes_clear(&reg);
}

Test(shapes, many_entries_survive_growth)
{
    mt_shapes_t reg;
    mt_shapes_init(&reg, 5000);
    mt_shape_entry_t *e[3000];
    char shape[64];
    for (int i = 0; i < 3000; i++) {
        snprintf(shape, sizeof shape, "{\"f%d\": \"?\"}", i);
        e[i] = get(&reg, "db", "c", shape, NULL);
        cr_assert_not_null(e[i]);
    }
    for (int i = 0; i < 3000; i++) {
        snprintf(shape, sizeof shape, "{\"f%d\": \"?\"}", i);
        cr_assert_eq(get(&reg, "db", "c", shape, NULL), e[i]);
    }
    cr_assert_eq(mt_shapes_count(&reg), 3000);
    mt_shapes_clear(&reg);
}

Test(shapes, bounded_with_other)
{
    mt_shapes_t reg;
    mt_shapes_init(&reg, 3);
    const char *colls[] = {"a", "b", "c", "d", "e"};
    mt_shape_entry_t *e[5];
    for (int i = 0; i < 5; i++)
        e[i] = get(&reg, "db", colls[i], "{}", NULL);
    cr_assert_not(e[0]->overflow);
    cr_assert_not(e[2]->overflow);
    cr_assert(e[3]->overflow);
    cr_assert_eq(e[3], e[4]);
    cr_assert_str_eq(e[3]->shape, "<other>");
    /* Known keys still resolve to their own entry once full. */
    cr_assert_eq(get(&reg, "db", "a", "{}", NULL), e[0]);
    cr_assert_eq(reg.count, 3);
    cr_assert_eq(mt_shapes_count(&reg), 4);
    mt_shapes_clear(&reg);
}

Test(shapes, sorted_by_total_time)
{
    mt_shapes_t reg;
    mt_shapes_init(&reg, 10);
    const char *colls[] = {"slow", "fast", "mid"};
    const uint64_t t[] = {9000000, 1000, 50000};
    for (int i = 0; i < 3; i++) {
        mt_shape_entry_t *e = get(&reg, "db", colls[i], "{}", NULL);
        mt_hist_record(&e->latency, t[i]);
    }
    size_t n;
    mt_shape_entry_t **s = mt_shapes_sorted(&reg, &n);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(s[0]->collection, "slow");
    cr_assert_str_eq(s[1]->collection, "mid");
    cr_assert_str_eq(s[2]->collection, "fast");
    bson_free(s);
    mt_shapes_clear(&reg);
}

Test(shapes, api_stats_counts_overflow_under_other)
{
    mt_stats_config_t cfg;
    mt_stats_config_defaults(&cfg);
    cfg.max_shapes = 2;
    mt_stats_t *st = mt_stats_new(&cfg, sc_now);
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:5000");
    const char *colls[] = {"a", "b", "c", "d", "c"};
    for (int i = 0; i < 5; i++) {
        sc_roundtrip(&k, sc_find("db", colls[i], fx_json("{\"x\": 1}"), false, NULL),
                     sc_cursor_reply("db.x", NULL, 0, 0, true), 1 * MS);
        sc_now += 500 * MS;
    }
    char *json = mt_stats_json(st, sc_now, 0);
    bson_t *doc = sc_parse(json);
    cr_assert_eq(sc_array_len(doc, "shapes"), 3);
    cr_assert_eq(sc_int(doc, "shapes_tracked"), 3);
    bool saw_other = false;
    for (int i = 0; i < 3; i++) {
        char path[64];
        snprintf(path, sizeof path, "shapes.%d.shape", i);
        if (strcmp(sc_str(doc, path), "<other>") == 0) {
            snprintf(path, sizeof path, "shapes.%d.count", i);
            cr_assert_eq(sc_int(doc, path), 3);
            saw_other = true;
        }
    }
    cr_assert(saw_other, "%s", json);
    bson_destroy(doc);
    bson_free(json);
    sc_close(&k);
    mt_stats_free(st);
}
