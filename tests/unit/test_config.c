/* core/config: defaults, a full document, errors that name the key, listen forms, the
 * config file loader and API key lookup. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
    cr_assert_not_null(v, "bad test JSON %s: %s", text, e.text);
    return v;
}

/* Applies text over defaults; returns the result with the message in err. */
static int apply(config_t *cfg, const char *text, char *err, size_t errlen)
{
    cr_assert_eq(config_init(cfg), 0);
    json_t *doc = J(text);
    err[0] = '\0';
    int r = config_apply_json(cfg, doc, err, errlen);
    json_decref(doc);
    return r;
}

static void expect_error(const char *text, const char *names)
{
    config_t cfg;
    char err[256];
    int r = apply(&cfg, text, err, sizeof(err));
    cr_assert_eq(r, -EINVAL, "%s: returned %d", text, r);
    cr_assert(strstr(err, names), "%s: \"%s\" does not name \"%s\"", text, err, names);
    config_free(&cfg);
}

Test(config, defaults)
{
    config_t cfg;
    cr_assert_eq(config_init(&cfg), 0);
    cr_assert_str_eq(cfg.listen_host, "127.0.0.1");
    cr_assert_eq(cfg.listen_port, 8080);
    cr_assert_str_eq(cfg.application_id, "pushgate");
    cr_assert_str_eq(cfg.data_dir, "./data");
    cr_assert_str_eq(cfg.log_level, "info");
    cr_assert_not_null(cfg.node_id);
    cr_assert(strlen(cfg.node_id) > 0);
    cr_assert(cfg.workers >= 1);
    cr_assert_null(cfg.redis_url);
    cr_assert_null(cfg.jwt_secret);
    cr_assert_eq(cfg.n_api_keys, 0);
    cr_assert_null(cfg.sessions);
    cr_assert_null(cfg.streams);
    cr_assert_eq(cfg.diagnostics, 0);
    cr_assert_eq(cfg.limits.max_output_bytes, 1u << 20);
    cr_assert_eq(cfg.limits.max_message_bytes, 1u << 20);
    cr_assert_eq(cfg.limits.max_body_bytes, 1u << 20);
    cr_assert_eq(cfg.limits.max_header_bytes, 16384);
    cr_assert_eq(cfg.limits.max_headers, 64);
    cr_assert_eq(cfg.limits.read_timeout_ms, 30000);
    cr_assert_eq(cfg.limits.ws_ping_interval_ms, 30000);
    cr_assert_eq(cfg.limits.ws_pong_timeout_ms, 10000);
    cr_assert_eq(cfg.limits.shutdown_timeout_ms, 5000);
    cr_assert_eq(cfg.limits.max_connections, 0);
    config_free(&cfg);
    config_free(&cfg); /* config_free leaves cfg zeroed: twice is harmless */
}

static const char full_doc[] =
    "{"
    " \"listen\": \"0.0.0.0:9090\","
    " \"workers\": 3,"
    " \"applicationId\": \"app\","
    " \"nodeId\": \"node-1\","
    " \"dataDir\": \"/var/lib/pg\","
    " \"redis\": \"redis://127.0.0.1:6379/0\","
    " \"apiKeys\": [{\"key\": \"pub\", \"scopes\": [\"publish\"]},"
    "              {\"key\": \"adm\", \"scopes\": [\"admin\"], \"tenant\": \"acme\"},"
    "              {\"key\": \"both\", \"scopes\": [\"publish\", \"admin\"]},"
    "              {\"key\": \"none\", \"scopes\": []}],"
    " \"jwt\": {\"secret\": \"s3cret\"},"
    " \"sessions\": [{\"sessionId\": \"s-1\", \"user\": \"u\"}],"
    " \"streams\": {\"acme\": {}},"
    " \"limits\": {\"maxOutputBytes\": 2048, \"maxMessageBytes\": 4096,"
    "              \"maxBodyBytes\": 8192, \"maxHeaderBytes\": 1024, \"maxHeaders\": 20,"
    "              \"readTimeoutMs\": 1000, \"wsPingIntervalMs\": 2000,"
    "              \"wsPongTimeoutMs\": 3000, \"shutdownTimeoutMs\": 0,"
    "              \"maxConnections\": 500},"
    " \"logLevel\": \"debug\","
    " \"diagnostics\": true"
    "}";

Test(config, full_valid_document)
{
    config_t cfg;
    char err[256];
    cr_assert_eq(apply(&cfg, full_doc, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(cfg.listen_host, "0.0.0.0");
    cr_assert_eq(cfg.listen_port, 9090);
    cr_assert_eq(cfg.workers, 3);
    cr_assert_str_eq(cfg.application_id, "app");
    cr_assert_str_eq(cfg.node_id, "node-1");
    cr_assert_str_eq(cfg.data_dir, "/var/lib/pg");
    cr_assert_str_eq(cfg.redis_url, "redis://127.0.0.1:6379/0");
    cr_assert_str_eq(cfg.jwt_secret, "s3cret");
    cr_assert_str_eq(cfg.log_level, "debug");
    cr_assert_eq(cfg.diagnostics, 1);
    cr_assert_eq(cfg.n_api_keys, 4);
    cr_assert_str_eq(cfg.api_keys[0].key, "pub");
    cr_assert_eq(cfg.api_keys[0].scopes, CONFIG_SCOPE_PUBLISH);
    cr_assert_null(cfg.api_keys[0].tenant);
    cr_assert_str_eq(cfg.api_keys[1].key, "adm");
    cr_assert_eq(cfg.api_keys[1].scopes, CONFIG_SCOPE_PUBLISH | CONFIG_SCOPE_ADMIN,
                 "admin implies publish");
    cr_assert_str_eq(cfg.api_keys[1].tenant, "acme");
    cr_assert_eq(cfg.api_keys[2].scopes, CONFIG_SCOPE_PUBLISH | CONFIG_SCOPE_ADMIN);
    cr_assert_eq(cfg.api_keys[3].scopes, 0);
    cr_assert(json_is_array(cfg.sessions));
    cr_assert_eq(json_array_size(cfg.sessions), 1);
    cr_assert(json_is_object(cfg.streams));
    cr_assert_eq(cfg.limits.max_output_bytes, 2048);
    cr_assert_eq(cfg.limits.max_message_bytes, 4096);
    cr_assert_eq(cfg.limits.max_body_bytes, 8192);
    cr_assert_eq(cfg.limits.max_header_bytes, 1024);
    cr_assert_eq(cfg.limits.max_headers, 20);
    cr_assert_eq(cfg.limits.read_timeout_ms, 1000);
    cr_assert_eq(cfg.limits.ws_ping_interval_ms, 2000);
    cr_assert_eq(cfg.limits.ws_pong_timeout_ms, 3000);
    cr_assert_eq(cfg.limits.shutdown_timeout_ms, 0);
    cr_assert_eq(cfg.limits.max_connections, 500);
    config_free(&cfg);
}

Test(config, partial_document_keeps_other_defaults)
{
    config_t cfg;
    char err[256];
    cr_assert_eq(apply(&cfg, "{\"limits\": {\"maxHeaders\": 8}, \"workers\": 1}", err, sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(cfg.limits.max_headers, 8);
    cr_assert_eq(cfg.limits.max_body_bytes, 1u << 20);
    cr_assert_eq(cfg.workers, 1);
    cr_assert_str_eq(cfg.listen_host, "127.0.0.1");
    cr_assert_eq(cfg.listen_port, 8080);
    config_free(&cfg);
}

Test(config, applying_twice_replaces_api_keys)
{
    config_t cfg;
    char err[256];
    cr_assert_eq(apply(&cfg, full_doc, err, sizeof(err)), 0, "%s", err);
    json_t *doc = J("{\"apiKeys\": [{\"key\": \"new\", \"scopes\": [\"publish\"]}],"
                    " \"sessions\": [], \"jwt\": {\"secret\": \"other\"}}");
    cr_assert_eq(config_apply_json(&cfg, doc, err, sizeof(err)), 0, "%s", err);
    json_decref(doc);
    cr_assert_eq(cfg.n_api_keys, 1);
    cr_assert_str_eq(cfg.api_keys[0].key, "new");
    cr_assert_null(config_find_apikey(&cfg, "pub"));
    cr_assert_eq(json_array_size(cfg.sessions), 0);
    cr_assert_str_eq(cfg.jwt_secret, "other");
    config_free(&cfg);
}

Test(config, errors_name_the_key)
{
    expect_error("{\"bogus\": 1}", "bogus");
    expect_error("{\"listen\": \"1.2.3.4:80\", \"Workers\": 2}", "Workers");
    expect_error("{\"workers\": 0}", "workers");
    expect_error("{\"workers\": 1025}", "workers");
    expect_error("{\"workers\": -1}", "workers");
    expect_error("{\"workers\": \"2\"}", "workers");
    expect_error("{\"workers\": 1.5}", "workers");
    expect_error("{\"apiKeys\": [{\"key\": \"a\", \"scopes\": [\"publish\"]},"
                 " {\"key\": \"b\", \"scopes\": [\"write\"]}]}",
                 "apiKeys[1].scopes[0]");
    expect_error("{\"apiKeys\": [{\"key\": \"a\", \"scopes\": [\"publish\", 3]}]}",
                 "apiKeys[0].scopes[1]");
    expect_error("{\"apiKeys\": [{\"key\": \"\", \"scopes\": []}]}", "apiKeys[0].key");
    expect_error("{\"apiKeys\": [{\"scopes\": []}]}", "apiKeys[0].key");
    expect_error("{\"apiKeys\": [{\"key\": \"a\"}]}", "apiKeys[0].scopes");
    expect_error("{\"apiKeys\": [{\"key\": \"a\", \"scopes\": [], \"tenant\": 1}]}",
                 "apiKeys[0].tenant");
    expect_error("{\"apiKeys\": [\"a\"]}", "apiKeys[0]");
    expect_error("{\"apiKeys\": {}}", "apiKeys");
    expect_error("{\"limits\": {\"maxOutputBytes\": 10}}", "limits.maxOutputBytes");
    expect_error("{\"limits\": {\"maxOutputBytes\": -5}}", "limits.maxOutputBytes");
    expect_error("{\"limits\": {\"maxMessageBytes\": 124}}", "limits.maxMessageBytes");
    expect_error("{\"limits\": {\"maxHeaders\": 3}}", "limits.maxHeaders");
    expect_error("{\"limits\": {\"maxHeaderBytes\": 2000000}}", "limits.maxHeaderBytes");
    expect_error("{\"limits\": {\"readTimeoutMs\": \"1s\"}}", "limits.readTimeoutMs");
    expect_error("{\"limits\": {\"bogus\": 1}}", "limits.bogus");
    expect_error("{\"limits\": []}", "limits");
    expect_error("{\"jwt\": {}}", "jwt.secret");
    expect_error("{\"jwt\": {\"secret\": \"\"}}", "jwt.secret");
    expect_error("{\"jwt\": {\"secret\": 5}}", "jwt.secret");
    expect_error("{\"jwt\": \"s3cret\"}", "jwt");
    expect_error("{\"listen\": \"nocolon\"}", "listen");
    expect_error("{\"listen\": \"1.2.3.4:99999\"}", "listen");
    expect_error("{\"listen\": \"1.2.3.4:\"}", "listen");
    expect_error("{\"listen\": 8080}", "listen");
    expect_error("{\"applicationId\": \"\"}", "applicationId");
    expect_error("{\"nodeId\": 1}", "nodeId");
    expect_error("{\"dataDir\": null}", "dataDir");
    expect_error("{\"redis\": []}", "redis");
    expect_error("{\"logLevel\": \"\"}", "logLevel");
    expect_error("{\"diagnostics\": 1}", "diagnostics");
    expect_error("{\"sessions\": {}}", "sessions");
    expect_error("{\"streams\": []}", "streams");
    expect_error("[]", "object");
}

Test(config, limit_boundaries)
{
    config_t cfg;
    char err[256];
    cr_assert_eq(apply(&cfg,
                       "{\"limits\": {\"maxOutputBytes\": 1024, \"maxMessageBytes\": 125,"
                       " \"maxBodyBytes\": 64, \"maxHeaderBytes\": 256, \"maxHeaders\": 4}}",
                       err, sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(cfg.limits.max_output_bytes, 1024);
    cr_assert_eq(cfg.limits.max_message_bytes, 125);
    cr_assert_eq(cfg.limits.max_body_bytes, 64);
    cr_assert_eq(cfg.limits.max_header_bytes, 256);
    cr_assert_eq(cfg.limits.max_headers, 4);
    config_free(&cfg);
    expect_error("{\"limits\": {\"maxOutputBytes\": 1023}}", "limits.maxOutputBytes");
    expect_error("{\"limits\": {\"maxBodyBytes\": 63}}", "limits.maxBodyBytes");
    expect_error("{\"limits\": {\"maxHeaderBytes\": 255}}", "limits.maxHeaderBytes");
    expect_error("{\"limits\": {\"maxBodyBytes\": 1073741825}}", "limits.maxBodyBytes");
}

Test(config, workers_bounds)
{
    config_t cfg;
    char err[256];
    cr_assert_eq(apply(&cfg, "{\"workers\": 1024}", err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(cfg.workers, 1024);
    config_free(&cfg);
}

static void expect_listen(const char *hostport, const char *host, int port)
{
    config_t cfg;
    config_init(&cfg);
    cr_assert_eq(config_set_listen(&cfg, hostport), 0, "%s", hostport);
    cr_assert_str_eq(cfg.listen_host, host, "%s", hostport);
    cr_assert_eq(cfg.listen_port, port, "%s", hostport);
    config_free(&cfg);
}

static void expect_bad_listen(const char *hostport)
{
    config_t cfg;
    config_init(&cfg);
    cr_assert_eq(config_set_listen(&cfg, hostport), -EINVAL, "%s", hostport);
    cr_assert_str_eq(cfg.listen_host, "127.0.0.1", "%s leaves the host alone", hostport);
    cr_assert_eq(cfg.listen_port, 8080, "%s leaves the port alone", hostport);
    config_free(&cfg);
}

Test(config, set_listen_forms)
{
    expect_listen("1.2.3.4:80", "1.2.3.4", 80);
    expect_listen(":9000", "0.0.0.0", 9000);
    expect_listen("[::1]:8080", "::1", 8080);
    expect_listen("[::]:1", "::", 1);
    expect_listen("localhost:0", "localhost", 0);
    expect_listen("host:65535", "host", 65535);
}

Test(config, set_listen_bad_ports)
{
    expect_bad_listen("1.2.3.4:65536");
    expect_bad_listen("1.2.3.4:-1");
    expect_bad_listen("1.2.3.4:");
    expect_bad_listen("1.2.3.4:http");
    expect_bad_listen("1.2.3.4:80x");
    expect_bad_listen("1.2.3.4");
    expect_bad_listen("");
    expect_bad_listen("[::1]");
}

Test(config, set_listen_overlong_host)
{
    char hp[400];
    memset(hp, 'h', 300);
    strcpy(hp + 300, ":80");
    expect_bad_listen(hp);
}

Test(config, find_apikey)
{
    config_t cfg;
    char err[256];
    cr_assert_eq(apply(&cfg, full_doc, err, sizeof(err)), 0, "%s", err);
    const config_apikey_t *k = config_find_apikey(&cfg, "pub");
    cr_assert_not_null(k);
    cr_assert_str_eq(k->key, "pub");
    cr_assert_eq(k->scopes, CONFIG_SCOPE_PUBLISH);
    k = config_find_apikey(&cfg, "adm");
    cr_assert_not_null(k);
    cr_assert_str_eq(k->tenant, "acme");
    cr_assert_null(config_find_apikey(&cfg, "pu"), "a prefix is not the key");
    cr_assert_null(config_find_apikey(&cfg, "pubx"), "a longer string is not the key");
    cr_assert_null(config_find_apikey(&cfg, "PUB"));
    cr_assert_null(config_find_apikey(&cfg, ""));
    cr_assert_null(config_find_apikey(&cfg, "missing"));
    config_free(&cfg);

    config_init(&cfg);
    cr_assert_null(config_find_apikey(&cfg, "pub"), "no keys at all");
    config_free(&cfg);
}

Test(config, load_file)
{
    char path[] = "/tmp/pg-config-test-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(full_doc, f);
    fclose(f);
    config_t cfg;
    char err[256] = "";
    config_init(&cfg);
    cr_assert_eq(config_load_file(&cfg, path, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(cfg.listen_port, 9090);
    config_free(&cfg);

    /* bad JSON: the message has the path and a position */
    f = fopen(path, "w");
    fputs("{\"workers\": 2,\n \"listen\": }", f);
    fclose(f);
    config_init(&cfg);
    cr_assert_eq(config_load_file(&cfg, path, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, path), "%s", err);
    config_free(&cfg);

    /* duplicate keys are refused */
    f = fopen(path, "w");
    fputs("{\"workers\": 2, \"workers\": 3}", f);
    fclose(f);
    config_init(&cfg);
    cr_assert_eq(config_load_file(&cfg, path, err, sizeof(err)), -EINVAL);
    config_free(&cfg);

    unlink(path);
    config_init(&cfg);
    cr_assert_eq(config_load_file(&cfg, path, err, sizeof(err)), -ENOENT);
    cr_assert(strstr(err, path), "%s", err);
    config_free(&cfg);
}

Test(config, history_and_sse)
{
    config_t cfg;
    char err[256];
    cr_assert_eq(config_init(&cfg), 0);
    cr_assert_eq(cfg.history_max_events, 1000);
    cr_assert_eq(cfg.history_max_age_s, 3600);
    cr_assert_eq(cfg.sse_heartbeat_ms, 15000);
    cr_assert_eq(cfg.sse_retry_ms, 3000);
    config_free(&cfg);

    cr_assert_eq(apply(&cfg,
                       "{\"history\": {\"maxEvents\": 5, \"maxAgeSeconds\": 60},"
                       " \"sse\": {\"heartbeatMs\": 100, \"retryMs\": 0}}",
                       err, sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(cfg.history_max_events, 5);
    cr_assert_eq(cfg.history_max_age_s, 60);
    cr_assert_eq(cfg.sse_heartbeat_ms, 100);
    cr_assert_eq(cfg.sse_retry_ms, 0);
    config_free(&cfg);

    expect_error("{\"history\": []}", "history");
    expect_error("{\"history\": {\"bogus\": 1}}", "history.bogus");
    expect_error("{\"history\": {\"maxEvents\": -1}}", "history.maxEvents");
    expect_error("{\"history\": {\"maxAgeSeconds\": 99999999999}}", "history.maxAgeSeconds");
    expect_error("{\"sse\": 1}", "sse");
    expect_error("{\"sse\": {\"retry\": 1}}", "sse.retry");
    expect_error("{\"sse\": {\"heartbeatMs\": 99}}", "sse.heartbeatMs");
    expect_error("{\"sse\": {\"retryMs\": \"1\"}}", "sse.retryMs");
}

Test(config, idempotency_keys)
{
    config_t cfg;
    char err[256];
    cr_assert_eq(apply(&cfg, "{}", err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(cfg.idem_ttl_seconds, 86400);
    cr_assert_eq(cfg.idem_max_keys, 100000);
    config_free(&cfg);
    cr_assert_eq(
        apply(&cfg, "{\"idempotency\": {\"ttlSeconds\": 60, \"maxKeys\": 10}}", err, sizeof(err)),
        0, "%s", err);
    cr_assert_eq(cfg.idem_ttl_seconds, 60);
    cr_assert_eq(cfg.idem_max_keys, 10);
    config_free(&cfg);
    expect_error("{\"idempotency\": {\"ttlSeconds\": 0}}", "idempotency.ttlSeconds");
    expect_error("{\"idempotency\": {\"maxKeys\": 0}}", "idempotency.maxKeys");
    expect_error("{\"idempotency\": {\"bogus\": 1}}", "idempotency.bogus");
    expect_error("{\"idempotency\": 3}", "idempotency");
}

Test(config, bus_nats)
{
    config_t cfg;
    char err[256];
    cr_assert_eq(apply(&cfg, "{}", err, sizeof(err)), 0);
    cr_assert_null(cfg.nats_url);
    config_free(&cfg);
    cr_assert_eq(apply(&cfg, "{\"bus\": {\"nats\": \"nats://10.0.0.7:4222\"}}", err, sizeof(err)),
                 0, "%s", err);
    cr_assert_str_eq(cfg.nats_url, "nats://10.0.0.7:4222");
    config_free(&cfg);
    cr_assert_eq(apply(&cfg, "{\"bus\": {}}", err, sizeof(err)), 0, "%s", err);
    cr_assert_null(cfg.nats_url);
    config_free(&cfg);
    expect_error("{\"bus\": \"nats://h\"}", "bus must be an object");
    expect_error("{\"bus\": {\"kafka\": \"k://h\"}}", "bus.kafka is not a known key");
    expect_error("{\"bus\": {\"nats\": 4222}}", "bus.nats must be a non-empty string");
    expect_error("{\"bus\": {\"nats\": \"\"}}", "bus.nats must be a non-empty string");
}

Test(config, websocket_compression)
{
    config_t cfg;
    char err[256];
    cr_assert_eq(apply(&cfg, "{}", err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(cfg.ws_compression, 0, "off by default");
    cr_assert_eq(cfg.ws_client_window_bits, 10);
    config_free(&cfg);
    cr_assert_eq(apply(&cfg, "{\"websocket\": {\"compression\": true, \"clientMaxWindowBits\": 8}}",
                       err, sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(cfg.ws_compression, 1);
    cr_assert_eq(cfg.ws_client_window_bits, 8);
    config_free(&cfg);
    expect_error("{\"websocket\": {\"compression\": 1}}", "websocket.compression");
    expect_error("{\"websocket\": {\"clientMaxWindowBits\": 7}}", "websocket.clientMaxWindowBits");
    expect_error("{\"websocket\": {\"clientMaxWindowBits\": 16}}", "websocket.clientMaxWindowBits");
    expect_error("{\"websocket\": {\"deflate\": true}}", "websocket.deflate");
    expect_error("{\"websocket\": true}", "websocket");
}

Test(config, http2)
{
    config_t cfg;
    char err[256];
    cr_assert_eq(apply(&cfg, "{}", err, sizeof(err)), 0);
    cr_assert_eq(cfg.http2.enabled, 1);
    cr_assert_eq(cfg.http2.max_concurrent_streams, 100);
    config_free(&cfg);
    cr_assert_eq(
        apply(&cfg, "{\"http2\":{\"enabled\":false,\"maxConcurrentStreams\":7}}", err, sizeof(err)),
        0, "%s", err);
    cr_assert_eq(cfg.http2.enabled, 0);
    cr_assert_eq(cfg.http2.max_concurrent_streams, 7);
    config_free(&cfg);
    expect_error("{\"http2\":1}", "http2");
    expect_error("{\"http2\":{\"enabled\":1}}", "http2.enabled");
    expect_error("{\"http2\":{\"maxConcurrentStreams\":0}}", "http2.maxConcurrentStreams");
    expect_error("{\"http2\":{\"maxConcurrentStreams\":10001}}", "http2.maxConcurrentStreams");
    expect_error("{\"http2\":{\"push\":true}}", "http2.push");
}

Test(config, hardening_limits_and_origins)
{
    config_t cfg;
    char err[256];
    cr_assert_eq(apply(&cfg, "{}", err, sizeof(err)), 0);
    cr_assert_eq(cfg.limits.handshake_timeout_ms, 10000);
    cr_assert_eq(cfg.limits.idle_timeout_ms, 30000);
    cr_assert_eq(cfg.limits.max_connections_per_ip, 0);
    cr_assert_eq(cfg.limits.max_messages_per_s, 100);
    cr_assert_eq(cfg.limits.message_burst, 200);
    cr_assert_eq(cfg.limits.max_subscriptions, 256);
    cr_assert_eq(cfg.limits.push_backlog, 64);
    cr_assert_eq(cfg.limits.push_coalesce_ms, 1);
    cr_assert_eq(cfg.shutdown_grace_ms, 5000);
    cr_assert_eq(cfg.n_allowed_origins, 0);
    config_free(&cfg);
    cr_assert_eq(apply(&cfg,
                       "{\"limits\":{\"maxConnectionsPerIp\":10,\"handshakeTimeoutMs\":2000,"
                       "\"idleTimeoutMs\":5000,\"maxMessagesPerSecond\":5,\"messageBurst\":7,"
                       "\"maxSubscriptions\":3,\"pushBacklog\":0,\"pushCoalesceMs\":0,"
                       "\"maxBodyBytesByPath\":{\"/result\":4096}},"
                       "\"allowedOrigins\":[\"https://a.com\",\"https://*.b.org\"],"
                       "\"shutdownGraceMs\":0}",
                       err, sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(cfg.limits.max_connections_per_ip, 10);
    cr_assert_eq(cfg.limits.handshake_timeout_ms, 2000);
    cr_assert_eq(cfg.limits.idle_timeout_ms, 5000);
    cr_assert_eq(cfg.limits.message_burst, 7);
    cr_assert_eq(cfg.limits.push_backlog, 0);
    cr_assert_eq(cfg.limits.push_coalesce_ms, 0);
    cr_assert_eq(cfg.limits.n_body_paths, 1);
    cr_assert_str_eq(cfg.limits.body_paths[0].path, "/result");
    cr_assert_eq(cfg.limits.body_paths[0].max_body_bytes, 4096);
    cr_assert_eq(cfg.n_allowed_origins, 2);
    cr_assert_str_eq(cfg.allowed_origins[1], "https://*.b.org");
    cr_assert_eq(cfg.shutdown_grace_ms, 0);
    config_free(&cfg);
    expect_error("{\"allowedOrigins\":[\"https://a.com/x\"]}", "allowedOrigins[0]");
    expect_error("{\"allowedOrigins\":{}}", "allowedOrigins");
    expect_error("{\"limits\":{\"maxBodyBytesByPath\":{\"result\":1}}}", "maxBodyBytesByPath");
    expect_error("{\"limits\":{\"maxBodyBytesByPath\":{\"/r\":-1}}}", "maxBodyBytesByPath");
    expect_error("{\"limits\":{\"maxBodyBytesByPath\":[]}}", "maxBodyBytesByPath");
    expect_error("{\"limits\":{\"messageBurst\":0}}", "limits.messageBurst");
    expect_error("{\"limits\":{\"pushBacklog\":-1}}", "limits.pushBacklog");
    expect_error("{\"limits\":{\"pushCoalesceMs\":1001}}", "limits.pushCoalesceMs");
    expect_error("{\"shutdownGraceMs\":700000}", "shutdownGraceMs");
}
