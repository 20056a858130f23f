/* store/idem: the in-memory Idempotency-Key store: reserve, pending, answer, repeat,
 * mismatch, release, TTL, and the bound on its size. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "store/idem.h"

static idem_t *s;

static void setup(void)
{
    s = idem_mem_new(1000, 3);
    cr_assert_not_null(s);
}

static void teardown(void)
{
    idem_free(s);
}

TestSuite(idem, .init = setup, .fini = teardown);

static void answer(const char *scope, int64_t now, const char *body)
{
    idem_answer_t a = {.status = 200,
                       .content_type = "application/json",
                       .headers = "X-Push-Id: p\r\n",
                       .body = (char *)body,
                       .body_len = strlen(body)};
    cr_assert_eq(idem_finish(s, scope, "fp", now, &a), 0);
}

Test(idem, reserve_then_repeat_gets_the_answer)
{
    idem_answer_t a;
    cr_assert_eq(idem_begin(s, "push:k:1", "fp", 0, &a), IDEM_NEW);
    cr_assert_eq(idem_begin(s, "push:k:1", "fp", 1, &a), IDEM_PENDING);
    cr_assert_eq(idem_begin(s, "push:k:1", "other", 1, &a), IDEM_MISMATCH);
    answer("push:k:1", 2, "{\"a\":1}");
    cr_assert_eq(idem_begin(s, "push:k:1", "fp", 3, &a), IDEM_DONE);
    cr_assert_eq(a.status, 200);
    cr_assert_str_eq(a.content_type, "application/json");
    cr_assert_str_eq(a.headers, "X-Push-Id: p\r\n");
    cr_assert_eq(a.body_len, 7);
    cr_assert_str_eq(a.body, "{\"a\":1}");
    idem_answer_clear(&a);
    cr_assert_eq(idem_begin(s, "push:k:1", "other", 3, &a), IDEM_MISMATCH);
}

Test(idem, forget_releases_a_pending_key_only)
{
    idem_answer_t a;
    cr_assert_eq(idem_begin(s, "k", "fp", 0, &a), IDEM_NEW);
    idem_forget(s, "k");
    cr_assert_eq(idem_begin(s, "k", "fp", 0, &a), IDEM_NEW);
    answer("k", 1, "x");
    idem_forget(s, "k");
    cr_assert_eq(idem_begin(s, "k", "fp", 2, &a), IDEM_DONE);
    idem_answer_clear(&a);
}

Test(idem, answers_expire_after_the_ttl)
{
    idem_answer_t a;
    cr_assert_eq(idem_begin(s, "k", "fp", 0, &a), IDEM_NEW);
    answer("k", 10, "x");
    cr_assert_eq(idem_begin(s, "k", "fp", 1009, &a), IDEM_DONE);
    idem_answer_clear(&a);
    cr_assert_eq(idem_begin(s, "k", "fp", 1010, &a), IDEM_NEW);
}

Test(idem, a_full_store_drops_the_oldest_answer_never_a_pending_key)
{
    idem_answer_t a;
    cr_assert_eq(idem_begin(s, "a", "fp", 0, &a), IDEM_NEW);
    cr_assert_eq(idem_begin(s, "b", "fp", 0, &a), IDEM_NEW);
    cr_assert_eq(idem_begin(s, "c", "fp", 0, &a), IDEM_NEW);
    cr_assert_eq(idem_begin(s, "d", "fp", 0, &a), -ENOSPC, "three keys in progress");
    answer("b", 1, "b");
    answer("a", 2, "a");
    /* b was answered first: it makes room */
    cr_assert_eq(idem_begin(s, "d", "fp", 3, &a), IDEM_NEW);
    /* b's answer is gone: b acts again; that drops a, the last answer, to make room */
    cr_assert_eq(idem_begin(s, "b", "fp", 3, &a), IDEM_NEW);
    cr_assert_eq(idem_begin(s, "a", "fp", 3, &a), -ENOSPC, "c, d, b in progress");
    cr_assert_eq(idem_begin(s, "c", "fp", 3, &a), IDEM_PENDING);
}
