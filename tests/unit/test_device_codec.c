/* transport/device_codec: device ids, the deviceId query parameter, /result bodies
 * (whole, and ending at a guard page), enqueue validation with its messages, the
 * command as the device receives it, base64 and media types. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "guard.h"
#include "transport/device_codec.h"

Test(device_id, parses_int64)
{
    int64_t v = 0;
    cr_assert_eq(device_id_parse("0", &v), 0);
    cr_assert_eq(v, 0);
    cr_assert_eq(device_id_parse("42", &v), 0);
    cr_assert_eq(v, 42);
    cr_assert_eq(device_id_parse("-7", &v), 0);
    cr_assert_eq(v, -7);
    cr_assert_eq(device_id_parse("0042", &v), 0);
    cr_assert_eq(v, 42);
    cr_assert_eq(device_id_parse("9223372036854775807", &v), 0);
    cr_assert_eq(v, INT64_MAX);
    cr_assert_eq(device_id_parse("-9223372036854775808", &v), 0);
    cr_assert_eq(v, INT64_MIN);
}

Test(device_id, refuses_the_rest)
{
    int64_t v = 99;
    const char *bad[] = {"", "-", "+1", " 1", "1 ", "1.5", "1e3", "0x10", "abc", "12a", "--1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(device_id_parse(bad[i], &v), -EINVAL, "\"%s\"", bad[i]);
    cr_assert_eq(device_id_parse("9223372036854775808", &v), -ERANGE);
    cr_assert_eq(device_id_parse("-9223372036854775809", &v), -ERANGE);
    cr_assert_eq(device_id_parse("99999999999999999999999", &v), -ERANGE);
    cr_assert_eq(v, 99, "untouched on error");
}

Test(device_query, finds_device_id)
{
    int64_t v;
    cr_assert_eq(device_query_id("deviceId=123", &v), 0);
    cr_assert_eq(v, 123);
    cr_assert_eq(device_query_id("a=1&deviceId=%31%32&b", &v), 0);
    cr_assert_eq(v, 12);
    cr_assert_eq(device_query_id("deviceId=1&deviceId=2", &v), 0);
    cr_assert_eq(v, 1, "the first one counts");
    cr_assert_eq(device_query_id("", &v), -ENOENT);
    cr_assert_eq(device_query_id("deviceid=1", &v), -ENOENT, "names are case-sensitive");
    cr_assert_eq(device_query_id("deviceId", &v), -EINVAL);
    cr_assert_eq(device_query_id("deviceId=", &v), -EINVAL);
    cr_assert_eq(device_query_id("deviceId=abc", &v), -EINVAL);
    cr_assert_eq(device_query_id("deviceId=1%00", &v), -EINVAL);
    cr_assert_eq(device_query_id("deviceId=%zz", &v), -EINVAL);
    cr_assert_eq(device_query_id("deviceId=+1", &v), -EINVAL, "'+' decodes to a space");
    cr_assert_eq(device_query_id("deviceId=99999999999999999999", &v), -ERANGE);
}

/* Parses s from a copy that ends at a guard page. */
static int parse_result(const char *s, device_result_t *r, char *err, size_t errlen)
{
    guard_t g = {0};
    size_t len = strlen(s);
    const char *in = guard_copy(&g, s, len);
    int rc = device_result_parse(in, len, r, err, errlen);
    guard_release(&g);
    return rc;
}

Test(device_result, response_object)
{
    device_result_t r;
    char err[128];
    cr_assert_eq(
        parse_result("{\"response\": {\"users\": [{\"id\": 1, \"name\": \"Walter White\"}]}}", &r,
                     err, sizeof(err)),
        0);
    cr_assert_eq(r.failed, 0);
    cr_assert_str_eq(r.response, "{\"users\":[{\"id\":1,\"name\":\"Walter White\"}]}");
    cr_assert_null(r.error);
    device_result_clear(&r);
}

Test(device_result, response_any_value)
{
    device_result_t r;
    char err[128];
    cr_assert_eq(parse_result("{\"response\":\"ok\"}", &r, err, sizeof(err)), 0);
    cr_assert_str_eq(r.response, "\"ok\"");
    device_result_clear(&r);
    cr_assert_eq(parse_result("{\"response\":null}", &r, err, sizeof(err)), 0);
    cr_assert_str_eq(r.response, "null");
    cr_assert_eq(r.failed, 0);
    device_result_clear(&r);
    cr_assert_eq(parse_result(" {\"response\":[1,2],\"extra\":true} ", &r, err, sizeof(err)), 0);
    cr_assert_str_eq(r.response, "[1,2]");
    device_result_clear(&r);
}

Test(device_result, error)
{
    device_result_t r;
    char err[128];
    cr_assert_eq(parse_result("{\"error\":\"user not found\"}", &r, err, sizeof(err)), 0);
    cr_assert_eq(r.failed, 1);
    cr_assert_str_eq(r.error, "user not found");
    cr_assert_null(r.response);
    device_result_clear(&r);
    cr_assert_eq(parse_result("{\"error\":{\"code\":5}}", &r, err, sizeof(err)), 0);
    cr_assert_str_eq(r.error, "{\"code\":5}");
    device_result_clear(&r);
    /* both: the error wins, the response is kept */
    cr_assert_eq(parse_result("{\"response\":1,\"error\":\"half done\"}", &r, err, sizeof(err)), 0);
    cr_assert_eq(r.failed, 1);
    cr_assert_str_eq(r.response, "1");
    cr_assert_str_eq(r.error, "half done");
    device_result_clear(&r);
    /* a null error is no error */
    cr_assert_eq(parse_result("{\"response\":1,\"error\":null}", &r, err, sizeof(err)), 0);
    cr_assert_eq(r.failed, 0);
    cr_assert_null(r.error);
    device_result_clear(&r);
}

Test(device_result, malformed)
{
    const char *bad[] = {"",
                         "   ",
                         "{",
                         "nope",
                         "[]",
                         "\"response\"",
                         "{}",
                         "{\"x\":1}",
                         "{\"error\":null}",
                         "{\"response\":1,\"response\":2}",
                         "{\"response\":1}x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        device_result_t r;
        char err[128] = "";
        cr_assert_eq(parse_result(bad[i], &r, err, sizeof(err)), -EINVAL, "%s", bad[i]);
        cr_assert_neq(err[0], '\0', "a message for %s", bad[i]);
        cr_assert_null(r.response);
        cr_assert_null(r.error);
    }
}

Test(device_result, split_at_every_offset_never_reads_past_the_end)
{
    const char *s = "{\"response\":{\"a\":[1,\"x\\u00e9\"]},\"error\":\"e\"}";
    size_t len = strlen(s);
    for (size_t i = 0; i <= len; i++) {
        guard_t g = {0};
        const char *in = guard_copy(&g, s, i);
        device_result_t r;
        char err[128];
        int rc = device_result_parse(in, i, &r, err, sizeof(err));
        cr_assert(rc == 0 || rc == -EINVAL);
        cr_assert_eq(rc == 0, i == len, "prefix %zu", i);
        if (rc == 0) device_result_clear(&r);
        guard_release(&g);
    }
}

static int parse_cmd(const char *json, device_cmd_t *c, int64_t *ttl, char *err, size_t errlen)
{
    json_error_t je;
    json_t *doc = json_loads(json, 0, &je);
    cr_assert_not_null(doc, "test JSON: %s", je.text);
    int r = device_cmd_parse(doc, c, ttl, err, errlen);
    json_decref(doc);
    return r;
}

Test(device_cmd, defaults)
{
    device_cmd_t c;
    int64_t ttl;
    char err[256];
    cr_assert_eq(parse_cmd("{\"endpoint\":\"load_objects\"}", &c, &ttl, err, sizeof(err)), 0);
    cr_assert_str_eq(c.verb, "POST");
    cr_assert_str_eq(c.endpoint, "load_objects");
    cr_assert_null(c.body);
    cr_assert_str_eq(c.content_type, "application/json");
    cr_assert_null(c.query_string);
    cr_assert_eq(ttl, 0);
    device_cmd_clear(&c);
}

Test(device_cmd, every_field)
{
    device_cmd_t c;
    int64_t ttl;
    char err[256];
    cr_assert_eq(parse_cmd("{\"verb\":\"get\",\"endpoint\":\"user_list\",\"body\":{\"object\":"
                           "\"users\"},\"contentType\":\"application/json; charset=utf-8\","
                           "\"queryString\":\"session=x\",\"ttlSeconds\":60}",
                           &c, &ttl, err, sizeof(err)),
                 0, "%s", err);
    cr_assert_str_eq(c.verb, "GET");
    cr_assert_str_eq(c.body, "{\"object\":\"users\"}");
    cr_assert_eq(c.body_json, 1);
    cr_assert_str_eq(c.content_type, "application/json; charset=utf-8");
    cr_assert_str_eq(c.query_string, "session=x");
    cr_assert_eq(ttl, 60);
    device_cmd_clear(&c);
}

Test(device_cmd, string_body_stays_a_string)
{
    device_cmd_t c;
    int64_t ttl;
    char err[256];
    cr_assert_eq(
        parse_cmd("{\"endpoint\":\"e\",\"body\":\"{\\\"a\\\":1}\"}", &c, &ttl, err, sizeof(err)),
        0);
    cr_assert_str_eq(c.body, "{\"a\":1}");
    cr_assert_eq(c.body_json, 0);
    device_cmd_clear(&c);
    cr_assert_eq(parse_cmd("{\"endpoint\":\"e\",\"body\":null,\"queryString\":null}", &c, &ttl, err,
                           sizeof(err)),
                 0);
    cr_assert_null(c.body);
    cr_assert_null(c.query_string);
    device_cmd_clear(&c);
}

Test(device_cmd, octet_stream_needs_base64)
{
    device_cmd_t c;
    int64_t ttl;
    char err[256];
    cr_assert_eq(parse_cmd("{\"endpoint\":\"upload\",\"contentType\":\"application/octet-stream\","
                           "\"body\":\"SGVsbG8=\"}",
                           &c, &ttl, err, sizeof(err)),
                 0);
    cr_assert_str_eq(c.body, "SGVsbG8=");
    cr_assert_eq(c.body_json, 0);
    device_cmd_clear(&c);
    const char *bad[] = {
        "{\"endpoint\":\"u\",\"contentType\":\"application/octet-stream\",\"body\":\"SGVsbG8\"}",
        "{\"endpoint\":\"u\",\"contentType\":\"Application/Octet-Stream\",\"body\":\"not b64!\"}",
        "{\"endpoint\":\"u\",\"contentType\":\"application/octet-stream\",\"body\":{\"a\":1}}",
        "{\"endpoint\":\"u\",\"contentType\":\"application/octet-stream\",\"body\":\"QQ==QQ==\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        cr_assert_eq(parse_cmd(bad[i], &c, &ttl, err, sizeof(err)), -EINVAL, "%s", bad[i]);
        cr_assert(strstr(err, "base64"), "%s", err);
    }
}

Test(device_cmd, errors_name_the_field)
{
    struct {
        const char *json, *field;
    } cases[] = {
        {"{}", "endpoint"},
        {"{\"endpoint\":\"\"}", "endpoint"},
        {"{\"endpoint\":5}", "endpoint"},
        {"{\"endpoint\":\"a\\nb\"}", "endpoint"},
        {"{\"endpoint\":\"e\",\"verb\":\"PUT\"}", "verb"},
        {"{\"endpoint\":\"e\",\"verb\":1}", "verb"},
        {"{\"endpoint\":\"e\",\"contentType\":\"json\"}", "contentType"},
        {"{\"endpoint\":\"e\",\"contentType\":\"\"}", "contentType"},
        {"{\"endpoint\":\"e\",\"queryString\":[]}", "queryString"},
        {"{\"endpoint\":\"e\",\"ttlSeconds\":0}", "ttlSeconds"},
        {"{\"endpoint\":\"e\",\"ttlSeconds\":1.5}", "ttlSeconds"},
        {"{\"endpoint\":\"e\",\"ttlSeconds\":\"60\"}", "ttlSeconds"},
        {"{\"endpoint\":\"e\",\"ttlSeconds\":315360001}", "ttlSeconds"},
        {"{\"endpoint\":\"e\",\"colour\":\"red\"}", "colour"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        device_cmd_t c;
        int64_t ttl;
        char err[256] = "";
        cr_assert_eq(parse_cmd(cases[i].json, &c, &ttl, err, sizeof(err)), -EINVAL, "%s",
                     cases[i].json);
        cr_assert(strncmp(err, cases[i].field, strlen(cases[i].field)) == 0,
                  "%s: message \"%s\" should start with %s", cases[i].json, err, cases[i].field);
        cr_assert_null(c.endpoint);
    }
}

Test(device_cmd, endpoint_length_limit)
{
    char *json = malloc(DEVICE_ENDPOINT_MAX + 64);
    char *ep = malloc(DEVICE_ENDPOINT_MAX + 2);
    memset(ep, 'e', DEVICE_ENDPOINT_MAX + 1);
    ep[DEVICE_ENDPOINT_MAX + 1] = '\0';
    sprintf(json, "{\"endpoint\":\"%s\"}", ep);
    device_cmd_t c;
    int64_t ttl;
    char err[256];
    cr_assert_eq(parse_cmd(json, &c, &ttl, err, sizeof(err)), -EINVAL);
    ep[DEVICE_ENDPOINT_MAX] = '\0';
    sprintf(json, "{\"endpoint\":\"%s\"}", ep);
    cr_assert_eq(parse_cmd(json, &c, &ttl, err, sizeof(err)), 0);
    device_cmd_clear(&c);
    free(json);
    free(ep);
}

static char *encode(const device_cmd_t *c)
{
    buf_t *b = buf_new(16);
    cr_assert_eq(device_cmd_encode(&b, c), 0);
    char *s = strndup(b->data, b->len);
    buf_unref(b);
    return s;
}

Test(device_cmd, encode_as_the_seed_shows)
{
    device_cmd_t c = {.verb = "POST",
                      .endpoint = "load_objects",
                      .body = "{\"object\":\"users\"}",
                      .body_json = 1,
                      .content_type = "application/json"};
    char *s = encode(&c);
    cr_assert_str_eq(s, "{\"verb\":\"POST\",\"endpoint\":\"load_objects\",\"body\":{\"object\":"
                        "\"users\"},\"contentType\":\"application/json\"}");
    free(s);
    device_cmd_t d = {.verb = "GET",
                      .endpoint = "a\"b",
                      .body = "x\ny",
                      .content_type = "text/plain",
                      .query_string = "q=1&r=2"};
    s = encode(&d);
    cr_assert_str_eq(s, "{\"verb\":\"GET\",\"endpoint\":\"a\\\"b\",\"body\":\"x\\ny\","
                        "\"contentType\":\"text/plain\",\"queryString\":\"q=1&r=2\"}");
    free(s);
}

Test(device_base64, standard_padded)
{
    cr_assert(device_base64_valid("", 0));
    cr_assert(device_base64_valid("QQ==", 4));
    cr_assert(device_base64_valid("QUI=", 4));
    cr_assert(device_base64_valid("QUJD", 4));
    cr_assert(device_base64_valid("ab+/09AZ", 8));
    cr_assert_not(device_base64_valid("QQ", 2));
    cr_assert_not(device_base64_valid("Q===", 4));
    cr_assert_not(device_base64_valid("=QQQ", 4));
    cr_assert_not(device_base64_valid("ab-_", 4));
    cr_assert_not(device_base64_valid("QU I", 4));
}

Test(device_content_type, media_type_compare)
{
    cr_assert(device_content_type_is("application/octet-stream", "application/octet-stream"));
    cr_assert(
        device_content_type_is(" Application/Octet-Stream ; x=1", "application/octet-stream"));
    cr_assert_not(device_content_type_is("application/octet-streamx", "application/octet-stream"));
    cr_assert_not(device_content_type_is("application/json", "application/octet-stream"));
}
