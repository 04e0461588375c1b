/*
 * window: storage for request windows. Commands live in a growing array,
 * strings in a small block arena (pointers into it stay valid), evidence in
 * one byte buffer of concatenated documents plus segments naming the command
 * each run belongs to.
 */
#include "window.h"

#include <string.h>

#include "bson.h"
#include "clock.h"
#include "hash.h"
#include "json.h"
#include "shape.h"
#include "wire.h"

struct mt_window_block {
    mt_window_block_t *next;
    size_t used, cap;
    uint8_t data[];
};

/* Blocks start small and double up to BLOCK_SIZE: most windows store a few
 * short strings, and closed windows are kept by the thousand. */
#define BLOCK_FIRST 256
#define BLOCK_SIZE 4096

static void *arena_alloc(mt_window_t *w, size_t len)
{
    mt_window_block_t *b = w->arena;
    /* Keep 8-byte alignment for anything stored. */
    size_t need = (len + 7) & ~(size_t)7;
    if (!b || b->cap - b->used < need) {
        size_t cap = b ? (b->cap * 2 < BLOCK_SIZE ? b->cap * 2 : BLOCK_SIZE) : BLOCK_FIRST;
        if (need > cap)
            cap = need;
        b = bson_malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->used = 0;
        b->cap = cap;
        b->next = w->arena;
        w->arena = b;
    }
    void *p = b->data + b->used;
    b->used += need;
    return p;
}

const char *mt_window_strdup(mt_window_t *w, const char *s, size_t max)
{
    size_t len = max ? strnlen(s, max) : strlen(s);
    char *p = arena_alloc(w, len + 1);
    if (!p)
        return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

const uint8_t *mt_window_memdup(mt_window_t *w, const uint8_t *src, size_t len)
{
    uint8_t *p = arena_alloc(w, len ? len : 1);
    if (p && len)
        memcpy(p, src, len);
    return p;
}

/* A record or evidence written by the next request or reply of a window
 * lands in memory no one has touched yet (the arrays only grow while the
 * window is open), and every store to it would wait for its line: asking
 * for the lines now lets that happen while the proxy does other work. */
static void prefetch_for_write(const void *p, size_t len)
{
#if defined(__GNUC__)
    for (size_t off = 0; off < len; off += 64)
        __builtin_prefetch((const char *)p + off, 1, 3);
#else
    (void)p;
    (void)len;
#endif
}

bool mt_window_full(const mt_window_t *w)
{
    return w->ncmds >= MT_WINDOW_MAX_COMMANDS ||
           (w->budget && w->budget->cmds >= MT_WINDOW_TOTAL_COMMANDS);
}

/* Past a pooled window's size, a spare array a busy window gave back, when
 * one holds cap commands: memory already faulted in, and spares are used up
 * before open windows grow beside them. */
static bool grow_into_spare(mt_spares_t *spares, mt_window_t *w, uint32_t cap)
{
    size_t got;
    mt_window_cmd_t *c;

    if (cap <= MT_WINDOW_POOL_CMDS || !spares ||
        !(c = mt_spares_take(spares, (size_t)cap * sizeof *c, SIZE_MAX, &got)))
        return false;
    if (w->ncmds)
        memcpy(c, w->cmds, w->ncmds * sizeof *c);
    bson_free(w->cmds);
    w->cmds = c;
    w->cmds_cap = (uint32_t)(got / sizeof *c);
    return true;
}

int mt_window_add_cmd(mt_window_t *w, const mt_window_cmd_t *cmd)
{
    w->total_cmds++;
    if (mt_window_full(w))
        return -1;
    if (w->ncmds == w->cmds_cap) {
        uint32_t cap = w->cmds_cap ? w->cmds_cap * 2 : 16;
        /* past a pooled window's size, straight to what the newest retired
         * window held: not a copy of the whole array at every doubling (each
         * a stall of the loop, up to a megabyte, that every connection waits
         * out) */
        if (cap > MT_WINDOW_POOL_CMDS && w->cmds_hint > cap)
            cap = w->cmds_hint;
        if (cap > MT_WINDOW_MAX_COMMANDS)
            cap = MT_WINDOW_MAX_COMMANDS;
        if (!grow_into_spare(w->spare_cmds, w, cap)) {
            mt_window_cmd_t *c = bson_realloc(w->cmds, cap * sizeof *c);
            if (!c)
                return -1;
            w->cmds = c;
            w->cmds_cap = cap;
        }
    }
    w->cmds[w->ncmds] = *cmd;
    if (w->ncmds + 1 < w->cmds_cap)
        prefetch_for_write(&w->cmds[w->ncmds + 1], sizeof *cmd);
    if (w->budget)
        w->budget->cmds++;
    return (int)w->ncmds++;
}

/* Room for need more evidence bytes, within the window's bound and the
 * budget of all open windows. */
static bool ev_reserve(mt_window_t *w, size_t need)
{
    if (w->ev_len + need > MT_WINDOW_EVIDENCE_BYTES ||
        (w->budget && w->budget->ev_bytes + need > MT_WINDOW_TOTAL_EVIDENCE))
        return false;
    if (w->ev_len + need > w->ev_cap) {
        size_t cap = w->ev_cap ? w->ev_cap : 4096;
        while (cap < w->ev_len + need)
            cap *= 2;
        if (cap > MT_WINDOW_EVIDENCE_BYTES)
            cap = MT_WINDOW_EVIDENCE_BYTES;
        uint8_t *p = bson_realloc(w->ev, cap);
        if (!p)
            return false;
        w->ev = p;
        w->ev_cap = cap;
    }
    return true;
}

/* Copies len bytes holding ndocs documents to the end of the evidence,
 * when the bounds leave room for them. */
static bool ev_append(mt_window_t *w, const uint8_t *p, uint32_t len, uint32_t ndocs)
{
    if (!ev_reserve(w, len))
        return false;
    memcpy(w->ev + w->ev_len, p, len);
    w->ev_len += len;
    w->ev_docs += ndocs;
    if (w->budget)
        w->budget->ev_bytes += len;
    return true;
}

/* Names ev[seg_off..ev_len) as command idx's, extending the previous run of
 * documents when it is the same command's; forgets what it cannot name. */
static void ev_segment(mt_window_t *w, uint32_t idx, uint32_t seg_off, bool array)
{
    mt_window_evseg_t *last = w->nsegs ? &w->segs[w->nsegs - 1] : NULL;

    if (w->ev_len == seg_off)
        return;
    if (!array && last && !last->array && last->cmd == idx && last->off + last->len == seg_off) {
        last->len += (uint32_t)w->ev_len - seg_off;
        return;
    }
    if (w->nsegs == w->segs_cap) {
        uint32_t cap = w->segs_cap ? w->segs_cap * 2 : 8;
        mt_window_evseg_t *s = bson_realloc(w->segs, cap * sizeof *s);
        if (!s) {
            if (w->budget)
                w->budget->ev_bytes -= w->ev_len - seg_off;
            w->ev_len = seg_off;
            return;
        }
        w->segs = s;
        w->segs_cap = cap;
    }
    w->segs[w->nsegs++] = (mt_window_evseg_t){
        .cmd = idx, .off = seg_off, .len = (uint32_t)w->ev_len - seg_off, .array = array};
}

void mt_window_add_evidence(mt_window_t *w, uint32_t idx, const uint8_t *array, uint32_t len,
                            uint32_t ndocs)
{
    mt_bson_iter_t it;
    mt_bson_elem_t e;
    uint32_t seg_off = (uint32_t)w->ev_len;

    if (w->closed || idx >= w->ncmds || !array || len < 5 || ndocs == 0)
        return;
    /* The documents are kept as the reply's view framed them, not walked:
     * the detectors check each one whole when they first read it (most
     * evidence never is). A batch that fits is kept whole, in one copy. */
    if (w->ev_docs + ndocs <= MT_WINDOW_EVIDENCE_DOCS && ev_append(w, array, len, ndocs)) {
        ev_segment(w, idx, seg_off, true);
    } else if (mt_bson_iter_init(&it, array, len)) {
        /* as many of its documents as the bounds leave room for */
        while (w->ev_docs < MT_WINDOW_EVIDENCE_DOCS && mt_bson_iter_next(&it, &e) == MT_BSON_ELEM)
            if (e.type == BSON_TYPE_DOCUMENT && !ev_append(w, e.value, e.value_len, 1))
                break;
        ev_segment(w, idx, seg_off, false);
    }
    /* room for the next reply's documents, say a few small ones */
    if (w->ev_cap > w->ev_len)
        prefetch_for_write(w->ev + w->ev_len,
                           w->ev_cap - w->ev_len < 256 ? w->ev_cap - w->ev_len : 256);
}

static void arena_free(mt_window_t *w)
{
    mt_window_block_t *b = w->arena;
    while (b) {
        mt_window_block_t *next = b->next;
        bson_free(b);
        b = next;
    }
    w->arena = NULL;
}

/* A closed window gives its arena up: the codeNames of its failed commands,
 * which /api/windows/ID shows, move to one allocation of their own (none
 * when nothing failed). */
static void keep_error_names(mt_window_t *w)
{
    size_t total = 0, at = 0;

    if (w->error_names)
        return;
    for (uint32_t i = 0; i < w->ncmds; i++)
        if (w->cmds[i].error_name)
            total += strlen(w->cmds[i].error_name) + 1;
    if (total == 0)
        return;
    w->error_names = bson_malloc(total);
    for (uint32_t i = 0; i < w->ncmds; i++) {
        mt_window_cmd_t *c = &w->cmds[i];
        if (!c->error_name)
            continue;
        if (!w->error_names) {
            c->error_name = NULL; /* out of memory: the code alone is shown */
            continue;
        }
        size_t n = strlen(c->error_name) + 1;
        memcpy(w->error_names + at, c->error_name, n);
        c->error_name = w->error_names + at;
        at += n;
    }
}

void mt_window_trim(mt_window_t *w)
{
    bson_free(w->ev);
    w->ev = NULL;
    w->ev_len = w->ev_cap = 0;
    bson_free(w->segs);
    w->segs = NULL;
    w->nsegs = w->segs_cap = 0;
    keep_error_names(w);
    for (uint32_t i = 0; i < w->ncmds; i++) {
        mt_window_cmd_t *c = &w->cmds[i];
        c->keys = NULL;
        c->more = NULL;
        c->own = NULL; /* past --max-shapes: "<other>", named by its kind */
    }
    arena_free(w);
    w->keys = NULL;
    w->keys_nterms = 0;
}

uint64_t mt_window_duration_ns(const mt_window_t *w)
{
    return w->last_ns > w->started_ns ? w->last_ns - w->started_ns : 0;
}

/* What a window owns beyond the storage a pooled window keeps. */
static void window_drop_owned(mt_window_t *w)
{
    arena_free(w);
    bson_free(w->error_names);
    bson_free(w->found);
    bson_free(w->cuts);
    w->error_names = NULL;
    w->found = NULL;
    w->cuts = NULL;
}

static void window_free(mt_window_t *w)
{
    if (!w)
        return;
    window_drop_owned(w);
    bson_free(w->cmds);
    bson_free(w->ev);
    bson_free(w->segs);
    bson_free(w);
}

/* ---- storage kept for reuse ------------------------------------------------ */

/* An analysed window's evidence goes back to the registry, and its newest
 * arena block (nothing points into it once the window is trimmed, which
 * retiring does next; the codeNames have moved out already). */
static void give_back_evidence(mt_window_reg_t *reg, mt_window_t *w)
{
    if (w->arena) {
        /* the newest block is the largest: the next window starts there */
        mt_window_block_t *keep = w->arena;
        w->arena = keep->next;
        mt_spares_put(&reg->spare_blocks, keep, keep->cap);
    }
    if (w->ev)
        reg->ev_hint = w->ev_cap;
    mt_spares_put(&reg->spare_ev, w->ev, w->ev_cap);
    mt_spares_put(&reg->spare_segs, w->segs, w->segs_cap * sizeof(*w->segs));
    w->ev = NULL;
    w->ev_len = w->ev_cap = 0;
    w->segs = NULL;
    w->nsegs = w->segs_cap = 0;
}

/* A retired window keeps its first MT_WINDOW_CLOSED_COMMANDS commands. A
 * larger array goes back to the registry and they move to one of their
 * size; out of memory for that, the array is shrunk in place. */
static void give_back_commands(mt_window_reg_t *reg, mt_window_t *w)
{
    uint32_t keep = w->ncmds < MT_WINDOW_CLOSED_COMMANDS ? w->ncmds : MT_WINDOW_CLOSED_COMMANDS;
    mt_window_cmd_t *kept = NULL;

    reg->cmds_hint = w->ncmds;
    if (w->cmds_cap <= MT_WINDOW_CLOSED_COMMANDS)
        return;
    if (keep && !(kept = bson_malloc(keep * sizeof *kept))) {
        if ((kept = bson_realloc(w->cmds, keep * sizeof *kept))) {
            w->cmds = kept;
            w->ncmds = w->cmds_cap = keep;
        }
        return;
    }
    if (keep)
        memcpy(kept, w->cmds, keep * sizeof *kept);
    mt_spares_put(&reg->spare_cmds, w->cmds, w->cmds_cap * sizeof *w->cmds);
    w->cmds = kept;
    w->ncmds = w->cmds_cap = keep;
}

/* A window the closed lists let go: kept with its commands array and first
 * arena block when the pool has room, else freed. */
static void window_recycle(mt_window_reg_t *reg, mt_window_t *w)
{
    if (!w)
        return;
    give_back_evidence(reg, w);
    if (reg->npool >= MT_WINDOW_POOL || w->cmds_cap > MT_WINDOW_POOL_CMDS) {
        window_free(w);
        return;
    }
    window_drop_owned(w);
    w->pool_next = reg->pool;
    reg->pool = w;
    reg->npool++;
}

/* A zeroed window, with reused storage when there is some. */
static mt_window_t *window_new(mt_window_reg_t *reg)
{
    mt_window_t *w = reg->pool;
    if (!w) {
        w = bson_malloc0(sizeof *w);
    } else {
        reg->pool = w->pool_next;
        reg->npool--;
        mt_window_cmd_t *cmds = w->cmds;
        uint32_t cmds_cap = w->cmds_cap;
        memset(w, 0, sizeof *w);
        w->cmds = cmds;
        w->cmds_cap = cmds_cap;
    }
    if (w) {
        size_t cap = 0;
        w->cmds_hint = reg->cmds_hint;
        /* as large as the newest analysed window's, when one is kept */
        w->ev = mt_spares_take(&reg->spare_ev, reg->ev_hint, SIZE_MAX, &cap);
        if (!w->ev)
            w->ev = mt_spares_take(&reg->spare_ev, 0, SIZE_MAX, &cap);
        w->ev_cap = w->ev ? cap : 0;
        w->segs = mt_spares_take(&reg->spare_segs, 0, SIZE_MAX, &cap);
        w->segs_cap = w->segs ? (uint32_t)(cap / sizeof(*w->segs)) : 0;
        w->arena = mt_spares_take(&reg->spare_blocks, 0, SIZE_MAX, &cap);
        if (w->arena) {
            w->arena->next = NULL;
            w->arena->used = 0;
        }
        /* as many commands as the newest retired window had, when that was
         * more than a pooled window holds */
        if (reg->cmds_hint > w->cmds_cap)
            grow_into_spare(&reg->spare_cmds, w, reg->cmds_hint);
    }
    return w;
}

static void pool_clear(mt_window_reg_t *reg)
{
    while (reg->pool) {
        mt_window_t *w = reg->pool;
        reg->pool = w->pool_next;
        window_free(w);
    }
    reg->npool = 0;
    mt_spares_release(&reg->spare_ev);
    mt_spares_release(&reg->spare_segs);
    mt_spares_release(&reg->spare_blocks);
    mt_spares_release(&reg->spare_cmds);
}

const char *mt_window_role_str(uint8_t role)
{
    switch (role) {
    case MT_WINDOW_ROLE_NONE:
        return "none";
    case MT_WINDOW_ROLE_PARENT:
        return "parent";
    case MT_WINDOW_ROLE_CHILD:
        return "child";
    }
    return "unknown";
}

void mt_window_span(const mt_window_t *w, uint32_t lo, uint32_t hi, mt_window_span_t *out)
{
    out->started_ms = w->started_ms;
    out->duration_ns = mt_window_duration_ns(w);
    out->offset_ns = 0;
    if (hi > w->ncmds)
        hi = w->ncmds;
    if (lo >= hi)
        return;
    uint64_t first = w->cmds[lo].start_ns, last = first;
    for (uint32_t i = lo; i < hi; i++) {
        const mt_window_cmd_t *c = &w->cmds[i];
        uint64_t end = c->start_ns + c->duration_ns + c->getmore_ns;
        last = end > last ? end : last;
    }
    out->offset_ns = first > w->started_ns ? first - w->started_ns : 0;
    out->started_ms = w->started_ms + (int64_t)(out->offset_ns / 1000000);
    out->duration_ns = last - first;
}

void mt_window_set_findings(mt_window_t *w, const mt_window_finding_t *found, uint32_t n,
                            uint64_t pin_seq)
{
    bson_free(w->found);
    w->found = NULL;
    w->findings = 0;
    w->pin_seq = 0;
    if (n == 0)
        return;
    w->found = bson_malloc(n * sizeof *found);
    memcpy(w->found, found, n * sizeof *found);
    w->findings = n;
    w->pin_seq = pin_seq;
}

void mt_window_set_segments(mt_window_t *w, const mt_window_range_t *cuts, uint32_t n)
{
    bson_free(w->cuts);
    w->cuts = NULL;
    w->ncuts = 0;
    if (n == 0)
        return;
    w->cuts = bson_malloc(n * sizeof *cuts);
    memcpy(w->cuts, cuts, n * sizeof *cuts);
    w->ncuts = n;
}

/* ---- filters --------------------------------------------------------------- */

/* ASCII case-insensitive substring; names and shapes are what is searched. */
static bool contains(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    if (!hay)
        return false;
    for (const char *p = hay; *p; p++)
        if (strncasecmp(p, needle, n) == 0)
            return true;
    return n == 0;
}

static bool cmd_ns_contains(const mt_window_cmd_t *c, const char *needle)
{
    char ns[MT_CMD_NS_MAX + 2];
    bson_snprintf(ns, sizeof ns, "%s.%s", mt_window_cmd_db(c), mt_window_cmd_collection(c));
    return contains(ns, needle);
}

static bool app_contains(const mt_window_t *w, const char *needle)
{
    return contains(w->app_name, needle) || contains(w->client_addr, needle) ||
           contains(w->driver, needle);
}

static bool any_cmd(const mt_window_t *w, const char *needle,
                    bool (*has)(const mt_window_cmd_t *, const char *))
{
    for (uint32_t i = 0; i < w->ncmds; i++)
        if (has(&w->cmds[i], needle))
            return true;
    return false;
}

static bool cmd_shape_contains(const mt_window_cmd_t *c, const char *needle)
{
    return contains(mt_window_cmd_shape(c), needle);
}

static bool cmd_text_contains(const mt_window_cmd_t *c, const char *needle)
{
    return contains(mt_window_cmd_command(c), needle) || cmd_ns_contains(c, needle) ||
           contains(mt_window_cmd_shape(c), needle);
}

static bool set(const char *s)
{
    return s && *s;
}

bool mt_window_matches(const mt_window_t *w, const mt_window_filter_t *f)
{
    if (!f)
        return true;
    if (set(f->ns) && !any_cmd(w, f->ns, cmd_ns_contains))
        return false;
    if (set(f->shape) && !any_cmd(w, f->shape, cmd_shape_contains))
        return false;
    if (set(f->app) && !app_contains(w, f->app))
        return false;
    if (!set(f->text) || app_contains(w, f->text) || contains(w->key, f->text))
        return true;
    for (uint32_t i = 0; i < w->findings; i++)
        if (contains(w->found[i].id, f->text) || contains(w->found[i].type, f->text))
            return true;
    return any_cmd(w, f->text, cmd_text_contains);
}

/* ---- JSON ------------------------------------------------------------------ */

static void append_key(bson_t *doc, const mt_window_t *w)
{
    if (w->key)
        BSON_APPEND_UTF8(doc, "key", w->key);
    else
        BSON_APPEND_NULL(doc, "key");
}

static const char *index_key(uint32_t i, char buf[16])
{
    const char *key;
    bson_uint32_to_string(i, &key, buf, 16);
    return key;
}

void mt_window_brief_bson(const mt_window_t *w, bson_t *doc)
{
    char iso[MT_CLOCK_ISO_LEN];
    BSON_APPEND_INT64(doc, "id", (int64_t)w->id);
    append_key(doc, w);
    BSON_APPEND_UTF8(doc, "started_at", mt_clock_iso8601(w->started_ms, iso));
    BSON_APPEND_INT64(doc, "commands", (int64_t)w->total_cmds);
    BSON_APPEND_BOOL(doc, "open", !w->closed);
    BSON_APPEND_INT32(doc, "findings", (int32_t)w->findings);
}

/* One command: what it was, when and how long, what went each way, how it
 * ended, and its part in a finding. */
static void cmd_bson(const mt_window_t *w, uint32_t i, bson_t *c)
{
    const mt_window_cmd_t *m = &w->cmds[i];
    uint64_t offset = m->start_ns > w->started_ns ? m->start_ns - w->started_ns : 0;

    BSON_APPEND_INT32(c, "index", (int32_t)i);
    BSON_APPEND_UTF8(c, "command", mt_window_cmd_command(m));
    BSON_APPEND_UTF8(c, "db", mt_window_cmd_db(m));
    BSON_APPEND_UTF8(c, "collection", mt_window_cmd_collection(m));
    BSON_APPEND_UTF8(c, "shape", mt_window_cmd_shape(m));
    BSON_APPEND_DOUBLE(c, "offset_ms", mt_json_ms(offset));
    BSON_APPEND_DOUBLE(c, "duration_ms", mt_json_ms(m->duration_ns + m->getmore_ns));
    BSON_APPEND_INT64(c, "docs", (int64_t)m->docs);
    BSON_APPEND_INT64(c, "bytes_in", (int64_t)m->bytes_in);
    BSON_APPEND_INT64(c, "bytes_out", (int64_t)m->bytes_out);
    BSON_APPEND_BOOL(c, "ok", !m->failed);
    if (!m->failed) {
        BSON_APPEND_NULL(c, "error");
    } else if (m->error_name) {
        BSON_APPEND_UTF8(c, "error", m->error_name);
    } else if (m->error_code) {
        char code[32];
        bson_snprintf(code, sizeof code, "code %d", m->error_code);
        BSON_APPEND_UTF8(c, "error", code);
    } else {
        BSON_APPEND_UTF8(c, "error", "failed");
    }
    if (m->failed && m->error_code)
        BSON_APPEND_INT32(c, "error_code", m->error_code);
    else
        BSON_APPEND_NULL(c, "error_code");
    if (m->ignored)
        BSON_APPEND_BOOL(c, "ignored", true);
    if (m->role == MT_WINDOW_ROLE_NONE)
        BSON_APPEND_NULL(c, "role");
    else
        BSON_APPEND_UTF8(c, "role", mt_window_role_str(m->role));
    mt_json_str_or_null(c, "finding",
                        m->finding > 0 && m->finding <= w->findings ? w->found[m->finding - 1].id
                                                                    : NULL);
}

static void cmds_bson(const mt_window_t *w, uint32_t lo, uint32_t hi, bson_t *doc)
{
    bson_t arr, c;
    char k[16];
    BSON_APPEND_ARRAY_BEGIN(doc, "commands", &arr);
    for (uint32_t i = lo; i < hi && i < w->ncmds; i++) {
        BSON_APPEND_DOCUMENT_BEGIN(&arr, index_key(i - lo, k), &c);
        cmd_bson(w, i, &c);
        bson_append_document_end(&arr, &c);
    }
    bson_append_array_end(doc, &arr);
}

#define SUMMARY_NAMESPACES 8

/* The namespaces its commands touched, in order of first use: the first few,
 * and whether there were more. */
static void namespaces_bson(const mt_window_t *w, bson_t *doc)
{
    const mt_window_cmd_t *seen[SUMMARY_NAMESPACES];
    uint32_t n = 0;
    bool more = false;
    bson_t arr;
    char k[16], ns[MT_CMD_NS_MAX + 2];

    BSON_APPEND_ARRAY_BEGIN(doc, "namespaces", &arr);
    for (uint32_t i = 0; i < w->ncmds; i++) {
        const mt_window_cmd_t *c = &w->cmds[i];
        bool known = false;
        for (uint32_t j = 0; j < n && !known; j++)
            known = strcmp(mt_window_cmd_db(seen[j]), mt_window_cmd_db(c)) == 0 &&
                    strcmp(mt_window_cmd_collection(seen[j]), mt_window_cmd_collection(c)) == 0;
        if (known)
            continue;
        if (n == SUMMARY_NAMESPACES) {
            more = true;
            break;
        }
        seen[n] = c;
        if (*mt_window_cmd_collection(c))
            bson_snprintf(ns, sizeof ns, "%s.%s", mt_window_cmd_db(c), mt_window_cmd_collection(c));
        else
            bson_snprintf(ns, sizeof ns, "%s", mt_window_cmd_db(c));
        const char *key = index_key(n++, k);
        BSON_APPEND_UTF8(&arr, key, ns);
    }
    bson_append_array_end(doc, &arr);
    BSON_APPEND_BOOL(doc, "namespaces_truncated", more);
}

/* The fields a window row and a window page share. */
static void summary_bson(const mt_window_t *w, bson_t *doc)
{
    char iso[MT_CLOCK_ISO_LEN], url[48];
    BSON_APPEND_INT64(doc, "id", (int64_t)w->id);
    bson_snprintf(url, sizeof url, "/api/windows/%llu", (unsigned long long)w->id);
    BSON_APPEND_UTF8(doc, "url", url);
    BSON_APPEND_INT64(doc, "connection_id", (int64_t)w->conn_id);
    append_key(doc, w);
    mt_json_str_or_null(doc, "client", w->client_addr);
    mt_json_str_or_null(doc, "app_name", w->app_name);
    mt_json_str_or_null(doc, "driver", w->driver);
    BSON_APPEND_BOOL(doc, "open", !w->closed);
    BSON_APPEND_UTF8(doc, "started_at", mt_clock_iso8601(w->started_ms, iso));
    BSON_APPEND_DOUBLE(doc, "duration_ms", mt_json_ms(mt_window_duration_ns(w)));
    BSON_APPEND_INT64(doc, "total_commands", (int64_t)w->total_cmds);
    BSON_APPEND_INT64(doc, "commands_kept", (int64_t)w->ncmds);
    BSON_APPEND_INT32(doc, "segment_count", (int32_t)w->ncuts);
    namespaces_bson(w, doc);
}

void mt_window_bson(const mt_window_t *w, bool with_commands, bson_t *doc)
{
    bson_t arr;
    char k[16];
    summary_bson(w, doc);
    if (with_commands)
        cmds_bson(w, 0, w->ncmds, doc);
    BSON_APPEND_INT32(doc, "findings", (int32_t)w->findings);
    BSON_APPEND_ARRAY_BEGIN(doc, "finding_ids", &arr);
    for (uint32_t i = 0; i < w->findings; i++)
        BSON_APPEND_UTF8(&arr, index_key(i, k), w->found[i].id);
    bson_append_array_end(doc, &arr);
}

static void span_bson(const mt_window_t *w, uint32_t lo, uint32_t hi, bson_t *doc)
{
    char iso[MT_CLOCK_ISO_LEN];
    mt_window_span_t sp;
    mt_window_span(w, lo, hi, &sp);
    BSON_APPEND_UTF8(doc, "started_at", mt_clock_iso8601(sp.started_ms, iso));
    BSON_APPEND_DOUBLE(doc, "offset_ms", mt_json_ms(sp.offset_ns));
    BSON_APPEND_DOUBLE(doc, "duration_ms", mt_json_ms(sp.duration_ns));
}

bool mt_window_detail_bson(const mt_window_t *w, uint32_t segment, bson_t *doc)
{
    bson_t arr, sub;
    char k[16];
    uint32_t lo = 0, hi = w->ncmds, n = 0;

    /* an open window may hold up to MT_WINDOW_MAX_COMMANDS: show as many as
     * it will keep once closed */
    if (!w->closed && hi > MT_WINDOW_CLOSED_COMMANDS)
        hi = MT_WINDOW_CLOSED_COMMANDS;
    if (segment > 0) {
        if (segment > w->ncuts)
            return false;
        lo = w->cuts[segment - 1].lo;
        hi = w->cuts[segment - 1].hi;
    }
    summary_bson(w, doc);
    if (segment > 0) {
        BSON_APPEND_INT32(doc, "segment", (int32_t)segment);
        BSON_APPEND_DOCUMENT_BEGIN(doc, "span", &sub);
        BSON_APPEND_INT32(&sub, "first", (int32_t)lo);
        BSON_APPEND_INT32(&sub, "last", (int32_t)hi - 1);
        span_bson(w, lo, hi, &sub);
        bson_append_document_end(doc, &sub);
    } else {
        BSON_APPEND_NULL(doc, "segment");
    }

    BSON_APPEND_ARRAY_BEGIN(doc, "segments", &arr);
    for (uint32_t s = 0; s < w->ncuts; s++) {
        const mt_window_range_t *r = &w->cuts[s];
        BSON_APPEND_DOCUMENT_BEGIN(&arr, index_key(s, k), &sub);
        BSON_APPEND_INT32(&sub, "segment", (int32_t)s + 1);
        BSON_APPEND_INT32(&sub, "first", (int32_t)r->lo);
        BSON_APPEND_INT32(&sub, "last", (int32_t)r->hi - 1);
        BSON_APPEND_INT32(&sub, "commands", (int32_t)(r->hi - r->lo));
        /* a cut past the commands kept has no times left to show */
        if (r->lo < w->ncmds)
            span_bson(w, r->lo, r->hi, &sub);
        bson_append_document_end(&arr, &sub);
    }
    bson_append_array_end(doc, &arr);

    BSON_APPEND_ARRAY_BEGIN(doc, "findings", &arr);
    for (uint32_t i = 0; i < w->findings; i++) {
        const mt_window_finding_t *f = &w->found[i];
        if (segment > 0 && f->segment != segment)
            continue;
        const char *key = index_key(n++, k);
        BSON_APPEND_DOCUMENT_BEGIN(&arr, key, &sub);
        BSON_APPEND_UTF8(&sub, "id", f->id);
        BSON_APPEND_UTF8(&sub, "type", f->type);
        BSON_APPEND_UTF8(&sub, "confidence", f->high ? "high" : "medium");
        if (f->segment > 0)
            BSON_APPEND_INT32(&sub, "segment", (int32_t)f->segment);
        else
            BSON_APPEND_NULL(&sub, "segment");
        if (f->parent >= 0)
            BSON_APPEND_INT32(&sub, "parent", f->parent);
        else
            BSON_APPEND_NULL(&sub, "parent");
        BSON_APPEND_INT32(&sub, "children", (int32_t)f->children);
        bson_append_document_end(&arr, &sub);
    }
    bson_append_array_end(doc, &arr);
    cmds_bson(w, lo, hi, doc);
    return true;
}

/* Registry */

static uint64_t key_hash(const char *key)
{
    return mt_hash_str(MT_HASH_SEED, key);
}

#define window_of(node) ((mt_window_t *)((char *)(node)-offsetof(mt_window_t, link)))
#define held_of(node) ((mt_window_t *)((char *)(node)-offsetof(mt_window_t, held_link)))

void mt_window_reg_init(mt_window_reg_t *reg, const mt_window_rules_t *rules)
{
    memset(reg, 0, sizeof *reg);
    reg->rules = *rules;
    if (reg->rules.keep == 0)
        reg->rules.keep = MT_WINDOW_KEEP_DEFAULT;
    if (reg->rules.keep > MT_WINDOW_KEEP_MAX)
        reg->rules.keep = MT_WINDOW_KEEP_MAX;
    if (reg->rules.closed_cmds_max == 0)
        reg->rules.closed_cmds_max = MT_WINDOW_CLOSED_TOTAL_COMMANDS;
    h2o_linklist_init_anchor(&reg->open);
    h2o_linklist_init_anchor(&reg->recent);
    h2o_linklist_init_anchor(&reg->pinned);
    h2o_linklist_init_anchor(&reg->held_plain);
    h2o_linklist_init_anchor(&reg->held_found);
    /* The id maps are bounded by connections plus keyed windows, and by the
     * closed lists; the limits are only backstops. */
    mt_idmap_init(&reg->by_id, sizeof(mt_window_t *), 1u << 22);
    mt_idmap_init(&reg->by_key, sizeof(mt_window_t *), MT_WINDOW_MAX_KEYED);
    mt_idmap_init(&reg->closed_id, sizeof(mt_window_t *), 2 * MT_WINDOW_KEEP_MAX);
    mt_spares_init(&reg->spare_ev, MT_WINDOW_POOL, MT_WINDOW_POOL_EV_EACH, MT_WINDOW_POOL_EV_TOTAL,
                   bson_free);
    mt_spares_init(&reg->spare_segs, MT_WINDOW_POOL, MT_WINDOW_POOL_EV, SIZE_MAX, bson_free);
    mt_spares_init(&reg->spare_blocks, MT_WINDOW_POOL, MT_WINDOW_POOL_EV, SIZE_MAX, bson_free);
    mt_spares_init(&reg->spare_cmds, MT_WINDOW_POOL_CMDS_ARRAYS,
                   MT_WINDOW_MAX_COMMANDS * sizeof(mt_window_cmd_t), MT_WINDOW_POOL_CMDS_TOTAL,
                   bson_free);
    reg->next_id = 1;
}

static void free_list(h2o_linklist_t *list)
{
    while (!h2o_linklist_is_empty(list)) {
        mt_window_t *w = window_of(list->next);
        h2o_linklist_unlink(&w->link);
        if (w->owner_slot)
            *w->owner_slot = NULL;
        window_free(w);
    }
}

void mt_window_reg_clear(mt_window_reg_t *reg)
{
    free_list(&reg->open);
    free_list(&reg->recent);
    free_list(&reg->pinned);
    pool_clear(reg);
    mt_idmap_free(&reg->by_id);
    mt_idmap_free(&reg->by_key);
    mt_idmap_free(&reg->closed_id);
    uint64_t next_id = reg->next_id;
    mt_window_rules_t rules = reg->rules;
    mt_window_reg_init(reg, &rules);
    /* Ids keep growing across resets so a client never sees one reused. */
    reg->next_id = next_id;
}

mt_window_t *mt_window_reg_open(mt_window_reg_t *reg, uint64_t conn_id, const char *key,
                                mt_window_t **owner_slot, uint64_t now_ns, int64_t now_ms,
                                const char *client_addr, const char *app_name, const char *driver)
{
    if (key && reg->keyed_open >= MT_WINDOW_MAX_KEYED)
        return NULL;
    mt_window_t *w = window_new(reg);
    if (!w)
        return NULL;
    w->id = reg->next_id;
    w->conn_id = conn_id;
    w->owner_slot = owner_slot;
    w->started_ns = w->last_ns = now_ns;
    w->started_ms = now_ms;
    w->budget = &reg->budget;
    w->spare_cmds = &reg->spare_cmds;
    bson_strncpy(w->client_addr, client_addr ? client_addr : "", sizeof w->client_addr);
    bson_strncpy(w->app_name, app_name ? app_name : "", sizeof w->app_name);
    bson_strncpy(w->driver, driver ? driver : "", sizeof w->driver);
    if (key) {
        size_t n = strnlen(key, MT_WINDOW_KEY_MAX); /* as mt_window_reg_find_key() cuts it */
        memcpy(w->key_buf, key, n);
        w->key_buf[n] = '\0';
        w->key = w->key_buf;
    }
    mt_window_t **slot = mt_idmap_put(&reg->by_id, (int64_t)w->id, NULL, NULL);
    if (!slot) {
        window_free(w);
        return NULL;
    }
    *slot = w;
    if (key) {
        slot = mt_idmap_put(&reg->by_key, (int64_t)key_hash(w->key), NULL, NULL);
        if (!slot) {
            mt_idmap_remove(&reg->by_id, (int64_t)w->id, NULL);
            window_free(w);
            return NULL;
        }
        *slot = w;
        reg->keyed_open++;
    }
    reg->next_id++;
    h2o_linklist_insert(&reg->open, &w->link);
    reg->open_count++;
    return w;
}

mt_window_t *mt_window_reg_find(const mt_window_reg_t *reg, uint64_t id)
{
    mt_window_t **slot = mt_idmap_get(&reg->by_id, (int64_t)id);
    return slot ? *slot : NULL;
}

mt_window_t *mt_window_reg_find_key(const mt_window_reg_t *reg, const char *key)
{
    char cut[MT_WINDOW_KEY_MAX + 1];
    bson_strncpy(cut, key, sizeof cut);
    mt_window_t **slot = mt_idmap_get(&reg->by_key, (int64_t)key_hash(cut));
    /* A 64-bit hash collision between two live keys is treated as a miss. */
    return slot && strcmp((*slot)->key, cut) == 0 ? *slot : NULL;
}

void mt_window_reg_detach(mt_window_reg_t *reg, mt_window_t *w, uint64_t now_ns)
{
    if (w->closed)
        return;
    mt_idmap_remove(&reg->by_id, (int64_t)w->id, NULL);
    if (w->key) {
        mt_window_t **slot = mt_idmap_get(&reg->by_key, (int64_t)key_hash(w->key));
        if (slot && *slot == w)
            mt_idmap_remove(&reg->by_key, (int64_t)key_hash(w->key), NULL);
        reg->keyed_open--;
    }
    h2o_linklist_unlink(&w->link);
    reg->open_count--;
    w->closed = true;
    w->closed_ns = now_ns;
    if (w->owner_slot && *w->owner_slot == w)
        *w->owner_slot = NULL;
    w->owner_slot = NULL;
    /* Closed windows are bounded by the closed ring, not the budget. */
    reg->budget.cmds -= w->ncmds;
    reg->budget.ev_bytes -= w->ev_len;
    w->budget = NULL;
    w->spare_cmds = NULL;
}

/* Frees a closed window kept in one of the closed lists. */
static void forget(mt_window_reg_t *reg, mt_window_t *w)
{
    mt_idmap_remove(&reg->closed_id, (int64_t)w->id, NULL);
    h2o_linklist_unlink(&w->link);
    if (h2o_linklist_is_linked(&w->held_link)) {
        h2o_linklist_unlink(&w->held_link);
        reg->closed_cmds -= w->ncmds;
    }
    window_recycle(reg, w);
}

/* The total bound: a closed window gives up its commands (and the arena
 * their strings live in) but stays listed. */
static void drop_commands(mt_window_reg_t *reg, mt_window_t *w)
{
    h2o_linklist_unlink(&w->held_link);
    reg->closed_cmds -= w->ncmds;
    if (reg->rules.cmds_dropped)
        *reg->rules.cmds_dropped += w->ncmds;
    bson_free(w->cmds);
    w->cmds = NULL;
    w->ncmds = w->cmds_cap = 0;
    arena_free(w);
    bson_free(w->error_names);
    w->error_names = NULL;
}

void mt_window_reg_unpin(mt_window_reg_t *reg, uint64_t floor)
{
    if (floor > reg->pin_floor)
        reg->pin_floor = floor;
    /* pinned windows are in closing order, and so in pin order */
    while (!h2o_linklist_is_empty(&reg->pinned)) {
        mt_window_t *w = window_of(reg->pinned.next);
        if (w->pin_seq > reg->pin_floor)
            break;
        forget(reg, w);
        reg->npinned--;
    }
}

void mt_window_reg_retire(mt_window_reg_t *reg, mt_window_t *w)
{
    keep_error_names(w); /* before its arena is given back */
    give_back_evidence(reg, w);
    give_back_commands(reg, w);
    mt_window_trim(w);
    mt_window_t **slot = mt_idmap_put(&reg->closed_id, (int64_t)w->id, NULL, NULL);
    if (slot)
        *slot = w;
    h2o_linklist_insert(&reg->recent, &w->link);
    reg->nrecent++;
    if (w->ncmds) {
        h2o_linklist_insert(w->findings ? &reg->held_found : &reg->held_plain, &w->held_link);
        reg->closed_cmds += w->ncmds;
    }
    while (reg->nrecent > reg->rules.keep) {
        mt_window_t *old = window_of(reg->recent.next);
        reg->nrecent--;
        if (old->pin_seq > reg->pin_floor) {
            h2o_linklist_unlink(&old->link);
            h2o_linklist_insert(&reg->pinned, &old->link);
            reg->npinned++;
        } else {
            forget(reg, old);
        }
    }
    while (reg->closed_cmds > reg->rules.closed_cmds_max) {
        h2o_linklist_t *list =
            h2o_linklist_is_empty(&reg->held_plain) ? &reg->held_found : &reg->held_plain;
        drop_commands(reg, held_of(list->next));
    }
}

/* h2o's own takes no const list */
static bool list_empty(const h2o_linklist_t *anchor)
{
    return anchor->next == anchor;
}

mt_window_t *mt_window_reg_newest(const mt_window_reg_t *reg)
{
    if (!list_empty(&reg->recent))
        return window_of(reg->recent.prev);
    if (!list_empty(&reg->pinned))
        return window_of(reg->pinned.prev);
    return NULL;
}

mt_window_t *mt_window_reg_older(const mt_window_reg_t *reg, const mt_window_t *w)
{
    const h2o_linklist_t *prev = w->link.prev;
    if (prev == &reg->pinned)
        return NULL;
    if (prev == &reg->recent)
        return list_empty(&reg->pinned) ? NULL : window_of(reg->pinned.prev);
    return window_of(prev);
}

mt_window_t *mt_window_reg_closed(const mt_window_reg_t *reg, size_t i)
{
    mt_window_t *w = mt_window_reg_newest(reg);
    while (w && i-- > 0)
        w = mt_window_reg_older(reg, w);
    return w;
}

size_t mt_window_reg_closed_count(const mt_window_reg_t *reg)
{
    return reg->nrecent + reg->npinned;
}

mt_window_t *mt_window_reg_find_closed(const mt_window_reg_t *reg, uint64_t id)
{
    mt_window_t **slot = mt_idmap_get(&reg->closed_id, (int64_t)id);
    return slot ? *slot : NULL;
}

/* Rules */

bool mt_window_stale(const mt_window_reg_t *reg, const mt_window_t *w, uint64_t now_ns)
{
    if (now_ns >= w->started_ns && now_ns - w->started_ns >= reg->rules.max_ns)
        return true;
    return w->inflight == 0 && now_ns >= w->last_ns && now_ns - w->last_ns >= reg->rules.gap_ns;
}

void mt_window_close(mt_window_reg_t *reg, mt_window_t *w, uint64_t now_ns)
{
    mt_window_reg_detach(reg, w, now_ns);
    if (reg->rules.on_close)
        reg->rules.on_close(reg->rules.on_close_data, w, now_ns);
    mt_window_reg_retire(reg, w);
}

/* w when it is still current, else NULL after closing it. */
static mt_window_t *fresh(mt_window_reg_t *reg, mt_window_t *w, uint64_t now_ns)
{
    if (w && mt_window_stale(reg, w, now_ns)) {
        mt_window_close(reg, w, now_ns);
        return NULL;
    }
    return w;
}

mt_window_t *mt_window_join(mt_window_reg_t *reg, const mt_window_origin_t *o, const char *comment,
                            uint64_t cursor_win_id, uint64_t keyed_win_id, uint64_t now_ns,
                            int64_t now_ms)
{
    mt_window_t *w;

    if (cursor_win_id && (w = fresh(reg, mt_window_reg_find(reg, cursor_win_id), now_ns)))
        return w;
    if (!comment && keyed_win_id && (w = fresh(reg, mt_window_reg_find(reg, keyed_win_id), now_ns)))
        return w;
    if (comment && strncmp(comment, MT_WINDOW_KEY_PREFIX, sizeof MT_WINDOW_KEY_PREFIX - 1) == 0 &&
        strncmp(comment, MT_WINDOW_IGNORE_PREFIX, sizeof MT_WINDOW_IGNORE_PREFIX - 1) != 0) {
        w = fresh(reg, mt_window_reg_find_key(reg, comment), now_ns);
        if (!w)
            w = mt_window_reg_open(reg, o->conn_id, comment, NULL, now_ns, now_ms, o->client_addr,
                                   o->app_name, o->driver);
        return w;
    }
    if (!fresh(reg, *o->own, now_ns))
        *o->own = mt_window_reg_open(reg, o->conn_id, NULL, o->own, now_ns, now_ms, o->client_addr,
                                     o->app_name, o->driver);
    return *o->own;
}

/* Bytes of a field path kept (a path is data from the wire too), counting
 * the cut. */
static size_t key_len(mt_window_reg_t *reg, const char *key)
{
    bool cut = false;
    size_t n = mt_cmd_name_len(key, MT_CMD_PATH_MAX, &cut);
    if (cut && reg->rules.paths_cut)
        (*reg->rules.paths_cut)++;
    return n;
}

/* Hash of a lookup term's value; an $in list hashes to the sum of its
 * elements' hashes, so that it matches the array it was read from in any
 * order, and a one-element list matches the plain value. */
static uint64_t term_hash(const mt_shape_term_t *t, bool in_list)
{
    const mt_bson_elem_t *v = &t->value;
    mt_bson_iter_t elems;
    mt_bson_elem_t e;
    uint64_t h = 0;

    if (!in_list)
        return mt_bson_value_hash(v->type, v->value, v->value_len);
    if (mt_bson_iter_init(&elems, v->value, v->value_len))
        while (mt_bson_iter_next(&elems, &e) == MT_BSON_ELEM)
            h += mt_bson_value_hash(e.type, e.value, e.value_len);
    return h;
}

static bool is_read(mt_cmd_kind_t k)
{
    return k == MT_CMD_FIND || k == MT_CMD_AGGREGATE || k == MT_CMD_COUNT || k == MT_CMD_DISTINCT;
}

/* With log_values, the first term's value as {"": value}, for the finding
 * to show: only when its strings are valid UTF-8 (the decode step checks
 * the structure of what it does not show, not the text). */
static void keep_value(mt_window_t *w, const mt_bson_elem_t *v, mt_window_lookup_more_t *more)
{
    uint32_t len = 4 + 1 + 1 + v->value_len + 1;
    uint8_t *doc;

    if (!mt_bson_elem_check(v, MT_BSON_MAX_DEPTH, MT_BSON_CHECK_UTF8) ||
        !(doc = arena_alloc(w, len)))
        return;
    mt_wire_put_le32(doc, len);
    doc[4] = v->type;
    doc[5] = '\0'; /* key "" */
    memcpy(doc + 6, v->value, v->value_len);
    doc[len - 1] = '\0';
    more->value_doc = doc;
    more->value_doc_len = len;
}

/* The key paths of a lookup: the newest lookup's when it has the same
 * shape, else copied into the arena (and then the newest). */
static const char *const *lookup_keys(mt_window_reg_t *reg, mt_window_t *w,
                                      const mt_shape_lookup_t *lk, uint64_t shape_hash)
{
    if (w->keys && w->keys_nterms == lk->nterms && w->keys_shape_hash == shape_hash)
        return w->keys;
    const char **keys = arena_alloc(w, lk->nterms * sizeof *keys);
    if (!keys)
        return NULL;
    for (size_t i = 0; i < lk->nterms; i++) {
        const char *key = lk->terms[i].key;
        if (mt_shape_redacts(reg->rules.shape, key))
            keys[i] = mt_window_strdup(w, "?", 0);
        else
            keys[i] = mt_window_strdup(w, key, key_len(reg, key));
        if (!keys[i])
            return NULL;
    }
    w->keys = keys;
    w->keys_nterms = (uint8_t)lk->nterms;
    w->keys_shape_hash = shape_hash;
    return keys;
}

/* Lookups: the terms' key paths and value hashes (and, with log_values,
 * the first value itself); reads: the query hash; writes: one statement? */
static void record_lookup(mt_window_reg_t *reg, mt_window_t *w, const mt_cmd_view_t *cmd,
                          mt_window_cmd_t *wc)
{
    mt_shape_lookup_t lk;

    if (is_read(cmd->kind))
        wc->query_hash = cmd->query_hash;
    wc->single_statement =
        cmd->kind == MT_CMD_FIND_AND_MODIFY || (cmd->statements == 1 && !cmd->partial);
    if (!mt_shape_lookup(cmd, &lk))
        return;
    const char *const *keys = lookup_keys(reg, w, &lk, wc->shape_hash);
    if (!keys)
        return;
    if (lk.nterms > 1 || reg->rules.log_values) {
        mt_window_lookup_more_t *more = arena_alloc(w, sizeof *more);
        if (!more)
            return;
        memset(more, 0, sizeof *more);
        for (size_t i = 1; i < lk.nterms; i++)
            more->hashes[i - 1] = term_hash(&lk.terms[i], lk.in_list);
        if (reg->rules.log_values)
            keep_value(w, &lk.terms[0].value, more);
        wc->more = more;
    }
    wc->keys = keys;
    wc->hash = term_hash(&lk.terms[0], lk.in_list);
    wc->nterms = (uint8_t)lk.nterms;
    wc->in_list = lk.in_list;
    wc->list_len = lk.list_len;
}

/* "db.collection" matches itself, "db.*" every collection of db. */
static bool ns_matches(const char *ns, const char *db, const char *coll)
{
    size_t dblen = strlen(db);

    if (strncmp(ns, db, dblen) != 0 || ns[dblen] != '.')
        return false;
    return strcmp(ns + dblen + 1, "*") == 0 || strcmp(ns + dblen + 1, coll) == 0;
}

static bool ignored(const mt_window_reg_t *reg, const mt_cmd_view_t *cmd)
{
    if (cmd->comment &&
        strncmp(cmd->comment, MT_WINDOW_IGNORE_PREFIX, sizeof MT_WINDOW_IGNORE_PREFIX - 1) == 0)
        return true;
    for (size_t i = 0; cmd->db && i < reg->rules.nignore_ns; i++)
        if (ns_matches(reg->rules.ignore_ns[i], cmd->db, cmd->collection ? cmd->collection : ""))
            return true;
    return false;
}

int mt_window_record(mt_window_reg_t *reg, mt_window_t *w, const mt_cmd_view_t *cmd,
                     const mt_shape_entry_t *entry, uint64_t shape_hash, const char *shape,
                     uint64_t now_ns)
{
    mt_window_cmd_t wc;

    /* check the bound before copying anything into the window's arena */
    if (mt_window_full(w)) {
        w->total_cmds++;
        return -1;
    }
    memset(&wc, 0, sizeof wc);
    wc.kind = cmd->kind;
    wc.start_ns = now_ns;
    wc.shape_hash = shape_hash;
    wc.entry = entry;
    if (!entry || entry->overflow) {
        /* Past the shape bound the registry entry is "<other>": keep the
         * real key in the window so the detector can still group by it. */
        mt_window_names_t *own = arena_alloc(w, sizeof *own);
        if (own) {
            own->db = mt_window_strdup(w, cmd->db ? cmd->db : "", 0);
            own->collection = mt_window_strdup(w, cmd->collection ? cmd->collection : "", 0);
            own->command = mt_window_strdup(w, cmd->name, 0);
            own->shape = mt_window_strdup(w, shape, 0);
        }
        wc.own = own;
        if (!own || !own->db || !own->collection || !own->command || !own->shape) {
            w->total_cmds++;
            return -1;
        }
    }
    wc.ignored = ignored(reg, cmd);
    record_lookup(reg, w, cmd, &wc);
    return mt_window_add_cmd(w, &wc);
}

/* Spare commands arrays no window has kept or taken for a while go back:
 * the busy period they were kept for is over. */
static void spare_cmds_age(mt_window_reg_t *reg, uint64_t now_ns)
{
    if (reg->spare_cmds.uses != reg->spare_cmds_uses || reg->spare_cmds.n == 0) {
        reg->spare_cmds_uses = reg->spare_cmds.uses;
        reg->spare_cmds_idle_ns = now_ns;
    } else if (now_ns >= reg->spare_cmds_idle_ns + MT_WINDOW_POOL_IDLE_NS) {
        mt_spares_release(&reg->spare_cmds);
    }
}

void mt_window_reg_tick(mt_window_reg_t *reg, uint64_t now_ns)
{
    h2o_linklist_t *n = reg->open.next;

    spare_cmds_age(reg, now_ns);

    while (n != &reg->open) {
        h2o_linklist_t *next = n->next;
        if (mt_window_stale(reg, window_of(n), now_ns))
            mt_window_close(reg, window_of(n), now_ns);
        n = next;
    }
}

void mt_window_reg_flush(mt_window_reg_t *reg, uint64_t now_ns)
{
    while (!h2o_linklist_is_empty(&reg->open))
        mt_window_close(reg, window_of(reg->open.next), now_ns);
}
