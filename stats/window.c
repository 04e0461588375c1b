/*
 * window: storage for request windows. Commands live in a growing array,
 * strings in a small block arena (pointers into it stay valid), evidence in
 * one byte buffer of concatenated documents plus segments naming the command
 * each run belongs to.
 */
#include "window.h"

#include <string.h>

#include "clock.h"
#include "hash.h"
#include "json.h"

struct mt_window_block {
    mt_window_block_t *next;
    size_t used, cap;
    uint8_t data[];
};

#define BLOCK_SIZE 4096

static void *arena_alloc(mt_window_t *w, size_t len)
{
    mt_window_block_t *b = w->arena;
    /* Keep 8-byte alignment for anything stored. */
    size_t need = (len + 7) & ~(size_t)7;
    if (!b || b->cap - b->used < need) {
        size_t cap = need > BLOCK_SIZE ? need : BLOCK_SIZE;
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
    size_t len = strlen(s);
    if (max && len > max)
        len = max;
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

bool mt_window_full(const mt_window_t *w)
{
    return w->ncmds >= MT_WINDOW_MAX_COMMANDS ||
           (w->budget && w->budget->cmds >= MT_WINDOW_TOTAL_COMMANDS);
}

int mt_window_add_cmd(mt_window_t *w, const mt_window_cmd_t *cmd)
{
    w->total_cmds++;
    if (mt_window_full(w))
        return -1;
    if (w->ncmds == w->cmds_cap) {
        uint32_t cap = w->cmds_cap ? w->cmds_cap * 2 : 16;
        if (cap > MT_WINDOW_MAX_COMMANDS)
            cap = MT_WINDOW_MAX_COMMANDS;
        mt_window_cmd_t *c = bson_realloc(w->cmds, cap * sizeof *c);
        if (!c)
            return -1;
        w->cmds = c;
        w->cmds_cap = cap;
    }
    w->cmds[w->ncmds] = *cmd;
    if (w->budget)
        w->budget->cmds++;
    return (int)w->ncmds++;
}

void mt_window_add_evidence(mt_window_t *w, uint32_t idx, const uint8_t *array, uint32_t len)
{
    bson_t arr;
    bson_iter_t it;
    if (w->closed || idx >= w->ncmds || !array || len < 5)
        return;
    if (!bson_init_static(&arr, array, len) || !bson_iter_init(&it, &arr))
        return;
    uint32_t seg_off = (uint32_t)w->ev_len;
    while (bson_iter_next(&it)) {
        if (w->ev_docs >= MT_WINDOW_EVIDENCE_DOCS)
            break;
        if (!BSON_ITER_HOLDS_DOCUMENT(&it))
            continue;
        uint32_t dlen = 0;
        const uint8_t *doc = NULL;
        bson_iter_document(&it, &dlen, &doc);
        if (!doc || w->ev_len + dlen > MT_WINDOW_EVIDENCE_BYTES ||
            (w->budget && w->budget->ev_bytes + dlen > MT_WINDOW_TOTAL_EVIDENCE))
            break;
        if (w->ev_len + dlen > w->ev_cap) {
            size_t cap = w->ev_cap ? w->ev_cap : 4096;
            while (cap < w->ev_len + dlen)
                cap *= 2;
            if (cap > MT_WINDOW_EVIDENCE_BYTES)
                cap = MT_WINDOW_EVIDENCE_BYTES;
            uint8_t *p = bson_realloc(w->ev, cap);
            if (!p)
                break;
            w->ev = p;
            w->ev_cap = cap;
        }
        memcpy(w->ev + w->ev_len, doc, dlen);
        w->ev_len += dlen;
        w->ev_docs++;
        if (w->budget)
            w->budget->ev_bytes += dlen;
    }
    if (w->ev_len == seg_off)
        return;
    /* Extend the previous segment when it is the same command's. */
    if (w->nsegs && w->segs[w->nsegs - 1].cmd == idx &&
        w->segs[w->nsegs - 1].off + w->segs[w->nsegs - 1].len == seg_off) {
        w->segs[w->nsegs - 1].len += (uint32_t)w->ev_len - seg_off;
        return;
    }
    if (w->nsegs == w->segs_cap) {
        uint32_t cap = w->segs_cap ? w->segs_cap * 2 : 8;
        mt_window_evseg_t *s = bson_realloc(w->segs, cap * sizeof *s);
        if (!s) {
            /* forget the documents we cannot index */
            if (w->budget)
                w->budget->ev_bytes -= w->ev_len - seg_off;
            w->ev_len = seg_off;
            return;
        }
        w->segs = s;
        w->segs_cap = cap;
    }
    w->segs[w->nsegs].cmd = idx;
    w->segs[w->nsegs].off = seg_off;
    w->segs[w->nsegs].len = (uint32_t)w->ev_len - seg_off;
    w->nsegs++;
}

void mt_window_trim(mt_window_t *w)
{
    bson_free(w->ev);
    w->ev = NULL;
    w->ev_len = w->ev_cap = 0;
    bson_free(w->segs);
    w->segs = NULL;
    w->nsegs = w->segs_cap = 0;
    for (uint32_t i = 0; i < w->ncmds; i++) {
        w->cmds[i].value_doc = NULL;
        w->cmds[i].value_doc_len = 0;
    }
    if (w->ncmds > MT_WINDOW_CLOSED_COMMANDS) {
        mt_window_cmd_t *c = bson_realloc(w->cmds, MT_WINDOW_CLOSED_COMMANDS * sizeof *c);
        if (c) {
            w->cmds = c;
            w->ncmds = w->cmds_cap = MT_WINDOW_CLOSED_COMMANDS;
        }
    }
}

uint64_t mt_window_duration_ns(const mt_window_t *w)
{
    return w->last_ns > w->started_ns ? w->last_ns - w->started_ns : 0;
}

static void window_free(mt_window_t *w)
{
    if (!w)
        return;
    mt_window_block_t *b = w->arena;
    while (b) {
        mt_window_block_t *next = b->next;
        bson_free(b);
        b = next;
    }
    bson_free(w->cmds);
    bson_free(w->ev);
    bson_free(w->segs);
    bson_free(w);
}

static void append_key(bson_t *doc, const mt_window_t *w)
{
    if (w->key)
        BSON_APPEND_UTF8(doc, "key", w->key);
    else
        BSON_APPEND_NULL(doc, "key");
}

void mt_window_brief_bson(const mt_window_t *w, bson_t *doc)
{
    char iso[MT_CLOCK_ISO_LEN];
    BSON_APPEND_INT64(doc, "id", (int64_t)w->id);
    append_key(doc, w);
    BSON_APPEND_UTF8(doc, "started_at", mt_clock_iso8601(w->started_ms, iso));
    BSON_APPEND_INT64(doc, "commands", (int64_t)w->total_cmds);
}

void mt_window_bson(const mt_window_t *w, bson_t *doc)
{
    char iso[MT_CLOCK_ISO_LEN];
    bson_t cmds, c;
    BSON_APPEND_INT64(doc, "id", (int64_t)w->id);
    BSON_APPEND_INT64(doc, "connection_id", (int64_t)w->conn_id);
    append_key(doc, w);
    BSON_APPEND_UTF8(doc, "started_at", mt_clock_iso8601(w->started_ms, iso));
    BSON_APPEND_DOUBLE(doc, "duration_ms", mt_json_ms(mt_window_duration_ns(w)));
    BSON_APPEND_INT64(doc, "total_commands", (int64_t)w->total_cmds);
    BSON_APPEND_ARRAY_BEGIN(doc, "commands", &cmds);
    for (uint32_t i = 0; i < w->ncmds; i++) {
        const mt_window_cmd_t *m = &w->cmds[i];
        char k[16];
        const char *key;
        bson_uint32_to_string(i, &key, k, sizeof k);
        BSON_APPEND_DOCUMENT_BEGIN(&cmds, key, &c);
        BSON_APPEND_UTF8(&c, "command", m->command);
        BSON_APPEND_UTF8(&c, "db", m->db);
        BSON_APPEND_UTF8(&c, "collection", m->collection);
        BSON_APPEND_UTF8(&c, "shape", m->shape);
        BSON_APPEND_DOUBLE(&c, "duration_ms", mt_json_ms(m->duration_ns + m->getmore_ns));
        BSON_APPEND_INT64(&c, "docs", (int64_t)m->docs);
        bson_append_document_end(&cmds, &c);
    }
    bson_append_array_end(doc, &cmds);
    BSON_APPEND_INT32(doc, "findings", (int32_t)w->findings);
}

/* Registry */

static uint64_t key_hash(const char *key)
{
    return mt_hash_str(MT_HASH_SEED, key);
}

void mt_window_reg_init(mt_window_reg_t *reg)
{
    memset(reg, 0, sizeof *reg);
    /* The id map is bounded by connections plus keyed windows; the limit is
     * only a backstop. */
    mt_idmap_init(&reg->by_id, sizeof(mt_window_t *), 1u << 22);
    mt_idmap_init(&reg->by_key, sizeof(mt_window_t *), MT_WINDOW_MAX_KEYED);
    reg->next_id = 1;
}

void mt_window_reg_clear(mt_window_reg_t *reg)
{
    mt_window_t *w = reg->open_head;
    while (w) {
        mt_window_t *next = w->next;
        window_free(w);
        w = next;
    }
    for (size_t i = 0; i < MT_WINDOW_CLOSED_KEEP; i++)
        window_free(reg->closed[i]);
    mt_idmap_free(&reg->by_id);
    mt_idmap_free(&reg->by_key);
    uint64_t next_id = reg->next_id;
    mt_window_reg_init(reg);
    /* Ids keep growing across resets so a client never sees one reused. */
    reg->next_id = next_id;
}

mt_window_t *mt_window_reg_open(mt_window_reg_t *reg, uint64_t conn_id, const char *key,
                                void *owner, uint64_t now_ns, int64_t now_ms,
                                const char *client_addr, const char *app_name, const char *driver)
{
    if (key && reg->keyed_open >= MT_WINDOW_MAX_KEYED)
        return NULL;
    mt_window_t *w = bson_malloc0(sizeof *w);
    if (!w)
        return NULL;
    w->id = reg->next_id;
    w->conn_id = conn_id;
    w->owner = owner;
    w->started_ns = w->last_ns = now_ns;
    w->started_ms = now_ms;
    w->budget = &reg->budget;
    bson_strncpy(w->client_addr, client_addr ? client_addr : "", sizeof w->client_addr);
    bson_strncpy(w->app_name, app_name ? app_name : "", sizeof w->app_name);
    bson_strncpy(w->driver, driver ? driver : "", sizeof w->driver);
    if (key) {
        w->key = mt_window_strdup(w, key, MT_WINDOW_KEY_MAX);
        if (!w->key) {
            window_free(w);
            return NULL;
        }
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
    w->next = reg->open_head;
    if (reg->open_head)
        reg->open_head->prev = w;
    reg->open_head = w;
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
    if (w->prev)
        w->prev->next = w->next;
    else
        reg->open_head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
    reg->open_count--;
    w->closed = true;
    w->closed_ns = now_ns;
    w->owner = NULL;
    /* Closed windows are bounded by the closed ring, not the budget. */
    reg->budget.cmds -= w->ncmds;
    reg->budget.ev_bytes -= w->ev_len;
    w->budget = NULL;
}

void mt_window_reg_retire(mt_window_reg_t *reg, mt_window_t *w)
{
    mt_window_trim(w);
    window_free(reg->closed[reg->closed_next]);
    reg->closed[reg->closed_next] = w;
    reg->closed_next = (reg->closed_next + 1) % MT_WINDOW_CLOSED_KEEP;
    if (reg->closed_count < MT_WINDOW_CLOSED_KEEP)
        reg->closed_count++;
}

mt_window_t *mt_window_reg_closed(const mt_window_reg_t *reg, size_t i)
{
    if (i >= reg->closed_count)
        return NULL;
    size_t pos = (reg->closed_next + MT_WINDOW_CLOSED_KEEP - 1 - i) % MT_WINDOW_CLOSED_KEEP;
    return reg->closed[pos];
}
