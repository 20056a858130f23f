/* Blocking HTTP client used by `pushgate push-request`: http://, or https:// with the
 * peer verified against OpenSSL's default trust store (SSL_CERT_FILE / SSL_CERT_DIR). */
#include "cli_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int parse_url(const char *url, char *host, size_t hl, char *port, size_t pl, char *path,
                     size_t ptl, int *tls)
{
    *tls = strncmp(url, "https://", 8) == 0;
    if (!*tls && strncmp(url, "http://", 7) != 0) return -EINVAL;
    const char *h = url + (*tls ? 8 : 7);
    const char *slash = strchr(h, '/');
    size_t authlen = slash ? (size_t)(slash - h) : strlen(h);
    const char *colon = memchr(h, ':', authlen);
    size_t hostlen = colon ? (size_t)(colon - h) : authlen;
    if (hostlen == 0 || hostlen >= hl) return -EINVAL;
    memcpy(host, h, hostlen);
    host[hostlen] = '\0';
    if (colon) {
        size_t n = authlen - hostlen - 1;
        if (n == 0 || n >= pl) return -EINVAL;
        memcpy(port, colon + 1, n);
        port[n] = '\0';
    } else {
        snprintf(port, pl, "%s", *tls ? "443" : "80");
    }
    snprintf(path, ptl, "%s", slash ? slash : "");
    return 0;
}

/* A TLS session on fd checking the server's certificate and name. Returns it, or NULL
 * (the reason on stderr). */
static SSL *tls_open(int fd, const char *host)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;
    SSL_CTX_free(ctx); /* the session holds its own reference */
    if (!ssl) return NULL;
    SSL_CTX *c = SSL_get_SSL_CTX(ssl);
    SSL_CTX_set_default_verify_paths(c);
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
    unsigned char addr[16];
    X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
    int ok = SSL_set_fd(ssl, fd) == 1;
    if (inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1)
        ok = ok && X509_VERIFY_PARAM_set1_ip_asc(vp, host) == 1;
    else
        ok = ok && SSL_set1_host(ssl, host) == 1 && SSL_set_tlsext_host_name(ssl, host) == 1;
    static const unsigned char alpn[] = "\x08http/1.1";
    ok = ok && SSL_set_alpn_protos(ssl, alpn, sizeof(alpn) - 1) == 0;
    if (!ok || SSL_connect(ssl) != 1) {
        long v = SSL_get_verify_result(ssl);
        fprintf(stderr, "pushgate: TLS handshake with %s failed%s%s\n", host,
                v != X509_V_OK ? ": " : "", v != X509_V_OK ? X509_verify_cert_error_string(v) : "");
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

static ssize_t io_write(int fd, SSL *ssl, const void *data, size_t len)
{
    if (!ssl) return write(fd, data, len);
    int n = SSL_write(ssl, data, (int)len);
    if (n <= 0) {
        errno = EPIPE;
        return -1;
    }
    return n;
}

/* Returns bytes read, 0 at the end (close_notify or a bare EOF), -1. */
static ssize_t io_read(int fd, SSL *ssl, void *data, size_t len)
{
    if (!ssl) return read(fd, data, len);
    int n = SSL_read(ssl, data, (int)len);
    return n > 0 ? n : 0;
}

int cli_http_post(const char *url, const char *key, const char *body, buf_t **resp)
{
    char host[256], port[16], base[1024];
    int tls;
    if (parse_url(url, host, sizeof(host), port, sizeof(port), base, sizeof(base), &tls) < 0)
        return -EINVAL;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(host, port, &hints, &ai) != 0) return -EHOSTUNREACH;
    int fd = -1, err = -ECONNREFUSED;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0) continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
        err = -errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0) return err;
    SSL *ssl = NULL;
    if (tls && !(ssl = tls_open(fd, host))) {
        close(fd);
        return -EPROTO;
    }
    buf_t *req = buf_new(512 + strlen(body));
    buf_t *in = buf_new(4096);
    int r = -ENOMEM;
    if (!req || !in) goto out;
    r = buf_printf(&req,
                   "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\n",
                   base, host, port, strlen(body));
    if (key) r |= buf_printf(&req, "Authorization: Bearer %s\r\n", key);
    r |= buf_printf(&req, "\r\n%s", body);
    if (r) goto out;
    for (size_t off = 0; off < req->len;) {
        ssize_t n = io_write(fd, ssl, req->data + off, req->len - off);
        if (n < 0) {
            r = -errno;
            goto out;
        }
        off += (size_t)n;
    }
    char chunk[4096];
    ssize_t n;
    while ((n = io_read(fd, ssl, chunk, sizeof(chunk))) > 0)
        if (buf_append(&in, chunk, (size_t)n) < 0) goto out;
    char *hdr_end = strstr(in->data, "\r\n\r\n");
    char *end = NULL;
    long status =
        strncmp(in->data, "HTTP/1.", 7) == 0 && in->len > 12 ? strtol(in->data + 9, &end, 10) : -1;
    if (!hdr_end || !end || *end != ' ' || status < 100 || status > 599) {
        r = -EINVAL;
        goto out;
    }
    buf_t *b = buf_new(in->len);
    if (!b) goto out;
    buf_append(&b, hdr_end + 4, in->len - (size_t)(hdr_end + 4 - in->data));
    *resp = b;
    r = (int)status;
out:
    buf_unref(req);
    buf_unref(in);
    if (ssl) SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
    return r;
}
