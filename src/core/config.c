/* Config defaults, JSON parsing with errors that name the key, and API key lookup. */
#include "core/config.h"

#include "cluster/rslots.h"
#include "core/origin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int set_str(char **dst, const char *v)
{
    char *s = strdup(v);
    if (!s) return -ENOMEM;
    free(*dst);
    *dst = s;
    return 0;
}

int config_init(config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->workers = n > 0 ? (int)n : 1;
    cfg->listen_port = 8080;
    char host[64];
    if (gethostname(host, sizeof(host)) != 0) snprintf(host, sizeof(host), "node");
    host[sizeof(host) - 1] = '\0';
    char nid[96];
    snprintf(nid, sizeof(nid), "%s-%d", host, (int)getpid());
    if (set_str(&cfg->listen_host, "127.0.0.1") || set_str(&cfg->application_id, "pushgate") ||
        set_str(&cfg->node_id, nid) || set_str(&cfg->data_dir, "./data") ||
        set_str(&cfg->log_level, "info"))
        return -ENOMEM;
    cfg->history_max_events = 1000;
    cfg->history_max_age_s = 3600;
    cfg->sse_heartbeat_ms = 15000;
    cfg->sse_retry_ms = 3000;
    cfg->sio_ping_interval_ms = 25000;
    cfg->sio_ping_timeout_ms = 20000;
    cfg->sio_connect_timeout_ms = 45000;
    cfg->sio_max_payload = 1000000;
    cfg->tls_min_version = 12;
    cfg->ws_compression = 0;
    cfg->ws_client_window_bits = 10;
    cfg->device = (config_device_t){
        .hold_ms = 0,
        .redelivery_ms = 30000,
        .ttl_seconds = 86400,
        .max_queue = 1000,
        .retention_seconds = 7 * 86400,
    };
    cfg->http2 = (config_http2_t){.enabled = 1, .max_concurrent_streams = 100};
    cfg->idem_ttl_seconds = 86400;
    cfg->idem_max_keys = 100000;
    cfg->limits = (config_limits_t){
        .max_output_bytes = 1u << 20,
        .max_message_bytes = 1u << 20,
        .max_body_bytes = 1u << 20,
        .max_header_bytes = 16384,
        .max_headers = 64,
        .handshake_timeout_ms = 10000,
        .read_timeout_ms = 30000,
        .idle_timeout_ms = 30000,
        .ws_ping_interval_ms = 30000,
        .ws_pong_timeout_ms = 10000,
        .shutdown_timeout_ms = 5000,
        .max_connections = 0,
        .max_connections_per_ip = 0,
        .max_messages_per_s = 100,
        .message_burst = 200,
        .max_subscriptions = 256,
        .push_backlog = 64,
        .push_coalesce_ms = 1,
    };
    cfg->shutdown_grace_ms = 5000;
    return 0;
}

int config_set_listen(config_t *cfg, const char *hostport)
{
    const char *colon = strrchr(hostport, ':');
    if (!colon) return -EINVAL;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port < 0 || port > 65535) return -EINVAL;
    size_t hl = (size_t)(colon - hostport);
    const char *h = hostport;
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    char host[256];
    if (hl >= sizeof(host)) return -EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (set_str(&cfg->listen_host, hl ? host : "0.0.0.0") < 0) return -ENOMEM;
    cfg->listen_port = (int)port;
    return 0;
}

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        snprintf(err, errlen, __VA_ARGS__);                                                        \
        return -EINVAL;                                                                            \
    } while (0)

static int get_uint(json_t *obj, const char *key, const char *path, unsigned long long max,
                    unsigned long long *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    if (!v) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        (unsigned long long)json_integer_value(v) > max)
        FAIL("%s%s must be an integer between 0 and %llu", path, key, max);
    *out = (unsigned long long)json_integer_value(v);
    return 1;
}

static int below(unsigned long long x, unsigned long long lo)
{
    return x < lo;
}

static void free_body_paths(config_limits_t *l)
{
    for (size_t i = 0; i < l->n_body_paths; i++)
        free(l->body_paths[i].path);
    free(l->body_paths);
    l->body_paths = NULL;
    l->n_body_paths = 0;
}

/* limits.maxBodyBytesByPath: {"/result": 4194304, ...}, exact paths. */
static int apply_body_paths(config_limits_t *l, json_t *obj, char *err, size_t errlen)
{
    if (!json_is_object(obj))
        FAIL("limits.maxBodyBytesByPath must be an object of paths and byte counts");
    size_t n = json_object_size(obj), i = 0;
    config_path_limit_t *arr = calloc(n ? n : 1, sizeof(*arr));
    if (!arr) return -ENOMEM;
    const char *k;
    json_t *v;
    int rc = 0;
    json_object_foreach(obj, k, v)
    {
        if (k[0] != '/' || strchr(k, '?')) {
            snprintf(err, errlen,
                     "limits.maxBodyBytesByPath: \"%s\" must be a path starting "
                     "with / and without a query",
                     k);
            rc = -EINVAL;
        } else if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                   json_integer_value(v) > (1ll << 30)) {
            snprintf(err, errlen,
                     "limits.maxBodyBytesByPath[\"%s\"] must be an integer "
                     "between 0 and %lld",
                     k, 1ll << 30);
            rc = -EINVAL;
        } else if (!(arr[i].path = strdup(k))) {
            rc = -ENOMEM;
        }
        if (rc < 0) break;
        arr[i++].max_body_bytes = (size_t)json_integer_value(v);
    }
    if (rc < 0) {
        for (size_t j = 0; j < n; j++)
            free(arr[j].path);
        free(arr);
        return rc;
    }
    free_body_paths(l);
    l->body_paths = arr;
    l->n_body_paths = n;
    return 0;
}

static int apply_limits(config_limits_t *l, json_t *lim, char *err, size_t errlen)
{
    if (!json_is_object(lim)) FAIL("limits must be an object");
    static const char *known[] = {
        "maxOutputBytes",   "maxMessageBytes",     "maxBodyBytes",         "maxBodyBytesByPath",
        "maxHeaderBytes",   "maxHeaders",          "handshakeTimeoutMs",   "readTimeoutMs",
        "idleTimeoutMs",    "wsPingIntervalMs",    "wsPongTimeoutMs",      "shutdownTimeoutMs",
        "maxConnections",   "maxConnectionsPerIp", "maxMessagesPerSecond", "messageBurst",
        "maxSubscriptions", "pushBacklog",         "pushCoalesceMs",       NULL};
    const char *k;
    json_t *v;
    json_object_foreach(lim, k, v)
    {
        int ok = 0;
        for (int i = 0; known[i]; i++)
            ok |= strcmp(k, known[i]) == 0;
        if (!ok) FAIL("limits.%s is not a known limit", k);
    }
    unsigned long long x;
    int r;
#define LIM(key, field, lo, max)                                                                   \
    if ((r = get_uint(lim, key, "limits.", max, &x, err, errlen)) < 0) return r;                   \
    if (r) {                                                                                       \
        if (below(x, lo)) FAIL("limits.%s must be at least %llu", key, (unsigned long long)(lo));  \
        l->field = x;                                                                              \
    }
    LIM("maxOutputBytes", max_output_bytes, 1024, 1ull << 34);
    LIM("maxMessageBytes", max_message_bytes, 125, 1ull << 30);
    LIM("maxBodyBytes", max_body_bytes, 64, 1ull << 30);
    LIM("maxHeaderBytes", max_header_bytes, 256, 1u << 20);
    LIM("maxHeaders", max_headers, 4, 10000);
    LIM("readTimeoutMs", read_timeout_ms, 10, 3600000);
    LIM("wsPingIntervalMs", ws_ping_interval_ms, 10, 3600000);
    LIM("wsPongTimeoutMs", ws_pong_timeout_ms, 10, 3600000);
    LIM("shutdownTimeoutMs", shutdown_timeout_ms, 0, 600000);
    LIM("maxConnections", max_connections, 0, 100000000);
    LIM("handshakeTimeoutMs", handshake_timeout_ms, 10, 3600000);
    LIM("idleTimeoutMs", idle_timeout_ms, 10, 3600000);
    LIM("maxConnectionsPerIp", max_connections_per_ip, 0, 100000000);
    LIM("maxMessagesPerSecond", max_messages_per_s, 0, 1000000);
    LIM("messageBurst", message_burst, 1, 1000000);
    LIM("maxSubscriptions", max_subscriptions, 1, 1000000);
    LIM("pushBacklog", push_backlog, 0, 1000000);
    LIM("pushCoalesceMs", push_coalesce_ms, 0, 1000);
#undef LIM
    json_t *bp = json_object_get(lim, "maxBodyBytesByPath");
    if (bp && (r = apply_body_paths(l, bp, err, errlen)) < 0) return r;
    return 0;
}

static int apply_apikeys(config_t *cfg, json_t *keys, char *err, size_t errlen)
{
    if (!json_is_array(keys)) FAIL("apiKeys must be an array");
    size_t n = json_array_size(keys);
    config_apikey_t *arr = calloc(n ? n : 1, sizeof(*arr));
    if (!arr) return -ENOMEM;
    size_t i;
    json_t *e;
    int rc = 0;
    json_array_foreach(keys, i, e)
    {
        json_t *key = json_object_get(e, "key");
        json_t *scopes = json_object_get(e, "scopes");
        json_t *tenant = json_object_get(e, "tenant");
        if (!json_is_object(e)) {
            snprintf(err, errlen, "apiKeys[%zu] must be an object", i);
            rc = -EINVAL;
        } else if (!json_is_string(key) || json_string_length(key) == 0) {
            snprintf(err, errlen, "apiKeys[%zu].key must be a non-empty string", i);
            rc = -EINVAL;
        } else if (tenant && !json_is_string(tenant)) {
            snprintf(err, errlen, "apiKeys[%zu].tenant must be a string", i);
            rc = -EINVAL;
        } else if (!json_is_array(scopes)) {
            snprintf(err, errlen, "apiKeys[%zu].scopes must be an array", i);
            rc = -EINVAL;
        }
        if (rc < 0) break;
        size_t j;
        json_t *s;
        json_array_foreach(scopes, j, s)
        {
            const char *sv = json_string_value(s);
            if (sv && strcmp(sv, "publish") == 0)
                arr[i].scopes |= CONFIG_SCOPE_PUBLISH;
            else if (sv && strcmp(sv, "admin") == 0)
                arr[i].scopes |= CONFIG_SCOPE_ADMIN | CONFIG_SCOPE_PUBLISH;
            else {
                snprintf(err, errlen, "apiKeys[%zu].scopes[%zu] must be \"publish\" or \"admin\"",
                         i, j);
                rc = -EINVAL;
                break;
            }
        }
        if (rc < 0) break;
        arr[i].key = strdup(json_string_value(key));
        arr[i].tenant = tenant ? strdup(json_string_value(tenant)) : NULL;
        if (!arr[i].key || (tenant && !arr[i].tenant)) {
            rc = -ENOMEM;
            i++;
            break;
        }
    }
    if (rc < 0) {
        for (size_t k = 0; k < n; k++) {
            free(arr[k].key);
            free(arr[k].tenant);
        }
        free(arr);
        return rc;
    }
    for (size_t k = 0; k < cfg->n_api_keys; k++) {
        free(cfg->api_keys[k].key);
        free(cfg->api_keys[k].tenant);
    }
    free(cfg->api_keys);
    cfg->api_keys = arr;
    cfg->n_api_keys = n;
    return 0;
}

static int apply_string(json_t *doc, const char *key, char **dst, char *err, size_t errlen)
{
    json_t *v = json_object_get(doc, key);
    if (!v) return 0;
    if (!json_is_string(v) || json_string_length(v) == 0)
        FAIL("%s must be a non-empty string", key);
    return set_str(dst, json_string_value(v));
}

/* "redis": a URL string, or {"cluster": ["host:port", ...]} (a Redis Cluster's seeds). */
static int apply_redis(config_t *cfg, json_t *doc, char *err, size_t errlen)
{
    json_t *v = json_object_get(doc, "redis");
    if (!v || json_is_string(v)) return apply_string(doc, "redis", &cfg->redis_url, err, errlen);
    json_t *seeds = json_object_get(v, "cluster");
    if (!json_is_object(v) || json_object_size(v) != 1 || !json_is_array(seeds) ||
        json_array_size(seeds) == 0 || json_array_size(seeds) > 16)
        FAIL("redis must be a URL string or {\"cluster\": [\"host:port\", ...]} (1-16 seeds)");
    size_t i;
    json_t *s;
    json_array_foreach(seeds, i, s)
    {
        rslots_node_t n;
        if (!json_is_string(s) ||
            rslots_parse_hostport(json_string_value(s), json_string_length(s), &n) < 0)
            FAIL("redis.cluster[%zu] must be a string \"host:port\"", i);
    }
    json_decref(cfg->redis_cluster);
    cfg->redis_cluster = json_incref(seeds);
    return 0;
}

static int apply_http2(config_http2_t *h, json_t *obj, char *err, size_t errlen)
{
    if (!json_is_object(obj)) FAIL("http2 must be an object");
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        if (strcmp(k, "enabled") != 0 && strcmp(k, "maxConcurrentStreams") != 0)
            FAIL("http2.%s is not a known key (enabled, maxConcurrentStreams)", k);
    }
    if ((v = json_object_get(obj, "enabled"))) {
        if (!json_is_boolean(v)) FAIL("http2.enabled must be a boolean");
        h->enabled = json_is_true(v);
    }
    if ((v = json_object_get(obj, "maxConcurrentStreams"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 10000)
            FAIL("http2.maxConcurrentStreams must be an integer between 1 and 10000");
        h->max_concurrent_streams = (unsigned)json_integer_value(v);
    }
    return 0;
}

/* "bus": {"nats": "nats://host:port"} (docs/cluster.md, "NATS"). */
static int apply_bus(config_t *cfg, json_t *bus, char *err, size_t errlen)
{
    if (!bus) return 0;
    if (!json_is_object(bus)) FAIL("bus must be an object {\"nats\": \"nats://host:port\"}");
    const char *k;
    json_t *v;
    json_object_foreach(bus, k, v)
    {
        if (strcmp(k, "nats") != 0) FAIL("bus.%s is not a known key (nats)", k);
    }
    json_t *nats = json_object_get(bus, "nats");
    if (nats && (!json_is_string(nats) || json_string_length(nats) == 0))
        FAIL("bus.nats must be a non-empty string \"nats://host:port\"");
    return nats ? set_str(&cfg->nats_url, json_string_value(nats)) : 0;
}

static int apply_device(config_device_t *d, json_t *dev, char *err, size_t errlen)
{
    if (!json_is_object(dev)) FAIL("device must be an object");
    static const char *known[] = {"holdMs",   "redeliveryMs",     "ttlSeconds",
                                  "maxQueue", "retentionSeconds", NULL};
    const char *k;
    json_t *v;
    json_object_foreach(dev, k, v)
    {
        int ok = 0;
        for (int i = 0; known[i]; i++)
            ok |= strcmp(k, known[i]) == 0;
        if (!ok)
            FAIL("device.%s is not a known key (holdMs, redeliveryMs, ttlSeconds, maxQueue, "
                 "retentionSeconds)",
                 k);
    }
#define DEV(key, field, lo, max)                                                                   \
    if ((v = json_object_get(dev, key))) {                                                         \
        if (!json_is_integer(v) || json_integer_value(v) < (lo) || json_integer_value(v) > (max))  \
            FAIL("device.%s must be an integer between %d and %d", key, lo, max);                  \
        d->field = (unsigned)json_integer_value(v);                                                \
    }
    DEV("holdMs", hold_ms, 0, 600000);
    DEV("redeliveryMs", redelivery_ms, 10, 86400000);
    DEV("ttlSeconds", ttl_seconds, 0, 315360000);
    DEV("maxQueue", max_queue, 1, 10000000);
    DEV("retentionSeconds", retention_seconds, 0, 315360000);
#undef DEV
    return 0;
}

static int apply_tls(config_t *cfg, json_t *tls, char *err, size_t errlen)
{
    if (!json_is_object(tls)) FAIL("tls must be an object");
    const char *k;
    json_t *v;
    json_object_foreach(tls, k, v)
    {
        if (strcmp(k, "cert") != 0 && strcmp(k, "key") != 0 && strcmp(k, "minVersion") != 0)
            FAIL("tls.%s is not a known key (cert, key, minVersion)", k);
    }
    json_t *cert = json_object_get(tls, "cert");
    json_t *key = json_object_get(tls, "key");
    json_t *minv = json_object_get(tls, "minVersion");
    if (!json_is_string(cert) || json_string_length(cert) == 0)
        FAIL("tls.cert must be the path of a PEM certificate file");
    if (!json_is_string(key) || json_string_length(key) == 0)
        FAIL("tls.key must be the path of a PEM private key file");
    int ver = 12;
    if (minv) {
        const char *mv = json_string_value(minv);
        if (mv && strcmp(mv, "1.2") == 0)
            ver = 12;
        else if (mv && strcmp(mv, "1.3") == 0)
            ver = 13;
        else
            FAIL("tls.minVersion must be \"1.2\" or \"1.3\"");
    }
    int r;
    if ((r = set_str(&cfg->tls_cert, json_string_value(cert))) < 0 ||
        (r = set_str(&cfg->tls_key, json_string_value(key))) < 0)
        return r;
    cfg->tls_min_version = ver;
    return 0;
}

/* "websocket": {"compression": bool, "clientMaxWindowBits": 8..15} */
static int apply_websocket(config_t *cfg, json_t *ws, char *err, size_t errlen)
{
    if (!json_is_object(ws)) FAIL("websocket must be an object");
    const char *k;
    json_t *v;
    json_object_foreach(ws, k, v)
    {
        if (strcmp(k, "compression") != 0 && strcmp(k, "clientMaxWindowBits") != 0)
            FAIL("websocket.%s is not a known key", k);
    }
    json_t *c = json_object_get(ws, "compression");
    if (c && !json_is_boolean(c)) FAIL("websocket.compression must be true or false");
    if (c) cfg->ws_compression = json_is_true(c);
    unsigned long long x;
    int r = get_uint(ws, "clientMaxWindowBits", "websocket.", 15, &x, err, errlen);
    if (r < 0) return r;
    if (r && x < 8) FAIL("websocket.clientMaxWindowBits must be between 8 and 15");
    if (r) cfg->ws_client_window_bits = (unsigned)x;
    return 0;
}

/* "idempotency": {"ttlSeconds", "maxKeys"} (docs/api.md "Idempotency-Key"). */
static int apply_idempotency(config_t *cfg, json_t *o, char *err, size_t errlen)
{
    if (!json_is_object(o)) FAIL("idempotency must be an object");
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        if (strcmp(k, "ttlSeconds") != 0 && strcmp(k, "maxKeys") != 0)
            FAIL("idempotency.%s is not a known key (ttlSeconds, maxKeys)", k);
    }
    unsigned long long x;
    int r;
    if ((r = get_uint(o, "ttlSeconds", "idempotency.", 30 * 86400, &x, err, errlen)) < 0) return r;
    if (r) {
        if (x < 1) FAIL("idempotency.ttlSeconds must be between 1 and %d", 30 * 86400);
        cfg->idem_ttl_seconds = (unsigned)x;
    }
    if ((r = get_uint(o, "maxKeys", "idempotency.", 100000000, &x, err, errlen)) < 0) return r;
    if (r) {
        if (x < 1) FAIL("idempotency.maxKeys must be between 1 and 100000000");
        cfg->idem_max_keys = (unsigned)x;
    }
    return 0;
}

static void free_origins(config_t *cfg)
{
    for (size_t i = 0; i < cfg->n_allowed_origins; i++)
        free(cfg->allowed_origins[i]);
    free(cfg->allowed_origins);
    cfg->allowed_origins = NULL;
    cfg->n_allowed_origins = 0;
}

/* allowedOrigins: exact origins or a "*." subdomain wildcard; an empty list allows any. */
static int apply_origins(config_t *cfg, json_t *arr, char *err, size_t errlen)
{
    if (!json_is_array(arr)) FAIL("allowedOrigins must be an array of origins");
    size_t n = json_array_size(arr), i;
    char **list = calloc(n ? n : 1, sizeof(*list));
    if (!list) return -ENOMEM;
    json_t *v;
    int rc = 0;
    json_array_foreach(arr, i, v)
    {
        const char *o = json_string_value(v);
        if (!o || origin_pattern_valid(o) < 0) {
            snprintf(err, errlen,
                     "allowedOrigins[%zu] must be \"*\", \"null\" or "
                     "\"scheme://host[:port]\" (host may start with *.)",
                     i);
            rc = -EINVAL;
        } else if (!(list[i] = strdup(o))) {
            rc = -ENOMEM;
        }
        if (rc < 0) break;
    }
    if (rc < 0) {
        for (size_t j = 0; j < n; j++)
            free(list[j]);
        free(list);
        return rc;
    }
    free_origins(cfg);
    cfg->allowed_origins = list;
    cfg->n_allowed_origins = n;
    return 0;
}

int config_apply_json(config_t *cfg, json_t *doc, char *err, size_t errlen)
{
    if (!json_is_object(doc)) FAIL("the config must be a JSON object");
    static const char *known[] = {
        "listen", "workers",   "applicationId", "nodeId",         "dataDir",
        "redis",  "apiKeys",   "jwt",           "sessions",       "streams",
        "limits", "logLevel",  "diagnostics",   "channels",       "history",
        "sse",    "socketio",  "device",        "allowedOrigins", "shutdownGraceMs",
        "tls",    "websocket", "http2",         "idempotency",    "console",
        "bus",    NULL};
    const char *k;
    json_t *v;
    json_object_foreach(doc, k, v)
    {
        int ok = 0;
        for (int i = 0; known[i]; i++)
            ok |= strcmp(k, known[i]) == 0;
        if (!ok) FAIL("%s is not a known config key", k);
    }
    int r;
    json_t *listen = json_object_get(doc, "listen");
    if (listen) {
        r = json_is_string(listen) ? config_set_listen(cfg, json_string_value(listen)) : -EINVAL;
        if (r == -ENOMEM) return r;
        if (r < 0) FAIL("listen must be a string \"HOST:PORT\"");
    }
    unsigned long long w;
    if ((r = get_uint(doc, "workers", "", 1024, &w, err, errlen)) < 0) return r;
    if (r) {
        if (w < 1) FAIL("workers must be between 1 and 1024");
        cfg->workers = (int)w;
    }
    if ((r = apply_string(doc, "applicationId", &cfg->application_id, err, errlen)) < 0 ||
        (r = apply_string(doc, "nodeId", &cfg->node_id, err, errlen)) < 0 ||
        (r = apply_string(doc, "dataDir", &cfg->data_dir, err, errlen)) < 0 ||
        (r = apply_redis(cfg, doc, err, errlen)) < 0 ||
        (r = apply_string(doc, "logLevel", &cfg->log_level, err, errlen)) < 0)
        return r;
    if ((r = apply_bus(cfg, json_object_get(doc, "bus"), err, errlen)) < 0) return r;
    json_t *diag = json_object_get(doc, "diagnostics");
    if (diag) {
        if (!json_is_boolean(diag)) FAIL("diagnostics must be a boolean");
        cfg->diagnostics = json_is_true(diag);
    }
    json_t *console = json_object_get(doc, "console");
    if (console) {
        if (!json_is_object(console)) FAIL("console must be an object");
        const char *ck;
        json_t *cv;
        json_object_foreach(console, ck, cv)
        {
            if (strcmp(ck, "enabled") != 0 && strcmp(ck, "filesDir") != 0)
                FAIL("console.%s is not a known key", ck);
        }
        json_t *en = json_object_get(console, "enabled");
        if (en && !json_is_boolean(en)) FAIL("console.enabled must be a boolean");
        cfg->console_enabled = json_is_true(en);
        if ((r = apply_string(console, "filesDir", &cfg->console_files_dir, err, errlen)) < 0)
            return r;
    }
    json_t *keys = json_object_get(doc, "apiKeys");
    if (keys && (r = apply_apikeys(cfg, keys, err, errlen)) < 0) return r;
    json_t *jwt = json_object_get(doc, "jwt");
    if (jwt) {
        json_t *sec = json_object_get(jwt, "secret");
        if (!json_is_object(jwt) || !json_is_string(sec) || json_string_length(sec) == 0)
            FAIL("jwt.secret must be a non-empty string");
        if ((r = set_str(&cfg->jwt_secret, json_string_value(sec))) < 0) return r;
    }
    json_t *sessions = json_object_get(doc, "sessions");
    if (sessions) {
        if (!json_is_array(sessions)) FAIL("sessions must be an array");
        json_decref(cfg->sessions);
        cfg->sessions = json_incref(sessions);
    }
    json_t *streams = json_object_get(doc, "streams");
    if (streams) {
        if (!json_is_object(streams)) FAIL("streams must be an object of tenants");
        json_decref(cfg->streams);
        cfg->streams = json_incref(streams);
    }
    json_t *channels = json_object_get(doc, "channels");
    if (channels) {
        json_decref(cfg->channels);
        cfg->channels = json_incref(channels);
    }
    json_t *hist = json_object_get(doc, "history");
    if (hist) {
        if (!json_is_object(hist)) FAIL("history must be an object");
        const char *hk;
        json_t *hv;
        json_object_foreach(hist, hk, hv)
        {
            if (strcmp(hk, "maxEvents") != 0 && strcmp(hk, "maxAgeSeconds") != 0)
                FAIL("history.%s is not a known key", hk);
        }
        unsigned long long x;
        if ((r = get_uint(hist, "maxEvents", "history.", 10000000, &x, err, errlen)) < 0) return r;
        if (r) cfg->history_max_events = (unsigned)x;
        if ((r = get_uint(hist, "maxAgeSeconds", "history.", 86400 * 365, &x, err, errlen)) < 0)
            return r;
        if (r) cfg->history_max_age_s = (unsigned)x;
    }
    json_t *sse = json_object_get(doc, "sse");
    if (sse) {
        if (!json_is_object(sse)) FAIL("sse must be an object");
        const char *sk;
        json_t *sv;
        json_object_foreach(sse, sk, sv)
        {
            if (strcmp(sk, "heartbeatMs") != 0 && strcmp(sk, "retryMs") != 0)
                FAIL("sse.%s is not a known key", sk);
        }
        unsigned long long x;
        if ((r = get_uint(sse, "heartbeatMs", "sse.", 3600000, &x, err, errlen)) < 0) return r;
        if (r) {
            if (x < 100) FAIL("sse.heartbeatMs must be at least 100");
            cfg->sse_heartbeat_ms = (unsigned)x;
        }
        if ((r = get_uint(sse, "retryMs", "sse.", 3600000, &x, err, errlen)) < 0) return r;
        if (r) cfg->sse_retry_ms = (unsigned)x;
    }
    json_t *sio = json_object_get(doc, "socketio");
    if (sio) {
        if (!json_is_object(sio)) FAIL("socketio must be an object");
        static const char *sk[] = {"pingIntervalMs", "pingTimeoutMs", "connectTimeoutMs",
                                   "maxPayload", NULL};
        const char *k2;
        json_t *v2;
        json_object_foreach(sio, k2, v2)
        {
            int ok = 0;
            for (int i = 0; sk[i]; i++)
                ok |= strcmp(k2, sk[i]) == 0;
            if (!ok) FAIL("socketio.%s is not a known key", k2);
        }
        unsigned long long x;
        if ((r = get_uint(sio, "pingIntervalMs", "socketio.", 3600000, &x, err, errlen)) < 0)
            return r;
        if (r) cfg->sio_ping_interval_ms = (unsigned)(x < 10 ? 10 : x);
        if ((r = get_uint(sio, "pingTimeoutMs", "socketio.", 3600000, &x, err, errlen)) < 0)
            return r;
        if (r) cfg->sio_ping_timeout_ms = (unsigned)(x < 10 ? 10 : x);
        if ((r = get_uint(sio, "connectTimeoutMs", "socketio.", 3600000, &x, err, errlen)) < 0)
            return r;
        if (r) cfg->sio_connect_timeout_ms = (unsigned)(x < 10 ? 10 : x);
        if ((r = get_uint(sio, "maxPayload", "socketio.", 1ull << 30, &x, err, errlen)) < 0)
            return r;
        if (r) cfg->sio_max_payload = (size_t)(x < 1024 ? 1024 : x);
    }
    json_t *lim = json_object_get(doc, "limits");
    if (lim && (r = apply_limits(&cfg->limits, lim, err, errlen)) < 0) return r;
    json_t *dev = json_object_get(doc, "device");
    if (dev && (r = apply_device(&cfg->device, dev, err, errlen)) < 0) return r;
    json_t *tls = json_object_get(doc, "tls");
    if (tls && (r = apply_tls(cfg, tls, err, errlen)) < 0) return r;
    json_t *wsc = json_object_get(doc, "websocket");
    if (wsc && (r = apply_websocket(cfg, wsc, err, errlen)) < 0) return r;
    json_t *h2 = json_object_get(doc, "http2");
    if (h2 && (r = apply_http2(&cfg->http2, h2, err, errlen)) < 0) return r;
    json_t *idem = json_object_get(doc, "idempotency");
    if (idem && (r = apply_idempotency(cfg, idem, err, errlen)) < 0) return r;
    json_t *origins = json_object_get(doc, "allowedOrigins");
    if (origins && (r = apply_origins(cfg, origins, err, errlen)) < 0) return r;
    unsigned long long g;
    if ((r = get_uint(doc, "shutdownGraceMs", "", 600000, &g, err, errlen)) < 0) return r;
    if (r) cfg->shutdown_grace_ms = (unsigned)g;
    return 0;
}

int config_load_file(config_t *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        int e = errno;
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(e));
        return -e;
    }
    json_error_t je;
    json_t *doc = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
    fclose(f);
    if (!doc) FAIL("%s:%d:%d: %s", path, je.line, je.column, je.text);
    int r = config_apply_json(cfg, doc, err, errlen);
    json_decref(doc);
    return r;
}

const config_apikey_t *config_find_apikey(const config_t *cfg, const char *key)
{
    size_t kl = strlen(key);
    const config_apikey_t *found = NULL;
    for (size_t i = 0; i < cfg->n_api_keys; i++) {
        const char *c = cfg->api_keys[i].key;
        size_t cl = strlen(c);
        unsigned char diff = (unsigned char)(cl != kl);
        for (size_t j = 0; j < cl; j++)
            diff |= (unsigned char)(c[j] ^ (j < kl ? key[j] : 0));
        if (!diff) found = &cfg->api_keys[i];
    }
    return found;
}

void config_free(config_t *cfg)
{
    free(cfg->listen_host);
    free(cfg->application_id);
    free(cfg->node_id);
    free(cfg->data_dir);
    free(cfg->console_files_dir);
    free(cfg->redis_url);
    json_decref(cfg->redis_cluster);
    free(cfg->nats_url);
    free(cfg->jwt_secret);
    free(cfg->log_level);
    free(cfg->tls_cert);
    free(cfg->tls_key);
    for (size_t i = 0; i < cfg->n_api_keys; i++) {
        free(cfg->api_keys[i].key);
        free(cfg->api_keys[i].tenant);
    }
    free(cfg->api_keys);
    json_decref(cfg->sessions);
    json_decref(cfg->streams);
    json_decref(cfg->channels);
    free_body_paths(&cfg->limits);
    free_origins(cfg);
    memset(cfg, 0, sizeof(*cfg));
}
