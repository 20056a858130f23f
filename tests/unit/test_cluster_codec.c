/* cluster/codec: InternalPushRequest and node report round trips (every field), notes
 * and announcements, malformed documents refused with a message naming the field,
 * every truncation refused (inputs end at a guard page), and the strict redis URL. */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cluster/codec.h"
#include "core/ids.h"
#include "guard.h"

static push_t *full_push(void)
{
    push_t *p = push_new();
    cr_assert_not_null(p);
    char *topics[] = {"chan:news", "stream:t1:health"};
    cr_assert_eq(push_set_topics(p, topics, 2), 0);
    p->kind = PUSH_KIND_CHANNEL;
    p->client_pat = strdup("tribefire-.*");
    p->role_pat = strdup("\\$user-john");
    p->session_pat = strdup("s-\"quoted\"");
    p->tenant = strdup("t1");
    p->event = strdup("flash\nnews");
    p->payload = strdup("{\"a\":[1,2.5,\"x\"],\"b\":null,\"c\":{\"d\":true}}");
    p->payload_len = strlen(p->payload);
    p->await_acks = 1;
    p->timeout_ms = 1234;
    p->report_mode = PUSH_REPORT_SUMMARY;
    p->origin_node = strdup("node-7");
    p->origin_worker = 3;
    p->origin_token = 9007199254740993ULL;
    p->created_ms = 1795453927930LL;
    return p;
}

static buf_t *encode_push(const push_t *p)
{
    buf_t *b = buf_new(64);
    cr_assert_not_null(b);
    cr_assert_eq(cluster_push_encode(&b, p, "app"), 0);
    return b;
}

static void expect_same_str(const char *a, const char *b, const char *what)
{
    if (!a || !b)
        cr_assert(a == b, "%s: %s vs %s", what, a ? a : "NULL", b ? b : "NULL");
    else
        cr_assert_str_eq(a, b, "%s", what);
}

Test(cluster_codec, push_round_trip_every_field)
{
    push_t *p = full_push();
    buf_t *b = encode_push(p);
    guard_t g = {0};
    const char *in = guard_copy(&g, b->data, b->len);
    push_t *q = NULL;
    char err[256];
    int r = cluster_push_decode(in, b->len, &q, err, sizeof(err));
    cr_assert_eq(r, 0, "%s: %s", err, b->data);
    cr_assert_str_eq(q->id, p->id);
    cr_assert_eq(q->kind, p->kind);
    expect_same_str(q->client_pat, p->client_pat, "clientIdPattern");
    expect_same_str(q->role_pat, p->role_pat, "rolePattern");
    expect_same_str(q->session_pat, p->session_pat, "sessionIdPattern");
    expect_same_str(q->tenant, p->tenant, "tenant");
    expect_same_str(q->event, p->event, "event");
    cr_assert_eq(q->n_topics, 2);
    cr_assert_str_eq(q->topics[0], "chan:news");
    cr_assert_str_eq(q->topics[1], "stream:t1:health");
    cr_assert_str_eq(q->payload, p->payload, "raw JSON payload kept byte for byte");
    cr_assert_eq(q->payload_len, p->payload_len);
    cr_assert_eq(q->await_acks, 1);
    cr_assert_eq(q->timeout_ms, 1234);
    cr_assert_eq(q->report_mode, PUSH_REPORT_SUMMARY);
    cr_assert_str_eq(q->origin_node, "node-7");
    cr_assert_eq(q->origin_worker, 3);
    cr_assert_eq(q->origin_token, 9007199254740993ULL);
    cr_assert_eq(q->created_ms, 1795453927930LL);
    cr_assert_str_eq(push_channel(q, 0), "news");
    /* encoding the decoded push gives the same document */
    buf_t *b2 = encode_push(q);
    cr_assert_eq(b2->len, b->len);
    cr_assert(memcmp(b2->data, b->data, b->len) == 0, "%s\nvs\n%s", b2->data, b->data);
    buf_unref(b2);
    guard_release(&g);
    buf_unref(b);
    push_unref(p);
    push_unref(q);
}

Test(cluster_codec, push_minimal_nulls_and_scalar_payloads)
{
    static const char *payloads[] = {"null", "\"text\"", "42", "-1.5e+300", "[]", "{}"};
    for (size_t i = 0; i < sizeof(payloads) / sizeof(*payloads); i++) {
        push_t *p = push_new();
        p->origin_node = strdup("n1");
        p->payload = strdup(payloads[i]);
        p->payload_len = strlen(payloads[i]);
        p->report_mode = i % 3;
        p->kind = (int)(i % 3);
        buf_t *b = encode_push(p);
        push_t *q = NULL;
        char err[256];
        cr_assert_eq(cluster_push_decode(b->data, b->len, &q, err, sizeof(err)), 0, "%s", err);
        cr_assert_null(q->client_pat);
        cr_assert_null(q->tenant);
        cr_assert_null(q->event);
        cr_assert_eq(q->n_topics, 0);
        cr_assert_eq(q->report_mode, (int)(i % 3));
        cr_assert_eq(q->kind, (int)(i % 3));
        json_t *a = json_loads(p->payload, JSON_DECODE_ANY, NULL);
        json_t *c = json_loads(q->payload, JSON_DECODE_ANY, NULL);
        cr_assert(json_equal(a, c), "payload %s came back as %s", p->payload, q->payload);
        json_decref(a);
        json_decref(c);
        buf_unref(b);
        push_unref(p);
        push_unref(q);
    }
}

Test(cluster_codec, push_every_truncation_is_refused)
{
    push_t *p = full_push();
    buf_t *b = encode_push(p);
    for (size_t n = 0; n < b->len; n++) {
        guard_t g = {0};
        const char *in = guard_copy(&g, b->data, n);
        push_t *q = (push_t *)1;
        char err[256];
        cr_assert_eq(cluster_push_decode(in, n, &q, err, sizeof(err)), -EINVAL, "prefix %zu", n);
        cr_assert_null(q);
        guard_release(&g);
    }
    buf_unref(b);
    push_unref(p);
}

/* Replaces key's value in the encoded full push with value, decodes, and expects
 * -EINVAL with a message that names the key. */
static void expect_bad(const char *key, const char *value)
{
    push_t *p = full_push();
    buf_t *b = encode_push(p);
    json_t *doc = json_loadb(b->data, b->len, 0, NULL);
    cr_assert_not_null(doc);
    if (value)
        json_object_set_new(doc, key, json_loads(value, JSON_DECODE_ANY, NULL));
    else
        json_object_del(doc, key);
    char *s = json_dumps(doc, JSON_COMPACT);
    push_t *q = NULL;
    char err[256] = "";
    cr_assert_eq(cluster_push_decode(s, strlen(s), &q, err, sizeof(err)), -EINVAL, "%s=%s", key,
                 value ? value : "(absent)");
    cr_assert_null(q);
    const char *name = strcmp(key, "v") == 0 ? "v must" : key;
    cr_assert(strstr(err, name) != NULL, "error \"%s\" does not name %s", err, key);
    free(s);
    json_decref(doc);
    buf_unref(b);
    push_unref(p);
}

Test(cluster_codec, push_malformed_fields)
{
    expect_bad("type", "\"PushReport\"");
    expect_bad("v", "2");
    expect_bad("id", NULL);
    expect_bad("id", "\"\"");
    expect_bad("id", "\"a\\nid: forged\"");
    expect_bad("id", "\"0123456789012345678901234567890123456789012345678\"");
    expect_bad("kind", "\"other\"");
    expect_bad("originId", "{\"applicationId\":\"a\"}");
    expect_bad("originId", "{\"applicationId\":\"a\",\"nodeId\":\"\"}");
    expect_bad("originWorker", "-1");
    expect_bad("originWorker", "70000");
    expect_bad("token", "\"1\"");
    expect_bad("token", "-5");
    expect_bad("createdMs", "1.5");
    expect_bad("timeoutMs", "4294967296");
    expect_bad("awaitAcks", "1");
    expect_bad("report", "\"all\"");
    expect_bad("clientIdPattern", "5");
    expect_bad("tenant", "[]");
    expect_bad("event", "{}");
    expect_bad("topics", "\"chan:a\"");
    expect_bad("topics", "[\"chan:a\", 1]");
    expect_bad("topics", "[\"\"]");
    expect_bad("payload", NULL);
}

Test(cluster_codec, push_not_json_or_not_object)
{
    static const char *bad[] = {"",
                                "[]",
                                "null",
                                "{",
                                "{\"type\":\"InternalPushRequest\"",
                                "\"x\"",
                                "{\"type\":\"InternalPushRequest\",\"v\":1}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        push_t *q = NULL;
        char err[256];
        cr_assert_eq(cluster_push_decode(bad[i], strlen(bad[i]), &q, err, sizeof(err)), -EINVAL,
                     "%s", bad[i]);
        cr_assert_null(q);
    }
    /* a NUL inside a string is refused, not truncated */
    const char nul[] = "{\"type\":\"InternalPushRequest\",\"v\":1,\"id\":\"a\\u0000b\"}";
    push_t *q = NULL;
    char err[256];
    cr_assert_eq(cluster_push_decode(nul, sizeof(nul) - 1, &q, err, sizeof(err)), -EINVAL);
}

static report_t sample_report(int keep)
{
    report_t r;
    report_init(&r, keep);
    r.application_id = strdup("app");
    r.node_id = strdup("n2");
    report_add(&r, "c1", "s1", 1, "delivered");
    report_add(&r, "c\"2", "s\n2", 0, "slow consumer");
    report_add(&r, "c3", "s3", 1, "delivered");
    if (keep) report_set(&r, 2, 1, "ok from the client", 1);
    return r;
}

Test(cluster_codec, report_round_trip_full_and_summary)
{
    for (int keep = 0; keep <= 1; keep++) {
        report_t r = sample_report(keep);
        buf_t *b = buf_new(64);
        cr_assert_eq(cluster_report_encode(&b, &r, "push-1", 5, 77), 0);
        guard_t g = {0};
        const char *in = guard_copy(&g, b->data, b->len);
        report_t d;
        int w = -1;
        uint64_t tok = 0;
        char err[256];
        cr_assert_eq(cluster_report_decode(in, b->len, &d, &w, &tok, err, sizeof(err)), 0, "%s",
                     err);
        cr_assert_eq(w, 5);
        cr_assert_eq(tok, 77);
        cr_assert_str_eq(d.application_id, "app");
        cr_assert_str_eq(d.node_id, "n2");
        cr_assert_eq(d.keep_entries, keep);
        cr_assert_eq(d.matched, r.matched);
        cr_assert_eq(d.delivered, r.delivered);
        cr_assert_eq(d.failed, r.failed);
        cr_assert_eq(d.acknowledged, r.acknowledged);
        cr_assert_eq(d.n, r.n);
        for (size_t i = 0; i < d.n; i++) {
            cr_assert_str_eq(d.e[i].client_id, r.e[i].client_id);
            cr_assert_str_eq(d.e[i].session_id, r.e[i].session_id);
            cr_assert_str_eq(d.e[i].message, r.e[i].message);
            cr_assert_eq(d.e[i].successful, r.e[i].successful);
            cr_assert_eq(d.e[i].acknowledged, r.e[i].acknowledged);
        }
        for (size_t n = 0; n < b->len; n++) {
            report_t t;
            cr_assert_eq(cluster_report_decode(b->data, n, &t, &w, &tok, err, sizeof(err)), -EINVAL,
                         "prefix %zu", n);
            cr_assert_eq(t.n, 0);
            cr_assert_null(t.node_id);
        }
        guard_release(&g);
        report_free(&d);
        report_free(&r);
        buf_unref(b);
    }
}

Test(cluster_codec, report_malformed)
{
    static const char *bad[] = {
        "{\"type\":\"InternalPushRequest\",\"v\":1}",
        "{\"type\":\"PushReport\",\"v\":1,\"originWorker\":-1}",
        "{\"type\":\"PushReport\",\"v\":1,\"originWorker\":0,\"token\":1,\"originId\":{}}",
        "{\"type\":\"PushReport\",\"v\":1,\"originWorker\":0,\"token\":1,\"originId\":"
        "{\"applicationId\":\"a\",\"nodeId\":\"n\"},\"keepEntries\":false,\"matched\":1,"
        "\"delivered\":1,\"failed\":0,\"acknowledged\":0,\"entries\":[{\"clientId\":\"c\"}]}",
        "{\"type\":\"PushReport\",\"v\":1,\"originWorker\":0,\"token\":1,\"originId\":"
        "{\"applicationId\":\"a\",\"nodeId\":\"n\"},\"keepEntries\":true,\"matched\":1,"
        "\"delivered\":1,\"failed\":0,\"acknowledged\":0,\"entries\":[{\"clientId\":\"c\"}]}",
        "{\"type\":\"PushReport\",\"v\":1,\"originWorker\":0,\"token\":1,\"originId\":"
        "{\"applicationId\":\"a\",\"nodeId\":\"n\"},\"keepEntries\":true,\"matched\":-1,"
        "\"delivered\":1,\"failed\":0,\"acknowledged\":0,\"entries\":[]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        report_t r;
        int w;
        uint64_t t;
        char err[256];
        cr_assert_eq(cluster_report_decode(bad[i], strlen(bad[i]), &r, &w, &t, err, sizeof(err)),
                     -EINVAL, "%s", bad[i]);
        cr_assert_eq(r.n, 0);
    }
}

Test(cluster_codec, notes_and_announcements)
{
    buf_t *b = buf_new(16);
    cr_assert_eq(cluster_note_encode(&b, CLUSTER_NOTE_STREAMS, "tenant \"a\""), 0);
    int kind = 0;
    char *name = NULL;
    char err[256];
    cr_assert_eq(cluster_note_decode(b->data, b->len, &kind, &name, err, sizeof(err)), 0, "%s",
                 err);
    cr_assert_eq(kind, CLUSTER_NOTE_STREAMS);
    cr_assert_str_eq(name, "tenant \"a\"");
    free(name);
    b->len = 0;
    cr_assert_eq(cluster_note_encode(&b, CLUSTER_NOTE_SESSION_REVOKED, "s-1"), 0);
    cr_assert_eq(cluster_note_decode(b->data, b->len, &kind, &name, err, sizeof(err)), 0);
    cr_assert_eq(kind, CLUSTER_NOTE_SESSION_REVOKED);
    cr_assert_str_eq(name, "s-1");
    free(name);
    static const char *bad_notes[] = {"{}", "{\"type\":\"StreamsSaved\",\"v\":1}",
                                      "{\"type\":\"StreamsSaved\",\"v\":1,\"name\":\"\"}",
                                      "{\"type\":\"Other\",\"v\":1,\"name\":\"x\"}", "[1]"};
    for (size_t i = 0; i < sizeof(bad_notes) / sizeof(*bad_notes); i++) {
        cr_assert_eq(
            cluster_note_decode(bad_notes[i], strlen(bad_notes[i]), &kind, &name, err, sizeof(err)),
            -EINVAL, "%s", bad_notes[i]);
        cr_assert_null(name);
    }

    b->len = 0;
    cluster_node_t me = {"app", "n\"1", 4, 12345, 1795453927930LL};
    cr_assert_eq(cluster_node_encode(&b, &me), 0);
    json_t *doc = NULL;
    cr_assert_eq(cluster_node_decode(b->data, b->len, &doc, err, sizeof(err)), 0, "%s", err);
    json_t *want =
        json_pack("{s:s, s:s, s:i, s:I, s:I}", "applicationId", "app", "nodeId", "n\"1", "workers",
                  4, "connections", (json_int_t)12345, "startedAt", (json_int_t)1795453927930LL);
    cr_assert(json_equal(doc, want));
    json_decref(doc);
    json_decref(want);
    static const char *bad_nodes[] = {
        "{\"applicationId\":\"a\",\"nodeId\":\"\",\"workers\":1,\"connections\":0,\"startedAt\":1}",
        "{\"applicationId\":\"a\",\"nodeId\":\"n\",\"workers\":-1,\"connections\":0,\"startedAt\":"
        "1}",
        "{\"applicationId\":\"a\",\"nodeId\":\"n\",\"workers\":1,\"connections\":0}", "7"};
    for (size_t i = 0; i < sizeof(bad_nodes) / sizeof(*bad_nodes); i++) {
        cr_assert_eq(
            cluster_node_decode(bad_nodes[i], strlen(bad_nodes[i]), &doc, err, sizeof(err)),
            -EINVAL, "%s", bad_nodes[i]);
        cr_assert_null(doc);
    }
    buf_unref(b);
}

Test(cluster_codec, redis_url_valid)
{
    static const struct {
        const char *url, *host;
        int port, db;
    } ok[] = {
        {"redis://127.0.0.1:6380", "127.0.0.1", 6380, 0},
        {"redis://localhost", "localhost", 6379, 0},
        {"redis://redis.internal:1/15", "redis.internal", 1, 15},
        {"redis://h/", "h", 6379, 0},
        {"redis://h/3", "h", 6379, 3},
        {"redis://[::1]:7000/2", "::1", 7000, 2},
        {"redis://my_host-1:65535", "my_host-1", 65535, 0},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++) {
        cluster_redis_url_t u;
        char err[256];
        cr_assert_eq(cluster_redis_url_parse(ok[i].url, &u, err, sizeof(err)), 0, "%s: %s",
                     ok[i].url, err);
        cr_assert_str_eq(u.host, ok[i].host);
        cr_assert_eq(u.port, ok[i].port, "%s", ok[i].url);
        cr_assert_eq(u.db, ok[i].db, "%s", ok[i].url);
    }
}

Test(cluster_codec, redis_url_invalid_names_it)
{
    static const char *bad[] = {
        "",
        "http://h:1",
        "redis:/h",
        "redis://",
        "redis://:6379",
        "redis://h:0",
        "redis://h:65536",
        "redis://h:12a",
        "redis://h:",
        "redis://h:1/x",
        "redis://h:1/1/2",
        "redis://u:p@h",
        "redis://h?db=1",
        "redis://[::1",
        "redis://[]:1",
        "redis://h h",
        "REDIS://h",
        "rediss://h",
        "redis://h:1/99999999",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        cluster_redis_url_t u;
        char err[256] = "";
        cr_assert_eq(cluster_redis_url_parse(bad[i], &u, err, sizeof(err)), -EINVAL, "%s", bad[i]);
        char want[64];
        snprintf(want, sizeof(want), "redis URL \"%.40s\"", bad[i]);
        cr_assert(strncmp(err, want, strlen(want)) == 0, "error \"%s\" does not name %s", err,
                  bad[i]);
    }
    char err[256];
    cluster_redis_url_t u;
    cr_assert_eq(cluster_redis_url_parse(NULL, &u, err, sizeof(err)), -EINVAL);
}

/* ---- client listing ---- */

static client_query_t *sample_query(void)
{
    client_query_t *q = client_query_new();
    cr_assert_not_null(q);
    q->origin_node = strdup("node-\"9\"");
    q->origin_worker = 2;
    q->token = 9007199254740993ULL;
    q->client_pat = strdup("c[0-9]+");
    q->role_pat = strdup("\\$user-john");
    q->tenant = strdup("t1");
    q->limit = 25;
    return q;
}

Test(cluster_codec, list_query_round_trip_and_kind)
{
    client_query_t *q = sample_query();
    buf_t *b = buf_new(16);
    cr_assert_eq(cluster_list_query_encode(&b, q, "app"), 0);
    cr_assert_eq(cluster_msg_kind(b->data, b->len), CLUSTER_MSG_LIST_QUERY);
    guard_t g = {0};
    const char *in = guard_copy(&g, b->data, b->len);
    client_query_t *d = NULL;
    char err[256];
    cr_assert_eq(cluster_list_query_decode(in, b->len, &d, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(d->origin_node, "node-\"9\"");
    cr_assert_eq(d->origin_worker, 2);
    cr_assert_eq(d->token, 9007199254740993ULL);
    cr_assert_str_eq(d->client_pat, "c[0-9]+");
    cr_assert_str_eq(d->role_pat, "\\$user-john");
    cr_assert_null(d->session_pat);
    cr_assert_str_eq(d->tenant, "t1");
    cr_assert_eq(d->limit, 25);
    guard_release(&g);
    client_query_unref(d);
    d = NULL;
    /* every truncation is refused */
    for (size_t n = 0; n < b->len; n++) {
        client_query_t *t = NULL;
        cr_assert_eq(cluster_list_query_decode(b->data, n, &t, err, sizeof(err)), -EINVAL,
                     "len %zu", n);
        cr_assert_null(t);
    }
    /* a push is not a listing, and the other way round */
    push_t *p = full_push();
    buf_t *pb = encode_push(p);
    cr_assert_eq(cluster_msg_kind(pb->data, pb->len), CLUSTER_MSG_OTHER);
    cr_assert_eq(cluster_list_query_decode(pb->data, pb->len, &d, err, sizeof(err)) == -EINVAL, 1);
    push_t *pp = NULL;
    cr_assert_eq(cluster_push_decode(b->data, b->len, &pp, err, sizeof(err)), -EINVAL);
    client_query_unref(q);
    push_unref(p);
    buf_unref(pb);
    buf_unref(b);
}

Test(cluster_codec, list_query_malformed)
{
    static const char *const bad[] = {
        "{\"type\":\"ClientListRequest\",\"v\":1,\"originId\":{\"applicationId\":\"a\","
        "\"nodeId\":\"n\"},\"originWorker\":0,\"token\":1,\"limit\":-1}",
        "{\"type\":\"ClientListRequest\",\"v\":1,\"originId\":{\"applicationId\":\"a\","
        "\"nodeId\":\"n\"},\"originWorker\":0,\"token\":1,\"limit\":10001}",
        "{\"type\":\"ClientListRequest\",\"v\":1,\"originId\":{\"applicationId\":\"a\","
        "\"nodeId\":\"\"},\"originWorker\":0,\"token\":1,\"limit\":5}",
        "{\"type\":\"ClientListRequest\",\"v\":1,\"originId\":{\"applicationId\":\"a\","
        "\"nodeId\":\"n\"},\"originWorker\":-1,\"token\":1,\"limit\":5}",
        "{\"type\":\"ClientListRequest\",\"v\":1,\"originId\":{\"applicationId\":\"a\","
        "\"nodeId\":\"n\"},\"originWorker\":0,\"token\":1,\"limit\":5,\"tenant\":7}",
        "{\"type\":\"ClientListRequest\",\"v\":2,\"originId\":{\"applicationId\":\"a\","
        "\"nodeId\":\"n\"},\"originWorker\":0,\"token\":1,\"limit\":5}",
        "[1]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        client_query_t *q = NULL;
        char err[256] = "";
        cr_assert_eq(cluster_list_query_decode(bad[i], strlen(bad[i]), &q, err, sizeof(err)),
                     -EINVAL, "case %zu", i);
        cr_assert_null(q);
        cr_assert(err[0], "case %zu names the problem", i);
    }
    const char *ok =
        "{\"type\":\"ClientListRequest\",\"v\":1,\"originId\":{\"applicationId\":\"a\","
        "\"nodeId\":\"n\"},\"originWorker\":0,\"token\":1,\"limit\":5}";
    client_query_t *q = NULL;
    char err[256];
    cr_assert_eq(cluster_list_query_decode(ok, strlen(ok), &q, err, sizeof(err)), 0, "%s", err);
    cr_assert_null(q->client_pat);
    cr_assert_null(q->tenant);
    client_query_unref(q);
}

static void sample_list(client_list_t *l)
{
    client_list_init(l);
    l->application_id = strdup("app");
    l->node_id = strdup("n2");
    char *roles[] = {"tf-locksmith", "$user-john"};
    client_row_t a = {.client_id = "c1",
                      .session_id = "s-john",
                      .user = "john",
                      .tenant = "t1",
                      .transport = "websocket",
                      .roles = roles,
                      .n_roles = 2,
                      .worker = 1,
                      .connected_at_ms = 1795453927930LL};
    client_row_t b = {.client_id = "c\"2\"",
                      .session_id = "s-x",
                      .transport = "sse",
                      .topics_only = 1,
                      .connected_at_ms = 5};
    cr_assert_eq(client_list_add(l, &a, 10), 1);
    cr_assert_eq(client_list_add(l, &b, 10), 1);
    cr_assert_eq(client_list_add(l, &b, 2), 0); /* past the limit: counted only */
    cr_assert_eq(l->n, 2);
    cr_assert_eq(l->matched, 3);
}

Test(cluster_codec, client_list_round_trip)
{
    client_list_t l;
    sample_list(&l);
    buf_t *b = buf_new(16);
    cr_assert_eq(cluster_client_list_encode(&b, &l, 3, 77), 0);
    cr_assert_eq(cluster_msg_kind(b->data, b->len), CLUSTER_MSG_CLIENT_LIST);
    guard_t g = {0};
    const char *in = guard_copy(&g, b->data, b->len);
    client_list_t d;
    int w;
    uint64_t token;
    char err[256];
    cr_assert_eq(cluster_client_list_decode(in, b->len, &d, &w, &token, err, sizeof(err)), 0, "%s",
                 err);
    cr_assert_eq(w, 3);
    cr_assert_eq(token, 77);
    cr_assert_str_eq(d.node_id, "n2");
    cr_assert_eq(d.n, 2);
    cr_assert_eq(d.matched, 3);
    cr_assert_str_eq(d.rows[0].client_id, "c1");
    cr_assert_str_eq(d.rows[0].user, "john");
    cr_assert_str_eq(d.rows[0].tenant, "t1");
    cr_assert_eq(d.rows[0].n_roles, 2);
    cr_assert_str_eq(d.rows[0].roles[1], "$user-john");
    cr_assert_eq(d.rows[0].worker, 1);
    cr_assert_eq(d.rows[0].connected_at_ms, 1795453927930LL);
    cr_assert_str_eq(d.rows[1].client_id, "c\"2\"");
    cr_assert_null(d.rows[1].user);
    cr_assert_null(d.rows[1].tenant);
    cr_assert_eq(d.rows[1].topics_only, 1);
    /* the counts cover the match past the limit too */
    cr_assert_eq(json_integer_value(json_object_get(d.by_transport, "sse")), 2);
    cr_assert_eq(json_integer_value(json_object_get(d.by_transport, "websocket")), 1);
    cr_assert_eq(json_integer_value(json_object_get(d.by_tenant, "")), 2);
    cr_assert_eq(json_integer_value(json_object_get(d.by_tenant, "t1")), 1);
    guard_release(&g);
    for (size_t n = 0; n < b->len; n++) {
        client_list_t t;
        cr_assert_eq(cluster_client_list_decode(b->data, n, &t, &w, &token, err, sizeof(err)),
                     -EINVAL, "len %zu", n);
        cr_assert_eq(t.n, 0);
    }
    client_list_free(&d);
    client_list_free(&l);
    buf_unref(b);
}

Test(cluster_codec, client_list_malformed)
{
    static const char *const bad[] = {
        /* more rows than matched */
        "{\"type\":\"ClientList\",\"v\":1,\"originWorker\":0,\"token\":1,\"originId\":{"
        "\"applicationId\":\"a\",\"nodeId\":\"n\"},\"matched\":0,\"rows\":[{\"clientId\":\"c\","
        "\"sessionId\":\"s\",\"roles\":[],\"worker\":0,\"connectedAt\":1,\"topicsOnly\":false}]}",
        /* a role that is not a string */
        "{\"type\":\"ClientList\",\"v\":1,\"originWorker\":0,\"token\":1,\"originId\":{"
        "\"applicationId\":\"a\",\"nodeId\":\"n\"},\"matched\":1,\"rows\":[{\"clientId\":\"c\","
        "\"sessionId\":\"s\",\"roles\":[1],\"worker\":0,\"connectedAt\":1,\"topicsOnly\":false}]}",
        /* a user that is not a string */
        "{\"type\":\"ClientList\",\"v\":1,\"originWorker\":0,\"token\":1,\"originId\":{"
        "\"applicationId\":\"a\",\"nodeId\":\"n\"},\"matched\":1,\"rows\":[{\"clientId\":\"c\","
        "\"sessionId\":\"s\",\"user\":[],\"roles\":[],\"worker\":0,\"connectedAt\":1,"
        "\"topicsOnly\":false}]}",
        /* no topicsOnly */
        "{\"type\":\"ClientList\",\"v\":1,\"originWorker\":0,\"token\":1,\"originId\":{"
        "\"applicationId\":\"a\",\"nodeId\":\"n\"},\"matched\":1,\"rows\":[{\"clientId\":\"c\","
        "\"sessionId\":\"s\",\"roles\":[],\"worker\":0,\"connectedAt\":1}]}",
        /* no node */
        "{\"type\":\"ClientList\",\"v\":1,\"originWorker\":0,\"token\":1,\"matched\":0,\"rows\":[]"
        "}",
        /* a negative count */
        "{\"type\":\"ClientList\",\"v\":1,\"originWorker\":0,\"token\":1,\"originId\":{"
        "\"applicationId\":\"a\",\"nodeId\":\"n\"},\"matched\":0,\"rows\":[],\"byTenant\":{\"t\":-"
        "1}}",
        /* rows not an array */
        "{\"type\":\"ClientList\",\"v\":1,\"originWorker\":0,\"token\":1,\"originId\":{"
        "\"applicationId\":\"a\",\"nodeId\":\"n\"},\"matched\":0,\"rows\":{}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        client_list_t l;
        int w;
        uint64_t t;
        char err[256] = "";
        cr_assert_eq(
            cluster_client_list_decode(bad[i], strlen(bad[i]), &l, &w, &t, err, sizeof(err)),
            -EINVAL, "case %zu", i);
        cr_assert_eq(l.n, 0);
        cr_assert_null(l.node_id);
        cr_assert(err[0], "case %zu names the problem", i);
    }
}

Test(cluster_codec, client_lists_merge_and_render)
{
    client_list_t a, b, m;
    sample_list(&a);
    sample_list(&b);
    free(b.node_id);
    b.node_id = strdup("n3");
    client_list_init(&m);
    m.node_id = strdup("n2");
    client_list_move(&m, &a, 3);
    cr_assert_eq(m.n, 2);
    cr_assert_eq(m.matched, 3);
    cr_assert_eq(a.n, 0);
    client_list_t *nodes[] = {&m, &b};
    char *missing[] = {"n4"};
    buf_t *out = client_list_render(nodes, 2, missing, 1, 3);
    cr_assert_not_null(out);
    json_error_t je;
    json_t *doc = json_loadb(out->data, out->len, 0, &je);
    cr_assert_not_null(doc, "%s", je.text);
    json_t *conns = json_object_get(doc, "connections");
    cr_assert_eq(json_array_size(conns), 3);
    /* oldest first: the two sse rows (connectedAt 5), n2's then n3's */
    json_t *r0 = json_array_get(conns, 0), *r2 = json_array_get(conns, 2);
    cr_assert_str_eq(json_string_value(json_object_get(r0, "clientId")), "c\"2\"");
    cr_assert_str_eq(json_string_value(json_object_get(r0, "node")), "n2");
    cr_assert(json_is_null(json_object_get(r0, "user")));
    cr_assert(json_is_true(json_object_get(r0, "topicsOnly")));
    cr_assert_str_eq(json_string_value(json_object_get(r2, "clientId")), "c1");
    cr_assert_eq(json_integer_value(json_object_get(doc, "matched")), 6);
    json_t *bt = json_object_get(doc, "byTransport");
    cr_assert_eq(json_integer_value(json_object_get(bt, "sse")), 4);
    cr_assert_eq(json_integer_value(json_object_get(bt, "websocket")), 2);
    cr_assert(json_is_true(json_object_get(doc, "truncated")));
    cr_assert_eq(json_integer_value(json_object_get(doc, "nodes")), 2);
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(doc, "nodesMissing"), 0)),
                     "n4");
    json_decref(doc);
    buf_unref(out);
    /* every match shown: not truncated */
    m.matched = m.n;
    out = client_list_render(nodes, 1, NULL, 0, 100);
    doc = json_loadb(out->data, out->len, 0, &je);
    cr_assert(json_is_false(json_object_get(doc, "truncated")));
    cr_assert_eq(json_array_size(json_object_get(doc, "nodesMissing")), 0);
    json_decref(doc);
    buf_unref(out);
    client_list_free(&m);
    client_list_free(&a);
    client_list_free(&b);
}
