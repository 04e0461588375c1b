/*
 * upstream: pick the member, look its address up when the monitor has not,
 * connect, shake hands when TLS, one callback at the end. Waiting attempts
 * sit on a list until mt_upstream_target_changed().
 */
#include "upstream.h"

#include <stdio.h>
#include <string.h>

void mt_upstream_init(mt_upstream_t *u, uv_loop_t *loop, mt_monitor_t *monitor, mt_dns_t *dns,
                      mt_tls_ctx_t *tls, const char *desc)
{
    memset(u, 0, sizeof(*u));
    u->loop = loop;
    u->monitor = monitor;
    u->dns = dns;
    u->tls = tls;
    snprintf(u->desc, sizeof(u->desc), "%s", desc);
    h2o_linklist_init_anchor(&u->waiting);
}

static void finish(mt_upstream_conn_t *c, int status, const char *what)
{
    c->cb(c, c->cancelled && status != 0 ? UV_ECANCELED : status, what);
}

static void tls_done_cb(mt_stream_t *s, int status);

static void connect_cb(uv_connect_t *req, int status)
{
    mt_upstream_conn_t *c = req->data;
    mt_tls_t *tls;
    int rc;

    if (status < 0 || c->cancelled) {
        finish(c, status < 0 ? status : UV_ECANCELED, "unreachable");
        return;
    }
    uv_tcp_nodelay(&c->stream->tcp, 1);
    if (!c->up->tls) {
        finish(c, 0, NULL);
        return;
    }
    tls = mt_tls_new(c->up->tls, c->host);
    if (!tls) {
        finish(c, UV_ENOMEM, "TLS handshake failed: out of memory");
        return;
    }
    rc = mt_stream_start_tls(c->stream, tls, tls_done_cb);
    if (rc < 0) {
        c->tls_failed = rc == UV_EPROTO;
        c->detail = rc == UV_EPROTO ? mt_stream_tls_reason(c->stream) : NULL;
        finish(c, rc, "TLS handshake failed");
    }
}

/* The stream's data is its owner's; the attempt rides in handshake_data. */
static void tls_done_cb(mt_stream_t *s, int status)
{
    mt_upstream_conn_t *c = s->handshake_data;

    if (status < 0) {
        c->tls_failed = status == UV_EPROTO;
        c->detail = status == UV_EPROTO ? mt_stream_tls_reason(s) : NULL;
        finish(c, status, "TLS handshake failed");
        return;
    }
    finish(c, 0, NULL);
}

static void connect_to(mt_upstream_conn_t *c, const struct sockaddr *addr)
{
    int rc;

    c->connect.data = c;
    c->stream->handshake_data = c;
    rc = uv_tcp_connect(&c->connect, &c->stream->tcp, addr, connect_cb);
    if (rc < 0)
        finish(c, rc, "unreachable");
}

static void resolved_cb(void *data, int status, const char *error,
                        const struct sockaddr_storage *addrs, size_t n)
{
    mt_upstream_conn_t *c = data;

    c->resolving = false;
    if (c->cancelled) {
        finish(c, UV_ECANCELED, "cannot be resolved");
        return;
    }
    if (status != 0 || n == 0) {
        c->detail = error ? error : "no address";
        finish(c, UV_EAI_NONAME, "cannot be resolved");
        return;
    }
    connect_to(c, (const struct sockaddr *)&addrs[0]);
}

/* Goes to the monitor's target, or waits for one. */
static void begin(mt_upstream_conn_t *c)
{
    mt_upstream_t *u = c->up;
    mt_monitor_target_t t;
    int rc;

    if (!mt_monitor_target(u->monitor, &t)) {
        c->waiting = true;
        h2o_linklist_insert(&u->waiting, &c->wait_link);
        return;
    }
    c->member = t.index;
    c->member_name = t.name;
    c->host = t.host;
    c->port = t.port;
    if (t.addr) {
        connect_to(c, t.addr);
        return;
    }
    c->resolving = true;
    rc = mt_dns_addr(u->dns, c->host, c->port, resolved_cb, c);
    if (rc < 0) {
        c->resolving = false;
        finish(c, rc, "cannot be resolved");
    }
}

void mt_upstream_conn_start(mt_upstream_t *u, mt_upstream_conn_t *c, mt_stream_t *stream,
                            mt_upstream_conn_cb cb, void *data)
{
    memset(c, 0, sizeof(*c));
    c->up = u;
    c->stream = stream;
    c->cb = cb;
    c->data = data;
    c->member = -1;
    c->member_name = "";
    begin(c);
}

void mt_upstream_conn_cancel(mt_upstream_conn_t *c)
{
    c->cancelled = true;
    if (c->waiting) {
        c->waiting = false;
        h2o_linklist_unlink(&c->wait_link);
        finish(c, UV_ECANCELED, "no member to connect to");
    }
}

void mt_upstream_target_changed(mt_upstream_t *u)
{
    mt_monitor_target_t t;

    if (!mt_monitor_target(u->monitor, &t))
        return;
    while (!h2o_linklist_is_empty(&u->waiting)) {
        mt_upstream_conn_t *c = (mt_upstream_conn_t *)((char *)u->waiting.next -
                                                       offsetof(mt_upstream_conn_t, wait_link));
        h2o_linklist_unlink(&c->wait_link);
        c->waiting = false;
        begin(c);
    }
}
