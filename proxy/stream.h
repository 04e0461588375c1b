/*
 * stream: one TCP connection, in plaintext or in TLS, behind one API shaped
 * like libuv's streams, so that the proxy's sessions and the upstream
 * monitor treat both alike. In plaintext each call is the libuv call (reads
 * and writes with recv/send, stream.c); in
 * TLS, reads decrypt into the owner's buffers and writes encrypt straight
 * from them (tls.h), and only ciphertext lives in the stream's own buffers.
 */
#ifndef MT_STREAM_H
#define MT_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "tls.h"

typedef struct mt_stream mt_stream_t;
typedef struct mt_stream_write mt_stream_write_t;
/* Ciphertext buffers shared by the streams of one owner. */
typedef struct mt_stream_pool mt_stream_pool_t;

/* Ciphertext buffer size: one read from the socket, one write to it. */
#define MT_STREAM_CHUNK ((64u << 10) + 1024)

typedef void (*mt_stream_alloc_cb)(mt_stream_t *s, uv_buf_t *buf);
/* As uv_read_cb: nread > 0 bytes of plaintext, 0 (nothing: just give the
 * buffer back), UV_EOF, or an error (UV_EPROTO: see mt_stream_tls_reason).
 * buf is the owner's, from alloc_cb, in every case. */
typedef void (*mt_stream_read_cb)(mt_stream_t *s, ssize_t nread, const uv_buf_t *buf);
typedef void (*mt_stream_write_cb)(mt_stream_write_t *req, int status);
/* status 0 once the handshake is done; UV_EPROTO with the reason in
 * mt_stream_tls_reason(), or the socket's error. */
typedef void (*mt_stream_handshake_cb)(mt_stream_t *s, int status);
typedef void (*mt_stream_close_cb)(mt_stream_t *s);

/* A write request. The buffers it names stay the owner's until cb (the
 * libuv rule), although in TLS they are encrypted, and free, at once. */
struct mt_stream_write {
    uv_write_t req;
    mt_stream_write_cb cb;
};

struct mt_stream {
    uv_tcp_t tcp;         /* first: libuv's handle; its data field is the stream's */
    void *data;           /* the owner's */
    void *handshake_data; /* for the handshake callback (the owner sets it) */
    mt_tls_t *tls;        /* NULL in plaintext; owned by the stream */
    mt_stream_pool_t *pool;
    mt_stream_alloc_cb alloc_cb;
    mt_stream_read_cb read_cb;
    mt_stream_handshake_cb handshake_cb;
    mt_stream_close_cb close_cb;
    uv_alloc_cb sock_alloc; /* the socket's reader (stream.c): plaintext or ciphertext */
    uv_read_cb sock_read;
    uv_timer_t *kick;     /* TLS only: hands over what OpenSSL still holds after a pause */
    size_t cipher_queued; /* TLS: ciphertext bytes waiting in uv_write requests */
    int handles;          /* open while closing */
    int pending_error;    /* TLS: UV_EOF or an error to deliver after the plaintext */
    bool tls_done;        /* OpenSSL said end or error: nothing more to decrypt */
    bool ended;           /* the end or error was delivered */
    bool reading;         /* the owner wants data */
    bool sock_reading;    /* libuv watches the socket for us to read it */
    bool handshaking;
    bool closing;
};

mt_stream_pool_t *mt_stream_pool_new(void);
/* After every stream using it has closed. */
void mt_stream_pool_free(mt_stream_pool_t *pool);

/* uv_tcp_init; pool may be NULL for a stream that never does TLS. */
int mt_stream_init(uv_loop_t *loop, mt_stream_t *s, mt_stream_pool_t *pool);
/* Starts TLS on a connected or accepted stream, which takes ownership of
 * tls. cb is called once (with UV_ECANCELED when the stream is closed
 * first). Nothing may be written before it says 0. */
int mt_stream_start_tls(mt_stream_t *s, mt_tls_t *tls, mt_stream_handshake_cb cb);
bool mt_stream_is_tls(const mt_stream_t *s);
const char *mt_stream_tls_reason(const mt_stream_t *s);

int mt_stream_read_start(mt_stream_t *s, mt_stream_alloc_cb alloc_cb, mt_stream_read_cb read_cb);
void mt_stream_read_stop(mt_stream_t *s);

/* As uv_try_write: bytes taken, or UV_EAGAIN. In TLS it takes everything
 * or, while earlier ciphertext is still queued, nothing. */
int mt_stream_try_write(mt_stream_t *s, const uv_buf_t bufs[], unsigned nbufs);
int mt_stream_write(mt_stream_write_t *req, mt_stream_t *s, const uv_buf_t bufs[], unsigned nbufs,
                    mt_stream_write_cb cb);
/* Half-close after the queued writes (TLS: close_notify first). */
int mt_stream_shutdown(uv_shutdown_t *req, mt_stream_t *s, uv_shutdown_cb cb);
/* Closes every handle; cb (may be NULL) once they are all closed. A
 * handshake under way calls back at once with UV_ECANCELED; pending writes
 * complete first, with UV_ECANCELED. */
void mt_stream_close(mt_stream_t *s, mt_stream_close_cb cb);

#endif
