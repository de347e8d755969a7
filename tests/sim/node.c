/* A simulated drwatchd: what src/drwatchd/node.c and src/io/raftnode.c do around the FSM and the
 * actuator (leader barrier, stamping, observation forwarding, TILT), on the virtual clock. The
 * FSM, planner and actuator are the real ones; probes, the peer channel and the Genesys client
 * are models. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "drwatch/entry.h"
#include "sim.h"

#define SUBMIT_RETRY_MS 500
#define FORWARD_TIMEOUT_MS 1000
#define PEER_LATENCY_MS 10

static uint64_t term_of(const struct sim_node *n)
{
    return (uint64_t)n->raft->current_term;
}

static bool tilted(const struct sim_node *n)
{
    return sim_now(n->s) < n->tilt_until;
}

int64_t node_wall(const struct sim_node *n)
{
    return SIM_WALL0 + (int64_t)sim_now(n->s) + n->wall_offset;
}

bool node_is_leader(const struct sim_node *n)
{
    return n->alive && raft_state(n->raft) == RAFT_LEADER && n->ready_term == term_of(n) &&
           !tilted(n) && !n->transferring;
}

/* ---- the FSM on raft ---- */

static void applied_later(struct sim *s, void *p, int64_t epoch)
{
    struct sim_node *n = p;
    (void)s;
    if (n->alive && n->epoch == (uint64_t)epoch)
        dw_actuator_kick(n->act);
}

static int rfsm_apply(struct raft_fsm *f, const struct raft_buffer *buf, void **result)
{
    struct sim_node *n = f->data;
    if (dw_fsm_apply(n->fsm, buf->base, buf->len) == DW_FSM_FATAL)
        sim_violation(n->s, 8, "node %d cannot apply an entry: %s", n->i + 1,
                      dw_fsm_last_error(n->fsm));
    dw_stamp_applied(&n->stamps, dw_fsm_last_ts(n->fsm), sim_now(n->s));
    sim_trace(n->s, "node %d applies index %llu (%.*s)", n->i + 1,
              (unsigned long long)raft_last_applied(n->raft) + 1,
              (int)(buf->len < 60 ? buf->len : 60), (const char *)buf->base);
    check_applied(n->s, n->i, buf->base, buf->len);
    if (node_is_leader(n) && memmem(buf->base, buf->len, "\"type\":\"step\"", 13))
        sim_strike(n->s, n->i, "at a step boundary", -1);
    *result = NULL;
    /* raft must not be re-entered from its own callback */
    sim_at(n->s, 0, applied_later, n, (int64_t)n->epoch);
    return 0;
}

static int rfsm_snapshot(struct raft_fsm *f, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct sim_node *n = f->data;
    void *data = NULL;
    size_t len = 0;
    if (dw_fsm_snapshot(n->fsm, &data, &len) != 0)
        return RAFT_IOERR;
    /* the fixture frees snapshot buffers with raft_free */
    struct raft_buffer *b = raft_malloc(sizeof *b);
    void *copy = raft_malloc(len);
    if (b == NULL || copy == NULL) {
        raft_free(b);
        raft_free(copy);
        sqlite3_free(data);
        return RAFT_NOMEM;
    }
    memcpy(copy, data, len);
    sqlite3_free(data);
    b->base = copy;
    b->len = len;
    *bufs = b;
    *n_bufs = 1;
    return 0;
}

static int rfsm_restore(struct raft_fsm *f, struct raft_buffer *buf)
{
    struct sim_node *n = f->data;
    if (dw_fsm_restore(n->fsm, buf->base, buf->len) != 0)
        return RAFT_CORRUPT;
    raft_free(buf->base);
    /* what the snapshot skipped over is unseen: invariant 6 is not judged on it */
    for (int site = 0; site < SIM_SITES; site++)
        n->up_known[site] = false;
    sim_trace(n->s, "node %d restored a snapshot (%llu entries applied)", n->i + 1,
              (unsigned long long)dw_fsm_applied(n->fsm));
    dw_stamp_applied(&n->stamps, dw_fsm_last_ts(n->fsm), sim_now(n->s));
    sim_at(n->s, 0, applied_later, n, (int64_t)n->epoch);
    return 0;
}

/* ---- proposing (the leader) ---- */

struct proposal {
    struct raft_apply req;
    struct sim_node *n;
    void (*cb)(struct sim_node *, int, void *);
    void *data;
};

static void proposal_done(struct raft_apply *req, int status, void *result)
{
    struct proposal *p = req->data;
    (void)result;
    if (p->cb)
        p->cb(p->n, status, p->data);
    free(p);
}

int node_propose(struct sim_node *n, const char *entry, void (*cb)(struct sim_node *, int, void *),
                 void *data)
{
    char err[256];
    if (!node_is_leader(n))
        return -1;
    bool clamped;
    int64_t ts = dw_stamp_next(&n->stamps, node_wall(n), sim_now(n->s), dw_fsm_last_ts(n->fsm),
                               &clamped);
    char *st = dw_entry_stamp(entry, strlen(entry), ts, (uint64_t)n->i + 1, err, sizeof err);
    if (st == NULL) {
        sim_violation(n->s, SIM_LIVENESS, "node %d cannot stamp its own entry: %s", n->i + 1, err);
        return -1;
    }
    size_t len = strlen(st);
    struct proposal *p = calloc(1, sizeof *p);
    struct raft_buffer buf = {.base = raft_malloc(len), .len = len};
    if (p == NULL || buf.base == NULL)
        abort();
    memcpy(buf.base, st, len);
    free(st);
    *p = (struct proposal){.n = n, .cb = cb, .data = data};
    p->req.data = p;
    if (raft_apply(n->raft, &p->req, &buf, 1, proposal_done) != 0) {
        raft_free(buf.base);
        free(p);
        return -1;
    }
    return 0;
}

/* ---- leadership: the barrier a new leader runs before it acts ---- */

struct lbarrier {
    struct raft_barrier req;
    struct sim_node *n;
    uint64_t term, epoch;
};

static void bootstrap_done(struct sim_node *n, int status, void *data)
{
    (void)status, (void)data;
    n->bootstrapping = false;
}

static void leader_ready(struct sim *s, void *p, int64_t epoch)
{
    struct sim_node *n = p;
    (void)s;
    if (!n->alive || n->epoch != (uint64_t)epoch || !node_is_leader(n))
        return;
    char *e = dw_entry_leader((uint64_t)n->i + 1);
    if (e)
        node_propose(n, e, NULL, NULL);
    free(e);
    if (dw_fsm_config_version(n->fsm) == 0 && !n->bootstrapping) {
        cJSON *doc = cJSON_Parse(n->s->cfg_doc);
        char *c = doc ? dw_entry_config(doc, 0, "drwatchd", "bootstrap") : NULL;
        cJSON_Delete(doc);
        if (c && node_propose(n, c, bootstrap_done, NULL) == 0)
            n->bootstrapping = true;
        free(c);
    }
    dw_actuator_kick(n->act);
}

static void lbarrier_done(struct raft_barrier *req, int status)
{
    struct lbarrier *b = req->data;
    struct sim_node *n = b->n;
    if (b->epoch == n->epoch) {
        n->barrier_out = false;
        if (status == 0 && n->alive && raft_state(n->raft) == RAFT_LEADER &&
            term_of(n) == b->term) {
            n->ready_term = b->term;
            sim_at(n->s, 0, leader_ready, n, (int64_t)n->epoch);
        }
    }
    free(b);
}

struct transfer {
    struct raft_transfer req;
    struct sim_node *n;
    uint64_t epoch;
};

static void transfer_done(struct raft_transfer *req)
{
    struct transfer *t = req->data;
    if (t->epoch == t->n->epoch)
        t->n->transferring = false;
    free(t);
}

void node_hand_over(struct sim_node *n)
{
    struct transfer *t = calloc(1, sizeof *t);
    if (t == NULL || n->transferring)
        goto out;
    *t = (struct transfer){.n = n, .epoch = n->epoch};
    t->req.data = t;
    if (raft_transfer(n->raft, &t->req, 0, transfer_done) != 0)
        goto out;
    n->transferring = true;
    sim_trace(n->s, "node %d hands leadership over", n->i + 1);
    return;
out:
    free(t);
}

void node_poll(struct sim_node *n)
{
    if (raft_state(n->raft) != RAFT_LEADER) {
        n->ready_term = 0;
        return;
    }
    if (tilted(n)) {
        /* a leader that distrusts its clock stamps nothing and hands over */
        if (n->ready_term == term_of(n)) {
            node_hand_over(n);
            n->ready_term = 0;
        }
        return;
    }
    if (n->ready_term == term_of(n) || n->barrier_out)
        return;
    struct lbarrier *b = calloc(1, sizeof *b);
    if (b == NULL)
        abort();
    *b = (struct lbarrier){.n = n, .term = term_of(n), .epoch = n->epoch};
    b->req.data = b;
    if (raft_barrier(n->raft, &b->req, lbarrier_done) != 0) {
        free(b);
        return;
    }
    n->barrier_out = true;
}

/* ---- observations: probes, detector, submission through the leader ---- */

static void submit(struct sim_node *n);

static void retry_submit(struct sim *s, void *p, int64_t epoch)
{
    struct sim_node *n = p;
    (void)s;
    if (n->alive && n->epoch == (uint64_t)epoch)
        submit(n);
}

static void submitted(struct sim_node *n, uint64_t id, int status)
{
    if (!n->alive || id != n->submit_id || !n->submitting)
        return;
    n->submitting = false;
    if (status != 0)
        n->dirty = true;
    if (n->dirty)
        sim_at(n->s, status != 0 ? SUBMIT_RETRY_MS : 0, retry_submit, n, (int64_t)n->epoch);
}

struct forward {
    struct sim_node *from, *to;
    uint64_t id, epoch;
    char *entry;
};

static void forward_free(void *p)
{
    struct forward *fw = p;
    free(fw->entry);
    free(fw);
}

static void forward_answer(struct sim *s, void *p, int64_t status)
{
    struct forward *fw = p;
    (void)s;
    if (fw->from->epoch == fw->epoch)
        submitted(fw->from, fw->id, (int)status);
    free(fw->entry);
    free(fw);
}

static void forward_committed(struct sim_node *leader, int status, void *data)
{
    struct forward *fw = data;
    /* the answer travels back only if the link does */
    if (leader->alive && leader->s->link[leader->i][fw->from->i])
        sim_at_owned(leader->s, PEER_LATENCY_MS, forward_answer, fw, status, forward_free);
    else {
        free(fw->entry);
        free(fw);
    }
}

static void forward_arrive(struct sim *s, void *p, int64_t x)
{
    struct forward *fw = p;
    (void)s, (void)x;
    if (!fw->to->alive || node_propose(fw->to, fw->entry, forward_committed, fw) != 0) {
        free(fw->entry);
        free(fw);
    }
}

static void forward_timeout(struct sim *s, void *p, int64_t id)
{
    struct sim_node *n = p;
    (void)s;
    submitted(n, (uint64_t)id, -1);
}

static void submit(struct sim_node *n)
{
    struct sim *s = n->s;
    if (!n->alive || n->submitting)
        return;
    const struct dw_config *cfg = dw_fsm_config(n->fsm);
    if (dw_fsm_config_version(n->fsm) == 0)
        return; /* not bootstrapped yet: it runs nothing */
    uint64_t floor = cfg->cluster.min_submit_interval_ms;
    if (n->last_submit != 0 && sim_now(s) - n->last_submit < floor) {
        sim_at(s, floor - (sim_now(s) - n->last_submit), retry_submit, n, (int64_t)n->epoch);
        return;
    }
    char *e = dw_entry_observe(cfg, (uint64_t)n->i + 1, tilted(n), n->site_state);
    if (e == NULL)
        abort();
    n->last_submit = sim_now(s);
    n->dirty = false;
    n->submitting = true;
    uint64_t id = ++n->submit_id;
    if (node_is_leader(n)) {
        struct forward *fw = calloc(1, sizeof *fw);
        *fw = (struct forward){.from = n, .to = n, .id = id, .epoch = n->epoch, .entry = NULL};
        if (node_propose(n, e, forward_committed, fw) != 0) {
            free(fw);
            submitted(n, id, -1);
        }
        free(e);
        return;
    }
    raft_id lid = 0;
    const char *addr = NULL;
    raft_leader(n->raft, &lid, &addr);
    sim_at(s, FORWARD_TIMEOUT_MS, forward_timeout, n, (int64_t)id);
    if (lid == 0 || lid > (raft_id)s->n || !s->link[n->i][lid - 1]) {
        free(e);
        return; /* lost: the timeout retries */
    }
    struct forward *fw = calloc(1, sizeof *fw);
    *fw = (struct forward){.from = n, .to = &s->node[lid - 1], .id = id, .epoch = n->epoch,
                           .entry = e};
    sim_at_owned(s, PEER_LATENCY_MS, forward_arrive, fw, 0, forward_free);
}

static void probe_round(struct sim *s, void *p, int64_t epoch)
{
    struct sim_node *n = p;
    if (!n->alive || n->epoch != (uint64_t)epoch)
        return;
    sim_at(s, s->cfg->probe.interval_ms, probe_round, n, epoch);
    bool abstain = n->tilt_overload;
    if (abstain) /* every late round trips TILT again (src/io/tilt.c) */
        n->tilt_until = sim_now(s) + s->cfg->tilt.abstain_ms;
    for (int site = 0; site < SIM_SITES; site++) {
        bool ok = s->site_up[site] && s->link_site[n->i][site];
        if (n->tilt_overload)
            ok = false; /* late probes time out */
        if (abstain)
            continue; /* an overloaded prober feeds no failures to its detector */
        if (dw_detector_feed(&n->det[site], ok)) {
            n->site_state[site] = n->det[site].state;
            n->dirty = true;
        }
    }
    if (n->dirty)
        submit(n);
}

static void refresh(struct sim *s, void *p, int64_t epoch)
{
    struct sim_node *n = p;
    if (!n->alive || n->epoch != (uint64_t)epoch)
        return;
    sim_at(s, s->cfg->cluster.refresh_interval_ms, refresh, n, epoch);
    n->dirty = true;
    submit(n);
}

/* ---- the process ---- */

void node_init(struct sim *s, int i)
{
    struct sim_node *n = &s->node[i];
    char err[256];
    *n = (struct sim_node){.s = s, .i = i};
    if (dw_fsm_open(&n->fsm, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "sim: dw_fsm_open: %s\n", err);
        abort();
    }
    n->rfsm.version = 1;
    n->rfsm.data = n;
    n->rfsm.apply = rfsm_apply;
    n->rfsm.snapshot = rfsm_snapshot;
    n->rfsm.restore = rfsm_restore;
    if (raft_fixture_grow(&s->f, &n->rfsm) != 0)
        abort();
    n->raft = raft_fixture_get(&s->f, (unsigned)i);
}

static bool ops_is_leader(void *data)
{
    return node_is_leader(data);
}

static uint64_t ops_term(void *data)
{
    return term_of(data);
}

struct abarrier {
    struct raft_barrier req;
    dw_raft_done_cb cb;
    void *data;
};

static void abarrier_done(struct raft_barrier *req, int status)
{
    struct abarrier *b = req->data;
    b->cb(b->data, status, status ? raft_strerror(status) : NULL);
    free(b);
}

static int ops_barrier(void *data, dw_raft_done_cb cb, void *cbdata)
{
    struct sim_node *n = data;
    struct abarrier *b = calloc(1, sizeof *b);
    if (b == NULL)
        return -1;
    *b = (struct abarrier){.cb = cb, .data = cbdata};
    b->req.data = b;
    if (raft_barrier(n->raft, &b->req, abarrier_done) != 0) {
        free(b);
        return -1;
    }
    return 0;
}

struct aprop {
    dw_raft_done_cb cb;
    void *data;
};

static void aprop_done(struct sim_node *n, int status, void *data)
{
    struct aprop *a = data;
    (void)n;
    a->cb(a->data, status, status ? raft_strerror(status) : NULL);
    free(a);
}

static int ops_propose(void *data, const char *entry, dw_raft_done_cb cb, void *cbdata,
                       char *errmsg, size_t errlen)
{
    struct sim_node *n = data;
    struct aprop *a = calloc(1, sizeof *a);
    if (a == NULL)
        return -1;
    *a = (struct aprop){.cb = cb, .data = cbdata};
    if (node_propose(n, entry, aprop_done, a) != 0) {
        free(a);
        snprintf(errmsg, errlen, "not leader");
        return -1;
    }
    return 0;
}

void node_start(struct sim_node *n)
{
    struct sim *s = n->s;
    n->alive = true;
    n->epoch++;
    n->ready_term = 0;
    n->barrier_out = false;
    n->transferring = false;
    n->bootstrapping = false;
    n->submitting = false;
    n->tilt_overload = false;
    dw_stamp_init(&n->stamps, node_wall(n), sim_now(s));
    if (dw_fsm_last_ts(n->fsm) > 0)
        dw_stamp_applied(&n->stamps, dw_fsm_last_ts(n->fsm), sim_now(s));
    const struct dw_config *cfg = s->cfg;
    for (int site = 0; site < SIM_SITES; site++) {
        dw_detector_init(&n->det[site], cfg->probe.fail_threshold, cfg->probe.recover_threshold);
        n->site_state[site] = DW_UNKNOWN;
    }
    n->gc = gsim_client_new(s, n->i);
    struct dw_actuator_ops ops;
    gsim_actuator_ops(n->gc, &ops);
    ops.raft = n;
    ops.is_leader = ops_is_leader;
    ops.term = ops_term;
    ops.barrier = ops_barrier;
    ops.propose = ops_propose;
    struct dw_clock clock;
    sim_clock(s, &clock);
    if (dw_actuator_init(&n->act, &clock, cfg, n->fsm, &ops) != 0)
        abort();
    sim_at(s, sim_between(s, 0, cfg->probe.interval_ms), probe_round, n, (int64_t)n->epoch);
    sim_at(s, cfg->cluster.refresh_interval_ms, refresh, n, (int64_t)n->epoch);
}

void node_crash(struct sim_node *n)
{
    sim_trace(n->s, "node %d crashes%s", n->i + 1,
              raft_state(n->raft) == RAFT_LEADER ? " (leader)" : "");
    n->alive = false;
    n->epoch++;
    n->ready_term = 0;
    raft_fixture_kill(&n->s->f, (unsigned)n->i);
    dw_actuator_close(n->act);
    n->act = NULL;
    gsim_client_free(n->gc);
    n->gc = NULL;
}

void node_close(struct sim_node *n)
{
    if (n->act) {
        dw_actuator_close(n->act);
        n->act = NULL;
    }
    if (n->gc) {
        gsim_client_free(n->gc);
        n->gc = NULL;
    }
}
