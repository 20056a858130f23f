/* http/response: status lines, framing headers and JSON error bodies, byte for byte. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "http/response.h"

static void expect_bytes(buf_t *b, const char *want)
{
    cr_assert_not_null(b);
    cr_assert_eq(b->len, strlen(want), "length %zu, want %zu:\n%s", b->len, strlen(want), b->data);
    cr_assert(memcmp(b->data, want, b->len) == 0, "got:\n%s\nwant:\n%s", b->data, want);
    buf_unref(b);
}

Test(http_response, status_text)
{
    cr_assert_str_eq(http_status_text(200), "OK");
    cr_assert_str_eq(http_status_text(101), "Switching Protocols");
    cr_assert_str_eq(http_status_text(404), "Not Found");
    cr_assert_str_eq(http_status_text(413), "Content Too Large");
    cr_assert_str_eq(http_status_text(431), "Request Header Fields Too Large");
    cr_assert_str_eq(http_status_text(999), "Unknown");
    cr_assert_str_eq(http_status_text(-1), "Unknown");
}

Test(http_response, ok_with_body)
{
    expect_bytes(http_response_build(200, "application/json", "{}", 2, 1, NULL),
                 "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n"
                 "\r\n{}");
}

Test(http_response, close_and_extra_headers)
{
    expect_bytes(http_response_build(404, "text/plain", "no", 2, 0, "X-A: 1\r\nX-B: 2\r\n"),
                 "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n"
                 "Connection: close\r\nX-A: 1\r\nX-B: 2\r\n\r\nno");
}

Test(http_response, no_content_has_no_length_or_body)
{
    expect_bytes(http_response_build(204, "text/plain", "ignored", 7, 1, NULL),
                 "HTTP/1.1 204 No Content\r\n\r\n");
}

Test(http_response, switching_protocols)
{
    expect_bytes(http_response_build(101, NULL, NULL, 0, 1,
                                     "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                     "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
                 "\r\n\r\n");
}

Test(http_response, empty_body_and_binary_body)
{
    expect_bytes(http_response_build(200, NULL, NULL, 0, 1, NULL),
                 "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    buf_t *b = http_response_build(200, NULL, "a\0b", 3, 1, NULL);
    cr_assert_eq(b->len, strlen("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n") + 3);
    cr_assert(memcmp(b->data + b->len - 3, "a\0b", 3) == 0);
    buf_unref(b);
}

Test(http_response, large_body)
{
    static char body[70000];
    memset(body, 'z', sizeof(body));
    buf_t *b = http_response_build(200, "text/plain", body, sizeof(body), 1, NULL);
    cr_assert_not_null(b);
    cr_assert(strstr(b->data, "Content-Length: 70000\r\n"));
    cr_assert(memcmp(b->data + b->len - sizeof(body), body, sizeof(body)) == 0);
    buf_unref(b);
}

Test(http_response, error_body_is_escaped_json)
{
    buf_t *b = http_response_error(400, "bad \"x\"\n", 0);
    cr_assert_not_null(b);
    cr_assert(strncmp(b->data, "HTTP/1.1 400 Bad Request\r\n", 26) == 0, "%s", b->data);
    cr_assert(strstr(b->data, "Content-Type: application/json\r\n"));
    cr_assert(strstr(b->data, "Connection: close\r\n"));
    const char *body = strstr(b->data, "\r\n\r\n");
    cr_assert_not_null(body);
    body += 4;
    json_t *doc = json_loads(body, 0, NULL);
    cr_assert_not_null(doc, "%s", body);
    cr_assert_str_eq(json_string_value(json_object_get(doc, "error")), "bad \"x\"\n");
    char cl[64];
    snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", strlen(body));
    cr_assert(strstr(b->data, cl), "%s", b->data);
    json_decref(doc);
    buf_unref(b);
}
