/* The durable device command queue (seed 004): per device, commands in
 * enqueue order, one in flight at a time, redelivered when no result comes within the
 * redelivery timeout, expired past their TTL; results close the command in flight or
 * are kept as orphans. Every change is committed (WAL: it survives kill -9 of the
 * process) before anything that depends on it may be shown to anyone.
 *
 * Group commit (opts.group_commit): a call does its work in a savepoint of one open
 * transaction shared by every thread, and returns at once; devices_last_epoch() names
 * that transaction. Nothing it did may be shown to anyone (no HTTP answer) before
 * devices_sync() says its epoch committed. A worker syncs once per loop turn, so one
 * commit (one WAL append, one round of file locks) carries every operation of the turn
 * of every worker. Without it, each call commits before it returns and its epoch is 0.
 *
 * The queue has a database file of its own (the node puts it beside its store), so its
 * open transaction never holds up another module's writes; one mutex serializes the
 * calls of every worker on its connection. Times are unix milliseconds passed in by
 * the caller (tests drive the clock). The process-wide metrics (queue depth, commands
 * by status) follow every committed change.
 *
 * Two implementations sit behind this interface (devices_ops_t): the SQLite queue of a
 * single node (devices_open, here) and, when the node is clustered, the queue shared
 * by every node in Redis (store/devices_redis.h), whose calls are durable once they
 * return (epoch 0) and which answers -ENOTCONN while Redis cannot be reached. */
#ifndef PG_STORE_DEVICES_H
#define PG_STORE_DEVICES_H

#include <stddef.h>
#include <stdint.h>

#include "transport/device_codec.h"

enum devices_status {
    DEVICES_QUEUED = 0,
    DEVICES_SENT,
    DEVICES_DONE,
    DEVICES_FAILED,
    DEVICES_EXPIRED,
    DEVICES_CANCELLED,
    DEVICES_N_STATUS
};

typedef struct devices_s devices_t;

typedef struct devices_opts_s {
    int64_t redelivery_ms; /* a sent command without result is sent again after this */
    unsigned max_queue;    /* most unfinished (queued + sent) commands per device */
    int64_t retention_ms;  /* finished commands and orphans older than this are pruned by
                              devices_sweep; 0 keeps them */
    int group_commit;      /* 0: every call commits before it returns. 1: calls run in one
                              open transaction that devices_sync commits (below) */
    int64_t idem_ttl_ms;   /* how long an Idempotency-Key names its command; 0: 24 h */
} devices_opts_t;

/* An enqueue's Idempotency-Key (docs/api.md): scope names the key (the caller puts
 * the API key and the endpoint in it), fp is the request's fingerprint. The key is
 * stored with the command, in the same transaction (or Lua script). */
typedef struct devices_idem_s {
    const char *scope;
    const char *fp;
} devices_idem_t;

/* One command with its state. Strings are owned (devices_cmd_clear). */
typedef struct devices_cmd_s {
    int64_t id;
    int64_t device_id;
    int status; /* enum devices_status */
    device_cmd_t cmd;
    int attempts;         /* deliveries so far */
    int64_t created_at;   /* unix ms */
    int64_t expires_at;   /* 0: never */
    int64_t sent_at;      /* last delivery; 0: never sent */
    int64_t completed_at; /* 0: not finished */
    char *response;       /* JSON text, or NULL */
    char *error;          /* NULL unless the device reported one */
} devices_cmd_t;

/* A result that came when no command was in flight. */
typedef struct devices_orphan_s {
    int64_t id;
    int64_t device_id;
    int64_t received_at;
    char *response; /* JSON text, or NULL */
    char *error;
} devices_orphan_t;

/* Unfinished commands of one device. */
typedef struct devices_depth_s {
    int64_t device_id;
    int64_t queued;
    int64_t sent;
} devices_depth_t;

typedef int (*devices_cmd_cb)(const devices_cmd_t *c, void *arg);
typedef int (*devices_orphan_cb)(const devices_orphan_t *o, void *arg);
typedef int (*devices_depth_cb)(const devices_depth_t *d, void *arg);

/* An implementation of the queue: every call below goes to ds->ops, whose functions
 * take the same arguments and return the same values as the calls they serve. Each
 * implementation embeds devices_t as its first member. */
typedef struct devices_ops_s {
    int (*enqueue)(devices_t *ds, int64_t device_id, const device_cmd_t *cmd, int64_t expires_at,
                   int64_t now, const devices_idem_t *idem, int64_t *id);
    int (*next)(devices_t *ds, int64_t device_id, int64_t now, devices_cmd_t *out);
    int (*result)(devices_t *ds, int64_t device_id, const device_result_t *res, int64_t now,
                  int64_t *id);
    int (*cancel)(devices_t *ds, int64_t device_id, int64_t id, int64_t now, int *status);
    int (*get)(devices_t *ds, int64_t device_id, int64_t id, int64_t now, devices_cmd_t *out);
    int (*list)(devices_t *ds, int64_t device_id, unsigned status_mask, int64_t after,
                unsigned limit, int64_t now, devices_cmd_cb cb, void *arg);
    int (*orphans)(devices_t *ds, int64_t device_id, int64_t after, unsigned limit,
                   devices_orphan_cb cb, void *arg);
    int (*depths)(devices_t *ds, int64_t after, unsigned limit, devices_depth_cb cb, void *arg);
    int (*depth)(devices_t *ds, int64_t device_id, devices_depth_t *d);
    int (*sweep)(devices_t *ds, int64_t now);
    int (*sync)(devices_t *ds, uint64_t epoch); /* NULL: every call is durable on return */
    void (*close)(devices_t *ds);
} devices_ops_t;

struct devices_s {
    const devices_ops_t *ops;
};

/* The status's name ("queued", "sent", …), or "?" when out of range. */
const char *devices_status_name(int status);

/* The status called name[0..len), or -EINVAL. */
int devices_status_parse(const char *name, size_t len);

/* Every call below may also return -ENOTCONN when the queue cannot be reached (the
 * Redis queue while Redis is down or does not answer in time): the call did nothing,
 * or, cut off after it was sent, its outcome is unknown (it may have happened). */

/* Opens the queue on the SQLite database at path (creating the file and its tables if
 * needed; WAL mode) and
 * sets the depth gauges from what it holds. Returns 0, or -EIO / -ENOMEM with a
 * message in err. */
int devices_open(devices_t **out, const char *path, const devices_opts_t *opts, char *err,
                 size_t errlen);

/* Commits what is open and closes the queue's connection. NULL is a no-op. */
void devices_close(devices_t *ds);

/* The epoch of the calling thread's latest call: what devices_sync must confirm before
 * its outcome is shown to anyone. 0: nothing to wait for (already committed). */
uint64_t devices_last_epoch(void);

/* Makes sure epoch is finished: commits the open transaction if it is that epoch (or an
 * older one). Returns 0 when epoch (0 included) is committed, -EIO when its commit
 * failed (every call of that epoch is undone). */
int devices_sync(devices_t *ds, uint64_t epoch);

/* Appends a command to the device's queue. expires_at 0: never expires. *id gets its id.
 * Returns 0 once committed, -ENOSPC when the device already has max_queue unfinished
 * commands, -EBUSY when the database stayed locked, -EIO. */
int devices_enqueue(devices_t *ds, int64_t device_id, const device_cmd_t *cmd, int64_t expires_at,
                    int64_t now, int64_t *id);

/* devices_enqueue with an Idempotency-Key (idem NULL: none). A key seen within the
 * TTL with the same fingerprint enqueues nothing and gives the first command's id.
 * Returns 0 (enqueued), 1 (the key's command, in *id), -EEXIST (the key was used with
 * a different fingerprint), or what devices_enqueue returns. */
int devices_enqueue_idem(devices_t *ds, int64_t device_id, const device_cmd_t *cmd,
                         int64_t expires_at, int64_t now, const devices_idem_t *idem, int64_t *id);

/* The device polls: expires what is past its TTL, then delivers the oldest unfinished
 * command unless one is in flight and not yet due for redelivery. The delivered
 * command becomes (or stays) sent, attempts + 1, sent_at = now. Returns 1 with *out
 * filled (devices_cmd_clear it), 0 when there is nothing to deliver, -EBUSY, -EIO. */
int devices_next(devices_t *ds, int64_t device_id, int64_t now, devices_cmd_t *out);

/* The device posted a result: it closes the command in flight (done, or failed when
 * res->failed), or, with none in flight, is stored as an orphan. *id gets the command's
 * (or the orphan's) id. Returns 1 (a command was closed), 0 (orphan), -EBUSY, -EIO. */
int devices_result(devices_t *ds, int64_t device_id, const device_result_t *res, int64_t now,
                   int64_t *id);

/* Cancels a queued command. Returns 0 once committed, -ENOENT (no such command for this
 * device), -EALREADY (not queued: *status says what it is), -EBUSY, -EIO. */
int devices_cancel(devices_t *ds, int64_t device_id, int64_t id, int64_t now, int *status);

/* Reads one command of the device (after expiring the device's overdue commands).
 * Returns 0 with *out filled (devices_cmd_clear it), -ENOENT, -EBUSY, -EIO. */
int devices_get(devices_t *ds, int64_t device_id, int64_t id, int64_t now, devices_cmd_t *out);

/* Calls cb for the device's commands with id > after, oldest first, at most limit,
 * whose status bit (1 << status) is in status_mask (0: any). cb returning non-zero
 * stops the walk. Returns the number of calls, -EBUSY, -EIO. */
int devices_list(devices_t *ds, int64_t device_id, unsigned status_mask, int64_t after,
                 unsigned limit, int64_t now, devices_cmd_cb cb, void *arg);

/* Calls cb for the device's orphan results with id > after, oldest first, at most
 * limit. Returns the number of calls, -EIO. */
int devices_orphans(devices_t *ds, int64_t device_id, int64_t after, unsigned limit,
                    devices_orphan_cb cb, void *arg);

/* Calls cb for every device with unfinished commands and device_id > after, in device
 * order, at most limit. Returns the number of calls, -EIO. */
int devices_depths(devices_t *ds, int64_t after, unsigned limit, devices_depth_cb cb, void *arg);

/* The unfinished commands of one device into *d. Returns 0, -EIO. */
int devices_depth(devices_t *ds, int64_t device_id, devices_depth_t *d);

/* Housekeeping: expires every command past its TTL (queued, or sent and due for
 * redelivery) and prunes finished commands and orphans older than the retention, then
 * commits (whatever else is open too) and checkpoints the WAL. Returns the number of
 * commands expired, -EBUSY, -EIO. */
int devices_sweep(devices_t *ds, int64_t now);

/* Frees what c (or o) owns and zeroes it. */
void devices_cmd_clear(devices_cmd_t *c);
void devices_orphan_clear(devices_orphan_t *o);

#endif
