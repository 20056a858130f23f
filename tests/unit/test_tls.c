/* core/tls against an OpenSSL client over memory BIOs: handshakes (TLS 1.2 and 1.3) fed
 * whole, one byte at a time and split at every offset of the client's first flight;
 * plaintext both ways; input stashed mid-way; ALPN; close_notify; garbage and plain
 * HTTP; loading errors that name the file; reload keeping the old context on error;
 * and the tls config keys. */
#include <criterion/criterion.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/tls.h"

static char dir[] = "/tmp/pushgate-unit-tls-XXXXXX";
static char cert_a[128], key_a[128], key_b[128], junk[128];
static tls_server_t *srv;
static char plain[TLS_RECORD_MAX];

static void write_key(EVP_PKEY *pk, const char *path)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    cr_assert(PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL));
    fclose(f);
}

/* A self-signed P-256 certificate at cert_path with its key at key_path. */
static void make_pair(const char *cert_path, const char *key_path)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    cr_assert(pk && x);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, pk);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    cr_assert(X509_sign(x, pk, EVP_sha256()));
    FILE *f = fopen(cert_path, "w");
    cr_assert_not_null(f);
    cr_assert(PEM_write_X509(f, x));
    fclose(f);
    write_key(pk, key_path);
    X509_free(x);
    EVP_PKEY_free(pk);
}

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
    snprintf(cert_a, sizeof(cert_a), "%s/a.pem", dir);
    snprintf(key_a, sizeof(key_a), "%s/a.key", dir);
    snprintf(key_b, sizeof(key_b), "%s/b.key", dir);
    snprintf(junk, sizeof(junk), "%s/junk", dir);
    make_pair(cert_a, key_a);
    EVP_PKEY *other = EVP_EC_gen("P-256");
    write_key(other, key_b);
    EVP_PKEY_free(other);
    FILE *f = fopen(junk, "w");
    fputs("not pem\n", f);
    fclose(f);
    char err[512];
    tls_server_cfg_t cfg = {cert_a, key_a, 12, 0};
    cr_assert_eq(tls_server_new(&cfg, &srv, err, sizeof(err)), 0, "%s", err);
}

static void teardown(void)
{
    tls_server_free(srv);
    srv = NULL;
    unlink(cert_a);
    unlink(key_a);
    unlink(key_b);
    unlink(junk);
    rmdir(dir);
    memcpy(dir + strlen(dir) - 6, "XXXXXX", 6);
}

TestSuite(tls, .init = setup, .fini = teardown);

/* an OpenSSL client whose records go through two memory BIOs */
typedef struct {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *in;  /* the server's records, for the client to read */
    BIO *out; /* the client's records */
} client_t;

static void client_open(client_t *cl, int max_version, const char *alpn, size_t alpn_len)
{
    cl->ctx = SSL_CTX_new(TLS_client_method());
    if (max_version) SSL_CTX_set_max_proto_version(cl->ctx, max_version);
    cl->ssl = SSL_new(cl->ctx);
    cl->in = BIO_new(BIO_s_mem());
    cl->out = BIO_new(BIO_s_mem());
    SSL_set_bio(cl->ssl, cl->in, cl->out);
    SSL_set_connect_state(cl->ssl);
    if (alpn) SSL_set_alpn_protos(cl->ssl, (const unsigned char *)alpn, (unsigned)alpn_len);
}

static void client_close(client_t *cl)
{
    SSL_free(cl->ssl);
    SSL_CTX_free(cl->ctx);
}

/* Moves every record t has for the client into the client's BIO. */
static void to_client(tls_conn_t *t, client_t *cl)
{
    size_t off;
    buf_t *b;
    while ((b = tls_conn_out(t, &off))) {
        BIO_write(cl->in, b->data + off, (int)(b->len - off));
        tls_conn_out_consume(t, b->len - off);
    }
}

/* Reads what the client wrote. Returns the byte count (into out). */
static size_t from_client(client_t *cl, char *out, size_t cap)
{
    int n = BIO_read(cl->out, out, (int)cap);
    return n > 0 ? (size_t)n : 0;
}

/* Feeds len bytes to t in pieces of step bytes (0: whole); appends plaintext to got.
 * Returns the last tls_conn_read result that ended a piece (0 or an error). */
static ssize_t feed(tls_conn_t *t, const char *data, size_t len, size_t step, char *got,
                    size_t *got_len)
{
    ssize_t n = 0;
    for (size_t off = 0; off < len || (len == 0 && off == 0);) {
        size_t k = step && step < len - off ? step : len - off;
        cr_assert_eq(tls_conn_input(t, data + off, k), 0);
        off += k;
        while ((n = tls_conn_read(t, plain, sizeof(plain))) > 0) {
            if (got) {
                memcpy(got + *got_len, plain, (size_t)n);
                *got_len += (size_t)n;
            }
        }
        if (n < 0 || len == 0) return n;
    }
    return n;
}

/* Runs a handshake, feeding the client's first flight in pieces of step bytes (0:
 * whole) or split once at split (when step is 0 and split is not 0). Returns 0 once
 * both sides are done, or the server's error. */
static ssize_t handshake(tls_conn_t *t, client_t *cl, size_t step, size_t split)
{
    static char wire[65536];
    for (int round = 0; round < 8; round++) {
        int r = SSL_do_handshake(cl->ssl);
        size_t n = from_client(cl, wire, sizeof(wire));
        ssize_t e;
        if (round == 0 && split && split < n) {
            e = feed(t, wire, split, 0, NULL, NULL);
            if (e == 0) e = feed(t, wire + split, n - split, 0, NULL, NULL);
        } else {
            e = feed(t, wire, n, round == 0 ? step : 0, NULL, NULL);
        }
        if (e < 0) return e;
        to_client(t, cl);
        if (r == 1 && tls_conn_ready(t)) return 0;
    }
    return -ETIMEDOUT;
}

/* A request from the client, the answer from the server, checked both ways. */
static void exchange(tls_conn_t *t, client_t *cl)
{
    static char wire[65536], got[65536];
    const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    cr_assert_eq(SSL_write(cl->ssl, req, (int)strlen(req)), (int)strlen(req));
    size_t n = from_client(cl, wire, sizeof(wire)), got_len = 0;
    cr_assert_eq(feed(t, wire, n, 0, got, &got_len), 0);
    cr_assert_eq(got_len, strlen(req));
    cr_assert_eq(memcmp(got, req, got_len), 0);
    const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    cr_assert_eq(tls_conn_write(t, resp, strlen(resp)), 0);
    to_client(t, cl);
    char back[256];
    int k = SSL_read(cl->ssl, back, sizeof(back));
    cr_assert_eq(k, (int)strlen(resp));
    cr_assert_eq(memcmp(back, resp, (size_t)k), 0);
}

Test(tls, alpn_list_is_wire_format_with_http11)
{
    size_t len;
    const unsigned char *p = tls_alpn_protocols(0, &len);
    int found = 0;
    for (size_t i = 0; i < len; i += 1 + p[i]) {
        cr_assert(i + 1 + p[i] <= len, "each name fits the list");
        found |= p[i] == 8 && memcmp(p + i + 1, "http/1.1", 8) == 0;
    }
    cr_assert(found);
}

Test(tls, handshake_tls13_and_tls12_whole)
{
    int versions[] = {0, TLS1_2_VERSION};
    for (int v = 0; v < 2; v++) {
        client_t cl;
        tls_conn_t *t;
        client_open(&cl, versions[v], "\x08http/1.1", 9);
        cr_assert_eq(tls_conn_new(srv, &t), 0);
        cr_assert_eq(handshake(t, &cl, 0, 0), 0);
        size_t alen;
        const char *a = tls_conn_alpn(t, &alen);
        cr_assert(a && alen == 8 && memcmp(a, "http/1.1", 8) == 0);
        cr_assert_str_eq(SSL_get_version(cl.ssl), v ? "TLSv1.2" : "TLSv1.3");
        exchange(t, &cl);
        tls_conn_free(t);
        client_close(&cl);
    }
}

Test(tls, handshake_one_byte_at_a_time_and_split_at_every_offset)
{
    client_t cl;
    tls_conn_t *t;
    client_open(&cl, 0, NULL, 0);
    cr_assert_eq(tls_conn_new(srv, &t), 0);
    cr_assert_eq(handshake(t, &cl, 1, 0), 0);
    cr_assert_null(tls_conn_alpn(t, &(size_t){0}), "no ALPN offered, none selected");
    exchange(t, &cl);
    tls_conn_free(t);
    client_close(&cl);
    /* the ClientHello's length, then every split point of it */
    client_open(&cl, 0, NULL, 0);
    SSL_do_handshake(cl.ssl);
    size_t hello = (size_t)BIO_pending(cl.out);
    client_close(&cl);
    for (size_t split = 1; split < hello; split++) {
        client_open(&cl, 0, NULL, 0);
        cr_assert_eq(tls_conn_new(srv, &t), 0);
        cr_assert_eq(handshake(t, &cl, 0, split), 0, "split at %zu", split);
        exchange(t, &cl);
        tls_conn_free(t);
        client_close(&cl);
    }
}

Test(tls, stashed_input_is_decrypted_later_in_order)
{
    client_t cl;
    tls_conn_t *t;
    client_open(&cl, 0, NULL, 0);
    cr_assert_eq(tls_conn_new(srv, &t), 0);
    cr_assert_eq(handshake(t, &cl, 0, 0), 0);
    static char wire[65536], got[65536];
    /* three records in one read: the caller takes the first, then must let its buffer go */
    const char *msgs[] = {"first", "second", "third"};
    for (int i = 0; i < 3; i++)
        SSL_write(cl.ssl, msgs[i], (int)strlen(msgs[i]));
    size_t n = from_client(&cl, wire, sizeof(wire));
    cr_assert_eq(tls_conn_input(t, wire, n), 0);
    ssize_t k = tls_conn_read(t, plain, sizeof(plain));
    cr_assert_eq(k, 5);
    cr_assert_eq(memcmp(plain, "first", 5), 0);
    cr_assert_eq(tls_conn_stash(t), 0);
    cr_assert(tls_conn_has_stash(t));
    memset(wire, 0xAA, n); /* the caller's buffer is reused */
    /* more arrives before the stash is read: it goes behind it */
    SSL_write(cl.ssl, "fourth", 6);
    size_t m = from_client(&cl, wire, sizeof(wire)), got_len = 0;
    cr_assert_eq(feed(t, wire, m, 0, got, &got_len), 0);
    cr_assert_eq(got_len, strlen("secondthirdfourth"));
    cr_assert_eq(memcmp(got, "secondthirdfourth", got_len), 0);
    cr_assert_not(tls_conn_has_stash(t));
    tls_conn_free(t);
    client_close(&cl);
}

Test(tls, close_notify_both_ways)
{
    client_t cl;
    tls_conn_t *t;
    client_open(&cl, 0, NULL, 0);
    cr_assert_eq(tls_conn_new(srv, &t), 0);
    cr_assert_eq(handshake(t, &cl, 0, 0), 0);
    cr_assert_eq(tls_conn_close_notify(t), 1);
    cr_assert_eq(tls_conn_close_notify(t), 0, "once");
    to_client(t, &cl);
    char b[16];
    cr_assert_eq(SSL_read(cl.ssl, b, sizeof(b)), 0);
    cr_assert_eq(SSL_get_error(cl.ssl, 0), SSL_ERROR_ZERO_RETURN);
    SSL_shutdown(cl.ssl);
    static char wire[4096];
    size_t n = from_client(&cl, wire, sizeof(wire));
    cr_assert_eq(feed(t, wire, n, 0, NULL, NULL), -EPIPE);
    tls_conn_free(t);
    client_close(&cl);
}

Test(tls, alpn_list_with_h2_prefers_it)
{
    size_t len;
    const unsigned char *p = tls_alpn_protocols(1, &len);
    cr_assert_eq(len, 12);
    cr_assert(memcmp(p, "\x02h2\x08http/1.1", 12) == 0, "h2 first, then http/1.1");
}

Test(tls, h2_is_selected_when_the_server_serves_it)
{
    char err[512];
    tls_server_t *s2;
    tls_server_cfg_t cfg = {cert_a, key_a, 12, 1};
    cr_assert_eq(tls_server_new(&cfg, &s2, err, sizeof(err)), 0, "%s", err);
    const char *offers[] = {"\x02h2\x08http/1.1", "\x08http/1.1\x02h2", "\x02h2"};
    const size_t lens[] = {12, 12, 3};
    for (int i = 0; i < 3; i++) {
        client_t cl;
        tls_conn_t *t;
        client_open(&cl, 0, offers[i], lens[i]);
        cr_assert_eq(tls_conn_new(s2, &t), 0);
        cr_assert_eq(handshake(t, &cl, 0, 0), 0);
        size_t alen;
        const char *a = tls_conn_alpn(t, &alen);
        cr_assert(a && alen == 2 && memcmp(a, "h2", 2) == 0, "the server's order wins: h2");
        tls_conn_free(t);
        client_close(&cl);
    }
    tls_server_free(s2);
}

Test(tls, h2_only_alpn_is_refused)
{
    client_t cl;
    tls_conn_t *t;
    client_open(&cl, 0, "\x02h2", 3);
    cr_assert_eq(tls_conn_new(srv, &t), 0);
    cr_assert_eq(handshake(t, &cl, 0, 0), -EPROTO);
    size_t off;
    cr_assert_not_null(tls_conn_out(t, &off), "the alert is there to send");
    tls_conn_free(t);
    client_close(&cl);
}

Test(tls, plain_http_and_garbage_fail_cleanly)
{
    static const struct {
        const char *data;
        size_t len;
    } inputs[] = {
        {"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27},
        {"\x16\x03\x01\xff\xff\x01\x02", 7},         /* a handshake record too long */
        {"\x15\x03\x03\x00\x02\x02\x28", 7},         /* a fatal alert first */
        {"\x17\x03\x03\x00\x05hello", 10},           /* application data first */
        {"\x16\x03\x01\x00\x04\x01\x00\x00\x00", 9}, /* an empty ClientHello */
    };
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        tls_conn_t *t;
        cr_assert_eq(tls_conn_new(srv, &t), 0);
        ssize_t r = feed(t, inputs[i].data, inputs[i].len, 0, NULL, NULL);
        cr_assert_eq(r, -EPROTO, "input %zu: %zd", i, r);
        cr_assert_not(tls_conn_ready(t));
        tls_conn_free(t);
    }
}

Test(tls, load_errors_name_the_file)
{
    char err[512];
    tls_server_t *s = NULL;
    char missing[160];
    snprintf(missing, sizeof(missing), "%s/missing.pem", dir);
    tls_server_cfg_t cfg = {missing, key_a, 12, 0};
    cr_assert_eq(tls_server_new(&cfg, &s, err, sizeof(err)), -ENOENT);
    cr_assert(strstr(err, "cannot open the TLS certificate") && strstr(err, "missing.pem"), "%s",
              err);
    cfg = (tls_server_cfg_t){cert_a, key_b, 12, 0};
    cr_assert_eq(tls_server_new(&cfg, &s, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "does not match the certificate"), "%s", err);
    cfg = (tls_server_cfg_t){junk, key_a, 12, 0};
    cr_assert_eq(tls_server_new(&cfg, &s, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "is not a PEM certificate"), "%s", err);
    cfg = (tls_server_cfg_t){cert_a, junk, 12, 0};
    cr_assert_eq(tls_server_new(&cfg, &s, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "is not an unencrypted PEM private key"), "%s", err);
    cr_assert_null(s);
}

Test(tls, reload_swaps_for_new_connections_and_keeps_the_old_on_error)
{
    /* a connection made before the reload keeps working after it */
    client_t cl;
    tls_conn_t *old;
    client_open(&cl, 0, NULL, 0);
    cr_assert_eq(tls_conn_new(srv, &old), 0);
    cr_assert_eq(handshake(old, &cl, 0, 0), 0);
    char err[512];
    make_pair(cert_a, key_a); /* a new pair at the same paths */
    cr_assert_eq(tls_server_reload(srv, err, sizeof(err)), 0, "%s", err);
    exchange(old, &cl);
    tls_conn_free(old);
    client_close(&cl);
    /* a broken pair is refused; new connections still handshake */
    FILE *f = fopen(key_a, "w");
    fputs("broken\n", f);
    fclose(f);
    cr_assert_eq(tls_server_reload(srv, err, sizeof(err)), -EINVAL);
    client_open(&cl, 0, NULL, 0);
    cr_assert_eq(tls_conn_new(srv, &old), 0);
    cr_assert_eq(handshake(old, &cl, 0, 0), 0);
    exchange(old, &cl);
    tls_conn_free(old);
    client_close(&cl);
}

static int apply(config_t *cfg, const char *text, char *err, size_t errlen)
{
    cr_assert_eq(config_init(cfg), 0);
    json_error_t je;
    json_t *doc = json_loads(text, 0, &je);
    cr_assert_not_null(doc);
    err[0] = '\0';
    int r = config_apply_json(cfg, doc, err, errlen);
    json_decref(doc);
    return r;
}

Test(tls, config_keys)
{
    config_t cfg;
    char err[256];
    cr_assert_eq(apply(&cfg, "{\"tls\":{\"cert\":\"c.pem\",\"key\":\"k.pem\"}}", err, sizeof(err)),
                 0, "%s", err);
    cr_assert_str_eq(cfg.tls_cert, "c.pem");
    cr_assert_str_eq(cfg.tls_key, "k.pem");
    cr_assert_eq(cfg.tls_min_version, 12);
    config_free(&cfg);
    cr_assert_eq(apply(&cfg, "{\"tls\":{\"cert\":\"c\",\"key\":\"k\",\"minVersion\":\"1.3\"}}", err,
                       sizeof(err)),
                 0);
    cr_assert_eq(cfg.tls_min_version, 13);
    config_free(&cfg);
    const char *bad[][2] = {
        {"{\"tls\":true}", "tls must be an object"},
        {"{\"tls\":{\"cert\":\"c\"}}", "tls.key must be"},
        {"{\"tls\":{\"key\":\"k\"}}", "tls.cert must be"},
        {"{\"tls\":{\"cert\":\"c\",\"key\":\"k\",\"minVersion\":\"1.1\"}}", "tls.minVersion"},
        {"{\"tls\":{\"cert\":\"c\",\"key\":\"k\",\"minVersion\":1.3}}", "tls.minVersion"},
        {"{\"tls\":{\"cert\":\"c\",\"key\":\"k\",\"ciphers\":\"x\"}}",
         "tls.ciphers is not a known"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(apply(&cfg, bad[i][0], err, sizeof(err)), -EINVAL, "%s", bad[i][0]);
        cr_assert(strstr(err, bad[i][1]), "%s: %s", bad[i][0], err);
        config_free(&cfg);
    }
}
