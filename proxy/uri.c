/*
 * uri: a small strict parser for the connection string forms drivers take,
 * following the Connection String and URI Options specifications: options
 * are case-insensitive and percent-decoded, contradictions are errors, and
 * every error names the option or part at fault.
 */
#include "uri.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SRV_PREFIX "mongodb+srv://"
#define MONGODB_PREFIX "mongodb://"

const char *mt_uri_scheme_str(mt_uri_scheme_t scheme)
{
    switch (scheme) {
    case MT_URI_HOSTPORT:
        return "hostport";
    case MT_URI_MONGODB:
        return "mongodb";
    case MT_URI_SRV:
        return "mongodb+srv";
    }
    return "unknown";
}

/* Options a driver uses for itself: meaningless to a proxy that forwards
 * the app's own commands, so accepted and reported once. */
static const char *const app_options[] = {
    "appName",
    "authMechanism",
    "authMechanismProperties",
    "authSource",
    "compressors",
    "gssapiServiceName",
    "journal",
    "loadBalanced",
    "localThresholdMS",
    "maxConnecting",
    "maxIdleTimeMS",
    "maxPoolSize",
    "maxStalenessSeconds",
    "minPoolSize",
    "readConcernLevel",
    "readPreference",
    "readPreferenceTags",
    "retryReads",
    "retryWrites",
    "serverMonitoringMode",
    "serverSelectionTimeoutMS",
    "serverSelectionTryOnce",
    "socketTimeoutMS",
    "srvMaxHosts",
    "timeoutMS",
    "tlsDisableCertificateRevocationCheck",
    "tlsDisableOCSPEndpointCheck",
    "uuidRepresentation",
    "w",
    "waitQueueTimeoutMS",
    "wTimeoutMS",
    "zlibCompressionLevel",
};

static int fail(char *err, size_t errlen, const char *fmt, const char *arg)
{
    snprintf(err, errlen, fmt, arg);
    return -1;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..len) into out (NUL-terminated). '+' stays '+': the
 * URI specs do not make it a space. -1 on a bad escape, a NUL, or no room. */
static int pct_decode(const char *s, size_t len, char *out, size_t cap)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= len)
                return -1;
            hi = hexval(s[i + 1]);
            lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (char)(hi * 16 + lo);
            if (c == '\0')
                return -1;
            i += 2;
        }
        if (n + 1 >= cap)
            return -1;
        out[n++] = c;
    }
    out[n] = '\0';
    return 0;
}

int mt_uri_parse_hostport(const char *s, size_t len, uint16_t default_port, mt_hostport_t *out)
{
    const char *host, *port = NULL, *end = s + len;
    size_t hlen;
    unsigned long v = 0;

    if (len == 0)
        return -1;
    if (s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close)
            return -1;
        host = s + 1;
        hlen = (size_t)(close - host);
        if (close + 1 < end) {
            if (close[1] != ':')
                return -1;
            port = close + 2;
        }
    } else {
        const char *colon = memchr(s, ':', len);
        host = s;
        hlen = colon ? (size_t)(colon - s) : len;
        if (colon) {
            if (memchr(colon + 1, ':', (size_t)(end - colon - 1)))
                return -1; /* an IPv6 address needs brackets */
            port = colon + 1;
        }
    }
    if (hlen == 0 || hlen >= sizeof(out->host))
        return -1;
    if (port) {
        if (port == end || (size_t)(end - port) > 5)
            return -1;
        for (const char *p = port; p < end; p++) {
            if (*p < '0' || *p > '9')
                return -1;
            v = v * 10 + (unsigned long)(*p - '0');
        }
        if (v > 65535)
            return -1;
    } else if (default_port == 0) {
        return -1;
    } else {
        v = default_port;
    }
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    out->port = (uint16_t)v;
    return 0;
}

static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

static int parse_bool(const char *v, bool *out)
{
    if (strcasecmp(v, "true") == 0)
        return *out = true, 0;
    if (strcasecmp(v, "false") == 0)
        return *out = false, 0;
    return -1;
}

static int parse_u32(const char *v, uint32_t min, uint32_t max, uint32_t *out)
{
    char *end;
    unsigned long long n;

    if (*v < '0' || *v > '9')
        return -1;
    errno = 0;
    n = strtoull(v, &end, 10);
    if (errno || *end || n < min || n > max)
        return -1;
    *out = (uint32_t)n;
    return 0;
}

static int copy_str(const char *v, char *out, size_t cap)
{
    size_t n = strlen(v);

    if (n == 0 || n >= cap)
        return -1;
    memcpy(out, v, n + 1);
    return 0;
}

/* What the options said, for the checks that look at several of them. */
typedef struct {
    int tls, ssl;    /* -1 unset, else 0/1 */
    bool tls_option; /* any tls* option that implies TLS */
    bool insecure, allow_certs, allow_hosts;
    bool direct_set;
    bool srv_service;
    bool replica_set;
} seen_t;

static void note_ignored(mt_uri_t *u, const char *name)
{
    size_t n = strlen(u->ignored), len = strlen(name);

    for (const char *p = u->ignored; (p = strstr(p, name)) != NULL; p += len)
        if ((p == u->ignored || p[-1] == ' ') && (p[len] == ',' || p[len] == '\0'))
            return; /* listed already */
    snprintf(u->ignored + n, sizeof(u->ignored) - n, "%s%s", n ? ", " : "", name);
}

static int apply_option(mt_uri_t *u, seen_t *seen, const char *key, const char *v, char *err,
                        size_t errlen)
{
    bool b;

#define IS(name) (strcasecmp(key, name) == 0)
#define BAD(what) (snprintf(err, errlen, "option %s: '%s' %s", key, v, what), -1)
    if (IS("tls") || IS("ssl")) {
        if (parse_bool(v, &b) != 0)
            return BAD("is not true or false");
        *(IS("tls") ? &seen->tls : &seen->ssl) = b;
        return 0;
    }
    if (IS("tlsCAFile")) {
        seen->tls_option = true;
        return copy_str(v, u->tls_ca_file, sizeof(u->tls_ca_file)) ? BAD("is not a file name") : 0;
    }
    if (IS("tlsCertificateKeyFile")) {
        seen->tls_option = true;
        return copy_str(v, u->tls_cert_key_file, sizeof(u->tls_cert_key_file))
                   ? BAD("is not a file name")
                   : 0;
    }
    if (IS("tlsCertificateKeyFilePassword")) {
        seen->tls_option = true;
        if (copy_str(v, u->tls_cert_key_password, sizeof(u->tls_cert_key_password)))
            return fail(err, errlen, "option %s: empty or too long", key);
        return 0;
    }
    if (IS("tlsAllowInvalidCertificates") || IS("tlsAllowInvalidHostnames") || IS("tlsInsecure")) {
        if (parse_bool(v, &b) != 0)
            return BAD("is not true or false");
        seen->tls_option = true;
        if (IS("tlsInsecure")) {
            seen->insecure = true;
            u->tls_allow_invalid_certificates = u->tls_allow_invalid_hostnames = b;
        } else if (IS("tlsAllowInvalidCertificates")) {
            seen->allow_certs = true;
            u->tls_allow_invalid_certificates = b;
        } else {
            seen->allow_hosts = true;
            u->tls_allow_invalid_hostnames = b;
        }
        return 0;
    }
    if (IS("replicaSet")) {
        seen->replica_set = true;
        return copy_str(v, u->replica_set, sizeof(u->replica_set)) ? BAD("is not a set name") : 0;
    }
    if (IS("directConnection")) {
        if (parse_bool(v, &u->direct) != 0)
            return BAD("is not true or false");
        seen->direct_set = true;
        return 0;
    }
    if (IS("heartbeatFrequencyMS")) {
        if (parse_u32(v, MT_URI_MIN_HEARTBEAT_MS, 86400000, &u->heartbeat_ms) != 0)
            return BAD("is not a whole number of milliseconds from 500 to 86400000");
        return 0;
    }
    if (IS("connectTimeoutMS")) {
        if (parse_u32(v, 0, 3600000, &u->connect_timeout_ms) != 0)
            return BAD("is not a whole number of milliseconds from 0 to 3600000");
        return 0;
    }
    if (IS("srvServiceName")) {
        seen->srv_service = true;
        if (copy_str(v, u->srv_service, sizeof(u->srv_service)) || strchr(v, '.'))
            return BAD("is not a service name");
        return 0;
    }
    for (size_t i = 0; i < sizeof(app_options) / sizeof(app_options[0]); i++) {
        if (IS(app_options[i])) {
            if (IS("authSource"))
                copy_str(v, u->auth_source, sizeof(u->auth_source));
            note_ignored(u, app_options[i]);
            return 0;
        }
    }
    return fail(err, errlen, "option %s: not a connection string option mongotap knows", key);
#undef IS
#undef BAD
}

/* key=value&key=value, each part percent-decoded. */
static int parse_options(mt_uri_t *u, seen_t *seen, const char *q, char *err, size_t errlen)
{
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t plen = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', plen);
        char key[64], value[MT_URI_PATH_MAX];

        if (plen == 0) {
            q++;
            continue;
        }
        if (!eq) {
            snprintf(err, errlen, "option %.*s: has no value (expected name=value)", (int)plen, q);
            return -1;
        }
        if (pct_decode(q, (size_t)(eq - q), key, sizeof(key)) != 0 || !key[0]) {
            snprintf(err, errlen, "option %.*s: bad name", (int)(eq - q), q);
            return -1;
        }
        if (pct_decode(eq + 1, plen - (size_t)(eq - q) - 1, value, sizeof(value)) != 0) {
            snprintf(err, errlen, "option %s: bad percent-encoding or too long", key);
            return -1;
        }
        if (apply_option(u, seen, key, value, err, errlen) != 0)
            return -1;
        q += plen;
    }
    return 0;
}

static int add_host(mt_uri_t *u, const char *s, size_t len, char *err, size_t errlen)
{
    mt_hostport_t hp;

    if (memchr(s, '%', len)) {
        char path[MT_URI_PATH_MAX];
        if (pct_decode(s, len, path, sizeof(path)) == 0 && path[0] == '/')
            return fail(err, errlen, "host %s: Unix domain sockets are not supported", path);
        snprintf(err, errlen, "host %.*s: not a host name or address", (int)len, s);
        return -1;
    }
    if (mt_uri_parse_hostport(s, len, MT_URI_DEFAULT_PORT, &hp) != 0 || hp.port == 0) {
        snprintf(err, errlen, "host %.*s: expected HOST, HOST:PORT or [IPv6]:PORT", (int)len, s);
        return -1;
    }
    if (mt_uri_add_seed(u, hp.host, hp.port) != 0) {
        snprintf(err, errlen, "host list: more than %d hosts", MT_URI_MAX_HOSTS);
        return -1;
    }
    return 0;
}

int mt_uri_add_seed(mt_uri_t *u, const char *host, uint16_t port)
{
    mt_hostport_t hp;
    size_t len = strlen(host);

    /* names are case-insensitive, and a DNS answer may end with the root */
    if (len && host[len - 1] == '.')
        len--;
    if (len == 0 || len >= sizeof(hp.host))
        return -1;
    memcpy(hp.host, host, len);
    hp.host[len] = '\0';
    hp.port = port;
    lower(hp.host);
    for (size_t i = 0; i < u->nhosts; i++)
        if (strcmp(u->hosts[i].host, hp.host) == 0 && u->hosts[i].port == hp.port)
            return 0;
    if (u->nhosts == MT_URI_MAX_HOSTS)
        return -1;
    u->hosts[u->nhosts++] = hp;
    return 0;
}

static void defaults(mt_uri_t *u)
{
    memset(u, 0, sizeof(*u));
    strcpy(u->srv_service, "mongodb");
    u->heartbeat_ms = MT_URI_DEFAULT_HEARTBEAT_MS;
    u->connect_timeout_ms = MT_URI_DEFAULT_CONNECT_TIMEOUT_MS;
}

/* The checks that need every option, in the order the specs give them. */
static int check_combination(mt_uri_t *u, const seen_t *seen, char *err, size_t errlen)
{
    if (seen->tls >= 0 && seen->ssl >= 0 && seen->tls != seen->ssl)
        return fail(err, errlen, "options tls and ssl: %s", "must not disagree");
    if (seen->insecure && (seen->allow_certs || seen->allow_hosts))
        return fail(err, errlen, "option tlsInsecure: %s",
                    "cannot be combined with tlsAllowInvalidCertificates or "
                    "tlsAllowInvalidHostnames");
    if (seen->tls >= 0 || seen->ssl >= 0)
        u->tls = seen->tls >= 0 ? seen->tls : seen->ssl;
    else
        u->tls = u->scheme == MT_URI_SRV || seen->tls_option;
    if (!u->tls && seen->tls_option)
        return fail(err, errlen, "option tls: %s",
                    "is false but other tls options are given (drop them or set tls=true)");
    if (u->direct && u->scheme == MT_URI_SRV)
        return fail(err, errlen, "option directConnection: %s",
                    "true cannot be used with mongodb+srv");
    if (u->direct && u->nhosts > 1)
        return fail(err, errlen, "option directConnection: %s", "true needs exactly one host");
    if (seen->srv_service && u->scheme != MT_URI_SRV)
        return fail(err, errlen, "option srvServiceName: %s", "only applies to mongodb+srv");
    return 0;
}

int mt_uri_parse(const char *s, mt_uri_t *u, char *err, size_t errlen)
{
    seen_t seen = {.tls = -1, .ssl = -1};
    const char *rest, *end, *slash;
    char opts[4096];

    defaults(u);
    err[0] = '\0';
    if (strncasecmp(s, SRV_PREFIX, strlen(SRV_PREFIX)) == 0) {
        u->scheme = MT_URI_SRV;
        rest = s + strlen(SRV_PREFIX);
    } else if (strncasecmp(s, MONGODB_PREFIX, strlen(MONGODB_PREFIX)) == 0) {
        u->scheme = MT_URI_MONGODB;
        rest = s + strlen(MONGODB_PREFIX);
    } else if (strstr(s, "://")) {
        return fail(err, errlen, "scheme of '%s': expected mongodb:// or mongodb+srv://", s);
    } else {
        u->scheme = MT_URI_HOSTPORT;
        u->direct = true;
        if (mt_uri_parse_hostport(s, strlen(s), 0, &u->hosts[0]) != 0 || u->hosts[0].port == 0)
            return fail(err, errlen,
                        "'%s': expected HOST:PORT or a mongodb:// or mongodb+srv:// string", s);
        u->nhosts = 1;
        return 0;
    }

    /* user info ends at the last '@' before the options; a password with an
     * unescaped '/' must still be caught, so look up to the '?' */
    end = rest + strcspn(rest, "/?");
    if (memchr(rest, '@', strcspn(rest, "?")))
        return fail(err, errlen, "%s",
                    "user name and password: not accepted in --upstream; keep credentials in "
                    "the application's connection string (mongotap passes authentication "
                    "through unchanged)");
    if (*end == '?')
        return fail(err, errlen, "%s", "host list: a '/' must come before the options ('/?')");
    if (end == rest)
        return fail(err, errlen, "%s", "host list: no host");

    if (u->scheme == MT_URI_SRV) {
        const char *p;
        size_t len = (size_t)(end - rest);
        if (memchr(rest, ',', len))
            return fail(err, errlen, "%s", "mongodb+srv: exactly one host name, no list");
        if (memchr(rest, ':', len) || rest[0] == '[')
            return fail(err, errlen, "%s", "mongodb+srv: the host name takes no port");
        if (len >= sizeof(u->srv_host))
            return fail(err, errlen, "%s", "mongodb+srv: host name too long");
        for (p = rest; p < end; p++)
            if (!(*p == '-' || *p == '.' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
                  (*p >= 'A' && *p <= 'Z')))
                break;
        if (p != end || rest[0] == '.' || end[-1] == '.' || !memchr(rest, '.', len))
            return fail(err, errlen, "mongodb+srv: '%s' is not a domain name (a.b)", rest);
        memcpy(u->srv_host, rest, len);
        u->srv_host[len] = '\0';
        lower(u->srv_host);
    } else {
        for (const char *h = rest;; h++) {
            const char *comma = memchr(h, ',', (size_t)(end - h));
            const char *hend = comma ? comma : end;
            if (add_host(u, h, (size_t)(hend - h), err, errlen) != 0)
                return -1;
            if (!comma)
                break;
            h = comma;
        }
    }

    slash = end;
    if (*slash == '/') {
        const char *q = strchr(slash, '?');
        if (q) {
            if (strlen(q + 1) >= sizeof(opts))
                return fail(err, errlen, "%s", "options: too long");
            strcpy(opts, q + 1);
            if (parse_options(u, &seen, opts, err, errlen) != 0)
                return -1;
        }
    }
    return check_combination(u, &seen, err, errlen);
}

bool mt_uri_srv_target_ok(const char *srv_host, const char *target)
{
    const char *domain = strchr(srv_host, '.');
    size_t tlen = strlen(target), dlen;
    int labels = 1;

    /* a trailing dot is the DNS root, not part of the name */
    if (tlen && target[tlen - 1] == '.')
        tlen--;
    for (const char *p = srv_host; *p; p++)
        labels += *p == '.';
    if (!domain)
        return false;
    /* "a.b" is its own domain; "a.b.c" stands for "b.c" */
    domain = labels < 3 ? srv_host : domain + 1;
    dlen = strlen(domain);
    if (tlen <= dlen + 1 || target[tlen - dlen - 1] != '.')
        return false;
    return strncasecmp(target + tlen - dlen, domain, dlen) == 0;
}

int mt_uri_apply_txt(mt_uri_t *u, const char *txt, char *err, size_t errlen)
{
    char buf[2048];
    char *save = NULL;

    if (strlen(txt) >= sizeof(buf))
        return fail(err, errlen, "%s", "TXT record: too long");
    strcpy(buf, txt);
    for (char *tok = strtok_r(buf, "&", &save); tok; tok = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(tok, '=');
        char value[MT_URI_NAME_MAX];
        if (!eq)
            return fail(err, errlen, "TXT record option %s: has no value", tok);
        *eq = '\0';
        if (pct_decode(eq + 1, strlen(eq + 1), value, sizeof(value)) != 0 || !value[0])
            return fail(err, errlen, "TXT record option %s: bad value", tok);
        if (strcasecmp(tok, "replicaSet") == 0) {
            if (!u->replica_set[0])
                strcpy(u->replica_set, value);
        } else if (strcasecmp(tok, "authSource") == 0) {
            if (!u->auth_source[0])
                strcpy(u->auth_source, value);
        } else {
            return fail(err, errlen,
                        "TXT record option %s: not allowed (only replicaSet and authSource)", tok);
        }
    }
    return 0;
}

void mt_uri_describe(const mt_uri_t *u, char *out, size_t cap)
{
    size_t n = 0;

#define PUT(...)                                                                                   \
    do {                                                                                           \
        int w_ = snprintf(out + n, n < cap ? cap - n : 0, __VA_ARGS__);                            \
        if (w_ > 0)                                                                                \
            n += (size_t)w_;                                                                       \
    } while (0)
    out[0] = '\0';
    if (u->scheme == MT_URI_SRV) {
        PUT("mongodb+srv://%s/", u->srv_host);
    } else {
        if (u->scheme == MT_URI_MONGODB)
            PUT("mongodb://");
        for (size_t i = 0; i < u->nhosts; i++)
            PUT(strchr(u->hosts[i].host, ':') ? "%s[%s]:%u" : "%s%s:%u", i ? "," : "",
                u->hosts[i].host, u->hosts[i].port);
        if (u->scheme == MT_URI_MONGODB)
            PUT("/");
    }
    if (u->scheme != MT_URI_HOSTPORT && (u->replica_set[0] || u->tls))
        PUT("?%s%s%s%s", u->replica_set[0] ? "replicaSet=" : "", u->replica_set,
            u->replica_set[0] && u->tls ? "&" : "", u->tls ? "tls=true" : "");
#undef PUT
}
