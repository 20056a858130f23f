/* socket.io v5 packets (https://socket.io/docs/v4/socket-io-protocol/), carried in
 * Engine.IO message packets: `<type>[<attachments>-][<nsp>,][<ack id>][<JSON>]`.
 * Pure: decodes and encodes text; binary attachments travel as separate Engine.IO
 * binary messages and are the caller's business. */
#ifndef PG_SOCKETIO_CODEC_H
#define PG_SOCKETIO_CODEC_H

#include <stddef.h>

#include "core/buf.h"

enum sio_type {
    SIO_CONNECT = 0,
    SIO_DISCONNECT = 1,
    SIO_EVENT = 2,
    SIO_ACK = 3,
    SIO_CONNECT_ERROR = 4,
    SIO_BINARY_EVENT = 5,
    SIO_BINARY_ACK = 6,
};

#define SIO_NSP_MAX 128
#define SIO_MAX_ATTACHMENTS 64

typedef struct sio_packet_s {
    int type;
    unsigned attachments;  /* binary packets only */
    char nsp[SIO_NSP_MAX]; /* "/" when absent */
    long ack_id;           /* -1 when absent */
    const char *data;      /* JSON text, borrowed from the input; NULL when absent */
    size_t data_len;
} sio_packet_t;

/* Decodes a packet's text. Checks the framing only (the JSON is the caller's to
 * parse). Returns 0 or -EINVAL (bad type, attachment count, namespace or ack id). */
int sio_decode(const char *s, size_t len, sio_packet_t *out);

/* Appends an encoded packet to *bp. nsp NULL or "/" is the main namespace; ack_id < 0
 * means none; data (JSON text) may be NULL. Returns 0 or -ENOMEM. */
int sio_encode(buf_t **bp, int type, const char *nsp, long ack_id, unsigned attachments,
               const char *data, size_t data_len);

#endif
