/*
 * window: request windows, the groups of commands the detectors look at
 * (SPEC section 4): the rules that open and close them and their storage
 * together. A window holds its commands (bounded), the single-key lookups'
 * values (as hashes) and, as evidence, copies of find/aggregate result
 * documents from its first possible parent on (bounded; see big_read in
 * mt_window_t). The registry holds the open windows (by id, by
 * "mongotap:" key) and the last closed ones, and calls back when one closes.
 */
#ifndef MT_WINDOW_H
#define MT_WINDOW_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <h2o/linklist.h>

#include "idmap.h"
#include "shape.h"
#include "shapes.h"
#include "spares.h"
#include "view.h"

/* Bounds. A window keeps its first MT_WINDOW_MAX_COMMANDS commands (the rest
 * are only counted). As evidence it copies the documents returned by its
 * find/aggregate commands up to MT_WINDOW_EVIDENCE_DOCS documents or
 * MT_WINDOW_EVIDENCE_BYTES bytes of BSON, whichever comes first; evidence is
 * dropped once the window is analysed, and a closed window keeps at most
 * MT_WINDOW_CLOSED_COMMANDS commands for /api/windows. */
#define MT_WINDOW_MAX_COMMANDS 10000
#define MT_WINDOW_EVIDENCE_DOCS 20000
#define MT_WINDOW_EVIDENCE_BYTES (8 * 1024 * 1024)
#define MT_WINDOW_CLOSED_COMMANDS 1000
/* Closed windows kept (--keep-windows): the last N, plus older ones whose
 * findings are still kept. Together they hold at most
 * MT_WINDOW_CLOSED_TOTAL_COMMANDS commands; past it the oldest windows give
 * their commands up (they stay listed, counted in commands_dropped). */
#define MT_WINDOW_KEEP_DEFAULT 100
#define MT_WINDOW_KEEP_MAX 100000
#define MT_WINDOW_CLOSED_TOTAL_COMMANDS 500000
#define MT_WINDOW_ERROR_NAME_MAX 64 /* longest codeName kept */
#define MT_WINDOW_MAX_KEYED 10000   /* open "mongotap:" windows */
#define MT_WINDOW_KEY_MAX 200       /* longest "mongotap:" key kept */
#define MT_WINDOW_KEY_PREFIX "mongotap:"
/* A comment that starts so keeps its command out of every finding (a seed
 * script, a migration) and opens no keyed window. */
#define MT_WINDOW_IGNORE_PREFIX "mongotap:ignore"
/* Across all open windows together: commands kept and evidence bytes. With
 * many keyed windows open at once each could otherwise reach its own bound;
 * past these, windows keep counting but stop keeping. */
#define MT_WINDOW_TOTAL_COMMANDS 1000000
#define MT_WINDOW_TOTAL_EVIDENCE (64 * 1024 * 1024)
/* Storage kept for reuse, so that a window per request allocates nothing:
 * up to MT_WINDOW_POOL retired windows (with a commands array of at most
 * MT_WINDOW_POOL_CMDS) and as many segment arrays (of at most
 * MT_WINDOW_POOL_EV bytes), arena blocks and evidence buffers; these of up
 * to MT_WINDOW_POOL_EV_EACH bytes, MT_WINDOW_POOL_EV_TOTAL together (a
 * window of a few 100-document replies needs a few hundred KiB, and a
 * buffer freed is a buffer faulted in again by the next window). Commands
 * arrays larger than a closed window keeps are kept too: a busy
 * connection's next window writes its commands where the last one did, not
 * to memory faulted in afresh. Up to MT_WINDOW_POOL_CMDS_ARRAYS of them, as
 * many bytes as the open windows may hold together (a pool of busy
 * connections reopens all its windows at once, and each that starts cold
 * faults a page in for every 32 commands); a window that outgrows a pooled
 * array takes one large enough before asking for fresh memory, so that they
 * are used up before open windows grow beside them; given back once none
 * was taken or kept for a minute. */
#define MT_WINDOW_POOL 16
#define MT_WINDOW_POOL_CMDS 256
#define MT_WINDOW_POOL_EV (64 * 1024)
#define MT_WINDOW_POOL_EV_EACH (1024 * 1024)
#define MT_WINDOW_POOL_EV_TOTAL (8 * 1024 * 1024)
#define MT_WINDOW_POOL_CMDS_ARRAYS 128
#define MT_WINDOW_POOL_CMDS_TOTAL ((size_t)MT_WINDOW_TOTAL_COMMANDS * sizeof(mt_window_cmd_t))
#define MT_WINDOW_POOL_IDLE_NS (UINT64_C(60) * 1000000000)

typedef struct {
    size_t cmds;     /* commands kept by open windows */
    size_t ev_bytes; /* evidence bytes held by open windows */
} mt_window_budget_t;

/* What a lookup keeps beyond its first term's value hash, in the window's
 * arena while it is open: the other terms' hashes and, with log_values, the
 * first value itself. Most lookups have one term and need none. */
typedef struct {
    uint64_t hashes[MT_SHAPE_LOOKUP_TERMS - 1]; /* terms 1.. */
    const uint8_t *value_doc;                   /* {"": value}, or NULL */
    uint32_t value_doc_len;
} mt_window_lookup_more_t;

/* A command's key parts, for a command past --max-shapes while its window
 * is open (in the arena). */
typedef struct {
    const char *command;
    const char *db;
    const char *collection;
    const char *shape;
} mt_window_names_t;

/* A command as a window keeps it. Every command of a busy window is one of
 * these written to fresh memory, so it is kept small: what a reply updates
 * sits together at the end. */
typedef struct {
    /* The shape registry entry it is accounted to ("<other>" past
     * --max-shapes), which names its key parts; past --max-shapes the
     * window's own copy does while the window is open, so that the
     * detectors see the real key (see mt_window_trim). Read them with
     * mt_window_cmd_command() and the others below. */
    const mt_shape_entry_t *entry;
    const mt_window_names_t *own;
    uint64_t shape_hash; /* mt_shapes_hash() of the key */
    uint64_t start_ns;   /* when the request was forwarded */
    uint64_t query_hash; /* reads: filter, projection, sort, limit and skip, hashed */

    /* Lookups (mt_shape_lookup): each equality term's field path and a
     * hash of its value (mt_evidence_value_hash; an $in list: the order-free
     * sum over its elements). Values themselves are never kept, except the
     * first term's with log_values. Read them with mt_window_cmd_key() and
     * mt_window_cmd_hash(). */
    const char *const *keys; /* nterms paths in the arena, shared by lookups of one shape */
    uint64_t hash;           /* term 0's */
    const mt_window_lookup_more_t *more;
    uint32_t list_len;
    uint32_t bytes_in;     /* the request's size on the wire */
    uint8_t kind;          /* mt_cmd_kind_t */
    uint8_t nterms;        /* 0: not a lookup */
    bool in_list;          /* the one term is an $in */
    bool single_statement; /* a write of exactly one statement (or one inserted document) */
    bool ignored;          /* mongotap:ignore comment or --ignore-ns: no detector looks at it */
    uint8_t role;          /* MT_WINDOW_ROLE_*, once analysed */
    uint16_t finding;      /* 1-based index of the window's finding the role is in */

    /* Set by its replies: what /api/windows/ID shows of its exchange (the
     * replies' size summed, saturating) and how it failed (ok: 0 or
     * writeErrors). */
    uint64_t duration_ns;   /* request to (first) reply */
    uint64_t getmore_ns;    /* getMores on its cursor inside the window */
    uint64_t docs;          /* documents returned, getMores on its cursor included */
    const char *error_name; /* codeName, in the arena, or NULL */
    uint32_t bytes_out;
    int32_t error_code; /* 0 when none was given */
    bool replied;
    bool failed;
} mt_window_cmd_t;

/* A command's key parts: its own while it has them, else its entry's (a
 * getMore is "getMore" in its cursor's entry; past --max-shapes, once
 * trimmed, "<other>" named by its kind). */
static inline const char *mt_window_cmd_command(const mt_window_cmd_t *c)
{
    if (c->own)
        return c->own->command;
    if (c->entry && !c->entry->overflow)
        return c->kind == MT_CMD_GETMORE ? "getMore" : c->entry->command;
    return c->kind == MT_CMD_OTHER ? "" : mt_cmd_kind_str((mt_cmd_kind_t)c->kind);
}
static inline const char *mt_window_cmd_db(const mt_window_cmd_t *c)
{
    return c->own ? c->own->db : c->entry ? c->entry->db : "";
}
static inline const char *mt_window_cmd_collection(const mt_window_cmd_t *c)
{
    return c->own ? c->own->collection : c->entry ? c->entry->collection : "";
}
static inline const char *mt_window_cmd_shape(const mt_window_cmd_t *c)
{
    return c->own ? c->own->shape : c->entry ? c->entry->shape : MT_SHAPES_OTHER;
}

/* Lookup term t's field path (NULL once the window is trimmed) and value
 * hash. */
static inline const char *mt_window_cmd_key(const mt_window_cmd_t *c, unsigned t)
{
    return c->keys && t < c->nterms ? c->keys[t] : NULL;
}
static inline uint64_t mt_window_cmd_hash(const mt_window_cmd_t *c, unsigned t)
{
    if (t == 0)
        return c->hash;
    return c->more && t < c->nterms ? c->more->hashes[t - 1] : 0;
}

enum { MT_WINDOW_ROLE_NONE = 0, MT_WINDOW_ROLE_PARENT, MT_WINDOW_ROLE_CHILD };
const char *mt_window_role_str(uint8_t role);

/* A finding the window produced; a command's `finding` is 1 + its index. */
typedef struct {
    char id[16];      /* "f-000012" */
    const char *type; /* static, mt_finding_type_str() */
    bool high;        /* confidence */
    uint32_t segment; /* 0 when the window was not cut */
    int32_t parent;   /* command index, -1 when none */
    uint32_t children;
} mt_window_finding_t;

/* A segment: commands [lo, hi) of a window cut at back-to-back requests. */
typedef struct {
    uint32_t lo, hi;
} mt_window_range_t;

/* Evidence: documents returned to one command, either a reply's batch whole
 * (a BSON array: array) or a run of documents (concatenated BSON). */
typedef struct {
    uint32_t cmd;
    uint32_t off;
    uint32_t len;
    bool array;
} mt_window_evseg_t;

typedef struct mt_window_block mt_window_block_t;
typedef struct mt_window mt_window_t;

struct mt_window {
    uint64_t id;
    uint64_t conn_id;         /* connection that opened it */
    const char *key;          /* "mongotap:..." (key_buf) or NULL */
    mt_window_t **owner_slot; /* per-connection windows: where the connection points at it */
    uint64_t started_ns;
    uint64_t last_ns; /* last request or reply */
    uint64_t closed_ns;
    int64_t started_ms; /* wall clock */
    uint32_t inflight;  /* requests sent, reply not yet seen */
    bool closed;
    /* A find or aggregate in it returned n1-threshold documents or left a
     * cursor open: it may be a parent, and the replies after it its children
     * (whose documents a nested loop's parent is made of). Before one, no
     * reply's documents can serve as evidence, and none are kept. */
    bool big_read;
    uint32_t findings;
    mt_window_finding_t *found; /* the findings, once analysed (owned) */
    mt_window_range_t *cuts;    /* its segments when it was cut, else NULL (owned) */
    uint32_t ncuts;
    uint64_t pin_seq;  /* findings sequence of its newest finding; 0 when none */
    char *error_names; /* closed: its failed commands' codeNames (owned), else NULL */

    /* what each command and reply touches, then the names */
    mt_window_cmd_t *cmds;
    uint32_t ncmds, cmds_cap;
    /* commands the newest retired window had when this one opened: how far
     * its array grows at once past a pooled window's size */
    uint32_t cmds_hint;
    uint64_t total_cmds; /* kept or not */
    /* The newest lookup's key paths (in the arena) and its shape: the next
     * lookups of that shape share them. Kept here, not read back from the
     * previous record, which is cold by the time the next command comes. */
    uint64_t keys_shape_hash;
    uint8_t keys_nterms;
    const char *const *keys;

    uint8_t *ev;
    size_t ev_len, ev_cap;
    uint32_t ev_docs;
    mt_window_evseg_t *segs;
    uint32_t nsegs, segs_cap;

    mt_window_block_t *arena;
    mt_window_budget_t *budget; /* the registry's, while open */
    mt_spares_t *spare_cmds;    /* the registry's, while open: where a growing array looks first */

    h2o_linklist_t link;      /* in the registry's open list, then recent or pinned */
    h2o_linklist_t held_link; /* closed: in a list of windows still holding commands */
    mt_window_t *pool_next;   /* in the registry's pool, once retired */

    char client_addr[64];
    char app_name[128];
    char driver[128];
    char key_buf[MT_WINDOW_KEY_MAX + 1];
};

/* Adds a command. Returns its index, or -1 when the window is full (the
 * command is still counted in total_cmds) or out of memory. The strings are
 * not copied: they must outlive the window (shape registry entries do) or be
 * copied with mt_window_strdup() first. */
int mt_window_add_cmd(mt_window_t *w, const mt_window_cmd_t *cmd);

/* Copies a string (bounded to max bytes, 0 = no bound) into the window's
 * arena; NULL when out of memory. */
const char *mt_window_strdup(mt_window_t *w, const char *s, size_t max);
const uint8_t *mt_window_memdup(mt_window_t *w, const uint8_t *p, size_t len);

/* Copies the documents of a BSON array (a firstBatch / nextBatch of ndocs
 * elements, framed by the reply's view) as evidence for command idx, within
 * the evidence bounds. */
void mt_window_add_evidence(mt_window_t *w, uint32_t idx, const uint8_t *array, uint32_t len,
                            uint32_t ndocs);

/* After analysis: frees the evidence, the arena and what points into it
 * (lookup keys, logged values), so that a closed window holds numbers and
 * registry entries only (a command past --max-shapes is then shown as its
 * entry, "<other>", named by its kind). mt_window_reg_retire() calls it,
 * after cutting the command list to MT_WINDOW_CLOSED_COMMANDS. */
void mt_window_trim(mt_window_t *w);
/* True when the window keeps no more commands (they are only counted). */
bool mt_window_full(const mt_window_t *w);

/* Duration shown for a window: first request to last reply. */
uint64_t mt_window_duration_ns(const mt_window_t *w);

/* Where commands [lo, hi) sit in time: their wall-clock start, their span
 * (first request to last reply) and their offset from the window's start. */
typedef struct {
    int64_t started_ms;
    uint64_t duration_ns;
    uint64_t offset_ns;
} mt_window_span_t;
void mt_window_span(const mt_window_t *w, uint32_t lo, uint32_t hi, mt_window_span_t *out);

/* Keeps what the analysis found: the findings (copied) and the segments. */
void mt_window_set_findings(mt_window_t *w, const mt_window_finding_t *found, uint32_t n,
                            uint64_t pin_seq);
void mt_window_set_segments(mt_window_t *w, const mt_window_range_t *cuts, uint32_t n);

/* Case-insensitive substrings a window must show to be listed (NULL or ""
 * matches all): ns in a command's "db.collection", shape in a command's
 * shape, app in the client's application name, address or driver, and text
 * in any of those, the key, a command name or a finding's id or type. */
typedef struct {
    const char *ns, *shape, *app, *text;
} mt_window_filter_t;
bool mt_window_matches(const mt_window_t *w, const mt_window_filter_t *f);

/* /api/windows object (summary only: without its commands); /api/windows/ID
 * (segment 0: the whole window; false when it has no such segment);
 * /api/connections "window" object. */
void mt_window_bson(const mt_window_t *w, bool with_commands, bson_t *doc);
bool mt_window_detail_bson(const mt_window_t *w, uint32_t segment, bson_t *doc);
void mt_window_brief_bson(const mt_window_t *w, bson_t *doc);

/* Registry */

/* A buffer kept for the next window. */
typedef void (*mt_window_close_cb)(void *data, mt_window_t *w, uint64_t now_ns);

typedef struct {
    uint64_t gap_ns;              /* --window-gap-ms */
    uint64_t max_ns;              /* --window-max-ms */
    bool log_values;              /* keep looked-up values for the finding */
    const mt_shape_opts_t *shape; /* field names kept as "?" (NULL: none) */
    uint64_t *paths_cut;          /* counts field paths cut to MT_CMD_PATH_MAX (may be NULL) */
    uint64_t *cmds_dropped;       /* counts commands closed windows gave up (may be NULL) */
    uint32_t keep;                /* --keep-windows; 0 means MT_WINDOW_KEEP_DEFAULT */
    size_t closed_cmds_max;       /* 0 means MT_WINDOW_CLOSED_TOTAL_COMMANDS */
    mt_window_close_cb on_close;  /* analyse a window before it is kept as closed */
    void *on_close_data;
    /* --ignore-ns: "db.collection" or "db.*" */
    const char *const *ignore_ns;
    size_t nignore_ns;
} mt_window_rules_t;

/*
 * Closed windows, oldest first in each list:
 *
 *   recent:  the last `keep` closed windows
 *   pinned:  older ones whose newest finding is still kept (pin_seq above
 *            pin_floor); they go when it ages out
 *   held:    those of both that still hold commands, without findings first
 *            (held_plain) then with (held_found): the total bound takes
 *            commands from the oldest of held_plain before held_found
 */
typedef struct {
    mt_window_rules_t rules;
    h2o_linklist_t open;
    size_t open_count;
    size_t keyed_open;
    mt_idmap_t by_id;     /* open window id -> mt_window_t * */
    mt_idmap_t by_key;    /* hash of key -> mt_window_t * */
    mt_idmap_t closed_id; /* closed window id -> mt_window_t * */
    h2o_linklist_t recent, pinned, held_plain, held_found;
    size_t nrecent, npinned;
    size_t closed_cmds; /* commands held by closed windows */
    uint64_t pin_floor; /* findings sequence at or below which findings are gone */
    uint64_t next_id;
    mt_window_budget_t budget;
    mt_window_t *pool; /* retired windows for reuse, npool of them */
    size_t npool;
    mt_spares_t spare_ev, spare_segs, spare_blocks; /* blocks: arena blocks */
    mt_spares_t spare_cmds;                         /* commands arrays */
    uint64_t spare_cmds_uses;    /* spare_cmds.uses at the last tick that saw them used */
    uint64_t spare_cmds_idle_ns; /* that tick */
    size_t ev_hint;              /* evidence buffer size the newest analysed window had */
    uint32_t cmds_hint;          /* commands the newest retired window kept before its trim */
} mt_window_reg_t;

void mt_window_reg_init(mt_window_reg_t *reg, const mt_window_rules_t *rules);
/* Frees every window, open or closed (reset and shutdown). */
void mt_window_reg_clear(mt_window_reg_t *reg);

/* Opens a window (key NULL for a per-connection window). NULL when out of
 * memory or, for keyed windows, past MT_WINDOW_MAX_KEYED. */
mt_window_t *mt_window_reg_open(mt_window_reg_t *reg, uint64_t conn_id, const char *key,
                                mt_window_t **owner_slot, uint64_t now_ns, int64_t now_ms,
                                const char *client_addr, const char *app_name, const char *driver);
mt_window_t *mt_window_reg_find(const mt_window_reg_t *reg, uint64_t id);
mt_window_t *mt_window_reg_find_key(const mt_window_reg_t *reg, const char *key);
/* Takes an open window out of the open set and marks it closed. */
void mt_window_reg_detach(mt_window_reg_t *reg, mt_window_t *w, uint64_t now_ns);
/* Cuts a detached window's commands to MT_WINDOW_CLOSED_COMMANDS (its
 * storage kept for the next windows), trims it and keeps it among the
 * closed ones; windows past the bounds are freed or give up their
 * commands. */
void mt_window_reg_retire(mt_window_reg_t *reg, mt_window_t *w);
/* Findings up to this sequence number are gone: older windows pinned by
 * them only are freed. */
void mt_window_reg_unpin(mt_window_reg_t *reg, uint64_t floor);
/* Closed windows kept, newest first: the newest, then each one's next
 * older; NULL at the end. */
mt_window_t *mt_window_reg_newest(const mt_window_reg_t *reg);
mt_window_t *mt_window_reg_older(const mt_window_reg_t *reg, const mt_window_t *w);
/* The i-th most recent closed window (0 = newest), or NULL. */
mt_window_t *mt_window_reg_closed(const mt_window_reg_t *reg, size_t i);
size_t mt_window_reg_closed_count(const mt_window_reg_t *reg);
/* A kept closed window by id, or NULL. */
mt_window_t *mt_window_reg_find_closed(const mt_window_reg_t *reg, uint64_t id);

/* Rules */

/* The connection a command came on, as a window remembers it. */
typedef struct {
    uint64_t conn_id;
    const char *client_addr, *app_name, *driver;
    mt_window_t **own; /* the connection's open window */
} mt_window_origin_t;

/* True when w must close now: open for window-max, or idle (nothing in
 * flight) for window-gap. */
bool mt_window_stale(const mt_window_reg_t *reg, const mt_window_t *w, uint64_t now_ns);

/* The window a window-relevant command joins, opening one when needed: a
 * getMore joins the window of the command that opened its cursor
 * (cursor_win_id); a "mongotap:" comment its keyed window; a command without
 * one the keyed window its connection is still in (keyed_win_id: an ODM's
 * lazy loads carry no comment), else its connection's window. NULL when none
 * can be had (keyed bound). */
mt_window_t *mt_window_join(mt_window_reg_t *reg, const mt_window_origin_t *o, const char *comment,
                            uint64_t cursor_win_id, uint64_t keyed_win_id, uint64_t now_ns,
                            int64_t now_ms);

/* Records a command in w (entry: its shape registry entry, or the overflow
 * one, in which case the real key is copied into the window), flagged
 * `ignored` when its comment or namespace says so. Returns its index, or -1
 * when the window keeps no more. */
int mt_window_record(mt_window_reg_t *reg, mt_window_t *w, const mt_cmd_view_t *cmd,
                     const mt_shape_entry_t *entry, uint64_t shape_hash, const char *shape,
                     uint64_t now_ns);

/* Closes an open window: detach, on_close (analysis), keep among the
 * closed. */
void mt_window_close(mt_window_reg_t *reg, mt_window_t *w, uint64_t now_ns);
/* Closes every stale window. */
void mt_window_reg_tick(mt_window_reg_t *reg, uint64_t now_ns);
/* Closes every open window (shutdown: keyed windows outlive connections). */
void mt_window_reg_flush(mt_window_reg_t *reg, uint64_t now_ns);

#endif
