/* HTTP/1.1 connections: keep-alive, pipelined requests answered in order (one request
 * is handled at a time; reading pauses while a handler answers later), limits
 * answered with 4xx and a JSON body, routing to handlers, and the hand-over of a
 * connection to another protocol (WebSocket upgrade). */
#ifndef PG_HTTP_SERVER_H
#define PG_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "core/conn.h"
#include "core/worker.h"
#include "http/parser.h"

typedef struct http_ctx_s http_ctx_t;
typedef void (*http_handler_fn)(http_ctx_t *ctx);

typedef struct http_route_s {
    const char *method; /* NULL: any */
    const char *path;
    int prefix; /* path is a prefix ("/api/sessions/") */
    http_handler_fn fn;
} http_route_t;

typedef struct http_server_cfg_s {
    http_parser_limits_t limits;
    const http_path_limit_t *body_paths; /* per-path body limits */
    size_t n_body_paths;
    unsigned handshake_timeout_ms; /* a connection's first request must be whole by then */
    unsigned read_timeout_ms;      /* a later request, from its first byte */
    unsigned idle_timeout_ms;      /* a keep-alive connection between requests */
    const http_route_t *routes;
    size_t n_routes;
    void *app;
} http_server_cfg_t;

/* The request being handled. Valid until the handler answers (or takes the
 * connection); when the client goes away before a late answer, on_abort runs. */
struct http_ctx_s {
    const http_request_t *req;
    conn_t *conn; /* NULL once the client is gone */
    worker_t *w;
    void *app;
    void (*on_abort)(http_ctx_t *ctx);
    void *abort_arg;
    uint64_t abort_token;
    int answered;
    int deferred;
};

/* The conn protocol for new HTTP connections; cfg must outlive every connection. */
void http_server_setup(const http_server_cfg_t *cfg);
extern const conn_proto_t http_proto;

/* Answers a connection refused by a limit (enum metrics_refusal; a worker pool's
 * on_refuse) with 503 and a JSON error, then ends it. */
void http_server_refuse(conn_t *c, int reason);

/* Answers the request. body may be NULL. extra_headers are CRLF-terminated lines.
 * After a late answer, the connection's next pipelined request is handled. */
void http_respond(http_ctx_t *ctx, int status, const char *content_type, const char *body,
                  size_t len, const char *extra_headers);

/* Answers with a JSON body taken from b (b is consumed; NULL answers 500). */
void http_respond_json(http_ctx_t *ctx, int status, buf_t *b);

/* Answers {"error": msg}. */
void http_respond_error(http_ctx_t *ctx, int status, const char *msg);

/* Tells the server the answer will come later (from a callback on this worker). */
void http_defer(http_ctx_t *ctx);

/* Takes the connection away from HTTP (after the handler validated an upgrade).
 * *extra / *extra_len are bytes already read past the request, valid during the
 * handler only. Returns the conn, now the caller's to re-protocol. */
conn_t *http_take_conn(http_ctx_t *ctx, const char **extra, size_t *extra_len);

/* Hands the request, unanswered, to worker to (with the connection it came on):
 * that worker parses it again and routes it there. For state that one worker owns
 * (Engine.IO sessions). Returns 0, or a negative errno (the request is still this
 * worker's to answer). */
int http_migrate(http_ctx_t *ctx, worker_t *to);

#endif
