/* socket.io (issue 5, seed 002): what each namespace admits and what its events do.
 * "/" is the main namespace (channels and push requests); "/<tenantId>" subscribes to
 * one of that tenant's streams. In diagnostics mode /socket.io/ instead serves the
 * behaviour the socket.io-protocol test suite expects, and /engine.io/ echoes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "auth/channels.h"
#include "core/metrics.h"
#include "http/url.h"
#include "streams/stream.h"
#include "transport/socketio.h"

static sio_server_t sio_prod, sio_diag;
static eio_server_t eio_echo;

/* ---- credentials: auth.token, then `Authorization: Bearer`, then ?token= ---- */

static int credential(json_t *auth, const char *authorization, const char *query, char **out)
{
    const char *t = json_string_value(json_object_get(auth, "token"));
    if (t) {
        *out = strdup(t);
        return *out ? 1 : -ENOMEM;
    }
    if (authorization && strncasecmp(authorization, "Bearer ", 7) == 0) {
        const char *v = authorization + 7;
        while (*v == ' ')
            v++;
        *out = strdup(v);
        return *out ? 1 : -ENOMEM;
    }
    ssize_t r = url_query_get(query, "token", out);
    return r > 0 ? 1 : 0;
}

/* a string from auth, else from the handshake query (new string, or NULL) */
static char *param(json_t *auth, const char *query, const char *name)
{
    const char *v = json_string_value(json_object_get(auth, name));
    if (v) return strdup(v);
    char *q = NULL;
    return url_query_get(query, name, &q) > 0 ? q : (free(q), NULL);
}

static int prod_connect(sio_socket_t *sock, const char *nsp, json_t *auth,
                        const char *authorization, const char *query, sio_connect_t *res, void *arg)
{
    (void)sock;
    (void)arg;
    char *cred = NULL;
    int c = credential(auth, authorization, query, &cred);
    if (c < 0) {
        snprintf(res->error, sizeof(res->error), "out of memory");
        return -ENOMEM;
    }
    if (c > 0 && auth_resolve(cred, &res->id) < 0) {
        free(cred);
        snprintf(res->error, sizeof(res->error), "unknown or expired credentials");
        return -EACCES;
    }
    free(cred);
    res->client_id = param(auth, query, "clientId");
    if (strcmp(nsp, "/") == 0) return 0;
    /* a tenant namespace: one stream of that tenant, under the same rules as SSE */
    const char *tenant = nsp + 1;
    char *stream = param(auth, query, "stream");
    if (!stream) {
        snprintf(res->error, sizeof(res->error), "stream is required (?stream= or auth.stream)");
        return -EINVAL;
    }
    int r = streams_may_subscribe(tenant, stream, res->id);
    if (r == -ENOENT)
        snprintf(res->error, sizeof(res->error), "unknown stream %s", stream);
    else if (r == -EACCES)
        snprintf(res->error, sizeof(res->error), "credentials are required for stream %s", stream);
    else if (r < 0)
        snprintf(res->error, sizeof(res->error), "not allowed to subscribe to stream %s", stream);
    if (r == 0) {
        res->topics = calloc(1, sizeof(*res->topics));
        if (res->topics && (res->topics[0] = topics_stream(tenant, stream))) res->n_topics = 1;
        res->tenant = strdup(tenant);
        res->replay = 1;
    }
    free(stream);
    return r;
}

static void ack_json(sio_socket_t *sock, long ack_id, json_t *v)
{
    if (ack_id < 0) return;
    json_t *arr = json_pack("[O]", v);
    char *s = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    if (s) sio_ack(sock, ack_id, s, strlen(s), NULL, 0);
    free(s);
    json_decref(arr);
}

/* emit('subscribe', [channels], ack) / 'unsubscribe' in the main namespace */
static void prod_event(sio_socket_t *sock, json_t *args, buf_t *const *att, unsigned n, long ack_id,
                       void *arg)
{
    (void)att;
    (void)n;
    app_t *app = arg;
    const char *name = json_string_value(json_array_get(args, 0));
    int sub = strcmp(name, "subscribe") == 0;
    if (strcmp(sio_socket_nsp(sock), "/") != 0 || (!sub && strcmp(name, "unsubscribe") != 0)) {
        json_t *e = json_pack("{s:s}", "error", "unknown event");
        ack_json(sock, ack_id, e);
        json_decref(e);
        return;
    }
    json_t *chans = json_array_get(args, 1);
    if (json_is_string(chans)) {
        chans = json_pack("[O]", chans);
    } else {
        json_incref(chans);
    }
    char err[CHANNEL_NAME_MAX + 80] = "";
    size_t i;
    json_t *c;
    if (!json_is_array(chans) || json_array_size(chans) == 0 || json_array_size(chans) > 100)
        snprintf(err, sizeof(err), "channels must be an array of 1 to 100 names");
    json_array_foreach(chans, i, c)
    {
        const char *ch = json_string_value(c);
        if (err[0]) break;
        if (!ch || channel_name_valid(ch) < 0)
            snprintf(err, sizeof(err), "channels[%zu] is not a valid channel name", i);
        else if (sub &&
                 channel_may_subscribe(app->cfg->channels, ch, sio_socket_identity(sock)) < 0)
            snprintf(err, sizeof(err), "not allowed to subscribe to %s", ch);
    }
    unsigned max = app->cfg->limits.max_subscriptions;
    if (!err[0] && sub && max) {
        /* add, count, and take back what this event added when it passes the limit */
        size_t added[100], n_added = 0;
        json_array_foreach(chans, i, c)
        {
            char *topic = topics_channel(json_string_value(c));
            if (topic && sio_topic_add(sock, topic) == 0) added[n_added++] = i;
            free(topic);
        }
        if (sio_topic_count(sock) > max) {
            for (size_t k = 0; k < n_added; k++) {
                char *topic = topics_channel(json_string_value(json_array_get(chans, added[k])));
                if (topic) sio_topic_remove(sock, topic);
                free(topic);
            }
            METRICS_REFUSED(REFUSED_SUBSCRIPTIONS);
            snprintf(err, sizeof(err), "more than %u subscriptions on one connection", max);
        }
    }
    json_t *reply;
    if (err[0]) {
        reply = json_pack("{s:s}", "error", err);
    } else {
        json_array_foreach(chans, i, c)
        {
            char *topic = topics_channel(json_string_value(c));
            if (topic && sub)
                sio_topic_add(sock, topic);
            else if (topic)
                sio_topic_remove(sock, topic);
            free(topic);
        }
        reply = json_pack("{s:O}", "channels", chans);
    }
    ack_json(sock, ack_id, reply);
    json_decref(reply);
    json_decref(chans);
}

static sio_app_t prod_app = {prod_connect, NULL, prod_event, NULL};

/* ---- diagnostics: the socket.io-protocol test suite's reference behaviour ---- */

static int diag_connect(sio_socket_t *sock, const char *nsp, json_t *auth,
                        const char *authorization, const char *query, sio_connect_t *res, void *arg)
{
    (void)sock, (void)auth, (void)authorization, (void)query, (void)arg;
    if (strcmp(nsp, "/") == 0 || strcmp(nsp, "/custom") == 0) return 0;
    snprintf(res->error, sizeof(res->error), "Invalid namespace");
    return -EINVAL;
}

static void diag_connected(sio_socket_t *sock, json_t *auth, void *arg)
{
    (void)arg;
    json_t *args = json_pack("[s,O]", "auth", auth ? auth : json_object());
    char *s = args ? json_dumps(args, JSON_COMPACT) : NULL;
    if (s) sio_emit(sock, s, strlen(s), NULL, 0, -1);
    free(s);
    json_decref(args);
}

static void diag_event(sio_socket_t *sock, json_t *args, buf_t *const *att, unsigned n, long ack_id,
                       void *arg)
{
    (void)arg;
    const char *name = json_string_value(json_array_get(args, 0));
    if (strcmp(name, "message") == 0) {
        json_t *back = json_deep_copy(args);
        json_array_set_new(back, 0, json_string("message-back"));
        char *s = json_dumps(back, JSON_COMPACT);
        if (s) sio_emit(sock, s, strlen(s), att, n, -1);
        free(s);
        json_decref(back);
    } else if (strcmp(name, "message-with-ack") == 0 && ack_id >= 0) {
        json_t *rest = json_deep_copy(args);
        json_array_remove(rest, 0);
        char *s = json_dumps(rest, JSON_COMPACT);
        if (s) sio_ack(sock, ack_id, s, strlen(s), att, n);
        free(s);
        json_decref(rest);
    }
}

static sio_app_t diag_app = {diag_connect, diag_connected, diag_event, NULL};

/* ---- diagnostics: Engine.IO alone, echoing every message ---- */

static void echo_message(eio_session_t *s, const char *data, size_t len, int binary)
{
    buf_t *b = buf_new(len);
    if (!b) return;
    buf_append(&b, data, len);
    eio_send(s, b, 0, len, binary);
    buf_unref(b);
}

static void echo_close(eio_session_t *s, const char *reason)
{
    (void)s;
    (void)reason;
}

static const eio_handler_t echo_handler = {echo_message, echo_close};

static int echo_session(eio_session_t *s, const http_request_t *req, void *arg)
{
    (void)req;
    (void)arg;
    eio_session_set_handler(s, &echo_handler, NULL);
    return 0;
}

int api_socketio_init(app_t *app)
{
    const config_t *cfg = app->cfg;
    eio_options_t opt = {
        .ping_interval_ms = cfg->sio_ping_interval_ms,
        .ping_timeout_ms = cfg->sio_ping_timeout_ms,
        .max_payload = cfg->sio_max_payload,
        .max_output_bytes = cfg->limits.max_output_bytes,
        .ws = app->ws,
    };
    opt.ws.max_message_bytes = cfg->sio_max_payload;
    if (eio_init() < 0) return -ENOMEM;
    prod_app.arg = app;
    sio_server_init(&sio_prod, &opt, &prod_app, cfg->sio_connect_timeout_ms, hub_history(app->hub));
    sio_server_init(&sio_diag, &opt, &diag_app, cfg->sio_connect_timeout_ms, NULL);
    sio_prod.max_messages_per_s = cfg->limits.max_messages_per_s;
    sio_prod.message_burst = cfg->limits.message_burst;
    eio_echo.opt = opt;
    eio_echo.on_session = echo_session;
    eio_echo.arg = NULL;
    return 0;
}

/* A browser page from an origin not allowed: Engine.IO's own refusal (code 4). */
static int origin_refused(http_ctx_t *ctx)
{
    if (api_origin_allowed(ctx)) return 0;
    static const char body[] = "{\"code\":4,\"message\":\"Forbidden\"}";
    http_respond(ctx, 403, "application/json", body, sizeof(body) - 1, NULL);
    return 1;
}

void api_socketio(http_ctx_t *ctx)
{
    app_t *app = ctx->app;
    if (origin_refused(ctx)) return;
    eio_http(ctx, app->cfg->diagnostics ? &sio_diag.eio : &sio_prod.eio);
}

void api_engineio(http_ctx_t *ctx)
{
    app_t *app = ctx->app;
    if (!app->cfg->diagnostics) {
        http_respond_error(ctx, 404, "not found");
        return;
    }
    if (origin_refused(ctx)) return;
    eio_http(ctx, &eio_echo);
}
