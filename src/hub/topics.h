/* A worker's topic index: topic name → the subscribers subscribed to it. The links are
 * intrusive (one allocation per subscription, none per delivery) and unlinking is O(1).
 * Used only by the worker that owns it. */
#ifndef PG_TOPICS_H
#define PG_TOPICS_H

#include <stddef.h>

struct subscriber_s;
typedef struct topic_s topic_t;
typedef struct topic_link_s topic_link_t;

struct topic_link_s {
    topic_link_t *prev, *next; /* in the topic */
    topic_link_t *sub_next;    /* the subscriber's other links */
    topic_t *topic;
    struct subscriber_s *s;
};

struct topic_s {
    topic_t *bucket_next;
    topic_link_t *subs;
    size_t n;
    char name[];
};

typedef struct topic_table_s {
    topic_t **buckets;
    size_t n_buckets;
    size_t n_topics;
} topic_table_t;

/* The topic names of DESIGN §2: "chan:<name>" and "stream:<tenant>:<id>". One place
 * spells them, so publishers and subscribers always meet. Return a new string (free
 * it), or NULL when out of memory. */
char *topics_channel(const char *name);
char *topics_stream(const char *tenant, const char *id);

/* Returns 0 or -ENOMEM. */
int topics_init(topic_table_t *t);

/* Frees the table; every topic must already be empty. */
void topics_free(topic_table_t *t);

/* The topic called name, or NULL. */
topic_t *topics_find(topic_table_t *t, const char *name);

/* Links s to name (creating the topic). *link_head is the subscriber's own list.
 * Returns 0, -EEXIST if already linked, -ENOMEM. */
int topics_link(topic_table_t *t, const char *name, struct subscriber_s *s,
                topic_link_t **link_head);

/* Unlinks s from name. Returns 0 or -ENOENT. */
int topics_unlink(topic_table_t *t, const char *name, topic_link_t **link_head);

/* Unlinks every link of a subscriber. */
void topics_unlink_all(topic_table_t *t, topic_link_t **link_head);

#endif
