/*
 * bson: BSON read in place. One validator (a single pass, no recursion, no
 * allocation) and an element cursor that checks each element as it steps
 * over it, so that a reader can validate a document while it takes what it
 * needs from it, plus the value hash lookups and returned documents are
 * matched by. libbson builds and prints documents; this reads them.
 */
#ifndef MT_BSON_H
#define MT_BSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Deepest nesting accepted (a top-level document is depth 0). libbson's own
 * validator recurses and overflows the stack on deep documents; mongod's
 * default limit is the same. */
#define MT_BSON_MAX_DEPTH 200

/* What string values are checked for, beyond their length and terminator. */
typedef enum {
    /* Structure: lengths, terminators, types, bool values, the old binary
     * subtype's inner length, keys (and regex parts) valid UTF-8. This is
     * what every message gets: string values that are never shown are not
     * read, so they are not decoded either. */
    MT_BSON_CHECK_STRUCTURE = 0,
    /* The structure, and every string value (UTF-8, code, symbol, DBPointer
     * namespace) valid UTF-8 too. */
    MT_BSON_CHECK_UTF8 = 1,
} mt_bson_check_t;

const char *mt_bson_check_str(mt_bson_check_t check);

/* Checks doc[0..len), a whole document or array whose length prefix is len,
 * nested at most max_depth levels below it (MT_BSON_MAX_DEPTH for a
 * top-level document). Never accepts what libbson's bson_validate() refuses
 * with the matching flags (BSON_VALIDATE_NONE / BSON_VALIDATE_UTF8). */
bool mt_bson_validate(const uint8_t *doc, uint32_t len, unsigned max_depth, mt_bson_check_t check);

/* One element, in place. value points at the value as on the wire (a
 * document or array starts with its length prefix; a string with its int32
 * length); value_len is its size in bytes. */
typedef struct {
    uint8_t type;
    const char *key; /* NUL-terminated, valid UTF-8 */
    uint32_t key_len;
    const uint8_t *value;
    uint32_t value_len;
} mt_bson_elem_t;

/* A cursor over the elements of one document or array. */
typedef struct {
    const uint8_t *doc;
    uint32_t pos; /* offset of the next element */
    uint32_t end; /* offset of the terminating NUL */
} mt_bson_iter_t;

typedef enum {
    MT_BSON_ELEM = 0, /* *e is the next element, checked */
    MT_BSON_END,      /* the terminator: every element was read */
    MT_BSON_BAD,      /* not well-formed: stop reading */
} mt_bson_step_t;

/* Starts on doc[0..len): true when its length prefix is len (>= 5) and it
 * ends in NUL. */
bool mt_bson_iter_init(mt_bson_iter_t *it, const uint8_t *doc, uint32_t len);

/*
 * The next element, checked as mt_bson_validate() checks it at this level:
 * its key, its value's bounds and, for scalars, the value itself (strings:
 * length and terminator; their UTF-8 only with mt_bson_elem_check()). The
 * contents of a document, an array or a code-with-scope scope are bounded
 * here (length prefix and terminator) but not read: a reader validating as
 * it goes either opens them with its own cursor or has mt_bson_elem_check()
 * read them.
 */
mt_bson_step_t mt_bson_iter_next(mt_bson_iter_t *it, mt_bson_elem_t *e);

/* What mt_bson_iter_next() left unchecked in e: the contents of a container
 * (nested at most max_depth levels below it, e itself counting as one) and,
 * with MT_BSON_CHECK_UTF8, string values. */
bool mt_bson_elem_check(const mt_bson_elem_t *e, unsigned max_depth, mt_bson_check_t check);

/* Type predicates for the readers. */
static inline bool mt_bson_is_container(uint8_t type)
{
    return type == 0x03 || type == 0x04; /* document, array */
}

/* A UTF-8 string element's text: NUL-terminated (a string may also hold
 * NULs: readers treat it as ending at the first); *len (may be NULL) gets
 * its byte length without the terminator. NULL when e is not a string. */
const char *mt_bson_elem_utf8(const mt_bson_elem_t *e, uint32_t *len);

/* A numeric element (int32, int64, double, bool) as int64; doubles out of
 * range saturate, NaN is 0. *ok (may be NULL) tells whether it was one. */
int64_t mt_bson_elem_int64(const mt_bson_elem_t *e, bool *ok);

/* True for int32, int64 and double. */
bool mt_bson_elem_is_number(const mt_bson_elem_t *e);

/* The element under key in doc[0..len) (first match), or false. doc must be
 * well-formed up to that element. */
bool mt_bson_find(const uint8_t *doc, uint32_t len, const char *key, mt_bson_elem_t *out);

/* Hash of a value for matching lookups against returned documents: numbers
 * by value (int32 5 == int64 5 == double 5.0), strings and symbols by text,
 * everything else by type and bytes. Values themselves are never kept. */
uint64_t mt_bson_value_hash(uint8_t type, const uint8_t *value, uint32_t len);

#endif
