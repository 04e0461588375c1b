/*
 * hash: the one 64-bit hash every table in mongotap uses (FNV-1a over bytes,
 * with a final mix so that the low bits a table indexes by depend on every
 * byte), and the integer mixer for ids that arrive in sequence.
 */
#ifndef MT_HASH_H
#define MT_HASH_H

#include <stddef.h>
#include <stdint.h>

#define MT_HASH_SEED UINT64_C(0xcbf29ce484222325)

/* Continues h over p[0..n). Start with MT_HASH_SEED. */
uint64_t mt_hash_bytes(uint64_t h, const void *p, size_t n);

/* Continues h over a NUL-terminated string and a separator, so that the
 * parts ("ab", "c") and ("a", "bc") differ; NULL differs from "". */
uint64_t mt_hash_str(uint64_t h, const char *s);

/* Final avalanche of a running hash (before using its low bits). */
uint64_t mt_hash_finish(uint64_t h);

/* Spreads a 64-bit id (requestIDs and cursor ids come in sequence). */
uint64_t mt_hash_u64(uint64_t v);

#endif
