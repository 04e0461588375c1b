/*
 * stats: the accounting glue through its public API with real message bytes:
 * /api/stats field by field, getMore and exhaust accounting, errors and
 * write counts, moreToCome, parse errors and unknown opcodes, compressed
 * traffic, pipelined and unmatched replies, the pending bound, rates, reset,
 * and no allocation on the hot path.
 */
#include "stats_test_util.h"

static mt_stats_t *st;
static uint64_t start_ns;

static void setup(void)
{
    start_ns = sc_now;
    st = mt_stats_new(NULL, sc_now);
    cr_assert_not_null(st);
}

static void teardown(void)
{
    mt_stats_free(st);
}

TestSuite(stats, .init = setup, .fini = teardown);

static bson_t *api_stats(size_t limit)
{
    char *json = mt_stats_json(st, sc_now, limit);
    bson_t *doc = sc_parse(json);
    bson_free(json);
    return doc;
}

/* The /api/stats shape object whose collection is coll (fails if absent). */
static const char *shape_path(const bson_t *doc, const char *coll, char *buf, size_t cap)
{
    uint32_t n = sc_array_len(doc, "shapes");
    for (uint32_t i = 0; i < n; i++) {
        char p[64];
        snprintf(p, sizeof p, "shapes.%u.collection", i);
        if (strcmp(sc_str(doc, p), coll) == 0) {
            snprintf(buf, cap, "shapes.%u", i);
            return buf;
        }
    }
    cr_assert_fail("no shape for %s", coll);
    return NULL;
}

static int64_t shape_int(const bson_t *doc, const char *coll, const char *field)
{
    char base[32], p[96];
    snprintf(p, sizeof p, "%s.%s", shape_path(doc, coll, base, sizeof base), field);
    return sc_int(doc, p);
}

static double shape_double(const bson_t *doc, const char *coll, const char *field)
{
    char base[32], p[96];
    snprintf(p, sizeof p, "%s.%s", shape_path(doc, coll, base, sizeof base), field);
    return sc_double(doc, p);
}

/* Sends cmd and returns the size of its message. */
static size_t msg_size(const bson_t *cmd)
{
    size_t len;
    uint8_t *m = fx_op_msg(0, 1, 0, cmd, NULL, NULL, 0, &len);
    free(m);
    return len;
}

Test(stats, api_stats_fields)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    sc_conn_t k2 = sc_open(st, 2, "127.0.0.1:2");
    mt_stats_add(st, MT_STAT_CONNECTIONS_REFUSED, 2);
    mt_stats_add(st, MT_STAT_UPSTREAM_ERRORS, 1);
    sc_close(&k2);

    /* 10 lookups at 1, 2, ... 10 ms */
    size_t req_bytes = 0, reply_bytes = 0;
    for (uint32_t i = 1; i <= 10; i++) {
        bson_t *cmd = sc_find("tv", "channel", sc_id_filter(i), true, NULL);
        bson_t *reply = sc_one_doc_reply("tv.channel", i);
        req_bytes += msg_size(cmd);
        reply_bytes += msg_size(reply);
        sc_roundtrip(&k, cmd, reply, i * MS);
    }
    sc_roundtrip(&k, sc_find("tv", "show", bson_new(), false, NULL),
                 sc_cursor_reply("tv.show", NULL, 0, 0, true), 200 * MS);
    sc_now = start_ns + 12500 * MS;

    bson_t *doc = api_stats(0);
    cr_assert_float_eq(sc_double(doc, "uptime_s"), 12.5, 1e-9);
    cr_assert_eq(sc_int(doc, "connections.active"), 1);
    cr_assert_eq(sc_int(doc, "connections.total"), 2);
    cr_assert_eq(sc_int(doc, "connections.refused"), 2);
    cr_assert_eq(sc_int(doc, "commands"), 11);
    cr_assert_eq(sc_int(doc, "parse_errors"), 0);
    cr_assert_eq(sc_int(doc, "upstream_errors"), 1);
    cr_assert_eq(sc_int(doc, "limit"), 100);
    cr_assert_eq(sc_array_len(doc, "shapes"), 2);
    /* sorted by total time: the 200 ms find first */
    cr_assert_str_eq(sc_str(doc, "shapes.0.collection"), "show");
    cr_assert_str_eq(sc_str(doc, "shapes.1.db"), "tv");
    cr_assert_str_eq(sc_str(doc, "shapes.1.command"), "find");
    cr_assert_str_eq(sc_str(doc, "shapes.1.shape"), "{\"_id\": \"?\"}");
    cr_assert_eq(sc_int(doc, "shapes.1.count"), 10);
    cr_assert_eq(sc_int(doc, "shapes.1.errors"), 0);
    cr_assert_eq(sc_int(doc, "shapes.1.docs_returned"), 10);
    cr_assert_eq(sc_int(doc, "shapes.1.bytes_in"), (int64_t)req_bytes);
    cr_assert_eq(sc_int(doc, "shapes.1.bytes_out"), (int64_t)reply_bytes);
    cr_assert_float_eq(sc_double(doc, "shapes.1.latency_ms.min"), 1.0, 1e-9);
    cr_assert_float_eq(sc_double(doc, "shapes.1.latency_ms.max"), 10.0, 1e-9);
    cr_assert_float_eq(sc_double(doc, "shapes.1.latency_ms.sum"), 55.0, 1e-9);
    cr_assert_float_eq(sc_double(doc, "shapes.1.latency_ms.p50"), 5.0, 5.0 * 0.02);
    cr_assert_float_eq(sc_double(doc, "shapes.1.latency_ms.p95"), 10.0, 10.0 * 0.02);
    cr_assert_float_eq(sc_double(doc, "shapes.1.latency_ms.p99"), 10.0, 10.0 * 0.02);
    const char *first = sc_str(doc, "shapes.1.first_seen"),
               *last = sc_str(doc, "shapes.1.last_seen");
    cr_assert_eq(strlen(first), 24);
    cr_assert_eq(first[10], 'T');
    cr_assert_eq(first[23], 'Z');
    cr_assert_lt(strcmp(first, last), 0, "%s < %s", first, last);
    bson_destroy(doc);

    doc = api_stats(1);
    cr_assert_eq(sc_array_len(doc, "shapes"), 1);
    cr_assert_eq(sc_int(doc, "limit"), 1);
    bson_destroy(doc);
    sc_close(&k);
}

Test(stats, numbers_are_plain_json)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    sc_roundtrip(&k, sc_find("tv", "c", bson_new(), false, NULL),
                 sc_cursor_reply("tv.c", NULL, 0, 0, true), 312 * US);
    sc_now = start_ns + 1200 * MS;
    char *json = mt_stats_json(st, sc_now, 0);
    cr_assert_not_null(strstr(json, "\"uptime_s\":1.2,"), "%s", json);
    cr_assert_not_null(strstr(json, "\"sum\":0.312}"), "%s", json);
    cr_assert_not_null(strstr(json, "\"count\":1,"), "%s", json);
    cr_assert_null(strstr(json, "$numberLong"));
    cr_assert_null(strstr(json, "0000000"), "%s", json);
    bson_free(json);
    sc_close(&k);
}

Test(stats, getmore_is_accounted_to_its_cursor)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    bson_t *docs[3] = {fx_json("{\"a\": 1}"), fx_json("{\"a\": 2}"), fx_json("{\"a\": 3}")};
    bson_t *gm = sc_getmore("tv", "show", 77);
    size_t gm_bytes = msg_size(gm);
    bson_destroy(gm);
    bson_t *find = sc_find("tv", "show", bson_new(), false, NULL);
    size_t find_bytes = msg_size(find);
    sc_roundtrip(&k, find, sc_cursor_reply("tv.show", docs, 3, 77, true), 2 * MS);
    sc_roundtrip(&k, sc_getmore("tv", "show", 77), sc_cursor_reply("tv.show", docs, 3, 77, false),
                 3 * MS);
    sc_roundtrip(&k, sc_getmore("tv", "show", 77), sc_cursor_reply("tv.show", docs, 2, 0, false),
                 4 * MS);
    sc_free_docs(docs, 3);
    bson_t *doc = api_stats(0);
    cr_assert_eq(sc_array_len(doc, "shapes"), 1, "no separate getMore shape");
    cr_assert_eq(shape_int(doc, "show", "count"), 1);
    cr_assert_eq(shape_int(doc, "show", "docs_returned"), 8);
    cr_assert_eq(shape_int(doc, "show", "bytes_in"), (int64_t)(find_bytes + 2 * gm_bytes));
    cr_assert_float_eq(shape_double(doc, "show", "latency_ms.sum"), 9.0, 1e-9);
    cr_assert_float_eq(shape_double(doc, "show", "latency_ms.max"), 2.0, 1e-9);
    cr_assert_eq(sc_int(doc, "commands"), 3);
    bson_destroy(doc);

    /* the cursor is gone (id 0): a further getMore gets a shape of its own */
    sc_roundtrip(&k, sc_getmore("tv", "show", 77), fx_json("{\"ok\": 0, \"code\": 43}"), 1 * MS);
    doc = api_stats(0);
    cr_assert_eq(sc_array_len(doc, "shapes"), 2);
    bson_destroy(doc);
    sc_close(&k);
}

Test(stats, killcursors_forgets_the_cursor)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    bson_t *d = fx_json("{\"a\": 1}");
    sc_roundtrip(&k, sc_find("tv", "show", bson_new(), false, NULL),
                 sc_cursor_reply("tv.show", &d, 1, 5, true), 1 * MS);
    bson_destroy(d);
    sc_roundtrip(&k,
                 fx_json("{\"killCursors\": \"show\", \"cursors\": [{\"$numberLong\": \"5\"}], "
                         "\"$db\": \"tv\"}"),
                 sc_ok(), 1 * MS);
    sc_roundtrip(&k, sc_getmore("tv", "show", 5), fx_json("{\"ok\": 0}"), 1 * MS);
    bson_t *doc = api_stats(0);
    cr_assert_eq(sc_array_len(doc, "shapes"), 3, "find, killCursors, and a getMore of its own");
    bson_destroy(doc);
    sc_close(&k);
}

Test(stats, errors_and_write_counts)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    sc_roundtrip(
        &k,
        fx_json("{\"insert\": \"log\", \"documents\": [{\"a\": 1}, {\"a\": 2}], \"$db\": \"tv\"}"),
        fx_json("{\"n\": 2, \"ok\": 1}"), 1 * MS);
    sc_roundtrip(
        &k,
        fx_json("{\"insert\": \"log\", \"documents\": [{\"a\": 1}, {\"a\": 2}], \"$db\": \"tv\"}"),
        fx_json("{\"n\": 1, \"writeErrors\": [{\"index\": 1, \"code\": 11000}], \"ok\": 1}"),
        1 * MS);
    sc_roundtrip(&k, fx_json("{\"count\": \"log\", \"query\": {}, \"$db\": \"tv\"}"),
                 fx_json("{\"n\": 1000, \"ok\": 1}"), 1 * MS);
    sc_roundtrip(&k, fx_json("{\"find\": \"log\", \"filter\": {\"$bad\": 1}, \"$db\": \"tv\"}"),
                 fx_json("{\"ok\": 0, \"code\": 2, \"errmsg\": \"unknown operator\"}"), 1 * MS);
    bson_t *doc = api_stats(0);
    char base[32];
    for (uint32_t i = 0; i < 3; i++) {
        char p[64];
        snprintf(p, sizeof p, "shapes.%u.command", i);
        const char *cmd = sc_str(doc, p);
        snprintf(base, sizeof base, "shapes.%u", i);
        snprintf(p, sizeof p, "%s.errors", base);
        int64_t errors = sc_int(doc, p);
        snprintf(p, sizeof p, "%s.docs_returned", base);
        int64_t docs = sc_int(doc, p);
        if (strcmp(cmd, "insert") == 0) {
            cr_assert_eq(errors, 1);
            cr_assert_eq(docs, 3);
        } else if (strcmp(cmd, "count") == 0) {
            cr_assert_eq(errors, 0);
            cr_assert_eq(docs, 0, "a count's n is not documents returned");
        } else {
            cr_assert_str_eq(cmd, "find");
            cr_assert_eq(errors, 1);
        }
    }
    bson_destroy(doc);
    sc_close(&k);
}

Test(stats, exhaust_replies_match_one_request)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    bson_t *d = fx_json("{\"a\": 1}");
    bson_t *find = sc_find("tv", "feed", bson_new(), false, NULL);
    int32_t rid = sc_send_flags(&k, find, MT_MSG_FLAG_EXHAUST_ALLOWED);
    bson_destroy(find);
    bson_t *r1 = sc_cursor_reply("tv.feed", &d, 1, 9, true);
    sc_now += 1 * MS;
    int32_t next = sc_reply_flags(&k, rid, r1, MT_MSG_FLAG_MORE_TO_COME);
    sc_now += 1 * MS;
    next = sc_reply_flags(&k, next, r1, MT_MSG_FLAG_MORE_TO_COME);
    bson_t *r3 = sc_cursor_reply("tv.feed", &d, 1, 0, false);
    sc_now += 1 * MS;
    sc_reply_flags(&k, next, r3, 0);
    bson_destroy(r1);
    bson_destroy(r3);
    bson_destroy(d);
    bson_t *doc = api_stats(0);
    cr_assert_eq(shape_int(doc, "feed", "count"), 1);
    cr_assert_eq(shape_int(doc, "feed", "docs_returned"), 3);
    cr_assert_float_eq(shape_double(doc, "feed", "latency_ms.sum"), 3.0, 1e-9);
    cr_assert_float_eq(shape_double(doc, "feed", "latency_ms.max"), 1.0, 1e-9);
    cr_assert_eq(sc_int(doc, "pending_requests"), 0);
    cr_assert_eq(sc_int(doc, "replies_unmatched"), 0);
    bson_destroy(doc);
    sc_close(&k);
}

Test(stats, more_to_come_request_needs_no_reply)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    bson_t *ins = fx_json("{\"insert\": \"log\", \"documents\": [{\"a\": 1}], "
                          "\"writeConcern\": {\"w\": 0}, \"$db\": \"tv\"}");
    sc_send_flags(&k, ins, MT_MSG_FLAG_MORE_TO_COME);
    bson_destroy(ins);
    bson_t *doc = api_stats(0);
    cr_assert_eq(shape_int(doc, "log", "count"), 1);
    cr_assert_eq(sc_int(doc, "pending_requests"), 0);
    bson_destroy(doc);
    /* it does not hold its window open */
    sc_now += 100 * MS;
    mt_stats_tick(st, sc_now);
    cr_assert_eq(mt_stats_get(st, MT_STAT_WINDOWS), 1);
    sc_close(&k);
}

Test(stats, parse_errors_and_unknown_opcodes)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    /* a valid header, then a section kind 7 */
    uint8_t bad[26] = {26,   0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xdd,
                       0x07, 0, 0, 0, 0, 0, 0, 7, 5, 0, 0, 0, 0};
    sc_deliver(st, k.c, true, bad, sizeof bad, sc_now);
    sc_deliver(st, k.c, false, bad, sizeof bad, sc_now);
    /* legacy OP_INSERT (2002): forwarded, not decoded */
    uint8_t legacy[21] = {21, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xd2, 0x07, 0, 0, 0, 0, 0, 0, 0};
    sc_deliver(st, k.c, true, legacy, sizeof legacy, sc_now);
    /* a reply nobody asked for */
    bson_t *ok = sc_ok();
    sc_reply(&k, 12345, ok);
    bson_destroy(ok);
    bson_t *doc = api_stats(0);
    cr_assert_eq(sc_int(doc, "parse_errors"), 2);
    cr_assert_eq(sc_int(doc, "messages_unknown_opcode"), 1);
    cr_assert_eq(sc_int(doc, "commands"), 0);
    cr_assert_eq(sc_int(doc, "replies_unmatched"), 1);
    bson_destroy(doc);
    sc_close(&k);
}

Test(stats, compressed_traffic_is_accounted)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    const int compressors[] = {MT_COMPRESSOR_ZLIB, MT_COMPRESSOR_SNAPPY, MT_COMPRESSOR_ZSTD,
                               MT_COMPRESSOR_NOOP};
    for (int i = 0; i < 4; i++) {
        bson_t *cmd = sc_find("tv", "zipped", fx_json("{\"k\": 1}"), false, NULL);
        size_t len, zlen;
        uint8_t *m = fx_op_msg(0, 500 + i, 0, cmd, NULL, NULL, 0, &len), *z;
        cr_assert_eq(mt_msg_compress_message(compressors[i], m, len, &z, &zlen), 0);
        sc_deliver(st, k.c, true, z, zlen, sc_now);
        free(m);
        free(z);
        bson_destroy(cmd);
        bson_t *r = sc_cursor_reply("tv.zipped", NULL, 0, 0, true);
        m = fx_op_msg(0, 900 + i, 500 + i, r, NULL, NULL, 0, &len);
        cr_assert_eq(mt_msg_compress_message(compressors[i], m, len, &z, &zlen), 0);
        sc_now += 1 * MS;
        sc_deliver(st, k.c, false, z, zlen, sc_now);
        free(m);
        free(z);
        bson_destroy(r);
    }
    bson_t *doc = api_stats(0);
    cr_assert_eq(shape_int(doc, "zipped", "count"), 4);
    cr_assert_float_eq(shape_double(doc, "zipped", "latency_ms.sum"), 4.0, 1e-9);
    cr_assert_eq(sc_int(doc, "parse_errors"), 0);
    bson_destroy(doc);
    sc_close(&k);
}

Test(stats, pipelined_replies_out_of_order)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    bson_t *a = sc_find("tv", "a", bson_new(), false, NULL);
    bson_t *b = sc_find("tv", "b", bson_new(), false, NULL);
    int32_t ra = sc_send(&k, a);
    sc_now += 1 * MS;
    int32_t rb = sc_send(&k, b);
    sc_now += 1 * MS;
    bson_t *r = sc_cursor_reply("tv.x", NULL, 0, 0, true);
    sc_reply(&k, rb, r);
    sc_now += 5 * MS;
    sc_reply(&k, ra, r);
    bson_destroy(a);
    bson_destroy(b);
    bson_destroy(r);
    bson_t *doc = api_stats(0);
    cr_assert_float_eq(shape_double(doc, "a", "latency_ms.sum"), 7.0, 1e-9);
    cr_assert_float_eq(shape_double(doc, "b", "latency_ms.sum"), 1.0, 1e-9);
    bson_destroy(doc);
    sc_close(&k);
}

Test(stats, pending_requests_are_bounded)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    bson_t *cmd = sc_find("tv", "a", bson_new(), false, NULL);
    for (int i = 0; i < 1100; i++)
        sc_send(&k, cmd); /* requestIDs 100 .. 1199 */
    bson_destroy(cmd);
    bson_t *doc = api_stats(0);
    cr_assert_eq(sc_int(doc, "pending_requests"), 1024);
    bson_destroy(doc);
    bson_t *r = sc_cursor_reply("tv.a", NULL, 0, 0, true);
    sc_reply(&k, 100, r);  /* the oldest: forgotten */
    sc_reply(&k, 1199, r); /* the newest: still known */
    bson_destroy(r);
    doc = api_stats(0);
    cr_assert_eq(sc_int(doc, "replies_unmatched"), 1);
    cr_assert_eq(sc_int(doc, "pending_requests"), 1023);
    bson_destroy(doc);
    sc_close(&k);
    doc = api_stats(0);
    cr_assert_eq(sc_int(doc, "pending_requests"), 0);
    bson_destroy(doc);
}

Test(stats, ops_per_sec_from_tick_snapshots)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    mt_stats_tick(st, sc_now);
    for (int i = 0; i < 200; i++) {
        sc_roundtrip(&k, fx_json("{\"ping\": 1, \"$db\": \"admin\"}"), sc_ok(), 1 * MS);
        sc_now += 4 * MS;
        mt_stats_tick(st, sc_now);
    }
    /* 200 commands in 1 s */
    bson_t *doc = api_stats(0);
    cr_assert_float_eq(sc_double(doc, "ops_per_sec"), 200.0, 1.0);
    bson_destroy(doc);
    sc_now += 2000 * MS;
    mt_stats_tick(st, sc_now);
    doc = api_stats(0);
    cr_assert_float_eq(sc_double(doc, "ops_per_sec"), 0.0, 1e-9);
    bson_destroy(doc);
    sc_close(&k);
}

Test(stats, reset_clears_stats_windows_and_findings)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    sc_handshake(&k, "PyMongo", "3.11.0", "app");
    bson_t *docs[10];
    for (uint32_t i = 0; i < 10; i++) {
        docs[i] = bson_new();
        bson_oid_t oid;
        sc_oid(&oid, i);
        BSON_APPEND_OID(docs[i], "ref", &oid);
    }
    sc_roundtrip(&k, sc_find("tv", "p", bson_new(), false, NULL),
                 sc_cursor_reply("tv.p", docs, 10, 0, true), 1 * MS);
    sc_free_docs(docs, 10);
    for (uint32_t i = 0; i < 10; i++)
        sc_roundtrip(&k, sc_find("tv", "c", sc_id_filter(i), true, NULL),
                     sc_one_doc_reply("tv.c", i), 1 * MS);
    sc_now += 200 * MS;
    mt_stats_tick(st, sc_now);
    cr_assert_eq(mt_stats_get(st, MT_STAT_FINDINGS), 1);
    /* one request left in flight across the reset */
    bson_t *cmd = sc_find("tv", "c", sc_id_filter(1), true, NULL);
    int32_t rid = sc_send(&k, cmd);
    bson_destroy(cmd);

    mt_stats_reset(st);
    bson_t *doc = api_stats(0);
    cr_assert_eq(sc_array_len(doc, "shapes"), 0);
    cr_assert_eq(sc_int(doc, "commands"), 0);
    cr_assert_eq(sc_int(doc, "findings"), 0);
    cr_assert_eq(sc_int(doc, "windows.open"), 0);
    cr_assert_eq(sc_int(doc, "windows.closed"), 0);
    cr_assert_eq(sc_int(doc, "connections.active"), 1);
    cr_assert_eq(sc_int(doc, "connections.total"), 1);
    bson_destroy(doc);
    char *json = mt_stats_findings_json(st);
    doc = sc_parse(json);
    cr_assert_eq(sc_array_len(doc, "findings"), 0);
    cr_assert_eq(sc_array_len(doc, "patterns"), 0);
    bson_destroy(doc);
    bson_free(json);
    json = mt_stats_windows_json(st, 0, false, NULL);
    doc = sc_parse(json);
    cr_assert_eq(sc_array_len(doc, "windows"), 0);
    bson_destroy(doc);
    bson_free(json);

    /* the old reply is ignored; the connection keeps being accounted, and
     * keeps its handshake */
    bson_t *r = sc_one_doc_reply("tv.c", 1);
    sc_reply(&k, rid, r);
    bson_destroy(r);
    sc_roundtrip(&k, sc_find("tv", "c", sc_id_filter(2), true, NULL), sc_one_doc_reply("tv.c", 2),
                 1 * MS);
    doc = api_stats(0);
    cr_assert_eq(sc_int(doc, "commands"), 1);
    cr_assert_eq(shape_int(doc, "c", "count"), 1);
    bson_destroy(doc);
    json = mt_stats_connections_json(st, sc_now);
    doc = sc_parse(json);
    cr_assert_str_eq(sc_str(doc, "connections.0.driver"), "PyMongo 3.11.0");
    bson_destroy(doc);
    bson_free(json);
    sc_close(&k);
}

/* A 1 MB collection name and a 300-byte field path are cut to MongoDB's
 * limits before anything keeps them, and counted. */
Test(stats, long_names_are_cut_and_counted)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    char *coll = malloc(1u << 20), key[301];
    memset(coll, 'c', (1u << 20) - 1);
    coll[(1u << 20) - 1] = '\0';
    memset(key, 'k', 300);
    key[300] = '\0';
    bson_t *filter = bson_new();
    BSON_APPEND_INT32(filter, key, 7);
    sc_roundtrip(&k, sc_find("tv", coll, filter, true, NULL),
                 sc_cursor_reply("tv.c", NULL, 0, 0, true), 1 * MS);
    sc_now += 200 * MS;
    mt_stats_tick(st, sc_now);
    char *json = mt_stats_json(st, sc_now, 0);
    cr_assert_lt(strlen(json), 8192, "a small answer");
    bson_t *doc = sc_parse(json);
    bson_free(json);
    cr_assert_eq(strlen(sc_str(doc, "shapes.0.collection")), MT_CMD_NS_MAX - strlen("tv."));
    cr_assert_eq(sc_int(doc, "names_truncated"), 2, "the collection and the key");
    bson_destroy(doc);
    json = mt_stats_metrics(st, sc_now);
    cr_assert_lt(strlen(json), 64 * 1024);
    bson_free(json);
    free(coll);
    sc_close(&k);
}

static bool has_at(void *data, const char *name)
{
    (void)data;
    return strchr(name, '@') != NULL;
}

/* With a redaction predicate, field names that are user data show as "?" in
 * shapes, windows, the finding's field and its child key. */
Test(stats, redacted_field_names_never_reach_an_output)
{
    mt_stats_config_t cfg;
    mt_stats_config_defaults(&cfg);
    cfg.shape = (mt_shape_opts_t){has_at, NULL};
    mt_stats_t *rs = mt_stats_new(&cfg, sc_now);
    sc_conn_t k = sc_open(rs, 1, "127.0.0.1:1");
    bson_t *docs[10];
    for (uint32_t i = 0; i < 10; i++) {
        docs[i] = bson_new();
        bson_oid_t oid;
        sc_oid(&oid, i);
        BSON_APPEND_OID(docs[i], "owner@x.org", &oid);
    }
    sc_roundtrip(&k, sc_find("tv", "p", bson_new(), false, NULL),
                 sc_cursor_reply("tv.p", docs, 10, 0, true), 1 * MS);
    sc_free_docs(docs, 10);
    for (uint32_t i = 0; i < 10; i++) {
        bson_oid_t oid;
        sc_oid(&oid, i);
        bson_t *f = bson_new();
        BSON_APPEND_OID(f, "ann@x.org", &oid);
        sc_roundtrip(&k, sc_find("tv", "c", f, true, NULL), sc_one_doc_reply("tv.c", i), 1 * MS);
    }
    sc_now += 200 * MS;
    mt_stats_tick(rs, sc_now);
    cr_assert_eq(mt_stats_get(rs, MT_STAT_FINDINGS), 1);
    char *outs[4] = {mt_stats_json(rs, sc_now, 0), mt_stats_findings_json(rs),
                     mt_stats_windows_json(rs, 0, false, NULL),
                     mt_stats_report(rs, MT_REPORT_MARKDOWN, sc_now)};
    for (size_t i = 0; i < 4; i++) {
        cr_assert_null(strstr(outs[i], "x.org"), "output %zu: %.600s", i, outs[i]);
        cr_assert_not_null(strstr(outs[i], "?"));
    }
    bson_t *doc = sc_parse(outs[1]);
    cr_assert_str_eq(sc_str(doc, "findings.0.field"), "?");
    cr_assert_str_eq(sc_str(doc, "findings.0.children.key"), "?");
    bson_destroy(doc);
    doc = sc_parse(outs[0]);
    cr_assert_str_eq(sc_str(doc, "shapes.0.shape"), "{\"?\": \"?\"}");
    bson_destroy(doc);
    for (size_t i = 0; i < 4; i++)
        bson_free(outs[i]);
    sc_close(&k);
    mt_stats_free(rs);
}

Test(stats, null_connection_is_harmless)
{
    uint8_t b[16] = {16};
    sc_deliver(st, NULL, true, b, sizeof b, sc_now);
    sc_deliver(st, NULL, false, b, sizeof b, sc_now);
    mt_stats_conn_close(NULL, sc_now);
    cr_assert_eq(mt_stats_get(st, MT_STAT_COMMANDS), 0);
}

Test(stats, counter_names)
{
    cr_assert_str_eq(mt_stat_counter_str(MT_STAT_CONNECTIONS_TOTAL), "total");
    cr_assert_str_eq(mt_stat_counter_str(MT_STAT_FINDINGS), "findings");
    cr_assert_eq(mt_stat_counter_type(MT_STAT_CONNECTIONS_ACTIVE), MT_STAT_TYPE_GAUGE);
    mt_stats_add(st, MT_STAT_BYTES_FROM_CLIENTS, 1234);
    bson_t *doc = api_stats(0);
    cr_assert_eq(sc_int(doc, "bytes.from_clients"), 1234);
    bson_iter_t it;
    cr_assert_not(bson_iter_init_find(&it, doc, "counters"), "each figure is published once");
    bson_destroy(doc);
}

/* Allocation counting through libbson's allocator, which every stats
 * allocation goes through. */
static size_t allocs;
static void *count_malloc(size_t n)
{
    allocs++;
    return malloc(n);
}
static void *count_calloc(size_t n, size_t s)
{
    allocs++;
    return calloc(n, s);
}
static void *count_realloc(void *p, size_t n)
{
    allocs++;
    return realloc(p, n);
}
static void *count_aligned(size_t a, size_t n)
{
    allocs++;
    return aligned_alloc(a, (n + a - 1) / a * a);
}

Test(stats, hot_path_does_not_allocate)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    sc_handshake(&k, "PyMongo", "3.11.0", "app");
    enum { WARM = 40, MEASURED = 20 };
    uint8_t *req[WARM + MEASURED], *rep[WARM + MEASURED];
    size_t req_len[WARM + MEASURED], rep_len[WARM + MEASURED];
    for (int i = 0; i < WARM + MEASURED; i++) {
        bson_t *cmd = sc_find("tv", "channel", sc_id_filter((uint32_t)i), true, NULL);
        bson_t *r = sc_one_doc_reply("tv.channel", (uint32_t)i);
        req[i] = fx_op_msg(0, 1000 + i, 0, cmd, NULL, NULL, 0, &req_len[i]);
        rep[i] = fx_op_msg(0, 5000 + i, 1000 + i, r, NULL, NULL, 0, &rep_len[i]);
        bson_destroy(cmd);
        bson_destroy(r);
    }
    bson_t *ping = fx_json("{\"ping\": 1, \"$db\": \"admin\"}"), *ok = sc_ok();
    size_t ping_len, pong_len;
    uint8_t *pingm = fx_op_msg(0, 77, 0, ping, NULL, NULL, 0, &ping_len);
    uint8_t *pongm = fx_op_msg(0, 78, 77, ok, NULL, NULL, 0, &pong_len);
    bson_destroy(ping);
    bson_destroy(ok);

    /* warm up: the shapes exist, the window and tables have grown */
    for (int i = 0; i < WARM; i++) {
        sc_deliver(st, k.c, true, req[i], req_len[i], sc_now);
        sc_now += 100 * US;
        sc_deliver(st, k.c, false, rep[i], rep_len[i], sc_now);
    }
    sc_deliver(st, k.c, true, pingm, ping_len, sc_now);
    sc_deliver(st, k.c, false, pongm, pong_len, sc_now);

    bson_mem_vtable_t vt = {count_malloc, count_calloc, count_realloc, free, count_aligned, {0}};
    bson_mem_set_vtable(&vt);
    allocs = 0;
    for (int i = WARM; i < WARM + MEASURED; i++) {
        sc_deliver(st, k.c, true, req[i], req_len[i], sc_now);
        sc_now += 100 * US;
        sc_deliver(st, k.c, false, rep[i], rep_len[i], sc_now);
        sc_deliver(st, k.c, true, pingm, ping_len, sc_now);
        sc_deliver(st, k.c, false, pongm, pong_len, sc_now);
        mt_stats_tick(st, sc_now);
    }
    size_t seen = allocs;
    bson_mem_restore_vtable();
    cr_assert_eq(seen, 0, "%zu allocations on the hot path", seen);
    cr_assert_eq(mt_stats_get(st, MT_STAT_COMMANDS), 1 + WARM + 1 + 2 * MEASURED);

    for (int i = 0; i < WARM + MEASURED; i++) {
        free(req[i]);
        free(rep[i]);
    }
    free(pingm);
    free(pongm);
    sc_close(&k);
}
