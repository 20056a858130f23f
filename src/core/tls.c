/* TLS server contexts (load, reload under a lock) and connections driven through a BIO
 * that borrows the worker's read buffer and appends records to a refcounted buffer. */
#include "core/tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

/* With HTTP/2 on, "h2" is preferred: the client then opens with the HTTP/2 preface,
 * which the HTTP server recognises on any connection (src/http/server.c). */
#define TLS_ALPN_PROTOCOLS "\x08http/1.1"
#define TLS_ALPN_PROTOCOLS_H2 "\x02h2\x08http/1.1"

struct tls_server_s {
    pthread_mutex_t mu; /* guards ctx: a reload swaps it while workers accept */
    SSL_CTX *ctx;
    char *cert_file;
    char *key_file;
    int min_version;
    int h2;
};

struct tls_conn_s {
    SSL *ssl;
    const char *in; /* ciphertext not yet decrypted: borrowed, or inside stash */
    size_t in_len;
    buf_t *stash; /* owned copy of the input, when the caller's buffer had to go */
    buf_t *out;   /* records waiting to be sent, from out_off */
    size_t out_off;
    unsigned notified : 1; /* close_notify queued */
    unsigned oom : 1;      /* the BIO could not take a record */
};

const unsigned char *tls_alpn_protocols(int h2, size_t *len)
{
    static const unsigned char list[] = TLS_ALPN_PROTOCOLS;
    static const unsigned char list_h2[] = TLS_ALPN_PROTOCOLS_H2;
    *len = h2 ? sizeof(list_h2) - 1 : sizeof(list) - 1;
    return h2 ? list_h2 : list;
}

/* --- the connection BIO ------------------------------------------------------------ */

static int bio_write_cb(BIO *b, const char *data, int len)
{
    tls_conn_t *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0) return 0;
    if (!t->out) {
        t->out = buf_new((size_t)len);
        t->out_off = 0;
    }
    if (!t->out || buf_append(&t->out, data, (size_t)len) < 0) {
        t->oom = 1;
        return -1;
    }
    return len;
}

static int bio_read_cb(BIO *b, char *out, int cap)
{
    tls_conn_t *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (t->in_len == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = t->in_len < (size_t)cap ? t->in_len : (size_t)cap;
    memcpy(out, t->in, n);
    t->in += n;
    t->in_len -= n;
    return (int)n;
}

static long bio_ctrl_cb(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    tls_conn_t *t = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
        return t ? (long)t->in_len : 0;
    default:
        return 0;
    }
}

static int bio_create_cb(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static int bio_destroy_cb(BIO *b)
{
    (void)b;
    return 1;
}

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static void bio_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "pushgate-conn");
    if (!m) return;
    BIO_meth_set_write(m, bio_write_cb);
    BIO_meth_set_read(m, bio_read_cb);
    BIO_meth_set_ctrl(m, bio_ctrl_cb);
    BIO_meth_set_create(m, bio_create_cb);
    BIO_meth_set_destroy(m, bio_destroy_cb);
    bio_method = m;
}

/* --- server contexts ---------------------------------------------------------------- */

static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    size_t len;
    const unsigned char *ours = tls_alpn_protocols(*(const int *)arg, &len);
    unsigned char *sel = NULL;
    /* the server's order wins: the first of ours the client also offers */
    if (SSL_select_next_proto(&sel, outlen, ours, (unsigned)len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL; /* no_application_protocol (RFC 7301 §3.2) */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* Never prompt on a terminal for an encrypted key: it is refused instead. */
static int no_password_cb(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static const char *ssl_reason(void)
{
    const char *r = ERR_reason_error_string(ERR_peek_last_error());
    return r ? r : "unknown error";
}

static int readable(const char *what, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        int e = errno;
        snprintf(err, errlen, "cannot open the TLS %s %s: %s", what, path, strerror(e));
        return -e;
    }
    fclose(f);
    return 0;
}

static int ctx_build(const tls_server_t *s, SSL_CTX **out, char *err, size_t errlen)
{
    int r;
    if ((r = readable("certificate", s->cert_file, err, errlen)) < 0 ||
        (r = readable("key", s->key_file, err, errlen)) < 0)
        return r;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "cannot create a TLS context: %s", ssl_reason());
        return -ENOMEM;
    }
    r = -EINVAL;
    SSL_CTX_set_default_passwd_cb(ctx, no_password_cb);
    if (SSL_CTX_use_certificate_chain_file(ctx, s->cert_file) != 1) {
        snprintf(err, errlen, "%s is not a PEM certificate: %s", s->cert_file, ssl_reason());
        goto fail_ctx;
    }
    BIO *kb = BIO_new_file(s->key_file, "r");
    EVP_PKEY *key = kb ? PEM_read_bio_PrivateKey(kb, NULL, no_password_cb, NULL) : NULL;
    BIO_free(kb);
    if (!key) {
        snprintf(err, errlen, "%s is not an unencrypted PEM private key: %s", s->key_file,
                 ssl_reason());
        goto fail_ctx;
    }
    ERR_clear_error();
    int ok = SSL_CTX_use_PrivateKey(ctx, key) == 1 && SSL_CTX_check_private_key(ctx) == 1;
    EVP_PKEY_free(key);
    if (!ok) {
        snprintf(err, errlen, "the private key %s does not match the certificate %s: %s",
                 s->key_file, s->cert_file, ssl_reason());
        goto fail_ctx;
    }
    SSL_CTX_set_min_proto_version(ctx, s->min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    /* idle connections keep no record buffers; nobody renegotiates under a worker */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION);
    /* resumption by stateless tickets only: no per-session state held by the server */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"pushgate", 8);
    static int with_h2 = 1, without_h2 = 0; /* the callback's argument: whether h2 is offered */
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, s->h2 ? &with_h2 : &without_h2);
    *out = ctx;
    return 0;
fail_ctx:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return r;
}

int tls_server_new(const tls_server_cfg_t *cfg, tls_server_t **out, char *err, size_t errlen)
{
    pthread_once(&bio_once, bio_method_init);
    if (!bio_method) {
        snprintf(err, errlen, "cannot set up OpenSSL");
        return -ENOMEM;
    }
    tls_server_t *s = calloc(1, sizeof(*s));
    if (!s) return -ENOMEM;
    int r = -ENOMEM;
    s->min_version = cfg->min_version;
    s->h2 = cfg->h2;
    s->cert_file = strdup(cfg->cert_file);
    s->key_file = strdup(cfg->key_file);
    if (!s->cert_file || !s->key_file) goto fail_strings;
    if ((r = ctx_build(s, &s->ctx, err, errlen)) < 0) goto fail_strings;
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        r = -ENOMEM;
        goto fail_mutex;
    }
    *out = s;
    return 0;
fail_mutex:
    SSL_CTX_free(s->ctx);
fail_strings:
    free(s->cert_file);
    free(s->key_file);
    free(s);
    return r;
}

int tls_server_reload(tls_server_t *s, char *err, size_t errlen)
{
    SSL_CTX *ctx;
    int r = ctx_build(s, &ctx, err, errlen);
    if (r < 0) return r;
    pthread_mutex_lock(&s->mu);
    SSL_CTX *old = s->ctx;
    s->ctx = ctx;
    pthread_mutex_unlock(&s->mu);
    SSL_CTX_free(old); /* connections made with it hold their own references */
    return 0;
}

void tls_server_free(tls_server_t *s)
{
    if (!s) return;
    SSL_CTX_free(s->ctx);
    pthread_mutex_destroy(&s->mu);
    free(s->cert_file);
    free(s->key_file);
    free(s);
}

/* --- connections -------------------------------------------------------------------- */

int tls_conn_new(tls_server_t *s, tls_conn_t **out)
{
    tls_conn_t *t = calloc(1, sizeof(*t));
    if (!t) return -ENOMEM;
    pthread_mutex_lock(&s->mu);
    t->ssl = SSL_new(s->ctx); /* takes its own reference on the context */
    pthread_mutex_unlock(&s->mu);
    BIO *bio = t->ssl ? BIO_new(bio_method) : NULL;
    if (!bio) {
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return -ENOMEM;
    }
    BIO_set_data(bio, t);
    SSL_set_bio(t->ssl, bio, bio); /* one reference, owned by the SSL */
    SSL_set_accept_state(t->ssl);
    *out = t;
    return 0;
}

void tls_conn_free(tls_conn_t *t)
{
    if (!t) return;
    SSL_free(t->ssl);
    buf_unref(t->stash);
    buf_unref(t->out);
    free(t);
}

int tls_conn_input(tls_conn_t *t, const char *data, size_t len)
{
    if (!t->stash) {
        t->in = data;
        t->in_len = len;
        return 0;
    }
    size_t off = (size_t)(t->in - t->stash->data);
    if (len && buf_append(&t->stash, data, len) < 0) return -ENOMEM;
    t->in = t->stash->data + off;
    t->in_len = t->stash->len - off;
    return 0;
}

static void input_done(tls_conn_t *t)
{
    t->in = NULL;
    t->in_len = 0;
    buf_unref(t->stash);
    t->stash = NULL;
}

ssize_t tls_conn_read(tls_conn_t *t, char *out, size_t cap)
{
    int want = cap > (size_t)TLS_RECORD_MAX * 4 ? TLS_RECORD_MAX * 4 : (int)cap;
    for (;;) {
        size_t before = t->in_len;
        ERR_clear_error();
        int n = SSL_read(t->ssl, out, want);
        if (n > 0) return n;
        if (t->oom) return -ENOMEM;
        switch (SSL_get_error(t->ssl, n)) {
        case SSL_ERROR_WANT_READ:
            if (t->in_len && t->in_len < before)
                continue; /* a record without application data: go on */
            input_done(t);
            return 0;
        case SSL_ERROR_ZERO_RETURN:
            return -EPIPE;
        default:
            log_debug("tls error", "ready=%d reason=\"%s\"", SSL_is_init_finished(t->ssl),
                      ssl_reason());
            ERR_clear_error();
            return -EPROTO;
        }
    }
}

int tls_conn_stash(tls_conn_t *t)
{
    if (t->stash || t->in_len == 0) return 0; /* already owned, or nothing to keep */
    buf_t *b = buf_new(t->in_len);
    if (!b) return -ENOMEM;
    buf_append(&b, t->in, t->in_len);
    t->stash = b;
    t->in = b->data;
    return 0;
}

int tls_conn_has_stash(const tls_conn_t *t)
{
    return t->stash && t->in_len > 0;
}

int tls_conn_ready(const tls_conn_t *t)
{
    return SSL_is_init_finished(t->ssl);
}

int tls_conn_write(tls_conn_t *t, const void *data, size_t len)
{
    if (len == 0) return 0;
    ERR_clear_error();
    /* the BIO takes every record, so the write is whole or failed */
    int n = SSL_write(t->ssl, data, (int)len);
    if (t->oom) return -ENOMEM;
    if (n != (int)len) {
        ERR_clear_error();
        return -EPROTO;
    }
    return 0;
}

int tls_conn_close_notify(tls_conn_t *t)
{
    if (t->notified) return 0;
    t->notified = 1;
    ERR_clear_error();
    int r = SSL_shutdown(t->ssl); /* 0: sent, the peer's not yet seen; fine either way */
    ERR_clear_error();
    return r < 0 ? -EPROTO : 1;
}

buf_t *tls_conn_out(tls_conn_t *t, size_t *off)
{
    if (!t->out || t->out_off >= t->out->len) return NULL;
    *off = t->out_off;
    return t->out;
}

void tls_conn_out_consume(tls_conn_t *t, size_t n)
{
    if (!t->out) return;
    t->out_off += n;
    if (t->out_off >= t->out->len) {
        /* an idle connection keeps no output buffer */
        buf_unref(t->out);
        t->out = NULL;
        t->out_off = 0;
    }
}

buf_t *tls_conn_out_take(tls_conn_t *t, size_t *off)
{
    buf_t *b = tls_conn_out(t, off);
    if (!b) return NULL;
    t->out = NULL;
    t->out_off = 0;
    return b;
}

const char *tls_conn_alpn(const tls_conn_t *t, size_t *len)
{
    const unsigned char *p = NULL;
    unsigned int n = 0;
    SSL_get0_alpn_selected(t->ssl, &p, &n);
    *len = n;
    return n ? (const char *)p : NULL;
}
