/* Owns the planner: the pure decision of what operation a failover group needs next. */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "drwatch/plan.h"

static void add_step(struct dw_plan *p, enum dw_step_action a, int target)
{
    p->steps[p->n_steps].action = a;
    p->steps[p->n_steps].target = target;
    p->n_steps++;
}

static void operation(struct dw_plan *p, enum dw_op_kind kind, int from, int to)
{
    p->what = DW_PLAN_OPERATION;
    p->kind = kind;
    p->from = from;
    p->to = to;
}

/* Activate and verify the new target, then deactivate every other target of the group, the one
 * being left first. Deactivating targets already out of service costs a read and no write, and
 * it also takes out a target an aborted or failed operation had activated, so at most one target
 * stays in service (promise 4 in docs/architecture.md). A target in maintenance is left alone,
 * unless it is the one being left (only an operator's move leaves one). */
static void move(const struct dw_plan_state *s, struct dw_plan *p, enum dw_op_kind kind,
                 int from, int to)
{
    operation(p, kind, from, to);
    add_step(p, DW_ACT_ACTIVATE, to);
    add_step(p, DW_ACT_VERIFY, to);
    if (from >= 0)
        add_step(p, DW_ACT_DEACTIVATE, from);
    for (int t = 0; t < s->n_targets; t++) {
        if (t != from && t != to && !s->targets[t].maintenance)
            add_step(p, DW_ACT_DEACTIVATE, t);
    }
}

/* Switching off only: a rollback takes out the one target whose activation failed; a cleanup
 * every target but the one kept (none when no target is up). Rule 0 of dw_plan aborts either
 * when it would switch off the target calls should move to. */
static void rollback(struct dw_plan *p, int off, int carrier)
{
    operation(p, DW_OP_ROLLBACK, off, carrier);
    add_step(p, DW_ACT_DEACTIVATE, off);
}

static void cleanup(const struct dw_plan_state *s, struct dw_plan *p, int carrier, int keep)
{
    operation(p, DW_OP_CLEANUP, carrier, keep);
    for (int t = 0; t < s->n_targets; t++) {
        if (t != keep && !s->targets[t].maintenance)
            add_step(p, DW_ACT_DEACTIVATE, t);
    }
}

static bool choosable(const struct dw_plan_target *t)
{
    return t->health == DW_UP && !t->passed_over && !t->maintenance;
}

/* The highest-priority target that is UP, not passed over and not in maintenance, -1 none. */
static int best_target(const struct dw_plan_state *s)
{
    for (int t = 0; t < s->n_targets; t++) {
        if (choosable(&s->targets[t]))
            return t;
    }
    return -1;
}

/* The highest-priority target above the carrier a failback may go to now, -1 none. */
static int failback_target(const struct dw_plan_state *s, int active)
{
    for (int t = 0; t < active; t++) {
        if (choosable(&s->targets[t]) && s->targets[t].stable)
            return t;
    }
    return -1;
}

/* An automatic move is due: planned, or the group held once the window's allowance is spent. */
static void automatic(const struct dw_plan_state *s, struct dw_plan *p, enum dw_op_kind kind,
                      int from, int to)
{
    if (s->flap_hold)
        return;
    if (s->max_auto_ops > 0 && s->auto_ops >= s->max_auto_ops) {
        p->what = DW_PLAN_FLAP_HOLD;
        snprintf(p->reason, sizeof p->reason, "%d automatic operations in the window",
                 s->auto_ops);
        return;
    }
    move(s, p, kind, from, to);
}

static bool valid(const struct dw_plan_state *s, int t)
{
    return t >= 0 && t < s->n_targets;
}

void dw_plan(const struct dw_plan_state *s, struct dw_plan *out)
{
    int active = valid(s, s->active) ? s->active : -1;
    bool carrier_down;
    int best;

    memset(out, 0, sizeof *out);
    out->what = DW_PLAN_NOTHING;
    out->from = out->to = -1;
    if (s->running.present) {
        if (dw_op_moves(s->running.kind) && valid(s, s->running.to) &&
            s->targets[s->running.to].health == DW_DOWN)
            out->what = DW_PLAN_ABORT;
        /* a cleanup keeping no carrier, or one that is DOWN now, would switch off a target that
         * is UP (again): the failover to it (make before break) replaces the cleanup */
        if (s->running.kind == DW_OP_CLEANUP && best_target(s) >= 0 &&
            (!valid(s, s->running.to) || s->targets[s->running.to].health == DW_DOWN))
            out->what = DW_PLAN_ABORT;
        /* a rollback switching off a target that came back UP, while the carrier it keeps is
         * not UP: the failover to that target would switch it on again at once */
        if (s->running.kind == DW_OP_ROLLBACK && valid(s, s->running.from) &&
            best_target(s) == s->running.from &&
            (!valid(s, s->running.to) || s->targets[s->running.to].health != DW_UP))
            out->what = DW_PLAN_ABORT;
        if ((s->running.kind == DW_OP_ROLLBACK || s->running.kind == DW_OP_CLEANUP) &&
            (!valid(s, s->running.to) || s->targets[s->running.to].health != DW_UP)) {
            for (int t = 0; t < s->n_targets; t++) {
                const struct dw_plan_target *x = &s->targets[t];

                if (s->running.off_pending[t] && x->maintenance && x->health == DW_UP &&
                    !x->passed_over)
                    out->what = DW_PLAN_ABORT;
            }
        }
        return;
    }
    if (s->last.present && dw_op_moves(s->last.kind) && s->last.status == DW_OP_FAILED &&
        s->last.failed_bringing_in && valid(s, s->last.to)) {
        snprintf(out->reason, sizeof out->reason, "#%" PRId64 " failed", s->last.id);
        rollback(out, s->last.to, active);
        return;
    }
    if (s->maintenance)
        return;
    carrier_down = active < 0 || s->targets[active].health == DW_DOWN;
    best = carrier_down ? best_target(s) : -1;
    if (best >= 0) {
        if (active >= 0 && s->targets[active].maintenance)
            return; /* switching it off would touch it */
        if (active < 0)
            snprintf(out->reason, sizeof out->reason, "no target in service");
        else
            snprintf(out->reason, sizeof out->reason, "%s down",
                     s->targets[active].down_name ? s->targets[active].down_name : "?");
        automatic(s, out, DW_OP_FAILOVER, active, best);
        return;
    }
    if ((s->failed > 0 || s->aborted > 0 || s->resync) &&
        (!s->hold || ((s->aborted > 0 || s->resync) && s->failed_cleanups == 0))) {
        int keep = carrier_down ? -1 : active;

        snprintf(out->reason, sizeof out->reason, "after %s%s",
                 s->aborted > 0 ? "an aborted operation"
                 : s->failed > 0 ? "a failed operation" : "a maintenance window",
                 keep < 0 ? ", no target up" : "");
        cleanup(s, out, active, keep);
        if (out->n_steps > 0)
            return;
        memset(out, 0, sizeof *out); /* nothing it may switch off: carry on below */
        out->what = DW_PLAN_NOTHING;
        out->from = out->to = -1;
    }
    if (carrier_down) {
        if (s->verdict_changed)
            out->what = DW_PLAN_NONE_UP;
        return;
    }
    best = failback_target(s, active);
    if (best < 0 || s->failback == DW_FAILBACK_MANUAL || s->pinned || s->hold ||
        !s->failback_due || s->targets[active].maintenance)
        return;
    snprintf(out->reason, sizeof out->reason, "%s up and stable", s->targets[best].down_name
                                                                     ? s->targets[best].down_name
                                                                     : "?");
    automatic(s, out, DW_OP_FAILBACK, active, best);
}

int dw_plan_manual(const struct dw_plan_state *s, enum dw_op_kind kind, int to,
                   struct dw_plan *out, char *why, size_t whylen)
{
    int active = valid(s, s->active) ? s->active : -1;

    memset(out, 0, sizeof *out);
    out->what = DW_PLAN_NOTHING;
    out->from = out->to = -1;
    if (s->running.present) {
        snprintf(why, whylen, "operation #%" PRId64 " is running in the group", s->running.id);
        return -1;
    }
    if (kind == DW_OP_FAILBACK) {
        to = -1;
        for (int t = 0; t < (active >= 0 ? active : s->n_targets) && to < 0; t++) {
            if (s->targets[t].health == DW_UP && !s->targets[t].maintenance)
                to = t;
        }
        if (to < 0) {
            snprintf(why, whylen, active == 0 ? "the primary target already carries calls"
                                              : "no higher-priority target is up and out of "
                                                "maintenance");
            return -1;
        }
    } else if (kind != DW_OP_SWITCHOVER || !valid(s, to)) {
        snprintf(why, whylen, "no such target");
        return -1;
    } else if (to == active) {
        snprintf(why, whylen, "it already carries calls");
        return -1;
    } else if (s->targets[to].health != DW_UP) {
        snprintf(why, whylen, "it is %s, not up", dw_health_name(s->targets[to].health));
        return -1;
    } else if (s->targets[to].maintenance) {
        snprintf(why, whylen, "its site is in maintenance");
        return -1;
    }
    move(s, out, kind, active, to);
    return 0;
}
