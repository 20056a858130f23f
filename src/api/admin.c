/* GET /api/connections and GET /api/nodes (admin): who is connected where. Listing
 * asks every worker for its own subscribers and merges the answers. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "hub/selector.h"
#include "http/url.h"

typedef struct listing_s {
    http_ctx_t *ctx;
    worker_t *origin;
    int remaining;
    int aborted;
    char *pat[3];
    const char *node_id; /* the config's, for each entry's "node" */
    json_t *all;
} listing_t;

typedef struct listing_msg_s {
    worker_msg_t base;
    listing_t *l;
    json_t *part;
} listing_msg_t;

static void listing_free(listing_t *l)
{
    for (int i = 0; i < 3; i++)
        free(l->pat[i]);
    json_decref(l->all);
    free(l);
}

static void on_part(worker_t *w, worker_msg_t *m)
{
    (void)w;
    listing_msg_t *lm = (listing_msg_t *)m;
    listing_t *l = lm->l;
    json_array_extend(l->all, lm->part);
    json_decref(lm->part);
    free(lm);
    if (--l->remaining > 0) return;
    if (!l->aborted) {
        l->ctx->on_abort = NULL;
        json_t *doc = json_pack("{s:O}", "connections", l->all);
        api_respond_doc(l->ctx, 200, doc);
    }
    listing_free(l);
}

static void add_sub(subscriber_t *s, void *arg)
{
    listing_msg_t *lm = arg;
    listing_t *l = lm->l;
    if (!selector_match(l->pat[0], s->client_id) || !selector_match(l->pat[2], s->session_id) ||
        !selector_match_any(l->pat[1], s->roles, s->n_roles))
        return;
    json_t *roles = json_array();
    for (size_t i = 0; i < s->n_roles; i++)
        json_array_append_new(roles, json_string(s->roles[i]));
    json_array_append_new(lm->part,
                          json_pack("{s:s, s:s, s:s, s:o, s:s?, s:s, s:s, s:i, s:I}", "clientId",
                                    s->client_id, "sessionId", s->session_id, "user", s->user,
                                    "roles", roles, "tenant", s->tenant, "transport", s->transport,
                                    "node", l->node_id, "worker", worker_current()->index,
                                    "connectedAt", (json_int_t)s->connected_at_ms));
}

static void on_list(worker_t *w, worker_msg_t *m)
{
    listing_msg_t *lm = (listing_msg_t *)m;
    lm->part = json_array();
    lm->base.next = NULL;
    if (lm->part)
        hub_foreach(w, add_sub, lm);
    else
        lm->part = json_array();
    lm->base.fn = on_part;
    worker_post(lm->l->origin, &lm->base);
}

static void on_listing_abort(http_ctx_t *ctx)
{
    ((listing_t *)ctx->abort_arg)->aborted = 1;
}

void api_connections(http_ctx_t *ctx)
{
    static const char *names[3] = {"clientIdPattern", "rolePattern", "sessionIdPattern"};
    app_t *app = ctx->app;
    if (!api_require_key(ctx, CONFIG_SCOPE_ADMIN)) return;
    listing_t *l = calloc(1, sizeof(*l));
    listing_msg_t **msgs = calloc((size_t)app->pool->n, sizeof(*msgs));
    if (!l || !msgs || !(l->all = json_array())) {
        free(msgs);
        if (l) listing_free(l);
        http_respond_error(ctx, 500, "out of memory");
        return;
    }
    for (int i = 0; i < 3; i++) {
        char err[256], msg[320];
        ssize_t r = url_query_get(ctx->req->query, names[i], &l->pat[i]);
        if (r == -ENOENT) continue;
        if (r < 0 || selector_validate(l->pat[i], err, sizeof(err)) < 0) {
            snprintf(msg, sizeof(msg), "%s: %s", names[i], r < 0 ? "bad percent-escape" : err);
            http_respond_error(ctx, 422, msg);
            free(msgs);
            listing_free(l);
            return;
        }
    }
    for (int i = 0; i < app->pool->n; i++) {
        if (!(msgs[i] = calloc(1, sizeof(**msgs)))) {
            for (int j = 0; j < i; j++)
                free(msgs[j]);
            free(msgs);
            listing_free(l);
            http_respond_error(ctx, 500, "out of memory");
            return;
        }
    }
    l->ctx = ctx;
    l->node_id = app->cfg->node_id;
    l->origin = ctx->w;
    l->remaining = app->pool->n;
    http_defer(ctx);
    ctx->on_abort = on_listing_abort;
    ctx->abort_arg = l;
    for (int i = 0; i < app->pool->n; i++) {
        msgs[i]->base.fn = on_list;
        msgs[i]->l = l;
        worker_post(app->pool->workers[i], &msgs[i]->base);
    }
    free(msgs);
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
