/* The wire of devices that poll (seed 004): the deviceId query parameter, the command a
 * device receives from GET /push ({verb, endpoint, body, contentType, queryString}), the
 * result it posts back ({"response": …} or {"error": "…"}), and the operator's enqueue
 * body. Pure: strings and JSON in, structs and bytes out; no socket, loop or clock. */
#ifndef PG_DEVICE_CODEC_H
#define PG_DEVICE_CODEC_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define DEVICE_ENDPOINT_MAX 1024
#define DEVICE_CONTENT_TYPE_MAX 255
#define DEVICE_QUERY_STRING_MAX 8192
#define DEVICE_TTL_MAX_S 315360000 /* ten years */

/* A command as the device receives it. Every string is owned (free with
 * device_cmd_clear). */
typedef struct device_cmd_s {
    char *verb;         /* "GET" or "POST" */
    char *endpoint;     /* non-empty */
    char *body;         /* NULL: no body; JSON text when body_json, else the string itself */
    int body_json;      /* body is a JSON value (object, array, number, boolean) */
    char *content_type; /* never NULL once parsed ("application/json" by default) */
    char *query_string; /* NULL: none */
} device_cmd_t;

/* What a device posted to /result. */
typedef struct device_result_s {
    int failed;     /* 1: the body had a non-null "error" */
    char *response; /* the "response" value as compact JSON text, or NULL when absent */
    char *error;    /* the "error" string (other JSON values as their JSON text), or NULL */
} device_result_t;

/* Parses a decimal int64 (optional '-', digits only, no spaces) from the NUL-terminated
 * s. Returns 0, -EINVAL when s is not an integer, -ERANGE when it does not fit. */
int device_id_parse(const char *s, int64_t *out);

/* Finds and parses the deviceId parameter of a query string ("a=1&deviceId=42").
 * Returns 0, -ENOENT when absent, -EINVAL when not an integer (or badly escaped),
 * -ERANGE when out of the int64 range, -ENOMEM. */
int device_query_id(const char *query, int64_t *out);

/* Parses a /result body: a JSON object with "response" and/or "error". A non-null
 * "error" makes the result a failure; otherwise "response" must be present (any JSON
 * value, null included). Other keys are ignored. On error writes a message for the
 * device into err. Returns 0 (out filled; free with device_result_clear), -EINVAL (bad
 * body, err set), -ENOMEM. */
int device_result_parse(const char *body, size_t len, device_result_t *out, char *err,
                        size_t errlen);

/* The same on a parsed document (device_result_parse = json_loadb + this).
 * Returns 0, -EINVAL (err set), -ENOMEM. */
int device_result_from_json(json_t *doc, device_result_t *out, char *err, size_t errlen);

/* Frees what r owns and zeroes it. */
void device_result_clear(device_result_t *r);

/* Validates an enqueue body {verb?, endpoint, body?, contentType?, queryString?,
 * ttlSeconds?} and fills out with defaults applied (verb POST, contentType
 * application/json). *ttl_s is the requested TTL in seconds, 0 when not given. Unknown
 * keys are refused. On error writes a message naming the field into err. Returns 0
 * (free out with device_cmd_clear), -EINVAL (err set), -ENOMEM. */
int device_cmd_parse(json_t *doc, device_cmd_t *out, int64_t *ttl_s, char *err, size_t errlen);

/* Frees what c owns and zeroes it. */
void device_cmd_clear(device_cmd_t *c);

/* Appends the command as the device receives it: a JSON object with verb, endpoint,
 * body (a JSON value as is, a string as a string), contentType and queryString, absent
 * optional fields omitted. Returns 0 or -ENOMEM. */
int device_cmd_encode(buf_t **bp, const device_cmd_t *c);

/* Tells whether s[0..len) is standard padded base64 (RFC 4648 §4; "" included).
 * Returns 1 or 0. */
int device_base64_valid(const char *s, size_t len);

/* Tells whether the media type of content_type (before any ';', spaces trimmed) is
 * type, case-insensitively. Returns 1 or 0. */
int device_content_type_is(const char *content_type, const char *type);

#endif
