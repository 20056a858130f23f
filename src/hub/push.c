/* Push lifetime and lazily shared encodings. */
#include "hub/push.h"

#include <stdlib.h>

push_t *push_new(void)
{
    push_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->refs = 1;
    ids_next(p->id);
    return p;
}

push_t *push_ref(push_t *p)
{
    __atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
    return p;
}

void push_unref(push_t *p)
{
    if (!p || __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    free(p->client_pat);
    free(p->role_pat);
    free(p->session_pat);
    free(p->event);
    free(p->channel);
    free(p->payload);
    free(p->origin_node);
    for (int i = 0; i < PUSH_FORMAT_COUNT; i++)
        buf_unref(p->frames[i]);
    free(p);
}

buf_t *push_frame(push_t *p, int format, push_encode_fn encode)
{
    buf_t *f = __atomic_load_n(&p->frames[format], __ATOMIC_ACQUIRE);
    if (f)
        return f;
    buf_t *mine = encode(p);
    if (!mine)
        return NULL;
    buf_t *expected = NULL;
    /* two workers may race to encode; the loser drops its copy and shares the winner's */
    if (__atomic_compare_exchange_n(&p->frames[format], &expected, mine, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE))
        return mine;
    buf_unref(mine);
    return expected;
}
