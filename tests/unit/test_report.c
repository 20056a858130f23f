/* hub/report: counts kept right through add/set/move, and report_render's PushResponse
 * JSON parsed back with jansson. */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "hub/report.h"

static void expect_counts(const report_t *r, uint64_t matched, uint64_t delivered, uint64_t failed,
                          uint64_t acked)
{
    cr_assert_eq(r->matched, matched, "matched %llu, want %llu", (unsigned long long)r->matched,
                 (unsigned long long)matched);
    cr_assert_eq(r->delivered, delivered, "delivered %llu, want %llu",
                 (unsigned long long)r->delivered, (unsigned long long)delivered);
    cr_assert_eq(r->failed, failed, "failed %llu, want %llu", (unsigned long long)r->failed,
                 (unsigned long long)failed);
    cr_assert_eq(r->acknowledged, acked, "acknowledged %llu, want %llu",
                 (unsigned long long)r->acknowledged, (unsigned long long)acked);
}

static json_t *render(const char *push_id, report_t *const *nodes, size_t n, char *const *missing,
                      size_t n_missing, int full)
{
    buf_t *b = report_render(push_id, nodes, n, missing, n_missing, full);
    cr_assert_not_null(b);
    cr_assert_eq(strlen(b->data), b->len, "no NUL inside the JSON");
    json_error_t e;
    json_t *doc = json_loadb(b->data, b->len, JSON_REJECT_DUPLICATES, &e);
    cr_assert_not_null(doc, "render output is not JSON (%s): %s", e.text, b->data);
    buf_unref(b);
    return doc;
}

static json_int_t summary_int(json_t *doc, const char *key)
{
    json_t *v = json_object_get(json_object_get(doc, "summary"), key);
    cr_assert(json_is_integer(v), "summary.%s is not an integer", key);
    return json_integer_value(v);
}

Test(report, add_counts)
{
    report_t r;
    cr_assert_eq(report_init(&r, 1), 0);
    expect_counts(&r, 0, 0, 0, 0);
    cr_assert_eq(report_add(&r, "c1", "s1", 1, "delivered"), 0);
    cr_assert_eq(report_add(&r, "c2", "s2", 0, "slow consumer"), 1);
    cr_assert_eq(report_add(&r, NULL, NULL, 1, NULL), 2);
    expect_counts(&r, 3, 2, 1, 0);
    cr_assert_eq(r.n, 3);
    cr_assert_str_eq(r.e[0].client_id, "c1");
    cr_assert_str_eq(r.e[0].session_id, "s1");
    cr_assert_str_eq(r.e[0].message, "delivered");
    cr_assert_eq(r.e[0].successful, 1);
    cr_assert_eq(r.e[1].successful, 0);
    cr_assert_str_eq(r.e[2].client_id, "", "NULL is stored as \"\"");
    cr_assert_str_eq(r.e[2].message, "");
    report_free(&r);
}

Test(report, add_copies_strings)
{
    report_t r;
    report_init(&r, 1);
    char cid[] = "client";
    report_add(&r, cid, "s", 1, "m");
    cid[0] = 'X';
    cr_assert_str_eq(r.e[0].client_id, "client");
    report_free(&r);
}

Test(report, many_entries_grow)
{
    report_t r;
    report_init(&r, 1);
    char id[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof(id), "c%d", i);
        cr_assert_eq(report_add(&r, id, "s", i % 3 != 0, "m"), i);
    }
    expect_counts(&r, 1000, 666, 334, 0);
    cr_assert_str_eq(r.e[999].client_id, "c999");
    report_free(&r);
}

Test(report, count_only_reports)
{
    report_t r;
    report_init(&r, 0);
    cr_assert_eq(report_add(&r, "c1", "s1", 1, "ok"), -ENODATA);
    cr_assert_eq(report_add(&r, "c2", "s2", 0, "no"), -ENODATA);
    expect_counts(&r, 2, 1, 1, 0);
    cr_assert_eq(r.n, 0);
    cr_assert_eq(report_set(&r, 0, 1, "x", 1), -ERANGE);
    report_free(&r);
}

Test(report, set_moves_counts)
{
    report_t r;
    report_init(&r, 1);
    report_add(&r, "c1", "s1", 1, "delivered");
    report_add(&r, "c2", "s2", 1, "delivered");
    expect_counts(&r, 2, 2, 0, 0);

    /* an ack: still delivered, now acknowledged */
    cr_assert_eq(report_set(&r, 0, 1, "client answer", 1), 0);
    expect_counts(&r, 2, 2, 0, 1);
    cr_assert_str_eq(r.e[0].message, "client answer");
    cr_assert_eq(r.e[0].acknowledged, 1);

    /* a timeout on the other: delivered -> failed */
    cr_assert_eq(report_set(&r, 1, 0, "timeout", 0), 0);
    expect_counts(&r, 2, 1, 1, 1);

    /* a negative ack replaces the positive one */
    cr_assert_eq(report_set(&r, 0, 0, "rejected", 1), 0);
    expect_counts(&r, 2, 0, 2, 1);

    /* and back to a plain success */
    cr_assert_eq(report_set(&r, 0, 1, NULL, 0), 0);
    expect_counts(&r, 2, 1, 1, 0);
    cr_assert_str_eq(r.e[0].message, "");

    /* setting the same outcome twice counts once */
    cr_assert_eq(report_set(&r, 1, 0, "timeout", 0), 0);
    cr_assert_eq(report_set(&r, 1, 0, "timeout", 0), 0);
    expect_counts(&r, 2, 1, 1, 0);

    cr_assert_eq(report_set(&r, 2, 1, "x", 0), -ERANGE);
    cr_assert_eq(report_set(&r, (size_t)-1, 1, "x", 0), -ERANGE);
    expect_counts(&r, 2, 1, 1, 0);
    report_free(&r);
}

Test(report, move_merges_and_empties_src)
{
    report_t dst, src;
    report_init(&dst, 1);
    report_init(&src, 1);
    report_add(&dst, "d1", "s", 1, "ok");
    for (int i = 0; i < 20; i++) {
        char id[16];
        snprintf(id, sizeof(id), "w%d", i);
        report_add(&src, id, "s", i % 2, "m");
    }
    report_set(&src, 1, 1, "ack", 1);
    cr_assert_eq(report_move(&dst, &src), 0);
    expect_counts(&dst, 21, 11, 10, 1);
    cr_assert_eq(dst.n, 21);
    cr_assert_str_eq(dst.e[0].client_id, "d1");
    cr_assert_str_eq(dst.e[1].client_id, "w0");
    cr_assert_str_eq(dst.e[20].client_id, "w19");
    cr_assert_eq(dst.e[2].acknowledged, 1);
    expect_counts(&src, 0, 0, 0, 0);
    cr_assert_eq(src.n, 0);
    cr_assert_null(src.e);

    /* src is reusable, and moving an empty report changes nothing */
    report_add(&src, "again", "s", 1, "ok");
    cr_assert_eq(report_move(&dst, &src), 0);
    cr_assert_eq(report_move(&dst, &src), 0);
    expect_counts(&dst, 22, 12, 10, 1);
    cr_assert_str_eq(dst.e[21].client_id, "again");
    report_free(&src);
    report_free(&dst);
}

Test(report, move_count_only_into_full)
{
    report_t dst, src;
    report_init(&dst, 1);
    report_init(&src, 0);
    report_add(&src, "c", "s", 1, "ok");
    report_add(&src, "c", "s", 0, "no");
    cr_assert_eq(report_move(&dst, &src), 0);
    expect_counts(&dst, 2, 1, 1, 0);
    cr_assert_eq(dst.n, 0);
    report_free(&src);
    report_free(&dst);
}

Test(report, render_full)
{
    report_t a, b;
    report_init(&a, 1);
    report_init(&b, 1);
    a.application_id = strdup("app");
    a.node_id = strdup("node-a");
    b.application_id = strdup("app");
    b.node_id = strdup("node-b");
    report_add(&a, "c1", "s1", 1, "delivered");
    report_add(&a, "c2", "s2", 0, "slow consumer");
    report_add(&b, "c3", "s3", 1, "delivered");
    report_set(&b, 0, 1, "thanks", 1);
    report_t *nodes[] = {&a, &b};
    char *missing[] = {"node-c", "node-d"};
    json_t *doc = render("p-123", nodes, 2, missing, 2, 1);

    cr_assert_str_eq(json_string_value(json_object_get(doc, "pushId")), "p-123");
    json_t *msgs = json_object_get(doc, "responseMessages");
    cr_assert(json_is_array(msgs));
    cr_assert_eq(json_array_size(msgs), 3);
    static const struct {
        const char *client, *session, *node, *message;
        int ok;
    } want[] = {{"c1", "s1", "node-a", "delivered", 1},
                {"c2", "s2", "node-a", "slow consumer", 0},
                {"c3", "s3", "node-b", "thanks", 1}};
    for (size_t i = 0; i < 3; i++) {
        json_t *m = json_array_get(msgs, i);
        cr_assert_str_eq(json_string_value(json_object_get(m, "clientId")), want[i].client);
        cr_assert_str_eq(json_string_value(json_object_get(m, "sessionId")), want[i].session);
        json_t *origin = json_object_get(m, "originId");
        cr_assert(json_is_object(origin), "entry %zu has no originId", i);
        cr_assert_str_eq(json_string_value(json_object_get(origin, "applicationId")), "app");
        cr_assert_str_eq(json_string_value(json_object_get(origin, "nodeId")), want[i].node);
        cr_assert(json_is_boolean(json_object_get(m, "successful")));
        cr_assert_eq(json_is_true(json_object_get(m, "successful")), want[i].ok, "entry %zu", i);
        cr_assert_str_eq(json_string_value(json_object_get(m, "message")), want[i].message);
    }
    cr_assert_eq(summary_int(doc, "matched"), 3);
    cr_assert_eq(summary_int(doc, "delivered"), 2);
    cr_assert_eq(summary_int(doc, "failed"), 1);
    cr_assert_eq(summary_int(doc, "acknowledged"), 1);
    cr_assert_eq(summary_int(doc, "nodes"), 2);
    json_t *nm = json_object_get(json_object_get(doc, "summary"), "nodesMissing");
    cr_assert(json_is_array(nm));
    cr_assert_eq(json_array_size(nm), 2);
    cr_assert_str_eq(json_string_value(json_array_get(nm, 0)), "node-c");
    cr_assert_str_eq(json_string_value(json_array_get(nm, 1)), "node-d");
    json_decref(doc);
    report_free(&a);
    report_free(&b);
}

Test(report, render_summary_only_omits_response_messages)
{
    report_t a;
    report_init(&a, 1);
    report_add(&a, "c1", "s1", 1, "delivered");
    report_add(&a, "c2", "s2", 0, "gone");
    report_t *nodes[] = {&a};
    json_t *doc = render("p", nodes, 1, NULL, 0, 0);
    cr_assert_null(json_object_get(doc, "responseMessages"));
    cr_assert_eq(summary_int(doc, "matched"), 2);
    cr_assert_eq(summary_int(doc, "delivered"), 1);
    cr_assert_eq(summary_int(doc, "failed"), 1);
    cr_assert_eq(summary_int(doc, "nodes"), 1);
    json_t *nm = json_object_get(json_object_get(doc, "summary"), "nodesMissing");
    cr_assert(json_is_array(nm));
    cr_assert_eq(json_array_size(nm), 0);
    json_decref(doc);
    report_free(&a);
}

Test(report, render_no_nodes)
{
    char *missing[] = {"only-node"};
    json_t *doc = render("p0", NULL, 0, missing, 1, 1);
    cr_assert_eq(json_array_size(json_object_get(doc, "responseMessages")), 0);
    cr_assert_eq(summary_int(doc, "matched"), 0);
    cr_assert_eq(summary_int(doc, "nodes"), 0);
    json_decref(doc);
}

Test(report, render_count_only_node_in_full_render)
{
    report_t a, b;
    report_init(&a, 0);
    report_init(&b, 1);
    report_add(&a, "c1", "s1", 1, "x");
    report_add(&b, "c2", "s2", 1, "y");
    report_t *nodes[] = {&a, &b};
    json_t *doc = render("p", nodes, 2, NULL, 0, 1);
    json_t *msgs = json_object_get(doc, "responseMessages");
    cr_assert_eq(json_array_size(msgs), 1);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(msgs, 0), "clientId")), "c2");
    json_t *origin = json_object_get(json_array_get(msgs, 0), "originId");
    cr_assert_str_eq(json_string_value(json_object_get(origin, "nodeId")), "",
                     "a report without node_id renders \"\"");
    cr_assert_eq(summary_int(doc, "matched"), 2);
    json_decref(doc);
    report_free(&a);
    report_free(&b);
}

Test(report, render_escapes_odd_ids)
{
    static const char *odd[] = {
        "quote\"d",
        "back\\slash",
        "new\nline",
        "ctl\x01\x1f\x7f",
        "tab\tcr\r",
        "</script>",
        "utf8-\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80",
    };
    size_t n = sizeof(odd) / sizeof(odd[0]);
    report_t a;
    report_init(&a, 1);
    a.application_id = strdup("app\"x");
    a.node_id = strdup("node\\y");
    for (size_t i = 0; i < n; i++)
        report_add(&a, odd[i], odd[n - 1 - i], 1, odd[i]);
    report_t *nodes[] = {&a};
    char *missing[] = {"m\"1", "m\n2"};
    json_t *doc = render("push\"\\\n\x02", nodes, 1, missing, 2, 1);
    cr_assert_str_eq(json_string_value(json_object_get(doc, "pushId")), "push\"\\\n\x02");
    json_t *msgs = json_object_get(doc, "responseMessages");
    cr_assert_eq(json_array_size(msgs), n);
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        cr_assert_str_eq(json_string_value(json_object_get(m, "clientId")), odd[i]);
        cr_assert_str_eq(json_string_value(json_object_get(m, "sessionId")), odd[n - 1 - i]);
        cr_assert_str_eq(json_string_value(json_object_get(m, "message")), odd[i]);
        json_t *origin = json_object_get(m, "originId");
        cr_assert_str_eq(json_string_value(json_object_get(origin, "applicationId")), "app\"x");
        cr_assert_str_eq(json_string_value(json_object_get(origin, "nodeId")), "node\\y");
    }
    json_t *nm = json_object_get(json_object_get(doc, "summary"), "nodesMissing");
    cr_assert_str_eq(json_string_value(json_array_get(nm, 0)), "m\"1");
    cr_assert_str_eq(json_string_value(json_array_get(nm, 1)), "m\n2");
    json_decref(doc);
    report_free(&a);
}

Test(report, free_twice_is_harmless)
{
    report_t r;
    report_init(&r, 1);
    report_add(&r, "c", "s", 1, "m");
    report_free(&r);
    report_free(&r);
}
