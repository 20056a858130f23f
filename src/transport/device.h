/* Devices that poll: requests held open on their worker until something happens (a long
 * poll GET /push waiting for a command, an enqueue with ?waitMs= waiting for the
 * device's result), the cross-worker wake-ups that end them, and the in-memory record
 * of when each device last polled.
 *
 * A wake-up names (kind, key): a device id for held polls, a command id for waiting
 * enqueues. Wake-ups made during one loop turn of a worker go to every other worker as
 * ONE inbox message per worker (never one per device or per held request); when no
 * request is held anywhere they cost nothing. The module knows nothing of the store:
 * a woken request's callback decides whether it can answer. */
#ifndef PG_TRANSPORT_DEVICE_H
#define PG_TRANSPORT_DEVICE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "core/worker.h"
#include "http/server.h"

enum device_hold_kind {
    DEVICE_HOLD_POLL = 0, /* key: device id */
    DEVICE_HOLD_RESULT,   /* key: command id */
    DEVICE_HOLD_KINDS
};

enum device_why {
    DEVICE_WAKE = 0, /* something happened to the key: look again (may keep holding) */
    DEVICE_TIMEOUT,  /* the hold ended: answer now */
    DEVICE_SHUTDOWN, /* the node is stopping: answer now */
};

typedef struct device_reg_s device_reg_t;
typedef struct device_hold_s device_hold_t;
typedef struct device_pw_s device_pw_t;

/* Called on the holding worker. For DEVICE_WAKE, the callback either keeps holding
 * (returns without touching the request) or calls device_hold_done(h) and then answers
 * h->ctx. For DEVICE_TIMEOUT and DEVICE_SHUTDOWN the hold is already done: answer
 * h->ctx. h stays readable until the callback returns. */
typedef void (*device_hold_cb)(device_hold_t *h, enum device_why why);

struct device_hold_s {
    /* read-only for the caller */
    int kind;
    int64_t key;
    int64_t aux; /* the caller's (the device id of a waiting enqueue) */
    http_ctx_t *ctx;
    void *arg;
    /* private */
    device_hold_cb cb;
    device_pw_t *pw;
    device_hold_t *next; /* hash chain */
    uv_timer_t timer;
    unsigned gen;
    int linked;
};

/* What is known of a device's last visits (since the node started). */
typedef struct device_seen_s {
    int64_t device_id;
    int64_t last_poll_at;   /* unix ms; 0: never polled */
    int64_t last_result_at; /* unix ms; 0: never posted a result */
    uint64_t polls;
} device_seen_t;

/* Creates the registry for n workers. Returns it, or NULL when out of memory. */
device_reg_t *device_reg_new(int n_workers);

/* Frees the registry, after every worker has detached and stopped. NULL is a no-op. */
void device_reg_free(device_reg_t *reg);

/* Sets up w's part (before w runs, or on its thread). tick (optional) runs on w's
 * thread every period_ms. Returns 0 or -ENOMEM. */
int device_reg_attach(device_reg_t *reg, worker_t *w, void (*tick)(worker_t *w, void *arg),
                      void *tick_arg, unsigned period_ms);

/* Sets the hook that ends each loop turn of every worker, on the worker's thread: after
 * the poll phase (before the wake-ups of the turn are sent, and again after local ones
 * ran), and after this module's timers fired. Set it before the workers run. */
void device_reg_on_turn_end(device_reg_t *reg, void (*fn)(worker_t *w, void *arg), void *arg);

/* Tears down w's part on its thread after its loop ended: held requests are dropped
 * unanswered (their connections are closing). */
void device_reg_detach(device_reg_t *reg, worker_t *w);

/* Announces a hold of this kind before the handler looks at the store, so that a
 * wake-up racing with the look is never skipped. Follow with device_hold or
 * device_unreserve. */
void device_reserve(device_reg_t *reg, int kind);
void device_unreserve(device_reg_t *reg, int kind);

/* Holds ctx (which the caller deferred) on w until a wake-up for (kind, key), or
 * timeout_ms, or shutdown; uses the reservation. If the client goes away the hold ends
 * silently. Returns 0, -ESHUTDOWN when w is stopping (the reservation is released and
 * the caller answers now), -ENOMEM (likewise). */
int device_hold(device_reg_t *reg, worker_t *w, http_ctx_t *ctx, int kind, int64_t key, int64_t aux,
                uint64_t timeout_ms, device_hold_cb cb, void *arg);

/* Ends a hold: ctx is the caller's to answer. Idempotent. */
void device_hold_done(device_hold_t *h);

/* Wakes every request held for (kind, key) on every worker, at the end of the calling
 * worker's loop turn (from must be the calling worker). No-op when nothing of that kind
 * is held anywhere. */
void device_notify(device_reg_t *reg, worker_t *from, int kind, int64_t key);

/* Wakes every request held for the (kinds[i], keys[i]) pairs on every worker, from any
 * thread (a wake-up from another node, on the bus's loop): one inbox message per
 * worker for all n. Pairs of a kind that nothing holds are skipped; no-op when none is
 * left. */
void device_notify_any(device_reg_t *reg, const int *kinds, const int64_t *keys, size_t n);

/* Records a visit of the device at now (unix ms): a poll, or a result when result. */
void device_seen_touch(device_reg_t *reg, int64_t device_id, int64_t now, int result);

/* Fills *out with what is known of the device. Returns 0, or -ENOENT. */
int device_seen_get(device_reg_t *reg, int64_t device_id, device_seen_t *out);

/* Copies every known device with id > after, sorted by id, into a new array (*out, free
 * it). Returns the count, or -ENOMEM. */
ssize_t device_seen_snapshot(device_reg_t *reg, int64_t after, device_seen_t **out);

/* Forgets devices whose last visit is before the given time. */
void device_seen_prune(device_reg_t *reg, int64_t before);

#endif
