/* llhttp glue: spans are collected into one arena per request so that headers split
 * across reads (or byte by byte) come out whole. */
#include "http/parser.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { CB_NONE, CB_URL, CB_FIELD, CB_VALUE };

#define P(ll) ((http_parser_t *)(ll)->data)

static int fail(http_parser_t *p, int status, const char *msg)
{
    p->error_status = status;
    p->error_msg = msg;
    return HPE_USER;
}

static int on_message_begin(llhttp_t *ll)
{
    http_parser_t *p = P(ll);
    p->in_message = 1;
    if (!p->arena && !(p->arena = buf_new(256))) return fail(p, 500, "out of memory");
    return 0;
}

static int refuse(http_parser_t *p, int limit, int status, const char *msg)
{
    p->error_limit = limit;
    return fail(p, status, msg);
}

static int head_add(http_parser_t *p, const char *at, size_t len)
{
    p->head_bytes += len;
    if (p->head_bytes > p->limits.max_header_bytes)
        return refuse(p, HTTP_LIMIT_HEADER_BYTES, 431, "request line and headers are too large");
    if (buf_append(&p->arena, at, len) < 0) return fail(p, 500, "out of memory");
    return 0;
}

static int end_span(http_parser_t *p)
{
    /* NUL-terminate the previous span so its offset names a C string */
    if (p->last_cb != CB_NONE && buf_append(&p->arena, "", 1) < 0)
        return fail(p, 500, "out of memory");
    return 0;
}

static int on_url(llhttp_t *ll, const char *at, size_t len)
{
    http_parser_t *p = P(ll);
    if (p->last_cb != CB_URL) {
        p->url_off = p->arena->len;
        p->url_len = 0;
        p->last_cb = CB_URL;
    }
    p->url_len += len;
    return head_add(p, at, len);
}

static int on_header_field(llhttp_t *ll, const char *at, size_t len)
{
    http_parser_t *p = P(ll);
    if (p->last_cb != CB_FIELD) {
        int r = end_span(p);
        if (r) return r;
        if (p->n_headers >= p->limits.max_headers)
            return refuse(p, HTTP_LIMIT_HEADERS, 431, "too many headers");
        if (p->n_headers >= p->hdr_cap) {
            unsigned cap = p->hdr_cap ? p->hdr_cap * 2 : 16;
            size_t *n = realloc(p->hdr_off, sizeof(size_t) * 2 * cap);
            if (!n) return fail(p, 500, "out of memory");
            p->hdr_off = n;
            p->hdr_cap = cap;
        }
        p->hdr_off[2 * p->n_headers] = p->arena->len;
        p->hdr_off[2 * p->n_headers + 1] = (size_t)-1;
        p->n_headers++;
        p->last_cb = CB_FIELD;
        /* a header also costs its ": " and CRLF, so a flood of empty ones is bounded */
        p->head_bytes += 4;
    }
    return head_add(p, at, len);
}

static int on_header_value(llhttp_t *ll, const char *at, size_t len)
{
    http_parser_t *p = P(ll);
    if (p->last_cb != CB_VALUE) {
        int r = end_span(p);
        if (r) return r;
        p->hdr_off[2 * (p->n_headers - 1) + 1] = p->arena->len;
        p->last_cb = CB_VALUE;
    }
    return head_add(p, at, len);
}

/* The body limit of the request's path: the URL span sits whole in the arena. */
static size_t body_limit(const http_parser_t *p)
{
    const char *u = p->arena->data + p->url_off;
    size_t n = 0;
    while (n < p->url_len && u[n] != '?')
        n++;
    for (size_t i = 0; i < p->n_body_paths; i++) {
        const char *path = p->body_paths[i].path;
        if (strlen(path) == n && memcmp(path, u, n) == 0) return p->body_paths[i].max_body_bytes;
    }
    return p->limits.max_body_bytes;
}

static int on_headers_complete(llhttp_t *ll)
{
    http_parser_t *p = P(ll);
    int r = end_span(p);
    if (r) return r;
    p->last_cb = CB_NONE; /* trailers, if any, start new spans */
    p->body_max = body_limit(p);
    if ((ll->flags & F_CONTENT_LENGTH) && ll->content_length > p->body_max) {
        refuse(p, HTTP_LIMIT_BODY, 413, "request body is too large");
        return -1; /* on_headers_complete reports errors with -1 */
    }
    return 0;
}

static int on_body(llhttp_t *ll, const char *at, size_t len)
{
    http_parser_t *p = P(ll);
    if (!p->body && !(p->body = buf_new(len < 4096 ? 4096 : len)))
        return fail(p, 500, "out of memory");
    if (p->body->len + len > p->body_max)
        return refuse(p, HTTP_LIMIT_BODY, 413, "request body is too large");
    if (buf_append(&p->body, at, len) < 0) return fail(p, 500, "out of memory");
    return 0;
}

static int on_message_complete(llhttp_t *ll)
{
    http_parser_t *p = P(ll);
    http_request_t *q = &p->req;
    if (end_span(p)) /* a trailer's value is the last span */
        return fail(p, 500, "out of memory");
    p->last_cb = CB_NONE;
    q->headers = calloc(p->n_headers ? p->n_headers : 1, sizeof(*q->headers));
    if (!q->headers) return fail(p, 500, "out of memory");
    q->n_headers = p->n_headers;
    q->method = ll->method;
    q->method_name = llhttp_method_name((llhttp_method_t)ll->method);
    /* on_headers_complete's end_span has NUL-terminated the last span */
    char *a = p->arena->data;
    for (unsigned i = 0; i < p->n_headers; i++) {
        size_t vo = p->hdr_off[2 * i + 1];
        if (vo == (size_t)-1) continue;
        /* RFC 9110 §5.5: trailing spaces and tabs are not part of the value */
        char *v = a + vo;
        size_t n = strlen(v);
        while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
            v[--n] = '\0';
    }
    for (unsigned i = 0; i < p->n_headers; i++) {
        q->headers[i].name = a + p->hdr_off[2 * i];
        size_t vo = p->hdr_off[2 * i + 1];
        q->headers[i].value = vo == (size_t)-1 ? "" : a + vo;
    }
    char *target = a + p->url_off;
    if (p->url_len == 0)
        target = (char *)"/";
    else
        target[p->url_len] = '\0';
    q->target = target;
    char *qm = strchr(target, '?');
    if (qm) {
        size_t pl = (size_t)(qm - target);
        /* path and query need their own strings: the target stays intact. Grow first,
         * then copy: the source lives in the arena that may move */
        size_t end = p->arena->len;
        char zeros[64] = {0};
        for (size_t left = pl + 1; left;) {
            size_t k = left < sizeof(zeros) ? left : sizeof(zeros);
            if (buf_append(&p->arena, zeros, k) < 0) return fail(p, 500, "out of memory");
            left -= k;
        }
        a = p->arena->data;
        char *path = a + end;
        memcpy(path, a + p->url_off, pl);
        path[pl] = '\0';
        /* re-resolve after the append may have moved the arena */
        for (unsigned i = 0; i < p->n_headers; i++) {
            q->headers[i].name = a + p->hdr_off[2 * i];
            size_t vo = p->hdr_off[2 * i + 1];
            q->headers[i].value = vo == (size_t)-1 ? "" : a + vo;
        }
        q->target = a + p->url_off;
        q->path = path;
        q->query = a + p->url_off + pl + 1;
    } else {
        q->path = q->target;
        q->query = "";
    }
    if (p->body) {
        q->body = p->body->data;
        q->body_len = p->body->len;
    } else {
        q->body = "";
        q->body_len = 0;
    }
    q->keep_alive = llhttp_should_keep_alive(ll);
    q->upgrade = ll->upgrade;
    q->http_major = ll->http_major;
    q->http_minor = ll->http_minor;
    p->in_message = 0;
    return HPE_PAUSED;
}

int http_parser_init(http_parser_t *p, const http_parser_limits_t *limits)
{
    memset(p, 0, sizeof(*p));
    p->limits = *limits;
    llhttp_settings_init(&p->settings);
    p->settings.on_message_begin = on_message_begin;
    p->settings.on_url = on_url;
    p->settings.on_header_field = on_header_field;
    p->settings.on_header_value = on_header_value;
    p->settings.on_headers_complete = on_headers_complete;
    p->settings.on_body = on_body;
    p->settings.on_message_complete = on_message_complete;
    llhttp_init(&p->ll, HTTP_REQUEST, &p->settings);
    p->ll.data = p;
    return 0;
}

void http_parser_set_body_paths(http_parser_t *p, const http_path_limit_t *paths, size_t n)
{
    p->body_paths = paths;
    p->n_body_paths = n;
}

int http_parser_execute(http_parser_t *p, const char *data, size_t len, size_t *consumed)
{
    *consumed = 0;
    if (p->error_status) return -EINVAL;
    if (len == 0) return HTTP_PARSE_AGAIN;
    llhttp_errno_t e = llhttp_execute(&p->ll, data, len);
    if (e == HPE_OK) {
        *consumed = len;
        return HTTP_PARSE_AGAIN;
    }
    if (e == HPE_PAUSED) {
        *consumed = (size_t)(llhttp_get_error_pos(&p->ll) - data);
        return HTTP_PARSE_DONE;
    }
    if (p->error_status) {
        /* one of our callbacks refused the request */
        if (p->error_status == 431) return -EMSGSIZE;
        if (p->error_status == 413) return -E2BIG;
        return -ENOMEM;
    }
    p->error_status = 400;
    p->error_msg = llhttp_get_error_reason(&p->ll);
    if (!p->error_msg) p->error_msg = "malformed HTTP request";
    return -EINVAL;
}

static void release_request(http_parser_t *p)
{
    free(p->req.headers);
    memset(&p->req, 0, sizeof(p->req));
    buf_unref(p->arena);
    buf_unref(p->body);
    p->arena = NULL;
    p->body = NULL;
    p->head_bytes = 0;
    p->n_headers = 0;
    p->last_cb = CB_NONE;
    p->url_off = p->url_len = 0;
}

void http_parser_next(http_parser_t *p)
{
    release_request(p);
    /* no request is buffered now: give back the header index too (idle costs nothing) */
    free(p->hdr_off);
    p->hdr_off = NULL;
    p->hdr_cap = 0;
    llhttp_resume(&p->ll);
}

int http_parser_idle(const http_parser_t *p)
{
    return !p->in_message;
}

void http_parser_free(http_parser_t *p)
{
    release_request(p);
    free(p->hdr_off);
    p->hdr_off = NULL;
    p->hdr_cap = 0;
}

const char *http_request_header(const http_request_t *req, const char *name)
{
    for (unsigned i = 0; i < req->n_headers; i++)
        if (strcasecmp(req->headers[i].name, name) == 0) return req->headers[i].value;
    return NULL;
}

int http_header_has_token(const char *value, const char *token)
{
    size_t tl = strlen(token);
    const char *s = value;
    while (s && *s) {
        while (*s == ' ' || *s == '\t' || *s == ',')
            s++;
        const char *e = s;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - s) == tl && strncasecmp(s, token, tl) == 0) return 1;
        s = e;
    }
    return 0;
}
