/* Held device requests per worker (hash by kind and key, a timer each), wake-ups
 * batched per loop turn into one inbox message per worker, and the table of devices'
 * last visits. */
#include "transport/device.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/log.h"

typedef struct wake_item_s {
    int64_t key;
    int kind;
} wake_item_t;

/* One wake-up batch, shared by the messages to every other worker. */
typedef struct wake_batch_s wake_batch_t;
typedef struct wake_msg_s {
    worker_msg_t base;
    wake_batch_t *batch;
} wake_msg_t;

struct wake_batch_s {
    device_reg_t *reg;
    int refs; /* atomic */
    size_t n;
    wake_item_t *items;
    wake_msg_t msgs[]; /* one per worker */
};

typedef struct hold_table_s {
    device_hold_t **b;
    size_t nb; /* power of two */
    size_t n;
} hold_table_t;

/* A worker's part. */
struct device_pw_s {
    device_reg_t *reg;
    worker_t *w;
    hold_table_t t[DEVICE_HOLD_KINDS];
    uv_check_t check;
    uv_timer_t tick;
    void (*tick_fn)(worker_t *w, void *arg);
    void *tick_arg;
    wake_item_t *out; /* wake-ups of this loop turn */
    size_t n_out, cap_out;
    unsigned gen;
    int stopped;  /* shutdown answered every hold */
    int detached; /* the loop is gone: messages are dropped */
    int has_tick;
};

typedef struct seen_node_s {
    device_seen_t s;
    struct seen_node_s *next;
} seen_node_t;

struct device_reg_s {
    int n;
    device_pw_t **pw;
    int pending[DEVICE_HOLD_KINDS]; /* atomic: reservations + holds, every worker */
    pthread_mutex_t seen_mu;
    seen_node_t **seen;
    size_t seen_nb, seen_n;
    void (*turn_end)(worker_t *w, void *arg);
    void *turn_arg;
};

static size_t hash64(int64_t k)
{
    uint64_t x = (uint64_t)k;
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return (size_t)x;
}

/* ---- hold tables ---- */

/* Makes room for one more hold. Returns 0 or -ENOMEM (room may still be there). */
static int table_reserve(hold_table_t *t)
{
    if (t->n < t->nb) return 0;
    size_t nb = t->nb ? t->nb * 2 : 64;
    device_hold_t **b = calloc(nb, sizeof(*b));
    if (!b) return t->nb ? 0 : -ENOMEM; /* chains just get longer */
    for (size_t i = 0; i < t->nb; i++) {
        for (device_hold_t *h = t->b[i], *next; h; h = next) {
            next = h->next;
            size_t j = hash64(h->key) & (nb - 1);
            h->next = b[j];
            b[j] = h;
        }
    }
    free(t->b);
    t->b = b;
    t->nb = nb;
    return 0;
}

static void table_add(hold_table_t *t, device_hold_t *h)
{
    size_t i = hash64(h->key) & (t->nb - 1);
    h->next = t->b[i];
    t->b[i] = h;
    t->n++;
}

static void table_remove(hold_table_t *t, device_hold_t *h)
{
    device_hold_t **pp = &t->b[hash64(h->key) & (t->nb - 1)];
    while (*pp && *pp != h)
        pp = &(*pp)->next;
    if (*pp) {
        *pp = h->next;
        t->n--;
    }
    h->next = NULL;
}

/* Any hold of the table, or NULL. */
static device_hold_t *table_any(hold_table_t *t)
{
    for (size_t i = 0; t->n && i < t->nb; i++)
        if (t->b[i]) return t->b[i];
    return NULL;
}

/* ---- holds ---- */

static void on_hold_closed(uv_handle_t *handle)
{
    free(handle->data);
}

static void on_abort(http_ctx_t *ctx)
{
    device_hold_done(ctx->abort_arg);
}

void device_hold_done(device_hold_t *h)
{
    if (!h->linked) return;
    h->linked = 0;
    table_remove(&h->pw->t[h->kind], h);
    __atomic_sub_fetch(&h->pw->reg->pending[h->kind], 1, __ATOMIC_SEQ_CST);
    if (h->ctx->on_abort == on_abort && h->ctx->abort_arg == h) h->ctx->on_abort = NULL;
    uv_timer_stop(&h->timer);
    uv_close((uv_handle_t *)&h->timer, on_hold_closed);
}

/* While a request is held the server does not read its connection, so a client that
 * went away goes unnoticed: peek before giving it a command. Returns 1 when the peer
 * has closed (or the socket failed). */
static int peer_gone(conn_t *c)
{
    if (!c || (c->flags & CONN_CLOSING)) return 1;
    int fd = c->fd;
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* Ends a hold whose client is gone; its connection closes without an answer. */
static int drop_if_gone(device_hold_t *h)
{
    conn_t *c = h->ctx->conn;
    if (!peer_gone(c)) return 0;
    device_hold_done(h);
    if (c) conn_close(c);
    return 1;
}

static void end_turn(device_pw_t *pw);

static void on_hold_timeout(uv_timer_t *t)
{
    device_hold_t *h = t->data;
    device_pw_t *pw = h->pw;
    if (drop_if_gone(h)) return;
    device_hold_done(h);
    h->cb(h, DEVICE_TIMEOUT);
    end_turn(pw); /* the loop may sleep before its check phase */
}

void device_reserve(device_reg_t *reg, int kind)
{
    __atomic_add_fetch(&reg->pending[kind], 1, __ATOMIC_SEQ_CST);
}

void device_unreserve(device_reg_t *reg, int kind)
{
    __atomic_sub_fetch(&reg->pending[kind], 1, __ATOMIC_SEQ_CST);
}

int device_hold(device_reg_t *reg, worker_t *w, http_ctx_t *ctx, int kind, int64_t key, int64_t aux,
                uint64_t timeout_ms, device_hold_cb cb, void *arg)
{
    device_pw_t *pw = reg->pw[w->index];
    if (pw->stopped || w->stopping) {
        device_unreserve(reg, kind);
        return -ESHUTDOWN;
    }
    device_hold_t *h = calloc(1, sizeof(*h));
    if (!h || table_reserve(&pw->t[kind]) < 0) {
        free(h);
        device_unreserve(reg, kind);
        return -ENOMEM;
    }
    *h = (device_hold_t){.kind = kind,
                         .key = key,
                         .aux = aux,
                         .ctx = ctx,
                         .arg = arg,
                         .cb = cb,
                         .pw = pw,
                         .linked = 1};
    table_add(&pw->t[kind], h);
    uv_timer_init(&w->loop, &h->timer);
    h->timer.data = h;
    uv_timer_start(&h->timer, on_hold_timeout, timeout_ms, 0);
    ctx->on_abort = on_abort;
    ctx->abort_arg = h;
    return 0;
}

/* Wakes the holds for (kind, key) on this worker. A callback may answer, which may run
 * the connection's next pipelined request, which may add or end holds: so every call
 * starts the chain walk again, and gen marks the holds already woken. */
static void wake_local(device_pw_t *pw, int kind, int64_t key)
{
    hold_table_t *t = &pw->t[kind];
    if (!t->n) return;
    unsigned gen = ++pw->gen;
    for (;;) {
        device_hold_t *h = t->b[hash64(key) & (t->nb - 1)];
        while (h && (h->key != key || h->gen == gen))
            h = h->next;
        if (!h) return;
        h->gen = gen;
        if (!drop_if_gone(h)) h->cb(h, DEVICE_WAKE);
    }
}

static void wake_items(device_pw_t *pw, const wake_item_t *items, size_t n)
{
    for (size_t i = 0; i < n && !pw->detached; i++)
        wake_local(pw, items[i].kind, items[i].key);
}

/* Answers every hold of the worker: the node is stopping. */
static void release_all(device_pw_t *pw)
{
    pw->stopped = 1;
    for (int k = 0; k < DEVICE_HOLD_KINDS; k++) {
        device_hold_t *h;
        while ((h = table_any(&pw->t[k]))) {
            device_hold_done(h);
            h->cb(h, DEVICE_SHUTDOWN);
        }
    }
}

/* ---- wake-up batches ---- */

static void batch_unref(wake_batch_t *b)
{
    if (__atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        free(b->items);
        free(b);
    }
}

static void on_wake_msg(worker_t *w, worker_msg_t *m)
{
    wake_batch_t *b = ((wake_msg_t *)m)->batch;
    device_pw_t *pw = b->reg->pw[w->index];
    if (!pw->detached) wake_items(pw, b->items, b->n);
    batch_unref(b);
}

/* Sends this turn's wake-ups: one message to every other worker, then wakes locally. */
static void flush_out(device_pw_t *pw)
{
    device_reg_t *reg = pw->reg;
    wake_item_t *items = pw->out;
    size_t n = pw->n_out;
    pw->out = NULL;
    pw->n_out = pw->cap_out = 0;
    if (reg->n > 1) {
        wake_batch_t *b = malloc(sizeof(*b) + (size_t)reg->n * sizeof(wake_msg_t));
        wake_item_t *copy = malloc(n * sizeof(*copy));
        if (b && copy) {
            memcpy(copy, items, n * sizeof(*copy));
            b->reg = reg;
            b->refs = reg->n - 1;
            b->n = n;
            b->items = copy;
            for (int i = 0; i < reg->n; i++) {
                if (i == pw->w->index) continue;
                b->msgs[i].base.fn = on_wake_msg;
                b->msgs[i].batch = b;
                worker_post(reg->pw[i]->w, &b->msgs[i].base);
            }
        } else {
            free(b);
            free(copy);
            log_warn("device wake-ups dropped: out of memory", "count=%zu", n);
        }
    }
    wake_items(pw, items, n);
    free(items);
}

/* The turn's end: the turn-end hook (which commits and answers), then the wake-ups,
 * which may give the hook more to do, until both are idle. */
static void end_turn(device_pw_t *pw)
{
    device_reg_t *reg = pw->reg;
    if (pw->detached) return;
    for (;;) {
        if (reg->turn_end) reg->turn_end(pw->w, reg->turn_arg);
        if (!pw->n_out) return;
        flush_out(pw);
    }
}

/* After every poll phase: answer holds once the worker stops, end the turn. */
static void on_check(uv_check_t *c)
{
    device_pw_t *pw = c->data;
    if (pw->w->stopping && !pw->stopped) release_all(pw);
    end_turn(pw);
}

void device_reg_on_turn_end(device_reg_t *reg, void (*fn)(worker_t *w, void *arg), void *arg)
{
    reg->turn_end = fn;
    reg->turn_arg = arg;
}

void device_notify(device_reg_t *reg, worker_t *from, int kind, int64_t key)
{
    if (__atomic_load_n(&reg->pending[kind], __ATOMIC_SEQ_CST) == 0 || !from) return;
    device_pw_t *pw = reg->pw[from->index];
    if (pw->n_out == pw->cap_out) {
        size_t cap = pw->cap_out ? pw->cap_out * 2 : 16;
        wake_item_t *o = realloc(pw->out, cap * sizeof(*o));
        if (!o) {
            log_warn("device wake-up dropped: out of memory", "key=%lld", (long long)key);
            return;
        }
        pw->out = o;
        pw->cap_out = cap;
    }
    pw->out[pw->n_out++] = (wake_item_t){key, kind};
}

void device_notify_any(device_reg_t *reg, const int *kinds, const int64_t *keys, size_t n)
{
    wake_item_t *items = n ? malloc(n * sizeof(*items)) : NULL;
    size_t k = 0;
    if (n && !items) log_warn("device wake-ups dropped: out of memory", "count=%zu", n);
    for (size_t i = 0; items && i < n; i++)
        if (kinds[i] >= 0 && kinds[i] < DEVICE_HOLD_KINDS &&
            __atomic_load_n(&reg->pending[kinds[i]], __ATOMIC_SEQ_CST) > 0)
            items[k++] = (wake_item_t){keys[i], kinds[i]};
    /* the workers' parts are set before any worker runs and the bus's loop starts */
    int nw = 0;
    for (int i = 0; i < reg->n; i++)
        nw += reg->pw[i] != NULL;
    wake_batch_t *b = k && nw ? malloc(sizeof(*b) + (size_t)reg->n * sizeof(wake_msg_t)) : NULL;
    if (!b) {
        if (k && nw) log_warn("device wake-ups dropped: out of memory", "count=%zu", k);
        free(items);
        return;
    }
    b->reg = reg;
    b->refs = nw;
    b->n = k;
    b->items = items;
    for (int i = 0; i < reg->n; i++) {
        if (!reg->pw[i]) continue;
        b->msgs[i].base.fn = on_wake_msg;
        b->msgs[i].batch = b;
        worker_post(reg->pw[i]->w, &b->msgs[i].base);
    }
}

/* ---- lifecycle ---- */

device_reg_t *device_reg_new(int n_workers)
{
    device_reg_t *reg = calloc(1, sizeof(*reg));
    if (!reg) return NULL;
    reg->n = n_workers;
    reg->pw = calloc((size_t)n_workers, sizeof(*reg->pw));
    if (!reg->pw) goto fail_pw;
    if (pthread_mutex_init(&reg->seen_mu, NULL) != 0) goto fail_mutex;
    return reg;
fail_mutex:
    free(reg->pw);
fail_pw:
    free(reg);
    return NULL;
}

static void on_tick(uv_timer_t *t)
{
    device_pw_t *pw = t->data;
    pw->tick_fn(pw->w, pw->tick_arg);
    end_turn(pw);
}

int device_reg_attach(device_reg_t *reg, worker_t *w, void (*tick)(worker_t *w, void *arg),
                      void *tick_arg, unsigned period_ms)
{
    device_pw_t *pw = calloc(1, sizeof(*pw));
    if (!pw) return -ENOMEM;
    pw->reg = reg;
    pw->w = w;
    uv_check_init(&w->loop, &pw->check);
    pw->check.data = pw;
    uv_check_start(&pw->check, on_check);
    uv_unref((uv_handle_t *)&pw->check);
    if (tick) {
        pw->has_tick = 1;
        pw->tick_fn = tick;
        pw->tick_arg = tick_arg;
        uv_timer_init(&w->loop, &pw->tick);
        pw->tick.data = pw;
        uv_timer_start(&pw->tick, on_tick, period_ms, period_ms);
        uv_unref((uv_handle_t *)&pw->tick);
    }
    reg->pw[w->index] = pw;
    return 0;
}

void device_reg_detach(device_reg_t *reg, worker_t *w)
{
    device_pw_t *pw = reg->pw[w->index];
    if (!pw || pw->detached) return;
    pw->detached = 1;
    pw->stopped = 1;
    /* the connections close next: their requests stay unanswered */
    for (int k = 0; k < DEVICE_HOLD_KINDS; k++) {
        device_hold_t *h;
        while ((h = table_any(&pw->t[k])))
            device_hold_done(h);
    }
    free(pw->out);
    pw->out = NULL;
    pw->n_out = pw->cap_out = 0;
    uv_close((uv_handle_t *)&pw->check, NULL);
    if (pw->has_tick) uv_close((uv_handle_t *)&pw->tick, NULL);
}

void device_reg_free(device_reg_t *reg)
{
    if (!reg) return;
    for (int i = 0; i < reg->n; i++) {
        device_pw_t *pw = reg->pw[i];
        if (!pw) continue;
        for (int k = 0; k < DEVICE_HOLD_KINDS; k++)
            free(pw->t[k].b);
        free(pw->out);
        free(pw);
    }
    free(reg->pw);
    for (size_t i = 0; i < reg->seen_nb; i++) {
        for (seen_node_t *s = reg->seen[i], *next; s; s = next) {
            next = s->next;
            free(s);
        }
    }
    free(reg->seen);
    pthread_mutex_destroy(&reg->seen_mu);
    free(reg);
}

/* ---- last visits ---- */

static seen_node_t *seen_find(device_reg_t *reg, int64_t id)
{
    if (!reg->seen_nb) return NULL;
    seen_node_t *s = reg->seen[hash64(id) & (reg->seen_nb - 1)];
    while (s && s->s.device_id != id)
        s = s->next;
    return s;
}

static void seen_grow(device_reg_t *reg)
{
    size_t nb = reg->seen_nb ? reg->seen_nb * 2 : 1024;
    seen_node_t **b = calloc(nb, sizeof(*b));
    if (!b) return;
    for (size_t i = 0; i < reg->seen_nb; i++) {
        for (seen_node_t *s = reg->seen[i], *next; s; s = next) {
            next = s->next;
            size_t j = hash64(s->s.device_id) & (nb - 1);
            s->next = b[j];
            b[j] = s;
        }
    }
    free(reg->seen);
    reg->seen = b;
    reg->seen_nb = nb;
}

void device_seen_touch(device_reg_t *reg, int64_t device_id, int64_t now, int result)
{
    pthread_mutex_lock(&reg->seen_mu);
    seen_node_t *s = seen_find(reg, device_id);
    if (!s) {
        if (reg->seen_n >= reg->seen_nb) seen_grow(reg);
        if (reg->seen_nb && (s = calloc(1, sizeof(*s)))) {
            s->s.device_id = device_id;
            size_t j = hash64(device_id) & (reg->seen_nb - 1);
            s->next = reg->seen[j];
            reg->seen[j] = s;
            reg->seen_n++;
        }
    }
    if (s) {
        if (result) {
            s->s.last_result_at = now;
        } else {
            s->s.last_poll_at = now;
            s->s.polls++;
        }
    }
    pthread_mutex_unlock(&reg->seen_mu);
}

int device_seen_get(device_reg_t *reg, int64_t device_id, device_seen_t *out)
{
    pthread_mutex_lock(&reg->seen_mu);
    seen_node_t *s = seen_find(reg, device_id);
    if (s) *out = s->s;
    pthread_mutex_unlock(&reg->seen_mu);
    return s ? 0 : -ENOENT;
}

static int seen_cmp(const void *a, const void *b)
{
    int64_t x = ((const device_seen_t *)a)->device_id, y = ((const device_seen_t *)b)->device_id;
    return x < y ? -1 : x > y;
}

ssize_t device_seen_snapshot(device_reg_t *reg, int64_t after, device_seen_t **out)
{
    pthread_mutex_lock(&reg->seen_mu);
    device_seen_t *a = malloc((reg->seen_n ? reg->seen_n : 1) * sizeof(*a));
    size_t n = 0;
    for (size_t i = 0; a && i < reg->seen_nb; i++)
        for (seen_node_t *s = reg->seen[i]; s; s = s->next)
            if (s->s.device_id > after) a[n++] = s->s;
    pthread_mutex_unlock(&reg->seen_mu);
    if (!a) return -ENOMEM;
    qsort(a, n, sizeof(*a), seen_cmp);
    *out = a;
    return (ssize_t)n;
}

void device_seen_prune(device_reg_t *reg, int64_t before)
{
    pthread_mutex_lock(&reg->seen_mu);
    for (size_t i = 0; i < reg->seen_nb; i++) {
        seen_node_t **pp = &reg->seen[i];
        while (*pp) {
            seen_node_t *s = *pp;
            int64_t last =
                s->s.last_poll_at > s->s.last_result_at ? s->s.last_poll_at : s->s.last_result_at;
            if (last < before) {
                *pp = s->next;
                free(s);
                reg->seen_n--;
            } else {
                pp = &s->next;
            }
        }
    }
    pthread_mutex_unlock(&reg->seen_mu);
}
