/* ceiling: the kernel's per-write ceiling on loopback. It opens N TCP
 * connections over loopback and has one writer thread (or T) write one
 * push-sized WebSocket frame to each of them per round, one write() per socket,
 * while a separate reader process drains the far ends. The deliveries/s it
 * reports bound what a push server that writes each delivery with its own
 * syscall can reach on this machine. */
#define _GNU_SOURCE
#include "bench_util.h"

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
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define CEIL_READ_BUF (256 * 1024)
#define CEIL_MAX_EVENTS 512
/* The push id pushgate's docs show; its length is what matters here. */
#define CEIL_PUSH_ID "0190f5d7a1c2-n1-000001"

typedef struct {
    uint32_t clients;
    uint64_t pushes;
    uint32_t threads;
    uint32_t readers;
    uint32_t payload_bytes;
    uint32_t frame_bytes; /* 0: derived from payload_bytes */
    uint32_t batch;
    uint32_t timeout_s;
    bench_sources_t sources;
} ceil_options_t;

/* Lives in a MAP_SHARED page: the writer and the reader process watch it. */
typedef struct {
    _Atomic uint64_t accepted;
    _Atomic uint64_t bytes;
    _Atomic uint64_t expected;
    _Atomic uint64_t done_ns;
    _Atomic int ready;
    _Atomic int stop;
} ceil_shared_t;

typedef struct {
    pthread_t tid;
    int epfd;
    uint64_t bytes;
} ceil_reader_t;

typedef struct {
    pthread_t tid;
    const int *fds;
    size_t count;
    uint64_t writes;
    uint64_t end_ns;
    int err;
} ceil_writer_t;

static ceil_options_t ceil_opts;
static ceil_shared_t *ceil_shared;
static const uint8_t *ceil_buf;
static size_t ceil_buf_len;
static _Atomic int ceil_go;

/* Builds the frame pushgate would send for a push whose serviceRequest is
 * payload_bytes long (the same payload wsload publishes), or a filler frame
 * of exactly frame_bytes when that is given, repeated batch times.
 * Returns the buffer (caller frees) and its length in *len, or NULL. */
static uint8_t *ceil_make_frames(size_t *len)
{
    static const char prefix[] = "{\"type\":\"push\",\"id\":\"" CEIL_PUSH_ID
                                 "\",\"event\":null,\"channel\":null,\"payload\":";
    static const char t_head[] = "{\"t\":1000000000000000,\"pad\":\"";
    uint8_t *frame;
    uint8_t *buf;
    size_t text_len;
    size_t pad_len;
    size_t hl;
    size_t flen;
    size_t off;
    uint32_t i;

    if (ceil_opts.frame_bytes > 0) {
        flen = ceil_opts.frame_bytes;
        if (flen < 2) return NULL;
        hl = flen - 2 <= 125 ? 2 : 4;
        if (flen < hl || flen - hl > 65535) return NULL;
        text_len = flen - hl;
    } else {
        pad_len = ceil_opts.payload_bytes > sizeof(t_head) - 1 + 2
                      ? ceil_opts.payload_bytes - (sizeof(t_head) - 1) - 2
                      : 0;
        text_len = sizeof(prefix) - 1 + (sizeof(t_head) - 1) + pad_len + 2 + 1;
        if (text_len > 65535) return NULL;
        hl = text_len <= 125 ? 2 : 4;
        flen = hl + text_len;
    }
    frame = malloc(flen);
    if (frame == NULL) return NULL;
    frame[0] = 0x81; /* FIN, text: what a push is */
    if (hl == 2) {
        frame[1] = (uint8_t)text_len;
    } else {
        frame[1] = 126;
        frame[2] = (uint8_t)(text_len >> 8);
        frame[3] = (uint8_t)text_len;
    }
    if (ceil_opts.frame_bytes > 0) {
        memset(frame + hl, 'x', text_len);
    } else {
        off = hl;
        memcpy(frame + off, prefix, sizeof(prefix) - 1);
        off += sizeof(prefix) - 1;
        memcpy(frame + off, t_head, sizeof(t_head) - 1);
        off += sizeof(t_head) - 1;
        memset(frame + off, 'x', flen - off - 3);
        memcpy(frame + flen - 3, "\"}}", 3);
    }
    buf = malloc(flen * ceil_opts.batch);
    if (buf != NULL) {
        for (i = 0; i < ceil_opts.batch; i++)
            memcpy(buf + (size_t)i * flen, frame, flen);
    }
    free(frame);
    *len = flen;
    return buf;
}

/* ---- reader process ------------------------------------------------------ */

static void *ceil_reader_run(void *arg)
{
    struct epoll_event evs[CEIL_MAX_EVENTS];
    ceil_reader_t *r;
    uint8_t *buf;
    uint64_t batch;
    uint64_t before;
    uint64_t expected;
    ssize_t n;
    int count;
    int i;

    r = arg;
    buf = malloc(CEIL_READ_BUF);
    if (buf == NULL) return NULL;
    while (!atomic_load_explicit(&ceil_shared->stop, memory_order_relaxed)) {
        count = epoll_wait(r->epfd, evs, CEIL_MAX_EVENTS, 100);
        batch = 0;
        for (i = 0; i < count; i++) {
            for (;;) {
                n = read(evs[i].data.fd, buf, CEIL_READ_BUF);
                if (n > 0) {
                    batch += (uint64_t)n;
                    if (n < CEIL_READ_BUF) break;
                    continue;
                }
                if (n < 0 && errno == EINTR) continue;
                if (n == 0 || (errno != EAGAIN))
                    close(evs[i].data.fd); /* also leaves the epoll set */
                break;
            }
        }
        if (batch == 0) continue;
        r->bytes += batch;
        /* One shared add per wakeup; whoever crosses the total stamps the time. */
        before = atomic_fetch_add(&ceil_shared->bytes, batch);
        expected = atomic_load(&ceil_shared->expected);
        if (expected > 0 && before < expected && before + batch >= expected)
            atomic_store(&ceil_shared->done_ns, bench_now_ns());
    }
    free(buf);
    return NULL;
}

/* Accepts every connection, spreads them over the reader threads and drains
 * until the writer says stop. Runs in the forked child; returns its exit code. */
static int ceil_reader_main(int listener)
{
    struct epoll_event ev;
    ceil_reader_t *readers;
    uint32_t i;
    int fd;

    readers = calloc(ceil_opts.readers, sizeof(*readers));
    if (readers == NULL) return 1;
    for (i = 0; i < ceil_opts.readers; i++) {
        readers[i].epfd = epoll_create1(EPOLL_CLOEXEC);
        if (readers[i].epfd < 0 ||
            pthread_create(&readers[i].tid, NULL, ceil_reader_run, &readers[i]) != 0)
            return 1;
    }
    for (i = 0; i < ceil_opts.clients; i++) {
        fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                i--;
                continue;
            }
            perror("ceiling: accept");
            return 1;
        }
        ev.events = EPOLLIN;
        ev.data.fd = fd;
        if (epoll_ctl(readers[i % ceil_opts.readers].epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            perror("ceiling: epoll_ctl");
            return 1;
        }
        atomic_fetch_add(&ceil_shared->accepted, 1);
    }
    close(listener);
    atomic_store(&ceil_shared->ready, 1);
    for (i = 0; i < ceil_opts.readers; i++)
        pthread_join(readers[i].tid, NULL);
    free(readers);
    return 0;
}

/* ---- writer -------------------------------------------------------------- */

static void *ceil_writer_run(void *arg)
{
    ceil_writer_t *w;
    uint64_t round;
    ssize_t n;
    size_t i;

    w = arg;
    while (!atomic_load_explicit(&ceil_go, memory_order_acquire))
        ;
    for (round = 0; round < ceil_opts.pushes; round++) {
        for (i = 0; i < w->count; i++) {
            /* Blocking sockets: a full socket buffer stalls the writer, which is
             * the back-pressure a server feels too. */
            n = write(w->fds[i], ceil_buf, ceil_buf_len);
            if (n != (ssize_t)ceil_buf_len) {
                w->err = n < 0 ? -errno : -EIO;
                w->end_ns = bench_now_ns();
                return NULL;
            }
        }
        w->writes += w->count;
    }
    w->end_ns = bench_now_ns();
    return NULL;
}

/* Creates the listening socket on 127.0.0.1 and an ephemeral port.
 * Returns the descriptor, or a negative errno. */
static int ceil_listen(struct sockaddr_in *addr)
{
    socklen_t alen;
    int fd;
    int err;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    memset(addr, 0, sizeof(*addr));
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    alen = sizeof(*addr);
    if (bind(fd, (struct sockaddr *)addr, sizeof(*addr)) != 0 || listen(fd, 4096) != 0 ||
        getsockname(fd, (struct sockaddr *)addr, &alen) != 0)
        goto fail;
    return fd;

fail:
    err = -errno;
    close(fd);
    return err;
}

static void ceil_usage(FILE *f)
{
    fputs("usage: ceiling [options]\n"
          "  --clients N          TCP connections (1000)\n"
          "  --pushes M           rounds; each writes one frame to every connection (100)\n"
          "  --threads T          writer threads, each owning 1/T of the connections (1)\n"
          "  --readers R          reader threads in the draining process (1)\n"
          "  --payload-bytes B    size a push frame for a B-byte serviceRequest (100)\n"
          "  --frame-bytes F      write F-byte frames instead (e.g. wsload's frame_bytes)\n"
          "  --batch K            frames per write() (1; >1 shows what batching buys)\n"
          "  --sources A,B,...    loopback source addresses, used round-robin\n"
          "  --sources-count K    use 127.0.0.1 .. 127.0.0.K as sources (default: one per\n"
          "                       25000 connections beyond the first 25000)\n"
          "  --timeout S          give up after S seconds (120)\n",
          f);
}

static int ceil_parse_args(int argc, char **argv)
{
    static const struct option longopts[] = {{"clients", required_argument, NULL, 'c'},
                                             {"pushes", required_argument, NULL, 'm'},
                                             {"threads", required_argument, NULL, 'T'},
                                             {"readers", required_argument, NULL, 'R'},
                                             {"payload-bytes", required_argument, NULL, 'b'},
                                             {"frame-bytes", required_argument, NULL, 'f'},
                                             {"batch", required_argument, NULL, 'k'},
                                             {"sources", required_argument, NULL, 'S'},
                                             {"sources-count", required_argument, NULL, 'K'},
                                             {"timeout", required_argument, NULL, 't'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    uint64_t v;
    int idx;
    int opt;
    int err;

    ceil_opts.clients = 1000;
    ceil_opts.pushes = 100;
    ceil_opts.threads = 1;
    ceil_opts.readers = 1;
    ceil_opts.payload_bytes = 100;
    ceil_opts.batch = 1;
    ceil_opts.timeout_s = 120;
    idx = 0;
    while ((opt = getopt_long(argc, argv, "h", longopts, &idx)) != -1) {
        v = 0;
        err = 0;
        switch (opt) {
        case 'S':
            bench_sources_free(&ceil_opts.sources);
            err = bench_sources_parse(&ceil_opts.sources, optarg);
            break;
        case 'K':
            bench_sources_free(&ceil_opts.sources);
            err = bench_parse_u64(optarg, 254, &v);
            if (err == 0) err = bench_sources_make(&ceil_opts.sources, (size_t)v);
            break;
        case 'm':
            err = bench_parse_u64(optarg, UINT32_MAX, &ceil_opts.pushes);
            if (err == 0 && ceil_opts.pushes == 0) err = -EINVAL;
            break;
        case 'c':
        case 'T':
        case 'R':
        case 'b':
        case 'f':
        case 'k':
        case 't':
            err = bench_parse_u64(optarg, 16u * 1024 * 1024, &v);
            if (err == 0 && v == 0) err = -EINVAL;
            if (opt == 'c')
                ceil_opts.clients = (uint32_t)v;
            else if (opt == 'T')
                ceil_opts.threads = (uint32_t)v;
            else if (opt == 'R')
                ceil_opts.readers = (uint32_t)v;
            else if (opt == 'b')
                ceil_opts.payload_bytes = (uint32_t)v;
            else if (opt == 'f')
                ceil_opts.frame_bytes = (uint32_t)v;
            else if (opt == 'k')
                ceil_opts.batch = (uint32_t)v;
            else
                ceil_opts.timeout_s = (uint32_t)v;
            break;
        case 'h':
            ceil_usage(stdout);
            exit(0);
        default:
            ceil_usage(stderr);
            return -EINVAL;
        }
        if (err != 0) {
            fprintf(stderr, "ceiling: bad value for --%s: %s\n", longopts[idx].name, optarg);
            return err;
        }
    }
    if (optind != argc) {
        ceil_usage(stderr);
        return -EINVAL;
    }
    if (ceil_opts.threads > ceil_opts.clients) ceil_opts.threads = ceil_opts.clients;
    if (bench_sources_default(&ceil_opts.sources, ceil_opts.clients) != 0) {
        fprintf(stderr, "ceiling: too many connections for 127.0.0.1 .. 127.0.0.254\n");
        return -EINVAL;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct sockaddr_in addr;
    ceil_writer_t *writers;
    const struct in_addr *src;
    uint64_t writes;
    uint64_t start_ns;
    uint64_t end_ns;
    uint64_t done_ns;
    uint64_t deadline;
    size_t frame_len;
    size_t per;
    uint32_t i;
    pid_t child;
    long limit;
    double write_s;
    double e2e_s;
    int listener;
    int status;
    int *fds;
    int err;

    if (ceil_parse_args(argc, argv) != 0) return 2;
    signal(SIGPIPE, SIG_IGN);
    limit = bench_raise_nofile((long)ceil_opts.clients + 64);
    if (limit < (long)ceil_opts.clients + 16) {
        fprintf(stderr, "ceiling: RLIMIT_NOFILE is %ld, too low for %u connections\n", limit,
                ceil_opts.clients);
        return 1;
    }
    ceil_buf = ceil_make_frames(&frame_len);
    if (ceil_buf == NULL) {
        fprintf(stderr, "ceiling: frame size out of range\n");
        return 2;
    }
    ceil_buf_len = frame_len * ceil_opts.batch;
    ceil_shared =
        mmap(NULL, sizeof(*ceil_shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    fds = calloc(ceil_opts.clients, sizeof(*fds));
    writers = calloc(ceil_opts.threads, sizeof(*writers));
    if (ceil_shared == MAP_FAILED || fds == NULL || writers == NULL) {
        fprintf(stderr, "ceiling: out of memory\n");
        return 1;
    }
    listener = ceil_listen(&addr);
    if (listener < 0) {
        fprintf(stderr, "ceiling: listen: %s\n", strerror(-listener));
        return 1;
    }
    /* The reader is another process, as a client is: it keeps the two ends'
     * descriptors in separate tables and their work on separate schedulers. */
    child = fork();
    if (child < 0) {
        perror("ceiling: fork");
        return 1;
    }
    if (child == 0) _exit(ceil_reader_main(listener));
    close(listener);

    err = 0;
    deadline = bench_now_ns() + (uint64_t)ceil_opts.timeout_s * 1000000000u;
    for (i = 0; i < ceil_opts.clients; i++) {
        /* Stay within the listen backlog: an overflow drops SYNs, and each
         * costs a one-second retransmit. */
        while (i - atomic_load(&ceil_shared->accepted) > 1024 && bench_now_ns() < deadline)
            usleep(100);
        src = ceil_opts.sources.count > 0 ? &ceil_opts.sources.addrs[i % ceil_opts.sources.count]
                                          : NULL;
        fds[i] = bench_connect(&addr, src, 0);
        if (fds[i] < 0) {
            fprintf(stderr, "ceiling: connect %u: %s\n", i, strerror(-fds[i]));
            err = 1;
            goto out;
        }
    }
    while (!atomic_load(&ceil_shared->ready) && bench_now_ns() < deadline)
        usleep(1000);
    if (!atomic_load(&ceil_shared->ready)) {
        fprintf(stderr, "ceiling: reader did not accept every connection\n");
        err = 1;
        goto out;
    }

    atomic_store(&ceil_shared->expected,
                 (uint64_t)ceil_opts.clients * ceil_opts.pushes * ceil_buf_len);
    per = (ceil_opts.clients + ceil_opts.threads - 1) / ceil_opts.threads;
    for (i = 0; i < ceil_opts.threads; i++) {
        writers[i].fds = fds + (size_t)i * per;
        writers[i].count =
            (size_t)i * per >= ceil_opts.clients
                ? 0
                : ((size_t)(i + 1) * per > ceil_opts.clients ? ceil_opts.clients - i * per : per);
        if (pthread_create(&writers[i].tid, NULL, ceil_writer_run, &writers[i]) != 0) {
            fprintf(stderr, "ceiling: cannot start writer %u\n", i);
            err = 1;
            goto out;
        }
    }
    start_ns = bench_now_ns();
    atomic_store_explicit(&ceil_go, 1, memory_order_release);
    end_ns = start_ns;
    writes = 0;
    for (i = 0; i < ceil_opts.threads; i++) {
        pthread_join(writers[i].tid, NULL);
        if (writers[i].err != 0) {
            fprintf(stderr, "ceiling: writer %u: %s\n", i, strerror(-writers[i].err));
            err = 1;
        }
        writes += writers[i].writes;
        if (writers[i].end_ns > end_ns) end_ns = writers[i].end_ns;
    }
    deadline = bench_now_ns() + (uint64_t)ceil_opts.timeout_s * 1000000000u;
    while ((done_ns = atomic_load(&ceil_shared->done_ns)) == 0 && !err && bench_now_ns() < deadline)
        usleep(200);
    if (done_ns == 0) err = 1;

    write_s = (double)(end_ns - start_ns) / 1e9;
    e2e_s = done_ns > start_ns ? (double)(done_ns - start_ns) / 1e9 : 0;
    printf("connections    %u, %u writer thread(s), %u reader thread(s)\n", ceil_opts.clients,
           ceil_opts.threads, ceil_opts.readers);
    printf("frame          %zu bytes, %u per write()\n", frame_len, ceil_opts.batch);
    printf("writes         %" PRIu64 " in %.3f s: %.0f/s (%.0f ns each)\n", writes, write_s,
           write_s > 0 ? (double)writes / write_s : 0,
           writes > 0 ? (double)(end_ns - start_ns) / (double)writes : 0);
    printf("deliveries     %" PRIu64 ", all read after %.3f s: %.0f/s\n", writes * ceil_opts.batch,
           e2e_s, e2e_s > 0 ? (double)(writes * ceil_opts.batch) / e2e_s : 0);
    printf("RESULT tool=ceiling clients=%u pushes=%" PRIu64 " threads=%u readers=%u"
           " frame_bytes=%zu batch=%u writes=%" PRIu64 " write_s=%.3f writes_per_s=%.0f"
           " ns_per_write=%.0f deliveries=%" PRIu64 " e2e_s=%.3f deliveries_per_s=%.0f"
           " errors=%d\n",
           ceil_opts.clients, ceil_opts.pushes, ceil_opts.threads, ceil_opts.readers, frame_len,
           ceil_opts.batch, writes, write_s, write_s > 0 ? (double)writes / write_s : 0,
           writes > 0 ? (double)(end_ns - start_ns) / (double)writes : 0, writes * ceil_opts.batch,
           e2e_s, e2e_s > 0 ? (double)(writes * ceil_opts.batch) / e2e_s : 0, err);
    fflush(stdout);

out:
    atomic_store(&ceil_shared->stop, 1);
    if (!atomic_load(&ceil_shared->ready)) kill(child, SIGKILL); /* still blocked in accept() */
    /* Closing our ends lets the reader's epoll wake; stop ends its loop. */
    for (i = 0; i < ceil_opts.clients; i++) {
        if (fds[i] > 0) close(fds[i]);
    }
    if (waitpid(child, &status, 0) == child && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
        err = 1;
    free(writers);
    free(fds);
    free((void *)ceil_buf);
    return err ? 1 : 0;
}
