/*
 * proxy: each client connection gets one upstream connection; the pair is a
 * session. Read buffers are handed to the peer's uv_write as they are (no
 * copy) and go back to a free list when the write completes. The framer
 * checks every header before any byte of its message leaves, and complete
 * messages are read by stats/ after their bytes are queued, so accounting
 * never delays forwarding.
 *
 *   client --read--> [rbuf] --uv_write--> upstream
 *                      `--> framer --> (whole message) --> stats
 */
#include "proxy.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "account.h"
#include "log.h"
#include "wire.h"

/* A read buffer, shared by the write that forwards it and the parser. */
typedef struct mt_rbuf {
    uint32_t refs;
    struct mt_rbuf *next_free;
    uint8_t data[MT_PROXY_READ_BUF];
} mt_rbuf_t;

/* A write request owns one reference to its rbuf until its callback (the
 * libuv rule: buffers stay valid until the write completes). */
typedef struct mt_write {
    uv_write_t req;
    struct mt_side *side; /* the side written to */
    mt_rbuf_t *rbuf;
    uint8_t held[MT_WIRE_HEADER_LEN]; /* header bytes kept from an earlier read */
    struct mt_write *next_free;
} mt_write_t;

typedef enum { MT_SIDE_CLIENT = 0, MT_SIDE_UPSTREAM = 1 } mt_side_kind_t;

typedef struct mt_side {
    uv_tcp_t tcp;
    mt_side_kind_t kind;
    struct mt_session *session;
    struct mt_side *peer;
    mt_wire_framer_t framer; /* decides what may be forwarded */
    mt_account_side_t acct;  /* frames the same bytes again for accounting */
    size_t queued;           /* buffer bytes queued for writing to this side */
    bool reading;
    bool paused; /* reading stopped by backpressure */
    bool eof;
    bool shut; /* uv_shutdown issued */
} mt_side_t;

typedef enum {
    MT_SESSION_RESOLVING = 0,
    MT_SESSION_CONNECTING,
    MT_SESSION_ACTIVE,
    MT_SESSION_FLUSHING, /* one side is done: delivering what is queued, then closing */
    MT_SESSION_CLOSING,
} mt_session_state_t;

static const char *session_state_str(mt_session_state_t st)
{
    switch (st) {
    case MT_SESSION_RESOLVING:
        return "resolving";
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
    uv_timer_t connect_timer;
    uv_connect_t connect_req;
    uv_getaddrinfo_t resolve_req;
    uv_shutdown_t shutdown_req[2];
    mt_stats_conn_t *stats;
    int64_t inflight; /* requests forwarded that still expect a reply */
    /* FLUSHING: the side whose queued bytes are delivered before closing, and why */
    struct mt_side *flush_to;
    mt_log_level_t flush_level;
    char flush_reason[128];
    int handles_open;
    struct mt_session *prev, *next;
} mt_session_t;

typedef struct mt_listener {
    uv_tcp_t tcp;
    mt_proxy_t *proxy;
    bool open;
} mt_listener_t;

struct mt_proxy {
    uv_loop_t *loop;
    const mt_cli_config_t *cfg;
    mt_stats_t *stats;
    mt_account_t *account;
    uv_prepare_t iteration; /* refills the decompression budget before each poll */
    bool iteration_open;
    mt_listener_t listeners[MT_CLI_MAX_LISTEN];
    size_t nlisteners;
    struct sockaddr_storage upstream_addr;
    bool upstream_literal; /* an IP address: no resolution per connection */
    char upstream_desc[MT_CLI_HOST_MAX + 8];
    mt_session_t *sessions;
    size_t active;
    uint64_t next_id;
    /* free lists: the common path allocates nothing */
    mt_rbuf_t *free_rbufs;
    size_t nfree_rbufs;
    mt_write_t *free_writes;
    size_t nfree_writes;
    /* drain */
    bool draining;
    size_t drain_cut; /* sessions the drain timeout closed */
    uv_timer_t drain_timer;
    bool drain_timer_open;
    mt_proxy_drained_cb drained_cb;
    void *drained_data;
    uint64_t last_accept_error_log;
    uint64_t last_refusal_log;
    uint64_t refusals_unlogged;
    size_t fds_at_start; /* open after binding: listeners, stdio, loop */
};

/* fds kept free for the admin endpoint, log files and accepting a client
 * only to close it again */
#define MT_PROXY_FD_RESERVE 32

#define MT_PROXY_FREE_RBUFS_MAX 256
#define MT_PROXY_FREE_WRITES_MAX 1024

static void session_close(mt_session_t *s, mt_log_level_t level, const char *reason);
static void side_read_start(mt_side_t *side);
static void proxy_check_drained(mt_proxy_t *p);

#define slog(level, s, ...) mt_log_conn(level, (s)->id, (s)->client_addr, __VA_ARGS__)

/* ---- buffers ---------------------------------------------------------- */

static mt_rbuf_t *rbuf_get(mt_proxy_t *p)
{
    mt_rbuf_t *b = p->free_rbufs;

    if (b) {
        p->free_rbufs = b->next_free;
        p->nfree_rbufs--;
    } else {
        b = malloc(sizeof(*b));
        if (!b)
            return NULL;
    }
    b->refs = 1;
    b->next_free = NULL;
    return b;
}

static void rbuf_unref(mt_proxy_t *p, mt_rbuf_t *b)
{
    if (--b->refs > 0)
        return;
    if (p->nfree_rbufs < MT_PROXY_FREE_RBUFS_MAX) {
        b->next_free = p->free_rbufs;
        p->free_rbufs = b;
        p->nfree_rbufs++;
    } else {
        free(b);
    }
}

static mt_write_t *write_get(mt_proxy_t *p)
{
    mt_write_t *w = p->free_writes;

    if (w) {
        p->free_writes = w->next_free;
        p->nfree_writes--;
        return w;
    }
    return malloc(sizeof(*w));
}

static void write_put(mt_proxy_t *p, mt_write_t *w)
{
    if (p->nfree_writes < MT_PROXY_FREE_WRITES_MAX) {
        w->next_free = p->free_writes;
        p->free_writes = w;
        p->nfree_writes++;
    } else {
        free(w);
    }
}

/* ---- session lifecycle ------------------------------------------------ */

static void session_link(mt_proxy_t *p, mt_session_t *s)
{
    s->next = p->sessions;
    if (p->sessions)
        p->sessions->prev = s;
    p->sessions = s;
    p->active++;
}

static void session_unlink(mt_proxy_t *p, mt_session_t *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        p->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    p->active--;
}

/* A session lives until its three handles are closed and any address
 * lookup has called back. */
static void session_release(mt_session_t *s)
{
    mt_proxy_t *p = s->proxy;

    if (--s->handles_open > 0)
        return;
    mt_account_side_release(p->account, &s->client.acct);
    mt_account_side_release(p->account, &s->upstream.acct);
    session_unlink(p, s);
    free(s);
    proxy_check_drained(p);
}

static void timer_closed_cb(uv_handle_t *h)
{
    session_release(h->data);
}

static void side_closed_cb(uv_handle_t *h)
{
    session_release(((mt_side_t *)h->data)->session);
}

/* The one teardown path: logs why, tells stats, closes every handle. */
static void session_close(mt_session_t *s, mt_log_level_t level, const char *reason)
{
    if (s->state == MT_SESSION_CLOSING)
        return;
    slog(level, s, "closed: %s (was %s)", reason, session_state_str(s->state));
    if (s->state == MT_SESSION_RESOLVING)
        uv_cancel((uv_req_t *)&s->resolve_req); /* its callback still runs */
    s->state = MT_SESSION_CLOSING;
    if (s->stats) {
        mt_stats_conn_close(s->stats, uv_hrtime());
        s->stats = NULL;
    }
    uv_close((uv_handle_t *)&s->client.tcp, side_closed_cb);
    uv_close((uv_handle_t *)&s->upstream.tcp, side_closed_cb);
    uv_close((uv_handle_t *)&s->connect_timer, timer_closed_cb);
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
    mt_side_t *sides[2] = {&s->client, &s->upstream};

    if (s->state == MT_SESSION_CLOSING || s->state == MT_SESSION_FLUSHING)
        return;
    if (s->state != MT_SESSION_ACTIVE || to->queued == 0) {
        session_close(s, level, reason);
        return;
    }
    for (int i = 0; i < 2; i++) {
        if (sides[i]->reading) {
            uv_read_stop((uv_stream_t *)&sides[i]->tcp);
            sides[i]->reading = false;
        }
        sides[i]->paused = false;
    }
    s->state = MT_SESSION_FLUSHING;
    s->flush_to = to;
    s->flush_level = level;
    snprintf(s->flush_reason, sizeof(s->flush_reason), "%s", reason);
    slog(MT_LOG_DEBUG, s, "%s: delivering %zu queued bytes first", reason, to->queued);
    uv_timer_start(&s->connect_timer, flush_timeout_cb, MT_PROXY_FLUSH_TIMEOUT_MS, 0);
}

/* ---- writing ---------------------------------------------------------- */

static void write_cb(uv_write_t *req, int status)
{
    mt_write_t *w = (mt_write_t *)req;
    mt_side_t *side = w->side;
    mt_session_t *s = side->session;
    mt_proxy_t *p = s->proxy;

    side->queued -= sizeof(w->rbuf->data);
    rbuf_unref(p, w->rbuf);
    write_put(p, w);
    if (s->state == MT_SESSION_CLOSING)
        return;
    if (status < 0) {
        session_close(s, MT_LOG_INFO,
                      side->kind == MT_SIDE_CLIENT ? "client write failed"
                                                   : "upstream write failed");
        if (side->kind == MT_SIDE_UPSTREAM)
            mt_stats_add(p->stats, MT_STAT_UPSTREAM_ERRORS, 1);
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

/* Sends held header bytes (if any) and data[0..len) to the peer. When
 * nothing is queued on that side the bytes are written at once, straight
 * from the read buffer (uv_write would re-arm the socket in epoll for every
 * message); whatever the kernel does not take is queued, and the write
 * request then holds a reference to the read buffer until its callback. */
static int forward(mt_side_t *from, mt_rbuf_t *rbuf, const uint8_t *held, size_t nheld, size_t len)
{
    mt_side_t *to = from->peer;
    mt_proxy_t *p = from->session->proxy;
    uv_stream_t *stream = (uv_stream_t *)&to->tcp;
    mt_write_t *w;
    uv_buf_t bufs[2];
    unsigned n = 0;
    int rc;

    if (nheld)
        bufs[n++] = uv_buf_init((char *)held, (unsigned)nheld);
    if (len)
        bufs[n++] = uv_buf_init((char *)rbuf->data, (unsigned)len);
    if (to->queued == 0) {
        rc = uv_try_write(stream, bufs, n);
        if (rc < 0 && rc != UV_EAGAIN)
            return rc;
        for (size_t done = rc > 0 ? (size_t)rc : 0; done > 0 && n > 0;) {
            if (done >= bufs[0].len) {
                done -= bufs[0].len;
                bufs[0] = bufs[1];
                n--;
            } else {
                bufs[0].base += done;
                bufs[0].len -= done;
                done = 0;
            }
        }
        if (n == 0)
            return 0;
    }

    w = write_get(p);
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
    rc = uv_write(&w->req, stream, bufs, n, write_cb);
    if (rc < 0) {
        to->queued -= sizeof(rbuf->data);
        rbuf->refs--;
        write_put(p, w);
        return rc;
    }
    if (to->queued > MT_PROXY_QUEUE_HIGH && from->reading) {
        uv_read_stop((uv_stream_t *)&from->tcp);
        from->reading = false;
        from->paused = true;
    }
    return 0;
}

/* ---- reading ---------------------------------------------------------- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    mt_side_t *side = h->data;
    mt_rbuf_t *b = rbuf_get(side->session->proxy);

    (void)suggested;
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
}

static void side_eof(mt_side_t *side)
{
    mt_session_t *s = side->session;
    mt_side_t *peer = side->peer;

    side->eof = true;
    if (side->reading) {
        uv_read_stop((uv_stream_t *)&side->tcp);
        side->reading = false;
    }
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
        if (uv_shutdown(&s->shutdown_req[peer->kind], (uv_stream_t *)&peer->tcp, NULL) < 0)
            session_close(s, MT_LOG_DEBUG, "client closed");
    }
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    mt_side_t *side = stream->data;
    mt_session_t *s = side->session;
    mt_proxy_t *p = s->proxy;
    mt_rbuf_t *rbuf = buf->base ? (mt_rbuf_t *)(buf->base - offsetof(mt_rbuf_t, data)) : NULL;
    const uint8_t *data = (const uint8_t *)buf->base;
    mt_account_result_t owed;
    uint8_t held[MT_WIRE_HEADER_LEN];
    char bad[112] = "";
    size_t len, off = 0, fwd_len = 0, nheld = 0;
    uint64_t now;
    int rc;

    if (nread <= 0) {
        if (rbuf)
            rbuf_unref(p, rbuf);
        if (nread == 0)
            return; /* libuv's EAGAIN */
        if (nread == UV_EOF) {
            side_eof(side);
        } else if (nread == UV_ENOBUFS) {
            session_close(s, MT_LOG_ERROR, "out of memory for read buffers");
        } else if (side->kind == MT_SIDE_UPSTREAM) {
            char why[96];
            mt_stats_add(p->stats, MT_STAT_UPSTREAM_ERRORS, 1);
            snprintf(why, sizeof(why), "upstream read error: %s", uv_strerror((int)nread));
            session_finish(s, &s->client, MT_LOG_INFO, why);
        } else {
            session_close(s, MT_LOG_INFO, "client read error");
        }
        return;
    }
    len = (size_t)nread;
    now = uv_hrtime();
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
            rbuf_unref(p, rbuf);
            session_close(s, MT_LOG_WARN, uv_strerror(rc));
            return;
        }
    }

    /* Second pass, after the write is queued. */
    mt_account_feed(p->account, &side->acct, s->stats, side->kind == MT_SIDE_CLIENT, data,
                    bad[0] ? fwd_len : len, now, &owed);
    session_owed(s, &owed);
    rbuf_unref(p, rbuf);
    if (bad[0])
        session_finish(s, side->peer, MT_LOG_WARN, bad);
}

static void side_read_start(mt_side_t *side)
{
    int rc;

    if (side->reading || side->eof || side->session->state != MT_SESSION_ACTIVE)
        return;
    rc = uv_read_start((uv_stream_t *)&side->tcp, alloc_cb, read_cb);
    if (rc < 0) {
        session_close(side->session, MT_LOG_WARN, uv_strerror(rc));
        return;
    }
    side->reading = true;
}

/* ---- connecting upstream --------------------------------------------- */

static void session_activate(mt_session_t *s)
{
    s->state = MT_SESSION_ACTIVE;
    uv_timer_stop(&s->connect_timer);
    side_read_start(&s->upstream);
    side_read_start(&s->client);
    slog(MT_LOG_DEBUG, s, "upstream connected");
}

static void upstream_failed(mt_session_t *s, const char *what, int err)
{
    char why[sizeof(s->proxy->upstream_desc) + 160];

    mt_stats_add(s->proxy->stats, MT_STAT_UPSTREAM_ERRORS, 1);
    snprintf(why, sizeof(why), "upstream %s %s: %s", s->proxy->upstream_desc, what,
             err ? uv_strerror(err) : "timed out");
    session_close(s, MT_LOG_WARN, why);
}

static void connect_cb(uv_connect_t *req, int status)
{
    mt_session_t *s = req->data;

    if (s->state == MT_SESSION_CLOSING)
        return;
    if (status < 0) {
        upstream_failed(s, "unreachable", status);
        return;
    }
    uv_tcp_nodelay(&s->upstream.tcp, 1);
    session_activate(s);
}

static void connect_timeout_cb(uv_timer_t *t)
{
    mt_session_t *s = t->data;

    if (s->state == MT_SESSION_CONNECTING || s->state == MT_SESSION_RESOLVING)
        upstream_failed(s, "connect", 0);
}

static void session_connect(mt_session_t *s, const struct sockaddr *addr)
{
    int rc;

    s->state = MT_SESSION_CONNECTING;
    s->connect_req.data = s;
    rc = uv_tcp_connect(&s->connect_req, &s->upstream.tcp, addr, connect_cb);
    if (rc < 0)
        upstream_failed(s, "connect", rc);
}

static void resolve_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    mt_session_t *s = req->data;

    if (status == UV_ECANCELED || s->state == MT_SESSION_CLOSING) {
        uv_freeaddrinfo(res);
        session_release(s);
        return;
    }
    session_release(s); /* the handles still hold the session */
    if (status < 0 || !res) {
        uv_freeaddrinfo(res);
        upstream_failed(s, "cannot be resolved", status < 0 ? status : UV_EAI_NONAME);
        return;
    }
    session_connect(s, res->ai_addr);
    uv_freeaddrinfo(res);
}

/* ---- accepting -------------------------------------------------------- */

static void peer_name(uv_tcp_t *tcp, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    int n = sizeof(ss);
    char ip[INET6_ADDRSTRLEN];

    snprintf(out, cap, "?");
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &n) != 0)
        return;
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, ip, sizeof(ip));
        snprintf(out, cap, "[%s]:%u", ip, ntohs(a->sin6_port));
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        uv_ip4_name(a, ip, sizeof(ip));
        snprintf(out, cap, "%s:%u", ip, ntohs(a->sin_port));
    }
}

static void refused_closed_cb(uv_handle_t *h)
{
    free(h);
}

static void side_init(mt_session_t *s, mt_side_t *side, mt_side_kind_t kind, mt_side_t *peer)
{
    side->kind = kind;
    side->session = s;
    side->peer = peer;
    side->tcp.data = side;
    mt_wire_framer_init(&side->framer);
    mt_account_side_init(&side->acct);
}

static void accept_error_log(mt_proxy_t *p, const char *what, int err)
{
    uint64_t now = uv_now(p->loop);

    /* at most one line a second: an fd shortage would otherwise flood the log */
    if (now - p->last_accept_error_log >= 1000 || p->last_accept_error_log == 0) {
        mt_warn("accept failed: %s: %s", what, uv_strerror(err));
        p->last_accept_error_log = now;
    }
}

/* At most one line a second, so a flood of refusals cannot flood the log;
 * the line says how many went unlogged since the last one. */
static void refusal_log(mt_proxy_t *p, const char *addr, const char *why)
{
    uint64_t now = uv_now(p->loop);

    if (p->last_refusal_log && now - p->last_refusal_log < 1000) {
        p->refusals_unlogged++;
        return;
    }
    if (p->refusals_unlogged)
        mt_warn("refused %s: %s (and %llu more since the last such line)", addr, why,
                (unsigned long long)p->refusals_unlogged);
    else
        mt_warn("refused %s: %s", addr, why);
    p->refusals_unlogged = 0;
    p->last_refusal_log = now;
}

/* Sessions the open-file limit leaves room for: two fds each. Read on every
 * accept (one cheap syscall) since the limit can change while running. */
static size_t fd_capacity(const mt_proxy_t *p)
{
    struct rlimit rl;
    size_t used = p->fds_at_start + MT_PROXY_FD_RESERVE;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return SIZE_MAX;
    return (size_t)rl.rlim_cur > used ? ((size_t)rl.rlim_cur - used) / 2 : 0;
}

static const char *refusal_reason(const mt_proxy_t *p)
{
    if (p->draining)
        return "shutting down";
    if (p->active >= p->cfg->max_connections)
        return "--max-connections reached";
    if (p->active >= fd_capacity(p))
        return "file descriptor limit reached (raise ulimit -n)";
    return NULL;
}

static void on_connection(uv_stream_t *server, int status)
{
    const char *refuse;
    mt_listener_t *l = server->data;
    mt_proxy_t *p = l->proxy;
    mt_session_t *s;
    int rc;

    if (status < 0) {
        /* libuv drops the pending connection on EMFILE, so this never spins */
        mt_stats_add(p->stats, MT_STAT_CONNECTIONS_REFUSED, 1);
        accept_error_log(p, "listener", status);
        return;
    }
    refuse = refusal_reason(p);
    if (refuse) {
        uv_tcp_t *t = malloc(sizeof(*t));
        if (!t)
            return;
        uv_tcp_init(p->loop, t);
        if (uv_accept(server, (uv_stream_t *)t) == 0) {
            char addr[64];
            peer_name(t, addr, sizeof(addr));
            refusal_log(p, addr, refuse);
        }
        mt_stats_add(p->stats, MT_STAT_CONNECTIONS_REFUSED, 1);
        uv_close((uv_handle_t *)t, refused_closed_cb);
        return;
    }

    s = calloc(1, sizeof(*s));
    if (!s) {
        accept_error_log(p, "session", UV_ENOMEM);
        return;
    }
    s->proxy = p;
    s->id = ++p->next_id;
    side_init(s, &s->client, MT_SIDE_CLIENT, &s->upstream);
    side_init(s, &s->upstream, MT_SIDE_UPSTREAM, &s->client);
    uv_tcp_init(p->loop, &s->client.tcp);
    uv_tcp_init(p->loop, &s->upstream.tcp);
    uv_timer_init(p->loop, &s->connect_timer);
    s->connect_timer.data = s;
    s->handles_open = 3;
    session_link(p, s);

    rc = uv_accept(server, (uv_stream_t *)&s->client.tcp);
    if (rc < 0) {
        snprintf(s->client_addr, sizeof(s->client_addr), "?");
        mt_stats_add(p->stats, MT_STAT_CONNECTIONS_REFUSED, 1);
        accept_error_log(p, "client", rc);
        s->state = MT_SESSION_CLOSING;
        uv_close((uv_handle_t *)&s->client.tcp, side_closed_cb);
        uv_close((uv_handle_t *)&s->upstream.tcp, side_closed_cb);
        uv_close((uv_handle_t *)&s->connect_timer, timer_closed_cb);
        return;
    }
    uv_tcp_nodelay(&s->client.tcp, 1);
    peer_name(&s->client.tcp, s->client_addr, sizeof(s->client_addr));
    mt_stats_add(p->stats, MT_STAT_CONNECTIONS_TOTAL, 1);
    s->stats = mt_stats_conn_open(p->stats, s->id, s->client_addr, uv_hrtime());
    slog(MT_LOG_DEBUG, s, "accepted");

    uv_timer_start(&s->connect_timer, connect_timeout_cb, MT_PROXY_CONNECT_TIMEOUT_MS, 0);
    if (p->upstream_literal) {
        session_connect(s, (const struct sockaddr *)&p->upstream_addr);
    } else {
        char port[8];
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        snprintf(port, sizeof(port), "%u", p->cfg->upstream.port);
        s->state = MT_SESSION_RESOLVING;
        s->resolve_req.data = s;
        s->handles_open++;
        rc = uv_getaddrinfo(p->loop, &s->resolve_req, resolve_cb, p->cfg->upstream.host, port,
                            &hints);
        if (rc < 0) {
            s->handles_open--;
            s->state = MT_SESSION_CONNECTING;
            upstream_failed(s, "cannot be resolved", rc);
        }
    }
}

/* ---- the proxy -------------------------------------------------------- */

/* Before the loop waits for I/O: what the callbacks of the next iteration
 * decompress for accounting comes out of one budget again. */
static void iteration_cb(uv_prepare_t *h)
{
    mt_account_refill(((mt_proxy_t *)h->data)->account);
}

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
    uv_prepare_init(loop, &p->iteration);
    p->iteration.data = p;
    p->iteration_open = true;
    uv_prepare_start(&p->iteration, iteration_cb);
    uv_unref((uv_handle_t *)&p->iteration); /* it never keeps the loop alive */
    mt_cli_format_hostport(&cfg->upstream, p->upstream_desc, sizeof(p->upstream_desc));
    if (uv_ip4_addr(cfg->upstream.host, cfg->upstream.port,
                    (struct sockaddr_in *)&p->upstream_addr) == 0 ||
        uv_ip6_addr(cfg->upstream.host, cfg->upstream.port,
                    (struct sockaddr_in6 *)&p->upstream_addr) == 0)
        p->upstream_literal = true;
    return p;
}

/* Resolves a listen address synchronously: at start-up only. */
static int resolve_listen(uv_loop_t *loop, const mt_hostport_t *hp, struct sockaddr_storage *out)
{
    uv_getaddrinfo_t req;
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    char port[8];
    int rc;

    if (uv_ip4_addr(hp->host, hp->port, (struct sockaddr_in *)out) == 0 ||
        uv_ip6_addr(hp->host, hp->port, (struct sockaddr_in6 *)out) == 0)
        return 0;
    snprintf(port, sizeof(port), "%u", hp->port);
    rc = uv_getaddrinfo(loop, &req, NULL, hp->host, port, &hints);
    if (rc < 0)
        return rc;
    memcpy(out, req.addrinfo->ai_addr, req.addrinfo->ai_addrlen);
    uv_freeaddrinfo(req.addrinfo);
    return 0;
}

static size_t count_open_fds(void)
{
    uv_fs_t req;
    uv_dirent_t ent;
    size_t n = 0;

    if (uv_fs_scandir(NULL, &req, "/proc/self/fd", 0, NULL) < 0) {
        uv_fs_req_cleanup(&req);
        return 16; /* no /proc: assume a typical start-up */
    }
    while (uv_fs_scandir_next(&req, &ent) != UV_EOF)
        n++;
    uv_fs_req_cleanup(&req);
    return n;
}

/* libuv closes a connection it cannot accept for lack of fds without
 * telling us, so the proxy refuses (and logs) before it gets there. */
static void compute_fd_capacity(mt_proxy_t *p)
{
    struct rlimit rl;
    size_t cap;

    p->fds_at_start = count_open_fds();
    /* like other proxies, raise the soft limit as far as the hard one allows
     * for --max-connections */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        rlim_t want =
            (rlim_t)(p->fds_at_start + MT_PROXY_FD_RESERVE) + 2 * (rlim_t)p->cfg->max_connections;
        if (rl.rlim_cur < want && rl.rlim_max > rl.rlim_cur) {
            rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
            if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
                mt_debug("cannot raise the open-file limit");
        }
    }
    cap = fd_capacity(p);
    if (cap < p->cfg->max_connections)
        mt_info("the open-file limit (ulimit -n) allows about %zu client connections, fewer than "
                "--max-connections %u; raise it to serve more",
                cap, p->cfg->max_connections);
}

int mt_proxy_listen(mt_proxy_t *p, char *bound, size_t cap)
{
    size_t used = 0;

    bound[0] = '\0';
    for (size_t i = 0; i < p->cfg->nlisten; i++) {
        const mt_hostport_t *hp = &p->cfg->listen[i];
        mt_listener_t *l = &p->listeners[i];
        struct sockaddr_storage ss;
        int n = sizeof(ss), rc;
        char desc[MT_CLI_HOST_MAX + 8];
        mt_hostport_t real = *hp;

        rc = resolve_listen(p->loop, hp, &ss);
        if (rc == 0) {
            uv_tcp_init(p->loop, &l->tcp);
            l->tcp.data = l;
            l->proxy = p;
            l->open = true;
            p->nlisteners = i + 1;
            rc = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&ss, 0);
        }
        if (rc == 0)
            rc = uv_listen((uv_stream_t *)&l->tcp, 511, on_connection);
        if (rc < 0) {
            mt_cli_format_hostport(hp, desc, sizeof(desc));
            mt_error("cannot listen on %s: %s", desc, uv_strerror(rc));
            return rc;
        }
        if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &n) == 0)
            real.port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                       : ((struct sockaddr_in *)&ss)->sin_port);
        mt_cli_format_hostport(&real, desc, sizeof(desc));
        used +=
            (size_t)snprintf(bound + used, used < cap ? cap - used : 0, "%s%s", i ? "," : "", desc);
    }
    compute_fd_capacity(p);
    return 0;
}

size_t mt_proxy_active(const mt_proxy_t *p)
{
    return p->active;
}

void mt_proxy_usage(const mt_proxy_t *p, mt_proxy_usage_t *out)
{
    memset(out, 0, sizeof(*out));
    out->drain_cut = p->drain_cut;
    for (const mt_session_t *s = p->sessions; s; s = s->next) {
        out->sessions++;
        out->queued_bytes += s->client.queued + s->upstream.queued;
        out->paused_sides += (size_t)s->client.paused + (size_t)s->upstream.paused;
    }
}

/* For the handles inside mt_proxy_t: nothing to free when they close. */
static void proxy_handle_closed_cb(uv_handle_t *h)
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
    if (p->drain_timer_open) {
        if (!uv_is_closing((uv_handle_t *)&p->drain_timer))
            uv_close((uv_handle_t *)&p->drain_timer, proxy_handle_closed_cb);
        p->drain_timer_open = false;
    }
    if (p->iteration_open) {
        if (!uv_is_closing((uv_handle_t *)&p->iteration))
            uv_close((uv_handle_t *)&p->iteration, proxy_handle_closed_cb);
        p->iteration_open = false;
    }
    cb(p, p->drained_data);
}

static void drain_timeout_cb(uv_timer_t *t)
{
    mt_proxy_t *p = t->data;
    mt_session_t *s, *next;

    for (s = p->sessions; s; s = next) {
        next = s->next;
        if (s->state != MT_SESSION_CLOSING)
            p->drain_cut++;
        session_close(s, MT_LOG_WARN, "shutdown: in-flight reply not finished in time");
    }
}

void mt_proxy_drain(mt_proxy_t *p, mt_proxy_drained_cb cb, void *data)
{
    mt_session_t *s, *next;

    if (p->draining)
        return;
    p->draining = true;
    p->drained_cb = cb;
    p->drained_data = data;
    for (size_t i = 0; i < p->nlisteners; i++) {
        if (p->listeners[i].open) {
            uv_close((uv_handle_t *)&p->listeners[i].tcp, NULL);
            p->listeners[i].open = false;
        }
    }
    for (s = p->sessions; s; s = next) {
        next = s->next;
        /* the others finish once their last reply is forwarded */
        if (s->inflight == 0)
            session_finish(s, &s->client, MT_LOG_INFO, "shutdown");
    }
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
    while (p->free_rbufs) {
        mt_rbuf_t *b = p->free_rbufs;
        p->free_rbufs = b->next_free;
        free(b);
    }
    while (p->free_writes) {
        mt_write_t *w = p->free_writes;
        p->free_writes = w->next_free;
        free(w);
    }
    mt_account_free(p->account);
    free(p);
}
