/* WebSocket connections: the RFC 6455 upgrade of an HTTP connection, a ws_session
 * driven by the connection's reads, keepalive pings, a dead-peer deadline, and sending
 * pre-encoded frames shared by many connections. */
#ifndef PG_WS_H
#define PG_WS_H

#include <stddef.h>
#include <stdint.h>

#include "core/conn.h"
#include "transport/ws_codec.h"

typedef struct ws_conn_s ws_conn_t;

typedef struct ws_handler_s {
    /* a complete text (UTF-8 checked) or binary message */
    void (*on_message)(ws_conn_t *wc, uint8_t opcode, const uint8_t *msg, size_t len);
    /* the connection is going away; release what app holds (optional) */
    void (*on_close)(ws_conn_t *wc);
} ws_handler_t;

typedef struct ws_options_s {
    size_t max_message_bytes;
    size_t max_output_bytes; /* pending output bound; 0: unbounded */
    unsigned ping_interval_ms;
    unsigned pong_timeout_ms;
    int compression;             /* permessage-deflate may be negotiated (config) */
    unsigned client_window_bits; /* asked of clients that offer client_max_window_bits */
    const ws_pmd_t *pmd;         /* per connection: what was negotiated; NULL: none */
    /* what the push client (ws_client.c) allows: inbound messages per second and their
     * burst (0: unlimited), topics per connection */
    unsigned max_messages_per_s;
    unsigned message_burst;
    unsigned max_subscriptions;
} ws_options_t;

/* Idle connections carry one each (with the session embedded): keep it packed. */
struct ws_conn_s {
    conn_t *c;
    const ws_handler_t *h;
    void *app;
    /* the loop clock's low 32 bits (ms), compared modulo 2^32: intervals are short */
    uint32_t last_seen;
    uint32_t next_ping;
    unsigned ping_interval_ms;
    unsigned dead_after_ms;
    uint8_t closing;
    uint8_t embedded; /* lives inside app's allocation: h->on_close frees it */
    ws_session_t s;
};

/* Answers the handshake with 101 on c (whose HTTP request was req-validated by
 * ws_check_upgrade) and turns c into a WebSocket connection. extra are bytes already
 * read past the request. Returns the ws_conn (owned by c), or NULL when out of
 * memory (c is closed). */
ws_conn_t *ws_upgrade(conn_t *c, const char *client_key, const ws_options_t *opt,
                      const ws_handler_t *h, void *app, const char *extra, size_t extra_len);

/* As ws_upgrade, but into wc, storage inside the caller's own allocation (app): one
 * allocation per client. wc is not freed here: h->on_close (required) runs last, after
 * the session is released, and frees it with app. Returns 0, or -ENOMEM (c is closed;
 * h->on_close is not called, the caller frees wc). */
int ws_upgrade_into(ws_conn_t *wc, conn_t *c, const char *client_key, const ws_options_t *opt,
                    const ws_handler_t *h, void *app, const char *extra, size_t extra_len);

/* The window (bits) the server may compress with on wc: 8..15, or 0 when
 * permessage-deflate was not negotiated. */
unsigned ws_conn_deflate_bits(const ws_conn_t *wc);

/* Queues a whole pre-encoded frame shared by reference. Returns 0, -ENOBUFS when the
 * connection's pending output would pass its bound (nothing queued), -EPIPE if closing. */
int ws_conn_send_frame(ws_conn_t *wc, buf_t *frame);

/* Sends a text message (copied). Returns as ws_conn_send_frame. */
int ws_conn_send_text(ws_conn_t *wc, const char *msg, size_t len);

/* Starts the closing handshake; the connection closes once the peer answers or after
 * a short deadline. Idempotent. */
void ws_conn_close(ws_conn_t *wc, uint16_t code, const char *reason);

/* Drops unsent output, tries to queue a close frame, and cuts the connection soon:
 * for peers that stopped reading (slow consumers). */
void ws_conn_abort(ws_conn_t *wc, uint16_t code, const char *reason);

#endif
