/*
 * bufpool: the read buffers and write requests of the forwarding path, kept
 * on free lists so that the common path allocates nothing. A read buffer is
 * shared by reference: the write that forwards it and the accounting step
 * that reads it each hold one.
 */
#ifndef MT_BUFPOOL_H
#define MT_BUFPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "stream.h"
#include "wire.h"

/* One read, forwarded as one write: kept under the largest loopback segment
 * (65,483 bytes with timestamps), which a 64 KiB write overruns by a few
 * bytes that then leave as a segment of their own, a second packet and
 * wake-up for the peer (big4m at one connection: 0.7 -> 1.25x HAProxy). */
#define MT_BUFPOOL_RBUF_SIZE (63u << 10)
#define MT_BUFPOOL_FREE_RBUFS_MAX 64 /* about 4 MiB kept after a burst */
#define MT_BUFPOOL_FREE_WRITES_MAX 1024

typedef struct mt_rbuf {
    uint32_t refs;
    struct mt_rbuf *next_free;
    uint8_t data[MT_BUFPOOL_RBUF_SIZE];
} mt_rbuf_t;

/* A write request owns one reference to its rbuf until its callback (the
 * libuv rule: buffers stay valid until the write completes). */
typedef struct mt_write {
    mt_stream_write_t req;
    void *side; /* the side written to */
    mt_rbuf_t *rbuf;
    uint8_t held[MT_WIRE_HEADER_LEN]; /* header bytes kept from an earlier read */
    struct mt_write *next_free;
} mt_write_t;

typedef struct {
    mt_rbuf_t *free_rbufs;
    size_t nfree_rbufs;
    mt_write_t *free_writes;
    size_t nfree_writes;
} mt_bufpool_t;

/* A buffer with one reference, or NULL when out of memory. */
mt_rbuf_t *mt_bufpool_rbuf(mt_bufpool_t *pool);
void mt_bufpool_rbuf_unref(mt_bufpool_t *pool, mt_rbuf_t *b);
/* The buffer whose data starts at p (libuv hands back only the data). */
static inline mt_rbuf_t *mt_bufpool_rbuf_of(void *p)
{
    return (mt_rbuf_t *)((char *)p - offsetof(mt_rbuf_t, data));
}

mt_write_t *mt_bufpool_write(mt_bufpool_t *pool);
void mt_bufpool_write_put(mt_bufpool_t *pool, mt_write_t *w);

/* Frees what the free lists hold. */
void mt_bufpool_free(mt_bufpool_t *pool);

#endif
