/* streams/event and streams/stream: event validation, criteria, paths into an event
 * (nested keys, array indexes, missing, non-containers), projections, and the error
 * paths of stream_validate (each names the offending path). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "streams/event.h"
#include "streams/stream.h"

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
    cr_assert(v, "bad test JSON %s: %s", text, e.text);
    return v;
}

static void assert_json_eq(json_t *got, const char *want_text, const char *what)
{
    json_t *want = J(want_text);
    char *g = got ? json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
    cr_assert(got && json_equal(got, want), "%s: got %s, want %s", what, g ? g : "NULL", want_text);
    free(g);
    json_decref(want);
}

#define EVENT                                                                                      \
    "{\"namespace\":\"status-service\",\"name\":\"health-check-started\","                         \
    "\"timestamp\":\"2026-11-23T10:00:00Z\",\"correlationId\":\"c-1\","                            \
    "\"context\":{\"site\":\"a\",\"level\":2,\"tags\":[\"x\",\"y\"],\"nested\":{\"k\":null}},"     \
    "\"payload\":{\"application\":{\"name\":\"a1\"},\"status\":\"ok\",\"count\":3,"                \
    "\"items\":[{\"id\":\"i0\",\"tags\":[\"p\",\"q\"]},{\"id\":\"i1\"},[10,11]],"                  \
    "\"empty\":{},\"nil\":null}}"

/* ---- event_validate ---- */

static void expect_valid(const char *text)
{
    json_t *ev = J(text);
    char err[256] = "";
    cr_assert_eq(event_validate(ev, err, sizeof(err)), 0, "%s refused: %s", text, err);
    json_decref(ev);
}

static void expect_invalid(const char *text, const char *mention)
{
    json_t *ev = J(text);
    char err[256] = "";
    cr_assert_eq(event_validate(ev, err, sizeof(err)), -EINVAL, "%s accepted", text);
    cr_assert(strstr(err, mention), "%s: error \"%s\" does not mention %s", text, err, mention);
    json_decref(ev);
}

Test(event_validate, accepts_the_documented_shape)
{
    expect_valid(EVENT);
    expect_valid("{\"namespace\":\"n\",\"name\":\"e\",\"timestamp\":\"t\",\"payload\":1}");
    expect_valid("{\"namespace\":\"n\",\"name\":\"e\",\"timestamp\":\"t\",\"payload\":null}");
    expect_valid("{\"namespace\":\"n\",\"name\":\"e\",\"timestamp\":\"t\",\"payload\":[],"
                 "\"correlationId\":null,\"context\":null}");
    expect_valid("{\"namespace\":\"n\",\"name\":\"e\",\"timestamp\":\"t\",\"payload\":{},"
                 "\"tenantId\":\"t1\"}");
}

Test(event_validate, refuses_naming_the_field)
{
    expect_invalid("[]", "object");
    expect_invalid("\"event\"", "object");
    expect_invalid("null", "object");
    expect_invalid("{\"name\":\"e\",\"timestamp\":\"t\",\"payload\":1}", "namespace");
    expect_invalid("{\"namespace\":\"\",\"name\":\"e\",\"timestamp\":\"t\",\"payload\":1}",
                   "namespace");
    expect_invalid("{\"namespace\":7,\"name\":\"e\",\"timestamp\":\"t\",\"payload\":1}",
                   "namespace");
    expect_invalid("{\"namespace\":\"n\",\"timestamp\":\"t\",\"payload\":1}", "name");
    expect_invalid("{\"namespace\":\"n\",\"name\":\"\",\"timestamp\":\"t\",\"payload\":1}", "name");
    expect_invalid("{\"namespace\":\"n\",\"name\":\"e\",\"payload\":1}", "timestamp");
    expect_invalid("{\"namespace\":\"n\",\"name\":\"e\",\"timestamp\":1,\"payload\":1}",
                   "timestamp");
    expect_invalid("{\"namespace\":\"n\",\"name\":\"e\",\"timestamp\":\"\",\"payload\":1}",
                   "timestamp");
    expect_invalid("{\"namespace\":\"n\",\"name\":\"e\",\"timestamp\":\"t\",\"payload\":1,"
                   "\"correlationId\":5}",
                   "correlationId");
    expect_invalid("{\"namespace\":\"n\",\"name\":\"e\",\"timestamp\":\"t\",\"payload\":1,"
                   "\"context\":[1]}",
                   "context");
    expect_invalid("{\"namespace\":\"n\",\"name\":\"e\",\"timestamp\":\"t\",\"payload\":1,"
                   "\"context\":\"a\"}",
                   "context");
    expect_invalid("{\"namespace\":\"n\",\"name\":\"e\",\"timestamp\":\"t\"}", "payload");
    expect_invalid("{\"namespace\":\"n\",\"name\":\"e\",\"timestamp\":\"t\",\"payload\":1,"
                   "\"severity\":\"high\"}",
                   "severity");
}

Test(event_validate, a_tiny_error_buffer_is_not_overrun)
{
    json_t *ev = J("{\"namespace\":\"n\",\"name\":\"e\",\"timestamp\":\"t\"}");
    char err[8];
    memset(err, 'X', sizeof(err));
    cr_assert_eq(event_validate(ev, err, 4), -EINVAL);
    cr_assert_eq(err[3], '\0', "truncated and terminated");
    cr_assert_eq(err[4], 'X', "nothing written past errlen");
    json_decref(ev);
}

/* ---- event_criteria_hold ---- */

static int holds(const char *criteria, const char *event)
{
    json_t *c = criteria ? J(criteria) : NULL;
    json_t *e = J(event);
    int r = event_criteria_hold(c, e);
    json_decref(c);
    json_decref(e);
    return r;
}

Test(event_criteria_hold, none_or_empty_always_hold)
{
    cr_assert_eq(holds(NULL, EVENT), 1);
    cr_assert_eq(holds("{}", EVENT), 1);
    cr_assert_eq(holds("null", EVENT), 1);
    cr_assert_eq(holds("{\"context\":{}}", EVENT), 1);
    cr_assert_eq(holds("{\"context\":{}}", "{\"payload\":1}"), 1);
}

Test(event_criteria_hold, correlation_id_must_be_equal)
{
    cr_assert_eq(holds("{\"correlationId\":\"c-1\"}", EVENT), 1);
    cr_assert_eq(holds("{\"correlationId\":\"c-2\"}", EVENT), 0);
    cr_assert_eq(holds("{\"correlationId\":\"c-10\"}", EVENT), 0);
    cr_assert_eq(holds("{\"correlationId\":\"c\"}", EVENT), 0, "a prefix is not equal");
    cr_assert_eq(holds("{\"correlationId\":\"C-1\"}", EVENT), 0, "case-sensitive");
    cr_assert_eq(holds("{\"correlationId\":\"\"}", EVENT), 0);
    cr_assert_eq(holds("{\"correlationId\":\"c-1\"}", "{\"payload\":1}"), 0, "absent");
    cr_assert_eq(holds("{\"correlationId\":\"c-1\"}", "{\"correlationId\":null}"), 0);
    cr_assert_eq(holds("{\"correlationId\":\"1\"}", "{\"correlationId\":1}"), 0,
                 "a number is not the string");
}

Test(event_criteria_hold, context_is_a_json_equal_subset)
{
    cr_assert_eq(holds("{\"context\":{\"site\":\"a\"}}", EVENT), 1);
    cr_assert_eq(holds("{\"context\":{\"site\":\"a\",\"level\":2}}", EVENT), 1);
    cr_assert_eq(holds("{\"context\":{\"tags\":[\"x\",\"y\"]}}", EVENT), 1);
    cr_assert_eq(holds("{\"context\":{\"nested\":{\"k\":null}}}", EVENT), 1);
    cr_assert_eq(holds("{\"context\":{\"site\":\"b\"}}", EVENT), 0);
    cr_assert_eq(holds("{\"context\":{\"level\":\"2\"}}", EVENT), 0, "string vs number");
    cr_assert_eq(holds("{\"context\":{\"tags\":[\"y\",\"x\"]}}", EVENT), 0, "array order");
    cr_assert_eq(holds("{\"context\":{\"tags\":[\"x\"]}}", EVENT), 0, "arrays are not subsets");
    cr_assert_eq(holds("{\"context\":{\"nested\":{}}}", EVENT), 0, "objects compare whole");
    cr_assert_eq(holds("{\"context\":{\"site\":\"a\",\"missing\":1}}", EVENT), 0);
    cr_assert_eq(holds("{\"context\":{\"nested\":null}}", EVENT), 0);
    cr_assert_eq(holds("{\"context\":{\"site\":\"a\"}}", "{\"payload\":1}"), 0, "no context");
    cr_assert_eq(holds("{\"context\":{\"site\":\"a\"}}", "{\"context\":null}"), 0);
    cr_assert_eq(holds("{\"context\":{\"site\":\"a\"}}", "{\"context\":[\"site\"]}"), 0);
}

Test(event_criteria_hold, both_must_hold)
{
    cr_assert_eq(holds("{\"correlationId\":\"c-1\",\"context\":{\"site\":\"a\"}}", EVENT), 1);
    cr_assert_eq(holds("{\"correlationId\":\"c-2\",\"context\":{\"site\":\"a\"}}", EVENT), 0);
    cr_assert_eq(holds("{\"correlationId\":\"c-1\",\"context\":{\"site\":\"z\"}}", EVENT), 0);
}

/* ---- event_path_get ---- */

static void expect_path(json_t *doc, const char *path, const char *want)
{
    json_t *v = event_path_get(doc, path);
    if (!want) {
        char *g = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        cr_assert_null(v, "path \"%s\" should lead nowhere, got %s", path, g ? g : "?");
        free(g);
        return;
    }
    char what[300];
    snprintf(what, sizeof(what), "path \"%s\"", path);
    assert_json_eq(v, want, what);
}

Test(event_path_get, nested_keys_and_array_indexes)
{
    json_t *ev = J(EVENT);
    expect_path(ev, "namespace", "\"status-service\"");
    expect_path(ev, "timestamp", "\"2026-11-23T10:00:00Z\"");
    expect_path(ev, "payload.status", "\"ok\"");
    expect_path(ev, "payload.application.name", "\"a1\"");
    expect_path(ev, "payload.application", "{\"name\":\"a1\"}");
    expect_path(ev, "payload.items.0.id", "\"i0\"");
    expect_path(ev, "payload.items.1.id", "\"i1\"");
    expect_path(ev, "payload.items.0.tags.1", "\"q\"");
    expect_path(ev, "payload.items.2.0", "10");
    expect_path(ev, "payload.items.2.1", "11");
    expect_path(ev, "context.tags.0", "\"x\"");
    expect_path(ev, "context.nested.k", "null");
    expect_path(ev, "payload.nil", "null");
    expect_path(ev, "payload.empty", "{}");
    /* a borrowed reference into the document itself */
    cr_assert_eq(event_path_get(ev, "payload.application"),
                 json_object_get(json_object_get(ev, "payload"), "application"));
    json_decref(ev);
}

Test(event_path_get, missing_paths)
{
    json_t *ev = J(EVENT);
    expect_path(ev, "nope", NULL);
    expect_path(ev, "payload.nope", NULL);
    expect_path(ev, "payload.nope.deeper", NULL);
    expect_path(ev, "payload.items.3", NULL);
    expect_path(ev, "payload.items.3.id", NULL);
    expect_path(ev, "payload.items.99999999999999999999999", NULL);
    expect_path(ev, "payload.items.-1", NULL);
    expect_path(ev, "payload.items.first", NULL);
    expect_path(ev, "payload.items.1x", NULL);
    expect_path(ev, "payload.items.0.nope", NULL);
    expect_path(ev, "payload..status", NULL);
    expect_path(ev, ".payload", NULL);
    expect_path(ev, "Payload.status", NULL);
    json_decref(ev);
}

Test(event_path_get, into_non_containers)
{
    json_t *ev = J(EVENT);
    expect_path(ev, "payload.status.x", NULL);
    expect_path(ev, "payload.status.0", NULL);
    expect_path(ev, "payload.count.0", NULL);
    expect_path(ev, "payload.nil.x", NULL);
    expect_path(ev, "namespace.length", NULL);
    expect_path(ev, "payload.items.0.id.x", NULL);
    json_decref(ev);
    json_t *s = json_string("text");
    expect_path(s, "a", NULL);
    json_decref(s);
    cr_assert_null(event_path_get(NULL, "a"));
}

Test(event_path_get, long_keys_do_not_overflow)
{
    /* a key longer than any internal buffer: found nowhere, and nothing is overrun */
    size_t n = 4096;
    char *path = malloc(n + 16);
    cr_assert(path);
    memcpy(path, "payload.", 8);
    memset(path + 8, 'k', n);
    path[8 + n] = '\0';
    json_t *ev = J(EVENT);
    json_object_set_new(json_object_get(ev, "payload"), path + 8, json_string("long"));
    /* either found or not; what matters is no overrun (run under ASan) */
    json_t *v = event_path_get(ev, path);
    cr_assert(v == NULL || json_is_string(v));
    json_decref(ev);
    free(path);
}

/* ---- event_project ---- */

static void expect_project(const char *map, const char *want)
{
    json_t *m = map ? J(map) : NULL;
    json_t *ev = J(EVENT);
    json_t *out = event_project(m, ev);
    char what[512];
    snprintf(what, sizeof(what), "project %s", map ? map : "NULL");
    assert_json_eq(out, want, what);
    json_decref(out);
    json_decref(ev);
    json_decref(m);
}

Test(event_project, no_map_is_the_whole_event)
{
    json_t *ev = J(EVENT);
    json_t *out = event_project(NULL, ev);
    cr_assert_eq(out, ev, "NULL map: the event itself (a new reference)");
    json_decref(out);
    json_t *empty = json_object();
    out = event_project(empty, ev);
    cr_assert_eq(out, ev, "{} map: the event itself");
    json_decref(out);
    cr_assert_eq(ev->refcount, 1, "every reference handed out was a new one");
    json_decref(empty);
    json_decref(ev);
}

Test(event_project, map_of_paths)
{
    expect_project("{\"app\":\"payload.application.name\",\"status\":\"payload.status\"}",
                   "{\"app\":\"a1\",\"status\":\"ok\"}");
    expect_project("{\"first\":\"payload.items.0.id\",\"tag\":\"payload.items.0.tags.1\","
                   "\"site\":\"context.site\",\"when\":\"timestamp\",\"cid\":\"correlationId\"}",
                   "{\"first\":\"i0\",\"tag\":\"q\",\"site\":\"a\","
                   "\"when\":\"2026-11-23T10:00:00Z\",\"cid\":\"c-1\"}");
    expect_project("{\"items\":\"payload.items\",\"ctx\":\"context.nested\"}",
                   "{\"items\":[{\"id\":\"i0\",\"tags\":[\"p\",\"q\"]},{\"id\":\"i1\"},[10,11]],"
                   "\"ctx\":{\"k\":null}}");
    expect_project("{\"same\":\"payload.status\",\"again\":\"payload.status\"}",
                   "{\"same\":\"ok\",\"again\":\"ok\"}");
    expect_project("{\"nil\":\"payload.nil\"}", "{\"nil\":null}");
}

Test(event_project, missing_paths_are_left_out)
{
    expect_project("{\"app\":\"payload.application.name\",\"gone\":\"payload.nope\","
                   "\"deep\":\"payload.nope.x\",\"idx\":\"payload.items.7.id\","
                   "\"str\":\"payload.status.x\"}",
                   "{\"app\":\"a1\"}");
    expect_project("{\"gone\":\"payload.nope\"}", "{}");
    /* map values that are not strings select nothing */
    expect_project("{\"n\":5,\"o\":{},\"ok\":\"payload.count\"}", "{\"ok\":3}");
}

Test(event_project, the_projection_is_independent_of_later_changes_to_the_map)
{
    json_t *m = J("{\"app\":\"payload.application.name\"}");
    json_t *ev = J(EVENT);
    json_t *out = event_project(m, ev);
    json_decref(m);
    assert_json_eq(out, "{\"app\":\"a1\"}", "projection after the map is gone");
    json_decref(out);
    json_decref(ev);
}

/* ---- stream_validate ---- */

static void expect_stream_ok(const char *id, const char *text)
{
    json_t *s = J(text);
    char err[512] = "";
    cr_assert_eq(stream_validate(s, id, "update.s", err, sizeof(err)), 0, "%s refused: %s", text,
                 err);
    json_decref(s);
}

static void expect_stream_err(const char *id, const char *text, const char *path)
{
    json_t *s = J(text);
    char err[512] = "";
    cr_assert_eq(stream_validate(s, id, "update.s", err, sizeof(err)), -EINVAL, "%s accepted",
                 text);
    cr_assert(strstr(err, path), "%s: error \"%s\" does not name %s", text, err, path);
    json_decref(s);
}

#define HE "{\"namespace\":\"status-service\",\"name\":\"health-check-started\"}"

Test(stream_validate, valid_documents)
{
    expect_stream_ok("s", "{\"events\":[]}");
    expect_stream_ok("s", "{\"events\":[" HE "]}");
    expect_stream_ok("s", "{\"id\":\"s\",\"name\":\"n\",\"description\":\"d\","
                          "\"publicSubscribe\":true,\"subscriberRoles\":[\"a\",\"b\"],"
                          "\"events\":[{\"namespace\":\"n\",\"name\":\"e\",\"map\":{},"
                          "\"criteria\":{}}]}");
    expect_stream_ok("s", "{\"events\":[{\"namespace\":\"n\",\"name\":\"e\",\"map\":null,"
                          "\"criteria\":null}]}");
    expect_stream_ok("s", "{\"events\":[{\"namespace\":\"n\",\"name\":\"e\","
                          "\"map\":{\"a\":\"payload.a\",\"b\":\"payload.items.0.id\"},"
                          "\"criteria\":{\"correlationId\":\"c\",\"context\":{\"k\":[1]}}}]}");
    char id[129];
    memset(id, 'i', 128);
    id[128] = '\0';
    expect_stream_ok(id, "{\"events\":[]}");
    expect_stream_ok("a.b-c_d:e@f", "{\"events\":[]}");
}

Test(stream_validate, error_paths)
{
    expect_stream_err("s", "[]", "update.s");
    expect_stream_err("s", "\"x\"", "update.s");
    expect_stream_err("s", "{}", "update.s.events");
    expect_stream_err("s", "{\"events\":{}}", "update.s.events");
    expect_stream_err("s", "{\"events\":[" HE "],\"colour\":\"red\"}", "update.s.colour");
    expect_stream_err("s", "{\"events\":[],\"id\":\"t\"}", "update.s.id");
    expect_stream_err("s", "{\"events\":[],\"id\":null}", "update.s.id");
    expect_stream_err("s", "{\"events\":[],\"name\":1}", "update.s.name");
    expect_stream_err("s", "{\"events\":[],\"description\":[]}", "update.s.description");
    expect_stream_err("s", "{\"events\":[],\"publicSubscribe\":\"true\"}",
                      "update.s.publicSubscribe");
    expect_stream_err("s", "{\"events\":[],\"publicSubscribe\":1}", "update.s.publicSubscribe");
    expect_stream_err("s", "{\"events\":[],\"subscriberRoles\":\"a\"}", "update.s.subscriberRoles");
    expect_stream_err("s", "{\"events\":[],\"subscriberRoles\":[\"a\",2]}",
                      "update.s.subscriberRoles[1]");
    expect_stream_err("s", "{\"events\":[7]}", "update.s.events[0]");
    expect_stream_err("s", "{\"events\":[{\"name\":\"e\"}]}", "update.s.events[0].namespace");
    expect_stream_err("s", "{\"events\":[" HE ",{\"namespace\":\"\",\"name\":\"e\"}]}",
                      "update.s.events[1].namespace");
    expect_stream_err("s", "{\"events\":[" HE "," HE ",{\"namespace\":\"n\"}]}",
                      "update.s.events[2].name");
    expect_stream_err("s", "{\"events\":[{\"namespace\":\"n\",\"name\":5}]}",
                      "update.s.events[0].name");
    expect_stream_err("s", "{\"events\":[{\"namespace\":\"n\",\"name\":\"e\",\"filter\":1}]}",
                      "update.s.events[0].filter");
    expect_stream_err("s", "{\"events\":[{\"namespace\":\"n\",\"name\":\"e\",\"map\":[]}]}",
                      "update.s.events[0].map");
    expect_stream_err("s", "{\"events\":[{\"namespace\":\"n\",\"name\":\"e\",\"map\":{\"a\":1}}]}",
                      "update.s.events[0].map.a");
    expect_stream_err("s",
                      "{\"events\":[{\"namespace\":\"n\",\"name\":\"e\",\"map\":{\"a\":\"\"}}]}",
                      "update.s.events[0].map.a");
    expect_stream_err("s", "{\"events\":[{\"namespace\":\"n\",\"name\":\"e\",\"criteria\":1}]}",
                      "update.s.events[0].criteria");
    expect_stream_err("s",
                      "{\"events\":[{\"namespace\":\"n\",\"name\":\"e\","
                      "\"criteria\":{\"tenant\":\"x\"}}]}",
                      "update.s.events[0].criteria.tenant");
    expect_stream_err("s",
                      "{\"events\":[{\"namespace\":\"n\",\"name\":\"e\","
                      "\"criteria\":{\"correlationId\":1}}]}",
                      "update.s.events[0].criteria.correlationId");
    expect_stream_err("s",
                      "{\"events\":[{\"namespace\":\"n\",\"name\":\"e\","
                      "\"criteria\":{\"context\":\"a\"}}]}",
                      "update.s.events[0].criteria.context");
}

Test(stream_validate, stream_ids)
{
    char id[130];
    memset(id, 'i', 129);
    id[129] = '\0';
    expect_stream_err(id, "{\"events\":[]}", "update.s");
    expect_stream_err("", "{\"events\":[]}", "update.s");
    expect_stream_err("a b", "{\"events\":[]}", "update.s");
    expect_stream_err("a/b", "{\"events\":[]}", "update.s");
    expect_stream_err("a?b", "{\"events\":[]}", "update.s");
    expect_stream_err("a#b", "{\"events\":[]}", "update.s");
    expect_stream_err("a\nb", "{\"events\":[]}", "update.s");
    expect_stream_err("a\rb", "{\"events\":[]}", "update.s");
}

Test(stream_validate, long_paths_and_small_buffers)
{
    /* a long path prefix and a long map key: messages are truncated, never overrun */
    char path[400];
    memset(path, 'p', sizeof(path) - 1);
    path[sizeof(path) - 1] = '\0';
    json_t *s = J("{\"events\":[{\"namespace\":\"n\",\"name\":\"e\",\"criteria\":{\"bad\":1}}]}");
    char err[512];
    cr_assert_eq(stream_validate(s, "s", path, err, sizeof(err)), -EINVAL);
    cr_assert(strlen(err) < sizeof(err));
    char small[16];
    memset(small, 'X', sizeof(small));
    cr_assert_eq(stream_validate(s, "s", "update.s", small, 6), -EINVAL);
    cr_assert_eq(small[5], '\0');
    cr_assert_eq(small[6], 'X', "nothing written past errlen");
    json_decref(s);

    char key[600];
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    json_t *m = json_object();
    json_object_set_new(m, key, json_integer(1));
    json_t *doc = J("{\"events\":[{\"namespace\":\"n\",\"name\":\"e\"}]}");
    json_object_set_new(json_array_get(json_object_get(doc, "events"), 0), "map", m);
    cr_assert_eq(stream_validate(doc, "s", path, err, sizeof(err)), -EINVAL);
    cr_assert(strlen(err) < sizeof(err));
    json_decref(doc);
}
