/* Redis Cluster addressing (cluster/rslots.h): key slots, the slot map from CLUSTER
 * SLOTS, MOVED/ASK errors. Pure: works on bytes and hiredis reply structs only. */
#include "cluster/rslots.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

uint16_t rslots_crc16(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

unsigned rslots_key_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1)
            return rslots_crc16(open + 1, (size_t)(close - open - 1)) & (RSLOTS_N - 1);
    }
    return rslots_crc16(key, len) & (RSLOTS_N - 1);
}

void rslots_map_clear(rslots_map_t *m)
{
    m->n = 0;
    for (size_t i = 0; i < RSLOTS_N; i++)
        m->owner[i] = -1;
}

int rslots_map_node(rslots_map_t *m, const char *host, int port)
{
    size_t hl = strlen(host);
    if (hl >= RSLOTS_HOST_MAX || port < 1 || port > 65535) return -EINVAL;
    for (int i = 0; i < m->n; i++)
        if (m->node[i].port == port && strcmp(m->node[i].host, host) == 0) return i;
    if (m->n == RSLOTS_MAX_NODES) return -ENOSPC;
    memcpy(m->node[m->n].host, host, hl + 1);
    m->node[m->n].port = port;
    return m->n++;
}

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        snprintf(err, errlen, __VA_ARGS__);                                                        \
        return -EINVAL;                                                                            \
    } while (0)

int rslots_parse_slots(const redisReply *r, const char *default_host, rslots_map_t *m, char *err,
                       size_t errlen)
{
    rslots_map_clear(m);
    if (!r || r->type != REDIS_REPLY_ARRAY) FAIL("CLUSTER SLOTS: not an array");
    int covered = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (!e || e->type != REDIS_REPLY_ARRAY || e->elements < 3)
            FAIL("CLUSTER SLOTS: entry %zu is not [start, end, master...]", i);
        const redisReply *s = e->element[0], *t = e->element[1], *n = e->element[2];
        if (s->type != REDIS_REPLY_INTEGER || t->type != REDIS_REPLY_INTEGER || s->integer < 0 ||
            t->integer >= RSLOTS_N || s->integer > t->integer)
            FAIL("CLUSTER SLOTS: entry %zu has a bad slot range", i);
        if (n->type != REDIS_REPLY_ARRAY || n->elements < 2 ||
            n->element[0]->type != REDIS_REPLY_STRING || n->element[1]->type != REDIS_REPLY_INTEGER)
            FAIL("CLUSTER SLOTS: entry %zu has a bad master", i);
        const redisReply *h = n->element[0];
        if (h->len && strlen(h->str) != h->len)
            FAIL("CLUSTER SLOTS: entry %zu has a NUL in its host", i);
        const char *host = h->len == 0 || strcmp(h->str, "?") == 0 ? default_host : h->str;
        if (!host) FAIL("CLUSTER SLOTS: entry %zu names no host", i);
        long long port = n->element[1]->integer;
        if (port < 1 || port > 65535) FAIL("CLUSTER SLOTS: entry %zu has a bad port", i);
        int k = rslots_map_node(m, host, (int)port);
        if (k == -ENOSPC) {
            snprintf(err, errlen, "CLUSTER SLOTS: more than %d masters", RSLOTS_MAX_NODES);
            return k;
        }
        if (k < 0) FAIL("CLUSTER SLOTS: entry %zu has a bad host", i);
        for (long long x = s->integer; x <= t->integer; x++) {
            if (m->owner[x] < 0) covered++;
            m->owner[x] = (int16_t)k;
        }
    }
    return covered;
}

int rslots_parse_hostport(const char *s, size_t len, rslots_node_t *out)
{
    const char *colon = NULL;
    for (size_t i = len; i > 0; i--)
        if (s[i - 1] == ':') {
            colon = s + i - 1;
            break;
        }
    if (!colon || colon + 1 == s + len) return -EINVAL;
    long port = 0;
    for (const char *p = colon + 1; p < s + len; p++) {
        if (*p < '0' || *p > '9' || port > 65535) return -EINVAL;
        port = port * 10 + (*p - '0');
    }
    if (port < 1 || port > 65535) return -EINVAL;
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= RSLOTS_HOST_MAX || memchr(h, '\0', hl) || memchr(h, ' ', hl))
        return -EINVAL;
    memcpy(out->host, h, hl);
    out->host[hl] = '\0';
    out->port = (int)port;
    return 0;
}

int rslots_parse_redirect(const char *s, size_t len, rslots_redirect_t *out)
{
    int ask;
    size_t i;
    if (len >= 6 && memcmp(s, "MOVED ", 6) == 0) {
        ask = 0;
        i = 6;
    } else if (len >= 4 && memcmp(s, "ASK ", 4) == 0) {
        ask = 1;
        i = 4;
    } else {
        return 0;
    }
    unsigned slot = 0;
    size_t digits = 0;
    for (; i < len && s[i] >= '0' && s[i] <= '9' && digits < 6; i++, digits++)
        slot = slot * 10 + (unsigned)(s[i] - '0');
    if (!digits || slot >= RSLOTS_N || i >= len || s[i] != ' ') return -EINVAL;
    i++;
    rslots_node_t to;
    if (len - i >= 1 && s[i] == ':') {
        /* an unknown endpoint: the port alone */
        rslots_node_t tmp;
        char buf[16] = "x";
        size_t pl = len - i;
        if (pl >= sizeof(buf) - 1) return -EINVAL;
        memcpy(buf + 1, s + i, pl);
        if (rslots_parse_hostport(buf, pl + 1, &tmp) < 0) return -EINVAL;
        to.host[0] = '\0';
        to.port = tmp.port;
    } else if (rslots_parse_hostport(s + i, len - i, &to) < 0) {
        return -EINVAL;
    }
    out->ask = ask;
    out->slot = slot;
    out->to = to;
    return 1;
}
