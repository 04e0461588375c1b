/*
 * mt-loadgen: a closed-loop load generator speaking OP_MSG on raw libuv
 * sockets (in TLS with --tls, over mongotap's own stream.c). Each of N
 * connections sends one request, waits for its reply, and sends the next;
 * after a warm-up, every reply's latency goes into a histogram and one line
 * of results is printed at the end.
 */
#include "bench_wire.h"
#include "lathist.h"
#include "loadgen.h"
#include "stream.h"
#include "tls.h"

#include <bson/bson.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#ifndef MT_VERSION
#define MT_VERSION "dev"
#endif

/* Connects in flight at once: a burst of thousands would overflow the
 * target's accept backlog and cost SYN retransmits of a second each. */
#define LG_MAX_PENDING_CONNECTS 256
#define LG_READ_MIN 4096
#define LG_READ_INITIAL 16384
#define LG_ID_SPACE 1000000 /* find1 looks up _id in [0, LG_ID_SPACE) */

typedef enum {
    LG_CONN_CONNECTING,
    LG_CONN_RUNNING, /* a request is in flight or about to be */
    LG_CONN_RESTING, /* done: idle mode after its hello, shapes after the last */
    LG_CONN_DEAD,
} lg_conn_state_t;

typedef enum {
    LG_PHASE_CONNECT, /* opening connections */
    LG_PHASE_WARMUP,  /* replies are checked but not measured */
    LG_PHASE_MEASURE,
    LG_PHASE_DONE,
} lg_phase_t;

static const char *lg_phase_str(lg_phase_t p)
{
    switch (p) {
    case LG_PHASE_CONNECT:
        return "connect";
    case LG_PHASE_WARMUP:
        return "warmup";
    case LG_PHASE_MEASURE:
        return "measure";
    case LG_PHASE_DONE:
        return "done";
    }
    return "unknown";
}

typedef struct lg_run lg_run_t;

typedef struct {
    mt_stream_t stream;
    uv_connect_t connect_req;
    mt_stream_write_t write_req; /* used only when a request does not fit one try_write */
    lg_run_t *run;
    int index;
    lg_conn_state_t state;
    int write_pending; /* write_req is queued: the next request waits for its callback */
    int send_deferred;
    int closing;
    int32_t request_id; /* of the request in flight */
    uint64_t sent_at;
    uint64_t seq; /* requests sent on this connection */
    uint64_t rng;
    size_t req_bytes; /* size of the request in flight */
    uint8_t prefix[MT_BW_MSG_PREFIX_LEN];
    bson_t body; /* body of requests built per request */
    uint8_t *rbuf;
    size_t rlen;
    size_t rcap;
} lg_conn_t;

struct lg_run {
    const lg_opts_t *o;
    uv_loop_t *loop;
    lg_conn_t *conns;
    int next_to_connect;
    int pending_connects;
    int settled; /* connections that connected or failed to */
    int resting; /* connections in RESTING */
    int dead;
    lg_phase_t phase;
    uint64_t measure_start;
    uint64_t measure_end;
    int32_t next_request_id;
    uint64_t next_shape; /* shapes mode: next field number */
    uint64_t unsent;     /* counted runs: requests still to send */
    int idle_announced;
    int load_started; /* all_settled() ran */
    uv_timer_t timer;
    uv_signal_t sigint;
    uv_signal_t sigterm;
    mt_tls_ctx_t *tls;      /* --tls: the client context, else NULL */
    mt_stream_pool_t *pool; /* ciphertext buffers for TLS */
    bson_t find100_body;    /* bodies that never change, shared by all connections */
    bson_t big_insert_body;
    bson_t big_find_body;
    char *insert_payload; /* the string that pads an insert1k document */
    lg_result_t res;
};

const char *lg_mode_str(lg_mode_t mode)
{
    switch (mode) {
    case LG_MODE_FIND1:
        return "find1";
    case LG_MODE_FIND100:
        return "find100";
    case LG_MODE_INSERT1K:
        return "insert1k";
    case LG_MODE_BIG4M:
        return "big4m";
    case LG_MODE_SHAPES:
        return "shapes";
    case LG_MODE_SAMESHAPE:
        return "sameshape";
    case LG_MODE_IDLE:
        return "idle";
    }
    return "unknown";
}

const char *lg_engine_str(lg_engine_t engine)
{
    switch (engine) {
    case LG_ENGINE_RAW:
        return "raw";
    case LG_ENGINE_MONGOC:
        return "mongoc";
    }
    return "unknown";
}

/* Runs that send --count requests rather than run for --seconds: the shape
 * modes always, the others when --count is given (the allocation count and
 * instruction profiles want an exact number of requests). */
static int lg_counted(const lg_opts_t *o)
{
    return o->mode == LG_MODE_SHAPES || o->mode == LG_MODE_SAMESHAPE ||
           (o->count_given && o->mode != LG_MODE_IDLE);
}

static int parse_mode(const char *s, lg_mode_t *out)
{
    static const lg_mode_t all[] = {LG_MODE_FIND1, LG_MODE_FIND100, LG_MODE_INSERT1K,
                                    LG_MODE_BIG4M, LG_MODE_SHAPES,  LG_MODE_SAMESHAPE,
                                    LG_MODE_IDLE};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        if (strcmp(s, lg_mode_str(all[i])) == 0) {
            *out = all[i];
            return 1;
        }
    }
    return 0;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* ---- request bodies ---- */

static void build_static_bodies(lg_run_t *run)
{
    bson_t filter, docs, doc;

    bson_init(&run->find100_body);
    BSON_APPEND_UTF8(&run->find100_body, "find", "hundred");
    BSON_APPEND_DOCUMENT_BEGIN(&run->find100_body, "filter", &filter);
    bson_append_document_end(&run->find100_body, &filter);
    BSON_APPEND_INT32(&run->find100_body, "batchSize", 100);
    BSON_APPEND_UTF8(&run->find100_body, "$db", "bench");

    bson_init(&run->big_find_body);
    BSON_APPEND_UTF8(&run->big_find_body, "find", "big");
    BSON_APPEND_DOCUMENT_BEGIN(&run->big_find_body, "filter", &filter);
    BSON_APPEND_INT32(&filter, "_id", 1);
    bson_append_document_end(&run->big_find_body, &filter);
    BSON_APPEND_INT64(&run->big_find_body, "limit", 1);
    BSON_APPEND_BOOL(&run->big_find_body, "singleBatch", true);
    BSON_APPEND_UTF8(&run->big_find_body, "$db", "bench");

    /* document = 4 (length) + _id int32 (1+4+4) + data binary (1+5+4+1+n) + 1 (NUL);
     * a few bytes everywhere but in big4m, which is the only mode to send it */
    size_t n = run->o->mode == LG_MODE_BIG4M ? LG_BIG_DOC_BYTES - 4 - 9 - 11 - 1 : 16;
    uint8_t *data = malloc(n);
    if (data == NULL)
        abort();
    for (size_t i = 0; i < n; i++)
        data[i] = (uint8_t)(i * 17u + 3u);
    bson_init(&run->big_insert_body);
    BSON_APPEND_UTF8(&run->big_insert_body, "insert", "big");
    BSON_APPEND_ARRAY_BEGIN(&run->big_insert_body, "documents", &docs);
    BSON_APPEND_DOCUMENT_BEGIN(&docs, "0", &doc);
    BSON_APPEND_INT32(&doc, "_id", 1);
    BSON_APPEND_BINARY(&doc, "data", BSON_SUBTYPE_BINARY, data, (uint32_t)n);
    bson_append_document_end(&docs, &doc);
    bson_append_array_end(&run->big_insert_body, &docs);
    BSON_APPEND_BOOL(&run->big_insert_body, "ordered", true);
    BSON_APPEND_UTF8(&run->big_insert_body, "$db", "bench");
    free(data);

    /* insert1k document: 4 + _id int64 (1+4+8) + payload utf8 (1+8+4+len+1) + 1 */
    size_t plen = LG_INSERT_DOC_BYTES - 4 - 13 - 14 - 1;
    run->insert_payload = malloc(plen + 1);
    if (run->insert_payload == NULL)
        abort();
    memset(run->insert_payload, 'p', plen);
    run->insert_payload[plen] = '\0';
}

static void free_static_bodies(lg_run_t *run)
{
    bson_destroy(&run->find100_body);
    bson_destroy(&run->big_insert_body);
    bson_destroy(&run->big_find_body);
    free(run->insert_payload);
}

static void build_find(bson_t *b, const char *coll, const char *field, int64_t value)
{
    bson_t filter;
    BSON_APPEND_UTF8(b, "find", coll);
    BSON_APPEND_DOCUMENT_BEGIN(b, "filter", &filter);
    BSON_APPEND_INT64(&filter, field, value);
    bson_append_document_end(b, &filter);
    BSON_APPEND_INT64(b, "limit", 1);
    BSON_APPEND_BOOL(b, "singleBatch", true);
    BSON_APPEND_UTF8(b, "$db", "bench");
}

/* Returns the body of the connection's next request (valid until the next call). */
static const bson_t *next_body(lg_conn_t *c)
{
    lg_run_t *run = c->run;
    bson_t docs, doc, client, sub;
    char field[32];

    switch (run->o->mode) {
    case LG_MODE_FIND1:
        bson_reinit(&c->body);
        build_find(&c->body, "one", "_id", (int64_t)(xorshift(&c->rng) % LG_ID_SPACE));
        return &c->body;
    case LG_MODE_FIND100:
        return &run->find100_body;
    case LG_MODE_INSERT1K:
        bson_reinit(&c->body);
        BSON_APPEND_UTF8(&c->body, "insert", "docs");
        BSON_APPEND_ARRAY_BEGIN(&c->body, "documents", &docs);
        BSON_APPEND_DOCUMENT_BEGIN(&docs, "0", &doc);
        BSON_APPEND_INT64(&doc, "_id", ((int64_t)c->index << 40) | (int64_t)c->seq);
        BSON_APPEND_UTF8(&doc, "payload", run->insert_payload);
        bson_append_document_end(&docs, &doc);
        bson_append_array_end(&c->body, &docs);
        BSON_APPEND_BOOL(&c->body, "ordered", true);
        BSON_APPEND_UTF8(&c->body, "$db", "bench");
        return &c->body;
    case LG_MODE_BIG4M:
        return c->seq % 2 == 0 ? &run->big_insert_body : &run->big_find_body;
    case LG_MODE_SHAPES:
    case LG_MODE_SAMESHAPE:
        if (run->o->mode == LG_MODE_SHAPES)
            snprintf(field, sizeof(field), "f%llu", (unsigned long long)run->next_shape);
        else
            snprintf(field, sizeof(field), "f");
        run->next_shape++;
        bson_reinit(&c->body);
        build_find(&c->body, "one", field, 1);
        return &c->body;
    case LG_MODE_IDLE:
        bson_reinit(&c->body);
        BSON_APPEND_INT32(&c->body, "hello", 1);
        BSON_APPEND_DOCUMENT_BEGIN(&c->body, "client", &client);
        BSON_APPEND_DOCUMENT_BEGIN(&client, "application", &sub);
        BSON_APPEND_UTF8(&sub, "name", "mt-loadgen");
        bson_append_document_end(&client, &sub);
        BSON_APPEND_DOCUMENT_BEGIN(&client, "driver", &sub);
        BSON_APPEND_UTF8(&sub, "name", "mt-loadgen");
        BSON_APPEND_UTF8(&sub, "version", MT_VERSION);
        bson_append_document_end(&client, &sub);
        BSON_APPEND_DOCUMENT_BEGIN(&client, "os", &sub);
        BSON_APPEND_UTF8(&sub, "type", "Linux");
        bson_append_document_end(&client, &sub);
        bson_append_document_end(&c->body, &client);
        BSON_APPEND_UTF8(&c->body, "$db", "admin");
        return &c->body;
    }
    return NULL;
}

/* ---- connections ---- */

static void run_finish(lg_run_t *run);
static void conn_send(lg_conn_t *c);
static void start_connects(lg_run_t *run);

static void conn_set_state(lg_conn_t *c, lg_conn_state_t state)
{
    lg_run_t *run = c->run;
    if (c->state == state)
        return;
    if (c->state == LG_CONN_RESTING)
        run->resting--;
    if (state == LG_CONN_RESTING)
        run->resting++;
    if (state == LG_CONN_DEAD)
        run->dead++;
    c->state = state;
}

static void conn_close_cb(mt_stream_t *s)
{
    lg_conn_t *c = s->data;
    free(c->rbuf);
    c->rbuf = NULL;
    c->rlen = c->rcap = 0;
}

static void conn_close(lg_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    mt_stream_close(&c->stream, conn_close_cb);
}

/* What happens once no connection has work left. */
static void maybe_all_done(lg_run_t *run)
{
    int live = run->o->conns - run->dead;
    if (run->phase == LG_PHASE_DONE)
        return;
    if (live == 0) {
        fprintf(stderr, "mt-loadgen: every connection failed (%s phase)\n",
                lg_phase_str(run->phase));
        run_finish(run);
    } else if (lg_counted(run->o) && run->phase == LG_PHASE_MEASURE && run->resting == live) {
        run_finish(run);
    } else if (run->o->mode == LG_MODE_IDLE && !run->idle_announced &&
               run->resting + run->dead == run->o->conns) {
        /* the readiness line a script waits for before it measures the target */
        run->idle_announced = 1;
        printf("ready idle conns=%d\n", run->resting);
        fflush(stdout);
    }
}

/* A connection that failed: counted once, closed, never reopened. */
static void conn_fail(lg_conn_t *c, const char *why)
{
    lg_run_t *run = c->run;
    if (c->state == LG_CONN_DEAD)
        return;
    if (run->phase != LG_PHASE_DONE) {
        run->res.errors++;
        if (run->res.errors <= 5)
            fprintf(stderr, "mt-loadgen: connection %d: %s\n", c->index, why);
    }
    conn_set_state(c, LG_CONN_DEAD);
    conn_close(c);
    maybe_all_done(run);
}

static void write_cb(mt_stream_write_t *req, int status)
{
    lg_conn_t *c = (lg_conn_t *)((char *)req - offsetof(lg_conn_t, write_req));
    c->write_pending = 0;
    if (status < 0) {
        if (status != UV_ECANCELED)
            conn_fail(c, uv_strerror(status));
        return;
    }
    if (c->send_deferred) {
        c->send_deferred = 0;
        conn_send(c);
    }
}

/* Frames and sends the next request: the 21-byte prefix is per connection,
 * the body may be shared, so nothing is copied. */
static void conn_send(lg_conn_t *c)
{
    lg_run_t *run = c->run;
    if (c->write_pending) {
        /* the previous request's tail is still queued (its reply came first) */
        c->send_deferred = 1;
        return;
    }
    const bson_t *body = next_body(c);
    const uint8_t *data = bson_get_data(body);
    c->request_id = run->next_request_id++;
    if (lg_counted(run->o))
        run->unsent--;
    mt_bw_msg_prefix(c->prefix, body->len, c->request_id, 0);
    c->req_bytes = MT_BW_MSG_PREFIX_LEN + body->len;
    c->seq++;
    c->sent_at = uv_hrtime();

    uv_buf_t bufs[2] = {uv_buf_init((char *)c->prefix, MT_BW_MSG_PREFIX_LEN),
                        uv_buf_init((char *)data, body->len)};
    int n = mt_stream_try_write(&c->stream, bufs, 2);
    if (n < 0 && n != UV_EAGAIN) {
        conn_fail(c, uv_strerror(n));
        return;
    }
    size_t done = n > 0 ? (size_t)n : 0;
    if (done == c->req_bytes)
        return;
    uv_buf_t rest[2];
    unsigned nbufs = 0;
    if (done < MT_BW_MSG_PREFIX_LEN) {
        rest[nbufs++] =
            uv_buf_init((char *)c->prefix + done, (unsigned)(MT_BW_MSG_PREFIX_LEN - done));
        rest[nbufs++] = bufs[1];
    } else {
        size_t off = done - MT_BW_MSG_PREFIX_LEN;
        rest[nbufs++] = uv_buf_init((char *)data + off, (unsigned)(body->len - off));
    }
    int rc = mt_stream_write(&c->write_req, &c->stream, rest, nbufs, write_cb);
    if (rc != 0) {
        conn_fail(c, uv_strerror(rc));
        return;
    }
    c->write_pending = 1;
}

/* Sends the next request if this connection still has work. */
static void conn_continue(lg_conn_t *c)
{
    lg_run_t *run = c->run;
    if (run->phase == LG_PHASE_DONE)
        return;
    if (run->o->mode == LG_MODE_IDLE) {
        conn_set_state(c, LG_CONN_RESTING);
        maybe_all_done(run);
        return;
    }
    if (lg_counted(run->o) && run->unsent == 0) {
        conn_set_state(c, LG_CONN_RESTING);
        maybe_all_done(run);
        return;
    }
    conn_send(c);
}

/* A complete reply: checks it belongs to the request in flight and says ok. */
static void conn_on_reply(lg_conn_t *c, const uint8_t *msg, size_t len)
{
    lg_run_t *run = c->run;
    uint64_t now = uv_hrtime();
    mt_bw_header_t h;
    uint32_t flags;
    const uint8_t *doc;
    size_t doc_len;
    bson_t reply;
    bson_iter_t it;

    mt_bw_header_read(msg, &h);
    if (h.opcode != MT_BW_OP_MSG || h.response_to != c->request_id ||
        !mt_bw_msg_body(msg, len, &flags, &doc, &doc_len) ||
        !bson_init_static(&reply, doc, doc_len)) {
        conn_fail(c, "reply does not answer the request in flight");
        return;
    }
    int ok = bson_iter_init_find(&it, &reply, "ok") && bson_iter_as_bool(&it);
    if (!ok) {
        run->res.errors++;
        if (run->res.errors <= 5) {
            char *json = bson_as_relaxed_extended_json(&reply, NULL);
            fprintf(stderr, "mt-loadgen: connection %d: reply not ok: %.300s\n", c->index, json);
            bson_free(json);
        }
    }
    run->res.all_requests++;
    if (run->phase == LG_PHASE_MEASURE) {
        run->res.requests++;
        run->res.bytes_out += c->req_bytes;
        run->res.bytes_in += len;
        mt_lathist_record(&run->res.hist, now - c->sent_at);
    }
    conn_continue(c);
}

static void alloc_cb(mt_stream_t *s, uv_buf_t *buf)
{
    lg_conn_t *c = s->data;
    size_t need = LG_READ_MIN;
    if (c->rlen >= MT_BW_HEADER_LEN) {
        int32_t mlen = (int32_t)mt_bw_ld32(c->rbuf);
        if (mt_bw_length_ok(mlen) && (size_t)mlen > c->rlen)
            need = (size_t)mlen - c->rlen; /* room for the whole reply: one copy, from the kernel */
    }
    if (c->rcap - c->rlen < need) {
        size_t cap = c->rlen + need;
        if (cap < LG_READ_INITIAL)
            cap = LG_READ_INITIAL;
        uint8_t *nb = realloc(c->rbuf, cap);
        if (nb == NULL) {
            *buf = uv_buf_init(NULL, 0);
            return;
        }
        c->rbuf = nb;
        c->rcap = cap;
    }
    *buf = uv_buf_init((char *)c->rbuf + c->rlen, (unsigned)(c->rcap - c->rlen));
}

static void read_cb(mt_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    lg_conn_t *c = s->data;
    (void)buf;
    if (nread < 0) {
        conn_fail(c, nread == UV_EOF ? "closed by the target" : uv_strerror((int)nread));
        return;
    }
    c->rlen += (size_t)nread;
    size_t off = 0;
    while (c->rlen - off >= MT_BW_HEADER_LEN && c->state != LG_CONN_DEAD) {
        int32_t mlen = (int32_t)mt_bw_ld32(c->rbuf + off);
        if (!mt_bw_length_ok(mlen)) {
            conn_fail(c, "impossible message length in a reply");
            return;
        }
        if (c->rlen - off < (size_t)mlen)
            break;
        conn_on_reply(c, c->rbuf + off, (size_t)mlen);
        off += (size_t)mlen;
    }
    if (off > 0 && c->rbuf != NULL) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
}

/* ---- phases ---- */

static void timer_cb(uv_timer_t *t);

static void enter_measure(lg_run_t *run)
{
    run->phase = LG_PHASE_MEASURE;
    run->measure_start = uv_hrtime();
    if (run->o->seconds > 0)
        uv_timer_start(&run->timer, timer_cb, (uint64_t)(run->o->seconds * 1000.0 + 0.5), 0);
}

static void timer_cb(uv_timer_t *t)
{
    lg_run_t *run = t->data;
    if (run->phase == LG_PHASE_WARMUP) {
        enter_measure(run);
        return;
    }
    if (lg_counted(run->o)) {
        fprintf(stderr, "mt-loadgen: time limit reached with %llu requests unsent\n",
                (unsigned long long)run->unsent);
        run->res.errors++;
    }
    run_finish(run);
}

/* Every connection has connected or failed: start the load. */
static void all_settled(lg_run_t *run)
{
    const lg_opts_t *o = run->o;
    run->load_started = 1;
    if (o->mode == LG_MODE_IDLE) {
        /* hellos went out as each connection opened; the timer, if any, ends the hold */
        if (o->seconds > 0)
            uv_timer_start(&run->timer, timer_cb, (uint64_t)(o->seconds * 1000.0 + 0.5), 0);
        return;
    }
    if (lg_counted(o) || o->warmup <= 0) {
        enter_measure(run);
    } else {
        run->phase = LG_PHASE_WARMUP;
        uv_timer_start(&run->timer, timer_cb, (uint64_t)(o->warmup * 1000.0 + 0.5), 0);
    }
    for (int i = 0; i < o->conns; i++) {
        lg_conn_t *c = &run->conns[i];
        if (c->state == LG_CONN_RUNNING)
            conn_continue(c);
    }
}

/* Connected (and, with --tls, through the handshake): the connection runs. */
static void conn_ready(lg_conn_t *c, int status)
{
    lg_run_t *run = c->run;
    run->pending_connects--;
    run->settled++;
    if (status < 0) {
        conn_fail(c, status == UV_EPROTO ? mt_stream_tls_reason(&c->stream) : uv_strerror(status));
    } else if (run->phase != LG_PHASE_DONE) {
        conn_set_state(c, LG_CONN_RUNNING);
        mt_stream_read_start(&c->stream, alloc_cb, read_cb);
        if (run->o->mode == LG_MODE_IDLE)
            conn_send(c);
    }
    if (run->phase == LG_PHASE_DONE)
        return;
    start_connects(run);
    if (run->settled == run->o->conns && !run->load_started)
        all_settled(run);
}

static void handshake_cb(mt_stream_t *s, int status)
{
    conn_ready(s->data, status);
}

static void connect_cb(uv_connect_t *req, int status)
{
    lg_conn_t *c = req->data;
    lg_run_t *run = c->run;
    mt_tls_t *tls;

    if (status < 0 || !run->tls || run->phase == LG_PHASE_DONE) {
        if (status == 0)
            uv_tcp_nodelay(&c->stream.tcp, 1);
        conn_ready(c, status);
        return;
    }
    uv_tcp_nodelay(&c->stream.tcp, 1);
    tls = mt_tls_new(run->tls, run->o->tls_host);
    status = tls ? mt_stream_start_tls(&c->stream, tls, handshake_cb) : UV_ENOMEM;
    if (status < 0)
        conn_ready(c, status);
}

static void start_connects(lg_run_t *run)
{
    struct sockaddr_storage addr;
    const lg_opts_t *o = run->o;
    if (strchr(o->host, ':'))
        uv_ip6_addr(o->host, o->port, (struct sockaddr_in6 *)&addr);
    else
        uv_ip4_addr(o->host, o->port, (struct sockaddr_in *)&addr);

    while (run->pending_connects < LG_MAX_PENDING_CONNECTS && run->next_to_connect < o->conns) {
        lg_conn_t *c = &run->conns[run->next_to_connect++];
        c->connect_req.data = c;
        run->pending_connects++;
        int rc = uv_tcp_connect(&c->connect_req, &c->stream.tcp, (const struct sockaddr *)&addr,
                                connect_cb);
        if (rc != 0) {
            run->pending_connects--;
            run->settled++;
            conn_fail(c, uv_strerror(rc));
            if (run->phase == LG_PHASE_DONE)
                return;
        }
    }
    if (run->settled == o->conns && !run->load_started)
        all_settled(run);
}

/* Ends the run: stops the clock and closes every handle so uv_run returns. */
static void run_finish(lg_run_t *run)
{
    if (run->phase == LG_PHASE_DONE)
        return;
    if (run->phase == LG_PHASE_MEASURE)
        run->measure_end = uv_hrtime();
    else
        run->measure_start = run->measure_end = uv_hrtime();
    run->phase = LG_PHASE_DONE;
    for (int i = 0; i < run->o->conns; i++)
        conn_close(&run->conns[i]);
    uv_close((uv_handle_t *)&run->timer, NULL);
    uv_close((uv_handle_t *)&run->sigint, NULL);
    uv_close((uv_handle_t *)&run->sigterm, NULL);
}

static void signal_cb(uv_signal_t *s, int signum)
{
    (void)signum;
    run_finish(s->data);
}

static int run_raw(const lg_opts_t *o, lg_result_t *res)
{
    lg_run_t *run = calloc(1, sizeof(*run));
    if (run == NULL)
        return -1;
    run->o = o;
    run->loop = uv_default_loop();
    run->next_request_id = 1;
    run->next_shape = o->start;
    run->unsent = o->count;
    run->conns = calloc((size_t)o->conns, sizeof(lg_conn_t));
    if (run->conns == NULL) {
        free(run);
        return -1;
    }
    if (o->tls_ca) {
        char err[512];
        mt_tls_client_opts_t topts = {.ca_file = o->tls_ca};
        run->tls = mt_tls_client_ctx_new(&topts, err, sizeof(err));
        run->pool = mt_stream_pool_new();
        if (!run->tls || !run->pool) {
            fprintf(stderr, "mt-loadgen: --tls: %s\n", run->tls ? "out of memory" : err);
            mt_tls_ctx_free(run->tls);
            mt_stream_pool_free(run->pool);
            free(run->conns);
            free(run);
            return -1;
        }
    }
    build_static_bodies(run);
    for (int i = 0; i < o->conns; i++) {
        lg_conn_t *c = &run->conns[i];
        c->run = run;
        c->index = i;
        c->state = LG_CONN_CONNECTING;
        c->rng = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
        bson_init(&c->body);
        mt_stream_init(run->loop, &c->stream, run->pool);
        c->stream.data = c;
    }
    uv_timer_init(run->loop, &run->timer);
    run->timer.data = run;
    uv_signal_init(run->loop, &run->sigint);
    uv_signal_init(run->loop, &run->sigterm);
    run->sigint.data = run->sigterm.data = run;
    uv_signal_start(&run->sigint, signal_cb, SIGINT);
    uv_signal_start(&run->sigterm, signal_cb, SIGTERM);

    if (o->mode == LG_MODE_IDLE) {
        /* every hello is measured: the figures say how long connecting took */
        run->phase = LG_PHASE_MEASURE;
        run->measure_start = uv_hrtime();
    }
    start_connects(run);
    uv_run(run->loop, UV_RUN_DEFAULT);

    *res = run->res;
    res->seconds = (double)(run->measure_end - run->measure_start) / 1e9;
    for (int i = 0; i < o->conns; i++)
        bson_destroy(&run->conns[i].body);
    free_static_bodies(run);
    free(run->conns);
    uv_loop_close(uv_default_loop());
    mt_stream_pool_free(run->pool);
    mt_tls_ctx_free(run->tls);
    free(run);
    return 0;
}

/* ---- command line and output ---- */

static void print_result(const lg_opts_t *o, const lg_result_t *r)
{
    double secs = r->seconds > 0 ? r->seconds : 1e-9;
    double rps = (double)r->requests / secs;
    double bps = (double)(r->bytes_in + r->bytes_out) / secs;
    double p50 = (double)mt_lathist_quantile(&r->hist, 0.50) / 1000.0;
    double p99 = (double)mt_lathist_quantile(&r->hist, 0.99) / 1000.0;
    double p999 = (double)mt_lathist_quantile(&r->hist, 0.999) / 1000.0;
    double mean = r->hist.count ? (double)r->hist.sum_ns / (double)r->hist.count / 1000.0 : 0.0;
    double max = (double)r->hist.max_ns / 1000.0;

    if (!o->json) {
        printf("%s %s (%s) conns=%d: %llu requests in %.2f s = %.0f req/s, %.1f MB/s, "
               "p50 %.1f us, p99 %.1f us, errors %llu\n",
               o->label, lg_mode_str(o->mode), lg_engine_str(o->engine), o->conns,
               (unsigned long long)r->requests, r->seconds, rps, bps / 1e6, p50, p99,
               (unsigned long long)r->errors);
        return;
    }
    bson_t b = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&b, "target", o->label);
    BSON_APPEND_UTF8(&b, "addr", o->target);
    BSON_APPEND_UTF8(&b, "mode", lg_mode_str(o->mode));
    BSON_APPEND_UTF8(&b, "engine", lg_engine_str(o->engine));
    BSON_APPEND_INT32(&b, "conns", o->conns);
    BSON_APPEND_DOUBLE(&b, "seconds", r->seconds);
    BSON_APPEND_INT64(&b, "requests", (int64_t)r->requests);
    BSON_APPEND_INT64(&b, "all_requests", (int64_t)r->all_requests);
    BSON_APPEND_DOUBLE(&b, "req_per_s", rps);
    BSON_APPEND_DOUBLE(&b, "bytes_per_s", bps);
    BSON_APPEND_INT64(&b, "bytes_out", (int64_t)r->bytes_out);
    BSON_APPEND_INT64(&b, "bytes_in", (int64_t)r->bytes_in);
    BSON_APPEND_DOUBLE(&b, "p50_us", p50);
    BSON_APPEND_DOUBLE(&b, "p99_us", p99);
    BSON_APPEND_DOUBLE(&b, "p999_us", p999);
    BSON_APPEND_DOUBLE(&b, "mean_us", mean);
    BSON_APPEND_DOUBLE(&b, "max_us", max);
    BSON_APPEND_INT64(&b, "errors", (int64_t)r->errors);
    char *json = bson_as_relaxed_extended_json(&b, NULL);
    printf("%s\n", json);
    bson_free(json);
    bson_destroy(&b);
}

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: mt-loadgen --target HOST:PORT [options]\n"
        "  --mode M        find1 | find100 | insert1k | big4m | shapes | sameshape | idle\n"
        "                  (default find1)\n"
        "  --conns N       connections, each with one request in flight (default 1)\n"
        "  --seconds S     measured time (default 5); for shapes, sameshape and idle a time\n"
        "                  limit (default: none)\n"
        "  --warmup S      unmeasured time before it (default 1)\n"
        "  --count N       requests to send, then stop (no warm-up; shapes and sameshape:\n"
        "                  default 100000; other modes: run for --seconds when not given)\n"
        "  --start N       shapes: number of the first field name f<N> (default 0)\n"
        "  --driver mongoc use libmongoc (one client and thread per connection; find1, find100)\n"
        "  --label NAME    name printed as \"target\" (default: the target address)\n"
        "  --tls CAFILE    speak TLS, verifying the target's certificate against CAFILE\n"
        "  --tls-host NAME the name sent as SNI and checked in the certificate (default\n"
        "                  localhost)\n"
        "  --json          print one JSON line instead of a sentence\n"
        "idle mode prints 'ready idle conns=N' once every hello is answered and holds the\n"
        "connections until SIGTERM/SIGINT or --seconds.\n");
}

static int parse_double(const char *flag, const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || v < 0) {
        fprintf(stderr, "mt-loadgen: %s: not a non-negative number: %s\n", flag, s);
        return 0;
    }
    *out = v;
    return 1;
}

static int parse_u64(const char *flag, const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || s[0] == '-') {
        fprintf(stderr, "mt-loadgen: %s: not a count: %s\n", flag, s);
        return 0;
    }
    *out = v;
    return 1;
}

/* HOST:PORT or [V6HOST]:PORT */
static int parse_target(lg_opts_t *o)
{
    const char *t = o->target;
    const char *colon = strrchr(t, ':');
    if (colon == NULL)
        return 0;
    const char *h = t;
    size_t hlen = (size_t)(colon - t);
    if (hlen >= 2 && t[0] == '[' && t[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= sizeof(o->host))
        return 0;
    memcpy(o->host, h, hlen);
    o->host[hlen] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port <= 0 || port > 65535)
        return 0;
    o->port = (int)port;
    struct sockaddr_storage addr;
    if (strchr(o->host, ':'))
        return uv_ip6_addr(o->host, o->port, (struct sockaddr_in6 *)&addr) == 0;
    return uv_ip4_addr(o->host, o->port, (struct sockaddr_in *)&addr) == 0;
}

/* Idle mode holds thousands of sockets: take every descriptor we may. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    lg_opts_t o = {
        .mode = LG_MODE_FIND1,
        .engine = LG_ENGINE_RAW,
        .conns = 1,
        .seconds = 5,
        .warmup = 1,
        .count = 100000,
        .tls_host = "localhost",
    };
    uint64_t conns = 1;
    int seconds_set = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            o.json = 1;
            continue;
        }
        if (strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (v == NULL) {
            fprintf(stderr, "mt-loadgen: unknown option or missing value: %s\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--target") == 0) {
            o.target = v;
        } else if (strcmp(a, "--label") == 0) {
            o.label = v;
        } else if (strcmp(a, "--tls") == 0) {
            o.tls_ca = v;
        } else if (strcmp(a, "--tls-host") == 0) {
            o.tls_host = v;
        } else if (strcmp(a, "--mode") == 0) {
            if (!parse_mode(v, &o.mode)) {
                fprintf(stderr, "mt-loadgen: --mode: unknown mode: %s\n", v);
                return 2;
            }
        } else if (strcmp(a, "--driver") == 0) {
            if (strcmp(v, "mongoc") != 0) {
                fprintf(stderr, "mt-loadgen: --driver: only 'mongoc' is supported: %s\n", v);
                return 2;
            }
            o.engine = LG_ENGINE_MONGOC;
        } else if (strcmp(a, "--conns") == 0) {
            if (!parse_u64(a, v, &conns))
                return 2;
            if (conns < 1 || conns > 1000000) {
                fprintf(stderr, "mt-loadgen: --conns: between 1 and 1000000: %s\n", v);
                return 2;
            }
            o.conns = (int)conns;
        } else if (strcmp(a, "--seconds") == 0) {
            if (!parse_double(a, v, &o.seconds))
                return 2;
            seconds_set = 1;
        } else if (strcmp(a, "--warmup") == 0) {
            if (!parse_double(a, v, &o.warmup))
                return 2;
        } else if (strcmp(a, "--count") == 0) {
            if (!parse_u64(a, v, &o.count))
                return 2;
            o.count_given = 1;
        } else if (strcmp(a, "--start") == 0) {
            if (!parse_u64(a, v, &o.start))
                return 2;
        } else {
            fprintf(stderr, "mt-loadgen: unknown option: %s\n", a);
            return 2;
        }
    }
    if (o.target == NULL || !parse_target(&o)) {
        fprintf(stderr, "mt-loadgen: --target HOST:PORT is required (an IP address and a port)\n");
        return 2;
    }
    if (o.label == NULL)
        o.label = o.target;
    if (o.tls_ca && o.engine != LG_ENGINE_RAW) {
        fprintf(stderr, "mt-loadgen: --tls: only with the raw engine\n");
        return 2;
    }
    if (!seconds_set && (lg_counted(&o) || o.mode == LG_MODE_IDLE))
        o.seconds = 0; /* no time limit unless asked */
    if (o.seconds <= 0 && !lg_counted(&o) && o.mode != LG_MODE_IDLE) {
        fprintf(stderr, "mt-loadgen: --seconds must be > 0 for mode %s\n", lg_mode_str(o.mode));
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    lg_result_t *res = calloc(1, sizeof(*res));
    if (res == NULL)
        return 1;
    int rc = o.engine == LG_ENGINE_MONGOC ? lg_driver_run(&o, res) : run_raw(&o, res);
    if (rc != 0) {
        free(res);
        return 1;
    }
    print_result(&o, res);
    int status = res->errors > 0 || (res->requests == 0 && o.mode != LG_MODE_IDLE) ? 1 : 0;
    free(res);
    return status;
}
