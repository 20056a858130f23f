/* SSE field encoding. */
#include "transport/sse_codec.h"

#include <string.h>

/* Writes `name: value` lines, one per line of value (CR, LF and CRLF all end a line). */
static int field(buf_t **bp, const char *name, const char *v, size_t len)
{
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && v[i] != '\r' && v[i] != '\n') continue;
        int r = buf_puts(bp, name);
        r |= buf_append(bp, ": ", 2);
        r |= buf_append(bp, v + start, i - start);
        r |= buf_append(bp, "\n", 1);
        if (r) return r;
        if (i < len && v[i] == '\r' && i + 1 < len && v[i + 1] == '\n') i++;
        start = i + 1;
    }
    return 0;
}

int sse_write_event(buf_t **bp, const char *id, const char *event, const char *data,
                    size_t data_len)
{
    int r = 0;
    if (id) r |= field(bp, "id", id, strlen(id));
    if (event) r |= field(bp, "event", event, strlen(event));
    r |= field(bp, "data", data, data_len);
    r |= buf_append(bp, "\n", 1);
    return r;
}

int sse_write_comment(buf_t **bp, const char *text)
{
    int r = field(bp, "", text, strlen(text));
    r |= buf_append(bp, "\n", 1);
    return r;
}

int sse_write_retry(buf_t **bp, unsigned ms)
{
    return buf_printf(bp, "retry: %u\n\n", ms);
}
