/* Chained hash table of topics with intrusive subscriber links. */
#include "hub/topics.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

char *topics_channel(const char *name)
{
    char *s;
    return asprintf(&s, "chan:%s", name) < 0 ? NULL : s;
}

char *topics_stream(const char *tenant, const char *id)
{
    char *s;
    return asprintf(&s, "stream:%s:%s", tenant, id) < 0 ? NULL : s;
}

int topics_init(topic_table_t *t)
{
    t->n_buckets = 64;
    t->n_topics = 0;
    t->buckets = calloc(t->n_buckets, sizeof(*t->buckets));
    return t->buckets ? 0 : -ENOMEM;
}

void topics_free(topic_table_t *t)
{
    for (size_t i = 0; i < t->n_buckets; i++)
        while (t->buckets[i]) {
            topic_t *tp = t->buckets[i];
            t->buckets[i] = tp->bucket_next;
            free(tp);
        }
    free(t->buckets);
    t->buckets = NULL;
}

topic_t *topics_find(topic_table_t *t, const char *name)
{
    for (topic_t *tp = t->buckets[hash(name) & (t->n_buckets - 1)]; tp; tp = tp->bucket_next)
        if (strcmp(tp->name, name) == 0) return tp;
    return NULL;
}

static void grow(topic_table_t *t)
{
    size_t n = t->n_buckets * 2;
    topic_t **b = calloc(n, sizeof(*b));
    if (!b) return; /* longer chains, still correct */
    for (size_t i = 0; i < t->n_buckets; i++)
        while (t->buckets[i]) {
            topic_t *tp = t->buckets[i];
            t->buckets[i] = tp->bucket_next;
            size_t k = hash(tp->name) & (n - 1);
            tp->bucket_next = b[k];
            b[k] = tp;
        }
    free(t->buckets);
    t->buckets = b;
    t->n_buckets = n;
}

int topics_link(topic_table_t *t, const char *name, struct subscriber_s *s,
                topic_link_t **link_head)
{
    for (topic_link_t *l = *link_head; l; l = l->sub_next)
        if (strcmp(l->topic->name, name) == 0) return -EEXIST;
    topic_link_t *l = calloc(1, sizeof(*l));
    if (!l) return -ENOMEM;
    topic_t *tp = topics_find(t, name);
    if (!tp) {
        size_t len = strlen(name);
        if (!(tp = calloc(1, sizeof(*tp) + len + 1))) {
            free(l);
            return -ENOMEM;
        }
        memcpy(tp->name, name, len + 1);
        size_t k = hash(name) & (t->n_buckets - 1);
        tp->bucket_next = t->buckets[k];
        t->buckets[k] = tp;
        if (++t->n_topics > t->n_buckets) grow(t);
    }
    l->topic = tp;
    l->s = s;
    l->next = tp->subs;
    if (tp->subs) tp->subs->prev = l;
    tp->subs = l;
    tp->n++;
    l->sub_next = *link_head;
    *link_head = l;
    return 0;
}

static void drop(topic_table_t *t, topic_link_t *l)
{
    topic_t *tp = l->topic;
    if (l->prev)
        l->prev->next = l->next;
    else
        tp->subs = l->next;
    if (l->next) l->next->prev = l->prev;
    free(l);
    if (--tp->n > 0) return;
    /* the last subscriber left: the topic goes too, so churn does not grow the table */
    topic_t **pp = &t->buckets[hash(tp->name) & (t->n_buckets - 1)];
    while (*pp != tp)
        pp = &(*pp)->bucket_next;
    *pp = tp->bucket_next;
    t->n_topics--;
    free(tp);
}

int topics_unlink(topic_table_t *t, const char *name, topic_link_t **link_head)
{
    for (topic_link_t **pp = link_head; *pp; pp = &(*pp)->sub_next) {
        topic_link_t *l = *pp;
        if (strcmp(l->topic->name, name) != 0) continue;
        *pp = l->sub_next;
        drop(t, l);
        return 0;
    }
    return -ENOENT;
}

void topics_unlink_all(topic_table_t *t, topic_link_t **link_head)
{
    while (*link_head) {
        topic_link_t *l = *link_head;
        *link_head = l->sub_next;
        drop(t, l);
    }
}
