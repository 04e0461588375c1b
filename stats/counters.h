/*
 * counters: the one table of mongotap's global figures. The enum, the JSON
 * names of /api/stats, the Prometheus names and types and every rendering
 * are generated from it (as twemproxy's nc_stats.h does). Counters only grow
 * (POST /api/reset moves the JSON views' baseline, never a counter); gauges
 * are set from live values just before they are rendered.
 */
#ifndef MT_COUNTERS_H
#define MT_COUNTERS_H

#include <bson/bson.h>
#include <stdint.h>

/* X(id, type, json group ("" for the top level), json name, prometheus name, help). An
 * empty prometheus name: the figure is exposed by a labelled family instead (COMMANDS is
 * sum(mongotap_commands_total), metrics.c). */
#define MT_STATS_COUNTERS(X)                                                                       \
    X(CONNECTIONS_ACTIVE, GAUGE, "connections", "active", "connections_active",                    \
      "Client connections open now")                                                               \
    X(CONNECTIONS_TOTAL, COUNTER, "connections", "total", "connections_total",                     \
      "Client connections accepted")                                                               \
    X(CONNECTIONS_REFUSED, COUNTER, "connections", "refused", "connections_refused_total",         \
      "Client connections refused (max-connections or accept errors)")                             \
    X(CONNECTIONS_RETIRED, COUNTER, "connections", "retired", "connections_retired_total",         \
      "Client connections closed after their last reply because their member lost the primary")    \
    X(COMMANDS, COUNTER, "", "commands", "", "Commands seen")                                      \
    X(PARSE_ERRORS, COUNTER, "", "parse_errors", "parse_errors_total",                             \
      "Messages forwarded that did not parse")                                                     \
    X(UPSTREAM_ERRORS, COUNTER, "", "upstream_errors", "upstream_errors_total",                    \
      "Upstream connect failures and upstream-side errors")                                        \
    X(PROTOCOL_ERRORS, COUNTER, "", "protocol_errors", "protocol_errors_total",                    \
      "Connections closed for an impossible message header")                                       \
    X(MESSAGES_UNKNOWN, COUNTER, "", "messages_unknown_opcode", "messages_unknown_opcode_total",   \
      "Messages with an opcode mongotap does not decode (still forwarded)")                        \
    X(ACCOUNTING_SHED, COUNTER, "", "accounting_shed", "accounting_shed_total",                    \
      "Messages or connections forwarded but not accounted because a memory bound was reached")    \
    X(DECOMPRESS_SKIPPED, COUNTER, "", "decompress_skipped", "decompress_skipped_total",           \
      "Compressed messages decompressed only in part or not at all (per-message limit or "         \
      "decompression budget); what was not decompressed is not accounted")                         \
    X(NAMES_TRUNCATED, COUNTER, "", "names_truncated", "names_truncated_total",                    \
      "Names (database, collection, field path) longer than MongoDB allows, cut before being "     \
      "kept")                                                                                      \
    X(BYTES_FROM_CLIENTS, COUNTER, "bytes", "from_clients", "client_bytes_received_total",         \
      "Bytes read from clients and forwarded upstream")                                            \
    X(BYTES_FROM_UPSTREAM, COUNTER, "bytes", "from_upstream", "upstream_bytes_received_total",     \
      "Bytes read from upstream and forwarded to clients")                                         \
    X(WINDOWS_OPEN, GAUGE, "windows", "open", "windows_open", "Request windows open now")          \
    X(WINDOWS, COUNTER, "windows", "closed", "windows_closed_total", "Request windows closed")     \
    X(WINDOW_COMMANDS_DROPPED, COUNTER, "windows", "commands_dropped",                             \
      "window_commands_dropped_total",                                                             \
      "Commands of kept closed windows forgotten at the total bound of --keep-windows (the "       \
      "windows stay listed without them)")                                                         \
    X(FINDINGS, COUNTER, "", "findings", "findings_total", "Findings (every type)")                \
    X(PATTERNS, GAUGE, "", "patterns", "patterns_tracked", "Finding patterns tracked")             \
    X(SHAPES_TRACKED, GAUGE, "", "shapes_tracked", "shapes_tracked",                               \
      "Query shapes tracked (the <other> entry included)")                                         \
    X(PENDING_REQUESTS, GAUGE, "", "pending_requests", "requests_pending",                         \
      "Requests forwarded whose reply has not been seen")                                          \
    X(REPLIES_UNMATCHED, COUNTER, "", "replies_unmatched", "replies_unmatched_total",              \
      "Replies to no request mongotap saw (or one it had to forget)")                              \
    X(REQUESTS_FORGOTTEN, COUNTER, "", "requests_forgotten", "requests_forgotten_total",           \
      "Requests forgotten before their reply (a connection pipelining past the bound)")            \
    X(CURSORS_OPEN, GAUGE, "", "cursors_open", "cursors_open",                                     \
      "Open cursors remembered (getMores are accounted to the command that opened them)")          \
    X(CURSORS_EVICTED, COUNTER, "", "cursors_evicted", "cursors_evicted_total",                    \
      "Open cursors forgotten at the cursor table's bound")                                        \
    X(UPSTREAM_READY, GAUGE, "upstream", "ready", "upstream_ready",                                \
      "1 while the upstream (the primary, for a replica set) answers mongotap's checks")           \
    X(UPSTREAM_PRIMARY_CHANGES, COUNTER, "upstream", "primary_changes",                            \
      "upstream_primary_changes_total",                                                            \
      "Times the upstream replica set's primary became another member")                            \
    X(UPSTREAM_TLS_FAILURES, COUNTER, "tls", "upstream_handshake_failures",                        \
      "upstream_tls_handshake_failures_total",                                                     \
      "Upstream connections for clients whose TLS handshake failed (the reason is logged)")        \
    X(CLIENT_TLS_FAILURES, COUNTER, "tls", "client_handshake_failures",                            \
      "client_tls_handshake_failures_total",                                                       \
      "Client connections on a --tls-listen address whose TLS handshake failed")                   \
    X(CLIENT_TLS_ON_PLAIN, COUNTER, "tls", "client_hello_on_plain_listener",                       \
      "client_tls_on_plain_listener_total",                                                        \
      "Clients that began TLS on a plaintext listener (closed with a log line)")

typedef enum {
#define MT_STATS_ENUM(id, type, group, json, prom, help) MT_STAT_##id,
    MT_STATS_COUNTERS(MT_STATS_ENUM)
#undef MT_STATS_ENUM
        MT_STAT__COUNT
} mt_stat_counter_t;

typedef enum { MT_STAT_TYPE_COUNTER, MT_STAT_TYPE_GAUGE } mt_stat_type_t;

/* Upstream members, the one labelled gauge (mongotap_upstream_member_up). */
#define MT_STATS_MAX_MEMBERS 64
#define MT_STATS_MEMBER_NAME 264

/* The JSON name of a figure ("total", in group "connections"). */
const char *mt_stat_counter_str(mt_stat_counter_t counter);
mt_stat_type_t mt_stat_counter_type(mt_stat_counter_t counter);

/* Appends every figure to doc as /api/stats publishes them: top-level ones
 * as keys, grouped ones in a sub-document per group. Each figure once. */
void mt_stats_counters_bson(const uint64_t values[MT_STAT__COUNT], bson_t *doc);

/* The figures as the JSON views show them: counters since the last reset
 * (values minus baseline), except the connection totals, which describe the
 * process; gauges as they are. */
void mt_stats_counters_since(const uint64_t values[MT_STAT__COUNT],
                             const uint64_t baseline[MT_STAT__COUNT], uint64_t out[MT_STAT__COUNT]);

/* Appends the Prometheus exposition of every figure (HELP, TYPE, value). */
void mt_stats_counters_prometheus(const uint64_t values[MT_STAT__COUNT], bson_string_t *s);

#endif
