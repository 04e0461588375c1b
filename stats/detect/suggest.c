/*
 * suggest: the template table and its expansion. Placeholders: {n} the
 * number of distinct values, {coll} the children's collection, {docs}
 * "document" or "documents", {key} the looked-up field, {field} the parent's
 * field. The first row matching type, family and the presence of a field
 * wins, so specific rows come first.
 */
#include "suggest.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

enum { ANY_FIELD = 0, WITH_FIELD, NO_FIELD };

static const struct {
    mt_finding_type_t type;
    mt_driver_family_t family;
    int field;
    const char *text;
} table[] = {
    {MT_FINDING_N_PLUS_ONE, MT_DRIVER_MONGOOSE, WITH_FIELD,
     "Load the {n} {coll} {docs} in one query: call populate('{field}') on the query (not per "
     "document), which sends one {{key}: {$in: [...]}}."},
    {MT_FINDING_N_PLUS_ONE, MT_DRIVER_MONGOOSE, ANY_FIELD,
     "Load the {n} {coll} {docs} in one query: use populate() on the query (not per document), "
     "which sends one {{key}: {$in: [...]}}."},
    {MT_FINDING_N_PLUS_ONE, MT_DRIVER_MONGOENGINE, ANY_FIELD,
     "Load the {n} {coll} {docs} in one query: add select_related() to the queryset (one {{key}: "
     "{$in: [...]}} instead of one query per reference)."},
    {MT_FINDING_N_PLUS_ONE, MT_DRIVER_PYMONGO, ANY_FIELD,
     "Load the {n} {coll} {docs} in one query ({{key}: {$in: [...]}}): mongoengine: "
     "select_related(); pymongo: one find with {{key}: {$in: [...]}}."},
    {MT_FINDING_N_PLUS_ONE, MT_DRIVER_OTHER, ANY_FIELD,
     "Load the {n} {coll} {docs} in one query ({{key}: {$in: [...]}}) or join them to the parent "
     "query with a $lookup stage."},
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
    char num[16];

    snprintf(num, sizeof(num), "%u", a->distinct);
    for (const char *p = tpl; *p && n + 1 < cap;) {
        const char *v = NULL;
        size_t skip = 0;
        if (*p == '{') {
            static const char *const names[] = {"{n}", "{coll}", "{docs}", "{key}", "{field}"};
            const char *vals[] = {num, a->collection ? a->collection : "",
                                  a->distinct == 1 ? "document" : "documents",
                                  a->key && *a->key ? a->key : "_id", a->field ? a->field : ""};
            for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                if (strncmp(p, names[i], strlen(names[i])) == 0) {
                    v = vals[i];
                    skip = strlen(names[i]);
                    break;
                }
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

void mt_suggest(mt_finding_type_t type, const char *driver, const mt_suggest_args_t *args,
                char *out, size_t cap)
{
    mt_driver_family_t fam = mt_driver_family(driver);
    bool has_field = args->field && *args->field;

    if (cap == 0)
        return;
    out[0] = '\0';
    /* the family's rows, else the generic ones */
    for (int pass = 0; pass < 2; pass++) {
        mt_driver_family_t want = pass == 0 ? fam : MT_DRIVER_OTHER;
        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
            if (table[i].type != type || table[i].family != want)
                continue;
            if ((table[i].field == WITH_FIELD && !has_field) ||
                (table[i].field == NO_FIELD && has_field))
                continue;
            expand(table[i].text, args, out, cap);
            return;
        }
    }
}
