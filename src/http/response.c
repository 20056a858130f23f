/* Response serialization. */
#include "http/response.h"

#include <string.h>

const char *http_status_text(int status)
{
    switch (status) {
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Content";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

buf_t *http_response_build(int status, const char *content_type, const char *body, size_t body_len,
                           int keep_alive, const char *extra_headers)
{
    buf_t *b = buf_new(160 + body_len);
    if (!b) return NULL;
    int r = buf_printf(&b, "HTTP/1.1 %d %s\r\n", status, http_status_text(status));
    /* 304: no body, and no Content-Length (it would be the 200's) */
    if (r == 0 && status != 204 && status != 101 && status != 304)
        r = buf_printf(&b, "Content-Length: %zu\r\n", body_len);
    if (r == 0 && content_type && status != 204 && status != 304)
        r = buf_printf(&b, "Content-Type: %s\r\n", content_type);
    if (r == 0 && !keep_alive) r = buf_puts(&b, "Connection: close\r\n");
    if (r == 0 && extra_headers) r = buf_puts(&b, extra_headers);
    if (r == 0) r = buf_append(&b, "\r\n", 2);
    if (r == 0 && body_len && status != 204) r = buf_append(&b, body, body_len);
    if (r < 0) {
        buf_unref(b);
        return NULL;
    }
    return b;
}

buf_t *http_response_error(int status, const char *msg, int keep_alive)
{
    buf_t *body = buf_new(64 + strlen(msg));
    if (!body) return NULL;
    buf_t *res = NULL;
    if (buf_puts(&body, "{\"error\":") == 0 && buf_put_json_string(&body, msg) == 0 &&
        buf_puts(&body, "}") == 0)
        res = http_response_build(status, "application/json", body->data, body->len, keep_alive,
                                  NULL);
    buf_unref(body);
    return res;
}
