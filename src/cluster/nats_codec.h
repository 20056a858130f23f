/* The NATS bus's names (docs/cluster.md, "NATS"): the strict `nats://host[:port]` URL of
 * the bus, and node and application ids made safe as one token of a NATS subject. Pure:
 * no I/O, unit-tested (tests/unit/test_cluster_nats.c). The documents that travel on
 * the subjects are cluster/codec.h's, the same as on Redis. */
#ifndef PG_CLUSTER_NATS_CODEC_H
#define PG_CLUSTER_NATS_CODEC_H

#include <stddef.h>

/* A parsed `nats://host[:port]` URL. */
typedef struct cluster_nats_url_s {
    char host[256];
    int port; /* 4222 when the URL has none */
} cluster_nats_url_t;

/* Parses url strictly: scheme nats://, a host name, IPv4 address or [IPv6] address, an
 * optional port 1-65535, an optional trailing '/', nothing else (no credentials, no
 * tls://). Returns 0, or -EINVAL with a message naming what is wrong in err. */
int cluster_nats_url_parse(const char *url, cluster_nats_url_t *out, char *err, size_t errlen);

/* Writes `nats://host:port` for u (brackets around an IPv6 address) into out.
 * Returns the length, or -ENAMETOOLONG when outlen is too small. */
int cluster_nats_url_format(const cluster_nats_url_t *u, char *out, size_t outlen);

/* Writes id as one subject token into out: letters, digits, '-' and '_' as they are,
 * every other byte (the '.' that separates tokens, '*', '>', spaces) as `%XX`. Distinct
 * ids give distinct tokens. Returns the length, -EINVAL for an empty id, or
 * -ENAMETOOLONG when outlen is too small. */
int cluster_subject_token(const char *id, char *out, size_t outlen);

#endif
