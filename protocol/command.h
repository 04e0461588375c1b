/*
 * command: reads the views of view.h out of a decoded message (msg.h).
 */
#ifndef MT_COMMAND_H
#define MT_COMMAND_H

#include <stdbool.h>

#include "msg.h"
#include "view.h"

/* Reads a request. MT_MSG_OK with a filled view, or an error when the
 * message decodes but is not a command we understand (e.g. no body), or
 * MT_MSG_ERR_SKIPPED when decompression stopped before the command. */
mt_msg_err_t mt_cmd_request(const mt_msg_t *msg, mt_cmd_view_t *out);

/* Reads a reply (OP_MSG or OP_REPLY). MT_MSG_ERR_SKIPPED as above, and then
 * the view is still filled with what is known (out->unread). */
mt_msg_err_t mt_cmd_reply(const mt_msg_t *msg, mt_reply_view_t *out);

/* True for commands that count but never open or extend request windows:
 * hello, isMaster, ping, buildInfo, saslStart, saslContinue, endSessions,
 * getLastError, and any command carrying topologyVersion. Case-insensitive. */
bool mt_cmd_is_monitoring(const char *name, bool has_topology_version);

#endif
