/* GET /websocket: the checks of DESIGN §7 (400/406/401) before any upgrade, then the
 * hand-over to the WebSocket push client. GET /echo in diagnostics mode. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/log.h"
#include "http/url.h"
#include "transport/ws_client.h"

static int accept_supported(const char *a)
{
    return strcmp(a, "gm/json") == 0 || strcmp(a, "application/json") == 0;
}

/* permessage-deflate when the config allows it and the client offers it acceptably:
 * fills *opt from the app's options with opt->pmd pointing at *pmd (or NULL).
 * Returns 0, or -EINVAL when Sec-WebSocket-Extensions does not parse (answered 400). */
static int negotiate(http_ctx_t *ctx, ws_options_t *opt, ws_pmd_t *pmd)
{
    app_t *app = ctx->app;
    *opt = app->ws;
    opt->pmd = NULL;
    if (!opt->compression) return 0;
    int r = ws_check_extensions(ctx->req, opt->client_window_bits, pmd);
    if (r < 0) {
        http_respond_error(ctx, 400, "Sec-WebSocket-Extensions does not parse");
        return r;
    }
    if (r == 1) opt->pmd = pmd;
    return 0;
}

void api_websocket(http_ctx_t *ctx)
{
    app_t *app = ctx->app;
    const char *key, *why;
    if (ws_check_upgrade(ctx->req, &key, &why) < 0) {
        http_respond_error(ctx, 400, why);
        return;
    }
    if (!api_origin_allowed(ctx)) {
        http_respond_error(ctx, 403, "origin not allowed");
        return;
    }
    if (api_refuse_if_draining(ctx)) return;
    ws_options_t opt;
    ws_pmd_t pmd;
    if (negotiate(ctx, &opt, &pmd) < 0) return;
    char *session = NULL, *client = NULL, *accept = NULL;
    ssize_t sl = url_query_get(ctx->req->query, "sessionId", &session);
    ssize_t cl = url_query_get(ctx->req->query, "clientId", &client);
    ssize_t al = url_query_get(ctx->req->query, "accept", &accept);
    auth_identity_t *id = NULL;
    if (sl == -EINVAL || cl == -EINVAL || al == -EINVAL)
        http_respond_error(ctx, 400, "the query string has a bad percent-escape");
    else if (sl <= 0)
        http_respond_error(ctx, 400, "sessionId is required");
    else if (cl <= 0)
        http_respond_error(ctx, 400, "clientId is required");
    else if (al >= 0 && !accept_supported(accept))
        http_respond_error(ctx, 406, "accept must be gm/json or application/json");
    else {
        int r = auth_resolve_shared(session, &id);
        if (r == -ETIME)
            http_respond_error(ctx, 401, "session expired");
        else if (r == -ENOMEM)
            http_respond_error(ctx, 500, "out of memory");
        else if (r < 0)
            http_respond_error(ctx, 401, "unknown session");
    }
    if (id) {
        const char *extra;
        size_t extra_len;
        conn_t *c = http_take_conn(ctx, &extra, &extra_len);
        if (ws_client_attach(c, key, &app->ws, opt.pmd, id, client, app->cfg->channels, extra,
                             extra_len) == 0)
            log_debug("websocket client connected", "client=%s", client);
    }
    free(session);
    free(client);
    free(accept);
}

void api_echo(http_ctx_t *ctx)
{
    app_t *app = ctx->app;
    if (!app->cfg->diagnostics) {
        http_respond_error(ctx, 404, "not found");
        return;
    }
    const char *key, *why;
    if (ws_check_upgrade(ctx->req, &key, &why) < 0) {
        http_respond_error(ctx, 400, why);
        return;
    }
    ws_options_t opt;
    ws_pmd_t pmd;
    if (negotiate(ctx, &opt, &pmd) < 0) return;
    const char *extra;
    size_t extra_len;
    conn_t *c = http_take_conn(ctx, &extra, &extra_len);
    /* the echo endpoint must pass conformance tests with big frames: no output bound */
    opt.max_output_bytes = 0;
    opt.max_message_bytes = 64u << 20;
    ws_echo_attach(c, key, &opt, extra, extra_len);
}
