/* libFuzzer target for stream configuration documents (seed 002): the input is parsed as
 * JSON and
 *  - each member of an object (and the object itself) goes through stream_validate,
 *    with a normal and a tiny error buffer (refusals must agree, messages must be
 *    terminated inside the buffer and name the path prefix);
 *  - the object goes through streams_apply as a whole PATCH request for one tenant (the
 *    registry runs without a store), which must either refuse it and leave the tenant as
 *    it was, or apply it so that every stream the tenant then has passes stream_validate
 *    under its own id; a REPLACE with {} then resets the tenant. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "streams/stream.h"

static volatile size_t sink;

static void validate_one(json_t *s, const char *id)
{
    char err[512];
    memset(err, 'X', sizeof(err));
    int r = stream_validate(s, id, "update.x", err, sizeof(err));
    if (r != 0 && r != -EINVAL) __builtin_trap();
    if (r) {
        if (!memchr(err, '\0', sizeof(err)) || strncmp(err, "update.x", 8) != 0) __builtin_trap();
        sink += strlen(err);
    }
    char tiny[8];
    memset(tiny, 'X', sizeof(tiny));
    int r2 = stream_validate(s, id, "update.x", tiny, 5);
    if (r2 != r || (r && tiny[4] != '\0') || tiny[5] != 'X') __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        char err[256];
        if (streams_init(NULL, NULL, err, sizeof(err)) != 0) __builtin_trap();
        ready = 1;
    }
    json_t *doc =
        json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
    if (!doc) return 0;
    validate_one(doc, "s");
    if (json_is_object(doc)) {
        const char *k;
        json_t *v;
        json_object_foreach(doc, k, v)
        {
            validate_one(v, k);
            /* members of members: the `update` / `configuration` sets of a request */
            if (json_is_object(v)) {
                const char *k2;
                json_t *v2;
                json_object_foreach(v, k2, v2) validate_one(v2, k2);
            }
        }
        /* the whole document as a PATCH request */
        json_t *before = streams_tenant("t");
        char *before_s = before ? json_dumps(before, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        char err[512];
        int r = streams_apply("t", doc, err, sizeof(err));
        json_t *after = streams_tenant("t");
        if (r == 0) {
            const char *id;
            json_t *s;
            json_object_foreach(after, id, s)
            {
                char e2[512];
                if (stream_validate(s, id, "t", e2, sizeof(e2)) != 0)
                    __builtin_trap(); /* something invalid got in */
                json_t *jid = json_object_get(s, "id");
                if (!json_is_string(jid) || strcmp(json_string_value(jid), id) != 0)
                    __builtin_trap(); /* every stream carries its id */
            }
        } else {
            if (r != -EINVAL && r != -ENOENT) __builtin_trap();
            char *after_s = after ? json_dumps(after, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
            if ((before_s == NULL) != (after_s == NULL) ||
                (before_s && strcmp(before_s, after_s) != 0))
                __builtin_trap(); /* a refused request changed the tenant */
            free(after_s);
        }
        json_decref(after);
        json_decref(before);
        free(before_s);
        json_t *reset = json_pack("{s:s, s:{}}", "operation", "REPLACE", "configuration");
        if (!reset || streams_apply("t", reset, err, sizeof(err)) != 0) __builtin_trap();
        json_decref(reset);
    }
    json_decref(doc);
    return 0;
}
