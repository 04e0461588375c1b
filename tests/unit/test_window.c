/*
 * window: the request-window rules of SPEC section 4 through the public API
 * with real message bytes: the idle gap (measured with nothing in flight),
 * window-max, keyed windows across connections, getMore following its
 * cursor, monitoring commands that neither open nor extend, connection close,
 * the per-window command bound, the closed windows kept (--keep-windows, the
 * windows of kept findings, the total command bound), and the /api/windows,
 * /api/windows/ID and /api/connections renderings.
 */
#include "stats_int.h"
#include "window.h"
#include "stats_test_util.h"

static mt_stats_t *st;

/* The key of the commands added to a window directly. */
static const mt_window_names_t find_names = {"find", "d", "c", "{}"};

static void setup_gap_max(uint64_t gap_ms, uint64_t max_ms)
{
    mt_stats_config_t cfg;
    mt_stats_config_defaults(&cfg);
    cfg.window_gap_ms = gap_ms;
    cfg.window_max_ms = max_ms;
    st = mt_stats_new(&cfg, sc_now);
    cr_assert_not_null(st);
}

static void setup(void)
{
    setup_gap_max(100, 30000);
}

static void teardown(void)
{
    mt_stats_free(st);
}

TestSuite(window, .init = setup, .fini = teardown);

static int64_t stat_int(const char *path)
{
    char *json = mt_stats_json(st, sc_now, 0);
    bson_t *doc = sc_parse(json);
    int64_t v = sc_int(doc, path);
    bson_destroy(doc);
    bson_free(json);
    return v;
}

static int64_t open_windows(void)
{
    return stat_int("windows.open");
}

static int64_t closed_windows(void)
{
    return (int64_t)mt_stats_get(st, MT_STAT_WINDOWS);
}

/* Each with its own value, so that none is a repeated read. */
static void find_one(sc_conn_t *k, const char *coll, const char *comment, uint64_t latency)
{
    static int value;
    bson_t *filter = bson_new();
    BSON_APPEND_INT32(filter, "a", ++value);
    sc_roundtrip(k, sc_find("db", coll, filter, false, comment),
                 sc_cursor_reply("db.x", NULL, 0, 0, true), latency);
}

static void tick_after(uint64_t ns)
{
    sc_now += ns;
    mt_stats_tick(st, sc_now);
}

Test(window, commands_within_the_gap_share_a_window)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    for (int i = 0; i < 5; i++) {
        find_one(&k, "c", NULL, 1 * MS);
        tick_after(90 * MS); /* idle 90 ms < 100 ms */
    }
    cr_assert_eq(open_windows(), 1);
    cr_assert_eq(closed_windows(), 0);
    tick_after(10 * MS); /* idle 100 ms: the gap */
    cr_assert_eq(open_windows(), 0);
    cr_assert_eq(closed_windows(), 1);
    char *json = mt_stats_windows_json(st, 10, false, NULL);
    bson_t *doc = sc_parse(json);
    cr_assert_eq(sc_array_len(doc, "windows"), 1);
    cr_assert_eq(sc_array_len(doc, "windows.0.commands"), 5);
    cr_assert_eq(sc_int(doc, "windows.0.connection_id"), 1);
    cr_assert(sc_is_null(doc, "windows.0.key"));
    cr_assert_float_eq(sc_double(doc, "windows.0.duration_ms"), 4 * 91 + 1, 1e-9);
    cr_assert_str_eq(sc_str(doc, "windows.0.commands.0.command"), "find");
    cr_assert_str_eq(sc_str(doc, "windows.0.commands.0.db"), "db");
    cr_assert_str_eq(sc_str(doc, "windows.0.commands.0.collection"), "c");
    cr_assert_str_eq(sc_str(doc, "windows.0.commands.0.shape"), "{\"a\": \"?\"}");
    cr_assert_float_eq(sc_double(doc, "windows.0.commands.0.duration_ms"), 1.0, 1e-9);
    cr_assert_eq(sc_int(doc, "windows.0.commands.0.docs"), 0);
    cr_assert_eq(sc_int(doc, "windows.0.findings"), 0);
    bson_destroy(doc);
    bson_free(json);
    sc_close(&k);
}

Test(window, a_command_after_the_gap_opens_a_new_window_before_any_tick)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    find_one(&k, "c", NULL, 1 * MS);
    sc_now += 100 * MS; /* no tick */
    find_one(&k, "c", NULL, 1 * MS);
    cr_assert_eq(closed_windows(), 1);
    cr_assert_eq(open_windows(), 1);
    sc_close(&k);
}

Test(window, a_request_in_flight_holds_the_window_open)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    bson_t *cmd = sc_find("db", "slow", bson_new(), false, NULL);
    int32_t rid = sc_send(&k, cmd);
    bson_destroy(cmd);
    tick_after(400 * MS);
    cr_assert_eq(open_windows(), 1, "idle means nothing in flight");
    bson_t *r = sc_cursor_reply("db.slow", NULL, 0, 0, true);
    sc_reply(&k, rid, r);
    bson_destroy(r);
    tick_after(99 * MS);
    cr_assert_eq(open_windows(), 1);
    tick_after(1 * MS);
    cr_assert_eq(open_windows(), 0);
    char *json = mt_stats_windows_json(st, 1, false, NULL);
    bson_t *doc = sc_parse(json);
    cr_assert_float_eq(sc_double(doc, "windows.0.duration_ms"), 400.0, 1e-9);
    cr_assert_float_eq(sc_double(doc, "windows.0.commands.0.duration_ms"), 400.0, 1e-9);
    bson_destroy(doc);
    bson_free(json);
    sc_close(&k);
}

Test(window, window_max_cuts_busy_connections)
{
    teardown();
    setup_gap_max(100, 300);
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    for (int i = 0; i < 20; i++) { /* a command every 50 ms for 1 s */
        find_one(&k, "c", NULL, 1 * MS);
        tick_after(49 * MS);
    }
    cr_assert_geq(closed_windows(), 3);
    cr_assert_leq(closed_windows(), 4);
    char *json = mt_stats_windows_json(st, 0, false, NULL);
    bson_t *doc = sc_parse(json);
    uint32_t n = sc_array_len(doc, "windows");
    cr_assert_eq((int64_t)n, closed_windows());
    for (uint32_t i = 0; i < n; i++) {
        char path[64];
        snprintf(path, sizeof path, "windows.%u.duration_ms", i);
        cr_assert_leq(sc_double(doc, path), 300.0);
    }
    /* newest first */
    cr_assert_gt(sc_int(doc, "windows.0.id"), sc_int(doc, "windows.1.id"));
    bson_destroy(doc);
    bson_free(json);
    sc_close(&k);
}

Test(window, keyed_window_spans_connections)
{
    sc_conn_t a = sc_open(st, 1, "127.0.0.1:1");
    sc_conn_t b = sc_open(st, 2, "127.0.0.1:2");
    find_one(&a, "c", "mongotap:req-7", 1 * MS);
    sc_now += 60 * MS;
    find_one(&b, "d", "mongotap:req-7", 1 * MS);
    find_one(&b, "e", NULL, 1 * MS); /* untagged, b not idle: joins req-7 (a lazy load) */
    tick_after(90 * MS);             /* a idle 151 ms, the keyed window only 90 ms */
    cr_assert_eq(open_windows(), 1, "only the keyed window");
    /* a request in flight on b keeps the keyed window open */
    bson_t *cmd = sc_find("db", "f", bson_new(), false, "mongotap:req-7");
    int32_t rid = sc_send(&b, cmd);
    bson_destroy(cmd);
    tick_after(200 * MS);
    cr_assert_eq(open_windows(), 1, "the keyed one waits for its reply");
    bson_t *r = sc_cursor_reply("db.f", NULL, 0, 0, true);
    sc_reply(&b, rid, r);
    bson_destroy(r);
    tick_after(100 * MS);
    cr_assert_eq(open_windows(), 0);
    /* b idle past the gap: its next untagged command is its own again */
    find_one(&b, "g", NULL, 1 * MS);
    tick_after(100 * MS);

    char *json = mt_stats_windows_json(st, 0, false, NULL);
    bson_t *doc = sc_parse(json);
    cr_assert_eq(sc_array_len(doc, "windows"), 2);
    /* newest first */
    cr_assert(sc_is_null(doc, "windows.0.key"));
    cr_assert_eq(sc_int(doc, "windows.0.connection_id"), 2);
    cr_assert_eq(sc_array_len(doc, "windows.0.commands"), 1);
    cr_assert_str_eq(sc_str(doc, "windows.0.commands.0.collection"), "g");
    cr_assert_str_eq(sc_str(doc, "windows.1.key"), "mongotap:req-7");
    cr_assert_eq(sc_int(doc, "windows.1.connection_id"), 1);
    cr_assert_eq(sc_array_len(doc, "windows.1.commands"), 4);
    cr_assert_str_eq(sc_str(doc, "windows.1.commands.1.collection"), "d");
    cr_assert_str_eq(sc_str(doc, "windows.1.commands.2.collection"), "e");
    bson_destroy(doc);
    bson_free(json);
    sc_close(&a);
    sc_close(&b);
}

Test(window, another_key_takes_over_untagged_commands)
{
    sc_conn_t a = sc_open(st, 1, "127.0.0.1:1");
    find_one(&a, "c", "mongotap:one", 1 * MS);
    find_one(&a, "c", NULL, 1 * MS);
    find_one(&a, "c", "mongotap:two", 1 * MS);
    find_one(&a, "d", NULL, 1 * MS);
    tick_after(200 * MS);
    char *json = mt_stats_windows_json(st, 0, false, NULL);
    bson_t *doc = sc_parse(json);
    cr_assert_eq(sc_array_len(doc, "windows"), 2);
    cr_assert_eq(sc_array_len(doc, "windows.0.commands"), 2);
    cr_assert_eq(sc_array_len(doc, "windows.1.commands"), 2);
    bson_destroy(doc);
    bson_free(json);
    sc_close(&a);
}

Test(window, getmore_follows_its_cursor)
{
    sc_conn_t a = sc_open(st, 1, "127.0.0.1:1");
    bson_t *d = fx_json("{\"x\": 1}");
    sc_roundtrip(&a, sc_find("db", "c", bson_new(), false, "mongotap:page"),
                 sc_cursor_reply("db.c", &d, 1, 99, true), 1 * MS);
    sc_roundtrip(&a, sc_getmore("db", "c", 99), sc_cursor_reply("db.c", &d, 1, 0, false), 1 * MS);
    bson_destroy(d);
    tick_after(200 * MS);
    cr_assert_eq(closed_windows(), 1, "no per-connection window was opened");
    char *json = mt_stats_windows_json(st, 0, false, NULL);
    bson_t *doc = sc_parse(json);
    cr_assert_str_eq(sc_str(doc, "windows.0.key"), "mongotap:page");
    cr_assert_eq(sc_array_len(doc, "windows.0.commands"), 2);
    cr_assert_str_eq(sc_str(doc, "windows.0.commands.1.command"), "getMore");
    cr_assert_str_eq(sc_str(doc, "windows.0.commands.1.collection"), "c");
    cr_assert_eq(sc_int(doc, "windows.0.commands.0.docs"), 2, "first batch plus getMore");
    bson_destroy(doc);
    bson_free(json);
    sc_close(&a);
}

static void monitoring_round(sc_conn_t *k)
{
    const char *cmds[] = {
        "{\"hello\": 1, \"$db\": \"admin\"}",
        "{\"isMaster\": 1, \"$db\": \"admin\"}",
        "{\"ping\": 1, \"$db\": \"admin\"}",
        "{\"buildInfo\": 1, \"$db\": \"admin\"}",
        "{\"saslStart\": 1, \"mechanism\": \"SCRAM-SHA-256\", \"$db\": \"admin\"}",
        "{\"saslContinue\": 1, \"conversationId\": 1, \"$db\": \"admin\"}",
        "{\"endSessions\": [], \"$db\": \"admin\"}",
        "{\"getLastError\": 1, \"$db\": \"admin\"}",
        "{\"hello\": 1, \"topologyVersion\": {\"counter\": 0}, \"$db\": \"admin\"}",
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        sc_roundtrip(k, fx_json(cmds[i]), sc_ok(), 100 * US);
    /* the legacy handshake: OP_QUERY ismaster on admin.$cmd */
    size_t len;
    uint8_t *m = fx_op_query_json("admin.$cmd", 0, -1, "{\"ismaster\": 1}", &len);
    sc_deliver(k->st, k->c, true, m, len, sc_now);
    free(m);
}

Test(window, monitoring_commands_do_not_open_windows)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    for (int i = 0; i < 3; i++) {
        monitoring_round(&k);
        tick_after(200 * MS);
    }
    cr_assert_eq(open_windows(), 0);
    cr_assert_eq(closed_windows(), 0);
    cr_assert_eq(stat_int("commands"), 30, "but they are counted");
    sc_close(&k);
    cr_assert_eq(closed_windows(), 0);
}

Test(window, monitoring_commands_do_not_extend_windows)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    find_one(&k, "c", NULL, 2 * MS);
    for (int i = 0; i < 6; i++) {
        tick_after(40 * MS);
        monitoring_round(&k);
    }
    /* 240 ms of pings after the find: the window closed at the find's gap */
    cr_assert_eq(closed_windows(), 1);
    char *json = mt_stats_windows_json(st, 0, false, NULL);
    bson_t *doc = sc_parse(json);
    cr_assert_eq(sc_array_len(doc, "windows.0.commands"), 1);
    cr_assert_float_eq(sc_double(doc, "windows.0.duration_ms"), 2.0, 1e-9);
    bson_destroy(doc);
    bson_free(json);
    sc_close(&k);
}

Test(window, closing_the_connection_closes_its_window)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    find_one(&k, "c", NULL, 1 * MS);
    cr_assert_eq(open_windows(), 1);
    sc_close(&k);
    cr_assert_eq(open_windows(), 0);
    cr_assert_eq(closed_windows(), 1);
}

Test(window, connection_close_with_requests_in_flight)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    sc_conn_t other = sc_open(st, 2, "127.0.0.1:2");
    bson_t *cmd = sc_find("db", "c", bson_new(), false, "mongotap:shared");
    sc_send(&k, cmd);
    sc_send(&other, cmd);
    bson_destroy(cmd);
    sc_close(&k);
    /* the keyed window still waits for other's reply, not for k's */
    tick_after(200 * MS);
    cr_assert_eq(open_windows(), 1);
    cr_assert_eq(stat_int("pending_requests"), 1);
    sc_close(&other);
    tick_after(200 * MS);
    cr_assert_eq(open_windows(), 0);
    cr_assert_eq(stat_int("pending_requests"), 0);
}

Test(window, commands_per_window_are_bounded)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    bson_t *r = sc_cursor_reply("db.c", NULL, 0, 0, true);
    bson_t *cmd = sc_find("db", "c", fx_json("{\"a\": 1}"), false, NULL);
    int total = MT_WINDOW_MAX_COMMANDS + 50;
    for (int i = 0; i < total; i++) {
        int32_t rid = sc_send(&k, cmd);
        sc_now += 1 * US;
        sc_reply(&k, rid, r);
    }
    bson_destroy(cmd);
    bson_destroy(r);
    tick_after(200 * MS);
    char *json = mt_stats_windows_json(st, 0, false, NULL);
    bson_t *doc = sc_parse(json);
    cr_assert_eq(sc_int(doc, "windows.0.total_commands"), total);
    cr_assert_eq(sc_array_len(doc, "windows.0.commands"), MT_WINDOW_CLOSED_COMMANDS);
    bson_destroy(doc);
    bson_free(json);
    sc_close(&k);
}

/* The key paths a window stores once per shape: the next lookups of the
 * newest lookup's shape point at the same strings, whatever came between. */
Test(window, lookups_of_one_shape_share_their_key_paths)
{
    static const char *const filters[] = {"{\"a\": 1}", "{}", "{\"a\": 2}", "{\"b\": 3}",
                                          "{\"a\": 4}"};
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    for (size_t i = 0; i < sizeof filters / sizeof *filters; i++)
        sc_roundtrip(&k, sc_find("db", "c", fx_json(filters[i]), false, NULL),
                     sc_cursor_reply("db.c", NULL, 0, 0, true), 1 * MS);
    const mt_window_t *w = k.c->window;
    cr_assert_not_null(w);
    cr_assert_eq(w->ncmds, 5);
    cr_assert_eq(w->cmds[1].nterms, 0, "{} is no lookup");
    cr_assert_eq(w->cmds[2].keys[0], w->cmds[0].keys[0],
                 "shared across a command of another shape");
    cr_assert_eq(w->cmds[2].keys, w->cmds[0].keys, "one array of paths");
    cr_assert_str_eq(w->cmds[3].keys[0], "b");
    cr_assert_str_eq(w->cmds[4].keys[0], "a");
    cr_assert_eq(w->cmds[4].nterms, 1);
    sc_close(&k);
}

Test(window, closed_windows_are_bounded)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    for (int i = 0; i < MT_WINDOW_KEEP_DEFAULT + 20; i++) {
        find_one(&k, "c", NULL, 1 * MS);
        tick_after(150 * MS);
    }
    cr_assert_eq(closed_windows(), MT_WINDOW_KEEP_DEFAULT + 20);
    char *json = mt_stats_windows_json(st, 0, false, NULL);
    bson_t *doc = sc_parse(json);
    cr_assert_eq(sc_array_len(doc, "windows"), MT_WINDOW_KEEP_DEFAULT);
    cr_assert_eq(sc_int(doc, "kept"), MT_WINDOW_KEEP_DEFAULT);
    bson_destroy(doc);
    bson_free(json);
    json = mt_stats_windows_json(st, 3, false, NULL);
    doc = sc_parse(json);
    cr_assert_eq(sc_array_len(doc, "windows"), 3);
    cr_assert_eq(sc_int(doc, "windows.0.id"), MT_WINDOW_KEEP_DEFAULT + 20);
    bson_destroy(doc);
    bson_free(json);
    sc_close(&k);
}

Test(window, connections_show_their_open_window)
{
    sc_conn_t k = sc_open(st, 4, "127.0.0.1:4444");
    sc_handshake(&k, "nodejs|Mongoose", "6.3.0|8.0.0", "shop");
    char *json = mt_stats_connections_json(st, sc_now);
    bson_t *doc = sc_parse(json);
    cr_assert_eq(sc_array_len(doc, "connections"), 1);
    cr_assert_eq(sc_int(doc, "connections.0.id"), 4);
    cr_assert_str_eq(sc_str(doc, "connections.0.client"), "127.0.0.1:4444");
    cr_assert_str_eq(sc_str(doc, "connections.0.app_name"), "shop");
    cr_assert_str_eq(sc_str(doc, "connections.0.driver"), "nodejs|Mongoose 6.3.0|8.0.0");
    cr_assert_eq(sc_int(doc, "connections.0.commands"), 1);
    cr_assert(sc_is_null(doc, "connections.0.window"));
    bson_destroy(doc);
    bson_free(json);

    find_one(&k, "c", NULL, 1 * MS);
    find_one(&k, "c", NULL, 1 * MS);
    json = mt_stats_connections_json(st, sc_now);
    doc = sc_parse(json);
    cr_assert_eq(sc_int(doc, "connections.0.window.id"), 1);
    cr_assert_eq(sc_int(doc, "connections.0.window.commands"), 2);
    cr_assert(sc_is_null(doc, "connections.0.window.key"));
    cr_assert_eq(strlen(sc_str(doc, "connections.0.window.started_at")), 24);
    bson_destroy(doc);
    bson_free(json);
    sc_close(&k);

    json = mt_stats_connections_json(st, sc_now);
    doc = sc_parse(json);
    cr_assert_eq(sc_array_len(doc, "connections"), 0);
    bson_destroy(doc);
    bson_free(json);
}

/* An array of n documents {_id: i, pad: <size bytes>}. */
static bson_t *batch(uint32_t n, size_t pad)
{
    char *s = malloc(pad + 1);
    memset(s, 'p', pad);
    s[pad] = '\0';
    bson_t *arr = bson_new(), d;
    for (uint32_t i = 0; i < n; i++) {
        char k[16];
        const char *key;
        bson_uint32_to_string(i, &key, k, sizeof k);
        BSON_APPEND_DOCUMENT_BEGIN(arr, key, &d);
        BSON_APPEND_INT32(&d, "_id", (int32_t)i);
        BSON_APPEND_UTF8(&d, "pad", s);
        bson_append_document_end(arr, &d);
    }
    free(s);
    return arr;
}

/* A registry with one open window holding one find, command 0, for
 * evidence. */
static mt_window_t *open_evidence_window(mt_window_reg_t *reg)
{
    mt_window_rules_t rules = {.gap_ns = 100 * MS, .max_ns = 30000 * MS};
    mt_window_reg_init(reg, &rules);
    mt_window_t *w = mt_window_reg_open(reg, 1, NULL, NULL, sc_now, 0, "a", "", "");
    cr_assert_not_null(w);
    mt_window_cmd_t c = {.own = &find_names, .kind = MT_CMD_FIND};
    cr_assert_eq(mt_window_add_cmd(w, &c), 0);
    return w;
}

/* Replies hand their documents over framed but unread, and so they are
 * kept: a document malformed inside is copied as it came (the detectors
 * check each one when they read it); what is not a document is not kept. */
Test(window, evidence_keeps_documents_as_they_are_framed)
{
    mt_window_reg_t reg;
    mt_window_t *w = open_evidence_window(&reg);
    bson_t *arr = fx_json("{\"0\": {\"a\": 1}, \"1\": {\"b\": 1}, \"2\": 7, \"3\": {\"c\": 1}}");
    uint8_t *bytes = bson_malloc(arr->len);
    memcpy(bytes, bson_get_data(arr), arr->len);
    uint8_t *bad_type = memmem(bytes, arr->len,
                               "\x10"
                               "b",
                               3);
    cr_assert_not_null(bad_type);
    *bad_type = 0x42; /* no such BSON type */
    mt_window_add_evidence(w, 0, bytes, arr->len, 4);
    cr_assert_eq(w->ev_docs, 4);
    cr_assert_eq(w->nsegs, 1);
    cr_assert(w->segs[0].array, "a batch that fits is kept whole");
    cr_assert_eq(w->segs[0].len, arr->len);
    cr_assert_eq(memcmp(w->ev, bytes, arr->len), 0, "as it came, the second document too");

    /* past the bound on documents, one at a time: what is not a document is not kept */
    w->ev_docs = MT_WINDOW_EVIDENCE_DOCS - 3;
    size_t before = w->ev_len;
    mt_window_add_evidence(w, 0, bytes, arr->len, 4);
    cr_assert_eq(w->ev_docs, MT_WINDOW_EVIDENCE_DOCS);
    cr_assert_eq(w->nsegs, 2);
    cr_assert_not(w->segs[1].array);
    cr_assert_eq(w->ev_len - before, 3 * 12u, "the three documents, not the number");
    cr_assert_eq(w->ev[before + 12 + 4], 0x42, "the second as it came");
    cr_assert_eq(w->ev[before + 24 + 5], 'c');
    bson_free(bytes);
    bson_destroy(arr);
    mt_window_reg_clear(&reg);
}

Test(window, evidence_is_bounded_and_budgeted)
{
    mt_window_reg_t reg;
    mt_window_t *w = open_evidence_window(&reg);
    mt_window_cmd_t c = {.own = &find_names, .kind = MT_CMD_FIND};
    cr_assert_eq(reg.budget.cmds, 1);
    /* by documents: 1.2 times the bound offered, the bound kept */
    uint32_t n = MT_WINDOW_EVIDENCE_DOCS * 6 / 10;
    bson_t *small = batch(n, 10);
    mt_window_add_evidence(w, 0, bson_get_data(small), small->len, n);
    mt_window_add_evidence(w, 0, bson_get_data(small), small->len, n);
    mt_window_add_evidence(w, 0, bson_get_data(small), small->len, n);
    bson_destroy(small);
    cr_assert_eq(w->ev_docs, MT_WINDOW_EVIDENCE_DOCS);
    cr_assert_eq(w->nsegs, 2, "the first batch whole, then as many of the second's as fit");
    cr_assert_eq(reg.budget.ev_bytes, w->ev_len);
    mt_window_reg_detach(&reg, w, sc_now);
    cr_assert_eq(reg.budget.cmds, 0);
    cr_assert_eq(reg.budget.ev_bytes, 0);
    mt_window_reg_retire(&reg, w);
    cr_assert_null(w->ev, "evidence freed once analysed");

    /* by bytes: three times the bound offered, at most the bound kept */
    w = mt_window_reg_open(&reg, 1, NULL, NULL, sc_now, 0, "a", "", "");
    mt_window_add_cmd(w, &c);
    bson_t *big = batch(3 * MT_WINDOW_EVIDENCE_BYTES / (100 * 1024), 100 * 1024);
    mt_window_add_evidence(w, 0, bson_get_data(big), big->len,
                           3 * MT_WINDOW_EVIDENCE_BYTES / (100 * 1024));
    bson_destroy(big);
    cr_assert_leq(w->ev_len, MT_WINDOW_EVIDENCE_BYTES);
    cr_assert_geq(w->ev_len, MT_WINDOW_EVIDENCE_BYTES - 110 * 1024);
    cr_assert_eq(reg.budget.ev_bytes, w->ev_len);
    mt_window_reg_clear(&reg);
    cr_assert_eq(reg.budget.ev_bytes, 0);
    mt_window_reg_clear(&reg);
}

Test(window, registry_lookups)
{
    mt_window_reg_t reg;
    mt_window_rules_t rules = {.gap_ns = 100 * MS, .max_ns = 30000 * MS};
    mt_window_reg_init(&reg, &rules);
    mt_window_t *a = mt_window_reg_open(&reg, 1, "mongotap:a", NULL, sc_now, 0, "x", "", "");
    mt_window_t *b = mt_window_reg_open(&reg, 2, NULL, NULL, sc_now, 0, "y", "", "");
    cr_assert_eq(mt_window_reg_find_key(&reg, "mongotap:a"), a);
    cr_assert_null(mt_window_reg_find_key(&reg, "mongotap:b"));
    cr_assert_eq(mt_window_reg_find(&reg, a->id), a);
    cr_assert_eq(mt_window_reg_find(&reg, b->id), b);
    cr_assert_eq(reg.open_count, 2);
    mt_window_reg_detach(&reg, a, sc_now);
    mt_window_reg_retire(&reg, a);
    cr_assert_null(mt_window_reg_find(&reg, a->id));
    cr_assert_null(mt_window_reg_find_key(&reg, "mongotap:a"));
    cr_assert_eq(mt_window_reg_closed(&reg, 0), a);
    cr_assert_null(mt_window_reg_closed(&reg, 1));
    cr_assert_eq(reg.open_count, 1);
    cr_assert_eq(reg.keyed_open, 0);
    /* long keys are cut to MT_WINDOW_KEY_MAX, and found again by the full key */
    char key[MT_WINDOW_KEY_MAX + 50];
    memset(key, 'k', sizeof key - 1);
    memcpy(key, "mongotap:", 9);
    key[sizeof key - 1] = '\0';
    mt_window_t *c = mt_window_reg_open(&reg, 3, key, NULL, sc_now, 0, "z", "", "");
    cr_assert_eq(strlen(c->key), MT_WINDOW_KEY_MAX);
    cr_assert_eq(mt_window_reg_find_key(&reg, key), c);
    mt_window_reg_clear(&reg);
    mt_window_reg_clear(&reg);
}

Test(window, flush_closes_keyed_windows_at_shutdown)
{
    sc_conn_t a = sc_open(st, 1, "127.0.0.1:1");
    find_one(&a, "c", "mongotap:last-request", 1 * MS);
    find_one(&a, "c", NULL, 1 * MS);
    sc_close(&a);
    cr_assert_eq(closed_windows(), 0, "both commands went to the keyed window");
    cr_assert_eq(open_windows(), 1, "the keyed window outlives the connection");
    mt_stats_flush(st, sc_now);
    cr_assert_eq(open_windows(), 0);
    cr_assert_eq(closed_windows(), 1);
}

Test(window, an_ignore_comment_opens_no_keyed_window_and_is_marked)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    find_one(&k, "c", NULL, 1 * MS);
    find_one(&k, "seed", "mongotap:ignore-seed", 1 * MS);
    cr_assert_eq(open_windows(), 1, "the connection's window, no keyed one");
    tick_after(200 * MS);

    char *json = mt_stats_windows_json(st, 0, false, NULL);
    bson_t *doc = sc_parse(json);
    cr_assert_eq(sc_array_len(doc, "windows"), 1);
    cr_assert(sc_is_null(doc, "windows.0.key"));
    cr_assert_eq(sc_array_len(doc, "windows.0.commands"), 2);
    bson_iter_t it;
    cr_assert_not(bson_iter_init_find(&it, doc, "windows.0.commands.0.ignored") ||
                      (bson_iter_init(&it, doc) &&
                       bson_iter_find_descendant(&it, "windows.0.commands.0.ignored", &it)),
                  "only ignored commands say so");
    cr_assert(bson_iter_init(&it, doc) &&
              bson_iter_find_descendant(&it, "windows.0.commands.1.ignored", &it) &&
              bson_iter_as_bool(&it));
    bson_destroy(doc);
    bson_free(json);
    sc_close(&k);
}

/* ---- one window in detail, and the windows kept ---------------------------- */

static uint32_t next_ref = 1;

/* One page load: a find on "show" returning n documents that each name a
 * "channel" by _id, then one lookup per document. */
static void page_load(sc_conn_t *k, uint32_t n)
{
    bson_t *docs[64];
    uint32_t first = next_ref;
    for (uint32_t i = 0; i < n; i++) {
        bson_oid_t oid;
        docs[i] = bson_new();
        sc_oid(&oid, next_ref++);
        BSON_APPEND_OID(docs[i], "channel", &oid);
    }
    sc_roundtrip(k, sc_find("tv", "show", bson_new(), false, NULL),
                 sc_cursor_reply("tv.show", docs, n, 0, true), 2 * MS);
    sc_free_docs(docs, n);
    for (uint32_t i = 0; i < n; i++)
        sc_roundtrip(k, sc_find("tv", "channel", sc_id_filter(first + i), true, NULL),
                     sc_one_doc_reply("tv.channel", first + i), 1 * MS);
}

static size_t wire_size(const bson_t *doc)
{
    size_t len;
    free(fx_op_msg(0, 1, 0, doc, NULL, NULL, 0, &len));
    return len;
}

static bson_t *window_detail(uint64_t id, uint32_t segment)
{
    bool found = false;
    char *json = mt_stats_window_json(st, id, segment, &found);
    cr_assert(found, "window %llu is kept", (unsigned long long)id);
    bson_t *doc = sc_parse(json);
    bson_free(json);
    return doc;
}

static const char *at(char *buf, size_t cap, const char *fmt, uint32_t i)
{
    snprintf(buf, cap, fmt, i);
    return buf;
}

Test(window, detail_shows_every_command_with_its_part_in_a_finding)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    sc_handshake(&k, "PyMongo", "3.11.0", "tvguide");
    /* two page loads back to back (no gap): two segments, one finding each */
    bson_t *first_cmd = sc_find("tv", "show", bson_new(), false, NULL);
    size_t first_bytes = wire_size(first_cmd);
    bson_destroy(first_cmd);
    page_load(&k, 10);
    page_load(&k, 10);
    /* a duplicate key (a write error in an ok reply) and a failed command */
    bson_t *ins =
        fx_json("{\"insert\": \"channel\", \"documents\": [{\"_id\": 1}], \"$db\": \"tv\"}");
    bson_t *dup =
        fx_json("{\"ok\": 1.0, \"n\": 0, \"writeErrors\": [{\"index\": 0, \"code\": 11000, "
                "\"codeName\": \"DuplicateKey\", \"errmsg\": \"E11000 dup key\"}]}");
    size_t ins_bytes = wire_size(ins), dup_bytes = wire_size(dup);
    sc_roundtrip(&k, ins, dup, 1 * MS);
    sc_roundtrip(&k, fx_json("{\"distinct\": \"nope\", \"key\": \"a\", \"$db\": \"tv\"}"),
                 fx_json("{\"ok\": 0.0, \"code\": 26, \"codeName\": \"NamespaceNotFound\", "
                         "\"errmsg\": \"ns not found\"}"),
                 1 * MS);
    tick_after(200 * MS);
    cr_assert_eq(mt_stats_get(st, MT_STAT_FINDINGS), 2);

    bson_t *doc = window_detail(1, 0);
    char p[96];
    cr_assert_eq(sc_int(doc, "id"), 1);
    cr_assert_str_eq(sc_str(doc, "url"), "/api/windows/1");
    cr_assert_str_eq(sc_str(doc, "app_name"), "tvguide");
    cr_assert_str_eq(sc_str(doc, "driver"), "PyMongo 3.11.0");
    cr_assert_str_eq(sc_str(doc, "client"), "127.0.0.1:1");
    cr_assert_eq(sc_int(doc, "total_commands"), 24);
    cr_assert(sc_is_null(doc, "segment"));
    /* the segments and the findings */
    cr_assert_eq(sc_array_len(doc, "segments"), 2);
    cr_assert_eq(sc_int(doc, "segments.0.first"), 0);
    cr_assert_eq(sc_int(doc, "segments.0.last"), 10);
    cr_assert_eq(sc_int(doc, "segments.1.first"), 11);
    cr_assert_eq(sc_int(doc, "segments.1.last"), 23);
    cr_assert_eq(sc_int(doc, "segments.1.commands"), 13);
    cr_assert_eq(sc_array_len(doc, "findings"), 2);
    cr_assert_str_eq(sc_str(doc, "findings.0.id"), "f-000001");
    cr_assert_str_eq(sc_str(doc, "findings.0.type"), "n_plus_one");
    cr_assert_str_eq(sc_str(doc, "findings.0.confidence"), "high");
    cr_assert_eq(sc_int(doc, "findings.0.segment"), 1);
    cr_assert_eq(sc_int(doc, "findings.0.parent"), 0);
    cr_assert_eq(sc_int(doc, "findings.0.children"), 10);
    cr_assert_str_eq(sc_str(doc, "findings.1.id"), "f-000002");
    cr_assert_eq(sc_int(doc, "findings.1.segment"), 2);
    cr_assert_eq(sc_int(doc, "findings.1.parent"), 11);
    /* every command in order, with its role and finding */
    cr_assert_eq(sc_array_len(doc, "commands"), 24);
    cr_assert_str_eq(sc_str(doc, "commands.0.role"), "parent");
    cr_assert_str_eq(sc_str(doc, "commands.0.finding"), "f-000001");
    cr_assert_str_eq(sc_str(doc, "commands.0.collection"), "show");
    cr_assert_eq(sc_int(doc, "commands.0.docs"), 10);
    cr_assert_eq(sc_int(doc, "commands.0.bytes_in"), (int64_t)first_bytes);
    cr_assert_gt(sc_int(doc, "commands.0.bytes_out"), 10 * 20);
    cr_assert_float_eq(sc_double(doc, "commands.0.offset_ms"), 0, 1e-9);
    cr_assert_float_eq(sc_double(doc, "commands.0.duration_ms"), 2, 1e-9);
    for (uint32_t i = 1; i <= 10; i++) {
        cr_assert_str_eq(sc_str(doc, at(p, sizeof p, "commands.%u.role", i)), "child");
        cr_assert_str_eq(sc_str(doc, at(p, sizeof p, "commands.%u.finding", i)), "f-000001");
        cr_assert_str_eq(sc_str(doc, at(p, sizeof p, "commands.%u.shape", i)), "{\"_id\": \"?\"}");
        cr_assert_eq(sc_int(doc, at(p, sizeof p, "commands.%u.index", i)), i);
        cr_assert(sc_bool(doc, at(p, sizeof p, "commands.%u.ok", i)));
        cr_assert(sc_is_null(doc, at(p, sizeof p, "commands.%u.error", i)));
    }
    cr_assert_float_eq(sc_double(doc, "commands.1.offset_ms"), 2, 1e-9);
    cr_assert_float_eq(sc_double(doc, "commands.10.offset_ms"), 11, 1e-9);
    cr_assert_str_eq(sc_str(doc, "commands.11.role"), "parent");
    cr_assert_str_eq(sc_str(doc, "commands.11.finding"), "f-000002");
    cr_assert_str_eq(sc_str(doc, "commands.12.finding"), "f-000002");
    /* the errors: a write error by its code name, a failed command by its own */
    cr_assert_str_eq(sc_str(doc, "commands.22.command"), "insert");
    cr_assert(sc_is_null(doc, "commands.22.role"));
    cr_assert(sc_is_null(doc, "commands.22.finding"));
    cr_assert(!sc_bool(doc, "commands.22.ok"));
    cr_assert_str_eq(sc_str(doc, "commands.22.error"), "DuplicateKey");
    cr_assert_eq(sc_int(doc, "commands.22.error_code"), 11000);
    cr_assert_eq(sc_int(doc, "commands.22.bytes_in"), (int64_t)ins_bytes);
    cr_assert_eq(sc_int(doc, "commands.22.bytes_out"), (int64_t)dup_bytes);
    cr_assert_str_eq(sc_str(doc, "commands.23.error"), "NamespaceNotFound");
    cr_assert_eq(sc_int(doc, "commands.23.error_code"), 26);
    bson_destroy(doc);

    /* one segment: its commands (window indexes), its span, its finding */
    doc = window_detail(1, 2);
    cr_assert_eq(sc_int(doc, "segment"), 2);
    cr_assert_eq(sc_int(doc, "span.first"), 11);
    cr_assert_eq(sc_int(doc, "span.last"), 23);
    cr_assert_float_eq(sc_double(doc, "span.offset_ms"), 12, 1e-9);
    cr_assert_float_eq(sc_double(doc, "span.duration_ms"), 14, 1e-9);
    cr_assert_eq(sc_array_len(doc, "commands"), 13);
    cr_assert_eq(sc_int(doc, "commands.0.index"), 11);
    cr_assert_eq(sc_array_len(doc, "findings"), 1);
    cr_assert_str_eq(sc_str(doc, "findings.0.id"), "f-000002");
    bson_destroy(doc);

    /* the finding names the segment it is in; the list row names the findings */
    char *json = mt_stats_findings_json(st);
    doc = sc_parse(json);
    cr_assert_eq(sc_int(doc, "findings.1.window.id"), 1);
    cr_assert_eq(sc_int(doc, "findings.1.window.segment"), 2);
    cr_assert_eq(sc_int(doc, "findings.1.window.commands"), 13);
    bson_destroy(doc);
    bson_free(json);
    json = mt_stats_windows_json(st, 0, true, NULL);
    doc = sc_parse(json);
    cr_assert_eq(sc_int(doc, "windows.0.findings"), 2);
    cr_assert_str_eq(sc_str(doc, "windows.0.finding_ids.1"), "f-000002");
    cr_assert_eq(sc_int(doc, "windows.0.segment_count"), 2);
    bson_iter_t it, f;
    cr_assert(bson_iter_init(&it, doc) && !bson_iter_find_descendant(&it, "windows.0.commands", &f),
              "a summary row carries no commands");
    bson_destroy(doc);
    bson_free(json);

    /* no such segment, no such window */
    bool found = false;
    cr_assert_null(mt_stats_window_json(st, 1, 3, &found));
    cr_assert(found);
    cr_assert_null(mt_stats_window_json(st, 99, 0, &found));
    cr_assert(!found);
    sc_close(&k);
}

Test(window, an_open_window_shows_its_commands_so_far)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    find_one(&k, "c", NULL, 1 * MS);
    find_one(&k, "d", NULL, 1 * MS);
    bson_t *doc = window_detail(1, 0);
    cr_assert(sc_bool(doc, "open"));
    cr_assert_eq(sc_array_len(doc, "commands"), 2);
    cr_assert_eq(sc_array_len(doc, "findings"), 0);
    cr_assert(sc_is_null(doc, "commands.1.role"));
    bson_destroy(doc);
    sc_close(&k);
}

Test(window, filters_pick_windows_by_namespace_shape_app_and_text)
{
    sc_conn_t a = sc_open(st, 1, "127.0.0.1:1");
    sc_handshake(&a, "PyMongo", "3.11.0", "tvguide");
    page_load(&a, 6);
    tick_after(200 * MS);
    sc_conn_t b = sc_open(st, 2, "127.0.0.1:2");
    sc_handshake(&b, "nodejs", "6.3.0", "billing");
    find_one(&b, "invoices", NULL, 1 * MS);
    tick_after(200 * MS);

    static const struct {
        mt_window_filter_t f;
        int rows;
        int64_t first_id;
    } cases[] = {
        {{NULL, NULL, NULL, NULL}, 2, 2},
        {{"tv.channel", NULL, NULL, NULL}, 1, 1},
        {{"INVOICES", NULL, NULL, NULL}, 1, 2},
        {{NULL, "_id", NULL, NULL}, 1, 1},
        {{NULL, NULL, "bill", NULL}, 1, 2},
        {{NULL, NULL, "pymongo", NULL}, 1, 1},
        {{NULL, NULL, NULL, "f-000001"}, 1, 1},
        {{NULL, NULL, NULL, "n_plus"}, 1, 1},
        {{NULL, NULL, NULL, "invoices"}, 1, 2},
        {{"tv.", "_id", "tvguide", "channel"}, 1, 1},
        {{"tv.channel", NULL, "billing", NULL}, 0, 0},
        {{NULL, NULL, NULL, "nothing like it"}, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *json = mt_stats_windows_json(st, 0, true, &cases[i].f);
        bson_t *doc = sc_parse(json);
        cr_assert_eq(sc_array_len(doc, "windows"), (uint32_t)cases[i].rows, "case %zu", i);
        if (cases[i].rows)
            cr_assert_eq(sc_int(doc, "windows.0.id"), cases[i].first_id, "case %zu", i);
        bson_destroy(doc);
        bson_free(json);
    }
    sc_close(&a);
    sc_close(&b);
}

Test(window, connections_show_their_last_window_once_closed)
{
    sc_conn_t k = sc_open(st, 4, "127.0.0.1:4444");
    find_one(&k, "c", NULL, 1 * MS);
    tick_after(200 * MS);
    cr_assert_eq(closed_windows(), 1);
    char *json = mt_stats_connections_json(st, sc_now);
    bson_t *doc = sc_parse(json);
    cr_assert_eq(sc_int(doc, "connections.0.window.id"), 1);
    cr_assert(!sc_bool(doc, "connections.0.window.open"));
    cr_assert_eq(sc_int(doc, "connections.0.window.commands"), 1);
    bson_destroy(doc);
    bson_free(json);
    sc_close(&k);
}

Test(window, windows_of_kept_findings_outlive_the_last_n)
{
    teardown();
    mt_stats_config_t cfg;
    mt_stats_config_defaults(&cfg);
    cfg.keep_windows = 3;
    st = mt_stats_new(&cfg, sc_now);
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    page_load(&k, 6); /* window 1: a finding */
    tick_after(200 * MS);
    for (int i = 0; i < 5; i++) { /* windows 2..6: none */
        find_one(&k, "c", NULL, 1 * MS);
        tick_after(200 * MS);
    }
    char *json = mt_stats_windows_json(st, 0, true, NULL);
    bson_t *doc = sc_parse(json);
    cr_assert_eq(sc_int(doc, "kept"), 4, "the last 3, and the one with a finding");
    cr_assert_eq(sc_array_len(doc, "windows"), 4);
    cr_assert_eq(sc_int(doc, "windows.0.id"), 6);
    cr_assert_eq(sc_int(doc, "windows.2.id"), 4);
    cr_assert_eq(sc_int(doc, "windows.3.id"), 1, "oldest last");
    bson_destroy(doc);
    bson_free(json);
    bool found;
    bson_free(mt_stats_window_json(st, 1, 0, &found));
    cr_assert(found, "the window a finding names still opens");
    cr_assert_null(mt_stats_window_json(st, 3, 0, &found));
    cr_assert(!found, "an older window without findings is gone");
    sc_close(&k);
}

/* A closed window of n commands, its newest finding numbered pin (0: none). */
static mt_window_t *closed_window(mt_window_reg_t *reg, uint32_t n, uint64_t pin)
{
    mt_window_t *w = mt_window_reg_open(reg, 1, NULL, NULL, sc_now, 0, "a", "", "");
    mt_window_cmd_t c = {.own = &find_names, .kind = MT_CMD_FIND};
    for (uint32_t i = 0; i < n; i++)
        mt_window_add_cmd(w, &c);
    mt_window_reg_detach(reg, w, sc_now);
    if (pin) {
        mt_window_finding_t f = {.id = "f-x", .type = "n_plus_one", .parent = -1};
        mt_window_set_findings(w, &f, 1, pin);
    }
    mt_window_reg_retire(reg, w);
    return w;
}

Test(window, pinned_windows_go_when_their_findings_age_out)
{
    mt_window_reg_t reg;
    mt_window_rules_t rules = {.gap_ns = 100 * MS, .max_ns = 30000 * MS, .keep = 2};
    mt_window_reg_init(&reg, &rules);
    mt_window_t *a = closed_window(&reg, 1, 1); /* finding 1 */
    uint64_t a_id = a->id;
    closed_window(&reg, 1, 0);
    mt_window_t *c = closed_window(&reg, 1, 2); /* finding 2 */
    for (int i = 0; i < 3; i++)
        closed_window(&reg, 1, 0);
    cr_assert_eq(mt_window_reg_closed_count(&reg), 4, "2 recent, 2 pinned");
    cr_assert_eq(mt_window_reg_find_closed(&reg, a->id), a);
    cr_assert_eq(mt_window_reg_closed(&reg, 3), a);
    cr_assert_eq(mt_window_reg_closed(&reg, 2), c);
    mt_window_reg_unpin(&reg, 1); /* finding 1 aged out */
    cr_assert_eq(mt_window_reg_closed_count(&reg), 3);
    cr_assert_null(mt_window_reg_find_closed(&reg, a_id));
    cr_assert_eq(mt_window_reg_closed(&reg, 2), c);
    mt_window_reg_unpin(&reg, 5);
    cr_assert_eq(mt_window_reg_closed_count(&reg), 2);
    cr_assert_null(mt_window_reg_closed(&reg, 2));
    /* a window closing with findings that are already gone is not pinned */
    closed_window(&reg, 1, 3);
    closed_window(&reg, 1, 0);
    closed_window(&reg, 1, 0);
    cr_assert_eq(mt_window_reg_closed_count(&reg), 2);
    mt_window_reg_clear(&reg);
}

Test(window, closed_windows_hold_a_bounded_number_of_commands)
{
    mt_window_reg_t reg;
    uint64_t dropped = 0;
    mt_window_rules_t rules = {.gap_ns = 100 * MS,
                               .max_ns = 30000 * MS,
                               .keep = 100,
                               .closed_cmds_max = 2500,
                               .cmds_dropped = &dropped};
    mt_window_reg_init(&reg, &rules);
    mt_window_t *found = closed_window(&reg, 1000, 1); /* the oldest, with a finding */
    mt_window_t *plain = closed_window(&reg, 1000, 0);
    cr_assert_eq(reg.closed_cmds, 2000);
    cr_assert_eq(dropped, 0);
    mt_window_t *third = closed_window(&reg, 1000, 0);
    /* over the bound: the oldest window without findings gives its commands up first */
    cr_assert_eq(reg.closed_cmds, 2000);
    cr_assert_eq(dropped, 1000);
    cr_assert_eq(plain->ncmds, 0);
    cr_assert_eq(plain->total_cmds, 1000, "still listed, with its count");
    cr_assert_eq(found->ncmds, 1000);
    closed_window(&reg, 1000, 2);
    cr_assert_eq(third->ncmds, 0, "windows without findings go before those with");
    cr_assert_eq(found->ncmds, 1000);
    closed_window(&reg, 1000, 3);
    cr_assert_eq(found->ncmds, 0, "then the oldest with findings");
    cr_assert_eq(reg.closed_cmds, 2000);
    cr_assert_eq(dropped, 3000);
    cr_assert_eq(mt_window_reg_closed_count(&reg), 5, "every window stays listed");
    bson_t doc = BSON_INITIALIZER;
    cr_assert(mt_window_detail_bson(plain, 0, &doc));
    cr_assert_eq(sc_int(&doc, "commands_kept"), 0);
    cr_assert_eq(sc_int(&doc, "total_commands"), 1000);
    cr_assert_eq(sc_array_len(&doc, "commands"), 0);
    bson_destroy(&doc);
    mt_window_reg_clear(&reg);
}

/* A busy window of connection 1: n finds (the i-th of i bytes), then
 * retired; *array is where it wrote them. */
/* The registry of the tests of busy windows' storage. */
static void busy_reg_init(mt_window_reg_t *reg)
{
    mt_window_rules_t rules = {.gap_ns = 100 * MS, .max_ns = 30000 * MS, .keep = 10};
    mt_window_reg_init(reg, &rules);
}

static mt_window_t *retire_busy_window(mt_window_reg_t *reg, uint32_t n,
                                       const mt_window_cmd_t **array)
{
    mt_window_t *w = mt_window_reg_open(reg, 1, NULL, NULL, sc_now, 0, "a", "", "");
    cr_assert_not_null(w);
    for (uint32_t i = 0; i < n; i++) {
        mt_window_cmd_t c = {.own = &find_names, .kind = MT_CMD_FIND, .bytes_in = i};
        cr_assert_eq(mt_window_add_cmd(w, &c), (int)i);
    }
    *array = w->cmds;
    mt_window_reg_detach(reg, w, sc_now);
    mt_window_reg_retire(reg, w);
    return w;
}

/* A busy connection's windows, one after another: the next takes the array
 * the last one wrote its commands to, and the closed one keeps its first
 * commands in an array of their own. */
Test(window, the_next_window_reuses_a_retired_windows_commands_array)
{
    mt_window_reg_t reg;
    busy_reg_init(&reg);
    uint32_t n = 3 * MT_WINDOW_CLOSED_COMMANDS;
    const mt_window_cmd_t *busy;
    mt_window_t *w = retire_busy_window(&reg, n, &busy);
    cr_assert_neq(w->cmds, busy, "the closed window moved its commands out");
    cr_assert_eq(w->ncmds, MT_WINDOW_CLOSED_COMMANDS);
    for (uint32_t i = 0; i < w->ncmds; i++)
        cr_assert_eq(w->cmds[i].bytes_in, i);

    mt_window_t *next = mt_window_reg_open(&reg, 1, NULL, NULL, sc_now, 0, "a", "", "");
    cr_assert_not_null(next);
    cr_assert_eq(next->cmds, busy, "the next window writes where the last one did");
    cr_assert_geq(next->cmds_cap, n);
    cr_assert_eq(next->ncmds, 0);
    mt_window_cmd_t c = {.own = &find_names, .kind = MT_CMD_FIND, .bytes_in = 7};
    cr_assert_eq(mt_window_add_cmd(next, &c), 0);
    cr_assert_eq(next->cmds, busy);

    /* a small window after it takes no large array */
    mt_window_reg_detach(&reg, next, sc_now);
    mt_window_reg_retire(&reg, next);
    mt_window_t *small = mt_window_reg_open(&reg, 2, NULL, NULL, sc_now, 0, "a", "", "");
    cr_assert_not_null(small);
    cr_assert_leq(small->cmds_cap, MT_WINDOW_POOL_CMDS);
    mt_window_reg_clear(&reg);
}

/* A pool of busy connections closes its windows together (the clients
 * went away, or window-max-ms came round): every array is kept, and the
 * windows that open next all take one, none of them a fresh one. */
Test(window, a_pool_of_busy_connections_keeps_every_windows_commands_array)
{
    enum { CONNS = 64 };
    mt_window_reg_t reg;
    busy_reg_init(&reg);
    mt_window_t *open[CONNS];
    const mt_window_cmd_t *arrays[CONNS];
    mt_window_cmd_t c = {.own = &find_names, .kind = MT_CMD_FIND};
    for (int i = 0; i < CONNS; i++) {
        open[i] = mt_window_reg_open(&reg, (uint64_t)i + 1, NULL, NULL, sc_now, 0, "a", "", "");
        cr_assert_not_null(open[i]);
        for (uint32_t k = 0; k < 2 * MT_WINDOW_CLOSED_COMMANDS; k++)
            cr_assert_geq(mt_window_add_cmd(open[i], &c), 0);
        arrays[i] = open[i]->cmds;
    }
    for (int i = 0; i < CONNS; i++) {
        mt_window_reg_detach(&reg, open[i], sc_now);
        mt_window_reg_retire(&reg, open[i]);
    }
    cr_assert_eq(reg.spare_cmds.n, CONNS, "%zu of %d arrays kept", reg.spare_cmds.n, CONNS);

    for (int i = 0; i < CONNS; i++) {
        mt_window_t *w =
            mt_window_reg_open(&reg, (uint64_t)i + 100, NULL, NULL, sc_now, 0, "a", "", "");
        cr_assert_not_null(w);
        bool reused = false;
        for (int k = 0; k < CONNS; k++)
            reused |= w->cmds == arrays[k];
        cr_assert(reused, "window %d writes to an array a busy window had", i);
        cr_assert_geq(w->cmds_cap, 2 * MT_WINDOW_CLOSED_COMMANDS);
    }
    cr_assert_eq(reg.spare_cmds.n, 0);
    mt_window_reg_clear(&reg);
}

/* Kept arrays are for the next busy period, not forever: a minute in which
 * no window kept or took one gives them back. */
Test(window, spare_commands_arrays_go_back_after_a_minute_unused)
{
    mt_window_reg_t reg;
    busy_reg_init(&reg);
    const mt_window_cmd_t *busy;
    uint64_t t = sc_now + 1000 * MS;

    retire_busy_window(&reg, 2 * MT_WINDOW_CLOSED_COMMANDS, &busy);
    cr_assert_eq(reg.spare_cmds.n, 1);
    mt_window_reg_tick(&reg, t);
    mt_window_reg_tick(&reg, t + 59000 * MS);
    cr_assert_eq(reg.spare_cmds.n, 1, "kept through 59 s unused");

    /* taken and kept again: the minute starts over */
    mt_window_t *w = mt_window_reg_open(&reg, 1, NULL, NULL, t + 59000 * MS, 0, "a", "", "");
    cr_assert_eq(w->cmds, busy);
    mt_window_reg_detach(&reg, w, t + 59000 * MS);
    mt_window_reg_retire(&reg, w);
    mt_window_reg_tick(&reg, t + 59500 * MS);
    mt_window_reg_tick(&reg, t + 100000 * MS);
    cr_assert_eq(reg.spare_cmds.n, 1, "kept: 40.5 s since it was last used");
    mt_window_reg_tick(&reg, t + 119500 * MS);
    cr_assert_eq(reg.spare_cmds.n, 0, "given back after a minute unused");
    cr_assert_eq(reg.spare_cmds.bytes, 0);
    mt_window_reg_clear(&reg);
}

Test(window, a_window_past_a_pooled_size_grows_to_the_last_busy_ones_size_at_once)
{
    mt_window_reg_t reg;
    busy_reg_init(&reg);
    uint32_t n = 3 * MT_WINDOW_CLOSED_COMMANDS;
    mt_window_cmd_t c = {.own = &find_names, .kind = MT_CMD_FIND};
    const mt_window_cmd_t *busy;
    retire_busy_window(&reg, n, &busy);

    /* the first new window takes the retired array; the second finds none */
    mt_window_t *first = mt_window_reg_open(&reg, 1, NULL, NULL, sc_now, 0, "a", "", "");
    mt_window_t *second = mt_window_reg_open(&reg, 2, NULL, NULL, sc_now, 0, "a", "", "");
    cr_assert(first && second);
    cr_assert_eq(first->cmds, busy);
    cr_assert_geq(first->cmds_cap, n);
    cr_assert_leq(second->cmds_cap, MT_WINDOW_POOL_CMDS);
    for (uint32_t i = 0; i <= MT_WINDOW_POOL_CMDS; i++) {
        c.bytes_in = i;
        cr_assert_eq(mt_window_add_cmd(second, &c), (int)i);
    }
    cr_assert_eq(second->cmds_cap, n, "grown to %u at once, not doubled to %u", n,
                 2 * MT_WINDOW_POOL_CMDS);
    for (uint32_t i = 0; i <= MT_WINDOW_POOL_CMDS; i++)
        cr_assert_eq(second->cmds[i].bytes_in, i);

    /* after a small window retires, the next one doubles as before, up to a
     * pooled window's size; past it, it grows into the array the first
     * gave back, not into fresh memory beside it */
    mt_window_reg_detach(&reg, first, sc_now);
    mt_window_reg_retire(&reg, first);
    cr_assert_eq(reg.spare_cmds.n, 1);
    mt_window_t *third = mt_window_reg_open(&reg, 3, NULL, NULL, sc_now, 0, "a", "", "");
    cr_assert_not_null(third);
    cr_assert_leq(third->cmds_cap, MT_WINDOW_POOL_CMDS);
    for (uint32_t i = 0; i < MT_WINDOW_POOL_CMDS; i++) {
        c.bytes_in = i;
        cr_assert_eq(mt_window_add_cmd(third, &c), (int)i);
    }
    cr_assert_eq(third->cmds_cap, MT_WINDOW_POOL_CMDS);
    cr_assert_eq(mt_window_add_cmd(third, &c), (int)MT_WINDOW_POOL_CMDS);
    cr_assert_eq(third->cmds, busy, "grown into the spare");
    cr_assert_geq(third->cmds_cap, n);
    cr_assert_eq(reg.spare_cmds.n, 0);
    for (uint32_t i = 0; i < MT_WINDOW_POOL_CMDS; i++)
        cr_assert_eq(third->cmds[i].bytes_in, i, "the commands came along");
    mt_window_reg_clear(&reg);
}
