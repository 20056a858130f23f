/* Blocking Redis clients, to one server or a Redis Cluster (cluster/redis_cluster.h):
 * slot routing, MOVED/ASK/TRYAGAIN, slot map refresh, one connection per master. */
#include "cluster/redis_cluster.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/codec.h"
#include "core/config.h"
#include "core/log.h"

#define TRIES_MAX 8     /* redirects and reconnects of one command */
#define TRYAGAIN_MAX 40 /* TRYAGAINs of one command (a slot being migrated): 1 s */
#define TRYAGAIN_MS 25  /* the wait before each retry */

int redis_target_from_config(const config_t *cfg, redis_target_t *t, char *err, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    if (cfg->redis_cluster) {
        size_t i;
        json_t *s;
        json_array_foreach(cfg->redis_cluster, i, s)
        {
            if (i >= REDIS_TARGET_SEEDS_MAX ||
                rslots_parse_hostport(json_string_value(s), json_string_length(s), &t->seed[i]) <
                    0) {
                snprintf(err, errlen, "redis.cluster[%zu] must be \"host:port\"", i);
                return -EINVAL;
            }
            t->n_seeds = i + 1;
        }
        t->cluster = 1;
        return t->n_seeds ? 1 : -EINVAL;
    }
    if (!cfg->redis_url) return 0;
    cluster_redis_url_t u;
    if (cluster_redis_url_parse(cfg->redis_url, &u, err, errlen) < 0) return -EINVAL;
    snprintf(t->seed[0].host, sizeof(t->seed[0].host), "%s", u.host);
    t->seed[0].port = u.port;
    t->n_seeds = 1;
    t->db = u.db;
    return 1;
}

void redis_target_describe(const redis_target_t *t, char *out, size_t outlen)
{
    size_t n = (size_t)snprintf(out, outlen, "%s", t->cluster ? "cluster " : "");
    for (size_t i = 0; i < t->n_seeds && n < outlen; i++)
        n += (size_t)snprintf(out + n, outlen - n, "%s%s:%d", i ? "," : "", t->seed[i].host,
                              t->seed[i].port);
}

struct rcs_s {
    redis_target_t t;
    rslots_map_t map;
    int have_map;
    redisContext *ctx[RSLOTS_MAX_NODES]; /* by the map's node index (one server: [0]) */
    struct timeval ct, tv;
    char errstr[512];
};

rcs_t *rcs_new(const redis_target_t *t, unsigned connect_ms, unsigned timeout_ms)
{
    rcs_t *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->t = *t;
    c->ct = (struct timeval){connect_ms / 1000, (connect_ms % 1000) * 1000};
    c->tv = (struct timeval){timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    rslots_map_clear(&c->map);
    if (!t->cluster) {
        /* one server: node 0 serves every slot */
        c->map.node[0] = t->seed[0];
        c->map.n = 1;
        memset(c->map.owner, 0, sizeof(c->map.owner));
        c->have_map = 1;
    }
    return c;
}

static void drop(rcs_t *c, int k)
{
    if (c->ctx[k]) redisFree(c->ctx[k]);
    c->ctx[k] = NULL;
}

void rcs_free(rcs_t *c)
{
    if (!c) return;
    for (int k = 0; k < RSLOTS_MAX_NODES; k++)
        drop(c, k);
    free(c);
}

int rcs_check(rcs_t *c)
{
    int open = 0;
    for (int k = 0; k < RSLOTS_MAX_NODES; k++) {
        redisContext *x = c->ctx[k];
        if (!x) continue;
        struct pollfd p = {.fd = x->fd, .events = POLLIN};
        if (x->err || poll(&p, 1, 0) != 0)
            drop(c, k);
        else
            open++;
    }
    return open;
}

const char *rcs_errstr(const rcs_t *c)
{
    return c->errstr;
}

static redisContext *open_node(rcs_t *c, const rslots_node_t *n)
{
    redisContext *x = redisConnectWithTimeout(n->host, n->port, c->ct);
    if (!x) {
        snprintf(c->errstr, sizeof(c->errstr), "out of memory");
        return NULL;
    }
    if (x->err || redisSetTimeout(x, c->tv) != REDIS_OK) {
        snprintf(c->errstr, sizeof(c->errstr), "%s:%d: %s", n->host, n->port, x->errstr);
        redisFree(x);
        return NULL;
    }
    if (!c->t.cluster && c->t.db) {
        redisReply *r = redisCommand(x, "SELECT %d", c->t.db);
        int ok = r && r->type != REDIS_REPLY_ERROR;
        if (r) freeReplyObject(r);
        if (!ok) {
            snprintf(c->errstr, sizeof(c->errstr), "SELECT %d failed", c->t.db);
            redisFree(x);
            return NULL;
        }
    }
    return x;
}

/* Asks node n for the slot map into m. Returns the slots covered or a negative errno. */
static int ask_map(rcs_t *c, const rslots_node_t *n, rslots_map_t *m)
{
    redisContext *x = open_node(c, n);
    if (!x) return -ENOTCONN;
    redisReply *r = redisCommand(x, "CLUSTER SLOTS");
    int ret = -ENOTCONN;
    if (!r) {
        snprintf(c->errstr, sizeof(c->errstr), "%s:%d: %s", n->host, n->port, x->errstr);
    } else if (r->type == REDIS_REPLY_ERROR) {
        snprintf(c->errstr, sizeof(c->errstr), "%s:%d: %s", n->host, n->port, r->str);
    } else {
        ret = rslots_parse_slots(r, n->host, m, c->errstr, sizeof(c->errstr));
    }
    if (r) freeReplyObject(r);
    redisFree(x);
    return ret;
}

/* Loads the slot map from a known master or a seed; the connections follow their
 * nodes into the new map. Returns 0 or -ENOTCONN. */
static int load_map(rcs_t *c)
{
    if (!c->t.cluster) return 0;
    rslots_map_t *m = malloc(sizeof(*m));
    rslots_node_t *cand = malloc((RSLOTS_MAX_NODES + REDIS_TARGET_SEEDS_MAX) * sizeof(*cand));
    int ret = -ENOTCONN;
    if (!m || !cand) goto out;
    size_t nc = 0;
    for (int k = 0; k < c->map.n; k++)
        cand[nc++] = c->map.node[k];
    for (size_t i = 0; i < c->t.n_seeds; i++)
        cand[nc++] = c->t.seed[i];
    for (size_t i = 0; i < nc && ret < 0; i++)
        if (ask_map(c, &cand[i], m) > 0) ret = 0;
    if (ret < 0) goto out;
    redisContext *moved[RSLOTS_MAX_NODES] = {0};
    for (int k = 0; k < c->map.n; k++) {
        if (!c->ctx[k]) continue;
        int j = -1;
        for (int i = 0; i < m->n && j < 0; i++)
            if (m->node[i].port == c->map.node[k].port &&
                strcmp(m->node[i].host, c->map.node[k].host) == 0)
                j = i;
        if (j >= 0)
            moved[j] = c->ctx[k];
        else
            redisFree(c->ctx[k]);
        c->ctx[k] = NULL;
    }
    memcpy(c->ctx, moved, sizeof(moved));
    memcpy(&c->map, m, sizeof(*m));
    c->have_map = 1;
out:
    free(m);
    free(cand);
    return ret;
}

int rcs_refresh(rcs_t *c)
{
    return load_map(c);
}

int rcs_node_for(rcs_t *c, const char *key, size_t keylen, rslots_node_t *out)
{
    if (!c->have_map && load_map(c) < 0) return -ENOTCONN;
    int k = c->map.owner[rslots_key_slot(key, keylen)];
    if (k < 0 && (load_map(c) < 0 || (k = c->map.owner[rslots_key_slot(key, keylen)]) < 0))
        return -ENOTCONN;
    *out = c->map.node[k];
    return 0;
}

static void nap(unsigned ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

/* Sends the formatted command cmd to the master of slot (-1: any) and follows
 * redirections. Returns the reply or NULL (see rcs_command_argv). */
static redisReply *run(rcs_t *c, int slot, const char *cmd, size_t len)
{
    int asking = 0, waits = 0;
    rslots_node_t ask_to = {0};
    for (int attempt = 0; attempt < TRIES_MAX; attempt++) {
        if (!c->have_map && load_map(c) < 0) return NULL;
        int k;
        if (asking) {
            k = rslots_map_node(&c->map, ask_to.host, ask_to.port);
        } else if (slot < 0) {
            for (k = 0; k < c->map.n && !c->ctx[k]; k++)
                ;
            if (k == c->map.n) k = c->map.n ? 0 : -1;
        } else {
            k = c->map.owner[slot];
        }
        if (k < 0) {
            /* a slot no master serves (yet), or a map full of nodes: look again */
            snprintf(c->errstr, sizeof(c->errstr), "no master serves slot %d", slot);
            c->have_map = 0;
            asking = 0;
            continue;
        }
        if (!c->ctx[k] && !(c->ctx[k] = open_node(c, &c->map.node[k]))) {
            /* a master gone: maybe a failover, so the map is reloaded */
            if (!c->t.cluster) return NULL;
            c->have_map = 0;
            asking = 0;
            continue;
        }
        redisContext *x = c->ctx[k];
        void *a = NULL;
        redisReply *r = NULL;
        if ((asking && redisAppendCommand(x, "ASKING") != REDIS_OK) ||
            redisAppendFormattedCommand(x, cmd, len) != REDIS_OK ||
            (asking && (redisGetReply(x, &a) != REDIS_OK || !a)) ||
            redisGetReply(x, (void **)&r) != REDIS_OK || !r) {
            snprintf(c->errstr, sizeof(c->errstr), "%s:%d: %s", c->map.node[k].host,
                     c->map.node[k].port, x->errstr);
            if (a) freeReplyObject(a);
            drop(c, k);
            if (c->t.cluster) c->have_map = 0;
            return NULL; /* sent, perhaps run: not retried */
        }
        if (a) freeReplyObject(a);
        int asked = asking;
        asking = 0;
        if (!c->t.cluster || r->type != REDIS_REPLY_ERROR) return r;
        rslots_redirect_t rd;
        if (rslots_parse_redirect(r->str, r->len, &rd) == 1) {
            if (!rd.to.host[0]) memcpy(rd.to.host, c->map.node[k].host, RSLOTS_HOST_MAX);
            log_debug("redis cluster redirect", "kind=%s slot=%u to=%s:%d",
                      rd.ask ? "ASK" : "MOVED", rd.slot, rd.to.host, rd.to.port);
            freeReplyObject(r);
            if (rd.ask) {
                asking = 1;
                ask_to = rd.to;
            } else {
                /* the slot moved for good: the map is stale, load it again (and use what
                 * the error said if that fails) */
                int j = rslots_map_node(&c->map, rd.to.host, rd.to.port);
                if (j >= 0) c->map.owner[rd.slot] = (int16_t)j;
                if (load_map(c) < 0 && j < 0) return NULL;
            }
            continue;
        }
        if (strncmp(r->str, "TRYAGAIN", 8) == 0 && ++waits < TRYAGAIN_MAX) {
            /* a multi-key command in a slot being migrated (some keys moved, or some
             * not there at all): it can run once the migration ends */
            freeReplyObject(r);
            nap(TRYAGAIN_MS);
            /* the wait is bounded by TRYAGAIN_MAX, not by the redirects: the ASK that
             * led here is asked again after the nap, and is not counted either */
            attempt -= asked ? 2 : 1;
            continue;
        }
        return r;
    }
    snprintf(c->errstr, sizeof(c->errstr), "gave up after %d redirects or retries", TRIES_MAX);
    return NULL;
}

redisReply *rcs_command_argv(rcs_t *c, const char *key, size_t keylen, int argc, const char **argv,
                             const size_t *lens)
{
    char *cmd = NULL;
    long long len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (len < 0) {
        snprintf(c->errstr, sizeof(c->errstr), "out of memory");
        return NULL;
    }
    redisReply *r = run(c, key ? (int)rslots_key_slot(key, keylen) : -1, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return r;
}

redisReply *rcs_vcommand(rcs_t *c, const char *key, const char *fmt, va_list ap)
{
    char *cmd = NULL;
    int len = redisvFormatCommand(&cmd, fmt, ap);
    if (len < 0) {
        snprintf(c->errstr, sizeof(c->errstr), "out of memory");
        return NULL;
    }
    redisReply *r = run(c, key ? (int)rslots_key_slot(key, strlen(key)) : -1, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return r;
}

redisReply *rcs_command(rcs_t *c, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = rcs_vcommand(c, key, fmt, ap);
    va_end(ap);
    return r;
}
