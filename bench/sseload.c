/* sseload: fan-out load for pushgate's channels and streams. Opens N subscribers
 * (EventSource-style raw SSE readers on a stream or on channels, or WebSocket channel
 * subscribers), then publishes M pushes (POST /api/push on a channel, or POST
 * /event/v1/events to a stream) and measures what every subscriber receives: deliveries,
 * deliveries a second, and publish→receive latency (CLOCK_MONOTONIC written into the
 * payload as "bench_t" just before the request goes out). Loopback only. Prints a
 * summary and one `RESULT tool=sseload key=value …` line; exits non-zero when a
 * subscriber failed to connect or a delivery is missing. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

enum { MODE_SSE, MODE_WS, MODE_SIO };
enum { PUB_CHANNEL, PUB_EVENT, PUB_RAW };
enum { ST_CONNECTING, ST_HEAD, ST_SUBSCRIBING, ST_READY, ST_DEAD };

static struct {
    const char *url;
    struct sockaddr_in dst;
    int mode;
    const char *path;
    const char *channel;
    const char *session;
    unsigned clients;
    unsigned threads;
    unsigned connect_conc;
    unsigned connect_timeout_s;
    unsigned sources_count;
    const char *sources;
    int publish;
    const char *publish_path;
    const char *key;
    unsigned pushes;
    unsigned publishers;
    unsigned rate;
    unsigned payload;
    unsigned drain_s;
    const char *ws_path;     /* a WebSocket that needs no subscribe message (peers) */
    const char *server_pids; /* RSS and CPU of these processes are reported */
    unsigned hold_s;         /* idle hold between "all ready" and publishing */
    int warmup;              /* one unmeasured push, delivered everywhere, first */
} opt = {
    .mode = MODE_SSE,
    .path = "/sse?channel=bench",
    .channel = "bench",
    .session = "bench",
    .clients = 1000,
    .threads = 1,
    .connect_conc = 256,
    .connect_timeout_s = 60,
    .publish = PUB_CHANNEL,
    .key = "bench-key",
    .pushes = 100,
    .publishers = 1,
    .payload = 100,
    .drain_s = 10,
};

typedef struct conn_s {
    int fd;
    int state;
    unsigned idx;
    char *buf;
    size_t len, cap;
    uint64_t received;
} conn_t;

typedef struct rthread_s {
    pthread_t th;
    int ep;
    conn_t *conns;
    unsigned n;
    unsigned next_connect; /* index of the next connection to open */
    unsigned in_flight;
    bench_hist_t hist;
    const struct in_addr *srcs;
    size_t nsrc;
} rthread_t;

static atomic_uint ready_count, failed_count, closed_count;
static atomic_ullong delivered_total;
static atomic_ullong warm_total; /* deliveries of the warm-up push (bench_t 0) */
static atomic_int warming;
static atomic_int stop_flag;
static atomic_uint pushes_next, pushes_ok, pushes_failed;
static uint64_t t_publish_start;
static atomic_ullong t_last_delivery;

/* ---- small helpers ---- */

static int buf_grow(conn_t *c, size_t need)
{
    if (c->len + need <= c->cap) return 0;
    size_t cap = c->cap ? c->cap : 4096;
    while (cap < c->len + need)
        cap *= 2;
    char *b = realloc(c->buf, cap);
    if (!b) return -1;
    c->buf = b;
    c->cap = cap;
    return 0;
}

static void consume(conn_t *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                struct timespec ts = {0, 100000};
                nanosleep(&ts, NULL);
                continue;
            }
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Finds "bench_t": in [p, p+n) and records a delivery with its latency. */
static void record(rthread_t *t, conn_t *c, const char *p, size_t n)
{
    static const char key[] = "\"bench_t\":";
    const char *m = memmem(p, n, key, sizeof(key) - 1);
    if (!m) return;
    m += sizeof(key) - 1;
    uint64_t v = 0;
    while (m < p + n && *m >= '0' && *m <= '9')
        v = v * 10 + (uint64_t)(*m++ - '0');
    if (v == 0) {
        atomic_fetch_add(&warm_total, 1);
        return;
    }
    uint64_t now = bench_now_ns();
    bench_hist_add(&t->hist, now > v ? now - v : 0);
    c->received++;
    atomic_fetch_add(&delivered_total, 1);
    atomic_store(&t_last_delivery, now);
}

static void kill_conn(rthread_t *t, conn_t *c, int failed)
{
    (void)t;
    if (c->state == ST_DEAD) return;
    int was_ready = c->state == ST_READY;
    if (c->state == ST_CONNECTING || c->state == ST_HEAD || c->state == ST_SUBSCRIBING) {
        if (t->in_flight) t->in_flight--;
    }
    c->state = ST_DEAD;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    if (failed && !was_ready)
        atomic_fetch_add(&failed_count, 1);
    else
        atomic_fetch_add(&closed_count, 1);
}

/* ---- subscribers ---- */

static void send_request(conn_t *c)
{
    char req[1024];
    int n;
    if (opt.mode == MODE_SSE)
        n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n",
                     opt.path);
    else if (opt.ws_path)
        n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\n"
                     "Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     opt.ws_path);
    else
        n = snprintf(req, sizeof(req),
                     "GET /websocket?sessionId=%s&clientId=sse-bench-%u HTTP/1.1\r\n"
                     "Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     opt.session, c->idx);
    if (write_all(c->fd, req, (size_t)n) < 0) c->state = -1;
}

/* A masked client frame (zero mask key: the payload goes as is). */
static void ws_send(conn_t *c, int opcode, const char *p, size_t n)
{
    char f[256];
    if (n > 125 || n + 6 > sizeof(f)) return;
    f[0] = (char)(0x80 | opcode);
    f[1] = (char)(0x80 | n);
    memset(f + 2, 0, 4);
    memcpy(f + 6, p, n);
    write_all(c->fd, f, n + 6);
}

static void became_ready(rthread_t *t, conn_t *c)
{
    c->state = ST_READY;
    if (t->in_flight) t->in_flight--;
    atomic_fetch_add(&ready_count, 1);
}

static void on_head(rthread_t *t, conn_t *c)
{
    char *e = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!e) return;
    int want = opt.mode == MODE_SSE ? 200 : 101;
    int status = 0;
    if (c->len > 12 && memcmp(c->buf, "HTTP/1.1 ", 9) == 0) status = atoi(c->buf + 9);
    if (status != want) {
        fprintf(stderr, "sseload: subscriber %u: status %d: %.*s\n", c->idx, status,
                (int)(c->len < 300 ? c->len : 300), c->buf);
        kill_conn(t, c, 1);
        return;
    }
    consume(c, (size_t)(e + 4 - c->buf));
    if (opt.mode == MODE_SSE || (opt.mode == MODE_WS && opt.ws_path)) {
        became_ready(t, c);
    } else if (opt.mode == MODE_SIO) {
        c->state = ST_SUBSCRIBING; /* until the namespace CONNECT is answered */
    } else {
        char sub[160];
        int n = snprintf(sub, sizeof(sub), "{\"type\":\"subscribe\",\"channels\":[\"%s\"]}",
                         opt.channel);
        ws_send(c, 1, sub, (size_t)n);
        c->state = ST_SUBSCRIBING;
    }
}

static void on_sse(rthread_t *t, conn_t *c)
{
    size_t off = 0;
    for (;;) {
        char *nl = memchr(c->buf + off, '\n', c->len - off);
        if (!nl) break;
        size_t ll = (size_t)(nl - (c->buf + off));
        if (ll > 6 && memcmp(c->buf + off, "data: ", 6) == 0) record(t, c, c->buf + off, ll);
        off += ll + 1;
    }
    if (off) consume(c, off);
}

static void on_ws(rthread_t *t, conn_t *c)
{
    for (;;) {
        if (c->len < 2) return;
        unsigned char *b = (unsigned char *)c->buf;
        int opcode = b[0] & 0x0f;
        uint64_t n = b[1] & 0x7f;
        size_t h = 2;
        if (n == 126) {
            if (c->len < 4) return;
            n = ((uint64_t)b[2] << 8) | b[3];
            h = 4;
        } else if (n == 127) {
            if (c->len < 10) return;
            n = 0;
            for (int i = 0; i < 8; i++)
                n = (n << 8) | b[2 + i];
            h = 10;
        }
        if (c->len < h + n) return;
        const char *p = c->buf + h;
        if (opcode == 1 && opt.mode == MODE_SIO) {
            /* Engine.IO over WebSocket: 0 open, 2 ping, 40 connected, 42 event */
            if (n >= 1 && p[0] == '0')
                ws_send(c, 1, "40", 2);
            else if (n == 1 && p[0] == '2')
                ws_send(c, 1, "3", 1);
            else if (n >= 2 && p[0] == '4' && p[1] == '0' && c->state == ST_SUBSCRIBING) {
                /* connected to /: join the channel, ready once that is acked */
                char sub[160];
                int sl = snprintf(sub, sizeof(sub), "420[\"subscribe\",[\"%s\"]]", opt.channel);
                ws_send(c, 1, sub, (size_t)sl);
            } else if (n >= 3 && memcmp(p, "430", 3) == 0 && c->state == ST_SUBSCRIBING)
                became_ready(t, c);
            else if (n >= 2 && p[0] == '4' && p[1] == '2')
                record(t, c, p, n);
        } else if (opcode == 1) {
            if (c->state == ST_SUBSCRIBING) {
                if (memmem(p, n, "\"subscribed\"", 12))
                    became_ready(t, c);
                else if (memmem(p, n, "\"error\"", 7)) {
                    fprintf(stderr, "sseload: ws %u: %.*s\n", c->idx, (int)n, p);
                    kill_conn(t, c, 1);
                    return;
                }
            } else {
                record(t, c, p, n);
            }
        } else if (opcode == 9) {
            ws_send(c, 0xa, p, n);
        } else if (opcode == 8) {
            kill_conn(t, c, 0);
            return;
        }
        consume(c, h + n);
    }
}

static void open_more(rthread_t *t)
{
    while (t->next_connect < t->n && t->in_flight < opt.connect_conc) {
        conn_t *c = &t->conns[t->next_connect];
        const struct in_addr *src = t->nsrc ? &t->srcs[t->next_connect % t->nsrc] : NULL;
        t->next_connect++;
        c->fd = bench_connect(&opt.dst, src, 1);
        if (c->fd < 0) {
            fprintf(stderr, "sseload: connect: %s\n", strerror(-c->fd));
            c->fd = -1;
            c->state = ST_DEAD;
            atomic_fetch_add(&failed_count, 1);
            continue;
        }
        c->state = ST_CONNECTING;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
        epoll_ctl(t->ep, EPOLL_CTL_ADD, c->fd, &ev);
        t->in_flight++;
    }
}

static void *reader(void *arg)
{
    rthread_t *t = arg;
    struct epoll_event evs[256];
    open_more(t);
    while (!atomic_load(&stop_flag)) {
        int n = epoll_wait(t->ep, evs, 256, 50);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c->state == ST_DEAD) continue;
            if (c->state == ST_CONNECTING) {
                if (evs[i].events & (EPOLLERR | EPOLLHUP)) {
                    kill_conn(t, c, 1);
                    continue;
                }
                if (evs[i].events & EPOLLOUT) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev);
                    c->state = ST_HEAD;
                    send_request(c);
                    if (c->state < 0) {
                        c->state = ST_HEAD;
                        kill_conn(t, c, 1);
                        continue;
                    }
                }
            }
            if (!(evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            for (;;) {
                if (buf_grow(c, 65536) < 0) {
                    kill_conn(t, c, 1);
                    break;
                }
                ssize_t r = read(c->fd, c->buf + c->len, c->cap - c->len);
                if (r < 0 && errno == EINTR) continue;
                if (r < 0 && errno == EAGAIN) break;
                if (r <= 0) {
                    kill_conn(t, c, 1);
                    break;
                }
                c->len += (size_t)r;
                if (c->state == ST_HEAD) on_head(t, c);
                if (c->state == ST_DEAD) break;
                if (c->state != ST_HEAD) {
                    if (opt.mode == MODE_SSE)
                        on_sse(t, c);
                    else
                        on_ws(t, c);
                }
                if (c->state == ST_DEAD) break;
                if ((size_t)r < 65536) break;
            }
        }
        open_more(t);
    }
    return NULL;
}

/* ---- publishers ---- */

static int pub_connect(void)
{
    int fd = bench_connect(&opt.dst, NULL, 0);
    return fd;
}

/* Reads one HTTP response; returns its status or -1. */
static int read_response(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r <= 0) return -1;
        len += (size_t)r;
        buf[len] = '\0';
        char *e = strstr(buf, "\r\n\r\n");
        if (!e) continue;
        size_t body = 0;
        char *cl = strcasestr(buf, "\r\nContent-Length:");
        if (cl && cl < e) body = strtoul(cl + 17, NULL, 10);
        size_t total = (size_t)(e + 4 - buf) + body;
        if (total >= cap) return -1;
        while (len < total) {
            r = read(fd, buf + len, cap - 1 - len);
            if (r <= 0) return -1;
            len += (size_t)r;
        }
        return atoi(buf + 9);
    }
}

static void *publisher(void *arg)
{
    (void)arg;
    int fd = pub_connect();
    if (fd < 0) {
        fprintf(stderr, "sseload: publisher connect: %s\n", strerror(-fd));
        return NULL;
    }
    char *pad = malloc(opt.payload + 1);
    size_t body_cap = opt.payload + 1024;
    char *body = malloc(body_cap);
    char *req = malloc(body_cap + 1024);
    char resp[65536];
    if (!pad || !body || !req) return NULL;
    for (;;) {
        unsigned k = atomic_fetch_add(&pushes_next, 1);
        if (k >= opt.pushes || atomic_load(&stop_flag)) break;
        if (opt.rate) {
            uint64_t at = t_publish_start + (uint64_t)k * 1000000000ull / opt.rate;
            uint64_t now = bench_now_ns();
            if (at > now) {
                struct timespec ts = {(time_t)((at - now) / 1000000000ull),
                                      (long)((at - now) % 1000000000ull)};
                nanosleep(&ts, NULL);
            }
        }
        uint64_t t = atomic_load(&warming) ? 0 : bench_now_ns();
        /* {"bench_t":T,"pad":"…"} is exactly --payload-bytes long (at least its frame) */
        char head[64];
        int hl = snprintf(head, sizeof(head), "{\"bench_t\":%" PRIu64 ",\"pad\":\"", t);
        size_t padn = opt.payload > (unsigned)hl + 2 ? opt.payload - (unsigned)hl - 2 : 0;
        memset(pad, 'x', padn);
        pad[padn] = '\0';
        int bl;
        if (opt.publish == PUB_RAW)
            bl = snprintf(body, body_cap, "%s%s\"}", head, pad);
        else if (opt.publish == PUB_CHANNEL)
            bl = snprintf(body, body_cap,
                          "{\"channel\":\"%s\",\"event\":\"bench\",\"data\":%s%s\"}}", opt.channel,
                          head, pad);
        else
            bl = snprintf(
                body, body_cap,
                "{\"namespace\":\"bench\",\"name\":\"tick\",\"timestamp\":\"2026-01-01T00:00:00Z\","
                "\"payload\":%s%s\"}}",
                head, pad);
        const char *path = opt.publish_path
                               ? opt.publish_path
                               : (opt.publish == PUB_CHANNEL ? "/api/push" : "/event/v1/events");
        int rl = snprintf(req, body_cap + 1024,
                          "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                          "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                          path, opt.key, bl, body);
        int status = -1;
        if (write_all(fd, req, (size_t)rl) == 0) status = read_response(fd, resp, sizeof(resp));
        /* Nchan answers 201 (or 202 with no subscriber); everyone else 200 */
        if (status == 200 || (opt.publish == PUB_RAW && (status == 201 || status == 202))) {
            atomic_fetch_add(&pushes_ok, 1);
        } else {
            atomic_fetch_add(&pushes_failed, 1);
            fprintf(stderr, "sseload: push %u: status %d %.200s\n", k, status, resp);
            close(fd);
            fd = pub_connect();
            if (fd < 0) break;
        }
    }
    if (fd >= 0) close(fd);
    free(pad);
    free(body);
    free(req);
    return NULL;
}

/* ---- the server's side ---- */

enum server_stat { STAT_RSS_KB, STAT_CPU_S, STAT_WRITES };

/* Sums one /proc figure over the comma-separated --server-pids (nginx runs one process
 * per worker): VmRSS in KiB, CPU seconds, or write-family syscalls (deliveries per
 * write says how many frames a server coalesces). A process that cannot be read adds
 * nothing. Returns the sum, 0 when no pid is given. */
static double servers_sum(enum server_stat what)
{
    double sum = 0;
    for (const char *p = opt.server_pids; p && *p;) {
        long pid = strtol(p, (char **)&p, 10);
        double v = what == STAT_RSS_KB  ? (double)bench_rss_kb(pid)
                   : what == STAT_CPU_S ? bench_cpu_s(pid)
                                        : (double)bench_write_syscalls(pid);
        if (v > 0) sum += v;
        while (*p == ',')
            p++;
    }
    return sum;
}

/* Server RSS in KiB, or -1 when no pid is given. */
static long servers_rss_kb(void)
{
    return opt.server_pids ? (long)servers_sum(STAT_RSS_KB) : -1;
}

static const char *mode_name(void)
{
    return opt.mode == MODE_SSE ? "sse" : opt.mode == MODE_SIO ? "sio" : "ws";
}

/* ---- main ---- */

static void usage(FILE *f)
{
    fputs(
        "usage: sseload [options]\n"
        "  --url URL                 server, http://127.0.0.1:8080 (loopback only)\n"
        "  --mode sse|ws|sio         raw SSE readers (GET --path), WebSocket channel\n"
        "                            subscribers (/websocket, subscribe to --channel), or\n"
        "                            socket.io v4 clients over WebSocket at --ws-path (sse)\n"
        "  --ws-path PATH            ws: open this path, no subscribe message (peers: Nchan,\n"
        "                            a ws broadcast server); sio: the Engine.IO WebSocket URL\n"
        "  --path PATH               SSE request path (/sse?channel=bench)\n"
        "  --channel NAME            channel pushed to, and subscribed to in ws mode (bench)\n"
        "  --session-id S            ws mode: sessionId (bench)\n"
        "  --clients N               subscribers (1000)\n"
        "  --threads T               reader threads (1)\n"
        "  --connect-concurrency C   connections being opened at once (256)\n"
        "  --connect-timeout S       give up opening subscribers after S seconds (60)\n"
        "  --sources-count K         use 127.0.0.1 .. 127.0.0.K as source addresses\n"
        "  --sources A,B,...         loopback source addresses, used round-robin\n"
        "  --publish channel|event|raw  POST /api/push to --channel, a domain event\n"
        "                            (namespace bench, name tick) to /event/v1/events, or the\n"
        "                            bare {\"bench_t\":…} document to --publish-path (channel)\n"
        "  --publish-path PATH       request path of the publisher (/api/push, /event/v1/events)\n"
        "  --key KEY                 publish API key (bench-key)\n"
        "  --pushes M                pushes to publish (100)\n"
        "  --publishers P            keep-alive publishers, one request in flight each (1)\n"
        "  --rate R                  at most R pushes a second (0: as fast as answered)\n"
        "  --payload-bytes B         size of the pushed data {\"bench_t\":…,\"pad\":…} (100)\n"
        "  --drain-timeout S         stop waiting after S seconds without a delivery (10)\n"
        "  --server-pids P,Q,...     report these processes' RSS (before connecting, after the\n"
        "                            hold) and CPU time over the publish window\n"
        "  --hold S                  hold the ready subscribers idle S seconds first (0)\n"
        "  --warmup                  publish one unmeasured push (bench_t 0) and wait up to 5 s\n"
        "                            for every subscriber to get it before measuring\n",
        f);
}

static int parse_args(int argc, char **argv)
{
    static const struct option lo[] = {{"url", 1, 0, 'u'},
                                       {"mode", 1, 0, 'm'},
                                       {"path", 1, 0, 'p'},
                                       {"channel", 1, 0, 'c'},
                                       {"session-id", 1, 0, 's'},
                                       {"clients", 1, 0, 'n'},
                                       {"threads", 1, 0, 't'},
                                       {"connect-concurrency", 1, 0, 'C'},
                                       {"connect-timeout", 1, 0, 'T'},
                                       {"sources-count", 1, 0, 'S'},
                                       {"sources", 1, 0, 'A'},
                                       {"publish", 1, 0, 'P'},
                                       {"publish-path", 1, 0, 'Q'},
                                       {"ws-path", 1, 0, 'W'},
                                       {"server-pids", 1, 0, 'Z'},
                                       {"hold", 1, 0, 'H'},
                                       {"warmup", 0, 0, 'w'},
                                       {"key", 1, 0, 'k'},
                                       {"pushes", 1, 0, 'M'},
                                       {"publishers", 1, 0, 'B'},
                                       {"rate", 1, 0, 'r'},
                                       {"payload-bytes", 1, 0, 'b'},
                                       {"drain-timeout", 1, 0, 'd'},
                                       {"help", 0, 0, 'h'},
                                       {0, 0, 0, 0}};
    int o;
    uint64_t v;
#define NUM(field, max)                                                                            \
    do {                                                                                           \
        if (bench_parse_u64(optarg, (max), &v) != 0) {                                             \
            fprintf(stderr, "sseload: bad number %s\n", optarg);                                   \
            return -1;                                                                             \
        }                                                                                          \
        opt.field = (unsigned)v;                                                                   \
    } while (0)
    while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (o) {
        case 'u':
            opt.url = optarg;
            break;
        case 'm':
            if (strcmp(optarg, "sse") == 0)
                opt.mode = MODE_SSE;
            else if (strcmp(optarg, "ws") == 0)
                opt.mode = MODE_WS;
            else if (strcmp(optarg, "sio") == 0)
                opt.mode = MODE_SIO;
            else
                return -1;
            break;
        case 'p':
            opt.path = optarg;
            break;
        case 'c':
            opt.channel = optarg;
            break;
        case 's':
            opt.session = optarg;
            break;
        case 'n':
            NUM(clients, 1000000);
            break;
        case 't':
            NUM(threads, 64);
            break;
        case 'C':
            NUM(connect_conc, 100000);
            break;
        case 'T':
            NUM(connect_timeout_s, 3600);
            break;
        case 'S':
            NUM(sources_count, 254);
            break;
        case 'P':
            if (strcmp(optarg, "channel") == 0)
                opt.publish = PUB_CHANNEL;
            else if (strcmp(optarg, "event") == 0)
                opt.publish = PUB_EVENT;
            else if (strcmp(optarg, "raw") == 0)
                opt.publish = PUB_RAW;
            else
                return -1;
            break;
        case 'Q':
            opt.publish_path = optarg;
            break;
        case 'W':
            opt.ws_path = optarg;
            break;
        case 'Z':
            opt.server_pids = optarg;
            break;
        case 'H':
            NUM(hold_s, 3600);
            break;
        case 'w':
            opt.warmup = 1;
            break;
        case 'A':
            opt.sources = optarg;
            break;
        case 'k':
            opt.key = optarg;
            break;
        case 'M':
            NUM(pushes, 10000000);
            break;
        case 'B':
            NUM(publishers, 256);
            break;
        case 'r':
            NUM(rate, 1000000);
            break;
        case 'b':
            NUM(payload, 1000000);
            break;
        case 'd':
            NUM(drain_s, 3600);
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return -1;
        }
    }
    if (!opt.url || bench_parse_url(opt.url, &opt.dst) != 0) {
        fprintf(stderr, "sseload: --url must be http://<127.x.y.z>:<port>\n");
        return -1;
    }
    if (opt.threads < 1 || opt.publishers < 1 || opt.clients < 1) return -1;
    return 0;
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv) < 0) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    long lim = bench_raise_nofile((long)opt.clients + opt.publishers + 64);
    if (lim > 0 && (unsigned long)lim < opt.clients + opt.publishers + 16) {
        fprintf(stderr, "sseload: the descriptor limit is %ld, too low for %u subscribers\n", lim,
                opt.clients);
        return 2;
    }
    bench_sources_t srcs = {0};
    if (opt.sources && bench_sources_parse(&srcs, opt.sources) != 0) {
        fprintf(stderr, "sseload: bad --sources %s\n", opt.sources);
        return 2;
    } else if (opt.sources) {
        /* as given */
    } else if (opt.sources_count && bench_sources_make(&srcs, opt.sources_count) != 0)
        return 2;
    else if (!opt.sources_count && bench_sources_default(&srcs, opt.clients) != 0)
        return 2;

    long rss_before = servers_rss_kb();
    conn_t *conns = calloc(opt.clients, sizeof(*conns));
    rthread_t *ts = calloc(opt.threads, sizeof(*ts));
    if (!conns || !ts) return 1;
    for (unsigned i = 0; i < opt.clients; i++) {
        conns[i].fd = -1;
        conns[i].idx = i;
        conns[i].state = ST_DEAD;
    }
    unsigned per = (opt.clients + opt.threads - 1) / opt.threads;
    uint64_t t0 = bench_now_ns();
    for (unsigned i = 0; i < opt.threads; i++) {
        rthread_t *t = &ts[i];
        unsigned from = i * per;
        t->conns = conns + (from < opt.clients ? from : opt.clients);
        t->n = from >= opt.clients ? 0 : (opt.clients - from < per ? opt.clients - from : per);
        t->ep = epoll_create1(EPOLL_CLOEXEC);
        t->srcs = srcs.addrs;
        t->nsrc = srcs.count;
        pthread_create(&t->th, NULL, reader, t);
    }
    /* wait until every subscriber is ready or failed */
    uint64_t deadline = t0 + (uint64_t)opt.connect_timeout_s * 1000000000ull;
    while (atomic_load(&ready_count) + atomic_load(&failed_count) < opt.clients &&
           bench_now_ns() < deadline) {
        struct timespec ts1 = {0, 10000000};
        nanosleep(&ts1, NULL);
    }
    double connect_s = (double)(bench_now_ns() - t0) / 1e9;
    unsigned ready = atomic_load(&ready_count);
    fprintf(stderr, "sseload: %u of %u subscribers ready in %.2f s (%u failed)\n", ready,
            opt.clients, connect_s, atomic_load(&failed_count));
    /* let the server finish registering the last subscriptions */
    struct timespec settle = {0, 200000000};
    nanosleep(&settle, NULL);
    if (opt.hold_s) {
        struct timespec hold = {(time_t)opt.hold_s, 0};
        nanosleep(&hold, NULL);
    }
    long rss_after = servers_rss_kb();
    double cpu_before = servers_sum(STAT_CPU_S);
    long writes_before = (long)servers_sum(STAT_WRITES);

    if (opt.warmup) {
        /* a server's first push on a channel may set up what later ones reuse */
        unsigned measured = opt.pushes;
        pthread_t wp;
        opt.pushes = 1;
        atomic_store(&warming, 1);
        pthread_create(&wp, NULL, publisher, NULL);
        pthread_join(wp, NULL);
        uint64_t until = bench_now_ns() + 5000000000ull;
        while (atomic_load(&warm_total) < ready && bench_now_ns() < until) {
            struct timespec tw = {0, 1000000};
            nanosleep(&tw, NULL);
        }
        fprintf(stderr, "sseload: warm-up push reached %llu of %u subscribers\n",
                (unsigned long long)atomic_load(&warm_total), ready);
        atomic_store(&warming, 0);
        atomic_store(&pushes_next, 0);
        atomic_store(&pushes_ok, 0);
        atomic_store(&pushes_failed, 0);
        opt.pushes = measured;
        cpu_before = servers_sum(STAT_CPU_S);
        writes_before = (long)servers_sum(STAT_WRITES);
    }
    pthread_t *pubs = calloc(opt.publishers, sizeof(*pubs));
    t_publish_start = bench_now_ns();
    atomic_store(&t_last_delivery, t_publish_start);
    for (unsigned i = 0; i < opt.publishers; i++)
        pthread_create(&pubs[i], NULL, publisher, NULL);
    for (unsigned i = 0; i < opt.publishers; i++)
        pthread_join(pubs[i], NULL);
    uint64_t t_pub_end = bench_now_ns();
    unsigned ok = atomic_load(&pushes_ok);
    uint64_t expected = (uint64_t)ok * ready;
    /* drain: until everything arrived or nothing came for drain_s */
    for (;;) {
        uint64_t got = atomic_load(&delivered_total);
        if (got >= expected) break;
        uint64_t last = atomic_load(&t_last_delivery);
        uint64_t now = bench_now_ns();
        if (now - (last > t_pub_end ? last : t_pub_end) > (uint64_t)opt.drain_s * 1000000000ull)
            break;
        struct timespec ts2 = {0, 5000000};
        nanosleep(&ts2, NULL);
    }
    uint64_t got = atomic_load(&delivered_total);
    uint64_t t_end = atomic_load(&t_last_delivery);
    double server_cpu = servers_sum(STAT_CPU_S) - cpu_before;
    long server_writes = (long)servers_sum(STAT_WRITES) - writes_before;
    atomic_store(&stop_flag, 1);
    bench_hist_t *h = calloc(1, sizeof(*h));
    for (unsigned i = 0; i < opt.threads; i++) {
        pthread_join(ts[i].th, NULL);
        bench_hist_merge(h, &ts[i].hist);
    }
    uint64_t min_c = UINT64_MAX, max_c = 0;
    for (unsigned i = 0; i < opt.clients; i++) {
        if (conns[i].state != ST_READY && conns[i].received == 0) continue;
        if (conns[i].received < min_c) min_c = conns[i].received;
        if (conns[i].received > max_c) max_c = conns[i].received;
    }
    if (min_c == UINT64_MAX) min_c = 0;
    double pub_s = (double)(t_pub_end - t_publish_start) / 1e9;
    double del_s =
        (double)((t_end > t_publish_start ? t_end : t_publish_start) - t_publish_start) / 1e9;
    double dps = del_s > 0 ? (double)got / del_s : 0;
    double pps = del_s > 0 ? (double)ok / del_s : 0;
    double p50 = (double)bench_hist_quantile(h, 0.50) / 1e6;
    double p99 = (double)bench_hist_quantile(h, 0.99) / 1e6;
    double mx = (double)h->max_ns / 1e6;
    printf("sseload: %s, %u subscribers (%u ready), %u pushes (%u ok) by %u publisher(s)\n",
           opt.mode == MODE_SSE ? opt.path : mode_name(), opt.clients, ready, opt.pushes, ok,
           opt.publishers);
    printf("  delivered %" PRIu64 " of %" PRIu64
           " in %.3f s: %.0f deliveries/s, %.1f pushes/s fully fanned out\n",
           got, expected, del_s, dps, pps);
    printf("  publish→receive latency: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", p50, p99, mx);
    printf("RESULT tool=sseload mode=%s clients=%u ready=%u connect_failed=%u connect_s=%.3f "
           "pushes=%u pushes_ok=%u publishers=%u payload_bytes=%u publish_s=%.3f deliver_s=%.3f "
           "delivered=%" PRIu64 " expected=%" PRIu64 " per_client_min=%" PRIu64
           " per_client_max=%" PRIu64 " deliveries_per_s=%.0f pushes_per_s=%.1f "
           "p50_ms=%.3f p99_ms=%.3f max_ms=%.3f closed=%u rss_before_kb=%ld rss_after_kb=%ld "
           "rss_per_client_b=%.0f server_cpu_s=%.3f server_us_per_delivery=%.3f "
           "server_writes=%ld deliveries_per_write=%.2f\n",
           mode_name(), opt.clients, ready, atomic_load(&failed_count), connect_s, opt.pushes, ok,
           opt.publishers, opt.payload, pub_s, del_s, got, expected, min_c, max_c, dps, pps, p50,
           p99, mx, atomic_load(&closed_count), rss_before, rss_after,
           ready && rss_before >= 0 ? (double)(rss_after - rss_before) * 1024.0 / ready : 0,
           server_cpu, got ? server_cpu * 1e6 / (double)got : 0, server_writes,
           server_writes > 0 ? (double)got / (double)server_writes : 0);
    int bad = ready < opt.clients || got < expected || ok < opt.pushes;
    for (unsigned i = 0; i < opt.clients; i++)
        if (conns[i].fd >= 0) close(conns[i].fd);
    return bad ? 1 : 0;
}
