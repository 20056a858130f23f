/* Redis Cluster's addressing, pure (no I/O): CRC16 key slots with hash tags, the slot
 * map from a CLUSTER SLOTS reply, MOVED/ASK redirections, and "host:port" seeds.
 * cluster/redis_cluster.c does the talking; this file is unit-tested
 * (tests/unit/test_redis_cluster.c) and fuzzed (tests/fuzz/fuzz_rslots.c). */
#ifndef PG_CLUSTER_RSLOTS_H
#define PG_CLUSTER_RSLOTS_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#define RSLOTS_N 16384      /* the cluster's hash slots */
#define RSLOTS_MAX_NODES 64 /* the most masters a map keeps */
#define RSLOTS_HOST_MAX 256

typedef struct rslots_node_s {
    char host[RSLOTS_HOST_MAX];
    int port;
} rslots_node_t;

/* Which master serves each slot. */
typedef struct rslots_map_s {
    rslots_node_t node[RSLOTS_MAX_NODES];
    int n;
    int16_t owner[RSLOTS_N]; /* index into node, -1: no master known */
} rslots_map_t;

/* A MOVED or ASK error: the slot is (for ASK: this once) served by host:port. */
typedef struct rslots_redirect_s {
    int ask; /* 0: MOVED, 1: ASK */
    unsigned slot;
    rslots_node_t to;
} rslots_redirect_t;

/* CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), Redis Cluster's key hash.
 * Returns the checksum ("123456789" -> 0x31C3). */
uint16_t rslots_crc16(const void *data, size_t len);

/* The slot of a key: the CRC16 of its hash tag (what lies between the first '{' and
 * the first '}' after it, when that is not empty) or else of the whole key, modulo
 * 16384. Returns the slot, 0-16383. */
unsigned rslots_key_slot(const char *key, size_t len);

/* Empties m: no nodes, no slot owned. */
void rslots_map_clear(rslots_map_t *m);

/* The index of host:port in m, added when new. Returns the index, or -ENOSPC when m
 * already has RSLOTS_MAX_NODES nodes, -EINVAL for a host too long or a bad port. */
int rslots_map_node(rslots_map_t *m, const char *host, int port);

/* Fills m (cleared first) from a CLUSTER SLOTS reply: an array of [start, end,
 * [host, port, ...], replicas...]; an empty host (or "?") means the node that answered,
 * default_host. Returns the number of slots covered, or -EINVAL (err says why: not an
 * array, a bad range or node), -ENOSPC (too many masters). */
int rslots_parse_slots(const redisReply *r, const char *default_host, rslots_map_t *m, char *err,
                       size_t errlen);

/* Parses an error reply's text: "MOVED <slot> <host>:<port>" or "ASK <slot>
 * <host>:<port>" (an empty host, as Redis 7 may send, is left empty for the caller).
 * Returns 1 with *out set, 0 when s is another error, -EINVAL for a malformed
 * redirection. */
int rslots_parse_redirect(const char *s, size_t len, rslots_redirect_t *out);

/* Parses "host:port" (host a name, an IPv4 address or an [IPv6] address; port
 * 1-65535). Returns 0, or -EINVAL. */
int rslots_parse_hostport(const char *s, size_t len, rslots_node_t *out);

#endif
