/*
 * test_account: the proxy's decode step. Messages split at every point are
 * accounted once; a large request keeps only its front; what a session owes
 * (replies) is known from the bytes alone, with or without stats tracking
 * the connection; undecodable messages are counted, never fatal.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "stats_test_util.h"

static mt_stats_t *st;
static mt_account_t *account;
static mt_account_side_t req_side, rep_side;

static void setup(void)
{
    st = mt_stats_new(NULL, sc_now);
    cr_assert_not_null(st);
    account = mt_account_new(st);
    cr_assert_not_null(account);
    mt_account_side_init(&req_side);
    mt_account_side_init(&rep_side);
}

static void teardown(void)
{
    mt_account_side_release(account, &req_side);
    mt_account_side_release(account, &rep_side);
    cr_assert_eq(mt_account_assembly_bytes(account), 0, "every reassembly buffer returned");
    mt_account_free(account);
    mt_stats_free(st);
}

TestSuite(account, .init = setup, .fini = teardown);

static uint8_t *find_msg(int32_t rid, uint32_t flags, size_t *len)
{
    bson_t *cmd = sc_find("tv", "show", fx_json("{\"a\": 1}"), false, NULL);
    uint8_t *m = fx_op_msg(flags, rid, 0, cmd, NULL, NULL, 0, len);
    bson_destroy(cmd);
    return m;
}

/* Feeds m in pieces of at most piece bytes; returns the summed result. */
static mt_account_result_t feed(mt_account_side_t *side, mt_stats_conn_t *c, bool request,
                                const uint8_t *m, size_t len, size_t piece)
{
    mt_account_result_t sum = {0, 0}, one;
    for (size_t off = 0; off < len; off += piece) {
        size_t n = len - off < piece ? len - off : piece;
        mt_account_feed(account, side, c, request, m + off, n, sc_now, &one);
        sum.requests_expecting_reply += one.requests_expecting_reply;
        sum.final_replies += one.final_replies;
    }
    return sum;
}

Test(account, every_split_point_accounts_once)
{
    size_t len;
    uint8_t *m = find_msg(1, 0, &len);
    mt_stats_conn_t *c = mt_stats_conn_open(st, 1, "127.0.0.1:1", sc_now);
    for (size_t piece = 1; piece <= len; piece++) {
        mt_account_result_t r = feed(&req_side, c, true, m, len, piece);
        cr_assert_eq(r.requests_expecting_reply, 1, "piece %zu", piece);
    }
    cr_assert_eq(mt_stats_get(st, MT_STAT_COMMANDS), len, "one command per delivery");
    cr_assert_eq(mt_stats_get(st, MT_STAT_PARSE_ERRORS), 0);
    mt_stats_conn_close(c, sc_now);
    free(m);
}

Test(account, owed_replies_come_from_the_bytes_even_without_stats)
{
    size_t len;
    /* conn NULL: stats could not track this connection */
    uint8_t *m = find_msg(1, 0, &len);
    mt_account_result_t r = feed(&req_side, NULL, true, m, len, len);
    cr_assert_eq(r.requests_expecting_reply, 1, "a find is answered");
    free(m);

    m = find_msg(2, MT_MSG_FLAG_MORE_TO_COME, &len);
    r = feed(&req_side, NULL, true, m, len, 7);
    cr_assert_eq(r.requests_expecting_reply, 0, "a moreToCome request (w:0) is not answered");
    free(m);

    /* compressed: moreToCome is read after decompression */
    uint8_t *z;
    size_t zlen;
    m = find_msg(3, MT_MSG_FLAG_MORE_TO_COME, &len);
    cr_assert_eq(mt_msg_compress_message(MT_COMPRESSOR_ZLIB, m, len, &z, &zlen), 0);
    r = feed(&req_side, NULL, true, z, zlen, zlen);
    cr_assert_eq(r.requests_expecting_reply, 0, "compressed w:0 write");
    free(z);
    free(m);

    /* legacy OP_INSERT (2002) is never answered; OP_QUERY is */
    uint8_t legacy[21] = {21, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xd2, 0x07, 0, 0, 0, 0, 0, 0, 0};
    r = feed(&req_side, NULL, true, legacy, sizeof legacy, sizeof legacy);
    cr_assert_eq(r.requests_expecting_reply, 0);
    m = fx_op_query_json("admin.$cmd", 0, -1, "{\"ismaster\": 1}", &len);
    r = feed(&req_side, NULL, true, m, len, 3);
    cr_assert_eq(r.requests_expecting_reply, 1);
    free(m);

    /* exhaust: replies with moreToCome are not the last */
    bson_t *ok = sc_ok();
    m = fx_op_msg(MT_MSG_FLAG_MORE_TO_COME, 90, 4, ok, NULL, NULL, 0, &len);
    r = feed(&rep_side, NULL, false, m, len, len);
    cr_assert_eq(r.final_replies, 0);
    free(m);
    m = fx_op_msg(0, 91, 90, ok, NULL, NULL, 0, &len);
    r = feed(&rep_side, NULL, false, m, len, 5);
    cr_assert_eq(r.final_replies, 1);
    free(m);
    bson_destroy(ok);
}

Test(account, a_large_request_keeps_only_its_front)
{
    /* an insert of 400 documents of 10 KiB each in a kind-1 sequence (4 MB) */
    enum { NDOCS = 400 };
    bson_t *docs[NDOCS];
    char *pad = malloc(10240);
    memset(pad, 'x', 10239);
    pad[10239] = '\0';
    for (int i = 0; i < NDOCS; i++) {
        docs[i] = bson_new();
        BSON_APPEND_INT32(docs[i], "_id", i);
        BSON_APPEND_UTF8(docs[i], "pad", pad);
    }
    free(pad);
    bson_t *cmd = fx_json("{\"insert\": \"big\", \"$db\": \"tv\"}");
    size_t len;
    uint8_t *m = fx_op_msg(0, 5, 0, cmd, "documents", docs, NDOCS, &len);
    mt_stats_conn_t *c = mt_stats_conn_open(st, 1, "127.0.0.1:1", sc_now);
    size_t most = 0;
    for (size_t off = 0; off < len; off += 65536) {
        mt_account_result_t r;
        size_t n = len - off < 65536 ? len - off : 65536;
        mt_account_feed(account, &req_side, c, true, m + off, n, sc_now, &r);
        size_t held = mt_account_assembly_bytes(account);
        most = held > most ? held : most;
    }
    cr_assert_leq(most, MT_ACCOUNT_PREFIX_MIN, "held %zu bytes of a %zu-byte message", most, len);
    cr_assert_eq(mt_stats_get(st, MT_STAT_COMMANDS), 1, "the insert was accounted");
    cr_assert_eq(mt_stats_get(st, MT_STAT_PARSE_ERRORS), 0);
    char *json = mt_stats_json(st, sc_now, 10);
    bson_t *doc = fx_json(json);
    cr_assert_eq(sc_int(doc, "shapes.0.bytes_in"), (int64_t)len, "bytes are the wire size");
    cr_assert_str_eq(sc_str(doc, "shapes.0.collection"), "big");
    bson_destroy(doc);
    bson_free(json);
    mt_stats_conn_close(c, sc_now);
    free(m);
    bson_destroy(cmd);
    for (int i = 0; i < NDOCS; i++)
        bson_destroy(docs[i]);
}

/* Replies are kept whole, and a reply's front is reserved when its head
 * arrives: with one side in the middle of a reply of more than half the
 * budget, another such reply is shed at its head, none of it copied. */
Test(account, reassembly_past_the_budget_is_shed_before_it_is_copied)
{
    size_t big = MT_ACCOUNT_ASSEMBLY_BUDGET / 2 + 4096;
    mt_account_side_t other;
    mt_account_side_init(&other);
    uint8_t *m = calloc(1, big);
    mt_wire_put_le32(m, (uint32_t)big);
    mt_wire_put_le32(m + 12, MT_OP_MSG);
    mt_account_result_t r;
    mt_account_feed(account, &rep_side, NULL, false, m, 4096, sc_now, &r);
    size_t kept = mt_account_assembly_bytes(account);
    cr_assert_geq(kept, big, "the front is reserved whole");
    mt_account_feed(account, &other, NULL, false, m, 4096, sc_now, &r);
    cr_assert_eq(mt_stats_get(st, MT_STAT_ACCOUNTING_SHED), 1, "shed at its head");
    cr_assert_eq(mt_account_assembly_bytes(account), kept, "nothing taken for the shed one");
    mt_account_feed(account, &other, NULL, false, m + 4096, big - 4096, sc_now, &r);
    cr_assert_eq(r.final_replies, 1, "a shed reply still settles the session");
    mt_account_feed(account, &rep_side, NULL, false, m + 4096, big - 4096, sc_now, &r);
    cr_assert_eq(r.final_replies, 1);
    cr_assert_eq(mt_stats_get(st, MT_STAT_ACCOUNTING_SHED), 1);
    cr_assert_eq(mt_stats_get(st, MT_STAT_PARSE_ERRORS), 1, "the kept one decoded (badly)");
    mt_account_side_release(account, &other);
    free(m);
}

Test(account, undecodable_messages_are_counted)
{
    /* a valid header, then a section kind 7 */
    uint8_t bad[26] = {26,   0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xdd,
                       0x07, 0, 0, 0, 0, 0, 0, 7, 5, 0, 0, 0, 0};
    mt_account_result_t r;
    mt_account_feed(account, &req_side, NULL, true, bad, sizeof bad, sc_now, &r);
    cr_assert_eq(r.requests_expecting_reply, 1, "an OP_MSG without moreToCome is answered");
    uint8_t unknown[20] = {20, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x0f, 0x27, 0, 0, 0, 0, 0, 0};
    mt_account_feed(account, &req_side, NULL, true, unknown, sizeof unknown, sc_now, &r);
    cr_assert_eq(r.requests_expecting_reply, 0, "opcode 9999: no reply to wait for");
    cr_assert_eq(mt_stats_get(st, MT_STAT_PARSE_ERRORS), 1);
    cr_assert_eq(mt_stats_get(st, MT_STAT_MESSAGES_UNKNOWN), 1);
}

/* A compressed insert of `docs` documents of `size` bytes each (string of 'y'). */
static uint8_t *zipped_insert(int compressor, int32_t rid, int docs, size_t size, size_t *len)
{
    bson_t *d[8];
    char *s = malloc(size);
    memset(s, 'y', size - 1);
    s[size - 1] = '\0';
    for (int i = 0; i < docs; i++) {
        d[i] = bson_new();
        BSON_APPEND_UTF8(d[i], "s", s);
    }
    bson_t *cmd = fx_json("{\"insert\": \"zipped\", \"$db\": \"tv\"}");
    size_t plen;
    uint8_t *plain = fx_op_msg(0, rid, 0, cmd, "documents", d, (size_t)docs, &plen), *z;
    cr_assert_eq(mt_msg_compress_message(compressor, plain, plen, &z, len), 0);
    free(plain);
    free(s);
    bson_destroy(cmd);
    for (int i = 0; i < docs; i++)
        bson_destroy(d[i]);
    return z;
}

/* One loop iteration decompresses at most MT_ACCOUNT_INFLATE_BUDGET bytes
 * for every connection together; later messages of the iteration are
 * forwarded and counted, and the next iteration starts whole again. */
Test(account, decompression_stops_at_the_iteration_budget)
{
    mt_stats_conn_t *c = mt_stats_conn_open(st, 1, "127.0.0.1:1", sc_now);
    size_t len, each = 900000; /* under the per-message limit: decompressed whole */
    uint8_t *z = zipped_insert(MT_COMPRESSOR_ZLIB, 1, 1, each, &len);
    size_t fit = MT_ACCOUNT_INFLATE_BUDGET / each, sent = fit + 3;
    mt_account_result_t r;
    for (size_t i = 0; i < sent; i++) {
        mt_wire_put_le32(z + 4, (uint32_t)(10 + i));
        mt_account_feed(account, &req_side, c, true, z, len, sc_now, &r);
        cr_assert_eq(r.requests_expecting_reply, 1, "message %zu is still owed a reply", i);
    }
    uint64_t skipped = mt_stats_get(st, MT_STAT_DECOMPRESS_SKIPPED);
    cr_assert_eq(skipped, sent - fit, "%llu", (unsigned long long)skipped);
    /* what is left of the budget still reads each command: only the
     * documents past it are not decompressed */
    cr_assert_eq(mt_stats_get(st, MT_STAT_COMMANDS), sent);
    cr_assert_eq(mt_stats_get(st, MT_STAT_PARSE_ERRORS), 0, "skipped is not an error");
    mt_account_refill(account);
    mt_account_feed(account, &req_side, c, true, z, len, sc_now, &r);
    cr_assert_eq(mt_stats_get(st, MT_STAT_DECOMPRESS_SKIPPED), skipped, "a new iteration");
    cr_assert_eq(mt_stats_get(st, MT_STAT_COMMANDS), sent + 1);
    mt_stats_conn_close(c, sc_now);
    free(z);
}

/* A reply whose document is too large to decompress settles its request
 * (latency known) without a guess at its outcome or its documents. */
Test(account, a_reply_not_decompressed_settles_its_request)
{
    mt_stats_conn_t *c = mt_stats_conn_open(st, 1, "127.0.0.1:1", sc_now);
    size_t len;
    uint8_t *m = find_msg(41, 0, &len);
    mt_account_result_t r;
    mt_account_feed(account, &req_side, c, true, m, len, sc_now, &r);
    free(m);
    bson_t *docs[3];
    char *s = malloc(600000);
    memset(s, 'z', 599999);
    s[599999] = '\0';
    for (int i = 0; i < 3; i++) {
        docs[i] = bson_new();
        BSON_APPEND_UTF8(docs[i], "s", s);
    }
    bson_t *reply = sc_cursor_reply("tv.show", docs, 3, 0, true);
    uint8_t *plain = fx_op_msg(0, 42, 41, reply, NULL, NULL, 0, &len), *z;
    size_t zlen;
    cr_assert_eq(mt_msg_compress_message(MT_COMPRESSOR_ZSTD, plain, len, &z, &zlen), 0);
    sc_now += 3 * MS;
    mt_account_feed(account, &rep_side, c, false, z, zlen, sc_now, &r);
    cr_assert_eq(r.final_replies, 1);
    cr_assert_eq(mt_stats_get(st, MT_STAT_DECOMPRESS_SKIPPED), 1);
    cr_assert_eq(mt_stats_get(st, MT_STAT_PARSE_ERRORS), 0);
    char *json = mt_stats_json(st, sc_now, 10);
    bson_t *doc = fx_json(json);
    cr_assert_eq(sc_int(doc, "pending_requests"), 0, "the request is settled");
    cr_assert_eq(sc_int(doc, "replies_unmatched"), 0);
    cr_assert_eq(sc_int(doc, "shapes.0.errors"), 0, "an unread reply is not a failure");
    cr_assert_eq(sc_int(doc, "shapes.0.docs_returned"), 0, "nor a count of documents");
    cr_assert_eq(sc_int(doc, "shapes.0.bytes_out"), (int64_t)zlen);
    bson_destroy(doc);
    bson_free(json);
    mt_stats_conn_close(c, sc_now);
    free(plain);
    free(z);
    free(s);
    bson_destroy(reply);
    for (int i = 0; i < 3; i++)
        bson_destroy(docs[i]);
}
