/* core/buf: appends and printf with growth, JSON string escaping, reference counting. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"

Test(buf, new_is_empty_and_terminated)
{
    buf_t *b = buf_new(16);
    cr_assert_not_null(b);
    cr_assert_eq(b->len, 0);
    cr_assert_eq(b->cap, 16);
    cr_assert_eq(b->refs, 1);
    cr_assert_str_eq(b->data, "");
    buf_unref(b);

    b = buf_new(0);
    cr_assert_not_null(b);
    cr_assert_eq(buf_append(&b, "abc", 3), 0, "a zero-capacity buffer grows");
    cr_assert_str_eq(b->data, "abc");
    buf_unref(b);
}

Test(buf, append_grows)
{
    buf_t *b = buf_new(4);
    char want[10001];
    for (int i = 0; i < 10000; i++) {
        char c = (char)('a' + i % 26);
        want[i] = c;
        cr_assert_eq(buf_append(&b, &c, 1), 0);
        cr_assert(b->len <= b->cap);
    }
    want[10000] = '\0';
    cr_assert_eq(b->len, 10000);
    cr_assert_str_eq(b->data, want, "content survives every growth, NUL-terminated");
    buf_unref(b);
}

Test(buf, append_large_at_once)
{
    buf_t *b = buf_new(8);
    static char big[100000];
    memset(big, 'x', sizeof(big));
    cr_assert_eq(buf_append(&b, "ab", 2), 0);
    cr_assert_eq(buf_append(&b, big, sizeof(big)), 0);
    cr_assert_eq(b->len, 2 + sizeof(big));
    cr_assert(b->cap >= b->len);
    cr_assert_eq(b->data[0], 'a');
    cr_assert_eq(b->data[b->len - 1], 'x');
    cr_assert_eq(b->data[b->len], '\0');
    buf_unref(b);
}

Test(buf, append_binary_and_empty)
{
    buf_t *b = buf_new(4);
    cr_assert_eq(buf_append(&b, "a\0b", 3), 0);
    cr_assert_eq(b->len, 3);
    cr_assert(memcmp(b->data, "a\0b", 4) == 0);
    cr_assert_eq(buf_append(&b, NULL, 0), 0, "zero bytes from NULL");
    cr_assert_eq(b->len, 3);
    buf_unref(b);
}

Test(buf, puts)
{
    buf_t *b = buf_new(2);
    cr_assert_eq(buf_puts(&b, "hello"), 0);
    cr_assert_eq(buf_puts(&b, ""), 0);
    cr_assert_eq(buf_puts(&b, ", world"), 0);
    cr_assert_str_eq(b->data, "hello, world");
    cr_assert_eq(b->len, 12);
    buf_unref(b);
}

Test(buf, printf_short_and_long)
{
    buf_t *b = buf_new(4);
    cr_assert_eq(buf_printf(&b, "%d-%s-%zu", 42, "x", (size_t)7), 0);
    cr_assert_str_eq(b->data, "42-x-7");
    /* longer than printf's 256-byte stack buffer */
    char long_s[1001];
    memset(long_s, 'L', 1000);
    long_s[1000] = '\0';
    cr_assert_eq(buf_printf(&b, "[%s]", long_s), 0);
    cr_assert_eq(b->len, 6 + 1002);
    cr_assert_eq(b->data[6], '[');
    cr_assert_eq(b->data[7], 'L');
    cr_assert_eq(b->data[1006], 'L');
    cr_assert_eq(b->data[1007], ']');
    cr_assert_eq(b->data[1008], '\0');
    cr_assert_eq(buf_printf(&b, "%s", "!"), 0);
    cr_assert_eq(b->len, 1009);
    cr_assert_eq(b->data[1008], '!');
    buf_unref(b);
}

Test(buf, printf_exactly_at_the_stack_buffer_edge)
{
    /* 255 and 256 characters straddle the short path's limit */
    for (size_t n = 250; n < 262; n++) {
        char s[300];
        memset(s, 'e', n);
        s[n] = '\0';
        buf_t *b = buf_new(1);
        cr_assert_eq(buf_printf(&b, "%s", s), 0);
        cr_assert_eq(b->len, n);
        cr_assert_str_eq(b->data, s);
        buf_unref(b);
    }
}

static char *json_of(const char *s)
{
    buf_t *b = buf_new(8);
    cr_assert_eq(buf_put_json_string(&b, s), 0);
    char *out = strdup(b->data);
    buf_unref(b);
    return out;
}

static void expect_json(const char *in, const char *want)
{
    char *got = json_of(in);
    cr_assert_str_eq(got, want);
    /* and it reads back as the same string */
    json_error_t e;
    json_t *v = json_loads(got, JSON_DECODE_ANY, &e);
    cr_assert_not_null(v, "%s: %s", got, e.text);
    cr_assert_str_eq(json_string_value(v), in);
    json_decref(v);
    free(got);
}

Test(buf, json_string_escaping)
{
    expect_json("", "\"\"");
    expect_json("plain", "\"plain\"");
    expect_json("say \"hi\"", "\"say \\\"hi\\\"\"");
    expect_json("back\\slash", "\"back\\\\slash\"");
    expect_json("line\nbreak", "\"line\\nbreak\"");
    expect_json("\"", "\"\\\"\"");
    expect_json("\\", "\"\\\\\"");
    expect_json("/", "\"/\"");
}

Test(buf, json_control_chars_as_u00xx)
{
    expect_json("\x01", "\"\\u0001\"");
    expect_json("a\x1f"
                "b",
                "\"a\\u001fb\"");
    expect_json("\t", "\"\\u0009\"");
    expect_json("\r", "\"\\u000d\"");
    expect_json("\x08\x0c", "\"\\u0008\\u000c\"");
    expect_json("\x7f", "\"\x7f\"");
    for (int c = 1; c < 0x20; c++) {
        char in[2] = {(char)c, 0};
        char *got = json_of(in);
        if (c == '\n')
            cr_assert_str_eq(got, "\"\\n\"");
        else {
            char want[16];
            snprintf(want, sizeof(want), "\"\\u%04x\"", c);
            cr_assert_str_eq(got, want, "char %d", c);
        }
        free(got);
    }
}

Test(buf, json_utf8_passes_through)
{
    expect_json("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
                "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
}

Test(buf, json_string_appends)
{
    buf_t *b = buf_new(1);
    buf_puts(&b, "{\"k\":");
    buf_put_json_string(&b, "v\"");
    buf_puts(&b, "}");
    cr_assert_str_eq(b->data, "{\"k\":\"v\\\"\"}");
    buf_unref(b);
}

Test(buf, json_long_string)
{
    char s[5001];
    for (int i = 0; i < 5000; i++)
        s[i] = i % 50 == 0 ? '"' : 'a';
    s[5000] = '\0';
    char *got = json_of(s);
    cr_assert_eq(strlen(got), 5000 + 100 + 2);
    json_t *v = json_loads(got, JSON_DECODE_ANY, NULL);
    cr_assert_str_eq(json_string_value(v), s);
    json_decref(v);
    free(got);
}

Test(buf, refcounting)
{
    buf_t *b = buf_new(8);
    buf_puts(&b, "shared");
    cr_assert_eq(buf_ref(b), b);
    cr_assert_eq(b->refs, 2);
    buf_ref(b);
    cr_assert_eq(b->refs, 3);
    buf_unref(b);
    cr_assert_eq(b->refs, 2);
    cr_assert_str_eq(b->data, "shared");
    buf_unref(b);
    cr_assert_eq(b->refs, 1);
    buf_unref(b); /* freed: ASan builds would flag a use after this */
    buf_unref(NULL);
}

static void *ref_unref_loop(void *arg)
{
    buf_t *b = arg;
    for (int i = 0; i < 100000; i++) {
        buf_ref(b);
        buf_unref(b);
    }
    return NULL;
}

Test(buf, refcounting_across_threads)
{
    buf_t *b = buf_new(8);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, ref_unref_loop, b);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(b->refs, 1);
    buf_unref(b);
}
