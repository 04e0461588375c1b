/*
 * counters: renderings of the table in counters.h.
 */
#include "counters.h"

#include <stdbool.h>
#include <string.h>

static const struct {
    mt_stat_type_t type;
    const char *group, *json, *prom, *help;
} table[MT_STAT__COUNT] = {
#define MT_STATS_ROW(id, type, group, json, prom, help)                                            \
    {MT_STAT_TYPE_##type, group, json, prom, help},
    MT_STATS_COUNTERS(MT_STATS_ROW)
#undef MT_STATS_ROW
};

const char *mt_stat_counter_str(mt_stat_counter_t counter)
{
    return counter < MT_STAT__COUNT ? table[counter].json : "unknown";
}

mt_stat_type_t mt_stat_counter_type(mt_stat_counter_t counter)
{
    return counter < MT_STAT__COUNT ? table[counter].type : MT_STAT_TYPE_COUNTER;
}

void mt_stats_counters_bson(const uint64_t values[MT_STAT__COUNT], bson_t *doc)
{
    /* groups are contiguous in the table: one sub-document per run */
    for (int i = 0; i < MT_STAT__COUNT;) {
        if (!table[i].group[0]) {
            BSON_APPEND_INT64(doc, table[i].json, (int64_t)values[i]);
            i++;
            continue;
        }
        bson_t sub;
        int j = i;
        BSON_APPEND_DOCUMENT_BEGIN(doc, table[i].group, &sub);
        for (; j < MT_STAT__COUNT && strcmp(table[j].group, table[i].group) == 0; j++)
            BSON_APPEND_INT64(&sub, table[j].json, (int64_t)values[j]);
        bson_append_document_end(doc, &sub);
        i = j;
    }
}

void mt_stats_counters_since(const uint64_t values[MT_STAT__COUNT],
                             const uint64_t baseline[MT_STAT__COUNT], uint64_t out[MT_STAT__COUNT])
{
    for (int i = 0; i < MT_STAT__COUNT; i++) {
        /* figures of the process, its connections and its upstream, rather than of the
         * traffic being studied, are not reset */
        bool process = i == MT_STAT_CONNECTIONS_TOTAL || i == MT_STAT_CONNECTIONS_REFUSED ||
                       i == MT_STAT_CONNECTIONS_RETIRED || i == MT_STAT_UPSTREAM_PRIMARY_CHANGES ||
                       i == MT_STAT_UPSTREAM_TLS_FAILURES || i == MT_STAT_CLIENT_TLS_FAILURES ||
                       i == MT_STAT_CLIENT_TLS_ON_PLAIN;
        if (table[i].type == MT_STAT_TYPE_COUNTER && !process && values[i] >= baseline[i])
            out[i] = values[i] - baseline[i];
        else
            out[i] = values[i];
    }
}

void mt_stats_counters_prometheus(const uint64_t values[MT_STAT__COUNT], bson_string_t *s)
{
    for (int i = 0; i < MT_STAT__COUNT; i++) {
        if (!table[i].prom[0])
            continue;
        const char *type = table[i].type == MT_STAT_TYPE_GAUGE ? "gauge" : "counter";
        bson_string_append_printf(s, "# HELP mongotap_%s %s\n# TYPE mongotap_%s %s\n",
                                  table[i].prom, table[i].help, table[i].prom, type);
        bson_string_append_printf(s, "mongotap_%s %llu\n", table[i].prom,
                                  (unsigned long long)values[i]);
    }
}
