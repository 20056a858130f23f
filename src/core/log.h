/* Structured logs: one line per event, `ts= level= node= worker= msg= k=v…`, on stderr.
 * Safe from any thread; the worker index is thread-local. */
#ifndef PG_LOG_H
#define PG_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Sets the node id printed on every line and the minimum level. Call once, early. */
void log_init(const char *node_id, enum log_level min);

/* Names the calling thread's worker index in its lines (-1: main thread). */
void log_set_worker(int worker);

/* Writes one line: msg is quoted; kv (printf format, may be NULL) is appended as is,
 * so callers write `key=value` pairs there. */
void log_msg(enum log_level lvl, const char *msg, const char *kv, ...)
    __attribute__((format(printf, 3, 4)));

#define log_info(msg, ...) log_msg(LOG_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...) log_msg(LOG_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) log_msg(LOG_ERROR, msg, __VA_ARGS__)
#define log_debug(msg, ...) log_msg(LOG_DEBUG, msg, __VA_ARGS__)

#endif
