/* Report entries, counts, merging and the PushResponse JSON. */
#include "hub/report.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int report_init(report_t *r, int keep_entries)
{
    memset(r, 0, sizeof(*r));
    r->keep_entries = keep_entries;
    return 0;
}

static void count(report_t *r, int successful, int acknowledged, int sign)
{
    if (successful)
        r->delivered += (uint64_t)sign;
    else
        r->failed += (uint64_t)sign;
    if (acknowledged) r->acknowledged += (uint64_t)sign;
}

long report_add(report_t *r, const char *client_id, const char *session_id, int successful,
                const char *message)
{
    r->matched++;
    count(r, successful, 0, 1);
    if (!r->keep_entries) return -ENODATA;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        report_entry_t *e = realloc(r->e, cap * sizeof(*e));
        if (!e) return -ENOMEM;
        r->e = e;
        r->cap = cap;
    }
    report_entry_t *e = &r->e[r->n];
    e->client_id = strdup(client_id ? client_id : "");
    e->session_id = strdup(session_id ? session_id : "");
    e->message = strdup(message ? message : "");
    e->successful = (uint8_t) !!successful;
    e->acknowledged = 0;
    if (!e->client_id || !e->session_id || !e->message) {
        free(e->client_id);
        free(e->session_id);
        free(e->message);
        return -ENOMEM;
    }
    return (long)r->n++;
}

int report_set(report_t *r, size_t i, int successful, const char *message, int acknowledged)
{
    if (i >= r->n) return -ERANGE;
    report_entry_t *e = &r->e[i];
    char *m = strdup(message ? message : "");
    if (!m) return -ENOMEM;
    count(r, e->successful, e->acknowledged, -1);
    free(e->message);
    e->message = m;
    e->successful = (uint8_t) !!successful;
    e->acknowledged = (uint8_t) !!acknowledged;
    count(r, e->successful, e->acknowledged, 1);
    return 0;
}

int report_move(report_t *dst, report_t *src)
{
    if (src->n) {
        if (dst->n + src->n > dst->cap) {
            size_t cap = dst->cap ? dst->cap : 8;
            while (cap < dst->n + src->n)
                cap *= 2;
            report_entry_t *e = realloc(dst->e, cap * sizeof(*e));
            if (!e) return -ENOMEM;
            dst->e = e;
            dst->cap = cap;
        }
        memcpy(dst->e + dst->n, src->e, src->n * sizeof(*src->e));
        dst->n += src->n;
    }
    dst->matched += src->matched;
    dst->delivered += src->delivered;
    dst->failed += src->failed;
    dst->acknowledged += src->acknowledged;
    free(src->e);
    src->e = NULL;
    src->n = src->cap = 0;
    src->matched = src->delivered = src->failed = src->acknowledged = 0;
    return 0;
}

void report_free(report_t *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->e[i].client_id);
        free(r->e[i].session_id);
        free(r->e[i].message);
    }
    free(r->e);
    free(r->application_id);
    free(r->node_id);
    memset(r, 0, sizeof(*r));
}

buf_t *report_render(const char *push_id, report_t *const *nodes, size_t n_nodes,
                     char *const *missing, size_t n_missing, int full)
{
    buf_t *b = buf_new(256);
    if (!b) return NULL;
    int r = buf_puts(&b, "{\"pushId\":");
    r |= buf_put_json_string(&b, push_id);
    uint64_t matched = 0, delivered = 0, failed = 0, acked = 0;
    if (full) r |= buf_puts(&b, ",\"responseMessages\":[");
    int first = 1;
    for (size_t k = 0; k < n_nodes; k++) {
        const report_t *nr = nodes[k];
        matched += nr->matched;
        delivered += nr->delivered;
        failed += nr->failed;
        acked += nr->acknowledged;
        if (!full) continue;
        for (size_t i = 0; i < nr->n && r == 0; i++) {
            const report_entry_t *e = &nr->e[i];
            r |= buf_puts(&b, first ? "{\"clientId\":" : ",{\"clientId\":");
            first = 0;
            r |= buf_put_json_string(&b, e->client_id);
            r |= buf_puts(&b, ",\"sessionId\":");
            r |= buf_put_json_string(&b, e->session_id);
            r |= buf_puts(&b, ",\"originId\":{\"applicationId\":");
            r |= buf_put_json_string(&b, nr->application_id ? nr->application_id : "");
            r |= buf_puts(&b, ",\"nodeId\":");
            r |= buf_put_json_string(&b, nr->node_id ? nr->node_id : "");
            r |= buf_printf(&b,
                            "},\"successful\":%s,\"message\":", e->successful ? "true" : "false");
            r |= buf_put_json_string(&b, e->message);
            r |= buf_puts(&b, "}");
        }
    }
    if (full) r |= buf_puts(&b, "]");
    r |= buf_printf(&b,
                    ",\"summary\":{\"matched\":%llu,\"delivered\":%llu,\"failed\":%llu,"
                    "\"acknowledged\":%llu,\"nodes\":%zu,\"nodesMissing\":[",
                    (unsigned long long)matched, (unsigned long long)delivered,
                    (unsigned long long)failed, (unsigned long long)acked, n_nodes);
    for (size_t i = 0; i < n_missing; i++) {
        if (i) r |= buf_puts(&b, ",");
        r |= buf_put_json_string(&b, missing[i]);
    }
    r |= buf_puts(&b, "]}}");
    if (r) {
        buf_unref(b);
        return NULL;
    }
    return b;
}
