/* cluster/rslots: CRC16 against known vectors, hash tags, CLUSTER SLOTS replies (fed
 * through hiredis's reader whole, byte by byte and split at every offset), MOVED/ASK
 * errors, host:port seeds; and cluster/redis_cluster's target from a config. */
#include <criterion/criterion.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <string.h>

#include "cluster/redis_cluster.h"
#include "cluster/rslots.h"
#include "core/config.h"

Test(rslots, crc16_vectors)
{
    cr_assert_eq(rslots_crc16("123456789", 9), 0x31C3);
    cr_assert_eq(rslots_crc16("", 0), 0);
    cr_assert_eq(rslots_crc16("A", 1), 0x58E5);
}

Test(rslots, key_slots_match_redis)
{
    /* the values of CLUSTER KEYSLOT on Redis 7 */
    cr_assert_eq(rslots_key_slot("foo", 3), 12182);
    cr_assert_eq(rslots_key_slot("bar", 3), 5061);
    cr_assert_eq(rslots_key_slot("123456789", 9), 0x31C3 & 16383);
    cr_assert_eq(rslots_key_slot("", 0), 0);
}

static unsigned slot(const char *k)
{
    return rslots_key_slot(k, strlen(k));
}

Test(rslots, hash_tags)
{
    /* the tag alone is hashed */
    cr_assert_eq(slot("{user1000}.following"), slot("user1000"));
    cr_assert_eq(slot("{user1000}.followers"), slot("{user1000}.following"));
    cr_assert_eq(slot("pushgate:{app}:node:n1"), slot("app"));
    cr_assert_eq(slot("{pushgate:app:dev:3}:q:42"), slot("pushgate:app:dev:3"));
    /* the first '{' and the first '}' after it */
    cr_assert_eq(slot("foo{bar}{zap}"), slot("bar"));
    cr_assert_eq(slot("foo{{bar}}zap"), slot("{bar"));
    /* an empty tag, or no '}': the whole key */
    cr_assert_eq(slot("foo{}{bar}"), rslots_crc16("foo{}{bar}", 10) & 16383);
    cr_assert_eq(slot("foo{bar"), rslots_crc16("foo{bar", 7) & 16383);
    cr_assert_eq(slot("}foo{"), rslots_crc16("}foo{", 5) & 16383);
    /* a tag with a NUL in it: bytes, not a C string */
    cr_assert_eq(rslots_key_slot("x{a\0b}y", 7), rslots_crc16("a\0b", 3) & 16383);
}

/* Parses RESP text into a reply, fed in pieces of `step` bytes (0: whole). */
static redisReply *resp(const char *text, size_t step)
{
    redisReader *r = redisReaderCreate();
    size_t len = strlen(text);
    void *reply = NULL;
    for (size_t off = 0; off < len;) {
        size_t n = step && step < len - off ? step : len - off;
        cr_assert_eq(redisReaderFeed(r, text + off, n), REDIS_OK);
        off += n;
        if (off < len) {
            cr_assert_eq(redisReaderGetReply(r, &reply), REDIS_OK);
            cr_assert_null(reply, "a reply before all bytes came");
        }
    }
    cr_assert_eq(redisReaderGetReply(r, &reply), REDIS_OK);
    redisReaderFree(r);
    cr_assert_not_null(reply);
    return reply;
}

/* Three masters as redis 7 answers CLUSTER SLOTS (ids, and a hostname map), one with a
 * replica and one with an empty host (the node that answered). */
static const char slots3[] =
    "*3\r\n"
    "*3\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:7000\r\n$40\r\n"
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n*0\r\n"
    "*4\r\n:5461\r\n:10922\r\n*3\r\n$9\r\n127.0.0.1\r\n:7001\r\n$2\r\nid\r\n"
    "*3\r\n$9\r\n127.0.0.1\r\n:7004\r\n$2\r\nre\r\n"
    "*3\r\n:10923\r\n:16383\r\n*2\r\n$0\r\n\r\n:7002\r\n";

static void check3(const rslots_map_t *m)
{
    cr_assert_eq(m->n, 3);
    cr_assert_str_eq(m->node[0].host, "127.0.0.1");
    cr_assert_eq(m->node[0].port, 7000);
    cr_assert_eq(m->node[1].port, 7001);
    cr_assert_str_eq(m->node[2].host, "10.0.0.9"); /* the default host */
    cr_assert_eq(m->node[2].port, 7002);
    cr_assert_eq(m->owner[0], 0);
    cr_assert_eq(m->owner[5460], 0);
    cr_assert_eq(m->owner[5461], 1);
    cr_assert_eq(m->owner[10922], 1);
    cr_assert_eq(m->owner[10923], 2);
    cr_assert_eq(m->owner[16383], 2);
}

Test(rslots, cluster_slots_whole_and_split)
{
    static rslots_map_t m;
    char err[200];
    for (size_t step = 0; step <= sizeof(slots3); step++) {
        redisReply *r = resp(slots3, step);
        cr_assert_eq(rslots_parse_slots(r, "10.0.0.9", &m, err, sizeof(err)), 16384, "%s", err);
        check3(&m);
        freeReplyObject(r);
    }
}

Test(rslots, cluster_slots_partial_and_bad)
{
    static rslots_map_t m;
    char err[200];
    redisReply *r = resp("*1\r\n*3\r\n:100\r\n:199\r\n*2\r\n$1\r\nh\r\n:1\r\n", 0);
    cr_assert_eq(rslots_parse_slots(r, NULL, &m, err, sizeof(err)), 100);
    cr_assert_eq(m.owner[99], -1);
    cr_assert_eq(m.owner[100], 0);
    cr_assert_eq(m.owner[200], -1);
    freeReplyObject(r);
    const char *bad[] = {
        "+OK\r\n",                                              /* not an array */
        "*1\r\n:1\r\n",                                         /* not an entry */
        "*1\r\n*2\r\n:0\r\n:1\r\n",                             /* no master */
        "*1\r\n*3\r\n:5\r\n:4\r\n*2\r\n$1\r\nh\r\n:1\r\n",      /* start > end */
        "*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n",  /* past the last */
        "*1\r\n*3\r\n:-1\r\n:3\r\n*2\r\n$1\r\nh\r\n:1\r\n",     /* negative */
        "*1\r\n*3\r\n:0\r\n:3\r\n*2\r\n$1\r\nh\r\n:0\r\n",      /* port 0 */
        "*1\r\n*3\r\n:0\r\n:3\r\n*2\r\n$1\r\nh\r\n:65536\r\n",  /* port too big */
        "*1\r\n*3\r\n:0\r\n:3\r\n*2\r\n:1\r\n:1\r\n",           /* host not a string */
        "*1\r\n*3\r\n:0\r\n:3\r\n*2\r\n$3\r\na\0b\r\n:1\r\n",   /* NUL in the host */
        "*1\r\n*3\r\n:0\r\n:3\r\n*2\r\n$0\r\n\r\n:1\r\n",       /* empty, no default */
        "*1\r\n*3\r\n$1\r\n0\r\n:3\r\n*2\r\n$1\r\nh\r\n:1\r\n", /* start a string */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        /* the NUL case: feed its real length */
        redisReader *rd = redisReaderCreate();
        size_t len =
            i == 9 ? strlen(bad[i]) + 1 + strlen(bad[i] + strlen(bad[i]) + 1) : strlen(bad[i]);
        cr_assert_eq(redisReaderFeed(rd, bad[i], len), REDIS_OK);
        void *reply = NULL;
        cr_assert_eq(redisReaderGetReply(rd, &reply), REDIS_OK);
        cr_assert_not_null(reply, "case %zu", i);
        err[0] = '\0';
        cr_assert_eq(rslots_parse_slots(reply, NULL, &m, err, sizeof(err)), -EINVAL, "case %zu", i);
        cr_assert(err[0], "case %zu names the problem", i);
        freeReplyObject(reply);
        redisReaderFree(rd);
    }
}

Test(rslots, too_many_masters)
{
    static rslots_map_t m;
    char text[16384];
    size_t n = (size_t)snprintf(text, sizeof(text), "*%d\r\n", RSLOTS_MAX_NODES + 1);
    for (int i = 0; i <= RSLOTS_MAX_NODES; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n,
                              "*3\r\n:%d\r\n:%d\r\n*2\r\n$1\r\nh\r\n:%d\r\n", i, i, 1000 + i);
    redisReply *r = resp(text, 0);
    char err[200];
    cr_assert_eq(rslots_parse_slots(r, NULL, &m, err, sizeof(err)), -ENOSPC);
    freeReplyObject(r);
}

Test(rslots, moved_and_ask)
{
    rslots_redirect_t rd;
    const char *s = "MOVED 3999 127.0.0.1:6381";
    cr_assert_eq(rslots_parse_redirect(s, strlen(s), &rd), 1);
    cr_assert_eq(rd.ask, 0);
    cr_assert_eq(rd.slot, 3999);
    cr_assert_str_eq(rd.to.host, "127.0.0.1");
    cr_assert_eq(rd.to.port, 6381);
    s = "ASK 16383 [::1]:7000";
    cr_assert_eq(rslots_parse_redirect(s, strlen(s), &rd), 1);
    cr_assert_eq(rd.ask, 1);
    cr_assert_eq(rd.slot, 16383);
    cr_assert_str_eq(rd.to.host, "::1");
    cr_assert_eq(rd.to.port, 7000);
    s = "MOVED 0 redis-2.internal:6379";
    cr_assert_eq(rslots_parse_redirect(s, strlen(s), &rd), 1);
    cr_assert_str_eq(rd.to.host, "redis-2.internal");
    s = "MOVED 12 :6390"; /* an unknown endpoint: the port alone */
    cr_assert_eq(rslots_parse_redirect(s, strlen(s), &rd), 1);
    cr_assert_str_eq(rd.to.host, "");
    cr_assert_eq(rd.to.port, 6390);
    /* other errors */
    const char *other[] = {"ERR unknown command",
                           "TRYAGAIN Multiple keys",
                           "MOVEDX 1 h:1",
                           "CLUSTERDOWN",
                           "",
                           "ASKING"};
    for (size_t i = 0; i < sizeof(other) / sizeof(*other); i++)
        cr_assert_eq(rslots_parse_redirect(other[i], strlen(other[i]), &rd), 0, "%s", other[i]);
    /* malformed redirections */
    const char *bad[] = {"MOVED ",       "MOVED 16384 h:1", "MOVED 1",
                         "MOVED 1 h",    "MOVED 1 h:",      "MOVED 1 h:0",
                         "MOVED x h:1",  "ASK 1 h:99999",   "MOVED 1234567 h:1",
                         "MOVED 1  h:1", "ASK 5 h:1 x",     "MOVED 1 :"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        cr_assert_eq(rslots_parse_redirect(bad[i], strlen(bad[i]), &rd), -EINVAL, "%s", bad[i]);
    /* every prefix of a good one up to its port is malformed or another error (never
     * read past len: the string goes on) */
    s = "MOVED 3999 127.0.0.1:6381";
    for (size_t i = 0; i <= 21; i++)
        cr_assert_leq(rslots_parse_redirect(s, i, &rd), 0, "prefix %zu", i);
    cr_assert_eq(rslots_parse_redirect(s, 22, &rd), 1);
    cr_assert_eq(rd.to.port, 6);
}

Test(rslots, hostport)
{
    rslots_node_t n;
    cr_assert_eq(rslots_parse_hostport("127.0.0.1:7000", 14, &n), 0);
    cr_assert_str_eq(n.host, "127.0.0.1");
    cr_assert_eq(n.port, 7000);
    cr_assert_eq(rslots_parse_hostport("[::1]:1", 7, &n), 0);
    cr_assert_str_eq(n.host, "::1");
    const char *bad[] = {"", "h", "h:", ":1", "h:0", "h:65536", "h:1x", "h 1:2", "h:-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        cr_assert_eq(rslots_parse_hostport(bad[i], strlen(bad[i]), &n), -EINVAL, "%s", bad[i]);
}

Test(rslots, map_nodes)
{
    static rslots_map_t m;
    rslots_map_clear(&m);
    cr_assert_eq(rslots_map_node(&m, "a", 1), 0);
    cr_assert_eq(rslots_map_node(&m, "b", 1), 1);
    cr_assert_eq(rslots_map_node(&m, "a", 1), 0);
    cr_assert_eq(rslots_map_node(&m, "a", 0), -EINVAL);
    for (int i = 2; i < RSLOTS_MAX_NODES; i++)
        cr_assert_eq(rslots_map_node(&m, "c", i), i);
    cr_assert_eq(rslots_map_node(&m, "d", 1), -ENOSPC);
}

Test(redis_cluster, target_from_config)
{
    config_t cfg;
    cr_assert_eq(config_init(&cfg), 0);
    redis_target_t t;
    char err[200] = "";
    cr_assert_eq(redis_target_from_config(&cfg, &t, err, sizeof(err)), 0);
    json_error_t je;
    json_t *doc =
        json_loads("{\"redis\": {\"cluster\": [\"127.0.0.1:7000\", \"[::1]:7001\"]}}", 0, &je);
    cr_assert_eq(config_apply_json(&cfg, doc, err, sizeof(err)), 0, "%s", err);
    json_decref(doc);
    cr_assert_eq(redis_target_from_config(&cfg, &t, err, sizeof(err)), 1);
    cr_assert_eq(t.cluster, 1);
    cr_assert_eq(t.n_seeds, 2);
    cr_assert_str_eq(t.seed[1].host, "::1");
    cr_assert_eq(t.seed[1].port, 7001);
    char where[200];
    redis_target_describe(&t, where, sizeof(where));
    cr_assert_str_eq(where, "cluster 127.0.0.1:7000,::1:7001");
    config_free(&cfg);

    cr_assert_eq(config_init(&cfg), 0);
    doc = json_loads("{\"redis\": \"redis://10.1.2.3:6390/2\"}", 0, &je);
    cr_assert_eq(config_apply_json(&cfg, doc, err, sizeof(err)), 0, "%s", err);
    json_decref(doc);
    cr_assert_eq(redis_target_from_config(&cfg, &t, err, sizeof(err)), 1);
    cr_assert_eq(t.cluster, 0);
    cr_assert_str_eq(t.seed[0].host, "10.1.2.3");
    cr_assert_eq(t.seed[0].port, 6390);
    cr_assert_eq(t.db, 2);
    config_free(&cfg);

    const char *bad[] = {"{\"redis\": {}}",
                         "{\"redis\": {\"cluster\": []}}",
                         "{\"redis\": {\"cluster\": [\"h\"]}}",
                         "{\"redis\": {\"cluster\": [1]}}",
                         "{\"redis\": {\"cluster\": [\"h:1\"], \"x\": 1}}",
                         "{\"redis\": 5}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        cr_assert_eq(config_init(&cfg), 0);
        doc = json_loads(bad[i], 0, &je);
        err[0] = '\0';
        cr_assert_eq(config_apply_json(&cfg, doc, err, sizeof(err)), -EINVAL, "%s", bad[i]);
        cr_assert(strstr(err, "redis"), "%s: %s", bad[i], err);
        json_decref(doc);
        config_free(&cfg);
    }
}
