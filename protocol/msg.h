/*
 * msg: decodes one whole message (header included) into a view over its
 * bytes: OP_MSG sections, legacy OP_QUERY / OP_REPLY, and OP_COMPRESSED
 * (unwrapped into a caller-owned scratch buffer, only as far as a limit and
 * the caller's budget allow). Nothing is copied except decompressed bytes;
 * every pointer in a view points into the message or the scratch buffer and
 * lives as long as they do.
 */
#ifndef MT_MSG_H
#define MT_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

#define MT_MSG_FLAG_CHECKSUM_PRESENT 0x1u
#define MT_MSG_FLAG_MORE_TO_COME 0x2u
#define MT_MSG_FLAG_EXHAUST_ALLOWED 0x10000u

/* OP_QUERY flags and OP_REPLY responseFlags we look at. */
#define MT_MSG_QUERY_FLAG_EXHAUST 0x40
#define MT_MSG_REPLY_FLAG_CURSOR_NOT_FOUND 0x1
#define MT_MSG_REPLY_FLAG_QUERY_FAILURE 0x2

/* Kind-1 sections kept in a view; further ones are validated but not kept. */
#define MT_MSG_MAX_SEQUENCES 4

/* Deepest BSON nesting accepted (a top-level document is depth 0); deeper
 * documents are rejected before libbson's recursive validator sees them.
 * mongod's own default limit is the same. */
#define MT_MSG_MAX_DEPTH 200

typedef enum {
    MT_MSG_OK = 0,
    MT_MSG_ERR_TRUNCATED,  /* a length or offset points past the end */
    MT_MSG_ERR_HEADER,     /* impossible header */
    MT_MSG_ERR_SECTION,    /* unknown section kind or malformed section */
    MT_MSG_ERR_BSON,       /* a document does not validate */
    MT_MSG_ERR_CHECKSUM,   /* CRC-32C mismatch */
    MT_MSG_ERR_COMPRESSOR, /* unknown compressor id */
    MT_MSG_ERR_DECOMPRESS, /* payload does not decompress to the declared size */
    MT_MSG_ERR_TOO_LARGE,  /* declared uncompressed size over the limit */
    MT_MSG_ERR_NESTED,     /* OP_COMPRESSED inside OP_COMPRESSED */
    MT_MSG_ERR_NOMEM,
    MT_MSG_ERR_OPCODE,  /* opcode we do not decode (still forwarded) */
    MT_MSG_ERR_SKIPPED, /* compressed, and not decompressed far enough to read (limit or budget) */
} mt_msg_err_t;

const char *mt_msg_err_str(mt_msg_err_t err);

typedef enum {
    MT_COMPRESSOR_NONE = -1,
    MT_COMPRESSOR_NOOP = 0,
    MT_COMPRESSOR_SNAPPY = 1,
    MT_COMPRESSOR_ZLIB = 2,
    MT_COMPRESSOR_ZSTD = 3,
} mt_compressor_t;

const char *mt_compressor_str(int id);

/* Most bytes of one decompressed message (its header included). A message
 * of this size or less is decompressed whole; of a larger one only the
 * front, as far as whole sections and documents fit (the view is partial),
 * and the rest is never inflated. */
#define MT_MSG_INFLATE_MAX (1u << 20)

/* Decompression budget shared by every connection: the caller owns it and
 * refills `left` once per loop iteration; each message decompresses at most
 * what is left and takes what it used, so compressed traffic cannot make one
 * iteration of the loop long. When it runs out, messages are not
 * decompressed (MT_MSG_ERR_SKIPPED from the command views). */
typedef struct {
    size_t left;
} mt_msg_budget_t;

/* Caller-owned growable buffer for decompressed bytes; reuse it across
 * messages, release with mt_msg_scratch_free(). */
typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
    void *zstd; /* decompression contexts, created on first use */
    void *zlib;
} mt_msg_scratch_t;

void mt_msg_scratch_free(mt_msg_scratch_t *s);

typedef struct {
    const char *identifier; /* NUL-terminated, e.g. "documents" */
    const uint8_t *docs;    /* concatenated BSON documents */
    size_t docs_len;
    uint32_t count; /* number of documents */
    bool partial;   /* the view ends inside the section: docs and count cover its
                     * first documents only */
} mt_msg_sequence_t;

typedef struct {
    mt_wire_header_t hdr; /* outer header as on the wire */
    int32_t opcode;       /* effective opcode (inner one for OP_COMPRESSED) */
    int compressor;       /* mt_compressor_t; NONE when not compressed */
    /* Only a prefix was decoded (mt_msg_parse_prefix) or decompressed (the
     * limit or the budget): the view holds what came before the cut, later
     * sections are missing, the checksum is not checked, and for a
     * decompressed message the body may be missing too. */
    bool partial;
    size_t inflated; /* bytes decompressed for this view */

    /* OP_MSG */
    uint32_t flags;
    bool checksum_present;
    uint32_t checksum;
    const uint8_t *body; /* kind-0 section (OP_MSG), query (OP_QUERY), first document (OP_REPLY) */
    size_t body_len;
    mt_msg_sequence_t seqs[MT_MSG_MAX_SEQUENCES];
    size_t nseqs;

    /* OP_QUERY */
    int32_t query_flags;         /* MT_MSG_QUERY_FLAG_* */
    const char *full_collection; /* "db.$cmd" */
    int32_t number_to_skip;
    int32_t number_to_return;

    /* OP_REPLY */
    int32_t response_flags;
    int64_t cursor_id;
    int32_t starting_from;
    int32_t number_returned;
    const uint8_t *reply_docs; /* all documents of the OP_REPLY */
    size_t reply_docs_len;
} mt_msg_t;

/* Decodes buf[0..len), one whole message including its header. scratch may be
 * NULL when decompression is not wanted (then OP_COMPRESSED yields
 * MT_MSG_ERR_OPCODE). Every BSON document referenced by the view is validated.
 * An OP_COMPRESSED message is decompressed up to MT_MSG_INFLATE_MAX bytes and
 * what budget->left allows (budget may be NULL: no budget), taking what it
 * used from budget->left; past that the view is partial (MT_MSG_OK with
 * out->partial). */
mt_msg_err_t mt_msg_parse_budget(const uint8_t *buf, size_t len, mt_msg_scratch_t *scratch,
                                 mt_msg_budget_t *budget, mt_msg_t *out);

/* mt_msg_parse_budget() without a budget. */
mt_msg_err_t mt_msg_parse(const uint8_t *buf, size_t len, mt_msg_scratch_t *scratch, mt_msg_t *out);

/* Decodes an OP_MSG from its first `have` bytes (a whole message of any
 * opcode is decoded as mt_msg_parse does, without decompression). The
 * sections that fit are in the view, the body must be among them; the view is
 * marked partial and the checksum is not checked. Accounting keeps only the
 * front of a large request: a 47 MB insert needs its command document, not
 * its documents. */
mt_msg_err_t mt_msg_parse_prefix(const uint8_t *buf, size_t have, mt_msg_t *out);

/* Checks one BSON document at doc[0..avail): its length prefix fits, its
 * structure is sound (everything bson_validate() checks), nesting is at most
 * MT_MSG_MAX_DEPTH, keys and string values are valid UTF-8. Sets *doc_len to
 * the document's length. One pass, no allocation, no recursion. */
mt_msg_err_t mt_msg_validate_bson(const uint8_t *doc, size_t avail, uint32_t *doc_len);

/* CRC-32C (Castagnoli) as used by OP_MSG checksums. */
uint32_t mt_msg_crc32c(const uint8_t *buf, size_t len);

/* Continues a CRC-32C: mt_msg_crc32c(ab) == mt_msg_crc32c_update(mt_msg_crc32c(a), b). */
uint32_t mt_msg_crc32c_update(uint32_t crc, const uint8_t *buf, size_t len);

/* Compression used by tests, fuzz seeds and the benchmark: compresses src
 * with the given compressor into *out (malloc'd, caller frees). 0 on success. */
int mt_msg_compress(int compressor, const uint8_t *src, size_t len, uint8_t **out, size_t *out_len);

/* Wraps one whole message msg[0..len) into an OP_COMPRESSED message with the
 * same requestID/responseTo (malloc'd into *out, caller frees). 0 on success. */
int mt_msg_compress_message(int compressor, const uint8_t *msg, size_t len, uint8_t **out,
                            size_t *out_len);

#endif
