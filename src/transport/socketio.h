/* socket.io v5 server over Engine.IO: namespaces, CONNECT with an auth payload,
 * EVENT/ACK both ways (binary attachments included), and sockets that are hub
 * subscribers, so pushes reach them like any other transport. What a namespace admits
 * and what its events do is the application's (sio_app_t); this file knows the wire. */
#ifndef PG_SOCKETIO_H
#define PG_SOCKETIO_H

#include <jansson.h>
#include <stddef.h>

#include "auth/auth.h"
#include "hub/history.h"
#include "hub/push.h"
#include "transport/engineio.h"
#include "transport/socketio_codec.h"

typedef struct sio_socket_s sio_socket_t;

/* What the application decided for a CONNECT. */
typedef struct sio_connect_s {
    auth_identity_t *id; /* taken; may stay NULL */
    char *client_id;     /* taken; NULL: "socket.io" */
    char **topics;       /* taken (array and strings) */
    size_t n_topics;
    char *tenant;    /* taken; NULL: none */
    int replay;      /* replay the topics' history after the client's auth.offset */
    char error[256]; /* the CONNECT_ERROR message when refused */
} sio_connect_t;

typedef struct sio_app_s {
    /* A client joins nsp with auth (a JSON object, or NULL). The handshake request's
     * Authorization header and query are given. Returns 0 to admit (res filled) or
     * negative to refuse with res->error. */
    int (*connect)(sio_socket_t *sock, const char *nsp, json_t *auth, const char *authorization,
                   const char *query, sio_connect_t *res, void *arg);
    /* Admitted: called after the CONNECT answer went out (optional). */
    void (*connected)(sio_socket_t *sock, json_t *auth, void *arg);
    /* An event: args is the whole array (name first); attachments are the binary parts
     * (placeholders in args point at them); ack_id < 0 when no ack is wanted. */
    void (*event)(sio_socket_t *sock, json_t *args, buf_t *const *attachments, unsigned n,
                  long ack_id, void *arg);
    void *arg;
} sio_app_t;

typedef struct sio_server_s {
    eio_server_t eio;
    const sio_app_t *app;
    unsigned connect_timeout_ms;
    history_t *history; /* NULL: no recovery (no `pid` in CONNECT answers) */
    /* inbound packets per second per client and their burst (0: unlimited); past them
     * every namespace gets a DISCONNECT and the session closes (WebSocket 1008) */
    unsigned max_messages_per_s;
    unsigned message_burst;
} sio_server_t;

/* Sets up srv->eio so that eio_http(ctx, &srv->eio) serves socket.io with app. */
void sio_server_init(sio_server_t *srv, const eio_options_t *opt, const sio_app_t *app,
                     unsigned connect_timeout_ms, history_t *history);

/* Emits an event: args is the JSON array text (name first); with n attachments it is a
 * BINARY_EVENT whose placeholders refer to them. ack_id < 0: none.
 * Returns 0 or a negative errno. */
int sio_emit(sio_socket_t *sock, const char *args, size_t len, buf_t *const *attachments,
             unsigned n, long ack_id);

/* Answers an ack: args is the JSON array text. Returns 0 or a negative errno. */
int sio_ack(sio_socket_t *sock, long ack_id, const char *args, size_t len,
            buf_t *const *attachments, unsigned n);

/* Subscribes or unsubscribes the socket to a hub topic. Returns as hub_topic_add/remove. */
int sio_topic_add(sio_socket_t *sock, const char *topic);
int sio_topic_remove(sio_socket_t *sock, const char *topic);

/* How many topics the socket is subscribed to. */
unsigned sio_topic_count(const sio_socket_t *sock);

/* The socket's namespace and identity (may be NULL). */
const char *sio_socket_nsp(const sio_socket_t *sock);
const auth_identity_t *sio_socket_identity(const sio_socket_t *sock);

/* Encodes p for socket.io: an EVENT in the push's namespace ("/<tenant>" for streams,
 * "/" otherwise) with args [name, data, pushId]. Returns a new buffer or NULL. */
buf_t *sio_encode_push(const push_t *p, int ti);

#endif
