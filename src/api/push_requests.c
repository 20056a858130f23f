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

static void on_report(void *arg, push_t *p, buf_t *body)
{
    (void)p;
    http_respond_json(arg, 200, body);
}

static void on_abort(http_ctx_t *ctx)
{
    hub_cancel(ctx->w, ctx->abort_token);
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
        if (!v || json_is_null(v))
            continue;
        if (!json_is_string(v)) {
            snprintf(err, errlen, "%s must be a string", pattern_fields[i]);
            return -EINVAL;
        }
        char why[200];
        if (selector_validate(json_string_value(v), why, sizeof(why)) < 0) {
            snprintf(err, errlen, "%s: %s", pattern_fields[i], why);
            return -EINVAL;
        }
        if (!(*dst[i] = strdup(json_string_value(v))))
            return -ENOMEM;
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
    if (!(p->payload = json_dumps(sr, JSON_COMPACT | JSON_ENCODE_ANY)))
        return -ENOMEM;
    p->payload_len = strlen(p->payload);
    return 0;
}

void api_push_requests(http_ctx_t *ctx)
{
    if (!api_require_key(ctx, CONFIG_SCOPE_PUBLISH))
        return;
    json_t *doc = api_json_body(ctx);
    if (!doc)
        return;
    push_t *p = push_new();
    char err[320];
    int r = p ? parse_request(doc, p, err, sizeof(err)) : -ENOMEM;
    json_decref(doc);
    if (r < 0) {
        http_respond_error(ctx, r == -ENOMEM ? 500 : 422, r == -ENOMEM ? "out of memory" : err);
        push_unref(p);
        return;
    }
    uint64_t token = 0;
    if (p->report_mode == PUSH_REPORT_NONE) {
        r = hub_publish(ctx->w, p, NULL, NULL, &token);
        if (r < 0) {
            http_respond_error(ctx, 503, "the push could not be published");
        } else {
            char body[128];
            int n = snprintf(body, sizeof(body), "{\"pushId\":\"%s\"}", p->id);
            http_respond(ctx, 202, "application/json", body, (size_t)n, NULL);
        }
        push_unref(p);
        return;
    }
    http_defer(ctx);
    r = hub_publish(ctx->w, p, on_report, ctx, &token);
    if (r < 0) {
        http_respond_error(ctx, 503, "the push could not be published");
    } else {
        ctx->on_abort = on_abort;
        ctx->abort_token = token;
    }
    push_unref(p);
}
