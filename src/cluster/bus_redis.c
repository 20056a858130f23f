/* The Redis bus (docs/cluster.md): InternalPushRequests on one channel that every
 * node subscribes to, node reports on each origin's reply channel, membership by
 * heartbeat keys with a TTL, and the shared state (sessions, stream configuration)
 * in keys. hiredis runs on the main thread's loop through its libuv adapter: workers
 * never touch it; they hand encoded messages over through a queue and a uv_async.
 * On a Redis Cluster the bus's keys share one hash tag, so its two connections go to
 * that slot's master (found with cluster/redis_cluster.h on every connect); the
 * blocking client routes sessions by their own slots. */
#include <errno.h>
#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <uv.h>

#include "auth/auth.h"
#include "cluster/bus.h"
#include "cluster/codec.h"
#include "cluster/redis_cluster.h"
#include "core/config.h"
#include "core/log.h"
#include "hub/hub.h"
#include "streams/stream.h"

#define HEARTBEAT_MS 1000   /* a node refreshes its key this often */
#define NODE_TTL_MS 3000    /* and is a member until its key expires */
#define STALL_MS 3000       /* a heartbeat unanswered this long: reconnect */
#define BACKOFF_MIN_MS 100  /* reconnect delay, doubling */
#define BACKOFF_MAX_MS 5000 /* up to this */
#define SYNC_TIMEOUT_MS 200 /* the blocking connection's connect and command timeout */
#define SCAN_MAX_KEYS 100000

/* A message on its way from a worker to Redis. */
typedef struct out_s {
    struct out_s *next;
    push_t *p;         /* an InternalPushRequest: delivered here instead if the bus is down */
    client_query_t *q; /* a ClientListRequest: listed here instead if the bus is down */
    char *channel;     /* NULL: the push channel */
    buf_t *body;
} out_t;

enum scan_what { SCAN_MEMBERS, SCAN_STREAMS };

typedef struct bus_redis_s bus_redis_t;

typedef struct scan_s {
    bus_redis_t *b;
    int what;
    char *pattern;
    char **keys;
    size_t n, cap;
} scan_t;

struct bus_redis_s {
    bus_t base;
    const config_t *cfg;
    uv_loop_t *loop;
    const uint32_t *connections;
    redis_target_t target;
    char where[300];  /* the target, for logs */
    rslots_node_t at; /* the server the async connections go to */
    char *prefix;     /* "pushgate:<app>:": the channels */
    char *kprefix;    /* "pushgate:{<app>}:": the bus's keys, one hash tag (one slot) */
    char *sprefix;    /* "pushgate:<app>:session:": sessions, each its own hash tag */
    char *ch_push, *ch_reply, *ch_note, *ch_devices, *node_key;
    int64_t started_at_ms;

    /* main thread only */
    redisAsyncContext *cmd, *sub;
    int cmd_ok, subscribed, announced, closing, was_up;
    unsigned backoff_ms;
    uv_timer_t heartbeat, retry;
    uv_async_t wake;
    int hb_pending, scanning;
    uint64_t hb_sent;

    /* any thread */
    int up; /* atomic: connected, subscribed, members known */
    uv_mutex_t q_mu;
    out_t *q_head, *q_tail;
    int closed; /* under q_mu: the loop is gone, nothing more is queued */
    uv_mutex_t m_mu;
    char **members; /* this node first */
    size_t n_members;
    json_t *others; /* announcements of the other members */
    uv_mutex_t s_mu;
    rcs_t *sync; /* blocking client for workers' admin calls (and the main thread's
                    slot lookups) */

    auth_store_t auth_store;
    streams_hook_t streams_hook;
};

static int is_up(bus_redis_t *b)
{
    return __atomic_load_n(&b->up, __ATOMIC_ACQUIRE);
}

static int64_t wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static char *join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    if (s) {
        memcpy(s, a, la); // NOLINT(bugprone-not-null-terminated-result): b and its NUL follow
        /* lb + 1 bytes: the NUL comes along */
        memcpy(s + la, b, lb + 1); // NOLINT(bugprone-not-null-terminated-result)
    }
    return s;
}

/* ---- the blocking connection (workers' admin calls: sessions, stream config) ---- */

/* Runs one command on the blocking client, routed by key (NULL: any node). Only while
 * the bus is up, so a dead Redis never blocks a worker. Returns the reply (free it) or
 * NULL. */
static redisReply *sync_command(bus_redis_t *b, const char *key, const char *fmt, ...)
{
    if (!is_up(b)) return NULL;
    uv_mutex_lock(&b->s_mu);
    va_list ap;
    va_start(ap, fmt);
    redisReply *reply = rcs_vcommand(b->sync, key, fmt, ap);
    va_end(ap);
    if (!reply)
        log_warn("redis command failed on the blocking connection", "error=\"%s\"",
                 rcs_errstr(b->sync));
    uv_mutex_unlock(&b->s_mu);
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        log_warn("redis refused a command", "error=\"%s\"", reply->str);
        freeReplyObject(reply);
        return NULL;
    }
    return reply;
}

/* A session's key: its own hash tag, so sessions spread over a Redis Cluster's masters.
 * Returns a new string or NULL. */
static char *session_key(bus_redis_t *b, const char *id)
{
    size_t n = strlen(b->sprefix) + strlen(id) + 3;
    char *k = malloc(n);
    if (k) snprintf(k, n, "%s{%s}", b->sprefix, id);
    return k;
}

static void session_saved(void *arg, const char *id, json_t *doc)
{
    bus_redis_t *b = arg;
    int64_t exp = json_integer_value(json_object_get(doc, "expiresAt"));
    int64_t ttl = exp ? exp - wall_ms() : 0;
    char *s = json_dumps(doc, JSON_COMPACT);
    char *k = session_key(b, id);
    redisReply *r = NULL;
    if (s && k && ttl >= 0) {
        if (ttl > 0)
            r = sync_command(b, k, "SET %s %s PX %lld", k, s, (long long)ttl);
        else
            r = sync_command(b, k, "SET %s %s", k, s);
    }
    free(k);
    if (!r)
        log_warn("session not shared with the cluster (bus down?)", "session=%.8s…", id);
    else
        freeReplyObject(r);
    free(s);
}

static int publish_note(bus_redis_t *b, int kind, const char *name)
{
    buf_t *body = buf_new(128);
    if (!body || cluster_note_encode(&body, kind, name) < 0) {
        buf_unref(body);
        return -ENOMEM;
    }
    redisReply *r = sync_command(b, NULL, "PUBLISH %s %b", b->ch_note, body->data, body->len);
    buf_unref(body);
    if (!r) return -EIO;
    freeReplyObject(r);
    return 0;
}

static void session_revoked(void *arg, const char *id)
{
    bus_redis_t *b = arg;
    char *k = session_key(b, id);
    redisReply *r = k ? sync_command(b, k, "DEL %s", k) : NULL;
    free(k);
    if (r) freeReplyObject(r);
    if (!r || publish_note(b, CLUSTER_NOTE_SESSION_REVOKED, id) < 0)
        log_warn("session revocation not shared with the cluster (bus down?)", "session=%.8s…", id);
}

static json_t *session_lookup(void *arg, const char *id)
{
    bus_redis_t *b = arg;
    char *k = session_key(b, id);
    redisReply *r = k ? sync_command(b, k, "GET %s", k) : NULL;
    free(k);
    json_t *doc = NULL;
    if (r && r->type == REDIS_REPLY_STRING) doc = json_loadb(r->str, r->len, 0, NULL);
    if (r) freeReplyObject(r);
    return doc;
}

static void streams_saved(void *arg, const char *tenant, json_t *streams)
{
    bus_redis_t *b = arg;
    char *s = json_dumps(streams, JSON_COMPACT);
    redisReply *r =
        s ? sync_command(b, b->kprefix, "SET %sstreams:%s %s", b->kprefix, tenant, s) : NULL;
    free(s);
    if (r) freeReplyObject(r);
    if (!r || publish_note(b, CLUSTER_NOTE_STREAMS, tenant) < 0)
        log_warn("stream configuration not shared with the cluster (bus down?)", "tenant=%s",
                 tenant);
}

/* ---- membership ---- */

/* Swaps in the members found in Redis (docs: the announcements, taken), this node
 * always first. */
static void members_set(bus_redis_t *b, json_t *docs)
{
    size_t n = json_array_size(docs);
    char **ids = calloc(n + 1, sizeof(*ids));
    json_t *others = json_array();
    size_t k = 0;
    if (!ids || !others || !(ids[k++] = strdup(b->cfg->node_id))) goto fail;
    size_t i;
    json_t *d;
    json_array_foreach(docs, i, d)
    {
        const char *id = json_string_value(json_object_get(d, "nodeId"));
        if (strcmp(id, b->cfg->node_id) == 0) continue;
        if (!(ids[k++] = strdup(id))) goto fail;
        json_array_append(others, d);
    }
    uv_mutex_lock(&b->m_mu);
    char **old = b->members;
    size_t n_old = b->n_members;
    json_t *old_others = b->others;
    b->members = ids;
    b->n_members = k;
    b->others = others;
    uv_mutex_unlock(&b->m_mu);
    for (i = 0; i < n_old; i++)
        free(old[i]);
    free(old);
    json_decref(old_others);
    json_decref(docs);
    return;
fail:
    for (i = 0; ids && i < k; i++)
        free(ids[i]);
    free(ids);
    json_decref(others);
    json_decref(docs);
}

static void scan_free(scan_t *s)
{
    if (s->what == SCAN_MEMBERS) s->b->scanning = 0;
    for (size_t i = 0; i < s->n; i++)
        free(s->keys[i]);
    free(s->keys);
    free(s->pattern);
    free(s);
}

static void maybe_up(bus_redis_t *b);
static int redirected(bus_redis_t *b, const redisReply *r);

static void on_stream_doc(redisAsyncContext *ac, void *reply, void *arg)
{
    (void)ac;
    char *tenant = arg;
    redisReply *r = reply;
    if (r && r->type == REDIS_REPLY_STRING) {
        char err[256];
        json_t *doc = json_loadb(r->str, r->len, 0, NULL);
        if (!json_is_object(doc) || streams_put(tenant, doc, err, sizeof(err)) < 0)
            log_warn("ignored the cluster's stream configuration", "tenant=%s error=\"%s\"", tenant,
                     json_is_object(doc) ? err : "not a JSON object");
        json_decref(doc);
    }
    free(tenant);
}

static void fetch_streams(bus_redis_t *b, const char *tenant)
{
    char *t = strdup(tenant);
    if (!t || !b->cmd_ok ||
        redisAsyncCommand(b->cmd, on_stream_doc, t, "GET %sstreams:%s", b->kprefix, tenant) !=
            REDIS_OK)
        free(t);
}

static void on_mget(redisAsyncContext *ac, void *reply, void *arg)
{
    (void)ac;
    scan_t *s = arg;
    bus_redis_t *b = s->b;
    redisReply *r = reply;
    if (r && r->type == REDIS_REPLY_ARRAY) {
        json_t *docs = json_array();
        size_t plen = strlen(b->kprefix) + 5; /* "node:" */
        for (size_t i = 0; docs && i < r->elements && i < s->n; i++) {
            redisReply *e = r->element[i];
            json_t *d = NULL;
            char err[200];
            if (e->type != REDIS_REPLY_STRING) /* expired between SCAN and MGET */
                continue;
            if (cluster_node_decode(e->str, e->len, &d, err, sizeof(err)) < 0) {
                log_warn("ignored a bad node announcement", "key=%s error=\"%s\"", s->keys[i], err);
                continue;
            }
            /* the key names the node: a copied value must not impersonate another */
            if (strcmp(json_string_value(json_object_get(d, "nodeId")), s->keys[i] + plen) == 0)
                json_array_append(docs, d);
            json_decref(d);
        }
        if (docs) {
            members_set(b, docs);
            scan_free(s);
            maybe_up(b);
            return;
        }
    }
    scan_free(s);
}

static void on_scan(redisAsyncContext *ac, void *reply, void *arg)
{
    scan_t *s = arg;
    bus_redis_t *b = s->b;
    redisReply *r = reply;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
        scan_free(s);
        redirected(b, r);
        return;
    }
    redisReply *keys = r->element[1];
    for (size_t i = 0; i < keys->elements && s->n < SCAN_MAX_KEYS; i++) {
        if (keys->element[i]->type != REDIS_REPLY_STRING) continue;
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 16;
            char **k = realloc(s->keys, cap * sizeof(*k));
            if (!k) break;
            s->keys = k;
            s->cap = cap;
        }
        if ((s->keys[s->n] = strdup(keys->element[i]->str))) s->n++;
    }
    if (strcmp(r->element[0]->str, "0") != 0) {
        if (redisAsyncCommand(ac, on_scan, s, "SCAN %s MATCH %s COUNT 500", r->element[0]->str,
                              s->pattern) != REDIS_OK)
            scan_free(s);
        return;
    }
    if (s->what == SCAN_STREAMS) {
        size_t plen = strlen(b->kprefix) + 8; /* "streams:" */
        for (size_t i = 0; i < s->n; i++)
            fetch_streams(b, s->keys[i] + plen);
        scan_free(s);
        return;
    }
    if (s->n == 0) {
        json_t *none = json_array();
        if (none) members_set(b, none);
        scan_free(s);
        if (none) maybe_up(b);
        return;
    }
    const char **argv = malloc((s->n + 1) * sizeof(*argv));
    if (!argv) {
        scan_free(s);
        return;
    }
    argv[0] = "MGET";
    for (size_t i = 0; i < s->n; i++)
        argv[i + 1] = s->keys[i];
    if (redisAsyncCommandArgv(ac, on_mget, s, (int)s->n + 1, argv, NULL) != REDIS_OK) scan_free(s);
    free(argv);
}

static void scan_start(bus_redis_t *b, int what)
{
    if (!b->cmd_ok || (what == SCAN_MEMBERS && b->scanning)) return;
    scan_t *s = calloc(1, sizeof(*s));
    if (!s) return;
    s->b = b;
    s->what = what;
    s->pattern = join(b->kprefix, what == SCAN_MEMBERS ? "node:*" : "streams:*");
    if (!s->pattern) {
        free(s);
        return;
    }
    if (what == SCAN_MEMBERS) b->scanning = 1;
    if (redisAsyncCommand(b->cmd, on_scan, s, "SCAN 0 MATCH %s COUNT 500", s->pattern) != REDIS_OK)
        scan_free(s);
}

static void lost(bus_redis_t *b);

/* A Redis Cluster moved the bus's slot (MOVED, or ASK while it migrates): reconnect,
 * which finds the slot's master again. Returns 1 when r is such a redirection. */
static int redirected(bus_redis_t *b, const redisReply *r)
{
    rslots_redirect_t rd;
    if (!b->target.cluster || !r || r->type != REDIS_REPLY_ERROR ||
        rslots_parse_redirect(r->str, r->len, &rd) != 1)
        return 0;
    log_info("the cluster bus's slot moved: reconnecting", "error=\"%s\"", r->str);
    if (!b->closing) lost(b);
    return 1;
}

static void on_heartbeat_reply(redisAsyncContext *ac, void *reply, void *arg)
{
    (void)ac;
    bus_redis_t *b = arg;
    if (reply) b->hb_pending = 0;
    redirected(b, reply);
}

static void heartbeat_send(bus_redis_t *b)
{
    cluster_node_t me = {
        .application_id = b->cfg->application_id,
        .node_id = b->cfg->node_id,
        .workers = b->cfg->workers,
        .connections = b->connections ? __atomic_load_n(b->connections, __ATOMIC_RELAXED) : 0,
        .started_at_ms = b->started_at_ms,
    };
    buf_t *body = buf_new(256);
    if (!body || cluster_node_encode(&body, &me) < 0) {
        buf_unref(body);
        return;
    }
    if (redisAsyncCommand(b->cmd, on_heartbeat_reply, b, "SET %s %b PX %d", b->node_key, body->data,
                          body->len, NODE_TTL_MS) == REDIS_OK) {
        b->hb_pending = 1;
        b->hb_sent = uv_now(b->loop);
    }
    buf_unref(body);
}

/* ---- connections ---- */

static void connect_both(bus_redis_t *b);

static void on_retry(uv_timer_t *t)
{
    connect_both(t->data);
}

/* One of the two connections is gone (or never came): drop the other, mark the bus
 * down, and try again after the backoff. */
static void lost(bus_redis_t *b)
{
    __atomic_store_n(&b->up, 0, __ATOMIC_RELEASE);
    b->cmd_ok = b->subscribed = b->announced = 0;
    b->hb_pending = 0;
    redisAsyncContext *o;
    if ((o = b->cmd)) {
        b->cmd = NULL;
        redisAsyncFree(o);
    }
    if ((o = b->sub)) {
        b->sub = NULL;
        redisAsyncFree(o);
    }
    if (b->was_up) {
        b->was_up = 0;
        log_warn("cluster bus down: delivering locally until Redis is back", "redis=%s", b->where);
    }
    if (b->closing || uv_is_active((uv_handle_t *)&b->retry)) return;
    uv_timer_start(&b->retry, on_retry, b->backoff_ms, 0);
    b->backoff_ms = b->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : b->backoff_ms * 2;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    bus_redis_t *b = ac->data;
    (void)status;
    if (ac == b->cmd)
        b->cmd = NULL;
    else if (ac == b->sub)
        b->sub = NULL;
    else
        return; /* we dropped it ourselves */
    lost(b);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    bus_redis_t *b = ac->data;
    if (status == REDIS_OK) {
        if (ac == b->cmd) b->cmd_ok = 1;
        maybe_up(b);
        return;
    }
    if (ac == b->cmd)
        b->cmd = NULL; /* hiredis frees it after this callback */
    else if (ac == b->sub)
        b->sub = NULL;
    else
        return;
    lost(b);
}

/* Connected and subscribed: announce this node, then learn the members (our own key
 * among them); once a member scan has completed, the bus is up. */
static void maybe_up(bus_redis_t *b)
{
    if (!b->cmd_ok || !b->subscribed || is_up(b)) return;
    if (!b->announced) {
        b->announced = 1;
        heartbeat_send(b);
        scan_start(b, SCAN_MEMBERS);
        return;
    }
    if (b->scanning) return;
    __atomic_store_n(&b->up, 1, __ATOMIC_RELEASE);
    b->was_up = 1;
    b->backoff_ms = BACKOFF_MIN_MS;
    /* sessions cached from the store may have been revoked while we were away */
    auth_session_forget(NULL);
    scan_start(b, SCAN_STREAMS);
    log_info("cluster bus up", "redis=%s at=%s:%d members=%zu", b->where, b->at.host, b->at.port,
             b->n_members);
}

static void dispatch(bus_redis_t *b, const char *channel, const char *data, size_t len)
{
    char err[256];
    int mk = cluster_msg_kind(data, len);
    if (mk == CLUSTER_MSG_LIST_QUERY && strcmp(channel, b->ch_push) == 0) {
        client_query_t *q;
        if (cluster_list_query_decode(data, len, &q, err, sizeof(err)) < 0) {
            log_warn("ignored a bad ClientListRequest", "error=\"%s\"", err);
            return;
        }
        hub_list_collect(b->base.hub, q);
        client_query_unref(q);
    } else if (mk == CLUSTER_MSG_CLIENT_LIST && strcmp(channel, b->ch_reply) == 0) {
        client_list_t l;
        int w;
        uint64_t token;
        if (cluster_client_list_decode(data, len, &l, &w, &token, err, sizeof(err)) < 0) {
            log_warn("ignored a bad ClientList", "error=\"%s\"", err);
            return;
        }
        hub_list_result(b->base.hub, w, token, &l);
        client_list_free(&l);
    } else if (strcmp(channel, b->ch_push) == 0) {
        push_t *p;
        if (cluster_push_decode(data, len, &p, err, sizeof(err)) < 0) {
            log_warn("ignored a bad InternalPushRequest", "error=\"%s\"", err);
            return;
        }
        hub_deliver(b->base.hub, p);
        push_unref(p);
    } else if (strcmp(channel, b->ch_reply) == 0) {
        report_t r;
        int w;
        uint64_t token;
        if (cluster_report_decode(data, len, &r, &w, &token, err, sizeof(err)) < 0) {
            log_warn("ignored a bad node report", "error=\"%s\"", err);
            return;
        }
        hub_node_report(b->base.hub, w, token, &r);
        report_free(&r);
    } else if (strcmp(channel, b->ch_note) == 0) {
        int kind;
        char *name;
        if (cluster_note_decode(data, len, &kind, &name, err, sizeof(err)) < 0) {
            log_warn("ignored a bad cluster note", "error=\"%s\"", err);
            return;
        }
        if (kind == CLUSTER_NOTE_STREAMS)
            fetch_streams(b, name); /* read back: the last write in Redis wins everywhere */
        else
            auth_session_forget(name);
        free(name);
    } else if (strcmp(channel, b->ch_devices) == 0) {
        /* the device queue in Redis: a command enqueued or finished on some node */
        if (b->base.device_wake) b->base.device_wake(b->base.device_wake_arg, data, len);
    }
}

static void on_sub_message(redisAsyncContext *ac, void *reply, void *arg)
{
    (void)ac;
    bus_redis_t *b = arg;
    redisReply *r = reply;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING)
        return;
    const char *what = r->element[0]->str;
    if (strcmp(what, "message") == 0 && r->element[2]->type == REDIS_REPLY_STRING) {
        dispatch(b, r->element[1]->str, r->element[2]->str, r->element[2]->len);
    } else if (strcmp(what, "subscribe") == 0 && r->element[2]->type == REDIS_REPLY_INTEGER &&
               r->element[2]->integer == 4) {
        b->subscribed = 1;
        maybe_up(b);
    }
}

/* hiredis 0.14's libuv adapter drops poll errors (`if (status != 0) return;`), and
 * libuv reports a refused connect as one: the context would wait forever. These
 * replace its event hooks with the ones later hiredis releases use: on an error, let
 * hiredis look at the socket, which fails the connect or the read cleanly. */
static void poll_cb(uv_poll_t *handle, int status, int events)
{
    redisLibuvEvents *p = handle->data;
    int ev = status ? p->events : events;
    if (p->context && (ev & UV_READABLE)) redisAsyncHandleRead(p->context);
    if (p->context && (ev & UV_WRITABLE)) redisAsyncHandleWrite(p->context);
}

static void poll_update(redisLibuvEvents *p)
{
    if (p->events)
        uv_poll_start(&p->handle, p->events, poll_cb);
    else
        uv_poll_stop(&p->handle);
}

static void ev_add_read(void *privdata)
{
    redisLibuvEvents *p = privdata;
    p->events |= UV_READABLE;
    poll_update(p);
}

static void ev_del_read(void *privdata)
{
    redisLibuvEvents *p = privdata;
    p->events &= ~UV_READABLE;
    poll_update(p);
}

static void ev_add_write(void *privdata)
{
    redisLibuvEvents *p = privdata;
    p->events |= UV_WRITABLE;
    poll_update(p);
}

static void ev_del_write(void *privdata)
{
    redisLibuvEvents *p = privdata;
    p->events &= ~UV_WRITABLE;
    poll_update(p);
}

static redisAsyncContext *open_ctx(bus_redis_t *b)
{
    redisAsyncContext *ac = redisAsyncConnect(b->at.host, b->at.port);
    if (!ac) return NULL;
    if (ac->err) {
        log_debug("cannot connect to redis", "error=\"%s\"", ac->errstr);
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = b;
    if (redisLibuvAttach(ac, b->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        return NULL;
    }
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    return ac;
}

static void connect_both(bus_redis_t *b)
{
    if (b->closing) return;
    if (b->target.cluster) {
        /* the master of the bus's slot (its keys share one hash tag); PUBLISH and
         * SUBSCRIBE reach the whole cluster from any node */
        uv_mutex_lock(&b->s_mu);
        int r = rcs_refresh(b->sync);
        if (r == 0) r = rcs_node_for(b->sync, b->kprefix, strlen(b->kprefix), &b->at);
        uv_mutex_unlock(&b->s_mu);
        if (r < 0) {
            log_debug("no redis cluster slot map", "error=\"%s\"", rcs_errstr(b->sync));
            lost(b);
            return;
        }
    }
    b->cmd = open_ctx(b);
    b->sub = b->cmd ? open_ctx(b) : NULL;
    if (!b->cmd || !b->sub) {
        lost(b);
        return;
    }
    /* queued until the connections are made; a failure reaches on_connect */
    if (b->target.db) redisAsyncCommand(b->cmd, NULL, NULL, "SELECT %d", b->target.db);
    redisAsyncCommand(b->sub, on_sub_message, b, "SUBSCRIBE %s %s %s %s", b->ch_push, b->ch_reply,
                      b->ch_note, b->ch_devices);
}

static void on_heartbeat(uv_timer_t *t)
{
    bus_redis_t *b = t->data;
    if (!b->cmd_ok || !b->subscribed) return;
    if (b->hb_pending && uv_now(b->loop) - b->hb_sent > STALL_MS) {
        log_warn("redis does not answer: reconnecting", "waited_ms=%llu",
                 (unsigned long long)(uv_now(b->loop) - b->hb_sent));
        lost(b);
        return;
    }
    if (!b->hb_pending) heartbeat_send(b);
    scan_start(b, SCAN_MEMBERS);
}

/* ---- from the workers ---- */

static void on_wake(uv_async_t *a)
{
    bus_redis_t *b = a->data;
    uv_mutex_lock(&b->q_mu);
    out_t *o = b->q_head;
    b->q_head = b->q_tail = NULL;
    uv_mutex_unlock(&b->q_mu);
    while (o) {
        out_t *next = o->next;
        const char *ch = o->channel ? o->channel : b->ch_push;
        if (!is_up(b) || redisAsyncCommand(b->cmd, NULL, NULL, "PUBLISH %s %b", ch, o->body->data,
                                           o->body->len) != REDIS_OK) {
            /* down since the worker looked: its own subscribers still get it */
            if (o->p) hub_deliver(b->base.hub, o->p);
            if (o->q) hub_list_collect(b->base.hub, o->q);
        }
        push_unref(o->p);
        client_query_unref(o->q);
        buf_unref(o->body);
        free(o->channel);
        free(o);
        o = next;
    }
}

/* Queues o for the main loop. Returns 0, or -EPIPE once the bus is closed (o is
 * not taken). */
static int enqueue(bus_redis_t *b, out_t *o)
{
    uv_mutex_lock(&b->q_mu);
    if (b->closed) {
        uv_mutex_unlock(&b->q_mu);
        return -EPIPE;
    }
    if (b->q_tail)
        b->q_tail->next = o;
    else
        b->q_head = o;
    b->q_tail = o;
    uv_async_send(&b->wake); /* under the lock: close cannot have closed it */
    uv_mutex_unlock(&b->q_mu);
    return 0;
}

static int redis_publish(bus_t *bus, push_t *p)
{
    bus_redis_t *b = (bus_redis_t *)bus;
    if (is_up(b)) {
        out_t *o = calloc(1, sizeof(*o));
        buf_t *body = buf_new(512 + p->payload_len);
        if (!o || !body || cluster_push_encode(&body, p, b->cfg->application_id) < 0) {
            free(o);
            buf_unref(body);
            return -ENOMEM;
        }
        o->p = push_ref(p);
        o->body = body;
        if (enqueue(b, o) == 0) return 0;
        push_unref(p);
        buf_unref(body);
        free(o);
    }
    hub_deliver(bus->hub, p);
    return BUS_LOCAL_ONLY;
}

static int redis_report(bus_t *bus, push_t *p, report_t *r)
{
    bus_redis_t *b = (bus_redis_t *)bus;
    if (p->origin_node && strcmp(p->origin_node, b->cfg->node_id) == 0) {
        hub_node_report(bus->hub, p->origin_worker, p->origin_token, r);
        return 0;
    }
    int ret = -ENOTCONN;
    out_t *o = NULL;
    buf_t *body = NULL;
    if (!is_up(b) || !p->origin_node) goto out;
    ret = -ENOMEM;
    o = calloc(1, sizeof(*o));
    body = buf_new(256 + r->n * 96);
    if (!o || !body || !(o->channel = malloc(strlen(b->prefix) + strlen(p->origin_node) + 8)) ||
        cluster_report_encode(&body, r, p->id, p->origin_worker, p->origin_token) < 0)
        goto out;
    sprintf(o->channel, "%sreply:%s", b->prefix, p->origin_node);
    o->body = body;
    if ((ret = enqueue(b, o)) == 0) {
        o = NULL;
        body = NULL;
    }
out:
    if (o) free(o->channel);
    free(o);
    buf_unref(body);
    report_free(r);
    return ret;
}

static int redis_list(bus_t *bus, client_query_t *q)
{
    bus_redis_t *b = (bus_redis_t *)bus;
    if (is_up(b)) {
        out_t *o = calloc(1, sizeof(*o));
        buf_t *body = buf_new(512);
        if (!o || !body || cluster_list_query_encode(&body, q, b->cfg->application_id) < 0) {
            free(o);
            buf_unref(body);
            return -ENOMEM;
        }
        o->q = client_query_ref(q);
        o->body = body;
        if (enqueue(b, o) == 0) return 0;
        client_query_unref(q);
        buf_unref(body);
        free(o);
    }
    hub_list_collect(bus->hub, q);
    return BUS_LOCAL_ONLY;
}

static int redis_list_reply(bus_t *bus, client_query_t *q, client_list_t *l)
{
    bus_redis_t *b = (bus_redis_t *)bus;
    if (q->origin_node && strcmp(q->origin_node, b->cfg->node_id) == 0) {
        hub_list_result(bus->hub, q->origin_worker, q->token, l);
        return 0;
    }
    int ret = -ENOTCONN;
    out_t *o = NULL;
    buf_t *body = NULL;
    if (!is_up(b) || !q->origin_node) goto out;
    ret = -ENOMEM;
    o = calloc(1, sizeof(*o));
    body = buf_new(256 + l->n * 160);
    if (!o || !body || !(o->channel = malloc(strlen(b->prefix) + strlen(q->origin_node) + 8)) ||
        cluster_client_list_encode(&body, l, q->origin_worker, q->token) < 0)
        goto out;
    sprintf(o->channel, "%sreply:%s", b->prefix, q->origin_node);
    o->body = body;
    if ((ret = enqueue(b, o)) == 0) {
        o = NULL;
        body = NULL;
    }
out:
    if (o) free(o->channel);
    free(o);
    buf_unref(body);
    client_list_free(l);
    return ret;
}

static long redis_members(bus_t *bus, char ***ids)
{
    bus_redis_t *b = (bus_redis_t *)bus;
    uv_mutex_lock(&b->m_mu);
    size_t n = b->n_members;
    char **arr = calloc(n + 1, sizeof(*arr));
    size_t k = 0;
    for (; arr && k < n; k++)
        if (!(arr[k] = strdup(b->members[k]))) break;
    uv_mutex_unlock(&b->m_mu);
    if (!arr || k < n) {
        for (size_t i = 0; arr && i < k; i++)
            free(arr[i]);
        free(arr);
        return -ENOMEM;
    }
    *ids = arr;
    return (long)n;
}

static int redis_healthy(bus_t *bus)
{
    return is_up((bus_redis_t *)bus);
}

static json_t *redis_nodes(bus_t *bus)
{
    bus_redis_t *b = (bus_redis_t *)bus;
    json_t *all = json_pack(
        "[{s:s, s:s, s:i, s:I, s:I}]", "applicationId", b->cfg->application_id, "nodeId",
        b->cfg->node_id, "workers", b->cfg->workers, "connections",
        (json_int_t)(b->connections ? __atomic_load_n(b->connections, __ATOMIC_RELAXED) : 0),
        "startedAt", (json_int_t)b->started_at_ms);
    uv_mutex_lock(&b->m_mu);
    json_t *others = b->others ? json_deep_copy(b->others) : NULL;
    uv_mutex_unlock(&b->m_mu);
    if (all && others) json_array_extend(all, others);
    json_decref(others);
    return all;
}

static void redis_close(bus_t *bus)
{
    bus_redis_t *b = (bus_redis_t *)bus;
    if (b->closing) return;
    if (is_up(b)) {
        /* leave at once rather than when the key expires */
        redisReply *r = sync_command(b, b->node_key, "DEL %s", b->node_key);
        if (r) freeReplyObject(r);
    }
    b->closing = 1;
    __atomic_store_n(&b->up, 0, __ATOMIC_RELEASE);
    b->was_up = 0;
    uv_mutex_lock(&b->q_mu);
    b->closed = 1;
    uv_mutex_unlock(&b->q_mu);
    /* what the workers queued last still reaches this node's subscribers */
    on_wake(&b->wake);
    uv_close((uv_handle_t *)&b->wake, NULL);
    uv_close((uv_handle_t *)&b->heartbeat, NULL);
    uv_close((uv_handle_t *)&b->retry, NULL);
    lost(b);
}

static void redis_free(bus_t *bus)
{
    bus_redis_t *b = (bus_redis_t *)bus;
    auth_set_store(NULL);
    streams_set_hook(NULL);
    for (out_t *o = b->q_head, *next; o; o = next) {
        next = o->next;
        push_unref(o->p);
        client_query_unref(o->q);
        buf_unref(o->body);
        free(o->channel);
        free(o);
    }
    for (size_t i = 0; i < b->n_members; i++)
        free(b->members[i]);
    free(b->members);
    json_decref(b->others);
    rcs_free(b->sync);
    uv_mutex_destroy(&b->q_mu);
    uv_mutex_destroy(&b->m_mu);
    uv_mutex_destroy(&b->s_mu);
    free(b->prefix);
    free(b->kprefix);
    free(b->sprefix);
    free(b->ch_push);
    free(b->ch_reply);
    free(b->ch_note);
    free(b->ch_devices);
    free(b->node_key);
    free(b);
}

static const bus_ops_t redis_ops = {
    .publish = redis_publish,
    .report = redis_report,
    .members = redis_members,
    .free = redis_free,
    .healthy = redis_healthy,
    .nodes = redis_nodes,
    .close = redis_close,
    .list = redis_list,
    .list_reply = redis_list_reply,
};

bus_t *bus_redis_new(struct hub_s *hub, const config_t *cfg, uv_loop_t *loop,
                     const uint32_t *connections, char *err, size_t errlen)
{
    bus_redis_t *b = calloc(1, sizeof(*b));
    if (!b) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (redis_target_from_config(cfg, &b->target, err, errlen) <= 0) {
        if (!*err) snprintf(err, errlen, "no redis configured");
        free(b);
        return NULL;
    }
    redis_target_describe(&b->target, b->where, sizeof(b->where));
    b->at = b->target.seed[0];
    if (!(b->sync = rcs_new(&b->target, SYNC_TIMEOUT_MS, SYNC_TIMEOUT_MS))) {
        snprintf(err, errlen, "out of memory");
        free(b);
        return NULL;
    }
    b->base.ops = &redis_ops;
    b->base.hub = hub;
    b->cfg = cfg;
    b->loop = loop;
    b->connections = connections;
    b->started_at_ms = wall_ms();
    b->backoff_ms = BACKOFF_MIN_MS;
    size_t plen = strlen(cfg->application_id) + 24;
    b->prefix = malloc(plen);
    b->kprefix = malloc(plen);
    b->sprefix = malloc(plen);
    if (b->prefix) snprintf(b->prefix, plen, "pushgate:%s:", cfg->application_id);
    if (b->kprefix) snprintf(b->kprefix, plen, "pushgate:{%s}:", cfg->application_id);
    if (b->sprefix) snprintf(b->sprefix, plen, "pushgate:%s:session:", cfg->application_id);
    char reply[300];
    snprintf(reply, sizeof(reply), "reply:%.250s", cfg->node_id);
    char node[300];
    snprintf(node, sizeof(node), "node:%.250s", cfg->node_id);
    if (!b->prefix || !b->kprefix || !b->sprefix || !(b->ch_push = join(b->prefix, "push")) ||
        !(b->ch_reply = join(b->prefix, reply)) || !(b->ch_note = join(b->prefix, "config")) ||
        !(b->ch_devices = join(b->prefix, "devices")) || !(b->node_key = join(b->kprefix, node)) ||
        !(b->members = calloc(1, sizeof(char *))) || !(b->members[0] = strdup(cfg->node_id))) {
        free(b->members);
        rcs_free(b->sync);
        free(b->kprefix);
        free(b->sprefix);
        free(b->prefix);
        free(b->ch_push);
        free(b->ch_reply);
        free(b->ch_note);
        free(b->ch_devices);
        free(b->node_key);
        free(b);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    b->n_members = 1;
    uv_mutex_init(&b->q_mu);
    uv_mutex_init(&b->m_mu);
    uv_mutex_init(&b->s_mu);
    uv_async_init(loop, &b->wake, on_wake);
    b->wake.data = b;
    uv_timer_init(loop, &b->heartbeat);
    b->heartbeat.data = b;
    uv_timer_start(&b->heartbeat, on_heartbeat, HEARTBEAT_MS, HEARTBEAT_MS);
    uv_timer_init(loop, &b->retry);
    b->retry.data = b;
    b->auth_store = (auth_store_t){session_saved, session_revoked, session_lookup, b};
    b->streams_hook = (streams_hook_t){streams_saved, b};
    auth_set_store(&b->auth_store);
    streams_set_hook(&b->streams_hook);
    log_info("cluster bus: redis", "redis=%s db=%d channels=%s* keys=%s*", b->where, b->target.db,
             b->prefix, b->kprefix);
    connect_both(b);
    return &b->base;
}
