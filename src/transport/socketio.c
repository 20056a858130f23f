/* socket.io v5 clients and sockets over Engine.IO sessions. */
#include "transport/socketio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ids.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/ratelimit.h"
#include "hub/hub.h"

#define SIO_MAX_SOCKETS 32
#define SIO_PENDING_ACKS 64

typedef struct sio_client_s sio_client_t;

struct sio_socket_s {
    subscriber_t sub;
    sio_socket_t *next;
    sio_client_t *cl;
    char nsp[SIO_NSP_MAX];
    char sid[EIO_SID_LEN + 1];
    auth_identity_t *id;
    char *client_id;
    char *tenant;
    long next_ack;
    struct sio_pending_ack {
        long ack_id;
        char push_id[ID_MAX];
    } * acks; /* push requests waiting for this socket's ack; allocated on first use */
    unsigned n_acks;
    history_sent_t replayed;
};

struct sio_client_s {
    eio_session_t *eio;
    const sio_server_t *srv;
    sio_socket_t *sockets;
    unsigned n_sockets;
    char *authorization;
    char *query;
    uv_timer_t connect_timer;
    int timer_live;
    ratelimit_t rate; /* inbound packets */
    /* a binary packet waiting for its attachments */
    int bin_type;
    char bin_nsp[SIO_NSP_MAX];
    long bin_ack;
    char *bin_json;
    unsigned bin_need, bin_got;
    buf_t *bin_parts[SIO_MAX_ATTACHMENTS];
};

/* ---- encoding ---- */

static int emit_packet(sio_client_t *cl, int type, const char *nsp, long ack_id, const char *data,
                       size_t len, buf_t *const *att, unsigned n)
{
    buf_t *b = buf_new(len + 32);
    if (!b) return -ENOMEM;
    int bin = n > 0 && (type == SIO_EVENT || type == SIO_ACK);
    if (bin) type = type == SIO_EVENT ? SIO_BINARY_EVENT : SIO_BINARY_ACK;
    int r = sio_encode(&b, type, nsp, ack_id, n, data, len);
    if (r == 0) r = eio_send(cl->eio, b, 0, b->len, 0);
    buf_unref(b);
    for (unsigned i = 0; r == 0 && bin && i < n; i++)
        r = eio_send(cl->eio, att[i], 0, att[i]->len, 1);
    return r;
}

int sio_emit(sio_socket_t *sock, const char *args, size_t len, buf_t *const *attachments,
             unsigned n, long ack_id)
{
    return emit_packet(sock->cl, SIO_EVENT, sock->nsp, ack_id, args, len, attachments, n);
}

int sio_ack(sio_socket_t *sock, long ack_id, const char *args, size_t len,
            buf_t *const *attachments, unsigned n)
{
    return emit_packet(sock->cl, SIO_ACK, sock->nsp, ack_id, args, len, attachments, n);
}

const char *sio_socket_nsp(const sio_socket_t *sock)
{
    return sock->nsp;
}

const auth_identity_t *sio_socket_identity(const sio_socket_t *sock)
{
    return sock->id;
}

unsigned sio_topic_count(const sio_socket_t *sock)
{
    return sock->sub.n_topics;
}

int sio_topic_add(sio_socket_t *sock, const char *topic)
{
    return hub_topic_add(&sock->sub, topic);
}

int sio_topic_remove(sio_socket_t *sock, const char *topic)
{
    return hub_topic_remove(&sock->sub, topic);
}

/* [name, data, pushId] with name = event (channels, streams) or "push" (requests) */
static int push_args(buf_t **b, const push_t *p)
{
    int r = buf_puts(b, "[");
    r |= buf_put_json_string(b, p->kind == PUSH_KIND_REQUEST ? "push" : p->event ? p->event : "");
    r |= buf_puts(b, ",");
    r |= buf_append(b, p->payload, p->payload_len);
    r |= buf_puts(b, ",");
    r |= buf_put_json_string(b, p->id);
    r |= buf_puts(b, "]");
    return r;
}

buf_t *sio_encode_push(const push_t *p, int ti)
{
    (void)ti;
    char nsp[SIO_NSP_MAX] = "/";
    if (p->kind == PUSH_KIND_STREAM && p->tenant) snprintf(nsp, sizeof(nsp), "/%s", p->tenant);
    buf_t *args = buf_new(p->payload_len + 64);
    buf_t *pkt = args ? buf_new(p->payload_len + 96) : NULL;
    int r = pkt ? push_args(&args, p) : -ENOMEM;
    if (r == 0) r = sio_encode(&pkt, SIO_EVENT, nsp, -1, 0, args->data, args->len);
    buf_unref(args);
    if (r) {
        buf_unref(pkt);
        return NULL;
    }
    return pkt;
}

/* ---- pushes to sockets ---- */

static int sock_deliver(subscriber_t *s, push_t *p, int ti)
{
    sio_socket_t *sock = (sio_socket_t *)s;
    sio_client_t *cl = sock->cl;
    int r;
    if (history_sent_has(&sock->replayed, p->id, uv_now(&eio_session_worker(cl->eio)->loop)))
        return 0;
    if (p->kind == PUSH_KIND_REQUEST && p->await_acks) {
        /* the ack id is this socket's own, so this encoding is too */
        long id = sock->next_ack++;
        buf_t *args = buf_new(p->payload_len + 64);
        r = args ? push_args(&args, p) : -ENOMEM;
        if (r == 0) r = emit_packet(cl, SIO_EVENT, sock->nsp, id, args->data, args->len, NULL, 0);
        buf_unref(args);
        if (r == 0 && !sock->acks && !(sock->acks = calloc(SIO_PENDING_ACKS, sizeof(*sock->acks))))
            r = -ENOMEM;
        if (r == 0) {
            if (sock->n_acks == SIO_PENDING_ACKS) {
                /* the oldest unanswered one has long timed out in its report */
                memmove(&sock->acks[0], &sock->acks[1],
                        sizeof(sock->acks[0]) * (SIO_PENDING_ACKS - 1));
                sock->n_acks--;
            }
            sock->acks[sock->n_acks].ack_id = id;
            memcpy(sock->acks[sock->n_acks].push_id, p->id, ID_MAX);
            sock->n_acks++;
        }
    } else {
        buf_t *f = push_frame(p, PUSH_FORMAT_SIO, ti, sio_encode_push);
        r = f ? eio_send(cl->eio, f, 0, f->len, 0) : -ENOMEM;
    }
    if (r < 0) hub_unsubscribe(s);
    return r;
}

static const subscriber_ops_t sock_ops = {sock_deliver, "socket.io"};

/* A client's ack for a push request it was sent: its push response. */
static int push_ack(sio_socket_t *sock, long ack_id, json_t *args)
{
    for (unsigned i = 0; i < sock->n_acks; i++) {
        if (sock->acks[i].ack_id != ack_id) continue;
        json_t *first = json_array_get(args, 0);
        json_t *ok = json_object_get(first, "successful");
        json_t *msg = json_object_get(first, "message");
        hub_ack(&sock->sub, sock->acks[i].push_id, ok ? json_is_true(ok) : 1,
                json_is_string(msg) ? json_string_value(msg) : "acknowledged");
        sock->acks[i] = sock->acks[--sock->n_acks];
        return 1;
    }
    return 0;
}

/* ---- sockets ---- */

static sio_socket_t *find_socket(sio_client_t *cl, const char *nsp)
{
    for (sio_socket_t *s = cl->sockets; s; s = s->next)
        if (strcmp(s->nsp, nsp) == 0) return s;
    return NULL;
}

static void socket_free(sio_client_t *cl, sio_socket_t *sock)
{
    for (sio_socket_t **pp = &cl->sockets; *pp; pp = &(*pp)->next)
        if (*pp == sock) {
            *pp = sock->next;
            cl->n_sockets--;
            break;
        }
    hub_unsubscribe(&sock->sub);
    auth_identity_free(sock->id);
    free(sock->client_id);
    free(sock->tenant);
    free(sock->acks);
    history_sent_free(&sock->replayed);
    free(sock);
}

static void connect_error(sio_client_t *cl, const char *nsp, const char *msg)
{
    buf_t *b = buf_new(64);
    if (b && buf_puts(&b, "{\"message\":") == 0 && buf_put_json_string(&b, msg) == 0 &&
        buf_puts(&b, "}") == 0)
        emit_packet(cl, SIO_CONNECT_ERROR, nsp, -1, b->data, b->len, NULL, 0);
    buf_unref(b);
}

static void replay(sio_socket_t *sock, char *const *topics, size_t n, const char *offset)
{
    history_t *h = sock->cl->srv->history;
    eio_session_t *eio = sock->cl->eio;
    for (size_t i = 0; h && i < n; i++) {
        history_entry_t *e;
        int gap;
        long k = history_since(h, topics[i], offset, auth_now_ms(), &e, &gap);
        if (k > 0)
            history_sent_record(&sock->replayed, e, (size_t)k,
                                uv_now(&eio_session_worker(eio)->loop) + HISTORY_SENT_WINDOW_MS);
        for (long j = 0; j < k; j++) {
            /* a send that cuts the client off only marks it: the session lives on
             * until the next loop turn, so the rest of this loop is harmless */
            buf_t *f = push_frame(e[j].p, PUSH_FORMAT_SIO, e[j].ti, sio_encode_push);
            if (f && eio_session_open(eio)) eio_send(eio, f, 0, f->len, 0);
            push_unref(e[j].p);
        }
        free(e);
    }
}

static void on_connect(sio_client_t *cl, const sio_packet_t *p)
{
    json_t *auth = NULL;
    if (p->data) {
        auth = json_loadb(p->data, p->data_len, 0, NULL);
        if (!json_is_object(auth)) {
            json_decref(auth);
            eio_close(cl->eio, "parse error");
            return;
        }
    }
    if (find_socket(cl, p->nsp) || cl->n_sockets >= SIO_MAX_SOCKETS) {
        connect_error(cl, p->nsp, "already connected to this namespace");
        json_decref(auth);
        return;
    }
    sio_socket_t *sock = calloc(1, sizeof(*sock));
    sio_connect_t res;
    memset(&res, 0, sizeof(res));
    if (!sock) {
        json_decref(auth);
        connect_error(cl, p->nsp, "out of memory");
        return;
    }
    sock->cl = cl;
    snprintf(sock->nsp, sizeof(sock->nsp), "%s", p->nsp);
    const sio_app_t *app = cl->srv->app;
    int r = app->connect(sock, p->nsp, auth, cl->authorization, cl->query, &res, app->arg);
    if (r < 0) {
        connect_error(cl, p->nsp, res.error[0] ? res.error : "refused");
        auth_identity_free(res.id);
        free(res.client_id);
        free(res.tenant);
        for (size_t i = 0; i < res.n_topics; i++)
            free(res.topics[i]);
        free(res.topics);
        free(sock);
        json_decref(auth);
        return;
    }
    if (cl->timer_live) uv_timer_stop(&cl->connect_timer);
    char rnd[EIO_SID_LEN + 1], pid[EIO_SID_LEN + 1];
    ids_random_hex(rnd, EIO_SID_LEN / 2);
    ids_random_hex(pid, EIO_SID_LEN / 2);
    memcpy(sock->sid, rnd, sizeof(sock->sid));
    sock->id = res.id;
    sock->client_id = res.client_id ? res.client_id : strdup("socket.io");
    sock->tenant = res.tenant;
    subscriber_t *s = &sock->sub;
    s->ops = &sock_ops;
    s->client_id = sock->client_id ? sock->client_id : "socket.io";
    s->id = sock->id;
    s->tenant = sock->tenant;
    s->connected_at_ms = auth_now_ms();
    sock->next = cl->sockets;
    cl->sockets = sock;
    cl->n_sockets++;
    hub_subscribe(eio_session_worker(cl->eio), s);
    for (size_t i = 0; i < res.n_topics; i++)
        hub_topic_add(s, res.topics[i]);
    char body[96];
    /* a pid tells the client it may ask for recovery: only where history can serve it */
    int n = cl->srv->history
                ? snprintf(body, sizeof(body), "{\"sid\":\"%s\",\"pid\":\"%s\"}", sock->sid, pid)
                : snprintf(body, sizeof(body), "{\"sid\":\"%s\"}", sock->sid);
    emit_packet(cl, SIO_CONNECT, sock->nsp, -1, body, (size_t)n, NULL, 0);
    const char *offset = json_string_value(json_object_get(auth, "offset"));
    if (res.replay && offset && json_is_string(json_object_get(auth, "pid")))
        replay(sock, res.topics, res.n_topics, offset);
    for (size_t i = 0; i < res.n_topics; i++)
        free(res.topics[i]);
    free(res.topics);
    if (app->connected) app->connected(sock, auth, app->arg);
    json_decref(auth);
}

static void dispatch(sio_client_t *cl, int type, const char *nsp, long ack_id, const char *data,
                     size_t len, buf_t *const *att, unsigned n)
{
    sio_socket_t *sock = find_socket(cl, nsp);
    if (type == SIO_DISCONNECT) {
        if (sock) socket_free(cl, sock);
        return;
    }
    json_t *args = data ? json_loadb(data, len, 0, NULL) : NULL;
    if (type == SIO_EVENT && (!json_is_array(args) || !json_is_string(json_array_get(args, 0)))) {
        json_decref(args);
        eio_close(cl->eio, "parse error");
        return;
    }
    if (type == SIO_ACK && !json_is_array(args)) {
        json_decref(args);
        eio_close(cl->eio, "parse error");
        return;
    }
    if (sock) {
        if (type == SIO_EVENT && cl->srv->app->event)
            cl->srv->app->event(sock, args, att, n, ack_id, cl->srv->app->arg);
        else if (type == SIO_ACK)
            push_ack(sock, ack_id, args);
    }
    json_decref(args);
}

static void bin_reset(sio_client_t *cl)
{
    for (unsigned i = 0; i < cl->bin_got; i++)
        buf_unref(cl->bin_parts[i]);
    free(cl->bin_json);
    cl->bin_json = NULL;
    cl->bin_need = cl->bin_got = 0;
}

/* Over the inbound rate: every namespace is told DISCONNECT (the client does not
 * reconnect by itself, as for a server-side disconnect), then the session closes. */
static void policy_disconnect(sio_client_t *cl)
{
    METRICS_REFUSED(REFUSED_MESSAGE_RATE);
    for (sio_socket_t *k = cl->sockets; k; k = k->next)
        emit_packet(cl, SIO_DISCONNECT, k->nsp, -1, NULL, 0, NULL, 0);
    eio_close_code(cl->eio, "policy violation", 1008);
}

static void on_message(eio_session_t *s, const char *data, size_t len, int binary)
{
    sio_client_t *cl = eio_session_app(s);
    if (!ratelimit_take(&cl->rate, cl->srv->max_messages_per_s, cl->srv->message_burst,
                        uv_now(&eio_session_worker(s)->loop))) {
        policy_disconnect(cl);
        return;
    }
    if (binary) {
        if (cl->bin_need == 0) {
            eio_close(s, "parse error");
            return;
        }
        buf_t *part = buf_new(len);
        if (!part) {
            eio_close(s, "out of memory");
            return;
        }
        buf_append(&part, data, len);
        cl->bin_parts[cl->bin_got++] = part;
        if (cl->bin_got == cl->bin_need) {
            dispatch(cl, cl->bin_type, cl->bin_nsp, cl->bin_ack, cl->bin_json, strlen(cl->bin_json),
                     cl->bin_parts, cl->bin_got);
            if (eio_session_open(s)) bin_reset(cl);
        }
        return;
    }
    if (cl->bin_need) {
        eio_close(s, "parse error"); /* a text packet in the middle of attachments */
        return;
    }
    sio_packet_t p;
    if (sio_decode(data, len, &p) < 0 || p.type == SIO_CONNECT_ERROR) {
        eio_close(s, "parse error");
        return;
    }
    switch (p.type) {
    case SIO_CONNECT:
        on_connect(cl, &p);
        break;
    case SIO_BINARY_EVENT:
    case SIO_BINARY_ACK:
        if (p.attachments == 0 || !p.data) {
            dispatch(cl, p.type == SIO_BINARY_EVENT ? SIO_EVENT : SIO_ACK, p.nsp, p.ack_id, p.data,
                     p.data_len, NULL, 0);
            break;
        }
        cl->bin_type = p.type == SIO_BINARY_EVENT ? SIO_EVENT : SIO_ACK;
        snprintf(cl->bin_nsp, sizeof(cl->bin_nsp), "%s", p.nsp);
        cl->bin_ack = p.ack_id;
        cl->bin_json = strndup(p.data, p.data_len);
        cl->bin_need = p.attachments;
        if (!cl->bin_json) eio_close(s, "out of memory");
        break;
    default:
        dispatch(cl, p.type, p.nsp, p.ack_id, p.data, p.data_len, NULL, 0);
        break;
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_close(eio_session_t *s, const char *reason)
{
    (void)reason;
    sio_client_t *cl = eio_session_app(s);
    while (cl->sockets)
        socket_free(cl, cl->sockets);
    bin_reset(cl);
    free(cl->authorization);
    free(cl->query);
    uv_timer_stop(&cl->connect_timer);
    uv_close((uv_handle_t *)&cl->connect_timer, on_timer_closed);
}

static const eio_handler_t sio_eio_handler = {on_message, on_close};

static void on_connect_timeout(uv_timer_t *t)
{
    sio_client_t *cl = t->data;
    if (!cl->sockets) eio_close(cl->eio, "connect timeout");
}

static int on_session(eio_session_t *s, const http_request_t *req, void *arg)
{
    const sio_server_t *srv = arg;
    sio_client_t *cl = calloc(1, sizeof(*cl));
    if (!cl) return -ENOMEM;
    const char *auth = http_request_header(req, "Authorization");
    cl->eio = s;
    cl->srv = srv;
    cl->authorization = auth ? strdup(auth) : NULL;
    cl->query = strdup(req->query);
    uv_timer_init(&eio_session_worker(s)->loop, &cl->connect_timer);
    cl->connect_timer.data = cl;
    cl->timer_live = 1;
    uv_timer_start(&cl->connect_timer, on_connect_timeout, srv->connect_timeout_ms, 0);
    ratelimit_init(&cl->rate, srv->message_burst, uv_now(&eio_session_worker(s)->loop));
    eio_session_set_handler(s, &sio_eio_handler, cl);
    return 0;
}

void sio_server_init(sio_server_t *srv, const eio_options_t *opt, const sio_app_t *app,
                     unsigned connect_timeout_ms, history_t *history)
{
    srv->eio.opt = *opt;
    srv->eio.on_session = on_session;
    srv->eio.arg = srv;
    srv->app = app;
    srv->connect_timeout_ms = connect_timeout_ms;
    srv->history = history;
}
