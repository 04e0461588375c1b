/*
 * tls: each connection is an SSL object between two memory BIOs: `in`
 * holds ciphertext fed from the socket, `out` the ciphertext OpenSSL wrote
 * for the peer. Plaintext is decrypted straight into the caller's buffer
 * and encrypted straight from it; the only copies are of ciphertext.
 *
 *   socket --feed--> [in BIO] --SSL_read--> caller's buffer
 *   caller's buffer --SSL_write--> [out BIO] --take_out--> socket
 */
#include "tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TLS_RECORD_HANDSHAKE 0x16

struct mt_tls_ctx {
    SSL_CTX *ssl_ctx;
    bool client;
    bool verify_hostnames;
    char ca_desc[64 + 256]; /* "tlsCAFile ca.pem" or "the system's CAs" */
};

struct mt_tls {
    mt_tls_ctx_t *ctx;
    SSL *ssl;
    BIO *in, *out;
    char host[256];
    bool established;
    bool saw_input;
    bool not_tls; /* the peer's first byte cannot begin a TLS record */
    char reason[MT_TLS_REASON_MAX];
};

const char *mt_tls_status_str(mt_tls_status_t st)
{
    switch (st) {
    case MT_TLS_OK:
        return "ok";
    case MT_TLS_WANT:
        return "want";
    case MT_TLS_EOF:
        return "eof";
    case MT_TLS_ERROR:
        return "error";
    }
    return "unknown";
}

/* The first queued OpenSSL error (the cause; later ones are context) as
 * text, and the queue cleared. */
static const char *openssl_error(char *buf, size_t cap)
{
    unsigned long e = ERR_peek_error();

    if (e == 0)
        snprintf(buf, cap, "unknown error");
    else
        ERR_error_string_n(e, buf, cap);
    ERR_clear_error();
    return buf;
}

static SSL_CTX *ctx_base(char *err, size_t errlen)
{
    SSL_CTX *c = SSL_CTX_new(TLS_method());

    if (!c) {
        char e[160];
        snprintf(err, errlen, "cannot create a TLS context: %s", openssl_error(e, sizeof(e)));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    return c;
}

static bool empty(const char *s)
{
    return !s || !*s;
}

mt_tls_ctx_t *mt_tls_client_ctx_new(const mt_tls_client_opts_t *o, char *err, size_t errlen)
{
    mt_tls_ctx_t *t = calloc(1, sizeof(*t));
    char e[160];

    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->client = true;
    t->verify_hostnames = !o->allow_invalid_hostnames;
    t->ssl_ctx = ctx_base(err, errlen);
    if (!t->ssl_ctx)
        goto fail;
    if (!empty(o->ca_file)) {
        snprintf(t->ca_desc, sizeof(t->ca_desc), "tlsCAFile %s", o->ca_file);
        if (SSL_CTX_load_verify_locations(t->ssl_ctx, o->ca_file, NULL) != 1) {
            snprintf(err, errlen, "tlsCAFile %s: cannot load: %s", o->ca_file,
                     openssl_error(e, sizeof(e)));
            goto fail;
        }
    } else {
        snprintf(t->ca_desc, sizeof(t->ca_desc), "the system's CAs");
        if (SSL_CTX_set_default_verify_paths(t->ssl_ctx) != 1) {
            snprintf(err, errlen, "cannot load the system's CAs: %s", openssl_error(e, sizeof(e)));
            goto fail;
        }
    }
    if (!empty(o->cert_key_file)) {
        if (!empty(o->key_password))
            SSL_CTX_set_default_passwd_cb_userdata(t->ssl_ctx, (void *)o->key_password);
        if (SSL_CTX_use_certificate_chain_file(t->ssl_ctx, o->cert_key_file) != 1 ||
            SSL_CTX_use_PrivateKey_file(t->ssl_ctx, o->cert_key_file, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(t->ssl_ctx) != 1) {
            snprintf(err, errlen,
                     "tlsCertificateKeyFile %s: cannot load the certificate and key: %s",
                     o->cert_key_file, openssl_error(e, sizeof(e)));
            goto fail;
        }
        SSL_CTX_set_default_passwd_cb_userdata(t->ssl_ctx, NULL);
    }
    SSL_CTX_set_verify(t->ssl_ctx,
                       o->allow_invalid_certificates ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    return t;
fail:
    mt_tls_ctx_free(t);
    return NULL;
}

mt_tls_ctx_t *mt_tls_server_ctx_new(const char *cert_file, const char *key_file, char *err,
                                    size_t errlen)
{
    mt_tls_ctx_t *t = calloc(1, sizeof(*t));
    char e[160];

    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->ssl_ctx = ctx_base(err, errlen);
    if (!t->ssl_ctx)
        goto fail;
    if (SSL_CTX_use_certificate_chain_file(t->ssl_ctx, cert_file) != 1) {
        snprintf(err, errlen, "--tls-cert %s: cannot load: %s", cert_file,
                 openssl_error(e, sizeof(e)));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(t->ssl_ctx, key_file, SSL_FILETYPE_PEM) != 1 &&
        ERR_GET_REASON(ERR_peek_error()) != X509_R_KEY_VALUES_MISMATCH) {
        snprintf(err, errlen, "--tls-key %s: cannot load: %s", key_file,
                 openssl_error(e, sizeof(e)));
        goto fail;
    }
    if (ERR_peek_error() || SSL_CTX_check_private_key(t->ssl_ctx) != 1) {
        snprintf(err, errlen, "--tls-key %s: does not match the certificate in --tls-cert %s",
                 key_file, cert_file);
        ERR_clear_error();
        goto fail;
    }
    return t;
fail:
    mt_tls_ctx_free(t);
    return NULL;
}

void mt_tls_ctx_free(mt_tls_ctx_t *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ssl_ctx);
    free(t);
}

static bool is_ip_literal(const char *host)
{
    unsigned char buf[16];

    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

mt_tls_t *mt_tls_new(mt_tls_ctx_t *ctx, const char *host)
{
    mt_tls_t *t = calloc(1, sizeof(*t));

    if (!t)
        return NULL;
    t->ctx = ctx;
    t->ssl = SSL_new(ctx->ssl_ctx);
    t->in = BIO_new(BIO_s_mem());
    t->out = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->in || !t->out) {
        BIO_free(t->in);
        BIO_free(t->out);
        SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    /* an empty memory BIO means "try again", not end of file */
    BIO_set_mem_eof_return(t->in, -1);
    BIO_set_mem_eof_return(t->out, -1);
    SSL_set_bio(t->ssl, t->in, t->out);
    if (ctx->client) {
        snprintf(t->host, sizeof(t->host), "%s", host ? host : "");
        SSL_set_connect_state(t->ssl);
        if (t->host[0]) {
            bool ip = is_ip_literal(t->host);
            X509_VERIFY_PARAM *param = SSL_get0_param(t->ssl);
            /* RFC 6066: SNI carries host names, never addresses */
            if (!ip)
                SSL_set_tlsext_host_name(t->ssl, t->host);
            if (ctx->verify_hostnames) {
                X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
                if (ip)
                    X509_VERIFY_PARAM_set1_ip_asc(param, t->host);
                else
                    X509_VERIFY_PARAM_set1_host(param, t->host, 0);
            }
        }
    } else {
        SSL_set_accept_state(t->ssl);
    }
    return t;
}

void mt_tls_free(mt_tls_t *t)
{
    if (!t)
        return;
    SSL_free(t->ssl); /* frees both BIOs */
    free(t);
}

void mt_tls_feed(mt_tls_t *t, const uint8_t *buf, size_t len)
{
    if (len && !t->saw_input) {
        t->saw_input = true;
        /* a handshake record, or (from a server) an alert */
        t->not_tls = buf[0] != TLS_RECORD_HANDSHAKE && !(t->ctx->client && buf[0] == 0x15);
    }
    if (len)
        BIO_write(t->in, buf, (int)len);
}

static const char *peer_name(const mt_tls_t *t)
{
    return t->ctx->client ? "upstream" : "client";
}

static void cert_date(const mt_tls_t *t, bool not_after, char *out, size_t cap)
{
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(t->ssl);
    X509 *cert = chain && sk_X509_num(chain) > 0 ? sk_X509_value(chain, 0) : NULL;
    BIO *b;
    int n;

    snprintf(out, cap, "?");
    if (!cert || !(b = BIO_new(BIO_s_mem())))
        return;
    ASN1_TIME_print(b, not_after ? X509_get0_notAfter(cert) : X509_get0_notBefore(cert));
    n = BIO_read(b, out, (int)cap - 1);
    out[n > 0 ? n : 0] = '\0';
    BIO_free(b);
}

/* The peer's certificate failed our checks (client role). */
static void verify_reason(mt_tls_t *t, long vr)
{
    char date[64];

    switch (vr) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_CERT_UNTRUSTED:
        snprintf(t->reason, sizeof(t->reason),
                 "unknown CA: the %s's certificate is not signed by a CA in %s (%s)", peer_name(t),
                 t->ctx->ca_desc, X509_verify_cert_error_string(vr));
        break;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        snprintf(t->reason, sizeof(t->reason),
                 "host name mismatch: the %s's certificate is not for %s", peer_name(t), t->host);
        break;
    case X509_V_ERR_CERT_HAS_EXPIRED:
        cert_date(t, true, date, sizeof(date));
        snprintf(t->reason, sizeof(t->reason),
                 "certificate expired: the %s's certificate is valid until %s", peer_name(t), date);
        break;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        cert_date(t, false, date, sizeof(date));
        snprintf(t->reason, sizeof(t->reason),
                 "certificate not yet valid: the %s's certificate is valid from %s", peer_name(t),
                 date);
        break;
    default:
        snprintf(t->reason, sizeof(t->reason), "certificate rejected: %s",
                 X509_verify_cert_error_string(vr));
        break;
    }
}

/* An alert the peer sent, or a local failure, named for a person. */
static void error_reason(mt_tls_t *t)
{
    unsigned long e = ERR_peek_error();
    int reason = ERR_GET_REASON(e);
    char text[160];

    switch (reason) {
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
        snprintf(t->reason, sizeof(t->reason),
                 "unknown CA: the %s rejected mongotap's certificate (its CA is not trusted there)",
                 peer_name(t));
        break;
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
        snprintf(t->reason, sizeof(t->reason),
                 "certificate expired: the %s rejected mongotap's certificate as expired",
                 peer_name(t));
        break;
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
        snprintf(
            t->reason, sizeof(t->reason),
            "certificate rejected: the %s refused mongotap's certificate (%s; wrong host name?)",
            peer_name(t), ERR_reason_error_string(e));
        break;
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
        snprintf(t->reason, sizeof(t->reason),
                 t->ctx->client ? "client certificate required: the upstream wants one "
                                  "(tlsCertificateKeyFile)"
                                : "client certificate required");
        break;
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
        snprintf(t->reason, sizeof(t->reason),
                 "no common TLS version or cipher with the %s (mongotap needs TLS 1.2 or later)",
                 peer_name(t));
        break;
    default:
        snprintf(t->reason, sizeof(t->reason), "TLS handshake failed: %s",
                 openssl_error(text, sizeof(text)));
        break;
    }
    ERR_clear_error();
}

static void not_tls_reason(mt_tls_t *t)
{
    snprintf(t->reason, sizeof(t->reason), "%s",
             t->ctx->client ? "upstream does not speak TLS: drop tls=true from --upstream, or "
                              "check the port"
                            : "client does not speak TLS: connect with tls=true, or to a --listen "
                              "address");
}

static mt_tls_status_t fail(mt_tls_t *t, int ret)
{
    int err = SSL_get_error(t->ssl, ret);

    switch (err) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return MT_TLS_WANT;
    case SSL_ERROR_ZERO_RETURN:
        return MT_TLS_EOF;
    default:
        break;
    }
    if (t->reason[0])
        return MT_TLS_ERROR;
    if (!t->established && t->not_tls) {
        not_tls_reason(t);
    } else if (!t->established && t->ctx->client && SSL_get_verify_result(t->ssl) != X509_V_OK) {
        verify_reason(t, SSL_get_verify_result(t->ssl));
    } else if (err == SSL_ERROR_SSL) {
        error_reason(t);
    } else {
        snprintf(t->reason, sizeof(t->reason), "TLS failed (OpenSSL error %d)", err);
    }
    ERR_clear_error();
    return MT_TLS_ERROR;
}

mt_tls_status_t mt_tls_handshake(mt_tls_t *t)
{
    int ret;

    if (t->established)
        return MT_TLS_OK;
    if (t->reason[0])
        return MT_TLS_ERROR;
    ret = SSL_do_handshake(t->ssl);
    if (ret == 1) {
        t->established = true;
        return MT_TLS_OK;
    }
    return fail(t, ret);
}

bool mt_tls_established(const mt_tls_t *t)
{
    return t->established;
}

mt_tls_status_t mt_tls_read(mt_tls_t *t, uint8_t *buf, size_t cap, size_t *n)
{
    int ret;

    *n = 0;
    if (t->reason[0])
        return MT_TLS_ERROR;
    ret = SSL_read_ex(t->ssl, buf, cap, n);
    if (ret == 1)
        return MT_TLS_OK;
    return fail(t, ret);
}

bool mt_tls_has_input(const mt_tls_t *t)
{
    return SSL_pending(t->ssl) > 0 || BIO_ctrl_pending(t->in) > 0;
}

mt_tls_status_t mt_tls_write(mt_tls_t *t, const uint8_t *buf, size_t len)
{
    size_t written = 0;
    int ret;

    if (t->reason[0])
        return MT_TLS_ERROR;
    if (len == 0)
        return MT_TLS_OK;
    /* a memory BIO never fills, so one call encrypts everything */
    ret = SSL_write_ex(t->ssl, buf, len, &written);
    if (ret == 1 && written == len)
        return MT_TLS_OK;
    if (ret == 1) {
        snprintf(t->reason, sizeof(t->reason), "TLS write took %zu of %zu bytes", written, len);
        return MT_TLS_ERROR;
    }
    if (fail(t, ret) != MT_TLS_ERROR)
        snprintf(t->reason, sizeof(t->reason), "TLS write before the handshake finished");
    return MT_TLS_ERROR;
}

void mt_tls_shutdown(mt_tls_t *t)
{
    if (t->established && !t->reason[0])
        SSL_shutdown(t->ssl);
    ERR_clear_error();
}

size_t mt_tls_pending_out(const mt_tls_t *t)
{
    return BIO_ctrl_pending(t->out);
}

size_t mt_tls_take_out(mt_tls_t *t, uint8_t *buf, size_t cap)
{
    int n = BIO_read(t->out, buf, cap > INT32_MAX ? INT32_MAX : (int)cap);

    return n > 0 ? (size_t)n : 0;
}

void mt_tls_peer_closed(mt_tls_t *t)
{
    if (t->established || t->reason[0])
        return;
    if (t->not_tls)
        not_tls_reason(t);
    else
        snprintf(t->reason, sizeof(t->reason),
                 t->ctx->client ? "upstream closed the connection during the TLS handshake "
                                  "(does it speak TLS on this port?)"
                                : "client closed the connection during the TLS handshake");
}

const char *mt_tls_reason(const mt_tls_t *t)
{
    return t->reason[0] ? t->reason : "no error";
}

void mt_tls_describe(const mt_tls_t *t, char *out, size_t cap)
{
    const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);

    snprintf(out, cap, "%s %s", SSL_get_version(t->ssl), c ? SSL_CIPHER_get_name(c) : "-");
}

bool mt_tls_is_client_hello(const uint8_t *buf, size_t len)
{
    return len >= 2 && buf[0] == TLS_RECORD_HANDSHAKE && buf[1] == 0x03;
}
