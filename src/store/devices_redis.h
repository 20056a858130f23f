/* The device command queue in Redis, shared by every node of a cluster (issue 6,
 * docs/cluster.md "Device queues"): the same interface and semantics as the SQLite
 * queue (store/devices.h), each call one Lua script (EVALSHA) that Redis runs
 * atomically, so a device may poll any node for a command enqueued on any other.
 *
 * Calls block the calling thread for one round trip on a client of their own (a small
 * pool: one per thread that is in a call; cluster/redis_cluster.h, so one Redis or a
 * Redis Cluster, where a redirect adds a round trip), with a short timeout; a call
 * returns only once Redis has answered, so its effect is as durable as Redis's
 * persistence makes it (AOF with appendfsync always or everysec: the operator's
 * choice). While Redis cannot be reached (healthy says no, the connection fails or
 * times out) calls return -ENOTCONN at once.
 *
 * Changes that may end a held request publish a wake-up message (store/devices_rcodec.h)
 * on the devices channel from inside the script: one message per event, which every
 * node subscribed to the channel receives once. */
#ifndef PG_STORE_DEVICES_REDIS_H
#define PG_STORE_DEVICES_REDIS_H

#include "cluster/redis_cluster.h"
#include "store/devices.h"

#define DEVICES_REDIS_TIMEOUT_MS 500 /* a call's round trip, by default */
#define DEVICES_REDIS_CONNECT_MS 200 /* connecting, when a call needs a new connection */
#define DEVICES_REDIS_BUCKETS                                                                      \
    16 /* devices spread over this many hash tags (slots); the                                     \
          scripts' newid() multiplies by it too */

typedef struct devices_redis_cfg_s {
    const redis_target_t *target; /* one Redis or a Redis Cluster; NULL: host, port, db */
    const char *host;
    int port;
    int db;
    const char *prefix;  /* "pushgate:{applicationId}:": keys under prefix + "dev:", wake-ups
                            on the channel prefix + "devices" */
    const char *node_id; /* names this node in its wake-up messages */
    /* optional: 0 while Redis is known to be down (the bus's view), so calls fail fast */
    int (*healthy)(void *arg);
    void *healthy_arg;
    unsigned timeout_ms; /* 0: DEVICES_REDIS_TIMEOUT_MS */
} devices_redis_cfg_t;

/* Opens the queue in Redis (connecting lazily: Redis need not be up yet). The gauges
 * of the metrics are set from Redis when it answers now, and on every sweep (they are
 * the cluster's, as of the last sweep of this node, plus this node's changes since).
 * Returns 0, or -ENOMEM with a message in err. */
int devices_redis_open(devices_t **out, const devices_redis_cfg_t *cfg, const devices_opts_t *opts,
                       char *err, size_t errlen);

#endif
