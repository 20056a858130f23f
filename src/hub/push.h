/* A push: what to deliver, to whom, and where its report goes. Immutable once
 * published and shared by every worker (refcounted); the encoded frame of each wire
 * format is built once, by whichever worker needs it first, and shared. */
#ifndef PG_PUSH_H
#define PG_PUSH_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/ids.h"

enum push_report_mode { PUSH_REPORT_FULL = 0, PUSH_REPORT_SUMMARY, PUSH_REPORT_NONE };

enum push_format { PUSH_FORMAT_WS_JSON = 0, PUSH_FORMAT_COUNT };

typedef struct push_s push_t;
typedef buf_t *(*push_encode_fn)(const push_t *p);

struct push_s {
    uint32_t refs;
    char id[ID_MAX];
    char *client_pat; /* NULL: any */
    char *role_pat;
    char *session_pat;
    char *event;   /* NULL for push requests */
    char *channel; /* NULL for push requests */
    char *payload; /* JSON text */
    size_t payload_len;
    int await_acks;
    unsigned timeout_ms;
    int report_mode;
    char *origin_node;   /* the node that merges reports */
    int origin_worker;   /* the worker there that answers the publisher */
    uint64_t origin_token;
    buf_t *frames[PUSH_FORMAT_COUNT];
};

/* A new push with a fresh id and one reference. Returns NULL when out of memory. */
push_t *push_new(void);

push_t *push_ref(push_t *p);

/* Drops a reference; the last frees the push and its frames. */
void push_unref(push_t *p);

/* The push encoded for format, built with encode on first use (any thread) and
 * shared afterwards. Returns a borrowed buffer (valid while p is), or NULL. */
buf_t *push_frame(push_t *p, int format, push_encode_fn encode);

#endif
