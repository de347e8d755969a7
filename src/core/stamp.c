#include "drwatch/stamp.h"

void dw_stamp_init(struct dw_stamp_clock *c, int64_t wall_ms, uint64_t mono_ms)
{
    c->start_wall = wall_ms;
    c->start_mono = mono_ms;
    c->applied_ts = 0;
    c->applied_mono = 0;
    c->applied = false;
}

void dw_stamp_applied(struct dw_stamp_clock *c, int64_t ts, uint64_t mono_ms)
{
    c->applied_ts = ts;
    c->applied_mono = mono_ms;
    c->applied = true;
}

static int64_t since(uint64_t then, uint64_t now)
{
    return now > then ? (int64_t)(now - then) : 0;
}

int64_t dw_stamp_next(const struct dw_stamp_clock *c, int64_t wall_ms, uint64_t mono_ms,
                      int64_t last_ts, bool *clamped)
{
    /* The start anchor keeps a restart after a long outage on the wall clock (replayed entries
     * are old); the applied anchor follows the cluster's time when it is ahead of ours. A clock
     * stepped forward after start exceeds both. */
    int64_t from_start = c->start_wall + since(c->start_mono, mono_ms);
    int64_t from_applied = c->applied ? c->applied_ts + since(c->applied_mono, mono_ms) : last_ts;
    int64_t bound = (from_start > from_applied ? from_start : from_applied) + DW_STAMP_SLACK_MS;
    int64_t floor = from_applied > last_ts ? from_applied : last_ts;
    int64_t ts = wall_ms;

    *clamped = false;
    if (ts > bound) {
        ts = bound;
        *clamped = true;
    }
    /* A clock behind the cluster's time stamps the cluster's time as measured since the last
     * entry, not last_ts itself: time must keep running after a stamp that was ahead. */
    if (ts < floor)
        ts = floor;
    return ts;
}
