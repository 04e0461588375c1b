/*
 * utf8: the one strict UTF-8 decoder (no overlong forms, no surrogates,
 * nothing past U+10FFFF), used to validate BSON strings and to escape text
 * for JSON.
 */
#ifndef MT_UTF8_H
#define MT_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Length (1..4) of the valid sequence at p[0..left), or 0 when invalid. */
size_t mt_utf8_seq_len(const uint8_t *p, size_t left);

/* True when s[0..n) is valid UTF-8. NUL bytes are allowed: BSON strings carry
 * their length. ASCII runs go 8 bytes at a time. */
bool mt_utf8_valid(const uint8_t *s, size_t n);

#endif
