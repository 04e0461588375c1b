/*
 * repeated_read: the same question asked again and again in one request
 * (SPEC section 5a): reads of one shape with the same values (filter,
 * projection, sort, limit, skip: one hash), at least the threshold of them.
 * Reads that are children of an N+1 finding of the segment are not reported
 * again.
 */
#include <stdlib.h>

#include "detect.h"

typedef struct {
    uint64_t shape, query;
    uint32_t idx;
} rk_t;

static int rk_cmp(const void *a, const void *b)
{
    const rk_t *x = a, *y = b;
    if (x->shape != y->shape)
        return x->shape < y->shape ? -1 : 1;
    if (x->query != y->query)
        return x->query < y->query ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

static bool is_read(mt_cmd_kind_t k)
{
    return k == MT_CMD_FIND || k == MT_CMD_AGGREGATE || k == MT_CMD_COUNT || k == MT_CMD_DISTINCT;
}

void mt_detect_repeated_read(mt_detect_ctx_t *ctx)
{
    const mt_window_t *w = ctx->w;
    size_t span = ctx->hi - ctx->lo, n = 0;
    rk_t *rk = bson_malloc(span * sizeof *rk);
    uint32_t *kids = bson_malloc(span * sizeof *kids);

    for (uint32_t i = ctx->lo; i < ctx->hi; i++) {
        const mt_window_cmd_t *c = &w->cmds[i];
        if (is_read(c->kind) && !c->ignored && !mt__detect_is_child(ctx, i))
            rk[n++] = (rk_t){c->shape_hash, c->query_hash, i};
    }
    qsort(rk, n, sizeof *rk, rk_cmp);
    for (size_t g = 0; g < n;) {
        size_t ge = g, nk = 0;
        while (ge < n && rk[ge].shape == rk[g].shape && rk[ge].query == rk[g].query)
            kids[nk++] = rk[ge++].idx;
        g = ge;
        if (nk < ctx->threshold)
            continue;
        mt_detect_result_t *r = mt__detect_add(ctx, MT_FINDING_REPEATED_READ, kids, nk);
        if (!r)
            break;
        r->distinct = 1;
        r->high = true;
        r->samples[0] = kids[0];
        r->nsamples = 1;
    }
    bson_free(rk);
    bson_free(kids);
}
