/*
 * httpc: URL parsing, and real GETs on a libuv loop against a canned loopback
 * server (content-length, chunked and close-delimited bodies, errors, timeouts).
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "httpc.h"

/* ---- URL parsing ---- */

/* Arrays, not pointers: Criterion hands the cases to a fresh process. */
typedef struct {
    char url[48];
    int rc;
    char host[16];
    unsigned port;
    char prefix[16];
} url_case_t;

ParameterizedTestParameters(httpc, parse_url)
{
    static url_case_t cases[] = {
        {"http://127.0.0.1:27080", 0, "127.0.0.1", 27080, ""},
        {"http://127.0.0.1:27080/", 0, "127.0.0.1", 27080, ""},
        {"http://localhost", 0, "localhost", 80, ""},
        {"127.0.0.1:9000", 0, "127.0.0.1", 9000, ""},
        {"localhost", 0, "localhost", 27080, ""},
        {"http://[::1]:8080/mongotap/", 0, "::1", 8080, "/mongotap"},
        {"HTTP://host:1/a/b?x=1#y", 0, "host", 1, "/a/b"},
        {"https://127.0.0.1:27080", -1, "", 0, ""},
        {"http://127.0.0.1:0", -1, "", 0, ""},
        {"http://127.0.0.1:65536", -1, "", 0, ""},
        {"http://127.0.0.1:12x", -1, "", 0, ""},
        {"http://:80", -1, "", 0, ""},
        {"http://[::1", -1, "", 0, ""},
        {"http://[::1]x", -1, "", 0, ""},
        {"", -1, "", 0, ""},
    };
    return cr_make_param_array(url_case_t, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(url_case_t *c, httpc, parse_url)
{
    mt_httpc_url_t u;
    char err[256] = "";
    int rc = mt_httpc_parse_url(c->url, &u, err, sizeof(err));
    cr_assert_eq(rc, c->rc, "'%s': rc %d (%s)", c->url, rc, err);
    if (rc == 0) {
        cr_assert_str_eq(u.host, c->host);
        cr_assert_eq(u.port, c->port);
        cr_assert_str_eq(u.prefix, c->prefix);
    } else {
        cr_assert(err[0] != '\0', "an error message for '%s'", c->url);
    }
}

/* ---- a canned HTTP server on the test's loop ---- */

typedef struct {
    uv_tcp_t listener;
    int port;
    const char *response; /* written once the request head is complete; NULL: never answer */
    char request[4096];   /* the last request head received */
    size_t request_len;
    int accepted;
} server_t;

typedef struct {
    uv_tcp_t tcp;
    server_t *srv;
    uv_write_t wr;
} server_conn_t;

static void conn_closed(uv_handle_t *h)
{
    free(h->data);
}

static void conn_written(uv_write_t *w, int status)
{
    server_conn_t *c = w->data;
    (void)status;
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void conn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char slab[4096];
    (void)h, (void)hint;
    buf->base = slab;
    buf->len = sizeof(slab);
}

static void conn_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    server_conn_t *c = s->data;
    server_t *srv = c->srv;
    if (n < 0) {
        uv_close((uv_handle_t *)s, conn_closed);
        return;
    }
    if ((size_t)n > sizeof(srv->request) - 1 - srv->request_len)
        n = (ssize_t)(sizeof(srv->request) - 1 - srv->request_len);
    memcpy(srv->request + srv->request_len, buf->base, (size_t)n);
    srv->request_len += (size_t)n;
    srv->request[srv->request_len] = '\0';
    if (strstr(srv->request, "\r\n\r\n") == NULL || srv->response == NULL)
        return;
    uv_read_stop(s);
    uv_buf_t out = uv_buf_init((char *)srv->response, (unsigned)strlen(srv->response));
    c->wr.data = c;
    uv_write(&c->wr, s, &out, 1, conn_written);
}

static void on_accept(uv_stream_t *l, int status)
{
    server_t *srv = l->data;
    cr_assert_eq(status, 0);
    server_conn_t *c = calloc(1, sizeof(*c));
    cr_assert_not_null(c);
    c->srv = srv;
    uv_tcp_init(l->loop, &c->tcp);
    c->tcp.data = c;
    cr_assert_eq(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
    srv->accepted++;
    srv->request_len = 0;
    uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read);
}

static void server_start(uv_loop_t *loop, server_t *srv, const char *response)
{
    struct sockaddr_in sa;
    struct sockaddr_storage bound;
    int len = sizeof(bound);
    memset(srv, 0, sizeof(*srv));
    srv->response = response;
    uv_tcp_init(loop, &srv->listener);
    srv->listener.data = srv;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    cr_assert_eq(uv_tcp_bind(&srv->listener, (struct sockaddr *)&sa, 0), 0);
    cr_assert_eq(uv_listen((uv_stream_t *)&srv->listener, 16, on_accept), 0);
    uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &len);
    srv->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

/* Closes the server's connections still open (one the server never answered). */
static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h) && h->type == UV_TCP)
        uv_close(h, conn_closed);
}

/* ---- one GET, run to completion ---- */

typedef struct {
    int calls;
    mt_httpc_result_t result;
    int status;
    char body[8192];
    size_t body_len;
    char error[256];
    mt_httpc_t *client; /* closed from inside the callback, as the subcommands do */
} got_t;

static void on_done(const mt_httpc_resp_t *resp, void *data)
{
    got_t *g = data;
    g->calls++;
    g->result = resp->result;
    g->status = resp->status;
    g->body_len = resp->body_len < sizeof(g->body) - 1 ? resp->body_len : sizeof(g->body) - 1;
    memcpy(g->body, resp->body, g->body_len);
    g->body[g->body_len] = '\0';
    snprintf(g->error, sizeof(g->error), "%s", resp->error ? resp->error : "");
    cr_assert_eq(resp->error == NULL, resp->result == MT_HTTPC_OK);
    mt_httpc_close(g->client);
}

static void run_get(const char *response, const char *url_fmt, const char *token,
                    uint64_t timeout_ms, const char *path, got_t *g, server_t *srv)
{
    uv_loop_t loop;
    char url[128], err[256];
    cr_assert_eq(uv_loop_init(&loop), 0);
    server_start(&loop, srv, response);
    snprintf(url, sizeof(url), url_fmt, srv->port);
    memset(g, 0, sizeof(*g));
    g->client = mt_httpc_new(&loop, url, token, timeout_ms, err, sizeof(err));
    cr_assert_not_null(g->client, "%s", err);
    cr_assert_eq(mt_httpc_get(g->client, path, on_done, g), 0);
    cr_assert_eq(mt_httpc_pending(g->client), 1);
    /* Runs until the callback closed the client; then the listener and leftovers go. */
    while (g->calls == 0 && uv_run(&loop, UV_RUN_ONCE) != 0)
        ;
    uv_close((uv_handle_t *)&srv->listener, NULL);
    uv_walk(&loop, close_walk, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(mt_httpc_pending(g->client), 0);
    mt_httpc_free(g->client);
    cr_assert_eq(uv_loop_close(&loop), 0, "every handle closed");
    cr_assert_eq(g->calls, 1, "callback called exactly once");
}

Test(httpc, content_length_body_and_request_head)
{
    got_t g;
    server_t srv;
    run_get("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            "17\r\n\r\n{\"uptime_s\": 1.5}",
            "http://127.0.0.1:%d/base/", "s3cret", 5000, "/api/stats?limit=5", &g, &srv);
    cr_assert_eq(g.result, MT_HTTPC_OK, "%s", g.error);
    cr_assert_eq(g.status, 200);
    cr_assert_str_eq(g.body, "{\"uptime_s\": 1.5}");
    cr_assert(strncmp(srv.request, "GET /base/api/stats?limit=5 HTTP/1.1\r\n", 38) == 0, "%s",
              srv.request);
    cr_assert_not_null(strstr(srv.request, "\r\nAuthorization: Bearer s3cret\r\n"), "%s",
                       srv.request);
    char host[64];
    snprintf(host, sizeof(host), "\r\nHost: 127.0.0.1:%d\r\n", srv.port);
    cr_assert_not_null(strstr(srv.request, host), "%s", srv.request);
}

Test(httpc, no_token_no_authorization_header)
{
    got_t g;
    server_t srv;
    run_get("HTTP/1.1 204 No Content\r\n\r\n", "http://127.0.0.1:%d", "", 5000, "/api/reset", &g,
            &srv);
    cr_assert_eq(g.result, MT_HTTPC_OK, "%s", g.error);
    cr_assert_eq(g.status, 204);
    cr_assert_eq(g.body_len, 0);
    cr_assert_null(strstr(srv.request, "Authorization"), "%s", srv.request);
}

Test(httpc, chunked_body)
{
    got_t g;
    server_t srv;
    run_get("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7\r\n, "
            "world\r\n0\r\n\r\n",
            "http://127.0.0.1:%d", NULL, 5000, "/x", &g, &srv);
    cr_assert_eq(g.result, MT_HTTPC_OK, "%s", g.error);
    cr_assert_str_eq(g.body, "hello, world");
}

Test(httpc, body_until_close)
{
    got_t g;
    server_t srv;
    run_get("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n# mongotap report\n",
            "127.0.0.1:%d", NULL, 5000, "/api/report?format=markdown", &g, &srv);
    cr_assert_eq(g.result, MT_HTTPC_OK, "%s", g.error);
    cr_assert_str_eq(g.body, "# mongotap report\n");
}

Test(httpc, error_status_is_a_response)
{
    got_t g;
    server_t srv;
    run_get("HTTP/1.1 401 Unauthorized\r\nContent-Length: 14\r\n\r\n{\"error\": \"x\"}",
            "http://localhost:%d", NULL, 5000, "/api/stats", &g, &srv);
    cr_assert_eq(g.result, MT_HTTPC_OK, "%s", g.error);
    cr_assert_eq(g.status, 401);
    cr_assert_str_eq(g.body, "{\"error\": \"x\"}");
}

Test(httpc, garbage_response_is_an_io_error)
{
    got_t g;
    server_t srv;
    run_get("SSH-2.0-OpenSSH\r\n\r\n", "http://127.0.0.1:%d", NULL, 5000, "/", &g, &srv);
    cr_assert_eq(g.result, MT_HTTPC_ERR_IO, "%s", mt_httpc_result_str(g.result));
    cr_assert(g.error[0] != '\0');
}

Test(httpc, silent_server_times_out)
{
    got_t g;
    server_t srv;
    uint64_t t0 = uv_hrtime();
    run_get(NULL, "http://127.0.0.1:%d", NULL, 200, "/events", &g, &srv);
    cr_assert_eq(g.result, MT_HTTPC_ERR_TIMEOUT, "%s (%s)", mt_httpc_result_str(g.result), g.error);
    cr_assert_eq(srv.accepted, 1);
    cr_assert_lt(uv_hrtime() - t0, 3000000000ull, "gave up within the timeout's order");
}

Test(httpc, refused_is_a_connect_error)
{
    uv_loop_t loop;
    uv_tcp_t probe;
    struct sockaddr_in sa;
    struct sockaddr_storage bound;
    int len = sizeof(bound);
    char url[64], err[256];
    got_t g = {0};

    /* A port that was just free: bind, read it, close before connecting. */
    cr_assert_eq(uv_loop_init(&loop), 0);
    uv_tcp_init(&loop, &probe);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    cr_assert_eq(uv_tcp_bind(&probe, (struct sockaddr *)&sa, 0), 0);
    uv_tcp_getsockname(&probe, (struct sockaddr *)&bound, &len);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d",
             ntohs(((struct sockaddr_in *)&bound)->sin_port));
    uv_close((uv_handle_t *)&probe, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);

    g.client = mt_httpc_new(&loop, url, NULL, 5000, err, sizeof(err));
    cr_assert_not_null(g.client, "%s", err);
    cr_assert_eq(mt_httpc_get(g.client, "/healthz", on_done, &g), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    mt_httpc_free(g.client);
    cr_assert_eq(uv_loop_close(&loop), 0);
    cr_assert_eq(g.calls, 1);
    cr_assert_eq(g.result, MT_HTTPC_ERR_CONNECT, "%s (%s)", mt_httpc_result_str(g.result), g.error);
}

static void never_called(const mt_httpc_resp_t *resp, void *data)
{
    (void)resp, (void)data;
    cr_assert_fail("a cancelled request's callback ran");
}

Test(httpc, close_cancels_pending_requests)
{
    uv_loop_t loop;
    server_t srv;
    char url[64], err[256];

    cr_assert_eq(uv_loop_init(&loop), 0);
    server_start(&loop, &srv, NULL);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", srv.port);
    mt_httpc_t *c = mt_httpc_new(&loop, url, NULL, 5000, err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    cr_assert_eq(mt_httpc_get(c, "/a", never_called, NULL), 0);
    cr_assert_eq(mt_httpc_get(c, "/b", never_called, NULL), 0);
    cr_assert_eq(mt_httpc_pending(c), 2);
    /* Let the connections get going, then give up on both. */
    while (srv.accepted < 2)
        uv_run(&loop, UV_RUN_ONCE);
    mt_httpc_close(c);
    cr_assert_eq(mt_httpc_pending(c), 0);
    cr_assert_eq(mt_httpc_get(c, "/c", never_called, NULL), -1, "a closed client takes no request");
    uv_close((uv_handle_t *)&srv.listener, NULL);
    uv_walk(&loop, close_walk, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    mt_httpc_free(c);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(httpc, rejects_bad_paths_and_tokens)
{
    uv_loop_t loop;
    char err[256];
    cr_assert_eq(uv_loop_init(&loop), 0);
    cr_assert_null(mt_httpc_new(&loop, "http://127.0.0.1:1", "a\r\nX: y", 1000, err, sizeof(err)));
    mt_httpc_t *c = mt_httpc_new(&loop, "http://127.0.0.1:1", NULL, 1000, err, sizeof(err));
    cr_assert_not_null(c);
    cr_assert_eq(mt_httpc_get(c, "no-slash", never_called, NULL), -1);
    cr_assert_eq(mt_httpc_get(c, "/a b", never_called, NULL), -1);
    cr_assert_eq(mt_httpc_get(c, "/a\r\nX: y", never_called, NULL), -1);
    cr_assert_eq(mt_httpc_pending(c), 0);
    mt_httpc_close(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    mt_httpc_free(c);
    cr_assert_eq(uv_loop_close(&loop), 0);
}
