/*
 * report_cmd: one GET of /api/report?format=... (mt_httpc_fetch); the body
 * goes to stdout or, only once it has fully arrived, to the -o file.
 */
#include "report_cmd.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "httpc.h"

#define MT_REPORT_CMD_DEFAULT_ADMIN "http://127.0.0.1:27080"
#define MT_REPORT_CMD_TIMEOUT_MS 30000

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

/* Writes the body to stdout or, only once it has fully arrived, to path. */
static int write_out(const char *path, const char *body, size_t len)
{
    FILE *f;
    int werr, cerr;

    if (path == NULL) {
        if (write_all(stdout, body, len) == 0)
            return 0;
        fprintf(stderr, "mongotap report: writing to stdout: %s\n", strerror(errno));
        return 1;
    }
    f = fopen(path, "wb");
    if (f == NULL) {
        fprintf(stderr, "mongotap report: cannot open %s: %s\n", path, strerror(errno));
        return 1;
    }
    werr = write_all(f, body, len);
    cerr = fclose(f);
    if (werr != 0 || cerr != 0) {
        fprintf(stderr, "mongotap report: writing %s: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
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
    int format = MT_REPORT_CMD_JSON, c, rc;
    char err[512], path[64];
    char *body;
    size_t len;

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
            fputs(mt_cli_usage, stdout);
            return 0;
        default:
            return mt_cli_getopt_error("report", c, argv, optind);
        }
    }
    if (mt_cli_extra_argument("report", argc, argv, optind))
        return 2;

    signal(SIGPIPE, SIG_IGN);
    snprintf(path, sizeof(path), "/api/report?format=%s",
             mt_report_cmd_format_str((mt_report_cmd_format_t)format));
    switch (mt_httpc_fetch(admin, token, path, MT_REPORT_CMD_TIMEOUT_MS, &body, &len, err,
                           sizeof(err))) {
    case MT_HTTPC_FETCH_BAD_URL:
        fprintf(stderr, "mongotap report: --admin: %s\n", err);
        return 2;
    case MT_HTTPC_FETCH_FAILED:
        fprintf(stderr, "mongotap report: %s\n", err);
        return 1;
    case MT_HTTPC_FETCH_OK:
        break;
    }
    rc = write_out(out_path, body, len);
    free(body);
    return rc;
}
