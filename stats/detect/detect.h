/*
 * detect: what the detectors find in a closed window (SPEC sections 5 and
 * 5a), one file per finding type, sharing one evidence search (evidence.h),
 * one table of suggestions (suggest.h) and one finding builder (finding.h).
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
} mt_finding_type_t;

const char *mt_finding_type_str(mt_finding_type_t type);

typedef struct {
    mt_finding_type_t type;
    uint32_t parent;                     /* command index in the window of the parent */
    uint32_t first_child;                /* command index of the first child */
    uint32_t count;                      /* children */
    uint32_t distinct;                   /* distinct looked-up values */
    uint64_t child_ns;                   /* time spent in the children */
    bool high;                           /* confidence */
    char field[MT_DETECT_FIELD_MAX];     /* "" unless high */
    uint32_t matched;                    /* high: children whose value is under field;
                                            medium: children whose value is anywhere in the parent */
    uint32_t samples[MT_DETECT_SAMPLES]; /* a child index per distinct value (log_values) */
    uint32_t nsamples;
} mt_detect_result_t;

typedef struct {
    uint32_t threshold; /* --n1-threshold */
} mt_detect_config_t;

/* Runs every detector over w; writes up to max results ordered by first
 * child. */
size_t mt_detect_window(const mt_window_t *w, const mt_detect_config_t *cfg,
                        mt_detect_result_t *out, size_t max);

/* The detectors, one per finding type. */
size_t mt_detect_n_plus_one(const mt_window_t *w, uint32_t threshold, mt_detect_result_t *out,
                            size_t max);

#endif
