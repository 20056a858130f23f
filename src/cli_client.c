/* Blocking HTTP client used by `pushgate push-request`. */
#include "cli_client.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int parse_url(const char *url, char *host, size_t hl, char *port, size_t pl, char *path,
                     size_t ptl)
{
    if (strncmp(url, "http://", 7) != 0)
        return -EINVAL;
    const char *h = url + 7;
    const char *slash = strchr(h, '/');
    size_t authlen = slash ? (size_t)(slash - h) : strlen(h);
    const char *colon = memchr(h, ':', authlen);
    size_t hostlen = colon ? (size_t)(colon - h) : authlen;
    if (hostlen == 0 || hostlen >= hl)
        return -EINVAL;
    memcpy(host, h, hostlen);
    host[hostlen] = '\0';
    if (colon) {
        size_t n = authlen - hostlen - 1;
        if (n == 0 || n >= pl)
            return -EINVAL;
        memcpy(port, colon + 1, n);
        port[n] = '\0';
    } else {
        snprintf(port, pl, "80");
    }
    snprintf(path, ptl, "%s", slash ? slash : "");
    return 0;
}

int cli_http_post(const char *url, const char *key, const char *body, buf_t **resp)
{
    char host[256], port[16], base[1024];
    if (parse_url(url, host, sizeof(host), port, sizeof(port), base, sizeof(base)) < 0)
        return -EINVAL;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(host, port, &hints, &ai) != 0)
        return -EHOSTUNREACH;
    int fd = -1, err = -ECONNREFUSED;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        err = -errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0)
        return err;
    buf_t *req = buf_new(512 + strlen(body));
    buf_t *in = buf_new(4096);
    int r = -ENOMEM;
    if (!req || !in)
        goto out;
    r = buf_printf(&req,
                   "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\n",
                   base, host, port, strlen(body));
    if (key)
        r |= buf_printf(&req, "Authorization: Bearer %s\r\n", key);
    r |= buf_printf(&req, "\r\n%s", body);
    if (r)
        goto out;
    for (size_t off = 0; off < req->len;) {
        ssize_t n = write(fd, req->data + off, req->len - off);
        if (n < 0) {
            r = -errno;
            goto out;
        }
        off += (size_t)n;
    }
    char chunk[4096];
    ssize_t n;
    while ((n = read(fd, chunk, sizeof(chunk))) > 0)
        if (buf_append(&in, chunk, (size_t)n) < 0)
            goto out;
    char *hdr_end = strstr(in->data, "\r\n\r\n");
    char *end = NULL;
    long status = strncmp(in->data, "HTTP/1.", 7) == 0 && in->len > 12
                      ? strtol(in->data + 9, &end, 10)
                      : -1;
    if (!hdr_end || !end || *end != ' ' || status < 100 || status > 599) {
        r = -EINVAL;
        goto out;
    }
    buf_t *b = buf_new(in->len);
    if (!b)
        goto out;
    buf_append(&b, hdr_end + 4, in->len - (size_t)(hdr_end + 4 - in->data));
    *resp = b;
    r = (int)status;
out:
    buf_unref(req);
    buf_unref(in);
    close(fd);
    return r;
}
