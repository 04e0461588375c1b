/*
 * test_baseline: reading and writing baseline files, reading the patterns of
 * a /api/findings answer in both vocabularies, and the check that decides
 * whether `mongotap run` fails.
 */
#include <criterion/criterion.h>
#include <string.h>

#include <bson/bson.h>

#include "baseline.h"

/* One accepted N+1 (show -> channel) and one accepted write loop without a
 * parent. */
static const char baseline_two[] =
    "{\"schema\": \"mongotap.baseline/1\", \"entries\": ["
    "{\"type\": \"n_plus_one\","
    " \"parent\": {\"db\": \"tv\", \"collection\": \"show\", \"command\": \"find\", \"shape\": "
    "\"{}\"},"
    " \"children\": {\"db\": \"tv\", \"collection\": \"channel\", \"command\": \"find\", "
    "\"shape\": \"{\\\"_id\\\": \\\"?\\\"}\"},"
    " \"field\": \"channel\", \"reason\": \"the admin page lists 5 shows\"},"
    "{\"type\": \"write_loop\", \"parent\": null,"
    " \"children\": {\"db\": \"tv\", \"collection\": \"log\", \"command\": \"insert\", \"shape\": "
    "\"{}\"},"
    " \"field\": null, \"reason\": \"\"}]}";

/* /api/findings as mongotap answers today: "child" and "fix", no "type". */
static const char findings_child_fix[] =
    "{\"findings\": [], \"patterns\": ["
    "{\"rank\": 1,"
    " \"parent\": {\"db\": \"tv\", \"collection\": \"show\", \"command\": \"find\", \"shape\": "
    "\"{}\"},"
    " \"child\": {\"db\": \"tv\", \"collection\": \"channel\", \"command\": \"find\", \"shape\": "
    "\"{\\\"_id\\\": \\\"?\\\"}\", \"key\": \"_id\"},"
    " \"field\": \"channel\", \"confidence\": \"high\", \"occurrences\": 3, "
    "\"child_commands\": 150, \"total_child_ms\": 12.5, \"fix\": \"use select_related()\"},"
    "{\"rank\": 2,"
    " \"parent\": {\"db\": \"tv\", \"collection\": \"show\", \"command\": \"find\", \"shape\": "
    "\"{}\"},"
    " \"child\": {\"db\": \"tv\", \"collection\": \"person\", \"command\": \"find\", \"shape\": "
    "\"{\\\"_id\\\": \\\"?\\\"}\", \"key\": \"_id\"},"
    " \"field\": null, \"confidence\": \"medium\", \"occurrences\": 1, \"fix\": \"one $in\"}]}";

/* The vocabulary mongotap is moving to: "type", "children", "suggestion". */
static const char findings_children_suggestion[] =
    "{\"findings\": [], \"patterns\": ["
    "{\"type\": \"write_loop\", \"parent\": null,"
    " \"children\": {\"db\": \"tv\", \"collection\": \"log\", \"command\": \"insert\", "
    "\"shape\": \"{}\", \"key\": null, \"count\": 40, \"duration_ms\": 3.25},"
    " \"field\": null, \"confidence\": \"medium\", \"occurrences\": 2, \"suggestion\": "
    "\"insert_many\"},"
    "{\"type\": \"repeated_read\", \"parent\": null,"
    " \"children\": {\"db\": \"tv\", \"collection\": \"settings\", \"command\": \"find\", "
    "\"shape\": \"{\\\"k\\\": \\\"?\\\"}\"},"
    " \"field\": null, \"confidence\": \"high\", \"occurrences\": 4, \"suggestion\": \"load it "
    "once\"}]}";

#define ALL_TYPES                                                                                  \
    ((1u << MT_BASELINE_TYPE_N_PLUS_ONE) | (1u << MT_BASELINE_TYPE_WRITE_LOOP) |                   \
     (1u << MT_BASELINE_TYPE_REPEATED_READ))

Test(baseline, reads_a_file)
{
    mt_baseline_t b;
    char err[256];

    mt_baseline_init(&b);
    cr_assert_eq(mt_baseline_parse(&b, baseline_two, strlen(baseline_two), err, sizeof(err)), 0,
                 "%s", err);
    cr_assert_eq(b.n, 2);
    cr_assert_str_eq(b.entries[0].type, "n_plus_one");
    cr_assert(b.entries[0].has_parent);
    cr_assert_str_eq(b.entries[0].parent.collection, "show");
    cr_assert_str_eq(b.entries[0].children.shape, "{\"_id\": \"?\"}");
    cr_assert_str_eq(b.entries[0].field, "channel");
    cr_assert_str_eq(b.entries[0].reason, "the admin page lists 5 shows");
    cr_assert_not(b.entries[1].has_parent);
    cr_assert_null(b.entries[1].field);
    mt_baseline_clear(&b);
}

typedef struct {
    const char *json;
    const char *says;
} bad_file_t;

Test(baseline, bad_files_say_where)
{
    static const bad_file_t cases[] = {
        {"not json", "not valid JSON"},
        {"{\"entries\": []}", "schema"},
        {"{\"schema\": \"mongotap.baseline/2\", \"entries\": []}", "mongotap.baseline/2"},
        {"{\"schema\": \"mongotap.baseline/1\"}", "\"entries\""},
        {"{\"schema\": \"mongotap.baseline/1\", \"entries\": [1]}", "entry 1 is not an object"},
        {"{\"schema\": \"mongotap.baseline/1\", \"entries\": [{\"parent\": null, \"children\": "
         "{}, \"field\": null}]}",
         "entry 1: type is missing"},
        {"{\"schema\": \"mongotap.baseline/1\", \"entries\": [{\"type\": \"n_plus_one\", "
         "\"parent\": null, \"children\": {\"db\": \"a\", \"collection\": \"b\", \"command\": "
         "\"find\"}, \"field\": null}]}",
         "entry 1: children.shape is missing"},
        {"{\"schema\": \"mongotap.baseline/1\", \"entries\": [{\"type\": \"n_plus_one\", "
         "\"children\": {\"db\": \"a\", \"collection\": \"b\", \"command\": \"find\", \"shape\": "
         "\"{}\"}, \"field\": null}]}",
         "entry 1: parent is missing"},
        {"{\"schema\": \"mongotap.baseline/1\", \"entries\": [{\"type\": \"n_plus_one\", "
         "\"parent\": null, \"children\": {\"db\": \"a\", \"collection\": \"b\", \"command\": "
         "\"find\", \"shape\": \"{}\"}, \"field\": 3}]}",
         "entry 1: field must be a string or null"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        mt_baseline_t b;
        char err[256];
        mt_baseline_init(&b);
        cr_assert_eq(mt_baseline_parse(&b, cases[i].json, strlen(cases[i].json), err, sizeof(err)),
                     -1, "case %zu accepted", i);
        cr_assert_not_null(strstr(err, cases[i].says), "case %zu: '%s' does not say '%s'", i, err,
                           cases[i].says);
        cr_assert_null(strchr(err, '\n'), "one line");
        mt_baseline_clear(&b);
    }
}

Test(baseline, load_names_the_file)
{
    mt_baseline_t b;
    char err[512];

    mt_baseline_init(&b);
    cr_assert_eq(mt_baseline_load(&b, "/nonexistent/baseline.json", err, sizeof(err)), -1);
    cr_assert_not_null(strstr(err, "/nonexistent/baseline.json"), "%s", err);
    mt_baseline_clear(&b);
}

Test(baseline, patterns_in_both_vocabularies)
{
    mt_baseline_t p;
    char err[256];

    mt_baseline_init(&p);
    cr_assert_eq(mt_baseline_from_findings(&p, findings_child_fix, strlen(findings_child_fix), err,
                                           sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(mt_baseline_from_findings(&p, findings_children_suggestion,
                                           strlen(findings_children_suggestion), err, sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(p.n, 4);
    cr_assert_str_eq(p.entries[0].type, "n_plus_one", "no type: an N+1");
    cr_assert_str_eq(p.entries[0].children.collection, "channel", "from \"child\"");
    cr_assert_str_eq(p.entries[0].suggestion, "use select_related()", "from \"fix\"");
    cr_assert(p.entries[0].high);
    cr_assert_eq(p.entries[0].occurrences, 3);
    cr_assert_eq(p.entries[0].child_commands, 150);
    cr_assert_float_eq(p.entries[0].child_ms, 12.5, 1e-9);
    cr_assert_not(p.entries[1].high);
    cr_assert_null(p.entries[1].field);
    cr_assert_str_eq(p.entries[2].type, "write_loop");
    cr_assert_not(p.entries[2].has_parent);
    cr_assert_str_eq(p.entries[2].children.collection, "log", "from \"children\"");
    cr_assert_str_eq(p.entries[2].suggestion, "insert_many", "from \"suggestion\"");
    cr_assert_eq(p.entries[2].child_commands, 40, "children.count");
    cr_assert_float_eq(p.entries[2].child_ms, 3.25, 1e-9, "children.duration_ms");
    cr_assert_str_eq(p.entries[3].type, "repeated_read");
    mt_baseline_clear(&p);
}

static void load(mt_baseline_t *b, const char *json, bool patterns)
{
    char err[256];
    int rc = patterns ? mt_baseline_from_findings(b, json, strlen(json), err, sizeof(err))
                      : mt_baseline_parse(b, json, strlen(json), err, sizeof(err));
    cr_assert_eq(rc, 0, "%s", err);
}

Test(baseline, check_new_baselined_stale_and_failing)
{
    mt_baseline_t base, p;
    mt_baseline_verdict_t v;

    mt_baseline_init(&base);
    mt_baseline_init(&p);
    load(&base, baseline_two, false);
    load(&p, findings_child_fix, true);

    mt_baseline_check(&base, &p, MT_BASELINE_FAIL_ON_DEFAULT, false, &v);
    cr_assert_eq(v.baselined, 1, "show -> channel is accepted");
    cr_assert_eq(v.fresh, 1, "show -> person is new");
    cr_assert_eq(v.failing, 0, "but only medium");
    cr_assert_eq(v.stale, 1, "the write loop entry no longer occurs");
    cr_assert(p.entries[0].matched && base.entries[0].matched);
    cr_assert_not(base.entries[1].matched);
    cr_assert_str_eq(p.entries[0].reason, "the admin page lists 5 shows",
                     "the reason carries over for --write-baseline");

    mt_baseline_check(&base, &p, MT_BASELINE_FAIL_ON_DEFAULT, true, &v);
    cr_assert_eq(v.failing, 1, "--fail-on-medium");
    cr_assert(p.entries[1].failing);

    mt_baseline_check(NULL, &p, MT_BASELINE_FAIL_ON_DEFAULT, false, &v);
    cr_assert_eq(v.failing, 1, "no baseline: the high one fails");
    cr_assert_eq(v.stale, 0);
    mt_baseline_check(NULL, &p, 1u << MT_BASELINE_TYPE_WRITE_LOOP, false, &v);
    cr_assert_eq(v.failing, 0, "n_plus_one is not in --fail-on");
    mt_baseline_clear(&base);
    mt_baseline_clear(&p);
}

Test(baseline, a_different_field_or_shape_is_a_different_pattern)
{
    mt_baseline_t base, p;
    mt_baseline_verdict_t v;

    mt_baseline_init(&base);
    mt_baseline_init(&p);
    load(&base, baseline_two, false);
    load(&p, findings_child_fix, true);
    bson_free(p.entries[0].field);
    p.entries[0].field = bson_strdup("channel_id");
    mt_baseline_check(&base, &p, MT_BASELINE_FAIL_ON_DEFAULT, false, &v);
    cr_assert_eq(v.baselined, 0);
    cr_assert_eq(v.failing, 1);
    bson_free(p.entries[0].field);
    p.entries[0].field = bson_strdup("channel");
    bson_free(p.entries[0].parent.shape);
    p.entries[0].parent.shape = bson_strdup("{\"day\": \"?\"}");
    mt_baseline_check(&base, &p, MT_BASELINE_FAIL_ON_DEFAULT, false, &v);
    cr_assert_eq(v.baselined, 0);
    mt_baseline_clear(&base);
    mt_baseline_clear(&p);
}

Test(baseline, written_file_reads_back_the_same)
{
    mt_baseline_t p, back;
    mt_baseline_verdict_t v;
    char err[256];

    mt_baseline_init(&p);
    mt_baseline_init(&back);
    load(&p, findings_child_fix, true);
    load(&p, findings_children_suggestion, true);
    char *text = mt_baseline_render(&p);
    cr_assert_not_null(strstr(text, "\"schema\": \"mongotap.baseline/1\""), "%s", text);
    cr_assert_not_null(strstr(text, "\"children\": {"), "%s", text);
    cr_assert_null(strstr(text, "\"child\":"), "%s", text);
    cr_assert_not_null(strstr(text, "\"reason\": \"\""), "%s", text);
    cr_assert_eq(mt_baseline_parse(&back, text, strlen(text), err, sizeof(err)), 0, "%s\n%s", err,
                 text);
    cr_assert_eq(back.n, p.n);
    mt_baseline_check(&back, &p, ALL_TYPES, true, &v);
    cr_assert_eq(v.baselined, p.n, "every pattern matches its own entry");
    cr_assert_eq(v.stale, 0);
    bson_free(text);

    mt_baseline_t empty;
    mt_baseline_init(&empty);
    text = mt_baseline_render(&empty);
    cr_assert_eq(mt_baseline_parse(&back, text, strlen(text), err, sizeof(err)), 0, "%s", err);
    bson_free(text);
    mt_baseline_clear(&p);
    mt_baseline_clear(&back);
}

Test(baseline, fail_on_types)
{
    unsigned mask;
    char err[256];

    cr_assert_eq(mt_baseline_parse_types("n_plus_one,repeated_read", &mask, err, sizeof(err)), 0);
    cr_assert_eq(mask,
                 (1u << MT_BASELINE_TYPE_N_PLUS_ONE) | (1u << MT_BASELINE_TYPE_REPEATED_READ));
    cr_assert_eq(mt_baseline_parse_types("none", &mask, err, sizeof(err)), 0);
    cr_assert_eq(mask, 0);
    cr_assert_eq(mt_baseline_parse_types("n_plus_one,loops", &mask, err, sizeof(err)), -1);
    cr_assert_not_null(strstr(err, "--fail-on"), "%s", err);
    cr_assert_not_null(strstr(err, "'loops'"), "%s", err);
    cr_assert_eq(mt_baseline_parse_types("", &mask, err, sizeof(err)), -1);
    cr_assert_str_eq(mt_baseline_type_str(MT_BASELINE_TYPE_WRITE_LOOP), "write_loop");
    cr_assert_eq(mt_baseline_type_parse("write_loop"), MT_BASELINE_TYPE_WRITE_LOOP);
    cr_assert_eq(mt_baseline_type_parse("N_PLUS_ONE"), -1);
}
