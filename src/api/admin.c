/* GET /api/connections and GET /api/nodes (admin): who is connected where. Listing
 * asks every worker of every node (hub_list, over the bus) for the subscribers a push
 * with the given patterns would reach, and answers the merged rows. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "hub/selector.h"
#include "http/url.h"

#define LIST_LIMIT_DEFAULT 1000
#define LIST_WAIT_MS 2000 /* how long the origin waits for the other nodes' rows */

/* A listing waiting for the nodes' rows; ctx is NULL once the client is gone. */
typedef struct listing_s {
    http_ctx_t *ctx;
} listing_t;

static void on_listed(void *arg, client_query_t *q, buf_t *body)
{
    (void)q;
    listing_t *l = arg;
    if (l->ctx) {
        l->ctx->on_abort = NULL;
        if (body)
            http_respond_json(l->ctx, 200, body);
        else if (q)
            http_respond_error(l->ctx, 500, "out of memory");
        body = NULL;
    }
    buf_unref(body);
    free(l);
}

static void on_listing_abort(http_ctx_t *ctx)
{
    ((listing_t *)ctx->abort_arg)->ctx = NULL; /* the answer, when it comes, is dropped */
}

/* Reads the optional query parameter name as an integer from 1 to max into *out.
 * Returns 0 (absent: *out unchanged) or -EINVAL. */
static int query_uint(http_ctx_t *ctx, const char *name, unsigned long max, uint32_t *out)
{
    char *v = NULL, *end = NULL;
    ssize_t r = url_query_get(ctx->req->query, name, &v);
    if (r == -ENOENT) return 0;
    unsigned long n = r < 0 || !v || !*v ? 0 : strtoul(v, &end, 10);
    int ok = r >= 0 && v && *v && end && !*end && n >= 1 && n <= max;
    free(v);
    if (!ok) return -EINVAL;
    *out = (uint32_t)n;
    return 0;
}

void api_connections(http_ctx_t *ctx)
{
    static const char *names[4] = {"clientIdPattern", "rolePattern", "sessionIdPattern", "tenant"};
    if (!api_require_key(ctx, CONFIG_SCOPE_ADMIN)) return;
    client_query_t *q = client_query_new();
    listing_t *l = calloc(1, sizeof(*l));
    if (!q || !l) {
        client_query_unref(q);
        free(l);
        http_respond_error(ctx, 500, "out of memory");
        return;
    }
    char **dst[4] = {&q->client_pat, &q->role_pat, &q->session_pat, &q->tenant};
    char msg[320];
    for (int i = 0; i < 4; i++) {
        char err[256];
        ssize_t r = url_query_get(ctx->req->query, names[i], dst[i]);
        if (r == -ENOENT) continue;
        if (r < 0 || (i < 3 && selector_validate(*dst[i], err, sizeof(err)) < 0)) {
            snprintf(msg, sizeof(msg), "%s: %s", names[i], r < 0 ? "bad percent-escape" : err);
            goto bad;
        }
    }
    q->limit = LIST_LIMIT_DEFAULT;
    if (query_uint(ctx, "limit", CLIENTS_LIMIT_MAX, &q->limit) < 0) {
        snprintf(msg, sizeof(msg), "limit: must be an integer from 1 to %d", CLIENTS_LIMIT_MAX);
        goto bad;
    }
    l->ctx = ctx;
    http_defer(ctx);
    if (hub_list(ctx->w, q, LIST_WAIT_MS, on_listed, l) < 0) {
        free(l);
        http_respond_error(ctx, 503, "the listing could not be sent");
    } else {
        ctx->on_abort = on_listing_abort;
        ctx->abort_arg = l;
    }
    client_query_unref(q);
    return;
bad:
    http_respond_error(ctx, 422, msg);
    client_query_unref(q);
    free(l);
}

void api_nodes(http_ctx_t *ctx)
{
    app_t *app = ctx->app;
    if (!api_require_key(ctx, CONFIG_SCOPE_ADMIN)) return;
    /* clustered: the members the bus knows, this node first */
    bus_t *bus = hub_bus(app->hub);
    json_t *members = bus && bus->ops->nodes ? bus->ops->nodes(bus) : NULL;
    json_t *doc =
        members ? json_pack("{s:o}", "nodes", members)
                : json_pack("{s:[{s:s, s:s, s:i, s:I}]}", "nodes", "applicationId",
                            app->cfg->application_id, "nodeId", app->cfg->node_id, "workers",
                            app->pool->n, "connections",
                            (json_int_t)__atomic_load_n(&app->pool->connections, __ATOMIC_RELAXED));
    api_respond_doc(ctx, 200, doc);
}
