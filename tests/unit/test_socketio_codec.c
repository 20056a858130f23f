/* transport/socketio_codec: socket.io v5 packets (https://socket.io/docs/v4/socket-io-protocol/),
 * `<type>[<attachments>-][<nsp>,][<ack id>][<JSON>]`. Every packet type, with and
 * without a namespace, ack ids, binary attachment counts; malformed framing refused
 * (bad type, `5-` without a count, huge counts, an over-long namespace or ack id);
 * encode → decode round trips. Inputs end at a guard page; every prefix of a packet is
 * decoded too (nothing read past the end, framing never invented), and packets joined
 * in an Engine.IO polling payload decode the same when split at the record separator. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "guard.h"
#include "transport/engineio_codec.h"
#include "transport/socketio_codec.h"

typedef struct dec_s {
    int rc;
    sio_packet_t p;
    char data[2048]; /* a copy of p.data */
} dec_t;

/* Decodes len bytes of s from a copy that ends at a guard page. */
static dec_t decode_n(const char *s, size_t len)
{
    dec_t d;
    memset(&d, 0, sizeof(d));
    guard_t g = {0};
    const char *in = guard_copy(&g, s, len);
    memset(&d.p, 0x5a, sizeof(d.p));
    d.rc = sio_decode(in, len, &d.p);
    if (d.rc == 0) {
        cr_assert_lt(strlen(d.p.nsp), (size_t)SIO_NSP_MAX);
        if (d.p.data) {
            cr_assert(d.p.data >= in && d.p.data + d.p.data_len <= in + len,
                      "data is borrowed from the input");
            cr_assert_gt(d.p.data_len, 0);
            cr_assert_lt(d.p.data_len, sizeof(d.data));
            memcpy(d.data, d.p.data, d.p.data_len);
            d.p.data = d.data;
        } else {
            cr_assert_eq(d.p.data_len, 0);
        }
    }
    guard_release(&g);
    return d;
}

static dec_t decode(const char *s)
{
    return decode_n(s, strlen(s));
}

static void expect(const char *s, int type, unsigned att, const char *nsp, long ack,
                   const char *data)
{
    dec_t d = decode(s);
    cr_assert_eq(d.rc, 0, "\"%s\" refused", s);
    cr_assert_eq(d.p.type, type, "\"%s\": type %d", s, d.p.type);
    cr_assert_eq(d.p.attachments, att, "\"%s\": attachments %u", s, d.p.attachments);
    cr_assert_str_eq(d.p.nsp, nsp, "\"%s\": nsp", s);
    cr_assert_eq(d.p.ack_id, ack, "\"%s\": ack id %ld", s, d.p.ack_id);
    if (!data) {
        cr_assert_null(d.p.data, "\"%s\": data \"%.*s\"", s, (int)d.p.data_len, d.data);
    } else {
        cr_assert_not_null(d.p.data, "\"%s\": no data", s);
        cr_assert_eq(d.p.data_len, strlen(data), "\"%s\": data \"%.*s\"", s, (int)d.p.data_len,
                     d.data);
        cr_assert(memcmp(d.data, data, d.p.data_len) == 0, "\"%s\": data \"%.*s\"", s,
                  (int)d.p.data_len, d.data);
    }
}

static void refused(const char *s, size_t len)
{
    dec_t d = decode_n(s, len);
    cr_assert_eq(d.rc, -EINVAL, "\"%.*s\" accepted: type %d nsp %s ack %ld", (int)len, s, d.p.type,
                 d.p.nsp, d.p.ack_id);
}

#define REFUSED(lit) refused((lit), sizeof(lit) - 1)

/* ---- every type (the protocol document's examples) ---- */

Test(sio_decode, connect)
{
    expect("0", SIO_CONNECT, 0, "/", -1, NULL);
    expect("0/admin,", SIO_CONNECT, 0, "/admin", -1, NULL);
    expect("0{\"token\":\"123\"}", SIO_CONNECT, 0, "/", -1, "{\"token\":\"123\"}");
    expect("0/admin,{\"token\":\"123\"}", SIO_CONNECT, 0, "/admin", -1, "{\"token\":\"123\"}");
    /* the server's answer */
    expect("0{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}", SIO_CONNECT, 0, "/", -1,
           "{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}");
}

Test(sio_decode, disconnect)
{
    expect("1", SIO_DISCONNECT, 0, "/", -1, NULL);
    expect("1/admin,", SIO_DISCONNECT, 0, "/admin", -1, NULL);
}

Test(sio_decode, event)
{
    expect("2[\"hello\",1]", SIO_EVENT, 0, "/", -1, "[\"hello\",1]");
    expect("2/admin,[\"project:delete\",123]", SIO_EVENT, 0, "/admin", -1,
           "[\"project:delete\",123]");
    expect("212[\"hello\"]", SIO_EVENT, 0, "/", 12, "[\"hello\"]");
    expect("2/admin,456[\"project:delete\",123]", SIO_EVENT, 0, "/admin", 456,
           "[\"project:delete\",123]");
    expect("20[\"x\"]", SIO_EVENT, 0, "/", 0, "[\"x\"]");
}

Test(sio_decode, ack)
{
    expect("3/admin,456[]", SIO_ACK, 0, "/admin", 456, "[]");
    expect("312[\"ok\"]", SIO_ACK, 0, "/", 12, "[\"ok\"]");
    expect("30[{\"channels\":[\"a\"]}]", SIO_ACK, 0, "/", 0, "[{\"channels\":[\"a\"]}]");
}

Test(sio_decode, connect_error)
{
    expect("4{\"message\":\"Not authorized\"}", SIO_CONNECT_ERROR, 0, "/", -1,
           "{\"message\":\"Not authorized\"}");
    expect("4/t1,{\"message\":\"unknown stream x\"}", SIO_CONNECT_ERROR, 0, "/t1", -1,
           "{\"message\":\"unknown stream x\"}");
}

Test(sio_decode, binary_event)
{
    expect("51-[\"hello\",{\"_placeholder\":true,\"num\":0}]", SIO_BINARY_EVENT, 1, "/", -1,
           "[\"hello\",{\"_placeholder\":true,\"num\":0}]");
    expect("51-/admin,456[\"project:delete\",{\"_placeholder\":true,\"num\":0}]", SIO_BINARY_EVENT,
           1, "/admin", 456, "[\"project:delete\",{\"_placeholder\":true,\"num\":0}]");
    expect("52-7[{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]",
           SIO_BINARY_EVENT, 2, "/", 7,
           "[{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]");
    expect("50-[\"no attachments\"]", SIO_BINARY_EVENT, 0, "/", -1, "[\"no attachments\"]");
}

Test(sio_decode, binary_ack)
{
    expect("61-/admin,456[{\"_placeholder\":true,\"num\":0}]", SIO_BINARY_ACK, 1, "/admin", 456,
           "[{\"_placeholder\":true,\"num\":0}]");
    expect("61-3[{\"_placeholder\":true,\"num\":0}]", SIO_BINARY_ACK, 1, "/", 3,
           "[{\"_placeholder\":true,\"num\":0}]");
}

Test(sio_decode, attachment_count_limits)
{
    char s[64];
    snprintf(s, sizeof(s), "5%d-[\"a\"]", SIO_MAX_ATTACHMENTS);
    expect(s, SIO_BINARY_EVENT, SIO_MAX_ATTACHMENTS, "/", -1, "[\"a\"]");
    snprintf(s, sizeof(s), "6%d-1[]", SIO_MAX_ATTACHMENTS);
    expect(s, SIO_BINARY_ACK, SIO_MAX_ATTACHMENTS, "/", 1, "[]");
    /* leading zeros are a count too */
    expect("5001-[\"a\"]", SIO_BINARY_EVENT, 1, "/", -1, "[\"a\"]");
}

Test(sio_decode, namespaces)
{
    expect("2/,[\"a\"]", SIO_EVENT, 0, "/", -1, "[\"a\"]");
    expect("2/a/b.c-d_e,[\"a\"]", SIO_EVENT, 0, "/a/b.c-d_e", -1, "[\"a\"]");
    /* a namespace without its comma runs to the end */
    expect("1/admin", SIO_DISCONNECT, 0, "/admin", -1, NULL);
    /* the longest namespace that fits, and one byte more */
    char s[SIO_NSP_MAX + 16];
    s[0] = '2';
    s[1] = '/';
    memset(s + 2, 'n', SIO_NSP_MAX - 2);
    s[SIO_NSP_MAX] = ',';
    s[SIO_NSP_MAX + 1] = '\0';
    dec_t d = decode(s); /* namespace of SIO_NSP_MAX - 1 bytes */
    cr_assert_eq(d.rc, 0);
    cr_assert_eq(strlen(d.p.nsp), (size_t)SIO_NSP_MAX - 1);
    s[1] = '/';
    memset(s + 2, 'n', SIO_NSP_MAX - 1);
    s[SIO_NSP_MAX + 1] = ',';
    s[SIO_NSP_MAX + 2] = '\0';
    refused(s, strlen(s)); /* SIO_NSP_MAX bytes: refused, not truncated */
}

Test(sio_decode, ack_ids)
{
    expect("2999999999999999[\"a\"]", SIO_EVENT, 0, "/", 999999999999999L,
           "[\"a\"]"); /* 15 digits */
    expect("2/x,123456789012345", SIO_EVENT, 0, "/x", 123456789012345L, NULL);
    expect("30", SIO_ACK, 0, "/", 0, NULL);
    /* 16 digits and more: refused (no overflow) */
    REFUSED("21234567890123456[\"a\"]");
    REFUSED("39999999999999999999999999[]");
    REFUSED("2/admin,99999999999999999999[\"a\"]");
}

Test(sio_decode, data_is_not_parsed)
{
    /* the framing only: JSON is the caller's business */
    expect("2hello", SIO_EVENT, 0, "/", -1, "hello");
    expect("2[", SIO_EVENT, 0, "/", -1, "[");
    expect("2/a,{", SIO_EVENT, 0, "/a", -1, "{");
}

/* ---- malformed framing ---- */

Test(sio_decode, bad_types)
{
    REFUSED("");
    REFUSED("7");
    REFUSED("9[\"a\"]");
    REFUSED("a");
    REFUSED("/admin,");
    REFUSED("[\"a\"]");
    REFUSED(" 2");
    REFUSED("\x1e");
    REFUSED("-1");
}

Test(sio_decode, binary_without_a_proper_count)
{
    REFUSED("5");
    REFUSED("6");
    REFUSED("5-");
    REFUSED("5-[\"a\"]");
    REFUSED("6-1[]");
    REFUSED("51"); /* a count without its dash */
    REFUSED("51[\"a\"]");
    REFUSED("5x-[\"a\"]");
    REFUSED("5/admin,[\"a\"]"); /* no count at all */
    char s[64];
    snprintf(s, sizeof(s), "5%d-[\"a\"]", SIO_MAX_ATTACHMENTS + 1);
    refused(s, strlen(s));
    REFUSED("5999-[\"a\"]");
    REFUSED("51000-[\"a\"]");       /* four digits */
    REFUSED("54294967297-[\"a\"]"); /* would wrap a 32-bit count */
    REFUSED("599999999999999999999-[\"a\"]");
}

/* ---- byte by byte: every prefix decodes without reading past it ---- */

Test(sio_decode, every_prefix_is_safe_and_consistent)
{
    static const char *pkts[] = {
        "0/admin,{\"token\":\"123\"}",
        "2/admin,456[\"project:delete\",123]",
        "51-/admin,456[\"project:delete\",{\"_placeholder\":true,\"num\":0}]",
        "61-/admin,456[{\"_placeholder\":true,\"num\":0}]",
        "3/admin,456[]",
        "4{\"message\":\"Not authorized\"}",
        "212[\"hello\"]",
    };
    for (size_t k = 0; k < sizeof(pkts) / sizeof(pkts[0]); k++) {
        size_t len = strlen(pkts[k]);
        dec_t whole = decode_n(pkts[k], len);
        cr_assert_eq(whole.rc, 0);
        for (size_t n = 0; n <= len; n++) {
            dec_t d = decode_n(pkts[k], n);
            if (d.rc < 0) continue;
            /* a prefix never gets a different type, or attachments it did not spell */
            cr_assert_eq(d.p.type, whole.p.type, "%s[:%zu]", pkts[k], n);
            cr_assert_eq(d.p.attachments, whole.p.attachments, "%s[:%zu]", pkts[k], n);
            cr_assert_leq(d.p.data_len, whole.p.data_len);
        }
        /* the binary count needs its dash: every prefix that stops inside it is refused */
        if (whole.p.type == SIO_BINARY_EVENT || whole.p.type == SIO_BINARY_ACK)
            for (size_t n = 0; n < 3; n++)
                cr_assert_eq(decode_n(pkts[k], n).rc, -EINVAL, "%s[:%zu]", pkts[k], n);
    }
}

/* ---- split: packets in one polling payload, walked across the separator ---- */

Test(sio_decode, packets_split_from_a_polling_payload)
{
    static const char *pkts[] = {
        "40/t1,{\"stream\":\"app-health\"}",
        "42[\"subscribe\",[\"a\",\"b\"]]",
        "421[\"subscribe\",[\"c\"]]",
        "451-2[\"up\",{\"_placeholder\":true,\"num\":0}]",
        "43/t1,7[]",
        "41/t1,",
    };
    buf_t *pl = buf_new(0);
    cr_assert_not_null(pl);
    for (size_t k = 0; k < sizeof(pkts) / sizeof(pkts[0]); k++)
        cr_assert_eq(eio_payload_append(&pl, EIO_MESSAGE, 0, pkts[k] + 1, strlen(pkts[k]) - 1), 0);
    cr_assert_eq(eio_payload_append(&pl, EIO_MESSAGE, 1, "\x01\x02\x03", 3), 0);
    guard_t g = {0};
    const char *in = guard_copy(&g, pl->data, pl->len);
    const char *cur = in, *end = in + pl->len;
    buf_t *scratch = NULL;
    eio_packet_t p;
    size_t k = 0;
    while (eio_payload_next(&cur, end, &p, &scratch) > 0) {
        if (p.binary) {
            cr_assert_eq(k, sizeof(pkts) / sizeof(pkts[0]));
            cr_assert_eq(p.len, 3);
            k++;
            continue;
        }
        cr_assert_eq(p.type, EIO_MESSAGE);
        sio_packet_t a;
        cr_assert_eq(sio_decode(p.data, p.len, &a), 0, "%s", pkts[k]);
        dec_t b = decode(pkts[k] + 1);
        cr_assert_eq(b.rc, 0);
        cr_assert_eq(a.type, b.p.type);
        cr_assert_str_eq(a.nsp, b.p.nsp);
        cr_assert_eq(a.ack_id, b.p.ack_id);
        cr_assert_eq(a.attachments, b.p.attachments);
        cr_assert_eq(a.data_len, b.p.data_len);
        /* the packet's data stops at the separator */
        if (a.data)
            cr_assert(a.data + a.data_len <= cur && memchr(a.data, 0x1e, a.data_len) == NULL);
        k++;
    }
    cr_assert_eq(k, sizeof(pkts) / sizeof(pkts[0]) + 1);
    buf_unref(scratch);
    guard_release(&g);
    buf_unref(pl);
}

/* ---- sio_encode ---- */

static buf_t *enc(int type, const char *nsp, long ack, unsigned att, const char *data)
{
    buf_t *b = buf_new(0);
    cr_assert_not_null(b);
    cr_assert_eq(sio_encode(&b, type, nsp, ack, att, data, data ? strlen(data) : 0), 0);
    return b;
}

#define EXPECT_ENC(want, ...)                                                                      \
    do {                                                                                           \
        buf_t *b_ = enc(__VA_ARGS__);                                                              \
        cr_assert_eq(b_->len, strlen(want), "\"%.*s\" want \"%s\"", (int)b_->len, b_->data, want); \
        cr_assert(memcmp(b_->data, want, b_->len) == 0, "\"%.*s\" want \"%s\"", (int)b_->len,      \
                  b_->data, want);                                                                 \
        buf_unref(b_);                                                                             \
    } while (0)

Test(sio_encode, exact_bytes)
{
    EXPECT_ENC("0", SIO_CONNECT, NULL, -1, 0, NULL);
    EXPECT_ENC("0", SIO_CONNECT, "/", -1, 0, NULL);
    EXPECT_ENC("0/admin,", SIO_CONNECT, "/admin", -1, 0, NULL);
    EXPECT_ENC("0/t1,{\"sid\":\"x\",\"pid\":\"y\"}", SIO_CONNECT, "/t1", -1, 0,
               "{\"sid\":\"x\",\"pid\":\"y\"}");
    EXPECT_ENC("1/admin,", SIO_DISCONNECT, "/admin", -1, 0, NULL);
    EXPECT_ENC("2[\"hello\",1]", SIO_EVENT, "/", -1, 0, "[\"hello\",1]");
    EXPECT_ENC("2/admin,456[\"a\"]", SIO_EVENT, "/admin", 456, 0, "[\"a\"]");
    EXPECT_ENC("30[]", SIO_ACK, NULL, 0, 0, "[]");
    EXPECT_ENC("4{\"message\":\"Invalid namespace\"}", SIO_CONNECT_ERROR, "/", -1, 0,
               "{\"message\":\"Invalid namespace\"}");
    EXPECT_ENC("51-[\"a\",{\"_placeholder\":true,\"num\":0}]", SIO_BINARY_EVENT, "/", -1, 1,
               "[\"a\",{\"_placeholder\":true,\"num\":0}]");
    EXPECT_ENC("62-/admin,9[]", SIO_BINARY_ACK, "/admin", 9, 2, "[]");
    /* empty data is left out */
    EXPECT_ENC("2", SIO_EVENT, "/", -1, 0, "");
}

Test(sio_encode, round_trips)
{
    static const char *nsps[] = {"/", "/admin", "/t1", "/a,b"};
    static const long acks[] = {-1, 0, 7, 456, 999999999999999L};
    static const char *datas[] = {NULL, "[\"e\",{\"k\":[1,2,3]}]", "{\"message\":\"m\"}", "[]"};
    for (int type = 0; type <= 6; type++)
        for (size_t ni = 0; ni < 3; ni++) /* "/a,b" cannot round-trip: the comma ends it */
            for (size_t ai = 0; ai < sizeof(acks) / sizeof(acks[0]); ai++)
                for (size_t di = 0; di < sizeof(datas) / sizeof(datas[0]); di++) {
                    unsigned att = (type == SIO_BINARY_EVENT || type == SIO_BINARY_ACK)
                                       ? (unsigned)(ai % 3)
                                       : 0;
                    /* an ack id followed by data that starts with a digit would merge:
                     * the protocol's data is JSON array/object text, never a number */
                    buf_t *b = enc(type, nsps[ni], acks[ai], att, datas[di]);
                    dec_t d = decode_n(b->data, b->len);
                    cr_assert_eq(d.rc, 0, "\"%.*s\"", (int)b->len, b->data);
                    cr_assert_eq(d.p.type, type);
                    cr_assert_eq(d.p.attachments, att);
                    cr_assert_str_eq(d.p.nsp, nsps[ni]);
                    cr_assert_eq(d.p.ack_id, acks[ai], "\"%.*s\"", (int)b->len, b->data);
                    if (datas[di]) {
                        cr_assert_eq(d.p.data_len, strlen(datas[di]));
                        cr_assert(memcmp(d.data, datas[di], d.p.data_len) == 0);
                    } else {
                        cr_assert_null(d.p.data);
                    }
                    buf_unref(b);
                }
    (void)nsps[3];
}
