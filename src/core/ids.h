/* Push ids: unique and time-ordered (lexicographic order = creation order per node). */
#ifndef PG_IDS_H
#define PG_IDS_H

#include <stddef.h>
#include <stdint.h>

#define ID_MAX 48

/* Seeds the per-process random part. Call once before ids_next. */
void ids_init(void);

/* Writes a new id `<13 hex ms>-<8 hex node random>-<8 hex counter>` into out.
 * Returns the id's length. */
int ids_next(char out[ID_MAX]);

/* Tells whether s has the shape of an id from ids_next. Returns 1 or 0. */
int ids_valid(const char *s);

/* Fills buf with len random bytes from OpenSSL. Returns 0 or -EIO. */
int ids_random(void *buf, size_t len);

/* Writes 2*len lowercase hex digits of random bytes plus NUL into out.
 * Returns 0 or -EIO. */
int ids_random_hex(char *out, size_t len);

#endif
