/* The prober on its own libuv loop against local targets on 127.0.0.1: HTTP(S) with expected
 * status, body match, CA/self-signed/client certificates (made here with the openssl CLI and
 * served by tests/tools/tls_http_server.py), TCP connect, SIP OPTIONS against sipp (skipped
 * when sipp is missing), Edges with several probes and the site rules any/all/at_least. */
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "drwatch/http.h"
#include "drwatch/log.h"
#include "drwatch/probe.h"
#include "testlib.h"

/* ---- servers ---- */

static int http_server(struct tl_sim *c, const char *cert, const char *key, const char *client_ca)
{
    const char *argv[] = {"tls_http_server.py", "--cert", cert, "--key", key,
                          "--client-ca", client_ca, NULL};

    if (client_ca == NULL)
        argv[5] = NULL;
    if (cert == NULL) /* plain HTTP */
        argv[1] = NULL;
    return tl_sim_start(argv, c);
}

/* ---- certificates ---- */

static char tmpdir[256];

static const char *tpath(const char *name)
{
    static char bufs[8][512];
    static int i;
    char *b = bufs[i++ % 8];
    snprintf(b, 512, "%s/%s", tmpdir, name);
    return b;
}

/* ---- group state ---- */

static int have_tools;
static struct tl_sim srv_plain, srv_ca, srv_self, srv_mtls;

static int group_setup(void **state)
{
    (void)state;
    dw_log_set_level(getenv("DW_TEST_LOG") ? DW_LOG_DEBUG : DW_LOG_WARN);
    signal(SIGPIPE, SIG_IGN);
    if (tl_tmpdir(tmpdir, sizeof tmpdir, "dw-probe-test") != 0)
        return -1;
    have_tools = tl_have_exe("python3") && tl_have_exe("openssl");
    if (!have_tools)
        return 0;
    if (tl_make_certs(tmpdir) != 0)
        return -1;
    if (http_server(&srv_plain, NULL, NULL, NULL) != 0 ||
        http_server(&srv_ca, tpath("srv.pem"), tpath("srv.key"), NULL) != 0 ||
        http_server(&srv_self, tpath("self.pem"), tpath("self.key"), NULL) != 0 ||
        http_server(&srv_mtls, tpath("srv.pem"), tpath("srv.key"), tpath("ca.pem")) != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    tl_sim_stop(&srv_plain);
    tl_sim_stop(&srv_ca);
    tl_sim_stop(&srv_self);
    tl_sim_stop(&srv_mtls);
    tl_kill_all();
    tl_rmtree(tmpdir);
    return 0;
}

/* ---- loop ---- */

/* Site callbacks, in order. */
struct change {
    int site;
    enum dw_health from, to;
};


struct env {
    uv_loop_t loop;
    uv_timer_t tick;
    struct dw_curlm *m;
    struct dw_prober *p;
    int listen_fd; /* a TCP target whose connections the tick accepts and drops */
    int changes;
    enum dw_health last[8];
    struct change log[16];
};

static void on_tick(uv_timer_t *t)
{
    struct env *e = t->data;
    if (e->listen_fd < 0)
        return;
    for (;;) {
        int fd = accept4(e->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            break;
        close(fd);
    }
}

static void env_init(struct env *e)
{
    memset(e, 0, sizeof *e);
    e->listen_fd = -1;
    assert_int_equal(uv_loop_init(&e->loop), 0);
    assert_int_equal(dw_curlm_init(&e->m, &e->loop), 0);
    uv_timer_init(&e->loop, &e->tick);
    e->tick.data = e;
    uv_timer_start(&e->tick, on_tick, 10, 10);
}

static void env_close(struct env *e)
{
    dw_prober_close(e->p);
    e->p = NULL;
    dw_curlm_close(e->m);
    uv_close((uv_handle_t *)&e->tick, NULL);
    if (e->listen_fd >= 0)
        close(e->listen_fd);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&e->loop), 0);
}

static void on_site(void *data, int site, enum dw_health old_state, enum dw_health new_state)
{
    struct env *e = data;
    if (e->changes < 16)
        e->log[e->changes] = (struct change){site, old_state, new_state};
    e->changes++;
    if (site >= 0 && site < 8)
        e->last[site] = new_state;
}

typedef int (*pred_fn)(struct env *e, const void *arg);

static int run_until(struct env *e, pred_fn pred, const void *arg, unsigned ms)
{
    uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000ULL;
    while (!pred(e, arg)) {
        if (uv_hrtime() > end)
            return -1;
        uv_run(&e->loop, UV_RUN_ONCE);
    }
    return 0;
}

static void run_for(struct env *e, unsigned ms)
{
    uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000ULL;
    while (uv_hrtime() < end)
        uv_run(&e->loop, UV_RUN_ONCE);
}

/* Every Edge of every site decided (not UNKNOWN). */
static int all_edges_decided(struct env *e, const void *arg)
{
    const struct dw_config *cfg = arg;
    for (int s = 0; s < cfg->n_sites; s++)
        for (int i = 0; i < cfg->sites[s].n_edges; i++)
            if (dw_prober_edge(e->p, s, i) == DW_UNKNOWN)
                return 0;
    return 1;
}

struct want {
    int site, edge; /* edge -1: the site's verdict */
    enum dw_health h;
};

static int reached(struct env *e, const void *arg)
{
    const struct want *w = arg;
    enum dw_health h = w->edge < 0 ? dw_prober_site(e->p, w->site) :
                                     dw_prober_edge(e->p, w->site, w->edge);
    return h == w->h;
}

static void wait_state(struct env *e, int site, int edge, enum dw_health h)
{
    struct want w = {site, edge, h};
    if (run_until(e, reached, &w, 30000) != 0)
        fail_msg("site %d edge %d: %s, want %s", site, edge,
                 dw_health_name(edge < 0 ? dw_prober_site(e->p, site) :
                                           dw_prober_edge(e->p, site, edge)),
                 dw_health_name(h));
}

/* A failure that says nothing about the target but that it was slow. */
static bool is_timeout(const char *err)
{
    return strcasestr(err, "timed out") != NULL || strcasestr(err, "timeout") != NULL;
}

/* An Edge in its expected state and, when down, for its own reason: the last failure is not a
 * timeout and says why (a stalled run is not evidence; the next run will be). */
struct classified {
    int site, edge;
    enum dw_health h;
    const char *why;
};

static int classified_as(struct env *e, const void *arg)
{
    const struct classified *c = arg;
    struct dw_probe_info info;

    if (dw_prober_edge(e->p, c->site, c->edge) != c->h ||
        dw_prober_probe_info(e->p, c->site, c->edge, 0, &info) != 0)
        return 0;
    if (c->h != DW_DOWN)
        return 1;
    return info.last_error[0] != '\0' && !is_timeout(info.last_error) &&
           strstr(info.last_error, c->why) != NULL;
}

/* ---- config ---- */

#define T_SITES 6
#define T_EDGES 12

struct tcfg {
    struct dw_config cfg;
    struct dw_site sites[T_SITES];
    struct dw_edge edges[T_SITES][T_EDGES];
    struct dw_probe_spec probes[T_SITES][T_EDGES][DW_MAX_PROBES];
};

static struct tcfg *tcfg_new(int n_sites)
{
    struct tcfg *t = calloc(1, sizeof *t);
    assert_non_null(t);
    /* Local targets answer at once; a timeout this long only rides out a stalled loop, so
     * an Edge that should be up is not taken down by two stalls in a row. */
    t->cfg.probe.interval_ms = 500;
    t->cfg.probe.timeout_ms = 500;
    t->cfg.probe.fail_threshold = 2;
    t->cfg.probe.recover_threshold = 2;
    t->cfg.sites = t->sites;
    t->cfg.n_sites = n_sites;
    for (int s = 0; s < n_sites; s++) {
        snprintf(t->sites[s].id, DW_ID_MAX, "site-%d", s);
        t->sites[s].edges = t->edges[s];
    }
    return t;
}

static struct dw_edge *add_edge(struct tcfg *t, int site)
{
    struct dw_site *s = &t->sites[site];
    assert_true(s->n_edges < T_EDGES);
    struct dw_edge *e = &s->edges[s->n_edges];
    e->probes = t->probes[site][s->n_edges];
    snprintf(e->id, DW_ID_MAX, "edge-%d-%d", site, s->n_edges);
    s->n_edges++;
    return e;
}

static struct dw_probe_spec *add_probe(struct dw_edge *e, enum dw_probe_kind kind)
{
    assert_true(e->n_probes < DW_MAX_PROBES);
    struct dw_probe_spec *p = &e->probes[e->n_probes++];
    memset(p, 0, sizeof *p);
    p->kind = kind;
    p->verify_tls = true;
    return p;
}

static struct dw_probe_spec *http_edge(struct tcfg *t, int site, const char *scheme, int port,
                                       const char *path)
{
    struct dw_probe_spec *p = add_probe(add_edge(t, site), DW_PROBE_HTTP);
    snprintf(p->url, sizeof p->url, "%s://127.0.0.1:%d%s", scheme, port, path);
    return p;
}

static void tcp_probe(struct dw_edge *e, int port)
{
    struct dw_probe_spec *p = add_probe(e, DW_PROBE_TCP);
    snprintf(p->address, sizeof p->address, "127.0.0.1:%d", port);
}

/* A listening socket on an ephemeral port (its connections are dropped by the tick). */
static int listen_any(int *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 512), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* A listener whose accept queue is full: connects to it hang (SYNs dropped) until timeout.
 * fill[] keeps the connections that filled it. */
static int full_listener(int *port, int fill[2])
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 0), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    for (int i = 0; i < 2; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        connect(fill[i], (struct sockaddr *)&a, sizeof a);
    }
    usleep(50 * 1000);
    return fd;
}

/* A port nobody listens on (bound, then closed). */
static int closed_port(void)
{
    int port;
    int fd = listen_any(&port);
    close(fd);
    return port;
}

/* ---- tests ---- */

static void test_http_checks(void **state)
{
    (void)state;
    if (!have_tools)
        skip();
    struct tcfg *t = tcfg_new(1);
    struct dw_probe_spec *p;
    int plain = srv_plain.port, ca = srv_ca.port, self = srv_self.port, mtls = srv_mtls.port;

    http_edge(t, 0, "http", plain, "/status/204");                    /* 0 any 2xx: up */
    p = http_edge(t, 0, "http", plain, "/status/503");                /* 1 503 expected: up */
    p->n_expect_status = 2, p->expect_status[0] = 200, p->expect_status[1] = 503;
    http_edge(t, 0, "http", plain, "/status/503");                    /* 2 not 2xx: down */
    p = http_edge(t, 0, "http", plain, "/status/200");                /* 3 not in set: down */
    p->n_expect_status = 1, p->expect_status[0] = 204;
    p = http_edge(t, 0, "https", ca, "/body/all-healthy-here");       /* 4 match: up */
    snprintf(p->body_match, sizeof p->body_match, "healthy");
    snprintf(p->ca_file, sizeof p->ca_file, "%s", tpath("ca.pem"));
    p = http_edge(t, 0, "https", ca, "/body/degraded");               /* 5 no match: down */
    snprintf(p->body_match, sizeof p->body_match, "healthy");
    snprintf(p->ca_file, sizeof p->ca_file, "%s", tpath("ca.pem"));
    http_edge(t, 0, "https", ca, "/");                                /* 6 system CAs: down */
    p = http_edge(t, 0, "https", self, "/");                          /* 7 no verify: up */
    p->verify_tls = false;
    p = http_edge(t, 0, "https", self, "/");                          /* 8 not our CA: down */
    snprintf(p->ca_file, sizeof p->ca_file, "%s", tpath("ca.pem"));
    p = http_edge(t, 0, "https", mtls, "/");                          /* 9 client cert: up */
    snprintf(p->ca_file, sizeof p->ca_file, "%s", tpath("ca.pem"));
    snprintf(p->client_cert, sizeof p->client_cert, "%s", tpath("cli.pem"));
    snprintf(p->client_key, sizeof p->client_key, "%s", tpath("cli.key"));
    p = http_edge(t, 0, "https", mtls, "/");                          /* 10 no client cert: down */
    snprintf(p->ca_file, sizeof p->ca_file, "%s", tpath("ca.pem"));
    http_edge(t, 0, "http", plain, "/garbage");                       /* 11 bad response: down */
    /* The test is about classification, not speed: TLS handshakes with a Python server take a
     * while under ASan or on a loaded machine, and an Edge that is down must be down for its
     * own reason, never because a probe ran out of time. */
    t->cfg.probe.interval_ms = 2000;
    t->cfg.probe.timeout_ms = 2000;

    struct env e;
    env_init(&e);
    assert_int_equal(dw_prober_start(&e.p, &e.loop, e.m, &t->cfg, on_site, &e), 0);

    static const enum dw_health want[] = {DW_UP,   DW_UP, DW_DOWN, DW_DOWN, DW_UP,   DW_DOWN,
                                          DW_DOWN, DW_UP, DW_DOWN, DW_UP,   DW_DOWN, DW_DOWN};
    /* what the failure of each down Edge says */
    static const char *const why[] = {NULL, NULL, "HTTP 503", "HTTP 200", NULL,
                                      "body does not match", "SSL certificate problem", NULL,
                                      "SSL certificate problem", NULL, "", "bad response"};
    for (int i = 0; i < (int)(sizeof want / sizeof want[0]); i++) {
        struct dw_probe_info info;
        struct classified c = {0, i, want[i], why[i]};
        int rc = run_until(&e, classified_as, &c, 30000);
        assert_int_equal(dw_prober_probe_info(e.p, 0, i, 0, &info), 0);
        if (rc != 0)
            fail_msg("edge %d (%s) is %s, want %s (last error: %s)", i, info.target,
                     dw_health_name(dw_prober_edge(e.p, 0, i)), dw_health_name(want[i]),
                     info.last_error);
        assert_int_equal(info.kind, DW_PROBE_HTTP);
        if (i == 11)
            assert_true(info.bad_responses >= 2);
        else
            assert_int_equal(info.bad_responses, 0);
    }
    assert_int_equal(dw_prober_site(e.p, 0), DW_UP);
    assert_int_equal(e.last[0], DW_UP);
    struct dw_probe_stats st;
    dw_prober_stats(e.p, &st);
    assert_true(st.probes >= 24);
    struct dw_probe_info bad;
    dw_prober_probe_info(e.p, 0, 11, 0, &bad);
    assert_int_equal(st.errors_bad_response, bad.bad_responses);
    assert_true(strstr(bad.last_error, "bad response") != NULL);
    env_close(&e);
    free(t);
}

/* An HTTPS probe's CA file is read when the prober starts: gone afterwards, the Edge still
 * verifies and comes UP. A file without a certificate stops the start. */
static void test_https_ca_loaded_at_start(void **state)
{
    (void)state;
    if (!have_tools)
        skip();
    struct tcfg *t = tcfg_new(1);
    struct dw_probe_spec *p;
    char cmd[1200];

    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", tpath("ca.pem"), tpath("ca-copy.pem"));
    assert_int_equal(system(cmd), 0);
    p = http_edge(t, 0, "https", srv_ca.port, "/");
    snprintf(p->ca_file, sizeof p->ca_file, "%s", tpath("ca-copy.pem"));
    t->cfg.probe.interval_ms = 2000;
    t->cfg.probe.timeout_ms = 2000;
    struct env e;
    env_init(&e);
    assert_int_equal(dw_prober_start(&e.p, &e.loop, e.m, &t->cfg, on_site, &e), 0);
    assert_int_equal(unlink(tpath("ca-copy.pem")), 0);
    struct classified c = {0, 0, DW_UP, NULL};
    assert_int_equal(run_until(&e, classified_as, &c, 30000), 0);
    env_close(&e);

    snprintf(cmd, sizeof cmd, "echo not a certificate > '%s'", tpath("ca-bad.pem"));
    assert_int_equal(system(cmd), 0);
    snprintf(p->ca_file, sizeof p->ca_file, "%s", tpath("ca-bad.pem"));
    env_init(&e);
    assert_int_equal(dw_prober_start(&e.p, &e.loop, e.m, &t->cfg, on_site, &e), -1);
    env_close(&e);
    free(t);
}

static void test_tcp_up_down(void **state)
{
    (void)state;
    struct tcfg *t = tcfg_new(1);
    int port;
    struct env e;

    int hang_port, fill[2];
    int hang_fd = full_listener(&hang_port, fill);
    env_init(&e);
    e.listen_fd = listen_any(&port);
    tcp_probe(add_edge(t, 0), port);
    tcp_probe(add_edge(t, 0), hang_port);
    t->edges[0][1].probes[0].timeout_ms = 30;
    assert_int_equal(dw_prober_start(&e.p, &e.loop, e.m, &t->cfg, on_site, &e), 0);
    wait_state(&e, 0, -1, DW_UP);
    assert_int_equal(dw_prober_edge(e.p, 0, 0), DW_UP);
    wait_state(&e, 0, 1, DW_DOWN); /* no answer at all: the per-probe timeout decides */
    struct dw_probe_info info;
    assert_int_equal(dw_prober_probe_info(e.p, 0, 1, 0, &info), 0);
    assert_non_null(strstr(info.last_error, "timeout after 30 ms"));

    /* failures of the live target so far: each could only have been a stalled run */
    uint64_t live_failures;
    assert_int_equal(dw_prober_probe_state(e.p, 0, 0, 0, NULL, NULL, NULL, &live_failures), 0);

    close(e.listen_fd); /* refused from now on */
    e.listen_fd = -1;
    wait_state(&e, 0, -1, DW_DOWN);
    enum dw_health h;
    enum dw_probe_kind k;
    uint64_t n, f;
    assert_int_equal(dw_prober_probe_state(e.p, 0, 0, 0, &h, &k, &n, &f), 0);
    assert_int_equal(h, DW_DOWN);
    assert_int_equal(k, DW_PROBE_TCP);
    assert_true(n >= 4 && f >= 2);
    assert_int_equal(dw_prober_probe_state(e.p, 0, 0, 1, &h, &k, &n, &f), -1);
    assert_int_equal(dw_prober_probe_state(e.p, 0, 2, 0, NULL, NULL, NULL, NULL), -1);
    /* One callback per change of the verdict, the first one when it leaves UNKNOWN. */
    if (live_failures < 2) {
        /* The live Edge never failed twice in a row, so the site went up once and down once. */
        assert_int_equal(e.changes, 2);
        assert_int_equal(e.log[0].to, DW_UP);
    } else {
        /* A stalled loop timed out runs against the live target: the verdict may have flapped
         * before the listener closed, but each callback must still be a real change. */
        print_message("%llu failures against the live target: %d site changes\n",
                      (unsigned long long)live_failures, e.changes);
        assert_true(e.changes >= 2 && e.changes <= 16);
    }
    for (int i = 0; i < e.changes && i < 16; i++) {
        assert_int_equal(e.log[i].site, 0);
        assert_int_equal(e.log[i].from, i == 0 ? DW_UNKNOWN : e.log[i - 1].to);
        assert_true(e.log[i].to == DW_UP || e.log[i].to == DW_DOWN);
        assert_int_not_equal(e.log[i].to, e.log[i].from);
    }
    assert_int_equal(e.log[e.changes - 1].to, DW_DOWN);
    env_close(&e);
    close(hang_fd);
    close(fill[0]);
    close(fill[1]);
    free(t);
}

/* Three Edges per site, two up and one down, under each rule. */
static void test_rules(void **state)
{
    (void)state;
    struct tcfg *t = tcfg_new(5);
    int port, dead = closed_port();
    struct env e;

    env_init(&e);
    e.listen_fd = listen_any(&port);
    for (int s = 0; s < 5; s++) {
        tcp_probe(add_edge(t, s), port);
        tcp_probe(add_edge(t, s), port);
        tcp_probe(add_edge(t, s), dead);
    }
    t->sites[0].rule = DW_RULE_ANY;
    t->sites[1].rule = DW_RULE_ALL;
    t->sites[2].rule = DW_RULE_AT_LEAST, t->sites[2].at_least = 2;
    t->sites[3].rule = DW_RULE_AT_LEAST, t->sites[3].at_least = 3;
    t->sites[4].rule = DW_RULE_AT_LEAST, t->sites[4].at_least = 1;
    assert_int_equal(dw_prober_start(&e.p, &e.loop, e.m, &t->cfg, on_site, &e), 0);
    assert_int_equal(run_until(&e, all_edges_decided, &t->cfg, 30000), 0);
    static const enum dw_health want[] = {DW_UP, DW_DOWN, DW_UP, DW_DOWN, DW_UP};
    for (int s = 0; s < 5; s++) {
        wait_state(&e, s, 0, DW_UP);
        wait_state(&e, s, 1, DW_UP);
        assert_int_equal(dw_prober_site(e.p, s), want[s]);
        assert_int_equal(e.last[s], want[s]);
        assert_int_equal(dw_prober_edge(e.p, s, 2), DW_DOWN);
    }

    close(e.listen_fd); /* every Edge down now */
    e.listen_fd = -1;
    wait_state(&e, 0, -1, DW_DOWN);
    wait_state(&e, 2, -1, DW_DOWN);
    wait_state(&e, 4, -1, DW_DOWN);
    assert_int_equal(dw_prober_site(e.p, 1), DW_DOWN);
    assert_int_equal(dw_prober_site(e.p, 3), DW_DOWN);
    env_close(&e);
    free(t);
}

/* An Edge is UP while any of its probes is: one dead probe does not take it down. */
static void test_edge_two_probes(void **state)
{
    (void)state;
    struct tcfg *t = tcfg_new(2);
    int port, dead = closed_port();
    struct env e;

    env_init(&e);
    e.listen_fd = listen_any(&port);
    struct dw_edge *a = add_edge(t, 0);
    tcp_probe(a, dead);
    tcp_probe(a, port);
    if (have_tools) {
        struct dw_probe_spec *h = add_probe(a, DW_PROBE_HTTP);
        snprintf(h->url, sizeof h->url, "http://127.0.0.1:%d/status/500", srv_plain.port);
    }
    struct dw_edge *b = add_edge(t, 1);
    tcp_probe(b, dead);
    tcp_probe(b, dead);
    t->sites[0].rule = DW_RULE_ALL;
    assert_int_equal(dw_prober_start(&e.p, &e.loop, e.m, &t->cfg, on_site, &e), 0);
    assert_int_equal(run_until(&e, all_edges_decided, &t->cfg, 30000), 0);
    for (int i = 0; i < dw_prober_n_probes(e.p, 0, 0); i++) {
        enum dw_health want = i == 1 ? DW_UP : DW_DOWN;
        for (uint64_t end = uv_hrtime() + 30000000000ULL; uv_hrtime() < end;) {
            enum dw_health h = DW_UNKNOWN;
            dw_prober_probe_state(e.p, 0, 0, i, &h, NULL, NULL, NULL);
            if (h == want)
                break;
            uv_run(&e.loop, UV_RUN_ONCE);
        }
        enum dw_health h = DW_UNKNOWN;
        dw_prober_probe_state(e.p, 0, 0, i, &h, NULL, NULL, NULL);
        assert_int_equal(h, want);
    }
    assert_int_equal(dw_prober_n_probes(e.p, 0, 0), have_tools ? 3 : 2);
    assert_int_equal(dw_prober_n_probes(e.p, 1, 0), 2);
    assert_int_equal(dw_prober_n_probes(e.p, 1, 1), 0);
    assert_int_equal(dw_prober_edge(e.p, 0, 0), DW_UP);
    assert_int_equal(dw_prober_site(e.p, 0), DW_UP);
    assert_int_equal(dw_prober_edge(e.p, 1, 0), DW_DOWN);
    assert_int_equal(dw_prober_site(e.p, 1), DW_DOWN);

    /* the last live probe goes: the Edge follows */
    close(e.listen_fd);
    e.listen_fd = -1;
    wait_state(&e, 0, 0, DW_DOWN);
    wait_state(&e, 0, -1, DW_DOWN);
    env_close(&e);
    free(t);
}

/* Closing with HTTP transfers and TCP connects in flight leaves nothing behind. */
static void test_close_in_flight(void **state)
{
    (void)state;
    struct tcfg *t = tcfg_new(1);
    struct env e;

    env_init(&e);
    if (have_tools)
        for (int i = 0; i < 4; i++)
            http_edge(t, 0, "http", srv_plain.port, "/sleep/1000");
    int hang_port, fill[2];
    int hang_fd = full_listener(&hang_port, fill);
    for (int i = 0; i < 3; i++)
        tcp_probe(add_edge(t, 0), hang_port);
    t->cfg.probe.interval_ms = 50;
    t->cfg.probe.timeout_ms = 50;
    assert_int_equal(dw_prober_start(&e.p, &e.loop, e.m, &t->cfg, on_site, &e), 0);
    run_for(&e, 120);
    env_close(&e);

    /* and a prober closed before its first run */
    env_init(&e);
    assert_int_equal(dw_prober_start(&e.p, &e.loop, e.m, &t->cfg, on_site, &e), 0);
    env_close(&e);

    /* a bad address is refused at start */
    snprintf(t->edges[0][t->sites[0].n_edges - 1].probes[0].address, DW_ADDR_MAX, "nowhere");
    env_init(&e);
    assert_int_equal(dw_prober_start(&e.p, &e.loop, e.m, &t->cfg, on_site, &e), -1);
    assert_null(e.p);
    env_close(&e);
    close(hang_fd);
    close(fill[0]);
    close(fill[1]);
    free(t);
}

static const char uas_xml[] =
    "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n"
    "<!DOCTYPE scenario SYSTEM \"sipp.dtd\">\n"
    "<scenario name=\"answer OPTIONS with 200\">\n"
    "  <recv request=\"OPTIONS\" crlf=\"true\"/>\n"
    "  <send><![CDATA[\n"
    "SIP/2.0 200 OK\n"
    "[last_Via:]\n"
    "[last_From:]\n"
    "[last_To:];tag=[pid]SIPpTag01[call_number]\n"
    "[last_Call-ID:]\n"
    "[last_CSeq:]\n"
    "Contact: <sip:[local_ip]:[local_port];transport=[transport]>\n"
    "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\n"
    "Content-Length: 0\n"
    "\n"
    "  ]]></send>\n"
    "</scenario>\n";

static void test_sip_sipp(void **state)
{
    (void)state;
    if (!tl_have_exe("sipp"))
        skip();
    char xml[600], port_s[16];
    snprintf(xml, sizeof xml, "%s/uas_options.xml", tmpdir);
    FILE *f = fopen(xml, "w");
    assert_non_null(f);
    fputs(uas_xml, f);
    fclose(f);

    int port = tl_free_port(SOCK_DGRAM); /* sipp takes a fixed port */
    snprintf(port_s, sizeof port_s, "%d", port);

    struct tl_sim sipp;
    const char *argv[] = {"sipp", "-sf", xml, "-i", "127.0.0.1", "-p", port_s, "-t", "u1",
                          "-nostdin", NULL};
    assert_int_equal(tl_spawn(argv, NULL, &sipp), 0);

    struct tcfg *t = tcfg_new(1);
    struct dw_probe_spec *p = add_probe(add_edge(t, 0), DW_PROBE_SIP);
    snprintf(p->address, sizeof p->address, "127.0.0.1:%d", port);
    p->transport = DW_SIP_UDP;
    t->cfg.probe.interval_ms = 500;
    t->cfg.probe.timeout_ms = 500;
    struct env e;
    env_init(&e);
    assert_int_equal(dw_prober_start(&e.p, &e.loop, e.m, &t->cfg, on_site, &e), 0);
    wait_state(&e, 0, -1, DW_UP);
    struct dw_probe_info info;
    assert_int_equal(dw_prober_probe_info(e.p, 0, 0, 0, &info), 0);
    assert_int_equal(info.kind, DW_PROBE_SIP);

    tl_sim_stop(&sipp); /* silence: timeouts (or ICMP unreachable) */
    wait_state(&e, 0, -1, DW_DOWN);
    env_close(&e);
    free(t);
}

/* ---- switching configuration ---- */

/* e runs a prober for cfg until site 0 is h. */
static void env_start_until(struct env *e, const struct dw_config *cfg, enum dw_health h)
{
    env_init(e);
    assert_int_equal(dw_prober_start(&e->p, &e->loop, e->m, cfg, on_site, e), 0);
    wait_state(e, 0, -1, h);
}

/* e->p becomes a prober for cfg carrying over from the running one, which is then closed. */
static void env_switch(struct env *e, const struct dw_config *cfg)
{
    struct dw_prober *old = e->p;
    assert_int_equal(dw_prober_start_from(&e->p, &e->loop, e->m, cfg, on_site, e, old), 0);
    dw_prober_close(old);
}

/* What a probe knows, to compare across a switch. */
struct snap {
    enum dw_health state;
    uint64_t probes, failures;
    char last_error[96];
};

static struct snap snap_take(struct env *e, int site, int edge)
{
    struct dw_probe_info info;
    struct snap out;
    assert_int_equal(dw_prober_probe_info(e->p, site, edge, 0, &info), 0);
    out.state = info.state;
    out.probes = info.probes;
    out.failures = info.failures;
    snprintf(out.last_error, sizeof out.last_error, "%s", info.last_error);
    return out;
}

static void assert_snap(struct env *e, int site, int edge, const struct snap *want)
{
    struct snap got = snap_take(e, site, edge);
    assert_int_equal(got.state, want->state);
    assert_int_equal(got.probes, want->probes);
    assert_int_equal(got.failures, want->failures);
    assert_string_equal(got.last_error, want->last_error);
}

static const struct snap fresh = {DW_UNKNOWN, 0, 0, ""};

/* The probe has had a run since it had after of them. */
struct ran {
    int site, edge;
    uint64_t after;
};

static int ran_again(struct env *e, const void *arg)
{
    const struct ran *r = arg;
    uint64_t n = 0;
    dw_prober_probe_state(e->p, r->site, r->edge, 0, NULL, NULL, &n, NULL);
    return n > r->after;
}

/* The first callback for site at or after log[from]. */
static const struct change *first_change(const struct env *e, int from, int site)
{
    for (int i = from; i < e->changes && i < 16; i++)
        if (e->log[i].site == site)
            return &e->log[i];
    return NULL;
}

/* A site that is UP keeps its verdict and its probe's state when a site is added; the new one
 * starts UNKNOWN and reports when it leaves it. */
static void test_switch_keeps_up(void **state)
{
    (void)state;
    if (!have_tools)
        skip();
    struct tcfg *t1 = tcfg_new(1), *t2 = tcfg_new(2);
    http_edge(t1, 0, "http", srv_plain.port, "/status/200");
    http_edge(t2, 0, "http", srv_plain.port, "/status/200");
    http_edge(t2, 1, "http", srv_plain.port, "/status/204");
    struct env e;
    env_start_until(&e, &t1->cfg, DW_UP);
    struct snap before = snap_take(&e, 0, 0);
    int c0 = e.changes;

    env_switch(&e, &t2->cfg);
    assert_int_equal(e.changes, c0);
    assert_int_equal(dw_prober_site(e.p, 0), DW_UP);
    assert_int_equal(dw_prober_edge(e.p, 0, 0), DW_UP);
    assert_snap(&e, 0, 0, &before);
    assert_int_equal(dw_prober_site(e.p, 1), DW_UNKNOWN);
    assert_snap(&e, 1, 0, &fresh);

    wait_state(&e, 1, -1, DW_UP);
    const struct change *c = first_change(&e, c0, 1);
    assert_non_null(c);
    assert_int_equal(c->from, DW_UNKNOWN);
    assert_int_equal(c->to, DW_UP);
    env_close(&e);
    free(t1);
    free(t2);
}

/* A probe whose URL or timeout changed starts over; an unchanged one next to it does not. The
 * site's verdict (rule all) falls back to UNKNOWN, which is reported at once. */
static void test_switch_changed_spec(void **state)
{
    (void)state;
    if (!have_tools)
        skip();
    struct tcfg *t1 = tcfg_new(1), *t2 = tcfg_new(1);
    for (int i = 0; i < 3; i++)
        http_edge(t1, 0, "http", srv_plain.port, "/status/200");
    http_edge(t2, 0, "http", srv_plain.port, "/status/204");
    http_edge(t2, 0, "http", srv_plain.port, "/status/200")->timeout_ms = 400;
    http_edge(t2, 0, "http", srv_plain.port, "/status/200");
    t1->sites[0].rule = t2->sites[0].rule = DW_RULE_ALL;
    struct env e;
    env_start_until(&e, &t1->cfg, DW_UP);
    struct snap kept = snap_take(&e, 0, 2);
    int c0 = e.changes;

    env_switch(&e, &t2->cfg);
    assert_snap(&e, 0, 0, &fresh);
    assert_snap(&e, 0, 1, &fresh);
    assert_snap(&e, 0, 2, &kept);
    assert_int_equal(dw_prober_edge(e.p, 0, 2), DW_UP);
    assert_int_equal(dw_prober_site(e.p, 0), DW_UNKNOWN);
    assert_int_equal(e.changes, c0 + 1);
    assert_int_equal(e.log[c0].site, 0);
    assert_int_equal(e.log[c0].from, DW_UP);
    assert_int_equal(e.log[c0].to, DW_UNKNOWN);

    wait_state(&e, 0, -1, DW_UP);
    env_close(&e);
    free(t1);
    free(t2);
}

/* A DOWN site (TCP refused, SIP unanswered) stays DOWN, and its probes keep their schedule
 * though the new interval is far longer: the next runs come from the new prober, the SIP one
 * through its own SIP client after the old prober's closed. */
static void test_switch_keeps_down(void **state)
{
    (void)state;
    struct tcfg *t[2] = {tcfg_new(1), tcfg_new(1)};
    int dead = closed_port(), sip_port = tl_free_port(SOCK_DGRAM);
    for (int i = 0; i < 2; i++) {
        tcp_probe(add_edge(t[i], 0), dead);
        struct dw_probe_spec *p = add_probe(add_edge(t[i], 0), DW_PROBE_SIP);
        snprintf(p->address, sizeof p->address, "127.0.0.1:%d", sip_port);
    }
    t[1]->cfg.probe.interval_ms = 60000;
    struct env e;
    env_start_until(&e, &t[0]->cfg, DW_DOWN);
    struct snap before[2] = {snap_take(&e, 0, 0), snap_take(&e, 0, 1)};
    assert_string_not_equal(before[1].last_error, "");
    struct dw_probe_stats st0, st1;
    dw_prober_stats(e.p, &st0);
    int c0 = e.changes;

    env_switch(&e, &t[1]->cfg);
    assert_int_equal(dw_prober_site(e.p, 0), DW_DOWN);
    for (int i = 0; i < 2; i++) {
        assert_snap(&e, 0, i, &before[i]);
        assert_int_equal(dw_prober_edge(e.p, 0, i), DW_DOWN);
    }
    dw_prober_stats(e.p, &st1);
    assert_int_equal(st1.probes, st0.probes);
    assert_int_equal(st1.failures, st0.failures);

    /* a first run spread over 60 s would mostly miss this */
    for (int i = 0; i < 2; i++) {
        struct ran r = {0, i, before[i].probes};
        assert_int_equal(run_until(&e, ran_again, &r, 10000), 0);
    }
    assert_int_equal(dw_prober_site(e.p, 0), DW_DOWN);
    assert_int_equal(e.changes, c0);
    env_close(&e);
    free(t[0]);
    free(t[1]);
}

/* Probes carried into a much shorter interval do not wait out the old one. */
static void test_switch_shorter_interval(void **state)
{
    (void)state;
    struct tcfg *t1 = tcfg_new(1), *t2 = tcfg_new(1);
    int port;
    struct env e;
    env_init(&e);
    e.listen_fd = listen_any(&port);
    tcp_probe(add_edge(t1, 0), port);
    tcp_probe(add_edge(t2, 0), port);
    t1->cfg.probe.interval_ms = 60000;
    assert_int_equal(dw_prober_start(&e.p, &e.loop, e.m, &t1->cfg, on_site, &e), 0);
    env_switch(&e, &t2->cfg);
    struct ran r = {0, 0, 0};
    /* the first run in prev was spread over 60 s */
    assert_int_equal(run_until(&e, ran_again, &r, 5000), 0);
    env_close(&e);
    free(t1);
    free(t2);
}

static struct dw_edge *named_edge(struct tcfg *t, int site, const char *id)
{
    struct dw_edge *e = add_edge(t, site);
    snprintf(e->id, sizeof e->id, "%s", id);
    return e;
}

/* Sites and Edges are matched by id: reordered, each keeps its own state. */
static void test_switch_reordered(void **state)
{
    (void)state;
    struct tcfg *t1 = tcfg_new(2), *t2 = tcfg_new(2);
    int port, dead = closed_port();
    struct env e;
    env_init(&e);
    e.listen_fd = listen_any(&port);
    tcp_probe(named_edge(t1, 0, "live"), port);
    tcp_probe(named_edge(t1, 0, "dead"), dead);
    tcp_probe(named_edge(t1, 1, "dead"), dead);
    snprintf(t2->sites[0].id, DW_ID_MAX, "site-1");
    snprintf(t2->sites[1].id, DW_ID_MAX, "site-0");
    tcp_probe(named_edge(t2, 0, "dead"), dead);
    tcp_probe(named_edge(t2, 1, "dead"), dead);
    tcp_probe(named_edge(t2, 1, "live"), port);
    assert_int_equal(dw_prober_start(&e.p, &e.loop, e.m, &t1->cfg, on_site, &e), 0);
    assert_int_equal(run_until(&e, all_edges_decided, &t1->cfg, 30000), 0);
    wait_state(&e, 0, 0, DW_UP);
    wait_state(&e, 0, -1, DW_UP);
    wait_state(&e, 1, -1, DW_DOWN);
    struct snap live = snap_take(&e, 0, 0), dead0 = snap_take(&e, 0, 1),
                dead1 = snap_take(&e, 1, 0);
    int c0 = e.changes;

    env_switch(&e, &t2->cfg);
    assert_int_equal(e.changes, c0);
    assert_int_equal(dw_prober_site(e.p, 0), DW_DOWN);
    assert_int_equal(dw_prober_site(e.p, 1), DW_UP);
    assert_snap(&e, 0, 0, &dead1);
    assert_snap(&e, 1, 0, &dead0);
    assert_snap(&e, 1, 1, &live);
    assert_int_equal(dw_prober_edge(e.p, 1, 0), DW_DOWN);
    assert_int_equal(dw_prober_edge(e.p, 1, 1), DW_UP);
    env_close(&e);
    free(t1);
    free(t2);
}


/* A loop too busy to keep the schedule: every callback of this timer burns hog_ms. */
struct hog {
    uv_timer_t t;
    unsigned ms;
    int overloads;
};

static void on_hog(uv_timer_t *t)
{
    struct hog *h = t->data;
    uint64_t end = uv_hrtime() + (uint64_t)h->ms * 1000000ULL;
    while (uv_hrtime() < end)
        ;
}

static void on_overload(void *data, const char *why)
{
    struct hog *h = data;
    assert_non_null(strstr(why, "probe overload"));
    h->overloads++;
}

static int is_overloaded(struct env *e, const void *arg)
{
    return dw_prober_overloaded(e->p) == *(const bool *)arg;
}

/* A node that cannot keep its schedule abstains: failures of runs it started late, or made
 * while overloaded, move nothing; once it keeps up again, the same failures count. */
static void test_overload_abstains(void **state)
{
    (void)state;
    struct tcfg *t = tcfg_new(1);
    struct env e;
    struct hog h = {.ms = 150};
    int port = closed_port();

    env_init(&e);
    t->cfg.probe.interval_ms = 100;
    for (int i = 0; i < T_EDGES; i++)
        tcp_probe(add_edge(t, 0), port); /* refused at once: DOWN within 3 runs if counted */
    uv_timer_init(&e.loop, &h.t);
    h.t.data = &h;
    uv_timer_start(&h.t, on_hog, 0, 10);
    assert_int_equal(dw_prober_start(&e.p, &e.loop, e.m, &t->cfg, on_site, &e), 0);
    dw_prober_set_overload_cb(e.p, on_overload, &h);
    bool yes = true, no = false;
    assert_int_equal(run_until(&e, is_overloaded, &yes, 10000), 0);
    run_for(&e, 2000);
    struct dw_probe_stats st;
    dw_prober_stats(e.p, &st);
    assert_true(h.overloads >= 1);
    assert_true(st.overloads == 1 && st.late_runs > 0 && st.overload_discarded > 0);
    for (int i = 0; i < T_EDGES; i++)
        assert_int_equal(dw_prober_edge(e.p, 0, i), DW_UNKNOWN);
    assert_int_equal(e.changes, 0);

    uv_timer_stop(&h.t);
    assert_int_equal(run_until(&e, is_overloaded, &no, 10000), 0);
    wait_state(&e, 0, -1, DW_DOWN);
    uv_close((uv_handle_t *)&h.t, NULL);
    env_close(&e);
    free(t);
}


/* A start-up that blocked the loop (its clock stood still) is not overload. */
static void test_blocking_start_is_not_overload(void **state)
{
    (void)state;
    struct tcfg *t = tcfg_new(1);
    struct env e;
    int port;

    env_init(&e);
    e.listen_fd = listen_any(&port);
    t->cfg.probe.interval_ms = 1000; /* the first runs are then a window's worth */
    for (int i = 0; i < T_EDGES; i++)
        tcp_probe(add_edge(t, 0), port);
    uv_run(&e.loop, UV_RUN_NOWAIT); /* the loop's clock is read here... */
    uint64_t end = uv_hrtime() + 1500 * 1000000ULL;
    while (uv_hrtime() < end) /* ...and a 1.5 s start-up follows */
        ;
    assert_int_equal(dw_prober_start(&e.p, &e.loop, e.m, &t->cfg, on_site, &e), 0);
    wait_state(&e, 0, -1, DW_UP);
    run_for(&e, 1500);
    struct dw_probe_stats st;
    dw_prober_stats(e.p, &st);
    assert_true(st.late_runs < T_EDGES / 2); /* without the fix: every first run */
    assert_int_equal(st.overloads, 0);
    assert_false(dw_prober_overloaded(e.p));
    env_close(&e);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_checks),
        cmocka_unit_test(test_https_ca_loaded_at_start),
        cmocka_unit_test(test_tcp_up_down),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_edge_two_probes),
        cmocka_unit_test(test_close_in_flight),
        cmocka_unit_test(test_sip_sipp),
        cmocka_unit_test(test_switch_keeps_up),
        cmocka_unit_test(test_switch_changed_spec),
        cmocka_unit_test(test_switch_keeps_down),
        cmocka_unit_test(test_switch_shorter_interval),
        cmocka_unit_test(test_switch_reordered),
        cmocka_unit_test(test_overload_abstains),
        cmocka_unit_test(test_blocking_start_is_not_overload),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
