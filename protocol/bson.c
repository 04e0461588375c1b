/*
 * bson: one element step (elem_step) checks an element's key and bounds;
 * the validator walks a whole document with it and an explicit stack, the
 * cursor hands each step to a reader. Lengths are checked before any byte
 * they announce is read.
 */
#include "bson.h"

#include <math.h>
#include <string.h>

#include "hash.h"
#include "utf8.h"
#include "wire.h"

enum {
    T_DOUBLE = 0x01,
    T_UTF8 = 0x02,
    T_DOCUMENT = 0x03,
    T_ARRAY = 0x04,
    T_BINARY = 0x05,
    T_UNDEFINED = 0x06,
    T_OID = 0x07,
    T_BOOL = 0x08,
    T_DATE_TIME = 0x09,
    T_NULL = 0x0A,
    T_REGEX = 0x0B,
    T_DBPOINTER = 0x0C,
    T_CODE = 0x0D,
    T_SYMBOL = 0x0E,
    T_CODEWSCOPE = 0x0F,
    T_INT32 = 0x10,
    T_TIMESTAMP = 0x11,
    T_INT64 = 0x12,
    T_DECIMAL128 = 0x13,
    T_MAXKEY = 0x7F,
    T_MINKEY = 0xFF,
};

#define SUBTYPE_BINARY_DEPRECATED 0x02

const char *mt_bson_check_str(mt_bson_check_t check)
{
    switch (check) {
    case MT_BSON_CHECK_STRUCTURE:
        return "structure";
    case MT_BSON_CHECK_UTF8:
        return "utf8";
    }
    return "unknown";
}

/* A BSON string at p with room bytes before the enclosing terminator: int32
 * length (>= 1, counting the NUL), bytes, NUL. Its size, or 0. */
static inline size_t string_size(const uint8_t *p, size_t room)
{
    if (room < 5)
        return 0;
    uint32_t l = mt_wire_le32(p);
    if (l < 1 || l > room - 4 || p[4 + l - 1] != 0)
        return 0;
    return 4 + (size_t)l;
}

/* A key or regex part: bytes up to a NUL within room, valid UTF-8. Eight
 * bytes at a time: the lowest zero byte of a word is found exactly by the
 * borrow trick (bits above it may be wrong, and are not used), and the high
 * bits of the bytes before it say whether the UTF-8 decoder is needed. */
static inline size_t cstring_size(const uint8_t *p, size_t room)
{
    const uint64_t ones = UINT64_C(0x0101010101010101), highs = UINT64_C(0x8080808080808080);
    uint64_t high = 0;
    size_t i = 0;

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    for (; i + 8 <= room; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        uint64_t zero = (w - ones) & ~w & highs;
        if (zero) {
            /* zero - 1: the bytes before the NUL (its own byte is 0 in w) */
            high |= w & (zero - 1);
            i += (unsigned)__builtin_ctzll(zero) / 8;
            goto found;
        }
        high |= w;
    }
#endif
    for (; i < room; i++) {
        if (p[i] == 0)
            goto found;
        high |= p[i];
    }
    return 0;
found:
    if ((high & highs) && !mt_utf8_valid(p, i))
        return 0;
    return i + 1;
}

/* A container's bounds at v with room bytes left: length prefix >= 5 that
 * fits, terminating NUL. */
static inline uint32_t container_size(const uint8_t *v, size_t room)
{
    if (room < 5)
        return 0;
    uint32_t l = mt_wire_le32(v);
    if (l < 5 || l > room || v[l - 1] != 0)
        return 0;
    return l;
}

/* The size of a value of one of the rarer types at v (room bytes left), 0
 * when it is not well-formed. Out of line: the common types stay in a small
 * loop body. */
static __attribute__((noinline)) size_t rare_size(uint8_t type, const uint8_t *v, size_t room)
{
    switch (type) {
    case T_BINARY: {
        if (room < 5)
            return 0;
        uint32_t l = mt_wire_le32(v);
        if (l > room - 5)
            return 0;
        /* the old binary subtype repeats the length inside */
        if (v[4] == SUBTYPE_BINARY_DEPRECATED && (l < 4 || mt_wire_le32(v + 5) != l - 4))
            return 0;
        return 5 + (size_t)l;
    }
    case T_REGEX: {
        size_t a = cstring_size(v, room);
        if (a == 0)
            return 0;
        size_t b = cstring_size(v + a, room - a);
        return b == 0 ? 0 : a + b;
    }
    case T_DBPOINTER: {
        size_t a = string_size(v, room);
        if (a == 0 || room - a < 12)
            return 0;
        return a + 12;
    }
    case T_CODEWSCOPE: {
        /* int32 total, string code, document scope; the scope ends the element */
        if (room < 14)
            return 0;
        uint32_t total = mt_wire_le32(v);
        if (total < 14 || total > room)
            return 0;
        size_t code = string_size(v + 4, total - 4);
        if (code == 0 || total - 4 - code < 5)
            return 0;
        const uint8_t *scope = v + 4 + code;
        uint32_t l = mt_wire_le32(scope);
        if (l != total - 4 - code || scope[l - 1] != 0)
            return 0;
        return total;
    }
    case T_UNDEFINED:
    case T_MINKEY:
    case T_MAXKEY:
        return SIZE_MAX; /* no value bytes */
    case T_DECIMAL128:
        return 16;
    default:
        return 0;
    }
}

/*
 * The element at doc[pos] inside a document whose terminator is at end
 * (pos < end): its key checked, its value bounded and, for scalars, checked
 * as bson_validate() checks it (bool values, the old binary subtype's inner
 * length). Returns the offset after it, 0 when it is not well-formed.
 */
static inline __attribute__((always_inline)) uint32_t elem_step(const uint8_t *doc, uint32_t pos,
                                                                uint32_t end, mt_bson_elem_t *e)
{
    uint8_t type = doc[pos++];
    size_t klen = cstring_size(doc + pos, end - pos);
    if (klen == 0)
        return 0;
    e->type = type;
    e->key = (const char *)doc + pos;
    e->key_len = (uint32_t)klen - 1;
    pos += (uint32_t)klen;
    size_t room = end - pos;
    const uint8_t *v = doc + pos;
    size_t size;

    switch (type) {
    case T_DOUBLE:
    case T_DATE_TIME:
    case T_TIMESTAMP:
    case T_INT64:
        size = 8;
        break;
    case T_INT32:
        size = 4;
        break;
    case T_BOOL:
        if (room < 1 || v[0] > 1)
            return 0;
        size = 1;
        break;
    case T_OID:
        size = 12;
        break;
    case T_NULL:
        size = 0;
        break;
    case T_UTF8:
    case T_CODE:
    case T_SYMBOL:
        size = string_size(v, room);
        if (size == 0)
            return 0;
        break;
    case T_DOCUMENT:
    case T_ARRAY:
        size = container_size(v, room);
        if (size == 0)
            return 0;
        break;
    default:
        size = rare_size(type, v, room);
        if (size == 0)
            return 0;
        if (size == SIZE_MAX)
            size = 0;
        break;
    }
    if (size > room)
        return 0;
    e->value = v;
    e->value_len = (uint32_t)size;
    return pos + (uint32_t)size;
}

/* The document a container element opens (its scope for code-with-scope),
 * as an offset into doc and a length; false for scalars. */
static inline bool elem_subdoc(const mt_bson_elem_t *e, const uint8_t **sub, uint32_t *len)
{
    if (e->type == T_DOCUMENT || e->type == T_ARRAY) {
        *sub = e->value;
        *len = e->value_len;
        return true;
    }
    if (e->type == T_CODEWSCOPE) {
        uint32_t code = 4 + mt_wire_le32(e->value + 4);
        *sub = e->value + 4 + code;
        *len = e->value_len - 4 - code;
        return true;
    }
    return false;
}

/* String values of e valid UTF-8 (true for every other type). */
static bool elem_utf8(const mt_bson_elem_t *e)
{
    const uint8_t *s = e->value;
    switch (e->type) {
    case T_UTF8:
    case T_CODE:
    case T_SYMBOL:
    case T_DBPOINTER:
        break;
    case T_CODEWSCOPE:
        s += 4;
        break;
    default:
        return true;
    }
    return mt_utf8_valid(s + 4, mt_wire_le32(s) - 1);
}

bool mt_bson_validate(const uint8_t *doc, uint32_t len, unsigned max_depth, mt_bson_check_t check)
{
    uint32_t ends[MT_BSON_MAX_DEPTH + 1];
    unsigned depth = 0;
    uint32_t pos = 4;

    if (len < 5 || mt_wire_le32(doc) != len || doc[len - 1] != 0)
        return false;
    if (max_depth > MT_BSON_MAX_DEPTH)
        max_depth = MT_BSON_MAX_DEPTH;
    ends[0] = len - 1;
    for (;;) {
        if (pos == ends[depth]) {
            if (depth == 0)
                return true;
            pos++;
            depth--;
            continue;
        }
        mt_bson_elem_t e;
        uint32_t next = elem_step(doc, pos, ends[depth], &e);
        if (next == 0)
            return false;
        if (check == MT_BSON_CHECK_UTF8 && !elem_utf8(&e))
            return false;
        const uint8_t *sub;
        uint32_t sub_len;
        if (elem_subdoc(&e, &sub, &sub_len)) {
            if (depth == max_depth)
                return false;
            /* the nested document ends the element */
            ends[++depth] = (uint32_t)(sub - doc) + sub_len - 1;
            pos = (uint32_t)(sub - doc) + 4;
            continue;
        }
        pos = next;
    }
}

bool mt_bson_iter_init(mt_bson_iter_t *it, const uint8_t *doc, uint32_t len)
{
    it->doc = doc;
    it->pos = it->end = 0;
    if (!doc || len < 5 || mt_wire_le32(doc) != len || doc[len - 1] != 0)
        return false;
    it->pos = 4;
    it->end = len - 1;
    return true;
}

mt_bson_step_t mt_bson_iter_next(mt_bson_iter_t *it, mt_bson_elem_t *e)
{
    if (it->pos >= it->end)
        return MT_BSON_END;
    uint32_t next = elem_step(it->doc, it->pos, it->end, e);
    if (next == 0) {
        it->pos = it->end; /* a reader that goes on sees the end */
        return MT_BSON_BAD;
    }
    it->pos = next;
    return MT_BSON_ELEM;
}

bool mt_bson_elem_check(const mt_bson_elem_t *e, unsigned max_depth, mt_bson_check_t check)
{
    const uint8_t *sub;
    uint32_t len;

    if (check == MT_BSON_CHECK_UTF8 && !elem_utf8(e))
        return false;
    if (!elem_subdoc(e, &sub, &len))
        return true;
    return max_depth > 0 && mt_bson_validate(sub, len, max_depth - 1, check);
}

const char *mt_bson_elem_utf8(const mt_bson_elem_t *e, uint32_t *len)
{
    if (e->type != T_UTF8)
        return NULL;
    if (len)
        *len = mt_wire_le32(e->value) - 1;
    return (const char *)e->value + 4;
}

static int64_t le64(const uint8_t *p)
{
    return (int64_t)((uint64_t)mt_wire_le32(p) | (uint64_t)mt_wire_le32(p + 4) << 32);
}

static double le_double(const uint8_t *p)
{
    uint64_t u = (uint64_t)le64(p);
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

bool mt_bson_elem_is_number(const mt_bson_elem_t *e)
{
    return e->type == T_INT32 || e->type == T_INT64 || e->type == T_DOUBLE;
}

int64_t mt_bson_elem_int64(const mt_bson_elem_t *e, bool *ok)
{
    if (ok)
        *ok = true;
    switch (e->type) {
    case T_INT32:
        return (int32_t)mt_wire_le32(e->value);
    case T_INT64:
        return le64(e->value);
    case T_DOUBLE: {
        double d = le_double(e->value);
        if (!(d == d))
            return 0;
        if (d >= 9.2e18)
            return INT64_MAX;
        if (d <= -9.2e18)
            return INT64_MIN;
        return (int64_t)d;
    }
    case T_BOOL:
        return e->value[0];
    default:
        if (ok)
            *ok = false;
        return 0;
    }
}

bool mt_bson_find(const uint8_t *doc, uint32_t len, const char *key, mt_bson_elem_t *out)
{
    mt_bson_iter_t it;
    size_t klen = strlen(key);

    if (!mt_bson_iter_init(&it, doc, len))
        return false;
    while (mt_bson_iter_next(&it, out) == MT_BSON_ELEM)
        if (out->key_len == klen && memcmp(out->key, key, klen) == 0)
            return true;
    return false;
}

/* ---- value hash ---------------------------------------------------------- */

static uint64_t hash_tagged(char tag, const void *p, size_t n)
{
    return mt_hash_bytes(mt_hash_bytes(MT_HASH_SEED, &tag, 1), p, n);
}

static uint64_t hash_int(int64_t v)
{
    return mt_hash_u64((uint64_t)v ^ UINT64_C(0x49)); /* 'I': apart from the tagged hashes */
}

uint64_t mt_bson_value_hash(uint8_t type, const uint8_t *v, uint32_t len)
{
    switch (type) {
    case T_INT32:
        return hash_int((int32_t)mt_wire_le32(v));
    case T_INT64:
        return hash_int(le64(v));
    case T_DOUBLE: {
        double d = le_double(v);
        if (isfinite(d) && d == floor(d) && fabs(d) < 9.2e18)
            return hash_int((int64_t)d);
        return hash_tagged('D', &d, sizeof d);
    }
    case T_UTF8:
    case T_SYMBOL:
        return hash_tagged('S', v + 4, mt_wire_le32(v) - 1);
    case T_OID:
        return hash_tagged('O', v, 12);
    case T_BINARY: {
        uint64_t h = hash_tagged('B', v + 4, 1);
        return mt_hash_bytes(h, v + 5, mt_wire_le32(v));
    }
    case T_DATE_TIME: {
        int64_t t = le64(v);
        return hash_tagged('T', &t, sizeof t);
    }
    case T_BOOL:
        return hash_tagged('b', v, 1);
    case T_NULL:
    case T_UNDEFINED:
        return hash_tagged('N', NULL, 0);
    default: {
        /* other types compare by type and raw value bytes */
        uint64_t h = hash_tagged('R', &type, 1);
        return len ? mt_hash_bytes(h, v, len) : h;
    }
    }
}
