/* The console's files (web/console/), embedded at build time by
 * scripts/embed_assets.sh into $(BUILD)/gen/console_assets.c. */
#ifndef PG_CONSOLE_ASSETS_H
#define PG_CONSOLE_ASSETS_H

#include <stddef.h>

typedef struct console_asset_s {
    const char *name;         /* file name, e.g. "app.js" */
    const char *content_type; /* by extension */
    const char *etag;         /* quoted: "\"<sha-256 prefix>\"" */
    const char *data;
    size_t len;
} console_asset_t;

extern const console_asset_t console_assets[];
extern const unsigned console_n_assets;

#endif
