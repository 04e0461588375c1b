/*
 * tls: OpenSSL over memory BIOs, so that libuv keeps owning the sockets.
 * Ciphertext that arrived is fed in and plaintext comes out into the
 * caller's buffer; plaintext written is encrypted at once into ciphertext
 * that the caller takes out and sends. One context per role: client (to
 * the upstream) and server (the --tls-listen listeners).
 */
#ifndef MT_TLS_H
#define MT_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mt_tls_ctx mt_tls_ctx_t;
typedef struct mt_tls mt_tls_t;

#define MT_TLS_REASON_MAX 768

typedef struct {
    const char *ca_file;       /* NULL or "": the system's CAs */
    const char *cert_key_file; /* NULL or "": no client certificate */
    const char *key_password;  /* NULL or "": the key is not encrypted */
    bool allow_invalid_certificates;
    bool allow_invalid_hostnames;
} mt_tls_client_opts_t;

/* NULL with one line in err when a file cannot be used. */
mt_tls_ctx_t *mt_tls_client_ctx_new(const mt_tls_client_opts_t *opts, char *err, size_t errlen);
mt_tls_ctx_t *mt_tls_server_ctx_new(const char *cert_file, const char *key_file, char *err,
                                    size_t errlen);
void mt_tls_ctx_free(mt_tls_ctx_t *ctx);

/* One connection. host: the upstream's name, for SNI and the name check
 * (client role only; NULL for the server role). NULL when out of memory. */
mt_tls_t *mt_tls_new(mt_tls_ctx_t *ctx, const char *host);
void mt_tls_free(mt_tls_t *t);

typedef enum {
    MT_TLS_OK = 0,
    MT_TLS_WANT,  /* needs more ciphertext from the peer */
    MT_TLS_EOF,   /* the peer sent close_notify */
    MT_TLS_ERROR, /* see mt_tls_reason() */
} mt_tls_status_t;

const char *mt_tls_status_str(mt_tls_status_t st);

/* Ciphertext read from the socket; copied into OpenSSL's input. */
void mt_tls_feed(mt_tls_t *t, const uint8_t *buf, size_t len);
/* Advances the handshake: OK once established, WANT while it waits for
 * the peer, ERROR with the reason. */
mt_tls_status_t mt_tls_handshake(mt_tls_t *t);
bool mt_tls_established(const mt_tls_t *t);
/* Decrypts into buf: OK with *n > 0, WANT when no whole record is
 * buffered, EOF or ERROR. */
mt_tls_status_t mt_tls_read(mt_tls_t *t, uint8_t *buf, size_t cap, size_t *n);
/* True while plaintext or ciphertext is buffered and not yet read. */
bool mt_tls_has_input(const mt_tls_t *t);
/* Encrypts all of buf[0..len) (after the handshake). */
mt_tls_status_t mt_tls_write(mt_tls_t *t, const uint8_t *buf, size_t len);
/* Queues close_notify. */
void mt_tls_shutdown(mt_tls_t *t);
/* Ciphertext waiting to be sent, and taking it out (returns bytes taken). */
size_t mt_tls_pending_out(const mt_tls_t *t);
size_t mt_tls_take_out(mt_tls_t *t, uint8_t *buf, size_t cap);
/* The peer closed the connection: if it did so during the handshake, that
 * is the reason the handshake failed. */
void mt_tls_peer_closed(mt_tls_t *t);

/* Why the handshake or the connection failed, one line naming the cause
 * (unknown CA, host name mismatch, certificate expired, not TLS...). */
const char *mt_tls_reason(const mt_tls_t *t);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" once established. */
void mt_tls_describe(const mt_tls_t *t, char *out, size_t cap);

/* A TLS ClientHello begins with a handshake record: 0x16, then 0x03 (the
 * major version). True when buf starts that way (at least two bytes). */
bool mt_tls_is_client_hello(const uint8_t *buf, size_t len);

#endif
