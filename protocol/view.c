/*
 * view: names of the view enums, for logs, JSON and tests, and the cut that
 * keeps names within MongoDB's limits.
 */
#include "view.h"

#include <string.h>

const char *mt_cmd_kind_str(mt_cmd_kind_t kind)
{
    switch (kind) {
    case MT_CMD_OTHER:
        return "other";
    case MT_CMD_FIND:
        return "find";
    case MT_CMD_AGGREGATE:
        return "aggregate";
    case MT_CMD_GETMORE:
        return "getMore";
    case MT_CMD_INSERT:
        return "insert";
    case MT_CMD_UPDATE:
        return "update";
    case MT_CMD_DELETE:
        return "delete";
    case MT_CMD_FIND_AND_MODIFY:
        return "findAndModify";
    case MT_CMD_COUNT:
        return "count";
    case MT_CMD_DISTINCT:
        return "distinct";
    case MT_CMD_KILL_CURSORS:
        return "killCursors";
    case MT_CMD_HELLO:
        return "hello";
    case MT_CMD_MONITORING:
        return "monitoring";
    case MT_CMD_AUTH:
        return "auth";
    }
    return "unknown";
}

const char *mt_cmd_shape_src_str(mt_cmd_shape_src_t src)
{
    switch (src) {
    case MT_CMD_SHAPE_NONE:
        return "none";
    case MT_CMD_SHAPE_FILTER:
        return "filter";
    case MT_CMD_SHAPE_PIPELINE:
        return "pipeline";
    case MT_CMD_SHAPE_UPDATES:
        return "updates";
    case MT_CMD_SHAPE_DELETES:
        return "deletes";
    }
    return "unknown";
}

size_t mt_cmd_name_len(const char *s, size_t max, bool *cut)
{
    size_t n = strnlen(s, max + 1);
    if (n <= max)
        return n;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xc0u) == 0x80u)
        n--;
    if (cut)
        *cut = true;
    return n;
}
