/* core/origin: the Origin allow list of browser transports. */
#include <criterion/criterion.h>
#include <errno.h>

#include "core/origin.h"

static char *list[] = {"https://app.example.com", "https://*.example.org", "http://localhost:3000",
                       "null"};
#define N (sizeof(list) / sizeof(list[0]))

Test(origin, absent_origin_and_empty_list_allow)
{
    cr_assert_eq(origin_allowed(list, N, NULL), 1);
    cr_assert_eq(origin_allowed(NULL, 0, "https://evil.com"), 1);
}

Test(origin, exact_match_case_insensitive)
{
    cr_assert_eq(origin_allowed(list, N, "https://app.example.com"), 1);
    cr_assert_eq(origin_allowed(list, N, "HTTPS://App.Example.COM"), 1);
    cr_assert_eq(origin_allowed(list, N, "http://app.example.com"), 0);
    cr_assert_eq(origin_allowed(list, N, "https://app.example.com:8443"), 0);
    cr_assert_eq(origin_allowed(list, N, "https://app.example.com.evil.com"), 0);
    cr_assert_eq(origin_allowed(list, N, "https://xapp.example.com"), 0);
    cr_assert_eq(origin_allowed(list, N, "http://localhost:3000"), 1);
    cr_assert_eq(origin_allowed(list, N, "http://localhost:3001"), 0);
    cr_assert_eq(origin_allowed(list, N, "null"), 1);
    cr_assert_eq(origin_allowed(list, N, ""), 0);
}

Test(origin, wildcard_subdomains)
{
    cr_assert_eq(origin_allowed(list, N, "https://a.example.org"), 1);
    cr_assert_eq(origin_allowed(list, N, "https://a.b.example.org"), 1);
    cr_assert_eq(origin_allowed(list, N, "https://example.org"), 0);
    cr_assert_eq(origin_allowed(list, N, "https://.example.org"),
                 0); /* an empty label is not a subdomain */
    cr_assert_eq(origin_allowed(list, N, "http://a.example.org"), 0);
    cr_assert_eq(origin_allowed(list, N, "https://a.example.org:444"), 0);
    cr_assert_eq(origin_allowed(list, N, "https://evil.com/.example.org"), 0);
    cr_assert_eq(origin_allowed(list, N, "https://a:1.example.org"), 0);
    cr_assert_eq(origin_allowed(list, N, "https://aexample.org"), 0);
}

Test(origin, star_allows_all)
{
    char *all[] = {"*"};
    cr_assert_eq(origin_allowed(all, 1, "https://anything.test"), 1);
}

Test(origin, patterns_validated)
{
    cr_assert_eq(origin_pattern_valid("*"), 0);
    cr_assert_eq(origin_pattern_valid("null"), 0);
    cr_assert_eq(origin_pattern_valid("https://a.com"), 0);
    cr_assert_eq(origin_pattern_valid("https://a.com:8080"), 0);
    cr_assert_eq(origin_pattern_valid("https://*.a.com"), 0);
    cr_assert_eq(origin_pattern_valid("chrome-extension://abc"), 0);
    cr_assert_eq(origin_pattern_valid("https://[::1]:8080"), 0);
    cr_assert_eq(origin_pattern_valid(""), -EINVAL);
    cr_assert_eq(origin_pattern_valid("a.com"), -EINVAL);
    cr_assert_eq(origin_pattern_valid("https://a.com/"), -EINVAL);
    cr_assert_eq(origin_pattern_valid("https://a.com/path"), -EINVAL);
    cr_assert_eq(origin_pattern_valid("https://"), -EINVAL);
    cr_assert_eq(origin_pattern_valid("https://*."), -EINVAL);
    cr_assert_eq(origin_pattern_valid("https://a.*.com"), -EINVAL);
    cr_assert_eq(origin_pattern_valid("://a.com"), -EINVAL);
    cr_assert_eq(origin_pattern_valid("1http://a.com"), -EINVAL);
}
