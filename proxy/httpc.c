/*
 * httpc: GET requests to the admin endpoint over libh2o's http1client, on the
 * caller's libuv loop. Names are resolved with uv_getaddrinfo; connections go
 * through an h2o socket pool bound to the resolved address.
 */
#include "httpc.h"

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <h2o/http1client.h>
#include <h2o/url.h>
#include <h2o/socketpool.h>
#include <h2o/timeout.h>

/* Connections held by the pool at once; requests are short and few. */
#define MT_HTTPC_POOL_CAPACITY 16
/* How long an idle kept-alive connection may wait in the pool. */
#define MT_HTTPC_POOL_IDLE_MS 2000

typedef struct mt_httpc_req_s mt_httpc_req_t;

#define req_of(node) ((mt_httpc_req_t *)((char *)(node)-offsetof(struct mt_httpc_req_s, link)))

/*
 * A request lives on the client's pending list from mt_httpc_get until its
 * callback has run (or the client is closed). While the name is being
 * resolved it has no h2o client yet (h2o == NULL, waiting_resolve set).
 */
struct mt_httpc_req_s {
    mt_httpc_t *client;
    h2o_linklist_t link; /* in client->pending */
    h2o_http1client_t *h2o;
    bool waiting_resolve;
    char *head; /* the request head, owned until the request ends */
    h2o_iovec_t head_iov;
    int status;
    char *body;
    size_t body_len, body_cap;
    mt_httpc_done_cb cb;
    void *data;
};

struct mt_httpc_s {
    uv_loop_t *loop;
    mt_httpc_url_t url;
    char host_header[MT_HTTPC_HOST_MAX + 16];
    char *token; /* NULL when none */
    h2o_timeout_t io_timeout;
    h2o_http1client_ctx_t ctx;
    h2o_socketpool_t pool;
    bool pool_ready;
    uv_timer_t reaper; /* tears h2o's parts down one loop turn after mt_httpc_close */
    bool resolving;
    bool closed;
    uv_getaddrinfo_t gai;
    h2o_linklist_t pending;
    size_t npending;
};

const char *mt_httpc_result_str(mt_httpc_result_t r)
{
    switch (r) {
    case MT_HTTPC_OK:
        return "ok";
    case MT_HTTPC_ERR_CONNECT:
        return "connect";
    case MT_HTTPC_ERR_IO:
        return "io";
    case MT_HTTPC_ERR_TIMEOUT:
        return "timeout";
    case MT_HTTPC_ERR_TOO_LARGE:
        return "too_large";
    }
    return "unknown";
}

int mt_httpc_parse_url(const char *url, mt_httpc_url_t *out, char *err, size_t errlen)
{
    char buf[MT_HTTPC_HOST_MAX + MT_HTTPC_PATH_MAX + 64];
    const char *sep = url ? strstr(url, "://") : NULL;
    h2o_url_t u;
    uint16_t port;
    size_t plen;

    memset(out, 0, sizeof(*out));
    if (url == NULL || *url == '\0') {
        snprintf(err, errlen, "empty admin URL");
        return -1;
    }
    /* a bare host[:port] means http on the admin port; schemes are
     * case-insensitive, h2o's parser wants them lower-case */
    if (snprintf(buf, sizeof(buf), "%s%s", sep ? "" : "http://", url) >= (int)sizeof(buf)) {
        snprintf(err, errlen, "admin URL too long");
        return -1;
    }
    for (char *c = buf; sep && c < buf + (sep - url); c++)
        *c = (char)tolower((unsigned char)*c);
    if (h2o_url_parse(buf, strlen(buf), &u) != 0) {
        snprintf(err, errlen, "cannot parse admin URL '%s' (expected http://HOST:PORT)", url);
        return -1;
    }
    if (u.scheme != &H2O_URL_SCHEME_HTTP) {
        snprintf(err, errlen, "unsupported URL scheme in '%s' (only http:// is supported)", url);
        return -1;
    }
    port = u._port == 65535 ? (sep ? 80 : 27080) : u._port;
    if (port == 0 || u.host.len == 0 || u.host.len >= sizeof(out->host)) {
        snprintf(err, errlen, "bad host or port in URL '%s'", url);
        return -1;
    }
    memcpy(out->host, u.host.base, u.host.len);
    out->port = port;
    /* the prefix is the path up to any query or fragment, without a trailing slash */
    plen = strcspn(u.path.base, "?#");
    if (plen > u.path.len)
        plen = u.path.len;
    while (plen > 0 && u.path.base[plen - 1] == '/')
        plen--;
    if (plen >= sizeof(out->prefix)) {
        snprintf(err, errlen, "URL path too long in '%s'", url);
        return -1;
    }
    memcpy(out->prefix, u.path.base, plen);
    return 0;
}

mt_httpc_t *mt_httpc_new(uv_loop_t *loop, const char *base_url, const char *token,
                         uint64_t timeout_ms, char *err, size_t errlen)
{
    mt_httpc_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h2o_linklist_init_anchor(&c->pending);
    if (mt_httpc_parse_url(base_url, &c->url, err, errlen) != 0) {
        free(c);
        return NULL;
    }
    if (token != NULL && *token != '\0') {
        if (strpbrk(token, "\r\n") != NULL) {
            snprintf(err, errlen, "the token must not contain line breaks");
            free(c);
            return NULL;
        }
        c->token = strdup(token);
        if (c->token == NULL) {
            snprintf(err, errlen, "out of memory");
            free(c);
            return NULL;
        }
    }
    if (strchr(c->url.host, ':') != NULL)
        snprintf(c->host_header, sizeof(c->host_header), "[%s]:%u", c->url.host,
                 (unsigned)c->url.port);
    else
        snprintf(c->host_header, sizeof(c->host_header), "%s:%u", c->url.host,
                 (unsigned)c->url.port);
    c->loop = loop;
    h2o_timeout_init(loop, &c->io_timeout, timeout_ms);
    c->ctx.loop = loop;
    c->ctx.io_timeout = &c->io_timeout;
    return c;
}

size_t mt_httpc_pending(const mt_httpc_t *c)
{
    return c->npending;
}

static void req_unlink(mt_httpc_req_t *r)
{
    h2o_linklist_unlink(&r->link);
    r->client->npending--;
}

static void req_free(mt_httpc_req_t *r)
{
    free(r->head);
    free(r->body);
    free(r);
}

/* Ends a request: off the list, callback, freed. h2o closes its own side. */
static void req_finish(mt_httpc_req_t *r, mt_httpc_result_t result, const char *error)
{
    mt_httpc_resp_t resp = {
        .result = result, .error = error, .status = r->status, .body = "", .body_len = 0};
    if (result == MT_HTTPC_OK && r->body != NULL) {
        resp.body = r->body;
        resp.body_len = r->body_len;
    }
    req_unlink(r);
    r->cb(&resp, r->data);
    req_free(r);
}

static mt_httpc_result_t result_for(const char *errstr)
{
    if (errstr != NULL && strstr(errstr, "timeout") != NULL)
        return MT_HTTPC_ERR_TIMEOUT;
    return MT_HTTPC_ERR_IO;
}

static int on_body(h2o_http1client_t *h2o, const char *errstr)
{
    mt_httpc_req_t *r = h2o->data;
    h2o_buffer_t *in = h2o->sock != NULL ? h2o->sock->input : NULL;

    if (errstr != NULL && errstr != h2o_http1client_error_is_eos) {
        req_finish(r, result_for(errstr), errstr);
        return -1;
    }
    /* Take what arrived and consume it, so that the next call sees only new bytes. */
    if (in != NULL && in->size > 0) {
        if (r->body_len + in->size > MT_HTTPC_BODY_MAX) {
            req_finish(r, MT_HTTPC_ERR_TOO_LARGE, "response body too large");
            return -1;
        }
        if (r->body_len + in->size + 1 > r->body_cap) {
            size_t cap = r->body_cap ? r->body_cap : 16384;
            while (cap < r->body_len + in->size + 1)
                cap *= 2;
            char *nb = realloc(r->body, cap);
            if (nb == NULL) {
                req_finish(r, MT_HTTPC_ERR_IO, "out of memory");
                return -1;
            }
            r->body = nb;
            r->body_cap = cap;
        }
        memcpy(r->body + r->body_len, in->bytes, in->size);
        r->body_len += in->size;
        r->body[r->body_len] = '\0';
        h2o_buffer_consume(&h2o->sock->input, in->size);
    }
    if (errstr == h2o_http1client_error_is_eos)
        req_finish(r, MT_HTTPC_OK, NULL);
    return 0;
}

static h2o_http1client_body_cb on_head(h2o_http1client_t *h2o, const char *errstr,
                                       int minor_version, int status, h2o_iovec_t msg,
                                       struct st_h2o_header_t *headers, size_t num_headers,
                                       int rlen)
{
    mt_httpc_req_t *r = h2o->data;
    (void)minor_version, (void)msg, (void)headers, (void)num_headers, (void)rlen;

    if (errstr != NULL && errstr != h2o_http1client_error_is_eos) {
        req_finish(r, result_for(errstr), errstr);
        return NULL;
    }
    r->status = status;
    if (errstr == h2o_http1client_error_is_eos) {
        req_finish(r, MT_HTTPC_OK, NULL); /* a response without a body (204, 304) */
        return NULL;
    }
    return on_body;
}

static h2o_http1client_head_cb on_connect(h2o_http1client_t *h2o, const char *errstr,
                                          h2o_iovec_t **reqbufs, size_t *reqbufcnt,
                                          int *method_is_head)
{
    mt_httpc_req_t *r = h2o->data;

    if (errstr != NULL) {
        req_finish(r, strstr(errstr, "timeout") ? MT_HTTPC_ERR_TIMEOUT : MT_HTTPC_ERR_CONNECT,
                   errstr);
        return NULL;
    }
    *reqbufs = &r->head_iov;
    *reqbufcnt = 1;
    *method_is_head = 0;
    return on_head;
}

/* Hands a request to h2o. The callback may run (and free r) before this returns. */
static void req_start(mt_httpc_req_t *r)
{
    mt_httpc_t *c = r->client;
    r->waiting_resolve = false;
    h2o_http1client_connect_with_pool(&r->h2o, r, &c->ctx, &c->pool, on_connect);
}

static void fail_waiting(mt_httpc_t *c, const char *error)
{
    for (h2o_linklist_t *n = c->pending.next, *next; n != &c->pending; n = next) {
        mt_httpc_req_t *r = req_of(n);
        next = n->next;
        if (r->waiting_resolve)
            req_finish(r, MT_HTTPC_ERR_CONNECT, error);
    }
}

static void start_waiting(mt_httpc_t *c)
{
    /* Collect first: starting a request may finish (and unlink) it at once. */
    for (h2o_linklist_t *n = c->pending.next, *next; n != &c->pending; n = next) {
        mt_httpc_req_t *r = req_of(n);
        next = n->next;
        if (r->waiting_resolve)
            req_start(r);
    }
}

static void pool_init(mt_httpc_t *c, const struct sockaddr *sa, socklen_t len)
{
    h2o_socketpool_init_by_address(&c->pool, (struct sockaddr *)sa, len, 0, MT_HTTPC_POOL_CAPACITY);
    /* Also gives the pool its loop, which it needs to expire idle sockets. */
    h2o_socketpool_set_timeout(&c->pool, c->loop, MT_HTTPC_POOL_IDLE_MS);
    c->pool_ready = true;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    mt_httpc_t *c = req->data;
    const struct addrinfo *pick = NULL;

    c->resolving = false;
    if (status == UV_ECANCELED || c->closed) {
        uv_freeaddrinfo(res);
        return;
    }
    if (status != 0) {
        char msg[MT_HTTPC_HOST_MAX + 96];
        snprintf(msg, sizeof(msg), "cannot resolve %s: %s", c->url.host, uv_strerror(status));
        fail_waiting(c, msg);
        return;
    }
    /* Prefer IPv4: "localhost" often lists ::1 first while admin binds 127.0.0.1. */
    for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            pick = ai;
            break;
        }
        if (pick == NULL && ai->ai_family == AF_INET6)
            pick = ai;
    }
    if (pick == NULL) {
        uv_freeaddrinfo(res);
        fail_waiting(c, "no usable address");
        return;
    }
    pool_init(c, pick->ai_addr, pick->ai_addrlen);
    uv_freeaddrinfo(res);
    start_waiting(c);
}

/* Numeric hosts need no resolver: the pool is set up at once. */
static bool try_numeric(mt_httpc_t *c)
{
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    if (uv_ip4_addr(c->url.host, c->url.port, &sin) == 0) {
        pool_init(c, (struct sockaddr *)&sin, sizeof(sin));
        return true;
    }
    if (uv_ip6_addr(c->url.host, c->url.port, &sin6) == 0) {
        pool_init(c, (struct sockaddr *)&sin6, sizeof(sin6));
        return true;
    }
    return false;
}

static char *build_head(const mt_httpc_t *c, const char *path, size_t *len)
{
    const char *fmt = "GET %s%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: mongotap/" MT_VERSION
                      "\r\nAccept: */*\r\n%s%s%sConnection: close\r\n\r\n";
    const char *auth_a = c->token ? "Authorization: Bearer " : "";
    const char *auth_b = c->token ? c->token : "";
    const char *auth_c = c->token ? "\r\n" : "";
    int n = snprintf(NULL, 0, fmt, c->url.prefix, path, c->host_header, auth_a, auth_b, auth_c);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (s == NULL)
        return NULL;
    snprintf(s, (size_t)n + 1, fmt, c->url.prefix, path, c->host_header, auth_a, auth_b, auth_c);
    *len = (size_t)n;
    return s;
}

int mt_httpc_get(mt_httpc_t *c, const char *path, mt_httpc_done_cb cb, void *data)
{
    if (c->closed || path == NULL || path[0] != '/' || strlen(path) >= MT_HTTPC_PATH_MAX ||
        strpbrk(path, " \r\n") != NULL)
        return -1;
    mt_httpc_req_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -1;
    size_t len = 0;
    r->head = build_head(c, path, &len);
    if (r->head == NULL) {
        free(r);
        return -1;
    }
    r->head_iov = h2o_iovec_init(r->head, len);
    r->client = c;
    r->cb = cb;
    r->data = data;
    r->waiting_resolve = true;
    h2o_linklist_insert(&c->pending, &r->link);
    c->npending++;

    if (!c->pool_ready && !try_numeric(c)) {
        if (!c->resolving) {
            struct addrinfo hints = {
                .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP};
            char serv[8];
            snprintf(serv, sizeof(serv), "%u", (unsigned)c->url.port);
            c->gai.data = c;
            int rc = uv_getaddrinfo(c->loop, &c->gai, on_resolved, c->url.host, serv, &hints);
            if (rc != 0) {
                req_unlink(r);
                req_free(r);
                return -1;
            }
            c->resolving = true;
        }
        return 0;
    }
    if (c->pool_ready)
        req_start(r);
    return 0;
}

/*
 * The pool and the I/O timeout are disposed one loop turn later: when close is
 * called from inside a request's callback, h2o still uses both (it unlinks the
 * request's timeout entry and may hand its socket back to the pool) after that
 * callback returns.
 */
static void on_reap(uv_timer_t *t)
{
    mt_httpc_t *c = t->data;
    if (c->pool_ready) {
        h2o_socketpool_dispose(&c->pool);
        c->pool_ready = false;
    }
    h2o_timeout_dispose(c->loop, &c->io_timeout);
    uv_close((uv_handle_t *)&c->reaper, NULL);
}

void mt_httpc_close(mt_httpc_t *c)
{
    if (c->closed)
        return;
    c->closed = true;
    if (c->resolving)
        uv_cancel((uv_req_t *)&c->gai);
    while (!h2o_linklist_is_empty(&c->pending)) {
        mt_httpc_req_t *r = req_of(c->pending.next);
        req_unlink(r);
        if (r->h2o != NULL && !r->waiting_resolve)
            h2o_http1client_cancel(r->h2o);
        req_free(r);
    }
    uv_timer_init(c->loop, &c->reaper);
    c->reaper.data = c;
    uv_timer_start(&c->reaper, on_reap, 0, 0);
}

void mt_httpc_free(mt_httpc_t *c)
{
    if (c == NULL)
        return;
    free(c->token);
    free(c);
}

typedef struct {
    const char *base_url;
    const char *path;
    mt_httpc_t *http;
    mt_httpc_fetch_t result;
    char *body;
    size_t len;
    char *err;
    size_t errlen;
} fetch_job_t;

static void on_fetched(const mt_httpc_resp_t *resp, void *data)
{
    fetch_job_t *job = data;

    if (resp->result != MT_HTTPC_OK) {
        snprintf(job->err, job->errlen, "cannot reach mongotap admin at %s: %s", job->base_url,
                 resp->error ? resp->error : mt_httpc_result_str(resp->result));
    } else if (resp->status == 401) {
        snprintf(job->err, job->errlen,
                 "admin at %s answered 401 Unauthorized: pass --token or set MONGOTAP_TOKEN",
                 job->base_url);
    } else if (resp->status != 200) {
        snprintf(job->err, job->errlen, "admin at %s answered HTTP %d for %s", job->base_url,
                 resp->status, job->path);
    } else if ((job->body = malloc(resp->body_len + 1)) == NULL) {
        snprintf(job->err, job->errlen, "out of memory for a %zu-byte answer", resp->body_len);
    } else {
        memcpy(job->body, resp->body, resp->body_len);
        job->body[resp->body_len] = '\0';
        job->len = resp->body_len;
        job->result = MT_HTTPC_FETCH_OK;
    }
    mt_httpc_close(job->http);
}

mt_httpc_fetch_t mt_httpc_fetch(const char *base_url, const char *token, const char *path,
                                uint64_t timeout_ms, char **body, size_t *len, char *err,
                                size_t errlen)
{
    fetch_job_t job = {.base_url = base_url,
                       .path = path,
                       .result = MT_HTTPC_FETCH_FAILED,
                       .err = err,
                       .errlen = errlen};
    uv_loop_t loop;

    *body = NULL;
    *len = 0;
    err[0] = '\0';
    if (uv_loop_init(&loop) != 0) {
        snprintf(err, errlen, "cannot start the event loop");
        return MT_HTTPC_FETCH_FAILED;
    }
    job.http = mt_httpc_new(&loop, base_url, token, timeout_ms, err, errlen);
    if (job.http == NULL) {
        uv_loop_close(&loop);
        return MT_HTTPC_FETCH_BAD_URL;
    }
    if (mt_httpc_get(job.http, path, on_fetched, &job) != 0) {
        snprintf(err, errlen, "cannot start the request for %s", path);
        mt_httpc_close(job.http);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    mt_httpc_free(job.http);
    uv_loop_close(&loop);
    *body = job.body;
    *len = job.len;
    return job.result;
}
