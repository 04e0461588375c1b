/*
 * upstream: where a new session connects, and the connecting itself: one
 * address today, an IP or a host name resolved per connection without
 * blocking the loop. The place replica-set primaries and TLS settings hang on.
 */
#ifndef MT_UPSTREAM_H
#define MT_UPSTREAM_H

#include <stdbool.h>
#include <uv.h>

#include "cli.h"

typedef struct {
    uv_loop_t *loop;
    mt_hostport_t addr;
    struct sockaddr_storage ss; /* when literal */
    bool literal;               /* an IP address: no resolution per connection */
    char desc[MT_CLI_HOST_MAX + 8];
} mt_upstream_t;

typedef struct mt_upstream_conn mt_upstream_conn_t;

/* Runs exactly once per mt_upstream_conn_start: status 0 when tcp is
 * connected, else a libuv error and what failed ("cannot be resolved",
 * "unreachable"); UV_ECANCELED after a cancel or when tcp was closed. */
typedef void (*mt_upstream_conn_cb)(mt_upstream_conn_t *c, int status, const char *what);

struct mt_upstream_conn {
    mt_upstream_t *up;
    uv_tcp_t *tcp;
    mt_upstream_conn_cb cb;
    void *data;
    bool resolving;
    uv_getaddrinfo_t resolve;
    uv_connect_t connect;
};

void mt_upstream_init(mt_upstream_t *u, uv_loop_t *loop, const mt_hostport_t *addr);

/* Connects tcp (initialised, not yet connected) to the upstream. */
void mt_upstream_conn_start(mt_upstream_t *u, mt_upstream_conn_t *c, uv_tcp_t *tcp,
                            mt_upstream_conn_cb cb, void *data);
/* Stops a look-up under way (the callback still runs, with UV_ECANCELED); a
 * connect under way is cancelled by closing tcp. */
void mt_upstream_conn_cancel(mt_upstream_conn_t *c);

#endif
