/* The device queue's records in Redis (store/devices_redis.c, docs/cluster.md): a
 * command is a hash {id, device, status, verb, endpoint, body, bodyJson, contentType,
 * queryString, attempts, createdAt, expiresAt, sentAt, completedAt, response, error},
 * an orphan result a hash {id, device, receivedAt, response, error}; statuses are
 * stored by name, numbers in decimal, absent fields are left out. Wake-ups between
 * nodes are short messages "p42,r17 <nodeId>" (p: a device's queue changed, r: a
 * command finished). Pure: strings in, structs out; unit-tested
 * (tests/unit/test_devices_rcodec.c). */
#ifndef PG_STORE_DEVICES_RCODEC_H
#define PG_STORE_DEVICES_RCODEC_H

#include <stddef.h>
#include <stdint.h>

#include "store/devices.h"

/* A string with its length (a field or value of a hash; not NUL-terminated). */
typedef struct devices_rstr_s {
    const char *s;
    size_t len;
} devices_rstr_t;

/* Most fields devices_rcmd_fields writes (as field, value pairs). */
#define DEVICES_RCMD_FIELDS_MAX 12

/* The fields of a new command that come from the command itself (verb, endpoint,
 * contentType, body and bodyJson when it has a body, queryString when it has one), as
 * field/value pairs into out (at least DEVICES_RCMD_FIELDS_MAX entries); defaults
 * applied as the SQLite queue does (verb POST, contentType application/json). The
 * strings point into cmd or are static. Returns the number of entries (even). */
size_t devices_rcmd_fields(const device_cmd_t *cmd, devices_rstr_t *out);

/* Decodes a command hash (HGETALL's field/value pairs, n entries) into *out (clear it
 * with devices_cmd_clear). Unknown fields are ignored. Returns 0, -EINVAL when a
 * required field (id, device, status, verb, endpoint, contentType, attempts,
 * createdAt) is missing or malformed, -ENOMEM. */
int devices_rcmd_decode(const devices_rstr_t *kv, size_t n, devices_cmd_t *out);

/* Decodes an orphan hash into *out (clear it with devices_orphan_clear). Returns 0,
 * -EINVAL (id, device or receivedAt missing or malformed), -ENOMEM. */
int devices_rorphan_decode(const devices_rstr_t *kv, size_t n, devices_orphan_t *out);

/* What a wake-up names. */
enum devices_wake_kind { DEVICES_WAKE_POLL = 0, DEVICES_WAKE_RESULT = 1 };

typedef struct devices_wake_s {
    int kind;    /* enum devices_wake_kind */
    int64_t key; /* the device id (poll) or the command id (result) */
} devices_wake_t;

/* Parses a wake-up message "p42,r17 <nodeId>": at most max items into items; *node
 * and *node_len name the node that sent it (pointing into body). Returns the number
 * of items (1 or more), or -EINVAL (malformed, or more than max items). */
int devices_wake_parse(const char *body, size_t len, devices_wake_t *items, size_t max,
                       const char **node, size_t *node_len);

#endif
