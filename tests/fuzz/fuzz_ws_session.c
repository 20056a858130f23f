/* libFuzzer target for the WebSocket server session: the input (client frames) is fed in
 * chunks whose size comes from its first byte (low 7 bits; the top bit turns on
 * permessage-deflate with context takeover, so RSV1 frames are inflated), with a no-op
 * writer; every message byte is read. The same bytes fed whole must deliver the same
 * messages (chunking is invisible).
 * The written bytes are not compared: see ws_session_bug in tests/unit/test_ws_codec.c. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/ws_codec.h"

static volatile size_t sink;

typedef struct outcome_s {
    uint64_t digest; /* FNV-1a over the messages */
    unsigned messages;
    int failed; /* a feed returned an error */
} outcome_t;

static void mix(uint64_t *h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        *h ^= b[i];
        *h *= 1099511628211ull;
    }
}

static void on_message(ws_session_t *s, uint8_t opcode, const uint8_t *msg, size_t len, void *ud)
{
    (void)s;
    outcome_t *o = ud;
    if (opcode != WSLAY_TEXT_FRAME && opcode != WSLAY_BINARY_FRAME) __builtin_trap();
    if (opcode == WSLAY_TEXT_FRAME && !ws_utf8_valid(msg, len)) __builtin_trap();
    if (len > 65536) __builtin_trap();
    o->messages++;
    mix(&o->digest, &opcode, 1);
    mix(&o->digest, &len, sizeof(len));
    mix(&o->digest, msg, len);
}

static int on_write(ws_session_t *s, const uint8_t *data, size_t len, void *ud)
{
    (void)s;
    (void)ud;
    for (size_t i = 0; i < len; i++)
        sink += data[i];
    return 0;
}

static void run(const uint8_t *data, size_t size, size_t step, int deflate, outcome_t *o)
{
    static const ws_session_cbs_t cbs = {on_message, on_write};
    memset(o, 0, sizeof(*o));
    o->digest = 14695981039346656037ull;
    ws_session_t *s = NULL;
    if (ws_session_new(&s, &cbs, o, 65536) != 0) __builtin_trap();
    if (deflate) {
        static const ws_pmd_t pmd = {0, 0, 10};
        ws_session_set_deflate(s, &pmd);
    }
    size_t off = 0;
    while (off < size) {
        size_t n = step == 0 || step > size - off ? size - off : step;
        /* a heap copy of exactly n bytes: reading past it is an ASan error */
        uint8_t *piece = malloc(n);
        if (!piece) __builtin_trap();
        memcpy(piece, data + off, n);
        int r = ws_session_feed(s, piece, n);
        free(piece);
        off += n;
        if (r < 0) {
            o->failed = 1;
            break;
        }
        sink += ws_session_take_activity(s);
        if (ws_session_done(s)) break;
    }
    /* the server side keeps working (or refuses cleanly) whatever came in */
    sink += (size_t)ws_session_can_send(s);
    sink += (size_t)(ws_session_send(s, WSLAY_TEXT_FRAME, (const uint8_t *)"{}", 2) == 0);
    sink += (size_t)(ws_session_close(s, 1000, "bye") == 0);
    sink += (size_t)ws_session_done(s);
    ws_session_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t step = data[0] & 0x7f;
    int deflate = data[0] >> 7;
    data++;
    size--;

    outcome_t chunked, whole;
    run(data, size, step, deflate, &chunked);
    run(data, size, 0, deflate, &whole);
    if (chunked.messages != whole.messages || chunked.digest != whole.digest ||
        chunked.failed != whole.failed)
        __builtin_trap();
    sink += (size_t)ws_utf8_valid(data, size);
    return 0;
}
