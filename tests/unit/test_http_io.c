/* The libuv/libcurl I/O layer (http, probe, genesys) against the Edge and Genesys simulators
 * (tests/tools/edge_sim.py, genesys_sim.py) run as child processes on loopback.
 * Skipped when python3 is missing. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drwatch/genesys.h"
#include "drwatch/http.h"
#include "drwatch/log.h"
#include "drwatch/probe.h"
#include "testlib.h"

#define PFX "/api/v2/telephony/providers/edges"

/* ---- simulators ---- */

static void edge_start(struct tl_sim *edge, const char *port)
{
    assert_int_equal(tl_sim_start((const char *[]){"edge_sim.py", "--port", port, NULL}, edge), 0);
}

/* ---- raw HTTP ---- */

static void test_http_request(void **state)
{
    struct tl_loop e;
    struct tl_sim edge;
    char url[128], port[8];

    (void)state;
    TL_NEED("python3");
    edge_start(&edge, "0");
    snprintf(url, sizeof url, "http://127.0.0.1:%d/health", edge.port);
    snprintf(port, sizeof port, "%d", edge.port);
    tl_loop_init(&e, 10);

    struct dw_http_opts o = {.method = "GET", .url = url, .timeout_ms = 2000};
    struct tl_http_res h = {0};
    assert_int_equal(dw_http_request(e.m, &o, tl_on_http_res, &h), 0);
    assert_int_equal(tl_run_until(&e, tl_http_res_done, &h, 5000), 0);
    assert_int_equal(h.code, CURLE_OK);
    assert_int_equal(h.status, 200);
    assert_string_equal(h.body, "ok\n");

    /* body limit */
    struct tl_http_res h2 = {0};
    o.max_body = 2;
    assert_int_equal(dw_http_request(e.m, &o, tl_on_http_res, &h2), 0);
    assert_int_equal(tl_run_until(&e, tl_http_res_done, &h2, 5000), 0);
    assert_int_equal(h2.truncated, 1);
    assert_int_equal(h2.status, 200);

    /* timeout against a server that never answers */
    tl_ctl_ok(edge.port, "POST", "/_ctl/mode", "{\"mode\":\"hang\"}");
    struct tl_http_res h3 = {0};
    o.max_body = 0;
    o.timeout_ms = 200;
    assert_int_equal(dw_http_request(e.m, &o, tl_on_http_res, &h3), 0);
    assert_int_equal(tl_run_until(&e, tl_http_res_done, &h3, 5000), 0);
    assert_int_equal(h3.code, CURLE_OPERATION_TIMEDOUT);

    /* a transfer still running at close is aborted and called back */
    struct tl_http_res h4 = {0};
    o.timeout_ms = 5000;
    assert_int_equal(dw_http_request(e.m, &o, tl_on_http_res, &h4), 0);
    uv_run(&e.loop, UV_RUN_ONCE);
    tl_loop_close(&e);
    assert_int_equal(h4.done, 1);
    assert_int_equal(h4.code, CURLE_ABORTED_BY_CALLBACK);
    tl_sim_stop(&edge);
}

/* ---- probes ---- */

struct site_log {
    int n;
    enum dw_health old[16], new[16];
};

static void on_site(void *data, int site, enum dw_health old_state, enum dw_health new_state)
{
    struct site_log *l = data;
    assert_int_equal(site, 0);
    if (l->n < 16) {
        l->old[l->n] = old_state;
        l->new[l->n] = new_state;
    }
    l->n++;
}

struct site_wait {
    struct dw_prober *p;
    enum dw_health want;
};

static int site_is(void *arg)
{
    struct site_wait *w = arg;
    return dw_prober_site(w->p, 0) == w->want;
}

struct failures_wait {
    struct dw_prober *p;
    uint64_t failures;
};

static int failed_enough(void *arg)
{
    struct failures_wait *w = arg;
    struct dw_probe_stats st;

    dw_prober_stats(w->p, &st);
    return st.failures >= w->failures;
}

static void probe_cfg(struct dw_config *cfg, int port)
{
    memset(cfg, 0, sizeof *cfg);
    /* The simulator answers at once; the timeout only rides out a stalled loop or simulator, so
     * the up phases never see fail_threshold failures in a row. */
    cfg->probe.interval_ms = 500;
    cfg->probe.timeout_ms = 500;
    cfg->probe.fail_threshold = 3;
    cfg->probe.recover_threshold = 2;
    static struct dw_site site;
    static struct dw_edge edge;
    static struct dw_probe_spec spec;
    memset(&site, 0, sizeof site);
    memset(&edge, 0, sizeof edge);
    memset(&spec, 0, sizeof spec);
    edge.probes = &spec;
    cfg->sites = &site;
    cfg->n_sites = 1;
    snprintf(cfg->sites[0].id, DW_ID_MAX, "site-a");
    cfg->sites[0].edges = &edge;
    cfg->sites[0].n_edges = 1;
    snprintf(cfg->sites[0].edges[0].id, DW_ID_MAX, "edge-a1");
    snprintf(cfg->sites[0].edges[0].health_url, DW_URL_MAX, "http://127.0.0.1:%d/health", port);
    /* what the parser makes of a health_url */
    edge.n_probes = 1;
    edge.probes[0].kind = DW_PROBE_HTTP;
    edge.probes[0].timeout_ms = cfg->probe.timeout_ms;
    edge.probes[0].verify_tls = true;
    snprintf(edge.probes[0].url, DW_URL_MAX, "%s", edge.health_url);
}

static void test_probe_up_down_up(void **state)
{
    static struct dw_config cfg;
    struct tl_loop e;
    struct tl_sim edge;
    struct site_log log = {0};
    struct dw_prober *p;
    char port[8];

    (void)state;
    TL_NEED("python3");
    edge_start(&edge, "0");
    snprintf(port, sizeof port, "%d", edge.port);
    probe_cfg(&cfg, edge.port);
    tl_loop_init(&e, 10);
    assert_int_equal(dw_prober_start(&p, &e.loop, e.m, &cfg, on_site, &log), 0);

    struct site_wait w = {p, DW_UP};
    assert_int_equal(tl_run_until(&e, site_is, &w, 20000), 0);
    assert_int_equal(dw_prober_edge(p, 0, 0), DW_UP);

    /* failures while the simulator was up: each could only have been a stalled run */
    struct dw_probe_info info;
    assert_int_equal(dw_prober_probe_info(p, 0, 0, 0, &info), 0);
    uint64_t up_failures = info.failures;
    int n_up = log.n;

    tl_sim_stop(&edge);
    w.want = DW_DOWN;
    assert_int_equal(tl_run_until(&e, site_is, &w, 20000), 0);
    assert_int_equal(dw_prober_edge(p, 0, 0), DW_DOWN);

    edge_start(&edge, port);
    w.want = DW_UP;
    assert_int_equal(tl_run_until(&e, site_is, &w, 20000), 0);

    /* One callback per change of the verdict, the first one when it leaves UNKNOWN. With the
     * simulator stopped nothing answers, and the wait stops at the first UP once it is back: the
     * last two phases add exactly UP -> DOWN -> UP. Only the first phase could flap, and only
     * after fail_threshold failures (stalls) before its first UP. */
    if (up_failures < cfg.probe.fail_threshold)
        assert_int_equal(n_up, 1);
    else
        print_message("%llu failures while the simulator was up: %d site changes\n",
                      (unsigned long long)up_failures, log.n);
    assert_true(n_up >= 1 && n_up <= 14);
    assert_int_equal(log.n, n_up + 2);
    assert_int_equal(log.old[0], DW_UNKNOWN);
    for (int i = 1; i < log.n && i < 16; i++) {
        assert_int_equal(log.old[i], log.new[i - 1]);
        assert_int_not_equal(log.old[i], log.new[i]);
    }
    assert_int_equal(log.old[n_up], DW_UP);
    assert_int_equal(log.new[n_up], DW_DOWN);
    assert_int_equal(log.new[log.n - 1], DW_UP);

    struct dw_probe_stats st;
    dw_prober_stats(p, &st);
    assert_true(st.probes >= 7);
    assert_true(st.failures >= 3);
    assert_int_equal(st.errors_bad_response, 0);

    dw_prober_close(p);
    tl_loop_close(&e);
    tl_sim_stop(&edge);
}

static void test_probe_garbage(void **state)
{
    static struct dw_config cfg;
    struct tl_loop e;
    struct tl_sim edge;
    struct site_log log = {0};
    struct dw_prober *p;

    (void)state;
    TL_NEED("python3");
    edge_start(&edge, "0");
    tl_ctl_ok(edge.port, "POST", "/_ctl/mode", "{\"mode\":\"garbage\"}");
    probe_cfg(&cfg, edge.port);
    tl_loop_init(&e, 10);
    assert_int_equal(dw_prober_start(&p, &e.loop, e.m, &cfg, on_site, &log), 0);

    struct site_wait w = {p, DW_DOWN};
    assert_int_equal(tl_run_until(&e, site_is, &w, 20000), 0);
    struct dw_probe_stats st;
    dw_prober_stats(p, &st);
    assert_true(st.errors_bad_response >= 3);
    assert_true(st.failures >= st.errors_bad_response);

    /* a plain 503 is a failure, not a bad response */
    uint64_t bad = st.errors_bad_response;
    tl_ctl_ok(edge.port, "POST", "/_ctl/mode", "{\"mode\":\"status\",\"status\":503}");
    struct failures_wait fw = {p, st.failures + 3};
    assert_int_equal(tl_run_until(&e, failed_enough, &fw, 20000), 0);
    struct dw_probe_stats st2;
    dw_prober_stats(p, &st2);
    assert_true(st2.errors_bad_response <= bad + 1); /* one probe may have been in flight */
    assert_int_equal(dw_prober_site(p, 0), DW_DOWN);

    tl_ctl_ok(edge.port, "POST", "/_ctl/mode", "{\"mode\":\"ok\"}");
    w.want = DW_UP;
    assert_int_equal(tl_run_until(&e, site_is, &w, 20000), 0);

    /* closing with a probe possibly in flight leaves nothing behind */
    dw_prober_close(p);
    tl_loop_close(&e);
    tl_sim_stop(&edge);
}

/* ---- Genesys ---- */

static const char FIXTURE[] =
    "{\"client_id\":\"drwatch-test\",\"client_secret\":\"s3cret\",\n"
    " \"sites\":[{\"id\":\"site-a\"},{\"id\":\"site-b\"}],\n"
    " \"edges\":[{\"id\":\"edge-a1\",\"site\":\"site-a\"},\n"
    "           {\"id\":\"edge-b1\",\"site\":\"site-b\"},\n"
    "           {\"id\":\"edge-b2\",\"site\":\"site-b\"}],\n"
    " \"trunk_bases\":[{\"id\":\"tbA\",\"enabled\":true,\"edges\":[\"edge-a1\"]},\n"
    "                 {\"id\":\"tbB\",\"enabled\":false,\"edges\":[\"edge-b1\",\"edge-b2\"]},\n"
    "                 {\"id\":\"tbM\",\"managed\":true,\"enabled\":false,\"edges\":[]}]}\n";

static void gsim_reset(struct tl_gsim *g)
{
    tl_ctl_ok(g->sim.port, "POST", "/_sim/reset", "{}");
}

static void gsim_fault(struct tl_gsim *g, const char *json)
{
    tl_ctl_ok(g->sim.port, "POST", "/_sim/faults", json);
}

/* A logged request with this method and path suffix. */
static bool req_is(const cJSON *r, const char *method, const char *path_suffix)
{
    const char *m = cJSON_GetObjectItem(r, "method")->valuestring;
    const char *p = cJSON_GetObjectItem(r, "path")->valuestring;
    size_t lp = strlen(p), ls = strlen(path_suffix);
    return strcmp(m, method) == 0 && lp >= ls && strcmp(p + lp - ls, path_suffix) == 0;
}

/* Requests since the last reset matching method and a path suffix; times in *t (up to 8). */
static int gsim_count(struct tl_gsim *g, const char *method, const char *path_suffix, double *t)
{
    cJSON *j = tl_ctl(g->sim.port, "GET", "/_sim/requests", NULL);
    const cJSON *r;
    int n = 0;

    assert_non_null(j);
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(j, "requests")) {
        if (req_is(r, method, path_suffix)) {
            if (t != NULL && n < 8)
                t[n] = cJSON_GetObjectItem(r, "t")->valuedouble;
            n++;
        }
    }
    cJSON_Delete(j);
    return n;
}

/* A header of the first request matching method and path suffix, copied, or NULL. */
static char *gsim_header(struct tl_gsim *g, const char *method, const char *path_suffix,
                         const char *name)
{
    cJSON *j = tl_ctl(g->sim.port, "GET", "/_sim/requests", NULL);
    const cJSON *r;
    char *out = NULL;

    assert_non_null(j);
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(j, "requests")) {
        if (out == NULL && req_is(r, method, path_suffix)) {
            const cJSON *h = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "headers"), name);
            out = cJSON_IsString(h) ? strdup(h->valuestring) : NULL;
        }
    }
    cJSON_Delete(j);
    return out;
}

static int gsim_enabled(struct tl_gsim *g, const char *id)
{
    cJSON *j = tl_ctl(g->sim.port, "GET", "/_sim/state", NULL);
    assert_non_null(j);
    const cJSON *b = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "trunk_bases"), id);
    int v = cJSON_IsTrue(cJSON_GetObjectItem(b, "enabled"));
    cJSON_Delete(j);
    return v;
}

struct gets_wait {
    struct tl_gsim *g;
    int n;
};

static int trunk_gets_reach(void *arg)
{
    struct gets_wait *w = arg;
    return gsim_count(w->g, "GET", "/trunks", NULL) >= w->n;
}

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

static int gres_done(void *arg)
{
    return ((struct gres *)arg)->done > 0;
}

/* The login base with a trailing slash, which the client strips. */
static struct dw_genesys *genesys_new(struct tl_loop *e, struct tl_gsim *gs, const char *secret)
{
    char login[80];

    snprintf(login, sizeof login, "%s/", gs->base);
    return tl_genesys_new(e, gs->base, login, secret);
}

static void set_enabled(struct tl_loop *e, struct dw_genesys *g, const char *id, bool on,
                        struct gres *res)
{
    memset(res, 0, sizeof *res);
    assert_int_equal(dw_genesys_set_trunk_base_enabled(g, id, on, &tl_open_fence, on_gres, res), 0);
    assert_int_equal(tl_run_until(e, gres_done, res, 10000), 0);
    assert_int_equal(res->done, 1);
}

static void check_trunks(struct tl_loop *e, struct dw_genesys *g, const char *id, struct gres *res)
{
    memset(res, 0, sizeof *res);
    assert_int_equal(dw_genesys_check_trunks(g, id, on_gres, res), 0);
    assert_int_equal(tl_run_until(e, gres_done, res, 10000), 0);
    assert_int_equal(res->done, 1);
}

static void test_genesys_set_and_check(void **state)
{
    struct tl_loop e;
    struct tl_gsim gs;
    struct gres res;
    struct dw_genesys_stats st;

    (void)state;
    TL_NEED("python3");
    tl_gsim_start(&gs, FIXTURE);
    tl_loop_init(&e, 10);
    struct dw_genesys *g = genesys_new(&e, &gs, "s3cret");

    /* OAuth, then GET + one PUT */
    set_enabled(&e, g, "tbB", true, &res);
    assert_int_equal(res.r, DW_G_OK);
    assert_non_null(strstr(res.detail, "trunk_enabled=true -> 200 (version 1->2)"));
    assert_int_equal(gsim_count(&gs, "POST", "/oauth/token", NULL), 1);
    assert_int_equal(gsim_count(&gs, "PUT", "/trunkbasesettings/tbB", NULL), 1);
    assert_true(gsim_enabled(&gs, "tbB"));

    /* already so: no PUT, no new token */
    gsim_reset(&gs);
    set_enabled(&e, g, "tbB", true, &res);
    assert_int_equal(res.r, DW_G_UNCHANGED);
    assert_non_null(strstr(res.detail, "already true, version 2"));
    assert_int_equal(gsim_count(&gs, "GET", "/trunkbasesettings/tbB", NULL), 1);
    assert_int_equal(gsim_count(&gs, "PUT", "/trunkbasesettings/tbB", NULL), 0);
    assert_int_equal(gsim_count(&gs, "POST", "/oauth/token", NULL), 0);

    /* both trunks of tbB connected */
    check_trunks(&e, g, "tbB", &res);
    assert_int_equal(res.r, DW_G_OK);
    assert_non_null(strstr(res.detail, "2/2"));

    /* one Edge offline: not yet */
    tl_ctl_ok(gs.sim.port, "POST", "/_sim/set_edge", "{\"id\":\"edge-b2\",\"online\":false}");
    check_trunks(&e, g, "tbB", &res);
    assert_int_equal(res.r, DW_G_NOT_YET);
    assert_non_null(strstr(res.detail, "1/2"));

    /* no trunks at all */
    check_trunks(&e, g, "tbM", &res);
    assert_int_equal(res.r, DW_G_NOT_YET);

    /* 409: re-read and PUT again */
    gsim_reset(&gs);
    gsim_fault(&gs, "{\"kind\":\"409\",\"method\":\"PUT\",\"path_prefix\":\"" PFX
                    "/trunkbasesettings/tbA\",\"count\":1}");
    set_enabled(&e, g, "tbA", false, &res);
    assert_int_equal(res.r, DW_G_OK);
    assert_int_equal(gsim_count(&gs, "GET", "/trunkbasesettings/tbA", NULL), 2);
    assert_int_equal(gsim_count(&gs, "PUT", "/trunkbasesettings/tbA", NULL), 2);
    assert_false(gsim_enabled(&gs, "tbA"));
    check_trunks(&e, g, "tbA", &res);
    assert_int_equal(res.r, DW_G_NOT_YET);
    assert_non_null(strstr(res.detail, "not in service"));

    /* 429 with Retry-After 10 s, scaled to 100 ms (the 3 s default would give 30 ms) */
    gsim_reset(&gs);
    gsim_fault(&gs, "{\"kind\":\"429\",\"method\":\"GET\",\"path_prefix\":\"" PFX
                    "/trunkbasesettings/tbA\",\"retry_after_s\":10,\"count\":1}");
    double t[8];
    set_enabled(&e, g, "tbA", true, &res);
    assert_int_equal(res.r, DW_G_OK);
    assert_int_equal(gsim_count(&gs, "GET", "/trunkbasesettings/tbA", t), 2);
    assert_true(t[1] - t[0] >= 0.095);

    /* 503 twice, then OK */
    gsim_reset(&gs);
    gsim_fault(&gs, "{\"kind\":\"status\",\"status\":503,\"path_prefix\":\"" PFX
                    "/trunks\",\"count\":2}");
    check_trunks(&e, g, "tbA", &res);
    assert_int_equal(res.r, DW_G_OK);
    assert_int_equal(gsim_count(&gs, "GET", "/trunks", NULL), 3);

    /* expired token: one new token, the call retried once */
    dw_genesys_stats(g, &st);
    uint64_t fetches = st.token_fetches;
    gsim_reset(&gs);
    gsim_fault(&gs, "{\"kind\":\"expire_token\",\"path_prefix\":\"" PFX "/trunks\",\"count\":1}");
    check_trunks(&e, g, "tbA", &res);
    assert_int_equal(res.r, DW_G_OK);
    assert_int_equal(gsim_count(&gs, "POST", "/oauth/token", NULL), 1);
    assert_int_equal(gsim_count(&gs, "GET", "/trunks", NULL), 2);
    dw_genesys_stats(g, &st);
    assert_int_equal(st.token_fetches, fetches + 1);

    /* permanent errors carry the Genesys code */
    set_enabled(&e, g, "tbM", true, &res);
    assert_int_equal(res.r, DW_G_FAIL);
    assert_non_null(strstr(res.detail, "400 bad.request"));
    set_enabled(&e, g, "nope/../x", true, &res);
    assert_int_equal(res.r, DW_G_FAIL);
    assert_non_null(strstr(res.detail, "404"));

    /* Retry-After above 180 s: give up at once, as something that may pass (the caller may
     * try again later), unlike the permanent errors above */
    gsim_reset(&gs);
    gsim_fault(&gs, "{\"kind\":\"429\",\"path_prefix\":\"" PFX
                    "/trunks\",\"retry_after_s\":600,\"count\":1}");
    check_trunks(&e, g, "tbA", &res);
    assert_int_equal(res.r, DW_G_TRANSIENT);
    assert_int_equal(gsim_count(&gs, "GET", "/trunks", NULL), 1);

    /* dropped connection: a transport error, retried */
    gsim_reset(&gs);
    /* two drops: curl itself retries once when a reused connection dies silently */
    gsim_fault(&gs, "{\"kind\":\"drop\",\"path_prefix\":\"" PFX "/trunks\",\"count\":2}");
    check_trunks(&e, g, "tbA", &res);
    assert_int_equal(res.r, DW_G_OK);
    assert_int_equal(gsim_count(&gs, "GET", "/trunks", NULL), 3);
    dw_genesys_stats(g, &st);
    assert_true(st.transport_errors >= 1);

    /* 503 forever: 5 retries, then TRANSIENT */
    gsim_reset(&gs);
    gsim_fault(&gs, "{\"kind\":\"status\",\"status\":503,\"path_prefix\":\"" PFX
                    "/trunks\",\"count\":-1}");
    check_trunks(&e, g, "tbA", &res);
    assert_int_equal(res.r, DW_G_TRANSIENT);
    assert_int_equal(gsim_count(&gs, "GET", "/trunks", NULL), 6);
    gsim_reset(&gs);

    dw_genesys_stats(g, &st);
    assert_int_equal(st.conflicts_409, 1);
    assert_int_equal(st.responses_429, 2);
    assert_int_equal(st.responses_5xx, 8);
    assert_int_equal(st.bad_responses, 0);

    dw_genesys_close(g);
    tl_loop_close(&e);
    tl_gsim_stop(&gs);
}

/* A 200 that is not JSON: the API base points at the Edge simulator's text health page. */
static void test_genesys_garbage(void **state)
{
    struct tl_loop e;
    struct tl_gsim gs;
    struct tl_sim edge;
    struct gres res;
    struct dw_genesys_cfg cfg;
    struct dw_genesys *g;
    struct dw_genesys_stats st;
    char err[256];

    (void)state;
    TL_NEED("python3");
    tl_gsim_start(&gs, FIXTURE);
    edge_start(&edge, "0");
    tl_loop_init(&e, 10);
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.api_base_url, sizeof cfg.api_base_url, "http://127.0.0.1:%d/health?x=",
             edge.port);
    snprintf(cfg.login_base_url, sizeof cfg.login_base_url, "%s", gs.base);
    snprintf(cfg.client_id, sizeof cfg.client_id, "drwatch-test");
    assert_int_equal(dw_genesys_init(&g, &e.loop, e.m, &cfg, "s3cret", err, sizeof err), 0);

    set_enabled(&e, g, "tbA", true, &res);
    assert_int_equal(res.r, DW_G_FAIL);
    assert_non_null(strstr(res.detail, "-> 200: invalid JSON"));
    check_trunks(&e, g, "tbA", &res);
    assert_int_equal(res.r, DW_G_FAIL);
    dw_genesys_stats(g, &st);
    assert_int_equal(st.bad_responses, 2);

    dw_genesys_close(g);
    tl_loop_close(&e);
    tl_sim_stop(&edge);
    tl_gsim_stop(&gs);
}

static void test_genesys_shared_token_and_close(void **state)
{
    struct tl_loop e;
    struct tl_gsim gs;
    struct gres r[3];

    (void)state;
    TL_NEED("python3");
    tl_gsim_start(&gs, FIXTURE);
    tl_loop_init(&e, 10);

    /* three calls at once share one token request */
    struct dw_genesys *g = genesys_new(&e, &gs, "s3cret");
    memset(r, 0, sizeof r);
    for (int i = 0; i < 3; i++)
        assert_int_equal(dw_genesys_check_trunks(g, "tbA", on_gres, &r[i]), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tl_run_until(&e, gres_done, &r[i], 10000), 0);
        assert_int_equal(r[i].r, DW_G_OK);
    }
    assert_int_equal(gsim_count(&gs, "POST", "/oauth/token", NULL), 1);

    /* close with a call in flight: it fails with "client closed" before close returns. The
     * simulator holds the request 5 s; once it has logged it, the call is in flight. */
    gsim_fault(&gs, "{\"kind\":\"latency\",\"latency_ms\":5000,\"path_prefix\":\"" PFX
                    "/trunks\",\"count\":1}");
    memset(r, 0, sizeof r);
    struct gets_wait gw = {&gs, gsim_count(&gs, "GET", "/trunks", NULL) + 1};
    assert_int_equal(dw_genesys_check_trunks(g, "tbA", on_gres, &r[0]), 0);
    assert_int_equal(tl_run_until(&e, trunk_gets_reach, &gw, 10000), 0);
    assert_int_equal(r[0].done, 0);
    dw_genesys_close(g);
    assert_int_equal(r[0].done, 1);
    assert_int_equal(r[0].r, DW_G_FAIL);
    assert_string_equal(r[0].detail, "client closed");

    /* wrong secret: the token error is reported, the secret is not */
    g = genesys_new(&e, &gs, "wrong-secret");
    memset(r, 0, sizeof r);
    assert_int_equal(dw_genesys_check_trunks(g, "tbA", on_gres, &r[0]), 0);
    assert_int_equal(tl_run_until(&e, gres_done, &r[0], 10000), 0);
    assert_int_equal(r[0].r, DW_G_FAIL);
    assert_non_null(strstr(r[0].detail, "401"));
    assert_null(strstr(r[0].detail, "wrong-secret"));
    dw_genesys_close(g);

    tl_loop_close(&e);
    tl_gsim_stop(&gs);
}

/* ---- fencing: the token is checked right before every request a write sends ---- */

/* A request matching method and path suffix in the simulator's log has key set (e.g. "held"
 * while blocked by a hold fault) or, with status > 0, was answered with it. */
struct sim_req_wait {
    struct tl_gsim *g;
    const char *method, *suffix;
    int status; /* 0: wait for "held" */
};

static int sim_req_seen(void *arg)
{
    struct sim_req_wait *w = arg;
    cJSON *j = tl_ctl(w->g->sim.port, "GET", "/_sim/requests", NULL);
    const cJSON *r;
    int found = 0;

    assert_non_null(j);
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(j, "requests")) {
        if (!req_is(r, w->method, w->suffix))
            continue;
        const cJSON *st = cJSON_GetObjectItem(r, "status");
        if (w->status == 0 ? cJSON_IsTrue(cJSON_GetObjectItem(r, "held"))
                           : cJSON_IsNumber(st) && st->valueint == w->status)
            found = 1;
    }
    cJSON_Delete(j);
    return found;
}

static void await_sim(struct tl_loop *e, struct tl_gsim *gs, const char *method,
                      const char *suffix, int status)
{
    struct sim_req_wait w = {gs, method, suffix, status};
    assert_int_equal(tl_run_until(e, sim_req_seen, &w, 10000), 0);
}

static void start_set(struct dw_genesys *g, const char *id, struct tl_fence_ctl *fc,
                      struct gres *res)
{
    struct dw_fence f = {.node = 2, .term = 7, .op = 3, .seq = 0, .valid = tl_fence_flag, .data = fc};
    memset(res, 0, sizeof *res);
    fc->ok = true;
    assert_int_equal(dw_genesys_set_trunk_base_enabled(g, id, true, &f, on_gres, res), 0);
}

static void test_genesys_fencing(void **state)
{
    struct tl_loop e;
    struct tl_gsim gs;
    struct gres res, chk;
    struct tl_fence_ctl fc = {true, 0};
    struct dw_genesys_stats st;

    (void)state;
    TL_NEED("python3");
    tl_gsim_start(&gs, FIXTURE);
    tl_loop_init(&e, 10);
    struct dw_genesys *g = genesys_new(&e, &gs, "s3cret");

    /* no fence, no write */
    assert_int_equal(dw_genesys_set_trunk_base_enabled(g, "tbB", true, NULL, on_gres, &res), -1);

    /* Deposed while the read-first GET is in flight: its answer leads to no PUT. */
    gsim_fault(&gs, "{\"kind\":\"hold\",\"method\":\"GET\",\"path_prefix\":\"" PFX
                    "/trunkbasesettings/tbB\",\"count\":1}");
    start_set(g, "tbB", &fc, &res);
    await_sim(&e, &gs, "GET", "/trunkbasesettings/tbB", 0);
    fc.ok = false;
    tl_ctl_ok(gs.sim.port, "POST", "/_sim/release", "{}");
    assert_int_equal(tl_run_until(&e, gres_done, &res, 10000), 0);
    assert_int_equal(res.r, DW_G_FENCED);
    assert_non_null(strstr(res.detail, "test says no"));
    assert_non_null(strstr(res.detail, "term 7, op 3, step 0"));
    assert_int_equal(gsim_count(&gs, "PUT", "/trunkbasesettings/tbB", NULL), 0);
    assert_false(gsim_enabled(&gs, "tbB"));

    /* A PUT parked behind a token refresh (its first try drew a 401) is checked again when the
     * token arrives: deposed meanwhile, it is never sent again. */
    gsim_reset(&gs);
    gsim_fault(&gs, "{\"kind\":\"expire_token\",\"method\":\"PUT\",\"path_prefix\":\"" PFX
                    "/trunkbasesettings/tbB\",\"count\":1}");
    gsim_fault(&gs, "{\"kind\":\"hold\",\"method\":\"POST\",\"path_prefix\":\"/oauth/token\","
                    "\"count\":1}");
    start_set(g, "tbB", &fc, &res);
    await_sim(&e, &gs, "POST", "/oauth/token", 0);
    assert_int_equal(gsim_count(&gs, "PUT", "/trunkbasesettings/tbB", NULL), 1);
    fc.ok = false;
    tl_ctl_ok(gs.sim.port, "POST", "/_sim/release", "{}");
    assert_int_equal(tl_run_until(&e, gres_done, &res, 10000), 0);
    assert_int_equal(res.r, DW_G_FENCED);
    assert_int_equal(gsim_count(&gs, "PUT", "/trunkbasesettings/tbB", NULL), 1);
    assert_false(gsim_enabled(&gs, "tbB"));

    /* Deposed during a 503 back-off (3 s at real scale): the retry is never sent. */
    gsim_reset(&gs);
    dw_genesys_set_backoff_scale(g, 1.0);
    gsim_fault(&gs, "{\"kind\":\"status\",\"status\":503,\"method\":\"GET\",\"path_prefix\":\"" PFX
                    "/trunkbasesettings/tbB\",\"count\":1}");
    start_set(g, "tbB", &fc, &res);
    await_sim(&e, &gs, "GET", "/trunkbasesettings/tbB", 503);
    fc.ok = false;
    assert_int_equal(tl_run_until(&e, gres_done, &res, 10000), 0);
    assert_int_equal(res.r, DW_G_FENCED);
    assert_int_equal(gsim_count(&gs, "GET", "/trunkbasesettings/tbB", NULL), 1);
    dw_genesys_set_backoff_scale(g, 0.01);

    /* Leadership lost with a write in flight: it ends at once, its answer is ignored, and a
     * read (verify) in flight is left alone. */
    gsim_reset(&gs);
    gsim_fault(&gs, "{\"kind\":\"hold\",\"method\":\"GET\",\"path_prefix\":\"" PFX
                    "/trunkbasesettings/tbB\",\"count\":1}");
    start_set(g, "tbB", &fc, &res);
    memset(&chk, 0, sizeof chk);
    assert_int_equal(dw_genesys_check_trunks(g, "tbA", on_gres, &chk), 0);
    await_sim(&e, &gs, "GET", "/trunkbasesettings/tbB", 0);
    dw_genesys_cancel_writes(g, "leadership lost");
    assert_int_equal(res.done, 1);
    assert_int_equal(res.r, DW_G_FENCED);
    assert_non_null(strstr(res.detail, "cancelled: leadership lost"));
    tl_ctl_ok(gs.sim.port, "POST", "/_sim/release", "{}");
    await_sim(&e, &gs, "GET", "/trunkbasesettings/tbB", 200);
    assert_int_equal(tl_run_until(&e, gres_done, &chk, 10000), 0);
    assert_int_equal(chk.r, DW_G_OK);
    assert_int_equal(res.done, 1);
    assert_int_equal(gsim_count(&gs, "PUT", "/trunkbasesettings/tbB", NULL), 0);

    /* A valid token: the write goes through, asked before each request (GET, PUT). */
    gsim_reset(&gs);
    fc.asked = 0;
    start_set(g, "tbB", &fc, &res);
    assert_int_equal(tl_run_until(&e, gres_done, &res, 10000), 0);
    assert_int_equal(res.r, DW_G_OK);
    assert_true(fc.asked >= 2);
    assert_true(gsim_enabled(&gs, "tbB"));
    /* Both requests name the writer and its token, so the API side can check fencing. */
    char *h = gsim_header(&gs, "PUT", "/trunkbasesettings/tbB", "X-Drwatch-Fence");
    assert_non_null(h);
    assert_string_equal(h, "node=2 term=7 op=3 step=0");
    free(h);
    h = gsim_header(&gs, "GET", "/trunkbasesettings/tbB", "X-Drwatch-Fence");
    assert_non_null(h);
    free(h);

    dw_genesys_stats(g, &st);
    assert_int_equal(st.fenced, 4);

    dw_genesys_close(g);
    tl_loop_close(&e);
    tl_gsim_stop(&gs);
}

/* ---- actions: switch with read back, routes, Edge service ---- */

static const char ACT_FIXTURE[] =
    "{\"client_id\":\"drwatch-test\",\"client_secret\":\"s3cret\",\n"
    " \"sites\":[{\"id\":\"gs-b\"}],\n"
    " \"edges\":[{\"id\":\"edge-b1\",\"site\":\"gs-b\"}],\n"
    " \"trunk_bases\":[{\"id\":\"tbA\",\"enabled\":true,\"edges\":[]},\n"
    "                 {\"id\":\"tbB\",\"enabled\":false,\"edges\":[\"edge-b1\"]},\n"
    "                 {\"id\":\"tbX\",\"enabled\":true,\"edges\":[]}],\n"
    " \"outbound_routes\":[{\"id\":\"r1\",\"site\":\"gs-b\",\"externalTrunkBases\":"
    "[\"tbA\",\"tbX\",\"tbB\"]},\n"
    "                     {\"id\":\"r2\",\"site\":\"gs-b\",\"enabled\":true,"
    "\"externalTrunkBases\":[\"tbB\"]}]}\n";

/* The compact JSON body of the first logged request matching method and path suffix. */
static char *gsim_body(struct tl_gsim *g, const char *method, const char *path_suffix)
{
    cJSON *j = tl_ctl(g->sim.port, "GET", "/_sim/requests", NULL);
    const cJSON *r;
    char *out = NULL;

    assert_non_null(j);
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(j, "requests")) {
        if (out == NULL && req_is(r, method, path_suffix))
            out = cJSON_PrintUnformatted(cJSON_GetObjectItem(r, "body"));
    }
    cJSON_Delete(j);
    assert_non_null(out);
    return out;
}

/* The route's trunk base ids as the simulator holds them, "tbB,tbA". */
static void gsim_route(struct tl_gsim *g, const char *id, char *out, size_t len)
{
    cJSON *j = tl_ctl(g->sim.port, "GET", "/_sim/state", NULL);
    const cJSON *r = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "routes"), id), *tb;
    size_t o = 0;
    out[0] = '\0';
    cJSON_ArrayForEach(tb, cJSON_GetObjectItem(r, "externalTrunkBases"))
        o += (size_t)snprintf(out + o, len - o, "%s%s", o ? "," : "", tb->valuestring);
    cJSON_Delete(j);
}

static const char (*const ACT_TBS)[DW_ID_MAX] = (const char[][DW_ID_MAX]){"tbB", "tbA"};

static void act_route(struct tl_loop *e, struct dw_genesys *g, const char *route,
                      enum dw_route_mode mode, bool on, int n_tbs, const struct dw_fence *f,
                      struct gres *res)
{
    memset(res, 0, sizeof *res);
    assert_int_equal(dw_genesys_set_route(g, "gs-b", route, mode, on, ACT_TBS, n_tbs, f, on_gres,
                                          res), 0);
    assert_int_equal(tl_run_until(e, gres_done, res, 10000), 0);
    assert_int_equal(res->done, 1);
}

static void act_edge(struct tl_loop *e, struct dw_genesys *g, bool on, struct gres *res)
{
    memset(res, 0, sizeof *res);
    assert_int_equal(dw_genesys_set_edge_service(g, "edge-b1", on, 120, &tl_open_fence, on_gres,
                                                 res), 0);
    assert_int_equal(tl_run_until(e, gres_done, res, 10000), 0);
    assert_int_equal(res->done, 1);
}

static void test_genesys_actions(void **state)
{
    struct tl_loop e;
    struct tl_gsim gs;
    struct gres res;
    struct tl_fence_ctl fc = {true, 0};
    struct dw_fence f = {.node = 2, .term = 7, .op = 3, .seq = 1, .valid = tl_fence_flag, .data = &fc};
    struct dw_genesys_stats st;
    char order[64], *b;

    (void)state;
    TL_NEED("python3");
    tl_gsim_start(&gs, ACT_FIXTURE);
    tl_loop_init(&e, 10);
    struct dw_genesys *g = genesys_new(&e, &gs, "s3cret");

    /* a trunk base switch reads back after its PUT; already so, it only reads */
    memset(&res, 0, sizeof res);
    assert_int_equal(dw_genesys_switch_trunk_base(g, "tbB", true, &tl_open_fence, on_gres, &res),
                     0);
    assert_int_equal(tl_run_until(&e, gres_done, &res, 10000), 0);
    assert_int_equal(res.r, DW_G_OK);
    assert_non_null(strstr(res.detail, "-> 200 (version 1->2); read back: trunk_enabled true"));
    assert_int_equal(gsim_count(&gs, "GET", "/trunkbasesettings/tbB", NULL), 2);
    assert_int_equal(gsim_count(&gs, "PUT", "/trunkbasesettings/tbB", NULL), 1);
    gsim_reset(&gs);
    memset(&res, 0, sizeof res);
    assert_int_equal(dw_genesys_switch_trunk_base(g, "tbB", true, &tl_open_fence, on_gres, &res),
                     0);
    assert_int_equal(tl_run_until(&e, gres_done, &res, 10000), 0);
    assert_int_equal(res.r, DW_G_UNCHANGED);
    assert_int_equal(gsim_count(&gs, "GET", "/trunkbasesettings/tbB", NULL), 1);

    /* route order: the target's bases first, the rest after in their order; GET, PUT, GET;
     * the PUT carries the fence and the version read */
    gsim_reset(&gs);
    act_route(&e, g, "r1", DW_ROUTE_ORDER, true, 2, &f, &res);
    assert_int_equal(res.r, DW_G_OK);
    assert_string_equal(res.detail, "PUT route gs-b/r1 trunk bases first -> 200 (version 1->2); "
                                    "read back ok");
    gsim_route(&gs, "r1", order, sizeof order);
    assert_string_equal(order, "tbB,tbA,tbX");
    assert_int_equal(gsim_count(&gs, "GET", "/outboundroutes/r1", NULL), 2);
    assert_int_equal(gsim_count(&gs, "PUT", "/outboundroutes/r1", NULL), 1);
    char *h = gsim_header(&gs, "PUT", "/outboundroutes/r1", "X-Drwatch-Fence");
    assert_string_equal(h, "node=2 term=7 op=3 step=1");
    free(h);
    b = gsim_body(&gs, "PUT", "/outboundroutes/r1");
    assert_non_null(strstr(b, "\"version\":1"));
    free(b);
    /* already so, and deactivating an "order" route: read only */
    gsim_reset(&gs);
    act_route(&e, g, "r1", DW_ROUTE_ORDER, true, 2, &f, &res);
    assert_int_equal(res.r, DW_G_UNCHANGED);
    act_route(&e, g, "r1", DW_ROUTE_ORDER, false, 2, &f, &res);
    assert_int_equal(res.r, DW_G_UNCHANGED);
    assert_int_equal(gsim_count(&gs, "PUT", "/outboundroutes/r1", NULL), 0);
    /* 409: read again, PUT again with the new version */
    gsim_reset(&gs);
    gsim_fault(&gs, "{\"kind\":\"409\",\"method\":\"PUT\",\"path_prefix\":\"" PFX
                    "/sites/gs-b/outboundroutes/r1\",\"count\":1}");
    act_route(&e, g, "r1", DW_ROUTE_ENABLED, false, 2, &f, &res);
    assert_int_equal(res.r, DW_G_OK);
    assert_int_equal(gsim_count(&gs, "PUT", "/outboundroutes/r1", NULL), 2);
    assert_int_equal(gsim_count(&gs, "GET", "/outboundroutes/r1", NULL), 3);
    dw_genesys_stats(g, &st);
    assert_int_equal(st.conflicts_409, 1);
    /* a route lacking one of the target's bases is refused, never extended */
    gsim_reset(&gs);
    act_route(&e, g, "r2", DW_ROUTE_ORDER, true, 2, &f, &res);
    assert_int_equal(res.r, DW_G_FAIL);
    assert_non_null(strstr(res.detail, "route gs-b/r2: the route does not list trunk base tbA"));
    assert_int_equal(gsim_count(&gs, "PUT", "/outboundroutes/r2", NULL), 0);
    /* mode enabled: off, read back */
    act_route(&e, g, "r2", DW_ROUTE_ENABLED, false, 2, &f, &res);
    assert_int_equal(res.r, DW_G_OK);
    b = gsim_body(&gs, "PUT", "/outboundroutes/r2");
    assert_non_null(strstr(b, "\"enabled\":false"));
    free(b);
    act_route(&e, g, "r2", DW_ROUTE_ENABLED, false, 2, &f, &res);
    assert_int_equal(res.r, DW_G_UNCHANGED);

    /* a fenced route write sends nothing */
    gsim_reset(&gs);
    fc.ok = false;
    act_route(&e, g, "r2", DW_ROUTE_ENABLED, true, 2, &f, &res);
    assert_int_equal(res.r, DW_G_FENCED);
    assert_non_null(strstr(res.detail, "GET sites/gs-b/outboundroutes/r2 not sent"));
    assert_int_equal(gsim_count(&gs, "GET", "/outboundroutes/r2", NULL), 0);
    fc.ok = true;

    /* leadership lost while the route's read is held: cancelled, named by its path */
    gsim_fault(&gs, "{\"kind\":\"hold\",\"method\":\"GET\",\"path_prefix\":\"" PFX
                    "/sites/gs-b/outboundroutes/r2\",\"count\":1}");
    memset(&res, 0, sizeof res);
    assert_int_equal(dw_genesys_set_route(g, "gs-b", "r2", DW_ROUTE_ENABLED, true, ACT_TBS, 2, &f,
                                          on_gres, &res), 0);
    await_sim(&e, &gs, "GET", "/outboundroutes/r2", 0);
    dw_genesys_cancel_writes(g, "leadership lost");
    assert_int_equal(res.r, DW_G_FENCED);
    assert_string_equal(res.detail, "sites/gs-b/outboundroutes/r2: cancelled: leadership lost");
    tl_ctl_ok(gs.sim.port, "POST", "/_sim/release", "{}");
    await_sim(&e, &gs, "GET", "/outboundroutes/r2", 200);
    assert_int_equal(gsim_count(&gs, "PUT", "/outboundroutes/r2", NULL), 0);

    /* Edge drain: GET, POST with the wait, GET shows the drain; then back in service */
    gsim_reset(&gs);
    act_edge(&e, g, false, &res);
    assert_int_equal(res.r, DW_G_OK);
    assert_non_null(strstr(res.detail, "POST edge-b1/statuscode inService=false drain 120 s -> 204; "
                                       "read back: callDrainingState COMPLETE"));
    b = gsim_body(&gs, "POST", "/edge-b1/statuscode");
    assert_string_equal(b, "{\"inService\":false,\"callDrainingWaitTimeSeconds\":120}");
    free(b);
    assert_int_equal(gsim_count(&gs, "GET", "/edge-b1", NULL), 2);
    h = gsim_header(&gs, "POST", "/edge-b1/statuscode", "X-Drwatch-Fence");
    assert_non_null(h);
    free(h);
    act_edge(&e, g, false, &res);
    assert_int_equal(res.r, DW_G_UNCHANGED);
    assert_non_null(strstr(res.detail, "Edge edge-b1 already out of service"));
    act_edge(&e, g, true, &res);
    assert_int_equal(res.r, DW_G_OK);
    assert_int_equal(gsim_count(&gs, "POST", "/edge-b1/statuscode", NULL), 2);

    /* garbage is counted and fails the call */
    gsim_reset(&gs);
    gsim_fault(&gs, "{\"kind\":\"body\",\"path_prefix\":\"" PFX
                    "/edge-b1\",\"body\":\"{\\\"callDrainingState\\\":7}\",\"count\":1}");
    act_edge(&e, g, true, &res);
    assert_int_equal(res.r, DW_G_FAIL);
    dw_genesys_stats(g, &st);
    assert_int_equal(st.bad_responses, 1);
    gsim_reset(&gs);

    dw_genesys_close(g);
    tl_loop_close(&e);
    tl_gsim_stop(&gs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_request),
        cmocka_unit_test(test_probe_up_down_up),
        cmocka_unit_test(test_probe_garbage),
        cmocka_unit_test(test_genesys_set_and_check),
        cmocka_unit_test(test_genesys_garbage),
        cmocka_unit_test(test_genesys_shared_token_and_close),
        cmocka_unit_test(test_genesys_fencing),
        cmocka_unit_test(test_genesys_actions),
    };

    tl_main_begin();
    return tl_main_end(cmocka_run_group_tests(tests, NULL, tl_kill_all_teardown));
}
