/* The simulation's engine and scenario: virtual clock, event queue, the seed's fault schedule,
 * and the command line (tests/sim/run). */
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "drwatch/config.h"
#include "drwatch/log.h"
#include "sim.h"

/* ---- randomness: splitmix64, one stream per seed ---- */

uint32_t sim_rand(struct sim *s)
{
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}

unsigned sim_between(struct sim *s, unsigned lo, unsigned hi)
{
    return lo + sim_rand(s) % (hi - lo + 1);
}

bool sim_chance(struct sim *s, unsigned percent)
{
    return sim_rand(s) % 100 < percent;
}

/* Fault k draws from its own stream: leaving one out changes no other. */
static uint64_t substream(const struct sim *s, uint64_t k)
{
    return (s->o.seed * 0x9e3779b97f4a7c15ull) ^ (k * 0xd1b54a32d192ed03ull) ^ 0x5bd1e995ull;
}

static bool dropped(const uint64_t *set, int k)
{
    return k < 256 && (set[k / 64] >> (k % 64)) & 1;
}

uint64_t sim_now(const struct sim *s)
{
    return raft_fixture_time((struct raft_fixture *)&s->f);
}

void sim_trace(struct sim *s, const char *fmt, ...)
{
    if (!s->o.trace)
        return;
    va_list ap;
    va_start(ap, fmt);
    printf("%8.3f ", sim_now(s) / 1000.0);
    vprintf(fmt, ap);
    putchar('\n');
    va_end(ap);
}

void sim_violation(struct sim *s, int invariant, const char *fmt, ...)
{
    if (s->violated)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof s->why, fmt, ap);
    va_end(ap);
    s->violated = invariant;
    s->stop = true;
    sim_trace(s, "VIOLATION of invariant %d: %s", invariant, s->why);
}

/* ---- events: a binary heap by (time, insertion order), so runs are deterministic ---- */

static bool ev_before(const struct ev *a, const struct ev *b)
{
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

void sim_at(struct sim *s, uint64_t delay_ms, sim_fn fn, void *p, int64_t x)
{
    sim_at_owned(s, delay_ms, fn, p, x, NULL);
}

void sim_at_owned(struct sim *s, uint64_t delay_ms, sim_fn fn, void *p, int64_t x,
                  void (*drop)(void *p))
{
    if (s->n_ev == s->cap_ev) {
        s->cap_ev = s->cap_ev ? 2 * s->cap_ev : 256;
        s->heap = realloc(s->heap, s->cap_ev * sizeof *s->heap);
        if (s->heap == NULL)
            abort();
    }
    size_t i = s->n_ev++;
    struct ev e = {.at = sim_now(s) + delay_ms, .seq = s->ev_seq++, .fn = fn, .p = p, .x = x,
                    .drop = drop};
    while (i > 0 && ev_before(&e, &s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = e;
}

static struct ev ev_pop(struct sim *s)
{
    struct ev top = s->heap[0], last = s->heap[--s->n_ev];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->n_ev)
            break;
        if (c + 1 < s->n_ev && ev_before(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!ev_before(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->n_ev > 0)
        s->heap[i] = last;
    return top;
}

static void run_due(struct sim *s)
{
    while (!s->stop && s->n_ev > 0 && s->heap[0].at <= sim_now(s)) {
        struct ev e = ev_pop(s);
        s->events++;
        e.fn(s, e.p, e.x);
    }
}

/* ---- the virtual clock as a dw_clock ---- */

struct dw_timer {
    struct sim *s;
    dw_timer_cb cb;
    void *data;
    uint64_t gen;  /* bumped by stop/start/free: older events are stale */
    bool dead;
};

static uint64_t vclock_now(void *ctx)
{
    return sim_now(ctx);
}

static void timer_fire(struct sim *s, void *p, int64_t gen)
{
    struct dw_timer *t = p;
    (void)s;
    if (!t->dead && t->gen == (uint64_t)gen)
        t->cb(t->data);
}

static struct dw_timer *vclock_timer_new(void *ctx, dw_timer_cb cb, void *data)
{
    struct sim *s = ctx;
    struct dw_timer *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    *t = (struct dw_timer){.s = s, .cb = cb, .data = data};
    if (s->n_timers == s->cap_timers) {
        s->cap_timers = s->cap_timers ? 2 * s->cap_timers : 64;
        s->timers = realloc(s->timers, s->cap_timers * sizeof *s->timers);
        if (s->timers == NULL)
            abort();
    }
    s->timers[s->n_timers++] = t; /* freed with the world: queued events may still name it */
    return t;
}

static void vclock_timer_start(struct dw_timer *t, uint64_t ms)
{
    t->gen++;
    sim_at(t->s, ms, timer_fire, t, (int64_t)t->gen);
}

static void vclock_timer_stop(struct dw_timer *t)
{
    t->gen++;
}

static void vclock_timer_free(struct dw_timer *t)
{
    if (t != NULL)
        t->dead = true;
}

void sim_clock(struct sim *s, struct dw_clock *out)
{
    *out = (struct dw_clock){.ctx = s, .now_ms = vclock_now, .timer_new = vclock_timer_new,
                             .timer_start = vclock_timer_start, .timer_stop = vclock_timer_stop,
                             .timer_free = vclock_timer_free};
}

/* ---- the cluster's configuration ---- */

/* Failback, its back-off and the flap window at the scale of a run (about 40 s of faults). */
#define SIM_GROUP_POLICY                                                                     \
    "\"stable_for_ms\":4000,\"failback_retry_ms\":2000,\"failback_retry_max_ms\":8000,"       \
    "\"max_auto_operations\":4,\"flap_window_ms\":30000"

/* Two Premise sites and BYOC Cloud. carrier-1 chains A -> B -> Cloud; carrier-2 chains B -> A
 * with no Cloud layer, so it may legitimately have no target in service. */
static const char cluster_doc_fmt[] =
    "{\"cluster\":{\"election_timeout_ms\":1000,\"heartbeat_ms\":100,"
    "\"observation_ttl_ms\":6000,\"refresh_interval_ms\":2000,\"min_submit_interval_ms\":250,"
    "\"members\":[%s]},"
    "\"probe\":{\"interval_ms\":500,\"timeout_ms\":400,\"fail_threshold\":3,"
    "\"recover_threshold\":3},"
    "\"tilt\":{\"abstain_ms\":10000},"
    "\"genesys\":{\"request_timeout_ms\":6000,\"verify_timeout_ms\":4000,"
    "\"verify_interval_ms\":500,\"step_timeout_ms\":12000},"
    "\"sites\":[{\"id\":\"site-a\",\"edges\":[{\"id\":\"a1\",\"health_url\":\"http://127.0.0.1:9/\"}]},"
    "{\"id\":\"site-b\",\"edges\":[{\"id\":\"b1\",\"health_url\":\"http://127.0.0.1:9/\"}]}],"
    "\"failover_groups\":["
    "{\"id\":\"carrier-1\"," SIM_GROUP_POLICY ",\"targets\":[{\"id\":\"premise-a\",\"site\":\"site-a\","
    "\"trunk_base_ids\":[\"tbA1\"]},{\"id\":\"premise-b\",\"site\":\"site-b\","
    "\"trunk_base_ids\":[\"tbB1\"]},{\"id\":\"cloud\",\"trunk_base_ids\":[\"tbC1\"]}]},"
    "{\"id\":\"carrier-2\"," SIM_GROUP_POLICY ",\"targets\":[{\"id\":\"premise-b\",\"site\":\"site-b\","
    "\"trunk_base_ids\":[\"tbB2\"]},{\"id\":\"premise-a\",\"site\":\"site-a\","
    "\"trunk_base_ids\":[\"tbA2\"]}]}]}";

static int make_config(struct sim *s)
{
    char members[SIM_NODES_MAX * 128] = "";
    size_t k = 0;
    for (int i = 0; i < s->n; i++)
        k += (size_t)snprintf(members + k, sizeof members - k,
                              "%s{\"id\":%d,\"raft_address\":\"127.0.0.1:%d\","
                              "\"peer_address\":\"127.0.0.1:%d\"}",
                              i ? "," : "", i + 1, 7001 + i, 8001 + i);
    size_t len = sizeof cluster_doc_fmt + strlen(members);
    s->cfg_doc = malloc(len);
    snprintf(s->cfg_doc, len, cluster_doc_fmt, members);
    struct dw_config_errors errs = {0};
    s->cfg = calloc(1, sizeof *s->cfg);
    if (dw_config_parse_cluster(s->cfg_doc, strlen(s->cfg_doc), s->cfg, &errs) != 0) {
        fprintf(stderr, "sim: the simulation's own config is invalid: %s\n",
                errs.n ? errs.msg[0] : "?");
        return -1;
    }
    static const char *const tbs[] = {"tbA1", "tbB1", "tbC1", "tbB2", "tbA2"};
    static const int tb_site[] = {0, 1, -1, 1, 0};
    s->g.n_tb = SIM_TBS;
    for (int t = 0; t < SIM_TBS; t++) {
        snprintf(s->g.tb[t].id, sizeof s->g.tb[t].id, "%s", tbs[t]);
        s->g.tb[t].site = tb_site[t];
        s->g.tb[t].version = 1;
        /* each group's primary carries calls at the start, as the FSM assumes */
        s->g.tb[t].enabled = t == 0 || t == 3;
    }
    return 0;
}

/* ---- the scenario ---- */

static const char *const fault_names[] = {
    "site", "flap", "partition", "one_way", "crash", "genesys_cut", "genesys_faults", "latency",
    "clock_jump", "overload", "transfer", "config", "release", "maintenance", "manual",
};
enum { F_SITE, F_FLAP, F_PARTITION, F_ONE_WAY, F_CRASH, F_GCUT, F_GFAULTS, F_LATENCY, F_JUMP,
       F_OVERLOAD, F_TRANSFER, F_CONFIG, F_RELEASE, F_MAINT, F_MANUAL, F_COUNT };

static void recompute_links(struct sim *s)
{
    for (int i = 0; i < s->n; i++)
        for (int j = 0; j < s->n; j++) {
            if (i == j)
                continue;
            /* a dead process neither sends nor receives (raft_fixture_kill saturates too) */
            bool want = s->link[i][j] && s->node[i].alive && s->node[j].alive;
            bool sat = raft_fixture_saturated(&s->f, (unsigned)i, (unsigned)j);
            if (!want && !sat)
                raft_fixture_saturate(&s->f, (unsigned)i, (unsigned)j);
            else if (want && sat)
                raft_fixture_desaturate(&s->f, (unsigned)i, (unsigned)j);
        }
}

static void set_site(struct sim *s, int site, bool up)
{
    if (s->site_up[site] == up)
        return;
    s->site_up[site] = up;
    sim_trace(s, "site %c %s", 'a' + site, up ? "up" : "DOWN");
    for (int i = 0; i < s->n; i++)
        if (up && s->link_site[i][site])
            s->unreach_end[i][site] = sim_now(s);
}

static void set_site_link(struct sim *s, int i, int site, bool on)
{
    if (s->link_site[i][site] == on)
        return;
    s->link_site[i][site] = on;
    if (on && s->site_up[site])
        s->unreach_end[i][site] = sim_now(s);
}

static void ev_site(struct sim *s, void *p, int64_t x)
{
    (void)p;
    if (!s->faults_over) /* a flap still under way when the faults stop ends there */
        set_site(s, (int)(x >> 1), x & 1);
}

static void ev_heal_partition(struct sim *s, void *p, int64_t x)
{
    (void)p, (void)x;
    for (int i = 0; i < s->n; i++)
        for (int j = 0; j < s->n; j++)
            s->link[i][j] = true;
    recompute_links(s);
    sim_trace(s, "network healed");
}

static void ev_revive(struct sim *s, void *p, int64_t x)
{
    (void)p;
    struct sim_node *n = &s->node[x];
    if (n->alive)
        return;
    raft_fixture_revive(&s->f, (unsigned)x);
    sim_trace(s, "node %d restarts", (int)x + 1);
    node_start(n);
    recompute_links(s); /* revive reconnects to everyone, partition or not */
}

static void ev_gcut(struct sim *s, void *p, int64_t x)
{
    (void)p;
    s->g.cut[x >> 1] = x & 1;
    sim_trace(s, "node %d %s Genesys", (int)(x >> 1) + 1, (x & 1) ? "cut from" : "reaches");
}

static void ev_gfaults_off(struct sim *s, void *p, int64_t x)
{
    (void)p, (void)x;
    s->g.fault_pct = 0;
}

static void ev_latency(struct sim *s, void *p, int64_t x)
{
    (void)p;
    raft_fixture_set_network_latency(&s->f, (unsigned)(x >> 16), (unsigned)(x & 0xffff));
}

static void ev_overload_off(struct sim *s, void *p, int64_t x)
{
    (void)p;
    s->node[x].tilt_overload = false;
    sim_trace(s, "node %d keeps its schedule again", (int)x + 1);
}

static void ev_site_links_back(struct sim *s, void *p, int64_t x)
{
    (void)p;
    for (int site = 0; site < SIM_SITES; site++)
        set_site_link(s, (int)x, site, true);
}

static int alive_count(const struct sim *s)
{
    int k = 0;
    for (int i = 0; i < s->n; i++)
        k += s->node[i].alive;
    return k;
}

static int leader_index(const struct sim *s)
{
    for (int i = 0; i < s->n; i++)
        if (s->node[i].alive && node_is_leader(&s->node[i]))
            return i;
    return -1;
}

static void config_done(struct sim_node *n, int status, void *data)
{
    (void)n, (void)data, (void)status;
}

/* A config change the FSM may accept or refuse: carrier-2's chain order, or Genesys timings. */
static void propose_config_change(struct sim *s, int leader)
{
    struct sim_node *n = &s->node[leader];
    char *doc = dw_fsm_config_doc(n->fsm);
    if (doc == NULL)
        return;
    cJSON *d = cJSON_Parse(doc);
    free(doc);
    if (d == NULL)
        return;
    if (sim_chance(s, 50)) {
        cJSON *g = cJSON_GetArrayItem(cJSON_GetObjectItem(d, "failover_groups"), 1);
        cJSON *t = cJSON_GetObjectItem(g, "targets");
        cJSON *first = cJSON_DetachItemFromArray(t, 0);
        cJSON_AddItemToArray(t, first);
    } else {
        cJSON *gen = cJSON_GetObjectItem(d, "genesys");
        cJSON_DeleteItemFromObject(gen, "verify_timeout_ms");
        cJSON_AddNumberToObject(gen, "verify_timeout_ms", sim_between(s, 3, 6) * 1000);
    }
    char *e = dw_entry_config(d, dw_fsm_config_version(n->fsm), "sim", "scenario");
    cJSON_Delete(d);
    if (e) {
        sim_trace(s, "config change proposed by node %d", leader + 1);
        node_propose(n, e, config_done, NULL);
    }
    free(e);
}

static const char *const group_ids[] = {"carrier-1", "carrier-2"};
static const char *const site_ids[] = {"site-a", "site-b"};

/* An operator sets a maintenance window on a site or a group, or clears one. */
static void propose_maintenance(struct sim *s, int leader)
{
    bool group = sim_chance(s, 30), clear = sim_chance(s, 30);
    const char *id = group ? group_ids[sim_between(s, 0, 1)] : site_ids[sim_between(s, 0, 1)];
    unsigned ttl = sim_between(s, 10, 25) * 1000;
    char *e = dw_entry_maintenance(clear ? "clear" : "set", group ? "group" : "site", id, "sim",
                                   "scenario", ttl);
    if (e) {
        sim_trace(s, "maintenance %s of %s proposed by node %d", clear ? "clear" : "set", id,
                  leader + 1);
        node_propose(&s->node[leader], e, config_done, NULL);
    }
    free(e);
}

/* An operator switches a group over to one of its targets, or fails it back; the FSM refuses
 * what the moment does not allow. */
static void propose_manual(struct sim *s, int leader)
{
    static const char *const targets[2][3] = {{"premise-a", "premise-b", "cloud"},
                                              {"premise-b", "premise-a", NULL}};
    int g = (int)sim_between(s, 0, 1);
    bool failback = sim_chance(s, 40);
    const char *to = failback ? NULL : targets[g][sim_between(s, 0, g == 0 ? 2 : 1)];
    char request[32];
    snprintf(request, sizeof request, "sim-%d", s->n_faults);
    char *e = dw_entry_operate(failback ? "failback" : "switchover", group_ids[g], to, "sim",
                               request);
    if (e) {
        sim_trace(s, "%s of %s%s%s proposed by node %d", failback ? "failback" : "switchover",
                  group_ids[g], to ? " to " : "", to ? to : "", leader + 1);
        node_propose(&s->node[leader], e, config_done, NULL);
    }
    free(e);
}

static void inject(struct sim *s, void *p, int64_t x);

static void schedule_next_fault(struct sim *s)
{
    sim_at(s, sim_between(s, 300, 2500), inject, NULL, 0);
}

/* One fault, drawn from the seed; each one heals itself after a while. */
static void inject_one(struct sim *s);

static void inject(struct sim *s, void *p, int64_t x)
{
    (void)p, (void)x;
    if (s->faults_over)
        return;
    int k = s->n_faults++;
    uint64_t engine = s->rng;
    s->rng = substream(s, (uint64_t)k); /* its time to the next one too */
    schedule_next_fault(s);
    if (!dropped(s->o.drop, k)) {
        sim_trace(s, "fault #%d", k);
        inject_one(s);
    }
    s->rng = engine;
}

static void inject_one(struct sim *s)
{
    int kind = (int)sim_between(s, 0, F_COUNT - 1);
    int i = (int)sim_between(s, 0, (unsigned)s->n - 1);
    int leader = leader_index(s);
    /* half the node faults hit the leader: that is where they hurt */
    if (leader >= 0 && sim_chance(s, 50))
        i = leader;
    struct sim_node *n = &s->node[i];
    sim_trace(s, "fault: %s", fault_names[kind]);
    switch (kind) {
    case F_SITE: {
        int site = (int)sim_between(s, 0, SIM_SITES - 1);
        set_site(s, site, !s->site_up[site]);
        break;
    }
    case F_FLAP: {
        int site = (int)sim_between(s, 0, SIM_SITES - 1);
        uint64_t t = 0;
        bool up = s->site_up[site];
        for (int k = 0; k < (int)sim_between(s, 2, 8); k++) {
            t += sim_between(s, 200, 2500);
            up = !up;
            sim_at(s, t, ev_site, NULL, (site << 1) | up);
        }
        sim_trace(s, "site %c flaps", 'a' + site);
        break;
    }
    case F_PARTITION: { /* two-way: a random side against the rest */
        bool side[SIM_NODES_MAX];
        for (int k = 0; k < s->n; k++)
            side[k] = sim_chance(s, 50);
        side[i] = true;
        for (int a = 0; a < s->n; a++)
            for (int b = 0; b < s->n; b++)
                s->link[a][b] = side[a] == side[b];
        recompute_links(s);
        sim_trace(s, "partition: node %d's side against the rest", i + 1);
        sim_at(s, sim_between(s, 500, 6000), ev_heal_partition, NULL, 0);
        break;
    }
    case F_ONE_WAY: {
        int j = (int)sim_between(s, 0, (unsigned)s->n - 1);
        if (j == i)
            j = (i + 1) % s->n;
        if (sim_chance(s, 50)) {
            int t = i;
            i = j, j = t;
        }
        s->link[i][j] = false;
        recompute_links(s);
        sim_trace(s, "messages from node %d to node %d lost", i + 1, j + 1);
        sim_at(s, sim_between(s, 300, 5000), ev_heal_partition, NULL, 0);
        break;
    }
    case F_CRASH:
        if (!n->alive || alive_count(s) <= s->n / 2 + 1)
            break;
        node_crash(n);
        sim_at(s, sim_between(s, 100, 6000), ev_revive, NULL, i);
        break;
    case F_GCUT:
        s->g.cut[i] = true;
        sim_trace(s, "node %d cut from Genesys", i + 1);
        sim_at(s, sim_between(s, 500, 8000), ev_gcut, NULL, i << 1);
        break;
    case F_GFAULTS:
        s->g.fault_pct = sim_between(s, 10, 60);
        sim_trace(s, "Genesys answers %u%% of requests badly", s->g.fault_pct);
        sim_at(s, sim_between(s, 1000, 8000), ev_gfaults_off, NULL, 0);
        break;
    case F_LATENCY: {
        unsigned ms = sim_between(s, 1, 400);
        raft_fixture_set_network_latency(&s->f, (unsigned)i, ms);
        sim_trace(s, "node %d's messages take %u ms", i + 1, ms);
        sim_at(s, sim_between(s, 500, 5000), ev_latency, NULL, ((int64_t)i << 16) | 15);
        break;
    }
    case F_JUMP: {
        int64_t d = (int64_t)sim_between(s, 3000, 120000) * (sim_chance(s, 50) ? 1 : -1);
        n->wall_offset += d;
        /* the node's TILT module sees its wall clock disagree with its monotonic one */
        n->tilt_until = sim_now(s) + s->cfg->tilt.abstain_ms;
        sim_trace(s, "node %d's wall clock jumps %+" PRId64 " ms", i + 1, d);
        break;
    }
    case F_OVERLOAD: {
        n->tilt_overload = true;
        sim_trace(s, "node %d overloaded: its probes run late and fail", i + 1);
        sim_at(s, sim_between(s, 1000, 10000), ev_overload_off, NULL, i);
        break;
    }
    case F_TRANSFER:
        if (leader >= 0)
            node_hand_over(&s->node[leader]);
        break;
    case F_CONFIG:
        if (leader >= 0)
            propose_config_change(s, leader);
        break;
    case F_MAINT:
        if (leader >= 0)
            propose_maintenance(s, leader);
        break;
    case F_MANUAL:
        if (leader >= 0)
            propose_manual(s, leader);
        break;
    case F_RELEASE:
        if (leader >= 0) {
            char *e = dw_entry_hold_release(sim_chance(s, 50) ? "carrier-1" : "carrier-2", "sim");
            if (e)
                node_propose(&s->node[leader], e, config_done, NULL);
            free(e);
        }
        break;
    }
    if (kind != F_SITE && kind != F_FLAP && kind != F_CONFIG && kind != F_RELEASE &&
        kind != F_TRANSFER && kind != F_MAINT && kind != F_MANUAL) {
        /* a site cut from one node only */
        if (sim_chance(s, 10)) {
            int site = (int)sim_between(s, 0, SIM_SITES - 1);
            set_site_link(s, i, site, false);
            sim_trace(s, "node %d cannot reach site %c", i + 1, 'a' + site);
            sim_at(s, sim_between(s, 500, 8000), ev_site_links_back, NULL, i);
        }
    }
}

static void ev_strike(struct sim *s, void *p, int64_t x)
{
    (void)p;
    int i = (int)(x >> 2);
    struct sim_node *n = &s->node[i];
    if (s->faults_over || !n->alive)
        return;
    switch (x & 3) {
    case 0:
        if (alive_count(s) > s->n / 2 + 1) {
            node_crash(n);
            sim_at(s, sim_between(s, 100, 4000), ev_revive, NULL, i);
        }
        break;
    case 1:
        node_hand_over(n);
        break;
    default: /* cut off from everyone else for a while */
        for (int j = 0; j < s->n; j++)
            if (j != i)
                s->link[i][j] = s->link[j][i] = false;
        recompute_links(s);
        sim_trace(s, "node %d cut off from its peers", i + 1);
        sim_at(s, sim_between(s, 500, 4000), ev_heal_partition, NULL, 0);
        break;
    }
}

bool sim_strike(struct sim *s, int node, const char *when, int site)
{
    if (s->faults_over || !sim_chance(s, s->o.strike_pct))
        return false;
    int k = s->n_strikes++;
    if (dropped(s->o.drop_strike, k))
        return false;
    uint64_t engine = s->rng;
    s->rng = substream(s, 1000000u + (uint64_t)k);
    int how = (int)sim_between(s, 0, 2);
    sim_trace(s, "strike s%d %s: node %d %s", k, when, node + 1,
              how == 0 ? "crashes" : how == 1 ? "hands over" : "is cut off");
    /* not from inside raft's callback: at once, on the next turn */
    sim_at(s, when[0] == 'i' ? sim_between(s, 0, s->g.max_arrival_ms) : 0, ev_strike, NULL, (node << 2) | how);
    /* and the site being switched dies meanwhile: the next leader must plan around a write it
     * cannot see yet */
    if (site >= 0 && sim_chance(s, 50)) {
        sim_trace(s, "site %c dies with the write in flight", 'a' + site);
        sim_at(s, sim_between(s, 0, 300), ev_site, NULL, site << 1);
    }
    s->rng = engine;
    return true;
}

/* Faults stop: everything heals, the sites settle as drawn, Genesys answers well. */
static void heal(struct sim *s, void *p, int64_t x)
{
    (void)p, (void)x;
    s->faults_over = true;
    s->heal_at = sim_now(s);
    ev_heal_partition(s, NULL, 0);
    s->g.fault_pct = 0;
    for (int i = 0; i < s->n; i++) {
        s->g.cut[i] = false;
        s->node[i].tilt_overload = false;
        raft_fixture_set_network_latency(&s->f, (unsigned)i, 15);
        for (int site = 0; site < SIM_SITES; site++)
            set_site_link(s, i, site, true);
        if (!s->node[i].alive)
            ev_revive(s, NULL, i);
    }
    /* At least one Premise site up, so every group has something to carry calls. */
    int keep = (int)sim_between(s, 0, SIM_SITES - 1);
    for (int site = 0; site < SIM_SITES; site++)
        set_site(s, site, site == keep || sim_chance(s, 50));
    /* An operator releases every hold (a held group waits for one) and ends every maintenance
     * window; check_settled repeats both while the cluster has not settled. */
    int leader = leader_index(s);
    if (leader >= 0)
        for (int g = 0; g < 2; g++) {
            char *e[3] = {dw_entry_hold_release(group_ids[g], "sim"),
                          dw_entry_maintenance("clear", "group", group_ids[g], "sim", NULL, 0),
                          dw_entry_maintenance("clear", "site", site_ids[g], "sim", NULL, 0)};
            for (int k = 0; k < 3; k++) {
                if (e[k])
                    node_propose(&s->node[leader], e[k], config_done, NULL);
                free(e[k]);
            }
        }
    sim_trace(s, "faults over: site a %s, site b %s", s->site_up[0] ? "up" : "down",
              s->site_up[1] ? "up" : "down");
}

/* ---- one run ---- */

#define FAULT_PHASE_MAX_MS 40000
#define SETTLE_BOUND_MS 60000

static int sim_run(struct sim_opts *o, struct sim *s)
{
    memset(s, 0, sizeof *s);
    s->o = *o;
    s->rng = o->seed * 0x9e3779b97f4a7c15ull + 1;
    s->n = o->nodes;
    if (make_config(s) != 0)
        return -1;
    for (int i = 0; i < s->n; i++) {
        for (int j = 0; j < s->n; j++)
            s->link[i][j] = true;
        for (int site = 0; site < SIM_SITES; site++)
            s->link_site[i][site] = true;
    }
    s->site_up[0] = s->site_up[1] = true;
    if (raft_fixture_initialize(&s->f) != 0)
        return -1;
    for (int i = 0; i < s->n; i++)
        node_init(s, i);
    struct raft_configuration conf;
    raft_fixture_configuration(&s->f, (unsigned)s->n, &conf);
    raft_fixture_bootstrap(&s->f, &conf);
    raft_configuration_close(&conf);
    for (int i = 0; i < s->n; i++) {
        struct raft *r = raft_fixture_get(&s->f, (unsigned)i);
        raft_set_election_timeout(r, 1000);
        raft_set_heartbeat_timeout(r, 100);
        raft_set_pre_vote(r, true);
        /* Snapshots are taken, but trailing keeps every entry of a run: raft_fixture's in-memory
         * disk (0.15 to 0.18.1) overflows its entry array when it truncates after installing a
         * snapshot (docs/reliability.md; --install-snapshots shows it). */
        raft_set_snapshot_threshold(r, 64);
        raft_set_snapshot_trailing(r, s->o.install_snapshots ? 16 : 100000);
        raft_fixture_set_randomized_election_timeout(&s->f, (unsigned)i,
                                                      sim_between(s, 1000, 2000));
    }
    raft_fixture_start(&s->f);
    for (int i = 0; i < s->n; i++)
        node_start(&s->node[i]);

    uint64_t fault_phase = sim_between(s, 10000, FAULT_PHASE_MAX_MS);
    sim_at(s, 3000, inject, NULL, 0);
    sim_at(s, fault_phase, heal, NULL, 0);
    uint64_t last_check = 0;
    int settled = 0;
    char why[256] = "";
    while (!s->stop) {
        run_due(s);
        if (s->stop)
            break;
        raft_fixture_step(&s->f);
        for (int i = 0; i < s->n; i++) {
            if (s->node[i].alive)
                node_poll(&s->node[i]);
            /* a fresh election timeout for every election */
            if (raft_state(s->node[i].raft) == RAFT_CANDIDATE)
                raft_fixture_set_randomized_election_timeout(&s->f, (unsigned)i,
                                                              sim_between(s, 1000, 2000));
        }
        check_step(s);
        if (s->faults_over && sim_now(s) - last_check >= 500) {
            last_check = sim_now(s);
            settled = check_settled(s, why, sizeof why);
            if (settled)
                break;
            if (sim_now(s) > s->heal_at + SETTLE_BOUND_MS) {
                sim_violation(s, SIM_LIVENESS, "not settled %d s after faults stopped: %s",
                              SETTLE_BOUND_MS / 1000, why);
                break;
            }
        }
    }
    if (!s->violated && !s->raft_fault[0])
        check_final(s);
    for (int i = 0; i < s->n && (s->violated || s->raft_fault[0]); i++) {
        struct raft *r = s->node[i].raft;
        sim_trace(s, "node %d: %s, state %d, term %llu, voted for %llu, commit %llu, applied %llu, "
                  "stored %llu", i + 1, s->node[i].alive ? "alive" : "dead", raft_state(r),
                  (unsigned long long)r->current_term, (unsigned long long)r->voted_for,
                  (unsigned long long)r->commit_index, (unsigned long long)r->last_applied,
                  (unsigned long long)r->last_stored);
    }
    return 0;
}

static void sim_free(struct sim *s)
{
    for (int i = 0; i < s->n; i++)
        node_close(&s->node[i]);
    raft_fixture_close(&s->f); /* fails what raft still holds: callbacks may queue events */
    for (size_t i = 0; i < s->n_ev; i++)
        if (s->heap[i].drop)
            s->heap[i].drop(s->heap[i].p);
    gsim_free_all(s);
    for (int i = 0; i < s->n; i++)
        dw_fsm_close(s->node[i].fsm);
    for (size_t i = 0; i < s->n_timers; i++)
        free(s->timers[i]);
    free(s->timers);
    free(s->heap);
    free(s->g.writes);
    free(s->seq.hash);
    free(s->fin);
    dw_config_free(s->cfg);
    free(s->cfg);
    free(s->cfg_doc);
}

static void drop_set(uint64_t *set, int k)
{
    if (k >= 0 && k < 256)
        set[k / 64] |= 1ull << (k % 64);
}

static int parse_drop(const char *list, struct sim_opts *o)
{
    char *copy = strdup(list), *save = NULL;
    int rc = 0;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *end;
        bool strike = t[0] == 's';
        long k = strtol(t + strike, &end, 10);
        if (*end != '\0' || k < 0 || k >= 256)
            rc = -1;
        else
            drop_set(strike ? o->drop_strike : o->drop, (int)k);
    }
    free(copy);
    return rc;
}

/* Runs a seed as o says; returns the invariant it broke (0 none) and how many faults it drew. */
static int run_quiet(struct sim_opts *o, int *faults, int *strikes)
{
    struct sim *s = calloc(1, sizeof *s);
    if (s == NULL || sim_run(o, s) != 0)
        abort();
    int v = s->violated;
    *faults = s->n_faults;
    *strikes = s->n_strikes;
    sim_free(s);
    free(s);
    return v;
}

/* Greedy: leave each fault out in turn and keep it out while the seed still breaks the same
 * invariant. */
static int minimise_seed(struct sim_opts *o, uint64_t seed)
{
    int faults, strikes;
    bool trace = o->trace;
    o->seed = seed;
    o->trace = false;
    int v = run_quiet(o, &faults, &strikes);
    if (v == 0) {
        printf("seed %" PRIu64 ": ok, nothing to minimise\n", seed);
        return 0;
    }
    char list[4096] = "";
    size_t n = 0;
    int kept = 0;
    for (int pass = 0; pass < 2; pass++) {
        int count = pass == 0 ? faults : strikes;
        uint64_t *set = pass == 0 ? o->drop : o->drop_strike;
        for (int k = 0; k < count && k < 256; k++) {
            uint64_t saved[4];
            int f2, s2;
            memcpy(saved, set, sizeof saved);
            drop_set(set, k);
            if (run_quiet(o, &f2, &s2) != v)
                memcpy(set, saved, sizeof saved), kept++;
            else if (n + 8 < sizeof list)
                n += (size_t)snprintf(list + n, sizeof list - n, "%s%s%d", n ? "," : "",
                                      pass ? "s" : "", k);
        }
    }
    printf("seed %" PRIu64 ": invariant %d still breaks with %d of %d faults and strikes kept\n"
           "  replay: tests/sim/run --seed %" PRIu64 " --drop %s --trace\n", seed, v, kept,
           faults + strikes, seed, n ? list : "none");
    if (trace) {
        o->trace = true;
        dw_log_set_level(DW_LOG_INFO);
        setvbuf(stdout, NULL, _IOLBF, 0);
        run_quiet(o, &faults, &strikes);
    }
    return 1;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: drwatch_sim [--seed N | --seeds N [--first N]] [--trace] [--nodes 3|5]\n"
            "                   [--quiet] [--drop LIST] [--minimise] [--strikes P]\n"
            "  --seed N     run one seed (with --trace: print what happens)\n"
            "  --seeds N    run seeds first..first+N-1, stop at the first failing one\n"
            "  --drop LIST  leave faults out: \"3,7,s2\" (s: a strike at a step or a call)\n"
            "  --minimise   a failing seed: leave out every fault it still fails without\n"
            "  --strikes P  percent of step boundaries and PUTs struck (default 10)\n");
}

int main(int argc, char **argv)
{
    struct sim_opts o = {.nodes = 3, .strike_pct = 10};
    uint64_t first = 1, count = 0;
    bool one = false, quiet = false, minimise = false;
    static const struct option opts[] = {
        {"seed", required_argument, 0, 's'}, {"seeds", required_argument, 0, 'n'},
        {"first", required_argument, 0, 'f'}, {"trace", no_argument, 0, 't'},
        {"nodes", required_argument, 0, 'N'},
        {"install-snapshots", no_argument, 0, 'I'},
        {"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'},
        {"drop", required_argument, 0, 'd'}, {"minimise", no_argument, 0, 'M'},
        {"strikes", required_argument, 0, 'S'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's': first = strtoull(optarg, NULL, 10), count = 1, one = true; break;
        case 'n': count = strtoull(optarg, NULL, 10); break;
        case 'f': first = strtoull(optarg, NULL, 10); break;
        case 't': o.trace = true; break;
        case 'N': o.nodes = atoi(optarg); break;
        case 'q': quiet = true; break;
        case 'I': o.install_snapshots = true; break;
        case 'd':
            if (parse_drop(optarg, &o) != 0) {
                usage();
                return 2;
            }
            break;
        case 'M': minimise = true; break;
        case 'S': o.strike_pct = (unsigned)atoi(optarg); break;
        default: usage(); return 2;
        }
    }
    if (count == 0 || (o.nodes != 3 && o.nodes != 5) || (minimise && !one)) {
        usage();
        return 2;
    }
    if (o.trace) /* a crash must not eat the trace */
        setvbuf(stdout, NULL, _IOLBF, 0);
    dw_log_set_level(o.trace ? DW_LOG_INFO : (enum dw_log_level)(DW_LOG_ERROR + 1));
    if (minimise)
        return minimise_seed(&o, first);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t writes = 0, ops = 0, leaders = 0, vtime = 0, raft_faults = 0;
    for (uint64_t seed = first; seed < first + count; seed++) {
        struct sim *s = calloc(1, sizeof *s);
        o.seed = seed;
        if (s == NULL || sim_run(&o, s) != 0) {
            fprintf(stderr, "sim: seed %" PRIu64 ": could not set up the cluster\n", seed);
            return 2;
        }
        writes += s->writes_total, ops += s->ops_seen, leaders += s->leader_changes;
        vtime += sim_now(s);
        if (s->raft_fault[0]) {
            /* counted and listed, not failed: drwatch cannot be judged on a broken log */
            printf("seed %" PRIu64 ": raft fault, not judged: %s\n  replay: tests/sim/run "
                   "--seed %" PRIu64 " --trace\n", seed, s->raft_fault, seed);
            raft_faults++;
        }
        if (s->violated || (one && !quiet && !s->raft_fault[0])) {
            if (s->violated)
                printf("seed %" PRIu64 ": FAILED: invariant %d: %s\n  replay: tests/sim/run "
                       "--seed %" PRIu64 " --trace\n", seed, s->violated, s->why, seed);
            else
                printf("seed %" PRIu64 ": ok (%.1f s simulated, %" PRIu64 " writes, %" PRIu64
                       " operations)\n", seed, sim_now(s) / 1000.0, s->writes_total, s->ops_seen);
        }
        int bad = s->violated;
        sim_free(s);
        free(s);
        if (bad)
            return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (!quiet)
        printf("%" PRIu64 " seeds from %" PRIu64 " ok: %.0f s simulated, %" PRIu64
               " Genesys writes, %" PRIu64 " operations, %" PRIu64 " leader changes, %" PRIu64
               " raft faults, %.1f s\n", count, first, vtime / 1000.0, writes, ops, leaders,
               raft_faults, (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
