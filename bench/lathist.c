/*
 * lathist: bucket index arithmetic of the load generator's histogram. Values
 * below 64 ns get one bucket each; above, the bucket is the top seven
 * significant bits of the value (leading one plus six sub-bucket bits).
 */
#include "lathist.h"

#include <string.h>

static unsigned bucket_of(uint64_t v)
{
    if (v >= (UINT64_C(1) << MT_LATHIST_MAX_BIT))
        v = (UINT64_C(1) << MT_LATHIST_MAX_BIT) - 1;
    if (v < MT_LATHIST_SUB)
        return (unsigned)v;
    unsigned k = 63u - (unsigned)__builtin_clzll(v); /* k >= SUB_BITS */
    unsigned sub = (unsigned)(v >> (k - MT_LATHIST_SUB_BITS)) - MT_LATHIST_SUB;
    return MT_LATHIST_SUB + (k - MT_LATHIST_SUB_BITS) * MT_LATHIST_SUB + sub;
}

static uint64_t bucket_mid(unsigned i)
{
    if (i < MT_LATHIST_SUB)
        return i;
    unsigned k = (i - MT_LATHIST_SUB) / MT_LATHIST_SUB + MT_LATHIST_SUB_BITS;
    uint64_t sub = (i - MT_LATHIST_SUB) % MT_LATHIST_SUB;
    uint64_t width = UINT64_C(1) << (k - MT_LATHIST_SUB_BITS);
    return (MT_LATHIST_SUB + sub) * width + width / 2;
}

void mt_lathist_reset(mt_lathist_t *h)
{
    memset(h, 0, sizeof(*h));
}

void mt_lathist_record(mt_lathist_t *h, uint64_t ns)
{
    h->buckets[bucket_of(ns)]++;
    h->count++;
    h->sum_ns += ns;
    if (ns > h->max_ns)
        h->max_ns = ns;
}

void mt_lathist_merge(mt_lathist_t *into, const mt_lathist_t *from)
{
    for (unsigned i = 0; i < MT_LATHIST_BUCKETS; i++)
        into->buckets[i] += from->buckets[i];
    into->count += from->count;
    into->sum_ns += from->sum_ns;
    if (from->max_ns > into->max_ns)
        into->max_ns = from->max_ns;
}

uint64_t mt_lathist_quantile(const mt_lathist_t *h, double q)
{
    if (h->count == 0)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    /* rank of the wanted sample, 1-based: the smallest value with at least q of the samples at or
     * below it */
    uint64_t rank = (uint64_t)(q * (double)h->count + 0.999999);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < MT_LATHIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t mid = bucket_mid(i);
            return mid > h->max_ns ? h->max_ns : mid;
        }
    }
    return h->max_ns;
}
