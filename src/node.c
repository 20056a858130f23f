/* Node assembly and lifecycle. */
#include "node.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "api/api.h"
#include "auth/auth.h"
#include "cluster/bus.h"
#include "cluster/codec.h"
#include "core/ids.h"
#include "core/log.h"
#include "core/tls.h"
#include "core/memtrim.h"
#include "core/worker.h"
#include "http/server.h"
#include "auth/channels.h"
#include "hub/hub.h"
#include "transport/engineio.h"
#include "cluster/redis_cluster.h"
#include "store/devices_redis.h"
#include "store/idem.h"
#include "streams/stream.h"

typedef struct node_s {
    app_t app;
    worker_pool_t pool;
    http_server_cfg_t http;
    uv_signal_t sigterm, sigint, sighup;
    tls_server_t *tls;             /* NULL: the listener speaks plain TCP */
    http_path_limit_t *body_paths; /* limits.maxBodyBytesByPath, as the parser reads it */
    bus_t *bus;
    bus_t *store_bus; /* the bus on the Redis that holds the device queue (may be bus) */
    int stopping;
    /* clustered: where the device queue lives in Redis */
    redis_target_t redis;
    char redis_prefix[300];
    devices_redis_cfg_t devices_redis;
    int devices_keep;  /* atomic: the bus closed at shutdown with Redis up */
    memtrim_t memtrim; /* freed heap back to the kernel after disconnects */
} node_t;

/* The device queue in Redis skips Redis while the bus finds it down. Once the bus has
 * closed for the shutdown, the draining workers go on using Redis (on their own
 * connections) if it was up then: a waitMs enqueue answered at shutdown says what
 * happened to its command rather than 503. */
static int bus_up(void *arg)
{
    node_t *n = arg;
    return __atomic_load_n(&n->devices_keep, __ATOMIC_ACQUIRE) || bus_healthy(n->store_bus);
}

/* Clustered: the device queue goes to the Redis of the bus (docs/cluster.md), and the
 * bus hands the queue's wake-ups from other nodes to the held device requests.
 * Returns 0 or -EINVAL (a URL the bus accepted cannot be bad). */
static int devices_in_redis(node_t *n, const config_t *cfg, bus_t *bus)
{
    char err[256];
    if (redis_target_from_config(cfg, &n->redis, err, sizeof(err)) <= 0) return -EINVAL;
    snprintf(n->redis_prefix, sizeof(n->redis_prefix), "pushgate:%s:", cfg->application_id);
    n->devices_redis = (devices_redis_cfg_t){
        .target = &n->redis,
        .prefix = n->redis_prefix,
        .node_id = cfg->node_id,
        .healthy = bus_up,
        .healthy_arg = n,
    };
    n->app.devices_redis = &n->devices_redis;
    bus->device_wake = api_devices_remote_wake;
    bus->device_wake_arg = &n->app;
    return 0;
}

static void on_worker_start(worker_t *w, void *arg)
{
    node_t *n = arg;
    hub_worker_attach(n->app.hub, w, n->pool.cfg.n);
    if (api_devices_attach(&n->app, w) < 0)
        log_error("cannot set up the device queue on a worker", "worker=%d", w->index);
}

static void on_worker_stop(worker_t *w, void *arg)
{
    node_t *n = arg;
    api_devices_detach(&n->app, w);
    hub_worker_detach(w);
}

/* Draining: a worker keeps its clients while reports or acks are pending there. */
static int worker_busy(worker_t *w, void *arg)
{
    (void)arg;
    return hub_busy(w);
}

static void on_worker_draining(worker_t *w, void *arg)
{
    (void)arg;
    hub_worker_draining(w);
}

static void on_worker_stopping(worker_t *w, void *arg)
{
    (void)arg;
    hub_worker_stopping(w);
    eio_worker_shutdown();
}

static void on_signal(uv_signal_t *s, int signum)
{
    node_t *n = s->data;
    if (n->stopping) return;
    n->stopping = 1;
    log_info("shutting down", "signal=%d", signum);
    __atomic_store_n(&n->app.draining, 1, __ATOMIC_RELAXED);
    /* the bus lets go of the main loop; what the workers still publish stays local */
    if (n->app.devices_redis && bus_healthy(n->store_bus))
        __atomic_store_n(&n->devices_keep, 1, __ATOMIC_RELEASE);
    if (n->bus && n->bus->ops->close) n->bus->ops->close(n->bus);
    worker_pool_stop(&n->pool);
    memtrim_stop(&n->memtrim);
    uv_close((uv_handle_t *)&n->sigterm, NULL);
    uv_close((uv_handle_t *)&n->sigint, NULL);
    uv_close((uv_handle_t *)&n->sighup, NULL);
    /* closing the handles gave the signals back their default action: a second SIGTERM
     * (a supervisor repeating itself) must not kill the drain half way */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
}

/* SIGHUP: the TLS certificate and key are read again; new handshakes use them, open
 * connections keep theirs. A pair that does not load leaves the old one in place. */
static void on_sighup(uv_signal_t *s, int signum)
{
    (void)signum;
    node_t *n = s->data;
    if (!n->tls) {
        log_info("SIGHUP: nothing to reload (no TLS configured)", NULL);
        return;
    }
    char err[512];
    if (tls_server_reload(n->tls, err, sizeof(err)) < 0)
        log_error("TLS reload refused; the previous certificate stays", "error=\"%s\"", err);
    else
        log_info("TLS certificate reloaded", "cert=%s key=%s", n->app.cfg->tls_cert,
                 n->app.cfg->tls_key);
}

static int make_dir(const char *path)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp)) return -ENAMETOOLONG;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST) return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0755) < 0 && errno != EEXIST) return -errno;
    return 0;
}

static enum log_level parse_level(const char *s)
{
    if (strcmp(s, "debug") == 0) return LOG_DEBUG;
    if (strcmp(s, "warn") == 0) return LOG_WARN;
    if (strcmp(s, "error") == 0) return LOG_ERROR;
    return LOG_INFO;
}

int node_run(config_t *cfg)
{
    static node_t n;
    char err[512];
    int r;
    log_init(cfg->node_id, parse_level(cfg->log_level));
    signal(SIGPIPE, SIG_IGN);
    ids_init();
    if ((r = make_dir(cfg->data_dir)) < 0) {
        log_error("cannot create the data directory", "dir=%s error=\"%s\"", cfg->data_dir,
                  strerror(-r));
        return 1;
    }
    if (cfg->tls_cert) {
        tls_server_cfg_t tc = {cfg->tls_cert, cfg->tls_key, cfg->tls_min_version,
                               cfg->http2.enabled};
        if (tls_server_new(&tc, &n.tls, err, sizeof(err)) < 0) {
            log_error("cannot load the TLS certificate", "error=\"%s\"", err);
            return 1;
        }
    }
    if (auth_init(cfg, err, sizeof(err)) < 0) {
        log_error("bad config", "error=\"%s\"", err);
        goto fail_auth;
    }
    if (store_open(&n.app.store, cfg->data_dir, err, sizeof(err)) < 0) {
        log_error("cannot open the store", "error=\"%s\"", err);
        auth_shutdown();
        goto fail_auth;
    }
    if (channel_rules_validate(cfg->channels, err, sizeof(err)) < 0 ||
        streams_init(cfg->streams, &n.app.store, err, sizeof(err)) < 0) {
        log_error("bad config", "error=\"%s\"", err);
        store_close(&n.app.store);
        auth_shutdown();
        goto fail_auth;
    }
    n.app.cfg = cfg;
    n.app.pool = &n.pool;
    n.app.ws = (ws_options_t){
        .max_message_bytes = cfg->limits.max_message_bytes,
        .max_output_bytes = cfg->limits.max_output_bytes,
        .ping_interval_ms = cfg->limits.ws_ping_interval_ms,
        .pong_timeout_ms = cfg->limits.ws_pong_timeout_ms,
        .compression = cfg->ws_compression,
        .client_window_bits = cfg->ws_client_window_bits,
        .max_messages_per_s = cfg->limits.max_messages_per_s,
        .message_burst = cfg->limits.message_burst,
        .max_subscriptions = cfg->limits.max_subscriptions,
    };
    if (!(n.app.hub = hub_new(cfg))) goto fail_hub;
    uv_loop_t *loop = uv_default_loop();
    /* NATS carries the messages when set; the Redis bus, if any, keeps the shared state */
    int redis = cfg->redis_url || cfg->redis_cluster;
    bus_t *store_bus =
        redis ? bus_redis_new(n.app.hub, cfg, loop, &n.pool.connections, err, sizeof(err)) : NULL;
    bus_t *bus = NULL;
    if (cfg->nats_url && (store_bus || !redis))
        bus = bus_nats_new(n.app.hub, cfg, loop, &n.pool.connections, store_bus, err, sizeof(err));
    else if (redis)
        bus = store_bus;
    else
        bus = bus_local_new(n.app.hub, cfg->node_id);
    if (!bus) {
        if (redis || cfg->nats_url) log_error("bad config", "error=\"%s\"", err);
        goto fail_bus;
    }
    n.bus = bus;
    n.store_bus = store_bus ? store_bus : bus;
    hub_set_bus(n.app.hub, bus);
    if (api_socketio_init(&n.app) < 0) goto fail_pool;
    if (redis && devices_in_redis(&n, cfg, bus) < 0) goto fail_pool;
    /* Idempotency-Keys of pushes: shared in Redis by a cluster, in memory on one node */
    int64_t idem_ttl = (int64_t)cfg->idem_ttl_seconds * 1000;
    if (redis) {
        idem_redis_cfg_t ic = {
            .target = &n.redis, .prefix = n.redis_prefix, .healthy = bus_up, .healthy_arg = &n};
        n.app.idem = idem_redis_new(&ic, idem_ttl);
    } else {
        n.app.idem = idem_mem_new(idem_ttl, cfg->idem_max_keys);
    }
    if (!n.app.idem) goto fail_pool;
    if (api_devices_init(&n.app, err, sizeof(err)) < 0) {
        log_error("cannot open the device queue", "error=\"%s\"", err);
        goto fail_devices;
    }
    n.body_paths = calloc(cfg->limits.n_body_paths + 1, sizeof(*n.body_paths));
    if (!n.body_paths) goto fail_devices_free;
    for (size_t i = 0; i < cfg->limits.n_body_paths; i++)
        n.body_paths[i] = (http_path_limit_t){cfg->limits.body_paths[i].path,
                                              cfg->limits.body_paths[i].max_body_bytes};
    n.http = (http_server_cfg_t){
        .limits = {cfg->limits.max_header_bytes, cfg->limits.max_headers,
                   cfg->limits.max_body_bytes},
        .body_paths = n.body_paths,
        .n_body_paths = cfg->limits.n_body_paths,
        .handshake_timeout_ms = cfg->limits.handshake_timeout_ms,
        .read_timeout_ms = cfg->limits.read_timeout_ms,
        .idle_timeout_ms = cfg->limits.idle_timeout_ms,
        .routes = api_routes,
        .n_routes = api_n_routes,
        .app = &n.app,
        .h2_enabled = cfg->http2.enabled,
        .h2_max_streams = cfg->http2.max_concurrent_streams,
    };
    http_server_setup(&n.http);
    worker_pool_cfg_t pc = {
        .host = cfg->listen_host,
        .port = cfg->listen_port,
        .n = cfg->workers,
        .accept_proto = &http_proto,
        .tls = n.tls,
        .max_connections = cfg->limits.max_connections,
        .max_connections_per_ip = cfg->limits.max_connections_per_ip,
        .grace_ms = cfg->shutdown_grace_ms,
        .shutdown_timeout_ms = cfg->limits.shutdown_timeout_ms,
        .coalesce_ms = cfg->limits.push_coalesce_ms,
        .busy = worker_busy,
        .on_refuse = http_server_refuse,
        .on_start = on_worker_start,
        .on_stop = on_worker_stop,
        .on_draining = on_worker_draining,
        .on_stopping = on_worker_stopping,
        .arg = &n,
    };
    /* handlers first: a signal must never find the default action once we listen */
    uv_signal_init(loop, &n.sigterm);
    uv_signal_init(loop, &n.sigint);
    n.sigterm.data = n.sigint.data = &n;
    uv_signal_start(&n.sigterm, on_signal, SIGTERM);
    uv_signal_start(&n.sigint, on_signal, SIGINT);
    uv_signal_init(loop, &n.sighup);
    n.sighup.data = &n;
    uv_signal_start(&n.sighup, on_sighup, SIGHUP);
    if ((r = worker_pool_start(&n.pool, &pc)) < 0) {
        log_error("cannot listen", "addr=%s:%d error=\"%s\"", cfg->listen_host, cfg->listen_port,
                  uv_strerror(r));
        goto fail_pool;
    }
    if (memtrim_start(&n.memtrim, loop, &n.pool.connections) < 0)
        log_warn("cannot start the heap trimmer", NULL);
    if (n.stopping) {
        worker_pool_stop(&n.pool); /* a signal came while the workers were starting */
        memtrim_stop(&n.memtrim);
    }
    log_info("listening", "addr=%s:%d workers=%d application=%s tls=%s", cfg->listen_host,
             n.pool.cfg.port, cfg->workers, cfg->application_id, n.tls ? "on" : "off");
    uv_run(loop, UV_RUN_DEFAULT);
    worker_pool_join(&n.pool);
    uv_loop_close(loop);
    free(n.body_paths);
    api_devices_free(&n.app);
    idem_free(n.app.idem);
    bus->ops->free(bus);
    hub_free(n.app.hub);
    streams_shutdown();
    store_close(&n.app.store);
    auth_shutdown();
    tls_server_free(n.tls);
    log_info("stopped", NULL);
    return 0;
fail_pool:
    uv_close((uv_handle_t *)&n.sigterm, NULL);
    uv_close((uv_handle_t *)&n.sigint, NULL);
    uv_close((uv_handle_t *)&n.sighup, NULL);
    free(n.body_paths);
fail_devices_free:
    api_devices_free(&n.app);
fail_devices:
    idem_free(n.app.idem);
    if (bus->ops->close) bus->ops->close(bus);
    uv_run(loop, UV_RUN_DEFAULT);
    bus->ops->free(bus);
fail_bus:
    hub_free(n.app.hub);
fail_hub:
    streams_shutdown();
    store_close(&n.app.store);
    auth_shutdown();
fail_auth:
    tls_server_free(n.tls);
    return 1;
}
