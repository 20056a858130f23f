/* Guard-page inputs for codec tests (picohttpparser `test.c`): bytes are copied to the
 * very end of a mapping whose next page is PROT_NONE, so reading one byte past the
 * input faults instead of passing silently. */
#ifndef PG_TEST_GUARD_H
#define PG_TEST_GUARD_H

#include <criterion/criterion.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct guard_s {
    uint8_t *map;
    size_t map_len;
} guard_t;

/* Copies len bytes so that they end right before a PROT_NONE page. Returns the copy,
 * valid until guard_release. */
static inline void *guard_copy(guard_t *g, const void *data, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t body = (len + page - 1) / page * page;
    if (body == 0) body = page;
    g->map_len = body + page;
    g->map = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert(g->map != MAP_FAILED, "mmap failed");
    cr_assert(mprotect(g->map + body, page, PROT_NONE) == 0, "mprotect failed");
    uint8_t *p = g->map + body - len;
    if (len) memcpy(p, data, len);
    return p;
}

static inline void guard_release(guard_t *g)
{
    if (g->map) munmap(g->map, g->map_len);
    g->map = NULL;
    g->map_len = 0;
}

#endif
