/* Connections per client IP, shared by every worker of a node: a hash table split into
 * stripes, each with its own lock, so two accepts rarely meet on one lock. An entry
 * exists only while its address has a connection: memory is bounded by the number of
 * connections, and a table with no limit configured is never touched. */
#ifndef PG_IPTABLE_H
#define PG_IPTABLE_H

#include <stdint.h>
#include <sys/socket.h>

typedef struct iptable_s iptable_t;

/* An address as 16 bytes: IPv6 as is, IPv4 as ::ffff:a.b.c.d. */
typedef struct ipkey_s {
    uint8_t b[16];
} ipkey_t;

/* Fills k from an AF_INET or AF_INET6 socket address. Returns 0 or -EAFNOSUPPORT. */
int ipkey_from_sockaddr(const struct sockaddr *sa, ipkey_t *k);

/* Creates an empty table. Returns 0 or -ENOMEM. */
int iptable_new(iptable_t **tp);

/* Frees the table and whatever entries remain. */
void iptable_free(iptable_t *t);

/* Counts one more connection from k unless k already has max (0: no limit). On success
 * *held (when not NULL) is the table's own copy of k, valid until the matching release:
 * a connection keeps that pointer rather than 16 bytes of address.
 * Returns 0 (counted), -EUSERS (k is at max; nothing counted), -ENOMEM. */
int iptable_acquire(iptable_t *t, const ipkey_t *k, unsigned max, const ipkey_t **held);

/* Counts one connection from k less (an entry at zero is freed, and with it the copy
 * acquire handed out). */
void iptable_release(iptable_t *t, const ipkey_t *k);

/* How many connections k has now. */
unsigned iptable_count(iptable_t *t, const ipkey_t *k);

#endif
