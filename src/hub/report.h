/* Delivery reports: one entry per matched subscriber, counted as they are added, merged
 * from workers into a node report, and from node reports into the PushResponse. */
#ifndef PG_REPORT_H
#define PG_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

typedef struct report_entry_s {
    char *client_id;
    char *session_id;
    char *message;
    uint8_t successful;
    uint8_t acknowledged; /* the message is the client's own answer */
} report_entry_t;

typedef struct report_s {
    char *application_id; /* the node the entries come from */
    char *node_id;
    report_entry_t *e;
    size_t n, cap;
    int keep_entries; /* 0: count only (summary reports) */
    uint64_t matched, delivered, failed, acknowledged;
} report_t;

/* Prepares an empty report. Returns 0. */
int report_init(report_t *r, int keep_entries);

/* Counts an entry and, when r keeps entries, adds it (strings are copied). Returns
 * the entry's index, -ENODATA when entries are not kept, or -ENOMEM (the counts still
 * include it). */
long report_add(report_t *r, const char *client_id, const char *session_id, int successful,
                const char *message);

/* Changes entry i's outcome (an ack, a timeout, a close), keeping the counts right.
 * Returns 0, -ERANGE for a bad index, -ENOMEM. */
int report_set(report_t *r, size_t i, int successful, const char *message, int acknowledged);

/* Moves src's entries and counts into dst; src is left empty. Returns 0 or -ENOMEM. */
int report_move(report_t *dst, report_t *src);

/* Frees what r holds. */
void report_free(report_t *r);

/* Renders the PushResponse JSON of DESIGN §7 from the node reports that arrived and
 * the ids of the nodes that did not. full 0 leaves out responseMessages.
 * Returns a new buffer or NULL when out of memory. */
buf_t *report_render(const char *push_id, report_t *const *nodes, size_t n_nodes,
                     char *const *missing, size_t n_missing, int full);

#endif
