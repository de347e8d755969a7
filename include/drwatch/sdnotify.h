/* The service manager's side channel (sd_notify(3)): READY=1 once the node serves, a STATUS=
 * line kept current, WATCHDOG=1 from a loop timer while the loop runs, STOPPING=1 at shutdown.
 * Without $NOTIFY_SOCKET every call is a no-op (dw_sdnotify_start gives NULL and every
 * function takes NULL). */
#ifndef DRWATCH_SDNOTIFY_H
#define DRWATCH_SDNOTIFY_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct dw_sdnotify;

/* Fills buf with a short human line on the node's state ("leader, term 5, 3 members"). */
typedef void (*dw_sdnotify_status_cb)(void *data, char *buf, size_t len);

/* Polls status_cb every poll_ms and sends STATUS= when the line changed; with the watchdog
 * on ($WATCHDOG_USEC, for this pid if $WATCHDOG_PID is set) sends WATCHDOG=1 every half
 * interval. A stalled loop runs no timer, so the pings stop and the manager restarts us:
 * that is the point. *out is NULL (and 0 returned) without $NOTIFY_SOCKET. */
int dw_sdnotify_start(struct dw_sdnotify **out, uv_loop_t *loop, uint64_t poll_ms,
                      dw_sdnotify_status_cb status_cb, void *data);
/* READY=1 with the current STATUS=. */
void dw_sdnotify_ready(struct dw_sdnotify *s);
/* STOPPING=1, and no more pings or status lines. */
void dw_sdnotify_stopping(struct dw_sdnotify *s);
/* Closes the timers; the memory goes with the last close callback. */
void dw_sdnotify_close(struct dw_sdnotify *s);
/* The watchdog interval in microseconds, 0 when off (tests, metrics). */
uint64_t dw_sdnotify_watchdog_usec(const struct dw_sdnotify *s);

#endif
