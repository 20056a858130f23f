/* libFuzzer target for transport/ws_deflate: ws_pmd_negotiate over the raw bytes as a
 * Sec-WebSocket-Extensions value (read exactly size bytes, no terminator), the answer
 * for what it accepted parsed back as an offer, and ws_pmd_inflate over the same bytes
 * as a compressed message, with and without a history, bounded by a small max. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/ws_deflate.h"

static volatile size_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *raw = malloc(size ? size : 1);
    if (!raw) return 0;
    if (size) memcpy(raw, data, size);
    unsigned want = 8 + (size ? data[0] % 8 : 0);
    ws_pmd_t p;
    int r = ws_pmd_negotiate(raw, size, want, &p);
    if (r != 0 && r != 1 && r != -EINVAL) __builtin_trap();
    if (r == 1) {
        if (p.client_no_context_takeover > 1) __builtin_trap();
        if (p.server_max_bits && (p.server_max_bits < 8 || p.server_max_bits > 15))
            __builtin_trap();
        if (p.client_max_bits && (p.client_max_bits < 8 || p.client_max_bits > want))
            __builtin_trap();
        /* the answer is itself a valid offer of the same parameters */
        char out[WS_PMD_RESPONSE_MAX];
        int n = ws_pmd_response(&p, out, sizeof(out));
        if (n <= 0 || (size_t)n != strlen(out)) __builtin_trap();
        ws_pmd_t q;
        if (ws_pmd_negotiate(out, (size_t)n, 15, &q) != 1 ||
            q.client_no_context_takeover != p.client_no_context_takeover ||
            q.server_max_bits != p.server_max_bits || q.client_max_bits != p.client_max_bits)
            __builtin_trap();
    }
    free(raw);

    /* the same bytes as a compressed message */
    ws_pmd_hist_t h = {0};
    static const uint8_t seed[] = "{\"type\":\"subscribe\",\"channels\":[\"a\"]}";
    h.data = malloc(sizeof(seed));
    if (!h.data) return 0;
    memcpy(h.data, seed, sizeof(seed));
    h.len = sizeof(seed);
    for (int pass = 0; pass < 2; pass++) {
        uint8_t *o = NULL;
        size_t ol = 0;
        int ir = ws_pmd_inflate(pass ? &h : NULL, 9, data, size, 4096, &o, &ol);
        if (ir == 0) {
            if (ol > 4096 || (ol && !o)) __builtin_trap();
            for (size_t i = 0; i < ol; i++)
                sink += o[i];
            free(o);
        } else if (ir != -EMSGSIZE && ir != -EBADMSG && ir != -ENOMEM) {
            __builtin_trap();
        }
        if (h.len > 512) __builtin_trap();
    }
    ws_pmd_hist_free(&h);
    return 0;
}
