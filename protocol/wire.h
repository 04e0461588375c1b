/*
 * wire: the 16-byte MongoDB message header and a streaming framer that finds
 * message boundaries in a byte stream without buffering message bodies.
 * Pure: no I/O, no allocation, no globals.
 */
#ifndef MT_WIRE_H
#define MT_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define MT_WIRE_HEADER_LEN 16
#define MT_WIRE_MAX_MESSAGE 48000000

enum mt_wire_opcode {
    MT_OP_REPLY = 1,
    MT_OP_UPDATE = 2001,
    MT_OP_INSERT = 2002,
    MT_OP_QUERY = 2004,
    MT_OP_GET_MORE = 2005,
    MT_OP_DELETE = 2006,
    MT_OP_KILL_CURSORS = 2007,
    MT_OP_COMPRESSED = 2012,
    MT_OP_MSG = 2013,
};

typedef enum {
    MT_WIRE_OK = 0,
    MT_WIRE_NEED_MORE = 1,
    MT_WIRE_ERR = -1,
} mt_wire_status_t;

typedef struct {
    int32_t message_length; /* includes the header itself */
    int32_t request_id;
    int32_t response_to;
    int32_t opcode;
} mt_wire_header_t;

/* Reads a header from buf. NEED_MORE when len < 16, ERR when the length is
 * impossible (< 16 or > MT_WIRE_MAX_MESSAGE). */
mt_wire_status_t mt_wire_header_parse(const uint8_t *buf, size_t len, mt_wire_header_t *out);

const char *mt_wire_opcode_str(int32_t opcode);

/* Little-endian integers at p (the caller has checked the room). */
static inline uint32_t mt_wire_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void mt_wire_put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Bounded little-endian readers: each fails (returns 0) on short input and
 * advances *pos / shrinks *left on success. */
int mt_wire_rd_i32(const uint8_t **pos, size_t *left, int32_t *out);
int mt_wire_rd_u32(const uint8_t **pos, size_t *left, uint32_t *out);
int mt_wire_rd_i64(const uint8_t **pos, size_t *left, int64_t *out);
int mt_wire_rd_cstring(const uint8_t **pos, size_t *left, const char **out, size_t *out_len);

/*
 * Streaming framer. Feed it each chunk as it arrives; every call consumes a
 * prefix of the chunk and reports one event:
 *
 *   HEADER_PARTIAL  the chunk ended inside a header: the consumed bytes are
 *                   kept in framer->hdr_bytes and must not be forwarded yet
 *   HEADER          a header is complete and valid (framer->hdr); the consumed
 *                   bytes (and any held header bytes) may be forwarded
 *   BODY            consumed bytes are body bytes of the current message
 *   ... with MT_FRAME_END set in flags when the message is complete
 *   ERROR           impossible header: nothing of this message may be forwarded
 */
typedef enum {
    MT_FRAME_HEADER_PARTIAL = 1,
    MT_FRAME_HEADER = 2,
    MT_FRAME_BODY = 3,
    MT_FRAME_ERROR = 4,
} mt_frame_event_t;

#define MT_FRAME_END 0x1u /* the current message ended with these bytes */

typedef struct {
    mt_wire_header_t hdr; /* header of the current message */
    uint8_t hdr_bytes[MT_WIRE_HEADER_LEN];
    size_t hdr_have;  /* header bytes seen of the current message */
    size_t body_left; /* body bytes still to come */
    int failed;       /* an impossible header was seen: every later step reports ERROR */
} mt_wire_framer_t;

typedef struct {
    mt_frame_event_t event;
    unsigned flags;  /* MT_FRAME_END */
    size_t consumed; /* bytes of the chunk consumed by this step */
    size_t held;     /* for HEADER: header bytes held from earlier chunks (in hdr_bytes), to forward
                        first */
} mt_frame_step_t;

void mt_wire_framer_init(mt_wire_framer_t *f);

/* One step over buf[0..len). len must be > 0. A HEADER step consumes only
 * header bytes (at most 16); the body follows in BODY steps. After HEADER,
 * forward hdr_bytes[0..held) and then buf[0..consumed) before the next step:
 * the next step may overwrite hdr_bytes. ERROR consumes the header bytes it
 * examined (none of which may be forwarded) and the framer stays failed. */
void mt_wire_framer_step(mt_wire_framer_t *f, const uint8_t *buf, size_t len, mt_frame_step_t *out);

#endif
