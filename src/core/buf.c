/* Reference-counted byte buffers shared between writers and worker threads. */
#include "core/buf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

buf_t *buf_new(size_t cap)
{
    buf_t *b = malloc(sizeof(*b) + cap + 1);
    if (!b) return NULL;
    b->refs = 1;
    b->pad_ = 0;
    b->len = 0;
    b->cap = cap;
    b->data[0] = '\0';
    return b;
}

buf_t *buf_ref(buf_t *b)
{
    __atomic_add_fetch(&b->refs, 1, __ATOMIC_RELAXED);
    return b;
}

void buf_unref(buf_t *b)
{
    if (b && __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0) free(b);
}

static int buf_reserve(buf_t **bp, size_t extra)
{
    buf_t *b = *bp;
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra)
        cap *= 2;
    buf_t *nb = realloc(b, sizeof(*b) + cap + 1);
    if (!nb) return -ENOMEM;
    nb->cap = cap;
    *bp = nb;
    return 0;
}

int buf_append(buf_t **bp, const void *data, size_t len)
{
    if (buf_reserve(bp, len) < 0) return -ENOMEM;
    buf_t *b = *bp;
    if (len) memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int buf_puts(buf_t **bp, const char *s)
{
    return buf_append(bp, s, strlen(s));
}

int buf_printf(buf_t **bp, const char *fmt, ...)
{
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized)
    va_end(ap);
    int r;
    if (n < 0)
        r = -EINVAL;
    else if ((size_t)n < sizeof(tmp))
        r = buf_append(bp, tmp, (size_t)n);
    else if ((r = buf_reserve(bp, (size_t)n + 1)) == 0) {
        /* again is a va_copy of the started ap; the analyzer does not follow va_copy */
        // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized)
        vsnprintf((*bp)->data + (*bp)->len, (size_t)n + 1, fmt, again);
        (*bp)->len += (size_t)n;
    }
    va_end(again);
    return r;
}

int buf_put_json_string(buf_t **bp, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    if (buf_append(bp, "\"", 1) < 0) return -ENOMEM;
    const unsigned char *p = (const unsigned char *)s;
    const unsigned char *run = p;
    for (; *p; p++) {
        if (*p >= 0x20 && *p != '"' && *p != '\\') continue;
        if (buf_append(bp, run, (size_t)(p - run)) < 0) return -ENOMEM;
        char esc[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
        int r;
        if (*p == '"')
            r = buf_append(bp, "\\\"", 2);
        else if (*p == '\\')
            r = buf_append(bp, "\\\\", 2);
        else if (*p == '\n')
            r = buf_append(bp, "\\n", 2);
        else
            r = buf_append(bp, esc, 6);
        if (r < 0) return r;
        run = p + 1;
    }
    if (buf_append(bp, run, (size_t)(p - run)) < 0) return -ENOMEM;
    return buf_append(bp, "\"", 1);
}
