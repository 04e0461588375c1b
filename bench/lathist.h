/*
 * lathist: a log-bucketed latency histogram for the load generator. Values are
 * nanoseconds; each power of two is split in 64 linear buckets, so a reported
 * quantile is within 1/128 (0.8%) of a value that was recorded.
 */
#ifndef MT_LATHIST_H
#define MT_LATHIST_H

#include <stdint.h>

#define MT_LATHIST_SUB_BITS 6
#define MT_LATHIST_SUB (1u << MT_LATHIST_SUB_BITS)
#define MT_LATHIST_MAX_BIT 40 /* 2^40 ns is about 18 minutes: larger values are clamped */
#define MT_LATHIST_BUCKETS (MT_LATHIST_SUB * (MT_LATHIST_MAX_BIT - MT_LATHIST_SUB_BITS + 2))

typedef struct {
    uint64_t count;
    uint64_t sum_ns;
    uint64_t max_ns;
    uint64_t buckets[MT_LATHIST_BUCKETS];
} mt_lathist_t;

void mt_lathist_reset(mt_lathist_t *h);
void mt_lathist_record(mt_lathist_t *h, uint64_t ns);
void mt_lathist_merge(mt_lathist_t *into, const mt_lathist_t *from);

/* The value at quantile q in [0, 1] (midpoint of its bucket), 0 when empty. */
uint64_t mt_lathist_quantile(const mt_lathist_t *h, double q);

#endif
