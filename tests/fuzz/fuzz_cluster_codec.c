/* libFuzzer target for cluster/codec: every byte that arrives from Redis goes through
 * one of these decoders. The first byte picks the decoder (InternalPushRequest, node
 * report, note, announcement, redis URL, ClientListRequest, ClientList); the rest is
 * the message. A push, report, listing query or client list that decodes must encode
 * again and decode to the same document (round trip). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/codec.h"

static void push_round_trip(push_t *p)
{
    buf_t *b = buf_new(256);
    if (!b || cluster_push_encode(&b, p, "app") < 0) {
        buf_unref(b);
        return;
    }
    push_t *q = NULL;
    char err[256];
    if (cluster_push_decode(b->data, b->len, &q, err, sizeof(err)) != 0)
        __builtin_trap(); /* what we encode we must read back */
    if (strcmp(q->id, p->id) != 0 || q->n_topics != p->n_topics || q->kind != p->kind ||
        q->origin_token != p->origin_token || q->payload_len == 0)
        __builtin_trap();
    push_unref(q);
    buf_unref(b);
}

static void report_round_trip(report_t *r, int w, uint64_t token)
{
    buf_t *b = buf_new(256);
    if (!b || cluster_report_encode(&b, r, "p", w, token) < 0) {
        buf_unref(b);
        return;
    }
    report_t d;
    int w2;
    uint64_t t2;
    char err[256];
    if (cluster_report_decode(b->data, b->len, &d, &w2, &t2, err, sizeof(err)) != 0)
        __builtin_trap();
    if (w2 != w || t2 != token || d.n != r->n || d.matched != r->matched ||
        strcmp(d.node_id, r->node_id) != 0)
        __builtin_trap();
    report_free(&d);
    buf_unref(b);
}

static void query_round_trip(const client_query_t *q)
{
    buf_t *b = buf_new(256);
    if (!b || cluster_list_query_encode(&b, q, "app") < 0) {
        buf_unref(b);
        return;
    }
    if (cluster_msg_kind(b->data, b->len) != CLUSTER_MSG_LIST_QUERY) __builtin_trap();
    client_query_t *d = NULL;
    char err[256];
    if (cluster_list_query_decode(b->data, b->len, &d, err, sizeof(err)) != 0) __builtin_trap();
    if (d->token != q->token || d->limit != q->limit || d->origin_worker != q->origin_worker ||
        strcmp(d->origin_node, q->origin_node) != 0 || !d->client_pat != !q->client_pat ||
        (q->client_pat && strcmp(d->client_pat, q->client_pat) != 0))
        __builtin_trap();
    client_query_unref(d);
    buf_unref(b);
}

static void list_round_trip(const client_list_t *l, int w, uint64_t token)
{
    buf_t *b = buf_new(256);
    if (!b || cluster_client_list_encode(&b, l, w, token) < 0) {
        buf_unref(b);
        return;
    }
    if (cluster_msg_kind(b->data, b->len) != CLUSTER_MSG_CLIENT_LIST) __builtin_trap();
    client_list_t d;
    int w2;
    uint64_t t2;
    char err[256];
    if (cluster_client_list_decode(b->data, b->len, &d, &w2, &t2, err, sizeof(err)) != 0)
        __builtin_trap();
    if (w2 != w || t2 != token || d.n != l->n || d.matched != l->matched ||
        strcmp(d.node_id, l->node_id) != 0)
        __builtin_trap();
    for (size_t i = 0; i < d.n; i++)
        if (strcmp(d.rows[i].client_id, l->rows[i].client_id) != 0 ||
            d.rows[i].n_roles != l->rows[i].n_roles || !d.rows[i].user != !l->rows[i].user)
            __builtin_trap();
    /* and it renders */
    const client_list_t *nodes[] = {&d};
    buf_t *out = client_list_render((client_list_t *const *)nodes, 1, NULL, 0, 7);
    buf_unref(out);
    client_list_free(&d);
    buf_unref(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const char *msg = (const char *)data + 1;
    size_t len = size - 1;
    char err[256];
    switch (data[0] % 7) {
    case 0: {
        push_t *p = NULL;
        if (cluster_push_decode(msg, len, &p, err, sizeof(err)) == 0) {
            push_round_trip(p);
            push_unref(p);
        } else if (p) {
            __builtin_trap();
        }
        break;
    }
    case 1: {
        report_t r;
        int w;
        uint64_t t;
        if (cluster_report_decode(msg, len, &r, &w, &t, err, sizeof(err)) == 0) {
            report_round_trip(&r, w, t);
            report_free(&r);
        }
        break;
    }
    case 2: {
        int kind;
        char *name = NULL;
        if (cluster_note_decode(msg, len, &kind, &name, err, sizeof(err)) == 0) free(name);
        break;
    }
    case 3: {
        json_t *doc = NULL;
        if (cluster_node_decode(msg, len, &doc, err, sizeof(err)) == 0) json_decref(doc);
        break;
    }
    case 5: {
        client_query_t *q = NULL;
        if (cluster_list_query_decode(msg, len, &q, err, sizeof(err)) == 0) {
            query_round_trip(q);
            client_query_unref(q);
        } else if (q) {
            __builtin_trap();
        }
        break;
    }
    case 6: {
        client_list_t l;
        int w;
        uint64_t t;
        if (cluster_client_list_decode(msg, len, &l, &w, &t, err, sizeof(err)) == 0) {
            if (l.n > l.matched || l.n > CLIENTS_LIMIT_MAX) __builtin_trap();
            list_round_trip(&l, w, t);
            client_list_free(&l);
        } else if (l.n || l.node_id) {
            __builtin_trap();
        }
        break;
    }
    case 4: {
        char *url = malloc(len + 1);
        if (!url) return 0;
        memcpy(url, msg, len);
        url[len] = '\0';
        cluster_redis_url_t u;
        if (cluster_redis_url_parse(url, &u, err, sizeof(err)) == 0 &&
            (u.port < 1 || u.port > 65535 || !u.host[0]))
            __builtin_trap();
        free(url);
        break;
    }
    default:
        break;
    }
    return 0;
}
