/* Owns the operation journal: planner input gathered, decisions written, operations ended. */

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drwatch/plan.h"
#include "fsm_internal.h"

/* Every status change of an operation passes here: a move the table in opsm.c forbids refuses
 * the entry that asked for it, alike on every node. */
static int move_operation(struct dw_fsm *f, const struct op_row *o, enum dw_op_status to,
                          int64_t ts, char *why, size_t whylen)
{
    sqlite3_stmt *s;

    if (!dw_op_move_ok(o->kind, o->status, to)) {
        fsm_set_msg(why, whylen, "operation %" PRId64 ": %s %s -> %s not allowed", o->id,
                    dw_op_kind_name(o->kind), dw_op_status_name(o->status),
                    dw_op_status_name(to));
        return APPLY_REJECT;
    }
    s = fsm_stmt(f, ST_OP_FINISH);
    sqlite3_bind_int64(s, 1, o->id);
    fsm_bind_text(s, 2, dw_op_status_name(to));
    sqlite3_bind_int64(s, 3, ts);
    return fsm_run(s) == 0 ? APPLY_OK : APPLY_SQL_ERROR;
}

/* Index of a target id in a group, -1 for "" (none) or an unknown id. */
static int target_or_none(const struct dw_group *g, const char *id)
{
    return id[0] == '\0' ? -1 : fsm_target_index(g, id);
}

static const char *shown(const char *target_id)
{
    return target_id[0] != '\0' ? target_id : "(none)";
}

/* What carries calls once a failover stops short of DONE: its destination once verified (the
 * source may already be switched off), else its source, which it had not touched yet. */
static int carrier_after(struct dw_fsm *f, const struct dw_group *g, const struct op_row *o,
                         int *carrier)
{
    enum dw_step_status verified;

    if (fsm_step_status_of(f, o->id, DW_ACT_VERIFY, &verified) != 0)
        return -1;
    *carrier = target_or_none(g, verified == DW_STEP_DONE ? o->to : o->from);
    return 0;
}

static int set_backoff(struct dw_fsm *f, const char *group, int failures, int64_t retry_at)
{
    sqlite3_stmt *s = fsm_stmt(f, ST_GROUP_SET_BACKOFF);

    fsm_bind_text(s, 1, group);
    sqlite3_bind_int(s, 2, failures);
    sqlite3_bind_int64(s, 3, retry_at);
    return fsm_run(s);
}

/* Ends a running operation short of DONE; the group's active target then says what the journal
 * left carrying calls. */
static int end_operation(struct dw_fsm *f, const struct dw_group *g, const struct op_row *o,
                         enum dw_op_status status, int64_t ts, char *why, size_t whylen)
{
    int carrier, rc = move_operation(f, o, status, ts, why, whylen);

    if (rc == APPLY_OK && o->kind == DW_OP_CLEANUP && o->to[0] == '\0') {
        /* it switched everything off, the carrier perhaps too: none is known to carry calls,
         * so the next failover brings one in before switching anything else off */
        return fsm_group_set(f, ST_GROUP_SET_ACTIVE, g->id, -1) == 0 ? APPLY_OK
                                                                     : APPLY_SQL_ERROR;
    }
    if (rc != APPLY_OK || !dw_op_moves(o->kind))
        return rc; /* a rollback or a cleanup keeping a carrier never switched the carrier off */
    if (carrier_after(f, g, o, &carrier) != 0 ||
        fsm_group_set(f, ST_GROUP_SET_ACTIVE, g->id, carrier) != 0)
        return APPLY_SQL_ERROR;
    return APPLY_OK;
}

/* The last step is DONE: the group now runs on the operation's target (none after a cleanup
 * that found no target up). */
int fsm_complete_operation(struct dw_fsm *f, const struct op_row *o, int64_t ts, char *why,
                           size_t whylen)
{
    int g = dw_config_group_index(f->cfg, o->grp);
    int t = g >= 0 ? target_or_none(&f->cfg->groups[g], o->to) : -1;
    struct group_row gr;
    int rc;

    if (g < 0 || (t < 0 && o->to[0] != '\0')) {
        fsm_set_msg(why, whylen, "operation %" PRId64 ": target %s of group %s is not configured",
                    o->id, o->to, o->grp);
        return APPLY_REJECT;
    }
    rc = move_operation(f, o, DW_OP_DONE, ts, why, whylen);
    if (rc != APPLY_OK)
        return rc;
    /* an operator's switchover holds its choice against automatic failback; any other move
     * ends that (the chosen target died, or the operator failed back) */
    if (dw_op_moves(o->kind) && fsm_group_set(f, ST_GROUP_SET_PINNED, o->grp,
                                              o->kind == DW_OP_SWITCHOVER) != 0)
        return APPLY_SQL_ERROR;
    if (o->kind == DW_OP_FAILBACK && set_backoff(f, o->grp, 0, 0) != 0)
        return APPLY_SQL_ERROR;
    /* planned after a window ended, it swept every target that window had kept out */
    if (o->kind != DW_OP_ROLLBACK && fsm_group_row(f, o->grp, &gr) == 0 && gr.resync > 0 &&
        o->id >= gr.resync && fsm_group_set(f, ST_GROUP_SET_RESYNC, o->grp, 0) != 0)
        return APPLY_SQL_ERROR;
    if (fsm_group_set(f, ST_GROUP_SET_ACTIVE, o->grp, t) != 0 ||
        fsm_event(f, ts, dw_op_kind_name(o->kind), o->grp, "%s: %s #%" PRId64 " %s -> %s done",
                  o->grp, dw_op_kind_name(o->kind), o->id, shown(o->from), shown(o->to)) != 0)
        return APPLY_SQL_ERROR;
    return APPLY_OK;
}

/* After a failed failback the next automatic one waits retry_ms, doubled per failure in a row
 * up to the group's ceiling. */
static int64_t backoff_ms(const struct dw_group *g, int failures)
{
    int64_t d = g->failback_retry_ms;

    for (int i = 1; i < failures && d < g->failback_retry_max_ms; i++)
        d *= 2;
    return d < g->failback_retry_max_ms ? d : g->failback_retry_max_ms;
}

/* A failed step ends the operation. A failback or an operator's move that could not bring its
 * destination in is rolled back and the calls stay where they are (a failback is retried after
 * its back-off); any other failure holds the group: no failback until an operator releases
 * it. The planner still undoes a failed activation and still moves calls off a target voted
 * DOWN (dw_plan, plan.c). */
int fsm_fail_operation(struct dw_fsm *f, const struct op_row *o, const struct step_row *st,
                       int64_t ts, char *why, size_t whylen)
{
    int g = dw_config_group_index(f->cfg, o->grp);
    bool bringing_in = st->action == DW_ACT_ACTIVATE || st->action == DW_ACT_VERIFY;
    bool holds = !(bringing_in && (o->kind == DW_OP_FAILBACK || o->kind == DW_OP_SWITCHOVER));
    struct group_row gr;
    int64_t retry = 0;
    char then[64];
    int rc;

    if (g < 0) {
        fsm_set_msg(why, whylen, "operation %" PRId64 ": group %s is not configured", o->id,
                    o->grp);
        return APPLY_REJECT;
    }
    rc = end_operation(f, &f->cfg->groups[g], o, DW_OP_FAILED, ts, why, whylen);
    if (rc != APPLY_OK)
        return rc;
    if (o->kind == DW_OP_FAILBACK && bringing_in) {
        if (fsm_group_row(f, o->grp, &gr) != 0)
            return APPLY_SQL_ERROR;
        retry = backoff_ms(&f->cfg->groups[g], gr.fb_failures + 1);
        if (set_backoff(f, o->grp, gr.fb_failures + 1, ts + retry) != 0)
            return APPLY_SQL_ERROR;
    }
    if (holds)
        snprintf(then, sizeof then, "group held");
    else if (retry > 0)
        snprintf(then, sizeof then, "calls stay; failback retried in %.0f s",
                 (double)retry / 1000);
    else
        snprintf(then, sizeof then, "calls stay");
    if ((holds && fsm_group_hold(f, o->grp, "failed") != 0) ||
        fsm_event(f, ts, "operation_failed", o->grp,
                  "%s: %s #%" PRId64 " %s -> %s failed at step %d %s %s; %s", o->grp,
                  dw_op_kind_name(o->kind), o->id, shown(o->from), shown(o->to), st->seq,
                  dw_step_action_name(st->action), st->target, then) != 0 ||
        (holds && fsm_event_note(f, ts, "hold", o->grp, "%s: held after %s #%" PRId64 " failed",
                                 o->grp, dw_op_kind_name(o->kind), o->id) != 0))
        return APPLY_SQL_ERROR;
    return APPLY_OK;
}

void fsm_released_key(char *buf, size_t len, const char *group)
{
    snprintf(buf, len, "released:%s", group);
}

static int insert_step(struct dw_fsm *f, int64_t op, int seq, enum dw_step_action a,
                       const char *target)
{
    sqlite3_stmt *s = fsm_stmt(f, ST_STEP_INSERT);

    sqlite3_bind_int64(s, 1, op);
    sqlite3_bind_int(s, 2, seq);
    fsm_bind_text(s, 3, dw_step_action_name(a));
    fsm_bind_text(s, 4, target);
    return fsm_run(s);
}

static const char *target_id(const struct dw_group *g, int t)
{
    return t >= 0 ? g->targets[t].id : "";
}

/* Inserts a running operation of the group from one target to another (-1: none); operator
 * "" for an automatic one. */
static int insert_operation(struct dw_fsm *f, const struct dw_group *g, enum dw_op_kind kind,
                            int from, int to, const char *reason, const char *operator,
                            const char *request, int64_t ts, int64_t *op)
{
    sqlite3_stmt *s = fsm_stmt(f, ST_OP_INSERT);

    fsm_bind_text(s, 1, g->id);
    fsm_bind_text(s, 2, dw_op_kind_name(kind));
    fsm_bind_text(s, 3, target_id(g, from));
    fsm_bind_text(s, 4, target_id(g, to));
    sqlite3_bind_int64(s, 5, ts);
    fsm_bind_text(s, 6, reason);
    fsm_bind_text(s, 7, operator);
    fsm_bind_text(s, 8, request);
    if (fsm_run(s) != 0)
        return -1;
    *op = sqlite3_last_insert_rowid(f->db);
    return fsm_history(f, ts, "operation", "%s: %s #%" PRId64 " %s -> %s planned (%s)", g->id,
                       dw_op_kind_name(kind), *op, shown(target_id(g, from)),
                       shown(target_id(g, to)), reason);
}

/* 1 with *op set when the group has a running operation, 0 when not, -1 on error. */
static int running_op(struct dw_fsm *f, const char *group, int64_t *op)
{
    sqlite3_stmt *s = fsm_stmt(f, ST_OP_RUNNING);
    int rc;

    fsm_bind_text(s, 1, group);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *op = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* Rule 0 of the planner: a failover whose destination went DOWN can never verify; a cleanup or
 * rollback may be about to switch off the target calls should move to. Aborted, the group is
 * planned again from what the journal left in service. */
static int abort_running(struct dw_fsm *f, const struct dw_group *g, const struct op_row *o,
                         int64_t now, char *why, size_t whylen)
{
    int rc = end_operation(f, g, o, DW_OP_ABORTED, now, why, whylen);

    if (rc != APPLY_OK)
        return rc;
    if (dw_op_moves(o->kind)
            ? fsm_history(f, now, "operation", "%s: %s #%" PRId64 " %s -> %s aborted: %s is "
                          "down", o->grp, dw_op_kind_name(o->kind), o->id, shown(o->from), o->to,
                          o->to) != 0
            : fsm_history(f, now, "operation", "%s: %s #%" PRId64 " aborted: a failover to a "
                          "target that is up replaces it", o->grp, dw_op_kind_name(o->kind),
                          o->id) != 0)
        return APPLY_SQL_ERROR;
    return APPLY_OK;
}

/* A target whose activation or verification failed is not chosen again until its site's
 * verdict changes or an operator releases the group's hold: it would only fail again. */
static int target_failed(struct dw_fsm *f, const struct dw_group *g, int t, int64_t released,
                         bool *out)
{
    const struct dw_target *tg = &g->targets[t];
    sqlite3_stmt *s = fsm_stmt(f, ST_TARGET_FAILED);
    int64_t n = 0;

    fsm_bind_text(s, 1, g->id);
    sqlite3_bind_int64(s, 2, released);
    fsm_bind_text(s, 3, tg->id);
    if (tg->site >= 0 && tg->site < f->cfg->n_sites)
        fsm_bind_text(s, 4, f->cfg->sites[tg->site].id);
    if (fsm_scalar(s, &n) != 0)
        return -1;
    *out = n > 0;
    return 0;
}

/* Since the group's last completed failover or cleanup (each leaves exactly one target, or
 * none, in service): how many operations failed, how many were aborted after a step had
 * started, and how many of the failures were cleanups. */
enum { DIRT_FAILED, DIRT_ABORTED, DIRT_FAILED_CLEANUPS, DIRT_N };

static int group_dirt(struct dw_fsm *f, const char *group, int64_t dirt[DIRT_N])
{
    sqlite3_stmt *s = fsm_stmt(f, ST_GROUP_DIRT);

    fsm_bind_text(s, 1, group);
    return fsm_int_row(s, dirt, DIRT_N);
}

/* Whether the failover failed bringing its destination in (activate or verify). */
static int failed_bringing_in(struct dw_fsm *f, const struct op_row *last, bool *out)
{
    enum dw_step_action a = DW_ACT_DEACTIVATE;
    sqlite3_stmt *s;
    int rc;

    *out = false;
    if (!dw_op_moves(last->kind) || last->status != DW_OP_FAILED)
        return 0;
    s = fsm_stmt(f, ST_STEP_FAILED);
    sqlite3_bind_int64(s, 1, last->id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW && dw_step_action_parse(fsm_col_text(s, 0), &a) != 0)
        a = DW_ACT_DEACTIVATE;
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return -1;
    *out = a == DW_ACT_ACTIVATE || a == DW_ACT_VERIFY;
    return 0;
}

/* Whether the site has been UP without a break since at least stable_ms before now. */
static int site_stable(struct dw_fsm *f, const char *site, int64_t now, int64_t stable_ms,
                       bool *out)
{
    sqlite3_stmt *s = fsm_stmt(f, ST_SITE_SINCE);
    int rc;

    *out = false;
    fsm_bind_text(s, 1, site);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *out = fsm_health_of(fsm_col_text(s, 0)) == DW_UP &&
               sqlite3_column_int64(s, 1) <= now - stable_ms;
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* Each target's health, name, whether it is passed over, stable, in maintenance. */
static int gather_targets(struct dw_fsm *f, const struct dw_group *g, int64_t now,
                          int64_t released, struct dw_plan_state *ps)
{
    ps->n_targets = g->n_targets;
    for (int t = 0; t < g->n_targets; t++) {
        const struct dw_target *tg = &g->targets[t];
        struct dw_plan_target *pt = &ps->targets[t];
        const char *site = tg->site >= 0 ? f->cfg->sites[tg->site].id : NULL;
        int m = site ? fsm_in_maintenance(f, "site", site) : 0;

        pt->down_name = site ? site : tg->id;
        if (m < 0 || fsm_target_health(f, tg, &pt->health) != 0)
            return -1;
        pt->maintenance = m == 1;
        pt->stable = site == NULL;
        if (site && site_stable(f, site, now, g->stable_for_ms, &pt->stable) != 0)
            return -1;
        /* only an UP target could be chosen */
        if (pt->health == DW_UP && target_failed(f, g, t, released, &pt->passed_over) != 0)
            return -1;
    }
    return 0;
}

/* What binds the group's automatic operations: hold, policy, pin, back-off, maintenance and
 * the automatic moves already made in the flap window (counted since the last release). */
static int gather_group(struct dw_fsm *f, const struct dw_group *g, int64_t now,
                        int64_t released, struct dw_plan_state *ps)
{
    struct group_row gr;
    sqlite3_stmt *s;
    int64_t n = 0;
    int m;

    if (fsm_group_row(f, g->id, &gr) != 0 || (m = fsm_in_maintenance(f, "group", g->id)) < 0)
        return -1;
    ps->active = gr.active >= g->n_targets ? -1 : gr.active;
    ps->hold = gr.hold;
    ps->flap_hold = gr.hold && strcmp(gr.hold_reason, "flapping") == 0;
    ps->pinned = gr.pinned;
    ps->failback_due = now >= gr.fb_retry_at;
    ps->failback = g->failback;
    ps->maintenance = m == 1;
    ps->resync = gr.resync > 0;
    ps->max_auto_ops = (int)g->max_auto_operations;
    s = fsm_stmt(f, ST_AUTO_OPS);
    fsm_bind_text(s, 1, g->id);
    sqlite3_bind_int64(s, 2, now - (int64_t)g->flap_window_ms);
    sqlite3_bind_int64(s, 3, released);
    if (fsm_scalar(s, &n) != 0)
        return -1;
    ps->auto_ops = (int)n;
    return 0;
}

/* Which targets the operation has still to switch off. */
static int off_pending(struct dw_fsm *f, const struct dw_group *g, int64_t op, bool *out)
{
    sqlite3_stmt *s = fsm_stmt(f, ST_OFF_PENDING);
    int rc, t;

    sqlite3_bind_int64(s, 1, op);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if ((t = fsm_target_index(g, fsm_col_text(s, 0))) >= 0)
            out[t] = true;
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* The group's state as the planner sees it; *running gets the running operation, if any. */
static int gather(struct dw_fsm *f, const struct dw_group *g, int64_t now, bool verdict_changed,
                  struct dw_plan_state *ps, struct op_row *running)
{
    int64_t op, released = 0, dirt[DIRT_N] = {0};
    char key[DW_ID_MAX + 16];
    struct op_row last;
    int rc;

    memset(ps, 0, sizeof *ps);
    ps->verdict_changed = verdict_changed;
    fsm_released_key(key, sizeof key, g->id);
    if (fsm_meta_get(f, key, &released) != 0)
        released = 0;
    if (gather_targets(f, g, now, released, ps) != 0)
        return -1;
    rc = running_op(f, g->id, &op);
    if (rc == 1) {
        rc = fsm_op_get(f, op, running);
        if (rc < 0)
            return -1;
        ps->running.present = true;
        ps->running.id = op;
        /* a row that vanished reads as a rollback of nothing, which is never aborted */
        ps->running.kind = rc == 1 ? running->kind : DW_OP_ROLLBACK;
        ps->running.from = rc == 1 ? fsm_target_index(g, running->from) : -1;
        ps->running.to = rc == 1 ? fsm_target_index(g, running->to) : -1;
        if (dw_op_moves(ps->running.kind) && ps->running.to < 0)
            return -1; /* a move to a target this config lacks */
        return off_pending(f, g, op, ps->running.off_pending);
    }
    if (rc < 0 || gather_group(f, g, now, released, ps) != 0)
        return -1;
    rc = fsm_op_latest(f, g->id, &last);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        ps->last.present = true;
        ps->last.id = last.id;
        ps->last.kind = last.kind;
        ps->last.status = last.status;
        ps->last.to = fsm_target_index(g, last.to);
        if (failed_bringing_in(f, &last, &ps->last.failed_bringing_in) != 0)
            return -1;
    }
    if (group_dirt(f, g->id, dirt) != 0)
        return -1;
    ps->failed = (int)dirt[DIRT_FAILED];
    ps->aborted = (int)dirt[DIRT_ABORTED];
    ps->failed_cleanups = (int)dirt[DIRT_FAILED_CLEANUPS];
    return 0;
}

/* Writes the planned operation and its steps. */
static int write_operation(struct dw_fsm *f, const struct dw_group *g, const struct dw_plan *p,
                           const char *operator, const char *request, int64_t now)
{
    int64_t op;

    if (insert_operation(f, g, p->kind, p->from, p->to, p->reason, operator, request, now,
                         &op) != 0)
        return -1;
    for (int i = 0; i < p->n_steps; i++) {
        if (insert_step(f, op, i, p->steps[i].action, g->targets[p->steps[i].target].id) != 0)
            return -1;
    }
    return 0;
}

/* Gathers the group's state, asks the planner (plan.c) and writes its decision. An abort changes
 * what the journal left in service, so the group is then gathered and planned once more. */
int fsm_plan_group(struct dw_fsm *f, const struct dw_group *g, int64_t now, bool verdict_changed,
                   char *why, size_t whylen)
{
    struct dw_plan_state ps;
    struct dw_plan p;
    struct op_row running;
    int rc;

    if (gather(f, g, now, verdict_changed, &ps, &running) != 0)
        return APPLY_SQL_ERROR;
    dw_plan(&ps, &p);
    if (p.what == DW_PLAN_ABORT) {
        rc = abort_running(f, g, &running, now, why, whylen);
        if (rc != APPLY_OK)
            return rc;
        if (gather(f, g, now, verdict_changed, &ps, &running) != 0)
            return APPLY_SQL_ERROR;
        dw_plan(&ps, &p);
    }
    switch (p.what) {
    case DW_PLAN_OPERATION:
        return write_operation(f, g, &p, "", "", now) == 0 ? APPLY_OK : APPLY_SQL_ERROR;
    case DW_PLAN_FLAP_HOLD:
        return fsm_group_hold(f, g->id, "flapping") == 0 &&
                       fsm_event(f, now, "hold", g->id, "%s: group held: flapping (%s in %.0f s);"
                                 " drctl hold release %s resumes automatic operations",
                                 g->id, p.reason, (double)g->flap_window_ms / 1000, g->id) == 0
                   ? APPLY_OK
                   : APPLY_SQL_ERROR;
    case DW_PLAN_NONE_UP:
        return fsm_event(f, now, "no_target_up", g->id, "%s: no target up", g->id) == 0
                   ? APPLY_OK
                   : APPLY_SQL_ERROR;
    case DW_PLAN_ABORT: /* nothing runs after an abort: unreachable */
    case DW_PLAN_NOTHING:
        break;
    }
    return APPLY_OK;
}

/* The operator's move an operate entry asks for, planned as dw_plan_manual decides: 0 with *p
 * and the group's index, 1 refused with why, -1 on a database error. */
static int plan_manual(struct dw_fsm *f, const char *group, enum dw_op_kind kind,
                       const char *to, int64_t now, struct dw_plan *p, int *gi, char *why,
                       size_t whylen)
{
    struct dw_plan_state ps;
    struct op_row running;
    const struct dw_group *g;
    char reason[160];
    int t = -1;

    *gi = dw_config_group_index(f->cfg, group);
    if (*gi < 0) {
        fsm_set_msg(why, whylen, "no group \"%.64s\"", group);
        return 1;
    }
    g = &f->cfg->groups[*gi];
    if (kind == DW_OP_SWITCHOVER && (t = fsm_target_index(g, to)) < 0) {
        fsm_set_msg(why, whylen, "group %s has no target \"%.64s\"", g->id, to);
        return 1;
    }
    if (gather(f, g, now, false, &ps, &running) != 0)
        return -1;
    if (dw_plan_manual(&ps, kind, t, p, reason, sizeof reason) != 0) {
        if (kind == DW_OP_SWITCHOVER)
            fsm_set_msg(why, whylen, "%s to %s refused: %s", dw_op_kind_name(kind), to, reason);
        else
            fsm_set_msg(why, whylen, "%s refused: %s", dw_op_kind_name(kind), reason);
        return 1;
    }
    return 0;
}

static const char *target_name(const struct dw_group *g, int t)
{
    return t >= 0 ? g->targets[t].id : NULL;
}

int dw_fsm_manual_plan(struct dw_fsm *f, const char *group, const char *action, const char *to,
                       cJSON **out, char *why, size_t whylen)
{
    enum dw_op_kind kind;
    struct dw_plan p;
    const struct dw_group *g;
    cJSON *steps;
    int gi, rc;

    *out = NULL;
    if (dw_op_kind_parse(action, &kind) != 0 ||
        (kind != DW_OP_SWITCHOVER && kind != DW_OP_FAILBACK)) {
        fsm_set_msg(why, whylen, "action: expected \"switchover\" or \"failback\"");
        return 1;
    }
    rc = plan_manual(f, group, kind, to ? to : "", f->last_ts, &p, &gi, why, whylen);
    if (rc != 0)
        return rc;
    g = &f->cfg->groups[gi];
    if ((*out = cJSON_CreateObject()) == NULL)
        return -1;
    cJSON_AddStringToObject(*out, "group", g->id);
    cJSON_AddStringToObject(*out, "kind", dw_op_kind_name(p.kind));
    if (p.from >= 0)
        cJSON_AddStringToObject(*out, "from", target_name(g, p.from));
    else
        cJSON_AddNullToObject(*out, "from");
    cJSON_AddStringToObject(*out, "to", target_name(g, p.to));
    steps = cJSON_AddArrayToObject(*out, "steps");
    for (int i = 0; steps && i < p.n_steps; i++) {
        cJSON *st = cJSON_CreateObject();

        cJSON_AddNumberToObject(st, "seq", i);
        cJSON_AddStringToObject(st, "action", dw_step_action_name(p.steps[i].action));
        cJSON_AddStringToObject(st, "target", target_name(g, p.steps[i].target));
        cJSON_AddItemToArray(steps, st);
    }
    return 0;
}

int fsm_apply_operate(struct dw_fsm *f, const cJSON *e, int64_t ts, char *why, size_t whylen)
{
    const char *action = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "action"));
    const char *group = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "group"));
    const char *to = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "to"));
    const char *by = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "by_operator"));
    const char *req = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "request"));
    enum dw_op_kind kind;
    struct dw_plan p;
    int gi, rc;

    if (action == NULL || group == NULL || by == NULL || by[0] == '\0' || req == NULL ||
        dw_op_kind_parse(action, &kind) != 0 ||
        (kind != DW_OP_SWITCHOVER && kind != DW_OP_FAILBACK) ||
        (kind == DW_OP_SWITCHOVER && to == NULL)) {
        fsm_set_msg(why, whylen, "malformed operate entry");
        return APPLY_REJECT;
    }
    rc = plan_manual(f, group, kind, to ? to : "", ts, &p, &gi, why, whylen);
    if (rc != 0)
        return rc < 0 ? APPLY_SQL_ERROR : APPLY_REJECT;
    fsm_set_msg(p.reason, sizeof p.reason, "by %.64s", by);
    return write_operation(f, &f->cfg->groups[gi], &p, by, req, ts) == 0 ? APPLY_OK
                                                                        : APPLY_SQL_ERROR;
}

int64_t dw_fsm_operation_by_request(struct dw_fsm *f, const char *request)
{
    sqlite3_stmt *s = fsm_stmt(f, ST_OP_BY_REQUEST);
    int64_t id = 0;

    fsm_bind_text(s, 1, request);
    if (fsm_scalar(s, &id) != 0)
        id = 0;
    return id;
}
