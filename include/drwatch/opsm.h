/* The operation state machine: the kinds, statuses and step actions of operations, and the one
 * table of moves between statuses. The FSM changes an operation's or a step's status only
 * through dw_op_move_ok / dw_step_move_ok; a move the table forbids is a refused entry. */
#ifndef DRWATCH_OPSM_H
#define DRWATCH_OPSM_H

#include <stdbool.h>

#include "drwatch/entry.h" /* enum dw_step_status */

/* A failover moves calls off a target voted DOWN; a failback to a higher-priority target UP
 * again; a switchover to the target an operator named. Those three "move" calls (activate,
 * verify, then switch the others off); a rollback and a cleanup only switch off. */
enum dw_op_kind {
    DW_OP_FAILOVER,
    DW_OP_ROLLBACK,
    DW_OP_CLEANUP,
    DW_OP_FAILBACK,
    DW_OP_SWITCHOVER,
    DW_OP_KIND_COUNT
};
/* An operation is created RUNNING; DONE, FAILED and ABORTED are final. */
enum dw_op_status { DW_OP_RUNNING, DW_OP_DONE, DW_OP_FAILED, DW_OP_ABORTED, DW_OP_STATUS_COUNT };
enum dw_step_action { DW_ACT_ACTIVATE, DW_ACT_VERIFY, DW_ACT_DEACTIVATE, DW_ACT_COUNT };

/* Whether the kind moves calls to its destination (make before break). */
bool dw_op_moves(enum dw_op_kind k);

/* The names the database and the views show. Parsing returns 0, or -1 for an unknown name. */
const char *dw_op_kind_name(enum dw_op_kind k);
int dw_op_kind_parse(const char *s, enum dw_op_kind *out);
const char *dw_op_status_name(enum dw_op_status s);
int dw_op_status_parse(const char *s, enum dw_op_status *out);
const char *dw_step_action_name(enum dw_step_action a);
int dw_step_action_parse(const char *s, enum dw_step_action *out);

/* Whether an operation of this kind may move from one status to another. Every kind can be
 * aborted (dw_plan, rule 0); final statuses have no move out. */
bool dw_op_move_ok(enum dw_op_kind kind, enum dw_op_status from, enum dw_op_status to);
/* Steps are created PENDING: PENDING -> STARTED -> DONE | FAILED. */
bool dw_step_move_ok(enum dw_step_status from, enum dw_step_status to);

#endif
