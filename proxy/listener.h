/*
 * listener: the sockets apps connect to, and the admission policy in front
 * of the sessions: who is refused (shutting down, --max-connections, the
 * open-file limit, which libuv would otherwise meet by dropping clients
 * silently), how refusals are logged (rate-limited) and counted.
 */
#ifndef MT_LISTENER_H
#define MT_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cli.h"
#include "stats.h"

/* fds kept free for the admin endpoint, log files and accepting a client
 * only to close it again */
#define MT_LISTEN_FD_RESERVE 32

typedef struct {
    uv_tcp_t tcp;
    void *owner; /* given to mt_listen_open, for the connection callback */
    bool open;
} mt_listener_t;

/* plain (--listen) and TLS (--tls-listen) listeners */
#define MT_LISTEN_MAX (2 * MT_CLI_MAX_LISTEN)

typedef struct {
    uv_loop_t *loop;
    mt_stats_t *stats;
    uint32_t max_connections;
    mt_listener_t listeners[MT_LISTEN_MAX];
    size_t nlisteners;
    size_t fds_at_start; /* open after binding: listeners, stdio, loop */
    uint64_t last_accept_error_log;
    uint64_t last_refusal_log;
    uint64_t refusals_unlogged;
    bool capacity_told; /* the open-file limit line is said once */
} mt_listen_t;

void mt_listen_init(mt_listen_t *l, uv_loop_t *loop, mt_stats_t *stats, uint32_t max_connections);

/* Binds and listens on every address, after those of earlier calls; each
 * listener's tcp.data is its mt_listener_t (owner = owner). Writes
 * "host:port,..." with the real ports into bound. 0 on success, a libuv error otherwise (logged).
 * Then raises the soft open-file limit as --max-connections needs and says when it cannot. */
int mt_listen_open(mt_listen_t *l, const mt_hostport_t *addrs, size_t n, uv_connection_cb cb,
                   void *owner, char *bound, size_t cap);
/* Stops accepting. */
void mt_listen_close(mt_listen_t *l);

/* Why a new connection must be refused now, or NULL to accept it. */
const char *mt_listen_refusal(const mt_listen_t *l, size_t active, bool draining);
/* Accepts the pending connection only to close it; logs (at most a line a
 * second) and counts it. */
void mt_listen_refuse(mt_listen_t *l, uv_stream_t *server, const char *why);
/* An accept that failed (listener error, no memory): logged at most once a
 * second, counted as a refusal. */
void mt_listen_accept_failed(mt_listen_t *l, const char *what, int err);

/* "ip:port" or "[v6]:port" of a connected socket; "?" when unknown. */
void mt_listen_peer_name(uv_tcp_t *tcp, char *out, size_t cap);

#endif
