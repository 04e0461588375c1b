/*
 * spares: buffers kept for reuse within their bounds (how many, how large
 * each, how many bytes in all), taken newest first within a size range, and
 * freed with the owner's allocator when not kept.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>

#include "spares.h"

static int freed;

static void counting_free(void *p)
{
    freed++;
    free(p);
}

Test(spares, kept_within_every_bound_and_freed_past_them)
{
    mt_spares_t s;
    freed = 0;
    mt_spares_init(&s, 2, 100, 150, counting_free);
    mt_spares_put(&s, malloc(101), 101);
    cr_assert_eq(freed, 1, "larger than max_each");
    mt_spares_put(&s, malloc(100), 100);
    mt_spares_put(&s, malloc(60), 60);
    cr_assert_eq(freed, 2, "past max_bytes");
    mt_spares_put(&s, malloc(50), 50);
    mt_spares_put(&s, malloc(10), 10);
    cr_assert_eq(freed, 3, "past max_n");
    cr_assert_eq(s.n, 2);
    cr_assert_eq(s.bytes, 150);
    cr_assert_eq(s.uses, 2, "counted when kept, not when freed");
    mt_spares_put(&s, NULL, 10);
    cr_assert_eq(freed, 3, "NULL is ignored");
    size_t cap;
    void *p = mt_spares_take(&s, 60, SIZE_MAX, &cap);
    cr_assert_not_null(p);
    cr_assert_eq(s.uses, 3, "and when taken");
    cr_assert_null(mt_spares_take(&s, 101, SIZE_MAX, &cap));
    cr_assert_eq(s.uses, 3, "not when none fits");
    mt_spares_put(&s, p, cap);
    mt_spares_release(&s);
    cr_assert_eq(freed, 5);
    cr_assert_eq(s.n, 0);
    cr_assert_eq(s.bytes, 0);
}

Test(spares, the_smallest_that_fits_is_taken_newest_first)
{
    mt_spares_t s;
    char *a = malloc(10), *b = malloc(40), *c = malloc(20), *d = malloc(20), *e = malloc(20);
    size_t cap = 0;
    mt_spares_init(&s, 16, SIZE_MAX, SIZE_MAX, free);
    mt_spares_put(&s, a, 10);
    mt_spares_put(&s, b, 40);
    mt_spares_put(&s, c, 20);
    mt_spares_put(&s, d, 20);
    cr_assert_null(mt_spares_take(&s, 41, SIZE_MAX, &cap), "none large enough");
    cr_assert_null(mt_spares_take(&s, 0, 9, &cap), "none small enough");
    cr_assert_eq(mt_spares_take(&s, 35, 50, &cap), b, "an older one when only it fits");
    cr_assert_eq(cap, 40);
    cr_assert_eq(mt_spares_take(&s, 15, 50, &cap), d, "the smallest that fits, the newer of two");
    cr_assert_eq(s.bytes, 30);
    mt_spares_put(&s, e, 20);
    cr_assert_eq(mt_spares_take(&s, 0, SIZE_MAX, &cap), a, "the smallest of all");
    cr_assert_eq(mt_spares_take(&s, 0, SIZE_MAX, &cap), e, "the newer of two equal");
    cr_assert_eq(mt_spares_take(&s, 0, SIZE_MAX, &cap), c);
    cr_assert_null(mt_spares_take(&s, 0, SIZE_MAX, &cap));
    cr_assert_eq(s.bytes, 0);
    free(a);
    free(b);
    free(c);
    free(d);
    free(e);
}
