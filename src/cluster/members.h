/* Membership by heartbeat for a bus without keys that expire (the NATS bus): each
 * node's announcement (cluster/codec.h) and when it was last heard; a member is
 * forgotten when it says it leaves or when it has been silent for the TTL. Pure: the
 * caller passes the time, and guards the table if threads share it
 * (tests/unit/test_cluster_members.c). */
#ifndef PG_CLUSTER_MEMBERS_H
#define PG_CLUSTER_MEMBERS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cluster_member_s {
    char *node_id;
    json_t *doc; /* the last announcement */
    uint64_t seen_ms;
} cluster_member_t;

typedef struct cluster_members_s {
    cluster_member_t *v; /* in the order they were first heard */
    size_t n, cap;
} cluster_members_t;

void cluster_members_init(cluster_members_t *m);
void cluster_members_free(cluster_members_t *m);

/* Records announcement doc (an object with a string nodeId, as cluster_node_decode
 * returns it; a reference is taken) heard at now_ms. Returns 1 for a node not in the
 * table, 0 for a refresh, -EINVAL when doc has no nodeId, -ENOMEM. */
int cluster_members_seen(cluster_members_t *m, json_t *doc, uint64_t now_ms);

/* Forgets node_id. Returns 1 if it was a member, 0 if not. */
int cluster_members_leave(cluster_members_t *m, const char *node_id);

/* Marks every member heard at now_ms (after the bus was down: each gets a TTL to be
 * heard again rather than being forgotten at once). */
void cluster_members_touch(cluster_members_t *m, uint64_t now_ms);

/* Forgets every member last heard before now_ms - ttl_ms. Returns how many. */
size_t cluster_members_expire(cluster_members_t *m, uint64_t now_ms, uint64_t ttl_ms);

/* The members' ids as a new array of n + 1 new strings with self first (free each and
 * the array). Returns the count (n + 1), or -ENOMEM. */
long cluster_members_ids(const cluster_members_t *m, const char *self, char ***ids);

/* The members' announcements as a new JSON array (copies). Returns it or NULL. */
json_t *cluster_members_docs(const cluster_members_t *m);

#endif
