/*
 * run: COMMAND is a child of this process (uv_spawn, in a process group of
 * its own so that a signal reaches every process it started); the proxy runs
 * in the same loop, so there is no second mongotap to orphan. The verdict is
 * computed from the same /api/findings JSON that `mongotap baseline` reads.
 */
#include "run.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include <bson/bson.h>

#include "app.h"
#include "baseline.h"
#include "log.h"

extern char **environ;

const char *mt_run_upstream_source_str(mt_run_upstream_source_t s)
{
    switch (s) {
    case MT_RUN_UPSTREAM_FLAG:
        return "flag";
    case MT_RUN_UPSTREAM_ENV:
        return "env";
    case MT_RUN_UPSTREAM_URI:
        return "uri";
    case MT_RUN_UPSTREAM_DEFAULT:
        return "default";
    }
    return "unknown";
}

/* ---- connection strings ------------------------------------------------ */

/* mongodb[+srv]://[user@]hosts[/db][?options], as pointers into the text. */
typedef struct {
    bool srv;
    const char *user, *hosts, *db, *opts;
    size_t user_len, hosts_len, db_len, opts_len;
} uri_parts_t;

static int uri_split(const char *s, uri_parts_t *u)
{
    const char *p, *end, *at = NULL;

    memset(u, 0, sizeof(*u));
    if (strncmp(s, "mongodb://", 10) == 0) {
        p = s + 10;
    } else if (strncmp(s, "mongodb+srv://", 14) == 0) {
        u->srv = true;
        p = s + 14;
    } else {
        return -1;
    }
    end = p + strcspn(p, "/?");
    /* the user part ends at the last '@' before the path ('@' in a
     * password is percent-encoded, '/' and '?' too) */
    for (const char *q = p; q < end; q++)
        if (*q == '@')
            at = q;
    if (at) {
        u->user = p;
        u->user_len = (size_t)(at - p);
        p = at + 1;
    }
    u->hosts = p;
    u->hosts_len = (size_t)(end - p);
    p = end;
    if (*p == '/') {
        p++;
        u->db = p;
        u->db_len = strcspn(p, "?");
        p += u->db_len;
    }
    if (*p == '?') {
        u->opts = p + 1;
        u->opts_len = strlen(p + 1);
    }
    return u->hosts_len ? 0 : -1;
}

/* Options that describe how to reach the servers, not what the app does:
 * the proxy's business, never the app's once it talks to the proxy. */
static const char *const server_options[] = {
    "directConnection",
    "tls",
    "ssl",
    "tlsCAFile",
    "tlsCertificateKeyFile",
    "tlsCertificateKeyFilePassword",
    "tlsAllowInvalidCertificates",
    "tlsAllowInvalidHostnames",
    "tlsInsecure",
    "tlsDisableOCSPEndpointCheck",
    "tlsDisableCertificateRevocationCheck",
    "replicaSet",
    "loadBalanced",
    "srvServiceName",
    "srvMaxHosts",
    "heartbeatFrequencyMS",
    "connectTimeoutMS",
    NULL,
};
/* Of those, the ones the proxy's --upstream takes (SPEC section 10). */
static const char *const upstream_options[] = {
    "tls",
    "ssl",
    "tlsCAFile",
    "tlsCertificateKeyFile",
    "tlsAllowInvalidCertificates",
    "tlsAllowInvalidHostnames",
    "replicaSet",
    "directConnection",
    "heartbeatFrequencyMS",
    "connectTimeoutMS",
    NULL,
};

static bool option_in(const char *opt, size_t name_len, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (strlen(list[i]) == name_len && strncasecmp(opt, list[i], name_len) == 0)
            return true;
    return false;
}

/* A bounded string: appends stop at cap, and the overflow is remembered. */
typedef struct {
    char *buf;
    size_t cap, len;
    bool overflow;
} sbuf_t;

static void sb_add(sbuf_t *b, const char *s, size_t n)
{
    if (b->overflow || b->len + n >= b->cap) {
        b->overflow = true;
        return;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

static void sb_str(sbuf_t *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

/* Appends the options of u that are (keep) or are not (!keep) in list,
 * joined by '&'; returns how many. */
static size_t sb_options(sbuf_t *b, const uri_parts_t *u, const char *const *list, bool keep)
{
    const char *p = u->opts, *end = u->opts ? u->opts + u->opts_len : NULL;
    size_t n = 0;

    while (p && p < end) {
        size_t len = strcspn(p, "&;");
        if (p + len > end)
            len = (size_t)(end - p);
        size_t name_len = strcspn(p, "=&;");
        if (name_len > len)
            name_len = len;
        if (len > 0 && option_in(p, name_len, list) == keep) {
            if (n++)
                sb_str(b, "&");
            sb_add(b, p, len);
        }
        p += len + 1;
    }
    return n;
}

int mt_run_rewrite_uri(const char *old, const char *proxy_hostport, char *out, size_t cap)
{
    sbuf_t b = {out, cap, 0, cap == 0};
    uri_parts_t u;

    if (cap)
        out[0] = '\0';
    if (!old || uri_split(old, &u) != 0)
        memset(&u, 0, sizeof(u));
    sb_str(&b, "mongodb://");
    if (u.user_len) {
        /* credentials stay in the app: SCRAM passes through the proxy */
        sb_add(&b, u.user, u.user_len);
        sb_str(&b, "@");
    }
    sb_str(&b, proxy_hostport);
    sb_str(&b, "/");
    sb_add(&b, u.db ? u.db : "", u.db_len);
    sb_str(&b, "?");
    if (sb_options(&b, &u, server_options, false))
        sb_str(&b, "&");
    sb_str(&b, "directConnection=true");
    return b.overflow ? -1 : 0;
}

/* True when u needs the proxy to speak TLS or follow a replica set. */
static bool needs_connection_string(const uri_parts_t *u)
{
    const char *p = u->opts, *end = u->opts ? u->opts + u->opts_len : NULL;

    if (memchr(u->hosts, ',', u->hosts_len))
        return true;
    while (p && p < end) {
        size_t len = strcspn(p, "&;");
        if (p + len > end)
            len = (size_t)(end - p);
        if ((strncasecmp(p, "tls", 3) == 0 && strncasecmp(p, "tls=false", len) != 0) ||
            strncasecmp(p, "ssl=true", len) == 0 || strncasecmp(p, "replicaSet=", 11) == 0)
            return true;
        p += len + 1;
    }
    return false;
}

int mt_run_upstream_from_uri(const char *old, char *out, size_t cap, char *why, size_t whylen)
{
    sbuf_t b = {out, cap, 0, cap == 0};
    uri_parts_t u;

    if (cap)
        out[0] = '\0';
    if (!old || !*old) {
        snprintf(why, whylen, "unset");
        return -1;
    }
    if (uri_split(old, &u) != 0) {
        snprintf(why, whylen, "not a mongodb:// string with hosts");
        return -1;
    }
    if (u.srv) {
        snprintf(why, whylen, "a mongodb+srv:// string");
        return -1;
    }
    if (needs_connection_string(&u)) {
        sb_str(&b, "mongodb://");
        sb_add(&b, u.hosts, u.hosts_len);
        sb_str(&b, "/");
        if (u.opts_len) {
            sb_str(&b, "?");
            sb_options(&b, &u, upstream_options, true);
        }
    } else {
        /* one host: "h", "h:p", "[v6]" or "[v6]:p" */
        const char *close = u.hosts[0] == '[' ? memchr(u.hosts, ']', u.hosts_len) : NULL;
        const char *colon = close ? (close + 1 < u.hosts + u.hosts_len ? close + 1 : NULL)
                                  : memchr(u.hosts, ':', u.hosts_len);
        sb_add(&b, u.hosts, u.hosts_len);
        if (!colon)
            sb_str(&b, ":27017");
    }
    if (b.overflow) {
        snprintf(why, whylen, "too long");
        return -1;
    }
    return 0;
}

/* ---- options ----------------------------------------------------------- */

/* The caller's environment less what run decides itself. */
static mt_cli_getenv_fn outer_env;

static const char *run_env(const char *name)
{
    if (strcmp(name, "MONGOTAP_LISTEN") == 0 || strcmp(name, "MONGOTAP_ADMIN") == 0 ||
        strcmp(name, "MONGOTAP_UPSTREAM") == 0)
        return NULL;
    return outer_env ? outer_env(name) : NULL;
}

/* When arg is `flag` or `flag=...`. */
static bool is_flag(const char *arg, const char *flag)
{
    size_t n = strlen(flag);

    return strncmp(arg, flag, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

mt_cli_result_t mt_run_parse(int argc, char **argv, mt_cli_getenv_fn env, mt_run_opts_t *o,
                             char *err, size_t errlen)
{
    const char *value;
    mt_cli_result_t rc;
    int i;

    memset(o, 0, sizeof(*o));
    err[0] = '\0';
    mt_cli_defaults(&o->proxy);
    o->proxy.listen[0] = (mt_hostport_t){"127.0.0.1", 0};
    o->proxy.nlisten = 1;
    o->proxy.admin = (mt_hostport_t){"127.0.0.1", 0};
    o->proxy.log_level = MT_LOG_WARN;
    o->env_name = MT_RUN_DEFAULT_ENV;
    o->fail_types = MT_BASELINE_FAIL_ON_DEFAULT;
    outer_env = env;
    rc = mt_cli_apply_env(&o->proxy, run_env, err, errlen);
    outer_env = NULL;
    if (rc != MT_CLI_RUN)
        return rc;
    if (env && (value = env("MONGOTAP_UPSTREAM")) && *value) {
        o->upstream = value;
        o->upstream_source = MT_RUN_UPSTREAM_ENV;
    }

    for (i = 1; i < argc && !o->command; i++) {
        const char *arg = argv[i];

        if (strcmp(arg, "--") == 0) {
            if (i + 1 == argc)
                break;
            o->command = &argv[i + 1];
        } else if (arg[0] != '-') {
            o->command = &argv[i];
        } else if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            return MT_CLI_HELP;
        } else if (strcmp(arg, "-V") == 0 || strcmp(arg, "--version") == 0) {
            return MT_CLI_VERSION;
        } else if (strcmp(arg, "--fail-on-medium") == 0) {
            o->fail_medium = true;
        } else if (is_flag(arg, "--upstream") || is_flag(arg, "--env") ||
                   is_flag(arg, "--fail-on") || is_flag(arg, "--baseline") ||
                   is_flag(arg, "--write-baseline")) {
            char flag[32];
            snprintf(flag, sizeof(flag), "%.*s", (int)strcspn(arg, "="), arg);
            if (mt_cli_take_value(argc, argv, &i, flag, &value, err, errlen) != 0)
                return MT_CLI_ERROR;
            if (!*value) {
                snprintf(err, errlen, "%s: empty value", flag);
                return MT_CLI_ERROR;
            }
            if (strcmp(flag, "--upstream") == 0) {
                o->upstream = value;
                o->upstream_source = MT_RUN_UPSTREAM_FLAG;
            } else if (strcmp(flag, "--env") == 0) {
                if (strchr(value, '=')) {
                    snprintf(err, errlen, "--env: '%s' is not a variable name", value);
                    return MT_CLI_ERROR;
                }
                o->env_name = value;
            } else if (strcmp(flag, "--fail-on") == 0) {
                if (mt_baseline_parse_types(value, &o->fail_types, err, errlen) != 0)
                    return MT_CLI_ERROR;
            } else if (strcmp(flag, "--baseline") == 0) {
                o->baseline_path = value;
            } else {
                o->write_baseline_path = value;
            }
        } else if (mt_cli_is_option(arg)) {
            rc = mt_cli_apply_flag(&o->proxy, argc, argv, &i, err, errlen);
            if (rc != MT_CLI_RUN)
                return rc;
        } else {
            snprintf(err, errlen, "%.*s: unknown option (see mongotap run --help)",
                     (int)strcspn(arg, "="), arg);
            return MT_CLI_ERROR;
        }
    }
    if (!o->command) {
        snprintf(err, errlen, "missing COMMAND: mongotap run [options] -- COMMAND [ARGS...]");
        return MT_CLI_ERROR;
    }
    return mt_cli_finish(&o->proxy, err, errlen);
}

/* Applies value as the proxy's --upstream; err says what was wrong with it. */
static int apply_upstream(mt_cli_config_t *cfg, const char *value, char *err, size_t errlen)
{
    char *argv[] = {"--upstream", (char *)value, NULL};
    int i = 0;

    return mt_cli_apply_flag(cfg, 2, argv, &i, err, errlen) == MT_CLI_RUN ? 0 : -1;
}

int mt_run_resolve_upstream(mt_run_opts_t *o, mt_cli_getenv_fn env, char *why, size_t whylen,
                            char *err, size_t errlen)
{
    const char *old = env ? env(o->env_name) : NULL;
    char arg[MT_RUN_URI_MAX], reason[128], inner[400];

    if (o->upstream) {
        const char *from =
            o->upstream_source == MT_RUN_UPSTREAM_FLAG ? "--upstream" : "MONGOTAP_UPSTREAM";
        const char *value = o->upstream;
        /* a single-host connection string becomes the HOST:PORT the proxy takes */
        if (strncmp(value, "mongodb://", 10) == 0 &&
            mt_run_upstream_from_uri(value, arg, sizeof(arg), reason, sizeof(reason)) == 0)
            value = arg;
        snprintf(why, whylen, "from %s", from);
        if (apply_upstream(&o->proxy, value, inner, sizeof(inner)) != 0) {
            /* inner names --upstream and the value */
            if (o->upstream_source == MT_RUN_UPSTREAM_FLAG)
                snprintf(err, errlen, "%.400s", inner);
            else
                snprintf(err, errlen, "%s: %.400s", from, inner);
            return -1;
        }
        return 0;
    }
    if (mt_run_upstream_from_uri(old, arg, sizeof(arg), reason, sizeof(reason)) == 0) {
        o->upstream_source = MT_RUN_UPSTREAM_URI;
        snprintf(why, whylen, "from %s", o->env_name);
        if (apply_upstream(&o->proxy, arg, inner, sizeof(inner)) != 0) {
            snprintf(err, errlen, "%s: cannot forward to its servers: %.400s; pass --upstream",
                     o->env_name, inner);
            return -1;
        }
        return 0;
    }
    o->upstream_source = MT_RUN_UPSTREAM_DEFAULT;
    snprintf(why, whylen, "the default: %s is %s", o->env_name, reason);
    return apply_upstream(&o->proxy, "127.0.0.1:27017", err, errlen);
}

/* ---- running ----------------------------------------------------------- */

/* Static so that everything stays reachable until exit (the loop and h2o
 * hold pointers into it). */
static struct {
    uv_loop_t *loop;
    mt_run_opts_t opts;
    mt_app_t *app;
    mt_baseline_t baseline;
    char upstream_why[256];
    char proxy_uri[MT_RUN_URI_MAX];
    char command_line[512];
    char **env;
    uv_process_t child;
    uv_signal_t sigint, sigterm;
    uv_timer_t settle;
    uint64_t exited_ms;
    bool child_running;
    int64_t child_status;
    int child_signal;
    int spawn_error;
    int exit_code;
} run;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One line of the summary on stderr. */
static void say(const char *fmt, ...)
{
    va_list ap;

    fputs("mongotap run: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static const char *env_lookup(const char *name)
{
    return getenv(name);
}

/* environ with NAME, MONGOTAP_URI and MONGOTAP_ADMIN_URL set; NULL when out
 * of memory. */
static char **child_environment(const char *name, const char *uri, const char *admin)
{
    size_t n = 0, k = 0, namelen = strlen(name);
    char **env;

    while (environ[n])
        n++;
    env = calloc(n + 4, sizeof(*env));
    if (!env)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const char *e = environ[i];
        if ((strncmp(e, name, namelen) == 0 && e[namelen] == '=') ||
            strncmp(e, "MONGOTAP_URI=", 13) == 0 || strncmp(e, "MONGOTAP_ADMIN_URL=", 19) == 0)
            continue;
        env[k++] = (char *)e;
    }
    /* the three we add are the allocated ones, at the end */
    env[k++] = bson_strdup_printf("%s=%s", name, uri);
    if (strcmp(name, "MONGOTAP_URI") != 0)
        env[k++] = bson_strdup_printf("MONGOTAP_URI=%s", uri);
    if (admin)
        env[k++] = bson_strdup_printf("MONGOTAP_ADMIN_URL=http://%s", admin);
    return env;
}

static void describe_command(char **command, char *out, size_t cap)
{
    size_t used = 0;

    out[0] = '\0';
    for (size_t i = 0; command[i] && used < cap; i++)
        used += (size_t)snprintf(out + used, cap - used, "%s%s", i ? " " : "", command[i]);
}

/* Findings of a type and confidence, for the summary's first line. */
static void say_counts(const mt_baseline_t *patterns)
{
    char line[512];
    size_t used = 0;

    line[0] = '\0';
    for (int t = 0; t < MT_BASELINE_TYPE__COUNT; t++) {
        uint64_t high = 0, medium = 0;
        for (size_t i = 0; i < patterns->n; i++) {
            const mt_baseline_entry_t *p = &patterns->entries[i];
            if (mt_baseline_type_parse(p->type) != t)
                continue;
            if (p->high)
                high += p->occurrences;
            else
                medium += p->occurrences;
        }
        if (high + medium && used < sizeof(line))
            used +=
                (size_t)snprintf(line + used, sizeof(line) - used, "%s%s %llu high, %llu medium",
                                 used ? "; " : "", mt_baseline_type_str((mt_baseline_type_t)t),
                                 (unsigned long long)high, (unsigned long long)medium);
    }
    say("findings: %s", used ? line : "none");
}

/* "n_plus_one high: db.show find {} -> db.channel find {...}, field channel";
 * a baseline entry has no confidence to show. */
static void describe_pattern(const mt_baseline_entry_t *p, bool is_pattern, char *out, size_t cap)
{
    char parent[1200], children[1200];
    const char *conf = !is_pattern ? "" : p->high ? " high" : " medium";

    mt_baseline_cmd_format(&p->children, children, sizeof(children));
    if (p->has_parent) {
        mt_baseline_cmd_format(&p->parent, parent, sizeof(parent));
        snprintf(out, cap, "%s%s: %s -> %s, field %s", p->type, conf, parent, children,
                 p->field ? p->field : "null");
    } else {
        snprintf(out, cap, "%s%s: %s", p->type, conf, children);
    }
}

static void say_patterns(const mt_baseline_t *patterns, const mt_baseline_t *baseline)
{
    char what[3000];

    for (size_t i = 0; i < patterns->n; i++) {
        const mt_baseline_entry_t *p = &patterns->entries[i];
        describe_pattern(p, true, what, sizeof(what));
        say("%s %s (%llu finding(s), %llu child command(s), %.1f ms)",
            p->matched   ? "baselined"
            : p->failing ? "NEW"
                         : "new (not gating)",
            what, (unsigned long long)p->occurrences, (unsigned long long)p->child_commands,
            p->child_ms);
        if (!p->matched && p->suggestion && *p->suggestion)
            say("    fix: %s", p->suggestion);
    }
    for (size_t k = 0; k < baseline->n; k++) {
        const mt_baseline_entry_t *e = &baseline->entries[k];
        if (e->matched)
            continue;
        describe_pattern(e, false, what, sizeof(what));
        say("stale baseline entry %zu: %s no longer occurs; remove it from %s", k + 1, what,
            run.opts.baseline_path);
    }
}

static void fail_types_str(char *out, size_t cap)
{
    size_t used = 0;

    out[0] = '\0';
    for (int t = 0; t < MT_BASELINE_TYPE__COUNT && used < cap; t++)
        if (run.opts.fail_types & (1u << t))
            used += (size_t)snprintf(out + used, cap - used, "%s%s", used ? ", " : "",
                                     mt_baseline_type_str((mt_baseline_type_t)t));
    if (!used)
        snprintf(out, cap, "none");
}

/* The verdict line, shared by stderr and the step summary. */
static void verdict_str(const mt_baseline_verdict_t *v, char *out, size_t cap)
{
    char types[128];

    fail_types_str(types, sizeof(types));
    if (run.spawn_error)
        snprintf(out, cap, "FAIL: `%s` could not be started (%s)", run.command_line,
                 uv_strerror(run.spawn_error));
    else if (run.child_signal)
        snprintf(out, cap, "FAIL: `%s` was killed by signal %d", run.command_line,
                 run.child_signal);
    else if (run.child_status)
        snprintf(out, cap, "FAIL: `%s` exited with status %lld", run.command_line,
                 (long long)run.child_status);
    else if (v->failing)
        snprintf(out, cap,
                 "FAIL: %zu new %s pattern(s) of a --fail-on type (%s) match no baseline entry",
                 v->failing, run.opts.fail_medium ? "high or medium confidence" : "high-confidence",
                 types);
    else
        snprintf(out, cap, "ok: `%s` passed; no new %sfinding of a --fail-on type (%s)",
                 run.command_line, run.opts.fail_medium ? "" : "high-confidence ", types);
}

/* Appends the verdict and the Markdown report to $GITHUB_STEP_SUMMARY. */
static void write_step_summary(const char *verdict, const mt_baseline_verdict_t *v)
{
    const char *path = getenv("GITHUB_STEP_SUMMARY");
    char *md;
    FILE *f;

    if (!path || !*path)
        return;
    md = mt_stats_report(mt_app_stats(run.app), MT_REPORT_MARKDOWN, uv_hrtime());
    f = fopen(path, "a");
    if (!f || !md) {
        say("cannot append to GITHUB_STEP_SUMMARY %s: %s", path,
            f ? "out of memory" : strerror(errno));
        run.exit_code = run.exit_code ? run.exit_code : MT_RUN_EXIT_INTERNAL;
    } else {
        fprintf(f,
                "## mongotap run\n\n**%s**\n\n%zu new pattern(s), %zu baselined, %zu stale "
                "baseline entr%s.\n\n%s\n",
                verdict, v->fresh, v->baselined, v->stale, v->stale == 1 ? "y" : "ies", md);
    }
    if (f && fclose(f) != 0)
        say("cannot append to GITHUB_STEP_SUMMARY %s: %s", path, strerror(errno));
    bson_free(md);
}

/* Everything is closed and analysed: the summary and the verdict. */
static void conclude(void)
{
    mt_baseline_t patterns;
    mt_baseline_verdict_t v;
    char err[512], verdict[1024];
    char *json = mt_stats_findings_json(mt_app_stats(run.app));
    int internal = mt_app_exit_code(run.app);

    mt_baseline_init(&patterns);
    memset(&v, 0, sizeof(v));
    if (!json || mt_baseline_from_findings(&patterns, json, strlen(json), err, sizeof(err)) != 0) {
        say("cannot read the findings: %s", json ? err : "out of memory");
        internal = 1;
    }
    bson_free(json);
    mt_baseline_check(&run.baseline, &patterns, run.opts.fail_types, run.opts.fail_medium, &v);

    say_counts(&patterns);
    say("%zu pattern(s): %zu new, %zu baselined; %zu stale baseline entr%s", patterns.n, v.fresh,
        v.baselined, v.stale, v.stale == 1 ? "y" : "ies");
    say_patterns(&patterns, &run.baseline);
    if (run.opts.write_baseline_path) {
        if (mt_baseline_save(&patterns, run.opts.write_baseline_path, err, sizeof(err)) != 0) {
            say("--write-baseline: %s", err);
            internal = 1;
        } else {
            say("baseline of %zu pattern(s) written to %s; fill in each reason", patterns.n,
                run.opts.write_baseline_path);
        }
    }

    if (run.spawn_error)
        run.exit_code =
            run.spawn_error == UV_ENOENT ? MT_RUN_EXIT_NOT_FOUND : MT_RUN_EXIT_NOT_EXECUTABLE;
    else if (run.child_signal)
        run.exit_code = 128 + run.child_signal;
    else if (run.child_status)
        run.exit_code = (int)run.child_status;
    else if (v.failing)
        run.exit_code = 1;
    else if (internal)
        run.exit_code = MT_RUN_EXIT_INTERNAL;
    verdict_str(&v, verdict, sizeof(verdict));
    write_step_summary(verdict, &v);
    say("%s (exit %d)", verdict, run.exit_code);
    mt_baseline_clear(&patterns);
}

static void stopped_cb(mt_app_t *app, void *data)
{
    (void)app;
    (void)data;
    conclude();
    uv_close((uv_handle_t *)&run.sigint, NULL);
    uv_close((uv_handle_t *)&run.sigterm, NULL);
    uv_stop(run.loop);
}

/* Waits (a little) for COMMAND's connections to close on their own, so that
 * what they sent last is read and accounted, then stops the proxy. */
static void settle_cb(uv_timer_t *t)
{
    if (mt_app_sessions(run.app) > 0 && uv_now(run.loop) - run.exited_ms < MT_RUN_SETTLE_MS)
        return;
    uv_close((uv_handle_t *)t, NULL);
    mt_app_stop(run.app, stopped_cb, NULL);
}

static void finish_child(void)
{
    run.exited_ms = uv_now(run.loop);
    uv_timer_init(run.loop, &run.settle);
    uv_timer_start(&run.settle, settle_cb, 0, 10);
}

/* Live processes of group pgid, from /proc (a zombie whose parent has not
 * reaped it yet is not one). */
static size_t live_in_group(int pgid)
{
    uv_fs_t req;
    uv_dirent_t ent;
    size_t n = 0;

    if (uv_fs_scandir(NULL, &req, "/proc", 0, NULL) < 0) {
        uv_fs_req_cleanup(&req);
        return uv_kill(-pgid, 0) == 0;
    }
    while (uv_fs_scandir_next(&req, &ent) != UV_EOF) {
        char path[64], stat[512], state;
        const char *close;
        int ppid, pgrp;
        FILE *f;
        if (ent.name[0] < '0' || ent.name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/stat", ent.name);
        if (!(f = fopen(path, "r")))
            continue;
        /* "pid (comm) state ppid pgrp ...": comm may hold anything, so
         * read on from its last ')' */
        if (fgets(stat, sizeof(stat), f) && (close = strrchr(stat, ')')) &&
            sscanf(close + 1, " %c %d %d", &state, &ppid, &pgrp) == 3 && pgrp == pgid &&
            state != 'Z')
            n++;
        fclose(f);
    }
    uv_fs_req_cleanup(&req);
    return n;
}

static void exit_cb(uv_process_t *p, int64_t status, int term_signal)
{
    int pid = p->pid;
    size_t left;

    run.child_running = false;
    run.child_status = status;
    run.child_signal = term_signal;
    uv_close((uv_handle_t *)p, NULL);
    /* no process of COMMAND's group outlives the run */
    left = live_in_group(pid);
    if (left > 0) {
        say("%zu process(es) COMMAND started are still running: sending them SIGTERM", left);
        uv_kill(-pid, SIGTERM);
    }
    finish_child();
}

static void signal_cb(uv_signal_t *sig, int signum)
{
    (void)sig;
    if (run.child_running) {
        say("%s: passing it on to COMMAND", strsignal(signum));
        if (uv_kill(-run.child.pid, signum) != 0)
            uv_process_kill(&run.child, signum);
        return;
    }
    /* COMMAND is gone and the proxy is draining: stop now */
    say("%s: stopping now", strsignal(signum));
    mt_app_write_report(run.app, true);
    exit(128 + signum);
}

int mt_run_main(int argc, char **argv)
{
    char err[1024], host[MT_CLI_HOST_MAX + 8];
    uv_process_options_t po;
    uv_stdio_container_t stdio[3];
    const char *old;
    int rc;

    int done = mt_cli_outcome(mt_run_parse(argc, argv, env_lookup, &run.opts, err, sizeof(err)),
                              "mongotap run", err);
    if (done >= 0)
        return done;
    old = getenv(run.opts.env_name);
    if (mt_run_resolve_upstream(&run.opts, env_lookup, run.upstream_why, sizeof(run.upstream_why),
                                err, sizeof(err)) != 0) {
        fprintf(stderr, "mongotap run: %s\n", err);
        return 2;
    }
    mt_baseline_init(&run.baseline);
    if (run.opts.baseline_path &&
        mt_baseline_load(&run.baseline, run.opts.baseline_path, err, sizeof(err)) != 0) {
        fprintf(stderr, "mongotap run: --baseline %s\n", err);
        return 2;
    }
    mt_log_threshold = (mt_log_level_t)run.opts.proxy.log_level;
    signal(SIGPIPE, SIG_IGN); /* libuv resets signals in the child */
    describe_command(run.opts.command, run.command_line, sizeof(run.command_line));

    run.loop = uv_default_loop();
    if (mt_app_start(run.loop, &run.opts.proxy, &run.app) != 0)
        return MT_RUN_EXIT_INTERNAL;
    /* the first listener is the one COMMAND is told about */
    snprintf(host, sizeof(host), "%.*s", (int)strcspn(mt_app_listen_bound(run.app), ","),
             mt_app_listen_bound(run.app));
    if (mt_run_rewrite_uri(old, host, run.proxy_uri, sizeof(run.proxy_uri)) != 0) {
        fprintf(stderr, "mongotap run: %s is too long to rewrite\n", run.opts.env_name);
        return 2;
    }
    run.env = child_environment(run.opts.env_name, run.proxy_uri,
                                run.opts.proxy.admin_enabled ? mt_app_admin_bound(run.app) : NULL);
    if (!run.env) {
        fprintf(stderr, "mongotap run: out of memory\n");
        return MT_RUN_EXIT_INTERNAL;
    }
    {
        char up[MT_CLI_HOST_MAX + 8];
        mt_cli_format_hostport(&run.opts.proxy.upstream, up, sizeof(up));
        say("proxy on %s, forwarding to %s (%s); COMMAND gets %s=%s", host, up, run.upstream_why,
            run.opts.env_name, run.proxy_uri);
    }

    uv_signal_init(run.loop, &run.sigint);
    uv_signal_start(&run.sigint, signal_cb, SIGINT);
    uv_signal_init(run.loop, &run.sigterm);
    uv_signal_start(&run.sigterm, signal_cb, SIGTERM);

    memset(&po, 0, sizeof(po));
    for (int fd = 0; fd < 3; fd++) {
        stdio[fd].flags = UV_INHERIT_FD;
        stdio[fd].data.fd = fd;
    }
    po.file = run.opts.command[0];
    po.args = run.opts.command;
    po.env = run.env;
    po.stdio = stdio;
    po.stdio_count = 3;
    po.exit_cb = exit_cb;
    /* a process group of its own (setsid): a signal passed on reaches what
     * COMMAND started too, and what is left of the group can be found */
    po.flags = UV_PROCESS_DETACHED;
    rc = uv_spawn(run.loop, &run.child, &po);
    if (rc != 0) {
        say("cannot start %s: %s", run.opts.command[0], uv_strerror(rc));
        run.spawn_error = rc;
        uv_close((uv_handle_t *)&run.child, NULL);
        finish_child();
    } else {
        run.child_running = true;
    }
    uv_run(run.loop, UV_RUN_DEFAULT);
    return run.exit_code;
}
