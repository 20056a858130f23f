/* HTTP/1.1 connections: keep-alive, pipelined requests answered in order (one request
 * is handled at a time; reading pauses while a handler answers later), limits
 * answered with 4xx and a JSON body, routing to handlers, and the hand-over of a
 * connection to another protocol (WebSocket upgrade). A connection that opens with
 * the HTTP/2 preface becomes an HTTP/2 connection (http/h2.h) whose streams are routed
 * the same way: handlers see one http_ctx_t whatever the transport. */
#ifndef PG_HTTP_SERVER_H
#define PG_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "core/conn.h"
#include "core/worker.h"
#include "http/parser.h"

typedef struct http_ctx_s http_ctx_t;
typedef void (*http_handler_fn)(http_ctx_t *ctx);
typedef struct http_stream_s http_stream_t;

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
    int h2_enabled;          /* a connection opening with the HTTP/2 preface speaks h2 */
    uint32_t h2_max_streams; /* SETTINGS_MAX_CONCURRENT_STREAMS */
} http_server_cfg_t;

/* What a request's transport does for the handler-facing calls below. */
typedef struct http_stream_cbs_s http_stream_cbs_t;
typedef struct http_ctx_ops_s {
    void (*respond)(http_ctx_t *ctx, int status, const char *content_type, const char *body,
                    size_t len, const char *extra_headers);
    http_stream_t *(*open)(http_ctx_t *ctx, const char *content_type, const char *extra_headers,
                           const http_stream_cbs_t *cbs, void *ud);
    int (*migrate)(http_ctx_t *ctx, worker_t *to); /* NULL: not possible */
} http_ctx_ops_t;

/* The request being handled. Valid until the handler answers (or takes the
 * connection); when the client goes away before a late answer, on_abort runs. */
struct http_ctx_s {
    const http_ctx_ops_t *ops; /* the transport: HTTP/1.1 or an HTTP/2 stream */
    const http_request_t *req;
    conn_t *conn; /* NULL once the client is gone (HTTP/2: the connection, shared) */
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
 * handler only. HTTP/1.1 only: ws_check_upgrade refuses HTTP/2 requests, so an
 * upgrade handler never takes an HTTP/2 connection.
 * Returns the conn, now the caller's to re-protocol. */
conn_t *http_take_conn(http_ctx_t *ctx, const char **extra, size_t *extra_len);

/* Hands the request, unanswered, to worker to (with the connection it came on):
 * that worker parses it again and routes it there. For state that one worker owns
 * (Engine.IO sessions). Returns 0, -EPROTONOSUPPORT for an HTTP/2 stream (its
 * connection carries other streams and stays), or a negative errno (the request is
 * still this worker's to answer). */
int http_migrate(http_ctx_t *ctx, worker_t *to);

/* Routes ctx's request through the configured route table (404 / 405 when none fits). */
void http_route(http_ctx_t *ctx);

/* The configuration given to http_server_setup. */
const http_server_cfg_t *http_server_config(void);

/* Ends an HTTP/1.1 connection once its output is flushed (after an answer given while
 * the node stops). An HTTP/2 connection is left alone: it drains by its GOAWAY. */
void http_conn_end(conn_t *c);

/* ---- responses that stay open (SSE) ---- */

struct http_stream_cbs_s {
    /* the worker's periodic tick (heartbeats) */
    void (*on_tick)(void *ud, uint64_t now);
    /* the node is stopping (optional): queue a goodbye; the stream then ends cleanly once
     * its output is out (on_close follows) */
    void (*on_shutdown)(void *ud);
    /* the stream ended (peer gone or reset, http_stream_close, or the node stopped):
     * the last call, exactly once */
    void (*on_close)(void *ud);
};

typedef struct http_stream_ops_s {
    int (*send)(http_stream_t *s, buf_t *b, size_t off, size_t len);
    void (*set_limit)(http_stream_t *s, size_t max);
    void (*close)(http_stream_t *s);
} http_stream_ops_t;

/* A response body written as it comes: the raw connection for HTTP/1.1, DATA frames
 * on one stream (flow-controlled, among others on the connection) for HTTP/2. */
struct http_stream_s {
    const http_stream_ops_t *ops;
    worker_t *w;
    const http_stream_cbs_t *cbs;
    void *ud;
};

/* Answers 200 with content_type and extra_headers (CRLF-terminated lines) and keeps
 * the response open; ctx is finished. cbs (static) get ud. Returns the stream, or NULL
 * when it could not start (out of memory, client gone): the request is then over and
 * cbs never run. */
http_stream_t *http_stream_open(http_ctx_t *ctx, const char *content_type,
                                const char *extra_headers, const http_stream_cbs_t *cbs, void *ud);

/* Queues len bytes of b from off (takes a reference). Returns 0, -ENOBUFS past the
 * stream's output bound (nothing queued: a slow consumer), -EPIPE when the stream is
 * ending, -ENOMEM. */
static inline int http_stream_send(http_stream_t *s, buf_t *b, size_t off, size_t len)
{
    return s->ops->send(s, b, off, len);
}

/* Bounds the unsent bytes s may hold beyond those queued now (0: unbounded). */
static inline void http_stream_set_limit(http_stream_t *s, size_t max)
{
    s->ops->set_limit(s, max);
}

/* Ends s now, dropping unsent bytes; on_close follows (later, on this worker). */
static inline void http_stream_close(http_stream_t *s)
{
    s->ops->close(s);
}

#endif
