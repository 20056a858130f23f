/* libFuzzer target for the HTTP/2 server session (http/h2_session.c over nghttp2):
 * input byte 0 is the feed chunk size, byte 1 the flush budget, the rest is what a
 * client sends (preface first). Finished requests are routed through a small table
 * the way the server's glue does: plain answers (HEAD included), open responses that
 * get slices written and are ended or reset, answers held past the feed, and every
 * closed stream is freed. Frames written are checked for a well-formed 9-byte header
 * chain; the request each stream yields must have the shape the handlers rely on. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/h2_session.h"

static volatile size_t sink;

typedef struct out_s {
    size_t bytes;
    uint8_t hdr[9];
    size_t hdr_have;
    size_t payload_left;
} out_t;

/* Walks the written bytes as a chain of frames: 9-byte header, then its payload. */
static int on_write(void *ud, buf_t *b, size_t off, size_t len)
{
    out_t *o = ud;
    if (off + len > b->len) __builtin_trap();
    const uint8_t *p = (const uint8_t *)b->data + off;
    o->bytes += len;
    while (len > 0) {
        if (o->payload_left) {
            size_t n = len < o->payload_left ? len : o->payload_left;
            sink += p[0];
            p += n;
            len -= n;
            o->payload_left -= n;
            continue;
        }
        o->hdr[o->hdr_have++] = *p++;
        len--;
        if (o->hdr_have < 9) continue;
        o->hdr_have = 0;
        o->payload_left = (size_t)o->hdr[0] << 16 | (size_t)o->hdr[1] << 8 | o->hdr[2];
        /* known frame types, no PUSH_PROMISE (0x5: never sent), none over the default size */
        if (o->hdr[3] > 0x9 || o->hdr[3] == 0x5 || o->payload_left > 16384) __builtin_trap();
    }
    return 0;
}

static void check_request(const http_request_t *q)
{
    if (!q->method_name || !q->target || !q->path || !q->query || !q->body) __builtin_trap();
    if (q->body[q->body_len] != '\0') __builtin_trap();
    size_t pl = strlen(q->path);
    if (strncmp(q->target, q->path, pl) != 0) __builtin_trap();
    if (q->target[pl] != '\0' && q->target[pl] != '?') __builtin_trap();
    for (unsigned i = 0; i < q->n_headers; i++) {
        if (!q->headers[i].name || !q->headers[i].value) __builtin_trap();
        sink += strlen(q->headers[i].name) + strlen(q->headers[i].value);
    }
    sink += (size_t)(http_request_header(q, "host") != NULL);
}

/* The stub route table: /sse opens a response, /hold answers after the feed, /reset
 * resets, anything else gets a JSON echo of its path. Returns 1 when held. */
static int route(h2_stream_t *st, buf_t *shared)
{
    const http_request_t *q = h2_stream_request(st);
    check_request(q);
    if (strcmp(q->path, "/sse") == 0) {
        if (h2_stream_open(st, 200, "text/event-stream", "Cache-Control: no-cache\r\n") == 0) {
            h2_stream_write(st, shared, 0, shared->len);
            h2_stream_set_limit(st, 64);
            sink += (size_t)(h2_stream_write(st, shared, 1, shared->len - 1) == -ENOBUFS);
            if (q->body_len & 1) h2_stream_end(st);
        }
        return 0;
    }
    if (strcmp(q->path, "/hold") == 0) return 1;
    if (strcmp(q->path, "/reset") == 0) {
        h2_stream_reset(st, 8);
        return 0;
    }
    buf_t *b = buf_new(32 + strlen(q->path));
    if (b && (buf_puts(&b, "{\"path\":") < 0 || buf_put_json_string(&b, q->path) < 0 ||
              buf_puts(&b, "}") < 0)) {
        buf_unref(b);
        b = NULL;
    }
    h2_stream_respond(st, q->body_len ? 201 : 200, "application/json",
                      "X-Push-Id: 1\r\nConnection: close\r\nBad line\r\n", b);
    return 0;
}

static void pump(h2_session_t *s, size_t budget, h2_stream_t **held, size_t *n_held)
{
    h2_session_flush(s, budget);
    h2_stream_t *st;
    while ((st = h2_session_next_closed(s))) {
        for (size_t i = 0; i < *n_held; i++)
            if (held[i] == st) held[i] = held[--*n_held];
        h2_stream_free(st);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    size_t step = data[0] ? data[0] : size;
    size_t budget = data[1] ? (size_t)data[1] * 64 : (size_t)1 << 20;
    data += 2;
    size -= 2;
    h2_limits_t lim = {{4096, 16, 4096}, 8};
    out_t out = {0};
    h2_session_t *s;
    if (h2_session_new(&s, &lim, on_write, &out) < 0) return 0;
    buf_t *shared = buf_new(48);
    if (!shared || buf_puts(&shared, "id: 1\ndata: {\"x\":1}\n\n") < 0) __builtin_trap();
    h2_stream_t *held[64];
    size_t n_held = 0;
    uint64_t now = 0;
    for (size_t off = 0; off < size;) {
        size_t n = step < size - off ? step : size - off;
        uint8_t *piece = malloc(n);
        if (!piece) __builtin_trap();
        memcpy(piece, data + off, n);
        int r = h2_session_feed(s, piece, n, now++);
        free(piece);
        off += n;
        h2_stream_t *st;
        while ((st = h2_session_next_request(s)))
            if (route(st, shared) && n_held < 64) held[n_held++] = st;
        pump(s, budget, held, &n_held);
        if (r < 0) break;
    }
    /* late answers, as a long poll's would come */
    for (size_t i = 0; i < n_held; i++)
        h2_stream_respond(held[i], 200, NULL, NULL, NULL);
    n_held = 0;
    sink += h2_session_expire(s, now);
    pump(s, budget, held, &n_held);
    h2_session_goaway(s);
    pump(s, (size_t)1 << 20, held, &n_held);
    sink += (size_t)h2_session_done(s) + h2_session_stream_count(s) + out.bytes;
    buf_unref(shared);
    h2_session_free(s);
    return 0;
}
