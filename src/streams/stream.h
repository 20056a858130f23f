/* Stream configuration per tenant (seed 002): validation of stream documents, the
 * node's registry (readers take a reference to an immutable snapshot; writers swap in
 * a new one under a lock), and its persistence in the store, so run-time changes
 * survive restarts. */
#ifndef PG_STREAM_H
#define PG_STREAM_H

#include <jansson.h>
#include <stddef.h>

#include "store/db.h"

/* Checks one stream document; path prefixes error messages ("update.app-health").
 * Returns 0 or -EINVAL with a message naming the offending path in err. */
int stream_validate(json_t *stream, const char *id, const char *path, char *err,
                    size_t errlen);

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

#endif
