/* The device command queue in Redis (store/devices_redis.h): one Lua script per call,
 * run with EVALSHA (EVAL when Redis does not know it yet) on a blocking connection
 * taken from a small pool, with a short timeout.
 *
 * Keys, under "pushgate:{app}:dev:" (docs/cluster.md):
 *   id, oid            counters (INCR) of command and orphan ids
 *   c:{id}             hash: a command (store/devices_rcodec.h)
 *   q:{dev}            list: the device's unfinished command ids, oldest first; only
 *                      the head can be sent (one in flight, in order)
 *   all:{dev}          zset: every command id of the device (score: the id)
 *   dexp:{dev}         zset: the device's unfinished commands with a TTL, by expiresAt
 *   exp                zset: every unfinished command with a TTL, by when it expires
 *   sent               zset: commands in flight, by redelivery deadline
 *   devs               zset: devices with unfinished commands, in device id order (by
 *                      lexical order of a fixed-width encoding, then the id)
 *   done               zset: finished commands by completedAt (retention)
 *   o:{id}             hash: an orphan result
 *   orph:{dev}         zset: the device's orphan ids (score: the id)
 *   orphans            zset: orphan ids by receivedAt (retention)
 *   stats              hash: queued (every device's queued commands)
 *   idem:{scope}       hash: an enqueue's Idempotency-Key {fp, id}, PEXPIRE its TTL
 * Device ids stay strings inside the scripts (Lua numbers are doubles); times and
 * command ids are well within a double's integers. */
#include "store/devices_redis.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/metrics.h"
#include "store/devices_rcodec.h"

#define POOL_MAX 64
#define ARGS_MAX 32
#define HASH_MAX 48 /* most entries of a command hash (fields and values) */
#define SWEEP_BATCH 2000

/* ---- the scripts ---- */

/* Every script starts with this: its arguments ARGV[1..5] are the key prefix, now,
 * the redelivery timeout, the wake-up channel and this node's id; its own from
 * ARGV[6]. */
static const char prelude[] =
    "local P, NOW, RD, CH, NODE = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5]\n"
    "local function D(x) return string.format('%d', x) end\n"
    "local wakes = {}\n"
    "local function wake(w) wakes[#wakes + 1] = w end\n"
    "local function publish()\n"
    "  if #wakes > 0 then redis.call('PUBLISH', CH, table.concat(wakes, ',') .. ' ' .. NODE) end\n"
    "end\n"
    /* a fixed-width key whose lexical order is the numeric order of device ids */
    "local function lex(dev)\n"
    "  if string.sub(dev, 1, 1) == '-' then\n"
    "    local m = string.sub(dev, 2)\n"
    "    m = string.rep('0', 19 - #m) .. m\n"
    "    return '0' .. (string.gsub(m, '%d', function(c) return string.char(105 - string.byte(c)) "
    "end))\n"
    "  end\n"
    "  return '1' .. string.rep('0', 19 - #dev) .. dev\n"
    "end\n"
    /* a command leaves the unfinished ones: queued or sent -> st at time at */
    "local function finish(id, dev, st, at)\n"
    "  local c = P .. 'c:' .. id\n"
    "  local old = redis.call('HGET', c, 'status')\n"
    "  redis.call('HSET', c, 'status', st, 'completedAt', D(at))\n"
    "  local q = P .. 'q:' .. dev\n"
    "  redis.call('LREM', q, 1, id)\n"
    "  redis.call('ZREM', P .. 'dexp:' .. dev, id)\n"
    "  redis.call('ZREM', P .. 'exp', id)\n"
    "  if old == 'sent' then redis.call('ZREM', P .. 'sent', id)\n"
    "  else redis.call('HINCRBY', P .. 'stats', 'queued', -1) end\n"
    "  if redis.call('EXISTS', q) == 0 then redis.call('ZREM', P .. 'devs', lex(dev) .. dev) end\n"
    "  redis.call('ZADD', P .. 'done', D(at), id)\n"
    "end\n"
    /* expires one command if it is due: a queued one past its TTL, a sent one past its
     * TTL and due for redelivery (a result may still come until then). Returns true
     * when it is no longer unfinished-with-a-TTL, else false and when it will expire */
    "local EXP = {0, 0}\n"
    "local function expire_one(id)\n"
    "  local f = redis.call('HMGET', P .. 'c:' .. id, 'status', 'device', 'expiresAt', 'sentAt')\n"
    "  if f[1] == 'queued' then\n"
    "    finish(id, f[2], 'expired', tonumber(f[3])); EXP[1] = EXP[1] + 1; return true\n"
    "  elseif f[1] == 'sent' then\n"
    "    local due = tonumber(f[4]) + RD\n"
    "    if due > NOW then return false, math.max(due, tonumber(f[3])) end\n"
    "    finish(id, f[2], 'expired', math.max(tonumber(f[3]), due)); EXP[2] = EXP[2] + 1\n"
    "    return true\n"
    "  end\n"
    "  redis.call('ZREM', P .. 'exp', id)\n"
    "  if f[2] then redis.call('ZREM', P .. 'dexp:' .. f[2], id) end\n"
    "  return true\n"
    "end\n"
    "local function expire_device(dev)\n"
    "  for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'dexp:' .. dev, '-inf', D(NOW))) do\n"
    "    expire_one(id)\n"
    "  end\n"
    "end\n"
    /* the device's unfinished commands: queued, sent */
    "local function depth(dev)\n"
    "  local q = P .. 'q:' .. dev\n"
    "  local n = redis.call('LLEN', q)\n"
    "  if n == 0 then return 0, 0 end\n"
    "  local head = redis.call('LINDEX', q, 0)\n"
    "  if redis.call('HGET', P .. 'c:' .. head, 'status') == 'sent' then return n - 1, 1 end\n"
    "  return n, 0\n"
    "end\n";

enum script_id {
    SC_ENQUEUE,
    SC_NEXT,
    SC_RESULT,
    SC_CANCEL,
    SC_GET,
    SC_LIST,
    SC_ORPHANS,
    SC_DEPTHS,
    SC_DEPTH,
    SC_SWEEP,
    SC_STATS,
    SC_COUNT
};

static const char *const script_body[SC_COUNT] = {
    /* ARGV[6] device, [7] max queue, [8] expiresAt (0: never), [9] Idempotency-Key
     * scope ("": none), [10] its fingerprint, [11] its TTL ms, [12…] field, value
     * pairs. Returns {id or -1 (full) or -2 (the key is another request's), expired
     * queued, expired sent, 1 when the id is the key's earlier command}. The key is
     * checked and written here, with the command, so a call cut off by a timeout after
     * Redis ran it is found by its retry */
    [SC_ENQUEUE] =
        "local dev, maxq, expires = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])\n"
        "local ik = ARGV[9] ~= '' and (P .. 'idem:' .. ARGV[9]) or nil\n"
        "if ik then\n"
        "  local v = redis.call('HMGET', ik, 'fp', 'id')\n"
        "  if v[1] then\n"
        "    if v[1] ~= ARGV[10] then return {-2, 0, 0, 0} end\n"
        "    return {tonumber(v[2]), 0, 0, 1}\n"
        "  end\n"
        "end\n"
        "expire_device(dev)\n"
        "local q = P .. 'q:' .. dev\n"
        "if redis.call('LLEN', q) >= maxq then return {-1, EXP[1], EXP[2]} end\n"
        "local id = D(redis.call('INCR', P .. 'id'))\n"
        "local c = P .. 'c:' .. id\n"
        "local h = {'id', id, 'device', dev, 'status', 'queued', 'attempts', '0', 'createdAt', "
        "D(NOW)}\n"
        "for i = 12, #ARGV do h[#h + 1] = ARGV[i] end\n"
        "if expires > 0 then\n"
        "  h[#h + 1] = 'expiresAt'; h[#h + 1] = D(expires)\n"
        "  redis.call('ZADD', P .. 'dexp:' .. dev, D(expires), id)\n"
        "  redis.call('ZADD', P .. 'exp', D(expires), id)\n"
        "end\n"
        "redis.call('HSET', c, unpack(h))\n"
        "redis.call('RPUSH', q, id)\n"
        "redis.call('ZADD', P .. 'all:' .. dev, id, id)\n"
        "redis.call('ZADD', P .. 'devs', 0, lex(dev) .. dev)\n"
        "redis.call('HINCRBY', P .. 'stats', 'queued', 1)\n"
        "if ik then\n"
        "  redis.call('HSET', ik, 'fp', ARGV[10], 'id', id)\n"
        "  redis.call('PEXPIRE', ik, ARGV[11])\n"
        "end\n"
        "wake('p' .. dev); publish()\n"
        "return {tonumber(id), EXP[1], EXP[2], 0}\n",
    /* ARGV[6] device. Returns {delivered 0/1, expired queued, expired sent,
     * redelivery 0/1, the command's hash} */
    [SC_NEXT] = "local dev = ARGV[6]\n"
                "expire_device(dev)\n"
                "local q = P .. 'q:' .. dev\n"
                "local id = redis.call('LINDEX', q, 0)\n"
                "if not id then return {0, EXP[1], EXP[2], 0} end\n"
                "local c = P .. 'c:' .. id\n"
                "local f = redis.call('HMGET', c, 'status', 'sentAt')\n"
                "local re = 0\n"
                "if f[1] == 'sent' then\n"
                "  if NOW - tonumber(f[2]) < RD then return {0, EXP[1], EXP[2], 0} end\n"
                "  re = 1\n"
                "elseif f[1] ~= 'queued' then\n"
                "  redis.call('LREM', q, 1, id)\n" /* not unfinished: cannot happen */
                "  return {0, EXP[1], EXP[2], 0}\n"
                "else\n"
                "  redis.call('HINCRBY', P .. 'stats', 'queued', -1)\n"
                "end\n"
                "redis.call('HSET', c, 'status', 'sent', 'sentAt', D(NOW))\n"
                "redis.call('HINCRBY', c, 'attempts', 1)\n"
                "redis.call('ZADD', P .. 'sent', D(NOW + RD), id)\n"
                "return {1, EXP[1], EXP[2], re, redis.call('HGETALL', c)}\n",
    /* ARGV[6] device, [7] failed 0/1, [8] has response, [9] response, [10] has error,
     * [11] error. Returns {1 (closed) or 0 (orphan), the command's or orphan's id} */
    [SC_RESULT] = "local dev = ARGV[6]\n"
                  "local id = redis.call('LINDEX', P .. 'q:' .. dev, 0)\n"
                  "if id and redis.call('HGET', P .. 'c:' .. id, 'status') == 'sent' then\n"
                  "  local c = P .. 'c:' .. id\n"
                  "  if ARGV[8] == '1' then redis.call('HSET', c, 'response', ARGV[9]) end\n"
                  "  if ARGV[10] == '1' then redis.call('HSET', c, 'error', ARGV[11]) end\n"
                  "  local st = 'done'\n"
                  "  if ARGV[7] == '1' then st = 'failed' end\n"
                  "  finish(id, dev, st, NOW)\n"
                  "  wake('r' .. id); wake('p' .. dev); publish()\n"
                  "  return {1, tonumber(id)}\n"
                  "end\n"
                  "local oid = D(redis.call('INCR', P .. 'oid'))\n"
                  "local o = P .. 'o:' .. oid\n"
                  "redis.call('HSET', o, 'id', oid, 'device', dev, 'receivedAt', D(NOW))\n"
                  "if ARGV[8] == '1' then redis.call('HSET', o, 'response', ARGV[9]) end\n"
                  "if ARGV[10] == '1' then redis.call('HSET', o, 'error', ARGV[11]) end\n"
                  "redis.call('ZADD', P .. 'orph:' .. dev, oid, oid)\n"
                  "redis.call('ZADD', P .. 'orphans', D(NOW), oid)\n"
                  "return {0, tonumber(oid)}\n",
    /* ARGV[6] device, [7] command id. Returns {1 (cancelled), 0 (not queued), -1 (no
     * such command of the device); expired queued, expired sent; the status} */
    [SC_CANCEL] = "local dev, id = ARGV[6], ARGV[7]\n"
                  "expire_device(dev)\n"
                  "local f = redis.call('HMGET', P .. 'c:' .. id, 'device', 'status')\n"
                  "if f[1] ~= dev then return {-1, EXP[1], EXP[2]} end\n"
                  "if f[2] ~= 'queued' then return {0, EXP[1], EXP[2], f[2]} end\n"
                  "finish(id, dev, 'cancelled', NOW)\n"
                  "wake('r' .. id); publish()\n"
                  "return {1, EXP[1], EXP[2]}\n",
    /* ARGV[6] device, [7] command id. Returns {expired queued, expired sent, the hash
     * (absent: no such command of the device)} */
    [SC_GET] = "local dev, id = ARGV[6], ARGV[7]\n"
               "expire_device(dev)\n"
               "local c = P .. 'c:' .. id\n"
               "if redis.call('HGET', c, 'device') ~= dev then return {EXP[1], EXP[2]} end\n"
               "return {EXP[1], EXP[2], redis.call('HGETALL', c)}\n",
    /* ARGV[6] device, [7] statuses ("a,b"; "": any), [8] after, [9] limit. Returns
     * {expired queued, expired sent, hash…}. Only unfinished statuses wanted: the
     * queue list; else every command of the device; 256 ids at a time */
    [SC_LIST] =
        "local dev, after, limit = ARGV[6], tonumber(ARGV[8]), tonumber(ARGV[9])\n"
        "expire_device(dev)\n"
        "local want, open_only = nil, false\n"
        "if ARGV[7] ~= '' then\n"
        "  want, open_only = {}, true\n"
        "  for s in string.gmatch(ARGV[7], '[^,]+') do\n"
        "    want[s] = true\n"
        "    if s ~= 'queued' and s ~= 'sent' then open_only = false end\n"
        "  end\n"
        "end\n"
        "local out, n = {EXP[1], EXP[2]}, 0\n"
        "local function take(id)\n"
        "  local h = redis.call('HGETALL', P .. 'c:' .. id)\n"
        "  if #h == 0 then return end\n"
        "  if want then\n"
        "    local st\n"
        "    for i = 1, #h, 2 do if h[i] == 'status' then st = h[i + 1] end end\n"
        "    if not want[st] then return end\n"
        "  end\n"
        "  out[#out + 1] = h; n = n + 1\n"
        "end\n"
        "if limit == 0 then return out end\n"
        "if open_only then\n"
        "  local i = 0\n"
        "  while n < limit do\n"
        "    local ids = redis.call('LRANGE', P .. 'q:' .. dev, i, i + 255)\n"
        "    if #ids == 0 then break end\n"
        "    for _, id in ipairs(ids) do\n"
        "      if tonumber(id) > after then take(id) end\n"
        "      if n >= limit then break end\n"
        "    end\n"
        "    i = i + 256\n"
        "  end\n"
        "  return out\n"
        "end\n"
        "local from = '(' .. ARGV[8]\n"
        "while n < limit do\n"
        "  local ids = redis.call('ZRANGEBYSCORE', P .. 'all:' .. dev, from, '+inf', 'LIMIT', 0, "
        "256)\n"
        "  if #ids == 0 then break end\n"
        "  for _, id in ipairs(ids) do\n"
        "    take(id)\n"
        "    if n >= limit then break end\n"
        "  end\n"
        "  from = '(' .. ids[#ids]\n"
        "end\n"
        "return out\n",
    /* ARGV[6] device, [7] after, [8] limit. Returns {hash…} */
    [SC_ORPHANS] = "local ids = redis.call('ZRANGEBYSCORE', P .. 'orph:' .. ARGV[6], '(' .. "
                   "ARGV[7], '+inf', 'LIMIT', 0, tonumber(ARGV[8]))\n"
                   "local out = {}\n"
                   "for _, id in ipairs(ids) do\n"
                   "  local h = redis.call('HGETALL', P .. 'o:' .. id)\n"
                   "  if #h > 0 then out[#out + 1] = h end\n"
                   "end\n"
                   "return out\n",
    /* ARGV[6] after (a device id), [7] limit. Returns {{device, queued, sent}…} */
    [SC_DEPTHS] = "local ms = redis.call('ZRANGEBYLEX', P .. 'devs', '(' .. lex(ARGV[6]) .. "
                  "ARGV[6], '+', 'LIMIT', 0, tonumber(ARGV[7]))\n"
                  "local out = {}\n"
                  "for _, m in ipairs(ms) do\n"
                  "  local dev = string.sub(m, 21)\n"
                  "  local nq, ns = depth(dev)\n"
                  "  if nq + ns > 0 then out[#out + 1] = {dev, nq, ns} end\n"
                  "end\n"
                  "return out\n",
    /* ARGV[6] device. Returns {queued, sent} */
    [SC_DEPTH] = "local nq, ns = depth(ARGV[6])\n"
                 "return {nq, ns}\n",
    /* ARGV[6] most commands (and orphans) to expire or prune, [7] retention ms (0:
     * keep). Returns {expired queued, expired sent, queued, sent}: the last two of
     * every device */
    [SC_SWEEP] =
        "local batch, ret = tonumber(ARGV[6]), tonumber(ARGV[7])\n"
        "local ids = redis.call('ZRANGEBYSCORE', P .. 'exp', '-inf', D(NOW), 'LIMIT', 0, batch)\n"
        "for _, id in ipairs(ids) do\n"
        "  local gone, at = expire_one(id)\n"
        /* sent, past its TTL, not yet due: look again when it is */
        "  if not gone then redis.call('ZADD', P .. 'exp', D(at), id) end\n"
        "end\n"
        "if ret > 0 then\n"
        "  local cut = '(' .. D(NOW - ret)\n"
        "  for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'done', '-inf', cut, 'LIMIT', 0, "
        "batch)) do\n"
        "    local dev = redis.call('HGET', P .. 'c:' .. id, 'device')\n"
        "    redis.call('DEL', P .. 'c:' .. id)\n"
        "    if dev then redis.call('ZREM', P .. 'all:' .. dev, id) end\n"
        "    redis.call('ZREM', P .. 'done', id)\n"
        "  end\n"
        "  for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'orphans', '-inf', cut, 'LIMIT', "
        "0, batch)) do\n"
        "    local dev = redis.call('HGET', P .. 'o:' .. id, 'device')\n"
        "    redis.call('DEL', P .. 'o:' .. id)\n"
        "    if dev then redis.call('ZREM', P .. 'orph:' .. dev, id) end\n"
        "    redis.call('ZREM', P .. 'orphans', id)\n"
        "  end\n"
        "end\n"
        "local nq = tonumber(redis.call('HGET', P .. 'stats', 'queued') or '0')\n"
        "return {EXP[1], EXP[2], nq, redis.call('ZCARD', P .. 'sent')}\n",
    /* Returns {queued, sent} of every device */
    [SC_STATS] = "local nq = tonumber(redis.call('HGET', P .. 'stats', 'queued') or '0')\n"
                 "return {nq, redis.call('ZCARD', P .. 'sent')}\n",
};

static const char *const script_name[SC_COUNT] = {"enqueue", "next",  "result",  "cancel",
                                                  "get",     "list",  "orphans", "depths",
                                                  "depth",   "sweep", "stats"};

/* ---- the queue ---- */

typedef struct rq_s {
    devices_t base;
    devices_opts_t opts;
    char *host;
    int port, db;
    unsigned timeout_ms;
    char *kprefix; /* "pushgate:{app}:dev:" */
    char *channel; /* "pushgate:{app}:devices" */
    char *node;
    int (*healthy)(void *arg);
    void *healthy_arg;
    char *src[SC_COUNT]; /* prelude + body */
    char sha[SC_COUNT][41];
    pthread_mutex_t mu; /* the pool */
    redisContext *pool[POOL_MAX];
    int n_pool;
} rq_t;

static const devices_ops_t rq_ops;

/* ---- connections ---- */

/* Whether an idle connection can no longer be used: Redis closed it (restarted, or
 * killed) or something unexpected is waiting on it. */
static int stale(redisContext *c)
{
    if (c->err) return 1;
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    return poll(&p, 1, 0) != 0;
}

static redisContext *conn_open(rq_t *q)
{
    struct timeval ct = {0, DEVICES_REDIS_CONNECT_MS * 1000};
    struct timeval tv = {q->timeout_ms / 1000, (q->timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(q->host, q->port, ct);
    if (!c) return NULL;
    if (c->err || redisSetTimeout(c, tv) != REDIS_OK) {
        log_debug("device queue: cannot connect to redis", "error=\"%s\"", c->errstr);
        redisFree(c);
        return NULL;
    }
    if (q->db) {
        redisReply *r = redisCommand(c, "SELECT %d", q->db);
        int ok = r && r->type != REDIS_REPLY_ERROR;
        if (r) freeReplyObject(r);
        if (!ok) {
            redisFree(c);
            return NULL;
        }
    }
    return c;
}

/* A connection for one call: an idle one, or a new one. NULL while Redis is down. */
static redisContext *conn_take(rq_t *q)
{
    if (q->healthy && !q->healthy(q->healthy_arg)) return NULL;
    for (;;) {
        redisContext *c = NULL;
        pthread_mutex_lock(&q->mu);
        if (q->n_pool) c = q->pool[--q->n_pool];
        pthread_mutex_unlock(&q->mu);
        if (!c) return conn_open(q);
        if (!stale(c)) return c;
        redisFree(c);
    }
}

static void conn_give(rq_t *q, redisContext *c)
{
    if (c->err) {
        redisFree(c);
        return;
    }
    pthread_mutex_lock(&q->mu);
    if (q->n_pool < POOL_MAX) {
        q->pool[q->n_pool++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&q->mu);
    if (c) redisFree(c);
}

/* ---- calls ---- */

typedef struct call_s {
    const char *argv[ARGS_MAX];
    size_t len[ARGS_MAX];
    int argc;
    char nums[8][24];
    int n_nums;
} call_t;

static void arg(call_t *c, const char *s, size_t len)
{
    c->argv[c->argc] = s;
    c->len[c->argc++] = len;
}

static void arg_s(call_t *c, const char *s)
{
    arg(c, s, strlen(s));
}

static void arg_i(call_t *c, int64_t v)
{
    char *b = c->nums[c->n_nums++];
    int n = snprintf(b, sizeof(c->nums[0]), "%lld", (long long)v);
    arg(c, b, (size_t)n);
}

/* The first arguments of every script (see prelude). */
static void call_init(rq_t *q, call_t *c, int script, int64_t now)
{
    c->argc = c->n_nums = 0;
    arg_s(c, "EVALSHA");
    arg_s(c, q->sha[script]);
    arg_s(c, "0");
    arg_s(c, q->kprefix);
    arg_i(c, now);
    arg_i(c, q->opts.redelivery_ms);
    arg_s(c, q->channel);
    arg_s(c, q->node);
}

/* Runs the script. Returns 0 with the reply in *out (free it), -ENOTCONN (Redis
 * unreachable, or the connection failed mid-call: the outcome is unknown), -EIO (Redis
 * refused it). */
static int call_run(rq_t *q, int script, call_t *c, redisReply **out)
{
    redisContext *ctx = conn_take(q);
    if (!ctx) return -ENOTCONN;
    redisReply *r = redisCommandArgv(ctx, c->argc, c->argv, c->len);
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        /* a Redis that restarted, or first use: send the source (Redis caches it) */
        freeReplyObject(r);
        c->argv[0] = "EVAL";
        c->len[0] = 4;
        c->argv[1] = q->src[script];
        c->len[1] = strlen(q->src[script]);
        r = redisCommandArgv(ctx, c->argc, c->argv, c->len);
    }
    if (!r) {
        log_warn("device queue: redis call failed", "script=%s error=\"%s\"", script_name[script],
                 ctx->errstr);
        redisFree(ctx);
        return -ENOTCONN;
    }
    conn_give(q, ctx);
    if (r->type == REDIS_REPLY_ERROR) {
        log_error("device queue: redis refused a call", "script=%s error=\"%s\"",
                  script_name[script], r->str);
        freeReplyObject(r);
        return -EIO;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        log_error("device queue: unexpected reply from redis", "script=%s type=%d",
                  script_name[script], r->type);
        freeReplyObject(r);
        return -EIO;
    }
    *out = r;
    return 0;
}

/* Element i of an array reply as an integer (0 when absent or not one). */
static int64_t el_int(const redisReply *r, size_t i)
{
    return i < r->elements && r->element[i]->type == REDIS_REPLY_INTEGER ? r->element[i]->integer
                                                                         : 0;
}

static const redisReply *el(const redisReply *r, size_t i)
{
    return i < r->elements ? r->element[i] : NULL;
}

/* A hash (HGETALL's array) into kv. Returns the number of entries, or -EIO. */
static int hash_kv(const redisReply *h, devices_rstr_t *kv)
{
    if (!h || h->type != REDIS_REPLY_ARRAY || h->elements > HASH_MAX) return -EIO;
    for (size_t i = 0; i < h->elements; i++) {
        const redisReply *e = h->element[i];
        if (e->type != REDIS_REPLY_STRING) return -EIO;
        kv[i] = (devices_rstr_t){e->str, e->len};
    }
    return (int)h->elements;
}

static int decode_cmd(const redisReply *h, devices_cmd_t *out)
{
    devices_rstr_t kv[HASH_MAX];
    int n = hash_kv(h, kv);
    int r = n < 0 ? n : devices_rcmd_decode(kv, (size_t)n, out);
    if (r == -EINVAL || r == -EIO) {
        log_error("device queue: a malformed command in redis", NULL);
        r = -EIO;
    }
    return r;
}

/* The metrics: gauges follow this node's changes (and the cluster's on each sweep). */
static void gauges(int64_t queued, int64_t sent)
{
    if (queued) __atomic_add_fetch(&metrics.device_queued, queued, __ATOMIC_RELAXED);
    if (sent) __atomic_add_fetch(&metrics.device_in_flight, sent, __ATOMIC_RELAXED);
}

/* The script expired what elements i and i + 1 of its reply count. */
static void expired(const redisReply *r, size_t i)
{
    int64_t nq = el_int(r, i), ns = el_int(r, i + 1);
    gauges(-nq, -ns);
    if (nq + ns > 0) METRICS_ADD(device_commands[DEVICES_EXPIRED], (uint64_t)(nq + ns));
}

static void set_gauges(int64_t queued, int64_t sent)
{
    __atomic_store_n(&metrics.device_queued, queued, __ATOMIC_RELAXED);
    __atomic_store_n(&metrics.device_in_flight, sent, __ATOMIC_RELAXED);
}

static int rq_enqueue(devices_t *base, int64_t device_id, const device_cmd_t *cmd,
                      int64_t expires_at, int64_t now, const devices_idem_t *idem, int64_t *id)
{
    rq_t *q = (rq_t *)base;
    call_t c;
    call_init(q, &c, SC_ENQUEUE, now);
    arg_i(&c, device_id);
    arg_i(&c, q->opts.max_queue);
    arg_i(&c, expires_at > 0 ? expires_at : 0);
    arg_s(&c, idem ? idem->scope : "");
    arg_s(&c, idem ? idem->fp : "");
    arg_i(&c, q->opts.idem_ttl_ms > 0 ? q->opts.idem_ttl_ms : 86400000);
    devices_rstr_t f[DEVICES_RCMD_FIELDS_MAX];
    size_t n = devices_rcmd_fields(cmd, f);
    for (size_t i = 0; i < n; i++)
        arg(&c, f[i].s, f[i].len);
    redisReply *r;
    int ret = call_run(q, SC_ENQUEUE, &c, &r);
    if (ret < 0) return ret;
    expired(r, 1);
    int64_t got = el_int(r, 0);
    if (got > 0 && el_int(r, 3) == 1) {
        *id = got; /* the key's command: nothing was enqueued now */
        ret = 1;
    } else if (got > 0) {
        *id = got;
        gauges(1, 0);
        METRICS_ADD(device_commands[DEVICES_QUEUED], 1);
        ret = 0;
    } else {
        ret = got == -1 ? -ENOSPC : got == -2 ? -EEXIST : -EIO;
    }
    freeReplyObject(r);
    return ret;
}

static int rq_next(devices_t *base, int64_t device_id, int64_t now, devices_cmd_t *out)
{
    rq_t *q = (rq_t *)base;
    memset(out, 0, sizeof(*out));
    call_t c;
    call_init(q, &c, SC_NEXT, now);
    arg_i(&c, device_id);
    redisReply *r;
    int ret = call_run(q, SC_NEXT, &c, &r);
    if (ret < 0) return ret;
    expired(r, 1);
    if (el_int(r, 0) == 1) {
        if (el_int(r, 3)) {
            METRICS_ADD(device_redeliveries, 1);
        } else {
            gauges(-1, 1);
            METRICS_ADD(device_commands[DEVICES_SENT], 1);
        }
        /* delivered as far as Redis knows: on a bad record the device gets it again
         * after the redelivery timeout, and the log says why */
        ret = decode_cmd(el(r, 4), out);
        if (ret == 0) ret = 1;
    }
    freeReplyObject(r);
    return ret;
}

static int rq_result(devices_t *base, int64_t device_id, const device_result_t *res, int64_t now,
                     int64_t *id)
{
    rq_t *q = (rq_t *)base;
    call_t c;
    call_init(q, &c, SC_RESULT, now);
    arg_i(&c, device_id);
    arg_s(&c, res->failed ? "1" : "0");
    arg_s(&c, res->response ? "1" : "0");
    arg_s(&c, res->response ? res->response : "");
    arg_s(&c, res->error ? "1" : "0");
    arg_s(&c, res->error ? res->error : "");
    redisReply *r;
    int ret = call_run(q, SC_RESULT, &c, &r);
    if (ret < 0) return ret;
    *id = el_int(r, 1);
    if (el_int(r, 0) == 1) {
        gauges(0, -1);
        METRICS_ADD(device_commands[res->failed ? DEVICES_FAILED : DEVICES_DONE], 1);
        ret = 1;
    } else {
        METRICS_ADD(device_orphans, 1);
        ret = 0;
    }
    freeReplyObject(r);
    return ret;
}

static int rq_cancel(devices_t *base, int64_t device_id, int64_t id, int64_t now, int *status)
{
    rq_t *q = (rq_t *)base;
    call_t c;
    call_init(q, &c, SC_CANCEL, now);
    arg_i(&c, device_id);
    arg_i(&c, id);
    redisReply *r;
    int ret = call_run(q, SC_CANCEL, &c, &r);
    if (ret < 0) return ret;
    expired(r, 1);
    int64_t got = el_int(r, 0);
    if (got == 1) {
        gauges(-1, 0);
        METRICS_ADD(device_commands[DEVICES_CANCELLED], 1);
        *status = DEVICES_CANCELLED;
        ret = 0;
    } else if (got == 0) {
        const redisReply *s = el(r, 3);
        int st = s && s->type == REDIS_REPLY_STRING ? devices_status_parse(s->str, s->len) : -1;
        if (st < 0) {
            ret = -EIO;
        } else {
            *status = st;
            ret = -EALREADY;
        }
    } else {
        ret = -ENOENT;
    }
    freeReplyObject(r);
    return ret;
}

static int rq_get(devices_t *base, int64_t device_id, int64_t id, int64_t now, devices_cmd_t *out)
{
    rq_t *q = (rq_t *)base;
    memset(out, 0, sizeof(*out));
    call_t c;
    call_init(q, &c, SC_GET, now);
    arg_i(&c, device_id);
    arg_i(&c, id);
    redisReply *r;
    int ret = call_run(q, SC_GET, &c, &r);
    if (ret < 0) return ret;
    expired(r, 0);
    ret = r->elements < 3 ? -ENOENT : decode_cmd(el(r, 2), out);
    freeReplyObject(r);
    return ret;
}

static int rq_list(devices_t *base, int64_t device_id, unsigned status_mask, int64_t after,
                   unsigned limit, int64_t now, devices_cmd_cb cb, void *arg_)
{
    rq_t *q = (rq_t *)base;
    char statuses[64] = "";
    size_t sl = 0;
    for (int i = 0; i < DEVICES_N_STATUS; i++)
        if (status_mask & (1u << i))
            sl += (size_t)snprintf(statuses + sl, sizeof(statuses) - sl, "%s%s", sl ? "," : "",
                                   devices_status_name(i));
    if (status_mask && !sl) return 0; /* only unknown statuses: nothing matches */
    call_t c;
    call_init(q, &c, SC_LIST, now);
    arg_i(&c, device_id);
    arg_s(&c, statuses);
    arg_i(&c, after);
    arg_i(&c, limit);
    redisReply *r;
    int ret = call_run(q, SC_LIST, &c, &r);
    if (ret < 0) return ret;
    expired(r, 0);
    int n = 0;
    for (size_t i = 2; i < r->elements; i++) {
        devices_cmd_t cmd;
        if ((ret = decode_cmd(r->element[i], &cmd)) < 0) break;
        n++;
        int stop = cb(&cmd, arg_);
        devices_cmd_clear(&cmd);
        if (stop) break;
    }
    freeReplyObject(r);
    return ret < 0 ? ret : n;
}

static int rq_orphans(devices_t *base, int64_t device_id, int64_t after, unsigned limit,
                      devices_orphan_cb cb, void *arg_)
{
    rq_t *q = (rq_t *)base;
    call_t c;
    call_init(q, &c, SC_ORPHANS, 0);
    arg_i(&c, device_id);
    arg_i(&c, after);
    arg_i(&c, limit);
    redisReply *r;
    int ret = call_run(q, SC_ORPHANS, &c, &r);
    if (ret < 0) return ret;
    int n = 0;
    for (size_t i = 0; i < r->elements; i++) {
        devices_rstr_t kv[HASH_MAX];
        devices_orphan_t o;
        int k = hash_kv(r->element[i], kv);
        ret = k < 0 ? k : devices_rorphan_decode(kv, (size_t)k, &o);
        if (ret < 0) {
            if (ret != -ENOMEM) {
                log_error("device queue: a malformed orphan in redis", NULL);
                ret = -EIO;
            }
            break;
        }
        n++;
        int stop = cb(&o, arg_);
        devices_orphan_clear(&o);
        if (stop) break;
    }
    freeReplyObject(r);
    return ret < 0 ? ret : n;
}

static int rq_depths(devices_t *base, int64_t after, unsigned limit, devices_depth_cb cb,
                     void *arg_)
{
    rq_t *q = (rq_t *)base;
    call_t c;
    call_init(q, &c, SC_DEPTHS, 0);
    arg_i(&c, after);
    arg_i(&c, limit);
    redisReply *r;
    int ret = call_run(q, SC_DEPTHS, &c, &r);
    if (ret < 0) return ret;
    int n = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        const redisReply *dev = e->type == REDIS_REPLY_ARRAY ? el(e, 0) : NULL;
        devices_depth_t d = {0};
        char id[24];
        if (!dev || dev->type != REDIS_REPLY_STRING || dev->len >= sizeof(id)) {
            ret = -EIO;
            break;
        }
        memcpy(id, dev->str, dev->len);
        id[dev->len] = '\0';
        if (device_id_parse(id, &d.device_id) < 0) {
            ret = -EIO;
            break;
        }
        d.queued = el_int(e, 1);
        d.sent = el_int(e, 2);
        n++;
        if (cb(&d, arg_)) break;
    }
    freeReplyObject(r);
    return ret < 0 ? ret : n;
}

static int rq_depth(devices_t *base, int64_t device_id, devices_depth_t *d)
{
    rq_t *q = (rq_t *)base;
    call_t c;
    call_init(q, &c, SC_DEPTH, 0);
    arg_i(&c, device_id);
    redisReply *r;
    int ret = call_run(q, SC_DEPTH, &c, &r);
    if (ret < 0) return ret;
    *d = (devices_depth_t){device_id, el_int(r, 0), el_int(r, 1)};
    freeReplyObject(r);
    return 0;
}

static int rq_sweep(devices_t *base, int64_t now)
{
    rq_t *q = (rq_t *)base;
    call_t c;
    call_init(q, &c, SC_SWEEP, now);
    arg_i(&c, SWEEP_BATCH);
    arg_i(&c, q->opts.retention_ms > 0 ? q->opts.retention_ms : 0);
    redisReply *r;
    int ret = call_run(q, SC_SWEEP, &c, &r);
    if (ret < 0) return ret;
    int64_t nq = el_int(r, 0), ns = el_int(r, 1);
    if (nq + ns > 0) METRICS_ADD(device_commands[DEVICES_EXPIRED], (uint64_t)(nq + ns));
    /* the cluster's gauges, as Redis has them now */
    set_gauges(el_int(r, 2), el_int(r, 3));
    freeReplyObject(r);
    return (int)(nq + ns);
}

static void rq_close(devices_t *base)
{
    rq_t *q = (rq_t *)base;
    for (int i = 0; i < q->n_pool; i++)
        redisFree(q->pool[i]);
    for (int i = 0; i < SC_COUNT; i++)
        free(q->src[i]);
    pthread_mutex_destroy(&q->mu);
    free(q->host);
    free(q->kprefix);
    free(q->channel);
    free(q->node);
    free(q);
}

static const devices_ops_t rq_ops = {
    .enqueue = rq_enqueue,
    .next = rq_next,
    .result = rq_result,
    .cancel = rq_cancel,
    .get = rq_get,
    .list = rq_list,
    .orphans = rq_orphans,
    .depths = rq_depths,
    .depth = rq_depth,
    .sweep = rq_sweep,
    .close = rq_close,
};

static char *join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    if (s) {
        memcpy(s, a, la);          // NOLINT(bugprone-not-null-terminated-result): b follows
        memcpy(s + la, b, lb + 1); // NOLINT(bugprone-not-null-terminated-result): with its NUL
    }
    return s;
}

/* The script's source and its SHA-1 (EVALSHA's name for it). Returns 0 or -ENOMEM. */
static int load_script(rq_t *q, int i)
{
    if (!(q->src[i] = join(prelude, script_body[i]))) return -ENOMEM;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(q->src[i], strlen(q->src[i]), md, &mdlen, EVP_sha1(), NULL) || mdlen != 20)
        return -ENOMEM;
    for (unsigned k = 0; k < mdlen; k++)
        snprintf(q->sha[i] + 2 * k, 3, "%02x", md[k]);
    return 0;
}

int devices_redis_open(devices_t **out, const devices_redis_cfg_t *cfg, const devices_opts_t *opts,
                       char *err, size_t errlen)
{
    rq_t *q = calloc(1, sizeof(*q));
    if (!q) goto nomem;
    q->base.ops = &rq_ops;
    q->opts = *opts;
    q->port = cfg->port;
    q->db = cfg->db;
    q->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : DEVICES_REDIS_TIMEOUT_MS;
    q->healthy = cfg->healthy;
    q->healthy_arg = cfg->healthy_arg;
    if (pthread_mutex_init(&q->mu, NULL) != 0) {
        free(q);
        goto nomem;
    }
    int ok = (q->host = strdup(cfg->host)) && (q->kprefix = join(cfg->prefix, "dev:")) &&
             (q->channel = join(cfg->prefix, "devices")) && (q->node = strdup(cfg->node_id));
    for (int i = 0; ok && i < SC_COUNT; i++)
        ok = load_script(q, i) == 0;
    if (!ok) {
        rq_close(&q->base);
        goto nomem;
    }
    /* the gauges, if Redis answers now (else the first sweep sets them) */
    call_t c;
    call_init(q, &c, SC_STATS, 0);
    redisReply *r;
    if (call_run(q, SC_STATS, &c, &r) == 0) {
        set_gauges(el_int(r, 0), el_int(r, 1));
        freeReplyObject(r);
    }
    log_info("device queue: redis", "redis=%s:%d db=%d keys=%s*", q->host, q->port, q->db,
             q->kprefix);
    *out = &q->base;
    return 0;
nomem:
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
}
