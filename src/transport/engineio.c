/* Engine.IO v4 sessions and transports. A session belongs to the worker that opened
 * it; the registry only maps a sid to that worker, and requests elsewhere migrate. */
#include "transport/engineio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ids.h"
#include "core/log.h"
#include "core/metrics.h"
#include "http/url.h"

enum { EIO_T_POLLING = 0, EIO_T_WEBSOCKET = 1 };

typedef struct eio_item_s {
    struct eio_item_s *next;
    int type;
    int binary;
    buf_t *b;
    size_t off, len;
} eio_item_t;

struct eio_session_s {
    char sid[EIO_SID_LEN + 1];
    worker_t *w;
    const eio_server_t *srv;
    const eio_handler_t *h;
    void *app;
    int transport;
    int closed;
    eio_item_t *head, *tail;
    size_t queued;
    http_ctx_t *poll; /* the GET held until there is something to say */
    ws_conn_t *ws;    /* the WebSocket transport, once active */
    ws_conn_t *probe; /* a WebSocket being probed for the upgrade */
    uv_timer_t heartbeat;
    uv_timer_t flush;
    int awaiting_pong;
    int client_closed;
    int probed;  /* the WebSocket answered 3probe: polls end at once until it upgrades */
    int cut;     /* a slow consumer: closed at the next loop turn, refuses sends until then */
    int handles; /* timers still to close before the session is freed */
};

/* ---- registry: sid -> owning worker, node-wide ---- */

#define REG_BUCKETS 4096

typedef struct reg_entry_s {
    struct reg_entry_s *next;
    char sid[EIO_SID_LEN + 1];
    int worker;
} reg_entry_t;

static uv_mutex_t reg_mu;
static reg_entry_t *reg[REG_BUCKETS];

static size_t reg_hash(const char *sid)
{
    size_t h = 5381;
    for (; *sid; sid++)
        h = h * 33 + (unsigned char)*sid;
    return h % REG_BUCKETS;
}

int eio_init(void)
{
    return uv_mutex_init(&reg_mu) < 0 ? -ENOMEM : 0;
}

static int reg_add(const char *sid, int worker)
{
    reg_entry_t *e = calloc(1, sizeof(*e));
    if (!e) return -ENOMEM;
    memcpy(e->sid, sid, EIO_SID_LEN + 1);
    e->worker = worker;
    size_t b = reg_hash(sid);
    uv_mutex_lock(&reg_mu);
    e->next = reg[b];
    reg[b] = e;
    uv_mutex_unlock(&reg_mu);
    return 0;
}

static void reg_remove(const char *sid)
{
    size_t b = reg_hash(sid);
    uv_mutex_lock(&reg_mu);
    for (reg_entry_t **pp = &reg[b]; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->sid, sid) == 0) {
            reg_entry_t *e = *pp;
            *pp = e->next;
            free(e);
            break;
        }
    uv_mutex_unlock(&reg_mu);
}

static int reg_owner(const char *sid)
{
    int w = -1;
    size_t b = reg_hash(sid);
    uv_mutex_lock(&reg_mu);
    for (reg_entry_t *e = reg[b]; e; e = e->next)
        if (strcmp(e->sid, sid) == 0) {
            w = e->worker;
            break;
        }
    uv_mutex_unlock(&reg_mu);
    return w;
}

/* the owner's sessions, for the pointer once the owner is known to be us */
static __thread eio_session_t **local_sessions;
static __thread size_t local_n, local_cap;

static eio_session_t *local_find(const char *sid)
{
    for (size_t i = 0; i < local_n; i++)
        if (strcmp(local_sessions[i]->sid, sid) == 0) return local_sessions[i];
    return NULL;
}

static int local_add(eio_session_t *s)
{
    if (local_n == local_cap) {
        size_t cap = local_cap ? local_cap * 2 : 64;
        eio_session_t **n = realloc(local_sessions, cap * sizeof(*n));
        if (!n) return -ENOMEM;
        local_sessions = n;
        local_cap = cap;
    }
    local_sessions[local_n++] = s;
    return 0;
}

static void local_remove(eio_session_t *s)
{
    for (size_t i = 0; i < local_n; i++)
        if (local_sessions[i] == s) {
            local_sessions[i] = local_sessions[--local_n];
            break;
        }
    if (local_n == 0) {
        free(local_sessions);
        local_sessions = NULL;
        local_cap = 0;
    }
}

/* ---- small helpers ---- */

static void respond_error(http_ctx_t *ctx, int status, int code)
{
    char body[96];
    int n = snprintf(body, sizeof(body), "{\"code\":%d,\"message\":\"%s\"}", code,
                     eio_error_message(code));
    http_respond(ctx, status, "application/json", body, (size_t)n, NULL);
}

static void items_free(eio_session_t *s)
{
    while (s->head) {
        eio_item_t *it = s->head;
        s->head = it->next;
        buf_unref(it->b);
        free(it);
    }
    s->tail = NULL;
    s->queued = 0;
}

static int queue_item(eio_session_t *s, int type, int binary, buf_t *b, size_t off, size_t len)
{
    eio_item_t *it = calloc(1, sizeof(*it));
    if (!it) return -ENOMEM;
    it->type = type;
    it->binary = binary;
    it->b = b ? buf_ref(b) : NULL;
    it->off = off;
    it->len = len;
    if (s->tail)
        s->tail->next = it;
    else
        s->head = it;
    s->tail = it;
    s->queued += len;
    return 0;
}

/* Writes one packet to a WebSocket: the header and type digit, then the shared bytes. */
static int ws_write_packet(ws_conn_t *wc, int type, int binary, buf_t *b, size_t off, size_t len)
{
    if (wc->closing || !ws_session_can_send(&wc->s) || ws_session_flush(&wc->s) < 0) return -EPIPE;
    uint8_t hdr[11];
    size_t body = binary ? len : len + 1;
    size_t hl = ws_frame_header(hdr, binary ? WSLAY_BINARY_FRAME : WSLAY_TEXT_FRAME, body);
    if (!binary) hdr[hl++] = (uint8_t)('0' + type);
    int r = conn_send_copy(wc->c, hdr, hl);
    if (r == 0 && len) r = conn_send(wc->c, b, off, len);
    return r;
}

static int ws_write_text(ws_conn_t *wc, int type, const char *data, size_t len)
{
    buf_t *b = buf_new(len);
    if (!b) return -ENOMEM;
    buf_append(&b, data, len);
    int r = ws_write_packet(wc, type, 0, b, 0, len);
    buf_unref(b);
    return r;
}

/* ---- polling ---- */

static void poll_respond(eio_session_t *s)
{
    http_ctx_t *ctx = s->poll;
    s->poll = NULL;
    ctx->on_abort = NULL;
    buf_t *body = buf_new(s->queued + 16);
    int r = body ? 0 : -ENOMEM;
    for (eio_item_t *it = s->head; it && r == 0; it = it->next)
        r = eio_payload_append(&body, it->type, it->binary, it->b ? it->b->data + it->off : "",
                               it->len);
    items_free(s);
    if (r < 0) {
        buf_unref(body);
        http_respond_error(ctx, 500, "out of memory");
        return;
    }
    http_respond(ctx, 200, "text/plain; charset=UTF-8", body->data, body->len, NULL);
    buf_unref(body);
}

static void session_close(eio_session_t *s, const char *reason, int send_close);
static void session_close_code(eio_session_t *s, const char *reason, int send_close,
                               uint16_t ws_code);

static void on_flush(uv_timer_t *t)
{
    eio_session_t *s = t->data;
    if (s->cut) {
        session_close(s, "transport error", 0);
        return;
    }
    if (s->poll && s->head) poll_respond(s);
}

/* Cuts a slow consumer. Not at once: the caller may be in the middle of a fan-out or a
 * replay that still holds the layer above's state, which closing would free. */
static void session_cut(eio_session_t *s)
{
    if (s->cut || s->closed) return;
    s->cut = 1;
    METRICS_ADD(slow_consumer_closes, 1);
    uv_timer_start(&s->flush, on_flush, 0, 0);
}

static void schedule_flush(eio_session_t *s)
{
    /* at the next loop turn: what the same turn queues leaves in one response */
    if (s->poll && !uv_is_active((uv_handle_t *)&s->flush))
        uv_timer_start(&s->flush, on_flush, 0, 0);
}

static void on_poll_abort(http_ctx_t *ctx)
{
    eio_session_t *s = ctx->abort_arg;
    if (s->poll == ctx) s->poll = NULL;
}

/* ---- session life ---- */

static void on_handle_closed(uv_handle_t *h)
{
    eio_session_t *s = h->data;
    if (--s->handles == 0) free(s);
}

static void heartbeat_arm(eio_session_t *s, unsigned ms);

/* send_close: tell the client with a close packet (a server-side close); a pending
 * poll then gets "1". When the client closed, a pending poll just ends with a noop. */
static void session_close_code(eio_session_t *s, const char *reason, int send_close,
                               uint16_t ws_code)
{
    if (s->closed) return;
    s->closed = 1;
    reg_remove(s->sid);
    local_remove(s);
    uv_timer_stop(&s->heartbeat);
    uv_timer_stop(&s->flush);
    if (s->poll && send_close && !s->client_closed && !s->cut &&
        queue_item(s, EIO_CLOSE, 0, NULL, 0, 0) == 0) {
        /* what was queued for the client (a socket.io DISCONNECT) goes out before the
         * close packet, in the held poll's answer */
        poll_respond(s);
    } else if (s->poll) {
        http_ctx_t *ctx = s->poll;
        s->poll = NULL;
        ctx->on_abort = NULL;
        http_respond(ctx, 200, "text/plain; charset=UTF-8", s->client_closed ? "6" : "1", 1, NULL);
    }
    items_free(s);
    ws_conn_t *ws = s->ws, *probe = s->probe;
    s->ws = s->probe = NULL;
    if (ws) {
        if (send_close) ws_write_text(ws, EIO_CLOSE, "", 0);
        ws->app = NULL;
        ws_conn_close(ws, ws_code, "");
    }
    if (probe) {
        probe->app = NULL;
        ws_conn_close(probe, ws_code, "");
    }
    if (s->h && s->h->on_close) s->h->on_close(s, reason);
    s->h = NULL;
    uv_close((uv_handle_t *)&s->heartbeat, on_handle_closed);
    uv_close((uv_handle_t *)&s->flush, on_handle_closed);
}

static void session_close(eio_session_t *s, const char *reason, int send_close)
{
    session_close_code(s, reason, send_close, 1000);
}

void eio_close(eio_session_t *s, const char *reason)
{
    session_close(s, reason ? reason : "server namespace disconnect", 1);
}

void eio_close_code(eio_session_t *s, const char *reason, uint16_t ws_code)
{
    session_close_code(s, reason ? reason : "server namespace disconnect", 1, ws_code);
}

static void on_heartbeat(uv_timer_t *t)
{
    eio_session_t *s = t->data;
    if (s->awaiting_pong) {
        session_close(s, "ping timeout", 0);
        return;
    }
    s->awaiting_pong = 1;
    if (s->transport == EIO_T_WEBSOCKET && s->ws) {
        ws_write_text(s->ws, EIO_PING, "", 0);
    } else {
        queue_item(s, EIO_PING, 0, NULL, 0, 0);
        schedule_flush(s);
    }
    heartbeat_arm(s, s->srv->opt.ping_timeout_ms);
}

static void heartbeat_arm(eio_session_t *s, unsigned ms)
{
    uv_timer_start(&s->heartbeat, on_heartbeat, ms, 0);
}

static eio_session_t *session_new(worker_t *w, const eio_server_t *srv, int transport)
{
    eio_session_t *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    char rnd[EIO_SID_LEN / 2 * 2 + 1];
    if (ids_random_hex(rnd, EIO_SID_LEN / 2) < 0) {
        free(s);
        return NULL;
    }
    memcpy(s->sid, rnd, EIO_SID_LEN);
    s->sid[EIO_SID_LEN] = '\0';
    s->w = w;
    s->srv = srv;
    s->transport = transport;
    if (reg_add(s->sid, w->index) < 0 || local_add(s) < 0) {
        reg_remove(s->sid);
        free(s);
        return NULL;
    }
    uv_timer_init(&w->loop, &s->heartbeat);
    uv_timer_init(&w->loop, &s->flush);
    s->heartbeat.data = s->flush.data = s;
    s->handles = 2;
    heartbeat_arm(s, srv->opt.ping_interval_ms);
    return s;
}

void eio_session_set_handler(eio_session_t *s, const eio_handler_t *h, void *app)
{
    s->h = h;
    s->app = app;
}

void *eio_session_app(const eio_session_t *s)
{
    return s->app;
}

const char *eio_session_sid(const eio_session_t *s)
{
    return s->sid;
}

int eio_session_open(const eio_session_t *s)
{
    return !s->closed;
}

worker_t *eio_session_worker(const eio_session_t *s)
{
    return s->w;
}

void eio_worker_shutdown(void)
{
    /* closing removes the session from the list */
    /* the close packet tells the client to reconnect (socket.io: "transport close"),
     * and a WebSocket transport closes with 1001 going away */
    while (local_n)
        session_close_code(local_sessions[local_n - 1], "server shutting down", 1, 1001);
}

/* ---- packets from the client ---- */

static void on_packet(eio_session_t *s, const eio_packet_t *p)
{
    switch (p->type) {
    case EIO_PONG:
        s->awaiting_pong = 0;
        heartbeat_arm(s, s->srv->opt.ping_interval_ms);
        break;
    case EIO_MESSAGE:
        if (s->h) s->h->on_message(s, p->data, p->len, p->binary);
        break;
    case EIO_CLOSE:
        s->client_closed = 1;
        session_close(s, "transport close", 0);
        break;
    default:
        break; /* ping, upgrade and noop from a client mean nothing here */
    }
}

/* ---- sending ---- */

int eio_send(eio_session_t *s, buf_t *b, size_t off, size_t len, int binary)
{
    if (s->closed) return -EPIPE;
    if (s->cut) return -ENOBUFS;
    if (s->transport == EIO_T_WEBSOCKET && s->ws) {
        int r = ws_write_packet(s->ws, EIO_MESSAGE, binary, b, off, len);
        if (r == -ENOBUFS) {
            ws_conn_abort(s->ws, 1008, "slow consumer");
            session_cut(s);
        }
        return r;
    }
    if (s->srv->opt.max_output_bytes && s->queued + len > s->srv->opt.max_output_bytes) {
        session_cut(s);
        return -ENOBUFS;
    }
    if (queue_item(s, EIO_MESSAGE, binary, b, off, len) < 0) return -ENOMEM;
    schedule_flush(s);
    return 0;
}

int eio_send_text(eio_session_t *s, const char *data, size_t len)
{
    buf_t *b = buf_new(len);
    if (!b) return -ENOMEM;
    buf_append(&b, data, len);
    int r = eio_send(s, b, 0, len, 0);
    buf_unref(b);
    return r;
}

/* ---- WebSocket transport ---- */

static void ws_on_message(ws_conn_t *wc, uint8_t opcode, const uint8_t *msg, size_t len)
{
    eio_session_t *s = wc->app;
    if (!s) return;
    eio_packet_t p;
    if (opcode == WSLAY_BINARY_FRAME) {
        p = (eio_packet_t){EIO_MESSAGE, 1, (const char *)msg, len};
    } else if (eio_decode_text((const char *)msg, len, &p) < 0) {
        session_close(s, "parse error", 0);
        return;
    }
    on_packet(s, &p);
}

static void ws_on_close(ws_conn_t *wc)
{
    eio_session_t *s = wc->app;
    if (!s || s->ws != wc) return;
    s->ws = NULL;
    session_close(s, "transport close", 0);
}

static const ws_handler_t ws_transport_handler = {ws_on_message, ws_on_close};

static void probe_on_message(ws_conn_t *wc, uint8_t opcode, const uint8_t *msg, size_t len)
{
    eio_session_t *s = wc->app;
    if (!s) return;
    eio_packet_t p;
    if (opcode != WSLAY_TEXT_FRAME || eio_decode_text((const char *)msg, len, &p) < 0) {
        ws_conn_close(wc, 1002, "");
        return;
    }
    if (p.type == EIO_PING && p.len == 5 && memcmp(p.data, "probe", 5) == 0) {
        ws_write_text(wc, EIO_PONG, "probe", 5);
        s->probed = 1;
        /* the poll in flight ends now, so the client can finish the upgrade */
        if (s->poll) {
            queue_item(s, EIO_NOOP, 0, NULL, 0, 0);
            poll_respond(s);
        }
        return;
    }
    if (p.type == EIO_UPGRADE) {
        s->probe = NULL;
        s->ws = wc;
        s->transport = EIO_T_WEBSOCKET;
        wc->h = &ws_transport_handler;
        if (s->poll) {
            queue_item(s, EIO_NOOP, 0, NULL, 0, 0);
            poll_respond(s);
        }
        /* what waited for the next poll goes over the WebSocket, in order */
        for (eio_item_t *it = s->head; it; it = it->next)
            ws_write_packet(wc, it->type, it->binary, it->b, it->off, it->len);
        items_free(s);
        return;
    }
    on_packet(s, &p);
}

static void probe_on_close(ws_conn_t *wc)
{
    eio_session_t *s = wc->app;
    if (s && s->probe == wc) {
        s->probe = NULL; /* the upgrade failed; polling goes on */
        s->probed = 0;
    }
}

static const ws_handler_t probe_handler = {probe_on_message, probe_on_close};

/* ---- HTTP entry ---- */

static void handshake(http_ctx_t *ctx, const eio_server_t *srv, int transport)
{
    const char *key = NULL, *why;
    if (transport == EIO_T_WEBSOCKET && ws_check_upgrade(ctx->req, &key, &why) < 0) {
        respond_error(ctx, 400, EIO_ERR_BAD_REQUEST);
        return;
    }
    eio_session_t *s = session_new(ctx->w, srv, transport);
    if (!s) {
        http_respond_error(ctx, 500, "out of memory");
        return;
    }
    if (srv->on_session(s, ctx->req, srv->arg) < 0) {
        session_close(s, "forbidden", 0);
        respond_error(ctx, 403, EIO_ERR_FORBIDDEN);
        return;
    }
    buf_t *open = buf_new(160);
    if (!open || buf_puts(&open, transport == EIO_T_WEBSOCKET ? "" : "0") < 0 ||
        eio_open_json(&open, s->sid, transport == EIO_T_POLLING, srv->opt.ping_interval_ms,
                      srv->opt.ping_timeout_ms, srv->opt.max_payload) < 0) {
        buf_unref(open);
        session_close(s, "out of memory", 0);
        http_respond_error(ctx, 500, "out of memory");
        return;
    }
    if (transport == EIO_T_POLLING) {
        http_respond(ctx, 200, "text/plain; charset=UTF-8", open->data, open->len, NULL);
    } else {
        const char *extra;
        size_t extra_len;
        conn_t *c = http_take_conn(ctx, &extra, &extra_len);
        s->ws = ws_upgrade(c, key, &srv->opt.ws, &ws_transport_handler, s, NULL, 0);
        if (!s->ws) {
            session_close(s, "out of memory", 0);
        } else {
            ws_write_text(s->ws, EIO_OPEN, open->data, open->len);
            if (extra_len) c->proto->on_read(c, extra, extra_len);
        }
    }
    buf_unref(open);
}

static void polling(http_ctx_t *ctx, eio_session_t *s)
{
    const char *m = ctx->req->method_name;
    if (s->transport != EIO_T_POLLING) {
        respond_error(ctx, 400, EIO_ERR_BAD_REQUEST);
        return;
    }
    if (strcmp(m, "GET") == 0) {
        if (s->poll) {
            /* two polls at once: the protocol says the session is broken */
            respond_error(ctx, 400, EIO_ERR_BAD_REQUEST);
            session_close(s, "transport error", 0);
            return;
        }
        s->poll = ctx;
        http_defer(ctx);
        ctx->on_abort = on_poll_abort;
        ctx->abort_arg = s;
        if (s->probed && s->probe && !s->head)
            queue_item(s, EIO_NOOP, 0, NULL, 0, 0); /* the client is upgrading: let it */
        if (s->head) poll_respond(s);
        return;
    }
    if (strcmp(m, "POST") != 0) {
        respond_error(ctx, 400, EIO_ERR_BAD_REQUEST);
        return;
    }
    if (ctx->req->body_len > s->srv->opt.max_payload) {
        http_respond(ctx, 413, "text/plain; charset=UTF-8", "", 0, NULL);
        session_close(s, "transport error", 0);
        return;
    }
    const char *cur = ctx->req->body, *end = cur + ctx->req->body_len;
    buf_t *scratch = NULL;
    eio_packet_t p;
    int r = 0;
    /* answer first: a packet may close the session, and the POST still gets its ok */
    http_respond(ctx, 200, "text/html; charset=UTF-8", "ok", 2, NULL);
    while (!s->closed && (r = eio_payload_next(&cur, end, &p, &scratch)) > 0)
        on_packet(s, &p);
    buf_unref(scratch);
    if (r < 0 && !s->closed) session_close(s, "parse error", 0);
}

static void refused_on_message(ws_conn_t *wc, uint8_t opcode, const uint8_t *msg, size_t len)
{
    (void)wc, (void)opcode, (void)msg, (void)len;
}

static const ws_handler_t refused_handler = {refused_on_message, NULL};

static void upgrade(http_ctx_t *ctx, eio_session_t *s)
{
    const char *key, *why;
    if (ws_check_upgrade(ctx->req, &key, &why) < 0) {
        respond_error(ctx, 400, EIO_ERR_BAD_REQUEST);
        return;
    }
    if (s->transport != EIO_T_POLLING || s->probe) {
        /* a second WebSocket for a session: accepted as WebSocket, then closed, the way
         * the reference server answers it (clients expect a WebSocket-level refusal) */
        const char *extra;
        size_t extra_len;
        conn_t *c = http_take_conn(ctx, &extra, &extra_len);
        ws_conn_t *wc = ws_upgrade(c, key, &s->srv->opt.ws, &refused_handler, NULL, NULL, 0);
        if (wc) ws_conn_close(wc, 1008, "session already upgraded");
        return;
    }
    const char *extra;
    size_t extra_len;
    conn_t *c = http_take_conn(ctx, &extra, &extra_len);
    s->probe = ws_upgrade(c, key, &s->srv->opt.ws, &probe_handler, s, NULL, 0);
    if (s->probe && extra_len) c->proto->on_read(c, extra, extra_len);
}

void eio_http(http_ctx_t *ctx, const eio_server_t *srv)
{
    const char *q = ctx->req->query;
    char *eio = NULL, *transport = NULL, *sid = NULL;
    url_query_get(q, "EIO", &eio);
    url_query_get(q, "transport", &transport);
    url_query_get(q, "sid", &sid);
    int t = transport && strcmp(transport, "polling") == 0     ? EIO_T_POLLING
            : transport && strcmp(transport, "websocket") == 0 ? EIO_T_WEBSOCKET
                                                               : -1;
    if (!eio || strcmp(eio, "4") != 0) {
        respond_error(ctx, 400, EIO_ERR_UNSUPPORTED_VERSION);
    } else if (t < 0) {
        respond_error(ctx, 400, EIO_ERR_TRANSPORT_UNKNOWN);
    } else if (!sid) {
        if (strcmp(ctx->req->method_name, "GET") != 0)
            respond_error(ctx, 400, EIO_ERR_BAD_HANDSHAKE_METHOD);
        else
            handshake(ctx, srv, t);
    } else {
        int owner = reg_owner(sid);
        eio_session_t *s = owner == ctx->w->index ? local_find(sid) : NULL;
        if (owner < 0 || (owner == ctx->w->index && !s)) {
            respond_error(ctx, 400, EIO_ERR_SESSION_UNKNOWN);
        } else if (!s) {
            /* another worker owns it: the request goes there with its connection */
            if (http_migrate(ctx, ctx->w->pool->workers[owner]) < 0)
                respond_error(ctx, 400, EIO_ERR_BAD_REQUEST);
        } else if (t == EIO_T_POLLING) {
            polling(ctx, s);
        } else {
            upgrade(ctx, s);
        }
    }
    free(eio);
    free(transport);
    free(sid);
}
