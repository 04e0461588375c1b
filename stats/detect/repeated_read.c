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

typedef struct {
    uint64_t shape, query;
    uint32_t count;
} rcount_t;

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

static bool counted(const mt_detect_ctx_t *ctx, uint32_t i)
{
    const mt_window_cmd_t *c = &ctx->w->cmds[i];
    return is_read(c->kind) && !c->ignored && !mt__detect_is_child(ctx, i);
}

/* The table's entry for a read's question (open addressing; count 0 is free). */
static rcount_t *slot_of(rcount_t *tab, size_t cap, const mt_window_cmd_t *c)
{
    size_t s =
        (size_t)((c->shape_hash ^ (c->query_hash * 0x9e3779b97f4a7c15ull)) >> 17) & (cap - 1);
    while (tab[s].count && (tab[s].shape != c->shape_hash || tab[s].query != c->query_hash))
        s = (s + 1) & (cap - 1);
    return &tab[s];
}

void mt_detect_repeated_read(mt_detect_ctx_t *ctx)
{
    const mt_window_t *w = ctx->w;
    size_t span = ctx->hi - ctx->lo, n = 0, cap = 16;
    uint32_t most = 0;

    while (cap < 2 * span)
        cap *= 2;
    /* counted first: a segment that asks every question once (most do)
     * sorts nothing */
    rcount_t *tab = mt__detect_alloc(ctx, cap * sizeof *tab);
    if (!tab)
        return;
    for (uint32_t i = ctx->lo; i < ctx->hi; i++) {
        if (!counted(ctx, i))
            continue;
        rcount_t *e = slot_of(tab, cap, &w->cmds[i]);
        e->shape = w->cmds[i].shape_hash;
        e->query = w->cmds[i].query_hash;
        if (++e->count > most)
            most = e->count;
    }
    if (most < ctx->threshold)
        return;

    rk_t *rk = mt__detect_alloc(ctx, span * sizeof *rk);
    uint32_t *kids = mt__detect_alloc(ctx, span * sizeof *kids);
    if (!rk || !kids)
        return;
    for (uint32_t i = ctx->lo; i < ctx->hi; i++) {
        const mt_window_cmd_t *c = &w->cmds[i];
        if (counted(ctx, i) && slot_of(tab, cap, c)->count >= ctx->threshold)
            rk[n++] = (rk_t){c->shape_hash, c->query_hash, i};
    }
    mt__detect_sort(ctx, rk, n, sizeof *rk, rk_cmp);
    for (size_t g = 0; g < n;) {
        size_t ge = g, nk = 0;
        while (ge < n && rk[ge].shape == rk[g].shape && rk[ge].query == rk[g].query)
            kids[nk++] = rk[ge++].idx;
        g = ge;
        mt_detect_result_t *r = mt__detect_add(ctx, MT_FINDING_REPEATED_READ, kids, nk);
        if (!r)
            break;
        r->distinct = 1;
        r->high = true;
        r->samples[0] = kids[0];
        r->nsamples = 1;
    }
}
