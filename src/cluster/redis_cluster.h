/* Talking to Redis, one server or a Redis Cluster, over blocking hiredis connections
 * (docs/cluster.md "Redis Cluster"). A client routes each command by the slot of the
 * key it names, keeps one connection per master, loads the slot map with CLUSTER SLOTS
 * from a seed (again on MOVED and on connection errors), follows MOVED (map updated,
 * command retried) and ASK (ASKING, then the command, once per redirect), and retries
 * TRYAGAIN briefly; all bounded. Against one Redis it is a plain connection (with
 * SELECT db). A client is used by one thread at a time. The addressing itself is the
 * pure cluster/rslots.h. */
#ifndef PG_CLUSTER_REDIS_CLUSTER_H
#define PG_CLUSTER_REDIS_CLUSTER_H

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stddef.h>

#include "cluster/rslots.h"

#define REDIS_TARGET_SEEDS_MAX 16

/* Where Redis is: "redis": "redis://host:port/db" (one server) or "redis": {"cluster":
 * ["host:port", ...]} (the seeds of a Redis Cluster). */
typedef struct redis_target_s {
    int cluster; /* 0: one server, seed[0] (and db); 1: Redis Cluster */
    rslots_node_t seed[REDIS_TARGET_SEEDS_MAX];
    size_t n_seeds;
    int db;
} redis_target_t;

struct config_s;

/* The target of a config (its redis URL or its redis.cluster seeds). Returns 1 with
 * *t set, 0 when the config names no Redis, -EINVAL with a message in err. */
int redis_target_from_config(const struct config_s *cfg, redis_target_t *t, char *err,
                             size_t errlen);

/* The target as text for logs: "host:port" or "cluster host:port,...". */
void redis_target_describe(const redis_target_t *t, char *out, size_t outlen);

typedef struct rcs_s rcs_t;

/* A new client (it connects on first use). connect_ms bounds each connect, timeout_ms
 * each command's round trip. Returns it, or NULL when out of memory. */
rcs_t *rcs_new(const redis_target_t *t, unsigned connect_ms, unsigned timeout_ms);

void rcs_free(rcs_t *c);

/* Closes the idle connections that can no longer be used (Redis closed them, or
 * something unexpected waits on them). Returns how many remain open. */
int rcs_check(rcs_t *c);

/* Runs argv on the master that serves key (keylen bytes; NULL: any node). Returns the
 * reply (free it; it may be an error reply other than a redirection), or NULL when no
 * master could be reached or the connection failed mid-command (the outcome is then
 * unknown; rcs_errstr says why). */
redisReply *rcs_command_argv(rcs_t *c, const char *key, size_t keylen, int argc, const char **argv,
                             const size_t *lens);

/* The same with a hiredis format string. Returns as rcs_command_argv. */
redisReply *rcs_command(rcs_t *c, const char *key, const char *fmt, ...);

/* rcs_command with a va_list. Returns as rcs_command_argv. */
redisReply *rcs_vcommand(rcs_t *c, const char *key, const char *fmt, va_list ap);

/* Loads the slot map again now (one server: nothing to do). Returns 0, or -ENOTCONN
 * when no seed or known master answered (the old map is kept). */
int rcs_refresh(rcs_t *c);

/* The master that serves key now, as far as the map knows (loading it if need be).
 * Returns 0 with *out set, or -ENOTCONN when no map could be loaded. */
int rcs_node_for(rcs_t *c, const char *key, size_t keylen, rslots_node_t *out);

/* Why the last command failed. Returns a string owned by c. */
const char *rcs_errstr(const rcs_t *c);

#endif
