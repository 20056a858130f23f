/* Time-ordered unique ids and random tokens. */
#include "core/ids.h"

#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <sys/time.h>

static uint32_t ids_node_rand;
static uint32_t ids_counter;

int ids_random(void *buf, size_t len)
{
    return RAND_bytes(buf, (int)len) == 1 ? 0 : -EIO;
}

int ids_random_hex(char *out, size_t len)
{
    unsigned char raw[64];
    if (len > sizeof(raw) || ids_random(raw, len) < 0) return -EIO;
    for (size_t i = 0; i < len; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

void ids_init(void)
{
    if (ids_random(&ids_node_rand, sizeof(ids_node_rand)) < 0) ids_node_rand = 0x5eed1234u;
}

int ids_next(char out[ID_MAX])
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    uint64_t ms = (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
    uint32_t n = __atomic_add_fetch(&ids_counter, 1, __ATOMIC_RELAXED);
    return snprintf(out, ID_MAX, "%013llx-%08x-%08x", (unsigned long long)ms, ids_node_rand, n);
}

int ids_valid(const char *s)
{
    static const char shape[] = "xxxxxxxxxxxxx-xxxxxxxx-xxxxxxxx";
    for (size_t i = 0; i < sizeof(shape) - 1; i++) {
        char c = s[i];
        int hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
        if (shape[i] == '-' ? c != '-' : !hex) return 0;
    }
    return s[sizeof(shape) - 1] == '\0';
}
