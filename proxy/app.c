/*
 * app: wires stats, the proxy and the admin endpoint together on one loop,
 * and owns the two files a running proxy writes: the findings log (a line
 * per finding, as found) and the report (on stop or on SIGUSR1).
 */
#include "app.h"

#include <fcntl.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bson/bson.h>

#include "admin.h"
#include "json.h"
#include "log.h"
#include "proxy.h"

#define MT_STATS_TICK_MS 25

struct mt_app {
    uv_loop_t *loop;
    const mt_cli_config_t *cfg;
    mt_stats_t *stats;
    mt_proxy_t *proxy;
    mt_admin_t *admin;
    uv_timer_t tick;
    uv_signal_t sighup, sigusr1;
    uv_file findings_fd;
    regex_t redact_re;                           /* --redact-fields, when set */
    const char *ignore_ns[MT_CLI_MAX_IGNORE_NS]; /* into cfg, for stats */
    char listen_bound[MT_APP_BOUND_MAX];
    char admin_bound[MT_CLI_HOST_MAX + 8];
    bool stopping;
    int exit_code;
    mt_app_stopped_cb stopped_cb;
    void *stopped_data;
};

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

/* Findings go to the log file as one line each, written (not buffered) as
 * they are found, and to every /events viewer. */
static void on_finding(void *data, const bson_t *finding, const char *summary)
{
    mt_app_t *a = data;
    char *json;

    mt_warn("finding %s", summary); /* so a developer watching the terminal sees it */
    /* the JSON costs more than the finding did: only for a log or a viewer */
    if (a->findings_fd < 0 && !mt_admin_has_viewers(a->admin))
        return;
    json = mt_json_render(finding, false);
    if (!json) {
        mt_error("cannot render finding: out of memory");
        return;
    }
    if (a->findings_fd >= 0) {
        size_t len = strlen(json);
        char *line = malloc(len + 1);
        if (line) {
            memcpy(line, json, len);
            line[len] = '\n';
            write_all(a->findings_fd, line, len + 1, "--findings-log");
            free(line);
        }
    }
    mt_admin_publish_finding(a->admin, json);
    bson_free(json);
}

void mt_app_reopen_findings_log(mt_app_t *a)
{
    uv_file fd;
    int rc;

    if (!a->cfg->findings_log) {
        mt_info("no --findings-log to reopen");
        return;
    }
    /* the new file first: when it cannot be opened, findings keep going to
     * the old one rather than nowhere */
    rc = open_file(a->cfg->findings_log, O_WRONLY | O_CREAT | O_APPEND, &fd);
    if (rc < 0) {
        mt_error("cannot reopen --findings-log %s: %s; still writing to the old file",
                 a->cfg->findings_log, uv_strerror(rc));
        return;
    }
    if (a->findings_fd >= 0)
        close_file(a->findings_fd);
    a->findings_fd = fd;
    mt_info("findings log reopened: %s", a->cfg->findings_log);
}

int mt_app_write_report(mt_app_t *a, bool close_windows)
{
    /* Written to PATH.tmp and renamed, so a reader never sees half a report. */
    char tmp[4096];
    char *json;
    uv_file fd;
    uv_fs_t req;
    int rc;

    if (!a->cfg->report_path)
        return 0;
    if (close_windows)
        mt_stats_flush(a->stats, uv_hrtime());
    json = mt_stats_report(a->stats, MT_REPORT_JSON, uv_hrtime());
    if (!json) {
        mt_error("cannot render the report: out of memory");
        a->exit_code = 1;
        return -1;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp", a->cfg->report_path);
    rc = open_file(tmp, O_WRONLY | O_CREAT | O_TRUNC, &fd);
    if (rc < 0) {
        mt_error("cannot write --report %s: %s", tmp, uv_strerror(rc));
        a->exit_code = 1;
        bson_free(json);
        return -1;
    }
    write_all(fd, json, strlen(json), "--report");
    write_all(fd, "\n", 1, "--report");
    close_file(fd);
    bson_free(json);
    rc = uv_fs_rename(NULL, &req, tmp, a->cfg->report_path, NULL);
    uv_fs_req_cleanup(&req);
    if (rc < 0) {
        mt_error("cannot write --report %s: %s", a->cfg->report_path, uv_strerror(rc));
        a->exit_code = 1;
        return -1;
    }
    mt_info("report written to %s", a->cfg->report_path);
    return 0;
}

static void tick_cb(uv_timer_t *t)
{
    mt_app_t *a = t->data;

    mt_stats_tick(a->stats, uv_hrtime());
}

static void signal_cb(uv_signal_t *sig, int signum)
{
    mt_app_t *a = sig->data;

    /* one line each: "findings log reopened: ...", "report written to ..." */
    if (signum == SIGHUP)
        mt_app_reopen_findings_log(a);
    else if (a->cfg->report_path)
        mt_app_write_report(a, false);
    else
        mt_info("%s: no --report to write", strsignal(signum));
}

/* --redact-fields: a field name the pattern matches anywhere in is user data. */
static bool redact_cb(void *data, const char *name)
{
    return regexec(data, name, 0, NULL, 0) == 0;
}

int mt_app_start(uv_loop_t *loop, const mt_cli_config_t *cfg, mt_app_t **out)
{
    mt_stats_config_t scfg;
    char up[512];
    const char *tls_bound;
    mt_app_t *a = calloc(1, sizeof(*a));
    int rc;

    *out = a;
    if (!a) {
        fprintf(stderr, "mongotap: out of memory\n");
        return -1;
    }
#ifdef __GLIBC__
    /* a fixed threshold: large buffers (reassembly, decompression) are their
     * own mappings and go back to the system when freed, instead of glibc
     * raising the threshold and keeping them in the heap after a burst */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
    a->loop = loop;
    a->cfg = cfg;
    a->findings_fd = -1;
    snprintf(a->admin_bound, sizeof(a->admin_bound), "off");
    if (cfg->findings_log) {
        rc = open_file(cfg->findings_log, O_WRONLY | O_CREAT | O_APPEND, &a->findings_fd);
        if (rc < 0) {
            fprintf(stderr, "mongotap: --findings-log: cannot open %s: %s\n", cfg->findings_log,
                    uv_strerror(rc));
            return -1;
        }
    }

    mt_stats_config_defaults(&scfg);
    scfg.window_gap_ms = cfg->window_gap_ms;
    scfg.window_max_ms = cfg->window_max_ms;
    scfg.n1_threshold = cfg->n1_threshold;
    scfg.max_shapes = cfg->max_shapes;
    scfg.keep_windows = cfg->keep_windows;
    scfg.log_values = cfg->log_values;
    for (size_t i = 0; i < cfg->nignore_ns; i++)
        a->ignore_ns[i] = cfg->ignore_ns[i];
    scfg.ignore_ns = a->ignore_ns;
    scfg.nignore_ns = cfg->nignore_ns;
    if (cfg->redact_fields) {
        /* cli checked that it compiles */
        if (regcomp(&a->redact_re, cfg->redact_fields, REG_EXTENDED | REG_NOSUB) != 0) {
            fprintf(stderr, "mongotap: --redact-fields: cannot compile %s\n", cfg->redact_fields);
            return -1;
        }
        scfg.shape = (mt_shape_opts_t){redact_cb, &a->redact_re};
    }
    scfg.on_finding = on_finding;
    scfg.on_finding_data = a;
    a->stats = mt_stats_new(&scfg, uv_hrtime());
    a->proxy = a->stats ? mt_proxy_new(loop, cfg, a->stats) : NULL;
    if (!a->proxy) {
        fprintf(stderr, "mongotap: out of memory\n");
        return -1;
    }
    if (mt_proxy_listen(a->proxy, a->listen_bound, sizeof(a->listen_bound)) != 0)
        return -1;
    if (cfg->admin_enabled) {
        a->admin = mt_admin_new(loop, cfg, a->stats);
        if (!a->admin || mt_admin_listen(a->admin, a->admin_bound, sizeof(a->admin_bound)) != 0)
            return -1;
        mt_admin_set_monitor(a->admin, mt_proxy_monitor(a->proxy));
    }

    uv_timer_init(loop, &a->tick);
    a->tick.data = a;
    uv_timer_start(&a->tick, tick_cb, MT_STATS_TICK_MS, MT_STATS_TICK_MS);
    uv_signal_init(loop, &a->sighup);
    uv_signal_init(loop, &a->sigusr1);
    a->sighup.data = a->sigusr1.data = a;
    uv_signal_start(&a->sighup, signal_cb, SIGHUP);
    uv_signal_start(&a->sigusr1, signal_cb, SIGUSR1);

    mt_uri_describe(&cfg->upstream_uri, up, sizeof(up));
    tls_bound = mt_proxy_tls_bound(a->proxy);
    mt_info("mongotap %s ready listen=%s admin=%s upstream=%s%s%s", MT_VERSION,
            a->listen_bound[0] ? a->listen_bound : "-", a->admin_bound, up,
            tls_bound[0] ? " tls_listen=" : "", tls_bound);
    return 0;
}

const char *mt_app_listen_bound(const mt_app_t *a)
{
    return a->listen_bound;
}

const char *mt_app_admin_bound(const mt_app_t *a)
{
    return a->admin_bound;
}

mt_stats_t *mt_app_stats(mt_app_t *a)
{
    return a->stats;
}

size_t mt_app_sessions(const mt_app_t *a)
{
    return mt_proxy_active(a->proxy);
}

bool mt_app_stopping(const mt_app_t *a)
{
    return a->stopping;
}

int mt_app_exit_code(const mt_app_t *a)
{
    return a->exit_code;
}

static void drained_cb(mt_proxy_t *p, void *data)
{
    mt_app_t *a = data;

    (void)p;
    /* every session closed; keyed windows outlive connections, so close
     * and analyse those too before the report */
    mt_stats_flush(a->stats, uv_hrtime());
    mt_app_write_report(a, false);
    if (a->findings_fd >= 0) {
        close_file(a->findings_fd);
        a->findings_fd = -1;
    }
    /* h2o owns its sockets and timers; they go with the process */
    mt_admin_set_monitor(a->admin, NULL); /* the proxy closed it */
    mt_admin_close(a->admin);
    uv_close((uv_handle_t *)&a->tick, NULL);
    uv_close((uv_handle_t *)&a->sighup, NULL);
    uv_close((uv_handle_t *)&a->sigusr1, NULL);
    mt_info("stopped");
    a->stopped_cb(a, a->stopped_data);
}

void mt_app_stop(mt_app_t *a, mt_app_stopped_cb cb, void *data)
{
    if (a->stopping)
        return;
    a->stopping = true;
    a->stopped_cb = cb;
    a->stopped_data = data;
    mt_proxy_drain(a->proxy, drained_cb, a);
}
