/* Server-Sent Events subscribers: an HTTP response that never ends, carrying the pushes
 * of the topics the subscriber asked for, resumable with Last-Event-ID from the node's
 * history, with comment heartbeats. */
#ifndef PG_SSE_H
#define PG_SSE_H

#include <stddef.h>

#include "auth/auth.h"
#include "http/server.h"
#include "hub/history.h"
#include "hub/push.h"

typedef struct sse_options_s {
    unsigned heartbeat_ms;
    unsigned retry_ms;
    size_t max_output_bytes;
} sse_options_t;

/* Answers ctx (a request that was accepted) with an open 200 text/event-stream
 * response (http_stream_open: the raw connection for HTTP/1.1, one stream among others
 * for HTTP/2) and makes it an SSE subscriber of topics (copied) on ctx's worker: sends
 * `retry:`, replays
 * what hist has after last_event_id (NULL: nothing) — preceded by `event: gap` when some
 * of it is lost — then live pushes. id may be NULL (anonymous) and is taken. tenant
 * (copied; NULL: the identity's) is the tenant whose pushes the subscriber may see.
 * Returns 0, or -ENOMEM (the response is closed, id freed). */
int sse_attach(http_ctx_t *ctx, const sse_options_t *opt, auth_identity_t *id,
               const char *client_id, const char *tenant, char *const *topics, size_t n,
               const char *last_event_id, history_t *hist);

/* Encodes p as an SSE event: `id:` the push id, then one `data:` line of JSON: the
 * projected event for streams, {"id","channel","event","data"} for channels.
 * Returns a new buffer or NULL. */
buf_t *sse_encode_push(const push_t *p, int ti);

#endif
