/* Gives the heap memory freed by departed connections back to the kernel. glibc keeps
 * what is freed inside its arenas (one per worker thread) and returns only the top of
 * the main one by itself, so after a disconnect storm the RSS of a node stays at its
 * peak; malloc_trim() releases the free pages of every arena. It runs on the main
 * loop, at most once a period, and only after the node shed a good number of
 * connections since its last high-water mark (docs/operations.md, "Memory"). */
#ifndef PG_CORE_MEMTRIM_H
#define PG_CORE_MEMTRIM_H

#include <stdint.h>
#include <uv.h>

#define MEMTRIM_PERIOD_MS 2000
#define MEMTRIM_MIN_DROP 256 /* connections gone since the high-water mark */

typedef struct memtrim_s {
    uv_timer_t timer;
    const uint32_t *connections; /* the pool's count (atomic) */
    uint32_t peak;
    uint64_t trims;
} memtrim_t;

/* Starts watching *connections on loop. Returns 0 or a libuv error. */
int memtrim_start(memtrim_t *m, uv_loop_t *loop, const uint32_t *connections);

/* Stops it (closes the timer; the loop must run once more). */
void memtrim_stop(memtrim_t *m);

#endif
