/* Owns the operation and step journal: planning each group, writing operations and steps,
 * and ending operations. */

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Ends a running operation short of DONE; the group's active target then says what the journal
 * left carrying calls. */
static int end_operation(struct dw_fsm *f, const struct dw_group *g, const struct op_row *o,
                         enum dw_op_status status, int64_t ts, char *why, size_t whylen)
{
    int carrier, rc = move_operation(f, o, status, ts, why, whylen);

    if (rc != APPLY_OK || o->kind != DW_OP_FAILOVER)
        return rc; /* a rollback or cleanup only switched targets off, never the carrier */
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
    int g = fsm_group_index(f->cfg, o->grp);
    int t = g >= 0 ? target_or_none(&f->cfg->groups[g], o->to) : -1;
    int rc;

    if (g < 0 || (t < 0 && o->to[0] != '\0')) {
        fsm_set_msg(why, whylen, "operation %" PRId64 ": target %s of group %s is not configured",
                    o->id, o->to, o->grp);
        return APPLY_REJECT;
    }
    rc = move_operation(f, o, DW_OP_DONE, ts, why, whylen);
    if (rc != APPLY_OK)
        return rc;
    if (fsm_group_set(f, ST_GROUP_SET_ACTIVE, o->grp, t) != 0 ||
        fsm_history(f, ts, "operation", "%s: %s #%" PRId64 " %s -> %s done", o->grp,
                    dw_op_kind_name(o->kind), o->id, shown(o->from), shown(o->to)) != 0)
        return APPLY_SQL_ERROR;
    return APPLY_OK;
}

/* A failed step ends the operation and holds the group: no discretionary move until an operator
 * releases it. The planner still undoes a failed activation and still moves calls off a target
 * voted DOWN (plan_group). */
int fsm_fail_operation(struct dw_fsm *f, const struct op_row *o, const struct step_row *st,
                       int64_t ts, char *why, size_t whylen)
{
    int g = fsm_group_index(f->cfg, o->grp);
    int rc;

    if (g < 0) {
        fsm_set_msg(why, whylen, "operation %" PRId64 ": group %s is not configured", o->id,
                    o->grp);
        return APPLY_REJECT;
    }
    rc = end_operation(f, &f->cfg->groups[g], o, DW_OP_FAILED, ts, why, whylen);
    if (rc != APPLY_OK)
        return rc;
    if (fsm_group_set(f, ST_GROUP_SET_HOLD, o->grp, 1) != 0 ||
        fsm_history(f, ts, "operation",
                    "%s: %s #%" PRId64 " %s -> %s failed at step %d %s %s; group held", o->grp,
                    dw_op_kind_name(o->kind), o->id, shown(o->from), shown(o->to), st->seq,
                    dw_step_action_name(st->action), st->target) != 0)
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

/* Inserts a running operation of the group from one target to another (-1: none). */
static int insert_operation(struct dw_fsm *f, const struct dw_group *g, enum dw_op_kind kind,
                            int from, int to, const char *reason, int64_t ts, int64_t *op)
{
    sqlite3_stmt *s = fsm_stmt(f, ST_OP_INSERT);

    fsm_bind_text(s, 1, g->id);
    fsm_bind_text(s, 2, dw_op_kind_name(kind));
    fsm_bind_text(s, 3, target_id(g, from));
    fsm_bind_text(s, 4, target_id(g, to));
    sqlite3_bind_int64(s, 5, ts);
    fsm_bind_text(s, 6, reason);
    if (fsm_run(s) != 0)
        return -1;
    *op = sqlite3_last_insert_rowid(f->db);
    return fsm_history(f, ts, "operation", "%s: %s #%" PRId64 " %s -> %s planned (%s)", g->id,
                       dw_op_kind_name(kind), *op, shown(target_id(g, from)),
                       shown(target_id(g, to)), reason);
}

/* Steps: activate and verify the new target, then deactivate every other target of the group,
 * the one being left first. Deactivating targets that are already out of service costs a read
 * and no write, and it also takes out a target that an aborted or failed operation had
 * activated, so at most one target stays in service (design.md §5, invariant 4). */
static int create_failover(struct dw_fsm *f, const struct dw_group *g, int from, int to,
                           const char *reason, int64_t ts)
{
    int64_t op;
    int seq = 0;

    if (insert_operation(f, g, DW_OP_FAILOVER, from, to, reason, ts, &op) != 0 ||
        insert_step(f, op, seq++, DW_ACT_ACTIVATE, g->targets[to].id) != 0 ||
        insert_step(f, op, seq++, DW_ACT_VERIFY, g->targets[to].id) != 0 ||
        (from >= 0 && insert_step(f, op, seq++, DW_ACT_DEACTIVATE, g->targets[from].id) != 0))
        return -1;
    for (int t = 0; t < g->n_targets; t++) {
        if (t != from && t != to &&
            insert_step(f, op, seq++, DW_ACT_DEACTIVATE, g->targets[t].id) != 0)
            return -1;
    }
    return 0;
}

/* Switch-off only: a rollback takes out the one target whose activation failed; a cleanup takes
 * out every target but the one kept (none when no target is up). Neither is ever aborted:
 * switching off is always possible and makes nothing worse. */
static int create_switch_off(struct dw_fsm *f, const struct dw_group *g, enum dw_op_kind kind,
                             int from, int keep, const char *reason, int64_t ts)
{
    int64_t op;
    int seq = 0;

    if (insert_operation(f, g, kind, from, keep, reason, ts, &op) != 0)
        return -1;
    if (kind == DW_OP_ROLLBACK)
        return insert_step(f, op, 0, DW_ACT_DEACTIVATE, g->targets[from].id);
    for (int t = 0; t < g->n_targets; t++) {
        if (t != keep && insert_step(f, op, seq++, DW_ACT_DEACTIVATE, g->targets[t].id) != 0)
            return -1;
    }
    return 0;
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

/* A running failover whose destination went DOWN can never verify: abort it so the group is
 * planned again from what the journal left in service. An APPLY_ code; *aborted says whether. */
static int abort_if_destination_down(struct dw_fsm *f, const struct dw_group *g, int64_t op,
                                     int64_t now, bool *aborted, char *why, size_t whylen)
{
    struct op_row o;
    enum dw_health h;
    int t, rc = fsm_op_get(f, op, &o);

    *aborted = false;
    if (rc <= 0)
        return rc < 0 ? APPLY_SQL_ERROR : APPLY_OK;
    if (o.kind != DW_OP_FAILOVER)
        return APPLY_OK; /* a rollback or cleanup only switches things off: it can always finish */
    t = fsm_target_index(g, o.to);
    if (t < 0 || fsm_target_health(f, &g->targets[t], &h) != 0)
        return APPLY_SQL_ERROR;
    if (h != DW_DOWN)
        return APPLY_OK;
    rc = end_operation(f, g, &o, DW_OP_ABORTED, now, why, whylen);
    if (rc != APPLY_OK)
        return rc;
    if (fsm_history(f, now, "operation", "%s: failover #%" PRId64 " %s -> %s aborted: %s is down",
                    o.grp, op, shown(o.from), o.to, o.to) != 0)
        return APPLY_SQL_ERROR;
    *aborted = true;
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

/* The highest-priority target that is UP and has not failed since (-1: none). */
static int best_target(struct dw_fsm *f, const struct dw_group *g, int *best)
{
    char key[DW_ID_MAX + 16];
    int64_t released = 0;

    fsm_released_key(key, sizeof key, g->id);
    if (fsm_meta_get(f, key, &released) != 0)
        released = 0;
    *best = -1;
    for (int t = 0; t < g->n_targets; t++) {
        enum dw_health h;
        bool failed;

        if (fsm_target_health(f, &g->targets[t], &h) != 0)
            return -1;
        if (h != DW_UP)
            continue;
        if (target_failed(f, g, t, released, &failed) != 0)
            return -1;
        if (!failed) {
            *best = t;
            return 0;
        }
    }
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

/* 1 when the failover failed bringing its destination in (activate or verify). */
static int failed_bringing_in(struct dw_fsm *f, const struct op_row *last)
{
    sqlite3_stmt *s;
    int rc;
    enum dw_step_action a = DW_ACT_DEACTIVATE;

    if (last->kind != DW_OP_FAILOVER || last->status != DW_OP_FAILED)
        return 0;
    s = fsm_stmt(f, ST_STEP_FAILED);
    sqlite3_bind_int64(s, 1, last->id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        if (dw_step_action_parse(fsm_col_text(s, 0), &a) != 0)
            a = DW_ACT_DEACTIVATE;
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return -1;
    return a == DW_ACT_ACTIVATE || a == DW_ACT_VERIFY;
}

/* The planner. Wanted: the highest-priority UP target carries calls and every other target is
 * out of service. In order:
 * 1. a failover that failed to bring its destination in is rolled back (the destination off);
 * 2. a carrier voted DOWN (or no carrier at all) moves to the best UP target, even when the
 *    group is held: a hold stops discretionary moves, not the escape from a dead target;
 * 3. what operations aborted or failed since the last completed failover or cleanup may have
 *    left in service is switched off: all but the carrier, or everything when the carrier is
 *    DOWN and nothing is up (no finished operation leaves a DOWN target in service).
 * Failback to a higher-priority target that came back is not planned yet. */
int fsm_plan_group(struct dw_fsm *f, const struct dw_group *g, int64_t now, bool verdict_changed,
                   char *why, size_t whylen)
{
    const struct dw_config *cfg = f->cfg;
    int active, busy, best = -1, rc;
    int64_t op;
    bool hold, carrier_down, aborted;
    enum dw_health h = DW_DOWN;
    int64_t dirt[DIRT_N] = {0};
    struct op_row last;
    char reason[2 * DW_ID_MAX + 32];

    busy = running_op(f, g->id, &op);
    if (busy == 1) {
        rc = abort_if_destination_down(f, g, op, now, &aborted, why, whylen);
        if (rc != APPLY_OK)
            return rc;
        busy = aborted ? 0 : 1;
    }
    if (busy != 0)
        return busy < 0 ? -1 : 0;
    if (fsm_group_get(f, g->id, &active, &hold) != 0)
        return -1;
    if (active >= g->n_targets)
        active = -1;
    rc = fsm_op_latest(f, g->id, &last);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        int undo = failed_bringing_in(f, &last);

        if (undo < 0)
            return -1;
        if (undo == 1 && fsm_target_index(g, last.to) >= 0) {
            snprintf(reason, sizeof reason, "#%" PRId64 " failed", last.id);
            return create_switch_off(f, g, DW_OP_ROLLBACK, fsm_target_index(g, last.to), active, reason,
                                     now);
        }
    }
    if (group_dirt(f, g->id, dirt) != 0)
        return -1;

    if (active >= 0 && fsm_target_health(f, &g->targets[active], &h) != 0)
        return -1;
    carrier_down = active < 0 || h == DW_DOWN;
    if (carrier_down && best_target(f, g, &best) != 0)
        return -1;
    if (carrier_down && best >= 0) {
        if (active < 0)
            snprintf(reason, sizeof reason, "no target in service");
        else if (g->targets[active].site >= 0)
            snprintf(reason, sizeof reason, "%s down", cfg->sites[g->targets[active].site].id);
        else
            snprintf(reason, sizeof reason, "%s down", g->targets[active].id);
        return create_failover(f, g, active, best, reason, now);
    }
    /* Held, a cleanup still follows an abort, but a failed cleanup is not retried (it would
     * fail again while Genesys is unreachable, again and again). */
    if ((dirt[DIRT_FAILED] > 0 || dirt[DIRT_ABORTED] > 0) &&
        (!hold || (dirt[DIRT_ABORTED] > 0 && dirt[DIRT_FAILED_CLEANUPS] == 0))) {
        int keep = carrier_down ? -1 : active;

        if (g->n_targets - (keep >= 0) == 0)
            return 0;
        snprintf(reason, sizeof reason, "after an %s operation%s",
                 dirt[DIRT_ABORTED] > 0 ? "aborted" : "failed", keep < 0 ? ", no target up" : "");
        return create_switch_off(f, g, DW_OP_CLEANUP, active, keep, reason, now);
    }
    if (carrier_down && verdict_changed)
        return fsm_history(f, now, "operation", "%s: no target up", g->id);
    return 0;
}
