/* InternalPushRequest and node report documents (JSON, jansson to read, buf to write),
 * and the bus URL. */
#include "cluster/codec.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOPICS 1024

static const char *const kind_names[] = {"request", "channel", "stream"};
static const char *const report_names[] = {"full", "summary", "none"};

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        snprintf(err, errlen, __VA_ARGS__);                                                        \
        r = -EINVAL;                                                                               \
        goto out;                                                                                  \
    } while (0)

/* ---- encoding ---- */

static int put_key_str(buf_t **bp, const char *key, const char *v)
{
    int r = buf_printf(bp, ",\"%s\":", key);
    if (!v) return r | buf_puts(bp, "null");
    return r | buf_put_json_string(bp, v);
}

int cluster_push_encode(buf_t **bp, const push_t *p, const char *application_id)
{
    int kind = p->kind >= 0 && p->kind <= PUSH_KIND_STREAM ? p->kind : PUSH_KIND_REQUEST;
    int rep = p->report_mode >= 0 && p->report_mode <= PUSH_REPORT_NONE ? p->report_mode
                                                                        : PUSH_REPORT_FULL;
    int r = buf_printf(bp, "{\"type\":\"InternalPushRequest\",\"v\":%d", CLUSTER_CODEC_VERSION);
    r |= put_key_str(bp, "id", p->id);
    r |= put_key_str(bp, "kind", kind_names[kind]);
    r |= buf_puts(bp, ",\"originId\":{\"applicationId\":");
    r |= buf_put_json_string(bp, application_id ? application_id : "");
    r |= buf_puts(bp, ",\"nodeId\":");
    r |= buf_put_json_string(bp, p->origin_node ? p->origin_node : "");
    r |= buf_printf(bp, "},\"originWorker\":%d,\"token\":%llu,\"createdMs\":%lld", p->origin_worker,
                    (unsigned long long)p->origin_token, (long long)p->created_ms);
    r |= put_key_str(bp, "clientIdPattern", p->client_pat);
    r |= put_key_str(bp, "rolePattern", p->role_pat);
    r |= put_key_str(bp, "sessionIdPattern", p->session_pat);
    r |= put_key_str(bp, "tenant", p->tenant);
    r |= buf_puts(bp, ",\"topics\":[");
    for (size_t i = 0; i < p->n_topics; i++) {
        if (i) r |= buf_puts(bp, ",");
        r |= buf_put_json_string(bp, p->topics[i]);
    }
    r |= buf_puts(bp, "]");
    r |= put_key_str(bp, "event", p->event);
    r |= buf_printf(bp, ",\"awaitAcks\":%s,\"timeoutMs\":%u,\"report\":\"%s\",\"payload\":",
                    p->await_acks ? "true" : "false", p->timeout_ms, report_names[rep]);
    if (p->payload && p->payload_len)
        r |= buf_append(bp, p->payload, p->payload_len);
    else
        r |= buf_puts(bp, "null");
    r |= buf_puts(bp, "}");
    return r ? -ENOMEM : 0;
}

int cluster_report_encode(buf_t **bp, const report_t *rp, const char *push_id, int origin_worker,
                          uint64_t token)
{
    int r = buf_printf(bp, "{\"type\":\"PushReport\",\"v\":%d", CLUSTER_CODEC_VERSION);
    r |= put_key_str(bp, "pushId", push_id ? push_id : "");
    r |= buf_printf(bp, ",\"originWorker\":%d,\"token\":%llu", origin_worker,
                    (unsigned long long)token);
    r |= buf_puts(bp, ",\"originId\":{\"applicationId\":");
    r |= buf_put_json_string(bp, rp->application_id ? rp->application_id : "");
    r |= buf_puts(bp, ",\"nodeId\":");
    r |= buf_put_json_string(bp, rp->node_id ? rp->node_id : "");
    r |= buf_printf(bp,
                    "},\"keepEntries\":%s,\"matched\":%llu,\"delivered\":%llu,\"failed\":%llu,"
                    "\"acknowledged\":%llu,\"entries\":[",
                    rp->keep_entries ? "true" : "false", (unsigned long long)rp->matched,
                    (unsigned long long)rp->delivered, (unsigned long long)rp->failed,
                    (unsigned long long)rp->acknowledged);
    for (size_t i = 0; i < rp->n && r == 0; i++) {
        const report_entry_t *e = &rp->e[i];
        r |= buf_puts(bp, i ? ",{\"clientId\":" : "{\"clientId\":");
        r |= buf_put_json_string(bp, e->client_id ? e->client_id : "");
        r |= put_key_str(bp, "sessionId", e->session_id ? e->session_id : "");
        r |= put_key_str(bp, "message", e->message ? e->message : "");
        r |= buf_printf(bp, ",\"successful\":%s,\"acknowledged\":%s}",
                        e->successful ? "true" : "false", e->acknowledged ? "true" : "false");
    }
    r |= buf_puts(bp, "]}");
    return r ? -ENOMEM : 0;
}

/* ---- decoding ---- */

static int check_header(json_t *doc, const char *type, char *err, size_t errlen)
{
    if (!json_is_object(doc)) {
        snprintf(err, errlen, "the message is not a JSON object");
        return -EINVAL;
    }
    const char *t = json_string_value(json_object_get(doc, "type"));
    if (!t || strcmp(t, type) != 0) {
        snprintf(err, errlen, "type must be \"%s\"", type);
        return -EINVAL;
    }
    json_t *v = json_object_get(doc, "v");
    if (!json_is_integer(v) || json_integer_value(v) != CLUSTER_CODEC_VERSION) {
        snprintf(err, errlen, "v must be %d", CLUSTER_CODEC_VERSION);
        return -EINVAL;
    }
    return 0;
}

/* An optional string member: absent or null gives NULL. Returns 0, -EINVAL, -ENOMEM. */
static int opt_string(json_t *doc, const char *key, char **out)
{
    json_t *v = json_object_get(doc, key);
    *out = NULL;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) return -EINVAL;
    return (*out = strdup(json_string_value(v))) ? 0 : -ENOMEM;
}

static int lookup_name(const char *s, const char *const *names, int n)
{
    for (int i = 0; s && i < n; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return -1;
}

static int get_uint(json_t *doc, const char *key, unsigned long long max, unsigned long long *out)
{
    json_t *v = json_object_get(doc, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        (unsigned long long)json_integer_value(v) > max)
        return -EINVAL;
    *out = (unsigned long long)json_integer_value(v);
    return 0;
}

/* Push ids end up in SSE `id:` lines and WebSocket frames: only id characters. */
static int valid_id(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n >= ID_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return 1;
}

static int origin_node(json_t *doc, const char **app, const char **node)
{
    json_t *o = json_object_get(doc, "originId");
    *app = json_string_value(json_object_get(o, "applicationId"));
    *node = json_string_value(json_object_get(o, "nodeId"));
    return json_is_object(o) && *app && *node && **node ? 0 : -EINVAL;
}

int cluster_push_decode(const char *data, size_t len, push_t **out, char *err, size_t errlen)
{
    *out = NULL;
    json_error_t je;
    json_t *doc = json_loadb(data, len, 0, &je);
    push_t *p = NULL;
    char **topics = NULL;
    size_t nt = 0;
    int r = 0;
    if (!doc) {
        snprintf(err, errlen, "not JSON: %s", je.text);
        return -EINVAL;
    }
    if ((r = check_header(doc, "InternalPushRequest", err, errlen)) < 0) goto out;
    if (!(p = push_new())) {
        r = -ENOMEM;
        goto out;
    }
    const char *id = json_string_value(json_object_get(doc, "id"));
    if (!valid_id(id)) FAIL("id must be 1 to %d letters, digits, '-', '_' or '.'", ID_MAX - 1);
    memcpy(p->id, id, strlen(id) + 1);
    int kind = lookup_name(json_string_value(json_object_get(doc, "kind")), kind_names, 3);
    if (kind < 0) FAIL("kind must be one of request, channel, stream");
    p->kind = kind;
    const char *app, *node;
    if (origin_node(doc, &app, &node) < 0)
        FAIL("originId must be {applicationId, nodeId} with a non-empty nodeId");
    if (!(p->origin_node = strdup(node))) {
        r = -ENOMEM;
        goto out;
    }
    unsigned long long u;
    if (get_uint(doc, "originWorker", 65535, &u) < 0)
        FAIL("originWorker must be an integer from 0 to 65535");
    p->origin_worker = (int)u;
    if (get_uint(doc, "token", (unsigned long long)INT64_MAX, &u) < 0)
        FAIL("token must be a non-negative integer");
    p->origin_token = u;
    if (get_uint(doc, "createdMs", (unsigned long long)INT64_MAX, &u) < 0)
        FAIL("createdMs must be a non-negative integer");
    p->created_ms = (int64_t)u;
    if (get_uint(doc, "timeoutMs", 0xffffffffu, &u) < 0)
        FAIL("timeoutMs must be an integer from 0 to 4294967295");
    p->timeout_ms = (unsigned)u;
    json_t *aa = json_object_get(doc, "awaitAcks");
    if (!json_is_boolean(aa)) FAIL("awaitAcks must be a boolean");
    p->await_acks = json_is_true(aa);
    int rep = lookup_name(json_string_value(json_object_get(doc, "report")), report_names, 3);
    if (rep < 0) FAIL("report must be one of full, summary, none");
    p->report_mode = rep;
    static const char *const strs[] = {"clientIdPattern", "rolePattern", "sessionIdPattern",
                                       "tenant", "event"};
    char **dst[] = {&p->client_pat, &p->role_pat, &p->session_pat, &p->tenant, &p->event};
    for (int i = 0; i < 5; i++) {
        int sr = opt_string(doc, strs[i], dst[i]);
        if (sr == -ENOMEM) {
            r = sr;
            goto out;
        }
        if (sr < 0) FAIL("%s must be a string or null", strs[i]);
    }
    json_t *jt = json_object_get(doc, "topics");
    if (!json_is_array(jt) || json_array_size(jt) > MAX_TOPICS)
        FAIL("topics must be an array of at most %d strings", MAX_TOPICS);
    nt = json_array_size(jt);
    if (!(topics = calloc(nt ? nt : 1, sizeof(*topics)))) {
        r = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < nt; i++) {
        json_t *t = json_array_get(jt, i);
        if (!json_is_string(t) || json_string_length(t) == 0)
            FAIL("topics[%zu] must be a non-empty string", i);
        topics[i] = (char *)json_string_value(t); /* borrowed: push_set_topics copies */
    }
    if (nt && (r = push_set_topics(p, topics, nt)) < 0) goto out;
    json_t *pl = json_object_get(doc, "payload");
    if (!pl) FAIL("payload is required");
    if (!(p->payload = json_dumps(pl, JSON_COMPACT | JSON_ENCODE_ANY))) {
        r = -ENOMEM;
        goto out;
    }
    p->payload_len = strlen(p->payload);
out:
    free(topics);
    json_decref(doc);
    if (r < 0) {
        push_unref(p);
        return r;
    }
    *out = p;
    return 0;
}

int cluster_report_decode(const char *data, size_t len, report_t *rp, int *origin_worker,
                          uint64_t *token, char *err, size_t errlen)
{
    report_init(rp, 0);
    json_error_t je;
    json_t *doc = json_loadb(data, len, 0, &je);
    int r = 0;
    if (!doc) {
        snprintf(err, errlen, "not JSON: %s", je.text);
        return -EINVAL;
    }
    if ((r = check_header(doc, "PushReport", err, errlen)) < 0) goto out;
    unsigned long long u;
    if (get_uint(doc, "originWorker", 65535, &u) < 0)
        FAIL("originWorker must be an integer from 0 to 65535");
    *origin_worker = (int)u;
    if (get_uint(doc, "token", (unsigned long long)INT64_MAX, &u) < 0)
        FAIL("token must be a non-negative integer");
    *token = u;
    const char *app, *node;
    if (origin_node(doc, &app, &node) < 0)
        FAIL("originId must be {applicationId, nodeId} with a non-empty nodeId");
    json_t *keep = json_object_get(doc, "keepEntries");
    if (!json_is_boolean(keep)) FAIL("keepEntries must be a boolean");
    static const char *const counts[] = {"matched", "delivered", "failed", "acknowledged"};
    unsigned long long c[4];
    for (int i = 0; i < 4; i++)
        if (get_uint(doc, counts[i], (unsigned long long)INT64_MAX, &c[i]) < 0)
            FAIL("%s must be a non-negative integer", counts[i]);
    json_t *entries = json_object_get(doc, "entries");
    if (!json_is_array(entries)) FAIL("entries must be an array");
    rp->keep_entries = json_is_true(keep);
    if (!rp->keep_entries && json_array_size(entries))
        FAIL("entries must be empty when keepEntries is false");
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e)
    {
        const char *cid = json_string_value(json_object_get(e, "clientId"));
        const char *sid = json_string_value(json_object_get(e, "sessionId"));
        const char *msg = json_string_value(json_object_get(e, "message"));
        json_t *ok = json_object_get(e, "successful"), *ack = json_object_get(e, "acknowledged");
        if (!cid || !sid || !msg || !json_is_boolean(ok) || !json_is_boolean(ack))
            FAIL("entries[%zu] must be {clientId, sessionId, message, successful, acknowledged}",
                 i);
        long k = report_add(rp, cid, sid, json_is_true(ok), msg);
        if (k < 0) {
            r = -ENOMEM;
            goto out;
        }
        rp->e[k].acknowledged = (uint8_t)json_is_true(ack);
    }
    /* the counts travel on their own: summary reports carry no entries */
    rp->matched = c[0];
    rp->delivered = c[1];
    rp->failed = c[2];
    rp->acknowledged = c[3];
    if (!(rp->application_id = strdup(app)) || !(rp->node_id = strdup(node))) r = -ENOMEM;
out:
    json_decref(doc);
    if (r < 0) report_free(rp);
    return r;
}

/* ---- notes and announcements ---- */

int cluster_note_encode(buf_t **bp, int kind, const char *name)
{
    int r = buf_printf(bp, "{\"type\":\"%s\",\"v\":%d,\"name\":",
                       kind == CLUSTER_NOTE_STREAMS ? "StreamsSaved" : "SessionRevoked",
                       CLUSTER_CODEC_VERSION);
    r |= buf_put_json_string(bp, name ? name : "");
    r |= buf_puts(bp, "}");
    return r ? -ENOMEM : 0;
}

int cluster_note_decode(const char *data, size_t len, int *kind, char **name, char *err,
                        size_t errlen)
{
    *name = NULL;
    json_error_t je;
    json_t *doc = json_loadb(data, len, 0, &je);
    int r = 0;
    if (!doc) {
        snprintf(err, errlen, "not JSON: %s", je.text);
        return -EINVAL;
    }
    const char *t = json_string_value(json_object_get(doc, "type"));
    if (t && strcmp(t, "StreamsSaved") == 0)
        *kind = CLUSTER_NOTE_STREAMS;
    else if (t && strcmp(t, "SessionRevoked") == 0)
        *kind = CLUSTER_NOTE_SESSION_REVOKED;
    else
        FAIL("type must be StreamsSaved or SessionRevoked");
    json_t *v = json_object_get(doc, "v");
    if (!json_is_integer(v) || json_integer_value(v) != CLUSTER_CODEC_VERSION)
        FAIL("v must be %d", CLUSTER_CODEC_VERSION);
    json_t *n = json_object_get(doc, "name");
    if (!json_is_string(n) || json_string_length(n) == 0 || json_string_length(n) > 256)
        FAIL("name must be a string of 1 to 256 characters");
    if (!(*name = strdup(json_string_value(n)))) r = -ENOMEM;
out:
    json_decref(doc);
    return r;
}

int cluster_node_encode(buf_t **bp, const cluster_node_t *n)
{
    int r = buf_puts(bp, "{\"applicationId\":");
    r |= buf_put_json_string(bp, n->application_id ? n->application_id : "");
    r |= buf_puts(bp, ",\"nodeId\":");
    r |= buf_put_json_string(bp, n->node_id ? n->node_id : "");
    r |= buf_printf(bp, ",\"workers\":%d,\"connections\":%llu,\"startedAt\":%lld}", n->workers,
                    (unsigned long long)n->connections, (long long)n->started_at_ms);
    return r ? -ENOMEM : 0;
}

int cluster_node_decode(const char *data, size_t len, json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    json_error_t je;
    json_t *doc = json_loadb(data, len, 0, &je);
    int r = 0;
    if (!doc) {
        snprintf(err, errlen, "not JSON: %s", je.text);
        return -EINVAL;
    }
    const char *app, *node;
    unsigned long long w, c, at;
    if (!json_is_object(doc)) FAIL("the announcement is not a JSON object");
    app = json_string_value(json_object_get(doc, "applicationId"));
    node = json_string_value(json_object_get(doc, "nodeId"));
    if (!app || !node || !*node) FAIL("applicationId and nodeId must be strings, nodeId non-empty");
    if (get_uint(doc, "workers", 1024, &w) < 0 || get_uint(doc, "connections", INT64_MAX, &c) < 0 ||
        get_uint(doc, "startedAt", INT64_MAX, &at) < 0)
        FAIL("workers, connections and startedAt must be non-negative integers");
    if (!(*out = json_pack("{s:s, s:s, s:i, s:I, s:I}", "applicationId", app, "nodeId", node,
                           "workers", (int)w, "connections", (json_int_t)c, "startedAt",
                           (json_int_t)at)))
        r = -ENOMEM;
out:
    json_decref(doc);
    return r;
}

/* ---- redis://host[:port][/db] ---- */

static int parse_uint(const char *s, size_t n, unsigned long max, unsigned long *out)
{
    if (n == 0 || n > 5) return -EINVAL;
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -EINVAL;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > max) return -EINVAL;
    *out = v;
    return 0;
}

int cluster_redis_url_parse(const char *url, cluster_redis_url_t *out, char *err, size_t errlen)
{
    static const char scheme[] = "redis://";
    memset(out, 0, sizeof(*out));
    out->port = 6379;
#define URL_FAIL(what)                                                                             \
    do {                                                                                           \
        snprintf(err, errlen, "redis URL \"%.200s\": %s (expected redis://host[:port][/db])",      \
                 url ? url : "", what);                                                            \
        return -EINVAL;                                                                            \
    } while (0)
    if (!url || strncmp(url, scheme, sizeof(scheme) - 1) != 0)
        URL_FAIL("the scheme must be redis://");
    const char *s = url + sizeof(scheme) - 1;
    if (strchr(s, '@')) URL_FAIL("credentials are not supported");
    const char *h = s, *he;
    if (*s == '[') {
        h = s + 1;
        he = strchr(h, ']');
        if (!he || he == h) URL_FAIL("an IPv6 address must be written [addr]");
        for (const char *c = h; c < he; c++)
            if (!strchr("0123456789abcdefABCDEF:.", *c))
                URL_FAIL("bad character in the IPv6 address");
        s = he + 1;
    } else {
        he = s;
        while (*he && *he != ':' && *he != '/') {
            char c = *he;
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  c == '-' || c == '.' || c == '_'))
                URL_FAIL("bad character in the host");
            he++;
        }
        if (he == h) URL_FAIL("the host is missing");
        s = he;
    }
    if ((size_t)(he - h) >= sizeof(out->host)) URL_FAIL("the host is too long");
    memcpy(out->host, h, (size_t)(he - h));
    out->host[he - h] = '\0';
    unsigned long v;
    if (*s == ':') {
        const char *pe = s + 1;
        while (*pe && *pe != '/')
            pe++;
        if (parse_uint(s + 1, (size_t)(pe - s - 1), 65535, &v) < 0 || v == 0)
            URL_FAIL("the port must be a number from 1 to 65535");
        out->port = (int)v;
        s = pe;
    }
    if (*s == '/') {
        s++;
        if (*s) {
            if (parse_uint(s, strlen(s), 65535, &v) < 0)
                URL_FAIL("the database must be a number from 0 to 65535");
            out->db = (int)v;
        }
        s += strlen(s);
    }
    if (*s) URL_FAIL("unexpected characters after the host");
#undef URL_FAIL
    return 0;
}

/* ---- client listing ---- */

#define MAX_ROLES 1024

int cluster_list_query_encode(buf_t **bp, const client_query_t *q, const char *application_id)
{
    int r = buf_printf(bp, "{\"type\":\"ClientListRequest\",\"v\":%d", CLUSTER_CODEC_VERSION);
    r |= buf_puts(bp, ",\"originId\":{\"applicationId\":");
    r |= buf_put_json_string(bp, application_id ? application_id : "");
    r |= buf_puts(bp, ",\"nodeId\":");
    r |= buf_put_json_string(bp, q->origin_node ? q->origin_node : "");
    r |= buf_printf(bp, "},\"originWorker\":%d,\"token\":%llu", q->origin_worker,
                    (unsigned long long)q->token);
    r |= put_key_str(bp, "clientIdPattern", q->client_pat);
    r |= put_key_str(bp, "rolePattern", q->role_pat);
    r |= put_key_str(bp, "sessionIdPattern", q->session_pat);
    r |= put_key_str(bp, "tenant", q->tenant);
    r |= buf_printf(bp, ",\"limit\":%u}", q->limit);
    return r ? -ENOMEM : 0;
}

int cluster_list_query_decode(const char *data, size_t len, client_query_t **out, char *err,
                              size_t errlen)
{
    *out = NULL;
    json_error_t je;
    json_t *doc = json_loadb(data, len, 0, &je);
    client_query_t *q = NULL;
    int r = 0;
    if (!doc) {
        snprintf(err, errlen, "not JSON: %s", je.text);
        return -EINVAL;
    }
    if ((r = check_header(doc, "ClientListRequest", err, errlen)) < 0) goto out;
    if (!(q = client_query_new())) {
        r = -ENOMEM;
        goto out;
    }
    const char *app, *node;
    if (origin_node(doc, &app, &node) < 0)
        FAIL("originId must be {applicationId, nodeId} with a non-empty nodeId");
    if (!(q->origin_node = strdup(node))) {
        r = -ENOMEM;
        goto out;
    }
    unsigned long long u;
    if (get_uint(doc, "originWorker", 65535, &u) < 0)
        FAIL("originWorker must be an integer from 0 to 65535");
    q->origin_worker = (int)u;
    if (get_uint(doc, "token", (unsigned long long)INT64_MAX, &u) < 0)
        FAIL("token must be a non-negative integer");
    q->token = u;
    if (get_uint(doc, "limit", CLIENTS_LIMIT_MAX, &u) < 0)
        FAIL("limit must be an integer from 0 to %d", CLIENTS_LIMIT_MAX);
    q->limit = (uint32_t)u;
    static const char *const strs[] = {"clientIdPattern", "rolePattern", "sessionIdPattern",
                                       "tenant"};
    char **dst[] = {&q->client_pat, &q->role_pat, &q->session_pat, &q->tenant};
    for (int i = 0; i < 4; i++) {
        int sr = opt_string(doc, strs[i], dst[i]);
        if (sr == -ENOMEM) {
            r = sr;
            goto out;
        }
        if (sr < 0) FAIL("%s must be a string or null", strs[i]);
    }
out:
    json_decref(doc);
    if (r < 0) {
        client_query_unref(q);
        return r;
    }
    *out = q;
    return 0;
}

int cluster_client_list_encode(buf_t **bp, const client_list_t *l, int origin_worker,
                               uint64_t token)
{
    int r = buf_printf(bp, "{\"type\":\"ClientList\",\"v\":%d,\"originWorker\":%d,\"token\":%llu",
                       CLUSTER_CODEC_VERSION, origin_worker, (unsigned long long)token);
    r |= buf_puts(bp, ",\"originId\":{\"applicationId\":");
    r |= buf_put_json_string(bp, l->application_id ? l->application_id : "");
    r |= buf_puts(bp, ",\"nodeId\":");
    r |= buf_put_json_string(bp, l->node_id ? l->node_id : "");
    r |= buf_printf(bp, "},\"matched\":%llu,\"rows\":[", (unsigned long long)l->matched);
    for (size_t i = 0; i < l->n && r == 0; i++) {
        const client_row_t *row = &l->rows[i];
        r |= buf_puts(bp, i ? ",{\"clientId\":" : "{\"clientId\":");
        r |= buf_put_json_string(bp, row->client_id ? row->client_id : "");
        r |= put_key_str(bp, "sessionId", row->session_id ? row->session_id : "");
        r |= put_key_str(bp, "user", row->user);
        r |= put_key_str(bp, "tenant", row->tenant);
        r |= put_key_str(bp, "transport", row->transport);
        r |= buf_puts(bp, ",\"roles\":[");
        for (size_t j = 0; j < row->n_roles; j++) {
            if (j) r |= buf_puts(bp, ",");
            r |= buf_put_json_string(bp, row->roles[j] ? row->roles[j] : "");
        }
        r |= buf_printf(bp, "],\"worker\":%d,\"connectedAt\":%lld,\"topicsOnly\":%s}", row->worker,
                        (long long)row->connected_at_ms, row->topics_only ? "true" : "false");
    }
    r |= buf_puts(bp, "]");
    json_t *const counts[2] = {l->by_transport, l->by_tenant};
    static const char *const keys[2] = {"byTransport", "byTenant"};
    for (int i = 0; i < 2 && r == 0; i++) {
        char *c = counts[i] ? json_dumps(counts[i], JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        if (counts[i] && !c) return -ENOMEM;
        r |= buf_printf(bp, ",\"%s\":%s", keys[i], c ? c : "{}");
        free(c);
    }
    r |= buf_puts(bp, "}");
    return r ? -ENOMEM : 0;
}

#define MAX_COUNT_KEYS 65536

/* A {name: n} count object of a ClientList into a new object in *out (NULL when
 * empty). Returns 0, -EINVAL, -ENOMEM. */
static int decode_counts(json_t *v, json_t **out)
{
    *out = NULL;
    if (!json_is_object(v) || json_object_size(v) > MAX_COUNT_KEYS) return -EINVAL;
    const char *k;
    json_t *n;
    json_object_foreach(v, k, n)
    {
        if (!json_is_integer(n) || json_integer_value(n) < 0) return -EINVAL;
    }
    if (json_object_size(v) && !(*out = json_deep_copy(v))) return -ENOMEM;
    return 0;
}

/* One row of a ClientList into l. Returns 0, -EINVAL, -ENOMEM. */
static int decode_row(json_t *e, client_list_t *l)
{
    static const char *const keys[] = {"user", "tenant", "transport"};
    const char *cid = json_string_value(json_object_get(e, "clientId"));
    const char *sid = json_string_value(json_object_get(e, "sessionId"));
    const char *opt[3];
    for (int i = 0; i < 3; i++) {
        json_t *v = json_object_get(e, keys[i]);
        if (v && !json_is_null(v) && !json_is_string(v)) return -EINVAL;
        opt[i] = json_string_value(v);
    }
    json_t *roles = json_object_get(e, "roles"), *w = json_object_get(e, "worker");
    json_t *at = json_object_get(e, "connectedAt"), *to = json_object_get(e, "topicsOnly");
    if (!cid || !sid || !json_is_array(roles) || json_array_size(roles) > MAX_ROLES ||
        !json_is_integer(w) || json_integer_value(w) < 0 || json_integer_value(w) > 65535 ||
        !json_is_integer(at) || !json_is_boolean(to))
        return -EINVAL;
    size_t nr = json_array_size(roles);
    const char **rs = calloc(nr ? nr : 1, sizeof(*rs));
    if (!rs) return -ENOMEM;
    for (size_t i = 0; i < nr; i++)
        if (!(rs[i] = json_string_value(json_array_get(roles, i)))) {
            free(rs);
            return -EINVAL;
        }
    client_row_t row = {
        .client_id = (char *)cid,
        .session_id = (char *)sid,
        .user = (char *)opt[0],
        .tenant = (char *)opt[1],
        .transport = (char *)opt[2],
        .roles = (char **)rs,
        .n_roles = nr,
        .worker = (int)json_integer_value(w),
        .topics_only = json_is_true(to),
        .connected_at_ms = (int64_t)json_integer_value(at),
    };
    int r = client_list_add(l, &row, CLIENTS_LIMIT_MAX); /* borrowed strings: copied */
    free(rs);
    return r < 0 ? r : 0;
}

int cluster_client_list_decode(const char *data, size_t len, client_list_t *l, int *origin_worker,
                               uint64_t *token, char *err, size_t errlen)
{
    client_list_init(l);
    json_error_t je;
    json_t *doc = json_loadb(data, len, 0, &je);
    int r = 0;
    if (!doc) {
        snprintf(err, errlen, "not JSON: %s", je.text);
        return -EINVAL;
    }
    if ((r = check_header(doc, "ClientList", err, errlen)) < 0) goto out;
    unsigned long long u, matched;
    if (get_uint(doc, "originWorker", 65535, &u) < 0)
        FAIL("originWorker must be an integer from 0 to 65535");
    *origin_worker = (int)u;
    if (get_uint(doc, "token", (unsigned long long)INT64_MAX, &u) < 0)
        FAIL("token must be a non-negative integer");
    *token = u;
    const char *app, *node;
    if (origin_node(doc, &app, &node) < 0)
        FAIL("originId must be {applicationId, nodeId} with a non-empty nodeId");
    if (get_uint(doc, "matched", (unsigned long long)INT64_MAX, &matched) < 0)
        FAIL("matched must be a non-negative integer");
    json_t *rows = json_object_get(doc, "rows");
    if (!json_is_array(rows) || json_array_size(rows) > CLIENTS_LIMIT_MAX ||
        json_array_size(rows) > matched)
        FAIL("rows must be an array of at most %d rows and at most matched", CLIENTS_LIMIT_MAX);
    size_t i;
    json_t *e;
    json_array_foreach(rows, i, e)
    {
        int dr = decode_row(e, l);
        if (dr == -ENOMEM) {
            r = dr;
            goto out;
        }
        if (dr < 0)
            FAIL("rows[%zu] must be {clientId, sessionId, user, tenant, transport, roles, worker, "
                 "connectedAt, topicsOnly}",
                 i);
    }
    l->matched = matched;
    /* the counts travel on their own (rows stop at the limit; counts do not) */
    json_decref(l->by_transport);
    json_decref(l->by_tenant);
    l->by_transport = l->by_tenant = NULL;
    static const char *const ckeys[2] = {"byTransport", "byTenant"};
    json_t **cdst[2] = {&l->by_transport, &l->by_tenant};
    for (int k = 0; k < 2; k++) {
        int cr = decode_counts(json_object_get(doc, ckeys[k]), cdst[k]);
        if (cr == -ENOMEM) {
            r = cr;
            goto out;
        }
        if (cr < 0) FAIL("%s must be an object of non-negative integers", ckeys[k]);
    }
    if (!(l->application_id = strdup(app)) || !(l->node_id = strdup(node))) r = -ENOMEM;
out:
    json_decref(doc);
    if (r < 0) client_list_free(l);
    return r;
}

int cluster_msg_kind(const char *data, size_t len)
{
    static const char q[] = "{\"type\":\"ClientListRequest\"";
    static const char c[] = "{\"type\":\"ClientList\"";
    if (len >= sizeof(q) - 1 && memcmp(data, q, sizeof(q) - 1) == 0) return CLUSTER_MSG_LIST_QUERY;
    if (len >= sizeof(c) - 1 && memcmp(data, c, sizeof(c) - 1) == 0) return CLUSTER_MSG_CLIENT_LIST;
    return CLUSTER_MSG_OTHER;
}
