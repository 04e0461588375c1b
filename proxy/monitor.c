/*
 * monitor: one probe per member. A probe keeps its connection open between
 * checks, as drivers do; a check is resolve (when not connected), connect,
 * TLS handshake, one OP_MSG hello and its reply, all under one deadline
 * (connectTimeoutMS). Any failure closes the connection and marks the
 * member down; the next check reconnects. Each probe has one timer: the
 * next check while idle, the deadline while a check is under way.
 *
 *   idle --timer--> [resolve] -> [connect] -> [TLS] -> hello sent -> reply
 *     ^                                                                |
 *     `-------------------- topology.c decides -----------------------'
 */
#include "monitor.h"

#include <bson/bson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "command.h"
#include "log.h"
#include "msg.h"
#include "stream.h"
#include "wire.h"

#define HELLO_CMD_NOT_FOUND 59 /* CommandNotFound: a server too old for "hello" */
#define DEFAULT_DEADLINE_MS 10000

typedef struct mt_probe {
    struct mt_monitor *mon;
    size_t index;
    mt_stream_t stream;
    bool open; /* the stream's handles exist (closing included) */
    bool closing;
    bool connected; /* TCP up and, with TLS, the handshake done */
    bool busy;      /* a check is under way */
    bool checked;   /* at least one check finished */
    bool legacy;    /* the server wants isMaster */
    bool connect_after_close;
    bool sent_metadata;
    uv_connect_t connect_req;
    uv_timer_t timer;
    struct sockaddr_storage addr;
    bool resolved;
    uint64_t sent_ns, last_check_ns;
    int32_t request_id;
    uint8_t *reply;
    size_t reply_len, reply_cap;
    mt_stream_write_t write_req;
    uint8_t *hello; /* owned by the write until its callback */
} mt_probe_t;

struct mt_monitor {
    mt_monitor_config_t cfg;
    mt_uri_t uri;
    mt_topo_t topo;
    mt_probe_t probes[MT_TOPO_MAX_MEMBERS];
    size_t nprobes;
    mt_stream_pool_t *pool;
    uv_timer_t srv_timer;
    bool started, srv_pending, seeded;
    bool closing;
    bool start_logged;
    int handles; /* open while closing */
    int32_t next_request_id;
    uint64_t primary_changes_told; /* to stats */
    char desc[512];
};

static void probe_check(mt_probe_t *p);
static void probe_schedule(mt_probe_t *p, uint64_t ms);
static void probe_schedule_sooner(mt_probe_t *p, uint64_t ms);

/* ---- what changed ----------------------------------------------------- */

static const char *target_name(const mt_monitor_t *m)
{
    int t = mt_topo_target(&m->topo);

    return t >= 0 ? m->topo.members[t].name : NULL;
}

/* Why the upstream is not ready, for the log line and the reason. */
static void not_ready_reason(const mt_monitor_t *m, char *out, size_t cap)
{
    int t = mt_topo_target(&m->topo);

    if (t >= 0 && m->topo.members[t].error[0]) {
        snprintf(out, cap, "%s: %s", m->topo.members[t].name, m->topo.members[t].error);
        return;
    }
    if (m->topo.kind == MT_TOPO_REPLICA_SET || m->topo.kind == MT_TOPO_UNKNOWN) {
        for (size_t i = 0; i < m->topo.nmembers; i++) {
            if (m->topo.members[i].error[0]) {
                snprintf(out, cap, "no primary (%s: %s)", m->topo.members[i].name,
                         m->topo.members[i].error);
                return;
            }
        }
        snprintf(out, cap, "no primary");
        return;
    }
    snprintf(out, cap, "no answer yet");
}

/* The warn line at start (once every seed has been checked) and on every
 * change of readiness afterwards. */
static void log_readiness(mt_monitor_t *m, bool changed)
{
    char why[512];
    bool all_checked = true;

    for (size_t i = 0; i < m->nprobes; i++)
        all_checked &= m->probes[i].checked || m->probes[i].index >= m->topo.nmembers;
    if (!m->start_logged) {
        if (!m->topo.ready && !all_checked)
            return;
        m->start_logged = true;
        if (m->topo.ready) {
            mt_info("upstream %s reachable: new connections go to %s", m->desc, target_name(m));
        } else {
            not_ready_reason(m, why, sizeof(why));
            mt_warn("upstream %s not reachable: %s; /readyz answers 503 until it is", m->desc, why);
        }
        return;
    }
    if (!changed)
        return;
    if (m->topo.ready) {
        mt_warn("upstream %s reachable again: new connections go to %s", m->desc, target_name(m));
    } else {
        not_ready_reason(m, why, sizeof(why));
        mt_warn("upstream %s not reachable: %s; /readyz answers 503", m->desc, why);
    }
}

static void probes_grow(mt_monitor_t *m);

/* The gauges and the primary change counter of /metrics. */
static void report_stats(mt_monitor_t *m)
{
    const char *names[MT_TOPO_MAX_MEMBERS];
    bool up[MT_TOPO_MAX_MEMBERS];

    for (size_t i = 0; i < m->topo.nmembers; i++) {
        names[i] = m->topo.members[i].name;
        up[i] = m->topo.members[i].state != MT_MEMBER_DOWN &&
                m->topo.members[i].state != MT_MEMBER_UNKNOWN;
    }
    mt_stats_upstream(m->cfg.stats, names, up, m->topo.nmembers, m->topo.ready);
    if (m->topo.primary_changes > m->primary_changes_told) {
        mt_stats_add(m->cfg.stats, MT_STAT_UPSTREAM_PRIMARY_CHANGES,
                     m->topo.primary_changes - m->primary_changes_told);
        m->primary_changes_told = m->topo.primary_changes;
    }
}

static void changed(mt_monitor_t *m, size_t i, mt_member_state_t was, int old_primary, unsigned ev)
{
    const mt_member_t *mem = &m->topo.members[i];

    if (ev & MT_TOPO_EV_STATE) {
        if (mem->state == MT_MEMBER_DOWN || mem->state == MT_MEMBER_UNKNOWN)
            mt_info("upstream member %s: %s -> %s: %s", mem->name, mt_member_state_str(was),
                    mt_member_state_str(mem->state), mem->error[0] ? mem->error : "-");
        else
            mt_info("upstream member %s: %s -> %s (%.2f ms)", mem->name, mt_member_state_str(was),
                    mt_member_state_str(mem->state), mem->rtt_ms);
    }
    if (ev & MT_TOPO_EV_PRIMARY) {
        if (m->topo.primary >= 0 && old_primary < 0 && m->topo.last_primary == m->topo.primary &&
            m->topo.primary_changes == 0)
            mt_info("upstream primary is %s", m->topo.members[m->topo.primary].name);
        else if (m->topo.primary >= 0)
            mt_warn("upstream primary is now %s (change %llu)",
                    m->topo.members[m->topo.primary].name,
                    (unsigned long long)m->topo.primary_changes);
        else if (old_primary >= 0)
            mt_warn("upstream has no primary: %s is %s", m->topo.members[old_primary].name,
                    mt_member_state_str(m->topo.members[old_primary].state));
    }
    if (ev & MT_TOPO_EV_MEMBERS)
        probes_grow(m);
    for (size_t k = 0; k < m->nprobes; k++) {
        if (k == i)
            continue;
        if (ev & MT_TOPO_EV_CHECK_ALL)
            probe_schedule_sooner(&m->probes[k], 0);
        else if ((ev & MT_TOPO_EV_PRIMARY) && mt_topo_wants_fast_checks(&m->topo))
            /* the primary is gone: every member is asked sooner who took over */
            probe_schedule_sooner(&m->probes[k], MT_MONITOR_FAST_MS);
    }
    log_readiness(m, (ev & MT_TOPO_EV_READY) != 0);
    if (m->cfg.stats)
        report_stats(m);
    if (ev && m->cfg.on_change)
        m->cfg.on_change(m->cfg.data, ev);
}

/* ---- a probe ---------------------------------------------------------- */

static uint64_t interval_ms(const mt_monitor_t *m)
{
    if (mt_topo_wants_fast_checks(&m->topo) && m->uri.heartbeat_ms > MT_MONITOR_FAST_MS)
        return MT_MONITOR_FAST_MS;
    return m->uri.heartbeat_ms;
}

static void probe_timer_cb(uv_timer_t *t);

static void probe_schedule(mt_probe_t *p, uint64_t ms)
{
    if (!p->mon->closing)
        uv_timer_start(&p->timer, probe_timer_cb, ms, 0);
}

/* Brings an idle probe's next check forward to ms from now, never later. */
static void probe_schedule_sooner(mt_probe_t *p, uint64_t ms)
{
    if (p->busy)
        return;
    if (!uv_is_active((uv_handle_t *)&p->timer) || uv_timer_get_due_in(&p->timer) > ms)
        probe_schedule(p, ms);
}

static void handle_closed(mt_monitor_t *m)
{
    if (--m->handles > 0 || !m->closing)
        return;
    for (size_t i = 0; i < m->nprobes; i++)
        free(m->probes[i].reply);
    mt_stream_pool_free(m->pool);
    free(m);
}

static void probe_connect(mt_probe_t *p);

static void stream_closed_cb(mt_stream_t *s)
{
    mt_probe_t *p = s->data;
    mt_monitor_t *m = p->mon;

    p->open = false;
    p->closing = false;
    if (p->connect_after_close && p->busy && !m->closing) {
        p->connect_after_close = false;
        probe_connect(p);
    }
    handle_closed(m);
}

static void probe_disconnect(mt_probe_t *p)
{
    p->connected = false;
    p->reply_len = 0;
    if (p->open && !p->closing) {
        p->closing = true;
        mt_stream_close(&p->stream, stream_closed_cb);
    }
}

/* One check is over: the member answered (reply != NULL) or not. */
static void probe_done(mt_probe_t *p, const bson_t *reply, const char *why)
{
    mt_monitor_t *m = p->mon;
    mt_member_state_t was = m->topo.members[p->index].state;
    int old_primary = m->topo.primary;
    unsigned ev;

    p->busy = false;
    p->checked = true;
    p->last_check_ns = uv_hrtime();
    uv_timer_stop(&p->timer);
    if (reply) {
        ev = mt_topo_on_hello(&m->topo, p->index, reply,
                              (double)(p->last_check_ns - p->sent_ns) / 1e6);
    } else {
        probe_disconnect(p);
        ev = mt_topo_on_failure(&m->topo, p->index, why);
    }
    if (m->topo.members[p->index].state == MT_MEMBER_DOWN && reply)
        probe_disconnect(p); /* an error reply: start afresh next time */
    changed(m, p->index, was, old_primary, ev);
    probe_schedule(p, interval_ms(m));
}

static void probe_fail(mt_probe_t *p, const char *fmt, const char *arg)
{
    char why[MT_TOPO_ERROR_MAX];

    snprintf(why, sizeof(why), fmt, arg);
    probe_done(p, NULL, why);
}

static void hello_written_cb(mt_stream_write_t *req, int status)
{
    mt_probe_t *p = (mt_probe_t *)((char *)req - offsetof(mt_probe_t, write_req));

    free(p->hello);
    p->hello = NULL;
    /* a TLS 1.3 server that refuses us after our Finished sends an alert and
     * hangs up: the write may fail first, the read then says why */
    if (status < 0 && status != UV_ECANCELED && p->busy &&
        !(mt_stream_is_tls(&p->stream) && p->reply_len == 0))
        probe_fail(p, "cannot send hello: %s", uv_strerror(status));
}

static void send_hello(mt_probe_t *p)
{
    mt_monitor_t *m = p->mon;
    bson_t doc = BSON_INITIALIZER, client, sub;
    uv_buf_t b;
    size_t len;
    int rc;

    BSON_APPEND_INT32(&doc, p->legacy ? "isMaster" : "hello", 1);
    BSON_APPEND_BOOL(&doc, "helloOk", true);
    if (!p->sent_metadata) {
        /* the first hello of a connection may say who is asking */
        BSON_APPEND_DOCUMENT_BEGIN(&doc, "client", &client);
        BSON_APPEND_DOCUMENT_BEGIN(&client, "application", &sub);
        BSON_APPEND_UTF8(&sub, "name", "mongotap monitor");
        bson_append_document_end(&client, &sub);
        BSON_APPEND_DOCUMENT_BEGIN(&client, "driver", &sub);
        BSON_APPEND_UTF8(&sub, "name", "mongotap");
        BSON_APPEND_UTF8(&sub, "version", MT_VERSION);
        bson_append_document_end(&client, &sub);
        BSON_APPEND_DOCUMENT_BEGIN(&client, "os", &sub);
        BSON_APPEND_UTF8(&sub, "type", "Linux");
        bson_append_document_end(&client, &sub);
        bson_append_document_end(&doc, &client);
    }
    BSON_APPEND_UTF8(&doc, "$db", "admin");
    len = MT_WIRE_HEADER_LEN + 5 + doc.len;
    p->hello = malloc(len);
    if (!p->hello) {
        bson_destroy(&doc);
        probe_fail(p, "%s", "out of memory");
        return;
    }
    p->request_id = ++m->next_request_id;
    mt_wire_put_le32(p->hello, (uint32_t)len);
    mt_wire_put_le32(p->hello + 4, (uint32_t)p->request_id);
    mt_wire_put_le32(p->hello + 8, 0);
    mt_wire_put_le32(p->hello + 12, MT_OP_MSG);
    mt_wire_put_le32(p->hello + 16, 0); /* flagBits */
    p->hello[20] = 0;                   /* section kind 0: the body */
    memcpy(p->hello + 21, bson_get_data(&doc), doc.len);
    bson_destroy(&doc);
    b = uv_buf_init((char *)p->hello, (unsigned)len);
    p->reply_len = 0;
    p->sent_ns = uv_hrtime();
    rc = mt_stream_write(&p->write_req, &p->stream, &b, 1, hello_written_cb);
    if (rc < 0) {
        free(p->hello);
        p->hello = NULL;
        probe_fail(p, "cannot send hello: %s", uv_strerror(rc));
        return;
    }
    p->sent_metadata = true;
}

/* A whole reply: the one to our hello, or the member is not what we think. */
static void reply_done(mt_probe_t *p)
{
    mt_msg_t msg;
    mt_reply_view_t view;
    mt_msg_err_t err = mt_msg_parse(p->reply, p->reply_len, NULL, &msg);

    if (err == MT_MSG_OK)
        err = mt_cmd_reply(&msg, &view);
    p->reply_len = 0;
    if (err != MT_MSG_OK) {
        probe_fail(p, "hello reply does not parse: %s", mt_msg_err_str(err));
        return;
    }
    if (view.response_to != p->request_id) {
        probe_fail(p, "%s", "a reply to something else than our hello");
        return;
    }
    if (!view.ok && view.code == HELLO_CMD_NOT_FOUND && !p->legacy) {
        p->legacy = true;
        send_hello(p);
        return;
    }
    probe_done(p, &view.body, NULL);
}

static void probe_alloc_cb(mt_stream_t *s, uv_buf_t *buf)
{
    mt_probe_t *p = s->data;

    if (p->reply_cap - p->reply_len < 4096) {
        size_t cap = p->reply_cap ? p->reply_cap * 2 : 16384;
        uint8_t *nb = cap <= MT_MONITOR_REPLY_MAX + 16384 ? realloc(p->reply, cap) : NULL;
        if (!nb) {
            *buf = uv_buf_init(NULL, 0);
            return;
        }
        p->reply = nb;
        p->reply_cap = cap;
    }
    *buf = uv_buf_init((char *)p->reply + p->reply_len, (unsigned)(p->reply_cap - p->reply_len));
}

static void probe_read_cb(mt_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    mt_probe_t *p = s->data;
    uint32_t want;

    (void)buf;
    if (nread == 0 || p->closing)
        return;
    if (nread < 0) {
        if (p->busy && nread == UV_EPROTO && p->reply_len == 0)
            probe_fail(p, "TLS handshake failed: %s", mt_stream_tls_reason(s));
        else if (p->busy)
            probe_fail(p, "connection lost: %s",
                       nread == UV_EPROTO ? mt_stream_tls_reason(s) : uv_strerror((int)nread));
        else
            probe_disconnect(p); /* the server closed an idle connection: reconnect later */
        return;
    }
    p->reply_len += (size_t)nread;
    if (p->reply_len < 4)
        return;
    want = mt_wire_le32(p->reply);
    if (want < MT_WIRE_HEADER_LEN || want > MT_MONITOR_REPLY_MAX) {
        probe_fail(p, "%s", "an impossible message header in the hello reply");
        return;
    }
    if (p->reply_len < want)
        return;
    if (!p->busy || p->reply_len > want) {
        probe_fail(p, "%s", "bytes that answer no hello");
        return;
    }
    reply_done(p);
}

static void connected(mt_probe_t *p)
{
    int rc = mt_stream_read_start(&p->stream, probe_alloc_cb, probe_read_cb);

    if (rc < 0) {
        probe_fail(p, "read: %s", uv_strerror(rc));
        return;
    }
    p->connected = true;
    p->sent_metadata = false;
    send_hello(p);
}

static void handshake_cb(mt_stream_t *s, int status)
{
    mt_probe_t *p = s->data;

    if (!p->busy)
        return;
    if (status < 0) {
        probe_fail(p, "TLS handshake failed: %s",
                   status == UV_EPROTO ? mt_stream_tls_reason(s) : uv_strerror(status));
        return;
    }
    connected(p);
}

static void connect_cb(uv_connect_t *req, int status)
{
    mt_probe_t *p = req->data;
    mt_monitor_t *m = p->mon;
    mt_tls_t *tls;
    int rc;

    if (!p->busy || p->closing)
        return;
    if (status < 0) {
        probe_fail(p, "connect: %s", uv_strerror(status));
        return;
    }
    uv_tcp_nodelay(&p->stream.tcp, 1);
    if (!m->cfg.tls) {
        connected(p);
        return;
    }
    tls = mt_tls_new(m->cfg.tls, m->topo.members[p->index].addr.host);
    if (!tls) {
        probe_fail(p, "%s", "out of memory for TLS");
        return;
    }
    rc = mt_stream_start_tls(&p->stream, tls, handshake_cb);
    if (rc < 0 && p->busy)
        probe_fail(p, "TLS: %s",
                   rc == UV_EPROTO ? mt_stream_tls_reason(&p->stream) : uv_strerror(rc));
}

static void probe_connect(mt_probe_t *p)
{
    mt_monitor_t *m = p->mon;
    int rc;

    if (p->open) {
        /* the last connection is still closing: go on once it has */
        p->connect_after_close = true;
        return;
    }
    rc = mt_stream_init(m->cfg.loop, &p->stream, m->pool);
    if (rc < 0) {
        probe_fail(p, "socket: %s", uv_strerror(rc));
        return;
    }
    p->stream.data = p;
    p->open = true;
    m->handles++;
    p->connect_req.data = p;
    rc = uv_tcp_connect(&p->connect_req, &p->stream.tcp, (const struct sockaddr *)&p->addr,
                        connect_cb);
    if (rc < 0)
        probe_fail(p, "connect: %s", uv_strerror(rc));
}

static void resolved_cb(void *data, int status, const char *error,
                        const struct sockaddr_storage *addrs, size_t n)
{
    mt_probe_t *p = data;
    mt_monitor_t *m = p->mon;

    /* a look-up holds the monitor open until it answers */
    if (m->closing || !p->busy) {
        handle_closed(m);
        return;
    }
    handle_closed(m);
    if (status != 0 || n == 0) {
        probe_fail(p, "cannot resolve the host name: %s", error ? error : "no address");
        return;
    }
    p->addr = addrs[0];
    p->resolved = true;
    probe_connect(p);
}

static void probe_timer_cb(uv_timer_t *t)
{
    mt_probe_t *p = t->data;

    if (p->busy) {
        char why[64];
        snprintf(why, sizeof(why), "no answer within %u ms",
                 p->mon->uri.connect_timeout_ms ? p->mon->uri.connect_timeout_ms
                                                : DEFAULT_DEADLINE_MS);
        probe_done(p, NULL, why);
        return;
    }
    probe_check(p);
}

static void probe_check(mt_probe_t *p)
{
    mt_monitor_t *m = p->mon;
    const mt_member_t *mem = &m->topo.members[p->index];
    int rc;

    if (p->busy || m->closing)
        return;
    p->busy = true;
    uv_timer_start(&p->timer, probe_timer_cb,
                   m->uri.connect_timeout_ms ? m->uri.connect_timeout_ms : DEFAULT_DEADLINE_MS, 0);
    if (p->connected) {
        send_hello(p);
        return;
    }
    /* names are looked up again on every connect: cloud members move */
    m->handles++;
    rc = mt_dns_addr(m->cfg.dns, mem->addr.host, mem->addr.port, resolved_cb, p);
    if (rc < 0) {
        m->handles--;
        probe_fail(p, "cannot resolve the host name: %s", uv_strerror(rc));
    }
}

/* Probes for members the topology learned. */
static void probes_grow(mt_monitor_t *m)
{
    while (m->nprobes < m->topo.nmembers) {
        mt_probe_t *p = &m->probes[m->nprobes];
        memset(p, 0, sizeof(*p));
        p->mon = m;
        p->index = m->nprobes++;
        uv_timer_init(m->cfg.loop, &p->timer);
        p->timer.data = p;
        m->handles++;
        probe_schedule(p, 0);
    }
}

/* ---- the monitor ------------------------------------------------------ */

static void seed(mt_monitor_t *m)
{
    mt_topo_init(&m->topo, &m->uri);
    mt_uri_describe(&m->uri, m->desc, sizeof(m->desc));
    m->seeded = true;
    if (m->cfg.stats)
        report_stats(m);
    probes_grow(m);
}

static void srv_timer_cb(uv_timer_t *t);

static void seedlist_cb(void *data, int status, const char *error)
{
    mt_monitor_t *m = data;

    m->srv_pending = false;
    if (m->closing) {
        /* nothing */
    } else if (status != 0) {
        mt_warn("upstream mongodb+srv://%s: %s; trying again in %d s", m->uri.srv_host, error,
                MT_MONITOR_SRV_RETRY_MS / 1000);
        uv_timer_start(&m->srv_timer, srv_timer_cb, MT_MONITOR_SRV_RETRY_MS, 0);
    } else {
        char hosts[512];
        size_t n = 0;
        hosts[0] = '\0';
        for (size_t i = 0; i < m->uri.nhosts && n < sizeof(hosts); i++)
            n += (size_t)snprintf(hosts + n, sizeof(hosts) - n, "%s%s:%u", i ? "," : "",
                                  m->uri.hosts[i].host, m->uri.hosts[i].port);
        mt_info("upstream mongodb+srv://%s resolved: %s%s%s", m->uri.srv_host, hosts,
                m->uri.replica_set[0] ? " replicaSet=" : "", m->uri.replica_set);
        seed(m);
    }
    handle_closed(m); /* the look-up held the monitor */
}

static void srv_timer_cb(uv_timer_t *t)
{
    mt_monitor_t *m = t->data;

    m->srv_pending = true;
    m->handles++;
    if (mt_dns_seedlist(m->cfg.dns, &m->uri, seedlist_cb, m) < 0) {
        m->handles--;
        m->srv_pending = false;
        uv_timer_start(&m->srv_timer, srv_timer_cb, MT_MONITOR_SRV_RETRY_MS, 0);
    }
}

mt_monitor_t *mt_monitor_new(const mt_monitor_config_t *cfg)
{
    mt_monitor_t *m = calloc(1, sizeof(*m));

    if (!m)
        return NULL;
    m->cfg = *cfg;
    m->uri = *cfg->uri;
    if (cfg->tls && !(m->pool = mt_stream_pool_new())) {
        free(m);
        return NULL;
    }
    mt_topo_init(&m->topo, &m->uri);
    mt_uri_describe(&m->uri, m->desc, sizeof(m->desc));
    uv_timer_init(cfg->loop, &m->srv_timer);
    m->srv_timer.data = m;
    m->handles = 1;
    return m;
}

void mt_monitor_start(mt_monitor_t *m)
{
    if (m->started)
        return;
    m->started = true;
    if (m->uri.scheme == MT_URI_SRV)
        srv_timer_cb(&m->srv_timer);
    else
        seed(m);
}

bool mt_monitor_target(const mt_monitor_t *m, mt_monitor_target_t *out)
{
    int i = m->seeded ? mt_topo_target(&m->topo) : -1;

    memset(out, 0, sizeof(*out));
    out->index = i;
    if (i < 0)
        return false;
    out->name = m->topo.members[i].name;
    out->host = m->topo.members[i].addr.host;
    out->port = m->topo.members[i].addr.port;
    out->addr = (size_t)i < m->nprobes && m->probes[i].resolved
                    ? (const struct sockaddr *)&m->probes[i].addr
                    : NULL;
    return true;
}

bool mt_monitor_ready(const mt_monitor_t *m)
{
    return m->seeded && m->topo.ready;
}

void mt_monitor_not_ready_reason(const mt_monitor_t *m, char *out, size_t cap)
{
    if (!m->seeded)
        snprintf(out, cap, "mongodb+srv://%s not resolved yet", m->uri.srv_host);
    else
        not_ready_reason(m, out, cap);
}

void mt_monitor_check_soon(mt_monitor_t *m, int index)
{
    mt_probe_t *p;
    uint64_t since_ms;

    if (index < 0 || (size_t)index >= m->nprobes)
        return;
    /* a burst of failed client connections asks at most every 500 ms */
    p = &m->probes[index];
    since_ms = (uv_hrtime() - p->last_check_ns) / 1000000;
    probe_schedule_sooner(p, since_ms >= MT_MONITOR_FAST_MS ? 0 : MT_MONITOR_FAST_MS - since_ms);
}

const mt_topo_t *mt_monitor_topology(const mt_monitor_t *m)
{
    return &m->topo;
}

char *mt_monitor_json(const mt_monitor_t *m)
{
    return mt_topo_json(&m->topo, &m->uri);
}

static void srv_timer_closed_cb(uv_handle_t *h)
{
    handle_closed(h->data);
}

static void probe_timer_closed_cb(uv_handle_t *h)
{
    handle_closed(((mt_probe_t *)h->data)->mon);
}

void mt_monitor_close(mt_monitor_t *m)
{
    if (!m || m->closing)
        return;
    m->closing = true;
    uv_close((uv_handle_t *)&m->srv_timer, srv_timer_closed_cb);
    for (size_t i = 0; i < m->nprobes; i++) {
        mt_probe_t *p = &m->probes[i];
        p->busy = false;
        uv_close((uv_handle_t *)&p->timer, probe_timer_closed_cb);
        probe_disconnect(p);
    }
}
