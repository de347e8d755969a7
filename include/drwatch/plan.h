/* The planner: what operation, if any, one failover group needs, decided from a plain snapshot
 * of the group's state. Pure: no database, no clock, no I/O. The FSM gathers the state from its
 * tables (fsm_ops.c), calls dw_plan and writes what it returns. */
#ifndef DRWATCH_PLAN_H
#define DRWATCH_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "drwatch/config.h"
#include "drwatch/health.h"
#include "drwatch/opsm.h"

struct dw_plan_target {
    enum dw_health health; /* its site's verdict; UP for a target with no site (BYOC Cloud) */
    /* it failed to come in (activate or verify) since its site's verdict last changed and since
     * the group's last release: choosing it again would only fail again */
    bool passed_over;
    const char *down_name; /* what a failover's reason calls it: its site's id, else its own */
    bool stable;      /* UP without a break for the group's stable_for (a failback may go to it) */
    bool maintenance; /* its site is in maintenance: no automatic operation switches it */
};

struct dw_plan_state {
    int n_targets; /* priority order: [0] is the primary */
    struct dw_plan_target targets[DW_MAX_TARGETS];
    int active; /* the target carrying calls, -1 none */
    bool hold;  /* held until an operator releases it: no failback */
    bool flap_hold;   /* the hold is for flapping: no automatic operation moves calls at all */
    bool maintenance; /* the group is in maintenance: no automatic operation */
    enum dw_failback failback; /* the group's policy; "manual" waits for drctl failback */
    bool pinned;      /* an operator's switchover chose the carrier: no automatic failback */
    bool failback_due; /* no failed failback's back-off is running */
    int auto_ops;     /* automatic failovers and failbacks in the flap window (since a release) */
    bool resync;      /* a maintenance window ended since the last completed failover or
                         cleanup: targets it kept out of operations may be in service */
    int max_auto_ops; /* how many the window allows before the group is held as flapping; 0 no
                         limit */
    struct {    /* the group's running operation, when there is one */
        bool present;
        enum dw_op_kind kind;
        int from; /* the target it moves calls off (a rollback: switches off), -1 none */
        int to;   /* its destination (a rollback or cleanup: the carrier kept), -1 none */
        int64_t id;
        bool off_pending[DW_MAX_TARGETS]; /* a deactivate step of this target is not done yet */
    } running;
    struct { /* the group's most recent operation, when there is one */
        bool present;
        int64_t id;
        enum dw_op_kind kind;
        enum dw_op_status status;
        int to;                  /* its destination, -1 none or not configured */
        bool failed_bringing_in; /* the step that failed was its activate or verify */
    } last;
    /* since the group's last completed failover or cleanup (each leaves exactly one target, or
     * none, in service): operations failed, aborted after a step had started, failed cleanups */
    int failed, aborted, failed_cleanups;
    bool verdict_changed; /* some site's verdict changed with the entry being applied */
};

enum dw_plan_what {
    DW_PLAN_NOTHING,
    DW_PLAN_ABORT,     /* abort the running operation (rule 0); then plan again */
    DW_PLAN_OPERATION, /* create the operation described */
    DW_PLAN_NONE_UP,   /* nothing to do, and no target is up: worth a history row */
    DW_PLAN_FLAP_HOLD, /* an automatic move is due but the window's allowance is spent: hold */
};

#define DW_PLAN_REASON_MAX (2 * DW_ID_MAX + 32)
#define DW_PLAN_STEPS_MAX (DW_MAX_TARGETS + 1) /* a failover: activate, verify, n-1 switch-offs */

struct dw_plan {
    enum dw_plan_what what;
    /* DW_PLAN_OPERATION only: */
    enum dw_op_kind kind;
    int from; /* the target it moves calls off (a rollback: the one it switches off), -1 none */
    int to;   /* the target it leaves carrying calls, -1 none */
    char reason[DW_PLAN_REASON_MAX];
    int n_steps;
    struct {
        enum dw_step_action action;
        int target;
    } steps[DW_PLAN_STEPS_MAX];
};

/* Fills *out from *s. Wanted: the highest-priority UP target carries calls and every other
 * target is out of service; a target (or group) in maintenance is never switched by an
 * automatic operation. In order:
 * 0. a running operation is left to finish, unless it is a failover whose destination is DOWN
 *    (it could never verify); a cleanup keeping no carrier or a carrier now DOWN while a
 *    target is UP (and not passed over); or a rollback switching off the best UP target while
 *    the carrier it keeps is not UP; or a rollback or cleanup still to switch off a target
 *    that went into maintenance and is UP while the carrier it keeps is not UP (maintenance
 *    came after it was planned): that one is aborted, and what is planned next replaces it
 *    (make before break; a cleanup planned now leaves the target in maintenance alone);
 * 1. a move (failover, failback, switchover) that failed to bring its destination in is rolled
 *    back (the destination off);
 *    nothing below runs while the group is in maintenance;
 * 2. a carrier voted DOWN (or no carrier at all) moves to the best UP target not passed over
 *    and not in maintenance, even when the group is held after a failure: that hold stops
 *    failbacks, not the escape from a dead target. A carrier in maintenance is not left. A hold
 *    for flapping stops this too;
 * 3. what operations aborted or failed since the last completed failover or cleanup may have
 *    left in service, or a maintenance window that ended (resync), is switched off: all but the
 *    carrier, or everything when the carrier is DOWN and nothing is up. Held, a cleanup still
 *    follows an abort or a window's end, but a failed cleanup is not retried (it would fail
 *    again while Genesys is unreachable, again and again).
 * 4. a carrier not DOWN gives way to the highest-priority target above it that is UP, stable
 *    and not passed over (a failback), unless the policy is manual, the carrier was chosen by an
 *    operator (pinned), the group is held, a failed failback's back-off runs, or the carrier is
 *    in maintenance.
 * An automatic move (2 or 4) beyond the window's allowance holds the group for flapping
 * instead (DW_PLAN_FLAP_HOLD). UNKNOWN is neither UP nor DOWN: a carrier UNKNOWN is not left
 * by a failover, a target UNKNOWN not chosen. */
void dw_plan(const struct dw_plan_state *s, struct dw_plan *out);

/* An operator's move: DW_OP_SWITCHOVER to target to, or DW_OP_FAILBACK to the highest-priority
 * UP target above the carrier (to ignored). Fills *out with the operation (reason left for the
 * caller) and returns 0, or returns -1 with why it is refused: an operation runs in the group,
 * the destination is not UP, is in maintenance, or already carries calls. Holds, stable_for,
 * the failback policy and the flap window bind automatic operations only. */
int dw_plan_manual(const struct dw_plan_state *s, enum dw_op_kind kind, int to,
                   struct dw_plan *out, char *why, size_t whylen);

#endif
