/* libFuzzer target for transport/engineio_codec: eio_payload_next walks the input as an
 * HTTP long-polling payload (packets joined by 0x1e, binary messages as `b<base64>`),
 * as the server does with a POST body; eio_decode_text takes it as one WebSocket text
 * frame. Invariants: the cursor only moves forward and stays in the input, types are
 * 0-6, text data is borrowed from the input and never holds a separator, binary data is
 * at most 3/4 of its base64. The packets walked before any error, written back with
 * eio_payload_append, walk to the same packets again (binary re-encoded canonically). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "transport/engineio_codec.h"

static volatile size_t sink;

typedef struct pkt_s {
    int type, binary;
    char *data;
    size_t len;
} pkt_t;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a heap copy of exactly size bytes: reading past it is an ASan error */
    char *in = malloc(size ? size : 1);
    if (!in) return 0;
    if (size) memcpy(in, data, size);

    eio_packet_t p;
    if (eio_decode_text(in, size, &p) == 0) {
        if (p.type < 0 || p.type > 6 || p.binary || p.data != in + 1 || p.len != size - 1)
            __builtin_trap();
    }

    const char *cur = in, *end = in + size;
    buf_t *scratch = NULL;
    pkt_t *pk = NULL;
    size_t n = 0, cap = 0;
    int r;
    while ((r = eio_payload_next(&cur, end, &p, &scratch)) > 0) {
        if (cur < in || cur > end) __builtin_trap();
        if (p.type < 0 || p.type > 6) __builtin_trap();
        if (p.binary) {
            if (p.type != EIO_MESSAGE || p.len > size) __builtin_trap();
        } else {
            if (p.data < in || p.data + p.len > end || memchr(p.data, 0x1e, p.len))
                __builtin_trap();
        }
        for (size_t i = 0; i < p.len; i++)
            sink += (unsigned char)p.data[i];
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            pkt_t *np = realloc(pk, nc * sizeof(*np));
            if (!np) break;
            pk = np;
            cap = nc;
        }
        pk[n].type = p.type;
        pk[n].binary = p.binary;
        pk[n].len = p.len;
        pk[n].data = malloc(p.len ? p.len : 1);
        if (!pk[n].data) break;
        if (p.len) memcpy(pk[n].data, p.data, p.len);
        n++;
    }
    if (r != 0 && r != -EINVAL && r != -ENOMEM) __builtin_trap();
    if (r == 0 && cur != end) __builtin_trap();
    buf_unref(scratch);
    scratch = NULL;

    /* round trip what was walked */
    buf_t *b = buf_new(0);
    int ok = b != NULL;
    for (size_t i = 0; ok && i < n; i++)
        ok = eio_payload_append(&b, pk[i].type, pk[i].binary, pk[i].data, pk[i].len) == 0;
    if (ok) {
        char *copy = malloc(b->len ? b->len : 1);
        if (copy) {
            if (b->len) memcpy(copy, b->data, b->len);
            const char *c2 = copy, *e2 = copy + b->len;
            size_t k = 0;
            while ((r = eio_payload_next(&c2, e2, &p, &scratch)) > 0) {
                if (k >= n || p.type != pk[k].type || p.binary != pk[k].binary ||
                    p.len != pk[k].len || (p.len && memcmp(p.data, pk[k].data, p.len) != 0))
                    __builtin_trap();
                k++;
            }
            /* a payload of n packets walks to exactly n packets (n == 0: an empty body) */
            if (r != 0 || k != n) __builtin_trap();
            free(copy);
        }
    }
    buf_unref(b);
    buf_unref(scratch);
    for (size_t i = 0; i < n; i++)
        free(pk[i].data);
    free(pk);
    free(in);
    return 0;
}
