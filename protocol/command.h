/*
 * command: reads the views of view.h out of a decoded message (msg.h).
 */
#ifndef MT_COMMAND_H
#define MT_COMMAND_H

#include <stdbool.h>

#include "msg.h"
#include "shape.h"
#include "view.h"

/*
 * Reads a request in one pass over its command document: validates it
 * (whether or not mt_msg_parse did: see MT_MSG_DEFER_BODY), fills the view,
 * and hashes its shape (out->shape_id, field names redacted as shape_opts,
 * which may be NULL, says) and what makes it the same read again
 * (out->query_hash). MT_MSG_OK with a filled view; MT_MSG_ERR_BSON when the
 * document is not well-formed or a string the view hands out is not UTF-8;
 * another error when the message decodes but is not a command we understand
 * (e.g. no body); MT_MSG_ERR_SKIPPED when decompression stopped before the
 * command.
 */
mt_msg_err_t mt_cmd_request(const mt_msg_t *msg, const mt_shape_opts_t *shape_opts,
                            mt_cmd_view_t *out);

/* Reads a reply (OP_MSG or OP_REPLY) in one pass, validating its document
 * as mt_cmd_request() does. MT_MSG_ERR_SKIPPED as above, and then the view
 * is still filled with what is known (out->unread). */
mt_msg_err_t mt_cmd_reply(const mt_msg_t *msg, mt_reply_view_t *out);

/* True for commands that count but never open or extend request windows:
 * hello, isMaster, ping, buildInfo, saslStart, saslContinue, endSessions,
 * getLastError, and any command carrying topologyVersion. Case-insensitive. */
bool mt_cmd_is_monitoring(const char *name, bool has_topology_version);

#endif
