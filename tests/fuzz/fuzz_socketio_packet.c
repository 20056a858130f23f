/* libFuzzer target for transport/socketio_codec: sio_decode over the raw bytes (one
 * Engine.IO message's text), then what the server does with a packet: jansson parses
 * its data (CONNECT: an auth object; EVENT: an array whose first element is the event
 * name; ACK: an array), and binary packets keep their JSON for the attachments.
 * Invariants: type 0-6, attachments only on binary packets and at most
 * SIO_MAX_ATTACHMENTS, a NUL-terminated namespace that starts with '/' and fits
 * SIO_NSP_MAX, an ack id of at most 15 digits, data borrowed from the input. A decoded
 * packet whose data is JSON text (or absent) encodes with sio_encode and decodes back
 * to the same fields. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "transport/socketio_codec.h"

static volatile size_t sink;

static void server_side(const sio_packet_t *p)
{
    if (!p->data) return;
    json_error_t err;
    json_t *v = json_loadb(p->data, p->data_len, 0, &err);
    switch (p->type) {
    case SIO_CONNECT:
        if (json_is_object(v)) {
            sink += json_string_length(json_object_get(v, "token"));
            sink += json_string_length(json_object_get(v, "stream"));
            sink += json_string_length(json_object_get(v, "offset"));
        }
        break;
    case SIO_EVENT:
    case SIO_BINARY_EVENT:
        if (json_is_array(v) && json_is_string(json_array_get(v, 0))) {
            const char *name = json_string_value(json_array_get(v, 0));
            sink += strlen(name);
            json_t *chans = json_array_get(v, 1);
            size_t i;
            json_t *c;
            json_array_foreach(chans, i, c) sink += json_string_length(c);
        }
        break;
    case SIO_ACK:
    case SIO_BINARY_ACK:
        if (json_is_array(v)) {
            json_t *first = json_array_get(v, 0);
            sink += json_is_true(json_object_get(first, "successful"));
            sink += json_string_length(json_object_get(first, "message"));
        }
        break;
    default:
        break;
    }
    if (v) {
        char *s = json_dumps(v, JSON_COMPACT);
        if (s) sink += strlen(s);
        free(s);
    }
    json_decref(v);
    if (p->type == SIO_BINARY_EVENT || p->type == SIO_BINARY_ACK) {
        char *keep = strndup(p->data, p->data_len);
        if (keep) sink += strlen(keep);
        free(keep);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size ? size : 1);
    if (!in) return 0;
    if (size) memcpy(in, data, size);
    sio_packet_t p;
    if (sio_decode(in, size, &p) != 0) {
        free(in);
        return 0;
    }
    size_t nl = strnlen(p.nsp, SIO_NSP_MAX);
    if (p.type < 0 || p.type > 6 || nl == 0 || nl >= SIO_NSP_MAX || p.nsp[0] != '/')
        __builtin_trap();
    int bin = p.type == SIO_BINARY_EVENT || p.type == SIO_BINARY_ACK;
    if ((!bin && p.attachments) || p.attachments > SIO_MAX_ATTACHMENTS) __builtin_trap();
    if (p.ack_id < -1 || p.ack_id > 999999999999999L) __builtin_trap();
    if (p.data && (p.data < in || p.data + p.data_len > in + size || p.data_len == 0))
        __builtin_trap();
    if (!p.data && p.data_len) __builtin_trap();
    server_side(&p);

    /* round trip: data is JSON text in the protocol ('[' or '{'); other bytes after a
     * main-namespace "/," could read as a namespace once the "/," is left out */
    if (!p.data || p.data[0] == '[' || p.data[0] == '{') {
        buf_t *b = buf_new(0);
        if (b && sio_encode(&b, p.type, p.nsp, p.ack_id, p.attachments, p.data, p.data_len) == 0) {
            char *copy = malloc(b->len ? b->len : 1);
            if (copy) {
                memcpy(copy, b->data, b->len);
                sio_packet_t q;
                if (sio_decode(copy, b->len, &q) != 0 || q.type != p.type ||
                    q.attachments != p.attachments || strcmp(q.nsp, p.nsp) != 0 ||
                    q.ack_id != p.ack_id || q.data_len != p.data_len ||
                    (p.data && memcmp(q.data, p.data, p.data_len) != 0))
                    __builtin_trap();
                free(copy);
            }
        }
        buf_unref(b);
    }
    free(in);
    return 0;
}
