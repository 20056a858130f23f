/* The bus: how a push reaches every node of the cluster (itself included, as seed
 * 000's InternalPushRequest) and how each node's report returns to the origin.
 * bus_local serves a single node; bus_redis (the cluster issue) implements the same
 * operations over Redis, bus_nats over NATS. The hub calls the bus; the bus calls back hub_deliver
 * and hub_node_report, from any thread. */
#ifndef PG_BUS_H
#define PG_BUS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "hub/clients.h"
#include "hub/push.h"
#include "hub/report.h"

typedef struct bus_s bus_t;
struct hub_s;

typedef struct bus_ops_s {
    /* Sends p to every node, this one included. Returns 0, BUS_LOCAL_ONLY when the bus
     * is down and p was delivered on this node only (the hub then names the other
     * members missing at once and flags the report), or a negative errno. */
    int (*publish)(bus_t *bus, push_t *p);
    /* Returns this node's report for p to p->origin_node; takes r's contents.
     * Returns 0 or a negative errno. */
    int (*report)(bus_t *bus, push_t *p, report_t *r);
    /* The node ids that are expected to answer a publish now (new array of new
     * strings; free each and the array). Returns the count, or a negative errno. */
    long (*members)(bus_t *bus, char ***ids);
    /* Stops and frees the bus (after close, once the loop it uses has ended). */
    void (*free)(bus_t *bus);
    /* 1 while the bus reaches every node (readiness), 0 while it is down. NULL: always 1. */
    int (*healthy)(bus_t *bus);
    /* The members as a new JSON array of {applicationId, nodeId, workers, connections,
     * startedAt}, or NULL to describe only this node. NULL op: this node only. */
    json_t *(*nodes)(bus_t *bus);
    /* Stops using the loop it runs on (on the loop's thread, at SIGTERM): leaves the
     * cluster and closes its handles; publish delivers locally from then on, so the
     * draining workers keep working. May be NULL. */
    void (*close)(bus_t *bus);
    /* Sends the client listing q to every node, this one included (hub_list_collect
     * there). Returns 0, BUS_LOCAL_ONLY when the bus is down and only this node lists,
     * or a negative errno. */
    int (*list)(bus_t *bus, client_query_t *q);
    /* Returns this node's rows for q to q->origin_node (hub_list_result there); takes
     * l's contents. Returns 0 or a negative errno. */
    int (*list_reply)(bus_t *bus, client_query_t *q, client_list_t *l);
} bus_ops_t;

/* publish: the bus is down, p went to this node's subscribers only. */
#define BUS_LOCAL_ONLY 1

struct bus_s {
    const bus_ops_t *ops;
    struct hub_s *hub;
    /* 1: bus_local, no other node (publish hands the push to this node's workers only) */
    int single_node;
    /* Device wake-ups from other nodes (the Redis bus's devices channel, written by the
     * device queue in Redis): called on the bus's loop with each message's body. Set
     * before that loop runs; NULL: such messages are ignored. */
    void (*device_wake)(void *arg, const char *body, size_t len);
    void *device_wake_arg;
};

/* Whether bus reaches the cluster (a bus without the op always does). Returns 1 or 0. */
static inline int bus_healthy(bus_t *bus)
{
    return !bus || !bus->ops->healthy || bus->ops->healthy(bus);
}

struct config_s;
struct uv_loop_s;

/* The single-node bus. Returns a new bus or NULL when out of memory. */
bus_t *bus_local_new(struct hub_s *hub, const char *node_id);

/* The NATS bus (docs/cluster.md, "NATS") for cfg->nats_url: pushes, reports and
 * membership over NATS, handed to loop (the main thread's) from cnats's threads;
 * connects and reconnects by itself. state is the Redis bus that keeps the cluster's
 * shared state (sessions, stream configuration, device queue), or NULL when each node
 * keeps its own: the NATS bus owns it from then on (closes and frees it with itself,
 * and on failure). Returns a new bus, or NULL with a message in err (a bad URL). */
bus_t *bus_nats_new(struct hub_s *hub, const struct config_s *cfg, struct uv_loop_s *loop,
                    const uint32_t *connections, bus_t *state, char *err, size_t errlen);

struct config_s;
struct uv_loop_s;

/* The Redis bus (docs/cluster.md) on loop, the main thread's: connects, subscribes,
 * heartbeats and reconnects by itself; connections (atomic) is what this node
 * announces. Also shares sessions and stream configuration through Redis (it installs
 * the auth and streams store hooks). Returns a new bus, or NULL with a message naming
 * the problem (a bad URL) in err. */
bus_t *bus_redis_new(struct hub_s *hub, const struct config_s *cfg, struct uv_loop_s *loop,
                     const uint32_t *connections, char *err, size_t errlen);

#endif
