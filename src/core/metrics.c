/* Prometheus text rendering of the process counters. */
#include "core/metrics.h"

metrics_t metrics;

#define LOAD(f) __atomic_load_n(&metrics.f, __ATOMIC_RELAXED)

static const char *refused_names[REFUSED_COUNT] = {
    "max_connections", "max_connections_per_ip", "handshake_timeout", "request_timeout",
    "idle_timeout",    "header_count",           "header_size",       "body_size",
    "message_size",    "message_rate",           "subscriptions",     "origin"};

const char *metrics_refused_name(int reason)
{
    return reason >= 0 && reason < REFUSED_COUNT ? refused_names[reason] : "unknown";
}

/* Refusals by a limit: every reason is listed, zero or not, so dashboards see them. */
static int render_refused(buf_t **bp)
{
    int r = buf_puts(bp, "# HELP pushgate_refused_total Connections, requests and messages "
                         "refused by a limit, by reason.\n"
                         "# TYPE pushgate_refused_total counter\n");
    for (int i = 0; i < REFUSED_COUNT && r == 0; i++)
        r = buf_printf(bp, "pushgate_refused_total{reason=\"%s\"} %llu\n", refused_names[i],
                       (unsigned long long)LOAD(refused[i]));
    return r;
}

/* The device command queue: depth gauges and commands by the status they entered. */
static int render_devices(buf_t **bp)
{
    static const char *snames[METRICS_DEVICE_STATUSES] = {"queued", "sent",    "done",
                                                          "failed", "expired", "cancelled"};
    int r = buf_printf(
        bp,
        "# HELP pushgate_device_queue_depth Device commands queued, not yet delivered.\n"
        "# TYPE pushgate_device_queue_depth gauge\n"
        "pushgate_device_queue_depth %lld\n"
        "# HELP pushgate_device_commands_in_flight Device commands sent, no result yet.\n"
        "# TYPE pushgate_device_commands_in_flight gauge\n"
        "pushgate_device_commands_in_flight %lld\n"
        "# HELP pushgate_device_commands_total Device commands by the status they entered.\n"
        "# TYPE pushgate_device_commands_total counter\n",
        (long long)LOAD(device_queued), (long long)LOAD(device_in_flight));
    for (int i = 0; i < METRICS_DEVICE_STATUSES && r == 0; i++)
        r = buf_printf(bp, "pushgate_device_commands_total{status=\"%s\"} %llu\n", snames[i],
                       (unsigned long long)LOAD(device_commands[i]));
    if (r == 0)
        r = buf_printf(bp,
                       "# HELP pushgate_device_redeliveries_total Device commands sent again "
                       "after no result came in time.\n"
                       "# TYPE pushgate_device_redeliveries_total counter\n"
                       "pushgate_device_redeliveries_total %llu\n"
                       "# HELP pushgate_device_orphan_results_total Device results that came "
                       "with no command in flight.\n"
                       "# TYPE pushgate_device_orphan_results_total counter\n"
                       "pushgate_device_orphan_results_total %llu\n",
                       (unsigned long long)LOAD(device_redeliveries),
                       (unsigned long long)LOAD(device_orphans));
    return r;
}

int metrics_render(buf_t **bp)
{
    static const char *tnames[METRICS_T_COUNT] = {"websocket", "http", "sse", "http2"};
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
    if (r == 0) r = render_devices(bp);
    if (r == 0) r = render_refused(bp);
    return r;
}
