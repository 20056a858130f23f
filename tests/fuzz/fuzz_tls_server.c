/* libFuzzer target for core/tls: the bytes a client would send, fed to the server side
 * of a TLS connection the way the worker does it (a first read that is stashed, as when
 * reading pauses or the connection moves, then the rest appended), decrypting until the
 * input is used up or the session fails; then application data and close_notify if the
 * handshake completed, and the output drained. The server's certificate is made at
 * start-up (a self-signed P-256 key), so nothing secret is committed. */
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/tls.h"

static tls_server_t *server;
static char plain[TLS_RECORD_MAX];

static int write_pair(const char *cert_path, const char *key_path)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    int ok = 0;
    if (!pk || !x) goto done;
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, pk);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    if (!X509_sign(x, pk, EVP_sha256())) goto done;
    FILE *f = fopen(cert_path, "w");
    if (!f) goto done;
    ok = PEM_write_X509(f, x);
    fclose(f);
    f = fopen(key_path, "w");
    if (!f) {
        ok = 0;
        goto done;
    }
    ok = ok && PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
    fclose(f);
done:
    X509_free(x);
    EVP_PKEY_free(pk);
    return ok ? 0 : -1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char dir[] = "/tmp/pushgate-fuzz-tls-XXXXXX";
    if (!mkdtemp(dir)) abort();
    char cert[64], key[64], err[512];
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    if (write_pair(cert, key) < 0) abort();
    tls_server_cfg_t cfg = {cert, key, 12, 0};
    if (tls_server_new(&cfg, &server, err, sizeof(err)) < 0) {
        fprintf(stderr, "fuzz_tls_server: %s\n", err);
        abort();
    }
    unlink(cert);
    unlink(key);
    rmdir(dir);
    return 0;
}

/* Decrypts until the input is used up; returns what the last read said. */
static ssize_t drain_input(tls_conn_t *t)
{
    for (int i = 0; i < 4096; i++) {
        ssize_t n = tls_conn_read(t, plain, sizeof(plain));
        if (n <= 0) return n;
        if (n > (ssize_t)sizeof(plain)) __builtin_trap();
    }
    return -1; /* bounded: give up on this input */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tls_conn_t *t;
    if (tls_conn_new(server, &t) < 0) return 0;
    size_t half = size / 2;
    /* the first read is kept (stashed) before anything is decrypted */
    if (tls_conn_input(t, (const char *)data, half) < 0 || tls_conn_stash(t) < 0) goto done;
    if (tls_conn_input(t, (const char *)data + half, size - half) < 0) goto done;
    if (drain_input(t) < 0) goto done;
    if (tls_conn_has_stash(t)) __builtin_trap(); /* read returned 0: every input byte was taken */
    if (tls_conn_ready(t)) {
        (void)tls_conn_write(t, "HTTP/1.1 200 OK\r\n\r\n", 19);
        (void)tls_conn_close_notify(t);
    }
done:;
    size_t off;
    buf_t *b;
    while ((b = tls_conn_out(t, &off)))
        tls_conn_out_consume(t, b->len - off);
    tls_conn_free(t);
    return 0;
}
