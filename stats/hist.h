/*
 * hist: a log-bucketed latency histogram with a fixed, allocation-free
 * footprint. O(1) record; quantiles are within 1/64 (1.6%) of the true value
 * for every latency up to MT_HIST_MAX_NS, and always within [min, max].
 */
#ifndef MT_HIST_H
#define MT_HIST_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Bucket layout (values in nanoseconds):
 *
 *   index 0..31           exact values 0..31
 *   index 32 + 32*e + s   values [(32+s) << e, (33+s) << e), e = 0..30, s = 0..31
 *
 * so a bucket is never wider than 1/32 of its lower bound and its midpoint is
 * within 1/64 of any value in it. Values from MT_HIST_MAX_NS (2^36 ns, about
 * 68.7 s) up land in the last bucket; min/max/sum stay exact.
 */
#define MT_HIST_SUB_BITS 5
#define MT_HIST_BUCKETS 1024
#define MT_HIST_MAX_NS (UINT64_C(1) << 36)

typedef struct {
    uint64_t count;  /* values recorded */
    uint64_t sum_ns; /* sum of recorded values plus mt_hist_add_sum() */
    uint64_t min_ns; /* UINT64_MAX while empty */
    uint64_t max_ns;
    uint64_t in_buckets; /* sum of buckets[] (less than count after halving) */
    uint32_t buckets[MT_HIST_BUCKETS];
} mt_hist_t;

void mt_hist_init(mt_hist_t *h);
void mt_hist_record(mt_hist_t *h, uint64_t ns);
/* Adds time to the sum only (a getMore's time counts toward its cursor's
 * command but is not a separate sample). */
void mt_hist_add_sum(mt_hist_t *h, uint64_t ns);
/* q in [0, 1]; 0 when empty. */
uint64_t mt_hist_quantile(const mt_hist_t *h, double q);
uint64_t mt_hist_min(const mt_hist_t *h); /* 0 when empty */

unsigned mt_hist_bucket_index(uint64_t ns);
/* Lower bound and width of a bucket. */
uint64_t mt_hist_bucket_low(unsigned idx);
uint64_t mt_hist_bucket_width(unsigned idx);

#endif
