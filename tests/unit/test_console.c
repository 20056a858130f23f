/* The console's pieces that need no socket: the "console" config key, the 304 answer,
 * and the embedded assets (names, content types, ETags, bytes). */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "api/console_assets.h"
#include "core/config.h"
#include "http/response.h"

static int apply(config_t *cfg, const char *text, char *err, size_t errlen)
{
    json_error_t e;
    json_t *doc = json_loads(text, 0, &e);
    cr_assert_not_null(doc, "bad test JSON %s", text);
    cr_assert_eq(config_init(cfg), 0);
    err[0] = '\0';
    int r = config_apply_json(cfg, doc, err, errlen);
    json_decref(doc);
    return r;
}

Test(console, config_off_by_default_and_on)
{
    config_t cfg;
    char err[256];
    cr_assert_eq(apply(&cfg, "{}", err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(cfg.console_enabled, 0);
    cr_assert_null(cfg.console_files_dir);
    config_free(&cfg);
    cr_assert_eq(apply(&cfg, "{\"console\": {\"enabled\": true, \"filesDir\": \"/tmp/x\"}}", err,
                       sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(cfg.console_enabled, 1);
    cr_assert_str_eq(cfg.console_files_dir, "/tmp/x");
    config_free(&cfg);
}

Test(console, config_errors_name_the_key)
{
    static const char *bad[][2] = {
        {"{\"console\": true}", "console must be an object"},
        {"{\"console\": {\"enabled\": 1}}", "console.enabled must be a boolean"},
        {"{\"console\": {\"enable\": true}}", "console.enable is not a known key"},
        {"{\"console\": {\"filesDir\": \"\"}}", "filesDir must be a non-empty string"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        config_t cfg;
        char err[256];
        cr_assert_eq(apply(&cfg, bad[i][0], err, sizeof(err)), -EINVAL, "%s", bad[i][0]);
        cr_assert(strstr(err, bad[i][1]), "%s: %s", bad[i][0], err);
        config_free(&cfg);
    }
}

Test(console, not_modified_has_no_body_length_or_type)
{
    buf_t *b = http_response_build(304, "text/css", NULL, 0, 1, "ETag: \"abc\"\r\n");
    cr_assert_not_null(b);
    static const char want[] = "HTTP/1.1 304 Not Modified\r\nETag: \"abc\"\r\n\r\n";
    cr_assert_eq(b->len, strlen(want), "%.*s", (int)b->len, b->data);
    cr_assert(memcmp(b->data, want, b->len) == 0, "%.*s", (int)b->len, b->data);
    buf_unref(b);
}

Test(console, assets_embedded_with_types_and_etags)
{
    static const char *want[][2] = {{"index.html", "text/html; charset=utf-8"},
                                    {"app.js", "text/javascript; charset=utf-8"},
                                    {"style.css", "text/css; charset=utf-8"}};
    cr_assert_eq(console_n_assets, 3);
    for (size_t i = 0; i < 3; i++) {
        const console_asset_t *a = NULL;
        for (unsigned j = 0; j < console_n_assets; j++)
            if (strcmp(console_assets[j].name, want[i][0]) == 0) a = &console_assets[j];
        cr_assert_not_null(a, "%s not embedded", want[i][0]);
        cr_assert_str_eq(a->content_type, want[i][1]);
        cr_assert_eq(strlen(a->etag), 22, "%s", a->etag);
        cr_assert(a->etag[0] == '"' && a->etag[21] == '"');
        cr_assert_gt(a->len, 1000);
        cr_assert_eq(strlen(a->data), a->len, "NUL-terminated, no NUL inside");
    }
    const console_asset_t *html = NULL;
    for (unsigned j = 0; j < console_n_assets; j++)
        if (strcmp(console_assets[j].name, "index.html") == 0) html = &console_assets[j];
    cr_assert(strncmp(html->data, "<!doctype html>", 15) == 0);
}
