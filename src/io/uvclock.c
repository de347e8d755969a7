/* dw_clock on a libuv loop. */
#include <stdlib.h>

#include "drwatch/clock.h"

struct dw_timer {
    uv_timer_t h;
    dw_timer_cb cb;
    void *data;
};

static uint64_t uv_clock_now(void *ctx)
{
    (void)ctx;
    return uv_hrtime() / 1000000u;
}

static void fired(uv_timer_t *h)
{
    struct dw_timer *t = h->data;
    t->cb(t->data);
}

static struct dw_timer *uv_clock_timer_new(void *ctx, dw_timer_cb cb, void *data)
{
    struct dw_timer *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    uv_timer_init(ctx, &t->h);
    t->h.data = t;
    t->cb = cb;
    t->data = data;
    return t;
}

static void uv_clock_timer_start(struct dw_timer *t, uint64_t timeout_ms)
{
    uv_timer_start(&t->h, fired, timeout_ms, 0);
}

static void uv_clock_timer_stop(struct dw_timer *t)
{
    uv_timer_stop(&t->h);
}

static void closed(uv_handle_t *h)
{
    free(h->data);
}

static void uv_clock_timer_free(struct dw_timer *t)
{
    if (t != NULL)
        uv_close((uv_handle_t *)&t->h, closed);
}

void dw_clock_uv(struct dw_clock *c, uv_loop_t *loop)
{
    *c = (struct dw_clock){.ctx = loop, .now_ms = uv_clock_now, .timer_new = uv_clock_timer_new,
                           .timer_start = uv_clock_timer_start, .timer_stop = uv_clock_timer_stop,
                           .timer_free = uv_clock_timer_free};
}
