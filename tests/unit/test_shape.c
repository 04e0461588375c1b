/*
 * shape: literal-free renderings of filters, pipelines and write statements
 * (a table of cases), cutting at the buffer size on a UTF-8 boundary, and the
 * single-key lookup test used to find N+1 children (positive and negative).
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <regex.h>

#include "proto_test_util.h"
#include "shape.h"

/* ---- rendering ---------------------------------------------------------- */

/* Strings are stored inline: Criterion runs each case in a fresh process,
 * where pointers of the parent would be meaningless. */
struct shape_case {
    char json[256]; /* the filter, or the pipeline when is_array */
    bool is_array;
    char want[256];
};

ParameterizedTestParameters(shape, render)
{
    static struct shape_case cases[] = {
        {"{\"_id\": 1}", false, "{\"_id\": \"?\"}"},
        {"{\"age\": {\"$gt\": 30}}", false, "{\"age\": {\"$gt\": \"?\"}}"},
        {"{}", false, "{}"},
        {"{\"a\": 1, \"b\": \"x\", \"c\": true}", false,
         "{\"a\": \"?\", \"b\": \"?\", \"c\": \"?\"}"},
        {"{\"_id\": {\"$in\": [1, 2, 3]}}", false, "{\"_id\": {\"$in\": [\"?\"]}}"},
        {"{\"_id\": {\"$in\": [7]}}", false, "{\"_id\": {\"$in\": [\"?\"]}}"},
        {"{\"_id\": {\"$in\": []}}", false, "{\"_id\": {\"$in\": [\"?\"]}}"},
        {"{\"s\": {\"$nin\": [\"a\", \"b\"]}}", false, "{\"s\": {\"$nin\": [\"?\"]}}"},
        {"{\"tags\": {\"$all\": [\"a\", {\"b\": 1}]}}", false, "{\"tags\": {\"$all\": [\"?\"]}}"},
        {"{\"$or\": [{\"a\": 1}, {\"b\": {\"$lt\": 2}}]}", false,
         "{\"$or\": [{\"a\": \"?\"}, {\"b\": {\"$lt\": \"?\"}}]}"},
        {"{\"customer.id\": 1}", false, "{\"customer.id\": \"?\"}"},
        {"{\"addr\": {\"city\": \"x\", \"zip\": 1}}", false,
         "{\"addr\": {\"city\": \"?\", \"zip\": \"?\"}}"},
        {"{\"arr\": [{\"a\": 1}, 2]}", false, "{\"arr\": [{\"a\": \"?\"}, \"?\"]}"},
        {"{\"arr\": [1, 2, 3]}", false, "{\"arr\": [\"?\", \"?\", \"?\"]}"},
        {"{\"owner\": {\"$ref\": \"users\", \"$id\": {\"$oid\": \"650000000000000000000001\"}}}",
         false, "{\"owner\": {\"$ref\": \"?\", \"$id\": \"?\"}}"},
        {"{\"owner\": {\"$ref\": \"users\", \"$id\": {\"k\": 1}, \"$db\": \"x\"}}", false,
         "{\"owner\": {\"$ref\": \"?\", \"$id\": {\"k\": \"?\"}, \"$db\": \"?\"}}"},
        {"{\"n\": null, \"d\": {\"$date\": 0}, \"o\": {\"$oid\": \"650000000000000000000001\"}}",
         false, "{\"n\": \"?\", \"d\": \"?\", \"o\": \"?\"}"},
        {"{\"r\": {\"$exists\": true, \"$type\": \"string\"}}", false,
         "{\"r\": {\"$exists\": \"?\", \"$type\": \"?\"}}"},
        {"{\"r\": {\"$regularExpression\": {\"pattern\": \"^a\", \"options\": \"\"}}}", false,
         "{\"r\": \"?\"}"},
        {"{\"age\": {\"$gte\": 1, \"$lt\": 5}}", false,
         "{\"age\": {\"$gte\": \"?\", \"$lt\": \"?\"}}"},
        {"{\"x\": {\"$elemMatch\": {\"a\": 1, \"b\": {\"$in\": [1, 2]}}}}", false,
         "{\"x\": {\"$elemMatch\": {\"a\": \"?\", \"b\": {\"$in\": [\"?\"]}}}}"},
        {"{\"_id\": {\"$not\": {\"$in\": [1, 2]}}}", false,
         "{\"_id\": {\"$not\": {\"$in\": [\"?\"]}}}"},
        {"{\"$expr\": {\"$eq\": [\"$a\", \"$b\"]}}", false,
         "{\"$expr\": {\"$eq\": [\"?\", \"?\"]}}"},
        {"{\"loc\": {\"$near\": {\"$geometry\": {\"type\": \"Point\", \"coordinates\": [1, 2]}}}}",
         false,
         "{\"loc\": {\"$near\": {\"$geometry\": {\"type\": \"?\", \"coordinates\": [\"?\", "
         "\"?\"]}}}}"},
        {"{\"k\\\"ey\\\\\": 1}", false, "{\"k\\\"ey\\\\\": \"?\"}"},
        {"{\"line\\nbreak\\u0001\": 1}", false, "{\"line\\u000abreak\\u0001\": \"?\"}"},
        {"{\"caf\xc3\xa9\": 1}", false, "{\"caf\xc3\xa9\": \"?\"}"},
        {"[]", true, "[]"},
        {"[{\"$match\": {\"a\": 1}}, {\"$group\": {\"_id\": \"$a\", \"n\": {\"$sum\": 1}}}]", true,
         "[{\"$match\": {\"a\": \"?\"}}, {\"$group\": {\"_id\": \"?\", \"n\": {\"$sum\": "
         "\"?\"}}}]"},
        {"[{\"$match\": {\"_id\": {\"$in\": [1, 2]}}}, {\"$sort\": {\"t\": -1}}, {\"$limit\": 5}]",
         true,
         "[{\"$match\": {\"_id\": {\"$in\": [\"?\"]}}}, {\"$sort\": {\"t\": \"?\"}}, {\"$limit\": "
         "\"?\"}]"},
        {"[{\"$lookup\": {\"from\": \"channel\", \"localField\": \"channel\", \"foreignField\": "
         "\"_id\", \"as\": "
         "\"c\"}}, {\"$unwind\": \"$c\"}]",
         true,
         "[{\"$lookup\": {\"from\": \"?\", \"localField\": \"?\", \"foreignField\": \"?\", \"as\": "
         "\"?\"}}, "
         "{\"$unwind\": \"?\"}]"},
        {"[{\"$facet\": {\"a\": [{\"$match\": {\"x\": 1}}], \"b\": [{\"$count\": \"n\"}]}}]", true,
         "[{\"$facet\": {\"a\": [{\"$match\": {\"x\": \"?\"}}], \"b\": [{\"$count\": \"?\"}]}}]"},
    };
    return cr_make_param_array(struct shape_case, cases, sizeof(cases) / sizeof(cases[0]));
}

/* BSON bytes of a JSON document, or of a JSON array (wrapped and unwrapped). */
static bson_t *parse_case(const char *json, bool is_array, const uint8_t **data, uint32_t *len)
{
    if (!is_array) {
        bson_t *b = fx_json(json);
        *data = bson_get_data(b);
        *len = b->len;
        return b;
    }
    char wrapped[1024];
    snprintf(wrapped, sizeof(wrapped), "{\"p\": %s}", json);
    bson_t *b = fx_json(wrapped);
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, b, "p") && BSON_ITER_HOLDS_ARRAY(&it));
    bson_iter_array(&it, len, data);
    return b;
}

ParameterizedTest(struct shape_case *c, shape, render)
{
    const uint8_t *data;
    uint32_t len;
    bson_t *b = parse_case(c->json, c->is_array, &data, &len);
    char out[MT_SHAPE_MAX];
    size_t n = mt_shape_render(data, len, c->is_array, out, sizeof(out), NULL);
    cr_assert_str_eq(out, c->want, "%s", c->json);
    cr_assert_eq(n, strlen(c->want));
    bson_destroy(b);
}

Test(shape, empty_or_missing_documents)
{
    char out[16];
    cr_assert_eq(mt_shape_render(NULL, 0, false, out, sizeof(out), NULL), 2);
    cr_assert_str_eq(out, "{}");
    cr_assert_eq(mt_shape_render(NULL, 0, true, out, sizeof(out), NULL), 2);
    cr_assert_str_eq(out, "[]");
}

static bool regex_redact(void *data, const char *name)
{
    return regexec(data, name, 0, NULL, 0) == 0;
}

/* Field names that are user data (a map keyed by e-mail) render as "?";
 * operators and stages never do, whatever the pattern. */
Test(shape, redacted_field_names)
{
    regex_t re;
    cr_assert_eq(regcomp(&re, "@", REG_EXTENDED | REG_NOSUB), 0);
    mt_shape_opts_t opts = {regex_redact, &re};
    bson_t *b = fx_json("{\"prefs\": {\"ann@example.com\": 1, \"theme\": \"dark\"}, "
                        "\"$or\": [{\"bob@example.com.seen\": {\"$gt\": 3}}, {\"x\": 1}]}");
    char out[MT_SHAPE_MAX];
    mt_shape_render(bson_get_data(b), b->len, false, out, sizeof(out), &opts);
    cr_assert_str_eq(out, "{\"prefs\": {\"?\": \"?\", \"theme\": \"?\"}, \"$or\": "
                          "[{\"?\": {\"$gt\": \"?\"}}, {\"x\": \"?\"}]}");
    mt_shape_render(bson_get_data(b), b->len, false, out, sizeof(out), NULL);
    cr_assert(strstr(out, "ann@example.com"), "without options names are kept: %s", out);
    regfree(&re);

    cr_assert_eq(regcomp(&re, ".*", REG_EXTENDED | REG_NOSUB), 0);
    mt_shape_render(bson_get_data(b), b->len, false, out, sizeof(out), &opts);
    cr_assert_str_eq(out, "{\"?\": {\"?\": \"?\", \"?\": \"?\"}, \"$or\": "
                          "[{\"?\": {\"$gt\": \"?\"}}, {\"?\": \"?\"}]}");
    cr_assert(mt_shape_redacts(&opts, "a.b"));
    cr_assert(!mt_shape_redacts(&opts, "$match"));
    cr_assert(!mt_shape_redacts(NULL, "a"));
    regfree(&re);
    bson_destroy(b);
}

Test(shape, cut_at_capacity)
{
    bson_t *b = bson_new();
    for (int i = 0; i < 100; i++) {
        char key[16];
        snprintf(key, sizeof(key), "field%d", i);
        BSON_APPEND_INT32(b, key, i);
    }
    char full[4096], cut[40];
    size_t n = mt_shape_render(bson_get_data(b), b->len, false, full, sizeof(full), NULL);
    cr_assert_gt(n, 500);
    size_t m = mt_shape_render(bson_get_data(b), b->len, false, cut, sizeof(cut), NULL);
    cr_assert_eq(m, sizeof(cut) - 1);
    cr_assert_eq(strlen(cut), m);
    cr_assert_str_eq(cut + m - 3, "...");
    cr_assert_eq(strncmp(cut, full, m - 3), 0);

    /* the default size keeps MT_SHAPE_MAX - 1 characters at most */
    char dflt[MT_SHAPE_MAX];
    m = mt_shape_render(bson_get_data(b), b->len, false, dflt, sizeof(dflt), NULL);
    cr_assert_eq(m, MT_SHAPE_MAX - 1);
    cr_assert_str_eq(dflt + m - 3, "...");

    /* tiny buffers */
    char tiny[4];
    cr_assert_eq(mt_shape_render(bson_get_data(b), b->len, false, tiny, 4, NULL), 3);
    cr_assert_str_eq(tiny, "...");
    cr_assert_eq(mt_shape_render(bson_get_data(b), b->len, false, tiny, 1, NULL), 0);
    cr_assert_str_eq(tiny, "");
    cr_assert_eq(mt_shape_render(bson_get_data(b), b->len, false, NULL, 0, NULL), 0);
    bson_destroy(b);
}

Test(shape, exact_fit_is_not_cut)
{
    bson_t *b = fx_json("{\"_id\": 1}");
    char out[13]; /* {"_id": "?"} is 12 characters */
    cr_assert_eq(mt_shape_render(bson_get_data(b), b->len, false, out, sizeof(out), NULL), 12);
    cr_assert_str_eq(out, "{\"_id\": \"?\"}");
    char small[12];
    cr_assert_eq(mt_shape_render(bson_get_data(b), b->len, false, small, sizeof(small), NULL), 11);
    cr_assert_str_eq(small, "{\"_id\": ...");
    bson_destroy(b);
}

Test(shape, cut_never_splits_a_character)
{
    /* keys of two-byte characters: every cut position must leave valid UTF-8 */
    bson_t *b = bson_new();
    BSON_APPEND_INT32(
        b, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 1);
    BSON_APPEND_INT32(b, "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", 2);
    for (size_t cap = 4; cap < 64; cap++) {
        char out[64];
        size_t n = mt_shape_render(bson_get_data(b), b->len, false, out, cap, NULL);
        cr_assert_lt(n, cap);
        cr_assert(bson_utf8_validate(out, n, false), "cap %zu: %s", cap, out);
    }
    bson_destroy(b);
}

Test(shape, unvalidated_deep_document_stays_json)
{
    /* mt_shape_render is public: a document deeper than the decoder allows
     * renders its deep part as "?" and keeps brackets balanced */
    bson_t *root = bson_new();
    bson_t levels[300];
    bson_t *cur = root;
    for (int i = 0; i < 300; i++) {
        bson_append_document_begin(cur, "a", 1, &levels[i]);
        cur = &levels[i];
    }
    for (int i = 299; i >= 0; i--)
        bson_append_document_end(i ? &levels[i - 1] : root, &levels[i]);
    static char out[8192];
    size_t n = mt_shape_render(bson_get_data(root), root->len, false, out, sizeof(out), NULL);
    cr_assert_lt(n, sizeof(out) - 1, "not cut");
    size_t open = 0, close = 0;
    for (size_t i = 0; i < n; i++) {
        open += out[i] == '{';
        close += out[i] == '}';
    }
    cr_assert_eq(open, close);
    cr_assert_eq(open, MT_MSG_MAX_DEPTH + 1);
    cr_assert_not_null(strstr(out, "{\"a\": \"?\"}"));
    bson_destroy(root);
}

/* ---- shapes of commands ------------------------------------------------- */

static void command_shape(const char *json, bson_t **seq, size_t nseq, const char *seq_id,
                          const char *want)
{
    bson_t *body = fx_json(json);
    size_t len;
    uint8_t *buf = fx_op_msg(0, 1, 0, body, seq_id, seq, nseq, &len);
    mt_msg_t m;
    mt_cmd_view_t v;
    cr_assert_eq(mt_msg_parse(buf, len, NULL, &m), MT_MSG_OK);
    cr_assert_eq(mt_cmd_request(&m, &v), MT_MSG_OK);
    char out[MT_SHAPE_MAX];
    size_t n = mt_shape_of_command(&v, out, sizeof(out), NULL);
    cr_assert_str_eq(out, want, "%s", json);
    cr_assert_eq(n, strlen(want));
    free(buf);
    bson_destroy(body);
}

Test(shape, of_commands)
{
    command_shape("{\"find\": \"c\", \"filter\": {\"_id\": 5}}", NULL, 0, NULL, "{\"_id\": \"?\"}");
    command_shape("{\"find\": \"c\"}", NULL, 0, NULL, "{}");
    command_shape("{\"ping\": 1}", NULL, 0, NULL, "{}");
    command_shape("{\"insert\": \"c\", \"documents\": [{\"a\": 1}]}", NULL, 0, NULL, "{}");
    command_shape("{\"count\": \"c\", \"query\": {\"s\": \"A\"}}", NULL, 0, NULL, "{\"s\": \"?\"}");
    command_shape("{\"distinct\": \"c\", \"key\": \"k\", \"query\": {\"s\": {\"$ne\": 1}}}", NULL,
                  0, NULL, "{\"s\": {\"$ne\": \"?\"}}");
    command_shape(
        "{\"findAndModify\": \"c\", \"query\": {\"_id\": 1}, \"update\": {\"$inc\": {\"n\": 1}}}",
        NULL, 0, NULL, "{\"_id\": \"?\"}");
    command_shape("{\"aggregate\": \"c\", \"pipeline\": [{\"$match\": {\"a\": {\"$in\": [1, "
                  "2]}}}], \"cursor\": {}}",
                  NULL, 0, NULL, "[{\"$match\": {\"a\": {\"$in\": [\"?\"]}}}]");
    command_shape(
        "{\"update\": \"c\", \"updates\": [{\"q\": {\"_id\": 1}, \"u\": {\"$set\": {\"a\": 2}}, "
        "\"upsert\": true}, {\"q\": {\"other\": 1}, \"u\": {}}]}",
        NULL, 0, NULL, "{\"q\": {\"_id\": \"?\"}, \"u\": {\"$set\": {\"a\": \"?\"}}}");
    command_shape("{\"update\": \"c\", \"updates\": [{\"q\": {\"a\": 1}, \"u\": [{\"$set\": "
                  "{\"b\": \"$a\"}}]}]}",
                  NULL, 0, NULL, "{\"q\": {\"a\": \"?\"}, \"u\": [{\"$set\": {\"b\": \"?\"}}]}");
    command_shape("{\"update\": \"c\", \"updates\": [{\"q\": {\"a\": 1}, \"u\": {\"name\": \"x\", "
                  "\"n\": 2}}]}",
                  NULL, 0, NULL, "{\"q\": {\"a\": \"?\"}, \"u\": {\"name\": \"?\", \"n\": \"?\"}}");
    command_shape(
        "{\"delete\": \"c\", \"deletes\": [{\"q\": {\"k\": {\"$in\": [1, 2, 3]}}, \"limit\": 0}]}",
        NULL, 0, NULL, "{\"q\": {\"k\": {\"$in\": [\"?\"]}}}");
    command_shape("{\"update\": \"c\", \"updates\": [{\"u\": {\"$set\": {\"a\": 1}}}]}", NULL, 0,
                  NULL, "{\"q\": {}, \"u\": {\"$set\": {\"a\": \"?\"}}}");
    command_shape("{\"delete\": \"c\"}", NULL, 0, NULL, "{}");

    /* statements in a kind-1 section */
    bson_t *stmts[2] = {fx_json("{\"q\": {\"k\": 1}, \"u\": {\"$set\": {\"v\": \"x\"}}}"),
                        fx_json("{\"q\": {\"z\": 1}, \"u\": {}}")};
    command_shape("{\"update\": \"c\", \"$db\": \"d\"}", stmts, 2, "updates",
                  "{\"q\": {\"k\": \"?\"}, \"u\": {\"$set\": {\"v\": \"?\"}}}");
    bson_t *dels[1] = {fx_json("{\"q\": {\"k\": {\"$gte\": 0}}, \"limit\": 0}")};
    command_shape("{\"delete\": \"c\", \"$db\": \"d\"}", dels, 1, "deletes",
                  "{\"q\": {\"k\": {\"$gte\": \"?\"}}}");
    bson_destroy(stmts[0]);
    bson_destroy(stmts[1]);
    bson_destroy(dels[0]);
}

Test(shape, of_captured_commands)
{
    struct {
        const char *scenario, *command;
        int nth;
        const char *want;
    } cases[] = {
        {"pymongo_find", "find", 0, "{\"_id\": \"?\"}"},
        {"pymongo_find", "find", 1, "{\"qty\": {\"$gt\": \"?\"}, \"tags\": {\"$in\": [\"?\"]}}"},
        {"pymongo_getmore", "find", 0, "{}"},
        {"pymongo_aggregate", "aggregate", 0,
         "[{\"$match\": {\"qty\": {\"$lt\": \"?\"}}}, {\"$group\": {\"_id\": \"?\", \"total\": "
         "{\"$sum\": \"?\"}}}]"},
        {"pymongo_insert_many", "update", 0,
         "{\"q\": {\"k\": \"?\"}, \"u\": {\"$set\": {\"v\": \"?\"}}}"},
        {"pymongo_insert_many", "delete", 0, "{\"q\": {\"k\": {\"$gte\": \"?\"}}}"},
        {"node_insert_many", "delete", 0, "{\"q\": {\"k\": {\"$in\": [\"?\"]}}}"},
        {"node_aggregate", "aggregate", 0,
         "[{\"$match\": {\"_id\": \"?\"}}, {\"$project\": {\"sku\": \"?\"}}]"},
        {"mongoengine_reference", "find", 1, "{\"_id\": \"?\"}"},
    };
    mt_msg_scratch_t scratch = {0};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len;
        uint8_t *buf = fx_request(cases[i].scenario, cases[i].command, cases[i].nth, &len);
        mt_msg_t m;
        mt_cmd_view_t v;
        cr_assert_eq(mt_msg_parse(buf, len, &scratch, &m), MT_MSG_OK);
        cr_assert_eq(mt_cmd_request(&m, &v), MT_MSG_OK);
        char out[MT_SHAPE_MAX];
        mt_shape_of_command(&v, out, sizeof(out), NULL);
        cr_assert_str_eq(out, cases[i].want, "%s %s", cases[i].scenario, cases[i].command);
        free(buf);
    }
    mt_msg_scratch_free(&scratch);
}

/* ---- lookups -------------------------------------------------------------- */

struct key_case {
    char json[192]; /* the whole command */
    char keys[24];  /* expected keys joined by ',', "" when not a lookup */
    int in_list;    /* expected list length of an $in, 0 for equalities */
};

ParameterizedTestParameters(shape, lookup)
{
    static struct key_case cases[] = {
        {"{\"find\": \"c\", \"filter\": {\"_id\": 1}}", "_id", 0},
        {"{\"find\": \"c\", \"filter\": {\"_id\": {\"$eq\": 1}}}", "_id", 0},
        {"{\"find\": \"c\", \"filter\": {\"_id\": {\"$in\": [1]}}}", "_id", 1},
        {"{\"find\": \"c\", \"filter\": {\"author_id\": {\"$oid\": \"650000000000000000000001\"}}}",
         "author_id", 0},
        {"{\"find\": \"c\", \"filter\": {\"customer.id\": \"x\"}, \"limit\": 1}", "customer.id", 0},
        {"{\"find\": \"c\", \"filter\": {\"_id\": 1}, \"limit\": 0}", "_id", 0},
        {"{\"find\": \"c\", \"filter\": {\"_id\": 1}, \"limit\": 1, \"singleBatch\": true}", "_id",
         0},
        {"{\"find\": \"c\", \"filter\": {\"email\": \"a@b\"}}", "email", 0},
        {"{\"aggregate\": \"c\", \"pipeline\": [{\"$match\": {\"_id\": 1}}], \"cursor\": {}}",
         "_id", 0},
        {"{\"aggregate\": \"c\", \"pipeline\": [{\"$match\": {\"_id\": {\"$in\": [1]}}}, "
         "{\"$project\": {\"a\": 1}}]}",
         "_id", 1},
        {"{\"aggregate\": \"c\", \"pipeline\": [{\"$match\": {\"p\": 1}}, {\"$group\": {\"_id\": "
         "1, \"n\": {\"$sum\": 1}}}]}",
         "p", 0},
        {"{\"find\": \"c\", \"filter\": {\"_id\": 1, \"b\": 2}}", "_id,b", 0},
        {"{\"find\": \"c\", \"filter\": {\"user\": 1, \"post\": {\"$eq\": 2}}}", "user,post", 0},
        {"{\"find\": \"c\", \"filter\": {\"_id\": {\"$in\": [1, 2]}}}", "_id", 2},
        {"{\"count\": \"c\", \"query\": {\"_id\": 1}}", "_id", 0},
        {"{\"distinct\": \"c\", \"key\": \"k\", \"query\": {\"post\": 1}}", "post", 0},
        {"{\"findAndModify\": \"c\", \"query\": {\"_id\": 1}, \"update\": {\"a\": 1}}", "_id", 0},
        {"{\"update\": \"c\", \"updates\": [{\"q\": {\"_id\": 1}, \"u\": {\"a\": 1}}]}", "_id", 0},
        {"{\"delete\": \"c\", \"deletes\": [{\"q\": {\"_id\": 1}, \"limit\": 1}]}", "_id", 0},
        {"{\"find\": \"c\"}", "", 0},
        {"{\"find\": \"c\", \"filter\": {}}", "", 0},
        {"{\"find\": \"c\", \"filter\": {\"a\": 1, \"_id\": {\"$in\": [1]}}}", "", 0},
        {"{\"find\": \"c\", \"filter\": {\"_id\": {\"$in\": []}}}", "", 0},
        {"{\"find\": \"c\", \"filter\": {\"_id\": {\"$in\": [{\"a\": 1}]}}}", "", 0},
        {"{\"find\": \"c\", \"filter\": {\"_id\": {\"$gt\": 1}}}", "", 0},
        {"{\"find\": \"c\", \"filter\": {\"_id\": {\"$eq\": 1, \"$ne\": 2}}}", "", 0},
        {"{\"find\": \"c\", \"filter\": {\"_id\": {\"$eq\": {\"a\": 1}}}}", "", 0},
        {"{\"find\": \"c\", \"filter\": {\"_id\": 1}, \"limit\": 5}", "", 0},
        {"{\"find\": \"c\", \"filter\": {\"$or\": [{\"_id\": 1}]}}", "", 0},
        {"{\"find\": \"c\", \"filter\": {\"name\": {\"$regularExpression\": {\"pattern\": \"a\", "
         "\"options\": \"\"}}}}",
         "", 0},
        {"{\"find\": \"c\", \"filter\": {\"addr\": {\"city\": \"x\"}}}", "", 0},
        {"{\"find\": \"c\", \"filter\": {\"tags\": [\"a\"]}}", "", 0},
        {"{\"find\": \"c\", \"filter\": {\"a\": 1, \"b\": 2, \"c\": 3, \"d\": 4, \"e\": 5}}", "",
         0},
        {"{\"aggregate\": \"c\", \"pipeline\": [{\"$project\": {\"a\": 1}}, {\"$match\": {\"_id\": "
         "1}}]}",
         "", 0},
        {"{\"aggregate\": \"c\", \"pipeline\": []}", "", 0},
        {"{\"insert\": \"c\", \"documents\": [{\"_id\": 1}]}", "", 0},
    };
    return cr_make_param_array(struct key_case, cases, sizeof(cases) / sizeof(cases[0]));
}

static void parse_json_command(const char *json, uint8_t **buf, mt_cmd_view_t *v)
{
    size_t len;
    mt_msg_t m;
    *buf = fx_op_msg_json(json, 0, &len);
    cr_assert_eq(mt_msg_parse(*buf, len, NULL, &m), MT_MSG_OK);
    cr_assert_eq(mt_cmd_request(&m, v), MT_MSG_OK);
}

ParameterizedTest(struct key_case *c, shape, lookup)
{
    uint8_t *buf;
    mt_cmd_view_t v;
    mt_shape_lookup_t lk;
    char keys[64] = "";
    parse_json_command(c->json, &buf, &v);
    bool got = mt_shape_lookup(&v, &lk);
    if (c->keys[0]) {
        cr_assert(got, "%s", c->json);
        for (size_t i = 0; i < lk.nterms; i++) {
            strcat(keys, i ? "," : "");
            strcat(keys, lk.terms[i].key);
            cr_assert(lk.terms[i].key >= (const char *)buf, "keys point into the message");
        }
        cr_assert_str_eq(keys, c->keys, "%s", c->json);
        cr_assert_eq(lk.in_list, c->in_list > 0, "%s", c->json);
        if (c->in_list)
            cr_assert_eq(lk.list_len, (uint32_t)c->in_list);
        else
            cr_assert_neq(bson_iter_type(&lk.terms[0].value), BSON_TYPE_ARRAY);
    } else {
        cr_assert_not(got, "%s", c->json);
    }
    free(buf);
}

Test(shape, lookup_value_is_the_looked_up_value)
{
    const char *json[] = {
        "{\"find\": \"c\", \"filter\": {\"_id\": 42}}",
        "{\"find\": \"c\", \"filter\": {\"_id\": {\"$eq\": 42}}}",
        "{\"update\": \"c\", \"updates\": [{\"q\": {\"_id\": 42}, \"u\": {\"a\": 1}}]}",
    };
    for (size_t i = 0; i < 3; i++) {
        uint8_t *buf;
        mt_cmd_view_t v;
        mt_shape_lookup_t lk;
        parse_json_command(json[i], &buf, &v);
        cr_assert(mt_shape_lookup(&v, &lk), "%s", json[i]);
        cr_assert(BSON_ITER_HOLDS_INT32(&lk.terms[0].value));
        cr_assert_eq(bson_iter_int32(&lk.terms[0].value), 42);
        free(buf);
    }
}

Test(shape, lookup_on_captured_lookups)
{
    const char *scenarios[][3] = {
        {"mongoengine_reference", "find", "1"},
        {"pymongo_find", "find", "0"},
        {"node_find", "find", "0"},
        {"node_aggregate", "aggregate", "0"},
    };
    mt_msg_t m;
    mt_cmd_view_t v;
    mt_shape_lookup_t lk;
    size_t len;
    for (size_t i = 0; i < 4; i++) {
        uint8_t *buf = fx_request(scenarios[i][0], scenarios[i][1], atoi(scenarios[i][2]), &len);
        cr_assert_eq(mt_msg_parse(buf, len, NULL, &m), MT_MSG_OK);
        cr_assert_eq(mt_cmd_request(&m, &v), MT_MSG_OK);
        cr_assert(mt_shape_lookup(&v, &lk), "%s", scenarios[i][0]);
        cr_assert_eq(lk.nterms, 1);
        cr_assert_str_eq(lk.terms[0].key, "_id");
        free(buf);
    }
    /* the parent of the N+1 is not a lookup */
    uint8_t *buf = fx_request("mongoengine_reference", "find", 0, &len);
    cr_assert_eq(mt_msg_parse(buf, len, NULL, &m), MT_MSG_OK);
    cr_assert_eq(mt_cmd_request(&m, &v), MT_MSG_OK);
    cr_assert_not(mt_shape_lookup(&v, &lk));
    free(buf);
}
