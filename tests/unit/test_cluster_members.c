/* cluster/members: membership by heartbeat: first heard and refreshed, the order kept,
 * leaving, expiry after the TTL (and not before), touching after an outage, the ids
 * with this node first and never twice, the announcements copied. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/members.h"

static json_t *ann(const char *id, int connections)
{
    return json_pack("{s:s, s:s, s:i, s:i, s:i}", "applicationId", "app", "nodeId", id, "workers",
                     2, "connections", connections, "startedAt", 1);
}

static void seen(cluster_members_t *m, const char *id, uint64_t now, int want)
{
    json_t *d = ann(id, (int)now);
    cr_assert_eq(cluster_members_seen(m, d, now), want, "%s at %llu", id, (unsigned long long)now);
    json_decref(d);
}

static void expect_ids(cluster_members_t *m, const char *self, const char *const *want, long n)
{
    char **ids;
    cr_assert_eq(cluster_members_ids(m, self, &ids), n);
    for (long i = 0; i < n; i++) {
        cr_assert_str_eq(ids[i], want[i]);
        free(ids[i]);
    }
    free(ids);
}

Test(cluster_members, seen_refresh_leave_expire)
{
    cluster_members_t m;
    cluster_members_init(&m);
    expect_ids(&m, "me", (const char *[]){"me"}, 1);
    seen(&m, "b", 1000, 1);
    seen(&m, "a", 1100, 1);
    seen(&m, "b", 2000, 0);
    expect_ids(&m, "me", (const char *[]){"me", "b", "a"}, 3);
    /* a silent member goes after the TTL, not before */
    cr_assert_eq(cluster_members_expire(&m, 4100, 3000), 0);
    cr_assert_eq(cluster_members_expire(&m, 4101, 3000), 1);
    expect_ids(&m, "me", (const char *[]){"me", "b"}, 2);
    cr_assert_eq(cluster_members_leave(&m, "b"), 1);
    cr_assert_eq(cluster_members_leave(&m, "b"), 0);
    expect_ids(&m, "me", (const char *[]){"me"}, 1);
    /* early times do not wrap */
    seen(&m, "c", 10, 1);
    cr_assert_eq(cluster_members_expire(&m, 20, 3000), 0);
    cluster_members_free(&m);
    cr_assert_eq(m.n, 0);
}

Test(cluster_members, touch_after_outage)
{
    cluster_members_t m;
    cluster_members_init(&m);
    seen(&m, "a", 1000, 1);
    seen(&m, "b", 1000, 1);
    cluster_members_touch(&m, 60000);
    cr_assert_eq(cluster_members_expire(&m, 62000, 3000), 0);
    seen(&m, "a", 62500, 0);
    cr_assert_eq(cluster_members_expire(&m, 63001, 3000), 1);
    expect_ids(&m, "me", (const char *[]){"me", "a"}, 2);
    cluster_members_free(&m);
}

Test(cluster_members, self_listed_once_and_docs_copied)
{
    cluster_members_t m;
    cluster_members_init(&m);
    seen(&m, "x", 1, 1);
    seen(&m, "me", 1, 1);
    expect_ids(&m, "me", (const char *[]){"me", "x"}, 2);
    json_t *docs = cluster_members_docs(&m);
    cr_assert_eq(json_array_size(docs), 2);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(docs, 0), "nodeId")), "x");
    /* a copy: changing it leaves the table alone */
    json_object_set_new(json_array_get(docs, 0), "nodeId", json_string("y"));
    json_decref(docs);
    docs = cluster_members_docs(&m);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(docs, 0), "nodeId")), "x");
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(docs, 0), "connections")), 1);
    json_decref(docs);
    /* the latest announcement is kept */
    seen(&m, "x", 7, 0);
    docs = cluster_members_docs(&m);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(docs, 0), "connections")), 7);
    json_decref(docs);
    json_t *bad = json_pack("{s:s}", "applicationId", "app");
    cr_assert_eq(cluster_members_seen(&m, bad, 1), -EINVAL);
    json_decref(bad);
    cluster_members_free(&m);
}
