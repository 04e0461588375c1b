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

/* Asked about field names (NUL-terminated); true renders one as "?". For
 * applications that use user data as keys (a map keyed by e-mail address),
 * which would otherwise appear in shapes. */
typedef bool (*mt_shape_redact_cb)(void *data, const char *name);

typedef struct {
    mt_shape_redact_cb redact; /* NULL: every name is kept */
    void *redact_data;
} mt_shape_opts_t;

/* Whether opts (may be NULL) render this field name or path as "?".
 * Operators and stages ($gt, $match: keys that begin with '$') are never
 * redacted. */
bool mt_shape_redacts(const mt_shape_opts_t *opts, const char *name);

/* Renders the shape of a BSON document (is_array false) or array into out
 * (NUL-terminated, at most cap-1 chars, cut with "..." when longer).
 * Returns the length written; an empty or NULL doc renders "{}" or "[]".
 * opts may be NULL. */
size_t mt_shape_render(const uint8_t *doc, uint32_t len, bool is_array, char *out, size_t cap,
                       const mt_shape_opts_t *opts);

/* The shape of a command (from cmd->shape_doc; update: {"q": ..., "u": ...};
 * delete: {"q": ...}); "{}" for commands without a filter. */
size_t mt_shape_of_command(const mt_cmd_view_t *cmd, char *out, size_t cap,
                           const mt_shape_opts_t *opts);

/* Most equality terms a lookup may have (a compound lookup on few fields). */
#define MT_SHAPE_LOOKUP_TERMS 4

/*
 * A lookup: a command whose filter is a conjunction of equalities on fields,
 * {"f": v}, {"f": {"$eq": v}}, {"a": v, "b": w}, or one {"f": {"$in": [...]}}
 * alone. The filter is taken from find (limit absent, 0 or 1), count and
 * distinct (query), findAndModify (query), aggregate (its first stage, a
 * $match, whatever follows), update and delete (the first statement's q).
 * Keys and values point into the command.
 */
typedef struct {
    bson_iter_t value; /* on the value; for an $in, on its array */
    const char *key;   /* field path */
} mt_shape_term_t;

typedef struct {
    size_t nterms;
    mt_shape_term_t terms[MT_SHAPE_LOOKUP_TERMS]; /* in filter order */
    bool in_list;                                 /* the single term is an $in of literals */
    uint32_t list_len;
} mt_shape_lookup_t;

bool mt_shape_lookup(const mt_cmd_view_t *cmd, mt_shape_lookup_t *out);

#endif
