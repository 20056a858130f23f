/* Channel name validation and subscribe rules. */
#include "auth/channels.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "hub/selector.h"

int channel_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > CHANNEL_NAME_MAX) return -EINVAL;
    for (const char *p = name; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("_.:@/=+-", c)))
            return -EINVAL;
    }
    return 0;
}

int channel_rules_validate(json_t *channels, char *err, size_t errlen)
{
    if (!channels) return 0;
    if (!json_is_object(channels)) {
        snprintf(err, errlen, "channels must be an object");
        return -EINVAL;
    }
    const char *k;
    json_t *v;
    json_object_foreach(channels, k, v)
    {
        if (strcmp(k, "subscribe") != 0) {
            snprintf(err, errlen, "channels.%s is not a known key", k);
            return -EINVAL;
        }
    }
    json_t *rules = json_object_get(channels, "subscribe");
    if (!rules) return 0;
    if (!json_is_array(rules)) {
        snprintf(err, errlen, "channels.subscribe must be an array");
        return -EINVAL;
    }
    size_t i;
    json_t *r;
    json_array_foreach(rules, i, r)
    {
        json_t *cp = json_object_get(r, "channelPattern");
        json_t *rp = json_object_get(r, "rolePattern");
        char why[200];
        if (!json_is_object(r) || !json_is_string(cp)) {
            snprintf(err, errlen, "channels.subscribe[%zu].channelPattern must be a string", i);
            return -EINVAL;
        }
        if (selector_validate(json_string_value(cp), why, sizeof(why)) < 0) {
            snprintf(err, errlen, "channels.subscribe[%zu].channelPattern: %s", i, why);
            return -EINVAL;
        }
        if (rp && !json_is_null(rp) &&
            (!json_is_string(rp) ||
             selector_validate(json_string_value(rp), why, sizeof(why)) < 0)) {
            snprintf(err, errlen, "channels.subscribe[%zu].rolePattern must be a valid pattern", i);
            return -EINVAL;
        }
    }
    return 0;
}

int channel_may_subscribe(json_t *channels, const char *name, const auth_identity_t *id)
{
    json_t *rules = json_object_get(channels, "subscribe");
    if (!json_is_array(rules)) return 0;
    int needs_credentials = 0;
    size_t i;
    json_t *r;
    json_array_foreach(rules, i, r)
    {
        if (!selector_match(json_string_value(json_object_get(r, "channelPattern")), name))
            continue;
        const char *rp = json_string_value(json_object_get(r, "rolePattern"));
        if (!rp) return 0;
        if (!id) {
            needs_credentials = 1;
            continue;
        }
        if (selector_match_any(rp, id->roles, id->n_roles)) return 0;
    }
    return needs_credentials ? -EACCES : -EPERM;
}
