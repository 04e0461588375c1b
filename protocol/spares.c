#include "spares.h"

void mt_spares_init(mt_spares_t *s, size_t max_n, size_t max_each, size_t max_bytes,
                    void (*free_fn)(void *))
{
    s->n = 0;
    s->bytes = 0;
    s->uses = 0;
    s->max_n = max_n < MT_SPARES_MAX ? max_n : MT_SPARES_MAX;
    s->max_each = max_each;
    s->max_bytes = max_bytes;
    s->free_fn = free_fn;
}

void mt_spares_put(mt_spares_t *s, void *p, size_t cap)
{
    if (!p)
        return;
    if (s->n < s->max_n && cap <= s->max_each && s->bytes + cap <= s->max_bytes) {
        s->slot[s->n].p = p;
        s->slot[s->n++].cap = cap;
        s->bytes += cap;
        s->uses++;
    } else {
        s->free_fn(p);
    }
}

void *mt_spares_take(mt_spares_t *s, size_t min_cap, size_t max_cap, size_t *cap)
{
    size_t best = s->n;

    for (size_t i = s->n; i-- > 0;) {
        if (s->slot[i].cap >= min_cap && s->slot[i].cap <= max_cap &&
            (best == s->n || s->slot[i].cap < s->slot[best].cap))
            best = i;
    }
    if (best == s->n)
        return NULL;
    void *p = s->slot[best].p;
    *cap = s->slot[best].cap;
    s->bytes -= *cap;
    s->uses++;
    for (s->n--; best < s->n; best++)
        s->slot[best] = s->slot[best + 1];
    return p;
}

void mt_spares_release(mt_spares_t *s)
{
    while (s->n)
        s->free_fn(s->slot[--s->n].p);
    s->bytes = 0;
}
