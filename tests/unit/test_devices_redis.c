/* store/devices_redis: the device queue in Redis. Every semantics test of the SQLite
 * queue (test_devices.c, included below) runs again against a redis-server started
 * for each test on a free loopback port; then what only the Redis queue does: two
 * queues (two nodes) sharing one Redis, the wake-up messages, Redis down, Redis
 * restarted with its AOF, extreme device ids. Skipped when redis-server is missing. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store/devices_rcodec.h"
#include "store/devices_redis.h"

static pid_t redis_pid;
static int redis_port;
static char redis_dir[64];
static int redis_aof; /* start with appendonly yes, appendfsync always, in redis_dir */
static devices_redis_cfg_t redis_cfg;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static int have_redis_server(void)
{
    return system("command -v redis-server >/dev/null 2>&1") == 0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Starts redis-server on redis_port (a free one the first time) and waits for it. */
static void redis_spawn(void)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", redis_port);
    redis_pid = fork();
    cr_assert_geq(redis_pid, 0);
    if (redis_pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) {
            dup2(null, 1);
            dup2(null, 2);
        }
        if (redis_aof)
            execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save",
                   "", "--appendonly", "yes", "--appendfsync", "always", "--dir", redis_dir,
                   (char *)NULL);
        else
            execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save",
                   "", "--appendonly", "no", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 250; i++) {
        struct timeval tv = {0, 100000};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", redis_port, tv);
        redisReply *r = c && !c->err ? redisCommand(c, "PING") : NULL;
        int ok = r && r->type == REDIS_REPLY_STATUS;
        if (r) freeReplyObject(r);
        if (c) redisFree(c);
        if (ok) return;
        sleep_ms(20);
    }
    cr_assert_fail("redis-server did not start on %d", redis_port);
}

static void redis_kill(void)
{
    if (redis_pid > 0) {
        kill(redis_pid, SIGKILL);
        waitpid(redis_pid, NULL, 0);
        redis_pid = 0;
    }
}

static void redis_start(void)
{
    if (!have_redis_server()) cr_skip_test("redis-server is not installed");
    redis_port = free_port();
    if (redis_aof) {
        snprintf(redis_dir, sizeof(redis_dir), "/tmp/pg-redis-XXXXXX");
        cr_assert_not_null(mkdtemp(redis_dir));
    }
    redis_spawn();
    redis_cfg = (devices_redis_cfg_t){
        .host = "127.0.0.1", .port = redis_port, .prefix = "pushgate:test:", .node_id = "node-a"};
}

static void redis_stop(void)
{
    redis_kill();
    if (redis_aof && redis_dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", redis_dir);
        cr_assert_eq(system(cmd), 0);
        redis_dir[0] = '\0';
    }
}

#define DEVICES_TEST_REDIS 1
#include "test_devices.c"

/* ---- what only the queue in Redis does ---- */

/* A second queue on the same Redis: another node. */
static devices_t *open_other(const char *node_id)
{
    devices_redis_cfg_t c = redis_cfg;
    c.node_id = node_id;
    devices_t *o = NULL;
    char err[256] = "";
    cr_assert_eq(devices_redis_open(&o, &c, &opts, err, sizeof(err)), 0, "%s", err);
    return o;
}

Test(devices, two_nodes_share_one_queue)
{
    devices_t *b = open_other("node-b");
    int64_t id = enq(42, "a", 0, 10);
    devices_cmd_t c;
    cr_assert_eq(devices_next(b, 42, 11, &c), 1);
    cr_assert_eq(c.id, id);
    devices_cmd_clear(&c);
    /* one in flight, across nodes too */
    cr_assert_eq(devices_next(ds, 42, 12, &c), 0);
    /* the result on a third node closes it */
    devices_t *third = open_other("node-c");
    device_result_t res = {.response = "{\"ok\":true}"};
    int64_t got;
    cr_assert_eq(devices_result(third, 42, &res, 13, &got), 1);
    cr_assert_eq(got, id);
    c = get(42, id, 14);
    cr_assert_eq(c.status, DEVICES_DONE);
    cr_assert_str_eq(c.response, "{\"ok\":true}");
    devices_cmd_clear(&c);
    /* redelivery: sent on b, due later on ds */
    int64_t id2 = enq(42, "b", 0, 20);
    cr_assert_eq(devices_next(b, 42, 21, &c), 1);
    devices_cmd_clear(&c);
    cr_assert_eq(devices_next(ds, 42, 21 + 999, &c), 0);
    cr_assert_eq(devices_next(ds, 42, 21 + 1000, &c), 1);
    cr_assert_eq(c.id, id2);
    cr_assert_eq(c.attempts, 2);
    devices_cmd_clear(&c);
    devices_close(third);
    devices_close(b);
}

/* Reads the next message of a subscribed connection. */
static char *next_message(redisContext *sub)
{
    redisReply *r = NULL;
    cr_assert_eq(redisGetReply(sub, (void **)&r), REDIS_OK, "no message: %s", sub->errstr);
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
    cr_assert_eq(r->elements, 3);
    cr_assert_str_eq(r->element[0]->str, "message");
    cr_assert_str_eq(r->element[1]->str, "pushgate:test:devices");
    char *m = strdup(r->element[2]->str);
    freeReplyObject(r);
    return m;
}

Test(devices, changes_publish_one_wake_up_each)
{
    struct timeval tv = {2, 0};
    redisContext *sub = redisConnectWithTimeout("127.0.0.1", redis_port, tv);
    cr_assert(sub && !sub->err);
    redisSetTimeout(sub, tv);
    redisReply *r = redisCommand(sub, "SUBSCRIBE pushgate:test:devices");
    cr_assert_not_null(r);
    freeReplyObject(r);
    int64_t id = enq(-7, "a", 0, 1);
    char *m = next_message(sub);
    cr_assert_str_eq(m, "p-7 node-a");
    devices_wake_t w[4];
    const char *node;
    size_t nl;
    cr_assert_eq(devices_wake_parse(m, strlen(m), w, 4, &node, &nl), 1);
    cr_assert_eq(w[0].kind, DEVICES_WAKE_POLL);
    cr_assert_eq(w[0].key, -7);
    free(m);
    poll_expect(-7, 2, "a"); /* a delivery wakes no one */
    int64_t got;
    cr_assert_eq(result(-7, 3, "1", NULL, &got), 1);
    m = next_message(sub);
    char want[64];
    snprintf(want, sizeof(want), "r%lld,p-7 node-a", (long long)id);
    cr_assert_str_eq(m, want, "after the delivery, the result: %s", m);
    free(m);
    int64_t id2 = enq(-7, "b", 0, 4);
    free(next_message(sub));
    int st;
    cr_assert_eq(devices_cancel(ds, -7, id2, 5, &st), 0);
    m = next_message(sub);
    snprintf(want, sizeof(want), "r%lld node-a", (long long)id2);
    cr_assert_str_eq(m, want);
    free(m);
    /* an orphan result wakes no one: the next message is the enqueue after it */
    cr_assert_eq(result(-7, 6, "1", NULL, &got), 0);
    enq(-7, "c", 0, 7);
    m = next_message(sub);
    cr_assert_str_eq(m, "p-7 node-a");
    free(m);
    redisFree(sub);
}

Test(devices, extreme_device_ids_keep_their_order)
{
    int64_t ids[] = {INT64_MAX, -1, 0, INT64_MIN, 1, -10, 10, -9};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
        enq(ids[i], "x", 0, 1);
    depths_t s = {0};
    cr_assert_eq(devices_depths(ds, INT64_MIN, 100, collect_depth, &s), 7,
                 "after is exclusive: INT64_MIN itself is not listed");
    int64_t want[] = {-10, -9, -1, 0, 1, 10, INT64_MAX};
    for (int i = 0; i < 7; i++)
        cr_assert_eq(s.d[i].device_id, want[i], "%d: %lld", i, (long long)s.d[i].device_id);
    s.n = 0;
    cr_assert_eq(devices_depths(ds, -1, 2, collect_depth, &s), 2);
    cr_assert_eq(s.d[0].device_id, 0);
    cr_assert_eq(s.d[1].device_id, 1);
    poll_expect(INT64_MIN, 2, "x");
    poll_expect(INT64_MAX, 2, "x");
}

Test(devices, redis_down_answers_enotconn_and_comes_back)
{
    int64_t id = enq(1, "a", 0, 0);
    redis_kill();
    devices_cmd_t c;
    device_cmd_t cmd = mk("b");
    int64_t nid;
    int st;
    devices_depth_t d;
    cr_assert_eq(devices_enqueue(ds, 1, &cmd, 0, 1, &nid), -ENOTCONN);
    cr_assert_eq(devices_next(ds, 1, 1, &c), -ENOTCONN);
    cr_assert_eq(devices_get(ds, 1, id, 1, &c), -ENOTCONN);
    cr_assert_eq(devices_cancel(ds, 1, id, 1, &st), -ENOTCONN);
    cr_assert_eq(devices_depth(ds, 1, &d), -ENOTCONN);
    cr_assert_eq(devices_sweep(ds, 1), -ENOTCONN);
    /* without persistence the queue is gone, but the queue works again */
    redis_spawn();
    enq(1, "c", 0, 2);
    poll_expect(1, 3, "c");
}

static int down(void *arg)
{
    (void)arg;
    return 0;
}

Test(devices, while_the_bus_says_down_no_call_waits)
{
    devices_t *o = NULL;
    devices_redis_cfg_t c = redis_cfg;
    c.healthy = down;
    char err[256];
    cr_assert_eq(devices_redis_open(&o, &c, &opts, err, sizeof(err)), 0);
    devices_cmd_t cmd;
    cr_assert_eq(devices_next(o, 1, 1, &cmd), -ENOTCONN);
    devices_close(o);
}

static void setup_aof(void)
{
    redis_aof = 1;
    setup();
}

TestSuite(devices_aof, .init = setup_aof, .fini = teardown);

Test(devices_aof, acknowledged_changes_survive_a_redis_kill_9)
{
    int64_t a = enq(1, "a", 0, 0);
    int64_t b = enq(1, "b", 0, 0);
    poll_expect(1, 10, "a");
    redis_kill();
    redis_spawn(); /* same port, same AOF: the pooled connection is stale, the scripts gone */
    devices_cmd_t c = get(1, a, 11);
    cr_assert_eq(c.status, DEVICES_SENT);
    cr_assert_eq(c.attempts, 1);
    devices_cmd_clear(&c);
    int64_t id;
    cr_assert_eq(result(1, 12, "1", NULL, &id), 1);
    cr_assert_eq(id, a);
    cr_assert_eq(poll_expect(1, 13, "b"), b);
    /* ids go on from where they were */
    cr_assert_gt(enq(1, "c", 0, 14), b);
}

typedef struct ids_s {
    int64_t ids[600];
    int n;
} ids_t;

static int collect_many(const devices_cmd_t *c, void *arg)
{
    ids_t *s = arg;
    s->ids[s->n++] = c->id;
    return 0;
}

Test(devices, long_queues_and_histories_list_in_chunks)
{
    devices_t *big = NULL;
    devices_opts_t o = opts;
    o.max_queue = 1000;
    char err[256];
    cr_assert_eq(devices_redis_open(&big, &redis_cfg, &o, err, sizeof(err)), 0);
    device_cmd_t c = mk("x");
    int64_t ids[600];
    for (int i = 0; i < 600; i++)
        cr_assert_eq(devices_enqueue(big, 5, &c, 0, 1, &ids[i]), 0);
    int st;
    for (int i = 0; i < 600; i += 3)
        cr_assert_eq(devices_cancel(big, 5, ids[i], 2, &st), 0);
    /* queued only (the queue list): 400 left; 200 of them after ids[299] */
    ids_t s = {0};
    cr_assert_eq(devices_list(big, 5, 1u << DEVICES_QUEUED, ids[299], 150, 3, collect_many, &s),
                 150);
    cr_assert_eq(s.ids[0], ids[301]);
    cr_assert_eq(s.ids[149], ids[301 + 74 * 3 + 1]);
    s.n = 0;
    cr_assert_eq(devices_list(big, 5, 1u << DEVICES_QUEUED, ids[299], 1000, 3, collect_many, &s),
                 200);
    s.n = 0;
    cr_assert_eq(devices_list(big, 5, 1u << DEVICES_QUEUED, 0, 1000, 3, collect_many, &s), 400);
    /* cancelled only (the whole history, 256 ids at a time): 200 */
    s.n = 0;
    cr_assert_eq(devices_list(big, 5, 1u << DEVICES_CANCELLED, 0, 1000, 3, collect_many, &s), 200);
    for (int i = 0; i < 200; i++)
        cr_assert_eq(s.ids[i], ids[i * 3]);
    s.n = 0;
    cr_assert_eq(devices_list(big, 5, 0, ids[500], 1000, 3, collect_many, &s), 99);
    devices_close(big);
}
