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

#include "bson.h"
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

/*
 * Shapes without their text: a hash of a shape's structure (field names,
 * operators, nesting; literals ignored, $in/$nin/$all arrays collapsed),
 * computed while the document is validated, so that a shape seen before is
 * recognised without rendering it. Two shapes hash equally exactly when
 * their texts are equal (mt_shape_of_command); a shape whose text would be
 * cut is identified by its cut text instead. 64 bits: distinct shapes of
 * one namespace meet by chance with odds of 1 in 2^64 per pair.
 */
typedef struct {
    uint64_t h;
    size_t len; /* characters of the text so far */
    const mt_shape_opts_t *opts;
} mt_shape_hasher_t;

void mt_shape_hasher_init(mt_shape_hasher_t *hs, const mt_shape_opts_t *opts);

/* Adds the shape of doc[0..len) (an array when is_array) while checking its
 * structure (nesting at most max_depth levels below it): false when it is
 * not well-formed. */
bool mt_shape_hash_doc(mt_shape_hasher_t *hs, const uint8_t *doc, uint32_t len, bool is_array,
                       unsigned max_depth);
/* Adds "{}" (no filter). */
void mt_shape_hash_empty(mt_shape_hasher_t *hs);
/* Adds the shape of cmd's update or delete statement ({"q": ..., "u": ...},
 * cmd->shape_doc already validated). */
bool mt_shape_hash_statement(mt_shape_hasher_t *hs, const mt_cmd_view_t *cmd);
/* The shape id of the hashed text; for a text longer than MT_SHAPE_MAX - 1
 * it renders cmd's shape and hashes the cut text. */
uint64_t mt_shape_id(const mt_shape_hasher_t *hs, const mt_cmd_view_t *cmd);

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
    mt_bson_elem_t value; /* the value; for an $in, the array */
    const char *key;      /* field path */
} mt_shape_term_t;

typedef struct {
    size_t nterms;
    mt_shape_term_t terms[MT_SHAPE_LOOKUP_TERMS]; /* in filter order */
    bool in_list;                                 /* the single term is an $in of literals */
    uint32_t list_len;
} mt_shape_lookup_t;

bool mt_shape_lookup(const mt_cmd_view_t *cmd, mt_shape_lookup_t *out);

#endif
