/*
 * test_monitor: the monitor on a real libuv loop against members played by
 * the test: each answers every OP_MSG hello with the role it is given, and
 * can be stopped. A single server found and lost; a set whose primary steps
 * down and another takes over; the hello it sends; every handle closed.
 */
#include <bson/bson.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "dns.h"
#include "monitor.h"
#include "wire.h"

#define NMEMBERS 2

typedef struct {
    uv_tcp_t listener;
    uv_tcp_t conns[8];
    int nconns;
    int port;
    char role[16]; /* "primary", "secondary", "standalone" */
    bool listening;
    int hellos;
    char first_hello[512]; /* the first hello as JSON */
    uint8_t in[4096];
    size_t in_len;
} fake_t;

static uv_loop_t loop;
static fake_t fakes[NMEMBERS];
static mt_dns_t *dns;
static mt_monitor_t *mon;
static unsigned events_seen;
static bool (*stop_when)(void);

static void fake_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    fake_t *f = h->data;

    (void)suggested;
    *buf = uv_buf_init((char *)f->in + f->in_len, (unsigned)(sizeof(f->in) - f->in_len));
}

static void reply_written_cb(uv_write_t *req, int status)
{
    (void)status;
    free(req->data);
    free(req);
}

static void answer(fake_t *f, uv_stream_t *s, int32_t request_id)
{
    bson_t doc = BSON_INITIALIZER, arr;
    char key[16];
    uint8_t *out;
    size_t len;
    uv_write_t *req = malloc(sizeof(*req));
    uv_buf_t b;

    if (strcmp(f->role, "standalone") != 0) {
        BSON_APPEND_BOOL(&doc, "isWritablePrimary", strcmp(f->role, "primary") == 0);
        BSON_APPEND_BOOL(&doc, "secondary", strcmp(f->role, "secondary") == 0);
        BSON_APPEND_UTF8(&doc, "setName", "rs0");
        BSON_APPEND_ARRAY_BEGIN(&doc, "hosts", &arr);
        for (int i = 0; i < NMEMBERS; i++) {
            char name[32];
            snprintf(key, sizeof(key), "%d", i);
            snprintf(name, sizeof(name), "127.0.0.1:%d", fakes[i].port);
            BSON_APPEND_UTF8(&arr, key, name);
        }
        bson_append_array_end(&doc, &arr);
    } else {
        BSON_APPEND_BOOL(&doc, "isWritablePrimary", true);
    }
    BSON_APPEND_DOUBLE(&doc, "ok", 1.0);
    len = 21 + doc.len;
    out = malloc(len);
    mt_wire_put_le32(out, (uint32_t)len);
    mt_wire_put_le32(out + 4, 777);
    mt_wire_put_le32(out + 8, (uint32_t)request_id);
    mt_wire_put_le32(out + 12, MT_OP_MSG);
    mt_wire_put_le32(out + 16, 0);
    out[20] = 0;
    memcpy(out + 21, bson_get_data(&doc), doc.len);
    bson_destroy(&doc);
    req->data = out;
    b = uv_buf_init((char *)out, (unsigned)len);
    cr_assert_eq(uv_write(req, s, &b, 1, reply_written_cb), 0);
}

static void fake_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    fake_t *f = s->data;

    (void)buf;
    if (nread < 0) {
        uv_read_stop(s);
        return;
    }
    f->in_len += (size_t)nread;
    while (f->in_len >= 4 && f->in_len >= mt_wire_le32(f->in)) {
        uint32_t len = mt_wire_le32(f->in);
        bson_t body;
        cr_assert_eq(mt_wire_le32(f->in + 12), MT_OP_MSG, "the monitor speaks OP_MSG");
        cr_assert(bson_init_static(&body, f->in + 21, len - 21));
        if (f->hellos++ == 0) {
            char *json = bson_as_relaxed_extended_json(&body, NULL);
            snprintf(f->first_hello, sizeof(f->first_hello), "%s", json);
            bson_free(json);
        }
        answer(f, s, (int32_t)mt_wire_le32(f->in + 4));
        memmove(f->in, f->in + len, f->in_len - len);
        f->in_len -= len;
    }
}

static void fake_on_connection(uv_stream_t *server, int status)
{
    fake_t *f = server->data;
    uv_tcp_t *c = &f->conns[f->nconns++];

    cr_assert_eq(status, 0);
    cr_assert_lt(f->nconns, 8);
    uv_tcp_init(&loop, c);
    c->data = f;
    cr_assert_eq(uv_accept(server, (uv_stream_t *)c), 0);
    uv_read_start((uv_stream_t *)c, fake_alloc_cb, fake_read_cb);
}

static void fake_start(fake_t *f, const char *role)
{
    struct sockaddr_in sa;
    int n = sizeof(sa);

    snprintf(f->role, sizeof(f->role), "%s", role);
    uv_tcp_init(&loop, &f->listener);
    f->listener.data = f;
    uv_ip4_addr("127.0.0.1", f->port, &sa);
    cr_assert_eq(uv_tcp_bind(&f->listener, (struct sockaddr *)&sa, 0), 0);
    cr_assert_eq(uv_listen((uv_stream_t *)&f->listener, 8, fake_on_connection), 0);
    uv_tcp_getsockname(&f->listener, (struct sockaddr *)&sa, &n);
    f->port = ntohs(sa.sin_port);
    f->listening = true;
}

/* Closes the listener and every connection: the member is gone. */
static void fake_stop(fake_t *f)
{
    if (f->listening)
        uv_close((uv_handle_t *)&f->listener, NULL);
    f->listening = false;
    for (int i = 0; i < f->nconns; i++)
        if (!uv_is_closing((uv_handle_t *)&f->conns[i]))
            uv_close((uv_handle_t *)&f->conns[i], NULL);
}

static void on_change(void *data, unsigned ev)
{
    (void)data;
    events_seen |= ev;
    if (stop_when && stop_when())
        uv_stop(&loop);
}

static void start_monitor(const char *uri_s)
{
    mt_uri_t uri;
    mt_monitor_config_t cfg = {0};
    char err[256];

    cr_assert_eq(mt_uri_parse(uri_s, &uri, err, sizeof(err)), 0, "%s", err);
    dns = mt_dns_new(&loop, NULL, err, sizeof(err));
    cr_assert_not_null(dns, "%s", err);
    cfg.loop = &loop;
    cfg.uri = &uri;
    cfg.dns = dns;
    cfg.on_change = on_change;
    mon = mt_monitor_new(&cfg);
    cr_assert_not_null(mon);
    mt_monitor_start(mon);
}

static void run_until(bool (*cond)(void))
{
    stop_when = cond;
    if (!cond())
        uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert(cond(), "the loop stopped before the condition held");
}

static void finish(void)
{
    mt_monitor_close(mon);
    mt_dns_close(dns);
    for (int i = 0; i < NMEMBERS; i++)
        fake_stop(&fakes[i]);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0, "every handle closed");
}

static void setup(void)
{
    memset(fakes, 0, sizeof(fakes));
    events_seen = 0;
    stop_when = NULL;
    cr_assert_eq(uv_loop_init(&loop), 0);
}

TestSuite(monitor, .init = setup, .timeout = 20);

static bool ready(void)
{
    return mt_monitor_ready(mon);
}

static bool not_ready(void)
{
    return !mt_monitor_ready(mon);
}

Test(monitor, a_single_server_found_then_lost)
{
    char uri[128];
    mt_monitor_target_t t;
    char *json;

    fake_start(&fakes[0], "standalone");
    snprintf(uri, sizeof(uri),
             "mongodb://127.0.0.1:%d/?directConnection=true&heartbeatFrequencyMS=500",
             fakes[0].port);
    start_monitor(uri);
    cr_assert(mt_monitor_target(mon, &t), "a single server is the target at once");
    run_until(ready);
    cr_assert(mt_monitor_target(mon, &t));
    cr_assert_eq(t.index, 0);
    cr_assert_not_null(t.addr, "resolved by the monitor");
    cr_assert_str_eq(t.host, "127.0.0.1");
    cr_assert_not_null(strstr(fakes[0].first_hello, "\"hello\" : 1"), "%s", fakes[0].first_hello);
    cr_assert_not_null(strstr(fakes[0].first_hello, "\"$db\" : \"admin\""));
    cr_assert_not_null(strstr(fakes[0].first_hello, "mongotap monitor"), "it names itself");

    fake_stop(&fakes[0]);
    run_until(not_ready);
    cr_assert(events_seen & MT_TOPO_EV_READY);
    json = mt_monitor_json(mon);
    cr_assert_not_null(strstr(json, "\"state\" : \"down\""), "%s", json);
    bson_free(json);
    finish();
}

static bool second_is_primary(void)
{
    mt_monitor_target_t t;

    return mt_monitor_target(mon, &t) && t.index == 1;
}

static bool first_is_primary(void)
{
    mt_monitor_target_t t;

    return mt_monitor_target(mon, &t) && t.index == 0;
}

Test(monitor, the_primary_steps_down_and_another_takes_over)
{
    char uri[128];
    const mt_topo_t *topo;

    fake_start(&fakes[0], "primary");
    fake_start(&fakes[1], "secondary");
    /* only the first is a seed: the second is learned from its host list */
    snprintf(uri, sizeof(uri), "mongodb://127.0.0.1:%d/?replicaSet=rs0&heartbeatFrequencyMS=500",
             fakes[0].port);
    start_monitor(uri);
    cr_assert_not(mt_monitor_ready(mon), "no primary known before a check");
    run_until(first_is_primary);
    topo = mt_monitor_topology(mon);
    cr_assert_eq(topo->nmembers, 2, "the second member was discovered");

    snprintf(fakes[0].role, sizeof(fakes[0].role), "secondary");
    snprintf(fakes[1].role, sizeof(fakes[1].role), "primary");
    run_until(second_is_primary);
    cr_assert(events_seen & MT_TOPO_EV_PRIMARY);
    cr_assert_eq(topo->primary_changes, 1);
    cr_assert(mt_monitor_ready(mon));
    cr_assert_gt(fakes[1].hellos, 0);
    finish();
}

Test(monitor, nothing_listens)
{
    fake_t *f = &fakes[0];
    char uri[128];

    fake_start(f, "standalone");
    fake_stop(f); /* a port that was just free */
    snprintf(uri, sizeof(uri), "mongodb://127.0.0.1:%d/?directConnection=true", f->port);
    start_monitor(uri);
    stop_when = NULL;
    while (mt_monitor_topology(mon)->members[0].state != MT_MEMBER_DOWN)
        uv_run(&loop, UV_RUN_ONCE);
    cr_assert_not(mt_monitor_ready(mon));
    cr_assert_not_null(strstr(mt_monitor_topology(mon)->members[0].error, "connect"), "%s",
                       mt_monitor_topology(mon)->members[0].error);
    finish();
}
