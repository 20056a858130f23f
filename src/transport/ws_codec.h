/* WebSocket (RFC 6455) server-side codec: handshake key, frame headers, and a session
 * that runs wslay's event layer over bytes the caller feeds in. No socket, no loop:
 * output goes to a write callback, messages to an on_message callback. */
#ifndef PG_WS_CODEC_H
#define PG_WS_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <wslay/wslay.h>

#include "core/buf.h"
#include "http/parser.h"
#include "transport/ws_deflate.h"

#define WS_ACCEPT_KEY_LEN 28

/* Computes Sec-WebSocket-Accept for client_key into out (NUL-terminated).
 * Returns 0, or -EIO if the digest failed. */
int ws_accept_key(const char *client_key, char out[WS_ACCEPT_KEY_LEN + 1]);

/* Checks that req is a valid RFC 6455 opening handshake (GET, HTTP/1.1, Upgrade:
 * websocket, Connection: upgrade, Sec-WebSocket-Version: 13, a 16-byte base64 key).
 * Returns 0 and the key in *key, or -EINVAL with *why set. */
int ws_check_upgrade(const http_request_t *req, const char **key, const char **why);

/* Looks for an acceptable permessage-deflate offer in every Sec-WebSocket-Extensions
 * line of req (ws_pmd_negotiate). Returns 1 with *out filled, 0 when none is
 * acceptable, -EINVAL when a line does not parse. */
int ws_check_extensions(const http_request_t *req, unsigned want_client_bits, ws_pmd_t *out);

/* Writes an unmasked final-frame header for a payload of len bytes.
 * Returns the header length (2, 4 or 10). */
size_t ws_frame_header(uint8_t out[10], uint8_t opcode, uint64_t len);

/* Builds one whole unmasked text frame around payload. Returns a new buffer or NULL. */
buf_t *ws_frame_text(const char *payload, size_t len);

/* Validates UTF-8 (RFC 3629: no overlongs, no surrogates, nothing past U+10FFFF).
 * Returns 1 if valid, 0 if not. */
int ws_utf8_valid(const uint8_t *s, size_t len);

typedef struct ws_session_s ws_session_t;

typedef struct ws_session_cbs_s {
    /* a complete data message (opcode WSLAY_TEXT_FRAME, text already UTF-8 checked,
     * or WSLAY_BINARY_FRAME) */
    void (*on_message)(ws_session_t *s, uint8_t opcode, const uint8_t *msg, size_t len, void *ud);
    /* bytes to send; must take them all. Returns 0 or negative (the session fails) */
    int (*write)(ws_session_t *s, const uint8_t *data, size_t len, void *ud);
} ws_session_cbs_t;

/* A session's state. Public only so that a connection can embed it (one allocation
 * per idle connection); its fields are the codec's own. Ordered to pack: an idle
 * WebSocket carries one of these. */
struct ws_session_s {
    wslay_event_context_ptr ctx; /* only while a frame, message or close is in progress */
    const ws_session_cbs_t *cbs; /* must outlive the session */
    void *ud;
    size_t max_msg;
    uint64_t skip;    /* frame-header sniffer: payload bytes of the current frame to pass */
    uint64_t msg_len; /* payload of the data message so far, fragments summed */
    /* permessage-deflate, when negotiated: no zlib state between messages, only the
     * client's recent plain bytes when it keeps its LZ77 context (RFC 7692 §7.2.3),
     * hist_len of them at hist (at most 32 KiB) */
    uint8_t *hist;
    unsigned activity;
    /* the sniffer sees each header before wslay does, so violations are answered with
     * the precise close code and huge lengths are refused at once; it also tells when
     * the stream is between messages */
    uint8_t hdr[14];
    uint8_t hlen;
    uint8_t in_msg; /* a fragmented data message is in progress */
    uint16_t hist_len;
    uint16_t refusal; /* the close code chosen for a violation, until taken */
    uint8_t pmd_on;
    uint8_t failed;
    ws_pmd_t pmd;
};

/* Prepares a server session in s (embedded by its owner). cbs must outlive it.
 * max_msg bounds a message, whole or the sum of its fragments (bigger: close 1009, as
 * soon as a frame header announces it). */
void ws_session_init(ws_session_t *s, const ws_session_cbs_t *cbs, void *ud, size_t max_msg);

/* Frees what an initialised session holds (s itself is its owner's). */
void ws_session_release(ws_session_t *s);

/* Creates a session on the heap (ws_session_init). cbs must outlive it.
 * Returns 0 or -ENOMEM. */
int ws_session_new(ws_session_t **sp, const ws_session_cbs_t *cbs, void *ud, size_t max_msg);

/* Releases and frees the session. NULL is a no-op. */
void ws_session_free(ws_session_t *s);

/* Turns on permessage-deflate as negotiated (pmd is copied): RSV1 is then accepted on
 * the first frame of a data message, whose payload is inflated, and ws_session_send
 * compresses. Call before the first feed. */
void ws_session_set_deflate(ws_session_t *s, const ws_pmd_t *pmd);

/* The window (bits) the server may compress with on this session.
 * Returns 8..15, or 0 when permessage-deflate is not on. */
unsigned ws_session_deflate_bits(const ws_session_t *s);

/* Feeds received bytes; calls back for messages, and writes any control frames
 * (pong, close) it owes. Returns 0, or -EPROTO / -ENOMEM when the session failed
 * and the connection must be closed now. */
int ws_session_feed(ws_session_t *s, const uint8_t *data, size_t len);

/* Queues and writes a message (copied). Returns 0, -EPIPE after close, -ENOMEM. */
int ws_session_send(ws_session_t *s, uint8_t opcode, const uint8_t *data, size_t len);

/* Writes whatever wslay has queued (a pong, a close) now. Frames written around the
 * session (shared push frames) call this first so they never overtake it.
 * Returns 0 or -EPIPE. */
int ws_session_flush(ws_session_t *s);

/* Starts the closing handshake with code and reason. Returns 0 or -EPIPE. */
int ws_session_close(ws_session_t *s, uint16_t code, const char *reason);

/* Tells whether the session may still send data frames (no close sent). */
int ws_session_can_send(const ws_session_t *s);

/* Tells whether both sides are done (close sent and received, or failed). */
int ws_session_done(const ws_session_t *s);

/* The close code the session chose itself for a peer's violation since the last call
 * (1002, 1007, 1009), and resets it. Returns that code, or 0. */
uint16_t ws_session_take_refusal(ws_session_t *s);

/* Milliseconds-free liveness: counts frames received since the last call and resets.
 * Returns that count. */
unsigned ws_session_take_activity(ws_session_t *s);

#endif
