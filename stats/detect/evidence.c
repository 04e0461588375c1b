/*
 * evidence: a walk of the parent's kept documents (to depth 3, through arrays
 * and DBRef $id) marking, per field path, which distinct child values occur
 * there. Bitmaps per path, so a parent of 1,000 documents and 1,000 lookups
 * costs one walk.
 */
#include "evidence.h"

#include <string.h>

#include "bson.h"
#include "wire.h"

#define MAX_DEPTH 3       /* document nesting searched */
#define MAX_ARRAY_DEPTH 4 /* arrays inside arrays followed */

uint64_t mt_evidence_value_hash(const bson_iter_t *it)
{
    /* the view's lookups hash the same bytes (window.c) */
    return mt_bson_value_hash((uint8_t)bson_iter_type(it), it->raw + it->d1, it->next_off - it->d1);
}

/* Evidence: which of the children's values appear in a parent's documents,
 * and under which field paths. */

static long ev_find(const mt_evidence_t *ev, uint64_t h)
{
    for (size_t i = (size_t)(h & (ev->tcap - 1));; i = (i + 1) & (ev->tcap - 1)) {
        if (ev->table[i] < 0)
            return -1;
        if (ev->hashes[ev->table[i]] == h)
            return ev->table[i];
    }
}

/* Builds the distinct-value table of the given children. false on OOM. */
bool mt_evidence_init(mt_evidence_t *ev, mt_detect_ctx_t *ctx, const uint32_t *kids, size_t nkids,
                      unsigned term)
{
    const mt_window_t *w = ctx->w;
    memset(ev, 0, sizeof *ev);
    ev->w = w;
    ev->term = term;
    ev->kids = kids;
    ev->nkids = nkids;
    ev->tcap = 16;
    while (ev->tcap < nkids * 2)
        ev->tcap *= 2;
    ev->hashes = mt__detect_alloc(ctx, nkids * sizeof *ev->hashes);
    ev->occ = mt__detect_alloc(ctx, nkids * sizeof *ev->occ);
    ev->first = mt__detect_alloc(ctx, nkids * sizeof *ev->first);
    ev->table = mt__detect_alloc(ctx, ev->tcap * sizeof *ev->table);
    if (!ev->hashes || !ev->occ || !ev->first || !ev->table)
        return false;
    memset(ev->table, 0xFF, ev->tcap * sizeof *ev->table);
    for (size_t k = 0; k < nkids; k++) {
        const mt_window_cmd_t *c = &w->cmds[kids[k]];
        uint64_t h = mt_window_cmd_hash(c, term);
        size_t i = (size_t)(h & (ev->tcap - 1));
        while (ev->table[i] >= 0 && ev->hashes[ev->table[i]] != h)
            i = (i + 1) & (ev->tcap - 1);
        if (ev->table[i] < 0) {
            ev->table[i] = (int32_t)ev->ndistinct;
            ev->hashes[ev->ndistinct] = h;
            ev->first[ev->ndistinct] = kids[k];
            ev->ndistinct++;
        }
        ev->occ[ev->table[i]]++;
    }
    ev->words = (ev->ndistinct + 63) / 64;
    ev->bits = mt__detect_alloc(ctx, MT_EVIDENCE_MAX_PATHS * ev->words * sizeof *ev->bits);
    ev->any = mt__detect_alloc(ctx, ev->words * sizeof *ev->any);
    if (!ev->bits || !ev->any)
        return false;
    return true;
}

static void ev_reset_paths(mt_evidence_t *ev)
{
    ev->npaths = 0;
    memset(ev->bits, 0, MT_EVIDENCE_MAX_PATHS * ev->words * sizeof *ev->bits);
    memset(ev->any, 0, ev->words * sizeof *ev->any);
}

static void ev_hit(mt_evidence_t *ev, uint64_t h, const char *path)
{
    if (ev->probing) {
        if (!ev->probe_hit && h == ev->probe_hash && strcmp(path, ev->probe_path) == 0)
            ev->probe_hit = true;
        return;
    }
    long d = ev_find(ev, h);
    if (d < 0)
        return;
    ev->any[d / 64] |= UINT64_C(1) << (d % 64);
    size_t p = 0;
    for (; p < ev->npaths; p++)
        if (strcmp(ev->paths[p], path) == 0)
            break;
    if (p == ev->npaths) {
        if (ev->npaths == MT_EVIDENCE_MAX_PATHS)
            return;
        bson_strncpy(ev->paths[p], path, MT_DETECT_FIELD_MAX);
        ev->npaths++;
    }
    ev->bits[p * ev->words + (size_t)d / 64] |= UINT64_C(1) << (d % 64);
}

/* Appends ".key" (or "key" at the top) to path; false when it would not fit. */
static bool path_push(char *path, size_t *len, const char *key, size_t klen)
{
    size_t need = *len + (*len ? 1 : 0) + klen;
    if (need >= MT_DETECT_FIELD_MAX)
        return false;
    if (*len)
        path[(*len)++] = '.';
    memcpy(path + *len, key, klen);
    *len += klen;
    path[*len] = '\0';
    return true;
}

static void walk_doc(mt_evidence_t *ev, bson_iter_t *it, int depth, char *path, size_t plen);

/* A DBRef ({"$ref": ..., "$id": ...}) counts as its $id under the field
 * holding it: *h gets the hash of its $id. */
static bool dbref_hash(const bson_iter_t *docit, uint64_t *h)
{
    bson_iter_t c, id;
    if (!bson_iter_recurse(docit, &c) || !bson_iter_next(&c) || strcmp(bson_iter_key(&c), "$ref"))
        return false;
    if (!bson_iter_recurse(docit, &id) || !bson_iter_find(&id, "$id"))
        return false;
    *h = mt_evidence_value_hash(&id);
    return true;
}

/* An array also counts as the list of its values (the order-free sum the
 * windows give an $in lookup), so a per-document $in matches the array it
 * was read from. */
static void list_hit(mt_evidence_t *ev, const bson_iter_t *arr, const char *path)
{
    bson_iter_t e;
    uint64_t sum = 0, h;
    bool any = false;

    if (!bson_iter_recurse(arr, &e))
        return;
    while (bson_iter_next(&e)) {
        bson_type_t t = bson_iter_type(&e);
        if (t == BSON_TYPE_ARRAY || (t == BSON_TYPE_DOCUMENT && !dbref_hash(&e, &h)))
            return; /* not a list of values */
        if (t != BSON_TYPE_DOCUMENT)
            h = mt_evidence_value_hash(&e);
        sum += h;
        any = true;
    }
    if (any)
        ev_hit(ev, sum, path);
}

static void walk_value(mt_evidence_t *ev, bson_iter_t *it, int depth, int adepth, char *path,
                       size_t plen)
{
    bson_type_t t = bson_iter_type(it);
    if (t == BSON_TYPE_DOCUMENT) {
        uint64_t h;
        if (dbref_hash(it, &h)) {
            ev_hit(ev, h, path);
            return;
        }
        bson_iter_t child;
        if (depth < MAX_DEPTH && bson_iter_recurse(it, &child))
            walk_doc(ev, &child, depth + 1, path, plen);
    } else if (t == BSON_TYPE_ARRAY) {
        /* Array elements live under the array's own path: no index. */
        bson_iter_t child;
        if (adepth == 0)
            list_hit(ev, it, path);
        if (adepth < MAX_ARRAY_DEPTH && bson_iter_recurse(it, &child))
            while (bson_iter_next(&child))
                walk_value(ev, &child, depth, adepth + 1, path, plen);
    } else {
        ev_hit(ev, mt_evidence_value_hash(it), path);
    }
}

static void walk_doc(mt_evidence_t *ev, bson_iter_t *it, int depth, char *path, size_t plen)
{
    while (bson_iter_next(it)) {
        size_t len = plen;
        if (!path_push(path, &len, bson_iter_key(it), bson_iter_key_len(it)))
            continue;
        walk_value(ev, it, depth, 0, path, len);
        path[plen] = '\0';
    }
}

typedef void (*doc_fn)(mt_evidence_t *ev, size_t idx, bson_iter_t *it);

static bool in_sorted(const uint32_t *a, size_t n, uint32_t v)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (a[mid] == v)
            return true;
        if (a[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* fn on a kept document, checked whole first: kept as the reply framed it,
 * one malformed inside is no evidence (it keeps its place: idx pairs
 * documents with children). */
static void doc_checked(mt_evidence_t *ev, size_t idx, const uint8_t *p, uint32_t len, doc_fn fn)
{
    bson_t doc;
    bson_iter_t it;
    if (mt_bson_validate(p, len, MT_BSON_MAX_DEPTH, MT_BSON_CHECK_STRUCTURE) &&
        bson_init_static(&doc, p, len) && bson_iter_init(&it, &doc))
        fn(ev, idx, &it);
}

/* Calls fn on each kept document returned to the parents, in order. */
static void each_doc(mt_evidence_t *ev, const uint32_t *parents, size_t nparents, doc_fn fn)
{
    const mt_window_t *w = ev->w;
    size_t idx = 0;
    for (uint32_t s = 0; s < w->nsegs; s++) {
        const mt_window_evseg_t *seg = &w->segs[s];
        if (!in_sorted(parents, nparents, seg->cmd))
            continue;
        const uint8_t *p = w->ev + seg->off, *end = p + seg->len;
        if (seg->array) {
            mt_bson_iter_t it;
            mt_bson_elem_t e;
            if (!mt_bson_iter_init(&it, p, seg->len))
                continue;
            while (mt_bson_iter_next(&it, &e) == MT_BSON_ELEM)
                if (e.type == BSON_TYPE_DOCUMENT)
                    doc_checked(ev, idx++, e.value, e.value_len, fn);
            continue;
        }
        while (end - p >= 5) {
            uint32_t dlen = mt_wire_le32(p);
            if (dlen < 5 || dlen > (size_t)(end - p))
                break;
            doc_checked(ev, idx++, p, dlen, fn);
            p += dlen;
        }
    }
}

static void collect_doc(mt_evidence_t *ev, size_t idx, bson_iter_t *it)
{
    char path[MT_DETECT_FIELD_MAX];
    (void)idx;
    path[0] = '\0';
    walk_doc(ev, it, 1, path, 0);
}

/* Does child idx look up a value held under probe_path by document idx? */
static void probe_doc(mt_evidence_t *ev, size_t idx, bson_iter_t *it)
{
    char path[MT_DETECT_FIELD_MAX];
    if (idx >= ev->nkids)
        return;
    ev->probe_hash = mt_window_cmd_hash(&ev->w->cmds[ev->kids[idx]], ev->term);
    ev->probe_hit = false;
    path[0] = '\0';
    walk_doc(ev, it, 1, path, 0);
    if (ev->probe_hit)
        ev->probe_score++;
}

/* Scores the parent's documents against the children in ev. With tiebreak,
 * paths that explain equally many children are told apart by position: an
 * application dereferencing lazily looks up document i's value as its i-th
 * lookup, so the path whose per-document values line up with the lookups is
 * the reference being followed (two fields often point into one collection,
 * e.g. author and editor). */
mt_evidence_score_t mt_evidence_score(mt_evidence_t *ev, const uint32_t *parents, size_t nparents,
                                      bool tiebreak)
{
    mt_evidence_score_t sc = {0, -1, 0};
    uint32_t matched[MT_EVIDENCE_MAX_PATHS];
    ev_reset_paths(ev);
    each_doc(ev, parents, nparents, collect_doc);
    for (size_t pi = 0; pi < ev->npaths; pi++) {
        uint32_t m = 0;
        for (size_t d = 0; d < ev->ndistinct; d++)
            if (ev->bits[pi * ev->words + d / 64] & (UINT64_C(1) << (d % 64)))
                m += ev->occ[d];
        matched[pi] = m;
        /* Strictly greater: the first path found (document order) wins ties. */
        if (m > sc.best) {
            sc.best = m;
            sc.best_path = (int)pi;
        }
    }
    for (size_t d = 0; d < ev->ndistinct; d++)
        if (ev->any[d / 64] & (UINT64_C(1) << (d % 64)))
            sc.anywhere += ev->occ[d];

    size_t tied = 0;
    for (size_t pi = 0; pi < ev->npaths; pi++)
        tied += sc.best > 0 && matched[pi] == sc.best;
    if (tiebreak && tied > 1) {
        uint32_t best_pos = 0;
        ev->probing = true;
        for (size_t pi = 0; pi < ev->npaths; pi++) {
            if (matched[pi] != sc.best)
                continue;
            ev->probe_path = ev->paths[pi];
            ev->probe_score = 0;
            each_doc(ev, parents, nparents, probe_doc);
            if (ev->probe_score > best_pos) {
                best_pos = ev->probe_score;
                sc.best_path = (int)pi;
            }
        }
        ev->probing = false;
    }
    return sc;
}
