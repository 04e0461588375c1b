/*
 * metrics: the Prometheus side. Counters come from the MT_STATS_COUNTERS
 * table in counters.h; labelled series are plain arrays indexed by label
 * indexes cached in each shape entry, so a message costs two increments.
 */
#include "metrics.h"

#include <bson/bson.h>
#include <string.h>
#include <strings.h>

#include "hash.h"
#include "json.h"
#include "view.h"

/* Command label set. Index 0 is "other". */
static const char *const command_names[] = {
    "other",
    "find",
    "aggregate",
    "getMore",
    "insert",
    "update",
    "delete",
    "findAndModify",
    "count",
    "distinct",
    "killCursors",
    "hello",
    "isMaster",
    "ping",
    "buildInfo",
    "saslStart",
    "saslContinue",
    "authenticate",
    "logout",
    "endSessions",
    "getLastError",
    "createIndexes",
    "dropIndexes",
    "listIndexes",
    "listCollections",
    "listDatabases",
    "create",
    "drop",
    "dropDatabase",
    "collMod",
    "commitTransaction",
    "abortTransaction",
    "explain",
    "serverStatus",
    "dbStats",
    "collStats",
    "getParameter",
    "connectionStatus",
    "whatsmyuri",
    "mapReduce",
    "bulkWrite",
    "getnonce",
    "renameCollection",
    "validate",
    "currentOp",
    "killOp",
    "hostInfo",
    "getCmdLineOpts",
};

#define NCOMMANDS (sizeof command_names / sizeof command_names[0])
_Static_assert(NCOMMANDS <= MT_METRICS_MAX_COMMANDS, "too many command labels");

/* Bucket upper bounds in ns, and as printed (seconds). */
static const uint64_t bucket_ns[MT_METRICS_NBUCKETS] = {
    100000,   250000,    500000,    1000000,   2500000,    5000000,    10000000,   25000000,
    50000000, 100000000, 250000000, 500000000, 1000000000, 2500000000, 5000000000, 10000000000,
};
static const char *const bucket_le[MT_METRICS_NBUCKETS] = {
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
    "0.05",   "0.1",     "0.25",   "0.5",   "1",      "2.5",   "5",    "10",
};

void mt_metrics_init(mt_metrics_t *m)
{
    memset(m, 0, sizeof *m);
    mt_idmap_init(&m->ns_index, sizeof(uint16_t), MT_METRICS_MAX_NAMESPACES);
}

void mt_metrics_free(mt_metrics_t *m)
{
    for (size_t i = 0; i < m->nns; i++)
        bson_free(m->ns[i].db);
    mt_idmap_free(&m->ns_index);
    memset(m, 0, sizeof *m);
}

uint16_t mt_metrics_command_label(const char *name)
{
    for (size_t i = 1; i < NCOMMANDS; i++)
        if (strcasecmp(name, command_names[i]) == 0)
            return (uint16_t)i;
    return 0;
}

const char *mt_metrics_command_name(uint16_t idx)
{
    return idx < NCOMMANDS ? command_names[idx] : command_names[0];
}

uint16_t mt_metrics_ns_label(mt_metrics_t *m, const char *db, const char *collection)
{
    /* a label is kept for good: never longer than a name may be */
    size_t dl = mt_cmd_name_len(db, MT_CMD_DB_MAX, NULL);
    size_t cl = mt_cmd_name_len(collection, MT_CMD_NS_MAX, NULL);
    char key[MT_CMD_DB_MAX + MT_CMD_NS_MAX + 2];

    memcpy(key, db, dl);
    key[dl] = '\0';
    memcpy(key + dl + 1, collection, cl);
    key[dl + 1 + cl] = '\0';
    int64_t h = (int64_t)mt_hash_str(mt_hash_str(MT_HASH_SEED, key), key + dl + 1);
    uint16_t *idx = mt_idmap_get(&m->ns_index, h);
    if (idx) {
        const mt_metrics_ns_t *ns = &m->ns[*idx];
        return strcmp(ns->db, key) == 0 && strcmp(ns->coll, key + dl + 1) == 0
                   ? *idx
                   : MT_METRICS_NS_OTHER;
    }
    if (m->nns >= MT_METRICS_MAX_NAMESPACES)
        return MT_METRICS_NS_OTHER;
    char *copy = bson_malloc(dl + cl + 2);
    if (!copy)
        return MT_METRICS_NS_OTHER;
    memcpy(copy, key, dl + cl + 2);
    idx = mt_idmap_put(&m->ns_index, h, NULL, NULL);
    if (!idx) {
        bson_free(copy);
        return MT_METRICS_NS_OTHER;
    }
    *idx = (uint16_t)m->nns;
    m->ns[m->nns].db = copy;
    m->ns[m->nns].coll = copy + dl + 1;
    m->nns++;
    return *idx;
}

void mt_metrics_count(mt_metrics_t *m, uint16_t command, uint16_t ns)
{
    if (command >= NCOMMANDS)
        command = 0;
    if (ns > MT_METRICS_NS_OTHER)
        ns = MT_METRICS_NS_OTHER;
    m->commands[command][ns]++;
}

void mt_metrics_observe(mt_metrics_t *m, uint16_t command, uint64_t ns)
{
    if (command >= NCOMMANDS)
        command = 0;
    size_t b = 0;
    while (b < MT_METRICS_NBUCKETS && ns > bucket_ns[b])
        b++;
    m->buckets[command][b]++;
    m->sum_ns[command] += ns;
    m->count[command]++;
}

/* Label values escape backslash, double quote and line feed. */
static void append_label(bson_string_t *s, const char *v)
{
    for (const char *p = v; *p; p++) {
        if (*p == '\\')
            bson_string_append(s, "\\\\");
        else if (*p == '"')
            bson_string_append(s, "\\\"");
        else if (*p == '\n')
            bson_string_append(s, "\\n");
        else
            bson_string_append_c(s, *p);
    }
}

static void header(bson_string_t *s, const char *name, const char *type, const char *help)
{
    bson_string_append_printf(s, "# HELP mongotap_%s %s\n# TYPE mongotap_%s %s\n", name, help, name,
                              type);
}

static void gauge(bson_string_t *s, const char *name, const char *help, double v)
{
    header(s, name, "gauge", help);
    bson_string_append_printf(s, "mongotap_%s ", name);
    mt_json_append_double(s, v); /* 278.407, not 278.40699999999998 */
    bson_string_append_c(s, '\n');
}

static void ns_seconds(bson_string_t *s, uint64_t ns)
{
    bson_string_append_printf(s, "%llu.%09llu", (unsigned long long)(ns / 1000000000ULL),
                              (unsigned long long)(ns % 1000000000ULL));
}

char *mt_metrics_render(const mt_metrics_t *m, const mt_metrics_input_t *in)
{
    bson_string_t *s = bson_string_new(NULL);

    mt_stats_counters_prometheus(in->counters, s);
    gauge(s, "uptime_seconds", "Seconds since mongotap started", in->uptime_s);
    if (in->nmembers) {
        header(s, "upstream_member_up", "gauge",
               "1 while the upstream member answers mongotap's hello checks");
        for (size_t i = 0; i < in->nmembers; i++) {
            bson_string_append(s, "mongotap_upstream_member_up{member=\"");
            append_label(s, in->members[i]);
            bson_string_append_printf(s, "\"} %d\n", in->members_up[i] ? 1 : 0);
        }
    }

    header(s, "commands_total", "counter",
           "Commands seen, by command name, database and collection (bounded label sets; "
           "sum() is every command)");
    for (size_t c = 0; c < NCOMMANDS; c++) {
        for (size_t k = 0; k <= MT_METRICS_NS_OTHER; k++) {
            uint64_t v = m->commands[c][k];
            if (!v)
                continue;
            bson_string_append_printf(s, "mongotap_commands_total{command=\"%s\",db=\"",
                                      command_names[c]);
            append_label(s, k == MT_METRICS_NS_OTHER ? "<other>" : m->ns[k].db);
            bson_string_append(s, "\",collection=\"");
            append_label(s, k == MT_METRICS_NS_OTHER ? "<other>" : m->ns[k].coll);
            bson_string_append_printf(s, "\"} %llu\n", (unsigned long long)v);
        }
    }

    header(s, "command_duration_seconds", "histogram",
           "Time from a request forwarded to the first byte of its reply, by command");
    for (size_t c = 0; c < NCOMMANDS; c++) {
        if (!m->count[c])
            continue;
        uint64_t cum = 0;
        for (size_t b = 0; b < MT_METRICS_NBUCKETS; b++) {
            cum += m->buckets[c][b];
            bson_string_append_printf(
                s, "mongotap_command_duration_seconds_bucket{command=\"%s\",le=\"%s\"} %llu\n",
                command_names[c], bucket_le[b], (unsigned long long)cum);
        }
        cum += m->buckets[c][MT_METRICS_NBUCKETS];
        bson_string_append_printf(
            s, "mongotap_command_duration_seconds_bucket{command=\"%s\",le=\"+Inf\"} %llu\n",
            command_names[c], (unsigned long long)cum);
        bson_string_append_printf(s, "mongotap_command_duration_seconds_sum{command=\"%s\"} ",
                                  command_names[c]);
        ns_seconds(s, m->sum_ns[c]);
        bson_string_append_printf(
            s, "\nmongotap_command_duration_seconds_count{command=\"%s\"} %llu\n", command_names[c],
            (unsigned long long)m->count[c]);
    }
    return bson_string_free(s, false);
}
