/*
 * Helpers shared by the stats unit tests: a simulated client connection that
 * sends real OP_MSG bytes (built with libbson) through mt_stats on a test
 * clock, builders for the usual commands and replies, and JSON lookups on
 * the outputs. Header-only: each test is its own executable.
 */
#ifndef MT_STATS_TEST_UTIL_H
#define MT_STATS_TEST_UTIL_H

#include "account.h"
#include "json.h"
#include "proto_test_util.h"
#include "stats.h"

#define MS UINT64_C(1000000)
#define US UINT64_C(1000)

/* The test clock (monotonic ns) every simulated message uses. */
static uint64_t sc_now = UINT64_C(1000000000);

typedef struct {
    mt_stats_t *st;
    mt_stats_conn_t *c;
    int32_t next_rid;
    int32_t next_reply_rid;
} sc_conn_t;

/* Whole messages go through the proxy's decode step, as on the wire. */
static inline void sc_deliver(mt_stats_t *st, mt_stats_conn_t *c, bool request, const uint8_t *m,
                              size_t len, uint64_t now)
{
    static mt_account_t *acct;
    static mt_stats_t *acct_st;
    static mt_account_side_t sides[2];
    mt_account_result_t owed;

    if (!acct || acct_st != st) {
        mt_account_free(acct);
        acct = mt_account_new(st);
        acct_st = st;
        cr_assert_not_null(acct);
        mt_account_side_init(&sides[0]);
        mt_account_side_init(&sides[1]);
    }
    mt_account_feed(acct, &sides[request ? 0 : 1], c, request, m, len, now, &owed);
}

static inline sc_conn_t sc_open(mt_stats_t *st, uint64_t id, const char *addr)
{
    mt_stats_add(st, MT_STAT_CONNECTIONS_TOTAL, 1); /* the proxy counts accepts */
    sc_conn_t k = {st, mt_stats_conn_open(st, id, addr, sc_now), 100, 90000};
    cr_assert_not_null(k.c);
    return k;
}

static inline void sc_close(sc_conn_t *k)
{
    mt_stats_conn_close(k->c, sc_now);
    k->c = NULL;
}

/* Sends cmd as an OP_MSG request at sc_now; returns its requestID. */
static inline int32_t sc_send_flags(sc_conn_t *k, const bson_t *cmd, uint32_t flags)
{
    size_t len;
    int32_t rid = k->next_rid++;
    uint8_t *m = fx_op_msg(flags, rid, 0, cmd, NULL, NULL, 0, &len);
    sc_deliver(k->st, k->c, true, m, len, sc_now);
    free(m);
    return rid;
}

static inline int32_t sc_send(sc_conn_t *k, const bson_t *cmd)
{
    return sc_send_flags(k, cmd, 0);
}

/* Delivers reply to request rid at sc_now; returns the reply's requestID. */
static inline int32_t sc_reply_flags(sc_conn_t *k, int32_t rid, const bson_t *reply, uint32_t flags)
{
    size_t len;
    int32_t own = k->next_reply_rid++;
    uint8_t *m = fx_op_msg(flags, own, rid, reply, NULL, NULL, 0, &len);
    sc_deliver(k->st, k->c, false, m, len, sc_now);
    free(m);
    return own;
}

static inline void sc_reply(sc_conn_t *k, int32_t rid, const bson_t *reply)
{
    sc_reply_flags(k, rid, reply, 0);
}

/* Request now, reply latency later; the clock moves on by latency. Takes
 * ownership of both documents. */
static inline void sc_roundtrip(sc_conn_t *k, bson_t *cmd, bson_t *reply, uint64_t latency)
{
    int32_t rid = sc_send(k, cmd);
    sc_now += latency;
    sc_reply(k, rid, reply);
    bson_destroy(cmd);
    bson_destroy(reply);
}

static inline bson_t *sc_ok(void)
{
    return fx_json("{\"ok\": 1.0}");
}

/* {find: coll, filter: <filter>, $db: db} (+ limit/singleBatch when limit1,
 * + comment when comment != NULL). Takes ownership of filter. */
static inline bson_t *sc_find(const char *db, const char *coll, bson_t *filter, bool limit1,
                              const char *comment)
{
    bson_t *b = bson_new();
    BSON_APPEND_UTF8(b, "find", coll);
    BSON_APPEND_DOCUMENT(b, "filter", filter);
    if (limit1) {
        BSON_APPEND_INT32(b, "limit", 1);
        BSON_APPEND_BOOL(b, "singleBatch", true);
    }
    if (comment)
        BSON_APPEND_UTF8(b, "comment", comment);
    BSON_APPEND_UTF8(b, "$db", db);
    bson_destroy(filter);
    return b;
}

static inline bson_t *sc_getmore(const char *db, const char *coll, int64_t cursor_id)
{
    bson_t *b = bson_new();
    BSON_APPEND_INT64(b, "getMore", cursor_id);
    BSON_APPEND_UTF8(b, "collection", coll);
    BSON_APPEND_UTF8(b, "$db", db);
    return b;
}

/* {cursor: {id, ns, firstBatch|nextBatch: docs}, ok: 1}. Does not take the
 * documents. */
static inline bson_t *sc_cursor_reply(const char *ns, bson_t **docs, size_t n, int64_t cursor_id,
                                      bool first)
{
    bson_t *b = bson_new(), cur, arr;
    BSON_APPEND_DOCUMENT_BEGIN(b, "cursor", &cur);
    BSON_APPEND_INT64(&cur, "id", cursor_id);
    BSON_APPEND_UTF8(&cur, "ns", ns);
    BSON_APPEND_ARRAY_BEGIN(&cur, first ? "firstBatch" : "nextBatch", &arr);
    for (size_t i = 0; i < n; i++) {
        char k[16];
        const char *key;
        bson_uint32_to_string((uint32_t)i, &key, k, sizeof k);
        BSON_APPEND_DOCUMENT(&arr, key, docs[i]);
    }
    bson_append_array_end(&cur, &arr);
    bson_append_document_end(b, &cur);
    BSON_APPEND_DOUBLE(b, "ok", 1.0);
    return b;
}

/* The hello a driver sends first, naming itself. */
static inline bson_t *sc_hello(const char *driver, const char *version, const char *app)
{
    bson_t *b = bson_new(), client, sub;
    BSON_APPEND_INT32(b, "hello", 1);
    BSON_APPEND_DOCUMENT_BEGIN(b, "client", &client);
    if (app) {
        BSON_APPEND_DOCUMENT_BEGIN(&client, "application", &sub);
        BSON_APPEND_UTF8(&sub, "name", app);
        bson_append_document_end(&client, &sub);
    }
    BSON_APPEND_DOCUMENT_BEGIN(&client, "driver", &sub);
    BSON_APPEND_UTF8(&sub, "name", driver);
    BSON_APPEND_UTF8(&sub, "version", version);
    bson_append_document_end(&client, &sub);
    bson_append_document_end(b, &client);
    BSON_APPEND_UTF8(b, "$db", "admin");
    return b;
}

static inline void sc_handshake(sc_conn_t *k, const char *driver, const char *version,
                                const char *app)
{
    sc_roundtrip(k, sc_hello(driver, version, app), sc_ok(), 200 * US);
}

/* A deterministic ObjectId numbered n (below 2^24). */
static inline void sc_oid(bson_oid_t *oid, uint32_t n)
{
    char hex[25];
    snprintf(hex, sizeof hex, "65a000000000000000%06x", n & 0xffffffu);
    bson_oid_init_from_string(oid, hex);
}

/* {_id: <oid n>} */
static inline bson_t *sc_id_filter(uint32_t n)
{
    bson_oid_t oid;
    sc_oid(&oid, n);
    bson_t *f = bson_new();
    BSON_APPEND_OID(f, "_id", &oid);
    return f;
}

/* The reply to a lookup: one document {_id: <oid n>, name: "x"}. */
static inline bson_t *sc_one_doc_reply(const char *ns, uint32_t n)
{
    bson_oid_t oid;
    sc_oid(&oid, n);
    bson_t *d = bson_new();
    BSON_APPEND_OID(d, "_id", &oid);
    BSON_APPEND_UTF8(d, "name", "x");
    bson_t *r = sc_cursor_reply(ns, &d, 1, 0, true);
    bson_destroy(d);
    return r;
}

static inline void sc_free_docs(bson_t **docs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        bson_destroy(docs[i]);
}

/* Parses an output (fails the test when it is not JSON). */
static inline bson_t *sc_parse(const char *json)
{
    bson_error_t err;
    cr_assert_not_null(json);
    bson_t *b = bson_new_from_json((const uint8_t *)json, -1, &err);
    cr_assert_not_null(b, "output is not JSON (%s): %.400s", err.message, json);
    return b;
}

/* Dotted-path lookups on a parsed output. */
static inline int64_t sc_int(const bson_t *doc, const char *path)
{
    bson_iter_t it, f;
    cr_assert(bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, path, &f), "no %s", path);
    cr_assert(BSON_ITER_HOLDS_NUMBER(&f), "%s is not a number", path);
    return bson_iter_as_int64(&f);
}

static inline double sc_double(const bson_t *doc, const char *path)
{
    bson_iter_t it, f;
    cr_assert(bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, path, &f), "no %s", path);
    cr_assert(BSON_ITER_HOLDS_NUMBER(&f), "%s is not a number", path);
    return bson_iter_as_double(&f);
}

static inline bool sc_bool(const bson_t *doc, const char *path)
{
    bson_iter_t it, f;
    cr_assert(bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, path, &f), "no %s", path);
    cr_assert(BSON_ITER_HOLDS_BOOL(&f), "%s is not a boolean", path);
    return bson_iter_bool(&f);
}

static inline const char *sc_str(const bson_t *doc, const char *path)
{
    bson_iter_t it, f;
    cr_assert(bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, path, &f), "no %s", path);
    cr_assert(BSON_ITER_HOLDS_UTF8(&f), "%s is not a string", path);
    return bson_iter_utf8(&f, NULL);
}

static inline bool sc_is_null(const bson_t *doc, const char *path)
{
    bson_iter_t it, f;
    cr_assert(bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, path, &f), "no %s", path);
    return BSON_ITER_HOLDS_NULL(&f);
}

static inline uint32_t sc_array_len(const bson_t *doc, const char *path)
{
    bson_iter_t it, f, child;
    cr_assert(bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, path, &f), "no %s", path);
    cr_assert(BSON_ITER_HOLDS_ARRAY(&f), "%s is not an array", path);
    uint32_t n = 0;
    bson_iter_recurse(&f, &child);
    while (bson_iter_next(&child))
        n++;
    return n;
}

/* Findings seen through on_finding. */
typedef struct {
    int count;
    char *last;
    char *last_summary;
} sc_findings_t;

static inline void sc_on_finding(void *data, const bson_t *finding, const char *summary)
{
    sc_findings_t *f = data;
    char *json = mt_json_render(finding, false);
    f->count++;
    free(f->last);
    f->last = strdup(json);
    bson_free(json);
    free(f->last_summary);
    f->last_summary = strdup(summary);
}

#endif
