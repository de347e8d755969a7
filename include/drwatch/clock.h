/* Time for the modules the simulated cluster (tests/sim) drives: a monotonic millisecond clock
 * and one-shot timers. A running node uses its libuv loop's (dw_clock_uv); the simulation
 * supplies a virtual clock shared by every simulated node. */
#ifndef DRWATCH_CLOCK_H
#define DRWATCH_CLOCK_H

#include <stdint.h>

#include <uv.h>

struct dw_timer;
typedef void (*dw_timer_cb)(void *data);

struct dw_clock {
    void *ctx;
    uint64_t (*now_ms)(void *ctx); /* monotonic */
    /* NULL when out of memory */
    struct dw_timer *(*timer_new)(void *ctx, dw_timer_cb cb, void *data);
    /* One shot after timeout_ms; a running timer is restarted. */
    void (*timer_start)(struct dw_timer *t, uint64_t timeout_ms);
    void (*timer_stop)(struct dw_timer *t);
    /* Stops it for good: its callback never runs again. Accepts NULL. */
    void (*timer_free)(struct dw_timer *t);
};

/* The loop's timers and uv_hrtime(); the loop must outlive every timer. */
void dw_clock_uv(struct dw_clock *c, uv_loop_t *loop);

#endif
