/*
 * bench_wire: the little of the MongoDB wire protocol that the benchmark tools
 * share: little-endian loads and stores, the 16-byte header, the prefix of an
 * OP_MSG with one kind-0 section, and reading such a message back in place.
 */
#ifndef MT_BENCH_WIRE_H
#define MT_BENCH_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MT_BW_HEADER_LEN 16
#define MT_BW_MAX_MESSAGE 48000000
/* header + flagBits + the kind byte of the single kind-0 section */
#define MT_BW_MSG_PREFIX_LEN 21
/* header + responseFlags + cursorID + startingFrom + numberReturned */
#define MT_BW_REPLY_PREFIX_LEN 36

#define MT_BW_OP_REPLY 1
#define MT_BW_OP_QUERY 2004
#define MT_BW_OP_MSG 2013

#define MT_BW_FLAG_CHECKSUM 0x1u
#define MT_BW_FLAG_MORE_TO_COME 0x2u

typedef struct {
    int32_t length; /* whole message, header included */
    int32_t request_id;
    int32_t response_to;
    int32_t opcode;
} mt_bw_header_t;

static inline void mt_bw_st32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t mt_bw_ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* p must hold MT_BW_HEADER_LEN bytes. */
void mt_bw_header_read(const uint8_t *p, mt_bw_header_t *h);
void mt_bw_header_write(uint8_t *p, const mt_bw_header_t *h);

/* 1 when a header announces a length mongod would accept. */
int mt_bw_length_ok(int32_t length);

/* Writes the 21-byte prefix of an OP_MSG whose kind-0 section is doc_len bytes. */
void mt_bw_msg_prefix(uint8_t out[MT_BW_MSG_PREFIX_LEN], size_t doc_len, int32_t request_id,
                      int32_t response_to);

/*
 * Finds the kind-0 section of a complete OP_MSG (msg[0..len) includes the
 * header). Returns 1 and sets *flags, *doc, *doc_len, or 0 when the message is
 * not a well-formed OP_MSG. Kind-1 sections are skipped. The document bytes
 * are not validated beyond their length prefix.
 */
int mt_bw_msg_body(const uint8_t *msg, size_t len, uint32_t *flags, const uint8_t **doc,
                   size_t *doc_len);

/*
 * Finds the query document of a complete OP_QUERY. Returns 1 and sets *doc,
 * *doc_len, or 0 when malformed.
 */
int mt_bw_query_body(const uint8_t *msg, size_t len, const uint8_t **doc, size_t *doc_len);

/* Finds the first document of a complete OP_REPLY. Returns 1 when there is one. */
int mt_bw_reply_body(const uint8_t *msg, size_t len, const uint8_t **doc, size_t *doc_len);

#endif
