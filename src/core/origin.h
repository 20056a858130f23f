/* The Origin allow list for browser transports (WebSocket, SSE, Engine.IO): pure
 * matching of a request's Origin header against configured origins. */
#ifndef PG_ORIGIN_H
#define PG_ORIGIN_H

#include <stddef.h>

/* Checks one configured entry: a lone star, "null", or scheme, "://", host and an
 * optional port, where the host may start with a star label (any subdomain).
 * Returns 0 or -EINVAL. */
int origin_pattern_valid(const char *pattern);

/* Decides whether a request with Origin header origin (NULL: absent, as non-browser
 * clients send none) may use a browser transport under the list of n patterns (0: any
 * origin). Matching is ASCII case-insensitive and exact on scheme, host and port.
 * Returns 1 when allowed, 0 when not. */
int origin_allowed(char *const *patterns, size_t n, const char *origin);

#endif
