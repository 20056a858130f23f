/* Shared handler steps: credentials, JSON bodies, and the route table. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "core/metrics.h"
#include "core/origin.h"

const http_route_t api_routes[] = {
    {"GET", "/healthz", 0, api_healthz},
    {"GET", "/readyz", 0, api_readyz},
    {"GET", "/metrics", 0, api_metrics},
    {"GET", "/websocket", 0, api_websocket},
    {"GET", "/echo", 0, api_echo},
    {"POST", "/api/push-requests", 0, api_push_requests},
    {"POST", "/api/push", 0, api_push},
    {"GET", "/sse", 0, api_sse},
    {NULL, "/socket.io/", 1, api_socketio},
    {NULL, "/engine.io/", 1, api_engineio},
    {"GET", "/configuration/v2/configuration/platform/push-service", 0, api_stream_config_get},
    {"PATCH", "/configuration/v2/configuration/platform/push-service", 0, api_stream_config_patch},
    {"POST", "/event/v1/events", 0, api_events},
    {"GET", "/stream/v1/streams/", 1, api_stream_sse},
    {"POST", "/api/sessions", 0, api_sessions_create},
    {"DELETE", "/api/sessions/", 1, api_sessions_delete},
    {"GET", "/api/connections", 0, api_connections},
    {"GET", "/api/nodes", 0, api_nodes},
    {"GET", "/api/admin/stats/stream", 0, api_stats_stream},
    {"GET", "/console", 0, api_console},
    {"GET", "/console/", 1, api_console},
    {"GET", "/push", 0, api_device_poll},
    {"POST", "/result", 0, api_device_result},
    {"GET", "/api/devices", 0, api_devices_list},
    {NULL, "/api/devices/", 1, api_devices_route},
};
const size_t api_n_routes = sizeof(api_routes) / sizeof(api_routes[0]);

const config_apikey_t *api_require_key(http_ctx_t *ctx, unsigned scope)
{
    app_t *app = ctx->app;
    const char *auth = http_request_header(ctx->req, "Authorization");
    const config_apikey_t *k = NULL;
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
        const char *key = auth + 7;
        while (*key == ' ')
            key++;
        k = config_find_apikey(app->cfg, key);
    }
    if (!k || (k->scopes & scope) != scope) {
        http_respond_error(ctx, 403, "Access Forbidden");
        return NULL;
    }
    return k;
}

int api_origin_allowed(http_ctx_t *ctx)
{
    app_t *app = ctx->app;
    const char *origin = http_request_header(ctx->req, "Origin");
    if (origin_allowed(app->cfg->allowed_origins, app->cfg->n_allowed_origins, origin)) return 1;
    METRICS_REFUSED(REFUSED_ORIGIN);
    return 0;
}

int api_refuse_if_draining(http_ctx_t *ctx)
{
    app_t *app = ctx->app;
    if (!__atomic_load_n(&app->draining, __ATOMIC_RELAXED)) return 0;
    http_respond_error(ctx, 503, "the node is shutting down");
    return 1;
}

json_t *api_json_body(http_ctx_t *ctx)
{
    /* the body is parsed as JSON whatever its Content-Type says: curl's -d default
     * (form-urlencoded) is the most common publisher mistake, and it costs nothing */
    json_error_t je;
    json_t *doc = json_loadb(ctx->req->body, ctx->req->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!doc) {
        char msg[256];
        snprintf(msg, sizeof(msg), "body is not valid JSON: %s", je.text);
        http_respond_error(ctx, 422, msg);
        return NULL;
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        http_respond_error(ctx, 422, "body must be a JSON object");
        return NULL;
    }
    return doc;
}

void api_respond_doc(http_ctx_t *ctx, int status, json_t *doc)
{
    char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    if (s)
        http_respond(ctx, status, "application/json", s, strlen(s), NULL);
    else
        http_respond_error(ctx, 500, "out of memory");
    free(s);
    json_decref(doc);
}
