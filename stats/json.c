/*
 * json: a small bson_t -> JSON walker over bson_iter_t and bson_string_t, so
 * that numbers come out as people expect them (see json.h for why).
 */
#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

double mt_json_ms(uint64_t ns)
{
    return (double)(ns / 1000) / 1000.0;
}

void mt_json_str_or_null(bson_t *doc, const char *key, const char *v)
{
    if (v && *v)
        bson_append_utf8(doc, key, -1, v, -1);
    else
        bson_append_null(doc, key, -1);
}

void mt_json_append_double(bson_string_t *s, double v)
{
    if (!isfinite(v)) {
        bson_string_append(s, "null");
        return;
    }
    char buf[40];
    /* The shortest of %.15g / %.16g / %.17g that reads back as v. */
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    bson_string_append(s, buf);
}

void mt_json_append_string(bson_string_t *s, const char *str, size_t len)
{
    const unsigned char *p = (const unsigned char *)str;
    size_t i = 0;
    size_t run = 0; /* start of the pending run of bytes copied verbatim */
    bson_string_append_c(s, '"');
    while (i < len) {
        unsigned char c = p[i];
        const char *esc = NULL;
        char ubuf[8];
        size_t n = 1;
        if (c == '"')
            esc = "\\\"";
        else if (c == '\\')
            esc = "\\\\";
        else if (c == '\n')
            esc = "\\n";
        else if (c == '\r')
            esc = "\\r";
        else if (c == '\t')
            esc = "\\t";
        else if (c < 0x20 || c == 0x7F) {
            snprintf(ubuf, sizeof ubuf, "\\u%04x", c);
            esc = ubuf;
        } else if (c >= 0x80) {
            n = mt_utf8_seq_len(p + i, len - i);
            if (n == 0) {
                esc = "\\ufffd";
                n = 1;
            }
        }
        if (esc) {
            if (i > run)
                bson_string_append_printf(s, "%.*s", (int)(i - run), str + run);
            bson_string_append(s, esc);
            i += n;
            run = i;
        } else {
            i += n;
        }
    }
    if (i > run)
        bson_string_append_printf(s, "%.*s", (int)(i - run), str + run);
    bson_string_append_c(s, '"');
}

/* Types without a plain JSON form (ObjectId, binary, regex ...) are rendered
 * by libbson as relaxed extended JSON: wrap the value in {"v": ...} and keep
 * what follows the key. */
static void append_extended(bson_string_t *s, const bson_iter_t *it)
{
    bson_t tmp;
    bson_init(&tmp);
    if (!bson_append_iter(&tmp, "v", 1, it)) {
        bson_destroy(&tmp);
        bson_string_append(s, "null");
        return;
    }
    size_t len = 0;
    char *j = bson_as_relaxed_extended_json(&tmp, &len);
    bson_destroy(&tmp);
    /* libbson writes: { "v" : <value> } */
    const char *prefix = "{ \"v\" : ";
    size_t plen = strlen(prefix);
    if (j && len > plen + 2 && strncmp(j, prefix, plen) == 0)
        bson_string_append_printf(s, "%.*s", (int)(len - plen - 2), j + plen);
    else
        bson_string_append(s, "null");
    bson_free(j);
}

static void append_container(bson_string_t *s, bson_iter_t *child, bool is_array, int depth);

static void append_value_depth(bson_string_t *s, const bson_iter_t *it, int depth)
{
    switch (bson_iter_type(it)) {
    case BSON_TYPE_DOUBLE:
        mt_json_append_double(s, bson_iter_double(it));
        break;
    case BSON_TYPE_INT32:
        bson_string_append_printf(s, "%" PRId32, bson_iter_int32(it));
        break;
    case BSON_TYPE_INT64:
        bson_string_append_printf(s, "%" PRId64, bson_iter_int64(it));
        break;
    case BSON_TYPE_BOOL:
        bson_string_append(s, bson_iter_bool(it) ? "true" : "false");
        break;
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
        bson_string_append(s, "null");
        break;
    case BSON_TYPE_UTF8: {
        uint32_t len = 0;
        const char *str = bson_iter_utf8(it, &len);
        mt_json_append_string(s, str, len);
        break;
    }
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY: {
        bool arr = bson_iter_type(it) == BSON_TYPE_ARRAY;
        bson_iter_t child;
        if (depth >= 100 || !bson_iter_recurse(it, &child)) {
            bson_string_append(s, arr ? "[]" : "{}");
            break;
        }
        append_container(s, &child, arr, depth + 1);
        break;
    }
    default:
        append_extended(s, it);
        break;
    }
}

static void append_container(bson_string_t *s, bson_iter_t *child, bool is_array, int depth)
{
    bool first = true;
    bson_string_append_c(s, is_array ? '[' : '{');
    while (bson_iter_next(child)) {
        if (!first)
            bson_string_append_c(s, ',');
        first = false;
        if (!is_array) {
            mt_json_append_string(s, bson_iter_key(child), bson_iter_key_len(child));
            bson_string_append_c(s, ':');
        }
        append_value_depth(s, child, depth);
    }
    bson_string_append_c(s, is_array ? ']' : '}');
}

void mt_json_append_value(bson_string_t *s, const bson_iter_t *it)
{
    append_value_depth(s, it, 0);
}

void mt_json_append(bson_string_t *s, const bson_t *doc, bool is_array)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, doc)) {
        bson_string_append(s, is_array ? "[]" : "{}");
        return;
    }
    append_container(s, &it, is_array, 0);
}

char *mt_json_render(const bson_t *doc, bool is_array)
{
    bson_string_t *s = bson_string_new(NULL);
    mt_json_append(s, doc, is_array);
    return bson_string_free(s, false);
}
