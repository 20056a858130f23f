/* The Idempotency-Key store for pushes (docs/api.md "Idempotency-Key"): a key names one
 * attempt of a request; the first attempt reserves it (pending), acts, and stores its
 * answer; a repeat finds the stored answer and gets it again instead of acting twice.
 *
 * Two implementations sit behind this interface: a bounded in-memory table with a TTL
 * (a single node: the keys live as long as the process), and Redis (a cluster: one hash
 * per key under "pushgate:{app}:idem:", written by a Lua script so that reserving is
 * atomic across nodes, with a PEXPIRE as its TTL). Device enqueue keeps its keys with
 * the command itself (store/devices.h), not here.
 *
 * A pending key whose owner died (a killed node) is released after IDEM_PENDING_MS, so
 * a retry is not refused for the whole TTL. Thread-safe: workers call it directly. */
#ifndef PG_STORE_IDEM_H
#define PG_STORE_IDEM_H

#include <stddef.h>
#include <stdint.h>

#define IDEM_PENDING_MS 90000 /* longest a push may take to answer (60 s) plus margin */
#define IDEM_LEASE_MS 2000    /* Redis: a reservation whose answer was lost lapses after this */
#define IDEM_KEY_MAX 255      /* the header's longest value */
#define IDEM_FP_LEN 64        /* a request's fingerprint: SHA-256, hex */

enum idem_state {
    IDEM_NEW = 0,      /* reserved for this attempt: act, then idem_finish or idem_forget */
    IDEM_PENDING = 1,  /* another attempt with the key is still acting */
    IDEM_DONE = 2,     /* answered before: the answer is in *out */
    IDEM_MISMATCH = 3, /* the key was used with a different request */
};

/* A stored answer. Strings are owned (idem_answer_clear). */
typedef struct idem_answer_s {
    int status;
    char *content_type; /* NULL: none */
    char *headers;      /* CRLF-terminated header lines, or NULL */
    char *body;         /* NULL: empty */
    size_t body_len;
} idem_answer_t;

typedef struct idem_s idem_t;

typedef struct idem_ops_s {
    int (*begin)(idem_t *s, const char *scope, const char *fp, int64_t now, idem_answer_t *out);
    int (*finish)(idem_t *s, const char *scope, const char *fp, int64_t now,
                  const idem_answer_t *a);
    void (*forget)(idem_t *s, const char *scope);
    void (*free)(idem_t *s);
} idem_ops_t;

struct idem_s {
    const idem_ops_t *ops;
    int64_t ttl_ms; /* how long an answer is kept */
};

/* The Redis side, when clustered. */
struct redis_target_s;
typedef struct idem_redis_cfg_s {
    const struct redis_target_s *target; /* one Redis or a Redis Cluster (copied) */
    const char *prefix;                  /* "pushgate:<app>:": keys under prefix + "idem:{…}" */
    int (*healthy)(void *arg);           /* optional: 0 while Redis is known to be down */
    void *healthy_arg;
    unsigned timeout_ms; /* a call's round trip; 0: 500 */
} idem_redis_cfg_t;

/* A store in memory holding at most max_keys keys (the oldest answered one is dropped
 * to make room), each kept ttl_ms after its answer. Returns it, or NULL (no memory). */
idem_t *idem_mem_new(int64_t ttl_ms, size_t max_keys);

/* A store in Redis (connecting lazily). Returns it, or NULL (no memory). */
idem_t *idem_redis_new(const idem_redis_cfg_t *cfg, int64_t ttl_ms);

/* Looks the key scope up; reserves it when it is new. fp is the request's fingerprint
 * (IDEM_FP_LEN hex digits). Returns IDEM_NEW, IDEM_PENDING, IDEM_DONE (with *out filled:
 * idem_answer_clear it), IDEM_MISMATCH; -ENOSPC (the memory store is full of pending
 * keys), -ENOTCONN (Redis cannot be reached: nothing is known), -ENOMEM, -EIO. */
int idem_begin(idem_t *s, const char *scope, const char *fp, int64_t now, idem_answer_t *out);

/* Stores the answer of the attempt that reserved scope. Returns 0, -ENOTCONN, -ENOMEM
 * (the key is then released: a retry acts again), -EIO. */
int idem_finish(idem_t *s, const char *scope, const char *fp, int64_t now, const idem_answer_t *a);

/* Releases a reserved key whose attempt did nothing (a retry may act). */
void idem_forget(idem_t *s, const char *scope);

/* Frees the store. NULL is a no-op. */
void idem_free(idem_t *s);

/* Frees what a owns and zeroes it. */
void idem_answer_clear(idem_answer_t *a);

#endif
