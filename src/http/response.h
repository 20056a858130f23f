/* HTTP/1.1 response serialization into a fresh buffer. Pure. */
#ifndef PG_HTTP_RESPONSE_H
#define PG_HTTP_RESPONSE_H

#include <stddef.h>

#include "core/buf.h"

/* The reason phrase for status ("OK", "Not Found", …; "Unknown" otherwise). */
const char *http_status_text(int status);

/* Serializes a whole response. extra_headers is NULL or CRLF-terminated header lines.
 * keep_alive 0 adds `Connection: close`. Returns a new buffer (one reference) or NULL
 * when out of memory. */
buf_t *http_response_build(int status, const char *content_type, const char *body, size_t body_len,
                           int keep_alive, const char *extra_headers);

/* A JSON error response `{"error": msg}`. Returns a new buffer or NULL. */
buf_t *http_response_error(int status, const char *msg, int keep_alive);

#endif
