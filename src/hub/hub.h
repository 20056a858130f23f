/* The hub: targeting and fan-out, knowing nothing about wires. Each worker owns a
 * registry of its subscribers; a push reaches each worker as one inbox message, is
 * matched there against that worker's subscribers, and each worker's report goes to
 * the node's collector, then over the bus to the origin, which merges node reports
 * into the PushResponse. */
#ifndef PG_HUB_H
#define PG_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/bus.h"
#include "core/config.h"
#include "core/worker.h"
#include "hub/clients.h"
#include "hub/push.h"
#include "hub/history.h"
#include "hub/report.h"
#include "hub/topics.h"

struct auth_identity_s;
typedef struct hub_s hub_t;
typedef struct hub_worker_s hub_worker_t;
typedef struct subscriber_s subscriber_t;

typedef struct subscriber_ops_s {
    /* Writes p, reached through topic index ti (-1: by pattern), to the subscriber.
     * Returns 0 (queued), -ENOBUFS (a slow consumer: the transport has started
     * cutting it off), -EPIPE (going away). */
    int (*deliver)(subscriber_t *s, push_t *p, int ti);
    const char *transport; /* its name in listings: "websocket", "sse", "socket.io" */
} subscriber_ops_t;

/* Embedded in a transport's client; the strings are the transport's, valid while
 * subscribed. */
struct subscriber_s {
    subscriber_t *prev, *next;
    const subscriber_ops_t *ops;
    hub_worker_t *hw;
    const char *client_id;
    /* who it is: session id, user, effective roles (the transport's; NULL: an
     * anonymous reader, session and user "", no roles) */
    struct auth_identity_s *id;
    const char *tenant;
    int64_t connected_at_ms;
    topic_link_t *links; /* the topics it is subscribed to */
    unsigned n_topics;   /* how many (limits.maxSubscriptions) */
    int topics_only;     /* reached only through its topics, never by patterns alone */
    uint64_t seen;       /* the last delivery round that reached it (de-duplication) */
};

/* The final PushResponse for a publish, on the origin worker's thread. Takes the
 * body (a new buffer; NULL when out of memory). p is NULL (and body too) when the
 * worker stops before the report is complete: no report will come, free what arg
 * holds and answer nobody (the loop has ended). */
typedef void (*hub_report_cb)(void *arg, push_t *p, buf_t *body);

/* Creates the hub of a node. Returns NULL when out of memory. */
hub_t *hub_new(const config_t *cfg);

/* The node's replay history (owned by the hub). */
history_t *hub_history(hub_t *hub);

/* Gives the hub its bus (the hub does not own it). */
void hub_set_bus(hub_t *hub, bus_t *bus);

/* The hub's bus (readiness and membership for the api). */
bus_t *hub_bus(hub_t *hub);

/* Registers worker w with the hub (on w's thread, before it serves). Returns 0 or
 * -ENOMEM. Workers must all be attached before the first publish. */
int hub_worker_attach(hub_t *hub, worker_t *w, int n_workers);

/* The node is stopping (on w's thread, at SIGTERM, after the bus closed): the
 * reports w's publishers still wait for cannot come any more, so each is answered
 * within HUB_STOP_WAIT_MS with what it has, naming the nodes that did not report in
 * nodesMissing (rather than cut off when the drain ends). */
void hub_worker_stopping(worker_t *w);

/* The node begins to drain (on w's thread, at SIGTERM, after the bus closed): a
 * report that has this node's own part and waits only for other nodes is answered
 * within HUB_STOP_WAIT_MS, as hub_worker_stopping does; one still waiting for this
 * node's deliveries (clients' acks) keeps its deadline, and is shortened the same way
 * once its own part arrives. */
void hub_worker_draining(worker_t *w);

/* Unregisters w's hub state (on w's thread, after its loop ends). */
void hub_worker_detach(worker_t *w);

/* Frees the hub (after every worker detached). */
void hub_free(hub_t *hub);

/* Adds s to the registry of the calling worker. */
void hub_subscribe(worker_t *w, subscriber_t *s);

/* Removes s and its topic subscriptions; any report waiting on it records "closed".
 * Idempotent. */
void hub_unsubscribe(subscriber_t *s);

/* Subscribes s (registered on the calling worker) to topic. Returns 0, -EEXIST,
 * -ENOMEM. */
int hub_topic_add(subscriber_t *s, const char *topic);

/* Unsubscribes s from topic. Returns 0 or -ENOENT. */
int hub_topic_remove(subscriber_t *s, const char *topic);

/* Publishes p from the calling worker. Unless p->report_mode is PUSH_REPORT_NONE, cb
 * is called later on this thread with the merged report, and *token identifies the
 * publish for hub_cancel. Returns 0 or a negative errno (cb is not called). */
int hub_publish(worker_t *w, push_t *p, hub_report_cb cb, void *arg, uint64_t *token);

/* Forgets the publisher of token (it went away); its report is dropped. */
void hub_cancel(worker_t *w, uint64_t token);

/* A subscriber's own answer to a push (awaitAcks). Unknown ids are ignored.
 * Returns 1 if it was folded into a report, 0 if not. */
int hub_ack(subscriber_t *s, const char *push_id, int successful, const char *message);

/* Bus side: deliver p to every subscriber of this node (any thread). */
void hub_deliver(hub_t *hub, push_t *p);

/* Bus side: a node's report for the publish (origin_worker, token) arrived (any
 * thread); takes r's contents. */
void hub_node_report(hub_t *hub, int origin_worker, uint64_t token, report_t *r);

/* The final client listing on the origin worker's thread: body is the merged answer
 * (client_list_render; a new buffer, NULL when out of memory), or both q and body are
 * NULL when the worker stops first (free what arg holds, answer nobody). */
typedef void (*hub_list_cb)(void *arg, client_query_t *q, buf_t *body);

/* Lists, from the calling worker, the subscribers of every node that a push with q's
 * patterns and tenant would reach (q->limit rows at most), waiting wait_ms at most for
 * the nodes' answers; fills q's origin. cb is called later on this thread.
 * Returns 0 or a negative errno (cb is not called). */
int hub_list(worker_t *w, client_query_t *q, uint64_t wait_ms, hub_list_cb cb, void *arg);

/* Bus side: list this node's subscribers for q (any thread); the rows go back with
 * the bus's list_reply. */
void hub_list_collect(hub_t *hub, client_query_t *q);

/* Bus side: a node's rows for the listing (origin_worker, token) arrived (any
 * thread); takes l's contents. */
void hub_list_result(hub_t *hub, int origin_worker, uint64_t token, client_list_t *l);

/* Calls fn for each subscriber of the calling worker. */
void hub_foreach(worker_t *w, void (*fn)(subscriber_t *s, void *arg), void *arg);

/* Tells whether w has publishes waiting for their reports or deliveries waiting for
 * clients' acks (a draining node keeps its clients for those). Returns 1 or 0. */
int hub_busy(worker_t *w);

/* Tells whether a publisher may be answered as soon as its push is handed to the
 * workers, before delivery (any thread). Only on a single node: across nodes, a push
 * answered before it went over the bus could be overtaken by the publisher's next push
 * on another node. And only while fewer than limits.pushBacklog deliveries per worker
 * are queued and not yet run: past that the publisher waits for delivery, so a
 * publisher faster than delivery cannot queue without bound. Returns 1 or 0. */
int hub_may_answer_early(hub_t *hub);

/* How many subscribers the calling worker has. */
size_t hub_count(worker_t *w);

#endif
