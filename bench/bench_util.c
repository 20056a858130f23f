/* Helpers shared by the benchmark tools: clock, histogram, loopback addresses,
 * option parsing and /proc readers. See bench_util.h for the contracts. */
#define _GNU_SOURCE
#include "bench_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

uint64_t bench_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static size_t bench__hist_index(uint64_t v)
{
    unsigned msb;
    unsigned shift;

    if (v < BENCH_HIST_LINEAR) return (size_t)v;
    msb = 63u - (unsigned)__builtin_clzll(v);
    shift = msb - 8u; /* keeps the top 9 bits: 256..511 */
    return BENCH_HIST_LINEAR + (size_t)(shift - 1) * BENCH_HIST_SUB +
           (size_t)((v >> shift) - BENCH_HIST_SUB);
}

static uint64_t bench__hist_upper(size_t i)
{
    size_t k;
    unsigned shift;
    uint64_t sub;

    if (i < BENCH_HIST_LINEAR) return (uint64_t)i;
    k = i - BENCH_HIST_LINEAR;
    shift = (unsigned)(k / BENCH_HIST_SUB) + 1u;
    sub = (uint64_t)(k % BENCH_HIST_SUB) + BENCH_HIST_SUB;
    return ((sub + 1) << shift) - 1;
}

void bench_hist_add(bench_hist_t *h, uint64_t ns)
{
    h->counts[bench__hist_index(ns)]++;
    h->n++;
    h->sum_ns += ns;
    if (ns > h->max_ns) h->max_ns = ns;
}

void bench_hist_merge(bench_hist_t *dst, const bench_hist_t *src)
{
    size_t i;

    for (i = 0; i < BENCH_HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    dst->n += src->n;
    dst->sum_ns += src->sum_ns;
    if (src->max_ns > dst->max_ns) dst->max_ns = src->max_ns;
}

uint64_t bench_hist_quantile(const bench_hist_t *h, double q)
{
    uint64_t rank;
    uint64_t seen;
    uint64_t v;
    size_t i;

    if (h->n == 0) return 0;
    rank = (uint64_t)(q * (double)h->n + 0.999999);
    if (rank < 1) rank = 1;
    if (rank > h->n) rank = h->n;
    seen = 0;
    for (i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            v = bench__hist_upper(i);
            return v < h->max_ns ? v : h->max_ns;
        }
    }
    return h->max_ns;
}

int bench_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (s == NULL || *s < '0' || *s > '9') return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max) return -EINVAL;
    *out = (uint64_t)v;
    return 0;
}

int bench_parse_loopback(const char *s, struct in_addr *out)
{
    if (strcmp(s, "localhost") == 0) s = "127.0.0.1";
    if (inet_pton(AF_INET, s, out) != 1) return -EINVAL;
    if ((ntohl(out->s_addr) >> 24) != 127) return -EPERM;
    return 0;
}

int bench_parse_url(const char *url, struct sockaddr_in *out)
{
    const char *host;
    const char *colon;
    const char *end;
    char buf[64];
    uint64_t port;
    char portbuf[8];
    size_t n;
    int err;

    if (strncmp(url, "http://", 7) != 0) return -EINVAL;
    host = url + 7;
    end = strchr(host, '/');
    if (end == NULL) end = host + strlen(host);
    colon = memchr(host, ':', (size_t)(end - host));
    if (colon == NULL || (size_t)(colon - host) >= sizeof(buf)) return -EINVAL;
    n = (size_t)(end - colon - 1);
    if (n == 0 || n >= sizeof(portbuf)) return -EINVAL;
    memcpy(portbuf, colon + 1, n);
    portbuf[n] = '\0';
    if (bench_parse_u64(portbuf, 65535, &port) != 0 || port == 0) return -EINVAL;
    memcpy(buf, host, (size_t)(colon - host));
    buf[colon - host] = '\0';
    memset(out, 0, sizeof(*out));
    err = bench_parse_loopback(buf, &out->sin_addr);
    if (err != 0) return err;
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)port);
    return 0;
}

int bench_sources_parse(bench_sources_t *src, const char *csv)
{
    char *copy;
    char *tok;
    char *save;
    size_t cap;
    int err;

    src->addrs = NULL;
    src->count = 0;
    copy = strdup(csv);
    if (copy == NULL) return -ENOMEM;
    cap = 1;
    for (tok = copy; *tok != '\0'; tok++)
        cap += *tok == ',';
    src->addrs = calloc(cap, sizeof(*src->addrs));
    if (src->addrs == NULL) {
        err = -ENOMEM;
        goto fail;
    }
    for (tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        err = bench_parse_loopback(tok, &src->addrs[src->count]);
        if (err != 0) goto fail;
        src->count++;
    }
    if (src->count == 0) {
        err = -EINVAL;
        goto fail;
    }
    free(copy);
    return 0;

fail:
    free(copy);
    bench_sources_free(src);
    return err;
}

int bench_sources_make(bench_sources_t *src, size_t count)
{
    size_t i;

    src->addrs = NULL;
    src->count = 0;
    if (count == 0 || count > 254) return -EINVAL;
    src->addrs = calloc(count, sizeof(*src->addrs));
    if (src->addrs == NULL) return -ENOMEM;
    for (i = 0; i < count; i++)
        src->addrs[i].s_addr = htonl((127u << 24) | (uint32_t)(i + 1));
    src->count = count;
    return 0;
}

int bench_sources_default(bench_sources_t *src, size_t conns)
{
    const size_t per_source = 25000;

    if (src->count > 0 || conns <= per_source) return 0;
    return bench_sources_make(src, (conns + per_source - 1) / per_source);
}

void bench_sources_free(bench_sources_t *src)
{
    free(src->addrs);
    src->addrs = NULL;
    src->count = 0;
}

int bench_connect(const struct sockaddr_in *dst, const struct in_addr *src, int nonblock)
{
    struct sockaddr_in local;
    int one;
    int fd;
    int err;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0) return -errno;
    one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) goto fail;
    if (src != NULL) {
        if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) != 0) goto fail;
        memset(&local, 0, sizeof(local));
        local.sin_family = AF_INET;
        local.sin_addr = *src;
        if (bind(fd, (const struct sockaddr *)&local, sizeof(local)) != 0) goto fail;
    }
    if (connect(fd, (const struct sockaddr *)dst, sizeof(*dst)) != 0 &&
        !(nonblock && errno == EINPROGRESS))
        goto fail;
    return fd;

fail:
    err = -errno;
    close(fd);
    return err;
}

long bench_raise_nofile(long want)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -errno;
    if ((rlim_t)want > rl.rlim_max) want = (long)rl.rlim_max;
    if ((rlim_t)want > rl.rlim_cur) {
        rl.rlim_cur = (rlim_t)want;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return -errno;
    }
    return (long)rl.rlim_cur;
}

/* Reads "<field>:   <n>[ kB]" out of a /proc file that lists one field a line. */
static long bench__proc_field(const char *path, const char *field)
{
    char line[256];
    size_t flen;
    long v;
    FILE *f;

    f = fopen(path, "re");
    if (f == NULL) return -errno;
    flen = strlen(field);
    v = -ENOENT;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
            v = strtol(line + flen + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

long bench_rss_kb(long pid)
{
    char path[64];

    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    return bench__proc_field(path, "VmRSS");
}

double bench_cpu_s(long pid)
{
    unsigned long long utime;
    unsigned long long stime;
    char path[64];
    char line[1024];
    char *p;
    FILE *f;
    int ok;

    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    f = fopen(path, "re");
    if (f == NULL) return -1;
    ok = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    /* comm may hold spaces and parentheses; the fields start after the last ')'. */
    p = ok ? strrchr(line, ')') : NULL;
    if (p == NULL || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
                            &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

long bench_write_syscalls(long pid)
{
    char path[64];

    snprintf(path, sizeof(path), "/proc/%ld/io", pid);
    return bench__proc_field(path, "syscw");
}

long bench_meminfo_kb(const char *field)
{
    return bench__proc_field("/proc/meminfo", field);
}
