/*
 * topology: what mongotap knows of the upstream deployment, from the hello
 * replies of its own monitoring connections (a small part of the drivers'
 * Server Discovery and Monitoring rules): each member's state and round
 * trip, the set's primary, members found in hello's host lists. Pure: the
 * monitor does the I/O and feeds replies in; nothing here logs or blocks.
 */
#ifndef MT_TOPOLOGY_H
#define MT_TOPOLOGY_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uri.h"

#define MT_TOPO_MAX_MEMBERS 64
#define MT_TOPO_ERROR_MAX 256
#define MT_TOPO_RTT_WEIGHT 0.2 /* SDAM's moving average */

typedef enum {
    MT_MEMBER_UNKNOWN = 0, /* not checked yet, or invalidated */
    MT_MEMBER_PRIMARY,
    MT_MEMBER_SECONDARY,
    MT_MEMBER_ARBITER,
    MT_MEMBER_OTHER, /* hidden, starting up, recovering: in the set, not serving */
    MT_MEMBER_STANDALONE,
    MT_MEMBER_MONGOS,
    MT_MEMBER_DOWN, /* the last check failed */
} mt_member_state_t;

const char *mt_member_state_str(mt_member_state_t st);

typedef enum {
    MT_TOPO_UNKNOWN = 0, /* no member has answered yet */
    MT_TOPO_SINGLE,      /* one server, used as it is (HOST:PORT, directConnection) */
    MT_TOPO_REPLICA_SET,
    MT_TOPO_SHARDED, /* mongos routers */
} mt_topo_kind_t;

const char *mt_topo_kind_str(mt_topo_kind_t kind);

typedef struct {
    mt_hostport_t addr;
    char name[MT_URI_HOST_MAX + 8]; /* "host:port", as hello's host lists write it */
    mt_member_state_t state;
    double rtt_ms;
    bool has_rtt;
    bool discovered; /* from a host list rather than the seed list */
    char set_name[MT_URI_NAME_MAX];
    char error[MT_TOPO_ERROR_MAX]; /* why the last check failed, or "" */
    /* (electionId, setVersion) of its last primary claim, to spot stale ones */
    bool has_election_id;
    uint8_t election_id[12];
    int64_t set_version;
} mt_member_t;

/* What a reply or failure changed, for the monitor to act on and log. */
enum {
    MT_TOPO_EV_STATE = 1u << 0,     /* this member's state changed */
    MT_TOPO_EV_PRIMARY = 1u << 1,   /* the primary is another member, or none */
    MT_TOPO_EV_MEMBERS = 1u << 2,   /* members were discovered */
    MT_TOPO_EV_READY = 1u << 3,     /* mt_topo_ready() changed */
    MT_TOPO_EV_CHECK_ALL = 1u << 4, /* members were invalidated: check them soon */
};

typedef struct {
    mt_topo_kind_t kind;
    bool direct;                    /* never discover, never leave SINGLE */
    char set_name[MT_URI_NAME_MAX]; /* wanted (replicaSet) or learned */
    mt_member_t members[MT_TOPO_MAX_MEMBERS];
    size_t nmembers;
    int primary;      /* index, or -1 */
    int last_primary; /* the last primary there was, for counting changes */
    uint64_t primary_changes;
    bool ready;
    /* the newest primary claim seen */
    bool has_max_election_id;
    uint8_t max_election_id[12];
    int64_t max_set_version;
} mt_topo_t;

/* Seeds from uri->hosts (already resolved from SRV for mongodb+srv). */
void mt_topo_init(mt_topo_t *t, const mt_uri_t *uri);

/* Member i answered hello with the reply document body after rtt_ms.
 * Returns MT_TOPO_EV_* bits. */
unsigned mt_topo_on_hello(mt_topo_t *t, size_t i, const bson_t *reply, double rtt_ms);
/* Member i could not be checked (connect, TLS, timeout, an error reply). */
unsigned mt_topo_on_failure(mt_topo_t *t, size_t i, const char *why);

/* The member a new client connection goes to (the primary of a set, the
 * server itself, a mongos that answers), or -1 while there is none. */
int mt_topo_target(const mt_topo_t *t);
/* True while that member answers. */
bool mt_topo_ready(const mt_topo_t *t);
/* True while the topology has no primary and its checks should come
 * faster (SDAM's minHeartbeatFrequencyMS). */
bool mt_topo_wants_fast_checks(const mt_topo_t *t);

/* GET /api/upstream; the caller frees with bson_free(). */
char *mt_topo_json(const mt_topo_t *t, const mt_uri_t *uri);

#endif
