/*
 * metrics: the Prometheus exposition: every counter of the table with HELP
 * and TYPE, the gauges, commands by (command, db, collection) with the label
 * sets bounded, a cumulative latency histogram per command, label escaping,
 * no counter lowered by a reset, and `promtool check metrics` on the result
 * when promtool is installed.
 */
#include <unistd.h>

#include "metrics.h"
#include "stats_test_util.h"

static mt_stats_t *st;

static void setup(void)
{
    st = mt_stats_new(NULL, sc_now);
    cr_assert_not_null(st);
}

static void teardown(void)
{
    mt_stats_free(st);
}

TestSuite(metrics, .init = setup, .fini = teardown);

static void finds(sc_conn_t *k, const char *coll, int n, uint64_t latency)
{
    for (int i = 0; i < n; i++)
        sc_roundtrip(k, sc_find("tv", coll, fx_json("{\"a\": 1}"), false, NULL),
                     sc_cursor_reply("tv.x", NULL, 0, 0, true), latency);
}

/* The value of the sample line starting with prefix (name and labels). */
static double sample(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *line = text; line && *line;
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, prefix, n) == 0 && line[n] == ' ')
            return strtod(line + n + 1, NULL);
    }
    cr_assert_fail("no sample %s in:\n%s", prefix, text);
    return -1;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The sum of every sample whose line starts with prefix. */
static double sum_of(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    double sum = 0;
    for (const char *line = text; line && *line;
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (strncmp(line, prefix, n) == 0)
            sum += strtod(strchr(line, ' ') + 1, NULL);
    return sum;
}

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p += n)
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            return true;
    return false;
}

Test(metrics, counters_gauges_and_series)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    finds(&k, "channel", 3, 300 * US);
    finds(&k, "channel", 1, 20 * MS);
    finds(&k, "show", 2, 2 * MS);
    sc_roundtrip(&k, fx_json("{\"ping\": 1, \"$db\": \"admin\"}"), sc_ok(), 50 * US);
    sc_roundtrip(&k, fx_json("{\"fooBar\": 1, \"$db\": \"admin\"}"), sc_ok(), 50 * US);
    mt_stats_add(st, MT_STAT_BYTES_FROM_CLIENTS, 4096);
    char *text = mt_stats_metrics(st, sc_now);

#define MT_TEST_COUNTER(id, type, group, json, prom, help)                                         \
    if (!(prom)[0]) {                                                                              \
        /* shown by a labelled family */                                                           \
    } else if (!has_line(text, "# HELP mongotap_" prom " " help)) {                                \
        cr_assert_fail("HELP for %s", prom);                                                       \
    } else if (MT_STAT_TYPE_##type == MT_STAT_TYPE_COUNTER) {                                      \
        cr_assert(has_line(text, "# TYPE mongotap_" prom " counter"), "TYPE for %s", prom);        \
        cr_assert(ends_with(prom, "_total"), "%s ends in _total", prom);                           \
    } else {                                                                                       \
        cr_assert(has_line(text, "# TYPE mongotap_" prom " gauge"), "TYPE for %s", prom);          \
    }
    MT_STATS_COUNTERS(MT_TEST_COUNTER)
#undef MT_TEST_COUNTER
    /* one name for commands: the labelled family, whose sum is every command */
    cr_assert_null(strstr(text, "commands_seen"));
    cr_assert_float_eq(sum_of(text, "mongotap_commands_total{"), 8, 1e-9);
    cr_assert_float_eq(sample(text, "mongotap_windows_closed_total"), 0, 1e-9);
    cr_assert_float_eq(sample(text, "mongotap_client_bytes_received_total"), 4096, 1e-9);
    cr_assert_float_eq(sample(text, "mongotap_connections_total"), 1, 1e-9);
    cr_assert(has_line(text, "# TYPE mongotap_connections_active gauge"));
    cr_assert_float_eq(sample(text, "mongotap_connections_active"), 1, 1e-9);
    cr_assert_float_eq(sample(text, "mongotap_windows_open"), 1, 1e-9);
    cr_assert_float_eq(sample(text, "mongotap_shapes_tracked"), 4, 1e-9);

    cr_assert(has_line(text, "# TYPE mongotap_commands_total counter"));
    cr_assert_float_eq(
        sample(text, "mongotap_commands_total{command=\"find\",db=\"tv\",collection=\"channel\"}"),
        4, 1e-9);
    cr_assert_float_eq(
        sample(text, "mongotap_commands_total{command=\"find\",db=\"tv\",collection=\"show\"}"), 2,
        1e-9);
    cr_assert_float_eq(
        sample(text, "mongotap_commands_total{command=\"ping\",db=\"admin\",collection=\"\"}"), 1,
        1e-9);
    cr_assert_float_eq(
        sample(text, "mongotap_commands_total{command=\"other\",db=\"admin\",collection=\"\"}"), 1,
        1e-9);

    cr_assert(has_line(text, "# TYPE mongotap_command_duration_seconds histogram"));
    const char *b = "mongotap_command_duration_seconds_bucket{command=\"find\",le=";
    char p[160];
    snprintf(p, sizeof p, "%s\"0.00025\"}", b);
    cr_assert_float_eq(sample(text, p), 0, 1e-9);
    snprintf(p, sizeof p, "%s\"0.0005\"}", b);
    cr_assert_float_eq(sample(text, p), 3, 1e-9);
    snprintf(p, sizeof p, "%s\"0.0025\"}", b);
    cr_assert_float_eq(sample(text, p), 5, 1e-9);
    snprintf(p, sizeof p, "%s\"0.025\"}", b);
    cr_assert_float_eq(sample(text, p), 6, 1e-9);
    snprintf(p, sizeof p, "%s\"+Inf\"}", b);
    cr_assert_float_eq(sample(text, p), 6, 1e-9);
    cr_assert_float_eq(sample(text, "mongotap_command_duration_seconds_count{command=\"find\"}"), 6,
                       1e-9);
    cr_assert_float_eq(sample(text, "mongotap_command_duration_seconds_sum{command=\"find\"}"),
                       0.0009 + 0.020 + 0.004, 1e-12);
    /* base units: seconds */
    cr_assert_null(strstr(text, "_ms"));
    bson_free(text);
    sc_close(&k);
}

Test(metrics, buckets_are_cumulative)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    const uint64_t lat[] = {50 * US,  700 * US,      3 * MS,        40 * MS,
                            300 * MS, 2 * 1000 * MS, 20 * 1000 * MS};
    for (size_t i = 0; i < sizeof lat / sizeof lat[0]; i++)
        finds(&k, "c", 1, lat[i]);
    char *text = mt_stats_metrics(st, sc_now);
    double prev = -1;
    int buckets = 0;
    const char *prefix = "mongotap_command_duration_seconds_bucket{command=\"find\",le=\"";
    for (const char *line = strstr(text, prefix); line; line = strstr(line + 1, prefix)) {
        const char *sp = strchr(line, ' ');
        double v = strtod(sp + 1, NULL);
        cr_assert_geq(v, prev, "buckets must not decrease");
        prev = v;
        buckets++;
    }
    cr_assert_eq(buckets, MT_METRICS_NBUCKETS + 1);
    cr_assert_float_eq(prev, 7, 1e-9);
    bson_free(text);
    sc_close(&k);
}

Test(metrics, namespace_labels_are_bounded)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    char coll[32];
    for (int i = 0; i < MT_METRICS_MAX_NAMESPACES + 20; i++) {
        snprintf(coll, sizeof coll, "c%03d", i);
        finds(&k, coll, 1, 100 * US);
    }
    finds(&k, "c000", 1, 100 * US); /* an early namespace keeps its labels */
    /* the same collection in another database is another namespace, past the bound */
    sc_roundtrip(&k, sc_find("radio", "c000", fx_json("{\"a\": 1}"), false, NULL),
                 sc_cursor_reply("radio.c000", NULL, 0, 0, true), 100 * US);
    char *text = mt_stats_metrics(st, sc_now);
    int series = 0;
    for (const char *p = text; (p = strstr(p, "\nmongotap_commands_total{")); p++)
        series++;
    cr_assert_eq(series, MT_METRICS_MAX_NAMESPACES + 1);
    cr_assert_float_eq(
        sample(text,
               "mongotap_commands_total{command=\"find\",db=\"<other>\",collection=\"<other>\"}"),
        21, 1e-9);
    cr_assert_float_eq(
        sample(text, "mongotap_commands_total{command=\"find\",db=\"tv\",collection=\"c000\"}"), 2,
        1e-9);
    cr_assert_null(strstr(text, "collection=\"c100\""));
    cr_assert_null(strstr(text, "db=\"radio\""));
    bson_free(text);
    sc_close(&k);
}

/* Every counter sample of an exposition: "name{labels}" -> value. */
typedef struct {
    char key[256];
    double value;
} counter_sample_t;

static size_t counter_samples(const char *text, counter_sample_t *out, size_t cap)
{
    size_t n = 0;
    for (const char *line = text; line && *line;
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        const char *sp = strchr(line, ' ');
        if (line[0] == '#' || !sp || n == cap)
            continue;
        size_t len = (size_t)(sp - line);
        /* counters: _total families and the histogram's cumulative series */
        if (!memmem(line, len, "_total", 6) && !memmem(line, len, "_bucket", 7) &&
            !memmem(line, len, "_count", 6) && !memmem(line, len, "_sum", 4))
            continue;
        snprintf(out[n].key, sizeof out[n].key, "%.*s", (int)len, line);
        out[n].value = strtod(sp + 1, NULL);
        n++;
    }
    return n;
}

Test(metrics, reset_never_lowers_a_counter)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    finds(&k, "channel", 7, 300 * US);
    sc_roundtrip(&k, fx_json("{\"ping\": 1, \"$db\": \"admin\"}"), sc_ok(), 50 * US);
    mt_stats_add(st, MT_STAT_BYTES_FROM_CLIENTS, 4096);
    sc_now += 200 * MS;
    mt_stats_tick(st, sc_now); /* the window closes: windows_closed_total 1 */
    char *before_text = mt_stats_metrics(st, sc_now);
    static counter_sample_t before[512], after[512];
    size_t nb = counter_samples(before_text, before, 512);
    cr_assert_gt(nb, 10);

    mt_stats_reset(st);
    char *after_text = mt_stats_metrics(st, sc_now);
    size_t na = counter_samples(after_text, after, 512);
    for (size_t i = 0; i < nb; i++) {
        size_t j = 0;
        while (j < na && strcmp(after[j].key, before[i].key) != 0)
            j++;
        cr_assert_lt(j, na, "%s is gone after the reset", before[i].key);
        cr_assert_geq(after[j].value, before[i].value, "%s went from %g to %g", before[i].key,
                      before[i].value, after[j].value);
    }
    cr_assert_float_eq(
        sample(after_text,
               "mongotap_commands_total{command=\"find\",db=\"tv\",collection=\"channel\"}"),
        7, 1e-9);
    cr_assert_float_eq(sample(after_text, "mongotap_windows_closed_total"), 1, 1e-9);

    /* the JSON view starts again from zero; the counters carry on */
    char *json = mt_stats_json(st, sc_now, 0);
    bson_t *doc = sc_parse(json);
    cr_assert_eq(sc_int(doc, "commands"), 0);
    cr_assert_eq(sc_int(doc, "windows.closed"), 0);
    cr_assert_eq(sc_int(doc, "bytes.from_clients"), 0);
    cr_assert_eq(sc_int(doc, "connections.total"), 1, "the process's connections stay");
    bson_destroy(doc);
    bson_free(json);
    finds(&k, "channel", 2, 300 * US);
    char *later = mt_stats_metrics(st, sc_now);
    cr_assert_float_eq(
        sample(later, "mongotap_commands_total{command=\"find\",db=\"tv\",collection=\"channel\"}"),
        9, 1e-9);
    json = mt_stats_json(st, sc_now, 0);
    doc = sc_parse(json);
    cr_assert_eq(sc_int(doc, "commands"), 2);
    bson_destroy(doc);
    bson_free(json);
    bson_free(later);
    bson_free(after_text);
    bson_free(before_text);
    sc_close(&k);
}

Test(metrics, uptime_is_printed_without_float_noise)
{
    sc_now += 278407 * MS;
    char *text = mt_stats_metrics(st, sc_now);
    cr_assert(has_line(text, "mongotap_uptime_seconds 278.407"), "%s", text);
    bson_free(text);
}

Test(metrics, command_labels)
{
    cr_assert_str_eq(mt_metrics_command_name(mt_metrics_command_label("find")), "find");
    cr_assert_str_eq(mt_metrics_command_name(mt_metrics_command_label("ismaster")), "isMaster");
    cr_assert_str_eq(mt_metrics_command_name(mt_metrics_command_label("GETMORE")), "getMore");
    cr_assert_str_eq(mt_metrics_command_name(mt_metrics_command_label("dropEverything")), "other");
}

Test(metrics, label_values_are_escaped)
{
    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    finds(&k, "we\"ird\\na\nme", 1, 100 * US);
    char *text = mt_stats_metrics(st, sc_now);
    cr_assert_not_null(strstr(text, "collection=\"we\\\"ird\\\\na\\nme\"} 1\n"), "%s", text);
    bson_free(text);
    sc_close(&k);
}

Test(metrics, promtool_accepts_the_exposition)
{
    if (system("command -v promtool > /dev/null 2>&1") != 0)
        cr_skip_test("promtool is not installed (Debian package prometheus)");

    sc_conn_t k = sc_open(st, 1, "127.0.0.1:1");
    finds(&k, "channel", 5, 300 * US);
    finds(&k, "we\"ird\\name", 1, 100 * US);
    sc_roundtrip(&k, fx_json("{\"hello\": 1, \"$db\": \"admin\"}"), sc_ok(), 50 * US);
    sc_now += 500 * MS;
    mt_stats_tick(st, sc_now);
    char *text = mt_stats_metrics(st, sc_now);
    const char *tmp = getenv("TMPDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/mongotap-metrics-XXXXXX", tmp && *tmp ? tmp : P_tmpdir);
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    size_t len = strlen(text);
    cr_assert_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "promtool check metrics < '%s' > '%s.out' 2>&1", path, path);
    int rc = system(cmd);
    char out[2048] = "";
    snprintf(cmd, sizeof cmd, "%s.out", path);
    FILE *f = fopen(cmd, "r");
    if (f) {
        size_t n = fread(out, 1, sizeof out - 1, f);
        out[n] = '\0';
        fclose(f);
    }
    unlink(cmd);
    unlink(path);
    cr_assert_eq(rc, 0, "promtool check metrics failed:\n%s", out);
    bson_free(text);
    sc_close(&k);
}
