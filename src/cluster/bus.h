/* The bus: how a push reaches every node of the cluster (itself included, as seed
 * 000's InternalPushRequest) and how each node's report returns to the origin.
 * bus_local serves a single node; bus_redis (the cluster issue) implements the same
 * operations over Redis. The hub calls the bus; the bus calls back hub_deliver and
 * hub_node_report, from any thread. */
#ifndef PG_BUS_H
#define PG_BUS_H

#include <stddef.h>

#include "hub/push.h"
#include "hub/report.h"

typedef struct bus_s bus_t;
struct hub_s;

typedef struct bus_ops_s {
    /* Sends p to every node, this one included. Returns 0 or a negative errno. */
    int (*publish)(bus_t *bus, push_t *p);
    /* Returns this node's report for p to p->origin_node; takes r's contents.
     * Returns 0 or a negative errno. */
    int (*report)(bus_t *bus, push_t *p, report_t *r);
    /* The node ids that are expected to answer a publish now (new array of new
     * strings; free each and the array). Returns the count, or a negative errno. */
    long (*members)(bus_t *bus, char ***ids);
    /* Stops and frees the bus. */
    void (*free)(bus_t *bus);
} bus_ops_t;

struct bus_s {
    const bus_ops_t *ops;
    struct hub_s *hub;
};

/* The single-node bus. Returns a new bus or NULL when out of memory. */
bus_t *bus_local_new(struct hub_s *hub, const char *node_id);

#endif
