/* Membership by heartbeat (members.h). Pure: a table, no clock, no lock. */
#include "cluster/members.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void cluster_members_init(cluster_members_t *m)
{
    memset(m, 0, sizeof(*m));
}

void cluster_members_free(cluster_members_t *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->v[i].node_id);
        json_decref(m->v[i].doc);
    }
    free(m->v);
    cluster_members_init(m);
}

static long find(const cluster_members_t *m, const char *id)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->v[i].node_id, id) == 0) return (long)i;
    return -1;
}

int cluster_members_seen(cluster_members_t *m, json_t *doc, uint64_t now_ms)
{
    const char *id = json_string_value(json_object_get(doc, "nodeId"));
    if (!id || !*id) return -EINVAL;
    long i = find(m, id);
    if (i >= 0) {
        json_decref(m->v[i].doc);
        m->v[i].doc = json_incref(doc);
        m->v[i].seen_ms = now_ms;
        return 0;
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        cluster_member_t *v = realloc(m->v, cap * sizeof(*v));
        if (!v) return -ENOMEM;
        m->v = v;
        m->cap = cap;
    }
    char *copy = strdup(id);
    if (!copy) return -ENOMEM;
    m->v[m->n++] = (cluster_member_t){copy, json_incref(doc), now_ms};
    return 1;
}

static void remove_at(cluster_members_t *m, size_t i)
{
    free(m->v[i].node_id);
    json_decref(m->v[i].doc);
    memmove(&m->v[i], &m->v[i + 1], (m->n - i - 1) * sizeof(*m->v));
    m->n--;
}

int cluster_members_leave(cluster_members_t *m, const char *node_id)
{
    long i = find(m, node_id);
    if (i < 0) return 0;
    remove_at(m, (size_t)i);
    return 1;
}

void cluster_members_touch(cluster_members_t *m, uint64_t now_ms)
{
    for (size_t i = 0; i < m->n; i++)
        m->v[i].seen_ms = now_ms;
}

size_t cluster_members_expire(cluster_members_t *m, uint64_t now_ms, uint64_t ttl_ms)
{
    size_t gone = 0;
    for (size_t i = 0; i < m->n;) {
        if (now_ms > ttl_ms && m->v[i].seen_ms < now_ms - ttl_ms) {
            remove_at(m, i);
            gone++;
        } else {
            i++;
        }
    }
    return gone;
}

long cluster_members_ids(const cluster_members_t *m, const char *self, char ***ids)
{
    size_t n = 0;
    char **arr = calloc(m->n + 1, sizeof(*arr));
    if (!arr || !(arr[n++] = strdup(self))) goto fail;
    for (size_t i = 0; i < m->n; i++) {
        if (strcmp(m->v[i].node_id, self) == 0) continue;
        if (!(arr[n] = strdup(m->v[i].node_id))) goto fail;
        n++;
    }
    *ids = arr;
    return (long)n;
fail:
    for (size_t i = 0; arr && i < n; i++)
        free(arr[i]);
    free(arr);
    return -ENOMEM;
}

json_t *cluster_members_docs(const cluster_members_t *m)
{
    json_t *all = json_array();
    for (size_t i = 0; all && i < m->n; i++) {
        if (json_array_append_new(all, json_deep_copy(m->v[i].doc)) < 0) {
            json_decref(all);
            return NULL;
        }
    }
    return all;
}
