/* The cluster's wire: seed 000's InternalPushRequest (a push cloned to every node) and
 * the node report each node returns to the origin, as JSON documents, plus the
 * `redis://` URL of the bus. Pure: no I/O, no clock, no globals, so every function
 * here is unit-tested and fuzzed (tests/unit/test_cluster_codec.c,
 * tests/fuzz/fuzz_cluster_codec.c). docs/cluster.md describes the documents. */
#ifndef PG_CLUSTER_CODEC_H
#define PG_CLUSTER_CODEC_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "hub/clients.h"
#include "hub/push.h"
#include "hub/report.h"

#define CLUSTER_CODEC_VERSION 1

/* Appends p as an InternalPushRequest to *bp: every field a node needs to deliver it
 * and to address its report (origin node, worker, token). The payload is embedded as
 * raw JSON. Returns 0 or -ENOMEM. */
int cluster_push_encode(buf_t **bp, const push_t *p, const char *application_id);

/* Decodes an InternalPushRequest of len bytes into a new push (one reference).
 * Returns 0 with the push in *out, -EINVAL for a malformed document (err names the
 * field), -ENOMEM. */
int cluster_push_decode(const char *data, size_t len, push_t **out, char *err, size_t errlen);

/* Appends a node report for the publish (origin_worker, token) to *bp; r->node_id and
 * r->application_id say which node delivered. Returns 0 or -ENOMEM. */
int cluster_report_encode(buf_t **bp, const report_t *r, const char *push_id, int origin_worker,
                          uint64_t token);

/* Decodes a node report into r (initialized here; free with report_free).
 * Returns 0, -EINVAL (err names the field; r is left empty), -ENOMEM. */
int cluster_report_decode(const char *data, size_t len, report_t *r, int *origin_worker,
                          uint64_t *token, char *err, size_t errlen);

/* Client listing (docs/cluster.md, "Client listing"): the query goes out on the push
 * channel as a ClientListRequest, each node's rows come back on the origin's reply
 * channel as a ClientList. */

/* Appends q as a ClientListRequest (origin node, worker, token, the three patterns,
 * tenant, limit). Returns 0 or -ENOMEM. */
int cluster_list_query_encode(buf_t **bp, const client_query_t *q, const char *application_id);

/* Decodes a ClientListRequest into a new query (one reference; patterns are not
 * compiled here). Returns 0, -EINVAL (err names the field), -ENOMEM. */
int cluster_list_query_decode(const char *data, size_t len, client_query_t **out, char *err,
                              size_t errlen);

/* Appends l (a node's rows; l->node_id and l->application_id name the node) as a
 * ClientList for the listing (origin_worker, token). Returns 0 or -ENOMEM. */
int cluster_client_list_encode(buf_t **bp, const client_list_t *l, int origin_worker,
                               uint64_t token);

/* Decodes a ClientList into l (initialized here; free with client_list_free): at most
 * CLIENTS_LIMIT_MAX rows. Returns 0, -EINVAL (err names the field; l is left empty),
 * -ENOMEM. */
int cluster_client_list_decode(const char *data, size_t len, client_list_t *l, int *origin_worker,
                               uint64_t *token, char *err, size_t errlen);

/* The kinds of document that share the push channel and the reply channels. */
enum cluster_msg_kind {
    CLUSTER_MSG_OTHER = 0,
    CLUSTER_MSG_LIST_QUERY = 1,
    CLUSTER_MSG_CLIENT_LIST = 2
};

/* Which document data is, from its first member (every encoder here writes "type"
 * first): CLUSTER_MSG_LIST_QUERY, CLUSTER_MSG_CLIENT_LIST, or CLUSTER_MSG_OTHER (a push,
 * a report, or anything else, left to those decoders). Returns the kind. */
int cluster_msg_kind(const char *data, size_t len);

/* What changed on another node (the config channel): a tenant's streams were saved,
 * or a session was revoked. name is the tenant or the session id. */
enum cluster_note_kind { CLUSTER_NOTE_STREAMS = 1, CLUSTER_NOTE_SESSION_REVOKED = 2 };

/* Appends a note. Returns 0 or -ENOMEM. */
int cluster_note_encode(buf_t **bp, int kind, const char *name);

/* Decodes a note. Returns 0 with *kind and a new string in *name, -EINVAL (err says
 * why), -ENOMEM. */
int cluster_note_decode(const char *data, size_t len, int *kind, char **name, char *err,
                        size_t errlen);

/* A node's announcement (its heartbeat key's value, and an entry of GET /api/nodes). */
typedef struct cluster_node_s {
    const char *application_id;
    const char *node_id;
    int workers;
    uint64_t connections;
    int64_t started_at_ms;
} cluster_node_t;

/* Appends n as {applicationId, nodeId, workers, connections, startedAt}. Returns 0 or
 * -ENOMEM. */
int cluster_node_encode(buf_t **bp, const cluster_node_t *n);

/* Decodes an announcement into a new JSON object of exactly those five members.
 * Returns 0, -EINVAL (err says why), -ENOMEM. */
int cluster_node_decode(const char *data, size_t len, json_t **out, char *err, size_t errlen);

/* A parsed `redis://host[:port][/db]` URL. */
typedef struct cluster_redis_url_s {
    char host[256];
    int port; /* 6379 when the URL has none */
    int db;   /* 0 when the URL has none */
} cluster_redis_url_t;

/* Parses url strictly: scheme redis://, a host name, IPv4 address or [IPv6] address,
 * an optional port 1-65535, an optional database number 0-65535, nothing else.
 * Returns 0, or -EINVAL with a message naming what is wrong in err. */
int cluster_redis_url_parse(const char *url, cluster_redis_url_t *out, char *err, size_t errlen);

#endif
