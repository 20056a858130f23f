/* SQLite database lifecycle. */
#include "store/db.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

int store_open(store_t *st, const char *data_dir, char *err, size_t errlen)
{
    memset(st, 0, sizeof(*st));
    size_t n = strlen(data_dir) + 32;
    if (!(st->path = malloc(n))) return -ENOMEM;
    snprintf(st->path, n, "%s/pushgate.db", data_dir);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
    if (sqlite3_open_v2(st->path, &st->db, flags, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s", st->path,
                 st->db ? sqlite3_errmsg(st->db) : "out of memory");
        store_close(st);
        return -EIO;
    }
    sqlite3_busy_timeout(st->db, 5000);
    if (store_exec(st, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                       "PRAGMA foreign_keys=ON;") < 0) {
        snprintf(err, errlen, "cannot set up %s: %s", st->path, sqlite3_errmsg(st->db));
        store_close(st);
        return -EIO;
    }
    return 0;
}

int store_exec(store_t *st, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        log_error("store statement failed", "error=\"%s\"", msg ? msg : "?");
        sqlite3_free(msg);
        return -EIO;
    }
    return 0;
}

void store_close(store_t *st)
{
    if (st->db) sqlite3_close_v2(st->db);
    free(st->path);
    memset(st, 0, sizeof(*st));
}
