/*
 * proxy: the listeners' front door (admission, then a session per
 * connection, session.c), what connecting needs (the resolver, the TLS
 * contexts, the upstream monitor) and the proxy's own life: start, drain on
 * shutdown, free.
 */
#include "proxy.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_int.h"

static void admit(uv_stream_t *server, int status, bool tls)
{
    mt_listener_t *l = server->data;
    mt_proxy_t *p = l->owner;
    const char *refuse;

    if (status < 0) {
        /* libuv drops the pending connection on EMFILE, so this never spins */
        mt_listen_accept_failed(&p->listen, "listener", status);
        return;
    }
    refuse = mt_listen_refusal(&p->listen, p->active, p->draining);
    if (refuse) {
        mt_listen_refuse(&p->listen, server, refuse);
        return;
    }
    mt__session_accept(p, server, tls);
}

static void on_connection(uv_stream_t *server, int status)
{
    admit(server, status, false);
}

static void on_tls_connection(uv_stream_t *server, int status)
{
    admit(server, status, true);
}

/* The monitor saw the topology change: waiting attempts may go on, and
 * sessions on a member that lost the primary retire. */
static void upstream_changed_cb(void *data, unsigned events)
{
    mt_proxy_t *p = data;

    mt_upstream_target_changed(&p->upstream);
    if (!(events & (MT_TOPO_EV_PRIMARY | MT_TOPO_EV_STATE)))
        return;
    for (h2o_linklist_t *n = p->sessions.next; n != &p->sessions;) {
        h2o_linklist_t *next = n->next;
        mt__session_check_member(mt__session_of(n));
        n = next;
    }
}

/* ---- the proxy -------------------------------------------------------- */

/* Before the loop waits for I/O: what the callbacks of the next iteration
 * decompress for accounting comes out of one budget again, and they share
 * one reading of the clock. */
static void iteration_cb(uv_prepare_t *h)
{
    mt_proxy_t *p = h->data;

    mt_account_refill(p->account);
    p->iteration_ns = 0;
}

/* After the iteration's I/O callbacks: what they read is forwarded now. */
static void reads_check_cb(uv_check_t *h)
{
    mt__session_flush_reads(h->data);
}

uint64_t mt__proxy_iteration_ns(mt_proxy_t *p)
{
    if (!p->iteration_ns)
        p->iteration_ns = uv_hrtime();
    return p->iteration_ns;
}

mt_proxy_t *mt_proxy_new(uv_loop_t *loop, const mt_cli_config_t *cfg, mt_stats_t *stats)
{
    mt_proxy_t *p = calloc(1, sizeof(*p));

    if (!p)
        return NULL;
    p->loop = loop;
    p->cfg = cfg;
    p->stats = stats;
    p->account = mt_account_new(stats);
    if (!p->account) {
        free(p);
        return NULL;
    }
    uv_prepare_init(loop, &p->iteration);
    p->iteration.data = p;
    p->iteration_open = true;
    uv_prepare_start(&p->iteration, iteration_cb);
    uv_unref((uv_handle_t *)&p->iteration); /* it never keeps the loop alive */
    uv_check_init(loop, &p->reads_check);
    p->reads_check.data = p;
    p->reads_check_open = true;
    uv_check_start(&p->reads_check, reads_check_cb);
    uv_unref((uv_handle_t *)&p->reads_check);
    h2o_linklist_init_anchor(&p->sessions);
    mt_listen_init(&p->listen, loop, stats, cfg->max_connections);
    return p;
}

/* The resolver, the TLS contexts and the monitor: what connecting needs. */
static int upstream_open(mt_proxy_t *p)
{
    const mt_cli_config_t *cfg = p->cfg;
    const mt_uri_t *uri = &cfg->upstream_uri;
    mt_monitor_config_t mcfg = {0};
    char err[512], desc[512];

    p->dns = mt_dns_new(p->loop, cfg->dns_server, err, sizeof(err));
    if (!p->dns) {
        mt_error("%s", err);
        return UV_EINVAL;
    }
    if (uri->tls) {
        mt_tls_client_opts_t o = {
            .ca_file = uri->tls_ca_file,
            .cert_key_file = uri->tls_cert_key_file,
            .key_password = uri->tls_cert_key_password,
            .allow_invalid_certificates = uri->tls_allow_invalid_certificates,
            .allow_invalid_hostnames = uri->tls_allow_invalid_hostnames,
        };
        p->upstream_tls = mt_tls_client_ctx_new(&o, err, sizeof(err));
        if (!p->upstream_tls) {
            mt_error("--upstream: %s", err);
            return UV_EINVAL;
        }
    }
    if (cfg->ntls_listen) {
        p->listen_tls = mt_tls_server_ctx_new(cfg->tls_cert, cfg->tls_key, err, sizeof(err));
        if (!p->listen_tls) {
            mt_error("%s", err);
            return UV_EINVAL;
        }
    }
    if ((p->upstream_tls || p->listen_tls) && !(p->tls_pool = mt_stream_pool_new()))
        return UV_ENOMEM;
    mcfg.loop = p->loop;
    mcfg.uri = uri;
    mcfg.tls = p->upstream_tls;
    mcfg.dns = p->dns;
    mcfg.stats = p->stats;
    mcfg.on_change = upstream_changed_cb;
    mcfg.data = p;
    p->monitor = mt_monitor_new(&mcfg);
    if (!p->monitor)
        return UV_ENOMEM;
    mt_uri_describe(uri, desc, sizeof(desc));
    mt_upstream_init(&p->upstream, p->loop, p->monitor, p->dns, p->upstream_tls, desc);
    if (uri->ignored[0])
        mt_info("--upstream options that are the application's and not used by mongotap: %s",
                uri->ignored);
    mt_monitor_start(p->monitor);
    return 0;
}

int mt_proxy_listen(mt_proxy_t *p, char *bound, size_t cap)
{
    int rc = upstream_open(p);

    if (rc == 0)
        rc = mt_listen_open(&p->listen, p->cfg->listen, p->cfg->nlisten, on_connection, p, bound,
                            cap);
    if (rc == 0 && p->cfg->ntls_listen)
        rc = mt_listen_open(&p->listen, p->cfg->tls_listen, p->cfg->ntls_listen, on_tls_connection,
                            p, p->tls_bound, sizeof(p->tls_bound));
    return rc;
}

const char *mt_proxy_tls_bound(const mt_proxy_t *p)
{
    return p->tls_bound;
}

mt_monitor_t *mt_proxy_monitor(const mt_proxy_t *p)
{
    return p->monitor;
}

size_t mt_proxy_active(const mt_proxy_t *p)
{
    return p->active;
}

void mt_proxy_usage(const mt_proxy_t *p, mt_proxy_usage_t *out)
{
    memset(out, 0, sizeof(*out));
    out->drain_cut = p->drain_cut;
    for (h2o_linklist_t *n = p->sessions.next; n != &p->sessions; n = n->next) {
        const mt_session_t *s = mt__session_of(n);
        out->sessions++;
        out->queued_bytes += s->client.queued + s->upstream.queued;
        out->paused_sides += (size_t)s->client.paused + (size_t)s->upstream.paused;
    }
}

/* For the handles inside mt_proxy_t: nothing to free when they close. */
static void proxy_handle_closed_cb(uv_handle_t *h)
{
    (void)h;
}

/* Closes one of those handles once, if it is open. */
static void proxy_handle_close(uv_handle_t *h, bool *open)
{
    if (!*open)
        return;
    if (!uv_is_closing(h))
        uv_close(h, proxy_handle_closed_cb);
    *open = false;
}

void mt__proxy_check_drained(mt_proxy_t *p)
{
    mt_proxy_drained_cb cb;

    if (!p->draining || p->active > 0 || !p->drained_cb)
        return;
    cb = p->drained_cb;
    p->drained_cb = NULL;
    /* no session left to connect: stop watching the upstream */
    mt_monitor_close(p->monitor);
    p->monitor = NULL;
    mt_dns_close(p->dns);
    p->dns = NULL;
    assert(p->nreads == 0); /* no session is left, so no read is held */
    proxy_handle_close((uv_handle_t *)&p->drain_timer, &p->drain_timer_open);
    proxy_handle_close((uv_handle_t *)&p->iteration, &p->iteration_open);
    proxy_handle_close((uv_handle_t *)&p->reads_check, &p->reads_check_open);
    cb(p, p->drained_data);
}

/* Calls fn on every session; fn may close the one it is given. */
static void each_session(mt_proxy_t *p, void (*fn)(mt_proxy_t *p, mt_session_t *s))
{
    h2o_linklist_t *n = p->sessions.next;

    while (n != &p->sessions) {
        h2o_linklist_t *next = n->next;
        fn(p, mt__session_of(n));
        n = next;
    }
}

static void drain_cut_one(mt_proxy_t *p, mt_session_t *s)
{
    if (s->state == MT_SESSION_CLOSING)
        return;
    p->drain_cut++;
    mt__session_cut(s);
}

static void drain_timeout_cb(uv_timer_t *t)
{
    each_session(t->data, drain_cut_one);
}

/* Sessions that owe nothing finish now; the others once their last reply
 * is forwarded (session_owed). */
static void drain_one(mt_proxy_t *p, mt_session_t *s)
{
    (void)p;
    mt__session_drain(s);
}

void mt_proxy_drain(mt_proxy_t *p, mt_proxy_drained_cb cb, void *data)
{
    if (p->draining)
        return;
    p->draining = true;
    p->drained_cb = cb;
    p->drained_data = data;
    mt_listen_close(&p->listen);
    each_session(p, drain_one);
    uv_timer_init(p->loop, &p->drain_timer);
    p->drain_timer.data = p;
    p->drain_timer_open = true;
    uv_timer_start(&p->drain_timer, drain_timeout_cb, MT_PROXY_DRAIN_TIMEOUT_MS, 0);
    mt__proxy_check_drained(p);
}

void mt_proxy_free(mt_proxy_t *p)
{
    if (!p)
        return;
    mt_bufpool_free(&p->pool);
    mt_account_free(p->account);
    mt_stream_pool_free(p->tls_pool);
    mt_tls_ctx_free(p->upstream_tls);
    mt_tls_ctx_free(p->listen_tls);
    free(p);
}
