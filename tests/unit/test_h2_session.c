/* http/h2_session: a real nghttp2 client session writes the requests; the server codec
 * is fed them whole, one byte at a time and split at every offset (pieces ending at a
 * guard page), and its frames are fed back to the client to check the answers.
 * Also the header-line splitter, limits, open responses and resets. */
#include <criterion/criterion.h>
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard.h"
#include "http/h2_session.h"

/* ---- h2_header_next ---- */

Test(h2_header_next, lowercases_trims_and_drops_hop_by_hop)
{
    const char *cur = "X-Push-Id: abc \r\nConnection: close\r\nLocation:/a/b\r\n"
                      "Transfer-Encoding: chunked\r\n";
    char name[32];
    const char *v;
    size_t vl;
    cr_assert_eq(h2_header_next(&cur, name, sizeof(name), &v, &vl), 1);
    cr_assert_str_eq(name, "x-push-id");
    cr_assert_eq(vl, 3);
    cr_assert_eq(strncmp(v, "abc", 3), 0);
    cr_assert_eq(h2_header_next(&cur, name, sizeof(name), &v, &vl), 1);
    cr_assert_str_eq(name, "location");
    cr_assert_eq(vl, 4);
    cr_assert_eq(strncmp(v, "/a/b", 4), 0);
    cr_assert_eq(h2_header_next(&cur, name, sizeof(name), &v, &vl), 0);
}

Test(h2_header_next, malformed_lines)
{
    const char *bad[] = {"no colon\r\n", ": empty name\r\n", "X-A: no crlf", NULL};
    for (int i = 0; bad[i]; i++) {
        const char *cur = bad[i];
        char name[32];
        const char *v;
        size_t vl;
        cr_assert_eq(h2_header_next(&cur, name, sizeof(name), &v, &vl), -EINVAL, "%s", bad[i]);
        cr_assert_eq(*cur, '\0');
    }
    const char *cur = "A-Very-Long-Header-Name: v\r\n";
    char small[8];
    const char *v;
    size_t vl;
    cr_assert_eq(h2_header_next(&cur, small, sizeof(small), &v, &vl), -EINVAL);
    cur = NULL;
    cr_assert_eq(h2_header_next(&cur, small, sizeof(small), &v, &vl), 0);
}

/* ---- a client to talk to ---- */

typedef struct client_s {
    nghttp2_session *ng;
    int status[16];
    char body[16][256];
    size_t body_len[16];
    char hdrs[16][512];
    int ended[16];
    uint32_t rst[16];
} client_t;

static int cl_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    (void)ng, (void)flags;
    client_t *c = ud;
    int i = f->hd.stream_id / 2;
    if (nl == 7 && memcmp(name, ":status", 7) == 0) {
        c->status[i] = atoi((const char *)value);
        return 0;
    }
    size_t n = strlen(c->hdrs[i]);
    snprintf(c->hdrs[i] + n, sizeof(c->hdrs[i]) - n, "%.*s=%.*s;", (int)nl, name, (int)vl, value);
    return 0;
}

static int cl_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *d, size_t len,
                   void *ud)
{
    (void)ng, (void)flags;
    client_t *c = ud;
    int i = id / 2;
    cr_assert_leq(c->body_len[i] + len, sizeof(c->body[i]));
    memcpy(c->body[i] + c->body_len[i], d, len);
    c->body_len[i] += len;
    return 0;
}

static int cl_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud)
{
    (void)ng;
    client_t *c = ud;
    c->ended[id / 2] = 1;
    c->rst[id / 2] = code;
    return 0;
}

static void client_init(client_t *c)
{
    memset(c, 0, sizeof(*c));
    nghttp2_session_callbacks *cbs;
    cr_assert_eq(nghttp2_session_callbacks_new(&cbs), 0);
    nghttp2_session_callbacks_set_on_header_callback(cbs, cl_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, cl_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, cl_close);
    cr_assert_eq(nghttp2_session_client_new(&c->ng, cbs, c), 0);
    nghttp2_session_callbacks_del(cbs);
    cr_assert_eq(nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, NULL, 0), 0);
}

typedef struct body_src_s {
    const char *p;
    size_t left;
} body_src_t;

static ssize_t body_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    (void)ng, (void)id, (void)ud;
    body_src_t *b = src->ptr;
    size_t n = b->left < len ? b->left : len;
    memcpy(buf, b->p, n);
    b->p += n;
    b->left -= n;
    if (!b->left) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

#define NV(n, v)                                                                                   \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE                 \
    }

/* Everything the client has to send, appended to out. */
static size_t client_drain(client_t *c, uint8_t *out, size_t cap)
{
    size_t n = 0;
    const uint8_t *p;
    ssize_t r;
    while ((r = nghttp2_session_mem_send(c->ng, &p)) > 0) {
        cr_assert_leq(n + (size_t)r, cap);
        memcpy(out + n, p, (size_t)r);
        n += (size_t)r;
    }
    cr_assert_geq(r, 0);
    return n;
}

/* ---- the server side ---- */

typedef struct wire_s {
    uint8_t data[1 << 16];
    size_t len;
} wire_t;

static int srv_write(void *ud, buf_t *b, size_t off, size_t len)
{
    wire_t *w = ud;
    cr_assert_leq(w->len + len, sizeof(w->data));
    memcpy(w->data + w->len, b->data + off, len);
    w->len += len;
    return 0;
}

static const h2_limits_t LIM = {{1024, 8, 64}, 10};

static body_src_t post_body;

/* The client's bytes: preface, SETTINGS, a GET with a query and a POST with a body. */
static size_t two_requests(uint8_t *out, size_t cap)
{
    client_t c;
    client_init(&c);
    nghttp2_nv get[] = {NV(":method", "GET"), NV(":scheme", "http"), NV(":authority", "h:1"),
                        NV(":path", "/sse?channel=a&x=%20"), NV("last-event-id", "42")};
    nghttp2_nv post[] = {NV(":method", "POST"),   NV(":scheme", "http"),
                         NV(":authority", "h:1"), NV(":path", "/api/push"),
                         NV("host", "explicit"),  NV("content-type", "application/json")};
    post_body = (body_src_t){"{\"a\":1}", 7};
    nghttp2_data_provider prd = {.source.ptr = &post_body, .read_callback = body_read};
    cr_assert_eq(nghttp2_submit_request(c.ng, NULL, get, 5, NULL, NULL), 1);
    cr_assert_eq(nghttp2_submit_request(c.ng, NULL, post, 6, &prd, NULL), 3);
    size_t n = client_drain(&c, out, cap);
    nghttp2_session_del(c.ng);
    return n;
}

static void check_two(h2_session_t *s)
{
    h2_stream_t *a = h2_session_next_request(s), *b = h2_session_next_request(s);
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    cr_assert_null(h2_session_next_request(s));
    const http_request_t *q = h2_stream_request(a);
    cr_assert_eq(h2_stream_id(a), 1);
    cr_assert_str_eq(q->method_name, "GET");
    cr_assert_str_eq(q->target, "/sse?channel=a&x=%20");
    cr_assert_str_eq(q->path, "/sse");
    cr_assert_str_eq(q->query, "channel=a&x=%20");
    cr_assert_eq(q->http_major, 2);
    cr_assert_str_eq(http_request_header(q, "Last-Event-ID"), "42");
    cr_assert_str_eq(http_request_header(q, "host"), "h:1");
    cr_assert_eq(q->body_len, 0);
    cr_assert_str_eq(q->body, "");
    q = h2_stream_request(b);
    cr_assert_str_eq(q->method_name, "POST");
    cr_assert_str_eq(q->path, "/api/push");
    cr_assert_str_eq(q->query, "");
    cr_assert_str_eq(http_request_header(q, "host"), "explicit");
    cr_assert_eq(q->body_len, 7);
    cr_assert_str_eq(q->body, "{\"a\":1}");
}

static void feed_split(const uint8_t *in, size_t n, size_t at, size_t step)
{
    wire_t *w = calloc(1, sizeof(*w));
    h2_session_t *s;
    cr_assert_eq(h2_session_new(&s, &LIM, srv_write, w), 0);
    size_t off = 0;
    while (off < n) {
        size_t len = step ? (step < n - off ? step : n - off) : (off < at ? at - off : n - off);
        guard_t g;
        const uint8_t *p = guard_copy(&g, in + off, len);
        cr_assert_eq(h2_session_feed(s, p, len, 0), 0, "split at %zu step %zu", at, step);
        guard_release(&g);
        off += len;
    }
    check_two(s);
    h2_session_free(s);
    free(w);
}

Test(h2_session, requests_whole_bytewise_and_split)
{
    uint8_t in[4096];
    size_t n = two_requests(in, sizeof(in));
    feed_split(in, n, n, 0);
    feed_split(in, n, 0, 1);
    for (size_t at = 1; at < n; at++)
        feed_split(in, n, at, 0);
}

Test(h2_session, answers_reach_the_client)
{
    uint8_t in[4096];
    size_t n = two_requests(in, sizeof(in));
    wire_t *w = calloc(1, sizeof(*w));
    h2_session_t *s;
    cr_assert_eq(h2_session_new(&s, &LIM, srv_write, w), 0);
    cr_assert_eq(h2_session_feed(s, in, n, 0), 0);
    h2_stream_t *a = h2_session_next_request(s), *b = h2_session_next_request(s);
    /* an open response: slices, a bound, then the end */
    cr_assert_eq(h2_stream_open(a, 200, "text/event-stream", "Cache-Control: no-cache\r\n"), 0);
    buf_t *ev = buf_new(32);
    buf_puts(&ev, "data: 1\n\n");
    cr_assert_eq(h2_stream_write(a, ev, 0, ev->len), 0);
    h2_stream_set_limit(a, 12);
    cr_assert_eq(h2_stream_write(a, ev, 0, ev->len), 0);
    cr_assert_eq(h2_stream_write(a, ev, 0, ev->len), -ENOBUFS);
    h2_stream_end(a);
    cr_assert_eq(h2_stream_write(a, ev, 0, ev->len), -EPIPE);
    buf_t *body = buf_new(16);
    buf_puts(&body, "{\"ok\":1}");
    cr_assert_eq(h2_stream_respond(b, 201, "application/json",
                                   "X-Push-Id: p1\r\nConnection: close\r\n", body),
                 0);
    cr_assert_eq(h2_stream_respond(b, 500, NULL, NULL, NULL), -EPIPE);
    cr_assert_eq(h2_session_flush(s, 1 << 20), 0);
    /* both streams end once their frames are out */
    h2_stream_t *c1 = h2_session_next_closed(s), *c2 = h2_session_next_closed(s);
    cr_assert(c1 && c2);
    cr_assert_null(h2_session_next_closed(s));
    cr_assert_eq(h2_stream_close_code(c1), 0);
    h2_stream_free(c1);
    h2_stream_free(c2);
    cr_assert_eq(h2_session_stream_count(s), 0);

    client_t c;
    client_init(&c);
    nghttp2_nv get[] = {NV(":method", "GET"), NV(":scheme", "http"), NV(":authority", "h"),
                        NV(":path", "/")};
    nghttp2_submit_request(c.ng, NULL, get, 4, NULL, NULL);
    nghttp2_submit_request(c.ng, NULL, get, 4, NULL, NULL);
    uint8_t junk[4096];
    client_drain(&c, junk, sizeof(junk));
    cr_assert_eq(nghttp2_session_mem_recv(c.ng, w->data, w->len), (ssize_t)w->len);
    cr_assert_eq(c.status[0], 200);
    cr_assert_str_eq(c.hdrs[0], "content-type=text/event-stream;cache-control=no-cache;");
    cr_assert_eq(c.body_len[0], 18);
    cr_assert_eq(memcmp(c.body[0], "data: 1\n\ndata: 1\n\n", 18), 0);
    cr_assert(c.ended[0]);
    cr_assert_eq(c.status[1], 201);
    cr_assert_str_eq(c.hdrs[1], "content-type=application/json;content-length=8;x-push-id=p1;");
    cr_assert_eq(c.body_len[1], 8);
    cr_assert(c.ended[1]);
    nghttp2_session_del(c.ng);
    buf_unref(ev);
    h2_session_free(s);
    free(w);
}

/* Sends one request (and a body) and returns the server's answer as the client sees it. */
static void one_request(const nghttp2_nv *nv, size_t n_nv, const char *body, client_t *c)
{
    client_init(c);
    body_src_t src = {body, body ? strlen(body) : 0};
    nghttp2_data_provider prd = {.source.ptr = &src, .read_callback = body_read};
    cr_assert_eq(nghttp2_submit_request(c->ng, NULL, nv, n_nv, body ? &prd : NULL, NULL), 1);
    uint8_t in[8192];
    size_t n = client_drain(c, in, sizeof(in));
    wire_t *w = calloc(1, sizeof(*w));
    h2_session_t *s;
    cr_assert_eq(h2_session_new(&s, &LIM, srv_write, w), 0);
    cr_assert_eq(h2_session_feed(s, in, n, 0), 0);
    cr_assert_null(h2_session_next_request(s), "a refused request is never handed out");
    cr_assert_eq(h2_session_flush(s, 1 << 20), 0);
    cr_assert_eq(nghttp2_session_mem_recv(c->ng, w->data, w->len), (ssize_t)w->len);
    h2_session_free(s);
    free(w);
}

Test(h2_session, limits_answer_like_http1)
{
    client_t c;
    nghttp2_nv many[13] = {NV(":method", "GET"), NV(":scheme", "http"), NV(":authority", "h"),
                           NV(":path", "/")};
    for (int i = 4; i < 13; i++)
        many[i] = (nghttp2_nv)NV("x-h", "v");
    one_request(many, 13, NULL, &c);
    cr_assert_eq(c.status[0], 431, "rst %u ended %d", c.rst[0], c.ended[0]);
    cr_assert_eq(c.body_len[0], strlen("{\"error\":\"too many headers\"}"));
    nghttp2_session_del(c.ng);

    char big[1100];
    memset(big, 'b', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    nghttp2_nv large[] = {NV(":method", "GET"), NV(":scheme", "http"), NV(":authority", "h"),
                          NV(":path", "/"), NV("x-big", big)};
    one_request(large, 5, NULL, &c);
    cr_assert_eq(c.status[0], 431);
    nghttp2_session_del(c.ng);

    nghttp2_nv post[] = {NV(":method", "POST"), NV(":scheme", "http"), NV(":authority", "h"),
                         NV(":path", "/")};
    one_request(post, 4, "0123456789012345678901234567890123456789012345678901234567890123456789",
                &c);
    cr_assert_eq(c.status[0], 413);
    cr_assert_eq(memcmp(c.body[0], "{\"error\":\"request body is too large\"}", c.body_len[0]), 0);
    nghttp2_session_del(c.ng);
}

Test(h2_session, a_reset_before_dispatch_is_reported_closed_not_handed_out)
{
    client_t c;
    client_init(&c);
    nghttp2_nv get[] = {NV(":method", "GET"), NV(":scheme", "http"), NV(":path", "/hold")};
    nghttp2_submit_request(c.ng, NULL, get, 3, NULL, NULL);
    uint8_t in[4096];
    size_t n = client_drain(&c, in, sizeof(in));
    nghttp2_submit_rst_stream(c.ng, NGHTTP2_FLAG_NONE, 1, NGHTTP2_CANCEL);
    n += client_drain(&c, in + n, sizeof(in) - n);
    wire_t *w = calloc(1, sizeof(*w));
    h2_session_t *s;
    cr_assert_eq(h2_session_new(&s, &LIM, srv_write, w), 0);
    cr_assert_eq(h2_session_feed(s, in, n, 0), 0);
    h2_stream_t *st = h2_session_next_closed(s);
    cr_assert_not_null(st);
    cr_assert_eq(h2_stream_close_code(st), NGHTTP2_CANCEL);
    cr_assert_null(h2_session_next_request(s));
    h2_stream_free(st);
    /* GOAWAY with nothing open ends the session */
    cr_assert_eq(h2_session_goaway(s), 0);
    cr_assert_eq(h2_session_flush(s, 1 << 20), 0);
    cr_assert(h2_session_done(s));
    /* a bad preface is a dead connection */
    h2_session_t *s2;
    cr_assert_eq(h2_session_new(&s2, &LIM, srv_write, w), 0);
    cr_assert_eq(
        h2_session_feed(s2, (const uint8_t *)"GET / HTTP/1.1\r\n\r\n\r\n\r\n\r\n\r\n", 28, 0),
        -EPROTO);
    h2_session_free(s2);
    h2_session_free(s);
    nghttp2_session_del(c.ng);
    free(w);
}
