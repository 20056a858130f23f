/* transport/sse_codec: events, comments and retry as bytes. Field values are split on
 * CR, LF and CRLF (WHATWG HTML §9.2.6 line ends), so no data can forge a field or an
 * event; a small spec parser here checks that what a client reassembles is the data
 * with its line ends normalized to LF. */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "transport/sse_codec.h"

static buf_t *fresh(void)
{
    buf_t *b = buf_new(0); /* grows from nothing */
    cr_assert(b);
    return b;
}

static void expect_bytes(buf_t *b, const char *want, size_t want_len, const char *what)
{
    cr_assert_eq(b->len, want_len, "%s: %zu bytes \"%.*s\", want %zu \"%.*s\"", what, b->len,
                 (int)b->len, b->data, want_len, (int)want_len, want);
    cr_assert(memcmp(b->data, want, want_len) == 0, "%s: got \"%.*s\", want \"%.*s\"", what,
              (int)b->len, b->data, (int)want_len, want);
}

#define EXPECT(b, lit, what) expect_bytes((b), (lit), sizeof(lit) - 1, (what))

static void event_is(const char *id, const char *event, const char *data, size_t len,
                     const char *want, size_t want_len)
{
    buf_t *b = fresh();
    cr_assert_eq(sse_write_event(&b, id, event, data, len), 0);
    char what[128];
    snprintf(what, sizeof(what), "event id=%s event=%s", id ? id : "NULL", event ? event : "NULL");
    expect_bytes(b, want, want_len, what);
    buf_unref(b);
}

#define EVENT_IS(id, ev, data, want)                                                               \
    event_is((id), (ev), (data), strlen(data), want, sizeof(want) - 1)

/* ---- sse_write_event ---- */

Test(sse_write_event, all_fields)
{
    EVENT_IS("1", "woohoo", "{\"a\":1}", "id: 1\nevent: woohoo\ndata: {\"a\":1}\n\n");
}

Test(sse_write_event, id_and_event_left_out_when_null)
{
    EVENT_IS(NULL, NULL, "x", "data: x\n\n");
    EVENT_IS("7", NULL, "x", "id: 7\ndata: x\n\n");
    EVENT_IS(NULL, "gap", "x", "event: gap\ndata: x\n\n");
}

Test(sse_write_event, empty_data_is_one_empty_data_line)
{
    /* "data: " then the blank line: a client dispatches an event with data "" */
    EVENT_IS(NULL, NULL, "", "data: \n\n");
    EVENT_IS("1", NULL, "", "id: 1\ndata: \n\n");
}

Test(sse_write_event, data_split_on_lf_cr_and_crlf)
{
    EVENT_IS(NULL, NULL, "a\nb", "data: a\ndata: b\n\n");
    EVENT_IS(NULL, NULL, "a\rb", "data: a\ndata: b\n\n");
    EVENT_IS(NULL, NULL, "a\r\nb", "data: a\ndata: b\n\n");
    EVENT_IS(NULL, NULL, "a\n\rb", "data: a\ndata: \ndata: b\n\n");
    EVENT_IS(NULL, NULL, "a\r\rb", "data: a\ndata: \ndata: b\n\n");
    EVENT_IS(NULL, NULL, "a\r\n\r\nb", "data: a\ndata: \ndata: b\n\n");
    EVENT_IS(NULL, NULL, "a\n\nb", "data: a\ndata: \ndata: b\n\n");
}

Test(sse_write_event, leading_and_trailing_line_ends)
{
    EVENT_IS(NULL, NULL, "\n", "data: \ndata: \n\n");
    EVENT_IS(NULL, NULL, "\r", "data: \ndata: \n\n");
    EVENT_IS(NULL, NULL, "\r\n", "data: \ndata: \n\n");
    EVENT_IS(NULL, NULL, "a\n", "data: a\ndata: \n\n");
    EVENT_IS(NULL, NULL, "a\r", "data: a\ndata: \n\n");
    EVENT_IS(NULL, NULL, "\na", "data: \ndata: a\n\n");
}

Test(sse_write_event, forged_fields_stay_data)
{
    EVENT_IS("1", NULL, "x\n\nevent: evil\nid: 666\nretry: 1\n: c\ndata: y",
             "id: 1\ndata: x\ndata: \ndata: event: evil\ndata: id: 666\ndata: retry: 1\n"
             "data: : c\ndata: data: y\n\n");
    EVENT_IS(NULL, NULL, "data: x", "data: data: x\n\n");
}

Test(sse_write_event, id_and_event_are_split_too)
{
    EVENT_IS("1\n2", "a\r\nb", "d", "id: 1\nid: 2\nevent: a\nevent: b\ndata: d\n\n");
}

Test(sse_write_event, data_len_is_honoured)
{
    const char data[] = "abc\ndef";
    buf_t *b = fresh();
    cr_assert_eq(sse_write_event(&b, NULL, NULL, data, 3), 0);
    EXPECT(b, "data: abc\n\n", "first 3 bytes");
    buf_unref(b);
    /* NUL bytes inside data are bytes like any other */
    b = fresh();
    cr_assert_eq(sse_write_event(&b, NULL, NULL, "a\0b", 3), 0);
    expect_bytes(b, "data: a\0b\n\n", 11, "embedded NUL");
    buf_unref(b);
    b = fresh();
    cr_assert_eq(sse_write_event(&b, NULL, NULL, NULL, 0), 0);
    EXPECT(b, "data: \n\n", "NULL data of length 0");
    buf_unref(b);
}

Test(sse_write_event, appends)
{
    buf_t *b = fresh();
    cr_assert_eq(sse_write_retry(&b, 100), 0);
    cr_assert_eq(sse_write_event(&b, "1", NULL, "a", 1), 0);
    cr_assert_eq(sse_write_comment(&b, "heartbeat"), 0);
    cr_assert_eq(sse_write_event(&b, "2", "e", "b", 1), 0);
    EXPECT(b, "retry: 100\n\nid: 1\ndata: a\n\n: heartbeat\n\nid: 2\nevent: e\ndata: b\n\n",
           "sequence");
    buf_unref(b);
}

Test(sse_write_event, large_data)
{
    size_t n = 1 << 20;
    char *data = malloc(n);
    cr_assert(data);
    for (size_t i = 0; i < n; i++)
        data[i] = (i % 1000 == 999) ? '\n' : 'a' + (char)(i % 26);
    buf_t *b = fresh();
    cr_assert_eq(sse_write_event(&b, "x", NULL, data, n), 0);
    size_t lines = n / 1000 + 1;
    cr_assert_eq(b->len, strlen("id: x\n") + n - (n / 1000) + lines * strlen("data: \n") + 1);
    buf_unref(b);
    free(data);
}

/* ---- a spec parser: the round trip ---- */

typedef struct parsed_s {
    int events;
    int fields_other; /* anything but id/event/data/comments/retry */
    char data[4096];
    size_t data_len;
    char id[64];
    char type[64];
} parsed_t;

/* Parses one event's bytes the way an EventSource does (lines end at CR, LF, CRLF). */
static void parse(const char *s, size_t len, parsed_t *out)
{
    memset(out, 0, sizeof(*out));
    size_t start = 0;
    int have_data = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '\r' && s[i] != '\n') continue;
        if (i == len && start == len) break;
        const char *l = s + start;
        size_t ll = i - start;
        if (ll == 0) {
            if (have_data) out->events++;
            have_data = 0;
        } else if (l[0] != ':') {
            const char *colon = memchr(l, ':', ll);
            size_t nl = colon ? (size_t)(colon - l) : ll;
            const char *v = colon ? colon + 1 : l + ll;
            size_t vl = (size_t)(l + ll - v);
            if (vl && *v == ' ') {
                v++;
                vl--;
            }
            if (nl == 4 && memcmp(l, "data", 4) == 0) {
                if (have_data) out->data[out->data_len++] = '\n';
                memcpy(out->data + out->data_len, v, vl);
                out->data_len += vl;
                have_data = 1;
            } else if (nl == 2 && memcmp(l, "id", 2) == 0) {
                snprintf(out->id, sizeof(out->id), "%.*s", (int)vl, v);
            } else if (nl == 5 && memcmp(l, "event", 5) == 0) {
                snprintf(out->type, sizeof(out->type), "%.*s", (int)vl, v);
            } else if (!(nl == 5 && memcmp(l, "retry", 5) == 0)) {
                out->fields_other++;
            }
        }
        if (i < len && s[i] == '\r' && i + 1 < len && s[i + 1] == '\n') i++;
        start = i + 1;
    }
}

Test(sse_write_event, round_trip_of_random_data)
{
    static const char alphabet[] = "\r\n:a d";
    unsigned seed = 12345;
    for (int round = 0; round < 5000; round++) {
        char data[64];
        size_t n = (size_t)(rand_r(&seed) % 40);
        for (size_t i = 0; i < n; i++)
            data[i] = alphabet[rand_r(&seed) % (sizeof(alphabet) - 1)];
        buf_t *b = fresh();
        cr_assert_eq(sse_write_event(&b, "id-1", NULL, data, n), 0);
        parsed_t p;
        parse(b->data, b->len, &p);
        cr_assert_eq(p.events, 1, "round %d: %d events from %zu bytes", round, p.events, n);
        cr_assert_eq(p.fields_other, 0, "round %d: an unknown field", round);
        cr_assert_str_eq(p.id, "id-1", "round %d: the id was changed", round);
        cr_assert_str_eq(p.type, "", "round %d: an event type was forged", round);
        /* what the client sees: data with CRLF and CR turned into LF */
        char want[64];
        size_t wl = 0;
        for (size_t i = 0; i < n; i++) {
            if (data[i] == '\r') {
                want[wl++] = '\n';
                if (i + 1 < n && data[i + 1] == '\n') i++;
            } else {
                want[wl++] = data[i];
            }
        }
        cr_assert_eq(p.data_len, wl, "round %d: data length %zu, want %zu", round, p.data_len, wl);
        cr_assert(memcmp(p.data, want, wl) == 0, "round %d: data differs", round);
        buf_unref(b);
    }
}

/* ---- sse_write_comment, sse_write_retry ---- */

Test(sse_write_comment, comment_line)
{
    buf_t *b = fresh();
    cr_assert_eq(sse_write_comment(&b, "heartbeat"), 0);
    EXPECT(b, ": heartbeat\n\n", "heartbeat");
    buf_unref(b);
}

Test(sse_write_comment, empty_and_multi_line_comments_stay_comments)
{
    buf_t *b = fresh();
    cr_assert_eq(sse_write_comment(&b, ""), 0);
    EXPECT(b, ": \n\n", "empty comment");
    buf_unref(b);
    b = fresh();
    cr_assert_eq(sse_write_comment(&b, "a\r\ndata: x\rb"), 0);
    EXPECT(b, ": a\n: data: x\n: b\n\n", "multi-line comment");
    parsed_t p;
    parse(b->data, b->len, &p);
    cr_assert_eq(p.events, 0, "a comment never dispatches an event");
    buf_unref(b);
}

Test(sse_write_retry, values)
{
    buf_t *b = fresh();
    cr_assert_eq(sse_write_retry(&b, 3000), 0);
    EXPECT(b, "retry: 3000\n\n", "3000");
    buf_unref(b);
    b = fresh();
    cr_assert_eq(sse_write_retry(&b, 0), 0);
    EXPECT(b, "retry: 0\n\n", "0");
    buf_unref(b);
    b = fresh();
    cr_assert_eq(sse_write_retry(&b, UINT_MAX), 0);
    char want[32];
    int n = snprintf(want, sizeof(want), "retry: %u\n\n", UINT_MAX);
    expect_bytes(b, want, (size_t)n, "UINT_MAX");
    buf_unref(b);
}
