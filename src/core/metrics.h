/* Process-wide counters for /metrics. Relaxed atomics: exact at rest, never a lock. */
#ifndef PG_METRICS_H
#define PG_METRICS_H

#include <stdint.h>

#include "core/buf.h"

enum metrics_transport {
    METRICS_T_WEBSOCKET = 0,
    METRICS_T_HTTP,
    METRICS_T_SSE,
    METRICS_T_HTTP2,
    METRICS_T_COUNT
};

/* queued, sent, done, failed, expired, cancelled (enum devices_status) */
#define METRICS_DEVICE_STATUSES 6

typedef struct metrics_s {
    int64_t connections[METRICS_T_COUNT];
    uint64_t pushes_received;
    uint64_t deliveries_ok;
    uint64_t deliveries_failed;
    uint64_t bytes_out;
    uint64_t slow_consumer_closes;
    uint64_t http_requests;
    /* device command queue (store/devices.c): gauges follow each committed change */
    int64_t device_queued;    /* commands waiting for their device */
    int64_t device_in_flight; /* sent, no result yet */
    uint64_t device_commands[METRICS_DEVICE_STATUSES]; /* entered each status */
    uint64_t device_redeliveries;
    uint64_t device_orphans;
} metrics_t;

extern metrics_t metrics;

#define METRICS_ADD(field, n) __atomic_add_fetch(&metrics.field, (n), __ATOMIC_RELAXED)

/* Appends the Prometheus text exposition of every counter to *bp.
 * Returns 0 or -ENOMEM. */
int metrics_render(buf_t **bp);

#endif
