/* The Idempotency-Key request header (docs/api.md): the key's scope (the API key that
 * sent it and the endpoint), the request's fingerprint, and for pushes the round trip
 * through the key store (store/idem.h): reserve, act, store the answer; or answer
 * again what the first attempt answered. */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "core/log.h"
#include "store/idem.h"

struct api_idem_s {
    app_t *app;
    char *scope;
    char fp[IDEM_FP_LEN + 1];
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void hex(const unsigned char *md, unsigned n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (unsigned i = 0; i < n; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 15];
    }
    out[2 * n] = '\0';
}

/* SHA-256 of the parts, in hex. Returns 0 or -ENOMEM. */
static int sha256_hex(const void *const *parts, const size_t *lens, int n, char *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    for (int i = 0; ok && i < n; i++) {
        /* each part's length first: ("ab","c") and ("a","bc") differ */
        unsigned long long l = lens[i];
        ok = EVP_DigestUpdate(c, &l, sizeof(l)) && EVP_DigestUpdate(c, parts[i], lens[i]);
    }
    ok = ok && EVP_DigestFinal_ex(c, md, &mdlen) && mdlen == 32;
    EVP_MD_CTX_free(c);
    if (!ok) return -ENOMEM;
    hex(md, mdlen, out);
    return 0;
}

int api_idem_key(http_ctx_t *ctx, const config_apikey_t *k, const char *endpoint, const char *extra,
                 char **scope, char *fp)
{
    const char *v = http_request_header(ctx->req, "Idempotency-Key");
    if (!v) return 0;
    size_t n = strlen(v);
    int ok = n >= 1 && n <= IDEM_KEY_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = v[i] > 0x20 && v[i] < 0x7f;
    if (!ok) {
        char msg[96];
        snprintf(msg, sizeof(msg), "Idempotency-Key must be 1 to %d printable ASCII characters",
                 IDEM_KEY_MAX);
        http_respond_error(ctx, 400, msg);
        return -1;
    }
    /* the scope names the API key by a digest: the key itself is never stored */
    char kh[IDEM_FP_LEN + 1];
    const void *kp[1] = {k->key};
    size_t kl[1] = {strlen(k->key)};
    const void *fparts[2] = {extra ? extra : "", ctx->req->body ? ctx->req->body : ""};
    size_t flens[2] = {extra ? strlen(extra) : 0, ctx->req->body_len};
    size_t sl = strlen(endpoint) + 16 + n + 3;
    char *s = malloc(sl);
    if (!s || sha256_hex(kp, kl, 1, kh) < 0 || sha256_hex(fparts, flens, 2, fp) < 0) {
        free(s);
        http_respond_error(ctx, 500, "out of memory");
        return -1;
    }
    snprintf(s, sl, "%s:%.16s:%s", endpoint, kh, v);
    *scope = s;
    return 1;
}

/* Answers again what the key's first attempt answered. */
static void replay(http_ctx_t *ctx, const idem_answer_t *a)
{
    size_t hl = a->headers ? strlen(a->headers) : 0;
    char *h = malloc(hl + sizeof("Idempotent-Replayed: true\r\n"));
    if (!h) {
        http_respond_error(ctx, 500, "out of memory");
        return;
    }
    memcpy(h, a->headers ? a->headers : "", hl);
    memcpy(h + hl, "Idempotent-Replayed: true\r\n", sizeof("Idempotent-Replayed: true\r\n"));
    http_respond(ctx, a->status, a->content_type, a->body, a->body_len, h);
    free(h);
}

int api_idem_begin(http_ctx_t *ctx, const config_apikey_t *k, const char *endpoint,
                   api_idem_t **out)
{
    app_t *app = ctx->app;
    *out = NULL;
    api_idem_t *ik = calloc(1, sizeof(*ik));
    if (!ik) {
        http_respond_error(ctx, 500, "out of memory");
        return 1;
    }
    int r = api_idem_key(ctx, k, endpoint, NULL, &ik->scope, ik->fp);
    if (r <= 0) {
        free(ik);
        return r < 0;
    }
    ik->app = app;
    idem_answer_t a;
    r = idem_begin(app->idem, ik->scope, ik->fp, now_ms(), &a);
    if (r == IDEM_NEW) {
        *out = ik;
        return 0;
    }
    free(ik->scope);
    free(ik);
    if (r == IDEM_DONE) {
        replay(ctx, &a);
        idem_answer_clear(&a);
    } else if (r == IDEM_PENDING) {
        /* as Stripe does: the first attempt decides, the retry asks again later */
        http_respond_error(ctx, 409,
                           "a request with this Idempotency-Key is still in progress, retry later");
    } else if (r == IDEM_MISMATCH) {
        http_respond_error(ctx, 422,
                           "this Idempotency-Key was already used with a different request");
    } else if (r == -ENOTCONN) {
        http_respond_error(ctx, 503, "the Idempotency-Key store is unavailable, try again");
    } else if (r == -ENOSPC) {
        http_respond_error(ctx, 503, "too many Idempotency-Keys in progress, try again");
    } else {
        http_respond_error(ctx, 500, "the Idempotency-Key store failed (see the node's log)");
    }
    return 1;
}

void api_idem_finish(api_idem_t *ik, int status, const char *content_type, const char *headers,
                     const char *body, size_t len)
{
    if (!ik) return;
    /* the store copies what it keeps: the strings are only borrowed here */
    idem_answer_t a = {.status = status,
                       .content_type = (char *)content_type,
                       .headers = (char *)headers,
                       .body = (char *)body,
                       .body_len = body ? len : 0};
    int r = idem_finish(ik->app->idem, ik->scope, ik->fp, now_ms(), &a);
    if (r < 0 && r != -ENOENT)
        log_warn("an Idempotency-Key's answer was not stored: a retry acts again", "error=%d", r);
    free(ik->scope);
    free(ik);
}

void api_idem_forget(api_idem_t *ik)
{
    if (!ik) return;
    idem_forget(ik->app->idem, ik->scope);
    free(ik->scope);
    free(ik);
}
