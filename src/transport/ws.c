/* WebSocket connection glue between conn (socket I/O) and ws_session (the codec). */
#include "transport/ws.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/metrics.h"
#include "core/worker.h"

#define WS_CLOSE_WAIT_MS 2000

static int write_cb(ws_session_t *s, const uint8_t *data, size_t len, void *ud)
{
    (void)s;
    ws_conn_t *wc = ud;
    /* control frames must go out even when the data bound is reached */
    uint32_t limit = wc->c->limit;
    wc->c->limit = 0;
    int r = conn_send_copy(wc->c, data, len);
    wc->c->limit = limit;
    return r;
}

static void message_cb(ws_session_t *s, uint8_t opcode, const uint8_t *msg, size_t len, void *ud)
{
    (void)s;
    ws_conn_t *wc = ud;
    if (!wc->closing) wc->h->on_message(wc, opcode, msg, len);
}

static const ws_session_cbs_t ws_cbs = {message_cb, write_cb};

static void check_done(ws_conn_t *wc)
{
    if (ws_session_done(&wc->s)) conn_end(wc->c);
}

static void ws_on_read(conn_t *c, const char *data, size_t len)
{
    ws_conn_t *wc = c->ud;
    wc->last_seen = (uint32_t)uv_now(&c->w->loop);
    int r = ws_session_feed(&wc->s, (const uint8_t *)data, len);
    if (ws_session_take_refusal(&wc->s) == WSLAY_CODE_MESSAGE_TOO_BIG)
        METRICS_REFUSED(REFUSED_MESSAGE_SIZE);
    if (r < 0) {
        conn_close(c);
        return;
    }
    if (!ws_session_can_send(&wc->s)) wc->closing = 1;
    check_done(wc);
}

static void ws_on_eof(conn_t *c)
{
    conn_close(c);
}

static void ws_on_tick(conn_t *c, uint64_t now)
{
    ws_conn_t *wc = c->ud;
    if (wc->closing) {
        if (c->deadline && now >= c->deadline) conn_close(c);
        return;
    }
    uint32_t now32 = (uint32_t)now;
    if (now32 - wc->last_seen >= wc->dead_after_ms) {
        log_info("websocket peer is not answering", "idle_ms=%llu",
                 (unsigned long long)(now32 - wc->last_seen));
        conn_close(c);
        return;
    }
    if ((int32_t)(now32 - wc->next_ping) >= 0) {
        wc->next_ping = now32 + wc->ping_interval_ms;
        ws_session_send(&wc->s, WSLAY_PING, NULL, 0);
    }
}

static void ws_on_shutdown(conn_t *c)
{
    ws_conn_close(c->ud, 1001, "going away");
}

static void ws_on_close(conn_t *c)
{
    ws_conn_t *wc = c->ud;
    __atomic_sub_fetch(&metrics.connections[METRICS_T_WEBSOCKET], 1, __ATOMIC_RELAXED);
    if (wc->embedded) {
        /* wc is part of the handler's allocation: freed by on_close, so last */
        ws_session_release(&wc->s);
        wc->h->on_close(wc);
        return;
    }
    if (wc->h->on_close) wc->h->on_close(wc);
    ws_session_release(&wc->s);
    free(wc);
}

static const conn_proto_t ws_proto = {
    .name = "websocket",
    .on_read = ws_on_read,
    .on_eof = ws_on_eof,
    .on_tick = ws_on_tick,
    .on_shutdown = ws_on_shutdown,
    .on_close = ws_on_close,
};

/* The 101 answer and the switch of c to WebSocket, into wc (zeroed by the caller).
 * Returns 0, or -ENOMEM (c is closed, wc left to the caller). */
static int upgrade(ws_conn_t *wc, conn_t *c, const char *client_key, const ws_options_t *opt,
                   const ws_handler_t *h, void *app, const char *extra, size_t extra_len)
{
    char accept[WS_ACCEPT_KEY_LEN + 1];
    if (ws_accept_key(client_key, accept) < 0) goto fail;
    ws_session_init(&wc->s, &ws_cbs, wc, opt->max_message_bytes);
    char ext[WS_PMD_RESPONSE_MAX + 32] = "";
    if (opt->pmd) {
        char v[WS_PMD_RESPONSE_MAX];
        if (ws_pmd_response(opt->pmd, v, sizeof(v)) < 0) goto fail_session;
        snprintf(ext, sizeof(ext), "Sec-WebSocket-Extensions: %s\r\n", v);
        ws_session_set_deflate(&wc->s, opt->pmd);
    }
    char head[256 + sizeof(ext)];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n",
                     accept, ext);
    if (conn_send_copy(c, head, (size_t)n) < 0) goto fail_session;
    wc->c = c;
    wc->h = h;
    wc->app = app;
    uint64_t now = uv_now(&c->w->loop);
    wc->last_seen = (uint32_t)now;
    wc->ping_interval_ms = opt->ping_interval_ms;
    wc->dead_after_ms = opt->ping_interval_ms + opt->pong_timeout_ms;
    wc->next_ping = (uint32_t)now + opt->ping_interval_ms;
    c->limit = conn_bytes(opt->max_output_bytes);
    c->deadline = 0;
    conn_set_proto(c, &ws_proto, wc);
    __atomic_add_fetch(&metrics.connections[METRICS_T_WEBSOCKET], 1, __ATOMIC_RELAXED);
    if (extra_len) ws_on_read(c, extra, extra_len);
    return 0;
fail_session:
    ws_session_release(&wc->s);
fail:
    conn_close(c);
    return -ENOMEM;
}

ws_conn_t *ws_upgrade(conn_t *c, const char *client_key, const ws_options_t *opt,
                      const ws_handler_t *h, void *app, const char *extra, size_t extra_len)
{
    ws_conn_t *wc = calloc(1, sizeof(*wc));
    if (!wc) {
        conn_close(c);
        return NULL;
    }
    if (upgrade(wc, c, client_key, opt, h, app, extra, extra_len) < 0) {
        free(wc);
        return NULL;
    }
    return wc;
}

int ws_upgrade_into(ws_conn_t *wc, conn_t *c, const char *client_key, const ws_options_t *opt,
                    const ws_handler_t *h, void *app, const char *extra, size_t extra_len)
{
    memset(wc, 0, sizeof(*wc));
    wc->embedded = 1;
    return upgrade(wc, c, client_key, opt, h, app, extra, extra_len);
}

int ws_conn_send_frame(ws_conn_t *wc, buf_t *frame)
{
    if (wc->closing || !ws_session_can_send(&wc->s) || ws_session_flush(&wc->s) < 0) return -EPIPE;
    return conn_send(wc->c, frame, 0, frame->len);
}

unsigned ws_conn_deflate_bits(const ws_conn_t *wc)
{
    return ws_session_deflate_bits(&wc->s);
}

int ws_conn_send_text(ws_conn_t *wc, const char *msg, size_t len)
{
    if (wc->closing) return -EPIPE;
    buf_t *f = ws_frame_text(msg, len);
    unsigned bits = ws_session_deflate_bits(&wc->s);
    if (f && bits) {
        buf_t *z = ws_pmd_frame(f, bits);
        buf_unref(f);
        f = z;
    }
    if (!f) return -ENOMEM;
    int r = ws_conn_send_frame(wc, f);
    buf_unref(f);
    return r;
}

void ws_conn_close(ws_conn_t *wc, uint16_t code, const char *reason)
{
    if (wc->closing) return;
    wc->closing = 1;
    wc->c->deadline = uv_now(&wc->c->w->loop) + WS_CLOSE_WAIT_MS;
    if (ws_session_close(&wc->s, code, reason) < 0)
        conn_close(wc->c);
    else
        check_done(wc);
}

void ws_conn_abort(ws_conn_t *wc, uint16_t code, const char *reason)
{
    conn_t *c = wc->c;
    if (wc->closing) return;
    /* the peer is not reading: what is queued will never drain, so drop it; the close
     * frame goes out only if the kernel still has room, then the socket is cut */
    ws_conn_close(wc, code, reason);
    if (!(c->flags & CONN_CLOSING)) c->deadline = uv_now(&c->w->loop) + 200;
}
