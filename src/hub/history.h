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

/* The ids a replay sent. A push recorded in the history just before a replay read it
 * may still be on its way to the subscriber live; for a while after the replay, live
 * deliveries check here and skip what was already sent. */
typedef struct history_sent_s {
    char (*ids)[ID_MAX]; /* sorted */
    size_t n;
    uint64_t until_ms; /* loop time after which no such push can still arrive */
} history_sent_t;

/* How long after a replay a racing push may still arrive (ms). */
#define HISTORY_SENT_WINDOW_MS 10000

/* Records the ids of e[0..n) (sorted by id, repeats allowed). Returns 0 or -ENOMEM
 * (then nothing is recorded: a rare duplicate is the price, never a loss). */
int history_sent_record(history_sent_t *s, const history_entry_t *e, size_t n, uint64_t until_ms);

/* Tells whether id was sent by the replay; forgets everything once now_ms passes the
 * window. Returns 1 or 0. */
int history_sent_has(history_sent_t *s, const char *id, uint64_t now_ms);

/* Frees what s holds. */
void history_sent_free(history_sent_t *s);

/* Forgets a topic's history (a deleted stream). */
void history_drop_topic(history_t *h, const char *topic);

#endif
