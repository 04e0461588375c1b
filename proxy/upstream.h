/*
 * upstream: where a new session connects, and the connecting itself. The
 * monitor says which member (the primary of a set, the server, the nearest
 * mongos) and usually its address; otherwise the name is looked up with
 * c-ares. TLS, when the upstream wants it, is part of connecting. An attempt
 * made while there is no member to go to (an election, mongodb+srv still
 * resolving) waits for one.
 */
#ifndef MT_UPSTREAM_H
#define MT_UPSTREAM_H

#include <h2o/linklist.h>
#include <stdbool.h>
#include <uv.h>

#include "cli.h"
#include "dns.h"
#include "monitor.h"
#include "stream.h"
#include "tls.h"

typedef struct {
    uv_loop_t *loop;
    mt_monitor_t *monitor;
    mt_dns_t *dns;
    mt_tls_ctx_t *tls; /* NULL: the upstream speaks plaintext */
    char desc[512];    /* for log lines */
    h2o_linklist_t waiting;
} mt_upstream_t;

typedef struct mt_upstream_conn mt_upstream_conn_t;

/* Runs exactly once per mt_upstream_conn_start: status 0 when the stream is
 * connected (and its TLS handshake done), else a libuv error and what failed
 * ("cannot be resolved", "unreachable", "TLS handshake failed"), with the
 * attempt's detail saying why when there is more to say than the status;
 * UV_ECANCELED after a cancel or when the stream was closed. */
typedef void (*mt_upstream_conn_cb)(mt_upstream_conn_t *c, int status, const char *what);

struct mt_upstream_conn {
    mt_upstream_t *up;
    mt_stream_t *stream;
    mt_upstream_conn_cb cb;
    void *data;
    int member; /* the member connected to, -1 before there is one */
    /* name ("" before) and host of that member: the monitor's strings, which
     * live as long as the monitor, longer than any session */
    const char *member_name;
    const char *host;
    uint16_t port;
    bool waiting; /* for a member to go to */
    bool resolving;
    bool cancelled;
    bool tls_failed;    /* the handshake failed (counted apart) */
    const char *detail; /* the resolver's or TLS's reason, valid in the callback */
    h2o_linklist_t wait_link;
    uv_connect_t connect;
};

void mt_upstream_init(mt_upstream_t *u, uv_loop_t *loop, mt_monitor_t *monitor, mt_dns_t *dns,
                      mt_tls_ctx_t *tls, const char *desc);

/* Connects stream (initialised, not yet connected) to the target member. */
void mt_upstream_conn_start(mt_upstream_t *u, mt_upstream_conn_t *c, mt_stream_t *stream,
                            mt_upstream_conn_cb cb, void *data);
/* Stops an attempt: a wait ends at once (the callback runs inside this
 * call), a look-up when it answers, each with UV_ECANCELED; a connect or a
 * handshake under way is cancelled by closing the stream. */
void mt_upstream_conn_cancel(mt_upstream_conn_t *c);
/* The monitor has a member to go to now: waiting attempts go on. */
void mt_upstream_target_changed(mt_upstream_t *u);

#endif
