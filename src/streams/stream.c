/* Stream documents, the per-tenant registry and its persistence. */
#include "streams/stream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/log.h"

static uv_rwlock_t streams_lock;
static uv_mutex_t streams_write_mu; /* one writer at a time: read, change, save, swap */
static int streams_lock_ready;
static json_t *streams_all; /* {tenant: {id: stream}}; tenant objects are never mutated */
static store_t *streams_store;
static const streams_hook_t *streams_hook; /* the cluster's copy; NULL: single node */

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        snprintf(err, errlen, __VA_ARGS__);                                                        \
        return -EINVAL;                                                                            \
    } while (0)

static int only_keys(json_t *obj, const char *const *known, const char *path, char *err,
                     size_t errlen)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        int ok = 0;
        for (int i = 0; known[i]; i++)
            ok |= strcmp(k, known[i]) == 0;
        if (!ok) FAIL("%s.%s is not a known field", path, k);
    }
    return 0;
}

static int validate_event(json_t *e, const char *path, char *err, size_t errlen)
{
    static const char *const known[] = {"namespace", "name", "map", "criteria", NULL};
    if (!json_is_object(e)) FAIL("%s must be an object", path);
    if (only_keys(e, known, path, err, errlen) < 0) return -EINVAL;
    json_t *ns = json_object_get(e, "namespace"), *name = json_object_get(e, "name");
    json_t *map = json_object_get(e, "map"), *crit = json_object_get(e, "criteria");
    if (!json_is_string(ns) || json_string_length(ns) == 0)
        FAIL("%s.namespace must be a non-empty string", path);
    if (!json_is_string(name) || json_string_length(name) == 0)
        FAIL("%s.name must be a non-empty string", path);
    if (map && !json_is_null(map)) {
        if (!json_is_object(map)) FAIL("%s.map must be an object of paths", path);
        const char *k;
        json_t *v;
        json_object_foreach(map, k, v)
        {
            if (!json_is_string(v) || json_string_length(v) == 0)
                FAIL("%s.map.%s must be a path such as \"payload.status\"", path, k);
        }
    }
    if (crit && !json_is_null(crit)) {
        static const char *const ckeys[] = {"correlationId", "context", NULL};
        char cpath[320];
        snprintf(cpath, sizeof(cpath), "%s.criteria", path);
        if (!json_is_object(crit)) FAIL("%s must be an object", cpath);
        if (only_keys(crit, ckeys, cpath, err, errlen) < 0) return -EINVAL;
        json_t *cid = json_object_get(crit, "correlationId");
        json_t *ctx = json_object_get(crit, "context");
        if (cid && !json_is_string(cid)) FAIL("%s.correlationId must be a string", cpath);
        if (ctx && !json_is_object(ctx)) FAIL("%s.context must be an object", cpath);
    }
    return 0;
}

int stream_validate(json_t *stream, const char *id, const char *path, char *err, size_t errlen)
{
    static const char *const known[] = {
        "id", "name", "description", "publicSubscribe", "subscriberRoles", "events", NULL};
    if (!json_is_object(stream)) FAIL("%s must be an object", path);
    if (only_keys(stream, known, path, err, errlen) < 0) return -EINVAL;
    if (strlen(id) == 0 || strlen(id) > 128 || strpbrk(id, " /?#\r\n"))
        FAIL("%s: a stream id must be 1 to 128 characters without spaces, '/', '?', '#'", path);
    json_t *jid = json_object_get(stream, "id");
    if (jid && (!json_is_string(jid) || strcmp(json_string_value(jid), id) != 0))
        FAIL("%s.id must equal the stream's key \"%s\"", path, id);
    json_t *v;
    if ((v = json_object_get(stream, "name")) && !json_is_string(v))
        FAIL("%s.name must be a string", path);
    if ((v = json_object_get(stream, "description")) && !json_is_string(v))
        FAIL("%s.description must be a string", path);
    if ((v = json_object_get(stream, "publicSubscribe")) && !json_is_boolean(v))
        FAIL("%s.publicSubscribe must be a boolean", path);
    if ((v = json_object_get(stream, "subscriberRoles"))) {
        if (!json_is_array(v)) FAIL("%s.subscriberRoles must be an array of role names", path);
        size_t i;
        json_t *r;
        json_array_foreach(v, i, r)
        {
            if (!json_is_string(r)) FAIL("%s.subscriberRoles[%zu] must be a string", path, i);
        }
    }
    json_t *events = json_object_get(stream, "events");
    if (!json_is_array(events)) FAIL("%s.events must be an array", path);
    size_t i;
    json_t *e;
    json_array_foreach(events, i, e)
    {
        char epath[300];
        snprintf(epath, sizeof(epath), "%s.events[%zu]", path, i);
        if (validate_event(e, epath, err, errlen) < 0) return -EINVAL;
    }
    return 0;
}

/* Validates {id: stream} under path and gives each stream its id. */
static int validate_set(json_t *set, const char *path, char *err, size_t errlen)
{
    if (!json_is_object(set)) FAIL("%s must be an object of streams by id", path);
    const char *id;
    json_t *s;
    json_object_foreach(set, id, s)
    {
        char spath[300];
        snprintf(spath, sizeof(spath), "%s%s%s", path, *path ? "." : "", id);
        if (stream_validate(s, id, spath, err, errlen) < 0) return -EINVAL;
    }
    return 0;
}

static json_t *with_ids(json_t *set)
{
    json_t *out = json_deep_copy(set);
    const char *id;
    json_t *s;
    json_object_foreach(out, id, s)
    {
        json_object_set_new(s, "id", json_string(id));
    }
    return out;
}

static int persist(const char *tenant, json_t *streams)
{
    if (!streams_store) return 0;
    char *doc = json_dumps(streams, JSON_COMPACT);
    if (!doc) return -ENOMEM;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(streams_store->db,
                                "INSERT INTO stream_config(tenant, doc) VALUES(?, ?) "
                                "ON CONFLICT(tenant) DO UPDATE SET doc = excluded.doc",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, tenant, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, doc, -1, SQLITE_TRANSIENT);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    free(doc);
    if (rc != SQLITE_DONE) {
        log_error("cannot persist stream configuration", "tenant=%s error=\"%s\"", tenant,
                  sqlite3_errmsg(streams_store->db));
        return -EIO;
    }
    return 0;
}

int streams_init(json_t *config_streams, store_t *st, char *err, size_t errlen)
{
    if (!streams_lock_ready) {
        if (uv_rwlock_init(&streams_lock) < 0 || uv_mutex_init(&streams_write_mu) < 0)
            return -ENOMEM;
        streams_lock_ready = 1;
    }
    json_t *all = json_object();
    if (!all) return -ENOMEM;
    const char *tenant;
    json_t *set;
    json_object_foreach(config_streams, tenant, set)
    {
        char path[200];
        snprintf(path, sizeof(path), "streams.%s", tenant);
        if (validate_set(set, path, err, errlen) < 0) {
            json_decref(all);
            return -EINVAL;
        }
        json_object_set_new(all, tenant, with_ids(set));
    }
    streams_store = st;
    if (st) {
        if (store_exec(st, "CREATE TABLE IF NOT EXISTS stream_config("
                           "tenant TEXT PRIMARY KEY, doc TEXT NOT NULL)") < 0) {
            json_decref(all);
            snprintf(err, errlen, "cannot create the stream_config table");
            return -EIO;
        }
        sqlite3_stmt *q = NULL;
        if (sqlite3_prepare_v2(st->db, "SELECT tenant, doc FROM stream_config", -1, &q, NULL) ==
            SQLITE_OK) {
            while (sqlite3_step(q) == SQLITE_ROW) {
                const char *t = (const char *)sqlite3_column_text(q, 0);
                json_t *doc = json_loads((const char *)sqlite3_column_text(q, 1), 0, NULL);
                if (json_is_object(doc))
                    json_object_set_new(all, t, doc);
                else
                    json_decref(doc);
            }
        }
        sqlite3_finalize(q);
    }
    uv_rwlock_wrlock(&streams_lock);
    json_decref(streams_all);
    streams_all = all;
    uv_rwlock_wrunlock(&streams_lock);
    return 0;
}

void streams_shutdown(void)
{
    if (!streams_lock_ready) return;
    uv_rwlock_wrlock(&streams_lock);
    json_decref(streams_all);
    streams_all = NULL;
    streams_store = NULL;
    uv_rwlock_wrunlock(&streams_lock);
}

json_t *streams_tenant(const char *tenant)
{
    if (!tenant || !streams_lock_ready) return NULL;
    /* a private deep copy, made under the lock: jansson's refcounts are not atomic
     * enough to share one document between threads */
    uv_rwlock_rdlock(&streams_lock);
    json_t *t = json_object_get(streams_all, tenant);
    json_t *copy = t ? json_deep_copy(t) : NULL;
    uv_rwlock_rdunlock(&streams_lock);
    return copy;
}

static int apply_locked(const char *tenant, json_t *request, char *err, size_t errlen);

int streams_apply(const char *tenant, json_t *request, char *err, size_t errlen)
{
    uv_mutex_lock(&streams_write_mu);
    int r = apply_locked(tenant, request, err, errlen);
    uv_mutex_unlock(&streams_write_mu);
    return r;
}

static int apply_locked(const char *tenant, json_t *request, char *err, size_t errlen)
{
    const char *op = json_string_value(json_object_get(request, "operation"));
    if (!op) FAIL("operation must be one of UPDATE, REPLACE, DELETE");
    json_t *cur = streams_tenant(tenant);
    json_t *next = NULL;
    int r = 0;
    if (strcmp(op, "UPDATE") == 0) {
        json_t *upd = json_object_get(request, "update");
        if (validate_set(upd, "update", err, errlen) < 0) {
            json_decref(cur);
            return -EINVAL;
        }
        next = cur ? json_deep_copy(cur) : json_object();
        json_t *ids = with_ids(upd);
        json_object_update(next, ids);
        json_decref(ids);
    } else if (strcmp(op, "REPLACE") == 0) {
        json_t *conf = json_object_get(request, "configuration");
        if (validate_set(conf, "configuration", err, errlen) < 0) {
            json_decref(cur);
            return -EINVAL;
        }
        next = with_ids(conf);
    } else if (strcmp(op, "DELETE") == 0) {
        const char *id = json_string_value(json_object_get(request, "property"));
        if (!id) {
            json_decref(cur);
            FAIL("property must name the stream to delete");
        }
        if (!json_object_get(cur, id)) {
            json_decref(cur);
            snprintf(err, errlen, "stream %s does not exist", id);
            return -ENOENT;
        }
        next = json_deep_copy(cur);
        json_object_del(next, id);
    } else {
        json_decref(cur);
        FAIL("operation must be one of UPDATE, REPLACE, DELETE");
    }
    json_decref(cur);
    if (!next) return -ENOMEM;
    /* durable first, visible second: a crash never shows what was not saved */
    json_t *shared = json_deep_copy(next); /* the registry's own; next stays ours */
    if (!shared) {
        json_decref(next);
        return -ENOMEM;
    }
    uv_rwlock_wrlock(&streams_lock);
    r = persist(tenant, next);
    if (r == 0)
        json_object_set_new(streams_all, tenant, shared);
    else
        json_decref(shared);
    uv_rwlock_wrunlock(&streams_lock);
    if (r == 0 && streams_hook && streams_hook->saved)
        streams_hook->saved(streams_hook->arg, tenant, next);
    json_decref(next);
    if (r < 0) snprintf(err, errlen, "the configuration could not be saved");
    return r;
}

void streams_set_hook(const streams_hook_t *hook)
{
    streams_hook = hook;
}

int streams_put(const char *tenant, json_t *streams, char *err, size_t errlen)
{
    if (!streams_lock_ready) return -EINVAL;
    if (validate_set(streams, tenant, err, errlen) < 0) return -EINVAL;
    json_t *next = with_ids(streams);
    if (!next) return -ENOMEM;
    uv_rwlock_wrlock(&streams_lock);
    json_t *cur = streams_all ? json_object_get(streams_all, tenant) : NULL;
    int r = 0;
    if (streams_all && !(cur && json_equal(cur, next))) {
        r = persist(tenant, next);
        if (r == 0) {
            json_object_set_new(streams_all, tenant, next); /* handed over whole */
            next = NULL;
        }
    }
    uv_rwlock_wrunlock(&streams_lock);
    json_decref(next);
    if (r < 0) snprintf(err, errlen, "the configuration could not be saved");
    return r;
}

int streams_may_subscribe(const char *tenant, const char *stream_id, const auth_identity_t *id)
{
    if (!tenant || (id && id->tenant && strcmp(id->tenant, tenant) != 0)) return -ENOENT;
    json_t *set = streams_tenant(tenant);
    json_t *stream = json_object_get(set, stream_id);
    int r;
    if (!stream)
        r = -ENOENT;
    else if (json_is_true(json_object_get(stream, "publicSubscribe")))
        r = 0;
    else if (!id)
        r = -EACCES;
    else {
        r = -EPERM;
        json_t *roles = json_object_get(stream, "subscriberRoles");
        for (size_t i = 0; r && i < id->n_roles; i++) {
            if (strcmp(id->roles[i], "stream-listener") == 0) r = 0;
            size_t k;
            json_t *role;
            json_array_foreach(roles, k, role)
            {
                if (json_is_string(role) && strcmp(json_string_value(role), id->roles[i]) == 0)
                    r = 0;
            }
        }
    }
    json_decref(set);
    return r;
}
