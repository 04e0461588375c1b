/*
 * spares: buffers kept for reuse instead of freed, within bounds on how many,
 * how large each and how many bytes in all. Used where a run of similar
 * messages or windows would otherwise allocate, and fault in, the same memory
 * again each time (reassembly buffers, window evidence, arena blocks).
 */
#ifndef MT_SPARES_H
#define MT_SPARES_H

#include <stddef.h>
#include <stdint.h>

/* The most any user keeps: the windows' commands arrays, one for each busy
 * connection of a pool. */
#define MT_SPARES_MAX 128

typedef struct {
    struct {
        void *p;
        size_t cap;
    } slot[MT_SPARES_MAX];
    size_t n;
    size_t bytes; /* capacity held in all */
    size_t max_n, max_each, max_bytes;
    void (*free_fn)(void *); /* how the buffers are freed */
    uint64_t uses;           /* buffers kept and taken so far: whether they are still wanted */
} mt_spares_t;

/* max_n is capped at MT_SPARES_MAX; free_fn frees what is not kept. */
void mt_spares_init(mt_spares_t *s, size_t max_n, size_t max_each, size_t max_bytes,
                    void (*free_fn)(void *));

/* Keeps p, cap bytes, when the bounds allow, else frees it. NULL is ignored. */
void mt_spares_put(mt_spares_t *s, void *p, size_t cap);

/* The smallest spare of min_cap to max_cap bytes, the most recently kept of
 * equal ones (its size in *cap), or NULL: a small need does not take the
 * buffer a large one could have used. */
void *mt_spares_take(mt_spares_t *s, size_t min_cap, size_t max_cap, size_t *cap);

/* Frees every spare. */
void mt_spares_release(mt_spares_t *s);

#endif
