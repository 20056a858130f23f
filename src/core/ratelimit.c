/* Token bucket arithmetic in thousandths of a message: a rate of r messages per second
 * adds r thousandths per millisecond, so no division and no rounding drift. */
#include "core/ratelimit.h"

#define MILLI 1000u

void ratelimit_init(ratelimit_t *b, unsigned burst, uint64_t now)
{
    uint64_t cap = (uint64_t)(burst ? burst : 1) * MILLI;
    b->tokens = cap > UINT32_MAX ? UINT32_MAX : (uint32_t)cap;
    b->last_ms = (uint32_t)now;
}

int ratelimit_take(ratelimit_t *b, unsigned rate_per_s, unsigned burst, uint64_t now)
{
    if (rate_per_s == 0) return 1;
    uint64_t cap = (uint64_t)(burst ? burst : 1) * MILLI;
    if (cap > UINT32_MAX) cap = UINT32_MAX;
    /* the loop clock never goes back: the modular difference is right across the
     * 32-bit wrap (a silence of more than 49.7 days may look shorter; it refills less) */
    uint32_t elapsed32 = (uint32_t)now - b->last_ms;
    if (elapsed32) {
        uint64_t elapsed = elapsed32;
        /* a long silence refills the bucket whole: cap the product before it overflows */
        uint64_t add = elapsed >= cap ? cap : elapsed * rate_per_s;
        uint64_t t = (uint64_t)b->tokens + add;
        b->tokens = (uint32_t)(t > cap ? cap : t);
        b->last_ms = (uint32_t)now;
    }
    if (b->tokens < MILLI) return 0;
    b->tokens -= MILLI;
    return 1;
}
