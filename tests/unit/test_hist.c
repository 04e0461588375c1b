/*
 * hist: bucket layout, the 2% error bound on quantiles against exact order
 * statistics, exact min/max/sum, and halving when a bucket would wrap.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "hist.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Deterministic xorshift so failures reproduce. */
static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

Test(hist, empty_is_zero)
{
    mt_hist_t h;
    mt_hist_init(&h);
    cr_assert_eq(mt_hist_quantile(&h, 0.5), 0);
    cr_assert_eq(mt_hist_quantile(&h, 0.99), 0);
    cr_assert_eq(mt_hist_min(&h), 0);
    cr_assert_eq(h.max_ns, 0);
    cr_assert_eq(h.count, 0);
}

Test(hist, every_value_lies_in_its_bucket)
{
    for (uint64_t v = 0; v < 100000; v++) {
        unsigned i = mt_hist_bucket_index(v);
        cr_assert_geq(v, mt_hist_bucket_low(i), "v=%llu idx=%u", (unsigned long long)v, i);
        cr_assert_lt(v, mt_hist_bucket_low(i) + mt_hist_bucket_width(i));
    }
    for (int shift = 17; shift < 36; shift++) {
        for (int k = 0; k < 200; k++) {
            uint64_t v = (UINT64_C(1) << shift) + rng() % (UINT64_C(1) << shift);
            unsigned i = mt_hist_bucket_index(v);
            cr_assert_lt(i, MT_HIST_BUCKETS);
            cr_assert_geq(v, mt_hist_bucket_low(i));
            cr_assert_lt(v, mt_hist_bucket_low(i) + mt_hist_bucket_width(i));
            /* Width at most 1/32 of the lower bound: midpoint within 1/64. */
            cr_assert_leq(mt_hist_bucket_width(i) * 32, mt_hist_bucket_low(i));
        }
    }
    cr_assert_eq(mt_hist_bucket_index(MT_HIST_MAX_NS - 1), MT_HIST_BUCKETS - 1);
    cr_assert_eq(mt_hist_bucket_index(MT_HIST_MAX_NS * 4), MT_HIST_BUCKETS - 1);
}

Test(hist, indexes_grow_with_values)
{
    unsigned prev = 0;
    for (uint64_t v = 1; v < MT_HIST_MAX_NS; v = v * 3 / 2 + 1) {
        unsigned i = mt_hist_bucket_index(v);
        cr_assert_geq(i, prev);
        prev = i;
    }
}

static void check_quantiles(uint64_t *vals, size_t n)
{
    mt_hist_t h;
    mt_hist_init(&h);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        mt_hist_record(&h, vals[i]);
        sum += vals[i];
    }
    qsort(vals, n, sizeof *vals, cmp_u64);
    cr_assert_eq(h.count, n);
    cr_assert_eq(h.sum_ns, sum);
    cr_assert_eq(mt_hist_min(&h), vals[0]);
    cr_assert_eq(h.max_ns, vals[n - 1]);
    const double qs[] = {0.5, 0.9, 0.95, 0.99, 0.999};
    for (size_t k = 0; k < sizeof qs / sizeof qs[0]; k++) {
        size_t rank = (size_t)ceil(qs[k] * (double)n);
        uint64_t exact = vals[rank - 1];
        uint64_t got = mt_hist_quantile(&h, qs[k]);
        double err = exact ? fabs((double)got - (double)exact) / (double)exact : (double)got;
        cr_assert_leq(err, 0.02, "q=%.3f exact=%llu got=%llu err=%.4f", qs[k],
                      (unsigned long long)exact, (unsigned long long)got, err);
    }
}

Test(hist, quantiles_within_two_percent_log_uniform)
{
    enum { N = 20000 };
    static uint64_t vals[N];
    for (int round = 0; round < 5; round++) {
        for (size_t i = 0; i < N; i++) {
            /* 1 us .. ~60 s, log-uniform */
            double e = 3.0 + (double)(rng() % 1000000) / 1000000.0 * 7.7;
            vals[i] = (uint64_t)pow(10.0, e);
        }
        check_quantiles(vals, N);
    }
}

Test(hist, quantiles_within_two_percent_narrow)
{
    enum { N = 5000 };
    static uint64_t vals[N];
    /* Tight cluster around 250 us, the usual loopback find. */
    for (size_t i = 0; i < N; i++)
        vals[i] = 240000 + rng() % 20000;
    check_quantiles(vals, N);
}

Test(hist, single_value_is_exact)
{
    const uint64_t vs[] = {0, 1, 31, 33, 1000, 123457, 98765432, 5000000000ULL, MT_HIST_MAX_NS * 3};
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        mt_hist_t h;
        mt_hist_init(&h);
        mt_hist_record(&h, vs[i]);
        /* Clamped to [min, max]: one sample is reported exactly. */
        cr_assert_eq(mt_hist_quantile(&h, 0.5), vs[i]);
        cr_assert_eq(mt_hist_quantile(&h, 0.99), vs[i]);
    }
}

Test(hist, add_sum_is_not_a_sample)
{
    mt_hist_t h;
    mt_hist_init(&h);
    mt_hist_record(&h, 1000);
    mt_hist_add_sum(&h, 5000);
    cr_assert_eq(h.count, 1);
    cr_assert_eq(h.sum_ns, 6000);
    cr_assert_eq(h.max_ns, 1000);
    cr_assert_eq(mt_hist_quantile(&h, 0.99), 1000);
}

Test(hist, halving_keeps_proportions)
{
    mt_hist_t h;
    mt_hist_init(&h);
    for (int i = 0; i < 90; i++)
        mt_hist_record(&h, 1000000);
    for (int i = 0; i < 10; i++)
        mt_hist_record(&h, 50000000);
    uint64_t p50 = mt_hist_quantile(&h, 0.5), p95 = mt_hist_quantile(&h, 0.95);
    /* Pretend billions of samples went by: the next one must not wrap. */
    unsigned a = mt_hist_bucket_index(1000000), b = mt_hist_bucket_index(50000000);
    h.buckets[a] = UINT32_MAX;
    h.buckets[b] = UINT32_MAX / 9;
    h.in_buckets = (uint64_t)h.buckets[a] + h.buckets[b];
    mt_hist_record(&h, 1000000);
    cr_assert_lt(h.buckets[a], UINT32_MAX);
    cr_assert_gt(h.buckets[a], UINT32_MAX / 2 - 2);
    cr_assert_eq(mt_hist_quantile(&h, 0.5), p50);
    cr_assert_eq(mt_hist_quantile(&h, 0.95), p95);
}
