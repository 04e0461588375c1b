/*
 * admin: every route is answered from the loop thread with what stats/
 * renders; /events viewers each get a bounded queue, and a viewer that does
 * not keep up is disconnected rather than allowed to hold memory or time.
 * Connections are capped (with a small reserve for health probes), and
 * without a token only loopback names may address it and only requests no
 * other web page can forge may change anything.
 */
#include "admin.h"

#include <bson/bson.h>
#include <errno.h>
#include <h2o.h>
#include <h2o/socket/uv-binding.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "log.h"

extern const unsigned char mt_web_page[];
extern const size_t mt_web_page_len;

/* One accepted admin connection: tracked so that a stuck /events viewer or
 * an expired probe connection can be cut at the socket, letting h2o tear the
 * connection down itself. */
typedef struct mt_admin_sock {
    uv_tcp_t tcp;
    h2o_socket_t *h2o; /* h2o's socket over tcp */
    struct mt_admin *admin;
    bool probe;   /* accepted past the cap: health routes only, then closed */
    bool evicted; /* shut down to make room or expired; h2o is closing it */
    uint64_t accepted_ms;
    h2o_linklist_t link; /* in admin->socks, or admin->probes when probe */
} mt_admin_sock_t;

typedef struct mt_sse_viewer {
    h2o_generator_t generator; /* first: h2o hands it back to us */
    h2o_req_t *req;
    struct mt_admin *admin;
    char *sending; /* owned until h2o calls proceed */
    size_t sending_len;
    char *pending; /* events waiting for the next proceed */
    size_t pending_len, pending_cap;
    bool in_flight;
    bool dropped;
    int fd;
    h2o_linklist_t link; /* in admin->viewers */
} mt_sse_viewer_t;

typedef struct {
    h2o_handler_t super;
    struct mt_admin *admin;
} mt_admin_handler_t;

struct mt_admin {
    uv_loop_t *loop;
    const mt_cli_config_t *cfg;
    mt_stats_t *stats;
    mt_monitor_t *monitor;
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    uv_tcp_t listener;
    bool listening;
    uv_timer_t tick;
    bool tick_open;
    h2o_linklist_t socks;  /* within the cap */
    h2o_linklist_t probes; /* past it, oldest first */
    h2o_linklist_t viewers;
    size_t nviewers;
    size_t nsocks;
    size_t nprobes;      /* in the probes list */
    size_t nprobes_live; /* of those, not evicted */
    uint64_t last_full_log;
    char csp[512]; /* the console page's Content-Security-Policy */
};

/* ---- helpers ---------------------------------------------------------- */

int mt_admin_token_ok(const char *token, const char *header, size_t header_len)
{
    static const char prefix[] = "Bearer ";
    size_t plen = sizeof(prefix) - 1, tlen = strlen(token), n;
    unsigned diff = 0;

    if (header_len < plen || strncasecmp(header, prefix, plen) != 0)
        return 0;
    header += plen;
    header_len -= plen;
    /* compare every byte of the longer string so timing does not leak where
     * the first difference is */
    n = header_len > tlen ? header_len : tlen;
    diff |= (unsigned)(header_len ^ tlen);
    for (size_t i = 0; i < n; i++) {
        unsigned char a = i < header_len ? (unsigned char)header[i] : 0;
        unsigned char b = i < tlen ? (unsigned char)token[i] : 0;
        diff |= (unsigned)(a ^ b);
    }
    return diff == 0;
}

/* On every answer: never sniffed into another type, never framed. */
static void add_security_headers(h2o_req_t *req)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-content-type-options"), 0,
                          NULL, H2O_STRLIT("nosniff"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-frame-options"), 0, NULL,
                          H2O_STRLIT("DENY"));
}

static void respond(h2o_req_t *req, int status, const char *reason, const char *type,
                    const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = reason;
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, type, strlen(type));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-store"));
    add_security_headers(req);
    h2o_send_inline(req, body, len);
}

static void respond_owned(h2o_req_t *req, const char *type, char *body)
{
    if (!body) {
        static const char oom[] = "{\"error\": \"out of memory\"}";
        respond(req, 500, "Internal Server Error", "application/json", oom, sizeof(oom) - 1);
        return;
    }
    respond(req, 200, "OK", type, body, strlen(body));
    bson_free(body);
}

static void respond_error(h2o_req_t *req, int status, const char *reason, const char *message)
{
    bson_t doc = BSON_INITIALIZER;
    char *json;
    size_t len;

    BSON_APPEND_UTF8(&doc, "error", message);
    BSON_APPEND_INT32(&doc, "status", status);
    json = bson_as_relaxed_extended_json(&doc, &len);
    bson_destroy(&doc);
    if (status == 401)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL,
                       H2O_STRLIT("Bearer realm=\"mongotap\""));
    respond(req, status, reason, "application/json", json ? json : "{}", json ? len : 2);
    bson_free(json);
}

/* Copies a query value into out, %XX and '+' decoded, cut to cap - 1 bytes. */
static void query_decode(const char *v, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < cap; i++) {
        unsigned char byte;
        if (v[i] == '%' && i + 2 < len && h2o_hex_decode(&byte, v + i + 1, 2) == 0) {
            out[n++] = byte ? (char)byte : ' '; /* a NUL would cut the value short */
            i += 2;
        } else {
            out[n++] = v[i] == '+' ? ' ' : v[i];
        }
    }
    out[n] = '\0';
}

/* Value of query parameter `name`, decoded into out; false when absent. */
static bool query_param(h2o_req_t *req, const char *name, char *out, size_t cap)
{
    const char *q, *end;
    size_t nlen = strlen(name);

    if (req->query_at == SIZE_MAX)
        return false;
    q = req->path.base + req->query_at + 1;
    end = req->path.base + req->path.len;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - q) > nlen && memcmp(q, name, nlen) == 0 && q[nlen] == '=') {
            query_decode(q + nlen + 1, (size_t)(stop - q) - nlen - 1, out, cap);
            return true;
        }
        q = stop + 1;
    }
    return false;
}

/* A whole number from 1 to max in s; false otherwise. */
static bool parse_count(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (!s[0] || s[0] < '0' || s[0] > '9')
        return false;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end || v == 0 || v > max)
        return false;
    *out = v;
    return true;
}

static bool query_limit(h2o_req_t *req, size_t def, size_t *out)
{
    char buf[24];
    uint64_t v;

    *out = def;
    if (!query_param(req, "limit", buf, sizeof(buf)))
        return true;
    if (!parse_count(buf, 100000, &v))
        return false;
    *out = (size_t)v;
    return true;
}

/* Query flags: "1", "true", "yes". */
static bool query_flag(h2o_req_t *req, const char *name)
{
    char buf[8];
    return query_param(req, name, buf, sizeof(buf)) &&
           (strcmp(buf, "1") == 0 || strcasecmp(buf, "true") == 0 || strcasecmp(buf, "yes") == 0);
}

static bool path_is(h2o_req_t *req, const char *path)
{
    return h2o_memis(req->path_normalized.base, req->path_normalized.len, path, strlen(path));
}

/* The rest of the path after prefix (copied into out), or false. */
static bool path_under(h2o_req_t *req, const char *prefix, char *out, size_t cap)
{
    size_t plen = strlen(prefix), len = req->path_normalized.len;
    if (len <= plen || memcmp(req->path_normalized.base, prefix, plen) != 0 || len - plen >= cap)
        return false;
    memcpy(out, req->path_normalized.base + plen, len - plen);
    out[len - plen] = '\0';
    return true;
}

static bool method_is(h2o_req_t *req, const char *m)
{
    return h2o_memis(req->method.base, req->method.len, m, strlen(m));
}

/* The routes a probe connection may ask for. */
static bool health_path(h2o_req_t *req)
{
    return path_is(req, "/healthz") || path_is(req, "/readyz");
}

/* Without a token, only requests addressed by a loopback name or by the
 * --admin host are served: a web page whose DNS name was rebound to
 * 127.0.0.1 still sends its own name as Host (DNS rebinding). A request
 * without Host (HTTP/1.0 tools) cannot come from a browser. */
static bool host_allowed(struct mt_admin *a, h2o_req_t *req)
{
    h2o_iovec_t auth = req->input.authority, host;
    uint16_t port;
    char name[MT_CLI_HOST_MAX];

    if (req->hostconf && auth.base == req->hostconf->authority.hostport.base)
        return true; /* h2o supplied it: the request had no Host */
    if (h2o_url_parse_hostport(auth.base, auth.len, &host, &port) != auth.base + auth.len ||
        host.len >= sizeof(name))
        return false;
    memcpy(name, host.base, host.len);
    name[host.len] = '\0';
    return mt_cli_is_loopback(name) || strcasecmp(name, a->cfg->admin.host) == 0;
}

/* A form on another site, or its fetch without CORS, can send only "simple"
 * headers; a POST must carry one that is not: X-Mongotap (what the console
 * sends) or Content-Type: application/json. */
static bool post_allowed(h2o_req_t *req)
{
    if (h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-mongotap"), -1) >= 0)
        return true;
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (i < 0)
        return false;
    h2o_iovec_t v = req->headers.entries[i].value;
    size_t n = 0;
    while (n < v.len && v.base[n] != ';' && v.base[n] != ' ' && v.base[n] != '\t')
        n++;
    return h2o_lcstris(v.base, n, H2O_STRLIT("application/json"));
}

/* ---- /events ---------------------------------------------------------- */

#define viewer_of(node) ((mt_sse_viewer_t *)((char *)(node)-offsetof(mt_sse_viewer_t, link)))
#define sock_of(node) ((mt_admin_sock_t *)((char *)(node)-offsetof(mt_admin_sock_t, link)))

static void viewer_unlink(mt_sse_viewer_t *v)
{
    if (h2o_linklist_is_linked(&v->link)) {
        h2o_linklist_unlink(&v->link);
        v->admin->nviewers--;
    }
}

static void viewer_free(mt_sse_viewer_t *v)
{
    free(v->sending);
    free(v->pending);
    v->sending = v->pending = NULL;
}

/* Cuts a viewer that cannot keep up: shutting the socket down makes h2o's
 * pending write fail, and h2o then closes the connection and calls stop. */
static void viewer_drop(mt_sse_viewer_t *v, const char *why)
{
    if (v->dropped)
        return;
    v->dropped = true;
    mt_info("admin: /events viewer dropped: %s", why);
    free(v->pending);
    v->pending = NULL;
    v->pending_len = v->pending_cap = 0;
    if (v->fd >= 0)
        shutdown(v->fd, SHUT_RDWR);
}

static void viewer_flush(mt_sse_viewer_t *v)
{
    h2o_iovec_t buf;

    if (v->in_flight || v->dropped || v->pending_len == 0)
        return;
    free(v->sending);
    v->sending = v->pending;
    v->sending_len = v->pending_len;
    v->pending = NULL;
    v->pending_len = v->pending_cap = 0;
    v->in_flight = true;
    buf = h2o_iovec_init(v->sending, v->sending_len);
    h2o_send(v->req, &buf, 1, H2O_SEND_STATE_IN_PROGRESS);
}

static void viewer_push(mt_sse_viewer_t *v, const char *event, const char *data)
{
    size_t need;
    int n;

    if (v->dropped)
        return;
    need = strlen(event) + strlen(data) + 32;
    if (v->pending_len + need > MT_ADMIN_SSE_MAX_PENDING) {
        viewer_drop(v, "too slow (queue full)");
        return;
    }
    if (v->pending_len + need > v->pending_cap) {
        size_t cap = v->pending_cap ? v->pending_cap * 2 : 4096;
        char *nb;
        while (cap < v->pending_len + need)
            cap *= 2;
        nb = realloc(v->pending, cap);
        if (!nb) {
            viewer_drop(v, "out of memory");
            return;
        }
        v->pending = nb;
        v->pending_cap = cap;
    }
    n = snprintf(v->pending + v->pending_len, v->pending_cap - v->pending_len,
                 "event: %s\ndata: %s\n\n", event, data);
    if (n > 0)
        v->pending_len += (size_t)n;
    viewer_flush(v);
}

static void sse_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    mt_sse_viewer_t *v = (mt_sse_viewer_t *)g;

    (void)req;
    v->in_flight = false;
    free(v->sending);
    v->sending = NULL;
    viewer_flush(v);
}

static void sse_stop(h2o_generator_t *g, h2o_req_t *req)
{
    mt_sse_viewer_t *v = (mt_sse_viewer_t *)g;

    (void)req;
    viewer_unlink(v);
    viewer_free(v);
    /* v itself lives in the request's pool */
}

static void broadcast(struct mt_admin *a, const char *event, const char *data)
{
    h2o_linklist_t *n = a->viewers.next;

    while (n != &a->viewers) {
        h2o_linklist_t *next = n->next; /* a push may drop the viewer */
        viewer_push(viewer_of(n), event, data);
        n = next;
    }
}

/* Our record of the connection a request came on, from the list given. */
static mt_admin_sock_t *sock_for(h2o_linklist_t *list, h2o_req_t *req)
{
    h2o_socket_t *hs =
        req->conn->callbacks->get_socket ? req->conn->callbacks->get_socket(req->conn) : NULL;
    for (h2o_linklist_t *n = list->next; hs && n != list; n = n->next)
        if (sock_of(n)->h2o == hs)
            return sock_of(n);
    return NULL;
}

static int find_fd(struct mt_admin *a, h2o_req_t *req)
{
    mt_admin_sock_t *s = sock_for(&a->socks, req);
    uv_os_fd_t fd;

    return s && uv_fileno((uv_handle_t *)&s->tcp, &fd) == 0 ? fd : -1;
}

static void serve_events(struct mt_admin *a, h2o_req_t *req)
{
    mt_sse_viewer_t *v;
    char *json;

    if (a->nviewers >= MT_ADMIN_SSE_MAX_VIEWERS) {
        respond_error(req, 503, "Service Unavailable", "too many /events viewers");
        return;
    }
    v = h2o_mem_alloc_shared(&req->pool, sizeof(*v), NULL);
    memset(v, 0, sizeof(*v));
    v->generator.proceed = sse_proceed;
    v->generator.stop = sse_stop;
    v->req = req;
    v->admin = a;
    v->fd = find_fd(a, req);
    if (v->fd >= 0) {
        /* a small kernel buffer makes a stuck viewer fill our bounded queue
         * (and get dropped) in seconds rather than minutes */
        int sndbuf = MT_ADMIN_SSE_SNDBUF;
        setsockopt(v->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    }
    h2o_linklist_insert(&a->viewers, &v->link);
    a->nviewers++;

    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/event-stream"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-store"));
    add_security_headers(req);
    h2o_start_response(req, &v->generator);
    /* the first stats event goes out at once, so a viewer sees numbers now */
    json = mt_stats_json(a->stats, uv_hrtime(), 20);
    viewer_push(v, "stats", json ? json : "{}");
    bson_free(json);
}

/* Shuts a probe connection down; h2o then closes it (sock_closed_cb). */
static void probe_evict(mt_admin_sock_t *s)
{
    uv_os_fd_t fd;

    if (s->evicted)
        return;
    s->evicted = true;
    s->admin->nprobes_live--;
    if (uv_fileno((uv_handle_t *)&s->tcp, &fd) == 0)
        shutdown(fd, SHUT_RDWR);
}

static void tick_cb(uv_timer_t *t)
{
    struct mt_admin *a = t->data;
    uint64_t now = uv_now(a->loop);
    char *json;

    for (h2o_linklist_t *n = a->probes.next; n != &a->probes; n = n->next)
        if (now - sock_of(n)->accepted_ms >= MT_ADMIN_PROBE_MS)
            probe_evict(sock_of(n));
    if (h2o_linklist_is_empty(&a->viewers))
        return;
    json = mt_stats_json(a->stats, uv_hrtime(), 20);
    if (json)
        broadcast(a, "stats", json);
    bson_free(json);
}

void mt_admin_set_monitor(mt_admin_t *a, mt_monitor_t *monitor)
{
    if (a)
        a->monitor = monitor;
}

void mt_admin_publish_finding(mt_admin_t *a, const char *json)
{
    if (a)
        broadcast(a, "finding", json);
}

bool mt_admin_has_viewers(const mt_admin_t *a)
{
    return a && a->nviewers > 0;
}

/* ---- routes ----------------------------------------------------------- */

/* Readiness for probes, which send no token and may name any Host: the
 * reason (member names and errors) only to those who could read
 * /api/upstream anyway. */
static void serve_readyz(struct mt_admin *a, h2o_req_t *req)
{
    char body[640], why[512] = "shutting down";
    bool said = !a->cfg->admin_token && host_allowed(a, req);
    int n;

    if (a->monitor && mt_monitor_ready(a->monitor)) {
        respond(req, 200, "OK", "text/plain; charset=utf-8", "ready\n", 6);
        return;
    }
    if (!said) {
        ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
        said = i >= 0 && mt_admin_token_ok(a->cfg->admin_token, req->headers.entries[i].value.base,
                                           req->headers.entries[i].value.len);
    }
    if (a->monitor)
        mt_monitor_not_ready_reason(a->monitor, why, sizeof(why));
    n = snprintf(body, sizeof(body), said ? "not ready: %s\n" : "not ready\n", why);
    respond(req, 503, "Service Unavailable", "text/plain; charset=utf-8", body,
            (size_t)n < sizeof(body) ? (size_t)n : sizeof(body) - 1);
}

#define MT_ADMIN_FILTER_MAX 256 /* longest filter substring taken */

/* GET /api/windows?limit=N&summary=1&ns=&shape=&app=&q= */
static void serve_windows(struct mt_admin *a, h2o_req_t *req)
{
    char ns[MT_ADMIN_FILTER_MAX], shape[MT_ADMIN_FILTER_MAX], app[MT_ADMIN_FILTER_MAX],
        text[MT_ADMIN_FILTER_MAX];
    mt_window_filter_t filter = {ns, shape, app, text};
    size_t limit;

    if (!query_limit(req, 20, &limit)) {
        respond_error(req, 400, "Bad Request", "limit must be a whole number from 1 to 100000");
        return;
    }
    ns[0] = shape[0] = app[0] = text[0] = '\0';
    query_param(req, "ns", ns, sizeof(ns));
    query_param(req, "shape", shape, sizeof(shape));
    query_param(req, "app", app, sizeof(app));
    query_param(req, "q", text, sizeof(text));
    respond_owned(req, "application/json",
                  mt_stats_windows_json(a->stats, limit, query_flag(req, "summary"), &filter));
}

/* GET /api/windows/ID[?segment=N]: 404 for a window that is not kept (or a
 * segment it does not have). */
static void serve_window(struct mt_admin *a, h2o_req_t *req, const char *id_text)
{
    char seg_text[24], msg[96];
    uint64_t id, segment = 0;
    bool found;

    if (!parse_count(id_text, INT64_MAX, &id)) {
        respond_error(req, 404, "Not Found", "no such route (a window id is a whole number)");
        return;
    }
    if (query_param(req, "segment", seg_text, sizeof(seg_text)) &&
        !parse_count(seg_text, UINT32_MAX, &segment)) {
        respond_error(req, 400, "Bad Request", "segment must be a whole number from 1");
        return;
    }
    char *json = mt_stats_window_json(a->stats, id, (uint32_t)segment, &found);
    if (json) {
        respond_owned(req, "application/json", json);
        return;
    }
    if (found)
        snprintf(msg, sizeof(msg), "window %llu has no segment %llu", (unsigned long long)id,
                 (unsigned long long)segment);
    else
        snprintf(msg, sizeof(msg),
                 "no window %llu: not seen, or no longer kept (see --keep-windows)",
                 (unsigned long long)id);
    respond_error(req, 404, "Not Found", msg);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    struct mt_admin *a = ((mt_admin_handler_t *)self)->admin;
    uint64_t now = uv_hrtime();
    size_t limit, head = req->method.len + req->path.len;
    char rest[32];

    for (size_t i = 0; i < req->headers.size; i++)
        head += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4;
    /* a connection past the cap answers one health request, then closes */
    bool probe = !h2o_linklist_is_empty(&a->probes) && sock_for(&a->probes, req);
    if (probe)
        req->http1_is_persistent = 0;
    if (head > MT_ADMIN_MAX_HEAD) {
        respond_error(req, 431, "Request Header Fields Too Large", "request head over 16 KiB");
        return 0;
    }
    if (probe && !health_path(req)) {
        respond_error(req, 503, "Service Unavailable",
                      "admin connection limit reached: only /healthz and /readyz are answered");
        return 0;
    }
    if (path_is(req, "/healthz")) {
        respond(req, 200, "OK", "text/plain; charset=utf-8", "ok\n", 3);
        return 0;
    }
    if (path_is(req, "/readyz")) {
        serve_readyz(a, req);
        return 0;
    }
    if (!a->cfg->admin_token && !host_allowed(a, req)) {
        mt_debug("admin: refused a request for a foreign Host: %.*s",
                 (int)(req->input.authority.len < 256 ? req->input.authority.len : 256),
                 req->input.authority.base);
        respond_error(req, 403, "Forbidden",
                      "Host is not a loopback name or the --admin host (set --admin-token to "
                      "serve other names)");
        return 0;
    }
    /* The console page holds no data (it fetches everything with the token
     * it is given), and a browser cannot send a bearer header when it opens
     * a page: so it is served without one. */
    if (path_is(req, "/") && (method_is(req, "GET") || method_is(req, "HEAD"))) {
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("content-security-policy"),
                              0, NULL, a->csp, strlen(a->csp));
        respond(req, 200, "OK", "text/html; charset=utf-8", (const char *)mt_web_page,
                mt_web_page_len);
        return 0;
    }
    /* browsers ask for it beside the HTML report: nothing, rather than a 404 */
    if (path_is(req, "/favicon.ico") && (method_is(req, "GET") || method_is(req, "HEAD"))) {
        respond(req, 204, "No Content", "image/x-icon", "", 0);
        return 0;
    }
    if (a->cfg->admin_token) {
        ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
        if (i < 0 || !mt_admin_token_ok(a->cfg->admin_token, req->headers.entries[i].value.base,
                                        req->headers.entries[i].value.len)) {
            respond_error(req, 401, "Unauthorized", "missing or wrong bearer token");
            return 0;
        }
    }
    if (path_is(req, "/api/reset")) {
        if (!method_is(req, "POST")) {
            respond_error(req, 405, "Method Not Allowed", "use POST");
            return 0;
        }
        if (!post_allowed(req)) {
            respond_error(req, 403, "Forbidden",
                          "a POST needs the header X-Mongotap: 1 or Content-Type: "
                          "application/json (a cross-site request can send neither)");
            return 0;
        }
        mt_stats_reset(a->stats);
        respond(req, 200, "OK", "application/json", "{\"reset\": true}", 15);
        return 0;
    }
    if (!method_is(req, "GET") && !method_is(req, "HEAD")) {
        respond_error(req, 405, "Method Not Allowed", "use GET");
        return 0;
    }
    if (path_is(req, "/metrics")) {
        respond_owned(req, "text/plain; version=0.0.4; charset=utf-8",
                      mt_stats_metrics(a->stats, now));
    } else if (path_is(req, "/api/stats")) {
        if (!query_limit(req, 100, &limit))
            respond_error(req, 400, "Bad Request", "limit must be a whole number from 1 to 100000");
        else
            respond_owned(req, "application/json", mt_stats_json(a->stats, now, limit));
    } else if (path_is(req, "/api/upstream")) {
        respond_owned(req, "application/json",
                      a->monitor ? mt_monitor_json(a->monitor) : bson_strdup("{\"ready\": false}"));
    } else if (path_is(req, "/api/connections")) {
        respond_owned(req, "application/json", mt_stats_connections_json(a->stats, now));
    } else if (path_is(req, "/api/windows")) {
        serve_windows(a, req);
    } else if (path_under(req, "/api/windows/", rest, sizeof(rest))) {
        serve_window(a, req, rest);
    } else if (path_is(req, "/api/findings")) {
        respond_owned(req, "application/json", mt_stats_findings_json(a->stats));
    } else if (path_is(req, "/api/report")) {
        char fmt[16] = "json";
        int f;
        query_param(req, "format", fmt, sizeof(fmt));
        f = mt_report_format_parse(fmt);
        if (f < 0) {
            respond_error(req, 400, "Bad Request", "format must be json, markdown or html");
            return 0;
        }
        respond_owned(req,
                      f == MT_REPORT_HTML       ? "text/html; charset=utf-8"
                      : f == MT_REPORT_MARKDOWN ? "text/markdown; charset=utf-8"
                                                : "application/json",
                      mt_stats_report(a->stats, (mt_report_format_t)f, now));
    } else if (path_is(req, "/events")) {
        serve_events(a, req);
    } else {
        respond_error(req, 404, "Not Found", "no such route");
    }
    return 0;
}

/* ---- sockets ---------------------------------------------------------- */

static void sock_closed_cb(uv_handle_t *h)
{
    mt_admin_sock_t *s = (mt_admin_sock_t *)h;
    struct mt_admin *a = s->admin;

    h2o_linklist_unlink(&s->link);
    if (s->probe) {
        a->nprobes--;
        if (!s->evicted)
            a->nprobes_live--;
    } else {
        a->nsocks--;
    }
    free(s);
}

/* Past the cap: a place in the probe reserve, the oldest probe connection
 * giving way when the reserve is full. False when even evicted ones are
 * still closing in numbers (a flood): then the connection is refused. */
static bool probe_admit(struct mt_admin *a)
{
    uint64_t now = uv_now(a->loop);

    if (a->nprobes >= 2 * MT_ADMIN_PROBE_RESERVE)
        return false;
    if (a->nprobes_live >= MT_ADMIN_PROBE_RESERVE) {
        for (h2o_linklist_t *n = a->probes.next; n != &a->probes; n = n->next) {
            if (!sock_of(n)->evicted) {
                probe_evict(sock_of(n));
                break;
            }
        }
    }
    if (!a->last_full_log || now - a->last_full_log >= 1000) {
        mt_warn("admin: %d connections open: new ones are answered for /healthz and /readyz "
                "only",
                MT_ADMIN_MAX_CONNECTIONS);
        a->last_full_log = now;
    }
    return true;
}

static void on_admin_connection(uv_stream_t *server, int status)
{
    struct mt_admin *a = server->data;
    mt_admin_sock_t *s;

    if (status < 0) {
        mt_warn("admin: accept failed: %s", uv_strerror(status));
        return;
    }
    s = calloc(1, sizeof(*s));
    if (!s)
        return;
    s->admin = a;
    uv_tcp_init(a->loop, &s->tcp);
    /* h2o buffers each connection's request: bound how many there are */
    s->probe = a->nsocks >= MT_ADMIN_MAX_CONNECTIONS;
    if (uv_accept(server, (uv_stream_t *)&s->tcp) != 0 || (s->probe && !probe_admit(a))) {
        uv_close((uv_handle_t *)&s->tcp, (uv_close_cb)free);
        return;
    }
    s->accepted_ms = uv_now(a->loop);
    if (s->probe) {
        a->nprobes++;
        a->nprobes_live++;
    } else {
        a->nsocks++;
    }
    h2o_linklist_insert(s->probe ? &a->probes : &a->socks, &s->link);
    s->h2o = h2o_uv_socket_create((uv_stream_t *)&s->tcp, sock_closed_cb);
    h2o_accept(&a->accept_ctx, s->h2o);
}

/* The console page's policy: its own inline script (by hash), inline
 * styles, requests to this origin only, nothing from anywhere else, never
 * framed, no form posts. */
static void build_csp(struct mt_admin *a)
{
    const char *page = (const char *)mt_web_page, *end = page + mt_web_page_len, *p = page;
    size_t used = (size_t)snprintf(a->csp, sizeof(a->csp), "default-src 'none'; script-src");
    bool any = false;

    while ((p = memmem(p, (size_t)(end - p), "<script>", 8)) != NULL) {
        const char *body = p + 8, *close = memmem(body, (size_t)(end - body), "</script>", 9);
        unsigned char md[EVP_MAX_MD_SIZE], b64[64];
        unsigned int mdlen = 0;
        if (!close || !EVP_Digest(body, (size_t)(close - body), md, &mdlen, EVP_sha256(), NULL))
            break;
        EVP_EncodeBlock(b64, md, (int)mdlen);
        used += (size_t)snprintf(a->csp + used, used < sizeof(a->csp) ? sizeof(a->csp) - used : 0,
                                 " 'sha256-%s'", b64);
        any = true;
        p = close + 9;
    }
    snprintf(a->csp + used, used < sizeof(a->csp) ? sizeof(a->csp) - used : 0,
             "%s; style-src 'unsafe-inline'; img-src data:; connect-src 'self'; base-uri 'none'; "
             "form-action 'none'; frame-ancestors 'none'",
             any ? "" : " 'none'");
}

mt_admin_t *mt_admin_new(uv_loop_t *loop, const mt_cli_config_t *cfg, mt_stats_t *stats)
{
    struct mt_admin *a = calloc(1, sizeof(*a));
    h2o_hostconf_t *host;
    h2o_pathconf_t *path;
    mt_admin_handler_t *handler;

    if (!a)
        return NULL;
    a->loop = loop;
    a->cfg = cfg;
    a->stats = stats;
    h2o_linklist_init_anchor(&a->socks);
    h2o_linklist_init_anchor(&a->probes);
    h2o_linklist_init_anchor(&a->viewers);
    h2o_config_init(&a->config);
    a->config.max_request_entity_size = MT_ADMIN_MAX_BODY;
    a->config.http1.req_timeout = MT_ADMIN_IDLE_TIMEOUT_MS;
    a->config.server_name = h2o_iovec_init(H2O_STRLIT("mongotap"));
    host = h2o_config_register_host(&a->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    path = h2o_config_register_path(host, "/", 0);
    handler = (mt_admin_handler_t *)h2o_create_handler(path, sizeof(*handler));
    handler->super.on_req = on_req;
    handler->admin = a;
    h2o_context_init(&a->ctx, loop, &a->config);
    a->accept_ctx.ctx = &a->ctx;
    a->accept_ctx.hosts = a->config.hosts;
    build_csp(a);
    return a;
}

int mt_admin_listen(mt_admin_t *a, char *bound, size_t cap)
{
    struct sockaddr_storage ss;
    int n = sizeof(ss), rc;
    mt_hostport_t real = a->cfg->admin;
    char desc[MT_CLI_HOST_MAX + 8];

    if (!mt_cli_is_loopback(a->cfg->admin.host) && !a->cfg->admin_token)
        mt_warn("admin endpoint on %s is not loopback and has no --admin-token: anyone who can "
                "reach it can read your query statistics",
                a->cfg->admin.host);
    rc = uv_ip4_addr(a->cfg->admin.host, a->cfg->admin.port, (struct sockaddr_in *)&ss);
    if (rc != 0)
        rc = uv_ip6_addr(a->cfg->admin.host, a->cfg->admin.port, (struct sockaddr_in6 *)&ss);
    if (rc != 0 && strcasecmp(a->cfg->admin.host, "localhost") == 0)
        rc = uv_ip4_addr("127.0.0.1", a->cfg->admin.port, (struct sockaddr_in *)&ss);
    if (rc == 0) {
        uv_tcp_init(a->loop, &a->listener);
        a->listener.data = a;
        a->listening = true;
        rc = uv_tcp_bind(&a->listener, (const struct sockaddr *)&ss, 0);
    }
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&a->listener, 128, on_admin_connection);
    if (rc != 0) {
        /* a name that is not an address fails before the bind: say so; a
         * bind error (a busy port) is about the port, not the name */
        mt_cli_format_hostport(&a->cfg->admin, desc, sizeof(desc));
        if (!a->listening)
            mt_error("cannot listen for admin on %s: --admin takes an IP address (or off)", desc);
        else
            mt_error("cannot listen for admin on %s: %s (choose another --admin HOST:PORT, or "
                     "--admin off)",
                     desc, uv_strerror(rc));
        return rc;
    }
    if (uv_tcp_getsockname(&a->listener, (struct sockaddr *)&ss, &n) == 0)
        real.port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    mt_cli_format_hostport(&real, bound, cap);
    uv_timer_init(a->loop, &a->tick);
    a->tick.data = a;
    a->tick_open = true;
    uv_timer_start(&a->tick, tick_cb, 1000, 1000);
    return 0;
}

void mt_admin_close(mt_admin_t *a)
{
    if (!a)
        return;
    if (a->listening) {
        uv_close((uv_handle_t *)&a->listener, NULL);
        a->listening = false;
    }
    if (a->tick_open) {
        uv_close((uv_handle_t *)&a->tick, NULL);
        a->tick_open = false;
    }
    for (h2o_linklist_t *n = a->viewers.next; n != &a->viewers; n = n->next)
        viewer_drop(viewer_of(n), "shutting down");
}
