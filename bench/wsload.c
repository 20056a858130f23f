/* wsload: load generator for pushgate. Opens N WebSocket clients on /websocket,
 * optionally holds them idle, then publishes M push requests over P keep-alive
 * HTTP connections and measures publish-to-deliver latency from the timestamp
 * each push carries in its payload. Loopback only. With an https:// URL every
 * connection (clients and publishers) speaks TLS: wss:// against a TLS node. */
#define _GNU_SOURCE
#include "bench_util.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#define WSL_READ_BUF (256 * 1024)
#define WSL_HANDSHAKE_MAX 4096
#define WSL_MAX_MESSAGE (16u * 1024 * 1024)
#define WSL_HTTP_IN_MAX 16384
#define WSL_MAX_EVENTS 512
#define WSL_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

typedef struct {
    struct sockaddr_in server;
    char host[64]; /* Host header value */
    uint32_t clients;
    const char *session_id;
    const char *client_id_prefix;
    bench_sources_t sources;
    const char *key;
    uint64_t pushes;
    uint32_t publishers;
    uint32_t payload_bytes;
    uint32_t idle_seconds;
    uint32_t threads;
    uint32_t connect_concurrency;
    uint32_t connect_timeout_s;
    uint32_t drain_timeout_s;
    double rate;
    const char *report;
    long server_pid;
    int tls;       /* https:// URL */
    int deflate;   /* offer permessage-deflate and inflate what comes compressed */
    int pad_words; /* pad the payload with words instead of one repeated letter */
} wsl_options_t;

typedef enum { WSL_CONNECTING, WSL_HANDSHAKE, WSL_OPEN, WSL_DONE } wsl_state_t;

/* One WebSocket client. Kept small and buffer-free while idle, like the server
 * side it mirrors: rx only exists while a handshake reply or a partial frame
 * is pending, msg only while a fragmented message is being collected. */
typedef struct {
    int fd;
    uint32_t index;
    uint8_t state;
    uint8_t in_msg;
    uint32_t rx_len;
    uint32_t rx_cap;
    uint8_t *rx;
    uint32_t msg_len;
    uint32_t msg_cap;
    uint8_t *msg;
    SSL *ssl; /* NULL: plain TCP */
} wsl_client_t;

typedef struct {
    pthread_t tid;
    uint32_t id;
    int epfd;
    uint32_t next;     /* next client index this thread starts */
    uint32_t inflight; /* connects and handshakes under way */
    uint32_t concurrency;
    uint64_t rng;
    uint64_t local_deliveries;
    /* Read by the main thread while the run is going to see progress. */
    _Atomic uint64_t deliveries;
    _Atomic uint64_t last_delivery_ns;
    uint64_t error_frames; /* {"type":"error"} answers */
    uint64_t bad_frames;   /* anything else that is not a well-formed push */
    uint64_t pong_drops;
    uint32_t frame_bytes; /* size on the wire of one push frame */
    uint64_t wire_bytes;  /* data frame bytes (headers included) of every delivery */
    uint64_t compressed;  /* deliveries that came compressed (RSV1) */
    z_stream inf;         /* --deflate: one inflater per thread, reset per message */
    int inf_ready;
    uint8_t *inf_buf;
    bench_hist_t hist;
    uint8_t buf[WSL_READ_BUF];
} wsl_thread_t;

typedef enum {
    WSL_PUB_CLOSED,
    WSL_PUB_CONNECTING,
    WSL_PUB_IDLE,
    WSL_PUB_SENDING,
    WSL_PUB_WAITING
} wsl_pub_state_t;

/* One keep-alive HTTP connection that publishes one request at a time. */
typedef struct {
    int fd;
    SSL *ssl; /* NULL: plain TCP */
    wsl_pub_state_t state;
    char *req;
    size_t req_cap;
    size_t req_len;
    size_t req_off;
    int in_body; /* the head of the current reply has been read */
    int status;
    int close_after;
    size_t body_left;
    size_t in_len;
    char in[WSL_HTTP_IN_MAX];
} wsl_pub_t;

typedef struct {
    uint64_t sent;
    uint64_t answered;
    uint64_t accepted; /* 200 or 202 */
    uint64_t errors;   /* other statuses, lost or unparsable replies */
    uint64_t first_ns;
    uint64_t last_answer_ns;
} wsl_pub_stats_t;

static wsl_options_t wsl_opts;
static wsl_client_t *wsl_clients;
static uint64_t wsl_key_seed;
static _Atomic uint32_t wsl_opened;
static _Atomic uint32_t wsl_failed;
static _Atomic uint32_t wsl_closed; /* closed after opening */
static _Atomic int wsl_stopping;
static _Atomic int wsl_said_connect;
static _Atomic int wsl_said_close;
static _Atomic int wsl_said_frame;

/* splitmix64: cheap, good enough for masking keys and handshake nonces,
 * which need to vary, not to be secret. */
static uint64_t wsl_rand(uint64_t *state)
{
    uint64_t z;

    z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Warns once per kind, so that 10k identical failures print one line. */
static void wsl_warn_once(_Atomic int *flag, const char *what, const char *detail, size_t len)
{
    size_t i;
    char clean[160];

    if (atomic_exchange(flag, 1) != 0) return;
    if (len >= sizeof(clean)) len = sizeof(clean) - 1;
    for (i = 0; i < len; i++)
        clean[i] = detail[i] >= 0x20 && detail[i] < 0x7f ? detail[i] : '.';
    clean[len] = '\0';
    fprintf(stderr, "wsload: %s: %s\n", what, clean);
}

static void wsl_warn_errno_once(_Atomic int *flag, const char *what, int errnum)
{
    const char *msg;

    msg = strerror(errnum);
    wsl_warn_once(flag, what, msg, strlen(msg));
}

/* Reports the first close frame a server sends: its code says why (1008 slow
 * consumer, 1001 shutdown, ...), which is the thing to know about a run. */
static void wsl_warn_close(const uint8_t *payload, size_t len)
{
    char text[160];
    int n;

    if (len < 2) {
        wsl_warn_once(&wsl_said_close, "server closed a client", "no code", 7);
        return;
    }
    n = snprintf(text, sizeof(text), "code %u reason \"%.*s\"",
                 (unsigned)((payload[0] << 8) | payload[1]), (int)(len - 2 < 100 ? len - 2 : 100),
                 (const char *)payload + 2);
    wsl_warn_once(&wsl_said_close, "server closed a client", text, (size_t)n);
}

/* The key is derived from the client index so that nothing but the index has
 * to be kept to check the server's Sec-WebSocket-Accept. */
static void wsl_handshake_key(uint32_t index, char key[25])
{
    unsigned char raw[16];
    uint64_t state;
    uint64_t a;
    uint64_t b;

    state = wsl_key_seed ^ index;
    a = wsl_rand(&state);
    b = wsl_rand(&state);
    memcpy(raw, &a, 8);
    memcpy(raw + 8, &b, 8);
    EVP_EncodeBlock((unsigned char *)key, raw, 16);
}

static void wsl_handshake_accept(const char key[25], char accept[29])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen;
    char in[24 + sizeof(WSL_GUID)];

    memcpy(in, key, 24);
    memcpy(in + 24, WSL_GUID, sizeof(WSL_GUID) - 1);
    EVP_Digest(in, 24 + sizeof(WSL_GUID) - 1, md, &mdlen, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)accept, md, (int)mdlen);
}

/* Finds header `name` in an HTTP head and returns its trimmed value, or NULL. */
static const char *wsl_header(const char *head, size_t len, const char *name, size_t *vlen)
{
    const char *line;
    const char *end;
    const char *eol;
    const char *v;
    size_t nlen;

    nlen = strlen(name);
    end = head + len;
    line = memchr(head, '\n', len);
    while (line != NULL && ++line < end) {
        eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL) eol = end;
        if ((size_t)(eol - line) > nlen && line[nlen] == ':' &&
            strncasecmp(line, name, nlen) == 0) {
            v = line + nlen + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            *vlen = (size_t)(eol - v);
            while (*vlen > 0 && (v[*vlen - 1] == '\r' || v[*vlen - 1] == ' '))
                (*vlen)--;
            return v;
        }
        line = eol;
    }
    return NULL;
}

/* Finds `"key"` followed by ':' and returns where its value starts, or NULL.
 * A plain scan, not a JSON parser: the envelope and the payload this tool
 * sends never carry a quoted key name inside a string value. */
static const uint8_t *wsl_json_value(const uint8_t *s, size_t len, const char *qkey)
{
    const uint8_t *end;
    const uint8_t *p;
    size_t klen;

    end = s + len;
    klen = strlen(qkey);
    while (s < end) {
        p = memmem(s, (size_t)(end - s), qkey, klen);
        if (p == NULL) return NULL;
        p += klen;
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
            p++;
        if (p < end && *p == ':') {
            p++;
            while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
                p++;
            return p;
        }
        s = p;
    }
    return NULL;
}

/* Reads the publish timestamp back. It was sent as an integer; a server that
 * re-encodes numbers as reals ("1.5e15") is still understood.
 * Returns 0, or -EINVAL when no number is there. */
static int wsl_json_u64(const uint8_t *p, const uint8_t *end, uint64_t *out)
{
    char tmp[40];
    uint64_t v;
    size_t n;

    v = 0;
    n = 0;
    while (p + n < end && p[n] >= '0' && p[n] <= '9')
        v = v * 10 + (uint64_t)(p[n++] - '0');
    if (n == 0) return -EINVAL;
    if (p + n < end && (p[n] == '.' || p[n] == 'e' || p[n] == 'E')) {
        n = (size_t)(end - p) < sizeof(tmp) - 1 ? (size_t)(end - p) : sizeof(tmp) - 1;
        memcpy(tmp, p, n);
        tmp[n] = '\0';
        v = (uint64_t)strtod(tmp, NULL);
    }
    *out = v;
    return 0;
}

static void wsl_thread_start_connects(wsl_thread_t *t);

/* ---- TLS (--url https://) ---------------------------------------------------- */

static SSL_CTX *wsl_tls_ctx;

/* Completes a TLS handshake on a connected non-blocking socket, waiting in poll():
 * the connect phase is not what wsload measures, so a thread does one at a time.
 * The server's certificate is not verified (a benchmark on loopback).
 * Returns the session or NULL. */
static SSL *wsl_tls_connect(int fd)
{
    SSL *s = SSL_new(wsl_tls_ctx);
    if (s == NULL || SSL_set_fd(s, fd) != 1) {
        SSL_free(s);
        return NULL;
    }
    SSL_set_connect_state(s);
    for (int i = 0; i < 1000; i++) {
        int r = SSL_connect(s);
        if (r == 1) return s;
        int e = SSL_get_error(s, r);
        struct pollfd pfd = {fd, 0, 0};
        if (e == SSL_ERROR_WANT_READ) pfd.events = POLLIN;
        if (e == SSL_ERROR_WANT_WRITE) pfd.events = POLLOUT;
        if (pfd.events == 0 || poll(&pfd, 1, 10000) <= 0) break;
    }
    SSL_free(s);
    return NULL;
}

/* send()/recv() over TLS when ssl is set: -1 with errno EAGAIN when the session
 * wants the socket, 0 on close_notify. */
static ssize_t wsl_send(int fd, SSL *ssl, const void *data, size_t len)
{
    if (ssl == NULL) return send(fd, data, len, MSG_NOSIGNAL);
    int r = SSL_write(ssl, data, (int)len);
    if (r > 0) return r;
    int e = SSL_get_error(ssl, r);
    errno = e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? EAGAIN : EPIPE;
    return -1;
}

static ssize_t wsl_recv(int fd, SSL *ssl, void *data, size_t len)
{
    if (ssl == NULL) return recv(fd, data, len, 0);
    int r = SSL_read(ssl, data, (int)(len > INT32_MAX ? INT32_MAX : len));
    if (r > 0) return r;
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_ZERO_RETURN) return 0;
    errno = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? EAGAIN : ECONNRESET;
    return -1;
}

static void wsl_client_close(wsl_thread_t *t, wsl_client_t *c)
{
    if (c->state == WSL_DONE) return;
    SSL_free(c->ssl);
    c->ssl = NULL;
    close(c->fd);
    c->fd = -1;
    free(c->rx);
    free(c->msg);
    c->rx = NULL;
    c->msg = NULL;
    c->rx_len = c->rx_cap = c->msg_len = c->msg_cap = 0;
    if (c->state == WSL_OPEN) {
        atomic_fetch_add(&wsl_closed, 1);
    } else {
        atomic_fetch_add(&wsl_failed, 1);
        t->inflight--;
    }
    c->state = WSL_DONE;
    if (!atomic_load_explicit(&wsl_stopping, memory_order_relaxed)) wsl_thread_start_connects(t);
}

/* Sends a masked control frame (pong). Control payloads are at most 125
 * bytes, so the frame always fits one small send. */
static void wsl_client_send_control(wsl_thread_t *t, wsl_client_t *c, uint8_t opcode,
                                    const uint8_t *payload, size_t len)
{
    uint8_t frame[2 + 4 + 125];
    uint64_t mask;
    size_t i;

    if (len > 125) {
        t->bad_frames++;
        return;
    }
    mask = wsl_rand(&t->rng);
    frame[0] = (uint8_t)(0x80 | opcode);
    frame[1] = (uint8_t)(0x80 | len);
    memcpy(frame + 2, &mask, 4);
    for (i = 0; i < len; i++)
        frame[6 + i] = payload[i] ^ frame[2 + (i & 3)];
    if (wsl_send(c->fd, c->ssl, frame, 6 + len) != (ssize_t)(6 + len)) t->pong_drops++;
}

static void wsl_client_on_message(wsl_thread_t *t, const uint8_t *m, size_t len, size_t frame_bytes,
                                  uint64_t now)
{
    const uint8_t *end;
    const uint8_t *v;
    uint64_t ts;

    end = m + len;
    v = wsl_json_value(m, len, "\"type\"");
    if (v == NULL || (size_t)(end - v) < 6 || memcmp(v, "\"push\"", 6) != 0) {
        if (v != NULL && (size_t)(end - v) >= 7 && memcmp(v, "\"error\"", 7) == 0)
            t->error_frames++;
        else
            t->bad_frames++;
        wsl_warn_once(&wsl_said_frame, "unexpected message", (const char *)m, len);
        return;
    }
    v = wsl_json_value(m, len, "\"payload\"");
    if (v != NULL) v = wsl_json_value(v, (size_t)(end - v), "\"t\"");
    if (v == NULL || wsl_json_u64(v, end, &ts) != 0) {
        t->bad_frames++;
        wsl_warn_once(&wsl_said_frame, "push without payload.t", (const char *)m, len);
        return;
    }
    if (t->frame_bytes == 0) t->frame_bytes = (uint32_t)frame_bytes;
    t->wire_bytes += frame_bytes;
    bench_hist_add(&t->hist, now > ts ? now - ts : 0);
    t->local_deliveries++;
}

/* Inflates one compressed message (RFC 7692: the 00 00 ff ff tail appended) into
 * t->inf_buf. Returns 0 with *out_len set, or -EPROTO. */
static int wsl_inflate(wsl_thread_t *t, const uint8_t *in, size_t len, size_t *out_len)
{
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    int r;
    int part;

    if (!t->inf_ready) {
        t->inf_buf = malloc(WSL_MAX_MESSAGE);
        if (t->inf_buf == NULL || inflateInit2(&t->inf, -15) != Z_OK) return -EPROTO;
        t->inf_ready = 1;
    } else if (inflateReset(&t->inf) != Z_OK) {
        return -EPROTO;
    }
    t->inf.next_out = t->inf_buf;
    t->inf.avail_out = WSL_MAX_MESSAGE;
    for (part = 0; part < 2; part++) {
        t->inf.next_in = (Bytef *)(uintptr_t)(part ? tail : in);
        t->inf.avail_in = (uInt)(part ? sizeof(tail) : len);
        r = inflate(&t->inf, Z_SYNC_FLUSH);
        if (r == Z_STREAM_END) break;
        if (r != Z_OK && !(r == Z_BUF_ERROR && t->inf.avail_in == 0)) return -EPROTO;
    }
    *out_len = WSL_MAX_MESSAGE - t->inf.avail_out;
    return 0;
}

/* Appends a fragment to the message being collected.
 * Returns 0, -EMSGSIZE or -ENOMEM. */
static int wsl_client_msg_append(wsl_client_t *c, const uint8_t *p, size_t len)
{
    uint8_t *grown;
    size_t cap;

    if (c->msg_len + len > WSL_MAX_MESSAGE) return -EMSGSIZE;
    if (c->msg_len + len > c->msg_cap) {
        cap = (c->msg_len + len) * 2;
        grown = realloc(c->msg, cap);
        if (grown == NULL) return -ENOMEM;
        c->msg = grown;
        c->msg_cap = (uint32_t)cap;
    }
    memcpy(c->msg + c->msg_len, p, len);
    c->msg_len += (uint32_t)len;
    return 0;
}

/* Handles every complete frame in data[0, len).
 * Returns the bytes consumed (a partial frame is left over), or -EPROTO on a
 * frame no server may send, -ECONNRESET on a close frame. */
static ssize_t wsl_client_parse(wsl_thread_t *t, wsl_client_t *c, const uint8_t *data, size_t len,
                                uint64_t now)
{
    const uint8_t *p;
    const uint8_t *pl;
    uint64_t plen;
    size_t off;
    size_t hl;
    uint8_t op;
    int fin;
    int i;

    off = 0;
    while (len - off >= 2) {
        p = data + off;
        fin = p[0] & 0x80;
        op = p[0] & 0x0f;
        /* servers never mask; RSV1 only with permessage-deflate, on a whole message */
        if ((p[1] & 0x80) != 0 || (p[0] & 0x30) != 0) return -EPROTO;
        if ((p[0] & 0x40) != 0 &&
            (!wsl_opts.deflate || !fin || ((p[0] & 0x0f) != 0x1 && (p[0] & 0x0f) != 0x2)))
            return -EPROTO;
        plen = p[1] & 0x7f;
        hl = 2;
        if (plen == 126) {
            if (len - off < 4) break;
            plen = ((uint64_t)p[2] << 8) | p[3];
            hl = 4;
        } else if (plen == 127) {
            if (len - off < 10) break;
            plen = 0;
            for (i = 0; i < 8; i++)
                plen = (plen << 8) | p[2 + i];
            hl = 10;
        }
        if (plen > WSL_MAX_MESSAGE) return -EPROTO;
        if (len - off < hl + plen) break;
        pl = p + hl;
        switch (op) {
        case 0x1:
        case 0x2:
            if (c->in_msg) return -EPROTO;
            if (p[0] & 0x40) {
                size_t n = 0;
                if (wsl_inflate(t, pl, (size_t)plen, &n) != 0) return -EPROTO;
                t->compressed++;
                wsl_client_on_message(t, t->inf_buf, n, hl + (size_t)plen, now);
            } else if (fin) {
                wsl_client_on_message(t, pl, (size_t)plen, hl + (size_t)plen, now);
            } else {
                c->in_msg = 1;
                c->msg_len = 0;
                if (wsl_client_msg_append(c, pl, (size_t)plen) != 0) return -EPROTO;
            }
            break;
        case 0x0:
            if (!c->in_msg || wsl_client_msg_append(c, pl, (size_t)plen) != 0) return -EPROTO;
            if (fin) {
                wsl_client_on_message(t, c->msg, c->msg_len, 0, now);
                c->in_msg = 0;
                free(c->msg);
                c->msg = NULL;
                c->msg_len = c->msg_cap = 0;
            }
            break;
        case 0x8:
            wsl_warn_close(pl, (size_t)plen);
            return -ECONNRESET;
        case 0x9:
            wsl_client_send_control(t, c, 0xA, pl, (size_t)plen);
            break;
        case 0xA:
            break;
        default:
            return -EPROTO;
        }
        off += hl + (size_t)plen;
    }
    return (ssize_t)off;
}

/* Feeds freshly read bytes to the frame parser, joining them to a partial
 * frame carried from the previous read when there is one.
 * Returns 0, or a negative errno after which the client must be closed. */
static int wsl_client_feed(wsl_thread_t *t, wsl_client_t *c, const uint8_t *data, size_t len,
                           uint64_t now)
{
    uint8_t *grown;
    ssize_t used;
    size_t rest;

    if (c->rx_len > 0) {
        if (c->rx_len + len > c->rx_cap) {
            grown = realloc(c->rx, c->rx_len + len);
            if (grown == NULL) return -ENOMEM;
            c->rx = grown;
            c->rx_cap = (uint32_t)(c->rx_len + len);
        }
        memcpy(c->rx + c->rx_len, data, len);
        c->rx_len += (uint32_t)len;
        data = c->rx;
        len = c->rx_len;
    }
    used = wsl_client_parse(t, c, data, len, now);
    if (used < 0) return (int)used;
    rest = len - (size_t)used;
    if (rest == 0) {
        free(c->rx);
        c->rx = NULL;
        c->rx_len = c->rx_cap = 0;
    } else if (data == c->rx) {
        memmove(c->rx, c->rx + used, rest);
        c->rx_len = (uint32_t)rest;
    } else {
        c->rx = malloc(rest);
        if (c->rx == NULL) return -ENOMEM;
        memcpy(c->rx, data + used, rest);
        c->rx_len = c->rx_cap = (uint32_t)rest;
    }
    return 0;
}

/* Checks the 101 reply. Returns the head's length once it is complete and
 * valid, 0 while more bytes are needed, or -ECONNREFUSED on any other reply. */
static ssize_t wsl_client_check_handshake(wsl_client_t *c)
{
    const char *head;
    const char *eoh;
    const char *v;
    char key[25];
    char accept[29];
    size_t vlen;
    size_t hlen;

    head = (const char *)c->rx;
    eoh = memmem(head, c->rx_len, "\r\n\r\n", 4);
    if (eoh == NULL) return c->rx_len >= WSL_HANDSHAKE_MAX ? -ECONNREFUSED : 0;
    hlen = (size_t)(eoh - head) + 4;
    if (hlen < 13 || memcmp(head, "HTTP/1.1 101 ", 13) != 0) {
        wsl_warn_once(&wsl_said_connect, "handshake refused", head, c->rx_len);
        return -ECONNREFUSED;
    }
    wsl_handshake_key(c->index, key);
    wsl_handshake_accept(key, accept);
    v = wsl_header(head, hlen, "Sec-WebSocket-Accept", &vlen);
    if (v == NULL || vlen != 28 || memcmp(v, accept, 28) != 0) {
        wsl_warn_once(&wsl_said_connect, "bad Sec-WebSocket-Accept", head, hlen);
        return -ECONNREFUSED;
    }
    v = wsl_header(head, hlen, "Sec-WebSocket-Extensions", &vlen);
    if (wsl_opts.deflate &&
        (v == NULL || vlen < 18 || strncasecmp(v, "permessage-deflate", 18) != 0)) {
        wsl_warn_once(&wsl_said_connect, "permessage-deflate not negotiated", head, hlen);
        return -ECONNREFUSED;
    }
    return (ssize_t)hlen;
}

static void wsl_client_on_handshake_readable(wsl_thread_t *t, wsl_client_t *c)
{
    ssize_t n;
    ssize_t hlen;
    size_t rest;

    n = wsl_recv(c->fd, c->ssl, c->rx + c->rx_len, c->rx_cap - c->rx_len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
        if (n == 0)
            wsl_warn_once(&wsl_said_connect, "connection lost during handshake", "EOF", 3);
        else
            wsl_warn_errno_once(&wsl_said_connect, "connection lost during handshake", errno);
        wsl_client_close(t, c);
        return;
    }
    c->rx_len += (uint32_t)n;
    hlen = wsl_client_check_handshake(c);
    if (hlen == 0) return;
    if (hlen < 0) {
        wsl_client_close(t, c);
        return;
    }
    c->state = WSL_OPEN;
    t->inflight--;
    atomic_fetch_add(&wsl_opened, 1);
    /* Frames that came with the 101 go through the normal path. */
    rest = c->rx_len - (size_t)hlen;
    memcpy(t->buf, c->rx + hlen, rest);
    free(c->rx);
    c->rx = NULL;
    c->rx_len = c->rx_cap = 0;
    if (rest > 0 && wsl_client_feed(t, c, t->buf, rest, bench_now_ns()) != 0)
        wsl_client_close(t, c);
    wsl_thread_start_connects(t);
}

static void wsl_client_on_connected(wsl_thread_t *t, wsl_client_t *c)
{
    struct epoll_event ev;
    socklen_t elen;
    char key[25];
    int soerr;
    int n;

    elen = sizeof(soerr);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &elen) != 0) soerr = errno;
    if (soerr != 0) {
        wsl_warn_errno_once(&wsl_said_connect, "connect failed", soerr);
        wsl_client_close(t, c);
        return;
    }
    if (wsl_opts.tls && (c->ssl = wsl_tls_connect(c->fd)) == NULL) {
        wsl_warn_once(&wsl_said_connect, "TLS handshake failed", "", 0);
        wsl_client_close(t, c);
        return;
    }
    wsl_handshake_key(c->index, key);
    n = snprintf((char *)t->buf, WSL_HANDSHAKE_MAX,
                 "GET /websocket?sessionId=%s&clientId=%s%" PRIu32 " HTTP/1.1\r\n"
                 "Host: %s\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\n%s\r\n",
                 wsl_opts.session_id, wsl_opts.client_id_prefix, c->index, wsl_opts.host, key,
                 wsl_opts.deflate ? "Sec-WebSocket-Extensions: permessage-deflate; "
                                    "client_no_context_takeover\r\n"
                                  : "");
    /* A fresh socket's send buffer takes a few hundred bytes whole. */
    if (wsl_send(c->fd, c->ssl, t->buf, (size_t)n) != n) {
        wsl_client_close(t, c);
        return;
    }
    c->rx = malloc(WSL_HANDSHAKE_MAX);
    if (c->rx == NULL) {
        wsl_client_close(t, c);
        return;
    }
    c->rx_cap = WSL_HANDSHAKE_MAX;
    c->state = WSL_HANDSHAKE;
    ev.events = EPOLLIN;
    ev.data.ptr = c;
    epoll_ctl(t->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void wsl_client_on_readable(wsl_thread_t *t, wsl_client_t *c)
{
    ssize_t n;
    int err;

    for (;;) {
        n = wsl_recv(c->fd, c->ssl, t->buf, sizeof(t->buf));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        if (n <= 0) {
            wsl_client_close(t, c);
            break;
        }
        err = wsl_client_feed(t, c, t->buf, (size_t)n, bench_now_ns());
        if (err != 0) {
            if (err == -EPROTO) t->bad_frames++;
            wsl_client_close(t, c);
            break;
        }
        /* a TLS read returns one record: go on until the session wants the socket */
        if (c->ssl == NULL && (size_t)n < sizeof(t->buf)) break;
    }
}

/* Starts connects until this thread's share of the handshake concurrency is
 * in use: opening 10k sockets at once overflows the listen backlog, and the
 * dropped SYNs would each cost a one-second retransmit. */
static void wsl_thread_start_connects(wsl_thread_t *t)
{
    struct epoll_event ev;
    const struct in_addr *src;
    wsl_client_t *c;
    int fd;

    while (t->inflight < t->concurrency && t->next < wsl_opts.clients) {
        c = &wsl_clients[t->next];
        c->index = t->next;
        t->next += wsl_opts.threads;
        src = NULL;
        if (wsl_opts.sources.count > 0)
            src = &wsl_opts.sources.addrs[c->index % wsl_opts.sources.count];
        fd = bench_connect(&wsl_opts.server, src, 1);
        if (fd < 0) {
            wsl_warn_errno_once(&wsl_said_connect, "connect failed", -fd);
            c->state = WSL_DONE;
            atomic_fetch_add(&wsl_failed, 1);
            continue;
        }
        c->fd = fd;
        c->state = WSL_CONNECTING;
        ev.events = EPOLLOUT;
        ev.data.ptr = c;
        if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close(fd);
            c->state = WSL_DONE;
            atomic_fetch_add(&wsl_failed, 1);
            continue;
        }
        t->inflight++;
    }
}

static void *wsl_thread_run(void *arg)
{
    struct epoll_event evs[WSL_MAX_EVENTS];
    wsl_thread_t *t;
    wsl_client_t *c;
    uint64_t before;
    int n;
    int i;

    t = arg;
    wsl_thread_start_connects(t);
    while (!atomic_load_explicit(&wsl_stopping, memory_order_relaxed)) {
        n = epoll_wait(t->epfd, evs, WSL_MAX_EVENTS, 50);
        before = t->local_deliveries;
        for (i = 0; i < n; i++) {
            c = evs[i].data.ptr;
            switch (c->state) {
            case WSL_CONNECTING:
                wsl_client_on_connected(t, c);
                break;
            case WSL_HANDSHAKE:
                wsl_client_on_handshake_readable(t, c);
                break;
            case WSL_OPEN:
                wsl_client_on_readable(t, c);
                break;
            default:
                break;
            }
        }
        /* Progress is published once per wakeup, not once per delivery. */
        if (t->local_deliveries != before) {
            atomic_store_explicit(&t->last_delivery_ns, bench_now_ns(), memory_order_relaxed);
            atomic_store_explicit(&t->deliveries, t->local_deliveries, memory_order_release);
        }
    }
    return NULL;
}

static uint64_t wsl_total_deliveries(wsl_thread_t *threads)
{
    uint64_t sum;
    uint32_t i;

    sum = 0;
    for (i = 0; i < wsl_opts.threads; i++)
        sum += atomic_load_explicit(&threads[i].deliveries, memory_order_acquire);
    return sum;
}

static void wsl_sleep_ms(unsigned ms)
{
    usleep(ms * 1000u);
}

/* ---- publishers ---------------------------------------------------------- */

static int wsl_pub_connect(wsl_pub_t *p, int epfd)
{
    struct epoll_event ev;
    int fd;

    fd = bench_connect(&wsl_opts.server, NULL, 1);
    if (fd < 0) return fd;
    p->fd = fd;
    p->state = WSL_PUB_CONNECTING;
    p->in_len = 0;
    p->in_body = 0;
    ev.events = EPOLLOUT;
    ev.data.ptr = p;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close(fd);
        p->state = WSL_PUB_CLOSED;
        return -errno;
    }
    return 0;
}

static void wsl_pub_close(wsl_pub_t *p, wsl_pub_stats_t *st)
{
    if (p->state == WSL_PUB_CLOSED) return;
    SSL_free(p->ssl);
    p->ssl = NULL;
    close(p->fd);
    if (p->state == WSL_PUB_SENDING || p->state == WSL_PUB_WAITING) {
        st->answered++; /* the request is lost; it counts as an error */
        st->errors++;
    }
    p->state = WSL_PUB_CLOSED;
}

static void wsl_pub_want(wsl_pub_t *p, int epfd, uint32_t events)
{
    struct epoll_event ev;

    ev.events = events;
    ev.data.ptr = p;
    epoll_ctl(epfd, EPOLL_CTL_MOD, p->fd, &ev);
}

/* Writes what is left of the current request. Returns 0 or a negative errno. */
static int wsl_pub_flush(wsl_pub_t *p, int epfd)
{
    ssize_t n;

    while (p->req_off < p->req_len) {
        n = wsl_send(p->fd, p->ssl, p->req + p->req_off, p->req_len - p->req_off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
            if (p->state != WSL_PUB_SENDING) wsl_pub_want(p, epfd, EPOLLOUT);
            p->state = WSL_PUB_SENDING;
            return 0;
        }
        if (n < 0) return -errno;
        p->req_off += (size_t)n;
    }
    if (p->state == WSL_PUB_SENDING) wsl_pub_want(p, epfd, EPOLLIN);
    p->state = WSL_PUB_WAITING;
    return 0;
}

/* Builds one push request whose serviceRequest is exactly payload_bytes long
 * (when that is above the fixed overhead) and stamps it as late as possible,
 * right before it is written. body has room for payload_bytes + 256.
 * Returns 0 or a negative errno. */
static int wsl_pub_send(wsl_pub_t *p, int epfd, const char *pad, char *body)
{
    int head_len;
    int pad_len;
    int body_len;
    uint64_t now;

    now = bench_now_ns();
    head_len = snprintf(NULL, 0, "{\"t\":%" PRIu64 ",\"pad\":\"", now);
    pad_len = (int)wsl_opts.payload_bytes - head_len - 2; /* 2: the closing "} */
    if (pad_len < 0) pad_len = 0;
    body_len = snprintf(body, wsl_opts.payload_bytes + 256,
                        "{\"serviceRequest\":{\"t\":%" PRIu64 ",\"pad\":\"%.*s\"},"
                        "\"options\":{\"report\":\"%s\"}}",
                        now, pad_len, pad, wsl_opts.report);
    p->req_len = (size_t)snprintf(p->req, p->req_cap,
                                  "POST /api/push-requests HTTP/1.1\r\n"
                                  "Host: %s\r\n"
                                  "Authorization: Bearer %s\r\n"
                                  "Content-Type: application/json\r\n"
                                  "Content-Length: %d\r\n\r\n%s",
                                  wsl_opts.host, wsl_opts.key, body_len, body);
    if (p->req_len >= p->req_cap) return -ENOBUFS;
    p->req_off = 0;
    p->state = WSL_PUB_IDLE;
    return wsl_pub_flush(p, epfd);
}

/* Consumes one reply from p->in. The head is parsed in place; the body is
 * counted and dropped as it comes, so a `full` report to 10k clients (a few
 * MiB) needs no buffer. Returns 1 when a reply is complete and the connection
 * stays usable, 0 when more bytes are needed, -ECONNRESET when the server asked
 * to close, -EPROTO when the reply cannot be read. */
static int wsl_pub_parse_reply(wsl_pub_t *p, wsl_pub_stats_t *st)
{
    const char *eoh;
    const char *v;
    size_t hlen;
    size_t vlen;
    size_t take;
    uint64_t clen;
    char num[24];

    if (!p->in_body) {
        eoh = memmem(p->in, p->in_len, "\r\n\r\n", 4);
        if (eoh == NULL) return p->in_len >= sizeof(p->in) ? -EPROTO : 0;
        hlen = (size_t)(eoh - p->in) + 4;
        if (hlen < 12 || memcmp(p->in, "HTTP/1.", 7) != 0) return -EPROTO;
        p->status = atoi(p->in + 9);
        v = wsl_header(p->in, hlen, "Content-Length", &vlen);
        if (v == NULL || vlen == 0 || vlen >= sizeof(num))
            return -EPROTO; /* chunked replies are not expected from this endpoint */
        memcpy(num, v, vlen);
        num[vlen] = '\0';
        if (bench_parse_u64(num, UINT32_MAX, &clen) != 0) return -EPROTO;
        v = wsl_header(p->in, hlen, "Connection", &vlen);
        p->close_after = v != NULL && vlen == 5 && strncasecmp(v, "close", 5) == 0;
        p->body_left = (size_t)clen;
        p->in_body = 1;
        memmove(p->in, p->in + hlen, p->in_len - hlen);
        p->in_len -= hlen;
        if (p->status != 200 && p->status != 202 && st->errors == 0)
            fprintf(stderr, "wsload: push request answered %d: %.*s\n", p->status,
                    (int)(p->in_len < p->body_left ? p->in_len : p->body_left), p->in);
    }
    take = p->in_len < p->body_left ? p->in_len : p->body_left;
    memmove(p->in, p->in + take, p->in_len - take);
    p->in_len -= take;
    p->body_left -= take;
    if (p->body_left > 0) return 0;
    p->in_body = 0;
    st->answered++;
    st->last_answer_ns = bench_now_ns();
    if (p->status == 200 || p->status == 202)
        st->accepted++;
    else
        st->errors++;
    p->state = WSL_PUB_IDLE;
    return p->close_after ? -ECONNRESET : 1;
}

static void wsl_pub_on_event(wsl_pub_t *p, int epfd, wsl_pub_stats_t *st)
{
    socklen_t elen;
    ssize_t n;
    int soerr;
    int r;

    switch (p->state) {
    case WSL_PUB_CONNECTING:
        elen = sizeof(soerr);
        if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &soerr, &elen) != 0 || soerr != 0) {
            wsl_pub_close(p, st);
            return;
        }
        if (wsl_opts.tls && (p->ssl = wsl_tls_connect(p->fd)) == NULL) {
            wsl_pub_close(p, st);
            return;
        }
        wsl_pub_want(p, epfd, EPOLLIN);
        p->state = WSL_PUB_IDLE;
        return;
    case WSL_PUB_SENDING:
        if (wsl_pub_flush(p, epfd) != 0) wsl_pub_close(p, st);
        return;
    case WSL_PUB_WAITING:
    case WSL_PUB_IDLE:
        n = wsl_recv(p->fd, p->ssl, p->in + p->in_len, sizeof(p->in) - p->in_len);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (n <= 0) {
            wsl_pub_close(p, st);
            return;
        }
        p->in_len += (size_t)n;
        do
            r = wsl_pub_parse_reply(p, st);
        while (r == 1 && p->in_len > 0);
        if (r < 0) {
            if (r == -EPROTO) fprintf(stderr, "wsload: unreadable reply to a push request\n");
            wsl_pub_close(p, st);
        }
        return;
    default:
        return;
    }
}

/* Publishes every push, at most `publishers` in flight and at most `rate` a
 * second when a rate is set. Returns 0, or a negative errno when publishing
 * had to stop (no answer for drain_timeout seconds, no connection). */
static int wsl_publish(wsl_pub_stats_t *st)
{
    struct epoll_event evs[64];
    wsl_pub_t *pubs;
    uint64_t progress_ns;
    uint64_t now;
    uint64_t due;
    char *pad;
    char *body;
    uint32_t i;
    int timeout;
    int epfd;
    int err;
    int n;

    err = 0;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    pubs = calloc(wsl_opts.publishers, sizeof(*pubs));
    pad = malloc(wsl_opts.payload_bytes + 1);
    body = malloc(wsl_opts.payload_bytes + 256);
    if (epfd < 0 || pubs == NULL || pad == NULL || body == NULL) {
        err = -ENOMEM;
        goto done;
    }
    memset(pad, 'x', wsl_opts.payload_bytes);
    if (wsl_opts.pad_words) {
        /* text-like content, so compression ratios mean something */
        static const char *words[] = {"order",  "status", "shipped", "device",  "alpha",
                                      "temp",   "22.5",   "ok",      "user",    "4711",
                                      "update", "region", "eu-west", "battery", "low",
                                      "queue",  "retry",  "payload", "sensor",  "id"};
        uint64_t x = 88172645463325252ull;
        size_t at = 0;
        while (at < wsl_opts.payload_bytes) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            const char *w = words[x % 20];
            size_t wl = strlen(w);
            for (size_t j = 0; j <= wl && at < wsl_opts.payload_bytes; j++)
                pad[at++] = j < wl ? w[j] : ' ';
        }
    }
    pad[wsl_opts.payload_bytes] = '\0';
    for (i = 0; i < wsl_opts.publishers; i++) {
        pubs[i].req_cap = wsl_opts.payload_bytes + strlen(wsl_opts.key) + 512;
        pubs[i].req = malloc(pubs[i].req_cap);
        if (pubs[i].req == NULL) {
            err = -ENOMEM;
            goto done;
        }
    }
    progress_ns = bench_now_ns();
    while (st->answered < wsl_opts.pushes) {
        now = bench_now_ns();
        timeout = 100;
        for (i = 0; i < wsl_opts.publishers && st->sent < wsl_opts.pushes; i++) {
            if (pubs[i].state == WSL_PUB_CLOSED) {
                if (wsl_pub_connect(&pubs[i], epfd) != 0) continue;
            }
            if (pubs[i].state != WSL_PUB_IDLE) continue;
            if (wsl_opts.rate > 0 && st->first_ns != 0) {
                due = st->first_ns + (uint64_t)((double)st->sent * 1e9 / wsl_opts.rate);
                if (due > now) {
                    timeout = (int)((due - now) / 1000000u);
                    break;
                }
            }
            if (st->first_ns == 0) st->first_ns = bench_now_ns();
            st->sent++;
            if (wsl_pub_send(&pubs[i], epfd, pad, body) != 0) wsl_pub_close(&pubs[i], st);
        }
        n = epoll_wait(epfd, evs, 64, timeout);
        for (i = 0; i < (uint32_t)(n > 0 ? n : 0); i++)
            wsl_pub_on_event(evs[i].data.ptr, epfd, st);
        now = bench_now_ns();
        if (st->last_answer_ns > progress_ns) progress_ns = st->last_answer_ns;
        if (now - progress_ns > (uint64_t)wsl_opts.drain_timeout_s * 1000000000u) {
            fprintf(stderr, "wsload: no answer to push requests for %us, giving up\n",
                    wsl_opts.drain_timeout_s);
            err = -ETIMEDOUT;
            break;
        }
    }

done:
    if (pubs != NULL) {
        for (i = 0; i < wsl_opts.publishers; i++) {
            if (pubs[i].state != WSL_PUB_CLOSED) {
                SSL_free(pubs[i].ssl);
                close(pubs[i].fd);
            }
            free(pubs[i].req);
        }
    }
    free(pubs);
    free(pad);
    free(body);
    if (epfd >= 0) close(epfd);
    return err;
}

/* ---- main ---------------------------------------------------------------- */

static void wsl_usage(FILE *f)
{
    fputs("usage: wsload [options]\n"
          "  --url URL                 server, http://127.0.0.1:8080 (loopback only);\n"
          "                            https://... speaks TLS (wss://) on every connection\n"
          "  --clients N               WebSocket clients to open (1000)\n"
          "  --session-id S            sessionId of every client (bench)\n"
          "  --client-id-prefix P      clientId is P<index> (bench-)\n"
          "  --sources A,B,...         loopback source addresses, used round-robin\n"
          "  --sources-count K         use 127.0.0.1 .. 127.0.0.K as sources (default: one\n"
          "                            per 25000 clients beyond the first 25000)\n"
          "  --threads T               client threads (1)\n"
          "  --connect-concurrency C   handshakes in flight at once (256)\n"
          "  --connect-timeout S       give up opening clients after S seconds (60)\n"
          "  --idle-seconds S          hold the clients idle S seconds before pushing (0)\n"
          "  --server-pid PID          report the server's VmRSS before and after connecting,\n"
          "                            and its CPU time and write syscalls while pushing\n"
          "  --key KEY                 publish API key (bench-key)\n"
          "  --pushes M                push requests to publish (0)\n"
          "  --publishers P            concurrent keep-alive HTTP publishers (1)\n"
          "  --rate R                  at most R push requests a second (0: no limit)\n"
          "  --payload-bytes B         size of the serviceRequest JSON (100)\n"
          "  --report none|summary|full  options.report of every push request (none)\n"
          "  --drain-timeout S         stop waiting after S seconds without progress (10)\n"
          "  --deflate                 offer permessage-deflate (client_no_context_takeover)\n"
          "                            and inflate compressed frames; refuse a server that\n"
          "                            does not accept it\n"
          "  --pad-words               pad payloads with pseudo-random words, not 'xxx...'\n",
          f);
}

/* Characters that go into the query string as they are. */
static int wsl_url_safe(const char *s)
{
    for (; *s != '\0'; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.' || *s == '~'))
            return 0;
    }
    return 1;
}

static int wsl_parse_args(int argc, char **argv)
{
    static const struct option longopts[] = {{"url", required_argument, NULL, 'u'},
                                             {"clients", required_argument, NULL, 'c'},
                                             {"session-id", required_argument, NULL, 's'},
                                             {"client-id-prefix", required_argument, NULL, 'x'},
                                             {"sources", required_argument, NULL, 'S'},
                                             {"sources-count", required_argument, NULL, 'K'},
                                             {"threads", required_argument, NULL, 'T'},
                                             {"connect-concurrency", required_argument, NULL, 'C'},
                                             {"connect-timeout", required_argument, NULL, 'W'},
                                             {"idle-seconds", required_argument, NULL, 'i'},
                                             {"server-pid", required_argument, NULL, 'r'},
                                             {"key", required_argument, NULL, 'k'},
                                             {"pushes", required_argument, NULL, 'm'},
                                             {"publishers", required_argument, NULL, 'p'},
                                             {"rate", required_argument, NULL, 'R'},
                                             {"payload-bytes", required_argument, NULL, 'b'},
                                             {"report", required_argument, NULL, 'o'},
                                             {"drain-timeout", required_argument, NULL, 'd'},
                                             {"deflate", no_argument, NULL, 'z'},
                                             {"pad-words", no_argument, NULL, 'w'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *url;
    uint64_t v;
    int idx;
    int opt;
    int err;

    url = "http://127.0.0.1:8080";
    wsl_opts.clients = 1000;
    wsl_opts.session_id = "bench";
    wsl_opts.client_id_prefix = "bench-";
    wsl_opts.threads = 1;
    wsl_opts.connect_concurrency = 256;
    wsl_opts.connect_timeout_s = 60;
    wsl_opts.key = "bench-key";
    wsl_opts.publishers = 1;
    wsl_opts.payload_bytes = 100;
    wsl_opts.report = "none";
    wsl_opts.drain_timeout_s = 10;
    err = 0;
    idx = 0;
    while ((opt = getopt_long(argc, argv, "h", longopts, &idx)) != -1) {
        v = 0;
        switch (opt) {
        case 'u':
            url = optarg;
            break;
        case 's':
            wsl_opts.session_id = optarg;
            break;
        case 'x':
            wsl_opts.client_id_prefix = optarg;
            break;
        case 'k':
            wsl_opts.key = optarg;
            break;
        case 'o':
            wsl_opts.report = optarg;
            break;
        case 'S':
            bench_sources_free(&wsl_opts.sources);
            err = bench_sources_parse(&wsl_opts.sources, optarg);
            break;
        case 'K':
            bench_sources_free(&wsl_opts.sources);
            err = bench_parse_u64(optarg, 254, &v);
            if (err == 0) err = bench_sources_make(&wsl_opts.sources, (size_t)v);
            break;
        case 'R':
            wsl_opts.rate = strtod(optarg, NULL);
            err = wsl_opts.rate >= 0 ? 0 : -EINVAL;
            break;
        case 'r':
            err = bench_parse_u64(optarg, INT32_MAX, &v);
            wsl_opts.server_pid = (long)v;
            break;
        case 'm':
            err = bench_parse_u64(optarg, UINT32_MAX, &wsl_opts.pushes);
            break;
        case 'c':
        case 'T':
        case 'C':
        case 'W':
        case 'i':
        case 'p':
        case 'b':
        case 'd':
            err = bench_parse_u64(optarg, 16u * 1024 * 1024, &v);
            if (err == 0 && v == 0 && opt != 'i') err = -EINVAL;
            if (opt == 'c')
                wsl_opts.clients = (uint32_t)v;
            else if (opt == 'T')
                wsl_opts.threads = (uint32_t)v;
            else if (opt == 'C')
                wsl_opts.connect_concurrency = (uint32_t)v;
            else if (opt == 'W')
                wsl_opts.connect_timeout_s = (uint32_t)v;
            else if (opt == 'i')
                wsl_opts.idle_seconds = (uint32_t)v;
            else if (opt == 'p')
                wsl_opts.publishers = (uint32_t)v;
            else if (opt == 'b')
                wsl_opts.payload_bytes = (uint32_t)v;
            else
                wsl_opts.drain_timeout_s = (uint32_t)v;
            break;
        case 'z':
            wsl_opts.deflate = 1;
            break;
        case 'w':
            wsl_opts.pad_words = 1;
            break;
        case 'h':
            wsl_usage(stdout);
            exit(0);
        default:
            wsl_usage(stderr);
            return -EINVAL;
        }
        if (err != 0) {
            fprintf(stderr, "wsload: bad value for --%s: %s%s\n", longopts[idx].name, optarg,
                    err == -EPERM ? " (loopback addresses only)" : "");
            return err;
        }
    }
    if (optind != argc) {
        wsl_usage(stderr);
        return -EINVAL;
    }
    char plain_url[256];
    if (strncmp(url, "https://", 8) == 0) {
        /* the same address, TLS on top */
        wsl_opts.tls = 1;
        snprintf(plain_url, sizeof(plain_url), "http://%s", url + 8);
        url = plain_url;
        wsl_tls_ctx = SSL_CTX_new(TLS_client_method());
        if (wsl_tls_ctx == NULL) return -ENOMEM;
        SSL_CTX_set_verify(wsl_tls_ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_mode(wsl_tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                          SSL_MODE_RELEASE_BUFFERS);
    }
    err = bench_parse_url(url, &wsl_opts.server);
    if (err != 0) {
        fprintf(stderr, "wsload: --url must be http(s)://<127.x.y.z>:<port>, got %s\n", url);
        return err;
    }
    snprintf(wsl_opts.host, sizeof(wsl_opts.host), "%.*s", (int)strcspn(url + 7, "/"), url + 7);
    if (!wsl_url_safe(wsl_opts.session_id) || !wsl_url_safe(wsl_opts.client_id_prefix)) {
        fprintf(stderr, "wsload: --session-id and --client-id-prefix take [A-Za-z0-9._~-]\n");
        return -EINVAL;
    }
    if (strcmp(wsl_opts.report, "none") != 0 && strcmp(wsl_opts.report, "summary") != 0 &&
        strcmp(wsl_opts.report, "full") != 0) {
        fprintf(stderr, "wsload: --report must be none, summary or full\n");
        return -EINVAL;
    }
    if (wsl_opts.threads > wsl_opts.clients) wsl_opts.threads = wsl_opts.clients;
    if (bench_sources_default(&wsl_opts.sources, wsl_opts.clients) != 0) {
        fprintf(stderr, "wsload: too many clients for 127.0.0.1 .. 127.0.0.254\n");
        return -EINVAL;
    }
    return 0;
}

/* What the server and this process have used so far; negative where the
 * value cannot be read (no --server-pid, /proc unavailable). */
typedef struct {
    double server_cpu_s;
    double self_cpu_s;
    long server_writes;
} wsl_usage_t;

static wsl_usage_t wsl_usage_sample(void)
{
    wsl_usage_t u;

    u.server_cpu_s = wsl_opts.server_pid > 0 ? bench_cpu_s(wsl_opts.server_pid) : -1;
    u.server_writes = wsl_opts.server_pid > 0 ? bench_write_syscalls(wsl_opts.server_pid) : -1;
    u.self_cpu_s = bench_cpu_s(getpid());
    return u;
}

static double wsl_ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

int main(int argc, char **argv)
{
    wsl_pub_stats_t pub;
    wsl_thread_t *threads;
    bench_hist_t *hist;
    uint64_t t_start;
    uint64_t t_open;
    uint64_t deadline;
    uint64_t expected;
    uint64_t delivered;
    uint64_t progress;
    uint64_t progress_ns;
    uint64_t last_ns;
    uint64_t v;
    uint64_t error_frames;
    uint64_t bad_frames;
    uint64_t pong_drops;
    uint32_t frame_bytes;
    uint64_t wire_bytes;
    uint64_t compressed;
    uint32_t alive;
    uint32_t i;
    long rss_before;
    long rss_after;
    long slab_before;
    long slab_after;
    long limit;
    double window_s;
    double rate;
    double server_cpu;  /* CPU seconds spent while pushes were delivered */
    long server_writes; /* the server's write syscalls meanwhile */
    wsl_usage_t usage_before;
    wsl_usage_t usage_after;
    double self_cpu;
    int publish_err;
    int err;

    if (wsl_parse_args(argc, argv) != 0) return 2;
    signal(SIGPIPE, SIG_IGN);
    limit = bench_raise_nofile((long)wsl_opts.clients + wsl_opts.publishers + 64);
    if (limit < (long)wsl_opts.clients + wsl_opts.publishers + 16) {
        fprintf(stderr, "wsload: RLIMIT_NOFILE is %ld, too low for %u clients\n", limit,
                wsl_opts.clients);
        return 1;
    }
    wsl_key_seed = bench_now_ns() ^ ((uint64_t)getpid() << 32);
    wsl_clients = calloc(wsl_opts.clients, sizeof(*wsl_clients));
    threads = calloc(wsl_opts.threads, sizeof(*threads));
    hist = calloc(1, sizeof(*hist));
    if (wsl_clients == NULL || threads == NULL || hist == NULL) {
        fprintf(stderr, "wsload: out of memory\n");
        return 1;
    }
    rss_before = wsl_opts.server_pid > 0 ? bench_rss_kb(wsl_opts.server_pid) : -1;
    slab_before = bench_meminfo_kb("Slab");

    t_start = bench_now_ns();
    for (i = 0; i < wsl_opts.threads; i++) {
        threads[i].id = i;
        threads[i].next = i;
        threads[i].rng = wsl_key_seed + i;
        threads[i].concurrency =
            (wsl_opts.connect_concurrency + wsl_opts.threads - 1) / wsl_opts.threads;
        threads[i].epfd = epoll_create1(EPOLL_CLOEXEC);
        if (threads[i].epfd < 0 ||
            pthread_create(&threads[i].tid, NULL, wsl_thread_run, &threads[i]) != 0) {
            fprintf(stderr, "wsload: cannot start thread %u\n", i);
            return 1;
        }
    }

    /* Phase 1: open every client (or fail it) before anything is pushed. */
    deadline = t_start + (uint64_t)wsl_opts.connect_timeout_s * 1000000000u;
    while (atomic_load(&wsl_opened) + atomic_load(&wsl_failed) < wsl_opts.clients &&
           bench_now_ns() < deadline)
        wsl_sleep_ms(5);
    t_open = bench_now_ns();
    fprintf(stderr, "wsload: %u of %u clients open in %.3f s (%u failed)\n",
            atomic_load(&wsl_opened), wsl_opts.clients, (double)(t_open - t_start) / 1e9,
            atomic_load(&wsl_failed));

    /* Phase 2: hold them idle; the client threads keep answering pings. */
    if (wsl_opts.idle_seconds > 0 || wsl_opts.server_pid > 0)
        wsl_sleep_ms(wsl_opts.idle_seconds > 0 ? wsl_opts.idle_seconds * 1000u : 1000u);
    rss_after = wsl_opts.server_pid > 0 ? bench_rss_kb(wsl_opts.server_pid) : -1;
    slab_after = bench_meminfo_kb("Slab");
    alive = atomic_load(&wsl_opened) - atomic_load(&wsl_closed);

    /* Phase 3: publish, then wait for the deliveries to stop coming. */
    memset(&pub, 0, sizeof(pub));
    publish_err = 0;
    expected = 0;
    delivered = 0;
    server_cpu = self_cpu = 0;
    server_writes = 0;
    if (wsl_opts.pushes > 0 && alive > 0) {
        usage_before = wsl_usage_sample();
        publish_err = wsl_publish(&pub);
        expected = (uint64_t)alive * pub.accepted;
        progress = wsl_total_deliveries(threads);
        progress_ns = bench_now_ns();
        while ((delivered = wsl_total_deliveries(threads)) < expected) {
            if (delivered != progress) {
                progress = delivered;
                progress_ns = bench_now_ns();
            } else if (bench_now_ns() - progress_ns >
                       (uint64_t)wsl_opts.drain_timeout_s * 1000000000u) {
                fprintf(stderr, "wsload: deliveries stalled at %" PRIu64 " of %" PRIu64 "\n",
                        delivered, expected);
                break;
            }
            wsl_sleep_ms(1);
        }
        usage_after = wsl_usage_sample();
        if (usage_before.server_cpu_s >= 0 && usage_after.server_cpu_s >= 0)
            server_cpu = usage_after.server_cpu_s - usage_before.server_cpu_s;
        if (usage_before.self_cpu_s >= 0 && usage_after.self_cpu_s >= 0)
            self_cpu = usage_after.self_cpu_s - usage_before.self_cpu_s;
        if (usage_before.server_writes >= 0 && usage_after.server_writes >= 0)
            server_writes = usage_after.server_writes - usage_before.server_writes;
    }

    atomic_store(&wsl_stopping, 1);
    last_ns = 0;
    error_frames = bad_frames = pong_drops = 0;
    frame_bytes = 0;
    wire_bytes = compressed = 0;
    for (i = 0; i < wsl_opts.threads; i++) {
        pthread_join(threads[i].tid, NULL);
        bench_hist_merge(hist, &threads[i].hist);
        v = atomic_load(&threads[i].last_delivery_ns);
        if (v > last_ns) last_ns = v;
        error_frames += threads[i].error_frames;
        bad_frames += threads[i].bad_frames;
        pong_drops += threads[i].pong_drops;
        if (threads[i].frame_bytes > frame_bytes) frame_bytes = threads[i].frame_bytes;
        wire_bytes += threads[i].wire_bytes;
        compressed += threads[i].compressed;
    }
    delivered = hist->n;
    window_s =
        pub.first_ns != 0 && last_ns > pub.first_ns ? (double)(last_ns - pub.first_ns) / 1e9 : 0;
    rate = window_s > 0 ? (double)delivered / window_s : 0;

    printf("clients        %u open of %u (%u failed) in %.3f s\n", atomic_load(&wsl_opened),
           wsl_opts.clients, atomic_load(&wsl_failed), (double)(t_open - t_start) / 1e9);
    if (rss_before >= 0 && rss_after >= 0 && alive > 0)
        printf("server rss     %ld KiB -> %ld KiB: %.0f bytes per open client\n", rss_before,
               rss_after, (double)(rss_after - rss_before) * 1024.0 / alive);
    if (wsl_opts.pushes > 0) {
        printf("pushes         %" PRIu64 " sent, %" PRIu64 " accepted, %" PRIu64
               " errors over %u publishers\n",
               pub.sent, pub.accepted, pub.errors, wsl_opts.publishers);
        printf("deliveries     %" PRIu64 " of %" PRIu64 " in %.3f s: %.0f/s\n", delivered, expected,
               window_s, rate);
        printf("cpu s          server %.2f, wsload %.2f while publishing and delivering\n",
               server_cpu, self_cpu);
        if (server_writes > 0)
            printf("server writes  %ld write syscalls: %.2f push frames per write\n", server_writes,
                   (double)delivered / (double)server_writes);
        printf("latency ms     p50 %.3f  p99 %.3f  max %.3f  mean %.3f\n",
               wsl_ms(bench_hist_quantile(hist, 0.50)), wsl_ms(bench_hist_quantile(hist, 0.99)),
               wsl_ms(hist->max_ns), delivered > 0 ? wsl_ms(hist->sum_ns / delivered) : 0.0);
    }
    printf("errors         connect %u, closed by server %u, error frames %" PRIu64
           ", bad frames %" PRIu64 ", push %" PRIu64 "\n",
           atomic_load(&wsl_failed), atomic_load(&wsl_closed), error_frames, bad_frames,
           pub.errors);

    printf("RESULT tool=wsload clients=%u connected=%u connect_failed=%u connect_s=%.3f"
           " idle_s=%u alive=%u closed=%u",
           wsl_opts.clients, atomic_load(&wsl_opened), atomic_load(&wsl_failed),
           (double)(t_open - t_start) / 1e9, wsl_opts.idle_seconds,
           atomic_load(&wsl_opened) - atomic_load(&wsl_closed), atomic_load(&wsl_closed));
    if (rss_before >= 0 && rss_after >= 0)
        printf(" rss_before_kb=%ld rss_after_kb=%ld rss_per_client_b=%.0f", rss_before, rss_after,
               alive > 0 ? (double)(rss_after - rss_before) * 1024.0 / alive : 0.0);
    if (slab_before >= 0 && slab_after >= 0) printf(" slab_delta_kb=%ld", slab_after - slab_before);
    printf(" pushes=%" PRIu64 " publishers=%u payload_bytes=%u frame_bytes=%u"
           " accepted=%" PRIu64 " push_errors=%" PRIu64 " expected=%" PRIu64 " deliveries=%" PRIu64
           " window_s=%.3f deliveries_per_s=%.0f"
           " p50_ms=%.3f p99_ms=%.3f max_ms=%.3f server_cpu_s=%.2f wsload_cpu_s=%.2f"
           " server_writes=%ld frames_per_write=%.2f"
           " error_frames=%" PRIu64 " bad_frames=%" PRIu64 " pong_drops=%" PRIu64 " errors=%" PRIu64
           " deflate=%d compressed=%" PRIu64 " wire_bytes=%" PRIu64
           " wire_bytes_per_delivery=%.1f server_cpu_us_per_delivery=%.3f\n",
           wsl_opts.pushes, wsl_opts.publishers, wsl_opts.payload_bytes, frame_bytes, pub.accepted,
           pub.errors, expected, delivered, window_s, rate, wsl_ms(bench_hist_quantile(hist, 0.50)),
           wsl_ms(bench_hist_quantile(hist, 0.99)), wsl_ms(hist->max_ns), server_cpu, self_cpu,
           server_writes, server_writes > 0 ? (double)delivered / (double)server_writes : 0.0,
           error_frames, bad_frames, pong_drops,
           (uint64_t)atomic_load(&wsl_failed) + atomic_load(&wsl_closed) + error_frames +
               bad_frames + pub.errors + (expected - (delivered < expected ? delivered : expected)),
           wsl_opts.deflate, compressed, wire_bytes,
           delivered > 0 ? (double)wire_bytes / (double)delivered : 0.0,
           delivered > 0 ? server_cpu * 1e6 / (double)delivered : 0.0);
    fflush(stdout);
    err = publish_err != 0 || atomic_load(&wsl_failed) > 0 || delivered < expected;
    /* The kernel closes the sockets; freeing 10k clients by hand buys nothing. */
    return err ? 1 : 0;
}
