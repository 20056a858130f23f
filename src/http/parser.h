/* HTTP/1.1 request codec over llhttp. Pure: takes bytes, returns "request complete /
 * need more / error"; no socket, no loop, no clock. Enforces the size limits of
 * config_limits_t and tells the caller which 4xx to answer. */
#ifndef PG_HTTP_PARSER_H
#define PG_HTTP_PARSER_H

#include <llhttp.h>
#include <stddef.h>
#include <sys/types.h>

#include "core/buf.h"

typedef struct http_header_s {
    const char *name; /* NUL-terminated, inside the parser's arena */
    const char *value;
} http_header_t;

typedef struct http_request_s {
    int method; /* llhttp_method_t */
    const char *method_name;
    const char *target; /* request target as sent: path[?query] */
    const char *path;   /* target without the query, not decoded */
    const char *query;  /* after '?', or "" */
    http_header_t *headers;
    unsigned n_headers;
    const char *body; /* NUL-terminated copy; len in body_len */
    size_t body_len;
    int keep_alive;
    int upgrade;    /* bytes after this request belong to another protocol */
    int http_major; /* 2 for a request that came over HTTP/2 */
    int http_minor;
} http_request_t;

/* A body limit for one path (exact match on the path, without the query). */
typedef struct http_path_limit_s {
    const char *path;
    size_t max_body_bytes;
} http_path_limit_t;

typedef struct http_parser_limits_s {
    size_t max_header_bytes;
    unsigned max_headers;
    size_t max_body_bytes; /* paths without their own limit (http_parser_set_body_paths) */
} http_parser_limits_t;

/* Which limit refused a request (p->error_limit). */
enum http_limit {
    HTTP_LIMIT_NONE = 0,
    HTTP_LIMIT_HEADER_BYTES, /* 431 */
    HTTP_LIMIT_HEADERS,      /* 431 */
    HTTP_LIMIT_BODY,         /* 413 */
};

enum http_parse_result {
    HTTP_PARSE_AGAIN = 0, /* everything consumed, request incomplete */
    HTTP_PARSE_DONE = 1,  /* a request is complete: read parser->req */
};

typedef struct http_parser_s {
    llhttp_t ll;
    llhttp_settings_t settings;
    http_parser_limits_t limits;
    buf_t *arena; /* request line and header bytes; NULL between requests */
    buf_t *body;
    size_t head_bytes;
    unsigned n_headers;
    int last_cb;     /* which span the previous callback appended to */
    size_t *hdr_off; /* pairs of arena offsets: name, value */
    unsigned hdr_cap;
    size_t url_off, url_len;
    int in_message;
    int error_status; /* the HTTP status to answer on error */
    const char *error_msg;
    int error_limit;                     /* enum http_limit: the limit behind a 431 or 413 */
    size_t body_max;                     /* this request's body limit (its path's) */
    const http_path_limit_t *body_paths; /* borrowed; may be NULL */
    size_t n_body_paths;
    http_request_t req;
} http_parser_t;

/* Prepares p for a stream of requests. Returns 0. */
int http_parser_init(http_parser_t *p, const http_parser_limits_t *limits);

/* Gives some paths their own body limit in place of limits->max_body_bytes (paths is
 * borrowed: it must outlive p). */
void http_parser_set_body_paths(http_parser_t *p, const http_path_limit_t *paths, size_t n);

/* Feeds len bytes; stops after a complete request. *consumed is how many bytes were
 * used (the rest must be fed again after http_parser_next, or, for an upgrade,
 * handed to the new protocol).
 * Returns HTTP_PARSE_DONE (p->req is valid until http_parser_next), HTTP_PARSE_AGAIN,
 * or a negative error with p->error_status / p->error_msg set: -EMSGSIZE (431),
 * -E2BIG (413), -EINVAL (400), -ENOMEM (500). After an error the stream is dead. */
int http_parser_execute(http_parser_t *p, const char *data, size_t len, size_t *consumed);

/* Releases the completed request and readies p for the next one on the stream. */
void http_parser_next(http_parser_t *p);

/* Tells whether the stream is between requests (no partial request buffered). */
int http_parser_idle(const http_parser_t *p);

/* Frees what p holds. */
void http_parser_free(http_parser_t *p);

/* Finds a header by case-insensitive name. Returns its value or NULL. */
const char *http_request_header(const http_request_t *req, const char *name);

/* Tells whether a comma-separated header value contains token (case-insensitive). */
int http_header_has_token(const char *value, const char *token);

#endif
