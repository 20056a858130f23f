/* Reference-counted byte buffers: one encoded push is shared by every write that
 * carries it (DESIGN §5), and growable while it still has a single owner. */
#ifndef PG_BUF_H
#define PG_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef struct buf_s {
    uint32_t refs; /* atomic; buffers cross worker threads */
    uint32_t pad_;
    size_t len;
    size_t cap;
    char data[];
} buf_t;

/* Allocates a buffer with room for cap bytes, len 0, one reference.
 * Returns the buffer, or NULL when out of memory. */
buf_t *buf_new(size_t cap);

/* Takes one more reference. Returns b. */
buf_t *buf_ref(buf_t *b);

/* Drops one reference; frees the buffer with the last. NULL is a no-op. */
void buf_unref(buf_t *b);

/* Appends len bytes, growing *bp (which must hold the only reference).
 * Returns 0, or -ENOMEM (then *bp is unchanged). */
int buf_append(buf_t **bp, const void *data, size_t len);

/* Appends a NUL-terminated string. Returns 0 or -ENOMEM. */
int buf_puts(buf_t **bp, const char *s);

/* Appends printf-formatted text. Returns 0 or -ENOMEM. */
int buf_printf(buf_t **bp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends s as a JSON string literal, quotes included. Returns 0 or -ENOMEM. */
int buf_put_json_string(buf_t **bp, const char *s);

#endif
