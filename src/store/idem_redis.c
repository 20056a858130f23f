/* The Idempotency-Key store in Redis (a cluster, store/idem.h): one hash per key,
 * "pushgate:{app}:idem:<scope>" = {fp, state pending|done, status, headers, body},
 * reserved and answered by small Lua scripts (atomic: two nodes cannot both reserve a
 * key), expiring by PEXPIRE (IDEM_PENDING_MS while pending, the TTL once answered).
 * Calls block the calling worker for one round trip on a pooled connection with a
 * short timeout, as the device queue's calls do (store/devices_redis.c). */
#include "store/idem.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define POOL_MAX 16
#define CONNECT_MS 200
#define TIMEOUT_MS 500

/* ARGV[1] key, [2] fingerprint, [3] pending TTL ms. Returns {0} reserved, {1} pending,
 * {2, status, content type, headers, body} answered, {3} another request's key */
static const char begin_src[] =
    "local v = redis.call('HMGET', ARGV[1], 'fp', 'state', 'status', 'ctype', 'headers', "
    "'body')\n"
    "if not v[1] then\n"
    "  redis.call('HSET', ARGV[1], 'fp', ARGV[2], 'state', 'pending')\n"
    "  redis.call('PEXPIRE', ARGV[1], ARGV[3])\n"
    "  return {0}\n"
    "end\n"
    "if v[1] ~= ARGV[2] then return {3} end\n"
    "if v[2] ~= 'done' then return {1} end\n"
    "return {2, v[3], v[4] or '', v[5] or '', v[6] or ''}\n";

/* ARGV[1] key, [2] fingerprint, [3] TTL ms, [4] status, [5] content type, [6] headers,
 * [7] body. Returns
 * 1, or 0 when the key is no longer this attempt's (expired meanwhile) */
static const char finish_src[] =
    "if redis.call('HGET', ARGV[1], 'fp') ~= ARGV[2] then return 0 end\n"
    "redis.call('HSET', ARGV[1], 'state', 'done', 'status', ARGV[4], 'ctype', ARGV[5], "
    "'headers', ARGV[6], 'body', ARGV[7])\n"
    "redis.call('PEXPIRE', ARGV[1], ARGV[3])\n"
    "return 1\n";

/* ARGV[1] key, [2] fingerprint, [3] pending TTL ms: the reservation was answered, so
 * it is held for the attempt's whole time. Returns 1, or 0 when it is not ours */
static const char hold_src[] = "local v = redis.call('HMGET', ARGV[1], 'fp', 'state')\n"
                               "if v[1] ~= ARGV[2] or v[2] ~= 'pending' then return 0 end\n"
                               "redis.call('PEXPIRE', ARGV[1], ARGV[3])\n"
                               "return 1\n";

/* ARGV[1] key: released only while pending */
static const char forget_src[] =
    "if redis.call('HGET', ARGV[1], 'state') == 'pending' then redis.call('DEL', ARGV[1]) end\n"
    "return 1\n";

typedef struct rs_s {
    idem_t base;
    char *host;
    int port, db;
    unsigned timeout_ms;
    char *prefix; /* "pushgate:{app}:idem:" */
    int (*healthy)(void *arg);
    void *healthy_arg;
    pthread_mutex_t mu;
    redisContext *pool[POOL_MAX];
    int n_pool;
} rs_t;

static redisContext *conn_open(rs_t *s)
{
    struct timeval ct = {0, CONNECT_MS * 1000};
    struct timeval tv = {s->timeout_ms / 1000, (s->timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(s->host, s->port, ct);
    if (!c) return NULL;
    if (c->err || redisSetTimeout(c, tv) != REDIS_OK) {
        redisFree(c);
        return NULL;
    }
    if (s->db) {
        redisReply *r = redisCommand(c, "SELECT %d", s->db);
        int ok = r && r->type != REDIS_REPLY_ERROR;
        if (r) freeReplyObject(r);
        if (!ok) {
            redisFree(c);
            return NULL;
        }
    }
    return c;
}

/* An idle connection Redis closed (or with something unexpected waiting on it). */
static int stale(redisContext *c)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    return c->err || poll(&p, 1, 0) != 0;
}

static redisContext *conn_take(rs_t *s)
{
    if (s->healthy && !s->healthy(s->healthy_arg)) return NULL;
    for (;;) {
        redisContext *c = NULL;
        pthread_mutex_lock(&s->mu);
        if (s->n_pool) c = s->pool[--s->n_pool];
        pthread_mutex_unlock(&s->mu);
        if (!c) return conn_open(s);
        if (!stale(c)) return c;
        redisFree(c);
    }
}

static void conn_give(rs_t *s, redisContext *c)
{
    pthread_mutex_lock(&s->mu);
    if (!c->err && s->n_pool < POOL_MAX) {
        s->pool[s->n_pool++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    if (c) redisFree(c);
}

/* EVAL src 0 argv... Returns 0 with the reply in *out (free it), -ENOTCONN (Redis
 * unreachable or the call cut off: outcome unknown), -EIO (refused). */
static int eval(rs_t *s, const char *src, int argc, const char **argv, const size_t *lens,
                redisReply **out)
{
    const char *a[10] = {"EVAL", src, "0"};
    size_t l[10] = {4, strlen(src), 1};
    for (int i = 0; i < argc && i < 7; i++) {
        a[3 + i] = argv[i];
        l[3 + i] = lens[i];
    }
    redisContext *c = conn_take(s);
    if (!c) return -ENOTCONN;
    redisReply *r = redisCommandArgv(c, 3 + argc, a, l);
    if (!r) {
        log_warn("idempotency keys: redis call failed", "error=\"%s\"", c->errstr);
        redisFree(c);
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

/* prefix + scope into a new string, or NULL. */
static char *key_of(rs_t *s, const char *scope)
{
    size_t a = strlen(s->prefix), b = strlen(scope);
    char *k = malloc(a + b + 1);
    if (k) {
        memcpy(k, s->prefix, a);
        memcpy(k + a, scope, b + 1);
    }
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
        redisFree(s->pool[i]);
    pthread_mutex_destroy(&s->mu);
    free(s->host);
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
    s->port = cfg->port;
    s->db = cfg->db;
    s->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : TIMEOUT_MS;
    s->healthy = cfg->healthy;
    s->healthy_arg = cfg->healthy_arg;
    size_t pl = strlen(cfg->prefix);
    s->host = strdup(cfg->host);
    s->prefix = malloc(pl + sizeof("idem:"));
    if (!s->host || !s->prefix) {
        rs_free(&s->base);
        return NULL;
    }
    memcpy(s->prefix, cfg->prefix, pl);
    memcpy(s->prefix + pl, "idem:", sizeof("idem:"));
    return &s->base;
}
