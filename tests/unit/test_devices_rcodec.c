/* store/devices_rcodec: the device queue's records in Redis. A command's fields as
 * they are written, then read back as HGETALL gives them (any order, unknown fields
 * ignored, required ones checked); orphans; the wake-up messages between nodes. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/devices_rcodec.h"

#define R(lit) ((devices_rstr_t){lit, sizeof(lit) - 1})

/* The fields the enqueue script adds to the command's own. */
static size_t with_state(devices_rstr_t *kv, size_t n)
{
    devices_rstr_t extra[] = {
        R("id"),     R("17"),           R("device"), R("-42"),       R("status"),
        R("sent"),   R("attempts"),     R("2"),      R("createdAt"), R("1732377600000"),
        R("sentAt"), R("1732377601000")};
    memcpy(kv + n, extra, sizeof(extra));
    return n + sizeof(extra) / sizeof(extra[0]);
}

Test(devices_rcodec, a_full_command_round_trips)
{
    device_cmd_t in = {.verb = "GET",
                       .endpoint = "user_list",
                       .body = "{\"a\":[1,2]}",
                       .body_json = 1,
                       .content_type = "application/json; charset=utf-8",
                       .query_string = "limit=10&x=\xc3\xa9"};
    devices_rstr_t kv[40];
    size_t n = devices_rcmd_fields(&in, kv);
    cr_assert_eq(n, 12);
    cr_assert_leq(n, DEVICES_RCMD_FIELDS_MAX);
    n = with_state(kv, n);
    devices_cmd_t c;
    cr_assert_eq(devices_rcmd_decode(kv, n, &c), 0);
    cr_assert_eq(c.id, 17);
    cr_assert_eq(c.device_id, -42);
    cr_assert_eq(c.status, DEVICES_SENT);
    cr_assert_eq(c.attempts, 2);
    cr_assert_eq(c.created_at, 1732377600000LL);
    cr_assert_eq(c.sent_at, 1732377601000LL);
    cr_assert_eq(c.expires_at, 0);
    cr_assert_eq(c.completed_at, 0);
    cr_assert_str_eq(c.cmd.verb, "GET");
    cr_assert_str_eq(c.cmd.endpoint, "user_list");
    cr_assert_str_eq(c.cmd.body, "{\"a\":[1,2]}");
    cr_assert_eq(c.cmd.body_json, 1);
    cr_assert_str_eq(c.cmd.content_type, "application/json; charset=utf-8");
    cr_assert_str_eq(c.cmd.query_string, "limit=10&x=\xc3\xa9");
    cr_assert_null(c.response);
    cr_assert_null(c.error);
    devices_cmd_clear(&c);
}

Test(devices_rcodec, defaults_and_absent_fields)
{
    device_cmd_t in = {.endpoint = "reboot"};
    devices_rstr_t kv[40];
    size_t n = devices_rcmd_fields(&in, kv);
    cr_assert_eq(n, 6, "verb, endpoint, contentType only");
    n = with_state(kv, n);
    devices_cmd_t c;
    cr_assert_eq(devices_rcmd_decode(kv, n, &c), 0);
    cr_assert_str_eq(c.cmd.verb, "POST");
    cr_assert_str_eq(c.cmd.content_type, "application/json");
    cr_assert_null(c.cmd.body);
    cr_assert_eq(c.cmd.body_json, 0);
    cr_assert_null(c.cmd.query_string);
    devices_cmd_clear(&c);
    /* a string body is not JSON */
    device_cmd_t s = {.endpoint = "e", .body = "plain", .content_type = "text/plain"};
    n = with_state(kv, devices_rcmd_fields(&s, kv));
    cr_assert_eq(devices_rcmd_decode(kv, n, &c), 0);
    cr_assert_str_eq(c.cmd.body, "plain");
    cr_assert_eq(c.cmd.body_json, 0);
    devices_cmd_clear(&c);
}

Test(devices_rcodec, finished_command_with_response_and_error)
{
    devices_rstr_t kv[] = {
        R("error"),        R("disk full"), R("status"),    R("failed"), R("completedAt"), R("99"),
        R("response"),     R("null"),      R("verb"),      R("POST"),   R("endpoint"),    R("x"),
        R("contentType"),  R("a/b"),       R("id"),        R("1"),      R("device"),      R("0"),
        R("attempts"),     R("1"),         R("createdAt"), R("5"),      R("expiresAt"),   R("50"),
        R("somethingNew"), R("ignored")};
    devices_cmd_t c;
    cr_assert_eq(devices_rcmd_decode(kv, sizeof(kv) / sizeof(kv[0]), &c), 0);
    cr_assert_eq(c.status, DEVICES_FAILED);
    cr_assert_str_eq(c.error, "disk full");
    cr_assert_str_eq(c.response, "null");
    cr_assert_eq(c.completed_at, 99);
    cr_assert_eq(c.expires_at, 50);
    devices_cmd_clear(&c);
}

Test(devices_rcodec, malformed_commands_are_refused)
{
    device_cmd_t in = {.endpoint = "e"};
    devices_rstr_t kv[40];
    size_t base = with_state(kv, devices_rcmd_fields(&in, kv));
    devices_cmd_t c;
    /* each required field missing in turn */
    for (size_t skip = 0; skip < base; skip += 2) {
        devices_rstr_t less[40];
        size_t n = 0;
        for (size_t i = 0; i < base; i += 2) {
            if (i == skip) continue;
            less[n++] = kv[i];
            less[n++] = kv[i + 1];
        }
        int required = strncmp(kv[skip].s, "sentAt", kv[skip].len) != 0;
        cr_assert_eq(devices_rcmd_decode(less, n, &c), required ? -EINVAL : 0, "without %.*s",
                     (int)kv[skip].len, kv[skip].s);
        if (!required) devices_cmd_clear(&c);
    }
    /* bad values */
    const char *bad[][2] = {{"status", "lost"},         {"id", "x1"},      {"attempts", "-1"},
                            {"createdAt", ""},          {"device", "1.5"}, {"sentAt", " 1"},
                            {"attempts", "99999999999"}};
    for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
        devices_rstr_t k2[42];
        memcpy(k2, kv, base * sizeof(kv[0]));
        k2[base] = (devices_rstr_t){bad[b][0], strlen(bad[b][0])};
        k2[base + 1] = (devices_rstr_t){bad[b][1], strlen(bad[b][1])};
        cr_assert_eq(devices_rcmd_decode(k2, base + 2, &c), -EINVAL, "%s=%s", bad[b][0], bad[b][1]);
    }
    /* a NUL inside a string value */
    devices_rstr_t k3[42];
    memcpy(k3, kv, base * sizeof(kv[0]));
    k3[base] = R("endpoint");
    k3[base + 1] = (devices_rstr_t){"a\0b", 3};
    cr_assert_eq(devices_rcmd_decode(k3, base + 2, &c), -EINVAL);
}

Test(devices_rcodec, orphans)
{
    devices_rstr_t kv[] = {R("id"),         R("3"),  R("device"),   R("9"),
                           R("receivedAt"), R("50"), R("response"), R("{\"x\":1}")};
    devices_orphan_t o;
    cr_assert_eq(devices_rorphan_decode(kv, 8, &o), 0);
    cr_assert_eq(o.id, 3);
    cr_assert_eq(o.device_id, 9);
    cr_assert_eq(o.received_at, 50);
    cr_assert_str_eq(o.response, "{\"x\":1}");
    cr_assert_null(o.error);
    devices_orphan_clear(&o);
    cr_assert_eq(devices_rorphan_decode(kv, 4, &o), -EINVAL, "no receivedAt");
}

Test(devices_rcodec, wake_ups)
{
    devices_wake_t w[4];
    const char *node;
    size_t nl;
    const char *m = "r17,p-42,p9223372036854775807 node 1";
    cr_assert_eq(devices_wake_parse(m, strlen(m), w, 4, &node, &nl), 3);
    cr_assert_eq(w[0].kind, DEVICES_WAKE_RESULT);
    cr_assert_eq(w[0].key, 17);
    cr_assert_eq(w[1].kind, DEVICES_WAKE_POLL);
    cr_assert_eq(w[1].key, -42);
    cr_assert_eq(w[2].key, INT64_MAX);
    cr_assert_eq(nl, 6);
    cr_assert_eq(memcmp(node, "node 1", 6), 0);
    cr_assert_eq(devices_wake_parse("p1 n", 4, w, 1, &node, &nl), 1);
    const char *bad[] = {"",
                         "p1",
                         "p1 ",
                         " n",
                         "x1 n",
                         "p n",
                         "p1,,p2 n",
                         "p1, n",
                         ",p1 n",
                         "p1x n",
                         "p+1 n",
                         "p99999999999999999999 n",
                         "p1,p2,p3,p4,p5 n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(devices_wake_parse(bad[i], strlen(bad[i]), w, 4, &node, &nl), -EINVAL, "%s",
                     bad[i]);
}
