/* Returning freed heap memory to the kernel after connections went away (memtrim.h). */
#include "core/memtrim.h"

#include <malloc.h>

#include "core/log.h"

static void on_tick(uv_timer_t *t)
{
    memtrim_t *m = t->data;
    uint32_t cur = __atomic_load_n(m->connections, __ATOMIC_RELAXED);
    if (cur >= m->peak) {
        m->peak = cur;
        return;
    }
    if (m->peak - cur < MEMTRIM_MIN_DROP) return;
    uint64_t t0 = uv_hrtime();
    int released = malloc_trim(0);
    m->trims++;
    log_debug("heap trimmed", "connections=%u peak=%u released=%d us=%llu", cur, m->peak, released,
              (unsigned long long)((uv_hrtime() - t0) / 1000));
    m->peak = cur;
}

int memtrim_start(memtrim_t *m, uv_loop_t *loop, const uint32_t *connections)
{
    int r = uv_timer_init(loop, &m->timer);
    if (r < 0) return r;
    m->connections = connections;
    m->peak = __atomic_load_n(connections, __ATOMIC_RELAXED);
    m->trims = 0;
    m->timer.data = m;
    uv_unref((uv_handle_t *)&m->timer); /* never what keeps the loop alive */
    return uv_timer_start(&m->timer, on_tick, MEMTRIM_PERIOD_MS, MEMTRIM_PERIOD_MS);
}

void memtrim_stop(memtrim_t *m)
{
    if (m->connections && !uv_is_closing((uv_handle_t *)&m->timer))
        uv_close((uv_handle_t *)&m->timer, NULL);
}
