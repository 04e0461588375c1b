/*
 * detect: what the detectors find in a closed window (SPEC sections 4, 5
 * and 5a). The window is cut into segments (back-to-back requests), and each
 * detector, one file per finding type, runs over each segment, sharing one
 * evidence search (evidence.h), one table of suggestions (suggest.h) and one
 * finding builder (finding.h).
 */
#ifndef MT_DETECT_H
#define MT_DETECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "window.h"

#define MT_DETECT_FIELD_MAX 256  /* longest field path reported */
#define MT_DETECT_SAMPLES 5      /* values shown with log_values */
#define MT_DETECT_MAX_RESULTS 64 /* findings per window */
#define MT_DETECT_HIGH_PCT 80    /* share of values found under one field for "high" */

typedef enum {
    MT_FINDING_N_PLUS_ONE = 0,
    MT_FINDING_WRITE_LOOP,
    MT_FINDING_REPEATED_READ,
} mt_finding_type_t;

#define MT_FINDING__TYPES 3

const char *mt_finding_type_str(mt_finding_type_t type);
/* One sentence on what a finding of that type means, for reports and consoles. */
const char *mt_finding_type_explain(mt_finding_type_t type);

typedef struct {
    mt_finding_type_t type;
    uint32_t segment;        /* 1-based; 0 when the window was not cut */
    uint32_t seg_lo, seg_hi; /* the segment's commands [lo, hi) */

    bool has_parent;
    uint32_t parent;   /* the parent command; for a nested finding the outer one's first child */
    int32_t nested_in; /* index of the result whose children act as the parent, or -1 */
    uint64_t parent_docs;
    uint64_t parent_ns;

    uint32_t first_child;
    uint32_t count;    /* children */
    uint32_t distinct; /* distinct looked-up values (or lists) */
    uint64_t child_ns; /* time spent in the children */
    bool has_key;
    uint8_t key_term;       /* the children's changing term (window command terms[]) */
    uint8_t constant_terms; /* bit i: term i is the same in every child (compound lookups) */
    bool in_lists;          /* children are per-document $in lists */

    bool high;                           /* confidence */
    char field[MT_DETECT_FIELD_MAX];     /* "" unless high */
    uint32_t matched;                    /* high: children whose value is under field;
                                            medium: children whose value is anywhere in the parent */
    uint32_t samples[MT_DETECT_SAMPLES]; /* a child index per distinct value (log_values) */
    uint32_t nsamples;

    size_t kids_off, kids_len; /* the children, in the context's pool */
} mt_detect_result_t;

/* Memory the detectors use while one window is analysed, kept by the
 * caller from window to window: one block that bump-allocates, so that
 * analysing a window allocates nothing once the block has grown to what the
 * largest window needed. What does not fit gets a chunk of its own, and the
 * block grows to the window's whole need when its analysis ends. */
typedef struct mt_detect_chunk mt_detect_chunk_t;
typedef struct {
    uint8_t *block;
    size_t cap, used;
    size_t need;               /* bytes this window asked for */
    mt_detect_chunk_t *chunks; /* this window's overflow */
} mt_detect_scratch_t;

void mt_detect_scratch_free(mt_detect_scratch_t *s);

typedef struct {
    uint32_t threshold;           /* --n1-threshold */
    mt_detect_scratch_t *scratch; /* kept by the caller; NULL: one for this window only */
} mt_detect_config_t;

/* Shared by the detectors while one window is analysed. */
typedef struct {
    mt_window_t *w;
    uint32_t threshold;
    uint32_t segment, lo, hi; /* the segment being analysed */
    mt_detect_result_t *out;
    size_t n, max;
    size_t seg_first; /* first result of the current segment */
    uint32_t *pool;   /* children of every result */
    size_t pool_len;
    mt_detect_scratch_t *scratch;
} mt_detect_ctx_t;

/* Runs every detector over each segment of w; writes up to max results,
 * ordered by segment and first child, and marks each command's role. */
size_t mt_detect_window(mt_window_t *w, const mt_detect_config_t *cfg, mt_detect_result_t *out,
                        size_t max);

/* The detectors, one per finding type, over ctx's current segment. */
void mt_detect_n_plus_one(mt_detect_ctx_t *ctx);
void mt_detect_write_loop(mt_detect_ctx_t *ctx);
void mt_detect_repeated_read(mt_detect_ctx_t *ctx);

/* A find or aggregate that returned n1-threshold documents (getMores on its
 * cursor included): what may be an N+1 or write loop's parent. */
bool mt_detect_is_parent(const mt_window_cmd_t *c, uint32_t threshold);

/* For the detectors: n zeroed bytes (16-aligned) that last until the window
 * is analysed; NULL when out of memory. */
void *mt__detect_alloc(mt_detect_ctx_t *ctx, size_t n);
/* Sorts base[0..n) (elements of size bytes, cmp a total order) with the
 * window's scratch memory: the C library's qsort allocates. */
void mt__detect_sort(mt_detect_ctx_t *ctx, void *base, size_t n, size_t size,
                     int (*cmp)(const void *, const void *));
/* For the detectors: a result slot with kids[0..nkids) copied into the pool,
 * or NULL when the window has as many results as it may. */
mt_detect_result_t *mt__detect_add(mt_detect_ctx_t *ctx, mt_finding_type_t type,
                                   const uint32_t *kids, size_t nkids);
/* True when command i is a child of a result of the current segment. */
bool mt__detect_is_child(const mt_detect_ctx_t *ctx, uint32_t i);
/* The lookup term that changes from child to child while every other term
 * stays the same (key; the others in the constants bitmask); false when more
 * than one changes. */
bool mt__detect_key_term(const mt_window_t *w, const uint32_t *kids, size_t n, uint8_t *key,
                         uint8_t *constants);
/* Sum of the children's durations (their getMores included). */
uint64_t mt__detect_child_ns(const mt_window_t *w, const uint32_t *kids, size_t nkids);

#endif
