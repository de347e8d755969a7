#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "drwatch/log.h"
#include "drwatch/sdnotify.h"

#define STATUS_MAX 256

struct dw_sdnotify {
    uv_timer_t poll, watchdog;
    int open_handles;
    bool stopping;
    bool send_failed; /* logged once: the manager may be gone during shutdown */
    uint64_t watchdog_usec;
    dw_sdnotify_status_cb status_cb;
    void *data;
    char status[STATUS_MAX];
};

static void send_state(struct dw_sdnotify *s, const char *state)
{
    /* unset_environment 0: the variables stay for later calls (hooks inherit them, but
     * NotifyAccess=main makes the manager ignore anyone but us) */
    int rc = sd_notify(0, state);
    if (rc < 0 && !s->send_failed) {
        s->send_failed = true;
        dw_log(DW_LOG_WARN, "sdnotify", "sd_notify(\"%.40s\") to $NOTIFY_SOCKET failed: %s", state,
               strerror(-rc));
    }
}

/* Refreshes s->status; true when the line changed. */
static bool refresh_status(struct dw_sdnotify *s)
{
    char line[STATUS_MAX] = "";
    s->status_cb(s->data, line, sizeof line);
    if (strcmp(line, s->status) == 0)
        return false;
    memcpy(s->status, line, sizeof line);
    return true;
}

static void poll_cb(uv_timer_t *t)
{
    struct dw_sdnotify *s = t->data;
    if (s->stopping || !refresh_status(s))
        return;
    char msg[STATUS_MAX + 16];
    snprintf(msg, sizeof msg, "STATUS=%s", s->status);
    send_state(s, msg);
}

static void watchdog_cb(uv_timer_t *t)
{
    struct dw_sdnotify *s = t->data;
    if (!s->stopping)
        send_state(s, "WATCHDOG=1");
}

int dw_sdnotify_start(struct dw_sdnotify **out, uv_loop_t *loop, uint64_t poll_ms,
                      dw_sdnotify_status_cb status_cb, void *data)
{
    *out = NULL;
    const char *sock = getenv("NOTIFY_SOCKET");
    if (sock == NULL || *sock == '\0')
        return 0;
    struct dw_sdnotify *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -1;
    s->status_cb = status_cb;
    s->data = data;
    uint64_t usec = 0;
    int rc = sd_watchdog_enabled(0, &usec);
    if (rc < 0)
        dw_log(DW_LOG_WARN, "sdnotify", "$WATCHDOG_USEC/$WATCHDOG_PID: %s: watchdog off",
               strerror(-rc));
    s->watchdog_usec = rc > 0 ? usec : 0;
    uv_timer_init(loop, &s->poll);
    uv_timer_init(loop, &s->watchdog);
    s->poll.data = s->watchdog.data = s;
    s->open_handles = 2;
    uv_timer_start(&s->poll, poll_cb, poll_ms, poll_ms);
    if (s->watchdog_usec > 0) {
        /* half the interval, as sd_watchdog_enabled(3) advises; at least 1 ms */
        uint64_t ms = s->watchdog_usec / 2000;
        ms = ms ? ms : 1;
        uv_timer_start(&s->watchdog, watchdog_cb, 0, ms);
        dw_log(DW_LOG_INFO, "sdnotify", "watchdog on: WATCHDOG=1 every %llu ms",
               (unsigned long long)ms);
    }
    *out = s;
    return 0;
}

void dw_sdnotify_ready(struct dw_sdnotify *s)
{
    if (s == NULL || s->stopping)
        return;
    refresh_status(s);
    char msg[STATUS_MAX + 32];
    snprintf(msg, sizeof msg, "READY=1\nSTATUS=%s", s->status);
    send_state(s, msg);
}

void dw_sdnotify_stopping(struct dw_sdnotify *s)
{
    if (s == NULL || s->stopping)
        return;
    s->stopping = true;
    send_state(s, "STOPPING=1\nSTATUS=stopping");
}

static void closed(uv_handle_t *h)
{
    struct dw_sdnotify *s = h->data;
    if (--s->open_handles == 0)
        free(s);
}

void dw_sdnotify_close(struct dw_sdnotify *s)
{
    if (s == NULL)
        return;
    s->stopping = true;
    uv_close((uv_handle_t *)&s->poll, closed);
    uv_close((uv_handle_t *)&s->watchdog, closed);
}

uint64_t dw_sdnotify_watchdog_usec(const struct dw_sdnotify *s)
{
    return s ? s->watchdog_usec : 0;
}
