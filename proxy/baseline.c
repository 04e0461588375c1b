/*
 * baseline: both files are read with libbson's JSON parser and walked with
 * bson iterators; the baseline is written by hand, one entry per block, so
 * that a diff in review shows which loop was accepted or fixed.
 */
#include "baseline.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bson/bson.h>

#include "cli.h"
#include "httpc.h"
#include "json.h"

#define MT_BASELINE_DEFAULT_ADMIN "http://127.0.0.1:27080"
#define MT_BASELINE_TIMEOUT_MS 30000
#define MT_BASELINE_FILE_MAX (64u << 20)

const char *mt_baseline_type_str(mt_baseline_type_t type)
{
    switch (type) {
#define MT_BASELINE_TYPE_NAME(id, name)                                                            \
    case MT_BASELINE_TYPE_##id:                                                                    \
        return name;
        MT_BASELINE_TYPES(MT_BASELINE_TYPE_NAME)
#undef MT_BASELINE_TYPE_NAME
    case MT_BASELINE_TYPE__COUNT:
        break;
    }
    return "unknown";
}

int mt_baseline_type_parse(const char *s)
{
    for (int t = 0; t < MT_BASELINE_TYPE__COUNT; t++)
        if (strcmp(s, mt_baseline_type_str((mt_baseline_type_t)t)) == 0)
            return t;
    return -1;
}

int mt_baseline_parse_types(const char *list, unsigned *mask, char *err, size_t errlen)
{
    char name[64];

    *mask = 0;
    if (strcmp(list, "none") == 0)
        return 0;
    for (const char *p = list, *comma;; p = comma + 1) {
        comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        int t = -1;
        if (len > 0 && len < sizeof(name)) {
            memcpy(name, p, len);
            name[len] = '\0';
            t = mt_baseline_type_parse(name);
        }
        if (t < 0) {
            snprintf(err, errlen,
                     "--fail-on: unknown finding type '%.*s' (expected a comma-separated list "
                     "of n_plus_one, write_loop, repeated_read, or none)",
                     (int)(len < 64 ? len : 64), p);
            return -1;
        }
        *mask |= 1u << t;
        if (!comma)
            return 0;
    }
}

void mt_baseline_init(mt_baseline_t *b)
{
    memset(b, 0, sizeof(*b));
}

static void cmd_free(mt_baseline_cmd_t *c)
{
    bson_free(c->db);
    bson_free(c->collection);
    bson_free(c->command);
    bson_free(c->shape);
}

static void entry_free(mt_baseline_entry_t *e)
{
    bson_free(e->type);
    cmd_free(&e->parent);
    cmd_free(&e->children);
    bson_free(e->field);
    bson_free(e->reason);
    bson_free(e->suggestion);
}

void mt_baseline_clear(mt_baseline_t *b)
{
    for (size_t i = 0; i < b->n; i++)
        entry_free(&b->entries[i]);
    bson_free(b->entries);
    mt_baseline_init(b);
}

/* A zeroed entry at the end of b; NULL when out of memory. */
static mt_baseline_entry_t *entry_push(mt_baseline_t *b)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        mt_baseline_entry_t *v = bson_realloc(b->entries, cap * sizeof(*v));
        if (!v)
            return NULL;
        b->entries = v;
        b->cap = cap;
    }
    memset(&b->entries[b->n], 0, sizeof(b->entries[0]));
    return &b->entries[b->n++];
}

/* Reading: each helper writes one line naming the entry and the key. */
typedef struct {
    const char *what; /* "entry" or "pattern" */
    size_t index;     /* 1-based */
    char *err;
    size_t errlen;
} reader_t;

/* key NULL: the object itself */
static int bad(reader_t *r, const char *key, const char *problem)
{
    if (key)
        snprintf(r->err, r->errlen, "%s %zu: %s %s", r->what, r->index, key, problem);
    else
        snprintf(r->err, r->errlen, "%s %zu %s", r->what, r->index, problem);
    return -1;
}

/* key as a string (NULL when null and nullable). */
static int read_str(reader_t *r, const bson_t *doc, const char *key, const char *path,
                    bool nullable, bool required, char **out)
{
    bson_iter_t it;

    *out = NULL;
    if (!bson_iter_init_find(&it, doc, key)) {
        if (!required)
            return 0;
        return bad(r, path, "is missing");
    }
    if (BSON_ITER_HOLDS_NULL(&it) && nullable)
        return 0;
    if (!BSON_ITER_HOLDS_UTF8(&it))
        return bad(r, path, nullable ? "must be a string or null" : "must be a string");
    *out = bson_strdup(bson_iter_utf8(&it, NULL));
    return *out ? 0 : bad(r, path, "does not fit in memory");
}

static int read_cmd(reader_t *r, const bson_iter_t *it, const char *key, mt_baseline_cmd_t *c)
{
    static const char *const parts[] = {"db", "collection", "command", "shape"};
    char **fields[] = {&c->db, &c->collection, &c->command, &c->shape};
    char path[64];
    const uint8_t *data;
    uint32_t len;
    bson_t sub;

    if (!BSON_ITER_HOLDS_DOCUMENT(it))
        return bad(r, key, "must be an object");
    bson_iter_document(it, &len, &data);
    if (!bson_init_static(&sub, data, len))
        return bad(r, key, "is not a valid object");
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof(path), "%s.%s", key, parts[i]);
        if (read_str(r, &sub, parts[i], path, false, true, fields[i]) != 0)
            return -1;
    }
    return 0;
}

/* The parts both files share: type, parent, children (or child), field. */
static int read_key(reader_t *r, const bson_t *doc, bool type_required, mt_baseline_entry_t *e)
{
    bson_iter_t it;

    if (read_str(r, doc, "type", "type", false, type_required, &e->type) != 0)
        return -1;
    if (!e->type && !(e->type = bson_strdup("n_plus_one")))
        return bad(r, "type", "does not fit in memory");
    if (!e->type[0])
        return bad(r, "type", "is empty");
    if (bson_iter_init_find(&it, doc, "parent") && !BSON_ITER_HOLDS_NULL(&it)) {
        if (read_cmd(r, &it, "parent", &e->parent) != 0)
            return -1;
        e->has_parent = true;
    } else if (!bson_iter_init_find(&it, doc, "parent") && type_required) {
        return bad(r, "parent", "is missing (null when there is none)");
    }
    if (bson_iter_init_find(&it, doc, "children") || bson_iter_init_find(&it, doc, "child")) {
        if (read_cmd(r, &it, "children", &e->children) != 0)
            return -1;
    } else {
        return bad(r, "children", "is missing");
    }
    return read_str(r, doc, "field", "field", true, type_required, &e->field);
}

/* Calls fn for each object of the array under key in the JSON text. */
typedef int (*each_fn)(reader_t *r, const bson_t *doc, void *data);

static int each_object(const char *json, size_t len, const char *key, reader_t *r,
                       int (*check_top)(reader_t *r, const bson_t *top), each_fn fn, void *data)
{
    bson_error_t error;
    bson_iter_t it, arr;
    bson_t top;
    int rc = 0;

    if (!bson_init_from_json(&top, json, (ssize_t)len, &error)) {
        snprintf(r->err, r->errlen, "not valid JSON: %.200s", error.message);
        return -1;
    }
    if (check_top && check_top(r, &top) != 0) {
        bson_destroy(&top);
        return -1;
    }
    if (!bson_iter_init_find(&it, &top, key) || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &arr)) {
        snprintf(r->err, r->errlen, "no \"%s\" array", key);
        bson_destroy(&top);
        return -1;
    }
    while (rc == 0 && bson_iter_next(&arr)) {
        const uint8_t *data2;
        uint32_t len2;
        bson_t doc;
        r->index++;
        if (!BSON_ITER_HOLDS_DOCUMENT(&arr)) {
            rc = bad(r, NULL, "is not an object");
            break;
        }
        bson_iter_document(&arr, &len2, &data2);
        if (!bson_init_static(&doc, data2, len2)) {
            rc = bad(r, NULL, "is not a valid object");
            break;
        }
        rc = fn(r, &doc, data);
    }
    bson_destroy(&top);
    return rc;
}

static int check_schema(reader_t *r, const bson_t *top)
{
    bson_iter_t it;

    if (!bson_iter_init_find(&it, top, "schema") || !BSON_ITER_HOLDS_UTF8(&it)) {
        snprintf(r->err, r->errlen, "no \"schema\": \"%s\" (is this a baseline file?)",
                 MT_BASELINE_SCHEMA);
        return -1;
    }
    if (strcmp(bson_iter_utf8(&it, NULL), MT_BASELINE_SCHEMA) != 0) {
        snprintf(r->err, r->errlen, "schema \"%.64s\" is not %s", bson_iter_utf8(&it, NULL),
                 MT_BASELINE_SCHEMA);
        return -1;
    }
    return 0;
}

static int read_entry(reader_t *r, const bson_t *doc, void *data)
{
    mt_baseline_entry_t *e = entry_push(data);

    if (!e)
        return bad(r, NULL, "does not fit in memory");
    if (read_key(r, doc, true, e) != 0)
        return -1;
    if (read_str(r, doc, "reason", "reason", true, false, &e->reason) != 0)
        return -1;
    return 0;
}

int mt_baseline_parse(mt_baseline_t *b, const char *json, size_t len, char *err, size_t errlen)
{
    reader_t r = {"entry", 0, err, errlen};

    return each_object(json, len, "entries", &r, check_schema, read_entry, b);
}

int mt_baseline_load(mt_baseline_t *b, const char *path, char *err, size_t errlen)
{
    char why[400];
    char *text;
    long size;
    FILE *f = fopen(path, "rb");
    int rc = -1;

    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        snprintf(err, errlen, "%s: cannot read it: %s", path, strerror(errno));
        fclose(f);
        return -1;
    }
    if ((unsigned long)size > MT_BASELINE_FILE_MAX) {
        snprintf(err, errlen, "%s: %ld bytes is too large for a baseline", path, size);
        fclose(f);
        return -1;
    }
    text = bson_malloc((size_t)size + 1);
    if (fread(text, 1, (size_t)size, f) != (size_t)size) {
        snprintf(err, errlen, "%s: cannot read it: %s", path, strerror(errno));
    } else if (mt_baseline_parse(b, text, (size_t)size, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "%s: %s", path, why);
    } else {
        rc = 0;
    }
    bson_free(text);
    fclose(f);
    return rc;
}

/* The number at a dotted path of doc. */
static bool find_number(const bson_t *doc, const char *path, bson_iter_t *it)
{
    return bson_iter_init(it, doc) && bson_iter_find_descendant(it, path, it) &&
           BSON_ITER_HOLDS_NUMBER(it);
}

static int read_pattern(reader_t *r, const bson_t *doc, void *data)
{
    mt_baseline_entry_t *e = entry_push(data);
    bson_iter_t it;

    if (!e)
        return bad(r, NULL, "does not fit in memory");
    if (read_key(r, doc, false, e) != 0)
        return -1;
    if (read_str(r, doc, "suggestion", "suggestion", true, false, &e->suggestion) != 0 ||
        (!e->suggestion && read_str(r, doc, "fix", "fix", true, false, &e->suggestion) != 0))
        return -1;
    /* confidence "high" is what gates; a pattern with a field is high */
    if (bson_iter_init_find(&it, doc, "confidence") && BSON_ITER_HOLDS_UTF8(&it))
        e->high = strcmp(bson_iter_utf8(&it, NULL), "high") == 0;
    else
        e->high = e->field != NULL;
    if (find_number(doc, "occurrences", &it))
        e->occurrences = (uint64_t)bson_iter_as_int64(&it);
    /* the children's figures: "children": {"count", "duration_ms"}, or
     * "child_commands" and "total_child_ms" beside "child" */
    if (find_number(doc, "children.count", &it) || find_number(doc, "child_commands", &it))
        e->child_commands = (uint64_t)bson_iter_as_int64(&it);
    if (find_number(doc, "children.duration_ms", &it) || find_number(doc, "total_child_ms", &it))
        e->child_ms = bson_iter_as_double(&it);
    return 0;
}

int mt_baseline_from_findings(mt_baseline_t *b, const char *json, size_t len, char *err,
                              size_t errlen)
{
    reader_t r = {"pattern", 0, err, errlen};

    return each_object(json, len, "patterns", &r, NULL, read_pattern, b);
}

/* Writing */

static void append_str(bson_string_t *s, const char *v)
{
    if (v)
        mt_json_append_string(s, v, strlen(v));
    else
        bson_string_append(s, "null");
}

static void append_cmd(bson_string_t *s, const mt_baseline_cmd_t *c)
{
    bson_string_append(s, "{\"db\": ");
    append_str(s, c->db);
    bson_string_append(s, ", \"collection\": ");
    append_str(s, c->collection);
    bson_string_append(s, ", \"command\": ");
    append_str(s, c->command);
    bson_string_append(s, ", \"shape\": ");
    append_str(s, c->shape);
    bson_string_append(s, "}");
}

char *mt_baseline_render(const mt_baseline_t *b)
{
    bson_string_t *s = bson_string_new("{\n  \"schema\": \"" MT_BASELINE_SCHEMA "\",\n");

    bson_string_append(s, b->n ? "  \"entries\": [\n" : "  \"entries\": [");
    for (size_t i = 0; i < b->n; i++) {
        const mt_baseline_entry_t *e = &b->entries[i];
        bson_string_append(s, "    {\n      \"type\": ");
        append_str(s, e->type);
        bson_string_append(s, ",\n      \"parent\": ");
        if (e->has_parent)
            append_cmd(s, &e->parent);
        else
            bson_string_append(s, "null");
        bson_string_append(s, ",\n      \"children\": ");
        append_cmd(s, &e->children);
        bson_string_append(s, ",\n      \"field\": ");
        append_str(s, e->field);
        bson_string_append(s, ",\n      \"reason\": ");
        append_str(s, e->reason ? e->reason : "");
        bson_string_append(s, i + 1 < b->n ? "\n    },\n" : "\n    }\n  ");
    }
    bson_string_append(s, "]\n}\n");
    return bson_string_free(s, false);
}

int mt_baseline_save(const mt_baseline_t *b, const char *path, char *err, size_t errlen)
{
    char *text = mt_baseline_render(b);
    size_t len = strlen(text);
    bool to_stdout = strcmp(path, "-") == 0;
    FILE *f = to_stdout ? stdout : fopen(path, "wb");
    int rc = 0;

    if (!f) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        bson_free(text);
        return -1;
    }
    if (fwrite(text, 1, len, f) != len || fflush(f) != 0)
        rc = -1;
    if (!to_stdout && fclose(f) != 0)
        rc = -1;
    if (rc != 0)
        snprintf(err, errlen, "writing %s: %s", to_stdout ? "stdout" : path, strerror(errno));
    bson_free(text);
    return rc;
}

/* Checking */

static bool str_eq(const char *a, const char *b)
{
    return a && b ? strcmp(a, b) == 0 : a == b;
}

static bool cmd_eq(const mt_baseline_cmd_t *a, const mt_baseline_cmd_t *b)
{
    return str_eq(a->db, b->db) && str_eq(a->collection, b->collection) &&
           str_eq(a->command, b->command) && str_eq(a->shape, b->shape);
}

static bool key_eq(const mt_baseline_entry_t *a, const mt_baseline_entry_t *b)
{
    return str_eq(a->type, b->type) && a->has_parent == b->has_parent &&
           (!a->has_parent || cmd_eq(&a->parent, &b->parent)) &&
           cmd_eq(&a->children, &b->children) && str_eq(a->field, b->field);
}

void mt_baseline_check(mt_baseline_t *baseline, mt_baseline_t *patterns, unsigned fail_types,
                       bool fail_medium, mt_baseline_verdict_t *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t k = 0; baseline && k < baseline->n; k++)
        baseline->entries[k].matched = false;
    for (size_t i = 0; i < patterns->n; i++) {
        mt_baseline_entry_t *p = &patterns->entries[i];
        int type = mt_baseline_type_parse(p->type);
        p->matched = p->failing = false;
        for (size_t k = 0; baseline && k < baseline->n; k++) {
            mt_baseline_entry_t *e = &baseline->entries[k];
            if (!key_eq(p, e))
                continue;
            e->matched = p->matched = true;
            if (e->reason && !p->reason)
                p->reason = bson_strdup(e->reason);
        }
        if (p->matched) {
            out->baselined++;
            continue;
        }
        out->fresh++;
        p->failing = type >= 0 && (fail_types & (1u << type)) && (p->high || fail_medium);
        out->failing += p->failing;
    }
    for (size_t k = 0; baseline && k < baseline->n; k++)
        out->stale += !baseline->entries[k].matched;
}

void mt_baseline_cmd_format(const mt_baseline_cmd_t *c, char *out, size_t cap)
{
    snprintf(out, cap, "%s.%s %s %s", c->db ? c->db : "?", c->collection ? c->collection : "?",
             c->command ? c->command : "?", c->shape ? c->shape : "?");
}

/* `mongotap baseline` */

int mt_baseline_cmd_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"admin", required_argument, NULL, 'a'},
        {"token", required_argument, NULL, 't'},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *admin = getenv("MONGOTAP_ADMIN_URL");
    const char *token = getenv("MONGOTAP_TOKEN");
    const char *out_path = "-";
    char err[512], why[400];
    mt_baseline_t patterns;
    char *body;
    size_t len;
    int c, rc;

    if (admin == NULL || *admin == '\0')
        admin = MT_BASELINE_DEFAULT_ADMIN;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'a':
            admin = optarg;
            break;
        case 't':
            token = optarg;
            break;
        case 'o':
            if (*optarg == '\0') {
                fprintf(stderr, "mongotap baseline: -o: empty file name\n");
                return 2;
            }
            out_path = optarg;
            break;
        case 'h':
            fputs(mt_cli_usage, stdout);
            return 0;
        default:
            return mt_cli_getopt_error("baseline", c, argv, optind);
        }
    }
    if (mt_cli_extra_argument("baseline", argc, argv, optind))
        return 2;

    signal(SIGPIPE, SIG_IGN);
    switch (mt_httpc_fetch(admin, token, "/api/findings", MT_BASELINE_TIMEOUT_MS, &body, &len, err,
                           sizeof(err))) {
    case MT_HTTPC_FETCH_BAD_URL:
        fprintf(stderr, "mongotap baseline: --admin: %s\n", err);
        return 2;
    case MT_HTTPC_FETCH_FAILED:
        fprintf(stderr, "mongotap baseline: %s\n", err);
        return 1;
    case MT_HTTPC_FETCH_OK:
        break;
    }
    mt_baseline_init(&patterns);
    rc = mt_baseline_from_findings(&patterns, body, len, why, sizeof(why));
    free(body);
    if (rc != 0) {
        fprintf(stderr, "mongotap baseline: admin at %s: /api/findings: %s\n", admin, why);
        mt_baseline_clear(&patterns);
        return 1;
    }
    rc = mt_baseline_save(&patterns, out_path, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "mongotap baseline: %s\n", err);
    else if (strcmp(out_path, "-") != 0)
        fprintf(stderr, "mongotap baseline: %zu pattern(s) written to %s; fill in each reason\n",
                patterns.n, out_path);
    mt_baseline_clear(&patterns);
    return rc == 0 ? 0 : 1;
}
