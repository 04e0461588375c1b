/*
 * report: the exported N+1 report (SPEC section 7) as JSON
 * ("mongotap.report/1"), Markdown (tables to paste in a pull request) or one
 * self-contained HTML page (inline CSS and an inline SVG chart of time per
 * pattern, no external resources, every string escaped).
 */
#ifndef MT_REPORT_H
#define MT_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "findings.h"
#include "shapes.h"
#include "counters.h"

#define MT_REPORT_TOP_SHAPES 50

typedef enum { MT_REPORT_JSON, MT_REPORT_MARKDOWN, MT_REPORT_HTML } mt_report_format_t;
/* Parses "json", "markdown" (or "md"), "html"; returns -1 on anything else. */
int mt_report_format_parse(const char *s);
const char *mt_report_format_str(mt_report_format_t fmt);

typedef struct {
    int64_t generated_ms;
    double uptime_s;
    const uint64_t *counters; /* MT_STAT__COUNT values, gauges up to date */
    const mt_findings_t *findings;
    mt_shape_entry_t *const *shapes; /* sorted, largest total time first */
    size_t nshapes;                  /* at most MT_REPORT_TOP_SHAPES are shown */
} mt_report_input_t;

/* The report text; free with bson_free(). */
char *mt_report_render(const mt_report_input_t *in, mt_report_format_t fmt);

#endif
