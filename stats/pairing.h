/*
 * pairing: requests awaiting their reply (per connection, by requestID) and
 * the open cursors (for the whole proxy, by cursor id: a pooled driver may
 * send the getMore, or the killCursors, on another connection than the find,
 * and cursor ids are unique on the upstream). Both are bounded. The cursor
 * table is an LRU: insert, hit and eviction are O(1), and a connection's
 * cursors are dropped when it closes.
 */
#ifndef MT_PAIRING_H
#define MT_PAIRING_H

#include <h2o/linklist.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "idmap.h"
#include "shapes.h"

/* Requests awaiting a reply per connection (drivers pipeline little; past
 * this the oldest is forgotten), and open cursors remembered. */
#define MT_PAIRING_MAX_PENDING 1024
#define MT_PAIRING_MAX_CURSORS 65536

/* A request awaiting its reply. */
typedef struct {
    uint64_t req_ns;         /* request forwarded (exhaust: previous reply) */
    mt_shape_entry_t *entry; /* shape it is accounted to (getMore: the cursor's) */
    uint64_t win_id;         /* window holding the command; 0 when none */
    uint64_t origin_win_id;  /* getMore: window of the command that opened the cursor */
    int64_t cursor_id;       /* getMore: its cursor */
    uint32_t cmd_idx;
    uint32_t origin_idx;
    uint16_t metric_command;
    uint8_t kind; /* mt_cmd_kind_t */
    bool has_cmd_idx;
    bool has_origin_idx;
    bool continuation; /* a later reply of an exhaust stream */
    bool inflight;     /* counted in its window's inflight */
} mt_pending_t;

/* An open cursor: getMores are accounted to the command that opened it. */
typedef struct {
    int64_t id;
    mt_shape_entry_t *entry;
    uint64_t win_id;
    uint32_t cmd_idx;
    bool has_cmd_idx;
    uint16_t metric_ns;
    h2o_linklist_t lru;     /* in the table, most recently used last */
    h2o_linklist_t by_conn; /* in the list of the connection that opened it */
} mt_cursor_t;

typedef struct {
    mt_idmap_t index; /* cursor id -> mt_cursor_t * */
    h2o_linklist_t lru;
    size_t count;
    size_t max;
    uint64_t evicted;
} mt_cursors_t;

void mt_cursors_init(mt_cursors_t *t, size_t max);
/* Forgets every cursor (reset, shutdown). Connection lists must be
 * re-initialised by their owners (mt_cursors_conn_init). */
void mt_cursors_clear(mt_cursors_t *t);
void mt_cursors_free(mt_cursors_t *t);

void mt_cursors_conn_init(h2o_linklist_t *conn_list);

/* The cursor of id, marked as just used; NULL when unknown. */
mt_cursor_t *mt_cursors_get(mt_cursors_t *t, int64_t id);
/* The cursor for id opened on the connection of conn_list, created (zeroed,
 * least recently used one evicted at the bound) when new. NULL when out of
 * memory. */
mt_cursor_t *mt_cursors_put(mt_cursors_t *t, int64_t id, h2o_linklist_t *conn_list);
void mt_cursors_remove(mt_cursors_t *t, int64_t id);
/* Forgets the cursors a connection opened. */
void mt_cursors_drop_conn(mt_cursors_t *t, h2o_linklist_t *conn_list);

#endif
