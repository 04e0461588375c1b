/*
 * bufpool: free lists with a cap, so that a burst does not pin its peak.
 */
#include "bufpool.h"

#include <stdlib.h>

mt_rbuf_t *mt_bufpool_rbuf(mt_bufpool_t *pool)
{
    mt_rbuf_t *b = pool->free_rbufs;

    if (b) {
        pool->free_rbufs = b->next_free;
        pool->nfree_rbufs--;
    } else {
        b = malloc(sizeof(*b));
        if (!b)
            return NULL;
    }
    b->refs = 1;
    b->next_free = NULL;
    return b;
}

void mt_bufpool_rbuf_unref(mt_bufpool_t *pool, mt_rbuf_t *b)
{
    if (--b->refs > 0)
        return;
    if (pool->nfree_rbufs < MT_BUFPOOL_FREE_RBUFS_MAX) {
        b->next_free = pool->free_rbufs;
        pool->free_rbufs = b;
        pool->nfree_rbufs++;
    } else {
        free(b);
    }
}

mt_write_t *mt_bufpool_write(mt_bufpool_t *pool)
{
    mt_write_t *w = pool->free_writes;

    if (w) {
        pool->free_writes = w->next_free;
        pool->nfree_writes--;
        return w;
    }
    return malloc(sizeof(*w));
}

void mt_bufpool_write_put(mt_bufpool_t *pool, mt_write_t *w)
{
    if (pool->nfree_writes < MT_BUFPOOL_FREE_WRITES_MAX) {
        w->next_free = pool->free_writes;
        pool->free_writes = w;
        pool->nfree_writes++;
    } else {
        free(w);
    }
}

void mt_bufpool_free(mt_bufpool_t *pool)
{
    while (pool->free_rbufs) {
        mt_rbuf_t *b = pool->free_rbufs;
        pool->free_rbufs = b->next_free;
        free(b);
    }
    while (pool->free_writes) {
        mt_write_t *w = pool->free_writes;
        pool->free_writes = w->next_free;
        free(w);
    }
    pool->nfree_rbufs = pool->nfree_writes = 0;
}
