/*
 * idmap: a small open-addressing hash map from a 64-bit id (a requestID, a
 * cursor id, a window id) to a fixed-size record stored in the table.
 * Bounded: when max_count records are held, putting a new id evicts the
 * oldest one and hands it back so the caller can do its bookkeeping.
 */
#ifndef MT_IDMAP_H
#define MT_IDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t *slots; /* cap slots of slot_size bytes; allocated on first put */
    size_t cap;     /* power of two; at most half full */
    size_t count;
    size_t max_count;
    size_t elem_size;
    size_t slot_size;
    uint64_t next_seq; /* insertion order, to find the oldest record */
} mt_idmap_t;

void mt_idmap_init(mt_idmap_t *m, size_t elem_size, size_t max_count);
void mt_idmap_free(mt_idmap_t *m);
/* Removes every record (keeps the memory). */
void mt_idmap_clear(mt_idmap_t *m);

/* The record of id, or NULL. */
void *mt_idmap_get(const mt_idmap_t *m, int64_t id);

/*
 * The record for id, zeroed when new (an existing record is returned as is).
 * When the map is full the oldest record is removed first and copied to
 * evicted (elem_size bytes, may be NULL) with *did_evict set. NULL only when
 * out of memory. The pointer is valid until the next put or remove.
 */
void *mt_idmap_put(mt_idmap_t *m, int64_t id, void *evicted, bool *did_evict);

/* Removes id, copying its record to out (may be NULL). False when absent. */
bool mt_idmap_remove(mt_idmap_t *m, int64_t id, void *out);

/* Iteration: *pos starts at 0; returns records until NULL, writing the id to
 * *id (may be NULL). The map must not change while iterating. */
void *mt_idmap_next(const mt_idmap_t *m, size_t *pos, int64_t *id);

size_t mt_idmap_count(const mt_idmap_t *m);

#endif
