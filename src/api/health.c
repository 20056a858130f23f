/* Liveness, readiness and Prometheus metrics. */
#include "api/api.h"
#include "core/metrics.h"

void api_healthz(http_ctx_t *ctx)
{
    http_respond(ctx, 200, "application/json", "{\"status\":\"ok\"}", 15, NULL);
}

void api_readyz(http_ctx_t *ctx)
{
    app_t *app = ctx->app;
    if (__atomic_load_n(&app->draining, __ATOMIC_RELAXED))
        http_respond(ctx, 503, "application/json", "{\"status\":\"draining\"}", 21, NULL);
    else if (__atomic_load_n(&app->pool->ready, __ATOMIC_ACQUIRE) < app->pool->n)
        http_respond(ctx, 503, "application/json", "{\"status\":\"starting\"}", 21, NULL);
    else if (!bus_healthy(hub_bus(app->hub)))
        http_respond(ctx, 503, "application/json", "{\"status\":\"bus down\"}", 21, NULL);
    else
        http_respond(ctx, 200, "application/json", "{\"status\":\"ready\"}", 18, NULL);
}

void api_metrics(http_ctx_t *ctx)
{
    buf_t *b = buf_new(2048);
    if (!b || metrics_render(&b) < 0) {
        buf_unref(b);
        http_respond_error(ctx, 500, "out of memory");
        return;
    }
    http_respond(ctx, 200, "text/plain; version=0.0.4", b->data, b->len, NULL);
    buf_unref(b);
}
