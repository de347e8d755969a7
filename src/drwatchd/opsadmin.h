/* Admin commands for the DR lifecycle: maintenance windows, operators' moves (switchover,
 * failback) and hold releases, each proposed on the leader and answered once applied. */
#ifndef DRWATCH_OPSADMIN_H
#define DRWATCH_OPSADMIN_H

#include <stdbool.h>
#include <stdint.h>

#include <cJSON.h>

#include "drwatch/admin.h"
#include "drwatch/fsm.h"
#include "drwatch/raftnode.h"

/* Handles {"cmd":"maintenance"|"operate"|"hold", ...}; false for any other command.
 *   {"cmd":"maintenance","action":"list"}
 *   {"cmd":"maintenance","action":"set","scope":"site"|"group","id":ID,"ttl_ms":N,
 *    "reason":TEXT,"by":NAME}                        answers once committed
 *   {"cmd":"maintenance","action":"clear","scope":...,"id":ID,"by":NAME}
 *   {"cmd":"operate","action":"switchover"|"failback","group":G,"to":TARGET,"by":NAME,
 *    "dry_run":bool}   dry run: {"plan":{...,"steps":[{...,"calls":[{method,path,body,note}]}]}}
 *                      else, once committed: {"operation":ID,"plan":{...}}
 *   {"cmd":"hold","action":"release","group":G,"by":NAME}
 *                      once committed: {"was_held":bool,"hold_reason":"failed"|"flapping"} */
bool dw_opsadmin_handle(struct dw_fsm *fsm, struct dw_raft *raft, const cJSON *req,
                        cJSON *reply, struct dw_admin_call *call);

#endif
