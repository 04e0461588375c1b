/*
 * proxy_int: the inside of the proxy, shared by the proxy object (proxy.c:
 * accepting, draining) and the sessions (session.c: forwarding, the state
 * machine). Nothing outside proxy.c and session.c includes it.
 */
#ifndef MT_PROXY_INT_H
#define MT_PROXY_INT_H

#include <h2o/linklist.h>
#include <stdbool.h>

#include "account.h"
#include "bufpool.h"
#include "dns.h"
#include "listener.h"
#include "log.h"
#include "monitor.h"
#include "proxy.h"
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

/* A read whose forwarding and accounting wait for the end of the loop
 * iteration's I/O callbacks (session.c): every read an iteration returns is
 * forwarded first, one write after another, and only then accounted, so
 * that parsing never delays forwarding and the peers are woken by a run of
 * writes, not one write between two parses. */
typedef struct {
    mt_side_t *side;
    mt_rbuf_t *rbuf;  /* the read's reference, the entry's now */
    uint32_t len;     /* bytes read */
    uint32_t fwd_len; /* of them, what may leave now (whole headers only) */
    uint8_t nheld;    /* header bytes held from earlier reads, sent first */
    bool forwarded;
    uint8_t held[MT_WIRE_HEADER_LEN];
} mt_read_t;

/* Reads held at once; one more first forwards and accounts those. 64 read
 * buffers are what the pool keeps (MT_BUFPOOL_FREE_RBUFS_MAX). */
#define MT_PROXY_READS_MAX 64
/* A read this large is forwarded and accounted at once (after the held ones). */
#define MT_PROXY_HOLD_BYTES (16u << 10)

typedef enum {
    MT_SESSION_NEW = 0,    /* accepted (or not yet): handles open, nothing started */
    MT_SESSION_CONNECTING, /* to the upstream (and TLS handshakes on either side) */
    MT_SESSION_ACTIVE,
    MT_SESSION_FLUSHING, /* one side is done: delivering what is queued, then closing */
    MT_SESSION_CLOSING,
} mt_session_state_t;

/* What every read touches comes first, on one cache line: with many
 * connections a session is cold when its bytes arrive. */
typedef struct mt_session {
    uint64_t id;
    mt_session_state_t state;
    mt_proxy_t *proxy;
    mt_stats_conn_t *stats; /* NULL when stats does not track it */
    int64_t inflight;       /* requests forwarded that still expect a reply */
    mt_side_t client;
    mt_side_t upstream;
    uv_timer_t timer; /* connect timeout, then flush timeout */
    mt_upstream_conn_t up_conn;
    uv_shutdown_t shutdown_req[2];
    bool client_ready; /* the client's TLS handshake is done (or it is plaintext) */
    bool upstream_ready;
    bool retiring; /* its member is no longer primary: close once nothing is owed */
    char client_addr[64];
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
    uv_prepare_t iteration; /* refills the decompression budget before each poll */
    uint64_t iteration_ns;  /* mt__proxy_iteration_ns(): 0 until read in this iteration */
    bool iteration_open;
    uv_check_t reads_check; /* forwards and accounts the iteration's reads */
    bool reads_check_open;
    bool reads_flushing;
    unsigned nreads;
    mt_read_t reads[MT_PROXY_READS_MAX];
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

#define mt__session_of(node) ((mt_session_t *)((char *)(node)-offsetof(mt_session_t, link)))

/* Takes the pending connection of server into a new session (TLS: starts
 * its handshake) and starts connecting it upstream (session.c). */
void mt__session_accept(mt_proxy_t *p, uv_stream_t *server, bool tls);
/* The topology changed: a session on a member of a set that is no longer
 * its primary closes once it owes no reply. */
void mt__session_check_member(mt_session_t *s);
/* Drain: finishes the session now if it owes no reply (else it finishes once
 * its last reply is forwarded). */
void mt__session_drain(mt_session_t *s);
/* Drain timeout: closes a session that still owes replies. */
void mt__session_cut(mt_session_t *s);
/* Forwards, then accounts, the reads held since the last call (at the end
 * of the iteration's I/O callbacks, and before anything changes a
 * session's state). Does nothing when called from inside itself. */
void mt__session_flush_reads(mt_proxy_t *p);
/* Calls the drained callback once draining and every session is gone (proxy.c). */
void mt__proxy_check_drained(mt_proxy_t *p);
/* When this loop iteration's bytes arrived, for accounting: the clock is read
 * at the first call after the poll and shared by every read the poll
 * returned with it, one clock read per iteration instead of one per read. */
uint64_t mt__proxy_iteration_ns(mt_proxy_t *p);

#endif
