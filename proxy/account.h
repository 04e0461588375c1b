/*
 * account: the proxy's decode step. After a read's bytes are on their way to
 * the peer, they are framed a second time here, whole messages (or, for large
 * requests, their front) decoded with protocol/ into command and reply views
 * and handed to stats/. The session learns from this step alone how many
 * replies it still owes the client, so shutdown never waits on accounting.
 */
#ifndef MT_ACCOUNT_H
#define MT_ACCOUNT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msg.h"
#include "stats.h"
#include "wire.h"

/* Reassembly for accounting across all connections: a message that spans
 * reads is kept only while the fronts being kept fit in this many bytes; one
 * that does not fit when its head arrives is forwarded without being
 * accounted (counted as shed). A request keeps only its front: the header,
 * the command document and what fits of its sequences up to
 * MT_ACCOUNT_PREFIX_MIN. */
#define MT_ACCOUNT_ASSEMBLY_BUDGET (32u << 20)
#define MT_ACCOUNT_PREFIX_MIN (64u << 10)
/* Up to MT_ACCOUNT_SPARES reassembly buffers, as many bytes as the budget in
 * all, are kept for the next messages that span reads and released when a
 * connection closes: a run of large messages then reuses memory already
 * mapped instead of faulting fresh pages in for each (a 4 MiB reply is
 * 1,024 page faults). */
#define MT_ACCOUNT_SPARES 16
#define MT_ACCOUNT_SPARE_BYTES MT_ACCOUNT_ASSEMBLY_BUDGET
/* Decompression buffers above this are released after each message. */
#define MT_ACCOUNT_SCRATCH_KEEP (4u << 20)
/* Bytes decompressed for accounting in one loop iteration, over every
 * connection (a few milliseconds of inflating): past it, compressed messages
 * are forwarded as always but counted in decompress_skipped instead of
 * decoded, so no client's compressed traffic can stall the loop. */
#define MT_ACCOUNT_INFLATE_BUDGET (4u << 20)
/* Bytes at the front of every message always kept, even when its
 * reassembly is shed: the header, OP_MSG flagBits and the first section's
 * kind and length; enough to know whether a reply is owed. */
#define MT_ACCOUNT_HEAD_LEN 25

typedef struct mt_account mt_account_t;

/* One direction of one connection. */
typedef struct {
    mt_wire_framer_t framer;
    uint8_t head[MT_ACCOUNT_HEAD_LEN]; /* front of the current message, when it spans reads */
    size_t head_len;
    uint8_t *buf; /* the kept message: head is copied into its front once it is whole */
    size_t len;
    size_t cap;
    size_t keep; /* bytes of the current message kept, head included; the rest is skipped */
    bool assembling;
    uint64_t first_ns; /* when the current message's first byte arrived */
} mt_account_side_t;

/* What a feed saw, for the session's in-flight count. */
typedef struct {
    uint32_t requests_expecting_reply; /* requests after which a reply is owed */
    uint32_t final_replies;            /* replies after which no more follow */
} mt_account_result_t;

mt_account_t *mt_account_new(mt_stats_t *stats);
void mt_account_free(mt_account_t *a);

void mt_account_side_init(mt_account_side_t *side);
/* Releases what the side holds (connection closed). */
void mt_account_side_release(mt_account_t *a, mt_account_side_t *side);

/*
 * Accounts data[0..len), bytes already forwarded from one side: requests when
 * from_client, replies otherwise. conn may be NULL (stats could not track the
 * connection): messages are still decoded for the in-flight count. now_ns is
 * when the bytes arrived. Never fails: what cannot be decoded is counted.
 */
void mt_account_feed(mt_account_t *a, mt_account_side_t *side, mt_stats_conn_t *conn,
                     bool from_client, const uint8_t *data, size_t len, uint64_t now_ns,
                     mt_account_result_t *out);

/* Bytes held for reassembly right now, over every side. */
size_t mt_account_assembly_bytes(const mt_account_t *a);

/* A new loop iteration: the decompression budget is whole again. */
void mt_account_refill(mt_account_t *a);

#endif
