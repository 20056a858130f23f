/* Stream configuration per tenant (seed 002): validation of stream documents, the
 * node's registry (readers take a reference to an immutable snapshot; writers swap in
 * a new one under a lock), and its persistence in the store, so run-time changes
 * survive restarts. */
#ifndef PG_STREAM_H
#define PG_STREAM_H

#include <jansson.h>
#include <stddef.h>

#include "auth/auth.h"
#include "store/db.h"

/* Checks one stream document; path prefixes error messages ("update.app-health").
 * Returns 0 or -EINVAL with a message naming the offending path in err. */
int stream_validate(json_t *stream, const char *id, const char *path, char *err, size_t errlen);

/* Loads the config file's streams ({tenant: {id: stream}}), validated, then the
 * persisted tenants from st over them. Returns 0, -EINVAL (err names the path),
 * -EIO, -ENOMEM. */
int streams_init(json_t *config_streams, store_t *st, char *err, size_t errlen);

/* Drops the registry. */
void streams_shutdown(void);

/* The tenant's streams ({id: stream}), a new reference to an immutable snapshot, or
 * NULL when the tenant has none. */
json_t *streams_tenant(const char *tenant);

/* Applies a configuration request to a tenant, seed 002's shape:
 * {"operation":"UPDATE","update":{id: stream, …}} merges streams in,
 * {"operation":"REPLACE","configuration":{id: stream, …}} replaces them all,
 * {"operation":"DELETE","property":id} removes one.
 * The request is checked whole first; then the result is persisted and swapped in.
 * Returns 0, -EINVAL (err names the path), -ENOENT (DELETE of an unknown stream),
 * -EIO, -ENOMEM. */
int streams_apply(const char *tenant, json_t *request, char *err, size_t errlen);

/* Where a cluster shares stream configuration (cluster/bus_redis.c): saved runs after
 * streams_apply changed a tenant here (on the calling worker, outside the lock), with
 * the tenant's new streams. */
typedef struct streams_hook_s {
    void (*saved)(void *arg, const char *tenant, json_t *streams);
    void *arg;
} streams_hook_t;

/* Installs the hook (NULL: none). Call while no worker runs. */
void streams_set_hook(const streams_hook_t *hook);

/* Installs a tenant's streams as another node saved them ({id: stream}; validated,
 * persisted here, swapped in). Any thread. Returns 0, -EINVAL (err names the path),
 * -EIO, -ENOMEM. */
int streams_put(const char *tenant, json_t *streams, char *err, size_t errlen);

/* May id (NULL: anonymous) subscribe to the tenant's stream? Allowed when it is
 * publicSubscribe, or id has a role in subscriberRoles, or the role stream-listener;
 * an identity bound to another tenant never is (the stream is unknown to it).
 * Returns 0, -ENOENT (no such stream for this subscriber), -EACCES (credentials are
 * needed), -EPERM (not allowed). */
int streams_may_subscribe(const char *tenant, const char *stream_id, const auth_identity_t *id);

#endif
