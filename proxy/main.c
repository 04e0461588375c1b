/*
 * main: dispatches the subcommands and runs the proxy (an app, see app.h)
 * until SIGINT or SIGTERM.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "app.h"
#include "baseline.h"
#include "cli.h"
#include "console.h"
#include "log.h"
#include "proxy.h"
#include "report_cmd.h"
#include "run.h"

/* Static so that everything stays reachable until exit (the loop and h2o
 * hold pointers into it). */
static struct {
    uv_loop_t *loop;
    mt_cli_config_t cfg;
    mt_app_t *app;
    uv_signal_t sigint, sigterm;
} proxy;

static void stopped_cb(mt_app_t *app, void *data)
{
    (void)app;
    (void)data;
    uv_close((uv_handle_t *)&proxy.sigint, NULL);
    uv_close((uv_handle_t *)&proxy.sigterm, NULL);
    uv_stop(proxy.loop);
}

static void signal_cb(uv_signal_t *sig, int signum)
{
    (void)sig;
    if (mt_app_stopping(proxy.app)) {
        /* the report is what the user came for: write it before giving up on
         * the in-flight replies */
        mt_warn("second %s: stopping now", strsignal(signum));
        mt_app_write_report(proxy.app, true);
        exit(mt_app_exit_code(proxy.app));
    }
    mt_info("%s: no new connections; finishing in-flight replies (at most %d ms)",
            strsignal(signum), MT_PROXY_DRAIN_TIMEOUT_MS);
    mt_app_stop(proxy.app, stopped_cb, NULL);
}

static const char *env_lookup(const char *name)
{
    return getenv(name);
}

static int run_proxy(int argc, char **argv)
{
    char err[512];

    int done = mt_cli_outcome(mt_cli_parse(argc, argv, env_lookup, &proxy.cfg, err, sizeof(err)),
                              "mongotap", err);
    if (done >= 0)
        return done;
    mt_log_threshold = (mt_log_level_t)proxy.cfg.log_level;
    signal(SIGPIPE, SIG_IGN);

    proxy.loop = uv_default_loop();
    /* caught before the app says it is ready (its callback runs once the loop does) */
    uv_signal_init(proxy.loop, &proxy.sigint);
    uv_signal_start(&proxy.sigint, signal_cb, SIGINT);
    uv_signal_init(proxy.loop, &proxy.sigterm);
    uv_signal_start(&proxy.sigterm, signal_cb, SIGTERM);
    if (mt_app_start(proxy.loop, &proxy.cfg, &proxy.app) != 0)
        return 1;
    uv_run(proxy.loop, UV_RUN_DEFAULT);
    return mt_app_exit_code(proxy.app);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "console") == 0)
        return mt_console_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "report") == 0)
        return mt_report_cmd_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "baseline") == 0)
        return mt_baseline_cmd_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "run") == 0)
        return mt_run_main(argc - 1, argv + 1);
    return run_proxy(argc, argv);
}
