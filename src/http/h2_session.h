/* HTTP/2 server session codec over nghttp2: bytes in, complete requests (the same
 * http_request_t as the HTTP/1.1 parser, within the same limits) and frames out.
 * Pure: no socket, no loop, no clock (the caller passes "now" where time matters).
 * Nothing calls back into the caller during a feed or a flush except the writer:
 * finished requests and closed streams are queued and taken afterwards
 * (h2_session_next_request, h2_session_next_closed), so a caller's handler never runs
 * inside nghttp2 and may answer, reset or end streams freely. */
#ifndef PG_HTTP_H2_SESSION_H
#define PG_HTTP_H2_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/buf.h"
#include "http/parser.h"

typedef struct h2_session_s h2_session_t;
typedef struct h2_stream_s h2_stream_t;

/* The connection preface a client sends first (RFC 9113 §3.4). */
#define H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2_PREFACE_LEN 24

typedef struct h2_limits_s {
    http_parser_limits_t req;        /* per request: header count and bytes, body bytes */
    uint32_t max_concurrent_streams; /* SETTINGS_MAX_CONCURRENT_STREAMS */
} h2_limits_t;

/* Queues len bytes of b from off for the peer (takes its own reference if it keeps b).
 * Returns 0, or a negative errno (the session is then dead). */
typedef int (*h2_write_fn)(void *ud, buf_t *b, size_t off, size_t len);

/* Creates a server session and queues its SETTINGS. Returns 0 (*out set), -ENOMEM. */
int h2_session_new(h2_session_t **out, const h2_limits_t *lim, h2_write_fn write, void *ud);

/* Frees s and every stream it still holds; no stream is reported closed. */
void h2_session_free(h2_session_t *s);

/* Feeds bytes read from the peer, the preface first. now (any clock) stamps new
 * streams for h2_session_expire. Returns 0, or a negative errno when the connection
 * is dead (a GOAWAY is queued: flush, then close): -EPROTO (protocol error, including
 * a bad preface), -ENOMEM. */
int h2_session_feed(h2_session_t *s, const uint8_t *data, size_t len, uint64_t now);

/* Writes queued frames through the writer until none is left or about budget bytes
 * went out (flow-controlled DATA waits for WINDOW_UPDATE). Returns 0, or a negative
 * errno when the connection is dead (-EPROTO, -ENOMEM, or the writer's error). */
int h2_session_flush(h2_session_t *s, size_t budget);

/* Tells whether frames are waiting for h2_session_flush. */
int h2_session_want_write(const h2_session_t *s);

/* Tells whether the session is over: GOAWAY sent or received and no stream left,
 * nothing to write. The caller then closes the connection. */
int h2_session_done(const h2_session_t *s);

/* Sends GOAWAY (graceful: streams already opened finish, new ones are refused).
 * Returns 0 or a negative errno. */
int h2_session_goaway(h2_session_t *s);

/* Answers 408 on every stream whose request is still arriving and that opened
 * before `before` (the clock of h2_session_feed). Returns how many. */
unsigned h2_session_expire(h2_session_t *s, uint64_t before);

/* The next stream whose request is complete, in arrival order; NULL when none.
 * Its request stays valid until the stream is freed. */
h2_stream_t *h2_session_next_request(h2_session_t *s);

/* The next stream that ended (answered and sent, reset by the peer, refused, or cut
 * off); NULL when none. The caller must free it with h2_stream_free. */
h2_stream_t *h2_session_next_closed(h2_session_t *s);

/* How many streams the session holds (open, or closed and not yet freed). */
size_t h2_session_stream_count(const h2_session_t *s);

/* Calls fn on every open stream whose request was handed out (for ticks). */
void h2_session_each(h2_session_t *s, void (*fn)(h2_stream_t *st, void *arg), void *arg);

/* ---- streams ---- */

/* The caller's pointer for st (NULL until set). */
void *h2_stream_get_ud(const h2_stream_t *st);
void h2_stream_set_ud(h2_stream_t *st, void *ud);

/* The request; valid while st lives. */
const http_request_t *h2_stream_request(const h2_stream_t *st);

/* The stream id (odd, client-initiated). */
int32_t h2_stream_id(const h2_stream_t *st);

/* Tells whether st has ended (its answer or reset is final; writes are refused).
 * Returns 1 or 0. */
int h2_stream_closed(const h2_stream_t *st);

/* The RST_STREAM code st closed with (0: a normal end). */
uint32_t h2_stream_close_code(const h2_stream_t *st);

/* Answers with a complete response: status, content-type (NULL: none), extra_headers
 * (CRLF-terminated "Name: value" lines, NULL: none; connection-specific ones are
 * dropped), body (taken; NULL: empty). A HEAD answer keeps content-length and sends no
 * body. Returns 0, -EPIPE (already answered or closed; body freed), -ENOMEM. */
int h2_stream_respond(h2_stream_t *st, int status, const char *content_type,
                      const char *extra_headers, buf_t *body);

/* Starts a response whose body is written later, piece by piece (SSE). Returns as
 * h2_stream_respond. */
int h2_stream_open(h2_stream_t *st, int status, const char *content_type,
                   const char *extra_headers);

/* Queues len bytes of b from off on an opened response (takes a reference).
 * Returns 0, -ENOBUFS when the stream's unsent bytes would pass its limit (nothing
 * queued), -EPIPE when st is closed or not opened, -ENOMEM. */
int h2_stream_write(h2_stream_t *st, buf_t *b, size_t off, size_t len);

/* Bounds the bytes st may hold unsent beyond those held now (0: unbounded). */
void h2_stream_set_limit(h2_stream_t *st, size_t max);

/* Ends an opened response once its queued bytes are sent. */
void h2_stream_end(h2_stream_t *st);

/* Resets st with an RST_STREAM error code (RFC 9113 §7). */
void h2_stream_reset(h2_stream_t *st, uint32_t code);

/* Frees a stream taken from h2_session_next_closed. */
void h2_stream_free(h2_stream_t *st);

/* Splits CRLF-terminated "Name: value" lines at *cur into a lowercase name (at most
 * name_cap bytes with its NUL) and a value (pointer and length into the input).
 * Connection-specific headers (RFC 9113 §8.2.2) are skipped. Returns 1 and advances
 * *cur past the line, 0 at the end, -EINVAL on a malformed line (*cur at the end). */
int h2_header_next(const char **cur, char *name, size_t name_cap, const char **value,
                   size_t *value_len);

#endif
