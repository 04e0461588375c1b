/*
 * suggest: the template table and its expansion. Placeholders: {n} the
 * number of distinct values, {count} the children, {coll} the children's
 * collection, {cmd} their command, {docs} "document" or "documents", {key}
 * the looked-up field, {field} the parent's field. The first row matching
 * type, variant, family and the presence of a field wins, so specific rows
 * come first; a family without a row of its own uses the generic ones.
 */
#include "suggest.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

enum { ANY_FIELD = 0, WITH_FIELD };
/* what kind of children: plain lookups, counts, per-document lists, inserts */
enum { V_ANY = 0, V_COUNT, V_LISTS, V_INSERT };

static const struct {
    mt_finding_type_t type;
    int variant;
    mt_driver_family_t family;
    int field;
    const char *text;
} table[] = {
    /* N+1: counts per document */
    {MT_FINDING_N_PLUS_ONE, V_COUNT, MT_DRIVER_MONGOOSE, ANY_FIELD,
     "Count the {coll} documents for all {n} values in one Model.aggregate([{$match: {{key}: {$in: "
     "[...]}}}, {$group: {_id: '${key}', n: {$sum: 1}}}]) (or a $lookup stage on the parent query) "
     "instead of one {cmd} per document."},
    {MT_FINDING_N_PLUS_ONE, V_COUNT, MT_DRIVER_OTHER, ANY_FIELD,
     "Count the {coll} documents for all {n} values in one aggregate grouped by {key} ([{$match: "
     "{{key}: {$in: [...]}}}, {$group: {_id: '${key}', n: {$sum: 1}}}]) or join the counts to the "
     "parent query with a $lookup stage, instead of one {cmd} per document."},
    /* N+1: one $in per document */
    {MT_FINDING_N_PLUS_ONE, V_LISTS, MT_DRIVER_MONGOOSE, ANY_FIELD,
     "Load the {coll} documents of all {count} lists in one query: call populate() on the query "
     "(not per document), which sends one {{key}: {$in: [...]}} with every value."},
    {MT_FINDING_N_PLUS_ONE, V_LISTS, MT_DRIVER_OTHER, ANY_FIELD,
     "Load the {coll} documents of all {count} lists in one query ({{key}: {$in: [...]}} with "
     "every value, not one $in per document): mongoengine: select_related() on the queryset; "
     "pymongo: collect the ids and run one find."},
    /* N+1: one lookup per document */
    {MT_FINDING_N_PLUS_ONE, V_ANY, MT_DRIVER_MONGOOSE, WITH_FIELD,
     "Load the {n} {coll} {docs} in one query: call populate('{field}') on the query (not per "
     "document), which sends one {{key}: {$in: [...]}}."},
    {MT_FINDING_N_PLUS_ONE, V_ANY, MT_DRIVER_MONGOOSE, ANY_FIELD,
     "Load the {n} {coll} {docs} in one query: use populate() on the query (not per document), "
     "which sends one {{key}: {$in: [...]}}."},
    {MT_FINDING_N_PLUS_ONE, V_ANY, MT_DRIVER_MONGOENGINE, ANY_FIELD,
     "Load the {n} {coll} {docs} in one query: add select_related() to the queryset (one {{key}: "
     "{$in: [...]}} instead of one query per reference)."},
    {MT_FINDING_N_PLUS_ONE, V_ANY, MT_DRIVER_PYMONGO, ANY_FIELD,
     "Load the {n} {coll} {docs} in one query ({{key}: {$in: [...]}}): mongoengine: "
     "select_related(); pymongo: one find with {{key}: {$in: [...]}}."},
    {MT_FINDING_N_PLUS_ONE, V_ANY, MT_DRIVER_OTHER, ANY_FIELD,
     "Load the {n} {coll} {docs} in one query ({{key}: {$in: [...]}}) or join them to the parent "
     "query with a $lookup stage."},
    /* write loops */
    {MT_FINDING_WRITE_LOOP, V_INSERT, MT_DRIVER_MONGOOSE, ANY_FIELD,
     "Insert the {count} {coll} documents in one Model.insertMany([...]) instead of one save() or "
     "create() per document."},
    {MT_FINDING_WRITE_LOOP, V_INSERT, MT_DRIVER_NODE, ANY_FIELD,
     "Insert the {count} {coll} documents in one insertMany([...]) instead of one insertOne per "
     "document."},
    {MT_FINDING_WRITE_LOOP, V_INSERT, MT_DRIVER_OTHER, ANY_FIELD,
     "Insert the {count} {coll} documents in one insert_many([...]) (mongoengine: "
     "Document.objects.insert([...])) instead of one insert per document."},
    {MT_FINDING_WRITE_LOOP, V_ANY, MT_DRIVER_MONGOOSE, ANY_FIELD,
     "Send the {count} {coll} {cmd}s as one Model.bulkWrite([...]) (or one updateMany({{key}: "
     "{$in: "
     "[...]}}) when every document gets the same change) instead of one call per document."},
    {MT_FINDING_WRITE_LOOP, V_ANY, MT_DRIVER_NODE, ANY_FIELD,
     "Send the {count} {coll} {cmd}s as one bulkWrite([...]) (or one updateMany({{key}: {$in: "
     "[...]}}) when every document gets the same change) instead of one call per document."},
    {MT_FINDING_WRITE_LOOP, V_ANY, MT_DRIVER_OTHER, ANY_FIELD,
     "Send the {count} {coll} {cmd}s as one bulk_write([...]) (or one update_many({{key}: {$in: "
     "[...]}}) when every document gets the same change; mongoengine: "
     "objects(...).update()) instead of one call per document."},
    /* repeated reads */
    {MT_FINDING_REPEATED_READ, V_ANY, MT_DRIVER_OTHER, ANY_FIELD,
     "The same {coll} {cmd} with the same values ran {count} times in one request: load it once "
     "per request and reuse the result."},
};

const char *mt_driver_family_str(mt_driver_family_t family)
{
    switch (family) {
    case MT_DRIVER_OTHER:
        return "other";
    case MT_DRIVER_PYMONGO:
        return "pymongo";
    case MT_DRIVER_MONGOENGINE:
        return "mongoengine";
    case MT_DRIVER_MONGOOSE:
        return "mongoose";
    case MT_DRIVER_NODE:
        return "node";
    }
    return "unknown";
}

static bool contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++)
        if (strncasecmp(p, needle, n) == 0)
            return true;
    return false;
}

mt_driver_family_t mt_driver_family(const char *driver)
{
    if (!driver)
        return MT_DRIVER_OTHER;
    /* ODMs before the drivers they run on ("nodejs|Mongoose") */
    if (contains_ci(driver, "mongoose"))
        return MT_DRIVER_MONGOOSE;
    if (contains_ci(driver, "mongoengine"))
        return MT_DRIVER_MONGOENGINE;
    if (contains_ci(driver, "pymongo"))
        return MT_DRIVER_PYMONGO;
    if (contains_ci(driver, "nodejs"))
        return MT_DRIVER_NODE;
    return MT_DRIVER_OTHER;
}

static void expand(const char *tpl, const mt_suggest_args_t *a, char *out, size_t cap)
{
    size_t n = 0;
    char num[16], count[16];

    snprintf(num, sizeof(num), "%u", a->distinct);
    snprintf(count, sizeof(count), "%u", a->count);
    for (const char *p = tpl; *p && n + 1 < cap;) {
        static const char *const names[] = {"{n}",    "{count}", "{coll}", "{cmd}",
                                            "{docs}", "{key}",   "{field}"};
        const char *vals[] = {num,
                              count,
                              a->collection ? a->collection : "",
                              a->command ? a->command : "",
                              a->distinct == 1 ? "document" : "documents",
                              a->key && *a->key ? a->key : "_id",
                              a->field ? a->field : ""};
        const char *v = NULL;
        size_t skip = 0;
        for (size_t i = 0; *p == '{' && i < sizeof(names) / sizeof(names[0]); i++) {
            if (strncmp(p, names[i], strlen(names[i])) == 0) {
                v = vals[i];
                skip = strlen(names[i]);
                break;
            }
        }
        if (!v) {
            out[n++] = *p++;
            continue;
        }
        for (; *v && n + 1 < cap; v++)
            out[n++] = *v;
        p += skip;
    }
    out[n] = '\0';
}

static int variant_of(mt_finding_type_t type, const mt_suggest_args_t *a)
{
    const char *cmd = a->command ? a->command : "";
    const char *shape = a->shape ? a->shape : "";

    if (type == MT_FINDING_WRITE_LOOP && strcasecmp(cmd, "insert") == 0)
        return V_INSERT;
    if (type != MT_FINDING_N_PLUS_ONE)
        return V_ANY;
    if (strcasecmp(cmd, "count") == 0 || strcasecmp(cmd, "distinct") == 0 ||
        (strcasecmp(cmd, "aggregate") == 0 &&
         (strstr(shape, "\"$group\"") || strstr(shape, "\"$count\""))))
        return V_COUNT;
    return a->in_lists ? V_LISTS : V_ANY;
}

void mt_suggest(mt_finding_type_t type, const char *driver, const mt_suggest_args_t *args,
                char *out, size_t cap)
{
    mt_driver_family_t fam = mt_driver_family(driver);
    bool has_field = args->field && *args->field;
    int variant = variant_of(type, args);

    if (cap == 0)
        return;
    out[0] = '\0';
    /* the family's rows, else the generic ones */
    for (int pass = 0; pass < 2; pass++) {
        mt_driver_family_t want = pass == 0 ? fam : MT_DRIVER_OTHER;
        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
            if (table[i].type != type || table[i].family != want || table[i].variant != variant)
                continue;
            if (table[i].field == WITH_FIELD && !has_field)
                continue;
            expand(table[i].text, args, out, cap);
            return;
        }
    }
}
