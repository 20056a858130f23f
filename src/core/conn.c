/* Connection I/O: per-worker read buffer, queued output flushed by writev before the
 * loop sleeps, graceful and abrupt close. */
#include "core/conn.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"
#include "core/tls.h"
#include "core/worker.h"

#define CONN_IOV_MAX 64
#define CONN_LINGER_MS 2000
/* records encrypted ahead of the socket, per TLS connection, before waiting for it */
#define CONN_TLS_OUT_MAX (64 * 1024)

/* plaintext scratch of the worker's thread: decrypted input, gathered output */
static __thread char tls_plain_in[TLS_RECORD_MAX];
static __thread char tls_plain_out[TLS_RECORD_MAX];

typedef struct conn_write_s {
    uv_write_t req;
    conn_t *c;
    unsigned n;
    conn_out_t items[CONN_IOV_MAX];
} conn_write_t;

static void flush_list_add(conn_t *c)
{
    if (c->flags & (CONN_PENDING | CONN_CLOSING))
        return;
    worker_t *w = c->w;
    c->flags |= CONN_PENDING;
    c->pprev = NULL;
    c->pnext = w->flush_head;
    if (w->flush_head)
        w->flush_head->pprev = c;
    w->flush_head = c;
}

static void flush_list_remove(conn_t *c)
{
    if (!(c->flags & CONN_PENDING))
        return;
    if (c->pprev)
        c->pprev->pnext = c->pnext;
    else
        c->w->flush_head = c->pnext;
    if (c->pnext)
        c->pnext->pprev = c->pprev;
    c->pprev = c->pnext = NULL;
    c->flags &= ~(unsigned)CONN_PENDING;
}

static int queue_grow(conn_t *c)
{
    uint32_t cap = c->qcap ? c->qcap * 2 : 4;
    conn_out_t *q = malloc(sizeof(*q) * cap);
    if (!q)
        return -ENOMEM;
    for (uint32_t i = 0; i < c->qcount; i++)
        q[i] = c->q[(c->qhead + i) % c->qcap];
    free(c->q);
    c->q = q;
    c->qcap = cap;
    c->qhead = 0;
    return 0;
}

int conn_send(conn_t *c, buf_t *b, size_t off, size_t len)
{
    if (c->flags & (CONN_CLOSING | CONN_END | CONN_SHUT))
        return -EPIPE;
    if (len == 0)
        return 0;
    if (c->limit && c->pending + len > c->limit)
        return -ENOBUFS;
    if (c->qcount == c->qcap && queue_grow(c) < 0)
        return -ENOMEM;
    c->q[(c->qhead + c->qcount) % c->qcap] = (conn_out_t){buf_ref(b), off, len};
    c->qcount++;
    c->pending += len;
    flush_list_add(c);
    return 0;
}

int conn_send_copy(conn_t *c, const void *data, size_t len)
{
    buf_t *b = buf_new(len);
    if (!b)
        return -ENOMEM;
    buf_append(&b, data, len);
    int r = conn_send(c, b, 0, len);
    buf_unref(b);
    return r;
}

int conn_send_owned(conn_t *c, buf_t *b)
{
    if (!b)
        return -ENOMEM;
    int r = conn_send(c, b, 0, b->len);
    buf_unref(b);
    return r;
}

static void queue_release(conn_t *c)
{
    for (uint32_t i = 0; i < c->qcount; i++)
        buf_unref(c->q[(c->qhead + i) % c->qcap].b);
    free(c->q);
    c->q = NULL;
    c->qcount = c->qcap = c->qhead = 0;
}

static void on_close_cb(uv_handle_t *h)
{
    conn_t *c = h->data;
    worker_t *w = c->w;
    if (c->proto->on_close)
        c->proto->on_close(c);
    queue_release(c);
    tls_conn_free(c->tls);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->n_conns--;
    __atomic_sub_fetch(&w->pool->connections, 1, __ATOMIC_RELAXED);
    if (c->ip) iptable_release(w->pool->ips, c->ip);
    free(c);
}

void conn_close(conn_t *c)
{
    if (c->flags & CONN_CLOSING)
        return;
    flush_list_remove(c);
    c->flags |= CONN_CLOSING;
    uv_close((uv_handle_t *)&c->tcp, on_close_cb);
}

static void on_shutdown_cb(uv_shutdown_t *req, int status)
{
    conn_t *c = req->data;
    free(req); /* libuv is done with it; a conn is freed only after this runs */
    if (status < 0 || (c->flags & CONN_CLOSING)) {
        conn_close(c);
        return;
    }
    /* keep reading (and discarding) so the peer sees our response, not a reset */
    c->deadline = uv_now(&c->w->loop) + CONN_LINGER_MS;
    if (c->flags & CONN_READ_PAUSED)
        conn_resume_read(c);
}

static void start_shutdown(conn_t *c)
{
    if (c->flags & (CONN_SHUT | CONN_CLOSING))
        return;
    c->flags |= CONN_SHUT;
    /* allocated only now: an open connection does not carry a shutdown request */
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (!req) {
        conn_close(c);
        return;
    }
    req->data = c;
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown_cb) < 0) {
        free(req);
        conn_close(c);
    }
}

void conn_end(conn_t *c)
{
    if (c->flags & (CONN_CLOSING | CONN_END))
        return;
    c->flags |= CONN_END;
    if (c->tls)
        flush_list_add(c); /* the flush sends close_notify, then the FIN */
    else if (c->qcount == 0 && !(c->flags & CONN_WRITING))
        start_shutdown(c);
}

/* Drops n bytes from the head of the queue. */
static void drop(conn_t *c, size_t n)
{
    c->pending -= n;
    while (n > 0) {
        conn_out_t *it = &c->q[c->qhead];
        if (n < it->len) {
            it->off += n;
            it->len -= n;
            return;
        }
        n -= it->len;
        buf_unref(it->b);
        c->qhead = (c->qhead + 1) % c->qcap;
        c->qcount--;
    }
}

/* Drops n bytes that reached the kernel. */
static void consume(conn_t *c, size_t n)
{
    METRICS_ADD(bytes_out, n);
    drop(c, n);
}

static void conn_flush(conn_t *c);

static void on_write_cb(uv_write_t *req, int status)
{
    conn_write_t *wr = (conn_write_t *)req;
    conn_t *c = wr->c;
    size_t bytes = 0;
    for (unsigned i = 0; i < wr->n; i++) {
        bytes += wr->items[i].len;
        buf_unref(wr->items[i].b);
    }
    free(wr);
    c->flags &= ~(unsigned)CONN_WRITING;
    if (c->flags & CONN_CLOSING)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    c->pending -= bytes;
    METRICS_ADD(bytes_out, bytes);
    conn_flush(c);
}

/* Nothing left to write: an idle conn keeps no queue; a closing one sends its FIN. */
static void flushed(conn_t *c)
{
    if (c->qcap) {
        /* an idle connection keeps no queue at all: the next send allocates one */
        free(c->q);
        c->q = NULL;
        c->qcap = c->qhead = 0;
    }
    if (c->flags & CONN_END) {
        start_shutdown(c);
        return;
    }
    if (c->proto->on_drain)
        c->proto->on_drain(c);
}

/* Copies the head of the queue, up to cap bytes, into dst. Returns the bytes copied. */
static size_t gather(const conn_t *c, char *dst, size_t cap)
{
    size_t n = 0;
    for (uint32_t i = 0; i < c->qcount && n < cap; i++) {
        const conn_out_t *it = &c->q[(c->qhead + i) % c->qcap];
        size_t k = it->len < cap - n ? it->len : cap - n;
        memcpy(dst + n, it->b->data + it->off, k);
        n += k;
    }
    return n;
}

/* Encrypts queued plaintext into records while the records not yet sent stay under
 * CONN_TLS_OUT_MAX. Returns 0, or a negative errno (the session failed). */
static int tls_encrypt(conn_t *c)
{
    tls_conn_t *t = c->tls;
    if (!tls_conn_ready(t))
        return 0; /* the plaintext waits for the handshake */
    while (c->qcount > 0) {
        size_t off;
        buf_t *ob = tls_conn_out(t, &off);
        if (ob && ob->len - off >= CONN_TLS_OUT_MAX)
            return 0;
        const conn_out_t *it = &c->q[c->qhead];
        const char *src = it->b->data + it->off;
        size_t n = TLS_RECORD_MAX;
        if (it->len < TLS_RECORD_MAX) {
            /* small slices (frames, events) share records */
            n = gather(c, tls_plain_out, TLS_RECORD_MAX);
            src = tls_plain_out;
        }
        int r = tls_conn_write(t, src, n);
        if (r < 0)
            return r;
        drop(c, n);
    }
    return 0;
}

/* Writes the records waiting in c->tls: what the kernel does not take at once goes to
 * a uv_write that owns the buffer until its callback. Returns 1 when all went out,
 * 0 when a write is in flight, a negative errno (c is closed). */
static int tls_send(conn_t *c)
{
    tls_conn_t *t = c->tls;
    size_t off;
    buf_t *b = tls_conn_out(t, &off);
    if (!b)
        return 1;
    size_t len = b->len - off;
    uv_buf_t iov = uv_buf_init(b->data + off, (unsigned)len);
    int r = uv_try_write((uv_stream_t *)&c->tcp, &iov, 1);
    if (r == UV_EAGAIN || r == UV_ENOSYS)
        r = 0;
    if (r < 0) {
        conn_close(c);
        return r;
    }
    METRICS_ADD(bytes_out, (size_t)r);
    tls_conn_out_consume(t, (size_t)r);
    if ((size_t)r == len)
        return 1;
    conn_write_t *wr = malloc(sizeof(*wr));
    if (!wr) {
        conn_close(c);
        return -ENOMEM;
    }
    b = tls_conn_out_take(t, &off);
    len = b->len - off;
    wr->items[0] = (conn_out_t){b, off, len};
    wr->n = 1;
    wr->c = c;
    iov = uv_buf_init(b->data + off, (unsigned)len);
    if ((r = uv_write(&wr->req, (uv_stream_t *)&c->tcp, &iov, 1, on_write_cb)) < 0) {
        buf_unref(b);
        free(wr);
        conn_close(c);
        return r;
    }
    c->pending += len; /* on_write_cb takes it off */
    c->flags |= CONN_WRITING;
    return 0;
}

/* conn_flush for a TLS connection: encrypt, write, and once everything is out and the
 * conn is ending, a close_notify before the FIN. */
static void conn_flush_tls(conn_t *c)
{
    for (;;) {
        int r = tls_encrypt(c);
        if (r < 0) {
            conn_close(c);
            return;
        }
        if (tls_send(c) <= 0)
            return;
        if (c->qcount > 0 && tls_conn_ready(c->tls))
            continue; /* the records were over CONN_TLS_OUT_MAX: more to encrypt */
        if ((c->flags & CONN_END) && tls_conn_ready(c->tls) && tls_conn_close_notify(c->tls) > 0)
            continue;
        break;
    }
    if (c->qcount > 0) {
        if (!(c->flags & CONN_END))
            return; /* queued before the handshake completed */
        queue_release(c); /* ending before the handshake: nothing can be sent */
        c->pending = 0;
    }
    flushed(c);
}

static void conn_flush(conn_t *c)
{
    if (c->flags & (CONN_WRITING | CONN_CLOSING))
        return;
    if (c->tls) {
        conn_flush_tls(c);
        return;
    }
    uv_buf_t iov[CONN_IOV_MAX];
    while (c->qcount > 0) {
        unsigned n = c->qcount < CONN_IOV_MAX ? c->qcount : CONN_IOV_MAX;
        size_t total = 0;
        for (unsigned i = 0; i < n; i++) {
            conn_out_t *it = &c->q[(c->qhead + i) % c->qcap];
            iov[i] = uv_buf_init(it->b->data + it->off, (unsigned)it->len);
            total += it->len;
        }
        int r = uv_try_write((uv_stream_t *)&c->tcp, iov, n);
        if (r == UV_EAGAIN || r == UV_ENOSYS)
            r = 0;
        if (r < 0) {
            conn_close(c);
            return;
        }
        consume(c, (size_t)r);
        if ((size_t)r < total)
            break;
    }
    if (c->qcount > 0) {
        /* the kernel is full: hand the next slices to uv_write and wait for it */
        conn_write_t *wr = malloc(sizeof(*wr));
        if (!wr) {
            conn_close(c);
            return;
        }
        unsigned n = c->qcount < CONN_IOV_MAX ? c->qcount : CONN_IOV_MAX;
        for (unsigned i = 0; i < n; i++) {
            wr->items[i] = c->q[c->qhead];
            iov[i] = uv_buf_init(wr->items[i].b->data + wr->items[i].off,
                                 (unsigned)wr->items[i].len);
            c->qhead = (c->qhead + 1) % c->qcap;
            c->qcount--;
        }
        wr->n = n;
        wr->c = c;
        if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, iov, n, on_write_cb) < 0) {
            for (unsigned i = 0; i < n; i++)
                buf_unref(wr->items[i].b);
            free(wr);
            conn_close(c);
            return;
        }
        c->flags |= CONN_WRITING;
        return;
    }
    flushed(c);
}

/* Decrypts the TLS input (stashed, then data) and hands the plaintext to the protocol
 * until the input runs out, the protocol pauses reading, or c closes or moves away. */
static void tls_deliver(conn_t *c, const char *data, size_t len)
{
    tls_conn_t *t = c->tls;
    if (tls_conn_input(t, data, len) < 0) {
        conn_close(c);
        return;
    }
    while (!(c->flags & (CONN_CLOSING | CONN_READ_PAUSED | CONN_SHUT))) {
        ssize_t n = tls_conn_read(t, tls_plain_in, sizeof(tls_plain_in));
        if (n == 0)
            break;
        if (n == -EPIPE) {
            /* close_notify: the peer is done sending, as a TCP EOF says */
            uv_read_stop((uv_stream_t *)&c->tcp);
            if (c->proto->on_eof)
                c->proto->on_eof(c);
            else
                conn_close(c);
            return;
        }
        if (n < 0) {
            /* a handshake the peer got wrong (or plain HTTP): its alert, if any, then go */
            size_t off;
            buf_t *b = tls_conn_out(t, &off);
            if (b) {
                uv_buf_t iov = uv_buf_init(b->data + off, (unsigned)(b->len - off));
                (void)uv_try_write((uv_stream_t *)&c->tcp, &iov, 1);
            }
            conn_close(c);
            return;
        }
        c->proto->on_read(c, tls_plain_in, (size_t)n);
    }
    if (c->flags & CONN_CLOSING)
        return; /* closed, or moved to another worker with its session */
    if (tls_conn_stash(t) < 0) {
        conn_close(c);
        return;
    }
    size_t off;
    if (tls_conn_out(t, &off) || (c->qcount && tls_conn_ready(t)))
        flush_list_add(c); /* handshake records, or output the handshake held back */
}

void conn_want_flush(conn_t *c)
{
    flush_list_add(c);
}

void conn_flush_pending(worker_t *w)
{
    while (w->flush_head) {
        conn_t *c = w->flush_head;
        flush_list_remove(c);
        if (c->tls && tls_conn_has_stash(c->tls) &&
            !(c->flags & (CONN_READ_PAUSED | CONN_SHUT))) {
            /* input held back while reading was paused, or brought along by a migration */
            tls_deliver(c, NULL, 0);
            flush_list_remove(c);
            if (c->flags & CONN_CLOSING)
                continue;
        }
        if (c->proto->on_flush) {
            c->proto->on_flush(c);
            flush_list_remove(c); /* what on_flush queued is written just below */
        }
        conn_flush(c);
    }
}

static void on_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    conn_t *c = h->data;
    *buf = uv_buf_init(c->w->rbuf, sizeof(c->w->rbuf));
}

static void on_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    conn_t *c = s->data;
    if (c->flags & CONN_CLOSING)
        return;
    if (nread > 0) {
        if (c->flags & CONN_SHUT)
            return;
        if (c->tls)
            tls_deliver(c, buf->base, (size_t)nread);
        else
            c->proto->on_read(c, buf->base, (size_t)nread);
        return;
    }
    if (nread == 0)
        return;
    if (c->flags & CONN_SHUT) {
        conn_close(c);
        return;
    }
    uv_read_stop(s);
    if (nread == UV_EOF && c->proto->on_eof)
        c->proto->on_eof(c);
    else
        conn_close(c);
}

void conn_pause_read(conn_t *c)
{
    if (c->flags & (CONN_READ_PAUSED | CONN_CLOSING))
        return;
    c->flags |= CONN_READ_PAUSED;
    uv_read_stop((uv_stream_t *)&c->tcp);
}

void conn_resume_read(conn_t *c)
{
    if (!(c->flags & CONN_READ_PAUSED) || (c->flags & CONN_CLOSING))
        return;
    c->flags &= ~(unsigned)CONN_READ_PAUSED;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc_cb, on_read_cb) < 0) {
        conn_close(c);
        return;
    }
    if (c->tls && tls_conn_has_stash(c->tls))
        flush_list_add(c); /* decrypted before the next read, never inside the caller */
}

void conn_set_proto(conn_t *c, const conn_proto_t *proto, void *ud)
{
    c->proto = proto;
    c->ud = ud;
}

static void on_reject_close(uv_handle_t *h)
{
    free(h);
}

static void refused_read(conn_t *c, const char *data, size_t len)
{
    (void)c, (void)data, (void)len; /* the answer is already on its way */
}

static const conn_proto_t refused_proto = {.name = "refused", .on_read = refused_read};

/* Refuses an accepted connection for a limit: counted, answered by the pool's on_refuse
 * (then ended: the lingering close is bounded), or closed at once. */
static void refuse(conn_t *c, int reason)
{
    METRICS_REFUSED(reason);
    void (*fn)(conn_t *, int) = c->w->pool->cfg.on_refuse;
    /* a TLS client could not read a plaintext answer: it is just closed */
    if (!fn || c->w->pool->cfg.tls) {
        conn_close(c);
        return;
    }
    c->proto = &refused_proto;
    fn(c, reason);
    if (!(c->flags & CONN_CLOSING) &&
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc_cb, on_read_cb) < 0)
        conn_close(c);
}

/* Counts c in the per-IP table. Returns 0, or -EUSERS when its address is at the limit. */
static int count_ip(conn_t *c)
{
    worker_pool_t *pool = c->w->pool;
    if (!pool->ips) return 0;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    ipkey_t k;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) < 0 ||
        ipkey_from_sockaddr((struct sockaddr *)&ss, &k) < 0)
        return 0; /* no address to count (the peer is already gone) */
    int r = iptable_acquire(pool->ips, &k, pool->cfg.max_connections_per_ip, &c->ip);
    return r == -EUSERS ? r : 0;
}

int conn_accept(worker_t *w, uv_stream_t *server, const conn_proto_t *proto)
{
    uint32_t max = w->pool->cfg.max_connections;
    uint32_t n = __atomic_add_fetch(&w->pool->connections, 1, __ATOMIC_RELAXED);
    conn_t *c = calloc(1, sizeof(*c));
    int r = c ? uv_tcp_init(&w->loop, &c->tcp) : UV_ENOMEM;
    if (r < 0) {
        free(c);
        __atomic_sub_fetch(&w->pool->connections, 1, __ATOMIC_RELAXED);
        /* the pending socket must still be taken off the backlog */
        uv_tcp_t *drop = malloc(sizeof(*drop));
        if (drop && uv_tcp_init(&w->loop, drop) == 0) {
            (void)uv_accept(server, (uv_stream_t *)drop);
            uv_close((uv_handle_t *)drop, on_reject_close);
        } else {
            free(drop);
        }
        return r;
    }
    c->tcp.data = c;
    c->w = w;
    c->proto = proto;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->n_conns++;
    if ((r = uv_accept(server, (uv_stream_t *)&c->tcp)) < 0) {
        conn_close(c);
        return r;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (max && n > max) {
        refuse(c, REFUSED_MAX_CONNECTIONS);
        return UV_EMFILE;
    }
    if (count_ip(c) < 0) {
        refuse(c, REFUSED_MAX_CONNECTIONS_PER_IP);
        return UV_EMFILE;
    }
    if (w->pool->cfg.tls && tls_conn_new(w->pool->cfg.tls, &c->tls) < 0) {
        conn_close(c);
        return UV_ENOMEM;
    }
    if (proto->on_open)
        proto->on_open(c);
    if (c->flags & CONN_CLOSING)
        return 0;
    if ((r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc_cb, on_read_cb)) < 0) {
        conn_close(c);
        return r;
    }
    return 0;
}

typedef struct migrate_msg_s {
    worker_msg_t base;
    int fd;
    const conn_proto_t *proto;
    buf_t *first;
    tls_conn_t *tls;
    const ipkey_t *ip;
} migrate_msg_t;

static void on_migrated(worker_t *w, worker_msg_t *m)
{
    migrate_msg_t *mm = (migrate_msg_t *)m;
    conn_t *c = calloc(1, sizeof(*c));
    if (!c || uv_tcp_init(&w->loop, &c->tcp) < 0) {
        close(mm->fd);
        free(c);
        tls_conn_free(mm->tls);
        __atomic_sub_fetch(&w->pool->connections, 1, __ATOMIC_RELAXED);
        if (mm->ip) iptable_release(w->pool->ips, mm->ip);
        buf_unref(mm->first);
        free(mm);
        return;
    }
    c->tcp.data = c;
    c->w = w;
    c->proto = mm->proto;
    c->tls = mm->tls;
    c->ip = mm->ip;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->n_conns++;
    if (uv_tcp_open(&c->tcp, mm->fd) < 0) {
        close(mm->fd);
        conn_close(c); /* the protocol never opened: its on_close sees no state */
    } else {
        if (mm->proto->on_open)
            mm->proto->on_open(c);
        if (!(c->flags & CONN_CLOSING) &&
            uv_read_start((uv_stream_t *)&c->tcp, on_alloc_cb, on_read_cb) < 0)
            conn_close(c);
        if (!(c->flags & CONN_CLOSING) && mm->first && mm->first->len)
            c->proto->on_read(c, mm->first->data, mm->first->len);
        size_t off;
        if (!(c->flags & CONN_CLOSING) && c->tls &&
            (tls_conn_has_stash(c->tls) || tls_conn_out(c->tls, &off)))
            flush_list_add(c); /* input that followed the request, records not yet sent */
    }
    buf_unref(mm->first);
    free(mm);
}

static void migrated_away_close(conn_t *c)
{
    (void)c; /* the socket lives on elsewhere; nothing of it is ours */
}

static const conn_proto_t migrated_proto = {.name = "migrated",
                                            .on_read = NULL,
                                            .on_close = migrated_away_close};

int conn_migrate(conn_t *c, worker_t *to, const conn_proto_t *proto, buf_t *first)
{
    if (c->qcount || (c->flags & (CONN_WRITING | CONN_CLOSING | CONN_END | CONN_SHUT)))
        return -EBUSY;
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) < 0)
        return -EBADF;
    int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (nfd < 0)
        return -errno;
    migrate_msg_t *mm = calloc(1, sizeof(*mm));
    if (!mm) {
        close(nfd);
        return -ENOMEM;
    }
    mm->base.fn = on_migrated;
    mm->fd = nfd;
    mm->proto = proto;
    mm->first = first;
    if (c->tls && tls_conn_stash(c->tls) < 0) {
        close(nfd);
        free(mm);
        return -ENOMEM;
    }
    mm->tls = c->tls; /* the session goes with the socket: this close must not free it */
    c->tls = NULL;
    /* the per-IP count moves with the socket too */
    mm->ip = c->ip;
    c->ip = NULL;
    /* the count moves with the socket: this close subtracts, the adoption added */
    __atomic_add_fetch(&c->w->pool->connections, 1, __ATOMIC_RELAXED);
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->proto = &migrated_proto;
    c->ud = NULL;
    conn_close(c);
    worker_post(to, &mm->base);
    return 0;
}
