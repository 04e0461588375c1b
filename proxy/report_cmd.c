/*
 * report_cmd: one GET of /api/report?format=... on a private libuv loop; the
 * body goes to stdout or, only once it has fully arrived, to the -o file.
 */
#include "report_cmd.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "httpc.h"

#define MT_REPORT_CMD_DEFAULT_ADMIN "http://127.0.0.1:27080"
#define MT_REPORT_CMD_TIMEOUT_MS 30000

typedef struct {
    mt_httpc_t *http;
    const char *admin;
    const char *out_path; /* NULL for stdout */
    int exit_code;
} report_job_t;

const char *mt_report_cmd_format_str(mt_report_cmd_format_t format)
{
    switch (format) {
    case MT_REPORT_CMD_JSON:
        return "json";
    case MT_REPORT_CMD_MARKDOWN:
        return "markdown";
    case MT_REPORT_CMD_HTML:
        return "html";
    }
    return "unknown";
}

int mt_report_cmd_format_parse(const char *s)
{
    if (strcasecmp(s, "json") == 0)
        return MT_REPORT_CMD_JSON;
    if (strcasecmp(s, "markdown") == 0 || strcasecmp(s, "md") == 0)
        return MT_REPORT_CMD_MARKDOWN;
    if (strcasecmp(s, "html") == 0)
        return MT_REPORT_CMD_HTML;
    return -1;
}

static int write_all(FILE *f, const char *buf, size_t len)
{
    if (len > 0 && fwrite(buf, 1, len, f) != len)
        return -1;
    return fflush(f);
}

static void on_report(const mt_httpc_resp_t *resp, void *data)
{
    report_job_t *job = data;

    job->exit_code = 1;
    if (resp->result != MT_HTTPC_OK) {
        fprintf(stderr, "mongotap report: cannot reach mongotap admin at %s: %s\n", job->admin,
                resp->error ? resp->error : mt_httpc_result_str(resp->result));
    } else if (resp->status == 401) {
        fprintf(stderr,
                "mongotap report: admin at %s answered 401 Unauthorized: pass --token or set "
                "MONGOTAP_TOKEN\n",
                job->admin);
    } else if (resp->status != 200) {
        fprintf(stderr, "mongotap report: admin at %s answered HTTP %d for /api/report\n",
                job->admin, resp->status);
    } else if (job->out_path == NULL) {
        if (write_all(stdout, resp->body, resp->body_len) != 0)
            fprintf(stderr, "mongotap report: writing to stdout: %s\n", strerror(errno));
        else
            job->exit_code = 0;
    } else {
        FILE *f = fopen(job->out_path, "wb");
        if (f == NULL) {
            fprintf(stderr, "mongotap report: cannot open %s: %s\n", job->out_path,
                    strerror(errno));
        } else {
            int werr = write_all(f, resp->body, resp->body_len);
            int cerr = fclose(f);
            if (werr != 0 || cerr != 0)
                fprintf(stderr, "mongotap report: writing %s: %s\n", job->out_path,
                        strerror(errno));
            else
                job->exit_code = 0;
        }
    }
    mt_httpc_close(job->http);
}

static void usage(FILE *to)
{
    fprintf(to, "usage: mongotap report [--admin URL] [--token TOKEN] [--format "
                "json|markdown|html] [-o FILE]\n"
                "  --admin URL      admin endpoint (default " MT_REPORT_CMD_DEFAULT_ADMIN
                ", env MONGOTAP_ADMIN_URL)\n"
                "  --token TOKEN    bearer token for --admin-token (env MONGOTAP_TOKEN)\n"
                "  --format FORMAT  json (default), markdown or html\n"
                "  -o, --output FILE  write there instead of stdout\n");
}

int mt_report_cmd_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"admin", required_argument, NULL, 'a'},  {"token", required_argument, NULL, 't'},
        {"format", required_argument, NULL, 'f'}, {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    const char *admin = getenv("MONGOTAP_ADMIN_URL");
    const char *token = getenv("MONGOTAP_TOKEN");
    const char *out_path = NULL;
    int format = MT_REPORT_CMD_JSON, c;
    char err[512], path[64];

    if (admin == NULL || *admin == '\0')
        admin = MT_REPORT_CMD_DEFAULT_ADMIN;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'a':
            admin = optarg;
            break;
        case 't':
            token = optarg;
            break;
        case 'f':
            format = mt_report_cmd_format_parse(optarg);
            if (format < 0) {
                fprintf(stderr,
                        "mongotap report: --format: expected json, markdown or html, got '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case 'o':
            if (*optarg == '\0') {
                fprintf(stderr, "mongotap report: -o: empty file name\n");
                return 2;
            }
            out_path = strcmp(optarg, "-") == 0 ? NULL : optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case ':':
            fprintf(stderr, "mongotap report: %s: missing value\n", argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr, "mongotap report: unknown flag '%s'\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "mongotap report: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        fprintf(stderr, "mongotap report: cannot start the event loop\n");
        return 1;
    }
    report_job_t job = {.admin = admin, .out_path = out_path, .exit_code = 1};
    job.http = mt_httpc_new(&loop, admin, token, MT_REPORT_CMD_TIMEOUT_MS, err, sizeof(err));
    if (job.http == NULL) {
        fprintf(stderr, "mongotap report: --admin: %s\n", err);
        uv_loop_close(&loop);
        return 2;
    }
    snprintf(path, sizeof(path), "/api/report?format=%s",
             mt_report_cmd_format_str((mt_report_cmd_format_t)format));
    if (mt_httpc_get(job.http, path, on_report, &job) != 0) {
        fprintf(stderr, "mongotap report: cannot start the request\n");
        mt_httpc_close(job.http);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    mt_httpc_free(job.http);
    uv_loop_close(&loop);
    return job.exit_code;
}
