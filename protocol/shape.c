/*
 * shape: renders a filter, pipeline or update with every literal replaced by
 * "?" as compact JSON into a fixed buffer (cut with "..." when full), and
 * recognises single-key lookups, the children of an N+1 pattern.
 */
#include "shape.h"

#include <string.h>

#include "bson.h"
#include "hash.h"
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

static bool collapses(const char *key, uint32_t len)
{
    return (len == 3 && memcmp(key, "$in", 3) == 0) || (len == 4 && memcmp(key, "$nin", 4) == 0) ||
           (len == 4 && memcmp(key, "$all", 4) == 0);
}

static void render_iter(writer_t *w, const uint8_t *doc, uint32_t len, bool is_array, int depth);

static void render_value(writer_t *w, const mt_bson_elem_t *e, bool in_doc, int depth)
{
    /* validated documents never get here; others are cut short, still JSON */
    if (depth >= MT_MSG_MAX_DEPTH && mt_bson_is_container(e->type))
        PUT_LIT(w, "\"?\"");
    else if (e->type == BSON_TYPE_DOCUMENT)
        render_iter(w, e->value, e->value_len, false, depth + 1);
    else if (e->type == BSON_TYPE_ARRAY && in_doc && collapses(e->key, e->key_len))
        PUT_LIT(w, "[\"?\"]");
    else if (e->type == BSON_TYPE_ARRAY)
        render_iter(w, e->value, e->value_len, true, depth + 1);
    else
        PUT_LIT(w, "\"?\"");
}

/* Documents keep their keys in order, arrays their elements; DBRefs
 * ({"$ref", "$id"}) are documents like any other. A document that is not
 * well-formed renders as far as it is. */
static void render_iter(writer_t *w, const uint8_t *doc, uint32_t len, bool is_array, int depth)
{
    mt_bson_iter_t it;
    mt_bson_elem_t e;
    bool first = true;

    if (!mt_bson_iter_init(&it, doc, len)) {
        put(w, is_array ? "[]" : "{}", 2);
        return;
    }
    put(w, is_array ? "[" : "{", 1);
    while (!w->full && mt_bson_iter_next(&it, &e) == MT_BSON_ELEM) {
        if (!first)
            PUT_LIT(w, ", ");
        first = false;
        if (!is_array) {
            if (mt_shape_redacts(w->opts, e.key))
                PUT_LIT(w, "\"?\"");
            else
                put_key(w, e.key, e.key_len);
            PUT_LIT(w, ": ");
        }
        render_value(w, &e, !is_array, depth);
    }
    put(w, is_array ? "]" : "}", 1);
}

bool mt_shape_redacts(const mt_shape_opts_t *opts, const char *name)
{
    return opts && opts->redact && name[0] != '$' && opts->redact(opts->redact_data, name);
}

size_t mt_shape_render(const uint8_t *doc, uint32_t len, bool is_array, char *out, size_t cap,
                       const mt_shape_opts_t *opts)
{
    writer_t w = {out, cap, 0, false, opts};
    render_iter(&w, doc, len, is_array, 0);
    return finish(&w);
}

/* The q and u of an update or delete statement (NULL when absent). */
static void statement_parts(const mt_cmd_view_t *cmd, mt_bson_elem_t *q, mt_bson_elem_t *u)
{
    mt_bson_iter_t it;
    mt_bson_elem_t e;

    q->value = u->value = NULL;
    if (!mt_bson_iter_init(&it, cmd->shape_doc, cmd->shape_doc_len))
        return;
    while (mt_bson_iter_next(&it, &e) == MT_BSON_ELEM) {
        if (e.key_len != 1)
            continue;
        if (e.key[0] == 'q' && e.type == BSON_TYPE_DOCUMENT)
            *q = e;
        else if (e.key[0] == 'u' && mt_bson_is_container(e.type))
            *u = e;
    }
}

/* {"q": <shape>, "u": <shape>} of an update statement, {"q": <shape>} of a
 * delete statement. */
static void render_statement(writer_t *w, const mt_cmd_view_t *cmd)
{
    mt_bson_elem_t q, u;

    statement_parts(cmd, &q, &u);
    PUT_LIT(w, "{\"q\": ");
    render_iter(w, q.value, q.value ? q.value_len : 0, false, 0);
    if (cmd->shape_src == MT_CMD_SHAPE_UPDATES) {
        PUT_LIT(w, ", \"u\": ");
        render_iter(w, u.value, u.value ? u.value_len : 0, u.value && u.type == BSON_TYPE_ARRAY, 0);
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
            render_iter(&w, cmd->shape_doc, cmd->shape_doc_len, cmd->shape_doc_is_array, 0);
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

/* ---- structural hash ------------------------------------------------------ */

/*
 * The hash follows the tokens the text is made of, so that two shapes hash
 * equally exactly when their texts are equal: '{' '}' '[' ']' brackets, a
 * key (its bytes, or "?" when redacted, as the text shows it), '?' for a
 * literal; a collapsed $in/$nin/$all array is the tokens of ["?"], as it is
 * written. Alongside it counts the
 * characters the text would take, so that a shape too long to be kept whole
 * is told (its cut text is then the key, see mt_shape_id()).
 */
#define TOKEN_PRIME UINT64_C(0x100000001b3)

static inline void tok(mt_shape_hasher_t *hs, uint8_t t, size_t chars)
{
    hs->h = (hs->h ^ t) * TOKEN_PRIME;
    hs->len += chars;
}

/* Characters put_key() writes for a key: quotes, escapes, ": ". */
static size_t key_chars(const char *key, uint32_t n)
{
    size_t chars = n + 4;
    for (uint32_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c == '"' || c == '\\')
            chars += 1;
        else if (c < 0x20)
            chars += 5;
    }
    return chars;
}

static void tok_key(mt_shape_hasher_t *hs, const char *key, uint32_t n)
{
    if (mt_shape_redacts(hs->opts, key)) {
        key = "?";
        n = 1;
    }
    uint64_t h = (hs->h ^ 'K') * TOKEN_PRIME;
    for (uint32_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)key[i]) * TOKEN_PRIME;
    hs->h = (h ^ 0xFF) * TOKEN_PRIME; /* ends the key: ("ab", "c") differs from ("a", "bc") */
    hs->len += key_chars(key, n);
}

void mt_shape_hasher_init(mt_shape_hasher_t *hs, const mt_shape_opts_t *opts)
{
    hs->h = MT_HASH_SEED;
    hs->len = 0;
    hs->opts = opts;
}

bool mt_shape_hash_doc(mt_shape_hasher_t *hs, const uint8_t *doc, uint32_t len, bool is_array,
                       unsigned max_depth)
{
    mt_bson_iter_t it;
    mt_bson_elem_t e;
    mt_bson_step_t st;
    bool first = true;

    if (!mt_bson_iter_init(&it, doc, len))
        return false;
    tok(hs, is_array ? '[' : '{', 1);
    while ((st = mt_bson_iter_next(&it, &e)) == MT_BSON_ELEM) {
        if (!first)
            hs->len += 2; /* ", " */
        first = false;
        if (!is_array)
            tok_key(hs, e.key, e.key_len);
        if (!mt_bson_is_container(e.type)) {
            tok(hs, '?', 3);
            /* a code-with-scope's scope is validated all the same */
            if (!mt_bson_elem_check(&e, max_depth, MT_BSON_CHECK_STRUCTURE))
                return false;
        } else if (max_depth == 0) {
            return false; /* nested deeper than allowed */
        } else if (e.type == BSON_TYPE_ARRAY && !is_array && collapses(e.key, e.key_len)) {
            /* the tokens of its text, ["?"] */
            tok(hs, '[', 1);
            tok(hs, '?', 3);
            tok(hs, ']', 1);
            if (!mt_bson_validate(e.value, e.value_len, max_depth - 1, MT_BSON_CHECK_STRUCTURE))
                return false;
        } else if (!mt_shape_hash_doc(hs, e.value, e.value_len, e.type == BSON_TYPE_ARRAY,
                                      max_depth - 1)) {
            return false;
        }
    }
    tok(hs, is_array ? ']' : '}', 1);
    return st == MT_BSON_END;
}

void mt_shape_hash_empty(mt_shape_hasher_t *hs)
{
    tok(hs, '{', 1);
    tok(hs, '}', 1);
}

bool mt_shape_hash_statement(mt_shape_hasher_t *hs, const mt_cmd_view_t *cmd)
{
    mt_bson_elem_t q, u;
    bool ok = true;

    statement_parts(cmd, &q, &u);
    tok(hs, '{', 1);
    tok_key(hs, "q", 1);
    if (q.value)
        ok = mt_shape_hash_doc(hs, q.value, q.value_len, false, MT_BSON_MAX_DEPTH);
    else
        mt_shape_hash_empty(hs);
    if (cmd->shape_src == MT_CMD_SHAPE_UPDATES) {
        hs->len += 2;
        tok_key(hs, "u", 1);
        if (u.value)
            ok = ok && mt_shape_hash_doc(hs, u.value, u.value_len, u.type == BSON_TYPE_ARRAY,
                                         MT_BSON_MAX_DEPTH);
        else
            mt_shape_hash_empty(hs);
    }
    tok(hs, '}', 1);
    return ok;
}

uint64_t mt_shape_id(const mt_shape_hasher_t *hs, const mt_cmd_view_t *cmd)
{
    char text[MT_SHAPE_MAX];

    if (hs->len < MT_SHAPE_MAX)
        return mt_hash_finish(hs->h);
    /* cut: shapes that differ only past the cut share their text, and so
     * their entry, as they always have */
    size_t n = mt_shape_of_command(cmd, text, sizeof(text), hs->opts);
    return mt_hash_finish(mt_hash_bytes(UINT64_C(0x9e3779b97f4a7c15), text, n));
}

/* ---- lookups ------------------------------------------------------------- */

/* An equality operand: a plain value, not a document, array or regex. */
static bool is_literal(uint8_t type)
{
    return type != BSON_TYPE_DOCUMENT && type != BSON_TYPE_ARRAY && type != BSON_TYPE_REGEX;
}

/* {"$eq": v} puts v in *value; {"$in": [literals]} the array. */
static bool single_operator(const mt_bson_elem_t *opdoc, mt_bson_elem_t *value, bool *in_list,
                            uint32_t *list_len)
{
    mt_bson_iter_t it, elems;
    mt_bson_elem_t op, extra, el;

    if (!mt_bson_iter_init(&it, opdoc->value, opdoc->value_len) ||
        mt_bson_iter_next(&it, &op) != MT_BSON_ELEM)
        return false;
    if (mt_bson_iter_next(&it, &extra) != MT_BSON_END)
        return false; /* more than one operator */
    if (op.key_len == 3 && memcmp(op.key, "$eq", 3) == 0 && is_literal(op.type)) {
        *value = op;
        return true;
    }
    if (op.key_len != 3 || memcmp(op.key, "$in", 3) != 0 || op.type != BSON_TYPE_ARRAY ||
        !mt_bson_iter_init(&elems, op.value, op.value_len))
        return false;
    uint32_t n = 0;
    mt_bson_step_t st;
    while ((st = mt_bson_iter_next(&elems, &el)) == MT_BSON_ELEM) {
        if (!is_literal(el.type))
            return false;
        n++;
    }
    if (n == 0 || st != MT_BSON_END)
        return false;
    *value = op;
    *in_list = true;
    *list_len = n;
    return true;
}

static bool lookup_filter(const uint8_t *doc, uint32_t len, mt_shape_lookup_t *out)
{
    mt_bson_iter_t it;
    mt_bson_elem_t e;
    mt_bson_step_t st;

    if (!doc || !mt_bson_iter_init(&it, doc, len))
        return false;
    while ((st = mt_bson_iter_next(&it, &e)) == MT_BSON_ELEM) {
        bool in_list = false;
        uint32_t list_len = 0;
        size_t i = out->nterms;
        if (e.key[0] == '$' || e.key[0] == '\0' || i == MT_SHAPE_LOOKUP_TERMS)
            return false; /* $or, $expr, $where ... are not a field */
        if (e.type == BSON_TYPE_DOCUMENT) {
            if (!single_operator(&e, &out->terms[i].value, &in_list, &list_len))
                return false;
        } else if (is_literal(e.type)) {
            out->terms[i].value = e;
        } else {
            return false;
        }
        if (in_list && (i > 0 || out->in_list))
            return false; /* an $in is a lookup only alone */
        if (out->in_list)
            return false;
        out->terms[i].key = e.key;
        out->in_list = in_list;
        out->list_len = list_len;
        out->nterms++;
    }
    return st == MT_BSON_END && out->nterms > 0;
}

/* The only stage of a pipeline's first stage when it is {"$match": {...}}. */
static bool first_match(const uint8_t *pipeline, uint32_t len, mt_bson_elem_t *match)
{
    mt_bson_iter_t it, stage;
    mt_bson_elem_t first, extra;

    if (!mt_bson_iter_init(&it, pipeline, len) || mt_bson_iter_next(&it, &first) != MT_BSON_ELEM ||
        first.type != BSON_TYPE_DOCUMENT ||
        !mt_bson_iter_init(&stage, first.value, first.value_len) ||
        mt_bson_iter_next(&stage, match) != MT_BSON_ELEM || match->key_len != 6 ||
        memcmp(match->key, "$match", 6) != 0 || match->type != BSON_TYPE_DOCUMENT)
        return false;
    /* a stage has one operator; anything else is not a plain $match */
    return mt_bson_iter_next(&stage, &extra) == MT_BSON_END;
}

bool mt_shape_lookup(const mt_cmd_view_t *cmd, mt_shape_lookup_t *out)
{
    const uint8_t *doc = cmd->shape_doc;
    uint32_t len = cmd->shape_doc_len;
    mt_bson_elem_t sub;

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
        if (!doc || !mt_bson_find(doc, len, "q", &sub) || sub.type != BSON_TYPE_DOCUMENT)
            return false;
        doc = sub.value;
        len = sub.value_len;
        break;
    case MT_CMD_AGGREGATE:
        if (!doc || !cmd->shape_doc_is_array || !first_match(doc, len, &sub))
            return false;
        doc = sub.value;
        len = sub.value_len;
        break;
    default:
        return false;
    }
    return lookup_filter(doc, len, out);
}
