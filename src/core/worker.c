/* Worker threads, their listeners, inboxes, flush hooks and shutdown. */
#include "core/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"

#define WORKER_TICK_MS 250

static __thread worker_t *worker_self;

worker_t *worker_current(void)
{
    return worker_self;
}

uint64_t worker_now(worker_t *w)
{
    return uv_now(&w->loop);
}

int worker_post(worker_t *w, worker_msg_t *m)
{
    m->next = NULL;
    uv_mutex_lock(&w->inbox_mu);
    if (w->inbox_tail)
        w->inbox_tail->next = m;
    else
        w->inbox_head = m;
    w->inbox_tail = m;
    uv_mutex_unlock(&w->inbox_mu);
    uv_async_send(&w->async);
    return 0;
}

static void on_async(uv_async_t *a)
{
    worker_t *w = a->data;
    uv_mutex_lock(&w->inbox_mu);
    worker_msg_t *m = w->inbox_head;
    w->inbox_head = w->inbox_tail = NULL;
    uv_mutex_unlock(&w->inbox_mu);
    while (m) {
        worker_msg_t *next = m->next;
        m->fn(w, m);
        m = next;
    }
}

static void on_prepare(uv_prepare_t *p)
{
    conn_flush_pending(p->data);
}

#define WORKER_ACCEPT_PAUSE_MS 100

static void on_connection(uv_poll_t *p, int status, int events);

static void on_accept_pause_end(uv_timer_t *t)
{
    worker_t *w = t->data;
    if (w->reserve_fd < 0) w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (w->listen_fd >= 0 && !uv_is_closing((uv_handle_t *)&w->listener))
        uv_poll_start(&w->listener, UV_READABLE, on_connection);
}

/* Out of descriptors: the pending connections are taken off the backlog and closed
 * (with the reserve descriptor given up for the time: libuv's trick), and the
 * listener rests WORKER_ACCEPT_PAUSE_MS, so a full descriptor table (whose reserve
 * another worker may just have taken) does not spin the loop on a readable listener
 * that cannot be accepted from. */
static void accept_and_drop(worker_t *w)
{
    if (w->reserve_fd >= 0) {
        close(w->reserve_fd);
        int fd;
        while ((fd = accept4(w->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
            close(fd);
        w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    uv_poll_stop(&w->listener);
    uv_timer_start(&w->accept_pause, on_accept_pause_end, WORKER_ACCEPT_PAUSE_MS, 0);
}

/* The listener is readable: accept a batch (the rest comes at the next loop turn). */
static void on_connection(uv_poll_t *p, int status, int events)
{
    (void)events;
    worker_t *w = p->data;
    if (status < 0) {
        log_warn("accept failed", "error=%s", uv_strerror(status));
        return;
    }
    for (int i = 0; i < 128 && w->listen_fd >= 0; i++) {
        int fd = accept4(w->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (e == EINTR || e == ECONNABORTED) continue;
            if (e == EAGAIN || e == EWOULDBLOCK) return;
            log_warn("accept failed", "error=%s", uv_strerror(-e));
            if (e == EMFILE || e == ENFILE) accept_and_drop(w);
            return;
        }
        int r = conn_accept(w, fd, w->pool->cfg.accept_proto);
        if (r < 0 && r != UV_EMFILE) log_warn("accept failed", "error=%s", uv_strerror(r));
    }
}

/* Stops listening: the poll handle first, then the socket. */
static void listener_close(worker_t *w)
{
    if (!uv_is_closing((uv_handle_t *)&w->listener)) uv_close((uv_handle_t *)&w->listener, NULL);
    uv_timer_stop(&w->accept_pause);
    if (w->listen_fd >= 0) close(w->listen_fd);
    w->listen_fd = -1;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* The goodbye: every connection is told the protocol's way. */
static void goodbye(worker_t *w)
{
    w->stopping = WORKER_GOODBYE;
    w->stop_deadline = uv_now(&w->loop) + w->pool->cfg.shutdown_timeout_ms;
    if (w->pool->cfg.on_stopping) w->pool->cfg.on_stopping(w, w->pool->cfg.arg);
    for (conn_t *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (c->flags & CONN_CLOSING) continue;
        if (c->proto->on_shutdown)
            c->proto->on_shutdown(c);
        else
            conn_end(c);
    }
}

static int drained(worker_t *w, uint64_t now)
{
    const worker_pool_cfg_t *cfg = &w->pool->cfg;
    return now >= w->grace_deadline || !cfg->busy || !cfg->busy(w, cfg->arg);
}

static void on_tick(uv_timer_t *t)
{
    worker_t *w = t->data;
    uint64_t now = uv_now(&w->loop);
    for (conn_t *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (c->flags & CONN_CLOSING) continue;
        if ((c->flags & CONN_SHUT) && c->deadline && now >= c->deadline) {
            conn_close(c);
            continue;
        }
        if (c->proto->on_tick) c->proto->on_tick(c, now);
    }
    if (w->stopping == WORKER_DRAINING && drained(w, now)) goodbye(w);
    if (w->stopping == WORKER_GOODBYE && (w->n_conns == 0 || now >= w->stop_deadline)) {
        for (conn_t *c = w->conns; c; c = c->next)
            conn_close(c);
        if (w->n_conns == 0 || now >= w->stop_deadline + 1000) uv_stop(&w->loop);
    }
}

static void on_stop_msg(worker_t *w, worker_msg_t *m)
{
    free(m);
    if (w->stopping) return;
    w->stopping = WORKER_DRAINING;
    uv_update_time(&w->loop);
    w->grace_deadline = uv_now(&w->loop) + w->pool->cfg.grace_ms;
    listener_close(w);
    if (w->pool->cfg.on_draining) w->pool->cfg.on_draining(w, w->pool->cfg.arg);
    /* nothing to wait for: say goodbye now rather than at the next tick */
    if (drained(w, uv_now(&w->loop))) goodbye(w);
}

static void worker_main(void *arg)
{
    worker_t *w = arg;
    worker_self = w;
    log_set_worker(w->index);
    __atomic_add_fetch(&w->pool->ready, 1, __ATOMIC_RELEASE);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    if (w->pool->cfg.on_stop) w->pool->cfg.on_stop(w, w->pool->cfg.arg);
    for (conn_t *c = w->conns; c; c = c->next)
        conn_close(c);
    conn_reap(w);
    listener_close(w);
    uv_walk(&w->loop, close_walk, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    /* whatever is still in the inbox was meant for a loop that has ended */
    on_async(&w->async);
    for (conn_t *c = w->conns; c; c = c->next)
        conn_close(c); /* adopted by a migration that came too late */
    conn_reap(w);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    __atomic_sub_fetch(&w->pool->running, 1, __ATOMIC_RELEASE);
}

static int listen_socket(const char *host, int port, int *fdp)
{
    struct sockaddr_storage ss;
    int r = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
    if (r < 0 && (r = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss)) < 0) return r;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
        goto fail;
    socklen_t len =
        ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    if (bind(fd, (struct sockaddr *)&ss, len) < 0) goto fail;
    *fdp = fd;
    return 0;
fail:
    r = -errno;
    close(fd);
    return r;
}

static int worker_init(worker_pool_t *pool, int index, worker_t **out)
{
    worker_t *w = calloc(1, sizeof(*w));
    if (!w) return UV_ENOMEM;
    w->index = index;
    w->pool = pool;
    w->listen_fd = w->epfd = -1;
    w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int r;
    if ((r = uv_loop_init(&w->loop)) < 0) goto fail_loop;
    if ((r = uv_mutex_init(&w->inbox_mu)) < 0) goto fail_mutex;
    uv_async_init(&w->loop, &w->async, on_async);
    w->async.data = w;
    uv_prepare_init(&w->loop, &w->prepare);
    w->prepare.data = w;
    uv_prepare_start(&w->prepare, on_prepare);
    uv_timer_init(&w->loop, &w->tick);
    w->tick.data = w;
    uv_timer_start(&w->tick, on_tick, WORKER_TICK_MS, WORKER_TICK_MS);
    uv_unref((uv_handle_t *)&w->tick);
    uv_timer_init(&w->loop, &w->accept_pause);
    w->accept_pause.data = w;
    uv_unref((uv_handle_t *)&w->accept_pause);
    uv_timer_init(&w->loop, &w->coalesce);
    w->coalesce.data = w;
    uv_unref((uv_handle_t *)&w->coalesce);
    if ((r = conn_io_init(w)) < 0) goto fail_listen;
    if ((r = listen_socket(pool->cfg.host, pool->cfg.port, &w->listen_fd)) < 0) goto fail_listen;
    if (listen(w->listen_fd, 4096) < 0) {
        r = -errno;
        goto fail_listen;
    }
    if ((r = uv_poll_init(&w->loop, &w->listener, w->listen_fd)) < 0) goto fail_listen;
    w->listener.data = w;
    if ((r = uv_poll_start(&w->listener, UV_READABLE, on_connection)) < 0) goto fail_listen;
    *out = w;
    return 0;
fail_listen:
    uv_walk(&w->loop, close_walk, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    if (w->listen_fd >= 0) close(w->listen_fd);
    conn_io_free(w);
    uv_mutex_destroy(&w->inbox_mu);
fail_mutex:
    uv_loop_close(&w->loop);
fail_loop:
    if (w->reserve_fd >= 0) close(w->reserve_fd);
    free(w);
    return r;
}

static void worker_free(worker_t *w)
{
    uv_loop_close(&w->loop);
    if (w->listen_fd >= 0) close(w->listen_fd);
    conn_io_free(w);
    if (w->reserve_fd >= 0) close(w->reserve_fd);
    uv_mutex_destroy(&w->inbox_mu);
    free(w);
}

/* Asks w to stop (on_stop_msg on its thread). */
static void post_stop(worker_t *w)
{
    worker_msg_t *m = malloc(sizeof(*m));
    if (!m) return;
    m->fn = on_stop_msg;
    worker_post(w, m);
}

/* Frees workers [from, to) whose threads never ran, then the pool's array. */
static void discard(worker_pool_t *pool, int from, int to)
{
    for (int j = from; j < to; j++) {
        uv_walk(&pool->workers[j]->loop, close_walk, NULL);
        uv_run(&pool->workers[j]->loop, UV_RUN_DEFAULT);
        worker_free(pool->workers[j]);
    }
    free(pool->workers);
    pool->workers = NULL;
    iptable_free(pool->ips);
    pool->ips = NULL;
}

int worker_pool_start(worker_pool_t *pool, const worker_pool_cfg_t *cfg)
{
    memset(pool, 0, sizeof(*pool));
    pool->cfg = *cfg;
    if (cfg->max_connections_per_ip && iptable_new(&pool->ips) < 0) return UV_ENOMEM;
    pool->workers = calloc((size_t)cfg->n, sizeof(*pool->workers));
    if (!pool->workers) {
        iptable_free(pool->ips);
        pool->ips = NULL;
        return UV_ENOMEM;
    }
    int r = 0, i;
    /* port 0: the first listener picks a port, the rest share it */
    for (i = 0; i < cfg->n; i++) {
        if ((r = worker_init(pool, i, &pool->workers[i])) < 0) goto fail_init;
        if (pool->cfg.port == 0) {
            struct sockaddr_storage ss;
            socklen_t len = sizeof(ss);
            memset(&ss, 0, sizeof(ss));
            (void)getsockname(pool->workers[i]->listen_fd, (struct sockaddr *)&ss, &len);
            pool->cfg.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        }
    }
    pool->n = cfg->n;
    pool->running = cfg->n;
    /* every worker is known to the node before any of them serves a request */
    for (i = 0; i < cfg->n; i++)
        if (cfg->on_start) cfg->on_start(pool->workers[i], cfg->arg);
    for (i = 0; i < cfg->n; i++)
        if ((r = uv_thread_create(&pool->workers[i]->thread, worker_main, pool->workers[i])) < 0)
            goto fail_thread;
    return 0;
fail_thread:
    /* threads already running are stopped and joined; the rest are freed below */
    for (int j = 0; j < i; j++) {
        post_stop(pool->workers[j]);
        uv_thread_join(&pool->workers[j]->thread);
        worker_free(pool->workers[j]);
    }
    discard(pool, i, cfg->n);
    return r;
fail_init:
    discard(pool, 0, i);
    return r;
}

void worker_pool_stop(worker_pool_t *pool)
{
    for (int i = 0; i < pool->n; i++)
        post_stop(pool->workers[i]);
}

void worker_pool_join(worker_pool_t *pool)
{
    for (int i = 0; i < pool->n; i++) {
        uv_thread_join(&pool->workers[i]->thread);
        worker_free(pool->workers[i]);
    }
    free(pool->workers);
    pool->workers = NULL;
    pool->n = 0;
    iptable_free(pool->ips);
    pool->ips = NULL;
}
