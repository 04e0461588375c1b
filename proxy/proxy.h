/*
 * proxy: listeners and client<->upstream sessions on one libuv loop. Bytes
 * are forwarded as they arrive, in order and unchanged; complete messages are
 * handed to stats/ after their bytes are queued for writing.
 */
#ifndef MT_PROXY_H
#define MT_PROXY_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "bufpool.h"
#include "cli.h"
#include "monitor.h"
#include "stats.h"

typedef struct mt_proxy mt_proxy_t;
typedef void (*mt_proxy_drained_cb)(mt_proxy_t *proxy, void *data);

/* Per-direction write queue limits: reading from a side stops while the
 * other side has more than HIGH bytes of buffers queued, resumes below LOW. */
#define MT_PROXY_QUEUE_HIGH (4u << 20)
#define MT_PROXY_QUEUE_LOW (1u << 20)
#define MT_PROXY_READ_BUF MT_BUFPOOL_RBUF_SIZE
#define MT_PROXY_DRAIN_TIMEOUT_MS 5000
/* longest a closing session waits for its peer to take the bytes queued to it */
#define MT_PROXY_FLUSH_TIMEOUT_MS 5000

mt_proxy_t *mt_proxy_new(uv_loop_t *loop, const mt_cli_config_t *cfg, mt_stats_t *stats);
/* Starts watching the upstream (resolver, TLS contexts, the monitor) and
 * binds every --listen address, then every --tls-listen one; writes
 * "host:port,host:port" (real ports) of the plain ones into bound. 0 on
 * success, a libuv error otherwise (logged). */
int mt_proxy_listen(mt_proxy_t *p, char *bound, size_t cap);
/* "host:port,..." of the --tls-listen listeners ("" without). */
const char *mt_proxy_tls_bound(const mt_proxy_t *p);
/* The upstream as mongotap sees it (for /readyz and /api/upstream); NULL
 * after the drain finished. */
mt_monitor_t *mt_proxy_monitor(const mt_proxy_t *p);
/* Stops accepting; sessions close once their in-flight replies are
 * delivered, all of them after MT_PROXY_DRAIN_TIMEOUT_MS at most. */
void mt_proxy_drain(mt_proxy_t *p, mt_proxy_drained_cb cb, void *data);
size_t mt_proxy_active(const mt_proxy_t *p);

/* What the sessions hold right now (walks them: for tests and diagnostics). */
typedef struct {
    size_t sessions;
    size_t queued_bytes; /* read buffers waiting in write queues */
    size_t paused_sides; /* sides not read because their peer is backed up */
    size_t drain_cut;    /* sessions closed by the drain timeout with replies still owed */
} mt_proxy_usage_t;
void mt_proxy_usage(const mt_proxy_t *p, mt_proxy_usage_t *out);
/* After the loop has run dry. */
void mt_proxy_free(mt_proxy_t *p);

#endif
