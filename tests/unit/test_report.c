/*
 * report: the three formats over a run with two N+1 patterns, one of them on
 * a collection whose name is hostile to Markdown and HTML: JSON parses and
 * carries the report schema, Markdown tables keep their columns, HTML is one
 * self-contained page with everything escaped. Also the empty report and the
 * format names.
 */
#include "report.h"
#include "stats_test_util.h"

static mt_stats_t *st;

#define HOSTILE "x<script>alert(1)</script>|`y`&z"

static void setup(void)
{
    st = mt_stats_new(NULL, sc_now);
    cr_assert_not_null(st);
}

static void teardown(void)
{
    mt_stats_free(st);
}

TestSuite(report, .init = setup, .fini = teardown);

/* parent on coll_p with 10 docs referencing 10 children in coll_c */
static void n1_round(sc_conn_t *k, const char *coll_p, const char *coll_c, uint64_t child_lat)
{
    bson_t *docs[10];
    for (uint32_t i = 0; i < 10; i++) {
        bson_oid_t oid;
        sc_oid(&oid, i);
        docs[i] = bson_new();
        BSON_APPEND_OID(docs[i], "ref", &oid);
    }
    char ns[256];
    snprintf(ns, sizeof ns, "tv.%s", coll_p);
    sc_roundtrip(k, sc_find("tv", coll_p, bson_new(), false, NULL),
                 sc_cursor_reply(ns, docs, 10, 0, true), 1 * MS);
    sc_free_docs(docs, 10);
    snprintf(ns, sizeof ns, "tv.%s", coll_c);
    for (uint32_t i = 0; i < 10; i++)
        sc_roundtrip(k, sc_find("tv", coll_c, sc_id_filter(i), true, NULL), sc_one_doc_reply(ns, i),
                     child_lat);
    sc_now += 300 * MS;
    mt_stats_tick(st, sc_now);
}

static void traffic(void)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    sc_handshake(&k, "PyMongo", "3.11.0", "tvguide");
    n1_round(&k, "show", "channel", 1 * MS);
    n1_round(&k, "show", "channel", 1 * MS);
    n1_round(&k, "post", HOSTILE, 3 * MS);
    sc_close(&k);
    cr_assert_eq(mt_stats_get(st, MT_STAT_FINDINGS), 3);
}

Test(report, json)
{
    traffic();
    char *out = mt_stats_report(st, MT_REPORT_JSON, sc_now);
    bson_t *doc = sc_parse(out);
    cr_assert_str_eq(sc_str(doc, "schema"), "mongotap.report/1");
    cr_assert_eq(strlen(sc_str(doc, "generated_at")), 24);
    cr_assert_eq(sc_int(doc, "totals.commands"), 34);
    cr_assert_eq(sc_int(doc, "totals.findings"), 3);
    cr_assert_eq(sc_int(doc, "totals.windows.closed"), 3);
    cr_assert_eq(sc_int(doc, "totals.patterns"), 2);
    cr_assert_eq(sc_array_len(doc, "findings"), 3);
    cr_assert_str_eq(sc_str(doc, "findings.0.schema"), "mongotap.finding/1");
    cr_assert_eq(sc_array_len(doc, "patterns"), 2);
    /* ranked by child time: 30 ms on the hostile collection, 20 ms on channel */
    cr_assert_str_eq(sc_str(doc, "patterns.0.children.collection"), HOSTILE);
    cr_assert_eq(sc_int(doc, "patterns.1.occurrences"), 2);
    cr_assert_str_eq(sc_str(doc, "patterns.1.parent.shape"), "{}");
    cr_assert_str_eq(sc_str(doc, "patterns.1.children.shape"), "{\"_id\": \"?\"}");
    cr_assert_str_eq(sc_str(doc, "patterns.1.field"), "ref");
    cr_assert_float_eq(sc_double(doc, "patterns.1.children.duration_ms"), 20.0, 1e-9);
    cr_assert_float_eq(sc_double(doc, "patterns.1.children.avg_duration_ms"), 10.0, 1e-9);
    cr_assert_gt(sc_int(doc, "patterns.1.example_window"), 0);
    cr_assert_not_null(strstr(sc_str(doc, "patterns.1.suggestion"), "select_related()"));
    cr_assert_geq(sc_array_len(doc, "shapes"), 4);
    cr_assert_str_eq(sc_str(doc, "shapes.0.collection"), HOSTILE);
    bson_destroy(doc);
    bson_free(out);
}

/* Cells of a Markdown table row, honouring \| escapes. */
static int md_cells(const char *line)
{
    int bars = 0;
    for (const char *p = line; *p && *p != '\n'; p++) {
        if (*p == '\\' && p[1]) {
            p++;
            continue;
        }
        if (*p == '|')
            bars++;
    }
    return bars - 1;
}

Test(report, markdown)
{
    traffic();
    char *out = mt_stats_report(st, MT_REPORT_MARKDOWN, sc_now);
    cr_assert_eq(strncmp(out, "# mongotap report\n", 18), 0);
    cr_assert_not_null(strstr(out, "## N+1 patterns (`n_plus_one`)"));
    cr_assert_not_null(strstr(out, "## Top query shapes by total time"));
    const char *hdr = strstr(out, "| # | Parent query | Repeated command | Field | Occurrences | "
                                  "Total child time | Avg child time | Example window | Fix |");
    cr_assert_not_null(hdr, "%s", out);
    /* every row of the pattern table has the header's 9 columns */
    const char *line = hdr;
    int rows = 0;
    while (line && *line == '|') {
        cr_assert_eq(md_cells(line), 9, "row: %.200s", line);
        rows++;
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    cr_assert_eq(rows, 4, "header, rule, two patterns");
    cr_assert_not_null(strstr(out, "| 1 | `find` `tv.post` `{}` |"), "%s", out);
    cr_assert_not_null(strstr(out, "| 2 | `find` `tv.show` `{}` | `find` `tv.channel` "
                                   "`{\"_id\": \"?\"}` | `ref` | 2 | 20.0 ms | 10.0 ms | window "),
                       "%s", out);
    /* the hostile name only inside a code span, with its pipe escaped */
    cr_assert_not_null(strstr(out, "``tv.x<script>alert(1)</script>\\|`y`&z``"), "%s", out);
    bson_free(out);
}

Test(report, html)
{
    traffic();
    char *out = mt_stats_report(st, MT_REPORT_HTML, sc_now);
    cr_assert_eq(strncmp(out, "<!DOCTYPE html>", 15), 0);
    cr_assert_not_null(strstr(out, "</html>"));
    cr_assert_not_null(strstr(out, "<style>"));
    cr_assert_not_null(strstr(out, "<svg"));
    cr_assert_not_null(strstr(out, "<rect"));
    cr_assert_null(strstr(out, "<script"), "nothing executable, the hostile name is escaped");
    cr_assert_not_null(strstr(out, "x&lt;script&gt;alert(1)&lt;/script&gt;|`y`&amp;z"));
    /* self-contained: no external resource of any kind */
    cr_assert_null(strstr(out, "http:"));
    cr_assert_null(strstr(out, "https:"));
    cr_assert_null(strstr(out, "src="));
    cr_assert_null(strstr(out, "<link"));
    cr_assert_null(strstr(out, "@import"));
    cr_assert_not_null(strstr(out, "select_related()"));
    /* each pattern's example window opens in the console of the admin it came from */
    char *findings = mt_stats_findings_json(st);
    bson_t *json_doc = sc_parse(findings);
    bson_free(findings);
    char link[96];
    snprintf(link, sizeof link, "<a class=\"window\" href=\"/#window=%lld\">window %lld</a>",
             (long long)sc_int(json_doc, "patterns.0.example_window"),
             (long long)sc_int(json_doc, "patterns.0.example_window"));
    cr_assert_not_null(strstr(out, link), "%s in %s", link, out);
    bson_destroy(json_doc);
    /* two bars, one per pattern */
    int bars = 0;
    for (const char *p = out; (p = strstr(p, "<rect")); p++)
        bars++;
    cr_assert_eq(bars, 2);
    bson_free(out);
}

Test(report, empty)
{
    char *out = mt_stats_report(st, MT_REPORT_MARKDOWN, sc_now);
    cr_assert_not_null(strstr(out, "No N+1 pattern, write loop or repeated read found."));
    bson_free(out);
    out = mt_stats_report(st, MT_REPORT_HTML, sc_now);
    cr_assert_not_null(strstr(out, "No N+1 pattern, write loop or repeated read found."));
    cr_assert_null(strstr(out, "<svg"));
    bson_free(out);
    out = mt_stats_report(st, MT_REPORT_JSON, sc_now);
    bson_t *doc = sc_parse(out);
    cr_assert_eq(sc_array_len(doc, "findings"), 0);
    cr_assert_eq(sc_array_len(doc, "patterns"), 0);
    cr_assert_eq(sc_array_len(doc, "shapes"), 0);
    bson_destroy(doc);
    bson_free(out);
}

Test(report, format_names)
{
    cr_assert_eq(mt_report_format_parse("json"), MT_REPORT_JSON);
    cr_assert_eq(mt_report_format_parse("markdown"), MT_REPORT_MARKDOWN);
    cr_assert_eq(mt_report_format_parse("md"), MT_REPORT_MARKDOWN);
    cr_assert_eq(mt_report_format_parse("html"), MT_REPORT_HTML);
    cr_assert_eq(mt_report_format_parse("xml"), -1);
    cr_assert_eq(mt_report_format_parse(""), -1);
    cr_assert_eq(mt_report_format_parse(NULL), -1);
    cr_assert_str_eq(mt_report_format_str(MT_REPORT_JSON), "json");
    cr_assert_str_eq(mt_report_format_str(MT_REPORT_MARKDOWN), "markdown");
    cr_assert_str_eq(mt_report_format_str(MT_REPORT_HTML), "html");
}
