/*
 * suggest: the fix a finding suggests, from one table of templates per
 * finding type and driver or ODM family (named in the connection's
 * handshake: "PyMongo 3.11.0", "nodejs|Mongoose 9.0.0", "MongoEngine ...").
 */
#ifndef MT_SUGGEST_H
#define MT_SUGGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "detect.h"

typedef enum {
    MT_DRIVER_OTHER = 0,
    MT_DRIVER_PYMONGO, /* mongoengine 0.24 does not name itself: PyMongo may be either */
    MT_DRIVER_MONGOENGINE,
    MT_DRIVER_MONGOOSE,
    MT_DRIVER_NODE,
} mt_driver_family_t;

const char *mt_driver_family_str(mt_driver_family_t family);
mt_driver_family_t mt_driver_family(const char *driver);

/* What a template may name. */
typedef struct {
    const char *collection; /* of the children */
    const char *key;        /* looked-up field; "_id" when NULL or "" */
    const char *field;      /* the parent's field holding the keys, or NULL */
    uint32_t distinct;      /* distinct values looked up */
    uint32_t count;         /* children */
    const char *command;    /* the children's command */
    const char *shape;      /* the children's shape (a $group or $count makes a count) */
    bool in_lists;          /* per-document $in lists */
} mt_suggest_args_t;

/* Writes the suggestion for a finding of type from a client with driver. */
void mt_suggest(mt_finding_type_t type, const char *driver, const mt_suggest_args_t *args,
                char *out, size_t cap);

#endif
