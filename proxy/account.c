/*
 * account: frames forwarded bytes again (framing is O(1) per message, so
 * twice is cheap and keeps decoding strictly after the write is queued),
 * decodes each message where it lies when it came in one read, or from a
 * reassembled copy of its front when it spans reads, and hands the views to
 * stats. The session's in-flight count comes from here, decoded or not.
 *
 *   side bytes --> framer --> [whole in this read]  --> decode in place
 *                        `--> [spans reads] --> head[] + buf (front only)
 */
#include "account.h"

#include <stdlib.h>
#include <string.h>

#include "command.h"
#include "spares.h"

#define HEAD_LEN MT_ACCOUNT_HEAD_LEN

struct mt_account {
    mt_stats_t *stats;
    mt_msg_scratch_t scratch; /* decompression, shared by every connection */
    mt_msg_budget_t inflate;  /* what this loop iteration may still decompress */
    size_t assembly_bytes;    /* capacity held by every side's buf */
    mt_spares_t spares;       /* finished messages' buffers, kept for the next ones */
};

mt_account_t *mt_account_new(mt_stats_t *stats)
{
    mt_account_t *a = calloc(1, sizeof(*a));

    if (!a)
        return NULL;
    a->stats = stats;
    a->inflate.left = MT_ACCOUNT_INFLATE_BUDGET;
    mt_spares_init(&a->spares, MT_ACCOUNT_SPARES, SIZE_MAX, MT_ACCOUNT_SPARE_BYTES, free);
    return a;
}

void mt_account_refill(mt_account_t *a)
{
    a->inflate.left = MT_ACCOUNT_INFLATE_BUDGET;
}

void mt_account_free(mt_account_t *a)
{
    if (!a)
        return;
    mt_msg_scratch_free(&a->scratch);
    mt_spares_release(&a->spares);
    free(a);
}

size_t mt_account_assembly_bytes(const mt_account_t *a)
{
    return a->assembly_bytes;
}

void mt_account_side_init(mt_account_side_t *side)
{
    memset(side, 0, sizeof(*side));
    mt_wire_framer_init(&side->framer);
}

static void assembly_free(mt_account_t *a, mt_account_side_t *side)
{
    a->assembly_bytes -= side->cap;
    mt_spares_put(&a->spares, side->buf, side->cap);
    side->buf = NULL;
    side->cap = 0;
}

void mt_account_side_release(mt_account_t *a, mt_account_side_t *side)
{
    assembly_free(a, side);
    side->assembling = false;
    /* memory goes back as connections go: spares only serve a run of large
     * messages on connections that stay */
    mt_spares_release(&a->spares);
}

/* ---- what the session owes ---------------------------------------------- */

/* From the raw front of a message: whether a request is answered, whether a
 * reply is the last of its stream. Used when the message was not decoded
 * (compressed payloads are then assumed to carry no moreToCome). */
static bool raw_more_to_come(const uint8_t *head, size_t have)
{
    return have >= 20 && mt_wire_le32(head + 12) == MT_OP_MSG &&
           (mt_wire_le32(head + 16) & MT_MSG_FLAG_MORE_TO_COME);
}

static bool raw_expects_reply(const uint8_t *head, size_t have)
{
    int32_t op = have >= 16 ? (int32_t)mt_wire_le32(head + 12) : 0;

    if (op == MT_OP_COMPRESSED && have >= 20)
        op = (int32_t)mt_wire_le32(head + 16);
    if (op == MT_OP_MSG)
        return !raw_more_to_come(head, have);
    return op == MT_OP_QUERY || op == MT_OP_GET_MORE;
}

static bool decoded_more_to_come(const mt_msg_t *m)
{
    return m->opcode == MT_OP_MSG && (m->flags & MT_MSG_FLAG_MORE_TO_COME);
}

/* ---- decoding ------------------------------------------------------------ */

static void count_error(mt_account_t *a, mt_msg_err_t err)
{
    mt_stats_add(a->stats,
                 err == MT_MSG_ERR_OPCODE ? MT_STAT_MESSAGES_UNKNOWN : MT_STAT_PARSE_ERRORS, 1);
}

/* msg[0..have) is a whole message, or the front of one of `size` bytes. */
static void account_message(mt_account_t *a, mt_account_side_t *side, mt_stats_conn_t *conn,
                            bool from_client, const uint8_t *msg, size_t have, size_t size,
                            uint64_t now_ns, mt_account_result_t *out)
{
    mt_msg_t m;
    mt_msg_err_t err;

    if (a->scratch.cap > MT_ACCOUNT_SCRATCH_KEEP)
        mt_msg_scratch_free(&a->scratch); /* one 48 MB message must not pin 48 MB */
    /* the body is validated by the command views as they read it: one pass */
    if (have < size)
        err = mt_msg_parse_prefix(msg, have, MT_MSG_DEFER_BODY, &m);
    else
        err = mt_msg_parse_budget(msg, have, &a->scratch, &a->inflate, MT_MSG_DEFER_BODY, &m);
    if (err == MT_MSG_OK && m.partial && m.compressor != MT_COMPRESSOR_NONE)
        mt_stats_add(a->stats, MT_STAT_DECOMPRESS_SKIPPED, 1);

    if (from_client) {
        bool owed = err == MT_MSG_OK ? (m.opcode == MT_OP_MSG ? !decoded_more_to_come(&m)
                                                              : m.opcode == MT_OP_QUERY)
                                     : raw_expects_reply(msg, have);
        out->requests_expecting_reply += owed;
        if (err == MT_MSG_OK) {
            mt_cmd_view_t cmd;
            err = mt_cmd_request(&m, mt_stats_shape_opts(a->stats), &cmd);
            if (err == MT_MSG_OK)
                mt_stats_conn_request(conn, &cmd, size, now_ns);
        }
    } else {
        bool more = err == MT_MSG_OK ? decoded_more_to_come(&m) : raw_more_to_come(msg, have);
        out->final_replies += !more;
        if (err == MT_MSG_OK) {
            mt_reply_view_t r;
            err = mt_cmd_reply(&m, &r);
            /* a reply not decompressed still settles its request (r.unread) */
            if (err == MT_MSG_OK || err == MT_MSG_ERR_SKIPPED)
                mt_stats_conn_reply(conn, &r, size, side->first_ns);
        }
    }
    if (err != MT_MSG_OK && err != MT_MSG_ERR_SKIPPED) /* skipped: counted above */
        count_error(a, err);
}

/* A message that was not kept (budget; counted when it was shed): still
 * settle what the session owes. */
static void account_shed(bool from_client, const uint8_t *head, size_t have,
                         mt_account_result_t *out)
{
    if (from_client)
        out->requests_expecting_reply += raw_expects_reply(head, have);
    else
        out->final_replies += !raw_more_to_come(head, have);
}

/* ---- reassembly ---------------------------------------------------------- */

static void assembly_begin(mt_account_side_t *side, const mt_wire_header_t *h)
{
    side->assembling = true;
    side->keep = (size_t)h->message_length;
    side->len = 0;
    /* the header may have come in pieces: rebuild it from its fields */
    side->head_len = MT_WIRE_HEADER_LEN;
    mt_wire_put_le32(side->head, (uint32_t)h->message_length);
    mt_wire_put_le32(side->head + 4, (uint32_t)h->request_id);
    mt_wire_put_le32(side->head + 8, (uint32_t)h->response_to);
    mt_wire_put_le32(side->head + 12, (uint32_t)h->opcode);
}

/* A request keeps its front only: the body section when it comes first
 * (drivers put it first), and what fits of the sequences after it. */
static void refine_keep(mt_account_side_t *side, bool from_client)
{
    const uint8_t *h = side->head;

    if (!from_client || mt_wire_le32(h + 12) != MT_OP_MSG || h[20] != 0)
        return;
    size_t body_end = 21 + (size_t)mt_wire_le32(h + 21);
    size_t want = body_end > MT_ACCOUNT_PREFIX_MIN ? body_end : MT_ACCOUNT_PREFIX_MIN;
    if (want < side->keep)
        side->keep = want;
}

/* The kept front is reserved whole once the head says how long it is: a
 * message that does not fit what the budget has left is shed before any of
 * it is copied (not grown into the budget and then dropped), and a spare
 * from an earlier message spares the fresh pages. Capacity that is never
 * written costs no memory. */
static bool assembly_reserve(mt_account_t *a, mt_account_side_t *side)
{
    size_t left = MT_ACCOUNT_ASSEMBLY_BUDGET - a->assembly_bytes;

    if (side->keep > left)
        return false;
    side->buf = mt_spares_take(&a->spares, side->keep, left, &side->cap);
    if (!side->buf) {
        side->buf = malloc(side->keep);
        if (!side->buf)
            return false;
        side->cap = side->keep;
    }
    a->assembly_bytes += side->cap;
    return true;
}

static void assembly_append(mt_account_t *a, mt_account_side_t *side, bool from_client,
                            const uint8_t *p, size_t n)
{
    size_t total = side->head_len + side->len; /* bytes of the message seen so far */

    /* the fixed head first */
    while (n > 0 && side->head_len < HEAD_LEN) {
        side->head[side->head_len++] = *p++;
        n--;
        total++;
        if (side->head_len == HEAD_LEN)
            refine_keep(side, from_client);
    }
    if (!side->assembling || n == 0 || total >= side->keep)
        return;
    if (total + n > side->keep)
        n = side->keep - total;
    /* room for head too: it is copied in front once the message is whole */
    if (!side->buf && !assembly_reserve(a, side)) {
        side->assembling = false; /* shed: forwarded, not accounted */
        assembly_free(a, side);
        mt_stats_add(a->stats, MT_STAT_ACCOUNTING_SHED, 1);
        return;
    }
    memcpy(side->buf + HEAD_LEN + side->len, p, n);
    side->len += n;
}

/* The kept front as one contiguous message: the body was appended after
 * room for the head (buf is only used once the head is whole). */
static const uint8_t *assembly_message(mt_account_side_t *side, size_t *have)
{
    memcpy(side->buf, side->head, side->head_len);
    *have = side->head_len + side->len;
    return side->buf;
}

void mt_account_feed(mt_account_t *a, mt_account_side_t *side, mt_stats_conn_t *conn,
                     bool from_client, const uint8_t *data, size_t len, uint64_t now_ns,
                     mt_account_result_t *out)
{
    size_t off = 0, msg_begin = SIZE_MAX;

    memset(out, 0, sizeof(*out));
    while (off < len) {
        mt_frame_step_t st;
        mt_wire_framer_step(&side->framer, data + off, len - off, &st);
        if (st.consumed == 0 || st.event == MT_FRAME_ERROR)
            break; /* the session stops forwarding before this */
        if (st.event == MT_FRAME_HEADER) {
            size_t size = (size_t)side->framer.hdr.message_length;
            side->first_ns = now_ns;
            if (st.held == 0 && off + size <= len) {
                msg_begin = off; /* whole message in this read: no copy */
            } else {
                msg_begin = SIZE_MAX;
                assembly_begin(side, &side->framer.hdr);
            }
        } else if (st.event == MT_FRAME_BODY && msg_begin == SIZE_MAX) {
            assembly_append(a, side, from_client, data + off, st.consumed);
        }
        off += st.consumed;
        if ((st.event == MT_FRAME_HEADER || st.event == MT_FRAME_BODY) &&
            (st.flags & MT_FRAME_END)) {
            size_t size = (size_t)side->framer.hdr.message_length;
            if (msg_begin != SIZE_MAX) {
                account_message(a, side, conn, from_client, data + msg_begin, off - msg_begin, size,
                                now_ns, out);
            } else if (side->assembling && side->buf) {
                size_t have;
                const uint8_t *msg = assembly_message(side, &have);
                account_message(a, side, conn, from_client, msg, have, size, now_ns, out);
            } else if (side->assembling && side->head_len == size) {
                /* a message no longer than its head */
                account_message(a, side, conn, from_client, side->head, size, size, now_ns, out);
            } else {
                account_shed(from_client, side->head, side->head_len, out);
            }
            side->assembling = false;
            side->len = 0;
            side->head_len = 0;
            assembly_free(a, side);
            msg_begin = SIZE_MAX;
        }
    }
}
