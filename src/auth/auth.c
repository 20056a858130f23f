/* Session store (config + runtime, one rwlock), JWT verification and role derivation. */
#include "auth/auth.h"

#include <errno.h>
#include <jwt.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <uv.h>

#include "core/ids.h"

static uv_rwlock_t auth_lock;
static int auth_ready;
static json_t *auth_sessions; /* id -> {user, roles, groups, tenant, expiresAt} */
static char *auth_jwt_secret;
static uint64_t auth_generation;       /* atomic: bumped whenever a session may have changed */
static const auth_store_t *auth_store; /* sessions shared with other nodes; NULL: none */

#define AUTH_REMOTE_KEY "fromStore" /* marks documents that came from auth_store */
#define AUTH_RUNTIME_KEY "runtime"  /* marks sessions made by auth_session_create */

int64_t auth_now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int check_strings(json_t *arr)
{
    if (!arr || json_is_null(arr)) return 0;
    if (!json_is_array(arr)) return -EINVAL;
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (!json_is_string(v)) return -EINVAL;
    }
    return 0;
}

int auth_effective_roles(json_t *roles, json_t *groups, const char *user, char ***out, size_t *n)
{
    if (check_strings(roles) < 0 || check_strings(groups) < 0) return -EINVAL;
    size_t nr = json_is_array(roles) ? json_array_size(roles) : 0;
    size_t ng = json_is_array(groups) ? json_array_size(groups) : 0;
    size_t total = nr + ng + (user && *user ? 1 : 0);
    char **r = calloc(total ? total : 1, sizeof(*r));
    if (!r) return -ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < nr; i++)
        if (!(r[k++] = strdup(json_string_value(json_array_get(roles, i))))) goto fail;
    for (size_t i = 0; i < ng; i++) {
        const char *g = json_string_value(json_array_get(groups, i));
        if (!(r[k] = malloc(strlen(g) + 8))) goto fail;
        sprintf(r[k++], "$group-%s", g);
    }
    if (user && *user) {
        if (!(r[k] = malloc(strlen(user) + 7))) goto fail;
        sprintf(r[k++], "$user-%s", user);
    }
    *out = r;
    *n = total;
    return 0;
fail:
    auth_roles_free(r, k);
    return -ENOMEM;
}

void auth_roles_free(char **roles, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(roles[i]);
    free(roles);
}

static json_t *session_doc(const char *user, json_t *roles, json_t *groups, const char *tenant,
                           int64_t expires)
{
    return json_pack("{s:s, s:O?, s:O?, s:s?, s:I}", "user", user ? user : "", "roles", roles,
                     "groups", groups, "tenant", tenant, "expiresAt", (json_int_t)expires);
}

int auth_init(const config_t *cfg, char *err, size_t errlen)
{
    __atomic_add_fetch(&auth_generation, 1, __ATOMIC_RELEASE);
    if (!auth_ready) {
        if (uv_rwlock_init(&auth_lock) < 0) return -ENOMEM;
        auth_ready = 1;
    }
    json_t *store = json_object();
    if (!store) return -ENOMEM;
    size_t i;
    json_t *s;
    json_array_foreach(cfg->sessions, i, s)
    {
        json_t *id = json_object_get(s, "sessionId");
        json_t *user = json_object_get(s, "user");
        json_t *tenant = json_object_get(s, "tenant");
        json_t *roles = json_object_get(s, "roles");
        json_t *groups = json_object_get(s, "groups");
        const char *bad = NULL;
        if (!json_is_object(s))
            bad = "";
        else if (!json_is_string(id) || json_string_length(id) == 0 ||
                 json_string_length(id) >= AUTH_SESSION_ID_MAX)
            bad = ".sessionId";
        else if (user && !json_is_string(user))
            bad = ".user";
        else if (tenant && !json_is_string(tenant))
            bad = ".tenant";
        else if (check_strings(roles) < 0)
            bad = ".roles";
        else if (check_strings(groups) < 0)
            bad = ".groups";
        if (bad) {
            snprintf(err, errlen, "sessions[%zu]%s is not valid", i, bad);
            json_decref(store);
            return -EINVAL;
        }
        json_t *doc =
            session_doc(json_string_value(user), roles, groups, json_string_value(tenant), 0);
        if (!doc || json_object_set_new(store, json_string_value(id), doc) < 0) {
            json_decref(store);
            return -ENOMEM;
        }
    }
    uv_rwlock_wrlock(&auth_lock);
    json_decref(auth_sessions);
    auth_sessions = store;
    free(auth_jwt_secret);
    auth_jwt_secret = cfg->jwt_secret ? strdup(cfg->jwt_secret) : NULL;
    uv_rwlock_wrunlock(&auth_lock);
    return 0;
}

void auth_shutdown(void)
{
    if (!auth_ready) return;
    uv_rwlock_wrlock(&auth_lock);
    json_decref(auth_sessions);
    auth_sessions = NULL;
    free(auth_jwt_secret);
    auth_jwt_secret = NULL;
    uv_rwlock_wrunlock(&auth_lock);
}

int auth_session_create(const char *user, json_t *roles, json_t *groups, const char *tenant,
                        int64_t ttl_s, char id_out[AUTH_SESSION_ID_MAX], int64_t *expires_at_ms)
{
    if (check_strings(roles) < 0 || check_strings(groups) < 0) return -EINVAL;
    char rnd[33];
    if (ids_random_hex(rnd, 16) < 0) return -ENOMEM;
    snprintf(id_out, AUTH_SESSION_ID_MAX, "s-%s", rnd);
    int64_t exp = ttl_s > 0 ? auth_now_ms() + ttl_s * 1000 : 0;
    json_t *doc = session_doc(user, roles, groups, tenant, exp);
    if (!doc || json_object_set_new(doc, AUTH_RUNTIME_KEY, json_true()) < 0) {
        json_decref(doc);
        return -ENOMEM;
    }
    /* the store gets its own copy; doc stays this thread's (refcounts are not shared) */
    json_t *mine = json_deep_copy(doc);
    uv_rwlock_wrlock(&auth_lock);
    int r = mine ? json_object_set_new(auth_sessions, id_out, mine) : -1;
    uv_rwlock_wrunlock(&auth_lock);
    if (r == 0 && auth_store && auth_store->saved) auth_store->saved(auth_store->arg, id_out, doc);
    json_decref(doc);
    if (r < 0) return -ENOMEM;
    *expires_at_ms = exp;
    return 0;
}

void auth_set_store(const auth_store_t *store)
{
    auth_store = store;
}

void auth_session_forget(const char *id)
{
    if (!auth_ready) return;
    uv_rwlock_wrlock(&auth_lock);
    if (id) {
        json_t *doc = json_object_get(auth_sessions, id);
        if (doc &&
            (json_object_get(doc, AUTH_REMOTE_KEY) || json_object_get(doc, AUTH_RUNTIME_KEY)))
            json_object_del(auth_sessions, id);
    } else {
        const char *k;
        json_t *v;
        void *tmp;
        json_object_foreach_safe(auth_sessions, tmp, k, v)
        {
            if (json_object_get(v, AUTH_REMOTE_KEY)) json_object_del(auth_sessions, k);
        }
    }
    uv_rwlock_wrunlock(&auth_lock);
}

/* Asks the store for a session this node does not know, and keeps what it finds.
 * Returns a new reference or NULL. */
static json_t *store_lookup(const char *id)
{
    if (!auth_store || !auth_store->lookup || strlen(id) >= AUTH_SESSION_ID_MAX) return NULL;
    json_t *doc = auth_store->lookup(auth_store->arg, id);
    json_t *user = json_object_get(doc, "user"), *tenant = json_object_get(doc, "tenant");
    if (!json_is_object(doc) || (user && !json_is_string(user)) ||
        (tenant && !json_is_null(tenant) && !json_is_string(tenant)) ||
        check_strings(json_object_get(doc, "roles")) < 0 ||
        check_strings(json_object_get(doc, "groups")) < 0 ||
        !json_is_integer(json_object_get(doc, "expiresAt"))) {
        json_decref(doc);
        return NULL;
    }
    json_object_set_new(doc, AUTH_REMOTE_KEY, json_true());
    /* the store keeps its own copy: jansson's refcounts are not for sharing between
     * threads, so no document is ever referenced from two of them */
    json_t *mine = json_deep_copy(doc);
    uv_rwlock_wrlock(&auth_lock);
    if (auth_sessions && mine)
        json_object_set_new(auth_sessions, id, mine);
    else
        json_decref(mine);
    uv_rwlock_wrunlock(&auth_lock);
    return doc;
}

int auth_session_revoke(const char *id)
{
    __atomic_add_fetch(&auth_generation, 1, __ATOMIC_RELEASE);
    uv_rwlock_wrlock(&auth_lock);
    int r = json_object_del(auth_sessions, id);
    uv_rwlock_wrunlock(&auth_lock);
    if (auth_store) {
        /* created on another node and never used here: the store knows it */
        json_t *doc = r == 0 ? NULL : store_lookup(id);
        if (doc) {
            json_decref(doc);
            uv_rwlock_wrlock(&auth_lock);
            json_object_del(auth_sessions, id);
            uv_rwlock_wrunlock(&auth_lock);
            r = 0;
        }
        if (r == 0 && auth_store->revoked) auth_store->revoked(auth_store->arg, id);
    }
    return r == 0 ? 0 : -ENOENT;
}

static int identity_from(const char *sid, json_t *doc, auth_identity_t **out)
{
    auth_identity_t *id = calloc(1, sizeof(*id));
    if (!id) return -ENOMEM;
    const char *user = json_string_value(json_object_get(doc, "user"));
    const char *tenant = json_string_value(json_object_get(doc, "tenant"));
    id->session_id = strdup(sid);
    id->user = strdup(user ? user : "");
    id->tenant = tenant ? strdup(tenant) : NULL;
    id->expires_at_ms = json_integer_value(json_object_get(doc, "expiresAt"));
    int r = auth_effective_roles(json_object_get(doc, "roles"), json_object_get(doc, "groups"),
                                 id->user, &id->roles, &id->n_roles);
    if (r < 0 || !id->session_id || !id->user || (tenant && !id->tenant)) {
        auth_identity_free(id);
        return r < 0 ? r : -ENOMEM;
    }
    *out = id;
    return 0;
}

static int resolve_jwt(const char *token, auth_identity_t **out)
{
    uv_rwlock_rdlock(&auth_lock);
    char *secret = auth_jwt_secret ? strdup(auth_jwt_secret) : NULL;
    uv_rwlock_rdunlock(&auth_lock);
    if (!secret) return -ENOENT;
    jwt_t *jwt = NULL;
    int r = jwt_decode(&jwt, token, (const unsigned char *)secret, (int)strlen(secret));
    free(secret);
    if (r != 0 || !jwt) return -EACCES;
    if (jwt_get_alg(jwt) != JWT_ALG_HS256) {
        jwt_free(jwt);
        return -EACCES;
    }
    char *claims_s = jwt_get_grants_json(jwt, NULL);
    jwt_free(jwt);
    json_t *claims = claims_s ? json_loads(claims_s, 0, NULL) : NULL;
    free(claims_s);
    if (!json_is_object(claims)) {
        json_decref(claims);
        return -EACCES;
    }
    json_t *exp = json_object_get(claims, "exp");
    json_t *sub = json_object_get(claims, "sub");
    json_t *jti = json_object_get(claims, "jti");
    json_t *tenant = json_object_get(claims, "tenant");
    r = 0;
    if ((exp && !json_is_number(exp)) || !json_is_string(sub) || (jti && !json_is_string(jti)) ||
        (tenant && !json_is_string(tenant)) || check_strings(json_object_get(claims, "roles")) ||
        check_strings(json_object_get(claims, "groups")))
        r = -EACCES;
    else if (exp && json_number_value(exp) * 1000.0 <= (double)auth_now_ms())
        r = -ETIME;
    if (r < 0) {
        json_decref(claims);
        return r;
    }
    char sid[AUTH_SESSION_ID_MAX];
    if (jti && json_string_length(jti) > 0 && json_string_length(jti) < 100) {
        snprintf(sid, sizeof(sid), "%s", json_string_value(jti));
    } else {
        unsigned char md[SHA256_DIGEST_LENGTH];
        SHA256((const unsigned char *)token, strlen(token), md);
        int n = snprintf(sid, sizeof(sid), "jwt-");
        for (int i = 0; i < 8; i++)
            n += snprintf(sid + n, sizeof(sid) - (size_t)n, "%02x", md[i]);
    }
    json_t *doc = session_doc(json_string_value(sub), json_object_get(claims, "roles"),
                              json_object_get(claims, "groups"), json_string_value(tenant),
                              exp ? (int64_t)(json_number_value(exp) * 1000.0) : 0);
    json_decref(claims);
    if (!doc) return -ENOMEM;
    r = identity_from(sid, doc, out);
    json_decref(doc);
    return r;
}

int auth_resolve(const char *credential, auth_identity_t **out)
{
    if (!credential || !*credential) return -ENOENT;
    /* a known session id wins, even one that looks like a JWT (two dots). The identity
     * is built under the read lock: readers never touch a document's refcount */
    uv_rwlock_rdlock(&auth_lock);
    json_t *doc = json_object_get(auth_sessions, credential);
    int r = 0;
    if (doc) {
        int64_t exp = json_integer_value(json_object_get(doc, "expiresAt"));
        r = exp && exp <= auth_now_ms() ? -ETIME : identity_from(credential, doc, out);
    }
    uv_rwlock_rdunlock(&auth_lock);
    if (doc) return r;
    {
        const char *dot = strchr(credential, '.');
        if (dot && strchr(dot + 1, '.')) return resolve_jwt(credential, out);
        if (!(doc = store_lookup(credential))) /* created on another node */
            return -ENOENT;
    }
    int64_t exp = json_integer_value(json_object_get(doc, "expiresAt"));
    if (exp && exp <= auth_now_ms())
        r = -ETIME;
    else
        r = identity_from(credential, doc, out);
    json_decref(doc); /* the caller's own copy from the store */
    return r;
}

/* ---- per-thread sharing of identities ---- */

#define SHARED_SLOTS 1024 /* a small cache: a miss only costs a resolve */

static __thread auth_identity_t *shared_slots[SHARED_SLOTS];
static __thread uint64_t shared_gen[SHARED_SLOTS];

static size_t shared_hash(const char *s)
{
    size_t h = 5381;
    for (; *s; s++)
        h = h * 33 + (unsigned char)*s;
    return h % SHARED_SLOTS;
}

static void shared_forget(auth_identity_t *id)
{
    size_t k = shared_hash(id->shared_key);
    if (shared_slots[k] == id) shared_slots[k] = NULL;
    free(id->shared_key);
    id->shared_key = NULL;
}

int auth_resolve_shared(const char *credential, auth_identity_t **out)
{
    if (!credential || !*credential) return -ENOENT;
    size_t k = shared_hash(credential);
    auth_identity_t *c = shared_slots[k];
    uint64_t gen = __atomic_load_n(&auth_generation, __ATOMIC_ACQUIRE);
    if (c && strcmp(c->shared_key, credential) == 0) {
        if (shared_gen[k] == gen && (!c->expires_at_ms || c->expires_at_ms > auth_now_ms())) {
            c->refs++;
            *out = c;
            return 0;
        }
        shared_forget(c); /* stale: its holders keep it, new ones resolve again */
    }
    int r = auth_resolve(credential, out);
    if (r < 0) return r;
    auth_identity_t *id = *out;
    if (!shared_slots[k] && (id->shared_key = strdup(credential))) {
        shared_slots[k] = id;
        shared_gen[k] = gen;
    }
    return 0;
}

void auth_identity_free(auth_identity_t *id)
{
    if (!id) return;
    if (id->refs > 0) {
        id->refs--;
        return;
    }
    if (id->shared_key) shared_forget(id);
    free(id->session_id);
    free(id->user);
    free(id->tenant);
    auth_roles_free(id->roles, id->n_roles);
    free(id);
}
