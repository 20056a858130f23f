/* Regular-expression selectors over client id, session id and roles: PCRE2,
 * full-match (Java String.matches() semantics), JIT-compiled, cached per thread. */
#ifndef PG_SELECTOR_H
#define PG_SELECTOR_H

#include <stddef.h>

/* Compiles pattern to check it. On error writes "invalid regular expression at
 * offset N: <PCRE2 message>" into err. Returns 0 or -EINVAL. */
int selector_validate(const char *pattern, char *err, size_t errlen);

/* Tells whether pattern matches all of subject. A NULL pattern matches everything.
 * Patterns are compiled once per thread and cached (bounded). Returns 1 on a match,
 * 0 on none or when the pattern does not compile. */
int selector_match(const char *pattern, const char *subject);

/* Tells whether pattern matches any of the n strings (roles). NULL matches always. */
int selector_match_any(const char *pattern, char *const *subjects, size_t n);

/* Frees the calling thread's cache (threads call it before they end). */
void selector_thread_cleanup(void);

#endif
