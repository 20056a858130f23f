/* HTTP/2 connection glue: conn callbacks, per-stream http_ctx_t and open responses,
 * deferred framing, idle and shutdown handling. */
#include "http/h2.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/metrics.h"
#include "core/worker.h"
#include "http/h2_session.h"
#include "http/server.h"

/* frames are produced while less than this is pending on the connection */
#define H2_OUT_HIGH (128u * 1024)
#define H2_PUMP_ROUNDS 4

typedef struct h2_conn_s {
    conn_t *c;
    h2_session_t *s;
    int draining; /* GOAWAY sent */
    int dead;     /* a connection error: flush the GOAWAY, then end */
    uint64_t last_active;
} h2_conn_t;

/* One stream's request as the handlers see it. */
typedef struct h2_req_s {
    http_ctx_t ctx;
    http_stream_t sink;
    h2_stream_t *st;
    h2_conn_t *hc;
    int sink_open;
} h2_req_t;

static const http_ctx_ops_t h2_ops;
static const http_stream_ops_t h2_sink_ops;

static void schedule(h2_conn_t *hc)
{
    conn_want_flush(hc->c);
}

static int write_cb(void *ud, buf_t *b, size_t off, size_t len)
{
    h2_conn_t *hc = ud;
    return conn_send(hc->c, b, off, len);
}

/* The stream ended: the handler side hears of it the way it would over HTTP/1.1. */
static void finish_req(h2_req_t *r)
{
    if (r->sink_open) {
        r->sink_open = 0;
        r->sink.cbs->on_close(r->sink.ud);
    } else if (r->ctx.deferred && !r->ctx.answered) {
        r->ctx.conn = NULL;
        if (r->ctx.on_abort) r->ctx.on_abort(&r->ctx);
    }
}

static void drain_closed(h2_conn_t *hc)
{
    h2_stream_t *st;
    while ((st = h2_session_next_closed(hc->s))) {
        h2_req_t *r = h2_stream_get_ud(st);
        if (r) {
            finish_req(r);
            free(r);
        }
        h2_stream_free(st);
    }
}

static void dispatch_ready(h2_conn_t *hc)
{
    const http_server_cfg_t *cfg = http_server_config();
    h2_stream_t *st;
    while (!(hc->c->flags & CONN_CLOSING) && (st = h2_session_next_request(hc->s))) {
        h2_req_t *r = calloc(1, sizeof(*r));
        if (!r) {
            h2_stream_reset(st, NGHTTP2_INTERNAL_ERROR);
            continue;
        }
        r->st = st;
        r->hc = hc;
        h2_stream_set_ud(st, r);
        r->ctx = (http_ctx_t){.ops = &h2_ops,
                              .req = h2_stream_request(st),
                              .conn = hc->c,
                              .w = hc->c->w,
                              .app = cfg->app};
        METRICS_ADD(http_requests, 1);
        http_route(&r->ctx);
    }
}

/* Frames what the session has queued, within the connection's output watermark. */
static void pump(h2_conn_t *hc)
{
    conn_t *c = hc->c;
    for (int i = 0; i < H2_PUMP_ROUNDS; i++) {
        if (c->flags & (CONN_CLOSING | CONN_END | CONN_SHUT)) return;
        if (c->pending >= H2_OUT_HIGH) return; /* on_drain pumps again */
        int r = h2_session_flush(hc->s, H2_OUT_HIGH - c->pending);
        /* streams that ended while framing: their handlers may answer other streams,
         * which queues more frames for the next round */
        drain_closed(hc);
        if (r < 0) {
            log_debug("http2 connection failed", "err=%d", r);
            conn_close(c);
            return;
        }
        if (!h2_session_want_write(hc->s)) break;
    }
    if (hc->dead || h2_session_done(hc->s) ||
        (hc->draining && h2_session_stream_count(hc->s) == 0 && !h2_session_want_write(hc->s)))
        conn_end(c);
}

static void h2_on_read(conn_t *c, const char *data, size_t len)
{
    h2_conn_t *hc = c->ud;
    if (!hc || hc->dead || (c->flags & (CONN_END | CONN_CLOSING))) return;
    hc->last_active = uv_now(&c->w->loop);
    int r = h2_session_feed(hc->s, (const uint8_t *)data, len, hc->last_active);
    drain_closed(hc);
    dispatch_ready(hc);
    if (r < 0) {
        log_info("bad http2 connection", "err=%d", r);
        hc->dead = 1;
    }
    schedule(hc);
}

static void h2_on_eof(conn_t *c)
{
    conn_close(c);
}

static void h2_on_drain(conn_t *c)
{
    h2_conn_t *hc = c->ud;
    if (hc && h2_session_want_write(hc->s)) pump(hc);
}

static void h2_on_flush(conn_t *c)
{
    h2_conn_t *hc = c->ud;
    if (hc) pump(hc);
}

static void tick_stream(h2_stream_t *st, void *arg)
{
    h2_req_t *r = h2_stream_get_ud(st);
    if (r && r->sink_open && r->sink.cbs->on_tick)
        r->sink.cbs->on_tick(r->sink.ud, *(const uint64_t *)arg);
}

static void h2_on_tick(conn_t *c, uint64_t now)
{
    h2_conn_t *hc = c->ud;
    if (!hc || (c->flags & (CONN_END | CONN_CLOSING))) return;
    unsigned timeout = http_server_config()->read_timeout_ms;
    if (h2_session_stream_count(hc->s) == 0) {
        if (now >= hc->last_active + timeout && !hc->draining) {
            /* an idle connection: say so, then let it go */
            hc->draining = 1;
            h2_session_goaway(hc->s);
            schedule(hc);
        }
        return;
    }
    if (now > timeout && h2_session_expire(hc->s, now - timeout)) schedule(hc);
    h2_session_each(hc->s, tick_stream, &now);
}

static void end_sink(h2_stream_t *st, void *arg)
{
    (void)arg;
    h2_req_t *r = h2_stream_get_ud(st);
    if (!r || !r->sink_open) return;
    if (r->sink.cbs->on_shutdown) r->sink.cbs->on_shutdown(r->sink.ud);
    h2_stream_end(st);
}

static void h2_on_shutdown(conn_t *c)
{
    h2_conn_t *hc = c->ud;
    if (!hc) {
        conn_end(c);
        return;
    }
    /* GOAWAY: requests in flight finish (held ones are answered by their owners as
     * the node stops), open responses end cleanly, and the connection then ends */
    hc->draining = 1;
    h2_session_goaway(hc->s);
    h2_session_each(hc->s, end_sink, NULL);
    schedule(hc);
}

static void abort_stream(h2_stream_t *st, void *arg)
{
    (void)arg;
    h2_req_t *r = h2_stream_get_ud(st);
    if (!r) return;
    h2_stream_set_ud(st, NULL);
    finish_req(r);
    free(r);
}

static void h2_on_close(conn_t *c)
{
    h2_conn_t *hc = c->ud;
    if (!hc) return;
    drain_closed(hc);
    h2_session_each(hc->s, abort_stream, NULL);
    h2_session_free(hc->s);
    free(hc);
    c->ud = NULL;
    __atomic_sub_fetch(&metrics.connections[METRICS_T_HTTP2], 1, __ATOMIC_RELAXED);
}

const conn_proto_t h2_proto = {
    .name = "http2",
    .on_read = h2_on_read,
    .on_eof = h2_on_eof,
    .on_drain = h2_on_drain,
    .on_tick = h2_on_tick,
    .on_shutdown = h2_on_shutdown,
    .on_flush = h2_on_flush,
    .on_close = h2_on_close,
};

void h2_conn_attach(conn_t *c, const char *pre, size_t pre_len, const char *data, size_t len)
{
    const http_server_cfg_t *cfg = http_server_config();
    h2_conn_t *hc = calloc(1, sizeof(*hc));
    if (!hc) goto fail;
    hc->c = c;
    h2_limits_t lim = {cfg->limits, cfg->h2_max_streams};
    if (h2_session_new(&hc->s, &lim, write_cb, hc) < 0) goto fail_conn;
    c->deadline = 0;
    conn_set_proto(c, &h2_proto, hc);
    __atomic_add_fetch(&metrics.connections[METRICS_T_HTTP2], 1, __ATOMIC_RELAXED);
    if (pre_len) h2_on_read(c, pre, pre_len);
    h2_on_read(c, data, len);
    return;
fail_conn:
    free(hc);
fail:
    conn_set_proto(c, &h2_proto, NULL);
    conn_close(c);
}

/* ---- the handler-facing calls, per stream ---- */

static h2_req_t *ctx_req(http_ctx_t *ctx)
{
    return (h2_req_t *)((char *)ctx - offsetof(h2_req_t, ctx));
}

static void h2_respond(http_ctx_t *ctx, int status, const char *content_type, const char *body,
                       size_t len, const char *extra_headers)
{
    h2_req_t *r = ctx_req(ctx);
    buf_t *b = NULL;
    if (len && (!(b = buf_new(len)) || buf_append(&b, body, len) < 0)) {
        buf_unref(b);
        h2_stream_reset(r->st, NGHTTP2_INTERNAL_ERROR);
        schedule(r->hc);
        return;
    }
    if (h2_stream_respond(r->st, status, content_type, extra_headers, b) == -ENOMEM)
        h2_stream_reset(r->st, NGHTTP2_INTERNAL_ERROR);
    ctx->deferred = 0;
    schedule(r->hc);
}

static http_stream_t *h2_open(http_ctx_t *ctx, const char *content_type, const char *extra_headers,
                              const http_stream_cbs_t *cbs, void *ud)
{
    h2_req_t *r = ctx_req(ctx);
    ctx->answered = 1;
    ctx->deferred = 0;
    schedule(r->hc);
    if (h2_stream_open(r->st, 200, content_type, extra_headers) < 0) {
        h2_stream_reset(r->st, NGHTTP2_INTERNAL_ERROR);
        return NULL;
    }
    r->sink = (http_stream_t){&h2_sink_ops, r->hc->c->w, cbs, ud};
    r->sink_open = 1;
    return &r->sink;
}

static const http_ctx_ops_t h2_ops = {h2_respond, h2_open, NULL};

static h2_req_t *sink_req(http_stream_t *s)
{
    return (h2_req_t *)((char *)s - offsetof(h2_req_t, sink));
}

static int h2_sink_send(http_stream_t *s, buf_t *b, size_t off, size_t len)
{
    h2_req_t *r = sink_req(s);
    int rc = h2_stream_write(r->st, b, off, len);
    if (rc == 0) schedule(r->hc);
    return rc;
}

static void h2_sink_set_limit(http_stream_t *s, size_t max)
{
    h2_stream_set_limit(sink_req(s)->st, max);
}

static void h2_sink_close(http_stream_t *s)
{
    h2_req_t *r = sink_req(s);
    h2_stream_reset(r->st, NGHTTP2_CANCEL);
    schedule(r->hc);
}

static const http_stream_ops_t h2_sink_ops = {h2_sink_send, h2_sink_set_limit, h2_sink_close};
