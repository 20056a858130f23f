/* The Idempotency-Key store in Redis (a cluster, store/idem.h): one hash per key,
 * "pushgate:<app>:idem:{<scope>}" = {fp, state pending|done, status, headers, body},
 * reserved and answered by small Lua scripts (atomic: two nodes cannot both reserve a
 * key), expiring by PEXPIRE (IDEM_PENDING_MS while pending, the TTL once answered).
 * Calls block the calling worker for one round trip on a pooled client (one Redis or
 * a Redis Cluster: cluster/redis_cluster.h) with a short timeout, as the device
 * queue's calls do (store/devices_redis.c). */
#include "store/idem.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/redis_cluster.h"
#include "core/log.h"

#define POOL_MAX 16
#define CONNECT_MS 200
#define TIMEOUT_MS 500

/* KEYS[1] the key; ARGV[1] fingerprint, [2] pending TTL ms. Returns {0} reserved, {1} pending,
 * {2, status, content type, headers, body} answered, {3} another request's key */
static const char begin_src[] =
    "local v = redis.call('HMGET', KEYS[1], 'fp', 'state', 'status', 'ctype', 'headers', "
    "'body')\n"
    "if not v[1] then\n"
    "  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'state', 'pending')\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "  return {0}\n"
    "end\n"
    "if v[1] ~= ARGV[1] then return {3} end\n"
    "if v[2] ~= 'done' then return {1} end\n"
    "return {2, v[3], v[4] or '', v[5] or '', v[6] or ''}\n";

/* KEYS[1] the key; ARGV[1] fingerprint, [2] TTL ms, [3] status, [4] content type,
 * [5] headers, [6] body. Returns
 * 1, or 0 when the key is no longer this attempt's (expired meanwhile) */
static const char finish_src[] =
    "if redis.call('HGET', KEYS[1], 'fp') ~= ARGV[1] then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'state', 'done', 'status', ARGV[3], 'ctype', ARGV[4], "
    "'headers', ARGV[5], 'body', ARGV[6])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "return 1\n";

/* KEYS[1] the key; ARGV[1] fingerprint, [2] pending TTL ms: the reservation was
 * answered, so it is held for the attempt's whole time. Returns 1, or 0 when it is not
 * ours */
static const char hold_src[] = "local v = redis.call('HMGET', KEYS[1], 'fp', 'state')\n"
                               "if v[1] ~= ARGV[1] or v[2] ~= 'pending' then return 0 end\n"
                               "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
                               "return 1\n";

/* KEYS[1] the key: released only while pending */
static const char forget_src[] =
    "if redis.call('HGET', KEYS[1], 'state') == 'pending' then redis.call('DEL', KEYS[1]) end\n"
    "return 1\n";

typedef struct rs_s {
    idem_t base;
    redis_target_t target;
    unsigned timeout_ms;
    char *prefix; /* "pushgate:<app>:idem:" */
    int (*healthy)(void *arg);
    void *healthy_arg;
    pthread_mutex_t mu;
    rcs_t *pool[POOL_MAX];
    int n_pool;
} rs_t;

static rcs_t *conn_take(rs_t *s)
{
    if (s->healthy && !s->healthy(s->healthy_arg)) return NULL;
    rcs_t *c = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->n_pool) c = s->pool[--s->n_pool];
    pthread_mutex_unlock(&s->mu);
    if (c) {
        rcs_check(c); /* drops the connections Redis closed */
        return c;
    }
    return rcs_new(&s->target, CONNECT_MS, s->timeout_ms);
}

static void conn_give(rs_t *s, rcs_t *c)
{
    pthread_mutex_lock(&s->mu);
    if (s->n_pool < POOL_MAX) {
        s->pool[s->n_pool++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    if (c) rcs_free(c);
}

/* EVAL src 1 argv[0] argv[1..]: the key is KEYS[1], so a Redis Cluster routes the
 * call to its slot. Returns 0 with the reply in *out (free it), -ENOTCONN (Redis
 * unreachable or the call cut off: outcome unknown), -EIO (refused). */
static int eval(rs_t *s, const char *src, int argc, const char **argv, const size_t *lens,
                redisReply **out)
{
    const char *a[10] = {"EVAL", src, "1"};
    size_t l[10] = {4, strlen(src), 1};
    for (int i = 0; i < argc && i < 7; i++) {
        a[3 + i] = argv[i];
        l[3 + i] = lens[i];
    }
    rcs_t *c = conn_take(s);
    if (!c) return -ENOTCONN;
    redisReply *r = rcs_command_argv(c, argv[0], lens[0], 3 + argc, a, l);
    if (!r) {
        log_warn("idempotency keys: redis call failed", "error=\"%s\"", rcs_errstr(c));
        rcs_free(c);
        return -ENOTCONN;
    }
    conn_give(s, c);
    if (r->type == REDIS_REPLY_ERROR) {
        log_error("idempotency keys: redis refused a call", "error=\"%s\"", r->str);
        freeReplyObject(r);
        return -EIO;
    }
    *out = r;
    return 0;
}

/* prefix + "{" scope "}" into a new string, or NULL: each key hashes by its scope, so
 * a Redis Cluster spreads them over its masters. */
static char *key_of(rs_t *s, const char *scope)
{
    size_t n = strlen(s->prefix) + strlen(scope) + 3;
    char *k = malloc(n);
    if (k) snprintf(k, n, "%s{%s}", s->prefix, scope);
    return k;
}

static int str_el(const redisReply *r, size_t i, char **out, size_t *len)
{
    const redisReply *e = i < r->elements ? r->element[i] : NULL;
    if (!e || e->type != REDIS_REPLY_STRING) return -EIO;
    *out = NULL;
    if (len) *len = e->len;
    if (!e->len) return 0;
    if (!(*out = malloc(e->len + 1))) return -ENOMEM;
    memcpy(*out, e->str, e->len);
    (*out)[e->len] = '\0';
    return 0;
}

static int rs_begin(idem_t *base, const char *scope, const char *fp, int64_t now,
                    idem_answer_t *out)
{
    (void)now;
    rs_t *s = (rs_t *)base;
    char *k = key_of(s, scope);
    if (!k) return -ENOMEM;
    /* A reservation starts with a short lease: when this call is cut off by a timeout
     * after Redis ran it, nobody acts on it and the retry finds the key free again
     * after IDEM_LEASE_MS. Once answered it is held for IDEM_PENDING_MS (hold_src). */
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%d", IDEM_LEASE_MS);
    const char *argv[3] = {k, fp, ttl};
    size_t lens[3] = {strlen(k), strlen(fp), strlen(ttl)};
    redisReply *r;
    int ret = eval(s, begin_src, 3, argv, lens, &r);
    if (ret < 0) {
        free(k);
        return ret;
    }
    if (r->type != REDIS_REPLY_ARRAY || !r->elements ||
        r->element[0]->type != REDIS_REPLY_INTEGER) {
        freeReplyObject(r);
        return -EIO;
    }
    ret = (int)r->element[0]->integer;
    if (ret == IDEM_DONE) {
        char *status = NULL;
        int e = str_el(r, 1, &status, NULL);
        if (!e) e = str_el(r, 2, &out->content_type, NULL);
        if (!e) e = str_el(r, 3, &out->headers, NULL);
        if (!e) e = str_el(r, 4, &out->body, &out->body_len);
        out->status = status ? (int)strtol(status, NULL, 10) : 0;
        free(status);
        if (!e && (out->status < 100 || out->status > 599)) e = -EIO;
        if (e) {
            idem_answer_clear(out);
            ret = e;
        }
    } else if (ret != IDEM_NEW && ret != IDEM_PENDING && ret != IDEM_MISMATCH) {
        ret = -EIO;
    }
    freeReplyObject(r);
    if (ret == IDEM_NEW) {
        snprintf(ttl, sizeof(ttl), "%d", IDEM_PENDING_MS);
        lens[2] = strlen(ttl);
        int h = eval(s, hold_src, 3, argv, lens, &r);
        if (h == 0) {
            h = r->type == REDIS_REPLY_INTEGER && r->integer == 1 ? 0 : -ENOTCONN;
            freeReplyObject(r);
        }
        if (h < 0) ret = h; /* the lease lapses by itself: nothing was done */
    }
    free(k);
    return ret;
}

static int rs_finish(idem_t *base, const char *scope, const char *fp, int64_t now,
                     const idem_answer_t *a)
{
    (void)now;
    rs_t *s = (rs_t *)base;
    char *k = key_of(s, scope);
    if (!k) return -ENOMEM;
    char ttl[24], st[16];
    snprintf(ttl, sizeof(ttl), "%lld", (long long)base->ttl_ms);
    snprintf(st, sizeof(st), "%d", a->status);
    const char *h = a->headers ? a->headers : "";
    const char *ct = a->content_type ? a->content_type : "";
    const char *argv[7] = {k, fp, ttl, st, ct, h, a->body ? a->body : ""};
    size_t lens[7] = {strlen(k),
                      strlen(fp),
                      strlen(ttl),
                      strlen(st),
                      strlen(ct),
                      strlen(h),
                      a->body ? a->body_len : 0};
    redisReply *r;
    int ret = eval(s, finish_src, 7, argv, lens, &r);
    free(k);
    if (ret == 0) freeReplyObject(r);
    return ret;
}

static void rs_forget(idem_t *base, const char *scope)
{
    rs_t *s = (rs_t *)base;
    char *k = key_of(s, scope);
    if (!k) return;
    const char *argv[1] = {k};
    size_t lens[1] = {strlen(k)};
    redisReply *r;
    /* when this fails the key is released by its pending TTL */
    if (eval(s, forget_src, 1, argv, lens, &r) == 0) freeReplyObject(r);
    free(k);
}

static void rs_free(idem_t *base)
{
    rs_t *s = (rs_t *)base;
    for (int i = 0; i < s->n_pool; i++)
        rcs_free(s->pool[i]);
    pthread_mutex_destroy(&s->mu);
    free(s->prefix);
    free(s);
}

static const idem_ops_t rs_ops = {
    .begin = rs_begin,
    .finish = rs_finish,
    .forget = rs_forget,
    .free = rs_free,
};

idem_t *idem_redis_new(const idem_redis_cfg_t *cfg, int64_t ttl_ms)
{
    rs_t *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s);
        return NULL;
    }
    s->base = (idem_t){.ops = &rs_ops, .ttl_ms = ttl_ms};
    s->target = *cfg->target;
    s->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : TIMEOUT_MS;
    s->healthy = cfg->healthy;
    s->healthy_arg = cfg->healthy_arg;
    size_t pl = strlen(cfg->prefix);
    s->prefix = malloc(pl + sizeof("idem:"));
    if (!s->prefix) {
        rs_free(&s->base);
        return NULL;
    }
    memcpy(s->prefix, cfg->prefix, pl);
    memcpy(s->prefix + pl, "idem:", sizeof("idem:"));
    return &s->base;
}
