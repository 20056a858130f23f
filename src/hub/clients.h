/* The cluster-wide client listing (GET /api/connections, the console's Clients view):
 * a query (the three patterns of a push request, a tenant, a row limit) goes to every
 * node over the bus like a push; each node's workers answer with the rows of their
 * subscribers that a push with those patterns would reach, the node merges its
 * workers' rows into one list, and the origin merges the node lists into one answer
 * with `nodes` and `nodesMissing`, as a PushResponse does. */
#ifndef PG_CLIENTS_H
#define PG_CLIENTS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define CLIENTS_LIMIT_MAX 10000 /* rows one listing may ask for */

/* What to list, and where the answer goes (origin node, worker and token). */
typedef struct client_query_s {
    int refs; /* atomic */
    char *origin_node;
    int origin_worker;
    uint64_t token;
    char *client_pat, *session_pat, *role_pat; /* NULL: any */
    char *tenant;                              /* NULL: any */
    uint32_t limit;                            /* 0 (counts only) to CLIENTS_LIMIT_MAX */
} client_query_t;

/* One connected subscriber. */
typedef struct client_row_s {
    char *client_id, *session_id, *user, *tenant, *transport;
    char **roles;
    size_t n_roles;
    int worker;
    int topics_only; /* reached only through its topics (a channel subscriber) */
    int64_t connected_at_ms;
} client_row_t;

/* A node's (or a worker's) rows. */
typedef struct client_list_s {
    char *application_id, *node_id; /* the node the rows come from */
    client_row_t *rows;
    size_t n, cap;
    uint64_t matched;                 /* every matching subscriber, also those past the limit */
    json_t *by_transport, *by_tenant; /* matched ones counted: {name: n} ("" for none), or
                                         NULL while none */
} client_list_t;

/* A new query with no patterns, one reference. Returns NULL when out of memory. */
client_query_t *client_query_new(void);

/* Takes a reference. Returns q. */
client_query_t *client_query_ref(client_query_t *q);

/* Drops a reference; the last frees q. NULL is ignored. */
void client_query_unref(client_query_t *q);

/* Prepares an empty list. */
void client_list_init(client_list_t *l);

/* Counts a match (also by transport and tenant) and, while the list holds fewer than
 * limit rows, adds a copy of row (its strings are copied; NULL user, tenant or
 * transport stay NULL). Returns 1 when added, 0 when only counted, -ENOMEM (not
 * added). */
int client_list_add(client_list_t *l, const client_row_t *row, uint32_t limit);

/* Adds n to the count of name (NULL: "") in *obj (created when NULL). Returns 0 or
 * -ENOMEM. */
int client_count_add(json_t **obj, const char *name, json_int_t n);

/* Moves src's rows (up to limit in dst) and its counts into dst; src is left empty.
 * Returns 0. */
int client_list_move(client_list_t *dst, client_list_t *src, uint32_t limit);

/* Frees what l holds (l is left empty). */
void client_list_free(client_list_t *l);

/* Renders the merged answer from the node lists that arrived and the ids of the
 * nodes that did not: {"connections": [{clientId, sessionId, user, roles, tenant,
 * transport, node, worker, connectedAt, topicsOnly}], "matched", "truncated",
 * "byTransport", "byTenant", "nodes", "nodesMissing"}, rows ordered by connectedAt then clientId,
 * at most limit of them. Returns a new buffer or NULL when out of memory. */
buf_t *client_list_render(client_list_t *const *nodes, size_t n_nodes, char *const *missing,
                          size_t n_missing, uint32_t limit);

#endif
