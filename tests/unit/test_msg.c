/*
 * msg: decoding captured driver traffic (OP_MSG, legacy OP_QUERY/OP_REPLY,
 * zlib-compressed OP_COMPRESSED), round trips through every compressor, and
 * hostile input: truncation at every length, bad sections, bad checksums,
 * compression bombs, deep nesting, invalid UTF-8, each with its exact error.
 */
#include <zlib.h>
#include <zstd.h>

#include "proto_test_util.h"

/* clang-format off */


/* The same ping with section kind 2 instead of 0 */
static const uint8_t ping_bad_section_kind[] = {
    0x33, 0x00, 0x00, 0x00,  0x01, 0x00, 0x00, 0x00,  0x00, 0x00, 0x00, 0x00,  0xdd, 0x07, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00,
    0x02,                                                     /* section kind 2 */
    0x1e, 0x00, 0x00, 0x00,
    0x10, 'p', 'i', 'n', 'g', 0x00, 0x01, 0x00, 0x00, 0x00,
    0x02, '$', 'd', 'b', 0x00, 0x06, 0x00, 0x00, 0x00,
    'a', 'd', 'm', 'i', 'n', 0x00,
    0x00,
};

/* OP_MSG whose body holds {s: "\xff"}: a string that is not UTF-8 */
static const uint8_t invalid_utf8_op_msg[] = {
    0x23, 0x00, 0x00, 0x00,  0x01, 0x00, 0x00, 0x00,  0x00, 0x00, 0x00, 0x00,  0xdd, 0x07, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00,
    0x00,
    0x0e, 0x00, 0x00, 0x00,                                   /* document length 14 */
    0x02, 's', 0x00, 0x02, 0x00, 0x00, 0x00, 0xff, 0x00,      /* s: string of 2, "\xff" */
    0x00,
};

/* clang-format on */

static uint8_t *dup_bytes(const uint8_t *src, size_t len)
{
    uint8_t *b = malloc(len);
    memcpy(b, src, len);
    return b;
}

/* ---- captured traffic --------------------------------------------------- */

Test(msg, every_fixture_decodes)
{
    char *names[FX_MAX_FILES];
    size_t n = fx_list("", ".bin", names, FX_MAX_FILES);
    mt_msg_scratch_t scratch = {0};
    cr_assert_geq(n, 60, "expected the captured fixtures, found %zu", n);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        uint8_t *buf = fx_read(names[i], &len);
        mt_msg_t m;
        mt_msg_err_t err = mt_msg_parse(buf, len, &scratch, &m);
        cr_assert_eq(err, MT_MSG_OK, "%s: %s", names[i], mt_msg_err_str(err));
        cr_assert_not_null(m.body, "%s has no body", names[i]);
        bson_t body;
        size_t off;
        cr_assert(bson_init_static(&body, m.body, m.body_len));
        cr_assert(bson_validate(&body, BSON_VALIDATE_NONE, &off), "%s: libbson disagrees",
                  names[i]);
        cr_assert(m.opcode == MT_OP_MSG || m.opcode == MT_OP_QUERY || m.opcode == MT_OP_REPLY);
        free(buf);
    }
    mt_msg_scratch_free(&scratch);
    fx_list_free(names, n);
}

Test(msg, legacy_handshake_op_query_and_op_reply)
{
    size_t len, rlen;
    uint8_t *req = fx_request("pymongo_handshake", "ismaster", 0, &len);
    mt_msg_t m;
    cr_assert_eq(mt_msg_parse(req, len, NULL, &m), MT_MSG_OK);
    cr_assert_eq(m.opcode, MT_OP_QUERY);
    cr_assert_eq(m.compressor, MT_COMPRESSOR_NONE);
    cr_assert_str_eq(m.full_collection, "admin.$cmd");
    cr_assert_eq(m.number_to_return, -1);
    cr_assert_eq(m.number_to_skip, 0);
    cr_assert_eq(m.body, req + 16 + 4 + strlen("admin.$cmd") + 1 + 8);

    uint8_t *rep = fx_reply("pymongo_handshake", m.hdr.request_id, &rlen);
    mt_msg_t r;
    cr_assert_eq(mt_msg_parse(rep, rlen, NULL, &r), MT_MSG_OK);
    cr_assert_eq(r.opcode, MT_OP_REPLY);
    cr_assert_eq(r.hdr.response_to, m.hdr.request_id);
    cr_assert_eq(r.number_returned, 1);
    cr_assert_eq(r.cursor_id, 0);
    cr_assert_eq(r.body, rep + 36);
    cr_assert_eq(r.reply_docs_len, rlen - 36);
    free(req);
    free(rep);
}

Test(msg, insert_many_document_sequence)
{
    size_t len;
    uint8_t *req = fx_request("pymongo_insert_many", "insert", 0, &len);
    mt_msg_t m;
    cr_assert_eq(mt_msg_parse(req, len, NULL, &m), MT_MSG_OK);
    cr_assert_eq(m.opcode, MT_OP_MSG);
    cr_assert_eq(m.nseqs, 1);
    cr_assert_str_eq(m.seqs[0].identifier, "documents");
    cr_assert_eq(m.seqs[0].count, 5);
    cr_assert_eq(m.seqs[0].docs + m.seqs[0].docs_len, req + len);
    free(req);

    req = fx_request("node_insert_many", "insert", 0, &len);
    cr_assert_eq(mt_msg_parse(req, len, NULL, &m), MT_MSG_OK);
    cr_assert_eq(m.nseqs, 1);
    cr_assert_eq(m.seqs[0].count, 3);
    free(req);
}

Test(msg, driver_zlib_compressed_messages)
{
    const char *scenarios[] = {"pymongo_zlib", "node_zlib"};
    mt_msg_scratch_t scratch = {0};
    for (size_t i = 0; i < 2; i++) {
        size_t len, rlen;
        uint8_t *req = fx_request(scenarios[i], "find", 0, &len);
        mt_msg_t m;
        cr_assert_eq(mt_msg_parse(req, len, &scratch, &m), MT_MSG_OK);
        cr_assert_eq(m.hdr.opcode, MT_OP_COMPRESSED);
        cr_assert_eq(m.opcode, MT_OP_MSG);
        cr_assert_eq(m.compressor, MT_COMPRESSOR_ZLIB);
        cr_assert(m.body >= scratch.data && m.body < scratch.data + scratch.len,
                  "body lives in scratch");
        cr_assert_eq(scratch.len, 16 + mt_wire_le32(req + 20));

        uint8_t *rep = fx_reply(scenarios[i], m.hdr.request_id, &rlen);
        cr_assert_eq(mt_msg_parse(rep, rlen, &scratch, &m), MT_MSG_OK);
        cr_assert_eq(m.compressor, MT_COMPRESSOR_ZLIB);
        /* without scratch, compressed messages are left alone */
        cr_assert_eq(mt_msg_parse(req, len, NULL, &m), MT_MSG_ERR_OPCODE);
        cr_assert_eq(m.compressor, MT_COMPRESSOR_ZLIB);
        free(req);
        free(rep);
    }
    mt_msg_scratch_free(&scratch);
}

/* ---- compression -------------------------------------------------------- */

Test(msg, every_compressor_round_trips)
{
    size_t len;
    uint8_t *plain = fx_request("pymongo_aggregate", "aggregate", 0, &len);
    mt_msg_t want;
    cr_assert_eq(mt_msg_parse(plain, len, NULL, &want), MT_MSG_OK);
    mt_msg_scratch_t scratch = {0};
    int ids[] = {MT_COMPRESSOR_NOOP, MT_COMPRESSOR_SNAPPY, MT_COMPRESSOR_ZLIB, MT_COMPRESSOR_ZSTD};

    for (size_t i = 0; i < 4; i++) {
        uint8_t *c;
        size_t clen;
        cr_assert_eq(mt_msg_compress_message(ids[i], plain, len, &c, &clen), 0);
        cr_assert_eq(mt_wire_le32(c + 12), MT_OP_COMPRESSED);
        mt_msg_t m;
        mt_msg_err_t err = mt_msg_parse(c, clen, &scratch, &m);
        cr_assert_eq(err, MT_MSG_OK, "%s: %s", mt_compressor_str(ids[i]), mt_msg_err_str(err));
        cr_assert_eq(m.compressor, ids[i]);
        cr_assert_eq(m.opcode, MT_OP_MSG);
        cr_assert_eq(m.hdr.request_id, want.hdr.request_id);
        cr_assert_eq(m.body_len, want.body_len);
        cr_assert_arr_eq(m.body, want.body, want.body_len);
        cr_assert_arr_eq(scratch.data + 16, plain + 16, len - 16);
        free(c);
    }
    mt_msg_scratch_free(&scratch);
    free(plain);
}

Test(msg, compressor_names)
{
    cr_assert_str_eq(mt_compressor_str(MT_COMPRESSOR_NONE), "none");
    cr_assert_str_eq(mt_compressor_str(MT_COMPRESSOR_NOOP), "noop");
    cr_assert_str_eq(mt_compressor_str(MT_COMPRESSOR_SNAPPY), "snappy");
    cr_assert_str_eq(mt_compressor_str(MT_COMPRESSOR_ZLIB), "zlib");
    cr_assert_str_eq(mt_compressor_str(MT_COMPRESSOR_ZSTD), "zstd");
    cr_assert_str_eq(mt_compressor_str(7), "unknown");
    cr_assert_str_eq(mt_msg_err_str(MT_MSG_ERR_NESTED), "nested OP_COMPRESSED");
}

/* OP_COMPRESSED around an arbitrary payload with a declared size. */
static uint8_t *compressed_msg(int32_t opcode, int32_t declared, uint8_t compressor,
                               const uint8_t *payload, size_t plen, size_t *len)
{
    size_t total = 25 + plen;
    uint8_t *b = malloc(total);
    mt_wire_put_le32(b, (uint32_t)total);
    mt_wire_put_le32(b + 4, 5);
    mt_wire_put_le32(b + 8, 0);
    mt_wire_put_le32(b + 12, MT_OP_COMPRESSED);
    mt_wire_put_le32(b + 16, (uint32_t)opcode);
    mt_wire_put_le32(b + 20, (uint32_t)declared);
    b[24] = compressor;
    memcpy(b + 25, payload, plen);
    *len = total;
    return b;
}

Test(msg, compression_bomb_is_refused_without_allocating)
{
    /* a tiny payload that claims to inflate to the 48,000,000-byte limit */
    mt_msg_scratch_t scratch = {0};
    const int ids[] = {MT_COMPRESSOR_NOOP, MT_COMPRESSOR_SNAPPY, MT_COMPRESSOR_ZLIB,
                       MT_COMPRESSOR_ZSTD};
    for (size_t i = 0; i < 4; i++) {
        uint8_t zeros[64] = {0};
        uint8_t *payload;
        size_t plen, len;
        cr_assert_eq(mt_msg_compress(ids[i], zeros, sizeof(zeros), &payload, &plen), 0);
        uint8_t *b = compressed_msg(MT_OP_MSG, 48000000, (uint8_t)ids[i], payload, plen, &len);
        mt_msg_t m;
        cr_assert_eq(mt_msg_parse(b, len, &scratch, &m), MT_MSG_ERR_DECOMPRESS, "%s",
                     mt_compressor_str(ids[i]));
        cr_assert_eq(scratch.cap, 0, "%s grew scratch to %zu", mt_compressor_str(ids[i]),
                     scratch.cap);
        free(b);

        b = compressed_msg(MT_OP_MSG, 48000001, (uint8_t)ids[i], payload, plen, &len);
        cr_assert_eq(mt_msg_parse(b, len, &scratch, &m), MT_MSG_ERR_TOO_LARGE);
        free(b);
        b = compressed_msg(MT_OP_MSG, -1, (uint8_t)ids[i], payload, plen, &len);
        cr_assert_eq(mt_msg_parse(b, len, &scratch, &m), MT_MSG_ERR_TOO_LARGE);
        free(b);
        free(payload);
    }
    mt_msg_scratch_free(&scratch);
}

Test(msg, decompressed_size_must_match_exactly)
{
    mt_msg_scratch_t scratch = {0};
    const int ids[] = {MT_COMPRESSOR_NOOP, MT_COMPRESSOR_SNAPPY, MT_COMPRESSOR_ZLIB,
                       MT_COMPRESSOR_ZSTD};
    const uint8_t *inner = ping_op_msg + 16;
    int32_t inner_len = (int32_t)sizeof(ping_op_msg) - 16;
    for (size_t i = 0; i < 4; i++) {
        uint8_t *payload;
        size_t plen, len;
        mt_msg_t m;
        cr_assert_eq(mt_msg_compress(ids[i], inner, (size_t)inner_len, &payload, &plen), 0);
        for (int32_t d = -1; d <= 1; d++) {
            uint8_t *b =
                compressed_msg(MT_OP_MSG, inner_len + d, (uint8_t)ids[i], payload, plen, &len);
            mt_msg_err_t want = d == 0 ? MT_MSG_OK : MT_MSG_ERR_DECOMPRESS;
            cr_assert_eq(mt_msg_parse(b, len, &scratch, &m), want, "%s declared %+d",
                         mt_compressor_str(ids[i]), d);
            free(b);
        }
        /* a corrupted payload */
        for (size_t k = 0; k < plen; k++)
            payload[k] ^= 0x5a;
        uint8_t *b = compressed_msg(MT_OP_MSG, inner_len, (uint8_t)ids[i], payload, plen, &len);
        mt_msg_err_t err = mt_msg_parse(b, len, &scratch, &m);
        if (ids[i] == MT_COMPRESSOR_NOOP)
            cr_assert_eq(err, MT_MSG_ERR_SECTION); /* noop: the garbage arrives as is */
        else
            cr_assert_eq(err, MT_MSG_ERR_DECOMPRESS, "%s: %s", mt_compressor_str(ids[i]),
                         mt_msg_err_str(err));
        free(b);
        free(payload);
    }
    mt_msg_scratch_free(&scratch);
}

Test(msg, compressed_header_errors)
{
    mt_msg_scratch_t scratch = {0};
    uint8_t payload[4] = {1, 2, 3, 4};
    size_t len;
    mt_msg_t m;

    uint8_t *b = compressed_msg(MT_OP_COMPRESSED, 4, MT_COMPRESSOR_NOOP, payload, 4, &len);
    cr_assert_eq(mt_msg_parse(b, len, &scratch, &m), MT_MSG_ERR_NESTED);
    free(b);
    b = compressed_msg(MT_OP_MSG, 4, 4, payload, 4, &len);
    cr_assert_eq(mt_msg_parse(b, len, &scratch, &m), MT_MSG_ERR_COMPRESSOR);
    free(b);
    b = compressed_msg(MT_OP_INSERT, 4, MT_COMPRESSOR_NOOP, payload, 4, &len);
    cr_assert_eq(mt_msg_parse(b, len, &scratch, &m), MT_MSG_ERR_OPCODE);
    cr_assert_eq(m.opcode, MT_OP_INSERT);
    free(b);
    /* cut inside originalOpcode / uncompressedSize / compressorId */
    b = compressed_msg(MT_OP_MSG, 4, MT_COMPRESSOR_NOOP, payload, 4, &len);
    for (size_t cut = 16; cut < 25; cut++) {
        mt_wire_put_le32(b, (uint32_t)cut);
        cr_assert_eq(mt_msg_parse(b, cut, &scratch, &m), MT_MSG_ERR_TRUNCATED, "cut %zu", cut);
    }
    free(b);
    mt_msg_scratch_free(&scratch);
}

/* ---- checksums ---------------------------------------------------------- */

Test(msg, crc32c_known_vectors)
{
    cr_assert_eq(mt_msg_crc32c((const uint8_t *)"123456789", 9), 0xe3069283u);
    cr_assert_eq(mt_msg_crc32c((const uint8_t *)"", 0), 0);
    uint8_t zeros[32] = {0};
    cr_assert_eq(mt_msg_crc32c(zeros, 32), 0x8a9136aau);
    uint32_t part = mt_msg_crc32c((const uint8_t *)"1234", 4);
    cr_assert_eq(mt_msg_crc32c_update(part, (const uint8_t *)"56789", 5), 0xe3069283u);
}

/* ping with checksumPresent and its CRC-32C appended */
static uint8_t *ping_with_checksum(size_t *len)
{
    *len = sizeof(ping_op_msg) + 4;
    uint8_t *b = malloc(*len);
    memcpy(b, ping_op_msg, sizeof(ping_op_msg));
    mt_wire_put_le32(b, (uint32_t)*len);
    mt_wire_put_le32(b + 16, MT_MSG_FLAG_CHECKSUM_PRESENT);
    mt_wire_put_le32(b + sizeof(ping_op_msg), mt_msg_crc32c(b, sizeof(ping_op_msg)));
    return b;
}

Test(msg, checksum_present_and_valid)
{
    size_t len;
    uint8_t *b = ping_with_checksum(&len);
    mt_msg_t m;
    cr_assert_eq(mt_msg_parse(b, len, NULL, &m), MT_MSG_OK);
    cr_assert(m.checksum_present);
    cr_assert_eq(m.checksum, mt_msg_crc32c(b, len - 4));
    cr_assert_eq(m.body_len, 30);
    free(b);
}

Test(msg, checksum_mismatch)
{
    size_t len;
    uint8_t *b = ping_with_checksum(&len);
    mt_msg_t m;
    b[len - 1] ^= 0x01;
    cr_assert_eq(mt_msg_parse(b, len, NULL, &m), MT_MSG_ERR_CHECKSUM);
    b[len - 1] ^= 0x01;
    b[30] ^= 0x02; /* a body byte */
    cr_assert_eq(mt_msg_parse(b, len, NULL, &m), MT_MSG_ERR_CHECKSUM);
    free(b);
}

Test(msg, checksum_inside_compressed_message)
{
    size_t len, clen;
    uint8_t *b = ping_with_checksum(&len);
    uint8_t *c;
    mt_msg_scratch_t scratch = {0};
    mt_msg_t m;
    cr_assert_eq(mt_msg_compress_message(MT_COMPRESSOR_SNAPPY, b, len, &c, &clen), 0);
    cr_assert_eq(mt_msg_parse(c, clen, &scratch, &m), MT_MSG_OK);
    cr_assert(m.checksum_present);
    free(c);
    b[len - 2] ^= 0x10;
    cr_assert_eq(mt_msg_compress_message(MT_COMPRESSOR_SNAPPY, b, len, &c, &clen), 0);
    cr_assert_eq(mt_msg_parse(c, clen, &scratch, &m), MT_MSG_ERR_CHECKSUM);
    free(c);
    free(b);
    mt_msg_scratch_free(&scratch);
}

/* ---- exhaust ------------------------------------------------------------ */

Test(msg, exhaust_flags)
{
    size_t len;
    uint8_t *b =
        fx_op_msg_json("{\"hello\": 1, \"topologyVersion\": {\"processId\": {\"$oid\": "
                       "\"650000000000000000000000\"}, \"counter\": {\"$numberLong\": \"0\"}}, "
                       "\"maxAwaitTimeMS\": 10000, \"$db\": \"admin\"}",
                       MT_MSG_FLAG_EXHAUST_ALLOWED, &len);
    mt_msg_t m;
    cr_assert_eq(mt_msg_parse(b, len, NULL, &m), MT_MSG_OK);
    cr_assert_eq(m.flags, MT_MSG_FLAG_EXHAUST_ALLOWED);
    free(b);
    b = fx_op_msg_json("{\"isWritablePrimary\": true, \"ok\": 1.0}", MT_MSG_FLAG_MORE_TO_COME,
                       &len);
    cr_assert_eq(mt_msg_parse(b, len, NULL, &m), MT_MSG_OK);
    cr_assert_eq(m.flags & MT_MSG_FLAG_MORE_TO_COME, MT_MSG_FLAG_MORE_TO_COME);
    free(b);
}

/* ---- malformed input ---------------------------------------------------- */

Test(msg, truncated_at_every_length)
{
    const char *scenarios[][2] = {{"pymongo_find", "find"},
                                  {"pymongo_insert_many", "insert"},
                                  {"pymongo_handshake", "ismaster"}};
    for (size_t s = 0; s < 3; s++) {
        size_t len;
        uint8_t *full = fx_request(scenarios[s][0], scenarios[s][1], 0, &len);
        mt_msg_t m;
        for (size_t cut = 0; cut < len; cut++) {
            /* the header still claims the full length */
            cr_assert_eq(mt_msg_parse(full, cut, NULL, &m), MT_MSG_ERR_TRUNCATED, "cut %zu", cut);
        }
        uint8_t *b = dup_bytes(full, len);
        for (size_t cut = 16; cut < len; cut++) {
            /* the header agrees with the cut: the inside is short */
            mt_wire_put_le32(b, (uint32_t)cut);
            mt_msg_err_t err = mt_msg_parse(b, cut, NULL, &m);
            mt_msg_err_t want = MT_MSG_ERR_TRUNCATED;
            if (m.opcode == MT_OP_MSG && cut == 20)
                want = MT_MSG_ERR_SECTION; /* flags only: no body section */
            if (m.opcode == MT_OP_MSG && m.nseqs == 0 && m.body && cut == 21 + m.body_len)
                want = MT_MSG_OK; /* the cut falls between two sections */
            cr_assert_eq(err, want, "%s cut %zu: %s", scenarios[s][1], cut, mt_msg_err_str(err));
        }
        free(b);
        free(full);
    }
}

Test(msg, truncated_op_reply_counts_documents)
{
    size_t len;
    uint8_t *req = fx_request("node_find", "ismaster", 0, &len);
    mt_msg_t m;
    cr_assert_eq(mt_msg_parse(req, len, NULL, &m), MT_MSG_OK);
    size_t rlen;
    uint8_t *rep = fx_reply("node_find", m.hdr.request_id, &rlen);
    for (size_t cut = 16; cut < rlen; cut++) {
        mt_wire_put_le32(rep, (uint32_t)cut);
        mt_msg_err_t want = cut == 36 ? MT_MSG_ERR_SECTION : MT_MSG_ERR_TRUNCATED;
        cr_assert_eq(mt_msg_parse(rep, cut, NULL, &m), want, "cut %zu", cut);
    }
    free(req);
    free(rep);
}

Test(msg, header_errors)
{
    uint8_t b[sizeof(ping_op_msg) + 8];
    mt_msg_t m;
    memcpy(b, ping_op_msg, sizeof(ping_op_msg));
    mt_wire_put_le32(b, 48000001);
    cr_assert_eq(mt_msg_parse(b, sizeof(ping_op_msg), NULL, &m), MT_MSG_ERR_HEADER);
    mt_wire_put_le32(b, 12);
    cr_assert_eq(mt_msg_parse(b, sizeof(ping_op_msg), NULL, &m), MT_MSG_ERR_HEADER);
    /* trailing bytes beyond the declared length */
    mt_wire_put_le32(b, sizeof(ping_op_msg));
    cr_assert_eq(mt_msg_parse(b, sizeof(b), NULL, &m), MT_MSG_ERR_HEADER);
    cr_assert_eq(mt_msg_parse(b, 15, NULL, &m), MT_MSG_ERR_TRUNCATED);
    /* an opcode that is forwarded but not decoded */
    mt_wire_put_le32(b + 12, MT_OP_INSERT);
    cr_assert_eq(mt_msg_parse(b, sizeof(ping_op_msg), NULL, &m), MT_MSG_ERR_OPCODE);
    cr_assert_eq(m.opcode, MT_OP_INSERT);
}

Test(msg, section_errors)
{
    mt_msg_t m;
    cr_assert_eq(mt_msg_parse(ping_bad_section_kind, sizeof(ping_bad_section_kind), NULL, &m),
                 MT_MSG_ERR_SECTION);

    /* two kind-0 sections */
    bson_t *body = fx_json("{\"ping\": 1}");
    size_t len;
    uint8_t *one = fx_op_msg(0, 1, 0, body, NULL, NULL, 0, &len);
    size_t len2 = len + 1 + body->len;
    uint8_t *two = malloc(len2);
    memcpy(two, one, len);
    two[len] = 0;
    memcpy(two + len + 1, bson_get_data(body), body->len);
    mt_wire_put_le32(two, (uint32_t)len2);
    cr_assert_eq(mt_msg_parse(two, len2, NULL, &m), MT_MSG_ERR_SECTION);

    /* a kind-1 section whose size points past the message */
    bson_t *doc = fx_json("{\"a\": 1}");
    uint8_t *seq = fx_op_msg(0, 1, 0, body, "documents", &doc, 1, &len);
    cr_assert_eq(mt_msg_parse(seq, len, NULL, &m), MT_MSG_OK);
    size_t sec = 16 + 4 + 1 + body->len + 1;
    mt_wire_put_le32(seq + sec, mt_wire_le32(seq + sec) + 1);
    cr_assert_eq(mt_msg_parse(seq, len, NULL, &m), MT_MSG_ERR_TRUNCATED);
    /* ... and one whose size ends inside its document */
    mt_wire_put_le32(seq + sec, mt_wire_le32(seq + sec) - 2);
    cr_assert_eq(mt_msg_parse(seq, len, NULL, &m), MT_MSG_ERR_SECTION);
    /* ... and one without a terminated identifier */
    mt_wire_put_le32(seq + sec, 4);
    cr_assert_eq(mt_msg_parse(seq, len, NULL, &m), MT_MSG_ERR_SECTION);

    /* only a kind-1 section, no body */
    size_t l3 = 16 + 4 + 1 + 4 + 2 + doc->len;
    uint8_t *nobody = calloc(1, l3);
    mt_wire_put_le32(nobody, (uint32_t)l3);
    mt_wire_put_le32(nobody + 12, MT_OP_MSG);
    nobody[20] = 1;
    mt_wire_put_le32(nobody + 21, (uint32_t)(4 + 2 + doc->len));
    nobody[25] = 'x';
    memcpy(nobody + 27, bson_get_data(doc), doc->len);
    cr_assert_eq(mt_msg_parse(nobody, l3, NULL, &m), MT_MSG_ERR_SECTION);

    free(nobody);
    free(seq);
    free(one);
    free(two);
    bson_destroy(body);
    bson_destroy(doc);
}

Test(msg, garbage_never_parses)
{
    /* a valid header followed by pseudo-random bytes, for every opcode we decode */
    uint32_t x = 12345;
    uint8_t b[200];
    int32_t ops[] = {MT_OP_MSG, MT_OP_QUERY, MT_OP_REPLY, MT_OP_COMPRESSED};
    mt_msg_scratch_t scratch = {0};
    for (int round = 0; round < 2000; round++) {
        for (size_t i = 16; i < sizeof(b); i++) {
            x = x * 1103515245u + 12345u;
            b[i] = (uint8_t)(x >> 16);
        }
        mt_wire_put_le32(b, sizeof(b));
        mt_wire_put_le32(b + 12, (uint32_t)ops[round % 4]);
        if (ops[round % 4] == MT_OP_MSG)
            b[16] = b[17] = b[18] = b[19] = 0;
        mt_msg_t m;
        mt_msg_err_t err = mt_msg_parse(b, sizeof(b), &scratch, &m);
        cr_assert_neq(err, MT_MSG_OK, "round %d", round);
    }
    mt_msg_scratch_free(&scratch);
}

/* A document nested depth levels deep: {"": {"": ... {} }} */
static uint8_t *nested_doc(size_t depth, size_t *len)
{
    size_t n = 5 + depth * 7, off = 0;
    uint8_t *b = calloc(1, n);
    for (size_t i = 0; i <= depth; i++) {
        mt_wire_put_le32(b + off, (uint32_t)(5 + (depth - i) * 7));
        off += 4;
        if (i < depth) {
            b[off++] = i % 2 ? 0x04 : 0x03; /* documents and arrays alternate */
            b[off++] = 0;
        }
    }
    *len = n;
    return b;
}

Test(msg, deep_nesting_is_refused_without_recursion)
{
    size_t depths[] = {1, 100, MT_MSG_MAX_DEPTH, MT_MSG_MAX_DEPTH + 1, 1000, 100000, 2000000};
    for (size_t i = 0; i < sizeof(depths) / sizeof(depths[0]); i++) {
        size_t dlen;
        uint8_t *doc = nested_doc(depths[i], &dlen);
        uint32_t got;
        mt_msg_err_t want = depths[i] <= MT_MSG_MAX_DEPTH ? MT_MSG_OK : MT_MSG_ERR_BSON;
        cr_assert_eq(mt_msg_validate_bson(doc, dlen, &got), want, "depth %zu", depths[i]);

        /* and the same inside a whole OP_MSG */
        bson_t b;
        cr_assert(bson_init_static(&b, doc, dlen));
        size_t len;
        uint8_t *msg = fx_op_msg(0, 1, 0, &b, NULL, NULL, 0, &len);
        mt_msg_t m;
        cr_assert_eq(mt_msg_parse(msg, len, NULL, &m), want, "depth %zu", depths[i]);
        free(msg);
        free(doc);
    }
}

Test(msg, invalid_utf8_is_refused)
{
    mt_msg_t m;
    cr_assert_eq(mt_msg_parse(invalid_utf8_op_msg, sizeof(invalid_utf8_op_msg), NULL, &m),
                 MT_MSG_ERR_BSON);

    struct {
        const char *s;
        size_t n;
        bool ok;
    } cases[] = {
        {"plain", 5, true},
        {"caf\xc3\xa9", 5, true},
        {"\xe2\x82\xac", 3, true},      /* euro sign */
        {"\xf0\x9f\x98\x80", 4, true},  /* emoji */
        {"nul\0inside", 10, true},      /* BSON strings carry their length */
        {"\xc3", 1, false},             /* cut sequence */
        {"\xc0\xaf", 2, false},         /* overlong */
        {"\xed\xa0\x80", 3, false},     /* surrogate */
        {"\xf4\x90\x80\x80", 4, false}, /* above U+10FFFF */
        {"\x80", 1, false},             /* lone continuation */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bson_t *value = bson_new(), *key = bson_new();
        bson_append_utf8(value, "k", 1, cases[i].s, (int)cases[i].n);
        uint32_t got;
        mt_msg_err_t want = cases[i].ok ? MT_MSG_OK : MT_MSG_ERR_BSON;
        cr_assert_eq(mt_msg_validate_bson(bson_get_data(value), value->len, &got), want,
                     "value case %zu", i);
        if (memchr(cases[i].s, 0, cases[i].n) == NULL) {
            char k[16];
            memcpy(k, cases[i].s, cases[i].n);
            k[cases[i].n] = 0;
            bson_append_int32(key, k, (int)cases[i].n, 1);
            cr_assert_eq(mt_msg_validate_bson(bson_get_data(key), key->len, &got), want,
                         "key case %zu", i);
        }
        bson_destroy(value);
        bson_destroy(key);
    }
}

Test(msg, malformed_documents)
{
    uint32_t got;
    /* length 4, wrong terminator, length past the end, element past its document */
    static const uint8_t too_short[] = {4, 0, 0, 0};
    static const uint8_t no_terminator[] = {5, 0, 0, 0, 1};
    static const uint8_t past_end[] = {9, 0, 0, 0, 0};
    static const uint8_t int32_cut[] = {8, 0, 0, 0, 0x10, 'a', 0, 0};
    static const uint8_t unknown_type[] = {9, 0, 0, 0, 0x42, 'a', 0, 0, 0};
    static const uint8_t negative_string[] = {0x0e, 0,    0,    0,    0x02, 'a', 0,
                                              0xff, 0xff, 0xff, 0xff, 'x',  0,   0};
    cr_assert_eq(mt_msg_validate_bson(too_short, sizeof(too_short), &got), MT_MSG_ERR_BSON);
    cr_assert_eq(mt_msg_validate_bson(no_terminator, sizeof(no_terminator), &got), MT_MSG_ERR_BSON);
    cr_assert_eq(mt_msg_validate_bson(past_end, sizeof(past_end), &got), MT_MSG_ERR_TRUNCATED);
    cr_assert_eq(mt_msg_validate_bson(int32_cut, sizeof(int32_cut), &got), MT_MSG_ERR_BSON);
    cr_assert_eq(mt_msg_validate_bson(unknown_type, sizeof(unknown_type), &got), MT_MSG_ERR_BSON);
    cr_assert_eq(mt_msg_validate_bson(negative_string, sizeof(negative_string), &got),
                 MT_MSG_ERR_BSON);
    cr_assert_eq(mt_msg_validate_bson(too_short, 3, &got), MT_MSG_ERR_TRUNCATED);
    static const uint8_t bool_two[] = {9, 0, 0, 0, 0x08, 'a', 0, 2, 0};
    static const uint8_t old_binary_bad_inner[] = {0x13, 0, 0, 0, 0x05, 'a', 0,   6,   0, 0,
                                                   0,    2, 5, 0, 0,    0,   'x', 'y', 0};
    static const uint8_t old_binary_good_inner[] = {0x13, 0, 0, 0, 0x05, 'a', 0,   6,   0, 0,
                                                    0,    2, 2, 0, 0,    0,   'x', 'y', 0};
    cr_assert_eq(mt_msg_validate_bson(bool_two, sizeof(bool_two), &got), MT_MSG_ERR_BSON);
    cr_assert_eq(mt_msg_validate_bson(old_binary_bad_inner, sizeof(old_binary_bad_inner), &got),
                 MT_MSG_ERR_BSON);
    cr_assert_eq(mt_msg_validate_bson(old_binary_good_inner, sizeof(old_binary_good_inner), &got),
                 MT_MSG_OK);

    /* every BSON type libbson writes is accepted */
    bson_t *all = fx_json(
        "{\"d\": 1.5, \"s\": \"x\", \"o\": {\"a\": [1, 2]}, \"b\": {\"$binary\": {\"base64\": "
        "\"AQI=\", \"subType\": \"00\"}}, \"u\": {\"$undefined\": true}, \"i\": {\"$oid\": "
        "\"650000000000000000000001\"}, \"t\": true, \"dt\": {\"$date\": 0}, \"n\": null, "
        "\"re\": {\"$regularExpression\": {\"pattern\": \"^a\", \"options\": \"i\"}}, "
        "\"p\": {\"$dbPointer\": {\"$ref\": \"c\", \"$id\": {\"$oid\": "
        "\"650000000000000000000002\"}}}, \"c\": {\"$code\": \"f()\"}, \"sy\": {\"$symbol\": "
        "\"s\"}, \"cw\": {\"$code\": \"g()\", \"$scope\": {\"x\": {\"y\": 1}}}, \"i32\": 3, "
        "\"ts\": {\"$timestamp\": {\"t\": 1, \"i\": 2}}, \"i64\": {\"$numberLong\": \"9\"}, "
        "\"dec\": {\"$numberDecimal\": \"1.5\"}, \"mn\": {\"$minKey\": 1}, \"mx\": {\"$maxKey\": "
        "1}}");
    cr_assert_eq(mt_msg_validate_bson(bson_get_data(all), all->len, &got), MT_MSG_OK);
    cr_assert_eq(got, all->len);
    /* cut short at every length (with a terminator written at the cut):
     * never accepted where libbson refuses, and mostly refused (a cut that
     * falls on an element boundary still makes a document; libbson 1.23 also
     * accepts a type byte directly before the terminator, which we do not) */
    uint8_t *copy = dup_bytes(bson_get_data(all), all->len);
    int refused = 0;
    for (uint32_t cut = 5; cut < all->len; cut++) {
        mt_wire_put_le32(copy, cut);
        uint8_t saved = copy[cut - 1];
        copy[cut - 1] = 0;
        bson_t b;
        size_t off;
        bool libbson_ok =
            bson_init_static(&b, copy, cut) && bson_validate(&b, BSON_VALIDATE_NONE, &off);
        mt_msg_err_t err = mt_msg_validate_bson(copy, cut, &got);
        cr_assert(err != MT_MSG_OK || libbson_ok, "cut %u", cut);
        refused += err != MT_MSG_OK;
        copy[cut - 1] = saved;
    }
    cr_assert_gt(refused, (int)all->len / 2);
    free(copy);
    bson_destroy(all);
}

/* ---- bounded decompression ---------------------------------------------- */

/* A run of bytes of a message, or `len` zero bytes when data is NULL. */
typedef struct {
    const uint8_t *data;
    size_t len;
} seg_t;

static void grow_append(uint8_t **buf, size_t *len, size_t *cap, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (*len + n > *cap) {
        while (*len + n > *cap)
            *cap = *cap ? *cap * 2 : 4096;
        *buf = realloc(*buf, *cap);
    }
    memcpy(*buf + *len, p, n);
    *len += n;
}

/* OP_COMPRESSED (zlib or zstd) around the concatenated segments, compressed
 * as a stream so that a 48 MB bomb never exists uncompressed. */
static uint8_t *compressed_stream(int id, int32_t opcode, const seg_t *segs, size_t nsegs,
                                  size_t *len)
{
    static const uint8_t zeros[1 << 16];
    uint8_t chunk[1 << 16];
    uint8_t *out = NULL;
    size_t olen = 0, ocap = 0, total = 0;
    z_stream z = {0};
    ZSTD_CCtx *zc = NULL;

    for (size_t i = 0; i < nsegs; i++)
        total += segs[i].len;
    if (id == MT_COMPRESSOR_ZLIB) {
        cr_assert_eq(deflateInit(&z, 9), Z_OK);
    } else {
        cr_assert_eq(id, MT_COMPRESSOR_ZSTD);
        zc = ZSTD_createCCtx();
        ZSTD_CCtx_setParameter(zc, ZSTD_c_compressionLevel, 3);
        ZSTD_CCtx_setPledgedSrcSize(zc, total);
    }
    for (size_t i = 0; i <= nsegs; i++) {
        size_t left = i < nsegs ? segs[i].len : 0;
        const uint8_t *p = i < nsegs ? segs[i].data : NULL;
        bool last = i == nsegs;
        do {
            size_t take = left < sizeof(zeros) ? left : sizeof(zeros);
            const uint8_t *src = p ? p : zeros;
            if (id == MT_COMPRESSOR_ZLIB) {
                z.next_in = (Bytef *)src;
                z.avail_in = (uInt)take;
                do {
                    z.next_out = chunk;
                    z.avail_out = sizeof(chunk);
                    deflate(&z, last ? Z_FINISH : Z_NO_FLUSH);
                    grow_append(&out, &olen, &ocap, chunk, sizeof(chunk) - z.avail_out);
                } while (z.avail_out == 0 || (last && z.avail_in > 0));
            } else {
                ZSTD_inBuffer in = {src, take, 0};
                size_t rc;
                do {
                    ZSTD_outBuffer o = {chunk, sizeof(chunk), 0};
                    rc = ZSTD_compressStream2(zc, &o, &in, last ? ZSTD_e_end : ZSTD_e_continue);
                    cr_assert(!ZSTD_isError(rc));
                    grow_append(&out, &olen, &ocap, chunk, o.pos);
                } while (in.pos < in.size || (last && rc != 0));
            }
            if (p)
                p += take;
            left -= take;
        } while (left > 0);
    }
    if (id == MT_COMPRESSOR_ZLIB)
        deflateEnd(&z);
    else
        ZSTD_freeCCtx(zc);
    uint8_t *msg = compressed_msg(opcode, (int32_t)total, (uint8_t)id, out, olen, len);
    free(out);
    return msg;
}

/* The insert the limit tests decompress: flags moreToCome, a body, then a
 * sequence of six documents of growing size. */
static uint8_t *sample_insert(size_t *len)
{
    bson_t *body = fx_json("{\"insert\": \"c\", \"$db\": \"d\"}");
    bson_t *docs[6];
    char s[256];
    for (size_t i = 0; i < 6; i++) {
        memset(s, 'x', sizeof(s));
        s[20 + 37 * i] = '\0';
        docs[i] = bson_new();
        BSON_APPEND_INT32(docs[i], "_id", (int32_t)i);
        BSON_APPEND_UTF8(docs[i], "s", s);
    }
    uint8_t *m = fx_op_msg(MT_MSG_FLAG_MORE_TO_COME, 9, 0, body, "documents", docs, 6, len);
    bson_destroy(body);
    for (size_t i = 0; i < 6; i++)
        bson_destroy(docs[i]);
    return m;
}

/* Every budget from nothing to the whole message, and every prefix length:
 * what the view holds is exactly the units (flags, body, identifier,
 * documents) that fit whole, each identical to the plain message's, and the
 * budget pays for what was decompressed. */
Test(msg, every_limit_edge_keeps_whole_units)
{
    size_t len;
    uint8_t *plain = sample_insert(&len);
    mt_msg_t want;
    cr_assert_eq(mt_msg_parse(plain, len, NULL, &want), MT_MSG_OK);
    cr_assert_eq(want.nseqs, 1);
    size_t payload = len - 16;
    size_t body_end = (size_t)(want.body - plain) + want.body_len - 16;
    size_t ident_at = (size_t)((const uint8_t *)want.seqs[0].identifier - plain) - 16;
    size_t sleft = want.seqs[0].docs_len + strlen(want.seqs[0].identifier) + 1;
    size_t ident_end = ident_at + (sleft < 256 ? sleft : 256);
    size_t doc_end[6];
    const uint8_t *d = want.seqs[0].docs;
    for (size_t i = 0; i < 6; i++) {
        d += mt_wire_le32(d);
        doc_end[i] = (size_t)(d - plain) - 16;
    }
    cr_assert_eq(doc_end[5], payload);

    const int ids[] = {MT_COMPRESSOR_NOOP, MT_COMPRESSOR_ZLIB, MT_COMPRESSOR_ZSTD,
                       MT_COMPRESSOR_SNAPPY};
    mt_msg_scratch_t scratch = {0};
    for (size_t k = 0; k < 4; k++) {
        uint8_t *c;
        size_t clen;
        cr_assert_eq(mt_msg_compress_message(ids[k], plain, len, &c, &clen), 0);
        const char *name = mt_compressor_str(ids[k]);
        for (size_t left = 0; left <= payload + 1; left++) {
            mt_msg_budget_t budget = {left};
            mt_msg_t m;
            mt_msg_err_t err = mt_msg_parse_budget(c, clen, &scratch, &budget, &m);
            cr_assert_eq(err, MT_MSG_OK, "%s left %zu: %s", name, left, mt_msg_err_str(err));
            cr_assert_eq(m.opcode, MT_OP_MSG);
            if (left >= payload) {
                cr_assert(!m.partial, "%s left %zu", name, left);
                cr_assert_eq(m.inflated, payload);
                cr_assert_eq(budget.left, left - payload, "%s left %zu", name, left);
                cr_assert_eq(m.seqs[0].count, 6);
                cr_assert(!m.seqs[0].partial);
                continue;
            }
            cr_assert(m.partial, "%s left %zu", name, left);
            if (left == 0 || ids[k] == MT_COMPRESSOR_SNAPPY) {
                /* nothing decompressed: snappy has no streaming decoder */
                cr_assert_eq(m.inflated, 0);
                cr_assert_eq(budget.left, left);
                cr_assert_null(m.body);
                continue;
            }
            cr_assert_leq(m.inflated, left, "%s left %zu", name, left);
            if (ids[k] == MT_COMPRESSOR_ZSTD)
                cr_assert_leq(budget.left, left - m.inflated);
            else
                cr_assert_eq(budget.left, left - m.inflated, "%s left %zu", name, left);
            cr_assert_eq(m.flags, left >= 4 ? MT_MSG_FLAG_MORE_TO_COME : 0u, "left %zu", left);
            if (left < body_end) {
                cr_assert_null(m.body, "%s left %zu", name, left);
                cr_assert_eq(m.nseqs, 0);
                continue;
            }
            cr_assert_eq(m.body_len, want.body_len);
            cr_assert_arr_eq(m.body, want.body, want.body_len);
            if (left < ident_end) {
                cr_assert_eq(m.nseqs, 0, "%s left %zu", name, left);
                continue;
            }
            cr_assert_eq(m.nseqs, 1, "%s left %zu", name, left);
            cr_assert_str_eq(m.seqs[0].identifier, "documents");
            cr_assert(m.seqs[0].partial);
            uint32_t count = 0;
            while (count < 6 && doc_end[count] <= left)
                count++;
            cr_assert_eq(m.seqs[0].count, count, "%s left %zu", name, left);
            cr_assert_arr_eq(m.seqs[0].docs, want.seqs[0].docs, m.seqs[0].docs_len);
            mt_cmd_view_t v;
            cr_assert_eq(mt_cmd_request(&m, &v), MT_MSG_OK);
            cr_assert(v.partial);
            cr_assert_eq(v.statements, count, "a lower bound, never a guess");
        }
        free(c);
    }
    mt_msg_scratch_free(&scratch);

    /* the front of an uncompressed message, kept by reassembly, is read
     * through the same span: the same units at every length */
    for (size_t have = 16; have <= len; have++) {
        mt_msg_t m;
        size_t left = have - 16;
        mt_msg_err_t err = mt_msg_parse_prefix(plain, have, &m);
        if (left < body_end) {
            cr_assert_neq(err, MT_MSG_OK, "have %zu", have);
            continue;
        }
        cr_assert_eq(err, MT_MSG_OK, "have %zu: %s", have, mt_msg_err_str(err));
        cr_assert_eq(m.partial, have < len);
        cr_assert_arr_eq(m.body, want.body, want.body_len);
        uint32_t count = 0;
        while (count < 6 && doc_end[count] <= left)
            count++;
        cr_assert_eq(m.nseqs, left >= ident_end ? 1u : 0u, "have %zu", have);
        if (m.nseqs)
            cr_assert_eq(m.seqs[0].count, count, "have %zu", have);
    }
    free(plain);
}

/* A 1.8 MB insert: only its front (body and the first document) is
 * decompressed, and the budget runs out for the next messages. */
Test(msg, big_message_decompresses_its_front_only)
{
    bson_t *body = fx_json("{\"insert\": \"big\", \"$db\": \"d\"}");
    bson_t *docs[3];
    char *s = malloc(600000);
    memset(s, 'y', 600000 - 1);
    s[600000 - 1] = '\0';
    for (size_t i = 0; i < 3; i++) {
        docs[i] = bson_new();
        BSON_APPEND_UTF8(docs[i], "s", s);
    }
    size_t len;
    uint8_t *plain = fx_op_msg(0, 3, 0, body, "documents", docs, 3, &len);
    const int ids[] = {MT_COMPRESSOR_NOOP, MT_COMPRESSOR_ZLIB, MT_COMPRESSOR_ZSTD,
                       MT_COMPRESSOR_SNAPPY};
    mt_msg_scratch_t scratch = {0};
    for (size_t k = 0; k < 4; k++) {
        uint8_t *c;
        size_t clen;
        mt_msg_t m;
        mt_cmd_view_t v;
        cr_assert_eq(mt_msg_compress_message(ids[k], plain, len, &c, &clen), 0);
        cr_assert_eq(mt_msg_parse(c, clen, &scratch, &m), MT_MSG_OK);
        cr_assert(m.partial);
        cr_assert_leq(scratch.cap, MT_MSG_INFLATE_MAX);
        if (ids[k] == MT_COMPRESSOR_SNAPPY) {
            cr_assert_eq(m.inflated, 0);
            cr_assert_eq(mt_cmd_request(&m, &v), MT_MSG_ERR_SKIPPED);
        } else {
            cr_assert_leq(m.inflated, MT_MSG_INFLATE_MAX - 16);
            cr_assert_eq(m.nseqs, 1);
            cr_assert_eq(m.seqs[0].count, 1);
            cr_assert(m.seqs[0].partial);
            cr_assert_eq(mt_cmd_request(&m, &v), MT_MSG_OK);
            cr_assert_str_eq(v.name, "insert");
            cr_assert_str_eq(v.collection, "big");
            cr_assert(v.partial);
        }
        /* one budget for three messages: the first takes it all */
        mt_msg_budget_t budget = {700000};
        cr_assert_eq(mt_msg_parse_budget(c, clen, &scratch, &budget, &m), MT_MSG_OK);
        size_t first = m.inflated;
        if (ids[k] == MT_COMPRESSOR_SNAPPY)
            cr_assert_eq(budget.left, 700000);
        else if (ids[k] == MT_COMPRESSOR_ZSTD)
            cr_assert_leq(budget.left, 700000 - first, "zstd also pays the block it decoded ahead");
        else
            cr_assert_eq(budget.left, 700000 - first);
        size_t second = budget.left;
        cr_assert_eq(mt_msg_parse_budget(c, clen, &scratch, &budget, &m), MT_MSG_OK);
        cr_assert(m.partial);
        if (ids[k] != MT_COMPRESSOR_SNAPPY) {
            if (second > 1000) {
                cr_assert_not_null(m.body);
                cr_assert_eq(m.seqs[0].count, 0, "no room left for a 600 KB document");
            } else {
                cr_assert_null(m.body);
            }
            budget.left = 0;
            cr_assert_eq(mt_msg_parse_budget(c, clen, &scratch, &budget, &m), MT_MSG_OK);
            cr_assert_eq(m.inflated, 0);
            cr_assert_eq(mt_cmd_request(&m, &v), MT_MSG_ERR_SKIPPED);
        }
        free(c);
    }
    mt_msg_scratch_free(&scratch);
    free(plain);
    free(s);
    bson_destroy(body);
    for (size_t i = 0; i < 3; i++)
        bson_destroy(docs[i]);
}

/* Replies: moreToCome is read even when the body is too large, and a legacy
 * OP_REPLY keeps its first document and its document count. */
Test(msg, replies_over_the_limit)
{
    mt_msg_scratch_t scratch = {0};
    char *s = malloc(600000);
    memset(s, 'z', 600000 - 1);
    s[600000 - 1] = '\0';
    bson_t *big = bson_new(), batch, *docs[3];
    bson_t *cursor = bson_new();
    BSON_APPEND_ARRAY_BEGIN(cursor, "firstBatch", &batch);
    for (int i = 0; i < 3; i++) {
        bson_t d;
        char k[4];
        snprintf(k, sizeof(k), "%d", i);
        BSON_APPEND_DOCUMENT_BEGIN(&batch, k, &d);
        BSON_APPEND_UTF8(&d, "s", s);
        bson_append_document_end(&batch, &d);
    }
    bson_append_array_end(cursor, &batch);
    BSON_APPEND_INT64(cursor, "id", 0);
    BSON_APPEND_DOCUMENT(big, "cursor", cursor);
    BSON_APPEND_DOUBLE(big, "ok", 1.0);
    size_t len, clen;
    uint8_t *plain = fx_op_msg(MT_MSG_FLAG_MORE_TO_COME, 4, 3, big, NULL, NULL, 0, &len);
    uint8_t *c;
    mt_msg_t m;
    mt_reply_view_t r;
    cr_assert_eq(mt_msg_compress_message(MT_COMPRESSOR_ZSTD, plain, len, &c, &clen), 0);
    cr_assert_eq(mt_msg_parse(c, clen, &scratch, &m), MT_MSG_OK);
    cr_assert(m.partial);
    cr_assert_null(m.body);
    cr_assert_eq(m.inflated, 9, "flags, section kind and the body's length only");
    cr_assert_eq(m.flags, MT_MSG_FLAG_MORE_TO_COME);
    cr_assert_eq(m.hdr.response_to, 3);
    cr_assert_eq(mt_cmd_reply(&m, &r), MT_MSG_ERR_SKIPPED);
    cr_assert(r.unread && r.partial);
    cr_assert(r.more_to_come, "an exhaust stream goes on");
    cr_assert_eq(r.response_to, 3);
    cr_assert(!r.ok && r.docs == 0 && !r.has_cursor, "nothing guessed");
    free(c);
    free(plain);

    for (int i = 0; i < 3; i++) {
        docs[i] = bson_new();
        BSON_APPEND_UTF8(docs[i], "s", s);
    }
    plain = fx_op_reply(0, 77, docs, 3, &len);
    cr_assert_eq(mt_msg_compress_message(MT_COMPRESSOR_ZLIB, plain, len, &c, &clen), 0);
    cr_assert_eq(mt_msg_parse(c, clen, &scratch, &m), MT_MSG_OK);
    cr_assert(m.partial);
    cr_assert_eq(m.cursor_id, 77);
    cr_assert_eq(m.number_returned, 3);
    cr_assert_not_null(m.body);
    cr_assert_eq(mt_cmd_reply(&m, &r), MT_MSG_OK);
    cr_assert(r.partial);
    cr_assert_eq(r.docs, 3, "numberReturned, from the header");
    free(c);
    free(plain);
    for (int i = 0; i < 3; i++)
        bson_destroy(docs[i]);
    bson_destroy(big);
    bson_destroy(cursor);
    free(s);
    mt_msg_scratch_free(&scratch);
}

/* The bombs of the attack run: 48,000,000 zero bytes (zlib 46 KB, zstd
 * 1.5 KB), and the same behind a valid command whose sequence announces a
 * 16 MB document. Each costs a few bytes of decompression. */
Test(msg, bombs_inflate_only_what_is_read)
{
    mt_msg_scratch_t scratch = {0};
    const int ids[] = {MT_COMPRESSOR_ZLIB, MT_COMPRESSOR_ZSTD};
    bson_t *body = fx_json("{\"insert\": \"c\", \"$db\": \"d\"}");
    uint8_t prefix[128], *p = prefix;
    mt_wire_put_le32(p, 0); /* flags */
    p[4] = 0;
    p += 5;
    memcpy(p, bson_get_data(body), body->len);
    p += body->len;
    size_t seq_len = 4 + 10 + 47999000;
    *p++ = 1;
    mt_wire_put_le32(p, (uint32_t)seq_len);
    memcpy(p + 4, "documents", 10);
    p += 14;
    mt_wire_put_le32(p, 16000000); /* a document of 16 MB ... */
    p[4] = 0x02;                   /* ... holding one string "a" */
    p[5] = 'a';
    p[6] = 0;
    mt_wire_put_le32(p + 7, 16000000 - 12);
    p += 11;
    size_t plen = (size_t)(p - prefix);
    for (size_t k = 0; k < 2; k++) {
        size_t len;
        mt_msg_t m;
        seg_t zeros = {NULL, 48000000};
        uint8_t *b = compressed_stream(ids[k], MT_OP_MSG, &zeros, 1, &len);
        cr_assert_lt(len, 50000);
        mt_msg_budget_t budget = {4u << 20};
        cr_assert_eq(mt_msg_parse_budget(b, len, &scratch, &budget, &m), MT_MSG_ERR_BSON,
                     "a document of length 0");
        cr_assert_eq(m.inflated, 9);
        cr_assert_geq(budget.left, (4u << 20) - 9 - 128 * 1024);
        free(b);

        seg_t smart[2] = {{prefix, plen}, {NULL, 48000000 - plen}};
        b = compressed_stream(ids[k], MT_OP_MSG, smart, 2, &len);
        cr_assert_eq(mt_msg_parse(b, len, &scratch, &m), MT_MSG_OK);
        cr_assert(m.partial);
        /* up to the identifier, and the identifier's probe of 256 bytes */
        cr_assert_eq(m.inflated, 5 + body->len + 5 + 256);
        cr_assert_not_null(m.body);
        cr_assert_eq(m.nseqs, 1);
        cr_assert_eq(m.seqs[0].count, 0);
        mt_cmd_view_t v;
        cr_assert_eq(mt_cmd_request(&m, &v), MT_MSG_OK);
        cr_assert(v.partial);
        cr_assert_leq(scratch.cap, MT_MSG_INFLATE_MAX);
        free(b);
    }
    bson_destroy(body);
    mt_msg_scratch_free(&scratch);
}

/* A partial view cannot check the checksum (it is at the end); a payload
 * cut short fails where the decoder reads past it, never before. */
Test(msg, partial_views_and_broken_streams)
{
    bson_t *body = fx_json("{\"insert\": \"c\", \"$db\": \"d\"}");
    bson_t *docs[2];
    char *s = malloc(700000);
    memset(s, 'q', 700000 - 1);
    s[700000 - 1] = '\0';
    for (size_t i = 0; i < 2; i++) {
        docs[i] = bson_new();
        BSON_APPEND_UTF8(docs[i], "s", s);
    }
    size_t len, clen;
    uint8_t *plain =
        fx_op_msg(MT_MSG_FLAG_CHECKSUM_PRESENT, 3, 0, body, "documents", docs, 2, &len);
    uint8_t *withsum = malloc(len + 4);
    memcpy(withsum, plain, len);
    mt_wire_put_le32(withsum, (uint32_t)(len + 4));
    mt_wire_put_le32(withsum + len, 0xdeadbeef); /* wrong, and unchecked */
    mt_msg_scratch_t scratch = {0};
    mt_msg_t m;
    uint8_t *c;
    cr_assert_eq(mt_msg_compress_message(MT_COMPRESSOR_ZLIB, withsum, len + 4, &c, &clen), 0);
    cr_assert_eq(mt_msg_parse(c, clen, &scratch, &m), MT_MSG_OK);
    cr_assert(m.partial && m.checksum_present);
    cr_assert_eq(m.seqs[0].count, 1);

    /* the payload cut at 64 points: an error or a shorter view, never more */
    size_t payload = clen - 25;
    for (size_t i = 1; i < 64; i++) {
        size_t cut = payload * i / 64;
        mt_wire_put_le32(c, (uint32_t)(25 + cut));
        mt_msg_err_t err = mt_msg_parse(c, 25 + cut, &scratch, &m);
        cr_assert(err == MT_MSG_OK || err == MT_MSG_ERR_DECOMPRESS, "cut %zu: %s", cut,
                  mt_msg_err_str(err));
        if (err == MT_MSG_OK)
            cr_assert(m.partial && m.body, "cut %zu", cut);
    }
    free(c);
    free(withsum);
    free(plain);
    free(s);
    bson_destroy(body);
    for (size_t i = 0; i < 2; i++)
        bson_destroy(docs[i]);
    mt_msg_scratch_free(&scratch);
}
