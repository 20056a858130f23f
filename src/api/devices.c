/* The device command queue over HTTP (seed 004, docs/devices.md): GET /push and
 * POST /result for devices; the operator API under /api/devices (publish key) to
 * enqueue (optionally waiting for the result), list, read and cancel commands; the
 * long poll; the sweeper that expires and prunes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "core/log.h"
#include "http/url.h"
#include "store/devices.h"
#include "store/devices_rcodec.h"
#include "store/devices_redis.h"
#include "store/idem.h"
#include "transport/device.h"
#include "transport/device_codec.h"

#define WAIT_MAX_MS 60000
#define LIST_DEFAULT 1000
#define LIST_MAX 10000
#define SWEEP_PERIOD_MS 1000
#define SEEN_FORGET_MS (24 * 3600 * 1000LL)
#define SEEN_PRUNE_EVERY 60 /* sweeps */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- answers: none goes out before what it tells is committed ----
 *
 * The store runs with group commit: an operation returns before its transaction
 * commits (store/devices.h). Every answer that follows an operation is therefore staged
 * with the operation's epoch, and sent at the end of the worker's loop turn, once
 * devices_sync has committed that epoch (one commit for the whole turn); if the commit
 * failed the answer becomes a 503. Answers that need nothing from the store (bad ids,
 * bad bodies) go out at once. */

typedef struct staged_s {
    struct staged_s *next;
    http_ctx_t *ctx; /* NULL once the client is gone */
    uint64_t epoch;
    int status;
    const char *content_type; /* static string or NULL */
    buf_t *body;              /* NULL: empty body */
    char *headers;
    int end; /* end the connection after the answer (the node is stopping) */
} staged_t;

typedef struct stage_list_s {
    staged_t *head, *tail;
} stage_list_t;

static stage_list_t *stages; /* one per worker */
static int n_stages;

/* After an answer given because the node is stopping: the connection ends now rather
 * than at the shutdown deadline (the server leaves held requests' connections open). */
static void end_conn(conn_t *c)
{
    http_conn_end(c);
}

static void on_staged_abort(http_ctx_t *ctx)
{
    ((staged_t *)ctx->abort_arg)->ctx = NULL;
}

static void send_now(http_ctx_t *ctx, int status, const char *content_type, buf_t *body,
                     const char *headers, int end)
{
    conn_t *c = ctx->conn;
    http_respond(ctx, status, body ? content_type : NULL, body ? body->data : NULL,
                 body ? body->len : 0, headers);
    if (end) end_conn(c);
}

/* The commit of what this answer told failed: nothing of it happened. */
static void send_failed(http_ctx_t *ctx, int end)
{
    conn_t *c = ctx->conn;
    http_respond_error(ctx, 503, "the device queue could not commit this change, try again");
    if (end) end_conn(c);
}

/* Answers once the calling thread's latest store operation is committed. body (NULL:
 * empty) is consumed. */
static void answer(http_ctx_t *ctx, int status, const char *content_type, buf_t *body,
                   const char *headers, int end)
{
    uint64_t epoch = devices_last_epoch();
    staged_t *s = NULL;
    if (epoch && ctx->w && ctx->w->index < n_stages && (s = calloc(1, sizeof(*s))) &&
        (!headers || (s->headers = strdup(headers)))) {
        char *h = s->headers;
        *s = (staged_t){.ctx = ctx,
                        .epoch = epoch,
                        .status = status,
                        .content_type = content_type,
                        .body = body,
                        .headers = h,
                        .end = end};
        stage_list_t *l = &stages[ctx->w->index];
        if (l->tail)
            l->tail->next = s;
        else
            l->head = s;
        l->tail = s;
        http_defer(ctx);
        ctx->on_abort = on_staged_abort;
        ctx->abort_arg = s;
        return;
    }
    if (epoch) {
        /* out of memory: commit now rather than answer ahead of the commit */
        free(s);
        app_t *app = ctx->app;
        if (devices_sync(app->devices, epoch) < 0) {
            buf_unref(body);
            send_failed(ctx, end);
            return;
        }
    }
    send_now(ctx, status, content_type, body, headers, end);
    buf_unref(body);
}

static void answer_json(http_ctx_t *ctx, int status, buf_t *b)
{
    if (!b) {
        b = buf_new(32);
        if (b && buf_puts(&b, "{\"error\":\"out of memory\"}") < 0) {
            buf_unref(b);
            b = NULL;
        }
        status = 500;
    }
    answer(ctx, status, "application/json", b, NULL, 0);
}

static void answer_error(http_ctx_t *ctx, int status, const char *msg)
{
    buf_t *b = buf_new(64);
    if (b && (buf_puts(&b, "{\"error\":") || buf_put_json_string(&b, msg) || buf_puts(&b, "}"))) {
        buf_unref(b);
        b = NULL;
    }
    answer_json(ctx, status, b);
}

static void answer_empty(http_ctx_t *ctx, int end)
{
    answer(ctx, 200, NULL, NULL, NULL, end);
}

static void respond_store_error(http_ctx_t *ctx, int r)
{
    if (r == -ENOTCONN) /* the queue in Redis, while Redis cannot be reached */
        answer_error(ctx, 503, "device queue unavailable");
    else if (r == -EBUSY)
        answer_error(ctx, 503, "the device queue is busy, try again");
    else if (r == -ENOMEM)
        answer_error(ctx, 500, "out of memory");
    else
        answer_error(ctx, 500, "the device queue failed (see the node's log)");
}

/* The end of a worker's loop turn: commit once, then send what was staged (answers may
 * run pipelined requests that stage more). */
static void on_turn_end(worker_t *w, void *arg)
{
    app_t *app = arg;
    if (w->index >= n_stages) return;
    stage_list_t *l = &stages[w->index];
    while (l->head) {
        staged_t *s = l->head;
        l->head = l->tail = NULL;
        uint64_t max = 0;
        for (staged_t *t = s; t; t = t->next)
            max = t->epoch > max ? t->epoch : max;
        devices_sync(app->devices, max);
        while (s) {
            staged_t *next = s->next;
            http_ctx_t *ctx = s->ctx;
            if (ctx) {
                if (ctx->on_abort == on_staged_abort && ctx->abort_arg == s) ctx->on_abort = NULL;
                if (devices_sync(app->devices, s->epoch) == 0)
                    send_now(ctx, s->status, s->content_type, s->body, s->headers, s->end);
                else
                    send_failed(ctx, s->end);
            }
            buf_unref(s->body);
            free(s->headers);
            free(s);
            s = next;
        }
    }
}

static int put_ms(buf_t **bp, const char *key, int64_t v)
{
    return v ? buf_printf(bp, ",\"%s\":%lld", key, (long long)v) : 0;
}

/* The operator's view of a command (GET …/commands/{id}). */
static int put_cmd(buf_t **bp, const devices_cmd_t *c)
{
    int r = buf_printf(bp, "{\"id\":%lld,\"deviceId\":%lld,\"status\":\"%s\",\"verb\":",
                       (long long)c->id, (long long)c->device_id, devices_status_name(c->status));
    if (!r) r = buf_put_json_string(bp, c->cmd.verb);
    if (!r) r = buf_puts(bp, ",\"endpoint\":");
    if (!r) r = buf_put_json_string(bp, c->cmd.endpoint);
    if (!r && c->cmd.body) {
        r = buf_puts(bp, ",\"body\":");
        if (!r)
            r = c->cmd.body_json ? buf_puts(bp, c->cmd.body) : buf_put_json_string(bp, c->cmd.body);
    }
    if (!r) r = buf_puts(bp, ",\"contentType\":");
    if (!r) r = buf_put_json_string(bp, c->cmd.content_type);
    if (!r && c->cmd.query_string) {
        r = buf_puts(bp, ",\"queryString\":");
        if (!r) r = buf_put_json_string(bp, c->cmd.query_string);
    }
    if (!r && c->response) {
        r = buf_puts(bp, ",\"response\":");
        if (!r) r = buf_puts(bp, c->response);
    }
    if (!r && c->error) {
        r = buf_puts(bp, ",\"error\":");
        if (!r) r = buf_put_json_string(bp, c->error);
    }
    if (!r)
        r = buf_printf(bp, ",\"attempts\":%d,\"createdAt\":%lld", c->attempts,
                       (long long)c->created_at);
    if (!r) r = put_ms(bp, "expiresAt", c->expires_at);
    if (!r) r = put_ms(bp, "sentAt", c->sent_at);
    if (!r) r = put_ms(bp, "completedAt", c->completed_at);
    if (!r) r = buf_puts(bp, "}");
    return r;
}

static void respond_cmd(http_ctx_t *ctx, int status, const devices_cmd_t *c, int end)
{
    buf_t *b = buf_new(512);
    if (b && put_cmd(&b, c) < 0) {
        buf_unref(b);
        b = NULL;
    }
    if (!b) {
        answer_json(ctx, 500, NULL);
        return;
    }
    answer(ctx, status, "application/json", b, NULL, end);
}

/* ---- requests: ids and query parameters ---- */

/* The deviceId query parameter; answers 400 itself. Returns 0 or -1 (answered). */
static int query_device(http_ctx_t *ctx, int64_t *id)
{
    int r = device_query_id(ctx->req->query, id);
    if (r == 0) return 0;
    if (r == -ENOENT)
        http_respond_error(ctx, 400, "deviceId is required");
    else if (r == -ENOMEM)
        http_respond_error(ctx, 500, "out of memory");
    else
        http_respond_error(ctx, 400, "deviceId must be a 64-bit integer");
    return -1;
}

/* An optional non-negative integer query parameter, at most max. Returns 1 (found),
 * 0 (absent: *out untouched), -1 (answered 400). */
static int query_uint(http_ctx_t *ctx, const char *name, int64_t max, int64_t *out)
{
    char *v = NULL;
    ssize_t n = url_query_get(ctx->req->query, name, &v);
    if (n == -ENOENT) return 0;
    int64_t x;
    int ok = n > 0 && v[0] != '-' && device_id_parse(v, &x) == 0 && x <= max;
    free(v);
    if (!ok) {
        char msg[128];
        snprintf(msg, sizeof(msg), "%s must be an integer from 0 to %lld", name, (long long)max);
        http_respond_error(ctx, 400, msg);
        return -1;
    }
    *out = x;
    return 1;
}

/* ---- GET /push ---- */

/* Answers a poll with the command c (cleared here). */
static void answer_command(http_ctx_t *ctx, devices_cmd_t *c)
{
    buf_t *b = buf_new(256);
    if (b && device_cmd_encode(&b, &c->cmd) < 0) {
        buf_unref(b);
        b = NULL;
    }
    devices_cmd_clear(c);
    /* the command is sent as far as the store knows; if this answer is lost the
     * device gets it again after device.redeliveryMs */
    answer_json(ctx, 200, b);
}

/* Answers a poll: the device's next command, or empty. */
static void poll_answer(http_ctx_t *ctx, app_t *app, int64_t device_id, int end)
{
    devices_cmd_t c;
    int r = devices_next(app->devices, device_id, now_ms(), &c);
    if (r < 0)
        respond_store_error(ctx, r);
    else if (r == 0)
        answer_empty(ctx, end);
    else
        answer_command(ctx, &c);
}

static void on_poll_hold(device_hold_t *h, enum device_why why)
{
    http_ctx_t *ctx = h->ctx;
    app_t *app = ctx->app;
    if (why == DEVICE_WAKE) {
        devices_cmd_t c;
        int r = devices_next(app->devices, h->key, now_ms(), &c);
        if (r == 0) return; /* not for us (another poll took it, or one is in flight): hold on */
        device_hold_done(h);
        if (r < 0)
            respond_store_error(ctx, r);
        else
            answer_command(ctx, &c);
        return;
    }
    if (why == DEVICE_SHUTDOWN) {
        /* empty, and the connection ends: the node is going away */
        conn_t *c = ctx->conn;
        http_respond(ctx, 200, NULL, NULL, 0, NULL);
        end_conn(c);
        return;
    }
    /* the hold ended: one last look (a redelivery may have come due) */
    poll_answer(ctx, app, h->key, 0);
}

void api_device_poll(http_ctx_t *ctx)
{
    app_t *app = ctx->app;
    int64_t device_id;
    if (query_device(ctx, &device_id) < 0) return;
    int64_t now = now_ms();
    if (strcmp(ctx->req->method_name, "HEAD") == 0) {
        /* a HEAD must not take a command off the queue */
        http_respond(ctx, 200, NULL, NULL, 0, NULL);
        return;
    }
    device_seen_touch(app->device_reg, device_id, now, 0);
    unsigned hold = app->cfg->device.hold_ms;
    if (!hold || __atomic_load_n(&app->draining, __ATOMIC_RELAXED)) {
        poll_answer(ctx, app, device_id, 0);
        return;
    }
    device_reserve(app->device_reg, DEVICE_HOLD_POLL);
    devices_cmd_t c;
    int r = devices_next(app->devices, device_id, now, &c);
    if (r != 0) {
        device_unreserve(app->device_reg, DEVICE_HOLD_POLL);
        if (r < 0)
            respond_store_error(ctx, r);
        else
            answer_command(ctx, &c);
        return;
    }
    if (device_hold(app->device_reg, ctx->w, ctx, DEVICE_HOLD_POLL, device_id, 0, hold,
                    on_poll_hold, NULL) < 0) {
        answer_empty(ctx, 0); /* stopping */
        return;
    }
    http_defer(ctx);
}

/* ---- POST /result ---- */

void api_device_result(http_ctx_t *ctx)
{
    app_t *app = ctx->app;
    int64_t device_id;
    if (query_device(ctx, &device_id) < 0) return;
    device_result_t res;
    char err[256];
    int r = device_result_parse(ctx->req->body, ctx->req->body_len, &res, err, sizeof(err));
    if (r < 0) {
        http_respond_error(ctx, r == -ENOMEM ? 500 : 400, r == -ENOMEM ? "out of memory" : err);
        return;
    }
    int64_t now = now_ms(), id = 0;
    device_seen_touch(app->device_reg, device_id, now, 1);
    r = devices_result(app->devices, device_id, &res, now, &id);
    device_result_clear(&res);
    if (r < 0) {
        respond_store_error(ctx, r);
        return;
    }
    if (r == 1) {
        /* whoever waits for this command's result, and a poll held for the next one */
        device_notify(app->device_reg, ctx->w, DEVICE_HOLD_RESULT, id);
        device_notify(app->device_reg, ctx->w, DEVICE_HOLD_POLL, device_id);
    } else {
        log_info("device result with no command in flight kept as an orphan",
                 "device=%lld orphan=%lld", (long long)device_id, (long long)id);
    }
    answer_empty(ctx, 0);
}

/* ---- POST /api/devices/{deviceId}/commands ---- */

static int finished(int status)
{
    return status != DEVICES_QUEUED && status != DEVICES_SENT;
}

static void on_result_hold(device_hold_t *h, enum device_why why)
{
    http_ctx_t *ctx = h->ctx;
    app_t *app = ctx->app;
    devices_cmd_t c;
    int r = devices_get(app->devices, h->aux, h->key, now_ms(), &c);
    if (why == DEVICE_WAKE) {
        if (r == 0 && !finished(c.status)) {
            devices_cmd_clear(&c);
            return;
        }
        device_hold_done(h);
    }
    if (r < 0)
        respond_store_error(ctx, r == -ENOENT ? -EIO : r);
    else
        respond_cmd(ctx, 201, &c, why == DEVICE_SHUTDOWN);
    devices_cmd_clear(&c);
}

static void enqueue(http_ctx_t *ctx, app_t *app, const config_apikey_t *key, int64_t device_id)
{
    int64_t wait = 0;
    if (query_uint(ctx, "waitMs", WAIT_MAX_MS, &wait) < 0) return;
    json_t *doc = api_json_body(ctx);
    if (!doc) return;
    device_cmd_t cmd;
    int64_t ttl_s;
    char err[256];
    int r = device_cmd_parse(doc, &cmd, &ttl_s, err, sizeof(err));
    json_decref(doc);
    if (r < 0) {
        http_respond_error(ctx, r == -ENOMEM ? 500 : 422, r == -ENOMEM ? "out of memory" : err);
        return;
    }
    /* the Idempotency-Key goes into the store with the command (docs/api.md); the
     * fingerprint covers the device and the body */
    char dev[24], fp[IDEM_FP_LEN + 1];
    snprintf(dev, sizeof(dev), "%lld", (long long)device_id);
    devices_idem_t idem = {.fp = fp};
    char *scope = NULL;
    if (api_idem_key(ctx, key, "devices", dev, &scope, fp) < 0) {
        device_cmd_clear(&cmd);
        return;
    }
    idem.scope = scope;
    if (!ttl_s) ttl_s = app->cfg->device.ttl_seconds;
    int64_t now = now_ms(), id = 0;
    int64_t expires = ttl_s ? now + ttl_s * 1000 : 0;
    if (wait) device_reserve(app->device_reg, DEVICE_HOLD_RESULT);
    r = devices_enqueue_idem(app->devices, device_id, &cmd, expires, now, scope ? &idem : NULL,
                             &id);
    device_cmd_clear(&cmd);
    free(scope);
    int replayed = r == 1;
    if (r < 0) {
        if (wait) device_unreserve(app->device_reg, DEVICE_HOLD_RESULT);
        if (r == -EEXIST) {
            answer_error(ctx, 422,
                         "this Idempotency-Key was already used with a different request");
        } else if (r == -ENOSPC) {
            snprintf(err, sizeof(err),
                     "device %lld already has %u unfinished commands (device.maxQueue)",
                     (long long)device_id, app->cfg->device.max_queue);
            answer_error(ctx, 429, err);
        } else {
            respond_store_error(ctx, r);
        }
        return;
    }
    if (!replayed) device_notify(app->device_reg, ctx->w, DEVICE_HOLD_POLL, device_id);
    if (wait) {
        if (device_hold(app->device_reg, ctx->w, ctx, DEVICE_HOLD_RESULT, id, device_id,
                        (uint64_t)wait, on_result_hold, NULL) == 0) {
            http_defer(ctx);
            return;
        }
        /* stopping: answer with what is known now */
        devices_cmd_t c;
        if ((r = devices_get(app->devices, device_id, id, now_ms(), &c)) < 0) {
            respond_store_error(ctx, r);
            return;
        }
        respond_cmd(ctx, 201, &c, 0);
        devices_cmd_clear(&c);
        return;
    }
    /* a repeat gets the first answer again: the same id, still "queued" as it was then */
    char loc[160];
    snprintf(loc, sizeof(loc), "Location: /api/devices/%lld/commands/%lld\r\n%s",
             (long long)device_id, (long long)id, replayed ? "Idempotent-Replayed: true\r\n" : "");
    buf_t *b = buf_new(64);
    if (b && buf_printf(&b, "{\"id\":%lld,\"status\":\"queued\"}", (long long)id) < 0) {
        buf_unref(b);
        b = NULL;
    }
    if (!b)
        answer_json(ctx, 500, NULL);
    else
        answer(ctx, 201, "application/json", b, loc, 0);
}

/* ---- GET /api/devices/{deviceId}/commands ---- */

typedef struct list_s {
    buf_t *b;
    int n;
    int err;
} list_t;

static int list_cmd(const devices_cmd_t *c, void *arg)
{
    list_t *l = arg;
    if ((l->n++ && buf_puts(&l->b, ",") < 0) || put_cmd(&l->b, c) < 0) {
        l->err = -ENOMEM;
        return 1;
    }
    return 0;
}

/* Parses status=a,b,c into a mask. Returns 0 or -1 (answered 400). */
static int query_statuses(http_ctx_t *ctx, unsigned *mask)
{
    char *v = NULL;
    ssize_t n = url_query_get(ctx->req->query, "status", &v);
    *mask = 0;
    if (n == -ENOENT) return 0;
    int ok = n > 0;
    for (char *p = v; ok && p && *p;) {
        size_t len = strcspn(p, ",");
        int s = devices_status_parse(p, len);
        if (s < 0)
            ok = 0;
        else
            *mask |= 1u << s;
        p += len;
        if (*p == ',') p++;
    }
    free(v);
    if (!ok) {
        http_respond_error(ctx, 400,
                           "status must be a comma-separated list of queued, sent, done, failed, "
                           "expired, cancelled");
        return -1;
    }
    return 0;
}

static void list_commands(http_ctx_t *ctx, app_t *app, int64_t device_id)
{
    unsigned mask;
    int64_t after = 0, limit = LIST_DEFAULT;
    if (query_statuses(ctx, &mask) < 0 || query_uint(ctx, "after", INT64_MAX, &after) < 0 ||
        query_uint(ctx, "limit", LIST_MAX, &limit) < 0)
        return;
    list_t l = {.b = buf_new(4096)};
    if (!l.b || buf_puts(&l.b, "{\"commands\":[") < 0) {
        buf_unref(l.b);
        http_respond_error(ctx, 500, "out of memory");
        return;
    }
    int r =
        devices_list(app->devices, device_id, mask, after, (unsigned)limit, now_ms(), list_cmd, &l);
    if (r >= 0 && l.err) r = l.err;
    if (r >= 0 && buf_puts(&l.b, "]}") < 0) r = -ENOMEM;
    if (r < 0) {
        buf_unref(l.b);
        respond_store_error(ctx, r);
        return;
    }
    answer_json(ctx, 200, l.b);
}

/* ---- GET /api/devices/{deviceId}/orphans ---- */

static int list_orphan(const devices_orphan_t *o, void *arg)
{
    list_t *l = arg;
    int r = l->n++ ? buf_puts(&l->b, ",") : 0;
    if (!r)
        r = buf_printf(&l->b, "{\"id\":%lld,\"deviceId\":%lld,\"receivedAt\":%lld",
                       (long long)o->id, (long long)o->device_id, (long long)o->received_at);
    if (!r && o->response) r = buf_puts(&l->b, ",\"response\":") || buf_puts(&l->b, o->response);
    if (!r && o->error) r = buf_puts(&l->b, ",\"error\":") || buf_put_json_string(&l->b, o->error);
    if (!r) r = buf_puts(&l->b, "}");
    if (r) {
        l->err = -ENOMEM;
        return 1;
    }
    return 0;
}

static void list_orphans(http_ctx_t *ctx, app_t *app, int64_t device_id)
{
    int64_t after = 0, limit = LIST_DEFAULT;
    if (query_uint(ctx, "after", INT64_MAX, &after) < 0 ||
        query_uint(ctx, "limit", LIST_MAX, &limit) < 0)
        return;
    list_t l = {.b = buf_new(1024)};
    if (!l.b || buf_puts(&l.b, "{\"orphans\":[") < 0) {
        buf_unref(l.b);
        http_respond_error(ctx, 500, "out of memory");
        return;
    }
    int r = devices_orphans(app->devices, device_id, after, (unsigned)limit, list_orphan, &l);
    if (r >= 0 && l.err) r = l.err;
    if (r >= 0 && buf_puts(&l.b, "]}") < 0) r = -ENOMEM;
    if (r < 0) {
        buf_unref(l.b);
        respond_store_error(ctx, r);
        return;
    }
    answer_json(ctx, 200, l.b);
}

/* ---- GET /api/devices and GET /api/devices/{deviceId} ---- */

static int put_device(buf_t **bp, int64_t id, const device_seen_t *s, const devices_depth_t *d)
{
    int r = buf_printf(bp, "{\"deviceId\":%lld", (long long)id);
    if (!r)
        r = s && s->last_poll_at
                ? buf_printf(bp, ",\"lastPollAt\":%lld,\"polls\":%llu", (long long)s->last_poll_at,
                             (unsigned long long)s->polls)
                : buf_puts(bp, ",\"lastPollAt\":null,\"polls\":0");
    if (!r && s && s->last_result_at)
        r = buf_printf(bp, ",\"lastResultAt\":%lld", (long long)s->last_result_at);
    if (!r)
        r = buf_printf(bp, ",\"queued\":%lld,\"inFlight\":%lld}", (long long)(d ? d->queued : 0),
                       (long long)(d ? d->sent : 0));
    return r;
}

typedef struct depths_s {
    devices_depth_t *a;
    size_t n, cap;
} depths_t;

static int add_depth(const devices_depth_t *d, void *arg)
{
    depths_t *ds = arg;
    if (ds->n == ds->cap) {
        size_t cap = ds->cap ? ds->cap * 2 : 256;
        devices_depth_t *a = realloc(ds->a, cap * sizeof(*a));
        if (!a) return 1;
        ds->a = a;
        ds->cap = cap;
    }
    ds->a[ds->n++] = *d;
    return 0;
}

void api_devices_list(http_ctx_t *ctx)
{
    app_t *app = ctx->app;
    if (!api_require_key(ctx, CONFIG_SCOPE_PUBLISH)) return;
    int64_t after = INT64_MIN, limit = LIST_DEFAULT;
    char *v = NULL;
    ssize_t vn = url_query_get(ctx->req->query, "after", &v);
    if (vn != -ENOENT && (vn <= 0 || device_id_parse(v, &after) < 0)) {
        free(v);
        http_respond_error(ctx, 400, "after must be a 64-bit integer");
        return;
    }
    free(v);
    if (query_uint(ctx, "limit", LIST_MAX, &limit) < 0) return;
    device_seen_t *seen = NULL;
    ssize_t ns = device_seen_snapshot(app->device_reg, after, &seen);
    depths_t dp = {0};
    int r = ns < 0 ? (int)ns : devices_depths(app->devices, after, (unsigned)limit, add_depth, &dp);
    buf_t *b = r < 0 ? NULL : buf_new(4096);
    if (b && buf_puts(&b, "{\"devices\":[") < 0) r = -ENOMEM;
    /* merge the two lists, both sorted by device id */
    size_t i = 0, j = 0;
    int64_t count = 0;
    while (b && r >= 0 && count < limit && (i < (size_t)ns || j < dp.n)) {
        int64_t si = i < (size_t)ns ? seen[i].device_id : INT64_MAX;
        int64_t dj = j < dp.n ? dp.a[j].device_id : INT64_MAX;
        int64_t id = si < dj ? si : dj;
        const device_seen_t *s = si == id && i < (size_t)ns ? &seen[i++] : NULL;
        const devices_depth_t *d = dj == id && j < dp.n ? &dp.a[j++] : NULL;
        if ((count++ && buf_puts(&b, ",") < 0) || put_device(&b, id, s, d) < 0) r = -ENOMEM;
    }
    if (b && r >= 0 && buf_puts(&b, "]}") < 0) r = -ENOMEM;
    free(seen);
    free(dp.a);
    if (r < 0 || !b) {
        buf_unref(b);
        respond_store_error(ctx, r < 0 ? r : -ENOMEM);
        return;
    }
    answer_json(ctx, 200, b);
}

static void get_device(http_ctx_t *ctx, app_t *app, int64_t device_id)
{
    device_seen_t s;
    int known = device_seen_get(app->device_reg, device_id, &s) == 0;
    devices_depth_t d;
    int r = devices_depth(app->devices, device_id, &d);
    buf_t *b = r < 0 ? NULL : buf_new(256);
    if (b && put_device(&b, device_id, known ? &s : NULL, &d) < 0) {
        buf_unref(b);
        b = NULL;
    }
    if (!b) {
        respond_store_error(ctx, r < 0 ? r : -ENOMEM);
        return;
    }
    answer_json(ctx, 200, b);
}

/* ---- /api/devices/{deviceId}/… ---- */

static void get_command(http_ctx_t *ctx, app_t *app, int64_t device_id, int64_t id)
{
    devices_cmd_t c;
    int r = devices_get(app->devices, device_id, id, now_ms(), &c);
    if (r == -ENOENT) {
        answer_error(ctx, 404, "command not found");
        return;
    }
    if (r < 0) {
        respond_store_error(ctx, r);
        return;
    }
    respond_cmd(ctx, 200, &c, 0);
    devices_cmd_clear(&c);
}

static void cancel_command(http_ctx_t *ctx, app_t *app, int64_t device_id, int64_t id)
{
    int status = 0;
    int r = devices_cancel(app->devices, device_id, id, now_ms(), &status);
    if (r == -ENOENT) {
        answer_error(ctx, 404, "command not found");
        return;
    }
    if (r == -EALREADY) {
        char msg[96];
        snprintf(msg, sizeof(msg), "command is %s, only a queued command can be cancelled",
                 devices_status_name(status));
        answer_error(ctx, 409, msg);
        return;
    }
    if (r < 0) {
        respond_store_error(ctx, r);
        return;
    }
    device_notify(app->device_reg, ctx->w, DEVICE_HOLD_RESULT, id);
    get_command(ctx, app, device_id, id);
}

/* Copies the path segment at *p (up to '/' or the end) into seg. Returns its length,
 * or -1 when it does not fit. */
static int segment(const char **p, char *seg, size_t size)
{
    size_t n = strcspn(*p, "/");
    if (n >= size) return -1;
    memcpy(seg, *p, n);
    seg[n] = '\0';
    *p += n;
    if (**p == '/') (*p)++;
    return (int)n;
}

void api_devices_route(http_ctx_t *ctx)
{
    app_t *app = ctx->app;
    const config_apikey_t *key = api_require_key(ctx, CONFIG_SCOPE_PUBLISH);
    if (!key) return;
    const char *p = ctx->req->path + strlen("/api/devices/");
    const char *m = ctx->req->method_name;
    int get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
    char dev[32], what[16], cid[32];
    int64_t device_id, id;
    if (segment(&p, dev, sizeof(dev)) < 0 || device_id_parse(dev, &device_id) < 0) {
        http_respond_error(ctx, 400, "deviceId in the path must be a 64-bit integer");
        return;
    }
    int wn = segment(&p, what, sizeof(what));
    if (wn == 0 && !*p) {
        if (get)
            get_device(ctx, app, device_id);
        else
            http_respond_error(ctx, 405, "method not allowed");
        return;
    }
    if (wn > 0 && strcmp(what, "orphans") == 0 && !*p) {
        if (get)
            list_orphans(ctx, app, device_id);
        else
            http_respond_error(ctx, 405, "method not allowed");
        return;
    }
    if (wn <= 0 || strcmp(what, "commands") != 0) {
        http_respond_error(ctx, 404, "not found");
        return;
    }
    int cn = segment(&p, cid, sizeof(cid));
    if (cn == 0 && !*p) {
        if (strcmp(m, "POST") == 0)
            enqueue(ctx, app, key, device_id);
        else if (get)
            list_commands(ctx, app, device_id);
        else
            http_respond_error(ctx, 405, "method not allowed");
        return;
    }
    if (cn < 0 || *p) {
        http_respond_error(ctx, 404, "not found");
        return;
    }
    if (device_id_parse(cid, &id) < 0) {
        http_respond_error(ctx, 400, "command id in the path must be an integer");
        return;
    }
    if (get)
        get_command(ctx, app, device_id, id);
    else if (strcmp(m, "DELETE") == 0)
        cancel_command(ctx, app, device_id, id);
    else
        http_respond_error(ctx, 405, "method not allowed");
}

/* ---- wake-ups from other nodes ---- */

#define REMOTE_WAKE_MAX 64

void api_devices_remote_wake(void *arg, const char *body, size_t len)
{
    app_t *app = arg;
    devices_wake_t items[REMOTE_WAKE_MAX];
    const char *node;
    size_t node_len;
    int n = devices_wake_parse(body, len, items, REMOTE_WAKE_MAX, &node, &node_len);
    if (n < 0) {
        log_warn("ignored a bad device wake-up", "message=\"%.*s\"", (int)(len > 80 ? 80 : len),
                 body);
        return;
    }
    /* this node's own: its holds were woken when it made the change */
    if (node_len == strlen(app->cfg->node_id) && memcmp(node, app->cfg->node_id, node_len) == 0)
        return;
    int kinds[REMOTE_WAKE_MAX];
    int64_t keys[REMOTE_WAKE_MAX];
    for (int i = 0; i < n; i++) {
        kinds[i] = items[i].kind == DEVICES_WAKE_POLL ? DEVICE_HOLD_POLL : DEVICE_HOLD_RESULT;
        keys[i] = items[i].key;
    }
    device_notify_any(app->device_reg, kinds, keys, (size_t)n);
}

/* ---- lifecycle ---- */

typedef struct sweeper_s {
    app_t *app;
    unsigned runs;
} sweeper_t;

static sweeper_t sweeper;

static void on_sweep(worker_t *w, void *arg)
{
    (void)w;
    sweeper_t *s = arg;
    int64_t now = now_ms();
    int r = devices_sweep(s->app->devices, now);
    if (r > 0) log_info("device commands expired", "count=%d", r);
    if (++s->runs % SEEN_PRUNE_EVERY == 0)
        device_seen_prune(s->app->device_reg, now - SEEN_FORGET_MS);
}

int api_devices_init(app_t *app, char *err, size_t errlen)
{
    const config_device_t *dc = &app->cfg->device;
    devices_opts_t o = {
        .redelivery_ms = dc->redelivery_ms,
        .max_queue = dc->max_queue,
        .retention_ms = (int64_t)dc->retention_seconds * 1000,
        .group_commit = 1,
        .idem_ttl_ms = (int64_t)app->cfg->idem_ttl_seconds * 1000,
    };
    int r;
    if (app->devices_redis) {
        /* clustered: the queue every node shares, in Redis (docs/cluster.md) */
        r = devices_redis_open(&app->devices, app->devices_redis, &o, err, errlen);
    } else {
        /* A database of its own, beside the node's store: with group commit the queue
         * holds the write lock for a loop turn, and no other module's write (a stream
         * configuration PATCH on the same worker) must ever wait for that. */
        char path[4096];
        if (snprintf(path, sizeof(path), "%s/devices.db", app->cfg->data_dir) >=
            (int)sizeof(path)) {
            snprintf(err, errlen, "dataDir is too long");
            return -ENAMETOOLONG;
        }
        r = devices_open(&app->devices, path, &o, err, errlen);
    }
    if (r < 0) return r;
    if (!(stages = calloc((size_t)app->cfg->workers, sizeof(*stages)))) goto fail_stages;
    n_stages = app->cfg->workers;
    if (!(app->device_reg = device_reg_new(app->cfg->workers))) goto fail_reg;
    device_reg_on_turn_end(app->device_reg, on_turn_end, app);
    sweeper = (sweeper_t){.app = app};
    return 0;
fail_reg:
    free(stages);
    stages = NULL;
    n_stages = 0;
fail_stages:
    devices_close(app->devices);
    app->devices = NULL;
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
}

int api_devices_attach(app_t *app, worker_t *w)
{
    if (w->index == 0)
        return device_reg_attach(app->device_reg, w, on_sweep, &sweeper, SWEEP_PERIOD_MS);
    return device_reg_attach(app->device_reg, w, NULL, NULL, 0);
}

void api_devices_detach(app_t *app, worker_t *w)
{
    device_reg_detach(app->device_reg, w);
    /* the loop has ended: what was staged is never sent (the connections close next) */
    if (w->index >= n_stages) return;
    for (staged_t *s = stages[w->index].head, *next; s; s = next) {
        next = s->next;
        if (s->ctx && s->ctx->on_abort == on_staged_abort && s->ctx->abort_arg == s)
            s->ctx->on_abort = NULL;
        buf_unref(s->body);
        free(s->headers);
        free(s);
    }
    stages[w->index].head = stages[w->index].tail = NULL;
}

void api_devices_free(app_t *app)
{
    device_reg_free(app->device_reg);
    devices_close(app->devices);
    free(stages);
    stages = NULL;
    n_stages = 0;
    app->device_reg = NULL;
    app->devices = NULL;
}
