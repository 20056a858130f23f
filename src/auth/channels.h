/* Channel names and who may subscribe to them (config `channels.subscribe`: rules of
 * `channelPattern` + optional `rolePattern`, full-match PCRE2; no rules: every channel
 * is public). Pure functions over the config. */
#ifndef PG_CHANNELS_H
#define PG_CHANNELS_H

#include <jansson.h>
#include <stddef.h>

#include "auth/auth.h"

#define CHANNEL_NAME_MAX 128

/* Checks a channel name: 1..128 bytes of [A-Za-z0-9_.:@/=+-]. Returns 0 or -EINVAL. */
int channel_name_valid(const char *name);

/* Validates the config's `channels` object (NULL is fine). Writes a message naming the
 * key into err. Returns 0 or -EINVAL. */
int channel_rules_validate(json_t *channels, char *err, size_t errlen);

/* Decides whether id (NULL: no credentials) may subscribe to name under the rules.
 * Returns 0 (allowed), -EACCES (credentials would be needed), -EPERM (not allowed). */
int channel_may_subscribe(json_t *channels, const char *name, const auth_identity_t *id);

#endif
