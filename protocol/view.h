/*
 * view: what a request asks and what a reply answers, as views over a decoded
 * message. Strings and documents point into the message (or its scratch
 * buffer) and are valid as long as those bytes are. stats/ reads these and
 * nothing else of protocol/'s decoding.
 */
#ifndef MT_VIEW_H
#define MT_VIEW_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#define MT_CMD_NAME_MAX 64
/* MongoDB's own limits on names; longer ones are cut (on a UTF-8 boundary)
 * in the views, so that no name from the wire is kept at any length. */
#define MT_CMD_DB_MAX 64    /* bytes of a database name */
#define MT_CMD_NS_MAX 255   /* bytes of a namespace, "db.collection" */
#define MT_CMD_PATH_MAX 255 /* bytes of a field path that stats keeps */

/* Bytes of s to keep under max: strlen(s) when it fits, else cut back to a
 * UTF-8 character boundary (*cut, which may be NULL, is then set). Reads at
 * most max + 1 bytes of s. */
size_t mt_cmd_name_len(const char *s, size_t max, bool *cut);

typedef enum {
    MT_CMD_OTHER = 0,
    MT_CMD_FIND,
    MT_CMD_AGGREGATE,
    MT_CMD_GETMORE,
    MT_CMD_INSERT,
    MT_CMD_UPDATE,
    MT_CMD_DELETE,
    MT_CMD_FIND_AND_MODIFY,
    MT_CMD_COUNT,
    MT_CMD_DISTINCT,
    MT_CMD_KILL_CURSORS,
    MT_CMD_HELLO,      /* hello / isMaster / ismaster */
    MT_CMD_MONITORING, /* ping, buildInfo, getLastError, endSessions ... */
    MT_CMD_AUTH,       /* saslStart, saslContinue, authenticate ... */
} mt_cmd_kind_t;

const char *mt_cmd_kind_str(mt_cmd_kind_t kind);

/* Which field of the command the shape is taken from. */
typedef enum {
    MT_CMD_SHAPE_NONE = 0,
    MT_CMD_SHAPE_FILTER,   /* find.filter, count.query, distinct.query, findAndModify.query */
    MT_CMD_SHAPE_PIPELINE, /* aggregate.pipeline */
    MT_CMD_SHAPE_UPDATES,  /* update.updates (first statement: q and u) */
    MT_CMD_SHAPE_DELETES,  /* delete.deletes (first statement: q) */
} mt_cmd_shape_src_t;

const char *mt_cmd_shape_src_str(mt_cmd_shape_src_t src);

typedef struct {
    int32_t request_id;
    int32_t opcode;    /* effective opcode */
    int compressor;    /* mt_compressor_t */
    bool more_to_come; /* no reply will follow */
    bool exhaust_allowed;

    mt_cmd_kind_t kind;
    bool monitoring;        /* counted, but never opens or extends a window */
    bool names_truncated;   /* name, db or collection was cut to the limits above */
    const char *db;         /* $db, or the part of OP_QUERY's namespace before '.'; "" if none.
                             * At most MT_CMD_DB_MAX bytes; it may point at db_buf below: copy
                             * the string, not the pointer, when copying a view. */
    const char *collection; /* value of the first key when a string; getMore: "collection";
                             * "" if none. With db at most MT_CMD_NS_MAX bytes (coll_buf
                             * when cut, as for db) */

    /* Where the shape comes from: a document (filter/query) or an array
     * (pipeline) or, for update/delete, the first statement document. */
    mt_cmd_shape_src_t shape_src;
    const uint8_t *shape_doc; /* BSON document or array, NULL when none */
    uint32_t shape_doc_len;
    bool shape_doc_is_array;
    uint64_t shape_id;   /* the shape's structural hash: equal exactly when the texts
                          * mt_shape_of_command() renders are (shape.h) */
    uint64_t query_hash; /* filter (pipeline, query), projection, sort, limit, skip and key,
                          * hashed as sent: the same question asked again */

    bool has_limit;
    int64_t limit;
    bool single_batch;
    bool has_batch_size;
    int64_t batch_size;
    const char *comment; /* when comment is a string, else NULL */
    int64_t cursor_id;   /* getMore: the cursor; killCursors: first cursor */
    uint32_t statements; /* insert/update/delete: documents in body array + kind-1 sequence */
    bool partial;        /* only the front of the message was decoded (or decompressed):
                            statements is a lower bound */

    /* Handshake metadata (hello/isMaster with a "client" document). */
    const char *app_name;       /* client.application.name or NULL */
    const char *driver_name;    /* client.driver.name or NULL */
    const char *driver_version; /* client.driver.version or NULL */
    bool has_topology_version;  /* streaming hello (monitoring) */

    /* The buffers last: a view is cleared up to name (MT_CMD_VIEW_CLEAR),
     * the buffers are written before they are read. */
    char name[MT_CMD_NAME_MAX];       /* first key, as sent ("find", "ismaster") */
    char name_lower[MT_CMD_NAME_MAX]; /* lower-cased, for matching */
    bson_t body;                      /* static view of the command document */
    char db_buf[MT_CMD_DB_MAX + 1];   /* OP_QUERY namespace prefix, or a cut $db */
    char coll_buf[MT_CMD_NS_MAX + 1]; /* a cut collection name */
} mt_cmd_view_t;

typedef struct {
    int32_t request_id;
    int32_t response_to;
    int32_t opcode;
    int compressor;
    bool more_to_come; /* exhaust: another reply to the same request follows */
    bool partial;      /* decompressed only in part: documents after the first are unknown */
    bool unread;       /* decompression stopped before the reply document (the view came with
                        * MT_MSG_ERR_SKIPPED): only the ids and more_to_come are known */

    bson_t body;            /* static view of the reply document (first doc for OP_REPLY),
                             * validated but for the insides of the batch's documents */
    bool ok;                /* ok: 1 (and OP_REPLY without QueryFailure) */
    int32_t code;           /* error code, 0 when none */
    int32_t response_flags; /* OP_REPLY responseFlags, 0 for OP_MSG */
    const char *code_name;  /* or NULL */
    bool has_cursor;
    int64_t cursor_id; /* cursor.id (0 when exhausted); OP_REPLY without a cursor
                        * document: the header's cursorID */
    const char *ns;    /* cursor.ns or NULL */
    /* BSON array firstBatch/nextBatch, or NULL: its elements' framing is
     * checked, what is inside each document is not */
    const uint8_t *batch;
    uint32_t batch_len;
    int32_t docs; /* documents in the batch (OP_REPLY: numberReturned) */
    bool has_n;
    int64_t n;            /* writes: n */
    int32_t write_errors; /* writeErrors count */
} mt_reply_view_t;

#endif
