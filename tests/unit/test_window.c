/*
 * window: the request-window rules of SPEC section 4 through the public API
 * with real message bytes: the idle gap (measured with nothing in flight),
 * window-max, keyed windows across connections, getMore following its
 * cursor, monitoring commands that neither open nor extend, connection close,
 * the per-window command bound, and the /api/windows and /api/connections
 * renderings.
 */
#include "window.h"
#include "stats_test_util.h"

static mt_stats_t *st;

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
    char *json = mt_stats_windows_json(st, 10);
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
    char *json = mt_stats_windows_json(st, 1);
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
    char *json = mt_stats_windows_json(st, 0);
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

    char *json = mt_stats_windows_json(st, 0);
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
    char *json = mt_stats_windows_json(st, 0);
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
    char *json = mt_stats_windows_json(st, 0);
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
    char *json = mt_stats_windows_json(st, 0);
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
    char *json = mt_stats_windows_json(st, 0);
    bson_t *doc = sc_parse(json);
    cr_assert_eq(sc_int(doc, "windows.0.total_commands"), total);
    cr_assert_eq(sc_array_len(doc, "windows.0.commands"), MT_WINDOW_CLOSED_COMMANDS);
    bson_destroy(doc);
    bson_free(json);
    sc_close(&k);
}

Test(window, closed_windows_are_bounded)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    for (int i = 0; i < MT_WINDOW_CLOSED_KEEP + 20; i++) {
        find_one(&k, "c", NULL, 1 * MS);
        tick_after(150 * MS);
    }
    cr_assert_eq(closed_windows(), MT_WINDOW_CLOSED_KEEP + 20);
    char *json = mt_stats_windows_json(st, 0);
    bson_t *doc = sc_parse(json);
    cr_assert_eq(sc_array_len(doc, "windows"), MT_WINDOW_CLOSED_KEEP);
    bson_destroy(doc);
    bson_free(json);
    json = mt_stats_windows_json(st, 3);
    doc = sc_parse(json);
    cr_assert_eq(sc_array_len(doc, "windows"), 3);
    cr_assert_eq(sc_int(doc, "windows.0.id"), MT_WINDOW_CLOSED_KEEP + 20);
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

Test(window, evidence_is_bounded_and_budgeted)
{
    mt_window_reg_t reg;
    mt_window_rules_t rules = {.gap_ns = 100 * MS, .max_ns = 30000 * MS};
    mt_window_reg_init(&reg, &rules);
    mt_window_t *w = mt_window_reg_open(&reg, 1, NULL, NULL, sc_now, 0, "a", "", "");
    cr_assert_not_null(w);
    mt_window_cmd_t c = {
        .command = "find", .db = "d", .collection = "c", .shape = "{}", .kind = MT_CMD_FIND};
    int idx = mt_window_add_cmd(w, &c);
    cr_assert_eq(idx, 0);
    cr_assert_eq(reg.budget.cmds, 1);
    /* by documents: 1.2 times the bound offered, the bound kept */
    bson_t *small = batch(MT_WINDOW_EVIDENCE_DOCS * 6 / 10, 10);
    mt_window_add_evidence(w, 0, bson_get_data(small), small->len);
    mt_window_add_evidence(w, 0, bson_get_data(small), small->len);
    bson_destroy(small);
    cr_assert_eq(w->ev_docs, MT_WINDOW_EVIDENCE_DOCS);
    cr_assert_eq(w->nsegs, 1, "runs of one command's documents are merged");
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
    mt_window_add_evidence(w, 0, bson_get_data(big), big->len);
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

    char *json = mt_stats_windows_json(st, 0);
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
