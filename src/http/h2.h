/* HTTP/2 connections: an h2 session (http/h2_session.h) on a conn. Each stream's
 * request is routed through the HTTP server's route table with its own http_ctx_t, so
 * handlers, late answers (http_defer) and open responses (http_stream_open, SSE) work
 * per stream; a stream reset or a lost connection runs on_abort / the open response's
 * on_close. Output is framed once per loop turn, just before the worker writes
 * (conn_want_flush), and bounded: frames are produced only while the connection's
 * pending output is below a watermark, so a slow connection backs up into its
 * streams, whose own bounds cut slow subscribers off. */
#ifndef PG_HTTP_H2_H
#define PG_HTTP_H2_H

#include <stddef.h>

#include "core/conn.h"

/* Turns c (an HTTP connection that has read nothing else) into an HTTP/2 connection
 * and feeds it what was read: pre (held back while the preface was incomplete), then
 * data. The HTTP/1.1 state must already be gone. On failure c is closed. */
void h2_conn_attach(conn_t *c, const char *pre, size_t pre_len, const char *data, size_t len);

extern const conn_proto_t h2_proto;

#endif
