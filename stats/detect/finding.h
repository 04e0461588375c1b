/*
 * finding: the one place a finding's JSON is built (schema
 * mongotap.finding/1, SPEC section 5), and the parts patterns share with it,
 * so that both use the same words for the same things.
 */
#ifndef MT_FINDING_H
#define MT_FINDING_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include "detect.h"
#include "window.h"

/* Appends db, collection, command and shape to a sub-document being built. */
void mt_finding_shape_fields(bson_t *sub, const char *db, const char *collection,
                             const char *command, const char *shape);

/* Appends key as a string, or null when v is NULL or "". */
void mt_finding_str_or_null(bson_t *doc, const char *key, const char *v);

/* The suggestion of a result, worded for the window's driver. */
void mt_finding_suggestion(const mt_window_t *w, const mt_detect_result_t *r, char *out,
                           size_t cap);

/* Builds the finding document. id like "f-000001"; nested_in the id of the
 * finding whose children are its parent, or NULL. Values of user data appear
 * only with log_values. */
void mt_finding_bson(const mt_window_t *w, const mt_detect_result_t *r, const char *id,
                     const char *nested_in, int64_t detected_ms, bool log_values, bson_t *out);

#endif
