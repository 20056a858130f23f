/* POST /api/push-requests (seeds 000/001): validate, publish through the hub, and
 * answer with the merged PushResponse once every node has reported. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "hub/selector.h"

#define TIMEOUT_DEFAULT_MS 5000
#define TIMEOUT_MAX_MS 60000

static const char *pattern_fields[] = {"clientIdPattern", "rolePattern", "sessionIdPattern"};

/* A push request waiting for its report. */
typedef struct pending_s {
    http_ctx_t *ctx;  /* NULL once the client is gone (with an Idempotency-Key) */
    api_idem_t *idem; /* the request's Idempotency-Key, or NULL */
} pending_t;

static void on_report(void *arg, push_t *p, buf_t *body)
{
    pending_t *pr = arg;
    if (!p) {
        /* the worker stops first: no answer to give or keep */
        if (pr->ctx) pr->ctx->on_abort = NULL;
        api_idem_forget(pr->idem);
        free(pr);
        return;
    }
    char headers[96];
    snprintf(headers, sizeof(headers), "X-Push-Id: %s\r\n", p->id);
    if (body)
        api_idem_finish(pr->idem, 200, "application/json", headers, body->data, body->len);
    else
        api_idem_forget(pr->idem);
    if (pr->ctx) {
        pr->ctx->on_abort = NULL;
        if (body)
            http_respond(pr->ctx, 200, "application/json", body->data, body->len, headers);
        else
            http_respond_error(pr->ctx, 500, "out of memory");
    }
    buf_unref(body);
    free(pr);
}

static void on_abort(http_ctx_t *ctx)
{
    pending_t *pr = ctx->abort_arg;
    if (pr->idem) {
        /* the push went out: its report is still stored for the client's retry */
        pr->ctx = NULL;
        return;
    }
    hub_cancel(ctx->w, ctx->abort_token);
    free(pr);
}

/* Fills p from the body; on error writes the message naming the field. */
static int parse_request(json_t *doc, push_t *p, char *err, size_t errlen)
{
    json_t *sr = json_object_get(doc, "serviceRequest");
    if (!json_is_object(sr)) {
        snprintf(err, errlen, "serviceRequest is required and must be a JSON object");
        return -EINVAL;
    }
    char **dst[3] = {&p->client_pat, &p->role_pat, &p->session_pat};
    for (int i = 0; i < 3; i++) {
        json_t *v = json_object_get(doc, pattern_fields[i]);
        if (!v || json_is_null(v)) continue;
        if (!json_is_string(v)) {
            snprintf(err, errlen, "%s must be a string", pattern_fields[i]);
            return -EINVAL;
        }
        char why[200];
        if (selector_validate(json_string_value(v), why, sizeof(why)) < 0) {
            snprintf(err, errlen, "%s: %s", pattern_fields[i], why);
            return -EINVAL;
        }
        if (!(*dst[i] = strdup(json_string_value(v)))) return -ENOMEM;
    }
    p->timeout_ms = TIMEOUT_DEFAULT_MS;
    p->report_mode = PUSH_REPORT_FULL;
    json_t *opt = json_object_get(doc, "options");
    if (opt && !json_is_null(opt)) {
        if (!json_is_object(opt)) {
            snprintf(err, errlen, "options must be an object");
            return -EINVAL;
        }
        json_t *aa = json_object_get(opt, "awaitAcks");
        json_t *to = json_object_get(opt, "timeoutMs");
        json_t *rep = json_object_get(opt, "report");
        if (aa && !json_is_boolean(aa)) {
            snprintf(err, errlen, "options.awaitAcks must be a boolean");
            return -EINVAL;
        }
        p->await_acks = json_is_true(aa);
        if (to) {
            if (!json_is_integer(to) || json_integer_value(to) < 1 ||
                json_integer_value(to) > TIMEOUT_MAX_MS) {
                snprintf(err, errlen, "options.timeoutMs must be an integer from 1 to %d",
                         TIMEOUT_MAX_MS);
                return -EINVAL;
            }
            p->timeout_ms = (unsigned)json_integer_value(to);
        }
        if (rep) {
            const char *r = json_string_value(rep);
            if (r && strcmp(r, "full") == 0)
                p->report_mode = PUSH_REPORT_FULL;
            else if (r && strcmp(r, "summary") == 0)
                p->report_mode = PUSH_REPORT_SUMMARY;
            else if (r && strcmp(r, "none") == 0)
                p->report_mode = PUSH_REPORT_NONE;
            else {
                snprintf(err, errlen, "options.report must be one of full, summary, none");
                return -EINVAL;
            }
        }
    }
    if (!(p->payload = json_dumps(sr, JSON_COMPACT | JSON_ENCODE_ANY))) return -ENOMEM;
    p->payload_len = strlen(p->payload);
    return 0;
}

void api_push_requests(http_ctx_t *ctx)
{
    const config_apikey_t *key = api_require_key(ctx, CONFIG_SCOPE_PUBLISH);
    if (!key) return;
    json_t *doc = api_json_body(ctx);
    if (!doc) return;
    push_t *p = push_new();
    char err[320];
    int r = p ? parse_request(doc, p, err, sizeof(err)) : -ENOMEM;
    json_decref(doc);
    if (r < 0) {
        http_respond_error(ctx, r == -ENOMEM ? 500 : 422, r == -ENOMEM ? "out of memory" : err);
        push_unref(p);
        return;
    }
    /* a valid request: a repeat of one already made is answered here */
    api_idem_t *idem = NULL;
    if (api_idem_begin(ctx, key, "push-requests", &idem)) {
        push_unref(p);
        return;
    }
    uint64_t token = 0;
    if (p->report_mode == PUSH_REPORT_NONE) {
        r = hub_publish(ctx->w, p, NULL, NULL, &token);
        if (r < 0) {
            api_idem_forget(idem);
            http_respond_error(ctx, 503, "the push could not be published");
        } else {
            char body[128], headers[96];
            int n = snprintf(body, sizeof(body), "{\"pushId\":\"%s\"}", p->id);
            snprintf(headers, sizeof(headers), "X-Push-Id: %s\r\n", p->id);
            api_idem_finish(idem, 202, "application/json", headers, body, (size_t)n);
            http_respond(ctx, 202, "application/json", body, (size_t)n, headers);
        }
        push_unref(p);
        return;
    }
    pending_t *pr = calloc(1, sizeof(*pr));
    if (!pr) {
        api_idem_forget(idem);
        http_respond_error(ctx, 500, "out of memory");
        push_unref(p);
        return;
    }
    *pr = (pending_t){.ctx = ctx, .idem = idem};
    http_defer(ctx);
    r = hub_publish(ctx->w, p, on_report, pr, &token);
    if (r < 0) {
        free(pr);
        api_idem_forget(idem);
        http_respond_error(ctx, 503, "the push could not be published");
    } else {
        ctx->on_abort = on_abort;
        ctx->abort_arg = pr;
        ctx->abort_token = token;
    }
    push_unref(p);
}
