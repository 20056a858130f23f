/* The pushgate command line: serve, push-request, version. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_client.h"
#include "core/config.h"
#include "node.h"

#define PUSHGATE_VERSION "0.1.0"

static void usage(FILE *f)
{
    fprintf(f, "usage: pushgate serve [--config FILE] [--listen HOST:PORT] [--workers N]\n"
               "                      [--data-dir DIR] [--redis URL] [--nats URL]\n"
               "                      [--node-id ID] [--application-id ID] [--diagnostics]\n"
               "                      [--tls-cert FILE --tls-key FILE]\n"
               "       pushgate push-request --url URL --key KEY --payload JSON\n"
               "                      [--client-id-pattern RE] [--role-pattern RE]\n"
               "                      [--session-id-pattern RE] [--await-acks]\n"
               "                      [--timeout-ms N] [--report full|summary|none]\n"
               "       pushgate push --url URL --key KEY --channel NAME [--channel NAME...]\n"
               "                      --event NAME --data JSON\n"
               "       pushgate version\n");
}

static int set(char **dst, const char *v)
{
    free(*dst);
    *dst = strdup(v);
    return *dst ? 0 : -ENOMEM;
}

/* POSTs body to url + path; prints the answer (stdout on 2xx, stderr otherwise).
 * Returns the exit code: 0 on 2xx, 1 otherwise. */
static int post_and_print(const char *url, const char *path, const char *key, const char *body)
{
    char full[2048];
    size_t ul = strlen(url);
    snprintf(full, sizeof(full), "%.*s%s", (int)(ul && url[ul - 1] == '/' ? ul - 1 : ul), url,
             path);
    buf_t *resp = NULL;
    int status = cli_http_post(full, key, body, &resp);
    if (status < 0) {
        fprintf(stderr, "pushgate: %s: %s\n", full, strerror(-status));
        return 1;
    }
    FILE *out = status >= 200 && status < 300 ? stdout : stderr;
    fwrite(resp->data, 1, resp->len, out);
    fputc('\n', out);
    buf_unref(resp);
    return out == stdout ? 0 : 1;
}

static int cmd_serve(int argc, char **argv)
{
    enum {
        O_CONFIG = 1,
        O_LISTEN,
        O_WORKERS,
        O_DATA,
        O_REDIS,
        O_NODE,
        O_APP,
        O_DIAG,
        O_TLS_CERT,
        O_TLS_KEY,
        O_NATS
    };
    static const struct option opts[] = {{"config", required_argument, 0, O_CONFIG},
                                         {"listen", required_argument, 0, O_LISTEN},
                                         {"workers", required_argument, 0, O_WORKERS},
                                         {"data-dir", required_argument, 0, O_DATA},
                                         {"redis", required_argument, 0, O_REDIS},
                                         {"node-id", required_argument, 0, O_NODE},
                                         {"application-id", required_argument, 0, O_APP},
                                         {"diagnostics", no_argument, 0, O_DIAG},
                                         {"tls-cert", required_argument, 0, O_TLS_CERT},
                                         {"tls-key", required_argument, 0, O_TLS_KEY},
                                         {"nats", required_argument, 0, O_NATS},
                                         {0, 0, 0, 0}};
    config_t cfg;
    char err[512];
    if (config_init(&cfg) < 0) return 1;
    /* the file first, then every flag on top of it, whatever their order */
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == '?') {
            usage(stderr);
            return 2;
        }
        if (c == O_CONFIG && config_load_file(&cfg, optarg, err, sizeof(err)) < 0) {
            fprintf(stderr, "pushgate: config: %s\n", err);
            config_free(&cfg);
            return 2;
        }
    }
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int r = 0;
        char *end;
        switch (c) {
        case O_LISTEN:
            if (config_set_listen(&cfg, optarg) < 0) {
                fprintf(stderr, "pushgate: --listen must be HOST:PORT\n");
                return 2;
            }
            break;
        case O_WORKERS:
            cfg.workers = (int)strtol(optarg, &end, 10);
            if (*end || cfg.workers < 1 || cfg.workers > 1024) {
                fprintf(stderr, "pushgate: --workers must be between 1 and 1024\n");
                return 2;
            }
            break;
        case O_DATA:
            r = set(&cfg.data_dir, optarg);
            break;
        case O_REDIS:
            r = set(&cfg.redis_url, optarg);
            break;
        case O_NATS:
            r = set(&cfg.nats_url, optarg);
            break;
        case O_NODE:
            r = set(&cfg.node_id, optarg);
            break;
        case O_APP:
            r = set(&cfg.application_id, optarg);
            break;
        case O_DIAG:
            cfg.diagnostics = 1;
            break;
        case O_TLS_CERT:
            r = set(&cfg.tls_cert, optarg);
            break;
        case O_TLS_KEY:
            r = set(&cfg.tls_key, optarg);
            break;
        default:
            break;
        }
        if (r < 0) return 1;
    }
    if (optind < argc) {
        fprintf(stderr, "pushgate: unexpected argument %s\n", argv[optind]);
        return 2;
    }
    if (!cfg.tls_cert != !cfg.tls_key) {
        fprintf(stderr, "pushgate: TLS needs both a certificate and a key (--tls-cert and "
                        "--tls-key, or tls.cert and tls.key)\n");
        config_free(&cfg);
        return 2;
    }
    int rc = node_run(&cfg);
    config_free(&cfg);
    return rc;
}

static int cmd_push_request(int argc, char **argv)
{
    enum { O_URL = 1, O_KEY, O_PAYLOAD, O_CID, O_ROLE, O_SID, O_ACKS, O_TIMEOUT, O_REPORT };
    static const struct option opts[] = {{"url", required_argument, 0, O_URL},
                                         {"key", required_argument, 0, O_KEY},
                                         {"payload", required_argument, 0, O_PAYLOAD},
                                         {"client-id-pattern", required_argument, 0, O_CID},
                                         {"role-pattern", required_argument, 0, O_ROLE},
                                         {"session-id-pattern", required_argument, 0, O_SID},
                                         {"await-acks", no_argument, 0, O_ACKS},
                                         {"timeout-ms", required_argument, 0, O_TIMEOUT},
                                         {"report", required_argument, 0, O_REPORT},
                                         {0, 0, 0, 0}};
    const char *url = NULL, *key = NULL, *payload = NULL;
    json_t *body = json_object(), *options = json_object();
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_URL:
            url = optarg;
            break;
        case O_KEY:
            key = optarg;
            break;
        case O_PAYLOAD:
            payload = optarg;
            break;
        case O_CID:
            json_object_set_new(body, "clientIdPattern", json_string(optarg));
            break;
        case O_ROLE:
            json_object_set_new(body, "rolePattern", json_string(optarg));
            break;
        case O_SID:
            json_object_set_new(body, "sessionIdPattern", json_string(optarg));
            break;
        case O_ACKS:
            json_object_set_new(options, "awaitAcks", json_true());
            break;
        case O_TIMEOUT: {
            char *end;
            long long ms = strtoll(optarg, &end, 10);
            if (*end || ms < 1) {
                fprintf(stderr, "pushgate: --timeout-ms must be a positive integer\n");
                return 2;
            }
            json_object_set_new(options, "timeoutMs", json_integer(ms));
            break;
        }
        case O_REPORT:
            json_object_set_new(options, "report", json_string(optarg));
            break;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!url || !payload) {
        fprintf(stderr, "pushgate: push-request needs --url and --payload\n");
        return 2;
    }
    json_error_t je;
    json_t *sr = json_loads(payload, JSON_DECODE_ANY, &je);
    if (!sr) {
        fprintf(stderr, "pushgate: --payload is not valid JSON: %s\n", je.text);
        return 2;
    }
    json_object_set_new(body, "serviceRequest", sr);
    if (json_object_size(options)) json_object_set(body, "options", options);
    json_decref(options);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    int rc = post_and_print(url, "/api/push-requests", key, text);
    free(text);
    return rc;
}

static int cmd_push(int argc, char **argv)
{
    enum { O_URL = 1, O_KEY, O_CHANNEL, O_EVENT, O_DATA };
    static const struct option opts[] = {
        {"url", required_argument, 0, O_URL},         {"key", required_argument, 0, O_KEY},
        {"channel", required_argument, 0, O_CHANNEL}, {"event", required_argument, 0, O_EVENT},
        {"data", required_argument, 0, O_DATA},       {0, 0, 0, 0}};
    const char *url = NULL, *key = NULL, *event = NULL, *data = NULL;
    json_t *channels = json_array();
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_URL:
            url = optarg;
            break;
        case O_KEY:
            key = optarg;
            break;
        case O_CHANNEL:
            json_array_append_new(channels, json_string(optarg));
            break;
        case O_EVENT:
            event = optarg;
            break;
        case O_DATA:
            data = optarg;
            break;
        default:
            usage(stderr);
            json_decref(channels);
            return 2;
        }
    }
    if (!url || !event || !data || json_array_size(channels) == 0) {
        fprintf(stderr, "pushgate: push needs --url, --channel, --event and --data\n");
        json_decref(channels);
        return 2;
    }
    json_error_t je;
    json_t *d = json_loads(data, JSON_DECODE_ANY, &je);
    if (!d) {
        fprintf(stderr, "pushgate: --data is not valid JSON: %s\n", je.text);
        json_decref(channels);
        return 2;
    }
    /* key order as seed 003 shows it: channel, data, event */
    json_t *body = json_pack("{s:o, s:o, s:s}", "channel", channels, "data", d, "event", event);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) return 1;
    int rc = post_and_print(url, "/api/push", key, text);
    free(text);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "serve") == 0) return cmd_serve(argc - 1, argv + 1);
    if (strcmp(argv[1], "push-request") == 0) return cmd_push_request(argc - 1, argv + 1);
    if (strcmp(argv[1], "push") == 0) return cmd_push(argc - 1, argv + 1);
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("pushgate %s\n", PUSHGATE_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 2;
}
