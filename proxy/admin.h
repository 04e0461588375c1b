/*
 * admin: the HTTP admin endpoint (libh2o on the proxy's libuv loop): health,
 * JSON API, Prometheus metrics, Server-Sent Events and the web console.
 */
#ifndef MT_ADMIN_H
#define MT_ADMIN_H

#include <stddef.h>
#include <uv.h>

#include "cli.h"
#include "monitor.h"
#include "stats.h"

typedef struct mt_admin mt_admin_t;

/* Limits on what a client may send and what a slow viewer may cost. */
#define MT_ADMIN_MAX_BODY (64u << 10)
#define MT_ADMIN_MAX_HEAD (16u << 10) /* request line and headers */
#define MT_ADMIN_MAX_CONNECTIONS 256
/* Past the cap, a few more connections are accepted for /healthz and /readyz
 * only (answered, then closed), each for at most MT_ADMIN_PROBE_MS: idle
 * connections cannot make a liveness probe fail. When these are taken too,
 * the oldest gives way to the newest. */
#define MT_ADMIN_PROBE_RESERVE 16
#define MT_ADMIN_PROBE_MS 2000
/* Time a connection has to send a request head, also between two requests
 * of one connection (h2o's request timeout); an /events stream is exempt. */
#define MT_ADMIN_IDLE_TIMEOUT_MS 10000
#define MT_ADMIN_SSE_MAX_PENDING (256u << 10)
#define MT_ADMIN_SSE_MAX_VIEWERS 64
#define MT_ADMIN_SSE_SNDBUF (64 << 10)

mt_admin_t *mt_admin_new(uv_loop_t *loop, const mt_cli_config_t *cfg, mt_stats_t *stats);
/* Binds the admin address; writes "host:port" (real port) into bound. */
int mt_admin_listen(mt_admin_t *a, char *bound, size_t cap);
/* The upstream monitor behind /readyz and /api/upstream (NULL: not ready). */
void mt_admin_set_monitor(mt_admin_t *a, mt_monitor_t *monitor);
/* Sends a finding to every /events viewer. */
void mt_admin_publish_finding(mt_admin_t *a, const char *json);
/* Whether any /events viewer is connected (false without an admin). */
bool mt_admin_has_viewers(const mt_admin_t *a);
/* Stops listening and ends every /events stream. */
void mt_admin_close(mt_admin_t *a);

/* Constant-time check of an "Authorization" header value against the token. */
int mt_admin_token_ok(const char *token, const char *header, size_t header_len);

#endif
