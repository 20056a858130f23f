/* Fan-out: per-worker registries, selector matching, ack waits, and report merging
 * at the node collector and at the origin. */
#include "hub/hub.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "core/log.h"
#include "core/metrics.h"
#include "hub/selector.h"

/* A subscriber's session id and user ("" when anonymous). */
static const char *sub_session(const subscriber_t *s)
{
    return s->id ? s->id->session_id : "";
}

static const char *sub_user(const subscriber_t *s)
{
    return s->id ? s->id->user : "";
}

#define HUB_REPORT_GRACE_MS 5000
#define HUB_STOP_WAIT_MS 200 /* at SIGTERM: the bus is closed, no report can come */

typedef struct node_collect_s node_collect_t;
typedef struct ack_wait_s ack_wait_t;
typedef struct pending_s pending_t;
typedef struct fanout_msg_s fanout_msg_t;
typedef struct listing_s listing_t;

struct hub_s {
    const config_t *cfg;
    bus_t *bus;
    history_t *history;
    worker_t **workers;
    int n_workers;
    int attached; /* atomic */
    long backlog; /* atomic: deliveries posted to workers and not yet run */
};

struct hub_worker_s {
    hub_t *hub;
    worker_t *w;
    subscriber_t *subs;
    size_t n_subs;
    topic_table_t topics;
    uint64_t round; /* delivery rounds, for de-duplication across topics */
    ack_wait_t *acks;
    pending_t *pending;
    listing_t *listings;
    uint64_t next_token;
    int draining; /* the bus is closed: only this node's own reports can still come */
};

/* One push being collected from every worker of this node. */
struct node_collect_s {
    push_t *p;
    int remaining; /* touched only on the collector's thread */
    report_t report;
    worker_t *collector;
};

/* A worker's deliveries waiting for clients' answers. */
struct ack_wait_s {
    ack_wait_t *next;
    hub_worker_t *hw;
    push_t *p;
    fanout_msg_t *fm;
    report_t report;
    subscriber_t **subs; /* by report index; NULL once answered */
    size_t remaining;
    uv_timer_t timer;
};

/* A publish at its origin, waiting for node reports. */
struct pending_s {
    pending_t *next;
    hub_worker_t *hw;
    uint64_t token;
    push_t *p;
    hub_report_cb cb;
    void *arg;
    char **members;
    long n_members;
    report_t **reports; /* by member index; NULL until it arrives */
    long n_reports;
    int bus_down; /* delivered on this node only: the report says so */
    uv_timer_t timer;
};

/* Goes to a worker as "deliver p", and comes back to the collector as "done, here
 * is my report": one allocation per worker per push, so reporting never fails. */
struct fanout_msg_s {
    worker_msg_t base;
    node_collect_t *nc; /* NULL: nobody wants a report */
    push_t *p;
    report_t report;
};

typedef struct node_report_msg_s {
    worker_msg_t base;
    uint64_t token;
    report_t report;
} node_report_msg_t;

static hub_worker_t *HW(worker_t *w)
{
    return w->hub;
}

hub_t *hub_new(const config_t *cfg)
{
    hub_t *hub = calloc(1, sizeof(*hub));
    if (!hub) return NULL;
    hub->cfg = cfg;
    hub->workers = calloc((size_t)cfg->workers, sizeof(*hub->workers));
    if (!hub->workers) {
        free(hub);
        return NULL;
    }
    hub->n_workers = cfg->workers;
    if (!(hub->history = history_new(cfg->history_max_events, cfg->history_max_age_s))) {
        free(hub->workers);
        free(hub);
        return NULL;
    }
    return hub;
}

history_t *hub_history(hub_t *hub)
{
    return hub->history;
}

void hub_set_bus(hub_t *hub, bus_t *bus)
{
    hub->bus = bus;
}

bus_t *hub_bus(hub_t *hub)
{
    return hub->bus;
}

int hub_worker_attach(hub_t *hub, worker_t *w, int n_workers)
{
    (void)n_workers;
    hub_worker_t *hw = calloc(1, sizeof(*hw));
    if (!hw) return -ENOMEM;
    if (topics_init(&hw->topics) < 0) {
        free(hw);
        return -ENOMEM;
    }
    hw->hub = hub;
    hw->w = w;
    w->hub = hw;
    hub->workers[w->index] = w;
    __atomic_add_fetch(&hub->attached, 1, __ATOMIC_RELEASE);
    return 0;
}

static void pending_finish(pending_t *pd);
static void ack_wait_finish(ack_wait_t *aw);
static void hub_listings_end(hub_worker_t *hw);
static void hub_listings_stopping(hub_worker_t *hw);

void hub_worker_detach(worker_t *w)
{
    hub_worker_t *hw = HW(w);
    if (!hw) return;
    hub_listings_end(hw);
    while (hw->pending) {
        pending_t *pd = hw->pending;
        hub_report_cb cb = pd->cb;
        void *arg = pd->arg;
        pd->cb = NULL;
        pending_finish(pd);
        if (cb) cb(arg, NULL, NULL); /* no report will come: the publisher frees its state */
    }
    selector_thread_cleanup();
    topics_free(&hw->topics);
    free(hw);
    w->hub = NULL;
}

void hub_free(hub_t *hub)
{
    if (!hub) return;
    history_free(hub->history);
    free(hub->workers);
    free(hub);
}

void hub_subscribe(worker_t *w, subscriber_t *s)
{
    hub_worker_t *hw = HW(w);
    s->hw = hw;
    s->prev = NULL;
    s->next = hw->subs;
    if (hw->subs) hw->subs->prev = s;
    hw->subs = s;
    hw->n_subs++;
}

static long ack_index(ack_wait_t *aw, subscriber_t *s)
{
    for (size_t i = 0; i < aw->report.n; i++)
        if (aw->subs[i] == s) return (long)i;
    return -1;
}

void hub_unsubscribe(subscriber_t *s)
{
    hub_worker_t *hw = s->hw;
    if (!hw) return;
    topics_unlink_all(&hw->topics, &s->links);
    s->n_topics = 0;
    if (s->prev)
        s->prev->next = s->next;
    else
        hw->subs = s->next;
    if (s->next) s->next->prev = s->prev;
    hw->n_subs--;
    s->hw = NULL;
    for (ack_wait_t *aw = hw->acks, *next; aw; aw = next) {
        next = aw->next;
        long i = ack_index(aw, s);
        if (i < 0) continue;
        aw->subs[i] = NULL;
        report_set(&aw->report, (size_t)i, 0, "closed", 0);
        if (--aw->remaining == 0) ack_wait_finish(aw);
    }
}

int hub_topic_add(subscriber_t *s, const char *topic)
{
    if (!s->hw) return -EPIPE;
    int r = topics_link(&s->hw->topics, topic, s, &s->links);
    if (r == 0) s->n_topics++;
    return r;
}

int hub_topic_remove(subscriber_t *s, const char *topic)
{
    if (!s->hw) return -ENOENT;
    int r = topics_unlink(&s->hw->topics, topic, &s->links);
    if (r == 0 && s->n_topics) s->n_topics--;
    return r;
}

void hub_foreach(worker_t *w, void (*fn)(subscriber_t *s, void *arg), void *arg)
{
    for (subscriber_t *s = HW(w)->subs; s; s = s->next)
        fn(s, arg);
}

int hub_busy(worker_t *w)
{
    hub_worker_t *hw = HW(w);
    return hw && (hw->pending || hw->acks);
}

int hub_may_answer_early(hub_t *hub)
{
    if (!hub->bus || !hub->bus->single_node) return 0;
    long queued = __atomic_load_n(&hub->backlog, __ATOMIC_RELAXED);
    return queued < (long)hub->cfg->limits.push_backlog * hub->n_workers;
}

size_t hub_count(worker_t *w)
{
    return HW(w)->n_subs;
}

/* ---- collector: worker reports become the node report ---- */

static void on_worker_done(worker_t *w, worker_msg_t *m)
{
    fanout_msg_t *fm = (fanout_msg_t *)m;
    node_collect_t *nc = fm->nc;
    if (!HW(w)) {
        /* the loop has ended (shutdown): the report has nobody left to go to */
        report_free(&fm->report);
        push_unref(fm->p);
        free(fm);
        if (--nc->remaining == 0) {
            report_free(&nc->report);
            push_unref(nc->p);
            free(nc);
        }
        return;
    }
    report_move(&nc->report, &fm->report);
    report_free(&fm->report);
    push_unref(fm->p);
    free(fm);
    if (--nc->remaining > 0) return;
    hub_t *hub = HW(nc->collector)->hub;
    hub->bus->ops->report(hub->bus, nc->p, &nc->report);
    report_free(&nc->report);
    push_unref(nc->p);
    free(nc);
}

/* Sends this worker's report (taken from r) to the node's collector. */
static void worker_done(hub_worker_t *hw, fanout_msg_t *fm, report_t *r)
{
    fm->base.fn = on_worker_done;
    fm->report = *r;
    report_init(r, 0);
    if (fm->nc->collector == hw->w)
        on_worker_done(hw->w, &fm->base);
    else
        worker_post(fm->nc->collector, &fm->base);
}

/* ---- a worker delivers ---- */

static void ack_timer_closed(uv_handle_t *h)
{
    ack_wait_t *aw = h->data;
    free(aw->subs);
    report_free(&aw->report);
    free(aw);
}

static void ack_wait_finish(ack_wait_t *aw)
{
    hub_worker_t *hw = aw->hw;
    for (ack_wait_t **pp = &hw->acks; *pp; pp = &(*pp)->next)
        if (*pp == aw) {
            *pp = aw->next;
            break;
        }
    for (size_t i = 0; i < aw->report.n; i++)
        if (aw->subs[i]) report_set(&aw->report, i, 0, "timeout", 0);
    uv_timer_stop(&aw->timer);
    worker_done(hw, aw->fm, &aw->report);
    uv_close((uv_handle_t *)&aw->timer, ack_timer_closed);
}

static void on_ack_timeout(uv_timer_t *t)
{
    ack_wait_finish(t->data);
}

/* Whether a push with these patterns and tenant addresses s (pushes and client
 * listings alike). Returns 1 or 0. */
static int selects(const char *tenant, const char *client_pat, const char *session_pat,
                   const char *role_pat, const subscriber_t *s)
{
    if (tenant && (!s->tenant || strcmp(tenant, s->tenant) != 0)) return 0;
    return selector_match(client_pat, s->client_id) &&
           selector_match(session_pat, sub_session(s)) &&
           selector_match_any(role_pat, s->id ? s->id->roles : NULL, s->id ? s->id->n_roles : 0);
}

static int matches(const push_t *p, const subscriber_t *s)
{
    return selects(p->tenant, p->client_pat, p->session_pat, p->role_pat, s);
}

static void on_deliver(worker_t *w, worker_msg_t *m)
{
    fanout_msg_t *fm = (fanout_msg_t *)m;
    hub_worker_t *hw = HW(w);
    push_t *p = fm->p;
    node_collect_t *nc = fm->nc;
    if (hw) __atomic_sub_fetch(&hw->hub->backlog, 1, __ATOMIC_RELAXED);
    if (!hw) {
        /* the loop has ended (shutdown): nothing to deliver to; still report empty */
        report_t empty;
        report_init(&empty, 0);
        if (nc) {
            fm->base.fn = on_worker_done;
            fm->report = empty;
            if (nc->collector == w)
                on_worker_done(w, &fm->base);
            else
                worker_post(nc->collector, &fm->base);
        } else {
            push_unref(p);
            free(fm);
        }
        return;
    }
    int want_entries = nc && (p->report_mode == PUSH_REPORT_FULL || p->await_acks);
    report_t rep;
    report_init(&rep, want_entries);
    subscriber_t **acked = NULL; /* by report index: who still owes an answer */
    size_t n_acked = 0, cap_acked = 0;
    uint64_t ok = 0, failed = 0;
    uint64_t round = ++hw->round;
    size_t nt = p->n_topics ? p->n_topics : 1;
    for (size_t ti = 0; ti < nt; ti++) {
        /* topic pushes walk the topic index; the others walk every subscriber */
        topic_t *tp = p->n_topics ? topics_find(&hw->topics, p->topics[ti]) : NULL;
        if (p->n_topics && !tp) continue;
        topic_link_t *l = tp ? tp->subs : NULL, *lnext = NULL;
        subscriber_t *s = tp ? (l ? l->s : NULL) : hw->subs, *snext = NULL;
        for (; s; s = tp ? (lnext ? lnext->s : NULL) : snext) {
            /* fetch the next one first: a failed delivery unsubscribes s */
            if (tp) {
                lnext = l->next;
                l = lnext;
            } else {
                snext = s->next;
            }
            if (s->seen == round || (!tp && s->topics_only) || !matches(p, s)) continue;
            s->seen = round;
            w->in_fanout = 1; /* what it queues may wait for the next batch (core/conn.h) */
            int r = s->ops->deliver(s, p, p->n_topics ? (int)ti : -1);
            w->in_fanout = 0;
            const char *msg = r == 0 ? "delivered" : r == -ENOBUFS ? "slow consumer" : "closed";
            if (r == 0)
                ok++;
            else
                failed++;
            if (!nc) continue;
            long idx = report_add(&rep, s->client_id, sub_session(s), r == 0, msg);
            if (!p->await_acks || r != 0 || idx < 0) continue;
            if ((size_t)idx >= cap_acked) {
                size_t cap = cap_acked ? cap_acked : 16;
                while (cap <= (size_t)idx)
                    cap *= 2;
                subscriber_t **a = realloc(acked, cap * sizeof(*a));
                if (!a) {
                    report_set(&rep, (size_t)idx, 0, "out of memory", 0);
                    continue;
                }
                acked = a;
                cap_acked = cap;
            }
            while (n_acked < (size_t)idx)
                acked[n_acked++] = NULL;
            acked[n_acked++] = s;
        }
    }
    METRICS_ADD(deliveries_ok, ok);
    METRICS_ADD(deliveries_failed, failed);
    if (!nc) {
        push_unref(p);
        free(fm);
        return;
    }
    size_t waiting = 0;
    for (size_t i = 0; i < n_acked; i++)
        waiting += acked[i] != NULL;
    ack_wait_t *aw = waiting ? calloc(1, sizeof(*aw)) : NULL;
    subscriber_t **subs = waiting ? calloc(rep.n, sizeof(*subs)) : NULL;
    if (!aw || !subs) {
        for (size_t i = 0; i < n_acked; i++)
            if (acked[i]) report_set(&rep, i, 0, "out of memory", 0);
        free(aw);
        free(subs);
        free(acked);
        worker_done(hw, fm, &rep);
        return;
    }
    memcpy(subs, acked, n_acked * sizeof(*subs));
    free(acked);
    aw->hw = hw;
    aw->p = p;
    aw->fm = fm;
    aw->report = rep;
    aw->subs = subs;
    aw->remaining = waiting;
    aw->next = hw->acks;
    hw->acks = aw;
    uv_timer_init(&w->loop, &aw->timer);
    aw->timer.data = aw;
    uv_timer_start(&aw->timer, on_ack_timeout, p->timeout_ms, 0);
}

int hub_ack(subscriber_t *s, const char *push_id, int successful, const char *message)
{
    hub_worker_t *hw = s->hw;
    if (!hw) return 0;
    for (ack_wait_t *aw = hw->acks; aw; aw = aw->next) {
        if (strcmp(aw->p->id, push_id) != 0) continue;
        long i = ack_index(aw, s);
        if (i < 0) return 0;
        aw->subs[i] = NULL;
        report_set(&aw->report, (size_t)i, successful, message, 1);
        if (--aw->remaining == 0) ack_wait_finish(aw);
        return 1;
    }
    return 0;
}

void hub_deliver(hub_t *hub, push_t *p)
{
    worker_t *self = worker_current();
    int n = hub->n_workers;
    node_collect_t *nc = NULL;
    /* allocate everything first: a push is delivered to every worker or to none */
    fanout_msg_t **fms = calloc((size_t)n, sizeof(*fms));
    if (!fms) goto fail;
    for (int i = 0; i < n; i++)
        if (!(fms[i] = calloc(1, sizeof(**fms)))) goto fail;
    if (p->report_mode != PUSH_REPORT_NONE) {
        if (!(nc = calloc(1, sizeof(*nc)))) goto fail;
        nc->p = push_ref(p);
        nc->remaining = n;
        report_init(&nc->report, 1);
        nc->report.application_id = strdup(hub->cfg->application_id);
        nc->report.node_id = strdup(hub->cfg->node_id);
        nc->collector = self && self->hub && HW(self)->hub == hub ? self : hub->workers[0];
    }
    /* recorded before any worker delivers, so a subscriber that replays history and
     * then receives live pushes misses nothing in between */
    for (size_t ti = 0; ti < p->n_topics; ti++)
        history_append(hub->history, p, (int)ti, p->created_ms);
    __atomic_add_fetch(&hub->backlog, n, __ATOMIC_RELAXED);
    for (int i = 0; i < n; i++) {
        fms[i]->base.fn = on_deliver;
        fms[i]->nc = nc;
        fms[i]->p = push_ref(p);
        worker_post(hub->workers[i], &fms[i]->base);
    }
    free(fms);
    return;
fail:
    log_error("out of memory delivering a push", "push=%s", p->id);
    for (int i = 0; fms && i < n; i++)
        free(fms[i]);
    free(fms);
}

/* ---- origin: node reports become the PushResponse ---- */

static void pending_timer_closed(uv_handle_t *h)
{
    pending_t *pd = h->data;
    for (long i = 0; i < pd->n_members; i++) {
        free(pd->members[i]);
        if (pd->reports[i]) {
            report_free(pd->reports[i]);
            free(pd->reports[i]);
        }
    }
    free(pd->members);
    free(pd->reports);
    push_unref(pd->p);
    free(pd);
}

static void pending_finish(pending_t *pd)
{
    hub_worker_t *hw = pd->hw;
    for (pending_t **pp = &hw->pending; *pp; pp = &(*pp)->next)
        if (*pp == pd) {
            *pp = pd->next;
            break;
        }
    uv_timer_stop(&pd->timer);
    if (pd->cb) {
        report_t **got = calloc((size_t)pd->n_members + 1, sizeof(*got));
        char **missing = calloc((size_t)pd->n_members + 1, sizeof(*missing));
        size_t ng = 0, nm = 0;
        buf_t *body = NULL;
        if (got && missing) {
            for (long i = 0; i < pd->n_members; i++) {
                if (pd->reports[i])
                    got[ng++] = pd->reports[i];
                else
                    missing[nm++] = pd->members[i];
            }
            body = report_render(pd->p->id, got, ng, missing, nm,
                                 pd->p->report_mode == PUSH_REPORT_FULL);
        }
        /* the summary object closes the document: `…]}}` becomes `…],"bus":"down"}}` */
        if (body && pd->bus_down && body->len >= 2) {
            body->len -= 2;
            if (buf_puts(&body, ",\"bus\":\"down\"}}") < 0) body->len += 2;
        }
        free(got);
        free(missing);
        pd->cb(pd->arg, pd->p, body);
    }
    uv_close((uv_handle_t *)&pd->timer, pending_timer_closed);
}

static void on_pending_timeout(uv_timer_t *t)
{
    pending_t *pd = t->data;
    log_warn("push report incomplete at deadline", "push=%s", pd->p->id);
    pending_finish(pd);
}

static void pending_stop_soon(pending_t *pd);

static void on_node_report(worker_t *w, worker_msg_t *m)
{
    node_report_msg_t *nm = (node_report_msg_t *)m;
    hub_worker_t *hw = HW(w);
    pending_t *pd = hw ? hw->pending : NULL;
    while (pd && pd->token != nm->token)
        pd = pd->next;
    long slot = -1;
    for (long i = 0; pd && i < pd->n_members; i++)
        if (!pd->reports[i] && nm->report.node_id &&
            strcmp(pd->members[i], nm->report.node_id) == 0)
            slot = i;
    if (slot < 0) {
        report_free(&nm->report);
        free(nm);
        return;
    }
    report_t *r = malloc(sizeof(*r));
    if (!r) {
        report_free(&nm->report);
        free(nm);
        return;
    }
    *r = nm->report;
    free(nm);
    pd->reports[slot] = r;
    if (++pd->n_reports == pd->n_members)
        pending_finish(pd);
    else if (hw->draining)
        pending_stop_soon(pd);
}

void hub_node_report(hub_t *hub, int origin_worker, uint64_t token, report_t *r)
{
    node_report_msg_t *nm = calloc(1, sizeof(*nm));
    if (!nm || origin_worker < 0 || origin_worker >= hub->n_workers) {
        free(nm);
        report_free(r);
        return;
    }
    nm->base.fn = on_node_report;
    nm->token = token;
    nm->report = *r;
    report_init(r, 0);
    worker_t *w = hub->workers[origin_worker];
    if (worker_current() == w)
        on_node_report(w, &nm->base);
    else
        worker_post(w, &nm->base);
}

/* The bus was down: only this node delivers, so the other members are settled as
 * missing now rather than at the deadline. */
static void pending_local_only(hub_worker_t *hw, uint64_t token)
{
    pending_t *pd = hw->pending;
    while (pd && pd->token != token)
        pd = pd->next;
    if (!pd) return;
    pd->bus_down = 1;
    for (long i = 0; i < pd->n_members; i++)
        if (strcmp(pd->members[i], hw->hub->cfg->node_id) != 0) pd->n_reports++;
}

int hub_publish(worker_t *w, push_t *p, hub_report_cb cb, void *arg, uint64_t *token)
{
    hub_worker_t *hw = HW(w);
    hub_t *hub = hw->hub;
    free(p->origin_node);
    if (!(p->origin_node = strdup(hub->cfg->node_id))) return -ENOMEM;
    p->origin_worker = w->index;
    p->origin_token = ++hw->next_token;
    METRICS_ADD(pushes_received, 1);
    if (p->report_mode != PUSH_REPORT_NONE) {
        pending_t *pd = calloc(1, sizeof(*pd));
        if (!pd) return -ENOMEM;
        pd->n_members = hub->bus->ops->members(hub->bus, &pd->members);
        if (pd->n_members < 0 ||
            !(pd->reports = calloc((size_t)pd->n_members + 1, sizeof(*pd->reports)))) {
            long n = pd->n_members;
            for (long i = 0; i < n; i++)
                free(pd->members[i]);
            if (n >= 0) free(pd->members);
            free(pd);
            return -ENOMEM;
        }
        pd->hw = hw;
        pd->token = p->origin_token;
        pd->p = push_ref(p);
        pd->cb = cb;
        pd->arg = arg;
        pd->next = hw->pending;
        hw->pending = pd;
        uv_timer_init(&w->loop, &pd->timer);
        pd->timer.data = pd;
        uint64_t wait = (p->await_acks ? p->timeout_ms : 0) + HUB_REPORT_GRACE_MS;
        uv_timer_start(&pd->timer, on_pending_timeout, wait, 0);
        *token = pd->token;
    }
    int r = hub->bus->ops->publish(hub->bus, p);
    if (r < 0 && p->report_mode != PUSH_REPORT_NONE) {
        hub_cancel(w, p->origin_token);
    }
    if (r == BUS_LOCAL_ONLY && p->report_mode != PUSH_REPORT_NONE)
        pending_local_only(hw, p->origin_token);
    return r < 0 ? r : 0;
}

/* While draining, a report holding this node's own part waits no longer than
 * HUB_STOP_WAIT_MS for the others: they cannot come over a closed bus. */
static void pending_stop_soon(pending_t *pd)
{
    const char *self = pd->hw->hub->cfg->node_id;
    for (long i = 0; i < pd->n_members; i++)
        if (pd->reports[i] && strcmp(pd->members[i], self) == 0) {
            if (uv_timer_get_due_in(&pd->timer) > HUB_STOP_WAIT_MS)
                uv_timer_start(&pd->timer, on_pending_timeout, HUB_STOP_WAIT_MS, 0);
            return;
        }
}

void hub_worker_draining(worker_t *w)
{
    hub_worker_t *hw = HW(w);
    if (!hw) return;
    hw->draining = 1;
    for (pending_t *pd = hw->pending; pd; pd = pd->next)
        pending_stop_soon(pd);
}

void hub_worker_stopping(worker_t *w)
{
    hub_worker_t *hw = HW(w);
    if (hw) hub_listings_stopping(hw);
    for (pending_t *pd = hw ? hw->pending : NULL; pd; pd = pd->next)
        if (uv_timer_get_due_in(&pd->timer) > HUB_STOP_WAIT_MS)
            uv_timer_start(&pd->timer, on_pending_timeout, HUB_STOP_WAIT_MS, 0);
}

void hub_cancel(worker_t *w, uint64_t token)
{
    hub_worker_t *hw = HW(w);
    for (pending_t *pd = hw->pending; pd; pd = pd->next)
        if (pd->token == token) {
            pd->cb = NULL;
            pending_finish(pd);
            return;
        }
}

/* ---- client listings: like a push, to every worker of every node, merged at the
 * origin ---- */

/* A listing at its origin, waiting for the nodes' rows. */
struct listing_s {
    listing_t *next;
    hub_worker_t *hw;
    client_query_t *q;
    hub_list_cb cb;
    void *arg;
    char **members;
    long n_members;
    client_list_t **lists; /* by member index; NULL until it arrives */
    long n_lists;
    uv_timer_t timer;
};

/* One listing being collected from every worker of this node. */
typedef struct list_collect_s {
    client_query_t *q;
    int remaining; /* touched only on the collector's thread */
    client_list_t list;
    worker_t *collector;
} list_collect_t;

/* To a worker as "list yours", back to the collector with its rows. */
typedef struct list_msg_s {
    worker_msg_t base;
    list_collect_t *lc;
    client_list_t part;
} list_msg_t;

typedef struct list_result_msg_s {
    worker_msg_t base;
    uint64_t token;
    client_list_t list;
} list_result_msg_t;

static void on_list_part(worker_t *w, worker_msg_t *m)
{
    list_msg_t *lm = (list_msg_t *)m;
    list_collect_t *lc = lm->lc;
    client_list_move(&lc->list, &lm->part, lc->q->limit);
    client_list_free(&lm->part);
    free(lm);
    if (--lc->remaining > 0) return;
    hub_worker_t *hw = HW(w);
    if (hw) /* else the loop has ended (shutdown): nobody to answer */
        hw->hub->bus->ops->list_reply(hw->hub->bus, lc->q, &lc->list);
    client_list_free(&lc->list);
    client_query_unref(lc->q);
    free(lc);
}

static void on_list(worker_t *w, worker_msg_t *m)
{
    list_msg_t *lm = (list_msg_t *)m;
    hub_worker_t *hw = HW(w);
    const client_query_t *q = lm->lc->q;
    for (subscriber_t *s = hw ? hw->subs : NULL; s; s = s->next) {
        if (!selects(q->tenant, q->client_pat, q->session_pat, q->role_pat, s)) continue;
        client_row_t row = {
            .client_id = (char *)s->client_id,
            .session_id = (char *)sub_session(s),
            .user = (char *)sub_user(s),
            .tenant = (char *)s->tenant,
            .transport = (char *)s->ops->transport,
            .roles = s->id ? s->id->roles : NULL,
            .n_roles = s->id ? s->id->n_roles : 0,
            .worker = w->index,
            .topics_only = s->topics_only,
            .connected_at_ms = s->connected_at_ms,
        };
        client_list_add(&lm->part, &row, q->limit); /* copies; a row out of memory is left out */
    }
    lm->base.fn = on_list_part;
    lm->base.next = NULL;
    if (lm->lc->collector == w)
        on_list_part(w, &lm->base);
    else
        worker_post(lm->lc->collector, &lm->base);
}

void hub_list_collect(hub_t *hub, client_query_t *q)
{
    worker_t *self = worker_current();
    int n = hub->n_workers;
    list_collect_t *lc = calloc(1, sizeof(*lc));
    list_msg_t **lms = calloc((size_t)n, sizeof(*lms));
    if (!lc || !lms) goto fail;
    for (int i = 0; i < n; i++)
        if (!(lms[i] = calloc(1, sizeof(**lms)))) goto fail;
    lc->q = client_query_ref(q);
    lc->remaining = n;
    client_list_init(&lc->list);
    lc->list.application_id = strdup(hub->cfg->application_id);
    lc->list.node_id = strdup(hub->cfg->node_id);
    lc->collector = self && self->hub && HW(self)->hub == hub ? self : hub->workers[0];
    for (int i = 0; i < n; i++) {
        lms[i]->base.fn = on_list;
        lms[i]->lc = lc;
        client_list_init(&lms[i]->part);
        worker_post(hub->workers[i], &lms[i]->base);
    }
    free(lms);
    return;
fail:
    log_error("out of memory listing clients", "origin=%s", q->origin_node ? q->origin_node : "");
    for (int i = 0; lms && i < n; i++)
        free(lms[i]);
    free(lms);
    free(lc);
}

static void listing_timer_closed(uv_handle_t *h)
{
    listing_t *ls = h->data;
    for (long i = 0; i < ls->n_members; i++) {
        free(ls->members[i]);
        if (ls->lists[i]) {
            client_list_free(ls->lists[i]);
            free(ls->lists[i]);
        }
    }
    free(ls->members);
    free(ls->lists);
    client_query_unref(ls->q);
    free(ls);
}

static void listing_finish(listing_t *ls)
{
    hub_worker_t *hw = ls->hw;
    for (listing_t **pp = &hw->listings; *pp; pp = &(*pp)->next)
        if (*pp == ls) {
            *pp = ls->next;
            break;
        }
    uv_timer_stop(&ls->timer);
    if (ls->cb) {
        client_list_t **got = calloc((size_t)ls->n_members + 1, sizeof(*got));
        char **missing = calloc((size_t)ls->n_members + 1, sizeof(*missing));
        size_t ng = 0, nm = 0;
        buf_t *body = NULL;
        if (got && missing) {
            for (long i = 0; i < ls->n_members; i++) {
                if (ls->lists[i])
                    got[ng++] = ls->lists[i];
                else
                    missing[nm++] = ls->members[i];
            }
            body = client_list_render(got, ng, missing, nm, ls->q->limit);
        }
        free(got);
        free(missing);
        ls->cb(ls->arg, ls->q, body);
    }
    uv_close((uv_handle_t *)&ls->timer, listing_timer_closed);
}

static void on_listing_timeout(uv_timer_t *t)
{
    listing_finish(t->data);
}

static void on_list_result(worker_t *w, worker_msg_t *m)
{
    list_result_msg_t *rm = (list_result_msg_t *)m;
    hub_worker_t *hw = HW(w);
    listing_t *ls = hw ? hw->listings : NULL;
    while (ls && ls->q->token != rm->token)
        ls = ls->next;
    long slot = -1;
    for (long i = 0; ls && i < ls->n_members; i++)
        if (!ls->lists[i] && rm->list.node_id && strcmp(ls->members[i], rm->list.node_id) == 0)
            slot = i;
    client_list_t *l = slot >= 0 ? malloc(sizeof(*l)) : NULL;
    if (!l) {
        client_list_free(&rm->list);
        free(rm);
        return;
    }
    *l = rm->list;
    free(rm);
    ls->lists[slot] = l;
    if (++ls->n_lists == ls->n_members) listing_finish(ls);
}

void hub_list_result(hub_t *hub, int origin_worker, uint64_t token, client_list_t *l)
{
    list_result_msg_t *rm = calloc(1, sizeof(*rm));
    if (!rm || origin_worker < 0 || origin_worker >= hub->n_workers) {
        free(rm);
        client_list_free(l);
        return;
    }
    rm->base.fn = on_list_result;
    rm->token = token;
    rm->list = *l;
    client_list_init(l);
    worker_t *w = hub->workers[origin_worker];
    if (worker_current() == w)
        on_list_result(w, &rm->base);
    else
        worker_post(w, &rm->base);
}

int hub_list(worker_t *w, client_query_t *q, uint64_t wait_ms, hub_list_cb cb, void *arg)
{
    hub_worker_t *hw = HW(w);
    hub_t *hub = hw->hub;
    bus_t *bus = hub->bus;
    if (!bus->ops->list || !bus->ops->list_reply) return -ENOTSUP;
    free(q->origin_node);
    if (!(q->origin_node = strdup(hub->cfg->node_id))) return -ENOMEM;
    q->origin_worker = w->index;
    q->token = ++hw->next_token;
    listing_t *ls = calloc(1, sizeof(*ls));
    if (!ls) return -ENOMEM;
    ls->n_members = bus->ops->members(bus, &ls->members);
    if (ls->n_members < 0 || !(ls->lists = calloc((size_t)ls->n_members + 1, sizeof(*ls->lists)))) {
        for (long i = 0; i < ls->n_members; i++)
            free(ls->members[i]);
        if (ls->n_members >= 0) free(ls->members);
        free(ls);
        return -ENOMEM;
    }
    ls->hw = hw;
    ls->q = client_query_ref(q);
    ls->cb = cb;
    ls->arg = arg;
    ls->next = hw->listings;
    hw->listings = ls;
    uv_timer_init(&w->loop, &ls->timer);
    ls->timer.data = ls;
    uv_timer_start(&ls->timer, on_listing_timeout, wait_ms, 0);
    int r = bus->ops->list(bus, q);
    if (r < 0) {
        ls->cb = NULL;
        listing_finish(ls);
        return r;
    }
    if (r == BUS_LOCAL_ONLY) /* the others cannot answer: missing now, not at the deadline */
        for (long i = 0; i < ls->n_members; i++)
            if (strcmp(ls->members[i], hub->cfg->node_id) != 0) ls->n_lists++;
    return 0;
}

static void hub_listings_stopping(hub_worker_t *hw)
{
    for (listing_t *ls = hw->listings; ls; ls = ls->next)
        if (uv_timer_get_due_in(&ls->timer) > HUB_STOP_WAIT_MS)
            uv_timer_start(&ls->timer, on_listing_timeout, HUB_STOP_WAIT_MS, 0);
}

static void hub_listings_end(hub_worker_t *hw)
{
    while (hw->listings) {
        listing_t *ls = hw->listings;
        hub_list_cb cb = ls->cb;
        void *arg = ls->arg;
        ls->cb = NULL;
        listing_finish(ls);
        if (cb) cb(arg, NULL, NULL); /* no answer will come: the caller frees its state */
    }
}
