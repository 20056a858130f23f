/* WebSocket push clients (/websocket): a hub subscriber that receives pushes as JSON
 * text frames and may answer them (DESIGN §7 "WebSocket frames"). */
#ifndef PG_WS_CLIENT_H
#define PG_WS_CLIENT_H

#include <jansson.h>

#include "auth/auth.h"
#include "core/conn.h"
#include "hub/push.h"
#include "transport/ws.h"

/* Upgrades c (its handshake already validated) into a push client of identity id
 * (taken) with client_id (copied), and subscribes it on c's worker. opt are the
 * node's options (kept by reference: they must outlive the client); pmd is what this
 * connection negotiated (NULL: no compression; used during the call only).
 * channel_rules (borrowed, may be NULL; the node's, the same for every client and
 * outliving them, as opt) decide its channel subscriptions (auth/channels.h). Returns 0, or -ENOMEM
 * (c is closed, id freed). */
int ws_client_attach(conn_t *c, const char *client_key, const ws_options_t *opt,
                     const ws_pmd_t *pmd, auth_identity_t *id, const char *client_id,
                     json_t *channel_rules, const char *extra, size_t extra_len);

/* Encodes p, reached through topic ti, as the push frame
 * {"type":"push","id","event","channel","payload"}.
 * Returns a new buffer holding the whole WebSocket frame, or NULL. */
buf_t *ws_client_encode(const push_t *p, int ti);

/* The same push frame compressed for permessage-deflate (RSV1, a fresh 32 KiB-window
 * deflate stream; built from the shared plain frame). Returns a new buffer (or a new
 * reference to the plain frame when compression does not shrink it), or NULL. */
buf_t *ws_client_encode_deflate(const push_t *p, int ti);

/* Upgrades c into an echo endpoint (diagnostics: text and binary messages come back
 * unchanged). Returns 0 or -ENOMEM (c is closed). */
int ws_echo_attach(conn_t *c, const char *client_key, const ws_options_t *opt, const char *extra,
                   size_t extra_len);

#endif
