/*
 * test_console: the console's pure formatting: durations, counts, uptimes
 * and shapes as the windows view shows them.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <string.h>

#include "console.h"

typedef struct {
    char in[64];
    char out[64];
} shape_case_t;

ParameterizedTestParameters(console, short_shapes)
{
    static shape_case_t cases[] = {
        {"{\"_id\": \"?\"}", "{_id: ?}"},
        {"{}", "{}"},
        {"{\"age\": {\"$gt\": \"?\"}}", "{age: {$gt: ?}}"},
        {"{\"tags\": {\"$in\": [\"?\"]}}", "{tags: {$in: [?]}}"},
        {"{\"a.b\": \"?\", \"c\": \"?\"}", "{a.b: ?, c: ?}"},
        {"[{\"$match\": {\"x\": \"?\"}}]", "[{$match: {x: ?}}]"},
        /* keys that need their quotes keep them */
        {"{\"a b\": \"?\"}", "{\"a b\": ?}"},
        {"{\"\": \"?\"}", "{\"\": ?}"},
        {"<other>", "<other>"},
        {"\"", "\""},
        {"\"?", "\"?"},
    };
    return cr_make_param_array(shape_case_t, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(shape_case_t *c, console, short_shapes)
{
    char out[64];
    mt_console_short_shape(c->in, out, sizeof(out));
    cr_assert_str_eq(out, c->out, "%s", c->in);
}

Test(console, short_shapes_are_cut_to_the_buffer)
{
    char out[6];
    mt_console_short_shape("{\"_id\": \"?\", \"name\": \"?\"}", out, sizeof(out));
    cr_assert_str_eq(out, "{_id:");
    mt_console_short_shape("{\"_id\": \"?\"}", out, 1);
    cr_assert_str_eq(out, "");
}

Test(console, formats)
{
    char out[16];
    mt_console_fmt_ms(0.314, out, sizeof(out));
    cr_assert_str_eq(out, "0.31");
    mt_console_fmt_ms(12.54, out, sizeof(out));
    cr_assert_str_eq(out, "12.5");
    mt_console_fmt_ms(NAN, out, sizeof(out));
    cr_assert_str_eq(out, "-");
    mt_console_fmt_count(51, out, sizeof(out));
    cr_assert_str_eq(out, "51");
    mt_console_fmt_count(12300000, out, sizeof(out));
    cr_assert_str_eq(out, "12.3M");
    mt_console_fmt_uptime(725, out, sizeof(out));
    cr_assert_str_eq(out, "12m05s");
    cr_assert_str_eq(mt_console_view_str(MT_CONSOLE_VIEW_WINDOWS), "windows");
    cr_assert_str_eq(mt_console_view_str(MT_CONSOLE_VIEW_WINDOW), "window");
}
