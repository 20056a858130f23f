/* Push lifetime and lazily shared encodings. */
#include "hub/push.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

static int alloc_frames(push_t *p)
{
    size_t n = (p->n_topics + 1) * PUSH_FORMAT_COUNT;
    buf_t **f = calloc(n, sizeof(*f));
    if (!f) return -ENOMEM;
    free(p->frames);
    p->frames = f;
    return 0;
}

push_t *push_new(void)
{
    push_t *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    if (alloc_frames(p) < 0) {
        free(p);
        return NULL;
    }
    p->refs = 1;
    ids_next(p->id);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    p->created_ms = (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    return p;
}

push_t *push_ref(push_t *p)
{
    __atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
    return p;
}

void push_unref(push_t *p)
{
    if (!p || __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    free(p->client_pat);
    free(p->role_pat);
    free(p->session_pat);
    free(p->tenant);
    for (size_t i = 0; i < p->n_topics; i++)
        free(p->topics[i]);
    free(p->topics);
    free(p->event);
    free(p->payload);
    free(p->origin_node);
    for (size_t i = 0; i < (p->n_topics + 1) * PUSH_FORMAT_COUNT; i++)
        buf_unref(p->frames[i]);
    free(p->frames);
    free(p);
}

int push_set_topics(push_t *p, char *const *topics, size_t n)
{
    char **t = calloc(n ? n : 1, sizeof(*t));
    if (!t) return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (!(t[i] = strdup(topics[i]))) {
            while (i--)
                free(t[i]);
            free(t);
            return -ENOMEM;
        }
    for (size_t i = 0; i < p->n_topics; i++)
        free(p->topics[i]);
    free(p->topics);
    for (size_t i = 0; i < (p->n_topics + 1) * PUSH_FORMAT_COUNT; i++)
        buf_unref(p->frames[i]);
    p->topics = t;
    p->n_topics = n;
    return alloc_frames(p);
}

const char *push_channel(const push_t *p, int ti)
{
    if (ti < 0 || (size_t)ti >= p->n_topics || strncmp(p->topics[ti], "chan:", 5) != 0) return NULL;
    return p->topics[ti] + 5;
}

buf_t *push_frame(push_t *p, int format, int ti, push_encode_fn encode)
{
    buf_t **slot = &p->frames[(size_t)(ti + 1) * PUSH_FORMAT_COUNT + (size_t)format];
    buf_t *f = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (f) return f;
    buf_t *mine = encode(p, ti);
    if (!mine) return NULL;
    buf_t *expected = NULL;
    /* two workers may race to encode; the loser drops its copy and shares the winner's */
    if (__atomic_compare_exchange_n(slot, &expected, mine, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return mine;
    buf_unref(mine);
    return expected;
}
