/*
 * test_proxy: the forwarding path on a real libuv loop. An echo server plays
 * the upstream; a client writes messages in pieces through the proxy and
 * checks what comes back, byte for byte. Every handle is closed before the
 * loop is checked empty.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cli.h"
#include "proto_test_util.h"
#include "proxy.h"
#include "stats.h"

/* ---- a tiny upstream: echoes, or streams a fixed amount on demand ------ */

typedef struct {
    uv_tcp_t listener;
    uv_tcp_t conns[8]; /* the session's and the monitor's: told apart by their first bytes */
    int nconns;
    uv_tcp_t *conn; /* the session's */
    bool have_conn;
    bool echo;
    uint8_t *received;
    size_t received_len, received_cap;
    size_t flood_bytes; /* sent once the first byte arrives, when not echoing */
    bool flooded;
    bool close_after_flood; /* then close the connection, as a server that hangs up */
    size_t stop_at;         /* stop the loop once this many bytes arrived */
    int port;
} upstream_t;

typedef struct {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uint8_t *got;
    size_t got_len, got_cap;
    bool eof;
    bool reading;
    const uint8_t *send;
    size_t send_len, sent;
    size_t piece;
    uv_timer_t pacer;
    size_t expect; /* stop the loop when this many bytes came back */
} client_t;

static uv_loop_t loop;
static upstream_t up;
static client_t cl;
static mt_stats_t *stats;
static mt_proxy_t *proxy;
static mt_cli_config_t cfg;
static int proxy_port;

static void append(uint8_t **buf, size_t *len, size_t *cap, const void *data, size_t n)
{
    if (*len + n > *cap) {
        *cap = (*len + n) * 2;
        *buf = realloc(*buf, *cap);
        cr_assert_not_null(*buf);
    }
    memcpy(*buf + *len, data, n);
    *len += n;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(suggested);
    buf->len = suggested;
}

/* Whole messages of an opcode nobody decodes, so only framing applies. */
#define FLOOD_MSG (64u << 10)
static void make_flood(uint8_t *data, size_t len)
{
    for (size_t off = 0; off < len; off += FLOOD_MSG) {
        int32_t h[4] = {(int32_t)FLOOD_MSG, (int32_t)(off / FLOOD_MSG), 0, 9999};
        memcpy(data + off, h, sizeof(h));
        for (size_t i = 16; i < FLOOD_MSG; i++)
            data[off + i] = (uint8_t)(i * 7 + off / FLOOD_MSG);
    }
}

static void flood_written_cb(uv_write_t *req, int status)
{
    (void)status;
    free(req->data);
    free(req);
    if (up.close_after_flood)
        uv_close((uv_handle_t *)up.conn, NULL);
}

static void up_write_cb(uv_write_t *req, int status)
{
    (void)status;
    free(req->data);
    free(req);
}

/* mongotap's monitor connects too and names itself in its first hello:
 * its connections are closed, every other one is the session's. */
static bool is_monitor(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    if (s->data == &up)
        return false;
    if (nread > 0 && memmem(buf->base, (size_t)nread, "mongotap monitor", 16)) {
        uv_close((uv_handle_t *)s, NULL);
        return true;
    }
    cr_assert_not(up.have_conn, "one upstream connection per client");
    up.have_conn = true;
    up.conn = (uv_tcp_t *)s;
    s->data = &up;
    return false;
}

static void up_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    if (is_monitor(s, nread, buf)) {
        free(buf->base);
        return;
    }
    if (nread > 0) {
        append(&up.received, &up.received_len, &up.received_cap, buf->base, (size_t)nread);
        if (up.stop_at && up.received_len >= up.stop_at)
            uv_stop(&loop);
        if (up.echo) {
            uv_write_t *req = malloc(sizeof(*req));
            uv_buf_t b = uv_buf_init(buf->base, (unsigned)nread);
            req->data = buf->base;
            uv_write(req, s, &b, 1, up_write_cb);
            return;
        }
        if (!up.flooded && up.flood_bytes) {
            uv_write_t *req = malloc(sizeof(*req));
            uint8_t *data = malloc(up.flood_bytes);
            uv_buf_t b = uv_buf_init((char *)data, (unsigned)up.flood_bytes);
            make_flood(data, up.flood_bytes);
            req->data = data;
            up.flooded = true;
            uv_write(req, s, &b, 1, flood_written_cb);
        }
    } else if (nread < 0) {
        uv_read_stop(s);
    }
    free(buf->base);
}

static void up_on_connection(uv_stream_t *server, int status)
{
    uv_tcp_t *c = &up.conns[up.nconns++];

    cr_assert_eq(status, 0);
    cr_assert_lt(up.nconns, 8);
    uv_tcp_init(&loop, c);
    cr_assert_eq(uv_accept(server, (uv_stream_t *)c), 0);
    uv_read_start((uv_stream_t *)c, alloc_cb, up_read_cb);
}

static int bound_port(uv_tcp_t *t)
{
    struct sockaddr_in sa;
    int n = sizeof(sa);

    cr_assert_eq(uv_tcp_getsockname(t, (struct sockaddr *)&sa, &n), 0);
    return ntohs(sa.sin_port);
}

static uint32_t stats_max_conns; /* 0: the default */

static void start(bool echo, size_t flood_bytes)
{
    struct sockaddr_in sa;
    mt_stats_config_t scfg;
    char bound[256], *colon;

    cr_assert_eq(uv_loop_init(&loop), 0);
    memset(&up, 0, sizeof(up));
    memset(&cl, 0, sizeof(cl));
    up.echo = echo;
    up.flood_bytes = flood_bytes;
    uv_tcp_init(&loop, &up.listener);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    cr_assert_eq(uv_tcp_bind(&up.listener, (struct sockaddr *)&sa, 0), 0);
    cr_assert_eq(uv_listen((uv_stream_t *)&up.listener, 16, up_on_connection), 0);
    up.port = bound_port(&up.listener);

    mt_cli_defaults(&cfg);
    cfg.nlisten = 1;
    cfg.listen[0] = (mt_hostport_t){"127.0.0.1", 0};
    {
        char up_s[32], err[128];
        snprintf(up_s, sizeof(up_s), "127.0.0.1:%d", up.port);
        cr_assert_eq(mt_uri_parse(up_s, &cfg.upstream_uri, err, sizeof(err)), 0, "%s", err);
        cfg.upstream = cfg.upstream_uri.hosts[0];
    }
    cfg.admin_enabled = false;
    mt_stats_config_defaults(&scfg);
    if (stats_max_conns)
        scfg.max_conns = stats_max_conns;
    stats = mt_stats_new(&scfg, uv_hrtime());
    cr_assert_not_null(stats);
    proxy = mt_proxy_new(&loop, &cfg, stats);
    cr_assert_not_null(proxy);
    cr_assert_eq(mt_proxy_listen(proxy, bound, sizeof(bound)), 0);
    colon = strrchr(bound, ':');
    cr_assert_not_null(colon);
    proxy_port = atoi(colon + 1);
    cr_assert_gt(proxy_port, 0);
}

static void drained_cb(mt_proxy_t *p, void *data)
{
    (void)p;
    (void)data;
    uv_stop(&loop);
}

static void close_all_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void finish(void)
{
    /* the proxy closes its own handles (sessions, monitor) once drained;
     * what is left is the test's */
    if (mt_proxy_monitor(proxy)) { /* not drained by the test itself */
        mt_proxy_drain(proxy, drained_cb, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    uv_walk(&loop, close_all_cb, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(mt_proxy_active(proxy), 0, "every session closed");
    cr_assert_eq(uv_loop_close(&loop), 0, "no handle left open");
    mt_proxy_free(proxy);
    mt_stats_free(stats);
    free(up.received);
    free(cl.got);
}

/* ---- the client ------------------------------------------------------- */

static void cl_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    if (nread > 0) {
        append(&cl.got, &cl.got_len, &cl.got_cap, buf->base, (size_t)nread);
        if (cl.expect && cl.got_len >= cl.expect)
            uv_stop(&loop);
    } else if (nread < 0) {
        cl.eof = true;
        uv_read_stop(s);
        uv_stop(&loop);
    }
    free(buf->base);
}

static void cl_write_cb(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

static void send_next_piece(uv_timer_t *t)
{
    size_t n = cl.send_len - cl.sent < cl.piece ? cl.send_len - cl.sent : cl.piece;
    uv_write_t *req;
    uv_buf_t b;

    if (n == 0) {
        uv_timer_stop(t);
        return;
    }
    req = malloc(sizeof(*req));
    b = uv_buf_init((char *)cl.send + cl.sent, (unsigned)n);
    cl.sent += n;
    uv_write(req, (uv_stream_t *)&cl.tcp, &b, 1, cl_write_cb);
}

static void cl_connect_cb(uv_connect_t *req, int status)
{
    (void)req;
    cr_assert_eq(status, 0);
    if (cl.reading)
        uv_read_start((uv_stream_t *)&cl.tcp, alloc_cb, cl_read_cb);
    uv_timer_start(&cl.pacer, send_next_piece, 0, 1);
}

static void client_send(const uint8_t *data, size_t len, size_t piece, bool reading)
{
    struct sockaddr_in sa;

    cl.send = data;
    cl.send_len = len;
    cl.piece = piece;
    cl.reading = reading;
    uv_tcp_init(&loop, &cl.tcp);
    uv_timer_init(&loop, &cl.pacer);
    uv_ip4_addr("127.0.0.1", proxy_port, &sa);
    cr_assert_eq(uv_tcp_connect(&cl.connect, &cl.tcp, (struct sockaddr *)&sa, cl_connect_cb), 0);
}

/* The shared ping vector with its own request id. */
static size_t make_ping(uint8_t *out, int32_t request_id)
{
    memcpy(out, ping_op_msg, sizeof(ping_op_msg));
    mt_wire_put_le32(out + 4, (uint32_t)request_id);
    return sizeof(ping_op_msg);
}

static void run_echo_case(int messages, size_t piece)
{
    uint8_t stream[64 * 64];
    size_t len = 0;

    start(true, 0);
    for (int i = 0; i < messages; i++)
        len += make_ping(stream + len, i + 1);
    cl.expect = len;
    client_send(stream, len, piece, true);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(up.received_len, len, "upstream got %zu of %zu bytes", up.received_len, len);
    cr_assert_arr_eq(up.received, stream, len, "upstream saw the bytes unchanged");
    cr_assert_eq(cl.got_len, len);
    cr_assert_arr_eq(cl.got, stream, len, "client got the replies unchanged");
    finish();
}

Test(proxy, forwards_one_byte_at_a_time)
{
    run_echo_case(6, 1);
}

Test(proxy, forwards_odd_pieces)
{
    run_echo_case(64, 23);
}

Test(proxy, forwards_coalesced)
{
    run_echo_case(64, 64 * 64);
}

Test(proxy, impossible_header_never_reaches_upstream)
{
    uint8_t stream[256];
    size_t len = make_ping(stream, 1);
    int32_t bad[4] = {8, 2, 0, 2013};

    start(true, 0);
    memcpy(stream + len, bad, sizeof(bad));
    client_send(stream, len + sizeof(bad), 5, true);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert(cl.eof, "the client connection is closed");
    cr_assert_leq(up.received_len, len, "no byte of the bad message was forwarded");
    cr_assert_arr_eq(up.received, stream, up.received_len);
    cr_assert_eq(mt_stats_get(stats, MT_STAT_PROTOCOL_ERRORS), 1);
    finish();
}

/* The upstream sends far more than the client reads: the proxy must stop
 * reading upstream instead of queueing it all. */
static void check_backpressure(uv_timer_t *t)
{
    mt_proxy_usage_t u;

    mt_proxy_usage(proxy, &u);
    if (u.paused_sides == 0)
        return; /* not backed up yet */
    cr_assert_leq(u.queued_bytes, MT_PROXY_QUEUE_HIGH + MT_PROXY_READ_BUF,
                  "queued %zu bytes while paused", u.queued_bytes);
    uv_timer_stop(t);
    /* now drain: read everything */
    cl.reading = true;
    uv_read_start((uv_stream_t *)&cl.tcp, alloc_cb, cl_read_cb);
}

static void never_paused(uv_timer_t *t)
{
    (void)t;
    cr_assert_fail("the proxy never stopped reading the upstream");
}

Test(proxy, backpressure_bounds_memory)
{
    uv_timer_t guard;
    uint8_t ping[64];
    size_t flood = 48u << 20;
    uv_timer_t watch;

    start(false, flood);
    client_send(ping, make_ping(ping, 1), 64, false);
    cl.expect = flood;
    uv_timer_init(&loop, &watch);
    uv_timer_start(&watch, check_backpressure, 5, 5);
    uv_timer_init(&loop, &guard);
    uv_timer_start(&guard, never_paused, 20000, 0);
    uv_unref((uv_handle_t *)&guard);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(cl.got_len, flood, "every byte arrived after the client caught up");
    {
        uint8_t *want = malloc(flood);
        make_flood(want, flood);
        cr_assert_arr_eq(cl.got, want, flood, "in order and unchanged");
        free(want);
    }
    cr_assert_eq(mt_stats_get(stats, MT_STAT_PROTOCOL_ERRORS), 0);
    finish();
}

/* A server that sends a long reply and hangs up at once: the client, reading
 * slowly, must still get every byte (the proxy may not drop what it queued). */
static void start_reading(uv_timer_t *t)
{
    uv_timer_stop(t);
    cl.reading = true;
    uv_read_start((uv_stream_t *)&cl.tcp, alloc_cb, cl_read_cb);
}

Test(proxy, upstream_close_after_reply_delivers_every_byte)
{
    uint8_t ping[64];
    size_t flood = 16u << 20;
    uv_timer_t later;
    uint8_t *want;

    start(false, flood);
    up.close_after_flood = true;
    client_send(ping, make_ping(ping, 1), 64, false);
    uv_timer_init(&loop, &later);
    /* read only once the upstream is surely gone: the proxy holds the rest */
    uv_timer_start(&later, start_reading, 300, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert(cl.eof, "the client connection is closed after the reply");
    cr_assert_eq(cl.got_len, flood, "client got %zu of %zu bytes", cl.got_len, flood);
    want = malloc(flood);
    make_flood(want, flood);
    cr_assert_arr_eq(cl.got, want, flood, "in order and unchanged");
    free(want);
    finish();
}

Test(proxy, valid_message_before_impossible_header_is_forwarded)
{
    uint8_t stream[256];
    size_t len = make_ping(stream, 1);
    int32_t bad[4] = {8, 2, 0, 2013};

    start(true, 0);
    memcpy(stream + len, bad, sizeof(bad));
    /* one write: the ping and the bad header arrive in the same read */
    client_send(stream, len + sizeof(bad), len + sizeof(bad), true);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert(cl.eof, "the client connection is closed");
    cr_assert_eq(up.received_len, len, "the ping reached the upstream whole, nothing after it");
    cr_assert_arr_eq(up.received, stream, len);
    cr_assert_eq(mt_stats_get(stats, MT_STAT_PROTOCOL_ERRORS), 1);
    cr_assert_eq(mt_stats_get(stats, MT_STAT_COMMANDS), 1, "the ping was accounted");
    finish();
}

static bool drained;
static void drained_flag_cb(mt_proxy_t *p, void *data)
{
    (void)p;
    (void)data;
    drained = true;
}

Test(proxy, drain_does_not_wait_on_accounting)
{

    bson_t *cmd = fx_json("{\"insert\": \"t\", \"documents\": [{\"a\": 1}], \"$db\": \"x\"}");
    size_t len;
    /* a w:0 write: moreToCome, so no reply will ever come */
    uint8_t *m = fx_op_msg(MT_MSG_FLAG_MORE_TO_COME, 7, 0, cmd, NULL, NULL, 0, &len);
    mt_proxy_usage_t u;

    stats_max_conns = 1;
    start(false, 0);
    stats_max_conns = 0;
    /* stats tracks one connection at most, and that one is taken */
    mt_stats_conn_t *filler = mt_stats_conn_open(stats, 99, "127.0.0.1:9", uv_hrtime());
    cr_assert_not_null(filler);
    up.stop_at = len;
    client_send(m, len, len, true);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(up.received_len, len, "the write reached the upstream");
    cr_assert_eq(mt_stats_get(stats, MT_STAT_COMMANDS), 0, "stats did not see it");
    cr_assert_eq(mt_stats_get(stats, MT_STAT_ACCOUNTING_SHED), 1);

    drained = false;
    mt_proxy_drain(proxy, drained_flag_cb, NULL);
    uv_run(&loop, UV_RUN_DEFAULT); /* until the client sees the close */
    cr_assert(cl.eof);
    cr_assert(drained, "every session finished");
    mt_proxy_usage(proxy, &u);
    cr_assert_eq(u.drain_cut, 0, "no session waited for the drain timeout");
    mt_stats_conn_close(filler, uv_hrtime());
    free(m);
    bson_destroy(cmd);
    finish();
}

Test(proxy, upstream_refused_closes_client)
{
    uint8_t ping[64];

    start(true, 0);
    /* point the proxy at the listener's port after closing it */
    uv_close((uv_handle_t *)&up.listener, NULL);
    client_send(ping, make_ping(ping, 1), 64, true);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert(cl.eof);
    cr_assert_eq(mt_stats_get(stats, MT_STAT_UPSTREAM_ERRORS), 1);
    finish();
}
