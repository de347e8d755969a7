/* Owns the operation state machine: the table of allowed status moves and the status names. */

#include <stddef.h>
#include <string.h>

#include "drwatch/opsm.h"

#define N_OPS DW_OP_STATUS_COUNT

/* allowed[kind][from][to]. Every final status has no move out, so a retried or late entry can
 * never reopen or re-finish an operation. */
static const bool op_allowed[DW_OP_KIND_COUNT][N_OPS][N_OPS] = {
    [DW_OP_FAILOVER] = {[DW_OP_RUNNING] = {[DW_OP_DONE] = true, [DW_OP_FAILED] = true,
                                           [DW_OP_ABORTED] = true}},
    [DW_OP_ROLLBACK] = {[DW_OP_RUNNING] = {[DW_OP_DONE] = true, [DW_OP_FAILED] = true,
                                           [DW_OP_ABORTED] = true}},
    [DW_OP_CLEANUP] = {[DW_OP_RUNNING] = {[DW_OP_DONE] = true, [DW_OP_FAILED] = true,
                                          [DW_OP_ABORTED] = true}},
    [DW_OP_FAILBACK] = {[DW_OP_RUNNING] = {[DW_OP_DONE] = true, [DW_OP_FAILED] = true,
                                           [DW_OP_ABORTED] = true}},
    [DW_OP_SWITCHOVER] = {[DW_OP_RUNNING] = {[DW_OP_DONE] = true, [DW_OP_FAILED] = true,
                                             [DW_OP_ABORTED] = true}},
};

static const bool step_allowed[DW_STEP_FAILED + 1][DW_STEP_FAILED + 1] = {
    [DW_STEP_PENDING] = {[DW_STEP_STARTED] = true},
    [DW_STEP_STARTED] = {[DW_STEP_DONE] = true, [DW_STEP_FAILED] = true},
};

static const char *const kind_names[DW_OP_KIND_COUNT] = {"failover", "rollback", "cleanup",
                                                              "failback", "switchover"};
static const char *const status_names[N_OPS] = {"running", "done", "failed", "aborted"};
static const char *const action_names[DW_ACT_COUNT] = {"activate", "verify", "deactivate"};

/* Index of s in names[0..n), -1 when absent. */
static int index_of(const char *const *names, int n, const char *s)
{
    for (int i = 0; s != NULL && i < n; i++) {
        if (strcmp(names[i], s) == 0)
            return i;
    }
    return -1;
}

bool dw_op_moves(enum dw_op_kind k)
{
    return k == DW_OP_FAILOVER || k == DW_OP_FAILBACK || k == DW_OP_SWITCHOVER;
}

const char *dw_op_kind_name(enum dw_op_kind k)
{
    return (unsigned)k < DW_OP_KIND_COUNT ? kind_names[k] : "?";
}

int dw_op_kind_parse(const char *s, enum dw_op_kind *out)
{
    int i = index_of(kind_names, DW_OP_KIND_COUNT, s);

    if (i >= 0)
        *out = (enum dw_op_kind)i;
    return i >= 0 ? 0 : -1;
}

const char *dw_op_status_name(enum dw_op_status s)
{
    return (unsigned)s < N_OPS ? status_names[s] : "?";
}

int dw_op_status_parse(const char *s, enum dw_op_status *out)
{
    int i = index_of(status_names, N_OPS, s);

    if (i >= 0)
        *out = (enum dw_op_status)i;
    return i >= 0 ? 0 : -1;
}

const char *dw_step_action_name(enum dw_step_action a)
{
    return (unsigned)a < DW_ACT_COUNT ? action_names[a] : "?";
}

int dw_step_action_parse(const char *s, enum dw_step_action *out)
{
    int i = index_of(action_names, DW_ACT_COUNT, s);

    if (i >= 0)
        *out = (enum dw_step_action)i;
    return i >= 0 ? 0 : -1;
}

bool dw_op_move_ok(enum dw_op_kind kind, enum dw_op_status from, enum dw_op_status to)
{
    return (unsigned)kind < DW_OP_KIND_COUNT && (unsigned)from < N_OPS && (unsigned)to < N_OPS &&
           op_allowed[kind][from][to];
}

bool dw_step_move_ok(enum dw_step_status from, enum dw_step_status to)
{
    return (unsigned)from <= DW_STEP_FAILED && (unsigned)to <= DW_STEP_FAILED &&
           step_allowed[from][to];
}
