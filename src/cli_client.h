/* A small blocking HTTP/1.1 client for the command line (push-request). */
#ifndef PG_CLI_CLIENT_H
#define PG_CLI_CLIENT_H

#include <stddef.h>

#include "core/buf.h"

/* POSTs body (JSON) to url ("http://host:port/path", or "https://…": the server's
 * certificate is verified against OpenSSL's default trust store, which SSL_CERT_FILE
 * can point elsewhere) with `Authorization: Bearer key` when key is not NULL, and reads
 * the whole answer. Returns the HTTP status with the body in *resp (new buffer), or a
 * negative errno (-EINVAL for a bad url or answer, -ECONNREFUSED, -EPROTO for a TLS
 * handshake that failed, …). */
int cli_http_post(const char *url, const char *key, const char *body, buf_t **resp);

#endif
