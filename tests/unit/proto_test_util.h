/*
 * Helpers shared by the protocol unit tests: loading the captured wire
 * fixtures (tests/fixtures/wire/<scenario>-<n>-<c2s|s2c>.bin) and building
 * messages from JSON. Header-only: each test is its own executable.
 */
#ifndef MT_PROTO_TEST_UTIL_H
#define MT_PROTO_TEST_UTIL_H

#include <bson/bson.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "command.h"
#include "msg.h"
#include "wire.h"

/* clang-format off */
/* OP_MSG {ping: 1, $db: "admin"}, requestID 1 */
__attribute__((unused)) static const uint8_t ping_op_msg[] = {
    0x33, 0x00, 0x00, 0x00,  0x01, 0x00, 0x00, 0x00,  0x00, 0x00, 0x00, 0x00,  0xdd, 0x07, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00,                                   /* flagBits */
    0x00,                                                     /* section kind 0 */
    0x1e, 0x00, 0x00, 0x00,                                   /* document length 30 */
    0x10, 'p', 'i', 'n', 'g', 0x00, 0x01, 0x00, 0x00, 0x00,   /* ping: int32 1 */
    0x02, '$', 'd', 'b', 0x00, 0x06, 0x00, 0x00, 0x00,        /* $db: string of 6 */
    'a', 'd', 'm', 'i', 'n', 0x00,
    0x00,                                                     /* end of document */
};
/* clang-format on */

#define FX_MAX_FILES 256

/* Reads tests/fixtures/wire/<name>; fails the test when missing. */
static inline uint8_t *fx_read(const char *name, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/wire/%s", MT_FIXTURES_DIR, name);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "fixture %s missing", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static int fx_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted fixture file names starting with prefix (e.g. "pymongo_find-" or "").
 * Free with fx_list_free. */
static inline size_t fx_list(const char *prefix, const char *suffix, char **names, size_t max)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/wire", MT_FIXTURES_DIR);
    DIR *d = opendir(path);
    cr_assert_not_null(d, "no fixture folder %s", path);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        size_t l = strlen(e->d_name), sl = strlen(suffix);
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && l >= sl &&
            strcmp(e->d_name + l - sl, suffix) == 0)
            names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(char *), fx_cmp);
    return n;
}

static inline void fx_list_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
}

/* A captured request of a scenario by command name (case-insensitive), the
 * nth one (0-based) when several match. */
static inline uint8_t *fx_request(const char *scenario, const char *command, int nth, size_t *len)
{
    char prefix[256];
    char *names[FX_MAX_FILES];
    snprintf(prefix, sizeof(prefix), "%s-", scenario);
    size_t n = fx_list(prefix, "-c2s.bin", names, FX_MAX_FILES);
    uint8_t *found = NULL;
    mt_msg_scratch_t scratch = {0};
    for (size_t i = 0; i < n && !found; i++) {
        size_t l;
        uint8_t *buf = fx_read(names[i], &l);
        mt_msg_t m;
        mt_cmd_view_t v;
        if (mt_msg_parse(buf, l, &scratch, &m) == MT_MSG_OK &&
            mt_cmd_request(&m, &v) == MT_MSG_OK && strcasecmp(v.name, command) == 0 && nth-- == 0) {
            found = buf;
            *len = l;
        } else {
            free(buf);
        }
    }
    mt_msg_scratch_free(&scratch);
    fx_list_free(names, n);
    cr_assert_not_null(found, "no %s request in scenario %s", command, scenario);
    return found;
}

/* The captured reply of a scenario whose responseTo is request_id. */
static inline uint8_t *fx_reply(const char *scenario, int32_t request_id, size_t *len)
{
    char prefix[256];
    char *names[FX_MAX_FILES];
    snprintf(prefix, sizeof(prefix), "%s-", scenario);
    size_t n = fx_list(prefix, "-s2c.bin", names, FX_MAX_FILES);
    uint8_t *found = NULL;
    for (size_t i = 0; i < n && !found; i++) {
        size_t l;
        uint8_t *buf = fx_read(names[i], &l);
        if (l >= 16 && (int32_t)mt_wire_le32(buf + 8) == request_id) {
            found = buf;
            *len = l;
        } else {
            free(buf);
        }
    }
    fx_list_free(names, n);
    cr_assert_not_null(found, "no reply to %d in scenario %s", request_id, scenario);
    return found;
}

/* Builds an OP_MSG: flags, a kind-0 body, and optionally one kind-1
 * sequence of ndocs documents. malloc'd; *len set. */
static inline uint8_t *fx_op_msg(uint32_t flags, int32_t request_id, int32_t response_to,
                                 const bson_t *body, const char *seq_id, bson_t **seq_docs,
                                 size_t ndocs, size_t *len)
{
    size_t seq_len = 0;
    if (seq_id) {
        seq_len = 1 + 4 + strlen(seq_id) + 1;
        for (size_t i = 0; i < ndocs; i++)
            seq_len += seq_docs[i]->len;
    }
    size_t total = 16 + 4 + 1 + body->len + seq_len;
    uint8_t *b = malloc(total), *p = b;
    mt_wire_put_le32(p, (uint32_t)total);
    mt_wire_put_le32(p + 4, (uint32_t)request_id);
    mt_wire_put_le32(p + 8, (uint32_t)response_to);
    mt_wire_put_le32(p + 12, MT_OP_MSG);
    mt_wire_put_le32(p + 16, flags);
    p += 20;
    *p++ = 0;
    memcpy(p, bson_get_data(body), body->len);
    p += body->len;
    if (seq_id) {
        *p++ = 1;
        mt_wire_put_le32(p, (uint32_t)(seq_len - 1));
        p += 4;
        memcpy(p, seq_id, strlen(seq_id) + 1);
        p += strlen(seq_id) + 1;
        for (size_t i = 0; i < ndocs; i++) {
            memcpy(p, bson_get_data(seq_docs[i]), seq_docs[i]->len);
            p += seq_docs[i]->len;
        }
    }
    *len = total;
    return b;
}

static inline bson_t *fx_json(const char *json)
{
    bson_error_t err;
    bson_t *b = bson_new_from_json((const uint8_t *)json, -1, &err);
    cr_assert_not_null(b, "bad test JSON %s: %s", json, err.message);
    return b;
}

/* An OP_MSG whose body is the given JSON command. */
static inline uint8_t *fx_op_msg_json(const char *json, uint32_t flags, size_t *len)
{
    bson_t *b = fx_json(json);
    uint8_t *m = fx_op_msg(flags, 7, 0, b, NULL, NULL, 0, len);
    bson_destroy(b);
    return m;
}

/* An OP_QUERY on ns with the given JSON query. */
static inline uint8_t *fx_op_query_json(const char *ns, int32_t flags, int32_t ntoreturn,
                                        const char *json, size_t *len)
{
    bson_t *q = fx_json(json);
    size_t total = 16 + 4 + strlen(ns) + 1 + 8 + q->len;
    uint8_t *b = malloc(total), *p = b;
    mt_wire_put_le32(p, (uint32_t)total);
    mt_wire_put_le32(p + 4, 11);
    mt_wire_put_le32(p + 8, 0);
    mt_wire_put_le32(p + 12, MT_OP_QUERY);
    mt_wire_put_le32(p + 16, (uint32_t)flags);
    p += 20;
    memcpy(p, ns, strlen(ns) + 1);
    p += strlen(ns) + 1;
    mt_wire_put_le32(p, 0);
    mt_wire_put_le32(p + 4, (uint32_t)ntoreturn);
    p += 8;
    memcpy(p, bson_get_data(q), q->len);
    bson_destroy(q);
    *len = total;
    return b;
}

/* An OP_REPLY with the given flags and documents. */
static inline uint8_t *fx_op_reply(int32_t flags, int64_t cursor_id, bson_t **docs, int32_t ndocs,
                                   size_t *len)
{
    size_t total = 16 + 20;
    for (int32_t i = 0; i < ndocs; i++)
        total += docs[i]->len;
    uint8_t *b = malloc(total), *p = b;
    mt_wire_put_le32(p, (uint32_t)total);
    mt_wire_put_le32(p + 4, 12);
    mt_wire_put_le32(p + 8, 11);
    mt_wire_put_le32(p + 12, MT_OP_REPLY);
    mt_wire_put_le32(p + 16, (uint32_t)flags);
    mt_wire_put_le32(p + 20, (uint32_t)(uint64_t)cursor_id);
    mt_wire_put_le32(p + 24, (uint32_t)((uint64_t)cursor_id >> 32));
    mt_wire_put_le32(p + 28, 0);
    mt_wire_put_le32(p + 32, (uint32_t)ndocs);
    p += 36;
    for (int32_t i = 0; i < ndocs; i++) {
        memcpy(p, bson_get_data(docs[i]), docs[i]->len);
        p += docs[i]->len;
    }
    *len = total;
    return b;
}

#endif
