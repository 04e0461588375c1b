/*
 * report_cmd: `mongotap report`, which fetches the full report of a running
 * mongotap from its admin API (/api/report) and writes it to stdout or a file.
 */
#ifndef MT_REPORT_CMD_H
#define MT_REPORT_CMD_H

typedef enum {
    MT_REPORT_CMD_JSON = 0,
    MT_REPORT_CMD_MARKDOWN,
    MT_REPORT_CMD_HTML,
} mt_report_cmd_format_t;

const char *mt_report_cmd_format_str(mt_report_cmd_format_t format);
/* "json", "markdown" (or "md"), "html"; -1 otherwise. */
int mt_report_cmd_format_parse(const char *s);

/* `mongotap report [--admin URL] [--token TOKEN] [--format json|markdown|html] [-o FILE]`;
 * argv[0] is "report". Exit code: 0 written, 1 admin unreachable or not 200
 * (or the file cannot be written), 2 bad flags. */
int mt_report_cmd_main(int argc, char **argv);

#endif
