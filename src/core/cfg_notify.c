/* The node-local "notifications" section: channels by name, each of one kind
 * (docs/notifications.md). */
#include "cfg_internal.h"

#include <stdio.h>
#include <string.h>

#define MS_MAX 86400000u
#define SECRET_MAX 4096u
#define PAGERDUTY_URL "https://events.pagerduty.com/v2/enqueue"

typedef struct dw_notify_channel ch_t;

static const char *const notify_kinds[] = { "slack", "pagerduty", "webhook", "hook", NULL };

#define KIND_ROW \
    { .key = "kind", .kind = K_ENUM, .off = offsetof(ch_t, kind), .names = notify_kinds }
#define TIMEOUT_ROW NUM("timeout_ms", ch_t, timeout_ms, 10000, 1, MS_MAX)

/* A secret file must hold a secret now: the notifier reads it at start. Its content is never
 * echoed. */
static void check_secret_file(struct ctx *c, const char *key, const char *file, bool is_url)
{
    char buf[SECRET_MAX + 1], msg[200];
    if (!file[0] || !c->files)
        return;
    if (c->files->read_secret(file, buf, sizeof buf, msg, sizeof msg) != 0)
        cfg_err_key(c, key, "%s", msg);
    else if (is_url && strncmp(buf, "https://", 8) != 0 && strncmp(buf, "http://", 7) != 0)
        cfg_err_key(c, key, "\"%s\" does not hold an http:// or https:// URL", file);
    explicit_bzero(buf, sizeof buf);
}

static void slack_check(struct ctx *c, const cJSON *obj, void *base)
{
    ch_t *ch = base;
    check_secret_file(c, "webhook_url_file", ch->webhook_url_file, true);
}

static void pagerduty_check(struct ctx *c, const cJSON *obj, void *base)
{
    ch_t *ch = base;
    if (!ch->url[0])
        snprintf(ch->url, sizeof ch->url, "%s", PAGERDUTY_URL);
    check_secret_file(c, "routing_key_file", ch->routing_key_file, false);
}

static void webhook_check(struct ctx *c, const cJSON *obj, void *base)
{
    ch_t *ch = base;
    check_secret_file(c, "secret_file", ch->secret_file, false);
}

static void hook_check(struct ctx *c, const cJSON *obj, void *base)
{
    ch_t *ch = base;
    char msg[256];
    if (ch->n_command < 1 || !ch->command[0][0])
        return; /* reported on "command" */
    if (ch->command[0][0] != '/')
        cfg_err_key(c, "command", "the program must be an absolute path (\"%.100s\")",
                    ch->command[0]);
    else if (c->files && c->files->readable(ch->command[0], msg, sizeof msg) != 0)
        cfg_err_key(c, "command", "%s", msg);
}

static const struct field slack_f[] = {
    KIND_ROW,
    STR("webhook_url_file", true, ch_t, webhook_url_file, F_PATH),
    TIMEOUT_ROW,
};
static const struct field pagerduty_f[] = {
    KIND_ROW,
    STR("routing_key_file", true, ch_t, routing_key_file, F_PATH),
    STR("url", false, ch_t, url, F_URL),
    TIMEOUT_ROW,
};
static const struct field webhook_f[] = {
    KIND_ROW,
    STR("url", true, ch_t, url, F_URL),
    STR("secret_file", false, ch_t, secret_file, F_PATH),
    TIMEOUT_ROW,
};
static const struct field hook_f[] = {
    KIND_ROW,
    ARR("command", ch_t, command, n_command, 1, DW_HOOK_ARGS_MAX, NULL, F_PATH),
    TIMEOUT_ROW,
};
static const struct table kind_tables[] = {
    [DW_NOTIFY_SLACK] = { .f = slack_f, .n = sizeof slack_f / sizeof slack_f[0],
                          .check = slack_check },
    [DW_NOTIFY_PAGERDUTY] = { .f = pagerduty_f, .n = sizeof pagerduty_f / sizeof pagerduty_f[0],
                              .check = pagerduty_check },
    [DW_NOTIFY_WEBHOOK] = { .f = webhook_f, .n = sizeof webhook_f / sizeof webhook_f[0],
                            .check = webhook_check },
    [DW_NOTIFY_HOOK] = { .f = hook_f, .n = sizeof hook_f / sizeof hook_f[0],
                         .check = hook_check },
};

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n >= DW_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", s[i]))
            return false;
    return true;
}

/* {"<name>": {"kind": ..., ...}, ...}; "kind" may be left out when the name is a kind. */
static void parse_channels(struct ctx *c, const cJSON *v, void *base)
{
    struct dw_notify_cfg *nc = base;
    if (!v)
        return;
    if (!cJSON_IsObject(v)) {
        cfg_err(c, "expected an object of channels by name");
        return;
    }
    if (cJSON_GetArraySize(v) > DW_MAX_CHANNELS)
        cfg_err(c, "more than %d channels", DW_MAX_CHANNELS);
    for (const cJSON *o = v->child; o && nc->n_channels < DW_MAX_CHANNELS; o = o->next) {
        size_t old = cfg_push_key(c, o->string);
        const cJSON *kind = cfg_get(o, "kind");
        int k = cfg_name_index(kind, notify_kinds);
        bool dup = false;
        for (const cJSON *e = v->child; e != o && !dup; e = e->next)
            dup = strcmp(e->string, o->string) == 0;
        if (!kind) {
            for (int i = 0; notify_kinds[i] && k < 0; i++)
                k = strcmp(o->string, notify_kinds[i]) == 0 ? i : -1;
        }
        if (dup) {
            cfg_err(c, "duplicate channel (only the first is used)");
        } else if (!valid_name(o->string)) {
            cfg_err(c, "invalid channel name (expected 1 to %d of [A-Za-z0-9._-])",
                    DW_ID_MAX - 1);
        } else if (!cJSON_IsObject(o)) {
            cfg_err(c, "expected an object");
        } else if (k < 0 && kind) {
            cfg_err_key(c, "kind", "must be \"slack\", \"pagerduty\", \"webhook\" or \"hook\"");
        } else if (k < 0) {
            cfg_err_key(c, "kind", "missing (required unless the channel is named after its "
                        "kind: \"slack\", \"pagerduty\", \"webhook\" or \"hook\")");
        } else {
            ch_t *ch = &nc->channels[nc->n_channels++];
            snprintf(ch->name, sizeof ch->name, "%s", o->string);
            cfg_parse_object(c, o, &kind_tables[k], ch);
            ch->kind = (enum dw_notify_kind)k;
        }
        cfg_pop(c, old);
    }
}

static void notify_check(struct ctx *c, const cJSON *obj, void *base)
{
    struct dw_notify_cfg *nc = base;
    if (!nc->cluster[0])
        snprintf(nc->cluster, sizeof nc->cluster, "drwatch");
}

static const struct field notify_f[] = {
    STR("cluster", false, struct dw_notify_cfg, cluster, F_ID),
    NUM("max_age_ms", struct dw_notify_cfg, max_age_ms, 3600000, 1000, 7 * MS_MAX),
    { .key = "channels", .kind = K_FUNC, .fn = parse_channels },
};
const struct table cfg_notify_table = { .f = notify_f, .n = sizeof notify_f / sizeof notify_f[0],
                                        .check = notify_check };
