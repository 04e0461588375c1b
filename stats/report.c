/*
 * report: renders findings, patterns, top shapes and totals. JSON goes
 * through a bson_t; Markdown and HTML are written with bson_string_t and an
 * escaper per format (user-controlled text such as shapes, collection and
 * application names is never emitted raw).
 */
#include "report.h"

#include <bson/bson.h>
#include <string.h>

#include "clock.h"
#include "json.h"

int mt_report_format_parse(const char *s)
{
    if (!s)
        return -1;
    if (strcmp(s, "json") == 0)
        return MT_REPORT_JSON;
    if (strcmp(s, "markdown") == 0 || strcmp(s, "md") == 0)
        return MT_REPORT_MARKDOWN;
    if (strcmp(s, "html") == 0)
        return MT_REPORT_HTML;
    return -1;
}

const char *mt_report_format_str(mt_report_format_t fmt)
{
    switch (fmt) {
    case MT_REPORT_JSON:
        return "json";
    case MT_REPORT_MARKDOWN:
        return "markdown";
    case MT_REPORT_HTML:
        return "html";
    }
    return "unknown";
}

static size_t shown_shapes(const mt_report_input_t *in)
{
    return in->nshapes < MT_REPORT_TOP_SHAPES ? in->nshapes : MT_REPORT_TOP_SHAPES;
}

/* "db.collection", or "db" for commands without a collection. */
static void namespace_of(const char *db, const char *coll, char *out, size_t cap)
{
    if (*coll)
        bson_snprintf(out, cap, "%s.%s", db, coll);
    else
        bson_snprintf(out, cap, "%s", db);
}

/* Cuts s to at most max bytes on a UTF-8 boundary, marking the cut with an
 * ellipsis. */
static void cut_label(char *s, size_t max)
{
    size_t len = strlen(s);
    if (len <= max)
        return;
    size_t at = max - 3;
    while (at > 0 && ((unsigned char)s[at] & 0xC0) == 0x80)
        at--;
    memcpy(s + at, "\xe2\x80\xa6", 4); /* U+2026 and the NUL */
}

/* JSON */

static void totals_bson(const mt_report_input_t *in, bson_t *doc)
{
    bson_t t;
    BSON_APPEND_DOCUMENT_BEGIN(doc, "totals", &t);
    BSON_APPEND_DOUBLE(&t, "uptime_s", (double)(int64_t)(in->uptime_s * 1000) / 1000.0);
    mt_stats_counters_bson(in->counters, &t);
    bson_append_document_end(doc, &t);
}

static char *render_json(const mt_report_input_t *in)
{
    char iso[MT_CLOCK_ISO_LEN];
    bson_t doc, arr, sub;
    bson_init(&doc);
    BSON_APPEND_UTF8(&doc, "schema", "mongotap.report/1");
    BSON_APPEND_UTF8(&doc, "generated_at", mt_clock_iso8601(in->generated_ms, iso));
    totals_bson(in, &doc);
    mt_findings_bson(in->findings, &doc);
    BSON_APPEND_ARRAY_BEGIN(&doc, "shapes", &arr);
    for (size_t i = 0; i < shown_shapes(in); i++) {
        char k[16];
        const char *key;
        bson_uint32_to_string((uint32_t)i, &key, k, sizeof k);
        BSON_APPEND_DOCUMENT_BEGIN(&arr, key, &sub);
        mt_shapes_entry_bson(in->shapes[i], &sub);
        bson_append_document_end(&arr, &sub);
    }
    bson_append_array_end(&doc, &arr);
    char *out = mt_json_render(&doc, false);
    bson_destroy(&doc);
    return out;
}

static const char *type_title(mt_finding_type_t type)
{
    switch (type) {
    case MT_FINDING_N_PLUS_ONE:
        return "N+1";
    case MT_FINDING_WRITE_LOOP:
        return "Write loop";
    case MT_FINDING_REPEATED_READ:
        return "Repeated read";
    }
    return "Other";
}

/* Markdown */

/* Plain text in a table cell: characters Markdown would act on are
 * backslash-escaped, line breaks become spaces. */
static void md_text(bson_string_t *s, const char *t)
{
    for (const char *p = t; *p; p++) {
        if (strchr("\\`*_[]<>|#&", *p))
            bson_string_append_c(s, '\\');
        if (*p == '\n' || *p == '\r')
            bson_string_append_c(s, ' ');
        else
            bson_string_append_c(s, *p);
    }
}

/* A code span: fenced by more backticks than any run inside; pipes escaped
 * so the table survives (GitHub honours \| inside code in tables). */
static void md_code(bson_string_t *s, const char *t)
{
    size_t run = 0, longest = 0;
    for (const char *p = t; *p; p++) {
        run = *p == '`' ? run + 1 : 0;
        if (run > longest)
            longest = run;
    }
    for (size_t i = 0; i <= longest; i++)
        bson_string_append_c(s, '`');
    bool pad = *t == '`' || (*t && t[strlen(t) - 1] == '`');
    if (pad)
        bson_string_append_c(s, ' ');
    for (const char *p = t; *p; p++) {
        if (*p == '|')
            bson_string_append(s, "\\|");
        else if (*p == '\n' || *p == '\r')
            bson_string_append_c(s, ' ');
        else
            bson_string_append_c(s, *p);
    }
    if (pad)
        bson_string_append_c(s, ' ');
    for (size_t i = 0; i <= longest; i++)
        bson_string_append_c(s, '`');
}

static void fmt_ms(bson_string_t *s, uint64_t ns)
{
    double ms = (double)ns / 1e6;
    if (ms >= 100)
        bson_string_append_printf(s, "%.0f ms", ms);
    else if (ms >= 1)
        bson_string_append_printf(s, "%.1f ms", ms);
    else
        bson_string_append_printf(s, "%.3f ms", ms);
}

static void md_shape_ref(bson_string_t *s, const char *cmd, const char *db, const char *coll,
                         const char *shape)
{
    md_code(s, cmd);
    bson_string_append_c(s, ' ');
    char ns[512];
    namespace_of(db, coll, ns, sizeof ns);
    md_code(s, ns);
    bson_string_append_c(s, ' ');
    md_code(s, shape);
}

static char *render_markdown(const mt_report_input_t *in)
{
    char iso[MT_CLOCK_ISO_LEN];
    bson_string_t *s = bson_string_new(NULL);
    const uint64_t *c = in->counters;
    size_t np = 0;
    const mt_findings_pattern_t **ps = mt_findings_patterns_sorted(in->findings, &np);

    bson_string_append(s, "# mongotap report\n\n");
    bson_string_append_printf(s, "Generated %s after %.1f s of traffic.\n\n",
                              mt_clock_iso8601(in->generated_ms, iso), in->uptime_s);
    bson_string_append(s, "| Commands | Connections | Windows | Findings | Patterns | Parse errors "
                          "| Upstream errors |\n");
    bson_string_append(s, "|---:|---:|---:|---:|---:|---:|---:|\n");
    bson_string_append_printf(
        s, "| %llu | %llu | %llu | %llu | %zu | %llu | %llu |\n\n",
        (unsigned long long)c[MT_STAT_COMMANDS], (unsigned long long)c[MT_STAT_CONNECTIONS_TOTAL],
        (unsigned long long)c[MT_STAT_WINDOWS], (unsigned long long)c[MT_STAT_FINDINGS], np,
        (unsigned long long)c[MT_STAT_PARSE_ERRORS],
        (unsigned long long)c[MT_STAT_UPSTREAM_ERRORS]);

    if (np == 0)
        bson_string_append(s,
                           "## Patterns\n\nNo N+1 pattern, write loop or repeated read found.\n\n");
    for (int t = 0; t < MT_FINDING__TYPES; t++) {
        size_t shown = 0;
        for (size_t i = 0; i < np; i++) {
            const mt_findings_pattern_t *p = ps[i];
            if ((int)p->type != t)
                continue;
            if (shown++ == 0) {
                bson_string_append_printf(s, "## %s patterns (`%s`)\n\n", type_title(p->type),
                                          mt_finding_type_str(p->type));
                bson_string_append_printf(s,
                                          "%s Ranked by total time spent in the repeated "
                                          "commands.\n\n",
                                          mt_finding_type_explain(p->type));
                bson_string_append(s, "| # | Parent query | Repeated command | Field | Occurrences "
                                      "| Total child time | Avg child time | Example window | Fix "
                                      "|\n");
                bson_string_append(s, "|---:|---|---|---|---:|---:|---:|---|---|\n");
            }
            bson_string_append_printf(s, "| %zu | ", i + 1);
            if (p->key[MT_PK_PARENT_SHAPE])
                md_shape_ref(s, p->key[MT_PK_PARENT_COMMAND], p->key[MT_PK_PARENT_DB],
                             p->key[MT_PK_PARENT_COLLECTION], p->key[MT_PK_PARENT_SHAPE]);
            else
                bson_string_append(s, "none");
            bson_string_append(s, " | ");
            md_shape_ref(s, p->key[MT_PK_CHILD_COMMAND], p->key[MT_PK_CHILD_DB],
                         p->key[MT_PK_CHILD_COLLECTION], p->key[MT_PK_CHILD_SHAPE]);
            bson_string_append(s, " | ");
            if (p->key[MT_PK_FIELD])
                md_code(s, p->key[MT_PK_FIELD]);
            else
                bson_string_append(s, p->high ? "none (high confidence)"
                                              : "unknown (medium confidence)");
            bson_string_append_printf(s, " | %llu | ", (unsigned long long)p->occurrences);
            fmt_ms(s, p->child_ns);
            bson_string_append(s, " | ");
            fmt_ms(s, p->occurrences ? p->child_ns / p->occurrences : 0);
            bson_string_append_printf(s, " | window %llu (", (unsigned long long)p->example_window);
            md_text(s, p->example_finding);
            bson_string_append(s, ") | ");
            md_text(s, p->suggestion ? p->suggestion : "");
            bson_string_append(s, " |\n");
        }
        if (shown)
            bson_string_append(s, "\n");
    }

    bson_string_append(s, "## Top query shapes by total time\n\n");
    size_t ns = shown_shapes(in);
    if (ns == 0) {
        bson_string_append(s, "No command seen.\n");
    } else {
        bson_string_append(
            s,
            "| Command | Namespace | Shape | Count | Errors | Docs | p50 | p95 | p99 | Total |\n");
        bson_string_append(s, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for (size_t i = 0; i < ns; i++) {
            const mt_shape_entry_t *e = in->shapes[i];
            char nsbuf[512];
            bson_string_append(s, "| ");
            md_code(s, e->command);
            bson_string_append(s, " | ");
            namespace_of(e->db, e->collection, nsbuf, sizeof nsbuf);
            md_code(s, nsbuf);
            bson_string_append(s, " | ");
            md_code(s, e->shape);
            bson_string_append_printf(s, " | %llu | %llu | %llu | ", (unsigned long long)e->count,
                                      (unsigned long long)e->errors,
                                      (unsigned long long)e->docs_returned);
            fmt_ms(s, mt_hist_quantile(&e->latency, 0.50));
            bson_string_append(s, " | ");
            fmt_ms(s, mt_hist_quantile(&e->latency, 0.95));
            bson_string_append(s, " | ");
            fmt_ms(s, mt_hist_quantile(&e->latency, 0.99));
            bson_string_append(s, " | ");
            fmt_ms(s, e->latency.sum_ns);
            bson_string_append(s, " |\n");
        }
    }
    bson_free(ps);
    return bson_string_free(s, false);
}

/* HTML */

static void html_text(bson_string_t *s, const char *t)
{
    for (const char *p = t; *p; p++) {
        switch (*p) {
        case '&':
            bson_string_append(s, "&amp;");
            break;
        case '<':
            bson_string_append(s, "&lt;");
            break;
        case '>':
            bson_string_append(s, "&gt;");
            break;
        case '"':
            bson_string_append(s, "&quot;");
            break;
        case '\'':
            bson_string_append(s, "&#39;");
            break;
        default:
            bson_string_append_c(s, *p);
        }
    }
}

static void html_shape_ref(bson_string_t *s, const char *cmd, const char *db, const char *coll,
                           const char *shape)
{
    bson_string_append(s, "<code>");
    html_text(s, cmd);
    char ns[512];
    namespace_of(db, coll, ns, sizeof ns);
    bson_string_append(s, "</code> <code>");
    html_text(s, ns);
    bson_string_append(s, "</code><br><code class=\"shape\">");
    html_text(s, shape);
    bson_string_append(s, "</code>");
}

#define CHART_MAX_BARS 20

static void html_chart(bson_string_t *s, const mt_findings_pattern_t **ps, size_t np)
{
    size_t n = np < CHART_MAX_BARS ? np : CHART_MAX_BARS;
    const int bar_h = 22, gap = 8, label_w = 330, bar_w = 420, top = 10;
    int height = top * 2 + (int)n * (bar_h + gap);
    uint64_t max = 1;
    for (size_t i = 0; i < n; i++)
        if (ps[i]->child_ns > max)
            max = ps[i]->child_ns;
    bson_string_append_printf(s,
                              "<svg class=\"chart\" role=\"img\" aria-label=\"Time spent in the "
                              "repeated lookups, per pattern\" "
                              "width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">\n",
                              label_w + bar_w + 110, height, label_w + bar_w + 110, height);
    for (size_t i = 0; i < n; i++) {
        const mt_findings_pattern_t *p = ps[i];
        int y = top + (int)i * (bar_h + gap);
        int w = (int)((double)p->child_ns / (double)max * bar_w);
        if (w < 2)
            w = 2;
        char label[600];
        bson_snprintf(label, sizeof label, "#%zu %s%s%s%s%s", i + 1,
                      p->key[MT_PK_PARENT_COLLECTION] ? p->key[MT_PK_PARENT_COLLECTION] : "",
                      p->key[MT_PK_PARENT_COLLECTION] ? " \xe2\x86\x92 " : "",
                      p->key[MT_PK_CHILD_COLLECTION], p->key[MT_PK_FIELD] ? " via " : "",
                      p->key[MT_PK_FIELD] ? p->key[MT_PK_FIELD] : "");
        cut_label(label, 56);
        bson_string_append_printf(s, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", label_w - 8,
                                  y + bar_h - 6);
        html_text(s, label);
        bson_string_append(s, "</text>");
        bson_string_append_printf(s,
                                  "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" rx=\"3\">"
                                  "<title>",
                                  label_w, y, w, bar_h);
        html_text(s, label);
        bson_string_append(s, "</title></rect>");
        bson_string_append_printf(s, "<text x=\"%d\" y=\"%d\">", label_w + w + 6, y + bar_h - 6);
        fmt_ms(s, p->child_ns);
        bson_string_append(s, "</text>\n");
    }
    bson_string_append(s, "</svg>\n");
}

static char *render_html(const mt_report_input_t *in)
{
    char iso[MT_CLOCK_ISO_LEN];
    bson_string_t *s = bson_string_new(NULL);
    const uint64_t *c = in->counters;
    size_t np = 0;
    const mt_findings_pattern_t **ps = mt_findings_patterns_sorted(in->findings, &np);

    bson_string_append(
        s, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
           "<title>mongotap N+1 report</title>\n<style>\n"
           "body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;"
           "color:#1d2330;background:#fff}\n"
           "h1{font-size:1.6em;margin:0 0 .2em}h2{font-size:1.2em;margin:1.6em 0 .6em}\n"
           ".meta{color:#5b6475}\n"
           ".totals{display:flex;gap:1em;flex-wrap:wrap;margin:1em 0}\n"
           ".totals div{background:#f2f4f8;border-radius:6px;padding:.6em 1em}\n"
           ".totals b{display:block;font-size:1.4em}\n"
           "table{border-collapse:collapse;width:100%;margin:.5em 0}\n"
           "th,td{border-bottom:1px solid #e1e5ec;padding:.45em .6em;text-align:left;"
           "vertical-align:top}\n"
           "th{background:#f7f8fa;font-weight:600}td.n,th.n{text-align:right;white-space:nowrap}\n"
           "code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f2f4f8;"
           "padding:1px 4px;border-radius:3px}\n"
           "code.shape{word-break:break-all}\n"
           ".chart text{font:12px system-ui,sans-serif;fill:#1d2330}\n"
           ".chart rect{fill:#d9534f}\n"
           ".high{color:#1a7f37;font-weight:600}.medium{color:#9a6700;font-weight:600}\n"
           "</style>\n</head>\n<body>\n<h1>mongotap N+1 report</h1>\n");
    bson_string_append_printf(s, "<p class=\"meta\">Generated %s after %.1f s of traffic.</p>\n",
                              mt_clock_iso8601(in->generated_ms, iso), in->uptime_s);
    bson_string_append_printf(
        s,
        "<div class=\"totals\"><div><b>%llu</b>commands</div><div><b>%llu</b>connections</div>"
        "<div><b>%llu</b>windows</div><div><b>%llu</b>findings</div><div><b>%zu</b>patterns</div>"
        "<div><b>%llu</b>parse errors</div></div>\n",
        (unsigned long long)c[MT_STAT_COMMANDS], (unsigned long long)c[MT_STAT_CONNECTIONS_TOTAL],
        (unsigned long long)c[MT_STAT_WINDOWS], (unsigned long long)c[MT_STAT_FINDINGS], np,
        (unsigned long long)c[MT_STAT_PARSE_ERRORS]);

    bson_string_append(s, "<h2>Patterns</h2>\n");
    if (np == 0) {
        bson_string_append(s, "<p>No N+1 pattern, write loop or repeated read found.</p>\n");
    } else {
        bson_string_append(s, "<p>Time spent in the repeated commands, per pattern:</p>\n");
        html_chart(s, ps, np);
    }
    for (int t = 0; t < MT_FINDING__TYPES; t++) {
        size_t shown = 0;
        for (size_t i = 0; i < np; i++) {
            const mt_findings_pattern_t *p = ps[i];
            if ((int)p->type != t)
                continue;
            if (shown++ == 0) {
                bson_string_append_printf(s, "<h3>%s patterns (<code>%s</code>)</h3>\n<p>",
                                          type_title(p->type), mt_finding_type_str(p->type));
                html_text(s, mt_finding_type_explain(p->type));
                bson_string_append(
                    s, "</p>\n<table>\n<tr><th class=\"n\">#</th><th>Parent query</th>"
                       "<th>Repeated command</th><th>Field</th><th class=\"n\">Occurrences</th>"
                       "<th class=\"n\">Total child time</th><th class=\"n\">Avg child time</th>"
                       "<th>Example</th><th>Fix</th></tr>\n");
            }
            bson_string_append_printf(s, "<tr><td class=\"n\">%zu</td><td>", i + 1);
            if (p->key[MT_PK_PARENT_SHAPE])
                html_shape_ref(s, p->key[MT_PK_PARENT_COMMAND], p->key[MT_PK_PARENT_DB],
                               p->key[MT_PK_PARENT_COLLECTION], p->key[MT_PK_PARENT_SHAPE]);
            else
                bson_string_append(s, "none");
            bson_string_append(s, "</td><td>");
            html_shape_ref(s, p->key[MT_PK_CHILD_COMMAND], p->key[MT_PK_CHILD_DB],
                           p->key[MT_PK_CHILD_COLLECTION], p->key[MT_PK_CHILD_SHAPE]);
            bson_string_append(s, "</td><td>");
            if (p->key[MT_PK_FIELD]) {
                bson_string_append(s, "<code>");
                html_text(s, p->key[MT_PK_FIELD]);
                bson_string_append(s, "</code> ");
            }
            bson_string_append(s, p->high ? "<span class=\"high\">high</span>"
                                          : "<span class=\"medium\">medium</span>");
            bson_string_append_printf(s, "</td><td class=\"n\">%llu</td><td class=\"n\">",
                                      (unsigned long long)p->occurrences);
            fmt_ms(s, p->child_ns);
            bson_string_append(s, "</td><td class=\"n\">");
            fmt_ms(s, p->occurrences ? p->child_ns / p->occurrences : 0);
            /* opens the window in the console when the report is read from the admin
             * endpoint (/api/report?format=html) */
            bson_string_append_printf(s,
                                      "</td><td><a class=\"window\" href=\"/#window=%llu\">window "
                                      "%llu</a><br>",
                                      (unsigned long long)p->example_window,
                                      (unsigned long long)p->example_window);
            html_text(s, p->example_finding);
            bson_string_append(s, "</td><td>");
            html_text(s, p->suggestion ? p->suggestion : "");
            bson_string_append(s, "</td></tr>\n");
        }
        if (shown)
            bson_string_append(s, "</table>\n");
    }

    bson_string_append(s, "<h2>Top query shapes by total time</h2>\n");
    size_t ns = shown_shapes(in);
    if (ns == 0) {
        bson_string_append(s, "<p>No command seen.</p>\n");
    } else {
        bson_string_append(s, "<table>\n<tr><th>Query</th><th class=\"n\">Count</th>"
                              "<th class=\"n\">Errors</th><th class=\"n\">Docs</th>"
                              "<th class=\"n\">p50</th><th class=\"n\">p95</th>"
                              "<th class=\"n\">p99</th><th class=\"n\">Total</th></tr>\n");
        for (size_t i = 0; i < ns; i++) {
            const mt_shape_entry_t *e = in->shapes[i];
            bson_string_append(s, "<tr><td>");
            html_shape_ref(s, e->command, e->db, e->collection, e->shape);
            bson_string_append_printf(s,
                                      "</td><td class=\"n\">%llu</td><td class=\"n\">%llu</td>"
                                      "<td class=\"n\">%llu</td><td class=\"n\">",
                                      (unsigned long long)e->count, (unsigned long long)e->errors,
                                      (unsigned long long)e->docs_returned);
            fmt_ms(s, mt_hist_quantile(&e->latency, 0.50));
            bson_string_append(s, "</td><td class=\"n\">");
            fmt_ms(s, mt_hist_quantile(&e->latency, 0.95));
            bson_string_append(s, "</td><td class=\"n\">");
            fmt_ms(s, mt_hist_quantile(&e->latency, 0.99));
            bson_string_append(s, "</td><td class=\"n\">");
            fmt_ms(s, e->latency.sum_ns);
            bson_string_append(s, "</td></tr>\n");
        }
        bson_string_append(s, "</table>\n");
    }
    bson_string_append(s, "</body>\n</html>\n");
    bson_free(ps);
    return bson_string_free(s, false);
}

char *mt_report_render(const mt_report_input_t *in, mt_report_format_t fmt)
{
    switch (fmt) {
    case MT_REPORT_MARKDOWN:
        return render_markdown(in);
    case MT_REPORT_HTML:
        return render_html(in);
    case MT_REPORT_JSON:
    default:
        return render_json(in);
    }
}
