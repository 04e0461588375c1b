/*
 * cli: one table describes every option (flag, environment name, parser), so
 * that the environment and the flags can never disagree; the --help text
 * (usage.txt) is compiled in and also becomes the manual page.
 */
#include "cli.h"

#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "log.h"
#include "stats.h"

typedef enum {
    OPT_HOSTPORT,
    OPT_UPSTREAM,
    OPT_ADMIN,
    OPT_STRING,
    OPT_U64,
    OPT_U32,
    OPT_LEVEL,
    OPT_BOOL,
    OPT_NAMESPACE,
    OPT_REGEX,
} opt_kind_t;

typedef struct {
    const char *flag;
    const char *env;
    opt_kind_t kind;
    size_t offset;
    uint64_t min, max; /* numeric bounds */
} opt_t;

#define OFF(f) offsetof(mt_cli_config_t, f)

static const opt_t options[] = {
    {"--listen", "MONGOTAP_LISTEN", OPT_HOSTPORT, OFF(listen), 0, 0},
    {"--tls-listen", "MONGOTAP_TLS_LISTEN", OPT_HOSTPORT, OFF(tls_listen), 0, 0},
    {"--tls-cert", "MONGOTAP_TLS_CERT", OPT_STRING, OFF(tls_cert), 0, 0},
    {"--tls-key", "MONGOTAP_TLS_KEY", OPT_STRING, OFF(tls_key), 0, 0},
    {"--upstream", "MONGOTAP_UPSTREAM", OPT_UPSTREAM, OFF(upstream), 0, 0},
    {"--dns-server", "MONGOTAP_DNS_SERVER", OPT_STRING, OFF(dns_server), 0, 0},
    {"--admin", "MONGOTAP_ADMIN", OPT_ADMIN, OFF(admin), 0, 0},
    {"--admin-token", "MONGOTAP_ADMIN_TOKEN", OPT_STRING, OFF(admin_token), 0, 0},
    {"--window-gap-ms", "MONGOTAP_WINDOW_GAP_MS", OPT_U64, OFF(window_gap_ms), 1, 86400000},
    {"--window-max-ms", "MONGOTAP_WINDOW_MAX_MS", OPT_U64, OFF(window_max_ms), 1, 86400000},
    {"--n1-threshold", "MONGOTAP_N1_THRESHOLD", OPT_U32, OFF(n1_threshold), 2, 1000000},
    {"--findings-log", "MONGOTAP_FINDINGS_LOG", OPT_STRING, OFF(findings_log), 0, 0},
    {"--report", "MONGOTAP_REPORT", OPT_STRING, OFF(report_path), 0, 0},
    {"--max-connections", "MONGOTAP_MAX_CONNECTIONS", OPT_U32, OFF(max_connections), 1, 1000000},
    {"--max-shapes", "MONGOTAP_MAX_SHAPES", OPT_U32, OFF(max_shapes), 1, 10000000},
    {"--keep-windows", "MONGOTAP_KEEP_WINDOWS", OPT_U32, OFF(keep_windows), 1, MT_WINDOW_KEEP_MAX},
    {"--log-level", "MONGOTAP_LOG_LEVEL", OPT_LEVEL, OFF(log_level), 0, 0},
    {"--log-values", "MONGOTAP_LOG_VALUES", OPT_BOOL, OFF(log_values), 0, 0},
    {"--ignore-ns", "MONGOTAP_IGNORE_NS", OPT_NAMESPACE, OFF(ignore_ns), 0, 0},
    {"--redact-fields", "MONGOTAP_REDACT_FIELDS", OPT_REGEX, OFF(redact_fields), 0, 0},
};

void mt_cli_defaults(mt_cli_config_t *cfg)
{
    char err[8];

    memset(cfg, 0, sizeof(*cfg));
    mt_uri_parse("127.0.0.1:27017", &cfg->upstream_uri, err, sizeof(err));
    cfg->upstream = cfg->upstream_uri.hosts[0];
    cfg->admin_enabled = true;
    cfg->admin = (mt_hostport_t){"127.0.0.1", 27080};
    cfg->window_gap_ms = 100;
    cfg->window_max_ms = 30000;
    cfg->n1_threshold = 5;
    cfg->max_connections = 10000;
    cfg->max_shapes = 10000;
    cfg->keep_windows = MT_WINDOW_KEEP_DEFAULT;
    cfg->log_level = MT_LOG_INFO;
}

int mt_cli_parse_hostport(const char *s, mt_hostport_t *out)
{
    return mt_uri_parse_hostport(s, strlen(s), 0, out);
}

void mt_cli_format_hostport(const mt_hostport_t *hp, char *out, size_t cap)
{
    if (strchr(hp->host, ':'))
        snprintf(out, cap, "[%s]:%u", hp->host, hp->port);
    else
        snprintf(out, cap, "%s:%u", hp->host, hp->port);
}

bool mt_cli_is_loopback(const char *host)
{
    unsigned char a[16];

    /* whole addresses only: "127.evil.example" is a name like any other */
    if (uv_inet_pton(AF_INET, host, a) == 0)
        return a[0] == 127;
    if (uv_inet_pton(AF_INET6, host, a) == 0)
        return memcmp(a, &in6addr_loopback, sizeof(a)) == 0;
    return strcasecmp(host, "localhost") == 0;
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (!*s || *s == '-' || *s == '+' || *s == ' ')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off", ""};

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (strcasecmp(s, yes[i]) == 0)
            return *out = true, 0;
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (strcasecmp(s, no[i]) == 0)
            return *out = false, 0;
    return -1;
}

/* "db.collection" or "db.*": a database name and a collection name, both
 * non-empty, within MongoDB's namespace length. */
static int add_namespace(mt_cli_config_t *cfg, const char *s, size_t len)
{
    const char *dot = memchr(s, '.', len);

    if (!dot || dot == s || dot + 1 == s + len || len >= MT_CLI_NS_MAX || memchr(s, ' ', len))
        return -1;
    for (size_t i = 0; i < cfg->nignore_ns; i++)
        if (strlen(cfg->ignore_ns[i]) == len && memcmp(cfg->ignore_ns[i], s, len) == 0)
            return 0;
    if (cfg->nignore_ns == MT_CLI_MAX_IGNORE_NS)
        return -2;
    memcpy(cfg->ignore_ns[cfg->nignore_ns], s, len);
    cfg->ignore_ns[cfg->nignore_ns][len] = '\0';
    cfg->nignore_ns++;
    return 0;
}

/* Applies one value; `from` names the flag or variable in the error line. */
static int apply(const opt_t *o, const char *value, const char *from, mt_cli_config_t *cfg,
                 char *err, size_t errlen)
{
    char *field = (char *)cfg + o->offset;
    uint64_t n;

    switch (o->kind) {
    case OPT_HOSTPORT: {
        /* listen lists (plain and TLS); the environment form takes a
         * comma-separated list; flags win: the first flag drops the default
         * or the environment's list */
        bool tls = o->offset == OFF(tls_listen);
        size_t *count = tls ? &cfg->ntls_listen : &cfg->nlisten;
        bool *from_flags = tls ? &cfg->tls_listen_from_flags : &cfg->listen_from_flags;
        mt_hostport_t *list = (mt_hostport_t *)field;
        char buf[1024];
        char *save = NULL, *tok;
        if (from == o->env) {
            *count = 0;
        } else if (!*from_flags) {
            *count = 0;
            *from_flags = true;
        }
        if (strlen(value) >= sizeof(buf))
            goto bad;
        strcpy(buf, value);
        for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            if (*count == MT_CLI_MAX_LISTEN) {
                snprintf(err, errlen, "%s: at most %d listen addresses", from, MT_CLI_MAX_LISTEN);
                return -1;
            }
            if (mt_cli_parse_hostport(tok, &list[*count]) != 0)
                goto bad;
            (*count)++;
        }
        if (*count == 0)
            goto bad;
        return 0;
    }
    case OPT_UPSTREAM: {
        char why[384];
        if (mt_uri_parse(value, &cfg->upstream_uri, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "%s: %s", from, why);
            return -1;
        }
        memset(&cfg->upstream, 0, sizeof(cfg->upstream));
        if (cfg->upstream_uri.nhosts)
            cfg->upstream = cfg->upstream_uri.hosts[0];
        return 0;
    }
    case OPT_ADMIN:
        if (strcasecmp(value, "off") == 0) {
            cfg->admin_enabled = false;
            return 0;
        }
        if (mt_cli_parse_hostport(value, &cfg->admin) != 0)
            goto bad;
        cfg->admin_enabled = true;
        return 0;
    case OPT_STRING:
        if (!*value)
            goto bad;
        *(const char **)field = value;
        return 0;
    case OPT_U64:
        if (parse_u64(value, o->min, o->max, &n) != 0)
            goto bad_range;
        *(uint64_t *)field = n;
        return 0;
    case OPT_U32:
        if (parse_u64(value, o->min, o->max, &n) != 0)
            goto bad_range;
        *(uint32_t *)field = (uint32_t)n;
        return 0;
    case OPT_LEVEL: {
        int level = mt_log_level_parse(value);
        if (level < 0) {
            snprintf(err, errlen, "%s: '%s' is not one of error, warn, info, debug", from, value);
            return -1;
        }
        *(int *)field = level;
        return 0;
    }
    case OPT_BOOL:
        if (parse_bool(value, (bool *)field) != 0)
            goto bad;
        return 0;
    case OPT_NAMESPACE:
        /* the environment form takes a comma-separated list; flags add to it */
        for (const char *p = value, *comma;; p = comma + 1) {
            comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            int rc = len ? add_namespace(cfg, p, len) : 0;
            if (rc == -2) {
                snprintf(err, errlen, "%s: at most %d namespaces", from, MT_CLI_MAX_IGNORE_NS);
                return -1;
            }
            if (rc != 0 || (!comma && p == value && len == 0))
                goto bad;
            if (!comma)
                break;
        }
        return 0;
    case OPT_REGEX: {
        /* compiled here only to refuse a bad pattern at start-up */
        regex_t re;
        if (!*value)
            goto bad;
        int rc = regcomp(&re, value, REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            char why[128];
            regerror(rc, &re, why, sizeof(why));
            snprintf(err, errlen, "%s: invalid regular expression '%s': %s", from, value, why);
            return -1;
        }
        regfree(&re);
        *(const char **)field = value;
        return 0;
    }
    }
bad:
    snprintf(err, errlen, "%s: invalid value '%s'%s", from, value,
             o->kind == OPT_HOSTPORT    ? " (expected HOST:PORT)"
             : o->kind == OPT_ADMIN     ? " (expected HOST:PORT or off)"
             : o->kind == OPT_NAMESPACE ? " (expected DB.COLLECTION or DB.*)"
                                        : "");
    return -1;
bad_range:
    snprintf(err, errlen, "%s: invalid value '%s' (expected a whole number from %llu to %llu)",
             from, value, (unsigned long long)o->min, (unsigned long long)o->max);
    return -1;
}

static const opt_t *find_flag(const char *arg, size_t len)
{
    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++)
        if (strlen(options[i].flag) == len && strncmp(options[i].flag, arg, len) == 0)
            return &options[i];
    return NULL;
}

bool mt_cli_is_option(const char *arg)
{
    const char *eq = strchr(arg, '=');

    return strncmp(arg, "--", 2) == 0 && find_flag(arg, eq ? (size_t)(eq - arg) : strlen(arg));
}

mt_cli_result_t mt_cli_apply_env(mt_cli_config_t *cfg, mt_cli_getenv_fn env, char *err,
                                 size_t errlen)
{
    for (size_t k = 0; env && k < sizeof(options) / sizeof(options[0]); k++) {
        const char *v = env(options[k].env);
        /* containers often pass empty variables: treat them as unset */
        if (v && *v && apply(&options[k], v, options[k].env, cfg, err, errlen) != 0)
            return MT_CLI_ERROR;
    }
    return MT_CLI_RUN;
}

int mt_cli_take_value(int argc, char **argv, int *i, const char *flag, const char **value,
                      char *err, size_t errlen)
{
    const char *eq = strchr(argv[*i], '=');

    if (eq) {
        *value = eq + 1;
        return 0;
    }
    if (*i + 1 < argc && strncmp(argv[*i + 1], "--", 2) != 0) {
        *value = argv[++*i];
        return 0;
    }
    if (*i + 1 < argc)
        /* `--listen --admin x`: the value was forgotten, the next option is not it */
        snprintf(err, errlen,
                 "%s: missing value (found the option '%s' instead; write %s=VALUE for a value "
                 "that starts with --)",
                 flag, argv[*i + 1], flag);
    else
        snprintf(err, errlen, "%s: missing value", flag);
    return -1;
}

mt_cli_result_t mt_cli_apply_flag(mt_cli_config_t *cfg, int argc, char **argv, int *i, char *err,
                                  size_t errlen)
{
    const char *arg = argv[*i];
    const char *eq, *value;
    const opt_t *o;

    if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)
        return MT_CLI_HELP;
    if (strcmp(arg, "-V") == 0 || strcmp(arg, "--version") == 0)
        return MT_CLI_VERSION;
    eq = strchr(arg, '=');
    o = strncmp(arg, "--", 2) == 0 ? find_flag(arg, eq ? (size_t)(eq - arg) : strlen(arg)) : NULL;
    if (!o) {
        snprintf(err, errlen, "%.*s: unknown option (see --help)",
                 (int)(eq ? (size_t)(eq - arg) : strlen(arg)), arg);
        return MT_CLI_ERROR;
    }
    if (o->kind == OPT_BOOL && !eq)
        value = "true";
    else if (mt_cli_take_value(argc, argv, i, o->flag, &value, err, errlen) != 0)
        return MT_CLI_ERROR;
    return apply(o, value, o->flag, cfg, err, errlen) == 0 ? MT_CLI_RUN : MT_CLI_ERROR;
}

mt_cli_result_t mt_cli_finish(mt_cli_config_t *cfg, char *err, size_t errlen)
{
    if (cfg->ntls_listen && (!cfg->tls_cert || !cfg->tls_key)) {
        snprintf(err, errlen, "--tls-listen: needs --tls-cert FILE and --tls-key FILE (PEM)");
        return MT_CLI_ERROR;
    }
    if (!cfg->ntls_listen && (cfg->tls_cert || cfg->tls_key)) {
        snprintf(err, errlen, "%s: given without --tls-listen HOST:PORT",
                 cfg->tls_cert ? "--tls-cert" : "--tls-key");
        return MT_CLI_ERROR;
    }
    if (cfg->nlisten == 0 && cfg->ntls_listen == 0) {
        cfg->listen[0] = (mt_hostport_t){"127.0.0.1", 27018};
        cfg->nlisten = 1;
    }
    if (cfg->window_max_ms < cfg->window_gap_ms) {
        snprintf(err, errlen, "--window-max-ms: must be at least --window-gap-ms (%llu)",
                 (unsigned long long)cfg->window_gap_ms);
        return MT_CLI_ERROR;
    }
    return MT_CLI_RUN;
}

mt_cli_result_t mt_cli_parse(int argc, char **argv, mt_cli_getenv_fn env, mt_cli_config_t *cfg,
                             char *err, size_t errlen)
{
    mt_cli_result_t rc;
    int i = 1;

    mt_cli_defaults(cfg);
    err[0] = '\0';
    if (i < argc && strcmp(argv[i], "proxy") == 0)
        i++;
    rc = mt_cli_apply_env(cfg, env, err, errlen);
    for (; rc == MT_CLI_RUN && i < argc; i++)
        rc = mt_cli_apply_flag(cfg, argc, argv, &i, err, errlen);
    return rc == MT_CLI_RUN ? mt_cli_finish(cfg, err, errlen) : rc;
}

int mt_cli_outcome(mt_cli_result_t r, const char *prog, const char *err)
{
    switch (r) {
    case MT_CLI_HELP:
        fputs(mt_cli_usage, stdout);
        return 0;
    case MT_CLI_VERSION:
        printf("mongotap %s\n", MT_VERSION);
        return 0;
    case MT_CLI_ERROR:
        fprintf(stderr, "%s: %s\n", prog, err);
        return 2;
    case MT_CLI_RUN:
        break;
    }
    return -1;
}

int mt_cli_getopt_error(const char *cmd, int opt, char **argv, int optind_now)
{
    if (opt == ':')
        fprintf(stderr, "mongotap %s: %s: missing value\n", cmd, argv[optind_now - 1]);
    else
        fprintf(stderr, "mongotap %s: unknown flag '%s'\n", cmd, argv[optind_now - 1]);
    return 2;
}

bool mt_cli_extra_argument(const char *cmd, int argc, char **argv, int optind_now)
{
    if (optind_now >= argc)
        return false;
    fprintf(stderr, "mongotap %s: unexpected argument '%s'\n", cmd, argv[optind_now]);
    return true;
}
