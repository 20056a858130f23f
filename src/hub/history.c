/* Ring buffers of recent pushes, one per topic, in a small hash map. */
#include "hub/history.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/ids.h"

typedef struct ring_s {
    struct ring_s *next;
    char *topic;
    history_entry_t *e;
    int64_t *at;
    size_t head, n;
    char last_dropped[ID_MAX]; /* id of the newest entry pushed out, "" if none */
} ring_t;

#define HISTORY_BUCKETS 256
#define AT(r, h, i) (((r)->head + (i)) % (h)->max_events)

struct history_s {
    uv_mutex_t mu;
    char start_id[ID_MAX]; /* ids older than this were pushed before the history began */
    unsigned max_events;
    int64_t max_age_ms;
    ring_t *buckets[HISTORY_BUCKETS];
};

static size_t bucket(const char *s)
{
    size_t h = 5381;
    for (; *s; s++)
        h = h * 33 + (unsigned char)*s;
    return h % HISTORY_BUCKETS;
}

history_t *history_new(unsigned max_events, unsigned max_age_s)
{
    history_t *h = calloc(1, sizeof(*h));
    if (!h) return NULL;
    if (uv_mutex_init(&h->mu) < 0) {
        free(h);
        return NULL;
    }
    h->max_events = max_events;
    h->max_age_ms = (int64_t)max_age_s * 1000;
    ids_next(h->start_id);
    return h;
}

/* Frees a ring whose entries were already released. */
static void ring_free(ring_t *r)
{
    free(r->e);
    free(r->at);
    free(r->topic);
    free(r);
}

void history_free(history_t *h)
{
    if (!h) return;
    for (int i = 0; i < HISTORY_BUCKETS; i++)
        while (h->buckets[i]) {
            ring_t *r = h->buckets[i];
            h->buckets[i] = r->next;
            for (size_t k = 0; k < r->n; k++)
                push_unref(r->e[AT(r, h, k)].p);
            ring_free(r);
        }
    uv_mutex_destroy(&h->mu);
    free(h);
}

static ring_t *find(history_t *h, const char *topic, int create)
{
    size_t b = bucket(topic);
    for (ring_t *r = h->buckets[b]; r; r = r->next)
        if (strcmp(r->topic, topic) == 0) return r;
    if (!create) return NULL;
    ring_t *r = calloc(1, sizeof(*r));
    if (!r) return NULL;
    r->topic = strdup(topic);
    r->e = calloc(h->max_events, sizeof(*r->e));
    r->at = calloc(h->max_events, sizeof(*r->at));
    if (!r->topic || !r->e || !r->at) {
        free(r->topic);
        free(r->e);
        free(r->at);
        free(r);
        return NULL;
    }
    r->next = h->buckets[b];
    h->buckets[b] = r;
    return r;
}

static void drop_oldest(history_t *h, ring_t *r)
{
    history_entry_t *old = &r->e[r->head];
    memcpy(r->last_dropped, old->p->id, ID_MAX);
    push_unref(old->p);
    old->p = NULL;
    r->head = (r->head + 1) % h->max_events;
    r->n--;
}

static void prune(history_t *h, ring_t *r, int64_t now_ms)
{
    while (r->n && h->max_age_ms && now_ms - r->at[r->head] > h->max_age_ms)
        drop_oldest(h, r);
}

int history_append(history_t *h, push_t *p, int ti, int64_t now_ms)
{
    if (h->max_events == 0 || ti < 0 || (size_t)ti >= p->n_topics) return 0;
    uv_mutex_lock(&h->mu);
    ring_t *r = find(h, p->topics[ti], 1);
    if (!r) {
        uv_mutex_unlock(&h->mu);
        return -ENOMEM;
    }
    prune(h, r, now_ms);
    if (r->n == h->max_events) drop_oldest(h, r);
    size_t k = AT(r, h, r->n);
    r->e[k] = (history_entry_t){push_ref(p), ti};
    r->at[k] = now_ms;
    r->n++;
    uv_mutex_unlock(&h->mu);
    return 0;
}

long history_since(history_t *h, const char *topic, const char *last_id, int64_t now_ms,
                   history_entry_t **out, int *gap)
{
    *out = NULL;
    *gap = 0;
    uv_mutex_lock(&h->mu);
    ring_t *r = find(h, topic, 0);
    if (r) prune(h, r, now_ms);
    /* A gap is what the subscriber missed and nobody can give back: pushes this history
     * dropped after last_id, or pushes from before this history began (a restart). An
     * id older than a topic's oldest entry is no gap by itself: with several topics, the
     * id may come from another one. */
    int valid = ids_valid(last_id);
    int before_start = strcmp(last_id, h->start_id) < 0;
    int missed_drop = r && r->last_dropped[0] && strcmp(last_id, r->last_dropped) < 0;
    /* an id this node never hands out says nothing of what was missed: all of it */
    *gap = !valid || before_start || missed_drop;
    size_t from = r ? r->n : 0; /* index of the first entry to replay */
    if (!valid) from = 0;
    /* the id itself, when retained, marks the place exactly: ids of different nodes
     * (clocks) need not sort in the order the pushes were recorded */
    int exact = 0;
    for (size_t i = 0; valid && r && i < r->n; i++)
        if (strcmp(r->e[AT(r, h, i)].p->id, last_id) == 0) {
            from = i + 1;
            exact = 1;
            *gap = 0;
            break;
        }
    for (size_t i = 0; valid && !exact && r && i < r->n; i++)
        if (strcmp(r->e[AT(r, h, i)].p->id, last_id) > 0) {
            from = i;
            break;
        }
    if (!r) {
        uv_mutex_unlock(&h->mu);
        return 0;
    }
    long n = (long)(r->n - from);
    history_entry_t *arr = n ? calloc((size_t)n, sizeof(*arr)) : NULL;
    if (n && !arr) {
        uv_mutex_unlock(&h->mu);
        return -ENOMEM;
    }
    for (long i = 0; i < n; i++) {
        history_entry_t *e = &r->e[AT(r, h, from + (size_t)i)];
        arr[i] = (history_entry_t){push_ref(e->p), e->ti};
    }
    uv_mutex_unlock(&h->mu);
    *out = arr;
    return n;
}

void history_drop_topic(history_t *h, const char *topic)
{
    uv_mutex_lock(&h->mu);
    for (ring_t **pp = &h->buckets[bucket(topic)]; *pp; pp = &(*pp)->next) {
        ring_t *r = *pp;
        if (strcmp(r->topic, topic) != 0) continue;
        *pp = r->next;
        for (size_t i = 0; i < r->n; i++)
            push_unref(r->e[AT(r, h, i)].p);
        r->n = 0;
        ring_free(r);
        break;
    }
    uv_mutex_unlock(&h->mu);
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

int history_sent_record(history_sent_t *s, const history_entry_t *e, size_t n, uint64_t until_ms)
{
    history_sent_free(s);
    if (n == 0) return 0;
    if (!(s->ids = calloc(n, ID_MAX))) return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (s->n == 0 || strcmp(s->ids[s->n - 1], e[i].p->id) != 0)
            memcpy(s->ids[s->n++], e[i].p->id, ID_MAX);
    s->until_ms = until_ms;
    return 0;
}

int history_sent_has(history_sent_t *s, const char *id, uint64_t now_ms)
{
    if (!s->n) return 0;
    if (now_ms > s->until_ms) {
        history_sent_free(s);
        return 0;
    }
    return bsearch(id, s->ids, s->n, ID_MAX, cmp_id) != NULL;
}

void history_sent_free(history_sent_t *s)
{
    free(s->ids);
    s->ids = NULL;
    s->n = 0;
}
