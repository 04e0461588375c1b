/*
 * monitor: mongotap's own connections to every upstream member (plaintext
 * or TLS, as the upstream is), one hello each heartbeatFrequencyMS (every
 * 500 ms while a set has no primary), the replies fed to topology.c. It
 * knows where a new client connection should go, whether the upstream is
 * ready, and it logs what changes: member states, the primary, readiness.
 */
#ifndef MT_MONITOR_H
#define MT_MONITOR_H

#include <stdbool.h>
#include <sys/socket.h>
#include <uv.h>

#include "dns.h"
#include "stats.h"
#include "tls.h"
#include "topology.h"
#include "uri.h"

#define MT_MONITOR_FAST_MS 500           /* SDAM's minHeartbeatFrequencyMS */
#define MT_MONITOR_REPLY_MAX (16u << 20) /* a hello reply is a few hundred bytes */
#define MT_MONITOR_SRV_RETRY_MS 10000

typedef struct mt_monitor mt_monitor_t;

/* events: MT_TOPO_EV_* bits. Called from the loop after the topology
 * changed (the proxy moves sessions off a member that lost the primary). */
typedef void (*mt_monitor_change_cb)(void *data, unsigned events);

typedef struct {
    uv_loop_t *loop;
    const mt_uri_t *uri; /* copied; mongodb+srv is resolved by the monitor */
    mt_tls_ctx_t *tls;   /* NULL: the upstream speaks plaintext */
    mt_dns_t *dns;
    mt_stats_t *stats; /* may be NULL */
    mt_monitor_change_cb on_change;
    void *data;
} mt_monitor_config_t;

/* Where a new client connection goes. */
typedef struct {
    int index;
    const char *name; /* "host:port" */
    const char *host; /* for TLS: SNI and the name check */
    uint16_t port;
    const struct sockaddr *addr; /* NULL while not yet resolved */
} mt_monitor_target_t;

mt_monitor_t *mt_monitor_new(const mt_monitor_config_t *cfg);
/* Starts the first checks (after the SRV and TXT look-ups for mongodb+srv). */
void mt_monitor_start(mt_monitor_t *m);
/* false while there is no member to send a client to (no primary yet). */
bool mt_monitor_target(const mt_monitor_t *m, mt_monitor_target_t *out);
/* The target member answers its checks (GET /readyz). */
bool mt_monitor_ready(const mt_monitor_t *m);
/* Why it is not ready, one line ("no primary (a:1: connect: ...)"). */
void mt_monitor_not_ready_reason(const mt_monitor_t *m, char *out, size_t cap);
/* A client connection to member index failed: check it again now. */
void mt_monitor_check_soon(mt_monitor_t *m, int index);
const mt_topo_t *mt_monitor_topology(const mt_monitor_t *m);
/* GET /api/upstream; free with bson_free(). */
char *mt_monitor_json(const mt_monitor_t *m);
/* Closes every connection and timer; the memory goes once they are closed. */
void mt_monitor_close(mt_monitor_t *m);

#endif
