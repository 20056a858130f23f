/* Allocation-failure sweeps over transport/device_codec (nghttp2 TEST_FAILMALLOC_RUN, as
 * in test_failmalloc.c): each call runs again and again with its 1st, 2nd, 3rd ...
 * allocation failing until a run allocates no more than that; every run must succeed or
 * say -ENOMEM, and leave nothing behind (LeakSanitizer checks under `make SAN=1 unit`).
 * malloc, calloc, realloc, strdup and strndup are replaced in this binary only. */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "transport/device_codec.h"

#ifdef __SANITIZE_ADDRESS__
#define REAL_MALLOC __interceptor_malloc
#define REAL_CALLOC __interceptor_calloc
#define REAL_REALLOC __interceptor_realloc
#else
#define REAL_MALLOC __libc_malloc
#define REAL_CALLOC __libc_calloc
#define REAL_REALLOC __libc_realloc
#endif
extern void *REAL_MALLOC(size_t);
extern void *REAL_CALLOC(size_t, size_t);
extern void *REAL_REALLOC(void *, size_t);

static long fm_countdown = -1; /* allocations left before the one that fails; -1: off */
static int fm_hit;

static int fm_fail_now(void)
{
    if (fm_countdown < 0) return 0;
    if (fm_countdown-- == 0) {
        fm_hit = 1;
        return 1;
    }
    return 0;
}

void *malloc(size_t n)
{
    return fm_fail_now() ? NULL : REAL_MALLOC(n);
}

void *calloc(size_t a, size_t b)
{
    return fm_fail_now() ? NULL : REAL_CALLOC(a, b);
}

void *realloc(void *p, size_t n)
{
    return fm_fail_now() ? NULL : REAL_REALLOC(p, n);
}

#undef strdup
char *strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

#undef strndup
char *strndup(const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static void fm_arm(long n)
{
    fm_hit = 0;
    fm_countdown = n;
}

static int fm_disarm(void)
{
    fm_countdown = -1;
    return fm_hit;
}

#define SWEEP_MAX 100000

/* The documents are parsed before the sweep: jansson's own loader does not survive an
 * allocation failure in its lexer (akheron/jansson#362, still open in 2.14), so only
 * what this codec does with a parsed document is swept. */
Test(device_failmalloc, result_from_json)
{
    static const char *bodies[] = {
        "{\"response\":{\"users\":[{\"id\":1,\"name\":\"Walter White\"}]}}",
        "{\"error\":\"user not found\",\"response\":[1,2,3]}",
        "{\"error\":{\"code\":5}}",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        json_t *doc = json_loads(bodies[i], 0, NULL);
        cr_assert_not_null(doc);
        int failures = 0;
        for (long n = 0; n < SWEEP_MAX; n++) {
            device_result_t r;
            char err[128];
            fm_arm(n);
            int rc = device_result_from_json(doc, &r, err, sizeof(err));
            int hit = fm_disarm();
            cr_assert(rc == 0 || rc == -ENOMEM, "%s: %d", bodies[i], rc);
            if (rc == 0)
                device_result_clear(&r);
            else
                cr_assert(!r.response && !r.error, "nothing left behind on failure");
            if (hit) failures++;
            if (!hit) break;
        }
        json_decref(doc);
        cr_assert(failures > 0, "%s: no allocation was failed", bodies[i]);
    }
}

Test(device_failmalloc, cmd_parse_and_encode)
{
    json_t *doc = json_loads("{\"verb\":\"get\",\"endpoint\":\"user_list\",\"body\":{\"a\":[1,"
                             "2]},\"contentType\":\"application/json\",\"queryString\":\"x=1\","
                             "\"ttlSeconds\":5}",
                             0, NULL);
    cr_assert_not_null(doc);
    int failures = 0;
    for (long n = 0; n < SWEEP_MAX; n++) {
        device_cmd_t c;
        int64_t ttl;
        char err[128];
        fm_arm(n);
        int rc = device_cmd_parse(doc, &c, &ttl, err, sizeof(err));
        buf_t *b = NULL;
        int er = 0;
        if (rc == 0 && (b = buf_new(4))) er = device_cmd_encode(&b, &c);
        int hit = fm_disarm();
        cr_assert(rc == 0 || rc == -ENOMEM, "%d", rc);
        cr_assert(er == 0 || er == -ENOMEM);
        if (rc == 0)
            device_cmd_clear(&c);
        else
            cr_assert(!c.verb && !c.endpoint && !c.body && !c.content_type && !c.query_string);
        buf_unref(b);
        if (hit) failures++;
        if (!hit) break;
    }
    json_decref(doc);
    cr_assert(failures > 0, "no allocation was failed");
}

Test(device_failmalloc, query_id)
{
    int64_t v;
    fm_arm(0);
    int rc = device_query_id("a=1&deviceId=42", &v);
    fm_disarm();
    cr_assert_eq(rc, -ENOMEM);
}
