/* libFuzzer target for the NATS bus's membership (cluster/members.h) fed by what
 * arrives on its member subjects, and for its names (cluster/nats_codec.h). The input
 * is records separated by NUL bytes: the first byte of a record picks what happens
 * (an announcement heard, a leave, expiry, a touch, a URL parsed, an id made a subject
 * token), the second moves the clock, the rest is the message. After every record the
 * table must list this node first and every member once. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/codec.h"
#include "cluster/members.h"
#include "cluster/nats_codec.h"

static void check(const cluster_members_t *m)
{
    char **ids;
    long n = cluster_members_ids(m, "self", &ids);
    if (n < 0) return;
    if (n < 1 || strcmp(ids[0], "self") != 0 || (size_t)n > m->n + 1) __builtin_trap();
    for (long i = 0; i < n; i++)
        for (long j = i + 1; j < n; j++)
            if (strcmp(ids[i], ids[j]) == 0) __builtin_trap();
    for (long i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    json_t *docs = cluster_members_docs(m);
    if (docs && json_array_size(docs) != m->n) __builtin_trap();
    json_decref(docs);
}

static void record(cluster_members_t *m, uint64_t *now, const uint8_t *d, size_t len)
{
    if (len < 2) return;
    const char *msg = (const char *)d + 2;
    size_t n = len - 2;
    *now += d[1] * 50u;
    char err[256];
    switch (d[0] % 6) {
    case 0:   /* hello or heartbeat */
    case 1: { /* leave */
        json_t *doc = NULL;
        if (cluster_node_decode(msg, n, &doc, err, sizeof(err)) != 0) return;
        const char *id = json_string_value(json_object_get(doc, "nodeId"));
        if (d[0] % 6 == 0)
            cluster_members_seen(m, doc, *now);
        else
            cluster_members_leave(m, id);
        json_decref(doc);
        break;
    }
    case 2:
        cluster_members_expire(m, *now, 3000);
        break;
    case 3:
        cluster_members_touch(m, *now);
        break;
    case 4: {
        char *s = strndup(msg, n);
        cluster_nats_url_t u;
        char out[300];
        if (s && cluster_nats_url_parse(s, &u, err, sizeof(err)) == 0 &&
            cluster_nats_url_format(&u, out, sizeof(out)) > 0) {
            cluster_nats_url_t again;
            /* what we format we must parse back to the same */
            if (cluster_nats_url_parse(out, &again, err, sizeof(err)) != 0 ||
                strcmp(again.host, u.host) != 0 || again.port != u.port)
                __builtin_trap();
        }
        free(s);
        break;
    }
    default: {
        char *s = strndup(msg, n);
        char tok[1024];
        int k = s ? cluster_subject_token(s, tok, sizeof(tok)) : -1;
        if (k > 0)
            for (int i = 0; i < k; i++)
                if (tok[i] == '.' || tok[i] == '*' || tok[i] == '>' || tok[i] == ' ' ||
                    (unsigned char)tok[i] < 0x21)
                    __builtin_trap();
        free(s);
        break;
    }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cluster_members_t m;
    cluster_members_init(&m);
    uint64_t now = 1;
    size_t start = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i == size || data[i] == 0) {
            record(&m, &now, data + start, i - start);
            check(&m);
            start = i + 1;
        }
    }
    cluster_members_free(&m);
    return 0;
}
