/* SSE subscriber: response head, replay, live pushes, heartbeats, slow consumers. */
#include "transport/sse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/metrics.h"
#include "core/worker.h"
#include "hub/hub.h"
#include "transport/sse_codec.h"

typedef struct sse_client_s {
    subscriber_t sub;
    http_stream_t *out; /* NULL until the response is open */
    auth_identity_t *id;
    char *client_id;
    char *tenant;
    history_sent_t replayed;
    unsigned heartbeat_ms;
    unsigned retry_ms;
    uint64_t next_heartbeat;
} sse_client_t;

buf_t *sse_encode_push(const push_t *p, int ti)
{
    buf_t *data = buf_new(64 + p->payload_len);
    if (!data) return NULL;
    int r = 0;
    const char *channel = push_channel(p, ti);
    if (p->kind == PUSH_KIND_STREAM) {
        r = buf_append(&data, p->payload, p->payload_len);
    } else {
        r |= buf_puts(&data, "{\"id\":");
        r |= buf_put_json_string(&data, p->id);
        r |= buf_puts(&data, ",\"channel\":");
        r |= channel ? buf_put_json_string(&data, channel) : buf_puts(&data, "null");
        r |= buf_puts(&data, ",\"event\":");
        r |= p->event ? buf_put_json_string(&data, p->event) : buf_puts(&data, "null");
        r |= buf_puts(&data, ",\"data\":");
        r |= buf_append(&data, p->payload, p->payload_len);
        r |= buf_puts(&data, "}");
    }
    buf_t *ev = r ? NULL : buf_new(data->len + 64);
    if (ev && sse_write_event(&ev, p->id, NULL, data->data, data->len) < 0) {
        buf_unref(ev);
        ev = NULL;
    }
    buf_unref(data);
    return ev;
}

static int send_push(sse_client_t *cl, push_t *p, int ti)
{
    buf_t *f = push_frame(p, PUSH_FORMAT_SSE, ti, sse_encode_push);
    if (!f) return -ENOMEM;
    return http_stream_send(cl->out, f, 0, f->len);
}

static int sse_deliver(subscriber_t *s, push_t *p, int ti)
{
    sse_client_t *cl = (sse_client_t *)s;
    if (history_sent_has(&cl->replayed, p->id, uv_now(&cl->out->w->loop))) return 0;
    int r = send_push(cl, p, ti);
    if (r == -ENOBUFS) {
        METRICS_ADD(slow_consumer_closes, 1);
        log_info("sse subscriber cut off", "reason=\"slow consumer\" client=%s", cl->client_id);
        http_stream_close(cl->out);
    }
    if (r < 0) hub_unsubscribe(s);
    return r;
}

static const subscriber_ops_t sse_ops = {sse_deliver, "sse"};

static void sse_on_tick(void *ud, uint64_t now)
{
    sse_client_t *cl = ud;
    if (now < cl->next_heartbeat) return;
    cl->next_heartbeat = now + cl->heartbeat_ms;
    buf_t *b = buf_new(16);
    if (b && sse_write_comment(&b, "heartbeat") == 0) http_stream_send(cl->out, b, 0, b->len);
    buf_unref(b);
}

static void client_free(sse_client_t *cl)
{
    auth_identity_free(cl->id);
    free(cl->client_id);
    free(cl->tenant);
    history_sent_free(&cl->replayed);
    free(cl);
}

static void sse_on_close(void *ud)
{
    sse_client_t *cl = ud;
    hub_unsubscribe(&cl->sub);
    client_free(cl);
    __atomic_sub_fetch(&metrics.connections[METRICS_T_SSE], 1, __ATOMIC_RELAXED);
}

/* Shutdown: a last `retry:` spreads the reconnections (retryMs plus up to as much again,
 * so a node's clients do not all land on the next node in the same instant); the
 * stream then ends once what is queued is out. */
static void sse_on_shutdown(void *ud)
{
    sse_client_t *cl = ud;
    uint64_t mix = (uint64_t)(uintptr_t)cl ^ uv_hrtime();
    mix ^= mix >> 29;
    mix *= 0xbf58476d1ce4e5b9ull;
    mix ^= mix >> 32;
    unsigned retry = cl->retry_ms + (cl->retry_ms ? (unsigned)(mix % (cl->retry_ms + 1u)) : 0);
    buf_t *b = buf_new(32);
    http_stream_set_limit(cl->out, 0); /* the goodbye goes out even behind a full queue */
    if (b && sse_write_retry(&b, retry) == 0) http_stream_send(cl->out, b, 0, b->len);
    buf_unref(b);
    hub_unsubscribe(&cl->sub);
}

static const http_stream_cbs_t sse_cbs = {sse_on_tick, sse_on_shutdown, sse_on_close};

static int by_id(const void *a, const void *b)
{
    const history_entry_t *x = a, *y = b;
    return strcmp(x->p->id, y->p->id);
}

/* Replays every topic's history after last_id, merged in id order without repeats. */
static int replay(sse_client_t *cl, char *const *topics, size_t n, const char *last_id,
                  history_t *hist)
{
    history_entry_t *all = NULL;
    size_t total = 0;
    int gap = 0, r = 0;
    int64_t now = auth_now_ms();
    for (size_t i = 0; i < n && r == 0; i++) {
        history_entry_t *e;
        int g;
        long k = history_since(hist, topics[i], last_id, now, &e, &g);
        if (k < 0) {
            r = -ENOMEM;
            break;
        }
        gap |= g;
        history_entry_t *grown = k ? realloc(all, (total + (size_t)k) * sizeof(*all)) : all;
        if (k && !grown) {
            for (long j = 0; j < k; j++)
                push_unref(e[j].p);
            free(e);
            r = -ENOMEM;
            break;
        }
        all = grown;
        if (k) memcpy(all + total, e, (size_t)k * sizeof(*e));
        total += (size_t)k;
        free(e);
    }
    if (r == 0 && gap) {
        buf_t *data = buf_new(128), *b = buf_new(160);
        if (!data || !b || buf_puts(&data, "{\"lastEventId\":") < 0 ||
            buf_put_json_string(&data, last_id) < 0 || buf_puts(&data, "}") < 0 ||
            sse_write_event(&b, NULL, "gap", data->data, data->len) < 0 ||
            http_stream_send(cl->out, b, 0, b->len) < 0)
            r = -ENOMEM;
        buf_unref(data);
        buf_unref(b);
    }
    if (total) qsort(all, total, sizeof(*all), by_id);
    if (r == 0)
        history_sent_record(&cl->replayed, all, total,
                            uv_now(&cl->out->w->loop) + HISTORY_SENT_WINDOW_MS);
    for (size_t i = 0; i < total; i++) {
        /* a push in several of the subscriber's topics is replayed once */
        int dup = i > 0 && all[i].p == all[i - 1].p;
        if (r == 0 && !dup) r = send_push(cl, all[i].p, all[i].ti);
        push_unref(all[i].p);
    }
    free(all);
    return r;
}

int sse_attach(http_ctx_t *ctx, const sse_options_t *opt, auth_identity_t *id,
               const char *client_id, const char *tenant, char *const *topics, size_t n,
               const char *last_event_id, history_t *hist)
{
    sse_client_t *cl = calloc(1, sizeof(*cl));
    if (!cl || !(cl->client_id = strdup(client_id))) goto fail_alloc;
    if (!tenant && id) tenant = id->tenant;
    if (tenant && !(cl->tenant = strdup(tenant))) goto fail_client;
    cl->id = id;
    cl->heartbeat_ms = opt->heartbeat_ms;
    cl->retry_ms = opt->retry_ms;
    cl->next_heartbeat = uv_now(&ctx->w->loop) + opt->heartbeat_ms;
    buf_t *retry = buf_new(32);
    if (!retry || sse_write_retry(&retry, opt->retry_ms) < 0) goto fail_retry;
    cl->out =
        http_stream_open(ctx, "text/event-stream",
                         "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n", &sse_cbs, cl);
    if (!cl->out) {
        buf_unref(retry);
        client_free(cl);
        return -ENOMEM;
    }
    /* from here the stream owns cl: every failure closes it and on_close frees */
    __atomic_add_fetch(&metrics.connections[METRICS_T_SSE], 1, __ATOMIC_RELAXED);
    int r = http_stream_send(cl->out, retry, 0, retry->len);
    buf_unref(retry);
    subscriber_t *s = &cl->sub;
    s->ops = &sse_ops;
    s->client_id = cl->client_id;
    s->id = id;
    s->tenant = cl->tenant;
    s->connected_at_ms = auth_now_ms();
    s->topics_only = 1;
    /* subscribe before replaying: a push recorded after the replay read the history
     * arrives live; one recorded before arrives in the replay and is skipped live */
    hub_subscribe(cl->out->w, s);
    for (size_t i = 0; i < n && r == 0; i++)
        if (hub_topic_add(s, topics[i]) == -ENOMEM) r = -ENOMEM;
    if (r == 0 && last_event_id && *last_event_id) r = replay(cl, topics, n, last_event_id, hist);
    if (r < 0) {
        http_stream_close(cl->out);
        return -ENOMEM;
    }
    /* the replay may be large; the bound applies to live pushes */
    http_stream_set_limit(cl->out, opt->max_output_bytes);
    return 0;
fail_retry:
    buf_unref(retry);
fail_client:
    free(cl->tenant);
    free(cl->client_id);
fail_alloc:
    free(cl);
    auth_identity_free(id);
    http_respond_error(ctx, 500, "out of memory");
    return -ENOMEM;
}
