/*
 * n_plus_one: one large read followed by many lookups of one shape, each on
 * one changing key (SPEC sections 5 and 5a): finds, counts, distincts and
 * $match-first aggregates; per-document $in lists; compound lookups with
 * constant other terms; and nested loops, where the children of one finding
 * act as the parent of a deeper one. Children are grouped by shape; each run
 * of children is weighed against the latest qualifying parent before it, a
 * few earlier ones and the earlier findings' children, and the candidate
 * whose documents explain most of the looked-up values wins (ties go to the
 * latest real parent).
 */
#include <stdlib.h>
#include <string.h>

#include "detect.h"
#include "evidence.h"

#define CANDIDATES 4 /* real parents weighed per run of children */
#define MAX_VIRTUAL 8

typedef struct {
    uint64_t hash;
    uint32_t idx;
} sk_t;

static int sk_cmp(const void *a, const void *b)
{
    const sk_t *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

typedef struct {
    size_t start, end; /* in sk[] */
    uint32_t first;    /* first member's command index */
} group_t;

static int group_cmp(const void *a, const void *b)
{
    const group_t *x = a, *y = b;
    return x->first < y->first ? -1 : (x->first > y->first);
}

/* A parent candidate: a command, or an earlier finding's children. */
typedef struct {
    bool nested;
    uint32_t cmd;  /* !nested */
    size_t result; /* nested: index in ctx->out */
} cand_t;

static void cand_docs(const mt_detect_ctx_t *ctx, const cand_t *c, const uint32_t **set, size_t *n)
{
    if (c->nested) {
        *set = ctx->pool + ctx->out[c->result].kids_off;
        *n = ctx->out[c->result].kids_len;
    } else {
        *set = &c->cmd;
        *n = 1;
    }
}

static bool is_child_kind(mt_cmd_kind_t k)
{
    return k == MT_CMD_FIND || k == MT_CMD_AGGREGATE || k == MT_CMD_COUNT || k == MT_CMD_DISTINCT;
}

/* The index in parents[] of the latest parent before command idx, or -1. */
static long latest_parent_before(const uint32_t *parents, size_t np, uint32_t idx)
{
    long lo = 0, hi = (long)np - 1, ans = -1;
    while (lo <= hi) {
        long mid = (lo + hi) / 2;
        if (parents[mid] < idx) {
            ans = mid;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    return ans;
}

/* The result for candidate c over kids, when it is a finding. */
static void make_result(mt_detect_ctx_t *ctx, const cand_t *c, const uint32_t *kids, size_t nkids,
                        uint8_t key, uint8_t constants)
{
    const mt_window_t *w = ctx->w;
    const uint32_t *set;
    size_t nset;
    mt_evidence_t ev;

    if (nkids < ctx->threshold || !mt_evidence_init(&ev, ctx, kids, nkids, key))
        return;
    cand_docs(ctx, c, &set, &nset);
    mt_evidence_score_t sc = mt_evidence_score(&ev, set, nset, true);
    bool high =
        sc.best_path >= 0 && (uint64_t)sc.best * 100 >= (uint64_t)nkids * MT_DETECT_HIGH_PCT;
    /* one value asked again and again, not found in the parent: a repeated
     * read, not the loop over a parent's documents */
    if (!high && ev.ndistinct == 1)
        return;
    mt_detect_result_t *r = mt__detect_add(ctx, MT_FINDING_N_PLUS_ONE, kids, nkids);
    if (!r)
        return;
    r->has_parent = true;
    if (c->nested) {
        const mt_detect_result_t *outer = &ctx->out[c->result];
        r->nested_in = (int32_t)c->result;
        r->parent = outer->first_child;
        r->parent_ns = outer->child_ns;
        for (size_t k = 0; k < nset; k++)
            r->parent_docs += w->cmds[set[k]].docs;
    } else {
        r->parent = c->cmd;
        r->parent_docs = w->cmds[c->cmd].docs;
        r->parent_ns = w->cmds[c->cmd].duration_ns + w->cmds[c->cmd].getmore_ns;
    }
    r->distinct = (uint32_t)ev.ndistinct;
    r->has_key = true;
    r->key_term = key;
    r->constant_terms = constants;
    for (size_t k = 0; k < nkids; k++)
        r->in_lists |= w->cmds[kids[k]].in_list && w->cmds[kids[k]].list_len > 1;
    if (high) {
        r->high = true;
        bson_strncpy(r->field, ev.paths[sc.best_path], sizeof r->field);
        r->matched = sc.best;
    } else {
        r->matched = sc.anywhere;
    }
    for (size_t d = 0; d < ev.ndistinct && r->nsamples < MT_DETECT_SAMPLES; d++)
        r->samples[r->nsamples++] = ev.first[d];
}

/* Candidates for a run of children starting at command first: the latest
 * real parent lp and a few earlier ones, then the earlier findings of this
 * segment whose children returned enough documents (nested loops). */
static size_t candidates(const mt_detect_ctx_t *ctx, const uint32_t *parents, long lp,
                         uint32_t first, cand_t *out)
{
    size_t n = 0;

    for (long c = lp; c >= 0 && lp - c < CANDIDATES; c--)
        out[n++] = (cand_t){false, parents[c], 0};
    for (size_t r = ctx->seg_first; r < ctx->n && n < CANDIDATES + MAX_VIRTUAL; r++) {
        const mt_detect_result_t *res = &ctx->out[r];
        const uint32_t *kids = ctx->pool + res->kids_off;
        uint64_t docs = 0;
        if (res->type != MT_FINDING_N_PLUS_ONE || res->first_child >= first)
            continue;
        for (size_t k = 0; k < res->kids_len; k++)
            docs += ctx->w->cmds[kids[k]].docs;
        if (docs >= ctx->threshold)
            out[n++] = (cand_t){true, 0, r};
    }
    return n;
}

/* The best candidate for kids (ties go to the first, the latest real
 * parent). */
static cand_t choose(mt_detect_ctx_t *ctx, const cand_t *cands, size_t ncands, const uint32_t *kids,
                     size_t nk, uint8_t key)
{
    mt_evidence_t ev;
    uint32_t best = 0;
    cand_t chosen = cands[0];

    if (ncands < 2 || !mt_evidence_init(&ev, ctx, kids, nk, key))
        return chosen;
    for (size_t c = 0; c < ncands; c++) {
        const uint32_t *set;
        size_t nset;
        cand_docs(ctx, &cands[c], &set, &nset);
        mt_evidence_score_t sc = mt_evidence_score(&ev, set, nset, false);
        if (c == 0 || sc.best > best) {
            best = sc.best;
            chosen = cands[c];
        }
    }
    return chosen;
}

/* One shape group: members sk[g.start..g.end) in command order. */
static void analyse_group(mt_detect_ctx_t *ctx, const sk_t *sk, group_t g, const uint32_t *parents,
                          size_t np, uint32_t *kids, int64_t *choice, sk_t *pairs)
{
    cand_t cands[CANDIDATES + MAX_VIRTUAL];
    uint8_t key, constants;
    size_t gn = g.end - g.start;

    for (size_t k = 0; k < gn; k++)
        kids[k] = sk[g.start + k].idx;
    if (!mt__detect_key_term(ctx->w, kids, gn, &key, &constants))
        return;
    /* runs of children sharing their latest parent; each run picks its
     * candidate; choice[] is a real parent's index, -(result + 1) for an
     * earlier finding's children, or INT64_MIN for none */
    for (size_t m = g.start; m < g.end;) {
        long lp = latest_parent_before(parents, np, sk[m].idx);
        size_t me = m, nk = 0;
        while (me < g.end && latest_parent_before(parents, np, sk[me].idx) == lp)
            kids[nk++] = sk[me++].idx;
        size_t nc = candidates(ctx, parents, lp, sk[m].idx, cands);
        int64_t pick = INT64_MIN;
        if (nc > 0) {
            cand_t c = choose(ctx, cands, nc, kids, nk, key);
            pick = c.nested ? -(int64_t)c.result - 1 : (int64_t)c.cmd;
        }
        for (size_t k = m; k < me; k++)
            choice[k - g.start] = pick;
        m = me;
    }
    /* one finding per chosen candidate: its children are every member of the
     * group that picked it */
    size_t npairs = 0;
    for (size_t a = 0; a < gn; a++)
        if (choice[a] != INT64_MIN)
            pairs[npairs++] = (sk_t){(uint64_t)choice[a], sk[g.start + a].idx};
    mt__detect_sort(ctx, pairs, npairs, sizeof *pairs, sk_cmp);
    for (size_t a = 0; a < npairs;) {
        size_t b = a, nk = 0;
        while (b < npairs && pairs[b].hash == pairs[a].hash)
            kids[nk++] = pairs[b++].idx;
        int64_t pick = (int64_t)pairs[a].hash;
        cand_t c =
            pick >= 0 ? (cand_t){false, (uint32_t)pick, 0} : (cand_t){true, 0, (size_t)(-pick - 1)};
        make_result(ctx, &c, kids, nk, key, constants);
        a = b;
    }
}

void mt_detect_n_plus_one(mt_detect_ctx_t *ctx)
{
    const mt_window_t *w = ctx->w;
    size_t span = ctx->hi - ctx->lo, np = 0, nsk = 0, ng = 0;
    uint32_t *parents = mt__detect_alloc(ctx, span * sizeof *parents);
    uint32_t *kids = mt__detect_alloc(ctx, span * sizeof *kids);
    int64_t *choice = mt__detect_alloc(ctx, span * sizeof *choice);
    sk_t *sk = mt__detect_alloc(ctx, span * sizeof *sk);
    sk_t *pairs = mt__detect_alloc(ctx, span * sizeof *pairs);
    group_t *groups = mt__detect_alloc(ctx, span * sizeof *groups);

    if (!parents || !kids || !choice || !sk || !pairs || !groups)
        return;
    for (uint32_t i = ctx->lo; i < ctx->hi; i++) {
        const mt_window_cmd_t *c = &w->cmds[i];
        if (c->ignored)
            continue; /* neither parent nor child */
        if (mt_detect_is_parent(c, ctx->threshold))
            parents[np++] = i;
        if (c->nterms > 0 && is_child_kind(c->kind))
            sk[nsk++] = (sk_t){c->shape_hash, i};
    }
    if (nsk >= ctx->threshold) {
        mt__detect_sort(ctx, sk, nsk, sizeof *sk, sk_cmp);
        for (size_t g = 0; g < nsk;) {
            size_t ge = g;
            while (ge < nsk && sk[ge].hash == sk[g].hash)
                ge++;
            if (ge - g >= ctx->threshold)
                groups[ng++] = (group_t){g, ge, sk[g].idx};
            g = ge;
        }
        /* in command order, so that an outer loop is found before the loop
         * nested in it */
        mt__detect_sort(ctx, groups, ng, sizeof *groups, group_cmp);
        for (size_t g = 0; g < ng; g++)
            analyse_group(ctx, sk, groups[g], parents, np, kids, choice, pairs);
    }
}
