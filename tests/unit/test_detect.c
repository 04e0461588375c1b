/*
 * test_detect: SPEC sections 4 (segments) and 5a over windows built from
 * real message bytes: count, distinct and $match-first aggregate children;
 * per-document $in lists; compound lookups; nested loops; write loops;
 * repeated reads; each rule at its boundary (threshold - 1 and threshold).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "detect.h"
#include "stats_test_util.h"

#define T 5 /* --n1-threshold */

static mt_stats_t *st;
static sc_findings_t seen;

static void setup(void)
{
    mt_stats_config_t cfg;
    mt_stats_config_defaults(&cfg);
    cfg.n1_threshold = T;
    cfg.on_finding = sc_on_finding;
    cfg.on_finding_data = &seen;
    st = mt_stats_new(&cfg, sc_now);
    cr_assert_not_null(st);
}

static void teardown(void)
{
    mt_stats_free(st);
    free(seen.last);
    free(seen.last_summary);
    memset(&seen, 0, sizeof seen);
}

TestSuite(detect, .init = setup, .fini = teardown);

static void settle(void)
{
    sc_now += 500 * MS;
    mt_stats_tick(st, sc_now);
}

/* Every finding so far; the caller destroys it. */
static bson_t *all_findings(void)
{
    char *json = mt_stats_findings_json(st);
    bson_t *doc = sc_parse(json);
    bson_free(json);
    return doc;
}

static uint32_t count_type(const bson_t *all, const char *type)
{
    bson_iter_t it, f;
    uint32_t n = 0;
    cr_assert(bson_iter_init_find(&it, all, "findings") && bson_iter_recurse(&it, &f));
    while (bson_iter_next(&f)) {
        bson_iter_t t;
        if (bson_iter_recurse(&f, &t) && bson_iter_find(&t, "type") &&
            strcmp(bson_iter_utf8(&t, NULL), type) == 0)
            n++;
    }
    return n;
}

/* A find returning n posts {_id: post i, author: user (i % nusers), tags: [tag i, tag i+1]}. */
static void send_posts(sc_conn_t *k, uint32_t n, uint32_t nusers)
{
    bson_t *docs[100];
    for (uint32_t i = 0; i < n; i++) {
        bson_oid_t oid;
        bson_t tags;
        docs[i] = bson_new();
        sc_oid(&oid, 1000 + i);
        BSON_APPEND_OID(docs[i], "_id", &oid);
        sc_oid(&oid, 2000 + i % nusers);
        BSON_APPEND_OID(docs[i], "author", &oid);
        BSON_APPEND_ARRAY_BEGIN(docs[i], "tags", &tags);
        sc_oid(&oid, 3000 + i);
        BSON_APPEND_OID(&tags, "0", &oid);
        sc_oid(&oid, 3000 + i + 1);
        BSON_APPEND_OID(&tags, "1", &oid);
        bson_append_array_end(docs[i], &tags);
    }
    sc_roundtrip(k, sc_find("blog", "post", bson_new(), false, NULL),
                 sc_cursor_reply("blog.post", docs, n, 0, true), 1 * MS);
    sc_free_docs(docs, n);
}

static bson_t *oid_filter(const char *field, uint32_t n)
{
    bson_oid_t oid;
    bson_t *f = bson_new();
    sc_oid(&oid, n);
    BSON_APPEND_OID(f, field, &oid);
    return f;
}

static bson_t *count_reply(void)
{
    return fx_json("{\"n\": 3, \"ok\": 1.0}");
}

/* A parent returns a document malformed inside, its framing intact: the
 * reply is accounted and forwarded as it is; as evidence that document is
 * skipped whole (read as far as it goes, its author would explain its
 * child), and the others still name the field the children look up. */
Test(detect, a_malformed_returned_document_is_no_evidence)
{
    enum { N = 8 };
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    bson_t *docs[N];
    for (uint32_t i = 0; i < N; i++) {
        bson_oid_t oid;
        docs[i] = bson_new();
        sc_oid(&oid, 1000 + i);
        BSON_APPEND_OID(docs[i], "_id", &oid);
        sc_oid(&oid, 2000 + i);
        BSON_APPEND_OID(docs[i], "author", &oid);
        BSON_APPEND_INT32(docs[i], "n", (int32_t)i);
    }
    bson_t *reply = sc_cursor_reply("blog.post", docs, N, 0, true);
    sc_free_docs(docs, N);
    bson_t *find = sc_find("blog", "post", bson_new(), false, NULL);
    int32_t rid = sc_send(&k, find);
    bson_destroy(find);
    sc_now += 1 * MS;
    size_t len;
    uint8_t *m = fx_op_msg(0, k.next_reply_rid++, rid, reply, NULL, NULL, 0, &len);
    bson_destroy(reply);
    uint8_t *n3 = memmem(m, len, "\x10n\x00\x03\x00\x00\x00", 7);
    cr_assert_not_null(n3);
    *n3 = 0x42; /* document 3: no such BSON type, after its author */
    sc_deliver(st, k.c, false, m, len, sc_now);
    free(m);
    for (uint32_t i = 0; i < N; i++)
        sc_roundtrip(&k, sc_find("blog", "user", sc_id_filter(2000 + i), true, NULL),
                     sc_one_doc_reply("blog.user", 2000 + i), 300 * US);
    settle();
    sc_close(&k);

    bson_t *all = all_findings();
    cr_assert_eq(count_type(all, "n_plus_one"), 1);
    cr_assert_eq(sc_int(all, "findings.0.parent.docs_returned"), N, "the reply was accounted");
    cr_assert_eq(sc_int(all, "findings.0.children.count"), N);
    cr_assert_str_eq(sc_str(all, "findings.0.field"), "author");
    cr_assert_eq(sc_int(all, "findings.0.matched"), N - 1, "document 3 explains nothing");
    bson_destroy(all);
}

/* ---- more kinds of children --------------------------------------------- */

static void count_loop(uint32_t n)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    send_posts(&k, 20, 20);
    for (uint32_t i = 0; i < n; i++) {
        bson_t *cmd = bson_new();
        BSON_APPEND_UTF8(cmd, "count", "comment");
        bson_t *q = oid_filter("post", 1000 + i);
        BSON_APPEND_DOCUMENT(cmd, "query", q);
        bson_destroy(q);
        BSON_APPEND_UTF8(cmd, "$db", "blog");
        sc_roundtrip(&k, cmd, count_reply(), 300 * US);
    }
    settle();
    sc_close(&k);
}

Test(detect, count_per_row_is_an_n_plus_one)
{
    count_loop(T);
    bson_t *all = all_findings();
    cr_assert_eq(count_type(all, "n_plus_one"), 1);
    cr_assert_str_eq(sc_str(all, "findings.0.children.command"), "count");
    cr_assert_str_eq(sc_str(all, "findings.0.children.key"), "post");
    cr_assert_str_eq(sc_str(all, "findings.0.field"), "_id");
    cr_assert_str_eq(sc_str(all, "findings.0.confidence"), "high");
    cr_assert_not_null(strstr(sc_str(all, "findings.0.suggestion"), "$group"), "%s",
                       sc_str(all, "findings.0.suggestion"));
    bson_destroy(all);
}

Test(detect, count_below_the_threshold_is_nothing)
{
    count_loop(T - 1);
    bson_t *all = all_findings();
    cr_assert_eq(sc_array_len(all, "findings"), 0);
    bson_destroy(all);
}

Test(detect, match_group_aggregate_and_distinct_children)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    send_posts(&k, 20, 20);
    for (uint32_t i = 0; i < 10; i++) {
        /* PyMongo's count_documents */
        bson_t *cmd = bson_new(), pipe, stage, m, g, sum;
        bson_oid_t oid;
        BSON_APPEND_UTF8(cmd, "aggregate", "like");
        BSON_APPEND_ARRAY_BEGIN(cmd, "pipeline", &pipe);
        BSON_APPEND_DOCUMENT_BEGIN(&pipe, "0", &stage);
        BSON_APPEND_DOCUMENT_BEGIN(&stage, "$match", &m);
        sc_oid(&oid, 1000 + i);
        BSON_APPEND_OID(&m, "post", &oid);
        bson_append_document_end(&stage, &m);
        bson_append_document_end(&pipe, &stage);
        BSON_APPEND_DOCUMENT_BEGIN(&pipe, "1", &stage);
        BSON_APPEND_DOCUMENT_BEGIN(&stage, "$group", &g);
        BSON_APPEND_INT32(&g, "_id", 1);
        BSON_APPEND_DOCUMENT_BEGIN(&g, "n", &sum);
        BSON_APPEND_INT32(&sum, "$sum", 1);
        bson_append_document_end(&g, &sum);
        bson_append_document_end(&stage, &g);
        bson_append_document_end(&pipe, &stage);
        bson_append_array_end(cmd, &pipe);
        BSON_APPEND_UTF8(cmd, "$db", "blog");
        sc_roundtrip(&k, cmd, sc_cursor_reply("blog.like", NULL, 0, 0, true), 300 * US);
    }
    for (uint32_t i = 0; i < 10; i++) {
        bson_t *cmd = bson_new();
        BSON_APPEND_UTF8(cmd, "distinct", "comment");
        BSON_APPEND_UTF8(cmd, "key", "author");
        bson_t *q = oid_filter("post", 1000 + i);
        BSON_APPEND_DOCUMENT(cmd, "query", q);
        bson_destroy(q);
        BSON_APPEND_UTF8(cmd, "$db", "blog");
        sc_roundtrip(&k, cmd, fx_json("{\"values\": [], \"ok\": 1.0}"), 300 * US);
    }
    settle();
    bson_t *all = all_findings();
    cr_assert_eq(count_type(all, "n_plus_one"), 2);
    cr_assert_str_eq(sc_str(all, "findings.0.children.command"), "aggregate");
    cr_assert_eq(sc_int(all, "findings.0.children.count"), 10);
    cr_assert_not_null(strstr(sc_str(all, "findings.0.suggestion"), "$group"));
    cr_assert_str_eq(sc_str(all, "findings.1.children.command"), "distinct");
    cr_assert_str_eq(sc_str(all, "findings.1.field"), "_id");
    bson_destroy(all);
    sc_close(&k);
}

/* ---- per-document $in --------------------------------------------------- */

static void tags_per_post(uint32_t n, bool one_batch)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    send_posts(&k, 20, 20);
    for (uint32_t i = 0; i < (one_batch ? 1 : n); i++) {
        bson_t *f = bson_new(), id, in;
        bson_oid_t oid;
        BSON_APPEND_DOCUMENT_BEGIN(f, "_id", &id);
        BSON_APPEND_ARRAY_BEGIN(&id, "$in", &in);
        for (uint32_t t = 0; t < (one_batch ? n + 1 : 2); t++) {
            char key[16];
            const char *kp;
            bson_uint32_to_string(t, &kp, key, sizeof key);
            /* the post's tags, in the other order than stored */
            sc_oid(&oid, one_batch ? 3000 + t : 3000 + i + 1 - t);
            BSON_APPEND_OID(&in, kp, &oid);
        }
        bson_append_array_end(&id, &in);
        bson_append_document_end(f, &id);
        sc_roundtrip(&k, sc_find("blog", "tag", f, false, NULL),
                     sc_cursor_reply("blog.tag", NULL, 0, 0, true), 300 * US);
    }
    settle();
    sc_close(&k);
}

Test(detect, one_in_per_document_is_an_n_plus_one)
{
    tags_per_post(T, false);
    bson_t *all = all_findings();
    cr_assert_eq(count_type(all, "n_plus_one"), 1);
    cr_assert(bson_has_field(all, "findings.0.children.in_lists"));
    cr_assert_str_eq(sc_str(all, "findings.0.children.key"), "_id");
    cr_assert_str_eq(sc_str(all, "findings.0.field"), "tags");
    cr_assert_str_eq(sc_str(all, "findings.0.confidence"), "high");
    bson_destroy(all);
}

Test(detect, one_in_with_every_value_is_a_batch)
{
    tags_per_post(T, true);
    bson_t *all = all_findings();
    cr_assert_eq(sc_array_len(all, "findings"), 0);
    bson_destroy(all);
}

/* ---- compound lookups --------------------------------------------------- */

static void likes_per_post(bool user_changes)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    send_posts(&k, 20, 20);
    for (uint32_t i = 0; i < 10; i++) {
        bson_t *f = oid_filter("user", user_changes ? 2000 + i : 7);
        bson_oid_t oid;
        sc_oid(&oid, 1000 + i);
        BSON_APPEND_OID(f, "post", &oid);
        sc_roundtrip(&k, sc_find("blog", "like", f, true, NULL),
                     sc_cursor_reply("blog.like", NULL, 0, 0, true), 300 * US);
    }
    settle();
    sc_close(&k);
}

Test(detect, compound_lookup_on_the_changing_field)
{
    likes_per_post(false);
    bson_t *all = all_findings();
    cr_assert_eq(count_type(all, "n_plus_one"), 1);
    cr_assert_str_eq(sc_str(all, "findings.0.children.key"), "post");
    cr_assert_eq(sc_array_len(all, "findings.0.children.constant_keys"), 1);
    cr_assert_str_eq(sc_str(all, "findings.0.children.constant_keys.0"), "user");
    cr_assert_str_eq(sc_str(all, "findings.0.field"), "_id");
    bson_destroy(all);
}

Test(detect, compound_lookup_with_both_fields_changing_is_nothing)
{
    likes_per_post(true);
    bson_t *all = all_findings();
    cr_assert_eq(count_type(all, "n_plus_one"), 0);
    bson_destroy(all);
}

/* ---- nested loops ------------------------------------------------------- */

Test(detect, nested_loop_names_the_outer_finding)
{
    /* show -> channel -> network, lazily: each channel lookup is followed by
     * the lookup of its network */
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    bson_t *docs[30];
    for (uint32_t i = 0; i < 30; i++) {
        bson_oid_t oid;
        docs[i] = bson_new();
        sc_oid(&oid, 100 + i);
        BSON_APPEND_OID(docs[i], "_id", &oid);
        sc_oid(&oid, 200 + i % 10);
        BSON_APPEND_OID(docs[i], "channel", &oid);
    }
    sc_roundtrip(&k, sc_find("tv", "show", bson_new(), false, NULL),
                 sc_cursor_reply("tv.show", docs, 30, 0, true), 1 * MS);
    sc_free_docs(docs, 30);
    for (uint32_t i = 0; i < 30; i++) {
        bson_t *ch = bson_new();
        bson_oid_t oid;
        sc_oid(&oid, 200 + i % 10);
        BSON_APPEND_OID(ch, "_id", &oid);
        sc_oid(&oid, 300 + i % 10);
        BSON_APPEND_OID(ch, "network", &oid);
        sc_roundtrip(&k, sc_find("tv", "channel", oid_filter("_id", 200 + i % 10), true, NULL),
                     sc_cursor_reply("tv.channel", &ch, 1, 0, true), 300 * US);
        bson_destroy(ch);
        sc_roundtrip(&k, sc_find("tv", "network", oid_filter("_id", 300 + i % 10), true, NULL),
                     sc_one_doc_reply("tv.network", 300 + i % 10), 300 * US);
    }
    settle();
    bson_t *all = all_findings();
    cr_assert_eq(count_type(all, "n_plus_one"), 2);
    cr_assert_str_eq(sc_str(all, "findings.0.children.collection"), "channel");
    cr_assert_str_eq(sc_str(all, "findings.0.field"), "channel");
    cr_assert_str_eq(sc_str(all, "findings.1.children.collection"), "network");
    cr_assert_str_eq(sc_str(all, "findings.1.parent.collection"), "channel");
    cr_assert_eq(sc_int(all, "findings.1.parent.docs_returned"), 30);
    cr_assert_str_eq(sc_str(all, "findings.1.field"), "network");
    cr_assert_str_eq(sc_str(all, "findings.1.nested_in"), sc_str(all, "findings.0.id"));
    bson_destroy(all);
    sc_close(&k);
}

/* ---- write loops -------------------------------------------------------- */

static bson_t *update_by_id(uint32_t n)
{
    bson_t *cmd = bson_new(), ups, st1, u, set;
    BSON_APPEND_UTF8(cmd, "update", "post");
    BSON_APPEND_ARRAY_BEGIN(cmd, "updates", &ups);
    BSON_APPEND_DOCUMENT_BEGIN(&ups, "0", &st1);
    bson_t *q = oid_filter("_id", n);
    BSON_APPEND_DOCUMENT(&st1, "q", q);
    bson_destroy(q);
    BSON_APPEND_DOCUMENT_BEGIN(&st1, "u", &u);
    BSON_APPEND_DOCUMENT_BEGIN(&u, "$set", &set);
    BSON_APPEND_BOOL(&set, "seen", true);
    bson_append_document_end(&u, &set);
    bson_append_document_end(&st1, &u);
    bson_append_document_end(&ups, &st1);
    bson_append_array_end(cmd, &ups);
    BSON_APPEND_UTF8(cmd, "$db", "blog");
    return cmd;
}

static void update_loop(uint32_t n, bool with_parent)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    if (with_parent)
        send_posts(&k, 20, 20);
    for (uint32_t i = 0; i < n; i++)
        sc_roundtrip(&k, update_by_id(1000 + i), fx_json("{\"n\": 1, \"ok\": 1.0}"), 300 * US);
    settle();
    sc_close(&k);
}

Test(detect, update_loop_with_the_keys_read_before)
{
    update_loop(T, true);
    bson_t *all = all_findings();
    cr_assert_eq(count_type(all, "write_loop"), 1);
    cr_assert_str_eq(sc_str(all, "findings.0.type"), "write_loop");
    cr_assert_str_eq(sc_str(all, "findings.0.confidence"), "high");
    cr_assert_str_eq(sc_str(all, "findings.0.parent.collection"), "post");
    cr_assert_str_eq(sc_str(all, "findings.0.field"), "_id");
    cr_assert_str_eq(sc_str(all, "findings.0.children.command"), "update");
    cr_assert_str_eq(sc_str(all, "findings.0.children.key"), "_id");
    cr_assert_eq(sc_int(all, "findings.0.children.count"), T);
    cr_assert_not_null(strstr(sc_str(all, "findings.0.suggestion"), "bulk_write"));
    bson_destroy(all);
}

Test(detect, update_loop_without_a_read_is_medium)
{
    update_loop(T, false);
    bson_t *all = all_findings();
    cr_assert_eq(count_type(all, "write_loop"), 1);
    cr_assert_str_eq(sc_str(all, "findings.0.confidence"), "medium");
    cr_assert(sc_is_null(all, "findings.0.parent"));
    cr_assert(sc_is_null(all, "findings.0.field"));
    bson_destroy(all);
}

Test(detect, update_loop_below_the_threshold_is_nothing)
{
    update_loop(T - 1, true);
    bson_t *all = all_findings();
    cr_assert_eq(sc_array_len(all, "findings"), 0);
    bson_destroy(all);
}

Test(detect, single_inserts_are_a_loop_insert_many_is_not)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    for (uint32_t i = 0; i < T; i++) {
        bson_t *cmd = bson_new(), docs, d;
        BSON_APPEND_UTF8(cmd, "insert", "event");
        BSON_APPEND_ARRAY_BEGIN(cmd, "documents", &docs);
        BSON_APPEND_DOCUMENT_BEGIN(&docs, "0", &d);
        BSON_APPEND_INT32(&d, "i", (int32_t)i);
        bson_append_document_end(&docs, &d);
        bson_append_array_end(cmd, &docs);
        BSON_APPEND_UTF8(cmd, "$db", "blog");
        sc_roundtrip(&k, cmd, fx_json("{\"n\": 1, \"ok\": 1.0}"), 300 * US);
    }
    for (uint32_t i = 0; i < 2 * T; i++) {
        /* insert_many: many documents in one command, never a loop */
        bson_t *cmd = bson_new(), docs, d;
        BSON_APPEND_UTF8(cmd, "insert", "batch");
        BSON_APPEND_ARRAY_BEGIN(cmd, "documents", &docs);
        for (int j = 0; j < 3; j++) {
            char key[4] = {(char)('0' + j), 0};
            BSON_APPEND_DOCUMENT_BEGIN(&docs, key, &d);
            BSON_APPEND_INT32(&d, "j", j);
            bson_append_document_end(&docs, &d);
        }
        bson_append_array_end(cmd, &docs);
        BSON_APPEND_UTF8(cmd, "$db", "blog");
        sc_roundtrip(&k, cmd, fx_json("{\"n\": 3, \"ok\": 1.0}"), 300 * US);
    }
    settle();
    bson_t *all = all_findings();
    cr_assert_eq(count_type(all, "write_loop"), 1);
    cr_assert_str_eq(sc_str(all, "findings.0.children.collection"), "event");
    cr_assert(sc_is_null(all, "findings.0.children.key"));
    cr_assert(sc_is_null(all, "findings.0.parent"));
    cr_assert_not_null(strstr(sc_str(all, "findings.0.suggestion"), "insert_many"));
    bson_destroy(all);
    sc_close(&k);
}

/* ---- repeated reads ----------------------------------------------------- */

static void same_read(uint32_t n)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    for (uint32_t i = 0; i < n; i++)
        sc_roundtrip(&k, sc_find("blog", "user", oid_filter("_id", 7), true, NULL),
                     sc_one_doc_reply("blog.user", 7), 300 * US);
    settle();
    sc_close(&k);
}

Test(detect, the_same_read_again_and_again)
{
    same_read(T);
    bson_t *all = all_findings();
    cr_assert_eq(sc_array_len(all, "findings"), 1);
    cr_assert_str_eq(sc_str(all, "findings.0.type"), "repeated_read");
    cr_assert_str_eq(sc_str(all, "findings.0.confidence"), "high");
    cr_assert(sc_is_null(all, "findings.0.parent"));
    cr_assert(sc_is_null(all, "findings.0.field"));
    cr_assert(sc_is_null(all, "findings.0.children.key"));
    cr_assert_eq(sc_int(all, "findings.0.children.count"), T);
    cr_assert_not_null(strstr(sc_str(all, "findings.0.suggestion"), "once per request"));
    bson_destroy(all);
}

Test(detect, a_read_repeated_below_the_threshold_is_nothing)
{
    same_read(T - 1);
    bson_t *all = all_findings();
    cr_assert_eq(sc_array_len(all, "findings"), 0);
    bson_destroy(all);
}

Test(detect, an_n_plus_one_over_one_value_is_not_also_a_repeated_read)
{
    /* every post by the same author, looked up once per post */
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    send_posts(&k, 20, 1);
    for (uint32_t i = 0; i < 20; i++)
        sc_roundtrip(&k, sc_find("blog", "user", oid_filter("_id", 2000), true, NULL),
                     sc_one_doc_reply("blog.user", 2000), 300 * US);
    settle();
    bson_t *all = all_findings();
    cr_assert_eq(sc_array_len(all, "findings"), 1);
    cr_assert_str_eq(sc_str(all, "findings.0.type"), "n_plus_one");
    cr_assert_str_eq(sc_str(all, "findings.0.field"), "author");
    cr_assert_eq(sc_int(all, "findings.0.children.distinct_values"), 1);
    bson_destroy(all);
    sc_close(&k);
}

Test(detect, repeated_reads_among_many_distinct_ones_are_each_found)
{
    /* 300 questions asked once, three asked T + 2, T - 1 and T times,
     * interleaved: the counting table sees every one of them */
    static const uint32_t again[3] = {T + 2, T - 1, T};
    uint32_t asked[3] = {0};
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    for (uint32_t i = 0; i < 300; i++) {
        uint32_t q = i % 3;
        sc_roundtrip(&k, sc_find("blog", "user", oid_filter("_id", i), true, NULL),
                     sc_one_doc_reply("blog.user", i), 300 * US);
        if (i % 7 == 0 && asked[q] < again[q]) {
            asked[q]++;
            sc_roundtrip(&k, sc_find("blog", "user", oid_filter("_id", 90000 + q), true, NULL),
                         sc_one_doc_reply("blog.user", 90000 + q), 300 * US);
        }
    }
    settle();
    cr_assert_eq(asked[0] + asked[1] + asked[2], 3 * T + 1);
    bson_t *all = all_findings();
    cr_assert_eq(sc_array_len(all, "findings"), 2);
    cr_assert_eq(count_type(all, "repeated_read"), 2);
    int64_t a = sc_int(all, "findings.0.children.count"),
            b = sc_int(all, "findings.1.children.count");
    cr_assert(a + b == 2 * T + 2 && (a == T || b == T), "counts %lld and %lld", (long long)a,
              (long long)b);
    bson_destroy(all);
    sc_close(&k);
}

/* The detectors' sort against a plain stable insertion sort, on input in
 * order, in reverse, in runs and at random, with many equal keys. */
typedef struct {
    uint32_t key, pos;
} sort_item_t;

static int sort_item_cmp(const void *a, const void *b)
{
    const sort_item_t *x = a, *y = b;
    return x->key < y->key ? -1 : (x->key > y->key);
}

Test(detect, the_detectors_sort_is_stable_on_every_kind_of_input)
{
    enum { N = 300 };
    mt_detect_scratch_t scratch = {0};
    mt_detect_ctx_t ctx = {.scratch = &scratch};
    sort_item_t got[N], want[N];
    uint32_t seed = 7;

    for (unsigned kind = 0; kind < 5; kind++)
        for (size_t n = 0; n <= N; n += (n < 20 ? 1 : 37)) {
            for (size_t i = 0; i < n; i++) {
                seed = seed * 1103515245u + 12345u;
                uint32_t keys[5] = {(uint32_t)i, (uint32_t)(n - i), (uint32_t)(i / 8),
                                    (uint32_t)((i % 16) < 8 ? i : n - i), (seed >> 16) % 11};
                got[i] = (sort_item_t){keys[kind], (uint32_t)i};
            }
            memcpy(want, got, n * sizeof *got);
            for (size_t i = 1; i < n; i++)
                for (size_t j = i; j > 0 && want[j].key < want[j - 1].key; j--) {
                    sort_item_t t = want[j];
                    want[j] = want[j - 1];
                    want[j - 1] = t;
                }
            mt__detect_sort(&ctx, got, n, sizeof *got, sort_item_cmp);
            for (size_t i = 0; i < n; i++)
                cr_assert(got[i].key == want[i].key && got[i].pos == want[i].pos,
                          "kind %u, %zu items: at %zu got %u/%u, want %u/%u", kind, n, i,
                          got[i].key, got[i].pos, want[i].key, want[i].pos);
        }
    mt_detect_scratch_free(&scratch);
}

/* ---- segments ----------------------------------------------------------- */

Test(detect, back_to_back_pages_are_one_finding_each)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    for (int page = 0; page < 24; page++) {
        send_posts(&k, 20, 10);
        for (uint32_t i = 0; i < 20; i++)
            sc_roundtrip(&k, sc_find("blog", "user", oid_filter("_id", 2000 + i % 10), true, NULL),
                         sc_one_doc_reply("blog.user", 2000 + i % 10), 300 * US);
    }
    settle();
    cr_assert_eq(mt_stats_get(st, MT_STAT_WINDOWS), 1, "no idle gap: one window");
    bson_t *all = all_findings();
    cr_assert_eq(count_type(all, "n_plus_one"), 24);
    for (int i = 0; i < 24; i++) {
        char path[64];
        snprintf(path, sizeof path, "findings.%d.children.count", i);
        cr_assert_eq(sc_int(all, path), 20);
        snprintf(path, sizeof path, "findings.%d.window.segment", i);
        cr_assert_eq(sc_int(all, path), i + 1);
        snprintf(path, sizeof path, "findings.%d.window.commands", i);
        cr_assert_eq(sc_int(all, path), 21);
    }
    cr_assert_eq(sc_array_len(all, "patterns"), 1);
    cr_assert_eq(sc_int(all, "patterns.0.occurrences"), 24);
    bson_destroy(all);
    sc_close(&k);
}

Test(detect, a_parent_read_in_batches_is_not_cut)
{
    /* the parent's getMores carry its shape: they are not the next request */
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    bson_t *docs[10];
    for (uint32_t i = 0; i < 10; i++) {
        bson_oid_t oid;
        docs[i] = bson_new();
        sc_oid(&oid, 2000 + i);
        BSON_APPEND_OID(docs[i], "author", &oid);
    }
    sc_roundtrip(&k, sc_find("blog", "post", bson_new(), false, NULL),
                 sc_cursor_reply("blog.post", docs, 5, 42, true), 1 * MS);
    for (uint32_t i = 0; i < 5; i++)
        sc_roundtrip(&k, sc_find("blog", "user", oid_filter("_id", 2000 + i), true, NULL),
                     sc_one_doc_reply("blog.user", 2000 + i), 300 * US);
    sc_roundtrip(&k, sc_getmore("blog", "post", 42),
                 sc_cursor_reply("blog.post", docs + 5, 5, 0, false), 1 * MS);
    for (uint32_t i = 5; i < 10; i++)
        sc_roundtrip(&k, sc_find("blog", "user", oid_filter("_id", 2000 + i), true, NULL),
                     sc_one_doc_reply("blog.user", 2000 + i), 300 * US);
    sc_free_docs(docs, 10);
    settle();
    bson_t *all = all_findings();
    cr_assert_eq(sc_array_len(all, "findings"), 1);
    cr_assert_eq(sc_int(all, "findings.0.children.count"), 10);
    cr_assert_eq(sc_int(all, "findings.0.parent.docs_returned"), 10);
    cr_assert_not(bson_has_field(all, "findings.0.window.segment"), "the window was not cut");
    bson_destroy(all);
    sc_close(&k);
}

/* ---- the log line -------------------------------------------------------- */

Test(detect, each_finding_has_a_log_line_without_values)
{
    update_loop(T, true);
    cr_assert_eq(seen.count, 1);
    cr_assert_not_null(strstr(seen.last_summary, "write_loop"), "%s", seen.last_summary);
    cr_assert_not_null(strstr(seen.last_summary, "blog.post"), "%s", seen.last_summary);
    cr_assert_not_null(strstr(seen.last_summary, "bulk_write"), "%s", seen.last_summary);
    cr_assert_null(strstr(seen.last_summary, "65a0"), "no id value: %s", seen.last_summary);
}

/* ---- ignoring on purpose (SPEC section 11) ------------------------------ */

Test(detect, ignored_writes_and_reads_are_no_loop)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    for (uint32_t i = 0; i < 2 * T; i++) {
        /* a seed script's one-document inserts, tagged */
        bson_t *cmd = bson_new(), docs, d;
        BSON_APPEND_UTF8(cmd, "insert", "event");
        BSON_APPEND_ARRAY_BEGIN(cmd, "documents", &docs);
        BSON_APPEND_DOCUMENT_BEGIN(&docs, "0", &d);
        BSON_APPEND_INT32(&d, "i", (int32_t)i);
        bson_append_document_end(&docs, &d);
        bson_append_array_end(cmd, &docs);
        BSON_APPEND_UTF8(cmd, "comment", "mongotap:ignore-seed");
        BSON_APPEND_UTF8(cmd, "$db", "blog");
        sc_roundtrip(&k, cmd, fx_json("{\"n\": 1, \"ok\": 1.0}"), 300 * US);
    }
    for (uint32_t i = 0; i < 2 * T; i++)
        sc_roundtrip(&k, sc_find("blog", "user", oid_filter("_id", 7), true, "mongotap:ignore"),
                     sc_one_doc_reply("blog.user", 7), 300 * US);
    settle();
    bson_t *all = all_findings();
    cr_assert_eq(sc_array_len(all, "findings"), 0);
    bson_destroy(all);
    /* the same reads untagged are a repeated read: the comment made the difference */
    for (uint32_t i = 0; i < T; i++)
        sc_roundtrip(&k, sc_find("blog", "user", oid_filter("_id", 7), true, NULL),
                     sc_one_doc_reply("blog.user", 7), 300 * US);
    settle();
    all = all_findings();
    cr_assert_eq(count_type(all, "repeated_read"), 1);
    bson_destroy(all);
    sc_close(&k);
}
