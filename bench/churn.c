/* churn: connect / subscribe / disconnect cycles against pushgate's /websocket, while
 * sampling the server's RSS (issue 10 item 3, bench/churn.sh). Each of T threads keeps
 * a window of W open WebSocket clients: it opens one (from the next source address),
 * upgrades, subscribes it to one of C channels, waits for "subscribed", and closes the
 * oldest of its window, half of them with a close frame and half with a reset. A
 * sampler thread writes "seconds cycles rss_kb" lines every S ms. Loopback only,
 * bounded by --cycles. */
#define _GNU_SOURCE
#include "bench_util.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define WIN_MAX 256

typedef struct {
    struct sockaddr_in server;
    bench_sources_t sources;
    uint64_t cycles;
    uint32_t threads, window, channels, sample_ms;
    const char *session;
    long pid;
    FILE *out;
} opts_t;

static opts_t o;
static atomic_uint_fast64_t done_cycles, next_cycle, failures, src_rr;
static atomic_int stop_sampler;

static int write_all(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads until the end of the HTTP head; returns 0 when it is a 101. */
static int read_upgrade(int fd)
{
    char buf[2048];
    size_t n = 0;
    while (n < sizeof(buf) - 1) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - n);
        if (r <= 0) return -1;
        n += (size_t)r;
        buf[n] = '\0';
        if (strstr(buf, "\r\n\r\n")) return strncmp(buf, "HTTP/1.1 101", 12) == 0 ? 0 : -1;
    }
    return -1;
}

/* Reads one unmasked server frame's payload (up to cap bytes). Returns its length. */
static ssize_t read_frame(int fd, char *payload, size_t cap)
{
    unsigned char h[4];
    size_t got = 0;
    while (got < 2) {
        ssize_t r = read(fd, h + got, 2 - got);
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    size_t len = h[1] & 0x7f;
    if (len == 126) {
        got = 0;
        while (got < 2) {
            ssize_t r = read(fd, h + 2 + got, 2 - got);
            if (r <= 0) return -1;
            got += (size_t)r;
        }
        len = ((size_t)h[2] << 8) | h[3];
    }
    if (len > cap) return -1;
    got = 0;
    while (got < len) {
        ssize_t r = read(fd, payload + got, len - got);
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return (ssize_t)len;
}

/* A masked client frame (opcode op) carrying text. */
static int send_frame(int fd, int op, const char *text, size_t len)
{
    unsigned char f[256];
    if (len > 125) return -1;
    const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
    f[0] = (unsigned char)(0x80 | op);
    f[1] = (unsigned char)(0x80 | len);
    memcpy(f + 2, mask, 4);
    for (size_t i = 0; i < len; i++)
        f[6 + i] = (unsigned char)text[i] ^ mask[i & 3];
    return write_all(fd, f, 6 + len);
}

/* One client: connect, upgrade, subscribe, wait for the answer. Returns the fd or -1. */
static int open_client(uint64_t n)
{
    size_t si = o.sources.count ? atomic_fetch_add(&src_rr, 1) % o.sources.count : 0;
    int fd = bench_connect(&o.server, o.sources.count ? &o.sources.addrs[si] : NULL, 0);
    if (fd < 0) return -1;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char req[512];
    int rl = snprintf(req, sizeof(req),
                      "GET /websocket?sessionId=%s&clientId=churn-%llu HTTP/1.1\r\n"
                      "Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n",
                      o.session, (unsigned long long)n);
    char sub[96], in[512];
    int sl = snprintf(sub, sizeof(sub), "{\"type\":\"subscribe\",\"channels\":[\"churn-%u\"]}",
                      (unsigned)(n % o.channels));
    ssize_t fl;
    if (write_all(fd, req, (size_t)rl) < 0 || read_upgrade(fd) < 0 ||
        send_frame(fd, 1, sub, (size_t)sl) < 0 || (fl = read_frame(fd, in, sizeof(in) - 1)) < 0 ||
        (in[fl] = '\0', !strstr(in, "\"subscribed\""))) {
        close(fd);
        return -1;
    }
    return fd;
}

static void close_client(int fd, uint64_t n)
{
    if (n & 1) {
        /* a reset: the server sees the connection die, no close handshake */
        struct linger l = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    } else {
        send_frame(fd, 8, "\x03\xe8", 2);
    }
    close(fd);
}

static void *worker(void *arg)
{
    (void)arg;
    int win[WIN_MAX];
    uint64_t ids[WIN_MAX];
    uint32_t head = 0, count = 0;
    for (;;) {
        uint64_t n = atomic_fetch_add(&next_cycle, 1);
        if (n >= o.cycles) break;
        if (count == o.window) {
            close_client(win[head], ids[head]);
            head = (head + 1) % o.window;
            count--;
        }
        int fd = open_client(n);
        if (fd < 0) {
            atomic_fetch_add(&failures, 1);
        } else {
            uint32_t slot = (head + count) % o.window;
            win[slot] = fd;
            ids[slot] = n;
            count++;
        }
        atomic_fetch_add(&done_cycles, 1);
    }
    while (count) {
        close_client(win[head], ids[head]);
        head = (head + 1) % o.window;
        count--;
    }
    return NULL;
}

static void *sampler(void *arg)
{
    (void)arg;
    uint64_t t0 = bench_now_ns();
    while (!atomic_load(&stop_sampler)) {
        long rss = bench_rss_kb(o.pid);
        fprintf(o.out, "%.2f %llu %ld\n", (double)(bench_now_ns() - t0) / 1e9,
                (unsigned long long)atomic_load(&done_cycles), rss);
        fflush(o.out);
        usleep(o.sample_ms * 1000);
    }
    return NULL;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: churn --url http://127.0.0.1:PORT --pid PID [--cycles N (100000)]\n"
            "  [--threads T (4)] [--window W (16)] [--channels C (64)] [--session ID (s-churn)]\n"
            "  [--sources 127.0.0.2,...] [--sample-ms MS (250)] [--out FILE (stdout)]\n");
}

int main(int argc, char **argv)
{
    o = (opts_t){.cycles = 100000,
                 .threads = 4,
                 .window = 16,
                 .channels = 64,
                 .sample_ms = 250,
                 .session = "s-churn",
                 .out = stdout};
    const char *url = NULL, *out = NULL;
    static const struct option lo[] = {{"url", 1, 0, 'u'},
                                       {"pid", 1, 0, 'p'},
                                       {"cycles", 1, 0, 'n'},
                                       {"threads", 1, 0, 't'},
                                       {"window", 1, 0, 'w'},
                                       {"channels", 1, 0, 'c'},
                                       {"session", 1, 0, 's'},
                                       {"sources", 1, 0, 'S'},
                                       {"sample-ms", 1, 0, 'm'},
                                       {"out", 1, 0, 'o'},
                                       {0, 0, 0, 0}};
    int ch;
    uint64_t v;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'u':
            url = optarg;
            break;
        case 'p':
            o.pid = strtol(optarg, NULL, 10);
            break;
        case 'n':
            if (bench_parse_u64(optarg, 100000000, &o.cycles) < 0) goto bad;
            break;
        case 't':
            if (bench_parse_u64(optarg, 64, &v) < 0 || !v) goto bad;
            o.threads = (uint32_t)v;
            break;
        case 'w':
            if (bench_parse_u64(optarg, WIN_MAX, &v) < 0 || !v) goto bad;
            o.window = (uint32_t)v;
            break;
        case 'c':
            if (bench_parse_u64(optarg, 100000, &v) < 0 || !v) goto bad;
            o.channels = (uint32_t)v;
            break;
        case 's':
            o.session = optarg;
            break;
        case 'S':
            if (bench_sources_parse(&o.sources, optarg) < 0) goto bad;
            break;
        case 'm':
            if (bench_parse_u64(optarg, 60000, &v) < 0 || !v) goto bad;
            o.sample_ms = (uint32_t)v;
            break;
        case 'o':
            out = optarg;
            break;
        default:
            goto bad;
        }
    }
    if (!url || o.pid <= 0 || bench_parse_url(url, &o.server) < 0) goto bad;
    if (out && !(o.out = fopen(out, "w"))) {
        perror(out);
        return 1;
    }
    bench_raise_nofile(o.threads * o.window + 64);
    pthread_t smp, th[64];
    pthread_create(&smp, NULL, sampler, NULL);
    uint64_t t0 = bench_now_ns();
    for (uint32_t i = 0; i < o.threads; i++)
        pthread_create(&th[i], NULL, worker, NULL);
    for (uint32_t i = 0; i < o.threads; i++)
        pthread_join(th[i], NULL);
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    atomic_store(&stop_sampler, 1);
    pthread_join(smp, NULL);
    if (o.out != stdout) fclose(o.out);
    fprintf(stderr, "churn: %llu cycles in %.1f s (%.0f/s), %llu failed\n",
            (unsigned long long)atomic_load(&done_cycles), secs,
            (double)atomic_load(&done_cycles) / secs, (unsigned long long)atomic_load(&failures));
    bench_sources_free(&o.sources);
    return atomic_load(&failures) ? 2 : 0;
bad:
    usage();
    return 64;
}
