/*
 * test_topology: the monitor's state machine over scripted hello replies:
 * discovery from host lists, primaries found, stepping down, superseded and
 * stale claims, members of another set, failures, standalone servers and
 * mongos routers, round trips, and the /api/upstream document.
 */
#include <bson/bson.h>
#include <criterion/criterion.h>
#include <string.h>

#include "topology.h"
#include "uri.h"

static mt_topo_t topo;
static mt_uri_t uri;

static void start(const char *s)
{
    char err[256];

    cr_assert_eq(mt_uri_parse(s, &uri, err, sizeof(err)), 0, "%s", err);
    mt_topo_init(&topo, &uri);
}

static int member(const char *name)
{
    for (size_t i = 0; i < topo.nmembers; i++)
        if (strcmp(topo.members[i].name, name) == 0)
            return (int)i;
    cr_assert_fail("no member %s", name);
    return -1;
}

static const char *const hosts3[] = {"a:1", "b:2", "c:3", NULL};

/* A hello reply as a replica set member gives it. role: "primary",
 * "secondary", "arbiter", "hidden" or "ghost". election 0: no electionId. */
static unsigned hello(const char *name, const char *set, const char *role, const char *const *hosts,
                      int election, double rtt)
{
    bson_t doc = BSON_INITIALIZER, arr;
    unsigned ev;

    BSON_APPEND_BOOL(&doc, "isWritablePrimary", strcmp(role, "primary") == 0);
    BSON_APPEND_BOOL(&doc, "secondary", strcmp(role, "secondary") == 0);
    if (strcmp(role, "arbiter") == 0)
        BSON_APPEND_BOOL(&doc, "arbiterOnly", true);
    if (strcmp(role, "hidden") == 0)
        BSON_APPEND_BOOL(&doc, "hidden", true);
    if (strcmp(role, "ghost") == 0)
        BSON_APPEND_BOOL(&doc, "isreplicaset", true);
    if (set)
        BSON_APPEND_UTF8(&doc, "setName", set);
    if (hosts) {
        BSON_APPEND_ARRAY_BEGIN(&doc, "hosts", &arr);
        for (int i = 0; hosts[i]; i++) {
            char k[16];
            snprintf(k, sizeof(k), "%d", i);
            BSON_APPEND_UTF8(&arr, k, hosts[i]);
        }
        bson_append_array_end(&doc, &arr);
    }
    if (election) {
        bson_oid_t oid;
        memset(&oid, 0, sizeof(oid));
        oid.bytes[11] = (uint8_t)election;
        BSON_APPEND_OID(&doc, "electionId", &oid);
        BSON_APPEND_INT32(&doc, "setVersion", 1);
    }
    BSON_APPEND_DOUBLE(&doc, "ok", 1.0);
    ev = mt_topo_on_hello(&topo, (size_t)member(name), &doc, rtt);
    bson_destroy(&doc);
    return ev;
}

static mt_member_state_t state(const char *name)
{
    return topo.members[member(name)].state;
}

Test(topology, discovers_the_set_from_a_secondary_then_finds_the_primary)
{
    unsigned ev;

    start("mongodb://a:1/?replicaSet=rs0");
    cr_assert_eq(topo.kind, MT_TOPO_REPLICA_SET);
    cr_assert_eq(mt_topo_target(&topo), -1);
    cr_assert(mt_topo_wants_fast_checks(&topo));

    ev = hello("a:1", "rs0", "secondary", hosts3, 0, 1.0);
    cr_assert(ev & MT_TOPO_EV_MEMBERS);
    cr_assert_eq(topo.nmembers, 3);
    cr_assert(topo.members[member("c:3")].discovered);
    cr_assert_not(topo.members[member("a:1")].discovered);
    cr_assert_eq(state("a:1"), MT_MEMBER_SECONDARY);
    cr_assert_not(mt_topo_ready(&topo), "no primary yet");

    ev = hello("b:2", "rs0", "primary", hosts3, 0, 1.0);
    cr_assert(ev & MT_TOPO_EV_PRIMARY);
    cr_assert(ev & MT_TOPO_EV_READY);
    cr_assert_eq(mt_topo_target(&topo), member("b:2"));
    cr_assert(mt_topo_ready(&topo));
    cr_assert_not(mt_topo_wants_fast_checks(&topo));
    cr_assert_eq(topo.primary_changes, 0, "finding the first primary is no change");

    ev = hello("b:2", "rs0", "primary", hosts3, 0, 1.0);
    cr_assert_eq(ev, 0, "the same answer changes nothing");
}

Test(topology, step_down_then_a_new_primary_counts_one_change)
{
    unsigned ev;

    start("mongodb://a:1,b:2,c:3/?replicaSet=rs0");
    hello("a:1", "rs0", "primary", hosts3, 0, 1.0);
    hello("b:2", "rs0", "secondary", hosts3, 0, 1.0);
    ev = hello("a:1", "rs0", "secondary", hosts3, 0, 1.0);
    cr_assert(ev & MT_TOPO_EV_PRIMARY);
    cr_assert(ev & MT_TOPO_EV_READY);
    cr_assert_eq(topo.primary, -1);
    cr_assert_not(mt_topo_ready(&topo));
    cr_assert(mt_topo_wants_fast_checks(&topo), "faster checks while there is no primary");
    ev = hello("b:2", "rs0", "primary", hosts3, 0, 1.0);
    cr_assert(ev & MT_TOPO_EV_PRIMARY);
    cr_assert_eq(mt_topo_target(&topo), member("b:2"));
    cr_assert_eq(topo.primary_changes, 1);
    /* back to the first one: another change */
    hello("b:2", "rs0", "secondary", hosts3, 0, 1.0);
    hello("a:1", "rs0", "primary", hosts3, 0, 1.0);
    cr_assert_eq(topo.primary_changes, 2);
}

Test(topology, a_new_primary_claim_demotes_the_old_primary)
{
    unsigned ev;

    start("mongodb://a:1,b:2,c:3/?replicaSet=rs0");
    hello("a:1", "rs0", "primary", hosts3, 0, 1.0);
    ev = hello("c:3", "rs0", "primary", hosts3, 0, 1.0);
    cr_assert(ev & MT_TOPO_EV_CHECK_ALL);
    cr_assert_eq(state("a:1"), MT_MEMBER_UNKNOWN, "checked again before it is trusted");
    cr_assert_not_null(strstr(topo.members[member("a:1")].error, "c:3 claims"));
    cr_assert_eq(mt_topo_target(&topo), member("c:3"));
    cr_assert_eq(topo.primary_changes, 1);
}

Test(topology, a_stale_primary_claim_is_ignored)
{
    unsigned ev;

    start("mongodb://a:1,b:2/?replicaSet=rs0");
    hello("b:2", "rs0", "primary", hosts3, 5, 1.0);
    ev = hello("a:1", "rs0", "primary", hosts3, 4, 1.0);
    cr_assert(ev & MT_TOPO_EV_CHECK_ALL);
    cr_assert_eq(state("a:1"), MT_MEMBER_UNKNOWN);
    cr_assert_not_null(strstr(topo.members[member("a:1")].error, "stale"));
    cr_assert_eq(mt_topo_target(&topo), member("b:2"));
    /* a newer election wins */
    hello("a:1", "rs0", "primary", hosts3, 6, 1.0);
    cr_assert_eq(mt_topo_target(&topo), member("a:1"));
    cr_assert_eq(state("b:2"), MT_MEMBER_UNKNOWN);
}

Test(topology, members_of_another_set_are_not_used)
{
    start("mongodb://a:1,b:2/?replicaSet=rs0");
    hello("a:1", "other", "primary", hosts3, 0, 1.0);
    cr_assert_eq(state("a:1"), MT_MEMBER_UNKNOWN);
    cr_assert_eq(topo.primary, -1);
    cr_assert_not_null(strstr(topo.members[member("a:1")].error, "not a member of replica set rs0"),
                       "%s", topo.members[member("a:1")].error);
    cr_assert_eq(topo.nmembers, 2, "its host list is not learned either");
}

Test(topology, the_set_name_is_learned_when_not_given)
{
    start("mongodb://a:1,b:2/");
    cr_assert_eq(topo.kind, MT_TOPO_UNKNOWN);
    hello("a:1", "rs9", "secondary", hosts3, 0, 1.0);
    cr_assert_eq(topo.kind, MT_TOPO_REPLICA_SET);
    cr_assert_str_eq(topo.set_name, "rs9");
    cr_assert_eq(topo.nmembers, 3);
    hello("b:2", "rs9", "arbiter", NULL, 0, 1.0);
    cr_assert_eq(state("b:2"), MT_MEMBER_ARBITER);
    hello("c:3", "rs9", "hidden", NULL, 0, 1.0);
    cr_assert_eq(state("c:3"), MT_MEMBER_OTHER);
}

Test(topology, a_failed_primary_makes_it_not_ready)
{
    unsigned ev;

    start("mongodb://a:1,b:2/?replicaSet=rs0");
    hello("a:1", "rs0", "primary", NULL, 0, 2.0);
    ev = mt_topo_on_failure(&topo, (size_t)member("a:1"), "connection refused");
    cr_assert(ev & MT_TOPO_EV_STATE);
    cr_assert(ev & MT_TOPO_EV_PRIMARY);
    cr_assert(ev & MT_TOPO_EV_READY);
    cr_assert_eq(state("a:1"), MT_MEMBER_DOWN);
    cr_assert_str_eq(topo.members[member("a:1")].error, "connection refused");
    cr_assert_not(topo.members[member("a:1")].has_rtt);
    cr_assert_not(mt_topo_ready(&topo));
}

Test(topology, an_error_reply_is_a_failed_check)
{
    bson_t doc = BSON_INITIALIZER;

    start("127.0.0.1:27017");
    BSON_APPEND_DOUBLE(&doc, "ok", 0.0);
    BSON_APPEND_UTF8(&doc, "errmsg", "node is shutting down");
    mt_topo_on_hello(&topo, 0, &doc, 1.0);
    bson_destroy(&doc);
    cr_assert_eq(topo.members[0].state, MT_MEMBER_DOWN);
    cr_assert_str_eq(topo.members[0].error, "hello failed: node is shutting down");
}

Test(topology, a_single_server_is_the_target_whatever_it_is)
{
    unsigned ev;

    start("127.0.0.1:27017");
    cr_assert_eq(topo.kind, MT_TOPO_SINGLE);
    cr_assert_eq(mt_topo_target(&topo), 0, "connect even before the first check");
    cr_assert_not(mt_topo_ready(&topo), "not ready before it answered");
    cr_assert_not(mt_topo_wants_fast_checks(&topo));
    ev = hello("127.0.0.1:27017", "rs0", "secondary", hosts3, 0, 1.0);
    cr_assert(ev & MT_TOPO_EV_READY);
    cr_assert_eq(topo.nmembers, 1, "direct: never discover");
    cr_assert(mt_topo_ready(&topo));
    mt_topo_on_failure(&topo, 0, "timed out");
    cr_assert_not(mt_topo_ready(&topo));
    cr_assert_eq(mt_topo_target(&topo), 0);
}

Test(topology, one_standalone_seed_becomes_single)
{
    start("mongodb://a:1/");
    hello("a:1", NULL, "none", NULL, 0, 1.0);
    cr_assert_eq(topo.kind, MT_TOPO_SINGLE);
    cr_assert_eq(state("a:1"), MT_MEMBER_STANDALONE);
    cr_assert(mt_topo_ready(&topo));
}

Test(topology, mongos_routers_nearest_first)
{
    bson_t doc = BSON_INITIALIZER;

    start("mongodb://m1:1,m2:2/");
    BSON_APPEND_BOOL(&doc, "isWritablePrimary", true);
    BSON_APPEND_UTF8(&doc, "msg", "isdbgrid");
    BSON_APPEND_INT32(&doc, "ok", 1);
    mt_topo_on_hello(&topo, 0, &doc, 5.0);
    cr_assert_eq(topo.kind, MT_TOPO_SHARDED);
    cr_assert_eq(mt_topo_target(&topo), 0);
    mt_topo_on_hello(&topo, 1, &doc, 1.0);
    bson_destroy(&doc);
    cr_assert_eq(mt_topo_target(&topo), 1, "the nearer router");
    mt_topo_on_failure(&topo, 1, "refused");
    cr_assert_eq(mt_topo_target(&topo), 0);
    cr_assert(mt_topo_ready(&topo));
}

Test(topology, round_trips_are_averaged)
{
    start("127.0.0.1:27017");
    hello("127.0.0.1:27017", NULL, "none", NULL, 0, 10.0);
    cr_assert_float_eq(topo.members[0].rtt_ms, 10.0, 1e-9);
    hello("127.0.0.1:27017", NULL, "none", NULL, 0, 20.0);
    cr_assert_float_eq(topo.members[0].rtt_ms, 12.0, 1e-9);
}

Test(topology, host_lists_are_case_insensitive_with_a_default_port)
{
    static const char *const mixed[] = {"A:1", "Member2", "[::1]:7", NULL};

    start("mongodb://a:1/?replicaSet=rs0");
    hello("a:1", "rs0", "secondary", mixed, 0, 1.0);
    cr_assert_eq(topo.nmembers, 3);
    member("member2:27017");
    member("[::1]:7");
}

Test(topology, upstream_json)
{
    bson_t *doc;
    bson_error_t err;
    bson_iter_t it;
    char *json;

    start("mongodb://a:1,b:2/?replicaSet=rs0&tls=true");
    hello("b:2", "rs0", "primary", NULL, 0, 1.5);
    mt_topo_on_failure(&topo, 0, "connection refused");
    json = mt_topo_json(&topo, &uri);
    doc = bson_new_from_json((const uint8_t *)json, -1, &err);
    cr_assert_not_null(doc, "%s: %s", json, err.message);
    cr_assert(bson_iter_init_find(&it, doc, "primary") &&
              strcmp(bson_iter_utf8(&it, NULL), "b:2") == 0);
    cr_assert(bson_iter_init_find(&it, doc, "tls") && bson_iter_as_bool(&it));
    cr_assert(bson_iter_init_find(&it, doc, "ready") && bson_iter_as_bool(&it));
    cr_assert(bson_iter_init_find(&it, doc, "kind") &&
              strcmp(bson_iter_utf8(&it, NULL), "replica_set") == 0);
    {
        bson_iter_t root, st;
        cr_assert(bson_iter_init(&root, doc) &&
                  bson_iter_find_descendant(&root, "members.1.state", &st));
        cr_assert_str_eq(bson_iter_utf8(&st, NULL), "primary");
    }
    cr_assert_not_null(strstr(json, "\"member\" : \"a:1\", \"state\" : \"down\", \"up\" : false, "
                                    "\"rtt_ms\" : null"),
                       "%s", json);
    cr_assert_not_null(strstr(json, "\"error\" : \"connection refused\""), "%s", json);
    cr_assert_not_null(strstr(json, "\"member\" : \"b:2\", \"state\" : \"primary\", \"up\" : true, "
                                    "\"rtt_ms\" : 1.5"),
                       "%s", json);
    bson_destroy(doc);
    bson_free(json);
}
