/*
 * command: reads what a request asks (name, namespace, where its shape comes
 * from, cursor and batch options, handshake metadata) and what a reply
 * answers (ok, error, cursor batch, n) in one pass over each top-level key.
 */
#include "command.h"

#include <string.h>
#include <strings.h>

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

/* ---- small BSON helpers ------------------------------------------------- */

static bool is_number(const bson_iter_t *it)
{
    bson_type_t t = bson_iter_type(it);
    return t == BSON_TYPE_INT32 || t == BSON_TYPE_INT64 || t == BSON_TYPE_DOUBLE;
}

/* Numeric value as int64; doubles out of range saturate instead of being UB. */
static int64_t as_i64(const bson_iter_t *it)
{
    switch (bson_iter_type(it)) {
    case BSON_TYPE_INT32:
        return bson_iter_int32(it);
    case BSON_TYPE_INT64:
        return bson_iter_int64(it);
    case BSON_TYPE_DOUBLE: {
        double d = bson_iter_double(it);
        if (!(d == d))
            return 0;
        if (d >= 9.2e18)
            return INT64_MAX;
        if (d <= -9.2e18)
            return INT64_MIN;
        return (int64_t)d;
    }
    case BSON_TYPE_BOOL:
        return bson_iter_bool(it);
    default:
        return 0;
    }
}

static int32_t as_i32(const bson_iter_t *it)
{
    int64_t v = as_i64(it);
    if (v > INT32_MAX)
        return INT32_MAX;
    if (v < INT32_MIN)
        return INT32_MIN;
    return (int32_t)v;
}

/* Raw bytes of the document or array under the iterator. */
static void sub_bytes(const bson_iter_t *it, const uint8_t **data, uint32_t *len)
{
    if (BSON_ITER_HOLDS_DOCUMENT(it))
        bson_iter_document(it, len, data);
    else
        bson_iter_array(it, len, data);
}

/* Elements of an array (or document), and the first one when it is a document. */
static uint32_t count_elems(const bson_iter_t *it, const uint8_t **first_doc, uint32_t *first_len)
{
    bson_iter_t child;
    uint32_t n = 0;
    if (!bson_iter_recurse(it, &child))
        return 0;
    while (bson_iter_next(&child)) {
        if (n == 0 && first_doc && BSON_ITER_HOLDS_DOCUMENT(&child))
            bson_iter_document(&child, first_len, first_doc);
        n++;
    }
    return n;
}

static const char *utf8_at(const bson_iter_t *parent, const char *path)
{
    bson_iter_t it;
    if (bson_iter_find_descendant((bson_iter_t *)parent, path, &it) && BSON_ITER_HOLDS_UTF8(&it))
        return bson_iter_utf8(&it, NULL);
    return NULL;
}

static void read_client(const bson_iter_t *client, mt_cmd_view_t *out)
{
    bson_iter_t it;
    if (!bson_iter_recurse(client, &it))
        return;
    bson_iter_t start = it;
    out->app_name = utf8_at(&start, "application.name");
    start = it;
    out->driver_name = utf8_at(&start, "driver.name");
    start = it;
    out->driver_version = utf8_at(&start, "driver.version");
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

/* One pass over the command's top-level keys; the first key names it. */
static void read_command(mt_cmd_view_t *out)
{
    bson_iter_t it;
    bool first = true;

    bson_iter_init(&it, &out->body);
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        if (first) {
            first = false;
            copy_name(out->name, key, &out->names_truncated);
            for (size_t i = 0; out->name[i]; i++) {
                char c = out->name[i];
                out->name_lower[i] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
            }
            out->kind = kind_of(out->name_lower);
            if (BSON_ITER_HOLDS_UTF8(&it))
                out->collection = bson_iter_utf8(&it, NULL);
            if (out->kind == MT_CMD_GETMORE && is_number(&it))
                out->cursor_id = as_i64(&it);
            continue;
        }
        mt_cmd_kind_t k = out->kind;
        /* most keys (lsid, $clusterTime, ...) are none of ours: one cheap test */
        if (!strchr("$cfqpdulsbt", key[0]) || key[0] == '\0')
            continue;
        if (strcmp(key, "$db") == 0) {
            if (BSON_ITER_HOLDS_UTF8(&it))
                out->db = bson_iter_utf8(&it, NULL);
        } else if (strcmp(key, "collection") == 0) {
            if (k == MT_CMD_GETMORE && BSON_ITER_HOLDS_UTF8(&it))
                out->collection = bson_iter_utf8(&it, NULL);
        } else if (strcmp(key, "filter") == 0) {
            if (k == MT_CMD_FIND && BSON_ITER_HOLDS_DOCUMENT(&it))
                sub_bytes(&it, &out->shape_doc, &out->shape_doc_len);
        } else if (strcmp(key, "query") == 0) {
            if ((k == MT_CMD_COUNT || k == MT_CMD_DISTINCT || k == MT_CMD_FIND_AND_MODIFY) &&
                BSON_ITER_HOLDS_DOCUMENT(&it))
                sub_bytes(&it, &out->shape_doc, &out->shape_doc_len);
        } else if (strcmp(key, "pipeline") == 0) {
            if (k == MT_CMD_AGGREGATE && BSON_ITER_HOLDS_ARRAY(&it)) {
                sub_bytes(&it, &out->shape_doc, &out->shape_doc_len);
                out->shape_doc_is_array = true;
            }
        } else if (strcmp(key, "documents") == 0) {
            if (k == MT_CMD_INSERT && BSON_ITER_HOLDS_ARRAY(&it))
                out->statements += count_elems(&it, NULL, NULL);
        } else if (strcmp(key, "updates") == 0 || strcmp(key, "deletes") == 0) {
            bool mine =
                (k == MT_CMD_UPDATE && key[0] == 'u') || (k == MT_CMD_DELETE && key[0] == 'd');
            if (mine && BSON_ITER_HOLDS_ARRAY(&it))
                out->statements += count_elems(&it, &out->shape_doc, &out->shape_doc_len);
        } else if (strcmp(key, "limit") == 0) {
            if (is_number(&it)) {
                out->has_limit = true;
                out->limit = as_i64(&it);
            }
        } else if (strcmp(key, "singleBatch") == 0) {
            if (BSON_ITER_HOLDS_BOOL(&it))
                out->single_batch = bson_iter_bool(&it);
        } else if (strcmp(key, "batchSize") == 0) {
            if (is_number(&it)) {
                out->has_batch_size = true;
                out->batch_size = as_i64(&it);
            }
        } else if (strcmp(key, "cursor") == 0) {
            bson_iter_t c;
            if (k == MT_CMD_AGGREGATE && BSON_ITER_HOLDS_DOCUMENT(&it) &&
                bson_iter_recurse(&it, &c) && bson_iter_find(&c, "batchSize") && is_number(&c)) {
                out->has_batch_size = true;
                out->batch_size = as_i64(&c);
            }
        } else if (strcmp(key, "comment") == 0) {
            if (BSON_ITER_HOLDS_UTF8(&it))
                out->comment = bson_iter_utf8(&it, NULL);
        } else if (strcmp(key, "cursors") == 0) {
            bson_iter_t c;
            if (k == MT_CMD_KILL_CURSORS && BSON_ITER_HOLDS_ARRAY(&it) &&
                bson_iter_recurse(&it, &c) && bson_iter_next(&c) && is_number(&c))
                out->cursor_id = as_i64(&c);
        } else if (strcmp(key, "client") == 0) {
            if (BSON_ITER_HOLDS_DOCUMENT(&it))
                read_client(&it, out);
        } else if (strcmp(key, "topologyVersion") == 0) {
            out->has_topology_version = true;
        }
    }
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

/* Finds a top-level key whose value is a document ("$query" wrapping). */
static bool find_subdoc(const bson_t *doc, const char *key, const uint8_t **data, uint32_t *len)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_iter_document(&it, len, data);
        return true;
    }
    return false;
}

/*
 * A legacy OP_QUERY on a collection (not "db.$cmd") is a find: its query,
 * or the "$query"/"query" inside it, is the filter; numberToReturn < 0 or 1
 * is a limit, larger values are a batch size.
 */
static void read_legacy_find(const mt_msg_t *msg, const char *coll, mt_cmd_view_t *out)
{
    const uint8_t *f = NULL;
    uint32_t flen = 0;

    copy_name(out->name, "find", NULL);
    copy_name(out->name_lower, "find", NULL);
    out->kind = MT_CMD_FIND;
    out->collection = coll;
    if (find_subdoc(&out->body, "$query", &f, &flen) ||
        find_subdoc(&out->body, "query", &f, &flen)) {
        out->shape_doc = f;
        out->shape_doc_len = flen;
    } else {
        out->shape_doc = msg->body;
        out->shape_doc_len = (uint32_t)msg->body_len;
    }
    bson_iter_t it;
    if (bson_iter_init_find(&it, &out->body, "$comment") && BSON_ITER_HOLDS_UTF8(&it))
        out->comment = bson_iter_utf8(&it, NULL);

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
}

mt_msg_err_t mt_cmd_request(const mt_msg_t *msg, mt_cmd_view_t *out)
{
    const uint8_t *doc = msg->body;
    uint32_t doc_len = (uint32_t)msg->body_len;
    const char *legacy_coll = NULL;

    memset(out, 0, sizeof(*out));
    out->request_id = msg->hdr.request_id;
    out->opcode = msg->opcode;
    out->compressor = msg->compressor;
    out->partial = msg->partial;
    out->db = "";
    out->collection = "";

    if (msg->opcode == MT_OP_MSG) {
        out->more_to_come = (msg->flags & MT_MSG_FLAG_MORE_TO_COME) != 0;
        out->exhaust_allowed = (msg->flags & MT_MSG_FLAG_EXHAUST_ALLOWED) != 0;
    } else if (msg->opcode == MT_OP_QUERY) {
        out->exhaust_allowed = (msg->query_flags & MT_MSG_QUERY_FLAG_EXHAUST) != 0;
        const char *ns = msg->full_collection ? msg->full_collection : "";
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

    if (legacy_coll) {
        read_legacy_find(msg, legacy_coll, out);
        out->shape_src = MT_CMD_SHAPE_FILTER;
        cap_names(out);
        return MT_MSG_OK;
    }
    if (msg->opcode == MT_OP_QUERY) {
        /* Wrapped command: {$query: {<command>}, $readPreference: ...} */
        const uint8_t *inner;
        uint32_t inner_len;
        if (find_subdoc(&out->body, "$query", &inner, &inner_len) &&
            !bson_init_static(&out->body, inner, inner_len))
            return MT_MSG_ERR_BSON;
    }
    if (bson_empty(&out->body))
        return MT_MSG_ERR_SECTION;

    read_command(out);
    cap_names(out);
    read_sequences(msg, out);
    out->shape_src = shape_src_of(out->kind);
    out->shape_doc_is_array = out->shape_doc && out->shape_src == MT_CMD_SHAPE_PIPELINE;
    /* same answer as mt_cmd_is_monitoring(), without matching the name again */
    out->monitoring = out->has_topology_version || out->kind >= MT_CMD_HELLO;
    return MT_MSG_OK;
}

/* ---- replies ------------------------------------------------------------ */

static const uint8_t empty_doc[5] = {5, 0, 0, 0, 0};

static void read_cursor(const bson_iter_t *cursor, mt_reply_view_t *out)
{
    bson_iter_t it;
    if (!bson_iter_recurse(cursor, &it))
        return;
    out->has_cursor = true;
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        if (strcmp(key, "id") == 0) {
            if (is_number(&it))
                out->cursor_id = as_i64(&it);
        } else if (strcmp(key, "ns") == 0) {
            if (BSON_ITER_HOLDS_UTF8(&it))
                out->ns = bson_iter_utf8(&it, NULL);
        } else if (strcmp(key, "firstBatch") == 0 || strcmp(key, "nextBatch") == 0) {
            if (BSON_ITER_HOLDS_ARRAY(&it)) {
                bson_iter_array(&it, &out->batch_len, &out->batch);
                out->docs = (int32_t)count_elems(&it, NULL, NULL);
            }
        }
    }
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

    bool has_ok = false;
    bson_iter_t it;
    bson_iter_init(&it, &out->body);
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        if (strcmp(key, "ok") == 0) {
            has_ok = true;
            if (is_number(&it))
                out->ok = bson_iter_as_double(&it) == 1.0;
            else if (BSON_ITER_HOLDS_BOOL(&it))
                out->ok = bson_iter_bool(&it);
        } else if (strcmp(key, "code") == 0) {
            if (is_number(&it))
                out->code = as_i32(&it);
        } else if (strcmp(key, "codeName") == 0) {
            if (BSON_ITER_HOLDS_UTF8(&it))
                out->code_name = bson_iter_utf8(&it, NULL);
        } else if (strcmp(key, "cursor") == 0) {
            if (BSON_ITER_HOLDS_DOCUMENT(&it))
                read_cursor(&it, out);
        } else if (strcmp(key, "n") == 0) {
            if (is_number(&it)) {
                out->has_n = true;
                out->n = as_i64(&it);
            }
        } else if (strcmp(key, "writeErrors") == 0) {
            if (BSON_ITER_HOLDS_ARRAY(&it))
                out->write_errors = (int32_t)count_elems(&it, NULL, NULL);
        }
    }

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
