/*
 * findings: the findings kept for the API and reports (the last
 * MT_FINDINGS_KEEP, as documents) and the patterns they group into, keyed by
 * (type, parent shape, child shape, field) and ranked by the time spent in
 * the children. Both are bounded.
 */
#ifndef MT_FINDINGS_H
#define MT_FINDINGS_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "detect.h"

#define MT_FINDINGS_KEEP 1000
#define MT_FINDINGS_MAX_PATTERNS 1000

/* The parts of a pattern's key, with the finding type. */
enum {
    MT_PK_PARENT_DB = 0,
    MT_PK_PARENT_COLLECTION,
    MT_PK_PARENT_COMMAND,
    MT_PK_PARENT_SHAPE,
    MT_PK_CHILD_DB,
    MT_PK_CHILD_COLLECTION,
    MT_PK_CHILD_COMMAND,
    MT_PK_CHILD_SHAPE,
    MT_PK_CHILD_KEY,
    MT_PK_FIELD, /* NULL when confidence is medium */
    MT_PK__COUNT
};

typedef struct {
    uint64_t hash;
    mt_finding_type_t type;
    bool high;                     /* confidence */
    const char *key[MT_PK__COUNT]; /* point into keybuf; parent parts NULL without a parent */
    uint64_t occurrences;          /* findings */
    uint64_t children;             /* child commands over all findings */
    uint64_t child_ns;             /* time spent in the children */
    uint64_t example_window;
    char example_finding[16];
    char *suggestion; /* the latest finding's */
    int64_t first_ms, last_ms;
    char *keybuf; /* owns the key strings */
} mt_findings_pattern_t;

typedef struct {
    bson_t *ring[MT_FINDINGS_KEEP]; /* finding documents, oldest overwritten */
    size_t next;
    size_t count;
    uint64_t next_id; /* ids count up from 1 for the process */
    uint64_t added;   /* findings put in the ring, for the process: the ring holds
                         the sequence numbers (added - count, added] */
    mt_findings_pattern_t *patterns;
    size_t npatterns;
} mt_findings_t;

/* What a new finding contributes to its pattern. */
typedef struct {
    mt_finding_type_t type;
    const char *key[MT_PK__COUNT];
    bool high; /* a medium finding folds into the high pattern of the same loop */
    uint32_t children;
    uint64_t child_ns;
    uint64_t window_id;
    const char *suggestion;
    int64_t now_ms;
} mt_findings_event_t;

void mt_findings_init(mt_findings_t *f);
/* Frees everything; ids keep counting. */
void mt_findings_clear(mt_findings_t *f);

/* The next finding id ("f-000001"); written to out (16 bytes). */
void mt_findings_next_id(mt_findings_t *f, char out[16]);

/* Keeps a copy of the finding document and folds it into its pattern. */
void mt_findings_add(mt_findings_t *f, const bson_t *finding, const char *id,
                     const mt_findings_event_t *ev);

/* Sequence number of the newest finding kept (0 when none yet), and the
 * number at or below which findings have aged out of the ring. */
uint64_t mt_findings_seq(const mt_findings_t *f);
uint64_t mt_findings_floor(const mt_findings_t *f);

/* The i-th most recent finding (0 = newest), or NULL. */
const bson_t *mt_findings_get(const mt_findings_t *f, size_t i);

/* Patterns, largest child time first: a bson_malloc'd array of pointers. */
const mt_findings_pattern_t **mt_findings_patterns_sorted(const mt_findings_t *f, size_t *n);

void mt_findings_pattern_bson(const mt_findings_pattern_t *p, bson_t *doc);

/* Appends "findings" (oldest first) and "patterns" arrays to doc. */
void mt_findings_bson(const mt_findings_t *f, bson_t *doc);

#endif
