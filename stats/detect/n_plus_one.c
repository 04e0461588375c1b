/*
 * n_plus_one: one large read followed by many single-key lookups of one
 * shape (SPEC section 5). Children are grouped by shape; each run of
 * children is weighed against the latest qualifying parent before it and a
 * few earlier ones, and the parent whose documents explain most of the
 * looked-up values wins (ties go to the latest).
 */
#include <stdlib.h>
#include <string.h>

#include "detect.h"
#include "evidence.h"

#define CANDIDATES 4 /* parents weighed per run of children */

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

static bool is_lookup_kind(mt_cmd_kind_t k)
{
    return k == MT_CMD_FIND || k == MT_CMD_AGGREGATE;
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

/* Builds the result for parent over kids. false when not a finding. */
static bool make_result(const mt_window_t *w, uint32_t parent, const uint32_t *kids, size_t nkids,
                        uint32_t threshold, mt_detect_result_t *r)
{
    if (nkids < threshold)
        return false;
    mt_evidence_t ev;
    if (!mt_evidence_init(&ev, w, kids, nkids))
        return false;
    mt_evidence_score_t sc = mt_evidence_score(&ev, parent, true);
    memset(r, 0, sizeof *r);
    r->type = MT_FINDING_N_PLUS_ONE;
    r->parent = parent;
    r->first_child = kids[0];
    r->count = (uint32_t)nkids;
    r->distinct = (uint32_t)ev.ndistinct;
    for (size_t k = 0; k < nkids; k++)
        r->child_ns += w->cmds[kids[k]].duration_ns + w->cmds[kids[k]].getmore_ns;
    if (sc.best_path >= 0 && (uint64_t)sc.best * 100 >= (uint64_t)nkids * MT_DETECT_HIGH_PCT) {
        r->high = true;
        bson_strncpy(r->field, ev.paths[sc.best_path], sizeof r->field);
        r->matched = sc.best;
    } else {
        r->matched = sc.anywhere;
    }
    for (size_t d = 0; d < ev.ndistinct && r->nsamples < MT_DETECT_SAMPLES; d++)
        r->samples[r->nsamples++] = ev.first[d];
    mt_evidence_free(&ev);
    return true;
}

size_t mt_detect_n_plus_one(const mt_window_t *w, uint32_t threshold, mt_detect_result_t *out,
                            size_t max)
{
    size_t nres = 0;
    if (w->ncmds == 0 || max == 0)
        return 0;

    uint32_t *parents = bson_malloc(w->ncmds * sizeof *parents);
    sk_t *sk = bson_malloc(w->ncmds * sizeof *sk);
    uint32_t *kids = bson_malloc(w->ncmds * sizeof *kids);
    uint32_t *choice = bson_malloc(w->ncmds * sizeof *choice); /* chosen parent per kid */
    sk_t *pairs = bson_malloc(w->ncmds * sizeof *pairs);       /* (chosen parent, kid) */
    if (!parents || !sk || !kids || !choice || !pairs)
        goto done;

    size_t np = 0, nsk = 0;
    for (uint32_t i = 0; i < w->ncmds; i++) {
        const mt_window_cmd_t *c = &w->cmds[i];
        if (c->ignored)
            continue; /* neither parent nor child */
        if (is_lookup_kind(c->kind) && c->docs >= threshold)
            parents[np++] = i;
        if (c->single_key && c->value_hashable && is_lookup_kind(c->kind))
            sk[nsk++] = (sk_t){c->shape_hash, i};
    }
    if (np == 0 || nsk < threshold)
        goto done;
    qsort(sk, nsk, sizeof *sk, sk_cmp);

    for (size_t g = 0; g < nsk;) {
        size_t ge = g;
        while (ge < nsk && sk[ge].hash == sk[g].hash)
            ge++;
        /* Members of this shape group in command order: sk[g..ge). */
        if (ge - g >= threshold) {
            /* Runs of children sharing their latest parent; each run picks,
             * among that parent and a few earlier ones, the parent whose
             * documents hold most of its values. */
            size_t m = g;
            while (m < ge) {
                long lp = latest_parent_before(parents, np, sk[m].idx);
                size_t me = m;
                while (me < ge && latest_parent_before(parents, np, sk[me].idx) == lp)
                    me++;
                if (lp >= 0) {
                    size_t nk = 0;
                    for (size_t k = m; k < me; k++)
                        kids[nk++] = sk[k].idx;
                    uint32_t best_parent = parents[lp];
                    if (nk > 0 && lp > 0) {
                        mt_evidence_t ev;
                        if (mt_evidence_init(&ev, w, kids, nk)) {
                            uint32_t best = 0;
                            bool have = false;
                            for (long c = lp; c >= 0 && lp - c < CANDIDATES; c--) {
                                mt_evidence_score_t sc = mt_evidence_score(&ev, parents[c], false);
                                if (!have || sc.best > best) {
                                    best = sc.best;
                                    best_parent = parents[c];
                                    have = true;
                                }
                            }
                            mt_evidence_free(&ev);
                        }
                    }
                    for (size_t k = m; k < me; k++)
                        choice[sk[k].idx] = best_parent;
                } else {
                    for (size_t k = m; k < me; k++)
                        choice[sk[k].idx] = UINT32_MAX;
                }
                m = me;
            }
            /* One finding per chosen parent: its children are every member
             * of the group that picked it. */
            size_t npairs = 0;
            for (size_t a = g; a < ge; a++)
                if (choice[sk[a].idx] != UINT32_MAX)
                    pairs[npairs++] = (sk_t){choice[sk[a].idx], sk[a].idx};
            qsort(pairs, npairs, sizeof *pairs, sk_cmp);
            for (size_t a = 0; a < npairs && nres < max;) {
                size_t b = a, nk = 0;
                while (b < npairs && pairs[b].hash == pairs[a].hash)
                    kids[nk++] = pairs[b++].idx;
                if (make_result(w, (uint32_t)pairs[a].hash, kids, nk, threshold, &out[nres]))
                    nres++;
                a = b;
            }
        }
        g = ge;
    }

done:
    bson_free(parents);
    bson_free(sk);
    bson_free(kids);
    bson_free(choice);
    bson_free(pairs);
    return nres;
}
