/*
 * httpc: a small HTTP/1.1 GET client on the caller's libuv loop, used by the
 * `console` and `report` subcommands to read the admin API. Built on libh2o's
 * http1client; one client is bound to one base URL (the admin endpoint).
 */
#ifndef MT_HTTPC_H
#define MT_HTTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define MT_HTTPC_HOST_MAX 256
#define MT_HTTPC_PATH_MAX 1024
/* A response body larger than this fails with an error instead of growing without bound. */
#define MT_HTTPC_BODY_MAX (64u * 1024u * 1024u)

typedef struct {
    char host[MT_HTTPC_HOST_MAX]; /* without brackets for IPv6 */
    uint16_t port;
    char prefix[MT_HTTPC_PATH_MAX]; /* path before the route, "" or "/x" (no trailing slash) */
} mt_httpc_url_t;

typedef enum {
    MT_HTTPC_OK = 0,       /* a complete response arrived (any status) */
    MT_HTTPC_ERR_CONNECT,  /* could not resolve or connect */
    MT_HTTPC_ERR_IO,       /* the connection broke or the response did not parse */
    MT_HTTPC_ERR_TIMEOUT,  /* no progress within the client's timeout */
    MT_HTTPC_ERR_TOO_LARGE /* body over MT_HTTPC_BODY_MAX */
} mt_httpc_result_t;

const char *mt_httpc_result_str(mt_httpc_result_t r);

typedef struct {
    mt_httpc_result_t result;
    const char *error; /* one line on why, NULL when result is MT_HTTPC_OK */
    int status;        /* HTTP status, 0 without a response */
    const char *body;  /* NUL-terminated; valid only during the callback */
    size_t body_len;
} mt_httpc_resp_t;

/* Called exactly once per request, unless the client is closed first. */
typedef void (*mt_httpc_done_cb)(const mt_httpc_resp_t *resp, void *data);

typedef struct mt_httpc_s mt_httpc_t;

/* Parses "http://host[:port][/prefix]" or "host[:port]" (port defaults to 80
 * with a scheme, 27080 without). 0 on success, -1 with a one-line err. */
int mt_httpc_parse_url(const char *url, mt_httpc_url_t *out, char *err, size_t errlen);

/* A client for base_url; token, when not NULL or empty, is sent as a Bearer
 * credential. NULL with a one-line err when the URL does not parse. */
mt_httpc_t *mt_httpc_new(uv_loop_t *loop, const char *base_url, const char *token,
                         uint64_t timeout_ms, char *err, size_t errlen);

/* Starts GET prefix+path (path begins with '/'). 0 when started, -1 when out
 * of memory or path too long (cb is then never called). */
int mt_httpc_get(mt_httpc_t *c, const char *path, mt_httpc_done_cb cb, void *data);

/* Number of requests started and not yet answered. */
size_t mt_httpc_pending(const mt_httpc_t *c);

/* Cancels every pending request (their callbacks are not called) and closes
 * the client's handles. The loop must then run until those handles are closed
 * (uv_run with nothing else active returns at that point) before
 * mt_httpc_free releases the memory they live in. */
void mt_httpc_close(mt_httpc_t *c);
void mt_httpc_free(mt_httpc_t *c);

/* Result of mt_httpc_fetch. */
typedef enum {
    MT_HTTPC_FETCH_OK = 0,  /* 200: *body holds the answer */
    MT_HTTPC_FETCH_FAILED,  /* unreachable, timed out, or another status */
    MT_HTTPC_FETCH_BAD_URL, /* base_url does not parse (a usage error) */
} mt_httpc_fetch_t;

/* One GET of path on base_url on a private loop, for the subcommands that
 * read one admin route and exit. On MT_HTTPC_FETCH_OK *body is the
 * NUL-terminated answer (free() it) of *len bytes; otherwise err holds one
 * line naming base_url and what went wrong (for a 401: pass --token). */
mt_httpc_fetch_t mt_httpc_fetch(const char *base_url, const char *token, const char *path,
                                uint64_t timeout_ms, char **body, size_t *len, char *err,
                                size_t errlen);

#endif
