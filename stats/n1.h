/*
 * n1: the N+1 detector (SPEC section 5). Runs over one closed window: finds a
 * find/aggregate parent that returned >= threshold documents followed by
 * >= threshold single-key lookups of one shape, checks whether the looked-up
 * values came out of the parent's documents, and words a fix for the driver
 * the client named.
 */
#ifndef MT_N1_H
#define MT_N1_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "window.h"

#define MT_N1_FIELD_MAX 256  /* longest field path reported */
#define MT_N1_SAMPLES 5      /* values shown with log_values */
#define MT_N1_MAX_RESULTS 64 /* findings per window */
#define MT_N1_CANDIDATES 4   /* parents weighed per run of children */
#define MT_N1_HIGH_PCT 80    /* share of values found under one field for "high" */

typedef struct {
    uint32_t parent; /* command index in the window */
    uint32_t first_child;
    uint32_t count;                  /* children */
    uint32_t distinct;               /* distinct looked-up values */
    uint64_t child_ns;               /* time spent in the children */
    bool high;                       /* confidence */
    char field[MT_N1_FIELD_MAX];     /* "" unless high */
    uint32_t matched;                /* high: children whose value is under field;
                                        medium: children whose value is anywhere in the parent */
    uint32_t samples[MT_N1_SAMPLES]; /* a child index per distinct value (log_values) */
    uint32_t nsamples;
} mt_n1_result_t;

/* Hash of a BSON value for matching lookups against documents: numbers
 * compare by value (int32 5 == int64 5 == double 5.0), everything else by
 * type and bytes. */
uint64_t mt_n1_value_hash(const bson_iter_t *it);

/* Analyses a window; writes up to max results ordered by first child. */
size_t mt_n1_analyse(const mt_window_t *w, uint32_t threshold, mt_n1_result_t *out, size_t max);

/* The suggested fix for a finding, worded for the driver ("PyMongo 3.11.0",
 * "nodejs|Mongoose 4.17.1" ...). field may be NULL. */
void mt_n1_suggestion(const char *driver, const char *collection, const char *key,
                      const char *field, uint32_t distinct, char *out, size_t cap);

/* Builds the finding document (SPEC section 5). id like "f-000001". */
void mt_n1_finding_bson(const mt_window_t *w, const mt_n1_result_t *r, const char *id,
                        int64_t detected_ms, bool log_values, bson_t *out);

#endif
