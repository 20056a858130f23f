/* HTTP/2 server session over nghttp2: request building within the HTTP/1.1 limits,
 * responses whose bodies are slices of refcounted buffers (DATA frames are written
 * without copying the payload), and queues of finished requests and closed streams. */
#include "http/h2_session.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define H2_NO_OFF ((size_t)-1)
#define H2_MAX_EXTRA_HEADERS 24
#define H2_SCRATCH_BYTES 4096

enum h2_stream_state {
    H2S_RECV,   /* the request is arriving */
    H2S_READY,  /* complete, queued for h2_session_next_request */
    H2S_ACTIVE, /* handed to the caller */
};

typedef struct h2_slice_s {
    buf_t *b;
    size_t off;
    size_t len;
} h2_slice_t;

struct h2_stream_s {
    h2_session_t *s;
    h2_stream_t *prev, *next; /* the session's streams */
    h2_stream_t *qnext;       /* ready or closed queue */
    int32_t id;
    int state;
    int in_ready, closed, answered, opened, eof, deferred, req_done, reset;
    int error_status;
    const char *error_msg;
    uint32_t close_code;
    uint64_t opened_at;
    void *ud;
    /* the request */
    buf_t *arena; /* NUL-terminated names and values */
    size_t *hdr_off;
    unsigned n_hdr, hdr_cap;
    size_t head_bytes;
    size_t method_off, path_off, authority_off;
    buf_t *body;
    http_request_t req;
    /* the response body not yet framed */
    h2_slice_t *q;
    uint32_t qhead, qcount, qcap;
    size_t qbytes;
    size_t limit;     /* most qbytes accepted; 0: unbounded */
    size_t limit_max; /* the bound once what was queued at h2_stream_set_limit is sent */
};

struct h2_session_s {
    nghttp2_session *ng;
    h2_limits_t lim;
    h2_write_fn write;
    void *ud;
    h2_stream_t *streams;
    size_t n_streams;
    h2_stream_t *ready_head, *ready_tail;
    h2_stream_t *closed_head, *closed_tail;
    uint64_t now;
    buf_t *scratch; /* frame bytes of one flush, sliced into the writer */
    size_t budget, sent;
    int write_err;
};

static const char *const hop_headers[] = {"connection",        "keep-alive", "proxy-connection",
                                          "transfer-encoding", "upgrade",    NULL};

int h2_header_next(const char **cur, char *name, size_t name_cap, const char **value,
                   size_t *value_len)
{
    for (;;) {
        const char *p = *cur;
        if (!p || !*p) return 0;
        const char *eol = strstr(p, "\r\n");
        const char *colon = strchr(p, ':');
        if (!eol || !colon || colon > eol || colon == p || (size_t)(colon - p) >= name_cap) {
            *cur = p + strlen(p);
            return -EINVAL;
        }
        size_t nl = (size_t)(colon - p);
        for (size_t i = 0; i < nl; i++) {
            char ch = p[i];
            name[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
        }
        name[nl] = '\0';
        const char *v = colon + 1, *e = eol;
        while (v < e && (*v == ' ' || *v == '\t'))
            v++;
        while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        *cur = eol + 2;
        int hop = 0;
        for (int i = 0; hop_headers[i]; i++)
            hop |= strcmp(name, hop_headers[i]) == 0;
        if (hop) continue;
        *value = v;
        *value_len = (size_t)(e - v);
        return 1;
    }
}

/* ---- streams ---- */

static void queue_release(h2_stream_t *st)
{
    for (uint32_t i = 0; i < st->qcount; i++)
        buf_unref(st->q[(st->qhead + i) % st->qcap].b);
    free(st->q);
    st->q = NULL;
    st->qhead = st->qcount = st->qcap = 0;
    st->qbytes = 0;
}

static int queue_push(h2_stream_t *st, buf_t *b, size_t off, size_t len)
{
    if (st->qcount == st->qcap) {
        uint32_t cap = st->qcap ? st->qcap * 2 : 4;
        h2_slice_t *q = malloc(sizeof(*q) * cap);
        if (!q) return -ENOMEM;
        for (uint32_t i = 0; i < st->qcount; i++)
            q[i] = st->q[(st->qhead + i) % st->qcap];
        free(st->q);
        st->q = q;
        st->qcap = cap;
        st->qhead = 0;
    }
    st->q[(st->qhead + st->qcount) % st->qcap] = (h2_slice_t){buf_ref(b), off, len};
    st->qcount++;
    st->qbytes += len;
    return 0;
}

void *h2_stream_get_ud(const h2_stream_t *st)
{
    return st->ud;
}

void h2_stream_set_ud(h2_stream_t *st, void *ud)
{
    st->ud = ud;
}

const http_request_t *h2_stream_request(const h2_stream_t *st)
{
    return &st->req;
}

int32_t h2_stream_id(const h2_stream_t *st)
{
    return st->id;
}

int h2_stream_closed(const h2_stream_t *st)
{
    return st->closed;
}

uint32_t h2_stream_close_code(const h2_stream_t *st)
{
    return st->close_code;
}

void h2_stream_free(h2_stream_t *st)
{
    if (!st) return;
    h2_session_t *s = st->s;
    if (st->prev)
        st->prev->next = st->next;
    else
        s->streams = st->next;
    if (st->next) st->next->prev = st->prev;
    s->n_streams--;
    queue_release(st);
    buf_unref(st->arena);
    buf_unref(st->body);
    free(st->hdr_off);
    free(st->req.headers);
    free(st);
}

static ssize_t read_cb(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                       uint32_t *flags, nghttp2_data_source *source, void *ud)
{
    (void)ng, (void)id, (void)buf, (void)ud;
    h2_stream_t *st = source->ptr;
    if (st->qbytes == 0) {
        if (st->eof) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            return 0;
        }
        st->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = st->qbytes < length ? st->qbytes : length;
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (n == st->qbytes && st->eof) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int submit(h2_stream_t *st, int status, const char *content_type, const char *extra_headers,
                  long long content_length, int with_body)
{
    h2_session_t *s = st->s;
    if (st->answered || st->closed || st->reset) return -EPIPE;
    char status_s[8], clen_s[24];
    char names[H2_MAX_EXTRA_HEADERS][64];
    nghttp2_nv nv[3 + H2_MAX_EXTRA_HEADERS];
    size_t n = 0;
    snprintf(status_s, sizeof(status_s), "%d", status);
#define NV(nm, nl, vl, vlen)                                                                       \
    nv[n++] = (nghttp2_nv){(uint8_t *)(nm), (uint8_t *)(vl), (nl), (vlen), NGHTTP2_NV_FLAG_NONE}
    NV(":status", 7, status_s, strlen(status_s));
    if (content_type && status != 204) NV("content-type", 12, content_type, strlen(content_type));
    if (content_length >= 0 && status != 204 && status != 304) {
        snprintf(clen_s, sizeof(clen_s), "%lld", content_length);
        NV("content-length", 14, clen_s, strlen(clen_s));
    }
    const char *cur = extra_headers, *v;
    size_t vl;
    unsigned k = 0;
    while (k < H2_MAX_EXTRA_HEADERS &&
           h2_header_next(&cur, names[k], sizeof(names[k]), &v, &vl) > 0) {
        NV(names[k], strlen(names[k]), v, vl);
        k++;
    }
#undef NV
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = read_cb};
    int r = nghttp2_submit_response(s->ng, st->id, nv, n, with_body ? &prd : NULL);
    if (r < 0) return r == NGHTTP2_ERR_NOMEM ? -ENOMEM : -EPIPE;
    st->answered = 1;
    return 0;
}

int h2_stream_respond(h2_stream_t *st, int status, const char *content_type,
                      const char *extra_headers, buf_t *body)
{
    int head = st->req.method_name && strcmp(st->req.method_name, "HEAD") == 0;
    size_t len = body ? body->len : 0;
    int with_body = !head && len && status != 204 && status != 304;
    int r = submit(st, status, content_type, extra_headers, (long long)len, with_body);
    if (r == 0 && with_body) {
        /* one slice: the caller's buffer is framed without a copy */
        r = queue_push(st, body, 0, len);
        st->eof = 1;
        if (r < 0) h2_stream_reset(st, NGHTTP2_INTERNAL_ERROR);
    }
    buf_unref(body);
    return r;
}

int h2_stream_open(h2_stream_t *st, int status, const char *content_type, const char *extra_headers)
{
    int r = submit(st, status, content_type, extra_headers, -1, 1);
    if (r == 0) st->opened = 1;
    return r;
}

int h2_stream_write(h2_stream_t *st, buf_t *b, size_t off, size_t len)
{
    if (st->closed || st->reset || !st->opened || st->eof) return -EPIPE;
    if (len == 0) return 0;
    if (st->limit && st->qbytes + len > st->limit) return -ENOBUFS;
    int r = queue_push(st, b, off, len);
    if (r < 0) return r;
    if (st->deferred) {
        st->deferred = 0;
        nghttp2_session_resume_data(st->s->ng, st->id);
    }
    return 0;
}

void h2_stream_set_limit(h2_stream_t *st, size_t max)
{
    st->limit = max ? st->qbytes + max : 0;
    st->limit_max = max;
}

void h2_stream_end(h2_stream_t *st)
{
    if (st->closed || st->reset || !st->opened || st->eof) return;
    st->eof = 1;
    if (st->deferred) {
        st->deferred = 0;
        nghttp2_session_resume_data(st->s->ng, st->id);
    }
}

void h2_stream_reset(h2_stream_t *st, uint32_t code)
{
    if (st->closed || st->reset) return;
    st->reset = 1;
    nghttp2_submit_rst_stream(st->s->ng, NGHTTP2_FLAG_NONE, st->id, code);
}

/* ---- request building ---- */

static void stream_fail(h2_stream_t *st, int status, const char *msg)
{
    if (!st->error_status) {
        st->error_status = status;
        st->error_msg = msg;
    }
}

/* Answers a request refused by a limit, in the HTTP/1.1 server's words. */
static void answer_error(h2_stream_t *st)
{
    if (st->answered) return;
    buf_t *b = buf_new(64 + strlen(st->error_msg));
    if (b && (buf_puts(&b, "{\"error\":") < 0 || buf_put_json_string(&b, st->error_msg) < 0 ||
              buf_puts(&b, "}") < 0)) {
        buf_unref(b);
        b = NULL;
    }
    if (!b || h2_stream_respond(st, st->error_status, "application/json", NULL, b) < 0)
        h2_stream_reset(st, NGHTTP2_INTERNAL_ERROR);
}

static int arena_add(h2_stream_t *st, const uint8_t *p, size_t n, size_t *off)
{
    if (!st->arena && !(st->arena = buf_new(256))) return -ENOMEM;
    *off = st->arena->len;
    if (buf_append(&st->arena, p, n) < 0 || buf_append(&st->arena, "", 1) < 0) return -ENOMEM;
    return 0;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
    h2_session_t *s = ud;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    h2_stream_t *st = calloc(1, sizeof(*st));
    if (!st) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    st->s = s;
    st->id = frame->hd.stream_id;
    st->state = H2S_RECV;
    st->method_off = st->path_off = st->authority_off = H2_NO_OFF;
    st->opened_at = s->now;
    st->next = s->streams;
    if (s->streams) s->streams->prev = st;
    s->streams = st;
    s->n_streams++;
    nghttp2_session_set_stream_user_data(ng, st->id, st);
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    (void)flags;
    h2_session_t *s = ud;
    h2_stream_t *st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    if (!st || st->state != H2S_RECV || frame->hd.type != NGHTTP2_HEADERS ||
        frame->headers.cat != NGHTTP2_HCAT_REQUEST || st->error_status)
        return 0; /* trailers, or a request already refused */
    st->head_bytes += namelen + valuelen + 4;
    if (st->head_bytes > s->lim.req.max_header_bytes) {
        stream_fail(st, 431, "request line and headers are too large");
        return 0;
    }
    size_t off;
    if (namelen && name[0] == ':') {
        size_t *slot = namelen == 7 && memcmp(name, ":method", 7) == 0        ? &st->method_off
                       : namelen == 5 && memcmp(name, ":path", 5) == 0        ? &st->path_off
                       : namelen == 10 && memcmp(name, ":authority", 10) == 0 ? &st->authority_off
                                                                              : NULL;
        if (slot && *slot == H2_NO_OFF) {
            if (arena_add(st, value, valuelen, &off) < 0)
                stream_fail(st, 500, "out of memory");
            else
                *slot = off;
        }
        return 0;
    }
    if (st->n_hdr >= s->lim.req.max_headers) {
        stream_fail(st, 431, "too many headers");
        return 0;
    }
    if (st->n_hdr == st->hdr_cap) {
        unsigned cap = st->hdr_cap ? st->hdr_cap * 2 : 8;
        size_t *o = realloc(st->hdr_off, sizeof(*o) * 2 * cap);
        if (!o) {
            stream_fail(st, 500, "out of memory");
            return 0;
        }
        st->hdr_off = o;
        st->hdr_cap = cap;
    }
    size_t voff;
    if (arena_add(st, name, namelen, &off) < 0 || arena_add(st, value, valuelen, &voff) < 0) {
        stream_fail(st, 500, "out of memory");
        return 0;
    }
    st->hdr_off[2 * st->n_hdr] = off;
    st->hdr_off[2 * st->n_hdr + 1] = voff;
    st->n_hdr++;
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    (void)flags;
    h2_session_t *s = ud;
    h2_stream_t *st = nghttp2_session_get_stream_user_data(ng, id);
    if (!st || st->state != H2S_RECV || st->error_status) return 0;
    size_t have = st->body ? st->body->len : 0;
    if (len > s->lim.req.max_body_bytes - have || have + len > s->lim.req.max_body_bytes) {
        stream_fail(st, 413, "request body is too large");
        buf_unref(st->body);
        st->body = NULL;
        return 0;
    }
    if (!st->body && !(st->body = buf_new(len + 1))) {
        stream_fail(st, 500, "out of memory");
        return 0;
    }
    if (buf_append(&st->body, data, len) < 0) stream_fail(st, 500, "out of memory");
    return 0;
}

static const struct {
    const char *name;
    int method;
} methods[] = {
    {"GET", HTTP_GET},         {"HEAD", HTTP_HEAD},       {"POST", HTTP_POST},
    {"PUT", HTTP_PUT},         {"DELETE", HTTP_DELETE},   {"PATCH", HTTP_PATCH},
    {"OPTIONS", HTTP_OPTIONS}, {"CONNECT", HTTP_CONNECT}, {"TRACE", HTTP_TRACE},
};

/* Turns the collected pieces into st->req. Returns 0, or -ENOMEM / -EINVAL with the
 * stream's error set. */
static int build_request(h2_stream_t *st)
{
    if (st->method_off == H2_NO_OFF || st->path_off == H2_NO_OFF) {
        stream_fail(st, 400, "a request needs :method and :path");
        return -EINVAL;
    }
    size_t plen = strcspn(st->arena->data + st->path_off, "?");
    size_t path_copy;
    /* a copy first: appending to the arena may move what it points into */
    char *path = strndup(st->arena->data + st->path_off, plen);
    int r = path ? arena_add(st, (const uint8_t *)path, plen, &path_copy) : -ENOMEM;
    free(path);
    if (r < 0) goto fail_nomem;
    int has_host = 0;
    for (unsigned i = 0; i < st->n_hdr; i++)
        has_host |= strcmp(st->arena->data + st->hdr_off[2 * i], "host") == 0;
    int add_host = !has_host && st->authority_off != H2_NO_OFF;
    size_t host_name = 0;
    if (add_host && arena_add(st, (const uint8_t *)"host", 4, &host_name) < 0) goto fail_nomem;
    http_request_t *q = &st->req;
    q->headers = malloc(sizeof(*q->headers) * (st->n_hdr + 1));
    if (!q->headers) goto fail_nomem;
    const char *a = st->arena->data;
    for (unsigned i = 0; i < st->n_hdr; i++)
        q->headers[i] = (http_header_t){a + st->hdr_off[2 * i], a + st->hdr_off[2 * i + 1]};
    q->n_headers = st->n_hdr;
    if (add_host)
        q->headers[q->n_headers++] = (http_header_t){a + host_name, a + st->authority_off};
    q->method_name = a + st->method_off;
    q->method = -1;
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (strcmp(methods[i].name, q->method_name) == 0) q->method = methods[i].method;
    q->target = a + st->path_off;
    q->path = a + path_copy;
    q->query = q->target[plen] == '?' ? q->target + plen + 1 : "";
    if (st->body) {
        if (buf_append(&st->body, "", 1) < 0) goto fail_nomem;
        st->body->len--;
        q->body = st->body->data;
        q->body_len = st->body->len;
    } else {
        q->body = "";
        q->body_len = 0;
    }
    q->keep_alive = 1;
    q->upgrade = 0;
    q->http_major = 2;
    q->http_minor = 0;
    return 0;
fail_nomem:
    stream_fail(st, 500, "out of memory");
    return -ENOMEM;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
    h2_session_t *s = ud;
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
    h2_stream_t *st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    if (!st || st->state != H2S_RECV) return 0;
    if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        if (st->error_status) answer_error(st); /* at once: the rest of the request is not wanted */
        return 0;
    }
    st->req_done = 1;
    if (!st->error_status) build_request(st);
    if (st->error_status) {
        answer_error(st);
        return 0;
    }
    st->state = H2S_READY;
    st->in_ready = 1;
    if (s->ready_tail)
        s->ready_tail->qnext = st;
    else
        s->ready_head = st;
    s->ready_tail = st;
    return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *ud)
{
    (void)ud;
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    h2_stream_t *st = nghttp2_session_get_stream_user_data(ng, frame->hd.stream_id);
    /* answered before the request ended (a refusal): the rest of it is not read */
    if (st && !st->req_done && !st->reset) {
        st->reset = 1;
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud)
{
    h2_session_t *s = ud;
    h2_stream_t *st = nghttp2_session_get_stream_user_data(ng, id);
    if (!st) return 0;
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    st->closed = 1;
    st->close_code = code;
    queue_release(st);
    st->qnext = NULL;
    if (st->in_ready)
        return 0; /* still queued as ready: it moves to the closed queue when pruned */
    if (s->closed_tail)
        s->closed_tail->qnext = st;
    else
        s->closed_head = st;
    s->closed_tail = st;
    return 0;
}

static int emit(h2_session_t *s, const uint8_t *data, size_t len)
{
    if (!s->scratch || s->scratch->cap - s->scratch->len < len) {
        buf_unref(s->scratch);
        s->scratch = buf_new(len > H2_SCRATCH_BYTES ? len : H2_SCRATCH_BYTES);
        if (!s->scratch) return -ENOMEM;
    }
    /* bytes past len are ours even while the writer holds slices before them */
    memcpy(s->scratch->data + s->scratch->len, data, len);
    size_t off = s->scratch->len;
    s->scratch->len += len;
    return s->write(s->ud, s->scratch, off, len);
}

static ssize_t send_cb(nghttp2_session *ng, const uint8_t *data, size_t len, int flags, void *ud)
{
    (void)ng, (void)flags;
    h2_session_t *s = ud;
    if (s->sent >= s->budget) return NGHTTP2_ERR_WOULDBLOCK;
    int r = emit(s, data, len);
    if (r < 0) {
        s->write_err = r;
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    s->sent += len;
    return (ssize_t)len;
}

static int send_data_cb(nghttp2_session *ng, nghttp2_frame *frame, const uint8_t *framehd,
                        size_t length, nghttp2_data_source *source, void *ud)
{
    (void)ng, (void)frame;
    h2_session_t *s = ud;
    h2_stream_t *st = source->ptr;
    if (s->sent >= s->budget) return NGHTTP2_ERR_WOULDBLOCK;
    int r = emit(s, framehd, 9);
    size_t left = length;
    while (r == 0 && left > 0 && st->qcount > 0) {
        h2_slice_t *it = &st->q[st->qhead];
        size_t take = it->len < left ? it->len : left;
        r = s->write(s->ud, it->b, it->off, take);
        left -= take;
        st->qbytes -= take;
        if (take == it->len) {
            buf_unref(it->b);
            st->qhead = (st->qhead + 1) % st->qcap;
            st->qcount--;
        } else {
            it->off += take;
            it->len -= take;
        }
    }
    if (r < 0 || left > 0) {
        s->write_err = r < 0 ? r : -EIO;
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    if (st->limit)
        st->limit = st->limit - st->limit_max > length ? st->limit - length : st->limit_max;
    s->sent += 9 + length;
    return 0;
}

/* ---- session ---- */

static int ng_error(int r)
{
    return r == NGHTTP2_ERR_NOMEM ? -ENOMEM : -EPROTO;
}

int h2_session_new(h2_session_t **out, const h2_limits_t *lim, h2_write_fn write, void *ud)
{
    h2_session_t *s = calloc(1, sizeof(*s));
    nghttp2_session_callbacks *cbs = NULL;
    if (!s) goto fail_alloc;
    s->lim = *lim;
    s->write = write;
    s->ud = ud;
    if (nghttp2_session_callbacks_new(&cbs) != 0) goto fail_cbs;
    nghttp2_session_callbacks_set_send_callback(cbs, send_cb);
    nghttp2_session_callbacks_set_send_data_callback(cbs, send_data_cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    int r = nghttp2_session_server_new(&s->ng, cbs, s);
    nghttp2_session_callbacks_del(cbs);
    if (r != 0) goto fail_cbs;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, lim->max_concurrent_streams},
        /* RFC 9113 §6.5.2 counts 32 bytes per field on top of name and value */
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
         (uint32_t)(lim->req.max_header_bytes + 32u * (lim->req.max_headers + 4u))},
    };
    if (nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0)
        goto fail_session;
    *out = s;
    return 0;
fail_session:
    nghttp2_session_del(s->ng);
fail_cbs:
    free(s);
fail_alloc:
    return -ENOMEM;
}

void h2_session_free(h2_session_t *s)
{
    if (!s) return;
    nghttp2_session_del(s->ng);
    while (s->streams)
        h2_stream_free(s->streams);
    buf_unref(s->scratch);
    free(s);
}

int h2_session_feed(h2_session_t *s, const uint8_t *data, size_t len, uint64_t now)
{
    s->now = now;
    ssize_t r = nghttp2_session_mem_recv(s->ng, data, len);
    if (r < 0) {
        /* a GOAWAY says why where nghttp2 did not already queue one */
        nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(s->ng),
                              NGHTTP2_PROTOCOL_ERROR, NULL, 0);
        return ng_error((int)r);
    }
    return 0;
}

int h2_session_flush(h2_session_t *s, size_t budget)
{
    s->budget = budget;
    s->sent = 0;
    int r = nghttp2_session_send(s->ng);
    buf_unref(s->scratch);
    s->scratch = NULL;
    if (s->write_err) return s->write_err;
    return r < 0 ? ng_error(r) : 0;
}

int h2_session_want_write(const h2_session_t *s)
{
    return nghttp2_session_want_write(s->ng);
}

int h2_session_done(const h2_session_t *s)
{
    return !nghttp2_session_want_read(s->ng) && !nghttp2_session_want_write(s->ng);
}

int h2_session_goaway(h2_session_t *s)
{
    int r = nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE,
                                  nghttp2_session_get_last_proc_stream_id(s->ng), NGHTTP2_NO_ERROR,
                                  NULL, 0);
    return r < 0 ? ng_error(r) : 0;
}

unsigned h2_session_expire(h2_session_t *s, uint64_t before)
{
    unsigned n = 0;
    for (h2_stream_t *st = s->streams; st; st = st->next) {
        if (st->state != H2S_RECV || st->closed || st->answered || st->opened_at >= before)
            continue;
        stream_fail(st, 408, "request not received in time");
        answer_error(st);
        n++;
    }
    return n;
}

h2_stream_t *h2_session_next_request(h2_session_t *s)
{
    while (s->ready_head) {
        h2_stream_t *st = s->ready_head;
        s->ready_head = st->qnext;
        if (!s->ready_head) s->ready_tail = NULL;
        st->qnext = NULL;
        st->in_ready = 0;
        st->state = H2S_ACTIVE;
        if (!st->closed) return st;
        /* reset before it was handed out: report it closed instead */
        if (s->closed_tail)
            s->closed_tail->qnext = st;
        else
            s->closed_head = st;
        s->closed_tail = st;
    }
    return NULL;
}

h2_stream_t *h2_session_next_closed(h2_session_t *s)
{
    /* closed streams still queued as ready are reported now, never handed out */
    h2_stream_t **pp = &s->ready_head, *last = NULL;
    while (*pp) {
        h2_stream_t *st = *pp;
        if (!st->closed) {
            last = st;
            pp = &st->qnext;
            continue;
        }
        *pp = st->qnext;
        st->qnext = NULL;
        st->in_ready = 0;
        if (s->closed_tail)
            s->closed_tail->qnext = st;
        else
            s->closed_head = st;
        s->closed_tail = st;
    }
    s->ready_tail = last;
    h2_stream_t *st = s->closed_head;
    if (!st) return NULL;
    s->closed_head = st->qnext;
    if (!s->closed_head) s->closed_tail = NULL;
    st->qnext = NULL;
    return st;
}

size_t h2_session_stream_count(const h2_session_t *s)
{
    return s->n_streams;
}

void h2_session_each(h2_session_t *s, void (*fn)(h2_stream_t *st, void *arg), void *arg)
{
    for (h2_stream_t *st = s->streams; st; st = st->next)
        if (st->state == H2S_ACTIVE && !st->closed) fn(st, arg);
}
