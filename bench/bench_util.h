/* Helpers shared by the benchmark tools (wsload, ceiling): the clock, a latency
 * histogram, loopback addresses and option parsing. Benchmarks only; the server
 * never links this. */
#ifndef PUSHGATE_BENCH_UTIL_H
#define PUSHGATE_BENCH_UTIL_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

/* Log-linear buckets: exact below 512 ns, then 256 sub-buckets per power of two
 * (about 0.4 % resolution), which keeps a whole run's latencies in a fixed
 * 114 KiB instead of one sample per delivery. */
#define BENCH_HIST_SUB 256
#define BENCH_HIST_LINEAR 512
#define BENCH_HIST_BUCKETS (BENCH_HIST_LINEAR + 55 * BENCH_HIST_SUB)

typedef struct {
    uint64_t counts[BENCH_HIST_BUCKETS];
    uint64_t n;
    uint64_t max_ns;
    uint64_t sum_ns;
} bench_hist_t;

/* Loopback source addresses that sockets bind to round-robin, so that more
 * than one ephemeral port range (~28k ports each) is available. */
typedef struct {
    struct in_addr *addrs;
    size_t count;
} bench_sources_t;

/* CLOCK_MONOTONIC in nanoseconds. It is system-wide, so timestamps taken in
 * different processes of the same run compare directly. */
uint64_t bench_now_ns(void);

void bench_hist_add(bench_hist_t *h, uint64_t ns);
void bench_hist_merge(bench_hist_t *dst, const bench_hist_t *src);
/* The value at quantile q (0..1), as the upper edge of its bucket clipped to
 * the largest sample. Returns 0 for an empty histogram. */
uint64_t bench_hist_quantile(const bench_hist_t *h, double q);

/* Parses a decimal unsigned integer that must fill the whole string.
 * Returns 0, or -EINVAL when it is empty, not a number or over max. */
int bench_parse_u64(const char *s, uint64_t max, uint64_t *out);

/* Parses a dotted IPv4 address (or "localhost") inside 127.0.0.0/8: these
 * tools measure the loopback path and refuse to send anywhere else.
 * Returns 0, -EINVAL when unparsable, -EPERM when not a loopback address. */
int bench_parse_loopback(const char *s, struct in_addr *out);

/* Parses "http://HOST:PORT[/...]" with a loopback HOST.
 * Returns 0, -EINVAL or -EPERM as bench_parse_loopback. */
int bench_parse_url(const char *url, struct sockaddr_in *out);

/* Fills src from a comma-separated address list ("127.0.0.1,127.0.0.2").
 * Returns 0, -ENOMEM, or -EINVAL/-EPERM for a bad entry. */
int bench_sources_parse(bench_sources_t *src, const char *csv);

/* Fills src with 127.0.0.1 .. 127.0.0.count. Returns 0, -EINVAL (count 0 or
 * over 254) or -ENOMEM. */
int bench_sources_make(bench_sources_t *src, size_t count);

/* Leaves src alone when it already lists addresses or conns fits in one
 * source address's ephemeral ports (with room to spare, 25000); otherwise
 * fills it with as many 127.0.0.x addresses as conns needs.
 * Returns 0, or -EINVAL/-ENOMEM as bench_sources_make. */
int bench_sources_default(bench_sources_t *src, size_t conns);

void bench_sources_free(bench_sources_t *src);

/* Creates a TCP socket with TCP_NODELAY (every frame is its own segment, as a
 * push server that flushes per loop turn does), bound to src when not NULL,
 * and connects it to dst. IP_BIND_ADDRESS_NO_PORT defers the port choice to
 * connect(), so the ports of one source address are shared across
 * destinations instead of being reserved by bind().
 * Returns the descriptor (connect may be in progress when nonblock is set),
 * or a negative errno. */
int bench_connect(const struct sockaddr_in *dst, const struct in_addr *src, int nonblock);

/* Raises RLIMIT_NOFILE's soft limit towards want (never past the hard limit).
 * Returns the soft limit now in force, or a negative errno. */
long bench_raise_nofile(long want);

/* VmRSS of a process in KiB from /proc/<pid>/status.
 * Returns the value, or a negative errno. */
long bench_rss_kb(long pid);

/* CPU time (user + system) a process has used, in seconds, from
 * /proc/<pid>/stat. Returns it, or a negative value when it cannot be read. */
double bench_cpu_s(long pid);

/* Write-family syscalls (write, writev, ...) a process has made, from
 * /proc/<pid>/io's syscw. Returns the count, or a negative errno. */
long bench_write_syscalls(long pid);

/* A field of /proc/meminfo ("Slab", "MemAvailable") in KiB.
 * Returns the value, or a negative errno. */
long bench_meminfo_kb(const char *field);

#endif
