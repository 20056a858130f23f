/* Engine.IO v4 packets (https://socket.io/docs/v4/engine-io-protocol/). Pure: decodes
 * and encodes bytes; no socket, no loop, no clock.
 *
 * Over WebSocket each frame is one packet: a text frame is `<type digit><data>`, a
 * binary frame is a message packet's raw bytes. Over HTTP long-polling a payload is
 * packets joined by the record separator 0x1e, binary messages as `b<base64>`. */
#ifndef PG_ENGINEIO_CODEC_H
#define PG_ENGINEIO_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

enum eio_type {
    EIO_OPEN = 0,
    EIO_CLOSE = 1,
    EIO_PING = 2,
    EIO_PONG = 3,
    EIO_MESSAGE = 4,
    EIO_UPGRADE = 5,
    EIO_NOOP = 6,
};

/* The error codes of the HTTP handshake and polling requests. */
enum eio_error {
    EIO_ERR_TRANSPORT_UNKNOWN = 0,
    EIO_ERR_SESSION_UNKNOWN = 1,
    EIO_ERR_BAD_HANDSHAKE_METHOD = 2,
    EIO_ERR_BAD_REQUEST = 3,
    EIO_ERR_FORBIDDEN = 4,
    EIO_ERR_UNSUPPORTED_VERSION = 5,
};

#define EIO_RECORD_SEPARATOR '\x1e'

typedef struct eio_packet_s {
    int type;
    int binary;       /* a binary message (raw bytes in data) */
    const char *data; /* borrowed from the input, or from the decode buffer */
    size_t len;
} eio_packet_t;

/* Decodes one packet from a WebSocket text frame. Returns 0 or -EINVAL (empty, or a
 * type that is not 0-6). */
int eio_decode_text(const char *s, size_t len, eio_packet_t *out);

/* Walks a polling payload: decodes the packet at *cur (up to the next 0x1e or end) and
 * advances *cur past it. Binary (`b<base64>`) packets are decoded into *scratch (a
 * buffer the caller frees; data then points into it, valid until the next call).
 * Returns 1 for a packet, 0 at the end, -EINVAL on a malformed packet, -ENOMEM. */
int eio_payload_next(const char **cur, const char *end, eio_packet_t *out, buf_t **scratch);

/* Appends one packet to a polling payload in *bp (a separator first unless *bp is
 * empty). Binary messages are written `b<base64>`. Returns 0 or -ENOMEM. */
int eio_payload_append(buf_t **bp, int type, int binary, const char *data, size_t len);

/* The open packet's JSON: {"sid","upgrades","pingInterval","pingTimeout","maxPayload"}.
 * Returns 0 or -ENOMEM. */
int eio_open_json(buf_t **bp, const char *sid, int can_upgrade, unsigned ping_interval,
                  unsigned ping_timeout, size_t max_payload);

/* The JSON body of an HTTP error: {"code":N,"message":"…"}. */
const char *eio_error_message(int code);

#endif
