/*
 * cli: the proxy's options, from flags and MONGOTAP_* environment variables
 * (flags win). Parsing is pure so that it can be unit tested.
 */
#ifndef MT_CLI_H
#define MT_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uri.h"

#define MT_CLI_MAX_LISTEN 16
#define MT_CLI_HOST_MAX MT_URI_HOST_MAX
#define MT_CLI_MAX_IGNORE_NS 64
#define MT_CLI_NS_MAX 256 /* "db.collection": MongoDB's own limit is 255 bytes */

typedef struct {
    mt_hostport_t listen[MT_CLI_MAX_LISTEN];
    size_t nlisten;
    mt_hostport_t tls_listen[MT_CLI_MAX_LISTEN];
    size_t ntls_listen;
    const char *tls_cert;   /* PEM certificate chain for --tls-listen */
    const char *tls_key;    /* PEM private key for --tls-listen */
    const char *dns_server; /* IP:PORT for every look-up, NULL: the system's */
    mt_hostport_t upstream; /* the first seed (empty host for mongodb+srv) */
    mt_uri_t upstream_uri;  /* --upstream as parsed */
    bool admin_enabled;
    mt_hostport_t admin;
    const char *admin_token; /* NULL when none; points into argv or the environment */
    uint64_t window_gap_ms;
    uint64_t window_max_ms;
    uint32_t n1_threshold;
    const char *findings_log; /* NULL when none */
    const char *report_path;  /* NULL when none */
    uint32_t max_connections;
    uint32_t max_shapes;
    uint32_t keep_windows; /* closed windows kept for /api/windows */
    int log_level;         /* mt_log_level_t */
    bool log_values;
    const char *redact_fields; /* POSIX extended regex (checked to compile), or NULL */
    /* --ignore-ns: "db.collection" or "db.*" */
    char ignore_ns[MT_CLI_MAX_IGNORE_NS][MT_CLI_NS_MAX];
    size_t nignore_ns;
    /* parsing state: a --listen (--tls-listen) flag has replaced the default
     * or the environment's list, later ones add to it */
    bool listen_from_flags;
    bool tls_listen_from_flags;
} mt_cli_config_t;

typedef enum {
    MT_CLI_RUN = 0,
    MT_CLI_HELP,
    MT_CLI_VERSION,
    MT_CLI_ERROR,
} mt_cli_result_t;

/* Looks up an environment variable; getenv in production, a table in tests. */
typedef const char *(*mt_cli_getenv_fn)(const char *name);

void mt_cli_defaults(mt_cli_config_t *cfg);

/* Parses the proxy's arguments (argv[0] is the program or "proxy"). On
 * MT_CLI_ERROR, err holds one line naming the flag. */
mt_cli_result_t mt_cli_parse(int argc, char **argv, mt_cli_getenv_fn env, mt_cli_config_t *cfg,
                             char *err, size_t errlen);

/* The steps of mt_cli_parse, for a subcommand that takes the proxy options
 * beside its own (`mongotap run`): defaults, then the environment, then each
 * flag, then mt_cli_finish. */
mt_cli_result_t mt_cli_apply_env(mt_cli_config_t *cfg, mt_cli_getenv_fn env, char *err,
                                 size_t errlen);
/* True when arg ("--flag" or "--flag=value") is a proxy option. */
bool mt_cli_is_option(const char *arg);
/* Applies the option at argv[*i] (its value is "=..." or the next argument)
 * and moves *i to the last argument it used. */
mt_cli_result_t mt_cli_apply_flag(mt_cli_config_t *cfg, int argc, char **argv, int *i, char *err,
                                  size_t errlen);
/* The value of the option at argv[*i] named flag: after '=' in the same
 * argument, else the next argument (then *i moves to it). A next argument
 * that starts with "--" is an option, not a forgotten value: -1 with err. */
int mt_cli_take_value(int argc, char **argv, int *i, const char *flag, const char **value,
                      char *err, size_t errlen);
/* Fills in what nothing set and checks the options against each other. */
mt_cli_result_t mt_cli_finish(mt_cli_config_t *cfg, char *err, size_t errlen);

/* "host:port", "[v6]:port". 0 on success. */
int mt_cli_parse_hostport(const char *s, mt_hostport_t *out);
/* Formats as "host:port" or "[v6]:port". */
void mt_cli_format_hostport(const mt_hostport_t *hp, char *out, size_t cap);
/* True for an address in 127.0.0.0/8, ::1 and "localhost". */
bool mt_cli_is_loopback(const char *host);

/* The text of --help and of the manual page, generated from usage.txt. */
extern const char mt_cli_usage[];

/* What a subcommand does with a parse result: -1 to go on, else the exit
 * status, having printed the usage, the version or "prog: err". */
int mt_cli_outcome(mt_cli_result_t r, const char *prog, const char *err);

/* getopt's ':' (missing value) and '?' (unknown flag) for subcommand cmd:
 * one line on stderr, returns the exit status 2. */
int mt_cli_getopt_error(const char *cmd, int opt, char **argv, int optind_now);
/* An argument left after the flags: one line on stderr; true when there is. */
bool mt_cli_extra_argument(const char *cmd, int argc, char **argv, int optind_now);

#endif
