/* Client credentials for subscribe endpoints (SSE, socket.io): a session id or JWT from
 * `Authorization: Bearer`, or the `token` query parameter. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "http/url.h"

int api_client_identity(http_ctx_t *ctx, auth_identity_t **out)
{
    *out = NULL;
    const char *auth = http_request_header(ctx->req, "Authorization");
    char *token = NULL;
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
        const char *t = auth + 7;
        while (*t == ' ')
            t++;
        token = strdup(t);
        if (!token) return -ENOMEM;
    } else if (url_query_get(ctx->req->query, "token", &token) < 0) {
        token = NULL;
    }
    if (!token || !*token) {
        free(token);
        return 0;
    }
    int r = auth_resolve(token, out);
    free(token);
    if (r < 0) return r == -ENOMEM ? -ENOMEM : -EACCES;
    return 1;
}
