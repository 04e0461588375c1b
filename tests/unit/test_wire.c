/*
 * wire: header parsing, the bounded readers, and the streaming framer fed
 * every way a stream can arrive (split anywhere, byte by byte, coalesced)
 * and with impossible headers that must never reach the other side.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "proto_test_util.h"
#include "wire.h"

/* clang-format off */


/* OP_MSG {ok: 1.0}, requestID 2, responseTo 1 */
static const uint8_t ok_reply_op_msg[] = {
    0x26, 0x00, 0x00, 0x00,  0x02, 0x00, 0x00, 0x00,  0x01, 0x00, 0x00, 0x00,  0xdd, 0x07, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00,                                   /* flagBits */
    0x00,                                                     /* section kind 0 */
    0x11, 0x00, 0x00, 0x00,                                   /* document length 17 */
    0x01, 'o', 'k', 0x00,  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0, 0x3f,  /* ok: double 1.0 */
    0x00,
};

/* Headers whose length is impossible: 8, 60,000,000 and -1. */
static const uint8_t header_length_8[] =        {0x08, 0x00, 0x00, 0x00, 3, 0, 0, 0, 0, 0, 0, 0, 0xdd, 0x07, 0, 0};
static const uint8_t header_length_60m[] =      {0x00, 0x87, 0x93, 0x03, 3, 0, 0, 0, 0, 0, 0, 0, 0xdd, 0x07, 0, 0};
static const uint8_t header_length_negative[] = {0xff, 0xff, 0xff, 0xff, 3, 0, 0, 0, 0, 0, 0, 0, 0xdd, 0x07, 0, 0};

/* A bare message: header only, length 16, unknown opcode 9999 */
static const uint8_t bare_header_message[] =    {0x10, 0x00, 0x00, 0x00, 4, 0, 0, 0, 0, 0, 0, 0, 0x0f, 0x27, 0, 0};

/* clang-format on */

/* ---- header and readers ------------------------------------------------- */

Test(wire, header_parse_reads_all_fields)
{
    mt_wire_header_t h;
    cr_assert_eq(mt_wire_header_parse(ok_reply_op_msg, sizeof(ok_reply_op_msg), &h), MT_WIRE_OK);
    cr_assert_eq(h.message_length, 38);
    cr_assert_eq(h.request_id, 2);
    cr_assert_eq(h.response_to, 1);
    cr_assert_eq(h.opcode, MT_OP_MSG);
}

Test(wire, header_parse_needs_sixteen_bytes)
{
    mt_wire_header_t h;
    for (size_t n = 0; n < 16; n++)
        cr_assert_eq(mt_wire_header_parse(ping_op_msg, n, &h), MT_WIRE_NEED_MORE, "len %zu", n);
}

Test(wire, header_parse_rejects_impossible_lengths)
{
    mt_wire_header_t h;
    cr_assert_eq(mt_wire_header_parse(header_length_8, 16, &h), MT_WIRE_ERR);
    cr_assert_eq(mt_wire_header_parse(header_length_60m, 16, &h), MT_WIRE_ERR);
    cr_assert_eq(h.message_length, 60000000);
    cr_assert_eq(mt_wire_header_parse(header_length_negative, 16, &h), MT_WIRE_ERR);
    cr_assert_eq(mt_wire_header_parse(bare_header_message, 16, &h), MT_WIRE_OK);

    uint8_t b[16] = {0};
    int32_t limits[][2] = {
        {15, MT_WIRE_ERR}, {16, MT_WIRE_OK}, {48000000, MT_WIRE_OK}, {48000001, MT_WIRE_ERR}};
    for (size_t i = 0; i < 4; i++) {
        uint32_t v = (uint32_t)limits[i][0];
        b[0] = (uint8_t)v, b[1] = (uint8_t)(v >> 8), b[2] = (uint8_t)(v >> 16),
        b[3] = (uint8_t)(v >> 24);
        cr_assert_eq(mt_wire_header_parse(b, 16, &h), (mt_wire_status_t)limits[i][1], "length %d",
                     limits[i][0]);
    }
}

Test(wire, opcode_names)
{
    cr_assert_str_eq(mt_wire_opcode_str(MT_OP_MSG), "OP_MSG");
    cr_assert_str_eq(mt_wire_opcode_str(MT_OP_QUERY), "OP_QUERY");
    cr_assert_str_eq(mt_wire_opcode_str(MT_OP_REPLY), "OP_REPLY");
    cr_assert_str_eq(mt_wire_opcode_str(MT_OP_COMPRESSED), "OP_COMPRESSED");
    cr_assert_str_eq(mt_wire_opcode_str(MT_OP_KILL_CURSORS), "OP_KILL_CURSORS");
    cr_assert_str_eq(mt_wire_opcode_str(9999), "OP_UNKNOWN");
}

Test(wire, bounded_readers_fail_on_short_input)
{
    static const uint8_t bytes[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06,
                                    0x07, 0x88, 'a',  'b',  0x00, 'c'};
    const uint8_t *pos = bytes;
    size_t left = sizeof(bytes);
    int32_t i32;
    uint32_t u32;
    int64_t i64;
    const char *s;
    size_t slen;

    cr_assert(mt_wire_rd_i32(&pos, &left, &i32));
    cr_assert_eq(i32, 0x04030201);
    cr_assert_eq(left, 8);
    cr_assert(mt_wire_rd_u32(&pos, &left, &u32));
    cr_assert_eq(u32, 0x88070605u);
    cr_assert(mt_wire_rd_cstring(&pos, &left, &s, &slen));
    cr_assert_str_eq(s, "ab");
    cr_assert_eq(slen, 2);
    cr_assert_eq(left, 1);
    /* "c" has no terminator: nothing is consumed */
    cr_assert_not(mt_wire_rd_cstring(&pos, &left, &s, &slen));
    cr_assert_not(mt_wire_rd_i32(&pos, &left, &i32));
    cr_assert_eq(left, 1);

    pos = bytes;
    left = 7;
    cr_assert_not(mt_wire_rd_i64(&pos, &left, &i64));
    left = 8;
    cr_assert(mt_wire_rd_i64(&pos, &left, &i64));
    cr_assert_eq((uint64_t)i64, 0x8807060504030201ull);
    cr_assert_eq(left, 0);
    cr_assert_not(mt_wire_rd_cstring(&pos, &left, &s, &slen));
}

/* ---- framer ------------------------------------------------------------- */

/* What a proxy would have forwarded, checked step by step. */
typedef struct {
    uint8_t out[1024];
    size_t out_len;
    size_t pending;   /* header bytes consumed but held by the framer */
    size_t starts[8]; /* where each message began in the forwarded stream */
    int headers;
    int ends;
    int errors;
} sink_t;

static void feed(mt_wire_framer_t *f, sink_t *s, const uint8_t *chunk, size_t len)
{
    size_t off = 0;
    while (off < len) {
        mt_frame_step_t st;
        mt_wire_framer_step(f, chunk + off, len - off, &st);
        if (st.event == MT_FRAME_ERROR) {
            s->errors++;
            return;
        }
        cr_assert_gt(st.consumed, 0);
        cr_assert_leq(st.consumed, len - off);
        switch (st.event) {
        case MT_FRAME_HEADER_PARTIAL:
            s->pending += st.consumed;
            cr_assert_eq(f->hdr_have, s->pending);
            cr_assert_lt(s->pending, 16);
            break;
        case MT_FRAME_HEADER:
            cr_assert_eq(st.held, s->pending, "held %zu, pending %zu", st.held, s->pending);
            cr_assert_eq(st.held + st.consumed, 16);
            s->starts[s->headers++] = s->out_len;
            memcpy(s->out + s->out_len, f->hdr_bytes, st.held);
            s->out_len += st.held;
            memcpy(s->out + s->out_len, chunk + off, st.consumed);
            s->out_len += st.consumed;
            s->pending = 0;
            break;
        case MT_FRAME_BODY:
            cr_assert_eq(s->pending, 0);
            memcpy(s->out + s->out_len, chunk + off, st.consumed);
            s->out_len += st.consumed;
            break;
        default:
            cr_assert_fail("unexpected event %d", st.event);
        }
        if (st.flags & MT_FRAME_END)
            s->ends++;
        off += st.consumed;
    }
}

static size_t two_messages(uint8_t *stream)
{
    memcpy(stream, ping_op_msg, sizeof(ping_op_msg));
    memcpy(stream + sizeof(ping_op_msg), ok_reply_op_msg, sizeof(ok_reply_op_msg));
    return sizeof(ping_op_msg) + sizeof(ok_reply_op_msg);
}

static void assert_two_messages_forwarded(const sink_t *s, const uint8_t *stream, size_t len)
{
    cr_assert_eq(s->errors, 0);
    cr_assert_eq(s->headers, 2);
    cr_assert_eq(s->ends, 2);
    cr_assert_eq(s->out_len, len);
    cr_assert_arr_eq(s->out, stream, len);
    cr_assert_eq(s->starts[0], 0);
    cr_assert_eq(s->starts[1], sizeof(ping_op_msg));
    cr_assert_eq(s->pending, 0);
}

Test(wire, framer_stream_coalesced)
{
    uint8_t stream[256];
    size_t len = two_messages(stream);
    mt_wire_framer_t f;
    sink_t s = {0};
    mt_wire_framer_init(&f);
    feed(&f, &s, stream, len);
    assert_two_messages_forwarded(&s, stream, len);
    cr_assert_eq(f.hdr.request_id, 2);
}

Test(wire, framer_stream_one_byte_at_a_time)
{
    uint8_t stream[256];
    size_t len = two_messages(stream);
    mt_wire_framer_t f;
    sink_t s = {0};
    mt_wire_framer_init(&f);
    for (size_t i = 0; i < len; i++)
        feed(&f, &s, stream + i, 1);
    assert_two_messages_forwarded(&s, stream, len);
}

Test(wire, framer_stream_every_split_point)
{
    uint8_t stream[256];
    size_t len = two_messages(stream);
    for (size_t cut = 1; cut < len; cut++) {
        mt_wire_framer_t f;
        sink_t s = {0};
        mt_wire_framer_init(&f);
        feed(&f, &s, stream, cut);
        feed(&f, &s, stream + cut, len - cut);
        assert_two_messages_forwarded(&s, stream, len);
    }
}

Test(wire, framer_stream_every_pair_of_split_points)
{
    uint8_t stream[256];
    size_t len = two_messages(stream);
    for (size_t a = 1; a < len; a++) {
        for (size_t b = a + 1; b < len; b++) {
            mt_wire_framer_t f;
            sink_t s = {0};
            mt_wire_framer_init(&f);
            feed(&f, &s, stream, a);
            feed(&f, &s, stream + a, b - a);
            feed(&f, &s, stream + b, len - b);
            assert_two_messages_forwarded(&s, stream, len);
        }
    }
}

Test(wire, framer_bare_header_message_ends_with_its_header)
{
    mt_wire_framer_t f;
    sink_t s = {0};
    mt_wire_framer_init(&f);
    feed(&f, &s, bare_header_message, sizeof(bare_header_message));
    feed(&f, &s, ping_op_msg, sizeof(ping_op_msg));
    cr_assert_eq(s.headers, 2);
    cr_assert_eq(s.ends, 2);
    cr_assert_eq(s.out_len, 16 + sizeof(ping_op_msg));
    cr_assert_arr_eq(s.out, bare_header_message, 16);
}

/* A good message followed by an impossible header, fed with every split:
 * the good message is forwarded whole, nothing of the bad one ever is, and
 * the framer keeps refusing afterwards. */
static void check_bad_header(const uint8_t *bad)
{
    uint8_t stream[256];
    memcpy(stream, ping_op_msg, sizeof(ping_op_msg));
    memcpy(stream + sizeof(ping_op_msg), bad, 16);
    memcpy(stream + sizeof(ping_op_msg) + 16, ok_reply_op_msg, sizeof(ok_reply_op_msg));
    size_t len = sizeof(ping_op_msg) + 16 + sizeof(ok_reply_op_msg);

    for (size_t cut = 0; cut < len; cut++) {
        mt_wire_framer_t f;
        sink_t s = {0};
        mt_wire_framer_init(&f);
        if (cut)
            feed(&f, &s, stream, cut);
        if (!s.errors)
            feed(&f, &s, stream + cut, len - cut);
        cr_assert_eq(s.errors, 1, "cut %zu", cut);
        cr_assert_eq(s.out_len, sizeof(ping_op_msg), "cut %zu: forwarded %zu", cut, s.out_len);
        cr_assert_arr_eq(s.out, ping_op_msg, sizeof(ping_op_msg));
        cr_assert_eq(s.ends, 1);

        mt_frame_step_t st;
        mt_wire_framer_step(&f, ok_reply_op_msg, sizeof(ok_reply_op_msg), &st);
        cr_assert_eq(st.event, MT_FRAME_ERROR);
        cr_assert_eq(st.consumed, 0);
    }
}

Test(wire, framer_refuses_length_8)
{
    check_bad_header(header_length_8);
}

Test(wire, framer_refuses_length_60_million)
{
    check_bad_header(header_length_60m);
}

Test(wire, framer_refuses_negative_length)
{
    check_bad_header(header_length_negative);
}

Test(wire, framer_large_body_passes_through_without_buffering)
{
    /* A 48,000,000-byte message: header, then body chunks of any size are
     * consumed as they come; the framer never needs more than 16 bytes. */
    uint8_t hdr[16] = {0x00, 0x6c, 0xdc, 0x02, 9, 0, 0, 0, 0, 0, 0, 0, 0xdd, 0x07, 0, 0};
    static uint8_t chunk[65536];
    mt_wire_framer_t f;
    mt_frame_step_t st;
    mt_wire_framer_init(&f);
    mt_wire_framer_step(&f, hdr, 16, &st);
    cr_assert_eq(st.event, MT_FRAME_HEADER);
    cr_assert_eq(f.body_left, 48000000 - 16);
    size_t total = 0;
    int ends = 0;
    while (!ends) {
        mt_wire_framer_step(&f, chunk, sizeof(chunk), &st);
        cr_assert_eq(st.event, MT_FRAME_BODY);
        total += st.consumed;
        ends = (st.flags & MT_FRAME_END) != 0;
    }
    cr_assert_eq(total, 48000000 - 16);
    cr_assert_eq(f.hdr_have, 0);
}
