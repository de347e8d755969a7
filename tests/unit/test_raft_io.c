/* Raft wiring, peer channel and embedded HTTP server: three real raft nodes on loopback in one
 * process and one libuv loop. */
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "drwatch/config.h"
#include "drwatch/entry.h"
#include "drwatch/fsm.h"
#include "drwatch/http.h"
#include "drwatch/httpd.h"
#include "drwatch/log.h"
#include "drwatch/peer.h"
#include "drwatch/raftnode.h"
#include "drwatch/stamp.h"
#include "testlib.h"

#define N 3                 /* the bootstrapped cluster */
#define MAX_NODES (N + 1)   /* and one that joins it */

struct node {
    struct dw_config cfg;
    struct dw_fsm *fsm;
    struct dw_raft *raft;
    struct dw_peer *peer;
    int applied_calls;
};

static uv_loop_t loop;
static struct dw_curlm *curlm;
static struct node nodes[MAX_NODES];
static int n_nodes = N;     /* nodes[0..n_nodes) are the ones the cluster helpers look at */
static char dirs[MAX_NODES][64];
static int ports[2 * MAX_NODES]; /* raft ports, then peer ports */

/* ---- loop helpers ---- */

static int64_t real_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A wall clock *data ms ahead of the real one. */
static int64_t wall_ahead(void *data)
{
    return real_wall() + *(const int64_t *)data;
}

static bool deadline_hit;

static void on_deadline(uv_timer_t *t)
{
    (void)t;
    deadline_hit = true;
}

/* Runs the loop until pred() holds or timeout_ms passes; no sleeping. */
static bool run_until(bool (*pred)(void *), void *arg, unsigned timeout_ms)
{
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    deadline_hit = false;
    uv_timer_start(&t, on_deadline, timeout_ms, 0);
    bool ok;
    while (!(ok = pred(arg)) && !deadline_hit)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return ok;
}

static bool flag_set(void *arg)
{
    return *(int *)arg != 0;
}

/* ---- cluster ---- */

/* The secret members a and b (indexes) share; each pair has its own. */
static const char *pair_secret(int a, int b)
{
    static char buf[4][64];
    static int next;
    char *out = buf[next++ % 4];
    snprintf(out, sizeof buf[0], "secret-of-members-%d-and-%d", (a < b ? a : b) + 1,
             (a < b ? b : a) + 1);
    return out;
}

static void fill_config(struct dw_config *c, int self, int n_members)
{
    memset(c, 0, sizeof *c);
    c->node_id = (uint64_t)self + 1;
    snprintf(c->data_dir, sizeof c->data_dir, "%s", dirs[self]);
    c->n_members = n_members;
    for (int i = 0; i < n_members; i++) {
        struct dw_member *m = &c->members[i];
        m->id = (uint64_t)i + 1;
        snprintf(m->name, sizeof m->name, "n%d", i + 1);
        snprintf(m->raft_address, sizeof m->raft_address, "127.0.0.1:%d", ports[i]);
        snprintf(m->peer_address, sizeof m->peer_address, "127.0.0.1:%d", ports[MAX_NODES + i]);
    }
    /* All the nodes share one process: a stall of the whole test must not look like a dead
     * leader, or the leader changes under the checks. */
    c->cluster.election_timeout_ms = 1000;
    c->cluster.heartbeat_ms = 30;
    c->cluster.observation_ttl_ms = 15000;
    c->cluster.refresh_interval_ms = 5000;
    /* Small, so the test takes snapshots and restores one. */
    c->cluster.snapshot_threshold = 8;
    c->cluster.snapshot_trailing = 4;
    c->probe.interval_ms = 1000;
    c->probe.timeout_ms = 800;
    c->probe.fail_threshold = 3;
    c->probe.recover_threshold = 2;
    /* static storage: the tests build configs by hand, nothing to free */
    static struct dw_site sites[MAX_NODES][2];
    static struct dw_edge edges[MAX_NODES][2][1];
    c->sites = sites[self];
    c->n_sites = 2;
    snprintf(c->sites[0].id, DW_ID_MAX, "site-a");
    snprintf(c->sites[1].id, DW_ID_MAX, "site-b");
    for (int s = 0; s < 2; s++) {
        c->sites[s].edges = edges[self][s];
        c->sites[s].n_edges = 1;
        snprintf(c->sites[s].edges[0].id, DW_ID_MAX, "edge-%c", 'a' + s);
        snprintf(c->sites[s].edges[0].health_url, DW_URL_MAX, "http://127.0.0.1:1/health");
    }
    c->n_groups = 1;
    struct dw_group *g = &c->groups[0];
    snprintf(g->id, DW_ID_MAX, "carrier-1");
    g->n_targets = 3;
    const char *tid[3] = {"premise-a", "premise-b", "cloud"};
    for (int t = 0; t < 3; t++) {
        snprintf(g->targets[t].id, DW_ID_MAX, "%s", tid[t]);
        g->targets[t].site = t < 2 ? t : -1;
        g->targets[t].n_trunk_bases = 1;
        snprintf(g->targets[t].trunk_base_ids[0], DW_ID_MAX, "tb-%d", t);
    }
}

static void on_applied(void *data)
{
    ((struct node *)data)->applied_calls++;
}

static void start_node(int i)
{
    char err[256];
    struct node *n = &nodes[i];
    if (n->fsm == NULL)
        assert_int_equal(dw_fsm_open(&n->fsm, &n->cfg, err, sizeof err), 0);
    int rc = dw_raft_start(&n->raft, &loop, &n->cfg, n->fsm, on_applied, n, err, sizeof err);
    if (rc != 0)
        fail_msg("node %d: %s", i + 1, err);
    static struct dw_peer_secrets ps;
    memset(&ps, 0, sizeof ps);
    for (int j = 0; j < n->cfg.n_members; j++)
        if (j != i)
            snprintf(ps.s[j], sizeof ps.s[j], "%s", pair_secret(i, j));
    rc = dw_peer_start(&n->peer, &loop, curlm, &n->cfg, &ps, n->raft, err, sizeof err);
    if (rc != 0)
        fail_msg("node %d peer: %s", i + 1, err);
}

static void on_closed(void *data)
{
    (*(int *)data)++;
}

static void stop_node(int i)
{
    struct node *n = &nodes[i];
    int closed = 0;
    dw_peer_close(n->peer);
    n->peer = NULL;
    dw_raft_close(n->raft, on_closed, &closed);
    n->raft = NULL;
    assert_true(run_until(flag_set, &closed, 5000));
    dw_fsm_close(n->fsm);
    n->fsm = NULL;
}

static int leader_index(void)
{
    int found = -1, count = 0;
    for (int i = 0; i < n_nodes; i++)
        if (nodes[i].raft != NULL && dw_raft_is_leader(nodes[i].raft)) {
            found = i;
            count++;
        }
    return count == 1 ? found : -1;
}

static bool one_leader_known(void *arg)
{
    (void)arg;
    int l = leader_index();
    if (l < 0)
        return false;
    /* a node waiting to join (no configuration yet) knows no leader */
    for (int i = 0; i < n_nodes; i++)
        if (nodes[i].raft != NULL && dw_raft_configuration(nodes[i].raft, NULL, 0) != 0 &&
            dw_raft_leader_id(nodes[i].raft) != (uint64_t)l + 1)
            return false;
    return true;
}

static bool converged(void *arg)
{
    (void)arg;
    int l = leader_index();
    if (l < 0)
        return false;
    uint64_t last = dw_raft_last_index(nodes[l].raft);
    for (int i = 0; i < n_nodes; i++)
        if (nodes[i].raft == NULL || dw_raft_last_applied(nodes[i].raft) < last)
            return false;
    return true;
}

/* Waits for a leader all running nodes agree on and returns its index. */
/* A ready leader other than node *arg. */
static bool another_leads(void *arg)
{
    int l = leader_index();
    return l >= 0 && l != *(const int *)arg;
}

static int wait_leader(void)
{
    if (!run_until(one_leader_known, NULL, 20000))
        fail_msg("no leader agreed on within 20 s");
    return leader_index();
}

/* Who leads and the running nodes' terms: unchanged across a check means no election (and no
 * step-down) happened during it, so checks that depend on who leads apply. */
struct epoch {
    int leader;
    uint64_t term[MAX_NODES];
};

static struct epoch epoch_now(void)
{
    struct epoch ep = {leader_index(), {0}};
    for (int i = 0; i < n_nodes; i++)
        ep.term[i] = nodes[i].raft != NULL ? dw_raft_term(nodes[i].raft) : 0;
    return ep;
}

static bool epoch_held(const struct epoch *ep)
{
    struct epoch now = epoch_now();
    if (now.leader != ep->leader)
        return false;
    for (int i = 0; i < n_nodes; i++)
        if (now.term[i] != ep->term[i])
            return false;
    return true;
}

static void assert_same_state(void)
{
    char *d0 = dw_fsm_dump(nodes[0].fsm);
    assert_non_null(d0);
    for (int i = 1; i < n_nodes; i++) {
        char *d = dw_fsm_dump(nodes[i].fsm);
        assert_non_null(d);
        assert_string_equal(d0, d);
        assert_int_equal(dw_fsm_applied(nodes[0].fsm), dw_fsm_applied(nodes[i].fsm));
        free(d);
    }
    free(d0);
}

/* ---- submissions ---- */

struct done {
    int called;
    int status;
    char err[256];
};

static void on_done(void *data, int status, const char *errmsg)
{
    struct done *d = data;
    d->called++;
    d->status = status;
    snprintf(d->err, sizeof d->err, "%s", errmsg != NULL ? errmsg : "");
}

static bool done_called(void *arg)
{
    return ((struct done *)arg)->called != 0;
}

/* One submission through node i; the callback's status (and message in err). */
static int try_submit(int i, enum dw_health a, enum dw_health b, char *err, size_t errlen)
{
    enum dw_health st[2] = {a, b};
    char *e = dw_entry_observe(&nodes[i].cfg, nodes[i].cfg.node_id, false, st);
    assert_non_null(e);
    struct done d = {0};
    assert_int_equal(dw_peer_submit(nodes[i].peer, e, on_done, &d), 0);
    free(e);
    assert_int_equal(d.called, 0); /* never synchronous */
    assert_true(run_until(done_called, &d, 20000));
    assert_int_equal(d.called, 1);
    snprintf(err, errlen, "%s", d.err);
    return d.status;
}

/* Submits through node i once a leader is known. A submission that fails while the leadership
 * changes is tried again (observations are idempotent); one that fails under a steady leader
 * fails the test. */
static void submit_observe(int i, enum dw_health a, enum dw_health b)
{
    char err[256];

    for (int attempt = 0; attempt < 5; attempt++) {
        wait_leader();
        struct epoch ep = epoch_now();
        int status = try_submit(i, a, b, err, sizeof err);
        if (status == 0)
            return;
        if (epoch_held(&ep))
            fail_msg("submit from node %d: %d %s", i + 1, status, err);
        print_message("submit from node %d failed during a leader change (%s): again\n", i + 1,
                      err);
    }
    fail_msg("submit from node %d: the leadership never settled", i + 1);
}

/* ---- raw HTTP ---- */

/* auth: the bearer secret, NULL for none; node: the X-Drwatch-Node value, 0 for none. */
static struct tl_http_res http(const char *method, const char *addr, const char *path,
                               const char *auth, int node, const char *body, size_t body_len)
{
    char url[128], hdr[128], node_hdr[64];
    snprintf(url, sizeof url, "http://%s%s", addr, path);
    snprintf(hdr, sizeof hdr, "Authorization: Bearer %s", auth != NULL ? auth : "");
    snprintf(node_hdr, sizeof node_hdr, "X-Drwatch-Node: %d", node);
    const char *headers[3] = {NULL}, **h = headers;
    if (auth != NULL)
        *h++ = hdr;
    if (node != 0)
        *h++ = node_hdr;
    struct dw_http_opts o = {
        .method = method,
        .url = url,
        .headers = headers,
        .body = body,
        .body_len = body_len,
        .timeout_ms = 3000,
    };
    struct tl_http_res r = {0};
    assert_int_equal(dw_http_request(curlm, &o, tl_on_http_res, &r), 0);
    assert_true(run_until(flag_set, &r.done, 5000));
    return r;
}

/* ---- what the nodes log ---- */

/* stderr (where dw_log writes) goes to a temporary file until capture_end. */
static FILE *capture_begin(int *saved)
{
    fflush(stderr);
    FILE *f = tmpfile();
    assert_non_null(f);
    *saved = dup(2);
    assert_true(*saved >= 0);
    assert_true(dup2(fileno(f), 2) >= 0);
    return f;
}

/* Restores stderr; returns what was written meanwhile (free it). */
static char *capture_end(FILE *f, int saved)
{
    fflush(stderr);
    assert_true(dup2(saved, 2) >= 0);
    close(saved);
    long n = ftell(f);
    assert_true(n >= 0);
    char *text = calloc(1, (size_t)n + 1);
    assert_non_null(text);
    rewind(f);
    assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return text;
}

static int count_lines_with(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* ---- the cluster's life ---- */

/* N bootstrapped nodes on fresh data dirs; nodes[N..] left empty for one that joins. */
static void cluster_start(void)
{
    memset(nodes, 0, sizeof nodes);
    memset(dirs, 0, sizeof dirs);
    n_nodes = N;
    tl_free_ports(SOCK_STREAM, ports, 2 * MAX_NODES);
    for (int i = 0; i < N; i++) {
        assert_int_equal(tl_tmpdir(dirs[i], sizeof dirs[i], "drwatch-raftio"), 0);
        fill_config(&nodes[i].cfg, i, N);
    }
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(dw_curlm_init(&curlm, &loop), 0);
    for (int i = 0; i < N; i++)
        start_node(i);
}

/* Closes the nodes still running and removes every data dir. */
static void cluster_stop(void)
{
    int closed = 0, running = 0;
    for (int i = 0; i < MAX_NODES; i++)
        dw_peer_close(nodes[i].peer);
    for (int i = 0; i < MAX_NODES; i++)
        if (nodes[i].raft != NULL) {
            dw_raft_close(nodes[i].raft, on_closed, &closed);
            nodes[i].raft = NULL;
            running++;
        }
    dw_curlm_close(curlm);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(closed, running);
    for (int i = 0; i < MAX_NODES; i++) {
        dw_fsm_close(nodes[i].fsm);
        nodes[i].fsm = NULL;
        if (dirs[i][0] != '\0')
            tl_rmtree(dirs[i]);
    }
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- tests ---- */

static void test_cluster(void **state)
{
    (void)state;
    char err[256];
    cluster_start();

    /* A second process on the same data_dir is refused. */
    struct dw_fsm *f2;
    struct dw_raft *r2;
    assert_int_equal(dw_fsm_open(&f2, &nodes[0].cfg, err, sizeof err), 0);
    assert_int_equal(dw_raft_start(&r2, &loop, &nodes[0].cfg, f2, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "in use by another process"));
    dw_fsm_close(f2);

    /* Before any election: "no leader", reported later, never from within submit. */
    struct done early = {0};
    assert_int_equal(dw_peer_submit(nodes[1].peer, "{}", on_done, &early), 0);
    assert_int_equal(early.called, 0);
    assert_true(run_until(done_called, &early, 10000));
    assert_int_not_equal(early.status, 0);
    assert_non_null(strstr(early.err, "leader"));

    int l = wait_leader();
    assert_true(l >= 0);
    assert_string_equal(dw_raft_state_name(nodes[l].raft), "leader");
    assert_true(dw_raft_term(nodes[l].raft) >= 1);
    int f = (l + 1) % N, g = (l + 2) % N;
    assert_string_equal(dw_raft_state_name(nodes[f].raft), "follower");
    assert_int_equal(dw_raft_propose(nodes[f].raft, "{}", on_done, NULL, err, sizeof err), -1);
    assert_string_equal(err, "not leader");

    /* Through a follower (forwarded), then the leader itself (local): exactly one forward
     * from the follower, served by the leader. The counts are taken over a round with one
     * leader throughout; a round that saw an election is done again. */
    struct dw_peer_stats st, f0, l0;
    for (int attempt = 0;; attempt++) {
        if (attempt == 5)
            fail_msg("no round of submissions under a steady leader");
        l = wait_leader();
        f = (l + 1) % N;
        g = (l + 2) % N;
        dw_peer_stats(nodes[f].peer, &f0);
        dw_peer_stats(nodes[l].peer, &l0);
        struct epoch ep = epoch_now();
        char ferr[256] = "", lerr[256] = "";
        int fs = try_submit(f, DW_DOWN, DW_UP, ferr, sizeof ferr);
        int ls = fs == 0 ? try_submit(l, DW_DOWN, DW_UP, lerr, sizeof lerr) : -1;
        if (!epoch_held(&ep)) {
            print_message("the leadership changed during the submissions: again\n");
            continue;
        }
        if (fs != 0)
            fail_msg("submit from follower %d: %d %s", f + 1, fs, ferr);
        if (ls != 0)
            fail_msg("submit from leader %d: %d %s", l + 1, ls, lerr);
        dw_peer_stats(nodes[f].peer, &st);
        assert_int_equal(st.forwarded - f0.forwarded, 1);
        assert_int_equal(st.forward_failures - f0.forward_failures, 0);
        dw_peer_stats(nodes[l].peer, &st);
        assert_int_equal(st.received - l0.received, 1);
        assert_int_equal(st.forwarded - l0.forwarded, 0); /* the leader proposed locally */
        break;
    }
    assert_true(run_until(converged, NULL, 20000));
    assert_same_state();
    for (int i = 0; i < N; i++) {
        assert_int_equal(dw_fsm_site_verdict(nodes[i].fsm, 0), DW_DOWN);
        assert_true(dw_fsm_applied(nodes[i].fsm) >= 3); /* leader entry + 2 observations */
        assert_int_equal(dw_fsm_rejected(nodes[i].fsm), 0);
        assert_true(nodes[i].applied_calls > 0);
    }

    /* The peer server's answers. The secret is checked before anything else, on any node. */
    const char *la = nodes[l].cfg.members[l].peer_address;
    dw_peer_stats(nodes[l].peer, &l0);
    struct tl_http_res r = http("GET", la, "/v1/ping", "wrong", f + 1, NULL, 0);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.body, "unauthorized"));
    r = http("GET", la, "/v1/ping", NULL, f + 1, NULL, 0);
    assert_int_equal(r.status, 401);
    char longer[80];
    snprintf(longer, sizeof longer, "%sx", pair_secret(f, l));
    r = http("GET", la, "/v1/ping", longer, f + 1, NULL, 0);
    assert_int_equal(r.status, 401);
    /* A secret f shares with g is not one the leader knows. */
    r = http("GET", la, "/v1/ping", pair_secret(f, g), f + 1, NULL, 0);
    assert_int_equal(r.status, 401);
    dw_peer_stats(nodes[l].peer, &st);
    assert_int_equal(st.rejected_auth - l0.rejected_auth, 4);
    assert_int_equal(st.rejected_identity - l0.rejected_identity, 0);
    /* What a follower says of the leader, and the leader's check of an entry: against the
     * leader of the moment, over a round without an election. */
    for (int attempt = 0;; attempt++) {
        if (attempt == 5)
            fail_msg("no round of requests under a steady leader");
        l = wait_leader();
        f = (l + 1) % N;
        g = (l + 2) % N;
        la = nodes[l].cfg.members[l].peer_address;
        const char *fa = nodes[f].cfg.members[f].peer_address;
        struct epoch ep = epoch_now();
        dw_peer_stats(nodes[l].peer, &l0);
        struct tl_http_res ping = http("GET", fa, "/v1/ping", pair_secret(l, f), l + 1, NULL, 0);
        struct tl_http_res refused =
            http("POST", fa, "/v1/propose", pair_secret(g, f), g + 1, "{}", 2);
        struct tl_http_res bogus = http("POST", la, "/v1/propose", pair_secret(f, l), f + 1,
                                        "{\"v\":1,\"type\":\"bogus\"}", 22);
        /* well-formed, but only the leader's own admin socket may propose it */
        static const char hold[] = "{\"v\":1,\"type\":\"hold\",\"group\":\"carrier-1\","
                                   "\"action\":\"release\",\"by_operator\":\"mallory\"}";
        struct tl_http_res held = http("POST", la, "/v1/propose", pair_secret(f, l), f + 1, hold,
                                       sizeof hold - 1);
        if (!epoch_held(&ep)) {
            print_message("the leadership changed during the requests: again\n");
            continue;
        }
        char want[64];
        snprintf(want, sizeof want, "\"leader\":%d", l + 1);
        assert_int_equal(ping.status, 200);
        assert_non_null(strstr(ping.body, want));
        assert_int_equal(refused.status, 421);
        assert_non_null(strstr(refused.body, want));
        assert_int_equal(bogus.status, 400);
        assert_int_equal(held.status, 403);
        dw_peer_stats(nodes[l].peer, &st);
        assert_int_equal(st.rejected_bad - l0.rejected_bad, 2);
        break;
    }
    /* A member speaks only for itself (issue 6): follower f, holding only what it shares with
     * each other member, posts to the leader an observation of node g, then one naming g as
     * its sender, then one naming nobody; only its own, in its own name, is taken. */
    for (int attempt = 0;; attempt++) {
        if (attempt == 5)
            fail_msg("no round of identity checks under a steady leader");
        l = wait_leader();
        f = (l + 1) % N;
        g = (l + 2) % N;
        la = nodes[l].cfg.members[l].peer_address;
        enum dw_health views[2] = {DW_UP, DW_UP};
        char *of_g = dw_entry_observe(&nodes[f].cfg, (uint64_t)g + 1, false, views);
        char *of_f = dw_entry_observe(&nodes[f].cfg, (uint64_t)f + 1, false, views);
        assert_non_null(of_g);
        assert_non_null(of_f);
        struct epoch ep = epoch_now();
        dw_peer_stats(nodes[l].peer, &l0);
        uint64_t applied0 = dw_fsm_applied(nodes[l].fsm);
        const char *key = pair_secret(f, l);
        int saved;
        FILE *log = capture_begin(&saved);
        struct tl_http_res other = http("POST", la, "/v1/propose", key, f + 1, of_g, strlen(of_g));
        struct tl_http_res as_g = http("POST", la, "/v1/propose", key, g + 1, of_g, strlen(of_g));
        struct tl_http_res nameless = http("POST", la, "/v1/propose", key, 0, of_f, strlen(of_f));
        uint64_t applied1 = dw_fsm_applied(nodes[l].fsm);
        char *logged = capture_end(log, saved);
        struct tl_http_res own = http("POST", la, "/v1/propose", key, f + 1, of_f, strlen(of_f));
        free(of_g);
        free(of_f);
        /* Three refusals within 10 s: one line (a retry may fall in the same 10 s: none). */
        int lines = count_lines_with(logged, "refused a request");
        bool secret_logged = strstr(logged, "secret-of-members") != NULL;
        free(logged);
        if (!epoch_held(&ep)) {
            print_message("the leadership changed during the identity checks: again\n");
            continue;
        }
        if (attempt == 0)
            assert_int_equal(lines, 1);
        else
            assert_true(lines <= 1);
        assert_false(secret_logged);
        char want[160];
        assert_int_equal(other.status, 403);
        snprintf(want, sizeof want, "node: member %d may only forward its own observations, "
                 "not node %d's", f + 1, g + 1);
        assert_non_null(strstr(other.body, want));
        assert_int_equal(as_g.status, 403);
        snprintf(want, sizeof want, "X-Drwatch-Node: names node %d but the credential is "
                 "member %d's", g + 1, f + 1);
        assert_non_null(strstr(as_g.body, want));
        assert_int_equal(nameless.status, 403);
        assert_non_null(strstr(nameless.body, "X-Drwatch-Node: missing"));
        assert_int_equal(applied1, applied0); /* nothing refused reached the log */
        if (own.status != 200)
            fail_msg("own observation: %ld %s", own.status, own.body);
        dw_peer_stats(nodes[l].peer, &st);
        assert_int_equal(st.rejected_identity - l0.rejected_identity, 3);
        assert_int_equal(st.rejected_auth - l0.rejected_auth, 0);
        break;
    }

    r = http("GET", la, "/v1/nothing", pair_secret(f, l), f + 1, NULL, 0);
    assert_int_equal(r.status, 404);
    char *big = malloc(DW_ENTRY_MAX + 10);
    memset(big, ' ', DW_ENTRY_MAX + 10);
    r = http("POST", la, "/v1/propose", pair_secret(f, l), f + 1, big, DW_ENTRY_MAX + 10);
    free(big);
    if (r.status != 413)
        fail_msg("oversize: status %ld curl %d %s", r.status, (int)r.code, r.body);

    /* Enough entries for snapshots, with one node down; it restarts from disk (snapshot
     * restore + replay) and catches up. */
    stop_node(g);
    for (int k = 0; k < 12; k++)
        submit_observe(k % 2 ? f : l, k % 2 ? DW_UP : DW_DOWN, DW_UP);
    start_node(g);
    assert_true(run_until(converged, NULL, 20000));
    assert_same_state();

    /* Leader change: the leader of the moment goes, a new one takes office and accepts
     * entries through the remaining follower. */
    l = wait_leader();
    stop_node(l);
    int l2 = wait_leader();
    assert_true(l2 >= 0 && l2 != l);
    submit_observe(3 - l - l2, DW_UP, DW_UP); /* the third node */
    start_node(l);
    assert_true(run_until(converged, NULL, 20000));
    assert_same_state();

    /* A leader whose wall clock jumps ten minutes ahead stamps the time it has measured. */
    static const int64_t ten_minutes = 600000;
    for (int attempt = 0;; attempt++) {
        if (attempt == 5)
            fail_msg("no entry committed under a steady leader with its clock ahead");
        l = wait_leader();
        struct epoch ep = epoch_now();
        uint64_t clamped = dw_raft_stamps_clamped(nodes[l].raft);
        dw_raft_set_wall_clock(nodes[l].raft, wall_ahead, (void *)&ten_minutes);
        int status = try_submit(l, DW_UP, DW_UP, err, sizeof err);
        dw_raft_set_wall_clock(nodes[l].raft, NULL, NULL);
        if (status != 0 || !epoch_held(&ep))
            continue;
        assert_true(dw_raft_stamps_clamped(nodes[l].raft) > clamped);
        assert_true(dw_fsm_last_ts(nodes[l].fsm) <= real_wall() + DW_STAMP_SLACK_MS);
        break;
    }

    /* A leader in TILT stamps nothing and hands leadership to another voter. */
    l = wait_leader();
    dw_raft_set_tilt(nodes[l].raft, true);
    assert_false(dw_raft_is_leader(nodes[l].raft));
    assert_int_equal(dw_raft_propose(nodes[l].raft, "{}", NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "TILT"));
    assert_true(run_until(another_leads, &l, 10000));
    assert_true(dw_raft_tilt_handovers(nodes[l].raft) >= 1);
    submit_observe(l, DW_UP, DW_UP); /* forwarded to the new leader */
    dw_raft_set_tilt(nodes[l].raft, false);
    assert_true(run_until(converged, NULL, 20000));
    assert_same_state();
    cluster_stop();
}

/* ---- membership changes ---- */

/* Node *arg stands for election (pre-vote included: a candidate without a new term). */
static bool campaigns(void *arg)
{
    return strcmp(dw_raft_state_name(nodes[*(int *)arg].raft), "follower") != 0;
}

/* Every running node's raft configuration is exactly ids 1..*arg, all voters at their
 * configured addresses. */
static bool voters_are(void *arg)
{
    int want = *(const int *)arg;
    for (int i = 0; i < n_nodes; i++) {
        struct dw_raft_server srv[MAX_NODES + 1];
        if (dw_raft_configuration(nodes[i].raft, srv, MAX_NODES + 1) != want)
            return false;
        for (int k = 0; k < want; k++) {
            const struct dw_member *m = dw_config_member(&nodes[MAX_NODES - 1].cfg, srv[k].id);
            if (m == NULL || (int)srv[k].id > want ||
                strcmp(srv[k].address, m->raft_address) != 0 ||
                strcmp(dw_raft_role_name(srv[k].role), "voter") != 0)
                return false;
        }
    }
    return true;
}

/* Makes node i a voter (add) or removes it through the leader of the moment; the callback's
 * status must be 0. A change that fails while the leadership changes is run again: both are
 * idempotent, which the retry relies on. */
static void change_member(bool add, int i)
{
    const char *addr = nodes[MAX_NODES - 1].cfg.members[i].raft_address;
    for (int attempt = 0; attempt < 5; attempt++) {
        int l = wait_leader();
        if (l == i) {
            /* a leader is not removed: it hands over first, as an operator would */
            dw_raft_set_tilt(nodes[l].raft, true);
            assert_true(run_until(another_leads, &l, 10000));
            dw_raft_set_tilt(nodes[l].raft, false);
            continue;
        }
        struct epoch ep = epoch_now();
        struct done d = {0};
        char err[256];
        int rc = add ? dw_raft_add_voter(nodes[l].raft, (uint64_t)i + 1, addr, on_done, &d, err,
                                         sizeof err)
                     : dw_raft_remove_member(nodes[l].raft, (uint64_t)i + 1, on_done, &d, err,
                                             sizeof err);
        if (rc == 0) {
            assert_int_equal(d.called, 0); /* never synchronous */
            assert_true(run_until(done_called, &d, 30000));
            assert_int_equal(d.called, 1);
            if (d.status == 0)
                return;
            snprintf(err, sizeof err, "%s", d.err);
        }
        if (epoch_held(&ep))
            fail_msg("%s node %d: %s", add ? "add" : "remove", i + 1, err);
        print_message("%s node %d failed during a leader change (%s): again\n",
                      add ? "add" : "remove", i + 1, err);
    }
    fail_msg("%s node %d: the leadership never settled", add ? "add" : "remove", i + 1);
}

static void test_membership(void **state)
{
    (void)state;
    char err[256];
    int j = N; /* the joining node's index */
    struct done d;
    int l;
    cluster_start();
    /* The operator configures the joining node with the whole membership, itself included. */
    assert_int_equal(tl_tmpdir(dirs[j], sizeof dirs[j], "drwatch-raftio"), 0);
    fill_config(&nodes[j].cfg, j, N + 1);
    nodes[j].cfg.join = true;
    const char *addr = nodes[j].cfg.members[j].raft_address;

    /* Not running yet: added, it cannot catch up, so it is not promoted and stays a spare. */
    for (int attempt = 0;; attempt++) {
        if (attempt == 5)
            fail_msg("no failed promotion under a steady leader");
        l = wait_leader();
        struct epoch ep = epoch_now();
        memset(&d, 0, sizeof d);
        assert_int_equal(dw_raft_add_voter(nodes[l].raft, (uint64_t)j + 1, addr, on_done, &d,
                                           err, sizeof err), 0);
        assert_true(run_until(done_called, &d, 30000));
        if (!epoch_held(&ep))
            continue;
        assert_int_not_equal(d.status, 0);
        assert_non_null(strstr(d.err, "did not catch up"));
        struct dw_raft_server srv[MAX_NODES];
        assert_int_equal(dw_raft_configuration(nodes[l].raft, srv, MAX_NODES), N + 1);
        assert_int_equal(srv[j].id, j + 1);
        assert_string_equal(dw_raft_role_name(srv[j].role), "spare");
        break;
    }

    start_node(j);
    n_nodes = N + 1;
    assert_int_equal(dw_raft_configuration(nodes[j].raft, NULL, 0), 0);
    /* Alone with an empty configuration (a spare gets no log), it never stands for election. */
    assert_false(run_until(campaigns, &j, 2500));

    memset(&d, 0, sizeof d);
    l = wait_leader();
    int f = (l + 1) % N;
    assert_int_equal(dw_raft_add_voter(nodes[f].raft, (uint64_t)j + 1, addr, on_done, &d, err,
                                       sizeof err), -1);
    assert_string_equal(err, "not leader");
    assert_int_equal(dw_raft_remove_member(nodes[f].raft, 1, on_done, &d, err, sizeof err), -1);
    assert_string_equal(err, "not leader");
    assert_int_equal(d.called, 0);

    change_member(true, j); /* now only promoted */
    int four = N + 1, three = N;
    assert_true(run_until(voters_are, &four, 20000));

    /* The new voter applies what comes after it joined. */
    for (int attempt = 0;; attempt++) {
        if (attempt == 5)
            fail_msg("no entry committed under a steady leader");
        l = wait_leader();
        struct epoch ep = epoch_now();
        char *e = dw_entry_leader((uint64_t)l + 1);
        assert_non_null(e);
        memset(&d, 0, sizeof d);
        int rc = dw_raft_propose(nodes[l].raft, e, on_done, &d, err, sizeof err);
        free(e);
        if (rc == 0)
            assert_true(run_until(done_called, &d, 20000));
        if (rc != 0 || d.status != 0 || !epoch_held(&ep))
            continue;
        assert_true(run_until(converged, NULL, 20000));
        assert_int_equal(dw_fsm_last_ts(nodes[j].fsm), dw_fsm_last_ts(nodes[l].fsm));
        break;
    }

    /* Again: nothing to do, reported later. */
    change_member(true, j);
    assert_true(voters_are(&four));
    /* Known at another address: refused, naming both. */
    l = wait_leader();
    assert_int_equal(dw_raft_add_voter(nodes[l].raft, (uint64_t)j + 1, "127.0.0.1:1", on_done,
                                       &d, err, sizeof err), -1);
    assert_non_null(strstr(err, addr));
    assert_non_null(strstr(err, "127.0.0.1:1"));
    /* The leader does not remove itself. */
    assert_int_equal(dw_raft_remove_member(nodes[l].raft, (uint64_t)l + 1, on_done, &d, err,
                                           sizeof err), -1);
    assert_non_null(strstr(err, "hand leadership over"));

    change_member(false, j);
    /* Removed, it no longer hears from the leader: it goes, as an operator would stop it. */
    stop_node(j);
    n_nodes = N;
    assert_true(run_until(voters_are, &three, 20000));
    /* Again: not in the configuration, nothing to do. */
    change_member(false, j);
    cluster_stop();
}

/* ---- a node that cannot apply an entry stops ---- */

/* Child: a one-member cluster whose database refuses history rows, so applying its first entry
 * (the new leader's) fails on this node only. Returns only if the process was not stopped. */
static int child_with_broken_db(void)
{
    char err[256];
    struct dw_fsm *fsm;
    struct dw_raft *raft;

    fill_config(&nodes[0].cfg, 0, 1);
    if (uv_loop_init(&loop) != 0 || dw_fsm_open(&fsm, &nodes[0].cfg, err, sizeof err) != 0 ||
        sqlite3_exec(dw_fsm_db(fsm), "CREATE TEMP TRIGGER boom BEFORE INSERT ON history"
                                     " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END",
                     NULL, NULL, NULL) != SQLITE_OK ||
        dw_raft_start(&raft, &loop, &nodes[0].cfg, fsm, NULL, NULL, err, sizeof err) != 0)
        return 1;
    run_until(flag_set, &(int){0}, 10000);
    return 2;
}

static void test_apply_failure_stops_the_node(void **state)
{
    (void)state;
    char log_path[128], buf[4096] = "";
    int status = 0;
    pid_t pid;
    FILE *f;

    tl_free_ports(SOCK_STREAM, ports, 2 * MAX_NODES);
    assert_int_equal(tl_tmpdir(dirs[0], sizeof dirs[0], "drwatch-raftio"), 0);
    snprintf(log_path, sizeof log_path, "%s.log", dirs[0]);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (freopen(log_path, "w", stderr) == NULL)
            _exit(3);
        _exit(child_with_broken_db());
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    f = fopen(log_path, "r");
    assert_non_null(f);
    buf[fread(buf, 1, sizeof buf - 1, f)] = '\0';
    fclose(f);
    unlink(log_path);
    tl_rmtree(dirs[0]);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 70)
        fail_msg("child status %d, log:\n%s", status, buf);
    assert_non_null(strstr(buf, "level=error component=raft"));
    assert_non_null(strstr(buf, "cannot apply the entry after index"));
    assert_non_null(strstr(buf, "disk on fire"));
}

/* ---- httpd on its own: deferred replies, oversize bodies, close with waiting requests ---- */

struct pending_reply {
    uv_timer_t timer;
    struct dw_httpd_req *req;
    int handled;
    bool hold; /* never answer: the server's close must */
};

static void on_reply_timer(uv_timer_t *t)
{
    struct pending_reply *p = t->data;
    dw_httpd_reply(p->req, 202, "text/plain", "later", 5);
}

static void deferred_handler(void *data, struct dw_httpd_req *req, const char *method,
                             const char *path, const char *body, size_t body_len)
{
    struct pending_reply *p = data;
    p->handled++;
    if (strcmp(path, "/now") == 0) {
        char out[64];
        int n = snprintf(out, sizeof out, "%s %zu %s", method, body_len, body);
        dw_httpd_reply(req, 200, "text/plain", out, (size_t)n);
        return;
    }
    p->req = req;
    if (!p->hold)
        uv_timer_start(&p->timer, on_reply_timer, 20, 0);
}

static bool held_request_in(void *arg)
{
    return ((struct pending_reply *)arg)->req != NULL;
}

static void test_httpd(void **state)
{
    (void)state;
    char err[256], addr[32];
    int port = tl_free_port(SOCK_STREAM);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(dw_curlm_init(&curlm, &loop), 0);

    struct dw_httpd *bad;
    assert_int_equal(dw_httpd_start(&bad, &loop, "localhost:80", 10, deferred_handler, NULL,
                                     err, sizeof err), -1);

    struct pending_reply p = {0};
    uv_timer_init(&loop, &p.timer);
    p.timer.data = &p;
    struct dw_httpd *h;
    if (dw_httpd_start(&h, &loop, addr, 100, deferred_handler, &p, err, sizeof err) != 0)
        fail_msg("%s", err);
    /* The port is taken now. */
    assert_int_equal(dw_httpd_start(&bad, &loop, addr, 100, deferred_handler, &p, err, sizeof err), -1);

    struct tl_http_res r = http("POST", addr, "/now", NULL, 0, "hello", 5);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "POST 5 hello");
    r = http("GET", addr, "/later", NULL, 0, NULL, 0);
    assert_int_equal(r.status, 202);
    assert_string_equal(r.body, "later");
    char big[200];
    memset(big, 'x', sizeof big);
    int before = p.handled;
    r = http("POST", addr, "/now", NULL, 0, big, sizeof big);
    assert_int_equal(r.status, 413);
    assert_int_equal(p.handled, before);

    /* A request left waiting is answered 503 when the server closes. */
    p.hold = true;
    char url[64];
    snprintf(url, sizeof url, "http://%s/held", addr);
    struct dw_http_opts o = {.method = "GET", .url = url, .timeout_ms = 3000};
    struct tl_http_res held = {0};
    assert_int_equal(dw_http_request(curlm, &o, tl_on_http_res, &held), 0);
    p.req = NULL;
    assert_true(run_until(held_request_in, &p, 3000));
    dw_httpd_close(h);
    assert_true(run_until(flag_set, &held.done, 3000));
    assert_true(held.status == 503 || held.code != CURLE_OK);

    uv_close((uv_handle_t *)&p.timer, NULL);
    dw_curlm_close(curlm);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    dw_log_set_level(getenv("DW_TEST_VERBOSE") != NULL ? DW_LOG_DEBUG : DW_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_httpd),
        cmocka_unit_test(test_cluster),
        cmocka_unit_test(test_membership),
        cmocka_unit_test(test_apply_failure_stops_the_node),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
