/*
 * uri: the --upstream value, either HOST:PORT as before or a MongoDB
 * connection string (mongodb:// or mongodb+srv://) with the options a proxy
 * honours. Pure: no I/O, no logging. The look-ups behind mongodb+srv are
 * dns.c's; the rules for what they may return are here.
 */
#ifndef MT_URI_H
#define MT_URI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MT_URI_HOST_MAX 256
#define MT_URI_MAX_HOSTS 64
#define MT_URI_PATH_MAX 1024
#define MT_URI_NAME_MAX 256
#define MT_URI_DEFAULT_PORT 27017
#define MT_URI_DEFAULT_HEARTBEAT_MS 10000
#define MT_URI_MIN_HEARTBEAT_MS 500
#define MT_URI_DEFAULT_CONNECT_TIMEOUT_MS 3000

typedef struct {
    char host[MT_URI_HOST_MAX]; /* without brackets for IPv6 */
    uint16_t port;
} mt_hostport_t;

typedef enum {
    MT_URI_HOSTPORT = 0, /* plain HOST:PORT: one upstream, no discovery */
    MT_URI_MONGODB,      /* mongodb:// */
    MT_URI_SRV,          /* mongodb+srv:// */
} mt_uri_scheme_t;

const char *mt_uri_scheme_str(mt_uri_scheme_t scheme);

typedef struct {
    mt_uri_scheme_t scheme;
    /* The seed list; for mongodb+srv it is filled from the SRV answer. */
    mt_hostport_t hosts[MT_URI_MAX_HOSTS];
    size_t nhosts;
    char srv_host[MT_URI_HOST_MAX];    /* mongodb+srv: the name in the string */
    char srv_service[64];              /* srvServiceName (default "mongodb") */
    char replica_set[MT_URI_NAME_MAX]; /* "" when none */
    char auth_source[MT_URI_NAME_MAX]; /* kept for display only: auth is the app's */
    bool tls;
    char tls_ca_file[MT_URI_PATH_MAX];       /* "": the system's CAs */
    char tls_cert_key_file[MT_URI_PATH_MAX]; /* "": no client certificate */
    char tls_cert_key_password[MT_URI_NAME_MAX];
    bool tls_allow_invalid_certificates;
    bool tls_allow_invalid_hostnames;
    bool direct;                 /* talk to the seed only, never discover members */
    uint32_t heartbeat_ms;       /* heartbeatFrequencyMS */
    uint32_t connect_timeout_ms; /* connectTimeoutMS; 0: no limit */
    /* Options that only mean something to the application (retryWrites, w,
     * appName...), accepted and not used: "a, b" for one log line. */
    char ignored[256];
} mt_uri_t;

/* Parses s into *out. On error returns -1 with one line in err naming the
 * option or part that is wrong. */
int mt_uri_parse(const char *s, mt_uri_t *out, char *err, size_t errlen);

/* "host", "host:port", "[v6]", "[v6]:port" from s[0..len). default_port 0
 * means the port is required; a port of 0 is accepted (for listeners). */
int mt_uri_parse_hostport(const char *s, size_t len, uint16_t default_port, mt_hostport_t *out);

/* Adds host:port to the seed list unless it is there (names compared
 * lower-cased, a trailing dot dropped). -1 when the list is full. */
int mt_uri_add_seed(mt_uri_t *uri, const char *host, uint16_t port);

/* Initial DNS Seedlist Discovery: an SRV target must lie in the domain of
 * the name looked up (that name without its first label; a name of fewer
 * than three labels is its own domain, and the target must be below it). */
bool mt_uri_srv_target_ok(const char *srv_host, const char *target);

/* Applies the options of the one TXT record of a mongodb+srv name: only
 * replicaSet and authSource are allowed, and options in the string win. */
int mt_uri_apply_txt(mt_uri_t *uri, const char *txt, char *err, size_t errlen);

/* For logs, without spaces or credentials: "h:27017", or a connection
 * string of what is used ("mongodb://a:1,b:2/?replicaSet=rs0&tls=true"). */
void mt_uri_describe(const mt_uri_t *uri, char *out, size_t cap);

#endif
