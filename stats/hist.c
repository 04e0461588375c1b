/*
 * hist: log-linear buckets (the HdrHistogram idea at 5 significant bits).
 * The bucket index is a count-leading-zeros and two shifts.
 */
#include "hist.h"

#include <math.h>
#include <string.h>

void mt_hist_init(mt_hist_t *h)
{
    memset(h, 0, sizeof *h);
    h->min_ns = UINT64_MAX;
}

unsigned mt_hist_bucket_index(uint64_t v)
{
    if (v < 32)
        return (unsigned)v;
    if (v >= MT_HIST_MAX_NS)
        return MT_HIST_BUCKETS - 1;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v); /* 5..35 */
    unsigned e = msb - MT_HIST_SUB_BITS;
    unsigned s = (unsigned)(v >> e) - 32u;
    return 32u + 32u * e + s;
}

uint64_t mt_hist_bucket_low(unsigned idx)
{
    if (idx < 32)
        return idx;
    unsigned e = (idx - 32) / 32, s = (idx - 32) % 32;
    return (uint64_t)(32 + s) << e;
}

uint64_t mt_hist_bucket_width(unsigned idx)
{
    if (idx < 32)
        return 1;
    return UINT64_C(1) << ((idx - 32) / 32);
}

void mt_hist_record(mt_hist_t *h, uint64_t ns)
{
    unsigned idx = mt_hist_bucket_index(ns);
    if (h->buckets[idx] == UINT32_MAX) {
        /* A bucket is about to wrap (billions of samples): halve them all.
         * Quantiles only depend on proportions, so they stay right. */
        h->in_buckets = 0;
        for (unsigned i = 0; i < MT_HIST_BUCKETS; i++) {
            h->buckets[i] = h->buckets[i] / 2 + (h->buckets[i] & 1); /* rounds up, no wrap */
            h->in_buckets += h->buckets[i];
        }
    }
    h->buckets[idx]++;
    h->in_buckets++;
    h->count++;
    h->sum_ns += ns;
    if (ns < h->min_ns)
        h->min_ns = ns;
    if (ns > h->max_ns)
        h->max_ns = ns;
}

void mt_hist_add_sum(mt_hist_t *h, uint64_t ns)
{
    h->sum_ns += ns;
}

uint64_t mt_hist_min(const mt_hist_t *h)
{
    return h->count ? h->min_ns : 0;
}

uint64_t mt_hist_quantile(const mt_hist_t *h, double q)
{
    if (h->in_buckets == 0)
        return 0;
    if (q <= 0)
        return h->min_ns;
    if (q >= 1)
        return h->max_ns;
    /* The sample of rank ceil(q * n) (1-based), the usual nearest-rank rule. */
    uint64_t rank = (uint64_t)ceil(q * (double)h->in_buckets);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    unsigned idx = 0;
    for (; idx < MT_HIST_BUCKETS; idx++) {
        seen += h->buckets[idx];
        if (seen >= rank)
            break;
    }
    if (idx == MT_HIST_BUCKETS)
        idx = MT_HIST_BUCKETS - 1;
    uint64_t v = mt_hist_bucket_low(idx) + mt_hist_bucket_width(idx) / 2;
    if (v < h->min_ns)
        v = h->min_ns;
    if (v > h->max_ns)
        v = h->max_ns;
    return v;
}
