/*
 * test_tls: the TLS engine and the stream over it on a real libuv loop: a
 * client and a server stream on loopback, with certificates made for each
 * test by tests/fixtures/make_certs.sh. Handshakes, the reason each refusal
 * gives, a megabyte each way, pauses with data held in OpenSSL, half-close.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "stream.h"
#include "tls.h"

static char certs[256];
static uv_loop_t loop;
static mt_stream_pool_t *pool;

static void make_certs(void)
{
    char cmd[512];

    snprintf(certs, sizeof(certs), "/tmp/mt-test-tls-XXXXXX");
    cr_assert_not_null(mkdtemp(certs));
    snprintf(cmd, sizeof(cmd), "%s/make_certs.sh %s >/dev/null", MT_FIXTURES_DIR, certs);
    cr_assert_eq(system(cmd), 0, "make_certs.sh failed");
    cr_assert_eq(uv_loop_init(&loop), 0);
    pool = mt_stream_pool_new();
}

static void remove_certs(void)
{
    char cmd[512];

    snprintf(cmd, sizeof(cmd), "rm -rf %s", certs);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(tls, .init = make_certs, .fini = remove_certs);

static const char *cert_path(const char *name, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s", certs, name);
    return buf;
}

/* ---- two endpoints -------------------------------------------------------- */

typedef struct {
    mt_stream_t stream;
    int handshake_status;
    bool handshake_done;
    char reason[MT_TLS_REASON_MAX];
    uint8_t *got;
    size_t got_len, got_cap;
    bool eof;
    int read_error;
    bool echo;          /* write back what arrives */
    size_t pause_after; /* stop reading once this much came, resume from a timer */
    bool paused_once;
    uv_timer_t resume;
    size_t expect; /* stop the loop when this much came */
    int closed;
} end_t;

static end_t srv, cli;
static uv_tcp_t listener;
static uv_connect_t connect_req;
static mt_tls_ctx_t *server_ctx, *client_ctx;
static const char *client_host = "localhost";
static bool plain_server; /* accept without TLS */

typedef struct {
    mt_stream_write_t w;
    uint8_t *data;
} owned_write_t;

static void owned_write_cb(mt_stream_write_t *req, int status)
{
    owned_write_t *o = (owned_write_t *)req;

    (void)status;
    free(o->data);
    free(o);
}

static void send_copy(end_t *e, const void *data, size_t len)
{
    owned_write_t *o = malloc(sizeof(*o));
    uv_buf_t b;

    o->data = malloc(len);
    memcpy(o->data, data, len);
    b = uv_buf_init((char *)o->data, (unsigned)len);
    cr_assert_eq(mt_stream_write(&o->w, &e->stream, &b, 1, owned_write_cb), 0);
}

static void alloc_cb(mt_stream_t *s, uv_buf_t *buf)
{
    (void)s;
    /* small buffers: many reads, records split across them */
    buf->base = malloc(5000);
    buf->len = 5000;
}

static void resume_cb(uv_timer_t *t)
{
    end_t *e = t->data;
    void read_cb(mt_stream_t * s, ssize_t nread, const uv_buf_t *buf);

    mt_stream_read_start(&e->stream, alloc_cb, read_cb);
}

void read_cb(mt_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    end_t *e = s->data;

    if (nread > 0 && plain_server && e == &srv) {
        /* a plaintext server answers a ClientHello with bytes of its own */
        static const char reply[] = "\x24\x00\x00\x00not a TLS record at all.....";
        send_copy(e, reply, sizeof(reply) - 1);
    }
    if (nread > 0) {
        if (e->got_len + (size_t)nread > e->got_cap) {
            e->got_cap = (e->got_len + (size_t)nread) * 2;
            e->got = realloc(e->got, e->got_cap);
        }
        memcpy(e->got + e->got_len, buf->base, (size_t)nread);
        e->got_len += (size_t)nread;
        if (e->echo)
            send_copy(e, buf->base, (size_t)nread);
        if (e->pause_after && !e->paused_once && e->got_len >= e->pause_after) {
            e->paused_once = true;
            mt_stream_read_stop(s);
            uv_timer_start(&e->resume, resume_cb, 50, 0);
        }
        if (e->expect && e->got_len >= e->expect)
            uv_stop(&loop);
    } else if (nread == UV_EOF) {
        e->eof = true;
        if (e->echo) {
            static uv_shutdown_t sreq;
            mt_stream_shutdown(&sreq, s, NULL);
        } else {
            uv_stop(&loop);
        }
    } else if (nread < 0) {
        e->read_error = (int)nread;
        snprintf(e->reason, sizeof(e->reason), "%s", mt_stream_tls_reason(s));
        uv_stop(&loop);
    }
    free(buf->base);
}

static void handshake_cb(mt_stream_t *s, int status)
{
    end_t *e = s->data;

    if (status == UV_ECANCELED)
        return; /* closed by finish() before the server's handshake was done */

    e->handshake_done = true;
    e->handshake_status = status;
    snprintf(e->reason, sizeof(e->reason), "%s", mt_stream_tls_reason(s));
    if (status == 0)
        mt_stream_read_start(s, alloc_cb, read_cb);
    if (e == &cli || status != 0)
        uv_stop(&loop);
}

static void on_connection(uv_stream_t *server, int status)
{
    cr_assert_eq(status, 0);
    cr_assert_eq(mt_stream_init(&loop, &srv.stream, pool), 0);
    srv.stream.data = &srv;
    cr_assert_eq(uv_accept(server, (uv_stream_t *)&srv.stream.tcp), 0);
    if (plain_server) {
        srv.handshake_done = true;
        mt_stream_read_start(&srv.stream, alloc_cb, read_cb);
        return;
    }
    cr_assert_eq(mt_stream_start_tls(&srv.stream, mt_tls_new(server_ctx, NULL), handshake_cb), 0);
}

static void connect_cb(uv_connect_t *req, int status)
{
    (void)req;
    cr_assert_eq(status, 0);
    cr_assert_eq(
        mt_stream_start_tls(&cli.stream, mt_tls_new(client_ctx, client_host), handshake_cb), 0);
}

static void contexts(const char *server_cert, const mt_tls_client_opts_t *copts)
{
    char err[512], cert[600], key[600], base[64];

    snprintf(base, sizeof(base), "%s", server_cert);
    snprintf(key, sizeof(key), "%s/%s.key", certs, base);
    snprintf(cert, sizeof(cert), "%s/%s.pem", certs, base);
    server_ctx = mt_tls_server_ctx_new(cert, key, err, sizeof(err));
    cr_assert_not_null(server_ctx, "%s", err);
    client_ctx = mt_tls_client_ctx_new(copts, err, sizeof(err));
    cr_assert_not_null(client_ctx, "%s", err);
}

/* Listens, connects the client, runs until the client's handshake is done. */
static void start_pair(void)
{
    struct sockaddr_in sa;
    int n = sizeof(sa);

    memset(&srv, 0, sizeof(srv));
    memset(&cli, 0, sizeof(cli));
    uv_timer_init(&loop, &srv.resume);
    srv.resume.data = &srv;
    uv_timer_init(&loop, &cli.resume);
    cli.resume.data = &cli;
    uv_tcp_init(&loop, &listener);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    cr_assert_eq(uv_tcp_bind(&listener, (struct sockaddr *)&sa, 0), 0);
    cr_assert_eq(uv_listen((uv_stream_t *)&listener, 8, on_connection), 0);
    cr_assert_eq(uv_tcp_getsockname(&listener, (struct sockaddr *)&sa, &n), 0);
    cr_assert_eq(mt_stream_init(&loop, &cli.stream, pool), 0);
    cli.stream.data = &cli;
    cr_assert_eq(uv_tcp_connect(&connect_req, &cli.stream.tcp, (struct sockaddr *)&sa, connect_cb),
                 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert(cli.handshake_done, "the client's handshake finished");
}

static void stream_closed_cb(mt_stream_t *s)
{
    ((end_t *)s->data)->closed++;
}

/* Closes everything and checks the loop is left with no handle. */
static void finish(void)
{
    mt_stream_close(&cli.stream, stream_closed_cb);
    if (srv.stream.tcp.loop)
        mt_stream_close(&srv.stream, stream_closed_cb);
    uv_close((uv_handle_t *)&listener, NULL);
    uv_close((uv_handle_t *)&srv.resume, NULL);
    uv_close((uv_handle_t *)&cli.resume, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(cli.closed, 1);
    cr_assert_eq(uv_loop_close(&loop), 0, "every handle closed");
    mt_tls_ctx_free(server_ctx);
    mt_tls_ctx_free(client_ctx);
    mt_stream_pool_free(pool);
    free(srv.got);
    free(cli.got);
}

static mt_tls_client_opts_t trusting(char *ca, size_t cap)
{
    return (mt_tls_client_opts_t){.ca_file = cert_path("ca.pem", ca, cap)};
}

/* ---- tests ------------------------------------------------------------ */

Test(tls, a_megabyte_each_way_with_pauses)
{
    char ca[300], desc[128];
    mt_tls_client_opts_t o = trusting(ca, sizeof(ca));
    size_t total = 1u << 20;
    uint8_t *data = malloc(total);
    uv_buf_t b;
    int rc;

    for (size_t i = 0; i < total; i++)
        data[i] = (uint8_t)(i * 31 + i / 251);
    contexts("server", &o);
    start_pair();
    cr_assert_eq(cli.handshake_status, 0, "%s", cli.reason);
    mt_tls_describe(cli.stream.tls, desc, sizeof(desc));
    cr_assert_not_null(strstr(desc, "TLSv1.3"), "%s", desc);
    srv.echo = true;
    /* the client pauses with records buffered in OpenSSL, then resumes */
    cli.pause_after = 100000;
    cli.expect = total;

    /* half by try_write in pieces, half by write */
    for (size_t off = 0; off < total / 2;) {
        size_t n = total / 2 - off < 70000 ? total / 2 - off : 70000;
        b = uv_buf_init((char *)data + off, (unsigned)n);
        rc = mt_stream_try_write(&cli.stream, &b, 1);
        if (rc == UV_EAGAIN) {
            send_copy(&cli, data + off, n);
            rc = (int)n;
        }
        cr_assert_eq(rc, (int)n, "TLS try_write takes all or nothing (%d)", rc);
        off += n;
    }
    send_copy(&cli, data + total / 2, total - total / 2);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(srv.handshake_status, 0, "%s", srv.reason);
    cr_assert(cli.paused_once);
    cr_assert_eq(cli.got_len, total, "echoed %zu of %zu bytes", cli.got_len, total);
    cr_assert_eq(memcmp(cli.got, data, total), 0, "echo differs");
    cr_assert_eq(memcmp(srv.got, data, total), 0, "server received something else");

    /* half-close: the server sees the end after the data, and ends too */
    {
        static uv_shutdown_t sreq;
        cr_assert_eq(mt_stream_shutdown(&sreq, &cli.stream, NULL), 0);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert(srv.eof, "the server saw close_notify");
    cr_assert(cli.eof, "the client saw the server's end");
    free(data);
    finish();
}

typedef struct {
    char server_cert[24];
    char host[32];
    int allow_certs, allow_hosts;
    char reason[80]; /* "" when the handshake must succeed */
    char server_reason[48];
} verify_case_t;

ParameterizedTestParameters(tls, verification)
{
    static verify_case_t cases[] = {
        {"server", "localhost", 0, 0, "", ""},
        {"server", "127.0.0.1", 0, 0, "", ""},
        {"server", "member2.cluster0.mongotap.test", 0, 0, "", ""},
        {"wrong-ca", "localhost", 0, 0, "unknown CA", "client rejected mongotap's certificate"},
        {"wrong-host", "localhost", 0, 0, "host name mismatch", "client refused"},
        {"wrong-host", "127.0.0.1", 0, 0, "host name mismatch", "client refused"},
        {"expired", "localhost", 0, 0,
         "certificate expired: the upstream's certificate is valid until Dec 31",
         "rejected mongotap's certificate as expired"},
        {"server", "other.mongotap.test", 0, 0, "host name mismatch", "client refused"},
        {"wrong-ca", "localhost", 1, 0, "", ""},
        {"expired", "localhost", 1, 0, "", ""},
        {"wrong-host", "localhost", 0, 1, "", ""},
        /* as in the drivers, not checking certificates skips the name check too */
        {"wrong-host", "localhost", 1, 0, "", ""},
    };
    return cr_make_param_array(verify_case_t, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(verify_case_t *c, tls, verification)
{
    char ca[300];
    mt_tls_client_opts_t o = trusting(ca, sizeof(ca));

    o.allow_invalid_certificates = c->allow_certs;
    o.allow_invalid_hostnames = c->allow_hosts;
    client_host = c->host;
    contexts(c->server_cert, &o);
    start_pair();
    if (!c->reason[0]) {
        cr_assert_eq(cli.handshake_status, 0, "%s for %s: %s", c->server_cert, c->host, cli.reason);
    } else {
        cr_assert_eq(cli.handshake_status, UV_EPROTO, "%s for %s must fail", c->server_cert,
                     c->host);
        cr_assert_not_null(strstr(cli.reason, c->reason), "reason '%s' does not say %s", cli.reason,
                           c->reason);
        /* the alert reaches the server, which names it too */
        if (!srv.handshake_done)
            uv_run(&loop, UV_RUN_DEFAULT);
        cr_assert_eq(srv.handshake_status, UV_EPROTO);
        cr_assert_not_null(strstr(srv.reason, c->server_reason), "server side: %s", srv.reason);
    }
    finish();
}

static void plain_write_cb(uv_write_t *req, int status)
{
    (void)req;
    (void)status;
}

Test(tls, plaintext_client_on_a_tls_listener)
{
    static const char hello[] = "\x3a\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\xdd\x07\x00\x00";
    char ca[300];
    mt_tls_client_opts_t o = trusting(ca, sizeof(ca));
    struct sockaddr_in sa;
    int n = sizeof(sa);
    uv_write_t w;
    uv_buf_t b = uv_buf_init((char *)hello, sizeof(hello) - 1);

    contexts("server", &o);
    memset(&srv, 0, sizeof(srv));
    memset(&cli, 0, sizeof(cli));
    uv_timer_init(&loop, &srv.resume);
    uv_timer_init(&loop, &cli.resume);
    uv_tcp_init(&loop, &listener);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_bind(&listener, (struct sockaddr *)&sa, 0);
    uv_listen((uv_stream_t *)&listener, 8, on_connection);
    uv_tcp_getsockname(&listener, (struct sockaddr *)&sa, &n);
    mt_stream_init(&loop, &cli.stream, pool);
    cli.stream.data = &cli;
    uv_tcp_connect(&connect_req, &cli.stream.tcp, (struct sockaddr *)&sa, NULL);
    cr_assert_eq(uv_write(&w, (uv_stream_t *)&cli.stream.tcp, &b, 1, plain_write_cb), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(srv.handshake_status, UV_EPROTO);
    cr_assert_not_null(strstr(srv.reason, "client does not speak TLS"), "%s", srv.reason);
    cr_assert(mt_tls_is_client_hello((const uint8_t *)"\x16\x03\x01", 3));
    cr_assert_not(mt_tls_is_client_hello((const uint8_t *)hello, sizeof(hello) - 1));
    cr_assert_not(mt_tls_is_client_hello((const uint8_t *)"\x16", 1));
    finish();
}

Test(tls, tls_client_to_a_plaintext_server)
{
    char ca[300];
    mt_tls_client_opts_t o = trusting(ca, sizeof(ca));

    contexts("server", &o);
    plain_server = true;
    start_pair();
    cr_assert_eq(cli.handshake_status, UV_EPROTO);
    cr_assert(strstr(cli.reason, "upstream closed the connection during the TLS handshake") ||
                  strstr(cli.reason, "upstream does not speak TLS"),
              "%s", cli.reason);
    plain_server = false;
    finish();
}

Test(tls, files_that_cannot_be_used_are_named)
{
    char err[512], a[300], b[300];
    mt_tls_client_opts_t o = {.ca_file = "/nonexistent/ca.pem"};

    cr_assert_null(mt_tls_client_ctx_new(&o, err, sizeof(err)));
    cr_assert_not_null(strstr(err, "tlsCAFile /nonexistent/ca.pem"), "%s", err);
    o = (mt_tls_client_opts_t){.cert_key_file = cert_path("ca.pem", a, sizeof(a))};
    cr_assert_null(mt_tls_client_ctx_new(&o, err, sizeof(err)), "a certificate without its key");
    cr_assert_not_null(strstr(err, "tlsCertificateKeyFile"), "%s", err);
    o = (mt_tls_client_opts_t){.cert_key_file = cert_path("client.pem", a, sizeof(a))};
    client_ctx = mt_tls_client_ctx_new(&o, err, sizeof(err));
    cr_assert_not_null(client_ctx, "%s", err);
    mt_tls_ctx_free(client_ctx);
    cr_assert_null(mt_tls_server_ctx_new(cert_path("server.pem", a, sizeof(a)),
                                         cert_path("client.key", b, sizeof(b)), err, sizeof(err)));
    cr_assert_not_null(strstr(err, "does not match"), "%s", err);
    cr_assert_null(mt_tls_server_ctx_new("/nonexistent.pem", b, err, sizeof(err)));
    cr_assert_not_null(strstr(err, "--tls-cert /nonexistent.pem"), "%s", err);
    mt_stream_pool_free(pool);
    uv_loop_close(&loop);
}

static int cancelled_calls;

static void cancelled_cb(mt_stream_t *s, int status)
{
    (void)s;
    cr_assert_eq(status, UV_ECANCELED);
    cancelled_calls++;
}

static void silent_connect_cb(uv_connect_t *req, int status)
{
    (void)req;
    cr_assert_eq(status, 0);
    cr_assert_eq(
        mt_stream_start_tls(&cli.stream, mt_tls_new(client_ctx, "localhost"), cancelled_cb), 0);
    uv_stop(&loop);
}

Test(tls, closing_during_the_handshake_calls_back_cancelled)
{
    char ca[300];
    mt_tls_client_opts_t o = trusting(ca, sizeof(ca));
    struct sockaddr_in sa;
    int n = sizeof(sa);

    contexts("server", &o);
    memset(&srv, 0, sizeof(srv));
    memset(&cli, 0, sizeof(cli));
    uv_timer_init(&loop, &srv.resume);
    uv_timer_init(&loop, &cli.resume);
    /* a server that accepts and never answers */
    plain_server = true;
    uv_tcp_init(&loop, &listener);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    cr_assert_eq(uv_tcp_bind(&listener, (struct sockaddr *)&sa, 0), 0);
    cr_assert_eq(uv_listen((uv_stream_t *)&listener, 8, on_connection), 0);
    uv_tcp_getsockname(&listener, (struct sockaddr *)&sa, &n);
    cr_assert_eq(mt_stream_init(&loop, &cli.stream, pool), 0);
    cli.stream.data = &cli;
    cr_assert_eq(
        uv_tcp_connect(&connect_req, &cli.stream.tcp, (struct sockaddr *)&sa, silent_connect_cb),
        0);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(cancelled_calls, 0, "no answer yet");
    mt_stream_close(&cli.stream, stream_closed_cb);
    cr_assert_eq(cancelled_calls, 1, "the handshake called back, cancelled");
    plain_server = false;
    mt_stream_close(&srv.stream, stream_closed_cb);
    uv_close((uv_handle_t *)&listener, NULL);
    uv_close((uv_handle_t *)&srv.resume, NULL);
    uv_close((uv_handle_t *)&cli.resume, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(cancelled_calls, 1, "and only once");
    cr_assert_eq(cli.closed, 1);
    cr_assert_eq(uv_loop_close(&loop), 0, "every handle closed");
    mt_tls_ctx_free(server_ctx);
    mt_tls_ctx_free(client_ctx);
    mt_stream_pool_free(pool);
}
