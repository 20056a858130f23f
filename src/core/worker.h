/* Worker threads: each runs one libuv loop, accepts on its own SO_REUSEPORT listener
 * and owns its connections outright. Other threads talk to a worker only through its
 * inbox (a mutex-guarded MPSC list woken by uv_async): one message per push per
 * worker, never one per subscriber. */
#ifndef PG_WORKER_H
#define PG_WORKER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/conn.h"

typedef struct worker_s worker_t;
typedef struct worker_msg_s worker_msg_t;

/* A message runs fn on the receiving worker's thread; fn owns m. */
struct worker_msg_s {
    worker_msg_t *next;
    void (*fn)(worker_t *w, worker_msg_t *m);
};

typedef struct worker_pool_s worker_pool_t;

/* Shutdown phases: draining (listener closed, clients stay while the worker has work
 * they must answer, up to grace_ms), then goodbye (every connection told the
 * protocol's way, cut after shutdown_timeout_ms). */
enum worker_stopping { WORKER_DRAINING = 1, WORKER_GOODBYE = 2 };

struct worker_s {
    int index;
    worker_pool_t *pool;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_poll_t listener;      /* on listen_fd: accept4 when readable */
    int listen_fd;           /* -1 once closed */
    int reserve_fd;          /* given up to accept-and-drop when out of descriptors */
    uv_timer_t accept_pause; /* out of descriptors: listening resumes when it fires */
    int epfd;                /* the epoll set of this worker's connections (core/conn.c) */
    uv_poll_t io;            /* watches epfd on the loop */
    uv_async_t async;
    uv_prepare_t prepare;
    uv_timer_t tick;
    uv_mutex_t inbox_mu;
    worker_msg_t *inbox_head, *inbox_tail;
    conn_t *conns;
    size_t n_conns;
    conn_t *flush_head;
    /* fan-out output held back until batch_after (core/conn.c); the timer releases it */
    conn_t *held_head;
    uint64_t batch_after; /* uv_hrtime() */
    uv_timer_t coalesce;
    int in_fanout;     /* output queued now is fan-out output (set around a delivery round) */
    conn_t *reap_head; /* closed conns, freed at the next safe point (conn_reap) */
    int stopping;      /* WORKER_DRAINING, then WORKER_GOODBYE; 0 while serving */
    uint64_t grace_deadline;
    uint64_t stop_deadline;
    void *hub;        /* hub_worker_t: the subscribers and topics this worker owns */
    void *app;        /* the node's per-worker state (pending requests) */
    char rbuf[65536]; /* every read lands here; protocols copy only partial frames */
};

typedef struct worker_pool_cfg_s {
    const char *host;
    int port;
    int n;
    const conn_proto_t *accept_proto; /* what new connections speak */
    struct tls_server_s *tls;         /* set: every accepted connection speaks TLS */
    uint32_t max_connections;         /* across the pool; 0 = unlimited */
    uint32_t max_connections_per_ip;  /* across the pool; 0 = unlimited */
    unsigned grace_ms;                /* draining: the most the workers wait for busy() */
    unsigned shutdown_timeout_ms;     /* goodbye: connections still open after it are cut */
    /* the least time between two flushes of fan-out output (core/conn.c); 0: none */
    unsigned coalesce_ms;
    /* draining: nonzero while w has work its clients must stay for (optional) */
    int (*busy)(worker_t *w, void *arg);
    /* a connection refused by a limit (enum metrics_refusal): answer it the protocol's
     * way and end it (optional; default: closed) */
    void (*on_refuse)(conn_t *c, int reason);
    /* on_start runs for each worker on the starting thread before any worker runs;
     * on_stop on each worker's own thread after its loop ends */
    void (*on_start)(worker_t *w, void *arg);
    void (*on_stop)(worker_t *w, void *arg);
    /* on the worker's thread when the drain begins (listener closed, clients kept) */
    void (*on_draining)(worker_t *w, void *arg);
    /* on the worker's thread when the goodbye begins, before connections are told */
    void (*on_stopping)(worker_t *w, void *arg);
    void *arg;
} worker_pool_cfg_t;

struct worker_pool_s {
    worker_pool_cfg_t cfg;
    worker_t **workers;
    int n;
    uint32_t connections; /* atomic */
    iptable_t *ips;       /* connections per client IP; NULL without a per-IP limit */
    int ready;            /* atomic: every worker listens */
    int running;          /* atomic: workers not yet finished */
};

/* Binds every worker's listener (so a busy port fails here, synchronously) and starts
 * the threads. Returns 0, or a negative uv error with nothing left running. */
int worker_pool_start(worker_pool_t *pool, const worker_pool_cfg_t *cfg);

/* Asks every worker to stop: close listeners, wait while busy() says the worker has
 * work its clients must stay for (at most grace_ms), then say goodbye to connections
 * (proto->on_shutdown) and end the loop once they are gone or the shutdown timeout
 * passes. Safe from any thread. */
void worker_pool_stop(worker_pool_t *pool);

/* Waits for every worker thread and frees the pool. */
void worker_pool_join(worker_pool_t *pool);

/* Hands m to w's thread. Safe from any thread. Returns 0. */
int worker_post(worker_t *w, worker_msg_t *m);

/* The worker running on the calling thread, or NULL. */
worker_t *worker_current(void);

/* Milliseconds of the worker's loop clock. */
uint64_t worker_now(worker_t *w);

#endif
