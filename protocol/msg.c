/*
 * msg: decodes one whole message into a view over its bytes. OP_MSG sections,
 * legacy OP_QUERY / OP_REPLY, and OP_COMPRESSED unwrapped into the caller's
 * scratch buffer as far as the decoder reads and the limits allow. Every
 * document is validated before a view points at it.
 */
#include "msg.h"

#include <bson/bson.h>
#include <snappy-c.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "utf8.h"

const char *mt_msg_err_str(mt_msg_err_t err)
{
    switch (err) {
    case MT_MSG_OK:
        return "ok";
    case MT_MSG_ERR_TRUNCATED:
        return "truncated";
    case MT_MSG_ERR_HEADER:
        return "bad header";
    case MT_MSG_ERR_SECTION:
        return "bad section";
    case MT_MSG_ERR_BSON:
        return "invalid BSON";
    case MT_MSG_ERR_CHECKSUM:
        return "checksum mismatch";
    case MT_MSG_ERR_COMPRESSOR:
        return "unknown compressor";
    case MT_MSG_ERR_DECOMPRESS:
        return "decompression failed";
    case MT_MSG_ERR_TOO_LARGE:
        return "declared size too large";
    case MT_MSG_ERR_NESTED:
        return "nested OP_COMPRESSED";
    case MT_MSG_ERR_NOMEM:
        return "out of memory";
    case MT_MSG_ERR_OPCODE:
        return "opcode not decoded";
    case MT_MSG_ERR_SKIPPED:
        return "not decompressed";
    }
    return "unknown error";
}

const char *mt_compressor_str(int id)
{
    switch (id) {
    case MT_COMPRESSOR_NONE:
        return "none";
    case MT_COMPRESSOR_NOOP:
        return "noop";
    case MT_COMPRESSOR_SNAPPY:
        return "snappy";
    case MT_COMPRESSOR_ZLIB:
        return "zlib";
    case MT_COMPRESSOR_ZSTD:
        return "zstd";
    default:
        return "unknown";
    }
}

void mt_msg_scratch_free(mt_msg_scratch_t *s)
{
    free(s->data);
    if (s->zstd)
        ZSTD_freeDCtx(s->zstd);
    if (s->zlib) {
        inflateEnd(s->zlib);
        free(s->zlib);
    }
    memset(s, 0, sizeof(*s));
}

/* ---- CRC-32C ------------------------------------------------------------ */

/* Reflected Castagnoli polynomial 0x82F63B78, one entry per byte value. */
static const uint32_t crc32c_table[256] = {
    0x00000000u, 0xf26b8303u, 0xe13b70f7u, 0x1350f3f4u, 0xc79a971fu, 0x35f1141cu, 0x26a1e7e8u,
    0xd4ca64ebu, 0x8ad958cfu, 0x78b2dbccu, 0x6be22838u, 0x9989ab3bu, 0x4d43cfd0u, 0xbf284cd3u,
    0xac78bf27u, 0x5e133c24u, 0x105ec76fu, 0xe235446cu, 0xf165b798u, 0x030e349bu, 0xd7c45070u,
    0x25afd373u, 0x36ff2087u, 0xc494a384u, 0x9a879fa0u, 0x68ec1ca3u, 0x7bbcef57u, 0x89d76c54u,
    0x5d1d08bfu, 0xaf768bbcu, 0xbc267848u, 0x4e4dfb4bu, 0x20bd8edeu, 0xd2d60dddu, 0xc186fe29u,
    0x33ed7d2au, 0xe72719c1u, 0x154c9ac2u, 0x061c6936u, 0xf477ea35u, 0xaa64d611u, 0x580f5512u,
    0x4b5fa6e6u, 0xb93425e5u, 0x6dfe410eu, 0x9f95c20du, 0x8cc531f9u, 0x7eaeb2fau, 0x30e349b1u,
    0xc288cab2u, 0xd1d83946u, 0x23b3ba45u, 0xf779deaeu, 0x05125dadu, 0x1642ae59u, 0xe4292d5au,
    0xba3a117eu, 0x4851927du, 0x5b016189u, 0xa96ae28au, 0x7da08661u, 0x8fcb0562u, 0x9c9bf696u,
    0x6ef07595u, 0x417b1dbcu, 0xb3109ebfu, 0xa0406d4bu, 0x522bee48u, 0x86e18aa3u, 0x748a09a0u,
    0x67dafa54u, 0x95b17957u, 0xcba24573u, 0x39c9c670u, 0x2a993584u, 0xd8f2b687u, 0x0c38d26cu,
    0xfe53516fu, 0xed03a29bu, 0x1f682198u, 0x5125dad3u, 0xa34e59d0u, 0xb01eaa24u, 0x42752927u,
    0x96bf4dccu, 0x64d4cecfu, 0x77843d3bu, 0x85efbe38u, 0xdbfc821cu, 0x2997011fu, 0x3ac7f2ebu,
    0xc8ac71e8u, 0x1c661503u, 0xee0d9600u, 0xfd5d65f4u, 0x0f36e6f7u, 0x61c69362u, 0x93ad1061u,
    0x80fde395u, 0x72966096u, 0xa65c047du, 0x5437877eu, 0x4767748au, 0xb50cf789u, 0xeb1fcbadu,
    0x197448aeu, 0x0a24bb5au, 0xf84f3859u, 0x2c855cb2u, 0xdeeedfb1u, 0xcdbe2c45u, 0x3fd5af46u,
    0x7198540du, 0x83f3d70eu, 0x90a324fau, 0x62c8a7f9u, 0xb602c312u, 0x44694011u, 0x5739b3e5u,
    0xa55230e6u, 0xfb410cc2u, 0x092a8fc1u, 0x1a7a7c35u, 0xe811ff36u, 0x3cdb9bddu, 0xceb018deu,
    0xdde0eb2au, 0x2f8b6829u, 0x82f63b78u, 0x709db87bu, 0x63cd4b8fu, 0x91a6c88cu, 0x456cac67u,
    0xb7072f64u, 0xa457dc90u, 0x563c5f93u, 0x082f63b7u, 0xfa44e0b4u, 0xe9141340u, 0x1b7f9043u,
    0xcfb5f4a8u, 0x3dde77abu, 0x2e8e845fu, 0xdce5075cu, 0x92a8fc17u, 0x60c37f14u, 0x73938ce0u,
    0x81f80fe3u, 0x55326b08u, 0xa759e80bu, 0xb4091bffu, 0x466298fcu, 0x1871a4d8u, 0xea1a27dbu,
    0xf94ad42fu, 0x0b21572cu, 0xdfeb33c7u, 0x2d80b0c4u, 0x3ed04330u, 0xccbbc033u, 0xa24bb5a6u,
    0x502036a5u, 0x4370c551u, 0xb11b4652u, 0x65d122b9u, 0x97baa1bau, 0x84ea524eu, 0x7681d14du,
    0x2892ed69u, 0xdaf96e6au, 0xc9a99d9eu, 0x3bc21e9du, 0xef087a76u, 0x1d63f975u, 0x0e330a81u,
    0xfc588982u, 0xb21572c9u, 0x407ef1cau, 0x532e023eu, 0xa145813du, 0x758fe5d6u, 0x87e466d5u,
    0x94b49521u, 0x66df1622u, 0x38cc2a06u, 0xcaa7a905u, 0xd9f75af1u, 0x2b9cd9f2u, 0xff56bd19u,
    0x0d3d3e1au, 0x1e6dcdeeu, 0xec064eedu, 0xc38d26c4u, 0x31e6a5c7u, 0x22b65633u, 0xd0ddd530u,
    0x0417b1dbu, 0xf67c32d8u, 0xe52cc12cu, 0x1747422fu, 0x49547e0bu, 0xbb3ffd08u, 0xa86f0efcu,
    0x5a048dffu, 0x8ecee914u, 0x7ca56a17u, 0x6ff599e3u, 0x9d9e1ae0u, 0xd3d3e1abu, 0x21b862a8u,
    0x32e8915cu, 0xc083125fu, 0x144976b4u, 0xe622f5b7u, 0xf5720643u, 0x07198540u, 0x590ab964u,
    0xab613a67u, 0xb831c993u, 0x4a5a4a90u, 0x9e902e7bu, 0x6cfbad78u, 0x7fab5e8cu, 0x8dc0dd8fu,
    0xe330a81au, 0x115b2b19u, 0x020bd8edu, 0xf0605beeu, 0x24aa3f05u, 0xd6c1bc06u, 0xc5914ff2u,
    0x37faccf1u, 0x69e9f0d5u, 0x9b8273d6u, 0x88d28022u, 0x7ab90321u, 0xae7367cau, 0x5c18e4c9u,
    0x4f48173du, 0xbd23943eu, 0xf36e6f75u, 0x0105ec76u, 0x12551f82u, 0xe03e9c81u, 0x34f4f86au,
    0xc69f7b69u, 0xd5cf889du, 0x27a40b9eu, 0x79b737bau, 0x8bdcb4b9u, 0x988c474du, 0x6ae7c44eu,
    0xbe2da0a5u, 0x4c4623a6u, 0x5f16d052u, 0xad7d5351u,
};

uint32_t mt_msg_crc32c_update(uint32_t crc, const uint8_t *buf, size_t len)
{
    crc = ~crc;
    for (size_t i = 0; i < len; i++)
        crc = crc32c_table[(crc ^ buf[i]) & 0xffu] ^ (crc >> 8);
    return ~crc;
}

uint32_t mt_msg_crc32c(const uint8_t *buf, size_t len)
{
    return mt_msg_crc32c_update(0, buf, len);
}

/* ---- BSON validation ---------------------------------------------------- */

/* A BSON string value at p with room bytes before the enclosing terminator:
 * int32 length (>= 1, counting the NUL), bytes, NUL. Returns its size or 0. */
static size_t bson_string_size(const uint8_t *p, size_t room)
{
    if (room < 5)
        return 0;
    uint32_t l = mt_wire_le32(p);
    if (l < 1 || l > room - 4 || p[4 + l - 1] != 0)
        return 0;
    if (!mt_utf8_valid(p + 4, l - 1))
        return 0;
    return 4 + (size_t)l;
}

/* A key or regex part: bytes up to a NUL within room, valid UTF-8. Keys are
 * short, so one loop finds the NUL and notices non-ASCII bytes at once. */
static size_t bson_cstring_size(const uint8_t *p, size_t room)
{
    uint8_t high = 0;
    for (size_t i = 0; i < room; i++) {
        if (p[i] == 0) {
            if (high & 0x80u && !mt_utf8_valid(p, i))
                return 0;
            return i + 1;
        }
        high |= p[i];
    }
    return 0;
}

/*
 * Walks a document element by element without recursion: ends[d] is the
 * offset of the terminating NUL of the document open at depth d. It checks
 * everything libbson's bson_validate() checks (lengths, terminators, types,
 * key UTF-8, bool values, old binary lengths) and what that one does not:
 * nesting depth (bson_validate recurses and overflows the stack on deep
 * documents) and UTF-8 of string values (libbson 1.23 skips it). The fuzz
 * target and the unit tests check it never accepts what bson_validate refuses.
 */
static bool bson_walk(const uint8_t *doc, uint32_t len)
{
    uint32_t ends[MT_MSG_MAX_DEPTH + 1];
    int depth = 0;
    uint32_t pos = 4;

    ends[0] = len - 1;
    if (doc[len - 1] != 0)
        return false;

    for (;;) {
        uint32_t end = ends[depth];
        if (pos == end) {
            pos++;
            if (depth == 0)
                return true;
            depth--;
            continue;
        }
        uint8_t type = doc[pos++];
        size_t klen = bson_cstring_size(doc + pos, end - pos);
        if (klen == 0)
            return false;
        pos += (uint32_t)klen;
        size_t room = end - pos;
        const uint8_t *v = doc + pos;
        size_t size;

        switch (type) {
        case BSON_TYPE_DOUBLE:
        case BSON_TYPE_DATE_TIME:
        case BSON_TYPE_TIMESTAMP:
        case BSON_TYPE_INT64:
            size = 8;
            break;
        case BSON_TYPE_INT32:
            size = 4;
            break;
        case BSON_TYPE_BOOL:
            if (room < 1 || v[0] > 1)
                return false;
            size = 1;
            break;
        case BSON_TYPE_OID:
            size = 12;
            break;
        case BSON_TYPE_DECIMAL128:
            size = 16;
            break;
        case BSON_TYPE_UNDEFINED:
        case BSON_TYPE_NULL:
        case BSON_TYPE_MINKEY:
        case BSON_TYPE_MAXKEY:
            size = 0;
            break;
        case BSON_TYPE_UTF8:
        case BSON_TYPE_CODE:
        case BSON_TYPE_SYMBOL:
            size = bson_string_size(v, room);
            if (size == 0)
                return false;
            break;
        case BSON_TYPE_BINARY: {
            if (room < 5)
                return false;
            uint32_t l = mt_wire_le32(v);
            if (l > room - 5)
                return false;
            /* the old binary subtype repeats the length inside */
            if (v[4] == BSON_SUBTYPE_BINARY_DEPRECATED && (l < 4 || mt_wire_le32(v + 5) != l - 4))
                return false;
            size = 5 + (size_t)l;
            break;
        }
        case BSON_TYPE_REGEX: {
            size_t a = bson_cstring_size(v, room);
            if (a == 0)
                return false;
            size_t b = bson_cstring_size(v + a, room - a);
            if (b == 0)
                return false;
            size = a + b;
            break;
        }
        case BSON_TYPE_DBPOINTER: {
            size_t a = bson_string_size(v, room);
            if (a == 0 || room - a < 12)
                return false;
            size = a + 12;
            break;
        }
        case BSON_TYPE_DOCUMENT:
        case BSON_TYPE_ARRAY: {
            if (room < 5)
                return false;
            uint32_t l = mt_wire_le32(v);
            if (l < 5 || l > room || v[l - 1] != 0 || depth == MT_MSG_MAX_DEPTH)
                return false;
            ends[++depth] = pos + l - 1;
            pos += 4;
            continue;
        }
        case BSON_TYPE_CODEWSCOPE: {
            /* int32 total, string code, document scope; the scope ends the element */
            if (room < 14)
                return false;
            uint32_t total = mt_wire_le32(v);
            if (total < 14 || total > room)
                return false;
            size_t code = bson_string_size(v + 4, total - 4);
            if (code == 0 || total - 4 - code < 5)
                return false;
            const uint8_t *scope = v + 4 + code;
            uint32_t l = mt_wire_le32(scope);
            if (l != total - 4 - code || scope[l - 1] != 0 || depth == MT_MSG_MAX_DEPTH)
                return false;
            pos += (uint32_t)(4 + code);
            ends[++depth] = pos + l - 1;
            pos += 4;
            continue;
        }
        default:
            return false;
        }
        if (size > room)
            return false;
        pos += (uint32_t)size;
    }
}

mt_msg_err_t mt_msg_validate_bson(const uint8_t *doc, size_t avail, uint32_t *doc_len)
{
    if (avail < 4)
        return MT_MSG_ERR_TRUNCATED;
    uint32_t len = mt_wire_le32(doc);
    if (len > avail)
        return MT_MSG_ERR_TRUNCATED;
    if (len < 5 || len > INT32_MAX || !bson_walk(doc, len))
        return MT_MSG_ERR_BSON;
    *doc_len = len;
    return MT_MSG_OK;
}

/* ---- the bytes a decoder reads ------------------------------------------ */

/*
 * A decoder reads a span: a whole message, or an OP_COMPRESSED payload
 * decompressed into scratch on demand, as far as the decoder asks and the
 * limit allows:
 *
 *   scratch: [ synthesised 16-byte header | have - 16 bytes inflated | ... ]
 *                                                            limit ^   len ^
 *
 * Decoders ask for whole units (a length prefix, then the whole document it
 * announces), so nothing is inflated that the view would not use. When a
 * unit does not fit under the limit the span is cut: the decoder stops and
 * the view keeps what it read before.
 */
typedef struct {
    int id; /* mt_compressor_t */
    const uint8_t *src;
    size_t src_len;
    size_t src_used; /* noop */
    z_stream *z;
    ZSTD_DCtx *zd;
    ZSTD_inBuffer zin;
    bool ended; /* the compressed stream has ended */
} inflater_t;

typedef struct {
    const uint8_t *msg;
    uint8_t *dst; /* writable alias of msg while inflating, else NULL */
    size_t len;   /* the whole message's length, header included */
    size_t have;  /* bytes of msg that can be read */
    size_t limit; /* have never grows past this */
    inflater_t *inf;
    bool cut; /* a unit did not fit under the limit */
} span_t;

static mt_msg_err_t inflate_to(span_t *s, size_t end)
{
    inflater_t *inf = s->inf;
    size_t want = end - s->have;

    if (inf->ended)
        return MT_MSG_ERR_DECOMPRESS; /* shorter than its declared size */
    switch (inf->id) {
    case MT_COMPRESSOR_NOOP:
        if (want > inf->src_len - inf->src_used)
            return MT_MSG_ERR_DECOMPRESS;
        memcpy(s->dst + s->have, inf->src + inf->src_used, want);
        inf->src_used += want;
        s->have = end;
        return MT_MSG_OK;
    case MT_COMPRESSOR_SNAPPY: {
        /* no streaming decoder: the whole payload, which fits (see below) */
        size_t n = s->len - s->have;
        if (snappy_uncompress((const char *)inf->src, inf->src_len, (char *)s->dst + s->have, &n) !=
                SNAPPY_OK ||
            n != s->len - s->have)
            return MT_MSG_ERR_DECOMPRESS;
        s->have = s->len;
        inf->ended = true;
        return MT_MSG_OK;
    }
    case MT_COMPRESSOR_ZLIB: {
        z_stream *z = inf->z;
        z->next_out = s->dst + s->have;
        z->avail_out = (uInt)want;
        while (z->avail_out > 0) {
            /* Z_BUF_ERROR: no progress possible, the input ran out */
            int rc = inflate(z, Z_NO_FLUSH);
            s->have = end - z->avail_out;
            if (rc == Z_STREAM_END) {
                inf->ended = true;
                break;
            }
            if (rc == Z_MEM_ERROR)
                return MT_MSG_ERR_NOMEM;
            if (rc != Z_OK)
                return MT_MSG_ERR_DECOMPRESS;
        }
        return z->avail_out == 0 ? MT_MSG_OK : MT_MSG_ERR_DECOMPRESS;
    }
    case MT_COMPRESSOR_ZSTD: {
        ZSTD_outBuffer out = {s->dst + s->have, want, 0};
        while (out.pos < out.size) {
            size_t in_before = inf->zin.pos, out_before = out.pos;
            size_t rc = ZSTD_decompressStream(inf->zd, &out, &inf->zin);
            s->have = end - (out.size - out.pos);
            if (ZSTD_isError(rc))
                return MT_MSG_ERR_DECOMPRESS;
            if (rc == 0) {
                inf->ended = true;
                break;
            }
            if (out.pos == out_before && inf->zin.pos == in_before)
                return MT_MSG_ERR_DECOMPRESS; /* input ran out */
        }
        return out.pos == out.size ? MT_MSG_OK : MT_MSG_ERR_DECOMPRESS;
    }
    default:
        return MT_MSG_ERR_COMPRESSOR;
    }
}

/* After the declared size was produced: the stream must end there. */
static mt_msg_err_t inflater_check_end(inflater_t *inf)
{
    uint8_t extra;

    switch (inf->id) {
    case MT_COMPRESSOR_NOOP:
        return inf->src_used == inf->src_len ? MT_MSG_OK : MT_MSG_ERR_DECOMPRESS;
    case MT_COMPRESSOR_ZLIB:
        if (!inf->ended) {
            inf->z->next_out = &extra;
            inf->z->avail_out = 1;
            if (inflate(inf->z, Z_FINISH) != Z_STREAM_END || inf->z->avail_out == 0)
                return MT_MSG_ERR_DECOMPRESS;
        }
        return MT_MSG_OK;
    case MT_COMPRESSOR_ZSTD:
        if (!inf->ended) {
            ZSTD_outBuffer out = {&extra, 1, 0};
            size_t rc = ZSTD_decompressStream(inf->zd, &out, &inf->zin);
            if (ZSTD_isError(rc) || rc != 0 || out.pos != 0)
                return MT_MSG_ERR_DECOMPRESS;
        }
        /* one frame, nothing after it */
        return inf->zin.pos == inf->zin.size ? MT_MSG_OK : MT_MSG_ERR_DECOMPRESS;
    default:
        return MT_MSG_OK; /* snappy checked its size as it decompressed */
    }
}

/* Makes msg[0..min(pos + n, len)) readable; past the end of the message it
 * is the decoder's bounded readers that report the error. Sets s->cut and
 * returns MT_MSG_OK when that would pass the limit. */
static mt_msg_err_t span_need(span_t *s, const uint8_t *pos, size_t n)
{
    size_t end = (size_t)(pos - s->msg) + n;

    if (end > s->len)
        end = s->len;
    if (end <= s->have)
        return MT_MSG_OK;
    if (end > s->limit) {
        s->cut = true;
        return MT_MSG_OK;
    }
    return inflate_to(s, end);
}

/* A document at pos with left bytes before the end of its container: its
 * length prefix, then the whole document when it fits there. */
static mt_msg_err_t span_need_doc(span_t *s, const uint8_t *pos, size_t left)
{
    mt_msg_err_t err = span_need(s, pos, left < 4 ? left : 4);
    if (err != MT_MSG_OK || s->cut || left < 4)
        return err;
    uint32_t dlen = mt_wire_le32(pos);
    return dlen <= left ? span_need(s, pos, dlen) : MT_MSG_OK;
}

/* A cstring at pos: identifiers and namespaces are short, so a probe
 * usually finds the NUL; otherwise the rest of the container. */
#define SPAN_CSTRING_PROBE 256

static mt_msg_err_t span_need_cstring(span_t *s, const uint8_t *pos, size_t left)
{
    size_t probe = left < SPAN_CSTRING_PROBE ? left : SPAN_CSTRING_PROBE;
    mt_msg_err_t err = span_need(s, pos, probe);
    if (err != MT_MSG_OK || s->cut || memchr(pos, 0, probe))
        return err;
    return span_need(s, pos, left);
}

/* Leaves the decoder on an error, or with MT_MSG_OK (a partial view) when
 * the span was cut. */
#define NEED(s, call)                                                                              \
    do {                                                                                           \
        mt_msg_err_t need_err_ = (call);                                                           \
        if (need_err_ != MT_MSG_OK || (s)->cut)                                                    \
            return need_err_;                                                                      \
    } while (0)

/* ---- opcodes ------------------------------------------------------------ */

/*
 * OP_MSG after the header:
 *
 *   uint32 flagBits | section* | [uint32 CRC-32C of all preceding bytes]
 *   section = 0x00 document  |  0x01 int32 size, cstring identifier, document*
 */
/* The body document at *pos: read in, validated, put in the view, stepped
 * over; MT_MSG_OK with s->cut when it lies past the limit. */
static mt_msg_err_t take_body(span_t *s, const uint8_t **pos, size_t *left, mt_msg_t *out)
{
    uint32_t dlen;
    mt_msg_err_t err = span_need_doc(s, *pos, *left);

    if (err != MT_MSG_OK || s->cut)
        return err;
    if ((err = mt_msg_validate_bson(*pos, *left, &dlen)) != MT_MSG_OK)
        return err;
    out->body = *pos;
    out->body_len = dlen;
    *pos += dlen;
    *left -= dlen;
    return MT_MSG_OK;
}

static mt_msg_err_t parse_op_msg(span_t *s, mt_msg_t *out)
{
    const uint8_t *pos = s->msg + MT_WIRE_HEADER_LEN;
    size_t left = s->len - MT_WIRE_HEADER_LEN;

    NEED(s, span_need(s, pos, 4));
    if (!mt_wire_rd_u32(&pos, &left, &out->flags))
        return MT_MSG_ERR_TRUNCATED;
    if (out->flags & MT_MSG_FLAG_CHECKSUM_PRESENT) {
        if (left < 4)
            return MT_MSG_ERR_TRUNCATED;
        left -= 4;
        out->checksum_present = true;
        /* a message read only in part cannot be checked */
        if (s->have == s->len) {
            out->checksum = mt_wire_le32(pos + left);
            if (mt_msg_crc32c(s->msg, s->len - 4) != out->checksum)
                return MT_MSG_ERR_CHECKSUM;
        }
    }

    while (left > 0) {
        NEED(s, span_need(s, pos, 1));
        uint8_t kind = *pos++;
        left--;
        uint32_t dlen;
        mt_msg_err_t err;
        if (kind == 0) {
            if (out->body)
                return MT_MSG_ERR_SECTION;
            NEED(s, take_body(s, &pos, &left, out));
        } else if (kind == 1) {
            int32_t size;
            const uint8_t *start = pos;
            NEED(s, span_need(s, pos, 4));
            if (!mt_wire_rd_i32(&pos, &left, &size))
                return MT_MSG_ERR_TRUNCATED;
            if (size < 5)
                return MT_MSG_ERR_SECTION;
            if ((size_t)size - 4 > left)
                return MT_MSG_ERR_TRUNCATED;
            size_t sleft = (size_t)size - 4;
            const char *ident;
            NEED(s, span_need_cstring(s, pos, sleft));
            if (!mt_wire_rd_cstring(&pos, &sleft, &ident, NULL))
                return MT_MSG_ERR_SECTION;
            /* kept from the start, so that a cut leaves the documents read so far */
            mt_msg_sequence_t *seq = NULL;
            if (out->nseqs < MT_MSG_MAX_SEQUENCES) {
                seq = &out->seqs[out->nseqs++];
                seq->identifier = ident;
                seq->docs = pos;
                seq->docs_len = 0;
                seq->count = 0;
                seq->partial = true;
            }
            while (sleft > 0) {
                NEED(s, span_need_doc(s, pos, sleft));
                if ((err = mt_msg_validate_bson(pos, sleft, &dlen)) != MT_MSG_OK)
                    return err == MT_MSG_ERR_TRUNCATED ? MT_MSG_ERR_SECTION : err;
                pos += dlen;
                sleft -= dlen;
                if (seq) {
                    seq->docs_len += dlen;
                    seq->count++;
                }
            }
            if (seq)
                seq->partial = false;
            left -= (size_t)(pos - start) - 4;
        } else {
            return MT_MSG_ERR_SECTION;
        }
    }
    if (!out->body)
        return MT_MSG_ERR_SECTION;
    return MT_MSG_OK;
}

/* OP_QUERY: int32 flags, cstring namespace, int32 skip, int32 return,
 * document query, [document returnFieldsSelector]. */
static mt_msg_err_t parse_op_query(span_t *s, mt_msg_t *out)
{
    const uint8_t *pos = s->msg + MT_WIRE_HEADER_LEN;
    size_t left = s->len - MT_WIRE_HEADER_LEN;
    uint32_t dlen;
    mt_msg_err_t err;

    NEED(s, span_need(s, pos, 4));
    if (!mt_wire_rd_i32(&pos, &left, &out->query_flags))
        return MT_MSG_ERR_TRUNCATED;
    NEED(s, span_need_cstring(s, pos, left));
    if (!mt_wire_rd_cstring(&pos, &left, &out->full_collection, NULL))
        return MT_MSG_ERR_TRUNCATED;
    NEED(s, span_need(s, pos, 8));
    if (!mt_wire_rd_i32(&pos, &left, &out->number_to_skip) ||
        !mt_wire_rd_i32(&pos, &left, &out->number_to_return))
        return MT_MSG_ERR_TRUNCATED;
    NEED(s, take_body(s, &pos, &left, out));
    if (left > 0) {
        NEED(s, span_need_doc(s, pos, left));
        if ((err = mt_msg_validate_bson(pos, left, &dlen)) != MT_MSG_OK)
            return err;
        if (dlen != left)
            return MT_MSG_ERR_SECTION;
    }
    return MT_MSG_OK;
}

/* OP_REPLY: int32 responseFlags, int64 cursorID, int32 startingFrom,
 * int32 numberReturned, document* (exactly numberReturned of them). */
static mt_msg_err_t parse_op_reply(span_t *s, mt_msg_t *out)
{
    const uint8_t *pos = s->msg + MT_WIRE_HEADER_LEN;
    size_t left = s->len - MT_WIRE_HEADER_LEN;

    NEED(s, span_need(s, pos, 20));
    if (!mt_wire_rd_i32(&pos, &left, &out->response_flags) ||
        !mt_wire_rd_i64(&pos, &left, &out->cursor_id) ||
        !mt_wire_rd_i32(&pos, &left, &out->starting_from) ||
        !mt_wire_rd_i32(&pos, &left, &out->number_returned))
        return MT_MSG_ERR_TRUNCATED;
    if (out->number_returned < 0)
        return MT_MSG_ERR_SECTION;
    out->reply_docs = pos;
    out->reply_docs_len = 0;
    int32_t count = 0;
    while (left > 0) {
        uint32_t dlen;
        NEED(s, span_need_doc(s, pos, left));
        mt_msg_err_t err = mt_msg_validate_bson(pos, left, &dlen);
        if (err != MT_MSG_OK)
            return err;
        if (count == 0) {
            out->body = pos;
            out->body_len = dlen;
        }
        pos += dlen;
        left -= dlen;
        out->reply_docs_len += dlen;
        count++;
    }
    if (count != out->number_returned)
        return MT_MSG_ERR_SECTION;
    return MT_MSG_OK;
}

static mt_msg_err_t parse_inner(span_t *s, int32_t opcode, mt_msg_t *out)
{
    switch (opcode) {
    case MT_OP_MSG:
        return parse_op_msg(s, out);
    case MT_OP_QUERY:
        return parse_op_query(s, out);
    case MT_OP_REPLY:
        return parse_op_reply(s, out);
    default:
        return MT_MSG_ERR_OPCODE;
    }
}

static bool scratch_reserve(mt_msg_scratch_t *s, size_t need)
{
    if (s->cap >= need)
        return true;
    size_t cap = s->cap ? s->cap : 4096;
    while (cap < need)
        cap *= 2;
    uint8_t *p = realloc(s->data, cap);
    if (!p)
        return false;
    s->data = p;
    s->cap = cap;
    return true;
}

/* Deflate expands at most 1032:1, so a payload too short for the declared
 * size is refused before the scratch buffer grows for it. */
#define ZLIB_MAX_RATIO 1032u
#define ZSTD_BLOCK_MAX (128u * 1024u)

/* Refuses payloads that cannot possibly yield the declared size, without
 * allocating: a compression bomb costs us nothing but this check. */
static bool plausible(int id, const uint8_t *src, size_t src_len, size_t size)
{
    switch (id) {
    case MT_COMPRESSOR_NOOP:
        return src_len == size;
    case MT_COMPRESSOR_SNAPPY: {
        size_t n;
        return snappy_uncompressed_length((const char *)src, src_len, &n) == SNAPPY_OK && n == size;
    }
    case MT_COMPRESSOR_ZLIB:
        return (uint64_t)src_len * ZLIB_MAX_RATIO + 64 >= size;
    case MT_COMPRESSOR_ZSTD: {
        unsigned long long n = ZSTD_getFrameContentSize(src, src_len);
        if (n == ZSTD_CONTENTSIZE_ERROR)
            return false;
        if (n != ZSTD_CONTENTSIZE_UNKNOWN)
            return n == size;
        /* No declared content size: each block yields at most 128 KiB and
         * takes at least 3 bytes of input. */
        return ((uint64_t)src_len / 3 + 1) * ZSTD_BLOCK_MAX >= size;
    }
    default:
        return false;
    }
}

/* Streaming state for zlib and zstd, kept in scratch and reset per message. */
static mt_msg_err_t inflater_start(inflater_t *inf, int id, const uint8_t *src, size_t src_len,
                                   mt_msg_scratch_t *scratch)
{
    memset(inf, 0, sizeof(*inf));
    inf->id = id;
    inf->src = src;
    inf->src_len = src_len;
    if (id == MT_COMPRESSOR_ZLIB) {
        if (!scratch->zlib) {
            z_stream *z = calloc(1, sizeof(*z));
            if (!z || inflateInit(z) != Z_OK) {
                free(z);
                return MT_MSG_ERR_NOMEM;
            }
            scratch->zlib = z;
        } else if (inflateReset(scratch->zlib) != Z_OK) {
            return MT_MSG_ERR_DECOMPRESS;
        }
        inf->z = scratch->zlib;
        inf->z->next_in = (Bytef *)src;
        inf->z->avail_in = (uInt)src_len;
    } else if (id == MT_COMPRESSOR_ZSTD) {
        if (!scratch->zstd && !(scratch->zstd = ZSTD_createDCtx()))
            return MT_MSG_ERR_NOMEM;
        inf->zd = scratch->zstd;
        ZSTD_DCtx_reset(inf->zd, ZSTD_reset_session_only);
        inf->zin = (ZSTD_inBuffer){src, src_len, 0};
    }
    return MT_MSG_OK;
}

/*
 * OP_COMPRESSED: int32 originalOpcode, int32 uncompressedSize, uint8
 * compressorId, payload. The inner message is rebuilt in scratch behind a
 * synthesised header, so the ordinary decoders (and the OP_MSG checksum) see
 * a message. When it fits under the limit it is decompressed whole and its
 * size checked; otherwise (zlib, zstd, noop) only as far as the decoder
 * reads whole units under the limit. snappy has no streaming decoder: a
 * snappy payload over the limit is not decompressed at all.
 */
static mt_msg_err_t parse_op_compressed(const uint8_t *msg, size_t len, mt_msg_scratch_t *scratch,
                                        mt_msg_budget_t *budget, mt_msg_t *out)
{
    const uint8_t *pos = msg + MT_WIRE_HEADER_LEN;
    size_t left = len - MT_WIRE_HEADER_LEN;
    int32_t opcode, size;

    if (!mt_wire_rd_i32(&pos, &left, &opcode) || !mt_wire_rd_i32(&pos, &left, &size) || left < 1)
        return MT_MSG_ERR_TRUNCATED;
    uint8_t id = *pos++;
    left--;
    out->opcode = opcode;
    out->compressor = id;

    if (opcode == MT_OP_COMPRESSED)
        return MT_MSG_ERR_NESTED;
    if (id > MT_COMPRESSOR_ZSTD)
        return MT_MSG_ERR_COMPRESSOR;
    if (size < 0 || size > MT_WIRE_MAX_MESSAGE)
        return MT_MSG_ERR_TOO_LARGE;
    if (opcode != MT_OP_MSG && opcode != MT_OP_QUERY && opcode != MT_OP_REPLY)
        return MT_MSG_ERR_OPCODE;
    if (!scratch)
        return MT_MSG_ERR_OPCODE;
    if (!plausible(id, pos, left, (size_t)size))
        return MT_MSG_ERR_DECOMPRESS;

    size_t limit = MT_MSG_INFLATE_MAX - MT_WIRE_HEADER_LEN; /* the header is ours */
    if (budget && budget->left < limit)
        limit = budget->left;
    bool whole = (size_t)size <= limit;
    if (!whole && (limit == 0 || id == MT_COMPRESSOR_SNAPPY)) {
        out->partial = true; /* nothing decompressed */
        return MT_MSG_OK;
    }

    size_t inner_len = MT_WIRE_HEADER_LEN + (size_t)size;
    size_t room = MT_WIRE_HEADER_LEN + (whole ? (size_t)size : limit);
    if (!scratch_reserve(scratch, room))
        return MT_MSG_ERR_NOMEM;
    scratch->len = 0;
    mt_wire_put_le32(scratch->data, (uint32_t)inner_len);
    mt_wire_put_le32(scratch->data + 4, (uint32_t)out->hdr.request_id);
    mt_wire_put_le32(scratch->data + 8, (uint32_t)out->hdr.response_to);
    mt_wire_put_le32(scratch->data + 12, (uint32_t)opcode);

    inflater_t inf;
    span_t s = {scratch->data, scratch->data, inner_len, MT_WIRE_HEADER_LEN, room, &inf, false};
    mt_msg_err_t err = inflater_start(&inf, id, pos, left, scratch);
    if (err == MT_MSG_OK && whole) {
        err = span_need(&s, s.msg, inner_len);
        if (err == MT_MSG_OK)
            err = inflater_check_end(&inf);
    }
    if (err == MT_MSG_OK)
        err = parse_inner(&s, opcode, out);
    out->inflated = s.have - MT_WIRE_HEADER_LEN;
    out->partial = err == MT_MSG_OK && s.cut;
    scratch->len = s.have;
    if (budget) {
        /* zstd decodes a block (up to 128 KiB) ahead of what it hands out */
        size_t used = out->inflated;
        if (id == MT_COMPRESSOR_ZSTD && !inf.ended)
            used += (size_t)size - out->inflated < ZSTD_BLOCK_MAX ? (size_t)size - out->inflated
                                                                  : ZSTD_BLOCK_MAX;
        budget->left -= used < budget->left ? used : budget->left;
    }
    return err;
}

mt_msg_err_t mt_msg_parse_budget(const uint8_t *buf, size_t len, mt_msg_scratch_t *scratch,
                                 mt_msg_budget_t *budget, mt_msg_t *out)
{
    memset(out, 0, sizeof(*out));
    out->compressor = MT_COMPRESSOR_NONE;

    switch (mt_wire_header_parse(buf, len, &out->hdr)) {
    case MT_WIRE_NEED_MORE:
        return MT_MSG_ERR_TRUNCATED;
    case MT_WIRE_ERR:
        return MT_MSG_ERR_HEADER;
    case MT_WIRE_OK:
        break;
    }
    out->opcode = out->hdr.opcode;
    if ((size_t)out->hdr.message_length > len)
        return MT_MSG_ERR_TRUNCATED;
    if ((size_t)out->hdr.message_length < len)
        return MT_MSG_ERR_HEADER;

    if (out->hdr.opcode == MT_OP_COMPRESSED)
        return parse_op_compressed(buf, len, scratch, budget, out);
    span_t s = {buf, NULL, len, len, len, NULL, false};
    return parse_inner(&s, out->hdr.opcode, out);
}

mt_msg_err_t mt_msg_parse(const uint8_t *buf, size_t len, mt_msg_scratch_t *scratch, mt_msg_t *out)
{
    return mt_msg_parse_budget(buf, len, scratch, NULL, out);
}

mt_msg_err_t mt_msg_parse_prefix(const uint8_t *buf, size_t have, mt_msg_t *out)
{
    memset(out, 0, sizeof(*out));
    out->compressor = MT_COMPRESSOR_NONE;
    if (mt_wire_header_parse(buf, have, &out->hdr) != MT_WIRE_OK)
        return have < MT_WIRE_HEADER_LEN ? MT_MSG_ERR_TRUNCATED : MT_MSG_ERR_HEADER;
    out->opcode = out->hdr.opcode;
    size_t len = (size_t)out->hdr.message_length;
    if (len <= have)
        return mt_msg_parse(buf, len, NULL, out);
    if (out->hdr.opcode != MT_OP_MSG)
        return MT_MSG_ERR_TRUNCATED;
    /* the bytes there are, and no more: the decoder stops at the first unit past them */
    span_t s = {buf, NULL, len, have, have, NULL, false};
    mt_msg_err_t err = parse_op_msg(&s, out);
    out->partial = err == MT_MSG_OK && s.cut;
    if (out->partial && !out->body)
        return MT_MSG_ERR_SECTION; /* the body must be among what was kept */
    return err;
}

/* ---- compression (tests, fuzz seeds, benchmark) -------------------------- */

int mt_msg_compress(int compressor, const uint8_t *src, size_t len, uint8_t **out, size_t *out_len)
{
    uint8_t *dst = NULL;
    size_t n = 0;

    *out = NULL;
    *out_len = 0;
    switch (compressor) {
    case MT_COMPRESSOR_NOOP:
        n = len;
        if (!(dst = malloc(n ? n : 1)))
            return -1;
        memcpy(dst, src, len);
        break;
    case MT_COMPRESSOR_SNAPPY:
        n = snappy_max_compressed_length(len);
        if (!(dst = malloc(n)))
            return -1;
        if (snappy_compress((const char *)src, len, (char *)dst, &n) != SNAPPY_OK)
            goto fail;
        break;
    case MT_COMPRESSOR_ZLIB: {
        uLongf zn = compressBound((uLong)len);
        if (!(dst = malloc(zn)))
            return -1;
        if (compress2(dst, &zn, src, (uLong)len, Z_DEFAULT_COMPRESSION) != Z_OK)
            goto fail;
        n = zn;
        break;
    }
    case MT_COMPRESSOR_ZSTD:
        n = ZSTD_compressBound(len);
        if (!(dst = malloc(n)))
            return -1;
        n = ZSTD_compress(dst, n, src, len, 1);
        if (ZSTD_isError(n))
            goto fail;
        break;
    default:
        return -1;
    }
    *out = dst;
    *out_len = n;
    return 0;
fail:
    free(dst);
    return -1;
}

int mt_msg_compress_message(int compressor, const uint8_t *msg, size_t len, uint8_t **out,
                            size_t *out_len)
{
    mt_wire_header_t hdr;
    uint8_t *payload;
    size_t plen;

    *out = NULL;
    *out_len = 0;
    if (mt_wire_header_parse(msg, len, &hdr) != MT_WIRE_OK || (size_t)hdr.message_length != len)
        return -1;
    if (mt_msg_compress(compressor, msg + MT_WIRE_HEADER_LEN, len - MT_WIRE_HEADER_LEN, &payload,
                        &plen) != 0)
        return -1;
    size_t total = MT_WIRE_HEADER_LEN + 9 + plen;
    uint8_t *dst = total <= MT_WIRE_MAX_MESSAGE ? malloc(total) : NULL;
    if (!dst) {
        free(payload);
        return -1;
    }
    mt_wire_put_le32(dst, (uint32_t)total);
    mt_wire_put_le32(dst + 4, (uint32_t)hdr.request_id);
    mt_wire_put_le32(dst + 8, (uint32_t)hdr.response_to);
    mt_wire_put_le32(dst + 12, MT_OP_COMPRESSED);
    mt_wire_put_le32(dst + 16, (uint32_t)hdr.opcode);
    mt_wire_put_le32(dst + 20, (uint32_t)(len - MT_WIRE_HEADER_LEN));
    dst[24] = (uint8_t)compressor;
    memcpy(dst + 25, payload, plen);
    free(payload);
    *out = dst;
    *out_len = total;
    return 0;
}
