/* Connection I/O on raw sockets: one epoll set per worker (watched by a single libuv
 * poll handle), reads into the per-worker buffer, queued output flushed by writev
 * before the loop sleeps, graceful and abrupt close, closed conns freed at a safe
 * point. The epoll set is level-triggered: a conn is in it only while it wants to
 * read or waits to write. */
#include "core/conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/metrics.h"
#include "core/tls.h"
#include "core/worker.h"

#define CONN_IOV_MAX 64
#define CONN_LINGER_MS 2000
/* records encrypted ahead of the socket, per TLS connection, before waiting for it */
#define CONN_TLS_OUT_MAX (64 * 1024)
/* events taken from the epoll set per wakeup; the rest come at the next loop turn */
#define CONN_EVENTS_MAX 256
/* reads of one connection per readiness while each fills the buffer (as libuv) */
#define CONN_READS_MAX 32

/* plaintext scratch of the worker's thread: decrypted input, gathered output */
static __thread char tls_plain_in[TLS_RECORD_MAX];
static __thread char tls_plain_out[TLS_RECORD_MAX];

/* Makes the epoll set watch what c wants now (EPOLLIN while reading, EPOLLOUT while
 * the kernel is full); a conn that wants neither is taken out, so a hang-up it cannot
 * act on does not wake the loop again and again. Returns 0 or a negative errno. */
static int watch(conn_t *c)
{
    if (c->flags & CONN_CLOSING) return 0;
    uint32_t want = ((c->flags & CONN_READING) ? CONN_EP_IN : 0) |
                    ((c->flags & CONN_WRITING) ? CONN_EP_OUT : 0);
    uint32_t have = c->flags & (CONN_EP_IN | CONN_EP_OUT);
    if (want == have) return 0;
    struct epoll_event ev = {.events = ((want & CONN_EP_IN) ? EPOLLIN : 0) |
                                       ((want & CONN_EP_OUT) ? EPOLLOUT : 0),
                             .data.ptr = c};
    int op = !want ? EPOLL_CTL_DEL : !have ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (epoll_ctl(c->w->epfd, op, c->fd, &ev) < 0) return -errno;
    c->flags = (c->flags & ~(uint32_t)(CONN_EP_IN | CONN_EP_OUT)) | want;
    return 0;
}

/* Starts or stops reading; a conn whose epoll set cannot change is closed. */
static void set_reading(conn_t *c, int on)
{
    if (on)
        c->flags |= CONN_READING;
    else
        c->flags &= ~(uint32_t)CONN_READING;
    if (watch(c) < 0) conn_close(c);
}

/* The flush list and the held list share pprev/pnext: a conn is in one at most
 * (CONN_PENDING or CONN_HELD). */
static void flush_list_remove(conn_t *c)
{
    if (!(c->flags & (CONN_PENDING | CONN_HELD))) return;
    if (c->pprev)
        c->pprev->pnext = c->pnext;
    else if (c->flags & CONN_HELD)
        c->w->held_head = c->pnext;
    else
        c->w->flush_head = c->pnext;
    if (c->pnext) c->pnext->pprev = c->pprev;
    c->pprev = c->pnext = NULL;
    c->flags &= ~(uint32_t)(CONN_PENDING | CONN_HELD);
}

/* Puts c at the head of the list that flag (CONN_PENDING or CONN_HELD) names, out of
 * the other one. */
static void list_move(conn_t *c, uint32_t flag)
{
    conn_t **head = flag == CONN_HELD ? &c->w->held_head : &c->w->flush_head;
    flush_list_remove(c);
    c->flags |= flag;
    c->pprev = NULL;
    c->pnext = *head;
    if (*head) (*head)->pprev = c;
    *head = c;
}

static void flush_list_add(conn_t *c)
{
    if (!c->w->in_fanout) c->flags |= CONN_URGENT;
    if (c->flags & (CONN_PENDING | CONN_CLOSING)) return;
    list_move(c, CONN_PENDING); /* out of the held list, if there */
}

static uint32_t q_count(const conn_t *c)
{
    return c->q ? c->q->count : 0;
}

static conn_out_t *q_at(const conn_t *c, uint32_t i)
{
    return &c->q->items[(c->q->head + i) % c->q->cap];
}

static int queue_grow(conn_t *c)
{
    uint32_t old = c->q ? c->q->cap : 0, cap = old ? old * 2 : 4;
    conn_queue_t *q = malloc(sizeof(*q) + sizeof(conn_out_t) * cap);
    if (!q) return -ENOMEM;
    q->head = 0;
    q->cap = cap;
    q->count = q_count(c);
    for (uint32_t i = 0; i < q->count; i++)
        q->items[i] = *q_at(c, i);
    free(c->q);
    c->q = q;
    return 0;
}

int conn_send(conn_t *c, buf_t *b, size_t off, size_t len)
{
    if (c->flags & (CONN_CLOSING | CONN_END | CONN_SHUT)) return -EPIPE;
    if (len == 0) return 0;
    uint32_t limit = c->limit ? c->limit : CONN_PENDING_MAX;
    if (len > limit || c->pending > limit - len) return -ENOBUFS;
    if ((!c->q || c->q->count == c->q->cap) && queue_grow(c) < 0) return -ENOMEM;
    *q_at(c, c->q->count) = (conn_out_t){buf_ref(b), off, len};
    c->q->count++;
    c->pending += (uint32_t)len;
    flush_list_add(c);
    return 0;
}

int conn_send_copy(conn_t *c, const void *data, size_t len)
{
    buf_t *b = buf_new(len);
    if (!b) return -ENOMEM;
    buf_append(&b, data, len);
    int r = conn_send(c, b, 0, len);
    buf_unref(b);
    return r;
}

int conn_send_owned(conn_t *c, buf_t *b)
{
    if (!b) return -ENOMEM;
    int r = conn_send(c, b, 0, b->len);
    buf_unref(b);
    return r;
}

static void queue_release(conn_t *c)
{
    for (uint32_t i = 0; i < q_count(c); i++)
        buf_unref(q_at(c, i)->b);
    free(c->q);
    c->q = NULL;
}

/* Frees c: the protocol's state, the queue, the TLS session, its place in the worker
 * and in the pool's counts. */
static void conn_free(conn_t *c)
{
    worker_t *w = c->w;
    if (c->proto->on_close) c->proto->on_close(c);
    queue_release(c);
    tls_conn_free(c->tls);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    w->n_conns--;
    __atomic_sub_fetch(&w->pool->connections, 1, __ATOMIC_RELAXED);
    if (c->ip) iptable_release(w->pool->ips, c->ip);
    free(c);
}

void conn_reap(worker_t *w)
{
    /* on_close may close other conns: they join a new list, freed in the next round */
    while (w->reap_head) {
        conn_t *c = w->reap_head;
        w->reap_head = NULL;
        while (c) {
            conn_t *next = c->pnext;
            conn_free(c);
            c = next;
        }
    }
}

void conn_close(conn_t *c)
{
    if (c->flags & CONN_CLOSING) return;
    flush_list_remove(c);
    if (c->fd >= 0) {
        /* out of the epoll set first: a duplicate of the socket (a migration) would
         * otherwise keep it there, pointing at a freed conn */
        if (c->flags & (CONN_EP_IN | CONN_EP_OUT))
            (void)epoll_ctl(c->w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    c->flags |= CONN_CLOSING;
    c->flags &= ~(uint32_t)(CONN_EP_IN | CONN_EP_OUT | CONN_READING | CONN_WRITING);
    /* freed at the safe point, never inside the caller (a callback of c's own) */
    c->pnext = c->w->reap_head;
    c->w->reap_head = c;
}

/* The FIN: sent at once (the queue is empty). Then keep reading (and discarding) so
 * the peer sees our response, not a reset, until its EOF or the linger deadline. */
static void start_shutdown(conn_t *c)
{
    if (c->flags & (CONN_SHUT | CONN_CLOSING)) return;
    c->flags |= CONN_SHUT;
    if (shutdown(c->fd, SHUT_WR) < 0 || (c->flags & CONN_EOF)) {
        conn_close(c); /* failed, or the peer is done too: nothing left to wait for */
        return;
    }
    c->deadline = uv_now(&c->w->loop) + CONN_LINGER_MS;
    if (c->flags & CONN_READ_PAUSED) conn_resume_read(c);
}

void conn_end(conn_t *c)
{
    if (c->flags & (CONN_CLOSING | CONN_END)) return;
    c->flags |= CONN_END;
    if (c->tls)
        flush_list_add(c); /* the flush sends close_notify, then the FIN */
    else if (!conn_has_output(c))
        start_shutdown(c);
}

/* Drops n bytes from the head of the queue. */
static void drop(conn_t *c, size_t n)
{
    c->pending -= (uint32_t)n;
    while (n > 0) {
        conn_out_t *it = q_at(c, 0);
        if (n < it->len) {
            it->off += n;
            it->len -= n;
            return;
        }
        n -= it->len;
        buf_unref(it->b);
        c->q->head = (c->q->head + 1) % c->q->cap;
        c->q->count--;
    }
}

/* Drops n bytes that reached the kernel. */
static void consume(conn_t *c, size_t n)
{
    METRICS_ADD(bytes_out, n);
    drop(c, n);
}

/* Writes iov to c's socket with writev (the node ignores SIGPIPE: a reset peer is
 * EPIPE; writev, not sendmsg, so the write syscalls stay visible in /proc/PID/io,
 * where the benchmarks count them). Returns the bytes the kernel took (0 when it is
 * full), or a negative errno. */
static ssize_t send_iov(conn_t *c, struct iovec *iov, size_t n)
{
    for (;;) {
        ssize_t r = writev(c->fd, iov, (int)n);
        if (r >= 0) return r;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        if (errno != EINTR) return -errno;
    }
}

/* The kernel is full: wait for EPOLLOUT (the conn is closed if it cannot). */
static void wait_writable(conn_t *c)
{
    c->flags |= CONN_WRITING;
    if (watch(c) < 0) conn_close(c);
}

/* Nothing left to write: an idle conn keeps no queue; a closing one sends its FIN. */
static void flushed(conn_t *c)
{
    free(c->q); /* empty: an idle connection keeps no queue at all */
    c->q = NULL;
    if (c->flags & CONN_END) {
        start_shutdown(c);
        return;
    }
    if (c->proto->on_drain) c->proto->on_drain(c);
}

/* Copies the head of the queue, up to cap bytes, into dst. Returns the bytes copied. */
static size_t gather(const conn_t *c, char *dst, size_t cap)
{
    size_t n = 0;
    for (uint32_t i = 0; i < q_count(c) && n < cap; i++) {
        const conn_out_t *it = q_at(c, i);
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
    if (!tls_conn_ready(t)) return 0; /* the plaintext waits for the handshake */
    while (q_count(c) > 0) {
        size_t off;
        buf_t *ob = tls_conn_out(t, &off);
        if (ob && ob->len - off >= CONN_TLS_OUT_MAX) return 0;
        const conn_out_t *it = q_at(c, 0);
        const char *src = it->b->data + it->off;
        size_t n = TLS_RECORD_MAX;
        if (it->len < TLS_RECORD_MAX) {
            /* small slices (frames, events) share records */
            n = gather(c, tls_plain_out, TLS_RECORD_MAX);
            src = tls_plain_out;
        }
        int r = tls_conn_write(t, src, n);
        if (r < 0) return r;
        drop(c, n);
    }
    return 0;
}

/* Writes the records waiting in c->tls; what the kernel does not take stays there
 * until EPOLLOUT. Returns 1 when all went out, 0 when waiting for the socket, a
 * negative errno (c is closed). */
static int tls_send(conn_t *c)
{
    tls_conn_t *t = c->tls;
    size_t off;
    buf_t *b = tls_conn_out(t, &off);
    if (!b) return 1;
    size_t len = b->len - off;
    struct iovec iov = {b->data + off, len};
    ssize_t r = send_iov(c, &iov, 1);
    if (r < 0) {
        conn_close(c);
        return (int)r;
    }
    METRICS_ADD(bytes_out, (size_t)r);
    tls_conn_out_consume(t, (size_t)r);
    if ((size_t)r == len) return 1;
    wait_writable(c);
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
        if (tls_send(c) <= 0) return;
        if (q_count(c) > 0 && tls_conn_ready(c->tls))
            continue; /* the records were over CONN_TLS_OUT_MAX: more to encrypt */
        if ((c->flags & CONN_END) && tls_conn_ready(c->tls) && tls_conn_close_notify(c->tls) > 0)
            continue;
        break;
    }
    if (q_count(c) > 0) {
        if (!(c->flags & CONN_END)) return; /* queued before the handshake completed */
        queue_release(c);                   /* ending before the handshake: nothing can be sent */
        c->pending = 0;
    }
    flushed(c);
}

static void conn_flush(conn_t *c)
{
    if (c->flags & (CONN_WRITING | CONN_CLOSING)) return;
    if (c->tls) {
        conn_flush_tls(c);
        return;
    }
    struct iovec iov[CONN_IOV_MAX];
    while (q_count(c) > 0) {
        uint32_t n = q_count(c) < CONN_IOV_MAX ? q_count(c) : CONN_IOV_MAX;
        size_t total = 0;
        for (uint32_t i = 0; i < n; i++) {
            const conn_out_t *it = q_at(c, i);
            iov[i] = (struct iovec){it->b->data + it->off, it->len};
            total += it->len;
        }
        ssize_t r = send_iov(c, iov, n);
        if (r < 0) {
            conn_close(c);
            return;
        }
        consume(c, (size_t)r);
        if ((size_t)r < total) {
            wait_writable(c);
            return;
        }
    }
    flushed(c);
}

/* Stops reading after the end of input or a read error. */
static void read_done(conn_t *c)
{
    c->flags |= CONN_EOF;
    set_reading(c, 0);
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
        if (n == 0) break;
        if (n == -EPIPE) {
            /* close_notify: the peer is done sending, as a TCP EOF says */
            read_done(c);
            if (c->flags & CONN_CLOSING) return;
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
                struct iovec iov = {b->data + off, b->len - off};
                (void)send_iov(c, &iov, 1);
            }
            conn_close(c);
            return;
        }
        c->proto->on_read(c, tls_plain_in, (size_t)n);
    }
    if (c->flags & CONN_CLOSING) return; /* closed, or moved to another worker with its session */
    if (tls_conn_stash(t) < 0) {
        conn_close(c);
        return;
    }
    size_t off;
    if (tls_conn_out(t, &off) || (q_count(c) && tls_conn_ready(t)))
        flush_list_add(c); /* handshake records, or output the handshake held back */
}

void conn_want_flush(conn_t *c)
{
    flush_list_add(c);
}

#define CONN_COALESCE_MAX 20 /* a window stretched by a long pass: at most 20 x coalesce_ms */

static void on_coalesce_end(uv_timer_t *t)
{
    worker_t *w = t->data;
    w->batch_after = 0; /* the prepare hook that follows writes what was held */
}

/* May c's output wait for the next batch? Only fan-out output, and not while a TLS
 * session holds input or a protocol frames its output in the flush (HTTP/2). */
static int may_hold(const conn_t *c)
{
    return !(c->flags & (CONN_URGENT | CONN_END | CONN_SHUT)) && !c->proto->on_flush &&
           !(c->tls && tls_conn_has_stash(c->tls));
}

void conn_flush_pending(worker_t *w)
{
    unsigned ms = w->pool->cfg.coalesce_ms;
    uint64_t start = ms ? uv_hrtime() : 0;
    int holding = ms && !w->stopping && start < w->batch_after;
    int batched = 0;
    while (!holding && w->held_head)
        list_move(w->held_head, CONN_PENDING); /* still fan-out output: not urgent */
    do {
        while (w->flush_head) {
            conn_t *c = w->flush_head;
            if (holding && may_hold(c)) {
                list_move(c, CONN_HELD);
                continue;
            }
            flush_list_remove(c);
            if (!(c->flags & CONN_URGENT)) batched = 1;
            c->flags &= ~(uint32_t)CONN_URGENT;
            if (c->tls && tls_conn_has_stash(c->tls) &&
                !(c->flags & (CONN_READ_PAUSED | CONN_SHUT))) {
                /* input held back while reading was paused, or brought along by a
                 * migration */
                tls_deliver(c, NULL, 0);
                flush_list_remove(c);
                if (c->flags & CONN_CLOSING) continue;
            }
            if (c->proto->on_flush) {
                c->proto->on_flush(c);
                flush_list_remove(c); /* what on_flush queued is written just below */
            }
            conn_flush(c);
        }
        /* what the closed conns' on_close queued elsewhere goes out before the loop
         * sleeps */
        conn_reap(w);
    } while (w->flush_head);
    if (!ms || (!batched && !w->held_head)) return;
    uint64_t end = uv_hrtime();
    if (batched) {
        /* the window is as long as the pass was, when that is longer (a large fan-out):
         * writing is then at most half the worker's time, and the pushes that come
         * meanwhile share the next pass (bounded to CONN_COALESCE_MAX windows) */
        uint64_t win = (uint64_t)ms * 1000000u, pass = end - start;
        if (pass > win) win = pass < win * CONN_COALESCE_MAX ? pass : win * CONN_COALESCE_MAX;
        w->batch_after = end + win;
    }
    if (w->held_head && !uv_is_active((uv_handle_t *)&w->coalesce)) {
        uint64_t left = w->batch_after > end ? w->batch_after - end : 0;
        uv_timer_start(&w->coalesce, on_coalesce_end, (left + 999999u) / 1000000u, 0);
    }
}

/* Reads what the socket has: into the worker's buffer, then to the protocol (through
 * TLS when c has it), until the socket is drained, a read comes back short, or c
 * stops reading. */
static void on_readable(conn_t *c)
{
    char *rbuf = c->w->rbuf;
    for (int i = 0; i < CONN_READS_MAX; i++) {
        ssize_t n = read(c->fd, rbuf, sizeof(c->w->rbuf));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n > 0) {
            if (!(c->flags & CONN_SHUT)) {
                if (c->tls)
                    tls_deliver(c, rbuf, (size_t)n);
                else
                    c->proto->on_read(c, rbuf, (size_t)n);
            }
            if (!(c->flags & CONN_READING) || (size_t)n < sizeof(c->w->rbuf))
                return; /* paused, closed, moved away; or drained */
            continue;
        }
        /* the end of input (n == 0), or a failed socket */
        int eof = n == 0;
        if (c->flags & CONN_SHUT) {
            conn_close(c);
            return;
        }
        read_done(c);
        if (c->flags & CONN_CLOSING) return;
        if (eof && c->proto->on_eof)
            c->proto->on_eof(c);
        else
            conn_close(c);
        return;
    }
}

/* One epoll event of c. */
static void on_event(conn_t *c, uint32_t ev)
{
    if (c->flags & CONN_CLOSING) return;
    if ((ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) && (c->flags & CONN_READING)) on_readable(c);
    if ((ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && (c->flags & CONN_WRITING) &&
        !(c->flags & CONN_CLOSING)) {
        c->flags &= ~(uint32_t)CONN_WRITING;
        if (watch(c) < 0) {
            conn_close(c);
            return;
        }
        conn_flush(c);
    }
}

static void on_io(uv_poll_t *p, int status, int events)
{
    (void)status, (void)events;
    worker_t *w = p->data;
    struct epoll_event ev[CONN_EVENTS_MAX];
    int n;
    do
        n = epoll_wait(w->epfd, ev, CONN_EVENTS_MAX, 0);
    while (n < 0 && errno == EINTR);
    /* a conn closed by an earlier event of this batch is still allocated (freed at
     * the safe point) and marked closing: on_event skips it */
    for (int i = 0; i < n; i++)
        on_event(ev[i].data.ptr, ev[i].events);
}

int conn_io_init(worker_t *w)
{
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (w->epfd < 0) return -errno;
    int r = uv_poll_init(&w->loop, &w->io, w->epfd);
    if (r < 0) {
        close(w->epfd);
        w->epfd = -1;
        return r;
    }
    w->io.data = w;
    return uv_poll_start(&w->io, UV_READABLE, on_io);
}

void conn_io_free(worker_t *w)
{
    if (w->epfd >= 0) close(w->epfd);
    w->epfd = -1;
}

void conn_pause_read(conn_t *c)
{
    if (c->flags & (CONN_READ_PAUSED | CONN_CLOSING)) return;
    c->flags |= CONN_READ_PAUSED;
    set_reading(c, 0);
}

void conn_resume_read(conn_t *c)
{
    if (!(c->flags & CONN_READ_PAUSED) || (c->flags & CONN_CLOSING)) return;
    c->flags &= ~(uint32_t)CONN_READ_PAUSED;
    if (!(c->flags & CONN_EOF)) set_reading(c, 1);
    if (!(c->flags & CONN_CLOSING) && c->tls && tls_conn_has_stash(c->tls))
        flush_list_add(c); /* decrypted before the next read, never inside the caller */
}

void conn_set_proto(conn_t *c, const conn_proto_t *proto, void *ud)
{
    c->proto = proto;
    c->ud = ud;
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
    if (!(c->flags & CONN_CLOSING)) set_reading(c, 1);
}

/* Counts c in the per-IP table. Returns 0, or -EUSERS when its address is at the limit. */
static int count_ip(conn_t *c)
{
    worker_pool_t *pool = c->w->pool;
    if (!pool->ips) return 0;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    ipkey_t k;
    if (getpeername(c->fd, (struct sockaddr *)&ss, &len) < 0 ||
        ipkey_from_sockaddr((struct sockaddr *)&ss, &k) < 0)
        return 0; /* no address to count (the peer is already gone) */
    int r = iptable_acquire(pool->ips, &k, pool->cfg.max_connections_per_ip, &c->ip);
    return r == -EUSERS ? r : 0;
}

/* A new conn of w on fd (taken), linked in w's connections. Returns it, or NULL (fd
 * closed) when out of memory. */
static conn_t *conn_new(worker_t *w, int fd, const conn_proto_t *proto)
{
    conn_t *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return NULL;
    }
    c->fd = fd;
    c->w = w;
    c->proto = proto;
    c->next = w->conns;
    if (w->conns) w->conns->prev = c;
    w->conns = c;
    w->n_conns++;
    return c;
}

int conn_accept(worker_t *w, int fd, const conn_proto_t *proto)
{
    uint32_t max = w->pool->cfg.max_connections;
    uint32_t n = __atomic_add_fetch(&w->pool->connections, 1, __ATOMIC_RELAXED);
    conn_t *c = conn_new(w, fd, proto);
    if (!c) {
        __atomic_sub_fetch(&w->pool->connections, 1, __ATOMIC_RELAXED);
        return -ENOMEM;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
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
        return -ENOMEM;
    }
    if (proto->on_open) proto->on_open(c);
    if (c->flags & CONN_CLOSING) return 0;
    c->flags |= CONN_READING;
    int r = watch(c);
    if (r < 0) conn_close(c);
    return r;
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
    conn_t *c = conn_new(w, mm->fd, mm->proto);
    if (!c) {
        tls_conn_free(mm->tls);
        __atomic_sub_fetch(&w->pool->connections, 1, __ATOMIC_RELAXED);
        if (mm->ip) iptable_release(w->pool->ips, mm->ip);
        buf_unref(mm->first);
        free(mm);
        return;
    }
    c->tls = mm->tls;
    c->ip = mm->ip;
    if (mm->proto->on_open) mm->proto->on_open(c);
    if (!(c->flags & CONN_CLOSING)) set_reading(c, 1);
    if (!(c->flags & CONN_CLOSING) && mm->first && mm->first->len)
        c->proto->on_read(c, mm->first->data, mm->first->len);
    size_t off;
    if (!(c->flags & CONN_CLOSING) && c->tls &&
        (tls_conn_has_stash(c->tls) || tls_conn_out(c->tls, &off)))
        flush_list_add(c); /* input that followed the request, records not yet sent */
    buf_unref(mm->first);
    free(mm);
}

static void migrated_away_close(conn_t *c)
{
    (void)c; /* the socket lives on elsewhere; nothing of it is ours */
}

static const conn_proto_t migrated_proto = {
    .name = "migrated", .on_read = NULL, .on_close = migrated_away_close};

int conn_migrate(conn_t *c, worker_t *to, const conn_proto_t *proto, buf_t *first)
{
    if (q_count(c) || (c->flags & (CONN_WRITING | CONN_CLOSING | CONN_END | CONN_SHUT)))
        return -EBUSY;
    int nfd = fcntl(c->fd, F_DUPFD_CLOEXEC, 0);
    if (nfd < 0) return -errno;
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
    c->proto = &migrated_proto;
    c->ud = NULL;
    conn_close(c); /* out of this worker's epoll set before the other adds it */
    worker_post(to, &mm->base);
    return 0;
}
