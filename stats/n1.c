/*
 * n1: N+1 detection over a closed window. Children are grouped by shape;
 * each run of children is weighed against the latest qualifying parent before
 * it and a few earlier ones, and the parent whose documents explain most of
 * the looked-up values wins (ties go to the latest). Evidence is a walk of the
 * parent's kept documents matching value hashes against the children's.
 */
#include "n1.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "hash.h"
#include "json.h"

#define MAX_PATHS 32      /* distinct field paths tracked per evidence walk */
#define MAX_DEPTH 3       /* document nesting searched */
#define MAX_ARRAY_DEPTH 4 /* arrays inside arrays followed */

/* Value hashing */

static uint64_t hash_tagged(char tag, const void *p, size_t n)
{
    return mt_hash_bytes(mt_hash_bytes(MT_HASH_SEED, &tag, 1), p, n);
}

static uint64_t hash_int(int64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)v >> (8 * i));
    return hash_tagged('I', b, 8);
}

uint64_t mt_n1_value_hash(const bson_iter_t *it)
{
    switch (bson_iter_type(it)) {
    case BSON_TYPE_INT32:
        return hash_int(bson_iter_int32(it));
    case BSON_TYPE_INT64:
        return hash_int(bson_iter_int64(it));
    case BSON_TYPE_DOUBLE: {
        double d = bson_iter_double(it);
        if (isfinite(d) && d == floor(d) && fabs(d) < 9.2e18)
            return hash_int((int64_t)d);
        return hash_tagged('D', &d, sizeof d);
    }
    case BSON_TYPE_UTF8: {
        uint32_t len = 0;
        const char *s = bson_iter_utf8(it, &len);
        return hash_tagged('S', s, len);
    }
    case BSON_TYPE_SYMBOL: {
        uint32_t len = 0;
        const char *s = bson_iter_symbol(it, &len);
        return hash_tagged('S', s, len);
    }
    case BSON_TYPE_OID:
        return hash_tagged('O', bson_iter_oid(it)->bytes, 12);
    case BSON_TYPE_BINARY: {
        bson_subtype_t sub;
        uint32_t len = 0;
        const uint8_t *data = NULL;
        bson_iter_binary(it, &sub, &len, &data);
        uint8_t s = (uint8_t)sub;
        uint64_t h = hash_tagged('B', &s, 1);
        return mt_hash_bytes(h, data, len);
    }
    case BSON_TYPE_DATE_TIME: {
        int64_t t = bson_iter_date_time(it);
        return hash_tagged('T', &t, sizeof t);
    }
    case BSON_TYPE_BOOL: {
        uint8_t b = bson_iter_bool(it);
        return hash_tagged('b', &b, 1);
    }
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
        return hash_tagged('N', NULL, 0);
    default: {
        /* Other types compare by type and raw value bytes. */
        uint8_t t = (uint8_t)bson_iter_type(it);
        uint64_t h = hash_tagged('R', &t, 1);
        if (it->next_off > it->d1)
            h = mt_hash_bytes(h, it->raw + it->d1, it->next_off - it->d1);
        return h;
    }
    }
}

/* Evidence: which of the children's values appear in a parent's documents,
 * and under which field paths. */

typedef struct {
    const mt_window_t *w;
    /* distinct child values */
    uint64_t *hashes;
    uint32_t *occ;   /* children per distinct value */
    uint32_t *first; /* first child index with the value */
    size_t ndistinct;
    int32_t *table; /* open addressing: index into hashes, -1 empty */
    size_t tcap;
    /* paths */
    char paths[MAX_PATHS][MT_N1_FIELD_MAX];
    size_t npaths;
    size_t words;   /* bitmap words per path */
    uint64_t *bits; /* MAX_PATHS * words */
    uint64_t *any;  /* words */
    /* the children, in command order */
    const uint32_t *kids;
    size_t nkids;
    /* probing: does one value appear under one path of the current document */
    bool probing;
    const char *probe_path;
    uint64_t probe_hash;
    bool probe_hit;
    uint32_t probe_score;
} ev_t;

typedef struct {
    uint32_t best;     /* children matched under the best path */
    int best_path;     /* -1 when none */
    uint32_t anywhere; /* children matched under any path */
} ev_score_t;

static void ev_free(ev_t *ev)
{
    bson_free(ev->hashes);
    bson_free(ev->occ);
    bson_free(ev->first);
    bson_free(ev->table);
    bson_free(ev->bits);
    bson_free(ev->any);
    memset(ev, 0, sizeof *ev);
}

static long ev_find(const ev_t *ev, uint64_t h)
{
    for (size_t i = (size_t)(h & (ev->tcap - 1));; i = (i + 1) & (ev->tcap - 1)) {
        if (ev->table[i] < 0)
            return -1;
        if (ev->hashes[ev->table[i]] == h)
            return ev->table[i];
    }
}

/* Builds the distinct-value table of the given children. false on OOM. */
static bool ev_init(ev_t *ev, const mt_window_t *w, const uint32_t *kids, size_t nkids)
{
    memset(ev, 0, sizeof *ev);
    ev->w = w;
    ev->kids = kids;
    ev->nkids = nkids;
    ev->tcap = 16;
    while (ev->tcap < nkids * 2)
        ev->tcap *= 2;
    ev->hashes = bson_malloc(nkids * sizeof *ev->hashes + 1);
    ev->occ = bson_malloc0(nkids * sizeof *ev->occ + 1);
    ev->first = bson_malloc(nkids * sizeof *ev->first + 1);
    ev->table = bson_malloc(ev->tcap * sizeof *ev->table);
    if (!ev->hashes || !ev->occ || !ev->first || !ev->table) {
        ev_free(ev);
        return false;
    }
    memset(ev->table, 0xFF, ev->tcap * sizeof *ev->table);
    for (size_t k = 0; k < nkids; k++) {
        const mt_window_cmd_t *c = &w->cmds[kids[k]];
        uint64_t h = c->value_hash;
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
    ev->bits = bson_malloc0(MAX_PATHS * ev->words * sizeof *ev->bits + 1);
    ev->any = bson_malloc0(ev->words * sizeof *ev->any + 1);
    if (!ev->bits || !ev->any) {
        ev_free(ev);
        return false;
    }
    return true;
}

static void ev_reset_paths(ev_t *ev)
{
    ev->npaths = 0;
    memset(ev->bits, 0, MAX_PATHS * ev->words * sizeof *ev->bits);
    memset(ev->any, 0, ev->words * sizeof *ev->any);
}

static void ev_hit(ev_t *ev, uint64_t h, const char *path)
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
        if (ev->npaths == MAX_PATHS)
            return;
        bson_strncpy(ev->paths[p], path, MT_N1_FIELD_MAX);
        ev->npaths++;
    }
    ev->bits[p * ev->words + (size_t)d / 64] |= UINT64_C(1) << (d % 64);
}

/* Appends ".key" (or "key" at the top) to path; false when it would not fit. */
static bool path_push(char *path, size_t *len, const char *key, size_t klen)
{
    size_t need = *len + (*len ? 1 : 0) + klen;
    if (need >= MT_N1_FIELD_MAX)
        return false;
    if (*len)
        path[(*len)++] = '.';
    memcpy(path + *len, key, klen);
    *len += klen;
    path[*len] = '\0';
    return true;
}

static void walk_doc(ev_t *ev, bson_iter_t *it, int depth, char *path, size_t plen);

/* A DBRef ({"$ref": ..., "$id": ...}) counts as its $id under the field
 * holding it. */
static bool check_dbref(ev_t *ev, const bson_iter_t *docit, const char *path)
{
    bson_iter_t c, id;
    if (!bson_iter_recurse(docit, &c) || !bson_iter_next(&c) || strcmp(bson_iter_key(&c), "$ref"))
        return false;
    if (!bson_iter_recurse(docit, &id) || !bson_iter_find(&id, "$id"))
        return false;
    ev_hit(ev, mt_n1_value_hash(&id), path);
    return true;
}

static void walk_value(ev_t *ev, bson_iter_t *it, int depth, int adepth, char *path, size_t plen)
{
    bson_type_t t = bson_iter_type(it);
    if (t == BSON_TYPE_DOCUMENT) {
        if (check_dbref(ev, it, path))
            return;
        bson_iter_t child;
        if (depth < MAX_DEPTH && bson_iter_recurse(it, &child))
            walk_doc(ev, &child, depth + 1, path, plen);
    } else if (t == BSON_TYPE_ARRAY) {
        /* Array elements live under the array's own path: no index. */
        bson_iter_t child;
        if (adepth < MAX_ARRAY_DEPTH && bson_iter_recurse(it, &child))
            while (bson_iter_next(&child))
                walk_value(ev, &child, depth, adepth + 1, path, plen);
    } else {
        ev_hit(ev, mt_n1_value_hash(it), path);
    }
}

static void walk_doc(ev_t *ev, bson_iter_t *it, int depth, char *path, size_t plen)
{
    while (bson_iter_next(it)) {
        size_t len = plen;
        if (!path_push(path, &len, bson_iter_key(it), bson_iter_key_len(it)))
            continue;
        walk_value(ev, it, depth, 0, path, len);
        path[plen] = '\0';
    }
}

typedef void (*doc_fn)(ev_t *ev, size_t idx, bson_iter_t *it);

/* Calls fn on each kept document returned to command parent, in order. */
static void each_doc(ev_t *ev, uint32_t parent, doc_fn fn)
{
    const mt_window_t *w = ev->w;
    size_t idx = 0;
    for (uint32_t s = 0; s < w->nsegs; s++) {
        const mt_window_evseg_t *seg = &w->segs[s];
        if (seg->cmd != parent)
            continue;
        const uint8_t *p = w->ev + seg->off, *end = p + seg->len;
        while (end - p >= 5) {
            uint32_t dlen = mt_wire_le32(p);
            if (dlen < 5 || dlen > (size_t)(end - p))
                break;
            bson_t doc;
            bson_iter_t it;
            if (bson_init_static(&doc, p, dlen) && bson_iter_init(&it, &doc))
                fn(ev, idx, &it);
            idx++;
            p += dlen;
        }
    }
}

static void collect_doc(ev_t *ev, size_t idx, bson_iter_t *it)
{
    char path[MT_N1_FIELD_MAX];
    (void)idx;
    path[0] = '\0';
    walk_doc(ev, it, 1, path, 0);
}

/* Does child idx look up a value held under probe_path by document idx? */
static void probe_doc(ev_t *ev, size_t idx, bson_iter_t *it)
{
    char path[MT_N1_FIELD_MAX];
    if (idx >= ev->nkids)
        return;
    ev->probe_hash = ev->w->cmds[ev->kids[idx]].value_hash;
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
static ev_score_t ev_score(ev_t *ev, uint32_t parent, bool tiebreak)
{
    ev_score_t sc = {0, -1, 0};
    uint32_t matched[MAX_PATHS];
    ev_reset_paths(ev);
    each_doc(ev, parent, collect_doc);
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
            each_doc(ev, parent, probe_doc);
            if (ev->probe_score > best_pos) {
                best_pos = ev->probe_score;
                sc.best_path = (int)pi;
            }
        }
        ev->probing = false;
    }
    return sc;
}

/* Grouping */

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

static int result_cmp(const void *a, const void *b)
{
    const mt_n1_result_t *x = a, *y = b;
    if (x->first_child != y->first_child)
        return x->first_child < y->first_child ? -1 : 1;
    return x->parent < y->parent ? -1 : (x->parent > y->parent);
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
                        uint32_t threshold, mt_n1_result_t *r)
{
    if (nkids < threshold)
        return false;
    ev_t ev;
    if (!ev_init(&ev, w, kids, nkids))
        return false;
    ev_score_t sc = ev_score(&ev, parent, true);
    memset(r, 0, sizeof *r);
    r->parent = parent;
    r->first_child = kids[0];
    r->count = (uint32_t)nkids;
    r->distinct = (uint32_t)ev.ndistinct;
    for (size_t k = 0; k < nkids; k++)
        r->child_ns += w->cmds[kids[k]].duration_ns + w->cmds[kids[k]].getmore_ns;
    if (sc.best_path >= 0 && (uint64_t)sc.best * 100 >= (uint64_t)nkids * MT_N1_HIGH_PCT) {
        r->high = true;
        bson_strncpy(r->field, ev.paths[sc.best_path], sizeof r->field);
        r->matched = sc.best;
    } else {
        r->matched = sc.anywhere;
    }
    for (size_t d = 0; d < ev.ndistinct && r->nsamples < MT_N1_SAMPLES; d++)
        r->samples[r->nsamples++] = ev.first[d];
    ev_free(&ev);
    return true;
}

size_t mt_n1_analyse(const mt_window_t *w, uint32_t threshold, mt_n1_result_t *out, size_t max)
{
    size_t nres = 0;
    if (threshold < 1)
        threshold = 1;
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
                        ev_t ev;
                        if (ev_init(&ev, w, kids, nk)) {
                            uint32_t best = 0;
                            bool have = false;
                            for (long c = lp; c >= 0 && lp - c < MT_N1_CANDIDATES; c--) {
                                ev_score_t sc = ev_score(&ev, parents[c], false);
                                if (!have || sc.best > best) {
                                    best = sc.best;
                                    best_parent = parents[c];
                                    have = true;
                                }
                            }
                            ev_free(&ev);
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
    qsort(out, nres, sizeof *out, result_cmp);

done:
    bson_free(parents);
    bson_free(sk);
    bson_free(kids);
    bson_free(choice);
    bson_free(pairs);
    return nres;
}

/* Wording */

static bool contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++)
        if (strncasecmp(p, needle, n) == 0)
            return true;
    return false;
}

void mt_n1_suggestion(const char *driver, const char *collection, const char *key,
                      const char *field, uint32_t distinct, char *out, size_t cap)
{
    const char *noun = distinct == 1 ? "document" : "documents";
    const char *k = key && *key ? key : "_id";
    driver = driver ? driver : "";
    if (contains_ci(driver, "mongoose")) {
        if (field && *field)
            snprintf(out, cap,
                     "Load the %u %s %s in one query: call populate('%s') on the query "
                     "(not per document), which sends one {%s: {$in: [...]}}.",
                     distinct, collection, noun, field, k);
        else
            snprintf(out, cap,
                     "Load the %u %s %s in one query: use populate() on the query "
                     "(not per document), which sends one {%s: {$in: [...]}}.",
                     distinct, collection, noun, k);
    } else if (contains_ci(driver, "mongoengine")) {
        snprintf(out, cap,
                 "Load the %u %s %s in one query: add select_related() to the queryset "
                 "(one {%s: {$in: [...]}} instead of one query per reference).",
                 distinct, collection, noun, k);
    } else if (contains_ci(driver, "pymongo")) {
        snprintf(out, cap,
                 "Load the %u %s %s in one query ({%s: {$in: [...]}}): mongoengine: "
                 "select_related(); pymongo: one find with {%s: {$in: [...]}}.",
                 distinct, collection, noun, k, k);
    } else {
        snprintf(out, cap,
                 "Load the %u %s %s in one query ({%s: {$in: [...]}}) or join them to the "
                 "parent query with a $lookup stage.",
                 distinct, collection, noun, k);
    }
}

static void append_str_or_null(bson_t *doc, const char *key, const char *v)
{
    if (v && *v)
        bson_append_utf8(doc, key, -1, v, -1);
    else
        bson_append_null(doc, key, -1);
}

void mt_n1_finding_bson(const mt_window_t *w, const mt_n1_result_t *r, const char *id,
                        int64_t detected_ms, bool log_values, bson_t *out)
{
    char iso[MT_CLOCK_ISO_LEN];
    char sugg[768];
    bson_t sub;
    const mt_window_cmd_t *p = &w->cmds[r->parent];
    const mt_window_cmd_t *c = &w->cmds[r->first_child];

    BSON_APPEND_UTF8(out, "schema", "mongotap.finding/1");
    BSON_APPEND_UTF8(out, "id", id);
    BSON_APPEND_UTF8(out, "type", "n_plus_one");
    BSON_APPEND_UTF8(out, "detected_at", mt_clock_iso8601(detected_ms, iso));
    BSON_APPEND_UTF8(out, "confidence", r->high ? "high" : "medium");

    BSON_APPEND_DOCUMENT_BEGIN(out, "client", &sub);
    append_str_or_null(&sub, "addr", w->client_addr);
    append_str_or_null(&sub, "app_name", w->app_name);
    append_str_or_null(&sub, "driver", w->driver);
    bson_append_document_end(out, &sub);

    BSON_APPEND_DOCUMENT_BEGIN(out, "window", &sub);
    BSON_APPEND_INT64(&sub, "id", (int64_t)w->id);
    BSON_APPEND_INT64(&sub, "connection_id", (int64_t)w->conn_id);
    append_str_or_null(&sub, "key", w->key);
    BSON_APPEND_UTF8(&sub, "started_at", mt_clock_iso8601(w->started_ms, iso));
    BSON_APPEND_DOUBLE(&sub, "duration_ms", mt_json_ms(mt_window_duration_ns(w)));
    BSON_APPEND_INT64(&sub, "commands", (int64_t)w->total_cmds);
    bson_append_document_end(out, &sub);

    BSON_APPEND_DOCUMENT_BEGIN(out, "parent", &sub);
    BSON_APPEND_UTF8(&sub, "db", p->db);
    BSON_APPEND_UTF8(&sub, "collection", p->collection);
    BSON_APPEND_UTF8(&sub, "command", p->command);
    BSON_APPEND_UTF8(&sub, "shape", p->shape);
    BSON_APPEND_INT64(&sub, "docs_returned", (int64_t)p->docs);
    BSON_APPEND_DOUBLE(&sub, "duration_ms", mt_json_ms(p->duration_ns + p->getmore_ns));
    bson_append_document_end(out, &sub);

    BSON_APPEND_DOCUMENT_BEGIN(out, "children", &sub);
    BSON_APPEND_UTF8(&sub, "db", c->db);
    BSON_APPEND_UTF8(&sub, "collection", c->collection);
    BSON_APPEND_UTF8(&sub, "command", c->command);
    BSON_APPEND_UTF8(&sub, "shape", c->shape);
    BSON_APPEND_UTF8(&sub, "key", c->key ? c->key : "");
    BSON_APPEND_INT64(&sub, "count", r->count);
    BSON_APPEND_INT64(&sub, "distinct_values", r->distinct);
    BSON_APPEND_DOUBLE(&sub, "duration_ms", mt_json_ms(r->child_ns));
    bson_append_document_end(out, &sub);

    if (r->high)
        BSON_APPEND_UTF8(out, "field", r->field);
    else
        BSON_APPEND_NULL(out, "field");
    BSON_APPEND_INT64(out, "matched", r->matched);
    mt_n1_suggestion(w->driver, c->collection, c->key, r->high ? r->field : NULL, r->distinct, sugg,
                     sizeof sugg);
    BSON_APPEND_UTF8(out, "suggestion", sugg);

    if (log_values) {
        /* Only with --log-values: the first few looked-up values. */
        BSON_APPEND_ARRAY_BEGIN(out, "values", &sub);
        uint32_t n = 0;
        for (uint32_t i = 0; i < r->nsamples; i++) {
            const mt_window_cmd_t *k = &w->cmds[r->samples[i]];
            bson_t vdoc;
            bson_iter_t it;
            if (!k->value_doc || !bson_init_static(&vdoc, k->value_doc, k->value_doc_len) ||
                !bson_iter_init(&it, &vdoc) || !bson_iter_next(&it))
                continue;
            char key[16];
            const char *kp;
            bson_uint32_to_string(n++, &kp, key, sizeof key);
            bson_append_iter(&sub, kp, -1, &it);
        }
        bson_append_array_end(out, &sub);
    }
}
