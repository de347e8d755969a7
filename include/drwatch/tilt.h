/* Self-distrust (TILT): a timer ticks every DW_TILT_TICK_MS; a tick arriving more
 * than stall_ms late (the loop stalled: process stopped, swapped, a blocking callback) or wall
 * time and monotonic time disagreeing by more than clock_jump_ms between two ticks (the clock
 * was stepped) trips TILT. The node then abstains until abstain_ms after the last trip (a new
 * trip extends it): it keeps observing, but its observations carry tilt=true and do not vote. */
#ifndef DRWATCH_TILT_H
#define DRWATCH_TILT_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "drwatch/config.h"
#include "drwatch/metrics.h"

#define DW_TILT_TICK_MS 250

struct dw_tilt;

/* Clocks, injectable for tests. mono_ms: monotonic milliseconds; wall_ms: Unix-epoch ms. */
struct dw_tilt_clock {
    uint64_t (*mono_ms)(void *data);
    int64_t (*wall_ms)(void *data);
    void *data;
};

/* Called when TILT starts (active=true, reason set) and when it ends (active=false); not when a
 * trip extends an active TILT. */
typedef void (*dw_tilt_change_cb)(struct dw_tilt *t, bool active, void *data);

/* Starts ticking. The first tick is measured from this call, so start TILT after the blocking
 * part of start-up. A zero stall_ms or clock_jump_ms disables that check. clock: NULL = the real
 * clocks (copied). on_change may be NULL. Returns 0, or -1 with errmsg. */
int dw_tilt_start(struct dw_tilt **out, uv_loop_t *loop, const struct dw_tilt_cfg *cfg,
                  const struct dw_tilt_clock *clock, dw_tilt_change_cb on_change, void *data,
                  char *errmsg, size_t errlen);
/* Stops the timer; memory is freed in its close callback. on_change is not called again.
 * Accepts NULL. */
void dw_tilt_close(struct dw_tilt *t);

/* What a tick does; exposed so tests can drive TILT with injected clocks without the loop. */
void dw_tilt_check(struct dw_tilt *t);

/* True while abstaining. Also true when the loop is stalled right now (the last tick is overdue
 * by more than stall_ms) and the tick that will trip TILT has not run yet: a callback running
 * first after a stall must not trust what it saw. */
bool dw_tilt_active(struct dw_tilt *t);
/* Why the last trip happened, e.g. "loop stalled 5.2 s", "wall clock jumped +12.0 s";
 * "" if TILT never tripped. */
const char *dw_tilt_reason(struct dw_tilt *t);
/* When the abstention ends, as Unix-epoch ms on the wall clock; 0 when not active. */
int64_t dw_tilt_until_ms(struct dw_tilt *t);

struct dw_tilt_stats {
    uint64_t trips;          /* ticks that tripped (a tick may see both causes) */
    uint64_t stalls;         /* trips caused by loop stalls */
    uint64_t clock_jumps;    /* trips caused by clock jumps */
    uint64_t external;       /* trips by dw_tilt_trip (the prober's overload) */
    uint64_t max_lag_ms;     /* worst tick lateness seen since start */
};
void dw_tilt_stats(const struct dw_tilt *t, struct dw_tilt_stats *out);

/* A dw_metrics_collect_fn (data = struct dw_tilt *): drwatch_tilt, drwatch_tilt_trips_total
 * {cause="stall"|"clock_jump"|"probe_overload"}, drwatch_tilt_remaining_seconds, drwatch_loop_max_lag_seconds. */
void dw_tilt_collect(void *data, struct dw_metrics_writer *w);

/* New thresholds (a committed config change); a TILT under way keeps its end. */
void dw_tilt_set_cfg(struct dw_tilt *t, const struct dw_tilt_cfg *cfg);

/* Trips TILT for a reason found elsewhere (the prober's overload): the same abstention, ended
 * abstain_ms after the last trip. */
void dw_tilt_trip(struct dw_tilt *t, const char *why);

#endif
