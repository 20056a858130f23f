/* libFuzzer target for http/url: url_decode over the raw bytes, then url_query_get for a
 * few names and url_query_next over every parameter of the input as a NUL-terminated
 * query. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "http/url.h"

static volatile size_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* url_decode reads exactly size bytes: a heap copy without a terminator */
    char *raw = malloc(size ? size : 1);
    char *out = malloc(size + 1);
    if (!raw || !out) {
        free(raw);
        free(out);
        return 0;
    }
    if (size) memcpy(raw, data, size);
    ssize_t d = url_decode(raw, size, out, size);
    if (d > (ssize_t)size) __builtin_trap();
    if (d >= 0)
        for (ssize_t i = 0; i <= d; i++)
            sink += (unsigned char)out[i];
    /* too small an output must be refused, not overrun */
    if (size > 1) {
        char *small = malloc(size / 2 + 1);
        if (small) {
            ssize_t s = url_decode(raw, size, small, size / 2);
            if (s > (ssize_t)(size / 2)) __builtin_trap();
            free(small);
        }
    }
    free(raw);
    free(out);

    char *query = malloc(size + 1);
    if (!query) return 0;
    if (size) memcpy(query, data, size);
    query[size] = '\0';
    static const char *names[] = {"clientId", "sessionId", "a", "", "x=y", "&", "%41"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char *v = NULL;
        ssize_t r = url_query_get(query, names[i], &v);
        if (r >= 0) {
            if (!v || strlen(v) != (size_t)r) __builtin_trap();
            free(v);
        } else if (v) {
            __builtin_trap();
        }
    }
    /* and iterate every parameter */
    const char *cur = query;
    for (int i = 0; i <= (int)size + 1; i++) {
        char *name = NULL, *value = NULL;
        int r = url_query_next(&cur, &name, &value);
        if (r != 1) {
            if (r > 1 || name || value) __builtin_trap();
            break;
        }
        if (!name || !value || i > (int)size) __builtin_trap();
        sink += strlen(name) + strlen(value);
        free(name);
        free(value);
    }
    free(query);
    return 0;
}
