/* Per-topic replay history for resumable subscribers (SSE Last-Event-ID): the newest
 * pushes of each topic, bounded by count and by age, shared by the node's workers
 * under one mutex (appends happen once per push per node, replays once per
 * reconnect: neither is on the per-subscriber delivery path). */
#ifndef PG_HISTORY_H
#define PG_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "hub/push.h"

typedef struct history_s history_t;

/* Creates an empty history. Returns NULL when out of memory. */
history_t *history_new(unsigned max_events, unsigned max_age_s);

/* Frees the history and its push references. */
void history_free(history_t *h);

/* Records p as the newest push of its topic ti (takes a reference).
 * Returns 0 or -ENOMEM. */
int history_append(history_t *h, push_t *p, int ti, int64_t now_ms);

/* One replayed entry. */
typedef struct history_entry_s {
    push_t *p; /* a reference: the caller drops it */
    int ti;
} history_entry_t;

/* Collects what topic has after last_id, oldest first, into *out (new array; free it
 * after dropping each p). *gap is set when the subscriber missed pushes that cannot be
 * replayed: ones this history dropped after last_id, or ones from before it began.
 * Returns the number of entries, or -ENOMEM. */
long history_since(history_t *h, const char *topic, const char *last_id, int64_t now_ms,
                   history_entry_t **out, int *gap);

/* Forgets a topic's history (a deleted stream). */
void history_drop_topic(history_t *h, const char *topic);

#endif
