/* Domain-event streams (seed 002): the stream configuration API, event ingestion, and
 * SSE subscription to a stream. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "http/url.h"
#include "streams/event.h"
#include "streams/stream.h"
#include "transport/sse.h"

/* The tenant a publisher or operator acts for: its key's tenant, or `tenantId` when
 * the key is not bound to one. Answers 400/403 itself and returns NULL on failure. */
static char *acting_tenant(http_ctx_t *ctx, const config_apikey_t *key)
{
    char *q = NULL;
    ssize_t r = url_query_get(ctx->req->query, "tenantId", &q);
    if (r == -EINVAL) {
        http_respond_error(ctx, 400, "tenantId has a bad percent-escape");
        return NULL;
    }
    if (key->tenant) {
        if (q && strcmp(q, key->tenant) != 0) {
            free(q);
            http_respond_error(ctx, 403, "Access Forbidden");
            return NULL;
        }
        free(q);
        char *t = strdup(key->tenant);
        if (!t) http_respond_error(ctx, 500, "out of memory");
        return t;
    }
    if (!q || !*q) {
        free(q);
        http_respond_error(ctx, 400, "tenantId is required");
        return NULL;
    }
    return q;
}

/* What a tenant-scoped write starts with: a key of scope, the tenant it acts for, and a
 * JSON object body. Answers the request itself on failure. Returns 0 with a new
 * tenant string and body reference, or -1. */
static int tenant_request(http_ctx_t *ctx, unsigned scope, char **tenant, json_t **body)
{
    const config_apikey_t *key = api_require_key(ctx, scope);
    if (!key || !(*tenant = acting_tenant(ctx, key))) return -1;
    if (!(*body = api_json_body(ctx))) {
        free(*tenant);
        return -1;
    }
    return 0;
}

void api_stream_config_get(http_ctx_t *ctx)
{
    const config_apikey_t *key = api_require_key(ctx, CONFIG_SCOPE_ADMIN);
    if (!key) return;
    char *tenant = acting_tenant(ctx, key);
    if (!tenant) return;
    json_t *set = streams_tenant(tenant);
    api_respond_doc(ctx, 200, set ? set : json_object());
    free(tenant);
}

void api_stream_config_patch(http_ctx_t *ctx)
{
    char *tenant;
    json_t *req;
    if (tenant_request(ctx, CONFIG_SCOPE_ADMIN, &tenant, &req) < 0) return;
    char err[512];
    int r = streams_apply(tenant, req, err, sizeof(err));
    if (r == 0) {
        json_t *set = streams_tenant(tenant);
        if (!set) set = json_object();
        api_respond_doc(ctx, 200, json_pack("{s:s, s:O}", "tenantId", tenant, "latest", set));
        json_decref(set);
    } else {
        http_respond_error(ctx, r == -EINVAL ? 422 : r == -ENOENT ? 404 : 500, err);
    }
    json_decref(req);
    free(tenant);
}

/* Publishes ev to one stream that wants it. Returns 0 or -ENOMEM. */
static int publish_to_stream(http_ctx_t *ctx, const char *tenant, const char *id, json_t *entry,
                             json_t *ev)
{
    json_t *projected = event_project(json_object_get(entry, "map"), ev);
    push_t *p = push_new();
    char *topic = topics_stream(tenant, id);
    char *event = malloc(json_string_length(json_object_get(ev, "namespace")) +
                         json_string_length(json_object_get(ev, "name")) + 2);
    int r = projected && p && topic && event ? 0 : -ENOMEM;
    if (r == 0) {
        sprintf(event, "%s:%s", json_string_value(json_object_get(ev, "namespace")),
                json_string_value(json_object_get(ev, "name")));
        p->kind = PUSH_KIND_STREAM;
        p->report_mode = PUSH_REPORT_NONE;
        p->event = event;
        event = NULL;
        p->tenant = strdup(tenant);
        p->payload = json_dumps(projected, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!p->tenant || !p->payload || push_set_topics(p, &topic, 1) < 0)
            r = -ENOMEM;
        else
            p->payload_len = strlen(p->payload);
    }
    uint64_t token;
    if (r == 0) r = hub_publish(ctx->w, p, NULL, NULL, &token);
    push_unref(p);
    free(topic);
    free(event);
    json_decref(projected);
    return r;
}

void api_events(http_ctx_t *ctx)
{
    char *tenant;
    json_t *ev;
    if (tenant_request(ctx, CONFIG_SCOPE_PUBLISH, &tenant, &ev) < 0) return;
    char err[256];
    if (event_validate(ev, err, sizeof(err)) < 0) {
        http_respond_error(ctx, 422, err);
        json_decref(ev);
        free(tenant);
        return;
    }
    json_object_del(ev, "tenantId");
    const char *ns = json_string_value(json_object_get(ev, "namespace"));
    const char *name = json_string_value(json_object_get(ev, "name"));
    json_t *set = streams_tenant(tenant);
    json_t *routed = json_array();
    int r = routed ? 0 : -ENOMEM;
    const char *id;
    json_t *stream;
    json_object_foreach(set, id, stream)
    {
        size_t i;
        json_t *entry;
        json_array_foreach(json_object_get(stream, "events"), i, entry)
        {
            if (r < 0 || strcmp(json_string_value(json_object_get(entry, "namespace")), ns) != 0 ||
                strcmp(json_string_value(json_object_get(entry, "name")), name) != 0 ||
                !event_criteria_hold(json_object_get(entry, "criteria"), ev))
                continue;
            r = publish_to_stream(ctx, tenant, id, entry, ev);
            json_array_append_new(routed, json_string(id));
            break; /* one delivery per stream, by its first matching entry */
        }
    }
    if (r < 0) {
        http_respond_error(ctx, 500, "out of memory");
    } else {
        api_respond_doc(ctx, 200, json_pack("{s:O}", "streams", routed));
    }
    json_decref(routed);
    json_decref(set);
    json_decref(ev);
    free(tenant);
}

int api_stream_authorize(http_ctx_t *ctx, const char *stream_id, auth_identity_t **idp,
                         char **tenantp, char *err, size_t errlen)
{
    *idp = NULL;
    *tenantp = NULL;
    auth_identity_t *id = NULL;
    int cr = api_client_identity(ctx, &id);
    if (cr == -ENOMEM) {
        snprintf(err, errlen, "out of memory");
        return 500;
    }
    if (cr == -EACCES) {
        snprintf(err, errlen, "unknown or expired credentials");
        return 401;
    }
    /* a tenant never sees another's streams: an identity bound to a tenant is looked up
     * only there, whatever tenantId says */
    char *tenant = NULL;
    if (id && id->tenant)
        tenant = strdup(id->tenant);
    else if (url_query_get(ctx->req->query, "tenantId", &tenant) < 0)
        tenant = NULL;
    int r = streams_may_subscribe(tenant, stream_id, id);
    int status = r == 0         ? 0
                 : r == -ENOENT ? (!tenant && !id ? 401 : 404)
                 : r == -EACCES ? 401
                                : 403;
    if (status == 401)
        snprintf(err, errlen, "credentials are required for stream %s", stream_id);
    else if (status == 404)
        snprintf(err, errlen, "unknown stream %s", stream_id);
    else if (status == 403)
        snprintf(err, errlen, "not allowed to subscribe to stream %s", stream_id);
    if (status) {
        auth_identity_free(id);
        free(tenant);
        return status;
    }
    *idp = id;
    *tenantp = tenant;
    return 0;
}

void api_stream_sse(http_ctx_t *ctx)
{
    app_t *app = ctx->app;
    if (!api_origin_allowed(ctx)) {
        http_respond_error(ctx, 403, "origin not allowed");
        return;
    }
    if (api_refuse_if_draining(ctx)) return;
    const char *raw = ctx->req->path + strlen("/stream/v1/streams/");
    char sid[160];
    if (url_decode(raw, strlen(raw), sid, sizeof(sid) - 1) <= 0 || strchr(sid, '/')) {
        http_respond_error(ctx, 404, "unknown stream");
        return;
    }
    auth_identity_t *id;
    char *tenant, err[256];
    int status = api_stream_authorize(ctx, sid, &id, &tenant, err, sizeof(err));
    if (status || !tenant) {
        http_respond_error(ctx, status ? status : 404, status ? err : "unknown stream");
        auth_identity_free(id);
        return;
    }
    char *last = NULL;
    const char *hdr = http_request_header(ctx->req, "Last-Event-ID");
    if (hdr && *hdr)
        last = strdup(hdr);
    else if (url_query_get(ctx->req->query, "lastEventId", &last) < 0)
        last = NULL;
    char *topic = topics_stream(tenant, sid);
    if (!topic) {
        http_respond_error(ctx, 500, "out of memory");
        auth_identity_free(id);
    } else {
        sse_options_t opt = {app->cfg->sse_heartbeat_ms, app->cfg->sse_retry_ms,
                             app->cfg->limits.max_output_bytes};
        sse_attach(ctx, &opt, id, "sse", tenant, &topic, 1, last, hub_history(app->hub));
    }
    free(topic);
    free(last);
    free(tenant);
}
