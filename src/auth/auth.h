/* Who is who: client sessions (from the config, created at run time, or HS256 JWTs)
 * and their effective roles. Thread-safe: workers resolve sessions concurrently. */
#ifndef PG_AUTH_H
#define PG_AUTH_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

#define AUTH_SESSION_ID_MAX 128

typedef struct auth_identity_s {
    char *session_id;
    char *user;
    char *tenant; /* NULL: none */
    char **roles; /* effective roles: roles, $group-<g>, $user-<user> */
    size_t n_roles;
    int64_t expires_at_ms; /* 0: never */
    uint32_t refs;         /* holders on the owning thread (auth_resolve_shared) */
    char *shared_key;      /* the credential it is cached under, or NULL */
} auth_identity_t;

/* Loads the config's sessions and JWT secret. Writes a message naming the bad entry
 * into err. Returns 0, -EINVAL, -ENOMEM. */
int auth_init(const config_t *cfg, char *err, size_t errlen);

/* Drops every session. */
void auth_shutdown(void);

/* Builds the effective roles: each of roles (JSON array of strings, may be NULL), then
 * "$group-<g>" for each of groups, then "$user-<user>" when user is non-empty.
 * Returns 0 with a new array in *out (free with auth_roles_free), -EINVAL if an entry
 * is not a string, -ENOMEM. */
int auth_effective_roles(json_t *roles, json_t *groups, const char *user, char ***out, size_t *n);

/* Frees an array from auth_effective_roles. */
void auth_roles_free(char **roles, size_t n);

/* Creates a session. ttl_s 0 means no expiry. Writes its id into id_out.
 * Returns 0, -EINVAL (bad roles/groups), -ENOMEM. */
int auth_session_create(const char *user, json_t *roles, json_t *groups, const char *tenant,
                        int64_t ttl_s, char id_out[AUTH_SESSION_ID_MAX], int64_t *expires_at_ms);

/* Revokes a session. Returns 0 or -ENOENT. */
int auth_session_revoke(const char *id);

/* Resolves a session id or a JWT into an identity (new; free with
 * auth_identity_free). Returns 0, -ENOENT (unknown or revoked), -ETIME (expired),
 * -EACCES (a JWT with a bad signature, algorithm or claims), -ENOMEM. */
int auth_resolve(const char *credential, auth_identity_t **out);

/* Like auth_resolve, but connections of one session on the calling thread share one
 * identity (many tabs, many devices: one copy of its strings and roles). The cache is
 * per thread and dropped for a credential once it is revoked, expired, or the sessions
 * were reloaded. The identity belongs to the calling thread: free it there.
 * Returns as auth_resolve. */
int auth_resolve_shared(const char *credential, auth_identity_t **out);

/* Frees an identity, or drops one holder of a shared one. NULL is a no-op. */
void auth_identity_free(auth_identity_t *id);

/* Milliseconds since the Unix epoch. */
int64_t auth_now_ms(void);

/* Where run-time sessions are shared when clustered (cluster/bus_redis.c): saved runs
 * after a session is created here, revoked after one is revoked here, lookup for a
 * session id this node does not know (a new session document {user, roles, groups,
 * tenant, expiresAt}, or NULL). Called from workers, outside auth's lock; may block
 * briefly (docs/cluster.md). Config sessions and JWTs never reach the store. */
typedef struct auth_store_s {
    void (*saved)(void *arg, const char *id, json_t *doc);
    void (*revoked)(void *arg, const char *id);
    json_t *(*lookup)(void *arg, const char *id);
    void *arg;
} auth_store_t;

/* Installs the store (NULL: none). Call while no worker runs. */
void auth_set_store(const auth_store_t *store);

/* Forgets a run-time session revoked on another node (id; config sessions stay), or
 * every session that came from the store (id NULL: the bus reconnected and may have
 * missed revocations). */
void auth_session_forget(const char *id);

#endif
