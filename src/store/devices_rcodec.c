/* The device queue's Redis records: command and orphan hashes, wake-up messages. */
#include "store/devices_rcodec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "transport/device_codec.h"

#define S(lit) ((devices_rstr_t){lit, sizeof(lit) - 1})

static devices_rstr_t str(const char *s)
{
    return (devices_rstr_t){s, strlen(s)};
}

size_t devices_rcmd_fields(const device_cmd_t *cmd, devices_rstr_t *out)
{
    size_t n = 0;
    out[n++] = S("verb");
    out[n++] = str(cmd->verb ? cmd->verb : "POST");
    out[n++] = S("endpoint");
    out[n++] = str(cmd->endpoint ? cmd->endpoint : "");
    out[n++] = S("contentType");
    out[n++] = str(cmd->content_type ? cmd->content_type : "application/json");
    if (cmd->body) {
        out[n++] = S("body");
        out[n++] = str(cmd->body);
        out[n++] = S("bodyJson");
        out[n++] = cmd->body_json ? S("1") : S("0");
    }
    if (cmd->query_string) {
        out[n++] = S("queryString");
        out[n++] = str(cmd->query_string);
    }
    return n;
}

static int is(const devices_rstr_t *f, const char *name)
{
    return f->len == strlen(name) && memcmp(f->s, name, f->len) == 0;
}

/* A decimal int64 of the value. Returns 0 or -EINVAL. */
static int num(const devices_rstr_t *v, int64_t *out)
{
    char b[24];
    if (!v->len || v->len >= sizeof(b)) return -EINVAL;
    memcpy(b, v->s, v->len);
    b[v->len] = '\0';
    return device_id_parse(b, out) == 0 ? 0 : -EINVAL;
}

/* A new NUL-terminated copy of the value (values hold no NUL). */
static char *dup(const devices_rstr_t *v)
{
    if (memchr(v->s, '\0', v->len)) return NULL;
    return strndup(v->s, v->len);
}

int devices_rcmd_decode(const devices_rstr_t *kv, size_t n, devices_cmd_t *out)
{
    memset(out, 0, sizeof(*out));
    enum { F_ID = 1, F_DEVICE = 2, F_STATUS = 4, F_ATTEMPTS = 8, F_CREATED = 16 };
    unsigned have = 0;
    int r = 0;
    for (size_t i = 0; i + 1 < n && r == 0; i += 2) {
        const devices_rstr_t *f = &kv[i], *v = &kv[i + 1];
        int64_t x = 0;
        char **s = NULL;
        if (is(f, "id")) {
            r = num(v, &out->id);
            have |= F_ID;
        } else if (is(f, "device")) {
            r = num(v, &out->device_id);
            have |= F_DEVICE;
        } else if (is(f, "status")) {
            int st = devices_status_parse(v->s, v->len);
            if (st < 0) r = -EINVAL;
            out->status = st;
            have |= F_STATUS;
        } else if (is(f, "attempts")) {
            r = num(v, &x);
            if (!r && (x < 0 || x > INT32_MAX)) r = -EINVAL;
            out->attempts = (int)x;
            have |= F_ATTEMPTS;
        } else if (is(f, "createdAt")) {
            r = num(v, &out->created_at);
            have |= F_CREATED;
        } else if (is(f, "expiresAt")) {
            r = num(v, &out->expires_at);
        } else if (is(f, "sentAt")) {
            r = num(v, &out->sent_at);
        } else if (is(f, "completedAt")) {
            r = num(v, &out->completed_at);
        } else if (is(f, "bodyJson")) {
            out->cmd.body_json = v->len == 1 && v->s[0] == '1';
        } else if (is(f, "verb")) {
            s = &out->cmd.verb;
        } else if (is(f, "endpoint")) {
            s = &out->cmd.endpoint;
        } else if (is(f, "body")) {
            s = &out->cmd.body;
        } else if (is(f, "contentType")) {
            s = &out->cmd.content_type;
        } else if (is(f, "queryString")) {
            s = &out->cmd.query_string;
        } else if (is(f, "response")) {
            s = &out->response;
        } else if (is(f, "error")) {
            s = &out->error;
        }
        if (s) {
            free(*s);
            if (!(*s = dup(v))) r = memchr(v->s, '\0', v->len) ? -EINVAL : -ENOMEM;
        }
    }
    unsigned need = F_ID | F_DEVICE | F_STATUS | F_ATTEMPTS | F_CREATED;
    if (r == 0 &&
        ((have & need) != need || !out->cmd.verb || !out->cmd.endpoint || !out->cmd.content_type))
        r = -EINVAL;
    if (r == 0 && !out->cmd.body) out->cmd.body_json = 0;
    if (r < 0) devices_cmd_clear(out);
    return r;
}

int devices_rorphan_decode(const devices_rstr_t *kv, size_t n, devices_orphan_t *out)
{
    memset(out, 0, sizeof(*out));
    unsigned have = 0;
    int r = 0;
    for (size_t i = 0; i + 1 < n && r == 0; i += 2) {
        const devices_rstr_t *f = &kv[i], *v = &kv[i + 1];
        char **s = NULL;
        if (is(f, "id")) {
            r = num(v, &out->id);
            have |= 1;
        } else if (is(f, "device")) {
            r = num(v, &out->device_id);
            have |= 2;
        } else if (is(f, "receivedAt")) {
            r = num(v, &out->received_at);
            have |= 4;
        } else if (is(f, "response")) {
            s = &out->response;
        } else if (is(f, "error")) {
            s = &out->error;
        }
        if (s) {
            free(*s);
            if (!(*s = dup(v))) r = memchr(v->s, '\0', v->len) ? -EINVAL : -ENOMEM;
        }
    }
    if (r == 0 && have != 7) r = -EINVAL;
    if (r < 0) devices_orphan_clear(out);
    return r;
}

int devices_wake_parse(const char *body, size_t len, devices_wake_t *items, size_t max,
                       const char **node, size_t *node_len)
{
    const char *sp = memchr(body, ' ', len);
    if (!sp || sp == body || sp + 1 == body + len) return -EINVAL;
    size_t n = 0;
    const char *p = body;
    while (p < sp) {
        const char *e = memchr(p, ',', (size_t)(sp - p));
        if (!e) e = sp;
        if (e - p < 2 || (*p != 'p' && *p != 'r') || n == max) return -EINVAL;
        devices_rstr_t v = {p + 1, (size_t)(e - p - 1)};
        int64_t key;
        if (num(&v, &key) < 0) return -EINVAL;
        items[n++] = (devices_wake_t){*p == 'p' ? DEVICES_WAKE_POLL : DEVICES_WAKE_RESULT, key};
        p = e + 1;
        if (e < sp && p == sp) return -EINVAL; /* a trailing comma */
    }
    *node = sp + 1;
    *node_len = len - (size_t)(sp + 1 - body);
    return (int)n;
}
