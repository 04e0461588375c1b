/*
 * write_loop: the same write sent once per document, one statement each
 * (SPEC section 5a): updates and deletes whose one statement looks up one
 * key, findAndModify by key, inserts of one document. A command with many
 * statements (insert_many, bulk_write) never counts. When a read earlier in
 * the segment returned the keys, it is the finding's parent.
 */
#include <stdlib.h>
#include <string.h>

#include "detect.h"
#include "evidence.h"

#define CANDIDATES 4 /* parents weighed */

typedef struct {
    uint64_t shape;
    uint32_t idx;
} wk_t;

static int wk_cmp(const void *a, const void *b)
{
    const wk_t *x = a, *y = b;
    if (x->shape != y->shape)
        return x->shape < y->shape ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

static bool is_loop_write(const mt_window_cmd_t *c)
{
    if (c->ignored)
        return false;
    switch (c->kind) {
    case MT_CMD_UPDATE:
    case MT_CMD_DELETE:
        return c->single_statement && c->nterms > 0;
    case MT_CMD_FIND_AND_MODIFY:
        return c->nterms > 0;
    case MT_CMD_INSERT:
        return c->single_statement;
    default:
        return false;
    }
}

/* Fills parent and field when a read before the first write returned the
 * keys (the best of the latest few, scored as N+1 children are). */
static void find_parent(mt_detect_ctx_t *ctx, mt_detect_result_t *r, const uint32_t *kids,
                        size_t nk)
{
    const mt_window_t *w = ctx->w;
    uint32_t cands[CANDIDATES];
    size_t nc = 0;
    mt_evidence_t ev;

    for (uint32_t i = kids[0]; i > ctx->lo && nc < CANDIDATES; i--) {
        const mt_window_cmd_t *c = &w->cmds[i - 1];
        if (mt_detect_is_parent(c, ctx->threshold) && !c->ignored)
            cands[nc++] = i - 1;
    }
    if (nc == 0 || !mt_evidence_init(&ev, ctx, kids, nk, r->key_term))
        return;
    mt_evidence_score_t best = {0, -1, 0};
    uint32_t parent = cands[0];
    for (size_t c = 0; c < nc; c++) {
        mt_evidence_score_t sc = mt_evidence_score(&ev, &cands[c], 1, true);
        if (c == 0 || sc.best > best.best) {
            best = sc;
            parent = cands[c];
        }
    }
    if (best.best_path >= 0 && (uint64_t)best.best * 100 >= (uint64_t)nk * MT_DETECT_HIGH_PCT) {
        r->has_parent = true;
        r->parent = parent;
        r->parent_docs = w->cmds[parent].docs;
        r->parent_ns = w->cmds[parent].duration_ns + w->cmds[parent].getmore_ns;
        r->high = true;
        bson_strncpy(r->field, ev.paths[best.best_path], sizeof r->field);
        r->matched = best.best;
    }
}

static void distinct_values(const mt_window_t *w, const uint32_t *kids, size_t nk, unsigned term,
                            mt_detect_result_t *r)
{
    /* children are few enough here that a quadratic count is cheaper than a table */
    r->distinct = 0;
    for (size_t k = 0; k < nk; k++) {
        bool seen = false;
        for (size_t j = 0; j < k && !seen; j++)
            seen = mt_window_cmd_hash(&w->cmds[kids[j]], term) ==
                   mt_window_cmd_hash(&w->cmds[kids[k]], term);
        if (!seen) {
            if (r->nsamples < MT_DETECT_SAMPLES)
                r->samples[r->nsamples++] = kids[k];
            r->distinct++;
        }
    }
}

void mt_detect_write_loop(mt_detect_ctx_t *ctx)
{
    const mt_window_t *w = ctx->w;
    size_t span = ctx->hi - ctx->lo, n = 0;
    wk_t *wk = mt__detect_alloc(ctx, span * sizeof *wk);
    uint32_t *kids = mt__detect_alloc(ctx, span * sizeof *kids);

    if (!wk || !kids)
        return;
    for (uint32_t i = ctx->lo; i < ctx->hi; i++)
        if (is_loop_write(&w->cmds[i]))
            wk[n++] = (wk_t){w->cmds[i].shape_hash, i};
    mt__detect_sort(ctx, wk, n, sizeof *wk, wk_cmp);
    for (size_t g = 0; g < n;) {
        size_t ge = g, nk = 0;
        while (ge < n && wk[ge].shape == wk[g].shape)
            kids[nk++] = wk[ge++].idx;
        g = ge;
        if (nk < ctx->threshold)
            continue;
        uint8_t key = 0, constants = 0;
        bool keyed = w->cmds[kids[0]].nterms > 0;
        if (keyed && !mt__detect_key_term(w, kids, nk, &key, &constants))
            continue;
        mt_detect_result_t *r = mt__detect_add(ctx, MT_FINDING_WRITE_LOOP, kids, nk);
        if (!r)
            break;
        r->distinct = (uint32_t)nk;
        if (keyed) {
            r->has_key = true;
            r->key_term = key;
            r->constant_terms = constants;
            distinct_values(w, kids, nk, key, r);
            find_parent(ctx, r, kids, nk);
        }
    }
}
