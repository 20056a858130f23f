/* libFuzzer target for the POST /api/push body (seed 003): the bytes are parsed as the
 * API parses a body (jansson, duplicates refused, an object required), then checked the
 * way the endpoint checks them (src/api/channels.c keeps its parser static, so its rules
 * are restated here): `channel` a name or an array of names, each through
 * channel_name_valid, de-duplicated in first-seen order; `data` present; `event` a
 * non-empty string. channel_name_valid must agree with the documented rule (1 to 128 of
 * A-Z a-z 0-9 _ . : @ / = + -). The sanitized push is then encoded as an SSE event the
 * way a channel subscriber gets it, and that event must parse back as exactly one event
 * whose data is the JSON that went in. The raw input is also encoded as SSE data: no
 * line of the output may hold a CR or LF. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "auth/channels.h"
#include "core/buf.h"
#include "transport/sse_codec.h"

static volatile size_t sink;

static int reference_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > CHANNEL_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              strchr("_.:@/=+-", c)))
            return 0;
    }
    return 1;
}

/* Counts the events of an SSE byte string (lines end at CR, LF, CRLF) and rebuilds the
 * data of the last one into out (joined with LF). Returns the number of events, or -1
 * for a field other than id, event, data, retry. */
static int sse_parse(const char *s, size_t len, char *out, size_t *out_len)
{
    int events = 0, have = 0;
    size_t start = 0, ol = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '\r' && s[i] != '\n') continue;
        if (i == len && start == len) break;
        const char *l = s + start;
        size_t ll = i - start;
        if (ll == 0) {
            if (have) {
                events++;
                *out_len = ol;
            }
            have = 0;
        } else if (l[0] != ':') {
            const char *colon = memchr(l, ':', ll);
            size_t nl = colon ? (size_t)(colon - l) : ll;
            const char *v = colon ? colon + 1 : l + ll;
            size_t vl = (size_t)(l + ll - v);
            if (vl && *v == ' ') v++, vl--;
            if (nl == 4 && memcmp(l, "data", 4) == 0) {
                if (!have)
                    ol = 0;
                else
                    out[ol++] = '\n';
                memcpy(out + ol, v, vl);
                ol += vl;
                have = 1;
            } else if (!((nl == 2 && memcmp(l, "id", 2) == 0) ||
                         (nl == 5 && memcmp(l, "event", 5) == 0) ||
                         (nl == 5 && memcmp(l, "retry", 5) == 0))) {
                return -1;
            }
        }
        if (i < len && s[i] == '\r' && i + 1 < len && s[i + 1] == '\n') i++;
        start = i + 1;
    }
    return events;
}

static void check_sse_lines(const buf_t *b)
{
    /* the codec ends every line with LF and never leaves a CR in the output */
    if (memchr(b->data, '\r', b->len)) __builtin_trap();
    if (b->len < 2 || b->data[b->len - 1] != '\n' || b->data[b->len - 2] != '\n') __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the raw bytes as SSE data: split on every line end, whatever they hold */
    buf_t *raw = buf_new(size + 32);
    if (raw && sse_write_event(&raw, "1", "e", (const char *)data, size) == 0) {
        check_sse_lines(raw);
        char *back = malloc(raw->len + 1);
        size_t bl = 0;
        if (back && sse_parse(raw->data, raw->len, back, &bl) != 1) __builtin_trap();
        free(back);
    }
    buf_unref(raw);

    json_error_t je;
    json_t *doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &je);
    if (!doc) return 0;
    if (!json_is_object(doc)) {
        json_decref(doc);
        return 0;
    }
    json_t *ch = json_object_get(doc, "channel");
    json_t *list = NULL;
    if (json_is_string(ch)) {
        list = json_array();
        json_array_append(list, ch);
    } else if (json_is_array(ch)) {
        list = json_incref(ch);
    }
    int ok = list && json_array_size(list) > 0;
    json_t *out = json_array();
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c)
    {
        if (!ok) break;
        const char *name = json_string_value(c);
        if (!name) {
            ok = 0;
            break;
        }
        int v = channel_name_valid(name) == 0;
        /* strings may hold NUL only with JSON_ALLOW_NUL: name is the whole value */
        if (v != reference_name_valid(name)) __builtin_trap();
        if (!v) {
            ok = 0;
            break;
        }
        int dup = 0;
        size_t j;
        json_t *o;
        json_array_foreach(out, j, o) dup |= strcmp(json_string_value(o), name) == 0;
        if (!dup) json_array_append(out, c);
    }
    json_t *event = json_object_get(doc, "event");
    json_t *payload = json_object_get(doc, "data");
    ok = ok && json_array_size(out) <= 100 && payload && json_is_string(event) &&
         json_string_length(event) > 0;
    if (ok) {
        /* de-duplicated: no name twice, and every input name is there */
        json_array_foreach(list, i, c)
        {
            size_t seen = 0, j;
            json_t *o;
            json_array_foreach(out, j, o) seen +=
                strcmp(json_string_value(o), json_string_value(c)) == 0;
            if (seen != 1) __builtin_trap();
        }
        json_t *sanitized =
            json_pack("{s:O, s:O, s:O}", "channel", out, "data", payload, "event", event);
        char *body = sanitized ? json_dumps(sanitized, JSON_COMPACT) : NULL;
        char *pl = json_dumps(payload, JSON_COMPACT | JSON_ENCODE_ANY);
        if (body && pl) {
            /* what a channel SSE subscriber receives: one event, data = the JSON */
            json_t *frame =
                json_pack("{s:s, s:O, s:O, s:O}", "id", "0000000000001-00000000-00000001",
                          "channel", json_array_get(out, 0), "event", event, "data", payload);
            char *fd = frame ? json_dumps(frame, JSON_COMPACT) : NULL;
            buf_t *b = fd ? buf_new(strlen(fd) + 64) : NULL;
            if (b &&
                sse_write_event(&b, "0000000000001-00000000-00000001", NULL, fd, strlen(fd)) == 0) {
                check_sse_lines(b);
                char *back = malloc(b->len + 1);
                size_t bl = 0;
                if (!back || sse_parse(b->data, b->len, back, &bl) != 1) __builtin_trap();
                /* JSON text has no raw line ends: the data comes back unchanged */
                if (bl != strlen(fd) || memcmp(back, fd, bl) != 0) __builtin_trap();
                json_t *re = json_loadb(back, bl, 0, NULL);
                if (!re || !json_equal(re, frame)) __builtin_trap();
                json_decref(re);
                free(back);
            }
            buf_unref(b);
            free(fd);
            json_decref(frame);
            sink += strlen(body) + strlen(pl);
        }
        free(body);
        free(pl);
        json_decref(sanitized);
    }
    json_decref(out);
    json_decref(list);
    json_decref(doc);
    return 0;
}
