/* HTTP connection state machine: parse, route, answer, repeat. */
#include "http/server.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/metrics.h"
#include "http/h2.h"
#include "http/h2_session.h"
#include "http/response.h"

typedef struct http_conn_s {
    http_parser_t p;
    http_ctx_t ctx;
    conn_t *c;
    char *stash; /* input read while a request was being answered */
    size_t stash_len;
    const char *rest; /* unparsed input during a handler call */
    size_t rest_len;
    int in_handler;
    int taken;
    int sniff;      /* the first bytes may still be the HTTP/2 preface */
    size_t pre_len; /* how many of them arrived */
    char pre[H2_PREFACE_LEN];
    int served; /* requests answered: the first one is bounded by the handshake timeout */
} http_conn_t;

static const http_server_cfg_t *srv_cfg;
static const http_ctx_ops_t h1_ops;

void http_server_setup(const http_server_cfg_t *cfg)
{
    srv_cfg = cfg;
}

const http_server_cfg_t *http_server_config(void)
{
    return srv_cfg;
}

static void process(http_conn_t *hc, const char *data, size_t len);

static void arm_timeout(http_conn_t *hc, unsigned ms)
{
    hc->c->deadline = uv_now(&hc->c->w->loop) + ms;
}

/* The first request is a request too: it gets the shorter of the two bounds */
static unsigned first_request_ms(void)
{
    unsigned h = srv_cfg->handshake_timeout_ms, r = srv_cfg->read_timeout_ms;
    return h && h < r ? h : r;
}

/* A connection's HTTP state is allocated when its first bytes arrive, not at accept: a
 * burst of accepts then leaves no 672-byte blocks between the conns it allocates (the
 * heap holes they left behind outlived the handshakes, about 45 B per idle
 * WebSocket). Until then c->ud is this marker. */
static char http_unread;

static void http_on_open(conn_t *c)
{
    c->ud = &http_unread;
    c->deadline = uv_now(&c->w->loop) + first_request_ms();
    __atomic_add_fetch(&metrics.connections[METRICS_T_HTTP], 1, __ATOMIC_RELAXED);
}

/* The HTTP state of c, allocated now. Returns it, or NULL (c is closed). */
static http_conn_t *http_state(conn_t *c)
{
    http_conn_t *hc = calloc(1, sizeof(*hc));
    if (!hc) {
        conn_close(c);
        return NULL;
    }
    http_parser_init(&hc->p, &srv_cfg->limits);
    http_parser_set_body_paths(&hc->p, srv_cfg->body_paths, srv_cfg->n_body_paths);
    hc->c = c;
    hc->sniff = srv_cfg->h2_enabled;
    c->ud = hc;
    return hc;
}

static void send_error_and_end(http_conn_t *hc, int status, const char *msg)
{
    conn_send_owned(hc->c, http_response_error(status, msg, 0));
    conn_end(hc->c);
}

static void dispatch(http_conn_t *hc)
{
    METRICS_ADD(http_requests, 1);
    hc->ctx = (http_ctx_t){
        .ops = &h1_ops, .req = &hc->p.req, .conn = hc->c, .w = hc->c->w, .app = srv_cfg->app};
    http_route(&hc->ctx);
}

void http_route(http_ctx_t *ctx)
{
    const http_request_t *req = ctx->req;
    int path_known = 0;
    for (size_t i = 0; i < srv_cfg->n_routes; i++) {
        const http_route_t *rt = &srv_cfg->routes[i];
        int hit = rt->prefix ? strncmp(req->path, rt->path, strlen(rt->path)) == 0
                             : strcmp(req->path, rt->path) == 0;
        if (!hit) continue;
        path_known = 1;
        if (rt->method && strcmp(rt->method, req->method_name) != 0 &&
            !(strcmp(rt->method, "GET") == 0 && strcmp(req->method_name, "HEAD") == 0))
            continue;
        rt->fn(ctx);
        return;
    }
    if (path_known)
        http_respond_error(ctx, 405, "method not allowed");
    else
        http_respond_error(ctx, 404, "not found");
}

/* Finishes the answered request; returns 1 if the connection can go on. */
static int finish_request(http_conn_t *hc)
{
    /* a node shutting down answers what it was asked, then lets the connection go */
    int keep = hc->p.req.keep_alive && !hc->p.req.upgrade && !hc->c->w->stopping;
    http_parser_next(&hc->p);
    hc->served = 1;
    if (!keep) {
        conn_end(hc->c);
        return 0;
    }
    arm_timeout(hc, srv_cfg->idle_timeout_ms);
    return 1;
}

static void process(http_conn_t *hc, const char *data, size_t len)
{
    while (len > 0) {
        size_t used = 0;
        int r = http_parser_execute(&hc->p, data, len, &used);
        data += used;
        len -= used;
        if (r == HTTP_PARSE_AGAIN) return;
        if (r < 0) {
            log_info("bad http request", "status=%d reason=\"%s\"", hc->p.error_status,
                     hc->p.error_msg);
            if (hc->p.error_limit == HTTP_LIMIT_HEADERS)
                METRICS_REFUSED(REFUSED_HEADER_COUNT);
            else if (hc->p.error_limit == HTTP_LIMIT_HEADER_BYTES)
                METRICS_REFUSED(REFUSED_HEADER_SIZE);
            else if (hc->p.error_limit == HTTP_LIMIT_BODY)
                METRICS_REFUSED(REFUSED_BODY_SIZE);
            send_error_and_end(hc, hc->p.error_status, hc->p.error_msg);
            return;
        }
        hc->rest = data;
        hc->rest_len = len;
        hc->in_handler = 1;
        dispatch(hc);
        hc->in_handler = 0;
        if (hc->taken) {
            /* the connection speaks another protocol now; this state is ours to free */
            http_parser_free(&hc->p);
            free(hc->stash);
            free(hc);
            return;
        }
        if (!hc->ctx.answered) {
            /* a late answer: keep what follows until then, and stop reading */
            if (len) {
                char *s = malloc(len);
                if (!s) {
                    conn_close(hc->c);
                    return;
                }
                memcpy(s, data, len);
                hc->stash = s;
                hc->stash_len = len;
            }
            conn_pause_read(hc->c);
            return;
        }
        if (!finish_request(hc)) return;
    }
}

/* Whether the connection opens with the HTTP/2 preface (h2c by prior knowledge, or
 * ALPN h2 below a TLS layer): returns 1 when it switched to HTTP/2, 0 when the bytes
 * (and any held back) are HTTP/1.1 to process, -1 when more bytes must decide. */
static int sniff_h2(http_conn_t *hc, const char *data, size_t len)
{
    size_t want = H2_PREFACE_LEN - hc->pre_len, n = len < want ? len : want;
    if (memcmp(data, &H2_PREFACE[hc->pre_len], n) != 0) {
        hc->sniff = 0;
        return 0;
    }
    if (n < want) {
        memcpy(hc->pre + hc->pre_len, data, n);
        hc->pre_len += n;
        return -1;
    }
    conn_t *c = hc->c;
    char pre[H2_PREFACE_LEN];
    size_t pre_len = hc->pre_len;
    memcpy(pre, hc->pre, pre_len);
    /* the HTTP/1.1 state goes; the connection is HTTP/2's from here */
    c->ud = NULL;
    http_parser_free(&hc->p);
    free(hc);
    __atomic_sub_fetch(&metrics.connections[METRICS_T_HTTP], 1, __ATOMIC_RELAXED);
    h2_conn_attach(c, pre, pre_len, data, len);
    return 1;
}

static void http_on_read(conn_t *c, const char *data, size_t len)
{
    http_conn_t *hc = c->ud;
    if (hc == (http_conn_t *)&http_unread && !(hc = http_state(c))) return;
    if (!hc) return;
    if (c->flags & (CONN_END | CONN_CLOSING)) return;
    /* a later request's clock starts at its first byte (the idle one stops) */
    if (hc->served && len && http_parser_idle(&hc->p) && !hc->ctx.deferred)
        arm_timeout(hc, srv_cfg->read_timeout_ms);
    if (hc->sniff) {
        int r = sniff_h2(hc, data, len);
        if (r != 0) return;
        if (hc->pre_len) {
            /* not HTTP/2 after all: what was held back is the request's start */
            size_t n = hc->pre_len;
            hc->pre_len = 0;
            char pre[H2_PREFACE_LEN];
            memcpy(pre, hc->pre, n);
            process(hc, pre, n);
            if (c->ud != hc || (c->flags & (CONN_END | CONN_CLOSING))) return;
        }
    }
    process(hc, data, len);
}

static void http_on_eof(conn_t *c)
{
    conn_close(c);
}

static void http_on_tick(conn_t *c, uint64_t now)
{
    http_conn_t *hc = c->ud;
    if (hc == (http_conn_t *)&http_unread) {
        if (now < c->deadline || (c->flags & CONN_END)) return;
        /* a socket opened and left: not one byte of a request came */
        METRICS_REFUSED(REFUSED_HANDSHAKE_TIMEOUT);
        conn_send_owned(c, http_response_error(408, "request not received in time", 0));
        conn_end(c);
        return;
    }
    if (!hc || hc->ctx.deferred || (c->flags & CONN_END) || now < c->deadline) return;
    if (!hc->served) {
        /* slowloris, or a socket opened and left: the first request never came whole */
        METRICS_REFUSED(REFUSED_HANDSHAKE_TIMEOUT);
        send_error_and_end(hc, 408, "request not received in time");
    } else if (http_parser_idle(&hc->p)) {
        METRICS_REFUSED(REFUSED_IDLE_TIMEOUT);
        conn_close(c); /* an idle keep-alive connection */
    } else {
        METRICS_REFUSED(REFUSED_REQUEST_TIMEOUT);
        send_error_and_end(hc, 408, "request not received in time");
    }
}

static void http_on_shutdown(conn_t *c)
{
    http_conn_t *hc = c->ud;
    if (hc && hc != (http_conn_t *)&http_unread && hc->ctx.deferred && !hc->ctx.answered)
        return; /* answered soon, then closed (readyz says draining) */
    conn_end(c);
}

static void http_on_close(conn_t *c)
{
    http_conn_t *hc = c->ud;
    if (!hc) return;
    if (hc == (http_conn_t *)&http_unread) {
        __atomic_sub_fetch(&metrics.connections[METRICS_T_HTTP], 1, __ATOMIC_RELAXED);
        return;
    }
    if (hc->ctx.deferred && !hc->ctx.answered) {
        hc->ctx.conn = NULL;
        if (hc->ctx.on_abort) hc->ctx.on_abort(&hc->ctx);
    }
    http_parser_free(&hc->p);
    free(hc->stash);
    free(hc);
    __atomic_sub_fetch(&metrics.connections[METRICS_T_HTTP], 1, __ATOMIC_RELAXED);
}

const conn_proto_t http_proto = {
    .name = "http",
    .on_open = http_on_open,
    .on_read = http_on_read,
    .on_eof = http_on_eof,
    .on_tick = http_on_tick,
    .on_shutdown = http_on_shutdown,
    .on_close = http_on_close,
};

void http_server_refuse(conn_t *c, int reason)
{
    const char *msg = reason == REFUSED_MAX_CONNECTIONS_PER_IP
                          ? "too many connections from this address"
                          : "too many connections";
    conn_send_owned(c, http_response_error(503, msg, 0));
    conn_end(c);
}

static http_conn_t *ctx_conn(http_ctx_t *ctx)
{
    return (http_conn_t *)((char *)ctx - offsetof(http_conn_t, ctx));
}

void http_respond(http_ctx_t *ctx, int status, const char *content_type, const char *body,
                  size_t len, const char *extra_headers)
{
    if (ctx->answered) return;
    ctx->answered = 1;
    if (!ctx->conn) return;
    ctx->ops->respond(ctx, status, content_type, body, len, extra_headers);
}

static void h1_respond(http_ctx_t *ctx, int status, const char *content_type, const char *body,
                       size_t len, const char *extra_headers)
{
    http_conn_t *hc = ctx_conn(ctx);
    int keep = hc->p.req.keep_alive && !hc->p.req.upgrade;
    int head = strcmp(hc->p.req.method_name, "HEAD") == 0;
    buf_t *b = http_response_build(status, content_type, head ? NULL : body, head ? 0 : len, keep,
                                   extra_headers);
    if (head && b && status != 204) {
        /* HEAD keeps GET's Content-Length: rebuild the head with the real length */
        buf_unref(b);
        b = http_response_build(status, content_type, body, len, keep, extra_headers);
        if (b) {
            char *end = strstr(b->data, "\r\n\r\n");
            if (end) b->len = (size_t)(end - b->data) + 4;
        }
    }
    if (conn_send_owned(ctx->conn, b) < 0) {
        conn_close(ctx->conn);
        return;
    }
    if (!ctx->deferred || hc->in_handler) return;
    /* a late answer: carry on with the connection's next request */
    ctx->deferred = 0;
    if (!finish_request(hc)) return;
    char *stash = hc->stash;
    size_t n = hc->stash_len;
    hc->stash = NULL;
    hc->stash_len = 0;
    conn_resume_read(hc->c);
    if (stash) {
        process(hc, stash, n);
        free(stash);
    }
}

void http_respond_json(http_ctx_t *ctx, int status, buf_t *b)
{
    if (!b) {
        http_respond_error(ctx, 500, "out of memory");
        return;
    }
    http_respond(ctx, status, "application/json", b->data, b->len, NULL);
    buf_unref(b);
}

void http_respond_error(http_ctx_t *ctx, int status, const char *msg)
{
    buf_t *b = buf_new(64);
    if (b && (buf_puts(&b, "{\"error\":") || buf_put_json_string(&b, msg) || buf_puts(&b, "}"))) {
        buf_unref(b);
        b = NULL;
    }
    if (!b) {
        http_respond(ctx, 500, "application/json", "{\"error\":\"out of memory\"}", 25, NULL);
        return;
    }
    http_respond(ctx, status, "application/json", b->data, b->len, NULL);
    buf_unref(b);
}

void http_defer(http_ctx_t *ctx)
{
    ctx->deferred = 1;
}

conn_t *http_take_conn(http_ctx_t *ctx, const char **extra, size_t *extra_len)
{
    http_conn_t *hc = ctx_conn(ctx);
    conn_t *c = hc->c;
    *extra = hc->rest;
    *extra_len = hc->rest_len;
    hc->taken = 1;
    ctx->answered = 1;
    /* the HTTP state goes now; the parser's request stays valid until the handler
     * returns because process() touches nothing after a take */
    c->ud = NULL;
    __atomic_sub_fetch(&metrics.connections[METRICS_T_HTTP], 1, __ATOMIC_RELAXED);
    return c;
}

int http_migrate(http_ctx_t *ctx, worker_t *to)
{
    return ctx->ops->migrate ? ctx->ops->migrate(ctx, to) : -EPROTONOSUPPORT;
}

static int h1_migrate(http_ctx_t *ctx, worker_t *to)
{
    http_conn_t *hc = ctx_conn(ctx);
    const http_request_t *req = ctx->req;
    conn_t *c = hc->c;
    if (conn_has_output(c)) return -EBUSY;
    /* the request again, as bytes, then whatever followed it */
    buf_t *b = buf_new(512 + req->body_len + hc->rest_len);
    if (!b) return -ENOMEM;
    int r = buf_printf(&b, "%s %s HTTP/1.%d\r\n", req->method_name, req->target, req->http_minor);
    for (unsigned i = 0; i < req->n_headers; i++) {
        if (strcasecmp(req->headers[i].name, "Transfer-Encoding") == 0 ||
            strcasecmp(req->headers[i].name, "Content-Length") == 0)
            continue; /* the body is passed de-chunked, with its own length */
        r |= buf_printf(&b, "%s: %s\r\n", req->headers[i].name, req->headers[i].value);
    }
    if (req->body_len || strcmp(req->method_name, "POST") == 0)
        r |= buf_printf(&b, "Content-Length: %zu\r\n", req->body_len);
    r |= buf_puts(&b, "\r\n");
    r |= buf_append(&b, req->body, req->body_len);
    r |= buf_append(&b, hc->rest, hc->rest_len);
    if (r) {
        buf_unref(b);
        return -ENOMEM;
    }
    const char *extra;
    size_t extra_len;
    http_take_conn(ctx, &extra, &extra_len);
    r = conn_migrate(c, to, &http_proto, b);
    if (r < 0) {
        /* cannot happen after the checks above; the connection cannot go back to HTTP */
        buf_unref(b);
        conn_close(c);
    }
    return 0;
}

void http_conn_end(conn_t *c)
{
    if (c && c->proto == &http_proto && !(c->flags & (CONN_END | CONN_CLOSING))) conn_end(c);
}

/* ---- HTTP/1.1 responses that stay open: the connection carries one body ---- */

typedef struct h1_stream_s {
    http_stream_t base;
    conn_t *c;
} h1_stream_t;

static void h1_stream_on_read(conn_t *c, const char *data, size_t len)
{
    (void)c, (void)data, (void)len; /* the client has nothing to say; ignored */
}

static void h1_stream_on_eof(conn_t *c)
{
    conn_close(c);
}

static void h1_stream_on_tick(conn_t *c, uint64_t now)
{
    h1_stream_t *st = c->ud;
    if (st->base.cbs->on_tick) st->base.cbs->on_tick(st->base.ud, now);
}

static void h1_stream_on_shutdown(conn_t *c)
{
    h1_stream_t *st = c->ud;
    if (st->base.cbs->on_shutdown) st->base.cbs->on_shutdown(st->base.ud);
    conn_end(c); /* what is queued goes out first */
}

static void h1_stream_on_close(conn_t *c)
{
    h1_stream_t *st = c->ud;
    st->base.cbs->on_close(st->base.ud);
    free(st);
}

static const conn_proto_t h1_stream_proto = {
    .name = "http-stream",
    .on_read = h1_stream_on_read,
    .on_eof = h1_stream_on_eof,
    .on_tick = h1_stream_on_tick,
    .on_shutdown = h1_stream_on_shutdown,
    .on_close = h1_stream_on_close,
};

static int h1_stream_send(http_stream_t *s, buf_t *b, size_t off, size_t len)
{
    return conn_send(((h1_stream_t *)s)->c, b, off, len);
}

static void h1_stream_set_limit(http_stream_t *s, size_t max)
{
    conn_t *c = ((h1_stream_t *)s)->c;
    c->limit = max ? conn_bytes(c->pending + max) : 0;
}

static void h1_stream_close(http_stream_t *s)
{
    conn_close(((h1_stream_t *)s)->c);
}

static const http_stream_ops_t h1_stream_ops = {h1_stream_send, h1_stream_set_limit,
                                                h1_stream_close};

static http_stream_t *h1_open(http_ctx_t *ctx, const char *content_type, const char *extra_headers,
                              const http_stream_cbs_t *cbs, void *ud)
{
    const char *extra;
    size_t extra_len;
    conn_t *c = http_take_conn(ctx, &extra, &extra_len);
    h1_stream_t *st = calloc(1, sizeof(*st));
    buf_t *head = buf_new(256);
    if (!st || !head) goto fail;
    if (buf_printf(&head, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\n%sConnection: close\r\n\r\n",
                   content_type, extra_headers ? extra_headers : "") < 0)
        goto fail;
    c->limit = 0;
    c->deadline = 0;
    if (conn_send_owned(c, head) < 0) {
        head = NULL;
        goto fail;
    }
    st->base = (http_stream_t){&h1_stream_ops, c->w, cbs, ud};
    st->c = c;
    conn_set_proto(c, &h1_stream_proto, st);
    return &st->base;
fail:
    buf_unref(head);
    free(st);
    conn_close(c);
    return NULL;
}

http_stream_t *http_stream_open(http_ctx_t *ctx, const char *content_type,
                                const char *extra_headers, const http_stream_cbs_t *cbs, void *ud)
{
    if (ctx->answered || !ctx->conn) return NULL;
    return ctx->ops->open(ctx, content_type, extra_headers, cbs, ud);
}

static const http_ctx_ops_t h1_ops = {h1_respond, h1_open, h1_migrate};
