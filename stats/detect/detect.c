/*
 * detect: cuts a closed window into segments and runs each detector over
 * each. A test suite or a busy worker leaves no idle gap between requests:
 * when a parent that already has children appears again, that is the next
 * request, so 24 page loads in one window give 24 findings of the right size.
 */
#include "detect.h"

#include <bson/bson.h>
#include <stdlib.h>
#include <string.h>

const char *mt_finding_type_str(mt_finding_type_t type)
{
    switch (type) {
    case MT_FINDING_N_PLUS_ONE:
        return "n_plus_one";
    case MT_FINDING_WRITE_LOOP:
        return "write_loop";
    case MT_FINDING_REPEATED_READ:
        return "repeated_read";
    }
    return "unknown";
}

const char *mt_finding_type_explain(mt_finding_type_t type)
{
    switch (type) {
    case MT_FINDING_N_PLUS_ONE:
        return "One read returned many documents, then one more query per document looked up "
               "what it refers to: load them in one query instead.";
    case MT_FINDING_WRITE_LOOP:
        return "The same write was sent once per document, one statement at a time: send them as "
               "one bulk write instead.";
    case MT_FINDING_REPEATED_READ:
        return "The same query with the same values was asked again and again in one request: "
               "load it once and reuse the result.";
    }
    return "";
}

/* ---- scratch memory -------------------------------------------------------- */

struct mt_detect_chunk {
    mt_detect_chunk_t *next;
    max_align_t data[];
};

#define ALIGN_UP(n) (((n) + 15) & ~(size_t)15)

void *mt__detect_alloc(mt_detect_ctx_t *ctx, size_t n)
{
    mt_detect_scratch_t *s = ctx->scratch;
    size_t need = ALIGN_UP(n ? n : 1);
    void *p;

    s->need += need;
    if (s->cap - s->used >= need) {
        p = s->block + s->used;
        s->used += need;
    } else {
        mt_detect_chunk_t *c = bson_malloc(sizeof *c + need);
        if (!c)
            return NULL;
        c->next = s->chunks;
        s->chunks = c;
        p = c->data;
    }
    memset(p, 0, need);
    return p;
}

/* The window is analysed: overflow chunks go, and the block grows to what
 * this window needed, so that the next one like it fits. */
static void scratch_end(mt_detect_scratch_t *s)
{
    bool grow = s->chunks != NULL;
    while (s->chunks) {
        mt_detect_chunk_t *c = s->chunks;
        s->chunks = c->next;
        bson_free(c);
    }
    if (grow) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->need)
            cap *= 2;
        uint8_t *b = bson_malloc(cap);
        if (b) {
            bson_free(s->block);
            s->block = b;
            s->cap = cap;
        }
    }
    s->used = s->need = 0;
}

void mt_detect_scratch_free(mt_detect_scratch_t *s)
{
    scratch_end(s);
    bson_free(s->block);
    memset(s, 0, sizeof *s);
}

/* Bottom-up merge sort through one buffer of n elements. Keys mostly come
 * in command order already (one shape's commands, sorted by index): input
 * in order is only read, and two runs in order are copied without a merge. */
void mt__detect_sort(mt_detect_ctx_t *ctx, void *base, size_t n, size_t size,
                     int (*cmp)(const void *, const void *))
{
    uint8_t *a = base, *b;
    size_t i;

    for (i = 1; i < n && cmp(a + (i - 1) * size, a + i * size) <= 0; i++)
        ;
    if (i >= n)
        return;
    if (!(b = mt__detect_alloc(ctx, n * size))) {
        qsort(base, n, size, cmp); /* out of memory: let the library try */
        return;
    }
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n,
                   hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t j = mid, k = lo;
            if (mid < hi && cmp(a + (mid - 1) * size, a + mid * size) <= 0) {
                memcpy(b + lo * size, a + lo * size, (hi - lo) * size); /* in order already */
                continue;
            }
            i = lo;
            while (i < mid && j < hi) {
                if (cmp(a + j * size, a + i * size) < 0)
                    memcpy(b + k++ * size, a + j++ * size, size);
                else
                    memcpy(b + k++ * size, a + i++ * size, size);
            }
            memcpy(b + k * size, a + i * size, (mid - i) * size);
            k += mid - i;
            memcpy(b + k * size, a + j * size, (hi - j) * size);
        }
        uint8_t *t = a;
        a = b;
        b = t;
    }
    if (a != base)
        memcpy(base, a, n * size);
}

/* ---- results -------------------------------------------------------------- */

mt_detect_result_t *mt__detect_add(mt_detect_ctx_t *ctx, mt_finding_type_t type,
                                   const uint32_t *kids, size_t nkids)
{
    mt_detect_result_t *r;

    if (ctx->n >= ctx->max || nkids == 0 || ctx->pool_len + nkids > ctx->w->ncmds)
        return NULL;
    r = &ctx->out[ctx->n++];
    memset(r, 0, sizeof(*r));
    r->type = type;
    r->nested_in = -1;
    r->segment = ctx->segment;
    r->seg_lo = ctx->lo;
    r->seg_hi = ctx->hi;
    r->first_child = kids[0];
    r->count = (uint32_t)nkids;
    r->child_ns = mt__detect_child_ns(ctx->w, kids, nkids);
    r->kids_off = ctx->pool_len;
    r->kids_len = nkids;
    memcpy(ctx->pool + ctx->pool_len, kids, nkids * sizeof(*kids));
    ctx->pool_len += nkids;
    for (size_t k = 0; k < nkids; k++) {
        ctx->w->cmds[kids[k]].role = MT_WINDOW_ROLE_CHILD;
        ctx->w->cmds[kids[k]].finding = (uint16_t)ctx->n;
    }
    return r;
}

bool mt__detect_is_child(const mt_detect_ctx_t *ctx, uint32_t i)
{
    /* segments are disjoint: a child mark inside this one is from this one */
    return i >= ctx->lo && i < ctx->hi && ctx->w->cmds[i].role == MT_WINDOW_ROLE_CHILD;
}

uint64_t mt__detect_child_ns(const mt_window_t *w, const uint32_t *kids, size_t nkids)
{
    uint64_t ns = 0;
    for (size_t k = 0; k < nkids; k++)
        ns += w->cmds[kids[k]].duration_ns + w->cmds[kids[k]].getmore_ns;
    return ns;
}

/* The term that changes from child to child while every other term stays
 * the same; false when more than one changes. */
bool mt__detect_key_term(const mt_window_t *w, const uint32_t *kids, size_t n, uint8_t *key,
                         uint8_t *constants)
{
    const mt_window_cmd_t *f = &w->cmds[kids[0]];
    unsigned varying = 0, nvar = 0;

    for (unsigned t = 0; t < f->nterms; t++)
        for (size_t k = 1; k < n; k++)
            if (mt_window_cmd_hash(&w->cmds[kids[k]], t) != mt_window_cmd_hash(f, t)) {
                varying |= 1u << t;
                nvar++;
                break;
            }
    if (nvar > 1)
        return false;
    *key = 0;
    for (unsigned t = 0; t < f->nterms; t++)
        if (varying & (1u << t))
            *key = (uint8_t)t;
    *constants = (uint8_t)(((1u << f->nterms) - 1) & ~(1u << *key));
    return true;
}

static void analyse_segment(mt_detect_ctx_t *ctx, uint32_t lo, uint32_t hi, uint32_t segment)
{
    ctx->lo = lo;
    ctx->hi = hi;
    ctx->segment = segment;
    ctx->seg_first = ctx->n;
    mt_detect_n_plus_one(ctx);
    mt_detect_write_loop(ctx);
    mt_detect_repeated_read(ctx);
}

bool mt_detect_is_parent(const mt_window_cmd_t *c, uint32_t threshold)
{
    return (c->kind == MT_CMD_FIND || c->kind == MT_CMD_AGGREGATE) && c->docs >= threshold;
}

/* Where the next request starts: a find or aggregate with the shape of a
 * parent of the current segment that has had lookups after it. */
typedef struct {
    uint64_t shape;
    bool has_children;
} seg_parent_t;

#define MAX_SEG_PARENTS 32

static uint32_t next_boundary(const mt_window_t *w, uint32_t lo, uint32_t threshold)
{
    seg_parent_t ps[MAX_SEG_PARENTS];
    size_t np = 0;

    for (uint32_t i = lo; i < w->ncmds; i++) {
        const mt_window_cmd_t *c = &w->cmds[i];
        bool read = c->kind == MT_CMD_FIND || c->kind == MT_CMD_AGGREGATE;
        if (c->ignored)
            continue; /* neither starts nor ends a request */
        for (size_t k = 0; k < np; k++) {
            if (ps[k].shape != c->shape_hash) {
                ps[k].has_children |= c->nterms > 0;
            } else if (read && ps[k].has_children && i > lo) {
                return i;
            }
        }
        if (mt_detect_is_parent(c, threshold) && np < MAX_SEG_PARENTS) {
            bool known = false;
            for (size_t k = 0; k < np; k++)
                known |= ps[k].shape == c->shape_hash;
            if (!known)
                ps[np++] = (seg_parent_t){c->shape_hash, false};
        }
    }
    return w->ncmds;
}

/* Children are marked as they are found (mt__detect_add); parents here. */
static void mark_roles(mt_detect_ctx_t *ctx)
{
    mt_window_t *w = ctx->w;

    for (size_t r = 0; r < ctx->n; r++) {
        const mt_detect_result_t *res = &ctx->out[r];
        uint16_t finding = (uint16_t)(r + 1);
        if (res->has_parent && res->nested_in < 0 &&
            w->cmds[res->parent].role == MT_WINDOW_ROLE_NONE) {
            w->cmds[res->parent].role = MT_WINDOW_ROLE_PARENT;
            w->cmds[res->parent].finding = finding;
        }
    }
}

size_t mt_detect_window(mt_window_t *w, const mt_detect_config_t *cfg, mt_detect_result_t *out,
                        size_t max)
{
    mt_detect_scratch_t own = {0};
    mt_detect_ctx_t ctx = {.w = w, .out = out, .max = max};
    uint32_t lo = 0, hi, segment = 0;
    mt_window_range_t *cuts = NULL;

    ctx.threshold = cfg->threshold < 1 ? 1 : cfg->threshold;
    if (w->ncmds == 0 || max == 0)
        return 0;
    ctx.scratch = cfg->scratch ? cfg->scratch : &own;
    ctx.pool = mt__detect_alloc(&ctx, w->ncmds * sizeof(*ctx.pool));
    if (!ctx.pool)
        return 0;
    hi = next_boundary(w, 0, ctx.threshold);
    if (hi < w->ncmds) {
        segment = 1; /* the window is cut: number its segments, and keep them */
        cuts = mt__detect_alloc(&ctx, w->ncmds * sizeof(*cuts));
    }
    for (;;) {
        analyse_segment(&ctx, lo, hi, segment);
        if (cuts)
            cuts[segment - 1] = (mt_window_range_t){lo, hi};
        if (hi >= w->ncmds)
            break;
        lo = hi;
        hi = next_boundary(w, lo, ctx.threshold);
        segment++;
    }
    mark_roles(&ctx);
    mt_window_set_segments(w, cuts, cuts ? segment : 0);
    if (ctx.scratch == &own)
        mt_detect_scratch_free(&own);
    else
        scratch_end(ctx.scratch);
    return ctx.n;
}
