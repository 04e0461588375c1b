/*
 * shape: renders a filter, pipeline or update with every literal replaced by
 * "?" as compact JSON into a fixed buffer (cut with "..." when full), and
 * recognises single-key lookups, the children of an N+1 pattern.
 */
#include "shape.h"

#include <string.h>

#include "msg.h"
#include "utf8.h"

/* Output cursor over the caller's buffer; `full` once something did not fit. */
typedef struct {
    char *out;
    size_t cap;
    size_t len;
    bool full;
    const mt_shape_opts_t *opts;
} writer_t;

static void put(writer_t *w, const char *s, size_t n)
{
    if (w->full)
        return;
    size_t room = w->cap ? w->cap - 1 - w->len : 0;
    if (n > room) {
        if (room)
            memcpy(w->out + w->len, s, room);
        w->len += room;
        w->full = true;
        return;
    }
    memcpy(w->out + w->len, s, n);
    w->len += n;
}

#define PUT_LIT(w, s) put((w), (s), sizeof(s) - 1)

/* Terminates the text; a cut text ends with "..." on a UTF-8 boundary. */
static size_t finish(writer_t *w)
{
    if (w->cap == 0)
        return 0;
    if (w->full) {
        size_t keep = w->cap - 1 >= 3 ? w->cap - 1 - 3 : 0;
        while (keep > 0 && ((unsigned char)w->out[keep] & 0xc0u) == 0x80u)
            keep--;
        w->len = keep;
        w->full = false;
        PUT_LIT(w, "...");
    }
    w->out[w->len] = '\0';
    return w->len;
}

/* A key as a JSON string. Keys of validated documents are UTF-8; anything
 * else is written as U+FFFD so the output stays valid. */
static void put_key(writer_t *w, const char *key, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    bool utf8 = mt_utf8_valid((const uint8_t *)key, n);
    size_t run = 0; /* start of the pending run of bytes copied as they are */

    PUT_LIT(w, "\"");
    for (size_t i = 0; i < n && !w->full; i++) {
        unsigned char c = (unsigned char)key[i];
        char esc[8];
        size_t elen = 0;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            elen = 2;
        } else if (c < 0x20) {
            esc[0] = '\\';
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xfu];
            elen = 6;
        } else if (c >= 0x80 && !utf8) {
            memcpy(esc, "\\ufffd", 6);
            elen = 6;
        } else {
            continue;
        }
        put(w, key + run, i - run);
        put(w, esc, elen);
        run = i + 1;
    }
    put(w, key + run, n - run);
    PUT_LIT(w, "\"");
}

static void render_container(writer_t *w, const bson_iter_t *parent, bool is_array, int depth);

static bool collapses(const char *key)
{
    return strcmp(key, "$in") == 0 || strcmp(key, "$nin") == 0 || strcmp(key, "$all") == 0;
}

static void render_value(writer_t *w, const bson_iter_t *it, const char *key, int depth)
{
    /* validated documents never get here; others are cut short, still JSON */
    if (depth >= MT_MSG_MAX_DEPTH && (BSON_ITER_HOLDS_DOCUMENT(it) || BSON_ITER_HOLDS_ARRAY(it)))
        PUT_LIT(w, "\"?\"");
    else if (BSON_ITER_HOLDS_DOCUMENT(it))
        render_container(w, it, false, depth + 1);
    else if (BSON_ITER_HOLDS_ARRAY(it) && key && collapses(key))
        PUT_LIT(w, "[\"?\"]");
    else if (BSON_ITER_HOLDS_ARRAY(it))
        render_container(w, it, true, depth + 1);
    else
        PUT_LIT(w, "\"?\"");
}

/* Documents keep their keys in order, arrays their elements; DBRefs
 * ({"$ref", "$id"}) are documents like any other. */
static void render_iter(writer_t *w, bson_iter_t *child, bool is_array, int depth)
{
    bool first = true;

    put(w, is_array ? "[" : "{", 1);
    while (!w->full && bson_iter_next(child)) {
        if (!first)
            PUT_LIT(w, ", ");
        first = false;
        const char *key = NULL;
        if (!is_array) {
            key = bson_iter_key(child);
            if (mt_shape_redacts(w->opts, key))
                PUT_LIT(w, "\"?\"");
            else
                put_key(w, key, bson_iter_key_len(child));
            PUT_LIT(w, ": ");
        }
        render_value(w, child, key, depth);
    }
    put(w, is_array ? "]" : "}", 1);
}

static void render_container(writer_t *w, const bson_iter_t *parent, bool is_array, int depth)
{
    bson_iter_t child;
    if (!bson_iter_recurse(parent, &child)) {
        put(w, is_array ? "[]" : "{}", 2);
        return;
    }
    render_iter(w, &child, is_array, depth);
}

static void render_bytes(writer_t *w, const uint8_t *doc, uint32_t len, bool is_array)
{
    bson_t b;
    bson_iter_t it;
    if (!doc || !bson_init_static(&b, doc, len) || !bson_iter_init(&it, &b)) {
        put(w, is_array ? "[]" : "{}", 2);
        return;
    }
    render_iter(w, &it, is_array, 0);
}

bool mt_shape_redacts(const mt_shape_opts_t *opts, const char *name)
{
    return opts && opts->redact && name[0] != '$' && opts->redact(opts->redact_data, name);
}

size_t mt_shape_render(const uint8_t *doc, uint32_t len, bool is_array, char *out, size_t cap,
                       const mt_shape_opts_t *opts)
{
    writer_t w = {out, cap, 0, false, opts};
    render_bytes(&w, doc, len, is_array);
    return finish(&w);
}

/* {"q": <shape>, "u": <shape>} of an update statement, {"q": <shape>} of a
 * delete statement. */
static void render_statement(writer_t *w, const mt_cmd_view_t *cmd)
{
    bool with_u = cmd->shape_src == MT_CMD_SHAPE_UPDATES;
    bson_t b;
    bson_iter_t it;
    const uint8_t *q = NULL, *u = NULL;
    uint32_t qlen = 0, ulen = 0;
    bool u_array = false;

    if (!bson_init_static(&b, cmd->shape_doc, cmd->shape_doc_len) || !bson_iter_init(&it, &b)) {
        PUT_LIT(w, "{}");
        return;
    }
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        if (strcmp(key, "q") == 0 && BSON_ITER_HOLDS_DOCUMENT(&it)) {
            bson_iter_document(&it, &qlen, &q);
        } else if (with_u && strcmp(key, "u") == 0) {
            if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
                bson_iter_document(&it, &ulen, &u);
            } else if (BSON_ITER_HOLDS_ARRAY(&it)) {
                bson_iter_array(&it, &ulen, &u);
                u_array = true;
            }
        }
    }
    PUT_LIT(w, "{\"q\": ");
    render_bytes(w, q, qlen, false);
    if (with_u) {
        PUT_LIT(w, ", \"u\": ");
        render_bytes(w, u, ulen, u_array);
    }
    PUT_LIT(w, "}");
}

size_t mt_shape_of_command(const mt_cmd_view_t *cmd, char *out, size_t cap,
                           const mt_shape_opts_t *opts)
{
    writer_t w = {out, cap, 0, false, opts};

    if (!cmd->shape_doc) {
        PUT_LIT(&w, "{}");
    } else {
        switch (cmd->shape_src) {
        case MT_CMD_SHAPE_FILTER:
        case MT_CMD_SHAPE_PIPELINE:
            render_bytes(&w, cmd->shape_doc, cmd->shape_doc_len, cmd->shape_doc_is_array);
            break;
        case MT_CMD_SHAPE_UPDATES:
        case MT_CMD_SHAPE_DELETES:
            render_statement(&w, cmd);
            break;
        case MT_CMD_SHAPE_NONE:
            PUT_LIT(&w, "{}");
            break;
        }
    }
    return finish(&w);
}

/* ---- lookups ------------------------------------------------------------- */

/* An equality operand: a plain value, not a document, array or regex. */
static bool is_literal(const bson_iter_t *it)
{
    bson_type_t t = bson_iter_type(it);
    return t != BSON_TYPE_DOCUMENT && t != BSON_TYPE_ARRAY && t != BSON_TYPE_REGEX;
}

/* {"$eq": v} positions *value on v; {"$in": [literals]} on the array. */
static bool single_operator(const bson_iter_t *it, bson_iter_t *value, bool *in_list,
                            uint32_t *list_len)
{
    bson_iter_t op, elems;
    if (!bson_iter_recurse(it, &op) || !bson_iter_next(&op))
        return false;
    const char *name = bson_iter_key(&op);
    bson_iter_t operand = op;
    if (bson_iter_next(&op))
        return false; /* more than one operator */
    if (strcmp(name, "$eq") == 0 && is_literal(&operand)) {
        *value = operand;
        return true;
    }
    if (strcmp(name, "$in") != 0 || !BSON_ITER_HOLDS_ARRAY(&operand) ||
        !bson_iter_recurse(&operand, &elems))
        return false;
    uint32_t n = 0;
    while (bson_iter_next(&elems)) {
        if (!is_literal(&elems))
            return false;
        n++;
    }
    if (n == 0)
        return false;
    *value = operand;
    *in_list = true;
    *list_len = n;
    return true;
}

static bool lookup_filter(const uint8_t *doc, uint32_t len, mt_shape_lookup_t *out)
{
    bson_t b;
    bson_iter_t it;
    if (!doc || !bson_init_static(&b, doc, len) || !bson_iter_init(&it, &b))
        return false;
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        bool in_list = false;
        uint32_t list_len = 0;
        size_t i = out->nterms;
        if (k[0] == '$' || k[0] == '\0' || i == MT_SHAPE_LOOKUP_TERMS)
            return false; /* $or, $expr, $where ... are not a field */
        if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
            if (!single_operator(&it, &out->terms[i].value, &in_list, &list_len))
                return false;
        } else if (is_literal(&it)) {
            out->terms[i].value = it;
        } else {
            return false;
        }
        if (in_list && (i > 0 || out->in_list))
            return false; /* an $in is a lookup only alone */
        if (out->in_list)
            return false;
        out->terms[i].key = k;
        out->in_list = in_list;
        out->list_len = list_len;
        out->nterms++;
    }
    return out->nterms > 0;
}

/* The document under key in doc[0..len), or false. */
static bool sub_document(const uint8_t *doc, uint32_t len, const char *key, const uint8_t **sub,
                         uint32_t *sub_len)
{
    bson_t b;
    bson_iter_t it;
    if (!doc || !bson_init_static(&b, doc, len) || !bson_iter_init_find(&it, &b, key) ||
        !BSON_ITER_HOLDS_DOCUMENT(&it))
        return false;
    bson_iter_document(&it, sub_len, sub);
    return true;
}

bool mt_shape_lookup(const mt_cmd_view_t *cmd, mt_shape_lookup_t *out)
{
    const uint8_t *doc = cmd->shape_doc;
    uint32_t len = cmd->shape_doc_len;

    memset(out, 0, sizeof(*out));
    switch (cmd->kind) {
    case MT_CMD_FIND:
        if (cmd->has_limit && cmd->limit != 0 && cmd->limit != 1)
            return false;
        break;
    case MT_CMD_COUNT:
    case MT_CMD_DISTINCT:
    case MT_CMD_FIND_AND_MODIFY:
        break;
    case MT_CMD_UPDATE:
    case MT_CMD_DELETE:
        if (!sub_document(doc, len, "q", &doc, &len))
            return false;
        break;
    case MT_CMD_AGGREGATE: {
        bson_t b;
        bson_iter_t it, stage;
        if (!doc || !cmd->shape_doc_is_array || !bson_init_static(&b, doc, len) ||
            !bson_iter_init(&it, &b) || !bson_iter_next(&it) || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
            !bson_iter_recurse(&it, &stage) || !bson_iter_next(&stage) ||
            strcmp(bson_iter_key(&stage), "$match") != 0 || !BSON_ITER_HOLDS_DOCUMENT(&stage))
            return false;
        bson_iter_t match = stage;
        if (bson_iter_next(&stage))
            return false; /* a stage has one operator; anything else is not a plain $match */
        bson_iter_document(&match, &len, &doc);
        break;
    }
    default:
        return false;
    }
    return lookup_filter(doc, len, out);
}
