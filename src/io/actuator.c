#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drwatch/actuator.h"
#include "drwatch/entry.h"
#include "drwatch/log.h"

#define TICK_MS 500

struct dw_actuator {
    uv_loop_t *loop;
    const struct dw_config *cfg;
    struct dw_fsm *fsm;
    struct dw_raft *raft;
    struct dw_genesys *genesys;
    uv_timer_t tick;  /* notices leadership and retries after failures */
    uv_timer_t wait;  /* verify polling interval */
    int busy;         /* one step in flight at a time, across all operations */
    int closing;
    int refs;         /* outstanding callbacks + open handles; freed at zero */
    struct dw_step_ref cur;
    int tb;           /* trunk base of the current target being worked on */
    uint64_t verify_deadline;
    char detail[512];
    char current[160];
    char crash_before[16];
    int64_t began_op; /* the last operation whose first step this process ran */
    int64_t unknown_logged;
};

static bool may_write(void *raft)
{
    return dw_raft_is_leader(raft);
}

static void tick_cb(uv_timer_t *t);

/* Never from inside a raft callback: raft must not be re-entered while it completes requests. */
static void kick_soon(struct dw_actuator *a)
{
    uv_timer_start(&a->tick, tick_cb, 0, TICK_MS);
}

static void act_unref(struct dw_actuator *a)
{
    if (--a->refs == 0)
        free(a);
}

static void handle_closed(uv_handle_t *h)
{
    act_unref(h->data);
}

static const struct dw_target *cur_target(const struct dw_actuator *a)
{
    return &a->cfg->groups[a->cur.group].targets[a->cur.target];
}

static void detail_append(struct dw_actuator *a, const char *text)
{
    size_t n = strlen(a->detail);
    if (n > 0 && n + 2 < sizeof a->detail) {
        a->detail[n++] = ';';
        a->detail[n++] = ' ';
        a->detail[n] = '\0';
    }
    snprintf(a->detail + n, sizeof a->detail - n, "%s", text);
}

static void step_finished(struct dw_actuator *a)
{
    a->busy = 0;
    a->current[0] = '\0';
}

/* Journals a step transition; the next step is looked up only after this commits. */
static void committed(void *data, int status, const char *errmsg);

static void commit(struct dw_actuator *a, enum dw_step_status st)
{
    char err[256];
    char *e = dw_entry_step(a->cur.op, a->cur.seq, st, st == DW_STEP_STARTED ? NULL : a->detail);
    if (e == NULL) {
        step_finished(a);
        return;
    }
    a->refs++;
    if (dw_raft_propose(a->raft, e, committed, a, err, sizeof err) != 0) {
        a->refs--;
        dw_log(DW_LOG_WARN, "actuator", "op %lld step %d: cannot journal %s: %s",
               (long long)a->cur.op, a->cur.seq, dw_step_status_name(st), err);
        step_finished(a);
    } else {
        dw_log(DW_LOG_INFO, "actuator", "op %lld step %d %s %s: %s%s%s", (long long)a->cur.op,
               a->cur.seq, a->cur.action, cur_target(a)->id, dw_step_status_name(st),
               a->detail[0] && st != DW_STEP_STARTED ? ": " : "",
               st != DW_STEP_STARTED ? a->detail : "");
    }
    free(e);
}

static void committed(void *data, int status, const char *errmsg)
{
    struct dw_actuator *a = data;
    if (a->closing) {
        act_unref(a);
        return;
    }
    a->refs--;
    if (status != 0)
        dw_log(DW_LOG_WARN, "actuator", "op %lld step %d: journal entry not committed: %s",
               (long long)a->cur.op, a->cur.seq, errmsg ? errmsg : "unknown");
    step_finished(a);
    kick_soon(a);
}

/* Fencing and relevance, checked before every Genesys call and every journal entry: this node
 * must still lead, and the step must still be its operation's next one (the FSM aborts an
 * operation whose destination went down). */
static int still_leader(struct dw_actuator *a)
{
    if (!dw_raft_is_leader(a->raft)) {
        dw_log(DW_LOG_WARN, "actuator", "op %lld step %d: no longer leader, stopping before the next call",
               (long long)a->cur.op, a->cur.seq);
        step_finished(a);
        return 0;
    }
    struct dw_step_ref steps[DW_MAX_GROUPS];
    int n = dw_fsm_next_steps(a->fsm, steps, DW_MAX_GROUPS);
    for (int i = 0; i < n; i++) {
        if (steps[i].op == a->cur.op && steps[i].seq == a->cur.seq)
            return 1;
    }
    dw_log(DW_LOG_INFO, "actuator", "op %lld step %d: no longer pending (operation ended), dropping it",
           (long long)a->cur.op, a->cur.seq);
    step_finished(a);
    kick_soon(a);
    return 0;
}

static void switch_next(struct dw_actuator *a);

static void switch_done(void *data, enum dw_gresult res, const char *detail)
{
    struct dw_actuator *a = data;
    if (a->closing) {
        act_unref(a);
        return;
    }
    a->refs--;
    detail_append(a, detail);
    if (res == DW_G_OK || res == DW_G_UNCHANGED) {
        a->tb++;
        switch_next(a);
    } else if (still_leader(a)) {
        commit(a, DW_STEP_FAILED);
    }
}

static void switch_next(struct dw_actuator *a)
{
    const struct dw_target *t = cur_target(a);
    if (a->tb >= t->n_trunk_bases) {
        if (still_leader(a))
            commit(a, DW_STEP_DONE);
        return;
    }
    if (!still_leader(a))
        return;
    int enable = strcmp(a->cur.action, "activate") == 0;
    a->refs++;
    if (dw_genesys_set_trunk_base_enabled(a->genesys, t->trunk_base_ids[a->tb], enable,
                                          switch_done, a) != 0) {
        a->refs--;
        detail_append(a, "cannot start Genesys call");
        commit(a, DW_STEP_FAILED);
    }
}

static void verify_next(struct dw_actuator *a);

static void verify_wait_done(uv_timer_t *t)
{
    struct dw_actuator *a = t->data;
    if (!a->closing && still_leader(a))
        verify_next(a);
}

static void verify_done(void *data, enum dw_gresult res, const char *detail)
{
    struct dw_actuator *a = data;
    if (a->closing) {
        act_unref(a);
        return;
    }
    a->refs--;
    const struct dw_target *t = cur_target(a);
    if (res == DW_G_OK) {
        char line[192];
        snprintf(line, sizeof line, "%s verified: %s", t->trunk_base_ids[a->tb], detail);
        detail_append(a, line);
        a->tb++;
        verify_next(a);
        return;
    }
    if (res == DW_G_FAIL || uv_now(a->loop) >= a->verify_deadline) {
        char line[256];
        snprintf(line, sizeof line, "%s not verified within %u ms: %s", t->trunk_base_ids[a->tb],
                 a->cfg->genesys.verify_timeout_ms, detail);
        detail_append(a, line);
        if (still_leader(a))
            commit(a, DW_STEP_FAILED);
        return;
    }
    uv_timer_start(&a->wait, verify_wait_done, a->cfg->genesys.verify_interval_ms, 0);
}

static void verify_next(struct dw_actuator *a)
{
    const struct dw_target *t = cur_target(a);
    if (a->tb >= t->n_trunk_bases) {
        if (still_leader(a))
            commit(a, DW_STEP_DONE);
        return;
    }
    a->refs++;
    if (dw_genesys_check_trunks(a->genesys, t->trunk_base_ids[a->tb], verify_done, a) != 0) {
        a->refs--;
        detail_append(a, "cannot start Genesys call");
        commit(a, DW_STEP_FAILED);
    }
}

static void execute(struct dw_actuator *a)
{
    if (a->cur.seq == 0)
        a->began_op = a->cur.op;
    a->tb = 0;
    a->detail[0] = '\0';
    if (strcmp(a->cur.action, "verify") == 0) {
        a->verify_deadline = uv_now(a->loop) + a->cfg->genesys.verify_timeout_ms;
        verify_next(a);
    } else {
        switch_next(a);
    }
}

static void maybe_crash(struct dw_actuator *a)
{
    /* Only the leader that began this operation dies: the one that takes over must finish it,
     * even when every node was armed. */
    if (a->crash_before[0] && strcmp(a->crash_before, a->cur.action) == 0 &&
        a->began_op == a->cur.op) {
        dw_log(DW_LOG_WARN, "actuator", "debug: crashing before %s of op %lld as requested",
               a->cur.action, (long long)a->cur.op);
        raise(SIGKILL);
    }
}

static void barrier_done(void *data, int status, const char *errmsg)
{
    struct dw_actuator *a = data;
    if (a->closing) {
        act_unref(a);
        return;
    }
    a->refs--;
    if (status != 0) {
        dw_log(DW_LOG_WARN, "actuator", "barrier failed: %s", errmsg ? errmsg : "unknown");
        step_finished(a);
        return;
    }
    if (!still_leader(a))
        return;
    maybe_crash(a);
    if (a->cur.status == DW_STEP_PENDING) {
        a->detail[0] = '\0';
        commit(a, DW_STEP_STARTED);
    } else {
        dw_log(DW_LOG_INFO, "actuator", "op %lld step %d %s %s: running (resumed or started)",
               (long long)a->cur.op, a->cur.seq, a->cur.action, cur_target(a)->id);
        execute(a);
    }
}

void dw_actuator_kick(struct dw_actuator *a)
{
    if (a == NULL || a->closing || a->busy || !dw_raft_is_leader(a->raft))
        return;
    struct dw_step_ref steps[1];
    if (dw_fsm_next_steps(a->fsm, steps, 1) < 1)
        return;
    if (steps[0].group < 0 || steps[0].target < 0) {
        /* The log names a group or target this node's configuration lacks (a config changed
         * under a running operation): acting on a guess could switch the wrong trunk. */
        if (a->unknown_logged != steps[0].op)
            dw_log(DW_LOG_ERROR, "actuator",
                   "op %lld names a group or target missing from this node's configuration; "
                   "not acting on it", (long long)steps[0].op);
        a->unknown_logged = steps[0].op;
        return;
    }
    a->cur = steps[0];
    a->busy = 1;
    snprintf(a->current, sizeof a->current, "op %lld step %d/%d %s %s (%s)", (long long)a->cur.op,
             a->cur.seq + 1, a->cur.n_steps, a->cur.action, cur_target(a)->id,
             dw_step_status_name(a->cur.status));
    /* Fencing: every step begins with a barrier in the current term. */
    a->refs++;
    if (dw_raft_barrier(a->raft, barrier_done, a) != 0) {
        a->refs--;
        step_finished(a);
    }
}

static void tick_cb(uv_timer_t *t)
{
    dw_actuator_kick(t->data);
}


int dw_actuator_init(struct dw_actuator **out, uv_loop_t *loop, const struct dw_config *cfg,
                     struct dw_fsm *fsm, struct dw_raft *raft, struct dw_genesys *genesys)
{
    struct dw_actuator *a = calloc(1, sizeof *a);
    if (a == NULL)
        return -1;
    a->loop = loop;
    a->cfg = cfg;
    a->fsm = fsm;
    a->raft = raft;
    a->genesys = genesys;
    a->refs = 2; /* the two timers */
    dw_genesys_set_guard(genesys, may_write, raft);
    uv_timer_init(loop, &a->tick);
    uv_timer_init(loop, &a->wait);
    a->tick.data = a;
    a->wait.data = a;
    uv_timer_start(&a->tick, tick_cb, TICK_MS, TICK_MS);
    *out = a;
    return 0;
}

void dw_actuator_close(struct dw_actuator *a)
{
    if (a == NULL)
        return;
    a->closing = 1;
    uv_close((uv_handle_t *)&a->tick, handle_closed);
    uv_close((uv_handle_t *)&a->wait, handle_closed);
}

void dw_actuator_crash_before(struct dw_actuator *a, const char *action)
{
    snprintf(a->crash_before, sizeof a->crash_before, "%s", action ? action : "");
}

const char *dw_actuator_current(const struct dw_actuator *a)
{
    return a->current;
}
