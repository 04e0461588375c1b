/*
 * topology: one function per event (a hello reply, a failed check), each
 * returning what changed. The rules kept from SDAM: a member's role comes
 * from hello; a set's name is wanted or learned and members of another set
 * are not used; a new primary claim with an older (electionId, setVersion)
 * than one already seen is stale; a new primary demotes the old one to
 * unknown until it is checked again; members are learned from the host,
 * passive and arbiter lists of the set's members.
 */
#include "topology.h"

#include <stdio.h>
#include <string.h>

const char *mt_member_state_str(mt_member_state_t st)
{
    switch (st) {
    case MT_MEMBER_UNKNOWN:
        return "unknown";
    case MT_MEMBER_PRIMARY:
        return "primary";
    case MT_MEMBER_SECONDARY:
        return "secondary";
    case MT_MEMBER_ARBITER:
        return "arbiter";
    case MT_MEMBER_OTHER:
        return "other";
    case MT_MEMBER_STANDALONE:
        return "standalone";
    case MT_MEMBER_MONGOS:
        return "mongos";
    case MT_MEMBER_DOWN:
        return "down";
    }
    return "unknown";
}

const char *mt_topo_kind_str(mt_topo_kind_t kind)
{
    switch (kind) {
    case MT_TOPO_UNKNOWN:
        return "unknown";
    case MT_TOPO_SINGLE:
        return "single";
    case MT_TOPO_REPLICA_SET:
        return "replica_set";
    case MT_TOPO_SHARDED:
        return "sharded";
    }
    return "unknown";
}

static bool answers(mt_member_state_t st)
{
    return st != MT_MEMBER_UNKNOWN && st != MT_MEMBER_DOWN;
}

static int find_member(const mt_topo_t *t, const mt_hostport_t *hp)
{
    for (size_t i = 0; i < t->nmembers; i++)
        if (t->members[i].addr.port == hp->port && strcmp(t->members[i].addr.host, hp->host) == 0)
            return (int)i;
    return -1;
}

/* Adds a member unless it is known; true when it was added. */
static bool add_member(mt_topo_t *t, const mt_hostport_t *hp, bool discovered)
{
    mt_member_t *m;

    if (find_member(t, hp) >= 0 || t->nmembers == MT_TOPO_MAX_MEMBERS)
        return false;
    m = &t->members[t->nmembers++];
    memset(m, 0, sizeof(*m));
    m->addr = *hp;
    snprintf(m->name, sizeof(m->name), strchr(hp->host, ':') ? "[%s]:%u" : "%s:%u", hp->host,
             hp->port);
    m->discovered = discovered;
    return true;
}

void mt_topo_init(mt_topo_t *t, const mt_uri_t *uri)
{
    memset(t, 0, sizeof(*t));
    t->primary = t->last_primary = -1;
    t->direct = uri->direct;
    t->kind = uri->direct           ? MT_TOPO_SINGLE
              : uri->replica_set[0] ? MT_TOPO_REPLICA_SET
                                    : MT_TOPO_UNKNOWN;
    snprintf(t->set_name, sizeof(t->set_name), "%s", uri->replica_set);
    for (size_t i = 0; i < uri->nhosts; i++)
        add_member(t, &uri->hosts[i], false);
}

/* ---- reading hello ---------------------------------------------------- */

typedef struct {
    bool ok;
    char errmsg[160];
    bool writable, secondary, arbiter, hidden, is_replica_set, mongos;
    char set_name[MT_URI_NAME_MAX];
    bool has_election_id;
    uint8_t election_id[12];
    bool has_set_version;
    int64_t set_version;
} hello_t;

static void read_hello(const bson_t *reply, hello_t *h)
{
    bson_iter_t it;

    memset(h, 0, sizeof(*h));
    if (!bson_iter_init(&it, reply))
        return;
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        if (strcmp(key, "ok") == 0) {
            h->ok = bson_iter_as_bool(&it) &&
                    (!BSON_ITER_HOLDS_NUMBER(&it) || bson_iter_as_double(&it) == 1.0);
        } else if (strcmp(key, "isWritablePrimary") == 0 || strcmp(key, "ismaster") == 0) {
            h->writable = bson_iter_as_bool(&it);
        } else if (strcmp(key, "secondary") == 0) {
            h->secondary = bson_iter_as_bool(&it);
        } else if (strcmp(key, "arbiterOnly") == 0) {
            h->arbiter = bson_iter_as_bool(&it);
        } else if (strcmp(key, "hidden") == 0) {
            h->hidden = bson_iter_as_bool(&it);
        } else if (strcmp(key, "isreplicaset") == 0) {
            h->is_replica_set = bson_iter_as_bool(&it);
        } else if (strcmp(key, "msg") == 0 && BSON_ITER_HOLDS_UTF8(&it)) {
            h->mongos = strcmp(bson_iter_utf8(&it, NULL), "isdbgrid") == 0;
        } else if (strcmp(key, "setName") == 0 && BSON_ITER_HOLDS_UTF8(&it)) {
            snprintf(h->set_name, sizeof(h->set_name), "%s", bson_iter_utf8(&it, NULL));
        } else if (strcmp(key, "errmsg") == 0 && BSON_ITER_HOLDS_UTF8(&it)) {
            snprintf(h->errmsg, sizeof(h->errmsg), "%s", bson_iter_utf8(&it, NULL));
        } else if (strcmp(key, "electionId") == 0 && BSON_ITER_HOLDS_OID(&it)) {
            memcpy(h->election_id, bson_iter_oid(&it)->bytes, 12);
            h->has_election_id = true;
        } else if (strcmp(key, "setVersion") == 0 && BSON_ITER_HOLDS_NUMBER(&it)) {
            h->set_version = bson_iter_as_int64(&it);
            h->has_set_version = true;
        }
    }
}

static mt_member_state_t classify(const hello_t *h)
{
    if (h->mongos)
        return MT_MEMBER_MONGOS;
    if (h->set_name[0]) {
        if (h->hidden)
            return MT_MEMBER_OTHER;
        if (h->writable)
            return MT_MEMBER_PRIMARY;
        if (h->secondary)
            return MT_MEMBER_SECONDARY;
        if (h->arbiter)
            return MT_MEMBER_ARBITER;
        return MT_MEMBER_OTHER;
    }
    /* a member not yet configured (RSGhost) says isreplicaset and no name */
    return h->is_replica_set ? MT_MEMBER_OTHER : MT_MEMBER_STANDALONE;
}

/* Learns members from the reply's host lists. */
static bool discover(mt_topo_t *t, const bson_t *reply)
{
    static const char *const lists[] = {"hosts", "passives", "arbiters"};
    bool added = false;

    for (size_t k = 0; k < sizeof(lists) / sizeof(lists[0]); k++) {
        bson_iter_t it, child;
        if (!bson_iter_init_find(&it, reply, lists[k]) || !BSON_ITER_HOLDS_ARRAY(&it) ||
            !bson_iter_recurse(&it, &child))
            continue;
        while (bson_iter_next(&child)) {
            mt_hostport_t hp;
            uint32_t len;
            const char *s;
            if (!BSON_ITER_HOLDS_UTF8(&child))
                continue;
            s = bson_iter_utf8(&child, &len);
            if (mt_uri_parse_hostport(s, len, MT_URI_DEFAULT_PORT, &hp) != 0 || hp.port == 0)
                continue;
            for (char *c = hp.host; *c; c++)
                if (*c >= 'A' && *c <= 'Z')
                    *c = (char)(*c - 'A' + 'a');
            added |= add_member(t, &hp, true);
        }
    }
    return added;
}

/* (electionId, setVersion) order, as SDAM compares primary claims. */
static int claim_cmp(const hello_t *h, const mt_topo_t *t)
{
    int c = t->has_max_election_id ? memcmp(h->election_id, t->max_election_id, 12) : 1;

    if (c != 0)
        return c;
    return h->set_version < t->max_set_version ? -1 : h->set_version > t->max_set_version;
}

/* ---- events ----------------------------------------------------------- */

/* The bookkeeping every event ends with: primary changes, readiness. */
static unsigned settle(mt_topo_t *t, int old_primary, bool old_ready, mt_member_state_t old_state,
                       size_t i)
{
    unsigned ev = 0;

    if (t->members[i].state != old_state)
        ev |= MT_TOPO_EV_STATE;
    if (t->primary != old_primary) {
        ev |= MT_TOPO_EV_PRIMARY;
        if (t->primary >= 0) {
            if (t->last_primary >= 0 && t->last_primary != t->primary)
                t->primary_changes++;
            t->last_primary = t->primary;
        }
    }
    t->ready = mt_topo_ready(t);
    if (t->ready != old_ready)
        ev |= MT_TOPO_EV_READY;
    return ev;
}

unsigned mt_topo_on_failure(mt_topo_t *t, size_t i, const char *why)
{
    mt_member_t *m = &t->members[i];
    mt_member_state_t old_state = m->state;
    int old_primary = t->primary;
    bool old_ready = t->ready;

    m->state = MT_MEMBER_DOWN;
    m->has_rtt = false;
    snprintf(m->error, sizeof(m->error), "%s", why);
    if (t->primary == (int)i)
        t->primary = -1;
    return settle(t, old_primary, old_ready, old_state, i);
}

unsigned mt_topo_on_hello(mt_topo_t *t, size_t i, const bson_t *reply, double rtt_ms)
{
    mt_member_t *m = &t->members[i];
    mt_member_state_t old_state = m->state, state;
    int old_primary = t->primary;
    bool old_ready = t->ready;
    unsigned ev = 0;
    hello_t h;

    read_hello(reply, &h);
    if (!h.ok) {
        char why[MT_TOPO_ERROR_MAX];
        snprintf(why, sizeof(why), "hello failed: %s", h.errmsg[0] ? h.errmsg : "ok is not 1");
        return mt_topo_on_failure(t, i, why);
    }
    m->rtt_ms =
        m->has_rtt ? MT_TOPO_RTT_WEIGHT * rtt_ms + (1 - MT_TOPO_RTT_WEIGHT) * m->rtt_ms : rtt_ms;
    m->has_rtt = true;
    m->error[0] = '\0';
    snprintf(m->set_name, sizeof(m->set_name), "%s", h.set_name);
    state = classify(&h);

    if (t->kind == MT_TOPO_UNKNOWN) {
        if (state == MT_MEMBER_MONGOS) {
            t->kind = MT_TOPO_SHARDED;
        } else if (state == MT_MEMBER_STANDALONE && t->nmembers == 1) {
            t->kind = MT_TOPO_SINGLE;
        } else if (h.set_name[0]) {
            t->kind = MT_TOPO_REPLICA_SET;
            snprintf(t->set_name, sizeof(t->set_name), "%s", h.set_name);
        }
    }
    if (t->kind == MT_TOPO_REPLICA_SET && !t->direct) {
        if (strcmp(h.set_name, t->set_name) != 0) {
            char why[MT_TOPO_ERROR_MAX];
            snprintf(why, sizeof(why), "%.80s is %s%s%.60s, not a member of replica set %.60s",
                     m->name, mt_member_state_str(state), h.set_name[0] ? " of set " : "",
                     h.set_name, t->set_name);
            memcpy(m->error, why, sizeof(why));
            m->state = MT_MEMBER_UNKNOWN;
            if (t->primary == (int)i)
                t->primary = -1;
            return settle(t, old_primary, old_ready, old_state, i);
        }
        if (state == MT_MEMBER_PRIMARY && h.has_election_id && h.has_set_version) {
            if (claim_cmp(&h, t) < 0) {
                snprintf(m->error, sizeof(m->error),
                         "stale primary claim (an older election than one already seen)");
                m->state = MT_MEMBER_UNKNOWN;
                if (t->primary == (int)i)
                    t->primary = -1;
                return settle(t, old_primary, old_ready, old_state, i) | MT_TOPO_EV_CHECK_ALL;
            }
            memcpy(t->max_election_id, h.election_id, 12);
            t->max_set_version = h.set_version;
            t->has_max_election_id = true;
        }
        if (state == MT_MEMBER_PRIMARY) {
            for (size_t j = 0; j < t->nmembers; j++) {
                if (j != i && t->members[j].state == MT_MEMBER_PRIMARY) {
                    t->members[j].state = MT_MEMBER_UNKNOWN;
                    char why[MT_TOPO_ERROR_MAX];
                    snprintf(why, sizeof(why), "%.200s claims to be primary now", m->name);
                    memcpy(t->members[j].error, why, sizeof(why));
                    ev |= MT_TOPO_EV_CHECK_ALL;
                }
            }
            t->primary = (int)i;
        } else if (t->primary == (int)i) {
            t->primary = -1;
        }
        if (discover(t, reply))
            ev |= MT_TOPO_EV_MEMBERS;
    }
    m->state = state;
    return ev | settle(t, old_primary, old_ready, old_state, i);
}

int mt_topo_target(const mt_topo_t *t)
{
    int best = -1;

    switch (t->kind) {
    case MT_TOPO_SINGLE:
        return t->nmembers ? 0 : -1;
    case MT_TOPO_REPLICA_SET:
        return t->primary;
    case MT_TOPO_SHARDED:
        /* the nearest router that answers */
        for (size_t i = 0; i < t->nmembers; i++) {
            const mt_member_t *m = &t->members[i];
            if (m->state == MT_MEMBER_MONGOS && (best < 0 || m->rtt_ms < t->members[best].rtt_ms))
                best = (int)i;
        }
        return best;
    case MT_TOPO_UNKNOWN:
        break;
    }
    return -1;
}

bool mt_topo_ready(const mt_topo_t *t)
{
    int i = mt_topo_target(t);

    return i >= 0 && answers(t->members[i].state);
}

bool mt_topo_wants_fast_checks(const mt_topo_t *t)
{
    return t->kind != MT_TOPO_SINGLE && mt_topo_target(t) < 0;
}

/* ---- /api/upstream ---------------------------------------------------- */

static void append_name_or_null(bson_t *doc, const char *key, const mt_topo_t *t, int i)
{
    if (i >= 0)
        BSON_APPEND_UTF8(doc, key, t->members[i].name);
    else
        BSON_APPEND_NULL(doc, key);
}

char *mt_topo_json(const mt_topo_t *t, const mt_uri_t *uri)
{
    bson_t doc = BSON_INITIALIZER, arr;
    char *json;

    BSON_APPEND_UTF8(&doc, "kind", mt_topo_kind_str(t->kind));
    if (t->set_name[0])
        BSON_APPEND_UTF8(&doc, "set_name", t->set_name);
    else
        BSON_APPEND_NULL(&doc, "set_name");
    if (uri->scheme == MT_URI_SRV)
        BSON_APPEND_UTF8(&doc, "srv", uri->srv_host);
    else
        BSON_APPEND_NULL(&doc, "srv");
    BSON_APPEND_BOOL(&doc, "tls", uri->tls);
    BSON_APPEND_BOOL(&doc, "ready", mt_topo_ready(t));
    append_name_or_null(&doc, "primary", t, t->primary);
    append_name_or_null(&doc, "target", t, mt_topo_target(t));
    BSON_APPEND_INT64(&doc, "primary_changes", (int64_t)t->primary_changes);
    BSON_APPEND_ARRAY_BEGIN(&doc, "members", &arr);
    for (size_t i = 0; i < t->nmembers; i++) {
        const mt_member_t *m = &t->members[i];
        char key[16];
        const char *k;
        bson_t mem;
        bson_uint32_to_string((uint32_t)i, &k, key, sizeof(key));
        BSON_APPEND_DOCUMENT_BEGIN(&arr, k, &mem);
        BSON_APPEND_UTF8(&mem, "member", m->name);
        BSON_APPEND_UTF8(&mem, "state", mt_member_state_str(m->state));
        BSON_APPEND_BOOL(&mem, "up", answers(m->state));
        if (m->has_rtt)
            BSON_APPEND_DOUBLE(&mem, "rtt_ms", m->rtt_ms);
        else
            BSON_APPEND_NULL(&mem, "rtt_ms");
        BSON_APPEND_BOOL(&mem, "discovered", m->discovered);
        if (m->error[0])
            BSON_APPEND_UTF8(&mem, "error", m->error);
        else
            BSON_APPEND_NULL(&mem, "error");
        bson_append_document_end(&arr, &mem);
    }
    bson_append_array_end(&doc, &arr);
    json = bson_as_relaxed_extended_json(&doc, NULL);
    bson_destroy(&doc);
    return json;
}
