/* transport/ws_deflate: the permessage-deflate offer parser (every input at a guard page,
 * every prefix too), the answer, compression and decompression with and without context
 * takeover, zip bombs; and a ws_session with deflate on, fed compressed client frames
 * whole, one byte at a time and split at every offset. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "guard.h"
#include "transport/ws_codec.h"
#include "transport/ws_deflate.h"

/* ---- the offer parser ---- */

static int negotiate(const char *hdr, unsigned want, ws_pmd_t *out)
{
    guard_t g = {0};
    size_t n = strlen(hdr);
    const char *p = guard_copy(&g, hdr, n);
    memset(out, 0xee, sizeof(*out));
    int r = ws_pmd_negotiate(p, n, want, out);
    guard_release(&g);
    return r;
}

static void expect_accept(const char *hdr, int cnct, unsigned sbits, unsigned cbits)
{
    ws_pmd_t p;
    cr_assert_eq(negotiate(hdr, 10, &p), 1, "accepted: %s", hdr);
    cr_assert_eq(p.client_no_context_takeover, cnct, "%s: client_no_context_takeover", hdr);
    cr_assert_eq(p.server_max_bits, sbits, "%s: server bits %u", hdr, p.server_max_bits);
    cr_assert_eq(p.client_max_bits, cbits, "%s: client bits %u", hdr, p.client_max_bits);
}

Test(ws_pmd_negotiate, plain_offers)
{
    expect_accept("permessage-deflate", 0, 0, 0);
    expect_accept("PerMessage-Deflate", 0, 0, 0);
    expect_accept("permessage-deflate; client_max_window_bits", 0, 0, 10);
    expect_accept("permessage-deflate; client_max_window_bits=9", 0, 0, 9);
    expect_accept("permessage-deflate; client_max_window_bits=15", 0, 0, 10);
    expect_accept("permessage-deflate; client_no_context_takeover", 1, 0, 0);
    expect_accept("permessage-deflate; server_no_context_takeover", 0, 0, 0);
    expect_accept("permessage-deflate; server_max_window_bits=8", 0, 8, 0);
    expect_accept("permessage-deflate;server_max_window_bits=15;client_no_context_takeover", 1, 15,
                  0);
    expect_accept("permessage-deflate \t; \tserver_max_window_bits = \"12\" ", 0, 12, 0);
    expect_accept("permessage-deflate; server_max_window_bits=\"1\\2\"", 0, 12, 0);
    expect_accept("permessage-deflate; Client_Max_Window_Bits", 0, 0, 10);
}

Test(ws_pmd_negotiate, first_acceptable_offer_wins)
{
    expect_accept("x-webkit-deflate-frame, permessage-deflate; client_max_window_bits=8", 0, 0, 8);
    expect_accept("permessage-deflate; server_max_window_bits=7, permessage-deflate; "
                  "client_no_context_takeover",
                  1, 0, 0);
    expect_accept("permessage-deflate; server_max_window_bits=9, permessage-deflate", 0, 9, 0);
    expect_accept(", , permessage-deflate,", 0, 0, 0);
    expect_accept("foo; a=\"quo\\ted\"; b, permessage-deflate", 0, 0, 0);
}

Test(ws_pmd_negotiate, declined_offers)
{
    static const char *bad[] = {
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=08",
        "permessage-deflate; server_max_window_bits=+9",
        "permessage-deflate; server_max_window_bits=100",
        "permessage-deflate; client_max_window_bits=0",
        "permessage-deflate; client_max_window_bits=\"\\7\"",
        "permessage-deflate; server_no_context_takeover=true",
        "permessage-deflate; client_no_context_takeover=\"x\"",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
        "permessage-deflate; mystery",
        "permessage-deflatex",
        "x-webkit-deflate-frame",
        "",
        "   ",
        ",,",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ws_pmd_t p;
        cr_assert_eq(negotiate(bad[i], 10, &p), 0, "declined: \"%s\"", bad[i]);
    }
}

Test(ws_pmd_negotiate, malformed_headers)
{
    static const char *bad[] = {
        "permessage-deflate;",
        "permessage-deflate; =9",
        "permessage-deflate; a=",
        "permessage-deflate; a=\"",
        "permessage-deflate; a=\"9",
        "permessage-deflate; a=\"\\",
        "permessage-deflate; a=\"\"",
        "permessage-deflate; a=\"a b\"",
        "foo; a=\"quoted, with comma\", permessage-deflate",
        "foo; a=\"q\\\"t\", permessage-deflate",
        "permessage-deflate; a b",
        "permessage-deflate a",
        "; permessage-deflate",
        "permessage-deflate, ;",
        "permessage@deflate",
        "permessage-deflate; a=b=c",
        "permessage-deflate; client_max_window_bits=10 11",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ws_pmd_t p;
        cr_assert_eq(negotiate(bad[i], 10, &p), -EINVAL, "malformed: \"%s\"", bad[i]);
    }
}

Test(ws_pmd_negotiate, every_prefix_reads_only_its_bytes)
{
    /* each prefix of an offer list, at a guard page: whatever the verdict, no over-read,
     * and a verdict that is one of the three */
    const char *full = "x-foo; a=\"q\\t\", permessage-deflate; client_max_window_bits=12; "
                       "server_no_context_takeover; server_max_window_bits=11, permessage-deflate";
    size_t n = strlen(full);
    for (size_t k = 0; k <= n; k++) {
        char *cut = strndup(full, k);
        ws_pmd_t p;
        int r = negotiate(cut, 10, &p);
        cr_assert(r == 0 || r == 1 || r == -EINVAL, "prefix %zu: %d", k, r);
        free(cut);
    }
    ws_pmd_t p;
    cr_assert_eq(negotiate(full, 15, &p), 1);
    cr_assert_eq(p.client_max_bits, 12);
    cr_assert_eq(p.server_max_bits, 11);
}

Test(ws_pmd_negotiate, want_bits_out_of_range_means_15)
{
    ws_pmd_t p;
    cr_assert_eq(negotiate("permessage-deflate; client_max_window_bits", 3, &p), 1);
    cr_assert_eq(p.client_max_bits, 15);
}

Test(ws_pmd_response, answers)
{
    char out[WS_PMD_RESPONSE_MAX];
    ws_pmd_t p = {0, 0, 0};
    cr_assert_eq(ws_pmd_response(&p, out, sizeof(out)), (int)strlen(out));
    cr_assert_str_eq(out, "permessage-deflate; server_no_context_takeover");
    p = (ws_pmd_t){1, 9, 10};
    ws_pmd_response(&p, out, sizeof(out));
    cr_assert_str_eq(out, "permessage-deflate; server_no_context_takeover; "
                          "client_no_context_takeover; server_max_window_bits=9; "
                          "client_max_window_bits=10");
    cr_assert_eq(ws_pmd_response(&p, out, 20), -ENOSPC);
}

/* ---- compression ---- */

/* Inflates a server message with an inflater of window_bits, as a client would. */
static size_t client_inflate(const buf_t *z, unsigned window_bits, uint8_t *out, size_t cap)
{
    z_stream s;
    memset(&s, 0, sizeof(s));
    cr_assert_eq(inflateInit2(&s, -(int)window_bits), Z_OK);
    uint8_t *in = malloc(z->len + 4);
    memcpy(in, z->data, z->len);
    memcpy(in + z->len, "\x00\x00\xff\xff", 4);
    s.next_in = in;
    s.avail_in = (uInt)(z->len + 4);
    s.next_out = out;
    s.avail_out = (uInt)cap;
    int r = inflate(&s, Z_SYNC_FLUSH);
    cr_assert(r == Z_OK || r == Z_STREAM_END, "inflate: %d (%s)", r, s.msg ? s.msg : "");
    cr_assert_eq(s.avail_in, 0);
    size_t n = cap - s.avail_out;
    inflateEnd(&s);
    free(in);
    return n;
}

Test(ws_pmd_deflate, round_trip_every_window)
{
    uint8_t msg[3000], back[4000];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (uint8_t)("the quick brown fox "[i % 20] + (i % 997 == 0));
    for (unsigned bits = 8; bits <= 15; bits++) {
        buf_t *z = ws_pmd_deflate(msg, sizeof(msg), bits);
        cr_assert_not_null(z);
        cr_assert(z->len < sizeof(msg) / 4, "bits %u: %zu bytes", bits, z->len);
        /* a client window of 8 bits reads the "8" (really 9) stream: no match reaches
         * further back than 250 bytes */
        size_t n = client_inflate(z, bits, back, sizeof(back));
        cr_assert_eq(n, sizeof(msg), "bits %u", bits);
        cr_assert(memcmp(back, msg, n) == 0);
        uint8_t *o = NULL;
        size_t ol = 0;
        cr_assert_eq(
            ws_pmd_inflate(NULL, 15, (const uint8_t *)z->data, z->len, sizeof(msg), &o, &ol), 0);
        cr_assert_eq(ol, sizeof(msg));
        cr_assert(memcmp(o, msg, ol) == 0);
        free(o);
        buf_unref(z);
    }
}

Test(ws_pmd_deflate, empty_message)
{
    buf_t *z = ws_pmd_deflate((const uint8_t *)"", 0, 15);
    cr_assert_not_null(z);
    uint8_t *o = NULL;
    size_t ol = 99;
    cr_assert_eq(ws_pmd_inflate(NULL, 15, (const uint8_t *)z->data, z->len, 10, &o, &ol), 0);
    cr_assert_eq(ol, 0);
    free(o);
    buf_unref(z);
}

Test(ws_pmd_frame, compressed_frame_with_rsv1_or_the_plain_one)
{
    char text[2000];
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = "abcabcabd"[i % 9];
    buf_t *plain = ws_frame_text(text, sizeof(text));
    buf_t *z = ws_pmd_frame(plain, 15);
    cr_assert_not_null(z);
    cr_assert_neq(z, plain);
    cr_assert_eq((uint8_t)z->data[0], 0xc1, "FIN + RSV1 + text: %02x", (uint8_t)z->data[0]);
    size_t pl = (uint8_t)z->data[1];
    cr_assert(pl < 126);
    cr_assert_eq(z->len, 2 + pl);
    buf_t *pz = buf_new(pl);
    buf_append(&pz, z->data + 2, pl);
    uint8_t back[2100];
    cr_assert_eq(client_inflate(pz, 15, back, sizeof(back)), sizeof(text));
    cr_assert(memcmp(back, text, sizeof(text)) == 0);
    buf_unref(pz);
    buf_unref(z);
    buf_unref(plain);

    /* too short to gain: the same buffer comes back, one more reference */
    plain = ws_frame_text("{}", 2);
    z = ws_pmd_frame(plain, 15);
    cr_assert_eq(z, plain);
    cr_assert_eq(plain->refs, 2);
    buf_unref(z);
    buf_unref(plain);
}

Test(ws_pmd_frame, sixteen_and_sixty_four_bit_lengths)
{
    /* random-ish bytes barely compress: lengths past 125 and 65535 */
    size_t sizes[] = {400, 200000};
    for (size_t k = 0; k < 2; k++) {
        size_t n = sizes[k];
        char *t = malloc(n);
        uint32_t x = 12345;
        for (size_t i = 0; i < n; i++) {
            x = x * 1103515245u + 12345u;
            t[i] = (char)('a' + (x >> 16) % 26);
        }
        buf_t *plain = ws_frame_text(t, n);
        buf_t *z = ws_pmd_frame(plain, 15);
        cr_assert_neq(z, plain);
        uint8_t l = (uint8_t)z->data[1];
        size_t hl = l == 126 ? 4 : l == 127 ? 10 : 2;
        uint64_t len = l < 126 ? l : 0;
        for (size_t i = 2; i < hl; i++)
            len = (len << 8) | (uint8_t)z->data[i];
        cr_assert_eq(len + hl, z->len, "size %zu: header says %llu", n, (unsigned long long)len);
        cr_assert_eq(hl, n > 150000 ? 10u : 4u);
        uint8_t *o = NULL;
        size_t ol = 0;
        cr_assert_eq(ws_pmd_inflate(NULL, 15, (const uint8_t *)z->data + hl, len, n, &o, &ol), 0);
        cr_assert_eq(ol, n);
        cr_assert(memcmp(o, t, n) == 0);
        free(o);
        buf_unref(z);
        buf_unref(plain);
        free(t);
    }
}

/* ---- decompression ---- */

/* A client deflater that keeps its context between messages (context takeover). */
typedef struct client_z_s {
    z_stream s;
} client_z_t;

static size_t client_deflate(client_z_t *c, const char *msg, uint8_t *out, size_t cap)
{
    c->s.next_in = (Bytef *)(uintptr_t)msg;
    c->s.avail_in = (uInt)strlen(msg);
    c->s.next_out = out;
    c->s.avail_out = (uInt)cap;
    cr_assert_eq(deflate(&c->s, Z_SYNC_FLUSH), Z_OK);
    size_t n = cap - c->s.avail_out;
    cr_assert(n >= 4 && memcmp(out + n - 4, "\x00\x00\xff\xff", 4) == 0);
    return n - 4;
}

Test(ws_pmd_inflate, context_takeover_keeps_a_bounded_history)
{
    client_z_t c;
    memset(&c, 0, sizeof(c));
    cr_assert_eq(deflateInit2(&c.s, 9, Z_DEFLATED, -10, 8, Z_DEFAULT_STRATEGY), Z_OK);
    ws_pmd_hist_t h = {0};
    const char *msgs[] = {
        "{\"type\":\"subscribe\",\"channels\":[\"alpha.beta.gamma\",\"delta.epsilon\"]}",
        "{\"type\":\"subscribe\",\"channels\":[\"alpha.beta.gamma\",\"delta.epsilon\"]}",
        "{\"type\":\"unsubscribe\",\"channels\":[\"alpha.beta.gamma\"]}",
        NULL,
    };
    char big[1500];
    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    msgs[3] = big;
    uint8_t z[2048];
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < 4; i++) {
            size_t zl = client_deflate(&c, msgs[i], z, sizeof(z));
            uint8_t *o = NULL;
            size_t ol = 0;
            cr_assert_eq(ws_pmd_inflate(&h, 10, z, zl, 4096, &o, &ol), 0, "round %d msg %zu", round,
                         i);
            cr_assert_eq(ol, strlen(msgs[i]));
            cr_assert(memcmp(o, msgs[i], ol) == 0, "round %d msg %zu", round, i);
            free(o);
            cr_assert(h.len <= 1024, "history %zu > 2^10", h.len);
        }
    }
    cr_assert_eq(h.len, 1024);
    /* a repeated message refers back into the history: without it, it does not inflate */
    size_t zl = client_deflate(&c, msgs[0], z, sizeof(z));
    uint8_t *o = NULL;
    size_t ol = 0;
    cr_assert_eq(ws_pmd_inflate(&h, 10, z, zl, 4096, &o, &ol), 0);
    free(o);
    o = NULL;
    zl = client_deflate(&c, msgs[0], z, sizeof(z));
    cr_assert(zl < 20, "the repeat is a back reference: %zu bytes", zl);
    int r = ws_pmd_inflate(NULL, 10, z, zl, 4096, &o, &ol);
    cr_assert(r == -EBADMSG || (r == 0 && (ol != strlen(msgs[0]) || memcmp(o, msgs[0], ol) != 0)),
              "a message that needs the history decoded without it");
    free(o);
    o = NULL;
    cr_assert_eq(ws_pmd_inflate(&h, 10, z, zl, 4096, &o, &ol), 0);
    cr_assert_eq(ol, strlen(msgs[0]));
    cr_assert(memcmp(o, msgs[0], ol) == 0);
    free(o);
    ws_pmd_hist_free(&h);
    cr_assert_null(h.data);
    deflateEnd(&c.s);
}

Test(ws_pmd_inflate, bounded_by_max_zip_bomb)
{
    size_t n = 4u << 20;
    uint8_t *zeros = calloc(1, n);
    buf_t *z = ws_pmd_deflate(zeros, n, 15);
    cr_assert(z->len < 8192, "%zu", z->len);
    uint8_t *o = (uint8_t *)1;
    size_t ol = 0;
    cr_assert_eq(ws_pmd_inflate(NULL, 15, (const uint8_t *)z->data, z->len, 65536, &o, &ol),
                 -EMSGSIZE);
    o = NULL;
    cr_assert_eq(ws_pmd_inflate(NULL, 15, (const uint8_t *)z->data, z->len, n, &o, &ol), 0);
    cr_assert_eq(ol, n);
    free(o);
    cr_assert_eq(ws_pmd_inflate(NULL, 15, (const uint8_t *)z->data, z->len, n - 1, &o, &ol),
                 -EMSGSIZE);
    buf_unref(z);
    free(zeros);
}

Test(ws_pmd_inflate, bad_data_and_bfinal)
{
    uint8_t *o = NULL;
    size_t ol = 0;
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x00};
    cr_assert_eq(ws_pmd_inflate(NULL, 15, junk, sizeof(junk), 1000, &o, &ol), -EBADMSG);
    /* a message ending in a final block (BFINAL) is fine: the tail is not read */
    z_stream s;
    memset(&s, 0, sizeof(s));
    cr_assert_eq(deflateInit2(&s, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    uint8_t z[256];
    s.next_in = (Bytef *)"hello hello hello";
    s.avail_in = 17;
    s.next_out = z;
    s.avail_out = sizeof(z);
    cr_assert_eq(deflate(&s, Z_FINISH), Z_STREAM_END);
    size_t zl = sizeof(z) - s.avail_out;
    deflateEnd(&s);
    ws_pmd_hist_t h = {0};
    cr_assert_eq(ws_pmd_inflate(&h, 15, z, zl, 1000, &o, &ol), 0);
    cr_assert_eq(ol, 17);
    cr_assert(memcmp(o, "hello hello hello", 17) == 0);
    cr_assert_eq(h.len, 17);
    free(o);
    ws_pmd_hist_free(&h);
}

/* ---- a session with deflate on ---- */

typedef struct rec_s {
    int n_msgs;
    uint8_t *msg;
    size_t msg_len;
    uint8_t *out;
    size_t out_len;
} rec_t;

static void on_message(ws_session_t *s, uint8_t opcode, const uint8_t *msg, size_t len, void *ud)
{
    (void)s;
    (void)opcode;
    rec_t *r = ud;
    r->n_msgs++;
    free(r->msg);
    r->msg = malloc(len ? len : 1);
    if (len) memcpy(r->msg, msg, len);
    r->msg_len = len;
}

static int on_write(ws_session_t *s, const uint8_t *data, size_t len, void *ud)
{
    (void)s;
    rec_t *r = ud;
    r->out = realloc(r->out, r->out_len + len + 1);
    memcpy(r->out + r->out_len, data, len);
    r->out_len += len;
    return 0;
}

static const ws_session_cbs_t cbs = {on_message, on_write};

/* One masked client frame with the given first byte. Returns its length. */
static size_t client_frame(uint8_t *out, uint8_t b0, const uint8_t *payload, size_t len)
{
    static const uint8_t key[4] = {0x11, 0x22, 0x33, 0x44};
    size_t n = 0;
    out[n++] = b0;
    if (len < 126) {
        out[n++] = (uint8_t)(0x80 | len);
    } else {
        out[n++] = 0x80 | 126;
        out[n++] = (uint8_t)(len >> 8);
        out[n++] = (uint8_t)len;
    }
    memcpy(out + n, key, 4);
    n += 4;
    for (size_t i = 0; i < len; i++)
        out[n + i] = payload[i] ^ key[i % 4];
    return n + len;
}

/* Feeds in to a session with deflate pmd (NULL: off), cut at cuts, each piece at a
 * guard page. */
static void run_session(const ws_pmd_t *pmd, const uint8_t *in, const size_t *cuts, size_t n_cuts,
                        size_t max, rec_t *r)
{
    ws_session_t *s = NULL;
    cr_assert_eq(ws_session_new(&s, &cbs, r, max), 0);
    if (pmd) ws_session_set_deflate(s, pmd);
    size_t a = 0;
    for (size_t c = 0; c < n_cuts; c++) {
        guard_t g = {0};
        const uint8_t *p = guard_copy(&g, in + a, cuts[c] - a);
        int rc = ws_session_feed(s, p, cuts[c] - a);
        guard_release(&g);
        a = cuts[c];
        if (rc < 0) break;
    }
    ws_session_free(s);
}

Test(ws_session_deflate, compressed_messages_in_any_split)
{
    const char *m1 = "{\"type\":\"subscribe\",\"channels\":[\"news\",\"news.sport\",\"news\"]}";
    const char *m2 = "{\"type\":\"subscribe\",\"channels\":[\"news\",\"news.sport\",\"news\"]}";
    client_z_t c;
    memset(&c, 0, sizeof(c));
    cr_assert_eq(deflateInit2(&c.s, 9, Z_DEFLATED, -10, 8, Z_DEFAULT_STRATEGY), Z_OK);
    uint8_t z1[256], z2[256], in[600];
    size_t l1 = client_deflate(&c, m1, z1, sizeof(z1));
    size_t l2 = client_deflate(&c, m2, z2, sizeof(z2));
    deflateEnd(&c.s);
    cr_assert(l2 < l1, "the second message refers back to the first");
    size_t n = client_frame(in, 0xc1, z1, l1);
    /* the second one fragmented: RSV1 on the first fragment only */
    n += client_frame(in + n, 0x41, z2, 3);
    n += client_frame(in + n, 0x80, z2 + 3, l2 - 3);
    ws_pmd_t pmd = {0, 0, 10};
    for (size_t k = 0; k <= n; k++) {
        size_t cuts[2] = {k, n};
        size_t *all = NULL;
        size_t n_cuts = 2;
        if (k == 0) { /* and once byte by byte */
            all = malloc(n * sizeof(size_t));
            for (size_t i = 0; i < n; i++)
                all[i] = i + 1;
            n_cuts = n;
        }
        rec_t r = {0};
        run_session(&pmd, in, all ? all : cuts, n_cuts, 4096, &r);
        cr_assert_eq(r.n_msgs, 2, "split %zu: %d messages", k, r.n_msgs);
        cr_assert_eq(r.msg_len, strlen(m2));
        cr_assert(memcmp(r.msg, m2, r.msg_len) == 0, "split %zu", k);
        cr_assert_eq(r.out_len, 0, "split %zu: nothing written", k);
        free(r.msg);
        free(r.out);
        free(all);
    }
}

static void expect_close(const ws_pmd_t *pmd, const uint8_t *in, size_t n, size_t max,
                         uint16_t code)
{
    for (size_t k = 1; k <= n; k++) {
        size_t cuts[2] = {k, n};
        rec_t r = {0};
        run_session(pmd, in, cuts, k == n ? 1 : 2, max, &r);
        cr_assert_eq(r.n_msgs, 0, "split %zu", k);
        cr_assert(r.out_len >= 4, "split %zu: no close written", k);
        cr_assert_eq(r.out[0], 0x88);
        cr_assert_eq((r.out[2] << 8) | r.out[3], code, "split %zu: close %d, want %d", k,
                     (r.out[2] << 8) | r.out[3], code);
        free(r.msg);
        free(r.out);
    }
}

Test(ws_session_deflate, rsv1_misuse_is_close_1002)
{
    uint8_t z[64], in[128];
    buf_t *d = ws_pmd_deflate((const uint8_t *)"{\"a\":1}", 7, 15);
    memcpy(z, d->data, d->len);
    size_t zl = d->len;
    buf_unref(d);
    ws_pmd_t pmd = {1, 0, 0};
    /* without negotiation */
    size_t n = client_frame(in, 0xc1, z, zl);
    expect_close(NULL, in, n, 1000, 1002);
    /* on a continuation */
    n = client_frame(in, 0x01, (const uint8_t *)"{", 1);
    n += client_frame(in + n, 0xc0, (const uint8_t *)"}", 1);
    expect_close(&pmd, in, n, 1000, 1002);
    /* on a ping */
    n = client_frame(in, 0xc9, (const uint8_t *)"p", 1);
    expect_close(&pmd, in, n, 1000, 1002);
    /* RSV2 */
    n = client_frame(in, 0xa1, z, zl);
    expect_close(&pmd, in, n, 1000, 1002);
}

Test(ws_session_deflate, bomb_is_1009_junk_is_1007_bad_utf8_is_1007)
{
    size_t big = 1u << 20;
    uint8_t *zeros = calloc(1, big);
    buf_t *d = ws_pmd_deflate(zeros, big, 15);
    free(zeros);
    uint8_t *in = malloc(d->len + 16);
    size_t n = client_frame(in, 0xc2, (const uint8_t *)d->data, d->len);
    buf_unref(d);
    ws_pmd_t pmd = {1, 0, 0};
    rec_t r = {0};
    size_t whole = n;
    run_session(&pmd, in, &whole, 1, 65536, &r);
    cr_assert_eq(r.n_msgs, 0);
    cr_assert_eq((r.out[2] << 8) | r.out[3], 1009);
    free(r.out);
    free(in);

    uint8_t f[64];
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x00};
    n = client_frame(f, 0xc1, junk, sizeof(junk));
    expect_close(&pmd, f, n, 1000, 1007);

    static const uint8_t bad_utf8[] = {'{', 0xc3, 0x28, '}'};
    d = ws_pmd_deflate(bad_utf8, sizeof(bad_utf8), 15);
    n = client_frame(f, 0xc1, (const uint8_t *)d->data, d->len);
    buf_unref(d);
    expect_close(&pmd, f, n, 1000, 1007);
}

Test(ws_session_deflate, send_compresses_when_it_helps)
{
    rec_t r = {0};
    ws_session_t *s = NULL;
    cr_assert_eq(ws_session_new(&s, &cbs, &r, 1000), 0);
    cr_assert_eq(ws_session_deflate_bits(s), 0);
    ws_pmd_t pmd = {0, 9, 0};
    ws_session_set_deflate(s, &pmd);
    cr_assert_eq(ws_session_deflate_bits(s), 9);
    char msg[600];
    memset(msg, 'x', sizeof(msg));
    cr_assert_eq(ws_session_send(s, WSLAY_TEXT_FRAME, (const uint8_t *)msg, sizeof(msg)), 0);
    cr_assert_eq(r.out[0], 0xc1);
    size_t pl = r.out[1];
    cr_assert(pl < 126 && r.out_len == 2 + pl);
    uint8_t *o = NULL;
    size_t ol = 0;
    cr_assert_eq(ws_pmd_inflate(NULL, 15, r.out + 2, pl, 1000, &o, &ol), 0);
    cr_assert_eq(ol, sizeof(msg));
    free(o);
    /* a ping is never compressed; a tiny message goes plain */
    r.out_len = 0;
    cr_assert_eq(ws_session_send(s, WSLAY_PING, (const uint8_t *)msg, 20), 0);
    cr_assert_eq(r.out[0], 0x89);
    r.out_len = 0;
    cr_assert_eq(ws_session_send(s, WSLAY_TEXT_FRAME, (const uint8_t *)"{}", 2), 0);
    cr_assert_eq(r.out[0], 0x81);
    ws_session_free(s);
    free(r.out);
}
