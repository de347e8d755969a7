/* The time a leader stamps on an entry (docs/architecture.md, "Entries and time"): its wall
 * clock, but never further ahead than the monotonic time it has measured since a stamp it trusts
 * (the wall clock read at process start, or the last applied entry's stamp), and never behind the
 * cluster's time. Pure: the caller reads the clocks. */
#ifndef DRWATCH_STAMP_H
#define DRWATCH_STAMP_H

#include <stdbool.h>
#include <stdint.h>

/* How far the wall clock may run ahead of the measured bound: covers the commit latency between
 * a stamp and its apply, which the applied anchor does not see. */
#define DW_STAMP_SLACK_MS 1000

struct dw_stamp_clock {
    int64_t start_wall;   /* wall clock when the process started */
    uint64_t start_mono;
    int64_t applied_ts;   /* the cluster's time after the last applied entry */
    uint64_t applied_mono;
    bool applied;         /* applied_ts is set */
};

void dw_stamp_init(struct dw_stamp_clock *c, int64_t wall_ms, uint64_t mono_ms);
/* After every apply or snapshot restore: ts is the FSM's last_ts. */
void dw_stamp_applied(struct dw_stamp_clock *c, int64_t ts, uint64_t mono_ms);
/* The stamp for an entry proposed now. *clamped is set when the wall clock was ahead of the
 * bound and the stamp was pulled back. */
int64_t dw_stamp_next(const struct dw_stamp_clock *c, int64_t wall_ms, uint64_t mono_ms,
                      int64_t last_ts, bool *clamped);

#endif
