/* NATS bus names: the bus URL and subject tokens (nats_codec.h). Pure. */
#include "cluster/nats_codec.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int is_host_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
           c == '.' || c == '_';
}

int cluster_nats_url_parse(const char *url, cluster_nats_url_t *out, char *err, size_t errlen)
{
    static const char scheme[] = "nats://";
    memset(out, 0, sizeof(*out));
    out->port = 4222;
#define URL_FAIL(what)                                                                             \
    do {                                                                                           \
        snprintf(err, errlen, "nats URL \"%.200s\": %s (expected nats://host[:port])",             \
                 url ? url : "", what);                                                            \
        return -EINVAL;                                                                            \
    } while (0)
    if (!url || strncmp(url, scheme, sizeof(scheme) - 1) != 0)
        URL_FAIL("the scheme must be nats://");
    const char *s = url + sizeof(scheme) - 1;
    if (strchr(s, '@')) URL_FAIL("credentials are not supported");
    const char *h = s, *he;
    if (*s == '[') {
        h = s + 1;
        he = strchr(h, ']');
        if (!he || he == h) URL_FAIL("an IPv6 address must be written [addr]");
        for (const char *c = h; c < he; c++)
            if (!strchr("0123456789abcdefABCDEF:.", *c))
                URL_FAIL("bad character in the IPv6 address");
        s = he + 1;
    } else {
        he = s;
        while (*he && *he != ':' && *he != '/') {
            if (!is_host_char(*he)) URL_FAIL("bad character in the host");
            he++;
        }
        if (he == h) URL_FAIL("the host is missing");
        s = he;
    }
    if ((size_t)(he - h) >= sizeof(out->host)) URL_FAIL("the host is too long");
    memcpy(out->host, h, (size_t)(he - h));
    out->host[he - h] = '\0';
    if (*s == ':') {
        const char *p = s + 1;
        unsigned long v = 0;
        size_t n = 0;
        for (; p[n] >= '0' && p[n] <= '9' && n < 6; n++)
            v = v * 10 + (unsigned long)(p[n] - '0');
        if (n == 0 || n > 5 || v == 0 || v > 65535)
            URL_FAIL("the port must be a number from 1 to 65535");
        out->port = (int)v;
        s = p + n;
    }
    if (*s == '/') s++;
    if (*s) URL_FAIL("unexpected characters after the host");
#undef URL_FAIL
    return 0;
}

int cluster_nats_url_format(const cluster_nats_url_t *u, char *out, size_t outlen)
{
    int v6 = strchr(u->host, ':') != NULL;
    int n = snprintf(out, outlen, v6 ? "nats://[%s]:%d" : "nats://%s:%d", u->host, u->port);
    return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : n;
}

int cluster_subject_token(const char *id, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!id || !*id) return -EINVAL;
    size_t k = 0;
    for (const unsigned char *c = (const unsigned char *)id; *c; c++) {
        int plain = (*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z') ||
                    (*c >= 'A' && *c <= 'Z') || *c == '-' || *c == '_';
        size_t need = plain ? 1 : 3;
        if (k + need >= outlen) return -ENAMETOOLONG;
        if (plain) {
            out[k++] = (char)*c;
        } else {
            out[k++] = '%';
            out[k++] = hex[*c >> 4];
            out[k++] = hex[*c & 15];
        }
    }
    out[k] = '\0';
    return (int)k;
}
