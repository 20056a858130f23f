/* Engine.IO v4 packet codec. */
#include "transport/engineio_codec.h"

#include <errno.h>
#include <openssl/evp.h>
#include <string.h>

int eio_decode_text(const char *s, size_t len, eio_packet_t *out)
{
    if (len == 0 || s[0] < '0' || s[0] > '6') return -EINVAL;
    out->type = s[0] - '0';
    out->binary = 0;
    out->data = s + 1;
    out->len = len - 1;
    return 0;
}

int eio_payload_next(const char **cur, const char *end, eio_packet_t *out, buf_t **scratch)
{
    const char *s = *cur;
    if (s >= end) return 0;
    const char *sep = memchr(s, EIO_RECORD_SEPARATOR, (size_t)(end - s));
    const char *pend = sep ? sep : end;
    *cur = sep ? sep + 1 : end;
    size_t len = (size_t)(pend - s);
    if (len == 0) return -EINVAL;
    if (s[0] != 'b') return eio_decode_text(s, len, out) < 0 ? -EINVAL : 1;
    /* `b` + base64 of a binary message */
    size_t b64 = len - 1;
    if (b64 % 4 != 0) return -EINVAL;
    if (*scratch && (*scratch)->cap < b64) {
        buf_unref(*scratch);
        *scratch = NULL;
    }
    if (!*scratch && !(*scratch = buf_new(b64))) return -ENOMEM;
    buf_t *b = *scratch;
    int n =
        b64 ? EVP_DecodeBlock((unsigned char *)b->data, (const unsigned char *)s + 1, (int)b64) : 0;
    if (n < 0) return -EINVAL;
    /* EVP_DecodeBlock counts padding as data: take it back off */
    if (b64 >= 4 && s[len - 1] == '=') n--;
    if (b64 >= 4 && s[len - 2] == '=') n--;
    b->len = (size_t)n;
    out->type = EIO_MESSAGE;
    out->binary = 1;
    out->data = b->data;
    out->len = (size_t)n;
    return 1;
}

int eio_payload_append(buf_t **bp, int type, int binary, const char *data, size_t len)
{
    int r = 0;
    if ((*bp)->len) r |= buf_append(bp, "\x1e", 1);
    if (!binary) {
        char t = (char)('0' + type);
        r |= buf_append(bp, &t, 1);
        r |= buf_append(bp, data, len);
        return r ? -ENOMEM : 0;
    }
    size_t enc = 4 * ((len + 2) / 3);
    r |= buf_append(bp, "b", 1);
    size_t at = (*bp)->len;
    /* reserve, then encode in place */
    for (size_t i = 0; r == 0 && i < enc; i += 64) {
        static const char pad[64];
        r |= buf_append(bp, pad, enc - i < 64 ? enc - i : 64);
    }
    if (r) return -ENOMEM;
    EVP_EncodeBlock((unsigned char *)(*bp)->data + at, (const unsigned char *)data, (int)len);
    return 0;
}

int eio_open_json(buf_t **bp, const char *sid, int can_upgrade, unsigned ping_interval,
                  unsigned ping_timeout, size_t max_payload)
{
    return buf_printf(bp,
                      "{\"sid\":\"%s\",\"upgrades\":[%s],\"pingInterval\":%u,"
                      "\"pingTimeout\":%u,\"maxPayload\":%zu}",
                      sid, can_upgrade ? "\"websocket\"" : "", ping_interval, ping_timeout,
                      max_payload);
}

const char *eio_error_message(int code)
{
    switch (code) {
    case EIO_ERR_TRANSPORT_UNKNOWN:
        return "Transport unknown";
    case EIO_ERR_SESSION_UNKNOWN:
        return "Session ID unknown";
    case EIO_ERR_BAD_HANDSHAKE_METHOD:
        return "Bad handshake method";
    case EIO_ERR_BAD_REQUEST:
        return "Bad request";
    case EIO_ERR_FORBIDDEN:
        return "Forbidden";
    case EIO_ERR_UNSUPPORTED_VERSION:
        return "Unsupported protocol version";
    default:
        return "Bad request";
    }
}
