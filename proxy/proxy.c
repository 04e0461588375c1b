/*
 * proxy: each client connection gets one upstream connection; the pair is a
 * session. Read buffers are handed to the peer's write as they are (no
 * copy; in TLS they are decrypted into and encrypted from, stream.c). The
 * framer checks every header before any byte of its message leaves; the
 * accounting step (account.c) reads the same bytes after the write is
 * queued, so accounting never delays forwarding.
 *
 *   client --read--> [rbuf] --write--> upstream
 *                      `--> account --> (views) --> stats
 *
 * The upstream member comes from the monitor (upstream.c); a session bound
 * to a member that stops being primary is closed once it owes no reply, so
 * the driver reconnects, to the new primary.
 *
 * A session's life, changed only by session_set_state(), always forward:
 *
 *   NEW -> CONNECTING -> ACTIVE -> [FLUSHING] -> CLOSING
 *   (and from any state straight to CLOSING)
 */
#include "proxy.h"

#include <assert.h>
#include <h2o/linklist.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "account.h"
#include "bufpool.h"
#include "dns.h"
#include "listener.h"
#include "log.h"
#include "monitor.h"
#include "stream.h"
#include "tls.h"
#include "upstream.h"
#include "wire.h"

typedef enum { MT_SIDE_CLIENT = 0, MT_SIDE_UPSTREAM = 1 } mt_side_kind_t;

typedef struct mt_side {
    mt_stream_t stream; /* plaintext or TLS */
    mt_side_kind_t kind;
    struct mt_session *session;
    struct mt_side *peer;
    mt_wire_framer_t framer; /* decides what may be forwarded */
    mt_account_side_t acct;  /* frames the same bytes again for accounting */
    size_t queued;           /* buffer bytes queued for writing to this side */
    bool reading;
    bool paused; /* reading stopped by backpressure */
    bool eof;
    bool shut;       /* shutdown issued */
    bool seen_bytes; /* something was read (a ClientHello shows in the first read) */
} mt_side_t;

typedef enum {
    MT_SESSION_NEW = 0,    /* accepted (or not yet): handles open, nothing started */
    MT_SESSION_CONNECTING, /* to the upstream (and TLS handshakes on either side) */
    MT_SESSION_ACTIVE,
    MT_SESSION_FLUSHING, /* one side is done: delivering what is queued, then closing */
    MT_SESSION_CLOSING,
} mt_session_state_t;

static const char *session_state_str(mt_session_state_t st)
{
    switch (st) {
    case MT_SESSION_NEW:
        return "new";
    case MT_SESSION_CONNECTING:
        return "connecting";
    case MT_SESSION_ACTIVE:
        return "active";
    case MT_SESSION_FLUSHING:
        return "flushing";
    case MT_SESSION_CLOSING:
        return "closing";
    }
    return "unknown";
}

typedef struct mt_session {
    uint64_t id;
    char client_addr[64];
    mt_session_state_t state;
    mt_proxy_t *proxy;
    mt_side_t client;
    mt_side_t upstream;
    uv_timer_t timer; /* connect timeout, then flush timeout */
    mt_upstream_conn_t up_conn;
    uv_shutdown_t shutdown_req[2];
    mt_stats_conn_t *stats; /* NULL when stats does not track it */
    int64_t inflight;       /* requests forwarded that still expect a reply */
    bool client_ready;      /* the client's TLS handshake is done (or it is plaintext) */
    bool upstream_ready;
    bool retiring; /* its member is no longer primary: close once nothing is owed */
    /* FLUSHING: the side whose queued bytes are delivered before closing, and why */
    mt_side_t *flush_to;
    mt_log_level_t flush_level;
    char flush_reason[128];
    int handles_open;
    h2o_linklist_t link; /* in proxy->sessions */
} mt_session_t;

struct mt_proxy {
    uv_loop_t *loop;
    const mt_cli_config_t *cfg;
    mt_stats_t *stats;
    mt_account_t *account;
    mt_listen_t listen;
    mt_bufpool_t pool;
    mt_upstream_t upstream;
    mt_dns_t *dns;
    mt_monitor_t *monitor;
    mt_tls_ctx_t *upstream_tls; /* NULL: plaintext upstream */
    mt_tls_ctx_t *listen_tls;   /* --tls-listen, NULL without */
    mt_stream_pool_t *tls_pool; /* ciphertext buffers, NULL without TLS */
    char tls_bound[1024];
    h2o_linklist_t sessions;
    size_t active;
    uint64_t next_id;
    /* drain */
    bool draining;
    size_t drain_cut; /* sessions the drain timeout closed */
    uv_timer_t drain_timer;
    bool drain_timer_open;
    mt_proxy_drained_cb drained_cb;
    void *drained_data;
};

static void session_set_state(mt_session_t *s, mt_session_state_t to);
static void proxy_check_drained(mt_proxy_t *p);

#define slog(level, s, ...) mt_log_conn(level, (s)->id, (s)->client_addr, __VA_ARGS__)

#define session_of(node) ((mt_session_t *)((char *)(node)-offsetof(mt_session_t, link)))

/* ---- session lifecycle ------------------------------------------------ */

/* A session lives until its three handles are closed and its upstream
 * connect attempt has called back. */
static void session_release(mt_session_t *s)
{
    mt_proxy_t *p = s->proxy;

    assert(s->handles_open > 0);
    if (--s->handles_open > 0)
        return;
    mt_account_side_release(p->account, &s->client.acct);
    mt_account_side_release(p->account, &s->upstream.acct);
    h2o_linklist_unlink(&s->link);
    p->active--;
    free(s);
    proxy_check_drained(p);
}

static void timer_closed_cb(uv_handle_t *h)
{
    session_release(h->data);
}

static void side_closed_cb(mt_stream_t *st)
{
    session_release(((mt_side_t *)st->data)->session);
}

/* The one teardown path: logs why, tells stats, closes every handle. */
static void session_close(mt_session_t *s, mt_log_level_t level, const char *reason)
{
    if (s->state == MT_SESSION_CLOSING)
        return;
    slog(level, s, "closed: %s (was %s)", reason, session_state_str(s->state));
    session_set_state(s, MT_SESSION_CLOSING);
}

static void side_read_stop(mt_side_t *side)
{
    if (side->reading) {
        mt_stream_read_stop(&side->stream);
        side->reading = false;
    }
}

static void alloc_cb(mt_stream_t *st, uv_buf_t *buf);
static void read_cb(mt_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void side_read_start(mt_side_t *side)
{
    int rc;

    if (side->reading || side->eof || side->session->state != MT_SESSION_ACTIVE)
        return;
    rc = mt_stream_read_start(&side->stream, alloc_cb, read_cb);
    if (rc < 0) {
        session_close(side->session, MT_LOG_WARN, uv_strerror(rc));
        return;
    }
    side->reading = true;
}

static void connect_timeout_cb(uv_timer_t *t);
static void flush_timeout_cb(uv_timer_t *t);
static void session_check_member(mt_session_t *s);

/* Every change of state goes through here, with its bookkeeping: the timer,
 * reading, stats, and the handles at the end. */
static void session_set_state(mt_session_t *s, mt_session_state_t to)
{
    mt_session_state_t from = s->state;

    assert(to > from);
    s->state = to;
    switch (to) {
    case MT_SESSION_NEW:
        break;
    case MT_SESSION_CONNECTING:
        /* one bound for waiting, resolving, connecting and handshakes together */
        if (s->proxy->cfg->upstream_uri.connect_timeout_ms)
            uv_timer_start(&s->timer, connect_timeout_cb,
                           s->proxy->cfg->upstream_uri.connect_timeout_ms, 0);
        break;
    case MT_SESSION_ACTIVE:
        uv_timer_stop(&s->timer);
        side_read_start(&s->upstream);
        side_read_start(&s->client);
        slog(MT_LOG_DEBUG, s, "upstream %s connected", s->up_conn.member_name);
        session_check_member(s);
        break;
    case MT_SESSION_FLUSHING:
        side_read_stop(&s->client);
        side_read_stop(&s->upstream);
        s->client.paused = s->upstream.paused = false;
        uv_timer_start(&s->timer, flush_timeout_cb, MT_PROXY_FLUSH_TIMEOUT_MS, 0);
        break;
    case MT_SESSION_CLOSING:
        if (from == MT_SESSION_CONNECTING)
            mt_upstream_conn_cancel(&s->up_conn); /* its callback still runs */
        if (s->stats) {
            mt_stats_conn_close(s->stats, uv_hrtime());
            s->stats = NULL;
        }
        mt_stream_close(&s->client.stream, side_closed_cb);
        mt_stream_close(&s->upstream.stream, side_closed_cb);
        uv_close((uv_handle_t *)&s->timer, timer_closed_cb);
        break;
    }
}

static void flush_timeout_cb(uv_timer_t *t)
{
    mt_session_t *s = t->data;

    if (s->state == MT_SESSION_FLUSHING)
        session_close(s, MT_LOG_WARN, "peer did not take the remaining bytes in time");
}

/* Nothing more will be read: deliver every byte already queued to `to`, then
 * close (bounded by MT_PROXY_FLUSH_TIMEOUT_MS). Nothing read from one side is
 * dropped while the other can still take it. */
static void session_finish(mt_session_t *s, mt_side_t *to, mt_log_level_t level, const char *reason)
{
    if (s->state == MT_SESSION_CLOSING || s->state == MT_SESSION_FLUSHING)
        return;
    if (s->state != MT_SESSION_ACTIVE || to->queued == 0) {
        session_close(s, level, reason);
        return;
    }
    s->flush_to = to;
    s->flush_level = level;
    snprintf(s->flush_reason, sizeof(s->flush_reason), "%s", reason);
    slog(MT_LOG_DEBUG, s, "%s: delivering %zu queued bytes first", reason, to->queued);
    session_set_state(s, MT_SESSION_FLUSHING);
}

/* ---- writing ---------------------------------------------------------- */

static void write_cb(mt_stream_write_t *req, int status)
{
    mt_write_t *w = (mt_write_t *)req;
    mt_side_t *side = w->side;
    mt_session_t *s = side->session;
    mt_proxy_t *p = s->proxy;

    side->queued -= sizeof(w->rbuf->data);
    mt_bufpool_rbuf_unref(&p->pool, w->rbuf);
    mt_bufpool_write_put(&p->pool, w);
    if (s->state == MT_SESSION_CLOSING)
        return;
    if (status < 0) {
        if (side->kind == MT_SIDE_UPSTREAM)
            mt_stats_add(p->stats, MT_STAT_UPSTREAM_ERRORS, 1);
        session_close(s, MT_LOG_INFO,
                      side->kind == MT_SIDE_CLIENT ? "client write failed"
                                                   : "upstream write failed");
        return;
    }
    if (s->state == MT_SESSION_FLUSHING) {
        if (side == s->flush_to && side->queued == 0)
            session_close(s, s->flush_level, s->flush_reason);
        return;
    }
    if (side->peer->paused && side->queued <= MT_PROXY_QUEUE_LOW) {
        side->peer->paused = false;
        side_read_start(side->peer);
    }
}

/* Drops the first done bytes of bufs[0..*n). */
static void bufs_advance(uv_buf_t *bufs, unsigned *n, size_t done)
{
    while (done > 0 && *n > 0) {
        if (done >= bufs[0].len) {
            done -= bufs[0].len;
            bufs[0] = bufs[1];
            (*n)--;
        } else {
            bufs[0].base += done;
            bufs[0].len -= done;
            done = 0;
        }
    }
}

/* Sends held header bytes (if any) and data[0..len) to the peer. When
 * nothing is queued on that side the bytes are written at once, straight
 * from the read buffer (uv_write would re-arm the socket in epoll for every
 * message); whatever the kernel does not take is queued, and the write
 * request then holds a reference to the read buffer until its callback. */
static int forward(mt_side_t *from, mt_rbuf_t *rbuf, const uint8_t *held, size_t nheld, size_t len)
{
    mt_side_t *to = from->peer;
    mt_proxy_t *p = from->session->proxy;
    mt_stream_t *stream = &to->stream;
    mt_write_t *w;
    uv_buf_t bufs[2];
    unsigned n = 0;
    int rc;

    assert(from->session->state == MT_SESSION_ACTIVE);
    if (nheld)
        bufs[n++] = uv_buf_init((char *)held, (unsigned)nheld);
    if (len)
        bufs[n++] = uv_buf_init((char *)rbuf->data, (unsigned)len);
    if (to->queued == 0) {
        rc = mt_stream_try_write(stream, bufs, n);
        if (rc < 0 && rc != UV_EAGAIN)
            return rc;
        bufs_advance(bufs, &n, rc > 0 ? (size_t)rc : 0);
        if (n == 0)
            return 0;
    }

    w = mt_bufpool_write(&p->pool);
    if (!w)
        return UV_ENOMEM;
    w->side = to;
    w->rbuf = rbuf;
    rbuf->refs++;
    if (nheld && bufs[0].base >= (char *)held && bufs[0].base < (char *)held + nheld) {
        /* unsent header bytes live on the caller's stack: keep a copy */
        memcpy(w->held, bufs[0].base, bufs[0].len);
        bufs[0].base = (char *)w->held;
    }
    to->queued += sizeof(rbuf->data);
    rc = mt_stream_write(&w->req, stream, bufs, n, write_cb);
    if (rc < 0) {
        to->queued -= sizeof(rbuf->data);
        rbuf->refs--;
        mt_bufpool_write_put(&p->pool, w);
        return rc;
    }
    if (to->queued > MT_PROXY_QUEUE_HIGH && from->reading) {
        side_read_stop(from);
        from->paused = true;
    }
    return 0;
}

/* ---- reading ---------------------------------------------------------- */

static void alloc_cb(mt_stream_t *st, uv_buf_t *buf)
{
    mt_side_t *side = st->data;
    mt_rbuf_t *b = mt_bufpool_rbuf(&side->session->proxy->pool);

    *buf = b ? uv_buf_init((char *)b->data, sizeof(b->data)) : uv_buf_init(NULL, 0);
}

/* Replies owed to the client, from what the accounting step decoded (it
 * reads moreToCome itself, so this holds even when stats tracks nothing). */
static void session_owed(mt_session_t *s, const mt_account_result_t *r)
{
    s->inflight += r->requests_expecting_reply;
    s->inflight -= r->final_replies < s->inflight ? (int64_t)r->final_replies : s->inflight;
    if (s->inflight == 0 && s->proxy->draining)
        session_finish(s, &s->client, MT_LOG_INFO, "shutdown");
    else if (s->inflight == 0 && s->retiring)
        session_finish(s, &s->client, MT_LOG_INFO, "its upstream member is no longer primary");
}

static void side_eof(mt_side_t *side)
{
    mt_session_t *s = side->session;
    mt_side_t *peer = side->peer;

    side->eof = true;
    side_read_stop(side);
    if (side->kind == MT_SIDE_UPSTREAM) {
        /* the server hung up: nothing more can be answered, but what it sent
         * before goes to the client whole */
        session_finish(s, peer, MT_LOG_INFO, "upstream closed the connection");
        return;
    }
    if (peer->eof) {
        session_finish(s, peer, MT_LOG_DEBUG, "both sides closed");
        return;
    }
    /* client half-closed: pass it on after the queued bytes */
    if (!peer->shut) {
        peer->shut = true;
        if (mt_stream_shutdown(&s->shutdown_req[peer->kind], &peer->stream, NULL) < 0)
            session_close(s, MT_LOG_DEBUG, "client closed");
    }
}

static void side_read_failed(mt_side_t *side, ssize_t nread)
{
    mt_session_t *s = side->session;
    char why[MT_TLS_REASON_MAX + MT_CLI_HOST_MAX + 64];

    if (nread == UV_EOF) {
        side_eof(side);
    } else if (nread == UV_ENOBUFS) {
        session_close(s, MT_LOG_ERROR, "out of memory for read buffers");
    } else if (nread == UV_EPROTO && !side->seen_bytes) {
        /* in TLS 1.3 a server refuses a client certificate (or the lack of
         * one) after the client thinks the handshake is done: a failure
         * before the first byte is still a handshake failure */
        bool up = side->kind == MT_SIDE_UPSTREAM;
        mt_stats_add(s->proxy->stats,
                     up ? MT_STAT_UPSTREAM_TLS_FAILURES : MT_STAT_CLIENT_TLS_FAILURES, 1);
        if (up)
            mt_stats_add(s->proxy->stats, MT_STAT_UPSTREAM_ERRORS, 1);
        snprintf(why, sizeof(why), "%s%s TLS handshake failed: %s", up ? "upstream " : "client",
                 up ? s->up_conn.member_name : "", mt_stream_tls_reason(&side->stream));
        session_close(s, MT_LOG_WARN, why);
    } else if (side->kind == MT_SIDE_UPSTREAM) {
        mt_stats_add(s->proxy->stats, MT_STAT_UPSTREAM_ERRORS, 1);
        snprintf(why, sizeof(why), "upstream read error: %s",
                 nread == UV_EPROTO ? mt_stream_tls_reason(&side->stream)
                                    : uv_strerror((int)nread));
        session_finish(s, &s->client, MT_LOG_INFO, why);
    } else {
        snprintf(why, sizeof(why), "client read error: %s",
                 nread == UV_EPROTO ? mt_stream_tls_reason(&side->stream)
                                    : uv_strerror((int)nread));
        session_close(s, MT_LOG_INFO, why);
    }
}

/* A TLS ClientHello on a plaintext listener: the app has tls=true and
 * mongotap was not given a TLS listener. Nothing of it goes upstream. */
static bool client_speaks_tls(mt_side_t *side, const uint8_t *data, size_t len)
{
    mt_session_t *s = side->session;

    if (side->kind != MT_SIDE_CLIENT || mt_stream_is_tls(&side->stream))
        return false;
    if (!mt_tls_is_client_hello(data, len))
        return false;
    mt_stats_add(s->proxy->stats, MT_STAT_CLIENT_TLS_ON_PLAIN, 1);
    session_close(s, MT_LOG_WARN,
                  "client speaks TLS: start mongotap with --tls-listen/--tls-cert/--tls-key, "
                  "or connect without tls=true");
    return true;
}

static void read_cb(mt_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    mt_side_t *side = st->data;
    mt_session_t *s = side->session;
    mt_proxy_t *p = s->proxy;
    mt_rbuf_t *rbuf = buf->base ? mt_bufpool_rbuf_of(buf->base) : NULL;
    const uint8_t *data = (const uint8_t *)buf->base;
    mt_account_result_t owed;
    uint8_t held[MT_WIRE_HEADER_LEN];
    char bad[112] = "";
    size_t len, off = 0, fwd_len = 0, nheld = 0;
    bool first;
    int rc;

    if (nread <= 0) {
        if (rbuf)
            mt_bufpool_rbuf_unref(&p->pool, rbuf);
        if (nread < 0)
            side_read_failed(side, nread);
        return; /* 0 is libuv's EAGAIN */
    }
    assert(s->state == MT_SESSION_ACTIVE);
    len = (size_t)nread;
    first = !side->seen_bytes;
    side->seen_bytes = true;
    if (first && client_speaks_tls(side, data, len)) {
        mt_bufpool_rbuf_unref(&p->pool, rbuf);
        return;
    }
    mt_stats_add(p->stats,
                 side->kind == MT_SIDE_CLIENT ? MT_STAT_BYTES_FROM_CLIENTS
                                              : MT_STAT_BYTES_FROM_UPSTREAM,
                 len);

    /* First pass: frame and decide what may leave now. Header bytes that end
     * this read stay in the framer until the header is whole and checked. */
    while (off < len) {
        mt_frame_step_t st;
        mt_wire_framer_step(&side->framer, data + off, len - off, &st);
        if (st.event == MT_FRAME_ERROR) {
            /* the messages before it still go; none of its bytes do */
            snprintf(bad, sizeof(bad), "impossible message header from %s (length %d)",
                     side->kind == MT_SIDE_CLIENT ? "client" : "upstream",
                     (int)side->framer.hdr.message_length);
            mt_stats_add(p->stats, MT_STAT_PROTOCOL_ERRORS, 1);
            break;
        }
        if (st.event == MT_FRAME_HEADER && st.held) {
            memcpy(held, side->framer.hdr_bytes, st.held);
            nheld = st.held;
        }
        if (st.event != MT_FRAME_HEADER_PARTIAL)
            fwd_len = off + st.consumed;
        if (st.consumed == 0)
            break; /* never spin on a framer that makes no progress */
        off += st.consumed;
    }

    if (fwd_len || nheld) {
        rc = forward(side, rbuf, held, nheld, fwd_len);
        if (rc < 0) {
            mt_bufpool_rbuf_unref(&p->pool, rbuf);
            session_close(s, MT_LOG_WARN, uv_strerror(rc));
            return;
        }
    }

    /* Second pass, after the write is queued. */
    mt_account_feed(p->account, &side->acct, s->stats, side->kind == MT_SIDE_CLIENT, data,
                    bad[0] ? fwd_len : len, uv_hrtime(), &owed);
    session_owed(s, &owed);
    mt_bufpool_rbuf_unref(&p->pool, rbuf);
    if (bad[0])
        session_finish(s, side->peer, MT_LOG_WARN, bad);
}

/* ---- connecting upstream --------------------------------------------- */

/* Both ends are ready (TCP, and TLS where there is TLS): forward. */
static void session_maybe_activate(mt_session_t *s)
{
    if (s->state == MT_SESSION_CONNECTING && s->client_ready && s->upstream_ready)
        session_set_state(s, MT_SESSION_ACTIVE);
}

static void retire_timeout_cb(uv_timer_t *t)
{
    mt_session_t *s = t->data;

    if (s->state == MT_SESSION_ACTIVE && s->retiring)
        session_close(s, MT_LOG_WARN,
                      "its upstream member is no longer primary and a reply was still owed");
}

/* A session bound to a member of a set that is not its primary any more
 * closes once it owes the client nothing (bounded by the drain time), so the
 * driver reconnects and retries, on the new primary. Replies in flight are
 * delivered whole; nothing is rewritten. */
static void session_check_member(mt_session_t *s)
{
    const mt_topo_t *topo = mt_monitor_topology(s->proxy->monitor);

    if (s->retiring || s->state != MT_SESSION_ACTIVE || topo->kind != MT_TOPO_REPLICA_SET ||
        s->up_conn.member < 0 || s->up_conn.member == topo->primary)
        return;
    s->retiring = true;
    mt_stats_add(s->proxy->stats, MT_STAT_CONNECTIONS_RETIRED, 1);
    if (s->inflight == 0) {
        session_finish(s, &s->client, MT_LOG_INFO, "its upstream member is no longer primary");
        return;
    }
    slog(MT_LOG_DEBUG, s, "upstream %s is no longer primary: closing after %lld owed replies",
         s->up_conn.member_name, (long long)s->inflight);
    uv_timer_start(&s->timer, retire_timeout_cb, MT_PROXY_DRAIN_TIMEOUT_MS, 0);
}

static void upstream_conn_cb(mt_upstream_conn_t *c, int status, const char *what)
{
    mt_session_t *s = c->data;
    mt_proxy_t *p = s->proxy;
    char why[MT_CLI_HOST_MAX + MT_TLS_REASON_MAX + 200];

    if (status == 0 && s->state == MT_SESSION_CONNECTING) {
        s->upstream_ready = true;
        session_maybe_activate(s);
    } else if (status != UV_ECANCELED && s->state != MT_SESSION_CLOSING) {
        mt_stats_add(p->stats, MT_STAT_UPSTREAM_ERRORS, 1);
        if (c->tls_failed) {
            mt_stats_add(p->stats, MT_STAT_UPSTREAM_TLS_FAILURES, 1);
            snprintf(why, sizeof(why), "upstream %s %s", c->member_name, what);
        } else {
            snprintf(why, sizeof(why), "upstream %s %s: %s",
                     c->member_name[0] ? c->member_name : p->upstream.desc, what,
                     uv_strerror(status));
        }
        mt_monitor_check_soon(p->monitor, c->member);
        session_close(s, MT_LOG_WARN, why);
    }
    session_release(s); /* the attempt held the session */
}

static void connect_timeout_cb(uv_timer_t *t)
{
    mt_session_t *s = t->data;
    mt_proxy_t *p = s->proxy;
    char why[MT_CLI_HOST_MAX + 512];

    if (s->state != MT_SESSION_CONNECTING)
        return;
    if (!s->upstream_ready)
        mt_stats_add(p->stats, MT_STAT_UPSTREAM_ERRORS, 1);
    if (s->up_conn.waiting)
        snprintf(why, sizeof(why), "upstream %s: no member to connect to (no primary) in %u ms",
                 p->upstream.desc, p->cfg->upstream_uri.connect_timeout_ms);
    else if (!s->upstream_ready)
        snprintf(why, sizeof(why), "upstream %s connect: timed out",
                 s->up_conn.member_name[0] ? s->up_conn.member_name : p->upstream.desc);
    else
        snprintf(why, sizeof(why), "client TLS handshake: timed out");
    session_close(s, MT_LOG_WARN, why);
}

/* The monitor saw the topology change: waiting attempts may go on, and
 * sessions on a member that lost the primary retire. */
static void upstream_changed_cb(void *data, unsigned events)
{
    mt_proxy_t *p = data;

    mt_upstream_target_changed(&p->upstream);
    if (!(events & (MT_TOPO_EV_PRIMARY | MT_TOPO_EV_STATE)))
        return;
    for (h2o_linklist_t *n = p->sessions.next; n != &p->sessions;) {
        h2o_linklist_t *next = n->next;
        session_check_member(session_of(n));
        n = next;
    }
}

/* ---- accepting -------------------------------------------------------- */

static void side_init(mt_session_t *s, mt_side_t *side, mt_side_kind_t kind, mt_side_t *peer)
{
    side->kind = kind;
    side->session = s;
    side->peer = peer;
    mt_stream_init(s->proxy->loop, &side->stream, s->proxy->tls_pool);
    side->stream.data = side;
    mt_wire_framer_init(&side->framer);
    mt_account_side_init(&side->acct);
}

static void client_handshake_cb(mt_stream_t *st, int status)
{
    mt_session_t *s = ((mt_side_t *)st->data)->session;
    char why[MT_TLS_REASON_MAX + 64];

    if (s->state != MT_SESSION_CONNECTING)
        return;
    if (status < 0) {
        mt_stats_add(s->proxy->stats, MT_STAT_CLIENT_TLS_FAILURES, 1);
        snprintf(why, sizeof(why), "client TLS handshake failed: %s",
                 status == UV_EPROTO ? mt_stream_tls_reason(st) : uv_strerror(status));
        session_close(s, MT_LOG_WARN, why);
        return;
    }
    s->client_ready = true;
    session_maybe_activate(s);
}

static void accept_session(uv_stream_t *server, int status, bool tls)
{
    mt_listener_t *l = server->data;
    mt_proxy_t *p = l->owner;
    const char *refuse;
    mt_session_t *s;
    int rc;

    if (status < 0) {
        /* libuv drops the pending connection on EMFILE, so this never spins */
        mt_listen_accept_failed(&p->listen, "listener", status);
        return;
    }
    refuse = mt_listen_refusal(&p->listen, p->active, p->draining);
    if (refuse) {
        mt_listen_refuse(&p->listen, server, refuse);
        return;
    }
    s = calloc(1, sizeof(*s));
    if (!s) {
        mt_listen_accept_failed(&p->listen, "session", UV_ENOMEM);
        return;
    }
    s->proxy = p;
    s->id = ++p->next_id;
    side_init(s, &s->client, MT_SIDE_CLIENT, &s->upstream);
    side_init(s, &s->upstream, MT_SIDE_UPSTREAM, &s->client);
    uv_timer_init(p->loop, &s->timer);
    s->timer.data = s;
    s->handles_open = 3;
    h2o_linklist_insert(&p->sessions, &s->link);
    p->active++;

    rc = uv_accept(server, (uv_stream_t *)&s->client.stream.tcp);
    if (rc < 0) {
        snprintf(s->client_addr, sizeof(s->client_addr), "?");
        mt_listen_accept_failed(&p->listen, "client", rc);
        session_set_state(s, MT_SESSION_CLOSING); /* never active: nothing to log or count */
        return;
    }
    uv_tcp_nodelay(&s->client.stream.tcp, 1);
    mt_listen_peer_name(&s->client.stream.tcp, s->client_addr, sizeof(s->client_addr));
    mt_stats_add(p->stats, MT_STAT_CONNECTIONS_TOTAL, 1);
    s->stats = mt_stats_conn_open(p->stats, s->id, s->client_addr, uv_hrtime());
    slog(MT_LOG_DEBUG, s, "accepted%s", tls ? " (TLS)" : "");

    session_set_state(s, MT_SESSION_CONNECTING);
    s->client_ready = !tls;
    if (tls) {
        mt_tls_t *t = mt_tls_new(p->listen_tls, NULL);
        rc = t ? mt_stream_start_tls(&s->client.stream, t, client_handshake_cb) : UV_ENOMEM;
        if (rc < 0) {
            if (!t)
                session_close(s, MT_LOG_ERROR, "out of memory for TLS");
            else
                client_handshake_cb(&s->client.stream, rc);
            return;
        }
    }
    s->handles_open++; /* until the attempt calls back */
    mt_upstream_conn_start(&p->upstream, &s->up_conn, &s->upstream.stream, upstream_conn_cb, s);
}

static void on_connection(uv_stream_t *server, int status)
{
    accept_session(server, status, false);
}

static void on_tls_connection(uv_stream_t *server, int status)
{
    accept_session(server, status, true);
}

/* ---- the proxy -------------------------------------------------------- */

mt_proxy_t *mt_proxy_new(uv_loop_t *loop, const mt_cli_config_t *cfg, mt_stats_t *stats)
{
    mt_proxy_t *p = calloc(1, sizeof(*p));

    if (!p)
        return NULL;
    p->loop = loop;
    p->cfg = cfg;
    p->stats = stats;
    p->account = mt_account_new(stats);
    if (!p->account) {
        free(p);
        return NULL;
    }
    h2o_linklist_init_anchor(&p->sessions);
    mt_listen_init(&p->listen, loop, stats, cfg->max_connections);
    return p;
}

/* The resolver, the TLS contexts and the monitor: what connecting needs. */
static int upstream_open(mt_proxy_t *p)
{
    const mt_cli_config_t *cfg = p->cfg;
    const mt_uri_t *uri = &cfg->upstream_uri;
    mt_monitor_config_t mcfg = {0};
    char err[512], desc[512];

    p->dns = mt_dns_new(p->loop, cfg->dns_server, err, sizeof(err));
    if (!p->dns) {
        mt_error("%s", err);
        return UV_EINVAL;
    }
    if (uri->tls) {
        mt_tls_client_opts_t o = {
            .ca_file = uri->tls_ca_file,
            .cert_key_file = uri->tls_cert_key_file,
            .key_password = uri->tls_cert_key_password,
            .allow_invalid_certificates = uri->tls_allow_invalid_certificates,
            .allow_invalid_hostnames = uri->tls_allow_invalid_hostnames,
        };
        p->upstream_tls = mt_tls_client_ctx_new(&o, err, sizeof(err));
        if (!p->upstream_tls) {
            mt_error("--upstream: %s", err);
            return UV_EINVAL;
        }
    }
    if (cfg->ntls_listen) {
        p->listen_tls = mt_tls_server_ctx_new(cfg->tls_cert, cfg->tls_key, err, sizeof(err));
        if (!p->listen_tls) {
            mt_error("%s", err);
            return UV_EINVAL;
        }
    }
    if ((p->upstream_tls || p->listen_tls) && !(p->tls_pool = mt_stream_pool_new()))
        return UV_ENOMEM;
    mcfg.loop = p->loop;
    mcfg.uri = uri;
    mcfg.tls = p->upstream_tls;
    mcfg.dns = p->dns;
    mcfg.stats = p->stats;
    mcfg.on_change = upstream_changed_cb;
    mcfg.data = p;
    p->monitor = mt_monitor_new(&mcfg);
    if (!p->monitor)
        return UV_ENOMEM;
    mt_uri_describe(uri, desc, sizeof(desc));
    mt_upstream_init(&p->upstream, p->loop, p->monitor, p->dns, p->upstream_tls, desc);
    if (uri->ignored[0])
        mt_info("--upstream options that are the application's and not used by mongotap: %s",
                uri->ignored);
    mt_monitor_start(p->monitor);
    return 0;
}

int mt_proxy_listen(mt_proxy_t *p, char *bound, size_t cap)
{
    int rc = upstream_open(p);

    if (rc == 0)
        rc = mt_listen_open(&p->listen, p->cfg->listen, p->cfg->nlisten, on_connection, p, bound,
                            cap);
    if (rc == 0 && p->cfg->ntls_listen)
        rc = mt_listen_open(&p->listen, p->cfg->tls_listen, p->cfg->ntls_listen, on_tls_connection,
                            p, p->tls_bound, sizeof(p->tls_bound));
    return rc;
}

const char *mt_proxy_tls_bound(const mt_proxy_t *p)
{
    return p->tls_bound;
}

mt_monitor_t *mt_proxy_monitor(const mt_proxy_t *p)
{
    return p->monitor;
}

size_t mt_proxy_active(const mt_proxy_t *p)
{
    return p->active;
}

void mt_proxy_usage(const mt_proxy_t *p, mt_proxy_usage_t *out)
{
    memset(out, 0, sizeof(*out));
    out->drain_cut = p->drain_cut;
    for (h2o_linklist_t *n = p->sessions.next; n != &p->sessions; n = n->next) {
        const mt_session_t *s = session_of(n);
        out->sessions++;
        out->queued_bytes += s->client.queued + s->upstream.queued;
        out->paused_sides += (size_t)s->client.paused + (size_t)s->upstream.paused;
    }
}

static void drain_timer_closed_cb(uv_handle_t *h)
{
    (void)h;
}

static void proxy_check_drained(mt_proxy_t *p)
{
    mt_proxy_drained_cb cb;

    if (!p->draining || p->active > 0 || !p->drained_cb)
        return;
    cb = p->drained_cb;
    p->drained_cb = NULL;
    /* no session left to connect: stop watching the upstream */
    mt_monitor_close(p->monitor);
    p->monitor = NULL;
    mt_dns_close(p->dns);
    p->dns = NULL;
    if (p->drain_timer_open) {
        if (!uv_is_closing((uv_handle_t *)&p->drain_timer))
            uv_close((uv_handle_t *)&p->drain_timer, drain_timer_closed_cb);
        p->drain_timer_open = false;
    }
    cb(p, p->drained_data);
}

/* Calls fn on every session; fn may close the one it is given. */
static void each_session(mt_proxy_t *p, void (*fn)(mt_proxy_t *p, mt_session_t *s))
{
    h2o_linklist_t *n = p->sessions.next;

    while (n != &p->sessions) {
        h2o_linklist_t *next = n->next;
        fn(p, session_of(n));
        n = next;
    }
}

static void drain_cut_one(mt_proxy_t *p, mt_session_t *s)
{
    if (s->state == MT_SESSION_CLOSING)
        return;
    p->drain_cut++;
    session_close(s, MT_LOG_WARN, "shutdown: in-flight reply not finished in time");
}

static void drain_timeout_cb(uv_timer_t *t)
{
    each_session(t->data, drain_cut_one);
}

/* Sessions that owe nothing finish now; the others once their last reply
 * is forwarded (session_owed). */
static void drain_one(mt_proxy_t *p, mt_session_t *s)
{
    (void)p;
    if (s->inflight == 0)
        session_finish(s, &s->client, MT_LOG_INFO, "shutdown");
}

void mt_proxy_drain(mt_proxy_t *p, mt_proxy_drained_cb cb, void *data)
{
    if (p->draining)
        return;
    p->draining = true;
    p->drained_cb = cb;
    p->drained_data = data;
    mt_listen_close(&p->listen);
    each_session(p, drain_one);
    uv_timer_init(p->loop, &p->drain_timer);
    p->drain_timer.data = p;
    p->drain_timer_open = true;
    uv_timer_start(&p->drain_timer, drain_timeout_cb, MT_PROXY_DRAIN_TIMEOUT_MS, 0);
    proxy_check_drained(p);
}

void mt_proxy_free(mt_proxy_t *p)
{
    if (!p)
        return;
    mt_bufpool_free(&p->pool);
    mt_account_free(p->account);
    mt_stream_pool_free(p->tls_pool);
    mt_tls_ctx_free(p->upstream_tls);
    mt_tls_ctx_free(p->listen_tls);
    free(p);
}
