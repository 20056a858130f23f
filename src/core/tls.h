/* TLS for accepted connections: OpenSSL 3 driven through a BIO that reads the bytes the
 * worker just read and writes records into a refcounted buffer, so a handshake advances
 * only when bytes arrive and never blocks the loop. The server context (certificate,
 * key) can be replaced at runtime: new handshakes use the new one, open connections
 * keep the one they started with (SSL_CTX is refcounted by OpenSSL).
 * A tls_conn_t is used by one thread at a time and may move between threads. */
#ifndef PG_TLS_H
#define PG_TLS_H

#include <stddef.h>
#include <sys/types.h>

#include "core/buf.h"

typedef struct tls_server_s tls_server_t;
typedef struct tls_conn_s tls_conn_t;

/* Largest plaintext of one TLS record: the size a read or write scratch needs. */
#define TLS_RECORD_MAX 16384

typedef struct tls_server_cfg_s {
    const char *cert_file; /* PEM: the certificate, then its chain */
    const char *key_file;  /* PEM private key */
    int min_version;       /* 12 (TLS 1.2) or 13 (TLS 1.3) */
    int h2;                /* offer ALPN "h2" (HTTP/2 is served) before "http/1.1" */
} tls_server_cfg_t;

/* The ALPN protocols this server accepts, in wire format (each name prefixed by its
 * length), most preferred first: "h2" then "http/1.1" when h2 is set, else "http/1.1".
 * Returns the list; *len is its length in bytes. */
const unsigned char *tls_alpn_protocols(int h2, size_t *len);

/* Loads the certificate and key into a new server context. On error writes a message
 * naming the file and the reason into err. Returns 0, -ENOENT/-EACCES (a file cannot
 * be read), -EINVAL (not a certificate / key, or they do not match), -ENOMEM. */
int tls_server_new(const tls_server_cfg_t *cfg, tls_server_t **out, char *err, size_t errlen);

/* Loads the same files again into a new context and makes it the one new connections
 * get; on error the old context stays and err says why. Safe from any thread.
 * Returns 0, or an error as tls_server_new. */
int tls_server_reload(tls_server_t *s, char *err, size_t errlen);

/* Frees the server; connections still open keep their context alive. */
void tls_server_free(tls_server_t *s);

/* A server-side connection using s's current context. Returns 0, -ENOMEM. */
int tls_conn_new(tls_server_t *s, tls_conn_t **out);

/* Frees the connection, its pending output and stashed input. NULL is a no-op. */
void tls_conn_free(tls_conn_t *t);

/* Gives t ciphertext to decrypt. The bytes are borrowed until tls_conn_read returns 0
 * or tls_conn_stash is called; while a stash exists they are appended to it.
 * Returns 0, -ENOMEM. */
int tls_conn_input(tls_conn_t *t, const char *data, size_t len);

/* Advances the handshake and decrypts into out (cap at least TLS_RECORD_MAX for whole
 * records). Returns the number of plaintext bytes (> 0), 0 when the input is used up,
 * -EPIPE when the peer sent close_notify, -EPROTO on a TLS error (an alert may be in
 * the output), -ENOMEM. */
ssize_t tls_conn_read(tls_conn_t *t, char *out, size_t cap);

/* Copies the input not yet decrypted into t, so the caller's buffer can go (reading
 * paused, or the connection moves to another thread). Returns 0, -ENOMEM. */
int tls_conn_stash(tls_conn_t *t);

/* Whether stashed input waits for tls_conn_input(t, NULL, 0) and tls_conn_read.
 * Returns 1 or 0. */
int tls_conn_has_stash(const tls_conn_t *t);

/* Whether the handshake is complete (application data may be written). Returns 1 or 0. */
int tls_conn_ready(const tls_conn_t *t);

/* Encrypts len bytes (at most TLS_RECORD_MAX for one record) into the output; needs a
 * complete handshake. Returns 0, -EPROTO (the connection failed), -ENOMEM. */
int tls_conn_write(tls_conn_t *t, const void *data, size_t len);

/* Queues a close_notify alert, once. Returns 1 when queued now, 0 when it was queued
 * before, -EPROTO. */
int tls_conn_close_notify(tls_conn_t *t);

/* Ciphertext waiting to be sent: the buffer holding it and where it starts; NULL
 * when there is none. Returns the buffer (still owned by t) or NULL. */
buf_t *tls_conn_out(tls_conn_t *t, size_t *off);

/* Marks n bytes of the output as sent (they left through the socket). */
void tls_conn_out_consume(tls_conn_t *t, size_t n);

/* Hands the output buffer to the caller (who then owns its reference); new output goes
 * to a new buffer. Returns the buffer and its start in *off, or NULL. */
buf_t *tls_conn_out_take(tls_conn_t *t, size_t *off);

/* The negotiated ALPN protocol name (not NUL-terminated) and its length; NULL when the
 * client offered none. Returns the name or NULL. */
const char *tls_conn_alpn(const tls_conn_t *t, size_t *len);

#endif
