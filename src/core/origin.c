/* Origin matching (RFC 6454 serialized origins): scheme, host and optional port, no
 * path. A host starting with the wildcard label matches a.example.com and
 * a.b.example.com but not example.com itself, nor another scheme or port. */
#include "core/origin.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

static int host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '[' || c == ']' || c == ':';
}

int origin_pattern_valid(const char *pattern)
{
    if (!pattern || !*pattern) return -EINVAL;
    if (strcmp(pattern, "*") == 0 || strcmp(pattern, "null") == 0) return 0;
    const char *sep = strstr(pattern, "://");
    if (!sep || sep == pattern) return -EINVAL;
    for (const char *s = pattern; s < sep; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (s > pattern && ((*s >= '0' && *s <= '9') || *s == '+' || *s == '-' || *s == '.'))))
            return -EINVAL;
    const char *host = sep + 3;
    if (strncmp(host, "*.", 2) == 0) host += 2;
    if (!*host) return -EINVAL;
    for (const char *s = host; *s; s++)
        if (!host_char(*s)) return -EINVAL; /* no path, query, user info or second wildcard */
    return 0;
}

/* One pattern against one origin. */
static int match(const char *pat, const char *origin)
{
    if (strcmp(pat, "*") == 0) return 1;
    const char *star = strstr(pat, "://*.");
    if (!star) return strcasecmp(pat, origin) == 0;
    size_t scheme = (size_t)(star - pat) + 3; /* "https://" */
    if (strlen(origin) <= scheme || strncasecmp(pat, origin, scheme) != 0) return 0;
    const char *suffix = star + 4; /* ".example.com[:port]" */
    const char *host = origin + scheme;
    size_t hl = strlen(host), sl = strlen(suffix);
    /* at least one label before the suffix, and that label has no port or path in it */
    if (hl <= sl || strcasecmp(host + hl - sl, suffix) != 0) return 0;
    for (const char *s = host; s < host + hl - sl; s++)
        if (!host_char(*s) || *s == ':' || *s == '[' || *s == ']') return 0;
    return 1;
}

int origin_allowed(char *const *patterns, size_t n, const char *origin)
{
    if (n == 0 || !origin) return 1;
    for (size_t i = 0; i < n; i++)
        if (match(patterns[i], origin)) return 1;
    return 0;
}
