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
 * stays in service (promise 4 in docs/architecture.md). */
static void failover(const struct dw_plan_state *s, struct dw_plan *p, int from, int to)
{
    operation(p, DW_OP_FAILOVER, from, to);
    add_step(p, DW_ACT_ACTIVATE, to);
    add_step(p, DW_ACT_VERIFY, to);
    if (from >= 0)
        add_step(p, DW_ACT_DEACTIVATE, from);
    for (int t = 0; t < s->n_targets; t++) {
        if (t != from && t != to)
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
        if (t != keep)
            add_step(p, DW_ACT_DEACTIVATE, t);
    }
}

/* The highest-priority target that is UP and not passed over, -1 none. */
static int best_target(const struct dw_plan_state *s)
{
    for (int t = 0; t < s->n_targets; t++) {
        if (s->targets[t].health == DW_UP && !s->targets[t].passed_over)
            return t;
    }
    return -1;
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
        if (s->running.kind == DW_OP_FAILOVER && valid(s, s->running.to) &&
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
        return;
    }
    if (s->last.present && s->last.kind == DW_OP_FAILOVER && s->last.status == DW_OP_FAILED &&
        s->last.failed_bringing_in && valid(s, s->last.to)) {
        snprintf(out->reason, sizeof out->reason, "#%" PRId64 " failed", s->last.id);
        rollback(out, s->last.to, active);
        return;
    }
    carrier_down = active < 0 || s->targets[active].health == DW_DOWN;
    best = carrier_down ? best_target(s) : -1;
    if (best >= 0) {
        if (active < 0)
            snprintf(out->reason, sizeof out->reason, "no target in service");
        else
            snprintf(out->reason, sizeof out->reason, "%s down",
                     s->targets[active].down_name ? s->targets[active].down_name : "?");
        failover(s, out, active, best);
        return;
    }
    if ((s->failed > 0 || s->aborted > 0) &&
        (!s->hold || (s->aborted > 0 && s->failed_cleanups == 0))) {
        int keep = carrier_down ? -1 : active;

        if (s->n_targets - (keep >= 0) == 0)
            return; /* the carrier is the only target: nothing else to switch off */
        snprintf(out->reason, sizeof out->reason, "after an %s operation%s",
                 s->aborted > 0 ? "aborted" : "failed", keep < 0 ? ", no target up" : "");
        cleanup(s, out, active, keep);
        return;
    }
    if (carrier_down && s->verdict_changed)
        out->what = DW_PLAN_NONE_UP;
}
