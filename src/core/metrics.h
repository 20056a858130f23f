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

/* Why a limit refused something: one label of pushgate_refused_total each
 * (docs/operations.md). The set is fixed; metrics_refused_name spells them. */
enum metrics_refusal {
    REFUSED_MAX_CONNECTIONS = 0,    /* limits.maxConnections */
    REFUSED_MAX_CONNECTIONS_PER_IP, /* limits.maxConnectionsPerIp */
    REFUSED_HANDSHAKE_TIMEOUT,      /* first request not whole within limits.handshakeTimeoutMs */
    REFUSED_REQUEST_TIMEOUT,        /* a later request not whole within limits.readTimeoutMs */
    REFUSED_IDLE_TIMEOUT,           /* keep-alive idle past limits.idleTimeoutMs */
    REFUSED_HEADER_COUNT,           /* limits.maxHeaders */
    REFUSED_HEADER_SIZE,            /* limits.maxHeaderBytes */
    REFUSED_BODY_SIZE,              /* limits.maxBodyBytes / maxBodyBytesByPath */
    REFUSED_MESSAGE_SIZE,           /* limits.maxMessageBytes (WebSocket close 1009) */
    REFUSED_MESSAGE_RATE,           /* limits.maxMessagesPerSecond */
    REFUSED_SUBSCRIPTIONS,          /* limits.maxSubscriptions */
    REFUSED_ORIGIN,                 /* allowedOrigins */
    REFUSED_COUNT
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
    int64_t device_queued;                             /* commands waiting for their device */
    int64_t device_in_flight;                          /* sent, no result yet */
    uint64_t device_commands[METRICS_DEVICE_STATUSES]; /* entered each status */
    uint64_t device_redeliveries;
    uint64_t device_orphans;
    uint64_t refused[REFUSED_COUNT];
} metrics_t;

extern metrics_t metrics;

#define METRICS_ADD(field, n) __atomic_add_fetch(&metrics.field, (n), __ATOMIC_RELAXED)

/* Counts one refusal by a limit. */
#define METRICS_REFUSED(reason) __atomic_add_fetch(&metrics.refused[(reason)], 1, __ATOMIC_RELAXED)

/* The label of a refusal reason ("max_connections", ...). Returns a static string. */
const char *metrics_refused_name(int reason);

/* Appends the Prometheus text exposition of every counter to *bp.
 * Returns 0 or -ENOMEM. */
int metrics_render(buf_t **bp);

#endif
