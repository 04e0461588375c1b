/*
 * test_run: `mongotap run`'s pure parts: its arguments beside the proxy's,
 * the connection string COMMAND gets, and where the upstream comes from.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>

#include "baseline.h"
#include "log.h"
#include "run.h"

static const char *const *fake_env;

static const char *env_table(const char *name)
{
    for (size_t i = 0; fake_env && fake_env[i]; i += 2)
        if (strcmp(fake_env[i], name) == 0)
            return fake_env[i + 1];
    return NULL;
}

/* argv ends with NULL. The options point into the argument array, and ARGV's
 * array lives only as long as the assertion that builds it: parse a copy
 * that lasts (the strings are literals). */
static mt_cli_result_t parse(mt_run_opts_t *o, char *err, size_t errlen, char **argv)
{
    static char *kept[64];
    int argc = 0;

    while (argv[argc] && argc < 63) {
        kept[argc] = argv[argc];
        argc++;
    }
    kept[argc] = NULL;
    return mt_run_parse(argc, kept, env_table, o, err, errlen);
}

#define ARGV(...) ((char *[]){"run", __VA_ARGS__, NULL})

/* Parameterized cases hold arrays, not pointers (each runs in its own process). */
typedef struct {
    char old[200];
    char want[300];
} rewrite_case_t;

ParameterizedTestParameters(run, rewrite_uri)
{
    static rewrite_case_t cases[] = {
        /* unset or not a connection string: just the proxy */
        {"", "mongodb://127.0.0.1:4000/?directConnection=true"},
        {"postgres://x", "mongodb://127.0.0.1:4000/?directConnection=true"},
        {"mongodb://db:27017", "mongodb://127.0.0.1:4000/?directConnection=true"},
        /* database and options kept */
        {"mongodb://db:27017/shop", "mongodb://127.0.0.1:4000/shop?directConnection=true"},
        {"mongodb://db/shop?retryWrites=false&w=majority",
         "mongodb://127.0.0.1:4000/shop?retryWrites=false&w=majority&directConnection=true"},
        /* credentials stay with the app */
        {"mongodb://app:s%40cret@db1:27017/shop?authSource=admin",
         "mongodb://app:s%40cret@127.0.0.1:4000/shop?authSource=admin&directConnection=true"},
        /* what concerns the servers goes (case-insensitively), directConnection once */
        {"mongodb://a:1,b:2/shop?replicaSet=rs0&TLS=true&tlsCAFile=/ca.pem&directConnection=false"
         "&appName=web",
         "mongodb://127.0.0.1:4000/shop?appName=web&directConnection=true"},
        /* srv: a plain mongodb:// string to the proxy */
        {"mongodb+srv://cluster0.example.net/shop?retryWrites=true",
         "mongodb://127.0.0.1:4000/shop?retryWrites=true&directConnection=true"},
        {"mongodb://db/?appName=x", "mongodb://127.0.0.1:4000/?appName=x&directConnection=true"},
    };
    return cr_make_param_array(rewrite_case_t, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(rewrite_case_t *c, run, rewrite_uri)
{
    char out[MT_RUN_URI_MAX];

    cr_assert_eq(mt_run_rewrite_uri(c->old[0] ? c->old : NULL, "127.0.0.1:4000", out, sizeof(out)),
                 0);
    cr_assert_str_eq(out, c->want, "from '%s'", c->old);
}

Test(run, rewrite_uri_too_long_fails)
{
    char out[32];

    cr_assert_eq(mt_run_rewrite_uri("mongodb://db/averyveryverylongdatabasename", "127.0.0.1:4000",
                                    out, sizeof(out)),
                 -1);
}

typedef struct {
    char old[200];
    char want[200]; /* "" when there is none */
    char why[64];
} upstream_case_t;

ParameterizedTestParameters(run, upstream_from_uri)
{
    static upstream_case_t cases[] = {
        {"mongodb://db.internal:27019/shop", "db.internal:27019", ""},
        {"mongodb://db.internal/shop?w=1", "db.internal:27017", ""},
        {"mongodb://user:pw@10.0.0.5:27000/x", "10.0.0.5:27000", ""},
        {"mongodb://[::1]:27020/x", "[::1]:27020", ""},
        {"mongodb://[::1]/x", "[::1]:27017", ""},
        {"mongodb://db/x?tls=false", "db:27017", ""},
        /* TLS and replica sets: a connection string with just the servers' options */
        {"mongodb://u:p@a:1,b:2/shop?replicaSet=rs0&w=1&connectTimeoutMS=500",
         "mongodb://a:1,b:2/?replicaSet=rs0&connectTimeoutMS=500", ""},
        {"mongodb://a:1/shop?tls=true&tlsCAFile=ca.pem&appName=x",
         "mongodb://a:1/?tls=true&tlsCAFile=ca.pem", ""},
        {"mongodb+srv://cluster0.example.net/", "", "mongodb+srv://"},
        {"localhost:27017", "", "not a mongodb:// string"},
        {"mongodb:///shop", "", "not a mongodb:// string"},
        {"", "", "unset"},
    };
    return cr_make_param_array(upstream_case_t, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(upstream_case_t *c, run, upstream_from_uri)
{
    char out[MT_RUN_URI_MAX], why[128] = "";
    int rc = mt_run_upstream_from_uri(c->old, out, sizeof(out), why, sizeof(why));

    if (c->want[0]) {
        cr_assert_eq(rc, 0, "'%s': %s", c->old, why);
        cr_assert_str_eq(out, c->want, "from '%s'", c->old);
    } else {
        cr_assert_eq(rc, -1, "'%s' gave '%s'", c->old, out);
        cr_assert_not_null(strstr(why, c->why), "'%s': why is '%s'", c->old, why);
    }
}

Test(run, defaults_free_loopback_ports_and_warn)
{
    mt_run_opts_t o;
    char err[256];

    fake_env = NULL;
    cr_assert_eq(parse(&o, err, sizeof(err), ARGV("--", "pytest", "-x")), MT_CLI_RUN, "%s", err);
    cr_assert_str_eq(o.command[0], "pytest");
    cr_assert_str_eq(o.command[1], "-x");
    cr_assert_null(o.command[2]);
    cr_assert_eq(o.proxy.nlisten, 1);
    cr_assert_str_eq(o.proxy.listen[0].host, "127.0.0.1");
    cr_assert_eq(o.proxy.listen[0].port, 0);
    cr_assert(o.proxy.admin_enabled);
    cr_assert_str_eq(o.proxy.admin.host, "127.0.0.1");
    cr_assert_eq(o.proxy.admin.port, 0);
    cr_assert_eq(o.proxy.log_level, MT_LOG_WARN);
    cr_assert_str_eq(o.env_name, "MONGODB_URI");
    cr_assert_eq(o.fail_types, MT_BASELINE_FAIL_ON_DEFAULT);
    cr_assert_not(o.fail_medium);
    cr_assert_null(o.upstream);
}

Test(run, its_options_and_the_proxys_in_any_order)
{
    mt_run_opts_t o;
    char err[256];

    fake_env = NULL;
    cr_assert_eq(parse(&o, err, sizeof(err),
                       ARGV("--window-gap-ms", "40", "--fail-on=repeated_read", "--env", "DB_URL",
                            "--ignore-ns", "seed.users", "--fail-on-medium", "--baseline", "b.json",
                            "--write-baseline", "new.json", "--report", "r.json", "--upstream",
                            "10.0.0.1:27017", "--n1-threshold=3", "--", "npm", "test", "--",
                            "--watch=false")),
                 MT_CLI_RUN, "%s", err);
    cr_assert_eq(o.proxy.window_gap_ms, 40);
    cr_assert_eq(o.proxy.n1_threshold, 3);
    cr_assert_eq(o.fail_types, 1u << MT_BASELINE_TYPE_REPEATED_READ);
    cr_assert(o.fail_medium);
    cr_assert_str_eq(o.env_name, "DB_URL");
    cr_assert_str_eq(o.baseline_path, "b.json");
    cr_assert_str_eq(o.write_baseline_path, "new.json");
    cr_assert_str_eq(o.proxy.report_path, "r.json");
    cr_assert_eq(o.proxy.nignore_ns, 1);
    cr_assert_str_eq(o.upstream, "10.0.0.1:27017");
    cr_assert_eq(o.upstream_source, MT_RUN_UPSTREAM_FLAG);
    /* everything after the first -- is COMMAND's, a second -- included */
    cr_assert_str_eq(o.command[0], "npm");
    cr_assert_str_eq(o.command[2], "--");
    cr_assert_str_eq(o.command[3], "--watch=false");

    cr_assert_eq(parse(&o, err, sizeof(err), ARGV("--fail-on", "none", "python3", "t.py", "--x")),
                 MT_CLI_RUN, "%s", err);
    cr_assert_eq(o.fail_types, 0);
    cr_assert_str_eq(o.command[0], "python3", "COMMAND may start without --");
    cr_assert_str_eq(o.command[2], "--x", "its options are its own");
}

Test(run, listen_and_admin_variables_do_not_apply)
{
    static const char *const env[] = {
        "MONGOTAP_LISTEN",   "127.0.0.1:27018",       "MONGOTAP_ADMIN",
        "127.0.0.1:27080",   "MONGOTAP_N1_THRESHOLD", "9",
        "MONGOTAP_UPSTREAM", "10.1.1.1:27017",        NULL};
    mt_run_opts_t o;
    char err[256];

    fake_env = env;
    cr_assert_eq(parse(&o, err, sizeof(err), ARGV("--", "true")), MT_CLI_RUN, "%s", err);
    cr_assert_eq(o.proxy.listen[0].port, 0, "a free port, not MONGOTAP_LISTEN's");
    cr_assert_eq(o.proxy.admin.port, 0);
    cr_assert_eq(o.proxy.n1_threshold, 9, "other variables apply");
    cr_assert_str_eq(o.upstream, "10.1.1.1:27017");
    cr_assert_eq(o.upstream_source, MT_RUN_UPSTREAM_ENV);
    /* a flag wins over MONGOTAP_UPSTREAM, and --listen replaces the free port */
    cr_assert_eq(parse(&o, err, sizeof(err),
                       ARGV("--upstream", "10.2.2.2:1", "--listen", "127.0.0.1:5555", "true")),
                 MT_CLI_RUN, "%s", err);
    cr_assert_eq(o.upstream_source, MT_RUN_UPSTREAM_FLAG);
    cr_assert_eq(o.proxy.nlisten, 1);
    cr_assert_eq(o.proxy.listen[0].port, 5555);
    fake_env = NULL;
}

typedef struct {
    int nargs;
    char args[3][32];
    char names[48];
} run_bad_case_t;

ParameterizedTestParameters(run, bad_usage_names_the_flag)
{
    static run_bad_case_t cases[] = {
        {3, {"--fail-on", "loops", "true"}, "--fail-on"},
        {3, {"--fail-on", "--", "true"}, "--fail-on"},
        {3, {"--env", "--", "true"}, "--env"},
        {3, {"--env", "A=B", "true"}, "--env"},
        {3, {"--baseline", "", "true"}, "--baseline"},
        {3, {"--window-gap-ms", "x", "true"}, "--window-gap-ms"},
        {3, {"--listen", "--admin", "true"}, "--listen"},
        {2, {"--bogus", "true"}, "--bogus"},
        {1, {"--fail-on-medium"}, "COMMAND"},
        {1, {"--"}, "COMMAND"},
    };
    return cr_make_param_array(run_bad_case_t, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(run_bad_case_t *c, run, bad_usage_names_the_flag)
{
    mt_run_opts_t o;
    char err[256];
    char *argv[5] = {"run"};

    fake_env = NULL;
    for (int i = 0; i < c->nargs; i++)
        argv[i + 1] = c->args[i];
    cr_assert_eq(mt_run_parse(c->nargs + 1, argv, env_table, &o, err, sizeof(err)), MT_CLI_ERROR);
    cr_assert_not_null(strstr(err, c->names), "'%s' does not name %s", err, c->names);
    cr_assert_null(strchr(err, '\n'), "one line");
}

Test(run, upstream_sources_in_order)
{
    static const char *const env_uri[] = {"MONGODB_URI", "mongodb://db.internal:27019/shop", NULL};
    static const char *const env_srv[] = {"MONGODB_URI", "mongodb+srv://c.example.net/shop", NULL};
    static const char *const env_other[] = {"DB_URL", "mongodb://10.9.9.9/x", NULL};
    mt_run_opts_t o;
    char err[256], why[128];

    fake_env = env_uri;
    cr_assert_eq(parse(&o, err, sizeof(err), ARGV("true")), MT_CLI_RUN, "%s", err);
    cr_assert_eq(mt_run_resolve_upstream(&o, env_table, why, sizeof(why), err, sizeof(err)), 0,
                 "%s", err);
    cr_assert_eq(o.upstream_source, MT_RUN_UPSTREAM_URI);
    cr_assert_str_eq(o.proxy.upstream.host, "db.internal");
    cr_assert_eq(o.proxy.upstream.port, 27019);
    cr_assert_not_null(strstr(why, "MONGODB_URI"), "%s", why);

    cr_assert_eq(
        parse(&o, err, sizeof(err), ARGV("--upstream", "mongodb://10.0.0.7:27100/", "true")),
        MT_CLI_RUN, "%s", err);
    cr_assert_eq(mt_run_resolve_upstream(&o, env_table, why, sizeof(why), err, sizeof(err)), 0,
                 "%s", err);
    cr_assert_str_eq(o.proxy.upstream.host, "10.0.0.7", "a one-host URI becomes HOST:PORT");
    cr_assert_eq(o.proxy.upstream.port, 27100);
    cr_assert_not_null(strstr(why, "--upstream"), "%s", why);

    fake_env = env_srv;
    cr_assert_eq(parse(&o, err, sizeof(err), ARGV("true")), MT_CLI_RUN, "%s", err);
    cr_assert_eq(mt_run_resolve_upstream(&o, env_table, why, sizeof(why), err, sizeof(err)), 0,
                 "%s", err);
    cr_assert_eq(o.upstream_source, MT_RUN_UPSTREAM_DEFAULT);
    cr_assert_str_eq(o.proxy.upstream.host, "127.0.0.1");
    cr_assert_eq(o.proxy.upstream.port, 27017);
    cr_assert_not_null(strstr(why, "default"), "%s", why);
    cr_assert_not_null(strstr(why, "mongodb+srv"), "%s", why);

    fake_env = env_other;
    cr_assert_eq(parse(&o, err, sizeof(err), ARGV("--env", "DB_URL", "true")), MT_CLI_RUN, "%s",
                 err);
    cr_assert_eq(mt_run_resolve_upstream(&o, env_table, why, sizeof(why), err, sizeof(err)), 0,
                 "%s", err);
    cr_assert_str_eq(o.proxy.upstream.host, "10.9.9.9", "--env names the variable read");
    fake_env = NULL;

    cr_assert_eq(parse(&o, err, sizeof(err), ARGV("--upstream", "nonsense", "true")), MT_CLI_RUN,
                 "%s", err);
    cr_assert_eq(mt_run_resolve_upstream(&o, env_table, why, sizeof(why), err, sizeof(err)), -1);
    cr_assert_not_null(strstr(err, "--upstream"), "%s", err);
}
