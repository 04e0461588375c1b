/*
 * app: one running proxy on a caller's libuv loop: stats, the listeners, the
 * admin endpoint, the findings log and the report. `mongotap proxy` runs one
 * until a signal stops it; `mongotap run` runs one beside the command it
 * tests, in the same loop and process.
 */
#ifndef MT_APP_H
#define MT_APP_H

#include <stdbool.h>
#include <uv.h>

#include "cli.h"
#include "stats.h"

#define MT_APP_BOUND_MAX 1024

typedef struct mt_app mt_app_t;
typedef void (*mt_app_stopped_cb)(mt_app_t *app, void *data);

/* Opens the findings log, binds every listener and the admin endpoint and
 * logs the `ready listen=... admin=...` line. cfg must outlive the app. SIGHUP
 * (reopen the findings log) and SIGUSR1 (write the report) are watched from
 * here on. 0 on success; -1 when something could not start (said on stderr):
 * *out then still holds what did start (its handles are in the loop), and
 * the process is expected to exit. */
int mt_app_start(uv_loop_t *loop, const mt_cli_config_t *cfg, mt_app_t **out);

/* "host:port[,host:port]" with the real ports; the admin's is "off" when
 * disabled. */
const char *mt_app_listen_bound(const mt_app_t *a);
const char *mt_app_admin_bound(const mt_app_t *a);
mt_stats_t *mt_app_stats(mt_app_t *a);
/* Client sessions still open. */
size_t mt_app_sessions(const mt_app_t *a);

/* Reopens --findings-log under its name (after log rotation). */
void mt_app_reopen_findings_log(mt_app_t *a);
/* Writes --report now; close_windows first closes (and analyses) every open
 * window, for a report that is the last one. 0, or -1 (logged). */
int mt_app_write_report(mt_app_t *a, bool close_windows);

/* Stops accepting, lets in-flight replies finish (at most
 * MT_PROXY_DRAIN_TIMEOUT_MS), closes every window, writes --report, closes
 * the findings log, the admin endpoint and the app's own handles, then calls
 * cb. The admin server's state lives until the process exits: the caller
 * stops its loop (uv_stop) rather than running it dry. */
void mt_app_stop(mt_app_t *a, mt_app_stopped_cb cb, void *data);
bool mt_app_stopping(const mt_app_t *a);

/* 0, or 1 once the report or the findings log could not be written. */
int mt_app_exit_code(const mt_app_t *a);

#endif
