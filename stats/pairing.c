/*
 * pairing: the cursor table. Entries are allocated one by one and never
 * move, so the LRU and per-connection links stay valid; the id index maps
 * to them.
 */
#include "pairing.h"

#include <bson/bson.h>
#include <string.h>

#define cursor_of(node, member) ((mt_cursor_t *)((char *)(node)-offsetof(mt_cursor_t, member)))

void mt_cursors_init(mt_cursors_t *t, size_t max)
{
    memset(t, 0, sizeof(*t));
    t->max = max ? max : 1;
    /* the table evicts before the index is full: the index never scans */
    mt_idmap_init(&t->index, sizeof(mt_cursor_t *), t->max + 1);
    h2o_linklist_init_anchor(&t->lru);
}

void mt_cursors_conn_init(h2o_linklist_t *conn_list)
{
    h2o_linklist_init_anchor(conn_list);
}

static void cursor_free(mt_cursors_t *t, mt_cursor_t *c)
{
    mt_idmap_remove(&t->index, c->id, NULL);
    h2o_linklist_unlink(&c->lru);
    if (h2o_linklist_is_linked(&c->by_conn))
        h2o_linklist_unlink(&c->by_conn);
    t->count--;
    bson_free(c);
}

void mt_cursors_clear(mt_cursors_t *t)
{
    while (!h2o_linklist_is_empty(&t->lru)) {
        mt_cursor_t *c = cursor_of(t->lru.next, lru);
        /* connection lists are reset by their owners */
        c->by_conn.next = c->by_conn.prev = NULL;
        cursor_free(t, c);
    }
}

void mt_cursors_free(mt_cursors_t *t)
{
    mt_cursors_clear(t);
    mt_idmap_free(&t->index);
}

mt_cursor_t *mt_cursors_get(mt_cursors_t *t, int64_t id)
{
    mt_cursor_t **slot = mt_idmap_get(&t->index, id);

    if (!slot)
        return NULL;
    h2o_linklist_unlink(&(*slot)->lru);
    h2o_linklist_insert(&t->lru, &(*slot)->lru);
    return *slot;
}

mt_cursor_t *mt_cursors_put(mt_cursors_t *t, int64_t id, h2o_linklist_t *conn_list)
{
    mt_cursor_t *c = mt_cursors_get(t, id), **slot;

    if (c)
        return c;
    if (t->count >= t->max) {
        cursor_free(t, cursor_of(t->lru.next, lru));
        t->evicted++;
    }
    c = bson_malloc0(sizeof(*c));
    slot = mt_idmap_put(&t->index, id, NULL, NULL);
    if (!slot) {
        bson_free(c);
        return NULL;
    }
    *slot = c;
    c->id = id;
    h2o_linklist_insert(&t->lru, &c->lru);
    if (conn_list)
        h2o_linklist_insert(conn_list, &c->by_conn);
    t->count++;
    return c;
}

void mt_cursors_remove(mt_cursors_t *t, int64_t id)
{
    mt_cursor_t **slot = mt_idmap_get(&t->index, id);

    if (slot)
        cursor_free(t, *slot);
}

void mt_cursors_drop_conn(mt_cursors_t *t, h2o_linklist_t *conn_list)
{
    while (!h2o_linklist_is_empty(conn_list))
        cursor_free(t, cursor_of(conn_list->next, by_conn));
}
