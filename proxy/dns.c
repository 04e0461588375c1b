/*
 * dns: c-ares tells us (sock_state_cb) which of its sockets to watch; each
 * gets a uv_poll_t that hands readiness back to ares_process_fd, and one
 * uv_timer_t fires at ares_timeout() for retries. Answers are copied into
 * the query and handed over from the loop: a result c-ares has at once
 * (an IP literal, /etc/hosts) waits for a zero timer rather than calling
 * back from inside the request.
 */
#include "dns.h"

#include <ares.h>
#include <arpa/nameser.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct mt_dns_poll {
    uv_poll_t poll;
    ares_socket_t fd;
    struct mt_dns *dns;
    struct mt_dns_poll *next;
} mt_dns_poll_t;

typedef enum { Q_SRV, Q_TXT, Q_ADDR } query_kind_t;

typedef struct mt_dns_query {
    struct mt_dns *dns;
    query_kind_t kind;
    union {
        mt_dns_srv_cb srv;
        mt_dns_txt_cb txt;
        mt_dns_addr_cb addr;
    } cb;
    void *data;
    uint16_t port;
    int status;
    mt_dns_srv_t *srv;
    char **txt;
    size_t n;
    struct sockaddr_storage addrs[MT_DNS_MAX_ADDRS];
    struct mt_dns_query *next;
} mt_dns_query_t;

struct mt_dns {
    uv_loop_t *loop;
    ares_channel channel;
    bool channel_open;
    uv_timer_t timer; /* c-ares timeouts */
    uv_timer_t defer; /* answers that came at once */
    mt_dns_poll_t *polls;
    mt_dns_query_t *deferred, *deferred_tail;
    int in_request; /* inside an mt_dns_* call */
    int handles;
    bool closing;
};

static bool library_ready;

/* ---- answers ---------------------------------------------------------- */

static void query_free(mt_dns_query_t *q)
{
    for (size_t i = 0; q->txt && i < q->n; i++)
        free(q->txt[i]);
    free(q->txt);
    free(q->srv);
    free(q);
}

static void deliver(mt_dns_query_t *q)
{
    const char *error = q->status ? ares_strerror(q->status) : NULL;

    switch (q->kind) {
    case Q_SRV:
        q->cb.srv(q->data, q->status, error, q->srv, q->status ? 0 : q->n);
        break;
    case Q_TXT:
        q->cb.txt(q->data, q->status, error, (const char *const *)q->txt, q->status ? 0 : q->n);
        break;
    case Q_ADDR:
        q->cb.addr(q->data, q->status, error, q->addrs, q->status ? 0 : q->n);
        break;
    }
    query_free(q);
}

static void defer_cb(uv_timer_t *t)
{
    mt_dns_t *d = t->data;

    while (d->deferred) {
        mt_dns_query_t *q = d->deferred;
        d->deferred = q->next;
        if (!d->deferred)
            d->deferred_tail = NULL;
        deliver(q);
    }
}

/* Every answer goes through here. */
static void answered(mt_dns_query_t *q)
{
    mt_dns_t *d = q->dns;

    if (!d->in_request || d->closing) {
        deliver(q);
        return;
    }
    q->next = NULL;
    if (d->deferred_tail)
        d->deferred_tail->next = q;
    else
        d->deferred = q;
    d->deferred_tail = q;
    uv_timer_start(&d->defer, defer_cb, 0, 0);
}

/* ---- c-ares on the loop ----------------------------------------------- */

static void reschedule(mt_dns_t *d);

static void poll_closed_cb(uv_handle_t *h)
{
    free(h->data);
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    mt_dns_poll_t *p = h->data;
    ares_socket_t r = ARES_SOCKET_BAD, w = ARES_SOCKET_BAD;

    /* on an error let c-ares find out by reading and writing */
    if (status < 0 || (events & UV_READABLE))
        r = p->fd;
    if (status < 0 || (events & UV_WRITABLE))
        w = p->fd;
    ares_process_fd(p->dns->channel, r, w);
    reschedule(p->dns);
}

static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    mt_dns_t *d = data;
    mt_dns_poll_t **pp, *p;

    for (pp = &d->polls; *pp && (*pp)->fd != fd; pp = &(*pp)->next)
        ;
    p = *pp;
    if (!readable && !writable) {
        if (p) {
            *pp = p->next;
            uv_poll_stop(&p->poll);
            uv_close((uv_handle_t *)&p->poll, poll_closed_cb);
        }
        return;
    }
    if (!p) {
        p = calloc(1, sizeof(*p));
        if (!p)
            return; /* c-ares times the query out */
        if (uv_poll_init_socket(d->loop, &p->poll, fd) != 0) {
            free(p);
            return;
        }
        p->fd = fd;
        p->dns = d;
        p->poll.data = p;
        p->next = d->polls;
        d->polls = p;
    }
    uv_poll_start(&p->poll, (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0), poll_cb);
}

static void timer_cb(uv_timer_t *t)
{
    mt_dns_t *d = t->data;

    ares_process_fd(d->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    reschedule(d);
}

static void reschedule(mt_dns_t *d)
{
    struct timeval tv, *next;

    if (d->closing)
        return;
    next = ares_timeout(d->channel, NULL, &tv);
    if (!next) {
        uv_timer_stop(&d->timer);
        return;
    }
    uv_timer_start(&d->timer, timer_cb,
                   (uint64_t)next->tv_sec * 1000 + (uint64_t)next->tv_usec / 1000 + 1, 0);
}

mt_dns_t *mt_dns_new(uv_loop_t *loop, const char *server, char *err, size_t errlen)
{
    struct ares_options opts;
    mt_dns_t *d;
    int rc;

    if (!library_ready) {
        rc = ares_library_init(ARES_LIB_INIT_ALL);
        if (rc != ARES_SUCCESS) {
            snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
            return NULL;
        }
        library_ready = true;
    }
    d = calloc(1, sizeof(*d));
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->loop = loop;
    memset(&opts, 0, sizeof(opts));
    opts.sock_state_cb = sock_state_cb;
    opts.sock_state_cb_data = d;
    opts.timeout = 2000; /* ms per try, with ARES_OPT_TIMEOUTMS */
    opts.tries = 3;
    rc = ares_init_options(&d->channel, &opts,
                           ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
        free(d);
        return NULL;
    }
    d->channel_open = true;
    if (server && *server) {
        mt_hostport_t hp;
        unsigned char addr[16];
        if (mt_uri_parse_hostport(server, strlen(server), 0, &hp) != 0 || hp.port == 0 ||
            (uv_inet_pton(AF_INET, hp.host, addr) != 0 &&
             uv_inet_pton(AF_INET6, hp.host, addr) != 0) ||
            (rc = ares_set_servers_ports_csv(d->channel, server)) != ARES_SUCCESS) {
            snprintf(err, errlen, "MONGOTAP_DNS_SERVER '%s': expected IP:PORT or [IPv6]:PORT",
                     server);
            ares_destroy(d->channel);
            free(d);
            return NULL;
        }
    }
    uv_timer_init(loop, &d->timer);
    uv_timer_init(loop, &d->defer);
    d->timer.data = d->defer.data = d;
    return d;
}

static void handle_closed_cb(uv_handle_t *h)
{
    mt_dns_t *d = h->data;

    if (--d->handles == 0)
        free(d);
}

void mt_dns_close(mt_dns_t *d)
{
    if (!d || d->closing)
        return;
    d->closing = true;
    /* pending queries call back now with ARES_EDESTRUCTION; sockets close */
    ares_destroy(d->channel);
    d->channel_open = false;
    defer_cb(&d->defer);
    while (d->polls) {
        mt_dns_poll_t *p = d->polls;
        d->polls = p->next;
        uv_close((uv_handle_t *)&p->poll, poll_closed_cb);
    }
    d->handles = 2;
    uv_close((uv_handle_t *)&d->timer, handle_closed_cb);
    uv_close((uv_handle_t *)&d->defer, handle_closed_cb);
}

/* ---- look-ups --------------------------------------------------------- */

static mt_dns_query_t *query_new(mt_dns_t *d, query_kind_t kind, void *data)
{
    mt_dns_query_t *q = calloc(1, sizeof(*q));

    if (q) {
        q->dns = d;
        q->kind = kind;
        q->data = data;
    }
    return q;
}

static void srv_answer_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    mt_dns_query_t *q = arg;
    struct ares_srv_reply *reply = NULL;

    (void)timeouts;
    if (status == ARES_SUCCESS)
        status = ares_parse_srv_reply(abuf, alen, &reply);
    if (status == ARES_SUCCESS) {
        for (struct ares_srv_reply *r = reply; r; r = r->next)
            q->n++;
        q->srv = calloc(q->n ? q->n : 1, sizeof(*q->srv));
        if (!q->srv) {
            status = ARES_ENOMEM;
        } else {
            size_t i = 0;
            for (struct ares_srv_reply *r = reply; r; r = r->next, i++) {
                snprintf(q->srv[i].target, sizeof(q->srv[i].target), "%s", r->host);
                q->srv[i].port = r->port;
            }
        }
    }
    if (reply)
        ares_free_data(reply);
    q->status = status;
    answered(q);
}

static void txt_answer_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    mt_dns_query_t *q = arg;
    struct ares_txt_ext *reply = NULL;

    (void)timeouts;
    if (status == ARES_SUCCESS)
        status = ares_parse_txt_reply_ext(abuf, alen, &reply);
    if (status == ARES_SUCCESS) {
        for (struct ares_txt_ext *r = reply; r; r = r->next)
            q->n += r->record_start ? 1 : 0;
        q->txt = calloc(q->n ? q->n : 1, sizeof(*q->txt));
        status = q->txt ? ARES_SUCCESS : ARES_ENOMEM;
        /* a record's strings are one value, concatenated */
        size_t i = 0;
        for (struct ares_txt_ext *r = reply; r && status == ARES_SUCCESS; r = r->next) {
            size_t len;
            char *t;
            if (r->record_start)
                i++;
            if (i == 0)
                continue; /* c-ares always starts with a record start */
            len = q->txt[i - 1] ? strlen(q->txt[i - 1]) : 0;
            t = realloc(q->txt[i - 1], len + r->length + 1);
            if (!t) {
                status = ARES_ENOMEM;
                break;
            }
            memcpy(t + len, r->txt, r->length);
            t[len + r->length] = '\0';
            q->txt[i - 1] = t;
        }
    }
    if (reply)
        ares_free_data(reply);
    q->status = status;
    answered(q);
}

static void addr_answer_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    mt_dns_query_t *q = arg;

    (void)timeouts;
    if (status == ARES_SUCCESS && res) {
        for (struct ares_addrinfo_node *n = res->nodes; n && q->n < MT_DNS_MAX_ADDRS;
             n = n->ai_next) {
            if ((size_t)n->ai_addrlen > sizeof(q->addrs[0]))
                continue;
            memcpy(&q->addrs[q->n], n->ai_addr, (size_t)n->ai_addrlen);
            q->n++;
        }
        if (q->n == 0)
            status = ARES_ENODATA;
    }
    if (res)
        ares_freeaddrinfo(res);
    q->status = status;
    answered(q);
}

static int query_start(mt_dns_t *d, mt_dns_query_t *q, const char *name, int type)
{
    if (!q)
        return UV_ENOMEM;
    d->in_request++;
    if (type == ns_t_srv)
        ares_query(d->channel, name, ns_c_in, ns_t_srv, srv_answer_cb, q);
    else
        ares_query(d->channel, name, ns_c_in, ns_t_txt, txt_answer_cb, q);
    d->in_request--;
    reschedule(d);
    return 0;
}

int mt_dns_srv(mt_dns_t *d, const char *name, mt_dns_srv_cb cb, void *data)
{
    mt_dns_query_t *q = d->closing ? NULL : query_new(d, Q_SRV, data);

    if (q)
        q->cb.srv = cb;
    return query_start(d, q, name, ns_t_srv);
}

int mt_dns_txt(mt_dns_t *d, const char *name, mt_dns_txt_cb cb, void *data)
{
    mt_dns_query_t *q = d->closing ? NULL : query_new(d, Q_TXT, data);

    if (q)
        q->cb.txt = cb;
    return query_start(d, q, name, ns_t_txt);
}

int mt_dns_addr(mt_dns_t *d, const char *host, uint16_t port, mt_dns_addr_cb cb, void *data)
{
    struct ares_addrinfo_hints hints;
    mt_dns_query_t *q = d->closing ? NULL : query_new(d, Q_ADDR, data);
    char service[8];

    if (!q)
        return UV_ENOMEM;
    q->cb.addr = cb;
    q->port = port;
    /* literals never go to c-ares (1.18 sends some of them to the servers) */
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&q->addrs[0]) == 0 ||
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&q->addrs[0]) == 0) {
        q->n = 1;
        d->in_request++;
        answered(q);
        d->in_request--;
        return 0;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = ARES_AI_NUMERICSERV;
    snprintf(service, sizeof(service), "%u", port);
    d->in_request++;
    ares_getaddrinfo(d->channel, host, service, &hints, addr_answer_cb, q);
    d->in_request--;
    reschedule(d);
    return 0;
}

/* ---- mongodb+srv ------------------------------------------------------ */

typedef struct {
    mt_uri_t *uri;
    mt_dns_seedlist_cb cb;
    void *data;
    int pending;
    char error[1200];
} seedlist_t;

static void seedlist_step(seedlist_t *sl)
{
    if (--sl->pending > 0)
        return;
    sl->cb(sl->data, sl->error[0] ? -1 : 0, sl->error[0] ? sl->error : NULL);
    free(sl);
}

static void seedlist_srv_cb(void *data, int status, const char *error, const mt_dns_srv_t *recs,
                            size_t n)
{
    seedlist_t *sl = data;
    mt_uri_t *u = sl->uri;

    if (status != 0) {
        snprintf(sl->error, sizeof(sl->error), "SRV _%s._tcp.%s: %s", u->srv_service, u->srv_host,
                 error);
    } else if (n == 0) {
        snprintf(sl->error, sizeof(sl->error), "SRV _%s._tcp.%s: no records", u->srv_service,
                 u->srv_host);
    } else {
        u->nhosts = 0;
        for (size_t i = 0; i < n && !sl->error[0]; i++) {
            if (!mt_uri_srv_target_ok(u->srv_host, recs[i].target))
                snprintf(sl->error, sizeof(sl->error),
                         "SRV _%s._tcp.%s: target %s is not in the domain of %s", u->srv_service,
                         u->srv_host, recs[i].target, u->srv_host);
            else if (mt_uri_add_seed(u, recs[i].target, recs[i].port) != 0)
                snprintf(sl->error, sizeof(sl->error), "SRV _%s._tcp.%s: more than %d targets",
                         u->srv_service, u->srv_host, MT_URI_MAX_HOSTS);
        }
    }
    seedlist_step(sl);
}

static void seedlist_txt_cb(void *data, int status, const char *error, const char *const *txts,
                            size_t n)
{
    seedlist_t *sl = data;
    char why[384];

    if (status == ARES_ENODATA || status == ARES_ENOTFOUND || (status == 0 && n == 0)) {
        /* no TXT record: nothing to apply */
    } else if (status != 0) {
        if (!sl->error[0])
            snprintf(sl->error, sizeof(sl->error), "TXT %s: %s", sl->uri->srv_host, error);
    } else if (n > 1) {
        if (!sl->error[0])
            snprintf(sl->error, sizeof(sl->error), "TXT %s: %zu records (at most one is allowed)",
                     sl->uri->srv_host, n);
    } else if (mt_uri_apply_txt(sl->uri, txts[0], why, sizeof(why)) != 0 && !sl->error[0]) {
        snprintf(sl->error, sizeof(sl->error), "TXT %s: %s", sl->uri->srv_host, why);
    }
    seedlist_step(sl);
}

int mt_dns_seedlist(mt_dns_t *d, mt_uri_t *uri, mt_dns_seedlist_cb cb, void *data)
{
    seedlist_t *sl = calloc(1, sizeof(*sl));
    char name[MT_URI_HOST_MAX + 80];
    int rc;

    if (!sl)
        return UV_ENOMEM;
    sl->uri = uri;
    sl->cb = cb;
    sl->data = data;
    sl->pending = 2;
    snprintf(name, sizeof(name), "_%s._tcp.%s", uri->srv_service, uri->srv_host);
    rc = mt_dns_srv(d, name, seedlist_srv_cb, sl);
    if (rc < 0) {
        free(sl);
        return rc;
    }
    rc = mt_dns_txt(d, uri->srv_host, seedlist_txt_cb, sl);
    if (rc < 0) {
        snprintf(sl->error, sizeof(sl->error), "TXT %s: %s", uri->srv_host, uv_strerror(rc));
        seedlist_step(sl);
    }
    return 0;
}
