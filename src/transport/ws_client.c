/* The push client over WebSocket: subscriber glue, push frame encoding, and the
 * client's own frames (push responses). */
#include "transport/ws_client.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "auth/channels.h"
#include "core/metrics.h"
#include "core/ratelimit.h"
#include "core/worker.h"
#include "hub/hub.h"

/* One allocation per push client: the subscriber, the WebSocket glue and its session,
 * and the client id (an idle connection costs this block and its conn_t). */
typedef struct ws_client_s {
    subscriber_t sub;
    ws_conn_t wc;
    ratelimit_t rate; /* inbound messages */
    char client_id[];
} ws_client_t;

/* The node's options (the same for every client, and outliving them all): kept once
 * here rather than in every idle connection. */
static const ws_options_t *client_opt_ptr; /* atomic: every worker's attach stores it */

static const ws_options_t *client_opt(void)
{
    return __atomic_load_n(&client_opt_ptr, __ATOMIC_ACQUIRE);
}

/* The node's channel rules, likewise (the config's, fixed for the process's life). */
static json_t *client_rules_ptr; /* atomic */

static json_t *client_rules(void)
{
    return __atomic_load_n(&client_rules_ptr, __ATOMIC_ACQUIRE);
}

buf_t *ws_client_encode(const push_t *p, int ti)
{
    const char *channel = push_channel(p, ti);
    buf_t *json = buf_new(96 + p->payload_len);
    if (!json) return NULL;
    int r = buf_puts(&json, "{\"type\":\"push\",\"id\":");
    r |= buf_put_json_string(&json, p->id);
    r |= buf_puts(&json, ",\"event\":");
    r |= p->event ? buf_put_json_string(&json, p->event) : buf_puts(&json, "null");
    r |= buf_puts(&json, ",\"channel\":");
    r |= channel ? buf_put_json_string(&json, channel) : buf_puts(&json, "null");
    r |= buf_puts(&json, ",\"payload\":");
    r |= buf_append(&json, p->payload ? p->payload : "null", p->payload ? p->payload_len : 4);
    r |= buf_puts(&json, "}");
    buf_t *frame = r ? NULL : ws_frame_text(json->data, json->len);
    buf_unref(json);
    return frame;
}

buf_t *ws_client_encode_deflate(const push_t *p, int ti)
{
    /* the plain frame's slot is filled first (the push is mutable only there) */
    buf_t *plain = push_frame((push_t *)p, PUSH_FORMAT_WS_JSON, ti, ws_client_encode);
    return plain ? ws_pmd_frame(plain, WS_PMD_MAX_BITS) : NULL;
}

static int client_deliver(subscriber_t *s, push_t *p, int ti)
{
    ws_client_t *cl = (ws_client_t *)s;
    buf_t *f = push_frame(p, PUSH_FORMAT_WS_JSON, ti, ws_client_encode);
    if (!f) return -ENOMEM;
    /* one compressed frame per push and topic, shared like the plain one. It was made
     * with a 32 KiB window, but a message of L bytes has no match reaching back more
     * than L: a client that asked for a smaller server window can still read it when
     * the message is no longer than that window; longer ones go to it plain */
    unsigned bits = ws_conn_deflate_bits(&cl->wc);
    if (bits && (bits == WS_PMD_MAX_BITS || f->len <= ((size_t)1 << bits))) {
        buf_t *z = push_frame(p, PUSH_FORMAT_WS_DEFLATE, ti, ws_client_encode_deflate);
        if (!z) return -ENOMEM;
        f = z;
    }
    int r = ws_conn_send_frame(&cl->wc, f);
    if (r == -ENOBUFS) {
        METRICS_ADD(slow_consumer_closes, 1);
        ws_conn_abort(&cl->wc, 1008, "slow consumer");
    }
    /* a client that is going away is no longer a recipient: later pushes skip it
     * (unsubscribing does not disturb the hub's walk, which already holds s->next) */
    if (r < 0) hub_unsubscribe(s);
    return r;
}

static const subscriber_ops_t client_ops = {client_deliver, "websocket"};

static void send_error(ws_client_t *cl, const char *msg)
{
    buf_t *b = buf_new(64);
    if (!b) return;
    if (buf_puts(&b, "{\"type\":\"error\",\"error\":") == 0 && buf_put_json_string(&b, msg) == 0 &&
        buf_puts(&b, "}") == 0)
        ws_conn_send_text(&cl->wc, b->data, b->len);
    buf_unref(b);
}

static void on_response(ws_client_t *cl, json_t *msg)
{
    json_t *id = json_object_get(msg, "id");
    json_t *ok = json_object_get(msg, "successful");
    json_t *text = json_object_get(msg, "message");
    if (!json_is_string(id)) {
        send_error(cl, "response: id must be a string");
        return;
    }
    if (ok && !json_is_boolean(ok)) {
        send_error(cl, "response: successful must be a boolean");
        return;
    }
    if (text && !json_is_string(text) && !json_is_null(text)) {
        send_error(cl, "response: message must be a string");
        return;
    }
    hub_ack(&cl->sub, json_string_value(id), ok ? json_is_true(ok) : 1,
            json_is_string(text) ? json_string_value(text) : "acknowledged");
}

/* Tells whether subscribing to chans (valid names) keeps the connection within
 * limits.maxSubscriptions: they are added, counted, and taken back when too many. The
 * adds that stay are answered below as new ones would be (re-adding is harmless).
 * Returns 1 (within; subscribed) or 0 (over; nothing changed). */
static int subscribe_within_limit(ws_client_t *cl, json_t *chans)
{
    unsigned max = client_opt()->max_subscriptions;
    if (!max) return 1;
    size_t n = json_array_size(chans), added[100], n_added = 0, i;
    int over = 0;
    for (i = 0; i < n && !over; i++) {
        char *topic = topics_channel(json_string_value(json_array_get(chans, i)));
        if (topic && hub_topic_add(&cl->sub, topic) == 0) added[n_added++] = i;
        free(topic);
        over = cl->sub.n_topics > max;
    }
    if (!over) return 1;
    for (i = 0; i < n_added; i++) {
        char *topic = topics_channel(json_string_value(json_array_get(chans, added[i])));
        if (topic) hub_topic_remove(&cl->sub, topic);
        free(topic);
    }
    return 0;
}

/* {"type":"subscribe"|"unsubscribe","channels":[…]} → {"type":"subscribed"|…}.
 * The whole request is checked first: one bad channel refuses it all. */
static void on_subscribe(ws_client_t *cl, json_t *msg, int subscribe)
{
    json_t *chans = json_object_get(msg, "channels");
    const char *verb = subscribe ? "subscribe" : "unsubscribe";
    char err[CHANNEL_NAME_MAX + 96];
    if (!json_is_array(chans) || json_array_size(chans) == 0 || json_array_size(chans) > 100) {
        snprintf(err, sizeof(err), "%s: channels must be an array of 1 to 100 names", verb);
        send_error(cl, err);
        return;
    }
    size_t i;
    json_t *c;
    json_array_foreach(chans, i, c)
    {
        const char *name = json_string_value(c);
        if (!name || channel_name_valid(name) < 0) {
            snprintf(err, sizeof(err), "%s: channels[%zu] is not a valid channel name", verb, i);
            send_error(cl, err);
            return;
        }
        if (subscribe && channel_may_subscribe(client_rules(), name, cl->sub.id) < 0) {
            snprintf(err, sizeof(err), "%s: not allowed to subscribe to %s", verb, name);
            send_error(cl, err);
            return;
        }
    }
    if (subscribe && !subscribe_within_limit(cl, chans)) {
        METRICS_REFUSED(REFUSED_SUBSCRIPTIONS);
        snprintf(err, sizeof(err), "subscribe: more than %u subscriptions on one connection",
                 client_opt()->max_subscriptions);
        send_error(cl, err);
        return;
    }
    buf_t *b = buf_new(64);
    int r = b ? buf_printf(&b, "{\"type\":\"%s\",\"channels\":[",
                           subscribe ? "subscribed" : "unsubscribed")
              : -ENOMEM;
    json_array_foreach(chans, i, c)
    {
        char *topic = topics_channel(json_string_value(c));
        int tr = !topic      ? -ENOMEM
                 : subscribe ? hub_topic_add(&cl->sub, topic)
                             : hub_topic_remove(&cl->sub, topic);
        free(topic);
        if (tr == -ENOMEM) r = -ENOMEM;
        if (b && r == 0) {
            r |= i ? buf_puts(&b, ",") : 0;
            r |= buf_put_json_string(&b, json_string_value(c));
        }
    }
    if (b && r == 0 && buf_puts(&b, "]}") == 0)
        ws_conn_send_text(&cl->wc, b->data, b->len);
    else
        send_error(cl, "out of memory");
    buf_unref(b);
}

static void client_on_message(ws_conn_t *wc, uint8_t opcode, const uint8_t *data, size_t len)
{
    ws_client_t *cl = wc->app;
    if (!ratelimit_take(&cl->rate, client_opt()->max_messages_per_s, client_opt()->message_burst,
                        uv_now(&wc->c->w->loop))) {
        METRICS_REFUSED(REFUSED_MESSAGE_RATE);
        ws_conn_close(wc, 1008, "message rate exceeded");
        return;
    }
    if (opcode != WSLAY_TEXT_FRAME) {
        send_error(cl, "binary messages are not accepted here");
        return;
    }
    json_error_t je;
    json_t *msg = json_loadb((const char *)data, len, 0, &je);
    const char *type = json_string_value(json_object_get(msg, "type"));
    if (!json_is_object(msg))
        send_error(cl, "a message must be a JSON object");
    else if (!type)
        send_error(cl, "type must be a string");
    else if (strcmp(type, "response") == 0)
        on_response(cl, msg);
    else if (strcmp(type, "subscribe") == 0)
        on_subscribe(cl, msg, 1);
    else if (strcmp(type, "unsubscribe") == 0)
        on_subscribe(cl, msg, 0);
    else
        send_error(cl, "unknown message type");
    json_decref(msg);
}

static void client_on_close(ws_conn_t *wc)
{
    ws_client_t *cl = wc->app;
    hub_unsubscribe(&cl->sub);
    auth_identity_free(cl->sub.id);
    free(cl); /* wc with it */
}

static const ws_handler_t client_handler = {client_on_message, client_on_close};

int ws_client_attach(conn_t *c, const char *client_key, const ws_options_t *opt,
                     const ws_pmd_t *pmd, auth_identity_t *id, const char *client_id,
                     json_t *channel_rules, const char *extra, size_t extra_len)
{
    size_t id_len = strlen(client_id);
    ws_client_t *cl = calloc(1, sizeof(*cl) + id_len + 1);
    if (!cl) {
        auth_identity_free(id);
        conn_close(c);
        return -ENOMEM;
    }
    memcpy(cl->client_id, client_id, id_len + 1);
    __atomic_store_n(&client_opt_ptr, opt, __ATOMIC_RELEASE);
    __atomic_store_n(&client_rules_ptr, channel_rules, __ATOMIC_RELEASE);
    ratelimit_init(&cl->rate, opt->message_burst, uv_now(&c->w->loop));
    subscriber_t *s = &cl->sub;
    s->ops = &client_ops;
    s->client_id = cl->client_id;
    s->id = id;
    s->tenant = id->tenant;
    s->connected_at_ms = auth_now_ms();
    /* subscribe first: bytes that came with the handshake may already answer */
    hub_subscribe(c->w, s);
    ws_options_t conn_opt = *opt; /* with what this connection negotiated */
    conn_opt.pmd = pmd;
    if (ws_upgrade_into(&cl->wc, c, client_key, &conn_opt, &client_handler, cl, NULL, 0) < 0) {
        hub_unsubscribe(s);
        auth_identity_free(id);
        free(cl);
        return -ENOMEM;
    }
    if (extra_len) c->proto->on_read(c, extra, extra_len);
    return 0;
}

static void echo_on_message(ws_conn_t *wc, uint8_t opcode, const uint8_t *data, size_t len)
{
    /* the echo goes through the session, which copies: the input buffer is reused */
    if (ws_session_can_send(&wc->s)) ws_session_send(&wc->s, opcode, data, len);
}

static const ws_handler_t echo_handler = {echo_on_message, NULL};

int ws_echo_attach(conn_t *c, const char *client_key, const ws_options_t *opt, const char *extra,
                   size_t extra_len)
{
    return ws_upgrade(c, client_key, opt, &echo_handler, NULL, extra, extra_len) ? 0 : -ENOMEM;
}
