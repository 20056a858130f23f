/* PCRE2 full-match selectors with a small per-thread cache of JIT-compiled patterns
 * (pcre2_code is shared-safe, match data is not: each thread has its own). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "hub/selector.h"

#include <errno.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SELECTOR_CACHE 64

typedef struct cache_entry_s {
    char *pattern;
    pcre2_code *code; /* NULL: the pattern does not compile */
    unsigned long used;
} cache_entry_t;

static __thread cache_entry_t sel_cache[SELECTOR_CACHE];
static __thread unsigned long sel_clock;
static __thread pcre2_match_data *sel_md;

static pcre2_code *compile(const char *pattern, int *errcode, PCRE2_SIZE *erroff)
{
    pcre2_code *code =
        pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                      PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_UTF | PCRE2_MATCH_INVALID_UTF,
                      errcode, erroff, NULL);
    if (code) pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    return code;
}

int selector_validate(const char *pattern, char *err, size_t errlen)
{
    int ec;
    PCRE2_SIZE off;
    pcre2_code *code = compile(pattern, &ec, &off);
    if (code) {
        pcre2_code_free(code);
        return 0;
    }
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(ec, msg, sizeof(msg));
    snprintf(err, errlen, "invalid regular expression at offset %zu: %s", (size_t)off,
             (const char *)msg);
    return -EINVAL;
}

static cache_entry_t *lookup(const char *pattern)
{
    cache_entry_t *victim = &sel_cache[0];
    for (int i = 0; i < SELECTOR_CACHE; i++) {
        cache_entry_t *e = &sel_cache[i];
        if (e->pattern && strcmp(e->pattern, pattern) == 0) {
            e->used = ++sel_clock;
            return e;
        }
        if (e->used < victim->used) victim = e;
    }
    int ec;
    PCRE2_SIZE off;
    pcre2_code *code = compile(pattern, &ec, &off);
    char *copy = code ? strdup(pattern) : NULL;
    if (!copy) {
        /* patterns are validated where they enter the node, so a failure here is a
         * failed allocation: cache nothing, the next match tries again */
        pcre2_code_free(code);
        return NULL;
    }
    free(victim->pattern);
    pcre2_code_free(victim->code);
    victim->pattern = copy;
    victim->code = code;
    victim->used = ++sel_clock;
    return victim;
}

int selector_match(const char *pattern, const char *subject)
{
    if (!pattern) return 1;
    if (!subject) return 0;
    cache_entry_t *e = lookup(pattern);
    if (!e || !e->code) return 0;
    if (!sel_md && !(sel_md = pcre2_match_data_create(1, NULL))) return 0;
    int r = pcre2_match(e->code, (PCRE2_SPTR)subject, strlen(subject), 0, 0, sel_md, NULL);
    return r >= 0;
}

int selector_match_any(const char *pattern, char *const *subjects, size_t n)
{
    if (!pattern) return 1;
    for (size_t i = 0; i < n; i++)
        if (selector_match(pattern, subjects[i])) return 1;
    return 0;
}

void selector_thread_cleanup(void)
{
    for (int i = 0; i < SELECTOR_CACHE; i++) {
        free(sel_cache[i].pattern);
        pcre2_code_free(sel_cache[i].code);
        sel_cache[i] = (cache_entry_t){0};
    }
    pcre2_match_data_free(sel_md);
    sel_md = NULL;
}
