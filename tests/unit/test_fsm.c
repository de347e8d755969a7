/* FSM apply, entry codec and determinism on a hand-built 3-member config. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "drwatch/entry.h"
#include "drwatch/fsm.h"

#define TTL 15000
#define CTTL 35000 /* genesys.cloud_ttl_ms */
#define GRACE 60000 /* genesys.cloud_grace_ms */
#define T0 1700000000000LL

enum { SITE_A = 0, SITE_B = 1 };
enum { PREMISE_A = 0, PREMISE_B = 1, CLOUD = 2 };

static const enum dw_health U = DW_UP, D = DW_DOWN, X = DW_UNKNOWN;

static void add_target(struct dw_group *g, const char *id, int site, const char *trunk_base)
{
    struct dw_target *t = &g->targets[g->n_targets++];

    snprintf(t->id, sizeof t->id, "%s", id);
    t->site = site;
    t->n_trunk_bases = 1;
    snprintf(t->trunk_base_ids[0], sizeof t->trunk_base_ids[0], "%s", trunk_base);
}

static void add_site(struct dw_config *cfg, const char *id, int n_edges)
{
    struct dw_site *s = &cfg->sites[cfg->n_sites++];

    snprintf(s->id, sizeof s->id, "%s", id);
    s->edges = calloc((size_t)n_edges, sizeof *s->edges);
    assert_non_null(s->edges);
    for (int i = 0; i < n_edges; i++) {
        struct dw_edge *e = &s->edges[s->n_edges++];

        snprintf(e->id, sizeof e->id, "%s-edge%d", id, i + 1);
        snprintf(e->health_url, sizeof e->health_url, "http://10.0.%d.%d/health", cfg->n_sites,
                 i + 1);
    }
}

static struct dw_config *make_config(void)
{
    struct dw_config *cfg = calloc(1, sizeof *cfg);
    struct dw_group *g;

    assert_non_null(cfg);
    cfg->node_id = 1;
    cfg->n_members = 3;
    for (int i = 0; i < 3; i++) {
        struct dw_member *m = &cfg->members[i];

        m->id = (uint64_t)i + 1;
        snprintf(m->name, sizeof m->name, "n%d", i + 1);
        snprintf(m->raft_address, sizeof m->raft_address, "127.0.0.1:%d", 9001 + i);
        snprintf(m->peer_address, sizeof m->peer_address, "127.0.0.1:%d", 9101 + i);
    }
    cfg->cluster.election_timeout_ms = 1000;
    cfg->cluster.heartbeat_ms = 100;
    cfg->cluster.observation_ttl_ms = TTL;
    cfg->cluster.refresh_interval_ms = 5000;
    cfg->probe.interval_ms = 1000;
    cfg->probe.timeout_ms = 800;
    cfg->probe.fail_threshold = 3;
    cfg->probe.recover_threshold = 2;
    cfg->sites = calloc(2, sizeof *cfg->sites);
    assert_non_null(cfg->sites);
    add_site(cfg, "site-a", 2);
    add_site(cfg, "site-b", 1);
    g = &cfg->groups[cfg->n_groups++];
    snprintf(g->id, sizeof g->id, "carrier-1");
    g->stable_for_ms = 300000;
    g->failback_retry_ms = 60000;
    g->failback_retry_max_ms = 3600000;
    g->max_auto_operations = 3;
    g->flap_window_ms = 3600000;
    add_target(g, "premise-a", SITE_A, "tb-a");
    add_target(g, "premise-b", SITE_B, "tb-b");
    add_target(g, "cloud", -1, "tb-cloud");
    return cfg;
}

static void free_config(struct dw_config *cfg)
{
    dw_config_free(cfg);
    free(cfg);
}

struct fx {
    struct dw_config *cfg;
    struct dw_fsm *f;
};

static int setup(void **state)
{
    struct fx *x = calloc(1, sizeof *x);
    char err[256];

    assert_non_null(x);
    x->cfg = make_config();
    assert_int_equal(dw_fsm_open(&x->f, x->cfg, err, sizeof err), 0);
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    struct fx *x = *state;

    dw_fsm_close(x->f);
    free_config(x->cfg);
    free(x);
    return 0;
}

/* Stamps an unstamped entry (taking ownership of it) and applies it. */
static int apply_raw(struct dw_fsm *f, char *unstamped, int64_t ts)
{
    char err[256] = "";
    char *stamped;
    int rc;

    assert_non_null(unstamped);
    stamped = dw_entry_stamp(unstamped, strlen(unstamped), ts, 1, err, sizeof err);
    if (stamped == NULL)
        fail_msg("stamp refused %s: %s", unstamped, err);
    free(unstamped);
    rc = dw_fsm_apply(f, stamped, strlen(stamped));
    free(stamped);
    return rc;
}

static int observe_cfg(struct dw_fsm *f, const struct dw_config *cfg, uint64_t node, int64_t ts,
                       enum dw_health a, enum dw_health b, bool tilt)
{
    enum dw_health states[2] = {a, b};

    return apply_raw(f, dw_entry_observe(cfg, node, tilt, states), ts);
}

static int observe(struct fx *x, uint64_t node, int64_t ts, enum dw_health a, enum dw_health b)
{
    return observe_cfg(x->f, x->cfg, node, ts, a, b, false);
}

static int step(struct fx *x, int64_t op, int seq, enum dw_step_status st, int64_t ts)
{
    return apply_raw(x->f, dw_entry_step(op, seq, st, st == DW_STEP_STARTED ? NULL : "ok"), ts);
}

static int n_next(struct fx *x, struct dw_step_ref *refs, int max)
{
    int n = dw_fsm_next_steps(x->f, refs, max);

    assert_true(n >= 0);
    return n;
}

/* Every node sees both sites up at T0. */
static void all_up(struct fx *x)
{
    for (uint64_t n = 1; n <= 3; n++)
        assert_int_equal(observe(x, n, T0, U, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_UP);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_B), DW_UP);
}

/* Drives site-a down by two fresh observers; returns the failover's op id. */
static int64_t fail_site_a(struct fx *x, int64_t ts)
{
    struct dw_step_ref r[4];

    assert_int_equal(observe(x, 1, ts, D, U), DW_FSM_APPLIED);
    assert_int_equal(observe(x, 2, ts + 1, D, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_DOWN);
    assert_int_equal(n_next(x, r, 4), 1);
    return r[0].op;
}

static int history_count(struct fx *x, const char *kind, const char *needle)
{
    cJSON *h = dw_fsm_history_json(x->f, 0), *row;
    int n = 0;

    assert_non_null(h);
    cJSON_ArrayForEach(row, h) {
        const char *k = cJSON_GetStringValue(cJSON_GetObjectItem(row, "kind"));
        const char *d = cJSON_GetStringValue(cJSON_GetObjectItem(row, "detail"));

        n += k && d && strcmp(k, kind) == 0 && strstr(d, needle) != NULL;
    }
    cJSON_Delete(h);
    return n;
}

static bool history_has(struct fx *x, const char *kind, const char *needle)
{
    return history_count(x, kind, needle) > 0;
}

static const char *jstr(const cJSON *obj, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItem(obj, key));
}

static cJSON *group_status(struct fx *x, cJSON **root)
{
    *root = dw_fsm_status_json(x->f);
    assert_non_null(*root);
    return cJSON_GetArrayItem(cJSON_GetObjectItem(*root, "groups"), 0);
}

/* Which targets of carrier-1 the journal leaves in service: premise-a at the start, then every
 * DONE activate or deactivate in operation and step order (the dump's order). */
static void journal_on(struct fx *x, bool on[3])
{
    static const char *const ids[3] = {"premise-a", "premise-b", "cloud"};
    char *dump = dw_fsm_dump(x->f), *line;

    assert_non_null(dump);
    on[0] = true;
    on[1] = on[2] = false;
    for (line = strtok(dump, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        if (strncmp(line, "steps|", 6) != 0 || strstr(line, "|status=done|") == NULL)
            continue;
        for (int t = 0; t < 3; t++) {
            char want[64];

            snprintf(want, sizeof want, "|target=%s|", ids[t]);
            if (strstr(line, want) == NULL)
                continue;
            if (strstr(line, "|action=activate|"))
                on[t] = true;
            else if (strstr(line, "|action=deactivate|"))
                on[t] = false;
        }
    }
    free(dump);
}

/* Exactly one target in service, and it is what the group says is active. */
static void assert_only_in_service(struct fx *x, int target)
{
    bool on[3];

    journal_on(x, on);
    for (int t = 0; t < 3; t++) {
        if (on[t] != (t == target))
            fail_msg("target %d in service: %d (expected only %d)", t, on[t], target);
    }
    assert_int_equal(dw_fsm_active_target(x->f, 0), target);
}

/* The single running operation's steps, from its next one on, as "action target" pairs. */
static void expect_plan(struct fx *x, const char *const *want, int n)
{
    cJSON *root = dw_fsm_status_json(x->f), *op, *steps;
    int found = 0;

    assert_non_null(root);
    cJSON_ArrayForEach(op, cJSON_GetObjectItem(root, "operations")) {
        if (strcmp(jstr(op, "status"), "running") != 0)
            continue;
        found++;
        steps = cJSON_GetObjectItem(op, "steps");
        assert_int_equal(cJSON_GetArraySize(steps), n);
        for (int i = 0; i < n; i++) {
            cJSON *st = cJSON_GetArrayItem(steps, i);
            char got[96];

            snprintf(got, sizeof got, "%s %s", jstr(st, "action"), jstr(st, "target"));
            assert_string_equal(got, want[i]);
        }
    }
    assert_int_equal(found, 1);
    cJSON_Delete(root);
}

/* Runs the single running operation's remaining steps to DONE. */
static void run_to_done(struct fx *x, int64_t *ts)
{
    struct dw_step_ref r[4];
    int64_t op;

    assert_int_equal(n_next(x, r, 4), 1);
    op = r[0].op;
    while (n_next(x, r, 4) == 1 && r[0].op == op) {
        if (r[0].status == DW_STEP_PENDING)
            assert_int_equal(step(x, op, r[0].seq, DW_STEP_STARTED, (*ts)++), DW_FSM_APPLIED);
        assert_int_equal(step(x, op, r[0].seq, DW_STEP_DONE, (*ts)++), DW_FSM_APPLIED);
    }
}

static void step_fails(struct fx *x, int64_t op, int seq, int64_t ts)
{
    assert_int_equal(step(x, op, seq, DW_STEP_STARTED, ts), DW_FSM_APPLIED);
    assert_int_equal(apply_raw(x->f, dw_entry_step(op, seq, DW_STEP_FAILED, "not in service"),
                               ts + 1),
                     DW_FSM_APPLIED);
}

static void expect_refused(const char *json, const char *why_part);

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_open_state(void **state)
{
    struct fx *x = *state;
    struct dw_step_ref r[2];

    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_UNKNOWN);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_B), DW_UNKNOWN);
    assert_int_equal(dw_fsm_active_target(x->f, 0), PREMISE_A);
    assert_int_equal(dw_fsm_applied(x->f), 0);
    assert_int_equal(dw_fsm_rejected(x->f), 0);
    assert_int_equal(n_next(x, r, 2), 0);
}

static void test_one_node_down_alone(void **state)
{
    struct fx *x = *state;
    struct dw_step_ref r[2];

    /* a lone observer cannot decide anything, not even from UNKNOWN */
    assert_int_equal(observe(x, 1, T0, D, D), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_UNKNOWN);
    all_up(x);
    assert_int_equal(observe(x, 3, T0 + 1000, D, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_UP);
    assert_int_equal(n_next(x, r, 2), 0);
    assert_int_equal(dw_fsm_applied(x->f), 5);
}

static void test_two_down_failover(void **state)
{
    struct fx *x = *state;
    struct dw_step_ref r[4];
    cJSON *root, *ops, *op;

    all_up(x);
    assert_int_equal(observe(x, 1, T0 + 1000, D, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_UP);
    assert_int_equal(observe(x, 3, T0 + 2000, D, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_DOWN);
    assert_true(history_has(x, "verdict", "site-a: up -> down (down 2/3 fresh, up 1/3)"));

    assert_int_equal(n_next(x, r, 4), 1);
    assert_int_equal(r[0].op, 1);
    assert_int_equal(r[0].seq, 0);
    assert_int_equal(r[0].n_steps, 4);
    assert_string_equal(r[0].action, "activate");
    assert_int_equal(r[0].group, 0);
    assert_int_equal(r[0].target, PREMISE_B);
    assert_int_equal(r[0].status, DW_STEP_PENDING);
    assert_int_equal(dw_fsm_active_target(x->f, 0), PREMISE_A);

    root = dw_fsm_status_json(x->f);
    assert_non_null(root);
    ops = cJSON_GetObjectItem(root, "operations");
    assert_int_equal(cJSON_GetArraySize(ops), 1);
    op = cJSON_GetArrayItem(ops, 0);
    assert_string_equal(jstr(op, "kind"), "failover");
    assert_string_equal(jstr(op, "from"), "premise-a");
    assert_string_equal(jstr(op, "to"), "premise-b");
    assert_string_equal(jstr(op, "status"), "running");
    assert_string_equal(jstr(op, "reason"), "site-a down");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(op, "steps")), 4);
    assert_string_equal(jstr(cJSON_GetArrayItem(cJSON_GetObjectItem(op, "steps"), 2), "target"),
                        "premise-a");
    /* every other target is taken out too (a read and no write when already out) */
    assert_string_equal(jstr(cJSON_GetArrayItem(cJSON_GetObjectItem(op, "steps"), 3), "target"),
                        "cloud");
    cJSON_Delete(root);

    /* more down reports while the operation runs plan nothing new */
    assert_int_equal(observe(x, 2, T0 + 3000, D, U), DW_FSM_APPLIED);
    assert_int_equal(n_next(x, r, 4), 1);
}

static void test_both_premise_down_goes_to_cloud(void **state)
{
    struct fx *x = *state;
    struct dw_step_ref r[4];

    for (uint64_t n = 1; n <= 3; n++)
        assert_int_equal(observe(x, n, T0 + (int64_t)n, D, D), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_DOWN);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_B), DW_DOWN);
    assert_int_equal(n_next(x, r, 4), 1);
    assert_int_equal(r[0].target, CLOUD);
}

static void test_backup_unknown_is_not_up(void **state)
{
    struct fx *x = *state;
    struct dw_step_ref r[4];

    /* site-b never observed: only the cloud is known to be up */
    assert_int_equal(observe(x, 1, T0, D, X), DW_FSM_APPLIED);
    assert_int_equal(observe(x, 2, T0 + 1, D, X), DW_FSM_APPLIED);
    assert_int_equal(n_next(x, r, 4), 1);
    assert_int_equal(r[0].target, CLOUD);
}

static void test_steps_walk_to_done(void **state)
{
    struct fx *x = *state;
    struct dw_step_ref r[4];
    int64_t op, ts = T0 + 5000;
    cJSON *root;

    all_up(x);
    op = fail_site_a(x, T0 + 1000);
    for (int seq = 0; seq < 4; seq++) {
        assert_int_equal(n_next(x, r, 4), 1);
        assert_int_equal(r[0].seq, seq);
        if (seq == 2) {
            assert_int_equal(r[0].target, PREMISE_A); /* the dead one first */
            assert_string_equal(r[0].action, "deactivate");
        }
        assert_int_equal(r[0].status, DW_STEP_PENDING);
        assert_int_equal(step(x, op, seq, DW_STEP_STARTED, ts++), DW_FSM_APPLIED);
        assert_int_equal(n_next(x, r, 4), 1);
        assert_int_equal(r[0].status, DW_STEP_STARTED);
        assert_int_equal(dw_fsm_active_target(x->f, 0), PREMISE_A);
        assert_int_equal(step(x, op, seq, DW_STEP_DONE, ts++), DW_FSM_APPLIED);
    }
    assert_int_equal(r[0].target, CLOUD);
    assert_string_equal(r[0].action, "deactivate");
    assert_int_equal(n_next(x, r, 4), 0);
    assert_int_equal(dw_fsm_active_target(x->f, 0), PREMISE_B);
    assert_true(history_has(x, "operation", "failover #1 premise-a -> premise-b done"));

    root = dw_fsm_status_json(x->f);
    assert_non_null(root);
    assert_string_equal(jstr(cJSON_GetArrayItem(cJSON_GetObjectItem(root, "operations"), 0), "status"),
                        "done");
    assert_string_equal(jstr(cJSON_GetArrayItem(cJSON_GetObjectItem(root, "groups"), 0), "active"),
                        "premise-b");
    cJSON_Delete(root);

    /* the active target is up: nothing more to do while site-a stays down */
    assert_int_equal(observe(x, 3, ts, D, U), DW_FSM_APPLIED);
    assert_int_equal(n_next(x, r, 4), 0);
}

/* What dw_fsm_on_record reports: each history row or event once, as it is written. */
struct recs {
    int n;
    char kind[32][24];
    char group[32][24];
};

static void on_rec(void *data, const struct dw_fsm_record *r)
{
    struct recs *rs = data;
    if (rs->n < 32) {
        snprintf(rs->kind[rs->n], sizeof rs->kind[0], "%s", r->kind);
        snprintf(rs->group[rs->n], sizeof rs->group[0], "%s", r->group ? r->group : "");
        rs->n++;
    }
}

static int rec_count(const struct recs *rs, const char *kind)
{
    int n = 0;
    for (int i = 0; i < rs->n; i++)
        n += strcmp(rs->kind[i], kind) == 0;
    return n;
}

static void test_records_reported_once(void **state)
{
    struct fx *x = *state;
    struct recs rs = {0};
    int64_t op;

    all_up(x);
    dw_fsm_on_record(x->f, on_rec, &rs);
    op = fail_site_a(x, T0 + 1000);
    assert_int_equal(rec_count(&rs, "verdict"), 1);   /* site-a up -> down */
    assert_int_equal(rec_count(&rs, "operation"), 1); /* the failover planned */
    rs.n = 0;
    assert_int_equal(step(x, op, 0, DW_STEP_DONE, T0 + 2000), DW_FSM_REJECTED);
    assert_int_equal(rs.n, 1);
    assert_string_equal(rs.kind[0], "rejected");
    for (int seq = 0; seq < 4; seq++) {
        assert_int_equal(step(x, op, seq, DW_STEP_STARTED, T0 + 3000 + seq * 10), DW_FSM_APPLIED);
        assert_int_equal(step(x, op, seq, DW_STEP_DONE, T0 + 3005 + seq * 10), DW_FSM_APPLIED);
    }
    assert_int_equal(rec_count(&rs, "step"), 8);
    /* the event, not also its history row */
    assert_int_equal(rec_count(&rs, "failover"), 1);
    assert_int_equal(rec_count(&rs, "operation"), 0);
    assert_string_equal(rs.group[rs.n - 1], "carrier-1");
    dw_fsm_on_record(x->f, NULL, NULL);
}

static void test_duplicate_and_out_of_order_steps_rejected(void **state)
{
    struct fx *x = *state;
    int64_t op;
    uint64_t rejected;

    all_up(x);
    op = fail_site_a(x, T0 + 1000);
    rejected = dw_fsm_rejected(x->f);

    /* pending -> done skips started */
    assert_int_equal(step(x, op, 0, DW_STEP_DONE, T0 + 2000), DW_FSM_REJECTED);
    /* wrong seq */
    assert_int_equal(step(x, op, 1, DW_STEP_STARTED, T0 + 2001), DW_FSM_REJECTED);
    assert_int_equal(step(x, op, 0, DW_STEP_STARTED, T0 + 2002), DW_FSM_APPLIED);
    /* a resumed "started" is harmless */
    assert_int_equal(step(x, op, 0, DW_STEP_STARTED, T0 + 2003), DW_FSM_REJECTED);
    assert_int_equal(step(x, op, 0, DW_STEP_DONE, T0 + 2004), DW_FSM_APPLIED);
    /* a retried "done" is harmless */
    assert_int_equal(step(x, op, 0, DW_STEP_DONE, T0 + 2005), DW_FSM_REJECTED);
    assert_int_equal(step(x, op, 2, DW_STEP_STARTED, T0 + 2006), DW_FSM_REJECTED);
    /* unknown operation */
    assert_int_equal(step(x, op + 1, 0, DW_STEP_STARTED, T0 + 2007), DW_FSM_REJECTED);
    assert_int_equal(dw_fsm_rejected(x->f), rejected + 6);
    assert_true(history_has(x, "rejected", "pending -> done not allowed"));
    assert_true(history_has(x, "rejected", "step 1 is not the next step"));
    assert_true(history_has(x, "rejected", "step 0 is already done"));

    for (int seq = 1; seq < 4; seq++) {
        assert_int_equal(step(x, op, seq, DW_STEP_STARTED, T0 + 3000 + seq), DW_FSM_APPLIED);
        assert_int_equal(step(x, op, seq, DW_STEP_DONE, T0 + 3100 + seq), DW_FSM_APPLIED);
    }
    /* steps of a finished operation */
    assert_int_equal(step(x, op, 3, DW_STEP_DONE, T0 + 4000), DW_FSM_REJECTED);
    assert_true(history_has(x, "rejected", "which is done"));
    assert_int_equal(dw_fsm_active_target(x->f, 0), PREMISE_B);
}

/* Failover premise-a -> premise-b has run `done` steps (and started the next one when
 * `started`); then premise-a recovers and premise-b dies. */
static int64_t abort_after(struct fx *x, int done, bool started)
{
    int64_t op, ts = T0 + 2000;

    all_up(x);
    op = fail_site_a(x, T0 + 1000);
    for (int seq = 0; seq < done; seq++) {
        assert_int_equal(step(x, op, seq, DW_STEP_STARTED, ts++), DW_FSM_APPLIED);
        assert_int_equal(step(x, op, seq, DW_STEP_DONE, ts++), DW_FSM_APPLIED);
    }
    if (started)
        assert_int_equal(step(x, op, done, DW_STEP_STARTED, ts++), DW_FSM_APPLIED);
    assert_int_equal(observe(x, 1, T0 + 3000, U, D), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_UP);
    assert_int_equal(observe(x, 2, T0 + 3001, U, D), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_B), DW_DOWN);
    assert_true(history_has(x, "operation", "#1 premise-a -> premise-b aborted"));
    return op;
}

static void test_abort_before_activate_changes_nothing(void **state)
{
    struct fx *x = *state;
    struct dw_step_ref r[4];

    abort_after(x, 0, false);
    assert_int_equal(n_next(x, r, 4), 0); /* nothing was touched */
    assert_only_in_service(x, PREMISE_A);
}

/* Before premise-b is verified premise-a still carries the calls: only premise-b (and the
 * cloud, to be sure) is switched off. `started`: the activate PUT may or may not have been
 * sent. */
static void abort_before_verify(void **state, int done, bool started)
{
    struct fx *x = *state;
    static const char *const plan[] = {"deactivate premise-b", "deactivate cloud"};
    int64_t ts = T0 + 5000;

    abort_after(x, done, started);
    expect_plan(x, plan, 2);
    assert_int_equal(dw_fsm_active_target(x->f, 0), PREMISE_A);
    run_to_done(x, &ts);
    assert_only_in_service(x, PREMISE_A);
    assert_true(history_has(x, "operation", "cleanup #2 premise-a -> premise-a done"));
}

static void test_abort_while_activating_switches_destination_off(void **state)
{
    abort_before_verify(state, 0, true);
}

static void test_abort_after_activate_switches_destination_off(void **state)
{
    abort_before_verify(state, 1, false);
}

/* Once premise-b is verified it carries the calls (premise-a may be off already): moving back
 * to premise-a is a failover like any other, make-before-break. */
static void test_abort_after_verify_moves_back(void **state)
{
    struct fx *x = *state;
    static const char *const plan[] = {"activate premise-a", "verify premise-a",
                                       "deactivate premise-b", "deactivate cloud"};
    int64_t ts = T0 + 5000;

    for (int done = 2; done <= 3; done++) {
        if (done == 3) {
            teardown(state);
            setup(state);
            x = *state;
        }
        abort_after(x, done, false);
        assert_int_equal(dw_fsm_active_target(x->f, 0), PREMISE_B);
        expect_plan(x, plan, 4);
        run_to_done(x, &ts);
        assert_only_in_service(x, PREMISE_A);
    }
}

/* premise-a dies, premise-b is switched on, then premise-b dies too; returns the failover. */
static int64_t activated_then_b_dies(struct fx *x)
{
    int64_t op;

    all_up(x);
    op = fail_site_a(x, T0 + 1000);
    assert_int_equal(step(x, op, 0, DW_STEP_STARTED, T0 + 2000), DW_FSM_APPLIED);
    assert_int_equal(step(x, op, 0, DW_STEP_DONE, T0 + 2001), DW_FSM_APPLIED);
    assert_int_equal(observe(x, 1, T0 + 3000, D, D), DW_FSM_APPLIED);
    assert_int_equal(observe(x, 2, T0 + 3001, D, D), DW_FSM_APPLIED);
    return op;
}

static void test_destination_down_aborts_and_replans(void **state)
{
    struct fx *x = *state;
    struct dw_step_ref r[4];
    int64_t op, ts = T0 + 5000;
    static const char *const plan[] = {"activate cloud", "verify cloud", "deactivate premise-a",
                                       "deactivate premise-b"};

    /* premise-b dies while it is being verified: the operation can never succeed */
    op = activated_then_b_dies(x);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_B), DW_DOWN);
    assert_true(history_has(x, "operation", "#1 premise-a -> premise-b aborted: premise-b is down"));
    assert_int_equal(n_next(x, r, 4), 1);
    assert_true(r[0].op != op);
    /* premise-b was switched on by the aborted operation: it is switched off again */
    expect_plan(x, plan, 4);
    /* a late step of the aborted operation is refused */
    assert_int_equal(step(x, op, 1, DW_STEP_STARTED, T0 + 3002), DW_FSM_REJECTED);
    run_to_done(x, &ts);
    assert_only_in_service(x, CLOUD);
}

/* A group without a cloud target: when both sites die there is nowhere to go, and no dead
 * target is left in service; the first site back is switched on again. */
static void test_abort_without_replacement_cleans_up(void **state)
{
    struct fx *x = *state;
    struct dw_step_ref r[4];
    static const char *const cleanup[] = {"deactivate premise-a", "deactivate premise-b"};
    static const char *const back[] = {"activate premise-b", "verify premise-b",
                                       "deactivate premise-a"};
    char err[256];
    int64_t op, ts = T0 + 4000;
    bool on[3];
    cJSON *root;

    x->cfg->groups[0].n_targets = 2;
    dw_fsm_close(x->f);
    assert_int_equal(dw_fsm_open(&x->f, x->cfg, err, sizeof err), 0);
    op = activated_then_b_dies(x);
    assert_int_equal(n_next(x, r, 4), 1);
    assert_true(r[0].op != op);
    expect_plan(x, cleanup, 2);
    assert_true(history_has(x, "operation", "cleanup #2 premise-a -> (none) planned"));
    assert_int_equal(step(x, r[0].op, 0, DW_STEP_STARTED, ts++), DW_FSM_APPLIED);
    /* the cleanup is not aborted although its group's targets are down */
    assert_int_equal(observe(x, 3, ts++, D, D), DW_FSM_APPLIED);
    run_to_done(x, &ts);
    assert_int_equal(n_next(x, r, 4), 0);
    journal_on(x, on);
    assert_false(on[0] || on[1]);
    assert_int_equal(dw_fsm_active_target(x->f, 0), -1);
    root = dw_fsm_status_json(x->f);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(root,
                                                                                     "groups"),
                                                                    0),
                                                 "active")));
    cJSON_Delete(root);
    /* premise-b comes back first */
    assert_int_equal(observe(x, 1, ts++, D, U), DW_FSM_APPLIED);
    assert_int_equal(observe(x, 2, ts++, D, U), DW_FSM_APPLIED);
    expect_plan(x, back, 3);
    run_to_done(x, &ts);
    journal_on(x, on);
    assert_true(on[1] && !on[0]);
    assert_int_equal(dw_fsm_active_target(x->f, 0), PREMISE_B);
}

/* Found by the simulated cluster: both sites die, the cleanup switches everything off, and
 * premise-b comes back while it runs. The cleanup is aborted (it would switch premise-b off
 * too); none is known to carry calls, so a failover brings premise-b in first. */
static void test_site_back_aborts_everything_off_cleanup(void **state)
{
    struct fx *x = *state;
    struct dw_step_ref r[4];
    static const char *const back[] = {"activate premise-b", "verify premise-b",
                                       "deactivate premise-a"};
    char err[256];
    int64_t op, cleanup, ts = T0 + 4000;
    bool on[3];

    x->cfg->groups[0].n_targets = 2;
    dw_fsm_close(x->f);
    assert_int_equal(dw_fsm_open(&x->f, x->cfg, err, sizeof err), 0);
    op = activated_then_b_dies(x);
    assert_int_equal(n_next(x, r, 4), 1);
    cleanup = r[0].op;
    assert_true(cleanup != op);
    assert_int_equal(step(x, cleanup, 0, DW_STEP_STARTED, ts++), DW_FSM_APPLIED);
    assert_int_equal(step(x, cleanup, 0, DW_STEP_DONE, ts++), DW_FSM_APPLIED);
    assert_int_equal(observe(x, 1, ts++, D, U), DW_FSM_APPLIED);
    assert_int_equal(observe(x, 2, ts++, D, U), DW_FSM_APPLIED);
    assert_true(history_has(x, "operation", "aborted: a failover to a target that is up replaces it"));
    assert_int_equal(dw_fsm_active_target(x->f, 0), -1);
    assert_int_equal(n_next(x, r, 4), 1);
    assert_true(r[0].op != cleanup);
    expect_plan(x, back, 3);
    run_to_done(x, &ts);
    journal_on(x, on);
    assert_true(on[1] && !on[0]);
    assert_int_equal(dw_fsm_active_target(x->f, 0), PREMISE_B);
}

/* premise-b's trunks never come into service: premise-b is switched off again and the calls go
 * to the next target of the chain, the cloud, although premise-b's site is UP. */
static void failed_bring_in(void **state, int failing_seq)
{
    struct fx *x = *state;
    static const char *const rollback[] = {"deactivate premise-b"};
    static const char *const next[] = {"activate cloud", "verify cloud", "deactivate premise-a",
                                       "deactivate premise-b"};
    struct dw_step_ref r[4];
    int64_t op, ts = T0 + 5000;
    cJSON *root, *g;

    all_up(x);
    op = fail_site_a(x, T0 + 1000);
    if (failing_seq == 1) {
        assert_int_equal(step(x, op, 0, DW_STEP_STARTED, T0 + 2000), DW_FSM_APPLIED);
        assert_int_equal(step(x, op, 0, DW_STEP_DONE, T0 + 2001), DW_FSM_APPLIED);
    }
    step_fails(x, op, failing_seq, T0 + 2002);
    assert_true(history_has(x, "step", "not in service"));
    assert_true(history_has(x, "operation", "failover #1 premise-a -> premise-b failed"));
    g = group_status(x, &root);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(g, "hold")));
    assert_string_equal(jstr(g, "active"), "premise-a");
    cJSON_Delete(root);
    expect_plan(x, rollback, 1);
    assert_true(history_has(x, "operation", "rollback #2 premise-b -> premise-a planned"));
    run_to_done(x, &ts);
    expect_plan(x, next, 4);
    run_to_done(x, &ts);
    assert_only_in_service(x, CLOUD);
    /* premise-b stays passed over while its verdict stands */
    assert_int_equal(observe(x, 3, ts++, D, U), DW_FSM_APPLIED);
    assert_int_equal(n_next(x, r, 4), 0);
}

static void test_failed_verify_rolls_back_and_moves_on(void **state)
{
    failed_bring_in(state, 1);
}

static void test_failed_activate_rolls_back_and_moves_on(void **state)
{
    failed_bring_in(state, 0);
}

/* premise-b is switched on, dies (abort), then the cloud fails verification and is rolled back:
 * with nothing left to go to, what the aborted operation switched on is still switched off,
 * although the group is held and the last operation (the rollback) finished well. */
static void test_abort_then_failure_still_cleans_up(void **state)
{
    struct fx *x = *state;
    static const char *const cleanup[] = {"deactivate premise-a", "deactivate premise-b",
                                          "deactivate cloud"};
    struct dw_step_ref r[4];
    int64_t ts = T0 + 5000;
    bool on[3];

    activated_then_b_dies(x);
    assert_int_equal(n_next(x, r, 4), 1);
    assert_int_equal(r[0].target, CLOUD);
    assert_int_equal(step(x, r[0].op, 0, DW_STEP_STARTED, ts++), DW_FSM_APPLIED);
    assert_int_equal(step(x, r[0].op, 0, DW_STEP_DONE, ts++), DW_FSM_APPLIED);
    step_fails(x, r[0].op, 1, ts);
    ts += 2;
    run_to_done(x, &ts); /* the rollback of the cloud */
    expect_plan(x, cleanup, 3);
    run_to_done(x, &ts);
    journal_on(x, on);
    assert_false(on[0] || on[1] || on[2]);
    assert_int_equal(dw_fsm_active_target(x->f, 0), -1);
    /* nothing is retried on its own after that */
    assert_int_equal(observe(x, 3, ts++, D, D), DW_FSM_APPLIED);
    assert_int_equal(n_next(x, r, 4), 0);
}

/* Failover premise-a -> premise-b verifies premise-b, then fails to switch premise-a off. */
static void fail_switch_off(struct fx *x, int64_t *ts)
{
    int64_t op;

    all_up(x);
    op = fail_site_a(x, T0 + 1000);
    for (int seq = 0; seq < 2; seq++) {
        assert_int_equal(step(x, op, seq, DW_STEP_STARTED, (*ts)++), DW_FSM_APPLIED);
        assert_int_equal(step(x, op, seq, DW_STEP_DONE, (*ts)++), DW_FSM_APPLIED);
    }
    step_fails(x, op, 2, *ts);
    *ts += 2;
}

/* A failed switch-off holds the group with two targets on; when the carrier then dies the calls
 * still move, hold or not. */
static void test_held_group_leaves_a_dead_carrier(void **state)
{
    struct fx *x = *state;
    struct dw_step_ref r[4];
    static const char *const plan[] = {"activate cloud", "verify cloud", "deactivate premise-b",
                                       "deactivate premise-a"};
    int64_t ts = T0 + 5000;
    bool on[3];
    cJSON *root, *g;

    fail_switch_off(x, &ts);
    g = group_status(x, &root);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(g, "hold")));
    assert_string_equal(jstr(g, "active"), "premise-b"); /* verified: it carries the calls */
    cJSON_Delete(root);
    journal_on(x, on);
    assert_true(on[PREMISE_A] && on[PREMISE_B]);
    /* held: the failed switch-off is not retried on its own */
    assert_int_equal(observe(x, 3, ts++, D, U), DW_FSM_APPLIED);
    assert_int_equal(n_next(x, r, 4), 0);
    /* premise-b dies too */
    assert_int_equal(observe(x, 1, ts++, D, D), DW_FSM_APPLIED);
    assert_int_equal(observe(x, 2, ts++, D, D), DW_FSM_APPLIED);
    expect_plan(x, plan, 4);
    run_to_done(x, &ts);
    assert_only_in_service(x, CLOUD);
    g = group_status(x, &root);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(g, "hold")));
    cJSON_Delete(root);
}

/* An operator's release goes through the log: the hold is lifted, recorded, and what the failed
 * operation left on is switched off. */
static void test_hold_release(void **state)
{
    struct fx *x = *state;
    static const char *const plan[] = {"deactivate premise-a", "deactivate cloud"};
    int64_t ts = T0 + 5000;
    cJSON *root, *g;

    fail_switch_off(x, &ts);
    assert_int_equal(apply_raw(x->f, dw_entry_hold_release("carrier-9", "alice"), ts++),
                     DW_FSM_REJECTED);
    assert_int_equal(apply_raw(x->f, dw_entry_hold_release("carrier-1", "alice"), ts++),
                     DW_FSM_APPLIED);
    assert_true(history_has(x, "hold", "carrier-1: hold released by alice"));
    g = group_status(x, &root);
    assert_false(cJSON_IsTrue(cJSON_GetObjectItem(g, "hold")));
    cJSON_Delete(root);
    expect_plan(x, plan, 2);
    run_to_done(x, &ts);
    assert_only_in_service(x, PREMISE_B);

    expect_refused("{\"v\":1,\"type\":\"hold\",\"action\":\"release\",\"by_operator\":\"a\"}",
                   "group");
    expect_refused("{\"v\":1,\"type\":\"hold\",\"group\":\"g\",\"action\":\"set\","
                   "\"by_operator\":\"a\"}",
                   "action");
    expect_refused("{\"v\":1,\"type\":\"hold\",\"group\":\"g\",\"action\":\"release\"}",
                   "by_operator");
}

static void test_stale_observations_do_not_vote(void **state)
{
    struct fx *x = *state;
    struct dw_step_ref r[4];

    all_up(x);
    /* node 1 said down long ago and fell silent */
    assert_int_equal(observe(x, 1, T0 + 1000, D, U), DW_FSM_APPLIED);
    /* node 2 agrees only after node 1's report expired: no majority, and with one fresh voice
     * of three nobody vouches for the site any more */
    assert_int_equal(observe(x, 2, T0 + 1000 + TTL + 1, D, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_UNKNOWN);
    assert_int_equal(n_next(x, r, 4), 0);
    /* then node 2 goes silent too; node 3's refresh alone cannot decide */
    assert_int_equal(observe(x, 3, T0 + 1000 + 3 * TTL, D, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_UNKNOWN);
    assert_int_equal(n_next(x, r, 4), 0);
    /* a fresh second voice makes the majority */
    assert_int_equal(observe(x, 1, T0 + 1000 + 3 * TTL + 5, D, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_DOWN);
    assert_int_equal(n_next(x, r, 4), 1);
}

/* A leader whose clock ran ten minutes ahead stamps node 3's DOWN; node 3 then dies and correct
 * leaders stamp again. The cluster's time must keep running from the future stamp, so node 3's
 * DOWN expires one TTL later and cannot join node 1's DOWN to take site-a down. */
static void test_future_stamp_does_not_keep_dead_vote(void **state)
{
    struct fx *x = *state;
    struct dw_step_ref r[4];
    const int64_t ahead = 600000;
    int64_t t;

    all_up(x);
    assert_int_equal(observe(x, 3, T0 + ahead, D, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_last_ts(x->f), T0 + ahead);
    assert_true(history_has(x, "time", "entry stamped 600.0 s after the previous one"));
    /* correct stamps again: behind the cluster's time, which runs on at their pace */
    for (t = T0 + 5000; t <= T0 + 35000; t += 5000) {
        assert_int_equal(observe(x, 1, t, U, U), DW_FSM_APPLIED);
        assert_int_equal(observe(x, 2, t + 1, U, U), DW_FSM_APPLIED);
    }
    assert_int_equal(dw_fsm_last_ts(x->f), T0 + ahead + 30001);
    assert_int_equal(history_count(x, "time", "before the cluster's time"), 1);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_UP);
    /* node 1 loses site-a: with node 3's old word it would be two DOWNs */
    assert_int_equal(observe(x, 1, t, D, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_UP);
    assert_int_equal(n_next(x, r, 4), 0);
}

/* After a full-cluster restart every observation in the log is an hour old: nothing vouches for
 * the sites until fresh observations arrive, and a backup site nobody has seen since is no
 * failover destination. */
static void test_restart_old_observations_unknown(void **state)
{
    struct fx *x = *state;
    struct dw_step_ref r[4];
    const int64_t t = T0 + 3600000;
    cJSON *root, *site;

    all_up(x);
    assert_int_equal(apply_raw(x->f, dw_entry_leader(1), t), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_UNKNOWN);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_B), DW_UNKNOWN);
    assert_true(history_has(x, "verdict", "site-a: up -> unknown (down 0/3 fresh, up 0/3)"));
    assert_true(history_has(x, "verdict", "site-b: up -> unknown"));
    root = dw_fsm_status_json(x->f);
    assert_non_null(root);
    site = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "sites"), SITE_A);
    assert_string_equal(jstr(site, "verdict"), "unknown");
    cJSON_Delete(root);
    /* one watchdog back is not enough, and UNKNOWN plans nothing */
    assert_int_equal(observe(x, 1, t + 1000, D, X), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_UNKNOWN);
    assert_int_equal(n_next(x, r, 4), 0);
    /* two see site-a down and site-b not yet: only the cloud is known to be up */
    assert_int_equal(observe(x, 2, t + 2000, D, X), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_DOWN);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_B), DW_UNKNOWN);
    assert_int_equal(n_next(x, r, 4), 1);
    assert_int_equal(r[0].target, CLOUD);
}

/* A majority that is fresh but split keeps the verdict; the active site going UNKNOWN plans
 * nothing, neither away from it nor towards it. */
static void test_unknown_plans_nothing(void **state)
{
    struct fx *x = *state;
    struct dw_step_ref r[4];

    all_up(x);
    assert_int_equal(observe(x, 1, T0 + 1000, D, D), DW_FSM_APPLIED);
    assert_int_equal(observe(x, 2, T0 + 1001, U, U), DW_FSM_APPLIED);
    /* node 3 falls silent: 1 DOWN and 1 UP of 3 fresh, still a majority vouching: sticky */
    assert_int_equal(observe(x, 1, T0 + TTL + 500, D, D), DW_FSM_APPLIED);
    assert_int_equal(observe(x, 2, T0 + TTL + 501, U, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_UP);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_B), DW_UP);
    /* node 2 falls silent too: nobody vouches, both sites unknown, nothing planned */
    assert_int_equal(observe(x, 1, T0 + 2 * TTL + 600, D, D), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_UNKNOWN);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_B), DW_UNKNOWN);
    assert_int_equal(n_next(x, r, 4), 0);
    assert_int_equal(dw_fsm_active_target(x->f, 0), PREMISE_A);
}

static void test_tilted_observer_abstains(void **state)
{
    struct fx *x = *state;
    struct dw_step_ref r[4];

    all_up(x);
    assert_int_equal(observe(x, 1, T0 + 10, D, U), DW_FSM_APPLIED);
    assert_int_equal(observe_cfg(x->f, x->cfg, 2, T0 + 20, D, U, true), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_UP);
    assert_int_equal(n_next(x, r, 4), 0);
}

/* An observation made under another config version than the committed one does not vote: it
 * is dropped (not refused: that is expected around every change). */
static void test_other_config_version_dropped(void **state)
{
    struct fx *x = *state;
    struct dw_config *other = make_config();
    char *after;

    all_up(x);
    other->version = 1;
    assert_int_equal(observe_cfg(x->f, other, 2, T0 + 100, D, D, false), DW_FSM_APPLIED);
    assert_int_equal(observe_cfg(x->f, other, 3, T0 + 101, D, D, false), DW_FSM_APPLIED);
    assert_int_equal(observe(x, 7, T0 + 102, D, D), DW_FSM_REJECTED);
    assert_true(history_has(x, "rejected", "observation from node 7, not a member"));
    assert_int_equal(dw_fsm_rejected(x->f), 1);
    assert_int_equal(dw_fsm_applied(x->f), 5);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_UP);
    after = dw_fsm_dump(x->f);
    /* node 2's refresh time did not move */
    assert_non_null(strstr(after, "nodes|id=2|last_refresh=1700000000000|tilt=0"));
    free(after);
    free_config(other);
}

/* Drops the lines that a rejection is allowed to change. */
static void strip_rejection_rows(char *dump)
{
    char *out = dump, *line = dump;

    while (*line) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line + 1) : strlen(line);

        if (strncmp(line, "history|", 8) != 0 && strncmp(line, "meta|key=rejected|", 18) != 0) {
            memmove(out, line, n);
            out += n;
        }
        line += n;
    }
    *out = '\0';
}

static void test_garbage_rejected(void **state)
{
    struct fx *x = *state;
    static const char *const bad[] = {
        "{not json",
        "[1,2,3]",
        "{\"v\":1,\"type\":\"leader\",\"node\":1}",                           /* unstamped */
        "{\"v\":0,\"type\":\"leader\",\"node\":1,\"ts\":5,\"by\":1}",          /* version (a newer one is fatal) */
        "{\"v\":1,\"type\":\"reboot\",\"ts\":5,\"by\":1}",                     /* type */
        "{\"v\":1,\"type\":\"observe\",\"ts\":5,\"by\":1,\"node\":1}",         /* fields */
        "{\"v\":1,\"type\":\"leader\",\"node\":1,\"ts\":1.5,\"by\":1}",        /* ts not integer */
        "{\"v\":1,\"type\":\"leader\",\"node\":1,\"ts\":5,\"by\":1} trailing", /* trailing junk */
        "",
    };
    char *before, *after;

    all_up(x);
    before = dw_fsm_dump(x->f);
    assert_non_null(before);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(dw_fsm_apply(x->f, bad[i], strlen(bad[i])), DW_FSM_REJECTED);
    assert_int_equal(dw_fsm_apply(x->f, NULL, 0), DW_FSM_REJECTED);
    assert_int_equal(dw_fsm_rejected(x->f), sizeof bad / sizeof bad[0] + 1);
    assert_int_equal(dw_fsm_applied(x->f), 3);
    assert_int_equal(dw_fsm_last_ts(x->f), T0);
    after = dw_fsm_dump(x->f);
    assert_non_null(after);
    assert_non_null(strstr(after, "meta|key=rejected|value=10\n"));
    strip_rejection_rows(before);
    strip_rejection_rows(after);
    assert_string_equal(before, after);
    free(before);
    free(after);

    /* a stamped entry with the terminator included is fine */
    {
        const char ok[] = "{\"v\":1,\"type\":\"leader\",\"node\":2,\"ts\":1700000000500,\"by\":2}";

        assert_int_equal(dw_fsm_apply(x->f, ok, sizeof ok), DW_FSM_APPLIED);
        assert_true(history_has(x, "leader", "node 2 took office"));
        assert_int_equal(dw_fsm_last_ts(x->f), T0 + 500);
    }
}

/* A database error is this node's problem, not the entry's: nothing is kept, not even a
 * "rejected" row, and the caller learns it must stop. */
static void test_database_error_is_fatal(void **state)
{
    struct fx *x = *state;
    sqlite3 *db = dw_fsm_db(x->f);
    enum dw_health st[2] = {DW_DOWN, DW_UP};
    char *raw, *e, *before, *after, err[128];

    all_up(x);
    assert_int_equal(observe(x, 1, T0 + 1000, D, U), DW_FSM_APPLIED);
    assert_int_equal(sqlite3_exec(db, "CREATE TEMP TRIGGER boom BEFORE INSERT ON operations"
                                      " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    before = dw_fsm_dump(x->f);
    raw = dw_entry_observe(x->cfg, 2, false, st);
    e = dw_entry_stamp(raw, strlen(raw), T0 + 2000, 1, err, sizeof err);
    assert_non_null(e);
    /* site-a goes down: planning the failover fails */
    assert_int_equal(dw_fsm_apply(x->f, e, strlen(e)), DW_FSM_FATAL);
    assert_non_null(strstr(dw_fsm_last_error(x->f), "disk on fire"));
    after = dw_fsm_dump(x->f);
    assert_string_equal(before, after);
    assert_int_equal(dw_fsm_rejected(x->f), 0);
    /* once the fault is gone the same entry applies (what a restart's replay does) */
    assert_int_equal(sqlite3_exec(db, "DROP TRIGGER boom", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(dw_fsm_apply(x->f, e, strlen(e)), DW_FSM_APPLIED);
    assert_string_equal(dw_fsm_last_error(x->f), "");
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_DOWN);
    free(before);
    free(after);
    free(raw);
    free(e);
}

/* An entry from a newer drwatchd stops this node (it would otherwise judge the log differently
 * from the upgraded nodes); an older or missing version is garbage, refused as before. */
static void test_newer_entry_version_is_fatal(void **state)
{
    struct fx *x = *state;
    static const char newer[] = "{\"v\":2,\"type\":\"observe\",\"ts\":1700000001000,\"by\":1}";
    static const char older[] = "{\"v\":0,\"type\":\"observe\",\"ts\":1700000001000,\"by\":1}";
    char *before, *after;

    all_up(x);
    before = dw_fsm_dump(x->f);
    assert_int_equal(dw_fsm_apply(x->f, newer, strlen(newer)), DW_FSM_FATAL);
    assert_non_null(strstr(dw_fsm_last_error(x->f), "entry version 2 is newer than this drwatchd"));
    assert_non_null(strstr(dw_fsm_last_error(x->f), "upgrade this node"));
    after = dw_fsm_dump(x->f);
    assert_string_equal(before, after);
    free(after);
    assert_int_equal(dw_fsm_apply(x->f, older, strlen(older)), DW_FSM_REJECTED);
    assert_int_equal(dw_fsm_rejected(x->f), 1);
    free(before);
}

/* ---- event journal -------------------------------------------------------------------------- */

static int undelivered(struct fx *x, const char *channel, int64_t since, struct dw_event *ev,
                       int max)
{
    int64_t pending = -1;
    int n = dw_fsm_undelivered(x->f, channel, since, ev, max, &pending);

    assert_true(n >= 0);
    assert_true(pending >= n);
    return n;
}

static int notified(struct fx *x, int64_t event, const char *channel, int64_t ts)
{
    return apply_raw(x->f, dw_entry_notified(event, channel), ts);
}

static int64_t table_rows(struct fx *x, const char *sql)
{
    sqlite3_stmt *s;
    int64_t n = -1;

    assert_int_equal(sqlite3_prepare_v2(dw_fsm_db(x->f), sql, -1, &s, NULL), SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return n;
}

/* A failover done is one event, in history as before; a delivery is recorded once per channel
 * and a second or unknown confirmation changes nothing. */
static void test_events_failover_and_deliveries(void **state)
{
    struct fx *x = *state;
    struct dw_event ev[8];
    int64_t ts = T0 + 5000;
    cJSON *j;
    char *before, *after;

    all_up(x);
    fail_site_a(x, T0 + 1000);
    assert_int_equal(undelivered(x, "slack", 0, ev, 8), 0); /* planned is not an event */
    run_to_done(x, &ts);
    assert_true(history_has(x, "operation", "carrier-1: failover #1 premise-a -> premise-b done"));
    assert_int_equal(undelivered(x, "slack", 0, ev, 8), 1);
    assert_int_equal(ev[0].id, 1);
    assert_string_equal(ev[0].kind, "failover");
    assert_string_equal(ev[0].group, "carrier-1");
    assert_string_equal(ev[0].summary, "carrier-1: failover #1 premise-a -> premise-b done");
    assert_int_equal(ev[0].ts, ts - 1);
    /* a channel added later does not replay what came before it */
    assert_int_equal(undelivered(x, "slack", ev[0].ts, ev + 1, 7), 0);

    j = dw_event_json(&ev[0], "prod");
    assert_non_null(j);
    assert_int_equal((int)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "id")), 1);
    assert_string_equal(jstr(j, "kind"), "failover");
    assert_string_equal(jstr(j, "group"), "carrier-1");
    assert_string_equal(jstr(j, "cluster"), "prod");
    assert_string_equal(jstr(j, "time"), "2023-11-14T22:13:25.007Z");
    cJSON_Delete(j);

    assert_int_equal(notified(x, 1, "slack", ts++), DW_FSM_APPLIED);
    assert_int_equal(undelivered(x, "slack", 0, ev, 8), 0);
    assert_int_equal(undelivered(x, "pagerduty", 0, ev, 8), 1);
    assert_int_equal(table_rows(x, "SELECT COUNT(*) FROM deliveries"), 1);
    before = dw_fsm_dump(x->f);
    assert_int_equal(notified(x, 1, "slack", ts++), DW_FSM_APPLIED);  /* again: no-op */
    assert_int_equal(notified(x, 99, "slack", ts++), DW_FSM_APPLIED); /* unknown: no-op */
    assert_int_equal(table_rows(x, "SELECT COUNT(*) FROM deliveries"), 1);
    assert_int_equal(dw_fsm_rejected(x->f), 0);
    after = dw_fsm_dump(x->f);
    assert_non_null(strstr(after, "deliveries|event=1|channel=slack|ts="));
    assert_non_null(strstr(after, "events|id=1|ts="));
    free(before);
    free(after);

    expect_refused("{\"v\":1,\"type\":\"notified\",\"event\":0,\"channel\":\"slack\"}", "event");
    expect_refused("{\"v\":1,\"type\":\"notified\",\"event\":1}", "channel");
    expect_refused("{\"v\":1,\"type\":\"notified\",\"event\":1,\"channel\":\"\"}", "channel");
    /* stamped by hand, a malformed one is refused alike on every node */
    {
        static const char bad[] = "{\"v\":1,\"type\":\"notified\",\"event\":\"1\","
                                  "\"channel\":\"slack\",\"ts\":1700000100000,\"by\":1}";

        assert_int_equal(dw_fsm_apply(x->f, bad, strlen(bad)), DW_FSM_REJECTED);
    }
}

/* A failed step is an operation_failed and a hold; the release is hold_released; "no target up"
 * is one event per verdict change. Cleanups are internal: history only. */
static void test_events_failure_hold_release(void **state)
{
    struct fx *x = *state;
    struct dw_event ev[16];
    int64_t ts = T0 + 5000;
    int n;

    fail_switch_off(x, &ts);
    n = undelivered(x, "hook", 0, ev, 16);
    assert_int_equal(n, 2);
    assert_string_equal(ev[0].kind, "operation_failed");
    assert_string_equal(ev[1].kind, "hold");
    assert_string_equal(ev[1].summary, "carrier-1: held after failover #1 failed");
    assert_int_equal(ev[0].ts, ev[1].ts);
    assert_int_equal(history_count(x, "hold", ""), 0); /* the failure's row tells the hold */
    assert_int_equal(apply_raw(x->f, dw_entry_hold_release("carrier-1", "alice"), ts++),
                     DW_FSM_APPLIED);
    assert_true(history_has(x, "hold", "carrier-1: hold released by alice"));
    n = undelivered(x, "hook", 0, ev, 16);
    assert_int_equal(n, 3);
    assert_string_equal(ev[2].kind, "hold_released");
    run_to_done(x, &ts); /* the cleanup of premise-a and the cloud */
    assert_true(history_has(x, "operation", "cleanup #2"));
    assert_int_equal(undelivered(x, "hook", 0, ev, 16), 3);

    /* every premise down, the cloud carries the calls; then the cloud is all there is */
    assert_int_equal(observe(x, 1, ts++, D, D), DW_FSM_APPLIED);
    assert_int_equal(observe(x, 2, ts++, D, D), DW_FSM_APPLIED);
    run_to_done(x, &ts);
    n = undelivered(x, "hook", 0, ev, 16);
    assert_int_equal(n, 4);
    assert_string_equal(ev[3].kind, "failover");
    /* at most max rows, with the total in pending */
    {
        int64_t pending = 0;

        assert_int_equal(dw_fsm_undelivered(x->f, "hook", 0, ev, 2, &pending), 2);
        assert_int_equal(pending, 4);
        assert_int_equal(ev[1].id, 2);
    }
}

static void test_events_snapshot_and_prune(void **state)
{
    struct fx *x = *state;
    struct dw_fsm *g;
    struct dw_event ev[4];
    int64_t ts = T0 + 5000;
    void *buf;
    size_t len;
    char *a, *b, err[128];

    all_up(x);
    fail_site_a(x, T0 + 1000);
    run_to_done(x, &ts);
    assert_int_equal(notified(x, 1, "slack", ts++), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_snapshot(x->f, &buf, &len), 0);
    assert_int_equal(dw_fsm_open(&g, x->cfg, err, sizeof err), 0);
    assert_int_equal(dw_fsm_restore(g, buf, len), 0);
    sqlite3_free(buf);
    a = dw_fsm_dump(x->f);
    b = dw_fsm_dump(g);
    assert_string_equal(a, b);
    assert_non_null(strstr(a, "events|id=1|"));
    assert_non_null(strstr(a, "deliveries|event=1|channel=slack|"));
    free(a);
    free(b);
    assert_int_equal(dw_fsm_undelivered(g, "slack", 0, ev, 4, NULL), 0);
    assert_int_equal(dw_fsm_undelivered(g, "webhook", 0, ev, 4, NULL), 1);
    dw_fsm_close(g);

    /* pruned with history, but the newest event stays: its id is never handed out again */
    assert_int_equal(apply_raw(x->f, dw_entry_hold_release("carrier-1", "alice"), ts++),
                     DW_FSM_APPLIED);
    assert_int_equal(notified(x, 2, "slack", ts++), DW_FSM_APPLIED);
    x->cfg->cluster.history_retention_days = 1;
    assert_int_equal(observe(x, 3, ts + 2 * 86400000LL, D, U), DW_FSM_APPLIED);
    assert_int_equal(table_rows(x, "SELECT COUNT(*) FROM events"), 1);
    assert_int_equal(table_rows(x, "SELECT MIN(id) FROM events"), 2);
    assert_int_equal(table_rows(x, "SELECT COUNT(*) FROM deliveries"), 1);
    assert_int_equal(table_rows(x, "SELECT MIN(event) FROM deliveries"), 2);
}

static void test_snapshot_restore_roundtrip(void **state)
{
    struct fx *x = *state;
    struct dw_fsm *g;
    void *buf;
    size_t len;
    char *a, *b, err[128];

    all_up(x);
    fail_site_a(x, T0 + 1000);
    assert_int_equal(dw_fsm_snapshot(x->f, &buf, &len), 0);
    assert_int_equal(dw_fsm_open(&g, x->cfg, err, sizeof err), 0);
    assert_int_equal(dw_fsm_restore(g, buf, len), 0);
    sqlite3_free(buf);
    assert_int_equal(dw_fsm_applied(g), dw_fsm_applied(x->f));
    assert_int_equal(dw_fsm_last_ts(g), dw_fsm_last_ts(x->f));
    a = dw_fsm_dump(x->f);
    b = dw_fsm_dump(g);
    assert_string_equal(a, b);
    free(a);
    free(b);
    /* a bad snapshot leaves the state untouched */
    assert_int_equal(dw_fsm_restore(g, "garbage", 7), -1);
    assert_int_equal(dw_fsm_site_verdict(g, SITE_A), DW_DOWN);
    dw_fsm_close(g);
}

static void test_history_json(void **state)
{
    struct fx *x = *state;
    cJSON *h;

    all_up(x);
    assert_int_equal(apply_raw(x->f, dw_entry_leader(3), T0 + 1), DW_FSM_APPLIED);
    h = dw_fsm_history_json(x->f, 1);
    assert_int_equal(cJSON_GetArraySize(h), 1);
    assert_string_equal(jstr(cJSON_GetArrayItem(h, 0), "kind"), "leader");
    assert_true(cJSON_GetObjectItem(cJSON_GetArrayItem(h, 0), "ts")->valuedouble ==
                (double)(T0 + 1));
    cJSON_Delete(h);
}

/* drctl history --since/--group and watch's cursor: each row's subject, the group filter (the
 * group's rows and its targets' sites'), since, after with oldest first, limit, the cursor. */
static void test_history_query(void **state)
{
    struct fx *x = *state;
    struct dw_history_query q = {.limit = 100};
    int64_t newest = -1;
    cJSON *h, *row;
    int n = 0;

    all_up(x);
    assert_int_equal(apply_raw(x->f, dw_entry_leader(3), T0 + 10), DW_FSM_APPLIED);
    assert_int_equal(apply_raw(x->f, dw_entry_maintenance("set", "group", "carrier-1", "bob",
                                                          "drill", 60000), T0 + 20),
                     DW_FSM_APPLIED);
    assert_int_equal(apply_raw(x->f, dw_entry_maintenance("set", "site", "site-b", "bob",
                                                          "ups", 60000), T0 + 30),
                     DW_FSM_APPLIED);
    h = dw_fsm_history_query(x->f, &q, &newest);
    assert_non_null(h);
    assert_int_equal(cJSON_GetArraySize(h), 5); /* two verdicts, leader, two maintenance */
    assert_true(newest == (int64_t)cJSON_GetObjectItem(cJSON_GetArrayItem(h, 0), "id")->valuedouble);
    cJSON_ArrayForEach(row, h) {
        const char *kind = jstr(row, "kind"), *subject = jstr(row, "subject");

        if (strcmp(kind, "leader") == 0)
            assert_string_equal(subject, "");
        else if (strcmp(kind, "verdict") == 0)
            assert_true(strcmp(subject, "site site-a") == 0 || strcmp(subject, "site site-b") == 0);
        else if (strstr(jstr(row, "detail"), "group carrier-1") == jstr(row, "detail"))
            assert_string_equal(subject, "group carrier-1");
        else
            assert_string_equal(subject, "site site-b");
        assert_int_equal(strlen(jstr(row, "time")), 24);
    }
    cJSON_Delete(h);

    q.group = "carrier-1"; /* all but the leader row */
    h = dw_fsm_history_query(x->f, &q, &newest);
    assert_int_equal(cJSON_GetArraySize(h), 4);
    cJSON_ArrayForEach(row, h) assert_string_not_equal(jstr(row, "kind"), "leader");
    cJSON_Delete(h);
    q.group = "nope";
    h = dw_fsm_history_query(x->f, &q, &newest);
    assert_int_equal(cJSON_GetArraySize(h), 0);
    cJSON_Delete(h);

    q = (struct dw_history_query){.since = T0 + 10, .limit = 100};
    h = dw_fsm_history_query(x->f, &q, &newest);
    assert_int_equal(cJSON_GetArraySize(h), 3);
    assert_string_equal(jstr(cJSON_GetArrayItem(h, 2), "kind"), "leader");
    cJSON_Delete(h);

    /* after a cursor, oldest first, at most limit */
    q = (struct dw_history_query){.after = newest - 3, .limit = 2, .oldest_first = true};
    h = dw_fsm_history_query(x->f, &q, &newest);
    assert_int_equal(cJSON_GetArraySize(h), 2);
    cJSON_ArrayForEach(row, h) {
        assert_true(cJSON_GetObjectItem(row, "id")->valuedouble == (double)(newest - 2 + n));
        n++;
    }
    cJSON_Delete(h);
    q.after = newest;
    h = dw_fsm_history_query(x->f, &q, &newest);
    assert_int_equal(cJSON_GetArraySize(h), 0);
    cJSON_Delete(h);
}

/* ---- history retention ---------------------------------------------------------------------- */

#define HOUR_MS 3600000LL

static int64_t history_rows(struct dw_fsm *f, int64_t *oldest_ts)
{
    sqlite3_stmt *s;
    int64_t n;

    assert_int_equal(sqlite3_prepare_v2(dw_fsm_db(f), "SELECT COUNT(*), MIN(ts) FROM history", -1,
                                        &s, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    n = sqlite3_column_int64(s, 0);
    if (oldest_ts)
        *oldest_ts = sqlite3_column_int64(s, 1);
    sqlite3_finalize(s);
    return n;
}

/* n leader entries, one history row each, every step ms from ts. */
static void leaders(struct dw_fsm *f, int n, int64_t ts, int64_t step)
{
    for (int i = 0; i < n; i++)
        assert_int_equal(apply_raw(f, dw_entry_leader((uint64_t)((ts + i * step) / 1000 % 3) + 1),
                                   ts + i * step),
                         DW_FSM_APPLIED);
}

static void test_history_max_rows(void **state)
{
    struct fx *x = *state;
    cJSON *h;

    x->cfg->cluster.history_max_rows = 50;
    leaders(x->f, 300, T0, 1000);
    assert_int_equal(history_rows(x->f, NULL), 50);
    h = dw_fsm_history_json(x->f, 0);
    assert_int_equal(cJSON_GetArraySize(h), 50);
    /* the newest rows stay */
    assert_true(cJSON_GetObjectItem(cJSON_GetArrayItem(h, 0), "ts")->valuedouble ==
                (double)(T0 + 299 * 1000));
    cJSON_Delete(h);
}

static void test_history_retention_days(void **state)
{
    struct fx *x = *state;
    int64_t oldest, last = T0 + 71 * HOUR_MS;

    x->cfg->cluster.history_retention_days = 1;
    leaders(x->f, 72, T0, HOUR_MS);
    /* the last day's entries, the one exactly a day old included: a leader row and a "time"
     * row each (an hour is past the TTL) */
    assert_int_equal(history_rows(x->f, &oldest), 2 * 25);
    assert_true(oldest == last - 24 * HOUR_MS);
}

static void test_dump_size_cap(void **state)
{
    struct fx *x = *state;
    char *a, *b;

    leaders(x->f, 100, T0, 1000);
    a = dw_fsm_dump(x->f);
    b = dw_fsm_dump_max(x->f, strlen(a) + 1);
    assert_string_equal(a, b);
    free(b);
    assert_null(dw_fsm_dump_max(x->f, strlen(a) / 2));
    assert_non_null(strstr(dw_fsm_last_error(x->f), "larger than"));
    free(a);
}

/* A lowered limit drains a backlog a batch per entry, and every node deletes the same rows. */
static void test_history_prune_bounded_and_deterministic(void **state)
{
    struct fx *x = *state;
    struct dw_fsm *g;
    void *buf;
    size_t len;
    char *a, *b, err[128];
    cJSON *h;

    leaders(x->f, 10500, T0, 1000);
    h = dw_fsm_history_json(x->f, 0);
    assert_int_equal(cJSON_GetArraySize(h), DW_FSM_HISTORY_MAX);
    cJSON_Delete(h);
    assert_int_equal(dw_fsm_snapshot(x->f, &buf, &len), 0);
    assert_int_equal(dw_fsm_open(&g, x->cfg, err, sizeof err), 0);
    assert_int_equal(dw_fsm_restore(g, buf, len), 0);
    sqlite3_free(buf);
    x->cfg->cluster.history_max_rows = 1000;
    x->cfg->cluster.history_retention_days = 90;
    leaders(x->f, 1, T0 + 10500 * 1000, 1000);
    assert_int_equal(history_rows(x->f, NULL), 10501 - 256);
    leaders(x->f, 100, T0 + 10501 * 1000, 1000);
    leaders(g, 101, T0 + 10500 * 1000, 1000);
    assert_int_equal(history_rows(x->f, NULL), 1000);
    a = dw_fsm_dump(x->f);
    b = dw_fsm_dump(g);
    assert_string_equal(a, b);
    free(a);
    free(b);
    dw_fsm_close(g);
}

/* ---- the Genesys signal --------------------------------------------------------------------- */

/* Gives every Edge a Genesys id, sets how each site combines its signals, reopens the FSM. */
static void use_cloud(struct fx *x, enum dw_combine a, enum dw_combine b)
{
    char err[256];

    x->cfg->genesys.cloud_ttl_ms = CTTL;
    x->cfg->genesys.cloud_grace_ms = GRACE;
    x->cfg->sites[SITE_A].combine = a;
    x->cfg->sites[SITE_B].combine = b;
    for (int i = 0; i < x->cfg->n_sites; i++) {
        for (int j = 0; j < x->cfg->sites[i].n_edges; j++) {
            struct dw_edge *e = &x->cfg->sites[i].edges[j];

            snprintf(e->genesys_edge_id, sizeof e->genesys_edge_id, "g-%.40s", e->id);
        }
    }
    dw_fsm_close(x->f);
    assert_int_equal(dw_fsm_open(&x->f, x->cfg, err, sizeof err), 0);
}

/* The leader's cloud view: site-a's two Edges, then site-b's one. */
static int cloud3(struct fx *x, int64_t ts, enum dw_health a1, enum dw_health a2,
                  enum dw_health b1)
{
    enum dw_health st[3] = {a1, a2, b1};

    return apply_raw(x->f, dw_entry_cloud(x->cfg, st), ts);
}

/* The same view with the reason for a DOWN, one letter per Edge: 'U' up, '?' unknown, 'O' OFFLINE,
 * 'C' online with its in-service trunks disconnected. */
static int cloudv(struct fx *x, int64_t ts, const char *v)
{
    enum dw_health st[3];
    bool disc[3];

    for (int i = 0; i < 3; i++) {
        st[i] = v[i] == 'U' ? DW_UP : v[i] == '?' ? DW_UNKNOWN : DW_DOWN;
        disc[i] = v[i] == 'C';
    }
    return apply_raw(x->f, dw_entry_cloud_part(x->cfg, st, disc, 0, INT32_MAX, NULL), ts);
}

/* Every watchdog: site-a down, site-b up (keeps the probe quorum fresh). */
static void probes_a_down(struct fx *x, int64_t ts)
{
    for (uint64_t n = 1; n <= 3; n++)
        assert_int_equal(observe(x, n, ts + (int64_t)n, D, U), DW_FSM_APPLIED);
}

/* site-a fails over to premise-b, whose site combines "or"; its activate step starts at *act. */
static int64_t activating_b(struct fx *x, int64_t *act)
{
    int64_t op;

    use_cloud(x, DW_COMBINE_OR_GENESYS, DW_COMBINE_OR_GENESYS);
    all_up(x);
    op = fail_site_a(x, T0 + 1000);
    *act = T0 + 2000;
    assert_int_equal(step(x, op, 0, DW_STEP_STARTED, *act), DW_FSM_APPLIED);
    return op;
}

static void test_combine_and(void **state)
{
    struct fx *x = *state;
    struct dw_step_ref r[4];

    use_cloud(x, DW_COMBINE_AND_GENESYS, DW_COMBINE_AND_GENESYS);
    all_up(x);
    /* Genesys alone cannot take an "and" site down */
    assert_int_equal(cloud3(x, T0 + 100, D, D, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_cloud_verdict(x->f, SITE_A), DW_DOWN);
    assert_int_equal(dw_fsm_cloud_verdict(x->f, SITE_B), DW_UP);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_UP);
    assert_true(history_has(x, "signal", "site-a: genesys unknown -> down (2/2 Edges down"));
    /* nor can one watchdog plus Genesys */
    assert_int_equal(observe(x, 1, T0 + 200, D, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_probe_verdict(x->f, SITE_A), DW_UP);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_UP);
    assert_int_equal(n_next(x, r, 4), 0);
    /* a probe quorum plus Genesys can */
    assert_int_equal(observe(x, 2, T0 + 300, D, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_probe_verdict(x->f, SITE_A), DW_DOWN);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_DOWN);
    assert_true(history_has(x, "verdict", "site-a: up -> down (down 2/3 fresh, up 1/3; probes down, "
                                          "genesys down: 2/2 Edges down"));
    assert_true(history_has(x, "verdict", "by probes, combine probes_and_genesys"));
    assert_int_equal(n_next(x, r, 4), 1);
    assert_int_equal(r[0].target, PREMISE_B);

    /* site-b: the probe quorum alone is not enough while Genesys sees it up */
    assert_int_equal(observe(x, 1, T0 + 400, D, D), DW_FSM_APPLIED);
    assert_int_equal(observe(x, 2, T0 + 500, D, D), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_probe_verdict(x->f, SITE_B), DW_DOWN);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_B), DW_UP);
    assert_true(history_has(x, "signal", "site-b: probes up -> down"));
    /* ... until Genesys agrees: then Genesys is what moved it */
    assert_int_equal(cloud3(x, T0 + 600, D, D, D), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_B), DW_DOWN);
    assert_true(history_has(x, "verdict", "site-b: up -> down"));
    assert_true(history_has(x, "verdict", "by genesys, combine probes_and_genesys"));
    /* Genesys up again does not lift it: only the probes do */
    assert_int_equal(cloud3(x, T0 + 700, D, D, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_B), DW_DOWN);
    assert_int_equal(observe(x, 1, T0 + 800, D, U), DW_FSM_APPLIED);
    assert_int_equal(observe(x, 2, T0 + 900, D, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_B), DW_UP);
}

static void test_combine_or(void **state)
{
    struct fx *x = *state;
    struct dw_step_ref r[4];

    use_cloud(x, DW_COMBINE_OR_GENESYS, DW_COMBINE_OR_GENESYS);
    all_up(x);
    /* one Edge of the HA pair down in Genesys: rule "any" keeps the site up */
    assert_int_equal(cloud3(x, T0 + 100, D, U, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_cloud_verdict(x->f, SITE_A), DW_UP);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_UP);
    /* both down in Genesys: down, although every watchdog still reaches it */
    assert_int_equal(cloud3(x, T0 + 200, D, D, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_probe_verdict(x->f, SITE_A), DW_UP);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_DOWN);
    assert_true(history_has(x, "verdict", "by genesys, combine probes_or_genesys"));
    assert_int_equal(n_next(x, r, 4), 1);
    assert_int_equal(r[0].target, PREMISE_B);
    /* Genesys sees it back and the probes say up: up again */
    assert_int_equal(cloud3(x, T0 + 300, U, D, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_UP);
    /* the probe quorum alone takes site-b down while Genesys sees it up */
    assert_int_equal(observe(x, 1, T0 + 400, U, D), DW_FSM_APPLIED);
    assert_int_equal(observe(x, 2, T0 + 500, U, D), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_cloud_verdict(x->f, SITE_B), DW_UP);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_B), DW_DOWN);
    assert_true(history_has(x, "verdict", "site-b: up -> down"));
    /* probes up but Genesys down: stays down */
    assert_int_equal(cloud3(x, T0 + 600, U, U, D), DW_FSM_APPLIED);
    assert_int_equal(observe(x, 1, T0 + 700, U, U), DW_FSM_APPLIED);
    assert_int_equal(observe(x, 2, T0 + 800, U, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_probe_verdict(x->f, SITE_B), DW_UP);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_B), DW_DOWN);
    assert_int_equal(cloud3(x, T0 + 900, U, U, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_B), DW_UP);
}

static void test_cloud_stale_is_unknown(void **state)
{
    struct fx *x = *state;

    use_cloud(x, DW_COMBINE_OR_GENESYS, DW_COMBINE_AND_GENESYS);
    all_up(x);
    assert_int_equal(cloud3(x, T0 + 1000, D, D, D), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_DOWN);
    /* a report exactly cloud_ttl_ms old still counts */
    assert_int_equal(observe(x, 1, T0 + 1000 + CTTL, U, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_cloud_verdict(x->f, SITE_A), DW_DOWN);
    /* the leader stopped reporting: Genesys' word expires, and is not sticky */
    assert_int_equal(observe(x, 2, T0 + 1001 + CTTL, U, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_cloud_verdict(x->f, SITE_A), DW_UNKNOWN);
    assert_int_equal(dw_fsm_cloud_verdict(x->f, SITE_B), DW_UNKNOWN);
    assert_true(history_has(x, "signal", "site-a: genesys down -> unknown"));
    /* "or": fresh probes up and no Genesys down: up */
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_UP);
    /* "and": a stale Genesys down does not help a probe quorum take site-b down */
    assert_int_equal(observe(x, 1, T0 + 2000 + CTTL, U, D), DW_FSM_APPLIED);
    assert_int_equal(observe(x, 2, T0 + 2001 + CTTL, U, D), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_probe_verdict(x->f, SITE_B), DW_DOWN);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_B), DW_UP);
    /* a fresh report does */
    assert_int_equal(cloud3(x, T0 + 2002 + CTTL, U, U, D), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_B), DW_DOWN);
}

static void test_cloud_site_rules(void **state)
{
    struct fx *x = *state;

    x->cfg->sites[SITE_A].rule = DW_RULE_ALL;
    use_cloud(x, DW_COMBINE_OR_GENESYS, DW_COMBINE_PROBES);
    all_up(x);
    /* "all": one Edge down is the site down */
    assert_int_equal(cloud3(x, T0 + 100, U, D, D), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_cloud_verdict(x->f, SITE_A), DW_DOWN);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_DOWN);
    /* a site that combines nothing ignores Genesys (and the entry did not even carry it) */
    assert_int_equal(dw_fsm_cloud_verdict(x->f, SITE_B), DW_UNKNOWN);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_B), DW_UP);

    x->cfg->sites[SITE_A].rule = DW_RULE_AT_LEAST;
    x->cfg->sites[SITE_A].at_least = 2;
    use_cloud(x, DW_COMBINE_OR_GENESYS, DW_COMBINE_PROBES);
    all_up(x);
    assert_int_equal(cloud3(x, T0 + 100, U, X, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_cloud_verdict(x->f, SITE_A), DW_UNKNOWN);
    assert_int_equal(cloud3(x, T0 + 200, U, U, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_cloud_verdict(x->f, SITE_A), DW_UP);
    assert_int_equal(cloud3(x, T0 + 300, U, D, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_cloud_verdict(x->f, SITE_A), DW_DOWN);

    /* an Edge without a Genesys id is unknown to Genesys: "any" can then never say down */
    x->cfg->sites[SITE_A].rule = DW_RULE_ANY;
    use_cloud(x, DW_COMBINE_OR_GENESYS, DW_COMBINE_PROBES);
    x->cfg->sites[SITE_A].edges[1].genesys_edge_id[0] = '\0';
    dw_fsm_close(x->f);
    {
        char err[256];
        assert_int_equal(dw_fsm_open(&x->f, x->cfg, err, sizeof err), 0);
    }
    all_up(x);
    assert_int_equal(cloud3(x, T0 + 100, D, D, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_cloud_verdict(x->f, SITE_A), DW_UNKNOWN);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_UP);
}

static void test_cloud_status_json(void **state)
{
    struct fx *x = *state;
    cJSON *root, *a, *b, *edges;

    x->cfg->sites[SITE_A].rule = DW_RULE_AT_LEAST;
    x->cfg->sites[SITE_A].at_least = 1;
    use_cloud(x, DW_COMBINE_AND_GENESYS, DW_COMBINE_PROBES);
    all_up(x);
    assert_int_equal(cloud3(x, T0 + 100, D, U, U), DW_FSM_APPLIED);
    root = dw_fsm_status_json(x->f);
    assert_non_null(root);
    a = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "sites"), SITE_A);
    b = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "sites"), SITE_B);
    assert_string_equal(jstr(a, "verdict"), "up");
    assert_string_equal(jstr(a, "probe_verdict"), "up");
    assert_string_equal(jstr(a, "cloud_verdict"), "up");
    assert_string_equal(jstr(a, "combine"), "probes_and_genesys");
    assert_string_equal(jstr(a, "rule"), "at_least");
    assert_int_equal(cJSON_GetObjectItem(a, "at_least")->valueint, 1);
    edges = cJSON_GetObjectItem(a, "cloud");
    assert_int_equal(cJSON_GetArraySize(edges), 2);
    assert_string_equal(jstr(cJSON_GetArrayItem(edges, 0), "edge"), "site-a-edge1");
    assert_string_equal(jstr(cJSON_GetArrayItem(edges, 0), "genesys_edge_id"), "g-site-a-edge1");
    assert_string_equal(jstr(cJSON_GetArrayItem(edges, 0), "state"), "down");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetArrayItem(edges, 0), "fresh")));
    assert_true(cJSON_GetObjectItem(cJSON_GetArrayItem(edges, 1), "reported")->valuedouble ==
                (double)(T0 + 100));
    assert_string_equal(jstr(b, "combine"), "probes");
    assert_string_equal(jstr(b, "rule"), "any");
    assert_string_equal(jstr(b, "cloud_verdict"), "unknown");
    assert_null(cJSON_GetObjectItem(b, "cloud"));
    assert_null(cJSON_GetObjectItem(b, "at_least"));
    cJSON_Delete(root);
}

/* premise-b's trunks report disconnected while they connect: not a DOWN for the grace window */
static void test_cloud_grace_after_activation(void **state)
{
    struct fx *x = *state;
    int64_t act, op = activating_b(x, &act);

    assert_int_equal(cloudv(x, act + 1000, "OOC"), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_cloud_verdict(x->f, SITE_B), DW_UNKNOWN);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_B), DW_UP);
    assert_int_equal(step(x, op, 0, DW_STEP_DONE, act + 2000), DW_FSM_APPLIED);
    assert_int_equal(step(x, op, 1, DW_STEP_STARTED, act + 2001), DW_FSM_APPLIED);
    /* still within the grace on its last millisecond */
    probes_a_down(x, act + GRACE - 10000);
    assert_int_equal(cloudv(x, act + GRACE - 1, "OOC"), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_B), DW_UP);
    assert_false(history_has(x, "operation", "aborted"));
    /* the grace is over: the same fresh view is a DOWN on the next entry, whatever it is */
    assert_int_equal(observe(x, 3, act + GRACE, D, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_cloud_verdict(x->f, SITE_B), DW_DOWN);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_B), DW_DOWN);
    assert_true(history_has(x, "operation", "#1 premise-a -> premise-b aborted: premise-b is down"));
}

/* an OFFLINE Edge is not connecting: it counts within the grace */
static void test_cloud_grace_offline_counts(void **state)
{
    struct fx *x = *state;
    int64_t act;

    activating_b(x, &act);
    assert_int_equal(cloudv(x, act + 1000, "OOO"), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_cloud_verdict(x->f, SITE_B), DW_DOWN);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_B), DW_DOWN);
    assert_true(history_has(x, "operation", "#1 premise-a -> premise-b aborted: premise-b is down"));
}

/* With "or", what one fresh view decides alone (docs/detection.md). */
static void test_cloud_one_view_decides(void **state)
{
    struct fx *x = *state;
    struct dw_step_ref r[4];

    use_cloud(x, DW_COMBINE_OR_GENESYS, DW_COMBINE_OR_GENESYS);
    all_up(x);
    /* rule "any": one Edge of the pair OFFLINE is not the site down */
    assert_int_equal(cloudv(x, T0 + 100, "OUU"), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_UP);
    /* every Edge online but its trunks disconnected, no activation at the site: DOWN */
    assert_int_equal(cloudv(x, T0 + 200, "CCU"), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_DOWN);
    assert_true(history_has(x, "verdict", "by genesys, combine probes_or_genesys"));
    assert_int_equal(n_next(x, r, 4), 1);
    assert_int_equal(r[0].target, PREMISE_B);
    /* premise-b activating covers site-b only: site-a's disconnected trunks still count */
    assert_int_equal(step(x, r[0].op, 0, DW_STEP_STARTED, T0 + 300), DW_FSM_APPLIED);
    assert_int_equal(cloudv(x, T0 + 400, "CCC"), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_cloud_verdict(x->f, SITE_A), DW_DOWN);
    assert_int_equal(dw_fsm_cloud_verdict(x->f, SITE_B), DW_UNKNOWN);
    assert_true(history_has(x, "verdict", "site-a: up -> down"));
    /* a view older than cloud_ttl_ms decides nothing: site-a falls back to its probes */
    assert_int_equal(observe(x, 1, T0 + 401 + CTTL, U, U), DW_FSM_APPLIED);
    assert_int_equal(observe(x, 2, T0 + 402 + CTTL, U, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_cloud_verdict(x->f, SITE_A), DW_UNKNOWN);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_UP);
}

/* without a fresh probe majority, one fresh view still says DOWN, and only DOWN */
static void test_cloud_one_view_without_probes(void **state)
{
    struct fx *x = *state;

    use_cloud(x, DW_COMBINE_OR_GENESYS, DW_COMBINE_OR_GENESYS);
    all_up(x);
    assert_int_equal(cloudv(x, T0 + TTL + 1, "OOU"), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_probe_verdict(x->f, SITE_A), DW_UNKNOWN);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_DOWN);
    assert_int_equal(dw_fsm_cloud_verdict(x->f, SITE_B), DW_UP);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_B), DW_UNKNOWN);
}

static void test_cloud_entries_checked(void **state)
{
    struct fx *x = *state;
    struct dw_config *other = make_config();
    enum dw_health st[3] = {D, D, D};
    char raw[512], *e;
    int next = -1;

    use_cloud(x, DW_COMBINE_OR_GENESYS, DW_COMBINE_OR_GENESYS);
    all_up(x);
    /* a leader's view under another config version is not believed */
    other->genesys.cloud_ttl_ms = CTTL;
    other->sites[SITE_A].combine = DW_COMBINE_AND_GENESYS;
    other->sites[SITE_B].combine = DW_COMBINE_OR_GENESYS;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < other->sites[i].n_edges; j++)
            memcpy(other->sites[i].edges[j].genesys_edge_id,
                   x->cfg->sites[i].edges[j].genesys_edge_id, DW_ID_MAX);
    other->version = 2;
    assert_int_equal(apply_raw(x->f, dw_entry_cloud(other, st), T0 + 100), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_UP);
    free_config(other);

    /* unknown Edges are skipped, known ones applied */
    e = dw_entry_cloud(x->cfg, st);
    assert_non_null(e);
    {
        cJSON *j = cJSON_Parse(e);
        char *txt;

        cJSON_AddStringToObject(cJSON_GetObjectItem(j, "edges"), "nobody", "down");
        cJSON_ReplaceItemInObject(cJSON_GetObjectItem(j, "edges"), "site-a-edge1",
                                  cJSON_CreateString("up"));
        txt = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
        assert_int_equal(apply_raw(x->f, txt, T0 + 200), DW_FSM_APPLIED);
    }
    free(e);
    assert_int_equal(dw_fsm_cloud_verdict(x->f, SITE_A), DW_UP);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_B), DW_DOWN);
    e = dw_fsm_dump(x->f);
    assert_null(strstr(e, "nobody"));
    assert_non_null(strstr(e, "cloud|edge=site-b-edge1|state=down|ts=1700000000200\n"));
    free(e);

    /* stamped but malformed: rejected by the FSM */
    snprintf(raw, sizeof raw,
             "{\"v\":1,\"type\":\"cloud\",\"cv\":0,\"edges\":{\"site-a-edge1\":7},"
             "\"ts\":1700000000300,\"by\":1}");
    assert_int_equal(dw_fsm_apply(x->f, raw, strlen(raw)), DW_FSM_REJECTED);
    assert_true(history_has(x, "rejected", "cloud entry: bad state for Edge site-a-edge1"));

    /* refused before proposing */
    expect_refused("{\"v\":1,\"type\":\"cloud\",\"edges\":{}}", "cv");
    expect_refused("{\"v\":1,\"type\":\"cloud\",\"cv\":0,\"edges\":[]}", "edges");
    expect_refused("{\"v\":1,\"type\":\"cloud\",\"cv\":0,\"edges\":{\"e\":\"meh\"}}",
                   "edges.e");
    expect_refused("{\"v\":1,\"type\":\"cloud\",\"cv\":0,\"edges\":{\"\":\"up\"}}",
                   "Edge ids");

    /* a large view is split: here one Edge per entry */
    e = dw_entry_cloud_part(x->cfg, st, NULL, 0, 1, &next);
    assert_non_null(strstr(e, "\"edges\":{\"site-a-edge1\":\"down\"}"));
    assert_int_equal(next, 1);
    free(e);
    e = dw_entry_cloud_part(x->cfg, st, NULL, next, 1, &next);
    assert_non_null(strstr(e, "\"edges\":{\"site-a-edge2\":\"down\"}"));
    assert_int_equal(next, 2);
    free(e);
    e = dw_entry_cloud_part(x->cfg, st, NULL, next, 1, &next);
    assert_non_null(strstr(e, "\"edges\":{\"site-b-edge1\":\"down\"}"));
    assert_int_equal(next, 3);
    assert_int_equal(dw_entry_edge_count(x->cfg), 3);
    free(e);
}

/* Schema 1 as it was before the Genesys signal: its snapshots must still restore. */
static void test_restore_schema_1(void **state)
{
    static const char v1[] =
        "CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
        "CREATE TABLE nodes(id INTEGER PRIMARY KEY, last_refresh INTEGER NOT NULL,"
        " tilt INTEGER NOT NULL);"
        "CREATE TABLE observations(node INTEGER NOT NULL, site TEXT NOT NULL, state TEXT NOT NULL,"
        " ts INTEGER NOT NULL, PRIMARY KEY(node, site));"
        "CREATE TABLE sites(id TEXT PRIMARY KEY, verdict TEXT NOT NULL, since INTEGER NOT NULL);"
        "CREATE TABLE groups(id TEXT PRIMARY KEY, active INTEGER NOT NULL, hold INTEGER NOT NULL);"
        "CREATE TABLE operations(id INTEGER PRIMARY KEY, grp TEXT NOT NULL, kind TEXT NOT NULL,"
        " from_target TEXT NOT NULL, to_target TEXT NOT NULL, status TEXT NOT NULL,"
        " created INTEGER NOT NULL, finished INTEGER, reason TEXT NOT NULL);"
        "CREATE INDEX operations_by_group ON operations(grp, status);"
        "CREATE TABLE steps(op INTEGER NOT NULL, seq INTEGER NOT NULL, action TEXT NOT NULL,"
        " target TEXT NOT NULL, status TEXT NOT NULL, started INTEGER, finished INTEGER,"
        " detail TEXT, PRIMARY KEY(op, seq));"
        "CREATE TABLE history(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, kind TEXT NOT NULL,"
        " detail TEXT NOT NULL);"
        "INSERT INTO meta(key, value) VALUES('schema', 1), ('applied', 7), ('rejected', 0),"
        " ('last_ts', 1700000000000), ('leader_epoch', 1);"
        "INSERT INTO sites VALUES('site-a', 'down', 1700000000000), ('site-b', 'up', 5);"
        "INSERT INTO groups VALUES('carrier-1', 0, 0);";
    struct fx *x = *state;
    sqlite3 *db;
    sqlite3_int64 size = 0;
    unsigned char *buf;
    char *dump;

    use_cloud(x, DW_COMBINE_OR_GENESYS, DW_COMBINE_PROBES);
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, v1, NULL, NULL, NULL), SQLITE_OK);
    buf = sqlite3_serialize(db, "main", &size, 0);
    assert_non_null(buf);
    sqlite3_close(db);
    assert_int_equal(dw_fsm_restore(x->f, buf, (size_t)size), 0);
    sqlite3_free(buf);
    assert_int_equal(dw_fsm_applied(x->f), 7);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_DOWN);
    assert_int_equal(dw_fsm_probe_verdict(x->f, SITE_A), DW_DOWN);
    assert_int_equal(dw_fsm_cloud_verdict(x->f, SITE_A), DW_UNKNOWN);
    dump = dw_fsm_dump(x->f);
    assert_non_null(strstr(dump, "meta|key=schema|value=4\n"));
    assert_int_equal(dw_fsm_undelivered(x->f, "slack", 0, NULL, 0, NULL), 0); /* events table */
    /* the previous stamp, which older snapshots lack, is the last applied time */
    assert_non_null(strstr(dump, "meta|key=last_stamp|value=1700000000000\n"));
    assert_non_null(strstr(dump, "sites|id=site-b|verdict=up|since=5|probe_verdict=up|"
                                 "cloud_verdict=unknown\n"));
    free(dump);
    /* and it runs on: Genesys sees site-a up, but no watchdog vouches for it: unknown */
    assert_int_equal(cloud3(x, T0 + 10, U, U, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_cloud_verdict(x->f, SITE_A), DW_UP);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_UNKNOWN);
}

/* ---- entry codec ---------------------------------------------------------------------------- */

static void expect_refused(const char *json, const char *why_part)
{
    char err[256] = "";
    char *out = dw_entry_stamp(json, strlen(json), T0, 1, err, sizeof err);

    if (out != NULL)
        fail_msg("accepted: %s", json);
    if (strstr(err, why_part) == NULL)
        fail_msg("error \"%s\" lacks \"%s\"", err, why_part);
}

static void test_entry_stamp(void **state)
{
    struct fx *x = *state;
    enum dw_health st[2] = {DW_DOWN, DW_UP};
    char *obs = dw_entry_observe(x->cfg, 2, false, st);
    char err[256];
    char *stamped, *big;
    cJSON *e;

    assert_non_null(obs);
    stamped = dw_entry_stamp(obs, strlen(obs), T0, 3, err, sizeof err);
    assert_non_null(stamped);
    e = cJSON_Parse(stamped);
    assert_true(cJSON_GetObjectItem(e, "ts")->valuedouble == (double)T0);
    assert_int_equal(cJSON_GetObjectItem(e, "by")->valueint, 3);
    assert_string_equal(jstr(cJSON_GetObjectItem(e, "sites"), "site-a"), "down");
    assert_int_equal(cJSON_GetObjectItem(e, "cv")->valueint, 0);
    cJSON_Delete(e);
    expect_refused(stamped, "already stamped");
    free(stamped);
    free(obs);

    expect_refused("{\"v\":2,\"type\":\"leader\",\"node\":1}", "version");
    expect_refused("{\"type\":\"leader\",\"node\":1}", "version");
    expect_refused("{\"v\":1,\"type\":\"nap\"}", "unknown entry type");
    expect_refused("{\"v\":1,\"type\":\"leader\",\"node\":0}", "node");
    expect_refused("{\"v\":1,\"type\":\"leader\",\"node\":1,\"by\":1}", "already stamped");
    expect_refused("{\"v\":1,\"type\":\"observe\",\"node\":1,\"cv\":0,\"tilt\":0,\"sites\":{}}",
                   "tilt");
    expect_refused("{\"v\":1,\"type\":\"observe\",\"node\":1,\"cv\":0,\"tilt\":false,"
                   "\"sites\":{\"a\":\"sideways\"}}",
                   "sites.a");
    expect_refused("{\"v\":1,\"type\":\"step\",\"op\":0,\"seq\":0,\"status\":\"done\"}", "op");
    expect_refused("{\"v\":1,\"type\":\"step\",\"op\":1,\"seq\":-1,\"status\":\"done\"}", "seq");
    expect_refused("{\"v\":1,\"type\":\"step\",\"op\":1,\"seq\":0,\"status\":\"pending\"}", "status");
    expect_refused("{\"v\":1,\"type\":\"step\",\"op\":1,\"seq\":0,\"status\":\"done\",\"detail\":3}",
                   "detail");
    expect_refused("{\"v\":1,", "JSON");
    expect_refused("[]", "object");

    /* a long detail is cut by the builder, and refused when someone else sends it */
    big = malloc(2000);
    assert_non_null(big);
    memset(big, 'x', 1999);
    big[1999] = '\0';
    obs = dw_entry_step(1, 0, DW_STEP_FAILED, big);
    stamped = dw_entry_stamp(obs, strlen(obs), T0, 1, err, sizeof err);
    assert_non_null(stamped);
    free(stamped);
    free(obs);
    {
        char *raw = malloc(2100);

        assert_non_null(raw);
        snprintf(raw, 2100, "{\"v\":1,\"type\":\"step\",\"op\":1,\"seq\":0,\"status\":\"done\",\"detail\":\"%s\"}",
                 big);
        expect_refused(raw, "detail");
        free(raw);
    }
    free(big);

    big = malloc(DW_ENTRY_CONFIG_MAX + 2);
    assert_non_null(big);
    memset(big, ' ', DW_ENTRY_CONFIG_MAX + 1);
    big[DW_ENTRY_CONFIG_MAX + 1] = '\0';
    expect_refused(big, "exceeds");
    /* only a config entry may be larger than DW_ENTRY_MAX */
    memset(big, ' ', DW_ENTRY_MAX + 10);
    memcpy(big, "{\"v\":1,\"type\":\"leader\",\"node\":1,\"pad\":\"", 39);
    memset(big + 39, 'x', DW_ENTRY_MAX);
    memcpy(big + 39 + DW_ENTRY_MAX, "\"}", 3);
    expect_refused(big, "exceeds");
    free(big);
}

/* ---- determinism ---------------------------------------------------------------------------- */

/* make_config plus a second group; "reversed" lists groups, sites and Edges the other way round
 * (the same topology: operation ids and rows must not depend on the order). */
static struct dw_config *make_config_order(bool reversed)
{
    struct dw_config *cfg = make_config();
    int a = reversed ? 1 : 0, b = 1 - a;
    struct dw_group *g = &cfg->groups[cfg->n_groups++];

    snprintf(g->id, sizeof g->id, "carrier-0");
    add_target(g, "p0-a", SITE_A, "tb-0a");
    add_target(g, "p0-b", SITE_B, "tb-0b");
    if (!reversed)
        return cfg;
    {
        struct dw_site s = cfg->sites[0];
        struct dw_group t = cfg->groups[0];
        struct dw_edge e = cfg->sites[0].edges[0];

        cfg->sites[0] = cfg->sites[1];
        cfg->sites[1] = s;
        cfg->groups[0] = cfg->groups[1];
        cfg->groups[1] = t;
        /* site-a: swap its two Edges */
        cfg->sites[1].edges[0] = cfg->sites[1].edges[1];
        cfg->sites[1].edges[1] = e;
    }
    for (int i = 0; i < cfg->n_groups; i++) {
        for (int t = 0; t < cfg->groups[i].n_targets; t++) {
            struct dw_target *tg = &cfg->groups[i].targets[t];

            if (tg->site >= 0)
                tg->site = tg->site == SITE_A ? a : b;
        }
    }
    return cfg;
}

static void test_order_of_config_does_not_matter(void **state)
{
    struct dw_config *c1 = make_config_order(false), *c2 = make_config_order(true);
    struct dw_fsm *f1, *f2;
    struct dw_step_ref r[4];
    char err[128], *d1, *d2;
    int64_t ts = T0;
    /* site states in c1's order: a then b */
    static const enum dw_health script[][2] = {{DW_UP, DW_UP}, {DW_DOWN, DW_UP}, {DW_DOWN, DW_DOWN}};

    (void)state;
    assert_int_equal(dw_fsm_open(&f1, c1, err, sizeof err), 0);
    assert_int_equal(dw_fsm_open(&f2, c2, err, sizeof err), 0);
    for (size_t k = 0; k < sizeof script / sizeof script[0]; k++) {
        for (uint64_t n = 1; n <= 3; n++) {
            char *e = dw_entry_observe(c1, n, false, script[k]);
            char *st = dw_entry_stamp(e, strlen(e), ts++, 1, err, sizeof err);

            assert_non_null(st);
            assert_int_equal(dw_fsm_apply(f1, st, strlen(st)), DW_FSM_APPLIED);
            assert_int_equal(dw_fsm_apply(f2, st, strlen(st)), DW_FSM_APPLIED);
            free(st);
            free(e);
        }
        if (k == 1) {
            /* both groups fail over at once: the first operation's first step starts */
            assert_int_equal(dw_fsm_next_steps(f1, r, 4), 2);
            {
                char *e = dw_entry_step(1, 0, DW_STEP_STARTED, NULL);
                char *st = dw_entry_stamp(e, strlen(e), ts++, 1, err, sizeof err);

                assert_int_equal(dw_fsm_apply(f1, st, strlen(st)), DW_FSM_APPLIED);
                assert_int_equal(dw_fsm_apply(f2, st, strlen(st)), DW_FSM_APPLIED);
                free(st);
                free(e);
            }
        }
    }
    d1 = dw_fsm_dump(f1);
    d2 = dw_fsm_dump(f2);
    assert_non_null(d1);
    assert_non_null(d2);
    assert_string_equal(d1, d2);
    assert_non_null(strstr(d1, "operations|id=1|grp=carrier-0|"));
    free(d1);
    free(d2);
    dw_fsm_close(f1);
    dw_fsm_close(f2);
    free_config(c1);
    free_config(c2);
}

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: fixed seed, same sequence on every machine */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static unsigned rnd(uint64_t *s, unsigned n)
{
    return (unsigned)(rng_next(s) >> 33) % n;
}

/* One random stamped entry; steps are usually aimed at what the FSM expects next, sometimes not.
 * A failed step holds the group for good, so failures are only allowed late in the sequence. */
static char *random_entry(uint64_t *seed, struct dw_fsm *f, const struct dw_config *cfg,
                          int64_t *ts, bool may_fail)
{
    char *raw = NULL, *out, err[256];
    unsigned kind = rnd(seed, 100);

    *ts += (int64_t)rnd(seed, 4000) - 300; /* clocks of successive leaders may step back a little */
    if (kind < 3) {
        static const char *const junk[] = {"{", "{\"v\":1,\"type\":\"step\",\"op\":1}", "null"};
        const char *j = junk[rnd(seed, 3)];

        return strdup(j);
    }
    if (kind >= 60 && kind < 95) {
        struct dw_step_ref r[4];
        int n = dw_fsm_next_steps(f, r, 4);

        if (n > 0 && rnd(seed, 10) < 8) {
            int k = (int)rnd(seed, (unsigned)n);
            enum dw_step_status to = r[k].status == DW_STEP_PENDING ? DW_STEP_STARTED
                                     : may_fail && rnd(seed, 5) == 0 ? DW_STEP_FAILED
                                                                      : DW_STEP_DONE;
            raw = dw_entry_step(r[k].op, r[k].seq, to, to == DW_STEP_STARTED ? NULL : "seeded");
        } else if (rnd(seed, 5) == 0) {
            raw = dw_entry_step(1 + rnd(seed, 30), (int)rnd(seed, 3), 1 + rnd(seed, 3), NULL);
        }
    } else if (kind >= 95) {
        raw = dw_entry_leader(1 + rnd(seed, 3));
    } else if (kind >= 50 && kind < 60) {
        enum dw_health st[3];

        /* the leader's Genesys view; sometimes it falls silent long enough to go stale */
        for (int i = 0; i < 3; i++) {
            unsigned r = rnd(seed, 10);
            st[i] = r < 5 ? DW_UP : r < 9 ? DW_DOWN : DW_UNKNOWN;
        }
        raw = dw_entry_cloud(cfg, st);
    }
    if (raw == NULL) {
        enum dw_health st[2];

        for (int i = 0; i < 2; i++) {
            unsigned r = rnd(seed, 10);
            st[i] = r < 6 ? DW_UP : r < 9 ? DW_DOWN : DW_UNKNOWN;
        }
        raw = dw_entry_observe(cfg, 1 + rnd(seed, 4) % 3, rnd(seed, 20) == 0, st);
    }
    assert_non_null(raw);
    out = dw_entry_stamp(raw, strlen(raw), *ts, 1 + rnd(seed, 3), err, sizeof err);
    free(raw);
    assert_non_null(out);
    return out;
}

static void apply_str(struct dw_fsm *f, const char *e)
{
    dw_fsm_apply(f, e, strlen(e));
}

static void test_determinism(void **state)
{
    enum { N = 3000, SNAP_AT = 1700 };
    struct fx *x = *state;
    struct dw_group *g2;
    struct dw_fsm *b, *c, *d;
    char **entries = calloc(N, sizeof *entries);
    uint64_t seed = 0x5eed5eed12345678ULL;
    int64_t ts = T0;
    char *da, *db, *dd, err[128];
    void *snap;
    size_t snap_len;
    cJSON *h;

    assert_non_null(entries);
    /* carrier-1 ends on the cloud (no failback yet); carrier-2 has no cloud and keeps moving */
    g2 = &x->cfg->groups[x->cfg->n_groups++];
    snprintf(g2->id, sizeof g2->id, "carrier-2");
    add_target(g2, "p2-b", SITE_B, "tb-2b");
    add_target(g2, "p2-a", SITE_A, "tb-2a");
    /* both ways of combining the Genesys signal, with cloud entries mixed into the log */
    use_cloud(x, DW_COMBINE_OR_GENESYS, DW_COMBINE_AND_GENESYS);
    for (int i = 0; i < N; i++) {
        entries[i] = random_entry(&seed, x->f, x->cfg, &ts, i > N * 8 / 10);
        apply_str(x->f, entries[i]);
    }

    assert_int_equal(dw_fsm_open(&b, x->cfg, err, sizeof err), 0);
    assert_int_equal(dw_fsm_open(&c, x->cfg, err, sizeof err), 0);
    assert_int_equal(dw_fsm_open(&d, x->cfg, err, sizeof err), 0);
    for (int i = 0; i < N; i++)
        apply_str(b, entries[i]);
    for (int i = 0; i < SNAP_AT; i++)
        apply_str(c, entries[i]);
    assert_int_equal(dw_fsm_snapshot(c, &snap, &snap_len), 0);
    dw_fsm_close(c);
    assert_int_equal(dw_fsm_restore(d, snap, snap_len), 0);
    sqlite3_free(snap);
    for (int i = SNAP_AT; i < N; i++)
        apply_str(d, entries[i]);

    da = dw_fsm_dump(x->f);
    db = dw_fsm_dump(b);
    dd = dw_fsm_dump(d);
    assert_non_null(da);
    assert_string_equal(da, db);
    assert_string_equal(da, dd);
    assert_int_equal(dw_fsm_applied(d), dw_fsm_applied(x->f));
    assert_int_equal(dw_fsm_rejected(d), dw_fsm_rejected(x->f));

    /* the sequence must actually exercise the interesting paths */
    assert_true(dw_fsm_applied(x->f) > N / 2);
    assert_true(dw_fsm_rejected(x->f) > 50);
    assert_non_null(strstr(da, "operations|id=20|"));
    assert_non_null(strstr(da, "|to_target=cloud|"));
    assert_non_null(strstr(da, "|status=failed|"));
    assert_non_null(strstr(da, "|hold=1|hold_reason=failed|"));
    assert_non_null(strstr(da, "|status=done|"));
    assert_non_null(strstr(da, "|kind=verdict|"));
    assert_non_null(strstr(da, "cloud|edge=site-b-edge1|"));
    assert_non_null(strstr(da, "|kind=signal|detail=site-a: genesys "));
    assert_non_null(strstr(da, "by genesys, combine probes_or_genesys"));
    assert_non_null(strstr(da, "by genesys, combine probes_and_genesys"));
    assert_non_null(strstr(da, "events|id=1|")); /* the journal is replicated state too */
    h = dw_fsm_history_json(x->f, 5);
    assert_int_equal(cJSON_GetArraySize(h), 5);
    cJSON_Delete(h);

    free(da);
    free(db);
    free(dd);
    dw_fsm_close(b);
    dw_fsm_close(d);
    for (int i = 0; i < N; i++)
        free(entries[i]);
    free(entries);
}

/* ---- the DR lifecycle: failback, flap damping, maintenance, operators' moves ----------------- */

#define STABLE_FOR 300000

/* Every node refreshes its view every TTL/3 from *ts on (verdicts stay fresh); the last entry
 * is at until (or at once after *ts when that is later). */
static void refresh_until(struct fx *x, int64_t *ts, int64_t until, enum dw_health a,
                          enum dw_health b)
{
    for (;;) {
        for (uint64_t n = 1; n <= 3; n++)
            assert_int_equal(observe(x, n, (*ts)++, a, b), DW_FSM_APPLIED);
        if (*ts > until - 2)
            return;
        *ts = *ts + TTL / 3 < until - 2 ? *ts + TTL / 3 : until - 2;
    }
}

/* premise-a fails over to premise-b, which carries calls afterwards. */
static void failover_to_b(struct fx *x, int64_t *ts)
{
    all_up(x);
    fail_site_a(x, *ts);
    *ts += 2;
    run_to_done(x, ts);
    assert_only_in_service(x, PREMISE_B);
}

/* site-a is seen up again by every node; returns the time its verdict turned UP. */
static int64_t site_a_back(struct fx *x, int64_t *ts)
{
    int64_t since = 0;

    for (uint64_t n = 1; n <= 3; n++) {
        assert_int_equal(observe(x, n, (*ts)++, U, U), DW_FSM_APPLIED);
        if (since == 0 && dw_fsm_site_verdict(x->f, SITE_A) == DW_UP)
            since = *ts - 1;
    }
    assert_true(since > 0);
    return since;
}

static const char *running_kind(struct fx *x, char *buf, size_t len)
{
    cJSON *root = dw_fsm_status_json(x->f), *op;

    buf[0] = '\0';
    cJSON_ArrayForEach(op, cJSON_GetObjectItem(root, "operations")) {
        if (strcmp(jstr(op, "status"), "running") == 0)
            snprintf(buf, len, "%s %s", jstr(op, "kind"), jstr(op, "to"));
    }
    cJSON_Delete(root);
    return buf;
}

static void test_failback_after_stable_for(void **state)
{
    struct fx *x = *state;
    static const char *const plan[] = {"activate premise-a", "verify premise-a",
                                       "deactivate premise-b", "deactivate cloud"};
    struct dw_step_ref r[4];
    int64_t ts = T0 + 5000, since;
    char k[64];

    failover_to_b(x, &ts);
    since = site_a_back(x, &ts);
    /* up, but not for long enough: nothing, however often the nodes refresh */
    refresh_until(x, &ts, since + STABLE_FOR - 1, U, U);
    assert_int_equal(n_next(x, r, 4), 0);
    /* a break in the UP verdict starts the wait again */
    assert_int_equal(observe(x, 1, ts++, D, U), DW_FSM_APPLIED);
    assert_int_equal(observe(x, 2, ts++, D, U), DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_DOWN);
    since = site_a_back(x, &ts);
    refresh_until(x, &ts, since + STABLE_FOR - 1, U, U);
    assert_int_equal(n_next(x, r, 4), 0);
    refresh_until(x, &ts, since + STABLE_FOR + 1, U, U);
    assert_string_equal(running_kind(x, k, sizeof k), "failback premise-a");
    expect_plan(x, plan, 4);
    run_to_done(x, &ts);
    assert_only_in_service(x, PREMISE_A);
    assert_true(history_has(x, "operation", "failback #"));
    assert_true(history_has(x, "operation", "premise-b -> premise-a done"));
}

/* The chain: A down -> B; B down too -> cloud; B back -> B; A back -> A. */
static void test_chain_down_and_back(void **state)
{
    struct fx *x = *state;
    int64_t ts = T0 + 5000, since;
    char k[64];

    x->cfg->groups[0].max_auto_operations = 10; /* four automatic moves within the hour */
    failover_to_b(x, &ts);
    assert_int_equal(observe(x, 1, ts++, D, D), DW_FSM_APPLIED);
    assert_int_equal(observe(x, 2, ts++, D, D), DW_FSM_APPLIED);
    assert_string_equal(running_kind(x, k, sizeof k), "failover cloud");
    run_to_done(x, &ts);
    assert_only_in_service(x, CLOUD);
    /* B back first */
    since = ts;
    refresh_until(x, &ts, since + STABLE_FOR + 1, D, U);
    assert_string_equal(running_kind(x, k, sizeof k), "failback premise-b");
    run_to_done(x, &ts);
    assert_only_in_service(x, PREMISE_B);
    since = site_a_back(x, &ts);
    refresh_until(x, &ts, since + STABLE_FOR + 1, U, U);
    assert_string_equal(running_kind(x, k, sizeof k), "failback premise-a");
    run_to_done(x, &ts);
    assert_only_in_service(x, PREMISE_A);
}

/* A failback whose verify fails: the primary is switched off again, calls stay on the backup,
 * no hold; the next try waits the back-off, doubled after each failure. */
static void test_failback_rollback_and_backoff(void **state)
{
    struct fx *x = *state;
    struct dw_step_ref r[4];
    int64_t ts = T0 + 5000, since, failed_at;
    cJSON *root, *g;
    char k[64];

    x->cfg->groups[0].max_auto_operations = 10; /* every try counts against the flap window */
    failover_to_b(x, &ts);
    since = site_a_back(x, &ts);
    for (int round = 1; round <= 2; round++) {
        refresh_until(x, &ts, ts + (round == 1 ? since + STABLE_FOR + 1 - ts : 0), U, U);
        assert_int_equal(observe(x, 3, ts++, U, U), DW_FSM_APPLIED);
        assert_string_equal(running_kind(x, k, sizeof k), "failback premise-a");
        assert_int_equal(n_next(x, r, 4), 1);
        assert_int_equal(step(x, r[0].op, 0, DW_STEP_STARTED, ts++), DW_FSM_APPLIED);
        assert_int_equal(step(x, r[0].op, 0, DW_STEP_DONE, ts++), DW_FSM_APPLIED);
        step_fails(x, r[0].op, 1, ts);
        failed_at = ts + 1;
        ts += 2;
        assert_string_equal(running_kind(x, k, sizeof k), "rollback premise-b");
        run_to_done(x, &ts);
        g = group_status(x, &root);
        assert_false(cJSON_IsTrue(cJSON_GetObjectItem(g, "hold")));
        cJSON_Delete(root);
        /* the cleanup that follows any failure only reads what is already off */
        if (n_next(x, r, 4) == 1)
            run_to_done(x, &ts);
        assert_only_in_service(x, PREMISE_B);
        /* back-off: 60 s after the first failure, 120 s after the second */
        refresh_until(x, &ts, failed_at + 60000 * round - 1, U, U);
        assert_int_equal(n_next(x, r, 4), 0);
        refresh_until(x, &ts, failed_at + 60000 * round + 1, U, U);
    }
    assert_true(history_has(x, "operation", "failback retried in 60 s"));
    assert_true(history_has(x, "operation", "failback retried in 120 s"));
    assert_string_equal(running_kind(x, k, sizeof k), "failback premise-a");
    run_to_done(x, &ts);
    assert_only_in_service(x, PREMISE_A);
}

static void test_failback_manual_policy(void **state)
{
    struct fx *x = *state;
    struct dw_step_ref r[4];
    int64_t ts = T0 + 5000, since;
    char k[64];

    x->cfg->groups[0].failback = DW_FAILBACK_MANUAL;
    failover_to_b(x, &ts);
    since = site_a_back(x, &ts);
    refresh_until(x, &ts, since + 3 * STABLE_FOR, U, U);
    assert_int_equal(n_next(x, r, 4), 0);
    assert_int_equal(apply_raw(x->f, dw_entry_operate("failback", "carrier-1", NULL, "alice",
                                                      "r-1"), ts++),
                     DW_FSM_APPLIED);
    assert_string_equal(running_kind(x, k, sizeof k), "failback premise-a");
    assert_true(dw_fsm_operation_by_request(x->f, "r-1") > 0);
    run_to_done(x, &ts);
    assert_only_in_service(x, PREMISE_A);
}

/* A flapping site: failover, failback, failover, then the fourth automatic move holds the group
 * instead; nothing moves, not even off the dead site, until an operator releases it. */
static void test_flapping_site_holds_the_group(void **state)
{
    struct fx *x = *state;
    struct dw_step_ref r[4];
    int64_t ts = T0 + 5000, since;
    cJSON *root, *g;
    char k[64];

    x->cfg->groups[0].stable_for_ms = 10000;
    failover_to_b(x, &ts);                                   /* 1 */
    since = site_a_back(x, &ts);
    refresh_until(x, &ts, since + 10001, U, U);
    assert_string_equal(running_kind(x, k, sizeof k), "failback premise-a");
    run_to_done(x, &ts);                                     /* 2 */
    fail_site_a(x, ts);
    ts += 2;
    run_to_done(x, &ts);                                     /* 3 */
    assert_only_in_service(x, PREMISE_B);
    since = site_a_back(x, &ts);
    refresh_until(x, &ts, since + 10001, U, U);
    assert_int_equal(n_next(x, r, 4), 0);
    g = group_status(x, &root);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(g, "hold")));
    assert_string_equal(jstr(g, "hold_reason"), "flapping");
    cJSON_Delete(root);
    assert_int_equal(history_count(x, "hold", "group held: flapping"), 1);
    /* premise-b dies now: held for flapping, nothing moves */
    refresh_until(x, &ts, ts + 2, U, D);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_B), DW_DOWN);
    assert_int_equal(n_next(x, r, 4), 0);
    assert_int_equal(history_count(x, "hold", "group held: flapping"), 1);
    /* released: the window counts from the release, the escape goes ahead */
    assert_int_equal(apply_raw(x->f, dw_entry_hold_release("carrier-1", "alice"), ts++),
                     DW_FSM_APPLIED);
    assert_string_equal(running_kind(x, k, sizeof k), "failover premise-a");
    run_to_done(x, &ts);
    assert_only_in_service(x, PREMISE_A);
}

static void test_maintenance_suppresses_and_expires(void **state)
{
    struct fx *x = *state;
    struct dw_step_ref r[4];
    int64_t ts = T0 + 5000, set_at;
    cJSON *m;
    char k[64];

    all_up(x);
    set_at = ts;
    assert_int_equal(apply_raw(x->f, dw_entry_maintenance("set", "site", "site-a", "alice",
                                                          "UPS swap", 120000), ts++),
                     DW_FSM_APPLIED);
    m = dw_fsm_maintenance_json(x->f);
    assert_int_equal(cJSON_GetArraySize(m), 1);
    assert_string_equal(jstr(cJSON_GetArrayItem(m, 0), "owner"), "alice");
    assert_int_equal((int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 0),
                                                                       "expires")),
                     set_at + 120000);
    cJSON_Delete(m);
    /* the site dies during its maintenance: no automatic operation touches it */
    refresh_until(x, &ts, set_at + 120000 - 1, D, U);
    assert_int_equal(dw_fsm_site_verdict(x->f, SITE_A), DW_DOWN);
    assert_int_equal(n_next(x, r, 4), 0);
    /* the first entry at or past the expiry lifts it, and the failover follows at once */
    refresh_until(x, &ts, set_at + 120000 + 1, D, U);
    assert_true(history_has(x, "maintenance", "site site-a: maintenance expired"));
    m = dw_fsm_maintenance_json(x->f);
    assert_int_equal(cJSON_GetArraySize(m), 0);
    cJSON_Delete(m);
    assert_string_equal(running_kind(x, k, sizeof k), "failover premise-b");
    run_to_done(x, &ts);
    /* a group in maintenance: premise-b dies too, nothing moves until it is cleared */
    assert_int_equal(apply_raw(x->f, dw_entry_maintenance("set", "group", "carrier-1", "bob",
                                                          "carrier work", 600000), ts++),
                     DW_FSM_APPLIED);
    refresh_until(x, &ts, ts + 2, D, D);
    assert_int_equal(n_next(x, r, 4), 0);
    assert_int_equal(apply_raw(x->f, dw_entry_maintenance("clear", "group", "carrier-1", "bob",
                                                          NULL, 0), ts++),
                     DW_FSM_APPLIED);
    assert_true(history_has(x, "maintenance", "group carrier-1: maintenance cleared by bob"));
    assert_string_equal(running_kind(x, k, sizeof k), "failover cloud");
    /* unknown sites and malformed windows are refused */
    assert_int_equal(apply_raw(x->f, dw_entry_maintenance("set", "site", "site-z", "bob", "x",
                                                          600000), ts++),
                     DW_FSM_REJECTED);
    expect_refused("{\"v\":1,\"type\":\"maintenance\",\"action\":\"set\",\"scope\":\"site\","
                   "\"id\":\"site-a\",\"by_operator\":\"a\",\"reason\":\"r\",\"ttl_ms\":5}",
                   "ttl_ms");
    expect_refused("{\"v\":1,\"type\":\"maintenance\",\"action\":\"set\",\"scope\":\"edge\","
                   "\"id\":\"site-a\",\"by_operator\":\"a\",\"reason\":\"r\",\"ttl_ms\":60000}",
                   "scope");
}

/* The planned-outage drill: site-a in maintenance, switch over to premise-b by hand, work,
 * clear, fail back. */
static void test_maintenance_drill(void **state)
{
    struct fx *x = *state;
    struct dw_step_ref r[4];
    int64_t ts = T0 + 5000, since;
    char k[64], why[256];
    cJSON *plan;

    all_up(x);
    assert_int_equal(apply_raw(x->f, dw_entry_maintenance("set", "site", "site-a", "alice",
                                                          "firmware", 3600000), ts++),
                     DW_FSM_APPLIED);
    /* refused: premise-a already carries calls (and is in maintenance) */
    assert_int_equal(dw_fsm_manual_plan(x->f, "carrier-1", "switchover", "premise-a", &plan, why,
                                        sizeof why), 1);
    assert_non_null(strstr(why, "already carries calls"));
    assert_int_equal(dw_fsm_manual_plan(x->f, "carrier-1", "switchover", "premise-b", &plan, why,
                                        sizeof why), 0);
    assert_string_equal(jstr(plan, "kind"), "switchover");
    /* activate and verify premise-b, premise-a switched off (the operator's move leaves it),
     * the cloud too */
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(plan, "steps")), 4);
    cJSON_Delete(plan);
    assert_int_equal(apply_raw(x->f, dw_entry_operate("switchover", "carrier-1", "premise-b",
                                                      "alice", "r-7"), ts++),
                     DW_FSM_APPLIED);
    assert_string_equal(running_kind(x, k, sizeof k), "switchover premise-b");
    run_to_done(x, &ts);
    assert_only_in_service(x, PREMISE_B);
    /* the work: site-a goes down and comes back; nothing automatic happens */
    refresh_until(x, &ts, ts + 30000, D, U);
    refresh_until(x, &ts, ts + 2 * STABLE_FOR, U, U);
    assert_int_equal(n_next(x, r, 4), 0);
    assert_int_equal(apply_raw(x->f, dw_entry_maintenance("clear", "site", "site-a", "alice",
                                                          NULL, 0), ts++),
                     DW_FSM_APPLIED);
    /* the window's end checks what it kept out of operations: premise-a and the cloud are read
     * (and switched off if someone switched them on meanwhile), premise-b kept */
    static const char *const resync[] = {"deactivate premise-a", "deactivate cloud"};
    expect_plan(x, resync, 2);
    assert_string_equal(running_kind(x, k, sizeof k), "cleanup premise-b");
    assert_true(history_has(x, "operation", "(after a maintenance window)"));
    run_to_done(x, &ts);
    /* the switchover pinned premise-b: no automatic failback, an operator fails back */
    refresh_until(x, &ts, ts + 2 * STABLE_FOR, U, U);
    assert_int_equal(n_next(x, r, 4), 0);
    (void)since;
    assert_int_equal(apply_raw(x->f, dw_entry_operate("failback", "carrier-1", NULL, "alice",
                                                      "r-8"), ts++),
                     DW_FSM_APPLIED);
    assert_string_equal(running_kind(x, k, sizeof k), "failback premise-a");
    run_to_done(x, &ts);
    assert_only_in_service(x, PREMISE_A);
}

static void test_operate_refusals(void **state)
{
    struct fx *x = *state;
    int64_t ts = T0 + 5000;
    char why[256];
    cJSON *plan;

    all_up(x);
    refresh_until(x, &ts, ts + 2, U, D);
    assert_int_equal(apply_raw(x->f, dw_entry_operate("switchover", "carrier-1", "premise-b",
                                                      "alice", "r-1"), ts++),
                     DW_FSM_REJECTED);
    assert_int_equal(dw_fsm_operation_by_request(x->f, "r-1"), 0);
    assert_true(history_has(x, "rejected", "switchover to premise-b refused: it is down"));
    assert_int_equal(dw_fsm_manual_plan(x->f, "carrier-1", "switchover", "nope", &plan, why,
                                        sizeof why), 1);
    assert_non_null(strstr(why, "no target \"nope\""));
    assert_int_equal(dw_fsm_manual_plan(x->f, "carrier-9", "failback", NULL, &plan, why,
                                        sizeof why), 1);
    assert_int_equal(dw_fsm_manual_plan(x->f, "carrier-1", "failback", NULL, &plan, why,
                                        sizeof why), 1);
    assert_non_null(strstr(why, "already carries calls"));
    /* while an operation runs */
    assert_int_equal(apply_raw(x->f, dw_entry_operate("switchover", "carrier-1", "cloud",
                                                      "alice", "r-2"), ts++),
                     DW_FSM_APPLIED);
    assert_int_equal(dw_fsm_manual_plan(x->f, "carrier-1", "switchover", "premise-a", &plan, why,
                                        sizeof why), 1);
    assert_non_null(strstr(why, "is running in the group"));
    expect_refused("{\"v\":1,\"type\":\"operate\",\"action\":\"switchover\",\"group\":\"g\","
                   "\"by_operator\":\"a\",\"request\":\"r\"}", "to");
    expect_refused("{\"v\":1,\"type\":\"operate\",\"action\":\"move\",\"group\":\"g\","
                   "\"by_operator\":\"a\",\"request\":\"r\"}", "action");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_node_down_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_down_failover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_both_premise_down_goes_to_cloud, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backup_unknown_is_not_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_steps_walk_to_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records_reported_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_and_out_of_order_steps_rejected, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_destination_down_aborts_and_replans, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_without_replacement_cleans_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_site_back_aborts_everything_off_cleanup, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_abort_before_activate_changes_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_abort_while_activating_switches_destination_off,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_after_activate_switches_destination_off,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_after_verify_moves_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_verify_rolls_back_and_moves_on, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_failed_activate_rolls_back_and_moves_on, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_held_group_leaves_a_dead_carrier, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_then_failure_still_cleans_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failback_after_stable_for, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chain_down_and_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failback_rollback_and_backoff, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failback_manual_policy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flapping_site_holds_the_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_maintenance_suppresses_and_expires, setup, teardown),
        cmocka_unit_test_setup_teardown(test_maintenance_drill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_operate_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_observations_do_not_vote, setup, teardown),
        cmocka_unit_test_setup_teardown(test_future_stamp_does_not_keep_dead_vote, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_old_observations_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_plans_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tilted_observer_abstains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_config_version_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_database_error_is_fatal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_entry_version_is_fatal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_restore_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_failover_and_deliveries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_failure_hold_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_snapshot_and_prune, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_combine_and, setup, teardown),
        cmocka_unit_test_setup_teardown(test_combine_or, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cloud_stale_is_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cloud_site_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cloud_status_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cloud_entries_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cloud_grace_after_activation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cloud_grace_offline_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cloud_one_view_decides, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cloud_one_view_without_probes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_schema_1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entry_stamp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_determinism, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_max_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dump_size_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_retention_days, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_prune_bounded_and_deterministic, setup,
                                        teardown),
        cmocka_unit_test(test_order_of_config_does_not_matter),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
