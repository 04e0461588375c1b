/*
 * evidence: do the values a run of lookups asked for come out of a parent's
 * returned documents, and under which field path? Values are compared by a
 * hash, never stored. The one search every detector uses.
 */
#ifndef MT_EVIDENCE_H
#define MT_EVIDENCE_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "detect.h"
#include "window.h"

#define MT_EVIDENCE_MAX_PATHS 32 /* distinct field paths tracked per search */

/* Hash of a BSON value for matching lookups against documents: numbers
 * compare by value (int32 5 == int64 5 == double 5.0), everything else by
 * type and bytes. */
uint64_t mt_evidence_value_hash(const bson_iter_t *it);

/* The distinct values of a set of children (window command indexes) and,
 * after a score, the paths of one parent's documents they were found under. */
typedef struct {
    const mt_window_t *w;
    uint64_t *hashes;
    uint32_t *occ;   /* children per distinct value */
    uint32_t *first; /* first child index with the value */
    size_t ndistinct;
    int32_t *table; /* open addressing: index into hashes, -1 empty */
    size_t tcap;
    char paths[MT_EVIDENCE_MAX_PATHS][MT_DETECT_FIELD_MAX];
    size_t npaths;
    size_t words;   /* bitmap words per path */
    uint64_t *bits; /* MT_EVIDENCE_MAX_PATHS * words */
    uint64_t *any;  /* words */
    const uint32_t *kids;
    size_t nkids;
    unsigned term; /* which of the children's lookup terms is compared */
    /* probing: does one value appear under one path of the current document */
    bool probing;
    const char *probe_path;
    uint64_t probe_hash;
    bool probe_hit;
    uint32_t probe_score;
} mt_evidence_t;

typedef struct {
    uint32_t best;     /* children matched under the best path */
    int best_path;     /* index in paths, -1 when none */
    uint32_t anywhere; /* children matched under any path */
} mt_evidence_score_t;

/* Builds the distinct-value table of term `term` of the children
 * kids[0..nkids). false when out of memory. */
bool mt_evidence_init(mt_evidence_t *ev, const mt_window_t *w, const uint32_t *kids, size_t nkids,
                      unsigned term);
void mt_evidence_free(mt_evidence_t *ev);

/* Scores the documents returned to the parent commands (sorted indexes; one
 * command, or the children of an outer finding for a nested one) against the
 * children. With tiebreak, paths that explain equally many children are told
 * apart by position (document i's value looked up by the i-th lookup). */
mt_evidence_score_t mt_evidence_score(mt_evidence_t *ev, const uint32_t *parents, size_t nparents,
                                      bool tiebreak);

#endif
