/* Client listing rows: queries, bounded lists, merging and the answer's JSON. */
#include "hub/clients.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

client_query_t *client_query_new(void)
{
    client_query_t *q = calloc(1, sizeof(*q));
    if (!q) return NULL;
    q->refs = 1;
    q->limit = CLIENTS_LIMIT_MAX;
    return q;
}

client_query_t *client_query_ref(client_query_t *q)
{
    __atomic_add_fetch(&q->refs, 1, __ATOMIC_RELAXED);
    return q;
}

void client_query_unref(client_query_t *q)
{
    if (!q || __atomic_sub_fetch(&q->refs, 1, __ATOMIC_ACQ_REL) > 0) return;
    free(q->origin_node);
    free(q->client_pat);
    free(q->session_pat);
    free(q->role_pat);
    free(q->tenant);
    free(q);
}

void client_list_init(client_list_t *l)
{
    memset(l, 0, sizeof(*l));
}

static void row_free(client_row_t *r)
{
    free(r->client_id);
    free(r->session_id);
    free(r->user);
    free(r->tenant);
    free(r->transport);
    for (size_t i = 0; i < r->n_roles; i++)
        free(r->roles[i]);
    free(r->roles);
    memset(r, 0, sizeof(*r));
}

/* strdup that keeps NULL. Returns 0 or -ENOMEM. */
static int dup_opt(char **dst, const char *s)
{
    *dst = NULL;
    if (!s) return 0;
    return (*dst = strdup(s)) ? 0 : -ENOMEM;
}

/* Room for one more row. Returns 0 or -ENOMEM. */
static int grow(client_list_t *l)
{
    if (l->n < l->cap) return 0;
    size_t cap = l->cap ? l->cap * 2 : 16;
    client_row_t *rows = realloc(l->rows, cap * sizeof(*rows));
    if (!rows) return -ENOMEM;
    l->rows = rows;
    l->cap = cap;
    return 0;
}

int client_count_add(json_t **obj, const char *name, json_int_t n)
{
    if (!*obj && !(*obj = json_object())) return -ENOMEM;
    const char *k = name ? name : "";
    json_t *have = json_object_get(*obj, k);
    return json_object_set_new(*obj, k, json_integer((have ? json_integer_value(have) : 0) + n))
               ? -ENOMEM
               : 0;
}

int client_list_add(client_list_t *l, const client_row_t *row, uint32_t limit)
{
    l->matched++;
    if (client_count_add(&l->by_transport, row->transport, 1) < 0 ||
        client_count_add(&l->by_tenant, row->tenant, 1) < 0)
        return -ENOMEM;
    if (l->n >= limit) return 0;
    if (grow(l) < 0) return -ENOMEM;
    client_row_t *r = &l->rows[l->n];
    memset(r, 0, sizeof(*r));
    int e = dup_opt(&r->client_id, row->client_id ? row->client_id : "");
    e |= dup_opt(&r->session_id, row->session_id ? row->session_id : "");
    e |= dup_opt(&r->user, row->user);
    e |= dup_opt(&r->tenant, row->tenant);
    e |= dup_opt(&r->transport, row->transport);
    if (!e && row->n_roles && !(r->roles = calloc(row->n_roles, sizeof(*r->roles)))) e = -ENOMEM;
    for (size_t i = 0; !e && i < row->n_roles; i++) {
        e = dup_opt(&r->roles[i], row->roles[i] ? row->roles[i] : "");
        r->n_roles = i + 1;
    }
    if (e) {
        row_free(r);
        return -ENOMEM;
    }
    r->worker = row->worker;
    r->topics_only = row->topics_only;
    r->connected_at_ms = row->connected_at_ms;
    l->n++;
    return 1;
}

int client_list_move(client_list_t *dst, client_list_t *src, uint32_t limit)
{
    for (size_t i = 0; i < src->n; i++) {
        if (dst->n < limit && grow(dst) == 0) {
            dst->rows[dst->n++] = src->rows[i]; /* the strings move with it */
            memset(&src->rows[i], 0, sizeof(src->rows[i]));
        } else {
            row_free(&src->rows[i]);
        }
    }
    dst->matched += src->matched;
    json_t *const from[2] = {src->by_transport, src->by_tenant};
    json_t **into[2] = {&dst->by_transport, &dst->by_tenant};
    for (int i = 0; i < 2; i++) {
        const char *k;
        json_t *v;
        json_object_foreach(from[i], k, v) client_count_add(into[i], k, json_integer_value(v));
        json_decref(from[i]);
    }
    free(src->rows);
    char *app = src->application_id, *node = src->node_id;
    client_list_init(src);
    src->application_id = app;
    src->node_id = node;
    return 0;
}

void client_list_free(client_list_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        row_free(&l->rows[i]);
    free(l->rows);
    free(l->application_id);
    free(l->node_id);
    json_decref(l->by_transport);
    json_decref(l->by_tenant);
    client_list_init(l);
}

typedef struct ref_s {
    const client_row_t *row;
    const char *node;
} ref_t;

static int by_time(const void *a, const void *b)
{
    const ref_t *x = a, *y = b;
    if (x->row->connected_at_ms != y->row->connected_at_ms)
        return x->row->connected_at_ms < y->row->connected_at_ms ? -1 : 1;
    int c = strcmp(x->row->client_id, y->row->client_id);
    return c ? c : strcmp(x->node, y->node);
}

static int put_opt(buf_t **bp, const char *key, const char *v)
{
    int r = buf_printf(bp, ",\"%s\":", key);
    return r | (v ? buf_put_json_string(bp, v) : buf_puts(bp, "null"));
}

buf_t *client_list_render(client_list_t *const *nodes, size_t n_nodes, char *const *missing,
                          size_t n_missing, uint32_t limit)
{
    size_t total = 0;
    uint64_t matched = 0;
    json_t *by[2] = {json_object(), json_object()};
    for (size_t i = 0; i < n_nodes; i++) {
        total += nodes[i]->n;
        matched += nodes[i]->matched;
        json_t *const from[2] = {nodes[i]->by_transport, nodes[i]->by_tenant};
        for (int j = 0; j < 2; j++) {
            const char *k;
            json_t *v;
            json_object_foreach(from[j], k, v) client_count_add(&by[j], k, json_integer_value(v));
        }
    }
    char *counts[2] = {by[0] ? json_dumps(by[0], JSON_COMPACT | JSON_SORT_KEYS) : NULL,
                       by[1] ? json_dumps(by[1], JSON_COMPACT | JSON_SORT_KEYS) : NULL};
    json_decref(by[0]);
    json_decref(by[1]);
    ref_t *refs = calloc(total ? total : 1, sizeof(*refs));
    buf_t *b = buf_new(256 + total * 192);
    if (!refs || !b || !counts[0] || !counts[1]) {
        free(refs);
        free(counts[0]);
        free(counts[1]);
        buf_unref(b);
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < n_nodes; i++)
        for (size_t j = 0; j < nodes[i]->n; j++) {
            refs[k].row = &nodes[i]->rows[j];
            refs[k++].node = nodes[i]->node_id ? nodes[i]->node_id : "";
        }
    qsort(refs, total, sizeof(*refs), by_time);
    size_t shown = total < limit ? total : limit;
    int r = buf_puts(&b, "{\"connections\":[");
    for (size_t i = 0; i < shown && r == 0; i++) {
        const client_row_t *row = refs[i].row;
        r |= buf_puts(&b, i ? ",{\"clientId\":" : "{\"clientId\":");
        r |= buf_put_json_string(&b, row->client_id);
        r |= put_opt(&b, "sessionId", row->session_id);
        r |= put_opt(&b, "user", row->user);
        r |= buf_puts(&b, ",\"roles\":[");
        for (size_t j = 0; j < row->n_roles; j++) {
            if (j) r |= buf_puts(&b, ",");
            r |= buf_put_json_string(&b, row->roles[j]);
        }
        r |= buf_puts(&b, "]");
        r |= put_opt(&b, "tenant", row->tenant);
        r |= put_opt(&b, "transport", row->transport);
        r |= put_opt(&b, "node", refs[i].node);
        r |= buf_printf(&b, ",\"worker\":%d,\"connectedAt\":%lld,\"topicsOnly\":%s}", row->worker,
                        (long long)row->connected_at_ms, row->topics_only ? "true" : "false");
    }
    r |= buf_printf(&b,
                    "],\"matched\":%llu,\"truncated\":%s,\"byTransport\":%s,\"byTenant\":%s,"
                    "\"nodes\":%zu,\"nodesMissing\":[",
                    (unsigned long long)matched, matched > shown ? "true" : "false", counts[0],
                    counts[1], n_nodes);
    for (size_t i = 0; i < n_missing; i++) {
        if (i) r |= buf_puts(&b, ",");
        r |= buf_put_json_string(&b, missing[i]);
    }
    r |= buf_puts(&b, "]}");
    free(refs);
    free(counts[0]);
    free(counts[1]);
    if (r) {
        buf_unref(b);
        return NULL;
    }
    return b;
}
