/* core/iptable: connections per client address, shared by the workers. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "core/iptable.h"

static ipkey_t v4(const char *s)
{
    struct sockaddr_in in = {.sin_family = AF_INET};
    inet_pton(AF_INET, s, &in.sin_addr);
    ipkey_t k;
    cr_assert_eq(ipkey_from_sockaddr((struct sockaddr *)&in, &k), 0);
    return k;
}

static ipkey_t v6(const char *s)
{
    struct sockaddr_in6 in = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, s, &in.sin6_addr);
    ipkey_t k;
    cr_assert_eq(ipkey_from_sockaddr((struct sockaddr *)&in, &k), 0);
    return k;
}

Test(iptable, limit_per_address)
{
    iptable_t *t;
    cr_assert_eq(iptable_new(&t), 0);
    ipkey_t a = v4("10.0.0.1"), b = v4("10.0.0.2");
    for (int i = 0; i < 3; i++)
        cr_assert_eq(iptable_acquire(t, &a, 3, NULL), 0);
    cr_assert_eq(iptable_acquire(t, &a, 3, NULL), -EUSERS);
    cr_assert_eq(iptable_count(t, &a), 3);
    cr_assert_eq(iptable_acquire(t, &b, 3, NULL), 0); /* another address is not affected */
    iptable_release(t, &a);
    cr_assert_eq(iptable_acquire(t, &a, 3, NULL), 0);
    iptable_free(t);
}

Test(iptable, entries_go_at_zero)
{
    iptable_t *t;
    cr_assert_eq(iptable_new(&t), 0);
    ipkey_t a = v6("2001:db8::1");
    cr_assert_eq(iptable_acquire(t, &a, 0, NULL), 0);
    cr_assert_eq(iptable_acquire(t, &a, 0, NULL), 0);
    iptable_release(t, &a);
    iptable_release(t, &a);
    cr_assert_eq(iptable_count(t, &a), 0);
    iptable_release(t, &a); /* an unknown address: nothing happens */
    cr_assert_eq(iptable_count(t, &a), 0);
    iptable_free(t); /* LeakSanitizer: no entry left behind */
}

Test(iptable, v4_and_mapped_v6_are_one_address)
{
    iptable_t *t;
    cr_assert_eq(iptable_new(&t), 0);
    ipkey_t a = v4("192.0.2.7"), m = v6("::ffff:192.0.2.7"), o = v6("::192.0.2.7");
    cr_assert_eq(iptable_acquire(t, &a, 2, NULL), 0);
    cr_assert_eq(iptable_acquire(t, &m, 2, NULL), 0);
    cr_assert_eq(iptable_acquire(t, &a, 2, NULL), -EUSERS);
    cr_assert_eq(iptable_acquire(t, &o, 2, NULL), 0);
    iptable_free(t);
}

Test(iptable, many_addresses)
{
    iptable_t *t;
    cr_assert_eq(iptable_new(&t), 0);
    for (unsigned i = 0; i < 70000; i++) {
        ipkey_t k = {{0}};
        memcpy(k.b, &i, sizeof(i));
        cr_assert_eq(iptable_acquire(t, &k, 1, NULL), 0);
    }
    for (unsigned i = 0; i < 70000; i += 7) {
        ipkey_t k = {{0}};
        memcpy(k.b, &i, sizeof(i));
        cr_assert_eq(iptable_acquire(t, &k, 1, NULL), -EUSERS);
        iptable_release(t, &k);
        cr_assert_eq(iptable_count(t, &k), 0);
    }
    iptable_free(t);
}

Test(iptable, held_copy_releases)
{
    iptable_t *t;
    cr_assert_eq(iptable_new(&t), 0);
    ipkey_t a = v4("10.9.9.9");
    const ipkey_t *h1 = NULL, *h2 = NULL;
    cr_assert_eq(iptable_acquire(t, &a, 0, &h1), 0);
    cr_assert_eq(iptable_acquire(t, &a, 0, &h2), 0);
    cr_assert_eq(h1, h2);
    cr_assert(memcmp(h1->b, a.b, 16) == 0);
    iptable_release(t, h1);
    iptable_release(t, h2); /* the last one frees the copy it reads from */
    cr_assert_eq(iptable_count(t, &a), 0);
    iptable_free(t);
}

Test(iptable, other_families_refused)
{
    struct sockaddr sa = {.sa_family = AF_UNIX};
    ipkey_t k;
    cr_assert_eq(ipkey_from_sockaddr(&sa, &k), -EAFNOSUPPORT);
}

static iptable_t *shared;

static void *hammer(void *arg)
{
    ipkey_t k = v4(arg);
    for (int i = 0; i < 20000; i++) {
        if (iptable_acquire(shared, &k, 1000000, NULL) == 0) iptable_release(shared, &k);
    }
    return NULL;
}

Test(iptable, threads_balance_out)
{
    cr_assert_eq(iptable_new(&shared), 0);
    pthread_t th[4];
    char *addrs[4] = {"10.1.1.1", "10.1.1.1", "10.1.1.2", "10.1.1.3"};
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, hammer, addrs[i]);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    ipkey_t k = v4("10.1.1.1");
    cr_assert_eq(iptable_count(shared, &k), 0);
    iptable_free(shared);
}
