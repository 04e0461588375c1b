/*
 * upstream: resolving (uv_getaddrinfo runs on libuv's thread pool, so the
 * loop never blocks) and uv_tcp_connect, one callback at the end.
 */
#include "upstream.h"

#include <string.h>

void mt_upstream_init(mt_upstream_t *u, uv_loop_t *loop, const mt_hostport_t *addr)
{
    memset(u, 0, sizeof(*u));
    u->loop = loop;
    u->addr = *addr;
    mt_cli_format_hostport(addr, u->desc, sizeof(u->desc));
    if (uv_ip4_addr(addr->host, addr->port, (struct sockaddr_in *)&u->ss) == 0 ||
        uv_ip6_addr(addr->host, addr->port, (struct sockaddr_in6 *)&u->ss) == 0)
        u->literal = true;
}

static void connect_cb(uv_connect_t *req, int status)
{
    mt_upstream_conn_t *c = req->data;

    if (status == 0)
        uv_tcp_nodelay(c->tcp, 1);
    c->cb(c, status, "unreachable");
}

static void connect_to(mt_upstream_conn_t *c, const struct sockaddr *addr)
{
    int rc;

    c->connect.data = c;
    rc = uv_tcp_connect(&c->connect, c->tcp, addr, connect_cb);
    if (rc < 0)
        c->cb(c, rc, "unreachable");
}

static void resolve_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    mt_upstream_conn_t *c = req->data;

    c->resolving = false;
    if (status == 0 && !res)
        status = UV_EAI_NONAME;
    if (status < 0)
        c->cb(c, status == UV_EAI_CANCELED ? UV_ECANCELED : status, "cannot be resolved");
    else
        connect_to(c, res->ai_addr);
    uv_freeaddrinfo(res);
}

void mt_upstream_conn_start(mt_upstream_t *u, mt_upstream_conn_t *c, uv_tcp_t *tcp,
                            mt_upstream_conn_cb cb, void *data)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    char port[8];
    int rc;

    c->up = u;
    c->tcp = tcp;
    c->cb = cb;
    c->data = data;
    if (u->literal) {
        connect_to(c, (const struct sockaddr *)&u->ss);
        return;
    }
    snprintf(port, sizeof(port), "%u", u->addr.port);
    c->resolve.data = c;
    c->resolving = true;
    rc = uv_getaddrinfo(u->loop, &c->resolve, resolve_cb, u->addr.host, port, &hints);
    if (rc < 0) {
        c->resolving = false;
        c->cb(c, rc, "cannot be resolved");
    }
}

void mt_upstream_conn_cancel(mt_upstream_conn_t *c)
{
    if (c->resolving)
        uv_cancel((uv_req_t *)&c->resolve);
}
