/* hub/selector: full-match (Java String.matches()) semantics, validation messages, and the
 * per-thread pattern cache past its 64 entries. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "hub/selector.h"

static void cleanup(void)
{
    selector_thread_cleanup();
}

TestSuite(selector, .fini = cleanup);

Test(selector, full_match_not_substring)
{
    cr_assert_eq(selector_match("tribefire", "tribefire"), 1);
    cr_assert_eq(selector_match("tribefire", "tribefire-explorer.auth"), 0);
    cr_assert_eq(selector_match("tribefire", "x-tribefire"), 0);
    cr_assert_eq(selector_match("explorer", "tribefire-explorer.auth"), 0);
    cr_assert_eq(selector_match("tribefire.*", "tribefire-explorer.auth"), 1);
    cr_assert_eq(selector_match("tribefire.*", "tribefire"), 1);
    cr_assert_eq(selector_match(".*explorer.*", "tribefire-explorer.auth"), 1);
    cr_assert_eq(selector_match("tribefire.*", "x-tribefire"), 0);
}

Test(selector, alternation_must_match_all_of_the_subject)
{
    /* Java's matches() tries "ab" for a|ab rather than stopping at "a" */
    cr_assert_eq(selector_match("a|ab", "ab"), 1);
    cr_assert_eq(selector_match("a|ab", "a"), 1);
    cr_assert_eq(selector_match("a|ab", "abc"), 0);
    cr_assert_eq(selector_match("ab|a", "ab"), 1);
    cr_assert_eq(selector_match("x|y", "xy"), 0);
    cr_assert_eq(selector_match("(?:a|ab)(?:c|bcd)", "abcd"), 1);
}

Test(selector, escaped_dollar)
{
    cr_assert_eq(selector_match("\\$user-john", "$user-john"), 1);
    cr_assert_eq(selector_match("\\$user-john", "$user-johnny"), 0);
    cr_assert_eq(selector_match("\\$user-john", "user-john"), 0);
    cr_assert_eq(selector_match("\\$group-.*", "$group-admins"), 1);
}

Test(selector, anchors_in_the_pattern_are_harmless)
{
    cr_assert_eq(selector_match("^abc$", "abc"), 1);
    cr_assert_eq(selector_match("^abc$", "abcd"), 0);
}

Test(selector, dollar_does_not_match_before_final_newline)
{
    /* full match means the whole subject: a trailing newline is not ignored */
    cr_assert_eq(selector_match("abc", "abc\n"), 0);
    cr_assert_eq(selector_match("abc$", "abc\n"), 0);
}

Test(selector, empty_pattern_and_subject)
{
    cr_assert_eq(selector_match("", ""), 1);
    cr_assert_eq(selector_match("", "a"), 0);
    cr_assert_eq(selector_match(".*", ""), 1);
    cr_assert_eq(selector_match("a", ""), 0);
}

Test(selector, utf8_subjects)
{
    cr_assert_eq(selector_match("caf.", "caf\xc3\xa9"), 1, "'.' is one code point");
    cr_assert_eq(selector_match("caf..", "caf\xc3\xa9"), 0);
    /* invalid UTF-8 in the subject does not crash and does not match a plain pattern */
    cr_assert_eq(selector_match("abc", "ab\xff"), 0);
    cr_assert_eq(selector_match("ab.*", "ab\xff"), 0);
}

Test(selector, null_pattern_matches_everything)
{
    cr_assert_eq(selector_match(NULL, "anything"), 1);
    cr_assert_eq(selector_match(NULL, ""), 1);
    cr_assert_eq(selector_match(NULL, NULL), 1);
    cr_assert_eq(selector_match_any(NULL, NULL, 0), 1);
}

Test(selector, null_subject_never_matches)
{
    cr_assert_eq(selector_match(".*", NULL), 0);
}

Test(selector, invalid_pattern_matches_nothing)
{
    cr_assert_eq(selector_match("(a", "a"), 0);
    cr_assert_eq(selector_match("(a", "(a"), 0);
    cr_assert_eq(selector_match("[", ""), 0);
    /* asked again, from the cache */
    cr_assert_eq(selector_match("(a", "a"), 0);
}

Test(selector, match_any_over_roles)
{
    char *roles[] = {"$all", "admin", "$group-ops", "$user-john"};
    cr_assert_eq(selector_match_any("admin", roles, 4), 1);
    cr_assert_eq(selector_match_any("adm", roles, 4), 0);
    cr_assert_eq(selector_match_any("\\$group-.*", roles, 4), 1);
    cr_assert_eq(selector_match_any("\\$user-john", roles, 4), 1);
    cr_assert_eq(selector_match_any("\\$user-jo", roles, 4), 0);
    cr_assert_eq(selector_match_any("nobody|admin", roles, 4), 1);
    cr_assert_eq(selector_match_any("admin", roles, 1), 0, "only the first n count");
    cr_assert_eq(selector_match_any("admin", roles, 0), 0);
    cr_assert_eq(selector_match_any(".*", NULL, 0), 0, "no roles, a pattern: no match");
}

Test(selector, validate_ok)
{
    char err[256] = "untouched";
    cr_assert_eq(selector_validate("tribefire.*", err, sizeof(err)), 0);
    cr_assert_eq(selector_validate("a|ab", err, sizeof(err)), 0);
    cr_assert_eq(selector_validate("\\$user-john", err, sizeof(err)), 0);
    cr_assert_eq(selector_validate("", err, sizeof(err)), 0);
}

Test(selector, validate_reports_offset)
{
    char err[256] = "";
    cr_assert_eq(selector_validate("(a", err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "offset"), "\"%s\" lacks \"offset\"", err);
    cr_assert(strstr(err, "offset 2"), "\"%s\": the error is at offset 2", err);
    cr_assert(strncmp(err, "invalid regular expression at offset ", 37) == 0, "%s", err);

    cr_assert_eq(selector_validate("ab[", err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "offset 3"), "%s", err);
    cr_assert_eq(selector_validate("*a", err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "offset 0"), "%s", err);
}

Test(selector, validate_truncates_error_to_errlen)
{
    char err[16];
    memset(err, 'X', sizeof(err));
    cr_assert_eq(selector_validate("(a", err, sizeof(err)), -EINVAL);
    cr_assert_eq(strlen(err), sizeof(err) - 1);
}

Test(selector, cache_works_past_its_size)
{
    /* 200 distinct patterns: more than the 64 cached, so entries are evicted and
     * recompiled; every answer must stay right, in two rounds and in reverse */
    char pat[64], hit[64], miss[64];
    for (int round = 0; round < 3; round++) {
        for (int k = 0; k < 200; k++) {
            int i = round == 1 ? 199 - k : k;
            snprintf(pat, sizeof(pat), "client-%d(-[a-z]+)?", i);
            snprintf(hit, sizeof(hit), "client-%d-web", i);
            snprintf(miss, sizeof(miss), "client-%d-web", i + 1);
            cr_assert_eq(selector_match(pat, hit), 1, "round %d: %s ~ %s", round, pat, hit);
            snprintf(hit, sizeof(hit), "client-%d", i);
            cr_assert_eq(selector_match(pat, hit), 1, "round %d: %s ~ %s", round, pat, hit);
            cr_assert_eq(selector_match(pat, miss), 0, "round %d: %s !~ %s", round, pat, miss);
        }
    }
}

Test(selector, cache_keeps_hot_patterns_right_while_churning)
{
    char pat[64], subj[64];
    for (int i = 0; i < 500; i++) {
        cr_assert_eq(selector_match("hot-.*", "hot-1"), 1);
        cr_assert_eq(selector_match("hot-.*", "cold-1"), 0);
        snprintf(pat, sizeof(pat), "p%d", i);
        snprintf(subj, sizeof(subj), "p%d", i);
        cr_assert_eq(selector_match(pat, subj), 1, "%s", pat);
        cr_assert_eq(selector_match(pat, "p"), 0, "%s", pat);
    }
}

Test(selector, cleanup_then_reuse)
{
    cr_assert_eq(selector_match("a.c", "abc"), 1);
    selector_thread_cleanup();
    selector_thread_cleanup();
    cr_assert_eq(selector_match("a.c", "abc"), 1);
    cr_assert_eq(selector_match("a.c", "abd"), 0);
}

static void *thread_body(void *arg)
{
    int base = *(int *)arg;
    int ok = 1;
    char pat[64], subj[64];
    for (int i = 0; i < 300; i++) {
        snprintf(pat, sizeof(pat), "t%d-%d-.*", base, i % 100);
        snprintf(subj, sizeof(subj), "t%d-%d-x", base, i % 100);
        ok &= selector_match(pat, subj) == 1;
        snprintf(subj, sizeof(subj), "t%d-%d-x", base + 1, i % 100);
        ok &= selector_match(pat, subj) == 0;
    }
    selector_thread_cleanup();
    return (void *)(long)ok;
}

Test(selector, per_thread_caches)
{
    pthread_t t[4];
    int bases[4] = {0, 10, 20, 30};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, thread_body, &bases[i]), 0);
    for (int i = 0; i < 4; i++) {
        void *ok;
        pthread_join(t[i], &ok);
        cr_assert_eq((long)ok, 1, "thread %d", i);
    }
}
