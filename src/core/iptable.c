/* Striped chained hash of address -> connection count. The hash is keyed with a random
 * seed per table so a client cannot aim its addresses at one chain. */
#include "core/iptable.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define IPT_STRIPES 64
#define IPT_BUCKETS 256 /* per stripe */

typedef struct ipt_entry_s {
    struct ipt_entry_s *next;
    ipkey_t k;
    unsigned n;
} ipt_entry_t;

typedef struct ipt_stripe_s {
    uv_mutex_t mu;
    ipt_entry_t *b[IPT_BUCKETS];
} ipt_stripe_t;

struct iptable_s {
    uint64_t seed;
    ipt_stripe_t s[IPT_STRIPES];
};

int ipkey_from_sockaddr(const struct sockaddr *sa, ipkey_t *k)
{
    memset(k, 0, sizeof(*k));
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        k->b[10] = k->b[11] = 0xff;
        memcpy(k->b + 12, &in->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(k->b, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return 0;
    }
    return -EAFNOSUPPORT;
}

static uint64_t hash(const iptable_t *t, const ipkey_t *k)
{
    /* FNV-1a over the seeded key, then a final mix so low bits depend on every byte */
    uint64_t h = 1469598103934665603ull ^ t->seed;
    for (int i = 0; i < 16; i++) {
        h ^= k->b[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

int iptable_new(iptable_t **tp)
{
    iptable_t *t = calloc(1, sizeof(*t));
    if (!t) return -ENOMEM;
    uint64_t seed = (uint64_t)(uintptr_t)t ^ uv_hrtime();
    t->seed = seed * 0x9e3779b97f4a7c15ull;
    int i;
    for (i = 0; i < IPT_STRIPES; i++)
        if (uv_mutex_init(&t->s[i].mu) < 0) goto fail_mutex;
    *tp = t;
    return 0;
fail_mutex:
    while (i-- > 0)
        uv_mutex_destroy(&t->s[i].mu);
    free(t);
    return -ENOMEM;
}

void iptable_free(iptable_t *t)
{
    if (!t) return;
    for (int i = 0; i < IPT_STRIPES; i++) {
        for (int j = 0; j < IPT_BUCKETS; j++)
            for (ipt_entry_t *e = t->s[i].b[j], *next; e; e = next) {
                next = e->next;
                free(e);
            }
        uv_mutex_destroy(&t->s[i].mu);
    }
    free(t);
}

/* The stripe and the bucket head of k. */
static ipt_entry_t **slot(iptable_t *t, const ipkey_t *k, ipt_stripe_t **sp)
{
    uint64_t h = hash(t, k);
    *sp = &t->s[h % IPT_STRIPES];
    return &(*sp)->b[(h / IPT_STRIPES) % IPT_BUCKETS];
}

int iptable_acquire(iptable_t *t, const ipkey_t *k, unsigned max, const ipkey_t **held)
{
    ipt_stripe_t *s;
    ipt_entry_t **head = slot(t, k, &s);
    int r = 0;
    uv_mutex_lock(&s->mu);
    ipt_entry_t *e = *head;
    while (e && memcmp(e->k.b, k->b, 16) != 0)
        e = e->next;
    if (e && max && e->n >= max) {
        r = -EUSERS;
    } else if (e) {
        e->n++;
    } else {
        e = malloc(sizeof(*e));
        if (!e) {
            r = -ENOMEM;
        } else {
            e->k = *k;
            e->n = 1;
            e->next = *head;
            *head = e;
        }
    }
    if (r == 0 && held) *held = &e->k;
    uv_mutex_unlock(&s->mu);
    return r;
}

void iptable_release(iptable_t *t, const ipkey_t *k)
{
    ipt_stripe_t *s;
    ipt_entry_t **pp = slot(t, k, &s);
    uv_mutex_lock(&s->mu);
    for (; *pp; pp = &(*pp)->next) {
        ipt_entry_t *e = *pp;
        if (memcmp(e->k.b, k->b, 16) != 0) continue;
        if (--e->n == 0) {
            *pp = e->next;
            free(e);
        }
        break;
    }
    uv_mutex_unlock(&s->mu);
}

unsigned iptable_count(iptable_t *t, const ipkey_t *k)
{
    ipt_stripe_t *s;
    ipt_entry_t **head = slot(t, k, &s);
    unsigned n = 0;
    uv_mutex_lock(&s->mu);
    for (ipt_entry_t *e = *head; e; e = e->next)
        if (memcmp(e->k.b, k->b, 16) == 0) {
            n = e->n;
            break;
        }
    uv_mutex_unlock(&s->mu);
    return n;
}
