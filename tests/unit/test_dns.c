/*
 * test_dns: look-ups on a real libuv loop against a small DNS server in the
 * test (UDP on loopback) that answers from a table: SRV, TXT and A records,
 * NXDOMAIN for names it does not know, silence for one name. The seedlist
 * rules are checked on what mt_dns_seedlist makes of the answers.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "dns.h"
#include "uri.h"

#define T_A 1
#define T_TXT 16
#define T_SRV 33

typedef struct {
    char name[64];
    int type;
    uint8_t rdata[128];
    size_t rdlen;
} record_t;

static record_t records[16];
static size_t nrecords;
static uv_loop_t loop;
static uv_udp_t server;
static char server_addr[64];
static size_t queries_seen;

static size_t put_name(uint8_t *out, const char *name)
{
    size_t n = 0;

    while (*name) {
        const char *dot = strchr(name, '.');
        size_t len = dot ? (size_t)(dot - name) : strlen(name);
        out[n++] = (uint8_t)len;
        memcpy(out + n, name, len);
        n += len;
        name += len + (dot ? 1 : 0);
    }
    out[n++] = 0;
    return n;
}

static void add_srv(const char *name, uint16_t port, const char *target)
{
    record_t *r = &records[nrecords++];
    uint8_t *d = r->rdata;

    snprintf(r->name, sizeof(r->name), "%s", name);
    r->type = T_SRV;
    d[0] = 0, d[1] = 0; /* priority */
    d[2] = 0, d[3] = 5; /* weight */
    d[4] = (uint8_t)(port >> 8), d[5] = (uint8_t)port;
    r->rdlen = 6 + put_name(d + 6, target);
}

/* strings separated by '|' become the record's separate strings */
static void add_txt(const char *name, const char *strings)
{
    record_t *r = &records[nrecords++];
    char buf[128], *save = NULL;

    snprintf(r->name, sizeof(r->name), "%s", name);
    r->type = T_TXT;
    snprintf(buf, sizeof(buf), "%s", strings);
    for (char *s = strtok_r(buf, "|", &save); s; s = strtok_r(NULL, "|", &save)) {
        r->rdata[r->rdlen++] = (uint8_t)strlen(s);
        memcpy(r->rdata + r->rdlen, s, strlen(s));
        r->rdlen += strlen(s);
    }
}

static void add_a(const char *name, const char *ip)
{
    record_t *r = &records[nrecords++];

    snprintf(r->name, sizeof(r->name), "%s", name);
    r->type = T_A;
    uv_inet_pton(AF_INET, ip, r->rdata);
    r->rdlen = 4;
}

static void server_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char slab[2048];

    (void)h;
    (void)suggested;
    *buf = uv_buf_init(slab, sizeof(slab));
}

static void send_cb(uv_udp_send_t *req, int status)
{
    (void)status;
    free(req);
}

/* Answers one query from the table. */
static void server_recv_cb(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                           const struct sockaddr *from, unsigned flags)
{
    const uint8_t *q = (const uint8_t *)buf->base;
    static uint8_t out[2048];
    char name[256];
    size_t pos = 12, n = 0, qend, len, known = 0, answers = 0;
    int type;
    uv_udp_send_t *req;
    uv_buf_t b;

    (void)flags;
    if (nread < 12 || !from)
        return;
    queries_seen++;
    while (pos < (size_t)nread && q[pos]) {
        len = q[pos];
        memcpy(name + n, q + pos + 1, len);
        n += len;
        name[n++] = '.';
        pos += len + 1;
    }
    name[n ? n - 1 : 0] = '\0';
    qend = pos + 5;
    type = q[pos + 1] << 8 | q[pos + 2];
    if (strcmp(name, "silent.mongotap.test") == 0) {
        uv_stop(&loop); /* the test goes on while this one stays unanswered */
        return;
    }
    memcpy(out, q, qend);
    pos = qend;
    for (size_t i = 0; i < nrecords; i++) {
        if (strcasecmp(records[i].name, name) != 0)
            continue;
        known++;
        if (records[i].type != type)
            continue;
        answers++;
        out[pos++] = 0xc0, out[pos++] = 12; /* the question's name */
        out[pos++] = 0, out[pos++] = (uint8_t)type;
        out[pos++] = 0, out[pos++] = 1; /* IN */
        out[pos++] = 0, out[pos++] = 0, out[pos++] = 0, out[pos++] = 60;
        out[pos++] = (uint8_t)(records[i].rdlen >> 8), out[pos++] = (uint8_t)records[i].rdlen;
        memcpy(out + pos, records[i].rdata, records[i].rdlen);
        pos += records[i].rdlen;
    }
    out[2] = 0x81;
    out[3] = known ? 0x80 : 0x83; /* NXDOMAIN for a name we do not have */
    out[6] = 0, out[7] = (uint8_t)answers;
    out[8] = out[9] = out[10] = out[11] = 0;
    req = malloc(sizeof(*req));
    b = uv_buf_init((char *)out, (unsigned)pos);
    cr_assert_eq(uv_udp_send(req, h, &b, 1, from, send_cb), 0);
}

static void start_server(void)
{
    struct sockaddr_in sa;
    int n = sizeof(sa);

    nrecords = 0;
    queries_seen = 0;
    cr_assert_eq(uv_loop_init(&loop), 0);
    uv_udp_init(&loop, &server);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    cr_assert_eq(uv_udp_bind(&server, (struct sockaddr *)&sa, 0), 0);
    cr_assert_eq(uv_udp_getsockname(&server, (struct sockaddr *)&sa, &n), 0);
    snprintf(server_addr, sizeof(server_addr), "127.0.0.1:%d", ntohs(sa.sin_port));
    cr_assert_eq(uv_udp_recv_start(&server, server_alloc_cb, server_recv_cb), 0);
}

static void stop_server(mt_dns_t *d)
{
    mt_dns_close(d);
    uv_close((uv_handle_t *)&server, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0, "every handle closed");
}

static mt_dns_t *resolver(void)
{
    char err[256];
    mt_dns_t *d = mt_dns_new(&loop, server_addr, err, sizeof(err));

    cr_assert_not_null(d, "%s", err);
    return d;
}

/* ---- seedlists --------------------------------------------------------- */

typedef struct {
    bool done;
    int status;
    char error[1200];
} outcome_t;

static void seedlist_cb(void *data, int status, const char *error)
{
    outcome_t *o = data;

    o->done = true;
    uv_stop(&loop);
    o->status = status;
    snprintf(o->error, sizeof(o->error), "%s", error ? error : "");
}

static void cluster0(void)
{
    add_srv("_mongodb._tcp.cluster0.mongotap.test", 27017, "member1.cluster0.mongotap.test");
    add_srv("_mongodb._tcp.cluster0.mongotap.test", 27018, "Member2.Cluster0.mongotap.test");
    add_srv("_mongodb._tcp.cluster0.mongotap.test", 27019, "member3.mongotap.test");
}

static outcome_t run_seedlist(mt_uri_t *u, const char *uri)
{
    outcome_t o = {0};
    char err[256];
    mt_dns_t *d = resolver();

    cr_assert_eq(mt_uri_parse(uri, u, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(mt_dns_seedlist(d, u, seedlist_cb, &o), 0);
    cr_assert_not(o.done, "the answer comes from the loop, not from inside the call");
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert(o.done);
    stop_server(d);
    return o;
}

Test(dns, seedlist_from_srv_and_txt)
{
    mt_uri_t u;
    outcome_t o;

    start_server();
    cluster0();
    add_txt("cluster0.mongotap.test", "replicaSet=rs0&authSource=admin");
    o = run_seedlist(&u, "mongodb+srv://cluster0.mongotap.test/");
    cr_assert_eq(o.status, 0, "%s", o.error);
    cr_assert_eq(u.nhosts, 3);
    cr_assert_str_eq(u.hosts[0].host, "member1.cluster0.mongotap.test");
    cr_assert_eq(u.hosts[0].port, 27017);
    cr_assert_str_eq(u.hosts[1].host, "member2.cluster0.mongotap.test", "names lower-cased");
    cr_assert_eq(u.hosts[2].port, 27019);
    cr_assert_str_eq(u.replica_set, "rs0");
    cr_assert_str_eq(u.auth_source, "admin");
    cr_assert(u.tls, "mongodb+srv turns TLS on");
}

Test(dns, a_txt_record_of_several_strings_is_one_value)
{
    mt_uri_t u;
    outcome_t o;

    start_server();
    cluster0();
    add_txt("cluster0.mongotap.test", "replicaSet=r|s0");
    o = run_seedlist(&u, "mongodb+srv://cluster0.mongotap.test/?tls=false");
    cr_assert_eq(o.status, 0, "%s", o.error);
    cr_assert_str_eq(u.replica_set, "rs0");
    cr_assert_not(u.tls);
}

Test(dns, no_txt_record_is_fine_and_the_service_name_is_used)
{
    mt_uri_t u;
    outcome_t o;

    start_server();
    add_srv("_custom._tcp.cluster0.mongotap.test", 1234, "member1.cluster0.mongotap.test");
    o = run_seedlist(&u, "mongodb+srv://cluster0.mongotap.test/?srvServiceName=custom");
    cr_assert_eq(o.status, 0, "%s", o.error);
    cr_assert_eq(u.nhosts, 1);
    cr_assert_eq(u.hosts[0].port, 1234);
    cr_assert_str_eq(u.replica_set, "");
}

typedef struct {
    char case_name[24];
    char error[64];
} refusal_t;

ParameterizedTestParameters(dns, seedlist_refusals)
{
    static refusal_t cases[] = {
        {"outside", "target member9.evil.test is not in the domain"},
        {"two_txt", "2 records (at most one is allowed)"},
        {"txt_option", "TXT cluster0.mongotap.test: TXT record option ssl"},
        {"no_srv", "SRV _mongodb._tcp.cluster0.mongotap.test: "},
    };
    return cr_make_param_array(refusal_t, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(refusal_t *c, dns, seedlist_refusals)
{
    mt_uri_t u;
    outcome_t o;

    start_server();
    if (strcmp(c->case_name, "no_srv") != 0)
        cluster0();
    if (strcmp(c->case_name, "outside") == 0)
        add_srv("_mongodb._tcp.cluster0.mongotap.test", 27017, "member9.evil.test");
    if (strcmp(c->case_name, "two_txt") == 0) {
        add_txt("cluster0.mongotap.test", "replicaSet=a");
        add_txt("cluster0.mongotap.test", "replicaSet=b");
    }
    if (strcmp(c->case_name, "txt_option") == 0)
        add_txt("cluster0.mongotap.test", "ssl=false");
    o = run_seedlist(&u, "mongodb+srv://cluster0.mongotap.test/");
    cr_assert_eq(o.status, -1, "%s must be refused", c->case_name);
    cr_assert_not_null(strstr(o.error, c->error), "'%s' does not say '%s'", o.error, c->error);
}

/* ---- addresses --------------------------------------------------------- */

typedef struct {
    bool done;
    int status;
    size_t n;
    struct sockaddr_storage first;
} addr_outcome_t;

static void addr_cb(void *data, int status, const char *error, const struct sockaddr_storage *addrs,
                    size_t n)
{
    addr_outcome_t *o = data;

    (void)error;
    o->done = true;
    uv_stop(&loop);
    o->status = status;
    o->n = n;
    if (n)
        o->first = addrs[0];
}

static addr_outcome_t lookup(mt_dns_t *d, const char *host)
{
    addr_outcome_t o = {0};

    cr_assert_eq(mt_dns_addr(d, host, 27017, addr_cb, &o), 0);
    cr_assert_not(o.done, "%s: answered from inside the call", host);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert(o.done);
    return o;
}

static void assert_ip(const addr_outcome_t *o, const char *ip)
{
    char got[64] = "";

    if (o->first.ss_family == AF_INET)
        uv_ip4_name((const struct sockaddr_in *)&o->first, got, sizeof(got));
    else
        uv_ip6_name((const struct sockaddr_in6 *)&o->first, got, sizeof(got));
    cr_assert_str_eq(got, ip);
    cr_assert_eq(ntohs(((const struct sockaddr_in *)&o->first)->sin_port), 27017);
}

Test(dns, addresses_from_dns_hosts_and_literals)
{
    mt_dns_t *d;
    addr_outcome_t o;

    start_server();
    add_a("member1.cluster0.mongotap.test", "127.0.0.7");
    d = resolver();
    o = lookup(d, "member1.cluster0.mongotap.test");
    cr_assert_eq(o.status, 0);
    assert_ip(&o, "127.0.0.7");
    o = lookup(d, "127.0.0.9");
    cr_assert_eq(o.status, 0);
    assert_ip(&o, "127.0.0.9");
    o = lookup(d, "::1");
    cr_assert_eq(o.status, 0);
    assert_ip(&o, "::1");
    o = lookup(d, "nothere.mongotap.test");
    cr_assert_neq(o.status, 0);
    cr_assert_eq(o.n, 0);
    stop_server(d);
}

static void srv_never_cb(void *data, int status, const char *error, const mt_dns_srv_t *recs,
                         size_t n)
{
    int *calls = data;

    (void)error;
    (void)recs;
    cr_assert_neq(status, 0);
    cr_assert_eq(n, 0);
    (*calls)++;
}

Test(dns, close_ends_pending_lookups)
{
    mt_dns_t *d;
    int calls = 0;

    start_server();
    d = resolver();
    cr_assert_eq(mt_dns_srv(d, "silent.mongotap.test", srv_never_cb, &calls), 0);
    uv_run(&loop, UV_RUN_DEFAULT); /* until the server has seen the query */
    cr_assert_eq(calls, 0);
    stop_server(d);
    cr_assert_eq(calls, 1, "the pending look-up called back once");
}

Test(dns, the_server_must_be_an_address)
{
    char err[256];

    cr_assert_eq(uv_loop_init(&loop), 0);
    cr_assert_null(mt_dns_new(&loop, "localhost:53", err, sizeof(err)));
    cr_assert_not_null(strstr(err, "MONGOTAP_DNS_SERVER"), "%s", err);
    cr_assert_null(mt_dns_new(&loop, "127.0.0.1", err, sizeof(err)));
    cr_assert_eq(uv_loop_close(&loop), 0);
}
