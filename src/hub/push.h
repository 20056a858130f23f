/* A push: what to deliver, to whom, and where its report goes. Immutable once
 * published and shared by every worker (refcounted). Each (wire format, topic) encoding
 * is built once, by whichever worker needs it first, and shared by every write. */
#ifndef PG_PUSH_H
#define PG_PUSH_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/ids.h"

enum push_report_mode { PUSH_REPORT_FULL = 0, PUSH_REPORT_SUMMARY, PUSH_REPORT_NONE };

enum push_kind {
    PUSH_KIND_REQUEST = 0, /* seed 000: payload is the serviceRequest */
    PUSH_KIND_CHANNEL,     /* seed 003: payload is `data`, event is `event` */
    PUSH_KIND_STREAM,      /* seed 002: payload is the (projected) domain event */
};

enum push_format {
    PUSH_FORMAT_WS_JSON = 0,
    PUSH_FORMAT_SSE,
    PUSH_FORMAT_SIO,
    PUSH_FORMAT_WS_DEFLATE, /* the WS_JSON frame compressed (permessage-deflate, RSV1) */
    PUSH_FORMAT_COUNT
};

typedef struct push_s push_t;
/* Encodes p for the subscribers reached through topic index ti (-1: by pattern).
 * Returns a new buffer or NULL. */
typedef buf_t *(*push_encode_fn)(const push_t *p, int ti);

struct push_s {
    uint32_t refs;
    char id[ID_MAX];
    int kind;
    char *client_pat; /* NULL: any */
    char *role_pat;
    char *session_pat;
    char *tenant;  /* NULL: any tenant */
    char **topics; /* "chan:<name>", "stream:<tenant>:<id>"; none: select by pattern */
    size_t n_topics;
    char *event;   /* NULL for push requests */
    char *payload; /* JSON text */
    size_t payload_len;
    int64_t created_ms;
    int await_acks;
    unsigned timeout_ms;
    int report_mode;
    char *origin_node; /* the node that merges reports */
    int origin_worker; /* the worker there that answers the publisher */
    uint64_t origin_token;
    buf_t **frames; /* [(ti + 1) * PUSH_FORMAT_COUNT + format] */
};

/* A new push with a fresh id and one reference. Returns NULL when out of memory. */
push_t *push_new(void);

push_t *push_ref(push_t *p);

/* Drops a reference; the last frees the push and its frames. */
void push_unref(push_t *p);

/* Sets the topics (copied). Call before publishing. Returns 0 or -ENOMEM. */
int push_set_topics(push_t *p, char *const *topics, size_t n);

/* The channel name of topic ti ("chan:a" → "a"), or NULL if ti is not a channel. */
const char *push_channel(const push_t *p, int ti);

/* The encoding of p for format and topic ti (-1: by pattern), built with encode on
 * first use (any thread) and shared afterwards. Returns a borrowed buffer (valid while
 * p is), or NULL. */
buf_t *push_frame(push_t *p, int format, int ti, push_encode_fn encode);

#endif
