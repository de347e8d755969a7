/* The actuator runs the FSM's pending operation steps against Genesys, on the leader only.
 * Each step is journaled: STARTED is committed before the first Genesys call and DONE/FAILED
 * after the last, so a new leader resumes at the first unfinished step. Steps are idempotent
 * (read, skip when already so), so a resumed STARTED step never acts twice. Before each step
 * the actuator checks that it is still the leader whose barrier succeeded (fencing). */
#ifndef DRWATCH_ACTUATOR_H
#define DRWATCH_ACTUATOR_H

#include <uv.h>

#include "drwatch/config.h"
#include "drwatch/fsm.h"
#include "drwatch/genesys.h"
#include "drwatch/raftnode.h"

struct dw_actuator;

int dw_actuator_init(struct dw_actuator **out, uv_loop_t *loop, const struct dw_config *cfg,
                     struct dw_fsm *fsm, struct dw_raft *raft, struct dw_genesys *genesys);
/* Call after entries were applied; cheap when there is nothing to do. */
void dw_actuator_kick(struct dw_actuator *a);
void dw_actuator_close(struct dw_actuator *a); /* accepts NULL */

/* Debug knob (admin "debug" command, node.debug only): the process kills itself with SIGKILL
 * just before it would start a step with this action ("activate", "verify", "deactivate"),
 * i.e. after every earlier step's DONE is committed. "" disarms. */
void dw_actuator_crash_before(struct dw_actuator *a, const char *action);

/* Short description of the step in flight, "" when idle. */
const char *dw_actuator_current(const struct dw_actuator *a);

#endif
