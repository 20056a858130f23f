/* Query-string access with percent-decoding. Pure string functions. */
#ifndef PG_HTTP_URL_H
#define PG_HTTP_URL_H

#include <stddef.h>
#include <sys/types.h>

/* Percent-decodes src[0..len) into out (room for outlen bytes plus NUL); '+' becomes a
 * space. Returns the decoded length, -ENOSPC if out is too small, -EINVAL on a bad
 * escape or an encoded NUL. */
ssize_t url_decode(const char *src, size_t len, char *out, size_t outlen);

/* Finds the first parameter called name in query ("a=1&b=2") and decodes its value
 * into a new string (*out, free() it). A parameter without '=' has value "".
 * Returns the value's length, -ENOENT if absent, -EINVAL on a bad escape, -ENOMEM. */
ssize_t url_query_get(const char *query, const char *name, char **out);

/* Iterates the parameters of a query: *cursor starts at the query and advances. Sets
 * *name and *value to new decoded strings (free both). Returns 1 for a parameter, 0 at
 * the end, -EINVAL on a bad escape, -ENOMEM. */
int url_query_next(const char **cursor, char **name, char **value);

#endif
