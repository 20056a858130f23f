/* libFuzzer target for core/origin: the Origin header of browser transports. The input
 * is split at the first newline: before it, a configured pattern (checked with
 * origin_pattern_valid, used only when valid, as the config does); after it, the
 * Origin header value matched against that pattern and a fixed list. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/origin.h"

static volatile int sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t pl = nl ? (size_t)(nl - data) : size;
    char *pat = malloc(pl + 1);
    size_t ol = nl ? size - pl - 1 : 0;
    char *origin = malloc(ol + 1);
    if (!pat || !origin) {
        free(pat);
        free(origin);
        return 0;
    }
    memcpy(pat, data, pl);
    pat[pl] = '\0';
    if (ol) memcpy(origin, nl + 1, ol);
    origin[ol] = '\0';
    static char *fixed[] = {"https://app.example.com", "https://*.example.org", "null"};
    int r = origin_allowed(fixed, 3, origin);
    if (r != 0 && r != 1) __builtin_trap();
    sink += r;
    if (origin_pattern_valid(pat) == 0) {
        char *list[] = {pat};
        r = origin_allowed(list, 1, origin);
        if (r != 0 && r != 1) __builtin_trap();
        /* a valid pattern without a wildcard matches itself */
        if (!strstr(pat, "*") && origin_allowed(list, 1, pat) != 1) __builtin_trap();
        sink += r;
    }
    /* an empty list and an absent header always allow */
    if (origin_allowed(fixed, 0, origin) != 1 || origin_allowed(fixed, 3, NULL) != 1)
        __builtin_trap();
    free(pat);
    free(origin);
    return 0;
}
