/* A token bucket for inbound messages per connection: refilled from the loop clock at
 * each take, so a connection needs no timer of its own. 8 bytes, no allocation. */
#ifndef PG_RATELIMIT_H
#define PG_RATELIMIT_H

#include <stdint.h>

typedef struct ratelimit_s {
    uint32_t last_ms; /* the loop clock of the last refill, modulo 2^32 ms (49.7 days) */
    uint32_t tokens;  /* thousandths of a message */
} ratelimit_t;

/* Starts b full (burst messages) at now. */
void ratelimit_init(ratelimit_t *b, unsigned burst, uint64_t now);

/* Takes one message's token: refills rate_per_s per second up to burst, then takes one.
 * rate_per_s 0 means unlimited. Returns 1 when the message may go on, 0 when the
 * connection is over its rate. */
int ratelimit_take(ratelimit_t *b, unsigned rate_per_s, unsigned burst, uint64_t now);

#endif
