/* POST /api/sessions and DELETE /api/sessions/{id} (admin). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "auth/auth.h"
#include "http/url.h"

void api_sessions_create(http_ctx_t *ctx)
{
    if (!api_require_key(ctx, CONFIG_SCOPE_ADMIN)) return;
    json_t *doc = api_json_body(ctx);
    if (!doc) return;
    json_t *user = json_object_get(doc, "user");
    json_t *roles = json_object_get(doc, "roles");
    json_t *groups = json_object_get(doc, "groups");
    json_t *tenant = json_object_get(doc, "tenant");
    json_t *ttl = json_object_get(doc, "ttlSeconds");
    const char *bad = NULL;
    if (!json_is_string(user) || json_string_length(user) == 0)
        bad = "user is required and must be a non-empty string";
    else if (tenant && !json_is_null(tenant) && !json_is_string(tenant))
        bad = "tenant must be a string";
    else if (ttl && (!json_is_integer(ttl) || json_integer_value(ttl) < 1))
        bad = "ttlSeconds must be a positive integer";
    char id[AUTH_SESSION_ID_MAX];
    int64_t exp = 0;
    int r =
        bad ? -EINVAL
            : auth_session_create(json_string_value(user), roles, groups, json_string_value(tenant),
                                  ttl ? json_integer_value(ttl) : 0, id, &exp);
    if (r == -EINVAL && !bad) bad = "roles and groups must be arrays of strings";
    if (bad)
        http_respond_error(ctx, 422, bad);
    else if (r < 0)
        http_respond_error(ctx, 500, "out of memory");
    else {
        char body[256];
        int n = exp ? snprintf(body, sizeof(body), "{\"sessionId\":\"%s\",\"expiresAt\":%lld}", id,
                               (long long)exp)
                    : snprintf(body, sizeof(body), "{\"sessionId\":\"%s\",\"expiresAt\":null}", id);
        http_respond(ctx, 201, "application/json", body, (size_t)n, NULL);
    }
    json_decref(doc);
}

void api_sessions_delete(http_ctx_t *ctx)
{
    if (!api_require_key(ctx, CONFIG_SCOPE_ADMIN)) return;
    const char *raw = ctx->req->path + strlen("/api/sessions/");
    char id[AUTH_SESSION_ID_MAX];
    if (url_decode(raw, strlen(raw), id, sizeof(id) - 1) <= 0 || strchr(id, '/')) {
        http_respond_error(ctx, 404, "unknown session");
        return;
    }
    if (auth_session_revoke(id) < 0)
        http_respond_error(ctx, 404, "unknown session");
    else
        http_respond(ctx, 204, NULL, NULL, 0, NULL);
}
