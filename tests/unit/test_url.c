/* http/url: percent-decoding and query parameter lookup. Inputs end at a guard page:
 * url_decode takes a length and must not look past it. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "guard.h"
#include "http/url.h"

/* Decodes s (not NUL-terminated: it ends at a guard page) into out. */
static ssize_t decode(const char *s, char *out, size_t outlen)
{
    guard_t g = {0};
    size_t len = strlen(s);
    const char *in = guard_copy(&g, s, len);
    ssize_t r = url_decode(in, len, out, outlen);
    guard_release(&g);
    return r;
}

Test(url_decode, plain_text_unchanged)
{
    char out[64];
    cr_assert_eq(decode("hello-world_1.2~", out, sizeof(out) - 1), 16);
    cr_assert_str_eq(out, "hello-world_1.2~");
}

Test(url_decode, empty)
{
    char out[4] = "xyz";
    cr_assert_eq(url_decode("", 0, out, 0), 0);
    cr_assert_str_eq(out, "");
}

Test(url_decode, percent_escapes)
{
    char out[64];
    cr_assert_eq(decode("a%20b%2Fc%2fd%41%7e", out, sizeof(out) - 1), 9);
    cr_assert_str_eq(out, "a b/c/dA~");
}

Test(url_decode, utf8_escapes)
{
    char out[64];
    cr_assert_eq(decode("%C3%A9t%C3%A9", out, sizeof(out) - 1), 5);
    cr_assert_str_eq(out, "\xc3\xa9t\xc3\xa9");
}

Test(url_decode, plus_is_space)
{
    char out[64];
    cr_assert_eq(decode("a+b++c", out, sizeof(out) - 1), 6);
    cr_assert_str_eq(out, "a b  c");
    cr_assert_eq(decode("%2B", out, sizeof(out) - 1), 1);
    cr_assert_str_eq(out, "+");
}

Test(url_decode, escape_at_the_very_end)
{
    char out[64];
    cr_assert_eq(decode("ab%21", out, sizeof(out) - 1), 3);
    cr_assert_str_eq(out, "ab!");
}

Test(url_decode, bad_escapes)
{
    char out[64];
    cr_assert_eq(decode("%zz", out, sizeof(out) - 1), -EINVAL);
    cr_assert_eq(decode("%4g", out, sizeof(out) - 1), -EINVAL);
    cr_assert_eq(decode("%g4", out, sizeof(out) - 1), -EINVAL);
    cr_assert_eq(decode("a% 1", out, sizeof(out) - 1), -EINVAL);
    cr_assert_eq(decode("%-1", out, sizeof(out) - 1), -EINVAL);
}

Test(url_decode, truncated_escapes)
{
    char out[64];
    cr_assert_eq(decode("%4", out, sizeof(out) - 1), -EINVAL);
    cr_assert_eq(decode("ab%4", out, sizeof(out) - 1), -EINVAL);
    cr_assert_eq(decode("%", out, sizeof(out) - 1), -EINVAL);
    cr_assert_eq(decode("ab%", out, sizeof(out) - 1), -EINVAL);
}

Test(url_decode, truncated_escape_does_not_read_past_len)
{
    /* "%41" but len 2: the '1' is outside the input */
    char out[8];
    cr_assert_eq(url_decode("%41", 2, out, sizeof(out) - 1), -EINVAL);
}

Test(url_decode, encoded_nul_rejected)
{
    char out[64];
    cr_assert_eq(decode("%00", out, sizeof(out) - 1), -EINVAL);
    cr_assert_eq(decode("abc%00def", out, sizeof(out) - 1), -EINVAL);
}

Test(url_decode, enospc)
{
    char out[8];
    memset(out, 'X', sizeof(out));
    cr_assert_eq(decode("abcd", out, 3), -ENOSPC);
    cr_assert_eq(decode("abc", out, 3), 3, "exactly outlen fits (plus the NUL)");
    cr_assert_str_eq(out, "abc");
    cr_assert_eq(decode("%41%42%43%44", out, 3), -ENOSPC);
    cr_assert_eq(decode("%41%42%43", out, 3), 3);
    cr_assert_str_eq(out, "ABC");
    cr_assert_eq(decode("a", out, 0), -ENOSPC);
}

Test(url_decode, output_never_longer_than_input)
{
    /* callers size out as the input length: decoding shrinks or keeps the length */
    static const char *ins[] = {"abc", "%41bc", "+++", "a%2Bb", "%e2%82%ac"};
    for (size_t i = 0; i < sizeof(ins) / sizeof(ins[0]); i++) {
        size_t n = strlen(ins[i]);
        char *out = malloc(n + 1);
        ssize_t r = decode(ins[i], out, n);
        cr_assert(r >= 0 && (size_t)r <= n, "%s", ins[i]);
        cr_assert_eq(strlen(out), (size_t)r);
        free(out);
    }
}

static void expect_value(const char *query, const char *name, const char *want)
{
    char *v = (char *)0x1;
    ssize_t r = url_query_get(query, name, &v);
    cr_assert_eq(r, (ssize_t)strlen(want), "url_query_get(\"%s\", \"%s\") = %zd", query, name, r);
    cr_assert_str_eq(v, want, "url_query_get(\"%s\", \"%s\")", query, name);
    free(v);
}

static void expect_error(const char *query, const char *name, ssize_t err)
{
    char *v = NULL;
    ssize_t r = url_query_get(query, name, &v);
    cr_assert_eq(r, err, "url_query_get(\"%s\", \"%s\") = %zd, want %zd", query, name, r, err);
    cr_assert_null(v, "no value is returned on error");
}

Test(url_query_get, finds_parameters)
{
    expect_value("a=1&b=2&c=3", "a", "1");
    expect_value("a=1&b=2&c=3", "b", "2");
    expect_value("a=1&b=2&c=3", "c", "3");
    expect_value("clientId=web%201&x=y", "clientId", "web 1");
    expect_value("q=a+b", "q", "a b");
}

Test(url_query_get, first_match_wins)
{
    expect_value("a=1&a=2", "a", "1");
    expect_value("b=0&a=first&a=second", "a", "first");
}

Test(url_query_get, missing)
{
    expect_error("a=1&b=2", "c", -ENOENT);
    expect_error("", "a", -ENOENT);
    expect_error("&&&", "a", -ENOENT);
    expect_error("=1", "a", -ENOENT);
}

Test(url_query_get, empty_name_matches_empty_key)
{
    expect_value("=v&a=1", "", "v");
}

Test(url_query_get, no_equals_is_empty_value)
{
    expect_value("flag", "flag", "");
    expect_value("a=1&flag&b=2", "flag", "");
    expect_value("a=1&flag", "flag", "");
}

Test(url_query_get, empty_value)
{
    expect_value("a=&b=2", "a", "");
    expect_value("b=2&a=", "a", "");
}

Test(url_query_get, value_may_contain_equals)
{
    expect_value("token=abc==&x=1", "token", "abc==");
}

Test(url_query_get, prefix_names_do_not_match)
{
    expect_value("clientIdx=1&clientId=2", "clientId", "2");
    expect_value("client=1&clientId=2", "clientId", "2");
    expect_value("clientId=2&client=1", "client", "1");
    expect_error("clientIdx=1", "clientId", -ENOENT);
    expect_error("client=1", "clientId", -ENOENT);
    expect_error("xa=1", "a", -ENOENT);
}

Test(url_query_get, name_is_not_decoded)
{
    /* names are compared as sent */
    expect_error("a%62=1", "ab", -ENOENT);
    expect_value("a%62=1", "a%62", "1");
}

Test(url_query_get, bad_escape_in_value)
{
    expect_error("a=%zz", "a", -EINVAL);
    expect_error("a=%4", "a", -EINVAL);
    expect_error("a=%00", "a", -EINVAL);
    /* a bad escape elsewhere does not matter */
    expect_value("b=%zz&a=ok", "a", "ok");
}

Test(url_query_get, escape_cut_by_ampersand)
{
    /* "%4&" must not borrow the '&' or what follows */
    expect_error("a=%4&b=1", "a", -EINVAL);
    expect_error("a=%&b=1", "a", -EINVAL);
}

/* ---- url_query_next ---- */

typedef struct kv_s {
    const char *name, *value;
} kv_t;

/* Iterates query and checks the (name, value) pairs, then end (or the error). */
static void expect_params(const char *query, const kv_t *want, int end)
{
    const char *cur = query;
    size_t i = 0;
    for (;;) {
        char *name = (char *)0x1, *value = (char *)0x1;
        int r = url_query_next(&cur, &name, &value);
        if (r != 1) {
            cr_assert_null(want[i].name, "%s: ended (%d) before parameter %zu (%s)", query, r, i,
                           want[i].name);
            cr_assert_eq(r, end, "%s: ended with %d, want %d", query, r, end);
            if (r < 0) {
                cr_assert_null(name, "%s: no name on error", query);
                cr_assert_null(value, "%s: no value on error", query);
            }
            break;
        }
        cr_assert_not_null(want[i].name, "%s: parameter %zu (%s) too many", query, i, name);
        cr_assert_str_eq(name, want[i].name, "%s: name %zu", query, i);
        cr_assert_str_eq(value, want[i].value, "%s: value %zu", query, i);
        free(name);
        free(value);
        i++;
        cr_assert(i < 64, "runaway iteration");
    }
}

Test(url_query_next, iterates_in_order)
{
    expect_params("a=1&b=2&a=3", (const kv_t[]){{"a", "1"}, {"b", "2"}, {"a", "3"}, {NULL, NULL}},
                  0);
}

Test(url_query_next, decodes_names_and_values)
{
    expect_params("client%20id=web+1&x%3Dy=%26",
                  (const kv_t[]){{"client id", "web 1"}, {"x=y", "&"}, {NULL, NULL}}, 0);
}

Test(url_query_next, flags_empty_values_and_empty_pieces)
{
    expect_params("&&flag&&e=&=v&",
                  (const kv_t[]){{"flag", ""}, {"e", ""}, {"", "v"}, {NULL, NULL}}, 0);
}

Test(url_query_next, empty_query)
{
    expect_params("", (const kv_t[]){{NULL, NULL}}, 0);
    expect_params("&&&", (const kv_t[]){{NULL, NULL}}, 0);
    const char *cur = NULL;
    char *n, *v;
    cr_assert_eq(url_query_next(&cur, &n, &v), 0, "a NULL cursor is the end");
}

Test(url_query_next, bad_escape_stops)
{
    expect_params("a=1&b=%zz&c=3", (const kv_t[]){{"a", "1"}, {NULL, NULL}}, -EINVAL);
    expect_params("%4=1", (const kv_t[]){{NULL, NULL}}, -EINVAL);
    expect_params("a=%00", (const kv_t[]){{NULL, NULL}}, -EINVAL);
}

Test(url_query_next, end_stays_at_end)
{
    const char *cur = "a=1";
    char *n, *v;
    cr_assert_eq(url_query_next(&cur, &n, &v), 1);
    free(n);
    free(v);
    cr_assert_eq(url_query_next(&cur, &n, &v), 0);
    cr_assert_eq(url_query_next(&cur, &n, &v), 0);
}
