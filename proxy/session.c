/*
 * session: one client connection and its upstream connection. Read buffers
 * are handed to the peer's write as they are (no copy; in TLS they are
 * decrypted into and encrypted from, stream.c). The framer checks every
 * header before any byte of its message leaves. The reads of one loop
 * iteration are held until its I/O callbacks are done, then forwarded one
 * after another, and only then does the accounting step (account.c) read
 * the same bytes: accounting never delays forwarding, and a peer is woken
 * by a run of writes rather than by one write between two parses.
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
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_int.h"

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

static void session_set_state(mt_session_t *s, mt_session_state_t to);

#define slog(level, s, ...) mt_log_conn(level, (s)->id, (s)->client_addr, __VA_ARGS__)

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
    mt__proxy_check_drained(p);
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

/* Every change of state goes through here, with its bookkeeping: the timer,
 * reading, stats, and the handles at the end. */
static void session_set_state(mt_session_t *s, mt_session_state_t to)
{
    mt_session_state_t from;

    /* what was read before the change goes first, as it would have at once */
    mt__session_flush_reads(s->proxy);
    from = s->state;
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
        mt__session_check_member(s);
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

/* ---- the iteration's reads: forwarded, then accounted ----------------- */

/* A read taken over with its buffer reference: len bytes to account, of
 * which fwd_len leave after the nheld header bytes held from earlier. */
static void read_init(mt_read_t *r, mt_side_t *side, mt_rbuf_t *rbuf, size_t len, size_t fwd_len,
                      const uint8_t *held, size_t nheld)
{
    r->side = side;
    r->rbuf = rbuf;
    r->len = (uint32_t)len;
    r->fwd_len = (uint32_t)fwd_len;
    r->nheld = (uint8_t)nheld;
    r->forwarded = false;
    memcpy(r->held, held, nheld);
}

static void read_forward(mt_read_t *r)
{
    mt_session_t *s = r->side->session;
    int rc;

    r->forwarded = false;
    if (s->state != MT_SESSION_ACTIVE)
        return; /* closed since: nothing can take it */
    if (r->fwd_len || r->nheld) {
        rc = forward(r->side, r->rbuf, r->held, r->nheld, r->fwd_len);
        if (rc < 0) {
            session_close(s, MT_LOG_WARN, uv_strerror(rc));
            return;
        }
    }
    r->forwarded = true;
}

/* Accounts what was forwarded (the session may have closed since: its
 * messages are still decoded, stats no longer sees them) and drops the
 * entry's reference to the buffer. */
static void read_account(mt_read_t *r)
{
    mt_session_t *s = r->side->session;
    mt_proxy_t *p = s->proxy;
    mt_account_result_t owed;

    if (r->forwarded) {
        mt_account_feed(p->account, &r->side->acct, s->stats, r->side->kind == MT_SIDE_CLIENT,
                        r->rbuf->data, r->len, mt__proxy_iteration_ns(p), &owed);
        session_owed(s, &owed);
    }
    mt_bufpool_rbuf_unref(&p->pool, r->rbuf);
}

void mt__session_flush_reads(mt_proxy_t *p)
{
    unsigned i, n = p->nreads;

    if (n == 0 || p->reads_flushing)
        return;
    p->reads_flushing = true;
    for (i = 0; i < n; i++)
        read_forward(&p->reads[i]);
    for (i = 0; i < n; i++)
        read_account(&p->reads[i]);
    p->nreads = 0;
    p->reads_flushing = false;
}

static void read_cb(mt_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    mt_side_t *side = st->data;
    mt_session_t *s = side->session;
    mt_proxy_t *p = s->proxy;
    mt_rbuf_t *rbuf = buf->base ? mt_bufpool_rbuf_of(buf->base) : NULL;
    const uint8_t *data = (const uint8_t *)buf->base;
    uint8_t held[MT_WIRE_HEADER_LEN];
    char bad[112] = "";
    size_t len, off = 0, fwd_len = 0, nheld = 0;
    bool first;

    if (nread <= 0) {
        if (rbuf)
            mt_bufpool_rbuf_unref(&p->pool, rbuf);
        if (nread < 0) {
            /* end of stream or error: after what came before it */
            mt__session_flush_reads(p);
            side_read_failed(side, nread);
        }
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

    if (bad[0] || len >= MT_PROXY_HOLD_BYTES) {
        /* The reads before it go first, then this one at once: a bad
         * header ends the session after what came before it, and a large
         * read gains nothing from waiting (its system calls are few for
         * its bytes) while holding several would keep that many buffers
         * in the cache instead of one. */
        mt_read_t r;
        mt__session_flush_reads(p);
        read_init(&r, side, rbuf, bad[0] ? fwd_len : len, fwd_len, held, nheld);
        read_forward(&r);
        read_account(&r);
        if (bad[0])
            session_finish(s, side->peer, MT_LOG_WARN, bad);
        return;
    }
    if (p->nreads == MT_PROXY_READS_MAX)
        mt__session_flush_reads(p);
    read_init(&p->reads[p->nreads++], side, rbuf, len, fwd_len, held, nheld);
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
void mt__session_check_member(mt_session_t *s)
{
    const mt_topo_t *topo = mt_monitor_topology(s->proxy->monitor);

    if (s->retiring || s->state != MT_SESSION_ACTIVE || topo->kind != MT_TOPO_REPLICA_SET ||
        s->up_conn.member < 0 || s->up_conn.member == topo->primary)
        return;
    s->retiring = true;
    mt_stats_add(s->proxy->stats, MT_STAT_CONNECTIONS_RETIRED, 1);
    mt__session_flush_reads(s->proxy); /* a request read is owed a reply */
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
        if (c->tls_failed)
            mt_stats_add(p->stats, MT_STAT_UPSTREAM_TLS_FAILURES, 1);
        snprintf(why, sizeof(why), "upstream %s %s: %s",
                 c->member_name[0] ? c->member_name : p->upstream.desc, what,
                 c->detail ? c->detail : uv_strerror(status));
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

void mt__session_accept(mt_proxy_t *p, uv_stream_t *server, bool tls)
{
    mt_session_t *s;
    int rc;

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

void mt__session_drain(mt_session_t *s)
{
    mt__session_flush_reads(s->proxy); /* a request read is owed a reply */
    if (s->inflight == 0)
        session_finish(s, &s->client, MT_LOG_INFO, "shutdown");
}

void mt__session_cut(mt_session_t *s)
{
    session_close(s, MT_LOG_WARN, "shutdown: in-flight reply not finished in time");
}
