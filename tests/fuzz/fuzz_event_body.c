/* libFuzzer target for domain events (seed 002) against stream entries: the input is
 * parsed as JSON. An array [event, map, criteria] gives the three parts; an object is
 * the event, and its own `map` and `criteria` members (if any) are used as those.
 * event_validate, event_criteria_hold, event_project and event_path_get run on them;
 * a projection must hold only keys of the map, each with exactly the value
 * event_path_get finds; an empty or absent map gives the event itself. The first line
 * of the raw input is also used as a path into a fixed event. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "streams/event.h"

static volatile size_t sink;

static const char FIXED[] =
    "{\"namespace\":\"status-service\",\"name\":\"health-check-started\","
    "\"timestamp\":\"2026-11-23T10:00:00Z\",\"correlationId\":\"c-1\","
    "\"context\":{\"site\":\"a\",\"tags\":[\"x\",\"y\"]},"
    "\"payload\":{\"application\":{\"name\":\"a1\"},\"items\":[{\"id\":\"i0\"},[1,[2]]]}}";

static void check_projection(json_t *map, json_t *ev)
{
    json_t *out = event_project(map, ev);
    if (!out) __builtin_trap(); /* only on out of memory */
    if (!json_is_object(map) || json_object_size(map) == 0) {
        if (out != ev) __builtin_trap();
        json_decref(out);
        return;
    }
    if (!json_is_object(out)) __builtin_trap();
    const char *k;
    json_t *v;
    json_object_foreach(out, k, v)
    {
        json_t *path = json_object_get(map, k);
        if (!json_is_string(path)) __builtin_trap();
        json_t *want = event_path_get(ev, json_string_value(path));
        if (!want || !json_equal(want, v)) __builtin_trap();
    }
    json_object_foreach(map, k, v)
    {
        json_t *found = json_is_string(v) ? event_path_get(ev, json_string_value(v)) : NULL;
        if ((found != NULL) != (json_object_get(out, k) != NULL)) __builtin_trap();
    }
    char *s = json_dumps(out, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s) sink += strlen(s);
    free(s);
    json_decref(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static json_t *fixed;
    if (!fixed) fixed = json_loads(FIXED, 0, NULL);

    /* the first line of the input as a path into a fixed event */
    size_t pl = 0;
    while (pl < size && pl < 512 && data[pl] != '\n')
        pl++;
    char *path = malloc(pl + 1);
    if (path) {
        memcpy(path, data, pl);
        path[pl] = '\0';
        json_t *v = event_path_get(fixed, path);
        if (v) sink += json_typeof(v);
        json_t *one = json_pack("{s:s}", "x", path);
        if (one) check_projection(one, fixed);
        json_decref(one);
        free(path);
    }

    json_t *doc = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (!doc) return 0;
    json_t *ev, *map, *criteria;
    if (json_is_array(doc)) {
        ev = json_array_get(doc, 0);
        map = json_array_get(doc, 1);
        criteria = json_array_get(doc, 2);
    } else {
        ev = doc;
        map = json_object_get(doc, "map");
        criteria = json_object_get(doc, "criteria");
    }
    if (!ev) {
        json_decref(doc);
        return 0;
    }
    char err[256];
    memset(err, 'X', sizeof(err));
    int valid = event_validate(ev, err, sizeof(err));
    if (valid != 0 && (memchr(err, '\0', sizeof(err)) == NULL || err[0] == '\0'))
        __builtin_trap(); /* a refusal always says why, terminated */
    char tiny[4];
    memset(tiny, 'X', sizeof(tiny));
    if (event_validate(ev, tiny, 3) != valid || (valid && tiny[2] != '\0') || tiny[3] != 'X')
        __builtin_trap();

    int h1 = event_criteria_hold(criteria, ev);
    if (h1 != 0 && h1 != 1) __builtin_trap();
    if (event_criteria_hold(criteria, ev) != h1) __builtin_trap();
    /* criteria against themselves and the fixed event: anything goes, nothing breaks */
    sink += (size_t)event_criteria_hold(ev, criteria ? criteria : ev);
    sink += (size_t)event_criteria_hold(criteria, fixed);
    /* an empty criteria object always holds */
    json_t *empty = json_object();
    if (event_criteria_hold(empty, ev) != 1) __builtin_trap();
    json_decref(empty);

    check_projection(map, ev);
    check_projection(map, fixed);
    /* every string anywhere in the map as a path */
    if (json_is_object(map)) {
        const char *k;
        json_t *v;
        json_object_foreach(map, k, v)
        {
            sink += event_path_get(ev, k) != NULL;
            sink += event_path_get(fixed, k) != NULL;
        }
    }
    json_decref(doc);
    return 0;
}
