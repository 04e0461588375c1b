/*
 * mt-stub-upstream: a minimal MongoDB-speaking server for the benchmark. It
 * answers the driver handshake, find, insert and getMore from replies built
 * once at start-up, patching only the header per reply, so that a benchmark
 * run measures the proxy in front of it rather than the server.
 */
#include "bench_wire.h"
#include "stream.h"
#include "tls.h"

#include <bson/bson.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uv.h>

/* Size of one document of the "one" and "hundred" collections, and of the
 * document of the "big" collection. mt-loadgen uses the same figures. */
#define STUB_DOC_BYTES 200
#define STUB_BIG_BYTES (4 * 1024 * 1024)
#define STUB_READ_MIN 4096
#define STUB_READ_INITIAL 16384

typedef enum {
    STUB_REPLY_HELLO_MSG,      /* hello / isMaster over OP_MSG */
    STUB_REPLY_HELLO_OP_REPLY, /* isMaster over legacy OP_QUERY: an OP_REPLY body */
    STUB_REPLY_OK,
    STUB_REPLY_BUILDINFO,
    STUB_REPLY_FIND_ONE,
    STUB_REPLY_FIND_HUNDRED,
    STUB_REPLY_FIND_BIG,
    STUB_REPLY_INSERT_ONE,
    STUB_REPLY_GETMORE,
    STUB_REPLY_COUNT_,
} stub_reply_t;

static const char *stub_reply_str(stub_reply_t r)
{
    switch (r) {
    case STUB_REPLY_HELLO_MSG:
        return "hello_msg";
    case STUB_REPLY_HELLO_OP_REPLY:
        return "hello_op_reply";
    case STUB_REPLY_OK:
        return "ok";
    case STUB_REPLY_BUILDINFO:
        return "buildinfo";
    case STUB_REPLY_FIND_ONE:
        return "find_one";
    case STUB_REPLY_FIND_HUNDRED:
        return "find_hundred";
    case STUB_REPLY_FIND_BIG:
        return "find_big";
    case STUB_REPLY_INSERT_ONE:
        return "insert_one";
    case STUB_REPLY_GETMORE:
        return "getmore";
    case STUB_REPLY_COUNT_:
        break;
    }
    return "unknown";
}

/* A reply without its 16-byte header: what follows the header on the wire. */
typedef struct {
    uint8_t *bytes;
    size_t len;
    int32_t opcode;
} stub_body_t;

typedef struct {
    mt_stream_t stream; /* plaintext, or TLS with --tls-cert (mongotap's stream.c) */
    uint8_t *buf;       /* unparsed input; whole messages are handled in place */
    size_t len;
    size_t cap;
    int closing;
} stub_conn_t;

/* One queued write: owns the header copy and, for replies built on demand,
 * the body (freed in the callback). Precomputed bodies are never freed here. */
typedef struct {
    mt_stream_write_t req;
    stub_conn_t *conn;
    uint8_t hdr[MT_BW_HEADER_LEN];
    uint8_t *owned;
} stub_write_t;

static stub_body_t g_replies[STUB_REPLY_COUNT_];
static int32_t g_next_request_id = 1;
static uv_tcp_t g_listener;
static uv_signal_t g_sigint, g_sigterm;
static mt_tls_ctx_t *g_tls; /* --tls-cert/--tls-key, else NULL */
static mt_stream_pool_t *g_pool;

/* ---- replies built at start-up ---- */

/* Turns a document into the bytes after the header of an OP_MSG reply. */
static void body_from_msg_doc(stub_body_t *out, const bson_t *doc)
{
    out->len = 5 + doc->len; /* flagBits, kind byte, document */
    out->bytes = malloc(out->len);
    if (out->bytes == NULL)
        abort();
    memset(out->bytes, 0, 5);
    memcpy(out->bytes + 5, bson_get_data(doc), doc->len);
    out->opcode = MT_BW_OP_MSG;
}

/* Turns a document into the bytes after the header of a one-document OP_REPLY. */
static void body_from_reply_doc(stub_body_t *out, const bson_t *doc)
{
    size_t pre = MT_BW_REPLY_PREFIX_LEN - MT_BW_HEADER_LEN;
    out->len = pre + doc->len;
    out->bytes = malloc(out->len);
    if (out->bytes == NULL)
        abort();
    memset(out->bytes, 0, pre);          /* responseFlags, cursorID, startingFrom */
    mt_bw_st32(out->bytes + pre - 4, 1); /* numberReturned */
    memcpy(out->bytes + pre, bson_get_data(doc), doc->len);
    out->opcode = MT_BW_OP_REPLY;
}

static void build_hello(bson_t *b)
{
    bson_init(b);
    BSON_APPEND_BOOL(b, "helloOk", true);
    BSON_APPEND_BOOL(b, "ismaster", true);
    BSON_APPEND_BOOL(b, "isWritablePrimary", true);
    BSON_APPEND_INT32(b, "maxBsonObjectSize", 16 * 1024 * 1024);
    BSON_APPEND_INT32(b, "maxMessageSizeBytes", MT_BW_MAX_MESSAGE);
    BSON_APPEND_INT32(b, "maxWriteBatchSize", 100000);
    BSON_APPEND_DATE_TIME(b, "localTime", (int64_t)time(NULL) * 1000);
    BSON_APPEND_INT32(b, "logicalSessionTimeoutMinutes", 30);
    BSON_APPEND_INT32(b, "connectionId", 1);
    BSON_APPEND_INT32(b, "minWireVersion", 0);
    BSON_APPEND_INT32(b, "maxWireVersion", 17);
    BSON_APPEND_BOOL(b, "readOnly", false);
    BSON_APPEND_DOUBLE(b, "ok", 1.0);
}

/* A user-like document of exactly STUB_DOC_BYTES bytes. */
static void append_user(bson_t *parent, const char *key, int64_t id)
{
    char name[32], email[48];
    bson_t doc;
    snprintf(name, sizeof(name), "user-%08lld", (long long)id);
    snprintf(email, sizeof(email), "user-%08lld@example.com", (long long)id);
    bson_init(&doc);
    BSON_APPEND_INT64(&doc, "_id", id);
    BSON_APPEND_UTF8(&doc, "name", name);
    BSON_APPEND_UTF8(&doc, "email", email);
    BSON_APPEND_INT32(&doc, "age", (int32_t)(20 + id % 50));
    BSON_APPEND_BOOL(&doc, "active", id % 2 == 0);
    BSON_APPEND_DATE_TIME(&doc, "created", 1700000000000LL + id);
    /* "bio" pads the document: element = type + "bio\0" + length + chars + NUL */
    size_t pad = STUB_DOC_BYTES - doc.len - (1 + 4 + 4 + 1);
    char bio[STUB_DOC_BYTES];
    memset(bio, 'b', pad);
    bio[pad] = '\0';
    BSON_APPEND_UTF8(&doc, "bio", bio);
    bson_append_document(parent, key, -1, &doc);
    bson_destroy(&doc);
}

static void build_find(bson_t *b, const char *ns, int ndocs)
{
    bson_t cursor, batch;
    char key[16];
    bson_init(b);
    BSON_APPEND_DOCUMENT_BEGIN(b, "cursor", &cursor);
    BSON_APPEND_ARRAY_BEGIN(&cursor, "firstBatch", &batch);
    for (int i = 0; i < ndocs; i++) {
        snprintf(key, sizeof(key), "%d", i);
        append_user(&batch, key, i + 1);
    }
    bson_append_array_end(&cursor, &batch);
    BSON_APPEND_INT64(&cursor, "id", 0);
    BSON_APPEND_UTF8(&cursor, "ns", ns);
    bson_append_document_end(b, &cursor);
    BSON_APPEND_DOUBLE(b, "ok", 1.0);
}

/* {cursor: {firstBatch: [{_id: 1, data: <binary>}], ...}} with the inner
 * document exactly STUB_BIG_BYTES long. */
static void build_find_big(bson_t *b)
{
    bson_t cursor, batch, doc;
    /* document = 4 (length) + _id int32 (1+4+4) + data binary (1+5+4+1+n) + 1 (NUL) */
    size_t n = STUB_BIG_BYTES - 4 - 9 - 11 - 1;
    uint8_t *data = malloc(n);
    if (data == NULL)
        abort();
    for (size_t i = 0; i < n; i++)
        data[i] = (uint8_t)(i * 31u + 7u);
    bson_init(b);
    BSON_APPEND_DOCUMENT_BEGIN(b, "cursor", &cursor);
    BSON_APPEND_ARRAY_BEGIN(&cursor, "firstBatch", &batch);
    BSON_APPEND_DOCUMENT_BEGIN(&batch, "0", &doc);
    BSON_APPEND_INT32(&doc, "_id", 1);
    BSON_APPEND_BINARY(&doc, "data", BSON_SUBTYPE_BINARY, data, (uint32_t)n);
    bson_append_document_end(&batch, &doc);
    bson_append_array_end(&cursor, &batch);
    BSON_APPEND_INT64(&cursor, "id", 0);
    BSON_APPEND_UTF8(&cursor, "ns", "bench.big");
    bson_append_document_end(b, &cursor);
    BSON_APPEND_DOUBLE(b, "ok", 1.0);
    free(data);
}

static void build_replies(void)
{
    bson_t b, sub;

    build_hello(&b);
    body_from_msg_doc(&g_replies[STUB_REPLY_HELLO_MSG], &b);
    body_from_reply_doc(&g_replies[STUB_REPLY_HELLO_OP_REPLY], &b);
    bson_destroy(&b);

    bson_init(&b);
    BSON_APPEND_DOUBLE(&b, "ok", 1.0);
    body_from_msg_doc(&g_replies[STUB_REPLY_OK], &b);
    bson_destroy(&b);

    bson_init(&b);
    BSON_APPEND_UTF8(&b, "version", "6.0.0");
    BSON_APPEND_ARRAY_BEGIN(&b, "versionArray", &sub);
    BSON_APPEND_INT32(&sub, "0", 6);
    BSON_APPEND_INT32(&sub, "1", 0);
    BSON_APPEND_INT32(&sub, "2", 0);
    BSON_APPEND_INT32(&sub, "3", 0);
    bson_append_array_end(&b, &sub);
    BSON_APPEND_INT32(&b, "maxBsonObjectSize", 16 * 1024 * 1024);
    BSON_APPEND_DOUBLE(&b, "ok", 1.0);
    body_from_msg_doc(&g_replies[STUB_REPLY_BUILDINFO], &b);
    bson_destroy(&b);

    build_find(&b, "bench.one", 1);
    body_from_msg_doc(&g_replies[STUB_REPLY_FIND_ONE], &b);
    bson_destroy(&b);

    build_find(&b, "bench.hundred", 100);
    body_from_msg_doc(&g_replies[STUB_REPLY_FIND_HUNDRED], &b);
    bson_destroy(&b);

    build_find_big(&b);
    body_from_msg_doc(&g_replies[STUB_REPLY_FIND_BIG], &b);
    bson_destroy(&b);

    bson_init(&b);
    BSON_APPEND_INT32(&b, "n", 1);
    BSON_APPEND_DOUBLE(&b, "ok", 1.0);
    body_from_msg_doc(&g_replies[STUB_REPLY_INSERT_ONE], &b);
    bson_destroy(&b);

    bson_init(&b);
    BSON_APPEND_DOCUMENT_BEGIN(&b, "cursor", &sub);
    bson_t empty;
    BSON_APPEND_ARRAY_BEGIN(&sub, "nextBatch", &empty);
    bson_append_array_end(&sub, &empty);
    BSON_APPEND_INT64(&sub, "id", 0);
    BSON_APPEND_UTF8(&sub, "ns", "bench.one");
    bson_append_document_end(&b, &sub);
    BSON_APPEND_DOUBLE(&b, "ok", 1.0);
    body_from_msg_doc(&g_replies[STUB_REPLY_GETMORE], &b);
    bson_destroy(&b);
}

static void free_replies(void)
{
    for (int i = 0; i < STUB_REPLY_COUNT_; i++) {
        free(g_replies[i].bytes);
        g_replies[i].bytes = NULL;
    }
}

/* ---- connections ---- */

static void conn_close_cb(mt_stream_t *s)
{
    stub_conn_t *c = s->data;
    free(c->buf);
    free(c);
}

static void conn_close(stub_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    mt_stream_close(&c->stream, conn_close_cb);
}

static void write_cb(mt_stream_write_t *req, int status)
{
    stub_write_t *w = (stub_write_t *)req;
    stub_conn_t *c = w->conn;
    free(w->owned);
    free(w);
    if (status < 0 && status != UV_ECANCELED)
        conn_close(c);
}

/*
 * Sends header + body. Small replies usually leave in one uv_try_write with
 * nothing allocated; the rest is queued with a request that keeps a copy of
 * the header. `owned` (may be NULL) is freed once the body is on the wire.
 */
static void send_reply(stub_conn_t *c, int32_t opcode, int32_t response_to, const uint8_t *body,
                       size_t body_len, uint8_t *owned)
{
    uint8_t hdr[MT_BW_HEADER_LEN];
    mt_bw_header_t h = {
        .length = (int32_t)(MT_BW_HEADER_LEN + body_len),
        .request_id = g_next_request_id++,
        .response_to = response_to,
        .opcode = opcode,
    };
    mt_bw_header_write(hdr, &h);

    uv_buf_t bufs[2] = {uv_buf_init((char *)hdr, MT_BW_HEADER_LEN),
                        uv_buf_init((char *)body, (unsigned)body_len)};
    int n = mt_stream_try_write(&c->stream, bufs, 2);
    if (n < 0 && n != UV_EAGAIN) {
        free(owned);
        conn_close(c);
        return;
    }
    size_t done = n > 0 ? (size_t)n : 0;
    if (done == MT_BW_HEADER_LEN + body_len) {
        free(owned);
        return;
    }

    stub_write_t *w = malloc(sizeof(*w));
    if (w == NULL) {
        free(owned);
        conn_close(c);
        return;
    }
    memcpy(w->hdr, hdr, sizeof(hdr));
    w->owned = owned;
    w->conn = c;
    uv_buf_t rest[2];
    unsigned nbufs = 0;
    if (done < MT_BW_HEADER_LEN) {
        rest[nbufs++] = uv_buf_init((char *)w->hdr + done, (unsigned)(MT_BW_HEADER_LEN - done));
        rest[nbufs++] = uv_buf_init((char *)body, (unsigned)body_len);
    } else {
        size_t off = done - MT_BW_HEADER_LEN;
        rest[nbufs++] = uv_buf_init((char *)body + off, (unsigned)(body_len - off));
    }
    if (mt_stream_write(&w->req, &c->stream, rest, nbufs, write_cb) != 0) {
        free(w->owned);
        free(w);
        conn_close(c);
    }
}

static void send_canned(stub_conn_t *c, stub_reply_t r, int32_t response_to)
{
    const stub_body_t *b = &g_replies[r];
    send_reply(c, b->opcode, response_to, b->bytes, b->len, NULL);
}

/* Builds an OP_MSG reply body on the heap for answers that are not canned. */
static void send_doc(stub_conn_t *c, const bson_t *doc, int32_t response_to)
{
    stub_body_t b;
    body_from_msg_doc(&b, doc);
    send_reply(c, MT_BW_OP_MSG, response_to, b.bytes, b.len, b.bytes);
}

static void send_not_found(stub_conn_t *c, const char *cmd, int32_t response_to)
{
    bson_t b;
    char msg[160];
    snprintf(msg, sizeof(msg), "no such command: '%.100s'", cmd);
    bson_init(&b);
    BSON_APPEND_DOUBLE(&b, "ok", 0.0);
    BSON_APPEND_UTF8(&b, "errmsg", msg);
    BSON_APPEND_INT32(&b, "code", 59);
    BSON_APPEND_UTF8(&b, "codeName", "CommandNotFound");
    send_doc(c, &b, response_to);
    bson_destroy(&b);
}

/* Documents of an insert: the length of its kind-0 "documents" array, or 1
 * when the documents came as a kind-1 sequence (not counted: the stub only
 * needs a plausible n). */
static int32_t insert_count(bson_iter_t *it)
{
    bson_iter_t arr;
    int32_t n = 0;
    if (!bson_iter_find(it, "documents") || !BSON_ITER_HOLDS_ARRAY(it) ||
        !bson_iter_recurse(it, &arr))
        return 1;
    while (bson_iter_next(&arr))
        n++;
    return n;
}

static void handle_msg(stub_conn_t *c, const mt_bw_header_t *h, const uint8_t *msg)
{
    uint32_t flags;
    const uint8_t *doc;
    size_t doc_len;
    bson_t body;
    bson_iter_t it;

    if (!mt_bw_msg_body(msg, (size_t)h->length, &flags, &doc, &doc_len) ||
        !bson_init_static(&body, doc, doc_len) || !bson_iter_init(&it, &body) ||
        !bson_iter_next(&it)) {
        fprintf(stderr, "stub: malformed OP_MSG, closing the connection\n");
        conn_close(c);
        return;
    }
    if (flags & MT_BW_FLAG_MORE_TO_COME)
        return; /* the client expects no reply */

    const char *cmd = bson_iter_key(&it);
    int32_t to = h->request_id;
    if (strcasecmp(cmd, "find") == 0) {
        const char *coll = BSON_ITER_HOLDS_UTF8(&it) ? bson_iter_utf8(&it, NULL) : "";
        if (strcmp(coll, "hundred") == 0)
            send_canned(c, STUB_REPLY_FIND_HUNDRED, to);
        else if (strcmp(coll, "big") == 0)
            send_canned(c, STUB_REPLY_FIND_BIG, to);
        else
            send_canned(c, STUB_REPLY_FIND_ONE, to);
    } else if (strcasecmp(cmd, "insert") == 0) {
        int32_t n = insert_count(&it);
        if (n == 1) {
            send_canned(c, STUB_REPLY_INSERT_ONE, to);
        } else {
            bson_t b;
            bson_init(&b);
            BSON_APPEND_INT32(&b, "n", n);
            BSON_APPEND_DOUBLE(&b, "ok", 1.0);
            send_doc(c, &b, to);
            bson_destroy(&b);
        }
    } else if (strcasecmp(cmd, "getMore") == 0) {
        send_canned(c, STUB_REPLY_GETMORE, to);
    } else if (strcasecmp(cmd, "hello") == 0 || strcasecmp(cmd, "isMaster") == 0) {
        send_canned(c, STUB_REPLY_HELLO_MSG, to);
    } else if (strcasecmp(cmd, "buildInfo") == 0) {
        send_canned(c, STUB_REPLY_BUILDINFO, to);
    } else if (strcasecmp(cmd, "ping") == 0 || strcasecmp(cmd, "endSessions") == 0 ||
               strcasecmp(cmd, "killCursors") == 0 || strcasecmp(cmd, "update") == 0 ||
               strcasecmp(cmd, "delete") == 0) {
        send_canned(c, STUB_REPLY_OK, to);
    } else {
        send_not_found(c, cmd, to);
    }
}

/* Legacy OP_QUERY: drivers use it only for the first isMaster of a connection. */
static void handle_query(stub_conn_t *c, const mt_bw_header_t *h, const uint8_t *msg)
{
    const uint8_t *doc;
    size_t doc_len;
    bson_t query;
    bson_iter_t it, inner;

    if (!mt_bw_query_body(msg, (size_t)h->length, &doc, &doc_len) ||
        !bson_init_static(&query, doc, doc_len) || !bson_iter_init(&it, &query) ||
        !bson_iter_next(&it)) {
        fprintf(stderr, "stub: malformed OP_QUERY, closing the connection\n");
        conn_close(c);
        return;
    }
    /* A read preference wraps the command as {$query: {...}, $readPreference: ...} */
    if (strcmp(bson_iter_key(&it), "$query") == 0 && BSON_ITER_HOLDS_DOCUMENT(&it) &&
        bson_iter_recurse(&it, &inner) && bson_iter_next(&inner))
        it = inner;
    const char *cmd = bson_iter_key(&it);
    if (strcasecmp(cmd, "isMaster") == 0 || strcasecmp(cmd, "hello") == 0) {
        send_canned(c, STUB_REPLY_HELLO_OP_REPLY, h->request_id);
        return;
    }
    fprintf(stderr, "stub: unsupported OP_QUERY command '%.64s', closing the connection\n", cmd);
    conn_close(c);
}

static void handle_message(stub_conn_t *c, const uint8_t *msg)
{
    mt_bw_header_t h;
    mt_bw_header_read(msg, &h);
    switch (h.opcode) {
    case MT_BW_OP_MSG:
        handle_msg(c, &h, msg);
        break;
    case MT_BW_OP_QUERY:
        handle_query(c, &h, msg);
        break;
    default:
        fprintf(stderr, "stub: unsupported opcode %d, closing the connection\n", (int)h.opcode);
        conn_close(c);
        break;
    }
}

/* Reads go straight into the connection's buffer; once a header is known the
 * buffer is sized for the whole message so a 4 MB request costs no extra copy. */
static void alloc_cb(mt_stream_t *s, uv_buf_t *buf)
{
    stub_conn_t *c = s->data;
    size_t need = STUB_READ_MIN;
    if (c->len >= MT_BW_HEADER_LEN) {
        int32_t mlen = (int32_t)mt_bw_ld32(c->buf);
        if (mt_bw_length_ok(mlen) && (size_t)mlen > c->len)
            need = (size_t)mlen - c->len;
    }
    if (c->cap - c->len < need) {
        size_t cap = c->len + need;
        if (cap < STUB_READ_INITIAL)
            cap = STUB_READ_INITIAL;
        uint8_t *nb = realloc(c->buf, cap);
        if (nb == NULL) {
            *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
            return;
        }
        c->buf = nb;
        c->cap = cap;
    }
    *buf = uv_buf_init((char *)c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void read_cb(mt_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    stub_conn_t *c = s->data;
    (void)buf;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    c->len += (size_t)nread;
    size_t off = 0;
    while (c->len - off >= MT_BW_HEADER_LEN && !c->closing) {
        int32_t mlen = (int32_t)mt_bw_ld32(c->buf + off);
        if (!mt_bw_length_ok(mlen)) {
            fprintf(stderr, "stub: impossible message length %d, closing the connection\n",
                    (int)mlen);
            conn_close(c);
            return;
        }
        if (c->len - off < (size_t)mlen)
            break;
        handle_message(c, c->buf + off);
        off += (size_t)mlen;
    }
    if (off > 0) {
        memmove(c->buf, c->buf + off, c->len - off);
        c->len -= off;
    }
}

static void handshake_cb(mt_stream_t *s, int status)
{
    if (status != 0) {
        if (status != UV_ECANCELED)
            fprintf(stderr, "stub: TLS handshake failed: %s\n",
                    status == UV_EPROTO ? mt_stream_tls_reason(s) : uv_strerror(status));
        conn_close(s->data);
        return;
    }
    mt_stream_read_start(s, alloc_cb, read_cb);
}

static void accept_cb(uv_stream_t *server, int status)
{
    if (status < 0) {
        fprintf(stderr, "stub: accept: %s\n", uv_strerror(status));
        return;
    }
    stub_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    mt_stream_init(server->loop, &c->stream, g_pool);
    c->stream.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->stream.tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->stream.tcp, 1);
    if (g_tls) {
        mt_tls_t *t = mt_tls_new(g_tls, NULL);
        if (!t || mt_stream_start_tls(&c->stream, t, handshake_cb) != 0) {
            if (!c->stream.tls)
                mt_tls_free(t);
            conn_close(c);
        }
        return;
    }
    mt_stream_read_start(&c->stream, alloc_cb, read_cb);
}

/* ---- start and stop ---- */

/* Connections close through their stream (which owns a timer in TLS);
 * everything else directly. */
static void walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (uv_is_closing(h))
        return;
    if (h->type == UV_TCP && h != (uv_handle_t *)&g_listener)
        conn_close(((mt_stream_t *)h->data)->data);
    else if (h->type != UV_TIMER)
        uv_close(h, NULL);
}

static void signal_cb(uv_signal_t *s, int signum)
{
    (void)signum;
    uv_walk(s->loop, walk_close, NULL);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mt-stub-upstream [--host 127.0.0.1] [--port N] [--tls-cert F --tls-key F]\n"
            "  Serves hello, find (collections \"one\": 1 doc, \"hundred\": 100 docs,\n"
            "  \"big\": one 4 MiB doc), insert and getMore from precomputed replies.\n"
            "  --port 0 (default) picks a free port; 'ready port=N' is printed on stdout.\n"
            "  --tls-cert/--tls-key (PEM): speak TLS instead of plaintext.\n");
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *cert = NULL, *key = NULL;
    long port = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--host") == 0 && i + 1 < argc) {
            host = argv[++i];
        } else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            char *end;
            port = strtol(argv[++i], &end, 10);
            if (*end != '\0' || port < 0 || port > 65535) {
                fprintf(stderr, "mt-stub-upstream: --port: not a port number: %s\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--tls-cert") == 0 && i + 1 < argc) {
            cert = argv[++i];
        } else if (strcmp(argv[i], "--tls-key") == 0 && i + 1 < argc) {
            key = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "mt-stub-upstream: unknown or incomplete option: %s\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }

    if (!cert != !key) {
        fprintf(stderr, "mt-stub-upstream: --tls-cert and --tls-key go together\n");
        return 2;
    }
    if (cert) {
        char err[512];
        g_tls = mt_tls_server_ctx_new(cert, key, err, sizeof(err));
        g_pool = mt_stream_pool_new();
        if (!g_tls || !g_pool) {
            fprintf(stderr, "mt-stub-upstream: %s\n", g_tls ? "out of memory" : err);
            return 1;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t *loop = uv_default_loop();
    build_replies();

    struct sockaddr_storage addr;
    int rc = strchr(host, ':') ? uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&addr)
                               : uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&addr);
    if (rc != 0) {
        fprintf(stderr, "mt-stub-upstream: --host: not an IP address: %s\n", host);
        free_replies();
        return 2;
    }
    uv_tcp_init(loop, &g_listener);
    rc = uv_tcp_bind(&g_listener, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&g_listener, 4096, accept_cb);
    if (rc != 0) {
        fprintf(stderr, "mt-stub-upstream: listen on %s:%ld: %s\n", host, port, uv_strerror(rc));
        uv_close((uv_handle_t *)&g_listener, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
        uv_loop_close(loop);
        free_replies();
        return 1;
    }
    struct sockaddr_storage bound;
    int blen = sizeof(bound);
    uv_tcp_getsockname(&g_listener, (struct sockaddr *)&bound, &blen);
    int bport = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                            : ntohs(((struct sockaddr_in *)&bound)->sin_port);

    uv_signal_init(loop, &g_sigint);
    uv_signal_init(loop, &g_sigterm);
    uv_signal_start(&g_sigint, signal_cb, SIGINT);
    uv_signal_start(&g_sigterm, signal_cb, SIGTERM);
    uv_unref((uv_handle_t *)&g_sigint);
    uv_unref((uv_handle_t *)&g_sigterm);

    printf("ready port=%d\n", bport);
    fflush(stdout);
    for (int i = 0; i < STUB_REPLY_COUNT_; i++)
        fprintf(stderr, "stub: reply %s: %zu bytes\n", stub_reply_str((stub_reply_t)i),
                g_replies[i].len + MT_BW_HEADER_LEN);

    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    free_replies();
    mt_stream_pool_free(g_pool);
    mt_tls_ctx_free(g_tls);
    return 0;
}
