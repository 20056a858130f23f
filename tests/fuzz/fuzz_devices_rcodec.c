/* libFuzzer target for store/devices_rcodec: the input as a wake-up message from
 * another node (devices_wake_parse reads exactly size bytes), and, split at newlines
 * into field/value pairs, as a command hash and an orphan hash read back from Redis
 * (devices_rcmd_decode, devices_rorphan_decode). A decoded command's fields, written
 * again with devices_rcmd_fields, must decode to the same command. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/devices_rcodec.h"

#define KV_MAX 64

static volatile size_t sink;

static void check_wake(const uint8_t *data, size_t size)
{
    char *body = malloc(size ? size : 1);
    if (!body) return;
    if (size) memcpy(body, data, size);
    devices_wake_t w[8];
    const char *node;
    size_t nl;
    int n = devices_wake_parse(body, size, w, 8, &node, &nl);
    if (n > 8 || n == 0) __builtin_trap();
    if (n > 0) {
        if (!nl || node < body || node + nl != body + size) __builtin_trap();
        for (int i = 0; i < n; i++)
            if (w[i].kind != DEVICES_WAKE_POLL && w[i].kind != DEVICES_WAKE_RESULT)
                __builtin_trap();
    } else if (n != -EINVAL) {
        __builtin_trap();
    }
    free(body);
}

static int same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_hashes(const uint8_t *data, size_t size)
{
    char *copy = malloc(size ? size : 1);
    if (!copy) return;
    if (size) memcpy(copy, data, size);
    devices_rstr_t kv[KV_MAX];
    size_t n = 0;
    const char *p = copy, *end = copy + size;
    while (n < KV_MAX && p <= end) {
        const char *e = memchr(p, '\n', (size_t)(end - p));
        if (!e) e = end;
        kv[n++] = (devices_rstr_t){p, (size_t)(e - p)};
        p = e + 1;
    }
    n &= ~(size_t)1;
    devices_cmd_t c;
    int r = devices_rcmd_decode(kv, n, &c);
    if (r == 0) {
        if (!c.cmd.verb || !c.cmd.endpoint || !c.cmd.content_type) __builtin_trap();
        if (c.status < 0 || c.status >= DEVICES_N_STATUS || c.attempts < 0) __builtin_trap();
        devices_rstr_t again[KV_MAX];
        size_t m = devices_rcmd_fields(&c.cmd, again);
        if (m > DEVICES_RCMD_FIELDS_MAX || m % 2) __builtin_trap();
        devices_rstr_t state[] = {{"id", 2},        {"1", 1},      {"device", 6},   {"2", 1},
                                  {"status", 6},    {"queued", 6}, {"attempts", 8}, {"0", 1},
                                  {"createdAt", 9}, {"3", 1}};
        memcpy(again + m, state, sizeof(state));
        m += sizeof(state) / sizeof(state[0]);
        devices_cmd_t d;
        if (devices_rcmd_decode(again, m, &d) != 0) __builtin_trap();
        if (!same(c.cmd.verb, d.cmd.verb) || !same(c.cmd.endpoint, d.cmd.endpoint) ||
            !same(c.cmd.body, d.cmd.body) || !same(c.cmd.content_type, d.cmd.content_type) ||
            !same(c.cmd.query_string, d.cmd.query_string) || c.cmd.body_json != d.cmd.body_json)
            __builtin_trap();
        devices_cmd_clear(&d);
        devices_cmd_clear(&c);
    } else if (r != -EINVAL && r != -ENOMEM) {
        __builtin_trap();
    }
    devices_orphan_t o;
    r = devices_rorphan_decode(kv, n, &o);
    if (r == 0) {
        sink += (o.response ? strlen(o.response) : 0) + (o.error ? strlen(o.error) : 0);
        devices_orphan_clear(&o);
    } else if (r != -EINVAL && r != -ENOMEM) {
        __builtin_trap();
    }
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_wake(data, size);
    check_hashes(data, size);
    return 0;
}
