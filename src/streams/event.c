/* Event criteria and projections. */
#include "streams/event.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int event_validate(json_t *ev, char *err, size_t errlen)
{
    static const char *known[] = {"namespace", "name",    "timestamp", "correlationId",
                                  "context",   "payload", "tenantId",  NULL};
    if (!json_is_object(ev)) {
        snprintf(err, errlen, "an event must be a JSON object");
        return -EINVAL;
    }
    const char *k;
    json_t *v;
    json_object_foreach(ev, k, v)
    {
        int ok = 0;
        for (int i = 0; known[i]; i++)
            ok |= strcmp(k, known[i]) == 0;
        if (!ok) {
            snprintf(err, errlen, "%s is not an event field", k);
            return -EINVAL;
        }
    }
    const char *bad = NULL;
    json_t *ns = json_object_get(ev, "namespace"), *name = json_object_get(ev, "name");
    json_t *ts = json_object_get(ev, "timestamp"), *cid = json_object_get(ev, "correlationId");
    json_t *ctx = json_object_get(ev, "context");
    if (!json_is_string(ns) || json_string_length(ns) == 0)
        bad = "namespace is required and must be a non-empty string";
    else if (!json_is_string(name) || json_string_length(name) == 0)
        bad = "name is required and must be a non-empty string";
    else if (!json_is_string(ts) || json_string_length(ts) == 0)
        bad = "timestamp is required and must be a string (ISO 8601)";
    else if (cid && !json_is_null(cid) && !json_is_string(cid))
        bad = "correlationId must be a string";
    else if (ctx && !json_is_null(ctx) && !json_is_object(ctx))
        bad = "context must be an object";
    else if (!json_object_get(ev, "payload"))
        bad = "payload is required";
    if (bad) {
        snprintf(err, errlen, "%s", bad);
        return -EINVAL;
    }
    return 0;
}

int event_criteria_hold(json_t *criteria, json_t *ev)
{
    if (!json_is_object(criteria)) return 1;
    json_t *cid = json_object_get(criteria, "correlationId");
    if (json_is_string(cid)) {
        json_t *ecid = json_object_get(ev, "correlationId");
        if (!json_is_string(ecid) || strcmp(json_string_value(cid), json_string_value(ecid)) != 0)
            return 0;
    }
    json_t *ctx = json_object_get(criteria, "context");
    if (json_is_object(ctx)) {
        json_t *ectx = json_object_get(ev, "context");
        const char *k;
        json_t *v;
        json_object_foreach(ctx, k, v)
        {
            json_t *ev_v = json_object_get(ectx, k);
            if (!ev_v || !json_equal(v, ev_v)) return 0;
        }
    }
    return 1;
}

json_t *event_path_get(json_t *doc, const char *path)
{
    char key[256];
    const char *p = path;
    json_t *cur = doc;
    while (cur && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n == 0 || n >= sizeof(key)) return NULL;
        memcpy(key, p, n);
        key[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, key);
        } else if (json_is_array(cur)) {
            /* an index is plain decimal digits: no sign, space or leading zero */
            if (strspn(key, "0123456789") != n || (n > 1 && key[0] == '0') || n > 9) return NULL;
            cur = json_array_get(cur, strtoul(key, NULL, 10));
        } else {
            return NULL;
        }
        p = dot ? dot + 1 : p + n;
        if (dot && !*p) return NULL; /* "payload." names nothing */
    }
    return cur;
}

json_t *event_project(json_t *map, json_t *ev)
{
    if (!json_is_object(map) || json_object_size(map) == 0) return json_incref(ev);
    json_t *out = json_object();
    if (!out) return NULL;
    const char *k;
    json_t *v;
    json_object_foreach(map, k, v)
    {
        json_t *val = json_is_string(v) ? event_path_get(ev, json_string_value(v)) : NULL;
        if (val && json_object_set(out, k, val) < 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}
