#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "drwatch/log.h"
#include "drwatch/tilt.h"

struct dw_tilt {
    uv_timer_t timer;
    struct dw_tilt_cfg cfg;
    struct dw_tilt_clock clk;
    dw_tilt_change_cb on_change;
    void *data;
    bool closing;
    uint64_t last_mono;      /* previous tick */
    int64_t last_wall;
    bool active;
    uint64_t since_mono;     /* start of the current episode */
    uint64_t until_mono;
    uint64_t episode_trips;
    char reason[96];
    char pending[96];        /* a stall seen by dw_tilt_active before its tick ran */
    struct dw_tilt_stats st;
};

static uint64_t real_mono_ms(void *data)
{
    (void)data;
    return uv_hrtime() / 1000000u;
}

static int64_t real_wall_ms(void *data)
{
    (void)data;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t lag_of(const struct dw_tilt *t, uint64_t mono)
{
    uint64_t gap = mono > t->last_mono ? mono - t->last_mono : 0;
    return gap > DW_TILT_TICK_MS ? gap - DW_TILT_TICK_MS : 0;
}

static void trip(struct dw_tilt *t, uint64_t mono, const char *why)
{
    snprintf(t->reason, sizeof t->reason, "%s", why);
    t->st.trips++;
    t->until_mono = mono + t->cfg.abstain_ms;
    t->episode_trips++;
    if (t->active) {
        dw_log(DW_LOG_WARN, "tilt", "%s: abstaining %.1f s more", why, t->cfg.abstain_ms / 1000.0);
        return;
    }
    t->active = true;
    t->since_mono = mono;
    t->episode_trips = 1;
    dw_log(DW_LOG_WARN, "tilt", "TILT: %s: this node abstains for %.1f s", why,
           t->cfg.abstain_ms / 1000.0);
    if (t->on_change != NULL)
        t->on_change(t, true, t->data);
}

void dw_tilt_trip(struct dw_tilt *t, const char *why)
{
    if (t == NULL || t->closing)
        return;
    t->st.external++;
    trip(t, t->clk.mono_ms(t->clk.data), why);
}

void dw_tilt_check(struct dw_tilt *t)
{
    if (t == NULL || t->closing)
        return;
    uint64_t mono = t->clk.mono_ms(t->clk.data);
    int64_t wall = t->clk.wall_ms(t->clk.data);
    uint64_t gap = mono > t->last_mono ? mono - t->last_mono : 0;
    uint64_t lag = lag_of(t, mono);
    /* Wall time should advance as much as monotonic time; the rest is a step (NTP slews far
     * below any sane threshold per tick). */
    int64_t skew = (wall - t->last_wall) - (int64_t)gap;
    t->last_mono = mono;
    t->last_wall = wall;
    t->pending[0] = '\0';
    if (lag > t->st.max_lag_ms)
        t->st.max_lag_ms = lag;

    bool stalled = t->cfg.stall_ms > 0 && lag > t->cfg.stall_ms;
    bool jumped = t->cfg.clock_jump_ms > 0 &&
                  (skew > (int64_t)t->cfg.clock_jump_ms || -skew > (int64_t)t->cfg.clock_jump_ms);
    char why[96] = "";
    if (stalled && jumped)
        snprintf(why, sizeof why, "loop stalled %.1f s, wall clock jumped %+.1f s", gap / 1000.0,
                 (double)skew / 1000.0);
    else if (stalled)
        snprintf(why, sizeof why, "loop stalled %.1f s", gap / 1000.0);
    else if (jumped)
        snprintf(why, sizeof why, "wall clock jumped %+.1f s", (double)skew / 1000.0);
    t->st.stalls += stalled;
    t->st.clock_jumps += jumped;
    if (stalled || jumped) {
        trip(t, mono, why);
        return;
    }
    if (t->active && mono >= t->until_mono) {
        t->active = false;
        dw_log(DW_LOG_INFO, "tilt", "TILT over after %.1f s (%llu trip%s); this node votes again",
               (double)(mono - t->since_mono) / 1000.0, (unsigned long long)t->episode_trips,
               t->episode_trips == 1 ? "" : "s");
        if (t->on_change != NULL)
            t->on_change(t, false, t->data);
    }
}

static void on_tick(uv_timer_t *timer)
{
    dw_tilt_check(timer->data);
}

void dw_tilt_set_cfg(struct dw_tilt *t, const struct dw_tilt_cfg *cfg)
{
    t->cfg = *cfg;
}

int dw_tilt_start(struct dw_tilt **out, uv_loop_t *loop, const struct dw_tilt_cfg *cfg,
                  const struct dw_tilt_clock *clock, dw_tilt_change_cb on_change, void *data,
                  char *errmsg, size_t errlen)
{
    *out = NULL;
    struct dw_tilt *t = calloc(1, sizeof *t);
    if (t == NULL) {
        snprintf(errmsg, errlen, "out of memory");
        return -1;
    }
    t->cfg = *cfg;
    if (clock != NULL)
        t->clk = *clock;
    else
        t->clk = (struct dw_tilt_clock){real_mono_ms, real_wall_ms, NULL};
    t->on_change = on_change;
    t->data = data;
    t->last_mono = t->clk.mono_ms(t->clk.data);
    t->last_wall = t->clk.wall_ms(t->clk.data);
    int rc = uv_timer_init(loop, &t->timer);
    if (rc == 0) {
        t->timer.data = t;
        rc = uv_timer_start(&t->timer, on_tick, DW_TILT_TICK_MS, DW_TILT_TICK_MS);
        if (rc != 0) {
            snprintf(errmsg, errlen, "uv_timer_start(): %s", uv_strerror(rc));
            dw_tilt_close(t);
            return -1;
        }
    } else {
        snprintf(errmsg, errlen, "uv_timer_init(): %s", uv_strerror(rc));
        free(t);
        return -1;
    }
    *out = t;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

void dw_tilt_close(struct dw_tilt *t)
{
    if (t == NULL || t->closing)
        return;
    t->closing = true;
    uv_close((uv_handle_t *)&t->timer, on_closed);
}

bool dw_tilt_active(struct dw_tilt *t)
{
    if (t->active)
        return true;
    if (t->cfg.stall_ms == 0 || t->closing)
        return false;
    uint64_t mono = t->clk.mono_ms(t->clk.data);
    if (lag_of(t, mono) <= t->cfg.stall_ms)
        return false;
    snprintf(t->pending, sizeof t->pending, "loop stalled %.1f s",
             (double)(mono - t->last_mono) / 1000.0);
    return true;
}

const char *dw_tilt_reason(struct dw_tilt *t)
{
    return !t->active && t->pending[0] != '\0' ? t->pending : t->reason;
}

int64_t dw_tilt_until_ms(struct dw_tilt *t)
{
    if (!t->active)
        return 0;
    uint64_t mono = t->clk.mono_ms(t->clk.data);
    int64_t wall = t->clk.wall_ms(t->clk.data);
    return wall + (t->until_mono > mono ? (int64_t)(t->until_mono - mono) : 0);
}

void dw_tilt_stats(const struct dw_tilt *t, struct dw_tilt_stats *out)
{
    *out = t->st;
}

void dw_tilt_collect(void *data, struct dw_metrics_writer *w)
{
    struct dw_tilt *t = data;
    bool active = dw_tilt_active(t);
    uint64_t mono = t->clk.mono_ms(t->clk.data);
    double remaining = t->active && t->until_mono > mono ? (double)(t->until_mono - mono) / 1000.0 : 0;
    dw_metrics_write(w, "drwatch_tilt", DW_METRIC_GAUGE,
                     "1 while this node distrusts itself (loop stall, clock jump, probe overload) "
                     "and abstains",
                     NULL, active);
    dw_metrics_write(w, "drwatch_tilt_trips_total", DW_METRIC_COUNTER,
                     "TILT trips by cause since start", (const char *const[]){"cause", "stall", NULL},
                     (double)t->st.stalls);
    dw_metrics_write(w, "drwatch_tilt_trips_total", DW_METRIC_COUNTER,
                     "TILT trips by cause since start",
                     (const char *const[]){"cause", "clock_jump", NULL}, (double)t->st.clock_jumps);
    dw_metrics_write(w, "drwatch_tilt_trips_total", DW_METRIC_COUNTER,
                     "TILT trips by cause since start",
                     (const char *const[]){"cause", "probe_overload", NULL}, (double)t->st.external);
    dw_metrics_write(w, "drwatch_tilt_remaining_seconds", DW_METRIC_GAUGE,
                     "Seconds until this node votes again (0 when not in TILT)", NULL, remaining);
    dw_metrics_write(w, "drwatch_loop_max_lag_seconds", DW_METRIC_GAUGE,
                     "Worst lateness of the event loop's TILT tick since start", NULL,
                     (double)t->st.max_lag_ms / 1000.0);
}
