/*
 * run: `mongotap run [options] -- COMMAND [ARGS...]`, CI mode. Starts a proxy
 * (an app) on free loopback ports in this process and loop, runs COMMAND
 * with its connection string pointed at it, and once COMMAND has exited
 * closes every window, checks the patterns against the baseline, prints a
 * summary and exits with a verdict (SPEC section 11).
 */
#ifndef MT_RUN_H
#define MT_RUN_H

#include <stdbool.h>
#include <stddef.h>

#include "cli.h"

#define MT_RUN_DEFAULT_ENV "MONGODB_URI"
#define MT_RUN_URI_MAX 4096
/* After COMMAND exits, how long its connections get to close by themselves
 * before the proxy drains what is left. */
#define MT_RUN_SETTLE_MS 1000

/* Exit statuses of their own (besides COMMAND's and 0, 1, 2). */
#define MT_RUN_EXIT_INTERNAL 3
#define MT_RUN_EXIT_NOT_FOUND 127
#define MT_RUN_EXIT_NOT_EXECUTABLE 126

/* Where the upstream came from, for the summary. */
typedef enum {
    MT_RUN_UPSTREAM_FLAG = 0, /* --upstream */
    MT_RUN_UPSTREAM_ENV,      /* MONGOTAP_UPSTREAM */
    MT_RUN_UPSTREAM_URI,      /* the --env variable's old value */
    MT_RUN_UPSTREAM_DEFAULT,  /* 127.0.0.1:27017 */
} mt_run_upstream_source_t;

const char *mt_run_upstream_source_str(mt_run_upstream_source_t s);

typedef struct {
    mt_cli_config_t proxy; /* the proxy options, run's defaults applied */
    const char *upstream;  /* --upstream or MONGOTAP_UPSTREAM, NULL when neither */
    mt_run_upstream_source_t upstream_source;
    const char *env_name; /* --env */
    unsigned fail_types;  /* bit mask of mt_baseline_type_t */
    bool fail_medium;
    const char *baseline_path;       /* --baseline, NULL when none */
    const char *write_baseline_path; /* --write-baseline, NULL when none */
    char **command;                  /* NULL-terminated, points into argv */
} mt_run_opts_t;

/* Parses `run` (argv[0] is "run"): run's options and the proxy options, in
 * any order, then COMMAND (after "--", or at the first argument that is not
 * an option). The proxy listens on 127.0.0.1:0 with its admin endpoint on
 * 127.0.0.1:0 and logs at warn unless told otherwise; MONGOTAP_LISTEN and
 * MONGOTAP_ADMIN do not apply. MT_CLI_ERROR with one line naming the flag. */
mt_cli_result_t mt_run_parse(int argc, char **argv, mt_cli_getenv_fn env, mt_run_opts_t *o,
                             char *err, size_t errlen);

/* Sets o->proxy.upstream from --upstream, MONGOTAP_UPSTREAM, the old value
 * of the --env variable (when it is a mongodb:// string with hosts) or
 * 127.0.0.1:27017, in that order; why says which in a few words. -1 with a
 * one-line err when the chosen value is not one the proxy can use. */
int mt_run_resolve_upstream(mt_run_opts_t *o, mt_cli_getenv_fn env, char *why, size_t whylen,
                            char *err, size_t errlen);

/* The connection string COMMAND gets: old's user, database and options
 * (less those about TLS, replica sets and direct connections, which concern
 * the upstream) on the proxy's address, with directConnection=true. old may
 * be NULL or not a connection string: then just the proxy's address. -1
 * when out is too small. */
int mt_run_rewrite_uri(const char *old, const char *proxy_hostport, char *out, size_t cap);

/* The --upstream value that forwards to old's servers: "host:port" for one
 * host without TLS or replicaSet options, else "mongodb://hosts/?options"
 * with just those options (never the user or the database). -1 with why
 * ("not a mongodb:// string") when old names no hosts. */
int mt_run_upstream_from_uri(const char *old, char *out, size_t cap, char *why, size_t whylen);

/* `mongotap run ...`; argv[0] is "run". Returns the exit status. */
int mt_run_main(int argc, char **argv);

#endif
