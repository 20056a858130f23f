/* cluster/nats_codec: the strict nats:// URL (accepted forms, every refusal naming the
 * URL and what is wrong, the string handed to cnats) and ids as subject tokens (plain
 * characters kept, the rest escaped so that no id adds a token or a wildcard, distinct
 * ids give distinct tokens, sizes bounded). */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "cluster/nats_codec.h"

Test(cluster_nats, url_valid)
{
    static const struct {
        const char *url, *host, *formatted;
        int port;
    } ok[] = {
        {"nats://127.0.0.1:4223", "127.0.0.1", "nats://127.0.0.1:4223", 4223},
        {"nats://localhost", "localhost", "nats://localhost:4222", 4222},
        {"nats://nats.internal:1/", "nats.internal", "nats://nats.internal:1", 1},
        {"nats://[::1]:7000", "::1", "nats://[::1]:7000", 7000},
        {"nats://my_host-1:65535", "my_host-1", "nats://my_host-1:65535", 65535},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        cluster_nats_url_t u;
        char err[256], out[300];
        cr_assert_eq(cluster_nats_url_parse(ok[i].url, &u, err, sizeof(err)), 0, "%s: %s",
                     ok[i].url, err);
        cr_assert_str_eq(u.host, ok[i].host);
        cr_assert_eq(u.port, ok[i].port, "%s", ok[i].url);
        cr_assert_eq(cluster_nats_url_format(&u, out, sizeof(out)), (int)strlen(ok[i].formatted));
        cr_assert_str_eq(out, ok[i].formatted);
        cr_assert_eq(cluster_nats_url_format(&u, out, 8), -ENAMETOOLONG);
    }
}

Test(cluster_nats, url_invalid_names_it)
{
    static const struct {
        const char *url, *why;
    } bad[] = {
        {"", "the scheme must be nats://"},
        {"redis://h:1", "the scheme must be nats://"},
        {"tls://h:4222", "the scheme must be nats://"},
        {"nats:/h", "the scheme must be nats://"},
        {"nats://", "the host is missing"},
        {"nats://:4222", "the host is missing"},
        {"nats://u:p@h:4222", "credentials are not supported"},
        {"nats://h:0", "the port must be a number from 1 to 65535"},
        {"nats://h:65536", "the port must be a number from 1 to 65535"},
        {"nats://h:123456", "the port must be a number from 1 to 65535"},
        {"nats://h:", "the port must be a number from 1 to 65535"},
        {"nats://h:12a", "unexpected characters after the host"},
        {"nats://h/x", "unexpected characters after the host"},
        {"nats://h,g:4222", "bad character in the host"},
        {"nats://h h", "bad character in the host"},
        {"nats://[]:1", "an IPv6 address must be written [addr]"},
        {"nats://[::1", "an IPv6 address must be written [addr]"},
        {"nats://[::g]:1", "bad character in the IPv6 address"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cluster_nats_url_t u;
        char err[256] = "";
        cr_assert_eq(cluster_nats_url_parse(bad[i].url, &u, err, sizeof(err)), -EINVAL, "%s",
                     bad[i].url);
        cr_assert(strstr(err, bad[i].why), "%s: %s", bad[i].url, err);
        cr_assert(strstr(err, "expected nats://host[:port]"), "%s", err);
        if (*bad[i].url) cr_assert(strstr(err, bad[i].url), "the message names the URL: %s", err);
    }
    char err[256];
    cluster_nats_url_t u;
    cr_assert_eq(cluster_nats_url_parse(NULL, &u, err, sizeof(err)), -EINVAL);
    char longhost[300 + 8] = "nats://";
    memset(longhost + 7, 'a', 300);
    longhost[307] = '\0';
    cr_assert_eq(cluster_nats_url_parse(longhost, &u, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "the host is too long"), "%s", err);
}

Test(cluster_nats, subject_token)
{
    static const struct {
        const char *id, *token;
    } cases[] = {
        {"n1", "n1"},
        {"web-1_a", "web-1_a"},
        {"host.example.com-42", "host%2Eexample%2Ecom-42"},
        {"a b", "a%20b"},
        {"*", "%2A"},
        {">", "%3E"},
        {"%2E", "%252E"},
        {"é", "%C3%A9"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[64];
        int n = cluster_subject_token(cases[i].id, out, sizeof(out));
        cr_assert_eq(n, (int)strlen(cases[i].token), "%s", cases[i].id);
        cr_assert_str_eq(out, cases[i].token);
        for (const char *c = out; *c; c++)
            cr_assert(!strchr(".*> \t\r\n", *c), "token %s has %c", out, *c);
    }
    /* "." and "%2E" must not meet */
    char a[16], b[16];
    cluster_subject_token(".", a, sizeof(a));
    cluster_subject_token("%2E", b, sizeof(b));
    cr_assert_str_neq(a, b);
    char out[8];
    cr_assert_eq(cluster_subject_token("", out, sizeof(out)), -EINVAL);
    cr_assert_eq(cluster_subject_token(NULL, out, sizeof(out)), -EINVAL);
    cr_assert_eq(cluster_subject_token("1234567", out, sizeof(out)), 7);
    cr_assert_eq(cluster_subject_token("12345678", out, sizeof(out)), -ENAMETOOLONG);
    cr_assert_eq(cluster_subject_token("12345.", out, sizeof(out)), -ENAMETOOLONG);
}
