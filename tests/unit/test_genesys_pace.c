/* The Genesys client's pacing against genesys_sim.py with a small rate window: a burst of writes
 * never draws a 429 (the server's inin-ratelimit-* headers hold it back), at most
 * max_concurrent_requests are in flight, writes go before listings, a write parked by pacing
 * checks its fence when it finally goes, and a 429's Retry-After holds every request. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

#define PFX "/api/v2/telephony/providers/edges"
#define N_BASES 12
#define LIMIT 20   /* requests per window */
#define WINDOW_S 3 /* the window, seconds */

static char fixture_json[4096];

static const char *fixture(void)
{
    int n = snprintf(fixture_json, sizeof fixture_json,
                     "{\"client_id\":\"drwatch-test\",\"client_secret\":\"s3cret\","
                     "\"rate_limit_per_min\":%d,\"rate_limit_window_s\":%d,"
                     "\"sites\":[{\"id\":\"site-a\"}],"
                     "\"edges\":[{\"id\":\"edge-a1\",\"site\":\"site-a\"}],\"trunk_bases\":[",
                     LIMIT, WINDOW_S);
    for (int i = 0; i < N_BASES; i++)
        n += snprintf(fixture_json + n, sizeof fixture_json - (size_t)n,
                      "%s{\"id\":\"tb%02d\",\"enabled\":false,\"edges\":[\"edge-a1\"]}",
                      i ? "," : "", i);
    snprintf(fixture_json + n, sizeof fixture_json - (size_t)n, "]}");
    return fixture_json;
}

struct res {
    int done;
    enum dw_gresult r;
};

static void on_res(void *data, enum dw_gresult r, const char *detail)
{
    struct res *x = data;
    (void)detail;
    x->done++;
    x->r = r;
}

static void on_list(void *data, enum dw_gresult r, cJSON *entities, unsigned requests,
                    const char *detail)
{
    (void)requests;
    cJSON_Delete(entities);
    on_res(data, r, detail);
}

struct all {
    struct res *r;
    int n;
};

static int all_done(void *arg)
{
    struct all *a = arg;
    for (int i = 0; i < a->n; i++)
        if (a->r[i].done == 0)
            return 0;
    return 1;
}

static int one_done(void *arg)
{
    return ((struct res *)arg)->done > 0;
}

static struct dw_genesys *client(struct tl_loop *e, struct tl_gsim *gs, unsigned max_in_flight)
{
    struct dw_genesys *g = tl_genesys_new(e, gs->base, gs->base, "s3cret");
    struct dw_genesys_cfg cfg;

    memset(&cfg, 0, sizeof cfg);
    cfg.request_timeout_ms = 3000;
    cfg.max_concurrent_requests = max_in_flight;
    dw_genesys_set_policy(g, &cfg);
    return g;
}

/* The simulator's request log since the last reset. */
static cJSON *sim_log(struct tl_gsim *gs)
{
    cJSON *j = tl_ctl(gs->sim.port, "GET", "/_sim/requests", NULL);
    assert_non_null(j);
    return j;
}

static int count_status(struct tl_gsim *gs, int status)
{
    cJSON *j = sim_log(gs);
    const cJSON *r;
    int n = 0;
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(j, "requests")) {
        const cJSON *st = cJSON_GetObjectItem(r, "status");
        if (cJSON_IsNumber(st) && st->valueint == status)
            n++;
    }
    cJSON_Delete(j);
    return n;
}

/* Requests to a path ending in suffix; the first one's index in the log in *first. */
static int count_path(struct tl_gsim *gs, const char *suffix, int *first)
{
    cJSON *j = sim_log(gs);
    const cJSON *r;
    int n = 0, i = 0;
    size_t ls = strlen(suffix);
    if (first != NULL)
        *first = -1;
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(j, "requests")) {
        const char *p = cJSON_GetObjectItem(r, "path")->valuestring;
        size_t lp = strlen(p);
        if (lp >= ls && strcmp(p + lp - ls, suffix) == 0) {
            if (first != NULL && *first < 0)
                *first = i;
            n++;
        }
        i++;
    }
    cJSON_Delete(j);
    return n;
}

/* The arrival time of the first request to a path ending in suffix answered with status (any
 * status when 0), or -1. */
static double first_time(struct tl_gsim *gs, const char *suffix, int status)
{
    cJSON *j = sim_log(gs);
    const cJSON *r;
    double t = -1;
    size_t ls = strlen(suffix);
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(j, "requests")) {
        const char *p = cJSON_GetObjectItem(r, "path")->valuestring;
        const cJSON *st = cJSON_GetObjectItem(r, "status");
        size_t lp = strlen(p);
        if (t < 0 && lp >= ls && strcmp(p + lp - ls, suffix) == 0 &&
            (status == 0 || (cJSON_IsNumber(st) && st->valueint == status)))
            t = cJSON_GetObjectItem(r, "t")->valuedouble;
    }
    cJSON_Delete(j);
    return t;
}

/* The client has read a 429 (the simulator's log may show it before the client read it). */
static int got_429(void *arg)
{
    struct dw_genesys_stats st;
    dw_genesys_stats(arg, &st);
    return st.responses_429 > 0;
}

struct held_wait {
    struct dw_genesys *g;
    uint64_t above;
};

static int held_above(void *arg)
{
    struct held_wait *w = arg;
    struct dw_genesys_stats st;
    dw_genesys_stats(w->g, &st);
    return st.server_held > w->above;
}

/* Switches every base on at once: more requests than the window allows, none refused. */
static void test_burst_paced(void **state)
{
    struct tl_loop e;
    struct tl_gsim gs;
    struct res res[N_BASES];
    struct dw_genesys_stats st;
    char id[8];

    (void)state;
    TL_NEED("python3");
    tl_gsim_start(&gs, fixture());
    tl_loop_init(&e, 10);
    struct dw_genesys *g = client(&e, &gs, 3);

    memset(res, 0, sizeof res);
    for (int i = 0; i < N_BASES; i++) {
        snprintf(id, sizeof id, "tb%02d", i);
        assert_int_equal(dw_genesys_set_trunk_base_enabled(g, id, true, &tl_open_fence, on_res,
                                                           &res[i]),
                         0);
    }
    struct all a = {res, N_BASES};
    /* 24 requests through a window of 20 per 3 s: at least one wait for the window */
    assert_int_equal(tl_run_until(&e, all_done, &a, 30000), 0);
    for (int i = 0; i < N_BASES; i++)
        assert_int_equal(res[i].r, DW_G_OK);
    assert_int_equal(count_status(&gs, 429), 0);
    assert_int_equal(count_path(&gs, "/trunkbasesettings/tb11", NULL), 2);

    dw_genesys_stats(g, &st);
    assert_int_equal(st.responses_429, 0);
    assert_true(st.server_held > 0);
    assert_true(st.in_flight_peak >= 2 && st.in_flight_peak <= 3);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.ratelimit_allowed, LIMIT);
    assert_true(st.ratelimit_remaining >= 0 && st.ratelimit_remaining < LIMIT);

    dw_genesys_close(g);
    tl_loop_close(&e);
    tl_gsim_stop(&gs);
}

/* With the window spent and one request at a time: a listing queued before two writes goes
 * after both; a write deposed while parked is asked when its turn comes and never sent. */
static void test_priority_and_fence(void **state)
{
    struct tl_loop e;
    struct tl_gsim gs;
    struct res fill[N_BASES], list, w1, w2;
    struct dw_genesys_stats st;
    struct tl_fence_ctl fc = {true, 0};
    char id[8];
    int first_list, first_w;

    (void)state;
    TL_NEED("python3");
    tl_gsim_start(&gs, fixture());
    tl_loop_init(&e, 10);
    struct dw_genesys *g = client(&e, &gs, 1);

    /* spend the window: ten writes are 20 requests, the last ones held */
    memset(fill, 0, sizeof fill);
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof id, "tb%02d", i);
        assert_int_equal(dw_genesys_set_trunk_base_enabled(g, id, true, &tl_open_fence, on_res,
                                                           &fill[i]),
                         0);
    }
    struct held_wait hw = {g, 0};
    assert_int_equal(tl_run_until(&e, held_above, &hw, 10000), 0);

    memset(&list, 0, sizeof list);
    memset(&w1, 0, sizeof w1);
    memset(&w2, 0, sizeof w2);
    assert_int_equal(dw_genesys_list(g, "trunks", on_list, &list), 0);
    assert_int_equal(dw_genesys_set_trunk_base_enabled(g, "tb10", true, &tl_open_fence, on_res,
                                                       &w1),
                     0);
    struct dw_fence f = {.node = 1, .term = 3, .op = 9, .seq = 0, .valid = tl_fence_flag, .data = &fc};
    assert_int_equal(dw_genesys_set_trunk_base_enabled(g, "tb11", true, &f, on_res, &w2), 0);
    /* parked behind the hold: not asked yet; deposed now */
    assert_int_equal(fc.asked, 0);
    fc.ok = false;

    struct all a = {fill, 10};
    assert_int_equal(tl_run_until(&e, all_done, &a, 30000), 0);
    assert_int_equal(tl_run_until(&e, one_done, &w1, 30000), 0);
    assert_int_equal(tl_run_until(&e, one_done, &w2, 30000), 0);
    assert_int_equal(tl_run_until(&e, one_done, &list, 30000), 0);
    assert_int_equal(w1.r, DW_G_OK);
    assert_int_equal(w2.r, DW_G_FENCED);
    assert_true(fc.asked >= 1);
    assert_int_equal(list.r, DW_G_OK);
    assert_int_equal(count_path(&gs, "/trunkbasesettings/tb11", NULL), 0);

    /* the listing went after the write queued behind it (GET and PUT) */
    assert_int_equal(count_path(&gs, "/trunkbasesettings/tb10", &first_w), 2);
    assert_int_equal(count_path(&gs, PFX "/trunks", &first_list), 1);
    assert_true(first_w >= 0 && first_w + 1 < first_list);
    assert_int_equal(count_status(&gs, 429), 0);
    dw_genesys_stats(g, &st);
    assert_int_equal(st.fenced, 1);
    assert_int_equal(st.in_flight_peak, 1);

    dw_genesys_close(g);
    tl_loop_close(&e);
    tl_gsim_stop(&gs);
}

/* A 429 holds every request, not only its own call's retry, until its Retry-After ran out. */
static void test_429_holds_everything(void **state)
{
    struct tl_loop e;
    struct tl_gsim gs;
    struct res a, b;
    struct dw_genesys_stats st;

    (void)state;
    TL_NEED("python3");
    tl_gsim_start(&gs, fixture());
    tl_loop_init(&e, 10);
    struct dw_genesys *g = client(&e, &gs, 4);
    dw_genesys_set_backoff_scale(g, 1.0);

    tl_ctl_ok(gs.sim.port, "POST", "/_sim/faults",
              "{\"kind\":\"429\",\"method\":\"GET\",\"path_prefix\":\"" PFX
              "/trunkbasesettings/tb00\",\"retry_after_s\":1,\"count\":1}");
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    assert_int_equal(dw_genesys_set_trunk_base_enabled(g, "tb00", true, &tl_open_fence, on_res,
                                                       &a),
                     0);
    assert_int_equal(tl_run_until(&e, got_429, g, 10000), 0);
    /* another call started during the wait goes only when it ends */
    assert_int_equal(dw_genesys_set_trunk_base_enabled(g, "tb01", true, &tl_open_fence, on_res,
                                                       &b),
                     0);
    assert_int_equal(tl_run_until(&e, one_done, &a, 10000), 0);
    assert_int_equal(tl_run_until(&e, one_done, &b, 10000), 0);
    assert_int_equal(a.r, DW_G_OK);
    assert_int_equal(b.r, DW_G_OK);

    double t429 = first_time(&gs, "/trunkbasesettings/tb00", 429);
    double t01 = first_time(&gs, "/trunkbasesettings/tb01", 0);
    assert_true(t429 > 0 && t01 > 0);
    assert_true(t01 - t429 >= 0.95);
    dw_genesys_stats(g, &st);
    assert_int_equal(st.responses_429, 1);
    assert_true(st.server_held >= 1);

    dw_genesys_close(g);
    tl_loop_close(&e);
    tl_gsim_stop(&gs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_paced),
        cmocka_unit_test(test_priority_and_fence),
        cmocka_unit_test(test_429_holds_everything),
    };

    tl_main_begin();
    return tl_main_end(cmocka_run_group_tests(tests, NULL, tl_kill_all_teardown));
}
