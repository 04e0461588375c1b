/*
 * shape: a query with every literal replaced by "?", keeping field names and
 * operators in order. $in/$nin/$all arrays collapse to ["?"]. The text form
 * is compact JSON: {"_id": "?"}, {"age": {"$gt": "?"}}, [{"$match": {"a": "?"}}].
 */
#ifndef MT_SHAPE_H
#define MT_SHAPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "view.h"

/* Longest shape text kept; longer shapes are cut and end with "...". */
#define MT_SHAPE_MAX 512

/* Renders the shape of a BSON document (is_array false) or array into out
 * (NUL-terminated, at most cap-1 chars, cut with "..." when longer).
 * Returns the length written; an empty or NULL doc renders "{}" or "[]". */
size_t mt_shape_render(const uint8_t *doc, uint32_t len, bool is_array, char *out, size_t cap);

/* The shape of a command (from cmd->shape_doc; update: {"q": ..., "u": ...};
 * delete: {"q": ...}); "{}" for commands without a filter. */
size_t mt_shape_of_command(const mt_cmd_view_t *cmd, char *out, size_t cap);

/*
 * A single-key lookup: a find whose filter is exactly one equality on one
 * field ({"f": v}, {"f": {"$eq": v}}, {"f": {"$in": [v]}}), or an aggregate
 * whose pipeline begins with such a $match, with limit absent, 0 or 1.
 * On success fills *key (the field path, pointer into the command) and
 * *value (an iterator positioned on v) and returns true.
 */
bool mt_shape_single_key(const mt_cmd_view_t *cmd, const char **key, bson_iter_t *value);

#endif
