/* libFuzzer target for transport/device_codec: the input as a /result body
 * (device_result_parse reads exactly size bytes), as a query string (device_query_id)
 * and a bare id (device_id_parse), and, when it is a JSON object, as an enqueue body
 * (device_cmd_parse) whose encoding must parse back to the same fields. */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/device_codec.h"

static volatile size_t sink;

static void check_result(const uint8_t *data, size_t size)
{
    /* a heap copy without a terminator: reading past size is an ASan report */
    char *body = malloc(size ? size : 1);
    if (!body) return;
    if (size) memcpy(body, data, size);
    device_result_t r;
    char err[256];
    int rc = device_result_parse(body, size, &r, err, sizeof(err));
    if (rc == 0) {
        if (!r.response && !r.error) __builtin_trap();
        if (r.failed != (r.error != NULL)) __builtin_trap();
        /* what is stored must be valid JSON */
        if (r.response) {
            json_t *j = json_loads(r.response, JSON_DECODE_ANY, NULL);
            if (!j) __builtin_trap();
            json_decref(j);
        }
        device_result_clear(&r);
    } else if (rc == -EINVAL) {
        sink += strlen(err);
        if (r.response || r.error) __builtin_trap();
    }
    free(body);
}

static void check_query(const uint8_t *data, size_t size)
{
    char *q = malloc(size + 1);
    if (!q) return;
    if (size) memcpy(q, data, size);
    q[size] = '\0';
    int64_t v = 0;
    int rc = device_query_id(q, &v);
    if (rc != 0 && rc != -ENOENT && rc != -EINVAL && rc != -ERANGE && rc != -ENOMEM)
        __builtin_trap();
    sink += (size_t)v;
    rc = device_id_parse(q, &v);
    if (rc == 0) {
        /* an accepted id prints back the same, leading zeros aside */
        char buf[32];
        snprintf(buf, sizeof(buf), "%lld", (long long)v);
        const char *p = q;
        int neg = *p == '-';
        p += neg;
        while (p[0] == '0' && p[1])
            p++;
        if (strcmp(buf + (buf[0] == '-'), p) != 0 || (v != 0 && (v < 0) != neg)) __builtin_trap();
    }
    free(q);
}

static void check_cmd(const uint8_t *data, size_t size)
{
    json_t *doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return;
    }
    device_cmd_t c;
    int64_t ttl;
    char err[256];
    if (device_cmd_parse(doc, &c, &ttl, err, sizeof(err)) == 0) {
        buf_t *b = buf_new(64);
        if (b && device_cmd_encode(&b, &c) == 0) {
            json_t *back = json_loadb(b->data, b->len, 0, NULL);
            if (!json_is_object(back)) __builtin_trap();
            const char *ep = json_string_value(json_object_get(back, "endpoint"));
            const char *verb = json_string_value(json_object_get(back, "verb"));
            if (!ep || strcmp(ep, c.endpoint) != 0 || !verb || strcmp(verb, c.verb) != 0)
                __builtin_trap();
            json_t *bd = json_object_get(back, "body");
            if ((bd != NULL) != (c.body != NULL)) __builtin_trap();
            json_decref(back);
        }
        buf_unref(b);
        device_cmd_clear(&c);
    }
    json_decref(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_result(data, size);
    check_query(data, size);
    check_cmd(data, size);
    return 0;
}
