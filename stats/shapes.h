/*
 * shapes: the registry of query shapes, keyed by (db, collection, command,
 * shape id) in a chained hash table, where the shape id is the structural
 * hash the decode step computed (view.h shape_id): a known shape is found
 * without its text, which is rendered once, when the shape is first seen.
 * Bounded: past max_shapes entries every new key is counted under one
 * overflow entry whose shape is "<other>". A hit on an existing key does not
 * allocate; entries never move until reset.
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
    uint64_t shape_id;      /* the shape's structural hash */
    const char *db;         /* names and shape text point into keybuf */
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

/* What a command is accounted under. */
typedef struct {
    const char *db, *collection, *command;
    uint64_t shape_id; /* mt_shape_id() of its shape */
} mt_shapes_key_t;

/* Hash of a key; equal keys hash equally. */
uint64_t mt_shapes_hash(const mt_shapes_key_t *k);

/* The entry for a key (hash from mt_shapes_hash()), or NULL: a lookup that
 * renders and allocates nothing. */
mt_shape_entry_t *mt_shapes_find(const mt_shapes_t *reg, uint64_t hash, const mt_shapes_key_t *k);

/* The entry for a key mt_shapes_find() did not find, created with its shape
 * text; past the bound the overflow entry. *created (may be NULL) tells
 * whether a new entry was made. NULL only when out of memory. */
mt_shape_entry_t *mt_shapes_add(mt_shapes_t *reg, uint64_t hash, const mt_shapes_key_t *k,
                                const char *shape, bool *created);

/* Entries (overflow entry included) sorted by latency sum, largest first.
 * Returns a bson_malloc'd array of *n pointers (NULL when empty). */
mt_shape_entry_t **mt_shapes_sorted(const mt_shapes_t *reg, size_t *n);

/* Tracked entries, overflow entry included when it exists. */
size_t mt_shapes_count(const mt_shapes_t *reg);

/* Appends the /api/stats JSON object of an entry to doc. */
void mt_shapes_entry_bson(const mt_shape_entry_t *e, bson_t *doc);

#endif
