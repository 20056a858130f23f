/* The single-node bus: publishing delivers to this node; reports go straight back. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/bus.h"
#include "hub/hub.h"

typedef struct bus_local_s {
    bus_t base;
    char *node_id;
} bus_local_t;

static int local_publish(bus_t *bus, push_t *p)
{
    hub_deliver(bus->hub, p);
    return 0;
}

static int local_report(bus_t *bus, push_t *p, report_t *r)
{
    hub_node_report(bus->hub, p->origin_worker, p->origin_token, r);
    return 0;
}

static int local_list(bus_t *bus, client_query_t *q)
{
    hub_list_collect(bus->hub, q);
    return 0;
}

static int local_list_reply(bus_t *bus, client_query_t *q, client_list_t *l)
{
    hub_list_result(bus->hub, q->origin_worker, q->token, l);
    return 0;
}

static long local_members(bus_t *bus, char ***ids)
{
    bus_local_t *b = (bus_local_t *)bus;
    char **arr = malloc(sizeof(*arr));
    if (!arr || !(arr[0] = strdup(b->node_id))) {
        free(arr);
        return -ENOMEM;
    }
    *ids = arr;
    return 1;
}

static void local_free(bus_t *bus)
{
    bus_local_t *b = (bus_local_t *)bus;
    free(b->node_id);
    free(b);
}

static const bus_ops_t local_ops = {
    .publish = local_publish,
    .report = local_report,
    .members = local_members,
    .free = local_free,
    .list = local_list,
    .list_reply = local_list_reply,
};

bus_t *bus_local_new(struct hub_s *hub, const char *node_id)
{
    bus_local_t *b = calloc(1, sizeof(*b));
    if (!b || !(b->node_id = strdup(node_id))) {
        free(b);
        return NULL;
    }
    b->base.ops = &local_ops;
    b->base.single_node = 1;
    b->base.hub = hub;
    return &b->base;
}
