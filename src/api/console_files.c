/* GET /console/files/{name}: with "console": {"filesDir": DIR} only, plain files from
 * DIR (flat names), so browser tests can load a page and a client library from the
 * node's own origin. For tests and local development, never for production. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"

#define DIAG_MAX_FILE (4u << 20)

static const char *content_type(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (dot && strcmp(dot, ".html") == 0) return "text/html; charset=utf-8";
    if (dot && strcmp(dot, ".js") == 0) return "text/javascript; charset=utf-8";
    if (dot && strcmp(dot, ".css") == 0) return "text/css; charset=utf-8";
    return "application/octet-stream";
}

/* A flat file name: [A-Za-z0-9._-], not starting with '.'. Returns 1 or 0. */
static int name_ok(const char *name)
{
    if (!*name || *name == '.' || strlen(name) > 128) return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == '-'))
            return 0;
    return 1;
}

/* Reads path whole (at most DIAG_MAX_FILE bytes). Returns the length with a new buffer
 * in *out, or a negative errno. */
static long read_file(const char *path, char **out)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -errno;
    char *data = malloc(DIAG_MAX_FILE);
    size_t n = data ? fread(data, 1, DIAG_MAX_FILE, f) : 0;
    int err = !data ? -ENOMEM : ferror(f) ? -EIO : !feof(f) ? -EFBIG : 0;
    fclose(f);
    if (err < 0) {
        free(data);
        return err;
    }
    *out = data;
    return (long)n;
}

void api_console_file(http_ctx_t *ctx, const char *name)
{
    app_t *app = ctx->app;
    if (!app->cfg->console_files_dir || !name_ok(name)) {
        http_respond_error(ctx, 404, "not found");
        return;
    }
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", app->cfg->console_files_dir, name);
    char *data = NULL;
    long n = read_file(path, &data);
    if (n < 0) {
        http_respond_error(ctx, n == -ENOENT ? 404 : 500,
                           n == -ENOENT ? "not found" : "unreadable");
        return;
    }
    http_respond(ctx, 200, content_type(name), data, (size_t)n, "Cache-Control: no-store\r\n");
    free(data);
}
