/* Notifications (docs/notifications.md): on the leader only, each configured channel is sent the
 * events the journal (fsm.h, dw_fsm_undelivered) has not recorded as delivered to it, one at a
 * time and in order; a delivery is then recorded by a "notified" entry. Failures are retried
 * with exponential back-off (1 s doubling to 5 min). Everything runs on the loop: nothing waits
 * for a notification. */
#ifndef DRWATCH_NOTIFY_H
#define DRWATCH_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "drwatch/config.h"
#include "drwatch/fsm.h"
#include "drwatch/http.h"
#include "drwatch/raftnode.h"

struct dw_notifier;

/* How the notifier reaches raft; a running node passes dw_notify_live_ops. */
struct dw_notify_ops {
    void *raft;
    bool (*is_leader)(void *raft);
    int (*propose)(void *raft, const char *entry, dw_raft_done_cb cb, void *data, char *errmsg,
                   size_t errlen);
};
void dw_notify_live_ops(struct dw_notify_ops *ops, struct dw_raft *raft);

/* Reads every channel's secret file now (-1 with errmsg when one cannot be read) and keeps its
 * own copy of cfg. fsm and curlm must outlive the notifier; with no channel it does nothing. */
int dw_notify_start(struct dw_notifier **out, uv_loop_t *loop, struct dw_curlm *curlm,
                    const struct dw_notify_cfg *cfg, struct dw_fsm *fsm,
                    const struct dw_notify_ops *ops, char *errmsg, size_t errlen);
/* After entries were applied: look for work on the next loop turn. */
void dw_notify_kick(struct dw_notifier *nt);
/* Stops sending (a running hook is killed); memory goes once requests in flight have ended.
 * Accepts NULL. */
void dw_notify_close(struct dw_notifier *nt);
/* Both run the same channels with the same secrets (NULL: none). */
bool dw_notify_same(const struct dw_notifier *a, const struct dw_notifier *b);

struct dw_notify_stats {
    const char *channel;
    const char *kind;     /* "slack" | "pagerduty" | "webhook" | "hook" */
    uint64_t sent;        /* deliveries that succeeded */
    uint64_t failed;      /* attempts that failed and are retried */
    uint64_t rejected;    /* events the receiver refused for good (HTTP 400, 413, 422) */
    uint64_t skipped;     /* events older than max_age_ms, not sent */
    int64_t pending;      /* events not yet delivered (and not too old), as this replica sees */
};
int dw_notify_channels(const struct dw_notifier *nt);
/* i in [0, dw_notify_channels()); 0, or -1 for another i. */
int dw_notify_stats(struct dw_notifier *nt, int i, struct dw_notify_stats *out);

/* Payload builders (malloc'd, free()), exposed for tests. NULL when nothing is sent for this
 * event on the channel (PagerDuty takes failover, hold, operation_failed and no_target_up as
 * triggers, failback and hold_released as resolves) or out of memory. */
char *dw_notify_slack_body(const struct dw_event *ev, const char *cluster);
char *dw_notify_pagerduty_body(const struct dw_event *ev, const char *cluster,
                               const char *routing_key);
char *dw_notify_event_body(const struct dw_event *ev, const char *cluster);
/* "sha256=" and the hex HMAC-SHA256 of body under key: 72 bytes with the NUL. */
#define DW_NOTIFY_SIG_MAX 80
int dw_notify_signature(const char *key, const char *body, size_t len, char out[DW_NOTIFY_SIG_MAX]);

#endif
