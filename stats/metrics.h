/*
 * metrics: Prometheus text exposition (format 0.0.4). Keeps the labelled
 * series: commands by (command, db, collection) and a latency histogram by
 * command. Label sets are bounded: command names outside a known set become
 * "other", namespaces past the first MT_METRICS_MAX_NAMESPACES (db,
 * collection) pairs seen become db and collection "<other>" (first come
 * keeps its labels, so every series stays monotonic). Nothing here is ever
 * reset: a counter never goes backwards (POST /api/reset resets the JSON
 * views only).
 */
#ifndef MT_METRICS_H
#define MT_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "idmap.h"
#include "counters.h"

#define MT_METRICS_MAX_NAMESPACES 100
#define MT_METRICS_NS_OTHER MT_METRICS_MAX_NAMESPACES /* label index of "<other>" */
#define MT_METRICS_NBUCKETS 16
#define MT_METRICS_MAX_COMMANDS 48

typedef struct {
    char *db;         /* one allocation: "db\0collection\0" */
    const char *coll; /* into db's allocation */
} mt_metrics_ns_t;

typedef struct {
    mt_metrics_ns_t ns[MT_METRICS_MAX_NAMESPACES];
    size_t nns;
    mt_idmap_t ns_index; /* hash of (db, collection) -> uint16 index */
    uint64_t commands[MT_METRICS_MAX_COMMANDS][MT_METRICS_MAX_NAMESPACES + 1];
    uint64_t buckets[MT_METRICS_MAX_COMMANDS][MT_METRICS_NBUCKETS + 1]; /* last: +Inf */
    uint64_t sum_ns[MT_METRICS_MAX_COMMANDS];
    uint64_t count[MT_METRICS_MAX_COMMANDS];
} mt_metrics_t;

/* The global figures (counters.h) and the uptime. */
typedef struct {
    const uint64_t *counters; /* MT_STAT__COUNT values, gauges up to date */
    double uptime_s;
    const char (*members)[MT_STATS_MEMBER_NAME]; /* upstream members, "host:port" */
    const bool *members_up;
    size_t nmembers;
} mt_metrics_input_t;

void mt_metrics_init(mt_metrics_t *m);
void mt_metrics_free(mt_metrics_t *m);

/* Label index of a command name (case-insensitive; "other" when unknown). */
uint16_t mt_metrics_command_label(const char *name);
const char *mt_metrics_command_name(uint16_t idx);
/* Label index of a namespace (db cut to MT_CMD_DB_MAX bytes, collection to
 * MT_CMD_NS_MAX); MT_METRICS_NS_OTHER past the bound. */
uint16_t mt_metrics_ns_label(mt_metrics_t *m, const char *db, const char *collection);

void mt_metrics_count(mt_metrics_t *m, uint16_t command, uint16_t ns);
void mt_metrics_observe(mt_metrics_t *m, uint16_t command, uint64_t ns);

/* The exposition text; free with bson_free(). */
char *mt_metrics_render(const mt_metrics_t *m, const mt_metrics_input_t *in);

#endif
