/* The Genesys signal: deriving Edge states from Genesys' lists (pure, on JSON fixtures), listing
 * with paging against the Genesys simulator (tests/tools/genesys_sim.py) at the real paths,
 * numbers in Genesys' answers range-checked, and the leader-only poller with a fake raft sink.
 * Simulator tests are skipped when python3 is missing. */
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drwatch/cloud.h"
#include "drwatch/cloudview.h"
#include "drwatch/genesys.h"
#include "drwatch/http.h"
#include "drwatch/log.h"
#include "testlib.h"

#define PFX "/api/v2/telephony/providers/edges"
#define EDGE_LIST PFX /* the Edge list is the prefix itself: there is no .../edges/edges */
#define N_FILLER 130 /* Edges beyond one page of 100 */

/* ---- derivation (pure) ---- */

static const char EDGES[] =
    "[{\"id\":\"e1\",\"onlineStatus\":\"ONLINE\"},"
    " {\"id\":\"e2\",\"onlineStatus\":\"OFFLINE\"},"
    " {\"id\":\"e3\",\"onlineStatus\":\"ONLINE\"},"
    " {\"id\":\"e4\",\"onlineStatus\":\"ONLINE\"},"
    " {\"id\":\"e5\"},"
    " {\"id\":\"e6\",\"onlineStatus\":\"ONLINE\",\"state\":\"deleted\"},"
    " {\"id\":\"e7\",\"onlineStatus\":42},"
    " {\"id\":\"e8\",\"onlineStatus\":\"ONLINE\"}, {\"id\":\"e8\",\"onlineStatus\":\"OFFLINE\"},"
    " 7, \"e1\", null, [], {\"name\":\"no id\"}, {\"id\":5}]";

static const char TRUNKS[] =
    "[{\"id\":\"t1\",\"trunkType\":\"EXTERNAL\",\"edge\":{\"id\":\"e1\"},\"inService\":false,"
    "  \"connectedStatus\":{\"connected\":false}},"
    /* a phone trunk says nothing about the carrier path */
    " {\"id\":\"t2\",\"trunkType\":\"PHONE\",\"edge\":{\"id\":\"e1\"},\"inService\":true,"
    "  \"connectedStatus\":{\"connected\":false}},"
    " {\"id\":\"t3\",\"trunkType\":\"EXTERNAL\",\"edge\":{\"id\":\"e3\"},\"inService\":true,"
    "  \"connectedStatus\":{\"connected\":false}},"
    " {\"id\":\"t4\",\"edge\":{\"id\":\"e3\"},\"inService\":true,\"connectedStatus\":{}},"
    " {\"id\":\"t5\",\"trunkType\":\"EXTERNAL\",\"edge\":{\"id\":\"e4\"},\"inService\":true,"
    "  \"connectedStatus\":{\"connected\":false}},"
    " {\"id\":\"t6\",\"trunkType\":\"EXTERNAL\",\"edge\":{\"id\":\"e4\"},\"inService\":true,"
    "  \"connectedStatus\":{\"connected\":true}},"
    /* a deleted record carries no calls */
    " {\"id\":\"t7\",\"trunkType\":\"EXTERNAL\",\"edge\":{\"id\":\"e1\"},\"inService\":true,"
    "  \"state\":\"deleted\",\"connectedStatus\":{\"connected\":false}},"
    " {\"id\":\"t8\",\"trunkType\":\"EXTERNAL\",\"edge\":{\"id\":\"e7\"},\"inService\":true,"
    "  \"connectedStatus\":{\"connected\":\"yes\"}},"
    " {\"id\":\"t9\",\"trunkType\":\"EXTERNAL\",\"edge\":null,\"inService\":true},"
    " {\"id\":\"t10\",\"trunkType\":\"EXTERNAL\",\"edge\":{\"id\":\"absent\"},\"inService\":true},"
    " {\"edge\":{\"id\":\"e2\"},\"inService\":true}, \"t\", 3.5]";

static void test_derive(void **state)
{
    static const char *const ids[] = {"e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "absent", "e3"};
    /* e7: a mistyped onlineStatus and a mistyped "connected" are no evidence either way */
    static const enum dw_health want[] = {DW_UP,      DW_DOWN,    DW_DOWN, DW_UP,      DW_UNKNOWN,
                                          DW_UNKNOWN, DW_UNKNOWN, DW_DOWN, DW_UNKNOWN, DW_DOWN};
    static const enum dw_cloud_why why[] = {
        DW_CLOUD_ONLINE, DW_CLOUD_OFFLINE,   DW_CLOUD_DISCONNECTED, DW_CLOUD_ONLINE,
        DW_CLOUD_NO_STATUS, DW_CLOUD_ABSENT, DW_CLOUD_NO_STATUS, DW_CLOUD_OFFLINE,
        DW_CLOUD_ABSENT, DW_CLOUD_DISCONNECTED};
    enum { N = sizeof ids / sizeof ids[0] };
    struct dw_cloud_edge out[N];
    cJSON *edges = cJSON_Parse(EDGES), *trunks = cJSON_Parse(TRUNKS), *obj;
    int ignored = -1;

    (void)state;
    assert_non_null(edges);
    assert_non_null(trunks);
    assert_int_equal(dw_cloudview_derive(edges, trunks, ids, N, out, &ignored), 0);
    for (int i = 0; i < N; i++) {
        if (out[i].state != want[i] || out[i].why != why[i])
            fail_msg("%s: %s (%s), wanted %s (%s)", ids[i], dw_health_name(out[i].state),
                     dw_cloud_why_name(out[i].why), dw_health_name(want[i]),
                     dw_cloud_why_name(why[i]));
    }
    /* t4's empty connectedStatus is skipped, not counted as disconnected */
    assert_int_equal(out[2].trunks_in_service, 1);
    assert_int_equal(out[2].trunks_connected, 0);
    assert_int_equal(out[3].trunks_in_service, 2);
    assert_int_equal(out[3].trunks_connected, 1);
    assert_int_equal(out[0].trunks_in_service, 0);
    /* edges: 7, "e1", null, [], {no id}, {id 5}; trunks: {no id}, "t", 3.5, and t4, t8, t10
     * whose "connected" is missing or not a boolean */
    assert_int_equal(ignored, 12);

    /* not lists at all */
    obj = cJSON_CreateObject();
    assert_int_equal(dw_cloudview_derive(obj, trunks, ids, N, out, &ignored), -1);
    assert_int_equal(out[1].state, DW_UNKNOWN);
    assert_int_equal(dw_cloudview_derive(edges, NULL, ids, N, out, NULL), -1);
    assert_int_equal(dw_cloudview_derive(edges, trunks, ids, 0, out, NULL), 0);
    cJSON_Delete(obj);
    cJSON_Delete(edges);
    cJSON_Delete(trunks);
    assert_string_equal(dw_cloud_why_name(DW_CLOUD_DISCONNECTED), "trunks disconnected");
}

static void test_interval(void **state)
{
    struct dw_genesys_cfg g = {.poll_interval_ms = 10000, .rate_budget_per_min = 120};

    (void)state;
    assert_int_equal(dw_cloud_interval_ms(&g, 0), 10000);
    assert_int_equal(dw_cloud_interval_ms(&g, 20), 10000);
    assert_int_equal(dw_cloud_interval_ms(&g, 40), 20000);
    assert_int_equal(dw_cloud_interval_ms(&g, 41), 20500);
    g.rate_budget_per_min = 7;
    assert_int_equal(dw_cloud_interval_ms(&g, 1), 10000);
    assert_int_equal(dw_cloud_interval_ms(&g, 2), 17143); /* rounded up: never above budget */
    g.rate_budget_per_min = 0;
    assert_int_equal(dw_cloud_interval_ms(&g, 1000), 10000);
}

/* ---- simulator ---- */

/* GET requests of the API path since the last reset; pages[] gets their pageNumber (up to 8). */
static int sim_gets(int port, const char *api_path, int *pages)
{
    cJSON *j = tl_ctl(port, "GET", "/_sim/requests", NULL);
    const cJSON *r;
    int n = 0;

    assert_non_null(j);
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(j, "requests")) {
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(r, "method"));
        const char *p = cJSON_GetStringValue(cJSON_GetObjectItem(r, "path"));
        const cJSON *q = cJSON_GetObjectItem(r, "query");

        if (m == NULL || p == NULL || strcmp(m, "GET") != 0 || strcmp(p, api_path) != 0)
            continue;
        if (pages != NULL && n < 8) {
            const char *pn = cJSON_GetStringValue(cJSON_GetObjectItem(q, "pageNumber"));
            const char *ps = cJSON_GetStringValue(cJSON_GetObjectItem(q, "pageSize"));
            assert_non_null(ps);
            assert_string_equal(ps, "100");
            pages[n] = pn ? atoi(pn) : 0;
        }
        n++;
    }
    cJSON_Delete(j);
    return n;
}

/* Logged requests whose string field (e.g. "target": path and query as sent) is value. */
static int sim_count(int port, const char *field, const char *value)
{
    cJSON *j = tl_ctl(port, "GET", "/_sim/requests", NULL);
    const cJSON *r;
    int n = 0;

    assert_non_null(j);
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(j, "requests")) {
        const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(r, field));
        n += v != NULL && strcmp(v, value) == 0;
    }
    cJSON_Delete(j);
    return n;
}

/* Three Edges of ours (two sharing an enabled trunk base, one on a disabled base) and enough
 * others that the edge list takes two pages. */
static void write_fixture(FILE *f)
{
    fputs("{\"client_id\":\"drwatch-test\",\"client_secret\":\"s3cret\",\n"
          " \"sites\":[{\"id\":\"gsite-a\"},{\"id\":\"gsite-b\"}],\n"
          " \"edges\":[{\"id\":\"edge-a1\",\"site\":\"gsite-a\"},\n"
          "           {\"id\":\"edge-a2\",\"site\":\"gsite-a\"},\n"
          "           {\"id\":\"edge-b1\",\"site\":\"gsite-b\"}",
          f);
    for (int i = 0; i < N_FILLER; i++)
        fprintf(f, ",\n           {\"id\":\"other-%03d\",\"site\":\"gsite-b\"}", i);
    fputs("],\n"
          " \"trunk_bases\":[{\"id\":\"tbA\",\"enabled\":true,\"edges\":[\"edge-a1\",\"edge-a2\"]},\n"
          "                 {\"id\":\"tbB\",\"enabled\":false,\"edges\":[\"edge-b1\"]}]}\n",
          f);
}

static void gsim_start(struct tl_gsim *g)
{
    char *json = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&json, &len);

    assert_non_null(f);
    write_fixture(f);
    fclose(f);
    tl_gsim_start(g, json);
    free(json);
}

/* ---- dw_genesys_list ---- */

struct lres {
    int done;
    enum dw_gresult r;
    cJSON *list;
    unsigned requests;
    char detail[256];
};

static void on_list(void *data, enum dw_gresult r, cJSON *entities, unsigned requests,
                    const char *detail)
{
    struct lres *x = data;

    x->done++;
    x->r = r;
    x->list = entities;
    x->requests = requests;
    snprintf(x->detail, sizeof x->detail, "%s", detail);
}

static int lres_done(void *arg)
{
    return ((struct lres *)arg)->done > 0;
}

static void list(struct tl_loop *e, struct dw_genesys *g, const char *what, struct lres *res)
{
    memset(res, 0, sizeof *res);
    assert_int_equal(dw_genesys_list(g, what, on_list, res), 0);
    assert_int_equal(tl_run_until(e, lres_done, res, 10000), 0);
    assert_int_equal(res->done, 1);
}

static bool has_id(const cJSON *arr, const char *id)
{
    const cJSON *it;

    cJSON_ArrayForEach(it, arr) {
        const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(it, "id"));
        if (v != NULL && strcmp(v, id) == 0)
            return true;
    }
    return false;
}

static void test_list_paging(void **state)
{
    struct tl_loop e;
    struct tl_gsim gs;
    struct lres res;
    int pages[8];

    (void)state;
    TL_NEED("python3");
    gsim_start(&gs);
    tl_loop_init(&e, 5);
    struct dw_genesys *g = tl_genesys_new(&e, gs.base, gs.base, "s3cret");

    /* only the documented read-only collections */
    assert_int_equal(dw_genesys_list(g, "trunkbasesettings", on_list, &res), -1);
    assert_int_equal(dw_genesys_list(g, NULL, on_list, &res), -1);
    assert_int_equal(dw_genesys_list(g, "edges", NULL, &res), -1);

    list(&e, g, "edges", &res);
    assert_int_equal(res.r, DW_G_OK);
    assert_int_equal(cJSON_GetArraySize(res.list), 3 + N_FILLER);
    assert_true(has_id(res.list, "edge-a1"));
    assert_true(has_id(res.list, "other-129"));
    assert_int_equal(res.requests, 2);
    assert_non_null(strstr(res.detail, "133 entities in 2 pages"));
    assert_int_equal(sim_gets(gs.sim.port, EDGE_LIST, pages), 2);
    assert_int_equal(pages[0], 1);
    assert_int_equal(pages[1], 2);
    /* the exact request lines of the real API */
    assert_int_equal(sim_count(gs.sim.port, "target", PFX "?pageSize=100&pageNumber=1"), 1);
    assert_int_equal(sim_count(gs.sim.port, "target", PFX "?pageSize=100&pageNumber=2"), 1);
    cJSON_Delete(res.list);

    list(&e, g, "trunks", &res);
    assert_int_equal(res.r, DW_G_OK);
    assert_int_equal(cJSON_GetArraySize(res.list), 3);
    assert_int_equal(res.requests, 1);
    assert_int_equal(sim_count(gs.sim.port, "target", PFX "/trunks?pageSize=100&pageNumber=1"), 1);
    cJSON_Delete(res.list);

    /* a 503 on the second page is retried, and the retry is counted */
    tl_ctl_ok(gs.sim.port, "POST", "/_sim/reset", "{}");
    tl_ctl_ok(gs.sim.port, "POST", "/_sim/faults",
           "{\"kind\":\"status\",\"status\":503,\"method\":\"GET\",\"path\":\"" EDGE_LIST
           "\",\"count\":1}");
    list(&e, g, "edges", &res);
    assert_int_equal(res.r, DW_G_OK);
    assert_int_equal(res.requests, 3);
    assert_int_equal(cJSON_GetArraySize(res.list), 3 + N_FILLER);
    cJSON_Delete(res.list);

    /* a 500 is not retried: no partial list */
    tl_ctl_ok(gs.sim.port, "POST", "/_sim/faults",
           "{\"kind\":\"status\",\"status\":500,\"method\":\"GET\",\"path_prefix\":\"" PFX
           "/trunks\",\"count\":1}");
    list(&e, g, "trunks", &res);
    assert_int_equal(res.r, DW_G_FAIL);
    assert_null(res.list);
    assert_int_equal(res.requests, 1);
    assert_non_null(strstr(res.detail, "500"));

    /* closing the client with a listing in flight reports it, without a list */
    memset(&res, 0, sizeof res);
    assert_int_equal(dw_genesys_list(g, "edges", on_list, &res), 0);
    uv_run(&e.loop, UV_RUN_NOWAIT);
    dw_genesys_close(g);
    assert_int_equal(res.done, 1);
    assert_int_equal(res.r, DW_G_FAIL);
    assert_null(res.list);
    assert_string_equal(res.detail, "client closed");

    tl_loop_close(&e);
    tl_gsim_stop(&gs);
}

/* ---- pacing: the rate budget as a token bucket ---- */

struct gres {
    int done;
    enum dw_gresult r;
    char detail[256];
};

static void on_gres(void *data, enum dw_gresult r, const char *detail)
{
    struct gres *x = data;
    x->done++;
    x->r = r;
    snprintf(x->detail, sizeof x->detail, "%s", detail);
}

static int all_listed(void *arg)
{
    struct lres *r = arg;
    for (int i = 0; i < 6; i++)
        if (!r[i].done)
            return 0;
    return 1;
}

static void test_list_paced(void **state)
{
    enum { BUDGET = 120 }; /* per minute: 2 per second, bursts of 20 */
    struct tl_loop e;
    struct tl_gsim gs;
    struct lres res[6];
    struct gres chk = {0};
    struct dw_genesys_cfg cfg;
    struct dw_genesys_stats st;
    struct dw_genesys *g;
    char err[256];

    (void)state;
    TL_NEED("python3");
    gsim_start(&gs);
    tl_loop_init(&e, 5);
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.api_base_url, sizeof cfg.api_base_url, "%s", gs.base);
    snprintf(cfg.login_base_url, sizeof cfg.login_base_url, "%s", gs.base);
    snprintf(cfg.client_id, sizeof cfg.client_id, "drwatch-test");
    cfg.request_timeout_ms = 3000;
    cfg.rate_budget_per_min = BUDGET;
    assert_int_equal(dw_genesys_init(&g, &e.loop, e.m, &cfg, "s3cret", err, sizeof err), 0);

    /* 10 lists of 2 pages take the burst; 6 more must wait for tokens */
    for (int round = 0; round < 10; round++) {
        list(&e, g, "edges", &res[0]);
        assert_int_equal(res[0].r, DW_G_OK);
        cJSON_Delete(res[0].list);
    }
    dw_genesys_stats(g, &st);
    uint64_t paced_before = st.paced;
    tl_ctl_ok(gs.sim.port, "POST", "/_sim/reset", "{}");
    memset(res, 0, sizeof res);
    for (int i = 0; i < 6; i++)
        assert_int_equal(dw_genesys_list(g, "edges", on_list, &res[i]), 0);
    /* an actuator call started after the lists is not queued behind them */
    assert_int_equal(dw_genesys_check_trunks(g, "tbA", on_gres, &chk), 0);
    assert_int_equal(tl_run_until(&e, all_listed, res, 60000), 0);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(res[i].r, DW_G_OK);
        cJSON_Delete(res[i].list);
    }
    assert_int_equal(chk.done, 1);
    dw_genesys_stats(g, &st);
    assert_true(st.paced > paced_before);

    /* What the API saw: over any window, list requests stay within burst + rate x window (one
     * request of slack for arrival jitter), and the trunk check came before most pages. */
    cJSON *j = tl_ctl(gs.sim.port, "GET", "/_sim/requests", NULL);
    assert_non_null(j);
    double t[64];
    int n = 0, check_at = -1;
    const cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(j, "requests")) {
        const char *p = cJSON_GetStringValue(cJSON_GetObjectItem(r, "path"));
        if (p == NULL)
            continue;
        if (strcmp(p, PFX "/trunks") == 0 && check_at < 0)
            check_at = n;
        else if (strcmp(p, EDGE_LIST) == 0 && n < 64)
            t[n++] = cJSON_GetNumberValue(cJSON_GetObjectItem(r, "t"));
    }
    cJSON_Delete(j);
    assert_int_equal(n, 12);
    assert_true(check_at >= 0 && check_at < 3);
    assert_int_equal(
        sim_count(gs.sim.port, "target", PFX "/trunks?trunkBase.id=tbA&pageSize=100"), 1);
    /* The burst was spent before, so each page waited for its own token: one per 60 / BUDGET s
     * (a fifth off for the difference between sending and the sim's arrival stamp). */
    for (int a = 1; a < n; a++)
        if (t[a] - t[a - 1] < 0.8 * 60.0 / BUDGET)
            fail_msg("pages %d and %d only %.3f s apart", a - 1, a, t[a] - t[a - 1]);

    dw_genesys_close(g);
    tl_loop_close(&e);
    tl_gsim_stop(&gs);
}

/* ---- numbers from Genesys ---- */

static void test_json_int_in(void **state)
{
    static const struct {
        double v;
        long long min, max;
        bool ok;
    } cases[] = {
        {0.0, 0, 10, true},           {-0.0, 0, 10, true},
        {10.0, 0, 10, true},          {11.0, 0, 10, false},
        {-1.0, 0, 10, false},         {2.5, 0, 10, false},
        {1e300, 0, INT_MAX, false},   {-1e300, INT_MIN, 0, false},
        {2147483647.0, 0, INT_MAX, true}, {2147483648.0, 0, INT_MAX, false},
        /* beyond 2^53 even a range of the whole type fails: the cast could not be exact */
        {9223372036854775808.0, LLONG_MIN, LLONG_MAX, false},
        {9007199254740992.0, LLONG_MIN, LLONG_MAX, true},
    };
    long long out;

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *n = cJSON_CreateNumber(cases[i].v);
        out = -42;
        if (dw_json_int_in(n, cases[i].min, cases[i].max, &out) != cases[i].ok)
            fail_msg("%.17g in [%lld, %lld]: wanted %d", cases[i].v, cases[i].min,
                     cases[i].max, cases[i].ok);
        assert_true(cases[i].ok ? out == (long long)cases[i].v : out == -42);
        cJSON_Delete(n);
    }
    cJSON *x[] = {cJSON_CreateNumber(NAN), cJSON_CreateNumber(INFINITY),
                  cJSON_CreateNumber(-INFINITY), cJSON_CreateString("3"), cJSON_CreateNull(),
                  cJSON_CreateTrue(), NULL};
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) {
        assert_false(dw_json_int_in(x[i], LLONG_MIN, LLONG_MAX, &out));
        cJSON_Delete(x[i]);
    }
}

/* The simulator answers the next `method path` with body, verbatim, status 200. */
static void body_fault(int port, const char *method, const char *path, const char *body)
{
    cJSON *f = cJSON_CreateObject();
    char *s;

    assert_non_null(cJSON_AddStringToObject(f, "kind", "body"));
    assert_non_null(cJSON_AddStringToObject(f, "method", method));
    assert_non_null(cJSON_AddStringToObject(f, "path", path));
    assert_non_null(cJSON_AddStringToObject(f, "body", body));
    s = cJSON_PrintUnformatted(f);
    assert_non_null(s);
    tl_ctl_ok(port, "POST", "/_sim/faults", s);
    free(s);
    cJSON_Delete(f);
}

static int gres_done(void *arg)
{
    return ((struct gres *)arg)->done > 0;
}

static uint64_t bad_responses(const struct dw_genesys *g)
{
    struct dw_genesys_stats st;

    dw_genesys_stats(g, &st);
    return st.bad_responses;
}

/* A failure counted as a bad response, naming what was wrong. */
static void assert_bad(const struct dw_genesys *g, uint64_t *bad, enum dw_gresult r,
                       const char *detail, const char *needle)
{
    if (r != DW_G_FAIL || strstr(detail, needle) == NULL)
        fail_msg("wanted a failure naming %s, got %d: %s", needle, r, detail);
    assert_int_equal(bad_responses(g), *bad + 1);
    (*bad)++;
}

static void run_set(struct tl_loop *e, struct dw_genesys *g, const char *tb, struct gres *res)
{
    memset(res, 0, sizeof *res);
    assert_int_equal(dw_genesys_set_trunk_base_enabled(g, tb, true, &tl_open_fence, on_gres, res), 0);
    assert_int_equal(tl_run_until(e, gres_done, res, 10000), 0);
}

/* Numbers a JSON parser accepts but no sane API sends fail the call cleanly (no cast of 1e300 or
 * inf to an integer), are counted as bad responses, and nothing is written on a bad version. */
static void test_bad_numbers(void **state)
{
    static const char *const page_counts[] = {"1e300", "1e999", "-1e999", "-1", "2.5",
                                              "2147483648", "\"2\"", "null"};
    static const char *const versions[] = {"1e20", "1e999", "-1", "1.5", "\"3\"", "null"};
    static const char *const ttls[] = {"-5", "0", "1e300", "-1e999", "86399.5", "604801",
                                       "\"86399\""};
    struct tl_loop e;
    struct tl_gsim gs;
    struct lres res;
    struct gres gr;
    char body[256];
    uint64_t bad = 0;

    (void)state;
    TL_NEED("python3");
    gsim_start(&gs);
    tl_loop_init(&e, 5);
    struct dw_genesys *g = tl_genesys_new(&e, gs.base, gs.base, "s3cret");
    int port = gs.sim.port;

    for (size_t i = 0; i < sizeof page_counts / sizeof page_counts[0]; i++) {
        snprintf(body, sizeof body, "{\"entities\":[],\"pageCount\":%s}", page_counts[i]);
        body_fault(port, "GET", EDGE_LIST, body);
        list(&e, g, "edges", &res);
        assert_null(res.list);
        assert_bad(g, &bad, res.r, res.detail, "pageCount");
        body_fault(port, "GET", PFX "/trunks", body);
        memset(&gr, 0, sizeof gr);
        assert_int_equal(dw_genesys_check_trunks(g, "tbA", on_gres, &gr), 0);
        assert_int_equal(tl_run_until(&e, gres_done, &gr, 10000), 0);
        assert_bad(g, &bad, gr.r, gr.detail, "pageCount");
    }
    /* an empty list may say 0 pages, or none */
    body_fault(port, "GET", EDGE_LIST, "{\"entities\":[],\"pageCount\":0}");
    list(&e, g, "edges", &res);
    assert_int_equal(res.r, DW_G_OK);
    cJSON_Delete(res.list);
    body_fault(port, "GET", EDGE_LIST, "{\"entities\":[]}");
    list(&e, g, "edges", &res);
    assert_int_equal(res.r, DW_G_OK);
    cJSON_Delete(res.list);

    tl_ctl_ok(port, "POST", "/_sim/reset", "{}");
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        snprintf(body, sizeof body,
                 "{\"id\":\"tbB\",\"name\":\"tbB\",\"version\":%s,\"properties\":{}}",
                 versions[i]);
        body_fault(port, "GET", PFX "/trunkbasesettings/tbB", body);
        run_set(&e, g, "tbB", &gr);
        assert_bad(g, &bad, gr.r, gr.detail, "version");
    }
    assert_int_equal(sim_count(port, "method", "PUT"), 0);
    /* the version in a PUT's answer is checked too */
    body_fault(port, "PUT", PFX "/trunkbasesettings/tbB", "{\"id\":\"tbB\",\"version\":1e20}");
    run_set(&e, g, "tbB", &gr);
    assert_bad(g, &bad, gr.r, gr.detail, "version");

    /* a token lifetime outside 1 s .. 7 days: the token is not used */
    for (size_t i = 0; i < sizeof ttls / sizeof ttls[0]; i++) {
        struct dw_genesys *g2 = tl_genesys_new(&e, gs.base, gs.base, "s3cret");
        uint64_t bad2 = 0;

        snprintf(body, sizeof body,
                 "{\"access_token\":\"tok\",\"token_type\":\"bearer\",\"expires_in\":%s}",
                 ttls[i]);
        tl_ctl_ok(port, "POST", "/_sim/reset", "{}");
        body_fault(port, "POST", "/oauth/token", body);
        list(&e, g2, "trunks", &res);
        assert_null(res.list);
        assert_bad(g2, &bad2, res.r, res.detail, "expires_in");
        assert_int_equal(sim_gets(port, PFX "/trunks", NULL), 0);
        dw_genesys_close(g2);
    }

    dw_genesys_close(g);
    tl_loop_close(&e);
    tl_gsim_stop(&gs);
}

/* ---- the poller ---- */

struct pending {
    dw_raft_done_cb cb;
    void *data;
};

struct fake_raft {
    bool leader;
    int refuse;                 /* refuse this many proposals (propose returns -1) */
    int n;                      /* entries committed */
    char *entries[64];
    struct pending q[16];
    int nq;
    uv_timer_t commit;          /* commits asynchronously, as raft does */
};

static bool fake_is_leader(void *data)
{
    return ((struct fake_raft *)data)->leader;
}

static int fake_propose(void *data, const char *json, dw_raft_done_cb cb, void *cb_data,
                        char *errmsg, size_t errlen)
{
    struct fake_raft *r = data;

    if (!r->leader || r->refuse > 0) {
        r->refuse -= r->refuse > 0;
        snprintf(errmsg, errlen, "not leader");
        return -1;
    }
    assert_true(r->nq < 16);
    if (r->n < 64)
        r->entries[r->n++] = strdup(json);
    r->q[r->nq++] = (struct pending){cb, cb_data};
    return 0;
}

static void fake_commit(uv_timer_t *t)
{
    struct fake_raft *r = t->data;
    int n = r->nq;
    struct pending q[16];

    memcpy(q, r->q, sizeof q);
    r->nq = 0;
    for (int i = 0; i < n; i++)
        q[i].cb(q[i].data, 0, NULL);
}

static const char *last_entry(const struct fake_raft *r)
{
    return r->n > 0 ? r->entries[r->n - 1] : "";
}

struct wait_entry {
    struct fake_raft *r;
    const char *needle;
};

static int entry_has(void *arg)
{
    struct wait_entry *w = arg;
    return w->r->n > 0 && strstr(last_entry(w->r), w->needle) != NULL;
}

static void wait_for_entry(struct tl_loop *e, struct fake_raft *r, const char *needle)
{
    struct wait_entry w = {r, needle};

    if (tl_run_until(e, entry_has, &w, 8000) != 0)
        fail_msg("no entry with %s; last: %s", needle, last_entry(r));
}

static struct dw_edge *edge(struct dw_site *s, const char *id, const char *gid)
{
    struct dw_edge *e = &s->edges[s->n_edges++];

    snprintf(e->id, sizeof e->id, "%s", id);
    snprintf(e->genesys_edge_id, sizeof e->genesys_edge_id, "%s", gid);
    return e;
}

/* site-a combines with Genesys (Edges edge-a1, edge-a2); site-b uses its probes only. */
static void poller_config(struct dw_config *cfg)
{
    static struct dw_site sites[2];
    static struct dw_edge edges_a[2], edges_b[1];

    memset(cfg, 0, sizeof *cfg);
    memset(sites, 0, sizeof sites);
    memset(edges_a, 0, sizeof edges_a);
    memset(edges_b, 0, sizeof edges_b);
    cfg->node_id = 1;
    cfg->n_members = 1;
    cfg->members[0].id = 1;
    cfg->sites = sites;
    cfg->n_sites = 2;
    snprintf(sites[0].id, DW_ID_MAX, "site-a");
    sites[0].combine = DW_COMBINE_OR_GENESYS;
    sites[0].edges = edges_a;
    edge(&sites[0], "site-a-e1", "edge-a1");
    edge(&sites[0], "site-a-e2", "edge-a2");
    snprintf(sites[1].id, DW_ID_MAX, "site-b");
    sites[1].edges = edges_b;
    edge(&sites[1], "site-b-e1", "edge-b1");
    cfg->genesys.poll_interval_ms = 100;
    cfg->genesys.cloud_ttl_ms = 30000;
    cfg->genesys.rate_budget_per_min = 100000;
}

struct stats_wait {
    struct dw_cloud *c;
    uint64_t polls;
};

static int polled_more(void *arg)
{
    struct stats_wait *w = arg;
    struct dw_cloud_stats st;

    dw_cloud_stats(w->c, &st);
    return st.polls > w->polls;
}

static int not_polling(void *arg)
{
    struct dw_cloud_stats st;

    dw_cloud_stats(arg, &st);
    return !st.polling;
}

struct gets_wait {
    int port;
    int n;
};

/* The simulator logged at least n GETs of the edge list (asked on every turn of the loop). */
static int edge_gets_reach(void *arg)
{
    struct gets_wait *w = arg;
    return sim_gets(w->port, EDGE_LIST, NULL) >= w->n;
}

static void test_poller(void **state)
{
    struct tl_loop e;
    struct tl_gsim gs;
    struct dw_config cfg;
    struct fake_raft fr;
    struct dw_cloud *c, *idle;
    struct dw_cloud_stats st;
    struct stats_wait sw;
    char err[256];
    int n;

    (void)state;
    TL_NEED("python3");
    gsim_start(&gs);
    tl_loop_init(&e, 5);
    struct dw_genesys *g = tl_genesys_new(&e, gs.base, gs.base, "s3cret");
    poller_config(&cfg);
    memset(&fr, 0, sizeof fr);
    uv_timer_init(&e.loop, &fr.commit);
    fr.commit.data = &fr;
    uv_timer_start(&fr.commit, fake_commit, 3, 3);
    struct dw_cloud_sink sink = {fake_is_leader, fake_propose, &fr};

    /* nothing combines with Genesys: idle */
    cfg.sites[0].combine = DW_COMBINE_PROBES;
    assert_int_equal(dw_cloud_start_sink(&idle, &e.loop, &cfg, g, &sink, err, sizeof err), 0);
    dw_cloud_stats(idle, &st);
    assert_false(st.active);
    assert_int_equal(st.edges, 0);
    cfg.sites[0].combine = DW_COMBINE_OR_GENESYS;

    /* a follower never calls Genesys */
    assert_int_equal(dw_cloud_start_sink(&c, &e.loop, &cfg, g, &sink, err, sizeof err), 0);
    tl_run_for(&e, 300);
    assert_int_equal(sim_gets(gs.sim.port, EDGE_LIST, NULL), 0);
    dw_cloud_stats(c, &st);
    assert_true(st.active);
    assert_false(st.polling);
    assert_int_equal(st.edges, 2);
    assert_int_equal(fr.n, 0);

    /* the leader polls and proposes its view at once; site-b's Edge is not in it */
    fr.leader = true;
    wait_for_entry(&e, &fr, "\"site-a-e1\":\"up\"");
    assert_non_null(strstr(last_entry(&fr), "\"type\":\"cloud\""));
    assert_non_null(strstr(last_entry(&fr), "\"site-a-e2\":\"up\""));
    assert_null(strstr(last_entry(&fr), "site-b"));
    dw_cloud_stats(c, &st);
    assert_true(st.polling);
    assert_true(st.polls >= 1);
    assert_int_equal(st.up, 2);
    assert_int_equal(st.last_requests, 3); /* two pages of edges, one of trunks */
    assert_int_equal(st.interval_ms, 100);

    /* Genesys sees an Edge go offline: proposed at the next cycle */
    tl_ctl_ok(gs.sim.port, "POST", "/_sim/set_edge", "{\"id\":\"edge-a1\",\"online\":false}");
    wait_for_entry(&e, &fr, "\"site-a-e1\":\"down\"");
    assert_non_null(strstr(last_entry(&fr), "\"site-a-e2\":\"up\""));
    dw_cloud_stats(c, &st);
    assert_true(st.changes >= 1);

    /* no change: no entry until the view would go stale */
    n = fr.n;
    dw_cloud_stats(c, &st);
    sw = (struct stats_wait){c, st.polls + 3};
    assert_int_equal(tl_run_until(&e, polled_more, &sw, 15000), 0);
    assert_int_equal(fr.n, n);
    /* with a short cloud_ttl_ms the same view is repeated to stay fresh */
    cfg.genesys.cloud_ttl_ms = 600;
    sw.polls += 3;
    assert_int_equal(tl_run_until(&e, polled_more, &sw, 15000), 0);
    assert_true(fr.n > n);
    cfg.genesys.cloud_ttl_ms = 30000;

    /* a refused proposal is retried at the next cycle */
    tl_ctl_ok(gs.sim.port, "POST", "/_sim/set_edge", "{\"id\":\"edge-a1\",\"online\":true}");
    fr.refuse = 1;
    n = fr.n;
    wait_for_entry(&e, &fr, "\"site-a-e1\":\"up\"");
    assert_int_equal(fr.n, n + 1);
    dw_cloud_stats(c, &st);
    assert_true(st.proposal_failures >= 1);

    /* online Edges whose in-service trunks are not connected are told apart from OFFLINE ones
     * (the FSM's grace after an activation); OFFLINE wins */
    tl_ctl_ok(gs.sim.port, "POST", "/_sim/set_connected", "{\"id\":\"tbA\",\"connected\":false}");
    wait_for_entry(&e, &fr, "\"site-a-e2\":\"disconnected\"");
    assert_non_null(strstr(last_entry(&fr), "\"site-a-e1\":\"disconnected\""));
    tl_ctl_ok(gs.sim.port, "POST", "/_sim/set_edge", "{\"id\":\"edge-a1\",\"online\":false}");
    wait_for_entry(&e, &fr, "\"site-a-e1\":\"down\"");
    assert_non_null(strstr(last_entry(&fr), "\"site-a-e2\":\"disconnected\""));
    tl_ctl_ok(gs.sim.port, "POST", "/_sim/set_edge", "{\"id\":\"edge-a1\",\"online\":true}");
    tl_ctl_ok(gs.sim.port, "POST", "/_sim/set_connected", "{\"id\":\"tbA\",\"connected\":true}");
    wait_for_entry(&e, &fr, "\"site-a-e2\":\"up\"");

    /* Genesys failing: counted, polling goes on */
    tl_ctl_ok(gs.sim.port, "POST", "/_sim/faults",
           "{\"kind\":\"status\",\"status\":500,\"method\":\"GET\",\"path_prefix\":\"" PFX
           "/trunks\",\"count\":1}");
    dw_cloud_stats(c, &st);
    /* counted from here: a stall during the short cloud_ttl_ms above fails a cycle too */
    uint64_t failures = st.poll_failures;
    sw.polls = st.polls + 1;
    assert_int_equal(tl_run_until(&e, polled_more, &sw, 15000), 0);
    dw_cloud_stats(c, &st);
    assert_int_equal(st.poll_failures, failures + 1);

    /* leadership lost: polling stops. The timer that sees it is only armed between cycles, so
     * once polling is off no listing is in flight and the log can be reset. */
    fr.leader = false;
    assert_int_equal(tl_run_until(&e, not_polling, c, 10000), 0);
    tl_ctl_ok(gs.sim.port, "POST", "/_sim/reset", "{}");
    tl_run_for(&e, 400);
    assert_int_equal(sim_gets(gs.sim.port, EDGE_LIST, NULL), 0);
    dw_cloud_stats(c, &st);
    assert_false(st.polling);

    /* the budget stretches the cycle: 3 requests at 30/min is one cycle every 6 s; the next
     * cycle is due 6 s after this one started, so a slow cycle still leaves the 2 s below quiet */
    cfg.genesys.rate_budget_per_min = 30;
    fr.leader = true;
    dw_cloud_stats(c, &st);
    sw.polls = st.polls;
    assert_int_equal(tl_run_until(&e, polled_more, &sw, 10000), 0);
    dw_cloud_stats(c, &st);
    assert_int_equal(st.interval_ms, 6000);
    sw.polls = st.polls;
    tl_run_for(&e, 2000);
    assert_false(polled_more(&sw));
    assert_int_equal(sim_gets(gs.sim.port, EDGE_LIST, NULL), 2);

    dw_cloud_close(c);
    dw_cloud_close(idle);
    dw_cloud_close(NULL);

    /* closing with a listing in flight is safe in the shutdown order: poller, client, raft.
     * The simulator holds the new poller's first GET for 5 s: once it is logged, the listing is
     * in flight until well after the close (the abort does not wait for the answer). */
    tl_ctl_ok(gs.sim.port, "POST", "/_sim/faults",
           "{\"kind\":\"latency\",\"latency_ms\":5000,\"method\":\"GET\",\"path\":\"" EDGE_LIST
           "\",\"count\":1}");
    assert_int_equal(dw_cloud_start_sink(&c, &e.loop, &cfg, g, &sink, err, sizeof err), 0);
    struct gets_wait gw = {gs.sim.port, 3};
    assert_int_equal(tl_run_until(&e, edge_gets_reach, &gw, 10000), 0);
    assert_int_equal(sim_gets(gs.sim.port, EDGE_LIST, NULL), 3);
    dw_cloud_close(c);
    dw_genesys_close(g);
    uv_close((uv_handle_t *)&fr.commit, NULL);
    tl_run_for(&e, 50);
    for (int i = 0; i < fr.n && i < 64; i++)
        free(fr.entries[i]);
    tl_loop_close(&e);
    tl_gsim_stop(&gs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_derive),
        cmocka_unit_test(test_interval),
        cmocka_unit_test(test_list_paging),
        cmocka_unit_test(test_json_int_in),
        cmocka_unit_test(test_bad_numbers),
        cmocka_unit_test(test_list_paced),
        cmocka_unit_test(test_poller),
    };

    tl_main_begin();
    return tl_main_end(cmocka_run_group_tests(tests, NULL, tl_kill_all_teardown));
}
