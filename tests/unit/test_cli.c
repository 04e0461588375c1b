/*
 * test_cli: option parsing from flags and MONGOTAP_* variables.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>

#include "cli.h"
#include "log.h"

static const char *const *fake_env;

static const char *env_table(const char *name)
{
    for (size_t i = 0; fake_env && fake_env[i]; i += 2)
        if (strcmp(fake_env[i], name) == 0)
            return fake_env[i + 1];
    return NULL;
}

/* argv ends with NULL. The config points into the argument array, and
 * ARGV's array lives only as long as the assertion that builds it: parse a
 * copy that lasts (the strings are literals). */
static mt_cli_result_t parse(mt_cli_config_t *cfg, char *err, size_t errlen, char **argv)
{
    static char *kept[64];
    int argc = 0;

    while (argv[argc] && argc < 63) {
        kept[argc] = argv[argc];
        argc++;
    }
    kept[argc] = NULL;
    return mt_cli_parse(argc, kept, env_table, cfg, err, errlen);
}

#define ARGV(...) ((char *[]){"mongotap", __VA_ARGS__, NULL})

Test(cli, defaults_match_the_spec)
{
    mt_cli_config_t cfg;
    char err[256];
    char *argv[] = {"mongotap", NULL};

    fake_env = NULL;
    cr_assert_eq(parse(&cfg, err, sizeof(err), argv), MT_CLI_RUN);
    cr_assert_eq(cfg.nlisten, 1);
    cr_assert_str_eq(cfg.listen[0].host, "127.0.0.1");
    cr_assert_eq(cfg.listen[0].port, 27018);
    cr_assert_str_eq(cfg.upstream.host, "127.0.0.1");
    cr_assert_eq(cfg.upstream.port, 27017);
    cr_assert(cfg.admin_enabled);
    cr_assert_eq(cfg.admin.port, 27080);
    cr_assert_null(cfg.admin_token);
    cr_assert_eq(cfg.window_gap_ms, 100);
    cr_assert_eq(cfg.window_max_ms, 30000);
    cr_assert_eq(cfg.n1_threshold, 5);
    cr_assert_eq(cfg.max_connections, 10000);
    cr_assert_eq(cfg.max_shapes, 10000);
    cr_assert_eq(cfg.keep_windows, 100);
    cr_assert_eq(cfg.log_level, MT_LOG_INFO);
    cr_assert_not(cfg.log_values);
}

Test(cli, every_flag_both_forms)
{
    mt_cli_config_t cfg;
    char err[256];
    char **argv =
        ARGV("proxy", "--listen", "127.0.0.1:1001", "--listen=[::1]:1002", "--upstream",
             "db.internal:27019", "--admin=off", "--admin-token", "s3cret", "--window-gap-ms",
             "250", "--window-max-ms=60000", "--n1-threshold", "7", "--findings-log", "f.jsonl",
             "--report", "r.json", "--max-connections", "3", "--max-shapes=42", "--keep-windows",
             "5000", "--log-level", "debug", "--log-values");

    fake_env = NULL;
    cr_assert_eq(parse(&cfg, err, sizeof(err), argv), MT_CLI_RUN, "%s", err);
    cr_assert_eq(cfg.nlisten, 2);
    cr_assert_str_eq(cfg.listen[1].host, "::1");
    cr_assert_eq(cfg.listen[1].port, 1002);
    cr_assert_str_eq(cfg.upstream.host, "db.internal");
    cr_assert_not(cfg.admin_enabled);
    cr_assert_str_eq(cfg.admin_token, "s3cret");
    cr_assert_eq(cfg.window_gap_ms, 250);
    cr_assert_eq(cfg.window_max_ms, 60000);
    cr_assert_eq(cfg.n1_threshold, 7);
    cr_assert_str_eq(cfg.findings_log, "f.jsonl");
    cr_assert_str_eq(cfg.report_path, "r.json");
    cr_assert_eq(cfg.max_connections, 3);
    cr_assert_eq(cfg.max_shapes, 42);
    cr_assert_eq(cfg.keep_windows, 5000);
    cr_assert_eq(cfg.log_level, MT_LOG_DEBUG);
    cr_assert(cfg.log_values);
}

Test(cli, environment_then_flags_win)
{
    static const char *const env[] = {"MONGOTAP_UPSTREAM",
                                      "10.0.0.1:1",
                                      "MONGOTAP_LISTEN",
                                      "127.0.0.1:1,127.0.0.2:2",
                                      "MONGOTAP_N1_THRESHOLD",
                                      "9",
                                      "MONGOTAP_LOG_VALUES",
                                      "true",
                                      "MONGOTAP_KEEP_WINDOWS",
                                      "250",
                                      NULL};
    mt_cli_config_t cfg;
    char err[256];

    fake_env = env;
    cr_assert_eq(parse(&cfg, err, sizeof(err), (char *[]){"mongotap", NULL}), MT_CLI_RUN, "%s",
                 err);
    cr_assert_str_eq(cfg.upstream.host, "10.0.0.1");
    cr_assert_eq(cfg.nlisten, 2);
    cr_assert_eq(cfg.n1_threshold, 9);
    cr_assert(cfg.log_values);
    cr_assert_eq(cfg.keep_windows, 250);

    cr_assert_eq(
        parse(&cfg, err, sizeof(err), ARGV("--upstream", "127.0.0.1:5", "--listen", "127.0.0.1:6")),
        MT_CLI_RUN);
    cr_assert_str_eq(cfg.upstream.host, "127.0.0.1");
    cr_assert_eq(cfg.upstream.port, 5);
    cr_assert_eq(cfg.nlisten, 1, "a --listen flag replaces MONGOTAP_LISTEN's list");
    cr_assert_eq(cfg.listen[0].port, 6);
    fake_env = NULL;
}

Test(cli, help_and_version)
{
    mt_cli_config_t cfg;
    char err[256];

    fake_env = NULL;
    cr_assert_eq(parse(&cfg, err, sizeof(err), ARGV("--help")), MT_CLI_HELP);
    cr_assert_eq(parse(&cfg, err, sizeof(err), ARGV("-V")), MT_CLI_VERSION);
    /* --help names every option */
    static const char *const flags[] = {
        "--listen",        "--upstream",        "--admin ",       "--admin-token",
        "--window-gap-ms", "--window-max-ms",   "--n1-threshold", "--findings-log",
        "--report",        "--max-connections", "--max-shapes",   "--log-level",
        "--log-values",    "--redact-fields",   "--tls-listen",   "--tls-cert",
        "--tls-key",       "--dns-server",      "--keep-windows", "mongodb+srv://"};
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        cr_assert_not_null(strstr(mt_cli_usage, flags[i]), "%s missing from --help", flags[i]);
}

/* Inline arrays, not pointers: Criterion runs each case in a fresh process
 * where pointers into this one's data would not be valid. */
typedef struct {
    char args[2][48];
    char names[32]; /* the flag or variable the error line must name */
} bad_case_t;

ParameterizedTestParameters(cli, bad_values)
{
    static bad_case_t cases[] = {
        {{"--window-gap-ms", "abc"}, "--window-gap-ms"},
        {{"--window-gap-ms", "-5"}, "--window-gap-ms"},
        {{"--window-gap-ms", "0"}, "--window-gap-ms"},
        {{"--n1-threshold", "1"}, "--n1-threshold"},
        {{"--keep-windows", "0"}, "--keep-windows"},
        {{"--keep-windows", "100001"}, "--keep-windows"},
        {{"--max-connections", "99999999999999999999"}, "--max-connections"},
        {{"--listen", "127.0.0.1"}, "--listen"},
        {{"--listen", "127.0.0.1:70000"}, "--listen"},
        {{"--upstream", ":27017"}, "--upstream"},
        {{"--admin", "nonsense"}, "--admin"},
        {{"--listen", "--admin"}, "--listen"},
        {{"--ignore-ns", "x"}, "--ignore-ns"},
        {{"--log-level", "loud"}, "--log-level"},
        {{"--log-values=maybe"}, "--log-values"},
        {{"--redact-fields", "(unclosed"}, "--redact-fields"},
        {{"--redact-fields", ""}, "--redact-fields"},
        {{"--bogus"}, "--bogus"},
        {{"--report"}, "--report"},
        {{"-x"}, "-x"},
        {{"--tls-listen", "127.0.0.1:1"}, "--tls-listen"},
        {{"--tls-cert", "c.pem"}, "--tls-cert"},
        {{"--tls-key", "k.pem"}, "--tls-key"},
        {{"--upstream", "mongodb://u:p@h/"}, "--upstream"},
        {{"--upstream", "mongodb://h/?heartbeatFrequencyMS=1"}, "heartbeatFrequencyMS"},
    };
    return cr_make_param_array(bad_case_t, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(bad_case_t *c, cli, bad_values)
{
    mt_cli_config_t cfg;
    char err[256];
    char *argv[5] = {"mongotap"};
    int argc = 1;

    fake_env = NULL;
    for (int i = 0; i < 2 && c->args[i][0]; i++)
        argv[argc++] = c->args[i];
    cr_assert_eq(mt_cli_parse(argc, argv, env_table, &cfg, err, sizeof(err)), MT_CLI_ERROR);
    cr_assert_not_null(strstr(err, c->names), "error '%s' does not name %s", err, c->names);
    cr_assert_null(strchr(err, '\n'), "one line");
}

Test(cli, bad_environment_names_the_variable)
{
    static const char *const env[] = {"MONGOTAP_MAX_SHAPES", "lots", NULL};
    mt_cli_config_t cfg;
    char err[256];

    fake_env = env;
    cr_assert_eq(parse(&cfg, err, sizeof(err), (char *[]){"mongotap", NULL}), MT_CLI_ERROR);
    cr_assert_not_null(strstr(err, "MONGOTAP_MAX_SHAPES"), "%s", err);
    fake_env = NULL;
}

Test(cli, redact_fields_from_flag_or_environment)
{
    static const char *const env[] = {"MONGOTAP_REDACT_FIELDS", "@", NULL};
    mt_cli_config_t cfg;
    char err[256];

    fake_env = NULL;
    cr_assert_eq(parse(&cfg, err, sizeof(err), ARGV("--log-level", "warn")), MT_CLI_RUN);
    cr_assert_null(cfg.redact_fields);
    fake_env = env;
    cr_assert_eq(parse(&cfg, err, sizeof(err), (char *[]){"mongotap", NULL}), MT_CLI_RUN, "%s",
                 err);
    cr_assert_str_eq(cfg.redact_fields, "@");
    cr_assert_eq(parse(&cfg, err, sizeof(err), ARGV("--redact-fields", "^[^.]+@[^.]+$")),
                 MT_CLI_RUN);
    cr_assert_str_eq(cfg.redact_fields, "^[^.]+@[^.]+$", "the flag wins");
    fake_env = NULL;
}

Test(cli, loopback_detection)
{
    cr_assert(mt_cli_is_loopback("127.0.0.1"));
    cr_assert(mt_cli_is_loopback("127.1.2.3"));
    cr_assert(mt_cli_is_loopback("::1"));
    cr_assert(mt_cli_is_loopback("localhost"));
    cr_assert_not(mt_cli_is_loopback("0.0.0.0"));
    cr_assert_not(mt_cli_is_loopback("::"));
    cr_assert_not(mt_cli_is_loopback("10.1.1.1"));
    cr_assert_not(mt_cli_is_loopback("127.evil.example"));
    cr_assert_not(mt_cli_is_loopback("127.0.0.1.evil.example"));
    cr_assert_not(mt_cli_is_loopback("localhost.evil.example"));
    cr_assert(mt_cli_is_loopback("0:0:0:0:0:0:0:1"));
    cr_assert(mt_cli_is_loopback("LOCALHOST"));
}

Test(cli, empty_environment_values_are_unset)
{
    static const char *const env[] = {"MONGOTAP_ADMIN_TOKEN", "", "MONGOTAP_UPSTREAM", "", NULL};
    mt_cli_config_t cfg;
    char err[256];

    fake_env = env;
    cr_assert_eq(parse(&cfg, err, sizeof(err), (char *[]){"mongotap", NULL}), MT_CLI_RUN, "%s",
                 err);
    cr_assert_null(cfg.admin_token);
    cr_assert_eq(cfg.upstream.port, 27017);
    fake_env = NULL;
}

Test(cli, a_missing_value_names_its_flag_not_the_next_one)
{
    mt_cli_config_t cfg;
    char err[256];

    fake_env = NULL;
    cr_assert_eq(parse(&cfg, err, sizeof(err), ARGV("--listen", "--admin", "127.0.0.1:1")),
                 MT_CLI_ERROR);
    cr_assert_not_null(strstr(err, "--listen: missing value"), "%s", err);
    cr_assert_null(strstr(err, "invalid value"), "%s", err);
    cr_assert_null(strchr(err, '\n'), "one line");
    /* a value that starts with -- is still possible with = */
    cr_assert_eq(parse(&cfg, err, sizeof(err), ARGV("--admin-token=--odd")), MT_CLI_RUN, "%s", err);
    cr_assert_str_eq(cfg.admin_token, "--odd");
    cr_assert_eq(parse(&cfg, err, sizeof(err), ARGV("--n1-threshold")), MT_CLI_ERROR);
    cr_assert_str_eq(err, "--n1-threshold: missing value");
}

Test(cli, admin_errors_mention_off)
{
    mt_cli_config_t cfg;
    char err[256];

    fake_env = NULL;
    cr_assert_eq(parse(&cfg, err, sizeof(err), ARGV("--admin", "nonsense")), MT_CLI_ERROR);
    cr_assert_not_null(strstr(err, "--admin"), "%s", err);
    cr_assert_not_null(strstr(err, "or off"), "%s", err);
    cr_assert_eq(parse(&cfg, err, sizeof(err), ARGV("--admin", "OFF")), MT_CLI_RUN, "%s", err);
    cr_assert_not(cfg.admin_enabled);
}

Test(cli, ignore_ns_from_flags_and_the_environment)
{
    static const char *const env[] = {"MONGOTAP_IGNORE_NS", "seed.users,app.*", NULL};
    mt_cli_config_t cfg;
    char err[256];

    fake_env = env;
    cr_assert_eq(
        parse(&cfg, err, sizeof(err), ARGV("--ignore-ns", "app.audit", "--ignore-ns=seed.users")),
        MT_CLI_RUN, "%s", err);
    cr_assert_eq(cfg.nignore_ns, 3, "the variable and the flags add up, duplicates once");
    cr_assert_str_eq(cfg.ignore_ns[0], "seed.users");
    cr_assert_str_eq(cfg.ignore_ns[1], "app.*");
    cr_assert_str_eq(cfg.ignore_ns[2], "app.audit");
    fake_env = NULL;

    static const char *const bad[] = {"nodot", ".coll", "db.", "", "a b.c"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(parse(&cfg, err, sizeof(err), ARGV("--ignore-ns", (char *)bad[i])),
                     MT_CLI_ERROR, "'%s' accepted", bad[i]);
        cr_assert_not_null(strstr(err, "--ignore-ns"), "%s", err);
        cr_assert_not_null(strstr(err, "DB.COLLECTION"), "%s", err);
    }
}

Test(cli, one_flag_at_a_time_for_subcommands)
{
    mt_cli_config_t cfg;
    char err[256];
    char **argv = ARGV("--window-gap-ms", "50", "--log-values", "--bogus");
    int i = 1;

    cr_assert(mt_cli_is_option("--window-gap-ms"));
    cr_assert(mt_cli_is_option("--window-gap-ms=5"));
    cr_assert_not(mt_cli_is_option("--window-gap"));
    cr_assert_not(mt_cli_is_option("window-gap-ms"));
    cr_assert_not(mt_cli_is_option("--fail-on"));

    mt_cli_defaults(&cfg);
    cr_assert_eq(mt_cli_apply_flag(&cfg, 5, argv, &i, err, sizeof(err)), MT_CLI_RUN, "%s", err);
    cr_assert_eq(i, 2, "the value was used");
    cr_assert_eq(cfg.window_gap_ms, 50);
    i = 3;
    cr_assert_eq(mt_cli_apply_flag(&cfg, 5, argv, &i, err, sizeof(err)), MT_CLI_RUN, "%s", err);
    cr_assert_eq(i, 3, "a switch takes no value");
    cr_assert(cfg.log_values);
    i = 4;
    cr_assert_eq(mt_cli_apply_flag(&cfg, 5, argv, &i, err, sizeof(err)), MT_CLI_ERROR);
    cr_assert_not_null(strstr(err, "--bogus"), "%s", err);
    cr_assert_eq(mt_cli_finish(&cfg, err, sizeof(err)), MT_CLI_RUN, "%s", err);
    cr_assert_eq(cfg.nlisten, 1, "the default listener");
    cr_assert_eq(cfg.listen[0].port, 27018);
}

Test(cli, help_names_every_subcommand_and_signal)
{
    static const char *const words[] = {
        "mongotap run", "mongotap baseline", "mongotap report", "mongotap console", "--ignore-ns",
        "--fail-on",    "--fail-on-medium",  "--baseline",      "--write-baseline", "--env",
        "SIGHUP",       "SIGUSR1",           "mongotap:ignore"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        cr_assert_not_null(strstr(mt_cli_usage, words[i]), "%s missing from --help", words[i]);
}

Test(cli, tls_listeners_and_a_connection_string)
{
    static const char *const env[] = {"MONGOTAP_TLS_LISTEN", "127.0.0.1:7,127.0.0.1:8", NULL};
    mt_cli_config_t cfg;
    char err[256];

    fake_env = env;
    cr_assert_eq(parse(&cfg, err, sizeof(err),
                       ARGV("--tls-cert", "server.pem", "--tls-key=server.key", "--upstream",
                            "mongodb://a:1,b:2/?replicaSet=rs0&tls=true")),
                 MT_CLI_RUN, "%s", err);
    cr_assert_eq(cfg.ntls_listen, 2);
    cr_assert_eq(cfg.tls_listen[1].port, 8);
    cr_assert_eq(cfg.nlisten, 0, "with only TLS listeners there is no plain one");
    cr_assert_str_eq(cfg.tls_cert, "server.pem");
    cr_assert_str_eq(cfg.tls_key, "server.key");
    cr_assert_eq(cfg.upstream_uri.nhosts, 2);
    cr_assert_str_eq(cfg.upstream_uri.replica_set, "rs0");
    cr_assert(cfg.upstream_uri.tls);
    cr_assert_str_eq(cfg.upstream.host, "a", "the first seed");

    cr_assert_eq(parse(&cfg, err, sizeof(err),
                       ARGV("--listen", "127.0.0.1:5", "--tls-listen", "127.0.0.1:6", "--tls-cert",
                            "c", "--tls-key", "k", "--upstream", "mongodb+srv://c.example.net/")),
                 MT_CLI_RUN, "%s", err);
    cr_assert_eq(cfg.nlisten, 1);
    cr_assert_eq(cfg.ntls_listen, 1, "the flag replaces MONGOTAP_TLS_LISTEN's list");
    cr_assert_eq(cfg.upstream_uri.scheme, MT_URI_SRV);
    cr_assert_str_eq(cfg.upstream.host, "");
    fake_env = NULL;
}
