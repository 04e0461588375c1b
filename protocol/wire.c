/*
 * wire: the 16-byte message header, bounded little-endian readers and the
 * streaming framer that tells the proxy which bytes of a chunk it may forward.
 * Nothing here allocates or keeps state outside the framer the caller owns.
 */
#include "wire.h"

#include <string.h>

mt_wire_status_t mt_wire_header_parse(const uint8_t *buf, size_t len, mt_wire_header_t *out)
{
    if (len < MT_WIRE_HEADER_LEN)
        return MT_WIRE_NEED_MORE;
    out->message_length = (int32_t)mt_wire_le32(buf);
    out->request_id = (int32_t)mt_wire_le32(buf + 4);
    out->response_to = (int32_t)mt_wire_le32(buf + 8);
    out->opcode = (int32_t)mt_wire_le32(buf + 12);
    if (out->message_length < MT_WIRE_HEADER_LEN || out->message_length > MT_WIRE_MAX_MESSAGE)
        return MT_WIRE_ERR;
    return MT_WIRE_OK;
}

const char *mt_wire_opcode_str(int32_t opcode)
{
    switch (opcode) {
    case MT_OP_REPLY:
        return "OP_REPLY";
    case MT_OP_UPDATE:
        return "OP_UPDATE";
    case MT_OP_INSERT:
        return "OP_INSERT";
    case MT_OP_QUERY:
        return "OP_QUERY";
    case MT_OP_GET_MORE:
        return "OP_GET_MORE";
    case MT_OP_DELETE:
        return "OP_DELETE";
    case MT_OP_KILL_CURSORS:
        return "OP_KILL_CURSORS";
    case MT_OP_COMPRESSED:
        return "OP_COMPRESSED";
    case MT_OP_MSG:
        return "OP_MSG";
    default:
        return "OP_UNKNOWN";
    }
}

int mt_wire_rd_i32(const uint8_t **pos, size_t *left, int32_t *out)
{
    if (*left < 4)
        return 0;
    *out = (int32_t)mt_wire_le32(*pos);
    *pos += 4;
    *left -= 4;
    return 1;
}

int mt_wire_rd_u32(const uint8_t **pos, size_t *left, uint32_t *out)
{
    int32_t v;
    if (!mt_wire_rd_i32(pos, left, &v))
        return 0;
    *out = (uint32_t)v;
    return 1;
}

int mt_wire_rd_i64(const uint8_t **pos, size_t *left, int64_t *out)
{
    if (*left < 8)
        return 0;
    *out = (int64_t)((uint64_t)mt_wire_le32(*pos) | (uint64_t)mt_wire_le32(*pos + 4) << 32);
    *pos += 8;
    *left -= 8;
    return 1;
}

int mt_wire_rd_cstring(const uint8_t **pos, size_t *left, const char **out, size_t *out_len)
{
    if (*left == 0)
        return 0;
    const uint8_t *nul = memchr(*pos, 0, *left);
    if (!nul)
        return 0;
    size_t n = (size_t)(nul - *pos);
    *out = (const char *)*pos;
    if (out_len)
        *out_len = n;
    *pos += n + 1;
    *left -= n + 1;
    return 1;
}

/*
 * Framer states, by hdr_have and body_left:
 *
 *   hdr_have < 16                 collecting a header (bytes kept in hdr_bytes)
 *   hdr_have == 16, body_left > 0 inside a body; bytes pass straight through
 *   failed                        an impossible header was seen; stays failed
 */
void mt_wire_framer_init(mt_wire_framer_t *f)
{
    memset(f, 0, sizeof(*f));
}

void mt_wire_framer_step(mt_wire_framer_t *f, const uint8_t *buf, size_t len, mt_frame_step_t *out)
{
    out->flags = 0;
    out->held = 0;
    out->consumed = 0;

    if (f->failed) {
        out->event = MT_FRAME_ERROR;
        return;
    }

    if (f->hdr_have < MT_WIRE_HEADER_LEN) {
        size_t want = MT_WIRE_HEADER_LEN - f->hdr_have;
        size_t n = len < want ? len : want;
        size_t held = f->hdr_have;
        memcpy(f->hdr_bytes + f->hdr_have, buf, n);
        f->hdr_have += n;
        out->consumed = n;
        if (f->hdr_have < MT_WIRE_HEADER_LEN) {
            out->event = MT_FRAME_HEADER_PARTIAL;
            return;
        }
        if (mt_wire_header_parse(f->hdr_bytes, MT_WIRE_HEADER_LEN, &f->hdr) != MT_WIRE_OK) {
            f->failed = 1;
            out->event = MT_FRAME_ERROR;
            return;
        }
        out->event = MT_FRAME_HEADER;
        out->held = held;
        f->body_left = (size_t)f->hdr.message_length - MT_WIRE_HEADER_LEN;
        if (f->body_left == 0) {
            /* A bare 16-byte message: it ends with its header. hdr_bytes
             * stays intact until the next step, so the held bytes can still
             * be forwarded. */
            out->flags |= MT_FRAME_END;
            f->hdr_have = 0;
        }
        return;
    }

    size_t n = len < f->body_left ? len : f->body_left;
    f->body_left -= n;
    out->event = MT_FRAME_BODY;
    out->consumed = n;
    if (f->body_left == 0) {
        out->flags |= MT_FRAME_END;
        f->hdr_have = 0;
    }
}
