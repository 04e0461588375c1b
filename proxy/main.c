/*
 * main: dispatches the subcommands and runs the proxy: one libuv loop for the
 * listeners, the sessions, the admin endpoint and the stats timer.
 */
#include <fcntl.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <bson/bson.h>

#include "admin.h"
#include "cli.h"
#include "console.h"
#include "log.h"
#include "proxy.h"
#include "report_cmd.h"
#include "stats.h"

#define MT_STATS_TICK_MS 25

/* Everything the running proxy owns; static so that it stays reachable until
 * exit (the loop and h2o hold pointers into it). */
static struct {
    uv_loop_t *loop;
    mt_cli_config_t cfg;
    mt_stats_t *stats;
    mt_proxy_t *proxy;
    mt_admin_t *admin;
    uv_timer_t tick;
    uv_signal_t sigint, sigterm;
    uv_file findings_fd;
    regex_t redact_re; /* --redact-fields, when set */
    bool stopping;
    int exit_code;
} app = {.findings_fd = -1};

static void write_all(uv_file fd, const char *buf, size_t len, const char *what)
{
    while (len > 0) {
        uv_fs_t req;
        uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
        int n = uv_fs_write(NULL, &req, fd, &b, 1, -1, NULL);
        uv_fs_req_cleanup(&req);
        if (n <= 0) {
            mt_error("cannot write %s: %s", what, uv_strerror(n < 0 ? n : UV_EIO));
            return;
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* Findings go to the log file as one line each, written (not buffered) as
 * they are found, and to every /events viewer. */
static void on_finding(void *data, const char *json, const char *summary)
{
    (void)data;
    mt_warn("finding %s", summary); /* so a developer watching the terminal sees it */
    if (app.findings_fd >= 0) {
        size_t len = strlen(json);
        char *line = malloc(len + 1);
        if (line) {
            memcpy(line, json, len);
            line[len] = '\n';
            write_all(app.findings_fd, line, len + 1, "--findings-log");
            free(line);
        }
    }
    mt_admin_publish_finding(app.admin, json);
}

static int open_file(const char *path, int flags, uv_file *out)
{
    uv_fs_t req;
    int fd = uv_fs_open(NULL, &req, path, flags, 0644, NULL);

    uv_fs_req_cleanup(&req);
    if (fd < 0)
        return fd;
    *out = fd;
    return 0;
}

static void close_file(uv_file fd)
{
    uv_fs_t req;

    uv_fs_close(NULL, &req, fd, NULL);
    uv_fs_req_cleanup(&req);
}

/* Written to PATH.tmp and renamed, so a reader never sees half a report. */
static void write_report(void)
{
    char tmp[4096];
    char *json;
    uv_file fd;
    uv_fs_t req;
    int rc;

    if (!app.cfg.report_path)
        return;
    json = mt_stats_report(app.stats, MT_REPORT_JSON, uv_hrtime());
    if (!json) {
        mt_error("cannot render the report: out of memory");
        app.exit_code = 1;
        return;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp", app.cfg.report_path);
    rc = open_file(tmp, O_WRONLY | O_CREAT | O_TRUNC, &fd);
    if (rc < 0) {
        mt_error("cannot write --report %s: %s", tmp, uv_strerror(rc));
        app.exit_code = 1;
        bson_free(json);
        return;
    }
    write_all(fd, json, strlen(json), "--report");
    write_all(fd, "\n", 1, "--report");
    close_file(fd);
    bson_free(json);
    rc = uv_fs_rename(NULL, &req, tmp, app.cfg.report_path, NULL);
    uv_fs_req_cleanup(&req);
    if (rc < 0) {
        mt_error("cannot write --report %s: %s", app.cfg.report_path, uv_strerror(rc));
        app.exit_code = 1;
        return;
    }
    mt_info("report written to %s", app.cfg.report_path);
}

static void tick_cb(uv_timer_t *t)
{
    (void)t;
    mt_stats_tick(app.stats, uv_hrtime());
}

static void close_walk_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    /* h2o owns its sockets and timers; it is torn down by process exit */
    if (!uv_is_closing(h) && h->type == UV_SIGNAL)
        uv_close(h, NULL);
}

static void drained_cb(mt_proxy_t *p, void *data)
{
    (void)p;
    (void)data;
    /* every session closed; keyed windows outlive connections, so close
     * and analyse those too before the report */
    mt_stats_flush(app.stats, uv_hrtime());
    write_report();
    if (app.findings_fd >= 0) {
        close_file(app.findings_fd);
        app.findings_fd = -1;
    }
    mt_admin_close(app.admin);
    uv_close((uv_handle_t *)&app.tick, NULL);
    uv_walk(app.loop, close_walk_cb, NULL);
    mt_info("stopped");
    uv_stop(app.loop);
}

static void signal_cb(uv_signal_t *sig, int signum)
{
    (void)sig;
    if (app.stopping) {
        mt_warn("second %s: stopping now", strsignal(signum));
        exit(app.exit_code);
    }
    app.stopping = true;
    mt_info("%s: no new connections; finishing in-flight replies (at most %d ms)",
            strsignal(signum), MT_PROXY_DRAIN_TIMEOUT_MS);
    mt_proxy_drain(app.proxy, drained_cb, NULL);
}

/* --redact-fields: a field name the pattern matches anywhere in is user data. */
static bool redact_cb(void *data, const char *name)
{
    return regexec(data, name, 0, NULL, 0) == 0;
}

static const char *env_lookup(const char *name)
{
    return getenv(name);
}

static int run_proxy(int argc, char **argv)
{
    mt_stats_config_t scfg;
    char err[512], bound[1024], admin_bound[MT_CLI_HOST_MAX + 8] = "off";
    int rc;

    switch (mt_cli_parse(argc, argv, env_lookup, &app.cfg, err, sizeof(err))) {
    case MT_CLI_HELP:
        fputs(mt_cli_usage, stdout);
        return 0;
    case MT_CLI_VERSION:
        printf("mongotap %s\n", MT_VERSION);
        return 0;
    case MT_CLI_ERROR:
        fprintf(stderr, "mongotap: %s\n", err);
        return 2;
    case MT_CLI_RUN:
        break;
    }
    mt_log_threshold = (mt_log_level_t)app.cfg.log_level;
    signal(SIGPIPE, SIG_IGN);
#ifdef __GLIBC__
    /* a fixed threshold: large buffers (reassembly, decompression) are their
     * own mappings and go back to the system when freed, instead of glibc
     * raising the threshold and keeping them in the heap after a burst */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif

    if (app.cfg.findings_log) {
        rc = open_file(app.cfg.findings_log, O_WRONLY | O_CREAT | O_APPEND, &app.findings_fd);
        if (rc < 0) {
            fprintf(stderr, "mongotap: --findings-log: cannot open %s: %s\n", app.cfg.findings_log,
                    uv_strerror(rc));
            return 1;
        }
    }

    app.loop = uv_default_loop();
    mt_stats_config_defaults(&scfg);
    scfg.window_gap_ms = app.cfg.window_gap_ms;
    scfg.window_max_ms = app.cfg.window_max_ms;
    scfg.n1_threshold = app.cfg.n1_threshold;
    scfg.max_shapes = app.cfg.max_shapes;
    scfg.keep_windows = app.cfg.keep_windows;
    scfg.log_values = app.cfg.log_values;
    if (app.cfg.redact_fields) {
        /* cli checked that it compiles */
        if (regcomp(&app.redact_re, app.cfg.redact_fields, REG_EXTENDED | REG_NOSUB) != 0) {
            fprintf(stderr, "mongotap: --redact-fields: cannot compile %s\n",
                    app.cfg.redact_fields);
            return 1;
        }
        scfg.shape = (mt_shape_opts_t){redact_cb, &app.redact_re};
    }
    scfg.on_finding = on_finding;
    app.stats = mt_stats_new(&scfg, uv_hrtime());
    app.proxy = app.stats ? mt_proxy_new(app.loop, &app.cfg, app.stats) : NULL;
    if (!app.proxy) {
        fprintf(stderr, "mongotap: out of memory\n");
        return 1;
    }
    if (mt_proxy_listen(app.proxy, bound, sizeof(bound)) != 0)
        return 1;
    if (app.cfg.admin_enabled) {
        app.admin = mt_admin_new(app.loop, &app.cfg, app.stats);
        if (!app.admin || mt_admin_listen(app.admin, admin_bound, sizeof(admin_bound)) != 0)
            return 1;
    }

    uv_timer_init(app.loop, &app.tick);
    uv_timer_start(&app.tick, tick_cb, MT_STATS_TICK_MS, MT_STATS_TICK_MS);
    uv_signal_init(app.loop, &app.sigint);
    uv_signal_start(&app.sigint, signal_cb, SIGINT);
    uv_signal_init(app.loop, &app.sigterm);
    uv_signal_start(&app.sigterm, signal_cb, SIGTERM);

    {
        char up[MT_CLI_HOST_MAX + 8];
        mt_cli_format_hostport(&app.cfg.upstream, up, sizeof(up));
        mt_info("mongotap %s ready listen=%s admin=%s upstream=%s", MT_VERSION, bound, admin_bound,
                up);
    }
    uv_run(app.loop, UV_RUN_DEFAULT);
    return app.exit_code;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "console") == 0)
        return mt_console_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "report") == 0)
        return mt_report_cmd_main(argc - 1, argv + 1);
    return run_proxy(argc, argv);
}
