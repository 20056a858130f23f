/* Engine.IO v4 server: sessions over HTTP long-polling and WebSocket, the upgrade
 * from one to the other, heartbeats, and a node-wide registry of session ids so a
 * polling request that lands on another worker is handed to the session's owner.
 * The layer above (socket.io, or the diagnostics echo) sees messages only. */
#ifndef PG_ENGINEIO_H
#define PG_ENGINEIO_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/worker.h"
#include "http/server.h"
#include "transport/engineio_codec.h"
#include "transport/ws.h"

#define EIO_SID_LEN 20

typedef struct eio_session_s eio_session_t;

typedef struct eio_handler_s {
    /* a message packet (text, or binary raw bytes) */
    void (*on_message)(eio_session_t *s, const char *data, size_t len, int binary);
    /* the session is closed (reason as the reference server words it); release app */
    void (*on_close)(eio_session_t *s, const char *reason);
} eio_handler_t;

typedef struct eio_options_s {
    unsigned ping_interval_ms;
    unsigned ping_timeout_ms;
    size_t max_payload;
    size_t max_output_bytes; /* queued for a client past this: closed as a slow consumer */
    ws_options_t ws;
} eio_options_t;

typedef struct eio_server_s {
    eio_options_t opt;
    /* A session opens from req: attach the layer above (eio_session_set_handler).
     * Returns 0, or negative to refuse it (403, code 4 "Forbidden"). */
    int (*on_session)(eio_session_t *s, const http_request_t *req, void *arg);
    void *arg;
} eio_server_t;

/* Initializes the node-wide session registry. Returns 0 or -ENOMEM. */
int eio_init(void);

/* Serves one HTTP request of the Engine.IO endpoint: handshake, polling GET/POST, or
 * a WebSocket (new, or an upgrade of a polling session). Requests for a session owned
 * by another worker move there with their connection. Answers errors itself. */
void eio_http(http_ctx_t *ctx, const eio_server_t *srv);

/* Sets the layer above. */
void eio_session_set_handler(eio_session_t *s, const eio_handler_t *h, void *app);

/* The layer above's state. */
void *eio_session_app(const eio_session_t *s);

/* The session id. */
const char *eio_session_sid(const eio_session_t *s);

/* Sends a message packet: len bytes of b from off (a reference is taken), text or
 * binary. Returns 0, -ENOBUFS (slow consumer: the session is being closed), -EPIPE
 * (closed). */
int eio_send(eio_session_t *s, buf_t *b, size_t off, size_t len, int binary);

/* Copies and sends a text message. Returns as eio_send. */
int eio_send_text(eio_session_t *s, const char *data, size_t len);

/* Closes the session (sends a close packet when it can). Idempotent. */
void eio_close(eio_session_t *s, const char *reason);

/* Closes the session like eio_close; a WebSocket transport closes with ws_code (1001
 * going away, 1008 policy violation). Idempotent. */
void eio_close_code(eio_session_t *s, const char *reason, uint16_t ws_code);

/* Tells whether the session is open. */
int eio_session_open(const eio_session_t *s);

/* Closes every session of the calling worker (shutdown): held polls are answered
 * with a close packet, WebSockets get it before their close frame. */
void eio_worker_shutdown(void);

/* The worker that owns the session. */
worker_t *eio_session_worker(const eio_session_t *s);

#endif
