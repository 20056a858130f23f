/* The embedded store: one SQLite database (WAL mode) at <dataDir>/pushgate.db.
 * Modules create their own tables at startup (store_exec with CREATE TABLE IF NOT
 * EXISTS). The connection is opened in serialized mode, so any worker may use it;
 * statements are short, and WAL with synchronous=NORMAL keeps every committed
 * transaction across a crash of the process (kill -9), not across power loss. */
#ifndef PG_STORE_DB_H
#define PG_STORE_DB_H

#include <sqlite3.h>
#include <stddef.h>

typedef struct store_s {
    sqlite3 *db;
    char *path;
} store_t;

/* Opens (creating if needed) the database under data_dir. Returns 0, or -EIO with a
 * message in err. */
int store_open(store_t *st, const char *data_dir, char *err, size_t errlen);

/* Runs one or more SQL statements without results. Returns 0 or -EIO (logged). */
int store_exec(store_t *st, const char *sql);

/* Closes the database (checkpointing the WAL). */
void store_close(store_t *st);

#endif
