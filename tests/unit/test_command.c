/*
 * command: the request and reply views read from captured pymongo,
 * mongoengine and Node.js traffic, plus built messages for what the server
 * could not produce (wrapped legacy commands, exhaust streams, failures).
 */
#include "proto_test_util.h"

typedef struct {
    uint8_t *buf;
    size_t len;
    mt_msg_t msg;
    mt_cmd_view_t view;
} req_t;

typedef struct {
    uint8_t *buf;
    size_t len;
    mt_msg_t msg;
    mt_reply_view_t view;
} rep_t;

static mt_msg_scratch_t scratch;

static void setup(void)
{
    memset(&scratch, 0, sizeof(scratch));
}

static void teardown(void)
{
    mt_msg_scratch_free(&scratch);
}

TestSuite(command, .init = setup, .fini = teardown);

static void load_request(req_t *r, const char *scenario, const char *command, int nth)
{
    r->buf = fx_request(scenario, command, nth, &r->len);
    cr_assert_eq(mt_msg_parse(r->buf, r->len, &scratch, &r->msg), MT_MSG_OK);
    cr_assert_eq(mt_cmd_request(&r->msg, NULL, &r->view), MT_MSG_OK);
}

/* Replies are decoded with their own scratch: the request's view may still
 * point into the shared one. */
static mt_msg_scratch_t reply_scratch;

static void load_reply(rep_t *r, const char *scenario, const req_t *req)
{
    r->buf = fx_reply(scenario, req->msg.hdr.request_id, &r->len);
    cr_assert_eq(mt_msg_parse(r->buf, r->len, &reply_scratch, &r->msg), MT_MSG_OK);
    cr_assert_eq(mt_cmd_reply(&r->msg, &r->view), MT_MSG_OK);
    cr_assert_eq(r->view.response_to, req->view.request_id);
}

/* len by pointer: it is read after buf's builder has set it */
static void req_built(req_t *r, uint8_t *buf, const size_t *len)
{
    size_t n = *len;
    r->buf = buf;
    r->len = n;
    cr_assert_eq(mt_msg_parse(buf, n, &scratch, &r->msg), MT_MSG_OK);
    cr_assert_eq(mt_cmd_request(&r->msg, NULL, &r->view), MT_MSG_OK);
}

/* ---- handshakes --------------------------------------------------------- */

Test(command, pymongo_legacy_handshake)
{
    req_t q;
    rep_t a;
    load_request(&q, "pymongo_handshake", "ismaster", 0);
    cr_assert_eq(q.view.opcode, MT_OP_QUERY);
    cr_assert_str_eq(q.view.name, "ismaster");
    cr_assert_str_eq(q.view.name_lower, "ismaster");
    cr_assert_eq(q.view.kind, MT_CMD_HELLO);
    cr_assert(q.view.monitoring);
    cr_assert_str_eq(q.view.db, "admin");
    cr_assert_str_eq(q.view.collection, "");
    cr_assert_str_eq(q.view.app_name, "fixtures");
    cr_assert_str_eq(q.view.driver_name, "PyMongo");
    cr_assert_str_eq(q.view.driver_version, "3.11.0");
    cr_assert_not(q.view.has_topology_version);
    cr_assert_eq(q.view.shape_src, MT_CMD_SHAPE_NONE);

    load_reply(&a, "pymongo_handshake", &q);
    cr_assert_eq(a.view.opcode, MT_OP_REPLY);
    cr_assert(a.view.ok);
    cr_assert_eq(a.view.docs, 1);
    cr_assert_not(a.view.has_cursor);
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, &a.view.body, "maxWireVersion"));
    free(q.buf);
    free(a.buf);
}

Test(command, node_legacy_handshake)
{
    req_t q;
    load_request(&q, "node_find", "ismaster", 0);
    cr_assert_eq(q.view.opcode, MT_OP_QUERY);
    cr_assert_eq(q.view.kind, MT_CMD_HELLO);
    cr_assert(q.view.monitoring);
    cr_assert_str_eq(q.view.app_name, "fixtures-node");
    cr_assert_str_eq(q.view.driver_name, "nodejs");
    cr_assert_not_null(q.view.driver_version);
    cr_assert_eq(q.view.driver_version[0], '7');
    free(q.buf);
}

Test(command, mongoengine_does_not_name_itself)
{
    req_t q;
    load_request(&q, "mongoengine_reference", "ismaster", 0);
    cr_assert_null(q.view.app_name);
    cr_assert_str_eq(q.view.driver_name, "PyMongo");
    free(q.buf);
}

/* ---- reads -------------------------------------------------------------- */

Test(command, pymongo_find_one)
{
    req_t q;
    rep_t a;
    load_request(&q, "pymongo_find", "find", 0);
    cr_assert_eq(q.view.opcode, MT_OP_MSG);
    cr_assert_eq(q.view.kind, MT_CMD_FIND);
    cr_assert_not(q.view.monitoring);
    cr_assert_str_eq(q.view.db, "fixtures");
    cr_assert_str_eq(q.view.collection, "items");
    cr_assert_eq(q.view.shape_src, MT_CMD_SHAPE_FILTER);
    cr_assert_not_null(q.view.shape_doc);
    cr_assert_not(q.view.shape_doc_is_array);
    cr_assert(q.view.has_limit);
    cr_assert_eq(q.view.limit, 1);
    cr_assert(q.view.single_batch);
    cr_assert_null(q.view.comment);
    cr_assert_not(q.view.more_to_come);

    load_reply(&a, "pymongo_find", &q);
    cr_assert(a.view.ok);
    cr_assert(a.view.has_cursor);
    cr_assert_eq(a.view.cursor_id, 0);
    cr_assert_str_eq(a.view.ns, "fixtures.items");
    cr_assert_eq(a.view.docs, 1);
    cr_assert_not_null(a.view.batch);
    cr_assert_gt(a.view.batch_len, 5);
    free(q.buf);
    free(a.buf);
}

Test(command, find_cursor_getmore_to_exhaustion)
{
    req_t q, g1, g2;
    rep_t a, b1, b2;
    load_request(&q, "pymongo_getmore", "find", 0);
    cr_assert(q.view.has_batch_size);
    cr_assert_eq(q.view.batch_size, 5);
    load_reply(&a, "pymongo_getmore", &q);
    cr_assert_eq(a.view.docs, 5);
    cr_assert_neq(a.view.cursor_id, 0);

    load_request(&g1, "pymongo_getmore", "getMore", 0);
    cr_assert_eq(g1.view.kind, MT_CMD_GETMORE);
    cr_assert_eq(g1.view.cursor_id, a.view.cursor_id);
    cr_assert_str_eq(g1.view.collection, "items");
    cr_assert_str_eq(g1.view.db, "fixtures");
    cr_assert_eq(g1.view.batch_size, 5);
    load_reply(&b1, "pymongo_getmore", &g1);
    cr_assert_eq(b1.view.docs, 5);
    cr_assert_eq(b1.view.cursor_id, a.view.cursor_id);

    load_request(&g2, "pymongo_getmore", "getMore", 1);
    load_reply(&b2, "pymongo_getmore", &g2);
    cr_assert_eq(b2.view.docs, 2); /* 12 documents: 5 + 5 + 2 */
    cr_assert_eq(b2.view.cursor_id, 0);
    free(q.buf), free(a.buf), free(g1.buf), free(b1.buf), free(g2.buf), free(b2.buf);
}

Test(command, node_find_and_getmore)
{
    req_t q, g;
    rep_t a;
    load_request(&q, "node_find", "find", 1);
    cr_assert_eq(q.view.batch_size, 4);
    cr_assert_not(q.view.has_limit);
    load_reply(&a, "node_find", &q);
    cr_assert_eq(a.view.docs, 4);
    load_request(&g, "node_find", "getMore", 0);
    cr_assert_eq(g.view.cursor_id, a.view.cursor_id);
    cr_assert_str_eq(g.view.collection, "items");
    free(q.buf), free(a.buf), free(g.buf);
}

Test(command, aggregate_pipeline)
{
    req_t q;
    rep_t a;
    load_request(&q, "pymongo_aggregate", "aggregate", 0);
    cr_assert_eq(q.view.kind, MT_CMD_AGGREGATE);
    cr_assert_str_eq(q.view.collection, "items");
    cr_assert_eq(q.view.shape_src, MT_CMD_SHAPE_PIPELINE);
    cr_assert(q.view.shape_doc_is_array);
    load_reply(&a, "pymongo_aggregate", &q);
    cr_assert_eq(a.view.docs, 7);
    free(q.buf), free(a.buf);
}

Test(command, kill_cursors)
{
    req_t q, k;
    rep_t a;
    load_request(&q, "pymongo_killcursors", "find", 0);
    load_reply(&a, "pymongo_killcursors", &q);
    cr_assert_eq(a.view.docs, 2);
    load_request(&k, "pymongo_killcursors", "killCursors", 0);
    cr_assert_eq(k.view.kind, MT_CMD_KILL_CURSORS);
    cr_assert_str_eq(k.view.collection, "items");
    cr_assert_eq(k.view.cursor_id, a.view.cursor_id);
    cr_assert_neq(k.view.cursor_id, 0);
    free(q.buf), free(a.buf), free(k.buf);
}

Test(command, mongoengine_reference_lookups)
{
    req_t parent;
    rep_t pr;
    load_request(&parent, "mongoengine_reference", "find", 0);
    cr_assert_str_eq(parent.view.collection, "show");
    load_reply(&pr, "mongoengine_reference", &parent);
    cr_assert_eq(pr.view.docs, 6);
    for (int i = 1; i <= 6; i++) {
        req_t child;
        load_request(&child, "mongoengine_reference", "find", i);
        cr_assert_str_eq(child.view.collection, "channel");
        cr_assert_eq(child.view.limit, 1);
        free(child.buf);
    }
    free(parent.buf), free(pr.buf);
}

/* ---- writes ------------------------------------------------------------- */

Test(command, insert_many_with_document_sequence)
{
    req_t q;
    rep_t a;
    load_request(&q, "pymongo_insert_many", "insert", 0);
    cr_assert_eq(q.view.kind, MT_CMD_INSERT);
    cr_assert_str_eq(q.view.collection, "scratch");
    cr_assert_eq(q.view.statements, 5);
    cr_assert_eq(q.view.shape_src, MT_CMD_SHAPE_NONE);
    load_reply(&a, "pymongo_insert_many", &q);
    cr_assert(a.view.has_n);
    cr_assert_eq(a.view.n, 5);
    cr_assert_eq(a.view.write_errors, 0);
    free(q.buf), free(a.buf);

    load_request(&q, "node_insert_many", "insert", 0);
    cr_assert_eq(q.view.statements, 3);
    free(q.buf);
}

Test(command, update_and_delete_statements)
{
    req_t u, d, nd;
    load_request(&u, "pymongo_insert_many", "update", 0);
    cr_assert_eq(u.view.kind, MT_CMD_UPDATE);
    cr_assert_eq(u.view.shape_src, MT_CMD_SHAPE_UPDATES);
    cr_assert_eq(u.view.statements, 1);
    cr_assert_not_null(u.view.shape_doc); /* first statement, from the kind-1 section */
    load_request(&d, "pymongo_insert_many", "delete", 0);
    cr_assert_eq(d.view.shape_src, MT_CMD_SHAPE_DELETES);
    cr_assert_eq(d.view.statements, 1);
    load_request(&nd, "node_insert_many", "delete", 0);
    cr_assert_eq(nd.view.statements, 1); /* node sends statements in the body array */
    cr_assert_not_null(nd.view.shape_doc);
    free(u.buf), free(d.buf), free(nd.buf);
}

Test(command, statements_from_body_array_and_sequence)
{
    bson_t *body =
        fx_json("{\"insert\": \"c\", \"documents\": [{\"a\": 1}, {\"a\": 2}], \"$db\": \"d\"}");
    bson_t *docs[3] = {fx_json("{\"a\": 3}"), fx_json("{\"a\": 4}"), fx_json("{\"a\": 5}")};
    size_t len;
    req_t r;
    req_built(&r, fx_op_msg(0, 1, 0, body, "documents", docs, 3, &len), &len);
    cr_assert_eq(r.view.statements, 5);
    free(r.buf);
    /* a sequence for another command does not count */
    bson_t *upd = fx_json("{\"update\": \"c\", \"$db\": \"d\"}");
    req_built(&r, fx_op_msg(0, 1, 0, upd, "documents", docs, 3, &len), &len);
    cr_assert_eq(r.view.statements, 0);
    cr_assert_null(r.view.shape_doc);
    free(r.buf);
    for (int i = 0; i < 3; i++)
        bson_destroy(docs[i]);
    bson_destroy(body);
    bson_destroy(upd);
}

Test(command, write_errors_are_counted)
{
    size_t len;
    uint8_t *b = fx_op_msg_json(
        "{\"n\": 1, \"writeErrors\": [{\"index\": 1, \"code\": 11000}, {\"index\": 2, "
        "\"code\": 11000}], \"ok\": 1.0}",
        0, &len);
    mt_msg_t m;
    mt_reply_view_t r;
    cr_assert_eq(mt_msg_parse(b, len, NULL, &m), MT_MSG_OK);
    cr_assert_eq(mt_cmd_reply(&m, &r), MT_MSG_OK);
    cr_assert(r.ok);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.write_errors, 2);
    free(b);
}

/* Returned documents are counted by their framing: what is inside them is
 * not accounting's to read (a detector checks those it reads as evidence). A
 * batch whose framing is broken is refused as before. */
Test(command, returned_documents_are_counted_not_read)
{
    size_t len;
    uint8_t *b = fx_op_msg_json("{\"cursor\": {\"firstBatch\": [{\"a\": 1}, {\"b\": 1}, "
                                "{\"c\": 1}], \"id\": 0, \"ns\": \"d.c\"}, \"ok\": 1.0}",
                                0, &len);
    uint8_t *bad_type = memmem(b, len,
                               "\x10"
                               "b",
                               3);
    cr_assert_not_null(bad_type);
    *bad_type = 0x42; /* no such BSON type, inside the second document */
    mt_msg_t m;
    mt_reply_view_t r;
    cr_assert_eq(mt_msg_parse(b, len, NULL, &m), MT_MSG_ERR_BSON, "a full parse refuses it");
    cr_assert_eq(mt_msg_parse_budget(b, len, NULL, NULL, MT_MSG_DEFER_BODY, &m), MT_MSG_OK);
    cr_assert_eq(mt_cmd_reply(&m, &r), MT_MSG_OK);
    cr_assert(r.ok);
    cr_assert_eq(r.docs, 3);
    cr_assert_str_eq(r.ns, "d.c");

    /* the second document's length one byte short: its end is no longer a NUL */
    uint8_t *doc = bad_type - 4;
    cr_assert_eq(doc[0], 12);
    doc[0] = 11;
    cr_assert_eq(mt_msg_parse_budget(b, len, NULL, NULL, MT_MSG_DEFER_BODY, &m), MT_MSG_OK);
    cr_assert_eq(mt_cmd_reply(&m, &r), MT_MSG_ERR_BSON);
    free(b);
}

/* ---- monitoring and errors ---------------------------------------------- */

Test(command, end_sessions_rejected_by_server)
{
    req_t q;
    rep_t a;
    load_request(&q, "pymongo_endsessions", "endSessions", 0);
    cr_assert_eq(q.view.kind, MT_CMD_MONITORING);
    cr_assert(q.view.monitoring);
    cr_assert_str_eq(q.view.db, "admin");
    load_reply(&a, "pymongo_endsessions", &q);
    cr_assert_not(a.view.ok);
    cr_assert_eq(a.view.code, 59);
    cr_assert_str_eq(a.view.code_name, "CommandNotFound");
    free(q.buf), free(a.buf);

    load_request(&q, "node_find", "endSessions", 0);
    cr_assert(q.view.more_to_come, "node sends endSessions fire-and-forget");
    free(q.buf);
}

Test(command, ping_is_monitoring)
{
    req_t q;
    load_request(&q, "pymongo_handshake", "ping", 0);
    cr_assert_eq(q.view.kind, MT_CMD_MONITORING);
    cr_assert(q.view.monitoring);
    free(q.buf);
}

Test(command, monitoring_names_case_insensitive)
{
    const char *yes[] = {"hello",        "isMaster",  "ismaster",     "ping",        "buildInfo",
                         "buildinfo",    "saslStart", "saslContinue", "endSessions", "getLastError",
                         "authenticate", "getnonce",  "HELLO"};
    const char *no[] = {"find",     "aggregate",       "getMore", "insert",
                        "hostInfo", "listCollections", "",        "hell"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        cr_assert(mt_cmd_is_monitoring(yes[i], false), "%s", yes[i]);
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        cr_assert_not(mt_cmd_is_monitoring(no[i], false), "%s", no[i]);
    cr_assert(mt_cmd_is_monitoring("find", true));
    cr_assert_not(mt_cmd_is_monitoring(NULL, false));
}

Test(command, kind_names)
{
    cr_assert_str_eq(mt_cmd_kind_str(MT_CMD_FIND), "find");
    cr_assert_str_eq(mt_cmd_kind_str(MT_CMD_GETMORE), "getMore");
    cr_assert_str_eq(mt_cmd_kind_str(MT_CMD_FIND_AND_MODIFY), "findAndModify");
    cr_assert_str_eq(mt_cmd_kind_str(MT_CMD_AUTH), "auth");
    cr_assert_str_eq(mt_cmd_kind_str((mt_cmd_kind_t)99), "unknown");
    cr_assert_str_eq(mt_cmd_shape_src_str(MT_CMD_SHAPE_PIPELINE), "pipeline");
}

Test(command, kinds_and_shape_sources)
{
    struct {
        const char *json;
        mt_cmd_kind_t kind;
        mt_cmd_shape_src_t src;
        bool has_shape;
    } cases[] = {
        {"{\"count\": \"c\", \"query\": {\"a\": 1}}", MT_CMD_COUNT, MT_CMD_SHAPE_FILTER, true},
        {"{\"distinct\": \"c\", \"key\": \"k\", \"query\": {\"a\": 1}}", MT_CMD_DISTINCT,
         MT_CMD_SHAPE_FILTER, true},
        {"{\"findAndModify\": \"c\", \"query\": {\"a\": 1}, \"update\": {}}",
         MT_CMD_FIND_AND_MODIFY, MT_CMD_SHAPE_FILTER, true},
        {"{\"findandmodify\": \"c\", \"query\": {\"a\": 1}}", MT_CMD_FIND_AND_MODIFY,
         MT_CMD_SHAPE_FILTER, true},
        {"{\"find\": \"c\"}", MT_CMD_FIND, MT_CMD_SHAPE_FILTER, false},
        {"{\"find\": \"c\", \"filter\": 3}", MT_CMD_FIND, MT_CMD_SHAPE_FILTER, false},
        {"{\"saslStart\": 1, \"mechanism\": \"SCRAM-SHA-256\"}", MT_CMD_AUTH, MT_CMD_SHAPE_NONE,
         false},
        {"{\"listCollections\": 1}", MT_CMD_OTHER, MT_CMD_SHAPE_NONE, false},
        {"{\"aggregate\": 1, \"pipeline\": [{\"$currentOp\": {}}]}", MT_CMD_AGGREGATE,
         MT_CMD_SHAPE_PIPELINE, true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len;
        req_t r;
        req_built(&r, fx_op_msg_json(cases[i].json, 0, &len), &len);
        cr_assert_eq(r.view.kind, cases[i].kind, "%s", cases[i].json);
        cr_assert_eq(r.view.shape_src, cases[i].src, "%s", cases[i].json);
        cr_assert_eq(r.view.shape_doc != NULL, cases[i].has_shape, "%s", cases[i].json);
        cr_assert_str_eq(r.view.db, "");
        free(r.buf);
    }
}

Test(command, options_comment_and_topology_version)
{
    size_t len;
    req_t r;
    req_built(&r,
              fx_op_msg_json(
                  "{\"find\": \"users\", \"filter\": {}, \"limit\": {\"$numberLong\": \"10\"}, "
                  "\"batchSize\": 3.0, \"comment\": \"mongotap:req-42\", \"$db\": \"app\"}",
                  0, &len),
              &len);
    cr_assert_eq(r.view.limit, 10);
    cr_assert_eq(r.view.batch_size, 3);
    cr_assert_str_eq(r.view.comment, "mongotap:req-42");
    cr_assert_str_eq(r.view.db, "app");
    free(r.buf);

    req_built(&r, fx_op_msg_json("{\"find\": \"users\", \"comment\": {\"x\": 1}}", 0, &len), &len);
    cr_assert_null(r.view.comment, "only string comments count");
    free(r.buf);

    req_built(
        &r,
        fx_op_msg_json("{\"aggregate\": \"c\", \"pipeline\": [], \"cursor\": {\"batchSize\": 7}}",
                       0, &len),
        &len);
    cr_assert(r.view.has_batch_size);
    cr_assert_eq(r.view.batch_size, 7);
    free(r.buf);

    req_built(
        &r,
        fx_op_msg_json("{\"hello\": 1, \"topologyVersion\": {\"processId\": {\"$oid\": "
                       "\"650000000000000000000000\"}, \"counter\": {\"$numberLong\": \"4\"}}, "
                       "\"maxAwaitTimeMS\": 10000, \"$db\": \"admin\"}",
                       MT_MSG_FLAG_EXHAUST_ALLOWED, &len),
        &len);
    cr_assert(r.view.has_topology_version);
    cr_assert(r.view.monitoring);
    cr_assert(r.view.exhaust_allowed);
    cr_assert_not(r.view.more_to_come);
    free(r.buf);
}

Test(command, long_command_name_is_cut)
{
    char json[256];
    snprintf(json, sizeof(json), "{\"%s\": 1}",
             "aVeryLongCommandNameThatGoesOnAndOnAndOnBeyondSixtyFourCharactersForSure");
    size_t len;
    req_t r;
    req_built(&r, fx_op_msg_json(json, 0, &len), &len);
    cr_assert_eq(strlen(r.view.name), MT_CMD_NAME_MAX - 1);
    cr_assert_eq(strncmp(r.view.name, "aVeryLong", 9), 0);
    cr_assert_eq(r.view.name_lower[0], 'a');
    cr_assert_eq(r.view.name_lower[1], 'v');
    cr_assert(r.view.names_truncated);
    free(r.buf);
}

/* A string of n bytes: "é" (two bytes) repeated, odd n ending in 'x'. */
static char *long_name(size_t n)
{
    char *s = malloc(n + 1);
    for (size_t i = 0; i + 1 < n; i += 2)
        memcpy(s + i, "\xc3\xa9", 2);
    if (n % 2)
        s[n - 1] = 'x';
    s[n] = '\0';
    return s;
}

Test(command, name_len_cuts_on_character_boundaries)
{
    bool cut = false;
    cr_assert_eq(mt_cmd_name_len("", 0, &cut), 0);
    cr_assert_eq(mt_cmd_name_len("abc", 3, &cut), 3);
    cr_assert(!cut);
    cr_assert_eq(mt_cmd_name_len("abcd", 3, &cut), 3);
    cr_assert(cut);
    char *s = long_name(10); /* 5 x "é" */
    for (size_t max = 0; max < 10; max++) {
        cut = false;
        cr_assert_eq(mt_cmd_name_len(s, max, &cut), max & ~(size_t)1, "max %zu", max);
        cr_assert(cut);
    }
    cr_assert_eq(mt_cmd_name_len(s, 10, NULL), 10);
    free(s);
}

/* Names longer than MongoDB allows (a 4 MB collection name) are cut in the
 * view, on a UTF-8 boundary, and the view says so; names within the limits
 * are left pointing into the message. */
Test(command, names_are_capped_at_mongodb_limits)
{
    char *coll = long_name(4u << 20);
    char *db = long_name(101);
    bson_t *cmd = bson_new();
    BSON_APPEND_UTF8(cmd, "find", coll);
    BSON_APPEND_UTF8(cmd, "$db", db);
    size_t len;
    req_t r;
    req_built(&r, fx_op_msg(0, 3, 0, cmd, NULL, NULL, 0, &len), &len);
    cr_assert(r.view.names_truncated);
    cr_assert_eq(strlen(r.view.db), MT_CMD_DB_MAX);
    cr_assert_eq(strncmp(r.view.db, db, MT_CMD_DB_MAX), 0);
    size_t clen = strlen(r.view.collection);
    cr_assert_leq(clen + 1 + strlen(r.view.db), MT_CMD_NS_MAX);
    cr_assert_geq(clen + 2 + strlen(r.view.db), MT_CMD_NS_MAX, "cut by at most one character");
    cr_assert(bson_utf8_validate(r.view.collection, clen, false));
    cr_assert_eq(strncmp(r.view.collection, coll, clen), 0);
    cr_assert_str_eq(r.view.name, "find");
    free(r.buf);
    bson_destroy(cmd);

    /* at the limits exactly: untouched, in place */
    memcpy(db + MT_CMD_DB_MAX - 2, "xx", 3);
    memcpy(coll + MT_CMD_NS_MAX - MT_CMD_DB_MAX - 3, "xx", 3);
    cmd = bson_new();
    BSON_APPEND_UTF8(cmd, "find", coll);
    BSON_APPEND_UTF8(cmd, "$db", db);
    req_built(&r, fx_op_msg(0, 3, 0, cmd, NULL, NULL, 0, &len), &len);
    cr_assert(!r.view.names_truncated);
    cr_assert_str_eq(r.view.db, db);
    cr_assert_str_eq(r.view.collection, coll);
    cr_assert(r.view.collection >= (const char *)r.buf &&
              r.view.collection < (const char *)r.buf + len);
    free(r.buf);
    bson_destroy(cmd);

    /* legacy OP_QUERY: the namespace's database part and the collection */
    char ns[400];
    memset(ns, 'd', 100);
    ns[100] = '.';
    memset(ns + 101, 'c', 298);
    ns[399] = '\0';
    req_built(&r, fx_op_query_json(ns, 0, 1, "{\"a\": 1}", &len), &len);
    cr_assert(r.view.names_truncated);
    cr_assert_eq(strlen(r.view.db), MT_CMD_DB_MAX);
    cr_assert_eq(strlen(r.view.collection), MT_CMD_NS_MAX - MT_CMD_DB_MAX - 1);
    cr_assert_eq(r.view.collection[0], 'c');
    free(r.buf);
    free(coll);
    free(db);
}

/* ---- legacy OP_QUERY forms ---------------------------------------------- */

Test(command, op_query_wrapped_command)
{
    size_t len;
    req_t r;
    req_built(
        &r,
        fx_op_query_json("shop.$cmd", 0, -1,
                         "{\"$query\": {\"count\": \"orders\", \"query\": {\"status\": \"A\"}}, "
                         "\"$readPreference\": {\"mode\": \"secondaryPreferred\"}}",
                         &len),
        &len);
    cr_assert_str_eq(r.view.name, "count");
    cr_assert_eq(r.view.kind, MT_CMD_COUNT);
    cr_assert_str_eq(r.view.db, "shop");
    cr_assert_str_eq(r.view.collection, "orders");
    cr_assert_not_null(r.view.shape_doc);
    free(r.buf);
}

Test(command, op_query_on_a_collection_is_a_find)
{
    size_t len;
    req_t r;
    req_built(&r,
              fx_op_query_json("shop.orders", MT_MSG_QUERY_FLAG_EXHAUST, -1,
                               "{\"$query\": {\"_id\": 5}}", &len),
              &len);
    cr_assert_str_eq(r.view.name, "find");
    cr_assert_eq(r.view.kind, MT_CMD_FIND);
    cr_assert_str_eq(r.view.db, "shop");
    cr_assert_str_eq(r.view.collection, "orders");
    cr_assert_eq(r.view.limit, 1);
    cr_assert(r.view.exhaust_allowed);
    cr_assert_not(r.view.monitoring);
    free(r.buf);

    req_built(&r, fx_op_query_json("shop.orders", 0, 20, "{\"qty\": {\"$gt\": 5}}", &len), &len);
    cr_assert_not(r.view.has_limit);
    cr_assert_eq(r.view.batch_size, 20);
    free(r.buf);
}

Test(command, unusable_requests)
{
    size_t len;
    mt_msg_t m;
    mt_cmd_view_t v;
    uint8_t *b = fx_op_msg_json("{}", 0, &len);
    cr_assert_eq(mt_msg_parse(b, len, NULL, &m), MT_MSG_OK);
    cr_assert_eq(mt_cmd_request(&m, NULL, &v), MT_MSG_ERR_SECTION);
    free(b);

    bson_t *doc = fx_json("{\"ok\": 1}");
    b = fx_op_reply(0, 0, &doc, 1, &len);
    cr_assert_eq(mt_msg_parse(b, len, NULL, &m), MT_MSG_OK);
    cr_assert_eq(mt_cmd_request(&m, NULL, &v), MT_MSG_ERR_OPCODE);
    free(b);
    bson_destroy(doc);
}

/* ---- replies ------------------------------------------------------------ */

Test(command, reply_ok_values)
{
    struct {
        const char *json;
        bool ok;
    } cases[] = {
        {"{\"ok\": 1}", true},
        {"{\"ok\": 1.0}", true},
        {"{\"ok\": {\"$numberLong\": \"1\"}}", true},
        {"{\"ok\": true}", true},
        {"{\"ok\": 0.0, \"code\": 11000, \"codeName\": \"DuplicateKey\"}", false},
        {"{\"ok\": 2}", false},
        {"{\"ok\": \"1\"}", false},
        {"{\"n\": 1}", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len;
        uint8_t *b = fx_op_msg_json(cases[i].json, 0, &len);
        mt_msg_t m;
        mt_reply_view_t r;
        cr_assert_eq(mt_msg_parse(b, len, NULL, &m), MT_MSG_OK);
        cr_assert_eq(mt_cmd_reply(&m, &r), MT_MSG_OK);
        cr_assert_eq(r.ok, cases[i].ok, "%s", cases[i].json);
        free(b);
    }
}

Test(command, op_reply_query_failure)
{
    bson_t *doc = fx_json("{\"$err\": \"bad query\", \"code\": 2}");
    size_t len;
    uint8_t *b = fx_op_reply(MT_MSG_REPLY_FLAG_QUERY_FAILURE, 0, &doc, 1, &len);
    mt_msg_t m;
    mt_reply_view_t r;
    cr_assert_eq(mt_msg_parse(b, len, NULL, &m), MT_MSG_OK);
    cr_assert_eq(mt_cmd_reply(&m, &r), MT_MSG_OK);
    cr_assert_not(r.ok);
    cr_assert_eq(r.code, 2);
    cr_assert_eq(r.response_flags, MT_MSG_REPLY_FLAG_QUERY_FAILURE);
    free(b);
    bson_destroy(doc);

    /* legacy query results: documents without "ok", a live cursor in the header */
    bson_t *docs[3] = {fx_json("{\"a\": 1}"), fx_json("{\"a\": 2}"), fx_json("{\"a\": 3}")};
    b = fx_op_reply(0, 77, docs, 3, &len);
    cr_assert_eq(mt_msg_parse(b, len, NULL, &m), MT_MSG_OK);
    cr_assert_eq(mt_cmd_reply(&m, &r), MT_MSG_OK);
    cr_assert(r.ok);
    cr_assert_eq(r.docs, 3);
    cr_assert_eq(r.cursor_id, 77);
    free(b);
    /* and no documents at all */
    b = fx_op_reply(0, 0, docs, 0, &len);
    cr_assert_eq(mt_msg_parse(b, len, NULL, &m), MT_MSG_OK);
    cr_assert_eq(mt_cmd_reply(&m, &r), MT_MSG_OK);
    cr_assert(r.ok);
    cr_assert_eq(r.docs, 0);
    cr_assert(bson_empty(&r.body));
    free(b);
    for (int i = 0; i < 3; i++)
        bson_destroy(docs[i]);
}

Test(command, exhaust_stream_of_replies)
{
    /* a streaming hello: one request with exhaustAllowed, replies with
     * moreToCome until the last one */
    size_t len;
    req_t q;
    req_built(
        &q,
        fx_op_msg_json("{\"hello\": 1, \"topologyVersion\": {\"processId\": {\"$oid\": "
                       "\"650000000000000000000000\"}, \"counter\": {\"$numberLong\": \"0\"}}, "
                       "\"maxAwaitTimeMS\": 10000, \"$db\": \"admin\"}",
                       MT_MSG_FLAG_EXHAUST_ALLOWED, &len),
        &len);
    cr_assert(q.view.exhaust_allowed);
    for (int i = 0; i < 3; i++) {
        bson_t *body = fx_json(
            "{\"isWritablePrimary\": true, \"topologyVersion\": {\"processId\": {\"$oid\": "
            "\"650000000000000000000000\"}, \"counter\": {\"$numberLong\": \"0\"}}, \"ok\": 1.0}");
        uint32_t flags = i < 2 ? MT_MSG_FLAG_MORE_TO_COME : 0;
        uint8_t *b = fx_op_msg(flags, 100 + i, q.view.request_id, body, NULL, NULL, 0, &len);
        mt_msg_t m;
        mt_reply_view_t r;
        cr_assert_eq(mt_msg_parse(b, len, NULL, &m), MT_MSG_OK);
        cr_assert_eq(mt_cmd_reply(&m, &r), MT_MSG_OK);
        cr_assert_eq(r.more_to_come, i < 2);
        cr_assert_eq(r.response_to, q.view.request_id);
        cr_assert(r.ok);
        free(b);
        bson_destroy(body);
    }
    free(q.buf);
}

Test(command, compressed_request_and_reply)
{
    req_t q;
    rep_t a;
    load_request(&q, "pymongo_zlib", "find", 0);
    cr_assert_eq(q.view.compressor, MT_COMPRESSOR_ZLIB);
    cr_assert_eq(q.view.opcode, MT_OP_MSG);
    cr_assert_str_eq(q.view.collection, "items");
    load_reply(&a, "pymongo_zlib", &q);
    cr_assert_eq(a.view.compressor, MT_COMPRESSOR_ZLIB);
    cr_assert(a.view.ok);
    cr_assert_eq(a.view.docs, 0);
    free(q.buf), free(a.buf);
    mt_msg_scratch_free(&reply_scratch);
}

/* ---- one pass: the body left to the views -------------------------------- */

/* Every captured message decodes to the same views whether mt_msg_parse
 * validated the body first or left it to the views (the proxy's way). */
Test(command, deferred_body_gives_the_same_views)
{
    char *names[FX_MAX_FILES];
    size_t n = fx_list("", ".bin", names, FX_MAX_FILES), requests = 0, replies = 0;
    cr_assert_gt(n, 100);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        uint8_t *buf = fx_read(names[i], &len);
        bool request = strstr(names[i], "-c2s.bin") != NULL;
        mt_msg_t a, b;
        mt_msg_err_t ea = mt_msg_parse_budget(buf, len, &scratch, NULL, 0, &a);
        mt_msg_err_t eb =
            mt_msg_parse_budget(buf, len, &reply_scratch, NULL, MT_MSG_DEFER_BODY, &b);
        cr_assert_eq(ea, eb, "%s", names[i]);
        if (ea == MT_MSG_OK && a.body) {
            cr_assert(a.body_checked, "%s", names[i]);
            cr_assert_not(b.body_checked, "%s", names[i]);
        }
        if (ea == MT_MSG_OK && request) {
            mt_cmd_view_t va, vb;
            mt_msg_err_t ra = mt_cmd_request(&a, NULL, &va), rb = mt_cmd_request(&b, NULL, &vb);
            cr_assert_eq(ra, rb, "%s", names[i]);
            if (ra == MT_MSG_OK) {
                cr_assert_str_eq(va.name, vb.name, "%s", names[i]);
                cr_assert_str_eq(va.db, vb.db, "%s", names[i]);
                cr_assert_str_eq(va.collection, vb.collection, "%s", names[i]);
                cr_assert_eq(va.shape_id, vb.shape_id, "%s", names[i]);
                cr_assert_eq(va.query_hash, vb.query_hash, "%s", names[i]);
                cr_assert_eq(va.statements, vb.statements, "%s", names[i]);
                cr_assert_eq(va.kind, vb.kind, "%s", names[i]);
                requests++;
            }
        } else if (ea == MT_MSG_OK) {
            mt_reply_view_t va, vb;
            mt_msg_err_t ra = mt_cmd_reply(&a, &va), rb = mt_cmd_reply(&b, &vb);
            cr_assert_eq(ra, rb, "%s", names[i]);
            if (ra == MT_MSG_OK) {
                cr_assert_eq(va.ok, vb.ok, "%s", names[i]);
                cr_assert_eq(va.docs, vb.docs, "%s", names[i]);
                cr_assert_eq(va.cursor_id, vb.cursor_id, "%s", names[i]);
                cr_assert_eq(va.has_n, vb.has_n, "%s", names[i]);
                cr_assert_eq(va.n, vb.n, "%s", names[i]);
                replies++;
            }
        }
        free(buf);
    }
    fx_list_free(names, n);
    cr_assert_gt(requests, 40);
    cr_assert_gt(replies, 40);
}

/* A body the views refuse: not well-formed past where mt_msg_parse looks
 * when it leaves the body to them. */
Test(command, deferred_body_is_validated_by_the_views)
{
    bson_t *cmd =
        fx_json("{\"find\": \"c\", \"filter\": {\"a\": {\"b\": 1}}, \"lsid\": {\"id\": 1}, "
                "\"$db\": \"d\"}");
    size_t len;
    uint8_t *buf = fx_op_msg(0, 1, 0, cmd, NULL, NULL, 0, &len);
    /* every byte of the body in turn set to 0x42: not a BSON type where it
     * lands on a type byte, a wrong length or key elsewhere */
    size_t body_len = cmd->len;
    int refused = 0, tried = 0;
    for (size_t off = 4; off + 1 < body_len; off++) {
        uint8_t *copy = malloc(len);
        memcpy(copy, buf, len);
        copy[21 + off] = 0x42; /* no such BSON type */
        bson_t b;
        size_t err_off;
        bool libbson_ok = bson_init_static(&b, copy + 21, body_len) &&
                          bson_validate(&b, BSON_VALIDATE_NONE, &err_off);
        mt_msg_t m;
        mt_cmd_view_t v;
        if (mt_msg_parse_budget(copy, len, NULL, NULL, MT_MSG_DEFER_BODY, &m) == MT_MSG_OK) {
            bool ours_ok = mt_cmd_request(&m, NULL, &v) == MT_MSG_OK;
            cr_assert(!ours_ok || libbson_ok, "byte %zu: accepted what libbson refuses", off);
            refused += !ours_ok;
            tried++;
        }
        free(copy);
    }
    cr_assert_gt(tried, 20);
    cr_assert_gt(refused, 10);
    free(buf);
    bson_destroy(cmd);
}
