/* Device command queue on SQLite: schema, prepared statements, one transaction per
 * call (or a savepoint of the open one, with group commit), and the depth/status
 * metrics that follow each commit; and the interface's calls, which go to whichever
 * implementation a queue is (this one, or store/devices_redis.c). */
#include "store/devices.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/metrics.h"

/* status is stored as its enum value (0 queued … 5 cancelled); times are unix ms */
static const char schema[] =
    "CREATE TABLE IF NOT EXISTS device_commands ("
    " id INTEGER PRIMARY KEY,"
    " device_id INTEGER NOT NULL,"
    " status INTEGER NOT NULL,"
    " verb TEXT NOT NULL,"
    " endpoint TEXT NOT NULL,"
    " body TEXT,"
    " body_json INTEGER NOT NULL DEFAULT 0,"
    " content_type TEXT NOT NULL,"
    " query_string TEXT,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " created_at INTEGER NOT NULL,"
    " expires_at INTEGER,"
    " sent_at INTEGER,"
    " completed_at INTEGER,"
    " response TEXT,"
    " error TEXT);"
    "CREATE INDEX IF NOT EXISTS device_commands_by_device ON device_commands(device_id, id);"
    "CREATE INDEX IF NOT EXISTS device_commands_open ON device_commands(device_id, id)"
    " WHERE status IN (0,1);"
    "CREATE INDEX IF NOT EXISTS device_commands_expiry ON device_commands(expires_at)"
    " WHERE status IN (0,1);"
    "CREATE INDEX IF NOT EXISTS device_commands_completed ON device_commands(completed_at)"
    " WHERE completed_at IS NOT NULL;"
    "CREATE TABLE IF NOT EXISTS device_orphans ("
    " id INTEGER PRIMARY KEY,"
    " device_id INTEGER NOT NULL,"
    " received_at INTEGER NOT NULL,"
    " response TEXT,"
    " error TEXT);"
    "CREATE INDEX IF NOT EXISTS device_orphans_by_device ON device_orphans(device_id, id);"
    "CREATE INDEX IF NOT EXISTS device_orphans_age ON device_orphans(received_at);"
    /* Idempotency-Keys of enqueues: written in the enqueue's own transaction */
    "CREATE TABLE IF NOT EXISTS device_idem ("
    " scope TEXT PRIMARY KEY,"
    " fp TEXT NOT NULL,"
    " cmd_id INTEGER NOT NULL,"
    " created_at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS device_idem_age ON device_idem(created_at);";

#define COLS                                                                                       \
    "id, device_id, status, verb, endpoint, body, body_json, content_type, query_string,"          \
    " attempts, created_at, expires_at, sent_at, completed_at, response, error"

/* most rows one sweep expires or prunes: bounds how long it holds the database */
#define SWEEP_BATCH 2000

enum stmt_id {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_SAVEPOINT,
    S_RELEASE,
    S_ROLLBACK_TO,
    S_EXPIRE_DEV_QUEUED,
    S_EXPIRE_DEV_SENT,
    S_EXPIRE_ALL_QUEUED,
    S_EXPIRE_ALL_SENT,
    S_COUNT_OPEN,
    S_INSERT,
    S_HEAD,
    S_MARK_SENT,
    S_IN_FLIGHT,
    S_FINISH,
    S_ORPHAN,
    S_CANCEL,
    S_STATUS,
    S_GET,
    S_LIST,
    S_ORPHANS,
    S_DEPTHS,
    S_DEPTH,
    S_TOTALS,
    S_PRUNE_COMMANDS,
    S_PRUNE_ORPHANS,
    S_IDEM_GET,
    S_IDEM_PUT,
    S_IDEM_PRUNE,
    S_COUNT
};

static const char *const stmt_sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_SAVEPOINT] = "SAVEPOINT op",
    [S_RELEASE] = "RELEASE op",
    [S_ROLLBACK_TO] = "ROLLBACK TO op",
    /* ?1 device, ?2 now, ?3 redelivery ms. The IN term lets the planner use the
     * partial index of unfinished commands. A sent command expires only once it is
     * also due for redelivery: a result may still be on its way until then. */
    [S_EXPIRE_DEV_QUEUED] = "UPDATE device_commands INDEXED BY device_commands_open"
                            " SET status=4, completed_at=expires_at"
                            " WHERE device_id=?1 AND status IN (0,1) AND status=0"
                            " AND expires_at<=?2",
    [S_EXPIRE_DEV_SENT] = "UPDATE device_commands INDEXED BY device_commands_open SET status=4,"
                          " completed_at=MAX(expires_at, sent_at+?3)"
                          " WHERE device_id=?1 AND status IN (0,1) AND status=1"
                          " AND expires_at<=?2 AND sent_at<=?2-?3",
    [S_EXPIRE_ALL_QUEUED] = "UPDATE device_commands SET status=4, completed_at=expires_at"
                            " WHERE id IN (SELECT id FROM device_commands"
                            " INDEXED BY device_commands_expiry"
                            " WHERE status IN (0,1) AND expires_at<=?1 AND status=0 LIMIT ?2)",
    [S_EXPIRE_ALL_SENT] = "UPDATE device_commands SET status=4,"
                          " completed_at=MAX(expires_at, sent_at+?3)"
                          " WHERE id IN (SELECT id FROM device_commands"
                          " INDEXED BY device_commands_expiry WHERE status IN (0,1)"
                          " AND expires_at<=?1 AND status=1 AND sent_at<=?1-?3 LIMIT ?2)",
    [S_COUNT_OPEN] = "SELECT count(*) FROM device_commands WHERE device_id=?1 AND status IN (0,1)",
    [S_INSERT] = "INSERT INTO device_commands(device_id, status, verb, endpoint, body, body_json,"
                 " content_type, query_string, attempts, created_at, expires_at)"
                 " VALUES (?1, 0, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, ?9)",
    [S_HEAD] = "SELECT " COLS " FROM device_commands WHERE device_id=?1 AND status IN (0,1)"
               " ORDER BY id LIMIT 1",
    [S_MARK_SENT] = "UPDATE device_commands SET status=1, attempts=attempts+1, sent_at=?2"
                    " WHERE id=?1",
    [S_IN_FLIGHT] = "SELECT id FROM device_commands WHERE device_id=?1 AND status IN (0,1)"
                    " AND status=1 ORDER BY id LIMIT 1",
    [S_FINISH] = "UPDATE device_commands SET status=?2, response=?3, error=?4, completed_at=?5"
                 " WHERE id=?1",
    [S_ORPHAN] = "INSERT INTO device_orphans(device_id, received_at, response, error)"
                 " VALUES (?1, ?2, ?3, ?4)",
    [S_CANCEL] = "UPDATE device_commands SET status=5, completed_at=?3"
                 " WHERE id=?1 AND device_id=?2 AND status=0",
    [S_STATUS] = "SELECT status FROM device_commands WHERE id=?1 AND device_id=?2",
    [S_GET] = "SELECT " COLS " FROM device_commands WHERE id=?1 AND device_id=?2",
    [S_LIST] = "SELECT " COLS " FROM device_commands WHERE device_id=?1 AND id>?2"
               " AND (?3=0 OR ((1<<status) & ?3)!=0) ORDER BY id LIMIT ?4",
    [S_ORPHANS] = "SELECT id, device_id, received_at, response, error FROM device_orphans"
                  " WHERE device_id=?1 AND id>?2 ORDER BY id LIMIT ?3",
    [S_DEPTHS] = "SELECT device_id, sum(status=0), sum(status=1) FROM device_commands"
                 " INDEXED BY device_commands_open"
                 " WHERE status IN (0,1) AND device_id>?1 GROUP BY device_id"
                 " ORDER BY device_id LIMIT ?2",
    [S_DEPTH] = "SELECT coalesce(sum(status=0),0), coalesce(sum(status=1),0) FROM"
                " device_commands WHERE device_id=?1 AND status IN (0,1)",
    [S_TOTALS] = "SELECT coalesce(sum(status=0),0), coalesce(sum(status=1),0) FROM"
                 " device_commands WHERE status IN (0,1)",
    /* the newest row is never pruned: ids (max + 1) are then never handed out twice */
    [S_PRUNE_COMMANDS] = "DELETE FROM device_commands WHERE id IN (SELECT id FROM"
                         " device_commands WHERE completed_at<?1 LIMIT ?2)"
                         " AND id<(SELECT max(id) FROM device_commands)",
    [S_PRUNE_ORPHANS] = "DELETE FROM device_orphans WHERE id IN (SELECT id FROM"
                        " device_orphans WHERE received_at<?1 LIMIT ?2)"
                        " AND id<(SELECT max(id) FROM device_orphans)",
    /* ?1 scope, ?2 oldest creation still valid */
    [S_IDEM_GET] = "SELECT fp, cmd_id FROM device_idem WHERE scope=?1 AND created_at>=?2",
    [S_IDEM_PUT] = "INSERT OR REPLACE INTO device_idem(scope, fp, cmd_id, created_at)"
                   " VALUES (?1, ?2, ?3, ?4)",
    [S_IDEM_PRUNE] = "DELETE FROM device_idem WHERE scope IN (SELECT scope FROM device_idem"
                     " WHERE created_at<?1 LIMIT ?2)",
};

/* Changes made by a transaction, applied to the metrics once it commits. */
typedef struct delta_s {
    int64_t queued, sent;
    uint64_t entered[DEVICES_N_STATUS];
    uint64_t redeliveries, orphans;
} delta_t;

#define FAILED_RING 64

/* The SQLite queue: devices_t (the ops) first. */
typedef struct sq_s {
    devices_t base;
    sqlite3 *db;
    sqlite3_stmt *st[S_COUNT];
    devices_opts_t opts;
    pthread_mutex_t mu;
    /* group commit: operations run in savepoints of one open transaction, committed by
     * devices_sync */
    int open;                     /* a transaction is open */
    uint64_t epoch;               /* its number (or the last one's) */
    uint64_t failed[FAILED_RING]; /* the latest epochs whose commit failed */
    unsigned n_failed;
    delta_t pending; /* the open transaction's metrics */
} sq_t;

static const devices_ops_t sq_ops;

/* The epoch of the calling thread's latest operation (0: it is already durable). */
static __thread uint64_t tl_epoch;

static const char *const status_names[DEVICES_N_STATUS] = {"queued", "sent",    "done",
                                                           "failed", "expired", "cancelled"};

const char *devices_status_name(int status)
{
    return status >= 0 && status < DEVICES_N_STATUS ? status_names[status] : "?";
}

int devices_status_parse(const char *name, size_t len)
{
    for (int i = 0; i < DEVICES_N_STATUS; i++)
        if (strlen(status_names[i]) == len && memcmp(status_names[i], name, len) == 0) return i;
    return -EINVAL;
}

static void merge(delta_t *into, const delta_t *d)
{
    into->queued += d->queued;
    into->sent += d->sent;
    for (int i = 0; i < DEVICES_N_STATUS; i++)
        into->entered[i] += d->entered[i];
    into->redeliveries += d->redeliveries;
    into->orphans += d->orphans;
}

static void apply(const delta_t *d)
{
    if (d->queued) __atomic_add_fetch(&metrics.device_queued, d->queued, __ATOMIC_RELAXED);
    if (d->sent) __atomic_add_fetch(&metrics.device_in_flight, d->sent, __ATOMIC_RELAXED);
    for (int i = 0; i < DEVICES_N_STATUS; i++)
        if (d->entered[i]) METRICS_ADD(device_commands[i], d->entered[i]);
    if (d->redeliveries) METRICS_ADD(device_redeliveries, d->redeliveries);
    if (d->orphans) METRICS_ADD(device_orphans, d->orphans);
}

static int fail_rc(sq_t *ds, int rc, const char *what)
{
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
        log_warn("device queue busy", "op=%s", what);
        return -EBUSY;
    }
    if (rc == SQLITE_NOMEM) return -ENOMEM;
    log_error("device queue statement failed", "op=%s error=\"%s\"", what, sqlite3_errmsg(ds->db));
    return -EIO;
}

/* Steps a statement that returns no row and resets it. Returns 0 or a negative errno. */
static int run(sq_t *ds, enum stmt_id id)
{
    sqlite3_stmt *s = ds->st[id];
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW) return 0;
    return fail_rc(ds, rc, stmt_sql[id]);
}

static int tx_begin(sq_t *ds)
{
    return run(ds, S_BEGIN);
}

static int tx_commit(sq_t *ds)
{
    int r = run(ds, S_COMMIT);
    if (r < 0 && !sqlite3_get_autocommit(ds->db)) run(ds, S_ROLLBACK);
    return r;
}

static void tx_rollback(sq_t *ds)
{
    if (!sqlite3_get_autocommit(ds->db)) run(ds, S_ROLLBACK);
}

/* The open transaction is gone without a commit: every operation in it is lost. */
static void epoch_failed(sq_t *ds)
{
    ds->failed[ds->n_failed++ % FAILED_RING] = ds->epoch;
    ds->open = 0;
    memset(&ds->pending, 0, sizeof(ds->pending));
}

/* Commits the open transaction, if any (lock held). Returns 0 or a negative errno. */
static int commit_open(sq_t *ds)
{
    if (!ds->open) return 0;
    int r = tx_commit(ds);
    if (r < 0) {
        log_error("device queue commit failed: its operations are answered 503", "epoch=%llu",
                  (unsigned long long)ds->epoch);
        epoch_failed(ds);
        return r;
    }
    apply(&ds->pending);
    memset(&ds->pending, 0, sizeof(ds->pending));
    ds->open = 0;
    return 0;
}

/* An operation starts (lock held): its own transaction, or, with group commit, a
 * savepoint in the open one (opened if needed). Sets the thread's epoch. Returns 0 or a
 * negative errno. */
static int op_begin(sq_t *ds)
{
    tl_epoch = 0;
    if (!ds->opts.group_commit) return tx_begin(ds);
    if (!ds->open) {
        int r = tx_begin(ds);
        if (r < 0) return r;
        ds->open = 1;
        ds->epoch++;
    }
    int r = run(ds, S_SAVEPOINT);
    if (r < 0) {
        if (sqlite3_get_autocommit(ds->db)) epoch_failed(ds);
        return r;
    }
    tl_epoch = ds->epoch;
    return 0;
}

/* The operation failed: undo it (lock held). */
static void op_rollback(sq_t *ds)
{
    if (!ds->opts.group_commit) {
        tx_rollback(ds);
        return;
    }
    if (!sqlite3_get_autocommit(ds->db)) {
        run(ds, S_ROLLBACK_TO);
        run(ds, S_RELEASE);
    }
    /* some errors (I/O, disk full) end the whole transaction */
    if (ds->open && sqlite3_get_autocommit(ds->db)) epoch_failed(ds);
}

/* The operation succeeded with the metrics changes d (lock held): commit it, or, with
 * group commit, keep it for devices_sync. Returns 0 or a negative errno. */
static int op_commit(sq_t *ds, const delta_t *d)
{
    if (!ds->opts.group_commit) {
        int r = tx_commit(ds);
        if (r == 0) apply(d);
        return r;
    }
    int r = run(ds, S_RELEASE);
    if (r < 0) {
        op_rollback(ds);
        return r;
    }
    merge(&ds->pending, d);
    return 0;
}

/* A read outside op_begin: it sees the open transaction, if any. */
static void read_epoch(sq_t *ds)
{
    tl_epoch = ds->opts.group_commit && ds->open ? ds->epoch : 0;
}

uint64_t devices_last_epoch(void)
{
    return tl_epoch;
}

static int sq_sync(devices_t *base, uint64_t epoch)
{
    sq_t *ds = (sq_t *)base;
    if (!epoch) return 0;
    pthread_mutex_lock(&ds->mu);
    if (ds->open && ds->epoch <= epoch) commit_open(ds);
    int r = ds->open && ds->epoch <= epoch ? -EAGAIN : 0;
    for (unsigned i = 0; i < FAILED_RING && i < ds->n_failed; i++)
        if (ds->failed[i] == epoch) r = -EIO;
    pthread_mutex_unlock(&ds->mu);
    return r;
}

static char *col_text(sqlite3_stmt *s, int i)
{
    if (sqlite3_column_type(s, i) == SQLITE_NULL) return NULL;
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? strdup((const char *)t) : NULL;
}

/* Reads a row of COLS. Returns 0 or -ENOMEM. */
static int read_cmd(sqlite3_stmt *s, devices_cmd_t *c)
{
    memset(c, 0, sizeof(*c));
    c->id = sqlite3_column_int64(s, 0);
    c->device_id = sqlite3_column_int64(s, 1);
    c->status = sqlite3_column_int(s, 2);
    c->cmd.verb = col_text(s, 3);
    c->cmd.endpoint = col_text(s, 4);
    c->cmd.body = col_text(s, 5);
    c->cmd.body_json = sqlite3_column_int(s, 6);
    c->cmd.content_type = col_text(s, 7);
    c->cmd.query_string = col_text(s, 8);
    c->attempts = sqlite3_column_int(s, 9);
    c->created_at = sqlite3_column_int64(s, 10);
    c->expires_at = sqlite3_column_int64(s, 11);
    c->sent_at = sqlite3_column_int64(s, 12);
    c->completed_at = sqlite3_column_int64(s, 13);
    c->response = col_text(s, 14);
    c->error = col_text(s, 15);
    if (!c->cmd.verb || !c->cmd.endpoint || !c->cmd.content_type ||
        (sqlite3_column_type(s, 5) != SQLITE_NULL && !c->cmd.body) ||
        (sqlite3_column_type(s, 8) != SQLITE_NULL && !c->cmd.query_string) ||
        (sqlite3_column_type(s, 14) != SQLITE_NULL && !c->response) ||
        (sqlite3_column_type(s, 15) != SQLITE_NULL && !c->error)) {
        devices_cmd_clear(c);
        return -ENOMEM;
    }
    return 0;
}

void devices_cmd_clear(devices_cmd_t *c)
{
    device_cmd_clear(&c->cmd);
    free(c->response);
    free(c->error);
    memset(c, 0, sizeof(*c));
}

void devices_orphan_clear(devices_orphan_t *o)
{
    free(o->response);
    free(o->error);
    memset(o, 0, sizeof(*o));
}

static void bind_text(sqlite3_stmt *s, int i, const char *t)
{
    if (t)
        sqlite3_bind_text(s, i, t, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

/* Expires the device's overdue commands inside the caller's transaction. */
static int expire_device(sq_t *ds, int64_t device_id, int64_t now, delta_t *d)
{
    sqlite3_stmt *q = ds->st[S_EXPIRE_DEV_QUEUED];
    sqlite3_bind_int64(q, 1, device_id);
    sqlite3_bind_int64(q, 2, now);
    int r = run(ds, S_EXPIRE_DEV_QUEUED);
    if (r < 0) return r;
    int n = sqlite3_changes(ds->db);
    d->queued -= n;
    d->entered[DEVICES_EXPIRED] += (uint64_t)n;
    sqlite3_stmt *s = ds->st[S_EXPIRE_DEV_SENT];
    sqlite3_bind_int64(s, 1, device_id);
    sqlite3_bind_int64(s, 2, now);
    sqlite3_bind_int64(s, 3, ds->opts.redelivery_ms);
    if ((r = run(ds, S_EXPIRE_DEV_SENT)) < 0) return r;
    n = sqlite3_changes(ds->db);
    d->sent -= n;
    d->entered[DEVICES_EXPIRED] += (uint64_t)n;
    return 0;
}

int devices_open(devices_t **out, const char *path, const devices_opts_t *opts, char *err,
                 size_t errlen)
{
    sq_t *ds = calloc(1, sizeof(*ds));
    if (!ds) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    ds->base.ops = &sq_ops;
    ds->opts = *opts;
    int r = -EIO;
    if (pthread_mutex_init(&ds->mu, NULL) != 0) {
        snprintf(err, errlen, "cannot create a mutex");
        goto fail_mutex;
    }
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &ds->db, flags, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s", path,
                 ds->db ? sqlite3_errmsg(ds->db) : "out of memory");
        goto fail_open;
    }
    sqlite3_busy_timeout(ds->db, 5000);
    char *msg = NULL;
    /* checkpoints run from devices_sweep, off the request path (see there) */
    if (sqlite3_exec(ds->db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                     " PRAGMA wal_autocheckpoint=0; PRAGMA journal_size_limit=67108864;",
                     NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(ds->db, schema, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "cannot create the device queue tables in %s: %s", path,
                 msg ? msg : sqlite3_errmsg(ds->db));
        sqlite3_free(msg);
        goto fail_open;
    }
    for (int i = 0; i < S_COUNT; i++) {
        if (sqlite3_prepare_v3(ds->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &ds->st[i],
                               NULL) != SQLITE_OK) {
            snprintf(err, errlen, "cannot prepare \"%s\": %s", stmt_sql[i], sqlite3_errmsg(ds->db));
            goto fail_prepare;
        }
    }
    sqlite3_stmt *t = ds->st[S_TOTALS];
    if (sqlite3_step(t) != SQLITE_ROW) {
        snprintf(err, errlen, "cannot count the device queue: %s", sqlite3_errmsg(ds->db));
        sqlite3_reset(t);
        goto fail_prepare;
    }
    __atomic_store_n(&metrics.device_queued, sqlite3_column_int64(t, 0), __ATOMIC_RELAXED);
    __atomic_store_n(&metrics.device_in_flight, sqlite3_column_int64(t, 1), __ATOMIC_RELAXED);
    sqlite3_reset(t);
    *out = &ds->base;
    return 0;
fail_prepare:
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(ds->st[i]);
fail_open:
    sqlite3_close_v2(ds->db);
    pthread_mutex_destroy(&ds->mu);
fail_mutex:
    free(ds);
    return r;
}

static void sq_close(devices_t *base)
{
    sq_t *ds = (sq_t *)base;
    pthread_mutex_lock(&ds->mu);
    commit_open(ds);
    pthread_mutex_unlock(&ds->mu);
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(ds->st[i]);
    sqlite3_close_v2(ds->db);
    pthread_mutex_destroy(&ds->mu);
    free(ds);
}

static int64_t idem_ttl(const sq_t *ds)
{
    return ds->opts.idem_ttl_ms > 0 ? ds->opts.idem_ttl_ms : 86400000;
}

/* The command an Idempotency-Key names, inside the caller's transaction. Returns 1
 * (*id set), 0 (unknown or expired), -EEXIST (another request's key), or an error. */
static int idem_find(sq_t *ds, const devices_idem_t *idem, int64_t now, int64_t *id)
{
    sqlite3_stmt *g = ds->st[S_IDEM_GET];
    sqlite3_bind_text(g, 1, idem->scope, -1, SQLITE_STATIC);
    sqlite3_bind_int64(g, 2, now - idem_ttl(ds));
    int rc = sqlite3_step(g), r = 0;
    if (rc == SQLITE_ROW) {
        const unsigned char *fp = sqlite3_column_text(g, 0);
        if (!fp || strcmp((const char *)fp, idem->fp) != 0) {
            r = -EEXIST;
        } else {
            *id = sqlite3_column_int64(g, 1);
            r = 1;
        }
    } else if (rc != SQLITE_DONE) {
        r = fail_rc(ds, rc, "idempotency key");
    }
    sqlite3_reset(g);
    return r;
}

static int sq_enqueue(devices_t *base, int64_t device_id, const device_cmd_t *cmd,
                      int64_t expires_at, int64_t now, const devices_idem_t *idem, int64_t *id)
{
    sq_t *ds = (sq_t *)base;
    delta_t d = {0};
    pthread_mutex_lock(&ds->mu);
    int r = op_begin(ds);
    if (r < 0) goto out;
    if (idem && (r = idem_find(ds, idem, now, id)) != 0) {
        if (r < 0 && r != -EEXIST) goto fail;
        /* found (or refused): nothing changed, the read is as durable as the key */
        int cr = op_commit(ds, &d);
        if (cr < 0) r = cr;
        goto out;
    }
    if ((r = expire_device(ds, device_id, now, &d)) < 0) goto fail;
    sqlite3_stmt *c = ds->st[S_COUNT_OPEN];
    sqlite3_bind_int64(c, 1, device_id);
    int rc = sqlite3_step(c);
    int64_t open = rc == SQLITE_ROW ? sqlite3_column_int64(c, 0) : 0;
    sqlite3_reset(c);
    if (rc != SQLITE_ROW) {
        r = fail_rc(ds, rc, "count");
        goto fail;
    }
    if (open >= (int64_t)ds->opts.max_queue) {
        /* keep what expire_device did: it is true either way */
        if ((r = op_commit(ds, &d)) == 0) r = -ENOSPC;
        goto out;
    }
    sqlite3_stmt *s = ds->st[S_INSERT];
    sqlite3_bind_int64(s, 1, device_id);
    bind_text(s, 2, cmd->verb ? cmd->verb : "POST");
    bind_text(s, 3, cmd->endpoint);
    bind_text(s, 4, cmd->body);
    sqlite3_bind_int(s, 5, cmd->body && cmd->body_json);
    bind_text(s, 6, cmd->content_type ? cmd->content_type : "application/json");
    bind_text(s, 7, cmd->query_string);
    sqlite3_bind_int64(s, 8, now);
    if (expires_at > 0)
        sqlite3_bind_int64(s, 9, expires_at);
    else
        sqlite3_bind_null(s, 9);
    if ((r = run(ds, S_INSERT)) < 0) goto fail;
    int64_t new_id = sqlite3_last_insert_rowid(ds->db);
    if (idem) {
        sqlite3_stmt *k = ds->st[S_IDEM_PUT];
        sqlite3_bind_text(k, 1, idem->scope, -1, SQLITE_STATIC);
        sqlite3_bind_text(k, 2, idem->fp, -1, SQLITE_STATIC);
        sqlite3_bind_int64(k, 3, new_id);
        sqlite3_bind_int64(k, 4, now);
        if ((r = run(ds, S_IDEM_PUT)) < 0) goto fail;
    }
    d.queued++;
    d.entered[DEVICES_QUEUED]++;
    if ((r = op_commit(ds, &d)) == 0) *id = new_id;
    goto out;
fail:
    op_rollback(ds);
out:
    pthread_mutex_unlock(&ds->mu);
    return r;
}

static int sq_next(devices_t *base, int64_t device_id, int64_t now, devices_cmd_t *out)
{
    sq_t *ds = (sq_t *)base;
    delta_t d = {0};
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&ds->mu);
    int r = op_begin(ds);
    if (r < 0) goto out;
    if ((r = expire_device(ds, device_id, now, &d)) < 0) goto fail;
    sqlite3_stmt *h = ds->st[S_HEAD];
    sqlite3_bind_int64(h, 1, device_id);
    int rc = sqlite3_step(h);
    if (rc == SQLITE_ROW)
        r = read_cmd(h, out);
    else if (rc != SQLITE_DONE)
        r = fail_rc(ds, rc, "head");
    sqlite3_reset(h);
    if (r < 0) goto fail;
    int deliver = rc == SQLITE_ROW;
    /* the head is the command in flight if there is one: commands go out in order */
    if (deliver && out->status == DEVICES_SENT && now - out->sent_at < ds->opts.redelivery_ms)
        deliver = 0;
    if (deliver) {
        sqlite3_stmt *m = ds->st[S_MARK_SENT];
        sqlite3_bind_int64(m, 1, out->id);
        sqlite3_bind_int64(m, 2, now);
        if ((r = run(ds, S_MARK_SENT)) < 0) goto fail;
        if (out->status == DEVICES_SENT) {
            d.redeliveries++;
        } else {
            d.queued--;
            d.sent++;
            d.entered[DEVICES_SENT]++;
        }
        out->status = DEVICES_SENT;
        out->attempts++;
        out->sent_at = now;
    }
    if ((r = op_commit(ds, &d)) == 0) r = deliver;
    goto out;
fail:
    op_rollback(ds);
out:
    if (r <= 0) devices_cmd_clear(out);
    pthread_mutex_unlock(&ds->mu);
    return r;
}

static int sq_result(devices_t *base, int64_t device_id, const device_result_t *res, int64_t now,
                     int64_t *id)
{
    sq_t *ds = (sq_t *)base;
    delta_t d = {0};
    pthread_mutex_lock(&ds->mu);
    int r = op_begin(ds);
    if (r < 0) goto out;
    sqlite3_stmt *f = ds->st[S_IN_FLIGHT];
    sqlite3_bind_int64(f, 1, device_id);
    int rc = sqlite3_step(f);
    int64_t cmd = rc == SQLITE_ROW ? sqlite3_column_int64(f, 0) : 0;
    sqlite3_reset(f);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        r = fail_rc(ds, rc, "in flight");
        goto fail;
    }
    int64_t got;
    if (rc == SQLITE_ROW) {
        int st = res->failed ? DEVICES_FAILED : DEVICES_DONE;
        sqlite3_stmt *u = ds->st[S_FINISH];
        sqlite3_bind_int64(u, 1, cmd);
        sqlite3_bind_int(u, 2, st);
        bind_text(u, 3, res->response);
        bind_text(u, 4, res->error);
        sqlite3_bind_int64(u, 5, now);
        if ((r = run(ds, S_FINISH)) < 0) goto fail;
        d.sent--;
        d.entered[st]++;
        got = cmd;
    } else {
        sqlite3_stmt *o = ds->st[S_ORPHAN];
        sqlite3_bind_int64(o, 1, device_id);
        sqlite3_bind_int64(o, 2, now);
        bind_text(o, 3, res->response);
        bind_text(o, 4, res->error);
        if ((r = run(ds, S_ORPHAN)) < 0) goto fail;
        d.orphans++;
        got = sqlite3_last_insert_rowid(ds->db);
    }
    if ((r = op_commit(ds, &d)) == 0) {
        *id = got;
        r = rc == SQLITE_ROW;
    }
    goto out;
fail:
    op_rollback(ds);
out:
    pthread_mutex_unlock(&ds->mu);
    return r;
}

static int sq_cancel(devices_t *base, int64_t device_id, int64_t id, int64_t now, int *status)
{
    sq_t *ds = (sq_t *)base;
    delta_t d = {0};
    pthread_mutex_lock(&ds->mu);
    int r = op_begin(ds);
    if (r < 0) goto out;
    if ((r = expire_device(ds, device_id, now, &d)) < 0) goto fail;
    sqlite3_stmt *c = ds->st[S_CANCEL];
    sqlite3_bind_int64(c, 1, id);
    sqlite3_bind_int64(c, 2, device_id);
    sqlite3_bind_int64(c, 3, now);
    if ((r = run(ds, S_CANCEL)) < 0) goto fail;
    if (sqlite3_changes(ds->db) == 1) {
        d.queued--;
        d.entered[DEVICES_CANCELLED]++;
        *status = DEVICES_CANCELLED;
    } else {
        sqlite3_stmt *s = ds->st[S_STATUS];
        sqlite3_bind_int64(s, 1, id);
        sqlite3_bind_int64(s, 2, device_id);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            *status = sqlite3_column_int(s, 0);
            r = -EALREADY;
        } else {
            r = rc == SQLITE_DONE ? -ENOENT : fail_rc(ds, rc, "status");
        }
        sqlite3_reset(s);
        if (r != -EALREADY && r != -ENOENT) goto fail;
    }
    int cr = op_commit(ds, &d);
    if (cr < 0) r = cr;
    goto out;
fail:
    op_rollback(ds);
out:
    pthread_mutex_unlock(&ds->mu);
    return r;
}

/* Expires the device's overdue commands in an operation of their own, so that reads
 * show the status a poll would act on. Called with the lock held. */
static int expire_alone(sq_t *ds, int64_t device_id, int64_t now)
{
    delta_t d = {0};
    int r = op_begin(ds);
    if (r < 0) return r;
    if ((r = expire_device(ds, device_id, now, &d)) < 0) {
        op_rollback(ds);
        return r;
    }
    return op_commit(ds, &d);
}

static int sq_get(devices_t *base, int64_t device_id, int64_t id, int64_t now, devices_cmd_t *out)
{
    sq_t *ds = (sq_t *)base;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&ds->mu);
    int r = expire_alone(ds, device_id, now);
    if (r == 0) {
        sqlite3_stmt *g = ds->st[S_GET];
        sqlite3_bind_int64(g, 1, id);
        sqlite3_bind_int64(g, 2, device_id);
        int rc = sqlite3_step(g);
        if (rc == SQLITE_ROW)
            r = read_cmd(g, out);
        else
            r = rc == SQLITE_DONE ? -ENOENT : fail_rc(ds, rc, "get");
        sqlite3_reset(g);
    }
    pthread_mutex_unlock(&ds->mu);
    return r;
}

static int sq_list(devices_t *base, int64_t device_id, unsigned status_mask, int64_t after,
                   unsigned limit, int64_t now, devices_cmd_cb cb, void *arg)
{
    sq_t *ds = (sq_t *)base;
    pthread_mutex_lock(&ds->mu);
    int r = expire_alone(ds, device_id, now);
    if (r < 0) goto out;
    sqlite3_stmt *l = ds->st[S_LIST];
    sqlite3_bind_int64(l, 1, device_id);
    sqlite3_bind_int64(l, 2, after);
    sqlite3_bind_int64(l, 3, status_mask);
    sqlite3_bind_int64(l, 4, limit);
    int rc, n = 0;
    while ((rc = sqlite3_step(l)) == SQLITE_ROW) {
        devices_cmd_t c;
        if ((r = read_cmd(l, &c)) < 0) break;
        n++;
        int stop = cb(&c, arg);
        devices_cmd_clear(&c);
        if (stop) break;
    }
    if (r == 0) r = rc == SQLITE_ROW || rc == SQLITE_DONE ? n : fail_rc(ds, rc, "list");
    sqlite3_reset(l);
out:
    pthread_mutex_unlock(&ds->mu);
    return r;
}

static int sq_orphans(devices_t *base, int64_t device_id, int64_t after, unsigned limit,
                      devices_orphan_cb cb, void *arg)
{
    sq_t *ds = (sq_t *)base;
    pthread_mutex_lock(&ds->mu);
    read_epoch(ds);
    sqlite3_stmt *s = ds->st[S_ORPHANS];
    sqlite3_bind_int64(s, 1, device_id);
    sqlite3_bind_int64(s, 2, after);
    sqlite3_bind_int64(s, 3, limit);
    int rc, n = 0, r = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        devices_orphan_t o = {
            .id = sqlite3_column_int64(s, 0),
            .device_id = sqlite3_column_int64(s, 1),
            .received_at = sqlite3_column_int64(s, 2),
            .response = col_text(s, 3),
            .error = col_text(s, 4),
        };
        if ((sqlite3_column_type(s, 3) != SQLITE_NULL && !o.response) ||
            (sqlite3_column_type(s, 4) != SQLITE_NULL && !o.error)) {
            devices_orphan_clear(&o);
            r = -ENOMEM;
            break;
        }
        n++;
        int stop = cb(&o, arg);
        devices_orphan_clear(&o);
        if (stop) break;
    }
    if (r == 0) r = rc == SQLITE_ROW || rc == SQLITE_DONE ? n : fail_rc(ds, rc, "orphans");
    sqlite3_reset(s);
    pthread_mutex_unlock(&ds->mu);
    return r;
}

static int sq_depths(devices_t *base, int64_t after, unsigned limit, devices_depth_cb cb, void *arg)
{
    sq_t *ds = (sq_t *)base;
    pthread_mutex_lock(&ds->mu);
    read_epoch(ds);
    sqlite3_stmt *s = ds->st[S_DEPTHS];
    sqlite3_bind_int64(s, 1, after);
    sqlite3_bind_int64(s, 2, limit);
    int rc, n = 0, r = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        devices_depth_t d = {sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1),
                             sqlite3_column_int64(s, 2)};
        n++;
        if (cb(&d, arg)) break;
    }
    r = rc == SQLITE_ROW || rc == SQLITE_DONE ? n : fail_rc(ds, rc, "depths");
    sqlite3_reset(s);
    pthread_mutex_unlock(&ds->mu);
    return r;
}

static int sq_depth(devices_t *base, int64_t device_id, devices_depth_t *d)
{
    sq_t *ds = (sq_t *)base;
    pthread_mutex_lock(&ds->mu);
    read_epoch(ds);
    sqlite3_stmt *s = ds->st[S_DEPTH];
    sqlite3_bind_int64(s, 1, device_id);
    int rc = sqlite3_step(s), r = 0;
    if (rc == SQLITE_ROW)
        *d = (devices_depth_t){device_id, sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1)};
    else
        r = fail_rc(ds, rc, "depth");
    sqlite3_reset(s);
    pthread_mutex_unlock(&ds->mu);
    return r;
}

static int sq_sweep(devices_t *base, int64_t now)
{
    sq_t *ds = (sq_t *)base;
    delta_t d = {0};
    pthread_mutex_lock(&ds->mu);
    int r = op_begin(ds);
    if (r < 0) goto out;
    sqlite3_stmt *q = ds->st[S_EXPIRE_ALL_QUEUED];
    sqlite3_bind_int64(q, 1, now);
    sqlite3_bind_int(q, 2, SWEEP_BATCH);
    if ((r = run(ds, S_EXPIRE_ALL_QUEUED)) < 0) goto fail;
    int nq = sqlite3_changes(ds->db);
    sqlite3_stmt *s = ds->st[S_EXPIRE_ALL_SENT];
    sqlite3_bind_int64(s, 1, now);
    sqlite3_bind_int(s, 2, SWEEP_BATCH);
    sqlite3_bind_int64(s, 3, ds->opts.redelivery_ms);
    if ((r = run(ds, S_EXPIRE_ALL_SENT)) < 0) goto fail;
    int ns = sqlite3_changes(ds->db);
    d.queued -= nq;
    d.sent -= ns;
    d.entered[DEVICES_EXPIRED] += (uint64_t)(nq + ns);
    if (ds->opts.retention_ms > 0) {
        enum stmt_id prune[2] = {S_PRUNE_COMMANDS, S_PRUNE_ORPHANS};
        for (int i = 0; i < 2; i++) {
            sqlite3_stmt *p = ds->st[prune[i]];
            sqlite3_bind_int64(p, 1, now - ds->opts.retention_ms);
            sqlite3_bind_int(p, 2, SWEEP_BATCH);
            if ((r = run(ds, prune[i])) < 0) goto fail;
        }
    }
    sqlite3_stmt *ip = ds->st[S_IDEM_PRUNE];
    sqlite3_bind_int64(ip, 1, now - idem_ttl(ds));
    sqlite3_bind_int(ip, 2, SWEEP_BATCH);
    if ((r = run(ds, S_IDEM_PRUNE)) < 0) goto fail;
    if ((r = op_commit(ds, &d)) < 0 || (r = commit_open(ds)) < 0) goto out;
    tl_epoch = 0;
    r = nq + ns;
    /* Copy the WAL back into the database here, about once a second, rather than
     * every 1000 pages in whichever request commits then: one fsync pair a second,
     * and pages written many times in between are copied once. PASSIVE: never waits
     * for readers; what it cannot copy now it copies next time. */
    int rc = sqlite3_wal_checkpoint_v2(ds->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY)
        log_warn("device queue checkpoint failed", "error=\"%s\"", sqlite3_errmsg(ds->db));
    goto out;
fail:
    op_rollback(ds);
out:
    pthread_mutex_unlock(&ds->mu);
    return r;
}

static const devices_ops_t sq_ops = {
    .enqueue = sq_enqueue,
    .next = sq_next,
    .result = sq_result,
    .cancel = sq_cancel,
    .get = sq_get,
    .list = sq_list,
    .orphans = sq_orphans,
    .depths = sq_depths,
    .depth = sq_depth,
    .sweep = sq_sweep,
    .sync = sq_sync,
    .close = sq_close,
};

/* ---- the interface: whichever implementation ds is ---- */

int devices_sync(devices_t *ds, uint64_t epoch)
{
    return ds->ops->sync ? ds->ops->sync(ds, epoch) : 0;
}

void devices_close(devices_t *ds)
{
    if (ds) ds->ops->close(ds);
}

/* Each call starts with nothing to wait for: the SQLite queue sets the thread's epoch
 * when its call joins an open transaction; the others are durable when they return. */
int devices_enqueue(devices_t *ds, int64_t device_id, const device_cmd_t *cmd, int64_t expires_at,
                    int64_t now, int64_t *id)
{
    tl_epoch = 0;
    return ds->ops->enqueue(ds, device_id, cmd, expires_at, now, NULL, id);
}

int devices_enqueue_idem(devices_t *ds, int64_t device_id, const device_cmd_t *cmd,
                         int64_t expires_at, int64_t now, const devices_idem_t *idem, int64_t *id)
{
    tl_epoch = 0;
    return ds->ops->enqueue(ds, device_id, cmd, expires_at, now, idem, id);
}

int devices_next(devices_t *ds, int64_t device_id, int64_t now, devices_cmd_t *out)
{
    tl_epoch = 0;
    return ds->ops->next(ds, device_id, now, out);
}

int devices_result(devices_t *ds, int64_t device_id, const device_result_t *res, int64_t now,
                   int64_t *id)
{
    tl_epoch = 0;
    return ds->ops->result(ds, device_id, res, now, id);
}

int devices_cancel(devices_t *ds, int64_t device_id, int64_t id, int64_t now, int *status)
{
    tl_epoch = 0;
    return ds->ops->cancel(ds, device_id, id, now, status);
}

int devices_get(devices_t *ds, int64_t device_id, int64_t id, int64_t now, devices_cmd_t *out)
{
    tl_epoch = 0;
    return ds->ops->get(ds, device_id, id, now, out);
}

int devices_list(devices_t *ds, int64_t device_id, unsigned status_mask, int64_t after,
                 unsigned limit, int64_t now, devices_cmd_cb cb, void *arg)
{
    tl_epoch = 0;
    return ds->ops->list(ds, device_id, status_mask, after, limit, now, cb, arg);
}

int devices_orphans(devices_t *ds, int64_t device_id, int64_t after, unsigned limit,
                    devices_orphan_cb cb, void *arg)
{
    tl_epoch = 0;
    return ds->ops->orphans(ds, device_id, after, limit, cb, arg);
}

int devices_depths(devices_t *ds, int64_t after, unsigned limit, devices_depth_cb cb, void *arg)
{
    tl_epoch = 0;
    return ds->ops->depths(ds, after, limit, cb, arg);
}

int devices_depth(devices_t *ds, int64_t device_id, devices_depth_t *d)
{
    tl_epoch = 0;
    return ds->ops->depth(ds, device_id, d);
}

int devices_sweep(devices_t *ds, int64_t now)
{
    tl_epoch = 0;
    return ds->ops->sweep(ds, now);
}
