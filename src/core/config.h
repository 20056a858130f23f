/* Node configuration: defaults, the JSON config file (DESIGN §7), then flags on top.
 * A loaded config is read-only and shared by every worker. */
#ifndef PG_CONFIG_H
#define PG_CONFIG_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

enum config_scope { CONFIG_SCOPE_PUBLISH = 1, CONFIG_SCOPE_ADMIN = 2 };

typedef struct config_apikey_s {
    char *key;
    unsigned scopes; /* CONFIG_SCOPE_* bits; admin implies publish */
    char *tenant;    /* NULL: any tenant */
} config_apikey_t;

/* A body limit for one request path (limits.maxBodyBytesByPath). */
typedef struct config_path_limit_s {
    char *path;
    size_t max_body_bytes;
} config_path_limit_t;

typedef struct config_limits_s {
    size_t max_output_bytes;  /* per-connection pending output before slow-consumer close */
    size_t max_message_bytes; /* largest WebSocket message accepted */
    size_t max_body_bytes;    /* largest HTTP request body */
    size_t max_header_bytes;  /* request line + headers */
    unsigned max_headers;
    config_path_limit_t *body_paths; /* per-path overrides of max_body_bytes */
    size_t n_body_paths;
    unsigned handshake_timeout_ms; /* a connection's first request must be whole by then */
    unsigned read_timeout_ms;      /* an HTTP request must arrive whole within this */
    unsigned idle_timeout_ms;      /* a keep-alive connection idle this long is closed */
    unsigned ws_ping_interval_ms;
    unsigned ws_pong_timeout_ms;
    unsigned shutdown_timeout_ms;
    unsigned max_connections;        /* per node; 0 = unlimited */
    unsigned max_connections_per_ip; /* per client address; 0 = unlimited */
    unsigned max_messages_per_s;     /* inbound messages per connection; 0 = unlimited */
    unsigned message_burst;          /* messages a connection may send at once */
    unsigned max_subscriptions;      /* topics per connection (WebSocket, SSE, socket.io) */
    unsigned push_backlog;           /* channel pushes queued per worker before publishers wait */
    /* fan-out writes held back while pushes come back to back (0: never) */
    unsigned push_coalesce_ms;
} config_limits_t;

/* The device command queue (seed 004; docs/devices.md). */
typedef struct config_device_s {
    unsigned hold_ms; /* long poll: GET /push waits this long for a command; 0: answer at once */
    unsigned redelivery_ms; /* a sent command without result is sent again after this */
    unsigned ttl_seconds;   /* default command TTL; 0: never expires */
    unsigned max_queue;     /* most unfinished commands per device */
    unsigned
        retention_seconds; /* finished commands and orphan results kept this long; 0: forever */
} config_device_t;

/* HTTP/2 (docs/api.md): h2c by prior knowledge, and ALPN h2 below TLS. */
typedef struct config_http2_s {
    int enabled;                     /* answer the HTTP/2 preface */
    unsigned max_concurrent_streams; /* SETTINGS_MAX_CONCURRENT_STREAMS per connection */
} config_http2_t;

typedef struct config_s {
    char *listen_host;
    int listen_port;
    int workers;
    char *application_id;
    char *node_id;
    char *data_dir;
    char *redis_url;
    json_t *redis_cluster; /* "redis": {"cluster": [...]}: the seeds "host:port" (or NULL) */
    char *nats_url;        /* "bus": {"nats": …}: the cluster's messages go over NATS */
    config_apikey_t *api_keys;
    size_t n_api_keys;
    char *jwt_secret;
    json_t *sessions; /* array, as in the file; auth reads it */
    json_t *streams;  /* object, as in the file */
    json_t *channels; /* object: subscribe rules (auth/channels.h) */
    unsigned history_max_events;
    unsigned history_max_age_s;
    unsigned sse_heartbeat_ms;
    unsigned sio_ping_interval_ms;
    unsigned sio_ping_timeout_ms;
    unsigned sio_connect_timeout_ms;
    size_t sio_max_payload;
    unsigned sse_retry_ms;
    config_limits_t limits;
    config_device_t device;
    config_http2_t http2;
    unsigned idem_ttl_seconds; /* how long an Idempotency-Key's answer is kept */
    unsigned idem_max_keys;    /* keys kept in memory on a single node (pushes) */
    char **allowed_origins;    /* Origin allow list of browser transports; none: any */
    size_t n_allowed_origins;
    unsigned shutdown_grace_ms; /* SIGTERM waits this long for pending reports */
    int diagnostics;
    int console_enabled;     /* "console": {"enabled": true} serves GET /console */
    char *console_files_dir; /* "console": {"filesDir"}: /console/files/ (tests) */
    char *log_level;
    /* TLS on the listener (docs/configuration.md): both set, or neither */
    char *tls_cert;
    char *tls_key;
    int tls_min_version;            /* 12 or 13 */
    int ws_compression;             /* websocket.compression: permessage-deflate offered back */
    unsigned ws_client_window_bits; /* websocket.clientMaxWindowBits (8..15, default 10) */
} config_t;

/* Fills cfg with the defaults of DESIGN §7. Returns 0 or -ENOMEM. */
int config_init(config_t *cfg);

/* Applies a parsed config document over cfg. On error writes a message naming the
 * offending key into err. Returns 0, or -EINVAL for a bad document, -ENOMEM. */
int config_apply_json(config_t *cfg, json_t *doc, char *err, size_t errlen);

/* Reads and applies the JSON file at path. Returns 0, -ENOENT/-EACCES (unreadable),
 * -EINVAL (bad JSON or bad key; err says which), -ENOMEM. */
int config_load_file(config_t *cfg, const char *path, char *err, size_t errlen);

/* Parses "HOST:PORT" (or ":PORT", or "[v6]:PORT") into cfg. Returns 0 or -EINVAL. */
int config_set_listen(config_t *cfg, const char *hostport);

/* Looks up an API key (constant-time per candidate). Returns the key or NULL. */
const config_apikey_t *config_find_apikey(const config_t *cfg, const char *key);

/* Frees everything cfg owns. */
void config_free(config_t *cfg);

#endif
