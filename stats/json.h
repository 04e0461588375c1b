/*
 * json: renders a bson_t as plain JSON. libbson's relaxed extended JSON
 * prints doubles with 20 significant digits (31.2 becomes
 * 31.199999999999999289); every figure we publish is a double, so this walker
 * prints numbers in their shortest round-trip form and everything that is not
 * a plain JSON type through libbson's relaxed extended JSON.
 */
#ifndef MT_JSON_H
#define MT_JSON_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

/* Renders doc (a document, or an array when is_array) compactly:
 * {"a":1,"b":[true,null]}. Returns a string to free with bson_free(). */
char *mt_json_render(const bson_t *doc, bool is_array);

/* Appends the JSON of doc to s. */
void mt_json_append(bson_string_t *s, const bson_t *doc, bool is_array);

/* Appends the value under it to s. */
void mt_json_append_value(bson_string_t *s, const bson_iter_t *it);

/* Appends str[0..len) as a JSON string literal (quotes included). Bytes that
 * are not valid UTF-8 become U+FFFD so the output is always valid JSON. */
void mt_json_append_string(bson_string_t *s, const char *str, size_t len);

/* Appends a double in shortest round-trip form; NaN and infinities as null. */
void mt_json_append_double(bson_string_t *s, double v);

/* Nanoseconds as milliseconds rounded to the microsecond, for *_ms fields. */
double mt_json_ms(uint64_t ns);

/* Appends key as the string v, or null when v is NULL or "". */
void mt_json_str_or_null(bson_t *doc, const char *key, const char *v);

#endif
