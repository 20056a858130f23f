/* The Idempotency-Key store in memory (a single node): a hash table of keys with an
 * age list, bounded in count and in time; and the interface's calls, which go to
 * whichever implementation a store is (this one, or store/idem_redis.c). */
#include "store/idem.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry_s {
    struct entry_s *chain;       /* the bucket's next */
    struct entry_s *prev, *next; /* the age list: oldest first */
    uint64_t hash;
    int state; /* IDEM_NEW (pending) or IDEM_DONE */
    int64_t expires_at;
    char fp[IDEM_FP_LEN + 1];
    idem_answer_t answer;
    char scope[]; /* NUL-terminated */
} entry_t;

typedef struct mem_s {
    idem_t base;
    pthread_mutex_t mu;
    size_t max_keys, n;
    entry_t **buckets; /* allocated on first use: an unused store costs nothing */
    size_t n_buckets;  /* a power of two */
    entry_t *oldest, *newest;
} mem_t;

static const idem_ops_t mem_ops;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

void idem_answer_clear(idem_answer_t *a)
{
    free(a->content_type);
    free(a->headers);
    free(a->body);
    memset(a, 0, sizeof(*a));
}

/* Copies a into out. Returns 0 or -ENOMEM (out is then empty). */
static int answer_copy(idem_answer_t *out, const idem_answer_t *a)
{
    *out = (idem_answer_t){.status = a->status, .body_len = a->body_len};
    if ((a->content_type && !(out->content_type = strdup(a->content_type))) ||
        (a->headers && !(out->headers = strdup(a->headers)))) {
        idem_answer_clear(out);
        return -ENOMEM;
    }
    if (a->body) {
        if (!(out->body = malloc(a->body_len + 1))) {
            idem_answer_clear(out);
            return -ENOMEM;
        }
        memcpy(out->body, a->body, a->body_len);
        out->body[a->body_len] = '\0';
    }
    return 0;
}

static void list_unlink(mem_t *m, entry_t *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        m->oldest = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        m->newest = e->prev;
    e->prev = e->next = NULL;
}

static void list_append(mem_t *m, entry_t *e)
{
    e->prev = m->newest;
    e->next = NULL;
    if (m->newest)
        m->newest->next = e;
    else
        m->oldest = e;
    m->newest = e;
}

static entry_t **find(mem_t *m, const char *scope, uint64_t h)
{
    entry_t **p = &m->buckets[h & (m->n_buckets - 1)];
    while (*p && ((*p)->hash != h || strcmp((*p)->scope, scope) != 0))
        p = &(*p)->chain;
    return p;
}

static void drop(mem_t *m, entry_t *e)
{
    entry_t **p = find(m, e->scope, e->hash);
    if (*p == e) *p = e->chain;
    list_unlink(m, e);
    idem_answer_clear(&e->answer);
    free(e);
    m->n--;
}

/* Drops answered keys that are past their TTL, oldest first, and (when full) the
 * oldest answered one. Answered keys are in expiry order; pending ones (few: the pushes
 * in progress) are stepped over. */
static void prune(mem_t *m, int64_t now)
{
    for (entry_t *e = m->oldest, *next; e; e = next) {
        next = e->next;
        if (e->state != IDEM_DONE) continue;
        if (e->expires_at > now && m->n < m->max_keys) break;
        drop(m, e);
    }
}

static int mem_begin(idem_t *s, const char *scope, const char *fp, int64_t now, idem_answer_t *out)
{
    mem_t *m = (mem_t *)s;
    int r;
    pthread_mutex_lock(&m->mu);
    if (!m->buckets) {
        size_t nb = 1024;
        while (nb < m->max_keys && nb < (1u << 20))
            nb <<= 1;
        if (!(m->buckets = calloc(nb, sizeof(*m->buckets)))) {
            r = -ENOMEM;
            goto out;
        }
        m->n_buckets = nb;
    }
    prune(m, now);
    uint64_t h = hash_str(scope);
    entry_t *e = *find(m, scope, h);
    if (e && e->state == IDEM_DONE && e->expires_at <= now) {
        drop(m, e);
        e = NULL;
    }
    if (e) {
        if (strcmp(e->fp, fp) != 0)
            r = IDEM_MISMATCH;
        else if (e->state != IDEM_DONE)
            r = IDEM_PENDING;
        else
            r = answer_copy(out, &e->answer) < 0 ? -ENOMEM : IDEM_DONE;
        goto out;
    }
    if (m->n >= m->max_keys) {
        r = -ENOSPC; /* every key is pending */
        goto out;
    }
    size_t len = strlen(scope);
    if (!(e = calloc(1, sizeof(*e) + len + 1))) {
        r = -ENOMEM;
        goto out;
    }
    memcpy(e->scope, scope, len + 1);
    snprintf(e->fp, sizeof(e->fp), "%s", fp);
    e->hash = h;
    e->state = IDEM_NEW;
    e->expires_at = INT64_MAX;
    entry_t **p = find(m, scope, h);
    *p = e;
    list_append(m, e);
    m->n++;
    r = IDEM_NEW;
out:
    pthread_mutex_unlock(&m->mu);
    return r;
}

static int mem_finish(idem_t *s, const char *scope, const char *fp, int64_t now,
                      const idem_answer_t *a)
{
    (void)fp;
    mem_t *m = (mem_t *)s;
    int r = -ENOENT;
    pthread_mutex_lock(&m->mu);
    if (m->buckets) {
        entry_t *e = *find(m, scope, hash_str(scope));
        if (e && e->state == IDEM_NEW) {
            if ((r = answer_copy(&e->answer, a)) < 0) {
                drop(m, e);
            } else {
                e->state = IDEM_DONE;
                e->expires_at = now + s->ttl_ms;
                /* the age list stays in expiry order: answered keys go to the end */
                list_unlink(m, e);
                list_append(m, e);
            }
        }
    }
    pthread_mutex_unlock(&m->mu);
    return r;
}

static void mem_forget(idem_t *s, const char *scope)
{
    mem_t *m = (mem_t *)s;
    pthread_mutex_lock(&m->mu);
    if (m->buckets) {
        entry_t *e = *find(m, scope, hash_str(scope));
        if (e && e->state == IDEM_NEW) drop(m, e);
    }
    pthread_mutex_unlock(&m->mu);
}

static void mem_free(idem_t *s)
{
    mem_t *m = (mem_t *)s;
    while (m->oldest)
        drop(m, m->oldest);
    free(m->buckets);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static const idem_ops_t mem_ops = {
    .begin = mem_begin,
    .finish = mem_finish,
    .forget = mem_forget,
    .free = mem_free,
};

idem_t *idem_mem_new(int64_t ttl_ms, size_t max_keys)
{
    mem_t *m = calloc(1, sizeof(*m));
    if (!m) return NULL;
    if (pthread_mutex_init(&m->mu, NULL) != 0) {
        free(m);
        return NULL;
    }
    m->base = (idem_t){.ops = &mem_ops, .ttl_ms = ttl_ms};
    m->max_keys = max_keys ? max_keys : 1;
    return &m->base;
}

/* ---- the interface ---- */

int idem_begin(idem_t *s, const char *scope, const char *fp, int64_t now, idem_answer_t *out)
{
    memset(out, 0, sizeof(*out));
    return s->ops->begin(s, scope, fp, now, out);
}

int idem_finish(idem_t *s, const char *scope, const char *fp, int64_t now, const idem_answer_t *a)
{
    return s->ops->finish(s, scope, fp, now, a);
}

void idem_forget(idem_t *s, const char *scope)
{
    s->ops->forget(s, scope);
}

void idem_free(idem_t *s)
{
    if (s) s->ops->free(s);
}
