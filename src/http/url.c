/* Query-string parsing. */
#include "http/url.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

ssize_t url_decode(const char *src, size_t len, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c == '%') {
            if (i + 2 >= len) return -EINVAL;
            int h = hexval(src[i + 1]), l = hexval(src[i + 2]);
            if (h < 0 || l < 0) return -EINVAL;
            c = (char)(h * 16 + l);
            if (c == '\0') return -EINVAL;
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (o >= outlen) return -ENOSPC;
        out[o++] = c;
    }
    out[o] = '\0';
    return (ssize_t)o;
}

ssize_t url_query_get(const char *query, const char *name, char **out)
{
    size_t nl = strlen(name);
    const char *s = query;
    while (s && *s) {
        const char *amp = strchr(s, '&');
        const char *end = amp ? amp : s + strlen(s);
        const char *eq = memchr(s, '=', (size_t)(end - s));
        const char *kend = eq ? eq : end;
        if ((size_t)(kend - s) == nl && memcmp(s, name, nl) == 0) {
            const char *v = eq ? eq + 1 : end;
            size_t vl = (size_t)(end - v);
            char *buf = malloc(vl + 1);
            if (!buf) return -ENOMEM;
            ssize_t r = url_decode(v, vl, buf, vl);
            if (r < 0) {
                free(buf);
                return r;
            }
            *out = buf;
            return r;
        }
        s = amp ? amp + 1 : NULL;
    }
    return -ENOENT;
}

static char *decode_dup(const char *s, size_t n, int *err)
{
    char *out = malloc(n + 1);
    if (!out) {
        *err = -ENOMEM;
        return NULL;
    }
    ssize_t r = url_decode(s, n, out, n);
    if (r < 0) {
        free(out);
        *err = (int)r;
        return NULL;
    }
    return out;
}

int url_query_next(const char **cursor, char **name, char **value)
{
    const char *s = *cursor;
    while (s && *s == '&')
        s++;
    if (!s || !*s) return 0;
    const char *amp = strchr(s, '&');
    const char *end = amp ? amp : s + strlen(s);
    const char *eq = memchr(s, '=', (size_t)(end - s));
    const char *kend = eq ? eq : end;
    int err = 0;
    *name = decode_dup(s, (size_t)(kend - s), &err);
    *value = *name ? decode_dup(eq ? eq + 1 : end, eq ? (size_t)(end - eq - 1) : 0, &err) : NULL;
    if (!*value) {
        free(*name);
        *name = NULL;
        return err;
    }
    *cursor = end;
    return 1;
}
