/* The NATS bus (docs/cluster.md, "NATS"): InternalPushRequests on one subject that
 * every node subscribes to, node reports on each origin's reply subject, membership by
 * heartbeats that expire. cnats runs its own threads: its callbacks only queue what
 * arrived and wake the main thread's loop (uv_async), which decodes and dispatches as
 * the Redis bus does; workers hand what they publish to the same loop. Shared state
 * (sessions, stream configuration, device queue) stays with the Redis bus when there
 * is one (state), which this bus owns and runs beside itself. */
#include <errno.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <uv.h>

#include "cluster/bus.h"
#include "cluster/codec.h"
#include "cluster/members.h"
#include "cluster/nats_codec.h"
#include "core/config.h"
#include "core/log.h"
#include "hub/hub.h"

#define HEARTBEAT_MS 1000 /* a node announces itself this often */
#define NODE_TTL_MS 3000  /* and is a member until silent this long */
#define SETTLE_MS 200     /* after our hello came back: the others have answered it */
#define PING_MS 1000      /* NATS PINGs; MAX_PINGS_OUT unanswered: reconnect */
#define MAX_PINGS_OUT 3
#define CONNECT_MS 500      /* a (re)connect attempt's timeout */
#define BACKOFF_MIN_MS 100  /* reconnect delay, doubling */
#define BACKOFF_MAX_MS 5000 /* up to this */
#define LEAVE_FLUSH_MS 200  /* at SIGTERM: how long the goodbye may take */

/* A message on its way from a worker to NATS. */
typedef struct out_s {
    struct out_s *next;
    push_t *p;         /* an InternalPushRequest: delivered here instead if the bus is down */
    client_query_t *q; /* a ClientListRequest: listed here instead if the bus is down */
    char *subject;     /* NULL: the push subject */
    buf_t *body;
} out_t;

/* What cnats's threads hand to the loop: a message, or a change of the connection. */
enum in_kind { IN_PUSH, IN_REPLY, IN_MEMBER, IN_CONNECTED, IN_DISCONNECTED };

typedef struct in_s {
    struct in_s *next;
    int kind;
    natsMsg *msg;
} in_t;

typedef struct bus_nats_s {
    bus_t base;
    bus_t *state; /* the Redis bus holding the shared state, or NULL */
    const config_t *cfg;
    uv_loop_t *loop;
    const uint32_t *connections;
    char url[300];
    char *subj_push, *subj_reply, *subj_members, *subj_hello, *subj_node, *subj_leave;
    char *reply_prefix; /* "…reply.": an origin's token follows */
    int64_t started_at_ms;

    natsOptions *opts;
    natsConnection *nc;
    natsSubscription *sub_push, *sub_reply, *sub_members;

    /* main thread only */
    int connected, echoed, was_up, closing;
    uv_timer_t heartbeat, settle;
    uv_async_t wake;

    /* any thread */
    int up; /* atomic: connected, subscribed, announced, members heard */
    uv_mutex_t q_mu;
    out_t *out_head, *out_tail;
    in_t *in_head, *in_tail;
    int closed; /* under q_mu: the loop is gone, nothing more is queued */
    uv_mutex_t m_mu;
    cluster_members_t members; /* the others */
} bus_nats_t;

static int is_up(bus_nats_t *b)
{
    return __atomic_load_n(&b->up, __ATOMIC_ACQUIRE);
}

static int64_t wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* prefix + "." + name, new. */
static char *subject(const char *prefix, const char *name)
{
    size_t n = strlen(prefix) + strlen(name) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s.%s", prefix, name);
    return s;
}

/* ---- from cnats's threads: queue and wake the loop, nothing else ---- */

static void post_in(bus_nats_t *b, int kind, natsMsg *msg)
{
    in_t *in = calloc(1, sizeof(*in));
    uv_mutex_lock(&b->q_mu);
    if (!in || b->closed) {
        uv_mutex_unlock(&b->q_mu);
        free(in);
        if (msg) natsMsg_Destroy(msg);
        return;
    }
    in->kind = kind;
    in->msg = msg;
    if (b->in_tail)
        b->in_tail->next = in;
    else
        b->in_head = in;
    b->in_tail = in;
    uv_async_send(&b->wake); /* under the lock: close cannot have closed it */
    uv_mutex_unlock(&b->q_mu);
}

static void on_push_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *arg)
{
    (void)nc;
    (void)sub;
    post_in(arg, IN_PUSH, msg);
}

static void on_reply_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *arg)
{
    (void)nc;
    (void)sub;
    post_in(arg, IN_REPLY, msg);
}

static void on_member_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *arg)
{
    (void)nc;
    (void)sub;
    post_in(arg, IN_MEMBER, msg);
}

static void on_connected(natsConnection *nc, void *arg)
{
    (void)nc;
    post_in(arg, IN_CONNECTED, NULL);
}

static void on_disconnected(natsConnection *nc, void *arg)
{
    (void)nc;
    bus_nats_t *b = arg;
    /* at once, so no worker hands over a push that cnats would hold until reconnected */
    __atomic_store_n(&b->up, 0, __ATOMIC_RELEASE);
    post_in(b, IN_DISCONNECTED, NULL);
}

static int64_t reconnect_delay(natsConnection *nc, int attempts, void *arg)
{
    (void)nc;
    (void)arg;
    int64_t d = BACKOFF_MIN_MS;
    for (int i = 1; i < attempts && d < BACKOFF_MAX_MS; i++)
        d *= 2;
    return d > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : d;
}

/* ---- membership (the loop) ---- */

/* Publishes this node's announcement on subj. Returns 0 or a negative errno. */
static int announce(bus_nats_t *b, const char *subj)
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
        return -ENOMEM;
    }
    natsStatus s = natsConnection_Publish(b->nc, subj, body->data, (int)body->len);
    buf_unref(body);
    return s == NATS_OK ? 0 : -EIO;
}

static void on_settle(uv_timer_t *t)
{
    bus_nats_t *b = t->data;
    if (!b->connected || !b->echoed || b->closing || is_up(b)) return;
    __atomic_store_n(&b->up, 1, __ATOMIC_RELEASE);
    b->was_up = 1;
    uv_mutex_lock(&b->m_mu);
    size_t n = b->members.n;
    uv_mutex_unlock(&b->m_mu);
    log_info("cluster bus up", "nats=%s members=%zu", b->url, n + 1);
}

/* An announcement on …member.{hello,node,leave}. */
static void member_msg(bus_nats_t *b, natsMsg *msg)
{
    const char *subj = natsMsg_GetSubject(msg);
    json_t *doc = NULL;
    char err[200];
    if (cluster_node_decode(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), &doc, err,
                            sizeof(err)) < 0) {
        log_warn("ignored a bad node announcement", "subject=%s error=\"%s\"", subj, err);
        return;
    }
    const char *app = json_string_value(json_object_get(doc, "applicationId"));
    const char *id = json_string_value(json_object_get(doc, "nodeId"));
    int hello = strcmp(subj, b->subj_hello) == 0;
    if (strcmp(app, b->cfg->application_id) != 0) {
        /* another application whose id maps to the same subject token: not ours */
    } else if (strcmp(id, b->cfg->node_id) == 0) {
        /* our own hello came back: we are subscribed; the others answer it now */
        if (hello && !b->echoed && b->connected) {
            b->echoed = 1;
            uv_timer_start(&b->settle, on_settle, SETTLE_MS, 0);
        }
    } else if (strcmp(subj, b->subj_leave) == 0) {
        uv_mutex_lock(&b->m_mu);
        int gone = cluster_members_leave(&b->members, id);
        uv_mutex_unlock(&b->m_mu);
        if (gone) log_info("cluster node left", "node=%s", id);
    } else {
        uv_mutex_lock(&b->m_mu);
        int r = cluster_members_seen(&b->members, doc, uv_now(b->loop));
        uv_mutex_unlock(&b->m_mu);
        if (r == 1) log_info("cluster node joined", "node=%s", id);
        /* a node that joins learns every member from their answers, not a second later */
        if (hello && b->connected) announce(b, b->subj_node);
    }
    json_decref(doc);
}

static void on_heartbeat(uv_timer_t *t)
{
    bus_nats_t *b = t->data;
    if (!b->connected) return; /* down: keep the members we knew (nodesMissing names them) */
    uv_mutex_lock(&b->m_mu);
    size_t gone = cluster_members_expire(&b->members, uv_now(b->loop), NODE_TTL_MS);
    uv_mutex_unlock(&b->m_mu);
    if (gone) log_info("cluster nodes expired", "count=%zu", gone);
    /* until our hello has come back, say hello again (it may have been lost) */
    announce(b, b->echoed ? b->subj_node : b->subj_hello);
}

/* ---- the loop: what cnats and the workers queued ---- */

static void in_dispatch(bus_nats_t *b, in_t *in)
{
    char err[256];
    natsMsg *msg = in->msg;
    const char *data = msg ? natsMsg_GetData(msg) : NULL;
    size_t len = msg ? (size_t)natsMsg_GetDataLength(msg) : 0;
    int mk = data ? cluster_msg_kind(data, len) : CLUSTER_MSG_OTHER;
    if (in->kind == IN_PUSH && mk == CLUSTER_MSG_LIST_QUERY) {
        client_query_t *q;
        if (cluster_list_query_decode(data, len, &q, err, sizeof(err)) < 0) {
            log_warn("ignored a bad ClientListRequest", "error=\"%s\"", err);
        } else {
            hub_list_collect(b->base.hub, q);
            client_query_unref(q);
        }
        natsMsg_Destroy(msg);
        return;
    }
    if (in->kind == IN_REPLY && mk == CLUSTER_MSG_CLIENT_LIST) {
        client_list_t l;
        int w;
        uint64_t token;
        if (cluster_client_list_decode(data, len, &l, &w, &token, err, sizeof(err)) < 0) {
            log_warn("ignored a bad ClientList", "error=\"%s\"", err);
        } else {
            hub_list_result(b->base.hub, w, token, &l);
            client_list_free(&l);
        }
        natsMsg_Destroy(msg);
        return;
    }
    switch (in->kind) {
    case IN_PUSH: {
        push_t *p;
        if (cluster_push_decode(data, len, &p, err, sizeof(err)) < 0) {
            log_warn("ignored a bad InternalPushRequest", "error=\"%s\"", err);
            break;
        }
        hub_deliver(b->base.hub, p);
        push_unref(p);
        break;
    }
    case IN_REPLY: {
        report_t r;
        int w;
        uint64_t token;
        if (cluster_report_decode(data, len, &r, &w, &token, err, sizeof(err)) < 0) {
            log_warn("ignored a bad node report", "error=\"%s\"", err);
            break;
        }
        hub_node_report(b->base.hub, w, token, &r);
        report_free(&r);
        break;
    }
    case IN_MEMBER:
        member_msg(b, msg);
        break;
    case IN_CONNECTED:
        if (b->connected) break;
        b->connected = 1;
        b->echoed = 0;
        /* the members we knew before get a TTL to be heard again */
        uv_mutex_lock(&b->m_mu);
        cluster_members_touch(&b->members, uv_now(b->loop));
        uv_mutex_unlock(&b->m_mu);
        /* cnats has (re)sent our subscriptions before this: once the hello comes back,
         * we receive what we are waited for */
        announce(b, b->subj_hello);
        break;
    case IN_DISCONNECTED:
        b->connected = b->echoed = 0;
        __atomic_store_n(&b->up, 0, __ATOMIC_RELEASE);
        uv_timer_stop(&b->settle);
        if (b->was_up) {
            b->was_up = 0;
            log_warn("cluster bus down: delivering locally until NATS is back", "nats=%s", b->url);
        }
        break;
    default:
        break;
    }
    if (msg) natsMsg_Destroy(msg);
}

static void out_free(out_t *o)
{
    push_unref(o->p);
    client_query_unref(o->q);
    buf_unref(o->body);
    free(o->subject);
    free(o);
}

static void on_wake(uv_async_t *a)
{
    bus_nats_t *b = a->data;
    uv_mutex_lock(&b->q_mu);
    in_t *in = b->in_head;
    out_t *o = b->out_head;
    b->in_head = b->in_tail = NULL;
    b->out_head = b->out_tail = NULL;
    uv_mutex_unlock(&b->q_mu);
    while (in) {
        in_t *next = in->next;
        if (b->closing) {
            if (in->msg) natsMsg_Destroy(in->msg);
        } else {
            in_dispatch(b, in);
        }
        free(in);
        in = next;
    }
    while (o) {
        out_t *next = o->next;
        natsStatus s = NATS_CONNECTION_CLOSED;
        if (is_up(b))
            s = natsConnection_Publish(b->nc, o->subject ? o->subject : b->subj_push, o->body->data,
                                       (int)o->body->len);
        if (s != NATS_OK && o->p) {
            /* down since the worker looked (or too big for the server's max_payload):
             * its own subscribers still get it */
            if (s == NATS_MAX_PAYLOAD)
                log_warn("push larger than the NATS server's max_payload: delivered locally",
                         "push=%s bytes=%zu", o->p->id, o->body->len);
            hub_deliver(b->base.hub, o->p);
        }
        if (s != NATS_OK && o->q) hub_list_collect(b->base.hub, o->q);
        out_free(o);
        o = next;
    }
}

/* Queues o for the main loop. Returns 0, or -EPIPE once the bus is closed (o is
 * not taken). */
static int enqueue(bus_nats_t *b, out_t *o)
{
    uv_mutex_lock(&b->q_mu);
    if (b->closed) {
        uv_mutex_unlock(&b->q_mu);
        return -EPIPE;
    }
    if (b->out_tail)
        b->out_tail->next = o;
    else
        b->out_head = o;
    b->out_tail = o;
    uv_async_send(&b->wake);
    uv_mutex_unlock(&b->q_mu);
    return 0;
}

/* ---- the bus interface (any thread) ---- */

static int nats_publish(bus_t *bus, push_t *p)
{
    bus_nats_t *b = (bus_nats_t *)bus;
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
        out_free(o);
    }
    hub_deliver(bus->hub, p);
    return BUS_LOCAL_ONLY;
}

/* A message for origin_node's reply subject with an empty body of cap bytes, to be
 * encoded by the caller. Returns 0 with *out set, -ENOTCONN (the bus is down, or no
 * origin), -EINVAL (a node id that makes no subject), -ENOMEM. */
static int reply_out(bus_nats_t *b, const char *origin_node, size_t cap, out_t **out)
{
    char tok[600];
    *out = NULL;
    if (!is_up(b) || !origin_node) return -ENOTCONN;
    if (cluster_subject_token(origin_node, tok, sizeof(tok)) < 0) return -EINVAL;
    out_t *o = calloc(1, sizeof(*o));
    if (!o || !(o->body = buf_new(cap)) ||
        !(o->subject = malloc(strlen(b->reply_prefix) + strlen(tok) + 1))) {
        if (o) out_free(o);
        return -ENOMEM;
    }
    sprintf(o->subject, "%s%s", b->reply_prefix, tok);
    *out = o;
    return 0;
}

/* Encodes into o's body (enc returned < 0: -ENOMEM) and queues o; o is taken. */
static int reply_send(bus_nats_t *b, out_t *o, int enc)
{
    int ret = enc < 0 ? -ENOMEM : enqueue(b, o);
    if (ret < 0) out_free(o);
    return ret;
}

static int nats_report(bus_t *bus, push_t *p, report_t *r)
{
    bus_nats_t *b = (bus_nats_t *)bus;
    if (p->origin_node && strcmp(p->origin_node, b->cfg->node_id) == 0) {
        hub_node_report(bus->hub, p->origin_worker, p->origin_token, r);
        return 0;
    }
    out_t *o;
    int ret = reply_out(b, p->origin_node, 256 + r->n * 96, &o);
    if (ret == 0)
        ret = reply_send(
            b, o, cluster_report_encode(&o->body, r, p->id, p->origin_worker, p->origin_token));
    report_free(r);
    return ret;
}

static int nats_list(bus_t *bus, client_query_t *q)
{
    bus_nats_t *b = (bus_nats_t *)bus;
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
        out_free(o);
    }
    hub_list_collect(bus->hub, q);
    return BUS_LOCAL_ONLY;
}

static int nats_list_reply(bus_t *bus, client_query_t *q, client_list_t *l)
{
    bus_nats_t *b = (bus_nats_t *)bus;
    if (q->origin_node && strcmp(q->origin_node, b->cfg->node_id) == 0) {
        hub_list_result(bus->hub, q->origin_worker, q->token, l);
        return 0;
    }
    out_t *o;
    int ret = reply_out(b, q->origin_node, 256 + l->n * 160, &o);
    if (ret == 0)
        ret = reply_send(b, o, cluster_client_list_encode(&o->body, l, q->origin_worker, q->token));
    client_list_free(l);
    return ret;
}

static long nats_members(bus_t *bus, char ***ids)
{
    bus_nats_t *b = (bus_nats_t *)bus;
    uv_mutex_lock(&b->m_mu);
    long n = cluster_members_ids(&b->members, b->cfg->node_id, ids);
    uv_mutex_unlock(&b->m_mu);
    return n;
}

static int nats_healthy(bus_t *bus)
{
    bus_nats_t *b = (bus_nats_t *)bus;
    return is_up(b) && bus_healthy(b->state);
}

static json_t *nats_nodes(bus_t *bus)
{
    bus_nats_t *b = (bus_nats_t *)bus;
    json_t *all = json_pack(
        "[{s:s, s:s, s:i, s:I, s:I}]", "applicationId", b->cfg->application_id, "nodeId",
        b->cfg->node_id, "workers", b->cfg->workers, "connections",
        (json_int_t)(b->connections ? __atomic_load_n(b->connections, __ATOMIC_RELAXED) : 0),
        "startedAt", (json_int_t)b->started_at_ms);
    uv_mutex_lock(&b->m_mu);
    json_t *others = cluster_members_docs(&b->members);
    uv_mutex_unlock(&b->m_mu);
    if (all && others) json_array_extend(all, others);
    json_decref(others);
    return all;
}

static void nats_close(bus_t *bus)
{
    bus_nats_t *b = (bus_nats_t *)bus;
    if (b->closing) return;
    if (is_up(b) && announce(b, b->subj_leave) == 0)
        natsConnection_FlushTimeout(b->nc, LEAVE_FLUSH_MS); /* leave now, not after the TTL */
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
    uv_close((uv_handle_t *)&b->settle, NULL);
    /* no more callbacks that queue: they find the bus closed from here on */
    natsConnection_Close(b->nc);
    if (b->state && b->state->ops->close) b->state->ops->close(b->state);
}

static void nats_free(bus_t *bus)
{
    bus_nats_t *b = (bus_nats_t *)bus;
    natsSubscription_Destroy(b->sub_push);
    natsSubscription_Destroy(b->sub_reply);
    natsSubscription_Destroy(b->sub_members);
    natsConnection_Destroy(b->nc);
    natsOptions_Destroy(b->opts);
    /* cnats's threads are gone after this: nothing can take q_mu any more */
    nats_CloseAndWait(2000);
    for (in_t *in = b->in_head, *next; in; in = next) {
        next = in->next;
        if (in->msg) natsMsg_Destroy(in->msg);
        free(in);
    }
    for (out_t *o = b->out_head, *next; o; o = next) {
        next = o->next;
        out_free(o);
    }
    if (b->state) b->state->ops->free(b->state);
    cluster_members_free(&b->members);
    uv_mutex_destroy(&b->q_mu);
    uv_mutex_destroy(&b->m_mu);
    free(b->subj_push);
    free(b->subj_reply);
    free(b->subj_members);
    free(b->subj_hello);
    free(b->subj_node);
    free(b->subj_leave);
    free(b->reply_prefix);
    free(b);
}

static const bus_ops_t nats_ops = {
    .publish = nats_publish,
    .report = nats_report,
    .members = nats_members,
    .free = nats_free,
    .healthy = nats_healthy,
    .nodes = nats_nodes,
    .close = nats_close,
    .list = nats_list,
    .list_reply = nats_list_reply,
};

/* Device wake-ups arrive on the Redis bus (its devices channel): pass them on to
 * whoever node.c gave this bus. */
static void forward_wake(void *arg, const char *body, size_t len)
{
    bus_nats_t *b = arg;
    if (b->base.device_wake) b->base.device_wake(b->base.device_wake_arg, body, len);
}

/* Names every subject. Returns 0, -EINVAL (an id that makes no subject) or -ENOMEM. */
static int name_subjects(bus_nats_t *b)
{
    char app[600], node[600], prefix[700], reply[700];
    if (cluster_subject_token(b->cfg->application_id, app, sizeof(app)) < 0 ||
        cluster_subject_token(b->cfg->node_id, node, sizeof(node)) < 0)
        return -EINVAL;
    snprintf(prefix, sizeof(prefix), "pushgate.%s", app);
    snprintf(reply, sizeof(reply), "reply.%s", node);
    if (!(b->subj_push = subject(prefix, "push")) || !(b->subj_reply = subject(prefix, reply)) ||
        !(b->subj_members = subject(prefix, "member.*")) ||
        !(b->subj_hello = subject(prefix, "member.hello")) ||
        !(b->subj_node = subject(prefix, "member.node")) ||
        !(b->subj_leave = subject(prefix, "member.leave")) ||
        !(b->reply_prefix = subject(prefix, "reply.")))
        return -ENOMEM;
    return 0;
}

/* Creates the connection (retrying in the background when the server is not there
 * yet) and the three subscriptions. Returns NATS_OK or cnats's status. */
static natsStatus connect_and_subscribe(bus_nats_t *b)
{
    natsStatus s;
    if ((s = natsOptions_Create(&b->opts)) != NATS_OK ||
        (s = natsOptions_SetURL(b->opts, b->url)) != NATS_OK ||
        (s = natsOptions_SetName(b->opts, b->cfg->node_id)) != NATS_OK ||
        (s = natsOptions_SetNoRandomize(b->opts, true)) != NATS_OK ||
        (s = natsOptions_SetTimeout(b->opts, CONNECT_MS)) != NATS_OK ||
        /* a push is written when the loop publishes it, not when cnats's flusher thread
         * next runs: one thread hop less on the way (docs/benchmarks.md, "Cluster") */
        (s = natsOptions_SetSendAsap(b->opts, true)) != NATS_OK ||
        (s = natsOptions_SetAllowReconnect(b->opts, true)) != NATS_OK ||
        (s = natsOptions_SetMaxReconnect(b->opts, -1)) != NATS_OK ||
        (s = natsOptions_SetCustomReconnectDelay(b->opts, reconnect_delay, b)) != NATS_OK ||
        (s = natsOptions_SetPingInterval(b->opts, PING_MS)) != NATS_OK ||
        (s = natsOptions_SetMaxPingsOut(b->opts, MAX_PINGS_OUT)) != NATS_OK ||
        (s = natsOptions_SetDisconnectedCB(b->opts, on_disconnected, b)) != NATS_OK ||
        (s = natsOptions_SetReconnectedCB(b->opts, on_connected, b)) != NATS_OK ||
        (s = natsOptions_SetRetryOnFailedConnect(b->opts, true, on_connected, b)) != NATS_OK)
        return s;
    s = natsConnection_Connect(&b->nc, b->opts);
    if (s == NATS_OK)
        post_in(b, IN_CONNECTED, NULL);
    else if (s != NATS_NOT_YET_CONNECTED)
        return s;
    else
        log_warn("cannot reach NATS yet: retrying in the background", "nats=%s", b->url);
    if ((s = natsConnection_Subscribe(&b->sub_push, b->nc, b->subj_push, on_push_msg, b)) !=
            NATS_OK ||
        (s = natsConnection_Subscribe(&b->sub_reply, b->nc, b->subj_reply, on_reply_msg, b)) !=
            NATS_OK ||
        (s = natsConnection_Subscribe(&b->sub_members, b->nc, b->subj_members, on_member_msg, b)) !=
            NATS_OK)
        return s;
    return NATS_OK;
}

bus_t *bus_nats_new(struct hub_s *hub, const config_t *cfg, uv_loop_t *loop,
                    const uint32_t *connections, bus_t *state, char *err, size_t errlen)
{
    cluster_nats_url_t url;
    bus_nats_t *b = NULL;
    if (cluster_nats_url_parse(cfg->nats_url, &url, err, errlen) < 0) goto fail_url;
    if (!(b = calloc(1, sizeof(*b)))) {
        snprintf(err, errlen, "out of memory");
        goto fail_url;
    }
    b->base.ops = &nats_ops;
    b->base.hub = hub;
    b->state = state;
    b->cfg = cfg;
    b->loop = loop;
    b->connections = connections;
    b->started_at_ms = wall_ms();
    cluster_members_init(&b->members);
    cluster_nats_url_format(&url, b->url, sizeof(b->url));
    int r = name_subjects(b);
    if (r < 0) {
        snprintf(err, errlen,
                 r == -ENOMEM ? "out of memory" : "applicationId and nodeId must be non-empty");
        goto fail_names;
    }
    uv_mutex_init(&b->q_mu);
    uv_mutex_init(&b->m_mu);
    uv_async_init(loop, &b->wake, on_wake);
    b->wake.data = b;
    uv_timer_init(loop, &b->heartbeat);
    b->heartbeat.data = b;
    uv_timer_start(&b->heartbeat, on_heartbeat, HEARTBEAT_MS, HEARTBEAT_MS);
    uv_timer_init(loop, &b->settle);
    b->settle.data = b;
    if (state) {
        state->device_wake = forward_wake;
        state->device_wake_arg = b;
    }
    natsStatus s = connect_and_subscribe(b);
    if (s != NATS_OK) {
        snprintf(err, errlen, "nats %s: %s", b->url, natsStatus_GetText(s));
        b->state = NULL; /* freed below, once */
        nats_close(&b->base);
        uv_run(loop, UV_RUN_NOWAIT); /* the handles' close callbacks */
        nats_free(&b->base);
        goto fail_url;
    }
    log_info("cluster bus: nats", "nats=%s subjects=%s state=%s", b->url, b->subj_push,
             state ? "redis" : "this node");
    return &b->base;
fail_names:
    free(b->subj_push);
    free(b->subj_reply);
    free(b->subj_members);
    free(b->subj_hello);
    free(b->subj_node);
    free(b->subj_leave);
    free(b->reply_prefix);
    free(b);
fail_url:
    if (state) {
        if (state->ops->close) state->ops->close(state);
        uv_run(loop, UV_RUN_NOWAIT);
        state->ops->free(state);
    }
    return NULL;
}
