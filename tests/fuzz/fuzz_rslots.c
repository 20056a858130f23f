/* libFuzzer target for cluster/rslots: what a Redis Cluster node answers goes through
 * these parsers. The first byte picks one: 0 a CLUSTER SLOTS reply (RESP bytes, read
 * with hiredis's reader, then parsed into a slot map whose owners must name its
 * nodes), 1 an error reply's text (MOVED/ASK), 2 a "host:port" seed, 3 a key (its slot
 * must be below 16384, and a key with a hash tag must hash like the tag). */
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/rslots.h"

static rslots_map_t map;

/* Whether every RESP aggregate header (*N) in d announces at most a few thousand
 * elements: Debian's hiredis 0.14 reader has no element bound and callocs the whole
 * array up front, so a "*388888888" would only measure the fuzzer's memory limit, not
 * rslots (a real reply comes from the cluster node, with 16384 slots at most). */
static int small_arrays(const uint8_t *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (d[i] != '*') continue;
        unsigned long v = 0;
        for (size_t j = i + 1; j < n && d[j] >= '0' && d[j] <= '9' && v <= 100000; j++)
            v = v * 10 + (unsigned long)(d[j] - '0');
        if (v > 100000) return 0;
    }
    return 1;
}

static void slots(const uint8_t *d, size_t n)
{
    if (!small_arrays(d, n)) return;
    redisReader *r = redisReaderCreate();
    if (!r) return;
    void *reply = NULL;
    if (redisReaderFeed(r, (const char *)d, n) == REDIS_OK &&
        redisReaderGetReply(r, &reply) == REDIS_OK && reply) {
        char err[256];
        int got = rslots_parse_slots(reply, "127.0.0.1", &map, err, sizeof(err));
        if (got >= 0) {
            int covered = 0;
            for (int s = 0; s < RSLOTS_N; s++) {
                if (map.owner[s] >= map.n) __builtin_trap();
                covered += map.owner[s] >= 0;
            }
            if (covered != got) __builtin_trap();
        }
        freeReplyObject(reply);
    }
    redisReaderFree(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    /* a copy of exactly n bytes: an over-read is ASan's to see */
    char *s = malloc(n ? n : 1);
    if (!s) return 0;
    memcpy(s, d, n);
    switch (data[0] % 4) {
    case 0:
        slots(d, n);
        break;
    case 1: {
        rslots_redirect_t rd;
        int r = rslots_parse_redirect(s, n, &rd);
        if (r == 1 && (rd.slot >= RSLOTS_N || rd.to.port < 1 || rd.to.port > 65535))
            __builtin_trap();
        break;
    }
    case 2: {
        rslots_node_t nd;
        if (rslots_parse_hostport(s, n, &nd) == 0 &&
            (!nd.host[0] || nd.port < 1 || nd.port > 65535))
            __builtin_trap();
        break;
    }
    default: {
        unsigned slot = rslots_key_slot(s, n);
        if (slot >= RSLOTS_N) __builtin_trap();
        const char *o = memchr(s, '{', n);
        const char *c = o ? memchr(o + 1, '}', n - (size_t)(o - s) - 1) : NULL;
        if (c && c > o + 1 && slot != (rslots_crc16(o + 1, (size_t)(c - o - 1)) & (RSLOTS_N - 1)))
            __builtin_trap();
        break;
    }
    }
    free(s);
    return 0;
}
