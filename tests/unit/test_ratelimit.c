/* core/ratelimit: the token bucket behind limits.maxMessagesPerSecond. */
#include <criterion/criterion.h>

#include "core/ratelimit.h"

/* How many takes succeed at one instant. */
static int drain(ratelimit_t *b, unsigned rate, unsigned burst, uint64_t now)
{
    int n = 0;
    while (n < 100000 && ratelimit_take(b, rate, burst, now))
        n++;
    return n;
}

Test(ratelimit, starts_full_with_burst)
{
    ratelimit_t b;
    ratelimit_init(&b, 5, 1000);
    cr_assert_eq(drain(&b, 10, 5, 1000), 5);
    cr_assert_eq(ratelimit_take(&b, 10, 5, 1000), 0);
}

Test(ratelimit, refills_at_rate)
{
    ratelimit_t b;
    ratelimit_init(&b, 5, 0);
    drain(&b, 10, 5, 0);
    /* 10 per second: one every 100 ms, none before */
    cr_assert_eq(ratelimit_take(&b, 10, 5, 99), 0);
    cr_assert_eq(ratelimit_take(&b, 10, 5, 100), 1);
    cr_assert_eq(ratelimit_take(&b, 10, 5, 100), 0);
    cr_assert_eq(drain(&b, 10, 5, 350), 2); /* 250 ms more: 2.5 tokens */
    cr_assert_eq(drain(&b, 10, 5, 400), 1); /* the half token carried over */
}

Test(ratelimit, refill_is_capped_at_burst)
{
    ratelimit_t b;
    ratelimit_init(&b, 3, 0);
    drain(&b, 100, 3, 0);
    cr_assert_eq(drain(&b, 100, 3, 1000000), 3);
    /* a very long silence does not overflow */
    cr_assert_eq(drain(&b, 1000000, 3, UINT64_MAX / 2), 3);
}

Test(ratelimit, sustained_rate_is_kept)
{
    ratelimit_t b;
    ratelimit_init(&b, 1, 0);
    int ok = 0;
    /* a message every millisecond for 10 s at 50/s: about 500 pass */
    for (uint64_t t = 0; t < 10000; t++)
        ok += ratelimit_take(&b, 50, 1, t);
    cr_assert(ok >= 499 && ok <= 501, "%d", ok);
}

Test(ratelimit, zero_rate_is_unlimited)
{
    ratelimit_t b;
    ratelimit_init(&b, 1, 0);
    cr_assert_eq(drain(&b, 0, 1, 0), 100000);
}

Test(ratelimit, clock_wrap_of_32_bits)
{
    ratelimit_t b;
    uint64_t t0 = (1ull << 32) - 50;
    ratelimit_init(&b, 2, t0);
    cr_assert_eq(drain(&b, 10, 2, t0), 2);
    /* 100 ms later, across the wrap of the stored 32-bit clock: one token */
    cr_assert_eq(drain(&b, 10, 2, t0 + 100), 1);
    cr_assert_eq(drain(&b, 10, 2, t0 + 150), 0);
    cr_assert_eq(drain(&b, 10, 2, t0 + 200), 1);
    cr_assert_eq(sizeof(ratelimit_t), 8);
}
