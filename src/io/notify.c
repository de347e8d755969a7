/* The leader's notifier: sends journaled events to each channel, confirms through the log. */

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "drwatch/cfgfile.h"
#include "drwatch/entry.h"
#include "drwatch/log.h"
#include "drwatch/notify.h"

#define BACKOFF_FIRST_MS 1000u
#define BACKOFF_MAX_MS (5u * 60u * 1000u)
#define TICK_MS 5000u            /* leadership won, ages passed: looked at without an entry */
#define SECRET_MAX 4096
#define DEFAULT_CLUSTER "drwatch"

extern char **environ;

enum chan_state { C_IDLE, C_SENDING, C_CONFIRMING, C_WAITING };

struct chan {
    struct dw_notifier *nt;
    const struct dw_notify_channel *cfg;
    char secret[SECRET_MAX + 1]; /* webhook URL, routing key or HMAC key; "" for none */
    enum chan_state state;
    struct dw_event ev;          /* the event being sent or confirmed */
    int64_t sent_id;             /* sent, its confirmation not yet seen: confirmed, not resent */
    int64_t since;               /* events at or before this time are skipped (max_age_ms) */
    unsigned failures;           /* in a row, for the back-off */
    uv_timer_t backoff;
    /* hook */
    uv_process_t proc;
    uv_pipe_t in;
    uv_timer_t kill;
    uv_write_t wr;
    char *payload;
    int hook_handles;            /* not yet closed: the next run reuses them */
    bool timed_out;
    struct dw_notify_stats st;
};

struct dw_notifier {
    uv_loop_t *loop;
    struct dw_curlm *curlm;
    struct dw_notify_cfg *cfg; /* its own copy: a closed notifier may read it until freed */
    struct dw_fsm *fsm;
    struct dw_notify_ops ops;
    const char *cluster;
    uv_timer_t pass;  /* one pass over the channels on the next loop turn */
    uv_timer_t tick;
    int n;
    struct chan *ch;
    int refs;         /* open handles, requests and proposals in flight, and the owner's */
    bool closing;
};

static const char *const kind_names[] = {"slack", "pagerduty", "webhook", "hook"};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void unref(struct dw_notifier *nt)
{
    if (--nt->refs > 0)
        return;
    for (int i = 0; i < nt->n; i++)
        explicit_bzero(nt->ch[i].secret, sizeof nt->ch[i].secret);
    free(nt->ch);
    free(nt->cfg);
    free(nt);
}

static void handle_closed(uv_handle_t *h)
{
    unref(h->data);
}

static void close_handle(struct dw_notifier *nt, uv_handle_t *h)
{
    h->data = nt;
    uv_close(h, handle_closed);
}

/* ---- payloads ---- */

static char *print(cJSON *o)
{
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

char *dw_notify_event_body(const struct dw_event *ev, const char *cluster)
{
    return print(dw_event_json(ev, cluster));
}

/* Slack reads &, < and > as markup (mrkdwn): escaped, the summary reads as written. */
static void slack_escape(const char *in, char *out, size_t len)
{
    size_t n = 0;
    for (; *in && n + 6 < len; in++) {
        const char *rep = *in == '&' ? "&amp;" : *in == '<' ? "&lt;" : *in == '>' ? "&gt;" : NULL;
        if (rep) {
            memcpy(out + n, rep, strlen(rep));
            n += strlen(rep);
        } else {
            out[n++] = *in;
        }
    }
    out[n] = '\0';
}

char *dw_notify_slack_body(const struct dw_event *ev, const char *cluster)
{
    char when[40], line[DW_EVENT_SUMMARY_MAX + 256], text[sizeof line * 5 / 2];
    cJSON *o = cJSON_CreateObject();

    dw_event_time(ev->ts, when, sizeof when);
    snprintf(line, sizeof line, "[%s] %s in group %s at %s: %s", cluster, ev->kind, ev->group,
             when, ev->summary);
    slack_escape(line, text, sizeof text);
    if (o == NULL || !cJSON_AddStringToObject(o, "text", text)) {
        cJSON_Delete(o);
        return NULL;
    }
    return print(o);
}

/* PagerDuty's view of an event kind: "trigger", "resolve", or NULL (not sent). */
static const char *pd_action(const char *kind, const char **severity)
{
    static const struct {
        const char *kind, *action, *severity;
    } map[] = {
        {"failover", "trigger", "critical"},   {"no_target_up", "trigger", "critical"},
        {"operation_failed", "trigger", "error"}, {"hold", "trigger", "error"},
        {"failback", "resolve", NULL},         {"hold_released", "resolve", NULL},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (strcmp(kind, map[i].kind) == 0) {
            *severity = map[i].severity;
            return map[i].action;
        }
    }
    return NULL;
}

char *dw_notify_pagerduty_body(const struct dw_event *ev, const char *cluster,
                               const char *routing_key)
{
    const char *severity = NULL, *action = pd_action(ev->kind, &severity);
    char dedup[DW_ID_MAX + 16], when[40];
    cJSON *o, *p, *details;

    if (action == NULL)
        return NULL;
    snprintf(dedup, sizeof dedup, "drwatch/%s", ev->group);
    o = cJSON_CreateObject();
    if (o == NULL || !cJSON_AddStringToObject(o, "routing_key", routing_key) ||
        !cJSON_AddStringToObject(o, "event_action", action) ||
        !cJSON_AddStringToObject(o, "dedup_key", dedup))
        goto fail;
    if (strcmp(action, "resolve") == 0)
        return print(o);
    dw_event_time(ev->ts, when, sizeof when);
    details = dw_event_json(ev, cluster);
    if ((p = cJSON_AddObjectToObject(o, "payload")) == NULL || details == NULL ||
        !cJSON_AddStringToObject(p, "summary", ev->summary) ||
        !cJSON_AddStringToObject(p, "source", cluster) ||
        !cJSON_AddStringToObject(p, "severity", severity) ||
        !cJSON_AddStringToObject(p, "timestamp", when) ||
        !cJSON_AddStringToObject(p, "component", ev->group) ||
        !cJSON_AddStringToObject(p, "group", cluster) ||
        !cJSON_AddStringToObject(p, "class", ev->kind) ||
        !cJSON_AddItemToObject(p, "custom_details", details)) {
        cJSON_Delete(details);
        goto fail;
    }
    return print(o);
fail:
    cJSON_Delete(o);
    return NULL;
}

int dw_notify_signature(const char *key, const char *body, size_t len, char out[DW_NOTIFY_SIG_MAX])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)body, len, md, &mdlen) ==
            NULL ||
        mdlen != 32)
        return -1;
    memcpy(out, "sha256=", 7);
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(out + 7 + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* ---- delivery ---- */

static void schedule_pass(struct dw_notifier *nt);
static void confirm(struct chan *ch);

/* The fields of a delivery's log lines (docs/logging.md). */
#define EVENT_FIELDS(ch)                                                                        \
    DW_LOG_FIELDS(DW_LS("channel", (ch)->cfg->name), DW_LI("event", (ch)->ev.id),               \
                  DW_LS("kind", (ch)->ev.kind), DW_LS("group", (ch)->ev.group))

static void backoff_cb(uv_timer_t *t)
{
    struct chan *ch = t->data;
    if (ch->state == C_WAITING)
        ch->state = C_IDLE;
    schedule_pass(ch->nt);
}

/* A failed attempt: the same event again after 1 s, 2 s, 4 s ... 5 min, or after what a
 * Retry-After asked when that is longer (within the cap). */
static void failed(struct chan *ch, int retry_after_s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void failed(struct chan *ch, int retry_after_s, const char *fmt, ...)
{
    char why[300];
    va_list ap;
    unsigned shift = ch->failures < 9 ? ch->failures : 9;
    uint64_t delay = (uint64_t)BACKOFF_FIRST_MS << shift;

    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (retry_after_s > 0 && (uint64_t)retry_after_s * 1000 > delay)
        delay = (uint64_t)retry_after_s * 1000;
    if (delay > BACKOFF_MAX_MS)
        delay = BACKOFF_MAX_MS;
    ch->failures++;
    ch->st.failed++;
    dw_log_kv(DW_LOG_WARN, "notify", EVENT_FIELDS(ch),
              "%s: event %" PRId64 " (%s, group %s) not delivered (attempt %u): %s; next try in "
              "%.0f s", ch->cfg->name, ch->ev.id, ch->ev.kind, ch->ev.group, ch->failures, why,
              (double)delay / 1000);
    ch->state = C_WAITING;
    if (!ch->nt->closing)
        uv_timer_start(&ch->backoff, backoff_cb, delay, 0);
}

static void delivered(struct chan *ch)
{
    ch->st.sent++;
    ch->failures = 0;
    ch->sent_id = ch->ev.id;
    dw_log_kv(DW_LOG_INFO, "notify", EVENT_FIELDS(ch),
              "%s: event %" PRId64 " (%s, group %s) delivered", ch->cfg->name, ch->ev.id,
              ch->ev.kind, ch->ev.group);
    confirm(ch);
}

/* Refused for good: sending it again would be refused again, and the channel must not stall
 * behind it. Recorded as done, so the next event goes. */
static void refused(struct chan *ch, const char *why)
{
    ch->st.rejected++;
    ch->failures = 0;
    ch->sent_id = ch->ev.id;
    dw_log_kv(DW_LOG_ERROR, "notify", EVENT_FIELDS(ch),
              "%s: event %" PRId64 " (%s, group %s) refused by the receiver, not sent again: %s",
              ch->cfg->name, ch->ev.id, ch->ev.kind, ch->ev.group, why);
    confirm(ch);
}

static void http_done(const struct dw_http_resp *resp, void *data)
{
    struct chan *ch = data;
    struct dw_notifier *nt = ch->nt;
    char body[128];

    if (nt->closing) {
        unref(nt);
        return;
    }
    /* the body helps to tell why; it never holds our secret */
    snprintf(body, sizeof body, "%.100s", resp->body);
    for (char *p = body; *p; p++)
        if ((unsigned char)*p < ' ')
            *p = ' ';
    if (resp->curl_code != CURLE_OK)
        failed(ch, -1, "%s", resp->error ? resp->error : "transfer failed");
    else if (resp->status >= 200 && resp->status < 300)
        delivered(ch);
    else if (resp->status == 400 || resp->status == 413 || resp->status == 422) {
        char why[200];
        snprintf(why, sizeof why, "HTTP %ld %s", resp->status, body);
        refused(ch, why);
    } else
        failed(ch, resp->retry_after_s, "HTTP %ld %s", resp->status, body);
    unref(nt);
}

static int http_send(struct chan *ch, const char *url, const char *body, const char *sig)
{
    char sig_hdr[DW_NOTIFY_SIG_MAX + 32], kind_hdr[DW_EVENT_KIND_MAX + 32], id_hdr[48];
    const char *headers[5] = {"Content-Type: application/json", NULL, NULL, NULL, NULL};
    struct dw_http_opts o = {
        .method = "POST", .url = url, .headers = headers, .body = body,
        .body_len = strlen(body), .timeout_ms = ch->cfg->timeout_ms, .max_body = 64 * 1024,
    };

    if (ch->cfg->kind == DW_NOTIFY_WEBHOOK) {
        snprintf(kind_hdr, sizeof kind_hdr, "X-Drwatch-Event: %s", ch->ev.kind);
        snprintf(id_hdr, sizeof id_hdr, "X-Drwatch-Delivery: %" PRId64, ch->ev.id);
        headers[1] = kind_hdr;
        headers[2] = id_hdr;
        if (sig != NULL) {
            snprintf(sig_hdr, sizeof sig_hdr, "X-Drwatch-Signature: %s", sig);
            headers[3] = sig_hdr;
        }
    }
    if (dw_http_request(ch->nt->curlm, &o, http_done, ch) != 0)
        return -1;
    ch->nt->refs++;
    return 0;
}

/* ---- hook: a program run per event, the event on its stdin ---- */

static void hook_closed(uv_handle_t *h)
{
    struct chan *ch = h->data;
    struct dw_notifier *nt = ch->nt;

    ch->hook_handles--;
    unref(nt);
}

static void hook_close_all(struct chan *ch)
{
    uv_timer_stop(&ch->kill);
    if (!uv_is_closing((uv_handle_t *)&ch->in))
        uv_close((uv_handle_t *)&ch->in, hook_closed);
    if (!uv_is_closing((uv_handle_t *)&ch->proc))
        uv_close((uv_handle_t *)&ch->proc, hook_closed);
}

static void hook_exit(uv_process_t *p, int64_t status, int sig)
{
    struct chan *ch = p->data;
    bool timed_out = ch->timed_out;

    hook_close_all(ch);
    if (ch->nt->closing)
        return;
    if (timed_out)
        failed(ch, -1, "timed out after %u ms, killed", ch->cfg->timeout_ms);
    else if (sig != 0)
        failed(ch, -1, "killed by signal %d", sig);
    else if (status != 0)
        failed(ch, -1, "exit status %" PRId64, status);
    else
        delivered(ch);
}

static void hook_kill(uv_timer_t *t)
{
    struct chan *ch = t->data;

    ch->timed_out = true;
    /* its own process group: whatever it started goes too */
    if (uv_kill(-ch->proc.pid, SIGKILL) != 0)
        uv_process_kill(&ch->proc, SIGKILL);
}

static void hook_written(uv_write_t *w, int status)
{
    struct chan *ch = w->data;

    free(ch->payload);
    ch->payload = NULL;
    /* a hook that exits without reading its stdin is its own business: EPIPE is no failure */
    if (!uv_is_closing((uv_handle_t *)&ch->in))
        uv_close((uv_handle_t *)&ch->in, hook_closed);
}

/* The environment plus DRWATCH_EVENT_ID, _KIND, _GROUP and DRWATCH_CLUSTER. */
static char **hook_env(const struct chan *ch, char extra[4][DW_ID_MAX + 48])
{
    size_t n = 0;
    char **env;

    while (environ[n] != NULL)
        n++;
    env = calloc(n + 5, sizeof *env);
    if (env == NULL)
        return NULL;
    memcpy(env, environ, n * sizeof *env);
    snprintf(extra[0], DW_ID_MAX + 48, "DRWATCH_EVENT_ID=%" PRId64, ch->ev.id);
    snprintf(extra[1], DW_ID_MAX + 48, "DRWATCH_EVENT_KIND=%s", ch->ev.kind);
    snprintf(extra[2], DW_ID_MAX + 48, "DRWATCH_GROUP=%s", ch->ev.group);
    snprintf(extra[3], DW_ID_MAX + 48, "DRWATCH_CLUSTER=%s", ch->nt->cluster);
    for (int i = 0; i < 4; i++)
        env[n + (size_t)i] = extra[i];
    return env;
}

static int hook_run(struct chan *ch, char *body)
{
    const struct dw_notify_channel *c = ch->cfg;
    struct dw_notifier *nt = ch->nt;
    char *argv[DW_HOOK_ARGS_MAX + 1] = {0}, extra[4][DW_ID_MAX + 48];
    uv_stdio_container_t io[3];
    uv_process_options_t o = {0};
    uv_buf_t buf;
    char **env;
    int rc;

    for (int i = 0; i < c->n_command; i++)
        argv[i] = (char *)c->command[i];
    if ((env = hook_env(ch, extra)) == NULL)
        return -1;
    uv_pipe_init(nt->loop, &ch->in, 0);
    ch->in.data = ch;
    ch->hook_handles = 2; /* the process handle is closed even when the spawn fails */
    nt->refs += 2;
    io[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    io[0].data.stream = (uv_stream_t *)&ch->in;
    io[1].flags = UV_INHERIT_FD;
    io[1].data.fd = 1;
    io[2].flags = UV_INHERIT_FD;
    io[2].data.fd = 2;
    o.file = argv[0];
    o.args = argv;
    o.env = env;
    o.stdio = io;
    o.stdio_count = 3;
    o.exit_cb = hook_exit;
    o.flags = UV_PROCESS_DETACHED; /* a process group of its own, killed as one */
    ch->proc.data = ch;
    ch->timed_out = false;
    rc = uv_spawn(nt->loop, &ch->proc, &o);
    free(env);
    if (rc != 0) {
        free(body);
        hook_close_all(ch);
        failed(ch, -1, "cannot start %s: %s", argv[0], uv_strerror(rc));
        return 0;
    }
    ch->payload = body;
    buf = uv_buf_init(body, (unsigned)strlen(body));
    ch->wr.data = ch;
    if (uv_write(&ch->wr, (uv_stream_t *)&ch->in, &buf, 1, hook_written) != 0) {
        free(body);
        ch->payload = NULL;
        uv_close((uv_handle_t *)&ch->in, hook_closed);
    }
    uv_timer_start(&ch->kill, hook_kill, c->timeout_ms, 0);
    return 0;
}

/* ---- the channel's turn ---- */

static void confirmed(void *data, int status, const char *errmsg)
{
    struct chan *ch = data;
    struct dw_notifier *nt = ch->nt;

    if (!nt->closing) {
        if (status != 0) {
            /* still recorded as sent here: a later turn as leader confirms it again unsent */
            dw_log(DW_LOG_WARN, "notify", "%s: delivery of event %" PRId64 " not recorded: %s",
                   ch->cfg->name, ch->ev.id, errmsg ? errmsg : "unknown");
            ch->state = C_WAITING;
            uv_timer_start(&ch->backoff, backoff_cb, BACKOFF_FIRST_MS, 0);
        } else {
            ch->state = C_IDLE;
            schedule_pass(nt);
        }
    }
    unref(nt);
}

static void confirm(struct chan *ch)
{
    char err[200];
    char *e = dw_entry_notified(ch->ev.id, ch->cfg->name);

    ch->state = C_CONFIRMING;
    if (e == NULL ||
        ch->nt->ops.propose(ch->nt->ops.raft, e, confirmed, ch, err, sizeof err) != 0) {
        /* not leader any more (or out of memory): the next leader finds it undelivered */
        ch->state = C_IDLE;
        free(e);
        return;
    }
    free(e);
    ch->nt->refs++;
}

static void send_event(struct chan *ch)
{
    const char *cluster = ch->nt->cluster;
    char sig[DW_NOTIFY_SIG_MAX];
    char *body = NULL;
    int rc = -1;

    switch (ch->cfg->kind) {
    case DW_NOTIFY_SLACK:
        body = dw_notify_slack_body(&ch->ev, cluster);
        rc = body ? http_send(ch, ch->secret, body, NULL) : -1;
        break;
    case DW_NOTIFY_PAGERDUTY:
        body = dw_notify_pagerduty_body(&ch->ev, cluster, ch->secret);
        if (body == NULL && pd_action(ch->ev.kind, &(const char *){NULL}) == NULL) {
            ch->sent_id = ch->ev.id; /* not a PagerDuty matter: done with it */
            confirm(ch);
            return;
        }
        rc = body ? http_send(ch, ch->cfg->url, body, NULL) : -1;
        break;
    case DW_NOTIFY_WEBHOOK:
        body = dw_notify_event_body(&ch->ev, cluster);
        if (body && ch->secret[0] &&
            dw_notify_signature(ch->secret, body, strlen(body), sig) != 0) {
            free(body);
            body = NULL;
        }
        rc = body ? http_send(ch, ch->cfg->url, body, ch->secret[0] ? sig : NULL) : -1;
        break;
    case DW_NOTIFY_HOOK: {
        char *json = dw_notify_event_body(&ch->ev, cluster);
        char *line = json ? malloc(strlen(json) + 2) : NULL;

        if (line != NULL)
            sprintf(line, "%s\n", json);
        free(json);
        if (line == NULL)
            break;
        ch->state = C_SENDING;
        if (hook_run(ch, line) == 0)
            return;
        free(line);
        break;
    }
    }
    free(body);
    if (rc == 0) {
        ch->state = C_SENDING;
        return;
    }
    failed(ch, -1, "cannot start the request (out of memory?)");
}

/* The channel's oldest undelivered event: skips those past max_age_ms (one log line for the
 * lot), then sends it, or only confirms it when this node sent it already. */
static void chan_turn(struct chan *ch)
{
    struct dw_notifier *nt = ch->nt;
    int64_t all = 0, fresh = 0, cutoff = wall_ms() - (int64_t)nt->cfg->max_age_ms;
    int n = dw_fsm_undelivered(nt->fsm, ch->cfg->name, ch->since, &ch->ev, 1, &all);

    if (n <= 0) {
        if (n < 0)
            dw_log(DW_LOG_ERROR, "notify", "%s: cannot read the event journal", ch->cfg->name);
        return;
    }
    if (ch->ev.ts < cutoff) {
        struct dw_event oldest = ch->ev;

        n = dw_fsm_undelivered(nt->fsm, ch->cfg->name, cutoff - 1, &ch->ev, 1, &fresh);
        if (n < 0)
            return;
        ch->st.skipped += (uint64_t)(all - fresh);
        ch->since = cutoff - 1;
        ch->failures = 0;
        dw_log(DW_LOG_WARN, "notify", "%s: %" PRId64 " undelivered event(s) older than "
               "notifications.max_age_ms (%u ms) skipped, from event %" PRId64 " (%s, group %s)",
               ch->cfg->name, all - fresh, nt->cfg->max_age_ms, oldest.id, oldest.kind,
               oldest.group);
        if (n == 0)
            return;
    }
    if (ch->ev.id == ch->sent_id)
        confirm(ch);
    else
        send_event(ch);
}

static void pass_cb(uv_timer_t *t)
{
    struct dw_notifier *nt = t->data;
    bool leader;

    if (nt->closing)
        return;
    leader = nt->ops.is_leader(nt->ops.raft);
    for (int i = 0; i < nt->n; i++) {
        struct chan *ch = &nt->ch[i];

        if (!leader) {
            /* a new leader starts afresh; a send in flight ends on its own */
            if (ch->state == C_WAITING) {
                uv_timer_stop(&ch->backoff);
                ch->state = C_IDLE;
            }
            ch->failures = 0;
            continue;
        }
        if (ch->state == C_IDLE && ch->hook_handles == 0)
            chan_turn(ch);
    }
}

static void schedule_pass(struct dw_notifier *nt)
{
    if (!nt->closing && !uv_is_active((uv_handle_t *)&nt->pass))
        uv_timer_start(&nt->pass, pass_cb, 0, 0);
}

void dw_notify_kick(struct dw_notifier *nt)
{
    if (nt != NULL && nt->n > 0)
        schedule_pass(nt);
}

static void tick_cb(uv_timer_t *t)
{
    schedule_pass(t->data);
}

/* ---- lifetime ---- */

static bool live_is_leader(void *r)
{
    return dw_raft_is_leader(r);
}

static int live_propose(void *r, const char *e, dw_raft_done_cb cb, void *data, char *err,
                        size_t errlen)
{
    return dw_raft_propose(r, e, cb, data, err, errlen);
}

void dw_notify_live_ops(struct dw_notify_ops *ops, struct dw_raft *raft)
{
    ops->raft = raft;
    ops->is_leader = live_is_leader;
    ops->propose = live_propose;
}

static const char *secret_file(const struct dw_notify_channel *c)
{
    switch (c->kind) {
    case DW_NOTIFY_SLACK:
        return c->webhook_url_file;
    case DW_NOTIFY_PAGERDUTY:
        return c->routing_key_file;
    case DW_NOTIFY_WEBHOOK:
        return c->secret_file;
    case DW_NOTIFY_HOOK:
        break;
    }
    return "";
}

int dw_notify_start(struct dw_notifier **out, uv_loop_t *loop, struct dw_curlm *curlm,
                    const struct dw_notify_cfg *cfg, struct dw_fsm *fsm,
                    const struct dw_notify_ops *ops, char *errmsg, size_t errlen)
{
    struct dw_notifier *nt = calloc(1, sizeof *nt);
    struct dw_notify_cfg *own = malloc(sizeof *own);
    char err[256];

    *out = NULL;
    if (nt == NULL || own == NULL ||
        (cfg->n_channels > 0 &&
         (nt->ch = calloc((size_t)cfg->n_channels, sizeof *nt->ch)) == NULL)) {
        free(nt);
        free(own);
        snprintf(errmsg, errlen, "out of memory");
        return -1;
    }
    memcpy(own, cfg, sizeof *own);
    cfg = own;
    *nt = (struct dw_notifier){.loop = loop, .curlm = curlm, .cfg = own, .fsm = fsm, .ops = *ops,
                               .ch = nt->ch, .n = cfg->n_channels, .refs = 1};
    nt->cluster = cfg->cluster[0] ? cfg->cluster : DEFAULT_CLUSTER;
    for (int i = 0; i < nt->n; i++) {
        struct chan *ch = &nt->ch[i];
        const char *file = secret_file(&cfg->channels[i]);

        ch->nt = nt;
        ch->cfg = &cfg->channels[i];
        ch->st.channel = ch->cfg->name;
        ch->st.kind = kind_names[ch->cfg->kind];
        if (file[0] && dw_config_read_secret(file, ch->secret, sizeof ch->secret, err,
                                             sizeof err) != 0) {
            snprintf(errmsg, errlen, "notifications.channels.%s: %s", ch->cfg->name, err);
            nt->refs = 1;
            unref(nt);
            return -1;
        }
    }
    uv_timer_init(loop, &nt->pass);
    uv_timer_init(loop, &nt->tick);
    nt->pass.data = nt->tick.data = nt;
    nt->refs += 2;
    for (int i = 0; i < nt->n; i++) {
        uv_timer_init(loop, &nt->ch[i].backoff);
        uv_timer_init(loop, &nt->ch[i].kill);
        nt->ch[i].backoff.data = nt->ch[i].kill.data = &nt->ch[i];
        nt->refs += 2;
    }
    if (nt->n > 0) {
        uv_timer_start(&nt->tick, tick_cb, TICK_MS, TICK_MS);
        dw_log(DW_LOG_INFO, "notify", "%d notification channel(s); sent by the leader only",
               nt->n);
    }
    *out = nt;
    return 0;
}

void dw_notify_close(struct dw_notifier *nt)
{
    if (nt == NULL || nt->closing)
        return;
    nt->closing = true;
    close_handle(nt, (uv_handle_t *)&nt->pass);
    close_handle(nt, (uv_handle_t *)&nt->tick);
    for (int i = 0; i < nt->n; i++) {
        struct chan *ch = &nt->ch[i];

        if (ch->hook_handles > 0 && !uv_is_closing((uv_handle_t *)&ch->proc)) {
            uv_kill(-ch->proc.pid, SIGKILL);
            hook_close_all(ch);
        }
        close_handle(nt, (uv_handle_t *)&ch->backoff);
        close_handle(nt, (uv_handle_t *)&ch->kill);
    }
    unref(nt);
}

bool dw_notify_same(const struct dw_notifier *a, const struct dw_notifier *b)
{
    struct dw_notify_cfg none = {.n_channels = 0};
    const struct dw_notify_cfg *ca = a != NULL ? a->cfg : &none, *cb = b != NULL ? b->cfg : &none;
    if (ca->n_channels != cb->n_channels || ca->max_age_ms != cb->max_age_ms ||
        strcmp(ca->cluster, cb->cluster) != 0)
        return false;
    for (int i = 0; i < ca->n_channels; i++)
        if (memcmp(&ca->channels[i], &cb->channels[i], sizeof ca->channels[i]) != 0 ||
            strcmp(a->ch[i].secret, b->ch[i].secret) != 0)
            return false;
    return true;
}

int dw_notify_channels(const struct dw_notifier *nt)
{
    return nt != NULL ? nt->n : 0;
}

int dw_notify_stats(struct dw_notifier *nt, int i, struct dw_notify_stats *out)
{
    int64_t pending = 0;
    int64_t cutoff;
    struct chan *ch;

    if (nt == NULL || i < 0 || i >= nt->n)
        return -1;
    ch = &nt->ch[i];
    cutoff = wall_ms() - (int64_t)nt->cfg->max_age_ms - 1;
    if (dw_fsm_undelivered(nt->fsm, ch->cfg->name, cutoff > ch->since ? cutoff : ch->since, NULL,
                           0, &pending) < 0)
        pending = 0;
    *out = ch->st;
    out->pending = pending;
    return 0;
}
