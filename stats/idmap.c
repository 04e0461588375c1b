/*
 * idmap: linear probing with backward-shift deletion (no tombstones, so
 * lookups stay short however many ids come and go).
 *
 * slot layout:  [ int64 id | uint64 seq | uint8 used | pad ][ record ... ]
 */
#include "idmap.h"

#include <bson/bson.h>
#include <string.h>

#include "hash.h"

typedef struct {
    int64_t id;
    uint64_t seq;
    uint8_t used;
} slot_hdr_t;

#define HDR_SIZE ((sizeof(slot_hdr_t) + 15) & ~(size_t)15)
#define INITIAL_CAP 8

static inline slot_hdr_t *slot_at(const mt_idmap_t *m, size_t i)
{
    return (slot_hdr_t *)(m->slots + i * m->slot_size);
}

static inline void *rec_of(slot_hdr_t *h)
{
    return (uint8_t *)h + HDR_SIZE;
}

static inline size_t home_of(const mt_idmap_t *m, int64_t id)
{
    /* requestIDs are sequential: spread them */
    return (size_t)mt_hash_u64((uint64_t)id) & (m->cap - 1);
}

void mt_idmap_init(mt_idmap_t *m, size_t elem_size, size_t max_count)
{
    memset(m, 0, sizeof *m);
    m->elem_size = elem_size;
    m->slot_size = (HDR_SIZE + elem_size + 15) & ~(size_t)15;
    m->max_count = max_count ? max_count : 1;
}

void mt_idmap_free(mt_idmap_t *m)
{
    bson_free(m->slots);
    m->slots = NULL;
    m->cap = 0;
    m->count = 0;
}

void mt_idmap_clear(mt_idmap_t *m)
{
    if (m->slots)
        memset(m->slots, 0, m->cap * m->slot_size);
    m->count = 0;
}

size_t mt_idmap_count(const mt_idmap_t *m)
{
    return m->count;
}

static slot_hdr_t *find(const mt_idmap_t *m, int64_t id, size_t *at)
{
    if (!m->cap)
        return NULL;
    for (size_t i = home_of(m, id);; i = (i + 1) & (m->cap - 1)) {
        slot_hdr_t *h = slot_at(m, i);
        if (!h->used)
            return NULL;
        if (h->id == id) {
            if (at)
                *at = i;
            return h;
        }
    }
}

void *mt_idmap_get(const mt_idmap_t *m, int64_t id)
{
    slot_hdr_t *h = find(m, id, NULL);
    return h ? rec_of(h) : NULL;
}

static void remove_at(mt_idmap_t *m, size_t i)
{
    size_t mask = m->cap - 1;
    /* Backward shift: pull later members of the probe run into the hole. */
    size_t hole = i;
    for (size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
        slot_hdr_t *h = slot_at(m, j);
        if (!h->used)
            break;
        size_t home = home_of(m, h->id);
        /* Move j into the hole unless its home lies cyclically in (hole, j]. */
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
            memcpy(slot_at(m, hole), h, m->slot_size);
            hole = j;
        }
    }
    memset(slot_at(m, hole), 0, m->slot_size);
    m->count--;
}

bool mt_idmap_remove(mt_idmap_t *m, int64_t id, void *out)
{
    size_t at;
    slot_hdr_t *h = find(m, id, &at);
    if (!h)
        return false;
    if (out)
        memcpy(out, rec_of(h), m->elem_size);
    remove_at(m, at);
    return true;
}

static bool rehash(mt_idmap_t *m, size_t new_cap)
{
    uint8_t *slots = bson_malloc0(new_cap * m->slot_size);
    if (!slots)
        return false;
    uint8_t *old = m->slots;
    size_t old_cap = m->cap;
    m->slots = slots;
    m->cap = new_cap;
    for (size_t i = 0; i < old_cap; i++) {
        slot_hdr_t *h = (slot_hdr_t *)(old + i * m->slot_size);
        if (!h->used)
            continue;
        size_t j = home_of(m, h->id);
        while (slot_at(m, j)->used)
            j = (j + 1) & (new_cap - 1);
        memcpy(slot_at(m, j), h, m->slot_size);
    }
    bson_free(old);
    return true;
}

void *mt_idmap_put(mt_idmap_t *m, int64_t id, void *evicted, bool *did_evict)
{
    if (did_evict)
        *did_evict = false;
    slot_hdr_t *h = find(m, id, NULL);
    if (h)
        return rec_of(h);
    if (m->count >= m->max_count) {
        /* Full: drop the oldest record. A linear scan, but only reached when
         * max_count ids are outstanding, which normal traffic never does. */
        size_t oldest = 0;
        uint64_t best = UINT64_MAX;
        for (size_t i = 0; i < m->cap; i++) {
            slot_hdr_t *s = slot_at(m, i);
            if (s->used && s->seq < best) {
                best = s->seq;
                oldest = i;
            }
        }
        if (evicted)
            memcpy(evicted, rec_of(slot_at(m, oldest)), m->elem_size);
        if (did_evict)
            *did_evict = true;
        remove_at(m, oldest);
    }
    if ((m->count + 1) * 2 > m->cap && !rehash(m, m->cap ? m->cap * 2 : INITIAL_CAP))
        return NULL;
    size_t j = home_of(m, id);
    while (slot_at(m, j)->used)
        j = (j + 1) & (m->cap - 1);
    h = slot_at(m, j);
    memset(h, 0, m->slot_size);
    h->id = id;
    h->seq = m->next_seq++;
    h->used = 1;
    m->count++;
    return rec_of(h);
}

void *mt_idmap_next(const mt_idmap_t *m, size_t *pos, int64_t *id)
{
    while (*pos < m->cap) {
        slot_hdr_t *h = slot_at(m, (*pos)++);
        if (h->used) {
            if (id)
                *id = h->id;
            return rec_of(h);
        }
    }
    return NULL;
}
