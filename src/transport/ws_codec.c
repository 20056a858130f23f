/* RFC 6455 handshake, frame headers, UTF-8 validation, and a wslay event session fed
 * from memory. wslay does the framing, masking checks, fragmentation and the closing
 * handshake; this file adds UTF-8 checks and the pull/push adapters. */
#include "transport/ws_codec.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/parser.h"
#include "transport/ws_deflate.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

int ws_accept_key(const char *client_key, char out[WS_ACCEPT_KEY_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) &&
             EVP_DigestUpdate(ctx, client_key, strlen(client_key)) &&
             EVP_DigestUpdate(ctx, WS_GUID, sizeof(WS_GUID) - 1) &&
             EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    if (!ok || mdlen != 20) return -EIO;
    EVP_EncodeBlock((unsigned char *)out, md, 20);
    return 0;
}

int ws_check_upgrade(const http_request_t *req, const char **key, const char **why)
{
    const char *up = http_request_header(req, "Upgrade");
    const char *conn = http_request_header(req, "Connection");
    const char *ver = http_request_header(req, "Sec-WebSocket-Version");
    const char *k = http_request_header(req, "Sec-WebSocket-Key");
    *why = NULL;
    if (strcmp(req->method_name, "GET") != 0)
        *why = "a WebSocket handshake must be a GET";
    else if (req->http_major != 1 || req->http_minor < 1)
        *why = "a WebSocket handshake needs HTTP/1.1";
    else if (!up || !http_header_has_token(up, "websocket"))
        *why = "Upgrade: websocket is required";
    else if (!conn || !http_header_has_token(conn, "upgrade"))
        *why = "Connection: Upgrade is required";
    else if (!ver || strcmp(ver, "13") != 0)
        *why = "Sec-WebSocket-Version must be 13";
    else if (!k || strlen(k) != 24 || k[22] != '=' || k[23] != '=')
        *why = "Sec-WebSocket-Key must be 16 bytes in base64";
    if (*why) return -EINVAL;
    *key = k;
    return 0;
}

int ws_check_extensions(const http_request_t *req, unsigned want_client_bits, ws_pmd_t *out)
{
    /* several header lines are one list, in order (RFC 9110 §5.3) */
    int found = 0;
    for (unsigned i = 0; i < req->n_headers; i++) {
        if (strcasecmp(req->headers[i].name, "Sec-WebSocket-Extensions") != 0) continue;
        ws_pmd_t p;
        const char *v = req->headers[i].value;
        int r = ws_pmd_negotiate(v, strlen(v), want_client_bits, &p);
        if (r < 0) return r;
        if (r == 1 && !found) {
            *out = p;
            found = 1;
        }
    }
    return found;
}

size_t ws_frame_header(uint8_t out[10], uint8_t opcode, uint64_t len)
{
    out[0] = (uint8_t)(0x80 | (opcode & 0x0f));
    if (len < 126) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xffff) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}

buf_t *ws_frame_text(const char *payload, size_t len)
{
    uint8_t hdr[10];
    size_t hl = ws_frame_header(hdr, WSLAY_TEXT_FRAME, len);
    buf_t *b = buf_new(hl + len);
    if (!b) return NULL;
    buf_append(&b, hdr, hl);
    buf_append(&b, payload, len);
    return b;
}

int ws_utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) {
            n = 1;
            cp = c & 0x1f;
            min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2;
            cp = c & 0x0f;
            min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3;
            cp = c & 0x07;
            min = 0x10000;
        } else {
            return 0;
        }
        if (n >= len - i) return 0;
        for (size_t j = 1; j <= n; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += n + 1;
    }
    return 1;
}

/* Expected header length once the first two bytes are known. */
static size_t header_len(const uint8_t *h)
{
    size_t n = 2 + ((h[1] & 0x80) ? 4 : 0);
    uint8_t l = h[1] & 0x7f;
    return n + (l == 126 ? 2 : l == 127 ? 8 : 0);
}

/* Checks a complete frame header. Returns 0 or the close code to fail with. */
static uint16_t header_check(const ws_session_t *s, const uint8_t *h, uint64_t *len)
{
    uint8_t op = h[0] & 0x0f, l = h[1] & 0x7f;
    uint64_t n = l;
    if (l == 126)
        n = ((uint64_t)h[2] << 8) | h[3];
    else if (l == 127)
        for (int i = 0; i < 8; i++)
            n = (n << 8) | h[2 + i];
    *len = n;
    uint8_t rsv = h[0] & 0x70;
    /* RSV1 marks a compressed message: only with permessage-deflate, only on the first
     * frame of a data message (RFC 7692 §6); RSV2/RSV3 are never valid */
    if (rsv && (rsv != 0x40 || !s->pmd_on || op == 0 || op >= 8)) return WSLAY_CODE_PROTOCOL_ERROR;
    if (!(h[1] & 0x80)) return WSLAY_CODE_PROTOCOL_ERROR; /* client frames must be masked */
    if (l == 127 && (h[2] & 0x80))
        return WSLAY_CODE_PROTOCOL_ERROR; /* RFC 6455 §5.2: the top bit must be 0 */
    if ((op >= 3 && op <= 7) || op >= 0xb) return WSLAY_CODE_PROTOCOL_ERROR;
    if (op >= 8 && (!(h[0] & 0x80) || n > 125 || (op == WSLAY_CONNECTION_CLOSE && n == 1)))
        return WSLAY_CODE_PROTOCOL_ERROR;
    if (op < 8 && n > s->max_msg) return WSLAY_CODE_MESSAGE_TOO_BIG;
    /* a continuation adds to the message: the sum is bounded, not just each frame */
    if (op == 0 && s->in_msg && n > s->max_msg - s->msg_len) return WSLAY_CODE_MESSAGE_TOO_BIG;
    return 0;
}

/* Walks frame boundaries in d. Sets *code for a bad frame and returns the offset where
 * it starts (negative when its header began in bytes held from earlier chunks);
 * returns -1 with *code 0 when every header is fine. */
static long sniff(ws_session_t *s, const uint8_t *d, size_t n, uint16_t *code)
{
    size_t i = 0;
    long start = -(long)s->hlen; /* a header begun in an earlier chunk starts before d */
    while (i < n) {
        if (s->skip) {
            uint64_t k = s->skip < n - i ? s->skip : n - i;
            s->skip -= k;
            i += (size_t)k;
            continue;
        }
        if (s->hlen == 0) start = (long)i;
        s->hdr[s->hlen++] = d[i++];
        if (s->hlen < 2 || s->hlen < header_len(s->hdr)) continue;
        uint64_t len;
        *code = header_check(s, s->hdr, &len);
        s->hlen = 0;
        if (*code) return start;
        s->skip = len;
        uint8_t op = s->hdr[0] & 0x0f;
        if (op < 8) {
            s->msg_len = op == 0 ? s->msg_len + len : len;
            s->in_msg = !(s->hdr[0] & 0x80);
        }
    }
    return -1;
}

/* The bytes a feed on this thread still has to give wslay: feeding is synchronous, so
 * they live here rather than in every (mostly idle) session; a feed nested in another
 * one's callback saves and restores them. */
typedef struct feed_s {
    const uint8_t *in;
    size_t len;
} feed_t;

static __thread feed_t feed_in;

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    (void)flags, (void)user;
    if (feed_in.len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < feed_in.len ? len : feed_in.len;
    memcpy(buf, feed_in.in, n);
    feed_in.in += n;
    feed_in.len -= n;
    return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    (void)flags;
    ws_session_t *s = user;
    if (s->cbs->write(s, data, len, s->ud) < 0) {
        s->failed = 1;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

/* Fails the connection from inside a wslay callback. */
static void fail_in_cb(wslay_event_context_ptr ctx, uint16_t code, const char *reason)
{
    wslay_event_queue_close(ctx, code, (const uint8_t *)reason, strlen(reason));
    wslay_event_shutdown_read(ctx);
}

static void on_msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                      void *user)
{
    ws_session_t *s = user;
    s->activity++;
    if (arg->opcode != WSLAY_TEXT_FRAME && arg->opcode != WSLAY_BINARY_FRAME)
        return; /* ping, pong and close are wslay's business */
    const uint8_t *msg = arg->msg;
    size_t len = arg->msg_length;
    uint8_t *plain = NULL;
    if (arg->rsv & WSLAY_RSV1_BIT) {
        ws_pmd_hist_t hist = {s->hist, s->hist_len};
        ws_pmd_hist_t *h = s->pmd.client_no_context_takeover ? NULL : &hist;
        unsigned bits = s->pmd.client_max_bits ? s->pmd.client_max_bits : WS_PMD_MAX_BITS;
        int r = ws_pmd_inflate(h, bits, msg, len, s->max_msg, &plain, &len);
        s->hist = hist.data; /* the window is at most 2^15 bytes */
        s->hist_len = (uint16_t)hist.len;
        if (r == -EMSGSIZE)
            fail_in_cb(ctx, WSLAY_CODE_MESSAGE_TOO_BIG, "message too big");
        else if (r == -EBADMSG)
            fail_in_cb(ctx, WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA, "bad deflate data");
        else if (r < 0)
            fail_in_cb(ctx, WSLAY_CODE_INTERNAL_SERVER_ERROR, "out of memory");
        if (r < 0) return;
        msg = plain;
    }
    if (arg->opcode == WSLAY_TEXT_FRAME) {
        if (!ws_utf8_valid(msg, len)) {
            wslay_event_queue_close(ctx, WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA,
                                    (const uint8_t *)"invalid UTF-8", 13);
            wslay_event_shutdown_read(ctx);
            free(plain);
            return;
        }
    }
    if (!wslay_event_get_close_sent(ctx)) s->cbs->on_message(s, arg->opcode, msg, len, s->ud);
    free(plain);
}

static void on_frame_start_cb(wslay_event_context_ptr ctx,
                              const struct wslay_event_on_frame_recv_start_arg *arg, void *user)
{
    (void)ctx;
    (void)arg;
    ((ws_session_t *)user)->activity++;
}

static const struct wslay_event_callbacks wslay_cbs = {
    .recv_callback = recv_cb,
    .send_callback = send_cb,
    .on_frame_recv_start_callback = on_frame_start_cb,
    .on_msg_recv_callback = on_msg_cb,
};

/* wslay's context holds two 4 KiB buffers: it exists only while a frame, a message or
 * a closing handshake is in progress, never on an idle connection */
static int ensure_ctx(ws_session_t *s)
{
    if (s->ctx) return 0;
    if (wslay_event_context_server_init(&s->ctx, &wslay_cbs, s) != 0) {
        s->ctx = NULL;
        return -ENOMEM;
    }
    wslay_event_config_set_max_recv_msg_length(s->ctx, s->max_msg);
    if (s->pmd_on) wslay_event_config_set_allowed_rsv_bits(s->ctx, WSLAY_RSV1_BIT);
    return 0;
}

static void maybe_release_ctx(ws_session_t *s)
{
    if (s->ctx && !s->failed && s->hlen == 0 && s->skip == 0 && !s->in_msg &&
        wslay_event_get_read_enabled(s->ctx) && wslay_event_get_write_enabled(s->ctx) &&
        !wslay_event_want_write(s->ctx) && !wslay_event_get_close_sent(s->ctx) &&
        !wslay_event_get_close_received(s->ctx)) {
        wslay_event_context_free(s->ctx);
        s->ctx = NULL;
    }
}

void ws_session_init(ws_session_t *s, const ws_session_cbs_t *cbs, void *ud, size_t max_msg)
{
    memset(s, 0, sizeof(*s));
    s->max_msg = max_msg;
    s->cbs = cbs;
    s->ud = ud;
}

void ws_session_release(ws_session_t *s)
{
    if (s->ctx) wslay_event_context_free(s->ctx);
    s->ctx = NULL;
    free(s->hist);
    s->hist = NULL;
    s->hist_len = 0;
}

int ws_session_new(ws_session_t **sp, const ws_session_cbs_t *cbs, void *ud, size_t max_msg)
{
    ws_session_t *s = malloc(sizeof(*s));
    if (!s) return -ENOMEM;
    ws_session_init(s, cbs, ud, max_msg);
    *sp = s;
    return 0;
}

void ws_session_free(ws_session_t *s)
{
    if (!s) return;
    ws_session_release(s);
    free(s);
}

void ws_session_set_deflate(ws_session_t *s, const ws_pmd_t *pmd)
{
    s->pmd_on = 1;
    s->pmd = *pmd;
    if (s->ctx) wslay_event_config_set_allowed_rsv_bits(s->ctx, WSLAY_RSV1_BIT);
}

unsigned ws_session_deflate_bits(const ws_session_t *s)
{
    if (!s->pmd_on) return 0;
    return s->pmd.server_max_bits ? s->pmd.server_max_bits : WS_PMD_MAX_BITS;
}

static int pump_out(ws_session_t *s)
{
    if (s->ctx && wslay_event_want_write(s->ctx) && wslay_event_send(s->ctx) != 0) s->failed = 1;
    return s->failed ? -EPROTO : 0;
}

int ws_session_feed(ws_session_t *s, const uint8_t *data, size_t len)
{
    if (s->failed) return -EPROTO;
    if (ensure_ctx(s) < 0) {
        s->failed = 1;
        return -ENOMEM;
    }
    /* wslay sees a frame header only once the sniffer has checked it whole: bytes of
     * a header still incomplete are held back (they sit in s->hdr) until it is */
    uint16_t code = 0;
    size_t held = s->hlen;
    uint8_t prev[sizeof(s->hdr)];
    memcpy(prev, s->hdr, held);
    int reading = wslay_event_get_read_enabled(s->ctx);
    long bad = reading ? sniff(s, data, len, &code) : -1;
    /* a bad frame may start in the held bytes: then bad is negative, and code says so */
    size_t feed = !reading ? len : code ? (size_t)(bad + (long)held) : held + len - s->hlen;
    const uint8_t *src = data;
    uint8_t *joined = NULL;
    if (reading && held) {
        if (feed && !(joined = malloc(feed))) {
            s->failed = 1;
            return -ENOMEM;
        }
        if (feed) {
            size_t a = feed < held ? feed : held;
            memcpy(joined, prev, a);
            if (feed > held) memcpy(joined + held, data, feed - held);
        }
        src = joined;
    }
    feed_t outer = feed_in;
    feed_in = (feed_t){src, feed};
    int fail = 0;
    while (feed_in.len > 0 && wslay_event_want_read(s->ctx)) {
        int r = wslay_event_recv(s->ctx);
        if (r == WSLAY_ERR_NOMEM) {
            s->failed = 1;
            fail = -ENOMEM;
            break;
        }
        if (r != 0) {
            /* a protocol violation: answer it with 1002 (unless wslay already closed)
             * and read no further; the peer still gets the close frame */
            if (!wslay_event_get_close_sent(s->ctx))
                wslay_event_queue_close(s->ctx, WSLAY_CODE_PROTOCOL_ERROR, NULL, 0);
            wslay_event_shutdown_read(s->ctx);
        }
        if (pump_out(s) < 0) {
            fail = -EPROTO;
            break;
        }
    }
    feed_in = outer;
    free(joined);
    if (fail) return fail;
    if (code && wslay_event_get_read_enabled(s->ctx)) {
        if (!wslay_event_get_close_sent(s->ctx)) {
            wslay_event_queue_close(s->ctx, code, NULL, 0);
            s->refusal = code;
        }
        wslay_event_shutdown_read(s->ctx);
    }
    int r = pump_out(s);
    maybe_release_ctx(s);
    return r;
}

int ws_session_flush(ws_session_t *s)
{
    return pump_out(s) < 0 ? -EPIPE : 0;
}

int ws_session_send(ws_session_t *s, uint8_t opcode, const uint8_t *data, size_t len)
{
    if (!ws_session_can_send(s)) return -EPIPE;
    /* written directly, not through wslay (no context is needed); but inside a wslay
     * callback wslay may hold a queued pong or close: it goes first, in order */
    if (ws_session_flush(s) < 0) return -EPIPE;
    buf_t *z = NULL;
    int compressed = 0;
    if (s->pmd_on && opcode < 8 && len > 0) {
        /* every message is its own deflate stream (server_no_context_takeover); one
         * that does not shrink goes out plain, RSV1 clear */
        if (!(z = ws_pmd_deflate(data, len, ws_session_deflate_bits(s)))) return -ENOMEM;
        if (z->len < len) {
            data = (const uint8_t *)z->data;
            len = z->len;
            compressed = 1;
        }
    }
    uint8_t hdr[10];
    size_t hl = ws_frame_header(hdr, opcode, len);
    if (compressed) hdr[0] |= 0x40;
    int r = 0;
    if (s->cbs->write(s, hdr, hl, s->ud) < 0 || (len && s->cbs->write(s, data, len, s->ud) < 0)) {
        s->failed = 1;
        r = -EPIPE;
    }
    buf_unref(z);
    return r;
}

int ws_session_close(ws_session_t *s, uint16_t code, const char *reason)
{
    if (s->failed || ensure_ctx(s) < 0 || wslay_event_get_close_sent(s->ctx)) return -EPIPE;
    size_t rl = reason ? strlen(reason) : 0;
    if (rl > 123) rl = 123;
    if (wslay_event_queue_close(s->ctx, code, (const uint8_t *)reason, rl) != 0) return -EPIPE;
    return pump_out(s);
}

int ws_session_can_send(const ws_session_t *s)
{
    return !s->failed && (!s->ctx || (!wslay_event_get_close_sent(s->ctx) &&
                                      wslay_event_get_write_enabled(s->ctx)));
}

int ws_session_done(const ws_session_t *s)
{
    return s->failed ||
           (s->ctx && !wslay_event_want_read(s->ctx) && !wslay_event_want_write(s->ctx));
}

uint16_t ws_session_take_refusal(ws_session_t *s)
{
    uint16_t c = s->refusal;
    s->refusal = 0;
    return c;
}

unsigned ws_session_take_activity(ws_session_t *s)
{
    unsigned a = s->activity;
    s->activity = 0;
    return a;
}
