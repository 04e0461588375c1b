/*
 * shapes: the registry of query shapes, keyed by (db, collection, command,
 * shape) in a chained hash table. Bounded: past max_shapes entries every new
 * key is counted under one overflow entry whose shape is "<other>". A hit on
 * an existing key does not allocate; entries never move until reset.
 */
#ifndef MT_SHAPES_H
#define MT_SHAPES_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hist.h"

#define MT_SHAPES_OTHER "<other>"

typedef struct mt_shape_entry mt_shape_entry_t;

struct mt_shape_entry {
    mt_shape_entry_t *next; /* hash chain */
    uint64_t hash;          /* mt_shapes_hash() of the key */
    const char *db;         /* the four key parts point into keybuf */
    const char *collection;
    const char *command;
    const char *shape;
    bool overflow; /* the "<other>" entry */

    uint64_t count;  /* commands (a getMore is not a new command) */
    uint64_t errors; /* replies with ok false or writeErrors */
    uint64_t docs_returned;
    uint64_t bytes_in;
    uint64_t bytes_out;
    int64_t first_seen_ms; /* wall clock, ms since the epoch */
    int64_t last_seen_ms;

    uint16_t metric_command; /* label indexes cached for metrics */
    uint16_t metric_ns;

    mt_hist_t latency;
    char keybuf[];
};

typedef struct {
    mt_shape_entry_t **buckets;
    size_t nbuckets; /* power of two */
    size_t count;    /* entries in the table (the overflow entry excluded) */
    size_t max;      /* most entries kept */
    mt_shape_entry_t *other;
} mt_shapes_t;

void mt_shapes_init(mt_shapes_t *reg, size_t max_shapes);
/* Frees every entry (pointers to them become invalid). */
void mt_shapes_clear(mt_shapes_t *reg);

/* Hash of a key; equal keys hash equally. */
uint64_t mt_shapes_hash(const char *db, const char *collection, const char *command,
                        const char *shape);

/* The entry for a key (hash from mt_shapes_hash()), created when new. Past the
 * bound the overflow entry is returned. *created (may be NULL) tells whether
 * a new entry was made. NULL only when out of memory. */
mt_shape_entry_t *mt_shapes_get(mt_shapes_t *reg, uint64_t hash, const char *db,
                                const char *collection, const char *command, const char *shape,
                                bool *created);

/* Entries (overflow entry included) sorted by latency sum, largest first.
 * Returns a bson_malloc'd array of *n pointers (NULL when empty). */
mt_shape_entry_t **mt_shapes_sorted(const mt_shapes_t *reg, size_t *n);

/* Tracked entries, overflow entry included when it exists. */
size_t mt_shapes_count(const mt_shapes_t *reg);

/* Appends the /api/stats JSON object of an entry to doc. */
void mt_shapes_entry_bson(const mt_shape_entry_t *e, bson_t *doc);

#endif
