/*
 * baseline: the patterns a team has accepted on purpose (a reviewed JSON
 * file, "mongotap.baseline/1"), the patterns of a run read from a
 * /api/findings answer, and the check of one against the other that decides
 * whether `mongotap run` fails. Also `mongotap baseline -o FILE`.
 *
 *   {"schema": "mongotap.baseline/1",
 *    "entries": [{"type": "n_plus_one",
 *                 "parent": {"db", "collection", "command", "shape"} or null,
 *                 "children": {"db", "collection", "command", "shape"},
 *                 "field": "channel" or null,
 *                 "reason": "why this loop is fine"}]}
 */
#ifndef MT_BASELINE_H
#define MT_BASELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MT_BASELINE_SCHEMA "mongotap.baseline/1"

/* Finding types, in the order of the --fail-on bit mask. */
#define MT_BASELINE_TYPES(X)                                                                       \
    X(N_PLUS_ONE, "n_plus_one")                                                                    \
    X(WRITE_LOOP, "write_loop")                                                                    \
    X(REPEATED_READ, "repeated_read")

typedef enum {
#define MT_BASELINE_TYPE_ENUM(id, name) MT_BASELINE_TYPE_##id,
    MT_BASELINE_TYPES(MT_BASELINE_TYPE_ENUM)
#undef MT_BASELINE_TYPE_ENUM
        MT_BASELINE_TYPE__COUNT
} mt_baseline_type_t;

/* Default of `mongotap run --fail-on`. */
#define MT_BASELINE_FAIL_ON_DEFAULT                                                                \
    ((1u << MT_BASELINE_TYPE_N_PLUS_ONE) | (1u << MT_BASELINE_TYPE_WRITE_LOOP))

const char *mt_baseline_type_str(mt_baseline_type_t type);
/* The type named s, or -1. */
int mt_baseline_type_parse(const char *s);
/* "n_plus_one,write_loop" or "none" into a bit mask; -1 with a one-line err. */
int mt_baseline_parse_types(const char *list, unsigned *mask, char *err, size_t errlen);

/* The shape key of one side of a pattern. */
typedef struct {
    char *db, *collection, *command, *shape;
} mt_baseline_cmd_t;

/* A baseline entry, or a pattern of a run: the key, then what each carries. */
typedef struct {
    char *type;
    bool has_parent;
    mt_baseline_cmd_t parent;
    mt_baseline_cmd_t children;
    char *field; /* NULL: no field (medium confidence) */
    char *reason;
    /* patterns only */
    bool high;
    uint64_t occurrences;
    uint64_t child_commands;
    double child_ms;
    char *suggestion;
    /* set by mt_baseline_check: an entry that a pattern matched, a pattern
     * that an entry accepts; a pattern that fails the run */
    bool matched;
    bool failing;
} mt_baseline_entry_t;

typedef struct {
    mt_baseline_entry_t *entries;
    size_t n, cap;
} mt_baseline_t;

void mt_baseline_init(mt_baseline_t *b);
void mt_baseline_clear(mt_baseline_t *b);

/* A baseline file's text into b (appended). -1 with a one-line err that
 * says where ("entry 3: children.shape is missing"). */
int mt_baseline_parse(mt_baseline_t *b, const char *json, size_t len, char *err, size_t errlen);
/* mt_baseline_parse of the file at path; err names the file. */
int mt_baseline_load(mt_baseline_t *b, const char *path, char *err, size_t errlen);

/* The patterns of a /api/findings answer into b. Pattern objects may say
 * "child" or "children", "fix" or "suggestion"; one without "type" is an
 * n_plus_one. -1 with a one-line err. */
int mt_baseline_from_findings(mt_baseline_t *b, const char *json, size_t len, char *err,
                              size_t errlen);

/* b as a baseline file (one entry per block, for review in a pull
 * request); free with bson_free(). */
char *mt_baseline_render(const mt_baseline_t *b);
/* mt_baseline_render to path ("-": stdout). -1 with a one-line err. */
int mt_baseline_save(const mt_baseline_t *b, const char *path, char *err, size_t errlen);

typedef struct {
    size_t failing;   /* patterns that fail the run */
    size_t fresh;     /* patterns no entry accepts */
    size_t baselined; /* patterns an entry accepts */
    size_t stale;     /* entries no pattern matched */
} mt_baseline_verdict_t;

/* Matches each pattern against the baseline (type, parent, children and
 * field all equal): sets `matched` on both sides, copies the entry's reason
 * into the pattern (so that a rewritten baseline keeps it), and marks as
 * `failing` each unmatched pattern whose type is in fail_types and that is
 * high confidence, or medium with fail_medium. */
void mt_baseline_check(mt_baseline_t *baseline, mt_baseline_t *patterns, unsigned fail_types,
                       bool fail_medium, mt_baseline_verdict_t *out);

/* "tvguide.show find {}" for a summary line. */
void mt_baseline_cmd_format(const mt_baseline_cmd_t *c, char *out, size_t cap);

/* `mongotap baseline [--admin URL] [--token TOKEN] [-o FILE]`; argv[0] is
 * "baseline". 0 written, 1 admin unreachable or file not written, 2 bad
 * flags. */
int mt_baseline_cmd_main(int argc, char **argv);

#endif
