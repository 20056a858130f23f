/* What an idle WebSocket push client keeps allocated, held to a budget (issue 12: at
 * most 512 B of user memory per idle connection; see docs/benchmarks.md, run 10):
 * its conn_t and one block holding the subscriber, the WebSocket glue, its session and
 * the client id. A field added to any of them that crosses a malloc size class shows
 * up here before it shows up in the benchmark. Includes the .c to reach the block. */
#include <criterion/criterion.h>

#include "transport/ws_client.c"

/* glibc's chunk for a request of n bytes (8 B header, 16-byte granules, 32 B least). */
static size_t chunk(size_t n)
{
    size_t c = (n + 8 + 15) & ~(size_t)15;
    return c < 32 ? 32 : c;
}

Test(idle_records, conn_is_small)
{
    cr_expect_leq(sizeof(conn_t), 104, "conn_t is %zu B: past one 112-byte chunk", sizeof(conn_t));
}

Test(idle_records, push_client_is_one_small_block)
{
    /* a client id of 15 characters, as the bench's "idle-12345" and more */
    size_t block = sizeof(ws_client_t) + 16;
    cr_expect_leq(chunk(block), 256, "ws_client_t is %zu B: its block takes %zu B",
                  sizeof(ws_client_t), chunk(block));
    cr_expect_leq(sizeof(ws_session_t), 88, "ws_session_t is %zu B", sizeof(ws_session_t));
    cr_expect_leq(sizeof(subscriber_t), 88, "subscriber_t is %zu B", sizeof(subscriber_t));
}

Test(idle_records, idle_websocket_under_budget)
{
    size_t total = chunk(sizeof(conn_t)) + chunk(sizeof(ws_client_t) + 16);
    cr_expect_leq(total, 368, "an idle WebSocket keeps %zu B allocated", total);
}
