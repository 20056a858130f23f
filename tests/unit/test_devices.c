/* store/devices: the device command queue's semantics against a temporary SQLite
 * database, with the clock driven by the test: order, one in flight, redelivery,
 * results and orphans, TTL expiry, cancel, the queue bound, durability across a
 * reopen, listing, sweeping, and the metrics that follow each commit.
 *
 * test_devices_redis.c includes this file with DEVICES_TEST_REDIS defined: the same
 * tests (but the group commit ones) then run against the queue in Redis, on a
 * redis-server of their own. */
#include <criterion/criterion.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/metrics.h"
#include "store/devices.h"

#ifndef DEVICES_TEST_REDIS
static char dir[64];
static char path[128];
#endif
static devices_t *ds;

static const devices_opts_t opts = {.redelivery_ms = 1000, .max_queue = 3, .retention_ms = 60000};

#ifdef DEVICES_TEST_REDIS
static void open_store(void)
{
    char err[256] = "";
    int r = devices_redis_open(&ds, &redis_cfg, &opts, err, sizeof(err));
    cr_assert_eq(r, 0, "devices_redis_open: %d %s", r, err);
}

static void setup(void)
{
    redis_start();
    memset(&metrics, 0, sizeof(metrics));
    open_store();
}

static void teardown(void)
{
    devices_close(ds);
    ds = NULL;
    redis_stop();
}
#else
static void open_store(void)
{
    char err[256] = "";
    int r = devices_open(&ds, path, &opts, err, sizeof(err));
    cr_assert_eq(r, 0, "devices_open: %d %s", r, err);
}

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/pg-devices-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/pushgate.db", dir);
    memset(&metrics, 0, sizeof(metrics));
    open_store();
}

static void teardown(void)
{
    devices_close(ds);
    ds = NULL;
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}
#endif

TestSuite(devices, .init = setup, .fini = teardown);

static device_cmd_t mk(const char *endpoint)
{
    return (device_cmd_t){
        .verb = "POST", .endpoint = (char *)endpoint, .content_type = "application/json"};
}

static int64_t enq(int64_t dev, const char *endpoint, int64_t expires, int64_t now)
{
    device_cmd_t c = mk(endpoint);
    int64_t id = 0;
    int r = devices_enqueue(ds, dev, &c, expires, now, &id);
    cr_assert_eq(r, 0, "enqueue %s: %d", endpoint, r);
    cr_assert_gt(id, 0);
    return id;
}

/* Polls and expects the command with that endpoint (NULL: nothing). Returns its id. */
static int64_t poll_expect(int64_t dev, int64_t now, const char *endpoint)
{
    devices_cmd_t c;
    int r = devices_next(ds, dev, now, &c);
    cr_assert_geq(r, 0, "next: %d", r);
    if (!endpoint) {
        cr_assert_eq(r, 0, "expected nothing, got %s", r ? c.cmd.endpoint : "");
        return 0;
    }
    cr_assert_eq(r, 1, "expected %s, got nothing", endpoint);
    cr_assert_str_eq(c.cmd.endpoint, endpoint);
    cr_assert_eq(c.status, DEVICES_SENT);
    int64_t id = c.id;
    devices_cmd_clear(&c);
    return id;
}

static int result(int64_t dev, int64_t now, const char *response, const char *error, int64_t *id)
{
    device_result_t res = {
        .failed = error != NULL, .response = (char *)response, .error = (char *)error};
    return devices_result(ds, dev, &res, now, id);
}

static devices_cmd_t get(int64_t dev, int64_t id, int64_t now)
{
    devices_cmd_t c;
    int r = devices_get(ds, dev, id, now, &c);
    cr_assert_eq(r, 0, "get %lld: %d", (long long)id, r);
    return c;
}

Test(devices, empty_queue_polls_nothing)
{
    poll_expect(1, 1000, NULL);
    cr_assert_eq(metrics.device_queued, 0);
}

Test(devices, poll_command_result_poll_empty)
{
    int64_t id = enq(7, "load_objects", 0, 1000);
    cr_assert_eq(metrics.device_queued, 1);
    cr_assert_eq(poll_expect(7, 1001, "load_objects"), id);
    cr_assert_eq(metrics.device_queued, 0);
    cr_assert_eq(metrics.device_in_flight, 1);
    int64_t got = 0;
    cr_assert_eq(result(7, 1002, "{\"users\":[]}", NULL, &got), 1);
    cr_assert_eq(got, id);
    poll_expect(7, 1003, NULL);
    devices_cmd_t c = get(7, id, 1004);
    cr_assert_eq(c.status, DEVICES_DONE);
    cr_assert_str_eq(c.response, "{\"users\":[]}");
    cr_assert_null(c.error);
    cr_assert_eq(c.attempts, 1);
    cr_assert_eq(c.created_at, 1000);
    cr_assert_eq(c.sent_at, 1001);
    cr_assert_eq(c.completed_at, 1002);
    devices_cmd_clear(&c);
    cr_assert_eq(metrics.device_in_flight, 0);
    cr_assert_eq(metrics.device_commands[DEVICES_QUEUED], 1);
    cr_assert_eq(metrics.device_commands[DEVICES_SENT], 1);
    cr_assert_eq(metrics.device_commands[DEVICES_DONE], 1);
}

Test(devices, commands_go_out_in_order_one_at_a_time)
{
    enq(1, "a", 0, 10);
    enq(1, "b", 0, 11);
    enq(1, "c", 0, 12);
    poll_expect(1, 20, "a");
    /* a is in flight: nothing else until its result (or its redelivery time) */
    poll_expect(1, 21, NULL);
    int64_t id;
    cr_assert_eq(result(1, 22, "1", NULL, &id), 1);
    poll_expect(1, 23, "b");
    cr_assert_eq(result(1, 24, "2", NULL, &id), 1);
    poll_expect(1, 25, "c");
    cr_assert_eq(result(1, 26, NULL, "disk full", &id), 1);
    poll_expect(1, 27, NULL);
    devices_cmd_t c = get(1, id, 28);
    cr_assert_eq(c.status, DEVICES_FAILED);
    cr_assert_str_eq(c.error, "disk full");
    devices_cmd_clear(&c);
}

Test(devices, devices_are_independent)
{
    enq(1, "one", 0, 10);
    enq(2, "two", 0, 10);
    poll_expect(2, 11, "two");
    poll_expect(1, 11, "one");
    poll_expect(3, 11, NULL);
}

Test(devices, redelivery_after_the_timeout_counts_attempts)
{
    int64_t id = enq(1, "a", 0, 0);
    enq(1, "b", 0, 0);
    poll_expect(1, 100, "a");
    poll_expect(1, 1099, NULL); /* 999 ms later: still in flight */
    cr_assert_eq(poll_expect(1, 1100, "a"), id);
    cr_assert_eq(metrics.device_redeliveries, 1);
    poll_expect(1, 1200, NULL);
    cr_assert_eq(poll_expect(1, 2100, "a"), id);
    devices_cmd_t c = get(1, id, 2101);
    cr_assert_eq(c.attempts, 3);
    cr_assert_eq(c.sent_at, 2100);
    cr_assert_eq(c.status, DEVICES_SENT);
    devices_cmd_clear(&c);
    cr_assert_eq(metrics.device_commands[DEVICES_SENT], 1, "a redelivery is not a new send");
    int64_t got;
    cr_assert_eq(result(1, 2200, "\"ok\"", NULL, &got), 1);
    cr_assert_eq(got, id);
    poll_expect(1, 2201, "b");
}

Test(devices, result_with_nothing_in_flight_is_an_orphan)
{
    int64_t id = 0;
    cr_assert_eq(result(9, 50, "{\"x\":1}", NULL, &id), 0);
    cr_assert_gt(id, 0);
    /* a queued (never sent) command is not closed by a stray result */
    int64_t cid = enq(9, "a", 0, 60);
    cr_assert_eq(result(9, 70, NULL, "late", &id), 0);
    devices_cmd_t c = get(9, cid, 71);
    cr_assert_eq(c.status, DEVICES_QUEUED);
    devices_cmd_clear(&c);
    cr_assert_eq(metrics.device_orphans, 2);
}

static int count_orphan(const devices_orphan_t *o, void *arg)
{
    int *n = arg;
    if (o->device_id == 4) {
        (*n)++;
        return 0;
    }
    cr_assert_eq(o->device_id, 9);
    if (*n == 0) {
        cr_assert_str_eq(o->response, "{\"x\":1}");
        cr_assert_null(o->error);
        cr_assert_eq(o->received_at, 50);
    } else {
        cr_assert_null(o->response);
        cr_assert_str_eq(o->error, "late");
    }
    (*n)++;
    return 0;
}

Test(devices, orphans_are_listed)
{
    int64_t id;
    result(9, 50, "{\"x\":1}", NULL, &id);
    result(9, 51, NULL, "late", &id);
    result(8, 52, "1", NULL, &id);
    int n = 0;
    cr_assert_eq(devices_orphans(ds, 9, 0, 100, count_orphan, &n), 2);
    cr_assert_eq(n, 2);
}

Test(devices, a_second_result_for_the_same_command_is_an_orphan)
{
    int64_t cid = enq(1, "a", 0, 0);
    poll_expect(1, 1, "a");
    int64_t id;
    cr_assert_eq(result(1, 2, "1", NULL, &id), 1);
    cr_assert_eq(id, cid);
    cr_assert_eq(result(1, 3, "1", NULL, &id), 0);
}

Test(devices, queued_commands_expire_at_their_ttl)
{
    int64_t a = enq(1, "a", 5000, 0);
    int64_t b = enq(1, "b", 0, 0);
    devices_cmd_t c = get(1, a, 4999);
    cr_assert_eq(c.status, DEVICES_QUEUED);
    cr_assert_eq(c.expires_at, 5000);
    devices_cmd_clear(&c);
    poll_expect(1, 5000, "b"); /* a expired: b is next */
    c = get(1, a, 5001);
    cr_assert_eq(c.status, DEVICES_EXPIRED);
    cr_assert_eq(c.completed_at, 5000);
    cr_assert_eq(c.attempts, 0);
    devices_cmd_clear(&c);
    cr_assert_eq(metrics.device_commands[DEVICES_EXPIRED], 1);
    cr_assert_eq(metrics.device_queued, 0);
    (void)b;
}

Test(devices, a_sent_command_expires_only_once_due_for_redelivery)
{
    int64_t a = enq(1, "a", 1500, 0);
    poll_expect(1, 1000, "a");
    /* past its TTL but its result may still come: still sent, and a result closes it */
    devices_cmd_t c = get(1, a, 1600);
    cr_assert_eq(c.status, DEVICES_SENT);
    devices_cmd_clear(&c);
    /* due for redelivery and past its TTL: expired, not sent again */
    poll_expect(1, 2000, NULL);
    c = get(1, a, 2001);
    cr_assert_eq(c.status, DEVICES_EXPIRED);
    cr_assert_eq(c.completed_at, 2000);
    devices_cmd_clear(&c);
    cr_assert_eq(metrics.device_in_flight, 0);
    int64_t id;
    cr_assert_eq(result(1, 2100, "1", NULL, &id), 0, "a result after expiry is an orphan");
}

Test(devices, result_after_ttl_but_before_redelivery_closes_it)
{
    int64_t a = enq(1, "a", 1500, 0);
    poll_expect(1, 1000, "a");
    int64_t id;
    cr_assert_eq(result(1, 1700, "1", NULL, &id), 1);
    cr_assert_eq(id, a);
}

Test(devices, cancel_a_queued_command)
{
    int64_t a = enq(1, "a", 0, 0);
    int64_t b = enq(1, "b", 0, 0);
    int64_t c3 = enq(1, "c", 0, 0);
    int st = -1;
    cr_assert_eq(devices_cancel(ds, 1, b, 10, &st), 0);
    cr_assert_eq(st, DEVICES_CANCELLED);
    cr_assert_eq(metrics.device_queued, 2);
    poll_expect(1, 11, "a");
    /* in flight: not cancellable */
    cr_assert_eq(devices_cancel(ds, 1, a, 12, &st), -EALREADY);
    cr_assert_eq(st, DEVICES_SENT);
    cr_assert_eq(devices_cancel(ds, 1, b, 12, &st), -EALREADY);
    cr_assert_eq(st, DEVICES_CANCELLED);
    /* unknown, or another device's */
    cr_assert_eq(devices_cancel(ds, 1, 999, 12, &st), -ENOENT);
    cr_assert_eq(devices_cancel(ds, 2, c3, 12, &st), -ENOENT);
    int64_t id;
    result(1, 13, "1", NULL, &id);
    poll_expect(1, 14, "c");
    devices_cmd_t c = get(1, b, 15);
    cr_assert_eq(c.status, DEVICES_CANCELLED);
    cr_assert_eq(c.completed_at, 10);
    devices_cmd_clear(&c);
}

Test(devices, the_queue_is_bounded_per_device)
{
    enq(1, "a", 0, 0);
    enq(1, "b", 0, 0);
    enq(1, "c", 0, 0);
    device_cmd_t c = mk("d");
    int64_t id = 0;
    cr_assert_eq(devices_enqueue(ds, 1, &c, 0, 0, &id), -ENOSPC);
    cr_assert_eq(id, 0);
    /* another device is not affected */
    enq(2, "x", 0, 0);
    /* a command in flight still counts; a finished one does not */
    poll_expect(1, 1, "a");
    cr_assert_eq(devices_enqueue(ds, 1, &c, 0, 1, &id), -ENOSPC);
    result(1, 2, "1", NULL, &id);
    enq(1, "d", 0, 3);
    cr_assert_eq(metrics.device_queued, 4);
}

Test(devices, an_idempotency_key_names_one_command)
{
    device_cmd_t c = mk("a");
    devices_idem_t k = {.scope = "devices:abc:k1", .fp = "fp1"};
    int64_t id = 0, again = 0;
    cr_assert_eq(devices_enqueue_idem(ds, 1, &c, 0, 10, &k, &id), 0);
    cr_assert_gt(id, 0);
    cr_assert_eq(devices_enqueue_idem(ds, 1, &c, 0, 11, &k, &again), 1);
    cr_assert_eq(again, id);
    cr_assert_eq(metrics.device_queued, 1, "the repeat enqueued nothing");
    /* the key with another request's fingerprint: refused, nothing enqueued */
    devices_idem_t other = {.scope = "devices:abc:k1", .fp = "fp2"};
    cr_assert_eq(devices_enqueue_idem(ds, 1, &c, 0, 12, &other, &again), -EEXIST);
    /* another scope is another key */
    devices_idem_t k2 = {.scope = "devices:def:k1", .fp = "fp1"};
    cr_assert_eq(devices_enqueue_idem(ds, 1, &c, 0, 13, &k2, &again), 0);
    cr_assert_neq(again, id);
    /* the key outlives the command's completion, and a reopen */
    poll_expect(1, 20, "a");
    int64_t rid;
    result(1, 21, "1", NULL, &rid);
    cr_assert_eq(rid, id);
    devices_close(ds);
    open_store();
    cr_assert_eq(devices_enqueue_idem(ds, 1, &c, 0, 30, &k, &again), 1);
    cr_assert_eq(again, id);
    /* a full queue keeps no key: the retry acts */
    devices_idem_t k3 = {.scope = "devices:abc:k3", .fp = "fp3"};
    enq(1, "x", 0, 31);
    enq(1, "y", 0, 31);
    cr_assert_eq(devices_enqueue_idem(ds, 1, &c, 0, 32, &k3, &again), -ENOSPC);
    poll_expect(1, 33, "a");
    result(1, 34, "1", NULL, &rid);
    cr_assert_eq(devices_enqueue_idem(ds, 1, &c, 0, 35, &k3, &again), 0);
}

#ifndef DEVICES_TEST_REDIS
Test(devices, idempotency_keys_expire_and_are_swept)
{
    devices_close(ds);
    devices_opts_t o = opts;
    o.idem_ttl_ms = 100;
    char err[256];
    cr_assert_eq(devices_open(&ds, path, &o, err, sizeof(err)), 0, "%s", err);
    device_cmd_t c = mk("a");
    devices_idem_t k = {.scope = "devices:abc:k1", .fp = "fp1"};
    int64_t id = 0, again = 0;
    cr_assert_eq(devices_enqueue_idem(ds, 1, &c, 0, 1000, &k, &id), 0);
    cr_assert_eq(devices_enqueue_idem(ds, 1, &c, 0, 1100, &k, &again), 1);
    /* past the TTL the key names nothing: the same request acts again */
    cr_assert_eq(devices_enqueue_idem(ds, 1, &c, 0, 1101, &k, &again), 0);
    cr_assert_neq(again, id);
    cr_assert_geq(devices_sweep(ds, 5000), 0);
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT count(*) FROM device_idem", -1, &st, NULL),
                 SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_eq(sqlite3_column_int(st, 0), 0, "the sweep prunes expired keys");
    sqlite3_finalize(st);
    sqlite3_close(db);
}
#endif

Test(devices, expired_commands_free_room_in_the_queue)
{
    enq(1, "a", 100, 0);
    enq(1, "b", 100, 0);
    enq(1, "c", 100, 0);
    enq(1, "d", 0, 100);
}

Test(devices, unknown_command_or_wrong_device)
{
    devices_cmd_t c;
    cr_assert_eq(devices_get(ds, 1, 42, 0, &c), -ENOENT);
    int64_t a = enq(1, "a", 0, 0);
    cr_assert_eq(devices_get(ds, 2, a, 0, &c), -ENOENT);
}

Test(devices, every_field_round_trips)
{
    device_cmd_t in = {.verb = "GET",
                       .endpoint = "user_list",
                       .body = "{\"a\":[1,2]}",
                       .body_json = 1,
                       .content_type = "application/json",
                       .query_string = "session=abc&x=1"};
    int64_t id;
    cr_assert_eq(devices_enqueue(ds, -5, &in, 0, 1, &id), 0);
    device_cmd_t oct = {.verb = "POST",
                        .endpoint = "upload",
                        .body = "AAEC",
                        .content_type = "application/octet-stream"};
    int64_t id2;
    cr_assert_eq(devices_enqueue(ds, -5, &oct, 0, 2, &id2), 0);
    devices_cmd_t c;
    cr_assert_eq(devices_next(ds, -5, 3, &c), 1);
    cr_assert_eq(c.id, id);
    cr_assert_eq(c.device_id, -5);
    cr_assert_str_eq(c.cmd.verb, "GET");
    cr_assert_str_eq(c.cmd.endpoint, "user_list");
    cr_assert_str_eq(c.cmd.body, "{\"a\":[1,2]}");
    cr_assert_eq(c.cmd.body_json, 1);
    cr_assert_str_eq(c.cmd.content_type, "application/json");
    cr_assert_str_eq(c.cmd.query_string, "session=abc&x=1");
    cr_assert_eq(c.expires_at, 0);
    devices_cmd_clear(&c);
    int64_t r;
    result(-5, 4, "null", NULL, &r);
    cr_assert_eq(devices_next(ds, -5, 5, &c), 1);
    cr_assert_str_eq(c.cmd.body, "AAEC");
    cr_assert_eq(c.cmd.body_json, 0);
    cr_assert_null(c.cmd.query_string);
    cr_assert_str_eq(c.cmd.content_type, "application/octet-stream");
    devices_cmd_clear(&c);
}

Test(devices, everything_survives_a_reopen)
{
    int64_t a = enq(1, "a", 0, 0);
    int64_t b = enq(1, "b", 0, 0);
    poll_expect(1, 10, "a");
    devices_close(ds);
    memset(&metrics, 0, sizeof(metrics));
    open_store();
    /* the gauges come back from what is stored */
    cr_assert_eq(metrics.device_queued, 1);
    cr_assert_eq(metrics.device_in_flight, 1);
    /* a is still in flight: redelivered once due */
    poll_expect(1, 500, NULL);
    cr_assert_eq(poll_expect(1, 1010, "a"), a);
    int64_t id;
    cr_assert_eq(result(1, 1011, "1", NULL, &id), 1);
    cr_assert_eq(poll_expect(1, 1012, "b"), b);
}

typedef struct seen_s {
    int64_t ids[16];
    int n;
} seen_t;

static int collect(const devices_cmd_t *c, void *arg)
{
    seen_t *s = arg;
    s->ids[s->n++] = c->id;
    return 0;
}

Test(devices, list_filters_by_status_and_pages)
{
    int64_t a = enq(1, "a", 0, 0);
    int64_t b = enq(1, "b", 0, 0);
    int64_t c3 = enq(1, "c", 0, 0);
    enq(2, "other", 0, 0);
    poll_expect(1, 1, "a");
    int st;
    devices_cancel(ds, 1, c3, 2, &st);
    seen_t s = {0};
    cr_assert_eq(devices_list(ds, 1, 0, 0, 100, 3, collect, &s), 3);
    cr_assert_eq(s.ids[0], a);
    cr_assert_eq(s.ids[1], b);
    cr_assert_eq(s.ids[2], c3);
    s.n = 0;
    cr_assert_eq(devices_list(ds, 1, 1u << DEVICES_QUEUED, 0, 100, 3, collect, &s), 1);
    cr_assert_eq(s.ids[0], b);
    s.n = 0;
    unsigned mask = (1u << DEVICES_SENT) | (1u << DEVICES_CANCELLED);
    cr_assert_eq(devices_list(ds, 1, mask, 0, 100, 3, collect, &s), 2);
    cr_assert_eq(s.ids[0], a);
    cr_assert_eq(s.ids[1], c3);
    s.n = 0;
    cr_assert_eq(devices_list(ds, 1, 0, a, 1, 3, collect, &s), 1);
    cr_assert_eq(s.ids[0], b);
}

typedef struct depths_s {
    devices_depth_t d[8];
    int n;
} depths_t;

static int collect_depth(const devices_depth_t *d, void *arg)
{
    depths_t *s = arg;
    s->d[s->n++] = *d;
    return 0;
}

Test(devices, depths_per_device)
{
    enq(5, "a", 0, 0);
    enq(5, "b", 0, 0);
    enq(3, "c", 0, 0);
    poll_expect(5, 1, "a");
    depths_t s = {0};
    cr_assert_eq(devices_depths(ds, INT64_MIN, 100, collect_depth, &s), 2);
    cr_assert_eq(s.d[0].device_id, 3);
    cr_assert_eq(s.d[0].queued, 1);
    cr_assert_eq(s.d[0].sent, 0);
    cr_assert_eq(s.d[1].device_id, 5);
    cr_assert_eq(s.d[1].queued, 1);
    cr_assert_eq(s.d[1].sent, 1);
    devices_depth_t d;
    cr_assert_eq(devices_depth(ds, 5, &d), 0);
    cr_assert_eq(d.queued, 1);
    cr_assert_eq(d.sent, 1);
    cr_assert_eq(devices_depth(ds, 77, &d), 0);
    cr_assert_eq(d.queued + d.sent, 0);
}

Test(devices, sweep_expires_and_prunes)
{
    int64_t a = enq(1, "a", 100, 0);
    int64_t b = enq(2, "b", 100, 0);
    poll_expect(2, 50, "b");
    enq(3, "c", 0, 0);
    cr_assert_eq(devices_sweep(ds, 200), 1, "b is in flight and not yet due");
    cr_assert_eq(devices_sweep(ds, 1050), 1, "b: due for redelivery, past its TTL");
    cr_assert_eq(metrics.device_queued, 1);
    cr_assert_eq(metrics.device_in_flight, 0);
    cr_assert_eq(metrics.device_commands[DEVICES_EXPIRED], 2);
    int64_t id;
    result(4, 1100, "1", NULL, &id);
    /* retention 60 s: a (completed at 100) and b (1050) go, c stays */
    devices_cmd_t c;
    cr_assert_eq(devices_sweep(ds, 60101), 0);
    cr_assert_eq(devices_get(ds, 1, a, 60101, &c), -ENOENT);
    cr_assert_eq(devices_get(ds, 2, b, 60101, &c), 0);
    devices_cmd_clear(&c);
    cr_assert_eq(devices_sweep(ds, 61200), 0);
    cr_assert_eq(devices_get(ds, 2, b, 61200, &c), -ENOENT);
    int n = 0;
#ifdef DEVICES_TEST_REDIS
    /* the orphan is past its retention too (ids come from a counter: none is kept) */
    cr_assert_eq(devices_orphans(ds, 4, 0, 10, count_orphan, &n), 0);
#else
    /* the orphan is past its retention too, but the newest row of its table stays */
    cr_assert_eq(devices_orphans(ds, 4, 0, 10, count_orphan, &n), 1);
#endif
    poll_expect(3, 61201, "c");
}

Test(devices, ids_are_never_reused_after_pruning)
{
    int64_t a = enq(1, "a", 0, 0);
    int64_t b = enq(1, "b", 0, 0);
    int st;
    devices_cancel(ds, 1, a, 0, &st);
    devices_cancel(ds, 1, b, 0, &st);
    devices_sweep(ds, 100000);
    devices_cmd_t c;
    cr_assert_eq(devices_get(ds, 1, a, 100000, &c), -ENOENT, "pruned");
#ifdef DEVICES_TEST_REDIS
    cr_assert_eq(devices_get(ds, 1, b, 100000, &c), -ENOENT, "pruned: ids come from a counter");
#else
    cr_assert_eq(devices_get(ds, 1, b, 100000, &c), 0, "the newest row stays");
    devices_cmd_clear(&c);
#endif
    int64_t d = enq(1, "d", 0, 100001);
    cr_assert_gt(d, b);
}

Test(devices, status_names)
{
    cr_assert_str_eq(devices_status_name(DEVICES_QUEUED), "queued");
    cr_assert_str_eq(devices_status_name(DEVICES_CANCELLED), "cancelled");
    cr_assert_str_eq(devices_status_name(99), "?");
    cr_assert_eq(devices_status_parse("expired", 7), DEVICES_EXPIRED);
    cr_assert_eq(devices_status_parse("sent,done", 4), DEVICES_SENT);
    cr_assert_eq(devices_status_parse("sen", 3), -EINVAL);
    cr_assert_eq(devices_status_parse("", 0), -EINVAL);
}

#ifndef DEVICES_TEST_REDIS
/* ---- group commit ---- */

static const devices_opts_t gopts = {
    .redelivery_ms = 1000, .max_queue = 3, .retention_ms = 60000, .group_commit = 1};

static void setup_group(void)
{
    snprintf(dir, sizeof(dir), "/tmp/pg-devices-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/pushgate.db", dir);
    memset(&metrics, 0, sizeof(metrics));
    char err[256] = "";
    cr_assert_eq(devices_open(&ds, path, &gopts, err, sizeof(err)), 0, "%s", err);
}

/* Rows of device_commands as another connection (another process) sees them. */
static int committed_rows(void)
{
    sqlite3 *db;
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *s;
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT count(*) FROM device_commands", -1, &s, NULL),
                 SQLITE_OK);
    cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
    int n = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
}

TestSuite(devices_group, .init = setup_group, .fini = teardown);

Test(devices_group, nothing_is_durable_before_sync)
{
    int64_t a = enq(1, "a", 0, 0);
    uint64_t e1 = devices_last_epoch();
    cr_assert_gt(e1, 0);
    int64_t b = enq(1, "b", 0, 0);
    cr_assert_eq(devices_last_epoch(), e1, "one open transaction for both");
    /* the calls see each other; another connection sees nothing yet; no metrics yet */
    cr_assert_eq(poll_expect(1, 1, "a"), a);
    cr_assert_eq(committed_rows(), 0);
    cr_assert_eq(metrics.device_queued, 0);
    cr_assert_eq(devices_sync(ds, e1), 0);
    cr_assert_eq(committed_rows(), 2);
    cr_assert_eq(metrics.device_queued, 1);
    cr_assert_eq(metrics.device_in_flight, 1);
    /* the next call opens the next epoch */
    int64_t id;
    cr_assert_eq(result(1, 2, "1", NULL, &id), 1);
    uint64_t e2 = devices_last_epoch();
    cr_assert_gt(e2, e1);
    cr_assert_eq(devices_sync(ds, e1), 0, "an older epoch is already committed");
    cr_assert_eq(metrics.device_in_flight, 1, "e2 is still open");
    cr_assert_eq(devices_sync(ds, e2), 0);
    cr_assert_eq(metrics.device_in_flight, 0);
    cr_assert_eq(poll_expect(1, 3, "b"), b);
    cr_assert_eq(devices_sync(ds, 0), 0);
}

Test(devices_group, a_failed_call_leaves_the_others_of_its_epoch)
{
    enq(1, "a", 0, 0);
    enq(1, "b", 0, 0);
    enq(1, "c", 0, 0);
    uint64_t e = devices_last_epoch();
    device_cmd_t c = mk("d");
    int64_t id = 0;
    cr_assert_eq(devices_enqueue(ds, 1, &c, 0, 0, &id), -ENOSPC);
    cr_assert_eq(devices_sync(ds, e), 0);
    cr_assert_eq(committed_rows(), 3);
    cr_assert_eq(metrics.device_queued, 3);
}

Test(devices_group, sweep_and_close_commit_what_is_open)
{
    enq(1, "a", 0, 0);
    cr_assert_eq(committed_rows(), 0);
    cr_assert_geq(devices_sweep(ds, 10), 0);
    cr_assert_eq(committed_rows(), 1);
    enq(1, "b", 0, 11);
    devices_close(ds);
    ds = NULL;
    cr_assert_eq(committed_rows(), 2);
    open_store();
}

Test(devices_group, reads_see_the_open_epoch_and_wait_for_it)
{
    int64_t a = enq(7, "a", 0, 0);
    uint64_t e = devices_last_epoch();
    devices_cmd_t c = get(7, a, 1);
    cr_assert_eq(devices_last_epoch(), e, "the read depends on the open epoch");
    devices_cmd_clear(&c);
    devices_depth_t d;
    cr_assert_eq(devices_depth(ds, 7, &d), 0);
    cr_assert_eq(d.queued, 1);
    cr_assert_eq(devices_last_epoch(), e);
    cr_assert_eq(devices_sync(ds, e), 0);
    cr_assert_eq(devices_depth(ds, 7, &d), 0);
    cr_assert_eq(devices_last_epoch(), 0, "nothing open: a read needs no wait");
}
#endif
