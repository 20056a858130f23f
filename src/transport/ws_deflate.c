/* permessage-deflate (RFC 7692): offer parsing and negotiation, and per-message zlib
 * compression and decompression. The server always answers with
 * server_no_context_takeover, so every message it sends is a fresh deflate stream: one
 * compressed push frame can be shared by every subscriber. */
#include "transport/ws_deflate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#define ZLIB_CONST /* next_in is const: no casts */
#include <zlib.h>

/* ---- Sec-WebSocket-Extensions ---- */

static int is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

typedef struct scan_s {
    const char *s;
    size_t n, i;
} scan_t;

static void skip_ows(scan_t *sc)
{
    while (sc->i < sc->n && (sc->s[sc->i] == ' ' || sc->s[sc->i] == '\t'))
        sc->i++;
}

/* A token at sc->i. Returns its length (0: none there). */
static size_t scan_token(scan_t *sc, const char **start)
{
    *start = sc->s + sc->i;
    size_t b = sc->i;
    while (sc->i < sc->n && is_tchar((unsigned char)sc->s[sc->i]))
        sc->i++;
    return sc->i - b;
}

/* A token or quoted-string value, unescaped into val (cut at cap - 1; *vlen holds the
 * full length). Returns 0, or -EINVAL when malformed or a quoted value is not a token
 * once unescaped (RFC 6455 §9.1). */
static int scan_value(scan_t *sc, char *val, size_t cap, size_t *vlen)
{
    size_t k = 0;
    if (sc->i < sc->n && sc->s[sc->i] == '"') {
        sc->i++;
        for (;;) {
            if (sc->i >= sc->n) return -EINVAL;
            unsigned char c = (unsigned char)sc->s[sc->i++];
            if (c == '"') break;
            if (c == '\\') {
                if (sc->i >= sc->n) return -EINVAL;
                c = (unsigned char)sc->s[sc->i++];
            }
            if (!is_tchar(c)) return -EINVAL;
            if (k + 1 < cap) val[k] = (char)c;
            k++;
        }
        if (k == 0) return -EINVAL;
    } else {
        const char *t;
        k = scan_token(sc, &t);
        if (k == 0) return -EINVAL;
        memcpy(val, t, k < cap ? k : cap - 1);
    }
    val[k < cap ? k : cap - 1] = '\0';
    *vlen = k;
    return 0;
}

/* "8".."15", no sign, no leading zero. Returns the number or 0. */
static unsigned window_bits_value(const char *v, size_t vlen)
{
    if (vlen == 1 && (v[0] == '8' || v[0] == '9')) return (unsigned)(v[0] - '0');
    if (vlen == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5') return 10u + (unsigned)(v[1] - '0');
    return 0;
}

enum { P_SNCT = 1, P_CNCT = 2, P_SMWB = 4, P_CMWB = 8 };

typedef struct offer_s {
    unsigned seen;
    int bad;                           /* declined: unknown, repeated or ill-valued parameter */
    unsigned server_bits, client_bits; /* client_bits: 16 for "offered, no value" */
} offer_t;

static void offer_param(offer_t *o, const char *name, size_t nlen, int has_value, const char *val,
                        size_t vlen)
{
    static const char *names[] = {"server_no_context_takeover", "client_no_context_takeover",
                                  "server_max_window_bits", "client_max_window_bits"};
    unsigned bit = 0;
    for (unsigned i = 0; i < 4; i++)
        if (strlen(names[i]) == nlen && strncasecmp(name, names[i], nlen) == 0) bit = 1u << i;
    if (!bit || (o->seen & bit)) {
        o->bad = 1;
        return;
    }
    o->seen |= bit;
    if (bit == P_SNCT || bit == P_CNCT) {
        if (has_value) o->bad = 1;
    } else if (bit == P_SMWB) {
        if (!has_value || !(o->server_bits = window_bits_value(val, vlen))) o->bad = 1;
    } else if (!has_value) {
        o->client_bits = 16;
    } else if (!(o->client_bits = window_bits_value(val, vlen))) {
        o->bad = 1;
    }
}

int ws_pmd_negotiate(const char *value, size_t len, unsigned want_client_bits, ws_pmd_t *out)
{
    scan_t sc = {value, len, 0};
    int found = 0;
    if (want_client_bits < WS_PMD_MIN_BITS || want_client_bits > WS_PMD_MAX_BITS)
        want_client_bits = WS_PMD_MAX_BITS;
    for (;;) {
        skip_ows(&sc);
        if (sc.i >= sc.n) break;
        if (sc.s[sc.i] == ',') { /* empty list element (RFC 9110 §5.6.1) */
            sc.i++;
            continue;
        }
        const char *ext;
        size_t elen = scan_token(&sc, &ext);
        if (elen == 0) return -EINVAL;
        int pmd = elen == 18 && strncasecmp(ext, "permessage-deflate", 18) == 0;
        offer_t o = {0};
        for (;;) {
            skip_ows(&sc);
            if (sc.i >= sc.n || sc.s[sc.i] == ',') break;
            if (sc.s[sc.i] != ';') return -EINVAL;
            sc.i++;
            skip_ows(&sc);
            const char *pname;
            size_t plen = scan_token(&sc, &pname);
            if (plen == 0) return -EINVAL;
            skip_ows(&sc);
            char val[8];
            size_t vlen = 0;
            int has_value = 0;
            if (sc.i < sc.n && sc.s[sc.i] == '=') {
                sc.i++;
                skip_ows(&sc);
                if (scan_value(&sc, val, sizeof(val), &vlen) < 0) return -EINVAL;
                has_value = 1;
            }
            if (pmd) offer_param(&o, pname, plen, has_value, val, vlen);
        }
        if (pmd && !o.bad && !found) {
            found = 1;
            out->client_no_context_takeover = (o.seen & P_CNCT) != 0;
            out->server_max_bits = (uint8_t)o.server_bits;
            out->client_max_bits = (uint8_t)(!o.client_bits                     ? 0
                                             : o.client_bits > want_client_bits ? want_client_bits
                                                                                : o.client_bits);
        }
        if (sc.i < sc.n) sc.i++; /* the comma */
    }
    return found;
}

int ws_pmd_response(const ws_pmd_t *p, char *out, size_t outlen)
{
    char sb[40] = "", cb[40] = "";
    if (p->server_max_bits)
        snprintf(sb, sizeof(sb), "; server_max_window_bits=%u", p->server_max_bits);
    if (p->client_max_bits)
        snprintf(cb, sizeof(cb), "; client_max_window_bits=%u", p->client_max_bits);
    int n = snprintf(out, outlen, "permessage-deflate; server_no_context_takeover%s%s%s",
                     p->client_no_context_takeover ? "; client_no_context_takeover" : "", sb, cb);
    return n < 0 || (size_t)n >= outlen ? -ENOSPC : n;
}

/* ---- compression ---- */

buf_t *ws_pmd_deflate(const uint8_t *in, size_t len, unsigned window_bits)
{
    if (window_bits < 9) window_bits = 9;
    if (window_bits > WS_PMD_MAX_BITS) window_bits = WS_PMD_MAX_BITS;
    z_stream z;
    memset(&z, 0, sizeof(z));
    /* memLevel 8 (zlib's default): deflate's state lives only for this call */
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -(int)window_bits, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    /* a sync flush adds 5 bytes after deflateBound's worst case */
    size_t cap = deflateBound(&z, (uLong)len) + 16;
    buf_t *b = buf_new(cap);
    if (!b) goto fail_buf;
    z.next_in = in;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)b->data;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_SYNC_FLUSH) != Z_OK || z.avail_in != 0 || z.avail_out == 0) goto fail_deflate;
    b->len = cap - z.avail_out;
    /* RFC 7692 §7.2.1: the sync flush ends in 00 00 ff ff, which is left off */
    if (b->len < 4 || memcmp(b->data + b->len - 4, "\x00\x00\xff\xff", 4) != 0) goto fail_deflate;
    b->len -= 4;
    deflateEnd(&z);
    return b;
fail_deflate:
    buf_unref(b);
fail_buf:
    deflateEnd(&z);
    return NULL;
}

buf_t *ws_pmd_frame(buf_t *plain, unsigned window_bits)
{
    const uint8_t *f = (const uint8_t *)plain->data;
    size_t hl = (f[1] & 0x7f) == 126 ? 4 : (f[1] & 0x7f) == 127 ? 10 : 2;
    buf_t *z = ws_pmd_deflate(f + hl, plain->len - hl, window_bits);
    if (!z) return NULL;
    uint8_t hdr[10];
    size_t zl = z->len;
    size_t zh = 2 + (zl < 126 ? 0 : zl <= 0xffff ? 2 : 8);
    if (zh + zl >= plain->len) {
        buf_unref(z);
        return buf_ref(plain);
    }
    buf_t *out = buf_new(zh + zl);
    if (!out) {
        buf_unref(z);
        return NULL;
    }
    hdr[0] = (uint8_t)(f[0] | 0x40); /* RSV1: this message is compressed */
    if (zl < 126) {
        hdr[1] = (uint8_t)zl;
    } else if (zl <= 0xffff) {
        hdr[1] = 126;
        hdr[2] = (uint8_t)(zl >> 8);
        hdr[3] = (uint8_t)zl;
    } else {
        hdr[1] = 127;
        for (int i = 0; i < 8; i++)
            hdr[2 + i] = (uint8_t)((uint64_t)zl >> (56 - 8 * i));
    }
    buf_append(&out, hdr, zh);
    buf_append(&out, z->data, zl);
    buf_unref(z);
    return out;
}

/* ---- decompression ---- */

/* Keeps the last `window` bytes of old history followed by out[0..n). */
static int hist_update(ws_pmd_hist_t *h, size_t window, const uint8_t *out, size_t n)
{
    size_t from_out = n < window ? n : window;
    size_t from_old = window - from_out < h->len ? window - from_out : h->len;
    size_t total = from_old + from_out;
    if (total == 0) return 0;
    uint8_t *nh = malloc(total);
    if (!nh) return -ENOMEM;
    if (from_old) memcpy(nh, h->data + h->len - from_old, from_old);
    memcpy(nh + from_old, out + n - from_out, from_out);
    free(h->data);
    h->data = nh;
    h->len = total;
    return 0;
}

int ws_pmd_inflate(ws_pmd_hist_t *hist, unsigned window_bits, const uint8_t *in, size_t len,
                   size_t max, uint8_t **out, size_t *out_len)
{
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    if (window_bits < WS_PMD_MIN_BITS || window_bits > WS_PMD_MAX_BITS)
        window_bits = WS_PMD_MAX_BITS;
    if (max > SIZE_MAX / 4) max = SIZE_MAX / 4; /* so that max + 1 and cap * 2 never wrap */
    z_stream z;
    memset(&z, 0, sizeof(z));
    /* a 32 KiB inflate window reads any smaller window's stream */
    if (inflateInit2(&z, -WS_PMD_MAX_BITS) != Z_OK) return -ENOMEM;
    int r = -ENOMEM;
    if (hist && hist->len && inflateSetDictionary(&z, hist->data, (uInt)hist->len) != Z_OK)
        goto fail_init;
    /* a first guess at 4:1, grown by doubling up to max + 1 (the byte that tells) */
    size_t cap = len < max / 4 ? len * 4 + 64 : max + 1;
    if (cap > max + 1) cap = max + 1;
    uint8_t *o = malloc(cap);
    if (!o) goto fail_init;
    size_t n = 0;
    int ended = 0;
    for (int part = 0; part < 2 && !ended; part++) {
        z.next_in = part ? tail : in;
        z.avail_in = (uInt)(part ? sizeof(tail) : len);
        while (z.avail_in > 0) {
            if (n == cap) {
                if (cap > max) {
                    r = -EMSGSIZE;
                    goto fail_out;
                }
                size_t nc = cap > max / 2 ? max + 1 : cap * 2;
                uint8_t *g = realloc(o, nc);
                if (!g) goto fail_out;
                o = g;
                cap = nc;
            }
            z.next_out = o + n;
            z.avail_out = (uInt)(cap - n);
            int zr = inflate(&z, Z_SYNC_FLUSH);
            n = cap - z.avail_out;
            if (zr == Z_STREAM_END) {
                ended = 1; /* BFINAL: anything after it (the tail) is not data */
                break;
            }
            if (zr == Z_BUF_ERROR && z.avail_out != 0) break;
            if (zr != Z_OK && zr != Z_BUF_ERROR) {
                r = zr == Z_MEM_ERROR ? -ENOMEM : -EBADMSG;
                goto fail_out;
            }
        }
        if (n > max) {
            r = -EMSGSIZE;
            goto fail_out;
        }
    }
    if (hist && hist_update(hist, (size_t)1 << window_bits, o, n) < 0) goto fail_out;
    inflateEnd(&z);
    *out = o;
    *out_len = n;
    return 0;
fail_out:
    free(o);
fail_init:
    inflateEnd(&z);
    return r;
}

void ws_pmd_hist_free(ws_pmd_hist_t *hist)
{
    free(hist->data);
    hist->data = NULL;
    hist->len = 0;
}
