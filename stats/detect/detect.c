/*
 * detect: runs each detector over a closed window and orders what they found.
 */
#include "detect.h"

#include <stdlib.h>

static int by_first_child(const void *a, const void *b)
{
    const mt_detect_result_t *x = a, *y = b;
    if (x->first_child != y->first_child)
        return x->first_child < y->first_child ? -1 : 1;
    return x->parent < y->parent ? -1 : (x->parent > y->parent);
}

size_t mt_detect_window(const mt_window_t *w, const mt_detect_config_t *cfg,
                        mt_detect_result_t *out, size_t max)
{
    size_t n = 0;
    uint32_t threshold = cfg->threshold < 1 ? 1 : cfg->threshold;

    n += mt_detect_n_plus_one(w, threshold, out + n, max - n);
    qsort(out, n, sizeof(*out), by_first_child);
    return n;
}
