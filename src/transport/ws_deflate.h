/* permessage-deflate (RFC 7692): the Sec-WebSocket-Extensions offer parser and the
 * server's answer, and the zlib helpers that compress one message and inflate one
 * message. Pure: no socket, no loop; zlib state lives only inside one call. */
#ifndef PG_WS_DEFLATE_H
#define PG_WS_DEFLATE_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define WS_PMD_MIN_BITS 8
#define WS_PMD_MAX_BITS 15
#define WS_PMD_RESPONSE_MAX 160

/* What was agreed. server_max_bits / client_max_bits are 0 when the answer carries no
 * such parameter (then the sender may use a 32 KiB window). The server always answers
 * with server_no_context_takeover. */
typedef struct ws_pmd_s {
    uint8_t client_no_context_takeover;
    uint8_t server_max_bits;
    uint8_t client_max_bits;
} ws_pmd_t;

/* Walks a Sec-WebSocket-Extensions value (RFC 6455 §9.1 grammar: a comma-separated list
 * of extensions, each `name *( ";" param [ "=" (token | quoted-string) ] )`) of len bytes
 * and accepts the first permessage-deflate offer whose parameters are valid (RFC 7692
 * §7.1: an offer with an unknown or repeated parameter, or a bad value, is declined and
 * the next one is tried). want_client_bits (8..15) is the client window the server asks
 * for when the client offered client_max_window_bits. Returns 1 with *out filled, 0 if
 * there is no acceptable offer, -EINVAL if the header does not parse. */
int ws_pmd_negotiate(const char *value, size_t len, unsigned want_client_bits, ws_pmd_t *out);

/* Writes the Sec-WebSocket-Extensions answer for p into out (NUL-terminated).
 * Returns its length, or -ENOSPC if outlen is too small. */
int ws_pmd_response(const ws_pmd_t *p, char *out, size_t outlen);

/* Compresses len bytes as one message with a fresh raw deflate stream of 2^window_bits
 * (9..15; 8 is taken as 9, whose matches reach back at most 250 bytes) and drops the
 * trailing 00 00 ff ff (RFC 7692 §7.2.1). Returns a new buffer holding only the
 * compressed payload, or NULL when out of memory. */
buf_t *ws_pmd_deflate(const uint8_t *in, size_t len, unsigned window_bits);

/* Builds the compressed frame (FIN, RSV1, same opcode) of an unmasked single-frame
 * message `plain` (as ws_frame_text builds). Returns a new buffer, or a new reference to
 * plain when compression does not make it smaller, or NULL when out of memory. */
buf_t *ws_pmd_frame(buf_t *plain, unsigned window_bits);

/* A client's LZ77 history between messages (context takeover): the last up-to-2^bits
 * bytes it sent, uncompressed. Empty (data NULL) with client_no_context_takeover. */
typedef struct ws_pmd_hist_s {
    uint8_t *data;
    size_t len;
} ws_pmd_hist_t;

/* Inflates one compressed message (the 00 00 ff ff tail is appended here) with a fresh
 * inflater primed with *hist when hist is not NULL, then keeps the last 2^window_bits
 * bytes of history + output in *hist. The output is never more than max bytes.
 * Returns 0 with a malloc'd *out (free it) of *out_len bytes, -EMSGSIZE when the
 * message inflates past max, -EBADMSG when it is not valid deflate data, -ENOMEM. */
int ws_pmd_inflate(ws_pmd_hist_t *hist, unsigned window_bits, const uint8_t *in, size_t len,
                   size_t max, uint8_t **out, size_t *out_len);

/* Frees what the history holds. */
void ws_pmd_hist_free(ws_pmd_hist_t *hist);

#endif
