/* The device command queue in Redis (store/devices_redis.h): one Lua script per call,
 * run with EVALSHA (EVAL when Redis does not know it yet) on a blocking client taken
 * from a small pool, with a short timeout. The client (cluster/redis_cluster.h) talks
 * to one Redis or to a Redis Cluster.
 *
 * Devices are spread over DEVICES_REDIS_BUCKETS buckets (the device id modulo the
 * count); every key of a bucket shares one hash tag, so each script runs on one slot
 * of a Redis Cluster, and every key a script touches is named in its KEYS (never built
 * inside it). Keys, under B = "{pushgate:<app>:dev:<bucket>}:" (docs/cluster.md):
 *   B q:{dev}     list: the device's unfinished command ids, oldest first; only the
 *                 head can be sent (one in flight, in order)
 *   B all:{dev}   zset: every command id of the device (score: the id)
 *   B dexp:{dev}  zset: the device's unfinished commands with a TTL, by expiresAt
 *   B orph:{dev}  zset: the device's orphan ids (score: the id)
 *   B cmd         hash: command id -> the command (a MessagePack array of field, value
 *                 strings: store/devices_rcodec.h's fields)
 *   B orec        hash: orphan id -> the orphan result (the same encoding)
 *   B exp         zset: the bucket's unfinished commands with a TTL, by when they expire
 *   B sent        zset: commands in flight, by redelivery deadline
 *   B devs        zset: devices with unfinished commands, in device id order (by
 *                 lexical order of a fixed-width encoding, then the id)
 *   B done        zset: finished commands by completedAt (retention)
 *   B orphans     zset: orphan ids by receivedAt (retention)
 *   B stats       hash: queued (the bucket's queued commands)
 *   B idem:{scope} hash: an enqueue's Idempotency-Key {fp, id}, PEXPIRE its TTL (a
 *                 15th key, given to the enqueue script only)
 *   B id, B oid   counters (INCR) of command and orphan ids: an id is counter *
 *                 DEVICES_REDIS_BUCKETS + bucket, unique over the buckets
 * The sweep works bucket by bucket, then device by device (a script may only touch
 * the device whose keys it was given). Device ids stay strings inside the scripts (Lua
 * numbers are doubles); times and command ids are well within a double's integers. */
#include "store/devices_redis.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/redis_cluster.h"
#include "core/log.h"
#include "core/metrics.h"
#include "store/devices_rcodec.h"

#define POOL_MAX 64
#define ARGS_MAX 40
#define HASH_MAX 48 /* most entries of a command hash (fields and values) */
#define SWEEP_BATCH 2000

/* ---- the scripts ---- */

enum key_id {
    K_Q,
    K_ALL,
    K_DEXP,
    K_ORPH,
    K_CMD,
    K_OREC,
    K_EXP,
    K_SENT,
    K_DEVS,
    K_DONE,
    K_ORPHANS,
    K_STATS,
    K_ID,
    K_OID,
    K_COUNT
};

static const char *const key_name[K_COUNT] = {"q:",      "all:",  "dexp:", "orph:", "cmd",
                                              "orec",    "exp",   "sent",  "devs",  "done",
                                              "orphans", "stats", "id",    "oid"};

/* Every script starts with this: KEYS are the key_id list (the device's keys name
 * ARGV[6]'s device, or "-" in the bucket-wide scripts); ARGV[1..5] are the bucket, now,
 * the redelivery timeout, the wake-up channel and this node's id; its own from
 * ARGV[6]. */
static const char prelude[] =
    "local B, NOW, RD, CH, NODE = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), "
    "ARGV[4], ARGV[5]\n"
    "local KQ, KA, KX, KO, KC, KR, KE, KS, KV, KD, KN, KT, KI, KJ = unpack(KEYS)\n"
    "local DEV = ARGV[6]\n"
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
    /* records: a hash field holding a packed array of field, value strings */
    "local function rget(h, id)\n"
    "  local v = redis.call('HGET', h, id)\n"
    "  if not v then return nil end\n"
    "  return cmsgpack.unpack(v)\n"
    "end\n"
    "local function rput(h, id, t) redis.call('HSET', h, id, cmsgpack.pack(t)) end\n"
    "local function fget(t, k)\n"
    "  for i = 1, #t, 2 do if t[i] == k then return t[i + 1] end end\n"
    "  return nil\n"
    "end\n"
    "local function fset(t, k, v)\n"
    "  for i = 1, #t, 2 do if t[i] == k then t[i + 1] = v; return end end\n"
    "  t[#t + 1] = k; t[#t + 1] = v\n"
    "end\n"
    "local function newid(k) return D(redis.call('INCR', k) * 16 + B) end\n"
    /* a command of DEV leaves the unfinished ones: queued or sent -> st at time at */
    "local function finish(id, t, st, at)\n"
    "  local old = fget(t, 'status')\n"
    "  fset(t, 'status', st); fset(t, 'completedAt', D(at)); rput(KC, id, t)\n"
    "  redis.call('LREM', KQ, 1, id)\n"
    "  redis.call('ZREM', KX, id)\n"
    "  redis.call('ZREM', KE, id)\n"
    "  if old == 'sent' then redis.call('ZREM', KS, id)\n"
    "  else redis.call('HINCRBY', KT, 'queued', -1) end\n"
    "  if redis.call('EXISTS', KQ) == 0 then redis.call('ZREM', KV, lex(DEV) .. DEV) end\n"
    "  redis.call('ZADD', KD, D(at), id)\n"
    "end\n"
    /* expires one command of DEV if it is due: a queued one past its TTL, a sent one
     * past its TTL and due for redelivery (a result may still come until then). Returns
     * true when it is no longer unfinished-with-a-TTL, else false and when it will */
    "local EXP = {0, 0}\n"
    "local function expire_one(id)\n"
    "  local t = rget(KC, id)\n"
    "  local st = t and fget(t, 'status')\n"
    "  if st == 'queued' then\n"
    "    finish(id, t, 'expired', tonumber(fget(t, 'expiresAt'))); EXP[1] = EXP[1] + 1\n"
    "    return true\n"
    "  elseif st == 'sent' then\n"
    "    local due, ex = tonumber(fget(t, 'sentAt')) + RD, tonumber(fget(t, 'expiresAt'))\n"
    "    if due > NOW then return false, math.max(due, ex) end\n"
    "    finish(id, t, 'expired', math.max(ex, due)); EXP[2] = EXP[2] + 1\n"
    "    return true\n"
    "  end\n"
    "  redis.call('ZREM', KE, id)\n"
    "  redis.call('ZREM', KX, id)\n"
    "  return true\n"
    "end\n"
    /* a sent command past its TTL, not yet due: the sweep looks again when it is */
    "local function expire_device()\n"
    "  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KX, '-inf', D(NOW))) do\n"
    "    local gone, at = expire_one(id)\n"
    "    if not gone then redis.call('ZADD', KE, D(at), id) end\n"
    "  end\n"
    "end\n"
    /* DEV's unfinished commands: queued, sent */
    "local function depth()\n"
    "  local n = redis.call('LLEN', KQ)\n"
    "  if n == 0 then return 0, 0 end\n"
    "  local t = rget(KC, redis.call('LINDEX', KQ, 0))\n"
    "  if t and fget(t, 'status') == 'sent' then return n - 1, 1 end\n"
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
    SC_EXPIRE,
    SC_STATS,
    SC_COUNT
};

static const char *const script_body[SC_COUNT] = {
    /* ARGV[6] device, [7] max queue, [8] expiresAt (0: never), [9] "1" when KEYS[15]
     * is an Idempotency-Key, [10] its fingerprint, [11] its TTL ms, [12…] field, value
     * pairs. Returns {id or -1 (full) or -2 (the key is another request's), expired
     * queued, expired sent, 1 when the id is the key's earlier command}. The key is
     * checked and written here, with the command, so a call cut off by a timeout after
     * Redis ran it is found by its retry */
    [SC_ENQUEUE] = "local maxq, expires = tonumber(ARGV[7]), tonumber(ARGV[8])\n"
                   "local ik = ARGV[9] == '1' and KEYS[15] or nil\n"
                   "if ik then\n"
                   "  local v = redis.call('HMGET', ik, 'fp', 'id')\n"
                   "  if v[1] then\n"
                   "    if v[1] ~= ARGV[10] then return {-2, 0, 0, 0} end\n"
                   "    return {tonumber(v[2]), 0, 0, 1}\n"
                   "  end\n"
                   "end\n"
                   "expire_device()\n"
                   "if redis.call('LLEN', KQ) >= maxq then return {-1, EXP[1], EXP[2], 0} end\n"
                   "local id = newid(KI)\n"
                   "local h = {'id', id, 'device', DEV, 'status', 'queued', 'attempts', '0', "
                   "'createdAt', D(NOW)}\n"
                   "for i = 12, #ARGV do h[#h + 1] = ARGV[i] end\n"
                   "if expires > 0 then\n"
                   "  h[#h + 1] = 'expiresAt'; h[#h + 1] = D(expires)\n"
                   "  redis.call('ZADD', KX, D(expires), id)\n"
                   "  redis.call('ZADD', KE, D(expires), id)\n"
                   "end\n"
                   "rput(KC, id, h)\n"
                   "redis.call('RPUSH', KQ, id)\n"
                   "redis.call('ZADD', KA, id, id)\n"
                   "redis.call('ZADD', KV, 0, lex(DEV) .. DEV)\n"
                   "redis.call('HINCRBY', KT, 'queued', 1)\n"
                   "if ik then\n"
                   "  redis.call('HSET', ik, 'fp', ARGV[10], 'id', id)\n"
                   "  redis.call('PEXPIRE', ik, ARGV[11])\n"
                   "end\n"
                   "wake('p' .. DEV); publish()\n"
                   "return {tonumber(id), EXP[1], EXP[2], 0}\n",
    /* ARGV[6] device. Returns {delivered 0/1, expired queued, expired sent,
     * redelivery 0/1, the command} */
    [SC_NEXT] = "expire_device()\n"
                "local id = redis.call('LINDEX', KQ, 0)\n"
                "if not id then return {0, EXP[1], EXP[2], 0} end\n"
                "local t = rget(KC, id)\n"
                "local st = t and fget(t, 'status')\n"
                "local re = 0\n"
                "if st == 'sent' then\n"
                "  if NOW - tonumber(fget(t, 'sentAt')) < RD then return {0, EXP[1], EXP[2], 0} "
                "end\n"
                "  re = 1\n"
                "elseif st ~= 'queued' then\n"
                "  redis.call('LREM', KQ, 1, id)\n" /* not unfinished: cannot happen */
                "  return {0, EXP[1], EXP[2], 0}\n"
                "else\n"
                "  redis.call('HINCRBY', KT, 'queued', -1)\n"
                "end\n"
                "fset(t, 'status', 'sent'); fset(t, 'sentAt', D(NOW))\n"
                "fset(t, 'attempts', D(tonumber(fget(t, 'attempts') or '0') + 1))\n"
                "rput(KC, id, t)\n"
                "redis.call('ZADD', KS, D(NOW + RD), id)\n"
                "return {1, EXP[1], EXP[2], re, t}\n",
    /* ARGV[6] device, [7] failed 0/1, [8] has response, [9] response, [10] has error,
     * [11] error. Returns {1 (closed) or 0 (orphan), the command's or orphan's id} */
    [SC_RESULT] = "local id = redis.call('LINDEX', KQ, 0)\n"
                  "local t = id and rget(KC, id)\n"
                  "if t and fget(t, 'status') == 'sent' then\n"
                  "  if ARGV[8] == '1' then fset(t, 'response', ARGV[9]) end\n"
                  "  if ARGV[10] == '1' then fset(t, 'error', ARGV[11]) end\n"
                  "  local st = 'done'\n"
                  "  if ARGV[7] == '1' then st = 'failed' end\n"
                  "  finish(id, t, st, NOW)\n"
                  "  wake('r' .. id); wake('p' .. DEV); publish()\n"
                  "  return {1, tonumber(id)}\n"
                  "end\n"
                  "local oid = newid(KJ)\n"
                  "local o = {'id', oid, 'device', DEV, 'receivedAt', D(NOW)}\n"
                  "if ARGV[8] == '1' then fset(o, 'response', ARGV[9]) end\n"
                  "if ARGV[10] == '1' then fset(o, 'error', ARGV[11]) end\n"
                  "rput(KR, oid, o)\n"
                  "redis.call('ZADD', KO, oid, oid)\n"
                  "redis.call('ZADD', KN, D(NOW), oid)\n"
                  "return {0, tonumber(oid)}\n",
    /* ARGV[6] device, [7] command id. Returns {1 (cancelled), 0 (not queued), -1 (no
     * such command of the device); expired queued, expired sent; the status} */
    [SC_CANCEL] = "local id = ARGV[7]\n"
                  "expire_device()\n"
                  "local t = rget(KC, id)\n"
                  "if not t or fget(t, 'device') ~= DEV then return {-1, EXP[1], EXP[2]} end\n"
                  "local st = fget(t, 'status')\n"
                  "if st ~= 'queued' then return {0, EXP[1], EXP[2], st} end\n"
                  "finish(id, t, 'cancelled', NOW)\n"
                  "wake('r' .. id); publish()\n"
                  "return {1, EXP[1], EXP[2]}\n",
    /* ARGV[6] device, [7] command id. Returns {expired queued, expired sent, the
     * command (absent: no such command of the device)} */
    [SC_GET] = "expire_device()\n"
               "local t = rget(KC, ARGV[7])\n"
               "if not t or fget(t, 'device') ~= DEV then return {EXP[1], EXP[2]} end\n"
               "return {EXP[1], EXP[2], t}\n",
    /* ARGV[6] device, [7] statuses ("a,b"; "": any), [8] after, [9] limit. Returns
     * {expired queued, expired sent, command…}. Only unfinished statuses wanted: the
     * queue list; else every command of the device; 256 ids at a time */
    [SC_LIST] = "local after, limit = tonumber(ARGV[8]), tonumber(ARGV[9])\n"
                "expire_device()\n"
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
                "  local h = rget(KC, id)\n"
                "  if not h then return end\n"
                "  if want and not want[fget(h, 'status')] then return end\n"
                "  out[#out + 1] = h; n = n + 1\n"
                "end\n"
                "if limit == 0 then return out end\n"
                "if open_only then\n"
                "  local i = 0\n"
                "  while n < limit do\n"
                "    local ids = redis.call('LRANGE', KQ, i, i + 255)\n"
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
                "  local ids = redis.call('ZRANGEBYSCORE', KA, from, '+inf', 'LIMIT', 0, 256)\n"
                "  if #ids == 0 then break end\n"
                "  for _, id in ipairs(ids) do\n"
                "    take(id)\n"
                "    if n >= limit then break end\n"
                "  end\n"
                "  from = '(' .. ids[#ids]\n"
                "end\n"
                "return out\n",
    /* ARGV[6] device, [7] after, [8] limit. Returns {orphan…} */
    [SC_ORPHANS] = "local ids = redis.call('ZRANGEBYSCORE', KO, '(' .. ARGV[7], '+inf', 'LIMIT', "
                   "0, tonumber(ARGV[8]))\n"
                   "local out = {}\n"
                   "for _, id in ipairs(ids) do\n"
                   "  local h = rget(KR, id)\n"
                   "  if h then out[#out + 1] = h end\n"
                   "end\n"
                   "return out\n",
    /* bucket-wide: ARGV[6] after (a device id), [7] limit. Returns {device…}: the
     * bucket's devices with unfinished commands after it, in order */
    [SC_DEPTHS] = "local ms = redis.call('ZRANGEBYLEX', KV, '(' .. lex(ARGV[6]) .. ARGV[6], '+', "
                  "'LIMIT', 0, tonumber(ARGV[7]))\n"
                  "local out = {}\n"
                  "for _, m in ipairs(ms) do out[#out + 1] = string.sub(m, 21) end\n"
                  "return out\n",
    /* ARGV[6] device. Returns {queued, sent} */
    [SC_DEPTH] = "local nq, ns = depth()\n"
                 "return {nq, ns}\n",
    /* bucket-wide: ARGV[6] most commands (and orphans) to look at or prune, [7]
     * retention ms (0: keep). Returns {queued, sent, {device with commands due to
     * expire…}, {device, pruned command id…}, {device, pruned orphan id…}}: the
     * caller expires the devices' commands and drops the pruned ids from the devices'
     * indexes */
    [SC_SWEEP] = "local batch, ret = tonumber(ARGV[6]), tonumber(ARGV[7])\n"
                 "local devs, seen = {}, {}\n"
                 "for _, id in ipairs(redis.call('ZRANGEBYSCORE', KE, '-inf', D(NOW), 'LIMIT', "
                 "0, batch)) do\n"
                 "  local t = rget(KC, id)\n"
                 "  local dev = t and fget(t, 'device')\n"
                 "  if not dev then redis.call('ZREM', KE, id)\n"
                 "  elseif not seen[dev] then seen[dev] = true; devs[#devs + 1] = dev end\n"
                 "end\n"
                 "local pc, po = {}, {}\n"
                 "if ret > 0 then\n"
                 "  local cut = '(' .. D(NOW - ret)\n"
                 "  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KD, '-inf', cut, 'LIMIT', 0, "
                 "batch)) do\n"
                 "    local t = rget(KC, id)\n"
                 "    redis.call('HDEL', KC, id)\n"
                 "    redis.call('ZREM', KD, id)\n"
                 "    if t then pc[#pc + 1] = fget(t, 'device'); pc[#pc + 1] = id end\n"
                 "  end\n"
                 "  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KN, '-inf', cut, 'LIMIT', 0, "
                 "batch)) do\n"
                 "    local t = rget(KR, id)\n"
                 "    redis.call('HDEL', KR, id)\n"
                 "    redis.call('ZREM', KN, id)\n"
                 "    if t then po[#po + 1] = fget(t, 'device'); po[#po + 1] = id end\n"
                 "  end\n"
                 "end\n"
                 "local nq = tonumber(redis.call('HGET', KT, 'queued') or '0')\n"
                 "return {nq, redis.call('ZCARD', KS), devs, pc, po}\n",
    /* ARGV[6] device. Returns {expired queued, expired sent} */
    [SC_EXPIRE] = "expire_device()\n"
                  "return {EXP[1], EXP[2]}\n",
    /* bucket-wide. Returns {queued, sent} of the bucket */
    [SC_STATS] = "local nq = tonumber(redis.call('HGET', KT, 'queued') or '0')\n"
                 "return {nq, redis.call('ZCARD', KS)}\n",
};

static const char *const script_name[SC_COUNT] = {"enqueue", "next",  "result",  "cancel",
                                                  "get",     "list",  "orphans", "depths",
                                                  "depth",   "sweep", "expire",  "stats"};

/* ---- the queue ---- */

typedef struct rq_s {
    devices_t base;
    devices_opts_t opts;
    redis_target_t target;
    unsigned timeout_ms;
    char *kprefix; /* "pushgate:<app>:dev:" (the buckets' hash tags: "{" kprefix "<b>}:") */
    char *channel; /* "pushgate:{app}:devices" */
    char *node;
    int (*healthy)(void *arg);
    void *healthy_arg;
    char *src[SC_COUNT]; /* prelude + body */
    char sha[SC_COUNT][41];
    pthread_mutex_t mu; /* the pool */
    rcs_t *pool[POOL_MAX];
    int n_pool;
} rq_t;

static const devices_ops_t rq_ops;

/* ---- connections ---- */

/* A client for one call: an idle one, or a new one. NULL while Redis is down. */
static rcs_t *conn_take(rq_t *q)
{
    if (q->healthy && !q->healthy(q->healthy_arg)) return NULL;
    rcs_t *c = NULL;
    pthread_mutex_lock(&q->mu);
    if (q->n_pool) c = q->pool[--q->n_pool];
    pthread_mutex_unlock(&q->mu);
    if (c) {
        rcs_check(c); /* drops the connections Redis closed (restarted, or killed) */
        return c;
    }
    return rcs_new(&q->target, DEVICES_REDIS_CONNECT_MS, q->timeout_ms);
}

static void conn_give(rq_t *q, rcs_t *c)
{
    pthread_mutex_lock(&q->mu);
    if (q->n_pool < POOL_MAX) {
        q->pool[q->n_pool++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&q->mu);
    rcs_free(c);
}

/* ---- calls ---- */

typedef struct call_s {
    const char *argv[ARGS_MAX];
    size_t len[ARGS_MAX];
    int argc;
    char nums[8][24];
    int n_nums;
    char keys[K_COUNT][192];
    char idem_key[448]; /* KEYS[15] of an enqueue with an Idempotency-Key */
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

/* The bucket of a device. Returns 0 to DEVICES_REDIS_BUCKETS - 1. */
static int bucket_of(int64_t device_id)
{
    return (int)((uint64_t)device_id % DEVICES_REDIS_BUCKETS);
}

/* The first arguments of every script (see prelude): the keys of the device (dev,
 * or "-" for a bucket-wide script) in bucket b, then ARGV[1..5]. */
static void call_init_bk(rq_t *q, call_t *c, int script, int64_t now, int b, const char *dev,
                         const char *idem_scope)
{
    c->argc = c->n_nums = 0;
    arg_s(c, "EVALSHA");
    arg_s(c, q->sha[script]);
    arg_s(c, idem_scope ? "15" : "14");
    for (int k = 0; k < K_COUNT; k++) {
        int n = snprintf(c->keys[k], sizeof(c->keys[k]), "{%s%d}:%s%s", q->kprefix, b, key_name[k],
                         k <= K_ORPH ? dev : "");
        arg(c, c->keys[k], n < (int)sizeof(c->keys[k]) ? (size_t)n : sizeof(c->keys[k]) - 1);
    }
    if (idem_scope) {
        /* in the device's bucket: the script checks it together with the queue */
        int n =
            snprintf(c->idem_key, sizeof(c->idem_key), "{%s%d}:idem:%s", q->kprefix, b, idem_scope);
        arg(c, c->idem_key, n < (int)sizeof(c->idem_key) ? (size_t)n : sizeof(c->idem_key) - 1);
    }
    arg_i(c, b);
    arg_i(c, now);
    arg_i(c, q->opts.redelivery_ms);
    arg_s(c, q->channel);
    arg_s(c, q->node);
}

static void call_init_b(rq_t *q, call_t *c, int script, int64_t now, int b, const char *dev)
{
    call_init_bk(q, c, script, now, b, dev, NULL);
}

/* call_init_b for a device's script: its bucket and keys, and the device as ARGV[6]. */
static void call_dev_k(rq_t *q, call_t *c, int script, int64_t now, int64_t device_id,
                       const char *idem_scope)
{
    char dev[24];
    snprintf(dev, sizeof(dev), "%lld", (long long)device_id);
    call_init_bk(q, c, script, now, bucket_of(device_id), dev, idem_scope);
    arg_i(c, device_id);
}

static void call_dev(rq_t *q, call_t *c, int script, int64_t now, int64_t device_id)
{
    call_dev_k(q, c, script, now, device_id, NULL);
}

/* Runs the script. Returns 0 with the reply in *out (free it), -ENOTCONN (Redis
 * unreachable, or the connection failed mid-call: the outcome is unknown), -EIO (Redis
 * refused it). */
static int call_run(rq_t *q, int script, call_t *c, redisReply **out)
{
    rcs_t *ctx = conn_take(q);
    if (!ctx) return -ENOTCONN;
    /* routed by the first key: every key of the call has its hash tag */
    const char *key = c->argv[3];
    size_t keylen = c->len[3];
    redisReply *r = rcs_command_argv(ctx, key, keylen, c->argc, c->argv, c->len);
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        /* a Redis that restarted, or first use: send the source (Redis caches it) */
        freeReplyObject(r);
        c->argv[0] = "EVAL";
        c->len[0] = 4;
        c->argv[1] = q->src[script];
        c->len[1] = strlen(q->src[script]);
        r = rcs_command_argv(ctx, key, keylen, c->argc, c->argv, c->len);
    }
    if (!r) {
        log_warn("device queue: redis call failed", "script=%s error=\"%s\"", script_name[script],
                 rcs_errstr(ctx));
        rcs_free(ctx);
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
    call_dev_k(q, &c, SC_ENQUEUE, now, device_id, idem ? idem->scope : NULL);
    arg_i(&c, q->opts.max_queue);
    arg_i(&c, expires_at > 0 ? expires_at : 0);
    arg_s(&c, idem ? "1" : "0");
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
    call_dev(q, &c, SC_NEXT, now, device_id);
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
    call_dev(q, &c, SC_RESULT, now, device_id);
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
    call_dev(q, &c, SC_CANCEL, now, device_id);
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
    call_dev(q, &c, SC_GET, now, device_id);
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
    call_dev(q, &c, SC_LIST, now, device_id);
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
    call_dev(q, &c, SC_ORPHANS, 0, device_id);
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

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int rq_depth(devices_t *base, int64_t device_id, devices_depth_t *d);

/* Each bucket's devices after `after` (at most limit each), merged in device order;
 * the first limit of them with their depths. */
static int rq_depths(devices_t *base, int64_t after, unsigned limit, devices_depth_cb cb,
                     void *arg_)
{
    rq_t *q = (rq_t *)base;
    if (limit == 0) return 0;
    int64_t *ids = malloc((size_t)limit * DEVICES_REDIS_BUCKETS * sizeof(*ids));
    if (!ids) return -ENOMEM;
    size_t n_ids = 0;
    int ret = 0;
    for (int b = 0; b < DEVICES_REDIS_BUCKETS && ret == 0; b++) {
        call_t c;
        call_init_b(q, &c, SC_DEPTHS, 0, b, "-");
        arg_i(&c, after);
        arg_i(&c, limit);
        redisReply *r;
        if ((ret = call_run(q, SC_DEPTHS, &c, &r)) < 0) break;
        for (size_t i = 0; i < r->elements && i < limit; i++) {
            const redisReply *dev = r->element[i];
            char id[24];
            if (dev->type != REDIS_REPLY_STRING || dev->len >= sizeof(id)) {
                ret = -EIO;
                break;
            }
            memcpy(id, dev->str, dev->len);
            id[dev->len] = '\0';
            if (device_id_parse(id, &ids[n_ids]) < 0) {
                ret = -EIO;
                break;
            }
            n_ids++;
        }
        freeReplyObject(r);
    }
    int n = 0;
    if (ret == 0) qsort(ids, n_ids, sizeof(*ids), cmp_i64);
    for (size_t i = 0; ret == 0 && i < n_ids && (unsigned)n < limit; i++) {
        devices_depth_t d;
        if ((ret = rq_depth(base, ids[i], &d)) < 0) break;
        if (d.queued + d.sent == 0) continue; /* finished since the bucket said so */
        n++;
        if (cb(&d, arg_)) break;
    }
    free(ids);
    return ret < 0 ? ret : n;
}

static int rq_depth(devices_t *base, int64_t device_id, devices_depth_t *d)
{
    rq_t *q = (rq_t *)base;
    call_t c;
    call_dev(q, &c, SC_DEPTH, 0, device_id);
    redisReply *r;
    int ret = call_run(q, SC_DEPTH, &c, &r);
    if (ret < 0) return ret;
    *d = (devices_depth_t){device_id, el_int(r, 0), el_int(r, 1)};
    freeReplyObject(r);
    return 0;
}

/* Drops pruned ids from the devices' indexes (key K_ALL or K_ORPH of bucket b): pairs
 * is {device, id, device, id…}. A list or orphan call skips ids whose record is gone,
 * so this need not be atomic with the pruning. */
static void unindex(rq_t *q, int b, int k, const redisReply *pairs)
{
    if (!pairs || pairs->type != REDIS_REPLY_ARRAY) return;
    rcs_t *ctx = NULL;
    for (size_t i = 0; i + 1 < pairs->elements; i += 2) {
        const redisReply *dev = pairs->element[i], *id = pairs->element[i + 1];
        if (dev->type != REDIS_REPLY_STRING || id->type != REDIS_REPLY_STRING) continue;
        if (!ctx && !(ctx = conn_take(q))) return;
        char key[256];
        int kl = snprintf(key, sizeof(key), "{%s%d}:%s%s", q->kprefix, b, key_name[k], dev->str);
        if (kl < 0 || kl >= (int)sizeof(key)) continue;
        const char *argv[3] = {"ZREM", key, id->str};
        size_t lens[3] = {4, (size_t)kl, id->len};
        redisReply *r = rcs_command_argv(ctx, key, (size_t)kl, 3, argv, lens);
        if (!r) {
            rcs_free(ctx);
            return;
        }
        freeReplyObject(r);
    }
    if (ctx) conn_give(q, ctx);
}

/* Bucket by bucket: what is due to expire (then device by device) and what is past
 * its retention. */
static int rq_sweep(devices_t *base, int64_t now)
{
    rq_t *q = (rq_t *)base;
    int64_t nq = 0, ns = 0, gq = 0, gs = 0;
    int ret = 0;
    for (int b = 0; b < DEVICES_REDIS_BUCKETS; b++) {
        call_t c;
        call_init_b(q, &c, SC_SWEEP, now, b, "-");
        arg_i(&c, SWEEP_BATCH);
        arg_i(&c, q->opts.retention_ms > 0 ? q->opts.retention_ms : 0);
        redisReply *r;
        if ((ret = call_run(q, SC_SWEEP, &c, &r)) < 0) return ret;
        gq += el_int(r, 0);
        gs += el_int(r, 1);
        const redisReply *devs = el(r, 2);
        for (size_t i = 0; devs && devs->type == REDIS_REPLY_ARRAY && i < devs->elements; i++) {
            int64_t dev;
            if (devs->element[i]->type != REDIS_REPLY_STRING ||
                device_id_parse(devs->element[i]->str, &dev) < 0)
                continue;
            call_t e;
            call_dev(q, &e, SC_EXPIRE, now, dev);
            redisReply *x;
            if (call_run(q, SC_EXPIRE, &e, &x) < 0) continue;
            nq += el_int(x, 0);
            ns += el_int(x, 1);
            freeReplyObject(x);
        }
        unindex(q, b, K_ALL, el(r, 3));
        unindex(q, b, K_ORPH, el(r, 4));
        freeReplyObject(r);
    }
    if (nq + ns > 0) METRICS_ADD(device_commands[DEVICES_EXPIRED], (uint64_t)(nq + ns));
    /* the cluster's gauges, as Redis has them now */
    set_gauges(gq - nq, gs - ns);
    return (int)(nq + ns);
}

static void rq_close(devices_t *base)
{
    rq_t *q = (rq_t *)base;
    for (int i = 0; i < q->n_pool; i++)
        rcs_free(q->pool[i]);
    for (int i = 0; i < SC_COUNT; i++)
        free(q->src[i]);
    pthread_mutex_destroy(&q->mu);
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
    if (cfg->target) {
        q->target = *cfg->target;
    } else {
        snprintf(q->target.seed[0].host, sizeof(q->target.seed[0].host), "%s", cfg->host);
        q->target.seed[0].port = cfg->port;
        q->target.n_seeds = 1;
        q->target.db = cfg->db;
    }
    q->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : DEVICES_REDIS_TIMEOUT_MS;
    q->healthy = cfg->healthy;
    q->healthy_arg = cfg->healthy_arg;
    if (pthread_mutex_init(&q->mu, NULL) != 0) {
        free(q);
        goto nomem;
    }
    int ok = (q->kprefix = join(cfg->prefix, "dev:")) &&
             (q->channel = join(cfg->prefix, "devices")) && (q->node = strdup(cfg->node_id));
    for (int i = 0; ok && i < SC_COUNT; i++)
        ok = load_script(q, i) == 0;
    if (!ok) {
        rq_close(&q->base);
        goto nomem;
    }
    /* the gauges, if Redis answers now (else the first sweep sets them) */
    int64_t nq = 0, ns = 0;
    int b;
    for (b = 0; b < DEVICES_REDIS_BUCKETS; b++) {
        call_t c;
        call_init_b(q, &c, SC_STATS, 0, b, "-");
        redisReply *r;
        if (call_run(q, SC_STATS, &c, &r) < 0) break;
        nq += el_int(r, 0);
        ns += el_int(r, 1);
        freeReplyObject(r);
    }
    if (b == DEVICES_REDIS_BUCKETS) set_gauges(nq, ns);
    char where[300];
    redis_target_describe(&q->target, where, sizeof(where));
    log_info("device queue: redis", "redis=%s db=%d keys={%s*}", where, q->target.db, q->kprefix);
    *out = &q->base;
    return 0;
nomem:
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
}
