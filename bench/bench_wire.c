/*
 * bench_wire: header and OP_MSG / OP_QUERY / OP_REPLY framing helpers shared by
 * mt-loadgen and mt-stub-upstream. Bounds are checked against the message
 * length so a misbehaving peer cannot make the tools read past a buffer.
 */
#include "bench_wire.h"

void mt_bw_header_read(const uint8_t *p, mt_bw_header_t *h)
{
    h->length = (int32_t)mt_bw_ld32(p);
    h->request_id = (int32_t)mt_bw_ld32(p + 4);
    h->response_to = (int32_t)mt_bw_ld32(p + 8);
    h->opcode = (int32_t)mt_bw_ld32(p + 12);
}

void mt_bw_header_write(uint8_t *p, const mt_bw_header_t *h)
{
    mt_bw_st32(p, (uint32_t)h->length);
    mt_bw_st32(p + 4, (uint32_t)h->request_id);
    mt_bw_st32(p + 8, (uint32_t)h->response_to);
    mt_bw_st32(p + 12, (uint32_t)h->opcode);
}

int mt_bw_length_ok(int32_t length)
{
    return length >= MT_BW_HEADER_LEN && length <= MT_BW_MAX_MESSAGE;
}

void mt_bw_msg_prefix(uint8_t out[MT_BW_MSG_PREFIX_LEN], size_t doc_len, int32_t request_id,
                      int32_t response_to)
{
    mt_bw_header_t h = {
        .length = (int32_t)(MT_BW_MSG_PREFIX_LEN + doc_len),
        .request_id = request_id,
        .response_to = response_to,
        .opcode = MT_BW_OP_MSG,
    };
    mt_bw_header_write(out, &h);
    mt_bw_st32(out + 16, 0); /* flagBits */
    out[20] = 0;             /* section kind 0: the command body */
}

/* A BSON document at p with at most left bytes: its length or 0. */
static size_t doc_len_at(const uint8_t *p, size_t left)
{
    if (left < 5)
        return 0;
    uint32_t n = mt_bw_ld32(p);
    if (n < 5 || n > left)
        return 0;
    return n;
}

int mt_bw_msg_body(const uint8_t *msg, size_t len, uint32_t *flags, const uint8_t **doc,
                   size_t *doc_len)
{
    if (len < MT_BW_HEADER_LEN + 4)
        return 0;
    uint32_t f = mt_bw_ld32(msg + MT_BW_HEADER_LEN);
    size_t end = len;
    if (f & MT_BW_FLAG_CHECKSUM) {
        if (end < MT_BW_HEADER_LEN + 8)
            return 0;
        end -= 4;
    }
    size_t pos = MT_BW_HEADER_LEN + 4;
    while (pos < end) {
        uint8_t kind = msg[pos++];
        if (kind == 0) {
            size_t n = doc_len_at(msg + pos, end - pos);
            if (n == 0)
                return 0;
            *flags = f;
            *doc = msg + pos;
            *doc_len = n;
            return 1;
        }
        if (kind != 1 || end - pos < 4)
            return 0;
        uint32_t size = mt_bw_ld32(msg + pos); /* kind 1: size covers itself */
        if (size < 4 || size > end - pos)
            return 0;
        pos += size;
    }
    return 0;
}

int mt_bw_query_body(const uint8_t *msg, size_t len, const uint8_t **doc, size_t *doc_len)
{
    size_t pos = MT_BW_HEADER_LEN + 4; /* header, flags */
    if (len < pos)
        return 0;
    const uint8_t *nul = memchr(msg + pos, 0, len - pos);
    if (nul == NULL)
        return 0;
    pos = (size_t)(nul - msg) + 1 + 8; /* fullCollectionName, numberToSkip, numberToReturn */
    if (pos > len)
        return 0;
    size_t n = doc_len_at(msg + pos, len - pos);
    if (n == 0)
        return 0;
    *doc = msg + pos;
    *doc_len = n;
    return 1;
}

int mt_bw_reply_body(const uint8_t *msg, size_t len, const uint8_t **doc, size_t *doc_len)
{
    if (len < MT_BW_REPLY_PREFIX_LEN)
        return 0;
    size_t n = doc_len_at(msg + MT_BW_REPLY_PREFIX_LEN, len - MT_BW_REPLY_PREFIX_LEN);
    if (n == 0)
        return 0;
    *doc = msg + MT_BW_REPLY_PREFIX_LEN;
    *doc_len = n;
    return 1;
}
