/* libFuzzer target for http/parser: the input is fed in chunks whose sizes come from its
 * first two bytes, looping over complete requests the way the connection code does, and
 * every byte of each request is read so ASan sees any over-read. The same stream fed
 * whole must give the same requests and the same outcome (chunking is invisible). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/parser.h"

static volatile size_t sink;

/* FNV-1a over everything a request exposes, so two parses can be compared */
static void mix(uint64_t *h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        *h ^= b[i];
        *h *= 1099511628211ull;
    }
}

static void mix_str(uint64_t *h, const char *s)
{
    if (!s) __builtin_trap();
    mix(h, s, strlen(s) + 1);
}

static void digest_request(uint64_t *h, const http_request_t *q)
{
    mix_str(h, q->method_name);
    mix_str(h, q->target);
    mix_str(h, q->path);
    mix_str(h, q->query);
    mix(h, &q->n_headers, sizeof(q->n_headers));
    for (unsigned i = 0; i < q->n_headers; i++) {
        mix_str(h, q->headers[i].name);
        mix_str(h, q->headers[i].value);
    }
    if (!q->body || q->body[q->body_len] != '\0') __builtin_trap();
    mix(h, q->body, q->body_len);
    int flags[3] = {q->keep_alive, q->upgrade, q->http_minor};
    mix(h, flags, sizeof(flags));
    const char *conn = http_request_header(q, "Connection");
    if (conn) sink += (size_t)http_header_has_token(conn, "upgrade");
    sink += (size_t)(http_request_header(q, "Host") != NULL);
}

typedef struct outcome_s {
    uint64_t digest;
    unsigned requests;
    int rc;          /* last result: AGAIN, DONE for an upgrade, or the error */
    int status;      /* error_status after an error */
    size_t consumed; /* bytes consumed in all */
} outcome_t;

/* Parses data in chunks of steps[0], steps[1], steps[0], ... (0: the rest). */
static void parse(const uint8_t *data, size_t size, const size_t steps[2], outcome_t *o)
{
    static const http_parser_limits_t limits = {4096, 16, 65536};
    http_parser_t p;
    http_parser_init(&p, &limits);
    memset(o, 0, sizeof(*o));
    o->digest = 14695981039346656037ull;
    size_t off = 0;
    int k = 0, stop = 0;
    while (off < size && !stop) {
        size_t n = steps[k++ & 1];
        if (n == 0 || n > size - off) n = size - off;
        /* a heap copy of exactly n bytes: reading past it is an ASan error */
        char *piece = malloc(n);
        if (!piece) __builtin_trap();
        memcpy(piece, data + off, n);
        size_t a = 0;
        int spins = 0;
        while (a < n) {
            size_t used = 0;
            int r = http_parser_execute(&p, piece + a, n - a, &used);
            if (used > n - a) __builtin_trap();
            o->rc = r;
            if (r < 0) {
                if (p.error_status < 400 || p.error_status > 599 || !p.error_msg) __builtin_trap();
                stop = 1;
                break;
            }
            a += used;
            o->consumed += used;
            if (r == HTTP_PARSE_AGAIN) {
                if (a != n) __builtin_trap();
                break;
            }
            o->requests++;
            digest_request(&o->digest, &p.req);
            if (p.req.upgrade) {
                stop = 1;
                break;
            }
            http_parser_next(&p);
            o->rc = HTTP_PARSE_AGAIN;
            if (++spins > 10000) __builtin_trap();
        }
        free(piece);
        off += n;
    }
    sink += (size_t)http_parser_idle(&p);
    http_parser_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    /* chunk sizes alternate between the first two bytes; 0 means "the rest" */
    size_t steps[2] = {data[0], data[1]};
    data += 2;
    size -= 2;

    outcome_t chunked, whole;
    parse(data, size, steps, &chunked);
    static const size_t all[2] = {0, 0};
    parse(data, size, all, &whole);
    if (chunked.digest != whole.digest || chunked.requests != whole.requests) __builtin_trap();
    /* both fail or neither; which error wins may depend on where a chunk ended (llhttp
     * flushes a pending span at the end of a chunk, so "too many headers" can come before
     * the invalid byte that follows the span) */
    if ((chunked.rc < 0) != (whole.rc < 0)) __builtin_trap();
    if (chunked.rc >= 0 && (chunked.rc != whole.rc || chunked.consumed != whole.consumed))
        __builtin_trap();
    return 0;
}
