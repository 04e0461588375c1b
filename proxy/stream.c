/*
 * stream: the socket is read with recv(2) and written with send(2) on the
 * libuv handle, everything else is libuv's. A TLS stream reads
 * ciphertext into a chunk of its pool, feeds it to OpenSSL and decrypts into
 * the owner's buffers; writes encrypt from the owner's buffers into chunks
 * that are written in order, each chunk owned by its uv_write until the
 * callback. An owner write request completes with the chunk that carries
 * its last byte, so owners see the same backpressure as in plaintext.
 */
#include "stream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef struct mt_chunk {
    uv_write_t req;
    mt_stream_write_t *done; /* the owner's request that ends in this chunk */
    size_t len, off;
    struct mt_chunk *next_free;
    uint8_t data[MT_STREAM_CHUNK];
} mt_chunk_t;

struct mt_stream_pool {
    mt_chunk_t *free;
    size_t nfree;
};

#define MT_STREAM_POOL_KEEP 64

mt_stream_pool_t *mt_stream_pool_new(void)
{
    return calloc(1, sizeof(mt_stream_pool_t));
}

void mt_stream_pool_free(mt_stream_pool_t *pool)
{
    if (!pool)
        return;
    while (pool->free) {
        mt_chunk_t *c = pool->free;
        pool->free = c->next_free;
        free(c);
    }
    free(pool);
}

static mt_chunk_t *chunk_get(mt_stream_pool_t *pool)
{
    mt_chunk_t *c = pool->free;

    if (c) {
        pool->free = c->next_free;
        pool->nfree--;
    } else if (!(c = malloc(sizeof(*c)))) {
        return NULL;
    }
    c->done = NULL;
    c->len = c->off = 0;
    return c;
}

static void chunk_put(mt_stream_pool_t *pool, mt_chunk_t *c)
{
    if (pool->nfree < MT_STREAM_POOL_KEEP) {
        c->next_free = pool->free;
        pool->free = c;
        pool->nfree++;
    } else {
        free(c);
    }
}

int mt_stream_init(uv_loop_t *loop, mt_stream_t *s, mt_stream_pool_t *pool)
{
    memset(s, 0, sizeof(*s));
    s->pool = pool;
    s->tcp.data = s;
    return uv_tcp_init(loop, &s->tcp);
}

bool mt_stream_is_tls(const mt_stream_t *s)
{
    return s->tls != NULL;
}

const char *mt_stream_tls_reason(const mt_stream_t *s)
{
    return s->tls ? mt_tls_reason(s->tls) : "not a TLS stream";
}

/* ---- the socket: recv and send on libuv's handle ----------------------- */

/* uv_try_write with sendmsg(2) instead of write(2): the same bytes and the
 * same rule (nothing while libuv still has writes queued, so order holds),
 * but the socket call skips the file layer's checks and notifications that
 * write(2) goes through, measured at 1-2% of a small request's CPU time.
 * What it does not take is queued with uv_write by the caller, as before. */
static int socket_try_write(mt_stream_t *s, const uv_buf_t bufs[], unsigned nbufs)
{
    uv_os_fd_t fd;
    ssize_t n;
    int rc;

    if (uv_stream_get_write_queue_size((uv_stream_t *)&s->tcp) > 0)
        return UV_EAGAIN;
    rc = uv_fileno((uv_handle_t *)&s->tcp, &fd);
    if (rc < 0)
        return rc;
    /* libuv documents uv_buf_t as layout-compatible with struct iovec on Unix */
    struct msghdr msg = {.msg_iov = (struct iovec *)bufs, .msg_iovlen = nbufs};
    do
        n = nbufs == 1 ? send(fd, bufs[0].base, bufs[0].len, MSG_NOSIGNAL | MSG_DONTWAIT)
                       : sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS
                   ? UV_EAGAIN
                   : uv_translate_sys_error(errno);
    return (int)n;
}

/* Reading the socket with recv(2), for the same reason. libuv reads with
 * read(2), but documents that an alloc callback giving no buffer makes it
 * call the read callback with UV_ENOBUFS and go on watching the socket: with
 * no buffer ever given, that callback says "readable" and the stream reads
 * itself, as libuv's own read loop does (up to 32 reads while each fills its
 * buffer; nothing read is 0; at the end or an error, reading stops first). */
#define SOCKET_READS_PER_WAKEUP 32

static void no_buffer_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(NULL, 0);
}

static void socket_read_stop(mt_stream_t *s)
{
    if (s->sock_reading)
        uv_read_stop((uv_stream_t *)&s->tcp);
    s->sock_reading = false;
}

static void socket_ready_cb(uv_stream_t *h, ssize_t status, const uv_buf_t *none)
{
    mt_stream_t *s = h->data;
    uv_os_fd_t fd;
    int rc;

    (void)none;
    rc = status == UV_ENOBUFS ? uv_fileno((uv_handle_t *)h, &fd) : (int)status;
    if (rc < 0) { /* libuv did not ask us to read (it never reads itself) */
        uv_buf_t b = uv_buf_init(NULL, 0);
        socket_read_stop(s);
        s->sock_read(h, rc, &b);
        return;
    }
    for (int i = 0; i < SOCKET_READS_PER_WAKEUP && s->sock_reading && !s->closing; i++) {
        uv_buf_t b = uv_buf_init(NULL, 0);
        ssize_t n;

        s->sock_alloc((uv_handle_t *)h, 64u << 10, &b);
        if (!b.base || b.len == 0) {
            s->sock_read(h, UV_ENOBUFS, &b);
            return;
        }
        do
            n = recv(fd, b.base, b.len, MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            s->sock_read(h, 0, &b);
            return;
        }
        if (n <= 0) {
            ssize_t end = n == 0 ? UV_EOF : uv_translate_sys_error(errno);
            socket_read_stop(s);
            s->sock_read(h, end, &b);
            return;
        }
        s->sock_read(h, n, &b);
        if ((size_t)n < b.len)
            return;
    }
}

static int socket_read_start(mt_stream_t *s, uv_alloc_cb alloc, uv_read_cb read)
{
    int rc;

    s->sock_alloc = alloc;
    s->sock_read = read;
    if (s->sock_reading)
        return 0;
    rc = uv_read_start((uv_stream_t *)&s->tcp, no_buffer_cb, socket_ready_cb);
    s->sock_reading = rc == 0;
    return rc;
}

static void plain_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    mt_stream_t *s = h->data;

    (void)suggested;
    s->alloc_cb(s, buf);
}

static void plain_read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
    mt_stream_t *s = h->data;

    s->read_cb(s, nread, buf);
}

static void plain_write_cb(uv_write_t *req, int status)
{
    mt_stream_write_t *w = (mt_stream_write_t *)req;

    w->cb(w, status);
}

/* ---- TLS: ciphertext out ---------------------------------------------- */

static void chunk_written_cb(uv_write_t *req, int status)
{
    mt_chunk_t *c = (mt_chunk_t *)req;
    mt_stream_t *s = req->handle->data;
    mt_stream_write_t *done = c->done;

    s->cipher_queued -= c->len - c->off;
    chunk_put(s->pool, c);
    if (done)
        done->cb(done, status);
}

/* Sends the ciphertext OpenSSL has written. try_first: write at once what
 * the socket takes when nothing is queued before it. done, if any,
 * completes with the last chunk (an empty one when there is nothing). */
static int flush_out(mt_stream_t *s, mt_stream_write_t *done, bool try_first)
{
    mt_chunk_t *last = NULL;
    uv_buf_t b;
    int rc;

    while (mt_tls_pending_out(s->tls) > 0 || (done && !last)) {
        mt_chunk_t *c = chunk_get(s->pool);
        if (!c)
            return UV_ENOMEM;
        c->len = mt_tls_take_out(s->tls, c->data, sizeof(c->data));
        if (try_first && s->cipher_queued == 0 && c->len > 0) {
            b = uv_buf_init((char *)c->data, (unsigned)c->len);
            rc = socket_try_write(s, &b, 1);
            if (rc == (int)c->len) {
                chunk_put(s->pool, c);
                continue;
            }
            if (rc < 0 && rc != UV_EAGAIN) {
                chunk_put(s->pool, c);
                return rc;
            }
            c->off = rc > 0 ? (size_t)rc : 0;
        }
        b = uv_buf_init((char *)c->data + c->off, (unsigned)(c->len - c->off));
        rc = uv_write(&c->req, (uv_stream_t *)&s->tcp, &b, 1, chunk_written_cb);
        if (rc < 0) {
            chunk_put(s->pool, c);
            return rc;
        }
        s->cipher_queued += c->len - c->off;
        last = c;
    }
    if (done)
        last->done = done;
    return 0;
}

/* ---- TLS: ciphertext in, plaintext to the owner ----------------------- */

static void chunk_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    mt_stream_t *s = h->data;
    mt_chunk_t *c = chunk_get(s->pool);

    (void)suggested;
    *buf = c ? uv_buf_init((char *)c->data, sizeof(c->data)) : uv_buf_init(NULL, 0);
}

static void tls_read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf);

static void tcp_read_start(mt_stream_t *s)
{
    int rc;

    if (s->sock_reading || s->pending_error || s->ended || s->closing)
        return;
    rc = socket_read_start(s, chunk_alloc_cb, tls_read_cb);
    if (rc < 0)
        s->pending_error = rc;
}

/* Decrypts into owner buffers, each filled with as many records as fit,
 * while the owner reads; then the end or error that came after them. */
static void deliver(mt_stream_t *s)
{
    while (s->reading && !s->closing && !s->tls_done && mt_tls_has_input(s->tls)) {
        mt_tls_status_t st = MT_TLS_OK;
        size_t got = 0, n;
        uv_buf_t b;
        int rc;

        s->alloc_cb(s, &b);
        if (!b.base || b.len == 0) {
            s->read_cb(s, UV_ENOBUFS, &b);
            return;
        }
        while (got < b.len &&
               (st = mt_tls_read(s->tls, (uint8_t *)b.base + got, b.len - got, &n)) == MT_TLS_OK)
            got += n;
        /* reading may have produced records for the peer (key updates) */
        rc = mt_tls_pending_out(s->tls) ? flush_out(s, NULL, true) : 0;
        if (st == MT_TLS_EOF || st == MT_TLS_ERROR || rc < 0) {
            s->tls_done = true;
            socket_read_stop(s);
            s->pending_error = rc < 0 ? rc : st == MT_TLS_EOF ? UV_EOF : UV_EPROTO;
        }
        s->read_cb(s, (ssize_t)got, &b); /* 0: only part of a record came */
        if (st != MT_TLS_OK)
            break;
    }
    if (s->reading && !s->closing && s->pending_error && !s->ended &&
        (s->tls_done || !mt_tls_has_input(s->tls))) {
        uv_buf_t b = uv_buf_init(NULL, 0);
        s->ended = true;
        s->read_cb(s, s->pending_error, &b);
    }
}

static void handshake_finish(mt_stream_t *s, int status)
{
    mt_stream_handshake_cb cb = s->handshake_cb;

    s->handshaking = false;
    s->handshake_cb = NULL;
    if (status < 0 || !s->reading)
        socket_read_stop(s);
    if (cb)
        cb(s, status);
    /* records that came with the last handshake flight */
    if (status == 0 && s->reading && !s->closing)
        deliver(s);
}

static void handshake_step(mt_stream_t *s)
{
    mt_tls_status_t st = mt_tls_handshake(s->tls);
    int rc = flush_out(s, NULL, true); /* our flight, or the alert explaining a failure */

    if (st == MT_TLS_ERROR || st == MT_TLS_EOF) {
        handshake_finish(s, UV_EPROTO);
    } else if (rc < 0) {
        handshake_finish(s, rc);
    } else if (st == MT_TLS_OK) {
        handshake_finish(s, 0);
    }
}

static void tls_read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
    mt_stream_t *s = h->data;

    if (nread > 0)
        mt_tls_feed(s->tls, (const uint8_t *)buf->base, (size_t)nread);
    if (buf->base)
        chunk_put(s->pool, (mt_chunk_t *)(buf->base - offsetof(mt_chunk_t, data)));
    if (nread == 0 || s->closing)
        return;
    if (nread < 0) {
        socket_read_stop(s);
        s->pending_error = nread == UV_ENOBUFS ? UV_ENOMEM : (int)nread;
        if (s->handshaking) {
            if (nread == UV_EOF)
                mt_tls_peer_closed(s->tls);
            handshake_finish(s, nread == UV_EOF ? UV_EPROTO : (int)nread);
            return;
        }
        deliver(s);
        return;
    }
    if (s->handshaking)
        handshake_step(s);
    else
        deliver(s);
}

static void kick_cb(uv_timer_t *t)
{
    deliver(t->data);
}

int mt_stream_start_tls(mt_stream_t *s, mt_tls_t *tls, mt_stream_handshake_cb cb)
{
    int rc;

    if (!s->pool)
        return UV_EINVAL;
    s->tls = tls;
    s->handshake_cb = cb;
    s->handshaking = true;
    /* allocated for TLS streams only: plaintext sessions stay small */
    s->kick = malloc(sizeof(*s->kick));
    if (!s->kick)
        return UV_ENOMEM;
    rc = uv_timer_init(s->tcp.loop, s->kick);
    if (rc < 0) {
        free(s->kick);
        s->kick = NULL;
        return rc;
    }
    s->kick->data = s;
    tcp_read_start(s);
    if (s->pending_error)
        return s->pending_error;
    /* the client speaks first; a server waits for the ClientHello */
    if (mt_tls_handshake(tls) == MT_TLS_ERROR)
        return UV_EPROTO;
    return flush_out(s, NULL, true);
}

/* ---- the owner's calls ------------------------------------------------ */

int mt_stream_read_start(mt_stream_t *s, mt_stream_alloc_cb alloc_cb, mt_stream_read_cb read_cb)
{
    s->alloc_cb = alloc_cb;
    s->read_cb = read_cb;
    if (!s->tls)
        return socket_read_start(s, plain_alloc_cb, plain_read_cb);
    s->reading = true;
    if (s->handshaking)
        return 0; /* already reading for the handshake; data follows it */
    tcp_read_start(s);
    /* plaintext left from before a pause is handed over from the loop, as
     * libuv would, never from inside this call */
    if (mt_tls_has_input(s->tls) || s->pending_error)
        uv_timer_start(s->kick, kick_cb, 0, 0);
    return 0;
}

void mt_stream_read_stop(mt_stream_t *s)
{
    if (!s->tls) {
        socket_read_stop(s);
        return;
    }
    s->reading = false;
    if (!s->handshaking)
        socket_read_stop(s);
    uv_timer_stop(s->kick);
}

static int encrypt(mt_stream_t *s, const uv_buf_t bufs[], unsigned nbufs, size_t *total)
{
    *total = 0;
    if (s->handshaking || !mt_tls_established(s->tls))
        return UV_ENOTCONN;
    for (unsigned i = 0; i < nbufs; i++) {
        if (mt_tls_write(s->tls, (const uint8_t *)bufs[i].base, bufs[i].len) != MT_TLS_OK)
            return UV_EPROTO;
        *total += bufs[i].len;
    }
    return 0;
}

int mt_stream_try_write(mt_stream_t *s, const uv_buf_t bufs[], unsigned nbufs)
{
    size_t total;
    int rc;

    if (!s->tls)
        return socket_try_write(s, bufs, nbufs);
    if (s->cipher_queued > 0)
        return UV_EAGAIN;
    rc = encrypt(s, bufs, nbufs, &total);
    if (rc == 0)
        rc = flush_out(s, NULL, true);
    return rc < 0 ? rc : (int)total;
}

int mt_stream_write(mt_stream_write_t *req, mt_stream_t *s, const uv_buf_t bufs[], unsigned nbufs,
                    mt_stream_write_cb cb)
{
    size_t total;
    int rc;

    req->cb = cb;
    if (!s->tls)
        return uv_write(&req->req, (uv_stream_t *)&s->tcp, bufs, nbufs, plain_write_cb);
    rc = encrypt(s, bufs, nbufs, &total);
    return rc < 0 ? rc : flush_out(s, req, false);
}

int mt_stream_shutdown(uv_shutdown_t *req, mt_stream_t *s, uv_shutdown_cb cb)
{
    if (s->tls && mt_tls_established(s->tls)) {
        int rc;
        mt_tls_shutdown(s->tls);
        rc = flush_out(s, NULL, false);
        if (rc < 0)
            return rc;
    }
    return uv_shutdown(req, (uv_stream_t *)&s->tcp, cb);
}

static void handle_closed_cb(uv_handle_t *h)
{
    mt_stream_t *s = h->data;

    if (--s->handles > 0)
        return;
    mt_tls_free(s->tls);
    s->tls = NULL;
    free(s->kick);
    s->kick = NULL;
    if (s->close_cb)
        s->close_cb(s);
}

void mt_stream_close(mt_stream_t *s, mt_stream_close_cb cb)
{
    if (s->closing)
        return;
    s->closing = true;
    /* as libuv does with requests under way: a handshake ends, cancelled */
    if (s->handshaking)
        handshake_finish(s, UV_ECANCELED);
    s->close_cb = cb;
    s->handles = 1 + (s->kick ? 1 : 0);
    uv_close((uv_handle_t *)&s->tcp, handle_closed_cb);
    if (s->kick)
        uv_close((uv_handle_t *)s->kick, handle_closed_cb);
}
