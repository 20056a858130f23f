/* Process-wide counters for /metrics. Relaxed atomics: exact at rest, never a lock. */
#ifndef PG_METRICS_H
#define PG_METRICS_H

#include <stdint.h>

#include "core/buf.h"

enum metrics_transport { METRICS_T_WEBSOCKET = 0, METRICS_T_HTTP, METRICS_T_SSE, METRICS_T_COUNT };

typedef struct metrics_s {
    int64_t connections[METRICS_T_COUNT];
    uint64_t pushes_received;
    uint64_t deliveries_ok;
    uint64_t deliveries_failed;
    uint64_t bytes_out;
    uint64_t slow_consumer_closes;
    uint64_t http_requests;
} metrics_t;

extern metrics_t metrics;

#define METRICS_ADD(field, n) __atomic_add_fetch(&metrics.field, (n), __ATOMIC_RELAXED)

/* Appends the Prometheus text exposition of every counter to *bp.
 * Returns 0 or -ENOMEM. */
int metrics_render(buf_t **bp);

#endif
