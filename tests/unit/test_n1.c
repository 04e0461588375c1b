/*
 * n1: the detector on windows built from real OP_MSG bytes (and one replay of
 * captured mongoengine traffic): the finding document field by field, the
 * evidence rules (nested fields, DBRef, arrays, getMore batches, medium
 * confidence), the traps that must not fire, the driver-specific wording,
 * patterns across windows, and user values kept out of every output.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "evidence.h"
#include "stats_int.h"
#include "suggest.h"
#include "stats_test_util.h"

typedef enum {
    REF_PLAIN,  /* {channel: <id>} */
    REF_NESTED, /* {customer: {id: <id>}} */
    REF_DBREF,  /* {channel: {$ref: "channel", $id: <id>}} */
    REF_ARRAY,  /* {guests: [<other id>, <id>]} */
    REF_NONE,   /* the ids are nowhere in the parent */
    REF_STRING, /* {channel: "s3cr3t-<n>"}: string ids, for the values test */
    REF_LONG,   /* {channel: "<n>-...">}: 60-character string ids */
    REF_BIN80,  /* {channel: BinData(0x80, 8 bytes)}: a user-defined binary subtype */
} ref_layout_t;

/* The id of channel n as REF_LONG and REF_BIN80 spell it. */
static void long_id(char *s, size_t cap, uint32_t n)
{
    snprintf(s, cap, "%08u-https://tvguide.example/channels/by-name/and-more", n);
}

static void bin80_id(uint8_t b[8], uint32_t n)
{
    memset(b, 0x5a, 8);
    memcpy(b, &n, sizeof n);
}

static mt_stats_t *st;
static sc_findings_t seen;

static void setup_cfg(bool log_values, uint32_t threshold)
{
    mt_stats_config_t cfg;
    mt_stats_config_defaults(&cfg);
    cfg.log_values = log_values;
    cfg.n1_threshold = threshold;
    cfg.on_finding = sc_on_finding;
    cfg.on_finding_data = &seen;
    memset(&seen, 0, sizeof seen);
    st = mt_stats_new(&cfg, sc_now);
    cr_assert_not_null(st);
}

static void setup(void)
{
    setup_cfg(false, 5);
}

static void teardown(void)
{
    mt_stats_free(st);
    free(seen.last);
    seen.last = NULL;
    free(seen.last_summary);
    seen.last_summary = NULL;
}

static void append_ref(bson_t *d, ref_layout_t layout, uint32_t chan)
{
    bson_oid_t oid;
    sc_oid(&oid, chan);
    bson_t sub;
    char s[64];
    switch (layout) {
    case REF_PLAIN:
        BSON_APPEND_OID(d, "channel", &oid);
        break;
    case REF_NESTED:
        BSON_APPEND_DOCUMENT_BEGIN(d, "customer", &sub);
        BSON_APPEND_UTF8(&sub, "name", "c");
        BSON_APPEND_OID(&sub, "id", &oid);
        bson_append_document_end(d, &sub);
        break;
    case REF_DBREF:
        BSON_APPEND_DOCUMENT_BEGIN(d, "channel", &sub);
        BSON_APPEND_UTF8(&sub, "$ref", "channel");
        BSON_APPEND_OID(&sub, "$id", &oid);
        bson_append_document_end(d, &sub);
        break;
    case REF_ARRAY: {
        bson_oid_t other;
        sc_oid(&other, 900000 + chan);
        BSON_APPEND_ARRAY_BEGIN(d, "guests", &sub);
        BSON_APPEND_OID(&sub, "0", &other);
        BSON_APPEND_OID(&sub, "1", &oid);
        bson_append_array_end(d, &sub);
        break;
    }
    case REF_NONE:
        BSON_APPEND_INT32(d, "channel_no", (int32_t)chan);
        break;
    case REF_STRING:
        snprintf(s, sizeof s, "s3cr3t-%u", chan);
        BSON_APPEND_UTF8(d, "channel", s);
        break;
    case REF_LONG:
        long_id(s, sizeof s, chan);
        BSON_APPEND_UTF8(d, "channel", s);
        break;
    case REF_BIN80: {
        uint8_t b[8];
        bin80_id(b, chan);
        BSON_APPEND_BINARY(d, "channel", (bson_subtype_t)0x80, b, sizeof b);
        break;
    }
    }
}

/* A show document: {_id, title, <reference to channel (i % nchan)>}. */
static bson_t *show_doc(uint32_t i, uint32_t nchan, ref_layout_t layout)
{
    bson_t *d = bson_new();
    bson_oid_t oid;
    sc_oid(&oid, 100000 + i);
    BSON_APPEND_OID(d, "_id", &oid);
    BSON_APPEND_UTF8(d, "title", "a show");
    append_ref(d, layout, i % nchan);
    return d;
}

/* find shows {} returning nshows documents in one batch. */
static void send_parent(sc_conn_t *k, uint32_t nshows, uint32_t nchan, ref_layout_t layout,
                        const char *comment)
{
    bson_t *docs[200];
    cr_assert_leq(nshows, 200);
    for (uint32_t i = 0; i < nshows; i++)
        docs[i] = show_doc(i, nchan, layout);
    sc_roundtrip(k, sc_find("tvguide", "show", bson_new(), false, comment),
                 sc_cursor_reply("tvguide.show", docs, nshows, 0, true), 1200 * US);
    sc_free_docs(docs, nshows);
}

/* The filter of lookup i: {_id: <channel id>} (or the string id). */
static bson_t *lookup_filter(uint32_t i, uint32_t nchan, ref_layout_t layout)
{
    if (layout == REF_STRING) {
        char s[64];
        snprintf(s, sizeof s, "s3cr3t-%u", i % nchan);
        bson_t *f = bson_new();
        BSON_APPEND_UTF8(f, "_id", s);
        return f;
    }
    if (layout == REF_LONG || layout == REF_BIN80) {
        char s[64];
        uint8_t b[8];
        bson_t *f = bson_new();
        long_id(s, sizeof s, i % nchan);
        bin80_id(b, i % nchan);
        if (layout == REF_LONG)
            BSON_APPEND_UTF8(f, "_id", s);
        else
            BSON_APPEND_BINARY(f, "_id", (bson_subtype_t)0x80, b, sizeof b);
        return f;
    }
    if (layout == REF_NONE)
        return sc_id_filter(500000 + i % nchan);
    return sc_id_filter(i % nchan);
}

/* count single-key lookups of channel, one per show (from, from+count). */
static void send_lookups(sc_conn_t *k, uint32_t from, uint32_t count, uint32_t nchan,
                         ref_layout_t layout, const char *comment)
{
    for (uint32_t i = from; i < from + count; i++)
        sc_roundtrip(k,
                     sc_find("tvguide", "channel", lookup_filter(i, nchan, layout), true, comment),
                     sc_one_doc_reply("tvguide.channel", i % nchan), 500 * US);
}

/* Lets every window close. */
static void settle(void)
{
    sc_now += 500 * MS;
    mt_stats_tick(st, sc_now);
}

static bson_t *only_finding(void)
{
    char *json = mt_stats_findings_json(st);
    bson_t *doc = sc_parse(json);
    bson_free(json);
    cr_assert_eq(sc_array_len(doc, "findings"), 1, "expected one finding");
    return doc;
}

/* The newest finding's evidence: its confidence, field (NULL: null) and
 * the children whose values were found there. */
static void assert_evidence(const char *confidence, const char *field, int64_t matched)
{
    bson_t *f = sc_parse(seen.last);
    cr_assert_str_eq(sc_str(f, "confidence"), confidence, "%s", seen.last);
    if (field)
        cr_assert_str_eq(sc_str(f, "field"), field, "%s", seen.last);
    else
        cr_assert(sc_is_null(f, "field"), "%s", seen.last);
    cr_assert_eq(sc_int(f, "matched"), matched, "%s", seen.last);
    bson_destroy(f);
}

TestSuite(n1, .init = setup, .fini = teardown);

Test(n1, tvguide_finding_field_by_field)
{
    sc_conn_t k = sc_open(st, 3, "127.0.0.1:53422");
    sc_handshake(&k, "PyMongo", "3.11.0", "tvguide");
    sc_now += 1 * MS;
    send_parent(&k, 50, 20, REF_PLAIN, NULL);
    send_lookups(&k, 0, 50, 20, REF_PLAIN, NULL);
    cr_assert_eq(seen.count, 0, "nothing is reported while the window is open");
    settle();
    cr_assert_eq(seen.count, 1);
    cr_assert_eq(mt_stats_get(st, MT_STAT_FINDINGS), 1);
    cr_assert_null(strchr(seen.last, '\n'), "one line");

    bson_t *f = sc_parse(seen.last);
    cr_assert_str_eq(sc_str(f, "schema"), "mongotap.finding/1");
    cr_assert_str_eq(sc_str(f, "id"), "f-000001");
    cr_assert_str_eq(sc_str(f, "type"), "n_plus_one");
    cr_assert_eq(strlen(sc_str(f, "detected_at")), 24);
    cr_assert_eq(sc_str(f, "detected_at")[23], 'Z');
    cr_assert_str_eq(sc_str(f, "confidence"), "high");
    cr_assert_str_eq(sc_str(f, "client.addr"), "127.0.0.1:53422");
    cr_assert_str_eq(sc_str(f, "client.app_name"), "tvguide");
    cr_assert_str_eq(sc_str(f, "client.driver"), "PyMongo 3.11.0");
    cr_assert_eq(sc_int(f, "window.connection_id"), 3);
    cr_assert(sc_is_null(f, "window.key"));
    cr_assert_eq(sc_int(f, "window.commands"), 51, "the hello is not part of the window");
    cr_assert_float_eq(sc_double(f, "window.duration_ms"), 1.2 + 50 * 0.5, 1e-9);
    cr_assert_str_eq(sc_str(f, "parent.db"), "tvguide");
    cr_assert_str_eq(sc_str(f, "parent.collection"), "show");
    cr_assert_str_eq(sc_str(f, "parent.command"), "find");
    cr_assert_str_eq(sc_str(f, "parent.shape"), "{}");
    cr_assert_eq(sc_int(f, "parent.docs_returned"), 50);
    cr_assert_float_eq(sc_double(f, "parent.duration_ms"), 1.2, 1e-9);
    cr_assert_str_eq(sc_str(f, "children.db"), "tvguide");
    cr_assert_str_eq(sc_str(f, "children.collection"), "channel");
    cr_assert_str_eq(sc_str(f, "children.command"), "find");
    cr_assert_str_eq(sc_str(f, "children.shape"), "{\"_id\": \"?\"}");
    cr_assert_str_eq(sc_str(f, "children.key"), "_id");
    cr_assert_eq(sc_int(f, "children.count"), 50);
    cr_assert_eq(sc_int(f, "children.distinct_values"), 20);
    cr_assert_float_eq(sc_double(f, "children.duration_ms"), 25.0, 1e-9);
    cr_assert_str_eq(sc_str(f, "field"), "channel");
    cr_assert_eq(sc_int(f, "matched"), 50);
    const char *sugg = sc_str(f, "suggestion");
    cr_assert_not_null(strstr(sugg, "20 channel documents"), "%s", sugg);
    cr_assert_not_null(strstr(sugg, "select_related()"), "%s", sugg);
    cr_assert_not_null(strstr(sugg, "{_id: {$in: [...]}}"), "%s", sugg);
    /* Plain JSON numbers, not libbson's 20-digit doubles. */
    cr_assert_not_null(strstr(seen.last, "\"duration_ms\":1.2}"), "%s", seen.last);
    cr_assert_not_null(strstr(seen.last, "\"duration_ms\":25}"), "%s", seen.last);
    cr_assert_null(strstr(seen.last, "\"values\""));
    bson_destroy(f);

    /* The same finding through /api/findings, with its pattern. */
    bson_t *all = only_finding();
    cr_assert_str_eq(sc_str(all, "findings.0.id"), "f-000001");
    cr_assert_eq(sc_array_len(all, "patterns"), 1);
    cr_assert_eq(sc_int(all, "patterns.0.occurrences"), 1);
    cr_assert_str_eq(sc_str(all, "patterns.0.field"), "channel");
    cr_assert_str_eq(sc_str(all, "patterns.0.children.collection"), "channel");
    cr_assert_float_eq(sc_double(all, "patterns.0.children.duration_ms"), 25.0, 1e-9);
    bson_destroy(all);
    sc_close(&k);
}

Test(n1, captured_mongoengine_traffic)
{
    /* Real bytes from mongoengine 0.24 on pymongo 3.11: an OP_QUERY
     * handshake, find show, then one find per ReferenceField access. */
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:40000");
    char *names[FX_MAX_FILES];
    size_t n = fx_list("mongoengine_reference-", ".bin", names, FX_MAX_FILES);
    cr_assert_geq(n, 10);
    size_t lookups = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        uint8_t *buf = fx_read(names[i], &len);
        sc_now += 300 * US;
        if (strstr(names[i], "-c2s"))
            sc_deliver(st, k.c, true, buf, len, sc_now);
        else
            sc_deliver(st, k.c, false, buf, len, sc_now);
        if (strstr(names[i], "-c2s") && memmem(buf, len, "channel", 7))
            lookups++;
        free(buf);
    }
    fx_list_free(names, n);
    cr_assert_geq(lookups, 5);
    settle();
    cr_assert_eq(seen.count, 1, "captured N+1 not found");
    bson_t *f = sc_parse(seen.last);
    cr_assert_str_eq(sc_str(f, "confidence"), "high");
    cr_assert_str_eq(sc_str(f, "field"), "channel");
    cr_assert_str_eq(sc_str(f, "parent.collection"), "show");
    cr_assert_str_eq(sc_str(f, "children.collection"), "channel");
    cr_assert_eq(sc_int(f, "children.count"), (int64_t)lookups);
    cr_assert_str_eq(sc_str(f, "children.shape"), "{\"_id\": \"?\"}");
    cr_assert_not_null(strstr(sc_str(f, "client.driver"), "PyMongo"));
    cr_assert_not_null(strstr(sc_str(f, "suggestion"), "select_related()"));
    bson_destroy(f);
    sc_close(&k);
}

Test(n1, lookups_without_parent_are_not_a_finding)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    send_lookups(&k, 0, 30, 10, REF_PLAIN, NULL);
    settle();
    cr_assert_eq(seen.count, 0);
    cr_assert_eq(mt_stats_get(st, MT_STAT_WINDOWS), 1);
    sc_close(&k);
}

/* Findings of one type among everything found so far. */
static int findings_of_type(const char *type)
{
    char *json = mt_stats_findings_json(st);
    bson_t *all = sc_parse(json);
    bson_iter_t it, f;
    int n = 0;
    cr_assert(bson_iter_init_find(&it, all, "findings") && bson_iter_recurse(&it, &f));
    while (bson_iter_next(&f)) {
        bson_iter_t t;
        if (bson_iter_recurse(&f, &t) && bson_iter_find(&t, "type") &&
            strcmp(bson_iter_utf8(&t, NULL), type) == 0)
            n++;
    }
    bson_destroy(all);
    bson_free(json);
    return n;
}

Test(n1, small_parent_is_not_a_parent)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    send_parent(&k, 4, 4, REF_PLAIN, NULL);
    send_lookups(&k, 0, 20, 4, REF_PLAIN, NULL);
    settle();
    cr_assert_eq(findings_of_type("n_plus_one"), 0);
    /* each of the 4 values was asked 5 times: that is what it is */
    cr_assert_eq(findings_of_type("repeated_read"), 4);
    sc_close(&k);
}

Test(n1, four_lookups_are_not_enough)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    send_parent(&k, 50, 20, REF_PLAIN, NULL);
    send_lookups(&k, 0, 4, 20, REF_PLAIN, NULL);
    settle();
    cr_assert_eq(seen.count, 0);
    sc_close(&k);
}

Test(n1, threshold_is_configurable)
{
    teardown();
    setup_cfg(false, 10);
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    send_parent(&k, 50, 20, REF_PLAIN, NULL);
    send_lookups(&k, 0, 9, 20, REF_PLAIN, NULL);
    settle();
    cr_assert_eq(seen.count, 0);
    send_parent(&k, 50, 20, REF_PLAIN, NULL);
    send_lookups(&k, 0, 10, 20, REF_PLAIN, NULL);
    settle();
    cr_assert_eq(seen.count, 1);
    sc_close(&k);
}

Test(n1, split_by_gap_is_not_a_finding)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    send_parent(&k, 50, 20, REF_PLAIN, NULL);
    send_lookups(&k, 0, 3, 20, REF_PLAIN, NULL);
    sc_now += 150 * MS; /* idle past the 100 ms gap: the next lookup opens a new window */
    send_lookups(&k, 3, 3, 20, REF_PLAIN, NULL);
    settle();
    cr_assert_eq(mt_stats_get(st, MT_STAT_WINDOWS), 2);
    cr_assert_eq(seen.count, 0);
    sc_close(&k);
}

Test(n1, only_the_connection_with_the_n1)
{
    sc_conn_t a = sc_open(st, 7, "127.0.0.1:1111");
    sc_conn_t b = sc_open(st, 8, "127.0.0.1:2222");
    sc_handshake(&a, "PyMongo", "3.11.0", "good");
    sc_handshake(&b, "PyMongo", "3.11.0", "bad");
    /* b: parent then 3 lookups only; a: 2 lookups (no parent) then nothing.
     * Interleaved in time, b's parent must not lend itself to a's lookups. */
    send_parent(&b, 50, 20, REF_PLAIN, NULL);
    for (uint32_t i = 0; i < 6; i++) {
        if (i < 3)
            send_lookups(&b, i, 1, 20, REF_PLAIN, NULL);
        send_lookups(&a, i, 1, 20, REF_PLAIN, NULL);
    }
    /* Now the real N+1 on b. */
    settle();
    cr_assert_eq(seen.count, 0);
    send_parent(&b, 30, 10, REF_PLAIN, NULL);
    for (uint32_t i = 0; i < 30; i++) {
        send_lookups(&b, i, 1, 10, REF_PLAIN, NULL);
        if (i % 10 == 0)
            send_lookups(&a, i, 1, 10, REF_PLAIN, NULL);
    }
    settle();
    cr_assert_eq(seen.count, 1);
    bson_t *f = sc_parse(seen.last);
    cr_assert_eq(sc_int(f, "window.connection_id"), 8);
    cr_assert_str_eq(sc_str(f, "client.addr"), "127.0.0.1:2222");
    cr_assert_str_eq(sc_str(f, "client.app_name"), "bad");
    cr_assert_eq(sc_int(f, "children.count"), 30);
    cr_assert_eq(sc_int(f, "children.distinct_values"), 10);
    bson_destroy(f);
    sc_close(&a);
    sc_close(&b);
}

Test(n1, parent_documents_via_getmore)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    bson_t *docs[6];
    for (uint32_t i = 0; i < 6; i++)
        docs[i] = show_doc(i, 6, REF_PLAIN);
    /* find with batchSize 2: two docs, then getMores, lookups in between. */
    sc_roundtrip(&k, sc_find("tvguide", "show", bson_new(), false, NULL),
                 sc_cursor_reply("tvguide.show", docs, 2, 4242, true), 1 * MS);
    send_lookups(&k, 0, 2, 6, REF_PLAIN, NULL);
    sc_roundtrip(&k, sc_getmore("tvguide", "show", 4242),
                 sc_cursor_reply("tvguide.show", docs + 2, 2, 4242, false), 1 * MS);
    send_lookups(&k, 2, 2, 6, REF_PLAIN, NULL);
    sc_roundtrip(&k, sc_getmore("tvguide", "show", 4242),
                 sc_cursor_reply("tvguide.show", docs + 4, 2, 0, false), 1 * MS);
    send_lookups(&k, 4, 2, 6, REF_PLAIN, NULL);
    sc_free_docs(docs, 6);
    settle();
    cr_assert_eq(seen.count, 1);
    bson_t *f = sc_parse(seen.last);
    cr_assert_eq(sc_int(f, "parent.docs_returned"), 6);
    cr_assert_float_eq(sc_double(f, "parent.duration_ms"), 3.0, 1e-9);
    cr_assert_str_eq(sc_str(f, "confidence"), "high");
    cr_assert_str_eq(sc_str(f, "field"), "channel");
    cr_assert_eq(sc_int(f, "matched"), 6);
    cr_assert_eq(sc_int(f, "window.commands"), 9);
    bson_destroy(f);
    sc_close(&k);
}

typedef struct {
    ref_layout_t layout;
    char field[32];
} layout_case_t;

ParameterizedTestParameters(n1, field_paths)
{
    static layout_case_t cases[] = {
        {REF_PLAIN, "channel"},
        {REF_NESTED, "customer.id"},
        {REF_DBREF, "channel"},
        {REF_ARRAY, "guests"},
    };
    return cr_make_param_array(layout_case_t, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(layout_case_t *c, n1, field_paths)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    send_parent(&k, 40, 40, c->layout, NULL);
    send_lookups(&k, 0, 40, 40, c->layout, NULL);
    settle();
    cr_assert_eq(seen.count, 1);
    assert_evidence("high", c->field, 40);
    sc_close(&k);
}

Test(n1, values_not_in_parent_give_medium)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    send_parent(&k, 50, 20, REF_NONE, NULL);
    send_lookups(&k, 0, 50, 20, REF_NONE, NULL);
    settle();
    cr_assert_eq(seen.count, 1);
    assert_evidence("medium", NULL, 0);
    bson_t *all = only_finding();
    cr_assert(sc_is_null(all, "patterns.0.field"));
    bson_destroy(all);
    sc_close(&k);
}

/* References that are long strings or user-defined binaries are found
 * under their field like any other value. */
Test(n1, long_string_and_binary_references_are_found)
{
    static const ref_layout_t layouts[] = {REF_LONG, REF_BIN80};
    for (size_t l = 0; l < 2; l++) {
        sc_conn_t k = sc_open(st, 1 + l, "127.0.0.1:1");
        send_parent(&k, 50, 20, layouts[l], NULL);
        send_lookups(&k, 0, 50, 20, layouts[l], NULL);
        settle();
        cr_assert_eq(seen.count, (int)l + 1);
        assert_evidence("high", "channel", 50);
        sc_close(&k);
    }
}

/* Documents are kept as evidence from the first possible parent on (a read
 * of n1-threshold documents, or one that leaves a cursor open): before it no
 * reply can be a parent or a parent's child. */
Test(n1, evidence_is_kept_from_the_first_possible_parent_on)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    send_lookups(&k, 0, 10, 20, REF_PLAIN, NULL);
    const mt_window_t *w = k.c->window;
    cr_assert_not_null(w);
    cr_assert_eq(w->ncmds, 10);
    cr_assert_eq(w->ev_docs, 0, "ten lookups, no parent yet");
    send_parent(&k, 4, 4, REF_PLAIN, NULL);
    cr_assert_eq(w->ev_docs, 0, "four documents are not a parent's (threshold 5)");
    bson_t *doc = show_doc(0, 4, REF_PLAIN);
    bson_t *docs[1] = {doc};
    sc_roundtrip(&k, sc_find("tvguide", "show", bson_new(), false, NULL),
                 sc_cursor_reply("tvguide.show", docs, 1, 42, true), 1 * MS);
    bson_destroy(doc);
    cr_assert_eq(w->ev_docs, 1, "an open cursor may bring more");
    send_lookups(&k, 0, 3, 20, REF_PLAIN, NULL);
    cr_assert_eq(w->ev_docs, 4, "the children after it");
    sc_close(&k);
}

Test(n1, partly_explained_values_stay_medium)
{
    /* 50 lookups, only 30 of them (60% < 80%) of ids found in the parent. */
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    send_parent(&k, 50, 50, REF_PLAIN, NULL);
    send_lookups(&k, 0, 30, 50, REF_PLAIN, NULL);
    send_lookups(&k, 0, 20, 20, REF_NONE, NULL);
    settle();
    /* Two shapes? No: both are {_id: ?} on channel, one group of 50. */
    cr_assert_eq(seen.count, 1);
    assert_evidence("medium", NULL, 30);
    bson_t *f = sc_parse(seen.last);
    cr_assert_eq(sc_int(f, "children.count"), 50);
    bson_destroy(f);
    sc_close(&k);
}

Test(n1, best_evidence_picks_the_parent)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    send_parent(&k, 30, 30, REF_PLAIN, NULL);
    /* A second, later qualifying parent whose documents say nothing. */
    bson_t *docs[10];
    for (uint32_t i = 0; i < 10; i++) {
        docs[i] = bson_new();
        BSON_APPEND_INT32(docs[i], "n", (int32_t)i);
    }
    sc_roundtrip(&k, sc_find("tvguide", "user", bson_new(), false, NULL),
                 sc_cursor_reply("tvguide.user", docs, 10, 0, true), 1 * MS);
    sc_free_docs(docs, 10);
    send_lookups(&k, 0, 30, 30, REF_PLAIN, NULL);
    settle();
    cr_assert_eq(seen.count, 1);
    bson_t *f = sc_parse(seen.last);
    cr_assert_str_eq(sc_str(f, "parent.collection"), "show");
    cr_assert_str_eq(sc_str(f, "confidence"), "high");
    bson_destroy(f);
    sc_close(&k);
}

Test(n1, latest_parent_wins_a_tie)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    bson_t *docs[10];
    for (uint32_t i = 0; i < 10; i++) {
        docs[i] = bson_new();
        BSON_APPEND_INT32(docs[i], "n", (int32_t)i);
    }
    sc_roundtrip(&k, sc_find("tvguide", "first", bson_new(), false, NULL),
                 sc_cursor_reply("tvguide.first", docs, 10, 0, true), 1 * MS);
    sc_roundtrip(&k, sc_find("tvguide", "second", bson_new(), false, NULL),
                 sc_cursor_reply("tvguide.second", docs, 10, 0, true), 1 * MS);
    sc_free_docs(docs, 10);
    send_lookups(&k, 0, 10, 10, REF_NONE, NULL);
    settle();
    cr_assert_eq(seen.count, 1);
    bson_t *f = sc_parse(seen.last);
    cr_assert_str_eq(sc_str(f, "parent.collection"), "second");
    bson_destroy(f);
    sc_close(&k);
}

Test(n1, repeated_request_in_one_window_gives_two_findings)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    send_parent(&k, 20, 20, REF_PLAIN, NULL);
    send_lookups(&k, 0, 20, 20, REF_PLAIN, NULL);
    send_parent(&k, 20, 20, REF_PLAIN, NULL);
    send_lookups(&k, 0, 20, 20, REF_PLAIN, NULL);
    settle();
    cr_assert_eq(mt_stats_get(st, MT_STAT_WINDOWS), 1);
    cr_assert_eq(seen.count, 2);
    char *json = mt_stats_findings_json(st);
    bson_t *all = sc_parse(json);
    bson_free(json);
    cr_assert_eq(sc_int(all, "findings.0.children.count"), 20);
    cr_assert_eq(sc_int(all, "findings.1.children.count"), 20);
    cr_assert_eq(sc_array_len(all, "patterns"), 1);
    cr_assert_eq(sc_int(all, "patterns.0.occurrences"), 2);
    bson_destroy(all);
    sc_close(&k);
}

Test(n1, children_must_be_lookups_on_one_changing_key)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    send_parent(&k, 20, 20, REF_PLAIN, NULL);
    for (uint32_t i = 0; i < 20; i++) {
        bson_t *f = sc_id_filter(i);
        BSON_APPEND_INT32(f, "version", (int32_t)i); /* two fields, both changing */
        sc_roundtrip(&k, sc_find("tvguide", "channel", f, true, NULL),
                     sc_one_doc_reply("tvguide.channel", i), 500 * US);
    }
    for (uint32_t i = 0; i < 20; i++) {
        bson_t *cmd = sc_find("tvguide", "program", sc_id_filter(i), false, NULL);
        BSON_APPEND_INT32(cmd, "limit", 5); /* limit other than 0/1 */
        sc_roundtrip(&k, cmd, sc_one_doc_reply("tvguide.program", i), 500 * US);
    }
    settle();
    cr_assert_eq(seen.count, 0);
    sc_close(&k);
}

Test(n1, aggregate_match_and_single_in_children)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    send_parent(&k, 10, 10, REF_PLAIN, NULL);
    for (uint32_t i = 0; i < 10; i++) {
        /* mongoose per-document populate(): {_id: {$in: [v]}} */
        bson_oid_t oid;
        sc_oid(&oid, i);
        bson_t *f = bson_new(), in, arr;
        BSON_APPEND_DOCUMENT_BEGIN(f, "_id", &in);
        BSON_APPEND_ARRAY_BEGIN(&in, "$in", &arr);
        BSON_APPEND_OID(&arr, "0", &oid);
        bson_append_array_end(&in, &arr);
        bson_append_document_end(f, &in);
        sc_roundtrip(&k, sc_find("tvguide", "channel", f, false, NULL),
                     sc_one_doc_reply("tvguide.channel", i), 500 * US);
    }
    for (uint32_t i = 0; i < 10; i++) {
        bson_oid_t oid;
        sc_oid(&oid, i);
        bson_t *cmd = bson_new(), pipe, stage, match;
        BSON_APPEND_UTF8(cmd, "aggregate", "author");
        BSON_APPEND_ARRAY_BEGIN(cmd, "pipeline", &pipe);
        BSON_APPEND_DOCUMENT_BEGIN(&pipe, "0", &stage);
        BSON_APPEND_DOCUMENT_BEGIN(&stage, "$match", &match);
        BSON_APPEND_OID(&match, "_id", &oid);
        bson_append_document_end(&stage, &match);
        bson_append_document_end(&pipe, &stage);
        bson_append_array_end(cmd, &pipe);
        BSON_APPEND_DOCUMENT_BEGIN(cmd, "cursor", &stage);
        bson_append_document_end(cmd, &stage);
        BSON_APPEND_UTF8(cmd, "$db", "tvguide");
        sc_roundtrip(&k, cmd, sc_one_doc_reply("tvguide.author", i), 500 * US);
    }
    settle();
    cr_assert_eq(seen.count, 2);
    char *json = mt_stats_findings_json(st);
    bson_t *all = sc_parse(json);
    bson_free(json);
    cr_assert_str_eq(sc_str(all, "findings.0.children.collection"), "channel");
    cr_assert_str_eq(sc_str(all, "findings.0.children.shape"), "{\"_id\": {\"$in\": [\"?\"]}}");
    cr_assert_str_eq(sc_str(all, "findings.0.field"), "channel");
    cr_assert_str_eq(sc_str(all, "findings.1.children.command"), "aggregate");
    cr_assert_str_eq(sc_str(all, "findings.1.children.collection"), "author");
    cr_assert_str_eq(sc_str(all, "findings.1.field"), "channel");
    cr_assert_eq(sc_array_len(all, "patterns"), 2);
    bson_destroy(all);
    sc_close(&k);
}

Test(n1, keyed_window_across_connections)
{
    sc_conn_t a = sc_open(st, 1, "127.0.0.1:1");
    sc_conn_t b = sc_open(st, 2, "127.0.0.1:2");
    send_parent(&a, 10, 10, REF_PLAIN, "mongotap:req-42");
    for (uint32_t i = 0; i < 10; i++)
        send_lookups(i % 2 ? &a : &b, i, 1, 10, REF_PLAIN, "mongotap:req-42");
    settle();
    cr_assert_eq(seen.count, 1);
    bson_t *f = sc_parse(seen.last);
    cr_assert_str_eq(sc_str(f, "window.key"), "mongotap:req-42");
    cr_assert_eq(sc_int(f, "window.connection_id"), 1);
    cr_assert_eq(sc_int(f, "children.count"), 10);
    bson_destroy(f);
    sc_close(&a);
    sc_close(&b);
}

Test(n1, findings_group_into_patterns)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    for (int round = 0; round < 3; round++) {
        send_parent(&k, 10, 10, REF_PLAIN, NULL);
        send_lookups(&k, 0, 10, 10, REF_PLAIN, NULL);
        settle();
    }
    /* A different pattern, costlier in total. */
    send_parent(&k, 10, 10, REF_NESTED, NULL);
    for (uint32_t i = 0; i < 10; i++)
        sc_roundtrip(&k, sc_find("tvguide", "customer", sc_id_filter(i), true, NULL),
                     sc_one_doc_reply("tvguide.customer", i), 5 * MS);
    settle();
    cr_assert_eq(seen.count, 4);
    char *json = mt_stats_findings_json(st);
    bson_t *all = sc_parse(json);
    bson_free(json);
    cr_assert_eq(sc_array_len(all, "findings"), 4);
    cr_assert_str_eq(sc_str(all, "findings.3.id"), "f-000004");
    cr_assert_eq(sc_array_len(all, "patterns"), 2);
    cr_assert_eq(sc_int(all, "patterns.0.rank"), 1);
    cr_assert_str_eq(sc_str(all, "patterns.0.children.collection"), "customer");
    cr_assert_str_eq(sc_str(all, "patterns.0.field"), "customer.id");
    cr_assert_float_eq(sc_double(all, "patterns.0.children.duration_ms"), 50.0, 1e-9);
    cr_assert_eq(sc_int(all, "patterns.1.occurrences"), 3);
    cr_assert_float_eq(sc_double(all, "patterns.1.children.duration_ms"), 15.0, 1e-9);
    cr_assert_float_eq(sc_double(all, "patterns.1.children.avg_duration_ms"), 5.0, 1e-9);
    cr_assert_eq(sc_int(all, "patterns.1.example_window"), sc_int(all, "findings.2.window.id"));
    cr_assert_str_eq(sc_str(all, "patterns.1.example_finding"), "f-000003");
    cr_assert_not_null(strstr(sc_str(all, "patterns.1.suggestion"), "10 channel documents"));
    bson_destroy(all);
    sc_close(&k);
}

typedef struct {
    char driver[48];
    char must[48];
    char must_not[48];
} driver_case_t;

ParameterizedTestParameters(n1, suggestion_per_driver)
{
    static driver_case_t cases[] = {
        {"PyMongo", "pymongo: one find with {_id: {$in: [...]}}", "populate"},
        {"PyMongo|MongoEngine", "select_related()", "pymongo:"},
        {"nodejs|Mongoose", "populate('channel')", "select_related"},
        {"nodejs", "$lookup", "select_related"},
        {"mongo-java-driver", "$lookup", "populate"},
    };
    return cr_make_param_array(driver_case_t, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(driver_case_t *c, n1, suggestion_per_driver)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    sc_handshake(&k, c->driver, "1.0", NULL);
    send_parent(&k, 8, 8, REF_PLAIN, NULL);
    send_lookups(&k, 0, 8, 8, REF_PLAIN, NULL);
    settle();
    cr_assert_eq(seen.count, 1);
    bson_t *f = sc_parse(seen.last);
    const char *s = sc_str(f, "suggestion");
    cr_assert_not_null(strstr(s, c->must), "%s: %s", c->driver, s);
    cr_assert_null(strstr(s, c->must_not), "%s: %s", c->driver, s);
    cr_assert_not_null(strstr(s, "8 channel documents"), "%s", s);
    cr_assert(sc_is_null(f, "client.app_name"));
    bson_destroy(f);
    sc_close(&k);
}

Test(n1, suggestion_wording_unit)
{
    char buf[512];
    mt_suggest_args_t a = {
        .collection = "channel", .key = "_id", .field = "channel", .distinct = 20};
    mt_suggest(MT_FINDING_N_PLUS_ONE, "PyMongo 3.11.0", &a, buf, sizeof buf);
    cr_assert_str_eq(buf, "Load the 20 channel documents in one query ({_id: {$in: [...]}}): "
                          "mongoengine: select_related(); pymongo: one find with "
                          "{_id: {$in: [...]}}.");
    mt_suggest_args_t b = {.collection = "author", .key = "author_id", .distinct = 1};
    mt_suggest(MT_FINDING_N_PLUS_ONE, "", &b, buf, sizeof buf);
    cr_assert_not_null(strstr(buf, "1 author document "), "%s", buf);
    cr_assert_not_null(strstr(buf, "{author_id: {$in: [...]}}"), "%s", buf);
}

Test(n1, value_hash_compares_numbers_by_value)
{
    bson_t *d = fx_json("{\"a\": 5, \"b\": {\"$numberLong\": \"5\"}, \"c\": 5.0, \"d\": 5.5, "
                        "\"e\": \"5\", \"f\": \"5\"}");
    bson_iter_t a, b, c, dd, e, f;
    cr_assert(bson_iter_init_find(&a, d, "a") && bson_iter_init_find(&b, d, "b") &&
              bson_iter_init_find(&c, d, "c") && bson_iter_init_find(&dd, d, "d") &&
              bson_iter_init_find(&e, d, "e") && bson_iter_init_find(&f, d, "f"));
    cr_assert_eq(mt_evidence_value_hash(&a), mt_evidence_value_hash(&b));
    cr_assert_eq(mt_evidence_value_hash(&a), mt_evidence_value_hash(&c));
    cr_assert_neq(mt_evidence_value_hash(&a), mt_evidence_value_hash(&dd));
    cr_assert_neq(mt_evidence_value_hash(&a), mt_evidence_value_hash(&e));
    cr_assert_eq(mt_evidence_value_hash(&e), mt_evidence_value_hash(&f));
    bson_destroy(d);
}

/* Every output, concatenated. */
static char *all_outputs(void)
{
    char *parts[9] = {
        mt_stats_json(st, sc_now, 0),
        mt_stats_connections_json(st, sc_now),
        mt_stats_windows_json(st, 0, false, NULL),
        mt_stats_findings_json(st),
        mt_stats_metrics(st, sc_now),
        mt_stats_report(st, MT_REPORT_JSON, sc_now),
        mt_stats_report(st, MT_REPORT_MARKDOWN, sc_now),
        mt_stats_report(st, MT_REPORT_HTML, sc_now),
        strdup(seen.last ? seen.last : ""),
    };
    bson_string_t *s = bson_string_new(NULL);
    for (int i = 0; i < 9; i++) {
        cr_assert_not_null(parts[i]);
        bson_string_append(s, parts[i]);
        bson_string_append(s, "\n");
        if (i == 8)
            free(parts[i]);
        else
            bson_free(parts[i]);
    }
    return bson_string_free(s, false);
}

static void run_secret_scenario(void)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    sc_handshake(&k, "PyMongo", "3.11.0", "app");
    send_parent(&k, 12, 6, REF_STRING, NULL);
    send_lookups(&k, 0, 12, 6, REF_STRING, NULL);
    /* and one still in its open window, for /api/connections */
    send_lookups(&k, 0, 1, 6, REF_STRING, NULL);
    sc_now += 500 * MS;
    mt_stats_tick(st, sc_now);
    /* keep the connection (its open window is closed by tick already) */
    send_lookups(&k, 0, 1, 6, REF_STRING, NULL);
    mt_stats_conn_close(k.c, sc_now);
    sc_now += 500 * MS;
    mt_stats_tick(st, sc_now);
}

Test(n1, values_never_leak_without_log_values)
{
    run_secret_scenario();
    cr_assert_eq(seen.count, 1);
    char *out = all_outputs();
    cr_assert_null(strstr(out, "s3cr3t"), "a user value leaked into an output");
    /* but the finding is there */
    cr_assert_not_null(strstr(out, "\"field\":\"channel\""));
    bson_free(out);
}

Test(n1, values_shown_with_log_values)
{
    teardown();
    setup_cfg(true, 5);
    run_secret_scenario();
    cr_assert_eq(seen.count, 1);
    bson_t *f = sc_parse(seen.last);
    cr_assert_eq(sc_array_len(f, "values"), 5);
    cr_assert_str_eq(sc_str(f, "values.0"), "s3cr3t-0");
    bson_destroy(f);
}

Test(n1, two_fields_into_one_collection_told_apart_by_order)
{
    /* Every show names a channel and an editor channel, both drawn from the
     * same 10 channels; the lookups follow the editor field. */
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    bson_t *docs[30];
    for (uint32_t i = 0; i < 30; i++) {
        bson_oid_t a, b;
        sc_oid(&a, i % 10);
        sc_oid(&b, (i + 3) % 10);
        docs[i] = bson_new();
        bson_t sub;
        BSON_APPEND_OID(docs[i], "channel", &a);
        BSON_APPEND_DOCUMENT_BEGIN(docs[i], "editor", &sub);
        BSON_APPEND_OID(&sub, "ref", &b);
        bson_append_document_end(docs[i], &sub);
    }
    sc_roundtrip(&k, sc_find("tvguide", "show", bson_new(), false, NULL),
                 sc_cursor_reply("tvguide.show", docs, 30, 0, true), 1 * MS);
    sc_free_docs(docs, 30);
    for (uint32_t i = 0; i < 30; i++)
        sc_roundtrip(&k, sc_find("tvguide", "channel", sc_id_filter((i + 3) % 10), true, NULL),
                     sc_one_doc_reply("tvguide.channel", (i + 3) % 10), 500 * US);
    settle();
    cr_assert_eq(seen.count, 1);
    assert_evidence("high", "editor.ref", 30);
    sc_close(&k);
}

/* Ignoring on purpose (SPEC section 11): a mongotap:ignore comment or an
 * --ignore-ns namespace keeps a command out of every finding. */

Test(n1, ignored_children_are_no_children)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    send_parent(&k, 50, 20, REF_PLAIN, NULL);
    send_lookups(&k, 0, 50, 20, REF_PLAIN, "mongotap:ignore-seed");
    settle();
    cr_assert_eq(seen.count, 0);
    /* one window: the comment opened no keyed window of its own */
    cr_assert_eq(mt_stats_get(st, MT_STAT_WINDOWS), 1);
    sc_close(&k);
}

Test(n1, an_ignored_parent_is_no_parent)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    send_parent(&k, 50, 20, REF_PLAIN, "mongotap:ignore");
    send_lookups(&k, 0, 50, 20, REF_PLAIN, NULL);
    settle();
    cr_assert_eq(seen.count, 0);
    sc_close(&k);
}

Test(n1, ignore_is_a_prefix_and_other_keys_still_count)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    send_parent(&k, 50, 20, REF_PLAIN, "mongotap:ignored-page");
    send_lookups(&k, 0, 50, 20, REF_PLAIN, "mongotap:ignored-page");
    settle();
    cr_assert_eq(seen.count, 0, "mongotap:ignore... is a prefix: this one is ignored too");
    sc_close(&k);
    k = sc_open(st, 2, "127.0.0.1:2");
    send_parent(&k, 50, 20, REF_PLAIN, "mongotap:page-7");
    send_lookups(&k, 0, 50, 20, REF_PLAIN, "mongotap:page-7");
    settle();
    cr_assert_eq(seen.count, 1);
    sc_close(&k);
}

static void setup_ignoring(const char *const *ns, size_t n)
{
    mt_stats_config_t cfg;
    teardown();
    mt_stats_config_defaults(&cfg);
    cfg.ignore_ns = ns;
    cfg.nignore_ns = n;
    cfg.on_finding = sc_on_finding;
    cfg.on_finding_data = &seen;
    memset(&seen, 0, sizeof seen);
    st = mt_stats_new(&cfg, sc_now);
    cr_assert_not_null(st);
}

static uint32_t findings_with_ignore_ns(const char *ns)
{
    const char *const list[] = {"other.x", ns};
    setup_ignoring(list, 2);
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    send_parent(&k, 50, 20, REF_PLAIN, NULL);
    send_lookups(&k, 0, 50, 20, REF_PLAIN, NULL);
    settle();
    sc_close(&k);
    return seen.count;
}

Test(n1, ignore_ns_children_parent_database_or_elsewhere)
{
    cr_assert_eq(findings_with_ignore_ns("tvguide.channel"), 0, "the children's namespace");
    cr_assert_eq(findings_with_ignore_ns("tvguide.show"), 0, "the parent's namespace");
    cr_assert_eq(findings_with_ignore_ns("tvguide.*"), 0, "the whole database");
    cr_assert_eq(findings_with_ignore_ns("tvguide.chan"), 1, "not a prefix match");
    cr_assert_eq(findings_with_ignore_ns("tv.*"), 1, "not a prefix of the database");
}

/* Past --max-shapes the children are accounted under "<other>", yet the
 * detector sees their real key while the window is open; once closed, the
 * window shows them as the "<other>" entry, named by their kind. */
Test(n1, children_past_max_shapes_keep_their_key_until_the_window_closes)
{
    mt_stats_config_t cfg;
    teardown();
    mt_stats_config_defaults(&cfg);
    cfg.max_shapes = 1;
    cfg.on_finding = sc_on_finding;
    cfg.on_finding_data = &seen;
    memset(&seen, 0, sizeof seen);
    st = mt_stats_new(&cfg, sc_now);
    cr_assert_not_null(st);

    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    send_parent(&k, 50, 20, REF_PLAIN, NULL);
    send_lookups(&k, 0, 50, 20, REF_PLAIN, NULL);
    const mt_window_cmd_t *child = &k.c->window->cmds[1];
    cr_assert(child->entry && child->entry->overflow);
    cr_assert_str_eq(mt_window_cmd_collection(child), "channel");
    cr_assert_str_eq(mt_window_cmd_shape(child), "{\"_id\": \"?\"}");
    settle();

    cr_assert_eq(seen.count, 1);
    bson_t *f = sc_parse(seen.last);
    cr_assert_str_eq(sc_str(f, "children.collection"), "channel");
    cr_assert_str_eq(sc_str(f, "children.shape"), "{\"_id\": \"?\"}");
    cr_assert_str_eq(sc_str(f, "field"), "channel");
    bson_destroy(f);
    char *json = mt_stats_windows_json(st, 0, false, NULL);
    bson_t *doc = sc_parse(json);
    cr_assert_str_eq(sc_str(doc, "windows.0.commands.0.collection"), "show");
    cr_assert_str_eq(sc_str(doc, "windows.0.commands.1.shape"), "<other>");
    cr_assert_str_eq(sc_str(doc, "windows.0.commands.1.command"), "find");
    bson_destroy(doc);
    bson_free(json);
    sc_close(&k);
}
