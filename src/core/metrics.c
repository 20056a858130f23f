/* Prometheus text rendering of the process counters. */
#include "core/metrics.h"

metrics_t metrics;

#define LOAD(f) __atomic_load_n(&metrics.f, __ATOMIC_RELAXED)

int metrics_render(buf_t **bp)
{
    static const char *tnames[METRICS_T_COUNT] = {"websocket", "http", "sse"};
    int r = buf_puts(bp, "# HELP pushgate_connections Open connections by transport.\n"
                         "# TYPE pushgate_connections gauge\n");
    for (int t = 0; t < METRICS_T_COUNT && r == 0; t++)
        r = buf_printf(bp, "pushgate_connections{transport=\"%s\"} %lld\n", tnames[t],
                       (long long)LOAD(connections[t]));
    if (r == 0)
        r = buf_printf(
            bp,
            "# HELP pushgate_pushes_received_total Pushes accepted from publishers.\n"
            "# TYPE pushgate_pushes_received_total counter\n"
            "pushgate_pushes_received_total %llu\n"
            "# HELP pushgate_deliveries_total Push deliveries to subscribers by result.\n"
            "# TYPE pushgate_deliveries_total counter\n"
            "pushgate_deliveries_total{result=\"ok\"} %llu\n"
            "pushgate_deliveries_total{result=\"failed\"} %llu\n"
            "# HELP pushgate_bytes_out_total Bytes written to client sockets.\n"
            "# TYPE pushgate_bytes_out_total counter\n"
            "pushgate_bytes_out_total %llu\n"
            "# HELP pushgate_slow_consumer_closes_total Clients closed for unbounded output.\n"
            "# TYPE pushgate_slow_consumer_closes_total counter\n"
            "pushgate_slow_consumer_closes_total %llu\n"
            "# HELP pushgate_http_requests_total HTTP requests parsed.\n"
            "# TYPE pushgate_http_requests_total counter\n"
            "pushgate_http_requests_total %llu\n",
            (unsigned long long)LOAD(pushes_received), (unsigned long long)LOAD(deliveries_ok),
            (unsigned long long)LOAD(deliveries_failed), (unsigned long long)LOAD(bytes_out),
            (unsigned long long)LOAD(slow_consumer_closes),
            (unsigned long long)LOAD(http_requests));
    return r;
}
