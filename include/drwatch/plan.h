/* The planner: what operation, if any, one failover group needs, decided from a plain snapshot
 * of the group's state. Pure: no database, no clock, no I/O. The FSM gathers the state from its
 * tables (fsm_ops.c), calls dw_plan and writes what it returns. */
#ifndef DRWATCH_PLAN_H
#define DRWATCH_PLAN_H

#include <stdbool.h>
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
};

struct dw_plan_state {
    int n_targets; /* priority order: [0] is the primary */
    struct dw_plan_target targets[DW_MAX_TARGETS];
    int active; /* the target carrying calls, -1 none */
    bool hold;  /* a failed operation held the group until an operator releases it */
    struct {    /* the group's running operation, when there is one */
        bool present;
        enum dw_op_kind kind;
        int from; /* the target it moves calls off (a rollback: switches off), -1 none */
        int to;   /* its destination (a rollback or cleanup: the carrier kept), -1 none */
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
 * target is out of service. In order:
 * 0. a running operation is left to finish, unless it is a failover whose destination is DOWN
 *    (it could never verify); a cleanup keeping no carrier or a carrier now DOWN while a
 *    target is UP (and not passed over); or a rollback switching off the best UP target while
 *    the carrier it keeps is not UP: that one is aborted, and the failover planned next
 *    replaces it (make before break);
 * 1. a failover that failed to bring its destination in is rolled back (the destination off);
 * 2. a carrier voted DOWN (or no carrier at all) moves to the best UP target not passed over,
 *    even when the group is held: a hold stops discretionary moves, not the escape from a dead
 *    target;
 * 3. what operations aborted or failed since the last completed failover or cleanup may have
 *    left in service is switched off: all but the carrier, or everything when the carrier is
 *    DOWN and nothing is up. Held, a cleanup still follows an abort, but a failed cleanup is not
 *    retried (it would fail again while Genesys is unreachable, again and again).
 * UNKNOWN is neither UP nor DOWN: a carrier UNKNOWN is not left, a target UNKNOWN not chosen.
 * Failback to a higher-priority target that came back is not planned. */
void dw_plan(const struct dw_plan_state *s, struct dw_plan *out);

#endif
