/* Structured log lines on stderr. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static char log_node[64] = "-";
static enum log_level log_min = LOG_INFO;
static __thread int log_worker = -1;

void log_init(const char *node_id, enum log_level min)
{
    snprintf(log_node, sizeof(log_node), "%s", node_id ? node_id : "-");
    log_min = min;
}

void log_set_worker(int worker)
{
    log_worker = worker;
}

void log_msg(enum log_level lvl, const char *msg, const char *kv, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (lvl < log_min) return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char line[1024];
    int n = snprintf(line, sizeof(line),
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03dZ level=%s node=%s worker=%d msg=\"%s\"",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(tv.tv_usec / 1000), names[lvl], log_node, log_worker, msg);
    if (n < 0) return;
    va_list ap;
    va_start(ap, kv);
    if (kv && (size_t)n < sizeof(line) - 2) {
        line[n++] = ' ';
        /* ap is started above; the analyzer loses track across the branch */
        // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized)
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n, kv, ap);
        if (m > 0) n += m;
    }
    va_end(ap);
    if ((size_t)n >= sizeof(line) - 1) n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    fwrite(line, 1, (size_t)n, stderr);
}
