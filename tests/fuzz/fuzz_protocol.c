/*
 * fuzz_protocol: the input is a byte stream from a client or a server. The
 * framer cuts it (fed in uneven chunks, as sockets deliver it) and every
 * whole message goes through the decoder (with a decompression budget the
 * input chooses), both command views and the shape functions, as the proxy
 * uses them, and again with the body left to the views (the proxy's one
 * pass), which must agree.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bson.h"
#include "command.h"
#include "msg.h"
#include "shape.h"
#include "wire.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void account(const uint8_t *msg, size_t len, mt_msg_scratch_t *scratch,
                    mt_msg_budget_t *budget)
{
    mt_msg_t m;
    size_t before = budget->left;
    mt_msg_err_t err = mt_msg_parse_budget(msg, len, scratch, budget, 0, &m);
    CHECK(budget->left <= before);
    if (err != MT_MSG_OK)
        return;
    CHECK(m.inflated <= MT_MSG_INFLATE_MAX && m.inflated <= before);
    if (!m.body && m.opcode == MT_OP_REPLY && !m.partial) {
        /* a legacy reply that returned no document: nothing failed */
        mt_reply_view_t r;
        CHECK(m.number_returned == 0);
        CHECK(mt_cmd_reply(&m, &r) == MT_MSG_OK && r.docs == 0);
        CHECK(r.ok == ((m.response_flags & (MT_MSG_REPLY_FLAG_QUERY_FAILURE |
                                            MT_MSG_REPLY_FLAG_CURSOR_NOT_FOUND)) == 0));
        return;
    }
    if (!m.body) {
        /* else only a message decompressed in part may have no body yet:
         * a request's view is skipped, a reply has none, and a reply's view
         * of either is left unread */
        mt_cmd_view_t cmd;
        mt_reply_view_t r;
        CHECK(m.partial);
        CHECK(mt_cmd_request(&m, NULL, &cmd) ==
              (m.opcode == MT_OP_REPLY ? MT_MSG_ERR_OPCODE : MT_MSG_ERR_SKIPPED));
        CHECK(mt_cmd_reply(&m, &r) == MT_MSG_ERR_SKIPPED && r.unread && r.docs == 0);
        return;
    }
    bson_t body;
    size_t off;
    CHECK(bson_init_static(&body, m.body, m.body_len));
    CHECK(bson_validate(&body, BSON_VALIDATE_NONE, &off));

    char shape[MT_SHAPE_MAX];
    mt_cmd_view_t cmd;
    if (mt_cmd_request(&m, NULL, &cmd) == MT_MSG_OK) {
        size_t n = mt_shape_of_command(&cmd, shape, sizeof(shape), NULL);
        CHECK(n < sizeof(shape) && strlen(shape) == n);
        CHECK(bson_utf8_validate(shape, n, false));
        mt_shape_lookup_t lk;
        if (mt_shape_lookup(&cmd, &lk)) {
            CHECK(lk.nterms >= 1 && lk.nterms <= MT_SHAPE_LOOKUP_TERMS);
            for (size_t i = 0; i < lk.nterms; i++)
                CHECK(lk.terms[i].key != NULL && lk.terms[i].key[0] != '$');
            CHECK(!lk.in_list || (lk.nterms == 1 && lk.list_len > 0));
        }
        (void)mt_cmd_is_monitoring(cmd.name, cmd.has_topology_version);
        /* a small buffer exercises the cut */
        char small[24];
        n = mt_shape_render(m.body, (uint32_t)m.body_len, false, small, sizeof(small), NULL);
        CHECK(n < sizeof(small) && strlen(small) == n);
    }
    mt_reply_view_t reply;
    if (mt_cmd_reply(&m, &reply) == MT_MSG_OK && reply.batch)
        CHECK(reply.docs >= 0);
}

/* Every document of a batch validates, as deep as one may nest in a reply
 * (body, cursor, batch): stricter than evidence, which only bounds it. */
static bool batch_docs_valid(const uint8_t *batch, uint32_t len)
{
    mt_bson_iter_t it;
    mt_bson_elem_t e;
    CHECK(mt_bson_iter_init(&it, batch, len));
    while (mt_bson_iter_next(&it, &e) == MT_BSON_ELEM)
        if (e.type == BSON_TYPE_DOCUMENT &&
            !mt_bson_validate(e.value, e.value_len, MT_BSON_MAX_DEPTH - 3, MT_BSON_CHECK_STRUCTURE))
            return false;
    return true;
}

/* The proxy's way: the body left to the views (MT_MSG_DEFER_BODY), read and
 * validated in one pass. Whatever it accepts, libbson accepts too, and it
 * gives the views the decoder gives when it validates the body first. */
static void account_deferred(const uint8_t *msg, size_t len)
{
    mt_msg_t full, lazy;
    mt_msg_err_t ef = mt_msg_parse_budget(msg, len, NULL, NULL, 0, &full);
    mt_msg_err_t el = mt_msg_parse_budget(msg, len, NULL, NULL, MT_MSG_DEFER_BODY, &lazy);
    /* deferring can only let a bad body through to the views */
    CHECK(ef != MT_MSG_OK || el == MT_MSG_OK);
    if (el != MT_MSG_OK || !lazy.body)
        return;
    mt_cmd_view_t cf, cl;
    mt_msg_err_t rl = mt_cmd_request(&lazy, NULL, &cl);
    if (rl == MT_MSG_OK) {
        bson_t body;
        size_t off;
        CHECK(ef == MT_MSG_OK);
        CHECK(bson_init_static(&body, lazy.body, lazy.body_len));
        CHECK(bson_validate(&body, BSON_VALIDATE_NONE, &off));
        CHECK(mt_cmd_request(&full, NULL, &cf) == MT_MSG_OK);
        CHECK(cf.shape_id == cl.shape_id && cf.query_hash == cl.query_hash);
        CHECK(cf.kind == cl.kind && strcmp(cf.db, cl.db) == 0 &&
              strcmp(cf.collection, cl.collection) == 0);
        /* every string the view hands out is valid UTF-8 */
        CHECK(bson_utf8_validate(cl.db, strlen(cl.db), true));
        CHECK(bson_utf8_validate(cl.collection, strlen(cl.collection), true));
        CHECK(!cl.comment || bson_utf8_validate(cl.comment, strlen(cl.comment), true));
    }
    /* A reply's returned documents are framed, not read: the lazy view may
     * accept what the full parse refuses only for what is inside them. */
    mt_reply_view_t rf, rlz;
    bool full_ok = ef == MT_MSG_OK && mt_cmd_reply(&full, &rf) == MT_MSG_OK;
    if (mt_cmd_reply(&lazy, &rlz) == MT_MSG_OK) {
        if (full_ok)
            CHECK(rf.ok == rlz.ok && rf.docs == rlz.docs && rf.n == rlz.n);
        else
            CHECK(rlz.batch && !batch_docs_valid(rlz.batch, rlz.batch_len));
    } else {
        CHECK(!full_ok);
    }
}

/* The input as one BSON document: our validators must never accept what
 * libbson's refuses (they may refuse more: deep nesting, bad UTF-8 in keys).
 * The structure check (what every message gets) against bson_validate's
 * structure check; the strict one (string values too) against its UTF-8
 * check; and strict acceptance implies structural acceptance. */
static void differential(const uint8_t *data, size_t size)
{
    uint32_t len;
    bson_t b;
    size_t off;
    if (size < 5 || size > UINT32_MAX)
        return;
    len = mt_wire_le32(data);
    if (len < 5 || len > size || !bson_init_static(&b, data, len))
        return;
    bool structure = mt_bson_validate(data, len, MT_BSON_MAX_DEPTH, MT_BSON_CHECK_STRUCTURE);
    bool strict = mt_bson_validate(data, len, MT_BSON_MAX_DEPTH, MT_BSON_CHECK_UTF8);
    CHECK(!structure || bson_validate(&b, BSON_VALIDATE_NONE, &off));
    CHECK(!strict || bson_validate(&b, BSON_VALIDATE_UTF8 | BSON_VALIDATE_UTF8_ALLOW_NULL, &off));
    CHECK(!strict || structure);
    CHECK((mt_msg_validate_bson(data, size, &len) == MT_MSG_OK) == strict);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t chunks[] = {1, 7, 64, 3, 4096, 16, 2};
    mt_msg_scratch_t scratch = {0};
    /* the last byte sets the budget, so that decompression is cut anywhere
     * in the first 64 KiB of a message, or not at all */
    mt_msg_budget_t budget = {size && data[size - 1] ? (size_t)data[size - 1] << 8 : SIZE_MAX};
    mt_wire_framer_t f;
    uint8_t *msg = NULL;
    size_t msg_len = 0, msg_have = 0, off = 0, forwarded = 0, k = 0;

    differential(data, size);
    mt_wire_framer_init(&f);
    while (off < size) {
        size_t len = chunks[k++ % (sizeof(chunks) / sizeof(chunks[0]))];
        if (len > size - off)
            len = size - off;
        const uint8_t *chunk = data + off;
        size_t used = 0;
        while (used < len) {
            mt_frame_step_t st;
            mt_wire_framer_step(&f, chunk + used, len - used, &st);
            if (st.event == MT_FRAME_ERROR)
                goto done;
            CHECK(st.consumed > 0 && st.consumed <= len - used);
            if (st.event == MT_FRAME_HEADER) {
                CHECK(st.held + st.consumed == MT_WIRE_HEADER_LEN);
                CHECK(forwarded + st.held == off + used);
                msg_len = (size_t)f.hdr.message_length;
                msg_have = 0;
                free(msg);
                msg = malloc(msg_len);
                CHECK(msg != NULL);
                memcpy(msg, f.hdr_bytes, MT_WIRE_HEADER_LEN);
                msg_have = MT_WIRE_HEADER_LEN;
                forwarded += MT_WIRE_HEADER_LEN;
            } else if (st.event == MT_FRAME_BODY) {
                CHECK(msg_have + st.consumed <= msg_len);
                memcpy(msg + msg_have, chunk + used, st.consumed);
                msg_have += st.consumed;
                forwarded += st.consumed;
            }
            if (st.flags & MT_FRAME_END) {
                CHECK(msg_have == msg_len);
                account(msg, msg_len, &scratch, &budget);
                account_deferred(msg, msg_len);
            }
            used += st.consumed;
        }
        off += len;
    }
done:
    free(msg);
    mt_msg_scratch_free(&scratch);
    return 0;
}
