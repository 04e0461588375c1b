/*
 * command: reads what a request asks (name, namespace, where its shape comes
 * from, cursor and batch options, handshake metadata) and what a reply
 * answers (ok, error, cursor batch, n) in one pass over each top-level key.
 */
#include "command.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "bson.h"
#include "hash.h"
#include "utf8.h"

/* Lower-cased command names and their kinds. */
static const struct {
    const char *name;
    mt_cmd_kind_t kind;
} kinds[] = {
    {"find", MT_CMD_FIND},
    {"aggregate", MT_CMD_AGGREGATE},
    {"getmore", MT_CMD_GETMORE},
    {"insert", MT_CMD_INSERT},
    {"update", MT_CMD_UPDATE},
    {"delete", MT_CMD_DELETE},
    {"findandmodify", MT_CMD_FIND_AND_MODIFY},
    {"count", MT_CMD_COUNT},
    {"distinct", MT_CMD_DISTINCT},
    {"killcursors", MT_CMD_KILL_CURSORS},
    {"hello", MT_CMD_HELLO},
    {"ismaster", MT_CMD_HELLO},
    {"ping", MT_CMD_MONITORING},
    {"buildinfo", MT_CMD_MONITORING},
    {"getlasterror", MT_CMD_MONITORING},
    {"endsessions", MT_CMD_MONITORING},
    {"saslstart", MT_CMD_AUTH},
    {"saslcontinue", MT_CMD_AUTH},
    {"authenticate", MT_CMD_AUTH},
    {"getnonce", MT_CMD_AUTH},
};

static mt_cmd_kind_t kind_of(const char *name_lower)
{
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strcmp(kinds[i].name, name_lower) == 0)
            return kinds[i].kind;
    return MT_CMD_OTHER;
}

bool mt_cmd_is_monitoring(const char *name, bool has_topology_version)
{
    if (has_topology_version)
        return true;
    if (!name)
        return false;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (kinds[i].kind >= MT_CMD_HELLO && strcasecmp(kinds[i].name, name) == 0)
            return true;
    return false;
}

/* ---- reading as we validate ---------------------------------------------- */

/*
 * Each reader below walks its document once with the checking cursor
 * (bson.h): what it reads it checks as it reads it, and whatever it steps
 * over it hands to mt_bson_elem_check(), so that the document is validated
 * in the same pass (msg.c leaves the body to us, MT_MSG_DEFER_BODY). String
 * values are checked for UTF-8 only where a view hands one out (names,
 * $db, comment, handshake metadata, codeName, cursor ns): those are shown
 * or kept; the rest are never decoded.
 */
#define KEY_IS(e, lit)                                                                             \
    ((e)->key_len == sizeof(lit) - 1 && memcmp((e)->key, lit, sizeof(lit) - 1) == 0)

/* Levels a document nested under the body may still use: the body is depth 0. */
#define BELOW_BODY (MT_BSON_MAX_DEPTH)

static bool skip(const mt_bson_elem_t *e, unsigned depth)
{
    return mt_bson_elem_check(e, depth, MT_BSON_CHECK_STRUCTURE);
}

/* A string the view hands out: NULL when it is not a valid UTF-8 string;
 * *bad is set when it is a string but not valid UTF-8. */
static const char *shown_utf8(const mt_bson_elem_t *e, bool *bad)
{
    uint32_t len;
    const char *s = mt_bson_elem_utf8(e, &len);
    if (s && !mt_utf8_valid((const uint8_t *)s, len)) {
        *bad = true;
        return NULL;
    }
    return s;
}

/* Elements of an array (or document), each validated, and the first one
 * when it is a document. */
static bool count_elems(const mt_bson_elem_t *arr, unsigned depth, uint32_t *n,
                        const uint8_t **first_doc, uint32_t *first_len)
{
    mt_bson_iter_t it;
    mt_bson_elem_t e;
    mt_bson_step_t st;

    *n = 0;
    if (depth == 0 || !mt_bson_iter_init(&it, arr->value, arr->value_len))
        return false;
    while ((st = mt_bson_iter_next(&it, &e)) == MT_BSON_ELEM) {
        if (!skip(&e, depth - 1))
            return false;
        if (*n == 0 && first_doc && e.type == BSON_TYPE_DOCUMENT) {
            *first_doc = e.value;
            *first_len = e.value_len;
        }
        (*n)++;
    }
    return st == MT_BSON_END;
}

/* Returned documents, counted by their framing alone (each element's type
 * and length, checked by the cursor): accounting never reads inside them,
 * and a detector that reads one kept as evidence checks it whole first
 * (stats/detect/evidence.c). A 100-document reply is most of a find's bytes. */
static bool count_docs(const mt_bson_elem_t *arr, uint32_t *n)
{
    mt_bson_iter_t it;
    mt_bson_elem_t e;
    mt_bson_step_t st;

    *n = 0;
    if (!mt_bson_iter_init(&it, arr->value, arr->value_len))
        return false;
    while ((st = mt_bson_iter_next(&it, &e)) == MT_BSON_ELEM)
        (*n)++;
    return st == MT_BSON_END;
}

/* The string at a.b in a document already validated, or NULL. */
static const char *utf8_at(const uint8_t *doc, uint32_t len, const char *a, const char *b,
                           bool *bad)
{
    mt_bson_elem_t sub, leaf;
    if (!mt_bson_find(doc, len, a, &sub) || sub.type != BSON_TYPE_DOCUMENT ||
        !mt_bson_find(sub.value, sub.value_len, b, &leaf))
        return NULL;
    return shown_utf8(&leaf, bad);
}

static bool read_client(const mt_bson_elem_t *client, unsigned depth, mt_cmd_view_t *out)
{
    bool bad = false;
    if (!skip(client, depth))
        return false;
    if (client->type != BSON_TYPE_DOCUMENT)
        return true;
    const uint8_t *d = client->value;
    uint32_t n = client->value_len;
    out->app_name = utf8_at(d, n, "application", "name", &bad);
    out->driver_name = utf8_at(d, n, "driver", "name", &bad);
    out->driver_version = utf8_at(d, n, "driver", "version", &bad);
    return !bad;
}

/* Copies at most cap - 1 bytes of src (cut as mt_cmd_name_len() does) into
 * dst; returns dst. */
static const char *copy_capped(char *dst, size_t cap, const char *src, bool *cut)
{
    size_t n = mt_cmd_name_len(src, cap - 1, cut);
    memcpy(dst, src, n);
    dst[n] = '\0';
    return dst;
}

static void copy_name(char *dst, const char *src, bool *cut)
{
    copy_capped(dst, MT_CMD_NAME_MAX, src, cut);
}

/* db and collection within MongoDB's limits: a name on the wire is as long
 * as its message, and every copy stats keeps of it would be too. */
static void cap_names(mt_cmd_view_t *out)
{
    bool cut = false;
    size_t dlen = mt_cmd_name_len(out->db, MT_CMD_DB_MAX, &cut);
    if (cut)
        out->db = copy_capped(out->db_buf, sizeof(out->db_buf), out->db, NULL);
    size_t room = MT_CMD_NS_MAX - (dlen ? dlen + 1 : 0);
    bool ccut = false;
    mt_cmd_name_len(out->collection, room, &ccut);
    if (ccut)
        out->collection = copy_capped(out->coll_buf, room + 1, out->collection, NULL);
    out->names_truncated |= cut || ccut;
}

/* ---- requests ----------------------------------------------------------- */

/* The parts of a read that make it the same question again. */
static bool query_part(const mt_bson_elem_t *e)
{
    switch (e->key[0]) {
    case 'f':
        return KEY_IS(e, "filter");
    case 'p':
        return KEY_IS(e, "pipeline") || KEY_IS(e, "projection");
    case 'q':
        return KEY_IS(e, "query");
    case 'k':
        return KEY_IS(e, "key");
    case 's':
        return KEY_IS(e, "sort") || KEY_IS(e, "skip");
    case 'l':
        return KEY_IS(e, "limit");
    }
    return false;
}

static void command_name(mt_cmd_view_t *out, const mt_bson_elem_t *e)
{
    copy_name(out->name, e->key, &out->names_truncated);
    size_t i = 0;
    for (; out->name[i]; i++) {
        char c = out->name[i];
        out->name_lower[i] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    }
    out->name_lower[i] = '\0';
    out->kind = kind_of(out->name_lower);
}

/* Where the shape comes from, by kind: the key holding it and whether it is
 * an array. */
static bool is_shape_key(mt_cmd_kind_t k, const mt_bson_elem_t *e)
{
    switch (k) {
    case MT_CMD_FIND:
        return e->type == BSON_TYPE_DOCUMENT && KEY_IS(e, "filter");
    case MT_CMD_COUNT:
    case MT_CMD_DISTINCT:
    case MT_CMD_FIND_AND_MODIFY:
        return e->type == BSON_TYPE_DOCUMENT && KEY_IS(e, "query");
    case MT_CMD_AGGREGATE:
        return e->type == BSON_TYPE_ARRAY && KEY_IS(e, "pipeline");
    default:
        return false;
    }
}

/*
 * One pass over the command document doc[0..len) (nested at most depth
 * levels below it): the first key names it, the others are read or stepped
 * over, and every element is validated on the way. The shape document is
 * hashed (mt_shape_hash_doc) as it is validated, and the parts of a read
 * that make a question are hashed into *query.
 */
static mt_msg_err_t read_command(mt_cmd_view_t *out, const uint8_t *doc, uint32_t len,
                                 unsigned depth, mt_shape_hasher_t *shape, uint64_t *query)
{
    const mt_shape_opts_t *opts = shape->opts;
    mt_bson_iter_t it;
    mt_bson_elem_t e;
    mt_bson_step_t st;
    bool first = true, bad = false;

    if (depth == 0 || !mt_bson_iter_init(&it, doc, len))
        return MT_MSG_ERR_BSON;
    while ((st = mt_bson_iter_next(&it, &e)) == MT_BSON_ELEM) {
        mt_cmd_kind_t k = out->kind;
        bool ok = true, checked = false; /* checked: e's contents were validated here */
        if (query_part(&e)) {
            *query = mt_hash_str(*query, e.key);
            *query = mt_hash_bytes(*query, e.value, e.value_len);
        }
        if (first) {
            first = false;
            command_name(out, &e);
            const char *coll = shown_utf8(&e, &bad);
            if (coll)
                out->collection = coll;
            if (out->kind == MT_CMD_GETMORE && mt_bson_elem_is_number(&e))
                out->cursor_id = mt_bson_elem_int64(&e, NULL);
        } else if (is_shape_key(k, &e)) {
            /* a repeated key: the last one is the shape, as it is rendered */
            mt_shape_hasher_init(shape, opts);
            ok = mt_shape_hash_doc(shape, e.value, e.value_len, e.type == BSON_TYPE_ARRAY,
                                   depth - 1);
            checked = true;
            out->shape_doc = e.value;
            out->shape_doc_len = e.value_len;
        } else if (KEY_IS(&e, "$db")) {
            const char *db = shown_utf8(&e, &bad);
            if (db)
                out->db = db;
        } else if (KEY_IS(&e, "collection")) {
            const char *coll = k == MT_CMD_GETMORE ? shown_utf8(&e, &bad) : NULL;
            if (coll)
                out->collection = coll;
        } else if ((KEY_IS(&e, "documents") && k == MT_CMD_INSERT) ||
                   (KEY_IS(&e, "updates") && k == MT_CMD_UPDATE) ||
                   (KEY_IS(&e, "deletes") && k == MT_CMD_DELETE)) {
            if (e.type == BSON_TYPE_ARRAY) {
                uint32_t n;
                ok = count_elems(&e, depth, &n, k == MT_CMD_INSERT ? NULL : &out->shape_doc,
                                 &out->shape_doc_len);
                checked = true;
                out->statements += n;
            }
        } else if (KEY_IS(&e, "limit")) {
            if (mt_bson_elem_is_number(&e)) {
                out->has_limit = true;
                out->limit = mt_bson_elem_int64(&e, NULL);
            }
        } else if (KEY_IS(&e, "singleBatch")) {
            if (e.type == BSON_TYPE_BOOL)
                out->single_batch = e.value[0] != 0;
        } else if (KEY_IS(&e, "batchSize")) {
            if (mt_bson_elem_is_number(&e)) {
                out->has_batch_size = true;
                out->batch_size = mt_bson_elem_int64(&e, NULL);
            }
        } else if (KEY_IS(&e, "cursor")) {
            mt_bson_elem_t bs;
            ok = checked = skip(&e, depth);
            if (ok && k == MT_CMD_AGGREGATE && e.type == BSON_TYPE_DOCUMENT &&
                mt_bson_find(e.value, e.value_len, "batchSize", &bs) &&
                mt_bson_elem_is_number(&bs)) {
                out->has_batch_size = true;
                out->batch_size = mt_bson_elem_int64(&bs, NULL);
            }
        } else if (KEY_IS(&e, "comment")) {
            out->comment = shown_utf8(&e, &bad);
        } else if (KEY_IS(&e, "cursors")) {
            mt_bson_iter_t c;
            mt_bson_elem_t id;
            ok = checked = skip(&e, depth);
            if (ok && k == MT_CMD_KILL_CURSORS && e.type == BSON_TYPE_ARRAY &&
                mt_bson_iter_init(&c, e.value, e.value_len) &&
                mt_bson_iter_next(&c, &id) == MT_BSON_ELEM && mt_bson_elem_is_number(&id))
                out->cursor_id = mt_bson_elem_int64(&id, NULL);
        } else if (KEY_IS(&e, "client")) {
            ok = read_client(&e, depth, out);
            checked = true;
        } else if (KEY_IS(&e, "topologyVersion")) {
            out->has_topology_version = true;
        }
        if (ok && !checked)
            ok = skip(&e, depth);
        if (!ok || bad)
            return MT_MSG_ERR_BSON;
    }
    return st == MT_BSON_END ? MT_MSG_OK : MT_MSG_ERR_BSON;
}

/* Kind-1 sections: insert documents, update/delete statements. */
static void read_sequences(const mt_msg_t *msg, mt_cmd_view_t *out)
{
    for (size_t i = 0; i < msg->nseqs; i++) {
        const mt_msg_sequence_t *seq = &msg->seqs[i];
        const char *want = out->kind == MT_CMD_INSERT   ? "documents"
                           : out->kind == MT_CMD_UPDATE ? "updates"
                           : out->kind == MT_CMD_DELETE ? "deletes"
                                                        : NULL;
        if (!want || strcmp(seq->identifier, want) != 0)
            continue;
        out->statements += seq->count;
        if (out->kind != MT_CMD_INSERT && !out->shape_doc && seq->count > 0) {
            /* documents were validated by mt_msg_parse: the length prefix is sound */
            const uint8_t *d = seq->docs;
            out->shape_doc = d;
            out->shape_doc_len = mt_wire_le32(d);
        }
    }
}

static mt_cmd_shape_src_t shape_src_of(mt_cmd_kind_t kind)
{
    switch (kind) {
    case MT_CMD_FIND:
    case MT_CMD_COUNT:
    case MT_CMD_DISTINCT:
    case MT_CMD_FIND_AND_MODIFY:
        return MT_CMD_SHAPE_FILTER;
    case MT_CMD_AGGREGATE:
        return MT_CMD_SHAPE_PIPELINE;
    case MT_CMD_UPDATE:
        return MT_CMD_SHAPE_UPDATES;
    case MT_CMD_DELETE:
        return MT_CMD_SHAPE_DELETES;
    default:
        return MT_CMD_SHAPE_NONE;
    }
}

/* A top-level key whose value is a document ("$query" wrapping), in a
 * document already validated. */
static bool find_subdoc(const uint8_t *doc, uint32_t len, const char *key, const uint8_t **data,
                        uint32_t *sub_len)
{
    mt_bson_elem_t e;
    if (mt_bson_find(doc, len, key, &e) && e.type == BSON_TYPE_DOCUMENT) {
        *data = e.value;
        *sub_len = e.value_len;
        return true;
    }
    return false;
}

/*
 * A legacy OP_QUERY on a collection (not "db.$cmd") is a find: its query,
 * or the "$query"/"query" inside it, is the filter; numberToReturn < 0 or 1
 * is a limit, larger values are a batch size. The query was validated whole
 * (a legacy find is rare: it is read twice).
 */
static mt_msg_err_t read_legacy_find(const mt_msg_t *msg, const char *coll,
                                     mt_shape_hasher_t *shape, mt_cmd_view_t *out)
{
    const uint8_t *f = NULL, *doc = msg->body;
    uint32_t flen = 0, len = (uint32_t)msg->body_len;
    mt_bson_elem_t e;
    bool bad = false;

    copy_name(out->name, "find", NULL);
    copy_name(out->name_lower, "find", NULL);
    out->kind = MT_CMD_FIND;
    out->collection = coll;
    if (find_subdoc(doc, len, "$query", &f, &flen) || find_subdoc(doc, len, "query", &f, &flen)) {
        out->shape_doc = f;
        out->shape_doc_len = flen;
    } else {
        out->shape_doc = doc;
        out->shape_doc_len = len;
    }
    if (!mt_shape_hash_doc(shape, out->shape_doc, out->shape_doc_len, false, MT_BSON_MAX_DEPTH))
        return MT_MSG_ERR_BSON;
    if (mt_bson_find(doc, len, "$comment", &e))
        out->comment = shown_utf8(&e, &bad);
    if (bad)
        return MT_MSG_ERR_BSON;

    int32_t ntr = msg->number_to_return;
    if (ntr < 0) {
        out->has_limit = true;
        out->limit = -(int64_t)ntr;
        out->single_batch = true;
    } else if (ntr == 1) {
        out->has_limit = true;
        out->limit = 1;
    } else if (ntr > 1) {
        out->has_batch_size = true;
        out->batch_size = ntr;
    }
    return MT_MSG_OK;
}

mt_msg_err_t mt_cmd_request(const mt_msg_t *msg, const mt_shape_opts_t *shape_opts,
                            mt_cmd_view_t *out)
{
    const uint8_t *doc = msg->body;
    uint32_t doc_len = (uint32_t)msg->body_len;
    const char *legacy_coll = NULL;
    mt_shape_hasher_t shape;
    uint64_t query = MT_HASH_SEED;
    mt_msg_err_t err;

    /* the buffers at the end are written before they are read */
    memset(out, 0, offsetof(mt_cmd_view_t, name));
    out->name[0] = out->name_lower[0] = '\0';
    out->request_id = msg->hdr.request_id;
    out->opcode = msg->opcode;
    out->compressor = msg->compressor;
    out->partial = msg->partial;
    out->db = "";
    out->collection = "";
    mt_shape_hasher_init(&shape, shape_opts);

    if (msg->opcode == MT_OP_MSG) {
        out->more_to_come = (msg->flags & MT_MSG_FLAG_MORE_TO_COME) != 0;
        out->exhaust_allowed = (msg->flags & MT_MSG_FLAG_EXHAUST_ALLOWED) != 0;
    } else if (msg->opcode == MT_OP_QUERY) {
        out->exhaust_allowed = (msg->query_flags & MT_MSG_QUERY_FLAG_EXHAUST) != 0;
        const char *ns = msg->full_collection ? msg->full_collection : "";
        if (!mt_utf8_valid((const uint8_t *)ns, strlen(ns)))
            return MT_MSG_ERR_BSON; /* the database is shown */
        const char *dot = strchr(ns, '.');
        size_t dlen = dot ? (size_t)(dot - ns) : strlen(ns);
        if (dlen > MT_CMD_DB_MAX) {
            dlen = mt_cmd_name_len(ns, MT_CMD_DB_MAX, NULL);
            out->names_truncated = true;
        }
        memcpy(out->db_buf, ns, dlen);
        out->db_buf[dlen] = '\0';
        out->db = out->db_buf;
        if (!dot || strcmp(dot + 1, "$cmd") != 0)
            legacy_coll = dot ? dot + 1 : "";
    } else {
        return MT_MSG_ERR_OPCODE;
    }
    if (!doc && msg->partial)
        return MT_MSG_ERR_SKIPPED;
    if (!doc || doc_len < 5)
        return MT_MSG_ERR_SECTION;
    if (!bson_init_static(&out->body, doc, doc_len))
        return MT_MSG_ERR_BSON;

    if (msg->opcode == MT_OP_QUERY) {
        /* legacy queries are read in more than one pass: validate first */
        if (!mt_bson_validate(doc, doc_len, MT_BSON_MAX_DEPTH, MT_BSON_CHECK_STRUCTURE))
            return MT_MSG_ERR_BSON;
    }
    if (legacy_coll) {
        if ((err = read_legacy_find(msg, legacy_coll, &shape, out)) != MT_MSG_OK)
            return err;
        out->shape_src = MT_CMD_SHAPE_FILTER;
        out->shape_id = mt_shape_id(&shape, out);
        out->query_hash = mt_hash_finish(query);
        cap_names(out);
        return MT_MSG_OK;
    }
    unsigned depth = MT_BSON_MAX_DEPTH;
    if (msg->opcode == MT_OP_QUERY) {
        /* Wrapped command: {$query: {<command>}, $readPreference: ...} */
        const uint8_t *inner;
        uint32_t inner_len;
        if (find_subdoc(doc, doc_len, "$query", &inner, &inner_len)) {
            if (!bson_init_static(&out->body, inner, inner_len))
                return MT_MSG_ERR_BSON;
            doc = inner;
            doc_len = inner_len;
            depth--;
        }
    }
    if (doc_len == 5)
        return MT_MSG_ERR_SECTION; /* no command name */

    if ((err = read_command(out, doc, doc_len, depth, &shape, &query)) != MT_MSG_OK)
        return err;
    cap_names(out);
    read_sequences(msg, out);
    out->shape_src = shape_src_of(out->kind);
    out->shape_doc_is_array = out->shape_doc && out->shape_src == MT_CMD_SHAPE_PIPELINE;
    if (out->shape_src == MT_CMD_SHAPE_UPDATES || out->shape_src == MT_CMD_SHAPE_DELETES) {
        mt_shape_hasher_init(&shape, shape_opts);
        if (out->shape_doc && !mt_shape_hash_statement(&shape, out))
            return MT_MSG_ERR_BSON;
    }
    if (!out->shape_doc || out->shape_src == MT_CMD_SHAPE_NONE) {
        mt_shape_hasher_init(&shape, shape_opts);
        mt_shape_hash_empty(&shape);
    }
    out->shape_id = mt_shape_id(&shape, out);
    out->query_hash = mt_hash_finish(query);
    /* same answer as mt_cmd_is_monitoring(), without matching the name again */
    out->monitoring = out->has_topology_version || out->kind >= MT_CMD_HELLO;
    return MT_MSG_OK;
}

/* ---- replies ------------------------------------------------------------ */

static const uint8_t empty_doc[5] = {5, 0, 0, 0, 0};

static double elem_double(const mt_bson_elem_t *e)
{
    if (e->type == BSON_TYPE_DOUBLE) {
        double d;
        uint64_t u = (uint64_t)mt_wire_le32(e->value) | (uint64_t)mt_wire_le32(e->value + 4) << 32;
        memcpy(&d, &u, sizeof d);
        return d;
    }
    return (double)mt_bson_elem_int64(e, NULL);
}

static int32_t elem_i32(const mt_bson_elem_t *e)
{
    int64_t v = mt_bson_elem_int64(e, NULL);
    if (v > INT32_MAX)
        return INT32_MAX;
    if (v < INT32_MIN)
        return INT32_MIN;
    return (int32_t)v;
}

/* cursor: {id, ns, firstBatch | nextBatch}, held by the reply document
 * (depth: levels below it). */
static bool read_cursor(const mt_bson_elem_t *cursor, unsigned depth, mt_reply_view_t *out)
{
    mt_bson_iter_t it;
    mt_bson_elem_t e;
    mt_bson_step_t st;
    bool bad = false;

    if (depth == 0 || !mt_bson_iter_init(&it, cursor->value, cursor->value_len))
        return false;
    depth--;
    out->has_cursor = true;
    while ((st = mt_bson_iter_next(&it, &e)) == MT_BSON_ELEM) {
        bool ok;
        if (KEY_IS(&e, "id") && mt_bson_elem_is_number(&e)) {
            out->cursor_id = mt_bson_elem_int64(&e, NULL);
            ok = true;
        } else if (KEY_IS(&e, "ns")) {
            out->ns = shown_utf8(&e, &bad);
            ok = skip(&e, depth);
        } else if ((KEY_IS(&e, "firstBatch") || KEY_IS(&e, "nextBatch")) &&
                   e.type == BSON_TYPE_ARRAY) {
            uint32_t n;
            out->batch = e.value;
            out->batch_len = e.value_len;
            ok = count_docs(&e, &n);
            out->docs = (int32_t)n;
        } else {
            ok = skip(&e, depth);
        }
        if (!ok || bad)
            return false;
    }
    return st == MT_BSON_END;
}

mt_msg_err_t mt_cmd_reply(const mt_msg_t *msg, mt_reply_view_t *out)
{
    memset(out, 0, sizeof(*out));
    out->request_id = msg->hdr.request_id;
    out->response_to = msg->hdr.response_to;
    out->opcode = msg->opcode;
    out->compressor = msg->compressor;
    out->partial = msg->partial;

    const uint8_t *doc = msg->body;
    uint32_t doc_len = (uint32_t)msg->body_len;
    if (!doc && msg->partial) {
        /* the ids and moreToCome are known, nothing of the answer */
        out->unread = true;
        out->more_to_come =
            msg->opcode == MT_OP_MSG && (msg->flags & MT_MSG_FLAG_MORE_TO_COME) != 0;
        bson_init_static(&out->body, empty_doc, sizeof(empty_doc));
        return MT_MSG_ERR_SKIPPED;
    }
    if (msg->opcode == MT_OP_MSG) {
        out->more_to_come = (msg->flags & MT_MSG_FLAG_MORE_TO_COME) != 0;
        if (!doc)
            return MT_MSG_ERR_SECTION;
    } else if (msg->opcode == MT_OP_REPLY) {
        out->response_flags = msg->response_flags;
        out->cursor_id = msg->cursor_id;
        if (!doc) {
            doc = empty_doc;
            doc_len = sizeof(empty_doc);
        }
    } else {
        return MT_MSG_ERR_OPCODE;
    }
    if (!bson_init_static(&out->body, doc, doc_len))
        return MT_MSG_ERR_BSON;

    /* one pass: read and validated together (the body was left to us) */
    bool has_ok = false, bad = false;
    unsigned depth = MT_BSON_MAX_DEPTH;
    mt_bson_iter_t it;
    mt_bson_elem_t e;
    mt_bson_step_t st;
    if (!mt_bson_iter_init(&it, doc, doc_len))
        return MT_MSG_ERR_BSON;
    while ((st = mt_bson_iter_next(&it, &e)) == MT_BSON_ELEM) {
        bool ok = true, checked = false;
        if (KEY_IS(&e, "ok")) {
            has_ok = true;
            if (mt_bson_elem_is_number(&e))
                out->ok = elem_double(&e) == 1.0;
            else if (e.type == BSON_TYPE_BOOL)
                out->ok = e.value[0] != 0;
        } else if (KEY_IS(&e, "code")) {
            if (mt_bson_elem_is_number(&e))
                out->code = elem_i32(&e);
        } else if (KEY_IS(&e, "codeName")) {
            out->code_name = shown_utf8(&e, &bad);
        } else if (KEY_IS(&e, "cursor") && e.type == BSON_TYPE_DOCUMENT) {
            ok = read_cursor(&e, depth, out);
            checked = true;
        } else if (KEY_IS(&e, "n")) {
            if (mt_bson_elem_is_number(&e)) {
                out->has_n = true;
                out->n = mt_bson_elem_int64(&e, NULL);
            }
        } else if (KEY_IS(&e, "writeErrors") && e.type == BSON_TYPE_ARRAY) {
            uint32_t n;
            ok = count_elems(&e, depth, &n, NULL, NULL);
            checked = true;
            out->write_errors = (int32_t)n;
        }
        if (ok && !checked)
            ok = skip(&e, depth);
        if (!ok || bad)
            return MT_MSG_ERR_BSON;
    }
    if (st != MT_BSON_END)
        return MT_MSG_ERR_BSON;

    if (msg->opcode == MT_OP_REPLY) {
        /* Legacy query results carry documents, not a command reply: no "ok"
         * there means success unless the flags say otherwise. */
        bool failed = (msg->response_flags &
                       (MT_MSG_REPLY_FLAG_QUERY_FAILURE | MT_MSG_REPLY_FLAG_CURSOR_NOT_FOUND)) != 0;
        out->ok = !failed && (!has_ok || out->ok);
        if (!out->has_cursor)
            out->docs = msg->number_returned;
    }
    return MT_MSG_OK;
}
