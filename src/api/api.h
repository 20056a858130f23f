/* HTTP handlers: they translate requests into hub and auth calls and answers into
 * JSON. The route table is api_routes. */
#ifndef PG_API_H
#define PG_API_H

#include <jansson.h>
#include <stddef.h>

#include "core/config.h"
#include "core/worker.h"
#include "http/server.h"
#include "auth/auth.h"
#include "hub/hub.h"
#include "store/db.h"
#include "transport/ws.h"

typedef struct app_s {
    const config_t *cfg;
    hub_t *hub;
    store_t store;
    worker_pool_t *pool;
    int draining; /* atomic */
    ws_options_t ws;
    struct devices_s *devices;       /* the device command queue (store/devices.h) */
    struct device_reg_s *device_reg; /* held device requests (transport/device.h) */
    /* set (by the node, when clustered): the device queue lives in Redis
     * (store/devices_redis.h) rather than in the node's SQLite */
    const struct devices_redis_cfg_s *devices_redis;
    struct idem_s *idem; /* Idempotency-Keys of pushes (store/idem.h) */
} app_t;

extern const http_route_t api_routes[];
extern const size_t api_n_routes;

/* Checks `Authorization: Bearer <key>` for scope (CONFIG_SCOPE_*). On failure answers
 * 403 {"error":"Access Forbidden"}. Returns the key, or NULL (already answered). */
const config_apikey_t *api_require_key(http_ctx_t *ctx, unsigned scope);

/* ---- Idempotency-Key (api/idempotency.c, docs/api.md) ---- */

typedef struct api_idem_s api_idem_t;

/* The request's Idempotency-Key, if any, scoped to the API key k and endpoint (a short
 * name): *scope gets a new string and fp (IDEM_FP_LEN + 1 bytes) the fingerprint of
 * extra (may be NULL) and the body. Returns 1 (a key), 0 (none), -1 (a bad key:
 * answered 400, or 500). */
int api_idem_key(http_ctx_t *ctx, const config_apikey_t *k, const char *endpoint, const char *extra,
                 char **scope, char *fp);

/* For a push: looks the request's key up in app->idem. Returns 0 with *out NULL (no
 * key) or the reserved key (act, then api_idem_finish or api_idem_forget it); 1 when
 * the request is already answered: the first attempt's answer again, 409 (that attempt
 * is still in progress), 422 (the key was used with another request), 400, 503. */
int api_idem_begin(http_ctx_t *ctx, const config_apikey_t *k, const char *endpoint,
                   api_idem_t **out);

/* Stores the answer the reserved key's attempt gave (the strings are copied) and frees
 * ik. NULL is a no-op. */
void api_idem_finish(api_idem_t *ik, int status, const char *content_type, const char *headers,
                     const char *body, size_t len);

/* Releases the key of an attempt that did nothing, and frees ik. NULL is a no-op. */
void api_idem_forget(api_idem_t *ik);
/* Checks the request's Origin header against allowedOrigins (browser transports). A
 * refusal is counted in pushgate_refused_total{reason="origin"}; the caller answers it
 * (403) in its protocol's terms. Returns 1 when allowed, 0 when not. */
int api_origin_allowed(http_ctx_t *ctx);

/* A node draining for shutdown takes no new subscriber (a request on a connection kept
 * alive from before the signal): answers 503 {"error"} and returns 1, else returns 0. */
int api_refuse_if_draining(http_ctx_t *ctx);

/* Parses the request body as a JSON object. On failure answers 415/422. Returns a new
 * reference, or NULL (already answered). */
json_t *api_json_body(http_ctx_t *ctx);

/* Answers status with doc serialized compactly, and drops the reference to doc (NULL,
 * a failed json_pack, answers 500 "out of memory"). */
void api_respond_doc(http_ctx_t *ctx, int status, json_t *doc);

/* A subscriber's credentials (auth/auth.h) from `Authorization: Bearer` or `?token=`.
 * Returns 1 with a new identity in *out, 0 when none was given, -EACCES when the
 * credential is unknown, expired or invalid, -ENOMEM. */
int api_client_identity(http_ctx_t *ctx, auth_identity_t **out);

/* Decides whether the caller may subscribe to stream_id (seed 002): public streams,
 * a role in subscriberRoles, or the stream-listener role; the tenant is the
 * identity's, or `tenantId` for anonymous access. Returns 0 with the identity (may be
 * NULL) and the tenant (new strings) in *idp / *tenantp, or the HTTP status to refuse
 * with (401, 403, 404, 500) and a message in err. */
int api_stream_authorize(http_ctx_t *ctx, const char *stream_id, auth_identity_t **idp,
                         char **tenantp, char *err, size_t errlen);

/* Sets up the socket.io and Engine.IO endpoints from the config. Returns 0 or
 * -ENOMEM. */
int api_socketio_init(app_t *app);

/* The handlers, one per endpoint. */
void api_socketio(http_ctx_t *ctx);
void api_engineio(http_ctx_t *ctx);
void api_stream_config_get(http_ctx_t *ctx);
void api_stream_config_patch(http_ctx_t *ctx);
void api_events(http_ctx_t *ctx);
void api_stream_sse(http_ctx_t *ctx);
void api_push(http_ctx_t *ctx);
void api_sse(http_ctx_t *ctx);
void api_healthz(http_ctx_t *ctx);
void api_readyz(http_ctx_t *ctx);
void api_metrics(http_ctx_t *ctx);
void api_websocket(http_ctx_t *ctx);
void api_echo(http_ctx_t *ctx);
void api_push_requests(http_ctx_t *ctx);
void api_sessions_create(http_ctx_t *ctx);
void api_sessions_delete(http_ctx_t *ctx);
void api_connections(http_ctx_t *ctx);
void api_nodes(http_ctx_t *ctx);
void api_stats_stream(http_ctx_t *ctx);
void api_console(http_ctx_t *ctx);
/* Answers GET /console/files/{name} from the console's filesDir (404 when unset). */
void api_console_file(http_ctx_t *ctx, const char *name);
void api_device_poll(http_ctx_t *ctx);
void api_device_result(http_ctx_t *ctx);
void api_devices_list(http_ctx_t *ctx);
void api_devices_route(http_ctx_t *ctx); /* /api/devices/{deviceId}/… */

/* The device queue's life (api/devices.c): init opens the queue (in Redis when
 * app->devices_redis is set, else its SQLite database in the data dir) and returns 0
 * or a negative errno with a message in err; attach and detach run from the worker
 * pool's on_start / on_stop hooks (attach returns 0 or -ENOMEM); free runs after the
 * workers are joined. */
int api_devices_init(app_t *app, char *err, size_t errlen);
int api_devices_attach(app_t *app, worker_t *w);
void api_devices_detach(app_t *app, worker_t *w);
void api_devices_free(app_t *app);

/* A wake-up message from the devices channel (store/devices_rcodec.h), on any thread:
 * wakes the requests held on this node for what it names, unless this node sent it.
 * arg is the app. */
void api_devices_remote_wake(void *arg, const char *body, size_t len);

#endif
