/* transport/engineio_codec: Engine.IO v4 packets (https://socket.io/docs/v4/engine-io-protocol/).
 * WebSocket text frames decode to one packet; HTTP long-polling payloads are walked
 * packet by packet across the record separator 0x1e, binary messages as `b<base64>`
 * (every padding variant); payloads are built with eio_payload_append and walked back;
 * the open packet's JSON and the HTTP error messages are exact. Inputs end at a guard
 * page (nothing may be read past them); payloads are walked whole, truncated at every
 * byte, and split at every record separator. */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "guard.h"
#include "transport/engineio_codec.h"

/* ---- eio_decode_text ---- */

static eio_packet_t text(const char *s, size_t len, int *rc)
{
    guard_t g = {0};
    const char *in = guard_copy(&g, s, len);
    eio_packet_t p;
    memset(&p, 0xa5, sizeof(p));
    *rc = eio_decode_text(in, len, &p);
    if (*rc == 0) {
        /* data points into the input, right after the type digit */
        cr_assert_eq(p.data, in + 1, "data of \"%.*s\" is not borrowed from the input", (int)len,
                     s);
        cr_assert_eq(p.len, len - 1);
        cr_assert_eq(p.binary, 0);
    }
    guard_release(&g);
    return p;
}

Test(eio_decode_text, every_type)
{
    static const char *names[] = {"open", "close", "ping", "pong", "message", "upgrade", "noop"};
    for (int t = 0; t <= 6; t++) {
        char s[8];
        int n = snprintf(s, sizeof(s), "%d", t);
        int rc;
        eio_packet_t p = text(s, (size_t)n, &rc);
        cr_assert_eq(rc, 0, "%s", names[t]);
        cr_assert_eq(p.type, t, "%s", names[t]);
        cr_assert_eq(p.len, 0);
    }
    cr_assert_eq(EIO_OPEN, 0);
    cr_assert_eq(EIO_CLOSE, 1);
    cr_assert_eq(EIO_PING, 2);
    cr_assert_eq(EIO_PONG, 3);
    cr_assert_eq(EIO_MESSAGE, 4);
    cr_assert_eq(EIO_UPGRADE, 5);
    cr_assert_eq(EIO_NOOP, 6);
}

Test(eio_decode_text, data_after_the_type)
{
    int rc;
    eio_packet_t p = text("4hello", 6, &rc);
    cr_assert_eq(rc, 0);
    cr_assert_eq(p.type, EIO_MESSAGE);
    p = text("2probe", 6, &rc);
    cr_assert_eq(rc, 0);
    cr_assert_eq(p.type, EIO_PING);
    cr_assert_eq(p.len, 5);
    /* data may hold anything, the separator and NULs included (WebSocket frames carry
     * one packet each) */
    p = text("4a\x1e\0b", 5, &rc);
    cr_assert_eq(rc, 0);
    cr_assert_eq(p.len, 4);
}

Test(eio_decode_text, bad_types_refused)
{
    static const char *bad[] = {"", "7", "9", "/", ":", "a", "b", " 4", "\x1e", "-1", "\xff"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc;
        text(bad[i], strlen(bad[i]), &rc);
        cr_assert_eq(rc, -EINVAL, "\"%s\" accepted", bad[i]);
    }
}

/* ---- eio_payload_next ---- */

typedef struct got_s {
    int type, binary;
    char data[4096];
    size_t len;
} got_t;

/* Walks len bytes of s (copied to end at a guard page). Returns the number of packets,
 * or the negative error that stopped the walk (packets before it are in out). */
static int walk(const char *s, size_t len, got_t *out, int max, int *n_out)
{
    guard_t g = {0};
    const char *in = guard_copy(&g, s, len);
    const char *cur = in, *end = in + len;
    buf_t *scratch = NULL;
    eio_packet_t p;
    int n = 0, r;
    while ((r = eio_payload_next(&cur, end, &p, &scratch)) > 0) {
        cr_assert_lt(n, max, "more packets than expected");
        cr_assert(cur >= in && cur <= end, "cursor out of the input");
        cr_assert_leq(p.len, sizeof(out[n].data));
        out[n].type = p.type;
        out[n].binary = p.binary;
        out[n].len = p.len;
        if (p.len) memcpy(out[n].data, p.data, p.len);
        if (!p.binary)
            cr_assert(p.data >= in && p.data + p.len <= end,
                      "text data is borrowed from the input");
        n++;
    }
    cr_assert(r == 0 || r == -EINVAL, "walk returned %d", r);
    if (r == 0) cr_assert_eq(cur, end, "the end is the end of the input");
    buf_unref(scratch);
    guard_release(&g);
    *n_out = n;
    return r < 0 ? r : n;
}

#define WALK(lit, out, n)                                                                          \
    walk((lit), sizeof(lit) - 1, (out), (int)(sizeof(out) / sizeof((out)[0])), &(n))

static void expect_packet(const got_t *g, int type, int binary, const char *data, size_t len)
{
    cr_assert_eq(g->type, type);
    cr_assert_eq(g->binary, binary);
    cr_assert_eq(g->len, len, "%zu bytes, want %zu", g->len, len);
    cr_assert(len == 0 || memcmp(g->data, data, len) == 0, "got \"%.*s\" want \"%.*s\"",
              (int)g->len, g->data, (int)len, data);
}

#define EXPECT_TEXT(g, t, lit) expect_packet((g), (t), 0, (lit), sizeof(lit) - 1)
#define EXPECT_BIN(g, lit) expect_packet((g), EIO_MESSAGE, 1, (lit), sizeof(lit) - 1)

Test(eio_payload, empty_payload_has_no_packets)
{
    got_t g[2];
    int n;
    cr_assert_eq(walk("", 0, g, 2, &n), 0);
    cr_assert_eq(n, 0);
}

Test(eio_payload, one_text_packet)
{
    got_t g[2];
    int n;
    cr_assert_eq(WALK("4hello", g, n), 1);
    EXPECT_TEXT(&g[0], EIO_MESSAGE, "hello");
}

Test(eio_payload, protocol_example_text_packets)
{
    /* the protocol document's example: 4hello\x1e4€ */
    got_t g[4];
    int n;
    cr_assert_eq(WALK("4hello\x1e"
                      "4\xe2\x82\xac",
                      g, n),
                 2);
    EXPECT_TEXT(&g[0], EIO_MESSAGE, "hello");
    EXPECT_TEXT(&g[1], EIO_MESSAGE, "\xe2\x82\xac");
}

Test(eio_payload, protocol_example_binary_packets)
{
    /* 4€\x1ebAQIDBA== : a text message, then the bytes 1 2 3 4 */
    got_t g[4];
    int n;
    cr_assert_eq(WALK("4\xe2\x82\xac\x1e"
                      "bAQIDBA==",
                      g, n),
                 2);
    EXPECT_TEXT(&g[0], EIO_MESSAGE, "\xe2\x82\xac");
    EXPECT_BIN(&g[1], "\x01\x02\x03\x04");
}

Test(eio_payload, control_packets_and_empty_messages)
{
    got_t g[8];
    int n;
    cr_assert_eq(WALK("2\x1e"
                      "3probe\x1e"
                      "4\x1e"
                      "6\x1e"
                      "1",
                      g, n),
                 5);
    EXPECT_TEXT(&g[0], EIO_PING, "");
    EXPECT_TEXT(&g[1], EIO_PONG, "probe");
    EXPECT_TEXT(&g[2], EIO_MESSAGE, "");
    EXPECT_TEXT(&g[3], EIO_NOOP, "");
    EXPECT_TEXT(&g[4], EIO_CLOSE, "");
}

Test(eio_payload, base64_padding_variants)
{
    got_t g[2];
    int n;
    /* 0, 1, 2, 3, 4, 5 and 6 bytes: no padding, "==", "=" */
    cr_assert_eq(WALK("b", g, n), 1);
    cr_assert_eq(g[0].binary, 1);
    cr_assert_eq(g[0].len, 0);
    cr_assert_eq(WALK("bAQ==", g, n), 1);
    EXPECT_BIN(&g[0], "\x01");
    cr_assert_eq(WALK("bAQI=", g, n), 1);
    EXPECT_BIN(&g[0], "\x01\x02");
    cr_assert_eq(WALK("bAQID", g, n), 1);
    EXPECT_BIN(&g[0], "\x01\x02\x03");
    cr_assert_eq(WALK("bAQIDBA==", g, n), 1);
    EXPECT_BIN(&g[0], "\x01\x02\x03\x04");
    cr_assert_eq(WALK("bAQIDBAU=", g, n), 1);
    EXPECT_BIN(&g[0], "\x01\x02\x03\x04\x05");
    cr_assert_eq(WALK("bAQIDBAUG", g, n), 1);
    EXPECT_BIN(&g[0], "\x01\x02\x03\x04\x05\x06");
    /* zeros and 0xff: nothing is lost or added */
    cr_assert_eq(WALK("bAAAA", g, n), 1);
    EXPECT_BIN(&g[0], "\0\0\0");
    cr_assert_eq(WALK("b//8=", g, n), 1);
    EXPECT_BIN(&g[0], "\xff\xff");
    cr_assert_eq(WALK("bAA==", g, n), 1);
    EXPECT_BIN(&g[0], "\0");
    /* the record separator and 'b' as binary content */
    cr_assert_eq(WALK("bHmI=", g, n), 1);
    EXPECT_BIN(&g[0], "\x1e"
                      "b");
}

Test(eio_payload, binary_between_text_packets_and_scratch_reuse)
{
    got_t g[8];
    int n;
    /* a long binary first (the scratch grows), then short ones (it is reused) */
    char in[512];
    size_t k = 0;
    in[k++] = 'b';
    for (int i = 0; i < 100; i++)
        in[k++] = "QUJD"[i % 4]; /* "ABC" x 25 */
    static const char rest[] = "\x1e"
                               "4x\x1e"
                               "bAQ==\x1e"
                               "bAQID\x1e"
                               "4y";
    memcpy(in + k, rest, sizeof(rest) - 1);
    k += sizeof(rest) - 1;
    cr_assert_eq(walk(in, k, g, 8, &n), 5);
    cr_assert_eq(g[0].binary, 1);
    cr_assert_eq(g[0].len, 75);
    for (size_t i = 0; i < 75; i++)
        cr_assert_eq(g[0].data[i], "ABC"[i % 3]);
    EXPECT_TEXT(&g[1], EIO_MESSAGE, "x");
    EXPECT_BIN(&g[2], "\x01");
    EXPECT_BIN(&g[3], "\x01\x02\x03");
    EXPECT_TEXT(&g[4], EIO_MESSAGE, "y");
}

Test(eio_payload, malformed_packets_refused)
{
    static const struct {
        const char *in;
        size_t len;
        int before; /* packets decoded before the error */
    } bad[] = {
        {"\x1e", 1, 0}, /* an empty packet */
        {"4a\x1e\x1e"
         "4b",
         6, 1},            /* an empty packet between two */
        {"4a\x1e", 3, -1}, /* a trailing separator: an empty last packet */
        {"7", 1, 0},       /* type out of range */
        {"x", 1, 0},
        {"4ok\x1e"
         "9",
         5, 1},
        {"bA", 2, 0}, /* base64 not a multiple of 4 */
        {"bAQI", 4, 0},
        {"bAQIDB", 6, 0},
        {"b!!!!", 5, 0}, /* not base64 */
        {"bAQ\x1e"
         "D",
         5, 0}, /* base64 cut by the separator */
        {"4ok\x1e"
         "bA=",
         7, 1},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        got_t g[4];
        int n;
        int r = walk(bad[i].in, bad[i].len, g, 4, &n);
        if (bad[i].before < 0) {
            /* a trailing separator: either refused, or the walk ends there */
            cr_assert(r == -EINVAL || r == 1, "case %zu: %d", i, r);
            continue;
        }
        cr_assert_eq(r, -EINVAL, "case %zu accepted (%d packets)", i, n);
        cr_assert_eq(n, bad[i].before, "case %zu: %d packets before the error", i, n);
    }
}

/* Every prefix of a payload: whatever it decodes, nothing is read past its end, and
 * whole packets before the cut come out as they do from the whole payload. */
Test(eio_payload, every_truncation_is_safe)
{
    static const char pl[] = "4hello\x1e"
                             "bAQIDBA==\x1e"
                             "2\x1e"
                             "3probe\x1e"
                             "4\xe2\x82\xac\x1e"
                             "bAQI=\x1e"
                             "6";
    got_t whole[8];
    int nw;
    cr_assert_eq(walk(pl, sizeof(pl) - 1, whole, 8, &nw), 7);
    for (size_t cut = 0; cut <= sizeof(pl) - 1; cut++) {
        got_t g[8];
        int n;
        int r = walk(pl, cut, g, 8, &n);
        /* packets fully before the cut are the same */
        for (int i = 0; i < n - 1; i++) {
            cr_assert_eq(g[i].type, whole[i].type, "cut %zu packet %d", cut, i);
            cr_assert_eq(g[i].binary, whole[i].binary);
            cr_assert_eq(g[i].len, whole[i].len);
            cr_assert(memcmp(g[i].data, whole[i].data, g[i].len) == 0);
        }
        cr_assert(r >= 0 || r == -EINVAL);
    }
}

/* Split: the payload's packets walked one record at a time give the same packets as
 * the whole payload, and as each record decoded on its own. */
Test(eio_payload, split_at_every_separator)
{
    static const char pl[] = "40\x1e"
                             "42[\"a\",1]\x1e"
                             "bAQIDBA==\x1e"
                             "451-[\"b\",{\"_placeholder\":true,\"num\":0}]\x1e"
                             "b/w==\x1e"
                             "3";
    got_t whole[8];
    int nw;
    cr_assert_eq(walk(pl, sizeof(pl) - 1, whole, 8, &nw), 6);
    size_t start = 0;
    int k = 0;
    for (size_t i = 0; i <= sizeof(pl) - 1; i++) {
        if (i < sizeof(pl) - 1 && pl[i] != '\x1e') continue;
        got_t one[2];
        int n;
        cr_assert_eq(walk(pl + start, i - start, one, 2, &n), 1, "record %d", k);
        cr_assert_eq(one[0].type, whole[k].type);
        cr_assert_eq(one[0].binary, whole[k].binary);
        cr_assert_eq(one[0].len, whole[k].len);
        cr_assert(memcmp(one[0].data, whole[k].data, one[0].len) == 0, "record %d", k);
        /* the record plus the separator walks to the same packet; the remainder starts
         * right after the separator */
        if (i < sizeof(pl) - 1) {
            guard_t gd = {0};
            const char *in = guard_copy(&gd, pl + start, i + 1 - start);
            const char *cur = in, *end = in + (i + 1 - start);
            buf_t *scratch = NULL;
            eio_packet_t p;
            cr_assert_eq(eio_payload_next(&cur, end, &p, &scratch), 1);
            cr_assert_eq(cur, end, "the cursor moves past the separator");
            buf_unref(scratch);
            guard_release(&gd);
        }
        start = i + 1;
        k++;
    }
    cr_assert_eq(k, 6);
}

/* ---- eio_payload_append ---- */

static buf_t *fresh(void)
{
    buf_t *b = buf_new(0);
    cr_assert_not_null(b);
    return b;
}

#define EXPECT_BUF(b, lit)                                                                         \
    do {                                                                                           \
        cr_assert_eq((b)->len, sizeof(lit) - 1, "\"%.*s\" (%zu bytes) want \"%s\"", (int)(b)->len, \
                     (b)->data, (b)->len, lit);                                                    \
        cr_assert(memcmp((b)->data, lit, sizeof(lit) - 1) == 0, "\"%.*s\" want \"%s\"",            \
                  (int)(b)->len, (b)->data, lit);                                                  \
    } while (0)

Test(eio_payload_append, text_packets_joined_by_the_separator)
{
    buf_t *b = fresh();
    cr_assert_eq(eio_payload_append(&b, EIO_MESSAGE, 0, "hello", 5), 0);
    EXPECT_BUF(b, "4hello");
    cr_assert_eq(eio_payload_append(&b, EIO_PING, 0, "", 0), 0);
    cr_assert_eq(eio_payload_append(&b, EIO_NOOP, 0, NULL, 0), 0);
    cr_assert_eq(eio_payload_append(&b, EIO_MESSAGE, 0, "\xe2\x82\xac", 3), 0);
    EXPECT_BUF(b, "4hello\x1e"
                  "2\x1e"
                  "6\x1e"
                  "4\xe2\x82\xac");
    buf_unref(b);
}

Test(eio_payload_append, binary_as_base64_every_padding)
{
    static const struct {
        const char *data;
        size_t len;
        const char *want;
    } cases[] = {
        {"", 0, "b"},
        {"\x01", 1, "bAQ=="},
        {"\x01\x02", 2, "bAQI="},
        {"\x01\x02\x03", 3, "bAQID"},
        {"\x01\x02\x03\x04", 4, "bAQIDBA=="},
        {"\x01\x02\x03\x04\x05", 5, "bAQIDBAU="},
        {"\x01\x02\x03\x04\x05\x06", 6, "bAQIDBAUG"},
        {"\xff\xfe\0", 3, "b//4A"},
        {"\x1e", 1, "bHg=="},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        buf_t *b = fresh();
        cr_assert_eq(eio_payload_append(&b, EIO_MESSAGE, 1, cases[i].data, cases[i].len), 0);
        size_t wl = strlen(cases[i].want);
        cr_assert_eq(b->len, wl, "case %zu: \"%.*s\" want \"%s\"", i, (int)b->len, b->data,
                     cases[i].want);
        cr_assert(memcmp(b->data, cases[i].want, wl) == 0, "case %zu: \"%.*s\" want \"%s\"", i,
                  (int)b->len, b->data, cases[i].want);
        buf_unref(b);
    }
}

Test(eio_payload_append, round_trip_through_the_walker)
{
    /* every length 0..200 of every byte pattern, text and binary interleaved */
    buf_t *b = fresh();
    unsigned char bin[200];
    for (size_t i = 0; i < sizeof(bin); i++)
        bin[i] = (unsigned char)(i * 37 + 11);
    for (size_t len = 0; len <= 200; len++) {
        cr_assert_eq(eio_payload_append(&b, EIO_MESSAGE, 1, (const char *)bin, len), 0);
        char t[16];
        int tn = snprintf(t, sizeof(t), "n%zu", len);
        cr_assert_eq(eio_payload_append(&b, EIO_MESSAGE, 0, t, (size_t)tn), 0);
    }
    guard_t g = {0};
    const char *in = guard_copy(&g, b->data, b->len);
    const char *cur = in, *end = in + b->len;
    buf_t *scratch = NULL;
    eio_packet_t p;
    for (size_t len = 0; len <= 200; len++) {
        cr_assert_eq(eio_payload_next(&cur, end, &p, &scratch), 1, "binary %zu", len);
        cr_assert_eq(p.binary, 1);
        cr_assert_eq(p.type, EIO_MESSAGE);
        cr_assert_eq(p.len, len, "binary of %zu bytes came back as %zu", len, p.len);
        cr_assert(len == 0 || memcmp(p.data, bin, len) == 0, "binary %zu", len);
        cr_assert_eq(eio_payload_next(&cur, end, &p, &scratch), 1);
        char t[16];
        int tn = snprintf(t, sizeof(t), "n%zu", len);
        cr_assert_eq(p.binary, 0);
        cr_assert_eq(p.len, (size_t)tn);
        cr_assert(memcmp(p.data, t, (size_t)tn) == 0);
    }
    cr_assert_eq(eio_payload_next(&cur, end, &p, &scratch), 0);
    buf_unref(scratch);
    guard_release(&g);
    buf_unref(b);
}

/* ---- eio_open_json ---- */

Test(eio_open_json, exact_document_with_and_without_upgrades)
{
    buf_t *b = fresh();
    cr_assert_eq(eio_open_json(&b, "0123456789abcdef0123", 1, 25000, 20000, 1000000), 0);
    EXPECT_BUF(
        b, "{\"sid\":\"0123456789abcdef0123\",\"upgrades\":[\"websocket\"],\"pingInterval\":25000,"
           "\"pingTimeout\":20000,\"maxPayload\":1000000}");
    buf_unref(b);
    b = fresh();
    cr_assert_eq(eio_open_json(&b, "s", 0, 300, 200, 1000000), 0);
    EXPECT_BUF(b, "{\"sid\":\"s\",\"upgrades\":[],\"pingInterval\":300,\"pingTimeout\":200,"
                  "\"maxPayload\":1000000}");
    /* valid JSON with the right types */
    json_error_t err;
    json_t *doc = json_loadb(b->data, b->len, 0, &err);
    cr_assert_not_null(doc, "%s", err.text);
    cr_assert(json_is_array(json_object_get(doc, "upgrades")));
    cr_assert(json_is_integer(json_object_get(doc, "pingInterval")));
    json_decref(doc);
    buf_unref(b);
}

Test(eio_open_json, appends_after_the_open_type)
{
    buf_t *b = fresh();
    cr_assert_eq(buf_puts(&b, "0"), 0);
    cr_assert_eq(eio_open_json(&b, "x", 1, 1, 2, 3), 0);
    EXPECT_BUF(b,
               "0{\"sid\":\"x\",\"upgrades\":[\"websocket\"],\"pingInterval\":1,\"pingTimeout\":2,"
               "\"maxPayload\":3}");
    buf_unref(b);
}

/* ---- eio_error_message ---- */

Test(eio_error_message, the_protocol_messages)
{
    cr_assert_str_eq(eio_error_message(EIO_ERR_TRANSPORT_UNKNOWN), "Transport unknown");
    cr_assert_str_eq(eio_error_message(EIO_ERR_SESSION_UNKNOWN), "Session ID unknown");
    cr_assert_str_eq(eio_error_message(EIO_ERR_BAD_HANDSHAKE_METHOD), "Bad handshake method");
    cr_assert_str_eq(eio_error_message(EIO_ERR_BAD_REQUEST), "Bad request");
    cr_assert_str_eq(eio_error_message(EIO_ERR_FORBIDDEN), "Forbidden");
    cr_assert_str_eq(eio_error_message(EIO_ERR_UNSUPPORTED_VERSION),
                     "Unsupported protocol version");
    cr_assert_eq(EIO_ERR_TRANSPORT_UNKNOWN, 0);
    cr_assert_eq(EIO_ERR_SESSION_UNKNOWN, 1);
    cr_assert_eq(EIO_ERR_BAD_HANDSHAKE_METHOD, 2);
    cr_assert_eq(EIO_ERR_BAD_REQUEST, 3);
    cr_assert_eq(EIO_ERR_FORBIDDEN, 4);
    cr_assert_eq(EIO_ERR_UNSUPPORTED_VERSION, 5);
}

Test(eio_error_message, unknown_codes_are_bad_request)
{
    cr_assert_str_eq(eio_error_message(-1), "Bad request");
    cr_assert_str_eq(eio_error_message(6), "Bad request");
    cr_assert_str_eq(eio_error_message(1000), "Bad request");
}
