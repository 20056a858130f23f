/* socket.io v5 packet framing. */
#include "transport/socketio_codec.h"

#include <errno.h>
#include <string.h>

int sio_decode(const char *s, size_t len, sio_packet_t *out)
{
    size_t i = 0;
    if (len == 0 || s[0] < '0' || s[0] > '6') return -EINVAL;
    out->type = s[i++] - '0';
    out->attachments = 0;
    out->ack_id = -1;
    out->data = NULL;
    out->data_len = 0;
    if (out->type == SIO_BINARY_EVENT || out->type == SIO_BINARY_ACK) {
        size_t start = i;
        unsigned n = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9' && i - start < 3)
            n = n * 10 + (unsigned)(s[i++] - '0');
        if (i == start || i >= len || s[i] != '-' || n > SIO_MAX_ATTACHMENTS) return -EINVAL;
        i++;
        out->attachments = n;
    }
    if (i < len && s[i] == '/') {
        size_t start = i;
        while (i < len && s[i] != ',')
            i++;
        size_t n = i - start;
        if (n >= SIO_NSP_MAX) return -EINVAL;
        memcpy(out->nsp, s + start, n);
        out->nsp[n] = '\0';
        if (i < len) i++; /* the ',' */
    } else {
        strcpy(out->nsp, "/");
    }
    if (i < len && s[i] >= '0' && s[i] <= '9') {
        long id = 0;
        size_t start = i;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            if (i - start >= 15) return -EINVAL;
            id = id * 10 + (s[i++] - '0');
        }
        out->ack_id = id;
    }
    if (i < len) {
        out->data = s + i;
        out->data_len = len - i;
    }
    return 0;
}

int sio_encode(buf_t **bp, int type, const char *nsp, long ack_id, unsigned attachments,
               const char *data, size_t data_len)
{
    char t = (char)('0' + type);
    int r = buf_append(bp, &t, 1);
    if (type == SIO_BINARY_EVENT || type == SIO_BINARY_ACK) r |= buf_printf(bp, "%u-", attachments);
    if (nsp && strcmp(nsp, "/") != 0) {
        r |= buf_puts(bp, nsp);
        r |= buf_append(bp, ",", 1);
    }
    if (ack_id >= 0) r |= buf_printf(bp, "%ld", ack_id);
    if (data && data_len) r |= buf_append(bp, data, data_len);
    return r ? -ENOMEM : 0;
}
