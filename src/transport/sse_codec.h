/* Server-Sent Events encoding (WHATWG HTML §9.2). Pure: writes into buffers. Every
 * field value is split on CR, LF and CRLF so no input can forge a field or an event. */
#ifndef PG_SSE_CODEC_H
#define PG_SSE_CODEC_H

#include <stddef.h>

#include "core/buf.h"

/* Appends one event: `id:` (if id), `event:` (if event), one `data:` line per line of
 * data, then the blank line. NULL id/event are left out. Returns 0 or -ENOMEM. */
int sse_write_event(buf_t **bp, const char *id, const char *event, const char *data,
                    size_t data_len);

/* Appends a comment line (heartbeats): `: text` and a blank line. Returns 0 or -ENOMEM. */
int sse_write_comment(buf_t **bp, const char *text);

/* Appends `retry: ms` and a blank line. Returns 0 or -ENOMEM. */
int sse_write_retry(buf_t **bp, unsigned ms);

#endif
