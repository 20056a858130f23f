/* Channels (seed 003): POST /api/push publishes {channel, data, event} and answers with
 * the sanitized push actually delivered; GET /sse?channel=… subscribes over SSE. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "auth/channels.h"
#include "core/metrics.h"
#include "http/url.h"
#include "transport/sse.h"

#define PUSH_MAX_CHANNELS 100

typedef struct channel_push_s {
    http_ctx_t *ctx; /* NULL once the client is gone (with an Idempotency-Key) */
    uint64_t token;
    char *body;       /* the sanitized push, answered as is */
    api_idem_t *idem; /* the request's Idempotency-Key, or NULL */
} channel_push_t;

static void on_abort(http_ctx_t *ctx)
{
    channel_push_t *cp = ctx->abort_arg;
    if (cp->idem) {
        /* the push went out: its answer is still stored for the client's retry */
        cp->ctx = NULL;
        return;
    }
    hub_cancel(ctx->w, cp->token);
    free(cp->body);
    free(cp);
}

/* Answers 200 with the sanitized push (and stores the answer for the Idempotency-Key);
 * reached < 0: the count is not known (the publisher did not wait for delivery). */
static void answer(channel_push_t *cp, const push_t *p, long long reached)
{
    char headers[160];
    if (reached >= 0)
        snprintf(headers, sizeof(headers), "X-Push-Id: %s\r\nX-Push-Subscribers: %lld\r\n", p->id,
                 reached);
    else
        snprintf(headers, sizeof(headers), "X-Push-Id: %s\r\n", p->id);
    static const char ctype[] = "application/json; charset=utf-8";
    api_idem_finish(cp->idem, 200, ctype, headers, cp->body, strlen(cp->body));
    if (cp->ctx) {
        cp->ctx->on_abort = NULL;
        http_respond(cp->ctx, 200, ctype, cp->body, strlen(cp->body), headers);
    }
    free(cp->body);
    free(cp);
}

static void on_report(void *arg, push_t *p, buf_t *report)
{
    channel_push_t *cp = arg;
    http_ctx_t *ctx = cp->ctx;
    if (!p) {
        /* the worker stops first: no answer to give or keep */
        if (ctx) ctx->on_abort = NULL;
        api_idem_forget(cp->idem);
        free(cp->body);
        free(cp);
        return;
    }
    long long reached = 0;
    json_t *doc = report ? json_loadb(report->data, report->len, 0, NULL) : NULL;
    json_t *delivered = json_object_get(json_object_get(doc, "summary"), "delivered");
    if (json_is_integer(delivered)) reached = json_integer_value(delivered);
    json_decref(doc);
    buf_unref(report);
    answer(cp, p, reached);
}

/* Checks and sanitizes the body; returns the push's channels, de-duplicated in order. */
static int parse_push(json_t *doc, json_t **channels, char *err, size_t errlen)
{
    json_t *ch = json_object_get(doc, "channel");
    json_t *event = json_object_get(doc, "event");
    json_t *out = json_array();
    if (!out) return -ENOMEM;
    if (json_is_string(ch)) {
        json_t *one = json_array();
        json_array_append(one, ch);
        ch = one;
    } else if (json_is_array(ch)) {
        json_incref(ch);
    } else {
        json_decref(out);
        snprintf(err, errlen, "channel is required: a channel name or an array of them");
        return -EINVAL;
    }
    int r = 0;
    size_t i;
    json_t *c;
    if (json_array_size(ch) == 0) {
        snprintf(err, errlen, "channel must name at least one channel");
        r = -EINVAL;
    }
    json_array_foreach(ch, i, c)
    {
        if (r) break;
        const char *name = json_string_value(c);
        if (!name || channel_name_valid(name) < 0) {
            snprintf(err, errlen,
                     "channel[%zu] must be a channel name: 1 to %d of A-Z a-z 0-9 _ . : @ / = + -",
                     i, CHANNEL_NAME_MAX);
            r = -EINVAL;
            break;
        }
        int dup = 0;
        size_t j;
        json_t *o;
        json_array_foreach(out, j, o)
        {
            dup |= strcmp(json_string_value(o), name) == 0;
        }
        if (!dup) json_array_append(out, c);
    }
    if (r == 0 && json_array_size(out) > PUSH_MAX_CHANNELS) {
        snprintf(err, errlen, "channel names more than %d channels", PUSH_MAX_CHANNELS);
        r = -EINVAL;
    }
    if (r == 0 && !json_object_get(doc, "data")) {
        snprintf(err, errlen, "data is required");
        r = -EINVAL;
    }
    if (r == 0 && (!json_is_string(event) || json_string_length(event) == 0)) {
        snprintf(err, errlen, "event is required and must be a non-empty string");
        r = -EINVAL;
    }
    json_decref(ch);
    if (r) {
        json_decref(out);
        return r;
    }
    *channels = out;
    return 0;
}

void api_push(http_ctx_t *ctx)
{
    const config_apikey_t *key = api_require_key(ctx, CONFIG_SCOPE_PUBLISH);
    if (!key) return;
    /* on a single node the publisher is answered once the push is handed to every
     * worker, unless it asks to wait for delivery and the count of subscribers reached
     * (hub_may_answer_early says when it must wait anyway) */
    const char *wait = http_request_header(ctx->req, "X-Push-Wait");
    if (wait && strcasecmp(wait, "delivered") != 0) {
        http_respond_error(ctx, 400, "X-Push-Wait must be delivered");
        return;
    }
    json_t *doc = api_json_body(ctx);
    if (!doc) return;
    json_t *channels = NULL;
    char err[256];
    int r = parse_push(doc, &channels, err, sizeof(err));
    if (r < 0) {
        http_respond_error(ctx, r == -ENOMEM ? 500 : 422, r == -ENOMEM ? "out of memory" : err);
        json_decref(doc);
        return;
    }
    /* a valid request: a repeat of one already made is answered here */
    api_idem_t *idem = NULL;
    if (api_idem_begin(ctx, key, "push", &idem)) {
        json_decref(channels);
        json_decref(doc);
        return;
    }
    /* the answer is what was delivered, in the seed's key order */
    json_t *sanitized = json_object();
    json_object_set(sanitized, "channel", channels);
    json_object_set(sanitized, "data", json_object_get(doc, "data"));
    json_object_set(sanitized, "event", json_object_get(doc, "event"));
    channel_push_t *cp = calloc(1, sizeof(*cp));
    push_t *p = push_new();
    size_t n = json_array_size(channels);
    char **topics = calloc(n, sizeof(*topics));
    r = cp && p && topics ? 0 : -ENOMEM;
    for (size_t i = 0; r == 0 && i < n; i++) {
        if (!(topics[i] = topics_channel(json_string_value(json_array_get(channels, i)))))
            r = -ENOMEM;
    }
    if (r == 0) {
        p->kind = PUSH_KIND_CHANNEL;
        int early = !wait && hub_may_answer_early(((app_t *)ctx->app)->hub);
        p->report_mode = early ? PUSH_REPORT_NONE : PUSH_REPORT_SUMMARY;
        p->event = strdup(json_string_value(json_object_get(doc, "event")));
        p->payload = json_dumps(json_object_get(doc, "data"), JSON_COMPACT | JSON_ENCODE_ANY);
        cp->body = json_dumps(sanitized, JSON_COMPACT);
        if (!p->event || !p->payload || !cp->body || push_set_topics(p, topics, n) < 0)
            r = -ENOMEM;
        else
            p->payload_len = strlen(p->payload);
    }
    for (size_t i = 0; topics && i < n; i++)
        free(topics[i]);
    free(topics);
    json_decref(sanitized);
    json_decref(channels);
    json_decref(doc);
    if (r < 0) {
        if (cp) free(cp->body);
        free(cp);
        push_unref(p);
        api_idem_forget(idem);
        http_respond_error(ctx, 500, "out of memory");
        return;
    }
    cp->ctx = ctx;
    cp->idem = idem;
    uint64_t token = 0;
    http_defer(ctx);
    if (hub_publish(ctx->w, p, on_report, cp, &token) < 0) {
        free(cp->body);
        free(cp);
        api_idem_forget(idem);
        http_respond_error(ctx, 503, "the push could not be published");
    } else if (p->report_mode == PUSH_REPORT_NONE) {
        answer(cp, p, -1);
    } else {
        cp->token = token;
        ctx->on_abort = on_abort;
        ctx->abort_arg = cp;
    }
    push_unref(p);
}

void api_sse(http_ctx_t *ctx)
{
    app_t *app = ctx->app;
    if (!api_origin_allowed(ctx)) {
        http_respond_error(ctx, 403, "origin not allowed");
        return;
    }
    if (api_refuse_if_draining(ctx)) return;
    auth_identity_t *id = NULL;
    int cr = api_client_identity(ctx, &id);
    if (cr == -EACCES) {
        http_respond_error(ctx, 401, "unknown or expired credentials");
        return;
    }
    if (cr < 0) {
        http_respond_error(ctx, 500, "out of memory");
        return;
    }
    char **topics = NULL, *last = NULL, *client = NULL;
    size_t n = 0;
    int status = 0;
    char err[CHANNEL_NAME_MAX + 80];
    const char *cur = ctx->req->query;
    char *name, *value;
    int r;
    while (status == 0 && (r = url_query_next(&cur, &name, &value)) != 0) {
        if (r < 0) {
            status = r == -ENOMEM ? 500 : 400;
            snprintf(err, sizeof(err), "the query string has a bad percent-escape");
            break;
        }
        if (strcmp(name, "channel") == 0) {
            int ok = channel_name_valid(value);
            int may = ok == 0 ? channel_may_subscribe(app->cfg->channels, value, id) : 0;
            if (ok < 0) {
                status = 422;
                snprintf(err, sizeof(err), "channel %zu is not a valid channel name", n);
            } else if (may == -EACCES) {
                status = 401;
                snprintf(err, sizeof(err), "credentials are needed for channel %s", value);
            } else if (may < 0) {
                status = 403;
                snprintf(err, sizeof(err), "not allowed to subscribe to channel %s", value);
            } else if (n >= app->cfg->limits.max_subscriptions) {
                METRICS_REFUSED(REFUSED_SUBSCRIPTIONS);
                status = 400;
                snprintf(err, sizeof(err), "more than %u channels on one connection",
                         app->cfg->limits.max_subscriptions);
            } else {
                char **t = realloc(topics, (n + 1) * sizeof(*t));
                if (t && (t[n] = topics_channel(value))) {
                    topics = t;
                    n++;
                } else {
                    if (t) topics = t;
                    status = 500;
                    snprintf(err, sizeof(err), "out of memory");
                }
            }
        } else if (strcmp(name, "lastEventId") == 0 && !last) {
            last = strdup(value);
        } else if (strcmp(name, "clientId") == 0 && !client) {
            client = strdup(value);
        }
        free(name);
        free(value);
    }
    const char *hdr = http_request_header(ctx->req, "Last-Event-ID");
    if (hdr && *hdr) {
        free(last);
        last = strdup(hdr);
    }
    if (status) {
        http_respond_error(ctx, status, err);
    } else if (n == 0) {
        /* nothing to stream: 204 tells an EventSource to stop reconnecting */
        http_respond(ctx, 204, NULL, NULL, 0, NULL);
    } else {
        sse_options_t opt = {app->cfg->sse_heartbeat_ms, app->cfg->sse_retry_ms,
                             app->cfg->limits.max_output_bytes};
        sse_attach(ctx, &opt, id, client ? client : "sse", NULL, topics, n, last,
                   hub_history(app->hub));
        id = NULL;
    }
    auth_identity_free(id);
    for (size_t i = 0; i < n; i++)
        free(topics[i]);
    free(topics);
    free(last);
    free(client);
}
