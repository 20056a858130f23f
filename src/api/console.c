/* GET /console: the operator console's page and its files, embedded in the binary
 * (api/console_assets.h), served only with "console": {"enabled": true}. */
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "api/console_assets.h"

/* Strict: everything from this origin, no inline script, no framing. */
#define CONSOLE_HEADERS                                                                            \
    "Cache-Control: no-cache\r\n"                                                                  \
    "X-Content-Type-Options: nosniff\r\n"                                                          \
    "X-Frame-Options: DENY\r\n"                                                                    \
    "Referrer-Policy: no-referrer\r\n"                                                             \
    "Content-Security-Policy: default-src 'self'; img-src 'self' data:; "                          \
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'\r\n"

static const console_asset_t *find_asset(const char *name)
{
    for (unsigned i = 0; i < console_n_assets; i++)
        if (strcmp(console_assets[i].name, name) == 0) return &console_assets[i];
    return NULL;
}

/* Whether an If-None-Match header names etag (a list, or "*"). */
static int etag_matches(const char *inm, const char *etag)
{
    if (!inm) return 0;
    if (strcmp(inm, "*") == 0) return 1;
    size_t n = strlen(etag);
    for (const char *p = strstr(inm, etag); p; p = strstr(p + 1, etag)) {
        char after = p[n];
        if (after == '\0' || after == ',' || after == ' ') return 1;
    }
    return 0;
}

void api_console(http_ctx_t *ctx)
{
    app_t *app = ctx->app;
    if (!app->cfg->console_enabled) {
        http_respond_error(ctx, 404, "not found");
        return;
    }
    const char *path = ctx->req->path;
    const char *name = strcmp(path, "/console") == 0 || strcmp(path, "/console/") == 0
                           ? "index.html"
                           : path + strlen("/console/");
    if (strncmp(name, "files/", 6) == 0) {
        api_console_file(ctx, name + 6);
        return;
    }
    const console_asset_t *a = find_asset(name);
    if (!a) {
        http_respond_error(ctx, 404, "not found");
        return;
    }
    char headers[512];
    snprintf(headers, sizeof(headers), "ETag: %s\r\n" CONSOLE_HEADERS, a->etag);
    if (etag_matches(http_request_header(ctx->req, "If-None-Match"), a->etag))
        http_respond(ctx, 304, a->content_type, NULL, 0, headers);
    else
        http_respond(ctx, 200, a->content_type, a->data, a->len, headers);
}
