/* GET /api/admin/stats/stream (admin): the console's live overview as Server-Sent
 * Events, one `stats` event a second. Each round is a counts-only client listing over
 * the cluster (hub_list, as GET /api/connections): every node's subscribers by
 * transport and tenant; then this node's process counters (core/metrics.h) with rates
 * since the previous round. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "auth/auth.h"
#include "core/metrics.h"
#include "transport/sse_codec.h"

#define STATS_INTERVAL_MS 1000
#define STATS_MAX_PENDING (1u << 20)
#define STATS_WAIT_MS 900 /* how long a round waits for the other nodes' counts */

typedef struct stats_stream_s {
    conn_t *c;        /* NULL once the client is gone */
    worker_t *origin; /* the worker that owns c; rounds report here */
    app_t *app;
    int remaining;      /* 1 while a round is in flight */
    json_t *transports; /* the round's {transport: n} */
    json_t *tenants;    /* the round's {tenant: n} ("" for none) */
    json_t *missing;    /* the round's nodesMissing */
    uint64_t next_ms;
    uint64_t prev_ms, prev_pushes, prev_ok, prev_failed;
    int have_prev;
} stats_stream_t;

static void stats_free(stats_stream_t *s)
{
    json_decref(s->transports);
    json_decref(s->tenants);
    json_decref(s->missing);
    free(s);
}

/* The rate of a counter since the previous round, per second. */
static double rate(uint64_t now_v, uint64_t prev_v, uint64_t dt_ms)
{
    return dt_ms && now_v >= prev_v ? (double)(now_v - prev_v) * 1000.0 / (double)dt_ms : 0.0;
}

#define LOAD(f) __atomic_load_n(&metrics.f, __ATOMIC_RELAXED)

/* The event's document for the round just merged. Returns a new reference or NULL. */
static json_t *stats_doc(stats_stream_t *s, uint64_t now)
{
    app_t *app = s->app;
    bus_t *bus = hub_bus(app->hub);
    json_t *nodes = bus && bus->ops->nodes ? bus->ops->nodes(bus) : NULL;
    if (!nodes)
        nodes = json_pack("[{s:s, s:s, s:i, s:I}]", "applicationId", app->cfg->application_id,
                          "nodeId", app->cfg->node_id, "workers", app->pool->n, "connections",
                          (json_int_t)__atomic_load_n(&app->pool->connections, __ATOMIC_RELAXED));
    uint64_t pushes = LOAD(pushes_received), ok = LOAD(deliveries_ok),
             failed = LOAD(deliveries_failed);
    uint64_t dt = s->have_prev ? now - s->prev_ms : 0;
    int ready = __atomic_load_n(&app->pool->ready, __ATOMIC_ACQUIRE) >= app->pool->n;
    const char *health = __atomic_load_n(&app->draining, __ATOMIC_RELAXED) ? "draining"
                         : !ready                                          ? "starting"
                         : !bus_healthy(bus)                               ? "bus down"
                                                                           : "ready";
    json_t *doc = json_pack(
        "{s:I, s:s, s:s, s:o, s:{s:O, s:O, s:O, s:{s:I, s:I, s:I}}, s:{s:I, s:f}, "
        "s:{s:I, s:I, s:f}, s:I, s:{s:I, s:I}}",
        "at", (json_int_t)auth_now_ms(), "nodeId", app->cfg->node_id, "health", health, "nodes",
        nodes, "connections", "byTransport", s->transports, "byTenant", s->tenants, "nodesMissing",
        s->missing, "sockets", "websocket", (json_int_t)LOAD(connections[METRICS_T_WEBSOCKET]),
        "http", (json_int_t)LOAD(connections[METRICS_T_HTTP]), "sse",
        (json_int_t)LOAD(connections[METRICS_T_SSE]), "pushes", "total", (json_int_t)pushes,
        "perSecond", rate(pushes, s->prev_pushes, dt), "deliveries", "ok", (json_int_t)ok, "failed",
        (json_int_t)failed, "perSecond", rate(ok + failed, s->prev_ok + s->prev_failed, dt),
        "slowConsumerCloses", (json_int_t)LOAD(slow_consumer_closes), "devices", "queued",
        (json_int_t)LOAD(device_queued), "inFlight", (json_int_t)LOAD(device_in_flight));
    s->prev_ms = now;
    s->prev_pushes = pushes;
    s->prev_ok = ok;
    s->prev_failed = failed;
    s->have_prev = 1;
    return doc;
}

static void emit(stats_stream_t *s)
{
    uint64_t now = uv_now(&s->c->w->loop);
    json_t *doc = stats_doc(s, now);
    char *data = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    buf_t *b = data ? buf_new(strlen(data) + 32) : NULL;
    int r = b ? sse_write_event(&b, NULL, "stats", data, strlen(data)) : -ENOMEM;
    if (r == 0) r = conn_send(s->c, b, 0, b->len);
    if (r < 0) conn_close(s->c); /* a client that does not read, or out of memory */
    buf_unref(b);
    free(data);
    json_decref(doc);
}

/* Takes member key of doc (an object; anything else: an empty one) into *dst. */
static void take(json_t **dst, json_t *doc, const char *key, int array)
{
    json_t *v = json_object_get(doc, key);
    json_decref(*dst);
    *dst = (array ? json_is_array(v) : json_is_object(v)) ? json_incref(v)
           : array                                        ? json_array()
                                                          : json_object();
}

static void on_counted(void *arg, client_query_t *q, buf_t *body)
{
    stats_stream_t *s = arg;
    s->remaining = 0;
    json_t *doc = body ? json_loadb(body->data, body->len, 0, NULL) : NULL;
    buf_unref(body);
    take(&s->transports, doc, "byTransport", 0);
    take(&s->tenants, doc, "byTenant", 0);
    take(&s->missing, doc, "nodesMissing", 1);
    json_decref(doc);
    if (!s->c) {
        stats_free(s);
        return;
    }
    if (q && s->transports && s->tenants && s->missing) emit(s);
}

/* Starts a round: a counts-only listing of every node's clients. Returns 0 or a
 * negative errno (no round). */
static int start_round(stats_stream_t *s)
{
    client_query_t *q = client_query_new();
    if (!q) return -ENOMEM;
    q->limit = 0;
    s->remaining = 1;
    int r = hub_list(s->origin, q, STATS_WAIT_MS, on_counted, s);
    if (r < 0) s->remaining = 0;
    client_query_unref(q);
    return r;
}

static void stats_on_read(conn_t *c, const char *data, size_t len)
{
    (void)c;
    (void)data;
    (void)len; /* the reader has nothing to say */
}

static void stats_on_eof(conn_t *c)
{
    conn_close(c);
}

static void stats_on_tick(conn_t *c, uint64_t now)
{
    stats_stream_t *s = c->ud;
    if (now < s->next_ms || s->remaining) return;
    s->next_ms = now + STATS_INTERVAL_MS;
    start_round(s);
}

static void stats_on_close(conn_t *c)
{
    stats_stream_t *s = c->ud;
    s->c = NULL;
    if (!s->remaining) stats_free(s);
}

static const conn_proto_t stats_proto = {
    .name = "stats-sse",
    .on_read = stats_on_read,
    .on_eof = stats_on_eof,
    .on_tick = stats_on_tick,
    .on_close = stats_on_close,
};

void api_stats_stream(http_ctx_t *ctx)
{
    app_t *app = ctx->app;
    if (!api_require_key(ctx, CONFIG_SCOPE_ADMIN)) return;
    stats_stream_t *s = calloc(1, sizeof(*s));
    if (!s) {
        http_respond_error(ctx, 500, "out of memory");
        return;
    }
    s->app = app;
    const char *extra;
    size_t extra_len;
    conn_t *c = http_take_conn(ctx, &extra, &extra_len);
    s->c = c;
    s->origin = c->w;
    c->deadline = 0;
    c->limit = 0;
    conn_set_proto(c, &stats_proto, s);
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                               "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"
                               "Connection: close\r\n\r\nretry: 2000\n\n";
    if (conn_send_copy(c, head, sizeof(head) - 1) < 0) {
        conn_close(c);
        return;
    }
    c->limit = conn_bytes(c->pending + (size_t)STATS_MAX_PENDING);
    s->next_ms = uv_now(&c->w->loop) + STATS_INTERVAL_MS;
    if (start_round(s) < 0) conn_close(c);
}
