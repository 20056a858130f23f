/* Seed 004's device wire: ids, commands, results, enqueue validation. Pure. */
#include "transport/device_codec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/url.h"

int device_id_parse(const char *s, int64_t *out)
{
    const char *p = s;
    int neg = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    if (*p < '0' || *p > '9') return -EINVAL;
    /* accumulate negatively so INT64_MIN fits */
    int64_t v = 0;
    int overflow = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') return -EINVAL;
        int d = *p - '0';
        if (v < (INT64_MIN + d) / 10)
            overflow = 1;
        else
            v = v * 10 - d;
    }
    if (overflow) return -ERANGE;
    if (!neg) {
        if (v == INT64_MIN) return -ERANGE;
        v = -v;
    }
    *out = v;
    return 0;
}

int device_query_id(const char *query, int64_t *out)
{
    char *v = NULL;
    ssize_t n = url_query_get(query, "deviceId", &v);
    if (n < 0) return (int)n;
    /* a decoded NUL would hide the rest; url_decode refuses it, this is belt and braces */
    int r = strlen(v) == (size_t)n ? device_id_parse(v, out) : -EINVAL;
    free(v);
    return r;
}

void device_result_clear(device_result_t *r)
{
    free(r->response);
    free(r->error);
    memset(r, 0, sizeof(*r));
}

int device_result_from_json(json_t *doc, device_result_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(doc)) {
        snprintf(err, errlen, "body must be a JSON object with response or error");
        return -EINVAL;
    }
    json_t *resp = json_object_get(doc, "response");
    json_t *error = json_object_get(doc, "error");
    if (json_is_null(error)) error = NULL;
    if (!resp && !error) {
        snprintf(err, errlen, "body must have response or error");
        return -EINVAL;
    }
    if (resp && !(out->response = json_dumps(resp, JSON_COMPACT | JSON_ENCODE_ANY))) goto nomem;
    if (error) {
        out->failed = 1;
        if (json_is_string(error))
            out->error = strndup(json_string_value(error), json_string_length(error));
        else
            out->error = json_dumps(error, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!out->error) goto nomem;
    }
    return 0;
nomem:
    device_result_clear(out);
    return -ENOMEM;
}

int device_result_parse(const char *body, size_t len, device_result_t *out, char *err,
                        size_t errlen)
{
    memset(out, 0, sizeof(*out));
    json_error_t je;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!doc) {
        snprintf(err, errlen, "body is not valid JSON: %s", je.text);
        return -EINVAL;
    }
    int r = device_result_from_json(doc, out, err, errlen);
    json_decref(doc);
    return r;
}

void device_cmd_clear(device_cmd_t *c)
{
    free(c->verb);
    free(c->endpoint);
    free(c->body);
    free(c->content_type);
    free(c->query_string);
    memset(c, 0, sizeof(*c));
}

int device_base64_valid(const char *s, size_t len)
{
    if (len % 4) return 0;
    size_t pad = 0;
    if (len && s[len - 1] == '=') pad++;
    if (len > 1 && s[len - 2] == '=') pad++;
    for (size_t i = 0; i < len - pad; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/'))
            return 0;
    }
    return 1;
}

int device_content_type_is(const char *ct, const char *type)
{
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strcspn(ct, ";");
    while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    return n == strlen(type) && strncasecmp(ct, type, n) == 0;
}

/* A string field: a string without NULs or control characters, at most max bytes (at
 * least 1 when nonempty). JSON null counts as absent. Returns 1 present and valid, 0
 * absent, -1 invalid. */
static int text_field(json_t *doc, const char *key, size_t max, int nonempty, const char **out)
{
    json_t *v = json_object_get(doc, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) return -1;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n > max || strlen(s) != n || (nonempty && n == 0)) return -1;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return -1;
    *out = s;
    return 1;
}

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        snprintf(err, errlen, __VA_ARGS__);                                                        \
        r = -EINVAL;                                                                               \
        goto fail;                                                                                 \
    } while (0)

int device_cmd_parse(json_t *doc, device_cmd_t *out, int64_t *ttl_s, char *err, size_t errlen)
{
    static const char *known[] = {"verb",        "endpoint",   "body", "contentType",
                                  "queryString", "ttlSeconds", NULL};
    memset(out, 0, sizeof(*out));
    *ttl_s = 0;
    int r;
    if (!json_is_object(doc)) FAIL("body must be a JSON object");
    const char *k;
    json_t *v;
    json_object_foreach(doc, k, v)
    {
        int ok = 0;
        for (int i = 0; known[i] && !ok; i++)
            ok = strcmp(k, known[i]) == 0;
        if (!ok)
            FAIL("%.64s is not a known field (verb, endpoint, body, contentType, queryString, "
                 "ttlSeconds)",
                 k);
    }
    const char *verb = "POST", *endpoint = NULL, *ct = "application/json", *qs = NULL;
    if (text_field(doc, "verb", 8, 1, &verb) < 0 ||
        (strcasecmp(verb, "GET") != 0 && strcasecmp(verb, "POST") != 0))
        FAIL("verb must be \"GET\" or \"POST\"");
    if (text_field(doc, "endpoint", DEVICE_ENDPOINT_MAX, 1, &endpoint) <= 0)
        FAIL("endpoint is required and must be a non-empty string of at most %d characters",
             DEVICE_ENDPOINT_MAX);
    if (text_field(doc, "contentType", DEVICE_CONTENT_TYPE_MAX, 1, &ct) < 0 || !strchr(ct, '/'))
        FAIL("contentType must be a media type such as application/json");
    if (text_field(doc, "queryString", DEVICE_QUERY_STRING_MAX, 0, &qs) < 0)
        FAIL("queryString must be a string of at most %d characters", DEVICE_QUERY_STRING_MAX);
    json_t *ttl = json_object_get(doc, "ttlSeconds");
    if (ttl && !json_is_null(ttl)) {
        if (!json_is_integer(ttl) || json_integer_value(ttl) < 1 ||
            json_integer_value(ttl) > DEVICE_TTL_MAX_S)
            FAIL("ttlSeconds must be an integer from 1 to %d", DEVICE_TTL_MAX_S);
        *ttl_s = json_integer_value(ttl);
    }
    json_t *body = json_object_get(doc, "body");
    int octets = device_content_type_is(ct, "application/octet-stream");
    if (body && !json_is_null(body)) {
        if (json_is_string(body)) {
            const char *s = json_string_value(body);
            size_t n = json_string_length(body);
            if (octets && !device_base64_valid(s, n))
                FAIL("body must be a base64 string when contentType is application/octet-stream");
            if (strlen(s) != n) FAIL("body must not contain NUL characters");
            out->body = strndup(s, n);
        } else {
            if (octets)
                FAIL("body must be a base64 string when contentType is application/octet-stream");
            out->body = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
            out->body_json = 1;
        }
        if (!out->body) {
            r = -ENOMEM;
            goto fail;
        }
    }
    out->verb = strdup(strcasecmp(verb, "GET") == 0 ? "GET" : "POST");
    out->endpoint = strdup(endpoint);
    out->content_type = strdup(ct);
    out->query_string = qs ? strdup(qs) : NULL;
    if (!out->verb || !out->endpoint || !out->content_type || (qs && !out->query_string)) {
        r = -ENOMEM;
        goto fail;
    }
    return 0;
fail:
    device_cmd_clear(out);
    *ttl_s = 0;
    return r;
}

int device_cmd_encode(buf_t **bp, const device_cmd_t *c)
{
    int r = buf_puts(bp, "{\"verb\":");
    if (!r) r = buf_put_json_string(bp, c->verb ? c->verb : "POST");
    if (!r && c->endpoint) {
        r = buf_puts(bp, ",\"endpoint\":");
        if (!r) r = buf_put_json_string(bp, c->endpoint);
    }
    if (!r && c->body) {
        r = buf_puts(bp, ",\"body\":");
        if (!r) r = c->body_json ? buf_puts(bp, c->body) : buf_put_json_string(bp, c->body);
    }
    if (!r) {
        r = buf_puts(bp, ",\"contentType\":");
        if (!r) r = buf_put_json_string(bp, c->content_type ? c->content_type : "application/json");
    }
    if (!r && c->query_string) {
        r = buf_puts(bp, ",\"queryString\":");
        if (!r) r = buf_put_json_string(bp, c->query_string);
    }
    if (!r) r = buf_puts(bp, "}");
    return r;
}
