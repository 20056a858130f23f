/* A TCP connection owned by one worker: a raw non-blocking socket in the worker's
 * epoll set (no libuv handle per connection; docs/design-notes.md, "Connection I/O").
 * Output is a queue of slices of refcounted buffers: fan-out queues the same buffer on
 * many connections, and the worker's prepare hook flushes every pending connection
 * with one writev before the loop sleeps; a remainder waits for EPOLLOUT. Pending
 * output is bounded. A closed conn is freed later, at the worker's next safe point
 * (its prepare hook), never inside a callback of its own. */
#ifndef PG_CONN_H
#define PG_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/buf.h"
#include "core/iptable.h"

typedef struct conn_s conn_t;
struct worker_s;
struct tls_conn_s;

typedef struct conn_proto_s {
    const char *name;
    /* a new connection was accepted (optional) */
    void (*on_open)(conn_t *c);
    /* bytes from the socket, valid only during the call */
    void (*on_read)(conn_t *c, const char *data, size_t len);
    /* the peer finished sending, or reading failed; default: close */
    void (*on_eof)(conn_t *c);
    /* every queued byte reached the kernel (optional) */
    void (*on_drain)(conn_t *c);
    /* the worker's periodic tick, now in ms of the loop clock (optional) */
    void (*on_tick)(conn_t *c, uint64_t now);
    /* the node is shutting down: say goodbye the protocol's way (optional; default close) */
    void (*on_shutdown)(conn_t *c);
    /* the worker is about to write c's output: produce what was deferred until now
     * (optional; see conn_want_flush) */
    void (*on_flush)(conn_t *c);
    /* last call before the conn is freed: release protocol state (optional) */
    void (*on_close)(conn_t *c);
} conn_proto_t;

typedef struct conn_out_s {
    buf_t *b;
    size_t off;
    size_t len;
} conn_out_t;

/* The output queue, a ring of slices; allocated only while output is pending. */
typedef struct conn_queue_s {
    uint32_t head, count, cap;
    conn_out_t items[];
} conn_queue_t;

enum conn_flags {
    CONN_PENDING = 1 << 0,     /* in the worker's flush list */
    CONN_CLOSING = 1 << 1,     /* closed: the socket is gone, the conn waits to be freed */
    CONN_END = 1 << 2,         /* close once the output is flushed */
    CONN_SHUT = 1 << 3,        /* FIN sent; reads are discarded until EOF */
    CONN_READ_PAUSED = 1 << 4, /* the protocol stopped reading */
    CONN_WRITING = 1 << 5,     /* the kernel is full: the rest waits for EPOLLOUT */
    /* conn.c's own: reading wanted, end of input seen, what the epoll set watches */
    CONN_READING = 1 << 6,
    CONN_EOF = 1 << 7,
    CONN_EP_IN = 1 << 8,
    CONN_EP_OUT = 1 << 9,
    /* conn.c's own: output queued outside a fan-out round (an answer, a pong, a close)
     * is never held back; held: in the worker's held list, not its flush list */
    CONN_URGENT = 1 << 10,
    CONN_HELD = 1 << 11,
};

/* What an idle connection costs (with its protocol's state): keep it packed,
 * tests/unit/test_idle_records.c holds it to a budget. */
struct conn_s {
    struct worker_s *w;
    const conn_proto_t *proto;
    void *ud;               /* the protocol's state */
    conn_queue_t *q;        /* NULL while nothing is queued */
    struct tls_conn_s *tls; /* NULL: plain TCP; else every byte goes through it */
    conn_t *pprev, *pnext;  /* flush list; pnext links the reap list once closed */
    conn_t *prev, *next;    /* the worker's connections */
    const ipkey_t *ip;      /* the peer's entry in the pool's per-IP table, released on close */
    uint64_t deadline;      /* protocol-defined, checked on tick */
    uint32_t pending;       /* bytes queued (plaintext with TLS); at most CONN_PENDING_MAX */
    uint32_t limit;         /* most pending bytes accepted; 0: CONN_PENDING_MAX */
    int fd;                 /* the socket; -1 once closed */
    uint32_t flags;
};

#define CONN_PENDING_MAX UINT32_MAX

/* n clamped to what c->limit can hold. */
static inline uint32_t conn_bytes(size_t n)
{
    return n < CONN_PENDING_MAX ? (uint32_t)n : CONN_PENDING_MAX;
}

/* Tells whether c still has output queued or waiting for the kernel. */
static inline int conn_has_output(const conn_t *c)
{
    return (c->q && c->q->count) || (c->flags & CONN_WRITING);
}

/* With TLS (c->tls), queued slices are plaintext: the flush encrypts them into records
 * and pending counts the plaintext queued plus the records in a uv_write; the protocol
 * only ever sees plaintext. */

/* Queues len bytes of b from off (takes a reference) and marks c for flushing.
 * Returns 0, -ENOBUFS if it would take pending output past c->limit (nothing queued),
 * -EPIPE if c is closing, -ENOMEM. */
int conn_send(conn_t *c, buf_t *b, size_t off, size_t len);

/* Copies data into a new buffer and queues it. Returns as conn_send. */
int conn_send_copy(conn_t *c, const void *data, size_t len);

/* Queues b whole and drops the caller's reference, whatever the outcome.
 * Returns as conn_send. */
int conn_send_owned(conn_t *c, buf_t *b);

/* Marks c for the worker's flush pass, where proto->on_flush runs before c's output is
 * written: a protocol that frames output lazily (HTTP/2) produces it once per loop turn
 * however many streams asked. */
void conn_want_flush(conn_t *c);

/* Closes now, dropping unsent output: the socket is closed at once, the conn freed at
 * the worker's next safe point, after proto->on_close. Idempotent. */
void conn_close(conn_t *c);

/* Closes gracefully: flush output (then a TLS close_notify), send FIN, discard input until EOF
 * (bounded by a 2 s deadline), then close. Idempotent. */
void conn_end(conn_t *c);

/* Stops or resumes reading (backpressure while a request is being answered). */
void conn_pause_read(conn_t *c);
void conn_resume_read(conn_t *c);

/* Makes fd (an accepted non-blocking socket, taken) a new conn of worker w speaking
 * proto. Past the pool's limits (connections per node, per client IP) the connection
 * is counted in pushgate_refused_total and handed to the pool's on_refuse (which
 * answers the protocol's way and ends it), or closed.
 * Returns 0, UV_EMFILE (refused by a limit), or a negative errno (dropped). */
int conn_accept(struct worker_s *w, int fd, const conn_proto_t *proto);

/* Sets up w's epoll set and its watcher on w's loop. Returns 0 or a negative errno. */
int conn_io_init(struct worker_s *w);

/* Closes w's epoll set (after its loop closed every handle). */
void conn_io_free(struct worker_s *w);

/* Write coalescing across pushes: output queued while w->in_fanout is set (a delivery
 * round of the hub) may wait in the worker's held list until cfg.coalesce_ms after the
 * previous flush that wrote fan-out output ended (or as long as that flush took, when
 * longer, up to 20 x cfg.coalesce_ms). A push after a quiet spell goes out
 * at once; pushes that come back to back go out together, several frames a write,
 * at most coalesce_ms late. Anything else a conn queues flushes it (and what it holds)
 * at the next pass. */

/* Flushes every conn in w's flush list and frees the conns closed since the last
 * call (the prepare hook calls it: the safe point). */
void conn_flush_pending(struct worker_s *w);

/* Frees the conns of w closed since the last call (proto->on_close first). */
void conn_reap(struct worker_s *w);

/* Moves c's socket to worker to: c is closed here (its output must be flushed: no
 * pending bytes), and to adopts the socket as a new conn speaking proto, which is fed
 * first bytes (taken, plaintext) as if it had read them. A TLS session moves with the
 * socket: its records not yet sent and its input not yet decrypted go along. Returns 0, -EBUSY when
 * output is still pending, or a negative errno (c is left as it was). */
int conn_migrate(conn_t *c, struct worker_s *to, const conn_proto_t *proto, buf_t *first);

/* Gives c a new protocol (HTTP → WebSocket upgrade). */
void conn_set_proto(conn_t *c, const conn_proto_t *proto, void *ud);

#endif
