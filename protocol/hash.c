/*
 * hash: FNV-1a, a splitmix64-style finaliser. Not for adversarial keys on its
 * own: tables that take keys from the wire bound their chains or their size.
 */
#include "hash.h"

#define FNV_PRIME UINT64_C(0x100000001b3)

uint64_t mt_hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= FNV_PRIME;
    }
    return h;
}

uint64_t mt_hash_str(uint64_t h, const char *s)
{
    if (s)
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
            h ^= *p;
            h *= FNV_PRIME;
        }
    h ^= s ? 0xFF : 0xFE;
    h *= FNV_PRIME;
    return h;
}

uint64_t mt_hash_finish(uint64_t h)
{
    h ^= h >> 33;
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    return h;
}

uint64_t mt_hash_u64(uint64_t v)
{
    v = (v ^ (v >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    v = (v ^ (v >> 27)) * UINT64_C(0x94d049bb133111eb);
    return v ^ (v >> 31);
}
